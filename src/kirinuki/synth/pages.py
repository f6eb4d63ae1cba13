"""Procedural anime/manga-like pages with exact per-character ground truth.

The project's own sample data (a real-art data set cannot be shipped). Characters are
built from primitives (head, hair, big eyes, clothes, limbs, ink outlines) and drawn with
OpenCV onto backgrounds (gradients, skies, interiors, screentone, focus lines), panels,
speech bubbles and sound effects.

Ground truth is exact by construction: every drawing call that paints a character's
pixels paints the same pixels with its id into the label map (no anti-aliasing on
characters or on anything in front of them). Later characters overwrite earlier ones,
and foreground (panel frames, bubbles, lettering) zeroes the labels it covers, so the
label map holds exactly the visible pixels of each character.

Randomness comes only from `np.random.default_rng(seed)`: same seed, same bytes.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from kirinuki.core.config import SynthParams
from kirinuki.core.imageio import write_png, write_text

RGB = tuple[int, int, int]

INK: RGB = (22, 18, 26)
PAPER: RGB = (255, 255, 255)
STYLES = ("colour", "manga")
KINDS = ("normal", "black", "empty")
BACKGROUNDS = ("gradient", "sky", "interior", "tone", "focus", "plain")
MIN_VISIBLE = 0.003  # a character with less of the page than this visible is dropped
MANIFEST_COLUMNS = ("stem", "path", "author", "work", "width", "height", "n_chars",
                    "style", "kind", "truncated", "overlap")

HAIR: tuple[RGB, ...] = (
    (38, 32, 44), (74, 48, 36), (132, 84, 52), (158, 62, 42), (246, 218, 128), (236, 232, 222),
    (246, 156, 186), (204, 44, 58), (242, 146, 58), (62, 104, 204), (124, 184, 236),
    (44, 54, 104), (136, 84, 176), (196, 166, 232), (72, 164, 108), (184, 190, 206))
EYES: tuple[RGB, ...] = (
    (52, 112, 220), (48, 160, 96), (200, 40, 50), (214, 150, 40), (130, 70, 190),
    (110, 70, 40), (30, 150, 160), (230, 90, 150))
CLOTHES: tuple[RGB, ...] = (
    (40, 50, 96), (250, 250, 250), (200, 40, 52), (36, 36, 40), (128, 130, 140), (70, 120, 200),
    (226, 206, 170), (240, 150, 176), (60, 140, 80), (246, 210, 70), (128, 36, 52),
    (40, 150, 150), (176, 146, 214), (240, 130, 50))
SKIN: tuple[RGB, ...] = (
    (255, 230, 214), (252, 220, 198), (246, 210, 184), (236, 194, 164), (255, 226, 206))
PASTEL: tuple[RGB, ...] = (
    (250, 236, 214), (220, 236, 250), (236, 224, 248), (222, 244, 226), (250, 222, 230),
    (252, 246, 210), (214, 226, 240), (240, 240, 236))
SYLLABLES = ("ka", "ki", "ku", "ne", "no", "ma", "mi", "ra", "ri", "to", "su", "ta",
             "yo", "ha", "n", "sa", "shi", "chi", "wa", "ga", "de", "ko", "na", "ai")
SFX_WORDS = ("DOKI", "ZAWA", "BAN", "GOGOGO", "DON", "KYAA", "PAN", "SHIIN", "GIRI", "DOSU")


# ----------------------------------------------------------------------------- authors

@dataclass(frozen=True)
class AuthorStyle:
    """Drawing habits of one author, shared by all of their works."""

    name: str
    line_weight: float  # ink pen width, share of the page's shorter side
    eye_scale: float  # eye size multiplier (1 = ordinary anime eyes)
    head_ratio: float  # typical body height in heads (7 = tall, 5 = youthful)
    chibi_share: float  # share of characters drawn super-deformed (2.3-3 heads)
    skin: RGB
    hair_palette: tuple[RGB, ...]
    eye_palette: tuple[RGB, ...]
    clothes_palette: tuple[RGB, ...]
    backgrounds: tuple[float, ...]  # weight per kind in BACKGROUNDS
    panel_share: float  # share of pages split into panels
    bubble_rate: float  # mean speech bubbles per page
    tone_pitch: float  # screentone dot pitch, share of the page's shorter side
    tone_lines: bool  # dark tone as diagonal lines rather than dense dots


def _name_seed(*parts) -> int:
    """A stable 64-bit seed from any parts (hashlib, not the salted `hash()`)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def _pick(rng: np.random.Generator, items: tuple, k: int) -> tuple:
    return tuple(items[i] for i in rng.choice(len(items), size=k, replace=False))


