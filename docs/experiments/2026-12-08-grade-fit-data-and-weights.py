"""Grade experiment: weight real-page (box) cut-outs in the fit; extra features.
Usage: python THIS collect (-> /tmp/wfit_samples.pkl), then python THIS features | configs"""
import sys, json, csv, pickle, collections
sys.path.insert(0, '/work/main/src')
from pathlib import Path
import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from kirinuki.core.config import load_params, ScoreModel
from kirinuki.core.imageio import index_box_gt, index_gt
from kirinuki.qc import calibrate as C
from kirinuki.quality.score import grade
from kirinuki.quality import boosting
M = Path('/work/main'); P = load_params(M / 'params.yaml')
PK = Path('/tmp/wfit_samples.pkl')
SETS = [('/tmp/rb_fl', '/work/shared/realbench/dev/gt'), (str(M / 'runs/extract'), str(M / 'data')),
        ('/tmp/rp_fl2', str(M / 'corpus/realpages_gt'))]
if sys.argv[1] == 'collect':
    out = {}
    for d, g in SETS:
        gi = {**index_gt(Path(g)), **index_box_gt(Path(g))}
        out[d] = C.collect(Path(d), gi, P.score, P.validation.iou_match, P.validation.good_iou, P.validation.clean_iou, print)
    for f in range(1, 6):
        d = f'/tmp/folds/e{f}'; g = f'/tmp/folds/f{f}/gt'
        out[d] = C.collect(Path(d), index_gt(Path(g)), P.score, P.validation.iou_match, P.validation.good_iou, P.validation.clean_iou, print)
    pickle.dump(out, open(PK, 'wb')); sys.exit()
S = pickle.load(open(PK, 'rb'))
art, evaluation = C.read_sources([Path('/work/shared/realbench/dev/scenes.csv'), M / 'data/scenes.csv', M / 'corpus/realpages.csv'])
train = [s for d, _ in SETS for s in S[d] if s['image'] not in evaluation]
unseen = [s for s in S['/tmp/rp_fl2'] if s['image'] in evaluation]
folds = [S[f'/tmp/folds/e{f}'] for f in range(1, 6)]

def wfit(X, y, w, names, rounds, lr, depth, min_leaf, bins):
    cands = [np.unique(np.quantile(X[:, j], np.linspace(0, 1, bins + 1)[1:-1])) for j in range(X.shape[1])]
    base = float((w * y).sum() / w.sum()); col = {n: j for j, n in enumerate(names)}
    cur = np.full(len(y), base); trees = []
    def grow(idx, r, depth):
        if depth > 0:
            best, bg = None, 1e-12
            W = w[idx]; R = r[idx] * W; tw, tr = W.sum(), R.sum()
            for j, ts in enumerate(cands):
                xj = X[idx, j]
                for t in ts:
                    L = xj <= t; nl = int(L.sum())
                    if nl < min_leaf or len(idx) - nl < min_leaf: continue
                    wl = W[L].sum(); rl = R[L].sum()
                    gain = rl ** 2 / wl + (tr - rl) ** 2 / (tw - wl) - tr ** 2 / tw
                    if gain > bg: bg, best = gain, (j, float(t))
            if best:
                j, t = best; L = X[idx, j] <= t
                return [names[j], t, grow(idx[L], r, depth - 1), grow(idx[~L], r, depth - 1)]
        return float((w[idx] * r[idx]).sum() / w[idx].sum())
    for _ in range(rounds):
        tr = grow(np.arange(len(y)), y - cur, depth); trees.append(tr)
        cur += lr * boosting.predict_tree(tr, X, col)
    return base, trees

