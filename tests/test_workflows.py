"""The GitHub Actions workflows: linted by actionlint (with shellcheck for the `run:` scripts,
both from the dev extra), and the PR workflow holds every QC step the project relies on."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = str(Path(sys.executable).parent)  # the venv's scripts, also when it is not activated
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
ACTIONLINT = shutil.which("actionlint", path=ENV["PATH"])


def actionlint(*files):
    return subprocess.run([ACTIONLINT, "-no-color", *map(str, files)], capture_output=True, text=True, env=ENV)


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (dev extra, Linux x86-64)")
def test_workflows_pass_actionlint():
    assert WORKFLOWS
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (dev extra, Linux x86-64)")
def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.pull_request.nope.title }}\n      - uses: actions/checkout\n")
    done = actionlint(bad)
    assert done.returncode == 1 and "bad.yml" in done.stdout


def test_pr_workflow_runs_every_qc_step():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "qc.yml").read_text())
    assert "pull_request" in wf[True]  # YAML 1.1 reads the key `on` as True
    assert {"pull-requests": "write", "statuses": "write"}.items() <= wf["permissions"].items()
    steps = wf["jobs"]["qc"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    for command in ("make assets", "pytest -q --ignore=tests/test_golden.py", "pytest -q tests/test_golden.py",
                    "dvc repro", "git status --porcelain", 'make gate BASE="origin/$BASE"',
                    'dvc metrics diff "origin/$BASE" --md', "kirinuki report-pr", '--dashboard-url "$DASHBOARD_URL"'):
        assert command in runs, command
    assert "make backends" not in runs  # CUDA torch (~6 GB) stays off the PR path
    report = next(s for s in steps if "report-pr" in s.get("run", ""))
    assert report["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert report["if"].startswith("${{ !cancelled()")  # a cancelled run posts nothing
    assert report["env"]["DASHBOARD_URL"] == "${{ steps.dashboard.outputs.artifact-url }}"
    venv = next(s for s in steps if s.get("with", {}).get("path") == ".venv")
    assert "hashFiles('constraints.txt'" in venv["with"]["key"]
    gate = next(s for s in steps if s.get("id") == "gate")
    assert gate["continue-on-error"] and steps[-1]["if"] == "steps.gate.outcome == 'failure'"


def test_actions_are_pinned_by_sha_and_kept_current_by_dependabot():
    for wf in WORKFLOWS:
        text = wf.read_text()
        assert "always()" not in text and "cache: pip" not in text, wf.name
        for step in (s for job in yaml.safe_load(text)["jobs"].values() for s in job["steps"]):
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), f"{wf.name}: {step['uses']}"
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {"package-ecosystem": "github-actions", "directory": "/"}.items() <= dependabot["updates"][0].items()
