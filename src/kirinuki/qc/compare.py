"""Paired comparison of two validation runs, image by image, and the QC gate built on it.

A run is a per-image table (validate's per_image.csv). The baseline comes from a file, a
folder holding per_image.csv, or a git revision of the candidate's path. Images are paired
by name, so page difficulty cancels out. For each metric in `compare.metrics` the paired
differences get a Wilcoxon signed-rank test and a paired t-test (`compare.test` decides;
p-values are Holm-adjusted across the metrics), effect sizes, a seeded bootstrap interval
of the mean difference and a power check (kirinuki.core.stats). The gate fails on a significant
regression of any metric or on a breached floor (kirinuki.qc.floors).
"""
from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from kirinuki.core.config import CompareParams, ConfigError, load_thresholds
from kirinuki.qc.floors import FloorsError, breach_reason, check_floors, read_summary
from kirinuki.core.imageio import write_json, write_text
from kirinuki.core.runs import RunPaths
from kirinuki.core.stats import (WILCOXON_ARE, bootstrap_ci, cohens_dz, holm, min_detectable_dz, n_for_effect, paired_t,
                    rank_biserial, wilcoxon_p)

# Per-image columns where a smaller value is better; every other metric is higher-better.
LOWER_IS_BETTER = {"fp", "fn", "empty_fp"}
MAX_LISTED = 20  # unpaired images named in the markdown report before "... and N more"
TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank", "t": "paired t-test"}


class CompareError(Exception):
    """A comparison input cannot be used; str() is a one-line reason."""


# --- pure functions -------------------------------------------------------------------------

def _metric_by_image(table: pd.DataFrame, metric: str, side: str) -> pd.Series:
    """The metric column of a per-image table as float, indexed by image name."""
    if metric not in table.columns:
        raise CompareError(f"{side}: no column '{metric}' (has: {', '.join(map(str, table.columns))})")
    if table["image"].duplicated().any():
        raise CompareError(f"{side}: image names are not unique")
    if table.empty:
        raise CompareError(f"{side}: no pages (validate found no mask ground truth; box ground truth is "
                           "compared by its own figures, not here)")
    values = table[metric]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise CompareError(f"{side}: column '{metric}' is not numeric")
    return pd.Series(values.astype(float).to_numpy(), index=table["image"].astype(str), name=metric)


def _float(x) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def diff_stats(d: np.ndarray, params: CompareParams, alpha: float) -> dict:
    """Every statistic of one metric's paired differences d = candidate - baseline.

    alpha: the per-test level the power check assumes (alpha / number of metrics, the
    first step of Holm). `mde` and `n_needed` need spread in d, else they are None.
    """
    n = len(d)
    t_stat, t_p = paired_t(d)
    ci_low, ci_high = bootstrap_ci(d, params.ci_level, params.n_boot, params.seed)
    sd = float(np.std(d, ddof=1)) if n >= 2 else None
    are = WILCOXON_ARE if params.test == "wilcoxon" else 1.0
    mde_dz = min_detectable_dz(n, alpha, params.power, are)
    n_needed = n_for_effect(params.min_effect / sd, alpha, params.power, are) if sd else None
    return {
        "mean_diff": _float(d.mean()) if n else None,
        "median_diff": _float(np.median(d)) if n else None,
        "sd_diff": sd,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "wilcoxon_p": wilcoxon_p(d),
        "t_stat": t_stat,
        "t_p": t_p,
        "cohens_dz": cohens_dz(d),
        "rank_biserial": rank_biserial(d),
        "mde_dz": mde_dz,
        "mde": mde_dz * sd if mde_dz is not None and sd else None,
        "n_needed": n_needed,
        "n_more": max(0, n_needed - n) if n_needed is not None else None,
    }


