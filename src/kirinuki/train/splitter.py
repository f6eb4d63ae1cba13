"""train-splitter: teach the splitter (split.py) where one character ends and the next begins.

Training pages are composites: 0-3 sprites (RGBA character art, e.g. visual-novel
sprites) scaled, flipped, recoloured and overlapped on background pictures, a share
of them turned into screentoned monochrome. The composite knows every pixel's
character, so the targets are exact: a Gaussian at each character's centre (of mass,
or of its head: `centre`) and, per character pixel, the offset to it. The network is a
small U-Net trained from scratch on CPU; the result is exported to ONNX with a card
beside it. Needs torch (the `train` extra); seeded, so the same inputs and arguments
give the same pages.

With `isnet_features` the net also reads ISNet's encoder (stages 4 and 5, see
FEATURE_STAGES), the one network here that has seen thousands of pictures rather than 43
sprites; extraction hands those tensors over for free (segment.IsnetSegmenter.run). ISNet
on every composite is slow on CPU, so the composites, their targets and features go to a
cache folder in parts, which a later run reuses and extends. The cache holds both centres'
targets, and the net learns the other centre alongside (`auxiliary`, not exported): heads
and centres of mass share the features that tell one character from the next.
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from kirinuki.core.imageio import IMAGE_SUFFIXES, atomic_path, write_json
from kirinuki.core.cards import card_path, sha256_file
from kirinuki.extract.split import grid_features, grid_input
from kirinuki.synth.pages import figure_sprite

INPUT = 256  # network input side
GRID = 128  # output grid side (stride 2)
SIGMA = 3.0  # centre heatmap Gaussian, grid cells
CENTRES = ("mass", "head")
FEATURE_STAGES = ("/stage4/Add_output_0", "/stage5/Add_output_0")  # ISNet's encoder at 1/16 and 1/32 of its input
CACHE_PART = 500  # composites per cache part: an interrupted run loses at most one part


def _images(folders: list[Path]) -> list[Path]:
    return sorted(p for f in folders for p in Path(f).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_sprites(folders: list[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Every image with an alpha channel under `folders` -> RGBA uint8 cropped to its opaque part."""
    sprites = []
    for path in _images(folders):
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None or a.ndim != 3 or a.shape[2] != 4 or not (a[..., 3] > 127).any():
            log(f"{path}: skipped, not an image with an alpha channel and opaque pixels")
            continue
        ys, xs = np.nonzero(a[..., 3] > 127)
        sprites.append(cv2.cvtColor(a[ys.min():ys.max() + 1, xs.min():xs.max() + 1], cv2.COLOR_BGRA2RGBA))
    return sprites


def load_backgrounds(folders: list[Path], log: Callable[[str], None]) -> list[np.ndarray]:
    """Every readable image under `folders` -> RGB uint8."""
    out = []
    for path in _images(folders):
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            log(f"{path}: skipped, not a readable image")
            continue
        out.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    return out


def screentone(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8 -> the same page as black-and-white manga: line art kept black, tones
    rendered as a rotated dot screen of 3-6 px."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    period, angle = rng.uniform(3, 6), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    v = (yy * np.cos(angle) - xx * np.sin(angle)) / period
    screen = (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v) + 2) * (255 / 4)
    out = np.where((grey > screen) | (grey > 235), 255, 0).astype(np.uint8)
    out[cv2.Canny(grey, 60, 150) > 0] = 0
    return np.repeat(out[..., None], 3, axis=2)


