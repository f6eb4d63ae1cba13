"""Model cards: the JSON file beside each model that records its source, sha256 and settings."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def card_path(model: Path) -> Path:
    return Path(model).with_suffix(".json")


def read_card(model: Path) -> dict:
    path = card_path(model)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model card missing (run `kirinuki fetch-model`)")
    return json.loads(path.read_text(encoding="utf-8"))