def author_style(name: str, seed: int) -> AuthorStyle:
    """The traits of author `name`, drawn once from a hash of (seed, name)."""
    rng = np.random.default_rng(_name_seed("author", seed, name))
    return AuthorStyle(
        name=name,
        line_weight=float(rng.uniform(0.0022, 0.0055)),
        eye_scale=float(rng.uniform(0.85, 1.3)),
        head_ratio=float(rng.uniform(5.2, 7.4)),
        chibi_share=float(rng.uniform(0.0, 0.25)),
        skin=SKIN[rng.integers(len(SKIN))],
        hair_palette=_pick(rng, HAIR, 7),
        eye_palette=_pick(rng, EYES, 4),
        clothes_palette=_pick(rng, CLOTHES, 7),
        backgrounds=tuple(float(w) for w in 0.04 + rng.dirichlet(np.ones(len(BACKGROUNDS)))),
        panel_share=float(rng.uniform(0.25, 0.6)),
        bubble_rate=float(rng.uniform(0.6, 1.6)),
        tone_pitch=float(rng.uniform(0.007, 0.012)),
        tone_lines=bool(rng.random() < 0.5),
    )


_ANONYMOUS = author_style("anonymous", 0)


# ----------------------------------------------------------------------------- geometry

class _Op(NamedTuple):
    """One drawing primitive of a character, in head units (head height 1, y down).

    kind: "fill" = polygons filled and inked around their union, "flat" = polygons
    filled without ink, "line" = open polylines `width` head units wide.
    polys: Nx2 float arrays.
    """

    kind: str
    polys: tuple[np.ndarray, ...]
    colour: RGB
    width: float = 0.0


def _fill(colour: RGB, *polys) -> _Op:
    return _Op("fill", tuple(np.asarray(p, float) for p in polys), colour)


def _flat(colour: RGB, *polys) -> _Op:
    return _Op("flat", tuple(np.asarray(p, float) for p in polys), colour)


def _line(colour: RGB, width: float, *polys) -> _Op:
    return _Op("line", tuple(np.asarray(p, float) for p in polys), colour, width)


def _moved(op: _Op, sx: float = 1.0, offset=(0.0, 0.0)) -> _Op:
    """The op with x scaled by sx (-1 mirrors) and then shifted by offset."""
    return op._replace(polys=tuple(p * [sx, 1.0] + offset for p in op.polys))


def _both(op: _Op) -> list[_Op]:
    """The op and its mirror image across the body's axis."""
    return [op, _moved(op, -1.0)]


def _ellipse(cx, cy, rx, ry, a0=0.0, a1=360.0, n=28) -> np.ndarray:
    """Nx2 points on an ellipse arc, angles in degrees (image axes: 90 = down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _bezier(p0, p1, p2, n=10) -> np.ndarray:
    """Nx2 points on the quadratic Bezier p0 -> p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _strand(p0, p1, p2, width, n=16) -> np.ndarray:
    """Nx2 outline of a lock of hair along a Bezier: bundled root, pointed tip."""
    t = np.linspace(0, 1, n)
    curve = _bezier(p0, p1, p2, n)
    tangent = np.gradient(curve, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.linalg.norm(tangent, axis=1)[:, None]
    half = (width / 2 * np.sin(np.pi * (0.2 + 0.8 * t)))[:, None]
    return np.concatenate([curve + normal * half, (curve - normal * half)[::-1]])


def _limb(points, widths) -> tuple[np.ndarray, ...]:
    """Capsules (Nx2 outlines) along a polyline, each tapering from widths[i] to widths[i+1]."""
    caps = []
    for a, b, wa, wb in zip(points, points[1:], widths, widths[1:]):
        d = np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))
        caps.append(np.concatenate([_ellipse(a[0], a[1], wa / 2, wa / 2, d + 90, d + 270, 10),
                                    _ellipse(b[0], b[1], wb / 2, wb / 2, d - 90, d + 90, 10)]))
    return tuple(caps)


def _shade(c: RGB, f: float) -> RGB:
    return tuple(int(v * f) for v in c)


def _tint(c: RGB, f: float) -> RGB:
    return tuple(int(v + (255 - v) * f) for v in c)


def _direction(angle_deg: float) -> np.ndarray:
    """Unit vector `angle` degrees from straight down, positive towards +x."""
    a = np.radians(angle_deg)
    return np.array([np.sin(a), np.cos(a)])


# ----------------------------------------------------------------------------- characters

