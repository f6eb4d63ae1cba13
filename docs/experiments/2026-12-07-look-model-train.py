"""Experiment script (2026-12-07-look-model.md). Train the 'look' CNN (cut-out in its context -> IoU) and measure it out of source.
usage: look_train.py DATA.npz [steps]"""
import sys, csv
import numpy as np, torch, torch.nn as nn
from scipy.stats import spearmanr, rankdata
torch.set_num_threads(2)
import os
REALW = float(os.environ.get("REALW", "0"))
d = np.load(sys.argv[1]); steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
X, y, G, SC = d["X"].astype(np.float32) / 255.0 - 0.5, d["y"], d["group"], d["score"]
use = {r["source"]: r["use"] for r in csv.DictReader(open("/work/main/corpus/realpages.csv"))}
kind = {r["page"]: r["kind"] for r in csv.DictReader(open("/work/main/corpus/realpages.csv"))}
is_eval = np.array([g.startswith("rp:") and use[g[3:]] == "evaluation" for g in G])
extra = os.environ.get("TRAIN_EXTRA", "").split(",")  # experiment only: evaluation-only groups trained on
is_eval &= ~np.isin(G, extra)

def net():
    def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(3, 24), block(24, 48), block(48, 96), block(96, 128), block(128, 160),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(160, 1))

def fit(train, seed=0):
    torch.manual_seed(seed); rng = np.random.default_rng(seed)
    m = net(); opt = torch.optim.Adam(m.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    idx = np.flatnonzero(train); Xt = torch.tensor(X[idx]); yt = torch.tensor(y[idx])
    real_pos = np.flatnonzero(np.char.startswith(G[idx].astype(str), "rp:"))
    m.train()
    for s in range(steps):
        if REALW > 0:
            nr = int(64 * REALW); b = np.concatenate([rng.choice(real_pos, nr), rng.integers(0, len(idx), 64 - nr)])
        else:
            b = rng.integers(0, len(idx), 64)
        xb = Xt[b]
        if rng.random() < 0.5: xb = xb.flip(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(m(xb)[:, 0], yt[b])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    m.eval(); return m

def predict(m, mask):
    with torch.no_grad():
        xt = torch.tensor(X[mask]); p = torch.sigmoid(m(xt)[:, 0]) + torch.sigmoid(m(xt.flip(-1))[:, 0])
    return p.numpy() / 2

def report(name, mask, p):
    t, s = y[mask], SC[mask]
    comb = rankdata(s) + rankdata(p)
    print(f"{name:28s} n={mask.sum():4d} score {spearmanr(s, t)[0]:.3f}  look {spearmanr(p, t)[0]:.3f}  rank-sum {spearmanr(comb, t)[0]:.3f}", flush=True)
    return spearmanr(s, t)[0], spearmanr(p, t)[0], spearmanr(comb, t)[0]

import os
if os.environ.get("HOLD"):  # train without these groups, report on each of them, then stop
    hold = os.environ["HOLD"].split(",")
    m = fit(~np.isin(G, hold) & ~is_eval)
    for h in hold:
        t = G == h; report(f"held-out {h}", t, predict(m, t))
    sys.exit()
folds = [] if os.environ.get("NOFOLDS") else [f"fold{f}" for f in range(1, 6) if (G == f"fold{f}").any()]
res = []
for f in folds:
    test = G == f
    m = fit(~test & ~is_eval)
    res.append(report(f"held-out {f}", test, predict(m, test)))
if res: print("folds mean", np.round(np.mean(res, 0), 3), "sd", np.round(np.std(res, 0), 3))
m = fit(~is_eval)
p = predict(m, is_eval)
report("real pages, evaluation-only", is_eval, p)
keys = d["key"][is_eval]
mono = np.array([kind.get(k.split("#")[0], "") == "manga_mono" for k in keys])
sub = np.flatnonzero(is_eval)
for nm, mm in (("  manga", mono), ("  colour", ~mono)):
    mk = np.zeros(len(y), bool); mk[sub[mm]] = True
    report(nm, mk, p[mm])
torch.save(m.state_dict(), os.environ.get("SAVE", "/tmp/look_all.pt"))
np.save(os.environ.get("SAVE", "/tmp/look_all.pt") + ".pred.npy", p)
grp_eval = G[is_eval]
for nm, mm in (("  tuning (ubunchu)", grp_eval == "rp:ubunchu"), ("  reporting (KS + OM)", grp_eval != "rp:ubunchu"),
               ("  reporting manga (OM)", np.char.startswith(grp_eval.astype(str), "rp:om_"))):
    mk = np.zeros(len(y), bool); mk[sub[mm]] = True
    report(nm, mk, p[mm])
