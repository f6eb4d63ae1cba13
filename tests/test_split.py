"""The learned splitter: cutting merged components at predicted centres, its wiring into
extract, and the training command on tiny synthetic sprites."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from conftest import build_tiny_isnet

from kirinuki.cli import app
from kirinuki.extract.run import Models, extract_page, params_hash
from kirinuki.core.cards import sha256_file
from kirinuki.extract.segment import load_segmenter
from kirinuki.extract.split import (Splitter, centre_peaks, drop_centreless, grid_features, grid_input, load_splitter,
                            recover_missed, split_closer, split_instances)
from kirinuki.train.splitter import chibi, composite, sketch, targets, training_set

ROOT = Path(__file__).resolve().parents[1]
G = 32  # grid of the hand-made heatmaps


def dumbbell(h: int = 64, w: int = 128) -> np.ndarray:
    """HxW uint8 labels: one component, two discs joined by a bar (two touching characters)."""
    lab = np.zeros((h, w), np.uint8)
    cv2.circle(lab, (32, 32), 24, 1, -1)
    cv2.circle(lab, (96, 32), 20, 1, -1)
    cv2.rectangle(lab, (32, 28), (96, 36), 1, -1)
    return lab


def centre_field(centres, shape=(64, 128)):
    """A perfect prediction for `centres` (page px): Gaussian peaks and offsets to the nearest."""
    scale = G / max(shape)
    yy, xx = np.mgrid[0:G, 0:G].astype(np.float32)
    c = np.asarray(centres, np.float32) * scale
    d = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
    heat = np.exp(-d / 8).max(axis=0)
    nearest = d.argmin(axis=0)
    return heat.astype(np.float32), np.stack([c[nearest, 0] - yy, c[nearest, 1] - xx]).astype(np.float32)


def test_grid_input_is_top_left_aligned():
    out = grid_input(np.full((50, 100, 3), 200, np.uint8), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:32] == 200).all() and (out[32:] == 0).all()
    labels = grid_input(np.full((50, 100), 3, np.uint8), 64, cv2.INTER_NEAREST)  # training targets' frame
    assert labels.shape == (64, 64) and (labels[:32] == 3).all() and (labels[32:] == 0).all()


def test_centre_peaks():
    heat, _ = centre_field([(32, 32), (32, 96)])
    peaks = centre_peaks(heat, 0.5)
    assert peaks.tolist() == [[8, 8], [8, 24]]
    assert len(centre_peaks(heat * 0.4, 0.5)) == 0


def test_split_instances_cuts_a_merged_component_between_centres():
    lab = dumbbell()
    heat, off = centre_field([(32, 32), (32, 96)])
    out = split_instances(lab, heat, off, peak=0.5, share=0.2, separation=0.35)
    assert out.max() == 2 and ((out > 0) == (lab > 0)).all()  # no pixel gained or lost
    assert (out == 1).sum() > (out == 2).sum()  # labels by falling area: the bigger disc is 1
    assert out[32, 20] == 1 and out[32, 105] == 2
    # centres 64 px apart, region sqrt(area) ~60 px: closer than 1.5x that, they are one figure's
    assert (split_instances(lab, heat, off, peak=0.5, share=0.2, separation=1.5) == lab).all()


def test_split_instances_leaves_single_characters_alone():
    lab = dumbbell()
    heat, off = centre_field([(32, 32)])  # one centre
    assert (split_instances(lab, heat, off, 0.5, 0.2, 0.35) == lab).all()
    heat, _ = centre_field([(32, 32), (32, 96)])  # a second peak that no pixel votes for
    assert (split_instances(lab, heat, off, 0.5, 0.2, 0.35) == lab).all()
    two = dumbbell()
    two[:, 60:68] = 0  # already apart, each character holding one centre
    two[:, 68:] *= 2
    heat, off = centre_field([(32, 32), (32, 96)])
    assert (split_instances(two, heat, off, 0.5, 0.2, 0.35) == two).all()


def two_heads_page():
    """A 256 px page with the dumbbell's discs drawn red and blue, and its label map."""
    lab = np.zeros((256, 256), np.uint8)
    lab[96:160, 64:192] = dumbbell()
    rgb = np.full((256, 256, 3), 255, np.uint8)
    rgb[lab > 0] = (0, 0, 0)
    rgb[(lab > 0) & (np.arange(256) < 88)] = (255, 0, 0)
    rgb[(lab > 0) & (np.arange(256) > 168)] = (0, 0, 255)
    return rgb, lab


