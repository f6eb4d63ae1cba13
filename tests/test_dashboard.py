"""The static dashboard: cards from score records, relative image files, overlays, index."""
import re

import cv2
import numpy as np

from kirinuki.publish.dashboard import build_cards, overlay, render_dashboard, reason_labels

from works import tracked

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
    assert len(srcs) == 12  # 6 cut-outs, each with its page overlay
    for src in srcs:
        assert not src.startswith(("/", "http")) and (ws.dashboard / src).is_file()
    thumb = cv2.imread(str(ws.dashboard / srcs[0]), cv2.IMREAD_UNCHANGED)
    assert thumb.ndim == 3 and thumb.shape[2] == 4  # the cut-out keeps its transparency
    assert "instance mIoU" in html and "no baseline" in html
    index = (ws.dir.parent / "index.html").read_text()
    assert 'href="QCC-011/dashboard/index.html"' in index
