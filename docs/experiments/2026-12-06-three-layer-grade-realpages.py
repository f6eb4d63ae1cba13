"""The grade on the real-page check (held out from the score's fit: no real page was in it), per cut-out:
its best box IoU with a figure and whether it is a clean single figure; Spearman(score, box IoU), AUROC,
lora_ok. Run from the repo root:  python docs/experiments/2026-12-06-three-layer-grade-realpages.py OUT
after `kirinuki corpus ... -o IMGS && kirinuki extract IMGS -o OUT && kirinuki score OUT`."""
import sys
from pathlib import Path
import numpy as np
from scipy.stats import spearmanr
from kirinuki.core.imageio import read_jsonl, read_label_png
from kirinuki.qc.boxes import index_box_gt, page_box_metrics, read_box_gt
from kirinuki.qc.validate import auroc
OUT = Path(sys.argv[1]); GT = Path("corpus/realpages_gt"); TUNE = {"black_jack", "ubunchu"}
scores = {(r["image"], r["k"]): r for r in read_jsonl(OUT / "scores.jsonl")}
rows = []
for stem, path in sorted(index_box_gt(GT).items()):
    lp = OUT / stem / "labels.png"
    if not lp.is_file():
        continue
    labels = read_label_png(lp)
    m = page_box_metrics(labels, read_box_gt(path, (labels.shape[1], labels.shape[0])))
    best = {f["cutout"]: (f["box_iou"], f["clean"]) for f in m["figures"] if f["cutout"] is not None}
    for k, c in m["cutouts"].items():
        s = scores.get((stem, k))
        if s:
            iou, clean = best.get(k, (0.0, False))
            rows.append((path.parent.name, s["score"], iou, clean and c["holds"] == 1, s["lora_ok"], s["grade"]))
for name, sel in (("all 8 sources", lambda r: True), ("reporting part", lambda r: r[0] not in TUNE),
                  ("manga (tuning part)", lambda r: r[0] in TUNE)):
    R = [r for r in rows if sel(r)]
    sc = np.array([r[1] for r in R]); iou = np.array([r[2] for r in R]); good = np.array([r[3] for r in R])
    ok = np.array([r[4] for r in R])
    print(f"{name}: n={len(R)} clean={good.sum()} Spearman(score, box IoU)={spearmanr(sc, iou).statistic:.3f} "
          f"AUROC(clean)={auroc(sc, good)} lora_ok={ok.sum()} precision={good[ok].mean() if ok.any() else None} "
          f"recall={(good & ok).sum() / max(1, good.sum()):.3f} clean graded D/E={np.isin([r[5] for r in R], ['D','E'])[good].sum()}")
