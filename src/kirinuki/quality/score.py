"""score: features -> three layers per cut-out -> score 0..1, grade A-E, lora_ok, reasons.

- L1 extraction quality: the fitted model's predicted IoU (quality/score_weights.yaml,
  `kirinuki calibrate`); the grade is its band. An extraction fault (two characters in one
  cut-out, a cut-out across a panel border, a straight cut through the body inside its panel, an
  outline along another character) caps it at D, scaled into the D/E band so the order holds.
- L2 content checks: black or empty (score 0, E), how many heads, which sides its own frame
  (the page, or the comic panel it was found in) cuts (a figure cut there has that framing and no
  fault), and the framing tagger's kind (quality/framing.py), written as the tag only where sure.
- L3 LoRA suitability (`lora_ok`): grade in `lora_ok_grades`, no fault, not black or empty,
  and a short side of at least `small_ratio` x `train_resolution`.
Reasons are stable identifiers; `reasons` lists the flags that keep a cut-out from lora_ok, and
`layers.l3_lora.blocked_by` adds a grade outside `lora_ok_grades` as `grade_<X>`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import cv2
import numpy as np

from kirinuki.quality import boosting
from kirinuki.core.config import ConfigError, ScoreModel, ScoreParams, load_score_model
from kirinuki.quality.features import SIDES, features
from kirinuki.core.imageio import BadInput, read_jsonl, read_label_png, read_rgba_png, write_jsonl

_SIDE_JA = {"left": "左", "top": "上", "right": "右", "bottom": "下"}
MESSAGES = {  # reason -> (English, Japanese)
    "empty": ("almost nothing opaque in the cut-out", "切り抜きがほぼ空"),
    "black": ("visible pixels are dark and flat (black screen)", "黒画面（暗く平坦）"),
    "multi_character": ("more than one character in the crop", "複数のキャラクターが入っている"),
    "touches_character": ("outline runs along another character: hidden or cut where they meet",
                          "他のキャラクターと接していて、体が隠れているか切れている"),
    "too_small": ("too small for the training resolution", "学習解像度に対して小さすぎる"),
    "spans_panels": ("the cut-out crosses a panel border (figures of two panels merged)",
                     "コマ枠をまたいでいる（複数のコマのキャラクターが結合）"),
    **{f"cut_{s}": (f"body cut off at the {s} by a straight line inside its panel or page (the extractor cut it)",
                    f"{_SIDE_JA[s]}側で体が直線で切れている（切り抜きの失敗）") for s in SIDES},
}
FAULTS = ("multi_character", "spans_panels", "touches_character", *(f"cut_{s}" for s in SIDES))  # L1: capped at D
CONTENT = ("empty", "black")  # L2: score 0, grade E
GRADES = ("A", "B", "C", "D", "E")  # best first; the one definition of the letters
QUALITY = {"A": ("high quality", "高品質"), "B": ("high quality", "高品質"), "C": ("medium quality", "中品質"),
           "D": ("low quality", "低品質"), "E": ("low quality", "低品質")}
QUALITY_JA = {g: ja for g, (_, ja) in QUALITY.items()}
FLAGGED_SHARE = 0.99  # a flagged score is scaled to at most this share of grade C's bound


class ScoreError(Exception):
    """Scoring cannot run; str() is a one-line reason."""


def frame_sides(f: dict, params: ScoreParams) -> list[str]:
    """The sides where the figure runs along its frame (its panel or the page): its framing, not a fault."""
    return [side for side in SIDES if f[f"edge_{side}"] >= params.min_edge_run]


def flags(f: dict, params: ScoreParams) -> list[str]:
    """What keeps one cut-out from lora_ok, as stable identifiers: content (CONTENT), extraction
    faults (FAULTS) and `too_small`."""
    out = []
    if f["opaque_share"] < params.min_opaque:
        out.append("empty")
    elif f["luma_mean"] < params.black_luma and f["luma_std"] < params.flat_contrast:
        out.append("black")
    if max(f["regions"], f["open_parts"], f["heads"]) > 1:
        out.append("multi_character")
    if f.get("panels", 1) > 1:  # extraction's count of the comic panels it spans
        out.append("spans_panels")
    framed = frame_sides(f, params)
    for side in SIDES:  # a straight end inside the frame; along the frame it is the framing
        straight = params.min_cut_horizontal if side in ("top", "bottom") else params.min_cut_vertical
        if side not in framed and f[f"cut_{side}"] >= straight:
            out.append(f"cut_{side}")
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


def grade(f: dict, predicted: float, params: ScoreParams, framing: Optional[tuple[str, float]] = None) -> dict:
    """The three layers, final score, grade and wording of one cut-out with features f, composite
    score `predicted` and the framing tagger's (kind, confidence), where it ran."""
    reasons = flags(f, params)
    content = [r for r in reasons if r in CONTENT]
    faults = [r for r in reasons if r in FAULTS]
    if content:
        score = 0.0
    elif faults:  # never above D, in the same order as the composite
        score = predicted * FLAGGED_SHARE * params.grades["C"]
    else:
        score = predicted
    g = grade_of(score, params)
    ok = g in params.lora_ok_grades and not reasons
    # a framing tag where there is one figure to frame and the tagger is sure enough
    tag = (framing[0] if framing and framing[1] >= params.framing_min_confidence
           and not content and "multi_character" not in reasons else None)
    layers = {"l1_extraction": {"predicted_iou": round(float(predicted), 4), "grade": g, "faults": faults},
              "l2_content": {"black": "black" in content, "empty": "empty" in content, "heads": int(f["heads"]),
                             "frame_sides": frame_sides(f, params),
                             **({"framing": tag, "framing_guess": framing[0], "framing_confidence": framing[1]}
                                if framing else {})},
              "l3_lora": {"ok": ok, "blocked_by": reasons + ([] if g in params.lora_ok_grades else [f"grade_{g}"])}}
    return {"score": round(float(score), 4), "grade": g, "lora_ok": ok, "reasons": reasons, "framing": tag, "layers": layers,
            "quality": QUALITY[g][0], "quality_ja": QUALITY[g][1],
            "messages": [MESSAGES[r][0] for r in reasons], "messages_ja": [MESSAGES[r][1] for r in reasons]}


