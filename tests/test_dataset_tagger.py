"""The WD14-style auto-tagger, end to end on a tiny ONNX model with the same interface."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kirinuki.core.config import TaggerParams
from kirinuki.dataset.tagger import Tagger, TaggerError, preprocess

TAGS = [("general", 9), ("sensitive", 9), ("explicit", 9),
        ("long_hair", 0), ("smile", 0), ("red_eyes", 0), ("1girl", 0), ("solo", 0), ("open_mouth", 0),
        ("hatsune_miku", 4), ("rem_(re:zero)", 4), ("vocaloid", 3)]


def tiny_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [3, n], b [n]) of make_tiny_tagger: tag i's logit is b[i] + 4 x (its channel's mean / 255),
    its channel i % 3 in the model's B, G, R order; b spreads the tags over [-6, 2)."""
    i = np.arange(n)
    w = np.zeros((3, n), np.float32)
    w[i % 3, i] = 4.0 / 255
    b = ((i * 5) % n / n * 8 - 6).astype(np.float32)
    return w, b


def expected_scores(n: int, bgr_mean) -> np.ndarray:
    w, b = tiny_weights(n)
    return 1 / (1 + np.exp(-(np.asarray(bgr_mean, np.float64) @ w + b)))


def make_tiny_tagger(dir: Path, tags: list[tuple[str, int]], *, size: Union[int, str] = 32,
                     sigmoid: bool = True) -> tuple[Path, Path]:
    """A WD14-shaped tagger (NHWC float [1, size, size, 3] -> [1, N]) and its selected_tags.csv
    in `dir`: mean colour per channel -> a fixed linear map -> sigmoid (logits with sigmoid=False).
    `size` a name (str) makes the side dynamic."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    n = len(tags)
    w, b = tiny_weights(n)
    nodes = [helper.make_node("ReduceMean", ["input_1"], ["mean"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["mean", "w"], ["mw"]),
             helper.make_node("Add", ["mw", "b"], ["logits" if sigmoid else "output"])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["output"]))
    graph = helper.make_graph(
        nodes, "tiny_tagger",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    model_path, csv_path = dir / "model.onnx", dir / "selected_tags.csv"
    onnx.save(model, model_path)
    csv_path.write_text("tag_id,name,category,count\n" + "".join(
        f"{100 + k},{name},{cat},{1000 - k}\n" for k, (name, cat) in enumerate(tags)), encoding="utf-8")
    return model_path, csv_path


def params(model: Path, csv: Path, **kw) -> TaggerParams:
    return TaggerParams(model=model, tags_csv=csv, **kw)


def solid(rgb, alpha=255, h=24, w=24) -> np.ndarray:
    return np.broadcast_to(np.array([*rgb, alpha], np.uint8), (h, w, 4)).copy()


def reference(scores: np.ndarray, p: TaggerParams) -> list[tuple[str, float, str]]:
    """What tag() should return, by brute force over the CSV."""
    names = {9: "rating", 0: "general", 4: "character"}
    out = []
    for cat in ("rating", "character", "general"):
        if cat not in p.categories:
            continue
        rows = [i for i, (_, c) in enumerate(TAGS) if names.get(c) == cat]
        if cat == "rating":
            rows = [max(rows, key=lambda i: scores[i])]
        else:
            limit = p.general_threshold if cat == "general" else p.character_threshold
            rows = [i for i in rows if scores[i] >= limit]
        out += [(TAGS[i][0], float(scores[i]), cat) for i in sorted(rows, key=lambda i: -scores[i])]
    return out


def test_preprocess_is_bgr_on_white_padded_square():
    img = solid((255, 0, 0), h=8, w=4)  # red, taller than wide
    img[0, 0, 3] = 0  # one transparent pixel: white
    x = preprocess(img, 8)
    assert x.shape == (1, 8, 8, 3) and x.dtype == np.float32
    assert (x[0, 4, 3] == [0, 0, 255]).all()  # red in BGR
    assert (x[0, 0, 2] == [255, 255, 255]).all()  # the transparent pixel
    assert (x[0, :, 0] == 255).all() and (x[0, :, 7] == 255).all()  # white padding left and right
    assert preprocess(solid((10, 20, 30), h=100, w=60), 32).shape == (1, 32, 32, 3)  # shrunk
    grown = preprocess(solid((10, 20, 30), h=5, w=5), 32)
    assert np.allclose(grown, [30, 20, 10], atol=1)  # grown: a flat colour stays flat
    with pytest.raises(TaggerError):
        preprocess(np.zeros((4, 4), np.uint8), 32)


def test_tags_thresholds_and_order(tmp_path):
    model, csv = make_tiny_tagger(tmp_path, TAGS)
    p = params(model, csv, general_threshold=0.3, character_threshold=0.45, categories=["general", "character", "rating"])
    tagger = Tagger(p)
    assert tagger.size == 32
    red = solid((255, 0, 0))
    scores = expected_scores(len(TAGS), [0, 0, 255])  # the model sees B, G, R
    assert np.allclose(tagger.scores(red), scores, atol=1e-5)
    got = tagger.tag(red)
    assert [(t, c) for t, _, c in got] == [(t, c) for t, _, c in reference(scores, p)]
    assert np.allclose([s for _, s, _ in got], [s for _, s, _ in reference(scores, p)], atol=1e-5)
    cats = [c for _, _, c in got]
    assert cats == sorted(cats, key=["rating", "character", "general"].index)
    assert cats.count("rating") == 1 and "vocaloid" not in [t for t, _, _ in got]  # copyright: never
    assert all(s >= 0.3 for _, s, c in got if c == "general") and all(isinstance(s, float) for _, s, _ in got)
    # worked by hand: on red, tag i's logit is b[i] (+4 where i % 3 == 2, the R channel)
    assert got[0][0] == "explicit" and got[1][0] == "hatsune_miku"  # 4.67 of the ratings; 0 -> 0.5
    assert [t for t, _, c in got if c == "general"] == ["solo", "open_mouth", "smile"]  # 1.33, 0.67, -0.67


def test_transparent_is_white_and_padding_counts(tmp_path):
    tagger = Tagger(params(*make_tiny_tagger(tmp_path, TAGS)))
    white = expected_scores(len(TAGS), [255, 255, 255])
    assert np.allclose(tagger.scores(solid((0, 0, 0), alpha=0)), white, atol=1e-5)
    tall = solid((0, 0, 0), h=64, w=16)  # black, padded with white to 64x64: 3/4 white
    assert np.allclose(tagger.scores(tall), expected_scores(len(TAGS), [191.25] * 3), atol=1e-3)


def test_categories_filter(tmp_path):
    model, csv = make_tiny_tagger(tmp_path, TAGS)
    only_general = Tagger(params(model, csv, general_threshold=0.001, categories=["general"])).tag(solid((9, 9, 9)))
    assert {c for _, _, c in only_general} == {"general"} and len(only_general) == 6
    rating = Tagger(params(model, csv, categories=["rating"])).tag(solid((255, 255, 255)))
    assert len(rating) == 1 and rating[0][2] == "rating"
    white = expected_scores(len(TAGS), [255, 255, 255])
    assert rating[0][0] == TAGS[int(np.argmax(white[:3]))][0]


def test_logits_get_a_sigmoid_and_dynamic_size_is_448(tmp_path):
    model, csv = make_tiny_tagger(tmp_path, TAGS, size="side", sigmoid=False)
    tagger = Tagger(params(model, csv))
    assert tagger.size == 448
    # float32 ReduceMean over 448x448 drifts a little: the sigmoid is what is checked
    assert np.allclose(tagger.scores(solid((255, 0, 0))), expected_scores(len(TAGS), [0, 0, 255]), atol=1e-2)


def test_mismatched_csv_names_both_files(tmp_path):
    model, _ = make_tiny_tagger(tmp_path / "a", TAGS)
    _, csv = make_tiny_tagger(tmp_path / "b", TAGS[:-1])
    with pytest.raises(TaggerError) as e:
        Tagger(params(model, csv))
    msg = str(e.value)
    assert str(model) in msg and str(csv) in msg and "\n" not in msg and "12" in msg and "11" in msg


def test_missing_and_bad_files(tmp_path):
    model, csv = make_tiny_tagger(tmp_path, TAGS)
    for missing in (params(tmp_path / "nope.onnx", csv), params(model, tmp_path / "nope.csv")):
        with pytest.raises(TaggerError, match="no such file .*never downloads them"):
            Tagger(missing)
    with pytest.raises(TaggerError, match="no model"):
        Tagger(TaggerParams())
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,label\n1,smile\n", encoding="utf-8")
    with pytest.raises(TaggerError, match=f"{bad_csv}: not a tag CSV"):
        Tagger(params(model, bad_csv))
    bad_csv.write_text("tag_id,name,category,count\n1,smile,zero,5\n", encoding="utf-8")
    with pytest.raises(TaggerError, match="line 2"):
        Tagger(params(model, bad_csv))
    bad_csv.write_bytes(b"tag_id,name,category,count\n1,\xff\xfe,0,5\n")
    with pytest.raises(TaggerError, match="not UTF-8"):
        Tagger(params(model, bad_csv))
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(TaggerError, match=f"{not_onnx}: not a loadable ONNX model") as e:
        Tagger(params(not_onnx, csv))
    assert "\n" not in str(e.value)
