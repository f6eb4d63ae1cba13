"""Exit codes mean the same for every command: 0 all done; 1 some inputs failed (each listed)
or the work could not be done; 2 a usage or configuration error; 3 stopped by the per-page time
limit. And a params file given by absolute path works from any directory."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from kirinuki.cli import FAILED, STOPPED, USAGE, _Kirinuki, app
from kirinuki.core.imageio import read_jsonl, write_png
from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV

from conftest import TINY_SIZE, two_figures
from works import make_work

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def params(tmp_path, tiny_model):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "splitter": None},
                                    "track": {"page_timeout_s": 60}}))
    return path


def test_extract_exit_codes(tmp_path, params, tiny_model):
    pages = tmp_path / "pages"
    pages.mkdir()
    Image.fromarray(two_figures()).save(pages / "p1.png")
    r = invoke("extract", pages, "-o", tmp_path / "out", "-p", params, "--no-progress")
    assert r.exit_code == 0, r.output

    (pages / "broken.png").write_bytes(b"\x89PNG\r\n")
    r = invoke("extract", pages, "-o", tmp_path / "out", "-p", params, "--no-progress")
    assert r.exit_code == FAILED and "broken.png" in r.output and "1 failed" in r.output

    only = tmp_path / "only"
    only.mkdir()
    (only / "zero.png").write_bytes(b"")  # the only input fails: not "done"
    r = invoke("extract", only, "-o", tmp_path / "out2", "-p", params, "--no-progress")
    assert r.exit_code == FAILED and "0 pages" in r.output and "zero.png: empty file" in r.output

    r = invoke("extract", tmp_path / "nowhere", "-o", tmp_path / "out3", "-p", params)
    assert r.exit_code == USAGE and "no such file or folder" in r.output
    no_pages = tmp_path / "no_pages"  # a wrong folder: said, and nothing written
    no_pages.mkdir()
    (no_pages / "layers.psd").write_bytes(b"8BPS")
    r = invoke("extract", no_pages, "-o", tmp_path / "out3", "-p", params, "--no-progress")
    assert r.exit_code == USAGE and f"error: {no_pages}: no images in this folder" in r.output, r.output
    assert "layers.psd" in r.output and not (tmp_path / "out3").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("extract:\n  treshold: 0.5\n")
    r = invoke("extract", pages, "-o", tmp_path / "out3", "-p", bad)
    assert r.exit_code == USAGE and "extract.treshold: unknown key" in r.output
    nomodel = tmp_path / "nomodel.yaml"
    nomodel.write_text(yaml.safe_dump({"extract": {"model": str(tmp_path / "none.onnx"), "splitter": None}}))
    r = invoke("extract", pages, "-o", tmp_path / "out3", "-p", nomodel)
    assert r.exit_code == USAGE and "none.onnx" in r.output

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, command in ((a_file, ["extract", pages, "-p", params]), (a_file / "sub", ["extract", pages, "-p", params]),
                         (a_file / "pages", ["synth"])):
        r = invoke(*command, *(["-o", out] if command[0] != "synth" else [out]))  # no traceback: one line, exit 2
        assert r.exit_code == USAGE and r.output.strip().splitlines() == [
            f"error: {out}: cannot be an output folder ({a_file} is a file)"], r.output


def test_validate_score_compare_exit_codes(tmp_path, params, capsys):
    out, gt = tmp_path / "out", tmp_path / "gt"
    pages = tmp_path / "pages"
    pages.mkdir()
    rgb = two_figures()
    Image.fromarray(rgb).save(pages / "p1.png")
    Image.fromarray(rgb).save(pages / "p2.png")
    assert invoke("extract", pages, "-o", out, "-p", params, "--no-progress").exit_code == 0
    assert invoke("score", out, "-p", params).exit_code == 0
    write_png(gt / "p1_gt.png", (rgb.min(axis=2) < 128).astype(np.uint8) * 255)
    r = invoke("validate", out, "--gt", gt, "-p", params)
    assert r.exit_code == 0 and "missing_gt=1" in r.output, r.output  # p2 has none: listed and counted

    ramp = np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))  # a gradient is no ground truth
    write_png(gt / "p2_gt.png", ramp)
    r = invoke("validate", out, "--gt", gt, "-p", params)
    assert r.exit_code == FAILED and "p2_gt.png: refused as ground truth" in r.output and "gt_refused=1" in r.output

    r = invoke("validate", out, "--gt", tmp_path / "nowhere", "-p", params)
    assert r.exit_code == USAGE and "no such ground-truth folder" in r.output
    r = invoke("score", tmp_path / "pages", "-p", params)
    assert r.exit_code == USAGE and "no records.jsonl" in r.output
    r = invoke("compare", out / "per_image.csv", "--baseline", tmp_path / "nothing.csv", "-p", params)
    assert r.exit_code == USAGE and "nothing.csv" in r.output

    (tmp_path / "a_file").write_text("x")
    r = invoke("failures", out, "-o", tmp_path / "a_file", "-p", params)
    assert r.exit_code == USAGE and r.output.strip() == f"error: {tmp_path / 'a_file'}: cannot be an output folder " \
        f"({tmp_path / 'a_file'} is a file)", r.output

    cutout = next(out.glob("p1/char_*.png"))
    cutout.write_bytes(b"not a png")  # a damaged cut-out: named, the others scored, exit 1
    r = invoke("score", out, "-p", params)
    assert r.exit_code == FAILED and cutout.name in r.output and "1 cut-out(s) could not be read" in r.output, r.output
    assert len(read_jsonl(out / "scores.jsonl")) == len(read_jsonl(out / "records.jsonl")) - 1

    r = invoke("validate", out, "--gt", gt, "--scores", tmp_path / "typo.jsonl", "-p", params)
    assert r.exit_code == USAGE and f"{tmp_path / 'typo.jsonl'}: no such file" in r.output, r.output
    for args in (["--gt", tmp_path / "nowhere"], ["--gt", gt, "--sources", tmp_path / "nowhere.csv"]):
        r = invoke("calibrate", out, *args, "-o", tmp_path / "w.yaml", "-p", params)
        assert r.exit_code == USAGE and "nowhere" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = invoke("export", out, "-o", tmp_path / "a_file", "-p", params)
    assert r.exit_code == USAGE and "cannot be an output folder" in r.output, r.output
    capsys.readouterr()
    for command, damaged in (("score", "records.jsonl"), ("failures", "scores.jsonl")):  # as a shell runs them
        line = len(read_jsonl(out / damaged)) + 1
        with open(out / damaged, "a") as f:
            f.write('{"image": "p1", "k"\n')  # one line naming the file and the line, no traceback
        with pytest.raises(SystemExit) as e:
            app([command, str(out), "-p", str(params)], prog_name="kirinuki")
        err = capsys.readouterr().err
        assert e.value.code == FAILED and err.strip().splitlines()[-1].startswith(
            f"error: {out / damaged}: line {line} is not JSON"), err
        assert "Traceback" not in err


def test_track_exit_codes(tmp_path, params):
    work = make_work(tmp_path / "root", n_pages=1)
    r = invoke("track", "QCC-101", "--input", work, "-p", params, "--no-notify", env={})
    assert r.exit_code == 0, r.output
    (work / "broken.png").write_bytes(b"\x89PNG\r\n")
    r = invoke("track", "QCC-101", "--input", work, "-p", params, "--no-notify", env={})
    assert r.exit_code == FAILED and "broken.png" in r.output and "1 page(s) failed" in r.output

    slow = tmp_path / "slow.yaml"
    slow.write_text(params.read_text().replace("page_timeout_s: 60", "page_timeout_s: 0.001"))
    Image.fromarray(np.full((2000, 2000, 3), 255, np.uint8)).save(work / "zz_big.png")
    r = invoke("track", "QCC-101", "--input", work, "-p", slow, "--no-notify", env={})
    assert r.exit_code == STOPPED and "track.page_timeout_s" in r.output, r.output

    r = invoke("track", "QCC 101", "--input", work)
    assert r.exit_code == USAGE
    other = make_work(tmp_path / "root", n_pages=1, author="mori")  # one ID is one row and one dashboard
    r = invoke("track", "QCC-101", "--input", other, "-p", params, "--no-notify", env={})
    assert r.exit_code == USAGE and "already another author's tracker" in r.output, r.output
    r = invoke("track", "QCC-102", "--input", work, "--baseline", tmp_path / "nope.csv", "-p", params, env={})
    assert r.exit_code == USAGE and "nope.csv: no such file or folder" in r.output, r.output
    assert not (tmp_path / "root" / "aoki" / "tracker-workspace" / "QCC-102").exists()
    state = work.parents[1] / "tracker-workspace" / "QCC-101" / "track.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "status": "running", "pid": 2 ** 22 + 1}))
    r = invoke("track-log", "QCC-101", "--root", tmp_path / "root", "--follow")  # killed: said, not "done"
    assert r.exit_code == FAILED and "interrupted before it finished" in r.output, r.output
    r = invoke("track-log", "QCC-999", "--root", tmp_path / "root")
    assert r.exit_code == USAGE and "no <author>/tracker-workspace/QCC-999" in r.output


def test_ticket_serve_report_exit_codes(tmp_path):
    r = invoke("ticket", "QCC-102", "--status", "完了", "--root", tmp_path / "typo", env={})
    assert r.exit_code == USAGE and "no such folder" in r.output and not (tmp_path / "typo").exists()
    r = invoke("serve", "--root", tmp_path, "--port", 99999, env={})
    assert r.exit_code == USAGE and "65535" in r.output and "Traceback" not in r.output, r.output
    r = invoke("ticket", "QCC-102", "--status", "完了", "--root", tmp_path, env={"KIRINUKI_GOOGLE_CREDENTIALS": ""})
    assert r.exit_code == FAILED and "kept in" in r.output  # not sent: waits in the outbox
    r = invoke("ticket", "QCC-102", "--priority", "urgent", "--root", tmp_path)
    assert r.exit_code == USAGE and "is not one of" in r.output
    r = invoke("serve", "--root", tmp_path, "--port", "0", env={USER_ENV: "kana", PASSWORD_ENV: "a"})
    assert r.exit_code == USAGE and "too weak" in r.output
    r = invoke("report-pr", "--report", tmp_path / "none.json", "--pr", "1", "--sha", "a" * 40, "--repo", "a/b",
               env={"GITHUB_TOKEN": ""})
    assert r.exit_code == USAGE and "GITHUB_TOKEN is not set" in r.output


def test_an_unexpected_error_exits_1_with_a_redacted_traceback(capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_unexpectedly0123456789abcdef")
    crash = _Kirinuki(add_completion=False, pretty_exceptions_enable=False)

    @crash.command()
    def boom():
        raise RuntimeError("the server said: token ghp_unexpectedly0123456789abcdef is wrong")

    @crash.command()
    def ok():
        typer.echo("fine")

    with pytest.raises(SystemExit) as e:
        crash(["boom"], prog_name="kirinuki")
    err = capsys.readouterr().err
    assert e.value.code == FAILED and "RuntimeError" in err and "[redacted]" in err
    assert "ghp_unexpectedly" not in err


def test_params_file_from_another_directory(tmp_path, tiny_model, monkeypatch):
    """-p /abs/path/params.yaml: every path in it is relative to the params file, wherever the
    command runs (model, splitter: null)."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    shutil.copy(tiny_model, project / "models" / "tiny.onnx")
    shutil.copy(tiny_model.with_suffix(".json"), project / "models" / "tiny.json")
    (project / "params.yaml").write_text(yaml.safe_dump({"extract": {
        "model": "models/tiny.onnx", "input_size": TINY_SIZE, "splitter": None, "head_splitter": None}}))
    pages = project / "pages"
    pages.mkdir()
    Image.fromarray(two_figures()).save(pages / "p1.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = invoke("extract", "../project/pages", "-o", "out", "-p", (project / "params.yaml").absolute(), "--no-progress")
    assert r.exit_code == 0, r.output
    assert (elsewhere / "out" / "p1" / "page.json").is_file() and not (project / "out").exists()
