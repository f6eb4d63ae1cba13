"""DVC stage `validate`: cut-outs + grades vs the ground truth beside data/ -> metrics/ (and how
often the grade agreed with the reviews in export.reviews)."""
from dataclasses import replace
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.pipeline import DVC_RUN, validate

params = load_params(Path("params.yaml"))
validate(replace(DVC_RUN, reviews=params.export.reviews), Path("data"), params)
