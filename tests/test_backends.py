"""Detector/segmenter backends (YOLO, SAM), instances from per-box masks.

The YOLO and SAM paths run real ultralytics and segment-anything code on tiny randomly
initialised models built from the libraries' own modules (seconds on 2 cores): they
check the wiring (boxes in, one mask per box out, shapes, dtypes, determinism), not
the quality of the masks. They need the backends installed (`make backends`; `.ci/run`
installs them where the disk has room) and are skipped, saying so, where they are not.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.config import ConfigError, ExtractParams, load_params
from kirinuki.extract.detect import Boxes, head_to_body, import_yolo, load_detector
from kirinuki.extract.run import Models, boxes_to_masks, extract_page, params_hash, run_extract
from kirinuki.core.imageio import read_jsonl
from kirinuki.core.instances import instances_from_masks
from kirinuki.core.cards import sha256_file
from kirinuki.extract.segment import load_segmenter

from conftest import TINY_SIZE, two_figures

BACKENDS = all(importlib.util.find_spec(m) for m in ("torchvision", "ultralytics", "segment_anything"))
def needs_backends(test):
    """A test of the real YOLO/SAM backends: slow, and skipped where they are not installed."""
    return pytest.mark.slow(pytest.mark.skipif(not BACKENDS, reason="the YOLO/SAM backends are not installed: "
                                                                   "make backends")(test))
if BACKENDS:
    import segment_anything
    import torch
    import_yolo()  # imports ultralytics as kirinuki does: with Pillow's own opener put back for later tests

# a 5-layer backbone (strides 8/16/32 at layers 2-4) and ultralytics' Detect head, one class
TINY_YOLO = {"nc": 1, "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]],
                                   [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]],
             "head": [[[2, 3, 4], 1, "Detect", ["nc"]]]}


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory) -> Path:
    """A random one-class YOLO, saved by ultralytics itself (YOLO.save) as a .pt checkpoint."""
    YOLO = import_yolo()
    d = tmp_path_factory.mktemp("yolo")
    (d / "tiny_yolo.yaml").write_text(yaml.safe_dump(TINY_YOLO))
    torch.manual_seed(0)
    model = YOLO(str(d / "tiny_yolo.yaml"))
    head = model.model.model[-1]
    with torch.no_grad():
        for seq in head.cv2:  # box regression: spread the random boxes
            torch.nn.init.normal_(seq[-1].weight, std=1.0)
            torch.nn.init.normal_(seq[-1].bias, std=2.0)
        for seq in head.cv3:  # class logits near 0: scores near 0.5, above the default conf
            torch.nn.init.zeros_(seq[-1].bias)
    model.save(d / "tiny_yolo.pt")
    return d / "tiny_yolo.pt"


def build_tiny_sam():
    """SAM's architecture at toy size: 1024 input and 16 px patches (as SamPredictor expects), 32 channels."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    d = 32
    return Sam(
        image_encoder=ImageEncoderViT(img_size=1024, patch_size=16, embed_dim=d, depth=1, num_heads=2, mlp_ratio=2,
                                      out_chans=d, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                      window_size=16, global_attn_indexes=()),
        prompt_encoder=PromptEncoder(embed_dim=d, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                     mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=d, iou_head_depth=2, iou_head_hidden_dim=16,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=d, mlp_dim=64, num_heads=2)),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory) -> Path:
    """A random tiny SAM's state dict, saved with torch.save like the official checkpoints."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    return path


@pytest.fixture
def sam_registry(monkeypatch):
    """segment-anything's registry builds the tiny architecture for `vit_b` (the checkpoint is loaded by kirinuki)."""
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", build_tiny_sam)


@pytest.fixture
def backend_params(tiny_yolo, tiny_sam, sam_registry) -> ExtractParams:
    return ExtractParams(detector="yolo", segmenter="sam", min_area=0.0, margin=0.05,
                         yolo={"weights": tiny_yolo, "imgsz": 64, "max_det": 3, "boxes": "body"},
                         sam={"model_type": "vit_b", "checkpoint": tiny_sam})


class FixedDetector:
    """A detector that always finds the same boxes."""
    info = {"detector": "fixed", "detector_sha256": "0" * 64}

    def __init__(self, xyxy, scores):
        self.boxes = Boxes(np.asarray(xyxy, np.float32), np.asarray(scores, np.float32))

    def __call__(self, rgb):
        return self.boxes


# --- pure functions -------------------------------------------------------------------------

