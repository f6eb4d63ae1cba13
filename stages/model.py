"""DVC stage `model`: fetch the default segmentation model -> models/isnet.onnx + its card."""
import sys
from pathlib import Path

from kirinuki.assets.fetch import ModelUnavailable, fetch_model
from kirinuki.core.config import load_params

try:
    fetch_model(load_params(Path("params.yaml")).model)
except ModelUnavailable as e:
    sys.exit(f"error: {e}")
