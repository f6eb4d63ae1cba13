"""params.yaml -> typed, validated config objects.

One default config lives here; params.yaml overrides it. It is validated once, at the
boundary, and passed down as a value: an unknown key or a bad value stops with an error
that names the key (e.g. ``params.yaml: extract.threshold: Input should be ...``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


# a tracker ID (the ticket row, the dashboard, the workspace folder): letters and digits joined by - or _
TRACKER_ID_PATTERN, TRACKER_ID_MAX = r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*", 64
# `kirinuki serve`: where it listens by default (the dashboard links below point there), and how
# long a connection may stay silent (half-open, slow) before it is closed
SERVE_HOST, SERVE_PORT, SERVE_IDLE_TIMEOUT_S = "127.0.0.1", 8765, 30.0
GITHUB_COM = "https://github.com"  # `kirinuki report-pr`'s server unless $GITHUB_SERVER_URL names an Enterprise one
GOOGLE_SHEETS_API = "https://sheets.googleapis.com"  # where Google's client sends Sheets calls


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def digest(self, exclude=None) -> str:
        """Stable short hash of the values (less `exclude`, as pydantic's model_dump takes it:
        a set of keys or a nested dict), for resume checks and records."""
        blob = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ModelSource(Section):
    name: str
    kind: Literal["url", "npm"]
    # url: direct download; npm: "package@version#resource" (a chunked model in resources.json)
    location: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # every source is pinned: another file is refused
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    letterbox: bool


class ModelParams(Section):
    path: Path = Path("models/isnet.onnx")
    timeout_s: float = Field(10.0, gt=0)
    # the model every figure, threshold and golden file was made with; the anime ISNet is the
    # opt-in profile params-anime.yaml
    sources: list[ModelSource] = Field(default_factory=lambda: [
        ModelSource(name="general ISNet (@imgly/background-removal-data, AGPL-3.0)", kind="npm",
                    location="@imgly/background-removal-data@1.4.5#/models/small",
                    sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
                    mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), letterbox=False),
    ], min_length=1)


class QuantizeParams(Section):
    """`kirinuki quantize-model` (stage `quantize`): the fetched model -> a static int8 copy."""
    source: Path = Path("models/isnet.onnx")  # the fetched model (model.path)
    path: Path = Path("models/isnet.int8.onnx")  # the int8 model written, card beside it
    # folder of pages (recursive, *_gt.png excluded); None: the 8 sample pages shipped in the package
    # (kirinuki/assets/bundled/calibration), which made the measured int8 model
    calibration: Optional[Path] = None
    pages: int = Field(8, ge=1)  # calibration pages, spread evenly over the sorted list
    per_channel: bool = True  # one weight scale per output channel (more accurate here, as fast) or per tensor


class SynthParams(Section):
    seed: int = 0
    authors: list[str] = Field(default_factory=lambda: ["aoki", "mori"], min_length=1)
    pages_per_author: int = Field(12, ge=1)
    width: int = Field(768, ge=64)
    height: int = Field(1024, ge=64)
    manga_share: float = Field(0.5, ge=0, le=1)


class YoloParams(Section):
    """extract.detector yolo (ultralytics)."""
    weights: Optional[Path] = None  # e.g. models/yolov8x6_animeface.pt; an existing file, never downloaded
    classes: Optional[list[int]] = None  # class ids kept; None: all
    conf: float = Field(0.25, ge=0, le=1)  # confidence threshold
    iou: float = Field(0.7, gt=0, le=1)  # NMS IoU threshold
    imgsz: int = Field(1024, ge=32)  # longer side at inference
    max_det: int = Field(20, ge=1)  # boxes per page, at most
    # what the model finds: head (faces/heads, e.g. yolov8x6_animeface.pt) -> each box grows into a
    # body prior; body -> boxes used as detected
    boxes: Literal["head", "body"] = "head"
    body_heads_tall: float = Field(7.0, ge=1)  # body prior: this many head heights below the head top
    body_heads_wide: float = Field(3.0, ge=1)  # ... and this many head widths wide, centred on the head


class SamParams(Section):
    """extract.segmenter sam (segment-anything): one mask per detector box."""
    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    checkpoint: Optional[Path] = None  # e.g. models/sam_vit_b_01ec64.pth
    multimask: bool = True  # three candidate masks per box, the best by predicted IoU is kept
    # center: a positive point at each box's centre and a negative one at every other box's centre
    points: Literal["none", "center"] = "none"


class ExtractParams(Section):
    detector: Literal["none", "yolo"] = "none"
    segmenter: Literal["isnet", "sam"] = "isnet"
    model: Path = Path("models/isnet.int8.onnx")  # `kirinuki quantize-model` makes it from quantize.source
    input_size: int = Field(1024, ge=32)
    # None: take the normalisation recorded beside the model (models/<name>.json)
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    letterbox: Optional[bool] = None
    # a monochrome page (mean max-min channel below mono_chroma, 0..255) is blurred by
    # descreen_sigma model pixels before ISNet, so screentone reads as grey; 0 = off
    descreen_sigma: float = Field(1.5, ge=0)
    mono_chroma: float = Field(2.0, ge=0)
    threshold: float = Field(0.5, gt=0, lt=1)
    min_area: float = Field(0.01, ge=0, lt=1)  # share of the page; smaller regions are specks
    fill_holes: bool = True
    # a region with less than min_core of its pixels at prob >= core_prob is no character
    core_prob: float = Field(0.9, gt=0, le=1)
    min_core: float = Field(0.5, ge=0, le=1)
    # a comic page is cut into its panels along the gutters (extract/panels.py) and each panel is
    # segmented on its own; false: the whole page at once
    panels: bool = True
    # panels ISNet sees in one forward pass, as tiles of its input (1: each panel at the full input
    # size, finer and slower: real manga pages 2.4 s against 1.1 s with 4)
    panels_per_pass: int = Field(4, ge=1, le=4)
    # on a monochrome comic page, a region whose longest dark stroke spans less than this share of
    # its box is lettering (a speech bubble: extract/lettering.py), no character; 0 = off
    min_stroke_span: float = Field(0.17, ge=0, lt=1)
    # learned cue (extract/split.py) that cuts touching characters apart when there is no detector; None = off
    splitter: Optional[Path] = Path("models/splitter.onnx")
    split_peak: float = Field(0.25, gt=0, le=1)  # a centre is a heatmap peak at least this high
    split_share: float = Field(0.2, gt=0, le=0.5)  # ... holding at least this share of a region's votes
    split_separation: float = Field(0.3, ge=0)  # centres closer than this x sqrt(region area) are one character
    min_centre: float = Field(0.06, ge=0, le=1)  # a region whose heatmap stays below this holds no character; 0 = off
    recover_peak: float = Field(0.4, ge=0, le=1)  # a centre this strong on no region is a missed character; 0 = off
    # ... on a monochrome comic page, where ISNet misses most line-art figures and the splitter sees them
    manga_recover_peak: float = Field(0.3, ge=0, le=1)
    # the same cue trained on heads (`train-splitter --centre head`), cutting before it; with it only; None = off
    head_splitter: Optional[Path] = Path("models/head_splitter.onnx")
    head_peak: float = Field(0.4, gt=0, le=1)
    head_share: float = Field(0.15, gt=0, le=0.5)
    head_separation: float = Field(0.3, ge=0)
    head_recover_peak: float = Field(0.7, ge=0, le=1)  # a head this strong on no region is a missed character; 0 = off
    head_zoom: float = Field(1.5, ge=0)  # each region cut at heads again on a crop this x its size; 0 = off, else >= 1.1
    head_zoom_peak: float = Field(0.6, gt=0, le=1)  # ... at heads at least this high
    # anime faces (extract/faces.py, OpenCV cascade): a region holding two or more is cut between them; with the splitter only; None = off
    faces: Optional[Path] = Path("models/lbpcascade_animeface.xml")
    face_neighbours: int = Field(3, ge=1)  # detections that must agree on a face (the cascade's minNeighbors)
    face_reach: float = Field(3.0, gt=0)  # below its face a body reaches this many times as far as to the side
    margin: float = Field(0.04, ge=0, le=1)  # crop margin, share of the character's longer side
    max_pixels: int = Field(80_000_000, ge=1)
    threads: int = Field(0, ge=0)  # onnxruntime/torch intra-op threads; 0 = all cores (the libraries' default)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")  # torch backends (yolo, sam): cpu, cuda, cuda:N
    yolo: YoloParams = YoloParams()
    sam: SamParams = SamParams()
    page_warn_s: float = Field(300.0, gt=0)  # a page slower than this is logged

    @model_validator(mode="after")
    def _check(self):
        if self.segmenter == "sam" and self.detector == "none":
            raise ValueError("extract.segmenter sam needs boxes: set extract.detector")
        if 0 < self.head_zoom < 1.1:
            raise ValueError("extract.head_zoom must be 0 (off) or at least 1.1: every look holds the whole region")
        return self


# fitted on realbench dev for the default extractor; see its provenance
DEFAULT_SCORE_WEIGHTS = Path(__file__).parent.parent / "quality" / "score_weights.yaml"
# trained by `kirinuki train-framing`; its card (data, sha256) beside it
DEFAULT_FRAMING_MODEL = Path(__file__).parent.parent / "quality" / "framing.onnx"


class ScoreParams(Section):
    train_resolution: int = Field(512, ge=1)  # short side a LoRA trainer wants
    min_opaque: float = Field(0.02, ge=0, le=1)  # opaque share of crop below this = empty
    black_luma: float = Field(0.08, ge=0, le=1)  # visible pixels this dark and flat = black screen
    flat_contrast: float = Field(0.03, ge=0, le=1)
    secondary_region: float = Field(0.15, ge=0, le=1)  # 2nd region >= this share of the 1st = 2 chars
    open_radius: float = Field(0.1, gt=0, le=1)  # opening radius, share of sqrt(mask area): cuts thin bridges
    head_prominence: float = Field(0.25, gt=0, le=1)  # a head rises this far (share of height) above its valleys
    head_level: float = Field(0.65, ge=0, le=1)  # ... and reaches this share of the figure's height
    min_edge_run: float = Field(0.08, ge=0, le=1)  # mask run along its frame (panel or page): framed there, no fault
    min_neighbour_edge: float = Field(0.1, ge=0, le=1)  # outline share along another character: touches_character
    edge_band: float = Field(0.02, ge=0, le=0.5)  # 'along the edge' = within this share of the page's size
    min_cut_horizontal: float = Field(0.45, gt=0, le=1)  # top/bottom outline this straight inside its frame (panel or page): cut
    min_cut_vertical: float = Field(0.85, gt=0, le=1)  # left/right (upright figures have straight sides)
    small_ratio: float = Field(0.5, gt=0, le=1)  # short side below this x train_resolution = too small
    grades: dict[str, float] = Field(default_factory=lambda: {"A": 0.85, "B": 0.75, "C": 0.55, "D": 0.35})
    lora_ok_grades: list[str] = Field(default_factory=lambda: ["A", "B"])
    # the fitted composite (`kirinuki calibrate`); None: the fit shipped with kirinuki
    weights_file: Optional[Path] = None
    # the framing tagger (`kirinuki train-framing`); None: the one shipped with kirinuki
    framing_model: Optional[Path] = None
    # L2 `framing` (the caption tag) = `framing_guess` where at least this sure (and one figure), else null
    framing_min_confidence: float = Field(0.95, ge=0, le=1)

    @property
    def weights_path(self) -> Path:
        return self.weights_file or DEFAULT_SCORE_WEIGHTS

    @property
    def framing_path(self) -> Path:
        return self.framing_model or DEFAULT_FRAMING_MODEL

    @model_validator(mode="after")
    def _check(self):
        if list(self.grades) != ["A", "B", "C", "D"] or list(self.grades.values()) != sorted(self.grades.values(), reverse=True):
            raise ValueError("grades must map A, B, C, D to falling lower bounds (E is below D)")
        if not set(self.lora_ok_grades) <= set("ABC"):
            raise ValueError("lora_ok_grades must be among A-C (a flagged cut-out is never above D)")
        return self


def _check_tree(tree, features: set[str]) -> None:
    """A leaf (number) or [feature, threshold, left, right] with a known feature."""
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return
    if not (isinstance(tree, list) and len(tree) == 4 and tree[0] in features
            and isinstance(tree[1], (int, float))):
        raise ValueError(f"a tree node must be a number or [feature, threshold, left, right] "
                         f"over {sorted(features)}, got {str(tree)[:60]}")
    _check_tree(tree[2], features)
    _check_tree(tree[3], features)


class ScoreModel(Section):
    """quality/score_weights.yaml (or score.weights_file), written by `kirinuki calibrate`: the composite score is
    base + learning_rate x (sum of the trees' leaves), clipped to 0..1 — a predicted IoU."""
    features: list[str] = Field(min_length=1)
    base: float
    learning_rate: float = Field(gt=0)
    trees: list[list] = Field(min_length=1)  # [feature, threshold, left, right]; a leaf is a number
    provenance: dict = Field(default_factory=dict)  # data, sample counts, input hash, fit metrics

    @model_validator(mode="after")
    def _check(self):
        for tree in self.trees:
            _check_tree(tree, set(self.features))
        return self


class CalibrateParams(Section):
    """`kirinuki calibrate`: fit the ScoreModel on cut-outs with ground truth."""
    # Below ~100 cut-outs the rank correlation it reports has a standard error of ~0.1
    # (1/sqrt(n-3)), too coarse to tell a fit that meets 0.70 from one that does not.
    min_samples: int = Field(100, ge=20)
    min_per_class: int = Field(10, ge=1)  # good cut-outs (IoU >= validate.good_iou) and others, each at least
    folds: int = Field(5, ge=2)  # cross-validation folds, grouped by image
    seed: int = 0  # fold assignment
    features: list[str] = Field(default_factory=lambda: [
        "confidence", "area_share", "skin_share", "opaque_share", "luma_std", "edge_density",
        "hue_entropy", "compactness", "solidity", "text_share", "free_outline"], min_length=1)
    rounds: int = Field(200, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    depth: int = Field(2, ge=1, le=4)
    min_leaf: int = Field(5, ge=1)  # cut-outs in a leaf, at least
    bins: int = Field(16, ge=2)  # candidate thresholds: quantiles of each feature


class ValidateParams(Section):
    iou_match: float = Field(0.5, gt=0, le=1)  # a detection counts at this IoU
    good_iou: float = Field(0.75, gt=0, le=1)  # a cut-out this good is LoRA-worthy
    # box ground truth (<stem>_gt.json, real pages): a figure is cut out cleanly with one cut-out of
    # at least this box IoU and no other figure in it (figures pair with cut-outs at iou_match)
    clean_iou: float = Field(0.7, gt=0, le=1)
    # ground truth of the failure modes, to measure the scorer's flags against:
    holds_instance: float = Field(0.3, gt=0, le=1)  # a cut-out holds a GT instance with this share of it inside
    gt_cut_edge: float = Field(0.08, gt=0, le=1)  # a GT figure along a page edge this far (share of extent) is cut
    gt_cut_straight: float = Field(0.5, gt=0, le=1)  # ... or ending top/bottom on one straight line this wide


class CompareParams(Section):
    # per-image columns of per_image.csv; a significant regression of any one fails the gate
    metrics: list[str] = Field(default_factory=lambda: ["instance_iou", "union_iou"], min_length=1)
    test: Literal["wilcoxon", "t"] = "wilcoxon"  # the test behind the verdict; both are reported
    alpha: float = Field(0.05, gt=0, lt=1)  # family-wise: p-values are Holm-adjusted across metrics
    min_pairs: int = Field(6, ge=2)  # fewer paired images: "too few samples"
    ci_level: float = Field(0.95, gt=0, lt=1)  # bootstrap interval of the mean difference
    n_boot: int = Field(10_000, ge=100)
    seed: int = 0  # bootstrap resampling: same inputs, same interval
    power: float = Field(0.8, gt=0, lt=1)  # for the detectable effect and the sample size needed
    min_effect: float = Field(0.02, gt=0)  # smallest change worth detecting, in metric units

    @model_validator(mode="after")
    def _check(self):
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError("metrics: a metric is listed twice")
        if self.power <= self.alpha:
            raise ValueError("power must be above alpha")
        return self


class AtLeast(Section):
    """Floors: a run whose metric is below one of these fails the gate (None: not checked)."""
    union_miou: Optional[float] = Field(None, ge=0, le=1)
    instance_miou: Optional[float] = Field(None, ge=0, le=1)
    precision: Optional[float] = Field(None, ge=0, le=1)
    recall: Optional[float] = Field(None, ge=0, le=1)
    count_accuracy: Optional[float] = Field(None, ge=0, le=1)
    score_iou_spearman: Optional[float] = Field(None, ge=-1, le=1)
    lora_ok_precision: Optional[float] = Field(None, ge=0, le=1)


class AtMost(Section):
    """Ceilings on metrics where lower is better."""
    empty_page_fp_rate: Optional[float] = Field(None, ge=0, le=1)


class Thresholds(Section):
    """qc/thresholds.yaml: absolute limits on the corpus metrics of validate.json."""
    at_least: AtLeast = AtLeast()
    at_most: AtMost = AtMost()


class TrackParams(Section):
    page_timeout_s: float = Field(300.0, gt=0)  # a page still running after this stops the tracker run


class SheetColumns(Section):
    """Header of each ticket column in the sheet, as the user named it."""
    id: str = "ID"
    priority: str = "優先度"
    status: str = "ステータス"
    registered: str = "登録日時"
    updated: str = "更新日時"
    summary: str = "概要"
    details: str = "詳細"
    dashboard: str = "ダッシュボード"
    depends_on: str = "依存"


class SheetsParams(Section):
    spreadsheet_key: str = ""  # the key in the sheet's URL; empty: updates wait in the outbox
    worksheet: str = "tickets"
    api_base: str = GOOGLE_SHEETS_API  # tests point this at a local server
    token_uri: Optional[str] = None  # None: the token_uri of the service-account JSON
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(5, ge=0)  # on 429/5xx and connection errors, with exponential back-off
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(32.0, ge=0)
    timezone: str = "Asia/Tokyo"  # of the registered/updated date-times
    priorities: list[str] = Field(default_factory=lambda: ["最高", "高", "中", "低"], min_length=1)
    statuses: list[str] = Field(default_factory=lambda: ["着手前", "対応中", "完了"], min_length=1)  # new: the first
    default_priority: str = "中"
    running_status: str = "対応中"  # while a tracker run works
    done_status: str = "完了"  # after a finished tracker run
    columns: SheetColumns = SheetColumns()

    @model_validator(mode="after")
    def _check(self):
        if self.default_priority not in self.priorities:
            raise ValueError(f"default_priority {self.default_priority!r} is not one of priorities")
        for name in ("running_status", "done_status"):
            if getattr(self, name) not in self.statuses:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of statuses")
        headers = list(self.columns.model_dump().values())
        if len(set(headers)) != len(headers):
            raise ValueError("columns: two ticket fields share a header")
        return self


class DashboardParams(Section):
    thumb_px: int = Field(256, ge=16)  # longer side of a cut-out thumbnail
    overlay_px: int = Field(768, ge=16)  # longer side of a page with its masks overlaid
    overlay_alpha: float = Field(0.45, ge=0, le=1)


class NotifyParams(Section):
    pushover_url: str = "https://api.pushover.net/1/messages.json"
    timeout_s: float = Field(15.0, gt=0)
    attach_best: int = Field(4, ge=0)  # best cut-outs in the attached contact sheet; 0 = none


class PublishParams(Section):
    dashboard_url: str = f"http://{SERVE_HOST}:{SERVE_PORT}/tracker/{{id}}/"  # link in tickets and notifications
    # the DVC stage `publish`: the ticket of the pipeline's own data, and where its dashboard and
    # outbox go (a tracker run has its own, in its workspace)
    tracker_id: str = Field("KRN-SAMPLE", pattern=f"^{TRACKER_ID_PATTERN}$", max_length=TRACKER_ID_MAX)
    workspace: Path = Path("runs/publish")
    sheets: SheetsParams = SheetsParams()
    dashboard: DashboardParams = DashboardParams()
    notify: NotifyParams = NotifyParams()


class FailuresParams(Section):
    """`kirinuki failures`: the flagged and low-grade cut-outs of a run, grouped into patterns
    (HDBSCAN on the run's standardised features), outliers (IsolationForest) and a t-SNE map."""
    grades: list[Literal["A", "B", "C", "D", "E"]] = Field(default_factory=lambda: ["D", "E"])  # fail, as does any flag
    min_cluster_size: int = Field(3, ge=2)  # HDBSCAN: smallest pattern; fewer failing cut-outs: no pattern
    contamination: Union[Literal["auto"], Annotated[float, Field(gt=0, le=0.5)]] = "auto"  # IsolationForest
    examples: int = Field(4, ge=0)  # example thumbnails per pattern, nearest its medoid
    seed: int = 0  # IsolationForest and t-SNE
    perplexity: float = Field(30.0, gt=0)  # t-SNE; at most the number of cut-outs - 1
    map_px: int = Field(640, ge=160)  # side of the square map picture


class TaggerParams(Section):
    """An auto-tagger of the WD14 / cl_tagger kind: an ONNX model (one image in, NHWC, BGR
    0-255 at the model's square size; one row of per-tag scores out) and its tag CSV
    (tag_id,name,category,count). Never downloaded: both are files the user has."""
    model: Optional[Path] = None  # None: no auto-tagger
    tags_csv: Optional[Path] = None  # e.g. selected_tags.csv beside the model
    general_threshold: float = Field(0.35, gt=0, lt=1)
    character_threshold: float = Field(0.85, gt=0, lt=1)
    categories: list[Literal["general", "character", "rating"]] = Field(
        default_factory=lambda: ["general", "character"], min_length=1)  # rating: the one best rating tag

    @model_validator(mode="after")
    def _check(self):
        if (self.model is None) != (self.tags_csv is None):
            raise ValueError("model and tags_csv are given together (or neither)")
        return self


class ExportParams(Section):
    """`kirinuki export` and the DVC stage `export`: cut-outs -> a LoRA training set."""
    select: Literal["lora_ok", "approved"] = "lora_ok"  # lora_ok: approved or lora_ok, never excluded; approved: approved ones only
    layouts: list[Literal["kohya", "ai-toolkit", "hf"]] = Field(
        default_factory=lambda: ["kohya", "ai-toolkit", "hf"], min_length=1)
    trigger: str = Field("kirinuki_chara", pattern=r"^[^_/\\\s,][^/\\,]*$")  # first caption word; kohya folder `<repeats>_<trigger> <class>`
    class_word: str = Field("character", pattern=r"^[^/\\,]+$")
    repeats: int = Field(10, ge=1)  # kohya repeats per epoch
    resolution: Optional[int] = Field(None, ge=64)  # bucket area = resolution^2; None: score.train_resolution
    bucket_step: int = Field(64, ge=8)  # bucket sides are multiples of this
    background: str = Field("#ffffff", pattern=r"^(transparent|#[0-9a-fA-F]{6})$")
    dedupe_distance: int = Field(6, ge=-1, le=64)  # perceptual-hash bits apart at most to be one image; -1: only byte-identical ones
    tags: Optional[Path] = None  # tag dictionary (YAML: aliases, groups, blacklist)
    drop_groups: list[str] = Field(default_factory=list)  # tag groups left out of captions, e.g. [quality]
    underscores: bool = False  # tags as `long_hair` (True) or `long hair` (False, as most captions write them)
    existing_captions: Literal["replace", "add", "skip"] = "add"  # captions already beside the source page
    reviews: Optional[Path] = Path("qc/reviews.jsonl")  # the DVC stage's reviews (a tracker run has its own)
    output: Path = Path("runs/dataset")  # the DVC stage's dataset
    tagger: TaggerParams = TaggerParams()


class Params(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: ModelParams = ModelParams()
    quantize: QuantizeParams = QuantizeParams()
    synth: SynthParams = SynthParams()
    extract: ExtractParams = ExtractParams()
    score: ScoreParams = ScoreParams()
    calibrate: CalibrateParams = CalibrateParams()
    # "validate" would shadow a pydantic method, hence the alias
    validation: ValidateParams = Field(ValidateParams(), alias="validate")
    compare: CompareParams = CompareParams()
    track: TrackParams = TrackParams()
    publish: PublishParams = PublishParams()
    failures: FailuresParams = FailuresParams()
    export: ExportParams = ExportParams()


class ConfigError(Exception):
    """Bad params; str() names the file and key."""


def _load_yaml_model(path: Path, model: type[BaseModel], what: str):
    """Read the YAML file `path` into `model`; a ConfigError names the file and each bad key."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}: {key}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_thresholds(path: Path) -> Thresholds:
    """The QC floors in `path` (qc/thresholds.yaml), validated like params."""
    return _load_yaml_model(Path(path), Thresholds, "thresholds file")


def load_score_model(path: Path) -> ScoreModel:
    """The fitted score weights in `path` (quality/score_weights.yaml), validated like params."""
    return _load_yaml_model(Path(path), ScoreModel, "score weights file (fit one with `kirinuki calibrate`)")


def _rebase(section: Section, base: Path) -> Section:
    """`section` with every relative path written in it, at any depth, taken relative to `base`;
    a key left to its default keeps it as it is without a params file (relative to where the
    command runs), so a short params file anywhere finds the models the working folder holds."""
    update = {}
    for key, value in section:
        if key not in section.model_fields_set:
            continue
        if isinstance(value, Section):
            update[key] = _rebase(value, base)
        elif isinstance(value, Path) and not value.is_absolute():
            update[key] = base / value
    return section.model_copy(update=update)


def load_params(path: Optional[Path] = None) -> Params:
    """Defaults, overridden by the params file `path` when given.

    One rule for paths: every relative path written in it (any key typed as a path) is taken
    relative to the params file's folder, wherever the command runs; defaults it does not set
    stay relative to the working folder.
    """
    if path is None:
        return Params()
    path = Path(path)
    return _rebase(_load_yaml_model(path, Params, "params file"), path.parent)
