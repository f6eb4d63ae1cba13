import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest

from kirinuki.core.config import ValidateParams
from kirinuki.core.imageio import write_png
from kirinuki.qc.validate import (
    BAND_NAMES, CUTOUT_COLUMNS, IMAGE_COLUMNS, ValidateError, auroc, cutout_truth, gt_instances, iou_matrix,
    page_metrics, run_validate, summarize,
)

A = np.array  # short, for the hand-written label maps below


def metrics(pred, gt, iou_match=0.5):
    return page_metrics(A(pred), A(gt), iou_match)


# --- page level ---------------------------------------------------------------------------

def test_perfect_match():
    m = metrics([[1, 1], [0, 2]], [[1, 1], [0, 2]])
    assert m == {"n_gt": 2, "n_pred": 2, "union_iou": 1.0, "instance_iou": 1.0, "tp": 2, "fp": 0,
                 "fn": 0, "count_ok": True, "empty_fp": False, "cutout_iou": {1: 1.0, 2: 1.0}}


def test_swapped_ids_still_match_perfectly():
    pred, gt = A([[2, 2], [0, 1]]), A([[1, 1], [0, 2]])
    m = page_metrics(pred, gt, 0.5)
    assert (m["instance_iou"], m["tp"], m["fp"], m["fn"]) == (1.0, 2, 0, 0)


def test_iou_matrix_sparse_ids_and_hungarian_beats_greedy():
    gt = A([[1, 1, 2, 2],
            [1, 1, 2, 2],
            [1, 1, 0, 0],
            [1, 1, 0, 0]])
    pred = A([[7, 7, 7, 0],
              [7, 7, 7, 0],
              [0, 0, 0, 0],
              [3, 3, 0, 0]])
    iou, p_ids, g_ids = iou_matrix(pred, gt)
    assert p_ids.tolist() == [3, 7] and g_ids.tolist() == [1, 2]
    # 3 vs 1: 2 / 8; 7 vs 1: 4 / (6 + 8 - 4); 7 vs 2: 2 / (6 + 4 - 2)
    np.testing.assert_allclose(iou, [[0.25, 0.0], [0.4, 0.25]])
    # greedy would take 7-1 (0.4) and leave 3 unmatched; the optimum pairs 3-1 and 7-2 (0.5)
    m = page_metrics(pred, gt, 0.5)
    assert m["instance_iou"] == 0.25 and m["cutout_iou"] == {3: 0.25, 7: 0.25}
    assert (m["tp"], m["fp"], m["fn"]) == (0, 2, 2)
    assert m["union_iou"] == pytest.approx(8 / 12)


def test_missed_instance():
    m = metrics([[1, 1], [0, 0]], [[1, 1], [2, 2]])
    assert (m["n_gt"], m["n_pred"], m["tp"], m["fp"], m["fn"]) == (2, 1, 1, 0, 1)
    assert m["instance_iou"] == 0.5 and m["union_iou"] == 0.5
    assert m["count_ok"] is False


def test_extra_predicted_instance_is_a_false_positive():
    m = metrics([[1, 1], [0, 5]], [[1, 1], [0, 0]])
    assert (m["n_gt"], m["n_pred"], m["tp"], m["fp"], m["fn"]) == (1, 2, 1, 1, 0)
    assert m["instance_iou"] == 1.0 and m["union_iou"] == pytest.approx(2 / 3)
    assert m["cutout_iou"] == {1: 1.0, 5: 0.0}


def test_iou_exactly_at_threshold_counts():
    m = metrics([[1, 0], [0, 0]], [[1, 1], [0, 0]])
    assert m["cutout_iou"] == {1: 0.5} and m["tp"] == 1


def test_empty_gt_without_predictions():
    m = metrics([[0, 0], [0, 0]], [[0, 0], [0, 0]])
    assert math.isnan(m["union_iou"]) and math.isnan(m["instance_iou"])
    assert (m["n_gt"], m["n_pred"], m["tp"], m["fp"], m["fn"]) == (0, 0, 0, 0, 0)
    assert m["count_ok"] is True and m["empty_fp"] is False and m["cutout_iou"] == {}


