"""score: features and hard-failure flags per cut-out -> score 0..1, grade A-E, lora_ok, reasons.

A hard flag (black/empty, more than one character region, body cut by the page edge,
too small) caps the grade at D whatever the rest says; black and empty go to E.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .config import ScoreParams
from .imageio import BadImage, read_jsonl, read_label_png, read_rgba_png, write_jsonl

SIDES = ("left", "top", "right", "bottom")
MESSAGES = {
    "empty": ("almost nothing opaque in the cut-out", "切り抜きがほぼ空"),
    "black": ("visible pixels are dark and flat (black screen)", "黒画面"),
    "multi_character": ("more than one separate figure in the crop", "複数キャラクター"),
    "too_small": ("too small for the training resolution", "解像度不足"),
    **{f"truncated_{s}": (f"body cut by the {s} edge of the page", f"{s}端で体が切れている") for s in SIDES},
}
QUALITY_JA = {"A": "高品質", "B": "高品質", "C": "中品質", "D": "低品質", "E": "低品質"}


def features(rgba: np.ndarray, page_mask: np.ndarray, confidence: float, params: ScoreParams) -> dict:
    """rgba: hxwx4 uint8 cut-out; page_mask: HxW bool of this character on its page."""
    alpha = rgba[..., 3] > 127
    opaque = float(alpha.mean()) if alpha.size else 0.0
    visible = rgba[..., :3][alpha].astype(np.float32) / 255.0
    luma = visible @ np.float32([0.299, 0.587, 0.114]) if len(visible) else np.zeros(1, np.float32)
    f = {"opaque_share": round(opaque, 4), "area_share": round(float(page_mask.mean()), 4),
         "luma_mean": round(float(luma.mean()), 4), "luma_std": round(float(luma.std()), 4),
         "confidence": round(confidence, 4)}

    n, _, stats, _ = cv2.connectedComponentsWithStats(alpha.astype(np.uint8), connectivity=8)
    areas = sorted(stats[1:, cv2.CC_STAT_AREA], reverse=True)
    f["secondary_share"] = round(float(areas[1] / areas[0]), 4) if len(areas) > 1 else 0.0
    f["regions"] = int(sum(a >= params.secondary_region * areas[0] for a in areas)) if areas else 0

    # run of the mask along each page edge, relative to the character's extent along that edge
    ys, xs = np.nonzero(page_mask)
    if len(xs):
        width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        runs = {"left": page_mask[:, 0].sum() / height, "top": page_mask[0].sum() / width,
                "right": page_mask[:, -1].sum() / height, "bottom": page_mask[-1].sum() / width}
    else:
        runs = dict.fromkeys(SIDES, 0.0)
    f.update({f"edge_{s}": round(float(runs[s]), 4) for s in SIDES})

    h, w = alpha.shape
    f["short_side"] = int(min(h, w))
    f["resolution"] = round(min(1.0, min(h, w) / params.train_resolution), 4)
    contours, _ = cv2.findContours(alpha.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if contours:
        main = max(contours, key=cv2.contourArea)
        hull = cv2.convexHull(main)
        area, hull_area = cv2.contourArea(main), cv2.contourArea(hull)
        perim, hull_perim = cv2.arcLength(main, True), cv2.arcLength(hull, True)
        f["solidity"] = round(float(area / hull_area), 4) if hull_area else 0.0
        f["smoothness"] = round(float(hull_perim / perim), 4) if perim else 0.0  # 1 = convex outline
    else:
        f["solidity"] = f["smoothness"] = 0.0
    return f


def flags(f: dict, params: ScoreParams) -> list[str]:
    """Hard failures as stable identifiers."""
    out = []
    if f["opaque_share"] < params.min_opaque:
        out.append("empty")
    elif f["luma_mean"] < params.black_luma and f["luma_std"] < params.flat_contrast:
        out.append("black")
    if f["regions"] > 1:
        out.append("multi_character")
    out += [f"truncated_{s}" for s in SIDES if f[f"edge_{s}"] >= params.min_edge_run]
    if f["resolution"] < params.small_ratio:
        out.append("too_small")
    return out


def grade_of(score: float, params: ScoreParams) -> str:
    return next((g for g, low in params.grades.items() if score >= low), "E")


def grade(f: dict, params: ScoreParams) -> dict:
    reasons = flags(f, params)
    total = sum(params.weights.values())
    score = sum(w * f[name] for name, w in params.weights.items()) / total if total else 0.0
    if {"empty", "black"} & set(reasons):
        score = 0.0
    elif reasons:  # never above D
        score = min(score, params.grades["C"] - 0.01)
    g = grade_of(score, params)
    return {"score": round(score, 4), "grade": g, "lora_ok": g in params.lora_ok_grades and not reasons,
            "reasons": reasons, "quality_ja": QUALITY_JA[g],
            "messages": [MESSAGES[r][0] for r in reasons], "messages_ja": [MESSAGES[r][1] for r in reasons]}


def run_score(extract_dir: Path, params: ScoreParams, out: Optional[Path] = None) -> list[dict]:
    """Score every cut-out listed in `extract_dir/records.jsonl`; write scores JSONL."""
    extract_dir = Path(extract_dir)
    records = read_jsonl(extract_dir / "records.jsonl")
    rows, labels_cache = [], {}
    for rec in records:
        page_dir = extract_dir / rec["image"]
        try:
            if rec["image"] not in labels_cache:
                labels_cache.clear()  # records come page by page: keep one label map in memory
                labels_cache[rec["image"]] = read_label_png(page_dir / "labels.png")
            rgba = read_rgba_png(page_dir / f"char_{rec['k']}.png")
        except BadImage as e:
            print(e, file=sys.stderr)
            continue
        f = features(rgba, labels_cache[rec["image"]] == rec["k"], rec["confidence"], params)
        rows.append({"image": rec["image"], "k": rec["k"], **grade(f, params), "features": f})
    write_jsonl(Path(out) if out else extract_dir / "scores.jsonl", rows)
    return rows
