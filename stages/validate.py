"""DVC stage `validate`: cut-outs + grades vs the ground truth beside data/ -> metrics/."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.qc.validate import run_validate

run_validate(Path("runs/extract"), Path("data"), Path("runs/scores.jsonl"),
             load_params(Path("params.yaml")).validation, Path("metrics/validate.json"),
             Path("metrics/per_image.csv"), Path("metrics/per_cutout.csv"))
