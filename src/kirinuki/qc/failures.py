"""Failure patterns of a run: its flagged and low-grade cut-outs grouped by what went wrong.

    find_patterns(scores, params)   score records -> patterns, outliers (pure, deterministic)
    write_failures(extract_dir, scores_path, out_dir, params)
        out_dir/failures.json       the result, with the map and thumbnail paths
        out_dir/map.png             t-SNE of all cut-outs, coloured by grade, patterns outlined
        out_dir/examples/<P>/<image>_<k>.png   example cut-outs of each pattern

The features of every cut-out are standardised over the whole run (so a z-score says how
unusual a cut-out is for this run). The failing ones (a grade in `params.grades`, or any
reason) are clustered with HDBSCAN: a pattern is a dense group of them; the rest is noise.
A pattern is named by the reasons at least half of its members carry, or, where none does,
by the two features its members deviate in most. IsolationForest over all cut-outs marks
the outliers, failing or not.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from kirinuki.core.config import FailuresParams
from kirinuki.core.imageio import BadInput, read_jsonl, read_rgba_png, write_json, write_png
from kirinuki.quality.score import GRADES, MESSAGES

MIN_MAP = 5  # fewer cut-outs: no t-SNE map
THUMB_PX = 128
DOMINANT = 0.5  # a reason in at least this share of a pattern's members names it
GRADE_RGB = {"A": (27, 127, 59), "B": (90, 158, 47), "C": (199, 160, 8), "D": (217, 102, 31), "E": (179, 38, 30)}


def _r4(x) -> float:
    return round(float(x), 4)


def member_id(rec: dict) -> str:
    return f"{rec['image']}/{rec['k']}"


def failing(rec: dict, params: FailuresParams) -> bool:
    return rec.get("grade") in params.grades or bool(rec.get("reasons"))


def feature_matrix(rows: list[dict]) -> tuple[list[str], np.ndarray]:
    """(feature names every row has, in name order; rows x features, float)."""
    if not rows:
        return [], np.zeros((0, 0))
    names = sorted(set.intersection(*(set(r["features"]) for r in rows)))
    X = np.array([[float(r["features"][n]) for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))
    return names, np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)


def standardise(X: np.ndarray) -> np.ndarray:
    """z-scores over the rows (StandardScaler; a constant feature is 0 everywhere)."""
    from sklearn.preprocessing import StandardScaler
    if X.size == 0:
        return X
    return StandardScaler().fit_transform(X)


def _feature_name(deviations: list[tuple[str, float]]) -> str:
    return ", ".join(f"{'high' if z > 0 else 'low'} {n}" for n, z in deviations)


def _feature_name_ja(deviations: list[tuple[str, float]]) -> str:
    return "、".join(f"{n}が{'高い' if z > 0 else '低い'}" for n, z in deviations)


def describe(recs: list[dict], Z: np.ndarray, names: list[str]) -> dict:
    """Dominant reasons, the features deviating most (mean z) and the name of one group."""
    counts = Counter(r for rec in recs for r in dict.fromkeys(rec.get("reasons", ())))
    share = {r: n / len(recs) for r, n in counts.items()}
    reasons = sorted((r for r in share if share[r] >= DOMINANT), key=lambda r: (-counts[r], r))
    mean = Z.mean(axis=0) if len(names) else np.zeros(0)
    order = sorted(range(len(names)), key=lambda i: (-abs(round(float(mean[i]), 6)), names[i]))
    deviations = [(names[i], _r4(mean[i])) for i in order[:3] if abs(mean[i]) > 1e-9]
    if reasons:
        name = " + ".join(reasons)
        name_ja = "・".join(MESSAGES[r][1] if r in MESSAGES else r for r in reasons)
    elif deviations:
        name, name_ja = _feature_name(deviations[:2]), _feature_name_ja(deviations[:2])
    else:
        name, name_ja = "no distinct feature", "目立つ特徴なし"
    return {"name": name, "name_ja": name_ja, "reasons": reasons,
            "reason_share": {r: _r4(share[r]) for r in sorted(share, key=lambda r: (-counts[r], r))},
            "features": [{"name": n, "z": z} for n, z in deviations]}


def nearest_medoid(Z: np.ndarray) -> np.ndarray:
    """Row indices of Z ordered by distance to its medoid (the medoid first; ties by row)."""
    d = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2))
    medoid = int(np.argmin(d.sum(axis=1)))
    return np.argsort(d[medoid], kind="stable")


def cluster(Z: np.ndarray, params: FailuresParams) -> np.ndarray:
    """HDBSCAN labels (-1: noise) of the rows of Z; all noise below min_cluster_size rows."""
    if len(Z) < params.min_cluster_size:
        return np.full(len(Z), -1)
    from sklearn.cluster import HDBSCAN
    return HDBSCAN(min_cluster_size=params.min_cluster_size, copy=True).fit_predict(Z)


def outliers(Z: np.ndarray, params: FailuresParams) -> tuple[np.ndarray, np.ndarray]:
    """(outlier mask, anomaly score: higher is stranger) of the rows of Z by IsolationForest."""
    if len(Z) < 2:
        return np.zeros(len(Z), bool), np.zeros(len(Z))
    from sklearn.ensemble import IsolationForest
    forest = IsolationForest(random_state=params.seed, contamination=params.contamination).fit(Z)
    return forest.predict(Z) == -1, -forest.score_samples(Z)


def standardised(scores: list[dict]) -> tuple[list[dict], list[str], np.ndarray]:
    """(the score records that have features, in (image, k) order; the feature names; their
    standardised feature matrix)."""
    rows = sorted((r for r in scores if isinstance(r.get("features"), dict)), key=lambda r: (str(r["image"]), r["k"]))
    names, X = feature_matrix(rows)
    return rows, names, standardise(X)


def find_patterns(scores: list[dict], params: FailuresParams) -> dict:
    """Score records (scores.jsonl rows, with `features`) -> the run's failure patterns.

    Returns {n, failing, features, patterns, noise, outliers, note}; each pattern: id (P1 the
    largest), name, name_ja, size, members ("image/k"), reasons (dominant, most frequent first),
    reason_share, features (the 3 largest mean z-scores), mean_score, grades (A..E counts),
    examples (up to params.examples members nearest the medoid). Deterministic for fixed params.
    """
    rows, names, Z = standardised(scores)
    fail = [i for i, r in enumerate(rows) if failing(r, params)]
    labels = cluster(Z[fail], params) if fail else np.zeros(0, int)
    groups = [[fail[j] for j in np.flatnonzero(labels == c)] for c in sorted(set(labels.tolist()) - {-1})]
    groups.sort(key=lambda g: (-len(g), member_id(rows[g[0]])))
    patterns, pattern_of = [], {}
    for n, g in enumerate(groups, 1):
        recs = [rows[i] for i in g]
        pid = f"P{n}"
        near = nearest_medoid(Z[g])
        pattern_of.update({member_id(r): pid for r in recs})
        patterns.append({"id": pid, **describe(recs, Z[g], names), "size": len(g),
                         "members": [member_id(r) for r in recs],
                         "mean_score": _r4(np.mean([float(r.get("score", 0.0)) for r in recs])),
                         "grades": {x: sum(r.get("grade") == x for r in recs) for x in GRADES},
                         "examples": [member_id(recs[i]) for i in near[:params.examples]]})
    flagged, anomaly = outliers(Z, params)
    out = sorted((i for i in np.flatnonzero(flagged)), key=lambda i: (-round(float(anomaly[i]), 6), member_id(rows[i])))
    note = None
    if len(fail) < params.min_cluster_size:
        note = (f"{len(fail)} failing cut-out(s), fewer than min_cluster_size {params.min_cluster_size}: "
                "no pattern")
    return {"n": len(rows), "failing": len(fail), "features": names,
            "grades": list(params.grades), "min_cluster_size": params.min_cluster_size,
            "patterns": patterns, "noise": int((labels == -1).sum()),
            "outliers": [{"member": member_id(rows[i]), "anomaly": _r4(anomaly[i]), "grade": rows[i].get("grade"),
                          "reasons": list(rows[i].get("reasons", ())), "pattern": pattern_of.get(member_id(rows[i]))}
                         for i in out],
            "note": note}


# --- the map ---------------------------------------------------------------------------------

def embed(Z: np.ndarray, params: FailuresParams) -> np.ndarray:
    """t-SNE 2-D of the rows of Z (one thread, so the same input gives the same map)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=min(params.perplexity, len(Z) - 1), random_state=params.seed,
                    init="pca").fit_transform(Z)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color, thick: int = 1) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def draw_map(xy: np.ndarray, grades: list[str], pattern: list[Optional[str]], outlier: list[bool],
             px: int) -> np.ndarray:
    """px x px RGB picture of the 2-D points: a disc per cut-out coloured by grade, a dark ring
    round pattern members, the pattern id at its members' centre, an x on each outlier, and a
    legend along the top."""
    img = np.full((px, px, 3), 255, np.uint8)
    s = px / 640
    font = 0.45 * s
    legend_h = max(18, round(30 * s))
    r = max(2, round(5 * s))
    pad = r + max(6, round(16 * s))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(max(hi - lo)) or 1.0
    area = px - 2 * pad
    top = legend_h + pad
    size = min(area, px - top - pad)
    centre = (lo + hi) / 2
    pts = np.round((xy - centre) / span * size + [px / 2, top + size / 2]).astype(int)
    order = sorted(range(len(xy)), key=lambda i: (GRADES.index(grades[i]) if grades[i] in GRADES else 5, i))
    for i in order:  # worse grades on top
        p = (int(pts[i, 0]), int(pts[i, 1]))
        if pattern[i]:
            cv2.circle(img, p, r + 2, (40, 40, 40), -1, cv2.LINE_AA)
        cv2.circle(img, p, r, GRADE_RGB.get(grades[i], (128, 128, 128)), -1, cv2.LINE_AA)
    for i in order:
        if outlier[i]:
            x, y, d = int(pts[i, 0]), int(pts[i, 1]), r + 2
            cv2.line(img, (x - d, y - d), (x + d, y + d), (0, 0, 0), 1, cv2.LINE_AA)
            cv2.line(img, (x - d, y + d), (x + d, y - d), (0, 0, 0), 1, cv2.LINE_AA)
    for pid in sorted({p for p in pattern if p}, key=lambda p: int(p[1:])):
        idx = [i for i, p in enumerate(pattern) if p == pid]
        cx, cy = pts[idx].mean(axis=0)
        (w, h), _ = cv2.getTextSize(pid, cv2.FONT_HERSHEY_SIMPLEX, font * 1.3, max(1, round(s * 1.5)))
        _text(img, pid, (int(round(cx - w / 2)), int(round(cy + h / 2))), font * 1.3, (0, 0, 0), max(1, round(s * 1.5)))
    # legend
    cv2.rectangle(img, (0, 0), (px - 1, legend_h), (244, 244, 246), -1)
    x, y = round(8 * s), legend_h // 2
    for g in GRADES:
        n = sum(v == g for v in grades)
        cv2.circle(img, (x + r, y), r, GRADE_RGB[g], -1, cv2.LINE_AA)
        label = f"{g} {n}"
        _text(img, label, (x + 2 * r + 4, y + round(5 * s)), font, (30, 30, 30))
        x += 2 * r + 10 + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0]
    cv2.circle(img, (x + r + 2, y), r + 2, (40, 40, 40), -1, cv2.LINE_AA)
    cv2.circle(img, (x + r + 2, y), r, (255, 255, 255), -1, cv2.LINE_AA)
    _text(img, "pattern", (x + 2 * r + 8, y + round(5 * s)), font, (30, 30, 30))
    x += 2 * r + 14 + cv2.getTextSize("pattern", cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0]
    d = r + 2
    cv2.line(img, (x, y - d), (x + 2 * d, y + d), (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, (x, y + d), (x + 2 * d, y - d), (0, 0, 0), 1, cv2.LINE_AA)
    _text(img, "outlier", (x + 2 * d + 4, y + round(5 * s)), font, (30, 30, 30))
    return img


# --- thumbnails ------------------------------------------------------------------------------

def checker(h: int, w: int, cell: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    light = ((yy // cell + xx // cell) % 2).astype(bool)
    out = np.full((h, w, 3), 255, np.uint8)
    out[light] = 232
    return out


def thumbnail(rgba: np.ndarray, longest: int = THUMB_PX) -> np.ndarray:
    """The cut-out scaled so its longer side is `longest`, on a light checker (RGB)."""
    h, w = rgba.shape[:2]
    f = longest / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    a = small[..., 3:4].astype(np.float32) / 255
    bg = checker(small.shape[0], small.shape[1]).astype(np.float32)
    return np.round(small[..., :3] * a + bg * (1 - a)).astype(np.uint8)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


# --- I/O edge --------------------------------------------------------------------------------

def write_failures(extract_dir: Path, scores_path: Path, out_dir: Path, params: FailuresParams) -> dict:
    """find_patterns over `scores_path`, then out_dir/failures.json (written last), map.png and
    examples/<pattern>/<image>_<k>.png (from extract_dir/<image>/char_<k>.png); returns the JSON.

    Each pattern gains `thumbs` (paths relative to out_dir, aligned with `examples`; None where the
    cut-out file is missing); `map` says where the map is, or why there is none.
    """
    extract_dir, out_dir = Path(extract_dir), Path(out_dir)
    scores = read_jsonl(Path(scores_path))
    result = find_patterns(scores, params)
    if (out_dir / "examples").is_dir():
        shutil.rmtree(out_dir / "examples")
    for p in result["patterns"]:
        thumbs = []
        for m in p["examples"]:
            image, k = m.rsplit("/", 1)
            rel = f"examples/{p['id']}/{_safe(image)}_{k}.png"
            try:
                write_png(out_dir / rel, thumbnail(read_rgba_png(extract_dir / image / f"char_{k}.png")))
                thumbs.append(rel)
            except (BadInput, OSError):
                thumbs.append(None)
        p["thumbs"] = thumbs
    rows, _, Z = standardised(scores)
    if len(rows) < MIN_MAP:
        (out_dir / "map.png").unlink(missing_ok=True)
        result["map"] = {"file": None, "reason": f"{len(rows)} cut-out(s): a t-SNE map needs at least {MIN_MAP}"}
    else:
        xy = embed(Z, params)
        pattern_of = {m: p["id"] for p in result["patterns"] for m in p["members"]}
        odd = {o["member"] for o in result["outliers"]}
        ids = [member_id(r) for r in rows]
        write_png(out_dir / "map.png", draw_map(xy, [r.get("grade") for r in rows], [pattern_of.get(m) for m in ids],
                                                [m in odd for m in ids], params.map_px))
        result["map"] = {"file": "map.png", "perplexity": float(min(params.perplexity, len(rows) - 1)),
                         "seed": params.seed}
    write_json(out_dir / "failures.json", result)
    return result