def test_head_to_body_prior():
    body = head_to_body(np.array([[40, 10, 60, 30], [85, 180, 95, 190]]), (200, 100), heads_tall=7, heads_wide=3)
    assert body.dtype == np.float32 and body.shape == (2, 4)
    np.testing.assert_array_equal(body[0], [20, 10, 80, 150])  # 7 heads down from the head top, 3 across
    np.testing.assert_array_equal(body[1], [75, 180, 100, 200])  # clipped to the page
    assert head_to_body(np.zeros((0, 4)), (10, 10), 7, 3).shape == (0, 4)


def test_instances_from_masks_resolves_overlaps_specks_and_holes():
    masks = np.zeros((4, 40, 60), bool)
    masks[0, 5:35, 5:30] = True  # big, low score
    masks[0, 15:20, 12:18] = False  # a hole in it
    masks[1, 10:30, 25:55] = True  # overlaps mask 0, higher score: wins the overlap
    masks[2, 38:40, 0:2] = True  # a speck
    labels, src = instances_from_masks(masks, np.array([0.2, 0.9, 0.5, 0.1]), min_area=0.01, holes=True)
    assert labels.dtype == np.uint8 and labels.shape == (40, 60)
    assert src == [0, 1]  # mask 3 is empty, mask 2 a speck; then by falling area
    assert labels[20, 27] == 2  # overlap -> higher score
    assert labels[17, 15] == 1  # hole filled
    assert labels[39, 0] == 0
    expected = masks[0] & ~masks[1]
    expected[15:20, 12:18] = True
    assert ((labels == 1) == expected).all()
    again, _ = instances_from_masks(masks, np.array([0.2, 0.9, 0.5, 0.1]), min_area=0.01, holes=True)
    assert again.tobytes() == labels.tobytes()
    tie, src = instances_from_masks(masks[[1, 1]], np.array([0.5, 0.5]), 0.0, True)
    assert src == [0] and tie.max() == 1  # equal scores: the lower index wins


def test_boxes_to_masks_assigns_foreground_to_nearest_box_centre():
    fg = np.zeros((20, 40), bool)
    fg[5:15, 2:38] = True
    masks = boxes_to_masks(fg, np.array([[0, 0, 24, 20], [16, 0, 40, 20]], np.float32))
    assert masks.shape == (2, 20, 40) and masks.dtype == bool
    assert not (masks[0] & masks[1]).any() and ((masks[0] | masks[1]) == fg).all()
    assert masks[0][10, 2:20].all() and masks[1][10, 20:38].all()  # the shared strip split at the middle
    assert not boxes_to_masks(fg, np.array([[0, 0, 1, 1]], np.float32)).any()  # foreground outside every box


def test_boxes_to_masks_gives_body_priors_the_regions_they_reach():
    fg = np.zeros((30, 60), bool)
    fg[5:25, 2:28] = True  # a figure whose arms reach past its guessed body ...
    fg[5:25, 32:58] = True  # ... and another beside it
    fg[0:3, 40:44] = True  # a speck no box reaches
    boxes = np.array([[8, 5, 20, 25], [38, 5, 50, 25]], np.float32)
    left, right = np.zeros_like(fg), np.zeros_like(fg)
    left[5:25, 2:28], right[5:25, 32:58] = True, True
    masks = boxes_to_masks(fg, boxes, priors=True)
    assert (masks[0] == left).all() and (masks[1] == right).all()  # whole regions; the speck stays out
    as_detected = boxes_to_masks(fg, boxes)  # detected bodies: nothing outside them (pixel centres in the box)
    assert (as_detected[0] == left & (np.arange(60) >= 8) & (np.arange(60) < 20)).all()
    fg[10:12, 28:32] = True  # the two touch: pixels outside the boxes go to the nearer character
    masks = boxes_to_masks(fg, boxes, priors=True)
    assert masks[0][10:12, 20:29].all() and masks[1][10:12, 29:38].all()  # box edges 20 and 38
    assert not (masks[0] & masks[1]).any() and (masks.any(0) == fg & ~(np.arange(30) < 3)[:, None]).all()


# --- config and loading -----------------------------------------------------------------------

def test_sam_without_detector_is_a_config_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"extract": {"segmenter": "sam"}}))
    with pytest.raises(ConfigError, match="extract.segmenter sam needs boxes: set extract.detector"):
        load_params(path)


