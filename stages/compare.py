"""DVC stage `compare`: this run's per-image metrics vs those committed at HEAD.

Exits 1 on a significant regression, which stops `dvc repro` there.
"""
import sys
from pathlib import Path

from kirinuki.compare import run_compare
from kirinuki.config import load_params

sys.exit(run_compare(Path("metrics/per_image.csv"), "HEAD", load_params(Path("params.yaml")).compare,
                     Path("metrics/compare.json"), Path("metrics/compare.md")))
