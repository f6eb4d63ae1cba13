"""Where a tracker run lives: `<root>/<author>/org/<work>` in, `<root>/<author>/tracker-workspace/<ID>/` out.

A tracker ID (e.g. QCC-011) names a ticket in the user's sheet and a folder and a URL
path here, so it is restricted to letters, digits and inner `-`/`_`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kirinuki.core.config import TRACKER_ID_MAX, TRACKER_ID_PATTERN
from kirinuki.core.runs import SCORES_NAME
from kirinuki.dataset.usage import EXPORTS_NAME
from kirinuki.dataset.reviews import REVIEWS_NAME

TRACKER_ID = re.compile(TRACKER_ID_PATTERN)
WORKSPACES = "tracker-workspace"
OUTBOX_NAME = ".kirinuki-outbox.jsonl"


class WorkspaceError(Exception):
    """A bad tracker ID or input layout; str() is a one-line reason."""


def check_tracker_id(tracker_id: str) -> str:
    if not TRACKER_ID.fullmatch(tracker_id or "") or len(tracker_id) > TRACKER_ID_MAX:
        raise WorkspaceError(f"{tracker_id!r}: not a tracker ID (letters and digits, joined by - or _, e.g. QCC-011)")
    return tracker_id


@dataclass(frozen=True)
class Workspace:
    """The folders of one tracker run."""
    root: Path  # holds <author>/ folders
    author: str
    tracker_id: str

    @property
    def dir(self) -> Path:
        return self.root / self.author / WORKSPACES / self.tracker_id

    extract = property(lambda self: self.dir / "extract")       # run_extract output, scores.jsonl
    scores = property(lambda self: self.extract / SCORES_NAME)  # the run's grades
    metrics = property(lambda self: self.dir / "metrics")       # validate + compare outputs
    dashboard = property(lambda self: self.dir / "dashboard")   # the only folder `serve` exposes
    reviews = property(lambda self: self.dir / REVIEWS_NAME)  # approve/exclude verdicts, appended by `serve`
    exports = property(lambda self: self.dir / EXPORTS_NAME)  # datasets exported from it, by `kirinuki export`
    log = property(lambda self: self.dir / "track.log")
    state = property(lambda self: self.dir / "track.json")      # status and summary of the last run
    pidfile = property(lambda self: self.dir / "track.pid")     # present while a run works

    @property
    def outbox(self) -> Path:
        """Ticket updates that could not reach the sheet; shared by all trackers under root."""
        return self.root / OUTBOX_NAME


def workspace_for_input(work: Path, tracker_id: str) -> Workspace:
    """Workspace of a run over `work` = <root>/<author>/org/<work>."""
    work = Path(os.path.abspath(work))  # not resolve(): a symlinked work folder keeps its place
    if not work.is_dir():
        raise WorkspaceError(f"{work}: {'not a folder' if work.exists() else 'no such folder'} (a work folder <root>/<author>/org/<work>)")
    if work.parent.name != "org":
        raise WorkspaceError(f"{work}: expected a work folder <root>/<author>/org/<work>")
    root, author = work.parents[2], work.parents[1].name
    for other in sorted(root.glob(f"*/{WORKSPACES}/{check_tracker_id(tracker_id)}")):
        if other.parent.parent.name != author:  # one ID is one ticket row and one dashboard
            raise WorkspaceError(f"{tracker_id} is already another author's tracker ({other}); choose another ID")
    return Workspace(root, author, tracker_id)


def find_workspaces(root: Path) -> dict[str, Workspace]:
    """Tracker ID -> its workspace, for every `<root>/<author>/tracker-workspace/<ID>/`.

    An ID found under two authors keeps the first author in name order.
    """
    found: dict[str, Workspace] = {}
    for d in sorted(Path(root).glob(f"*/{WORKSPACES}/*")):
        if d.is_dir() and TRACKER_ID.fullmatch(d.name) and d.name not in found:
            found[d.name] = Workspace(Path(root), d.parent.parent.name, d.name)
    return found


# --- is a run alive? -------------------------------------------------------------------------

def process_start(pid: int) -> Optional[str]:
    """When process `pid` started (Linux: clock ticks since boot, from /proc), None if unknown;
    with the pid it tells a live run from a new process that reuses a dead run's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]  # field 22, after the parenthesised name


def pid_alive(pid: Optional[int], started: Optional[str] = None) -> bool:
    """Is `pid` a live process (and, given `started`, the same one that recorded it)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start(pid)
    return started is None or now is None or now == started


INTERRUPTED_LABEL = "中断 interrupted"


def live_state(state: dict) -> dict:
    """A run's track.json as it is now: one that says `running` but whose process is gone
    (killed, machine restarted) reads `interrupted`; the same command resumes it."""
    if state.get("status") != "running" or pid_alive(state.get("pid"), state.get("pid_start")):
        return state
    return {**state, "status": "interrupted", "status_label": INTERRUPTED_LABEL}

