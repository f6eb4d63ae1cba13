"""The framing tag (L2): what the model sees, how its answers become a kind, the shipped tagger on a
figure cut at five heights (pinned by pytest-regressions), when the tag is written, how validate
measures it against box ground truth, and train-framing end to end on a tiny set."""
import csv
import json

import cv2
import numpy as np
import pytest

from kirinuki.core.cards import sha256_file
from kirinuki.core.config import DEFAULT_FRAMING_MODEL
from kirinuki.core.framing import BY_EXTENT, INPUT, KINDS, decode, framing_input
from kirinuki.core.instances import bbox
from kirinuki.qc.validate import box_grade_summary, framing_agreement
from kirinuki.quality.framing import FramingTagger
from kirinuki.quality.score import grade
from kirinuki.train.framing import spans
from test_score import MODEL, P, composite, draw_figure, features, page_rgb


def test_the_input_keeps_the_aspect_on_white():
    tall = np.zeros((200, 50, 4), np.uint8)
    tall[..., 3] = 255  # an opaque black strip
    x = framing_input(tall)
    assert x.shape == (INPUT, INPUT) and x.dtype == np.float32
    cols = np.nonzero((x < 0).any(0))[0]
    assert x.min() == -0.5 and x.max() == 0.5 and len(cols) == 16  # 64 x 16: a 4:1 strip, centred
    see_through = tall.copy()
    see_through[..., 3] = 0
    assert (framing_input(see_through) == 0.5).all()  # transparent = white paper
    assert np.array_equal(framing_input(tall[..., :3]), x)  # an RGB box crop reads the same


@pytest.mark.parametrize("probs, kind", [((0.1, 0.1, 0.1, 0.1), "close-up"), ((0.9, 0.2, 0.1, 0.1), "portrait"),
                                         ((0.9, 0.9, 0.3, 0.1), "upper_body"), ((0.9, 0.9, 0.9, 0.2), "cowboy_shot"),
                                         ((0.99, 0.9, 0.8, 0.7), "full_body")])
def test_four_answers_count_how_far_down_the_body_reaches(probs, kind):
    got, confidence = decode(np.array(probs))
    assert got == kind and confidence == pytest.approx(min(abs(p - 0.5) for p in probs) * 2)


def test_answers_that_contradict_each_other_are_never_sure():
    # "not past the close-up" but "past the portrait and the upper body": the first no decides, unsure
    assert decode(np.array([0.02, 0.98, 0.99, 0.01])) == ("close-up", 0.0)
    assert decode(np.array([0.98, 0.02, 0.99, 0.01])) == ("portrait", 0.0)


def test_landmarks_give_each_kind_its_own_span_down_the_body():
    marks = {"chin": 0.14, "armpit": 0.22, "waist": 0.4, "crotch": 0.52, "ankle": 0.94}
    got = spans(marks)
    assert list(got) == list(KINDS)  # every kind, widest first
    order = [got[k] for k in BY_EXTENT]  # close-up .. full_body: each span below the last, none overlapping
    assert all(lo < hi for lo, hi in order) and all(a[1] <= b[0] for a, b in zip(order, order[1:]))
    assert got["upper_body"][0] > marks["waist"] and got["full_body"][0] > marks["ankle"]
    bust = spans({**marks, "waist": None, "crotch": None, "ankle": None})  # a bust: no lower kinds
    assert set(bust) == {"portrait", "close-up"} and bust["portrait"][1] == 1.0


def test_the_shipped_tagger_on_a_figure_cut_at_five_heights(data_regression):
    rgb = page_rgb((900, 480))
    mask = draw_figure(rgb, 240, 40, 810)
    x0, y0, x1, y1 = bbox(mask)
    rgba = np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])[y0:y1, x0:x1]
    tagger = FramingTagger(DEFAULT_FRAMING_MODEL)
    got = {}
    for share in (1.0, 0.75, 0.5, 0.3, 0.15):
        crop = rgba[:max(8, int(share * rgba.shape[0]))]
        kind, confidence = tagger(crop)
        got[f"{share:.2f}"] = {"kind": kind, "confidence": confidence}
        assert tagger(crop) == (kind, confidence)  # deterministic
    extents = [BY_EXTENT.index(v["kind"]) for v in got.values()]
    assert extents[0] > extents[-1]  # the whole figure reaches further down than its head
    data_regression.check(got)


def test_the_tag_is_written_only_when_sure_and_only_for_one_figure():
    rgb = page_rgb()
    mask = draw_figure(rgb, 240, 60, 500)
    x0, y0, x1, y1 = bbox(mask)
    rgba = np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])[y0:y1, x0:x1]
    f = features(rgba, mask[y0:y1, x0:x1], 0.985, P)
    predicted = composite([f], MODEL)[0]
    sure = grade(f, predicted, P, ("full_body", 0.97))
    assert sure["framing"] == "full_body" and sure["layers"]["l2_content"]["framing_confidence"] == 0.97
    unsure = grade(f, predicted, P, ("cowboy_shot", 0.4))
    assert unsure["framing"] is None and unsure["layers"]["l2_content"]["framing_guess"] == "cowboy_shot"
    assert unsure["score"] == sure["score"] and unsure["grade"] == sure["grade"]  # framing is no fault
    two = grade({**f, "heads": 2}, predicted, P, ("full_body", 0.97))
    assert "multi_character" in two["reasons"] and two["framing"] is None
    assert "framing" not in grade(f, predicted, P)["layers"]["l2_content"]  # no tagger ran