def test_empty_gt_with_prediction_is_empty_fp():
    m = metrics([[0, 3], [0, 0]], [[0, 0], [0, 0]])
    assert m["union_iou"] == 0.0 and math.isnan(m["instance_iou"])
    assert (m["fp"], m["count_ok"], m["empty_fp"]) == (1, False, True)
    assert m["cutout_iou"] == {3: 0.0}


def test_binary_gt_is_one_union_instance():
    raw = A([[255, 255], [0, 255]], dtype=np.uint8)
    gt = gt_instances(raw)
    assert gt.tolist() == [[1, 1], [0, 1]]
    m = page_metrics(A([[1, 2], [0, 2]]), gt, 0.5)
    assert (m["n_gt"], m["n_pred"], m["tp"], m["fp"]) == (1, 2, 1, 1)
    # the one GT instance goes to the better half; the other half is an unmatched extra
    assert m["union_iou"] == 1.0 and m["cutout_iou"] == {1: 0.0, 2: pytest.approx(2 / 3)}


def test_gt_instances_keeps_real_label_maps():
    assert gt_instances(A([[255, 1], [0, 2]])).tolist() == [[255, 1], [0, 2]]
    assert gt_instances(np.zeros((2, 2), np.uint8)).tolist() == [[0, 0], [0, 0]]


def test_uint16_labels():
    pred = A([[300, 300], [1000, 0]], dtype=np.uint16)
    gt = A([[256, 256], [0, 0]], dtype=np.uint16)
    iou, p_ids, g_ids = iou_matrix(pred, gt)
    assert p_ids.tolist() == [300, 1000] and g_ids.tolist() == [256]
    np.testing.assert_allclose(iou, [[1.0], [0.0]])
    assert page_metrics(pred, gt, 0.5)["cutout_iou"] == {300: 1.0, 1000: 0.0}


def test_bad_label_maps_raise():
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="0..65535"):
        iou_matrix(A([[0, -1]]), A([[0, 1]]))


# --- corpus level -------------------------------------------------------------------------

def _per_image():
    return pd.DataFrame([
        ["a", 2, 2, 0.8, 0.7, 1, 1, 1, True, False],
        ["b", 1, 0, 0.0, 0.0, 0, 0, 1, False, False],
        ["c", 0, 1, 0.0, np.nan, 0, 1, 0, False, True],
        ["d", 0, 0, np.nan, np.nan, 0, 0, 0, True, False],
    ], columns=IMAGE_COLUMNS)


def test_summarize_known_answers():
    per_cutout = pd.DataFrame([
        ["a", 1, 0.9, 0.9, "A", True, "", 1, False],
        ["a", 2, 0.5, 0.6, "C", False, "too_small", 2, True],
        ["c", 1, 0.0, 0.8, "B", True, "", 0, False],
    ], columns=CUTOUT_COLUMNS)
    s = summarize(_per_image(), per_cutout, ValidateParams(iou_match=0.5, good_iou=0.75))
    assert s == {
        "n_images": 4, "n_gt_instances": 3, "n_cutouts": 3,
        "union_miou": 0.4,                 # pages with GT only: (0.8 + 0.0) / 2
        "instance_miou": 0.4667,           # pooled: (0.7 * 2 + 0.0 * 1) / 3
        "precision": 0.3333, "recall": 0.3333,
        "count_accuracy": 0.5, "empty_pages": 2, "empty_page_fp_rate": 0.5,
        "score_iou_spearman": 0.5,         # ranks (3, 1, 2) vs (3, 2, 1)
        "lora_ok_precision": 0.5, "lora_ok_count": 2,
        "lora_ok_auroc": 0.75,             # the good one is ok; of the two others one is, one not
        "score_auroc": 1.0,                # 0.9 outranks 0.6 and 0.8
        "grades": {"A": {"n": 1, "mean_iou": 0.9}, "B": {"n": 1, "mean_iou": 0.0},
                   "C": {"n": 1, "mean_iou": 0.5}, "D": {"n": 0, "mean_iou": None},
                   "E": {"n": 0, "mean_iou": None}},
        "grade_iou_bands": {g: {b: int((g, b) in {("A", "iou_090_100"), ("B", "iou_000_025"),
                                                   ("C", "iou_050_075")}) for b in BAND_NAMES}
                            for g in "ABCDE"},
        # a2 holds two GT characters and a cut body, graded C; c1 holds none, graded B
        "failure_modes": {"multi_character": {"n": 1, "graded_d_or_e": 0, "flagged": 0},
                          "cut_body": {"n": 1, "graded_d_or_e": 0, "flagged": 0},
                          "no_character": {"n": 1, "graded_d_or_e": 0}},
        "flag_false_positive_rate": {"multi_character": 0.0, "truncated": 0.0},
    }
    json.dumps(s, allow_nan=False)


