"""Measure extracted label maps against ground-truth masks.

Pure functions first (label maps in, numbers out), then `run_validate`, which walks an
extract folder, reads the files and writes the metrics JSON and per-image / per-cut-out
CSVs. All label maps are HxW integer arrays: 0 = background, k > 0 = instance k.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from kirinuki.core.config import ValidateParams
from kirinuki.core.stats import spearman
from kirinuki.quality.features import completeness
from kirinuki.quality.score import GRADES
from kirinuki.dataset.reviews import latest, lora_ok_by_sha, read_reviews, review_summary
from kirinuki.core.framing import KINDS
from kirinuki.qc.boxes import box_rows, box_summary
from kirinuki.core.imageio import BadInput, index_box_gt, index_gt, read_jsonl, read_label_png, write_json, write_text

MAX_LABEL = 65535  # largest id a uint16 PNG label map can hold
ORPHANS_NAMED = 5  # ground-truth files without an extracted image named one per line; the rest counted
IMAGE_COLUMNS = ["image", "n_gt", "n_pred", "union_iou", "instance_iou", "tp", "fp", "fn",
                 "count_ok", "empty_fp"]
CUTOUT_COLUMNS = ["image", "k", "iou", "score", "grade", "lora_ok", "reasons", "gt_instances", "gt_cut"]
# fixed IoU bands of the grade table (stable metric names: iou_<low>_<high> in hundredths)
IOU_BANDS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
BAND_NAMES = [f"iou_{round(lo * 100):03d}_{round(hi * 100):03d}" for lo, hi in zip(IOU_BANDS, IOU_BANDS[1:])]


class ValidateError(Exception):
    """Validation cannot produce any result; str() is a one-line reason. `code` is the exit code:
    2 when the folders given are not what validate needs, 1 when nothing in them can be measured."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# what a ground-truth file may hold (gt_instances): more values than this are a gradient, a photo
# or compression noise, not instances; a value held by fewer pixels than SPECK_PX is a speck
MAX_GT_INSTANCES = 200
MAX_GT_COLOURS = 64
SPECK_PX = 16


# --- pure functions -------------------------------------------------------------------------

def gt_instances(raw: np.ndarray, name: str = "ground truth") -> np.ndarray:
    """Check a ground-truth array and make it an HxW instance label map (0 = background).

    Accepted: a single-channel integer label map (0 background, k > 0 instance k); a mask
    whose only values are 0 and 255, the old binary format (one union instance, 0/1 uint8);
    an RGB(A) image of a few exact colours, one per instance on black (transparent is
    black), decoded to instances 1..n in colour order; an RGB image whose channels are
    equal is read as single-channel. Refused with BadInput, one line naming `name` and why:
    floating-point values, a gradient or photo (too many values), anti-aliased or JPEG edges
    (a 0/255 mask with in-between values, or many values of a few pixels each).
    """
    def refuse(why: str):
        raise BadInput(f"{name}: refused as ground truth: {why}")

    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        rgb = raw[..., :3]
        if raw.shape[2] == 4:  # transparent pixels are background whatever their colour
            rgb = np.where(raw[..., 3:] > 0, rgb, 0)
        if (rgb == rgb[..., :1]).all():
            raw = rgb[..., 0]
        else:
            return _colour_instances(rgb, refuse)
    if raw.ndim != 2:
        refuse(f"an array of shape {raw.shape}, expected one channel or RGB")
    if raw.dtype == bool:
        return raw.astype(np.uint8)
    if not np.issubdtype(raw.dtype, np.integer):
        refuse(f"{raw.dtype} values, expected integer instance ids")
    values, counts = np.unique(raw, return_counts=True)
    if values.size and values[0] < 0:
        refuse("negative values, expected instance ids >= 0")
    if 255 in values and np.isin(values, (0, 255)).all():
        return (raw == 255).astype(np.uint8)
    ids, id_counts = values[values != 0], counts[values != 0]
    if len(ids) > MAX_GT_INSTANCES:
        refuse(f"{len(ids)} distinct non-zero values: a gradient, a photo or compression noise, not instance labels "
               f"(at most {MAX_GT_INSTANCES} instances)")
    extreme = counts[np.isin(values, (0, 255))].sum()
    if 0 in values and 255 in values and extreme >= 0.9 * raw.size:
        refuse(f"a 0/255 mask with {len(values) - 2} in-between values: anti-aliased or lossy (JPEG) edges; "
               "save it losslessly (PNG) with hard edges")
    _check_specks(id_counts, raw.size, "values", refuse)
    _check_gradient(raw, len(ids), refuse)
    return raw


