"""Segmenters: RGB page -> soft foreground (character) mask, or one mask per box.

Backends sit behind one small protocol each and a registry chosen by `extract.segmenter`:
`isnet` (ONNX) segments the whole page; `sam` (segment-anything) segments inside the
detector's boxes. torch is imported by the sam builder only.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Callable, Protocol, Union

import cv2
import numpy as np
import onnxruntime as ort

from kirinuki.core.config import ExtractParams, SamParams
from kirinuki.core.sessions import INSTALL_BACKENDS, BackendUnavailable, onnx_session, torch_setup, weights_file
from kirinuki.core.cards import read_card, sha256_file


class Segmenter(Protocol):
    name: str
    info: dict  # backend versions, model hash: recorded with every cut-out

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb: HxWx3 uint8 -> HxW float32 foreground probability in 0..1."""

    def many(self, crops: list[np.ndarray], per_pass: int) -> list[np.ndarray]:
        """The same for several crops, `per_pass` of them to a forward pass."""


class IsnetSegmenter:
    """ISNet (DIS) as ONNX: input [1,3,S,S] float, output [1,1,S,S] in 0..1.

    Works for the anime ISNet (letterboxed, RGB/255) and the general one
    (stretched, RGB/255 - 0.5); the normalisation comes from params or the model card.
    """

    name = "isnet"

    def __init__(self, model: Path, size: int, mean, std, letterbox: bool, *, threads: int,
                 descreen_sigma: float, mono_chroma: float):
        self.session = onnx_session(model, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.prep = dict(size=size, mean=mean, std=std, letterbox=letterbox,
                         descreen_sigma=descreen_sigma, mono_chroma=mono_chroma)
        self.info = {"segmenter": self.name, "onnxruntime": ort.__version__,
                     "model": Path(model).name, "model_sha256": sha256_file(model)}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x, (top, left, nh, nw) = isnet_input(rgb, **self.prep)
        (y,) = self.session.run([self.output_name], {self.input_name: x})
        y = y[0, 0, top:top + nh, left:left + nw]
        return np.clip(cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)

    def many(self, crops: list[np.ndarray], per_pass: int) -> list[np.ndarray]:
        """Each crop's HxW foreground probability, `per_pass` crops to a forward pass.

        The crops of one pass share the model input as tiles (two: halves, three or four:
        quadrants), so each is seen at a share of the input size and a page's panels cost one or
        two passes, not one each; per_pass 1 gives each crop the whole input.
        """
        probs, size = [], self.prep["size"]
        for g in range(0, len(crops), per_pass):
            group = crops[g:g + per_pass]
            if len(group) == 1:
                probs.append(self(group[0]))
                continue
            canvas = np.full((size, size, 3), 255, np.uint8)
            placed = []
            for crop, tile in zip(group, tiles(len(group), size, _aspect(group))):
                x0, y0, x1, y1 = fit(crop.shape[:2], tile, self.prep["letterbox"])
                canvas[y0:y1, x0:x1] = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
                placed.append((x0, y0, x1, y1))
            prob = self(canvas)
            for crop, (x0, y0, x1, y1) in zip(group, placed):
                h, w = crop.shape[:2]
                probs.append(np.clip(cv2.resize(prob[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0))
        return probs


TILE_GAP = 8  # model px of white between tiles, so no region runs from one crop into the next


def _aspect(crops: list[np.ndarray]) -> float:
    """Mean height / width of some crops."""
    return float(np.mean([c.shape[0] / c.shape[1] for c in crops]))


def tiles(n: int, size: int, aspect: float) -> list[tuple[int, int, int, int]]:
    """n (2..4) tiles (x0, y0, x1, y1) of a size x size input: two halves, side by side for tall
    crops (aspect = height / width >= 1) and stacked for wide ones, else quadrants in reading
    order; TILE_GAP apart."""
    h, g = size // 2, TILE_GAP // 2
    if n == 2:
        cells = [(0, 0, h, size), (h, 0, size, size)] if aspect >= 1 else [(0, 0, size, h), (0, h, size, size)]
    else:
        cells = [(0, 0, h, h), (h, 0, size, h), (0, h, h, size), (h, h, size, size)][:n]
    return [(x0 + g, y0 + g, x1 - g, y1 - g) for x0, y0, x1, y1 in cells]


def fit(shape: tuple[int, int], tile: tuple[int, int, int, int], letterbox: bool) -> tuple[int, int, int, int]:
    """Where an HxW crop goes in a tile: stretched over it, or letterboxed (centred, in proportion)
    for a model that sees its input that way."""
    x0, y0, x1, y1 = tile
    if not letterbox:
        return tile
    scale = min((x1 - x0) / shape[1], (y1 - y0) / shape[0])
    nw, nh = max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))
    left, top = x0 + (x1 - x0 - nw) // 2, y0 + (y1 - y0 - nh) // 2
    return left, top, left + nw, top + nh


def is_monochrome(rgb: np.ndarray, max_chroma: float) -> bool:
    """HxWx3 uint8: mean (max - min channel) below `max_chroma` (0..255) = a grey page.

    Every 4th pixel each way is enough for a page-wide mean, and 15x cheaper; channels as
    separate planes, as a max over a length-3 axis is another 15x slower.
    """
    r, g, b = (rgb[::4, ::4, c] for c in range(3))
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float(np.mean(chroma)) < max_chroma


def isnet_input(rgb: np.ndarray, size: int, mean, std, letterbox: bool,
                descreen_sigma: float = 0.0, mono_chroma: float = 0.0):
    """HxWx3 uint8 page -> (1x3xSxS float32 model input, (top, left, nh, nw) of the page in it).

    Stretched or letterboxed to S = `size`. A monochrome page is blurred by
    `descreen_sigma` (model pixels) first: screentone dots read as texture to a model
    trained on photos, and as grey once averaged (realbench manga union IoU 0.24 -> 0.63).
    """
    h, w = rgb.shape[:2]
    s = size
    if letterbox:
        scale = s / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (s - nh) // 2, (s - nw) // 2
    else:
        nh, nw, top, left = s, s, 0, 0
    interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
    page = cv2.resize(rgb, (nw, nh), interpolation=interp)
    if descreen_sigma > 0 and is_monochrome(rgb, mono_chroma):
        page = cv2.GaussianBlur(page, (0, 0), descreen_sigma)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = np.zeros((1, 3, s, s), np.float32)
    for c in range(3):  # straight into the model's CHW layout: no HxWx3 float copies (25 -> 5 ms a page)
        np.divide(page[:, :, c], np.float32(255), out=x[0, c, top:top + nh, left:left + nw], casting="unsafe")
        x[0, c] -= mean[c]
        if std[c] != 1:  # the general ISNet's std is 1: skip a pass that changes nothing
            x[0, c] /= std[c]
    return x, (top, left, nh, nw)


def normalisation(params: ExtractParams, card: Callable[[], dict]) -> dict:
    """extract.mean/std/letterbox; any left None comes from the model's card (read only then)."""
    norm = {k: getattr(params, k) for k in ("mean", "std", "letterbox")}
    if any(v is None for v in norm.values()):
        values = card()
        norm = {k: values[k] if v is None else v for k, v in norm.items()}
    return norm


def isnet_model(params: ExtractParams) -> Path:
    """extract.model, or a one-line FileNotFoundError when it is not there."""
    model = Path(params.model)
    if not model.exists():
        raise FileNotFoundError(f"extract.model {model}: not found (run `kirinuki fetch-model`)")
    return model


def _isnet(params: ExtractParams) -> IsnetSegmenter:
    model = isnet_model(params)
    norm = normalisation(params, lambda: read_card(model))
    return IsnetSegmenter(model, params.input_size, threads=params.threads, descreen_sigma=params.descreen_sigma,
                          mono_chroma=params.mono_chroma, **norm)


class BoxSegmenter(Protocol):
    name: str
    info: dict

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rgb: HxWx3 uint8, boxes: Nx4 float32 xyxy -> (NxHxW float32 mask
        probability in 0..1, N float32 predicted IoU)."""


def center_points(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nx4 xyxy boxes -> (NxNx2 float32 point coordinates, NxN int labels): box i gets
    its own centre as a positive point (1) and every other box's centre as a negative one (0)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    n = len(boxes)
    return np.broadcast_to(centres, (n, n, 2)).astype(np.float32), np.eye(n, dtype=np.int64)


class SamSegmenter:
    """segment-anything: one image embedding per page, all boxes decoded in one batch."""

    name = "sam"

    def __init__(self, sam, params: SamParams, checkpoint: Path, torch):
        from segment_anything import SamPredictor
        self.torch = torch
        self.predictor = SamPredictor(sam)
        self.params = params
        self.info = {"segmenter": self.name, "segment_anything": version("segment-anything"),
                     "torch": torch.__version__, "sam_model_type": params.model_type,
                     "model": checkpoint.name, "model_sha256": sha256_file(checkpoint)}

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        if len(boxes) == 0:
            return np.zeros((0, h, w), np.float32), np.zeros(0, np.float32)
        torch, pred = self.torch, self.predictor
        dev = pred.device
        with torch.inference_mode():
            pred.set_image(rgb)  # RGB uint8, embedded once for every box
            coords = labels = None
            if self.params.points == "center":
                pts, lab = center_points(boxes)
                coords = pred.transform.apply_coords_torch(torch.as_tensor(pts, device=dev), (h, w))
                labels = torch.as_tensor(lab, device=dev)
            box_t = pred.transform.apply_boxes_torch(torch.as_tensor(boxes, device=dev), (h, w))
            logits, iou, _ = pred.predict_torch(coords, labels, boxes=box_t,
                                                multimask_output=self.params.multimask, return_logits=True)
            best = iou.argmax(dim=1)  # per box, the candidate SAM rates best
            rows = torch.arange(len(boxes), device=dev)
            masks = torch.sigmoid(logits[rows, best]).float().cpu().numpy()
            return masks, iou[rows, best].float().cpu().numpy()


def _sam(params: ExtractParams) -> SamSegmenter:
    """Build `extract.sam.model_type` with segment-anything's registry and load the
    state dict in `extract.sam.checkpoint` (weights only, onto `extract.device`)."""
    checkpoint = weights_file("extract.sam.checkpoint", params.sam.checkpoint)
    torch = torch_setup(params.device, params.threads)
    try:
        from segment_anything import sam_model_registry
    except ImportError:
        raise BackendUnavailable(f"extract.segmenter sam needs segment-anything: {INSTALL_BACKENDS}") from None
    sam = sam_model_registry[params.sam.model_type]()
    sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return SamSegmenter(sam.to(params.device).eval(), params.sam, checkpoint, torch)


SEGMENTERS = {"isnet": _isnet, "sam": _sam}


def load_segmenter(params: ExtractParams) -> Union[Segmenter, BoxSegmenter]:
    """The segmenter named by `extract.segmenter`."""
    return SEGMENTERS[params.segmenter](params)
