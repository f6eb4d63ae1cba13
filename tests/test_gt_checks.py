"""Ground truth is checked before it is used: label maps, 0/255 unions and RGB images of a few
exact colours are accepted (the colours decoded as instances); gradients, JPEG artefacts,
anti-aliased edges and too many values are refused with one line naming the file and why; GT
without an image and images without GT are listed and counted in the metrics as missing."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from kirinuki.core.config import ValidateParams
from kirinuki.core.imageio import BadInput, index_gt, write_png
from kirinuki.qc.validate import gt_instances, read_gt, run_validate

from conftest import two_figures


def figures_labels() -> np.ndarray:
    """96x128 label map of two_figures(): the block 1, the disc 2, a third small figure 3."""
    labels = np.zeros((96, 128), np.uint8)
    cv2.circle(labels, (32, 48), 20, 2, -1)
    cv2.rectangle(labels, (80, 20), (112, 80), 1, -1)
    labels[80:92, 4:20] = 3
    return labels


COLOURS = {1: (255, 0, 0), 2: (0, 200, 0), 3: (30, 60, 250)}


def coloured(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    for k, c in COLOURS.items():
        rgb[labels == k] = c
    return rgb


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two label maps split the page the same way, whatever the ids?"""
    pairs = {(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel())}
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def test_accepted_forms():
    labels = figures_labels()
    assert (gt_instances(labels) == labels).all()  # a label map as it is
    assert (gt_instances(labels.astype(np.uint16) * 300) == labels.astype(np.uint16) * 300).all()
    union = (labels > 0).astype(np.uint8) * 255
    assert gt_instances(union).tolist() == (labels > 0).astype(np.uint8).tolist()  # 0/255: one union instance
    assert gt_instances(np.repeat(union[..., None], 3, axis=2)).tolist() == (labels > 0).astype(np.uint8).tolist()
    decoded = gt_instances(coloured(labels))  # one exact colour per instance
    assert decoded.max() == 3 and same_partition(decoded, labels)
    rgba = np.dstack([coloured(labels), np.full(labels.shape, 255, np.uint8)])
    rgba[labels == 0] = (255, 255, 255, 0)  # transparent background, whatever its colour
    assert same_partition(gt_instances(rgba), labels)
    assert gt_instances(np.zeros((5, 5), np.uint8)).max() == 0  # an empty page


@pytest.mark.parametrize("name, make, why", [
    ("gradient 0..255", lambda: np.tile(np.arange(256, dtype=np.uint8), (96, 1)), "255 distinct non-zero values"),
    ("gradient in steps", lambda: np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1)), "gradient"),
    ("jpeg mask", lambda: _jpeg((figures_labels() > 0).astype(np.uint8) * 255), "JPEG"),
    ("jpeg labels", lambda: _jpeg(figures_labels() * 60), "noise"),
    ("anti-aliased colours", lambda: cv2.resize(cv2.resize(coloured(figures_labels()), (64, 48)), (128, 96)),
     "colours"),
    ("float", lambda: figures_labels().astype(np.float32), "float32"),
])
def test_refused_forms(name, make, why):
    with pytest.raises(BadInput) as e:
        gt_instances(make(), f"{name}_gt.png")
    message = str(e.value)
    assert message.startswith(f"{name}_gt.png: refused as ground truth: ") and why in message, message
    assert "\n" not in message


