"""The fetched ISNet -> a static int8 ONNX model, ~4x faster on CPU (stage `quantize`).

The general ISNet of the npm package is *dynamically* quantized: every convolution is
DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul(scale) [-> Add(bias)], so activations are
quantized at run time, page after page (~2.0 s per 1024x1024 forward on 2 cores). Here:

1. `dequantize_dynamic`: each such chain becomes one float Conv with the weights
   (Wq - w_zero_point) x w_scale and the bias; everything the output does not need
   (ISNet's side outputs) is pruned (~1.6 s).
2. `quantize_int8`: onnxruntime's static quantization (QDQ, activations uint8, weights
   int8), calibrated on sample pages preprocessed exactly as the segmenter does
   (`segment.isnet_input`): ~0.5 s per forward, the same or better IoU on realbench.

`build_int8` ties them together for a params section, writes the model atomically with a card
`<out>.json` (source sha256, calibration pages, onnxruntime version, settings and the source's
input normalisation, so `read_card` works for it) and does nothing when that card says the
model is up to date. Same source, pages and onnxruntime version: byte-identical model.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from kirinuki.core.config import ExtractParams, QuantizeParams
from kirinuki.core.imageio import atomic_path, find_images, read_image, write_json
from kirinuki.core.cards import card_path, read_card, sha256_file
from kirinuki.extract.segment import isnet_input, normalisation


# the sample pages the measured int8 model was calibrated on, shipped with the package
BUNDLED_CALIBRATION = Path(__file__).parent / "bundled" / "calibration"


class QuantizeError(Exception):
    """The model or the calibration pages cannot be used; str() is one line."""


# --- 1. dynamic int8 -> float --------------------------------------------------------------

def _only_consumer(consumers: dict, name: str, op_type: str, at: str):
    nodes = consumers.get(name, [])
    if len(nodes) != 1 or nodes[0].op_type != op_type:
        raise QuantizeError(f"ConvInteger {at}: expected one {op_type} after it, found "
                            f"{[n.op_type for n in nodes]}")
    return nodes[0]


def dequantize_dynamic(model: ModelProto, output: str) -> ModelProto:
    """A copy of `model` with every dynamically quantized convolution as a float Conv, pruned to
    what the graph output `output` needs (that output alone remains).

    Pattern (onnxruntime's `quantize_dynamic`): x -> DynamicQuantizeLinear -> (xq, xs, xzp);
    ConvInteger(xq, Wq, xzp[, wzp]) -> Cast(float) -> Mul(., Mul(xs, ws)) [-> Add(., b | Reshape(b))].
    A model without ConvInteger passes through, pruned. Raises QuantizeError on another shape.
    """
    model = ModelProto.FromString(model.SerializeToString())
    g = model.graph
    if output not in {o.name for o in g.output}:
        raise QuantizeError(f"the model has no output {output!r} (outputs: {[o.name for o in g.output]})")
    init = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def const(name: str, at: str) -> np.ndarray:
        if name in init:
            return numpy_helper.to_array(init[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Reshape" and node.input[0] in init:
            return numpy_helper.to_array(init[node.input[0]])
        raise QuantizeError(f"ConvInteger {at}: {name} is not a constant")

    replaced, new_inits = {}, []
    for k, n in enumerate(x for x in g.node if x.op_type == "ConvInteger"):
        at = n.name or f"#{k}"
        dql = producer.get(n.input[0])
        if dql is None or dql.op_type != "DynamicQuantizeLinear":
            raise QuantizeError(f"ConvInteger {at}: its input is not from DynamicQuantizeLinear")
        wq = const(n.input[1], at).astype(np.float32)
        wzp = const(n.input[3], at).astype(np.float32) if len(n.input) > 3 and n.input[3] else np.float32(0)
        cast = _only_consumer(consumers, n.output[0], "Cast", at)
        mul = _only_consumer(consumers, cast.output[0], "Mul", at)
        scale = [i for i in mul.input if i != cast.output[0]][0]
        smul = producer.get(scale)
        if smul is None or smul.op_type != "Mul" or dql.output[1] not in smul.input:
            raise QuantizeError(f"ConvInteger {at}: its scale is not input scale x weight scale")
        ws = const([i for i in smul.input if i != dql.output[1]][0], at).astype(np.float32)
        per_out = (-1,) + (1,) * (wq.ndim - 1)  # per output channel, broadcast over the kernel
        wf = (wq - wzp.reshape(per_out if wzp.size > 1 else ())) * ws.reshape(per_out if ws.size > 1 else ())
        inputs = [dql.input[0], f"{at}_dequantized_w"]
        new_inits.append(numpy_helper.from_array(wf.astype(np.float32), inputs[1]))
        last = mul
        adds = consumers.get(mul.output[0], [])
        if len(adds) == 1 and adds[0].op_type == "Add":
            bias_name = [i for i in adds[0].input if i != mul.output[0]][0]
            try:
                bias = const(bias_name, at).astype(np.float32).reshape(-1)
            except QuantizeError:
                bias = None  # not a constant bias: keep the Add after the float Conv
            if bias is not None and bias.size == wq.shape[0]:
                inputs.append(f"{at}_dequantized_b")
                new_inits.append(numpy_helper.from_array(bias, inputs[2]))
                last = adds[0]
        conv = helper.make_node("Conv", inputs, [last.output[0]], name=f"{at}_dequantized")
        conv.attribute.extend(n.attribute)  # strides, pads, dilations, group, kernel_shape
        replaced[id(last)] = conv
    nodes = [replaced.get(id(n), n) for n in g.node]

    needed, kept = {output}, []  # backwards from the output: what it needs
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(i for i in n.input if i)
    kept.reverse()
    outputs = [o for o in g.output if o.name == output]
    inits = [i for i in list(g.initializer) + new_inits if i.name in needed]
    value_info = [v for v in g.value_info if v.name in needed]
    for field, values in (("node", kept), ("initializer", inits), ("output", outputs), ("value_info", value_info)):
        g.ClearField(field)
        getattr(g, field).extend(values)
    return model


# --- 2. float -> static int8 -------------------------------------------------------------

def model_input(path: Path) -> tuple[str, Optional[int]]:
    """Name of the model's (first) input and its square side, None where it is not fixed."""
    inp = onnx.load(str(path), load_external_data=False).graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    return inp.name, dims[-1] if len(dims) == 4 and dims[-1] and dims[-1] == dims[-2] else None


def calibration_inputs(pages: list[Path], size: int, card: dict, extract: ExtractParams) -> Iterator[np.ndarray]:
    """Each page as the segmenter feeds it to the model (1x3xSxS float32): the card's
    normalisation unless `extract` sets it, and `extract`'s descreening of monochrome pages."""
    norm = normalisation(extract, lambda: card)
    for page in pages:
        rgb = read_image(page, extract.max_pixels)
        yield isnet_input(rgb, size, descreen_sigma=extract.descreen_sigma,
                          mono_chroma=extract.mono_chroma, **norm)[0]


def quantize_int8(fp32_path: Path, out_path: Path, calibration_pages: list[Path], card: dict,
                  extract: ExtractParams = ExtractParams(), *, per_channel: bool) -> dict:
    """Static QDQ quantization of the float model `fp32_path` into `out_path` (atomically),
    calibrated (min/max) on `calibration_pages`, which are preprocessed as the segmenter does for
    the model of `card`. Returns the settings used (for the card)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if not calibration_pages:
        raise QuantizeError("no calibration pages")
    name, size = model_input(fp32_path)
    size = size or extract.input_size

    class Pages(CalibrationDataReader):
        def __init__(self):
            self.inputs = calibration_inputs(calibration_pages, size, card, extract)

        def get_next(self):
            x = next(self.inputs, None)
            return None if x is None else {name: x}

    settings = {"method": "static", "format": "QDQ", "activations": "QUInt8", "weights": "QInt8",
                "per_channel": per_channel, "calibration": "MinMax", "input_size": size}
    with tempfile.TemporaryDirectory(prefix="kirinuki-quantize-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        with atomic_path(out_path) as dest:
            quantize_static(str(pre), str(dest), Pages(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel, calibrate_method=CalibrationMethod.MinMax)
    return settings


# --- the stage ---------------------------------------------------------------------------

def calibration_pages(folder: Path, n: int) -> list[Path]:
    """`n` pages spread evenly over the sorted images under `folder` (ground truth excluded)."""
    pages = find_images(folder) if Path(folder).is_dir() else []
    if not pages:
        raise QuantizeError(f"quantize.calibration {folder}: no calibration images there")
    return [pages[i * len(pages) // min(n, len(pages))] for i in range(min(n, len(pages)))]


def _pages_digest(pages: list[Path]) -> str:
    h = hashlib.sha256()
    for p in pages:
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


def build_int8(params: QuantizeParams, extract: ExtractParams = ExtractParams(),
               log: Callable[[str], None] = print) -> dict:
    """Make `params.path` the static int8 version of `params.source`, calibrated on
    `params.pages` pages of `params.calibration`; return its card. Reuses an up-to-date one."""
    import onnxruntime as ort
    source, out = Path(params.source), Path(params.path)
    if not source.is_file():
        raise QuantizeError(f"quantize.source {source}: not found (run `kirinuki fetch-model`)")
    try:
        source_card = read_card(source)
    except FileNotFoundError as e:
        raise QuantizeError(str(e)) from None
    folder = Path(params.calibration or BUNDLED_CALIBRATION)
    pages = calibration_pages(folder, params.pages)
    names = [p.relative_to(folder).as_posix() for p in pages]
    prep = {k: getattr(extract, k) for k in ("mean", "std", "letterbox", "descreen_sigma", "mono_chroma")}
    wanted = json.loads(json.dumps({  # as the card reads back: tuples -> lists
        "source_sha256": sha256_file(source), "onnxruntime": ort.__version__,
        "calibration": {"pages": names, "count": len(names), "sha256": _pages_digest(pages),
                        "preprocessing": prep}}))
    if out.is_file() and card_path(out).is_file():
        card = read_card(out)
        if (all(card.get(k) == v for k, v in wanted.items()) and card.get("sha256") == sha256_file(out)
                and card.get("quantization", {}).get("per_channel") == params.per_channel):
            log(f"int8 model {out} up to date (source sha256 {wanted['source_sha256'][:12]}...)")
            return card
    log(f"quantizing {source} -> {out} on {len(pages)} calibration pages of {folder}")
    with tempfile.TemporaryDirectory(prefix="kirinuki-dequantize-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        model = onnx.load(str(source))
        outputs = [o.name for o in model.graph.output]  # ISNet's mask is "output"; the rest are side outputs
        onnx.save(dequantize_dynamic(model, "output" if "output" in outputs else outputs[0]), str(fp32))
        del model
        settings = quantize_int8(fp32, out, pages, source_card, extract, per_channel=params.per_channel)
    card = {"source": f"{source_card.get('source', source.name)}, static int8",
            "location": source_card.get("location"), "source_model": source.name,
            **wanted, "quantization": settings, "sha256": sha256_file(out), "bytes": out.stat().st_size,
            **{k: source_card[k] for k in ("mean", "std", "letterbox")}}
    write_json(card_path(out), card)
    log(f"int8 model {out} ({card['bytes'] / 1e6:.1f} MB, sha256 {card['sha256'][:12]}...)")
    return card