def compare_metric(base: pd.Series, cand: pd.Series, params: CompareParams, alpha: float) -> dict:
    """Pair two per-image series of one metric by image and describe the differences.

    Pairs where either side is NaN are dropped. n_improved/n_worse follow the metric's
    direction (LOWER_IS_BETTER); `p_value` is the deciding test's raw p (None below
    min_pairs, where no test decides). Verdicts come later, after the Holm adjustment.
    """
    metric = str(cand.name)
    common = base.index.intersection(cand.index).sort_values()
    pairs = pd.DataFrame({"baseline": base[common], "candidate": cand[common]}).dropna()
    d = (pairs["candidate"] - pairs["baseline"]).to_numpy()
    sign = -1 if metric in LOWER_IS_BETTER else 1
    s = diff_stats(d, params, alpha)
    return {
        "metric": metric,
        "higher_is_better": sign == 1,
        "n_pairs": len(d),
        "n_dropped_nan": len(common) - len(d),
        "baseline_mean": _float(pairs["baseline"].mean()),
        "candidate_mean": _float(pairs["candidate"].mean()),
        **s,
        "n_improved": int((sign * d > 0).sum()),
        "n_worse": int((sign * d < 0).sum()),
        "n_tied": int((d == 0).sum()),
        "p_value": (s["wilcoxon_p"] if params.test == "wilcoxon" else s["t_p"]) if len(d) >= params.min_pairs else None,
    }


def _pct(level: float) -> str:
    return f"{level * 100:g}%"


def _metric_verdict(r: dict, params: CompareParams, n_tests: int) -> tuple[str, str]:
    """Verdict of one compared metric and its plain-language reason."""
    m, n = r["metric"], r["n_pairs"]
    if r["p_value"] is None:
        return "too few samples", (f"{m}: only {n} paired image(s) and at least {params.min_pairs} are needed, "
                                   "so no conclusion is drawn.")
    change = (f"mean {r['baseline_mean']:.4f} → {r['candidate_mean']:.4f} ({r['mean_diff']:+.4f}, "
              f"{_pct(params.ci_level)} CI {r['ci_low']:+.4f} to {r['ci_high']:+.4f}) over {n} paired images")
    test = f"{TEST_NAMES[params.test]} p = {r['p_value']:.3g}"
    if n_tests > 1:
        test += f", {r['p_adjusted']:.3g} after Holm adjustment over {n_tests} metrics"
    # the direction the deciding test sees: rank mass for Wilcoxon, the mean for the t-test
    effect = r["rank_biserial"] if params.test == "wilcoxon" else r["mean_diff"]
    gain = (1 if r["higher_is_better"] else -1) * effect
    if r["p_adjusted"] < params.alpha and gain != 0:
        better = gain > 0
        return ("improved" if better else "regressed"), (
            f"{m} is {'better' if better else 'worse'}: {change}; {test} < {params.alpha}, "
            "so chance alone is an unlikely explanation.")
    if r["n_tied"] == n:
        reason = f"{m} is identical on all {n} paired images."
    else:
        reason = f"{m}: {change}; {test} ≥ {params.alpha}, not distinguishable from chance."
    if r["mde_dz"] is not None:
        size = f" (≈ {r['mde']:.3f} here)" if r["mde"] is not None else ""
        reason += (f" With {n} pairs, only changes of |dz| ≥ {r['mde_dz']:.2f}{size} are detected with "
                   f"{_pct(params.power)} power")
        if r["n_needed"] is not None:
            reason += (f"; a change of {params.min_effect:g} needs about {r['n_needed']} paired images "
                       f"({r['n_more']} more)")
        reason += "."
    return "no detectable change", reason


def _overall(verdicts: list[str]) -> str:
    for v in ("regressed", "improved"):
        if v in verdicts:
            return v
    return "too few samples" if all(v == "too few samples" for v in verdicts) else "no detectable change"


