"""train-splitter: teach the splitter (extract.split) where one character ends and the next begins.

train_splitter makes the composites (train.data), trains the U-Net (train.net) on them
on CPU, and writes the ONNX with its card beside it. Needs torch (the `train` extra);
seeded, so the same inputs and arguments give the same network.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Callable

from kirinuki.core.cards import card_path, sha256_file
from kirinuki.core.imageio import write_json
from kirinuki.train.data import CENTRES, GRID, INPUT, load_backgrounds, load_sprites, training_set
from kirinuki.train.net import build_net, export_onnx


def train_splitter(sprite_dirs: list[Path], background_dirs: list[Path], out: Path, *, steps: int, samples: int,
                   seed: int, centre: str, drawn_share: float, threads: int, batch: int = 16, manga_share: float = 0.3,
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Train on `samples` composites for `steps` batches; write the ONNX to `out` and its card beside it
    (the options' defaults are `kirinuki train-splitter`'s)."""
    try:
        import torch
    except ImportError:
        raise RuntimeError("train-splitter needs torch: pip install 'kirinuki[train]'") from None
    if centre not in CENTRES:
        raise ValueError(f"train-splitter: centre {centre!r} is not one of {', '.join(CENTRES)}")
    sprites, backgrounds = load_sprites(sprite_dirs, log), load_backgrounds(background_dirs, log)
    if not sprites or not backgrounds:
        raise ValueError(f"train-splitter: {len(sprites)} sprites and {len(backgrounds)} backgrounds found; "
                         "need at least one of each")
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    x, heat, off, fg = (torch.from_numpy(a)
                        for a in training_set(sprites, backgrounds, samples, seed, manga_share, centre, drawn_share))
    log(f"{samples} composites from {len(sprites)} sprites and {len(backgrounds)} backgrounds "
        f"in {time.perf_counter() - start:.0f} s")
    net = build_net(torch)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    F = torch.nn.functional
    for step in range(steps):
        idx = torch.randint(0, samples, (batch,), generator=gen)
        y = net(x[idx].float() / 255 - 0.5)
        m = fg[idx]
        # weights as in Panoptic-DeepLab: the heatmap is mostly zeros and needs the push
        l_heat = F.mse_loss(torch.sigmoid(y[:, :1]), heat[idx]) * 200
        l_off = (F.l1_loss(y[:, 1:3], off[idx], reduction="none") * m).sum() / m.sum().clamp(min=1) * 10
        l_fg = F.binary_cross_entropy_with_logits(y[:, 3:], m)
        loss = l_heat + l_off + l_fg
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}: centre {l_heat.item():.3f} offset {l_off.item():.3f} "
                f"foreground {l_fg.item():.3f} ({time.perf_counter() - start:.0f} s)")
    export_onnx(torch, net.eval(), out)
    card = {"kind": "kirinuki splitter", "input": [1, 3, INPUT, INPUT], "grid": GRID,
            "normalisation": "RGB/255 - 0.5, top-left aligned (split.grid_input)",
            "sprite_dirs": [str(d) for d in sprite_dirs], "background_dirs": [str(d) for d in background_dirs],
            "sprites": len(sprites), "backgrounds": len(backgrounds), "samples": samples, "steps": steps,
            "batch": batch, "seed": seed, "manga_share": manga_share, "centre": centre, "drawn_share": drawn_share,
            "final_losses": {"centre": round(l_heat.item(), 4), "offset": round(l_off.item(), 4),
                             "foreground": round(l_fg.item(), 4)},
            "seconds": round(time.perf_counter() - start), "torch": torch.__version__,
            "python": platform.python_version(), "sha256": sha256_file(out)}
    write_json(card_path(out), card)
    return card
