"""The DVC pipeline end to end in a scratch git repo: real `dvc repro`, real HTTP model fetch,
real int8 quantization of it.

Uses the repo's own dvc.yaml, stages/ and params.yaml, with a tiny model served from
127.0.0.1 and a few small synthetic pages, so it runs in well under a minute.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kirinuki.core.config import SynthParams
from kirinuki.core.cards import sha256_file
from kirinuki.synth.dataset import write_dataset

from conftest import TINY_SIZE, build_tiny_isnet, serve_directory

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
# stages call `kirinuki` and `python`: make them this interpreter's, venv or not
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def model_server(tmp_path):
    served = tmp_path / "served"
    build_tiny_isnet(served / "tiny.onnx")
    with serve_directory(served) as base:
        yield f"{base}/tiny.onnx", sha256_file(served / "tiny.onnx")


def run(cmd, cwd, check=True):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{done.stdout}\n{done.stderr}")
    return done


def git(repo, *args):
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo)


def set_param(repo, section, key, value):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


@pytest.fixture
def repo(tmp_path, model_server):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", "stages", "src", ".gitignore"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / name)
    url, sha = model_server
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["model"]["sources"] = [{"name": "tiny", "kind": "url", "location": url, "sha256": sha,
                              "mean": [0.5] * 3, "std": [1.0] * 3, "letterbox": False}]
    p["extract"]["input_size"] = TINY_SIZE
    p["compare"]["min_pairs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (repo / "qc").mkdir()
    (repo / "qc" / "thresholds.yaml").write_text("{}\n")  # the real floors are for the real model
    (repo / "qc" / "reviews.jsonl").write_text("")  # nobody reviewed the tiny model's cut-outs
    write_dataset(SynthParams(authors=["aoki"], pages_per_author=4, width=192, height=256), repo / "data")
    git(repo, "init", "-q")
    run(DVC + ["init", "-q"], repo)
    return repo


def test_repro_reruns_only_what_changed_and_metrics_diff(repo):
    out = run(DVC + ["repro"], repo).stdout
    for stage in ("model", "quantize", "extract", "score", "validate", "compare", "publish", "export"):
        assert f"Running stage '{stage}'" in out
    assert json.loads((repo / "runs/dataset/manifest.json").read_text())["summary"]["layouts"] == ["kohya", "ai-toolkit", "hf"]
    metrics = json.loads((repo / "metrics/validate.json").read_text())
    assert metrics["n_images"] == 4
    assert json.loads((repo / "metrics/compare.json").read_text())["verdict"] == "no baseline"
    card = json.loads((repo / "models/isnet.json").read_text())
    assert card["source"] == "tiny" and len(card["sha256"]) == 64
    int8 = json.loads((repo / "models/isnet.int8.json").read_text())  # what extract ran
    assert int8["source_sha256"] == card["sha256"] and int8["calibration"]["count"] == 8  # the pages shipped with kirinuki
    records = (repo / "runs/extract/records.jsonl").read_text().splitlines()
    assert records and all(json.loads(r)["model_sha256"] == int8["sha256"] for r in records)
    dashboard = (repo / "runs/publish/dashboard/index.html").read_text()  # published, the ticket queued offline
    assert "KRN-SAMPLE" in dashboard and "no sheet configured" in out
    assert json.loads((repo / "runs/publish/.kirinuki-outbox.jsonl").read_text().splitlines()[0])["id"] == "KRN-SAMPLE"
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")

    out = run(DVC + ["repro"], repo).stdout
    assert "Running stage" not in out  # nothing to do, and nothing reported as changed
    assert json.loads(run(DVC + ["status", "--json"], repo).stdout) == {}
    # what a fresh clone does: every output made again, byte for byte, so the lock file holds
    shutil.rmtree(repo / "runs")
    shutil.rmtree(repo / ".dvc" / "cache")  # no cached outputs, no run cache
    for f in (repo / "models").glob("isnet*.onnx"):
        f.unlink()
    out = run(DVC + ["repro"], repo).stdout
    assert "Running stage 'extract'" in out and "Running stage 'publish'" in out
    assert git(repo, "status", "--porcelain").stdout == ""
    assert json.loads(run(DVC + ["status", "--json"], repo).stdout) == {}

    set_param(repo, "score", "train_resolution", 64)  # a score-only change
    status = json.loads(run(DVC + ["status", "--json"], repo).stdout)
    assert "score" in status and "extract" not in status
    out = run(DVC + ["repro"], repo).stdout
    assert "Running stage 'extract'" not in out and "Running stage 'score'" in out

    set_param(repo, "extract", "min_area", 0.9)  # an extract change: no character is that big
    run(DVC + ["repro"], repo)
    diff = json.loads(run(DVC + ["metrics", "diff", "HEAD", "--json"], repo).stdout)
    assert "union_miou" in diff["metrics/validate.json"]


def test_experiments_run_show_diff_and_apply(repo):
    run(DVC + ["repro"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    out = run(DVC + ["exp", "run", "-S", "extract.threshold=0.45", "-n", "thr045"], repo).stdout
    assert "Running stage 'extract'" in out and "Running stage 'model'" not in out
    shown = run(DVC + ["exp", "show", "--csv"], repo).stdout
    assert "thr045" in shown
    diff = json.loads(run(DVC + ["exp", "diff", "HEAD", "thr045", "--json"], repo).stdout)
    changed = diff["params"]["params.yaml"]["extract.threshold"]
    assert (changed["old"], changed["new"]) == (0.5, 0.45)
    run(DVC + ["exp", "apply", "thr045"], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["extract"]["threshold"] == 0.45