def colour_heads(rgb):
    """A look that sees a head at the middle of each red or blue part of its view."""
    heads = [np.argwhere((rgb == c).all(-1)).mean(0) for c in ((255, 0, 0), (0, 0, 255)) if (rgb == c).all(-1).any()]
    return (*centre_field(heads, rgb.shape[:2]), None)


def test_split_closer_cuts_where_two_looks_agree():
    rgb, lab = two_heads_page()
    calls = []

    def look(view):
        calls.append(view.shape[:2])
        return colour_heads(view)

    out = split_closer(lab, rgb, look, zoom=1.5, peak=0.5, share=0.15, separation=0.3)
    assert out.max() == 2 and ((out > 0) == (lab > 0)).all()  # cut, no pixel gained or lost
    assert out[128, 96] != out[128, 160]
    assert calls == [(163, 163), (152, 152)]  # 1.5 and 1.4 x the region's 109 px: square views around it
    first = []

    def fickle(view):  # two heads on the first look only
        first.append(view)
        return colour_heads(view) if len(first) == 1 else (np.zeros((G, G), np.float32), np.zeros((2, G, G)), None)

    assert (split_closer(lab, rgb, fickle, 1.5, 0.5, 0.15, 0.3) == lab).all() and len(first) == 3
    assert (split_closer(lab, rgb, look, 0, 0.5, 0.15, 0.3) == lab).all()  # 0 = off
    calls.clear()
    assert (split_closer(lab, rgb, look, 2.4, 0.5, 0.15, 0.3) == lab).all() and not calls  # its view: the page


def test_drop_centreless_drops_regions_without_a_centre():
    lab = np.zeros((64, 128), np.uint8)
    lab[8:56, 4:60] = 1  # the larger region: scenery, no centre on it
    lab[10:50, 80:120] = 2  # a character with its centre at (30, 100)
    lab[0:4, 124:128] = 3  # a speck in the far corner, no centre
    heat, _ = centre_field([(30, 100)])
    out = drop_centreless(lab, heat, 0.04)
    assert out.max() == 1 and (out[10:50, 80:120] == 1).all() and (out[lab != 2] == 0).all()
    assert (drop_centreless(lab, heat, 0.0) == lab).all()  # 0 = off
    assert (drop_centreless(np.zeros_like(lab), heat, 0.04) == 0).all()


def test_recover_missed_adds_the_characters_the_segmenter_missed():
    lab = np.zeros((64, 128), np.uint8)
    lab[8:56, 8:40] = 1  # found by the segmenter, centre (32, 24)
    heat, off = centre_field([(32, 24), (32, 96)])  # a second centre on no region
    fg = np.zeros((G, G), np.float32)
    fg[3:13, 20:29] = 1  # the splitter's foreground around it: page px 12..52 x 80..116
    out = recover_missed(lab, heat, off, fg, peak=0.5, vote_peak=0.4, min_area=0.01)
    assert out.max() == 2 and (out[lab == 1] == 1).all()
    box = out[12:52, 80:116] == 2  # scaled up smoothly: only the 4 corner pixels are rounded off
    assert box.sum() == (out == 2).sum() == 40 * 36 - 4
    assert (recover_missed(lab, heat, off, fg, 0.0, 0.4, 0.01) == lab).all()  # 0 = off
    assert (recover_missed(lab, heat * 0.45, off, fg, 0.5, 0.4, 0.01) == lab).all()  # peak too weak
    assert (recover_missed(lab, heat, off, fg, 0.5, 0.4, 0.2) == lab).all()  # smaller than min_area
    wide = lab.copy()
    wide[8:56, 40:80] = 1  # the found figure reaches its foreground: that figure's missed part, left out
    assert (recover_missed(wide, heat, off, fg, 0.5, 0.4, 0.01) == wide).all()
    big = np.zeros_like(lab)
    big[10:50, 60:124] = 1  # labels stay by falling area: the recovered character is now 1
    fg[:] = 0
    fg[1:15, 1:14] = 1
    heat, off = centre_field([(32, 24), (32, 96)])
    out = recover_missed(big, heat, off, fg, 0.5, 0.4, 0.01)
    assert out.max() == 2 and (out[big == 1] == 2).all() and out[32, 24] == 1


