"""Paired comparison of two validation runs, image by image.

A run is a per-image table (validate's per_image.csv). The baseline comes from a file,
a folder holding per_image.csv, or a git revision of the candidate's path. Images are
paired by name, so page difficulty cancels out, and the paired differences of one
metric are tested with the Wilcoxon signed-rank test (no normality assumption).
"""
from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from .config import CompareParams
from .imageio import write_json, write_text

PER_IMAGE_NAME = "per_image.csv"
# Per-image columns where a smaller value is better; every other metric is higher-better.
LOWER_IS_BETTER = {"fp", "fn", "empty_fp"}
MAX_LISTED = 20  # unpaired images named in the markdown report before "... and N more"


class CompareError(Exception):
    """A comparison input cannot be used; str() is a one-line reason."""


# --- pure functions -------------------------------------------------------------------------

def _metric_by_image(table: pd.DataFrame, metric: str, side: str) -> pd.Series:
    """The metric column of a per-image table as float, indexed by image name."""
    if metric not in table.columns:
        raise CompareError(f"{side}: no column '{metric}' (has: {', '.join(map(str, table.columns))})")
    if table["image"].duplicated().any():
        raise CompareError(f"{side}: image names are not unique")
    values = table[metric]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise CompareError(f"{side}: column '{metric}' is not numeric")
    return pd.Series(values.astype(float).to_numpy(), index=table["image"].astype(str), name=metric)


