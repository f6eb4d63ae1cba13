"""The scorer on small real images built here, one per failure mode, with their flags and
grades pinned by pytest-regressions (tests/test_score/*.yml): any change of a feature,
score or grade shows up in review as a diff of those files."""
import json

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.config import DEFAULT_SCORE_WEIGHTS, ScoreParams, load_score_model
from kirinuki.quality.features import completeness, features, head_count, outline_contacts, text_share
from kirinuki.core.imageio import read_jsonl, write_jsonl, write_png
from kirinuki.core.instances import bbox, crop_box, cutout
from kirinuki.quality.score import composite, flags, frame_sides, grade, run_score

P = ScoreParams(train_resolution=256)
MODEL = load_score_model(DEFAULT_SCORE_WEIGHTS)
PAGE = (640, 480)  # H, W


def page_rgb(shape=PAGE) -> np.ndarray:
    """A pale vertical gradient, like a sky or a wall behind the characters."""
    ramp = np.linspace(0, 1, shape[0])[:, None, None]
    return (np.array([214, 226, 240]) * (1 - ramp) + np.array([236, 230, 214]) * ramp).astype(np.uint8) \
        .repeat(shape[1], axis=1)


def draw_figure(rgb: np.ndarray, cx: int, top: int, height: int, hair=(60, 40, 110), clothes=(190, 70, 70)) -> np.ndarray:
    """Draw an anime-like standing figure (hair, face with eyes, arms, dress, legs, ink
    outline) onto rgb; return its HxW bool mask (parts outside the page are cut off)."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    r = height // 9
    head = (cx, top + r)
    parts = [  # (drawer, colour) in painting order
        (lambda m, c: cv2.ellipse(m, (head[0], head[1] + r // 3), (int(r * 1.15), int(r * 1.3)), 0, 0, 360, c, -1), hair),
        (lambda m, c: cv2.ellipse(m, (head[0], head[1] + r // 4), (int(r * 0.8), int(r * 0.85)), 0, 0, 180, c, -1), (250, 222, 200)),
        (lambda m, c: cv2.fillPoly(m, [np.array([[cx - r, top + 2 * r], [cx + r, top + 2 * r],
                                                  [cx + 2 * r, top + 6 * r], [cx - 2 * r, top + 6 * r]])], c), clothes),
        (lambda m, c: cv2.line(m, (cx - r, top + 2 * r + 5), (cx - 2 * r, top + 5 * r), c, max(3, r // 3)), (250, 222, 200)),
        (lambda m, c: cv2.line(m, (cx + r, top + 2 * r + 5), (cx + 2 * r, top + 5 * r), c, max(3, r // 3)), (250, 222, 200)),
        (lambda m, c: cv2.rectangle(m, (cx - r + 4, top + 6 * r), (cx - 6, top + 9 * r), c, -1), (250, 222, 200)),
        (lambda m, c: cv2.rectangle(m, (cx + 6, top + 6 * r), (cx + r - 4, top + 9 * r), c, -1), (250, 222, 200)),
    ]
    for draw, colour in parts:
        draw(mask, 1)
        draw(rgb, colour)
    for dx in (-r // 3, r // 3):  # eyes
        cv2.ellipse(rgb, (cx + dx, head[1] + r // 2), (max(2, r // 7), max(3, r // 5)), 0, 0, 360, (40, 60, 140), -1)
    # line art: hair strands, a ribbon, dress folds and trim, shoes
    for dx in range(-r, r + 1, max(2, r // 6)):
        cv2.line(rgb, (cx + dx // 2, top), (cx + dx, head[1] + r // 4), (30, 20, 60), 1)
    for y in range(top + 3 * r, top + 6 * r, max(3, r // 4)):  # a check pattern on the dress
        cv2.line(rgb, (cx - 2 * r, y), (cx + 2 * r, y), (150, 40, 50), 1)
    cv2.ellipse(rgb, (cx, top + 2 * r + r // 3), (r // 2, r // 4), 0, 0, 360, (240, 200, 60), -1)
    for i in range(1, 5):
        x = cx - 2 * r + i * r * 4 // 5
        cv2.line(rgb, (cx + (x - cx) // 2, top + 3 * r), (x, top + 6 * r - 2), (110, 30, 40), 1)
    cv2.line(rgb, (cx - 2 * r + 2, top + 6 * r - 4), (cx + 2 * r - 2, top + 6 * r - 4), (250, 250, 250), 2)
    for x0, x1 in ((cx - r + 4, cx - 6), (cx + 6, cx + r - 4)):
        cv2.rectangle(rgb, (x0, top + 9 * r - r // 3), (x1, top + 9 * r), (90, 50, 30), -1)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (30, 25, 30), 2)
    return mask > 0


def cut(rgb: np.ndarray, mask: np.ndarray, margin: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """What extract writes for one character: (RGBA cut-out, its page mask)."""
    labels = mask.astype(np.uint8)
    return cutout(rgb, labels, 1, crop_box(bbox(mask), labels.shape, margin)), mask


def case_clean():
    rgb = page_rgb()
    return cut(rgb, draw_figure(rgb, 240, 60, 500))


def case_black():
    rgb = np.zeros(PAGE + (3,), np.uint8)
    mask = np.zeros(PAGE, bool)
    mask[100:500, 120:360] = True  # the segmenter took a black screen for a character
    return cut(rgb, mask)


def case_transparent():
    rgba, mask = case_clean()
    rgba[..., 3] = 0
    return rgba, mask


def case_two_in_crop():
    rgb = page_rgb()
    mask = draw_figure(rgb, 130, 80, 460) | draw_figure(rgb, 350, 80, 460, hair=(200, 150, 60), clothes=(60, 90, 170))
    return cut(rgb, mask)


def case_two_touching():
    """Two figures whose arms overlap: ONE connected mask region, as extract merges them."""
    rgb = page_rgb()
    a = draw_figure(rgb, 165, 80, 460)
    b = draw_figure(rgb, 315, 80, 460, hair=(200, 150, 60), clothes=(60, 90, 170))
    mask = a | b
    n, _ = cv2.connectedComponents(mask.astype(np.uint8))
    assert n - 1 == 1, "the two figures must touch"
    return cut(rgb, mask)


def case_cut_by_page_bottom():
    rgb = page_rgb()
    return cut(rgb, draw_figure(rgb, 240, 260, 700))  # legs and skirt run off the page


def case_straight_cut():
    """The mask ends on a straight line at the waist in the middle of the page, where no frame of
    the extraction's is (a line drawn across the page, that it did not take for a panel border)."""
    rgb = page_rgb()
    mask = draw_figure(rgb, 240, 60, 500)
    mask[340:] = False
    rgb[340:] = page_rgb()[340:]
    cv2.line(rgb, (0, 340), (479, 340), (20, 20, 20), 3)
    return cut(rgb, mask)


