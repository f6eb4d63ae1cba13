"""DVC stage `compare`: the QC gate on this run. Per-image metrics vs those committed at
HEAD (paired statistics), and metrics/validate.json vs the floors in qc/thresholds.yaml.

Exits 1 when the gate fails, which stops `dvc repro` there.
"""
import sys
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.pipeline import DVC_RUN, compare

sys.exit(compare(DVC_RUN, "HEAD", load_params(Path("params.yaml")), thresholds=Path("qc/thresholds.yaml")))
