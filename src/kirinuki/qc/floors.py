"""Floors: absolute limits on a run's corpus metrics (qc/thresholds.yaml on validate.json).

A paired comparison only says whether a run moved relative to a baseline; floors catch a
run that is bad however it got there, and a metric that went missing.
"""
from __future__ import annotations

import json
from pathlib import Path

from kirinuki.core.config import Thresholds


class FloorsError(Exception):
    """The metrics to check cannot be read; str() is a one-line reason."""


def check_floors(summary: dict, thresholds: Thresholds) -> list[dict]:
    """One check per limit set in `thresholds`, in file order.

    summary: validate.json's flat metrics. A metric that is missing or None fails its
    check (a floored metric must be measured). Each check: metric, value, op (">=" or
    "<="), limit, ok.
    """
    checks = []
    for op, limits in ((">=", thresholds.at_least), ("<=", thresholds.at_most)):
        for metric, limit in limits.model_dump().items():
            if limit is None:
                continue
            value = summary.get(metric)
            ok = value is not None and (value >= limit if op == ">=" else value <= limit)
            checks.append({"metric": metric, "value": value, "op": op, "limit": limit, "ok": bool(ok)})
    return checks


def breach_reason(check: dict) -> str:
    """One plain sentence on a failed check."""
    if check["value"] is None:
        return f"floor: {check['metric']} was not measured (limit {check['op']} {check['limit']})"
    side = "below" if check["op"] == ">=" else "above"
    return f"floor: {check['metric']} = {check['value']:.4f} is {side} the limit {check['limit']}"


def read_summary(path: Path) -> dict:
    """validate.json as a dict; FloorsError naming the file when it cannot be used."""
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FloorsError(f"{path}: no such metrics file (run validate first)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FloorsError(f"{path}: not a readable metrics JSON ({e.__class__.__name__})") from None
    if not isinstance(summary, dict):
        raise FloorsError(f"{path}: not a metrics JSON object")
    return summary
