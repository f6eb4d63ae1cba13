"""Box ground truth of real pages: each cut-out's box against each figure's box.

Real pages cannot be masked well by hand, so their ground truth is one box per visible figure
(`<stem>_gt.json`, optional head point and framing kind; see DESIGN.md). A page is measured by:

- figure recall / precision: figures and cut-outs paired one to one (Hungarian) at box IoU >=
  `iou_match`;
- clean and alone: a figure with exactly one cut-out of its own, at box IoU >= `clean_iou`, and no
  other figure in that cut-out;
- merged: a cut-out holding two or more figures (a figure is in a cut-out when its head point lies
  on the cut-out's mask, or, without a head, when most of its box lies in the cut-out's box);
- split: a figure whose body went into two or more cut-outs (each mostly inside the figure's box
  and holding a fair share of it);
- false: a cut-out that lies mostly outside every figure and holds no head (text, bubbles, props);
- why a figure was missed (not matched): `in_merged` (a cut-out holding it holds other figures too),
  `partial` (a cut-out holds it alone, but its box is too far off), `no_cutout` (no cut-out holds it:
  the segmenter never marked it, or its region was dropped).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from kirinuki.core.config import ValidateParams
from kirinuki.core.framing import KINDS
from kirinuki.core.imageio import BadInput, read_json, read_label_png


class BoxGTError(ValueError):
    """A box ground-truth file that cannot be used; str() names the file and why."""


@dataclass(frozen=True)
class Figure:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    head: Optional[tuple[float, float]] = None
    kind: Optional[str] = None


def read_box_gt(path: Path, size: Optional[tuple[int, int]] = None) -> list[Figure]:
    """Figures of a `<stem>_gt.json`; `size` (width, height) checks the boxes lie on the image."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        figures = raw["figures"]
        if not isinstance(figures, list):
            raise TypeError("'figures' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BoxGTError(f"{path}: not box ground truth ({type(e).__name__}: {e})") from None
    out = []
    for i, f in enumerate(figures, 1):
        try:
            x0, y0, x1, y1 = (float(v) for v in f["box"])
            head = tuple(float(v) for v in f["head"]) if f.get("head") is not None else None
            if head is not None and len(head) != 2:
                raise ValueError("head is not [x, y]")
        except (KeyError, TypeError, ValueError) as e:
            raise BoxGTError(f"{path}: figure {i}: {e}") from None
        if not (x1 > x0 and y1 > y0):
            raise BoxGTError(f"{path}: figure {i}: box {f['box']} is empty (need x0 < x1, y0 < y1)")
        if size is not None and (x0 < -1 or y0 < -1 or x1 > size[0] + 1 or y1 > size[1] + 1):
            raise BoxGTError(f"{path}: figure {i}: box {f['box']} lies outside the {size[0]}x{size[1]} image")
        if f.get("kind") is not None and f["kind"] not in KINDS:
            raise BoxGTError(f"{path}: figure {i}: kind {f['kind']!r} is not one of {', '.join(KINDS)}")
        out.append(Figure((x0, y0, x1, y1), head, f.get("kind")))
    return out


MISSED = ("in_merged", "partial", "no_cutout")  # why a figure was not matched, see the docstring


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inter(a, b) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def box_iou(a, b) -> float:
    i = _inter(a, b)
    return i / (_area(a) + _area(b) - i) if i > 0 else 0.0


def _head_on_mask(head, labels: np.ndarray, k: int, radius: int) -> bool:
    """Whether any pixel of cut-out k lies within `radius` of the head point."""
    x, y = int(round(head[0])), int(round(head[1]))
    h, w = labels.shape
    y0, y1, x0, x1 = max(0, y - radius), min(h, y + radius + 1), max(0, x - radius), min(w, x + radius + 1)
    return y0 < y1 and x0 < x1 and bool((labels[y0:y1, x0:x1] == k).any())


def page_box_metrics(labels: np.ndarray, figures: list[Figure], iou_match: float = ValidateParams().iou_match,
                     clean_iou: float = ValidateParams().clean_iou, head_radius: float = 0.01) -> dict:
    """HxW instance label map (k = cut-out k) against the page's figures -> counts and, per
    figure and per cut-out, what happened to it. `head_radius`: share of the page diagonal
    within which a mask pixel counts as on the head."""
    ks = [int(k) for k in np.unique(labels) if k]
    found = ndimage.find_objects(labels)  # one pass for every cut-out's box
    boxes = {k: (float(found[k - 1][1].start), float(found[k - 1][0].start),
                 float(found[k - 1][1].stop), float(found[k - 1][0].stop)) for k in ks}
    radius = max(1, int(round(head_radius * float(np.hypot(*labels.shape)))))
    nf, nc = len(figures), len(ks)
    iou = np.array([[box_iou(f.box, boxes[k]) for k in ks] for f in figures]).reshape(nf, nc)

    # which figures each cut-out holds
    holds = np.zeros((nf, nc), bool)
    for j, k in enumerate(ks):
        for i, f in enumerate(figures):
            if f.head is not None:
                holds[i, j] = _head_on_mask(f.head, labels, k, radius)
            else:
                holds[i, j] = _inter(f.box, boxes[k]) >= 0.5 * _area(f.box)
    # cut-outs that are a piece of a figure: mostly inside its box, holding a fair share of it
    piece = np.zeros((nf, nc), bool)
    for i, f in enumerate(figures):
        for j, k in enumerate(ks):
            inter = _inter(f.box, boxes[k])
            piece[i, j] = inter >= 0.5 * _area(boxes[k]) and inter >= 0.2 * _area(f.box)

    matched_f, matched_c = np.zeros(nf, bool), np.zeros(nc, bool)
    pair = {}
    if nf and nc:
        rows, cols = linear_sum_assignment(-iou)
        for i, j in zip(rows, cols):
            if iou[i, j] >= iou_match:
                matched_f[i] = matched_c[j] = True
                pair[i] = j
    merged_c = holds.sum(0) >= 2
    split_f = (piece | holds).sum(1) >= 2
    false_c = ~holds.any(0) & np.array([max((_inter(f.box, boxes[k]) for f in figures), default=0.0)
                                         < 0.5 * _area(boxes[k]) for k in ks], bool)
    in_merged = holds[:, merged_c].any(1)
    missed_as = np.where(matched_f, "", np.where(in_merged, "in_merged",
                                                  np.where(holds.any(1), "partial", "no_cutout")))
    clean_f = np.zeros(nf, bool)
    for i, j in pair.items():
        others = np.delete(holds[:, j], i)
        clean_f[i] = iou[i, j] >= clean_iou and not others.any() and not split_f[i]
    return {
        "n_figures": nf, "n_cutouts": nc, "matched": int(matched_f.sum()), "clean": int(clean_f.sum()),
        "merged_cutouts": int(merged_c.sum()), "figures_in_merged": int(in_merged.sum()),
        "split_figures": int(split_f.sum()), "false_cutouts": int(false_c.sum()),
        **{f"missed_{why}": int((missed_as == why).sum()) for why in MISSED},
        "figures": [{"i": i + 1, "kind": f.kind, "matched": bool(matched_f[i]), "clean": bool(clean_f[i]),
                     "split": bool(split_f[i]), "missed": str(missed_as[i]) or None,
                     "cutout": ks[pair[i]] if i in pair else None,
                     "box_iou": round(float(iou[i, pair[i]]), 4) if i in pair else None}
                    for i, f in enumerate(figures)],
        "cutouts": {k: {"matched": bool(matched_c[j]), "merged": bool(merged_c[j]), "false": bool(false_c[j]),
                        "holds": int(holds[:, j].sum())} for j, k in enumerate(ks)},
    }


def cutout_quality(m: dict) -> dict[int, dict]:
    """Per cut-out k of page_box_metrics' result: `box_iou` with the figure it is paired with (0:
    none), `target` = that box IoU shared among the figures it holds (as a mask IoU falls when a
    cut-out holds two; what the score is fitted to and measured against), `clean` (its figure is
    cut out cleanly and it holds no other), `holds`, `false` and `kind` (the paired figure's framing)."""
    paired = {f["cutout"]: f for f in m["figures"] if f["cutout"] is not None}
    out = {}
    for k, c in m["cutouts"].items():
        f = paired.get(k)
        iou = f["box_iou"] if f else 0.0
        out[k] = {"box_iou": iou, "target": round(iou / max(1, c["holds"]), 4),
                  "clean": bool(f and f["clean"] and c["holds"] == 1), "holds": c["holds"], "false": c["false"],
                  "kind": f["kind"] if f else None}
    return out


def summarize_boxes(pages: list[dict]) -> dict:
    """Corpus figures from page_box_metrics results (each with an "image" key)."""
    total = {k: sum(p[k] for p in pages) for k in ("n_figures", "n_cutouts", "matched", "clean",
                                                     "merged_cutouts", "split_figures", "false_cutouts",
                                                     *(f"missed_{why}" for why in MISSED))}
    nf, nc, n = total["n_figures"], total["n_cutouts"], len(pages)

    def ratio(a, b):
        return round(a / b, 4) if b else None
    return {"n_pages": n, **total,
            "figure_recall": ratio(total["matched"], nf), "figure_precision": ratio(total["matched"], nc),
            "clean_rate": ratio(total["clean"], nf), "merged_rate": ratio(total["merged_cutouts"], nf),
            "split_rate": ratio(total["split_figures"], nf),
            "false_cutouts_per_page": ratio(total["false_cutouts"], n),
            "missed_rate": ratio(nf - total["matched"], nf),
            **{f"missed_{why}_rate": ratio(total[f"missed_{why}"], nf) for why in MISSED}}


def box_rows(extract_dir: Path, gt_index: dict[str, Path], gt_root: Path, iou_match: float, clean_iou: float,
             log) -> tuple[list[dict], list[dict]]:
    """(one row per extracted page that has box ground truth: the page's counts, its group (the
    folder of its ground truth under `gt_root`, e.g. one per artist) and whether extraction found
    it monochrome; one row per cut-out of those pages: its best box IoU with the figure it was
    matched to, whether that figure is cut out cleanly and alone, how many figures it holds, and
    whether it holds none: cutout_quality). A page whose ground truth cannot be used is logged and left out."""
    rows, cutouts = [], []
    for labels_path in sorted(Path(extract_dir).glob("*/labels.png")):
        stem = labels_path.parent.name
        gt = gt_index.get(stem)
        if gt is None:
            continue
        try:
            labels = read_label_png(labels_path)
            figures = read_box_gt(gt, (labels.shape[1], labels.shape[0]))
        except (BoxGTError, BadInput) as e:
            log(f"error: {e}; skipped")
            continue
        mono = (read_json(labels_path.parent / "page.json") or {}).get("monochrome")
        m = page_box_metrics(labels, figures, iou_match, clean_iou)
        group = gt.parent.relative_to(gt_root).as_posix() if gt.parent != Path(gt_root) else ""
        rows.append({"image": stem, "group": group, "monochrome": mono,
                     **{k: v for k, v in m.items() if k not in ("figures", "cutouts")}})
        cutouts += [{"image": stem, "k": k, "group": group, **q} for k, q in cutout_quality(m).items()]
    return rows, cutouts


def box_summary(rows: list[dict]) -> dict:
    """summarize_boxes over all pages, and again per group and per colour (monochrome / colour)."""
    by_group = {g: summarize_boxes([r for r in rows if r["group"] == g]) for g in sorted({r["group"] for r in rows})}
    by_colour = {name: summarize_boxes([r for r in rows if r["monochrome"] is flag])
                 for name, flag in (("monochrome", True), ("colour", False))}
    return {**summarize_boxes(rows), "by_group": by_group, "by_colour": by_colour}
