"""Small tracker inputs for the publish tests: <root>/<author>/org/<work> pages with GT,
and a tracker run over them with the tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kirinuki.core.config import ExtractParams, Params
from kirinuki.core.imageio import write_png
from kirinuki.publish.track import TrackOptions, run_track
from kirinuki.publish.workspace import workspace_for_input

from conftest import TINY_SIZE, two_figures


def make_work(root: Path, n_pages: int = 3, gt: bool = True, author: str = "aoki", work: str = "ep1") -> Path:
    """n_pages small pages with two dark figures each (shifted page to page), GT beside."""
    folder = root / author / "org" / work
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_pages):
        rgb = np.roll(two_figures(), 4 * i, axis=1)
        Image.fromarray(rgb).save(folder / f"{author}_{work}_{i:02d}.png")
        if gt:
            write_png(folder / f"{author}_{work}_{i:02d}_gt.png", (rgb.min(axis=2) < 128).astype(np.uint8) * 255)
    return folder


def tracker_params(tiny_model: Path, **publish) -> Params:
    p = Params(extract=ExtractParams(model=tiny_model, input_size=TINY_SIZE, min_area=0.01, margin=0.05, splitter=None))
    return p.model_copy(update={"publish": p.publish.model_copy(update=publish)}) if publish else p


def tracked(root: Path, tiny_model: Path, tracker_id: str = "QCC-011", **kw):
    """A finished tracker run over a fresh 3-page work; returns (workspace, log lines)."""
    work = make_work(root)
    ws = workspace_for_input(work, tracker_id)
    lines: list[str] = []
    code = run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False, **kw), lines.append, env={})
    assert code == 0, lines
    return ws, lines
