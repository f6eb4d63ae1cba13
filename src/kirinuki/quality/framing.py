"""Framing tag of a cut-out (L2): full_body, cowboy_shot, upper_body, portrait or close-up.

A small CNN (`kirinuki train-framing`, train/framing.py) looks at the cut-out in grey, letterboxed
on white (core/framing.framing_input), and answers four ordered questions: does the visible body
reach past the close-up, the portrait, the upper body, the cowboy shot? core/framing.decode turns
the answers into a kind and a confidence. The shipped model is `quality/framing.onnx`, its card
(data, sha256) beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kirinuki.core.config import ConfigError
from kirinuki.core.framing import decode, framing_input
from kirinuki.core.sessions import onnx_session


class FramingTagger:
    """The framing CNN as ONNX: input [N,1,64,64] (framing_input), output [N,4] probabilities."""

    def __init__(self, model: Path):
        if not Path(model).is_file():
            raise ConfigError(f"score.framing_model {model}: no such file (`kirinuki train-framing` makes one)")
        try:
            self.session = onnx_session(Path(model), threads=1)
            self.input = self.session.get_inputs()[0].name
        except Exception as e:  # onnxruntime raises its own types for a corrupt or foreign file
            raise ConfigError(f"score.framing_model {model}: not a usable ONNX model "
                              f"({str(e).splitlines()[0][:120]})") from None

    def __call__(self, image: np.ndarray) -> tuple[str, float]:
        (probs,) = self.session.run(None, {self.input: framing_input(image)[None, None]})
        return decode(probs[0])
