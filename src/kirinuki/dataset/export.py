"""`kirinuki export`: reviewed or lora_ok cut-outs -> a LoRA training set, and `--check` of one.

DATASET/ holds one copy of each image per layout the trainers read (files hard-linked where the
file system allows):
- kohya/<repeats>_<trigger> <class>/<name>.png + <name>.txt, and kohya/dataset.toml;
- ai-toolkit/<name>.png + <name>.txt, and ai-toolkit/dataset.yaml;
- hf/train/<name>.png + hf/train/metadata.jsonl (Hugging Face `imagefolder`);
plus manifest.json (every file's sha256, each item's source cut-out, page, grade, review and
caption hash) and index.sqlite (items, tags and training usage; `kirinuki dataset`). The set is
built beside DATASET and swapped in whole, so a failed export leaves the previous one intact;
the usage history of the previous index is carried over (with the times training runs were
recorded). Apart from that history nothing in it holds a clock time, so the same cut-outs and
params give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from kirinuki import __version__
from kirinuki.core.cards import sha256_file
from kirinuki.core.config import ExportParams
from kirinuki.core.imageio import BadInput, read_json, read_jsonl, read_rgba_png, write_json, write_png, write_text
from kirinuki.dataset.captions import CaptionError, existing_caption, merge
from kirinuki.dataset.reviews import REVIEWS_NAME, Review, latest, read_reviews
from kirinuki.dataset.tags import TagDictionary, caption_text
from kirinuki.dataset.usage import EXPORTS_NAME, INDEX, linked_datasets, write_index
from kirinuki.core.runs import SCORES_NAME

MANIFEST = "manifest.json"
SAMPLE_MARK = ".kirinuki-sample"  # in a `dataset sample --kohya` folder: it may be replaced whole
LAYOUT_DIRS = {"kohya": "kohya", "ai-toolkit": "ai-toolkit", "hf": "hf/train"}
BUCKET_SPAN = 2.0  # bucket sides from resolution / SPAN to resolution * SPAN, as kohya's default range


class ExportError(Exception):
    """Export cannot go on; str() is a one-line reason naming the file."""


@dataclass(frozen=True)
class Source:
    """One run's cut-outs: its extract folder, grades and reviews."""
    name: str
    extract: Path
    scores: Path
    reviews: Optional[Path]
    exports: Optional[Path] = None  # the datasets made from it (a tracker workspace's datasets.txt)


def find_source(path: Path) -> Source:
    """A tracker workspace (`<ID>/extract/scores.jsonl`, reviews beside) or an extract folder that
    `kirinuki score` graded (`scores.jsonl` inside)."""
    path = Path(path)
    if (path / "extract" / SCORES_NAME).is_file():
        return Source(path.name, path / "extract", path / "extract" / SCORES_NAME, path / REVIEWS_NAME,
                      path / EXPORTS_NAME)
    if (path / SCORES_NAME).is_file():
        return Source(path.name, path, path / SCORES_NAME, path / REVIEWS_NAME)
    raise ExportError(f"{path}: no scores.jsonl (a tracker workspace, or an extract folder after `kirinuki score`)")


def kohya_folder(repeats: int, trigger: str, class_word: str) -> str:
    """The image folder name kohya-ss reads as `<repeats>_<caption>`: `10_mychar character`."""
    return f"{repeats}_{trigger} {class_word}".strip()


def layout_dir(layout: str, repeats: int, trigger: str, class_word: str) -> str:
    """A layout's image folder in the dataset; kohya's is named for its repeats and caption."""
    return f"kohya/{kohya_folder(repeats, trigger, class_word)}" if layout == "kohya" else LAYOUT_DIRS[layout]


# --- choosing the cut-outs -------------------------------------------------------------------

@dataclass
class Candidate:
    source: Source
    row: dict  # its scores.jsonl record
    path: Path
    sha256: str
    review: Optional[Review]

    @property
    def cutout(self) -> str:
        return f"{self.row['image']}/{self.row['k']}"

    @property
    def name(self) -> str:  # unique in the set, stable for the same cut-out
        return f"{self.row['image']}_{self.row['k']}_{self.sha256[:8]}"


