"""Shared fixtures: a tiny ISNet-shaped ONNX model and small synthetic pages."""
from __future__ import annotations

import functools
import http.server
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kirinuki.core.config import ExtractParams
from kirinuki.core.cards import sha256_file

import localhttp

TINY_SIZE = 64


def build_tiny_isnet(path: Path, size: int = TINY_SIZE) -> Path:
    """An ONNX model with ISNet's interface ([1,3,S,S] -> [1,1,S,S] in 0..1).

    One fixed 1x1 convolution + sigmoid: dark ink on white paper -> foreground. Real
    onnxruntime execution, predictable masks, milliseconds per page.
    """
    w = numpy_helper.from_array(np.full((1, 3, 1, 1), -40.0 / 3, np.float32), "w")
    b = numpy_helper.from_array(np.array([16.0], np.float32), "b")  # foreground where mean(RGB/255 - 0.5) < 0.4
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["output"])],
        "tiny_isnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])],
        [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_card(model: Path) -> None:
    model.with_suffix(".json").write_text(json.dumps({
        "source": "tiny test model", "location": "tests", "sha256": sha256_file(model),
        "mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0], "letterbox": False}))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    model = build_tiny_isnet(tmp_path_factory.mktemp("model") / "tiny.onnx")
    write_card(model)
    return model


@pytest.fixture
def extract_params(tiny_model) -> ExtractParams:
    return ExtractParams(model=tiny_model, input_size=TINY_SIZE, min_area=0.01, margin=0.05, splitter=None)


def two_figures(h: int = 96, w: int = 128) -> np.ndarray:
    """HxWx3 uint8 white page with two separate dark figures (a disc and a block)."""
    import cv2
    rgb = np.full((h, w, 3), 255, np.uint8)
    cv2.circle(rgb, (32, 48), 20, (30, 40, 60), -1)
    cv2.rectangle(rgb, (80, 20), (112, 80), (60, 20, 20), -1)
    return rgb


@contextmanager
def serve_directory(root: Path):
    """A real HTTP file server for `root` on 127.0.0.1; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = localhttp.start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler))
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        localhttp.stop(server)
