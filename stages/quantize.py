"""DVC stage `quantize`: models/isnet.onnx -> its static int8 copy models/isnet.int8.onnx + card."""
import sys
from pathlib import Path

from kirinuki.assets.quantize import QuantizeError, build_int8
from kirinuki.core.config import load_params

params = load_params(Path("params.yaml"))
try:
    build_int8(params.quantize, params.extract)
except QuantizeError as e:
    sys.exit(f"error: {e}")