def _wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; zero differences are dropped ("wilcox")."""
    if not diff.any():  # nothing left to rank: no evidence of any change
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox").pvalue)


def _verdict(n_pairs: int, p: float | None, gain: float, params: CompareParams) -> tuple[str, str]:
    """Verdict and its one-sentence reason; gain > 0 means the candidate is better."""
    if n_pairs < params.min_pairs:
        return "too few samples", (f"Only {n_pairs} image(s) are paired and at least {params.min_pairs} "
                                   "are needed, so no conclusion is drawn.")
    if p < params.alpha and gain != 0:
        verdict = "improved" if gain > 0 else "regressed"
        return verdict, (f"The candidate is {'better' if gain > 0 else 'worse'} on average over "
                         f"{n_pairs} paired images and p = {p:.4g} < {params.alpha}, so chance alone "
                         "is an unlikely explanation.")
    return "no detectable change", (f"With p = {p:.4g} over {n_pairs} paired images, the difference is "
                                    f"not distinguishable from chance at alpha = {params.alpha}.")


def _float(x) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def paired_compare(baseline: pd.DataFrame | None, candidate: pd.DataFrame, params: CompareParams) -> dict:
    """Compare params.metric between two per-image tables, paired by `image`.

    baseline, candidate: one row per image with an `image` column and the metric column;
    baseline None means there is nothing to compare against. Pairs where either side is
    NaN are dropped. Differences are candidate - baseline; n_improved/n_worse follow the
    metric's direction (LOWER_IS_BETTER). Returns a JSON-ready dict (None for missing).
    """
    metric = params.metric
    cand = _metric_by_image(candidate, metric, "candidate")
    result = {
        "metric": metric, "higher_is_better": metric not in LOWER_IS_BETTER,
        "alpha": params.alpha, "min_pairs": params.min_pairs, "test": "wilcoxon",
        "n_pairs": 0, "n_dropped_nan": 0, "baseline_mean": None,
        "candidate_mean": _float(cand.mean()), "mean_diff": None, "median_diff": None,
        "n_improved": 0, "n_worse": 0, "n_tied": 0, "p_value": None,
        "only_baseline": [], "only_candidate": [],
    }
    if baseline is None:
        return {**result, "verdict": "no baseline",
                "reason": "No baseline per-image table was found, so there is nothing to compare against."}

    base = _metric_by_image(baseline, metric, "baseline")
    common = base.index.intersection(cand.index).sort_values()
    pairs = pd.DataFrame({"baseline": base[common], "candidate": cand[common]}).dropna()
    diff = pairs["candidate"] - pairs["baseline"]
    sign = 1 if result["higher_is_better"] else -1
    n = len(diff)
    mean_diff = _float(diff.mean())  # NaN (-> None) when nothing is paired
    p = _wilcoxon_p(diff.to_numpy()) if n else None
    verdict, reason = _verdict(n, p, sign * (mean_diff or 0.0), params)
    result.update({
        "n_pairs": n,
        "n_dropped_nan": len(common) - n,
        "baseline_mean": _float(pairs["baseline"].mean()),
        "candidate_mean": _float(pairs["candidate"].mean()),
        "mean_diff": mean_diff,
        "median_diff": _float(diff.median()),
        "n_improved": int((sign * diff > 0).sum()),
        "n_worse": int((sign * diff < 0).sum()),
        "n_tied": int((diff == 0).sum()),
        "p_value": p,
        "only_baseline": sorted(base.index.difference(cand.index).tolist()),
        "only_candidate": sorted(cand.index.difference(base.index).tolist()),
        "verdict": verdict,
        "reason": reason,
    })
    return result


def _fmt(x, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", … and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def to_markdown(result: dict) -> str:
    """A short human-readable report of a `paired_compare` result."""
    m = result["metric"]
    p = result["p_value"]
    lines = [
        f"## Compare `{m}`: candidate vs baseline",
        "",
        f"Baseline: {result.get('baseline_source', '–')} · candidate: {result.get('candidate_source', '–')}",
        "",
        "| | baseline | candidate | diff (cand − base) |",
        "|---|---:|---:|---:|",
        f"| mean {m} | {_fmt(result['baseline_mean'])} | {_fmt(result['candidate_mean'])} "
        f"| {_fmt(result['mean_diff'], signed=True)} |",
        f"| median diff | | | {_fmt(result['median_diff'], signed=True)} |",
        "",
        f"- Paired images: {result['n_pairs']} ({result['n_improved']} better, {result['n_worse']} worse, "
        f"{result['n_tied']} tied; {'higher' if result['higher_is_better'] else 'lower'} is better)",
        f"- Wilcoxon signed-rank p = {'–' if p is None else f'{p:.4g}'} (alpha {result['alpha']})",
        f"- **Verdict: {result['verdict']}** — {result['reason']}",
    ]
    if result["n_dropped_nan"]:
        lines.append(f"- Dropped (no value on one side): {result['n_dropped_nan']}")
    for key, label in (("only_baseline", "Only in baseline"), ("only_candidate", "Only in candidate")):
        if result[key]:
            lines.append(f"- {label} ({len(result[key])}): {_names(result[key])}")
    return "\n".join(lines) + "\n"


# --- I/O edge -----------------------------------------------------------------------------

def _parse_csv(text: str, label: str) -> pd.DataFrame:
    try:
        # image names stay strings: "001" must not become 1
        table = pd.read_csv(io.StringIO(text), dtype={"image": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CompareError(f"{label}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
    if "image" not in table.columns:
        raise CompareError(f"{label}: not a per-image table (no 'image' column)")
    return table


def _read_csv_file(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(f"{path}: cannot read ({e.__class__.__name__})") from None
    return _parse_csv(text, str(path))


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True)
    except FileNotFoundError:
        raise CompareError("git is not installed, so a revision cannot be read") from None


def load_per_image(source: str, candidate_path: Path) -> pd.DataFrame | None:
    """Read a baseline per-image table.

    source: a per_image.csv file, a folder containing one, or else a git revision
    ("HEAD", "main", "HEAD~1"); a revision is read as `git show <rev>:<candidate_path
    relative to its repository root>`. An existing path wins over a revision of the
    same name. Returns None when the revision lacks that file or the repository has no
    commit yet; raises CompareError for
    an unknown revision or an unreadable CSV.
    """
    if not source:  # Path("") would mean the current folder
        raise CompareError("baseline: empty source")
    path = Path(source)
    if path.is_dir():
        path = path / PER_IMAGE_NAME
        if not path.is_file():
            raise CompareError(f"{source}: folder has no {PER_IMAGE_NAME}")
    if path.is_file():
        return _read_csv_file(path)

    if source.startswith("-"):  # would be read as a git option
        raise CompareError(f"{source}: no such file or folder, nor a git revision")
    candidate = Path(candidate_path).resolve()
    top = _git(candidate.parent, "rev-parse", "--show-toplevel")
    if top.returncode:
        raise CompareError(f"{source}: no such file or folder, and {candidate.parent} is not in a git repository")
    root = Path(top.stdout.decode().strip()).resolve()
    if _git(root, "rev-parse", "--verify", "--quiet", f"{source}^{{commit}}").returncode:
        if not _git(root, "rev-list", "-n", "1", "--all").stdout:  # no commit yet: no baseline yet
            return None
        raise CompareError(f"{source}: no such file or folder, nor a git revision")
    spec = f"{source}:{candidate.relative_to(root).as_posix()}"
    shown = _git(root, "show", spec)
    if shown.returncode:  # the revision is valid, so the file is what is missing
        return None
    try:
        text = shown.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise CompareError(f"{spec}: not UTF-8 text") from None
    return _parse_csv(text, spec)


def run_compare(candidate_csv: Path, baseline: str, params: CompareParams, json_out: Path, md_out: Path) -> int:
    """Compare candidate_csv with `baseline` (see load_per_image), write the JSON and
    markdown reports atomically, print the markdown, and return the exit code:
    1 when the candidate regressed, else 0."""
    candidate_csv = Path(candidate_csv)
    if not candidate_csv.is_file():
        raise CompareError(f"{candidate_csv}: no such candidate per-image table")
    result = paired_compare(load_per_image(baseline, candidate_csv), _read_csv_file(candidate_csv), params)
    result.update(baseline_source=baseline, candidate_source=str(candidate_csv))
    markdown = to_markdown(result)
    write_json(json_out, result)
    write_text(md_out, markdown)
    print(markdown, end="")
    return 1 if result["verdict"] == "regressed" else 0
