"""extract: pages -> instance label maps, RGBA cut-outs and records.

Per input image `<stem>` it writes `OUT/<stem>/labels.png`, `OUT/<stem>/char_<k>.png`
and, last, `OUT/<stem>/page.json` (the page's records; its presence with the same
params hash is what makes a page "done" for resume). `OUT/records.jsonl` gathers the
records of every page of the run.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from . import __version__
from .config import ExtractParams
from .imageio import BadImage, find_images, read_image, write_json, write_jsonl, write_png
from .instances import bbox, crop_box, cutout, instances_from_mask
from .segment import Segmenter, load_segmenter


def extract_page(rgb: np.ndarray, segment: Segmenter, params: ExtractParams):
    """HxWx3 uint8 page -> (HxW label map, [(k, bbox, crop box, hxwx4 RGBA, confidence)])."""
    prob = segment(rgb)
    labels = instances_from_mask(prob, params.threshold, params.min_area, params.fill_holes)
    chars = []
    for k in range(1, int(labels.max()) + 1):
        mask = labels == k
        box = bbox(mask)
        crop = crop_box(box, labels.shape, params.margin)
        chars.append((k, box, crop, cutout(rgb, labels, k, crop), float(prob[mask].mean())))
    return labels, chars


def params_hash(params: ExtractParams, segment: Segmenter) -> str:
    """What makes an output reusable: the extract params and the exact model.

    The model enters by its sha256, not its path, which may be spelled many ways.
    """
    return f"{params.digest(exclude=frozenset({'model'}))}-{segment.info['model_sha256'][:12]}"


def _page_done(page_dir: Path, source: Path, phash: str) -> Optional[dict]:
    try:
        page = json.loads((page_dir / "page.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return page if page.get("params_hash") == phash and page.get("source") == str(source) else None


def process_image(path: Path, out: Path, segment: Segmenter, params: ExtractParams, phash: str) -> dict:
    """Extract one image into `out/<stem>/`; return its page record. Raises BadImage."""
    start = time.perf_counter()
    rgb = read_image(path, params.max_pixels)
    labels, chars = extract_page(rgb, segment, params)
    page_dir = out / path.stem
    (page_dir / "page.json").unlink(missing_ok=True)  # the page is not done until rewritten
    write_png(page_dir / "labels.png", labels)
    records = []
    for k, box, crop, rgba, conf in chars:
        write_png(page_dir / f"char_{k}.png", rgba)
        records.append({"image": path.stem, "k": k, "bbox": list(box), "crop": list(crop),
                        "area": int((labels == k).sum()), "confidence": round(conf, 4)})
    for stale in page_dir.glob("char_*.png"):  # left over from an earlier run with more characters
        if int(stale.stem.split("_")[1]) > len(chars):
            stale.unlink()
    seconds = round(time.perf_counter() - start, 3)
    for r in records:
        r.update(segment.info, seconds=seconds, params_hash=phash)
    page = {"image": path.stem, "source": str(path), "width": rgb.shape[1], "height": rgb.shape[0],
            "n_chars": len(chars), "seconds": seconds, "params_hash": phash, "records": records}
    write_json(page_dir / "page.json", page)
    return page


@dataclass
class ExtractSummary:
    pages: int = 0
    skipped: int = 0
    characters: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def run_extract(inputs: Path, out: Path, params: ExtractParams, max_files: Optional[int] = None,
                progress: bool = True, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                on_page: Callable[[Path], None] = lambda path: None) -> ExtractSummary:
    """Extract every image under `inputs` into `out`; a bad file is reported and skipped.

    `on_page(path)` is called just before a page is extracted (not for resumed pages):
    the tracker times pages with it.
    """
    images = find_images(inputs)[:max_files]
    segment = load_segmenter(params)
    phash = params_hash(params, segment)
    out.mkdir(parents=True, exist_ok=True)
    summary, pages, seen = ExtractSummary(), [], {}
    for path in tqdm(images, desc="extract", unit="page", disable=not progress, file=sys.stderr):
        if path.stem in seen:
            summary.errors.append(f"{path}: duplicate image name, same stem as {seen[path.stem]}; skipped")
            log(summary.errors[-1])
            continue
        seen[path.stem] = path
        page = _page_done(out / path.stem, path, phash)
        if page is not None:
            summary.skipped += 1
        else:
            on_page(path)
            try:
                page = process_image(path, out, segment, params, phash)
            except BadImage as e:
                summary.errors.append(str(e))
                log(str(e))
                continue
            summary.seconds.append(page["seconds"])
        summary.pages += 1
        summary.characters += page["n_chars"]
        pages.append(page)
    write_jsonl(out / "records.jsonl", [r for p in pages for r in p["records"]])
    write_json(out / "run.json", {"kirinuki": __version__, "python": platform.python_version(),
                                  "params_hash": phash, **segment.info,
                                  "pages": summary.pages, "errors": summary.errors})
    return summary
