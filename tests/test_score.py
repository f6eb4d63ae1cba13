import json

import cv2
import numpy as np
import pytest

from kirinuki.config import ScoreParams
from kirinuki.imageio import write_png
from kirinuki.score import features, grade, run_score

P = ScoreParams(train_resolution=128)


def figure_rgba(h=200, w=140, color=(200, 120, 90)):
    """A clean, smooth figure (head + body ellipses) in the middle of its crop."""
    rgba = np.full((h, w, 4), 255, np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (w // 2, h // 4), (w // 6, h // 8), 0, 0, 360, 255, -1)
    cv2.ellipse(alpha, (w // 2, 3 * h // 5), (w // 4, h // 3), 0, 0, 360, 255, -1)
    rgba[alpha > 0, :3] = color
    rgba[..., 3] = alpha
    return rgba


def on_page(rgba, page_shape=(400, 400), at=(100, 100)):
    """The character's mask placed on an HxW page at (y, x); clipped where it leaves the page."""
    mask = np.zeros(page_shape, bool)
    y, x = at
    h, w = rgba.shape[:2]
    ys, xs = slice(max(0, y), min(page_shape[0], y + h)), slice(max(0, x), min(page_shape[1], x + w))
    mask[ys, xs] = rgba[ys.start - y: ys.stop - y, xs.start - x: xs.stop - x, 3] > 0
    return mask


def score_of(rgba, mask, conf=0.95):
    return grade(features(rgba, mask, conf, P), P)


def test_clean_figure_is_good():
    rgba = figure_rgba()
    g = score_of(rgba, on_page(rgba))
    assert g["reasons"] == [] and g["grade"] in "AB" and g["lora_ok"] and g["quality_ja"] == "高品質"


@pytest.mark.parametrize("make,reason,grades", [
    (lambda r: np.where(r[..., 3:] > 0, np.uint8([0, 0, 0, 255]), r), "black", "E"),
    (lambda r: np.dstack([r[..., :3], np.zeros_like(r[..., 3])]), "empty", "E"),
])
def test_black_and_empty_are_e(make, reason, grades):
    rgba = make(figure_rgba())
    g = score_of(rgba, on_page(figure_rgba()))
    assert reason in g["reasons"] and g["grade"] in grades and not g["lora_ok"] and g["score"] == 0


def test_two_figures_in_one_crop_never_above_d():
    two = np.concatenate([figure_rgba(), figure_rgba()], axis=1)
    g = score_of(two, on_page(two))
    assert "multi_character" in g["reasons"] and g["grade"] in "DE" and not g["lora_ok"]


def test_body_cut_by_page_bottom_never_above_d():
    rgba = figure_rgba()
    mask = on_page(rgba, at=(300, 100))  # lower half leaves the page
    g = score_of(rgba[:100], mask)
    assert "truncated_bottom" in g["reasons"] and g["grade"] in "DE"
    assert "bottom edge" in g["messages"][g["reasons"].index("truncated_bottom")]


def test_tiny_crop_too_small():
    rgba = cv2.resize(figure_rgba(), (20, 30), interpolation=cv2.INTER_NEAREST)
    g = score_of(rgba, on_page(rgba))
    assert "too_small" in g["reasons"] and g["grade"] in "DE"


def test_run_score_writes_a_record_per_cutout(tmp_path):
    rgba = figure_rgba()
    page = tmp_path / "p1"
    write_png(page / "char_1.png", rgba)
    write_png(page / "labels.png", on_page(rgba).astype(np.uint8))
    (tmp_path / "records.jsonl").write_text(json.dumps({"image": "p1", "k": 1, "confidence": 0.9}) + "\n")
    rows = run_score(tmp_path, P)
    saved = [json.loads(l) for l in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert saved == rows and len(rows) == 1
    assert set(rows[0]) >= {"image", "k", "score", "grade", "lora_ok", "reasons", "features"}
