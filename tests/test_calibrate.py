"""calibrate: fit the composite score on cut-outs with ground truth, refuse too few samples,
write weights the scorer reads back with their provenance."""
import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.quality import boosting
from kirinuki.qc.calibrate import CalibrateError, calibrate, fold_of, inputs_digest, run_calibrate, to_yaml
from kirinuki.cli import app
from kirinuki.core.config import CalibrateParams, ConfigError, ScoreParams, load_score_model
from kirinuki.core.imageio import write_png

from conftest import TINY_SIZE, two_figures

P = ScoreParams()
FEATURES = ["confidence", "area_share"]


def sample(i: int, rng) -> dict:
    """A cut-out whose IoU follows its confidence, with neutral flag features."""
    conf = rng.uniform(0.5, 1.0)
    f = {"confidence": round(conf, 4), "area_share": round(rng.uniform(0.01, 0.3), 4), "opaque_share": 0.5,
         "luma_mean": 0.5, "luma_std": 0.2, "regions": 1, "open_parts": 1, "heads": 1, "resolution": 1.0,
         "neighbour_edge": 0.0,
         **{f"{k}_{s}": 0.0 for k in ("edge", "cut") for s in ("left", "top", "right", "bottom")}}
    iou = round(float(np.clip((conf - 0.5) * 2 + rng.normal(0, 0.05), 0, 1)), 4)
    return {"image": f"p{i // 2}", "k": i % 2 + 1, "features": f, "iou": iou, "good": iou >= 0.75, "gt": "mask"}


def samples(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [sample(i, rng) for i in range(n)]


def test_boosted_trees_learn_a_step():
    x = np.linspace(0, 1, 200)[:, None]
    y = (x[:, 0] > 0.6).astype(float)
    base, trees = boosting.fit(x, y, ["x"], rounds=100, learning_rate=0.1, depth=1, min_leaf=5, bins=16)
    pred = boosting.predict(base, 0.1, trees, np.array([[0.2], [0.9]]), ["x"])
    assert pred[0] < 0.1 and pred[1] > 0.9
    assert trees[0][0] == "x" and 0.5 < trees[0][1] < 0.7  # [feature, threshold, left, right]


def test_folds_keep_an_image_together():
    fold = fold_of(["a", "a", "b", "c", "c", "d"], 2, seed=0)
    assert fold[0] == fold[1] and fold[3] == fold[4] and set(fold) == {0, 1}


def test_fit_reports_in_sample_and_cross_validated_figures_with_provenance():
    cal = CalibrateParams(features=FEATURES, rounds=60)
    model = calibrate(samples(120), P, cal, 0.75, [{"extract": "x", "cutouts": 120}])
    prov = model.provenance
    assert prov["n_samples"] == 120 and prov["n_images"] == 60 and prov["data"][0]["extract"] == "x"
    assert prov["inputs_sha256"] == inputs_digest(samples(120))
    cv = prov["fit"]["cross_validated_5fold_by_image"]["all"]
    assert cv["score_iou_spearman"] > 0.8 and prov["fit"]["in_sample"]["all"]["score_iou_spearman"] >= cv["score_iou_spearman"]
    assert cv["lora_ok_precision"] >= 0.9


def test_box_ground_truth_targets(tmp_path):
    """On a real page's box ground truth: a clean cut-out's target is its box IoU and it is good; one
    holding two figures gets half its box IoU; one holding no figure gets 0."""
    from kirinuki.qc.calibrate import _box_targets
    labels = np.zeros((100, 200), np.uint8)
    labels[10:50, 10:40] = 1   # figure 1, alone
    labels[10:90, 100:190] = 2  # figures 2 and 3 together
    labels[70:90, 10:30] = 3   # a bubble
    write_png(tmp_path / "labels.png", labels)
    figures = [{"box": [10, 10, 40, 50], "head": [25, 15]}, {"box": [100, 10, 190, 90], "head": [120, 20]},
               {"box": [150, 10, 190, 90], "head": [170, 20]}]
    (tmp_path / "p_gt.json").write_text(json.dumps({"figures": figures}))
    got = _box_targets(tmp_path / "labels.png", tmp_path / "p_gt.json", 0.5, 0.7)
    assert got[1] == (1.0, True) and got[2] == (0.5, False) and got[3] == (0.0, False)


def test_refuses_too_few_samples():
    with pytest.raises(CalibrateError, match="99 cut-outs with ground truth; calibration needs at least 100"):
        calibrate(samples(99), P, CalibrateParams(features=FEATURES), 0.75, [])


def test_refuses_one_sided_samples():
    same = [{**s, "iou": 0.9, "good": True} for s in samples(120)]
    with pytest.raises(CalibrateError, match="needs at least 10 of each"):
        calibrate(same, P, CalibrateParams(features=FEATURES), 0.75, [])


def test_refuses_a_feature_the_scorer_does_not_compute_before_collecting(tmp_path):
    cal = CalibrateParams(features=[*FEATURES, "sparkle"])
    with pytest.raises(CalibrateError, match=r"calibrate.features: the scorer computes no feature \['sparkle'\]"):
        run_calibrate([tmp_path / "not-an-extract-folder"], [tmp_path / "no-gt"], P, cal, 0.5, 0.75, 0.7,
                      tmp_path / "w.yaml")  # neither folder exists: refused before either is looked at
    assert not (tmp_path / "w.yaml").exists()


def test_weights_file_round_trip_and_bad_file_is_named(tmp_path):
    model = calibrate(samples(120), P, CalibrateParams(features=FEATURES, rounds=20), 0.75, [])
    path = tmp_path / "w.yaml"
    path.write_text(to_yaml(model))
    assert load_score_model(path).trees == model.trees
    doc = yaml.safe_load(path.read_text())
    doc["trees"][0] = ["no_such_feature", 0.5, 0.1, 0.2]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=f"{path}: .*no_such_feature"):
        load_score_model(path)


