"""DVC stage `compare`: the QC gate on this run. Per-image metrics vs those committed at
HEAD (paired statistics), and metrics/validate.json vs the floors in qc/thresholds.yaml.

Exits 1 when the gate fails, which stops `dvc repro` there.
"""
import sys
from pathlib import Path

from kirinuki.qc.compare import run_compare
from kirinuki.core.config import load_params

sys.exit(run_compare(Path("metrics/per_image.csv"), "HEAD", load_params(Path("params.yaml")).compare,
                     Path("metrics/compare.json"), Path("metrics/compare.md"),
                     thresholds=Path("qc/thresholds.yaml"), summary=Path("metrics/validate.json")))
