"""Authors: the drawing habits shared by all works of one author, and the ink, paper and
palettes every drawing takes its colours from.

An author's traits are drawn once from a hash of (seed, name), so the same name draws
the same way in every run and in every work.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

INK: RGB = (22, 18, 26)
PAPER: RGB = (255, 255, 255)
BACKGROUNDS = ("gradient", "sky", "interior", "tone", "focus", "plain")  # scenery kinds, weighted per author

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