def test_cli_calibrate_then_score_with_the_new_weights(tmp_path, tiny_model):
    """Real extract folder + GT; the fitted file is what `kirinuki score` then reads."""
    pages, gt = tmp_path / "pages", tmp_path / "gt"
    pages.mkdir()
    gt.mkdir()
    for i in range(12):
        rgb = np.roll(two_figures(), 3 * i, axis=1)
        Image.fromarray(rgb).save(pages / f"p{i:02d}.png")
        truth = (rgb.min(axis=2) < 128).astype(np.uint8)
        if i % 2:  # on odd pages only the disc is a character: the block is a false positive
            truth[:, 64:] = 0
        if i % 3:
            write_png(gt / f"p{i:02d}_gt.png", truth)
        else:  # every third page has box ground truth, as a real page would (the disc's box)
            ys, xs = np.nonzero(truth[:, :64])
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            (gt / f"p{i:02d}_gt.json").write_text(json.dumps({"figures": [{"box": box}]}))
    weights = tmp_path / "w.yaml"
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({
        "extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "splitter": None},
        "score": {"weights_file": str(weights), "train_resolution": 32},
        "calibrate": {"min_samples": 20, "min_per_class": 2, "folds": 3, "rounds": 30}}))
    runner = CliRunner()
    out = tmp_path / "out"
    assert runner.invoke(app, ["extract", str(pages), "-o", str(out), "--params", str(params), "--no-progress"]).exit_code == 0

    n = len((out / "records.jsonl").read_text().splitlines())
    r = runner.invoke(app, ["calibrate", str(out), "--gt", str(gt), "--params", str(params)])
    assert r.exit_code == 0, r.output
    assert f"fitted on {n} cut-outs of 12 images" in r.output and "cross_validated_3fold_by_image (box)" in r.output
    assert load_score_model(weights).provenance["data"][0]["extract"] == str(out)

    r = runner.invoke(app, ["score", str(out), "--params", str(params)])
    assert r.exit_code == 0 and f"{n} cut-outs graded" in r.output and "ms" in r.output

    params.write_text(params.read_text().replace("min_samples: 20", f"min_samples: {n + 1}"))
    r = runner.invoke(app, ["calibrate", str(out), "--gt", str(gt), "--params", str(params)])
    assert r.exit_code == 1 and f"{n} cut-outs with ground truth; calibration needs at least {n + 1}" in r.output


