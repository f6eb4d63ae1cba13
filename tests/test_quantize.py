"""Dynamic int8 -> float -> static int8 on a tiny conv net with real onnxruntime; the CLI's errors."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.config import ExtractParams, QuantizeParams
from kirinuki.core.cards import read_card, sha256_file
from kirinuki.assets.quantize import build_int8, calibration_inputs, dequantize_dynamic, quantize_int8
from kirinuki.extract.segment import isnet_input

from conftest import two_figures, write_card

S = 32
NORM = {"mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "letterbox": False}


def build_convnet(path, size=S):
    """[1,3,S,S] -> 3x3 conv (8 ch, bias) -> Relu -> 3x3 conv (1 ch, bias) -> Sigmoid = "output",
    plus a side output (as ISNet has) that pruning must drop."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (1, 8, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0.2], np.float32), "b2")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["logit"], pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["logit"], ["output"]),
         helper.make_node("Sigmoid", ["c1"], ["side"])],
        "convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 8, size, size])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def forward(model, x):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    fp32 = build_convnet(d / "fp32.onnx")
    dyn = d / "dynamic.onnx"
    quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QUInt8)
    write_card(dyn)  # the normalisation of the general ISNet
    return fp32, dyn


@pytest.fixture
def pages(tmp_path):
    folder = tmp_path / "pages" / "a" / "org" / "w"
    folder.mkdir(parents=True)
    rgb = two_figures()
    Image.fromarray(rgb).save(folder / "p1.png")
    Image.fromarray(np.ascontiguousarray(rgb[::-1, ::-1])).save(folder / "p2.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "p1_gt.png")  # ground truth: never a page
    return tmp_path / "pages"


def page_input(size=S):
    return isnet_input(two_figures(), size, **NORM)[0]


def test_dequantize_dynamic_gives_float_convs_close_to_the_dynamic_model(models):
    _, dyn = models
    m = onnx.load(str(dyn))
    assert "ConvInteger" in {n.op_type for n in m.graph.node}
    f = dequantize_dynamic(m, "output")
    onnx.checker.check_model(f)
    ops = {n.op_type for n in f.graph.node}
    assert "ConvInteger" not in ops and "DynamicQuantizeLinear" not in ops and "Conv" in ops
    assert [o.name for o in f.graph.output] == ["output"]  # the side output is pruned
    x = page_input()
    np.testing.assert_allclose(forward(f, x), forward(m, x), atol=0.02)
    assert "ConvInteger" in {n.op_type for n in m.graph.node}  # the input model is left as it was


def test_dequantize_passes_a_float_model_through_pruned(models):
    fp32, _ = models
    m = onnx.load(str(fp32))
    f = dequantize_dynamic(m, "output")
    assert [n.op_type for n in f.graph.node] == ["Conv", "Relu", "Conv", "Sigmoid"]
    assert [o.name for o in f.graph.output] == ["output"]
    x = page_input()
    np.testing.assert_array_equal(forward(f, x), forward(m, x))
    with pytest.raises(Exception, match="no output 'mask'"):
        dequantize_dynamic(m, "mask")


def test_quantize_int8_is_close_to_fp32_and_byte_identical(models, pages, tmp_path):
    fp32, _ = models
    calib = sorted(p for p in pages.rglob("p?.png"))
    card = dict(NORM)
    settings = quantize_int8(fp32, tmp_path / "a.onnx", calib, card, per_channel=QuantizeParams().per_channel)
    quantize_int8(fp32, tmp_path / "b.onnx", calib, card, per_channel=QuantizeParams().per_channel)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert settings["format"] == "QDQ" and settings["input_size"] == S
    ops = {n.op_type for n in onnx.load(str(tmp_path / "a.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = next(calibration_inputs(calib[:1], S, card, ExtractParams()))
    np.testing.assert_allclose(forward(tmp_path / "a.onnx", x), forward(fp32, x), atol=0.05)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_int8_writes_a_card_and_reuses_an_up_to_date_model(models, pages, tmp_path):
    _, dyn = models
    params = QuantizeParams(source=dyn, path=tmp_path / "m" / "tiny.int8.onnx", calibration=pages, pages=8)
    card = build_int8(params, log=lambda m: None)
    out = params.path
    assert read_card(out) == card and card["sha256"] == sha256_file(out)
    assert card["source_sha256"] == sha256_file(dyn)
    assert card["calibration"]["pages"] == ["a/org/w/p1.png", "a/org/w/p2.png"]  # relative, no *_gt.png
    assert card["calibration"]["count"] == 2 and card["onnxruntime"] == ort.__version__
    assert {k: card[k] for k in NORM} == NORM and card["quantization"]["per_channel"] is True
    assert "ConvInteger" not in {n.op_type for n in onnx.load(str(out)).graph.node}

    lines, mtime = [], out.stat().st_mtime_ns
    build_int8(params, log=lines.append)
    assert lines == [f"int8 model {out} up to date (source sha256 {card['source_sha256'][:12]}...)"]
    assert out.stat().st_mtime_ns == mtime
    build_int8(params.model_copy(update={"pages": 1}), log=lines.append)  # other calibration: rebuilt
    assert read_card(out)["calibration"]["pages"] == ["a/org/w/p1.png"]


def test_cli_errors_are_one_line(models, pages, tmp_path):
    runner = CliRunner()
    _, dyn = models
    r = runner.invoke(app, ["quantize-model", "--src", str(tmp_path / "none.onnx")])
    assert r.exit_code == 1 and "error: quantize.source" in r.output and "not found" in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["quantize-model", "--src", str(dyn), "--calibration", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "no calibration images" in r.output
    assert len(r.output.strip().splitlines()) == 1
    out = tmp_path / "cli" / "m.int8.onnx"
    r = runner.invoke(app, ["quantize-model", "--src", str(dyn), "--calibration", str(pages),
                            "--out", str(out), "--pages", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["calibration"]["count"] == 1