@dataclass(frozen=True)
class _Character:
    """The random traits of one character; its geometry follows from them."""

    ratio: float  # body height in heads
    build: float  # width multiplier
    eye: float  # eye size multiplier
    skin: RGB
    hair: RGB
    eyes: RGB
    top: RGB
    bottom: RGB
    accent: RGB
    outfit: str  # sailor | blazer | tshirt | dress
    legwear: str  # skirt | trousers | shorts
    long_sleeves: bool
    socks: RGB | None
    back_hair: str  # short | bob | long | ponytail | twintails | bun
    hair_len: float  # long hair / tail length, heads below the head centre
    spiky: float  # crown outline spikiness, 0 = smooth
    bangs: int
    side_len: float  # side locks reach this far below the head centre
    sweep: float  # bangs flow sideways by this much
    ahoge: bool
    arms: tuple[tuple[float, float], tuple[float, float]]  # (upper, fore) degrees from down, + = outward
    legs: tuple[tuple[float, float], tuple[float, float]]  # (thigh, shin), same convention
    sitting: bool  # thighs towards the viewer, foreshortened
    mouth: str  # smile | open | flat
    blush: bool

    @property
    def chibi(self) -> bool:
        return self.ratio < 3.5


_ARM_POSES = {  # name: (upper arm range, forearm range, weight), degrees from down, + = away from the body
    "down": ((6, 18), (2, 20), 0.3),
    "out": ((40, 75), (50, 120), 0.14),
    "up": ((140, 168), (150, 180), 0.1),
    "hip": ((32, 48), (-50, -30), 0.18),
    "wave": ((70, 100), (150, 178), 0.12),
    "front": ((8, 16), (-52, -38), 0.16),
}
_LEG_POSES = {"stand": ((2, 6), (0, 4)), "apart": ((10, 20), (6, 16)), "walk": ((-6, 4), (-2, 10))}


def _new_character(rng: np.random.Generator, author: AuthorStyle) -> _Character:
    chibi = rng.random() < author.chibi_share
    ratio = rng.uniform(2.3, 3.0) if chibi else float(np.clip(author.head_ratio + rng.normal(0, 0.5), 4.6, 7.6))
    outfit = str(rng.choice(["sailor", "blazer", "tshirt", "dress"], p=[0.3, 0.25, 0.25, 0.2]))
    legwear = "skirt" if outfit in ("sailor", "dress") else str(rng.choice(["skirt", "trousers", "shorts"]))
    back = str(rng.choice(["short", "bob", "long", "ponytail", "twintails", "bun"],
                          p=[0.2, 0.2, 0.25, 0.13, 0.14, 0.08]))
    pal = author.clothes_palette
    top, bottom, accent = (pal[i] for i in rng.choice(len(pal), 3, replace=False))
    if outfit == "sailor" and rng.random() < 0.6:  # the classic white sailor blouse
        top = (250, 250, 250)
    names = list(_ARM_POSES)
    weights = np.array([_ARM_POSES[k][2] for k in names])

    def arm() -> tuple[float, float]:
        up, fore, _ = _ARM_POSES[names[rng.choice(len(names), p=weights / weights.sum())]]
        return float(rng.uniform(*up)), float(rng.uniform(*fore))

    thigh, shin = _LEG_POSES[str(rng.choice(list(_LEG_POSES)))]
    legs = tuple((float(rng.uniform(*thigh)), float(rng.uniform(*shin))) for _ in range(2))
    return _Character(
        ratio=float(ratio), build=float(rng.uniform(0.9, 1.12)),
        eye=float(author.eye_scale * rng.uniform(0.9, 1.1) * (1.2 if chibi else 1.0)),
        skin=_shade(author.skin, float(rng.uniform(0.97, 1.0))),
        hair=author.hair_palette[rng.integers(len(author.hair_palette))],
        eyes=author.eye_palette[rng.integers(len(author.eye_palette))],
        top=top, bottom=bottom, accent=accent, outfit=outfit, legwear=legwear,
        long_sleeves=bool(outfit != "tshirt" and rng.random() < 0.75),
        socks=[None, (250, 250, 250), (36, 36, 44), bottom][rng.integers(4)] if legwear == "skirt" else None,
        back_hair=back, hair_len=float(rng.uniform(1.2, min(3.6, 0.55 * ratio))),
        spiky=float(rng.choice([0.0, rng.uniform(0.03, 0.1)])), bangs=int(rng.integers(4, 8)),
        side_len=float(rng.uniform(0.3, 0.65)), sweep=float(rng.uniform(-0.06, 0.06)),
        ahoge=bool(rng.random() < 0.3), arms=(arm(), arm()), legs=legs, sitting=bool(rng.random() < 0.1),
        mouth=str(rng.choice(["smile", "open", "flat"], p=[0.5, 0.3, 0.2])), blush=bool(rng.random() < 0.4),
    )


