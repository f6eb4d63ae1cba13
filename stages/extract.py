"""DVC stage `extract`: data/ -> runs/extract/, counts -> metrics/extract.json.

Unlike `kirinuki extract`, a bad file fails the stage: the versioned data must be clean.
No timings in the outputs: the same inputs give byte-identical outputs, so a fresh clone's
`dvc repro` leaves dvc.lock as committed (speed is `kirinuki bench`'s job).
"""
import sys
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.core.imageio import write_json
from kirinuki.core.runs import DVC_RUN
from kirinuki.pipeline import extract

s = extract(Path("data"), DVC_RUN, load_params(Path("params.yaml")), progress=False, timings=False)
write_json(Path("metrics/extract.json"), {
    "pages": s.pages, "characters": s.characters, "errors": len(s.errors)})
sys.exit(1 if s.errors else 0)
