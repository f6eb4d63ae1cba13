"""`kirinuki track`: the whole pipeline over one work for a tracker ID, then publish.

    <root>/<author>/org/<work>/  ->  <root>/<author>/tracker-workspace/<ID>/
        extract/      cut-outs (run_extract; resumes), scores.jsonl
        metrics/      validate.json, per_image.csv, per_cutout.csv (when GT exists), compare.json/.md
        dashboard/    index.html + thumbnails + overlays
        track.log     progress, one line per page
        track.json    status and summary of the last run (the dashboards and index read it)

Extraction runs in a child process so that a page can be stopped at the per-page time
limit: the page in progress is then not written, and the same command resumes.
"""
from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from tqdm import tqdm

from kirinuki import pipeline
from kirinuki.core.runs import RunPaths
from kirinuki.core.config import ConfigError, Params
from kirinuki.core.imageio import (find_images, index_box_gt, index_gt, read_json, read_jsonl, remove_stale_temps,
                                   write_json, write_text)
from kirinuki.core.secrets import redact, redact_obj
from kirinuki.extract.run import ExtractSummary
from kirinuki.publish.dashboard import pages_without_cutouts, write_dashboard, write_index
from kirinuki.publish.notify import best_cutouts, notify
from kirinuki.publish.tickets import Ticket, details_text, now_text, publish_tickets
from kirinuki.publish.workspace import Workspace, live_state, pid_alive, process_start
from kirinuki.qc.compare import CompareError
from kirinuki.qc.validate import ValidateError
from kirinuki.quality.score import GRADES, ScoreError

Log = Callable[[str], None]


class TrackBusy(Exception):
    """Another run of the same tracker ID is working; str() says which process."""


@dataclass(frozen=True)
class TrackOptions:
    baseline: Optional[str] = None      # per_image.csv or folder; None: the previous run of this tracker
    priority: Optional[str] = None
    summary: Optional[str] = None
    depends_on: Optional[tuple[str, ...]] = None
    notify: bool = True


@dataclass
class ExtractOutcome:
    summary: Optional[ExtractSummary] = None
    stopped: Optional[dict] = None      # {"page", "seconds", "limit_s"} when a page ran out of time
    error: Optional[str] = None


# --- extraction under a per-page time limit -------------------------------------------------