def select(sources: list[Source], params: ExportParams, log: Callable[[str], None]) -> tuple[list[Candidate], dict]:
    """The cut-outs to export: not excluded by a review, and approved (select: approved) or
    approved or lora_ok (select: lora_ok); with the counts of what was left out and why."""
    chosen, left = [], {"excluded": 0, "not_selected": 0, "missing": 0}
    for src in sources:
        state = latest(read_reviews(src.reviews))
        for row in read_jsonl(src.scores):
            path = src.extract / row["image"] / f"char_{row['k']}.png"
            if not path.is_file():
                log(f"{path}: no such cut-out (scores.jsonl is older than the extract folder?); left out")
                left["missing"] += 1
                continue
            sha = sha256_file(path)
            review = state.get(sha)
            decision = review.decision if review else None
            if decision == "exclude":
                left["excluded"] += 1
            elif decision == "approve" or (params.select == "lora_ok" and row.get("lora_ok")):
                chosen.append(Candidate(src, row, path, sha, review))
            else:
                left["not_selected"] += 1
    return chosen, left


def _phash(rgba: np.ndarray) -> int:
    """64-bit perceptual hash (DCT of the 32x32 grey image, as imagehash.phash) of the cut-out on white."""
    import imagehash
    from PIL import Image
    h = imagehash.phash(Image.fromarray(_flatten(rgba, (255, 255, 255))))
    return int(str(h), 16)


def dedupe(cands: list[Candidate], images: list[np.ndarray], distance: int) -> tuple[list[int], dict[int, int]]:
    """Indices kept (a near-duplicate of a kept one, at most `distance` hash bits apart, is dropped:
    consecutive pages often repeat a panel; distance -1: only byte-identical ones) and dropped ->
    the index it repeats. Preference:
    approved first, then the higher score, then the order given."""
    hashes = np.array([_phash(im) for im in images], dtype=np.uint64)
    order = sorted(range(len(cands)), key=lambda i: (cands[i].review is None or cands[i].review.decision != "approve",
                                                     -float(cands[i].row.get("score", 0)), i))
    kept, dropped, by_sha = [], {}, {}
    for i in order:
        if cands[i].sha256 in by_sha:  # the very same cut-out twice (two runs over one page)
            dropped[i] = by_sha[cands[i].sha256]
            continue
        by_sha[cands[i].sha256] = i
        if kept and distance >= 0:
            bits = np.unpackbits((hashes[kept] ^ hashes[i]).view(np.uint8).reshape(len(kept), 8), axis=1).sum(1)
            j = int(np.argmin(bits))
            if bits[j] <= distance:
                dropped[i] = kept[j]
                continue
        kept.append(i)
    return sorted(kept), dropped


# --- images ----------------------------------------------------------------------------------

