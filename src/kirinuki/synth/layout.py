"""Page layout: panels, backgrounds, the figures placed in them, speech bubbles, sound
effects and the manga look (screentone), rendered into one page and its label map.

Ground truth stays exact: characters are painted with their labels (figure._paint),
later characters overwrite earlier ones, and foreground (panel frames, bubbles,
lettering) zeroes the labels it covers, so the label map holds exactly the visible pixels
of each character. Randomness comes only from `np.random.default_rng(seed)`: same
seed, same bytes.
"""
from __future__ import annotations

import cv2
import numpy as np

from kirinuki.synth.authors import BACKGROUNDS, CLOTHES, HAIR, INK, PAPER, PASTEL, RGB, AuthorStyle, author_style
from kirinuki.synth.figure import _body, _ellipse, _extent, _figure_ops, _new_character, _paint, _shade, _tint

STYLES = ("colour", "manga")
KINDS = ("normal", "black", "empty")
MIN_VISIBLE = 0.003  # a character with less of the page than this visible is dropped
SYLLABLES = ("ka", "ki", "ku", "ne", "no", "ma", "mi", "ra", "ri", "to", "su", "ta",
             "yo", "ha", "n", "sa", "shi", "chi", "wa", "ga", "de", "ko", "na", "ai")
SFX_WORDS = ("DOKI", "ZAWA", "BAN", "GOGOGO", "DON", "KYAA", "PAN", "SHIIN", "GIRI", "DOSU")

_ANONYMOUS = author_style("anonymous", 0)


# ----------------------------------------------------------------------------- placement

def _cast(rng: np.random.Generator, n: int, w: int, h: int, author: AuthorStyle, paneled: bool):
    """n characters for a w x h region: list of (ops, 2x3 affine to pixels), in draw order.

    Characters stand apart in slots or crowd together (overlapping, shuffled depth); some
    are framed from the waist or chest up (cut by the bottom edge), some pushed past a side.
    """
    together = n > 1 and rng.random() < 0.6
    slot = w / max(n, 1) if not together else w
    group_x, spacing = rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.65)
    cast = []
    for i in range(n):
        c = _new_character(rng, author)
        ops, b = _figure_ops(c), _body(c)
        flip = 1.0 if rng.random() < 0.5 else -1.0
        lean = np.radians(rng.uniform(-8, 8)) if rng.random() < 0.6 else 0.0
        m = np.array([[np.cos(lean), -np.sin(lean)], [np.sin(lean), np.cos(lean)]]) @ np.diag([flip, 1.0])
        x0, y0, x1, y1 = _extent(ops, m)
        framing = rng.choice(["full", "waist", "bust"], p=[0.25, 0.4, 0.35] if paneled else [0.5, 0.3, 0.2])
        cut = {"full": None, "waist": rng.uniform(b.waist, b.hip + 0.3 * (b.ankle - b.hip)),
               "bust": rng.uniform(b.shoulder + 0.2, b.waist)}[framing]
        bottom = y1 if cut is None else float((m @ [0.0, cut])[1])
        share = rng.uniform(0.25, 0.95) if framing == "full" and not paneled else rng.uniform(0.45, 0.95)
        u = share * h / (bottom - y0)
        if not together and (x1 - x0) * u > slot:  # apart: keep each inside its slot
            u = slot / (x1 - x0)
        width = (x1 - x0) * u
        cx = group_x + (i - (n - 1) / 2) * spacing * width if together else \
            (i + 0.5) * slot + rng.uniform(-0.15, 0.15) * (slot - width)
        if (i == 0 or i == n - 1) and rng.random() < 0.2:  # partly out past the nearer side
            off = (0.5 - rng.uniform(0.2, 0.45)) * width
            cx = off if cx < w / 2 else w - off
        if cut is None:  # feet on the ground near the bottom, or legs cut by it
            feet = h - rng.uniform(0.01, 0.06) * h if rng.random() > 0.15 else h + rng.uniform(0.1, 0.3) * width
            ty = feet - y1 * u
        else:
            ty = h * rng.uniform(1.0, 1.03) - bottom * u
        cast.append((ops, np.hstack([m * u, [[cx - (x0 + x1) / 2 * u], [ty]]])))
    order = rng.permutation(n) if together else range(n)
    return [cast[i] for i in order]


