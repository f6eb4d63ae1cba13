"""Image and file I/O at the edges: robust reading, atomic writing.

Every writer goes through a temporary name in the same folder and `os.replace`,
so a crash never leaves a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
GT_SUFFIX = "_gt"
_UMASK = os.umask(0)
os.umask(_UMASK)


class BadImage(Exception):
    """An input that cannot be used; str() is a one-line reason."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: encoders such as cv2.imwrite choose the format by it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_png(path: Path, array: np.ndarray) -> None:
    """Write HxW (uint8/uint16), HxWx3 RGB or HxWx4 RGBA uint8 as PNG, atomically.

    PNG via OpenCV with fixed settings is byte-for-byte deterministic. zlib level 1: cut-outs
    write 2.3x faster than at level 6 and are ~10% larger; one row filter (Up) instead of
    trying all five per row: 2x faster again, 1% larger (realbench cut-outs and labels).
    """
    if array.ndim == 3:
        code = cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        array = cv2.cvtColor(array, code)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array, [cv2.IMWRITE_PNG_COMPRESSION, 1,
                                          cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]):
            raise OSError(f"{path}: could not write PNG")


def read_label_png(path: Path) -> np.ndarray:
    """Read a label map (uint8 or uint16 PNG) as HxW integer array, unchanged."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise BadImage(f"{path}: not a readable PNG label map")
    if arr.ndim == 3:  # an RGB(A) mask saved by a paint tool: any non-black pixel is foreground
        arr = (arr[..., :3].max(axis=2) > 0).astype(np.uint8) * 255
    return arr


def read_rgba_png(path: Path) -> np.ndarray:
    """Read an RGBA PNG cut-out as HxWx4 uint8 (RGB order)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] != 4:
        raise BadImage(f"{path}: not an RGBA PNG")
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """Decode any common image file to HxWx3 uint8 RGB, upright.

    Handles EXIF rotation, CMYK, 16-bit, palette and (grayscale+)alpha images;
    transparency is flattened onto white, the usual paper colour of a page.
    Raises BadImage with a one-line reason for anything it cannot use.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage(f"{path}: empty file (0 bytes)")
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadImage(f"{path}: {w}x{h} exceeds extract.max_pixels={max_pixels}")
            im = ImageOps.exif_transpose(im)
            im.load()
            return _to_rgb(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"{path}: too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = "not an image or unsupported format" if "cannot identify" in str(e) else str(e)
        raise BadImage(f"{path}: {reason}") from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        g = np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        g = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def is_gt_file(path: Path) -> bool:
    return path.stem.endswith(GT_SUFFIX)


def find_images(root: Path) -> list[Path]:
    """Image files under `root` (a file or a folder, recursive), GT masks excluded, sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_gt_file(p)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def index_gt(gt_root: Path) -> dict[str, Path]:
    """Map image stem -> `<stem>_gt.png` anywhere under `gt_root` (beside or mirroring)."""
    return {p.stem[: -len(GT_SUFFIX)]: p for p in sorted(Path(gt_root).rglob(f"*{GT_SUFFIX}.png"))}