def cutout_features(extract_dir: Path, records: list[dict], params: ScoreParams,
                    log: Callable[[str], None], tagger: Optional[Callable[[np.ndarray], tuple[str, float]]] = None) -> tuple[list[dict], list[float]]:
    """(rows with image, k, features and, with a tagger, framing; seconds per cut-out) for the readable records."""
    rows, seconds, labels = [], [], {}
    for rec in records:
        page_dir = Path(extract_dir) / rec["image"]
        try:
            if rec["image"] not in labels:
                labels = {rec["image"]: read_label_png(page_dir / "labels.png")}  # records come page by page
            rgba = read_rgba_png(page_dir / f"char_{rec['k']}.png")
        except BadInput as e:
            log(str(e))
            continue
        start = time.perf_counter()
        page = labels[rec["image"]]
        f = features(rgba, page == rec["k"], rec["confidence"], params, labels=page, frame=rec.get("frame"))
        f["panels"] = int(rec.get("panels", 1))  # from extraction, which sees the page
        framing = {"framing": tagger(rgba)} if tagger else {}
        seconds.append(time.perf_counter() - start)
        rows.append({"image": rec["image"], "k": rec["k"], "features": f, **framing})
    return rows, seconds


def scorer_features() -> set[str]:
    """The names of the features the scorer computes for every cut-out: those of a small disc (no
    name depends on the cut-out), and `panels`, which extraction counts."""
    disc = np.zeros((32, 32), np.uint8)
    cv2.circle(disc, (16, 16), 10, 255, -1)
    return set(features(np.dstack([disc] * 4), disc > 0, 1.0, ScoreParams())) | {"panels"}


def unknown_features(names: list[str]) -> list[str]:
    """The names among `names` (of score weights or calibrate.features) the scorer does not compute."""
    return sorted(set(names) - scorer_features())


def _weights_message(unknown: list[str]) -> str:
    return f"the score weights use feature(s) the scorer does not compute: {unknown}"


def check_scorer(params: ScoreParams) -> None:
    """ConfigError naming the file where the score weights or the framing tagger cannot be loaded, or
    the weights use a feature the scorer does not compute: what a tracker run checks before it spends
    minutes extracting pages it could not score."""
    if unknown := unknown_features(load_score_model(params.weights_path).features):
        raise ConfigError(f"{params.weights_path}: {_weights_message(unknown)}")
    from kirinuki.quality.framing import FramingTagger  # onnxruntime: only where cut-outs are scored
    FramingTagger(params.framing_path)


def stale_extractors(model: ScoreModel, records: list[dict]) -> list[str]:
    """The extractors (records' params hash) that made these cut-outs but not the weights' own
    fit; [] where the weights do not say which extractor they were fitted on."""
    fitted = set(model.provenance.get("extractor") or [])
    return sorted({str(r.get("params_hash")) for r in records} - fitted) if fitted else []


class Scored(NamedTuple):
    rows: list[dict]  # the scores JSONL's rows
    unreadable: int  # cut-outs (records) that could not be read, each logged: not scored


def run_score(extract_dir: Path, params: ScoreParams, out: Path, model: Optional[ScoreModel] = None,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Scored:
    """Score every cut-out in `extract_dir/records.jsonl`; write the scores JSONL `out` and return
    its rows and how many records could not be read. Logs the cost per cut-out.

    model: the fitted composite; None reads `params.weights_path` (ConfigError if bad).
    """
    extract_dir = Path(extract_dir)
    model = model or load_score_model(params.weights_path)
    records = read_jsonl(extract_dir / "records.jsonl")
    if stale := stale_extractors(model, records):
        log(f"warning: the score weights were fitted on cut-outs of another extractor (params hash "
            f"{', '.join(model.provenance['extractor'])}); these come from {', '.join(stale)}: grades may not "
            "hold. Refit them with `kirinuki calibrate` on pages with ground truth")
    from kirinuki.quality.framing import FramingTagger  # onnxruntime: only where cut-outs are scored

    if unknown := unknown_features(model.features):
        raise ScoreError(_weights_message(unknown))
    rows, seconds = cutout_features(extract_dir, records, params, log, FramingTagger(params.framing_path))
    start = time.perf_counter()
    predicted = composite([r["features"] for r in rows], model)
    scored = [{"image": r["image"], "k": r["k"], **grade(r["features"], p, params, r["framing"]), "features": r["features"]}
              for r, p in zip(rows, predicted)]
    if rows:  # the model runs once over all cut-outs: its share is spread evenly
        each = (time.perf_counter() - start) / len(rows)
        ms = np.array(seconds) * 1000 + each * 1000
        log(f"scoring cost per cut-out: median {np.median(ms):.1f} ms, 95th percentile "
            f"{np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms ({len(ms)} cut-outs)")
    write_jsonl(out, scored)
    return Scored(scored, len(records) - len(scored))