def _flatten(rgba: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + np.array(colour, np.float32) * (1 - a)
    return np.round(out).astype(np.uint8)


def buckets(resolution: int, step: int) -> list[tuple[int, int]]:
    """Aspect buckets (w, h) of about resolution^2 pixels, sides multiples of `step`, as kohya-ss
    and ai-toolkit bucket images."""
    lo, hi = max(step, int(resolution / BUCKET_SPAN) // step * step), int(resolution * BUCKET_SPAN) // step * step
    out = set()
    for w in range(lo, hi + 1, step):
        h = min(hi, resolution * resolution // w // step * step)
        if h >= lo:
            out |= {(w, h), (h, w)}
    return sorted(out)


def fit_bucket(rgba: np.ndarray, resolution: int, step: int, background: str) -> tuple[np.ndarray, bool]:
    """The cut-out scaled into the bucket closest to its aspect ratio and centred on the
    background (a colour, or transparent); and whether it had to be enlarged."""
    h, w = rgba.shape[:2]
    bw, bh = min(buckets(resolution, step), key=lambda b: (abs(np.log((b[0] / b[1]) / (w / h))), b))
    scale = min(bw / w, bh / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # premultiplied alpha while resampling, so transparent pixels' colour does not bleed into the edge
    pre = rgba.astype(np.float32)
    pre[..., :3] *= pre[..., 3:4] / 255.0
    pre = cv2.resize(pre, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    pre = np.clip(pre, 0, 255)
    alpha = pre[..., 3:4]
    rgb = np.where(alpha > 0, pre[..., :3] * 255.0 / np.maximum(alpha, 1e-6), 0)
    small = np.concatenate([np.clip(rgb, 0, 255), alpha], axis=2).round().astype(np.uint8)
    canvas = np.zeros((bh, bw, 4), np.uint8)
    y, x = (bh - nh) // 2, (bw - nw) // 2
    canvas[y:y + nh, x:x + nw] = small
    if background == "transparent":
        return canvas, scale > 1
    colour = tuple(int(background[i:i + 2], 16) for i in (1, 3, 5))
    return _flatten(canvas, colour), scale > 1


# --- captions --------------------------------------------------------------------------------

FRAME_TAGS = {"top": "head_out_of_frame", "bottom": "feet_out_of_frame"}  # booru tags for a page-edge cut


def generated_tags(row: dict, page: dict) -> list[str]:
    """Tags kirinuki knows itself: the framing (where the grade gives one), where the page's edge
    cuts the figure, one character in the cut-out, and a monochrome page."""
    tags = []
    if row.get("framing"):
        tags.append(row["framing"])
    sides = row.get("layers", {}).get("l2_content", {}).get("frame_sides", [])
    # a sure full_body: the figure stands on its frame's edge, its feet drawn (no contradicting tag)
    tags += [FRAME_TAGS[s] for s in sides
             if s in FRAME_TAGS and not (s == "bottom" and row.get("framing") == "full_body")]
    if row.get("features", {}).get("heads", 1) <= 1 and "multi_character" not in row.get("reasons", []):
        tags.append("solo")
    if page.get("monochrome"):
        tags += ["monochrome", "greyscale"]
    return tags


# --- writing ---------------------------------------------------------------------------------

def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: a copy
        shutil.copyfile(src, dst)


def _layout_configs(params: ExportParams, resolution: int, folder: str) -> dict[str, str]:
    """Config snippets the trainers read, beside their layout."""
    class_tokens = f"{params.trigger} {params.class_word}".strip()
    toml = ("# kohya-ss sd-scripts: --dataset_config kohya/dataset.toml (run from the dataset folder),\n"
            "# or --train_data_dir kohya --caption_extension .txt (repeats and class from the folder name)\n"
            "[general]\ncaption_extension = \".txt\"\nenable_bucket = true\n"
            f"bucket_reso_steps = {params.bucket_step}\n\n[[datasets]]\nresolution = {resolution}\n\n"
            f"  [[datasets.subsets]]\n  image_dir = \"kohya/{folder}\"\n  num_repeats = {params.repeats}\n"
            f"  class_tokens = \"{class_tokens}\"\n")
    yaml_ = ("# ai-toolkit: paste under config.process[0].datasets (folder_path relative to the dataset folder)\n"
             "datasets:\n  - folder_path: ai-toolkit\n    caption_ext: txt\n    caption_dropout_rate: 0.05\n"
             f"    cache_latents_to_disk: true\n    resolution: [{resolution}]\n")
    return {"kohya/dataset.toml": toml, "ai-toolkit/dataset.yaml": yaml_}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _page_caption(page: Optional[Path], log: Callable[[str], None]):
    """The captions beside the source page; an unreadable caption file is named and passed over."""
    try:
        return existing_caption(page) if page else None
    except CaptionError as e:
        log(f"{e}; its captions are left out")
        return None


def load_tag_dictionary(params: ExportParams) -> TagDictionary:
    """export.tags, or no dictionary; raises ConfigError naming the file."""
    return TagDictionary.load(params.tags) if params.tags else TagDictionary.empty()


def run_export(sources: list[Source], out: Path, params: ExportParams, train_resolution: int,
               log: Callable[[str], None] = print, tagger=None) -> dict:
    """Export the chosen cut-outs of `sources` into `out`; return the manifest's summary."""
    out = Path(out)
    resolution = params.resolution or train_resolution
    tag_dict = load_tag_dictionary(params)
    cands, left = select(sources, params, log)
    images, readable = [], []
    for c in cands:  # a broken cut-out is named and left out; the set goes on
        try:
            images.append(read_rgba_png(c.path))
            readable.append(c)
        except BadInput as e:
            log(f"{e}; left out")
            left["missing"] += 1
    cands = readable
    kept, dropped = dedupe(cands, images, params.dedupe_distance)
    for i, j in sorted(dropped.items()):
        log(f"{cands[i].path}: a near-duplicate of {cands[j].path}; kept once")
    left["duplicates"] = len(dropped)
    folder = kohya_folder(params.repeats, params.trigger, params.class_word)
    items, files = [], {}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(out.parent.stat().st_mode & 0o777)  # mkdtemp's 0700 would make the set private
    try:
        if (out / INDEX).is_file():  # the usage history goes on with the new set
            shutil.copyfile(out / INDEX, tmp / INDEX)
        pages: dict[Path, dict] = {}
        for i in kept:
            c = cands[i]
            page_json = c.path.parent / "page.json"
            page = pages.setdefault(page_json, read_json(page_json) or {})
            tags = generated_tags(c.row, page)
            character = None
            if tagger is not None:
                found = tagger.tag(images[i])
                tags += [t for t, _, _ in found]
                character = next((t for t, _, cat in found if cat == "character"), None)  # for --balance character
            page_path = Path(page["source"]) if page.get("source") else None
            tags = merge(tags, _page_caption(page_path, log), params.existing_captions)
            tags = tag_dict.apply([t for t in tags if t != params.trigger], params.drop_groups, params.underscores)
            caption = caption_text(params.trigger, tags)
            picture, upscaled = fit_bucket(images[i], resolution, params.bucket_step, params.background)
            bases = [tmp / layout_dir(lay, params.repeats, params.trigger, params.class_word) for lay in params.layouts]
            write_png(bases[0] / f"{c.name}.png", picture)
            image_sha = sha256_file(bases[0] / f"{c.name}.png")
            for base in bases:
                if base != bases[0]:
                    link_or_copy(bases[0] / f"{c.name}.png", base / f"{c.name}.png")
                files[(base / f"{c.name}.png").relative_to(tmp).as_posix()] = image_sha
                if base.name != "train":  # kohya and ai-toolkit: a caption file beside each image
                    write_text(base / f"{c.name}.txt", caption + "\n")
                    files[(base / f"{c.name}.txt").relative_to(tmp).as_posix()] = _sha((caption + "\n").encode())
            items.append({"name": c.name, "cutout": c.cutout, "cutout_sha256": c.sha256, "image_sha256": image_sha,
                          "source": c.source.name, "source_page": page.get("source") or "", "grade": c.row.get("grade"),
                          "score": c.row.get("score"), "lora_ok": bool(c.row.get("lora_ok")),
                          "review": c.review.decision if c.review else None, "framing": c.row.get("framing"),
                          "character": character, "caption": caption, "caption_sha256": _sha((caption + "\n").encode()),
                          "tags": tags, "size": list(picture.shape[1::-1]), "upscaled": upscaled})
        if "hf" in params.layouts:
            meta = "".join(json.dumps({"file_name": f"{it['name']}.png", "text": it["caption"], "tags": it["tags"],
                                       "grade": it["grade"], "source_page": it["source_page"],
                                       "cutout_sha256": it["cutout_sha256"]}, sort_keys=True, ensure_ascii=False) + "\n"
                           for it in items)
            write_text(tmp / "hf/train/metadata.jsonl", meta)
            files["hf/train/metadata.jsonl"] = _sha(meta.encode())
        for rel, text in _layout_configs(params, resolution, folder).items():
            if rel.split("/")[0] in {LAYOUT_DIRS[lay].split("/")[0] for lay in params.layouts}:
                write_text(tmp / rel, text)
                files[rel] = _sha(text.encode())
        summary = {"items": len(items), "layouts": list(params.layouts), "resolution": resolution,
                   "left_out": left, "upscaled": sum(it["upscaled"] for it in items)}
        write_json(tmp / MANIFEST, {"kirinuki": __version__, "params": params.model_dump(mode="json"),
                                    "sources": [{"name": s.name, "scores_sha256": sha256_file(s.scores)} for s in sources],
                                    "summary": summary, "items": items, "files": dict(sorted(files.items()))})
        write_index(tmp / INDEX, items)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for src in sources:  # so the workspace's dashboard can tell how often training saw its cut-outs
        if src.exports is not None:
            linked = linked_datasets(src.exports)
            if out.absolute() not in linked:
                write_text(src.exports, "".join(f"{d}\n" for d in [*linked, out.absolute()]))
    return summary


def write_kohya_sample(base: Path, repeats: dict[int, list[str]], trigger: str, class_word: str, out: Path) -> None:
    """kohya folders `<repeats>_<trigger> <class>/` of sampled images (copies of their image and
    caption in `base`, not links: a caption edited there must not alter the exported set), replacing
    `out` whole: an image whose repeats changed since the last sample sits in one folder only, and
    an interrupted copy is never left behind."""
    check_replaceable(out, SAMPLE_MARK)  # before any copy
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(out.parent.stat().st_mode & 0o777)
    try:
        for n, names in repeats.items():
            for name in names:
                for ext in (".png", ".txt"):
                    if (base / (name + ext)).is_file():
                        dst = tmp / kohya_folder(n, trigger, class_word) / (name + ext)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(base / (name + ext), dst)
        write_text(tmp / SAMPLE_MARK, f"{base.absolute()}\n")
        _swap(tmp, out, SAMPLE_MARK)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_replaceable(out: Path, mark: str = MANIFEST) -> None:
    """ExportError where `out` holds files but no `mark`: a folder kirinuki did not write is never replaced."""
    if out.is_dir() and not (out / mark).is_file() and any(out.iterdir()):
        raise ExportError(f"{out}: exists and is not a folder kirinuki wrote (no {mark}); choose another folder")


def _swap(new: Path, out: Path, mark: str = MANIFEST) -> None:
    """Put the finished folder `new` in place of `out` (which is moved aside first, then removed)."""
    check_replaceable(out, mark)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(new, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# --- check -----------------------------------------------------------------------------------

def check(dataset: Path) -> list[str]:
    """Problems of an exported set, one line each ([] when it is whole): every listed file present
    with its sha256, no file that is not listed, each image with its caption and each caption with
    its image, the metadata naming every image once, and the counts of the manifest."""
    dataset = Path(dataset)
    manifest = dataset / MANIFEST
    try:
        m = read_json(manifest)
    except ValueError:
        return [f"{manifest}: not valid JSON"]
    if not m or not isinstance(m.get("files"), dict) or not isinstance(m.get("items"), list):
        return [f"{manifest}: missing or not a kirinuki dataset manifest"]
    problems = []
    listed = m["files"]
    present = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()} - {MANIFEST, INDEX}
    for rel in sorted(present - set(listed)):
        problems.append(f"{dataset / rel}: not in the manifest (added after export)")
    for rel, sha in sorted(listed.items()):
        p = dataset / rel
        if not p.is_file():
            problems.append(f"{p}: listed in the manifest, missing")
        elif sha256_file(p) != sha:
            problems.append(f"{p}: altered since export (sha256 differs from the manifest)")
    names = {it["name"] for it in m["items"]}
    for layout in m.get("summary", {}).get("layouts", []):
        base = LAYOUT_DIRS[layout]
        imgs = {Path(r).stem for r in present if r.startswith(base + "/") and r.endswith(".png")}
        if layout != "hf":
            txts = {Path(r).stem for r in present if r.startswith(base + "/") and r.endswith(".txt")}
            problems += [f"{dataset / base}/…/{s}.png: image without its caption" for s in sorted(imgs - txts)]
            problems += [f"{dataset / base}/…/{s}.txt: caption without its image" for s in sorted(txts - imgs)]
        else:
            meta = dataset / base / "metadata.jsonl"
            try:
                named = [r["file_name"] for r in read_jsonl(meta)] if meta.is_file() else []
            except (ValueError, KeyError):
                named = []
                problems.append(f"{meta}: not JSON lines with file_name")
            seen = [Path(n).stem for n in named]
            problems += [f"{meta}: names {s} more than once" for s in sorted({s for s in seen if seen.count(s) > 1})]
            problems += [f"{meta}: no line for {s}.png" for s in sorted(imgs - set(seen))]
            problems += [f"{meta}: names {s}.png, which is missing" for s in sorted(set(seen) - imgs)]
        if imgs != names:
            problems.append(f"{dataset / base}: {len(imgs)} images, the manifest lists {len(names)}")
    return problems


def read_manifest(dataset: Path) -> dict:
    m = read_json(Path(dataset) / MANIFEST)
    if not m:
        raise ExportError(f"{dataset}: no {MANIFEST} (not a kirinuki dataset)")
    return m

