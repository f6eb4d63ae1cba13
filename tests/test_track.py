import pytest
"""`kirinuki track` end to end: pipeline into the tracker workspace, resume, the per-page time
limit, background runs, and publishing to a local fake Sheets API and Pushover endpoint."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.core.config import DEFAULT_SCORE_WEIGHTS
from kirinuki.core.imageio import read_jsonl
from kirinuki.core.runs import RunPaths
from kirinuki.publish.track import TrackOptions, extract_with_limit, run_track
from kirinuki.publish.workspace import workspace_for_input

from conftest import TINY_SIZE
from fake_pushover import FakePushover
from fake_sheets import FakeGoogle, service_account
from works import make_work, tracker_params

pytestmark = pytest.mark.slow

runner = CliRunner()


def params_file(tmp_path, tiny_model, **sections):
    doc = {"extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "margin": 0.05, "splitter": None}, **sections}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_track_runs_resumes_and_publishes(tmp_path, tiny_model):
    info, public = service_account("")
    google, pushover = FakeGoogle(public, {"tickets": []}), FakePushover()
    info["token_uri"] = f"{google.url}/token"
    (tmp_path / "sa.json").write_text(json.dumps(info))
    env = {"KIRINUKI_GOOGLE_CREDENTIALS": str(tmp_path / "sa.json"),
           "KIRINUKI_PUSHOVER_TOKEN": "app-token", "KIRINUKI_PUSHOVER_USER": "user-key"}
    params = params_file(tmp_path, tiny_model, publish={
        "dashboard_url": "http://10.8.0.1:8765/tracker/{id}/",
        "sheets": {"spreadsheet_key": "sheet-key", "api_base": google.url, "backoff_s": 0.01},
        "notify": {"pushover_url": pushover.url, "attach_best": 2}})
    work = make_work(tmp_path / "root")
    ws = workspace_for_input(work, "QCC-011")
    try:
        r = runner.invoke(app, ["track", "QCC-011", "--input", str(work), "--params", str(params),
                                "--priority", "高", "--summary", "aoki ep.1", "--needs", "QCA-001"], env=env)
        assert r.exit_code == 0, r.output
        assert "[3/3]" in r.output and "== done" in r.output

        state = json.loads(ws.state.read_text())
        assert state["status"] == "done" and state["characters"] == 6 and sum(state["grades"].values()) == 6
        assert len(read_jsonl(ws.extract / "scores.jsonl")) == 6 and (ws.metrics / "per_cutout.csv").is_file()
        assert json.loads((ws.metrics / "compare.json").read_text())["verdict"] == "no baseline"
        assert "QCC-011" in (ws.dir.parent / "index.html").read_text()
        assert "[3/3]" in ws.log.read_text()  # the log file has the progress too

        [header, row] = google.sheets["tickets"]
        ticket = dict(zip(header, row))
        assert ticket["ID"] == "QCC-011" and ticket["ステータス"] == "完了" and ticket["優先度"] == "高"
        assert ticket["概要"] == "aoki ep.1" and ticket["依存"] == "QCA-001"
        assert ticket["ダッシュボード"] == "http://10.8.0.1:8765/tracker/QCC-011/"
        assert "6 cut-outs" in ticket["詳細"] and "instance mIoU" in ticket["詳細"]

        [msg] = pushover.messages
        assert msg["token"] == "app-token" and msg["user"] == "user-key" and "QCC-011" in msg["title"]
        assert "6 cut-outs" in msg["message"] and msg["url"].endswith("/tracker/QCC-011/")
        assert msg["attachment"]["content_type"] == "image/jpeg" and msg["attachment"]["data"][:2] == b"\xff\xd8"

        r = runner.invoke(app, ["track", "QCC-011", "--input", str(work), "--params", str(params), "--no-notify"],
                          env=env)
        assert r.exit_code == 0, r.output
        assert "3 pages (3 already done)" in r.output and "[1/3]" not in r.output  # resumed, nothing redone
        assert json.loads(ws.state.read_text())["baseline"].endswith("previous/per_image.csv")
        assert len(google.sheets["tickets"]) == 2 and len(pushover.messages) == 1  # same row; no new message
    finally:
        google.close()
        pushover.close()


def test_page_time_limit_stops_the_run_and_resume_finishes(tmp_path, tiny_model):
    work = make_work(tmp_path / "root", n_pages=1)
    big = np.full((3000, 3000, 3), 255, np.uint8)
    big[500:2500, 800:2200] = 40
    Image.fromarray(big).save(work / "aoki_ep1_99.png")  # sorts after the small page
    ws = workspace_for_input(work, "QCC-012")
    lines = []
    params = tracker_params(tiny_model)
    quick = params.model_copy(update={"track": params.track.model_copy(update={"page_timeout_s": 0.05})})

    code = run_track(ws, work, quick, TrackOptions(notify=False), lines.append, env={})
    log = "\n".join(lines)
    assert code == 3, log
    assert "page aoki_ep1_99.png still running after 0 s (track.page_timeout_s = 0.05)" in log
    assert not (ws.extract / "aoki_ep1_99").exists()  # the page in progress is not written
    state = json.loads(ws.state.read_text())
    assert state["status"] == "stopped" and state["stopped"]["page"] == "aoki_ep1_99"
    outbox = read_jsonl(ws.outbox)
    assert outbox[-1]["status"] == "対応中" and "the same command resumes" in outbox[-1]["details"]

    lines.clear()
    assert run_track(ws, work, params, TrackOptions(notify=False), lines.append, env={}) == 0, lines
    assert any("[2/2] aoki_ep1_99" in line for line in lines)
    assert (ws.extract / "aoki_ep1_99" / "page.json").is_file()


def test_extraction_error_is_reported(tmp_path, tiny_model):
    work = make_work(tmp_path / "root", n_pages=1)
    params = tracker_params(tiny_model)
    broken = params.model_copy(update={"extract": params.extract.model_copy(update={"model": tmp_path / "none.onnx"})})
    outcome = extract_with_limit(work, RunPaths(tmp_path / "out", tmp_path / "scores.jsonl", tmp_path), broken,
                                 lambda m: None)
    assert outcome.summary is None and "none.onnx" in outcome.error


def test_background_run_and_follow_its_log(tmp_path, tiny_model):
    params = params_file(tmp_path, tiny_model)
    work = make_work(tmp_path / "root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIRINUKI_")}
    cmd = [sys.executable, "-m", "kirinuki.cli"]
    start = time.monotonic()
    r = subprocess.run([*cmd, "track", "QCC-013", "--input", str(work), "--params", str(params), "--background"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "running in the background" in r.stdout, r.stderr
    assert time.monotonic() - start < 20  # returned before the run was done
    f = subprocess.run([*cmd, "track-log", "QCC-013", "--root", str(tmp_path / "root"), "--follow"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert f.returncode == 0 and "== done: QCC-013" in f.stdout, f.stdout + f.stderr
    assert f.stdout.count("[3/3]") == 1  # each line once: a detached run logs only through its stderr


def test_bad_layout_and_busy_tracker(tmp_path, tiny_model):
    (tmp_path / "flat").mkdir()
    r = runner.invoke(app, ["track", "QCC-014", "--input", str(tmp_path / "flat")])
    assert r.exit_code == 2 and "expected a work folder <root>/<author>/org/<work>" in r.output
    work = make_work(tmp_path / "root", n_pages=1)
    r = runner.invoke(app, ["track", "../x", "--input", str(work)])
    assert r.exit_code == 2 and "not a tracker ID" in r.output

    ws = workspace_for_input(work, "QCC-015")
    ws.dir.mkdir(parents=True)
    ws.pidfile.write_text(f"{os.getppid()}\n")  # a live process holds it
    r = runner.invoke(app, ["track", "QCC-015", "--input", str(work), "--params", str(params_file(tmp_path, tiny_model))])
    assert r.exit_code == 1 and "already running" in r.output


def test_unknown_priority_is_refused(tmp_path):
    work = make_work(tmp_path / "root", n_pages=1)
    r = runner.invoke(app, ["track", "QCC-016", "--input", str(work), "--priority", "urgent"])
    assert r.exit_code == 2 and "is not one of 最高, 高, 中, 低" in r.output


@pytest.mark.parametrize("key, says", [("framing_model", "score.framing_model"),
                                       ("weights_file", "no such score weights file")])
def test_a_scorer_file_that_is_not_there_is_refused_before_extraction(tmp_path, tiny_model, key, says):
    work = make_work(tmp_path / "root", n_pages=1)
    params = params_file(tmp_path, tiny_model, score={key: str(tmp_path / "gone.file")})
    for detach in ([], ["--background"]):  # a background run is refused before it detaches
        r = runner.invoke(app, ["track", "QCC-017", "--input", str(work), "--params", str(params), "--no-notify",
                                *detach])
        assert r.exit_code == 2 and says in r.output and "gone.file" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert not workspace_for_input(work, "QCC-017").dir.exists()  # nothing extracted, no state written


def test_score_weights_with_a_feature_the_scorer_lacks_are_refused_before_extraction(tmp_path, tiny_model):
    weights = yaml.safe_load(DEFAULT_SCORE_WEIGHTS.read_text(encoding="utf-8"))
    weights["features"].append("sparkle")
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(weights))
    work = make_work(tmp_path / "root", n_pages=1)
    params = params_file(tmp_path, tiny_model, score={"weights_file": str(tmp_path / "w.yaml")})
    r = runner.invoke(app, ["track", "QCC-018", "--input", str(work), "--params", str(params), "--no-notify"])
    assert r.exit_code == 2 and "w.yaml" in r.output and "['sparkle']" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not workspace_for_input(work, "QCC-018").dir.exists()


def test_a_scoring_error_after_extraction_is_published_as_failed(tmp_path, tiny_model, monkeypatch):
    from kirinuki import pipeline
    from kirinuki.quality.score import ScoreError

    def broken(*_a, **_k):
        raise ScoreError("w.yaml: the weights file went away")
    monkeypatch.setattr(pipeline, "score", broken)
    work = make_work(tmp_path / "root", n_pages=1)
    ws = workspace_for_input(work, "QCC-019")
    lines = []
    assert run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False), lines.append, env={}) == 1
    state = json.loads(ws.state.read_text())
    assert state["status"] == "failed" and "went away" in state["error"], state
    assert "error: w.yaml: the weights file went away" in lines
    assert "went away" in read_jsonl(ws.outbox)[-1]["details"]  # the ticket says why
    assert not ws.pidfile.exists()


def test_an_unreadable_cutout_makes_the_run_exit_1(tmp_path, tiny_model, monkeypatch):
    from kirinuki import pipeline

    score = pipeline.score

    def losing_one(run, params, **kw):  # one cut-out lost between extraction and scoring
        next(run.extract.glob("*/char_1.png")).unlink()
        return score(run, params, **kw)
    monkeypatch.setattr(pipeline, "score", losing_one)
    work = make_work(tmp_path / "root", n_pages=1)
    ws = workspace_for_input(work, "QCC-020")
    lines = []
    assert run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False), lines.append, env={}) == 1
    state = json.loads(ws.state.read_text())
    assert state["status"] == "done" and state["unscored"] == 1, state
    assert any("char_1.png" in line for line in lines) and "1 cut-out(s) could not be read and have no score" in lines


def test_box_ground_truth_is_measured_by_figures_on_the_dashboard(tmp_path, tiny_model):
    """Real pages carry `<stem>_gt.json` boxes: the tracker run reports figure recall and clean
    figures (ticket details, dashboard), and does not compare (that needs masks)."""
    work = make_work(tmp_path / "root", n_pages=2, gt=False)
    for page in sorted(work.glob("*.png")):
        labels = (np.asarray(Image.open(page).convert("L")) < 128)
        ys, xs = np.nonzero(labels)
        (work / f"{page.stem}_gt.json").write_text(json.dumps(  # one box round both dark figures: merged or split
            {"figures": [{"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]}]}))
    ws = workspace_for_input(work, "QCC-021")
    lines = []
    assert run_track(ws, work, tracker_params(tiny_model), TrackOptions(notify=False), lines.append, env={}) == 0
    state = json.loads(ws.state.read_text())
    b = state["metrics"]["boxes"]
    assert b["n_pages"] == 2 and b["n_figures"] == 2 and state["verdict"] is None, state
    assert any(line.startswith("validate (boxes): figure recall") for line in lines), lines
    html = (ws.dashboard / "index.html").read_text()
    assert 'id="box-metrics"' in html and "No ground truth" not in html and "instance mIoU" not in html
    assert "figure recall" in read_jsonl(ws.outbox)[-1]["details"]
