"""Anime faces as evidence of several characters in one region (extract/faces.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from kirinuki.core.cards import sha256_file
from kirinuki.core.config import ExtractParams
from kirinuki.extract.faces import FaceDetector, body_faces, cut_at_faces, load_faces

ROOT = Path(__file__).resolve().parents[1]
CASCADE = ROOT / "src" / "kirinuki" / "assets" / "bundled" / "lbpcascade_animeface.xml"
ONE_PANEL = np.ones((200, 300), np.int32)


def two_sitting_side_by_side():
    """One region: two bodies (x 20-120 and 160-260) joined by a bench at y 150-170."""
    labels = np.zeros((200, 300), np.uint8)
    labels[20:190, 20:120] = 1
    labels[20:190, 160:260] = 1
    labels[150:170, 120:160] = 1
    faces = np.array([[45, 25, 50, 50], [185, 30, 50, 50]], np.float32)  # x, y, w, h
    return labels, faces


def test_a_region_holding_two_faces_is_cut_between_them():
    labels, faces = two_sitting_side_by_side()
    out = cut_at_faces(labels, faces, 3.0, ONE_PANEL)
    assert out.max() == 2
    left, right = out[100, 70], out[100, 210]
    assert left and right and left != right
    assert (out[20:190, 20:120] == left).all() and (out[20:190, 160:260] == right).all()
    assert ((out > 0) == (labels > 0)).all()  # every pixel stays a character's


def test_one_face_or_none_leaves_the_region_whole():
    labels, faces = two_sitting_side_by_side()
    assert (cut_at_faces(labels, faces[:1], 3.0, ONE_PANEL) == labels).all()
    assert (cut_at_faces(labels, faces[:0], 3.0, ONE_PANEL) == labels).all()
    assert (cut_at_faces(np.zeros_like(labels), faces, 3.0, ONE_PANEL) == 0).all()


def test_a_face_under_a_face_is_the_same_body():
    head, chest, neighbour = [100, 20, 60, 60], [95, 90, 62, 62], [200, 30, 58, 58]
    kept = body_faces(np.array([chest, head, neighbour], np.float32))
    assert kept.tolist() == [head, neighbour]
    labels, _ = two_sitting_side_by_side()
    one_body = np.array([[45, 25, 50, 50], [50, 90, 50, 50]], np.float32)  # a print on the shirt
    assert (cut_at_faces(labels, one_body, 3.0, ONE_PANEL) == labels).all()


def test_a_small_face_before_a_large_one_is_not_cut():
    labels, faces = two_sitting_side_by_side()
    faces[1, 2:] = 90  # one stands in front of the other: no line parts them
    assert (cut_at_faces(labels, faces, 3.0, ONE_PANEL) == labels).all()


def test_a_region_across_panels_is_left_whole():
    labels, faces = two_sitting_side_by_side()
    panels = ONE_PANEL.copy()
    panels[:, 140:] = 2  # the bench crosses a gutter
    assert (cut_at_faces(labels, faces, 3.0, panels) == labels).all()


def test_the_shipped_cascade_is_the_pinned_one():
    card = json.loads(CASCADE.with_suffix(".json").read_text(encoding="utf-8"))
    assert sha256_file(CASCADE) == card["sha256"]
    assert "MIT" in card["licence"] and "The MIT License" in CASCADE.read_text(encoding="utf-8")[:2000]
    assert ExtractParams().faces == Path("models/lbpcascade_animeface.xml")


def test_the_detector_finds_no_face_on_blank_paper_and_scales_back():
    d = FaceDetector(CASCADE, 3)
    assert d(np.full((2400, 1800, 3), 255, np.uint8)).shape == (0, 4)
    assert d.info["faces_sha256"] == sha256_file(CASCADE)


def test_a_file_that_is_no_cascade_is_refused(tmp_path):
    bad = tmp_path / "faces.xml"
    bad.write_text("<opencv_storage></opencv_storage>", encoding="utf-8")
    with pytest.raises(ValueError, match="not an OpenCV cascade"):
        FaceDetector(bad, 3)
    with pytest.raises(FileNotFoundError, match="extract.faces .*not found"):
        load_faces(ExtractParams(faces=tmp_path / "missing.xml"))
    assert load_faces(ExtractParams(faces=None)) is None
