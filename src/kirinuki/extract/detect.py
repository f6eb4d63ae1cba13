"""Detectors: RGB page -> character boxes.

Backends sit behind one small protocol and a registry chosen by `extract.detector`
("none", the default, loads nothing). torch and ultralytics are imported by the
builders only, so the default ISNet path never imports them.
"""
from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple, Optional, Protocol

import numpy as np

from kirinuki.core.config import ExtractParams, YoloParams
from kirinuki.core.sessions import INSTALL_BACKENDS, BackendUnavailable, torch_setup, weights_file
from kirinuki.core.cards import sha256_file


class Boxes(NamedTuple):
    xyxy: np.ndarray  # Nx4 float32, page pixels
    scores: np.ndarray  # N float32 detection confidence
    priors: bool = False  # True: body priors grown from heads, a guess at each figure's extent


class Detector(Protocol):
    info: dict  # backend versions, weights hash: recorded with every cut-out

    def __call__(self, rgb: np.ndarray) -> Boxes:
        """rgb: HxWx3 uint8 -> Boxes, highest score first."""


def head_to_body(xyxy: np.ndarray, shape, heads_tall: float, heads_wide: float) -> np.ndarray:
    """Nx4 xyxy head/face boxes -> Nx4 float32 body priors, clipped to the HxW `shape`.

    Anime characters stand about 6-7 heads tall and span about 3 heads with their arms
    at rest: the prior runs from the head's top down `heads_tall` head heights and is
    `heads_wide` head widths wide, centred on the head.
    """
    x0, y0, x1, y1 = np.asarray(xyxy, np.float32).reshape(-1, 4).T
    cx, half = (x0 + x1) / 2, (x1 - x0) * heads_wide / 2
    h, w = shape[:2]
    body = np.stack([cx - half, y0, cx + half, y0 + (y1 - y0) * heads_tall], axis=1)
    return np.clip(body, 0, [w, h, w, h]).astype(np.float32)


def import_yolo():
    """ultralytics' YOLO class, imported offline and with Pillow left as it was.

    Importing ultralytics replaces PIL.Image.open with a wrapper that pip-installs a HEIF
    plugin when Pillow cannot identify a file; Pillow's own is put back, so a bad page
    stays a one-line error and nothing is installed at run time.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no connectivity checks, downloads or telemetry
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        from ultralytics import YOLO
        from ultralytics.utils import patches
    except ImportError:
        raise BackendUnavailable(f"extract.detector yolo needs ultralytics: {INSTALL_BACKENDS}") from None
    from PIL import Image
    Image.open = getattr(patches, "_image_open", Image.open)
    return YOLO


class YoloDetector:
    """An ultralytics YOLO checkpoint; head/face models get their boxes grown into bodies."""

    def __init__(self, weights: Path, params: YoloParams, device: str, threads: int):
        torch = torch_setup(device, threads)
        self.model = import_yolo()(str(weights), task="detect")  # an existing file: ultralytics downloads nothing
        self.params, self.device = params, device
        self.info = {"detector": "yolo", "ultralytics": version("ultralytics"), "torch": torch.__version__,
                     "detector_weights": weights.name, "detector_sha256": sha256_file(weights)}

    def __call__(self, rgb: np.ndarray) -> Boxes:
        p = self.params
        result = self.model.predict(np.ascontiguousarray(rgb[..., ::-1]), conf=p.conf, iou=p.iou, imgsz=p.imgsz,
                                    classes=p.classes, max_det=p.max_det, device=self.device,
                                    verbose=False, save=False)[0]  # ultralytics takes BGR arrays
        xyxy = result.boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4)
        scores = result.boxes.conf.cpu().numpy().astype(np.float32)
        if p.boxes == "head":
            xyxy = head_to_body(xyxy, rgb.shape, p.body_heads_tall, p.body_heads_wide)
        return Boxes(xyxy, scores, p.boxes == "head")


def _yolo(params: ExtractParams) -> YoloDetector:
    weights = weights_file("extract.yolo.weights", params.yolo.weights)
    return YoloDetector(weights, params.yolo, params.device, params.threads)


DETECTORS = {"yolo": _yolo}


def load_detector(params: ExtractParams) -> Optional[Detector]:
    """The detector named by `extract.detector`; None for "none"."""
    return None if params.detector == "none" else DETECTORS[params.detector](params)
