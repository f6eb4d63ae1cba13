import json, csv, numpy as np
from pathlib import Path
use={r['page']:r['use'] for r in csv.DictReader(open('corpus/realpages.csv'))}
K=['close-up','portrait','upper_body','cowboy_shot','full_body']
D={'training':[],'evaluation':[]}
for p in Path('corpus/realpages_gt').rglob('*_gt.json'):
    page=p.name[:-8]
    for f in json.load(open(p))['figures']:
        if not f.get('kind') or not f.get('head'): continue
        x0,y0,x1,y1=f['box']; hx,hy=f['head']
        top=max(1.0,hy-y0); r=(y1-hy)/top; w=(x1-x0)/top
        D[use[page]].append((K.index(f['kind']),r,w,(y1-y0)/(x1-x0)))
tr=np.array(D['training']); ev=np.array(D['evaluation'])
print(len(tr),len(ev))
for k in range(5):
    a=tr[tr[:,0]==k][:,1]; b=ev[ev[:,0]==k][:,1]
    print(K[k], len(a), np.round(np.percentile(a,[25,50,75]),2) if len(a) else '', len(b), np.round(np.percentile(b,[25,50,75]),2) if len(b) else '')
from sklearn.tree import DecisionTreeClassifier
for feats in ([1],[1,2],[1,2,3]):
    m=DecisionTreeClassifier(max_depth=3,min_samples_leaf=5,random_state=0).fit(tr[:,feats],tr[:,0])
    pe=m.predict(ev[:,feats]); print(feats,'eval exact',round((pe==ev[:,0]).mean(),3),'within1',round((abs(pe-ev[:,0])<=1).mean(),3))
    m=DecisionTreeClassifier(max_depth=3,min_samples_leaf=5,random_state=0).fit(ev[:,feats],ev[:,0])
    print('  in-sample on eval', round((m.predict(ev[:,feats])==ev[:,0]).mean(),3))
