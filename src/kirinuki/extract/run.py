"""extract: pages -> instance label maps, RGBA cut-outs and records.

Per input image `<stem>` it writes `OUT/<stem>/labels.png`, `OUT/<stem>/char_<k>.png`
and, last, `OUT/<stem>/page.json` (the page's records; its presence with the same
params hash is what makes a page "done" for resume). `OUT/records.jsonl` gathers the
records of every page of the run.

Per page: boxes from the detector (if `extract.detector` is set), then the segmenter
(ISNet: one soft mask of the page; SAM: one mask per box), then instances (without a
detector: connected components, cut apart by the learned splitters, at heads and then at
centres of mass; both add the characters the segmenter missed, heads first, and the second
also drops regions that hold no character; the head splitter looks at each region again on a
crop around it; last, a region holding two or more anime faces is cut between them).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from kirinuki import __version__
from kirinuki.core.config import ExtractParams
from kirinuki.extract.detect import Detector, load_detector
from kirinuki.extract.faces import FaceDetector, cut_at_faces, load_faces
from kirinuki.core.imageio import (IMAGE_SUFFIXES, BadInput, read_image, remove_stale_temps, scan_images, write_json, write_jsonl,
                                   write_png)
from kirinuki.core.instances import crop_box, cutout, instances_from_mask, instances_from_masks, label_dtype
from kirinuki.extract.lettering import cut_balloons, drop_lettering
from kirinuki.extract.panels import find_panels, outside_panels, panel_boxes, placement
from kirinuki.extract.segment import BoxSegmenter, Segmenter, is_monochrome, load_segmenter
from kirinuki.extract.split import Splitter, drop_centreless, load_splitter, recover_missed, split_closer, split_instances


@dataclass
class Models:
    """The loaded backends of a run: the segmenter and, when `extract.detector` is set, the
    detector, else the splitter (when `extract.splitter` is set), the head splitter and the
    face detector."""
    segment: Union[Segmenter, BoxSegmenter]
    detect: Optional[Detector] = None
    split: Optional[Splitter] = None
    heads: Optional[Splitter] = None
    faces: Optional[FaceDetector] = None

    @property
    def info(self) -> dict:
        """Backend names, versions and weights hashes, recorded with every cut-out."""
        return {**self.segment.info, **(self.detect.info if self.detect else {"detector": "none"}),
                **(self.split.info if self.split else {}), **(self.heads.info if self.heads else {}),
                **(self.faces.info if self.faces else {})}

    @classmethod
    def load(cls, params: ExtractParams) -> "Models":
        detect = load_detector(params)
        split = None if detect else load_splitter(params)
        segment = load_segmenter(params)
        return cls(detect=detect, segment=segment, split=split,
                   heads=load_splitter(params, "head_splitter") if split else None,
                   faces=load_faces(params) if split else None)


@dataclass
class Char:
    """One character of a page: label k, bbox and crop box (xyxy), area, its hxwx4 RGBA cut-out."""
    k: int
    box: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    area: int  # pixels
    rgba: np.ndarray
    confidence: float  # mean mask probability inside
    predicted_iou: Optional[float]  # SAM's own estimate of its mask's IoU; None for ISNet
    detection_score: Optional[float]  # the detector's confidence in the character's box
    panels: int  # comic panels it spans (2+: it crosses a panel border; the scorer flags it)
    frame: tuple[int, int, int, int]  # x0, y0, x1, y1 of the panel it lies in, or of the page: ending there is framing


def boxes_to_masks(fg: np.ndarray, xyxy: np.ndarray, priors: bool = False) -> np.ndarray:
    """HxW bool foreground, Nx4 xyxy boxes -> NxHxW bool disjoint masks.

    Each foreground pixel inside at least one box goes to the box whose centre is
    nearest, in units of that box's size (so a small box inside a large one keeps the
    pixels around its centre); foreground outside every box is no character, unless the
    boxes are `priors` (bodies guessed from heads): then a foreground region that a box
    reaches goes whole to the characters, each pixel outside the boxes to the nearest
    character's pixels, as arms, hair and skirts reach past a guessed body.
    """
    h, w = fg.shape
    xs = np.arange(w, dtype=np.float32)[None] + 0.5  # pixel centres
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    best = np.full((h, w), np.inf, np.float32)
    owner = np.full((h, w), -1, np.int32)
    for i, (x0, y0, x1, y1) in enumerate(xyxy):
        inside = fg & (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        d = ((xs - (x0 + x1) / 2) / max(x1 - x0, 1)) ** 2 + ((ys - (y0 + y1) / 2) / max(y1 - y0, 1)) ** 2
        nearer = inside & (d < best)
        best[nearer], owner[nearer] = d[nearer], i
    if priors and (owner >= 0).any():
        n, regions = cv2.connectedComponents(fg.astype(np.uint8))
        reached = np.zeros(n, bool)
        reached[regions[owner >= 0]] = True
        rest = reached[regions] & (owner < 0)
        _, (iy, ix) = ndimage.distance_transform_edt(owner < 0, return_indices=True)
        owner[rest] = owner[iy[rest], ix[rest]]
    return owner[None] == np.arange(len(xyxy), dtype=np.int32)[:, None, None]


def _timed(fn, *args):
    """fn(*args) and the seconds it took."""
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def _cut(labels: np.ndarray, rgb: np.ndarray, models: Models, params: ExtractParams):
    """ISNet's regions -> characters, by the splitter and the head splitter (split.py), and the seconds spent in their forward passes."""
    forward = 0.0

    def look(model, *args):
        nonlocal forward
        out, seconds = _timed(model, *args)
        forward += seconds
        return out

    heat, offsets, fg = look(models.split, rgb)
    # scenery goes before the cuts: a part cut off at a head is a character's even
    # where the centres of mass miss it
    labels = drop_centreless(labels, heat, params.min_centre)
    if models.heads is not None:  # two heads in one region are two characters, however they overlap
        head_heat, head_offsets, head_fg = look(models.heads, rgb)
        labels = split_instances(labels, head_heat, head_offsets, params.head_peak, params.head_share,
                                 params.head_separation)
    labels = split_instances(labels, heat, offsets, params.split_peak, params.split_share,
                             params.split_separation)
    if models.heads is not None:  # a clear head is a character before any centre claims its pixels
        labels = recover_missed(labels, head_heat, head_offsets, head_fg, params.head_recover_peak,
                                params.head_peak, params.min_area)
    labels = recover_missed(labels, heat, offsets, fg, params.recover_peak, params.split_peak, params.min_area)
    if models.heads is not None:  # last, so that recovered regions get their closer look too
        labels = split_closer(labels, rgb, lambda crop: look(models.heads, crop), params.head_zoom,
                              params.head_zoom_peak, params.head_share, params.head_separation)
    return labels, forward


