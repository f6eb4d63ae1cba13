"""DVC stage `publish`: the run's dashboard (runs/publish/dashboard/) and its ticket (sent to the
sheet, or queued in runs/publish/.kirinuki-outbox.jsonl while it cannot be reached)."""
from pathlib import Path

from kirinuki.core.config import load_params
from kirinuki.pipeline import DVC_RUN
from kirinuki.publish.stage import publish_run

publish_run(DVC_RUN, load_params(Path("params.yaml")))
