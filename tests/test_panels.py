"""Panels of a comic page (extract/panels.py) and extraction panel by panel."""
import cv2
import numpy as np

from kirinuki.extract.panels import find_panels, outside_panels, panel_boxes
from kirinuki.extract.run import Models, extract_page
from kirinuki.extract.segment import TILE_GAP, fit, load_segmenter, tiles

from conftest import build_tiny_isnet, write_card


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


def test_a_bubble_across_a_gutter_does_not_join_two_panels():
    page, frames = comic()
    cv2.ellipse(page, (80, 195), (40, 25), 0, 0, 360, (255, 255, 255), -1)  # a speech bubble over the gutter
    cv2.ellipse(page, (80, 195), (40, 25), 0, 0, 360, (0, 0, 0), 2)
    panels = find_panels(page)
    assert panels.max() == 4
    assert panels[100, 80] != panels[300, 80] and panels[100, 80] > 0 and panels[300, 80] > 0
    assert panels[195, 140] == 0  # the gutter beside the bubble stays gutter


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


def test_a_line_drawn_round_the_page_is_a_border_not_art():
    page, _ = comic()
    cv2.rectangle(page, (0, 0), (page.shape[1] - 1, page.shape[0] - 1), (0, 0, 0), 1)  # closes the gutters off
    panels = find_panels(page)
    assert panels.max() == 4
    assert sorted(panel_boxes(panels)) == sorted(panel_boxes(find_panels(comic()[0])))


def test_framed_panels_that_art_joins_are_cut_apart():
    page, _ = comic()
    cv2.ellipse(page, (150, 195), (30, 40), 0, 0, 360, (60, 60, 60), -1)  # a figure over the gutters' crossing
    panels = find_panels(page)
    assert panels.max() == 4
    assert len({panels[100, 80], panels[100, 220], panels[300, 80], panels[300, 240]} - {0}) == 4