class FixedSplitter:
    """A splitter that predicts the same centres and foreground (GxG; default: none) on the
    page of `shape`, and nothing on any other view of it (a closer look)."""

    def __init__(self, centres, shape, foreground=None, name="splitter"):
        self.shape = shape
        self.out = (*centre_field(centres, shape), np.zeros((G, G), np.float32) if foreground is None else foreground)
        self.info = {name: "fixed", f"{name}_sha256": "1" * 64}

    def __call__(self, rgb, features=None):
        if rgb.shape[:2] != self.shape:
            return tuple(np.zeros_like(a) for a in self.out)
        return self.out


def test_extract_page_uses_the_splitter(extract_params):
    rgb = np.full((64, 128, 3), 255, np.uint8)
    rgb[dumbbell() > 0] = (30, 40, 60)
    seg = load_segmenter(extract_params)
    labels, chars, _ = extract_page(rgb, Models(seg), extract_params)
    assert labels.max() == 1
    models = Models(seg, split=FixedSplitter([(32, 32), (32, 96)], (64, 128)))
    labels, chars, _ = extract_page(rgb, models, extract_params)
    assert labels.max() == 2 and len(chars) == 2
    assert models.info["splitter_sha256"] == "1" * 64
    assert params_hash(extract_params, models) != params_hash(extract_params, Models(seg))
    models = Models(seg, split=FixedSplitter([(200, 200)], (64, 128)))  # no centre on the figure
    labels, chars, _ = extract_page(rgb, models, extract_params)
    assert labels.max() == 0 and chars == []
    one = np.full((64, 128, 3), 255, np.uint8)
    one[(dumbbell() > 0) & (np.arange(128) < 60)] = (30, 40, 60)  # only the left figure is drawn
    fg = np.zeros((G, G), np.float32)
    fg[4:13, 19:29] = 1  # the splitter sees a second figure where the page is blank
    models = Models(seg, split=FixedSplitter([(32, 32), (32, 96)], (64, 128), fg))
    params = extract_params.model_copy(update={"recover_peak": 0.5})
    labels, chars, _ = extract_page(one, models, params)
    assert labels.max() == 2 and len(chars) == 2 and labels[32, 96] == 2 and labels[32, 20] == 1
    assert chars[1].confidence < 0.5 and chars[1].rgba[..., 3].any()  # the segmenter did not see it
    labels, chars, _ = extract_page(one, models, params.model_copy(update={"recover_peak": 0.0}))
    assert labels.max() == 1


def test_the_head_splitter_cuts_its_parts_stay_and_it_recovers(extract_params):
    rgb = np.full((64, 128, 3), 255, np.uint8)
    rgb[dumbbell() > 0] = (30, 40, 60)
    seg = load_segmenter(extract_params)
    split = FixedSplitter([(32, 64)], (64, 128))  # one centre of mass, on the bridge
    labels, _, _ = extract_page(rgb, Models(seg, split=split), extract_params)
    assert labels.max() == 1
    models = Models(seg, split=split, heads=FixedSplitter([(32, 32), (32, 96)], (64, 128), name="head_splitter"))
    labels, chars, _ = extract_page(rgb, models, extract_params)
    assert labels.max() == 2 and len(chars) == 2 and labels[32, 20] != labels[32, 108]  # kept without a centre
    assert models.info["head_splitter_sha256"] == "1" * 64
    assert params_hash(extract_params, models) != params_hash(extract_params, Models(seg, split=split))
    one = np.full((64, 128, 3), 255, np.uint8)
    one[(dumbbell() > 0) & (np.arange(128) < 60)] = (30, 40, 60)  # only the left figure is drawn
    fg = np.zeros((G, G), np.float32)
    fg[4:13, 19:29] = 1  # the head splitter sees a second figure where the page is blank
    models = Models(seg, split=FixedSplitter([(32, 32)], (64, 128)),  # no centre of mass on it
                    heads=FixedSplitter([(32, 32), (32, 96)], (64, 128), fg, name="head_splitter"))
    labels, chars, _ = extract_page(one, models, extract_params)
    assert labels.max() == 2 and labels[32, 96] == 2 and labels[32, 20] == 1
    labels, _, _ = extract_page(one, models, extract_params.model_copy(update={"head_recover_peak": 0.0}))
    assert labels.max() == 1


