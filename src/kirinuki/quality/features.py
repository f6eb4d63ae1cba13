"""Per-cut-out features behind the grade: pure functions over arrays, flat dicts out.

Each group answers one question the user asks of a cut-out — is anything there
(content), how many characters (characters), is the body whole (completeness), is it
big enough (resolution), is the outline clean (boundary), is there lettering inside
(text). Feature names are stable: they are recorded in scores.jsonl and are the
columns `kirinuki calibrate` fits on.

Shapes: `alpha` is the cut-out's hxw bool mask in crop coordinates, `rgba` its hxwx4
uint8 pixels and `page_mask` the HxW bool mask of the same character on its page.
Shape measures run on a copy scaled to at most `SHAPE_SIDE` pixels: they are about form,
not pixel count, and this keeps a cut-out well under the 50 ms budget.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
from scipy.signal import find_peaks

from kirinuki.core.config import ScoreParams
from kirinuki.core.instances import bbox

SIDES = ("left", "top", "right", "bottom")
SHAPE_SIDE = 256
LUMA = np.float32([0.299, 0.587, 0.114])


def _r4(x) -> float:
    return round(float(x), 4)


def shape_scale(shape: tuple[int, int]) -> float:
    return min(1.0, SHAPE_SIDE / max(shape))


def _resize(a: np.ndarray, s: float, interpolation=cv2.INTER_AREA) -> np.ndarray:
    if s == 1.0:
        return a
    h, w = a.shape[:2]
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interpolation)


def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


# --- content: is there anything, and is it more than a black screen -------------------------

def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """...x3 uint8 RGB -> bool: light, warm, moderately saturated (anime skin tones)."""
    hsv = cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV).reshape(rgb.shape)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (h <= 22) & (s >= 15) & (s <= 120) & (v >= 170)


def palette(rgb: np.ndarray, alpha: np.ndarray) -> dict:
    """Colour variety and line art of the visible pixels (hxwx3 RGB, hxw bool alpha).

    hue_entropy: entropy (nats) of the hue histogram of saturated pixels — one prop is one
    colour, a character has hair, skin and clothes, two characters have both palettes.
    edge_density: share of visible pixels on a Canny edge — the density of line art.
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    saturated = alpha & (hsv[..., 1] > 60) & (hsv[..., 2] > 60)
    entropy = 0.0
    if saturated.sum() >= 20:
        hist = np.bincount(hsv[..., 0][saturated] // 10, minlength=18) / saturated.sum()
        hist = hist[hist > 0]
        entropy = float(-(hist * np.log(hist)).sum())
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 60, 150) > 0
    return {"hue_entropy": _r4(entropy),
            "edge_density": _r4((edges & alpha).sum() / alpha.sum() if alpha.any() else 0.0)}


def content(rgba: np.ndarray, page_mask: np.ndarray) -> dict:
    alpha = rgba[..., 3] > 127
    visible = rgba[..., :3][alpha]
    if len(visible):
        luma = visible.astype(np.float32) @ LUMA / 255.0
        sat = cv2.cvtColor(visible.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV)[:, 0, 1] / 255.0
        skin = skin_mask(visible).mean()
    else:
        luma = sat = np.zeros(1, np.float32)
        skin = 0.0
    return {"opaque_share": _r4(alpha.mean() if alpha.size else 0.0),
            "area_share": _r4(page_mask.mean()),
            "luma_mean": _r4(luma.mean()), "luma_std": _r4(luma.std()),
            "saturation": _r4(sat.mean()), "skin_share": _r4(skin)}


# --- characters: one figure or several -------------------------------------------------------

def _significant(areas: np.ndarray, share: float) -> int:
    """How many of the component areas reach `share` of the largest."""
    return int((areas >= share * areas.max()).sum()) if len(areas) else 0


def head_count(small: np.ndarray, prominence: float, level: float) -> int:
    """Bumps on the upper outline of an hxw bool mask: heads, when figures stand side by side.

    The profile is each column's height of the highest mask pixel (share of the mask's
    height). A head is a bump that reaches `level` of the height, rises `prominence` above
    the valleys on both sides and is at least a tenth of the mask wide, so hair strands,
    ears, raised fingers and the shoulders of one figure do not count.
    """
    ys, xs = np.nonzero(small)
    if len(ys) == 0:
        return 0
    sub = small[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = sub.shape
    top = np.where(sub.any(axis=0), sub.argmax(axis=0), h)
    profile = np.concatenate([[0.0], (h - top) / h, [0.0]])
    peaks, _ = find_peaks(profile, prominence=prominence, width=max(1.0, 0.1 * w), height=level)
    return len(peaks)


def characters(alpha_small: np.ndarray, params: ScoreParams) -> dict:
    """alpha_small: the cut-out's mask at shape scale."""
    m = alpha_small.astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    f = {"secondary_share": _r4(areas[1] / areas[0]) if len(areas) > 1 else 0.0,
         "regions": _significant(areas, params.secondary_region)}
    # a thin bridge (touching hands, overlapping hair) joins two figures: opening cuts it
    r = max(1, round(params.open_radius * np.sqrt(max(1, areas[0] if len(areas) else 1))))
    opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, _disc(r))
    _, _, ostats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    f["open_parts"] = _significant(ostats[1:, cv2.CC_STAT_AREA], params.secondary_region)
    f["heads"] = head_count(opened > 0, params.head_prominence, params.head_level)
    return f