def _hue_shift(rgb: np.ndarray, shift: int) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def sketch(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8 -> a rough: the drawing's lines in one pencil colour on a flat pale fill."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    lines = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 9, 8)
    fill, pencil = rng.uniform(205, 250, 3), rng.uniform(60, 150) * rng.uniform(0.8, 1.0, 3)
    return (fill + (pencil - fill) * lines[..., None]).astype(np.uint8)


def _jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness and saturation changed at random (other artists' palettes)."""
    x = rgb.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.4, 1.3)
    x = (x - 128) * rng.uniform(0.7, 1.2) + 128 + rng.uniform(-30, 30)
    return np.clip(x, 0, 255).astype(np.uint8)


def chibi(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGBA sprite -> super-deformed proportions: the top (head) enlarged, the rest squashed."""
    h, w = rgba.shape[:2]
    cut = int(h * rng.uniform(0.2, 0.3))
    k = rng.uniform(1.3, 1.8)
    head = cv2.resize(np.ascontiguousarray(rgba[:cut]), (max(1, int(w * k)), max(1, int(cut * k))))
    body = cv2.resize(np.ascontiguousarray(rgba[cut:]), (w, max(1, int((h - cut) * rng.uniform(0.3, 0.5)))))
    out = np.zeros((head.shape[0] + body.shape[0], max(w, head.shape[1]), 4), np.uint8)
    x0 = (out.shape[1] - w) // 2
    out[head.shape[0]:, x0:x0 + w] = body
    hx = (out.shape[1] - head.shape[1]) // 2
    top = out[:head.shape[0], hx:hx + head.shape[1]]
    top[:] = np.where(head[..., 3:] > 0, head, top)
    return out


def composite(sprites: list[np.ndarray], backgrounds: list[np.ndarray], rng: np.random.Generator,
              side: int = 640, manga_share: float = 0.3, drawn_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One training page: (HxWx3 uint8, HxW uint8 labels 0 = background, 1..n back to front).

    Characters are 0.15-1.15 page heights tall, mostly standing on or cut by the bottom
    edge; half of them stand next to or in front of an earlier one (the cases connected
    components merge), and later ones occlude earlier ones. Some are recoloured, drawn as
    a pale rough or given chibi proportions, so that the net learns characters rather than
    these sprites. A `drawn_share` of the characters are drawn afresh by synth (a new face,
    hair, outfit and pose each time) instead. A character left with less than 0.4% of the
    page visible is background.
    """
    h, w = (side, side * 3 // 4) if rng.random() < 0.5 else (side * 3 // 4, side)
    bg = backgrounds[rng.integers(len(backgrounds))]
    scale = max(h / bg.shape[0], w / bg.shape[1]) * rng.uniform(1.0, 1.6)
    bg = cv2.resize(bg, (int(bg.shape[1] * scale) + 1, int(bg.shape[0] * scale) + 1), interpolation=cv2.INTER_AREA)
    y0, x0 = rng.integers(0, bg.shape[0] - h + 1), rng.integers(0, bg.shape[1] - w + 1)
    page = bg[y0:y0 + h, x0:x0 + w].astype(np.float32)
    if rng.random() < 0.5:
        page = page[:, ::-1]
    labels = np.zeros((h, w), np.uint8)
    n = rng.choice(4, p=[0.08, 0.3, 0.34, 0.28])
    centres = []  # x centres of the characters placed so far
    for k in range(1, n + 1):
        drawn = drawn_share and rng.random() < drawn_share  # no draw at 0: the composites stay as they were
        s = figure_sprite(rng, int(1.15 * h)) if drawn else sprites[rng.integers(len(sprites))]
        if rng.random() < 0.5:
            s = s[:, ::-1]
        if rng.random() < 0.15:
            s = chibi(s, rng)
        sh = max(2, int(rng.uniform(0.15, 1.15) * h))
        sw = max(2, int(s.shape[1] * sh / s.shape[0] * rng.uniform(0.9, 1.1)))
        if sw > 1.3 * w:
            continue
        s = cv2.resize(np.ascontiguousarray(s), (sw, sh), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.3:  # the same sprite twice must not look like one character
            s[..., :3] = _hue_shift(s[..., :3], int(rng.integers(20, 160)))
        if rng.random() < 0.3:
            s[..., :3] = _jitter(s[..., :3], rng)
        if rng.random() < 0.12:
            s[..., :3] = sketch(s[..., :3], rng)
        if centres and rng.random() < 0.5:
            x = int(centres[rng.integers(len(centres))] + rng.uniform(-0.7, 0.7) * sw - sw / 2)
        else:
            x = int(rng.uniform(-0.25 * sw, w - 0.75 * sw))
        centres.append(x + sw / 2)
        y = int(h - sh * rng.uniform(0.75, 1.0)) if rng.random() < 0.6 else int(rng.uniform(0, max(1, h - sh)))
        ty0, tx0, ty1, tx1 = max(0, y), max(0, x), min(h, y + sh), min(w, x + sw)
        if ty1 <= ty0 or tx1 <= tx0:
            continue
        part = s[ty0 - y:ty1 - y, tx0 - x:tx1 - x].astype(np.float32)
        alpha = part[..., 3:] / 255
        page[ty0:ty1, tx0:tx1] = page[ty0:ty1, tx0:tx1] * (1 - alpha) + part[..., :3] * alpha
        labels[ty0:ty1, tx0:tx1][alpha[..., 0] > 0.5] = k
    page = np.clip(page, 0, 255).astype(np.uint8)
    visible = [k for k in range(1, n + 1) if (labels == k).sum() > 0.004 * h * w]
    labels = np.searchsorted(visible, labels, side="right").astype(np.uint8) * np.isin(labels, visible)
    if rng.random() < manga_share:
        page = screentone(page, rng)
    return page, labels.astype(np.uint8)


def targets(labels: np.ndarray, centre: str = "mass") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SxS labels (grid_input's frame) -> (GxG centre heatmap, 2xGxG offsets in units of G,
    GxG foreground), G = GRID. `centre`: each character's centre of mass, or its head (the
    top fifth of what is visible of it): characters one in front of the other share a
    centre of mass but not a head."""
    lab = cv2.resize(labels, (GRID, GRID), interpolation=cv2.INTER_NEAREST)
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    heat = np.zeros((GRID, GRID), np.float32)
    offsets = np.zeros((2, GRID, GRID), np.float32)
    for k in range(1, int(lab.max()) + 1):
        m = lab == k
        if not m.any():
            continue
        at = m
        if centre == "head":
            ys = yy[m]
            at = m & (yy <= ys.min() + max(2.0, 0.2 * (ys.max() - ys.min() + 1)))
        cy, cx = yy[at].mean(), xx[at].mean()
        heat = np.maximum(heat, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * SIGMA ** 2)))
        offsets[0][m], offsets[1][m] = (cy - yy[m]) / GRID, (cx - xx[m]) / GRID
    return heat, offsets, (lab > 0).astype(np.float32)


def training_set(sprites, backgrounds, n: int, seed: int, manga_share: float, centre: str = "mass",
                 drawn_share: float = 0.0):
    """n composites at the network's input size -> (Nx3xSxS uint8, targets as float32 arrays)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3, INPUT, INPUT), np.uint8)
    heat = np.zeros((n, 1, GRID, GRID), np.float32)
    off = np.zeros((n, 2, GRID, GRID), np.float32)
    fg = np.zeros((n, 1, GRID, GRID), np.float32)
    for i in range(n):
        page, labels = composite(sprites, backgrounds, rng, manga_share=manga_share, drawn_share=drawn_share)
        x[i] = grid_input(page, INPUT).transpose(2, 0, 1)
        heat[i, 0], off[i], fg[i, 0] = targets(grid_input(labels, INPUT, cv2.INTER_NEAREST), centre)
    return x, heat, off, fg


def feature_cache(cache: Path, n: int, settings: dict, sprites, backgrounds, segmenter,
                  log: Callable[[str], None]) -> list[dict[str, np.ndarray]]:
    """The first `n` composites of `settings` (seed, side, ...) with both centres' targets and
    the segmenter's features, as parts of memory-mapped arrays in `cache`: x (Kx3xSxS uint8),
    t (Kx7xGxG float16: mass heat, dy, dx, head heat, dy, dx, foreground), f0, f1, ... (KxCxG'xG'
    in grid_features' frame: an int8 ISNet's uint8 codes, else float16). Parts already there are
    reused; new ones continue the same random stream (its state is kept in cache.json after
    every part).
    """
    meta_path = cache / "cache.json"
    meta = {"settings": settings, "parts": [], "rng": None}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        differ = sorted(k for k in set(settings) | set(meta["settings"]) if settings.get(k) != meta["settings"].get(k))
        if differ:
            raise ValueError(f"train-splitter: --cache {cache} holds composites made with other {', '.join(differ)}; "
                             "use another folder")
    rng = np.random.default_rng(settings["seed"])
    if meta["rng"]:
        rng.bit_generator.state = meta["rng"]
    start, done = time.perf_counter(), sum(meta["parts"])
    while done < n:
        k = min(CACHE_PART, n - done)
        part = cache / f"part_{len(meta['parts']):03d}"
        tmp = cache / f".{part.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {}
        for i in range(k):
            page, labels = composite(sprites, backgrounds, rng, side=settings["side"],
                                     manga_share=settings["manga_share"], drawn_share=settings["drawn_share"])
            lab = grid_input(labels, INPUT, cv2.INTER_NEAREST)
            (hm, om, fg), (hh, oh, _) = (targets(lab, c) for c in CENTRES)
            t = np.concatenate([hm[None], om, hh[None], oh, fg[None]])
            sample = {"x": grid_input(page, INPUT).transpose(2, 0, 1), "t": t.astype(np.float16)}
            for j, (name, f) in enumerate(segmenter.run(page)[1].items()):
                tensor, scale, zero = segmenter.read[name]
                if tensor != name:  # an int8 ISNet's: its uint8 codes again, a quarter of the bytes
                    f = np.round(f / scale + zero).astype(np.uint8)
                f = grid_features(f, page.shape, max(f.shape[1:]))
                sample[f"f{j}"] = f if f.dtype == np.uint8 else f.astype(np.float16)
            for name, a in sample.items():
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", a.dtype, (k, *a.shape))
                arrays[name][i] = a
        for a in arrays.values():
            a.flush()
        del arrays
        tmp.rename(part)
        meta["parts"].append(k)
        meta["rng"] = rng.bit_generator.state
        write_json(meta_path, meta)
        done += k
        log(f"cache {cache}: {done} of {n} composites with ISNet features ({time.perf_counter() - start:.0f} s)")
    return [{f.stem: np.load(f, mmap_mode="r") for f in sorted((cache / f"part_{i:03d}").glob("*.npy"))}
            for i in range(len(meta["parts"]))]


def build_net(torch, widths=(16, 32, 64, 96, 128), features=(), centres=1):
    """A U-Net: 3xSxS -> (3 x centres + 1)x(S/2)x(S/2) (per centre: logit, dy, dx; then the
    foreground logit).

    `features`: (channels, side) of ISNet tensors, further inputs: each is projected by a 1x1
    conv and fused into the down path where it has the same side.
    """
    nn, F = torch.nn, torch.nn.functional

    def block(i, o, stride=1):
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    sides = [INPUT >> (i + 1) for i in range(len(widths))]  # each down block's output side
    for _, side in features:
        if side not in sides:
            raise ValueError(f"train-splitter: an ISNet feature of side {side} meets no down block ({sides})")
    at = [sides.index(side) for _, side in features]

    class SplitNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = widths
            self.down = nn.ModuleList([block(3, c[0], 2)] + [block(c[i], c[i + 1], 2) for i in range(len(c) - 1)])
            self.up = nn.ModuleList([block(c[i + 1] + c[i], c[i]) for i in reversed(range(1, len(c) - 1))]
                                    + [block(c[1] + c[0], 32)])
            self.head = nn.Conv2d(32, 3 * centres + 1, 1)
            wide = [max(48, c[i]) for i in at]  # 512 channels in: do not squeeze them below 48
            self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(ch, w, 1, bias=False), nn.BatchNorm2d(w),
                                                    nn.ReLU(inplace=True)) for (ch, _), w in zip(features, wide))
            self.fuse = nn.ModuleList(block(c[i] + w, c[i]) for i, w in zip(at, wide))

        def forward(self, x, *feats):
            skips = []
            for i, d in enumerate(self.down):
                x = d(x)
                for j in (j for j, a in enumerate(at) if a == i):
                    x = self.fuse[j](torch.cat([x, self.proj[j](feats[j])], 1))
                skips.append(x)
            x = skips.pop()
            for u in self.up:
                s = skips.pop()
                x = u(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            return self.head(x)

    return SplitNet()


def train_splitter(sprite_dirs: list[Path], background_dirs: list[Path], out: Path, steps: int = 3000,
                   samples: int = 6000, batch: int = 16, seed: int = 0, manga_share: float = 0.3,
                   centre: str = "mass", drawn_share: float = 0.0, threads: int = 0, isnet=None,
                   cache: Optional[Path] = None,
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Train on `samples` composites for `steps` batches; write the ONNX to `out` and its card beside it.

    `isnet` (ExtractParams): read that ISNet's features too, with the composites in `cache`
    (feature_cache), made at extract.input_size as extraction sees pages.
    """
    try:
        import torch
    except ImportError:
        raise RuntimeError("train-splitter needs torch: pip install 'kirinuki[train]'") from None
    if centre not in CENTRES:
        raise ValueError(f"train-splitter: centre {centre!r} is not one of {', '.join(CENTRES)}")
    if isnet is not None and cache is None:
        raise ValueError("train-splitter: --isnet-features needs --cache DIR (the composites and their features)")
    sprites, backgrounds = load_sprites(sprite_dirs, log), load_backgrounds(background_dirs, log)
    if not sprites or not backgrounds:
        raise ValueError(f"train-splitter: {len(sprites)} sprites and {len(backgrounds)} backgrounds found; "
                         "need at least one of each")
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    card = {"kind": "kirinuki splitter", "input": [1, 3, INPUT, INPUT], "grid": GRID,
            "normalisation": "RGB/255 - 0.5, top-left aligned (split.grid_input)",
            "sprite_dirs": [str(d) for d in sprite_dirs], "background_dirs": [str(d) for d in background_dirs],
            "sprites": len(sprites), "backgrounds": len(backgrounds), "samples": samples, "steps": steps,
            "batch": batch, "seed": seed, "manga_share": manga_share, "centre": centre, "drawn_share": drawn_share}
    dequantise = []
    if isnet is None:
        data = [dict(zip(("x", "heat", "off", "fg"), training_set(sprites, backgrounds, samples, seed, manga_share,
                                                                 centre, drawn_share)))]
        features = []
    else:
        from kirinuki.core.cards import network_sha256
        from kirinuki.extract.segment import load_segmenter

        segmenter = load_segmenter(isnet, FEATURE_STAGES)
        settings = {**{k: card[k] for k in ("sprite_dirs", "background_dirs", "sprites", "backgrounds", "seed",
                                            "manga_share", "drawn_share")},
                    "side": isnet.input_size, "isnet_model_sha256": segmenter.info["model_sha256"],
                    "isnet_features": list(FEATURE_STAGES), "isnet_input": segmenter.prep}
        data = feature_cache(cache, samples, settings, sprites, backgrounds, segmenter, log)
        features = [data[0][f"f{j}"].shape[1:3] for j in range(len(FEATURE_STAGES))]
        dequantise = [segmenter.read[name][1:] for name in FEATURE_STAGES]
        card.update(isnet_sha256=network_sha256(isnet.model, settings["isnet_model_sha256"]),
                    isnet_model_sha256=settings["isnet_model_sha256"], isnet_features=list(FEATURE_STAGES),
                    side=isnet.input_size, auxiliary=[c for c in CENTRES if c != centre])
    log(f"{samples} composites from {len(sprites)} sprites and {len(backgrounds)} backgrounds "
        f"in {time.perf_counter() - start:.0f} s")
    auxiliary = bool(card.get("auxiliary"))
    net = build_net(torch, features=features, centres=1 + auxiliary)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    F = torch.nn.functional
    for step in range(steps):
        idx = torch.randint(0, samples, (batch,), generator=gen)
        inputs, target, fg = _batch(torch, data, idx.numpy(), centre, dequantise)
        y = net(*inputs)

        def centre_losses(k):  # weights as in Panoptic-DeepLab: the heatmap is mostly zeros and needs the push
            off = (F.l1_loss(y[:, k + 1:k + 3], target[:, k + 1:k + 3], reduction="none") * fg).sum()
            return F.mse_loss(torch.sigmoid(y[:, k:k + 1]), target[:, k:k + 1]) * 200, off / fg.sum().clamp(min=1) * 10

        l_heat, l_off = centre_losses(0)
        l_fg = F.binary_cross_entropy_with_logits(y[:, -1:], fg)
        loss = l_heat + l_off + l_fg
        if auxiliary:
            l_aux = sum(centre_losses(3))
            loss = loss + l_aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            aux = f"auxiliary {l_aux.item():.3f} " if auxiliary else ""
            log(f"step {step}: centre {l_heat.item():.3f} offset {l_off.item():.3f} "
                f"foreground {l_fg.item():.3f} {aux}({time.perf_counter() - start:.0f} s)")
    _export(torch, net.eval(), out,
            {name: data[0][f"f{j}"].shape[1:] for j, name in enumerate(card.get("isnet_features", []))})
    card.update(final_losses={"centre": round(l_heat.item(), 4), "offset": round(l_off.item(), 4),
                              "foreground": round(l_fg.item(), 4),
                              **({"auxiliary": round(l_aux.item(), 4)} if auxiliary else {})},
                seconds=round(time.perf_counter() - start), torch=torch.__version__,
                python=platform.python_version(), sha256=sha256_file(out))
    write_json(card_path(out), card)
    return card


def _batch(torch, data: list[dict[str, np.ndarray]], idx: np.ndarray, centre: str,
           dequantise: list[tuple[float, int]]):
    """Samples `idx` of the training data -> (net inputs, targets, foreground) tensors; the
    targets are heat, dy, dx for `centre`, then for the other centre where the data has it.

    `data`: one part of in-memory arrays (x, heat, off, fg), or a feature cache's parts, whose
    features f0, f1, ... become floats by `dequantise` (scale, zero point) each."""
    if "heat" in data[0]:
        d = data[0]
        return ((torch.from_numpy(d["x"][idx]).float() / 255 - 0.5,),
                torch.from_numpy(np.concatenate([d["heat"][idx], d["off"][idx]], 1)), torch.from_numpy(d["fg"][idx]))
    ends = np.cumsum([len(d["x"]) for d in data])
    rows = {name: [] for name in data[0]}
    for i in np.sort(idx):  # in order: memory-mapped parts read faster front to back
        part = int(np.searchsorted(ends, i, side="right"))
        local = i - (ends[part - 1] if part else 0)
        for name, a in data[part].items():
            rows[name].append(a[local])
    stacked = {name: torch.from_numpy(np.stack(r).astype(np.float32)) for name, r in rows.items()}
    t, c = stacked.pop("t"), 3 * CENTRES.index(centre)
    x = stacked.pop("x") / 255 - 0.5
    feats = ((stacked[f"f{j}"] - zero) * scale for j, (scale, zero) in enumerate(dequantise))
    return (x, *feats), torch.cat([t[:, c:c + 3], t[:, 3 - c:6 - c]], 1), t[:, 6:7]


def _export(torch, net, out: Path, features: dict[str, tuple[int, ...]]) -> None:
    """The net's first centre and foreground as ONNX with sigmoid outputs; `features`: ISNet
    tensor name -> CxG'xG', its further inputs."""
    class Exported(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, *feats):
            y = self.net(x, *feats)
            return torch.sigmoid(y[:, :1]), y[:, 1:3], torch.sigmoid(y[:, net.head.out_channels - 1:])

    dummy = (torch.zeros(1, 3, INPUT, INPUT), *(torch.zeros(1, *shape) for shape in features.values()))
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(Exported(net), dummy, str(tmp), input_names=["input", *features],
                          output_names=["centres", "offsets", "foreground"], opset_version=17, dynamo=False)
