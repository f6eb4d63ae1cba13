"""DVC stage `validate`: cut-outs + grades vs the ground truth beside data/ -> metrics/."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.pipeline import DVC_RUN, validate

validate(DVC_RUN, Path("data"), load_params(Path("params.yaml")))
