"""The chain extract -> score -> validate -> compare, wired once.

The DVC stages (stages/*.py, one step each) and `kirinuki track` (all steps in one run,
extraction under a per-page time limit) both call these steps; a `RunPaths` says where one
run keeps its files, so the two differ only in that value. Each step imports its stage's
code when it runs, so that a DVC stage depends on its own modules only (dvc.yaml's deps,
checked by tests/test_layout.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kirinuki.core.config import Params


@dataclass(frozen=True)
class RunPaths:
    """Where one run keeps its outputs."""
    extract: Path  # labels.png, char_<k>.png, page.json per page; records.jsonl
    scores: Path  # scores.jsonl
    metrics: Path  # validate.json, grades.md, per_image.csv, per_cutout.csv, compare.json/.md
    reviews: Optional[Path] = None  # reviews.jsonl of the cut-outs (a tracker run's dashboard writes it)
    exports: Optional[Path] = None  # datasets.txt: the datasets exported from the run (`kirinuki export`)

    @property
    def validate_json(self) -> Path:
        return self.metrics / "validate.json"

    @property
    def per_image(self) -> Path:
        return self.metrics / "per_image.csv"

    @property
    def per_cutout(self) -> Path:
        return self.metrics / "per_cutout.csv"

    @property
    def failures(self) -> Path:  # failures.json, map.png, examples/ (`kirinuki failures`)
        return self.metrics / "failures"

    @property
    def compare_json(self) -> Path:
        return self.metrics / "compare.json"

    @property
    def compare_md(self) -> Path:
        return self.metrics / "compare.md"


# the DVC pipeline's run (dvc.yaml names the same paths)
DVC_RUN = RunPaths(extract=Path("runs/extract"), scores=Path("runs/scores.jsonl"), metrics=Path("metrics"))


def extract(inputs: Path, run: RunPaths, params: Params, **kwargs):
    """-> ExtractSummary; `kwargs` go to run_extract (progress, log, on_page)."""
    from kirinuki.extract.run import run_extract
    return run_extract(inputs, run.extract, params.extract, **kwargs)


def score(run: RunPaths, params: Params) -> list[dict]:
    from kirinuki.quality.score import run_score
    return run_score(run.extract, params.score, run.scores)


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
