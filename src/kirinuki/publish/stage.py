"""The DVC stage `publish`: the pipeline's run -> its dashboard and its ticket.

A tracker run publishes from its workspace (track.py); this publishes the run that `dvc repro`
made (core.runs.DVC_RUN) under `publish.tracker_id`, into `publish.workspace`: `dashboard/`
(a DVC output; it holds no clock time, so the same run gives the same bytes) and the ticket
outbox, where the update waits while the sheet cannot be reached (no credentials, offline).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from kirinuki.core.config import Params
from kirinuki.core.imageio import read_json, read_jsonl
from kirinuki.core.runs import RunPaths
from kirinuki.publish.dashboard import pages_without_cutouts, write_dashboard
from kirinuki.publish.tickets import Ticket, details_text, now_text, publish_tickets
from kirinuki.publish.workspace import OUTBOX_NAME
from kirinuki.quality.score import GRADES


def run_state(run: RunPaths, params: Params) -> dict:
    """What the dashboard and the ticket say of a finished pipeline run, from its files alone."""
    rows = read_jsonl(run.scores) if run.scores.is_file() else []
    extract = read_json(run.extract / "run.json") or {}
    metrics, compare = read_json(run.validate_json), read_json(run.compare_json)
    p = params.publish
    return {"tracker_id": p.tracker_id, "author": "dvc repro", "work": str(run.extract),
            "status": "done", "status_label": p.sheets.done_status, "started": None, "finished": None,
            "pages": extract.get("pages", 0), "resumed": 0, "errors": extract.get("errors", []),
            "characters": len(rows), "grades": {g: sum(r["grade"] == g for r in rows) for g in GRADES},
            "lora_ok": sum(bool(r["lora_ok"]) for r in rows), "metrics": metrics,
            "verdict": compare and compare.get("verdict"), "baseline": compare and compare.get("baseline_source"),
            "params_hash": extract.get("params_hash"), "summary": None, "depends_on": [],
            "dashboard_url": p.dashboard_url.replace("{id}", p.tracker_id),
            "pages_without_cutouts": pages_without_cutouts(run.extract, rows)}


def publish_run(run: RunPaths, params: Params, env: Mapping[str, str] = os.environ,
                log: Callable[[str], None] = print) -> Path:
    """Write the dashboard and send (or queue) the ticket; return the dashboard page. Never
    fails for an unreachable sheet: the update then waits in the outbox."""
    p = params.publish
    state = run_state(run, params)
    page = write_dashboard(run, Path(p.workspace) / "dashboard", state, p.dashboard, params.extract.max_pixels, log)
    log(f"dashboard: {page}")
    at = now_text(p.sheets)
    ticket = Ticket(p.tracker_id, at=at, status=p.sheets.done_status, priority=None, summary=None,
                    details=details_text({**state, "finished": at}), dashboard=state["dashboard_url"], depends_on=None)
    try:
        log(publish_tickets([ticket], p.sheets, Path(p.workspace) / OUTBOX_NAME, env=env).message)
    except ValueError as e:  # a damaged outbox: say so; the dashboard is published
        log(f"ticket sheet not updated: {e}")
    return page