def paired_compare(baseline: pd.DataFrame | None, candidate: pd.DataFrame, params: CompareParams) -> dict:
    """Compare every metric in params.metrics between two per-image tables, paired by `image`.

    baseline, candidate: one row per image with an `image` column and the metric columns;
    baseline None means there is nothing to compare against. Returns a JSON-ready dict:
    the overall verdict (regressed beats improved beats no detectable change; too few
    samples only when every metric has too few pairs) with its reason, the images on only
    one side, and under `metrics` one dict per metric (see compare_metric) with its verdict.
    """
    cands = {m: _metric_by_image(candidate, m, "candidate") for m in params.metrics}
    result = {
        "test": params.test, "alpha": params.alpha, "min_pairs": params.min_pairs,
        "ci_level": params.ci_level, "power": params.power, "min_effect": params.min_effect,
        "only_baseline": [], "only_candidate": [],
    }
    if baseline is None:
        return {**result, "verdict": "no baseline",
                "reason": "No baseline per-image table was found, so there is nothing to compare against.",
                "metrics": {m: {"metric": m, "candidate_mean": _float(c.mean()), "verdict": "no baseline"}
                            for m, c in cands.items()}}

    bases = {m: _metric_by_image(baseline, m, "baseline") for m in params.metrics}
    alpha = params.alpha / len(params.metrics)  # what the power check can count on: Holm's first step
    rows = {m: compare_metric(bases[m], cands[m], params, alpha) for m in params.metrics}
    tested = [r["p_value"] for r in rows.values()]
    for r, p_adj in zip(rows.values(), holm(tested), strict=True):
        r["p_adjusted"] = p_adj
        r["verdict"], r["reason"] = _metric_verdict(r, params, sum(p is not None for p in tested))
    base_images, cand_images = next(iter(bases.values())).index, next(iter(cands.values())).index
    return {
        **result,
        "verdict": _overall([r["verdict"] for r in rows.values()]),
        "reason": " ".join(r["reason"] for r in rows.values()),
        "only_baseline": sorted(base_images.difference(cand_images).tolist()),
        "only_candidate": sorted(cand_images.difference(base_images).tolist()),
        "metrics": rows,
    }


def decide_gate(result: dict, floors: Optional[list[dict]]) -> dict:
    """Pass unless a metric regressed significantly or a floor check failed.

    floors: check_floors' output, or None when no thresholds apply. Returns
    {"passed": bool, "reasons": [plain sentences, failures first]}.
    """
    failures = [r["reason"] for r in result["metrics"].values() if r["verdict"] == "regressed"]
    failures += [breach_reason(c) for c in floors or [] if not c["ok"]]
    if failures:
        return {"passed": False, "reasons": failures}
    reasons = [f"no significant regression (verdict: {result['verdict']})"]
    reasons.append(f"all {len(floors)} floors met" if floors else "no floors checked (no thresholds file)")
    return {"passed": True, "reasons": reasons}


