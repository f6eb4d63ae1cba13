"""Framing tag of a cut-out (L2): full_body, cowboy_shot, upper_body, portrait or close-up.

A small CNN (`kirinuki train-framing`, train/framing.py) looks at the cut-out in grey, letterboxed
on white (core/framing.framing_input), and answers four ordered questions: does the visible body
reach past the close-up, the portrait, the upper body, the cowboy shot? The kind is how many answers
are yes; the confidence is the least sure answer. The shipped model is `quality/framing.onnx`, its
card (data, figures) beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from kirinuki.core.config import ConfigError
from kirinuki.core.framing import decode, framing_input
from kirinuki.core.sessions import onnx_session

DEFAULT_FRAMING_MODEL = Path(__file__).parent / "framing.onnx"


class FramingTagger:
    """The framing CNN as ONNX: input [N,1,64,64] (framing_input), output [N,4] probabilities."""

    def __init__(self, model: Optional[Path] = None):
        self.path = Path(model) if model else DEFAULT_FRAMING_MODEL
        if not self.path.is_file():
            raise ConfigError(f"score.framing_model {self.path}: no such file (`kirinuki train-framing` makes one)")
        self.session = onnx_session(self.path, threads=1)

    def __call__(self, image: np.ndarray) -> tuple[str, float]:
        (probs,) = self.session.run(None, {"input": framing_input(image)[None, None]})
        return decode(probs[0])
