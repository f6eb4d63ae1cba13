"""`kirinuki bench` on tiny pages and a tiny model: the figures exist and are consistent.

No timing thresholds here: speed and memory targets are judged by real bench runs.
"""
import json

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.qc import bench
from kirinuki.cli import app

from conftest import TINY_SIZE, two_figures


def test_bench_cli_figures(tmp_path, tiny_model):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "splitter": None}}))
    pages = tmp_path / "pages"
    pages.mkdir()
    Image.fromarray(two_figures()).save(pages / "a.png")
    Image.fromarray(np.full((96, 128, 3), 255, np.uint8)).save(pages / "b.png")
    (pages / "c.png").write_bytes(b"not a png")  # left out with its line; the bench goes on
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(app, ["bench", str(pages), "--pages", "5", "--memory-pages", "2,3",
                                 "--params", str(params), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "median s/page" in r.output and "skipped: extract.segmenter is isnet" in r.output
    assert "c.png: not a readable image" in r.output
    res = json.loads(out.read_text())
    t = res["timing"]
    assert (t["pages"], t["failed"], res["distinct_images"], res["page_size"]) == (5, 0, 2, [128, 96])
    assert t["forward_timed"] == ["segmenter isnet: onnxruntime session.run"]
    assert all(0 < p["forward_s"] <= p["total_s"] for p in t["per_page"])
    assert 0 < t["median_forward_s"] <= t["median_s"] <= t["p90_s"] and 0 <= t["non_forward_share"] < 1
    assert set(res["memory"]["peak_rss_mib"]) == {"2", "3"} and res["memory"]["ratio"] > 0
    assert all(v > 10 for v in res["memory"]["peak_rss_mib"].values())  # MiB of a python + onnxruntime process

    r = CliRunner().invoke(app, ["bench", str(pages), "--memory-pages", "0", "--params", str(params)])
    assert r.exit_code == 2 and "--memory-pages" in r.output


def test_timed_forwards_attributes_and_counts():
    backend = lambda rgb: rgb  # noqa: E731  a backend without an ONNX session is timed per call
    backend.info = {"segmenter": "x"}
    timers, notes = [], []
    timed = bench.instrument(backend, "segmenter", timers, notes)
    assert timed(3) == 3 and timed(4) == 4
    assert timed.info == {"segmenter": "x"} and timers[0].calls == 2 and timers[0].seconds > 0
    assert notes == ["segmenter function: whole call"]
    assert bench.instrument(None, "detector", timers, notes) is None and len(timers) == 1  # no detector configured


def test_sam_ratio_prompts_one_then_three_boxes(tmp_path, monkeypatch, extract_params):
    calls = []
    monkeypatch.setattr(bench, "load_segmenter", lambda p: lambda rgb, boxes: calls.append(boxes.shape))
    Image.fromarray(two_figures()).save(tmp_path / "p.png")
    res = bench.sam_ratio(tmp_path / "p.png", extract_params)
    assert calls == [(1, 4), (3, 4)] * bench.SAM_REPEATS and res["ratio"] > 0