def _fmt(x, spec: str = ".4f") -> str:
    return "–" if x is None else format(x, spec)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", … and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def to_markdown(result: dict) -> str:
    """A human-readable report of a `paired_compare` result (with `gate`/`floors` if set)."""
    gate, floors = result.get("gate"), result.get("floors")
    title = f"statistics: {result['verdict']}"
    if floors:
        title += f" · floors: {sum(c['ok'] for c in floors['checks'])} of {len(floors['checks'])} met"
    if gate:
        title = f"{'✅ passed' if gate['passed'] else '❌ failed'} · {title}"
    level = _pct(result["ci_level"])
    lines = [
        f"## QC gate: {title}",
        "",
        f"Baseline: `{result.get('baseline_source', '–')}` · candidate: `{result.get('candidate_source', '–')}` · "
        f"deciding test: {TEST_NAMES[result['test']]}, alpha {result['alpha']} (Holm-adjusted across metrics)",
        "",
    ]
    rows = result["metrics"].values()
    if result["verdict"] != "no baseline":
        lines += [
            f"| metric | baseline | candidate | diff | {level} CI (bootstrap) | Wilcoxon p | t-test p "
            "| Cohen's dz | rank-biserial | pairs (+/−/=) | verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            ci = "–" if r["ci_low"] is None else f"{r['ci_low']:+.4f} … {r['ci_high']:+.4f}"
            lines.append(
                f"| {r['metric']} {'↑' if r['higher_is_better'] else '↓'} | {_fmt(r['baseline_mean'])} "
                f"| {_fmt(r['candidate_mean'])} | {_fmt(r['mean_diff'], '+.4f')} | {ci} "
                f"| {_fmt(r['wilcoxon_p'], '.3g')} | {_fmt(r['t_p'], '.3g')} | {_fmt(r['cohens_dz'], '+.2f')} "
                f"| {_fmt(r['rank_biserial'], '+.2f')} "
                f"| {r['n_pairs']} ({r['n_improved']}/{r['n_worse']}/{r['n_tied']}) | {r['verdict']} |")
        lines += [
            "",
            f"Sample size at {_pct(result['power'])} power, for a change of {result['min_effect']:g} you care about:",
            "",
            "| metric | pairs | smallest detectable \\|dz\\| | ≈ in metric units | pairs needed | more needed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(f"| {r['metric']} | {r['n_pairs']} | {_fmt(r['mde_dz'], '.2f')} | {_fmt(r['mde'], '.3f')} "
                         f"| {_fmt(r['n_needed'], 'd')} | {_fmt(r['n_more'], 'd')} |")
        lines.append("")
    if floors:
        lines += [f"Floors (`{floors['thresholds']}` on `{floors['summary']}`):", "",
                  "| metric | value | limit | ok |", "|---|---:|---:|---|"]
        lines += [f"| {c['metric']} | {_fmt(c['value'])} | {c['op']} {c['limit']} | {'✅' if c['ok'] else '❌'} |"
                  for c in floors["checks"]]
        lines.append("")
    lines.append(f"**Verdict: {result['verdict']}** — {result['reason']}")
    if gate:
        lines += ["", f"**Gate: {'passed' if gate['passed'] else 'FAILED'}**"] + [f"- {x}" for x in gate["reasons"]]
    lines.append("")
    for key, label in (("only_baseline", "Only in baseline"), ("only_candidate", "Only in candidate")):
        if result[key]:
            lines.append(f"- {label} ({len(result[key])}): {_names(result[key])}")
    dropped = {r["metric"]: r["n_dropped_nan"] for r in rows if r.get("n_dropped_nan")}
    if dropped:
        lines.append("- Not paired (no value on one side): " + ", ".join(f"{m} {n}" for m, n in dropped.items()))
    return "\n".join(lines).rstrip("\n") + "\n"


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
        path = RunPaths.in_folder(path).per_image
        if not path.is_file():
            raise CompareError(f"{source}: folder has no {path.name}")
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


def run_compare(candidate_csv: Path, baseline: str, params: CompareParams, json_out: Path, md_out: Path,
                thresholds: Optional[Path] = None, summary: Optional[Path] = None) -> int:
    """Compare candidate_csv with `baseline` (see load_per_image), check the floors in
    `thresholds` (qc/thresholds.yaml; None: none) on `summary` (validate.json, default:
    beside candidate_csv), write the JSON and markdown reports atomically, print the
    markdown, and return the exit code: 1 when the gate fails, else 0."""
    candidate_csv = Path(candidate_csv)
    if not candidate_csv.is_file():
        raise CompareError(f"{candidate_csv}: no such candidate per-image table")
    floors = None
    if thresholds is not None:
        summary = Path(summary) if summary is not None else RunPaths.in_folder(candidate_csv.parent).validate_json
        try:
            floors = {"thresholds": str(thresholds), "summary": str(summary),
                      "checks": check_floors(read_summary(summary), load_thresholds(thresholds))}
        except (ConfigError, FloorsError) as e:
            raise CompareError(str(e)) from None
    result = paired_compare(load_per_image(baseline, candidate_csv), _read_csv_file(candidate_csv), params)
    result.update(baseline_source=baseline, candidate_source=str(candidate_csv), floors=floors,
                  gate=decide_gate(result, floors and floors["checks"]))
    markdown = to_markdown(result)
    write_json(json_out, result)
    write_text(md_out, markdown)
    print(markdown, end="")
    return 0 if result["gate"]["passed"] else 1
