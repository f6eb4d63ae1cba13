"""split: a learned cue that cuts ISNet's connected components into characters.

Characters that touch or overlap form one connected component. A small CNN (trained
by `kirinuki train-splitter` on sprite composites, see train_split.py) looks at the
page at 256 px and predicts, on a coarse grid, a heatmap of character centres and,
for every pixel, the offset to the centre of the character it belongs to
(Panoptic-DeepLab's centre and offset heads). A component whose pixels vote for two
or more centres, each with at least `split_share` of its votes, is cut between them;
everything else is left as it was.
A region whose pixels hold no centre at all (heatmap below `min_centre` throughout) is
background the segmenter mistook for a figure, and is dropped. A strong centre on no
region is a character the segmenter missed: the splitter's own foreground that votes for
it becomes its region (`recover_missed`).
The same network trained on heads instead of centres of mass (`extract.head_splitter`)
cuts before the centres do: characters one in front of the other share a centre of mass,
not a head. A clear head on no region recovers a missed character before a centre does.
Last, the head splitter looks at each region again on a crop around it (`split_closer`):
at 256 px a small group's heads run together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
from scipy import ndimage

from kirinuki.core.config import ExtractParams
from kirinuki.core.instances import keep_labels, label_dtype
from kirinuki.core.cards import sha256_file
from kirinuki.core.sessions import onnx_session


def grid_input(image: np.ndarray, size: int, interpolation: Optional[int] = None) -> np.ndarray:
    """HxW[xC] page (or its label map, with INTER_NEAREST) -> SxS[xC], scaled so its longer
    side is S, top-left aligned, zeros elsewhere.

    Top-left alignment makes page pixel (y, x) grid cell (y, x) * G / max(H, W) for any
    output grid G, with no offset to carry around.
    """
    nh, nw = _frame(image.shape, size)
    if interpolation is None:
        interpolation = cv2.INTER_AREA if size < max(image.shape[:2]) else cv2.INTER_LINEAR
    out = np.zeros((size, size, *image.shape[2:]), image.dtype)
    out[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=interpolation)
    return out


def _frame(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """An HxW page's height and width once its longer side is `size` (grid_input's frame)."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


