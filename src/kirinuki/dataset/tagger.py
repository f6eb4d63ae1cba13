"""Auto-tagging of cut-outs with a WD14-style ONNX tagger (export.tagger).

The interface of SmilingWolf's wd-v1-4 / wd-*-tagger-v3 models: one NHWC float32 input
[1, S, S, 3], BGR, 0-255, the image on white padded to a square; one output [1, N] of
per-tag probabilities, row i for line i of selected_tags.csv (tag_id,name,category,count).
Both files are the user's: kirinuki never downloads them.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from kirinuki.core.config import TaggerParams

CATEGORY_IDS = {"rating": 9, "general": 0, "character": 4}  # the CSV's category column
ORDER = ("rating", "character", "general")  # the order tags are returned (and captioned) in
DEFAULT_SIZE = 448  # the WD14 models' side, for a model whose input size is dynamic


class TaggerError(ValueError):
    """A tagger or tag CSV that cannot be used; str() names the file(s) and the reason."""


def read_tags_csv(path: Path) -> list[tuple[str, int]]:
    """(name, category) per row of a selected_tags.csv, in row order."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"name", "category"} <= set(reader.fieldnames):
                raise TaggerError(f"{path}: not a tag CSV (the header must be tag_id,name,category,count)")
            rows = []
            for row in reader:
                try:
                    rows.append((row["name"].strip(), int(row["category"])))
                except (TypeError, ValueError, AttributeError):
                    raise TaggerError(f"{path}: line {reader.line_num}: no tag name and integer category") from None
    except UnicodeDecodeError:
        raise TaggerError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise TaggerError(f"{path}: cannot read ({e.strerror or e})") from None
    if not rows:
        raise TaggerError(f"{path}: no tags in it")
    return rows


def _side(shape) -> int:
    """The square side S of an input shape [1, S, S, 3]; a dynamic one (None or a name) is 448."""
    dims = [d for d in shape[1:3] if isinstance(d, int) and d > 0]
    return dims[0] if dims else DEFAULT_SIZE


def preprocess(rgba: np.ndarray, size: int) -> np.ndarray:
    """An RGBA (or RGB) uint8 image -> the [1, size, size, 3] float32 BGR 0-255 tagger input."""
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.dtype != np.uint8:
        raise TaggerError(f"tagger input: an HxWx4 (or HxWx3) uint8 image, got {rgba.shape} {rgba.dtype}")
    rgb = rgba[..., :3].astype(np.float32)
    if rgba.shape[2] == 4:  # composite on white, as the tagger was trained on opaque images
        alpha = rgba[..., 3:].astype(np.float32) / 255.0
        rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    img = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    img = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT,
                             value=(255, 255, 255))
    if side != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    return np.ascontiguousarray(img[None, :, :, ::-1], dtype=np.float32)


class Tagger:
    """One loaded tagger: the session is made once and used for every cut-out."""

    def __init__(self, params: TaggerParams):
        if params.model is None or params.tags_csv is None:
            raise TaggerError("export.tagger: no model and tags_csv given")
        for path in (params.model, params.tags_csv):
            if not Path(path).is_file():
                raise TaggerError(f"{path}: no such file (a WD14-style tagger and its selected_tags.csv are "
                                  f"files you provide; kirinuki never downloads them)")
        self.params = params
        self.model, self.tags_csv = Path(params.model), Path(params.tags_csv)
        self.tags = read_tags_csv(self.tags_csv)
        from kirinuki.core.sessions import onnx_session  # onnxruntime: exporting without a tagger needs none

        try:
            self.session = onnx_session(self.model, threads=0)  # reproducible tags: the dataset's bytes follow them
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types, straight from Exception
            raise TaggerError(f"{self.model}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        channels = shape[3] if len(shape) == 4 else 0
        if inputs[0].type != "tensor(float)" or channels != 3 and isinstance(channels, int):
            raise TaggerError(f"{self.model}: not a WD14-style tagger (one float NHWC input [1, S, S, 3] "
                              f"expected, got {', '.join(f'{i.type} {i.shape}' for i in inputs)})")
        self.input_name, self.size = inputs[0].name, _side(inputs[0].shape)
        n = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(n, int):
            self._check_count(n)
        wanted = set(params.categories)
        self._rows = {c: np.array([i for i, (_, cat) in enumerate(self.tags) if cat == CATEGORY_IDS[c]], dtype=int)
                      for c in ORDER if c in wanted}

    def _check_count(self, n: int) -> None:
        if n != len(self.tags):
            raise TaggerError(f"{self.model}: {n} scores per image, but {self.tags_csv} lists {len(self.tags)} "
                              f"tags (a model and its own selected_tags.csv go together)")

    def scores(self, rgba: np.ndarray) -> np.ndarray:
        """One probability per CSV row for the image."""
        out = self.session.run(None, {self.input_name: preprocess(rgba, self.size)})[0]
        probs = np.asarray(out, dtype=np.float64).reshape(-1)
        self._check_count(probs.size)
        if probs.size and (probs.min() < 0 or probs.max() > 1):  # logits, not probabilities
            probs = 1.0 / (1.0 + np.exp(-probs))
        return probs

    def tag(self, rgba: np.ndarray) -> list[tuple[str, float, str]]:
        """(tag, score, category) of the tags above their thresholds (and the best rating, when
        asked for), rating first, then character, then general; by score within each."""
        probs = self.scores(rgba)
        found: list[tuple[str, float, str]] = []
        thresholds: dict[str, Optional[float]] = {"general": self.params.general_threshold,
                                                  "character": self.params.character_threshold, "rating": None}
        for category, rows in self._rows.items():
            if not rows.size:
                continue
            if thresholds[category] is None:
                keep = rows[[int(np.argmax(probs[rows]))]]  # ratings are exclusive: the one best
            else:
                keep = rows[probs[rows] >= thresholds[category]]
            keep = keep[np.argsort(-probs[keep], kind="stable")]  # ties keep the CSV's order
            found += [(self.tags[i][0], float(probs[i]), category) for i in keep]
        return found
