"""Box ground truth of real pages (qc/boxes.py): each failure the real-page check counts, on
label maps drawn by hand here."""
import json

import numpy as np
import pytest

from kirinuki.qc.boxes import BoxGTError, Figure, page_box_metrics, read_box_gt, summarize_boxes

A = Figure((10, 10, 40, 90), head=(25, 20), kind="full_body")
B = Figure((60, 10, 90, 90), head=(75, 20), kind="full_body")


def page(*cutouts):
    labels = np.zeros((100, 120), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(cutouts, 1):
        labels[y0:y1, x0:x1] = k
    return labels


def test_two_figures_cut_out_cleanly_and_alone():
    m = page_box_metrics(page((10, 10, 40, 90), (60, 10, 90, 90)), [A, B])
    assert (m["matched"], m["clean"], m["merged_cutouts"], m["split_figures"], m["false_cutouts"]) == (2, 2, 0, 0, 0)
    assert [f["cutout"] for f in m["figures"]] == [1, 2]


def test_one_cutout_holding_both_figures_is_merged():
    m = page_box_metrics(page((10, 10, 90, 90)), [A, B])
    assert m["merged_cutouts"] == 1 and m["figures_in_merged"] == 2 and m["clean"] == 0
    assert m["cutouts"][1]["holds"] == 2 and m["matched"] <= 1


def test_a_figure_cut_in_two_is_split():
    m = page_box_metrics(page((10, 10, 25, 90), (25, 10, 40, 90), (60, 10, 90, 90)), [A, B])
    assert m["split_figures"] == 1 and m["figures"][0]["split"] and not m["figures"][0]["clean"]
    assert m["clean"] == 1 and m["false_cutouts"] == 0


def test_text_and_props_are_false_cutouts_and_cost_precision():
    m = page_box_metrics(page((10, 10, 40, 90), (95, 5, 118, 30)), [A])
    assert m["false_cutouts"] == 1 and m["matched"] == 1
    s = summarize_boxes([{**m, "image": "p"}])
    assert s["figure_precision"] == 0.5 and s["figure_recall"] == 1.0 and s["false_cutouts_per_page"] == 1.0


def test_a_missed_figure_and_an_empty_page():
    m = page_box_metrics(page((10, 10, 40, 90)), [A, B])
    assert m["matched"] == 1 and not m["figures"][1]["matched"]
    empty = page_box_metrics(page(), [])
    s = summarize_boxes([{**m, "image": "p"}, {**empty, "image": "e"}])
    assert s["figure_recall"] == 0.5 and s["missed_rate"] == 0.5 and s["n_pages"] == 2


def test_each_missed_figure_says_why():
    merged = page_box_metrics(page((10, 10, 90, 90)), [A, B])
    assert [f["missed"] for f in merged["figures"]] == ["in_merged", "in_merged"]
    partial = page_box_metrics(page((10, 10, 40, 30)), [A, B])  # A's head only: box IoU 0.25
    assert [f["missed"] for f in partial["figures"]] == ["partial", "no_cutout"]
    clean = page_box_metrics(page((10, 10, 40, 90), (60, 10, 90, 90)), [A, B])
    assert [f["missed"] for f in clean["figures"]] == [None, None]
    s = summarize_boxes([{**m, "image": i} for i, m in enumerate((merged, partial, clean))])
    assert (s["missed_in_merged"], s["missed_partial"], s["missed_no_cutout"]) == (2, 1, 1)
    assert s["missed_in_merged_rate"] + s["missed_partial_rate"] + s["missed_no_cutout_rate"] == pytest.approx(s["missed_rate"], abs=1e-3)


def test_a_figure_without_head_is_held_by_box_coverage():
    headless = Figure((10, 10, 40, 90))
    assert page_box_metrics(page((5, 5, 95, 95)), [headless, B])["merged_cutouts"] == 1


def test_box_gt_is_checked(tmp_path):
    f = tmp_path / "p_gt.json"
    f.write_text(json.dumps({"figures": [{"box": [1, 2, 30, 40], "head": [10, 8], "kind": "portrait"}]}))
    assert read_box_gt(f, (50, 50)) == [Figure((1, 2, 30, 40), (10, 8), "portrait")]
    for bad, why in (({"figures": [{"box": [5, 5, 5, 9]}]}, "empty"),
                     ({"figures": [{"box": [0, 0, 90, 9]}]}, "outside the 50x50 image"),
                     ({"figures": [{"box": [0, 0, 9, 9], "kind": "bust"}]}, "kind 'bust'"),
                     ({"boxes": []}, "not box ground truth")):
        f.write_text(json.dumps(bad))
        with pytest.raises(BoxGTError, match=why):
            read_box_gt(f, (50, 50))
    f.write_text("{not json")
    with pytest.raises(BoxGTError, match=f"{f.name}: not box ground truth"):
        read_box_gt(f)


def test_the_grade_against_boxes():
    from kirinuki.qc.validate import box_grade_summary
    cutouts = [{"image": "p", "k": 1, "group": "a", "box_iou": 0.9, "target": 0.9, "clean": True, "holds": 1, "false": False},
               {"image": "p", "k": 2, "group": "a", "box_iou": 0.8, "target": 0.8, "clean": True, "holds": 1, "false": False},
               {"image": "p", "k": 3, "group": "a", "box_iou": 0.3, "target": 0.15, "clean": False, "holds": 2, "false": False},
               {"image": "p", "k": 4, "group": "a", "box_iou": 0.0, "target": 0.0, "clean": False, "holds": 0, "false": True}]
    scores = {("p", 1): {"score": 0.9, "grade": "A", "lora_ok": True},
              ("p", 2): {"score": 0.5, "grade": "D", "lora_ok": False},
              ("p", 3): {"score": 0.6, "grade": "C", "lora_ok": False},
              ("p", 4): {"score": 0.1, "grade": "E", "lora_ok": False}}
    g = box_grade_summary(cutouts, scores)
    assert (g["n"], g["clean"], g["lora_ok_count"], g["lora_ok_precision"], g["lora_ok_recall"]) == (4, 2, 1, 1.0, 0.5)
    assert (g["clean_graded_d_or_e"], g["merged"], g["merged_graded_d_or_e"]) == (1, 1, 0)
    assert (g["no_figure"], g["no_figure_graded_d_or_e"]) == (1, 1)
    assert g["score_auroc_clean"] == 0.75 and g["score_box_spearman"] == 0.8
    assert box_grade_summary(cutouts[:2], scores) == {"n": 2}
