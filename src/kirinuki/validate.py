"""Measure extracted label maps against ground-truth masks.

Pure functions first (label maps in, numbers out), then `run_validate`, which walks an
extract folder, reads the files and writes the metrics JSON and per-image / per-cut-out
CSVs. All label maps are HxW integer arrays: 0 = background, k > 0 = instance k.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from .config import ValidateParams
from .imageio import BadImage, index_gt, read_jsonl, read_label_png, write_json, write_text

GRADES = ("A", "B", "C", "D", "E")
MAX_LABEL = 65535  # largest id a uint16 PNG label map can hold
IMAGE_COLUMNS = ["image", "n_gt", "n_pred", "union_iou", "instance_iou", "tp", "fp", "fn",
                 "count_ok", "empty_fp"]
CUTOUT_COLUMNS = ["image", "k", "iou", "score", "grade", "lora_ok"]


class ValidateError(Exception):
    """Validation cannot produce any result; str() is a one-line reason."""


# --- pure functions -------------------------------------------------------------------------

def gt_instances(raw: np.ndarray) -> np.ndarray:
    """Normalise an HxW ground-truth array to an instance label map.

    A mask whose only values are 0 and 255 is the old binary format: one union
    instance, returned as 0/1 uint8. Anything else already is a label map.
    """
    values = np.unique(raw)
    if 255 in values and np.isin(values, (0, 255)).all():
        return (raw == 255).astype(np.uint8)
    return raw


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ids present in a label map, and each pixel's position among them (flat, N).

    Label ids are PNG values (at most 65535), so a bincount plus a lookup table does in
    one linear pass what np.unique does with a sort.
    """
    flat = labels.ravel()
    if flat.size == 0 or flat.min() < 0 or flat.max() > MAX_LABEL:
        raise ValueError(f"a label map must be non-empty with ids 0..{MAX_LABEL}")
    ids = np.flatnonzero(np.bincount(flat))
    lut = np.zeros(ids[-1] + 1, np.intp)
    lut[ids] = np.arange(len(ids))
    return ids, lut[flat]


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted instance with every GT instance.

    pred, gt: HxW integer label maps of the same shape; ids need not be consecutive.
    Returns (iou [n_pred, n_gt] float64, pred_ids [n_pred], gt_ids [n_gt]), ids sorted,
    background (0) excluded.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"label maps differ in shape: pred {pred.shape}, gt {gt.shape}")
    # With ids compacted to 0..n-1, one bincount over the combined index is the whole
    # confusion matrix (background row/column included).
    p_ids, p_idx = _compact(pred)
    g_ids, g_idx = _compact(gt)
    joint = np.bincount(p_idx * len(g_ids) + g_idx, minlength=len(p_ids) * len(g_ids))
    joint = joint.reshape(len(p_ids), len(g_ids))
    p_area, g_area = joint.sum(axis=1), joint.sum(axis=0)
    p_fg, g_fg = p_ids != 0, g_ids != 0
    inter = joint[np.ix_(p_fg, g_fg)]
    union = p_area[p_fg, None] + g_area[None, g_fg] - inter
    return inter / union, p_ids[p_fg], g_ids[g_fg]  # union >= area of a present id > 0