class Splitter:
    """The splitter as ONNX: input [1,3,S,S] float (RGB/255 - 0.5), outputs `centres`
    [1,1,G,G] in 0..1, `offsets` [1,2,G,G] (dy, dx to the centre, in units of G) and
    `foreground` [1,1,G,G] in 0..1.
    """

    outputs = ["centres", "offsets", "foreground"]

    def __init__(self, model: Path, threads: int, name: str):
        self.session = onnx_session(model, threads)
        missing = set(self.outputs) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise ValueError(f"extract.{name} {model}: no output {', '.join(sorted(missing))} "
                             "(trained by an older kirinuki? retrain it with `kirinuki train-splitter`)")
        self.size = self.session.get_inputs()[0].shape[-1]
        self.name = name
        self.info = {name: Path(model).name, f"{name}_sha256": sha256_file(model)}

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HxWx3 uint8 page -> (GxG float32 centre heatmap, 2xGxG float32 offsets in grid cells,
        GxG float32 foreground probability)."""
        x = grid_input(rgb, self.size).astype(np.float32).transpose(2, 0, 1)[None] / 255.0 - 0.5
        centres, offsets, foreground = self.session.run(self.outputs, {"input": x})
        return centres[0, 0], offsets[0] * centres.shape[-1], foreground[0, 0]


def load_splitter(params: ExtractParams, key: str = "splitter") -> Optional[Splitter]:
    """The splitter in `extract.<key>` (splitter or head_splitter), or None when that is null."""
    model = getattr(params, key)
    if model is None:
        return None
    if not Path(model).exists():
        raise FileNotFoundError(f"extract.{key} {model}: not found (`kirinuki fetch-model` installs the shipped "
                                f"one; or train one with `kirinuki train-splitter`, or set extract.{key}: null)")
    return Splitter(model, params.threads, key)


def centre_peaks(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """GxG heatmap -> Kx2 float32 (y, x) of its local maxima (7x7) at or above `threshold`,
    in row-major order."""
    local_max = heatmap == cv2.dilate(heatmap, np.ones((7, 7), np.uint8))
    return np.argwhere(local_max & (heatmap >= threshold)).astype(np.float32)


def split_instances(labels: np.ndarray, heatmap: np.ndarray, offsets: np.ndarray,
                    peak: float, share: float, separation: float) -> np.ndarray:
    """HxW label map (1..n by falling area) -> the same with merged characters cut apart.

    Each pixel of a component votes for the centre nearest to where its offset points;
    centres with at least `share` of the component's votes share it out, each pixel to
    the nearest of them, unless two of them are closer than `separation` x sqrt(component
    area): a large figure's centre is sometimes seen twice, two figures' centres are a
    body apart. Labels stay 1..n by falling area.
    """
    peaks = centre_peaks(heatmap, peak)
    if len(peaks) < 2:
        return labels
    g = heatmap.shape[0]
    scale = g / max(labels.shape)  # page pixel -> grid cell
    parts = []
    for k in range(1, int(labels.max()) + 1):
        ys, xs = np.nonzero(labels == k)
        gy, gx = _cells(ys, xs, scale, g)
        vy, vx = ys * scale + offsets[0, gy, gx], xs * scale + offsets[1, gy, gx]
        dist = (vy[:, None] - peaks[None, :, 0]) ** 2 + (vx[:, None] - peaks[None, :, 1]) ** 2
        votes = np.bincount(dist.argmin(1), minlength=len(peaks))
        kept = np.flatnonzero(votes >= share * len(ys))
        if len(kept) < 2 or _closest_pair(peaks[kept]) < separation * np.sqrt(len(ys)) * scale:
            parts.append((ys, xs))
            continue
        owner = kept[dist[:, kept].argmin(1)]
        parts.extend((ys[owner == j], xs[owner == j]) for j in kept)
    return label_parts(parts, labels.shape)


ZOOM_STEP = 0.1  # split_closer's second opinion: a look this much nearer or farther


def split_closer(labels: np.ndarray, rgb: np.ndarray, look: Callable[[np.ndarray], tuple],
                 zoom: float, peak: float, share: float, separation: float) -> np.ndarray:
    """HxW label map (1..n by falling area), the HxWx3 page, a splitter -> the same with
    each region cut again on a closer look, labels again 1..n by falling area.

    The splitter sees the page at 256 px, where a small group's heads are a few grid
    cells across and merge. Each region is looked at again on the square crop `zoom` x
    its longer side around it, where it fills 1/zoom of the view as the larger
    characters the splitter trained on do, and is cut with `split_instances` at peaks
    >= `peak`. A cut stands only where a look ZOOM_STEP nearer or farther cuts too: at
    a single scale a folded arm or a print on a shirt can pass for a second head. A
    region whose crop would be the whole page keeps the first look.
    """
    if zoom <= 0 or labels.max() == 0:
        return labels
    h, w = labels.shape

    def cut_at(k: int, box: tuple[int, int, int, int], z: float) -> list:
        """Region k's parts on the look at zoom z (page coordinates); none where it stays whole."""
        x, y, bw, bh = box
        side = int(z * max(bw, bh))
        if side >= max(h, w):
            return []
        top = max(0, min((2 * y + bh - 1 - side) // 2, h - side))
        left = max(0, min((2 * x + bw - 1 - side) // 2, w - side))
        view = np.s_[top:top + side, left:left + side]
        heat, offsets, _ = look(rgb[view])
        cut = split_instances((labels[view] == k).astype(np.uint8), heat, offsets, peak, share, separation)
        if cut.max() < 2:
            return []
        return [(ys + top, xs + left) for ys, xs in (np.nonzero(cut == j) for j in range(1, int(cut.max()) + 1))]

    cuts = {}
    for k in range(1, int(labels.max()) + 1):
        box = cv2.boundingRect((labels == k).view(np.uint8))
        cut = cut_at(k, box, zoom)
        if cut and (cut_at(k, box, zoom - ZOOM_STEP) or cut_at(k, box, zoom + ZOOM_STEP)):
            cuts[k] = cut
    if not cuts:  # most pages: nothing to relabel
        return labels
    parts = [part for k in range(1, int(labels.max()) + 1) for part in cuts.get(k, [np.nonzero(labels == k)])]
    return label_parts(parts, labels.shape)


def drop_centreless(labels: np.ndarray, heatmap: np.ndarray, min_centre: float) -> np.ndarray:
    """HxW label map (1..n by falling area), GxG centre heatmap -> the same without the
    regions where the heatmap stays below `min_centre`, relabelled 1..m in the same order.

    Every character, however small or cut, has a centre somewhere on its pixels; on
    realbench the regions ISNet finds on empty pages and in scenery peak at 0.009-0.015,
    real characters at 0.09 or more (also on backgrounds the splitter never saw).
    """
    n = int(labels.max())
    if n == 0 or min_centre <= 0:
        return labels
    g = heatmap.shape[0]
    scale = g / max(labels.shape)
    cy, cx = _cells(np.arange(labels.shape[0]), np.arange(labels.shape[1]), scale, g)  # of each row, column
    peak = np.zeros(n + 1, np.float32)
    for k, (sy, sx) in enumerate(ndimage.find_objects(labels), start=1):  # each region within its box
        if sy is not None:
            peak[k] = heatmap[np.ix_(cy[sy], cx[sx])][labels[sy, sx] == k].max()
    kept = np.flatnonzero(peak[1:] >= min_centre) + 1
    if len(kept) == n and labels.dtype == label_dtype(n):  # most pages: nothing to drop
        return labels
    return keep_labels(labels, kept)


def recover_missed(labels: np.ndarray, heatmap: np.ndarray, offsets: np.ndarray, foreground: np.ndarray,
                   peak: float, vote_peak: float, min_area: float) -> np.ndarray:
    """HxW label map (1..n by falling area), the splitter's GxG outputs -> the same with
    the characters the segmenter missed added, labels again 1..m by falling area.

    A heatmap peak >= `peak` that lies on no region is a character the segmenter did not
    see (on realbench mostly manga figures on screentoned scenery). Its region is the
    splitter's foreground (>= 0.5) whose offsets vote for it among all peaks >= `vote_peak`,
    scaled up from the grid. A region that touches one of the segmenter's is the rest of
    that figure (legs, a wing), not a character, and is left out, as are regions smaller
    than `min_area` (share of the page).
    """
    if peak <= 0:
        return labels
    h, w = labels.shape
    g = heatmap.shape[0]
    taken = grid_input((labels > 0).astype(np.uint8), g, cv2.INTER_NEAREST) > 0
    peaks = centre_peaks(heatmap, min(peak, vote_peak))  # every centre draws votes
    cells = peaks.astype(np.intp)
    missed = [j for j, (y, x) in enumerate(cells) if heatmap[y, x] >= peak and not taken[y, x]]
    if not missed:
        return labels
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    owner = (((yy + offsets[0])[..., None] - peaks[:, 0]) ** 2
             + ((xx + offsets[1])[..., None] - peaks[:, 1]) ** 2).argmin(-1)
    free = (foreground >= 0.5) & ~taken
    claimed = labels > 0
    parts = [np.nonzero(labels == k) for k in range(1, int(labels.max()) + 1)]
    for j in missed:
        _, comp = cv2.connectedComponents(((owner == j) & free).astype(np.uint8))
        region = (comp == comp[cells[j, 0], cells[j, 1]]) & (comp > 0)
        ring = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > region
        if not region.any() or (ring & taken).any():
            continue
        side = max(h, w)  # grid cell (y, x) is page pixels (y, x) * side / G: top-left aligned
        mask = cv2.resize(region.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)[:h, :w] >= 0.5
        mask &= ~claimed  # two missed characters' regions may meet once scaled up
        if mask.sum() >= min_area * h * w:
            parts.append(np.nonzero(mask))
            claimed |= mask
    return label_parts(parts, labels.shape)


def label_parts(parts: list[tuple[np.ndarray, np.ndarray]], shape) -> np.ndarray:
    """Disjoint regions as (ys, xs) -> HxW label map, 1..n by falling area (ties: top, left)."""
    parts = sorted(parts, key=lambda p: (-len(p[0]), int(p[0].min()), int(p[1].min())))
    out = np.zeros(shape, label_dtype(len(parts)))
    for k, (ys, xs) in enumerate(parts, start=1):
        out[ys, xs] = k
    return out


def _cells(ys: np.ndarray, xs: np.ndarray, scale: float, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Page pixel coordinates -> the GxG grid cells they fall in (`scale` = G / longer side)."""
    return np.minimum((ys * scale).astype(np.intp), g - 1), np.minimum((xs * scale).astype(np.intp), g - 1)


def _closest_pair(points: np.ndarray) -> float:
    """Kx2 points, K >= 2 -> the smallest distance between two of them."""
    d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(points), 1)].min())