def run_paths(ws: Workspace) -> RunPaths:
    """Where a tracker run keeps its outputs in the workspace."""
    return RunPaths(extract=ws.extract, scores=ws.scores, metrics=ws.metrics,
                    reviews=ws.reviews, exports=ws.exports)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """End this process when the tracker process `parent` ends, however it ends (kill -9 too):
    the kernel's parent-death signal on Linux, and everywhere a thread watching the parent pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _extract_worker(work: Path, run: RunPaths, params: Params, conn, parent: int = 0) -> None:
    if parent:
        _die_with_parent(parent)
    # tqdm's default lock is a multiprocessing semaphore, which a killed worker would leak
    tqdm.set_lock(threading.RLock())

    def send(message) -> None:
        try:
            conn.send(message)
        except (OSError, EOFError):  # the parent is gone: stop quietly, the page stays undone
            os._exit(1)

    try:
        s = pipeline.extract(work, run, params, progress=False, log=lambda m: send(("log", m)),
                             on_page=lambda p: send(("page", str(p))))
        send(("done", asdict(s)))
    except Exception as e:  # noqa: BLE001 - reported to the parent as the run's error
        send(("error", f"{type(e).__name__}: {e}"))


def extract_with_limit(work: Path, run: RunPaths, params: Params, log: Log) -> ExtractOutcome:
    """The extract step in a child process; stop it when one page passes track.page_timeout_s."""
    out = run.extract
    limit = params.track.page_timeout_s
    images = find_images(work)
    position = {str(p): i for i, p in enumerate(images, 1)}
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_extract_worker, args=(work, run, params, send, os.getpid()), daemon=True)
    proc.start()
    send.close()
    outcome, page, started = ExtractOutcome(), None, 0.0
    try:
        while True:
            left = None if page is None else limit - (time.monotonic() - started)
            if left is not None and (left <= 0 or not recv.poll(left)):
                seconds = time.monotonic() - started
                proc.kill()
                proc.join()
                page_dir = out / page.stem
                if page_dir.is_dir() and not (page_dir / "page.json").exists():
                    shutil.rmtree(page_dir)  # the page in progress is not written
                log(f"warning: page {page.name} still running after {seconds:.0f} s "
                    f"(track.page_timeout_s = {limit:g}); run stopped, the same command resumes")
                outcome.stopped = {"page": page.stem, "seconds": round(seconds, 1), "limit_s": limit}
                return outcome
            try:
                kind, value = recv.recv()
            except EOFError:
                proc.join()
                outcome.error = f"extraction process ended unexpectedly (exit code {proc.exitcode})"
                return outcome
            if kind == "log":
                log(value)
                continue
            if page is not None:
                log(f"[{position.get(str(page), '?')}/{len(images)}] {page.stem} "
                    f"{time.monotonic() - started:.1f} s")
            if kind == "page":
                page, started = Path(value), time.monotonic()
            elif kind == "done":
                outcome.summary = ExtractSummary(**value)
                return outcome
            else:
                outcome.error = value
                return outcome
    finally:
        proc.join(timeout=10 if outcome.summary or outcome.error else 0)  # let a finished worker exit
        if proc.is_alive():  # interrupted (Ctrl-C): the page in progress stays undone
            proc.kill()
            proc.join()
        recv.close()


# --- one run ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _pid_lock(ws: Workspace):
    """Held while the pid file is checked and written: two runs started at once cannot both take it."""
    ws.dir.mkdir(parents=True, exist_ok=True)
    with open(ws.pidfile.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def acquire(ws: Workspace) -> None:
    """Take the tracker's pid file; a background run's parent may have written our pid already."""
    with _pid_lock(ws):
        pid = running_pid(ws)
        if pid not in (None, os.getpid()):
            raise TrackBusy(f"{ws.tracker_id} is already running (pid {pid}); follow it with "
                            f"`kirinuki track-log {ws.tracker_id} --root {ws.root} --follow`")
        write_text(ws.pidfile, f"{os.getpid()}\n")


def _save_state(ws: Workspace, state: dict, env: Mapping[str, str]) -> None:
    """track.json, with every secret in it redacted (it feeds the dashboards and the index)."""
    write_json(ws.state, redact_obj(state, env))


def release(ws: Workspace) -> None:
    ws.pidfile.unlink(missing_ok=True)


def running_pid(ws: Workspace) -> Optional[int]:
    """The pid of a live run of this tracker, if any."""
    try:
        pid = int(ws.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def status_label(status: str, params: Params) -> str:
    s = params.publish.sheets
    return {"running": s.running_status, "done": s.done_status, "stopped": "停止 stopped",
            "failed": "失敗 failed"}[status]


def _validate_and_compare(ws: Workspace, work: Path, images: list[Path], baseline: Optional[str],
                          params: Params, log: Log) -> tuple[Optional[dict], Optional[dict], Optional[str]]:
    """validate.json and compare.json of this run (None without GT), and the baseline used.
    Box ground truth alone (`<stem>_gt.json`, real pages) is measured by figures, not compared:
    the paired statistics are per-page IoU, which needs masks."""
    run = run_paths(ws)
    for stale in (run.validate_json, run.per_cutout, run.compare_json, run.compare_md):  # never show an old run's
        stale.unlink(missing_ok=True)
    stems = {p.stem for p in images}
    masks, boxes = index_gt(work).keys() & stems, index_box_gt(work).keys() & stems
    if not masks and not boxes:
        log("no ground truth (<stem>_gt.png or _gt.json) in the work: no IoU, no compare")
        return None, None, None
    previous = RunPaths.in_folder(run.metrics / "previous").per_image
    if masks and run.per_image.is_file():  # the last finished run becomes the baseline of this one
        previous.parent.mkdir(parents=True, exist_ok=True)
        os.replace(run.per_image, previous)
    try:
        metrics = pipeline.validate(run, work, params)
    except ValidateError as e:
        log(f"validate: {e}")
        return None, None, None
    if not masks:
        b = metrics["boxes"]
        log(f"validate (boxes): figure recall {b['figure_recall']}, precision {b['figure_precision']}, "
            f"clean {b['clean_rate']}; no compare (needs masks)")
        return metrics, None, None
    log(f"validate: instance mIoU {metrics['instance_miou']}, union mIoU {metrics['union_miou']}, "
        f"precision {metrics['precision']}, recall {metrics['recall']}")
    baseline = baseline or (str(previous) if previous.is_file() else None)
    try:
        pipeline.compare(run, baseline, params)
    except (CompareError, ValueError) as e:  # a failed comparison must not lose the run's publish
        log(f"compare failed: {type(e).__name__}: {e}")
        return metrics, None, baseline
    compare = read_json(run.compare_json)
    log(f"compare vs {baseline or 'nothing'}: {compare['verdict']}")
    return metrics, compare, baseline


def _score_and_measure(ws: Workspace, work: Path, images: list[Path], baseline: Optional[str], params: Params,
                       log: Log) -> dict:
    """After extract: score, failure patterns, validate and compare -> the run's state fields."""
    rows, unread = pipeline.score(run_paths(ws), params, log=log)
    if unread:  # each was logged; the run is then not all done (exit 1), like a page that failed
        log(f"{unread} cut-out(s) could not be read and have no score")
    found = pipeline.failures(run_paths(ws), params)
    log(f"failure patterns: " + ("; ".join(f"{p['id']} {p['name']} ({p['size']})" for p in found["patterns"])
                                 or "none") + f", {len(found['outliers'])} outlier(s)")
    metrics, compare, baseline = _validate_and_compare(ws, work, images, baseline, params, log)
    return dict(unscored=unread, grades={g: sum(r["grade"] == g for r in rows) for g in GRADES},
                lora_ok=sum(bool(r["lora_ok"]) for r in rows), metrics=metrics, baseline=baseline,
                verdict=compare and compare["verdict"],
                params_hash=_params_hash(ws), pages_without_cutouts=pages_without_cutouts(ws.extract, rows))


