"""Panels of a comic page (extract/panels.py) and extraction panel by panel."""
import cv2
import numpy as np

from kirinuki.extract.panels import find_panels, panel_boxes
from kirinuki.extract.run import Models, extract_page
from kirinuki.extract.segment import load_segmenter


def comic(h=400, w=300):
    """White paper, four framed panels with grey art: a row of two, then a row of two."""
    page = np.full((h, w, 3), 255, np.uint8)
    frames = [(10, 10, 145, 190), (155, 10, 290, 190), (10, 200, 190, 390), (200, 200, 290, 390)]
    for x0, y0, x1, y1 in frames:
        cv2.rectangle(page, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), 2)
        cv2.circle(page, ((x0 + x1) // 2, (y0 + y1) // 2), 30, (90, 90, 90), -1)
    return page, frames


def test_panels_are_found_in_manga_reading_order():
    page, frames = comic()
    panels = find_panels(page)
    assert panels.max() == 4 and (panels[0] == 0).all()  # the paper around them is gutter
    # right to left within a row, rows top to bottom
    found = panel_boxes(panels)
    for box, frame in zip(found, [frames[1], frames[0], frames[3], frames[2]]):
        assert np.abs(np.subtract(box, frame)).max() <= 2  # the frame line's width


def test_an_illustration_is_one_panel():
    rng = np.random.default_rng(0)
    bleed = rng.integers(0, 200, (200, 300, 3), dtype=np.uint8)  # art to every edge: no gutter
    assert (find_panels(bleed) == 1).all()
    figures = np.full((200, 300, 3), 255, np.uint8)  # two figures on white paper are not panels
    for cx in (80, 220):
        cv2.circle(figures, (cx, 50), 20, (0, 0, 0), -1)
        for end in ((cx - 40, 190), (cx + 40, 190), (cx - 50, 90), (cx + 50, 90)):
            cv2.line(figures, (cx, 100), end, (0, 0, 0), 8)
        cv2.line(figures, (cx, 50), (cx, 120), (0, 0, 0), 10)
    assert (find_panels(figures) == 1).all()


def test_characters_stay_inside_their_panel(extract_params):
    page, frames = comic()
    params = extract_params.model_copy(update={"panels": True, "min_area": 0.0})
    labels, chars, _ = extract_page(page, Models(load_segmenter(params)), params)
    panels = find_panels(page)
    for c in chars:  # every cut-out lies in one panel, none on the gutter
        inside = panels[labels == c.k]
        assert len(np.unique(inside)) == 1 and inside[0] > 0
    again, _, _ = extract_page(page, Models(load_segmenter(params)), params)
    assert again.tobytes() == labels.tobytes()


def test_a_cut_out_across_a_panel_border_spans_two_panels():
    from kirinuki.extract.panels import panels_spanned
    panels = np.zeros((100, 200), np.int32)
    panels[5:95, 5:95], panels[5:95, 105:195] = 1, 2
    mask = np.zeros((100, 200), bool)
    mask[20:80, 40:60] = True
    assert panels_spanned(panels, mask) == 1
    mask[20:80, 120:160] = True  # the same cut-out reaches into the next panel
    assert panels_spanned(panels, mask) == 2
    tip = np.zeros((100, 200), bool)
    tip[20:80, 40:94], tip[50:52, 105:107] = True, True  # a few pixels over the border: one panel
    assert panels_spanned(panels, tip) == 1
    assert panels_spanned(np.ones((100, 200), np.int32), mask) == 1  # a page without panels
