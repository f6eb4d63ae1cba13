"""train-framing: teach the framing tagger (quality/framing.py) how far down the body a cut-out reaches.

Two sources of labelled pictures:
- sprites with body landmarks (`corpus/framing.csv`: chin, armpit, waist, crotch, ankle as a share of
  the drawn figure's height, read by eye), cut at a random height inside one framing's span, so each
  crop's kind is known: the bottom between armpit and waist is a portrait, between waist and crotch an
  upper body, and so on; margins around each border are left out, where labellers disagree;
- figures of real pages whose licence allows training (box ground truth with a `kind`), as boxes.
Crops are drawn on white or on a background, in colour or screentoned as manga. Needs torch (the
`train` extra); seeded, so the same inputs give the same network.
"""
from __future__ import annotations

import csv
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from kirinuki.core.cards import card_path, sha256_file
from kirinuki.core.framing import BY_EXTENT, INPUT, KINDS, framing_input
from kirinuki.core.config import ExtractParams
from kirinuki.core.imageio import BadInput, atomic_path, index_box_gt, read_image, read_json, read_rgba_png, write_json
from kirinuki.train.data import load_backgrounds, screentone

LANDMARKS = ("chin", "armpit", "waist", "crotch", "ankle")
RENDER = 4 * INPUT  # crops are drawn at most this large (long side) before the model input


def read_landmarks(table: Path, sprite_root: Path, log: Callable[[str], None]) -> list[tuple[np.ndarray, dict]]:
    """(RGBA sprite cropped to its drawn pixels, {landmark: share of its height or None}) per usable row
    of `table` (`file` relative to `sprite_root`, checked against its `sha256`; rows with skip = 1 or
    no chin are left out). A malformed table is a ValueError naming the file, row and column."""
    out = []
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("file", "sha256", "skip", *LANDMARKS) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{table}: missing column(s) {', '.join(missing)}")
        for n, row in enumerate(reader, start=2):
            if (row["skip"] or "").strip() == "1" or not (row["chin"] or "").strip():
                continue
            try:
                marks = {k: float(row[k]) / 100 if (row[k] or "").strip() else None for k in LANDMARKS}
            except ValueError:
                raise ValueError(f"{table}: row {n}: a landmark is not a number (0-100)") from None
            path = Path(sprite_root) / row["file"]
            if not path.is_file():
                log(f"{path}: missing; skipped")
                continue
            if sha256_file(path) != row["sha256"]:
                log(f"{path}: sha256 differs from {table}; skipped")
                continue
            try:
                rgba = read_rgba_png(path)
            except BadInput as e:
                log(f"{e}; skipped")
                continue
            ys, xs = np.nonzero(rgba[..., 3] > 16)
            if len(ys) == 0:
                log(f"{path}: fully transparent; skipped")
                continue
            out.append((rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1], marks))
    return out


def spans(m: dict) -> dict[str, tuple[float, float]]:
    """kind -> (lowest, highest) bottom of a crop of that kind, as a share of the figure's height."""
    chin, armpit, waist, crotch, ankle = (m[k] for k in LANDMARKS)
    out = {}
    if ankle is not None and ankle <= 0.97:
        out["full_body"] = (min(1.0, ankle + 0.02), 1.0)
    if crotch is not None:
        end = ankle if ankle is not None else 1.0
        low, high = crotch + 0.12 * (end - crotch) + 0.01, (ankle - 0.04 if ankle is not None else 1.0)
        if high - low >= 0.02:
            out["cowboy_shot"] = (low, high)
    if waist is not None:
        high = crotch - 0.01 if crotch is not None else 1.0
        if high - (waist + 0.01) >= 0.015:
            out["upper_body"] = (waist + 0.01, high)
    if armpit is not None:
        high = waist - 0.03 if waist is not None else 1.0
        if high - (armpit + 0.02) >= 0.015:
            out["portrait"] = (armpit + 0.02, high)
    low, high = chin * 0.8, min(1.0, chin + 0.35 * ((armpit if armpit is not None else 1.0) - chin))
    if high - low >= 0.01:
        out["close-up"] = (low, high)
    return out


