"""DVC stage `model`: fetch the default segmentation model -> models/isnet.onnx + its card, and
install what kirinuki ships -> models/splitter.onnx, models/head_splitter.onnx,
models/lbpcascade_animeface.xml (each with its card)."""
import sys
from pathlib import Path

from kirinuki.assets.fetch import ModelUnavailable, fetch_model, install_bundled
from kirinuki.core.config import load_params

params = load_params(Path("params.yaml"))
try:
    fetch_model(params.model)
    install_bundled(params.extract)
except ModelUnavailable as e:
    sys.exit(f"error: {e}")
