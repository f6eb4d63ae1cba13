"""Ticket rows in the user's Google Sheet, one per tracker ID, upserted through gspread
(publish/sheets.py: the `publish` extra; without it every update waits in the outbox).

A publish reads the sheet once, then writes every changed row in one values batchUpdate
and every new row in one append. Updates that cannot reach the sheet (no credentials,
Google unreachable, retries spent) wait in a local outbox (JSON lines) and are replayed,
in order, ahead of the next publish's own updates, so nothing is lost.

Credentials: `$KIRINUKI_GOOGLE_CREDENTIALS`, the path of a service-account JSON file
outside any git repository, or the JSON itself (also in quotes, or base64): see
core/secrets.py. They are never printed: every message and every cell goes through `redact`.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional
from zoneinfo import ZoneInfo

from kirinuki.core.config import SheetColumns, SheetsParams
from kirinuki.core.imageio import read_jsonl, remove_stale_temps, write_jsonl
from kirinuki.core.secrets import redact, redact_obj
from kirinuki.publish.workspace import check_tracker_id


class SheetsUnavailable(Exception):
    """The sheet cannot be written now; str() is a one-line reason without secrets."""


@dataclass(frozen=True)
class Ticket:
    """One update of a ticket row. None leaves a cell as it is; `at` becomes the updated
    date-time (and the registered one when the row is new)."""
    id: str
    at: str
    status: Optional[str] = None
    priority: Optional[str] = None
    summary: Optional[str] = None
    details: Optional[str] = None
    dashboard: Optional[str] = None
    depends_on: Optional[tuple[str, ...]] = None  # "this ticket needs these first"


def now_text(params: SheetsParams) -> str:
    return datetime.now(ZoneInfo(params.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def check_ticket(t: Ticket, params: SheetsParams) -> Ticket:
    """Validate the names the user types; raises ValueError naming the bad one."""
    check_tracker_id(t.id)
    if t.priority is not None and t.priority not in params.priorities:
        raise ValueError(f"priority {t.priority!r} is not one of {', '.join(params.priorities)} (publish.sheets.priorities)")
    if t.status is not None and t.status not in params.statuses:
        raise ValueError(f"status {t.status!r} is not one of {', '.join(params.statuses)} (publish.sheets.statuses)")
    for dep in t.depends_on or ():
        check_tracker_id(dep)
        if dep == t.id:
            raise ValueError(f"{t.id} cannot depend on itself")
    return t


# --- pure planning ------------------------------------------------------------------------

@dataclass(frozen=True)
class SheetPlan:
    """What one publish writes: whole rows by 1-based row number, and rows to append."""
    updates: list[tuple[int, list[str]]]
    appends: list[list[str]]


def _cells(t: Ticket, new: bool) -> dict[str, str]:
    """Ticket field -> cell text, for the fields this update sets."""
    cells = {"id": t.id, "updated": t.at, **({"registered": t.at} if new else {})}
    for name in ("status", "priority", "summary", "details", "dashboard"):
        if getattr(t, name) is not None:
            cells[name] = getattr(t, name)
    if t.depends_on is not None:
        cells["depends_on"] = ", ".join(t.depends_on)
    return cells


def plan_upsert(values: list[list[str]], tickets: list[Ticket], columns: SheetColumns,
                defaults: Mapping[str, str]) -> SheetPlan:
    """Apply `tickets` in order to the sheet's current `values` (header row first, as
    gspread returns them) and say which rows change.

    Rows are found by the ID column; a new ID gets a new row with its registered time,
    and `defaults` (field -> text) for the fields its update leaves unset. Header cells missing from the sheet are added
    after its last column; other columns are left untouched.
    """
    heads = columns.model_dump()
    header = list(values[0]) if values else []
    header += [h for h in heads.values() if h not in header]
    col = {name: header.index(h) for name, h in heads.items()}
    width = len(header)
    before = [list(r) + [""] * (width - len(r)) for r in values]
    table = [header] + [r[:] for r in before[1:]]
    where = {}
    for i, row in enumerate(table[1:], 1):
        where.setdefault(row[col["id"]].strip(), i)
    for t in tickets:
        new = t.id not in where
        if new:
            table.append([""] * width)
            where[t.id] = len(table) - 1
        row = table[where[t.id]]
        cells = {**defaults, **_cells(t, new)} if new else _cells(t, new)
        for name, text in cells.items():
            row[col[name]] = text
    n_old = len(before)
    updates = [(i + 1, table[i]) for i in range(n_old) if table[i] != before[i]]
    return SheetPlan(updates=updates, appends=table[n_old:])


# --- outbox and publish ---------------------------------------------------------------------

@contextmanager
def _locked(outbox: Path) -> Iterator[None]:
    """One publisher at a time per outbox (background runs may finish together)."""
    outbox.parent.mkdir(parents=True, exist_ok=True)
    with open(outbox.with_name(outbox.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ticket_of(row) -> Ticket:
    if not isinstance(row, dict):
        raise TypeError("not an object")
    return Ticket(**{**row, "depends_on": None if row.get("depends_on") is None else tuple(row["depends_on"])})


def read_outbox(outbox: Path) -> list[Ticket]:
    """Pending updates, oldest first; raises ValueError naming the file for a damaged one."""
    if not outbox.is_file():
        return []
    try:
        return [_ticket_of(r) for r in read_jsonl(outbox)]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{outbox}: not an outbox of ticket updates ({type(e).__name__}); "
                         "fix or move it to publish again") from None


def _salvage_outbox(outbox: Path) -> tuple[list[Ticket], str]:
    """A damaged outbox: its readable updates, and a note. The file is set aside, renamed
    with a timestamp (`<name>.damaged-<YYYYmmdd-HHMMSS>`), so nothing in it is lost."""
    kept, bad = [], 0
    with open(outbox, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                kept.append(_ticket_of(json.loads(line)))
            except (ValueError, TypeError):
                bad += 1
    aside = outbox.with_name(f"{outbox.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{outbox.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    os.replace(outbox, aside)
    return kept, (f"outbox {outbox} was damaged ({bad} unreadable line(s)): set aside as {aside.name}, "
                  f"{len(kept)} readable update(s) kept. ")


@dataclass(frozen=True)
class PublishResult:
    sent: int      # updates written to the sheet, replayed ones included
    replayed: int  # of which came from the outbox
    queued: int    # updates waiting in the outbox after this publish
    message: str


def publish_tickets(tickets: list[Ticket], params: SheetsParams, outbox: Path,
                    env: Mapping[str, str] = os.environ, sleep: Callable[[float], None] = time.sleep
                    ) -> PublishResult:
    """Send the outbox's pending updates and `tickets` to the sheet in one publish.

    Never raises for an unreachable sheet: the updates then stay in (or join) the
    outbox, and the message says where and that the next publish sends them.
    """
    outbox = Path(outbox)
    tickets = [Ticket(**redact_obj(asdict(t), env)) if _has_secret(t, env) else t for t in tickets]
    with _locked(outbox):
        remove_stale_temps(outbox.parent, prefix=f".{outbox.stem}.")  # a write killed half-way
        note = ""
        try:
            pending = read_outbox(outbox)
        except ValueError:  # damaged: set it aside, keep what can be read, and go on
            pending, note = _salvage_outbox(outbox)
        batch = pending + list(tickets)
        try:
            plan = _send(batch, params, env, sleep)
        except SheetsUnavailable as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            write_jsonl(outbox, [asdict(t) for t in batch])
            return PublishResult(0, 0, len(batch), redact(
                f"{note}ticket sheet not updated: {reason}. {len(tickets)} update(s) kept in {outbox} "
                f"({len(batch)} pending); the next publish sends them", env))
        outbox.unlink(missing_ok=True)
        replayed = f", {len(pending)} of them replayed from the outbox" if pending else ""
        return PublishResult(len(batch), len(pending), 0, redact(
            f"{note}ticket sheet updated: {len(batch)} update(s){replayed}; "
            f"{len(plan.updates)} row(s) rewritten, {len(plan.appends)} appended", env))


def _send(batch: list[Ticket], params: SheetsParams, env: Mapping[str, str], sleep):
    """Write `batch` to the sheet (publish/sheets.py, the `publish` extra); SheetsUnavailable
    with a one-line reason when there is no sheet, no client library or no answer."""
    if not params.spreadsheet_key:
        raise SheetsUnavailable("no sheet configured (publish.sheets.spreadsheet_key is empty)")
    try:
        from kirinuki.publish import sheets
    except ImportError as e:
        raise SheetsUnavailable(f"the Google Sheets client is not installed ({e.name}): "
                                "pip install 'kirinuki[publish]'") from None
    try:
        return sheets.send_tickets(batch, params, sheets.load_credentials(params, env), sleep)
    except sheets.ERRORS as e:
        raise SheetsUnavailable(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def _has_secret(t: Ticket, env: Mapping[str, str]) -> bool:
    """Does a field the user or a run wrote carry a secret? (then it is redacted before it is sent or kept)"""
    return any(isinstance(v, str) and redact(v, env) != v for v in asdict(t).values())


def details_text(state: dict) -> str:
    """The ticket's details cell of a run (track.json's state): what it did and measured, in one paragraph."""
    head = f"{state['finished'] or state['started']} {state['status_label']}"
    if state["status"] == "stopped":
        st = state["stopped"]
        return (f"{head}: page {st['page']} ran {st['seconds']:.0f} s (limit {st['limit_s']:g} s); "
                f"run stopped, the same command resumes")
    if state["status"] == "failed":
        return f"{head}: {state['error']}"
    grades = " / ".join(f"{g} {n}" for g, n in state["grades"].items())
    parts = [f"{head}: {state['pages']} pages ({state['resumed']} resumed), {state['characters']} cut-outs",
             grades, f"LoRA OK {state['lora_ok']}"]
    v = state.get("metrics") or {}
    if v.get("n_images"):  # label-map ground truth
        parts.append(f"instance mIoU {v['instance_miou']}, union mIoU {v['union_miou']}, "
                     f"P {v['precision']} / R {v['recall']}")
    if v.get("boxes"):  # box ground truth of real pages
        b = v["boxes"]
        parts.append(f"figure recall {b['figure_recall']}, precision {b['figure_precision']}, clean {b['clean_rate']}")
    if state.get("verdict"):
        parts.append(f"compare: {state['verdict']}")
    if state["errors"]:
        parts.append(f"{len(state['errors'])} unreadable file(s)")
    return " · ".join(parts)


def ticket_update(tracker_id: str, params: SheetsParams, **fields) -> Ticket:
    """A checked Ticket stamped with the current time in params.timezone."""
    return check_ticket(replace(Ticket(tracker_id, now_text(params)), **fields), params)
