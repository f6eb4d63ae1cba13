"""Where one run keeps its files: the DVC pipeline's run, a tracker run, a command's folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SCORES_NAME = "scores.jsonl"  # a run's grades, in its extract folder unless said otherwise


@dataclass(frozen=True)
class RunPaths:
    """Where one run keeps its outputs."""
    extract: Path  # labels.png, char_<k>.png, page.json per page; records.jsonl
    scores: Path  # scores.jsonl
    metrics: Path  # validate.json, grades.md, per_image.csv, per_cutout.csv, compare.json/.md
    reviews: Optional[Path] = None  # reviews.jsonl of the cut-outs (a tracker run's dashboard writes it)
    exports: Optional[Path] = None  # datasets.txt: the datasets exported from the run (`kirinuki export`)

    @classmethod
    def in_folder(cls, extract: Path) -> "RunPaths":
        """A run kept in its extract folder (the commands' defaults): grades and metrics beside the cut-outs."""
        return cls(extract=Path(extract), scores=Path(extract) / SCORES_NAME, metrics=Path(extract))

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