def run_track(ws: Workspace, work: Path, params: Params, opts: TrackOptions, log: Log,
              env: Mapping[str, str] = os.environ) -> int:
    """One tracker run; returns the exit code (0 done, 1 failed or some pages failed, 3 stopped
    at the time limit)."""
    acquire(ws)
    try:
        for tmp in remove_stale_temps(ws.dir, recursive=True):  # we hold the lock: nobody else writes here
            log(f"{tmp}: removed, a temporary file of an interrupted run")
        tz = params.publish.sheets
        images = find_images(work)
        before = read_json(ws.state) or {}  # what the user told earlier runs stays on the dashboard
        state = {"tracker_id": ws.tracker_id, "author": ws.author, "work": work.name, "input": str(work),
                 "status": "running", "status_label": status_label("running", params),
                 "started": now_text(tz), "finished": None, "pages": len(images), "resumed": 0,
                 "characters": 0, "errors": [], "summary": opts.summary or before.get("summary"),
                 "depends_on": list(opts.depends_on or before.get("depends_on") or []),
                 "dashboard_url": dashboard_url(ws, params),
                 "pid": os.getpid(), "pid_start": process_start(os.getpid())}  # a dead pid reads `interrupted`
        log(f"{ws.tracker_id}: {len(images)} pages in {work} -> {ws.dir}")
        _save_state(ws, state, env)
        _ticket(ws, state, params, opts, log, env)

        outcome = extract_with_limit(work, run_paths(ws), params, log)
        if outcome.summary is None:
            state.update(status="stopped" if outcome.stopped else "failed", stopped=outcome.stopped,
                         error=outcome.error)
            if outcome.error:
                log(f"error: {outcome.error}")
        else:
            s = outcome.summary
            state.update(pages=s.pages, resumed=s.skipped, characters=s.characters, errors=s.errors)
            log(f"extract: {s.pages} pages ({s.skipped} already done), {s.characters} cut-outs, "
                f"{len(s.errors)} unreadable")
            try:
                state.update(_score_and_measure(ws, work, images, opts.baseline, params, log), status="done")
            except (ScoreError, ConfigError, ValueError) as e:  # published as failed, not left "running"
                state.update(status="failed", error=str(e))
                log(f"error: {e}")
        state.update(status_label=status_label(state["status"], params), finished=now_text(tz))
        publish(ws, state, params, opts, log, env)
        log(f"== {state['status']}: {ws.tracker_id}")
        if state["status"] == "done" and (state["errors"] or state.get("unscored")):
            if state["errors"]:
                log(f"{len(state['errors'])} page(s) failed: " + "; ".join(state["errors"]))
            return 1
        return {"done": 0, "stopped": 3}.get(state["status"], 1)
    finally:
        release(ws)