def test_missing_weights_fail_fast_with_one_line(tmp_path):
    missing = tmp_path / "yolov8x6_animeface.pt"
    with pytest.raises(FileNotFoundError) as e:
        load_detector(ExtractParams(detector="yolo", yolo={"weights": missing}))
    assert "extract.yolo.weights" in str(e.value) and str(missing) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="extract.sam.checkpoint: not set"):
        load_segmenter(ExtractParams(detector="yolo", segmenter="sam"))
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"extract": {"detector": "yolo", "yolo": {"weights": "yolov8x6_animeface.pt"}}}))
    Image.fromarray(two_figures()).save(tmp_path / "p.png")
    r = CliRunner().invoke(app, ["extract", str(tmp_path / "p.png"), "-o", str(tmp_path / "out"), "-p", str(params)])
    assert r.exit_code == 2 and r.output.count("\n") == 1  # a configuration error
    assert r.output.startswith(f"error: extract.yolo.weights {tmp_path / 'yolov8x6_animeface.pt'}: not found")


@needs_backends
def test_weights_paths_resolve_beside_params_and_hash_by_content(tmp_path, backend_params, tiny_model):
    (tmp_path / "models").mkdir()
    for src in (backend_params.yolo.weights, backend_params.sam.checkpoint):
        (tmp_path / "models" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"extract": {
        "detector": "yolo", "segmenter": "sam", "yolo": {"weights": "models/tiny_yolo.pt"},
        "sam": {"checkpoint": "models/sam_tiny.pth"}}}))
    p = load_params(tmp_path / "params.yaml").extract
    assert p.yolo.weights == tmp_path / "models/tiny_yolo.pt" and p.sam.checkpoint == tmp_path / "models/sam_tiny.pth"
    models = Models(load_segmenter(p), load_detector(p))
    spelled = p.model_copy(update={"yolo": p.yolo.model_copy(update={"weights": backend_params.yolo.weights})})
    assert params_hash(spelled, models) == params_hash(p, models)  # same bytes, other path
    assert models.detect.info["detector_sha256"] == sha256_file(p.yolo.weights)
    other = Models(load_segmenter(p), FixedDetector([[0, 0, 1, 1]], [1.0]))
    assert params_hash(p, other) != params_hash(p, models)  # other detector weights, other outputs


# --- the YOLO and SAM paths -----------------------------------------------------------------

@needs_backends
def test_yolo_detector_wiring(backend_params):
    detect = load_detector(backend_params)
    rgb = two_figures()
    xyxy, scores, priors = detect(rgb)
    assert not priors  # boxes: body -> boxes as detected
    assert xyxy.dtype == np.float32 and scores.dtype == np.float32
    assert xyxy.shape == (len(scores), 4) and 1 <= len(scores) <= 3
    assert (xyxy >= 0).all() and (xyxy[:, [0, 2]] <= 128).all() and (xyxy[:, [1, 3]] <= 96).all()
    assert (np.diff(scores) <= 0).all()
    again = detect(rgb)
    assert again.xyxy.tobytes() == xyxy.tobytes() and again.scores.tobytes() == scores.tobytes()
    assert detect.info["detector"] == "yolo" and len(detect.info["detector_sha256"]) == 64
    heads = load_detector(backend_params.model_copy(update={
        "yolo": backend_params.yolo.model_copy(update={"boxes": "head"})}))(rgb)
    np.testing.assert_array_equal(heads.xyxy, head_to_body(xyxy, rgb.shape, 7.0, 3.0))
    assert heads.priors


@needs_backends
def test_sam_embeds_once_and_decodes_every_box_in_one_batch(backend_params, monkeypatch):
    segment = load_segmenter(backend_params)
    calls = {"set_image": 0, "predict_torch": []}
    pred = segment.predictor
    set_image, predict_torch = pred.set_image, pred.predict_torch
    monkeypatch.setattr(pred, "set_image", lambda *a, **k: (calls.__setitem__("set_image", calls["set_image"] + 1),
                                                            set_image(*a, **k))[1])
    monkeypatch.setattr(pred, "predict_torch", lambda *a, **k: (calls["predict_torch"].append(k["boxes"].shape),
                                                                predict_torch(*a, **k))[1])
    rgb = two_figures()
    boxes = np.array([[5, 20, 60, 80], [70, 10, 120, 90], [0, 0, 128, 96]], np.float32)
    masks, iou = segment(rgb, boxes)
    assert calls["set_image"] == 1 and calls["predict_torch"] == [(3, 4)]
    assert masks.shape == (3, 96, 128) and masks.dtype == np.float32 and iou.shape == (3,) and iou.dtype == np.float32
    assert 0 <= masks.min() and masks.max() <= 1
    again, iou2 = segment(rgb, boxes)
    assert again.tobytes() == masks.tobytes() and iou2.tobytes() == iou.tobytes()
    empty, none = segment(rgb, boxes[:0])
    assert empty.shape == (0, 96, 128) and none.shape == (0,)
    for sam in ({"multimask": False}, {"points": "center"}):
        other = load_segmenter(backend_params.model_copy(update={"sam": backend_params.sam.model_copy(update=sam)}))
        m, i = other(rgb, boxes)
        assert m.shape == (3, 96, 128) and i.shape == (3,)


