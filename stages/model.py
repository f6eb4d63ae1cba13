"""DVC stage `model`: fetch the default segmentation model -> models/isnet.onnx + its card, and
install the splitters shipped with kirinuki -> models/splitter.onnx, models/head_splitter.onnx."""
import sys
from pathlib import Path

from kirinuki.assets.fetch import ModelUnavailable, fetch_model, install_splitters
from kirinuki.core.config import load_params

params = load_params(Path("params.yaml"))
try:
    fetch_model(params.model)
    install_splitters(params.extract)
except ModelUnavailable as e:
    sys.exit(f"error: {e}")
