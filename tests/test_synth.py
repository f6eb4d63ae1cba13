"""The procedural sample data: exact ground truth, deterministic bytes, the promised layout."""
from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from kirinuki.core.config import SynthParams
from kirinuki.core.imageio import read_label_png
from kirinuki.synth.authors import author_style
from kirinuki.synth.dataset import MANIFEST_COLUMNS, describe_labels, write_dataset
from kirinuki.synth.figure import _paint, figure_sprite
from kirinuki.synth.layout import MIN_VISIBLE, _cast, render_page

W, H = 192, 256
SMALL = SynthParams(authors=["aoki", "mori"], pages_per_author=4, width=W, height=H)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def read_manifest(out: Path) -> list[dict]:
    with open(out / "scenes.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def touching(labels: np.ndarray) -> bool:
    """Two different characters are 4-neighbours somewhere."""
    pairs = ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:]))
    return any(((a > 0) & (b > 0) & (a != b)).any() for a, b in pairs)


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_default")
    return out, write_dataset(SynthParams(), out), read_manifest(out)


def test_render_is_deterministic():
    style = author_style("aoki", 0)
    a = render_page(7, W, H, 2, "colour", author_style=style)
    b = render_page(7, W, H, 2, "colour", author_style=style)
    c = render_page(8, W, H, 2, "colour", author_style=style)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_author_style_is_per_name_and_stable():
    assert author_style("aoki", 0) == author_style("aoki", 0)
    assert author_style("aoki", 0) != author_style("mori", 0)
    assert author_style("aoki", 0) != author_style("aoki", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        author_style("aoki", 0).eye_scale = 2.0


@pytest.mark.parametrize("style", ["colour", "manga"])
def test_labels_are_consecutive_and_visible(style):
    for seed in range(24):
        n = seed % 4
        rgb, labels = render_page(seed, W, H, n, style, author_style=author_style(f"a{seed % 3}", 0))
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        assert labels.shape == (H, W) and labels.dtype == np.uint8
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        assert list(ids) == list(range(1, len(ids) + 1)) and len(ids) <= n
        assert (counts >= MIN_VISIBLE * labels.size).all()


def test_labels_are_exactly_the_painted_pixels():
    """Painting a character changes exactly the pixels its label covers."""
    rng = np.random.default_rng(0)
    for ops, xf in _cast(rng, 3, 300, 400, author_style("aoki", 0), paneled=False):
        rgb = np.full((400, 300, 3), (1, 2, 3), np.uint8)  # a colour no part uses
        labels = np.zeros((400, 300), np.uint8)
        _paint(ops, rgb, labels, 5, xf, 2)
        assert np.array_equal((rgb != (1, 2, 3)).any(axis=2), labels == 5)


def test_figure_sprite_is_one_whole_figure_cropped_tight():
    rng, looks = np.random.default_rng(0), set()
    for _ in range(6):
        s = figure_sprite(rng, 200)
        assert s.dtype == np.uint8 and s.shape[2] == 4 and 190 <= s.shape[0] <= 200
        alpha = s[..., 3]
        assert set(np.unique(alpha)) == {0, 255}  # hard edges: the label is exact
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        assert cv2.connectedComponents((alpha > 0).astype(np.uint8))[0] == 2  # one piece
        looks.add(tuple(np.median(s[alpha > 0][:, :3], axis=0)))
    assert len(looks) == 6  # a new character each time
    assert np.array_equal(figure_sprite(np.random.default_rng(1), 150), figure_sprite(np.random.default_rng(1), 150))


def test_black_page():
    rgb, labels = render_page(3, W, H, 2, "colour", kind="black")
    assert not rgb.any() and not labels.any()


@pytest.mark.parametrize("style", ["colour", "manga"])
def test_empty_page_has_content_but_no_characters(style):
    rgb, labels = render_page(3, W, H, 3, style, kind="empty")
    assert not labels.any()
    assert rgb.std() > 5 and len(np.unique(rgb.reshape(-1, 3), axis=0)) >= 2


def test_manga_is_grey_and_colour_is_not():
    for seed in range(8):
        manga, _ = render_page(seed, W, H, 2, "manga")
        assert (manga[..., 0] == manga[..., 1]).all() and (manga[..., 1] == manga[..., 2]).all()
    colour, _ = render_page(0, W, H, 2, "colour")
    assert (colour[..., 0] != colour[..., 2]).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="style"):
        render_page(0, W, H, 1, "sepia")
    with pytest.raises(ValueError, match="kind"):
        render_page(0, W, H, 1, "colour", kind="blank")


def test_describe_labels():
    labels = np.zeros((6, 6), np.uint8)
    labels[2:4, 1:3], labels[2:4, 3:5] = 1, 2
    assert describe_labels(labels) == (False, True)
    labels[2:4, 3:5] = 0
    labels[5, 0] = 2
    assert describe_labels(labels) == (True, False)


def test_layout_and_byte_identical_reruns(tmp_path):
    paths = write_dataset(SMALL, tmp_path / "a")
    write_dataset(SMALL, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * 8 + 1
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel

    out = tmp_path / "a"
    rows = read_manifest(out)
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert [out / r["path"] for r in rows] == paths
    assert len({r["stem"] for r in rows}) == len(rows)
    for row, path in zip(rows, paths):
        author, work = row["author"], row["work"]
        assert re.fullmatch(rf"{author}_{work}_\d\d", row["stem"]) and work in ("ep01", "ep02")
        assert path == out / author / "org" / work / f"{row['stem']}.png"
        gt = read_label_png(path.with_name(f"{row['stem']}_gt.png"))
        assert gt.shape == read_rgb(path).shape[:2] == (int(row["height"]), int(row["width"]))
        assert int(row["n_chars"]) == gt.max()
    assert sorted(r["kind"] for r in rows if r["author"] == "aoki" and r["work"] == "ep01") == ["black", "empty"]


def test_default_set_totals(default_set):
    out, paths, rows = default_set
    params = SynthParams()
    assert len(rows) == len(paths) == len(params.authors) * params.pages_per_author
    for author in params.authors:
        assert sum(r["author"] == author for r in rows) == params.pages_per_author
        assert {r["work"] for r in rows if r["author"] == author} == {"ep01", "ep02"}
    kinds = [r["kind"] for r in rows]
    assert kinds.count("black") == 1 and kinds.count("empty") == 1
    special = [r for r in rows if r["kind"] != "normal"]
    assert all(r["author"] == params.authors[0] and r["work"] == "ep01" for r in special)
    assert {r["style"] for r in rows} == {"colour", "manga"}
    assert {int(r["n_chars"]) for r in rows if r["kind"] == "normal"} >= {1, 2}
    assert any(int(r["width"]) > int(r["height"]) for r in rows)  # some landscape pages


def test_default_set_ground_truth(default_set):
    out, paths, rows = default_set
    occluded = truncated = 0
    for row, path in zip(rows, paths):
        gt = read_label_png(path.with_name(f"{row['stem']}_gt.png"))
        assert (int(row["truncated"]), int(row["overlap"])) == tuple(map(int, describe_labels(gt)))
        if row["kind"] == "black":
            assert not read_rgb(path).any() and not gt.any()
        if row["kind"] == "empty":
            assert not gt.any() and read_rgb(path).std() > 5
        if row["style"] == "manga":
            rgb = read_rgb(path)
            assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        occluded += touching(gt)
        border = np.concatenate([gt[0], gt[-1], gt[:, 0], gt[:, -1]])
        truncated += bool(border.any())
    assert occluded >= 1 and truncated >= 1