@needs_backends
def test_extract_page_yolo_sam_is_deterministic(backend_params):
    rgb = two_figures()
    models = Models(load_segmenter(backend_params), load_detector(backend_params))
    n_boxes = len(models.detect(rgb).scores)
    labels, chars, forward = extract_page(rgb, models, backend_params)
    assert labels.shape == (96, 128) and labels.dtype == np.uint8 and forward > 0
    assert sorted(np.unique(labels)) == list(range(len(chars) + 1)) and len(chars) <= n_boxes
    for c in chars:
        assert isinstance(c.predicted_iou, float) and isinstance(c.detection_score, float)
    fresh = Models(load_segmenter(backend_params), load_detector(backend_params))
    assert extract_page(rgb, fresh, backend_params)[0].tobytes() == labels.tobytes()


def test_detector_boxes_split_isnet_foreground(extract_params):
    rgb = two_figures()
    rgb[85:95, 2:12] = 0  # ink outside every box: no character
    detect = FixedDetector([[70, 10, 120, 90], [5, 20, 60, 80]], [0.9, 0.6])
    params = extract_params.model_copy(update={"detector": "yolo", "min_area": 0.001})
    labels, chars, _ = extract_page(rgb, Models(load_segmenter(params), detect), params)
    assert len(chars) == 2 and labels[50, 96] == 1 and labels[48, 32] == 2 and labels[90, 5] == 0
    assert [c.detection_score for c in chars] == pytest.approx([0.9, 0.6])
    assert all(c.predicted_iou is None for c in chars)


# --- through run_extract and the CLI --------------------------------------------------------

@needs_backends
def test_cli_extract_with_yolo_and_sam(tmp_path, backend_params):
    pages = tmp_path / "pages"
    pages.mkdir()
    Image.fromarray(two_figures()).save(pages / "p1.png")
    (pages / "notes.jpg").write_text("not an image")  # still one error line once ultralytics is loaded
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": {
        "detector": "yolo", "segmenter": "sam", "min_area": 0.0,
        "yolo": {"weights": str(backend_params.yolo.weights), "imgsz": 64, "max_det": 3},
        "sam": {"checkpoint": str(backend_params.sam.checkpoint), "points": "center"}}}))
    outs = []
    for name in ("out", "again"):
        r = CliRunner().invoke(app, ["extract", str(pages), "-o", str(tmp_path / name), "-p", str(params), "--no-progress"])
        assert r.exit_code == 1 and "notes.jpg" in r.output and "1 failed" in r.output, r.output
        outs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.png")})
    assert outs[0] == outs[1] and Path("p1/labels.png") in outs[0]
    page = json.loads((tmp_path / "out" / "p1" / "page.json").read_text())
    assert 0 < page["forward_seconds"] <= page["seconds"]
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    assert records  # the tiny models do find something on this page
    for r in records:
        assert r["segmenter"] == "sam" and r["detector"] == "yolo" and r["sam_model_type"] == "vit_b"
        assert isinstance(r["predicted_iou"], float) and len(r["detector_sha256"]) == 64


def test_slow_page_is_logged(tmp_path, extract_params):
    Image.fromarray(two_figures()).save(tmp_path / "p.png")
    lines = []
    run_extract(tmp_path / "p.png", tmp_path / "out", extract_params.model_copy(update={"page_warn_s": 1e-6}),
                progress=False, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'p.png'}: took ")
    assert lines[0].endswith("s, over extract.page_warn_s (1e-06 s)")


def test_default_path_never_imports_torch(tmp_path, tiny_model):
    Image.fromarray(two_figures()).save(tmp_path / "p.png")
    code = ("import sys; from pathlib import Path; from kirinuki.core.config import ExtractParams; "
            "from kirinuki.extract.run import run_extract; "
            f"run_extract(Path({str(tmp_path / 'p.png')!r}), Path({str(tmp_path / 'out')!r}), "
            f"ExtractParams(model=Path({str(tiny_model)!r}), input_size={TINY_SIZE}), progress=False); "
            "print(sorted(m for m in ('torch', 'ultralytics', 'segment_anything') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
