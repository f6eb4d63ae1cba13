"""Segmenters: RGB page -> soft foreground (character) mask.

Backends sit behind one small protocol and a registry chosen by `extract.segmenter`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from .config import ExtractParams
from .models import read_card, sha256_file


class Segmenter(Protocol):
    name: str
    info: dict  # backend versions, model hash: recorded with every cut-out

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb: HxWx3 uint8 -> HxW float32 foreground probability in 0..1."""


class IsnetSegmenter:
    """ISNet (DIS) as ONNX: input [1,3,S,S] float, output [1,1,S,S] in 0..1.

    Works for the anime ISNet (letterboxed, RGB/255) and the general one
    (stretched, RGB/255 - 0.5); the normalisation comes from params or the model card.
    """

    name = "isnet"

    def __init__(self, model: Path, size: int, mean, std, letterbox: bool, threads: int = 0):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.use_deterministic_compute = True
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.size = size
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.letterbox = letterbox
        self.info = {"segmenter": self.name, "onnxruntime": ort.__version__,
                     "model": Path(model).name, "model_sha256": sha256_file(model)}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = self.size
        if self.letterbox:
            scale = s / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            top, left = (s - nh) // 2, (s - nw) // 2
        else:
            nh, nw, top, left = s, s, 0, 0
        interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
        x = np.zeros((s, s, 3), np.float32)
        x[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=interp).astype(np.float32) / 255.0
        x = (x - self.mean) / self.std
        y = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 0]
        y = y[top:top + nh, left:left + nw]
        return np.clip(cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _isnet(params: ExtractParams) -> IsnetSegmenter:
    model = Path(params.model)
    if not model.exists():
        raise FileNotFoundError(f"extract.model {model}: not found (run `kirinuki fetch-model`)")
    norm = {"mean": params.mean, "std": params.std, "letterbox": params.letterbox}
    if any(v is None for v in norm.values()):
        card = read_card(model)
        norm = {k: card[k] if v is None else v for k, v in norm.items()}
    return IsnetSegmenter(model, params.input_size, threads=params.threads, **norm)


SEGMENTERS = {"isnet": _isnet}


def load_segmenter(params: ExtractParams) -> Segmenter:
    return SEGMENTERS[params.segmenter](params)