def run(feats, wreal, rounds=200):
    cal = P.calibrate
    X = np.array([[s['features'][n] for n in feats] for s in train], float)
    y = np.array([s['iou'] for s in train]); w = np.array([wreal if s['gt'] == 'box' else 1.0 for s in train])
    base, trees = wfit(X, y, w, feats, rounds, cal.learning_rate, cal.depth, cal.min_leaf, cal.bins)
    def pred(ss):
        Xs = np.array([[s['features'][n] for n in feats] for s in ss], float)
        return boosting.predict(base, cal.learning_rate, trees, Xs, feats)
    res = {}
    p = pred(unseen); g = [grade(s['features'], v, P.score) for s, v in zip(unseen, p)]
    sc = np.array([x['score'] for x in g]); t = np.array([s['iou'] for s in unseen]); good = np.array([s['good'] for s in unseen])
    gr = np.array([x['grade'] for x in g])
    res['eval_sp'] = spearmanr(sc, t).statistic; res['eval_auc'] = roc_auc_score(good, sc)
    res['clean_notDE'] = f"{int((~np.isin(gr[good], ['D','E'])).sum())}/{good.sum()}"
    bad = t < 0.5
    res['bad_DE'] = f"{int(np.isin(gr[bad], ['D','E']).sum())}/{bad.sum()}"
    ok = np.array([x['lora_ok'] for x in g]); res['lora'] = f"{int((ok&good).sum())}/{ok.sum()}"
    fs = []; fa = []
    for ss in folds:
        p = pred(ss); sc = np.array([grade(s['features'], v, P.score)['score'] for s, v in zip(ss, p)])
        t = np.array([s['iou'] for s in ss]); fs.append(spearmanr(sc, t).statistic); fa.append(roc_auc_score(t >= 0.75, sc))
    res['folds_sp'] = f"{np.mean(fs):.3f} ({np.std(fs):.3f})"; res['folds_auc'] = f"{np.mean(fa):.3f}"
    return res
base_feats = list(P.calibrate.features)
if sys.argv[1] == 'features':
    allf = sorted(k for k, v in train[0]['features'].items() if isinstance(v, (int, float)))
    print(allf)
    import os
    V = {'shipped': base_feats, 'all': allf,
         '+heads,regions,secondary,neighbour': base_feats + ['heads', 'regions', 'secondary_share', 'neighbour_edge'],
         '+cuts,edges': base_feats + [f'{a}_{s}' for a in ('cut', 'edge') for s in ('left', 'top', 'right', 'bottom')],
         '+saturation,luma_mean,panels,short_side': base_feats + ['saturation', 'luma_mean', 'panels', 'short_side']}
    for name, feats in V.items():
        r = run(feats, 1); print(name, {k: (round(float(v), 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    sys.exit()
import itertools
cal0 = P.calibrate
def fitpred(tr, te, wreal, depth, rounds, min_leaf):
    X = np.array([[s['features'][n] for n in base_feats] for s in tr], float)
    y = np.array([s['iou'] for s in tr]); w = np.array([wreal if s['gt'] == 'box' else 1.0 for s in tr])
    base, trees = wfit(X, y, w, base_feats, rounds, cal0.learning_rate, depth, min_leaf, cal0.bins)
    Xs = np.array([[s['features'][n] for n in base_feats] for s in te], float)
    p = boosting.predict(base, cal0.learning_rate, trees, Xs, base_feats)
    return np.array([grade(s['features'], v, P.score)['score'] for s, v in zip(te, p)])
def sp(sc, ss): return spearmanr(sc, [s['iou'] for s in ss]).statistic
real_tr = [s for s in train if s['gt'] == 'box']; comp_tr = [s for s in train if s['gt'] != 'box']
srcs = sorted({art[s['image']][0] for s in real_tr})
cfgs = [(False, 1, 2, 200, 5), (True, 1, 2, 200, 5), (True, 3, 2, 200, 5), (True, 1, 3, 200, 5), (True, 1, 2, 400, 5), (True, 1, 2, 200, 20), (True, 3, 3, 300, 10)]
for usefolds, wreal, depth, rounds, ml in cfgs:
    comp = comp_tr + ([s for f in folds for s in f] if usefolds else [])
    # training real pages, out of source
    oof = np.zeros(len(real_tr))
    for src in srcs:
        te = [i for i, s in enumerate(real_tr) if art[s['image']][0] == src]
        tr = comp + [s for s in real_tr if art[s['image']][0] != src]
        oof[te] = fitpred(tr, [real_tr[i] for i in te], wreal, depth, rounds, ml)
    lofo = []
    if usefolds:
        for h in range(5):
            tr = comp_tr + [s for j, f in enumerate(folds) if j != h for s in f] + real_tr
            lofo.append(sp(fitpred(tr, folds[h], wreal, depth, rounds, ml), folds[h]))
    else:
        for h in range(5): lofo.append(sp(fitpred(comp_tr + real_tr, folds[h], wreal, depth, rounds, ml), folds[h]))
    ev = fitpred(comp + real_tr, unseen, wreal, depth, rounds, ml)
    print(f"folds={usefolds} w={wreal} depth={depth} rounds={rounds} min_leaf={ml}: train-real OOS {sp(oof, real_tr):.3f} | LOFO comp {np.mean(lofo):.3f} ({np.std(lofo):.3f}) | eval real {sp(ev, unseen):.3f} auc {roc_auc_score([s['good'] for s in unseen], ev):.3f}", flush=True)