def _regions(rgb: np.ndarray, prob: np.ndarray, models: Models, params: ExtractParams):
    """ISNet's connected components of one image (`prob`: its foreground), cut apart by the
    splitters -> (HxW labels, seconds in the splitters' forward passes)."""
    labels = instances_from_mask(prob, params.threshold, params.min_area, params.fill_holes,
                                 params.core_prob, params.min_core)
    if models.split is None:
        return labels, 0.0
    return _cut(labels, rgb, models, params)


def _by_panel(rgb: np.ndarray, panels: np.ndarray, models: Models, params: ExtractParams):
    """_regions of each panel on its own crop, kept inside the panel (a gutter is a hard
    boundary), and of the art outside the panels -> (HxW labels 1..n, HxW probability, seconds)."""
    labels = np.zeros(rgb.shape[:2], np.int32)
    prob = np.zeros(rgb.shape[:2], np.float32)
    boxes = panel_boxes(panels)
    crops = [rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
    owners = list(range(1, len(boxes) + 1))  # the panel id each crop's pixels must have; 0: outside every panel
    rest = outside_panels(rgb, panels)
    if rest is not None:
        boxes, crops, owners = boxes + [rest[0]], crops + [rest[1]], owners + [0]
    probs, forward = _timed(models.segment.many, crops, params.panels_per_pass)
    n = 0
    for p, (x0, y0, x1, y1), crop, part_prob in zip(owners, boxes, crops, probs):
        inside = panels[y0:y1, x0:x1] == p
        part, seconds = _regions(crop, part_prob, models, params)
        forward += seconds
        part = np.where(inside, part, 0)
        ids = np.unique(part[part > 0])
        lut = np.zeros(int(part.max()) + 1, np.int32)
        lut[ids] = np.arange(n + 1, n + 1 + len(ids))
        labels[y0:y1, x0:x1] = np.where(part > 0, lut[part], labels[y0:y1, x0:x1])
        prob[y0:y1, x0:x1] = np.where(inside, part_prob, prob[y0:y1, x0:x1])
        n += len(ids)
    return labels.astype(label_dtype(n)), prob, forward


def _instances(rgb: np.ndarray, panels: np.ndarray, manga: bool, models: Models, params: ExtractParams):
    """HxWx3 uint8 page, its HxW panel map, whether it is monochrome -> (HxW label map, [(HxW mask
    probability, predicted IoU, detection score)] for labels 1..n, seconds in model forward passes)."""
    if models.detect is None:  # the default: ISNet's connected components, cut apart by the splitter
        if params.panels and panels.max() >= 2:
            if manga:  # bubbles; on colour pages light figures have few dark strokes
                params = params.model_copy(update={"recover_peak": params.manga_recover_peak})
            labels, prob, forward = _by_panel(rgb, panels, models, params)
            if manga:
                labels = cut_balloons(drop_lettering(labels, rgb, params.min_stroke_span), rgb)
        else:
            prob, forward = _timed(models.segment, rgb)
            labels, seconds = _regions(rgb, prob, models, params)
            forward += seconds
        if models.faces is not None and labels.max():  # last: what the splitters left whole, faces may tell apart
            faces, seconds = _timed(models.faces, rgb)
            labels, forward = cut_at_faces(labels, faces, params.face_reach, panels), forward + seconds
        return labels, [(prob, None, None)] * int(labels.max()), forward
    (xyxy, det, priors), forward = _timed(models.detect, rgb)
    if params.segmenter == "sam":
        (probs, ious), seconds = _timed(models.segment, rgb, xyxy)
        labels, src = instances_from_masks(probs >= params.threshold, ious, params.min_area, params.fill_holes)
        meta = [(probs[i], float(ious[i]), float(det[i])) for i in src]
    else:
        prob, seconds = _timed(models.segment, rgb)
        masks = boxes_to_masks(prob >= params.threshold, xyxy, priors)
        labels, src = instances_from_masks(masks, det, params.min_area, params.fill_holes)
        meta = [(prob, None, float(det[i])) for i in src]
    return labels, meta, forward + seconds


def extract_page(rgb: np.ndarray, models: Models, params: ExtractParams):
    """HxWx3 uint8 page -> (HxW label map, [Char], seconds in model forward passes).

    No detector: ISNet's mask, split into connected components (the default). With a
    detector: ISNet's foreground assigned to the boxes (boxes_to_masks), or one SAM mask
    per box; overlaps go to the higher detection score (ISNet) or predicted IoU (SAM).
    """
    manga = is_monochrome(rgb, params.mono_chroma)
    panels = find_panels(rgb, frame_lines=manga)  # cheap (ms); tells a cut-out across panels
    labels, meta, forward = _instances(rgb, panels, manga, models, params)
    boxes = panel_boxes(panels)
    chars = []
    for k, ((ys, xs), (prob, iou, score)) in enumerate(zip(ndimage.find_objects(labels), meta), start=1):
        mask = labels[ys, xs] == k  # within the character's box: a page-wide mask per character costs more
        box = xs.start, ys.start, xs.stop, ys.stop
        crop = crop_box(box, labels.shape, params.margin)
        chars.append(Char(k, box, crop, int(mask.sum()), cutout(rgb, labels, k, crop),
                          float(prob[ys, xs][mask].mean()), iou, score,
                          *placement(panels[ys, xs], mask, boxes, labels.shape)))
    return labels, chars, forward


def params_hash(params: ExtractParams, models: Models) -> str:
    """What makes an output reusable: the extract params and the exact weights.

    Weights enter by their sha256, not their paths, which may be spelled many ways; settings
    that change how fast, not what (threads, page_warn_s), do not enter; nor does the device,
    unless a torch backend (yolo, sam) runs on it: CUDA and CPU round its floats differently.
    """
    torch = params.detector == "yolo" or params.segmenter == "sam"
    digest = params.digest(exclude={"model": True, "splitter": True, "head_splitter": True, "faces": True,
                                    "yolo": {"weights"}, "sam": {"checkpoint"}, "threads": True,
                                    "device": not torch, "page_warn_s": True})
    shas = [models.segment.info["model_sha256"]] + [
        m.info[key] for m, key in ((models.detect, "detector_sha256"), (models.split, "splitter_sha256"),
                                   (models.heads, "head_splitter_sha256"), (models.faces, "faces_sha256")) if m]
    return "-".join([digest] + [sha[:12] for sha in shas])


def _page_done(page_dir: Path, source: Path, phash: str) -> Optional[dict]:
    try:
        page = json.loads((page_dir / "page.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return page if page.get("params_hash") == phash and page.get("source") == str(source) else None


TIMINGS = ("seconds", "forward_seconds")


def process_image(path: Path, out: Path, models: Models, params: ExtractParams, phash: str,
                  timings: bool = True) -> dict:
    """Extract one image into `out/<stem>/`; return its page record. Raises BadInput.

    `timings` False: the files written leave out the seconds (the record returned keeps them),
    so that they hold only what the inputs determine."""
    start = time.perf_counter()
    rgb = read_image(path, params.max_pixels)
    labels, chars, forward = extract_page(rgb, models, params)
    page_dir = out / path.stem
    (page_dir / "page.json").unlink(missing_ok=True)  # the page is not done until rewritten
    write_png(page_dir / "labels.png", labels)
    records = []
    for c in chars:
        write_png(page_dir / f"char_{c.k}.png", c.rgba)
        records.append({"image": path.stem, "k": c.k, "bbox": list(c.box), "crop": list(c.crop),
                        "area": c.area, "confidence": round(c.confidence, 4),
                        "predicted_iou": _round(c.predicted_iou), "detection_score": _round(c.detection_score),
                        "panels": c.panels, "frame": list(c.frame)})
    for stale in page_dir.glob("char_*.png"):  # left over from an earlier run with more characters
        if int(stale.stem.split("_")[1]) > len(chars):
            stale.unlink()
    seconds, forward = round(time.perf_counter() - start, 3), round(forward, 3)
    for r in records:
        r.update(models.info, seconds=seconds, forward_seconds=forward, params_hash=phash)
    page = {"image": path.stem, "source": str(path), "width": rgb.shape[1], "height": rgb.shape[0],
            "n_chars": len(chars), "monochrome": is_monochrome(rgb, params.mono_chroma), "seconds": seconds, "forward_seconds": forward, "params_hash": phash,
            "records": records}
    if timings:
        write_json(page_dir / "page.json", page)
    else:
        write_json(page_dir / "page.json", {**_untimed(page), "records": [_untimed(r) for r in records]})
    return page


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMINGS}


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 4)


@dataclass
class ExtractSummary:
    pages: int = 0
    skipped: int = 0  # pages already done (resumed)
    characters: int = 0
    errors: list[str] = field(default_factory=list)  # one line per page that failed, naming it
    seconds: list[float] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # one line per file of the folder that is no page


def _page_error(path: Path, e: Exception) -> str:
    """One line naming the page and what went wrong, for a failure that is not a BadInput."""
    what = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return f"{path}: failed ({type(e).__name__}{': ' + what if what else ''})"


def _drop_unfinished(page_dir: Path) -> None:
    """A page that failed half-way leaves nothing: its folder goes unless an earlier run finished it."""
    if page_dir.is_dir() and not (page_dir / "page.json").exists():
        shutil.rmtree(page_dir, ignore_errors=True)


def run_extract(inputs: Path, out: Path, params: ExtractParams, max_files: Optional[int] = None,
                progress: bool = True, log: Callable[[str], None] = lambda m: tqdm.write(m, file=sys.stderr),
                on_page: Callable[[Path], None] = lambda path: None,
                models: Optional[Models] = None, timings: bool = True) -> ExtractSummary:
    """Extract every image under `inputs` into `out`; a bad file is reported and skipped.

    `timings` False: page.json and records.jsonl leave out the seconds (the DVC stage: its
    outputs must be byte-identical for the same inputs; speed is `kirinuki bench`'s job).

    `on_page(path)` is called just before a page is extracted (not for resumed pages):
    the tracker times pages with it. `models`: backends already loaded (the benchmark
    passes timed ones); by default they are loaded from `params`.
    """
    images, ignored = scan_images(inputs)
    images = images[:max_files]
    for line in ignored:  # every file of the folder that is not a page is named, with the reason
        log(line)
    if not images:  # a wrong folder, not an empty run: nothing is written
        raise FileNotFoundError(f"{inputs}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
    models = models or Models.load(params)
    phash = params_hash(params, models)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in remove_stale_temps(out, recursive=True):  # a run killed during a write left these
        log(f"{tmp}: removed, a temporary file of an interrupted run")
    summary, pages, seen = ExtractSummary(ignored=ignored), [], {}
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
                page = process_image(path, out, models, params, phash, timings)
            except Exception as e:  # noqa: BLE001 - one page's failure is reported, the batch goes on
                summary.errors.append(str(e) if isinstance(e, BadInput) else _page_error(path, e))
                log(summary.errors[-1])
                _drop_unfinished(out / path.stem)
                continue
            summary.seconds.append(page["seconds"])
            if page["seconds"] > params.page_warn_s:
                log(f"{path}: took {page['seconds']:.1f} s, over extract.page_warn_s ({params.page_warn_s:g} s)")
        summary.pages += 1
        summary.characters += page["n_chars"]
        pages.append(page)
    write_jsonl(out / "records.jsonl", [r if timings else _untimed(r) for p in pages for r in p["records"]])
    # Python as major.minor: a patch release changes no output, and a byte-identical run.json keeps dvc.lock stable
    write_json(out / "run.json", {"kirinuki": __version__, "python": "%d.%d" % sys.version_info[:2],
                                  "params_hash": phash, **models.info,
                                  "pages": summary.pages, "errors": summary.errors})
    return summary
