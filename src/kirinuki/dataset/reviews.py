"""Reviews of cut-outs: approve, exclude, or "wrong grade" with a reason.

A tracker workspace keeps them in `reviews.jsonl`, one line per verdict, appended and never
rewritten (who, when, which cut-out, what). A review is keyed by the cut-out's content hash
(sha256 of its PNG), so it holds across re-runs that give the same cut-out and lapses when
the cut-out changes. The latest approve/exclude decides; "wrong grade" is a separate flag.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from kirinuki.core.cards import sha256_file

REVIEWS_NAME = "reviews.jsonl"
VERDICTS = ("approve", "exclude", "wrong_grade")
MAX_REASON = 500  # characters kept of a reason


class ReviewError(ValueError):
    """A verdict that cannot be recorded, or a damaged reviews file; str() is one line."""


def append_review(path: Path, *, who: str, cutout: str, sha256: str, verdict: str, reason: str = "",
                  grade: Optional[str] = None, at: Optional[str] = None) -> dict:
    """Append one verdict to `path` (locked, flushed to disk) and return the line written."""
    if verdict not in VERDICTS:
        raise ReviewError(f"{verdict!r}: not a verdict ({', '.join(VERDICTS)})")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ReviewError(f"{sha256!r}: not a sha256 of a cut-out")
    if verdict == "wrong_grade" and not reason.strip():
        raise ReviewError("a 'wrong grade' verdict needs a reason")
    entry = {"at": at or datetime.now(timezone.utc).isoformat(timespec="seconds"), "who": who, "cutout": cutout,
             "sha256": sha256, "verdict": verdict, "reason": " ".join(reason.split())[:MAX_REASON], "grade": grade}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()
    with open(path, "ab") as f:  # O_APPEND + one write under the lock: lines never interleave
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if f.tell() and not _ends_with_newline(path):  # a crash cut the last line short: start afresh
                line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return entry


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_reviews(path: Optional[Path]) -> list[dict]:
    """All verdicts in `path`, oldest first ([] where there is no file). A line that is not JSON
    is a write cut short by a crash (the next append starts a new line) and is passed over; a
    JSON line that is not a review raises."""
    if path is None or not Path(path).is_file():
        return []
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or row.get("verdict") not in VERDICTS or "sha256" not in row:
            raise ReviewError(f"{path}: line {i} is not a review; fix or move the file")
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Review:
    """Where the verdicts on one cut-out stand."""
    decision: Optional[str]  # the latest "approve" or "exclude", None if neither
    wrong_grade: Optional[str]  # the reason of the latest "wrong grade", None if none
    who: str
    at: str


def latest(reviews: Iterable[dict]) -> dict[str, Review]:
    """Cut-out sha256 -> its review state, from verdicts oldest first."""
    out: dict[str, Review] = {}
    for r in reviews:
        before = out.get(r["sha256"], Review(None, None, "", ""))
        if r["verdict"] == "wrong_grade":
            out[r["sha256"]] = Review(before.decision, r.get("reason") or "", r.get("who", ""), r.get("at", ""))
        else:
            out[r["sha256"]] = Review(r["verdict"], before.wrong_grade, r.get("who", ""), r.get("at", ""))
    return out


def review_summary(state: dict[str, Review], lora_ok: dict[str, bool]) -> dict:
    """Counts over the cut-outs of a run (`lora_ok`: sha256 -> the grade's verdict): reviewed,
    approved, excluded, flagged "wrong grade", and the share where the grade agreed with the
    review (approve with lora_ok, exclude without it, and no "wrong grade" flag)."""
    mine = {sha: state[sha] for sha in lora_ok if sha in state}
    agreed = [r.wrong_grade is None and r.decision is not None and (r.decision == "approve") == lora_ok[sha]
              for sha, r in mine.items() if r.decision is not None or r.wrong_grade is not None]
    return {"reviewed": len(mine),
            "approved": sum(r.decision == "approve" for r in mine.values()),
            "excluded": sum(r.decision == "exclude" for r in mine.values()),
            "wrong_grade": sum(r.wrong_grade is not None for r in mine.values()),
            "grade_agreed": round(sum(agreed) / len(agreed), 4) if agreed else None}


def cutout_shas(extract_dir: Path, cutouts: Iterable) -> dict[tuple[str, int], str]:
    """(image, k) -> sha256 of its char_<k>.png, for each (image, k) whose file is there."""
    out = {}
    for image, k in cutouts:
        path = Path(extract_dir) / str(image) / f"char_{k}.png"
        if path.is_file():
            out[(str(image), int(k))] = sha256_file(path)
    return out


def lora_ok_by_sha(extract_dir: Path, scores: Iterable[dict]) -> dict[str, bool]:
    """sha256 of each scored cut-out's PNG -> its lora_ok (cut-outs whose file is gone are left out)."""
    scores = list(scores)
    shas = cutout_shas(extract_dir, [(r["image"], r["k"]) for r in scores])
    return {shas[(str(r["image"]), int(r["k"]))]: bool(r.get("lora_ok")) for r in scores
            if (str(r["image"]), int(r["k"])) in shas}