def _render(rgba: np.ndarray, backgrounds: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The crop as a cut-out on white (60 %) or inside a box on a background (40 %); as manga 40 %."""
    if rng.random() < 0.4:
        h, w = rgba.shape[:2]
        pad = rng.uniform(0.0, 0.15)
        H, W = max(8, int(h * (1 + pad))), max(8, int(w * (1 + pad)))
        bg = cv2.resize(backgrounds[rng.integers(len(backgrounds))], (W, H)).astype(np.float32)
        y0, x0 = (H - h) // 2, (W - w) // 2
        a = rgba[..., 3:] / 255.0
        bg[y0:y0 + h, x0:x0 + w] = rgba[..., :3] * a + bg[y0:y0 + h, x0:x0 + w] * (1 - a)
        image = bg.astype(np.uint8)
    else:
        image = rgba
    if rng.random() < 0.4:
        inked = screentone(np.ascontiguousarray(image[..., :3]), rng)
        image = np.concatenate([inked, image[..., 3:]], 2) if image.shape[2] == 4 else inked
    return image


def sprite_samples(sprites: list[tuple[np.ndarray, dict]], backgrounds: list[np.ndarray], n: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n crops of the landmarked sprites -> (n x INPUT x INPUT float32 inputs, n kind indices into BY_EXTENT)."""
    x, y = np.zeros((n, INPUT, INPUT), np.float32), np.zeros(n, np.int64)
    i = 0
    while i < n:
        rgba, marks = sprites[rng.integers(len(sprites))]
        options = spans(marks)
        if not options:
            continue
        kind = list(options)[rng.integers(len(options))]
        low, high = options[kind]
        h = rgba.shape[0]
        top = rng.uniform(0, 0.35) * marks["chin"] if kind == "close-up" and rng.random() < 0.5 else (
            rng.uniform(0, 0.06) * marks["chin"] if rng.random() < 0.2 else 0.0)
        y0 = int(top * h)
        crop = rgba[y0:max(y0 + 4, int(rng.uniform(low, high) * h))]
        if rng.random() < 0.15:  # a panel's side frame through the figure
            cut = int(rng.uniform(0, 0.25) * crop.shape[1])
            crop = crop[:, cut:] if rng.random() < 0.5 else crop[:, :crop.shape[1] - cut]
        cols = np.nonzero(crop[..., 3].max(0) > 16)[0]
        if len(cols) < 4:
            continue
        crop = crop[:, cols.min():cols.max() + 1]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        k = RENDER / max(crop.shape[:2])
        if k < 1:  # the model sees 64 px: rendering at full size would only cost time
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))),
                              interpolation=cv2.INTER_AREA)
        x[i], y[i] = framing_input(_render(np.ascontiguousarray(crop), backgrounds, rng)), BY_EXTENT.index(kind)
        i += 1
    return x, y


