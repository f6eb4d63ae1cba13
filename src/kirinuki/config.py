"""params.yaml -> typed, validated config objects.

One default config lives here; params.yaml overrides it. It is validated once, at the
boundary, and passed down as a value: an unknown key or a bad value stops with an error
that names the key (e.g. ``params.yaml: extract.threshold: Input should be ...``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def digest(self) -> str:
        """Stable short hash of the values, for resume checks and records."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ModelSource(Section):
    name: str
    kind: Literal["url", "npm"]
    # url: direct download; npm: "package@version#resource" (a chunked model in resources.json)
    location: str
    sha256: Optional[str] = None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    letterbox: bool


class ModelParams(Section):
    path: Path = Path("models/isnet.onnx")
    timeout_s: float = Field(10.0, gt=0)
    sources: list[ModelSource] = Field(default_factory=lambda: [
        ModelSource(name="isnetis (skytnt/anime-seg)", kind="url",
                    location="https://huggingface.co/skytnt/anime-seg/resolve/main/isnetis.onnx",
                    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), letterbox=True),
        ModelSource(name="general ISNet (@imgly/background-removal-data, AGPL-3.0)", kind="npm",
                    location="@imgly/background-removal-data@1.4.5#/models/small",
                    sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
                    mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), letterbox=False),
    ], min_length=1)


class SynthParams(Section):
    seed: int = 0
    authors: list[str] = Field(default_factory=lambda: ["aoki", "mori"], min_length=1)
    pages_per_author: int = Field(12, ge=1)
    width: int = Field(768, ge=64)
    height: int = Field(1024, ge=64)
    manga_share: float = Field(0.5, ge=0, le=1)


class ExtractParams(Section):
    segmenter: Literal["isnet"] = "isnet"
    model: Path = Path("models/isnet.onnx")
    input_size: int = Field(1024, ge=32)
    # None: take the normalisation recorded beside the model (models/<name>.json)
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    letterbox: Optional[bool] = None
    threshold: float = Field(0.5, gt=0, lt=1)
    min_area: float = Field(0.01, ge=0, lt=1)  # share of the page; smaller regions are specks
    fill_holes: bool = True
    margin: float = Field(0.04, ge=0, le=1)  # crop margin, share of the character's longer side
    max_pixels: int = Field(80_000_000, ge=1)
    threads: int = Field(0, ge=0)  # onnxruntime intra-op threads; 0 = library default


class ScoreParams(Section):
    train_resolution: int = Field(512, ge=1)  # short side a LoRA trainer wants
    min_opaque: float = Field(0.02, ge=0, le=1)  # opaque share of crop below this = empty
    black_luma: float = Field(0.08, ge=0, le=1)  # visible pixels this dark and flat = black screen
    flat_contrast: float = Field(0.03, ge=0, le=1)
    secondary_region: float = Field(0.15, ge=0, le=1)  # 2nd region >= this share of the 1st = 2 chars
    min_edge_run: float = Field(0.08, ge=0, le=1)  # mask run along a page edge that counts as a cut
    small_ratio: float = Field(0.5, gt=0, le=1)  # short side below this x train_resolution = too small
    grades: dict[str, float] = Field(default_factory=lambda: {"A": 0.85, "B": 0.70, "C": 0.55, "D": 0.35})
    lora_ok_grades: list[str] = Field(default_factory=lambda: ["A", "B"])
    weights: dict[str, float] = Field(default_factory=lambda: {
        "resolution": 0.25, "confidence": 0.35, "smoothness": 0.2, "solidity": 0.2})

    @model_validator(mode="after")
    def _check(self):
        if list(self.grades) != ["A", "B", "C", "D"] or list(self.grades.values()) != sorted(self.grades.values(), reverse=True):
            raise ValueError("grades must map A, B, C, D to falling lower bounds (E is below D)")
        if not set(self.lora_ok_grades) <= set("ABCDE"):
            raise ValueError("lora_ok_grades must be grades A-E")
        unknown = set(self.weights) - {"resolution", "confidence", "smoothness", "solidity"}
        if unknown:
            raise ValueError(f"weights: unknown feature(s) {sorted(unknown)}")
        return self


class ValidateParams(Section):
    iou_match: float = Field(0.5, gt=0, le=1)  # a detection counts at this IoU
    good_iou: float = Field(0.75, gt=0, le=1)  # a cut-out this good is LoRA-worthy


class CompareParams(Section):
    metric: str = "instance_iou"
    alpha: float = Field(0.05, gt=0, lt=1)
    min_pairs: int = Field(6, ge=2)


class Params(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: ModelParams = ModelParams()
    synth: SynthParams = SynthParams()
    extract: ExtractParams = ExtractParams()
    score: ScoreParams = ScoreParams()
    # "validate" would shadow a pydantic method, hence the alias
    validation: ValidateParams = Field(ValidateParams(), alias="validate")
    compare: CompareParams = CompareParams()


class ConfigError(Exception):
    """Bad params; str() names the file and key."""


def load_params(path: Optional[Path] = None) -> Params:
    """Defaults, overridden by the params file `path` when given.

    Relative paths inside are taken relative to the params file's folder.
    """
    if path is None:
        return Params()
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such params file")
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "(top)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{path}: {key}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    base = path.parent
    return params.model_copy(update={
        "model": params.model.model_copy(update={"path": base / params.model.path}),
        "extract": params.extract.model_copy(update={"model": base / params.extract.model}),
    })
