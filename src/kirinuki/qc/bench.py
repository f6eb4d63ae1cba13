"""bench: how fast `kirinuki extract` is, how much of it is the model, whether memory stays flat.

Three measurements, each against the project's target (all medians or ratios, since single
timings on a shared machine are noise):

- timing: `run_extract` itself on N pages, its backends wrapped in `Timed`, so the figures
  are those of `kirinuki extract` (loop, reading, instances, PNG writing) split into model
  forward passes and everything else;
- memory: `kirinuki extract` in a child process on each page count, its own peak RSS;
- SAM: one page with 3 box prompts vs 1 (one image embedding serves every prompt).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from kirinuki.extract.run import Models, run_extract
from kirinuki.core.config import ExtractParams
from kirinuki.core.imageio import find_images, format_support, read_image
from kirinuki.extract.segment import load_segmenter

TARGETS = {"median_s": 1.5, "non_forward_share": 0.15, "memory_ratio": 1.10, "sam_ratio": 1.2}
SAM_REPEATS = 3


class BenchError(Exception):
    pass


class Timed:
    """A stand-in for a model backend (any callable) that adds the time spent in its calls to `seconds`.

    Every other attribute (`.info`, `.name`, `.session`, ...) is forwarded, so the extract
    code runs unchanged and cannot tell it from the backend.
    """

    def __init__(self, inner: Callable):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def instrument(backend, kind: str, timers: list[Timed], notes: list[str]):
    """Time `backend`'s forward passes; return what extract should use in its place.

    A backend holding an onnxruntime session gets only `session.run` timed, so its resizing and
    normalisation count as overhead, as they are; any other backend (torch SAM, YOLO) is timed
    per call, pre/post-processing included.
    """
    if backend is None:  # a loader's "not configured" (extract.detector: none, extract.splitter: null)
        return None
    session = getattr(backend, "session", None)
    if callable(getattr(session, "run", None)):
        session.run = timer = Timed(session.run)
        target, how = backend, "onnxruntime session.run"
    else:
        target = timer = Timed(backend)
        how = "whole call"
    timers.append(timer)
    notes.append(f"{kind} {getattr(backend, 'name', type(backend).__name__)}: {how}")
    return target


def link_pages(images: list[Path], n: int, folder: Path) -> Path:
    """`n` pages in `folder`, cycling through `images` as uniquely named symlinks (extract keys outputs by stem)."""
    folder.mkdir(parents=True)
    for i in range(n):
        src = images[i % len(images)]
        (folder / f"{i:05d}_{src.name}").symlink_to(src.resolve())
    return folder


def time_pages(pages: Path, params: ExtractParams, out: Path) -> dict[str, Any]:
    """Run `run_extract` on `pages` with timed backends; per-page wall and forward seconds.

    The backends are loaded as extract loads them, wrapped, and handed to `run_extract`, so
    the bench measures `kirinuki extract`'s own loop whatever its backends.
    """
    timers: list[Timed] = []
    notes: list[str] = []
    marks: list[tuple[float, float]] = []  # (wall clock, forward seconds so far) as each page starts

    def mark(_path=None):
        marks.append((time.perf_counter(), sum(t.seconds for t in timers)))

    loaded = Models.load(params)
    models = Models(detect=instrument(loaded.detect, "detector", timers, notes),
                    segment=instrument(loaded.segment, "segmenter", timers, notes),
                    split=instrument(loaded.split, "splitter", timers, notes),
                    heads=instrument(loaded.heads, "head splitter", timers, notes),
                    faces=instrument(loaded.faces, "faces", timers, notes))
    summary = run_extract(pages, out, params, progress=False, on_page=mark, models=models)
    mark()  # the last page's time also holds writing records.jsonl and run.json
    if not summary.pages:
        raise BenchError(f"{pages}: no page could be extracted")
    total = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    forward = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return {"pages": len(total), "failed": len(summary.errors), "forward_timed": notes,
            "median_s": round(statistics.median(total), 4), "p90_s": round(float(np.percentile(total, 90)), 4),
            "median_forward_s": round(statistics.median(forward), 4),
            "non_forward_share": round(sum(t - f for t, f in zip(total, forward)) / sum(total), 4),
            "per_page": [{"total_s": round(t, 4), "forward_s": round(f, 4)} for t, f in zip(total, forward)]}


def peak_rss_mib(cmd: list[str]) -> float:
    """Run `cmd`; its own peak resident memory in MiB.

    os.wait4 gives this child's rusage alone; RUSAGE_CHILDREN would keep the maximum over
    every child so far, hiding a smaller later run.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}: {err.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)  # bytes there, KiB on Linux


