"""Lettering: speech balloons, captions and signs are no characters (monochrome comic pages).

Two steps. First the regions that hold only text are dropped: inside a speech bubble the dark
pixels are glyphs, many small strokes, each a short span of the bubble. Inside a drawn character
they are line art, which joins into long strokes (the hair, a face's outline, the folds of
clothes). So a region whose longest dark stroke, away from its own outline, spans less than
`min_span` of its box's diagonal is lettering (real manga pages: half the cut-outs that hold no
figure are speech bubbles).

Then the balloons are cut out of the regions left: a balloon's inside is paper enclosed by ink,
convex, that holds several small holes (glyphs) and no large one (a face's eyes are large next to
glyphs; its outline, with the hair, is not convex). A figure speaking merges with its balloon in
ISNet's mask; without it, the cut-out holds no text and its box is the figure's own.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from kirinuki.core.instances import fill_holes, keep_labels
from kirinuki.extract.panels import PAPER

INK = 128  # grey level: darker is a stroke
OUTLINE = 0.03  # the region's outline (a bubble's border) this share of its diagonal deep is left out

# Balloons (chosen on the real-page check's tuning part, Black Jack and Ubunchu!; see
# docs/experiments/2026-12-06-speech-balloons.md):
BALLOON_AREA = (0.001, 0.08)  # share of the page a balloon's inside covers
BALLOON_CONVEX = 0.9  # its area over its convex hull's, at least
GLYPHS = 6  # holes in it, at least ...
GLYPH_INK = 0.03  # ... together this share of it, at least ...
GLYPH_MAX = 0.04  # ... none larger than this share of it
BALLOON_GROW = 0.004  # the inside grown by this share of the page's longer side: the balloon's outline
BALLOON_SIDE = 1000  # searched on a copy at most this many px on its longer side (glyphs stay a few px)
LEFT = 0.25  # a region left with under this share of its pixels was the balloon: it goes


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


def balloons(grey: np.ndarray) -> np.ndarray:
    """HxW uint8 grey page -> HxW bool: the speech balloons, their outline included."""
    H, W = grey.shape
    scale = min(1.0, BALLOON_SIDE / max(H, W))
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
    h, w = grey.shape
    n, comp, stats, _ = cv2.connectedComponentsWithStats((grey >= PAPER).astype(np.uint8), connectivity=4)
    found = np.zeros((h, w), bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if not BALLOON_AREA[0] * h * w <= area <= BALLOON_AREA[1] * h * w or x == 0 or y == 0 \
                or x + bw >= w or y + bh >= h:  # paper along the border is the page's, not a balloon
            continue
        paper = comp[y:y + bh, x:x + bw] == i
        inside = fill_holes(paper)
        size = float(inside.sum())
        contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if size < BALLOON_CONVEX * max(1.0, cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))):
            continue
        glyphs = inside & ~paper
        m, _, gstats, _ = cv2.connectedComponentsWithStats(glyphs.astype(np.uint8), connectivity=8)
        if m - 1 >= GLYPHS and glyphs.sum() >= GLYPH_INK * size and gstats[1:, cv2.CC_STAT_AREA].max() <= GLYPH_MAX * size:
            found[y:y + bh, x:x + bw] |= inside
    r = max(1, round(BALLOON_GROW * max(h, w)))
    found = cv2.dilate(found.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    return (cv2.resize(found, (W, H), interpolation=cv2.INTER_NEAREST) if scale < 1 else found) > 0


def cut_balloons(labels: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """HxW label map, its HxWx3 uint8 page -> the regions without the speech balloons: a piece left
    wholly within BALLOON_GROW of a balloon was its outline and goes too, the other pieces stay (a
    body beside the balloon); a region left with under LEFT of its pixels goes. Relabelled 1..m in
    the same order."""
    if not labels.max():
        return labels
    inside = balloons(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    if not (inside & (labels > 0)).any():
        return labels
    before = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    out = np.where(inside, 0, labels)
    r = max(1, round(BALLOON_GROW * max(labels.shape)))
    far = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) == 0
    kept = []
    for k, box in enumerate(ndimage.find_objects(out), start=1):
        if box is None:  # the region lay inside a balloon
            continue
        sy, sx = box
        n, pieces = cv2.connectedComponents((out[sy, sx] == k).astype(np.uint8), connectivity=8)
        away = np.unique(pieces[far[sy, sx]])
        out[sy, sx][(pieces > 0) & ~np.isin(pieces, away)] = 0
        if (out[sy, sx] == k).sum() >= LEFT * before[k]:
            kept.append(k)
    return keep_labels(out, kept)