@dataclass(frozen=True)
class _Body:
    """Key heights, half-widths and limb widths, head units (head centre at 0, y down)."""

    shoulder: float
    waist: float
    hip: float
    ankle: float
    shoulder_w: float
    waist_w: float
    hip_w: float
    arm: tuple[float, float, float]  # widths at shoulder, elbow, wrist
    leg: tuple[float, float, float]  # widths at hip, knee, ankle
    arm_len: float


def _body(c: _Character) -> _Body:
    shoulder = 0.54 + 0.02 * c.ratio  # the neck grows with the figure
    ground = c.ratio - 0.5
    hip = shoulder + (ground - shoulder) * float(np.interp(c.ratio, [2.5, 7.5], [0.5, 0.4]))
    sw = float(np.interp(c.ratio, [2.5, 7.5], [0.36, 0.6])) * c.build
    thigh = float(np.interp(c.ratio, [2.5, 7.5], [0.3, 0.42])) * c.build
    arm = float(np.interp(c.ratio, [2.5, 7.5], [0.2, 0.24])) * c.build
    return _Body(shoulder=shoulder, waist=shoulder + (hip - shoulder) * 0.7, hip=hip, ankle=ground - 0.06,
                 shoulder_w=sw, waist_w=0.66 * sw, hip_w=0.82 * sw,
                 arm=(arm, 0.76 * arm, 0.56 * arm),
                 leg=(thigh, 0.62 * thigh, 0.42 * thigh), arm_len=1.25 * (hip - shoulder))


def _figure_ops(c: _Character) -> list[_Op]:
    """The whole character, back to front."""
    b = _body(c)
    return (_back_hair_ops(c) + _leg_ops(c, b) + _torso_ops(c, b) + _arm_ops(c, b)
            + _face_ops(c) + _front_hair_ops(c))


def _back_hair_ops(c: _Character) -> list[_Op]:
    """Hair behind the head and body: bob or long mass, tails, buns."""
    ops = []
    if c.back_hair != "short":
        end = c.hair_len if c.back_hair == "long" else 0.5
        half = 0.58 + (0.06 * c.hair_len if c.back_hair == "long" else 0.0)
        crown = _ellipse(0, -0.04, 0.56, 0.6, 160, 380, 24)
        xs = np.linspace(half, -half, 9)
        hem = np.stack([xs, end - np.where(np.arange(9) % 2 == 1, 0.12, 0.0)], 1)
        mass = np.concatenate([crown, [[half, end * 0.6]], hem, [[-half, end * 0.6]]])
        ops.append(_fill(_shade(c.hair, 0.8), mass))
    if c.back_hair == "ponytail":
        ops.append(_fill(c.hair, _strand((0.3, -0.4), (1.1, -0.3), (0.75, c.hair_len), 0.55)))
    elif c.back_hair == "twintails":
        ops += _both(_fill(c.hair, _strand((0.42, -0.3), (1.15, 0.1), (0.8, c.hair_len), 0.5)))
        ops += _both(_fill(c.accent, _ellipse(0.46, -0.28, 0.08, 0.1, n=14)))
    elif c.back_hair == "bun":
        ops += _both(_fill(c.hair, _ellipse(0.33, -0.46, 0.2, 0.18, n=20)))
    return ops


def _leg_ops(c: _Character, b: _Body) -> list[_Op]:
    """Legs, socks and shoes; trousers and shorts are drawn as the legs' cloth."""
    ops = []
    length = (b.ankle - b.hip) / 2
    thigh_len = length * (0.35 if c.sitting else 1.0)
    w_hip, w_knee, w_ankle = b.leg
    for side, (a_thigh, a_shin) in zip((1, -1), c.legs):
        hip = np.array([side * b.hip_w * 0.48, b.hip - 0.1])
        knee = hip + thigh_len * _direction(a_thigh) * [side, 1]
        ankle = knee + length * _direction(a_shin) * [side, 1]
        ops.append(_fill(c.skin, *_limb([hip, knee, ankle], b.leg)))
        if c.legwear == "trousers":
            cloth = [w_hip * 1.1, w_knee * 1.35, w_ankle * 1.9]
            ops.append(_fill(c.bottom, *_limb([hip, knee, ankle + [0, 0.04]], cloth)))
        elif c.legwear == "shorts":
            ops.append(_fill(c.bottom, *_limb([hip, hip + 0.4 * (knee - hip)], [w_hip * 1.08, w_hip * 1.02])))
        if c.socks is not None:
            top = knee + 0.25 * (ankle - knee)
            ops.append(_fill(c.socks, *_limb([top, ankle], [w_knee * 1.06, w_ankle * 1.1])))
        shoe = ankle + [side * 0.04, 0.04]
        ops.append(_fill((64, 42, 38), _ellipse(shoe[0], shoe[1], 0.13 * c.build, 0.075, n=18)))
    if c.legwear in ("trousers", "shorts"):  # the seat, over the tops of the legs
        ops.append(_fill(c.bottom, [[-b.waist_w, b.waist], [b.waist_w, b.waist], [b.hip_w * 1.02, b.hip],
                                    [0, b.hip + 0.08], [-b.hip_w * 1.02, b.hip]]))
    return ops


