"""The `kirinuki` command end to end on a small folder: extract -> score -> validate -> compare."""
import json

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.imageio import write_png

from conftest import TINY_SIZE, two_figures

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_stages_on_any_folder(tmp_path, tiny_model):
    params = tmp_path / "my.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "splitter": None}}))
    pages = tmp_path / "pages"
    pages.mkdir()
    rgb = two_figures()
    Image.fromarray(rgb).save(pages / "p1.png")
    gt = (rgb.min(axis=2) < 128).astype(np.uint8) * 255  # old-style 0/255 union mask
    write_png(tmp_path / "gt" / "p1_gt.png", gt)
    (pages / "broken.png").write_bytes(b"\x89PNG\r\n")
    out = tmp_path / "out"

    r = invoke("extract", pages, "-o", out, "--params", params, "--no-progress")
    assert r.exit_code == 1, r.output  # some inputs failed (listed)
    assert "broken.png" in r.output and "1 failed" in r.output

    r = invoke("score", out, "--params", params)
    assert r.exit_code == 0 and (out / "scores.jsonl").exists()

    r = invoke("validate", out, "--gt", tmp_path / "gt", "--params", params)
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "validate.json").read_text())
    assert metrics["union_miou"] > 0.9  # the tiny model finds the dark figures (at 64 px)
    assert (out / "per_image.csv").exists() and (out / "per_cutout.csv").exists()

    r = invoke("compare", out / "per_image.csv", "--baseline", out, "--params", params)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "compare.json").read_text())["verdict"] == "too few samples"


def test_bad_params_key_is_named(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("score:\n  train_res: 512\n")
    r = invoke("score", tmp_path, "--params", params)
    assert r.exit_code == 2 and "score.train_res: unknown key" in r.output


def test_not_an_extract_folder(tmp_path):
    r = invoke("score", tmp_path)
    assert r.exit_code == 2 and "no records.jsonl" in r.output  # a usage error: not an extract folder


def test_validate_reads_box_ground_truth_of_real_pages(tmp_path, tiny_model):
    """Pages with `<stem>_gt.json` (boxes) are measured by figures, grouped by the ground-truth
    folder they sit in; a page with both kinds of ground truth is measured by its mask."""
    params = tmp_path / "my.yaml"
    params.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE,
                                                  "splitter": None, "min_area": 0.0}}))
    rgb = two_figures()
    for artist in ("aoki", "mori"):
        (tmp_path / "pages" / artist).mkdir(parents=True)
        Image.fromarray(rgb).save(tmp_path / "pages" / artist / f"{artist}_1.png")
    r = invoke("extract", tmp_path / "pages", "-o", tmp_path / "out", "-p", params, "--no-progress")
    assert r.exit_code == 0, r.output
    labels = np.array(Image.open(tmp_path / "out" / "aoki_1" / "labels.png"))
    boxes = []
    for k in range(1, int(labels.max()) + 1):
        ys, xs = np.nonzero(labels == k)
        boxes.append({"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                      "head": [int(xs.mean()), int(ys.min()) + 2], "kind": "full_body"})
    for artist, figures in (("aoki", boxes), ("mori", boxes + [{"box": [0, 0, 5, 5]}])):  # mori: one missed
        gt = tmp_path / "gt" / artist / f"{artist}_1_gt.json"
        gt.parent.mkdir(parents=True)
        gt.write_text(json.dumps({"figures": figures}))
    r = invoke("validate", tmp_path / "out", "--gt", tmp_path / "gt", "-p", params)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "out" / "validate.json").read_text())["boxes"]
    n = len(boxes)
    assert (m["n_pages"], m["n_figures"], m["matched"], m["clean"]) == (2, 2 * n + 1, 2 * n, 2 * n)
    assert m["by_group"]["aoki"]["figure_recall"] == 1.0 and m["by_group"]["mori"]["missed_rate"] > 0
    assert m["by_colour"]["colour"]["n_pages"] == 2  # extraction records each page's colour
    assert (tmp_path / "out" / "per_page_boxes.csv").read_text().count("\n") == 3
    (tmp_path / "gt" / "aoki" / "aoki_1_gt.json").write_text('{"figures": [{"box": [3, 3, 2, 9]}]}')
    r = invoke("validate", tmp_path / "out", "--gt", tmp_path / "gt", "-p", params)
    assert r.exit_code == 1 and "aoki_1_gt.json: figure 1: box [3, 3, 2, 9] is empty" in r.output
    (tmp_path / "gt" / "aoki" / "aoki_1_gt.json").write_text(json.dumps({"figures": boxes}))
    (tmp_path / "out" / "mori_1" / "labels.png").write_bytes(b"damaged")  # one line; the other page measured
    r = invoke("validate", tmp_path / "out", "--gt", tmp_path / "gt", "-p", params)
    assert r.exit_code == 1 and "mori_1/labels.png: not a readable PNG label map; skipped" in r.output, r.output
    assert json.loads((tmp_path / "out" / "validate.json").read_text())["boxes"]["n_pages"] == 1