def case_cut_by_panel():
    """The same figure, where the extraction found it in a panel whose frame is that line."""
    return case_straight_cut()


def case_tiny():
    rgb = page_rgb()
    return cut(rgb, draw_figure(rgb, 240, 200, 90))


# name: (builder, reasons it must have (none: no reason at all), grades it may get; None: any). The composite is fitted on real
# art; a drawn test figure lies outside it, so a clean one may land in A to D: what must hold is that it scores
# above every case with a fault (test_a_clean_figure_scores_above_every_fault).
CASES = {
    "clean": (case_clean, [], "ABCD"),
    "black": (case_black, ["black"], "E"),
    "transparent": (case_transparent, ["empty"], "E"),
    "two_in_crop": (case_two_in_crop, ["multi_character"], "DE"),
    "two_touching": (case_two_touching, ["multi_character"], "DE"),
    "cut_by_page_bottom": (case_cut_by_page_bottom, [], "ABC"),  # framed by the page: no fault, not D/E
    "straight_cut": (case_straight_cut, ["cut_bottom"], "DE"),  # a straight cut inside its frame
    "cut_by_panel": (case_cut_by_panel, [], "ABC"),  # framed by its panel: no fault, not D/E
    "tiny": (case_tiny, ["too_small"], None),  # an L3 matter: the grade is the extraction's
}


PANEL = {"cut_by_panel": (0, 0, 480, 343)}  # x0, y0, x1, y1 of the frame the extraction found the figure in


def score_case(name):
    rgba, mask = CASES[name][0]()
    f = features(rgba, mask, 0.985, P, frame=PANEL.get(name))  # a confident soft mask, as clean segmentations have
    return f, grade(f, composite([f], MODEL)[0], P)


def test_a_clean_figure_scores_above_every_fault():
    clean = score_case("clean")[1]["score"]
    faulty = {name: score_case(name)[1]["score"] for name, (_, reasons, _) in CASES.items()
              if set(reasons) & {"black", "empty", "multi_character", "cut_bottom"}}
    assert all(clean > s for s in faulty.values()), (clean, faulty)


@pytest.mark.parametrize("name", list(CASES))
def test_failure_modes(name, data_regression):
    f, g = score_case(name)
    _, reasons, grades = CASES[name]
    assert set(reasons) <= set(g["reasons"]) and (reasons or not g["reasons"]), g["reasons"]
    assert grades is None or g["grade"] in grades, (g["grade"], g["score"])
    assert g["lora_ok"] == (not g["reasons"] and g["grade"] in P.lora_ok_grades) == g["layers"]["l3_lora"]["ok"]
    if set(reasons) & {"black", "empty", "multi_character", "cut_bottom"}:
        assert g["messages"] and g["messages_ja"] and g["quality_ja"] == "低品質"
    assert g["layers"]["l2_content"]["frame_sides"] == (["bottom"] if name in ("cut_by_page_bottom", "cut_by_panel") else [])
    data_regression.check({"reasons": g["reasons"], "grade": g["grade"], "score": g["score"],
                           "lora_ok": g["lora_ok"], "layers": g["layers"], "features": f})


