"""DVC stage `publish`: the run's dashboard (runs/publish/dashboard/, with the maintainers' reviews
in export.reviews) and its ticket (sent to the sheet, or queued in runs/publish/.kirinuki-outbox.jsonl
while it cannot be reached)."""
from dataclasses import replace
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.core.runs import DVC_RUN
from kirinuki.publish.stage import publish_run

params = load_params(Path("params.yaml"))
publish_run(replace(DVC_RUN, reviews=params.export.reviews), params)