def test_folds_by_source_never_train_on_a_held_out_source(tmp_path):
    from kirinuki.qc.calibrate import read_sources, source_folds
    (tmp_path / "scenes.csv").write_text("id,sprites\np0,ks/a.png;renpy/b.png\np1,renpy/c.png\np2,ks/d.png\n")
    (tmp_path / "data.csv").write_text("stem,author\np3,aoki\n")
    (tmp_path / "pages.csv").write_text("page,source,use\np4,om,evaluation\np5,bj,training\n")
    src, evaluation = read_sources([tmp_path / "scenes.csv", tmp_path / "data.csv", tmp_path / "pages.csv"])
    assert evaluation == {"p4"}
    assert src == {"p0": ("ks", "renpy"), "p1": ("renpy",), "p2": ("ks",), "p3": ("aoki",), "p4": ("om",), "p5": ("bj",)}
    fold, held = source_folds([src[p] for p in ("p0", "p1", "p2", "p3")], 3, seed=0)
    assert sorted(s for h in held for s in h) == ["aoki", "ks", "renpy"]
    for i, (p, f) in enumerate(zip(("p0", "p1", "p2", "p3"), fold)):
        assert src[p][0] in held[f]  # a page is held out with its first source
    (tmp_path / "bad.csv").write_text("id,what\np0,x\n")
    with pytest.raises(CalibrateError, match="needs a `source`"):
        read_sources([tmp_path / "bad.csv"])


def test_fit_by_source_reports_folds_and_records_the_extractor():
    data = samples(120)
    for i, s in enumerate(data):
        s["extractor"] = "abc-123"
    sources = {s["image"]: (f"pack{int(s['image'][1:]) % 6}",) for s in data}
    model = calibrate(data, P, CalibrateParams(features=FEATURES, rounds=40), 0.75, [], sources)
    prov = model.provenance
    assert "cross_validated_5fold_by_source" in prov["fit"] and prov["extractor"] == ["abc-123"]
    assert all(f["n"] >= 10 and set(f["held_out_sources"]) for f in prov["folds"])
    assert prov["inputs_sha256"] == inputs_digest(samples(120))  # the extractor id is provenance, not data


def test_evaluation_only_pages_are_measured_never_fitted():
    data = samples(160)
    sources = {s["image"]: (f"pack{int(s['image'][1:]) % 6}",) for s in data}
    unseen = frozenset(im for im, (src,) in sources.items() if src == "pack5")
    cal = CalibrateParams(features=FEATURES, rounds=40)
    model = calibrate(data, P, cal, 0.75, [], sources, unseen)
    fitted = [s for s in data if s["image"] not in unseen]
    assert model.provenance["inputs_sha256"] == inputs_digest(fitted)
    assert model.trees == calibrate(fitted, P, cal, 0.75, [], sources).trees
    held = model.provenance["fit"]["evaluation_only"]["all"]
    assert held["n"] == len(data) - len(fitted) and held["score_iou_spearman"] > 0.8


def test_score_warns_about_cut_outs_of_another_extractor():
    from kirinuki.core.config import ScoreModel
    from kirinuki.quality.score import stale_extractors
    model = ScoreModel(features=["x"], base=0.5, learning_rate=0.1, trees=[["x", 0.5, 0.0, 0.1]],
                       provenance={"extractor": ["a"]})
    assert stale_extractors(model, [{"params_hash": "a"}]) == []
    assert stale_extractors(model, [{"params_hash": "a"}, {"params_hash": "b"}]) == ["b"]
    assert stale_extractors(model.model_copy(update={"provenance": {}}), [{"params_hash": "b"}]) == []