def _torso_ops(c: _Character, b: _Body) -> list[_Op]:
    """Neck, skirt, shirt with a cel shadow, collar."""
    s = b.shoulder
    ops = [_fill(c.skin, [[-0.09, 0.3], [0.09, 0.3], [0.1, s + 0.06], [-0.1, s + 0.06]]),
           _flat(_shade(c.skin, 0.86), [[-0.09, 0.36], [0.09, 0.36], [0, s - 0.02]])]
    if c.legwear == "skirt":
        colour = c.top if c.outfit == "dress" else c.bottom
        hem_y = b.hip + (b.ankle - b.hip) * (0.25 if c.outfit == "dress" else 0.15) + 0.05
        xs = np.linspace(b.hip_w * 1.35, -b.hip_w * 1.35, 11)
        hem = np.stack([xs, hem_y + np.where(np.arange(11) % 2 == 1, 0.05, 0.0)], 1)
        ops.append(_fill(colour, np.concatenate([[[-b.waist_w, b.waist], [b.waist_w, b.waist]], hem])))
        tops = np.linspace(-0.6, 0.6, 4) * b.waist_w
        pleats = [[[x0, b.waist + 0.05], [x1, hem_y]] for x0, x1 in zip(tops, hem[7:0:-2, 0])]
        ops.append(_line(_shade(colour, 0.7), 0.015, *pleats))
    hem_y = b.waist if c.outfit == "dress" else b.waist + 0.05
    mid = s + 0.4 * (b.waist - s)
    half = np.array([[0.1, s - 0.02], [b.shoulder_w * 0.75, s + 0.02], [b.shoulder_w, s + 0.1],
                     [b.shoulder_w * 0.92, s + 0.35 * (b.waist - s)], [b.waist_w, b.waist - 0.1],
                     [b.waist_w * 1.06, hem_y]])
    ops.append(_fill(c.top, np.concatenate([half, (half * [-1, 1])[::-1]])))
    ops.append(_flat(_shade(c.top, 0.82), [[b.waist_w * 0.55, mid + 0.05], [b.shoulder_w * 0.9, mid],
                                           [b.waist_w, hem_y - 0.02], [b.waist_w * 0.65, hem_y - 0.02]]))
    return ops + _collar_ops(c, b)


def _collar_ops(c: _Character, b: _Body) -> list[_Op]:
    s = b.shoulder
    if c.outfit == "sailor":
        flap = np.array([[0.1, s - 0.03], [b.shoulder_w * 0.7, s + 0.03], [0.22, s + 0.28], [0, s + 0.36]])
        return [_fill((40, 50, 96), np.concatenate([flap, (flap * [-1, 1])[::-1]])),
                _line((250, 250, 250), 0.02, flap[1:3] * [0.92, 1] + [0, 0.03], flap[1:3] * [-0.92, 1] + [0, 0.03]),
                *_both(_fill(c.accent, [[0, s + 0.3], [0.2, s + 0.22], [0.18, s + 0.42]])),
                *_both(_fill(c.accent, [[0, s + 0.3], [0.08, s + 0.56], [0.02, s + 0.6]])),
                _fill(_shade(c.accent, 0.85), _ellipse(0, s + 0.31, 0.05, 0.045, n=12))]
    if c.outfit == "blazer":
        lapel = [[0.12, s - 0.02], [0.2, s + 0.2], [0.1, s + 0.24], [0.01, s + 0.48]]
        return [_fill((250, 250, 250), [[-0.12, s - 0.02], [0.12, s - 0.02], [0, s + 0.5]]),
                _fill(c.accent, [[0, s + 0.02], [0.05, s + 0.1], [0.03, s + 0.44], [0, s + 0.5],
                                 [-0.03, s + 0.44], [-0.05, s + 0.1]]),
                *_both(_fill(_shade(c.top, 0.85), lapel))]
    if c.outfit == "dress":
        return [_fill(c.accent, [[-b.waist_w, b.waist - 0.07], [b.waist_w, b.waist - 0.07],
                                 [b.waist_w * 1.02, b.waist + 0.02], [-b.waist_w * 1.02, b.waist + 0.02]])]
    return [_line(INK, 0.02, _ellipse(0, s - 0.04, 0.14, 0.1, 20, 160, 10))]