def test_hairline_frames_of_a_large_scan_still_frame_its_panels():
    page = np.full((1200, 900, 3), 255, np.uint8)  # worked on at a third of its size: 1 px frames turn grey
    for x0, y0, x1, y1 in [(30, 30, 435, 570), (465, 30, 870, 570), (30, 600, 570, 1170), (600, 600, 870, 1170)]:
        cv2.rectangle(page, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), 1)
        cv2.circle(page, ((x0 + x1) // 2, (y0 + y1) // 2), 90, (90, 90, 90), -1)
    cv2.ellipse(page, (450, 585), (90, 120), 0, 0, 360, (60, 60, 60), -1)  # art across the gutters
    assert find_panels(page, max_side=400).max() == 4


def test_a_screentoned_illustration_with_a_border_is_one_panel():
    page = np.full((300, 300, 3), 255, np.uint8)
    page[::8, ::8] = page[1::8, 1::8] = 120  # light tone: paper runs between the dots
    for x0 in (40, 170):  # two patches of dense tone, square like panels but framed by no line
        patch = page[40:260, x0:x0 + 100]
        patch[::3, ::3] = patch[1::3, 1::3] = 120
    cv2.rectangle(page, (0, 0), (299, 299), (0, 0, 0), 1)  # the border line round a composite
    assert (find_panels(page) == 1).all()


def abutting(h=400, w=300):
    """A manga page: a row of two panels that share one frame line (no paper between them), a
    framed panel below across a paper gutter; grey art in each."""
    page = np.full((h, w, 3), 255, np.uint8)
    cv2.rectangle(page, (10, 10), (289, 189), (0, 0, 0), 2)
    cv2.line(page, (150, 10), (150, 189), (0, 0, 0), 2)
    cv2.rectangle(page, (10, 200), (289, 389), (0, 0, 0), 2)
    for cx, cy in ((80, 100), (220, 100), (150, 295)):
        cv2.circle(page, (cx, cy), 30, (90, 90, 90), -1)
    return page


def test_panels_that_share_one_frame_line_are_apart_with_frame_lines():
    page = abutting()
    assert find_panels(page).max() == 2  # the paper alone sees the top row as one panel
    panels = find_panels(page, frame_lines=True)
    assert panels.max() == 3
    assert len({panels[100, 80], panels[100, 220], panels[295, 150]} - {0}) == 3


def test_black_gutters_part_panels_with_frame_lines():
    page = np.full((400, 300, 3), 255, np.uint8)
    page[10:390, 10:290] = 150  # toned art inside a frame line, parted by black gutters: no paper
    cv2.rectangle(page, (10, 10), (289, 389), (0, 0, 0), 2)
    page[198:203, 10:290] = 0  # one across the page, one down its top half
    page[10:198, 148:153] = 0
    assert find_panels(page).max() == 1
    panels = find_panels(page, frame_lines=True)
    assert panels.max() == 3 and panels[100, 70] != panels[100, 230] and panels[300, 150] > 0


def test_screentone_in_a_panel_is_no_frame_line():
    page = np.full((800, 600, 3), 255, np.uint8)
    page[22:778, 22:578] = 200  # one framed panel of light art on a page with a margin
    cv2.rectangle(page, (20, 20), (579, 779), (0, 0, 0), 2)
    page[360:440:3, 22:578] = 60  # a band of line tone across it: dark rows three pixels apart
    assert (find_panels(page, frame_lines=True) == 1).all()


def test_a_window_in_a_full_bleed_illustration_is_no_panel_layout():
    page = np.full((400, 300, 3), 180, np.uint8)  # art to every edge: no margin of paper
    for x in (50, 150, 250):
        cv2.line(page, (x, 0), (x, 399), (0, 0, 0), 2)  # window bars framing pieces on every side
    for y in (50, 200, 350):
        cv2.line(page, (0, y), (299, y), (0, 0, 0), 2)
    assert (find_panels(page, frame_lines=True) == 1).all()


def test_frame_lines_count_on_monochrome_pages_only(extract_params, monkeypatch):
    import kirinuki.extract.run as run
    seen = []
    monkeypatch.setattr(run, "find_panels", lambda rgb, frame_lines=False: seen.append(frame_lines) or find_panels(rgb))
    page = abutting()
    colour = page.copy()
    colour[np.all(page == 90, axis=2)] = (200, 60, 40)
    for p in (page, colour):
        extract_page(p, Models(load_segmenter(extract_params)), extract_params)
    assert seen == [True, False]


def test_characters_stay_inside_their_panel(extract_params):
    page, frames = comic()
    params = extract_params.model_copy(update={"panels": True, "min_area": 0.0})
    labels, chars, _ = extract_page(page, Models(load_segmenter(params)), params)
    panels = find_panels(page)
    for c in chars:  # every cut-out lies in one panel, none on the gutter
        inside = panels[labels == c.k]
        assert len(np.unique(inside)) == 1 and inside[0] > 0
        assert c.frame == panel_boxes(panels)[inside[0] - 1]  # and is framed by it
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


def test_a_cut_out_is_framed_by_its_panel_or_the_page():
    from kirinuki.extract.panels import panel_boxes, placement
    panels = np.zeros((100, 200), np.int32)
    panels[5:95, 5:95], panels[5:95, 105:195] = 1, 2
    boxes = panel_boxes(panels)
    mask = np.zeros((100, 200), bool)
    mask[20:95, 120:160] = True
    assert placement(panels, mask, boxes, (100, 200)) == (1, (105, 5, 195, 95))
    mask[:, :] = False
    mask[0:4, 20:180] = True  # a title above the panels
    assert placement(panels, mask, boxes, (100, 200)) == (1, (0, 0, 200, 100))


def test_a_figure_outside_the_panels_is_still_cut_out(extract_params):
    page, _ = comic(h=560)
    cv2.circle(page, (150, 420), 18, (40, 40, 40), -1)  # a stick figure on the paper below the panels
    for end in ((110, 550), (190, 550), (105, 450), (195, 450)):
        cv2.line(page, (150, 480), end, (40, 40, 40), 10)
    cv2.line(page, (150, 420), (150, 500), (40, 40, 40), 12)
    panels = find_panels(page)
    assert panels.max() == 4 and panels[480, 150] == 0
    box, crop = outside_panels(page, panels)
    assert box[0] <= 110 and box[2] >= 190 and box[1] <= 405 and box[3] >= 550
    x0, y0 = box[:2]
    assert (crop[panels[y0:box[3], x0:box[2]] > 0] == 255).all()  # the panels are painted out
    labels, chars, _ = extract_page(page, Models(load_segmenter(extract_params)), extract_params)
    assert labels[480, 150] > 0 and panels[labels == labels[480, 150]].max() == 0
    assert outside_panels(*comic()[:1], find_panels(comic()[0])) is None  # frames alone are not art


def test_tiles_share_the_input_without_touching():
    for n, aspect in ((2, 2.0), (2, 0.5), (3, 1.0), (4, 1.0)):
        cells = tiles(n, 64, aspect)
        grid = np.zeros((64, 64), int)
        for x0, y0, x1, y1 in cells:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            grid[y0 - TILE_GAP // 2:y1 + TILE_GAP // 2, x0 - TILE_GAP // 2:x1 + TILE_GAP // 2] += 1
        assert len(cells) == n and grid.max() == 1  # apart by the gap, no overlap
    assert tiles(2, 64, 2.0)[0][3] - tiles(2, 64, 2.0)[0][1] > 50  # tall crops: side by side, full height
    assert fit((100, 50), (0, 0, 40, 40), False) == (0, 0, 40, 40)
    x0, y0, x1, y1 = fit((100, 50), (0, 0, 40, 40), True)  # letterboxed: in proportion, centred
    assert (y1 - y0, x1 - x0) == (40, 20) and x0 == 10


def test_crops_in_one_pass_come_back_at_their_size(extract_params, tmp_path):
    model = build_tiny_isnet(tmp_path / "tiny256.onnx", size=256)
    write_card(model)
    seg = load_segmenter(extract_params.model_copy(update={"model": model, "input_size": 256}))
    page, frames = comic()
    crops = [page[y0:y1, x0:x1] for x0, y0, x1, y1 in frames]
    one, four = seg.many(crops, 1), seg.many(crops, 4)
    for crop, a, b in zip(crops, one, four):
        assert a.shape == b.shape == crop.shape[:2]
        assert ((a >= 0.5) == (b >= 0.5)).mean() > 0.95  # the tiny model sees ink alike at either scale
    assert all(np.array_equal(x, y) for x, y in zip(four, seg.many(crops, 4)))


def test_a_manga_page_recovers_weaker_centres(extract_params, monkeypatch):
    """On a monochrome comic page the splitter's recovery takes centres from manga_recover_peak;
    on a colour one, from recover_peak."""
    import kirinuki.extract.run as run
    from test_split import FixedSplitter
    peaks = []

    def spy(labels, heat, offsets, fg, peak, *rest):
        peaks.append(peak)
        return labels
    monkeypatch.setattr(run, "recover_missed", spy)
    params = extract_params.model_copy(update={"recover_peak": 0.4, "manga_recover_peak": 0.2, "min_area": 0.0})
    page, _ = comic()
    models = Models(load_segmenter(params), split=FixedSplitter([(0, 0)], (1, 1)))  # a centre on no view
    extract_page(page, models, params)
    assert peaks and set(peaks) == {0.2}
    peaks.clear()
    colour = page.copy()
    colour[np.all(page == 90, axis=2)] = (200, 60, 40)  # the same figures in red
    extract_page(colour, models, params)
    assert peaks and set(peaks) == {0.4}
