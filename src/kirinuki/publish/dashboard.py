"""Static HTML dashboard of a run (a tracker run or the DVC pipeline's): every cut-out with its
grade, and an index page.

`<workspace>/dashboard/` holds index.html, thumbs/<image>/<k>.png (cut-outs scaled down)
and overlays/<image>.jpg (the page with its masks tinted and numbered). Pages reference
them by relative path, so the folder works from disk and behind `kirinuki serve`.

Each card carries its cut-out's sha256 and the review baked in from the run's reviews.jsonl
(read-only from disk); behind `kirinuki serve`, the page's script finds the review API
(`api/reviews` beside it) and adds approve / exclude / wrong-grade buttons.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from kirinuki.core.config import DashboardParams
from kirinuki.core.imageio import BadInput, atomic_path, read_image, read_json, read_jsonl, read_label_png, read_rgba_png, write_png, write_text
from kirinuki.core.secrets import redact
from kirinuki.dataset.reviews import Review, ReviewError, cutout_shas, latest, read_reviews, review_summary
from kirinuki.dataset.usage import training_usage
from kirinuki.publish.workspace import live_state
from kirinuki.quality.score import GRADES, MESSAGES, QUALITY_JA
from kirinuki.core.runs import RunPaths

# instance colours of the overlay (RGB), k = 1, 2, ... cycling
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60)]
JPEG_QUALITY = 85

_env = Environment(loader=PackageLoader("kirinuki.publish", "templates"), autoescape=select_autoescape(["html", "j2"]),
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@dataclass(frozen=True)
class Card:
    """One cut-out as the dashboard shows it."""
    image: str
    k: int
    grade: str
    quality_ja: str
    score: float
    lora_ok: bool
    reasons: tuple[str, ...]
    messages: tuple[str, ...]
    messages_ja: tuple[str, ...]
    iou: Optional[float]  # None without ground truth
    layers: dict = field(default_factory=dict)  # the score record's L1/L2/L3 (quality.score.grade)
    sha256: str = ""  # of char_<k>.png; "" where the file is missing
    review: Optional[Review] = None  # where the reviews of this cut-out stand
    seen: Optional[int] = None  # times training runs saw it; None: in no exported dataset

    @property
    def cutout(self) -> str:
        """The cut-out's id in reviews: `<image>/<k>`."""
        return f"{self.image}/{self.k}"

    @property
    def thumb(self) -> str:
        return f"thumbs/{self.image}/{self.k}.png"

    @property
    def overlay(self) -> str:
        return f"overlays/{self.image}.jpg"


# --- pure functions -------------------------------------------------------------------------

def build_cards(scores: list[dict], ious: dict[tuple[str, int], float]) -> list[Card]:
    """Score records (scores.jsonl rows) + IoU by (image, k) -> cards in page order."""
    cards = [Card(image=str(s["image"]), k=int(s["k"]), grade=s["grade"],
                  quality_ja=QUALITY_JA[s["grade"]], score=float(s["score"]),
                  lora_ok=bool(s["lora_ok"]), reasons=tuple(s.get("reasons", ())),
                  messages=tuple(s.get("messages", ())), messages_ja=tuple(s.get("messages_ja", ())),
                  iou=ious.get((str(s["image"]), int(s["k"]))), layers=s.get("layers") or {})
             for s in scores]
    return sorted(cards, key=lambda c: (c.image, c.k))


def with_reviews(cards: list[Card], shas: dict[tuple[str, int], str], state: dict[str, Review],
                 usage: Optional[dict[str, int]] = None) -> list[Card]:
    """Cards with their cut-out's sha256 ((image, k) -> sha), review state (sha -> Review) and
    training usage (sha -> times seen, for the exported ones)."""
    out = []
    for c in cards:
        sha = shas.get((c.image, c.k), "")
        out.append(replace(c, sha256=sha, review=state.get(sha) if sha else None,
                           seen=(usage or {}).get(sha) if sha else None))
    return out


def usage_counts(cards: list[Card]) -> dict:
    """Cut-outs in exported datasets, and how many of them no training run has seen yet."""
    exported = {c.sha256: c.seen for c in cards if c.seen is not None}
    return {"exported": len(exported), "never_seen": sum(n == 0 for n in exported.values())}


def review_json(r: Review) -> dict:
    """A review state as the page and the review API show it."""
    return {"decision": r.decision, "wrong_grade": r.wrong_grade, "who": r.who, "at": r.at}


