"""Pushover summary of a tracker run, with the best cut-outs as one attached contact sheet.

Pushover takes a single attachment per message, so the best few cut-outs are laid side
by side in one JPEG. Keys come from $KIRINUKI_PUSHOVER_TOKEN and $KIRINUKI_PUSHOVER_USER.
Nothing here ever raises: a run must not fail because a phone was not told.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import cv2
import numpy as np
import requests

from kirinuki.core.config import NotifyParams
from kirinuki.core.imageio import read_rgba_png
from kirinuki.core.secrets import PUSHOVER_TOKEN_ENV, PUSHOVER_USER_ENV, redact

TOKEN_ENV, USER_ENV = PUSHOVER_TOKEN_ENV, PUSHOVER_USER_ENV
SHEET_HEIGHT = 320      # px, height of each cut-out in the contact sheet
MAX_MESSAGE = 1024      # Pushover's limit, in characters


def contact_sheet(cutouts: list[np.ndarray], height: int = SHEET_HEIGHT) -> bytes:
    """RGBA cut-outs (hxwx4 uint8) side by side on white at one height -> JPEG bytes."""
    tiles = []
    for rgba in cutouts:
        h, w = rgba.shape[:2]
        rgba = cv2.resize(rgba, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
        a = rgba[..., 3:].astype(np.float32) / 255
        tiles.append((rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8))
        tiles.append(np.full((height, 8, 3), 255, np.uint8))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.hstack(tiles[:-1]), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 85])
    return jpeg.tobytes()


def best_cutouts(scores: list[dict], n: int) -> list[tuple[str, int]]:
    """(image, k) of the n best cut-outs: LoRA-ready first, then by score."""
    ranked = sorted(scores, key=lambda s: (not s["lora_ok"], -s["score"], s["image"], s["k"]))
    return [(s["image"], s["k"]) for s in ranked[:n]]


def notify(title: str, message: str, url: Optional[str], attachments: list[Path], params: NotifyParams,
           env: Mapping[str, str] = os.environ) -> str:
    """Send one Pushover message; return a one-line outcome (never raises, never shows a secret)."""
    return redact(_notify(redact(title, env), redact(message, env), url, attachments, params, env), env)


def _notify(title: str, message: str, url: Optional[str], attachments: list[Path], params: NotifyParams,
            env: Mapping[str, str]) -> str:
    token, user = env.get(TOKEN_ENV, ""), env.get(USER_ENV, "")
    if not (token and user):
        return f"notification skipped: set {TOKEN_ENV} and {USER_ENV} to send one"
    data = {"token": token, "user": user, "title": title[:250], "message": message[:MAX_MESSAGE]}
    if url:
        data.update(url=url, url_title="dashboard")
    try:
        files = {}
        if attachments:
            files["attachment"] = ("best.jpg", contact_sheet([read_rgba_png(p) for p in attachments]), "image/jpeg")
        r = requests.post(params.pushover_url, data=data, files=files or None, timeout=params.timeout_s)
        if r.status_code == 200 and r.json().get("status") == 1:
            return f"notification sent ({len(attachments)} cut-out(s) attached)"
        return f"notification failed: HTTP {r.status_code} {redact(r.text, env)[:200]!r}"
    except Exception as e:  # noqa: BLE001 - any failure to notify is only reported
        return f"notification failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
