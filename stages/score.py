"""DVC stage `score`: runs/extract/ -> runs/scores.jsonl (outside the extract folder,
so that score-only param changes never invalidate extract)."""
import sys
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.core.runs import DVC_RUN
from kirinuki.pipeline import score

if score(DVC_RUN, load_params(Path("params.yaml"))).unreadable:
    sys.exit(1)  # each unreadable cut-out was named; the stage fails, as extract does on a bad page
