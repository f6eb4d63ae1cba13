"""The splitter's training data: composite pages with exact targets.

Training pages are composites: 0-3 sprites (RGBA character art, e.g. visual-novel
sprites) scaled, flipped, recoloured and overlapped on background pictures, a share
of them turned into screentoned monochrome. The composite knows every pixel's
character, so the targets are exact: a Gaussian at each character's centre (of mass,
or of its head: `centre`) and, per character pixel, the offset to it. Seeded: the same
inputs and arguments give the same pages.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from kirinuki.core.cards import sha256_file
from kirinuki.core.imageio import IMAGE_SUFFIXES, write_json, write_png, write_text
from kirinuki.extract.split import grid_input
from kirinuki.synth.figure import figure_sprite

INPUT = 256  # network input side
GRID = 128  # output grid side (stride 2)
SIGMA = 3.0  # centre heatmap Gaussian, grid cells
CENTRES = ("mass", "head")
# how often a page holds 0, 1, 2, 3 characters: training leans on the merges; evaluation pages
# follow realbench dev's scenes (and the sealed composites built like them)
TRAIN_COUNTS = (0.08, 0.3, 0.34, 0.28)
EVAL_COUNTS = (0.09, 0.53, 0.29, 0.09)
EVAL_SIDE, EVAL_MANGA_SHARE = 1024, 0.25  # evaluation pages: realbench dev's size and about its manga share


def _images(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in Path(f).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _sprite(path: Path, log: Callable[[str], None]) -> Optional[np.ndarray]:
    """An image with an alpha channel -> RGBA uint8 cropped to its opaque part; None (logged) if not one."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim != 3 or a.shape[2] != 4 or not (a[..., 3] > 127).any():
        log(f"{path}: skipped, not an image with an alpha channel and opaque pixels")
        return None
    ys, xs = np.nonzero(a[..., 3] > 127)
    return cv2.cvtColor(a[ys.min():ys.max() + 1, xs.min():xs.max() + 1], cv2.COLOR_BGRA2RGBA)