def test_load_splitter(tmp_path, extract_params, tiny_model):
    assert load_splitter(extract_params) is None  # extract.splitter: null
    with pytest.raises(FileNotFoundError, match="extract.splitter .*none.onnx: not found"):
        load_splitter(extract_params.model_copy(update={"splitter": [tmp_path / "none.onnx"]}))
    with pytest.raises(ValueError, match="extract.splitter .*: no output centres, foreground, offsets"):
        load_splitter(extract_params.model_copy(update={"splitter": [tiny_model]}))  # not a splitter
    with pytest.raises(FileNotFoundError, match="extract.head_splitter .*none.onnx: not found"):
        load_splitter(extract_params.model_copy(update={"head_splitter": tmp_path / "none.onnx"}), "head_splitter")
    splitter = load_splitter(extract_params.model_copy(update={"head_splitter": ROOT / "models" / "head_splitter.onnx"}),
                             "head_splitter")
    assert splitter.name == "head_splitter" and set(splitter.info) == {"head_splitter", "head_splitter_sha256"}


def test_models_load_the_head_splitter_only_with_the_splitter(extract_params):
    heads = ROOT / "models" / "head_splitter.onnx"
    assert Models.load(extract_params.model_copy(update={"head_splitter": heads})).heads is None
    models = Models.load(extract_params.model_copy(update={"head_splitter": heads,
                                                           "splitter": [ROOT / "models" / "splitter.onnx"]}))
    assert models.heads.name == "head_splitter" and models.split.name == "splitter"


def _figure(colour):
    """A 120x60 RGBA figure: a 29 px wide head over a body of the reversed colour."""
    a = np.zeros((120, 60, 4), np.uint8)
    cv2.ellipse(a, (30, 20), (14, 16), 0, 0, 360, (*colour, 255), -1)  # head
    cv2.rectangle(a, (12, 36), (48, 118), (*colour[::-1], 255), -1)  # body
    return a


def _sprites_and_backgrounds(root):
    """Three RGBA figures of different colours and one background picture, as files."""
    (root / "sprites").mkdir()
    (root / "bg").mkdir()
    for i, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        cv2.imwrite(str(root / "sprites" / f"s{i}.png"), _figure(colour))
    (root / "sprites" / "broken.png").write_bytes(b"not a png")
    bg = np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8)
    cv2.imwrite(str(root / "bg" / "bg.jpg"), bg)


