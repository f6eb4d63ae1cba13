from pathlib import Path

import pytest

from kirinuki.core.config import ConfigError, Params, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_load_and_match_defaults():
    p = load_params(ROOT / "params.yaml")
    assert p.extract.model == ROOT / "models/isnet.int8.onnx"  # relative to the params file
    assert p.quantize.source == p.model.path == ROOT / "models/isnet.onnx"
    assert p.quantize.path == p.extract.model and p.quantize == Params().quantize.model_copy(
        update={k: ROOT / getattr(Params().quantize, k) for k in ("source", "path", "calibration")})
    assert p.score == Params().score and p.validation == Params().validation


def test_unknown_key_and_bad_value_name_the_key(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("extract:\n  treshold: 0.4\nscore:\n  train_resolution: -1\nvalidate:\n  good_iou: 2\n")
    with pytest.raises(ConfigError) as e:
        load_params(f)
    msg = str(e.value)
    assert f"{f}: extract.treshold: unknown key" in msg
    assert "score.train_resolution" in msg and "validate.good_iou" in msg


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("extract: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(f)
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "missing" / "params.yaml")
    assert load_params(None) == Params()


def test_grade_bounds_must_fall(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("score:\n  grades: {A: 0.5, B: 0.7, C: 0.2, D: 0.1}\n")
    with pytest.raises(ConfigError, match="score: .*falling"):
        load_params(f)


def test_head_zoom_is_off_or_a_view_around_the_region(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("extract:\n  head_zoom: 0.8\n")
    with pytest.raises(ConfigError, match="head_zoom must be 0 .off. or at least 1.1"):
        load_params(f)
    f.write_text("extract:\n  head_zoom: 0\n")
    assert load_params(f).extract.head_zoom == 0


def test_splitter_is_one_path_or_a_list_tried_in_order(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("extract:\n  splitter: models/splitter.onnx\n")
    assert load_params(f).extract.splitter == [Path("models/splitter.onnx")]
    f.write_text("extract:\n  splitter: [a.onnx, b.onnx]\n")
    assert load_params(f).extract.splitter == [Path("a.onnx"), Path("b.onnx")]
    f.write_text("extract:\n  splitter: []\n")
    with pytest.raises(ConfigError, match="extract.splitter"):
        load_params(f)


def test_digest_changes_with_values():
    a = Params().extract
    assert a.digest() == Params().extract.digest()
    assert a.digest() != a.model_copy(update={"threshold": 0.6}).digest()