def review_counts(cards: list[Card]) -> dict:
    """review_summary over the cards (sha256 -> lora_ok), with `cutouts` (the distinct cut-outs:
    identical files share a review) and grade_agreed as a whole percent (`agreed_pct`, rounded
    half up as the page's script does; None when nothing to agree on)."""
    state = {c.sha256: c.review for c in cards if c.sha256 and c.review is not None}
    lora_ok = {c.sha256: c.lora_ok for c in cards if c.sha256}
    summary = review_summary(state, lora_ok)
    g = summary["grade_agreed"]
    return {**summary, "cutouts": len(lora_ok), "agreed_pct": None if g is None else int(g * 100 + 0.5)}


def grade_counts(cards: list[Card]) -> dict[str, int]:
    return {g: sum(c.grade == g for c in cards) for g in GRADES}


def reason_labels(cards: list[Card]) -> dict[str, str]:
    """Every reason on the dashboard -> its Japanese label, in name order."""
    labels = {}
    for c in cards:
        labels.update(zip(c.reasons, c.messages_ja or c.reasons))
    return dict(sorted(labels.items()))


FAILURES = "failures"  # the failure patterns' folder in the dashboard (RunPaths.failures in the run)


def failure_view(result: dict, folder: str = FAILURES) -> dict:
    """failures.json (kirinuki.qc.failures) -> what the page shows: each pattern's dominant
    reasons as (id, Japanese message, share), its example thumbnails as (member, src), and the map's
    src; paths relative to the dashboard, under `folder`."""
    patterns = []
    for p in result.get("patterns", []):
        share = p.get("reason_share", {})
        patterns.append({**p, "reason_labels": [(r, MESSAGES[r][1] if r in MESSAGES else r, share.get(r))
                                                for r in p.get("reasons", [])],
                         "example_imgs": [(m, f"{folder}/{t}") for m, t in zip(p.get("examples", []), p.get("thumbs", []))
                                          if t]})
    m = result.get("map") or {}
    return {**result, "patterns": patterns, "map_src": f"{folder}/{m['file']}" if m.get("file") else None,
            "map_reason": m.get("reason")}


def render_dashboard(state: dict, cards: list[Card], validate: Optional[dict], compare: Optional[dict],
                     reviews_error: Optional[str] = None, failures: Optional[dict] = None) -> str:
    """The tracker page. state: the run's track.json; validate/compare: their JSON or None;
    reviews_error: why the reviews could not be read, if so; failures: failure_view() of the
    run's failure patterns, or None."""
    return _env.get_template("dashboard.html.j2").render(
        s=state, cards=cards, counts=grade_counts(cards), reasons=reason_labels(cards),
        lora_ok=sum(c.lora_ok for c in cards), v=validate, c=compare, quality=QUALITY_JA,
        rv=review_counts(cards), reviews_error=reviews_error, usage=usage_counts(cards), f=failures)


