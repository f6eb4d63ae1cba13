"""Lettering (extract/lettering.py): a speech bubble is no character, a drawn figure is."""
import cv2
import numpy as np

from kirinuki.extract.lettering import drop_lettering, stroke_span


def bubble_and_figure():
    """White page: a speech bubble with two columns of glyphs (left), a line-art figure (right)."""
    page = np.full((300, 400, 3), 255, np.uint8)
    cv2.ellipse(page, (100, 150), (70, 100), 0, 0, 360, (0, 0, 0), 3)
    for x in (85, 115):
        for y in range(90, 220, 22):  # glyphs: small separate strokes
            cv2.line(page, (x - 6, y), (x + 6, y), (0, 0, 0), 2)
            cv2.line(page, (x, y - 6), (x, y + 6), (0, 0, 0), 2)
    cv2.circle(page, (300, 70), 25, (0, 0, 0), 2)  # head, then one long stroke of body and limbs
    cv2.polylines(page, [np.array([[300, 95], [300, 200], [260, 280], [300, 200], [340, 280]])], False, (0, 0, 0), 3)
    cv2.polylines(page, [np.array([[250, 130], [300, 120], [350, 130]])], False, (0, 0, 0), 3)
    labels = np.zeros((300, 400), np.uint8)
    labels[cv2.ellipse(np.zeros((300, 400), np.uint8), (100, 150), (72, 102), 0, 0, 360, 1, -1) > 0] = 1
    labels[40:290, 240:360] = 2
    return page, labels


def test_a_speech_bubble_is_dropped_and_a_figure_kept():
    page, labels = bubble_and_figure()
    grey = cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)
    bubble = stroke_span(labels[48:253, 28:173] == 1, grey[48:253, 28:173])
    figure = stroke_span(labels[40:290, 240:360] == 2, grey[40:290, 240:360])
    assert bubble < 0.17 < figure
    kept = drop_lettering(labels, page, 0.17)
    assert set(np.unique(kept)) == {0, 1} and (kept[labels == 2] == 1).all()  # the figure, renumbered 1
    assert drop_lettering(labels, page, 0.0) is labels  # off


def balloon_page(eyes: bool = False):
    """800x600 white page: a speech balloon with 12 glyphs (or, with `eyes`, a face-like oval: the
    same small marks and two large eyes) at left, a line-art figure at right touching it."""
    page = np.full((600, 800, 3), 255, np.uint8)
    cv2.ellipse(page, (200, 300), (80, 120), 0, 0, 360, (0, 0, 0), 3)
    for x in (175, 225):
        for y in range(215, 390, 34):
            cv2.line(page, (x - 8, y), (x + 8, y), (0, 0, 0), 3)
            cv2.line(page, (x, y - 8), (x, y + 8), (0, 0, 0), 3)
    if eyes:
        for x in (160, 240):
            cv2.circle(page, (x, 260), 22, (0, 0, 0), -1)
    cv2.circle(page, (450, 150), 40, (0, 0, 0), 3)  # the figure: a head, a body, arms
    cv2.polylines(page, [np.array([[450, 190], [450, 400], [400, 560], [450, 400], [500, 560]])], False, (0, 0, 0), 4)
    cv2.polylines(page, [np.array([[290, 260], [450, 240], [560, 280]])], False, (0, 0, 0), 4)
    labels = np.zeros((600, 800), np.uint8)
    labels[cv2.ellipse(np.zeros((600, 800), np.uint8), (200, 300), (81, 121), 0, 0, 360, 1, -1) > 0] = 1
    labels[100:580, 280:580] = 1  # ISNet's one region: the figure and the balloon it speaks
    return page, labels


def test_a_speech_balloon_is_cut_off_the_figure_that_speaks():
    from kirinuki.extract.lettering import balloons, cut_balloons
    page, labels = balloon_page()
    found = balloons(cv2.cvtColor(page, cv2.COLOR_RGB2GRAY))
    assert found[300, 200] and found[230, 175] and not found[300, 450]
    out = cut_balloons(labels, page)
    ys, xs = np.nonzero(out == 1)
    assert out.max() == 1 and xs.min() > 270 and ys.min() == 100  # the figure's own box, give or take the outline
    legs = labels.copy()
    legs[415:560, 150:250] = 1  # a body the balloon hides the upper part of: below it, the body goes on
    out = cut_balloons(legs, page)
    assert out[500, 200] == 1 and out[300, 118] == 0  # kept; the balloon's outline is not
    only = np.where(labels == 1, 1, 0).astype(np.uint8)
    only[:, 280:] = 0  # a region that is the balloon alone goes
    assert cut_balloons(only, page).max() == 0
    inside = (labels > 0).astype(np.uint8) * 2
    inside[270:330, 170:230] = 1  # a region inside the balloon, before the figure's
    out = cut_balloons(inside, page)
    assert out.max() == 1 and out[300, 450] == 1


def test_a_face_is_no_balloon():
    from kirinuki.extract.lettering import balloons
    page, labels = balloon_page(eyes=True)
    assert not balloons(cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)).any()