def test_clean_figure_raises_no_flag_and_its_layers_say_so():
    _, g = score_case("clean")
    assert g["reasons"] == [] and g["layers"]["l1_extraction"]["faults"] == []
    assert g["layers"]["l2_content"] == {"black": False, "empty": False, "heads": 1, "frame_sides": []}


@pytest.mark.parametrize("base, flag", [
    ({}, None),
    ({"opaque_share": 0.01}, "empty"),
    ({"luma_mean": 0.05, "luma_std": 0.01}, "black"),
    ({"regions": 2}, "multi_character"),
    ({"open_parts": 2}, "multi_character"),
    ({"heads": 2}, "multi_character"),
    ({"edge_left": 0.08}, None),  # framed by the page edge: its framing, no fault
    ({"edge_bottom": 0.5, "cut_bottom": 0.9}, None),  # the straight end is the page edge
    ({"cut_top": 0.45}, "cut_top"),
    ({"cut_right": 0.84}, None),  # upright figures have straight sides: stricter
    ({"cut_right": 0.85}, "cut_right"),
    ({"resolution": 0.49}, "too_small"),
    ({"panels": 2}, "spans_panels"),  # extraction saw it cross a panel border
    ({"panels": 1}, None),
    ({"neighbour_edge": 0.09}, None),
    ({"neighbour_edge": 0.1}, "touches_character"),
])
def test_flag_thresholds(base, flag):
    f = {"opaque_share": 0.5, "luma_mean": 0.5, "luma_std": 0.2, "regions": 1, "open_parts": 1, "heads": 1,
         "resolution": 1.0, "neighbour_edge": 0.0, **{f"{k}_{s}": 0.0 for k in ("edge", "cut") for s in ("left", "top", "right", "bottom")}}
    assert flags({**f, **base}, P) == ([flag] if flag else [])


def test_a_flag_caps_the_grade_at_d_and_keeps_the_order():
    f = {"opaque_share": 0.5, "luma_mean": 0.5, "luma_std": 0.2, "regions": 1, "open_parts": 1, "heads": 2,
         "resolution": 1.0, "neighbour_edge": 0.0, **{f"{k}_{s}": 0.0 for k in ("edge", "cut") for s in ("left", "top", "right", "bottom")}}
    high, low = grade(f, 1.0, P), grade(f, 0.8, P)
    assert high["grade"] == "D" and high["score"] < P.grades["C"] and not high["lora_ok"]
    assert low["score"] < high["score"]


def test_straight_cut_inside_the_page_and_page_edge():
    mask = np.zeros((500, 400), bool)
    cv2.ellipse(mask.view(np.uint8), (200, 200), (100, 150), 0, 0, 360, 1, -1)
    whole = completeness(mask)
    assert max(whole[f"cut_{s}"] for s in ("left", "top", "right", "bottom")) < 0.45
    assert whole["edge_bottom"] == 0
    cut_mask = mask.copy()
    cut_mask[250:] = False  # a frame line at y=250
    assert completeness(cut_mask)["cut_bottom"] > 0.9 and completeness(cut_mask)["edge_bottom"] == 0
    edge = mask[:275]  # the page ends at y=275
    assert completeness(edge)["edge_bottom"] > 0.5
    faded = cut_mask[:256]  # the body runs on, but the mask stops 6 px (2%) short of the page edge
    assert completeness(faded)["edge_bottom"] == 0
    assert completeness(faded, band=0.03)["edge_bottom"] > 0.5
    assert completeness(cut_mask[:300], band=0.03)["edge_bottom"] == 0  # well inside the page
    # the same straight end on the frame of the comic panel it lies in is its framing, not a cut
    panel = (50, 20, 360, 254)  # x0, y0, x1, y1: the frame's line at y=250..254
    framed = completeness(cut_mask, band=0.03, frame=panel)
    assert framed["edge_bottom"] > 0.5 and framed["cut_bottom"] > 0.9
    f = {**framed, **{k: 0 for k in ("regions", "open_parts", "heads", "neighbour_edge")}, "opaque_share": 0.5,
         "luma_mean": 0.5, "luma_std": 0.2, "resolution": 1.0}
    assert "cut_bottom" not in flags(f, P) and "bottom" in frame_sides(f, P)
    assert "cut_bottom" in flags({**f, **completeness(cut_mask, band=0.03)}, P)  # no frame there: a cut