def _jpeg(arr: np.ndarray) -> np.ndarray:
    """`arr` through a JPEG round trip, as a mask saved as JPEG and converted back to PNG."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return np.asarray(Image.open(buf).convert("L"))


def test_read_gt_files(tmp_path):
    labels = figures_labels()
    write_png(tmp_path / "a_gt.png", coloured(labels))
    assert same_partition(read_gt(tmp_path / "a_gt.png"), labels)
    Image.fromarray(coloured(labels)).save(tmp_path / "b_gt.bmp")  # any lossless format
    assert same_partition(read_gt(tmp_path / "b_gt.bmp"), labels)
    Image.fromarray(coloured(labels)).quantize(4).save(tmp_path / "c_gt.png")  # a palette PNG
    assert same_partition(read_gt(tmp_path / "c_gt.png"), labels)
    Image.fromarray((labels > 0).astype(np.uint8) * 255).save(tmp_path / "d_gt.jpg")
    with pytest.raises(BadInput, match="d_gt.jpg: refused as ground truth: JPEG is lossy"):
        read_gt(tmp_path / "d_gt.jpg")
    (tmp_path / "e_gt.png").write_bytes(b"not a png")
    with pytest.raises(BadInput, match="e_gt.png: not a readable"):
        read_gt(tmp_path / "e_gt.png")
    assert set(index_gt(tmp_path)) == {"a", "b", "c", "d", "e"}  # every format found, so none is ignored


def _page(extract, stem, labels):
    write_png(extract / stem / "labels.png", labels)


def test_run_validate_decodes_colours_refuses_bad_gt_and_counts_the_missing(tmp_path, capsys):
    extract, gts = tmp_path / "out", tmp_path / "gt"
    labels = figures_labels()
    _page(extract, "colour", labels)
    write_png(gts / "colour_gt.png", coloured(labels))  # was one merged instance: IoU 0.21 instead of 1
    _page(extract, "ramp", labels)
    write_png(gts / "ramp_gt.png", np.tile(np.arange(256, dtype=np.uint8), (96, 1))[:, :128])
    _page(extract, "jpeg", labels)
    write_png(gts / "jpeg_gt.png", _jpeg((labels > 0).astype(np.uint8) * 255))
    _page(extract, "no_gt", labels)
    write_png(gts / "orphan_gt.png", labels)  # ground truth of a page that was never extracted
    paths = tmp_path / "m.json", tmp_path / "i.csv", tmp_path / "c.csv"

    m = run_validate(extract, gts, None, ValidateParams(), *paths)

    err = capsys.readouterr().err.splitlines()
    assert m["n_images"] == 1 and m["instance_miou"] == 1.0 and m["n_gt_instances"] == 3
    assert (m["missing_gt"], m["gt_without_image"], m["gt_refused"]) == (1, 1, 2)
    assert json.loads(paths[0].read_text())["gt_without_image"] == 1
    assert len(err) == 4, err  # one line each, naming the file
    assert any("ramp_gt.png: refused as ground truth" in line for line in err)
    assert any("jpeg_gt.png: refused as ground truth" in line for line in err)
    assert any("no_gt" in line and "warning" in line for line in err)
    assert any("orphan_gt.png: ground truth without an extracted image" in line for line in err)

    for i in range(7):  # a partial run: five named, the rest in one line
        write_png(gts / f"later{i}_gt.png", labels)
    run_validate(extract, gts, None, ValidateParams(), *paths)
    orphans = [line for line in capsys.readouterr().err.splitlines() if "without an extracted image" in line]
    assert len(orphans) == 6 and orphans[-1].startswith("warning: 3 more ground-truth files"), orphans


def test_the_tiny_model_pages_validate_against_colour_gt(tmp_path, extract_params):
    """End to end: a colour GT of two figures gives two GT instances, both matched."""
    from kirinuki.extract.run import run_extract
    rgb = two_figures()
    Image.fromarray(rgb).save(tmp_path / "p.png")
    run_extract(tmp_path / "p.png", tmp_path / "out", extract_params, progress=False)
    gt = np.zeros((96, 128, 3), np.uint8)
    cv2.circle(gt, (32, 48), 20, (0, 255, 0), -1)
    cv2.rectangle(gt, (80, 20), (112, 80), (255, 0, 255), -1)
    write_png(tmp_path / "gt" / "p_gt.png", gt)
    m = run_validate(tmp_path / "out", tmp_path / "gt", None, ValidateParams(), tmp_path / "m.json",
                     tmp_path / "i.csv", tmp_path / "c.csv")
    assert m["n_gt_instances"] == 2 and m["recall"] == 1.0 and m["instance_miou"] > 0.8
