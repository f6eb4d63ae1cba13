"""calibrate: fit the composite score on cut-outs with ground truth -> src/kirinuki/quality/score_weights.yaml.

Samples are the cut-outs of one or more extract folders, each with its features (as the
scorer computes them), a target and whether it is good. With mask ground truth (`<stem>_gt.png`,
composites) the target is the IoU of its best match, as validate measures it, and good is IoU >=
validate.good_iou. With box ground truth (`<stem>_gt.json`, real pages) the target is the box IoU
of the figure it is paired with, shared among the figures it holds, and good is cut out cleanly
and alone (boxes.cutout_quality).
The model is fitted on all of them; the figures it reports are measured both on
the fitted data and cross-validated, with folds grouped by source where the pages' sources
are given (no art source in the training and the held-out part at once), else by image.
The weights record the extractor whose cut-outs they were fitted on (the records' params
hash: extract params, model and splitter sha256), so `kirinuki score` can tell when they no
longer match.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml
from scipy.stats import spearmanr

from kirinuki import __version__
from kirinuki.quality import boosting
from kirinuki.core.config import CalibrateParams, ScoreModel, ScoreParams
from kirinuki.core.imageio import BadInput, index_box_gt, index_gt, read_jsonl, read_label_png, write_text
from kirinuki.quality.score import composite, cutout_features, grade, unknown_features
from kirinuki.qc.boxes import BoxGTError, cutout_quality, page_box_metrics, read_box_gt
from kirinuki.qc.validate import auroc, page_metrics, read_pair


class CalibrateError(Exception):
    """Calibration cannot run; str() is a one-line reason. `code` is the exit code: 2 when the
    inputs given are not what calibrate needs, 1 when what they hold cannot be fitted."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _mask_targets(labels_path: Path, gt: Path, iou_match: float, good_iou: float) -> dict[int, tuple[float, bool]]:
    pred, truth = read_pair(labels_path, gt)
    return {k: (v, v >= good_iou) for k, v in page_metrics(pred, truth, iou_match)["cutout_iou"].items()}


def _box_targets(labels_path: Path, gt: Path, iou_match: float, clean_iou: float) -> dict[int, tuple[float, bool]]:
    labels = read_label_png(labels_path)
    try:
        m = page_box_metrics(labels, read_box_gt(gt, (labels.shape[1], labels.shape[0])), iou_match, clean_iou)
    except BoxGTError as e:
        raise BadInput(str(e)) from None
    return {k: (q["target"], q["clean"]) for k, q in cutout_quality(m).items()}


def collect(extract_dir: Path, gt_index: dict[str, Path], params: ScoreParams, iou_match: float, good_iou: float,
            clean_iou: float, log: Callable[[str], None]) -> list[dict]:
    """One sample per cut-out of a page with ground truth (mask `_gt.png` or box `_gt.json`):
    image, k, features, iou (the target), good, gt ("mask" or "box"), extractor."""
    extract_dir = Path(extract_dir)
    records = [r for r in read_jsonl(extract_dir / "records.jsonl") if r["image"] in gt_index]
    extractor = {(r["image"], r["k"]): r.get("params_hash") for r in records}
    rows, _ = cutout_features(extract_dir, records, params, log)
    targets = {}
    for image in dict.fromkeys(r["image"] for r in rows):
        gt = gt_index[image]
        kind = "box" if gt.suffix == ".json" else "mask"
        try:
            found = (_box_targets(extract_dir / image / "labels.png", gt, iou_match, clean_iou) if kind == "box"
                     else _mask_targets(extract_dir / image / "labels.png", gt, iou_match, good_iou))
        except BadInput as e:
            log(f"{e}; skipped")
            continue
        targets.update({(image, k): (iou, good, kind) for k, (iou, good) in found.items()})
    return [{**r, "iou": round(targets[key][0], 4), "good": targets[key][1], "gt": targets[key][2],
             "extractor": extractor[key]}
            for r in rows if (key := (r["image"], r["k"])) in targets]