def test_outline_along_other_characters_and_the_frame():
    labels = np.zeros((200, 300), np.uint8)
    labels[50:190, 40:140] = 1
    labels[40:190, 140:260] = 2  # meets character 1 along its right side
    labels[20:60, 270:290] = 3  # apart from both
    labels[100:198, 270:298] = 4  # stops just short of the page's bottom right corner
    c = {k: outline_contacts(labels == k, labels) for k in (1, 2, 3, 4)}
    assert 0.2 < c[1]["neighbour_edge"] < 0.3 and 0.15 < c[2]["neighbour_edge"] < 0.3
    assert c[3]["neighbour_edge"] == 0 and c[3]["free_outline"] == 1.0
    assert abs(c[1]["free_outline"] + c[1]["neighbour_edge"] - 1) < 0.01  # free where no neighbour is
    assert 0.4 < c[4]["free_outline"] < 0.6  # along the page's own edge it is not outline the extraction drew
    # inside a comic panel, its border counts like the page's
    assert outline_contacts(labels == 3, labels, frame=(0, 0, 300, 58))["free_outline"] < c[3]["free_outline"]
    assert outline_contacts(labels == 3)["neighbour_edge"] == 0  # no label map: no other character


def test_two_heads_on_the_upper_outline():
    rgb = page_rgb()
    one = draw_figure(rgb, 240, 60, 500)
    two = draw_figure(rgb, 165, 60, 460) | draw_figure(rgb, 315, 60, 460)
    assert head_count(one, P.head_prominence, P.head_level) == 1
    assert head_count(two, P.head_prominence, P.head_level) == 2


def test_lettering_on_paper_is_text():
    rgba = np.full((200, 200, 4), 255, np.uint8)
    for i, word in enumerate(("KYAA", "NANI")):
        cv2.putText(rgba, word, (20, 60 + 60 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0, 255), 2)
    assert text_share(rgba, (6, 60)) > 0.05
    plain = np.full((200, 200, 4), 255, np.uint8)
    assert text_share(plain, (6, 60)) == 0.0


def test_score_weights_with_a_feature_the_scorer_lacks_are_refused(tmp_path):
    """Refused before any cut-out is read, with the file and the features named (exit 2)."""
    weights = yaml.safe_load(DEFAULT_SCORE_WEIGHTS.read_text(encoding="utf-8"))
    weights["features"].append("sparkle")
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(weights))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"score": {"weights_file": str(tmp_path / "w.yaml")}}))
    write_jsonl(tmp_path / "out" / "records.jsonl", [{"image": "p1", "k": 1, "confidence": 0.9}])  # no cut-out files
    r = CliRunner().invoke(app, ["score", str(tmp_path / "out"), "-p", str(tmp_path / "params.yaml")])
    assert r.exit_code == 2 and "w.yaml" in r.output and "['sparkle']" in r.output, r.output
    assert not (tmp_path / "out" / "scores.jsonl").exists()


def test_run_score_rescores_an_extract_folder(tmp_path):
    """No extraction: labels.png, char_<k>.png and records.jsonl are all score needs."""
    rgb = page_rgb()
    first = draw_figure(rgb, 240, 60, 500)
    labels = first.astype(np.uint8)
    write_png(tmp_path / "p1" / "labels.png", labels)
    write_png(tmp_path / "p1" / "char_1.png", cutout(rgb, labels, 1, crop_box(bbox(first), labels.shape, 0.04)))
    write_jsonl(tmp_path / "records.jsonl", [{"image": "p1", "k": 1, "confidence": 0.97}])
    logged = []
    rows, _ = run_score(tmp_path, P, tmp_path / "scores.jsonl", log=logged.append)
    assert read_jsonl(tmp_path / "scores.jsonl") == json.loads(json.dumps(rows)) and len(rows) == 1
    assert set(rows[0]) >= {"image", "k", "score", "grade", "lora_ok", "reasons", "messages_ja", "features"}
    assert any("ms" in line for line in logged)  # the cost per cut-out is reported
    strict = P.model_copy(update={"train_resolution": 4096})  # a score param changed: re-score only
    again, _ = run_score(tmp_path, strict, tmp_path / "scores.jsonl", log=logged.append)
    assert "too_small" in again[0]["reasons"] and not again[0]["lora_ok"]
    assert again[0]["grade"] == rows[0]["grade"]  # too small for training is no extraction fault
    write_jsonl(tmp_path / "records.jsonl", [{"image": "p1", "k": 1, "confidence": 0.97},
                                             {"image": "p1", "k": 2, "confidence": 0.9}])  # char_2.png lost
    rest, unread = run_score(tmp_path, P, tmp_path / "scores.jsonl", log=logged.append)
    assert unread == 1 and len(rest) == 1 and any("char_2.png" in line for line in logged), logged
