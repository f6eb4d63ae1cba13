from pathlib import Path

import pytest
import yaml

from kirinuki.core.config import ConfigError, Params, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_have_one_source():
    """params.yaml states the defaults of config.py, value for value: one truth, two views."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert Params.model_validate(raw) == Params()


def test_every_relative_path_is_relative_to_the_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the params file's folder
    p = load_params(ROOT / "params.yaml")
    assert p.extract.model == ROOT / "models/isnet.int8.onnx"
    assert p.extract.splitter == ROOT / "models/splitter.onnx"
    assert p.extract.head_splitter == ROOT / "models/head_splitter.onnx"
    assert p.quantize.source == p.model.path == ROOT / "models/isnet.onnx"
    assert p.quantize.calibration is None  # the pages shipped with kirinuki
    f = tmp_path / "sub" / "params.yaml"
    f.parent.mkdir()
    f.write_text("extract:\n  splitter: null\n  yolo: {weights: w/yolo.pt}\n  sam: {checkpoint: /abs/sam.pth}\n"
                 "score:\n  weights_file: fit.yaml\nquantize:\n  calibration: pages\n")
    q = load_params(f)
    assert q.extract.splitter is None and q.extract.yolo.weights == f.parent / "w/yolo.pt"
    assert q.extract.sam.checkpoint == Path("/abs/sam.pth") and q.score.weights_file == f.parent / "fit.yaml"
    assert q.quantize.calibration == f.parent / "pages"
    # keys the file leaves out keep their defaults as without a params file: relative to where it runs
    assert q.extract.model == Path("models/isnet.int8.onnx") and q.extract.head_splitter == Path("models/head_splitter.onnx")


def test_the_anime_profile_changes_only_the_model():
    anime, default = load_params(ROOT / "params-anime.yaml"), Params()  # params.yaml states the defaults
    assert anime.model.sources[0].letterbox and len(anime.model.sources[0].sha256) == 64
    assert anime.extract.model == ROOT / "models/isnetis.int8.onnx" != ROOT / default.extract.model
    assert anime.extract.model_copy(update={"model": default.extract.model}) == default.extract
    assert anime.score == default.score and anime.publish == default.publish


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


def test_digest_changes_with_values():
    a = Params().extract
    assert a.digest() == Params().extract.digest()
    assert a.digest() != a.model_copy(update={"threshold": 0.6}).digest()


def test_dvc_exp_set_param_changes_only_that_value(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml through DVC's YAML round trip: the file is
    kept in the style it writes, so the change is the one line."""
    hydra = pytest.importorskip("dvc.utils.hydra")
    f = tmp_path / "params.yaml"
    f.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    hydra.apply_overrides(f, ["extract.threshold=0.45", "score.lora_ok_grades=[A]"])
    before = (ROOT / "params.yaml").read_text(encoding="utf-8").splitlines()
    after = f.read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(after) == len(before) - 1  # the list lost one item
    assert changed[0] == ("  threshold: 0.5             # foreground probability",
                          "  threshold: 0.45            # foreground probability")
