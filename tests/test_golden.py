"""Golden-image regression (slow): the real default model on the versioned sample data.

extract -> score -> validate run once over 8 of the 24 pages of data/ (every kind of page:
colour and manga, 0-3 characters, overlap, truncation, empty and black pages, both authors
and orientations; all 24 take 1-2 minutes on 2 cores, and `make run` measures all of them)
with the repository's params.yaml, and the results are held against the baselines committed
in tests/test_golden/:
  - every label map, exactly (ndarrays_regression, one npz);
  - a handful of cut-outs as images (image_regression, which compares RGB only) and their
    alpha channels exactly (ndarrays_regression);
  - extract-side metrics and, separately, every score/feature and score-side metric, with
    tolerances (num_regression), so a scorer change regenerates only the *scores* files.
A deliberate change regenerates them with `make golden` (or `make golden ONLY=scores`);
review the diff of tests/test_golden/ before committing it.

Needs models/isnet.int8.onnx and data/ (`make test` makes both). The baselines belong to one
model, the int8 version (stage `quantize`) of the pinned default source (params.yaml, model.sources):
with another source model (e.g. the opt-in anime profile) this file skips, and fails where CI=true,
so that CI never passes without having compared the golden files.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kirinuki.core.config import load_params, load_score_model
from kirinuki.extract.run import run_extract
from kirinuki.core.imageio import read_jsonl, read_label_png, read_rgba_png
from kirinuki.core.cards import read_card
from kirinuki.quality.score import GRADES, run_score, stale_extractors
from kirinuki.qc.validate import run_validate

ROOT = Path(__file__).resolve().parents[1]
# the static int8 version (stage quantize) of the pinned default model (params.yaml, model.sources,
# the general ISNet of @imgly/background-removal-data) made the baselines
(GOLDEN_SOURCE,) = load_params(ROOT / "params.yaml").model.sources
GOLDEN_PAGES = ["aoki_ep01_04", "aoki_ep01_05", "aoki_ep01_06", "aoki_ep02_01", "aoki_ep02_03",
                "mori_ep01_03", "mori_ep01_06", "mori_ep02_02"]
# colour single, manga pair (the manga single mori_ep02_02 gives no cut-out now), colour pair with overlap, manga trio
CUTOUTS = [("mori_ep01_03", 1), ("mori_ep01_06", 1), ("aoki_ep01_04", 1), ("aoki_ep02_03", 1)]
# validate.json metrics decided by extraction alone; every other number belongs to the scorer
EXTRACT_METRICS = ["n_images", "n_gt_instances", "n_cutouts", "empty_pages", "union_miou", "instance_miou",
                   "precision", "recall", "count_accuracy", "empty_page_fp_rate"]
# validate's bookkeeping of ground truth it could not use: checked to be 0, kept out of the baselines
COUNTED_GT = ["missing_gt", "gt_without_image", "gt_refused"]
GRADE_RANK = {g: i for i, g in enumerate(GRADES)}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    params = load_params(ROOT / "params.yaml")
    model, data = params.extract.model, ROOT / "data"
    if not model.is_file() or not any(data.rglob("*_gt.png")):
        pytest.fail(f"{model} or the sample data in {data} is missing: run `make test`, "
                    "which runs `dvc pull data.dvc`, `kirinuki fetch-model` and `kirinuki quantize-model` first")
    sha = read_card(model).get("source_sha256")
    if sha != GOLDEN_SOURCE.sha256:
        why = f"{model} is not the int8 model of the golden files (source sha256 {str(sha)[:12]}...)"
        pytest.fail(why) if os.environ.get("CI") == "true" else pytest.skip(why)
    tmp = tmp_path_factory.mktemp("golden")
    pages = tmp / "data"
    for stem in GOLDEN_PAGES:  # the same layout, only the golden pages and their ground truth
        for src in data.rglob(f"{stem}*.png"):
            (pages / src.parent.relative_to(data)).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, pages / src.relative_to(data))
    out = tmp / "extract"
    summary = run_extract(pages, out, params.extract, progress=False)
    assert summary.pages == len(GOLDEN_PAGES) and not summary.errors, summary.errors
    run_score(out, params.score, out / "scores.jsonl")
    run_validate(out, pages, out / "scores.jsonl", params.validation, out / "validate.json",
                 out / "per_image.csv", out / "per_cutout.csv")
    return out


def test_label_maps(run, ndarrays_regression):
    maps = {p.parent.name: read_label_png(p) for p in sorted(run.glob("*/labels.png"))}
    assert sorted(maps) == GOLDEN_PAGES
    ndarrays_regression.check(maps)  # integer arrays: compared exactly


@pytest.mark.parametrize("image, k", CUTOUTS, ids=[f"{i}_{k}" for i, k in CUTOUTS])
def test_cutouts(run, image, k, image_regression, ndarrays_regression):
    path = run / image / f"char_{k}.png"
    if not path.is_file():
        pytest.fail(f"{image} has no cut-out {k} any more: pick golden cut-outs that exist (CUTOUTS)")
    rgba = read_rgba_png(path)
    png = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(png, "PNG")
    image_regression.check(png.getvalue(), diff_threshold=0.1, basename=f"cutout_{image}_{k}")
    ndarrays_regression.check({"alpha": rgba[..., 3]}, basename=f"cutout_{image}_{k}_alpha")


def _metrics(run: Path) -> dict:
    return json.loads((run / "validate.json").read_text())


def _number(x) -> float:
    return np.nan if x is None else float(x)


def test_extract_metrics(run, num_regression):
    m = _metrics(run)
    num_regression.check({k: [_number(m[k])] for k in EXTRACT_METRICS},
                         default_tolerance=dict(atol=1e-4, rtol=0))  # validate.json rounds to 4 decimals


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (int, float)):
            flat[prefix + k] = v
    return flat


def test_scores(run, num_regression):
    rows = read_jsonl(run / "scores.jsonl")
    pages = sorted({r["image"] for r in rows})
    table = {"page": [pages.index(r["image"]) for r in rows], "k": [r["k"] for r in rows],
             "score": [r["score"] for r in rows], "grade": [GRADE_RANK[r["grade"]] for r in rows],
             "lora_ok": [int(r["lora_ok"]) for r in rows]}
    features = sorted({f for r in rows for f, v in r["features"].items() if isinstance(v, (int, float))})
    for f in features:
        table[f"feature_{f}"] = [_number(r["features"].get(f)) for r in rows]
    num_regression.check(table, basename="scores_per_cutout", default_tolerance=dict(atol=1e-4, rtol=0))
    flat = _flatten(_metrics(run))
    assert [flat.pop(k) for k in COUNTED_GT] == [0, 0, 0]  # every golden page has usable ground truth
    metrics = {k: v for k, v in flat.items() if k not in EXTRACT_METRICS}
    num_regression.check({k: [_number(v)] for k, v in sorted(metrics.items())}, basename="scores_metrics",
                         default_tolerance=dict(atol=1e-4, rtol=0))


def test_score_weights_were_fitted_on_this_extractor(run):
    """CI fails when the default extractor changed without a refit of the score weights."""
    params = load_params(ROOT / "params.yaml")
    stale = stale_extractors(load_score_model(params.score.weights_path), read_jsonl(run / "records.jsonl"))
    assert not stale, (f"the default extractor ({', '.join(stale)}) is not the one the score weights were fitted "
                       "on: refit them (README, Score and grades: kirinuki calibrate ... --sources ...)")