def test_validate_counts_agreement_with_the_figures_kinds():
    def cut(k, kind):
        return {"image": "p", "k": k, "group": "a", "box_iou": 0.8, "target": 0.8, "clean": True, "holds": 1,
                "false": False, "kind": kind}

    def rec(guess, tagged):
        return {"score": 0.8, "grade": "B", "lora_ok": True,
                "layers": {"l2_content": {"framing": guess if tagged else None, "framing_guess": guess}}}
    cutouts = [cut(1, "full_body"), cut(2, "portrait"), cut(3, "close-up"), cut(4, None)]
    scores = {("p", 1): rec("full_body", True), ("p", 2): rec("upper_body", True), ("p", 3): rec("full_body", False),
              ("p", 4): rec("portrait", True)}
    got = box_grade_summary(cutouts, scores)["framing"]
    assert got == {"n": 3, "exact": 0.3333, "within_one": 0.6667, "tagged": 2, "tagged_exact": 0.5}
    assert framing_agreement([]) == {"n": 0}


@pytest.mark.slow
def test_train_framing_writes_a_tagger_and_its_card(tmp_path):
    from typer.testing import CliRunner

    from kirinuki.cli import app

    sprites = tmp_path / "sprites" / "drawn"
    sprites.mkdir(parents=True)
    rows = []
    for i, (hair, clothes) in enumerate((((60, 40, 110), (190, 70, 70)), ((20, 20, 20), (40, 120, 60)))):
        rgb = page_rgb((700, 320))
        mask = draw_figure(rgb, 160, 20, 640, hair=hair, clothes=clothes)
        rgba = np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])
        cv2.imwrite(str(sprites / f"f{i}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        # draw_figure: head 2/9, dress to 6/9, legs to 9/9 of the height
        rows.append({"file": f"drawn/f{i}.png", "sha256": sha256_file(sprites / f"f{i}.png"), "skip": "0",
                     "kind": "full_body", "chin": "20", "armpit": "30",
                     "waist": "45", "crotch": "66", "ankle": "94"})
    table = tmp_path / "framing.csv"
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    cv2.imwrite(str(backgrounds / "wall.png"), np.full((64, 64, 3), 200, np.uint8))
    out = tmp_path / "framing.onnx"
    r = CliRunner().invoke(app, ["train-framing", "--landmarks", str(table), "--sprite-root", str(tmp_path / "sprites"),
                                 "--backgrounds", str(backgrounds), "-o", str(out), "--steps", "3", "--samples", "60"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sprites"] == 2 and card["steps"] == 3 and card["page_figures"] == 0
    kind, confidence = FramingTagger(out)(np.full((90, 40, 3), 128, np.uint8))
    assert kind in KINDS and 0 <= confidence <= 1
    r = CliRunner().invoke(app, ["train-framing", "--landmarks", str(tmp_path / "none.csv"), "--sprite-root",
                                 str(tmp_path), "--backgrounds", str(backgrounds), "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "none.csv" in r.output


def test_score_refuses_a_framing_model_that_is_not_there_or_not_onnx(tmp_path):
    from typer.testing import CliRunner

    from kirinuki.cli import app

    page = tmp_path / "run" / "p1"
    page.mkdir(parents=True)
    rgb = page_rgb()
    mask = draw_figure(rgb, 240, 60, 500)
    cv2.imwrite(str(page / "labels.png"), mask.astype(np.uint8))
    x0, y0, x1, y1 = bbox(mask)
    cv2.imwrite(str(page / "char_1.png"), cv2.cvtColor(np.dstack([rgb, mask.astype(np.uint8) * 255])[y0:y1, x0:x1],
                                                       cv2.COLOR_RGBA2BGRA))
    (tmp_path / "run" / "records.jsonl").write_text('{"image": "p1", "k": 1, "confidence": 0.97}\n')
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    for model, why in ((tmp_path / "none.onnx", "no such file"), (junk, "not a usable ONNX model")):
        params = tmp_path / "params.yaml"
        params.write_text(f"score:\n  framing_model: {model}\n")
        r = CliRunner().invoke(app, ["score", str(tmp_path / "run"), "--params", str(params)])
        assert r.exit_code == 2 and f"score.framing_model {model}: {why}" in r.output, r.output
    r = CliRunner().invoke(app, ["score", str(tmp_path / "run")])  # the shipped tagger
    assert r.exit_code == 0, r.output


def test_a_malformed_landmark_table_is_named(tmp_path):
    from kirinuki.train.framing import read_landmarks

    table = tmp_path / "t.csv"
    table.write_text("file,skip,chin\na.png,0,12\n")
    with pytest.raises(ValueError, match="t.csv: missing column"):
        read_landmarks(table, tmp_path, print)
    table.write_text("file,sha256,skip,chin,armpit,waist,crotch,ankle\na.png,00,0,12,x,,,\n")
    with pytest.raises(ValueError, match="t.csv: row 2: a landmark is not a number"):
        read_landmarks(table, tmp_path, print)
    logged = []
    table.write_text("file,sha256,skip,chin,armpit,waist,crotch,ankle\na.png,00,0,12,20,,,\n")
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 10, 4), 255, np.uint8))
    assert read_landmarks(table, tmp_path, logged.append) == [] and "sha256 differs" in logged[0]
