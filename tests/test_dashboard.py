"""The static dashboard: cards from score records, relative image files, overlays, index."""
import json
import re
import shutil

import cv2
import numpy as np

from kirinuki.core.config import ScoreParams
from kirinuki.core.imageio import read_jsonl
from kirinuki.core.cards import sha256_file
from kirinuki.dataset.reviews import Review, append_review
from kirinuki.publish.dashboard import (build_cards, overlay, reason_labels, render_dashboard, review_counts,
                                        with_reviews, write_dashboard)
from kirinuki.publish.track import TrackOptions, run_paths, run_track

from works import tracked, tracker_params

SCORES = [
    {"image": "p2", "k": 1, "grade": "E", "score": 0.0, "lora_ok": False, "reasons": ["black"],
     "messages": ["black screen"], "messages_ja": ["黒画面"], "quality_ja": "低品質"},
    {"image": "p1", "k": 2, "grade": "A", "score": 0.91, "lora_ok": True, "reasons": [],
     "messages": [], "messages_ja": [], "quality_ja": "高品質"},
    {"image": "p1", "k": 1, "grade": "D", "score": 0.5, "lora_ok": False,
     "reasons": ["multi_character", "truncated_left"], "messages": ["two", "cut"],
     "messages_ja": ["複数キャラクター", "left端で体が切れている"], "quality_ja": "低品質"},
]
STATE = {"tracker_id": "QCC-011", "author": "aoki", "work": "ep1", "status": "done", "status_label": "完了",
         "started": "s", "finished": "f", "pages": 2, "resumed": 0, "errors": []}


def test_cards_follow_pages_and_carry_iou():
    cards = build_cards(SCORES, {("p1", 1): 0.8})
    assert [(c.image, c.k) for c in cards] == [("p1", 1), ("p1", 2), ("p2", 1)]
    assert cards[0].iou == 0.8 and cards[1].iou is None
    assert cards[0].thumb == "thumbs/p1/1.png" and cards[0].overlay == "overlays/p1.jpg"
    assert reason_labels(cards) == {"black": "黒画面", "multi_character": "複数キャラクター",
                                    "truncated_left": "left端で体が切れている"}


def test_page_shows_grades_reasons_and_iou():
    state = {**STATE, "summary": "<script>alert(1)</script>"}
    html = render_dashboard(state, build_cards(SCORES, {("p1", 1): 0.8}), None, None)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html  # user text is escaped
    assert html.count('<article class="card"') == 3
    assert 'data-grade="D" data-reasons="multi_character truncated_left"' in html
    assert "高品質" in html and "低品質" in html and "IoU 0.80" in html
    assert '<option value="black">黒画面 (black)</option>' in html
    assert "No ground truth" in html  # no validate.json: says so instead of IoU metrics


