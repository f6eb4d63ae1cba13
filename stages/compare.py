"""DVC stage `compare`: the QC verdict on this run. Per-image metrics vs those committed at
HEAD (paired statistics), and metrics/validate.json vs the floors in qc/thresholds.yaml ->
metrics/compare.{json,md}.

It records the verdict and lets the pipeline go on (so `dvc exp run` keeps a worse experiment
too, with its verdict); `make gate` (CI) is what fails on it.
"""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.core.runs import DVC_RUN
from kirinuki.pipeline import compare

if compare(DVC_RUN, "HEAD", load_params(Path("params.yaml")), thresholds=Path("qc/thresholds.yaml")):
    print("the QC gate fails on this run (metrics/compare.md says why); `make gate` exits 1 on it")
