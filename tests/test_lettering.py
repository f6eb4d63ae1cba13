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