# --- completeness: is the body cut by its frame (panel or page) or a straight border ------------

def _straight_run(ends: np.ndarray, valid: np.ndarray, tol: int) -> float:
    """Longest stretch of adjacent lines (columns or rows) whose outermost mask pixel lies on
    one straight line, give or take `tol` pixels, as a share of the lines with mask.

    ends: outermost position per line; valid: lines that have mask. Gaps of up to `tol`
    lines are bridged; a cut runs through, while two feet on the ground are two stretches.
    """
    if not valid.any():
        return 0.0
    on_valid = ends[valid]
    counts = np.bincount(on_valid - on_valid.min())
    line = on_valid.min() + int(np.convolve(counts, np.ones(2 * tol + 1), mode="same").argmax())
    on = valid & (np.abs(ends - line) <= tol)
    idx = np.flatnonzero(on)
    breaks = np.flatnonzero(np.diff(idx) > tol + 1)
    starts, stops = np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]]
    return float((stops - starts + 1).max() / valid.sum())


def completeness(page_mask: np.ndarray, band: float = 0.0, frame: Optional[Sequence[int]] = None) -> dict:
    """Per side: `edge_<side>`, the share of the character's extent lying on that side of its
    frame (`frame` x0, y0, x1, y1: the comic panel it was found in; None: the page), within `band`
    x the page's size of it (a model's mask often fades out just short of the edge where the body
    runs on); and `cut_<side>`, the share ending on one straight line (a frame, or the extractor,
    cut the figure). A whole figure ends in curves: both stay small."""
    ys, xs = np.nonzero(page_mask)
    if len(xs) == 0:
        return {**{f"edge_{s}": 0.0 for s in SIDES}, **{f"cut_{s}": 0.0 for s in SIDES}}
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = page_mask[y0:y1, x0:x1]
    h, w = m.shape
    H, W = page_mask.shape
    by, bx = max(1, round(band * H)), max(1, round(band * W))
    fx0, fy0, fx1, fy1 = frame if frame is not None else (0, 0, W, H)
    rows, cols = m.any(axis=1), m.any(axis=0)
    first_x, last_x = m.argmax(axis=1), w - 1 - m[:, ::-1].argmax(axis=1)
    first_y, last_y = m.argmax(axis=0), h - 1 - m[::-1].argmax(axis=0)
    tol = max(2, round(0.01 * max(h, w)))
    f = {"edge_left": page_mask[y0:y1, max(0, fx0):fx0 + bx].any(axis=1).sum() / h,
         "edge_top": page_mask[max(0, fy0):fy0 + by, x0:x1].any(axis=0).sum() / w,
         "edge_right": page_mask[y0:y1, max(0, fx1 - bx):fx1].any(axis=1).sum() / h,
         "edge_bottom": page_mask[max(0, fy1 - by):fy1, x0:x1].any(axis=0).sum() / w,
         "cut_left": _straight_run(first_x, rows, tol), "cut_top": _straight_run(first_y, cols, tol),
         "cut_right": _straight_run(last_x, rows, tol), "cut_bottom": _straight_run(last_y, cols, tol)}
    return {k: _r4(v) for k, v in f.items()}