def test_composites_are_exact_and_seeded(tmp_path):
    from kirinuki.train.splitter import load_backgrounds, load_sprites
    _sprites_and_backgrounds(tmp_path)
    logs = []
    sprites, bgs = load_sprites([tmp_path / "sprites"], logs.append), load_backgrounds([tmp_path / "bg"], logs.append)
    assert len(sprites) == 3 and len(bgs) == 1
    assert len(logs) == 1 and logs[0].startswith(f"{tmp_path / 'sprites' / 'broken.png'}: skipped")
    page, labels = composite(sprites, bgs, np.random.default_rng(3), side=160)
    assert page.shape[:2] == labels.shape and page.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(labels.max() + 1))  # 0..n, no gaps
    a, b = training_set(sprites, bgs, 4, seed=1, manga_share=0.5), training_set(sprites, bgs, 4, seed=1, manga_share=0.5)
    assert all((x == y).all() for x, y in zip(a, b))
    drawn = training_set(sprites, bgs, 4, seed=1, manga_share=0.5, drawn_share=1.0)
    assert all((x == y).all() for x, y in zip(drawn, training_set(sprites, bgs, 4, seed=1, manga_share=0.5,
                                                                   drawn_share=1.0)))
    assert not (drawn[0] == a[0]).all()  # drawn figures, not the sprites
    heat, off, fg = targets(np.pad(np.ones((64, 64), np.uint8), ((0, 192), (0, 192))))
    assert heat.shape == fg.shape == (128, 128) and off.shape == (2, 128, 128)
    assert heat.max() > 0.9 and fg.sum() == 32 * 32  # a 32x32 character, centre of mass (15.5, 15.5)
    assert off[:, 0, 0] == pytest.approx([15.5 / 128, 15.5 / 128]) and (off[:, fg == 0] == 0).all()
    tall = np.zeros((256, 256), np.uint8)
    tall[:200, :40] = 1  # 100 x 20 grid cells: the head is the top fifth, rows 0..20
    heat, off, fg = targets(tall, "head")
    assert np.unravel_index(heat.argmax(), heat.shape) in {(10, 9), (10, 10)}
    assert off[:, 99, 0] == pytest.approx([(10 - 99) / 128, 9.5 / 128]) and fg.sum() == 100 * 20


def test_train_splitter_command_writes_a_working_model(tmp_path):
    pytest.importorskip("torch")
    _sprites_and_backgrounds(tmp_path)
    out = tmp_path / "splitter.onnx"
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "sprites"), "--backgrounds",
                                 str(tmp_path / "bg"), "-o", str(out), "--steps", "2", "--samples", "4",
                                 "--threads", "1", "--centre", "head"])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sprites"] == 3 and card["steps"] == 2 and card["centre"] == "head" and len(card["sha256"]) == 64
    splitter = Splitter(out, threads=1)
    rgb = np.random.default_rng(0).integers(0, 255, (100, 70, 3), np.uint8)
    heat, off, fg = splitter(rgb)
    assert heat.shape == fg.shape == (128, 128) and off.shape == (2, 128, 128)
    assert heat.dtype == off.dtype == fg.dtype == np.float32
    assert ((heat >= 0) & (heat <= 1)).all() and ((fg >= 0) & (fg <= 1)).all()
    assert all((a == b).all() for a, b in zip((heat, off, fg), splitter(rgb)))


def test_train_splitter_without_sprites_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "empty"),
                                 "--backgrounds", str(tmp_path / "empty"), "-o", str(tmp_path / "s.onnx")])
    assert r.exit_code == 1
    assert "0 sprites and 0 backgrounds found" in r.output
    r = CliRunner().invoke(app, ["train-splitter", "--sprites", str(tmp_path / "empty"), "--backgrounds",
                                 str(tmp_path / "empty"), "-o", str(tmp_path / "s.onnx"), "--centre", "feet"])
    assert r.exit_code == 1 and "centre 'feet' is not one of mass, head" in r.output