def fold_of(images: list[str], folds: int, seed: int) -> np.ndarray:
    """Fold number per sample, all cut-outs of an image in the same fold."""
    unique = sorted(set(images))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = {unique[i]: n % folds for n, i in enumerate(order)}
    return np.array([fold[im] for im in images])


def read_sources(paths: list[Path]) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """(image stem -> the art sources on it, the images whose `use` is `evaluation`), from CSVs with
    the page in an `id`, `image`, `stem` or `page` column and its source in a `source` or `author`
    column, or a `sprites` column of `source/file;...` (realbench's scenes.csv; the sample data's
    data/scenes.csv has `author`; corpus/realpages.csv has `page`, `source` and `use`). Art whose
    licence allows evaluation only (`use` = evaluation) never trains the shipped weights."""
    import csv
    out, evaluation = {}, set()
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                image = row.get("id") or row.get("image") or row.get("stem") or row.get("page")
                if not image:
                    raise CalibrateError(f"{path}: needs an `id`, `image`, `stem` or `page` column")
                if row.get("source") or row.get("author"):
                    found = [row.get("source") or row["author"]]
                elif "sprites" in row:
                    found = [s.split("/")[0] for s in row["sprites"].split(";") if s]
                else:
                    raise CalibrateError(f"{path}: needs a `source`, `author` or `sprites` column")
                out[image] = tuple(sorted(set(found))) or ("unknown",)
                if row.get("use") == "evaluation":
                    evaluation.add(image)
    return out, evaluation


def source_folds(sources: list[tuple[str, ...]], folds: int, seed: int) -> tuple[np.ndarray, list[set]]:
    """(fold per sample, the sources held out in each fold): sources are dealt to folds, a
    sample goes to the fold of its first source, and a fold's model is trained only on samples
    that hold none of that fold's sources."""
    unique = sorted({s for group in sources for s in group})
    order = np.random.default_rng(seed).permutation(len(unique))
    of = {unique[i]: n % folds for n, i in enumerate(order)}
    held = [{s for s, f in of.items() if f == i} for i in range(folds)]
    return np.array([of[group[0]] for group in sources]), held


def evaluate(samples: list[dict], predicted: np.ndarray, params: ScoreParams) -> dict:
    """How well final scores (flags applied) built on `predicted` rank and select cut-outs."""
    graded = [grade(s["features"], p, params) for s, p in zip(samples, predicted)]
    iou = np.array([s["iou"] for s in samples])
    score = np.array([g["score"] for g in graded])
    ok = np.array([g["lora_ok"] for g in graded])
    good = np.array([s["good"] for s in samples], bool)
    return {"n": len(samples), "n_good": int(good.sum()),
            "score_iou_spearman": round(float(spearmanr(score, iou).statistic), 4),
            "composite_iou_spearman": round(float(spearmanr(predicted, iou).statistic), 4),
            "score_auroc": auroc(score, good), "lora_ok_auroc": auroc(ok, good),
            "lora_ok_count": int(ok.sum()),
            "lora_ok_precision": round(float(good[ok].mean()), 4) if ok.any() else None,
            "lora_ok_recall": round(float(ok[good].mean()), 4) if good.any() else None}


def evaluate_by_gt(samples: list[dict], predicted: np.ndarray, params: ScoreParams) -> dict:
    """evaluate on all samples and, where both kinds are present, on those with mask ground truth
    (composites) and with box ground truth (real pages) apart."""
    out = {"all": evaluate(samples, predicted, params)}
    kinds = sorted({s["gt"] for s in samples})
    if len(kinds) > 1:
        for kind in kinds:
            sel = np.array([s["gt"] == kind for s in samples])
            out[kind] = evaluate([s for s, keep in zip(samples, sel) if keep], predicted[sel], params)
    return out


