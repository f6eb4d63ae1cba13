"""Panels of a comic page: the regions its gutters separate.

A comic page is panels on paper. Ink is every pixel darker than `paper` (a grey level), closed
over `seal` of the page's longer side so that hatching and frames with hairline gaps hold; the
gutter is the paper connected to the page's border; each connected region that is not gutter
and covers at least `min_panel` of the page and `min_fill` of its own box (panels are
rectangles or slanted quadrilaterals; a figure drawn on white paper is not) is a panel. A page
that is one panel (an illustration, a cover, a CG, or a page whose gutters are all bridged by
art) gives one panel. On a page with framed panels, rows and columns that are mostly gutter are
gutter even where a bubble or a figure bridges them; so too on a page whose panels only show as
such once a thin line drawn round the whole page is set aside, or once those rows and columns
are cut, when the pieces are framed by dark lines. On a monochrome page, long straight dark lines
are gutters too (`frame_lines`): panels that abut along one frame line, or are parted by black
gutters, where that finds more panels framed by dark lines.

Panel borders are hard boundaries for extraction: each panel is segmented on its own crop and no
character crosses a gutter. The art outside every panel found (a figure drawn over the frames, or
panels whose gutters the art bridges) is segmented as one more crop, with the panels painted out.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


PAPER = 225  # grey level: darker is ink
FRAME_INK = 100  # grey level: darker is a frame line's
FRAME_RUN = 0.85  # share of a panel's side a frame line runs along
BORDER = 3  # px of the working copy: a line round the whole page at most this thick is a drawn border
FRAME_LINE = 0.2  # share of the page's width (height) a straight dark line runs to be a panel frame
LINE_PAD = 1  # px of the working copy a frame line is widened by when it is taken out as a gutter
LINE_THICK = 0.02  # share of the page's height (width): a line thicker than this across ...
LINE_THIN = 0.5  # ... for at least this share of its length
LINE_BAND = 0.01  # share of the page's shorter side before and after a frame line where ...
LINE_EDGES = 3  # ... at most this many line edges lie (its own far edge, another frame across a gutter; hatching: more)
LINE_COVER = 0.7  # a page its paper leaves one panel is cut at frame lines only where the panels cover this share
                  # of it and paper runs along this share of its edge (a page's margin; an illustration bleeds)
LINE_OUT = 5  # px outside a panel's box its frame line, so taken out, may lie


def find_panels(rgb: np.ndarray, paper: int = PAPER, seal: float = 0.0015, min_panel: float = 0.015,
                min_fill: float = 0.6, framed_fill: float = 0.85, bridged: float = 0.3,
                frame_lines: bool = False, max_side: int = 1600) -> np.ndarray:
    """HxWx3 uint8 page -> HxW int32 panel map: 0 = gutter, p = panel p, in reading order (rows
    top to bottom, right to left within a row, as manga reads). All ones when the page has fewer
    than two panels. On a page with two panels that fill `framed_fill` of their boxes, a row or
    column (of the page, then of each part cut off) in which less than `bridged` of the pixels are
    art is gutter too. On other pages the same cut is tried, with a thin line drawn round the whole
    page taken for what it is (a border, not art), and kept where it gives panels framed by dark
    lines (_framed_panels). With `frame_lines` (monochrome pages), straight dark lines at least
    FRAME_LINE of the page's width (height) long are gutter as well, kept where they give more
    panels, framed by dark lines. Works on a copy at most `max_side` px on its longer side."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    ink = (cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) < paper).astype(np.uint8)
    r = max(1, round(seal * max(small.shape[:2])))
    gutter = _gutter(ink, r)
    n, regions, stats, keep = _panel_regions(~gutter, min_panel, min_fill)
    framed_page = sum(_fill(stats)[i] >= framed_fill for i in keep) >= 2
    if frame_lines or not framed_page:  # both paths below look past a border line, at dark lines
        bare = _without_border(ink)
        bare_gutter = gutter if bare is ink else _gutter(bare, r)
        dark = _dark(rgb, small.shape[:2])
    if framed_page:
        # two framed rectangles: a comic page. Where a bubble or a figure drawn across a gutter
        # joins two panels, cut along the rows and columns that are mostly gutter all the same
        n, regions, stats, keep = _panel_regions(_cut_gutters(gutter, bridged), min_panel, min_fill)
    else:
        # a page border closes the gutters off from the page's edge, or art bridges them. Not kept
        # on an illustration, where the cut would split a figure on white paper, or a bubble, into
        # blocks, nor on a screentoned one, where light tone reads as paper: neither is framed by lines
        cut = _panel_regions(_cut_gutters(bare_gutter, bridged), min_panel, min_fill)
        if _framed_panels(dark, cut[2], cut[3]):
            n, regions, stats, keep = cut
    if frame_lines:
        # panels that abut along one frame line, or are parted by black gutters, show no paper between
        # them. Kept where the lines find more panels than the paper did, framed by dark lines, and,
        # where the paper found none, covering most of a page with a margin (a background's lines do not)
        lined = _panel_regions(_cut_gutters(bare_gutter | _frame_lines(dark, FRAME_LINE), bridged),
                               min_panel, min_fill)
        found = lined[2][lined[3], cv2.CC_STAT_AREA].sum() / dark.size
        margin = np.concatenate([bare_gutter[0], bare_gutter[-1], bare_gutter[:, 0], bare_gutter[:, -1]]).mean()
        if (len(lined[3]) > max(1, len(keep)) and (len(keep) >= 2 or min(found, margin) >= LINE_COVER)
                and _framed_panels(dark, lined[2], lined[3], out=LINE_OUT)):
            n, regions, stats, keep = lined
    if len(keep) < 2:
        return np.ones((h, w), np.int32)
    order = sorted(keep, key=lambda i: (_row(stats, i, keep), -stats[i, cv2.CC_STAT_LEFT]))
    lut = np.zeros(n, np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    panels = lut[regions]
    return cv2.resize(panels, (w, h), interpolation=cv2.INTER_NEAREST) if scale < 1 else panels


def _gutter(ink: np.ndarray, r: int) -> np.ndarray:
    """The paper connected to the page's border, ink closed over r px so that hairline gaps hold."""
    ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
    # a 1 px paper frame joins the paper along every edge into one gutter
    framed = cv2.copyMakeBorder(1 - ink, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    _, paper_regions = cv2.connectedComponents(framed, connectivity=4)
    return (paper_regions == paper_regions[0, 0])[1:-1, 1:-1]


def _cut_gutters(gutter: np.ndarray, bridged: float) -> np.ndarray:
    """The art of a page with the rows and columns that are mostly gutter (_xy_cut) taken out."""
    art = np.zeros_like(gutter)
    for y0, y1, x0, x1 in _xy_cut(~gutter, 0, gutter.shape[0], 0, gutter.shape[1], bridged):
        art[y0:y1, x0:x1] = ~gutter[y0:y1, x0:x1]
    return art


def _without_border(ink: np.ndarray) -> np.ndarray:
    """uint8 ink map without the ink lines, at most BORDER px (of the working copy) thick, that run
    along more than 98 % of a page edge: a border drawn round the page (a band of art that reaches
    the edge is kept). `ink` itself where there is none."""
    views = (ink, ink[::-1], ink.T, ink.T[::-1])
    depths = []
    for edge in views:  # all four measured before any is cleared
        depth = 0
        while depth <= min(BORDER, len(edge) - 1) and edge[depth].mean() > 0.98:
            depth += 1
        depths.append(depth if depth <= BORDER else 0)
    if not any(depths):
        return ink
    bare = ink.copy()
    for edge, depth in zip((bare, bare[::-1], bare.T, bare.T[::-1]), depths):  # views: writing to one writes to bare
        edge[:depth] = 0
    return bare


def _dark(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool of the working copy's size: where the page, at full size, has a pixel dark enough for
    a frame line (grey < FRAME_INK); a hairline frame stays dark where the copy is smaller."""
    dark = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < FRAME_INK).astype(np.uint8) * 255
    if dark.shape != tuple(shape):
        dark = cv2.resize(dark, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return dark > 0


def _framed_sides(dark: np.ndarray, stat: np.ndarray, tol: int = 2, out: int = 0) -> int:
    """How many sides of a region's box (cv2 stats row) that lie inside the page (more than BORDER
    + `out` px from its edge) run along a dark line, from `tol` px inside the box to `out` px
    outside it, for FRAME_RUN of their length."""
    x, y, w, h = (int(v) for v in stat[:4])
    H, W = dark.shape
    edge = BORDER + out
    sides = [dark[y - out:y + tol + 1, x:x + w].max(0) if y > edge else None,
             dark[y + h - tol - 1:y + h + out, x:x + w].max(0) if y + h < H - edge else None,
             dark[y:y + h, x - out:x + tol + 1].max(1) if x > edge else None,
             dark[y:y + h, x + w - tol - 1:x + w + out].max(1) if x + w < W - edge else None]
    return sum(s.mean() >= FRAME_RUN for s in sides if s is not None and s.size)


def _framed_panels(dark: np.ndarray, stats: np.ndarray, keep: list[int], out: int = 0) -> bool:
    """Whether regions look like panels drawn with frame lines: two of them framed by dark lines on
    at least two of their inner sides, one of them on three (a panel that bleeds off the page has
    its frame on the other sides). `out`: as _framed_sides."""
    sides = [_framed_sides(dark, stats[i], out=out) for i in keep]
    return sum(s >= 2 for s in sides) >= 2 and max(sides, default=0) >= 3


def _frame_lines(dark: np.ndarray, share: float) -> np.ndarray:
    """HxW bool: the dark pixels on straight horizontal (vertical) lines at least `share` of the
    map's width (height) long, thin (LINE_THICK) for most of their length (LINE_THIN), with few
    parallel lines on either side (LINE_BAND, LINE_EDGES): a frame line or a black gutter, not
    the chord of a dark area of the art, screentone or hatching. Widened by LINE_PAD px."""
    d = dark.astype(np.uint8)
    h, w = d.shape
    k = max(1, round(LINE_BAND * min(h, w)))
    lines = np.zeros_like(d)
    for axis, along, across in ((0, (1, max(3, round(share * w))), (round(LINE_THICK * h) + 1, 1)),  # (rows, columns)
                                (1, (max(3, round(share * h)), 1), (1, round(LINE_THICK * w) + 1))):
        line = cv2.morphologyEx(d, cv2.MORPH_OPEN, np.ones(along, np.uint8))
        # art drawn up to a frame line makes a stretch of it thick; a dark area's chord is thick all along
        thin = d & ~cv2.morphologyEx(d, cv2.MORPH_OPEN, np.ones(across, np.uint8))
        n, parts, stats, _ = cv2.connectedComponentsWithStats(line, connectivity=8)
        thin_share = np.bincount(parts[thin > 0], minlength=n) / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
        line = ((thin_share >= LINE_THIN) & (np.arange(n) > 0)).astype(np.uint8)[parts]
        # edges of lines in the k px before and the k px after each pixel (its own far edge among them)
        edges = (np.diff(line, axis=axis, prepend=0) != 0).astype(np.float32)
        size = (1, k + 1) if axis == 0 else (k + 1, 1)  # cv2 (width, height): k px and the pixel itself
        before = cv2.boxFilter(edges, -1, size, anchor=(size[0] - 1, size[1] - 1), normalize=False,
                               borderType=cv2.BORDER_CONSTANT) - edges
        after = cv2.boxFilter(edges, -1, size, anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT) - edges
        lines |= line & (np.maximum(before, after) <= LINE_EDGES + 0.5)
    return cv2.dilate(lines, np.ones((2 * LINE_PAD + 1,) * 2, np.uint8)) > 0


def _panel_regions(art: np.ndarray, min_panel: float, min_fill: float):
    """Connected regions of art (n, region map, stats) and the ids of those that are panels."""
    n, regions, stats, _ = cv2.connectedComponentsWithStats(art.astype(np.uint8), connectivity=4)
    fill = _fill(stats)
    return n, regions, stats, [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_panel * art.size
                               and fill[i] >= min_fill]


def _fill(stats: np.ndarray) -> np.ndarray:
    """Share of its box each connected region covers."""
    return stats[:, cv2.CC_STAT_AREA] / np.maximum(stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT], 1)


def _runs(keep: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    d = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _xy_cut(art: np.ndarray, y0: int, y1: int, x0: int, x1: int, max_share: float, out=None):
    """Boxes (y0, y1, x0, x1) left when a box is cut recursively along rows, then columns, in
    which art covers less than max_share: gutters that a bubble or a figure bridges."""
    out = [] if out is None else out
    sub = art[y0:y1, x0:x1]
    for axis in (1, 0):
        runs = _runs(sub.mean(axis=axis) >= max_share)
        if len(runs) >= 2:
            for a, b in runs:
                if axis == 1:
                    _xy_cut(art, y0 + a, y0 + b, x0, x1, max_share, out)
                else:
                    _xy_cut(art, y0, y1, x0 + a, x0 + b, max_share, out)
            return out
    out.append((y0, y1, x0, x1))
    return out


def _row(stats: np.ndarray, i: int, keep: list[int]) -> int:
    """Reading row of region i: how many other panels end above its vertical centre."""
    centre = stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] / 2
    return sum(stats[j, cv2.CC_STAT_TOP] + stats[j, cv2.CC_STAT_HEIGHT] <= centre for j in keep if j != i)


def panel_boxes(panels: np.ndarray) -> list[Box]:
    """Box of each panel 1..n of a panel map."""
    return [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(panels)]


def outside_panels(rgb: np.ndarray, panels: np.ndarray, min_ink: float = 0.02) -> Optional[tuple[Box, np.ndarray]]:
    """The ink outside every panel of a page with panels, when it is at least `min_ink` of the
    page: (its box, the page cropped to that box with the panels painted white), else None."""
    outside = panels == 0
    ink = outside & (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < PAPER)
    if ink.mean() < min_ink:
        return None
    ys, xs = np.nonzero(ink)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    crop = rgb[y0:y1, x0:x1].copy()
    crop[~outside[y0:y1, x0:x1]] = 255
    return (x0, y0, x1, y1), crop


def _spanned(counts: np.ndarray, min_share: float) -> int:
    inside = counts[1:][counts[1:] > 0]  # pixels per panel it touches; 0 is outside every panel
    return max(1, int((inside >= min_share * inside.sum()).sum())) if inside.size else 1


def panels_spanned(panels: np.ndarray, mask: np.ndarray, min_share: float = 0.1) -> int:
    """How many panels hold at least `min_share` of a cut-out's pixels that lie in a panel
    (`panels` and the bool `mask` cropped alike); 1 on a page without panels. Two or more: the
    cut-out crosses a panel border, which a single figure seldom does."""
    return _spanned(np.bincount(panels[mask]), min_share)


def placement(panels: np.ndarray, mask: np.ndarray, boxes: list[Box], page: tuple[int, int],
              min_share: float = 0.1) -> tuple[int, Box]:
    """(panels_spanned, frame) of a cut-out, counting its pixels once (`panels` and the bool `mask`
    cropped alike, `boxes` the page's panel_boxes, `page` its height and width). The frame is the
    box of the panel holding most of it, or the page where most of it lies outside every panel: a
    figure that runs along its frame is framed by it, not cut."""
    counts = np.bincount(panels[mask])
    p = int(counts.argmax()) if counts.size else 0
    frame = tuple(int(v) for v in boxes[p - 1]) if p else (0, 0, page[1], page[0])
    return _spanned(counts, min_share), frame
