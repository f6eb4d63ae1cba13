"""The `kirinuki` command: every pipeline stage for any folder.

Each command loads params once (`--params`, default ./params.yaml or built-in
defaults), then calls the stage function; errors become one-line messages.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .config import ConfigError, Params, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Anime/manga pages -> single-character cut-outs with measured quality.")

ParamsOpt = typer.Option(None, "--params", "-p", help="params file [default: ./params.yaml if present, else built-in defaults]")


def _params(path: Optional[Path]) -> Params:
    if path is None and Path("params.yaml").is_file():
        path = Path("params.yaml")
    try:
        return load_params(path)
    except ConfigError as e:
        _fail(str(e), code=2)


def _fail(message: str, code: int = 1):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def synth(out: Path = typer.Argument(..., help="folder for <author>/org/<work>/<stem>.png + _gt.png"),
          params: Optional[Path] = ParamsOpt):
    """Generate procedural manga/anime pages with exact instance ground truth."""
    from .synth import write_dataset
    paths = write_dataset(_params(params).synth, out)
    typer.echo(f"wrote {len(paths)} pages with ground truth under {out}")


@app.command("fetch-model")
def fetch_model_cmd(params: Optional[Path] = ParamsOpt):
    """Fetch the default segmentation model (anime ISNet if reachable, else the general ISNet)."""
    from .models import ModelUnavailable, fetch_model
    try:
        fetch_model(_params(params).model, log=lambda m: typer.echo(m, err=True))
    except ModelUnavailable as e:
        _fail(str(e))


@app.command()
def extract(inputs: Path = typer.Argument(..., help="an image or a folder (recursive)"),
            out: Path = typer.Option(..., "--out", "-o", help="output folder"),
            max_files: Optional[int] = typer.Option(None, "--max-files", min=1, help="process at most N images"),
            progress: bool = typer.Option(True, help="show a progress bar"),
            params: Optional[Path] = ParamsOpt):
    """Cut every character out of every page: labels.png, char_<k>.png, records.jsonl."""
    from .extract import run_extract
    try:
        s = run_extract(inputs, out, _params(params).extract, max_files=max_files, progress=progress)
    except FileNotFoundError as e:
        _fail(str(e))
    per_page = f", median {sorted(s.seconds)[len(s.seconds) // 2]:.2f} s/page" if s.seconds else ""
    typer.echo(f"{s.pages} pages ({s.skipped} already done), {s.characters} characters, "
               f"{len(s.errors)} failed{per_page} -> {out}", err=True)


@app.command()
def score(extract_dir: Path = typer.Argument(..., help="an extract output folder"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="scores JSONL (default EXTRACT_DIR/scores.jsonl)"),
          params: Optional[Path] = ParamsOpt):
    """Grade every cut-out: score 0..1, grade A-E, lora_ok, reasons."""
    from .score import run_score
    cfg = _params(params).score
    if not (extract_dir / "records.jsonl").exists():
        _fail(f"{extract_dir}: no records.jsonl (not an extract output folder)")
    rows = run_score(extract_dir, cfg, out)
    counts = {g: sum(r["grade"] == g for r in rows) for g in "ABCDE"}
    typer.echo(f"{len(rows)} cut-outs graded " + " ".join(f"{g}:{n}" for g, n in counts.items()), err=True)


@app.command()
def validate(extract_dir: Path = typer.Argument(..., help="an extract output folder"),
             gt: Path = typer.Option(..., "--gt", help="folder with <stem>_gt.png (beside or mirroring)"),
             scores: Optional[Path] = typer.Option(None, help="scores JSONL [default: EXTRACT_DIR/scores.jsonl]"),
             metrics: Optional[Path] = typer.Option(None, help="metrics JSON [default: EXTRACT_DIR/validate.json]"),
             per_image: Optional[Path] = typer.Option(None, help="per-image CSV [default: EXTRACT_DIR/per_image.csv]"),
             per_cutout: Optional[Path] = typer.Option(None, help="per-cut-out CSV [default: EXTRACT_DIR/per_cutout.csv]"),
             params: Optional[Path] = ParamsOpt):
    """Measure cut-outs against ground truth: IoU, detection, counts, score vs IoU."""
    from .validate import ValidateError, run_validate
    scores = scores or extract_dir / "scores.jsonl"
    try:
        m = run_validate(extract_dir, gt, scores if scores.exists() else None, _params(params).validation,
                         metrics or extract_dir / "validate.json", per_image or extract_dir / "per_image.csv",
                         per_cutout or extract_dir / "per_cutout.csv")
    except ValidateError as e:
        _fail(str(e))
    keys = ("n_images", "union_miou", "instance_miou", "precision", "recall", "count_accuracy",
            "empty_page_fp_rate", "score_iou_spearman")
    typer.echo("  ".join(f"{k}={m.get(k)}" for k in keys))


@app.command()
def compare(candidate: Path = typer.Argument(Path("metrics/per_image.csv"), help="per-image CSV of the new run"),
            baseline: str = typer.Option("HEAD", help="git revision, or a per-image CSV / folder"),
            json_out: Optional[Path] = typer.Option(None, "--json", help="[default: compare.json beside CANDIDATE]"),
            md_out: Optional[Path] = typer.Option(None, "--md", help="[default: compare.md beside CANDIDATE]"),
            params: Optional[Path] = ParamsOpt):
    """Paired per-image comparison against a baseline; exit 1 on a significant regression."""
    from .compare import CompareError, run_compare
    try:
        code = run_compare(candidate, baseline, _params(params).compare,
                           json_out or candidate.with_name("compare.json"), md_out or candidate.with_name("compare.md"))
    except CompareError as e:
        _fail(str(e))
    raise typer.Exit(code)


if __name__ == "__main__":
    sys.exit(app())