def test_overlay_tints_each_instance():
    rgb = np.full((60, 80, 3), 255, np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    labels[10:50, 5:30], labels[10:50, 45:75] = 1, 2
    out = overlay(rgb, labels, 0.5)
    assert out.shape == rgb.shape
    assert (out[30, 15] != out[30, 60]).any()  # two instances, two colours
    assert (out[0, 40] == 255).all()  # background untouched


def test_workspace_dashboard_uses_relative_image_files(tmp_path, tiny_model):
    ws, _ = tracked(tmp_path / "root", tiny_model)
    html = (ws.dashboard / "index.html").read_text()
    assert "base64" not in html and "data:image" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len([s for s in srcs if not s.startswith("failures/")]) == 12  # 6 cut-outs, each with its page overlay
    assert any(s.startswith("failures/examples/") for s in srcs)  # the tracker run's failure patterns
    for src in srcs:
        assert not src.startswith(("/", "http")) and (ws.dashboard / src).is_file()
    thumb = cv2.imread(str(ws.dashboard / next(s for s in srcs if s.startswith("thumbs/"))), cv2.IMREAD_UNCHANGED)
    assert thumb.ndim == 3 and thumb.shape[2] == 4  # the cut-out keeps its transparency
    assert "instance mIoU" in html and "no baseline" in html
    index = (ws.dir.parent / "index.html").read_text()
    assert 'href="QCC-011/dashboard/index.html"' in index


# --- reviews baked into the page ------------------------------------------------------------


def test_cards_carry_their_review_and_the_page_counts_them():
    shas = {("p1", 1): "a" * 64, ("p1", 2): "b" * 64, ("p2", 1): "c" * 64}
    state = {"a" * 64: Review("exclude", "should be E", "kana", "t1"), "b" * 64: Review("approve", None, "kana", "t2"),
             "d" * 64: Review("approve", None, "kana", "t0")}  # a cut-out of an earlier run: not counted
    cards = with_reviews(build_cards(SCORES, {}), shas, state)
    assert [c.cutout for c in cards] == ["p1/1", "p1/2", "p2/1"] and cards[2].review is None
    rv = review_counts(cards)
    assert (rv["reviewed"], rv["approved"], rv["excluded"], rv["wrong_grade"], rv["agreed_pct"]) == (2, 1, 1, 1, 50)
    html = render_dashboard(STATE, cards, None, None)
    assert 'data-cutout="p1/1" data-sha256="' + "a" * 64 + '"' in html
    assert '<span class="rv-badge rv-exclude" title="kana, t1">excluded</span>' in html
    assert ">wrong grade: should be E</span>" in html and ">approved</span>" in html
    assert '<td data-rv="grade_agreed">50 %</td>' in html and '<span data-rv="reviewed">2</span> / 3' in html
    assert "rv-do" not in html.split("<script>")[0]  # no buttons in the static HTML: the script adds them
    bare = render_dashboard(STATE, build_cards(SCORES, {}), None, None)
    assert '<td data-rv="grade_agreed">–</td>' in bare and 'class="rv-badge rv-approve" title' not in bare


def test_workspace_dashboard_bakes_reviews_that_survive_a_rerun(tmp_path, tiny_model):
    ws, _ = tracked(tmp_path / "root", tiny_model)
    rows = sorted(read_jsonl(ws.extract / "scores.jsonl"), key=lambda r: (r["image"], r["k"]))
    sha = [sha256_file(ws.extract / r["image"] / f"char_{r['k']}.png") for r in rows]
    append_review(ws.reviews, who="kana", cutout=f"{rows[0]['image']}/{rows[0]['k']}", sha256=sha[0],
                  verdict="approve", at="2025-01-01T00:00:00+00:00")
    append_review(ws.reviews, who="kana", cutout=f"{rows[1]['image']}/{rows[1]['k']}", sha256=sha[1],
                  verdict="wrong_grade", reason="too <tight>", at="2025-01-01T00:00:01+00:00")
    lines: list[str] = []
    work = tmp_path / "root" / "aoki" / "org" / "ep1"
    assert run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False), lines.append, env={}) == 0
    html = (ws.dashboard / "index.html").read_text()
    assert "[redacted]" not in html  # the review script goes through redact() intact
    assert f'data-sha256="{sha[0]}"' in html
    assert '<span class="rv-badge rv-approve" title="kana, 2025-01-01T00:00:00+00:00">approved</span>' in html
    assert "wrong grade: too &lt;tight&gt;</span>" in html
    distinct = len(set(sha))  # the tiny pages repeat a figure: identical cut-outs share one review
    assert f'<span data-rv="reviewed">2</span> / {distinct}' in html and '<td data-rv="wrong_grade">1</td>' in html
    assert html.count("wrong grade: too &lt;tight&gt;</span>") == sha.count(sha[1])
    # the same run renders the same bytes (no clock, no randomness)
    params = tracker_params(tiny_model)
    state = json.loads(ws.state.read_text())
    first = write_dashboard(run_paths(ws), tmp_path / "a", state, params.publish.dashboard, params.extract.max_pixels, print)
    again = write_dashboard(run_paths(ws), tmp_path / "b", state, params.publish.dashboard, params.extract.max_pixels, print)
    assert first.read_bytes() == again.read_bytes()
    # a cut-out whose file changed loses its review; a run without reviews.jsonl shows none
    png = ws.extract / rows[0]["image"] / f"char_{rows[0]['k']}.png"
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(png), img)
    changed = write_dashboard(run_paths(ws), tmp_path / "c", state, params.publish.dashboard, 10**7, print).read_text()
    assert ">approved</span>" not in card_html(changed, f"{rows[0]['image']}/{rows[0]['k']}")
    assert ">approved</span>" in card_html(html, f"{rows[0]['image']}/{rows[0]['k']}")
    still = 2 if sha.count(sha[0]) > 1 else 1  # its twins on other pages keep the review
    assert f'<span data-rv="reviewed">{still}</span>' in changed


