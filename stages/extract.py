"""DVC stage `extract`: data/ -> runs/extract/, speed figures -> metrics/extract.json.

Unlike `kirinuki extract`, a bad file fails the stage: the versioned data must be clean.
"""
import statistics
import sys
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.extract.run import run_extract
from kirinuki.core.imageio import write_json

s = run_extract(Path("data"), Path("runs/extract"), load_params(Path("params.yaml")).extract, progress=False)
write_json(Path("metrics/extract.json"), {
    "pages": s.pages, "characters": s.characters, "errors": len(s.errors),
    "median_s_per_page": round(statistics.median(s.seconds), 3) if s.seconds else None})
sys.exit(1 if s.errors else 0)