def test_summarize_without_scores_gives_null_score_metrics():
    per_cutout = pd.DataFrame([["a", 1, 0.9, None, None, None, "", 1, False],
                               ["a", 2, 0.5, None, None, None, "", 1, False]],
                              columns=CUTOUT_COLUMNS)
    s = summarize(_per_image(), per_cutout, ValidateParams())
    assert s["score_iou_spearman"] is None and s["lora_ok_precision"] is None
    assert s["lora_ok_count"] is None and s["lora_ok_auroc"] is None and s["score_auroc"] is None
    assert s["failure_modes"] is None and s["flag_false_positive_rate"] is None
    assert all(g == {"n": 0, "mean_iou": None} for g in s["grades"].values())


def test_summarize_constant_scores_and_no_cutouts():
    per_cutout = pd.DataFrame([["a", k, iou, 0.5, "C", False, "", 1, False] for k, iou in ((1, 0.2), (2, 0.4), (3, 0.9))],
                              columns=CUTOUT_COLUMNS)
    s = summarize(_per_image(), per_cutout, ValidateParams())
    assert s["score_iou_spearman"] is None  # constant input has no rank correlation
    assert s["lora_ok_precision"] is None and s["lora_ok_count"] == 0
    empty = summarize(_per_image().iloc[3:], pd.DataFrame(columns=CUTOUT_COLUMNS), ValidateParams())
    assert (empty["n_cutouts"], empty["union_miou"], empty["instance_miou"]) == (0, None, None)
    assert (empty["precision"], empty["recall"]) == (None, None)


def test_cutout_truth_finds_merged_characters_and_cut_bodies():
    gt = np.zeros((300, 300), np.uint8)
    cv2.ellipse(gt, (60, 120), (27, 60), 0, 0, 360, 1, -1)   # two whole characters side by side
    cv2.ellipse(gt, (126, 120), (27, 60), 0, 0, 360, 2, -1)
    gt[210:300, 210:270] = 3                                 # a third one running off the bottom edge
    pred = np.zeros_like(gt)
    pred[54:186, 24:162] = 1                                 # one cut-out holding both
    pred[210:300, 210:270] = 2
    p = ValidateParams()
    assert cutout_truth(pred, gt, p) == {1: {"gt_instances": 2, "gt_cut": False},
                                         2: {"gt_instances": 1, "gt_cut": True}}


def test_auroc_counts_ties_half_and_needs_both_classes():
    assert auroc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == 0.875  # 3 wins + a tie, of 4
    assert auroc([1, 0], [True, True]) is None


# --- end to end ---------------------------------------------------------------------------

def _page(extract, stem, labels):
    write_png(extract / stem / "labels.png", labels)
    write_png(extract / stem / "char_1.png", np.zeros((2, 2, 4), np.uint8))


