"""Lettering: regions that hold only text (speech bubbles, captions, signs) are no characters.

Inside a speech bubble the dark pixels are glyphs: many small strokes, each a short span of the
bubble. Inside a drawn character they are line art, which joins into long strokes (the hair, a
face's outline, the folds of clothes). So a region whose longest dark stroke, away from its own
outline, spans less than `min_span` of its box's diagonal is lettering (real manga pages: half
the cut-outs that hold no figure are speech bubbles).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from kirinuki.core.instances import keep_labels

INK = 128  # grey level: darker is a stroke
OUTLINE = 0.03  # the region's outline (a bubble's border) this share of its diagonal deep is left out


def stroke_span(mask: np.ndarray, grey: np.ndarray) -> float:
    """HxW bool region (cropped to its box) and its HxW uint8 grey pixels -> the longest dark
    connected stroke inside it (box diagonal), as a share of the region box's diagonal."""
    h, w = mask.shape
    diag = float(np.hypot(h, w))
    r = max(2, round(OUTLINE * diag))
    inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(((grey < INK) & inner).astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0
    return float(np.hypot(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]).max()) / diag


def drop_lettering(labels: np.ndarray, rgb: np.ndarray, min_span: float) -> np.ndarray:
    """HxW label map, its HxWx3 uint8 page -> the same without the regions whose stroke_span is
    below `min_span`, relabelled 1..m in the same order; `min_span` 0 = off."""
    n = int(labels.max())
    if n == 0 or min_span <= 0:
        return labels
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    kept = [k for k, (sy, sx) in enumerate(ndimage.find_objects(labels), start=1)
            if sy is not None and stroke_span(labels[sy, sx] == k, grey[sy, sx]) >= min_span]
    return labels if len(kept) == n else keep_labels(labels, kept)
