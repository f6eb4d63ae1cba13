"""DVC stage `validate`: cut-outs + grades vs the ground truth beside data/ -> metrics/ (and how
often the grade agreed with the reviews in export.reviews)."""
import sys
from dataclasses import replace
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.core.runs import DVC_RUN
from kirinuki.pipeline import validate

params = load_params(Path("params.yaml"))
if validate(replace(DVC_RUN, reviews=params.export.reviews), Path("data"), params)["gt_refused"]:
    sys.exit(1)  # each refused ground-truth file was named: the versioned data must be clean, as for extract