def figure_samples(pages: Path, gt: Path, manifest: Path, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Box crops of every figure with a `kind` on the manifest's pages whose `use` is `training`
    (the page `<page>.*` anywhere under `pages`, `<page>_gt.json` anywhere under `gt`)."""
    images = {p.stem: p for p in sorted(Path(pages).rglob("*")) if p.is_file()}
    truth = index_box_gt(gt)
    x, y = [], []
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("use") == "training"]
    for row in rows:
        page = row["page"]
        if page not in images or page not in truth:
            log(f"{page}: no image under {pages} or no ground truth under {gt}; skipped")
            continue
        try:
            rgb = read_image(images[page], ExtractParams().max_pixels)
            figures = [(fig["kind"], [int(round(v)) for v in fig["box"]])
                       for fig in read_json(truth[page]).get("figures", []) if fig.get("kind") in KINDS]
            if any(len(box) != 4 for _, box in figures):
                raise ValueError(f"{truth[page]}: a box is not [x0, y0, x1, y1]")
        except (BadInput, KeyError, TypeError, ValueError, AttributeError) as e:
            log(f"{page}: unusable ({e}); skipped")
            continue
        for kind, (x0, y0, x1, y1) in figures:
            crop = rgb[max(0, y0):y1, max(0, x0):x1]
            if crop.size:
                x.append(framing_input(crop))
                y.append(BY_EXTENT.index(kind))
    return np.array(x, np.float32).reshape(-1, INPUT, INPUT), np.array(y, np.int64)


def build_net(torch):
    """Five conv blocks (24-160 channels, each halving the side), pooled, four logits."""
    nn = torch.nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(1, 24), block(24, 48), block(48, 96), block(96, 128), block(128, 160),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(160, 4))


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each input shrunk a little, shifted, mirrored or blurred (background value: white)."""
    out = np.empty_like(x)
    for i, im in enumerate(x):
        s, (tx, ty) = rng.uniform(0.85, 1.0), rng.uniform(-0.06, 0.06, 2) * INPUT
        m = np.float32([[s, 0, (1 - s) * INPUT / 2 + tx], [0, s, (1 - s) * INPUT / 2 + ty]])
        im = cv2.warpAffine(im, m, (INPUT, INPUT), borderValue=0.5)
        if rng.random() < 0.5:
            im = im[:, ::-1]
        if rng.random() < 0.3:
            im = cv2.GaussianBlur(im, (3, 3), rng.uniform(0.3, 1.2))
        out[i] = im
    return out


def train_framing(landmarks: Path, sprite_root: Path, background_dirs: list[Path], out: Path, *,
                  pages: Optional[Path], gt: Optional[Path], manifest: Optional[Path], steps: int, samples: int,
                  seed: int, threads: int, figure_repeat: int = 3, batch: int = 64,
                  log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Train on `samples` sprite crops (and, with pages/gt/manifest, the training pages' figures, each
    `figure_repeat` times); kinds balanced by sampling. Writes the ONNX to `out`, its card beside it
    (the options' defaults are `kirinuki train-framing`'s)."""
    try:
        import torch
    except ImportError:
        raise RuntimeError("train-framing needs torch: pip install 'kirinuki[train]'") from None
    sprites = read_landmarks(landmarks, sprite_root, log)
    backgrounds = load_backgrounds(background_dirs, log)
    if not sprites or not backgrounds:
        raise ValueError(f"train-framing: {len(sprites)} landmarked sprites and {len(backgrounds)} backgrounds "
                         "found; need at least one of each")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    x, y = sprite_samples(sprites, backgrounds, samples, rng)
    n_figures = 0
    if pages and gt and manifest:
        fx, fy = figure_samples(pages, gt, manifest, log)
        n_figures = len(fy)
        x, y = np.concatenate([x] + [fx] * figure_repeat), np.concatenate([y] + [fy] * figure_repeat)
    log(f"{samples} sprite crops from {len(sprites)} sprites, {n_figures} page figures "
        f"in {time.perf_counter() - start:.0f} s")
    counts = np.bincount(y, minlength=len(KINDS))
    if (counts == 0).any():
        raise ValueError(f"train-framing: no example of {[BY_EXTENT[i] for i in np.nonzero(counts == 0)[0]]}")
    weights = 1.0 / counts[y]
    weights /= weights.sum()
    net = build_net(torch)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    above = torch.arange(len(KINDS) - 1)[None]
    net.train()
    for step in range(steps):
        idx = rng.choice(len(y), batch, p=weights)
        target = (torch.from_numpy(y[idx])[:, None] > above).float()  # reaches past each tighter kind
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(torch.from_numpy(_augment(x[idx], rng))[:, None]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.4f}")
    net.eval()
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(torch.nn.Sequential(net, torch.nn.Sigmoid()), torch.zeros(1, 1, INPUT, INPUT), str(tmp),
                          input_names=["input"], output_names=["probs"], dynamic_axes={"input": {0: "n"}, "probs": {0: "n"}},
                          opset_version=17, dynamo=False)
    card = {"kind": "kirinuki framing tagger", "sha256": sha256_file(out), "input": [1, 1, INPUT, INPUT],
            "output": "4 probabilities: reaches past close-up, portrait, upper_body, cowboy_shot",
            "landmarks": str(landmarks), "landmarks_sha256": sha256_file(landmarks), "sprites": len(sprites),
            "backgrounds": len(backgrounds), "manifest": str(manifest) if manifest else None,
            "manifest_sha256": sha256_file(manifest) if manifest else None, "page_figures": n_figures,
            "samples": samples, "figure_repeat": figure_repeat, "steps": steps, "batch": batch, "seed": seed,
            "final_loss": round(float(loss.item()), 4), "seconds": round(time.perf_counter() - start),
            "torch": torch.__version__, "python": platform.python_version()}
    write_json(card_path(out), card)
    return card