def _assign(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices of the IoU-maximising one-to-one matching, IoU-0 pairs dropped."""
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = iou[rows, cols] > 0
    return rows[keep], cols[keep]


def match_instances(pred: np.ndarray, gt: np.ndarray) -> list[tuple[int, int, float]]:
    """Hungarian matching of predicted to GT instances maximising total IoU.

    pred, gt: HxW label maps. Returns [(pred_id, gt_id, iou)] sorted by pred_id;
    instances that overlap nothing they could be paired with are left out.
    """
    iou, p_ids, g_ids = iou_matrix(pred, gt)
    rows, cols = _assign(iou)
    return [(int(p_ids[r]), int(g_ids[c]), float(iou[r, c])) for r, c in zip(rows, cols)]


def page_metrics(pred: np.ndarray, gt: np.ndarray, iou_match: float) -> dict:
    """Metrics of one page.

    pred: HxW predicted label map; gt: HxW GT instance map (already through
    `gt_instances`). Returns n_gt, n_pred, union_iou (NaN when both are empty),
    instance_iou (mean over GT instances of their match's IoU, 0 when unmatched; NaN
    without GT instances), tp/fp/fn at IoU >= iou_match, count_ok, empty_fp, and
    cutout_iou {pred_id: IoU of its match, 0 when unmatched}.
    """
    iou, p_ids, g_ids = iou_matrix(pred, gt)
    rows, cols = _assign(iou)
    matched = iou[rows, cols]

    pred_fg, gt_fg = pred > 0, gt > 0
    union = np.count_nonzero(pred_fg | gt_fg)
    union_iou = np.count_nonzero(pred_fg & gt_fg) / union if union else math.nan

    gt_best = np.zeros(len(g_ids))
    gt_best[cols] = matched
    cutout_iou = dict.fromkeys((int(k) for k in p_ids), 0.0)
    cutout_iou.update((int(p_ids[r]), float(v)) for r, v in zip(rows, matched))

    n_pred, n_gt = len(p_ids), len(g_ids)
    tp = int(np.count_nonzero(matched >= iou_match))
    return {
        "n_gt": n_gt,
        "n_pred": n_pred,
        "union_iou": float(union_iou),
        "instance_iou": float(gt_best.mean()) if n_gt else math.nan,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_gt - tp,
        "count_ok": n_pred == n_gt,
        "empty_fp": n_gt == 0 and n_pred > 0,
        "cutout_iou": cutout_iou,
    }


def _num(x) -> float | None:
    """A JSON-safe metric: rounded to 4 decimals, None for missing/NaN."""
    if x is None or pd.isna(x):
        return None
    return round(float(x), 4)


def _ratio(num, den) -> float | None:
    return _num(num / den) if den else None


def summarize(per_image: pd.DataFrame, per_cutout: pd.DataFrame, params: ValidateParams) -> dict:
    """Corpus metrics with stable flat names (they feed `dvc metrics diff`).

    per_image: one row per measured image, columns IMAGE_COLUMNS.
    per_cutout: one row per predicted instance, columns CUTOUT_COLUMNS; score, grade
    and lora_ok are missing (NaN/None) for cut-outs without a score record.
    Score-related metrics are None when no cut-out has a score.
    """
    n_gt = per_image["n_gt"]
    has_gt = n_gt > 0
    tp, fp, fn = (int(per_image[c].sum()) for c in ("tp", "fp", "fn"))
    empty = per_image[~has_gt]

    iou = per_cutout["iou"].astype(float)
    score = pd.to_numeric(per_cutout["score"], errors="coerce")
    scored = score.notna()
    lora_ok = per_cutout["lora_ok"].astype("boolean").fillna(False).astype(bool)

    spearman = None
    if scored.sum() >= 3 and score[scored].nunique() > 1 and iou[scored].nunique() > 1:
        spearman = spearmanr(score[scored], iou[scored]).statistic

    grades = {}
    for g in GRADES:
        g_iou = iou[per_cutout["grade"] == g]
        grades[g] = {"n": len(g_iou), "mean_iou": _num(g_iou.mean())}  # mean of none: NaN -> None

    any_scored = bool(scored.any())
    return {
        "n_images": len(per_image),
        "n_gt_instances": int(n_gt.sum()),
        "n_cutouts": len(per_cutout),
        "union_miou": _num(per_image.loc[has_gt, "union_iou"].mean()),
        # pooled: every GT instance weighs the same, whatever page it is on
        "instance_miou": _ratio((per_image.loc[has_gt, "instance_iou"] * n_gt[has_gt]).sum(), n_gt.sum()),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "count_accuracy": _ratio(per_image["count_ok"].astype(bool).sum(), len(per_image)),
        "empty_pages": len(empty),
        "empty_page_fp_rate": _ratio(empty["empty_fp"].astype(bool).sum(), len(empty)),
        "score_iou_spearman": _num(spearman),
        "lora_ok_precision": _ratio((iou[lora_ok] >= params.good_iou).sum(), lora_ok.sum()),
        "lora_ok_count": int(lora_ok.sum()) if any_scored else None,
        "grades": grades,
    }


# --- I/O edge -----------------------------------------------------------------------------

def _read_scores(scores_path: Path | None) -> dict[tuple[str, int], dict]:
    """(image stem, k) -> score record; empty when there is no scores file."""
    if scores_path is None:
        return {}
    scores_path = Path(scores_path)
    if not scores_path.is_file():
        print(f"warning: {scores_path}: no scores file; score metrics will be null", file=sys.stderr)
        return {}
    index = {}
    for n, rec in enumerate(read_jsonl(scores_path), 1):
        try:
            index[(str(rec["image"]), int(rec["k"]))] = rec
        except (KeyError, TypeError, ValueError):
            raise ValidateError(f"{scores_path}: record {n} lacks a valid 'image' and 'k'") from None
    return index


def _to_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.round(4).to_csv(index=False, lineterminator="\n"))


def run_validate(extract_dir: Path, gt_dir: Path, scores_path: Path | None, params: ValidateParams,
                 metrics_path: Path, per_image_csv: Path, per_cutout_csv: Path) -> dict:
    """Measure every `extract_dir/<stem>/labels.png` that has a `<stem>_gt.png` under gt_dir.

    Images without GT are skipped with a warning, unreadable or mis-sized pairs with an
    error line; both go to stderr and the run continues. Writes the metrics JSON and the
    two CSVs atomically and returns the metrics dict.
    """
    extract_dir, gt_dir = Path(extract_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise ValidateError(f"{gt_dir}: no such ground-truth folder")
    gt_index = index_gt(gt_dir)
    scores = _read_scores(scores_path)

    labels_paths = sorted(extract_dir.glob("*/labels.png"))
    if not labels_paths:
        raise ValidateError(f"{extract_dir}: no <image>/labels.png to validate")
    image_rows, cutout_rows = [], []
    for labels_path in labels_paths:
        stem = labels_path.parent.name
        gt_path = gt_index.get(stem)
        if gt_path is None:
            print(f"warning: {stem}: no {stem}_gt.png under {gt_dir}; skipped", file=sys.stderr)
            continue
        try:
            pred, gt = read_label_png(labels_path), gt_instances(read_label_png(gt_path))
        except BadImage as e:
            print(f"error: {e}; skipped", file=sys.stderr)
            continue
        if pred.shape != gt.shape:
            print(f"error: {labels_path} is {pred.shape[1]}x{pred.shape[0]} but {gt_path} is "
                  f"{gt.shape[1]}x{gt.shape[0]}; skipped", file=sys.stderr)
            continue
        m = page_metrics(pred, gt, params.iou_match)
        image_rows.append({"image": stem, **{c: m[c] for c in IMAGE_COLUMNS[1:]}})
        for k, iou in m["cutout_iou"].items():
            rec = scores.get((stem, k), {})
            cutout_rows.append({"image": stem, "k": k, "iou": iou, "score": rec.get("score"),
                                "grade": rec.get("grade"), "lora_ok": rec.get("lora_ok")})

    if not image_rows:
        raise ValidateError(f"no image under {extract_dir} has usable ground truth under {gt_dir}")
    unscored = sum(row["score"] is None for row in cutout_rows)
    if scores and unscored:  # a stale or partial scores file would quietly skew score metrics
        print(f"warning: {scores_path}: {unscored} of {len(cutout_rows)} cut-out(s) have no score record",
              file=sys.stderr)
    per_image = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    per_cutout = pd.DataFrame(cutout_rows, columns=CUTOUT_COLUMNS).astype(
        {"k": int, "iou": float, "score": float, "lora_ok": "boolean"})

    metrics = summarize(per_image, per_cutout, params)
    _to_csv(per_image_csv, per_image)
    _to_csv(per_cutout_csv, per_cutout)
    write_json(metrics_path, metrics)
    return metrics
