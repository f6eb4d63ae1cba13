"""Refinement: instance label map -> refined per-character masks (`extract.refine`).

`grabcut` re-cuts each character with OpenCV GrabCut inside its crop: the mask eroded
by the band is sure foreground, the rest of the mask probable foreground, the band
outside it probable background and everything beyond sure background. The caller
resolves overlaps between the refined masks (instances_from_masks), so each pixel
still belongs to at most one character.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import GrabcutParams
from .instances import bbox, crop_box

GMM_COMPONENTS = 5  # GrabCut's colour models: each side needs at least this many pixels


def grabcut_mask(rgb: np.ndarray, mask: np.ndarray, params: GrabcutParams) -> np.ndarray:
    """HxWx3 uint8 page, HxW bool mask -> HxW bool mask refined by GrabCut.

    Works inside the mask's box grown by twice the band; deterministic (OpenCV's RNG is
    seeded before the call). A mask with too few pixels inside or outside it in the crop
    to fit GrabCut's colour models is returned as it is.
    """
    box = bbox(mask)
    band = max(1, round(params.band * max(box[2] - box[0], box[3] - box[1])))
    x0, y0, x1, y1 = crop_box(box, mask.shape, 2 * params.band)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    gc = np.full(m.shape, cv2.GC_BGD, np.uint8)
    gc[cv2.dilate(m, kernel) > 0] = cv2.GC_PR_BGD
    gc[m > 0] = cv2.GC_PR_FGD
    gc[cv2.erode(m, kernel) > 0] = cv2.GC_FGD
    is_fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    if min(is_fg.sum(), (~is_fg).sum()) < GMM_COMPONENTS:
        return mask
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1]), gc, None, np.zeros((1, 65), np.float64),
                np.zeros((1, 65), np.float64), params.iters, cv2.GC_INIT_WITH_MASK)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out


def refine_grabcut(rgb: np.ndarray, labels: np.ndarray, params: GrabcutParams) -> np.ndarray:
    """HxWx3 uint8 page, HxW label map (1..n) -> nxHxW bool refined masks, mask i for label i+1."""
    masks = [grabcut_mask(rgb, labels == k, params) for k in range(1, int(labels.max()) + 1)]
    return np.stack(masks) if masks else np.zeros((0, *labels.shape), bool)
