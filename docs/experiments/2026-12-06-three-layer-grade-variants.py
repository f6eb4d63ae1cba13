# The flag variants of docs/experiments/2026-12-06-three-layer-grade.md, on realbench dev (run from the repo
# root after `kirinuki extract ../shared/realbench/dev/images -o /tmp/rb_r`; the first variant "old" needs
# the scorer of commit 28f4ed8):  python docs/experiments/2026-12-06-three-layer-grade-variants.py new
import sys, json
from pathlib import Path
import kirinuki.quality.score as S
import kirinuki.qc.calibrate as C
from kirinuki.core.config import load_params
from kirinuki.core.imageio import index_gt
SIDES=("left","top","right","bottom")
variant=sys.argv[1]
def new_flags(f, params):
    out=[]
    if f["opaque_share"] < params.min_opaque: out.append("empty")
    elif f["luma_mean"] < params.black_luma and f["luma_std"] < params.flat_contrast: out.append("black")
    if "nomulti" not in variant and max(f["regions"], f["open_parts"], f["heads"]) > 1: out.append("multi_character")
    for side in SIDES:
        straight = params.min_cut_horizontal if side in ("top","bottom") else params.min_cut_vertical
        if f[f"edge_{side}"] < params.min_edge_run and f[f"cut_{side}"] >= straight:
            out.append(f"cut_{side}")
    if "notouch" not in variant and f["neighbour_edge"] >= params.min_neighbour_edge: out.append("touches_character")
    return out
for s_ in SIDES: S.MESSAGES[f"cut_{s_}"]=("x","x")
if variant!="old":
    S.flags=new_flags
    C.grade=S.grade
p=load_params(Path("params.yaml"))
W=Path("/tmp/rb_r")
gt=index_gt(Path("../shared/realbench/dev/gt"))
samples=C.collect(W, gt, p.score, p.validation.iou_match, lambda m: None)
src=C.read_sources([Path("../shared/realbench/dev/scenes.csv")])
m=C.calibrate(samples, p.score, p.calibrate, p.validation.good_iou, [], src)
fit=m.provenance["fit"]
print(variant, {k:{kk:v[kk] for kk in ("score_iou_spearman","score_auroc","lora_ok_count","lora_ok_precision")} for k,v in fit.items()})
print("  folds spearman:", [f["score_iou_spearman"] for f in m.provenance.get("folds",[])], "auroc:", [f["score_auroc"] for f in m.provenance.get("folds",[])])
