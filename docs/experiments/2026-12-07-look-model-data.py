"""Experiment script (2026-12-07-look-model.md; paths of that machine: extract outputs in /tmp, pages
under /work). Per cut-out input for a 'look' CNN: 3x64x64 = page grey around the cut-out (its box grown 1.3x,
square, letterboxed), its mask, the other cut-outs' masks; and the target (mask IoU on composites /
realbench, box-based target on real pages). Writes an npz: X uint8 [N,3,64,64], y, group, key, score."""
import sys, csv, json
from pathlib import Path
import numpy as np, cv2
sys.path.insert(0, "/work/main/src")
from kirinuki.core.imageio import read_image, read_label_png, index_box_gt
from kirinuki.qc.boxes import box_rows
import os
S = int(os.environ.get("LOOK_S", "64"))
NOCTX = os.environ.get("NOCTX") == "1"

def look_input(grey, labels, k):
    ys, xs = np.nonzero(labels == k)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2; side = 1.3 * max(y1 - y0, x1 - x0)
    a, b = int(round(cy - side / 2)), int(round(cx - side / 2)); n = int(round(side))
    H, W = labels.shape
    pad = lambda arr, fill: cv2.copyMakeBorder(arr, max(0, -a), max(0, a + n - H), max(0, -b), max(0, b + n - W),
                                                 cv2.BORDER_CONSTANT, value=fill)
    ya, xa = max(0, a), max(0, b)
    g = pad(grey[ya:a + n, xa:b + n], 255)
    if NOCTX: g = np.where(pad((labels[ya:a + n, xa:b + n] == k).astype(np.uint8), 0) > 0, g, 255).astype(np.uint8)
    m = pad((labels[ya:a + n, xa:b + n] == k).astype(np.uint8) * 255, 0)
    o = pad(((labels[ya:a + n, xa:b + n] > 0) & (labels[ya:a + n, xa:b + n] != k)).astype(np.uint8) * 255, 0)
    return np.stack([cv2.resize(c, (S, S), interpolation=cv2.INTER_AREA) for c in (g, m, o)])

def run(out_dir, images, targets, group_of, X, Y, G, K, SC):
    scores = {(s["image"], s["k"]): s["score"] for s in map(json.loads, open(Path(out_dir) / "scores.jsonl"))}
    by_img = {}
    for (img, k), t in targets.items(): by_img.setdefault(img, []).append((k, t))
    for img, ks in sorted(by_img.items()):
        path = images(img)
        if path is None: continue
        rgb = read_image(path, 80_000_000); grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        labels = read_label_png(Path(out_dir) / img / "labels.png")
        for k, t in ks:
            X.append(look_input(grey, labels, k)); Y.append(t); G.append(group_of(img)); K.append(f"{img}#{k}")
            SC.append(scores[(img, k)])

X, Y, G, K, SC = [], [], [], [], []
# composites folds and realbench dev: mask IoU from per_cutout.csv
for name, out_dir, img_dir in [*[(f"fold{f}", f"/tmp/folds/e{f}", f"/tmp/folds/f{f}/images") for f in range(1, 6)],
                               ("bg5", "/tmp/folds/eb5", "/tmp/folds/b5/images"),
                               ("rb", "/tmp/rb", "/work/shared/realbench/dev/images")]:
    if not Path(out_dir, "per_cutout.csv").exists(): print("skip", out_dir); continue
    t = {(r["image"], int(r["k"])): float(r["iou"]) for r in csv.DictReader(open(Path(out_dir) / "per_cutout.csv"))}
    run(out_dir, lambda img, d=img_dir: next(Path(d).glob(img + ".*"), None), t, lambda img, n=name: n, X, Y, G, K, SC)
    print(name, len(X), flush=True)
# real pages: box target
gt = Path("/work/main/corpus/realpages_gt")
rows, cuts = box_rows(Path("/tmp/rp"), index_box_gt(gt), gt, 0.5, 0.7, lambda m: None)
t = {(q["image"], q["k"]): q["target"] for q in cuts}
grp = {q["image"]: "rp:" + q["group"] for q in cuts}
run("/tmp/rp", lambda img: next(Path("/work/realpages/images").rglob(img + ".*"), None), t, grp.get, X, Y, G, K, SC)
print("rp", len(X))
np.savez_compressed(sys.argv[1], X=np.array(X, np.uint8), y=np.array(Y, np.float32), group=np.array(G), key=np.array(K), score=np.array(SC, np.float32))
