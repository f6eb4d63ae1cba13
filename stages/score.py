"""DVC stage `score`: runs/extract/ -> runs/scores.jsonl (outside the extract folder,
so that score-only param changes never invalidate extract)."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.quality.score import run_score

run_score(Path("runs/extract"), load_params(Path("params.yaml")).score, Path("runs/scores.jsonl"))
