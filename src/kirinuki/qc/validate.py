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

from kirinuki.core.config import ValidateParams
from kirinuki.quality.features import completeness
from kirinuki.core.imageio import BadImage, index_gt, read_jsonl, read_label_png, write_json, write_text

GRADES = ("A", "B", "C", "D", "E")
MAX_LABEL = 65535  # largest id a uint16 PNG label map can hold
IMAGE_COLUMNS = ["image", "n_gt", "n_pred", "union_iou", "instance_iou", "tp", "fp", "fn",
                 "count_ok", "empty_fp"]
CUTOUT_COLUMNS = ["image", "k", "iou", "score", "grade", "lora_ok", "reasons", "gt_instances", "gt_cut"]
# fixed IoU bands of the grade table (stable metric names: iou_<low>_<high> in hundredths)
IOU_BANDS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
BAND_NAMES = [f"iou_{round(lo * 100):03d}_{round(hi * 100):03d}" for lo, hi in zip(IOU_BANDS, IOU_BANDS[1:])]


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


def confusion(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (predicted id, GT id) pair, background included.

    pred, gt: HxW integer label maps of the same shape. Returns (joint [n_pred, n_gt]
    int, pred_ids, gt_ids), ids sorted. With ids compacted to 0..n-1, one bincount
    over the combined index is the whole matrix.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"label maps differ in shape: pred {pred.shape}, gt {gt.shape}")
    p_ids, p_idx = _compact(pred)
    g_ids, g_idx = _compact(gt)
    joint = np.bincount(p_idx * len(g_ids) + g_idx, minlength=len(p_ids) * len(g_ids))
    return joint.reshape(len(p_ids), len(g_ids)), p_ids, g_ids


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted instance with every GT instance.

    pred, gt: HxW integer label maps of the same shape; ids need not be consecutive.
    Returns (iou [n_pred, n_gt] float64, pred_ids [n_pred], gt_ids [n_gt]), ids sorted,
    background (0) excluded.
    """
    joint, p_ids, g_ids = confusion(pred, gt)
    p_area, g_area = joint.sum(axis=1), joint.sum(axis=0)
    p_fg, g_fg = p_ids != 0, g_ids != 0
    inter = joint[np.ix_(p_fg, g_fg)]
    union = p_area[p_fg, None] + g_area[None, g_fg] - inter
    return inter / union, p_ids[p_fg], g_ids[g_fg]  # union >= area of a present id > 0


def cutout_truth(pred: np.ndarray, gt: np.ndarray, params: ValidateParams) -> dict[int, dict]:
    """What each predicted cut-out really is, by the ground truth (to measure flags against).

    pred, gt: HxW label maps. Returns {pred_id: {"gt_instances": how many GT instances
    have at least `holds_instance` of their area inside it, "gt_cut": whether the GT
    instance it overlaps most is a cut body — along a page edge, or ending on a straight
    top/bottom line (a frame, a sprite's edge)}}.
    """
    joint, p_ids, g_ids = confusion(pred, gt)
    g_area = joint.sum(axis=0)
    cut = {}
    out = {}
    for i, k in enumerate(p_ids):
        if k == 0:
            continue
        inter = joint[i].astype(float)
        inter[g_ids == 0] = 0
        held = int(((inter / np.maximum(g_area, 1) >= params.holds_instance) & (g_ids != 0)).sum())
        is_cut = False
        if inter.max() > 0:
            g = int(g_ids[inter.argmax()])
            if g not in cut:
                c = completeness(gt == g)
                cut[g] = (max(c[f"edge_{s}"] for s in ("left", "top", "right", "bottom")) >= params.gt_cut_edge
                          or max(c["cut_top"], c["cut_bottom"]) >= params.gt_cut_straight)
            is_cut = cut[g]
        out[int(k)] = {"gt_instances": held, "gt_cut": bool(is_cut)}
    return out


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


def auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Probability that a random positive outranks a random negative (ties count half);
    None without both. score: [n] numbers; positive: [n] bool."""
    score, positive = np.asarray(score, float), np.asarray(positive, bool)
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return round(float(greater / (len(pos) * len(neg))), 4)


def iou_band(iou: pd.Series) -> pd.Series:
    """BAND_NAMES label of each IoU: a band holds its lower bound, the last one also 1.0."""
    return pd.Series(np.array(BAND_NAMES)[np.searchsorted(IOU_BANDS[1:-1], iou.to_numpy(), side="right")],
                     index=iou.index)


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
    bands = iou_band(iou)
    grade_bands = {g: {b: int(((per_cutout["grade"] == g) & (bands == b)).sum()) for b in BAND_NAMES}
                   for g in GRADES}
    good = (iou >= params.good_iou).to_numpy()
    failure_modes, flag_fp = _failure_modes(per_cutout) if scored.any() else (None, None)

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
        # does the grade separate LoRA-worthy cut-outs (IoU >= good_iou) from the rest?
        "lora_ok_auroc": auroc(lora_ok.to_numpy(), good) if any_scored else None,
        "score_auroc": auroc(score[scored].to_numpy(), good[scored.to_numpy()]) if any_scored else None,
        "grades": grades,
        "grade_iou_bands": grade_bands,
        # ground-truth failure modes: how many, how many graded D/E, how many carry the flag
        "failure_modes": failure_modes,
        "flag_false_positive_rate": flag_fp,
    }


def _failure_modes(per_cutout: pd.DataFrame) -> tuple[dict, dict]:
    """Per failure mode of the ground truth (cutout_truth): count, graded D/E, flagged;
    and how often a flag fires on a cut-out that is not that failure."""
    held = per_cutout["gt_instances"].fillna(0).astype(int)
    cut = per_cutout["gt_cut"].fillna(False).astype(bool) & (held >= 1)
    reasons = per_cutout["reasons"].fillna("").astype(str)
    low = per_cutout["grade"].isin(["D", "E"])
    flag_multi = reasons.str.contains("multi_character")
    flag_cut = reasons.str.contains("truncated_|touches_character")  # the flags of a cut body

    def mode(truth, flag=None):
        out = {"n": int(truth.sum()), "graded_d_or_e": int((truth & low).sum())}
        return out if flag is None else {**out, "flagged": int((truth & flag).sum())}

    single, whole = held == 1, (held == 1) & ~cut
    return ({"multi_character": mode(held >= 2, flag_multi), "cut_body": mode(cut, flag_cut),
             "no_character": mode(held == 0)},
            {"multi_character": _ratio((flag_multi & single).sum(), single.sum()),
             "truncated": _ratio((flag_cut & whole).sum(), whole.sum())})


def grades_markdown(metrics: dict, good_iou: float) -> str:
    """The grade x IoU-band table and the score figures of a metrics dict, as markdown."""
    head = "| grade | " + " | ".join(f"IoU {lo:.2f}–{hi:.2f}" for lo, hi in zip(IOU_BANDS, IOU_BANDS[1:]))
    lines = [f"{head} | n | mean IoU |", "|---" * (len(BAND_NAMES) + 3) + "|"]
    for g in GRADES:
        row = metrics["grade_iou_bands"][g]
        mean = metrics["grades"][g]["mean_iou"]
        lines.append(f"| {g} | " + " | ".join(str(row[b]) for b in BAND_NAMES)
                     + f" | {metrics['grades'][g]['n']} | {'–' if mean is None else f'{mean:.3f}'} |")
    figures = {"score_iou_spearman": "Spearman(score, IoU)",
               "score_auroc": f"AUROC of score for IoU ≥ {good_iou}",
               "lora_ok_auroc": f"AUROC of lora_ok for IoU ≥ {good_iou}",
               "lora_ok_precision": f"precision of lora_ok (IoU ≥ {good_iou})", "lora_ok_count": "lora_ok cut-outs"}
    lines += ["", *(f"- {label}: {metrics[key]}" for key, label in figures.items())]
    return "IoU bands hold their lower bound (0.75–0.90 is 0.75 <= IoU < 0.90).\n\n" + "\n".join(lines) + "\n"


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


def read_pair(labels_path: Path, gt_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(HxW predicted label map, HxW GT instance map) of one page.

    Raises BadImage, one line naming the files, when either is unreadable or they differ in size.
    """
    pred, gt = read_label_png(labels_path), gt_instances(read_label_png(gt_path))
    if pred.shape != gt.shape:
        raise BadImage(f"{labels_path} is {pred.shape[1]}x{pred.shape[0]} but {gt_path} is "
                       f"{gt.shape[1]}x{gt.shape[0]}")
    return pred, gt


def run_validate(extract_dir: Path, gt_dir: Path, scores_path: Path | None, params: ValidateParams,
                 metrics_path: Path, per_image_csv: Path, per_cutout_csv: Path) -> dict:
    """Measure every `extract_dir/<stem>/labels.png` that has a `<stem>_gt.png` under gt_dir.

    Images without GT are skipped with a warning, unreadable or mis-sized pairs with an
    error line; both go to stderr and the run continues. Writes the metrics JSON, the
    two CSVs and the grade table `grades.md` beside the metrics JSON, atomically, and
    returns the metrics dict.
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
            pred, gt = read_pair(labels_path, gt_path)
        except BadImage as e:
            print(f"error: {e}; skipped", file=sys.stderr)
            continue
        m = page_metrics(pred, gt, params.iou_match)
        truth = cutout_truth(pred, gt, params)
        image_rows.append({"image": stem, **{c: m[c] for c in IMAGE_COLUMNS[1:]}})
        for k, iou in m["cutout_iou"].items():
            rec = scores.get((stem, k), {})
            cutout_rows.append({"image": stem, "k": k, "iou": iou, "score": rec.get("score"),
                                "grade": rec.get("grade"), "lora_ok": rec.get("lora_ok"),
                                "reasons": ";".join(rec.get("reasons", [])), **truth[k]})

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
    write_text(Path(metrics_path).with_name("grades.md"), grades_markdown(metrics, params.good_iou))
    return metrics