def test_a_lost_cutout_is_told_and_the_dashboard_still_written(tmp_path, tiny_model):
    ws, _ = tracked(tmp_path / "root", tiny_model)
    rows = sorted(read_jsonl(ws.extract / "scores.jsonl"), key=lambda r: (r["image"], r["k"]))
    params = tracker_params(tiny_model)
    lost = ws.extract / rows[0]["image"] / f"char_{rows[0]['k']}.png"
    lost.unlink()
    (ws.extract / rows[-1]["image"] / "labels.png").write_bytes(b"not a png")
    lines = []
    page = write_dashboard(run_paths(ws), tmp_path / "e", json.loads(ws.state.read_text()), params.publish.dashboard,
                           params.extract.max_pixels, lines.append)
    assert page.is_file() and f'data-cutout="{rows[0]["image"]}/{rows[0]["k"]}"' in page.read_text()
    assert any(str(lost) in line and "no picture" in line for line in lines), lines
    assert any("labels.png" in line and "no overlay" in line for line in lines), lines


def card_html(html: str, cutout: str) -> str:
    """The <article> of one cut-out."""
    return re.search(rf'<article class="card"[^>]* data-cutout="{re.escape(cutout)}".*?</article>', html, re.DOTALL)[0]


def test_a_damaged_reviews_file_is_told_not_fatal(tmp_path, tiny_model):
    ws, _ = tracked(tmp_path / "root", tiny_model)
    ws.reviews.write_text("not json\n{}\n")
    params = tracker_params(tiny_model)
    page = write_dashboard(run_paths(ws), tmp_path / "d", json.loads(ws.state.read_text()), params.publish.dashboard,
                           params.extract.max_pixels, print).read_text()
    assert "reviews.jsonl unreadable" in page and '<span data-rv="reviewed">0</span>' in page


# --- failure patterns (kirinuki.qc.failures) ------------------------------------------------


def test_dashboard_shows_the_failure_patterns_with_map_and_examples(tmp_path, tiny_model):
    from kirinuki.core.config import FailuresParams
    from kirinuki.publish.dashboard import FAILURES
    from kirinuki.qc.failures import write_failures

    ws, _ = tracked(tmp_path / "root", tiny_model)
    params = tracker_params(tiny_model)
    state = json.loads(ws.state.read_text())
    assert 'id="failures"' in (ws.dashboard / "index.html").read_text()  # the tracker run wrote failures.json
    shutil.rmtree(ws.metrics / FAILURES)
    plain = write_dashboard(run_paths(ws), tmp_path / "plain", state, params.publish.dashboard, 10**7, print).read_text()
    assert 'id="failures"' not in plain  # no failures.json: no section
    # every cut-out counts as failing here, so that the 6 tiny ones form patterns
    result = write_failures(ws.extract, ws.extract / "scores.jsonl", ws.metrics / FAILURES,
                            FailuresParams(grades=list("ABCDE"), min_cluster_size=2))
    assert result["patterns"] and result["map"]["file"] == "map.png"
    html = write_dashboard(run_paths(ws), ws.dashboard, state, params.publish.dashboard, 10**7, print).read_text()
    assert "Failure patterns / 失敗パターン" in html
    assert '<img class="fmap" src="failures/map.png"' in html and (ws.dashboard / "failures/map.png").is_file()
    for p in result["patterns"]:
        assert f'id="pattern-{p["id"]}"' in html and p["name"] in html and f"({p['size']} cut-outs)" in html
        for t in p["thumbs"]:
            assert f'src="failures/{t}"' in html and (ws.dashboard / FAILURES / t).is_file()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert all((ws.dashboard / src).is_file() for src in srcs)
    assert f"Outliers 外れ値 ({len(result['outliers'])})" in html
    again = write_dashboard(run_paths(ws), tmp_path / "again", state, params.publish.dashboard, 10**7, print)
    assert again.read_text() == html  # deterministic