def render_index(entries: list[dict], href: str) -> str:
    """The list of tracker IDs. entries: track.json states; href: link pattern with {id}."""
    return _env.get_template("index.html.j2").render(entries=entries, href=href)


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """HxWx3 page with each instance k tinted, outlined and numbered (HxWx3 uint8)."""
    out = rgb.astype(np.float32)
    for k in range(1, int(labels.max()) + 1):
        mask = labels == k
        if not mask.any():
            continue
        color = np.float32(PALETTE[(k - 1) % len(PALETTE)])
        out[mask] = out[mask] * (1 - alpha) + color * alpha
    out = out.astype(np.uint8)
    thick = max(2, round(max(labels.shape) / 400))
    for k in range(1, int(labels.max()) + 1):
        mask = (labels == k).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        color = PALETTE[(k - 1) % len(PALETTE)]
        cv2.drawContours(out, contours, -1, color, thick)
        x, y, _, _ = cv2.boundingRect(np.concatenate(contours))
        scale = max(labels.shape) / 700
        org = (x + thick, y + int(30 * scale) + thick)
        cv2.putText(out, str(k), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick * 3, cv2.LINE_AA)
        cv2.putText(out, str(k), org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    return out


def fit(img: np.ndarray, longest: int) -> np.ndarray:
    """Scale down (never up) so the longer side is at most `longest`."""
    h, w = img.shape[:2]
    f = longest / max(h, w)
    if f >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


# --- I/O edge -----------------------------------------------------------------------------

def _fresh(dst: Path, *sources: Path) -> bool:
    """dst exists and is newer than every source (so a resumed publish skips it)."""
    return dst.exists() and all(dst.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{path}: could not write JPEG")


def pages_without_cutouts(extract: Path, scores: list[dict]) -> list[str]:
    """Pages extracted (their page.json written) that gave no cut-out, in name order."""
    done = [d.name for d in extract.iterdir() if (d / "page.json").is_file()] if extract.is_dir() else []
    return sorted(set(done) - {r["image"] for r in scores})


def read_ious(per_cutout_csv: Path) -> dict[tuple[str, int], float]:
    """(image, k) -> IoU from validate's per_cutout.csv; empty when there is none."""
    if not per_cutout_csv.is_file():
        return {}
    with open(per_cutout_csv, encoding="utf-8", newline="") as f:
        return {(row["image"], int(row["k"])): float(row["iou"]) for row in csv.DictReader(f) if row["iou"]}


def write_images(extract: Path, out: Path, cards: list[Card], params: DashboardParams, max_pixels: int,
                 log: Callable[[str], None]) -> None:
    """Thumbnails of every cut-out and one overlay per page that has a cut-out, under `out`; a
    cut-out or label map that cannot be read is one line in `log` and has no picture."""
    for c in cards:
        src = extract / c.image / f"char_{c.k}.png"
        if not _fresh(out / c.thumb, src):
            try:
                write_png(out / c.thumb, fit(read_rgba_png(src), params.thumb_px))
            except (BadInput, OSError) as e:
                log(f"warning: {e}; its dashboard card has no picture")
    for image in sorted({c.image for c in cards}):
        page_dir = extract / image
        dst = out / f"overlays/{image}.jpg"
        if _fresh(dst, page_dir / "labels.png"):
            continue
        try:
            labels = read_label_png(page_dir / "labels.png")
        except (BadInput, OSError) as e:
            log(f"warning: {e}; the dashboard shows no overlay of this page")
            continue
        try:
            rgb = read_image(Path(read_json(page_dir / "page.json")["source"]), max_pixels)
        except (BadInput, OSError, TypeError, KeyError):  # source moved: the masks on grey still tell
            rgb = np.full(labels.shape + (3,), 160, np.uint8)
        _write_jpeg(dst, fit(overlay(rgb, labels, params.overlay_alpha), params.overlay_px))


def read_review_state(path: Optional[Path]) -> tuple[dict[str, Review], Optional[str]]:
    """sha256 -> review state from reviews.jsonl (none where there is no file), and why the
    file could not be read (the page then says so and shows no reviews)."""
    try:
        return latest(read_reviews(path)), None
    except (ReviewError, OSError, UnicodeDecodeError) as e:
        return {}, (str(e).splitlines()[0] if str(e) else type(e).__name__)


def copy_failures(src: Path, out: Path) -> Optional[dict]:
    """The failure patterns in `src` (failures.json; None where there is none) with their map and
    example thumbnails copied to `out/failures/`; returns failure_view() of them."""
    result = read_json(src / "failures.json")
    if result is None:
        return None
    view = failure_view(result)
    files = ([view["map_src"]] if view["map_src"] else []) + [img for p in view["patterns"] for _, img in p["example_imgs"]]
    for rel in files:
        source, dst = src / rel.split("/", 1)[1], out / rel
        if not source.is_file() or _fresh(dst, source):
            continue
        with atomic_path(dst) as tmp:
            shutil.copyfile(source, tmp)
    return view


def write_dashboard(run: RunPaths, out: Path, state: dict, params: DashboardParams, max_pixels: int,
                    log: Callable[[str], None]) -> Path:
    """Build `out/index.html` (and its images) from the run's outputs; return its path. The
    failure patterns (`<metrics>/failures/`, `kirinuki failures`) are shown where they exist."""
    scores = read_jsonl(run.scores) if run.scores.is_file() else []
    cards = build_cards(scores, read_ious(run.per_cutout))
    review_state, reviews_error = read_review_state(run.reviews)
    cards = with_reviews(cards, cutout_shas(run.extract, [(c.image, c.k) for c in cards]), review_state, training_usage(run.exports))
    write_images(run.extract, out, cards, params, max_pixels, log)
    page = out / "index.html"
    failures = copy_failures(run.failures, out)
    write_text(page, redact(render_dashboard(state, cards, read_json(run.validate_json), read_json(run.compare_json),
                                             reviews_error, failures)))
    return page


def write_index(author_workspaces: Path) -> Path:
    """`<root>/<author>/tracker-workspace/index.html`: every tracker ID of that author."""
    entries = [live_state(s) for s in (read_json(d / "track.json") for d in sorted(author_workspaces.iterdir())
                                       if d.is_dir()) if s]
    page = author_workspaces / "index.html"
    write_text(page, redact(render_index(entries, "{id}/dashboard/index.html")))
    return page
