"""faces: anime faces as evidence that a region holds several characters.

The splitters learned from sprites pasted on backgrounds; on real pages, characters sitting
side by side in a CG or a comic panel often stay one region. A face detector trained on anime
faces (lbpcascade_animeface, an OpenCV LBP cascade, MIT) sees them there: a region holding two
or more faces is cut between them, each pixel to the face whose body it most likely belongs to.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from kirinuki.core.cards import sha256_file
from kirinuki.core.config import ExtractParams
from kirinuki.extract.panels import panels_spanned
from kirinuki.extract.split import label_parts

MAX_SIDE = 1600  # the page is searched at most this large: faces stay >= 24 px on most pages, and it is fast
MIN_FACE = 24  # px at that scale, the cascade's own window
COLUMN = 0.5  # a face below another, within this x its width of its centre line, is on the same body
SIZES = 1.5  # faces this much apart in size are one character in front of another: no line parts them


class FaceDetector:
    """lbpcascade_animeface on the histogram-equalised grey page -> faces as Nx4 float (x, y, w, h)."""

    def __init__(self, cascade: Path, neighbours: int):
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError("extract.faces needs OpenCV's cascade classifier, which OpenCV 5 ships in "
                               "opencv-contrib-python-headless: pip install opencv-contrib-python-headless")
        try:
            self.cascade = cv2.CascadeClassifier(str(cascade))
        except (cv2.error, SystemError):  # a file OpenCV cannot parse raises, an empty one gives no cascade
            raise ValueError(f"extract.faces {cascade}: not an OpenCV cascade") from None
        if self.cascade.empty():
            raise ValueError(f"extract.faces {cascade}: not an OpenCV cascade")
        self.neighbours = neighbours
        self.info = {"faces": Path(cascade).name, "faces_sha256": sha256_file(cascade)}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        scale = min(1.0, MAX_SIDE / max(h, w))
        if scale < 1:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        found = self.cascade.detectMultiScale(cv2.equalizeHist(grey), 1.1, self.neighbours,
                                              minSize=(MIN_FACE, MIN_FACE))
        return np.asarray(found, np.float32).reshape(-1, 4) / scale


def load_faces(params: ExtractParams) -> Optional[FaceDetector]:
    """The face detector of `extract.faces`, or None when that is null."""
    if params.faces is None:
        return None
    if not Path(params.faces).exists():
        raise FileNotFoundError(f"extract.faces {params.faces}: not found (`kirinuki fetch-model` installs the shipped "
                                "cascade; or set extract.faces: null to go without)")
    return FaceDetector(params.faces, params.face_neighbours)


def body_faces(faces: np.ndarray) -> np.ndarray:
    """Nx4 faces -> those that can be separate characters, top first: a face below another and
    within COLUMN of its width from its centre line is on that body (a hand, a print, a chest
    the cascade mistook), not a second character's."""
    kept = []
    for f in faces[np.lexsort((faces[:, 0], faces[:, 1]))]:
        if not any(f[1] > k[1] and abs((f[0] + f[2] / 2) - (k[0] + k[2] / 2)) < COLUMN * k[2] for k in kept):
            kept.append(f)
    return np.array(kept, np.float32).reshape(-1, 4)


def cut_at_faces(labels: np.ndarray, faces: np.ndarray, reach: float, panels: np.ndarray) -> np.ndarray:
    """HxW label map (1..n), Nx4 faces (x, y, w, h), HxW panel map (find_panels) -> the same
    with every region that holds two or more face centres cut between them, labels again 1..m
    by falling area. Left whole are a region across comic panels (a page's worth of figures, text
    and frames that faces cannot share out; the grade flags it as spans_panels) and one whose faces
    differ in size by more than SIZES (one character in front of another).

    Each pixel goes to the nearest face in face units, where distance below a face counts
    1/`reach` as much: a body hangs under its head, and the figure beside it is a face width
    or two away.
    """
    n = int(labels.max())
    if n == 0 or len(faces) < 2:
        return labels
    h, w = labels.shape
    faces = body_faces(faces)
    cx, cy = faces[:, 0] + faces[:, 2] / 2, faces[:, 1] + faces[:, 3] / 2
    on = labels[np.minimum(cy.astype(np.intp), h - 1), np.minimum(cx.astype(np.intp), w - 1)]
    held = {k: np.flatnonzero(on == k) for k in range(1, n + 1)}
    if all(len(f) < 2 for f in held.values()):  # most pages: nothing to cut
        return labels
    parts = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        f = held[k]
        if len(f) >= 2:
            box = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            if faces[f, 2].max() > SIZES * faces[f, 2].min() or panels_spanned(panels[box], labels[box] == k) >= 2:
                f = f[:0]
        if len(f) < 2:
            parts.append((ys, xs))
            continue
        dx = (xs[None] - cx[f, None]) / faces[f, 2, None]
        dy = (ys[None] - cy[f, None]) / faces[f, 3, None]
        dy = np.where(dy > 0, dy / reach, dy)
        owner = np.argmin(dx * dx + dy * dy, 0)
        parts.extend((ys[owner == j], xs[owner == j]) for j in range(len(f)))
    return label_parts(parts, labels.shape)