def test_failure_section_without_patterns_or_map_stays_valid():
    from kirinuki.publish.dashboard import failure_view
    from kirinuki.quality.score import MESSAGES

    result = {"n": 3, "failing": 2, "grades": ["D", "E"], "min_cluster_size": 3, "patterns": [], "noise": 2,
              "outliers": [], "note": "2 failing cut-out(s), fewer than min_cluster_size 3: no pattern",
              "map": {"file": None, "reason": "3 cut-out(s): a t-SNE map needs at least 5"}}
    html = render_dashboard(STATE, build_cards(SCORES, {}), None, None, failures=failure_view(result))
    assert "Failure patterns / 失敗パターン" in html and "No pattern" in html
    assert "No map: 3 cut-out(s): a t-SNE map needs at least 5." in html and 'class="fmap"' not in html
    pattern = {"id": "P1", "name": "black + touches_character", "name_ja": "黒画面", "size": 3, "members": ["p2/1"],
               "reasons": ["black", "touches_character"], "reason_share": {"black": 1.0, "touches_character": 0.6667},
               "mean_score": 0.1, "grades": {"A": 0, "B": 0, "C": 0, "D": 1, "E": 2}, "examples": ["p2/1"],
               "thumbs": ["examples/P1/p2_1.png"]}
    outlier = {"member": "p1/2", "anomaly": 0.61, "grade": "A", "reasons": [], "pattern": None}
    html = render_dashboard(STATE, build_cards(SCORES, {}), None, None,
                            failures=failure_view({**result, "patterns": [pattern], "outliers": [outlier]}))
    assert f"{MESSAGES['black'][1]} (black, 100 %)" in html  # the reasons with their Japanese messages
    assert f"{MESSAGES['touches_character'][1]} (touches_character, 67 %)" in html
    assert '<img src="failures/examples/P1/p2_1.png" alt="P1 example p2/1"' in html
    assert "Outliers 外れ値 (1)" in html and "p1/2</span> · 0.61" in html


def test_cards_show_the_three_layers():
    from kirinuki.quality.score import grade
    f = {"opaque_share": 0.5, "luma_mean": 0.5, "luma_std": 0.2, "regions": 1, "open_parts": 1, "heads": 1,
         "resolution": 0.3, "neighbour_edge": 0.0, **{f"{k}_{s}": 0.0 for k in ("edge", "cut") for s in ("left", "top", "right", "bottom")},
         "edge_bottom": 0.5}
    row = {"image": "p1", "k": 1, **grade(f, 0.9, ScoreParams(), ("upper_body", 0.97))}
    unsure = {"image": "p1", "k": 2, **grade(f, 0.9, ScoreParams(), ("portrait", 0.41))}
    html = render_dashboard({"tracker_id": "QCC-011", "status": "done"}, build_cards([row, unsure], {}), None, None)
    assert "L1 IoU≈0.90" in html and "framed by the page: bottom" in html and "L3 no: too_small" in html
    assert "upper_body (0.97)" in html and "portrait? (0.41)" in html  # a guess below framing_min_confidence is marked
