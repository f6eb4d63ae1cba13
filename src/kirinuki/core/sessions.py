"""Runtime sessions shared by every backend: onnxruntime and torch set for reproducible
inference, and the check that a weights file named in params exists."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


INSTALL_BACKENDS = "make backends, or pip install 'kirinuki[backends]'"


class BackendUnavailable(Exception):
    """A backend's library or device is missing; str() says what to install or set."""


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
