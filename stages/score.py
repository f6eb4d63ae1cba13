"""DVC stage `score`: runs/extract/ -> runs/scores.jsonl (outside the extract folder,
so that score-only param changes never invalidate extract)."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.pipeline import DVC_RUN, score

score(DVC_RUN, load_params(Path("params.yaml")))
