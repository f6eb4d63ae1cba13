"""The chain extract -> score -> validate -> compare, wired once.

The DVC stages (stages/*.py, one step each) and `kirinuki track` (all steps in one run,
extraction under a per-page time limit) both call these steps; a `RunPaths` says where one
run keeps its files, so the two differ only in that value. Each step imports its stage's
code when it runs, so that a DVC stage depends on its own modules only (dvc.yaml's deps,
checked by tests/test_layout.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from kirinuki.core.config import Params
from kirinuki.core.runs import RunPaths


def extract(inputs: Path, run: RunPaths, params: Params, **kwargs):
    """-> ExtractSummary; `kwargs` go to run_extract (progress, log, on_page)."""
    from kirinuki.extract.run import run_extract
    return run_extract(inputs, run.extract, params.extract, **kwargs)


def score(run: RunPaths, params: Params, **kwargs):
    """-> quality.score.Scored: the rows, and how many cut-outs could not be read; `kwargs` go
    to run_score (log)."""
    from kirinuki.quality.score import run_score
    return run_score(run.extract, params.score, run.scores, **kwargs)


def failures(run: RunPaths, params: Params) -> dict:
    """The run's flagged and low-grade cut-outs grouped into patterns -> metrics/failures/."""
    from kirinuki.qc.failures import write_failures
    return write_failures(run.extract, run.scores, run.failures, params.failures)


def validate(run: RunPaths, gt: Path, params: Params) -> dict:
    from kirinuki.qc.validate import run_validate
    return run_validate(run.extract, gt, run.scores, params.validation, run.validate_json, run.per_image,
                        run.per_cutout, run.reviews)


def compare(run: RunPaths, baseline: Optional[str], params: Params, thresholds: Optional[Path] = None) -> int:
    """Paired statistics vs `baseline` (a git revision or a per_image.csv) and, given
    `thresholds`, the floors; the exit code (1: the gate failed). With no baseline the report
    holds this run's figures alone."""
    import pandas as pd

    from kirinuki.core.imageio import write_json
    from kirinuki.qc.compare import paired_compare, run_compare
    if baseline is None:
        table = pd.read_csv(run.per_image, dtype={"image": str})
        write_json(run.compare_json, paired_compare(None, table, params.compare))
        return 0
    return run_compare(run.per_image, baseline, params.compare, run.compare_json, run.compare_md,
                       thresholds=thresholds, summary=run.validate_json)