def _params_hash(ws: Workspace) -> Optional[str]:
    run = read_json(ws.extract / "run.json") or {}
    return run.get("params_hash")


def dashboard_url(ws: Workspace, params: Params) -> str:
    return params.publish.dashboard_url.replace("{id}", ws.tracker_id)


# --- publish -------------------------------------------------------------------------------

def _ticket(ws: Workspace, state: dict, params: Params, opts: TrackOptions, log: Log, env) -> None:
    s = params.publish.sheets
    status = s.done_status if state["status"] == "done" else s.running_status
    ticket = Ticket(ws.tracker_id, at=state["finished"] or state["started"], status=status,
                    priority=opts.priority, summary=opts.summary,
                    details=details_text(state) if state["finished"] else f"{state['started']} running",
                    dashboard=state["dashboard_url"], depends_on=opts.depends_on)
    try:
        log(publish_tickets([ticket], s, ws.outbox, env=env).message)
    except ValueError as e:  # a damaged outbox: say so, and keep the run going
        log(f"ticket sheet not updated: {e}")


def publish(ws: Workspace, state: dict, params: Params, opts: TrackOptions, log: Log, env) -> None:
    """Dashboard and index, ticket row, notification. Only the dashboard may raise."""
    _save_state(ws, state, env)
    page = write_dashboard(run_paths(ws), ws.dashboard, state, params.publish.dashboard, params.extract.max_pixels, log)
    write_index(ws.dir.parent)
    log(f"dashboard: {page} ({state['dashboard_url']})")
    _ticket(ws, state, params, opts, log, env)
    if opts.notify:
        best = []
        if state["status"] == "done" and params.publish.notify.attach_best:
            rows = read_jsonl(run_paths(ws).scores)
            best = [ws.extract / img / f"char_{k}.png"
                    for img, k in best_cutouts(rows, params.publish.notify.attach_best)]
        log(notify(f"Kirinuki {ws.tracker_id}: {state['status_label']}", notify_text(state),
                   state["dashboard_url"], best, params.publish.notify, env))


def notify_text(state: dict) -> str:
    if state["status"] != "done":
        return details_text(state)
    lines = [f"{state['author']} / {state['work']}: {state['pages']} pages, {state['characters']} cut-outs",
             " · ".join(f"{g} {n}" for g, n in state["grades"].items()) + f" · LoRA OK {state['lora_ok']}"]
    v = state.get("metrics") or {}
    if v.get("n_images"):
        lines.append(f"instance mIoU {v['instance_miou']}")
    if v.get("boxes"):
        lines.append(f"figure recall {v['boxes']['figure_recall']}, clean {v['boxes']['clean_rate']}")
    lines.append(f"compare: {state.get('verdict') or 'not compared (no ground truth)'}")
    return "\n".join(lines)


# --- background and log ---------------------------------------------------------------------

def start_background(ws: Workspace, args: list[str]) -> int:
    """Start `kirinuki track <args> --detached` in its own session, output to track.log."""
    with _pid_lock(ws), open(ws.log, "a", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kirinuki.cli", "track", *args, "--detached"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        write_text(ws.pidfile, f"{proc.pid}\n")  # so a follower sees the run before the child starts
    return proc.pid


def make_log(ws: Workspace, detached: bool) -> Log:
    """Timestamped lines to track.log (and stderr); detached runs' stderr already is the log."""
    ws.dir.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {redact(message)}\n"
        if not detached:
            with open(ws.log, "a", encoding="utf-8") as f:
                f.write(line)
        sys.stderr.write(line)
        sys.stderr.flush()

    return log


def follow_log(ws: Workspace, follow: bool, write: Callable[[str], None], poll_s: float = 0.5) -> Optional[str]:
    """Print track.log; with follow, keep printing until the run's pid file is gone. Returns the
    run's status then (`interrupted`: it died before it finished)."""
    if not ws.log.is_file():
        raise FileNotFoundError(f"{ws.log}: no log yet")
    with open(ws.log, encoding="utf-8") as f:
        while True:
            running = running_pid(ws) is not None
            chunk = f.read()
            if chunk:
                write(chunk)
            if not follow or not running:
                return live_state(read_json(ws.state) or {}).get("status")
            time.sleep(poll_s)