def outline_contacts(page_mask: np.ndarray, labels: Optional[np.ndarray] = None,
                     frame: Optional[Sequence[int]] = None) -> dict:
    """Where the character's outline runs. `neighbour_edge`: the share within 2 px of another
    character of the page (`labels`: the page's label map, 0 = background; None: no other);
    `free_outline`: the share neither there nor within 2 px of its frame (`frame` x0, y0, x1, y1:
    its comic panel; None: the page), i.e. drawn where the figure meets its own background."""
    # where two characters meet, the one behind is hidden, or the split between them cut
    # one of them: a body cut where the picture goes on, though no page edge is near. A cut-out
    # with little free outline is mostly bounded by others or the frame: a piece, a merge or a slab
    if not page_mask.any():
        return {"neighbour_edge": 0.0, "free_outline": 0.0}
    x0, y0, x1, y1 = bbox(page_mask)
    x0, y0, x1, y1 = max(0, x0 - 3), max(0, y0 - 3), x1 + 3, y1 + 3
    m = page_mask[y0:y1, x0:x1].astype(np.uint8)
    outline = m & (1 - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE))
    others = np.zeros_like(m) if labels is None else ((labels[y0:y1, x0:x1] > 0) & (m == 0)).astype(np.uint8)
    near = cv2.dilate(others, np.ones((5, 5), np.uint8))
    H, W = page_mask.shape
    fx0, fy0, fx1, fy1 = frame if frame is not None else (0, 0, W, H)
    ys, xs = np.ogrid[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
    on_frame = (xs <= fx0 + 2) | (xs >= fx1 - 3) | (ys <= fy0 + 2) | (ys >= fy1 - 3)
    n = max(1, outline.sum())
    return {"neighbour_edge": _r4((outline & near).sum() / n),
            "free_outline": _r4((outline.astype(bool) & (near == 0) & ~on_frame).sum() / n)}


# --- resolution -------------------------------------------------------------------------------

def resolution(alpha: np.ndarray, params: ScoreParams) -> dict:
    short = int(min(alpha.shape))
    return {"short_side": short, "resolution": _r4(min(1.0, short / params.train_resolution))}


# --- boundary: a clean outline (the soft mask's confidence is recorded beside it) -------------

def outline(alpha_small: np.ndarray) -> dict:
    contours, _ = cv2.findContours(alpha_small.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return {"solidity": 0.0, "smoothness": 0.0, "compactness": 0.0}
    main = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(main)
    area, hull_area = cv2.contourArea(main), cv2.contourArea(hull)
    perim, hull_perim = cv2.arcLength(main, True), cv2.arcLength(hull, True)
    return {"solidity": _r4(area / hull_area if hull_area else 0.0),
            "smoothness": _r4(hull_perim / perim if perim else 0.0),  # 1 = convex outline
            "compactness": _r4(4 * np.pi * area / perim ** 2 if perim else 0.0)}  # 1 = a disc


# --- text: lettering inside the mask -----------------------------------------------------------

def text_share(rgba_small: np.ndarray, glyph_px: tuple[float, float]) -> float:
    """Share of the mask covered by lettering: small dark marks of glyph size (`glyph_px`:
    smallest and largest glyph height in pixels of this image) sitting on bright paper,
    as in a speech bubble or a sign caught in the mask."""
    alpha = rgba_small[..., 3] > 127
    if not alpha.any():
        return 0.0
    luma = rgba_small[..., :3].astype(np.float32) @ LUMA / 255.0
    dark = (alpha & (luma < 0.45)).astype(np.uint8)
    paper = cv2.integral((alpha & (luma > 0.8)).astype(np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    x, y, w, h, area = (stats[1:, i] for i in range(5))
    low, high = max(3.0, glyph_px[0]), glyph_px[1]
    glyph = (h >= low) & (h <= high) & (w <= high) & (area >= 0.15 * w * h) & (area <= 0.8 * w * h)
    # paper around the mark: bright share of its box grown by its own size on every side
    H, W = alpha.shape
    x0, y0 = np.maximum(x - w, 0), np.maximum(y - h, 0)
    x1, y1 = np.minimum(x + 2 * w, W), np.minimum(y + 2 * h, H)
    bright = paper[y1, x1] - paper[y0, x1] - paper[y1, x0] + paper[y0, x0]
    glyph &= bright >= 0.5 * (x1 - x0) * (y1 - y0)
    return min(1.0, float((w * h)[glyph].sum() / alpha.sum()))


# --- all together --------------------------------------------------------------------------------

def features(rgba: np.ndarray, page_mask: np.ndarray, confidence: float, params: ScoreParams,
             labels: Optional[np.ndarray] = None, frame: Optional[Sequence[int]] = None) -> dict:
    """Every feature of one cut-out (flat dict of numbers, stable names).

    rgba: hxwx4 cut-out; page_mask: HxW bool, this character on its page; confidence:
    mean soft-mask probability inside the character (records.jsonl); labels: HxW, the page's
    label map (None: no other character); frame: x0, y0, x1, y1 of the panel it lies in (records.jsonl;
    None: the page).
    """
    alpha = rgba[..., 3] > 127
    s = shape_scale(alpha.shape)
    alpha_small = _resize(alpha.astype(np.uint8), s, cv2.INTER_NEAREST) > 0
    rgba_small = _resize(rgba, s, cv2.INTER_NEAREST)
    f = {"confidence": _r4(confidence), **content(rgba, page_mask), **palette(rgba_small[..., :3], alpha_small),
         **characters(alpha_small, params), **completeness(page_mask, params.edge_band, frame), **resolution(alpha, params),
         **outline(alpha_small)}
    page_short = min(page_mask.shape)
    f["text_share"] = _r4(text_share(rgba_small, (0.008 * page_short * s, 0.06 * page_short * s)))
    f.update(outline_contacts(page_mask, labels, frame))
    return f