def _check_gradient(raw: np.ndarray, n_ids: int, refuse) -> None:
    """Values that change from pixel to pixel in small steps over much of the foreground are
    a gradient (or a resampled mask), not instances: those change only along outlines."""
    if n_ids < 8:
        return
    a = raw.astype(np.int64)
    steps = np.concatenate([np.abs(np.diff(a, axis=1)).ravel(), np.abs(np.diff(a, axis=0)).ravel()])
    changes = steps[steps > 0]
    fg = np.count_nonzero(raw)
    if fg and changes.size > 0.3 * fg and np.median(changes) <= 2:
        refuse(f"values change in steps of {int(np.median(changes))} from pixel to pixel over much of the "
               "foreground: a gradient or a resampled mask, not instance labels")


def _check_specks(counts: np.ndarray, size: int, what: str, refuse) -> None:
    """Many instance values of a few pixels each are compression or resampling noise."""
    specks = int((counts < min(SPECK_PX, max(1, size // 1000))).sum())
    if len(counts) >= 8 and specks * 2 >= len(counts):
        refuse(f"{specks} of {len(counts)} {what} cover fewer than {SPECK_PX} pixels each: compression or "
               "resampling noise, not instances")


def _colour_instances(rgb: np.ndarray, refuse) -> np.ndarray:
    """HxWx3 image of exact colours on black -> instance ids 1..n, by colour order."""
    flat = rgb.reshape(-1, 3)
    colours, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    black = (colours == 0).all(axis=1)
    if (~black).sum() > MAX_GT_COLOURS:
        refuse(f"{int((~black).sum())} distinct colours: anti-aliased or lossy (JPEG) edges, or a picture; "
               f"a colour ground truth holds one exact colour per instance on black (at most {MAX_GT_COLOURS})")
    _check_specks(counts[~black], flat.shape[0], "colours", refuse)
    ids = np.cumsum(~black) * ~black  # black -> 0, the other colours -> 1..n
    dtype = np.uint8 if ids.max(initial=0) <= 255 else np.uint16
    return ids.astype(dtype)[inverse.reshape(-1)].reshape(rgb.shape[:2])


def read_gt(path: Path) -> np.ndarray:
    """A ground-truth file as an HxW instance map (gt_instances); BadInput, one line naming the
    file, when it cannot be read or is refused."""
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise BadInput(f"{path}: refused as ground truth: JPEG is lossy, its edges are noise; save it as PNG")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise BadInput(f"{path}: not a readable ground-truth image")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV reads BGR(A); colours in RGB order
        arr = arr[..., [2, 1, 0, 3][:arr.shape[2]]]
    return gt_instances(arr, str(path))


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

    rho = spearman(score[scored], iou[scored])

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
        "score_iou_spearman": _num(rho),
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
    flag_cut = reasons.str.contains("cut_|touches_character")  # the flags of a cut body

    def mode(truth, flag=None):
        out = {"n": int(truth.sum()), "graded_d_or_e": int((truth & low).sum())}
        return out if flag is None else {**out, "flagged": int((truth & flag).sum())}

    single, whole = held == 1, (held == 1) & ~cut
    return ({"multi_character": mode(held >= 2, flag_multi), "cut_body": mode(cut, flag_cut),
             "no_character": mode(held == 0)},
            {"multi_character": _ratio((flag_multi & single).sum(), single.sum()),
             "truncated": _ratio((flag_cut & whole).sum(), whole.sum())})


def box_grade_summary(cutouts: list[dict], scores: dict[tuple[str, int], dict]) -> dict:
    """How the grade reads the cut-outs of pages with box ground truth: Spearman(score, target: the
    box IoU shared among the figures held, boxes.cutout_quality), AUROC for a clean single figure, lora_ok against "clean", and how many clean, merged (two
    figures or more) and figure-less cut-outs were graded D or E."""
    rows = [(c, scores[(c["image"], c["k"])]) for c in cutouts if (c["image"], c["k"]) in scores]
    if len(rows) < 3:
        return {"n": len(rows)}
    score = np.array([s["score"] for _, s in rows])
    iou = np.array([c["target"] for c, _ in rows])
    clean = np.array([c["clean"] for c, _ in rows])
    ok = np.array([bool(s["lora_ok"]) for _, s in rows])
    low = np.array([s["grade"] in ("D", "E") for _, s in rows])
    merged = np.array([c["holds"] >= 2 for c, _ in rows])
    none = np.array([c["false"] for c, _ in rows])
    rho = spearman(score, iou)
    return {"n": len(rows), "clean": int(clean.sum()),
            "score_box_spearman": _num(rho),
            "score_auroc_clean": auroc(score, clean), "lora_ok_count": int(ok.sum()),
            "lora_ok_precision": _ratio((ok & clean).sum(), ok.sum()), "lora_ok_recall": _ratio((ok & clean).sum(), clean.sum()),
            "clean_graded_d_or_e": int((clean & low).sum()), "merged": int(merged.sum()),
            "merged_graded_d_or_e": int((merged & low).sum()), "no_figure": int(none.sum()),
            "no_figure_graded_d_or_e": int((none & low).sum()), "framing": framing_agreement(rows)}


def framing_agreement(rows: list[tuple[dict, dict]]) -> dict:
    """The framing tag against the kind of the figure each cut-out is paired with: every guess
    (exact, and within one kind: `upper_body` for `portrait`) and the tags sure enough to be written."""
    pairs = [(KINDS.index(c["kind"]), s["layers"]["l2_content"])
             for c, s in rows if c.get("kind") and "framing_guess" in s.get("layers", {}).get("l2_content", {})]
    if not pairs:
        return {"n": 0}
    truth = np.array([t for t, _ in pairs])
    guess = np.array([KINDS.index(l2["framing_guess"]) for _, l2 in pairs])
    tagged = np.array([l2["framing"] is not None for _, l2 in pairs])
    return {"n": len(pairs), "exact": _ratio((guess == truth).sum(), len(pairs)),
            "within_one": _ratio((abs(guess - truth) <= 1).sum(), len(pairs)), "tagged": int(tagged.sum()),
            "tagged_exact": _ratio((tagged & (guess == truth)).sum(), tagged.sum())}


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

    Raises BadInput, one line naming the files, when either is unreadable, the ground truth is
    refused (gt_instances), or they differ in size.
    """
    pred, gt = read_label_png(labels_path), read_gt(gt_path)
    if pred.shape != gt.shape:
        raise BadInput(f"{labels_path} is {pred.shape[1]}x{pred.shape[0]} but {gt_path} is "
                       f"{gt.shape[1]}x{gt.shape[0]}")
    return pred, gt


def run_validate(extract_dir: Path, gt_dir: Path, scores_path: Path | None, params: ValidateParams,
                 metrics_path: Path, per_image_csv: Path, per_cutout_csv: Path, reviews_path: Path | None = None) -> dict:
    """Measure every `extract_dir/<stem>/labels.png` that has a `<stem>_gt.png` under gt_dir,
    and, by boxes (qc/boxes.py), every one that has a `<stem>_gt.json` instead: the metrics then
    hold a `boxes` section (also per ground-truth folder and per colour) and the per-page box
    counts go to `per_page_boxes.csv` beside the per-image CSV. Given the run's `reviews_path`,
    the metrics hold a `reviews` section: how many cut-outs people reviewed, and how often the
    grade agreed with them.

    Images without GT are skipped with a warning, GT without an extracted image too, and
    unreadable, refused (gt_instances) or mis-sized pairs with an error line; all go to
    stderr, one line each naming the file, and the run continues. The metrics count them:
    `missing_gt` (images without GT), `gt_without_image` (GT whose image has no labels.png:
    not extracted, or failed) and `gt_refused` (pairs that could not be measured). Writes the
    metrics JSON, the two CSVs and the grade table `grades.md` beside the metrics JSON,
    atomically, and returns the metrics dict.
    """
    extract_dir, gt_dir = Path(extract_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise ValidateError(f"{gt_dir}: no such ground-truth folder", code=2)
    gt_index = index_gt(gt_dir)
    box_index = {s: p for s, p in index_box_gt(gt_dir).items() if s not in gt_index}  # a mask wins over boxes
    scores = _read_scores(scores_path)

    labels_paths = sorted(extract_dir.glob("*/labels.png"))
    if not labels_paths:
        raise ValidateError(f"{extract_dir}: no <image>/labels.png to validate", code=2)
    image_rows, cutout_rows, missing_gt, refused = [], [], [], []
    for labels_path in labels_paths:
        stem = labels_path.parent.name
        gt_path = gt_index.get(stem)
        if gt_path is None and stem in box_index:
            continue  # measured by boxes below
        if gt_path is None:
            print(f"warning: {stem}: no {stem}_gt.png or _gt.json under {gt_dir}; skipped", file=sys.stderr)
            missing_gt.append(stem)
            continue
        try:
            pred, gt = read_pair(labels_path, gt_path)
        except BadInput as e:
            print(f"error: {e}; skipped", file=sys.stderr)
            refused.append(stem)
            continue
        m = page_metrics(pred, gt, params.iou_match)
        truth = cutout_truth(pred, gt, params)
        image_rows.append({"image": stem, **{c: m[c] for c in IMAGE_COLUMNS[1:]}})
        for k, iou in m["cutout_iou"].items():
            rec = scores.get((stem, k), {})
            cutout_rows.append({"image": stem, "k": k, "iou": iou, "score": rec.get("score"),
                                "grade": rec.get("grade"), "lora_ok": rec.get("lora_ok"),
                                "reasons": ";".join(rec.get("reasons", [])), **truth[k]})

    extracted = {p.parent.name for p in labels_paths}
    orphans = sorted((set(gt_index) | set(box_index)) - extracted)
    for stem in orphans[:ORPHANS_NAMED]:
        print(f"warning: {gt_index.get(stem) or box_index[stem]}: ground truth without an extracted image "
              f"({extract_dir}/{stem}/labels.png); not measured, counted in gt_without_image", file=sys.stderr)
    if len(orphans) > ORPHANS_NAMED:  # a partial run: the first few named, not hundreds of lines
        print(f"warning: {len(orphans) - ORPHANS_NAMED} more ground-truth files without an extracted image "
              f"under {extract_dir}; not measured, counted in gt_without_image", file=sys.stderr)
    boxes, box_cutouts = box_rows(extract_dir, box_index, gt_dir, params.iou_match, params.clean_iou,
                     lambda m: print(m, file=sys.stderr))
    refused += sorted(set(box_index) & extracted - {r["image"] for r in boxes})
    if not image_rows and not boxes:
        raise ValidateError(f"no image under {extract_dir} has usable ground truth under {gt_dir}")
    unscored = sum(row["score"] is None for row in cutout_rows)
    if scores and unscored:  # a stale or partial scores file would quietly skew score metrics
        print(f"warning: {scores_path}: {unscored} of {len(cutout_rows)} cut-out(s) have no score record",
              file=sys.stderr)
    per_image = pd.DataFrame(image_rows, columns=IMAGE_COLUMNS)
    per_cutout = pd.DataFrame(cutout_rows, columns=CUTOUT_COLUMNS).astype(
        {"k": int, "iou": float, "score": float, "lora_ok": "boolean"})

    metrics = summarize(per_image, per_cutout, params) if image_rows else {}
    metrics.update(missing_gt=len(missing_gt), gt_without_image=len(orphans), gt_refused=len(refused))
    if reviews_path is not None and Path(reviews_path).is_file():
        metrics["reviews"] = review_summary(latest(read_reviews(reviews_path)),
                                            lora_ok_by_sha(extract_dir, scores.values()))
    if boxes:
        metrics["boxes"] = box_summary(boxes)
        if scores:  # the grade against the boxes, overall and per ground-truth folder (artist)
            metrics["boxes"]["grade"] = box_grade_summary(box_cutouts, scores)
            for group, part in metrics["boxes"]["by_group"].items():
                part["grade"] = box_grade_summary([c for c in box_cutouts if c["group"] == group], scores)
        _to_csv(Path(per_image_csv).with_name("per_page_boxes.csv"), pd.DataFrame(boxes))
    _to_csv(per_image_csv, per_image)
    _to_csv(per_cutout_csv, per_cutout)
    write_json(metrics_path, metrics)
    if image_rows:
        write_text(Path(metrics_path).with_name("grades.md"), grades_markdown(metrics, params.good_iou))
    return metrics
