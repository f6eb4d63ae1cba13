"""The sample data set on disk (`kirinuki synth`): pages, their label maps and the manifest.

Layout: <out>/<author>/org/<work>/<stem>.png, its label map <stem>_gt.png beside it, and
<out>/scenes.csv. Each page is seeded from (seed, author, page index), so the same params
give the same bytes.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from kirinuki.core.config import SynthParams
from kirinuki.core.imageio import write_png, write_text
from kirinuki.synth.authors import _name_seed, author_style
from kirinuki.synth.layout import render_page

MANIFEST_COLUMNS = ("stem", "path", "author", "work", "width", "height", "n_chars",
                    "style", "kind", "truncated", "overlap")


def describe_labels(labels: np.ndarray) -> tuple[bool, bool]:
    """(truncated, overlap) of an HxW label map.

    truncated: a character touches the page border (cut by the page edge; a cut by a panel
    frame does not count). overlap: two characters' labels touch (one occludes the other).
    """
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    overlap = any(bool(((a > 0) & (b > 0) & (a != b)).any())
                  for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])))
    return bool(border.any()), overlap


def _work_sizes(pages: int) -> list[int]:
    """Pages per work: two works (ep01, ep02), the first the larger half."""
    return [n for n in ((pages + 1) // 2, pages // 2) if n]


def _special_pages(params: SynthParams) -> dict[tuple[int, int], str]:
    """(author index, page index) -> kind of the one black and the one empty page.

    The last pages of the first author's first work, so that its first page stays a
    normal one; if that work has a single page, the next page of the data set follows.
    """
    first = _work_sizes(params.pages_per_author)[0]
    order = [(0, i) for i in reversed(range(first))]
    order += [(a, i) for a in range(len(params.authors)) for i in range(params.pages_per_author)
              if (a, i) not in order]
    return dict(zip(order, ("black", "empty")))


def write_dataset(params: SynthParams, out: Path) -> list[Path]:
    """Write the sample data set; returns the page image paths, in order.

    Layout: out/<author>/org/<work>/<author>_<work>_<NN>.png with its label map
    <stem>_gt.png beside it, and out/scenes.csv (MANIFEST_COLUMNS, one row per page;
    n_chars, truncated and overlap describe the label map as drawn). Byte-identical for
    the same params: each page is seeded from (seed, author, page index).
    """
    if len(set(params.authors)) != len(params.authors):
        raise ValueError(f"synth.authors has duplicates: {params.authors}")
    out = Path(out)
    special = _special_pages(params)
    images, rows = [], []
    for a, author in enumerate(params.authors):
        traits = author_style(author, params.seed)
        works = [f"ep{k + 1:02d}" for k, n in enumerate(_work_sizes(params.pages_per_author)) for _ in range(n)]
        for i, work in enumerate(works):
            rng = np.random.default_rng(_name_seed("page", params.seed, author, i))
            style = "manga" if rng.random() < params.manga_share else "colour"
            n_chars = int(rng.choice(4, p=[0.08, 0.42, 0.35, 0.15]))
            w, h = (params.height, params.width) if rng.random() < 0.25 else (params.width, params.height)
            kind = special.get((a, i), "normal")
            rgb, labels = render_page(int(rng.integers(2 ** 62)), w, h, n_chars, style, kind, traits)
            stem = f"{author}_{work}_{works[:i + 1].count(work):02d}"
            image = out / author / "org" / work / f"{stem}.png"
            write_png(image, rgb)
            write_png(image.with_name(f"{stem}_gt.png"), labels)
            truncated, overlap = describe_labels(labels)
            rows.append((stem, image.relative_to(out).as_posix(), author, work, w, h, int(labels.max()),
                         style, kind, int(truncated), int(overlap)))
            images.append(image)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    write_text(out / "scenes.csv", buf.getvalue())
    return images
