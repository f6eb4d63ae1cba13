"""The learned splitter on the extraction side: cutting merged components at predicted
centres and its wiring into extract (its training: test_train.py)."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from kirinuki.assets.fetch import BUNDLED
from kirinuki.extract.run import Models, extract_page, params_hash
from kirinuki.extract.segment import load_segmenter
from kirinuki.extract.split import (centre_peaks, drop_centreless, grid_input, load_splitter, recover_missed,
                                    split_closer, split_instances)

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

    def __call__(self, rgb):
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
    assert params_hash(extract_params.model_copy(update={"device": "cuda", "threads": 3}), models) == \
        params_hash(extract_params, models)  # ISNet and the splitters run on onnxruntime's CPU: speed only
    yolo = extract_params.model_copy(update={"detector": "yolo"})
    assert params_hash(yolo.model_copy(update={"device": "cuda"}), models) != params_hash(yolo, models)  # torch on CUDA
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
        load_splitter(extract_params.model_copy(update={"splitter": tmp_path / "none.onnx"}))
    with pytest.raises(ValueError, match="extract.splitter .*: no output centres, foreground, offsets"):
        load_splitter(extract_params.model_copy(update={"splitter": tiny_model}))  # not a splitter
    with pytest.raises(FileNotFoundError, match="extract.head_splitter .*none.onnx: not found"):
        load_splitter(extract_params.model_copy(update={"head_splitter": tmp_path / "none.onnx"}), "head_splitter")
    splitter = load_splitter(extract_params.model_copy(update={"head_splitter": BUNDLED / "head_splitter.onnx"}),
                             "head_splitter")
    assert splitter.name == "head_splitter" and set(splitter.info) == {"head_splitter", "head_splitter_sha256"}


def test_models_load_the_head_splitter_only_with_the_splitter(extract_params):
    heads = BUNDLED / "head_splitter.onnx"
    assert Models.load(extract_params.model_copy(update={"head_splitter": heads})).heads is None
    models = Models.load(extract_params.model_copy(update={"head_splitter": heads,
                                                           "splitter": BUNDLED / "splitter.onnx"}))
    assert models.heads.name == "head_splitter" and models.split.name == "splitter"