def test_augmentations_change_the_look_not_the_character():
    rng = np.random.default_rng(0)
    sprite = _figure((200, 40, 40))
    sd = chibi(sprite, rng)
    assert sd.dtype == np.uint8 and sd.shape[2] == 4 and sd.shape[0] < 120  # shorter ...
    assert (sd[:sd.shape[0] // 3, :, 3] > 0).any(axis=0).sum() > 32  # ... with a head wider than its 29 px
    rough = sketch(sprite[..., :3], rng)
    assert rough.shape == (120, 60, 3) and rough.dtype == np.uint8
    assert np.median(rough) > 190  # a pale fill with lines, whatever the colours were


def build_featured_isnet(path: Path, darkness: float = -40.0 / 3) -> Path:
    """A 256 px ISNet-shaped model with ISNet's two inner tensors: `/stage4/Add_output_0`
    (4x16x16, 1/16 of the input, quantised to uint8 as in the int8 ISNet) and
    `/stage5/Add_output_0` (4x8x8, float): average pools of the input through a 1x1 conv."""
    init = [numpy_helper.from_array(np.full((1, 3, 1, 1), darkness, np.float32), "w"),
            numpy_helper.from_array(np.array([16.0], np.float32), "b"),
            numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1) - 5, "wf"),
            numpy_helper.from_array(np.array(0.05, np.float32), "/stage4/Add_output_0_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "/stage4/Add_output_0_zero_point")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["output"])]
    for stage, k in ((4, 16), (5, 32)):
        nodes += [helper.make_node("AveragePool", ["input"], [f"pool{stage}"], kernel_shape=[k, k], strides=[k, k]),
                  helper.make_node("Conv", [f"pool{stage}", "wf"], [f"conv{stage}"]),
                  helper.make_node("Add", [f"conv{stage}", f"conv{stage}"], [f"/stage{stage}/Add_output_0"])]
    nodes.append(helper.make_node("QuantizeLinear", ["/stage4/Add_output_0", "/stage4/Add_output_0_scale",
                                                     "/stage4/Add_output_0_zero_point"],
                                  ["/stage4/Add_output_0_QuantizeLinear_Output"]))
    graph = helper.make_graph(nodes, "featured_isnet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 256])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 256, 256])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0],
                                                     "letterbox": False}))
    return path


def test_grid_features_sit_where_grid_input_puts_the_page():
    f = np.arange(2 * 4 * 8, dtype=np.float32).reshape(2, 4, 8)  # a map over a page twice as wide as tall
    out = grid_features(f, (50, 100), 16)
    assert out.shape == (2, 16, 16) and out.dtype == np.float32
    assert (out[:, 8:] == 0).all() and (out[:, :8] > 0).any()  # top half, like grid_input's page
    wide = np.ones((300, 64, 64), np.uint8)  # more channels than one OpenCV resize takes in one go
    assert (grid_features(wide, (64, 64), 32) == 1).all()


def test_isnet_hands_out_the_features_a_splitter_reads(tmp_path):
    from kirinuki.core.config import ExtractParams
    from kirinuki.train.splitter import FEATURE_STAGES
    model = build_featured_isnet(tmp_path / "isnet.onnx")
    seg = load_segmenter(ExtractParams(model=model, input_size=256), FEATURE_STAGES)
    # the quantised stage 4 is read where there is one, and dequantised; stage 5 as it is
    assert seg.read == {"/stage4/Add_output_0": ("/stage4/Add_output_0_QuantizeLinear_Output", pytest.approx(0.05), 128),
                        "/stage5/Add_output_0": ("/stage5/Add_output_0", 1.0, 0)}
    rgb = np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)
    prob, feats = seg.run(rgb)
    assert prob.shape == (120, 90) and (prob == seg(rgb)).all()
    f4, f5 = feats["/stage4/Add_output_0"], feats["/stage5/Add_output_0"]
    assert f4.shape == (4, 16, 16) and f5.shape == (4, 8, 8) and f4.dtype == f5.dtype == np.float32  # stretched: whole maps
    codes = np.round(f4 / np.float32(0.05) + 128)
    assert (np.abs(f4 - (codes - 128) * np.float32(0.05)) < 1e-6).all() and (codes % 1 == 0).all()
    with pytest.raises(ValueError, match="no tensor /stage9/Add_output_0 .not the ISNet a splitter reads"):
        load_segmenter(ExtractParams(model=model, input_size=256), ("/stage9/Add_output_0",))
    with pytest.raises(ValueError, match="extract.segmenter sam: the splitter reads ISNet's features"):
        load_segmenter(ExtractParams(model=model, segmenter="sam", detector="yolo"), FEATURE_STAGES)