def _panels(rng: np.random.Generator, w: int, h: int) -> list[tuple[int, int, int, int]]:
    """2-4 panel interiors (x0, y0, x1, y1): bands along the page's longer side, some split in two."""
    margin, gutter = round(0.045 * min(w, h)), round(0.022 * min(w, h))
    long_, short = max(w, h), min(w, h)
    n_bands = int(rng.integers(2, 4))
    shares = np.cumsum(np.r_[0, rng.dirichlet(np.full(n_bands, 5.0))])
    cuts = margin + np.round(shares * (long_ - 2 * margin)).astype(int)
    rects = []
    for k in range(n_bands):
        a = cuts[k] + (gutter // 2 if k else 0)
        b = cuts[k + 1] - (gutter - gutter // 2 if k < n_bands - 1 else 0)
        spans = [(margin, short - margin)]
        if len(rects) + n_bands - k < 4 and rng.random() < 0.55:
            s = margin + round(rng.uniform(0.35, 0.65) * (short - 2 * margin))
            spans = [(margin, s - gutter // 2), (s + gutter - gutter // 2, short - margin)]
        rects += [(p, a, q, b) if h >= w else (a, p, b, q) for p, q in spans]
    return rects


# ----------------------------------------------------------------------------- backgrounds

def _gradient(w: int, h: int, c0: RGB, c1: RGB, angle: float) -> np.ndarray:
    """HxWx3 uint8 linear ramp c0 -> c1 along `angle` degrees (90 = downwards)."""
    a = np.radians(angle)
    t = np.add.outer(np.arange(h, dtype=np.float32) * np.sin(a), np.arange(w, dtype=np.float32) * np.cos(a))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = np.array(c0, np.float32), np.array(c1, np.float32)
    return (c0 + t[..., None] * (c1 - c0) + 0.5).astype(np.uint8)


def _background(rng: np.random.Generator, w: int, h: int, author: AuthorStyle, style: str, lw: int) -> np.ndarray:
    """HxWx3 uint8 scenery, of a kind the author favours."""
    p = np.array(author.backgrounds)
    kind = BACKGROUNDS[rng.choice(len(BACKGROUNDS), p=p / p.sum())]
    pen = max(1, lw - 1)  # scenery in a finer pen than the characters, as on real pages
    if kind == "sky":
        return _sky(rng, w, h, pen, style)
    if kind == "interior":
        return _interior(rng, w, h, pen)
    if kind == "tone":
        return _tone_backdrop(rng, w, h)
    if kind == "focus":
        return _focus_lines(rng, w, h)
    c0, c1 = (PASTEL[i] for i in rng.choice(len(PASTEL), 2, replace=False))
    if kind == "plain":
        img = np.full((h, w, 3), c0 if rng.random() < 0.5 else PAPER, np.uint8)
    else:
        img = _gradient(w, h, c0, _shade(c1, 0.9), float(rng.choice([90, 60, 120, 45])))
    for _ in range(int(rng.integers(0, 12))):  # bokeh
        centre, r = (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(3, max(4, w // 25)))
        cv2.circle(img, centre, r, _tint(c1, 0.6), -1, cv2.LINE_AA)
    return img


def _sky(rng, w, h, pen, style) -> np.ndarray:
    """Blue sky with clouds over grass, sea, a city skyline or nothing."""
    img = _gradient(w, h, (96, 160, 232), (214, 234, 250), 90)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, 0.55 * h), rng.uniform(0.05, 0.12) * w
        puffs = [(int(cx + rng.uniform(-1.6, 1.6) * s), int(cy + rng.uniform(-0.4, 0.4) * s),
                  int(s * rng.uniform(0.5, 0.9))) for _ in range(int(rng.integers(3, 7)))]
        if style == "manga":  # ink every puff first, then fill: one outline around the cloud
            for x, y, r in puffs:
                cv2.circle(img, (x, y), r + pen, INK, -1, cv2.LINE_AA)
        for x, y, r in puffs:
            cv2.circle(img, (x, y), r, PAPER, -1, cv2.LINE_AA)
    horizon = int(rng.uniform(0.6, 0.88) * h)
    ground = rng.choice(["grass", "city", "sea", "none"])
    if ground == "grass":
        img[horizon:] = _gradient(w, h - horizon, (140, 200, 110), (90, 150, 80), 90)
    elif ground == "sea":
        img[horizon:] = _gradient(w, h - horizon, (70, 140, 210), (40, 100, 170), 90)
        for y in range(horizon + 6, h, 14):
            x = int(rng.integers(0, w))
            cv2.line(img, (x, y), (x + int(rng.integers(20, 80)), y), (200, 230, 250), pen, cv2.LINE_AA)
    if ground != "none":
        cv2.line(img, (0, horizon), (w, horizon), INK, pen, cv2.LINE_AA)
    if ground == "city":
        x = 0
        while x < w:
            bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.1, 0.35) * h)
            grey = int(rng.integers(150, 210))
            cv2.rectangle(img, (x, horizon - bh), (x + bw, h), (grey, grey, grey + 15), -1)
            cv2.rectangle(img, (x, horizon - bh), (x + bw, h), INK, pen)
            for wy in range(horizon - bh + 8, h - 8, 18):
                for wx in range(x + 6, x + bw - 10, 14):
                    cv2.rectangle(img, (wx, wy), (wx + 6, wy + 8), (240, 232, 170), -1)
            x += bw
    return img


def _interior(rng, w, h, pen) -> np.ndarray:
    """A room: wall, wooden floor, and a few of window, door, shelf, blackboard, picture, table."""
    wall = PASTEL[rng.integers(len(PASTEL))]
    img = _gradient(w, h, wall, _shade(wall, 0.88), 90)
    floor = int(rng.uniform(0.58, 0.8) * h)
    wood = (int(rng.integers(150, 200)), int(rng.integers(110, 140)), int(rng.integers(70, 100)))
    img[floor:] = _gradient(w, h - floor, wood, _shade(wood, 0.8), 90)
    for x in np.linspace(-w, 2 * w, 14).astype(int):  # boards run towards a vanishing point
        cv2.line(img, (w // 2 + (x - w // 2) // 4, floor), (x, h), _shade(wood, 0.7), pen, cv2.LINE_AA)
    cv2.line(img, (0, floor), (w, floor), INK, pen + 1, cv2.LINE_AA)
    items = rng.choice(["window", "door", "shelf", "board", "picture", "table"],
                       size=int(rng.integers(2, 5)), replace=False)
    for item in items:
        x0 = int(rng.uniform(0.02, 0.7) * w)
        if item == "window":
            x1, y0, y1 = x0 + int(0.26 * w), int(0.12 * h), int(0.12 * h + 0.3 * floor)
            cv2.rectangle(img, (x0, y0), (x1, y1), (176, 214, 246), -1)
            cv2.line(img, (x0 + (x1 - x0) // 5, y1), (x1 - (x1 - x0) // 6, y0), (226, 240, 252), max(3, w // 60))
            cv2.rectangle(img, (x0, y0), (x1, y1), (250, 250, 250), pen + 3)
            cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1), (250, 250, 250), pen + 2)
            cv2.rectangle(img, (x0 - pen - 2, y0 - pen - 2), (x1 + pen + 2, y1 + pen + 2), INK, pen)
        elif item == "door":
            x1, y0 = x0 + int(0.18 * w), floor - int(0.55 * floor)
            cv2.rectangle(img, (x0, y0), (x1, floor), _shade(wood, 0.85), -1)
            cv2.rectangle(img, (x0, y0), (x1, floor), INK, pen)
            cv2.circle(img, (x1 - 12, (y0 + floor) // 2), max(3, w // 120), (220, 190, 80), -1, cv2.LINE_AA)
        elif item == "shelf":
            x1, y0 = x0 + int(0.22 * w), floor - int(0.5 * floor)
            cv2.rectangle(img, (x0, y0), (x1, floor), _shade(wood, 0.7), -1)
            shelves = np.linspace(y0, floor, 5).astype(int)
            for top, base in zip(shelves, shelves[1:]):
                bx = x0 + 6
                while bx < x1 - 12:
                    bw = int(rng.integers(5, 12))
                    cv2.rectangle(img, (bx, base - int(rng.uniform(0.55, 0.85) * (base - top))), (bx + bw, base),
                                  CLOTHES[rng.integers(len(CLOTHES))], -1)
                    bx += bw + 2
                cv2.line(img, (x0, base), (x1, base), INK, pen)
            cv2.rectangle(img, (x0, y0), (x1, floor), INK, pen)
        elif item == "board":
            x1, y0, y1 = x0 + int(0.4 * w), int(0.15 * h), int(0.15 * h + 0.3 * floor)
            cv2.rectangle(img, (x0, y0), (x1, y1), (46, 92, 70), -1)
            cv2.rectangle(img, (x0, y0), (x1, y1), (150, 110, 70), pen + 3)
            for k in range(3):
                y = y0 + (k + 1) * (y1 - y0) // 4
                cv2.line(img, (x0 + 15, y), (x0 + 15 + int(rng.uniform(0.2, 0.8) * (x1 - x0 - 30)), y),
                         (230, 240, 230), pen, cv2.LINE_AA)
        elif item == "picture":
            x1, y0 = x0 + int(0.12 * w), int(0.2 * h)
            cv2.rectangle(img, (x0, y0), (x1, y0 + x1 - x0), PASTEL[rng.integers(len(PASTEL))], -1)
            cv2.rectangle(img, (x0, y0), (x1, y0 + x1 - x0), (120, 80, 50), pen + 2)
        else:  # a table standing on the floor
            x1, top = x0 + int(0.35 * w), floor + int(0.1 * (h - floor))
            for lx in (x0 + 8, x1 - 16):
                cv2.rectangle(img, (lx, top), (lx + 8, min(h - 1, top + int(0.3 * h))), _shade(wood, 0.6), -1)
            cv2.rectangle(img, (x0, top - 14), (x1, top), _shade(wood, 1.1), -1)
            cv2.rectangle(img, (x0, top - 14), (x1, top), INK, pen)
    return img


def _tone_backdrop(rng, w, h) -> np.ndarray:
    """Pastel with a dot or stripe pattern (pop-art in colour, screentone in manga)."""
    img = np.full((h, w, 3), PASTEL[rng.integers(len(PASTEL))], np.uint8)
    pitch = int(rng.integers(10, 22))
    yy, xx = np.ogrid[:h, :w]
    if rng.random() < 0.5:
        on = (xx % pitch - pitch / 2) ** 2 + (yy % pitch - pitch / 2) ** 2 < (pitch * 0.28) ** 2
    else:
        on = (xx + yy) % pitch < pitch * 0.3
    img[on] = _tint(HAIR[rng.integers(len(HAIR))], 0.4)
    return img


def _focus_lines(rng, w, h) -> np.ndarray:
    """Manga concentration lines: thin ink wedges converging on a point."""
    img = np.full((h, w, 3), PAPER, np.uint8)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.25, 0.6) * h
    r_in, r_out = rng.uniform(0.25, 0.45) * max(w, h), 1.5 * max(w, h)
    for a in rng.uniform(0, 2 * np.pi, int(rng.integers(70, 140))):
        spread, r0 = rng.uniform(0.004, 0.014), r_in * rng.uniform(0.9, 1.4)
        wedge = [[cx + r0 * np.cos(a), cy + r0 * np.sin(a)],
                 [cx + r_out * np.cos(a - spread), cy + r_out * np.sin(a - spread)],
                 [cx + r_out * np.cos(a + spread), cy + r_out * np.sin(a + spread)]]
        cv2.fillPoly(img, [np.round(wedge).astype(np.int32)], INK, cv2.LINE_AA)
    return img


# ----------------------------------------------------------------------------- foreground

def _glyphs(shape: tuple[int, int], text: str, org: tuple[int, int], font: int, scale: float,
            grow: int = 0) -> np.ndarray:
    """HxW bool mask of `text`, hard-edged and thickened by `grow` pixels.

    OpenCV's Hershey text is always anti-aliased and caps its stroke width, so text is
    rasterised to a mask and painted through it: pixels and occluder mask then agree.
    """
    mask = np.zeros(shape, np.uint8)
    cv2.putText(mask, text, org, font, scale, 255, 2)
    if grow:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask > 127


def _romaji(rng: np.random.Generator) -> str:
    return "".join(SYLLABLES[i] for i in rng.integers(len(SYLLABLES), size=int(rng.integers(2, 4))))


def _bubble(rng, rgb: np.ndarray, occ: np.ndarray, labels: np.ndarray, rect, lw: int) -> None:
    """A speech bubble (smooth, or spiky for a shout) with a tail and romaji, in panel `rect`.

    Drawn into rgb (HxWx3) and occ (HxW, 255 = occluding) with the same calls. Mostly
    placed where it hides the least of the characters (labels, HxW), like a letterer would.
    """
    x0, y0, x1, y1 = rect
    pw, ph = x1 - x0, y1 - y0
    rx = rng.uniform(0.14, 0.26) * pw
    ry = min(rx * rng.uniform(0.55, 1.0), 0.3 * ph)
    spots = [(rng.uniform(x0 + 0.6 * rx, x1 - 0.6 * rx), rng.uniform(y0 + 0.5 * ry, max(y0 + 0.6 * ry, y1 - 0.5 * ry)))
             for _ in range(8)]
    if rng.random() < 0.8:  # hide little of the characters and of other bubbles
        def cost(s):
            box = np.s_[max(0, int(s[1] - ry)):int(s[1] + ry), max(0, int(s[0] - rx)):int(s[0] + rx)]
            return np.count_nonzero(labels[box]) + 4 * np.count_nonzero(occ[box])
        spots.sort(key=cost)
    cx, cy = spots[0]
    shape = _ellipse(cx, cy, rx, ry, n=40)
    if rng.random() < 0.25:
        shape = [cx, cy] + (shape - [cx, cy]) * np.where(np.arange(40) % 2, 1.0, 1.2)[:, None]
    a = np.radians(rng.uniform(40, 140))
    tail = [[cx + 0.8 * rx * np.cos(a - 0.25), cy + 0.8 * ry * np.sin(a - 0.25)],
            [cx + 0.8 * rx * np.cos(a + 0.25), cy + 0.8 * ry * np.sin(a + 0.25)],
            [cx + 1.6 * rx * np.cos(a), cy + 1.6 * ry * np.sin(a)]]
    polys = [np.round(p).astype(np.int32) for p in (shape, tail)]
    for img, ink, fill in ((rgb, INK, PAPER), (occ, 255, 255)):  # ink the union, then fill each part
        cv2.polylines(img, polys, True, ink, 2 * lw)
        for p in polys:
            cv2.fillPoly(img, [p], fill)
    lines = [_romaji(rng) + ("!" if rng.random() < 0.3 else "") for _ in range(int(rng.integers(1, 4)))]
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, 1.0, 2)[0] for t in lines]
    line_h = max(s[1] for s in sizes)
    scale = min(1.3 * rx / max(s[0] for s in sizes), 1.2 * ry / (1.6 * len(lines) * line_h), min(occ.shape) / 900)
    for k, (text, (tw, _)) in enumerate(zip(lines, sizes)):
        org = (int(cx - tw * scale / 2), int(cy + ((k - (len(lines) - 1) / 2) * 1.6 + 0.5) * line_h * scale))
        rgb[_glyphs(occ.shape, text, org, font, scale, grow=max(0, lw // 3))] = INK


def _sfx(rng, rgb: np.ndarray, occ: np.ndarray, style: str, lw: int) -> None:
    """Big sound-effect lettering with an ink outline, in front of everything."""
    h, w = occ.shape
    text = SFX_WORDS[rng.integers(len(SFX_WORDS))] + "!" * int(rng.integers(0, 3))
    font = cv2.FONT_HERSHEY_TRIPLEX | (cv2.FONT_ITALIC if rng.random() < 0.5 else 0)
    scale = rng.uniform(0.06, 0.11) * min(w, h) / cv2.getTextSize("D", font, 1.0, 2)[0][1]
    tw, th = cv2.getTextSize(text, font, scale, 2)[0]
    org = (int(rng.uniform(0, max(1, w - tw))), int(rng.uniform(th, h - 4)))
    bold = max(1, round(scale * 1.5))
    fill = _glyphs(occ.shape, text, org, font, scale, grow=bold)
    outline = cv2.dilate(fill.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * lw + 3,) * 2)) > 0
    colour = PAPER if style == "manga" else [(236, 60, 60), (250, 200, 40), (250, 130, 40)][rng.integers(3)]
    rgb[outline], rgb[fill], occ[outline] = INK, colour, 255


# ----------------------------------------------------------------------------- pages

def _screentone(rgb: np.ndarray, author: AuthorStyle) -> np.ndarray:
    """HxWx3 colour -> HxWx3 grey manga: ink black, paper white, mid-tones as screentone."""
    h, w = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    pitch = max(4, round(author.tone_pitch * min(h, w)))
    fy, fx = (np.indices((pitch, pitch)) + 0.5) / pitch - 0.5
    dots = np.minimum(fx ** 2 + fy ** 2, (0.5 - abs(fx)) ** 2 + (0.5 - abs(fy)) ** 2)  # 45-degree dot lattice
    reps = (h // pitch + 1, w // pitch + 1)
    light = np.tile(dots < 0.17 ** 2, reps)[:h, :w]
    dense = np.tile(np.abs(fx + fy) < 0.22 if author.tone_lines else dots < 0.3 ** 2, reps)[:h, :w]
    out = np.full((h, w), 255, np.uint8)
    out[(grey < 205) & light] = 40
    mid = (grey < 150) & (grey >= 72)
    out[mid] = np.where(dense[mid], 40, 255)
    out[grey < 72] = 0
    return np.repeat(out[..., None], 3, axis=2)


def _drop_small(labels: np.ndarray, n: int) -> np.ndarray:
    """Zero ids with under MIN_VISIBLE of the page visible; renumber the rest 1..k in order."""
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = [k for k in range(1, n + 1) if counts[k] >= MIN_VISIBLE * labels.size]
    lut = np.zeros(256, np.uint8)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[labels]


def render_page(seed: int, width: int, height: int, n_chars: int, style: str, kind: str = "normal",
                author_style: AuthorStyle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One page and its ground truth.

    Returns (rgb HxWx3 uint8, labels HxW uint8): labels 0 = background, k = the visible
    pixels of character k, numbered 1..m in draw order (m <= n_chars: a character with
    under MIN_VISIBLE of the page left visible is dropped). style: "colour" or "manga"
    (grey, R == G == B). kind: "normal", "black" (all black, no labels) or "empty"
    (background, panels and bubbles, no character).
    """
    if style not in STYLES or kind not in KINDS:
        raise ValueError(f"style must be one of {STYLES} and kind one of {KINDS}, got {style!r}, {kind!r}")
    if not 0 <= n_chars <= 255:
        raise ValueError(f"n_chars must be in 0..255, got {n_chars}")
    labels = np.zeros((height, width), np.uint8)
    if kind == "black":
        return np.zeros((height, width, 3), np.uint8), labels
    author = author_style or _ANONYMOUS
    rng = np.random.default_rng(seed)
    lw = max(1, round(author.line_weight * min(width, height)))
    paneled = rng.random() < author.panel_share * (1.5 if style == "manga" else 0.6)
    rects = _panels(rng, width, height) if paneled else [(0, 0, width, height)]
    rgb = np.full((height, width, 3), PAPER, np.uint8)
    areas = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects], float)
    homes = rng.choice(len(rects), size=0 if kind == "empty" else n_chars, p=areas ** 2 / (areas ** 2).sum())
    n_drawn = 0
    for k, (x0, y0, x1, y1) in enumerate(rects):  # each panel clips its own characters
        rgb[y0:y1, x0:x1] = _background(rng, x1 - x0, y1 - y0, author, style, lw)
        for ops, xf in _cast(rng, int((homes == k).sum()), x1 - x0, y1 - y0, author, paneled):
            n_drawn += 1
            head_px = np.sqrt(abs(np.linalg.det(xf[:, :2])))
            char_lw = max(1, min(lw, round(0.03 * head_px)))  # a finer pen for small figures
            _paint(ops, rgb[y0:y1, x0:x1], labels[y0:y1, x0:x1], n_drawn, xf, char_lw)
    occ = np.zeros((height, width), np.uint8)
    if paneled:  # ink frames hugging each interior; the gutters stay paper
        border, frame = max(2, round(1.6 * lw)), np.zeros((height, width), bool)
        for x0, y0, x1, y1 in rects:
            frame[max(0, y0 - border):y1 + border, max(0, x0 - border):x1 + border] = True
        for x0, y0, x1, y1 in rects:
            frame[y0:y1, x0:x1] = False
        rgb[frame], occ[frame] = INK, 255
    for _ in range(min(3, int(rng.poisson(author.bubble_rate * (1.3 if style == "manga" else 0.8))))):
        _bubble(rng, rgb, occ, labels, rects[rng.integers(len(rects))], lw)
    if rng.random() < (0.35 if style == "manga" else 0.2):
        _sfx(rng, rgb, occ, style, lw)
    labels[occ > 0] = 0
    labels = _drop_small(labels, n_drawn)
    return (_screentone(rgb, author) if style == "manga" else rgb), labels
