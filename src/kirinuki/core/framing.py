"""The framing vocabulary (box ground truth's `kind`, the score's L2 tag, captions) and what the
framing model sees: one source for the tagger (quality/framing.py) and its training (train/framing.py)."""
from __future__ import annotations

import cv2
import numpy as np

# Framing kinds, judged by the figure's visible body (whatever hides the rest: frame, balloon, desk):
# full_body head to at least the ankles; cowboy_shot some thigh below the crotch, no feet;
# upper_body down to between waist and crotch; portrait head and both shoulders, cut above the
# waist; close-up the face fills it, at most the neck or a sliver of collar.
KINDS = ("full_body", "cowboy_shot", "upper_body", "portrait", "close-up")
# the model counts from the tightest framing up: how far down the body the figure reaches
BY_EXTENT = tuple(reversed(KINDS))
INPUT = 64  # the model's input side


def framing_input(image: np.ndarray) -> np.ndarray:
    """HxWx4 RGBA cut-out (or HxWx3 RGB crop) -> INPUTxINPUT float32 grey in -0.5..0.5: the figure
    composited on white, its aspect kept (letterboxed, centred)."""
    im = image.astype(np.float32)
    if im.shape[2] == 4:
        alpha = im[..., 3:] / 255.0
        im = im[..., :3] * alpha + 255.0 * (1.0 - alpha)
    grey = cv2.cvtColor(np.clip(im, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    k = INPUT / max(h, w)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    small = cv2.resize(grey, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.full((INPUT, INPUT), 255, np.uint8)
    y0, x0 = (INPUT - nh) // 2, (INPUT - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out.astype(np.float32) / 255.0 - 0.5


def decode(probs: np.ndarray) -> tuple[str, float]:
    """The four 'reaches past close-up / portrait / upper body / cowboy shot' probabilities ->
    (kind: how many answers before the first no, confidence: the least sure answer, 0 a coin toss ..
    1 certain; 0 where the answers contradict each other, a yes after a no)."""
    yes = probs > 0.5
    extent = int(np.argmin(yes)) if not yes.all() else len(yes)
    ordered = not yes[extent:].any()
    return BY_EXTENT[extent], round(float(np.abs(probs - 0.5).min() * 2), 4) if ordered else 0.0