def _arm_ops(c: _Character, b: _Body) -> list[_Op]:
    """Both arms over the torso: skin, sleeve, hand."""
    ops = []
    upper, fore = 0.52 * b.arm_len, 0.48 * b.arm_len
    w_sh, w_el, w_wr = b.arm
    for side, (a_up, a_fore) in zip((1, -1), c.arms):
        shoulder = np.array([side * (b.shoulder_w - 0.1), b.shoulder + 0.12])
        elbow = shoulder + upper * _direction(a_up) * [side, 1]
        wrist = elbow + fore * _direction(a_fore) * [side, 1]
        ops.append(_fill(c.skin, *_limb([shoulder, elbow, wrist], b.arm)))
        if c.long_sleeves:
            cuff = elbow + 0.85 * (wrist - elbow)
            ops.append(_fill(c.top, *_limb([shoulder, elbow, cuff], [w_sh * 1.3, w_el * 1.35, w_wr * 1.6])))
        elif c.outfit != "dress":
            short = [shoulder, shoulder + 0.45 * (elbow - shoulder)]
            ops.append(_fill(c.top, *_limb(short, [w_sh * 1.4, w_sh * 1.45])))
        ops.append(_fill(c.skin, *_hand(wrist, wrist - elbow, side, w_wr)))
    return ops


