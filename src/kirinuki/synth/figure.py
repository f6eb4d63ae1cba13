"""One character drawn from primitives (head, hair, big eyes, clothes, limbs, ink outlines).

A character's random traits (_Character) give its geometry as drawing ops in head
units (_figure_ops); _paint draws them with OpenCV onto an image and the very same pixels
with the character's id onto a label map (no anti-aliasing), so the ground truth is
exact by construction. figure_sprite draws one whole figure as an RGBA sprite for the
splitter's training composites (train.data); layout places figures on pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from kirinuki.synth.authors import INK, RGB, AuthorStyle, author_style


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
    255 on its pixels, 0 elsewhere): figures with endless looks for train.data's composites."""
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