def test_run_validate_end_to_end(tmp_path, capsys):
    extract, gts = tmp_path / "out", tmp_path / "gt"
    quads = A([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]], dtype=np.uint8)
    _page(extract, "p1", np.where(quads > 0, 3 - quads, 0).astype(np.uint8))  # ids swapped
    write_png(gts / "sub" / "p1_gt.png", quads)
    left = np.zeros((4, 4), np.uint16)
    left[:3, :2] = 1
    _page(extract, "p2", left)                                               # uint16, 6 of 8 px
    binary = np.zeros((4, 4), np.uint8)
    binary[:, :2] = 255
    write_png(gts / "p2_gt.png", binary)
    _page(extract, "p3", quads)                                              # no GT
    _page(extract, "p4", quads)                                              # GT of another size
    write_png(gts / "p4_gt.png", np.zeros((2, 2), np.uint8))
    _page(extract, "p5", np.zeros((4, 4), np.uint8))                         # empty page, empty GT
    write_png(gts / "p5_gt.png", np.zeros((4, 4), np.uint8))
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image": "p1", "k": 1, "score": 0.9, "grade": "A", "lora_ok": True, "reasons": []},
        {"image": "p1", "k": 2, "score": 0.8, "grade": "B", "lora_ok": True, "reasons": []},
        {"image": "p2", "k": 1, "score": 0.5, "grade": "C", "lora_ok": False, "reasons": ["too_small", "heads"]},
        {"image": "p3", "k": 1, "score": 0.1, "grade": "E", "lora_ok": False, "reasons": []},
    ]))
    paths = tmp_path / "m.json", tmp_path / "per_image.csv", tmp_path / "per_cutout.csv"

    result = run_validate(extract, gts, scores, ValidateParams(), *paths)

    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "p3" in err[0] and "warning" in err[0]
    assert "error" in err[1] and "p4" + "/labels.png" in err[1] and "p4_gt.png" in err[1]
    assert json.loads(paths[0].read_text()) == result
    assert result["n_images"] == 3 and result["n_gt_instances"] == 3 and result["n_cutouts"] == 3
    assert result["union_miou"] == 0.875 and result["instance_miou"] == 0.9167
    assert (result["precision"], result["recall"], result["count_accuracy"]) == (1.0, 1.0, 1.0)
    assert (result["empty_pages"], result["empty_page_fp_rate"]) == (1, 0.0)
    assert result["score_iou_spearman"] == 0.866  # ranks (3, 2, 1) vs (2.5, 2.5, 1)
    assert (result["lora_ok_precision"], result["lora_ok_count"]) == (1.0, 2)
    assert result["grades"]["C"] == {"n": 1, "mean_iou": 0.75}
    assert paths[1].read_text().splitlines() == [
        ",".join(IMAGE_COLUMNS),
        "p1,2,2,1.0,1.0,2,0,0,True,False",
        "p2,1,1,0.75,0.75,1,0,0,True,False",
        "p5,0,0,,,0,0,0,True,False",
    ]
    assert paths[2].read_text().splitlines() == [
        ",".join(CUTOUT_COLUMNS),
        "p1,1,1.0,0.9,A,True,,1,True",   # on these 4x4 pages every GT instance meets a page edge
        "p1,2,1.0,0.8,B,True,,1,True",
        "p2,1,0.75,0.5,C,False,too_small;heads,1,True",
    ]
    table = (tmp_path / "grades.md").read_text()  # beside the metrics JSON
    assert "| A | 0 | 0 | 0 | 0 | 1 | 1 | 1.000 |" in table and "| C | 0 | 0 | 0 | 1 | 0 | 1 | 0.750 |" in table
    assert "AUROC of lora_ok for IoU ≥ 0.75: None" in table  # every cut-out here is good: no negatives


def test_run_validate_without_scores(tmp_path):
    extract, gts = tmp_path / "out", tmp_path / "gt"
    labels = A([[1, 1], [0, 0]], dtype=np.uint8)
    _page(extract, "p1", labels)
    write_png(gts / "p1_gt.png", labels * 255)
    paths = tmp_path / "m.json", tmp_path / "i.csv", tmp_path / "c.csv"
    result = run_validate(extract, gts, None, ValidateParams(), *paths)
    assert result["instance_miou"] == 1.0 and result["score_iou_spearman"] is None
    assert result["lora_ok_count"] is None
    assert paths[2].read_text().splitlines()[1] == "p1,1,1.0,,,,,1,True"  # the GT touches the page edges


def test_run_validate_without_any_gt_fails(tmp_path):
    extract, gts = tmp_path / "out", tmp_path / "gt"
    _page(extract, "p1", np.zeros((2, 2), np.uint8))
    gts.mkdir()
    with pytest.raises(ValidateError, match="ground truth"):
        run_validate(extract, gts, None, ValidateParams(), tmp_path / "m.json", tmp_path / "i.csv",
                     tmp_path / "c.csv")
    assert not (tmp_path / "m.json").exists()