def _hand(wrist: np.ndarray, forearm: np.ndarray, side: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    """A mitten hand along the forearm's direction and its thumb (two Nx2 outlines)."""
    along = forearm / np.linalg.norm(forearm)
    across = np.array([-along[1], along[0]]) * side
    t = np.radians(np.linspace(0, 360, 16))[:, None]
    palm = wrist + along * 0.1 + np.cos(t) * along * 0.12 + np.sin(t) * across * width * 0.75
    thumb = wrist + along * 0.06 - across * width * 0.6 + np.cos(t) * along * 0.06 + np.sin(t) * across * 0.035
    return palm, thumb


def _face_ops(c: _Character) -> list[_Op]:
    """Ears, face shape, blush, eyes, nose and mouth."""
    hx = 0.47 if c.chibi else 0.43
    jaw = (hx * 0.98, 0.5) if c.chibi else (hx * 0.92, 0.34)
    right = _bezier((hx, 0.0), jaw, (0.0, 0.5), 12)
    face = np.concatenate([_ellipse(0, 0, hx, 0.5, 180, 360, 24), right[1:], (right * [-1, 1])[::-1][1:-1]])
    ey = 0.16 if c.chibi else 0.12
    ops = [*_both(_fill(c.skin, _ellipse(hx * 0.97, 0.1, 0.07, 0.11, n=14))), _fill(c.skin, face)]
    if c.blush:
        ops += _both(_flat((246, 170, 172), _ellipse(0.26, ey + 0.17, 0.09, 0.04, n=14)))
    for side in (1, -1):
        ops += [_moved(op, side, (side * (0.19 if c.chibi else 0.18), ey)) for op in _eye_ops(c, side)]
    ops.append(_line(_shade(c.skin, 0.7), 0.015, [[0.0, 0.28], [0.015, 0.3]]))
    ops.append(_mouth_op(c))
    return ops


def _eye_ops(c: _Character, side: int) -> list[_Op]:
    """One eye centred at 0, outer corner towards +x: white, iris, pupil, highlights, lashes, brow."""
    rx, ry = 0.1 * c.eye, 0.125 * c.eye
    hi = side  # highlights on the same side of the face for both eyes, as from one light
    return [
        _flat((255, 255, 255), _ellipse(0, 0, rx, ry, n=24)),
        _flat(_shade(c.eyes, 0.75), _ellipse(0, 0.05 * ry, 0.72 * rx, 0.9 * ry, n=24)),
        _flat(_tint(c.eyes, 0.35), _ellipse(0, 0.45 * ry, 0.55 * rx, 0.4 * ry, 0, 180, 14)),
        _flat(_shade(c.eyes, 0.3), _ellipse(0, 0.05 * ry, 0.34 * rx, 0.5 * ry, n=18)),
        _flat((255, 255, 255), _ellipse(-0.3 * rx * hi, -0.35 * ry, 0.24 * rx, 0.22 * ry, n=14),
              _ellipse(0.3 * rx * hi, 0.4 * ry, 0.11 * rx, 0.1 * ry, n=10)),
        _line(INK, 0.035 * c.eye, _ellipse(0, 0.1 * ry, 1.08 * rx, 1.12 * ry, 195, 345, 14)),
        _line(INK, 0.025 * c.eye, [[1.0 * rx, -0.35 * ry], [1.35 * rx, -0.55 * ry]]),
        _line(INK, 0.012, _ellipse(0, 0, rx, ry, 60, 120, 6)),
        _line(_shade(c.hair, 0.55), 0.016, _ellipse(0.05 * rx, -1.5 * ry, 1.05 * rx, 0.4 * ry, 205, 330, 8)),
    ]


def _mouth_op(c: _Character) -> _Op:
    y = 0.36 if c.chibi else 0.38
    if c.mouth == "open":
        return _fill((176, 60, 64), _ellipse(0, y - 0.015, 0.055, 0.05, 0, 180, 12))
    if c.mouth == "smile":
        return _line(INK, 0.016, _ellipse(0, y - 0.03, 0.05, 0.03, 20, 160, 8))
    return _line(INK, 0.016, [[-0.035, y], [0.035, y]])


def _front_hair_ops(c: _Character) -> list[_Op]:
    """Crown, bangs and side locks as one polygon; then shine, strands, ahoge."""
    th = np.radians(np.linspace(16, -196, 40))
    r = 1 + c.spiky * np.abs(np.sin(th * 7))
    crown = np.stack([0.5 * r * np.cos(th), -0.03 + 0.58 * r * np.sin(th)], 1)
    lock = np.concatenate([_bezier((-0.48, 0.14), (-0.52, c.side_len * 0.6), (-0.43, c.side_len), 6),
                           _bezier((-0.43, c.side_len), (-0.38, c.side_len * 0.4), (-0.35, 0.02), 6)[1:]])
    xs = np.linspace(-0.35, 0.35, c.bangs + 1)
    roots = -0.2 + 0.14 * (xs / 0.35) ** 2  # the hairline dips towards the temples
    fringe = [lock]
    for i in range(c.bangs):
        tip = ((xs[i] + xs[i + 1]) / 2 + c.sweep, -0.02 + 0.025 * (i % 3))
        fringe.append(_bezier((xs[i], roots[i]), (xs[i] + c.sweep, tip[1] - 0.08), tip, 5)[1:])
        fringe.append(_bezier(tip, (xs[i + 1], tip[1] - 0.1), (xs[i + 1], roots[i + 1]), 5)[1:])
    fringe.append((lock * [-1, 1])[::-1][1:])
    a0, a1 = np.radians(-40), np.radians(-150)
    shine = np.concatenate([_ellipse(0, -0.03, 0.4, 0.46, -150, -40, 12),
                            np.stack([np.linspace(0.4 * np.cos(a0), 0.4 * np.cos(a1), 9),
                                      -0.39 + np.where(np.arange(9) % 2 == 0, 0.0, 0.05)], 1)])
    ops = [_fill(c.hair, np.concatenate([crown, *fringe])), _flat(_tint(c.hair, 0.45), shine),
           _line(_shade(c.hair, 0.65), 0.014, *[[[x * 0.8, -0.3], [x, -0.12]] for x in xs[1:-1]])]
    if c.ahoge:
        ops.append(_fill(c.hair, _strand((0.0, -0.58), (0.2, -0.85), (-0.1, -0.82), 0.08, 10)))
    return ops


# ----------------------------------------------------------------------------- painting

def _paint(ops: list[_Op], rgb: np.ndarray, labels: np.ndarray, label: int, xf: np.ndarray, lw: int) -> None:
    """Draw `ops` onto rgb (HxWx3) and the very same pixels with `label` onto labels (HxW).

    xf: 2x3 affine from head units to pixels; lw: ink width in pixels. No anti-aliasing,
    so the label map matches the painted pixels exactly. A "fill" op inks the outlines of
    all its polygons before filling them, so overlapping pieces share one outline.
    """
    unit = float(np.sqrt(abs(np.linalg.det(xf[:, :2]))))
    for op in ops:
        polys = [np.round(p @ xf[:, :2].T + xf[:, 2]).astype(np.int32) for p in op.polys]
        if op.kind == "line":
            width = max(1, round(op.width * unit))
            cv2.polylines(rgb, polys, False, op.colour, width)
            cv2.polylines(labels, polys, False, label, width)
            continue
        if op.kind == "fill":
            cv2.polylines(rgb, polys, True, INK, 2 * lw)
            cv2.polylines(labels, polys, True, label, 2 * lw)
        for p in polys:  # one call per polygon: a joint call would leave overlaps unfilled
            cv2.fillPoly(rgb, [p], op.colour)
            cv2.fillPoly(labels, [p], label)


def _extent(ops: list[_Op], m: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the ops after the 2x2 linear map `m`, head units."""
    pts = np.concatenate([p for op in ops for p in op.polys]) @ m.T
    return np.concatenate([pts.min(0), pts.max(0)])


def figure_sprite(rng: np.random.Generator, height: int) -> np.ndarray:
    """One whole character of a random author, `height` px tall, as an RGBA sprite (alpha
    255 on its pixels, 0 elsewhere): figures with endless looks for train_split's composites."""
    author = author_style(f"sprite{rng.integers(2 ** 31)}", 0)
    ops = _figure_ops(_new_character(rng, author))
    x0, y0, x1, y1 = _extent(ops, np.eye(2))
    u = (height - 4) / (y1 - y0)
    rgb = np.zeros((height, int((x1 - x0) * u) + 5, 3), np.uint8)
    labels = np.zeros(rgb.shape[:2], np.uint8)
    xf = np.array([[u, 0.0, 2 - x0 * u], [0.0, u, 2 - y0 * u]])
    _paint(ops, rgb, labels, 1, xf, max(1, round(0.03 * u)))  # a pen 0.03 head wide, render_page's for small figures
    ys, xs = np.nonzero(labels)
    return np.dstack([rgb, labels * 255])[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


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


# ----------------------------------------------------------------------------- data set

def describe_labels(labels: np.ndarray) -> tuple[bool, bool]:
    """(truncated, overlap) of an HxW label map.

    truncated: a character touches the page border (cut by the page edge; a cut by a panel
    frame does not count). overlap: two characters' labels touch (one occludes the other).
    """
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    overlap = any(bool(((a > 0) & (b > 0) & (a != b)).any())
                  for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])))
    return bool(border.any()), overlap


