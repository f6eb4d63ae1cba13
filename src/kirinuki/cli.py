"""The `kirinuki` command: every pipeline stage for any folder.

Each command loads params once (`--params`, default ./params.yaml or built-in
defaults), then calls the stage function; errors become one-line messages.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from kirinuki.core.config import (DEFAULT_FRAMING_MODEL, GITHUB_COM, SERVE_HOST, SERVE_IDLE_TIMEOUT_S, SERVE_PORT, ConfigError,
                                   ExtractParams, Params, load_params)
from kirinuki.core.secrets import GITHUB_TOKEN_ENV, redact
from kirinuki.core.runs import DVC_RUN, RunPaths

# exit codes, the same for every command (README, "Exit codes"): 0 all done; 1 some inputs failed
# (each listed on stderr) or the work could not be done; 2 a usage or configuration error, found
# before any work; 3 stopped by the per-page time limit (the same command resumes)
DONE, FAILED, USAGE, STOPPED = 0, 1, 2, 3


class _Kirinuki(typer.Typer):
    """The command; an unexpected error prints its traceback with every secret redacted."""

    def __call__(self, *args, **kwargs):
        from kirinuki.core.imageio import BadInput
        try:
            return super().__call__(*args, **kwargs)
        except BadInput as e:  # a file the command needs cannot be used: its one line, not a traceback
            sys.stderr.write(f"error: {redact(str(e))}\n")
            sys.exit(FAILED)
        except Exception:  # noqa: BLE001 - a bug: show it, but never a secret in it
            import traceback
            sys.stderr.write(redact(traceback.format_exc()))
            sys.exit(FAILED)


app = _Kirinuki(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                help="Anime/manga pages -> single-character cut-outs with measured quality.")

ParamsOpt = typer.Option(None, "--params", "-p", help="params file (default: ./params.yaml if present, else built-in defaults)")


def _params(path: Optional[Path]) -> Params:
    if path is None and Path("params.yaml").is_file():
        path = Path("params.yaml")
    try:
        return load_params(path)
    except ConfigError as e:
        _fail(str(e), code=2)


def _fail(message: str, code: int = FAILED):
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def _out_folder(path: Path) -> Path:
    """`path`, checked before any work: a usage error (exit 2) where it cannot become a folder."""
    found = Path(path)
    while not found.exists() and found.parent != found:
        found = found.parent
    if not found.is_dir():
        _fail(f"{path}: cannot be an output folder ({found} is a file)", code=USAGE)
    return path


@app.command()
def synth(out: Path = typer.Argument(..., help="folder for <author>/org/<work>/<stem>.png + _gt.png"),
          params: Optional[Path] = ParamsOpt):
    """Generate procedural manga/anime pages with exact instance ground truth."""
    from kirinuki.synth.dataset import write_dataset
    paths = write_dataset(_params(params).synth, _out_folder(out))
    typer.echo(f"wrote {len(paths)} pages with ground truth under {out}")


@app.command("fetch-model")
def fetch_model_cmd(params: Optional[Path] = ParamsOpt):
    """Make every model `kirinuki extract` needs: fetch the segmentation model (model.sources, each
    pinned by sha256), make its int8 copy where extract.model names it (quantize.path), and install
    the splitters and the face cascade shipped with kirinuki. Each step does nothing when its output is up to date."""
    from kirinuki.assets.fetch import ModelUnavailable, fetch_model, install_bundled
    from kirinuki.assets.quantize import QuantizeError, build_int8
    p, log = _params(params), (lambda m: typer.echo(m, err=True))
    try:
        fetch_model(p.model, log=log)
        if Path(p.extract.model) == Path(p.quantize.path):
            build_int8(p.quantize, p.extract, log=log)
        install_bundled(p.extract, log=log)
    except (ModelUnavailable, QuantizeError) as e:
        _fail(str(e))


@app.command("quantize-model")
def quantize_model_cmd(src: Optional[Path] = typer.Option(None, "--src", help="the fetched model [default: quantize.source]"),
                       out: Optional[Path] = typer.Option(None, "--out", "-o", help="int8 model to write, card beside it [default: quantize.path]"),
                       calibration: Optional[Path] = typer.Option(None, help="folder of calibration pages [default: quantize.calibration]"),
                       pages: Optional[int] = typer.Option(None, "--pages", min=1, help="calibration pages [default: quantize.pages]"),
                       params: Optional[Path] = ParamsOpt):
    """Make the static int8 model (~4x faster on CPU) from the fetched one, calibrated on sample pages;
    does nothing when its card says it is up to date."""
    from kirinuki.assets.quantize import QuantizeError, build_int8
    p = _params(params)
    given = {"source": src, "path": out, "calibration": calibration, "pages": pages}
    cfg = p.quantize.model_copy(update={k: v for k, v in given.items() if v is not None})
    try:
        build_int8(cfg, p.extract, log=lambda m: typer.echo(m, err=True))
    except QuantizeError as e:
        _fail(str(e))


@app.command("corpus")
def corpus_cmd(manifest: Path = typer.Argument(..., help="corpus manifest, e.g. corpus/realpages.csv"),
               out: Path = typer.Option(..., "--out", "-o", help="folder for <source>/<page>.<ext> (keep it outside the repository)"),
               mirror: Optional[Path] = typer.Option(None, "--mirror", help="folder of bare mirrors <owner>+<name>/repo to read instead of downloading"),
               realart: Optional[Path] = typer.Option(None, "--realart", help="folder that holds the manifest's local:realart paths")):
    """Rebuild the real-page evaluation corpus from its manifest: each row pinned to a commit and checked
    by sha256; files already present are skipped. Exit 0 all present, 1 some rows failed, 2 bad manifest."""
    from kirinuki.assets.corpus import ManifestError, build_corpus
    try:
        _, _, failed = build_corpus(manifest, _out_folder(out), mirror, log=lambda m: typer.echo(m, err=True), realart=realart)
    except ManifestError as e:
        _fail(str(e), code=USAGE)
    if failed:
        raise typer.Exit(FAILED)


@app.command("train-splitter")
def train_splitter_cmd(sprites: list[Path] = typer.Option(..., "--sprites", help="folder of RGBA character sprites (repeatable)"),
                       backgrounds: list[Path] = typer.Option(..., "--backgrounds", help="folder of background pictures (repeatable)"),
                       out: Path = typer.Option(Path(ExtractParams().splitter), "--out", "-o", help="ONNX to write, card beside it"),
                       steps: int = typer.Option(3000, min=1, help="training batches"),
                       samples: int = typer.Option(6000, min=1, help="composite pages to train on"),
                       seed: int = typer.Option(0, help="seeds the composites and the training"),
                       centre: str = typer.Option("mass", help="what each character's centre is: mass (extract.splitter) "
                                                  "or head (extract.head_splitter)"),
                       drawn_share: float = typer.Option(0.0, min=0.0, max=1.0, help="share of the characters drawn "
                                                         "afresh by synth instead of taken from --sprites"),
                       threads: int = typer.Option(0, min=0, help="torch threads; 0 = library default")):
    """Train the splitter that cuts touching characters apart (extract.splitter) on sprite composites."""
    from kirinuki.train.loop import train_splitter
    try:
        card = train_splitter(sprites, backgrounds, out, steps=steps, samples=samples, seed=seed, centre=centre,
                              drawn_share=drawn_share, threads=threads, log=lambda m: typer.echo(m, err=True))
    except (RuntimeError, ValueError) as e:  # torch missing, a bad option, no sprites: nothing was trained
        _fail(str(e), code=USAGE)
    typer.echo(f"{out}: sha256 {card['sha256'][:12]}, {card['sprites']} sprites, {steps} steps", err=True)


@app.command("train-framing")
def train_framing_cmd(landmarks: Path = typer.Option(Path("corpus/framing.csv"), "--landmarks", help="sprites with body landmarks"),
                      sprite_root: Path = typer.Option(..., "--sprite-root", help="folder the landmark table's `file` paths start in"),
                      backgrounds: list[Path] = typer.Option(..., "--backgrounds", help="folder of background pictures (repeatable)"),
                      pages: Optional[Path] = typer.Option(None, "--pages", help="real pages (kirinuki corpus -o DIR): their training figures too"),
                      gt: Path = typer.Option(Path("corpus/realpages_gt"), "--gt", help="box ground truth with kinds"),
                      manifest: Path = typer.Option(Path("corpus/realpages.csv"), "--manifest", help="pages and their `use`"),
                      out: Path = typer.Option(DEFAULT_FRAMING_MODEL, "--out", "-o", help="ONNX to write, card beside it (default: the one kirinuki ships)"),
                      steps: int = typer.Option(3000, min=1, help="training batches"),
                      samples: int = typer.Option(40000, min=1, help="sprite crops to train on"),
                      seed: int = typer.Option(0, help="seeds the crops and the training"),
                      threads: int = typer.Option(0, min=0, help="torch threads; 0 = library default")):
    """Train the framing tagger (score's L2 `framing`) on landmarked sprite crops and training pages' figures."""
    from kirinuki.train.framing import train_framing
    try:
        card = train_framing(landmarks, sprite_root, backgrounds, out, pages=pages, gt=gt if pages else None,
                             manifest=manifest if pages else None, steps=steps, samples=samples, seed=seed,
                             threads=threads, log=lambda m: typer.echo(m, err=True))
    except (RuntimeError, ValueError, OSError) as e:  # torch missing, bad table, no sprites: nothing was trained
        _fail(str(e), code=USAGE)
    typer.echo(f"{out}: sha256 {card['sha256'][:12]}, {card['sprites']} sprites, {card['page_figures']} page figures, "
               f"{steps} steps", err=True)


@app.command()
def composites(out: Path = typer.Argument(..., help="folder for images/, gt/, scenes.csv and composites.json"),
               sprites: list[Path] = typer.Option(..., "--sprites", help="folder of RGBA character sprites (repeatable)"),
               backgrounds: list[Path] = typer.Option(..., "--backgrounds", help="folder of background pictures (repeatable)"),
               pages: int = typer.Option(120, "--pages", min=1, help="pages to make"),
               seed: int = typer.Option(0, help="seeds the pages")):
    """Composite pages with exact instance ground truth from sprite folders, to measure the extractor
    on characters it never saw (one run per fold of held-out sources)."""
    from kirinuki.train.data import write_composites
    try:
        card = write_composites(sprites, backgrounds, _out_folder(out), pages, seed, log=lambda m: typer.echo(m, err=True))
    except ValueError as e:
        _fail(str(e), code=USAGE)
    typer.echo(f"wrote {pages} pages from {len(card['sprites'])} sprite files -> {out}", err=True)


@app.command()
def extract(inputs: Path = typer.Argument(..., help="an image or a folder (recursive)"),
            out: Path = typer.Option(..., "--out", "-o", help="output folder"),
            max_files: Optional[int] = typer.Option(None, "--max-files", min=1, help="process at most N images"),
            progress: bool = typer.Option(True, help="show a progress bar"),
            params: Optional[Path] = ParamsOpt):
    """Cut every character out of every page: labels.png, char_<k>.png, records.jsonl."""
    from kirinuki.extract.run import run_extract
    from kirinuki.core.sessions import BackendUnavailable
    try:
        s = run_extract(inputs, _out_folder(out), _params(params).extract, max_files=max_files, progress=progress)
    except (FileNotFoundError, BackendUnavailable, ValueError) as e:
        _fail(str(e), code=USAGE)
    per_page = f", median {sorted(s.seconds)[len(s.seconds) // 2]:.2f} s/page" if s.seconds else ""
    typer.echo(f"{s.pages} pages ({s.skipped} already done), {s.characters} characters, "
               f"{len(s.errors)} failed{per_page} -> {out}", err=True)
    if s.errors:  # each one was listed as it happened
        raise typer.Exit(FAILED)


@app.command()
def bench(images: Path = typer.Argument(..., help="an image or a folder of pages (recursive), cycled to fill --pages"),
          pages: int = typer.Option(30, "--pages", min=1, help="pages to time"),
          memory_pages: str = typer.Option("20,100", help="page counts whose peak memory is compared, smallest vs largest, each "
                                           "a run of its own (the default extracts 120 pages more; the target's figure: 100,1000)"),
          json_out: Optional[Path] = typer.Option(None, "--json", help="also write every figure as JSON"),
          params: Optional[Path] = ParamsOpt):
    """Time `extract` (s/page, model forward vs the rest), its peak memory vs page count, and SAM's
    3-box vs 1-box cost: medians and ratios against the targets."""
    from kirinuki.core.imageio import write_json
    from kirinuki.qc.bench import BenchError, format_table, run_bench
    try:
        counts = [int(n) for n in memory_pages.split(",") if n.strip()]
        if any(n < 1 for n in counts):
            raise ValueError
    except ValueError:
        _fail(f"--memory-pages {memory_pages!r}: expected page counts >= 1, comma-separated, e.g. 100,1000", code=2)
    try:
        result = run_bench(images, pages, counts, _params(params).extract, params,
                           log=lambda m: typer.echo(m, err=True))
    except (BenchError, FileNotFoundError) as e:
        _fail(str(e), code=USAGE if isinstance(e, FileNotFoundError) else FAILED)
    typer.echo(format_table(result))
    if json_out:
        write_json(json_out, result)


@app.command()
def score(extract_dir: Path = typer.Argument(..., help="an extract output folder"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="scores JSONL (default EXTRACT_DIR/scores.jsonl)"),
          params: Optional[Path] = ParamsOpt):
    """Grade every cut-out: score 0..1, grade A-E, lora_ok, reasons (re-scores without re-extracting)."""
    from kirinuki.core.config import load_score_model
    from kirinuki.core.imageio import read_jsonl
    from kirinuki.quality.score import GRADES, ScoreError, run_score
    cfg = _params(params).score
    try:
        model = load_score_model(cfg.weights_path)
    except ConfigError as e:
        _fail(str(e), code=2)
    if not (extract_dir / "records.jsonl").exists():
        _fail(f"{extract_dir}: no records.jsonl (not an extract output folder)", code=USAGE)
    try:
        rows, unread = run_score(extract_dir, cfg, out or RunPaths.in_folder(extract_dir).scores, model,
                                 log=lambda m: typer.echo(m, err=True))
    except ScoreError as e:
        _fail(f"{cfg.weights_path}: {e}", code=USAGE)
    except ConfigError as e:  # score.framing_model names no file
        _fail(str(e), code=USAGE)
    counts = {g: sum(r["grade"] == g for r in rows) for g in GRADES}
    typer.echo(f"{len(rows)} cut-outs graded " + " ".join(f"{g}:{n}" for g, n in counts.items()), err=True)
    if unread:
        _fail(f"{unread} cut-out(s) could not be read (named above) and have no score")


@app.command()
def calibrate(extract_dirs: list[Path] = typer.Argument(..., help="extract output folder(s) whose pages have ground truth"),
              gt: list[Path] = typer.Option(..., "--gt", help="folder with <stem>_gt.png (masks) or <stem>_gt.json (boxes, real pages); repeat for several"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="[default: score.weights_file, else the weights shipped with kirinuki]"),
              sources: Optional[list[Path]] = typer.Option(None, "--sources", help="CSV of each page's art source (id + source/author, or sprites as realbench's scenes.csv; repeatable): cross-validate by source"),
              params: Optional[Path] = ParamsOpt):
    """Fit the composite score on cut-outs with ground truth; write the weights with their provenance."""
    from kirinuki.qc.calibrate import CalibrateError, run_calibrate
    p = _params(params)
    out = out or p.score.weights_path
    try:
        model = run_calibrate(extract_dirs, gt, p.score, p.calibrate, p.validation.iou_match,
                              p.validation.good_iou, p.validation.clean_iou, out, log=lambda m: typer.echo(m, err=True), sources_csv=sources)
    except CalibrateError as e:
        _fail(str(e), code=e.code)
    prov = model.provenance
    typer.echo(f"fitted on {prov['n_samples']} cut-outs of {prov['n_images']} images -> {out}")
    for name, parts in prov["fit"].items():  # all cut-outs, then by kind of ground truth
        for part, figures in parts.items():
            typer.echo(f"  {name} ({part}): " + "  ".join(f"{k}={v}" for k, v in figures.items()))


@app.command()
def failures(extract_dir: Path = typer.Argument(..., help="an extract output folder, scored"),
             scores: Optional[Path] = typer.Option(None, help="scores JSONL (default: EXTRACT_DIR/scores.jsonl)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for failures.json, map.png, examples/ (default: EXTRACT_DIR/failures)"),
             params: Optional[Path] = ParamsOpt):
    """Group the flagged and low-grade cut-outs into failure patterns (HDBSCAN on the features,
    IsolationForest for outliers), with example thumbnails and a t-SNE map coloured by grade."""
    from kirinuki.qc.failures import write_failures
    run = RunPaths.in_folder(extract_dir)
    scores = scores or run.scores
    if not scores.is_file():
        _fail(f"{scores}: no such scores file (run `kirinuki score {extract_dir}` first)", code=USAGE)
    out = _out_folder(out or run.failures)
    found = write_failures(extract_dir, scores, out, _params(params).failures)
    for p in found["patterns"]:
        typer.echo(f"{p['id']}  {p['size']:4d}  {p['name']}")
    typer.echo(f"{len(found['patterns'])} pattern(s) among {found['failing']} failing cut-out(s) of {found['n']}, "
               f"{len(found['outliers'])} outlier(s) -> {out}")


@app.command()
def validate(extract_dir: Path = typer.Argument(..., help="an extract output folder"),
             gt: Path = typer.Option(..., "--gt", help="folder with <stem>_gt.png (beside or mirroring)"),
             scores: Optional[Path] = typer.Option(None, help="scores JSONL (default: EXTRACT_DIR/scores.jsonl)"),
             metrics: Optional[Path] = typer.Option(None, help="metrics JSON (default: EXTRACT_DIR/validate.json)"),
             per_image: Optional[Path] = typer.Option(None, help="per-image CSV (default: EXTRACT_DIR/per_image.csv)"),
             per_cutout: Optional[Path] = typer.Option(None, help="per-cut-out CSV (default: EXTRACT_DIR/per_cutout.csv)"),
             reviews: Optional[Path] = typer.Option(None, help="reviews.jsonl: also count how often the grade agreed with people"),
             params: Optional[Path] = ParamsOpt):
    """Measure cut-outs against ground truth: IoU, detection, counts, score vs IoU."""
    from kirinuki.qc.validate import ValidateError, run_validate
    for given in (scores, reviews):  # a file named on the command line must be there; the default may not
        if given is not None and not given.is_file():
            _fail(f"{given}: no such file", code=USAGE)
    run = RunPaths.in_folder(extract_dir)
    scores = scores or run.scores
    try:
        m = run_validate(extract_dir, gt, scores if scores.exists() else None, _params(params).validation,
                         metrics or run.validate_json, per_image or run.per_image, per_cutout or run.per_cutout, reviews)
    except ValidateError as e:
        _fail(str(e), code=e.code)
    keys = ("n_images", "union_miou", "instance_miou", "precision", "recall", "count_accuracy",
            "empty_page_fp_rate", "score_iou_spearman", "missing_gt", "gt_without_image", "gt_refused")
    if m.get("n_images"):
        typer.echo("  ".join(f"{k}={m.get(k)}" for k in keys))
    if "boxes" in m:  # real pages with box ground truth
        box_keys = ("n_pages", "n_figures", "figure_recall", "figure_precision", "clean_rate", "merged_rate",
                    "split_rate", "false_cutouts_per_page")
        typer.echo("boxes: " + "  ".join(f"{k}={m['boxes'].get(k)}" for k in box_keys))
        typer.echo("boxes missed: " + "  ".join(f"{k}={m['boxes'].get(k)}" for k in
                                                 ("missed_rate", "missed_in_merged_rate", "missed_partial_rate",
                                                  "missed_no_cutout_rate")))
        if "grade" in m["boxes"]:
            grade = {k: v for k, v in m["boxes"]["grade"].items() if k != "framing"}
            typer.echo("boxes grade: " + "  ".join(f"{k}={v}" for k, v in grade.items()))
            if "framing" in m["boxes"]["grade"]:
                typer.echo("boxes framing: " + "  ".join(f"{k}={v}" for k, v in m["boxes"]["grade"]["framing"].items()))
    if "reviews" in m:
        typer.echo("reviews: " + "  ".join(f"{k}={v}" for k, v in m["reviews"].items()))
    if m.get("gt_refused"):  # each refused ground truth was named, with why
        raise typer.Exit(FAILED)


@app.command()
def compare(candidate: Path = typer.Argument(DVC_RUN.per_image, help="per-image CSV of the new run"),
            baseline: str = typer.Option("HEAD", help="git revision, or a per-image CSV / folder"),
            json_out: Optional[Path] = typer.Option(None, "--json", help="report JSON (default: compare.json beside CANDIDATE)"),
            md_out: Optional[Path] = typer.Option(None, "--md", help="report Markdown (default: compare.md beside CANDIDATE)"),
            thresholds: Optional[Path] = typer.Option(
                None, help="QC floors to check too, e.g. qc/thresholds.yaml (sample data; default: none)"),
            summary: Optional[Path] = typer.Option(
                None, help="metrics JSON the floors apply to (default: validate.json beside CANDIDATE)"),
            params: Optional[Path] = ParamsOpt):
    """Paired per-image statistics against a baseline, plus floors: exit 1 when the gate fails
    (a significant regression, or a metric past its limit in the thresholds file)."""
    from kirinuki.qc.compare import CompareError, run_compare
    try:
        beside = RunPaths.in_folder(candidate.parent)
        code = run_compare(candidate, baseline, _params(params).compare,
                           json_out or beside.compare_json, md_out or beside.compare_md,
                           thresholds=thresholds, summary=summary)
    except CompareError as e:
        _fail(str(e), code=USAGE)
    raise typer.Exit(code)


@app.command("report-pr")
def report_pr(report: Path = typer.Option(..., help="compare JSON of the gate (missing: the job failed before it)"),
              pr: int = typer.Option(..., min=1, help="pull request number"),
              sha: str = typer.Option(..., help="commit to set the status on (the PR head)"),
              metrics_diff: Optional[Path] = typer.Option(None, help="`dvc metrics diff --md` output to include"),
              repo: str = typer.Option(..., envvar="GITHUB_REPOSITORY", help="owner/name"),
              server_url: str = typer.Option(GITHUB_COM, envvar="GITHUB_SERVER_URL",
                                             help="github.com or a GitHub Enterprise server"),
              run_url: Optional[str] = typer.Option(None, help="link for the status and the comment"),
              dashboard_url: Optional[str] = typer.Option(None, help="link to the run's dashboard (e.g. the workflow artifact)"),
              context: str = typer.Option("kirinuki/qc", help="commit status context")):
    """Post the gate's result on a pull request: one sticky comment (edited on each push) and a
    commit status. The token is read from $GITHUB_TOKEN."""
    try:
        from kirinuki.publish.pr_report import (ReportError, ReportUsageError, comment_body, commit_status,
                                                connect, publish, read_report)
    except ImportError as e:
        _fail(f"report-pr needs the GitHub client ({e.name}): pip install 'kirinuki[publish]'", code=USAGE)
    try:
        result = read_report(report)
        diff = metrics_diff.read_text(encoding="utf-8") if metrics_diff and metrics_diff.is_file() else None
        state, description = commit_status(result)
        action = publish(connect(server_url, os.environ.get(GITHUB_TOKEN_ENV, "")), repo, pr, sha,
                         comment_body(result, diff, sha, run_url, dashboard_url or None), state, description, context, run_url)
    except ReportError as e:
        _fail(str(e), code=USAGE if isinstance(e, ReportUsageError) else FAILED)
    typer.echo(f"PR #{pr}: comment {action}, status {state} on {sha[:7]}: {description}")


# --- publish: tracker runs, tickets, dashboards ---------------------------------------------

RootOpt = typer.Option(Path("."), "--root", help="data root holding <author>/org/ and <author>/tracker-workspace/")


def _workspace(tracker_id: str, root: Path):
    from kirinuki.publish.workspace import WorkspaceError, check_tracker_id, find_workspaces
    try:
        ws = find_workspaces(root).get(check_tracker_id(tracker_id))
    except WorkspaceError as e:
        _fail(str(e), code=USAGE)
    if ws is None:
        _fail(f"{tracker_id}: no <author>/tracker-workspace/{tracker_id} under {root}", code=USAGE)
    return ws


@app.command()
def track(tracker_id: str = typer.Argument(..., help="tracker ID, e.g. QCC-011"),
          work: Path = typer.Option(..., "--input", "-i", help="<root>/<author>/org/<work> folder of pages"),
          baseline: Optional[str] = typer.Option(None, help="per_image.csv or folder to compare with (default: this tracker's previous run)"),
          priority: Optional[str] = typer.Option(None, help="ticket priority, one of publish.sheets.priorities"),
          summary: Optional[str] = typer.Option(None, help="ticket summary (概要)"),
          needs: Optional[list[str]] = typer.Option(None, "--needs", help="tracker ID this one needs first (repeatable)"),
          notify: bool = typer.Option(True, help="send the Pushover summary"),
          background: bool = typer.Option(False, help="detach; follow with `kirinuki track-log ID --follow`"),
          detached: bool = typer.Option(False, hidden=True),
          params: Optional[Path] = ParamsOpt):
    """Run the pipeline over a work into its tracker workspace, then publish dashboard, ticket, notification."""
    from kirinuki.publish.tickets import Ticket, check_ticket
    from kirinuki.publish.track import TrackBusy, TrackOptions, make_log, run_track, running_pid, start_background
    from kirinuki.publish.workspace import WorkspaceError, workspace_for_input
    from kirinuki.quality.score import check_scorer
    cfg = _params(params)
    try:
        ws = workspace_for_input(work, tracker_id)
        if baseline and not Path(baseline).exists():  # found now, not after the whole run
            raise ValueError(f"--baseline {baseline}: no such file or folder")
        check_ticket(Ticket(tracker_id, "", priority=priority, depends_on=tuple(needs or ())), cfg.publish.sheets)
        check_scorer(cfg.score)  # before extraction, not after it
    except (WorkspaceError, ValueError, ConfigError) as e:
        _fail(str(e), code=2)
    if background:
        if running_pid(ws):
            _fail(f"{tracker_id} is already running (pid {running_pid(ws)})")
        # the child keeps our working directory; the params path stays as typed, since paths
        # inside it resolve against its spelling and feed the extract params hash (resume)
        args = [tracker_id, "--input", str(work.absolute()), *(["--params", str(params)] if params else []),
                *(["--baseline", baseline] if baseline else []), *(["--priority", priority] if priority else []),
                *(["--summary", summary] if summary else []), *[a for n in needs or [] for a in ("--needs", n)],
                *([] if notify else ["--no-notify"])]
        pid = start_background(ws, args)
        typer.echo(f"{tracker_id}: running in the background (pid {pid}); log: {ws.log}\n"
                   f"follow: kirinuki track-log {tracker_id} --root {ws.root} --follow")
        return
    opts = TrackOptions(baseline=baseline, priority=priority, summary=summary,
                        depends_on=tuple(needs) if needs else None, notify=notify)
    try:
        code = run_track(ws, Path(os.path.abspath(work)), cfg, opts, make_log(ws, detached))
    except TrackBusy as e:
        _fail(str(e))
    raise typer.Exit(code)


@app.command("track-log")
def track_log(tracker_id: str = typer.Argument(..., help="tracker ID"), root: Path = RootOpt,
              follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the run ends")):
    """Print a tracker run's log (track.log); --follow waits for the run to finish."""
    from kirinuki.publish.track import follow_log
    try:
        status = follow_log(_workspace(tracker_id, root), follow, lambda s: typer.echo(s, nl=False))
    except FileNotFoundError as e:
        _fail(str(e), code=USAGE)
    if status == "interrupted":  # it will never finish by itself
        _fail(f"{tracker_id}: the run was interrupted before it finished; the same `kirinuki track` resumes it")


@app.command()
def ticket(tracker_id: str = typer.Argument(..., help="tracker ID"),
           status: Optional[str] = typer.Option(None, help="one of publish.sheets.statuses"),
           priority: Optional[str] = typer.Option(None, help="one of publish.sheets.priorities"),
           summary: Optional[str] = typer.Option(None, help="ticket summary (概要)"),
           details: Optional[str] = typer.Option(None, help="ticket details (詳細)"),
           needs: Optional[list[str]] = typer.Option(None, "--needs", help="tracker ID this one needs first (repeatable)"),
           root: Path = RootOpt, params: Optional[Path] = ParamsOpt):
    """Create or update a ticket row by tracker ID (also sends updates waiting in the outbox)."""
    from kirinuki.publish.tickets import publish_tickets, ticket_update
    from kirinuki.publish.workspace import OUTBOX_NAME
    cfg = _params(params).publish.sheets
    if not root.is_dir():  # a mistyped root would get an outbox of its own
        _fail(f"--root {root}: no such folder", code=USAGE)
    try:
        t = ticket_update(tracker_id, cfg, status=status, priority=priority, summary=summary, details=details,
                          depends_on=tuple(needs) if needs else None)
        result = publish_tickets([t], cfg, root / OUTBOX_NAME)
    except ValueError as e:
        _fail(str(e), code=USAGE)
    typer.echo(result.message)
    if result.queued and not result.sent:  # kept in the outbox: the next publish sends it
        raise typer.Exit(FAILED)


@app.command()
def serve(root: Path = RootOpt,
          host: str = typer.Option(SERVE_HOST, help="address to bind, e.g. your VPN interface's"),
          port: int = typer.Option(SERVE_PORT, min=0, max=65535, help="TCP port"),
          allow_weak_password: bool = typer.Option(False, "--allow-weak-password",
                                                   help="serve even with a password shorter than 12 characters "
                                                        "or among the most common ones"),
          idle_timeout: float = typer.Option(SERVE_IDLE_TIMEOUT_S, "--idle-timeout", min=0.1,
                                             help="seconds a silent connection is kept open")):
    """Serve /tracker/<ID>/ dashboards behind HTTP basic auth ($KIRINUKI_DASHBOARD_USER/_PASSWORD;
    the password needs 12 characters or more and must not be a common one)."""
    from kirinuki.publish.serve import ServeError, make_server
    try:
        server = make_server(root, host, port, allow_weak_password=allow_weak_password, idle_timeout_s=idle_timeout)
    except ServeError as e:
        _fail(str(e), code=USAGE)
    import signal
    # Ctrl-C, `kill` and a service manager's stop all end it cleanly, even when a shell started it
    # as a background job (which ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:  # the signal may come as soon as the line below is out
        typer.echo(f"serving {root.absolute()} dashboards on http://{host}:{server.server_port}/ (Ctrl-C stops)",
                   err=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def export(paths: list[Path] = typer.Argument(..., help="tracker workspaces or scored extract folders; with --check: the dataset"),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="dataset folder to write (replaced whole)"),
           check: bool = typer.Option(False, "--check", help="verify an exported dataset instead of writing one"),
           params: Optional[Path] = ParamsOpt):
    """Approved or lora_ok cut-outs -> a LoRA training set (kohya-ss, ai-toolkit, Hugging Face
    imagefolder; params `export`), with a manifest; `--check DATASET` verifies one. Exit 1: problems."""
    from kirinuki.dataset.export import (ExportError, check as check_dataset, check_replaceable, find_source,
                                         load_tag_dictionary, run_export)
    if check:
        if len(paths) != 1 or out:
            _fail("--check takes one dataset folder and no --out", code=USAGE)
        if not paths[0].is_dir():
            _fail(f"{paths[0]}: no such folder", code=USAGE)
        problems = check_dataset(paths[0])
        for line in problems:
            typer.echo(f"problem: {line}", err=True)
        typer.echo(f"{paths[0]}: {'refused, ' + str(len(problems)) + ' problem(s)' if problems else 'whole, as exported'}")
        raise typer.Exit(FAILED if problems else DONE)
    if out is None:
        _fail("give the dataset folder to write with --out/-o", code=USAGE)
    out = _out_folder(out)
    p = _params(params)
    tagger = None
    try:
        check_replaceable(out)  # replaced whole: found before any work, never a user's folder
        sources = [find_source(path) for path in paths]
        load_tag_dictionary(p.export)  # a bad dictionary stops here, before any work
        if p.export.tagger.model:
            from kirinuki.dataset.tagger import Tagger
            tagger = Tagger(p.export.tagger)
    except (ExportError, ConfigError, ValueError) as e:
        _fail(str(e), code=USAGE)
    try:
        summary = run_export(sources, out, p.export, p.score.train_resolution,
                             log=lambda m: typer.echo(m, err=True), tagger=tagger)
    except (ExportError, ValueError, OSError) as e:
        _fail(str(e))
    left = summary["left_out"]
    typer.echo(f"{summary['items']} image(s) -> {out} ({', '.join(summary['layouts'])}; {summary['resolution']} px buckets); "
               f"left out: {left['excluded']} excluded, {left['not_selected']} not approved or lora_ok, "
               f"{left['duplicates']} near-duplicate(s), {left['missing']} missing")
    if not summary["items"]:
        _fail(f"{out}: no cut-out was approved or lora_ok, so the dataset is empty")


dataset_app = typer.Typer(no_args_is_help=True, help="An exported dataset: training usage, balanced sampling, statistics.")
app.add_typer(dataset_app, name="dataset")


def _index(dataset: Path) -> Path:
    from kirinuki.dataset.export import INDEX
    if not (dataset / INDEX).is_file():
        _fail(f"{dataset}: no {INDEX} (export a dataset there first)", code=USAGE)
    return dataset / INDEX


@dataset_app.command("usage")
def dataset_usage(dataset: Path = typer.Argument(..., help="an exported dataset folder"),
                  run: str = typer.Option(..., "--run", help="a name for this training run"),
                  log: Path = typer.Option(..., "--log", help="the trainer's log, or a list of the images it saw"),
                  parent: Optional[str] = typer.Option(None, "--parent", help="the recorded run this one resumed")):
    """Record which images a training run saw, and how often."""
    from kirinuki.dataset.usage import UsageError, record_usage
    try:
        r = record_usage(_index(dataset), run, log, parent)
    except UsageError as e:
        _fail(str(e), code=USAGE)
    typer.echo(f"run {r['run']}: {r['sightings']} sighting(s) of {r['items_seen']} image(s) in {r['lines']} line(s)"
               + (f", resumed from {r['parent']}" if r["parent"] else ""))
    if r["warning"]:
        typer.echo(f"warning: {r['warning']}", err=True)


@dataset_app.command("sample")
def dataset_sample(dataset: Path = typer.Argument(..., help="an exported dataset folder"),
                   strategy: str = typer.Option("min-usage", help="min-usage (least seen first, weights 1/(1+seen)) or uniform"),
                   n: Optional[int] = typer.Option(None, "-n", min=1, help="images to take [default: all]"),
                   seed: int = typer.Option(0, help="ties and shuffles"),
                   balance: Optional[str] = typer.Option(None, help="interleave by framing or character"),
                   after: Optional[str] = typer.Option(None, "--after", help="count usage along this run's lineage only"),
                   out: Path = typer.Option(..., "--out", "-o", help="file list to write (one image path per line)"),
                   kohya: Optional[Path] = typer.Option(None, "--kohya", help="also write kohya folders <repeats>_<trigger> <class>/ here (replaced whole)")):
    """The next training run's images: under-used ones first, as a file list and kohya repeats."""
    from kirinuki.core.imageio import write_text
    from kirinuki.dataset.export import ExportError, layout_dir, read_manifest
    from kirinuki.dataset.usage import BALANCE, STRATEGIES, UsageError, kohya_repeats, sample
    if strategy not in STRATEGIES or balance not in (None, *BALANCE):  # before reading the dataset
        _fail(f"--strategy is {' or '.join(STRATEGIES)}; --balance {' or '.join(BALANCE)}", code=USAGE)
    kohya = kohya and _out_folder(kohya)
    try:
        m = read_manifest(dataset)
        picked = sample(_index(dataset), strategy, n, seed, balance, after)
    except (UsageError, ExportError) as e:
        _fail(str(e), code=USAGE)
    layout = m["summary"]["layouts"][0]
    p = m["params"]
    base = dataset / layout_dir(layout, p["repeats"], p["trigger"], p["class_word"])
    write_text(out, "".join(f"{(base / (r['name'] + '.png')).absolute()}\n" for r in picked))
    if kohya:
        from kirinuki.dataset.export import write_kohya_sample
        try:
            write_kohya_sample(base, kohya_repeats(picked, p["repeats"]), p["trigger"], p["class_word"], kohya)
        except ExportError as e:
            _fail(str(e), code=USAGE)
    seen = sum(r["times_seen"] == 0 for r in picked)
    typer.echo(f"{len(picked)} image(s) -> {out} ({seen} never seen)" + (f"; kohya folders in {kohya}" if kohya else ""))


@dataset_app.command("stats")
def dataset_stats(dataset: Path = typer.Argument(..., help="an exported dataset folder")):
    """Times each image was seen in training, never-seen images, and the recorded runs."""
    from kirinuki.dataset.usage import UsageError, usage_stats
    try:
        st = usage_stats(_index(dataset))
    except UsageError as e:
        _fail(str(e), code=USAGE)
    typer.echo(f"{st['items']} image(s), {st['never_seen']} never seen; runs: "
               + (", ".join(f"{r['name']}" + (f" (after {r['parent']})" if r["parent"] else "") for r in st["runs"]) or "none"))
    for name, times in sorted(st["seen"].items(), key=lambda kv: (-kv[1], kv[0])):
        typer.echo(f"{times:6d}  {name}")


if __name__ == "__main__":
    sys.exit(app())
