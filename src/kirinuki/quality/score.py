"""score: features -> hard-failure flags -> composite score 0..1 -> grade A-E, lora_ok, reasons.

Hard flags come first: a black or empty cut-out, more than one character, a body cut by
the page edge or a straight border, or a crop too small for training is never above D,
and the reason is stated with a stable identifier. The composite score is the fitted
model's predicted IoU (src/kirinuki/quality/score_weights.yaml, `kirinuki calibrate`); a flagged cut-out's
score is scaled into the D/E band, which keeps the order among flagged cut-outs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from kirinuki.quality import boosting
from kirinuki.core.config import ScoreModel, ScoreParams, load_score_model
from kirinuki.quality.features import SIDES, features
from kirinuki.core.imageio import BadImage, read_jsonl, read_label_png, read_rgba_png, write_jsonl

_SIDE_JA = {"left": "左", "top": "上", "right": "右", "bottom": "下"}
MESSAGES = {  # reason -> (English, Japanese)
    "empty": ("almost nothing opaque in the cut-out", "切り抜きがほぼ空"),
    "black": ("visible pixels are dark and flat (black screen)", "黒画面（暗く平坦）"),
    "multi_character": ("more than one character in the crop", "複数のキャラクターが入っている"),
    "touches_character": ("outline runs along another character: hidden or cut where they meet",
                          "他のキャラクターと接していて、体が隠れているか切れている"),
    "too_small": ("too small for the training resolution", "学習解像度に対して小さすぎる"),
    **{f"truncated_{s}": (f"body cut off at the {s} (page edge or a straight frame line)",
                          f"{_SIDE_JA[s]}側で体が切れている（ページ端・コマ枠）") for s in SIDES},
}
GRADES = ("A", "B", "C", "D", "E")  # best first; the one definition of the letters
QUALITY = {"A": ("high quality", "高品質"), "B": ("high quality", "高品質"), "C": ("medium quality", "中品質"),
           "D": ("low quality", "低品質"), "E": ("low quality", "低品質")}
QUALITY_JA = {g: ja for g, (_, ja) in QUALITY.items()}
FLAGGED_SHARE = 0.99  # a flagged score is scaled to at most this share of grade C's bound


class ScoreError(Exception):
    """Scoring cannot run; str() is a one-line reason."""


def flags(f: dict, params: ScoreParams) -> list[str]:
    """Hard failures of one cut-out's features, as stable identifiers."""
    out = []
    if f["opaque_share"] < params.min_opaque:
        out.append("empty")
    elif f["luma_mean"] < params.black_luma and f["luma_std"] < params.flat_contrast:
        out.append("black")
    if max(f["regions"], f["open_parts"], f["heads"]) > 1:
        out.append("multi_character")
    for side in SIDES:
        straight = params.min_cut_horizontal if side in ("top", "bottom") else params.min_cut_vertical
        if f[f"edge_{side}"] >= params.min_edge_run or f[f"cut_{side}"] >= straight:
            out.append(f"truncated_{side}")
    if f["neighbour_edge"] >= params.min_neighbour_edge:
        out.append("touches_character")
    if f["resolution"] < params.small_ratio:
        out.append("too_small")
    return out


def composite(rows: list[dict], model: ScoreModel) -> np.ndarray:
    """The model's predicted IoU (0..1) for each feature dict in rows."""
    if not rows:
        return np.zeros(0)
    X = np.array([[f[name] for name in model.features] for f in rows], dtype=float)
    return boosting.predict(model.base, model.learning_rate, model.trees, X, model.features)


def grade_of(score: float, params: ScoreParams) -> str:
    return next((g for g, low in params.grades.items() if score >= low), "E")


def grade(f: dict, predicted: float, params: ScoreParams) -> dict:
    """Flags, final score, grade and wording of one cut-out with features f and composite score."""
    reasons = flags(f, params)
    if {"empty", "black"} & set(reasons):
        score = 0.0
    elif reasons:  # never above D, in the same order as the composite
        score = predicted * FLAGGED_SHARE * params.grades["C"]
    else:
        score = predicted
    g = grade_of(score, params)
    return {"score": round(float(score), 4), "grade": g, "lora_ok": g in params.lora_ok_grades and not reasons,
            "reasons": reasons, "quality": QUALITY[g][0], "quality_ja": QUALITY[g][1],
            "messages": [MESSAGES[r][0] for r in reasons], "messages_ja": [MESSAGES[r][1] for r in reasons]}


def check_model(model: ScoreModel, f: dict) -> None:
    unknown = sorted(set(model.features) - set(f))
    if unknown:
        raise ScoreError(f"the score weights use feature(s) the scorer does not compute: {unknown}")


def cutout_features(extract_dir: Path, records: list[dict], params: ScoreParams,
                    log: Callable[[str], None]) -> tuple[list[dict], list[float]]:
    """(rows with image, k and features; seconds per cut-out) for the readable records."""
    rows, seconds, labels = [], [], {}
    for rec in records:
        page_dir = Path(extract_dir) / rec["image"]
        try:
            if rec["image"] not in labels:
                labels = {rec["image"]: read_label_png(page_dir / "labels.png")}  # records come page by page
            rgba = read_rgba_png(page_dir / f"char_{rec['k']}.png")
        except BadImage as e:
            log(str(e))
            continue
        start = time.perf_counter()
        page = labels[rec["image"]]
        f = features(rgba, page == rec["k"], rec["confidence"], params, labels=page)
        seconds.append(time.perf_counter() - start)
        rows.append({"image": rec["image"], "k": rec["k"], "features": f})
    return rows, seconds


def run_score(extract_dir: Path, params: ScoreParams, out: Optional[Path] = None, model: Optional[ScoreModel] = None,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[dict]:
    """Score every cut-out in `extract_dir/records.jsonl`; write the scores JSONL
    (default `extract_dir/scores.jsonl`) and return its rows. Logs the cost per cut-out.

    model: the fitted composite; None reads `params.weights_path` (ConfigError if bad).
    """
    extract_dir = Path(extract_dir)
    model = model or load_score_model(params.weights_path)
    rows, seconds = cutout_features(extract_dir, read_jsonl(extract_dir / "records.jsonl"), params, log)
    if rows:
        check_model(model, rows[0]["features"])
    start = time.perf_counter()
    predicted = composite([r["features"] for r in rows], model)
    scored = [{"image": r["image"], "k": r["k"], **grade(r["features"], p, params), "features": r["features"]}
              for r, p in zip(rows, predicted)]
    if rows:  # the model runs once over all cut-outs: its share is spread evenly
        each = (time.perf_counter() - start) / len(rows)
        ms = np.array(seconds) * 1000 + each * 1000
        log(f"scoring cost per cut-out: median {np.median(ms):.1f} ms, 95th percentile "
            f"{np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms ({len(ms)} cut-outs)")
    write_jsonl(Path(out) if out else extract_dir / "scores.jsonl", scored)
    return scored