def sam_ratio(image: Path, params: ExtractParams) -> dict[str, Any]:
    """Seconds for one page prompted with 3 boxes vs 1 box (median of SAM_REPEATS, interleaved).

    Calls the segmenter as extract's SAM path does, `segment(rgb, boxes)` with boxes an Nx4
    xyxy array; a fresh copy of the page each time, so no embedding is reused across calls.
    """
    segment = load_segmenter(params)
    rgb = read_image(image, params.max_pixels)
    h, w = rgb.shape[:2]
    boxes = np.array([[w * i / 3, 0, w * (i + 1) / 3, h] for i in range(3)], np.float32)
    seconds: dict[int, list[float]] = {1: [], 3: []}
    for _ in range(SAM_REPEATS):
        for n in seconds:
            start = time.perf_counter()
            segment(rgb.copy(), boxes[:n])
            seconds[n].append(time.perf_counter() - start)
    one, three = statistics.median(seconds[1]), statistics.median(seconds[3])
    return {"image": str(image), "one_box_s": round(one, 4), "three_boxes_s": round(three, 4),
            "ratio": round(three / one, 4)}


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def run_bench(images: Path, pages: int, memory_pages: list[int], params: ExtractParams,
              params_file: Optional[Path], log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """All three measurements in one run; the figures as a JSON-ready dict."""
    format_support()  # registers the HEIC opener, as extract does
    found, sizes = [], []
    for path in find_images(images):  # an unreadable file is left out, with its line, not the bench
        try:
            sizes.append(_size(path))
            found.append(path)
        except OSError as e:
            log(f"{path}: not a readable image ({e}); left out")
    if not found:
        raise BenchError(f"{images}: no readable images")
    sizes = sizes[:pages]
    result: dict[str, Any] = {
        "images": str(images), "distinct_images": len(found), "cpu_count": os.cpu_count(),
        "segmenter": params.segmenter, "detector": params.detector,
        "page_size": [int(statistics.median(s[i] for s in sizes)) for i in (0, 1)], "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="kirinuki-bench-") as tmp:
        tmp = Path(tmp)
        log(f"timing {pages} pages ...")
        result["timing"] = time_pages(link_pages(found, pages, tmp / "timing"), params, tmp / "timing-out")
        memory, counts = {}, sorted(set(memory_pages))
        for n in counts:
            log(f"peak memory of `kirinuki extract` on {n} pages ...")
            cmd = [sys.executable, "-m", "kirinuki.cli", "extract", str(link_pages(found, n, tmp / f"mem{n}")),
                   "-o", str(tmp / f"mem{n}-out"), "--no-progress", *(["--params", str(params_file)] if params_file else [])]
            memory[str(n)] = round(peak_rss_mib(cmd), 1)
        result["memory"] = {"peak_rss_mib": memory, "ratio": (
            round(memory[str(counts[-1])] / memory[str(counts[0])], 4) if len(counts) > 1 else None)}
    if params.segmenter == "sam":
        log("SAM: 1 box vs 3 boxes ...")
        result["sam"] = sam_ratio(found[0], params)
    else:
        result["sam"] = {"skipped": f"extract.segmenter is {params.segmenter}"}
    return result


def format_table(r: dict) -> str:
    """The figures as an aligned text table, each with its target and PASS/FAIL."""
    t, mem, sam = r["timing"], r["memory"], r["sam"]
    rows: list[tuple[str, str, Optional[float], Optional[float]]] = [  # label, value text, value, target
        ("median s/page", f"{t['median_s']:.3f}", t["median_s"], TARGETS["median_s"]),
        ("p90 s/page", f"{t['p90_s']:.3f}", None, None),
        ("median forward s/page", f"{t['median_forward_s']:.3f}", None, None),
        ("non-forward share of wall", f"{t['non_forward_share']:.3f}", t["non_forward_share"], TARGETS["non_forward_share"])]
    rows += [(f"peak RSS, {n} pages (MiB)", f"{v:.1f}", None, None) for n, v in mem["peak_rss_mib"].items()]
    if mem["ratio"] is not None:
        counts = list(mem["peak_rss_mib"])
        rows.append((f"peak RSS ratio {counts[-1]}/{counts[0]} pages", f"{mem['ratio']:.3f}", mem["ratio"], TARGETS["memory_ratio"]))
    if "skipped" in sam:
        rows.append(("SAM 3 boxes / 1 box", f"skipped: {sam['skipped']}", None, None))
    else:
        rows += [("SAM 1 box s", f"{sam['one_box_s']:.3f}", None, None),
                 ("SAM 3 boxes s", f"{sam['three_boxes_s']:.3f}", None, None),
                 ("SAM 3 boxes / 1 box", f"{sam['ratio']:.3f}", sam["ratio"], TARGETS["sam_ratio"])]
    width = max(len(label) for label, *_ in rows)
    lines = [f"kirinuki bench: {t['pages']} pages ({t['failed']} failed) cycling {r['distinct_images']} images "
             f"from {r['images']}, median {r['page_size'][0]}x{r['page_size'][1]} px, {r['cpu_count']} CPUs",
             "forward = " + "; ".join(t["forward_timed"]), ""]
    for label, text, value, target in rows:
        verdict = "" if target is None else f"  <= {target:<5}  {'PASS' if value <= target else 'FAIL'}"
        lines.append(f"{label:<{width}}  {text:>8}{verdict}")
    return "\n".join(lines)