def load_sprites(folders: list[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Every image with an alpha channel under `folders` -> RGBA uint8 cropped to its opaque part."""
    return [s for s in (_sprite(p, log) for p in _images(folders)) if s is not None]


def load_backgrounds(folders: list[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Every readable image under `folders` -> RGB uint8."""
    out = []
    for path in _images(folders):
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            log(f"{path}: skipped, not a readable image")
            continue
        out.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    return out


def screentone(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8 -> the same page as black-and-white manga: line art kept black, tones
    rendered as a rotated dot screen of 3-6 px."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    period, angle = rng.uniform(3, 6), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    v = (yy * np.cos(angle) - xx * np.sin(angle)) / period
    screen = (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v) + 2) * (255 / 4)
    out = np.where((grey > screen) | (grey > 235), 255, 0).astype(np.uint8)
    out[cv2.Canny(grey, 60, 150) > 0] = 0
    return np.repeat(out[..., None], 3, axis=2)


def _hue_shift(rgb: np.ndarray, shift: int) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def sketch(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8 -> a rough: the drawing's lines in one pencil colour on a flat pale fill."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    lines = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 9, 8)
    fill, pencil = rng.uniform(205, 250, 3), rng.uniform(60, 150) * rng.uniform(0.8, 1.0, 3)
    return (fill + (pencil - fill) * lines[..., None]).astype(np.uint8)


def _jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness and saturation changed at random (other artists' palettes)."""
    x = rgb.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.4, 1.3)
    x = (x - 128) * rng.uniform(0.7, 1.2) + 128 + rng.uniform(-30, 30)
    return np.clip(x, 0, 255).astype(np.uint8)


def chibi(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGBA sprite -> super-deformed proportions: the top (head) enlarged, the rest squashed."""
    h, w = rgba.shape[:2]
    cut = int(h * rng.uniform(0.2, 0.3))
    k = rng.uniform(1.3, 1.8)
    head = cv2.resize(np.ascontiguousarray(rgba[:cut]), (max(1, int(w * k)), max(1, int(cut * k))))
    body = cv2.resize(np.ascontiguousarray(rgba[cut:]), (w, max(1, int((h - cut) * rng.uniform(0.3, 0.5)))))
    out = np.zeros((head.shape[0] + body.shape[0], max(w, head.shape[1]), 4), np.uint8)
    x0 = (out.shape[1] - w) // 2
    out[head.shape[0]:, x0:x0 + w] = body
    hx = (out.shape[1] - head.shape[1]) // 2
    top = out[:head.shape[0], hx:hx + head.shape[1]]
    top[:] = np.where(head[..., 3:] > 0, head, top)
    return out


def composite(sprites: list[np.ndarray], backgrounds: list[np.ndarray], rng: np.random.Generator,
              side: int = 640, manga_share: float = 0.3, drawn_share: float = 0.0,
              augment: bool = True, counts: tuple[float, ...] = TRAIN_COUNTS,
              placed: Optional[list] = None) -> tuple[np.ndarray, np.ndarray]:
    """One training page: (HxWx3 uint8, HxW uint8 labels 0 = background, 1..n back to front).

    Characters are 0.15-1.15 page heights tall, mostly standing on or cut by the bottom
    edge; half of them stand next to or in front of an earlier one (the cases connected
    components merge), and later ones occlude earlier ones. With `augment`, some are
    recoloured, drawn as a pale rough or given chibi proportions, so that the net learns
    characters rather than these sprites (evaluation pages leave it off: the art as drawn).
    A `drawn_share` of the characters are drawn afresh by synth (a new face, hair, outfit
    and pose each time) instead. A character left with less than 0.4% of the page visible is
    background. `placed`, if given, gets each label's index in `sprites` (-1: drawn), in label order.
    """
    h, w = (side, side * 3 // 4) if rng.random() < 0.5 else (side * 3 // 4, side)
    bg = backgrounds[rng.integers(len(backgrounds))]
    scale = max(h / bg.shape[0], w / bg.shape[1]) * rng.uniform(1.0, 1.6)
    bg = cv2.resize(bg, (int(bg.shape[1] * scale) + 1, int(bg.shape[0] * scale) + 1), interpolation=cv2.INTER_AREA)
    y0, x0 = rng.integers(0, bg.shape[0] - h + 1), rng.integers(0, bg.shape[1] - w + 1)
    page = bg[y0:y0 + h, x0:x0 + w].astype(np.float32)
    if rng.random() < 0.5:
        page = page[:, ::-1]
    labels = np.zeros((h, w), np.uint8)
    n = rng.choice(len(counts), p=counts)
    centres = []  # x centres of the characters placed so far
    which = []  # sprite index of label k at which[k - 1]
    for k in range(1, n + 1):
        drawn = drawn_share and rng.random() < drawn_share  # no draw at 0: the composites stay as they were
        which.append(-1 if drawn else int(rng.integers(len(sprites))))
        s = figure_sprite(rng, int(1.15 * h)) if drawn else sprites[which[-1]]
        if rng.random() < 0.5:
            s = s[:, ::-1]
        if augment and rng.random() < 0.15:
            s = chibi(s, rng)
        sh = max(2, int(rng.uniform(0.15, 1.15) * h))
        sw = max(2, int(s.shape[1] * sh / s.shape[0] * rng.uniform(0.9, 1.1)))
        if sw > 1.3 * w:
            continue
        s = cv2.resize(np.ascontiguousarray(s), (sw, sh), interpolation=cv2.INTER_AREA)
        if augment and rng.random() < 0.3:  # the same sprite twice must not look like one character
            s[..., :3] = _hue_shift(s[..., :3], int(rng.integers(20, 160)))
        if augment and rng.random() < 0.3:
            s[..., :3] = _jitter(s[..., :3], rng)
        if augment and rng.random() < 0.12:
            s[..., :3] = sketch(s[..., :3], rng)
        if centres and rng.random() < 0.5:
            x = int(centres[rng.integers(len(centres))] + rng.uniform(-0.7, 0.7) * sw - sw / 2)
        else:
            x = int(rng.uniform(-0.25 * sw, w - 0.75 * sw))
        centres.append(x + sw / 2)
        y = int(h - sh * rng.uniform(0.75, 1.0)) if rng.random() < 0.6 else int(rng.uniform(0, max(1, h - sh)))
        ty0, tx0, ty1, tx1 = max(0, y), max(0, x), min(h, y + sh), min(w, x + sw)
        if ty1 <= ty0 or tx1 <= tx0:
            continue
        part = s[ty0 - y:ty1 - y, tx0 - x:tx1 - x].astype(np.float32)
        alpha = part[..., 3:] / 255
        page[ty0:ty1, tx0:tx1] = page[ty0:ty1, tx0:tx1] * (1 - alpha) + part[..., :3] * alpha
        labels[ty0:ty1, tx0:tx1][alpha[..., 0] > 0.5] = k
    page = np.clip(page, 0, 255).astype(np.uint8)
    visible = [k for k in range(1, n + 1) if (labels == k).sum() > 0.004 * h * w]
    labels = np.searchsorted(visible, labels, side="right").astype(np.uint8) * np.isin(labels, visible)
    if placed is not None:
        placed.extend(which[k - 1] for k in visible)
    if rng.random() < manga_share:
        page = screentone(page, rng)
    return page, labels.astype(np.uint8)


def write_composites(sprite_dirs: list[Path], background_dirs: list[Path], out: Path, pages: int, seed: int,
                     log: Callable[[str], None]) -> dict:
    """Evaluation pages for `kirinuki validate`: out/images/<name>_<i>.png and out/gt/<name>_<i>_gt.png
    (<name> = out's folder name, so folds pool without clashes), 1024 px, a quarter screentoned, the
    sprites as drawn, as many characters a page as realbench dev's scenes. out/scenes.csv names each
    page's sprites as `<folder>/<file>` (realbench's format: `calibrate --sources` folds by folder);
    out/composites.json every file used, with sha256. Seeded, byte-identical."""
    missing = [str(d) for d in [*sprite_dirs, *background_dirs] if not Path(d).is_dir()]
    if missing:
        raise ValueError(f"composites: {', '.join(missing)}: no such folder")
    names, sprites = [], []
    for d in map(Path, sprite_dirs):
        for path in _images([d]):
            s = _sprite(path, log)
            if s is not None:
                names.append(f"{d.name}/{path.relative_to(d).as_posix()}")
                sprites.append(s)
    backgrounds = load_backgrounds(background_dirs, log)
    if not sprites or not backgrounds:
        raise ValueError(f"composites: {len(sprites)} sprites and {len(backgrounds)} backgrounds found; "
                         "need at least one of each")
    rng, rows = np.random.default_rng(seed), io.StringIO()
    scenes = csv.writer(rows, lineterminator="\n")
    scenes.writerow(["id", "width", "height", "n_chars", "style", "sprites"])
    for i in range(pages):
        placed = []
        page, labels = composite(sprites, backgrounds, rng, side=EVAL_SIDE, manga_share=EVAL_MANGA_SHARE,
                                 augment=False, counts=EVAL_COUNTS, placed=placed)
        stem = f"{out.name}_{i:04d}"
        write_png(out / "images" / f"{stem}.png", page)
        write_png(out / "gt" / f"{stem}_gt.png", labels)
        style = "manga" if (page[..., 0] == page[..., 1]).all() and (page[..., 1] == page[..., 2]).all() else "colour"
        scenes.writerow([stem, page.shape[1], page.shape[0], len(placed), style, ";".join(names[j] for j in placed)])
    write_text(out / "scenes.csv", rows.getvalue())
    card = {"kind": "kirinuki composites", "pages": pages, "seed": seed, "side": EVAL_SIDE,
            "manga_share": EVAL_MANGA_SHARE, "character_counts": EVAL_COUNTS,
            "sprites": {str(p): sha256_file(p) for p in _images(sprite_dirs)},
            "backgrounds": {str(p): sha256_file(p) for p in _images(background_dirs)}}
    write_json(out / "composites.json", card)
    return card


def targets(labels: np.ndarray, centre: str = "mass") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SxS labels (grid_input's frame) -> (GxG centre heatmap, 2xGxG offsets in units of G,
    GxG foreground), G = GRID. `centre`: each character's centre of mass, or its head (the
    top fifth of what is visible of it): characters one in front of the other share a
    centre of mass but not a head."""
    lab = cv2.resize(labels, (GRID, GRID), interpolation=cv2.INTER_NEAREST)
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    heat = np.zeros((GRID, GRID), np.float32)
    offsets = np.zeros((2, GRID, GRID), np.float32)
    for k in range(1, int(lab.max()) + 1):
        m = lab == k
        if not m.any():
            continue
        at = m
        if centre == "head":
            ys = yy[m]
            at = m & (yy <= ys.min() + max(2.0, 0.2 * (ys.max() - ys.min() + 1)))
        cy, cx = yy[at].mean(), xx[at].mean()
        heat = np.maximum(heat, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * SIGMA ** 2)))
        offsets[0][m], offsets[1][m] = (cy - yy[m]) / GRID, (cx - xx[m]) / GRID
    return heat, offsets, (lab > 0).astype(np.float32)


def training_set(sprites, backgrounds, n: int, seed: int, manga_share: float, centre: str = "mass",
                 drawn_share: float = 0.0):
    """n composites at the network's input size -> (Nx3xSxS uint8, targets as float32 arrays)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3, INPUT, INPUT), np.uint8)
    heat = np.zeros((n, 1, GRID, GRID), np.float32)
    off = np.zeros((n, 2, GRID, GRID), np.float32)
    fg = np.zeros((n, 1, GRID, GRID), np.float32)
    for i in range(n):
        page, labels = composite(sprites, backgrounds, rng, manga_share=manga_share, drawn_share=drawn_share)
        x[i] = grid_input(page, INPUT).transpose(2, 0, 1)
        heat[i, 0], off[i], fg[i, 0] = targets(grid_input(labels, INPUT, cv2.INTER_NEAREST), centre)
    return x, heat, off, fg