def _work_sizes(pages: int) -> list[int]:
    """Pages per work: two works (ep01, ep02), the first the larger half."""
    return [n for n in ((pages + 1) // 2, pages // 2) if n]


def _special_pages(params: SynthParams) -> dict[tuple[int, int], str]:
    """(author index, page index) -> kind of the one black and the one empty page.

    The last pages of the first author's first work, so that its first page stays a
    normal one; if that work has a single page, the next page of the data set follows.
    """
    first = _work_sizes(params.pages_per_author)[0]
    order = [(0, i) for i in reversed(range(first))]
    order += [(a, i) for a in range(len(params.authors)) for i in range(params.pages_per_author)
              if (a, i) not in order]
    return dict(zip(order, ("black", "empty")))


def write_dataset(params: SynthParams, out: Path) -> list[Path]:
    """Write the sample data set; returns the page image paths, in order.

    Layout: out/<author>/org/<work>/<author>_<work>_<NN>.png with its label map
    <stem>_gt.png beside it, and out/scenes.csv (MANIFEST_COLUMNS, one row per page;
    n_chars, truncated and overlap describe the label map as drawn). Byte-identical for
    the same params: each page is seeded from (seed, author, page index).
    """
    if len(set(params.authors)) != len(params.authors):
        raise ValueError(f"synth.authors has duplicates: {params.authors}")
    out = Path(out)
    special = _special_pages(params)
    images, rows = [], []
    for a, author in enumerate(params.authors):
        traits = author_style(author, params.seed)
        works = [f"ep{k + 1:02d}" for k, n in enumerate(_work_sizes(params.pages_per_author)) for _ in range(n)]
        for i, work in enumerate(works):
            rng = np.random.default_rng(_name_seed("page", params.seed, author, i))
            style = "manga" if rng.random() < params.manga_share else "colour"
            n_chars = int(rng.choice(4, p=[0.08, 0.42, 0.35, 0.15]))
            w, h = (params.height, params.width) if rng.random() < 0.25 else (params.width, params.height)
            kind = special.get((a, i), "normal")
            rgb, labels = render_page(int(rng.integers(2 ** 62)), w, h, n_chars, style, kind, traits)
            stem = f"{author}_{work}_{works[:i + 1].count(work):02d}"
            image = out / author / "org" / work / f"{stem}.png"
            write_png(image, rgb)
            write_png(image.with_name(f"{stem}_gt.png"), labels)
            truncated, overlap = describe_labels(labels)
            rows.append((stem, image.relative_to(out).as_posix(), author, work, w, h, int(labels.max()),
                         style, kind, int(truncated), int(overlap)))
            images.append(image)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    write_text(out / "scenes.csv", buf.getvalue())
    return images