def test_a_splitter_trained_on_isnet_features_cuts_pages_and_keeps_its_cache(tmp_path):
    pytest.importorskip("torch")
    import yaml
    _sprites_and_backgrounds(tmp_path)
    model = build_featured_isnet(tmp_path / "isnet.onnx")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(model), "input_size": 256}}))
    out, cache = tmp_path / "splitter.onnx", tmp_path / "cache"
    args = ["train-splitter", "--sprites", str(tmp_path / "sprites"), "--backgrounds", str(tmp_path / "bg"),
            "-o", str(out), "--steps", "2", "--threads", "1", "--isnet-features", "--params", str(params)]
    r = CliRunner().invoke(app, args + ["--samples", "3"])
    assert r.exit_code == 1 and "--isnet-features needs --cache DIR" in r.output
    r = CliRunner().invoke(app, args + ["--samples", "3", "--cache", str(cache)])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["isnet_features"] == ["/stage4/Add_output_0", "/stage5/Add_output_0"]
    assert card["isnet_sha256"] == card["isnet_model_sha256"] == sha256_file(model)  # a float model is its own source
    assert card["auxiliary"] == ["head"] and set(card["final_losses"]) == {"centre", "offset", "foreground", "auxiliary"}
    assert np.load(cache / "part_000" / "f0.npy").dtype == np.uint8  # the int8 stage's codes
    first = (cache / "part_000" / "f0.npy").read_bytes()
    assert np.load(cache / "part_000" / "f0.npy").shape == (3, 4, 16, 16)
    assert np.load(cache / "part_000" / "t.npy").shape == (3, 7, 128, 128)
    r = CliRunner().invoke(app, args + ["--samples", "5", "--cache", str(cache)])  # reuses 3, makes 2 more
    assert r.exit_code == 0, r.output
    assert json.loads((cache / "cache.json").read_text())["parts"] == [3, 2]
    assert (cache / "part_000" / "f0.npy").read_bytes() == first
    r = CliRunner().invoke(app, args + ["--samples", "5", "--cache", str(cache), "--seed", "1"])
    assert r.exit_code == 1 and "holds composites made with other seed; use another folder" in r.output

    from kirinuki.core.config import ExtractParams
    p = ExtractParams(model=model, input_size=256, min_area=0.01, splitter=out, head_splitter=None)
    models = Models.load(p)
    assert models.split.features == {"/stage4/Add_output_0": 16, "/stage5/Add_output_0": 8}
    rgb = np.full((96, 128, 3), 255, np.uint8)
    rgb[dumbbell(96, 128) > 0] = (30, 40, 60)
    labels, chars, _ = extract_page(rgb, models, p)
    again, _, _ = extract_page(rgb, Models.load(p), p)
    assert labels.max() >= 1 and (labels == again).all()  # byte-identical on a second load
    other = build_featured_isnet(tmp_path / "other.onnx", darkness=-10.0)
    with pytest.raises(ValueError, match="extract.splitter: none can run with extract.model .*other.onnx, ISNet "
                                         f"{sha256_file(other)[:12]}: .*splitter.onnx reads the features of ISNet "
                                         f"{sha256_file(model)[:12]}; retrain one"):
        Models.load(ExtractParams(model=other, input_size=256, splitter=out, head_splitter=None))
    with pytest.raises(FileNotFoundError, match="extract.model .*gone.onnx: not found"):  # no ISNet to check against
        Models.load(ExtractParams(model=tmp_path / "gone.onnx", input_size=256, splitter=out, head_splitter=None))
    plain = ROOT / "models" / "head_splitter.onnx"  # reads the page alone: the next in the list is taken
    assert Models.load(ExtractParams(model=other, input_size=256, splitter=[out, plain],
                                     head_splitter=None)).split.info["splitter"] == "head_splitter.onnx"
    card = json.loads(other.with_suffix(".json").read_text())  # requantised from the same float network
    other.with_suffix(".json").write_text(json.dumps({**card, "source_sha256": sha256_file(model)}))
    assert Models.load(ExtractParams(model=other, input_size=256, splitter=out, head_splitter=None)).split
    with pytest.raises(ValueError, match="reads ISNet's features, which only extract.splitter can"):
        load_splitter(ExtractParams(model=model, input_size=256, head_splitter=out), "head_splitter")