def inputs_digest(samples: list[dict]) -> str:
    """sha256 of the samples (image, k, features, iou, good), independent of dates and paths."""
    keep = ("image", "k", "features", "iou", "good")
    blob = json.dumps(sorted([{k: s[k] for k in keep} for s in samples], key=lambda s: (s["image"], s["k"])),
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def fit(samples: list[dict], cal: CalibrateParams) -> tuple[float, list]:
    X = np.array([[s["features"][name] for name in cal.features] for s in samples], dtype=float)
    y = np.array([s["iou"] for s in samples])
    return boosting.fit(X, y, cal.features, cal.rounds, cal.learning_rate, cal.depth, cal.min_leaf, cal.bins)


def calibrate(samples: list[dict], params: ScoreParams, cal: CalibrateParams, good_iou: float,
              sources: list[dict], art_sources: Optional[dict[str, tuple[str, ...]]] = None,
              evaluation_only: frozenset[str] = frozenset()) -> ScoreModel:
    """Fit the model on samples; provenance records the data, its hash, the extractor and the
    fit's figures (cross-validated by art source where `art_sources` gives each image's). The
    samples of `evaluation_only` images are never fitted on: the fitted model is measured on them."""
    unseen = [s for s in samples if s["image"] in evaluation_only]
    samples = [s for s in samples if s["image"] not in evaluation_only]
    n_good = sum(s["good"] for s in samples)
    if len(samples) < cal.min_samples:
        raise CalibrateError(f"{len(samples)} cut-outs with ground truth; calibration needs at least "
                             f"{cal.min_samples} (calibrate.min_samples): fewer give a rank correlation "
                             f"too uncertain to judge the fit")
    if min(n_good, len(samples) - n_good) < cal.min_per_class:
        raise CalibrateError(f"{n_good} good cut-outs (IoU >= {good_iou}, or clean on box ground truth) and "
                             f"{len(samples) - n_good} others; calibration needs at least {cal.min_per_class} of "
                             "each (calibrate.min_per_class)")
    images = [s["image"] for s in samples]
    if art_sources is not None:
        missing = sorted({im for im in images if im not in art_sources})
        if missing:
            raise CalibrateError(f"the sources file names no source for {len(missing)} image(s), e.g. {missing[0]}")
        groups = [art_sources[im] for im in images]
        fold, held = source_folds(groups, cal.folds, cal.seed)
        trains = [[s for s, g in zip(samples, groups) if not set(g) & held[i]] for i in range(cal.folds)]
        how = f"cross_validated_{cal.folds}fold_by_source"
    else:
        fold = fold_of(images, cal.folds, cal.seed)
        trains = [[s for s, f in zip(samples, fold) if f != i] for i in range(cal.folds)]
        how = f"cross_validated_{cal.folds}fold_by_image"
    held_out = np.zeros(len(samples))
    folds_fit = []
    for i in range(cal.folds):
        train = trains[i]
        test = [s for s, f in zip(samples, fold) if f == i]
        if not test:
            continue
        if len(train) < cal.min_leaf * 2:
            raise CalibrateError(f"fold {i}: {len(train)} training cut-outs once its sources are held out; "
                                 "use fewer calibrate.folds")
        base, trees = fit(train, cal)
        part = ScoreModel(features=cal.features, base=base, learning_rate=cal.learning_rate, trees=trees)
        held_out[fold == i] = composite_of(test, part)
        if art_sources is not None and len(test) >= 10:
            folds_fit.append({"held_out_sources": sorted(held[i]), "train_n": len(train),
                              **evaluate(test, held_out[fold == i], params)})
    base, trees = fit(samples, cal)
    model = ScoreModel(features=cal.features, base=base, learning_rate=cal.learning_rate, trees=trees)
    provenance = {
        "data": sources, "n_samples": len(samples), "n_images": len(set(images)),
        "n_good": n_good, "good_iou": good_iou, "inputs_sha256": inputs_digest(samples),
        "calibrate_params": cal.model_dump(mode="json"), "score_params_sha": params.digest(),
        "kirinuki": __version__, "extractor": sorted({str(s.get("extractor")) for s in samples}),
        "fit": {"in_sample": evaluate_by_gt(samples, composite_of(samples, model), params),
                how: evaluate_by_gt(samples, held_out, params)},
    }
    if unseen:
        provenance["fit"]["evaluation_only"] = evaluate_by_gt(unseen, composite_of(unseen, model), params)
        provenance["evaluation_only"] = {"n_samples": len(unseen), "n_images": len({s["image"] for s in unseen}),
                                         "inputs_sha256": inputs_digest(unseen)}
    if folds_fit:
        provenance["folds"] = folds_fit
    return model.model_copy(update={"provenance": provenance})


def composite_of(samples: list[dict], model: ScoreModel) -> np.ndarray:
    return composite([s["features"] for s in samples], model)


def _flow(tree) -> str:
    """A tree in YAML flow style; fixed-point numbers (YAML 1.1 reads 2e-05 as a string)."""
    if isinstance(tree, list):
        return "[" + ", ".join(_flow(x) for x in tree) + "]"
    if isinstance(tree, str):
        return tree
    text = f"{tree:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def to_yaml(model: ScoreModel) -> str:
    """The weights file: readable scalars, one tree per line (JSON is valid YAML flow style)."""
    head = {k: v for k, v in model.model_dump(mode="json").items() if k not in ("trees", "provenance")}
    return ("# Composite score model, written by `kirinuki calibrate` (see README, Score). Do not edit:\n"
            "# refit it. A tree is a leaf value or [feature, threshold, left (<=), right (>)].\n"
            + yaml.safe_dump(head, sort_keys=False, allow_unicode=True)
            + "trees:\n" + "".join(f"- {_flow(t)}\n" for t in model.trees)
            + yaml.safe_dump({"provenance": model.provenance}, sort_keys=False, allow_unicode=True))


def run_calibrate(extract_dirs: list[Path], gt_dirs: list[Path], params: ScoreParams, cal: CalibrateParams,
                  iou_match: float, good_iou: float, clean_iou: float, out: Path,
                  log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                  sources_csv: Optional[list[Path]] = None) -> ScoreModel:
    """Collect samples from every extract folder (ground truth from any of gt_dirs: masks, else
    boxes), fit, write `out`; `sources_csv` names each page's art sources, for folds by source, and
    the pages for evaluation only."""
    if unknown := unknown_features(cal.features):  # before minutes of collecting
        raise CalibrateError(f"calibrate.features: the scorer computes no feature {unknown}", code=2)
    for csv_path in sources_csv or []:
        if not Path(csv_path).is_file():
            raise CalibrateError(f"{csv_path}: no such sources file", code=2)
    gt_index: dict[str, Path] = {}
    for gt_dir in gt_dirs:
        if not Path(gt_dir).is_dir():
            raise CalibrateError(f"{gt_dir}: no such ground-truth folder", code=2)
        for stem, path in {**index_box_gt(Path(gt_dir)), **index_gt(Path(gt_dir))}.items():
            if stem in gt_index:
                raise CalibrateError(f"{path}: same image name as {gt_index[stem]}")
            gt_index[stem] = path
    samples, sources = [], []
    for extract_dir in extract_dirs:
        if not (Path(extract_dir) / "records.jsonl").is_file():
            raise CalibrateError(f"{extract_dir}: no records.jsonl (not an extract output folder)", code=2)
        found = collect(extract_dir, gt_index, params, iou_match, good_iou, clean_iou, log)
        sources.append({"extract": str(extract_dir), "gt": [str(g) for g in gt_dirs], "cutouts": len(found),
                        "images": len({s["image"] for s in found})})
        samples += found
    art_sources, evaluation_only = read_sources(sources_csv) if sources_csv else (None, set())
    model = calibrate(samples, params, cal, good_iou, sources, art_sources, frozenset(evaluation_only))
    write_text(out, to_yaml(model))
    return model
