"""PR reporting through github3.py against a real HTTP server on 127.0.0.1 (tests/fake_github.py)."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from kirinuki.cli import app
from kirinuki.qc.compare import decide_gate, paired_compare
from kirinuki.core.config import CompareParams
from kirinuki.publish.pr_report import (MARKER, MAX_COMMENT, ReportError, comment_body, commit_status, connect, publish,
                                read_report)

from fake_github import FakeGitHub

TOKEN = "ghs_test-token-0123456789"
SHA1, SHA2 = "a" * 40, "b" * 40
DIFF_TABLE = ("| Path | Metric | HEAD | workspace | Change |\n|---|---|---|---|---|\n"
              "| metrics/validate.json | instance_miou | 0.3971 | 0.2525 | -0.1446 |\n")


def result(shift: float, floors=None) -> dict:
    base = [0.50, 0.62, 0.71, 0.40, 0.83, 0.55, 0.66, 0.90, 0.35, 0.77]
    params = CompareParams(metrics=["instance_iou"], n_boot=200)
    r = paired_compare(pd.DataFrame({"image": [f"p{i}" for i in range(10)], "instance_iou": base}),
                       pd.DataFrame({"image": [f"p{i}" for i in range(10)],
                                     "instance_iou": [b + shift * (1 + i % 3) for i, b in enumerate(base)]}), params)
    r.update(baseline_source="origin/main", candidate_source="metrics/per_image.csv",
             floors=floors and {"thresholds": "qc/thresholds.yaml", "summary": "validate.json", "checks": floors},
             gate=decide_gate(r, floors))
    return r


@pytest.fixture
def github():
    with FakeGitHub("acme", "kirinuki", pr=5, token=TOKEN, page_size=2) as gh:
        for n in range(3):  # two pages of other people's comments before ours
            gh.add_comment(f"looks good {n}")
        yield gh


def post(gh, res, sha, diff=DIFF_TABLE):
    state, description = commit_status(res)
    return publish(connect(gh.url, TOKEN), "acme/kirinuki", 5, sha, comment_body(res, diff, sha, "https://ci/run/1"),
                   state, description, "kirinuki/qc", "https://ci/run/1")


def test_one_sticky_comment_edited_on_each_push(github):
    assert post(github, result(-0.05), SHA1) == "created"
    ours = [c for c in github.comments if MARKER in c["body"]]
    assert len(github.comments) == 4 and len(ours) == 1
    assert "❌ failed" in ours[0]["body"] and "instance_iou is worse" in ours[0]["body"]
    assert "| metrics/validate.json | instance_miou | 0.3971 | 0.2525 | -0.1446 |" in ours[0]["body"]
    assert github.statuses[-1]["sha"] == SHA1 and github.statuses[-1]["state"] == "failure"
    assert github.statuses[-1]["context"] == "kirinuki/qc" and github.statuses[-1]["target_url"] == "https://ci/run/1"

    github.add_comment("a reviewer's reply")  # ours is no longer last, and on page 2 of 3
    assert post(github, result(0.05), SHA2) == "updated"
    ours = [c for c in github.comments if MARKER in c["body"]]
    assert len(github.comments) == 5 and len(ours) == 1  # edited, not duplicated
    assert "✅ passed" in ours[0]["body"] and "Commit bbbbbbb" in ours[0]["body"]
    assert ("PATCH", f"/api/v3/repos/acme/kirinuki/issues/comments/{ours[0]['id']}") in github.requests
    assert [s["state"] for s in github.statuses] == ["failure", "success"]
    assert set(github.auth_headers) == {f"token {TOKEN}"}


def test_no_report_posts_an_error_status(github, tmp_path):
    res = read_report(tmp_path / "missing.json")
    assert res is None
    post(github, res, SHA1, diff=None)
    assert github.statuses[-1]["state"] == "error"
    assert "no report" in [c for c in github.comments if MARKER in c["body"]][0]["body"]


def test_bad_token_is_a_one_line_error_without_the_token(github):
    with pytest.raises(ReportError) as e:
        publish(connect(github.url, "wrong"), "acme/kirinuki", 5, SHA1, "x", "success", "ok", "kirinuki/qc")
    assert str(e.value) == "GitHub API: GET /api/v3/repos/acme/kirinuki: 401 Bad credentials"
    with pytest.raises(ReportError, match="GITHUB_TOKEN is not set"):
        connect(github.url, "")
    with pytest.raises(ReportError, match="not an owner/name"):
        publish(connect(github.url, TOKEN), "kirinuki", 5, SHA1, "x", "success", "ok", "kirinuki/qc")


def test_unreachable_server_is_a_one_line_error():
    with FakeGitHub("acme", "kirinuki", pr=5, token=TOKEN) as gh:
        url = gh.url
    with pytest.raises(ReportError, match="GitHub API: ConnectionError"):
        publish(connect(url, TOKEN), "acme/kirinuki", 5, SHA1, "x", "success", "ok", "kirinuki/qc")


def test_status_and_comment_text():
    assert commit_status(result(-0.05)) == ("failure", "QC failed: instance_iou regressed")
    assert commit_status(result(0.05)) == ("success", "QC passed: improved")
    floors = [{"metric": "recall", "value": 0.2, "op": ">=", "limit": 0.35, "ok": False},
              {"metric": "precision", "value": 0.5, "op": ">=", "limit": 0.3, "ok": True},
              {"metric": "empty_page_fp_rate", "value": None, "op": "<=", "limit": 0.8, "ok": False}]
    assert commit_status(result(-0.05, floors)) == (
        "failure", "QC failed: instance_iou regressed; floors breached: recall, empty_page_fp_rate")
    body = comment_body(result(0.0), "", SHA1, None)
    assert body.startswith(MARKER) and "No metric differs from the base branch." in body
    assert "<details>" in body and "Sample size" in body and "workflow run" not in body and "dashboard" not in body
    linked = comment_body(result(0.0), "", SHA1, "https://run", "https://run/artifacts/7")
    assert "[workflow run](https://run)" in linked and "[dashboard of this run](https://run/artifacts/7)" in linked
    long = result(0.0)
    long["only_candidate"] = [f"page_{i:05d}_with_a_long_name" for i in range(3000)]
    long["reason"] = "x" * 70_000
    body = comment_body(long, DIFF_TABLE, SHA1, None)
    assert len(body) <= MAX_COMMENT and "too long for a comment" in body and DIFF_TABLE.strip() in body


def test_read_report_rejects_what_is_not_a_gate_report(tmp_path):
    bad = tmp_path / "compare.json"
    bad.write_text("{")
    with pytest.raises(ReportError, match="compare.json: not a readable compare report"):
        read_report(bad)
    bad.write_text(json.dumps({"verdict": "improved"}))
    with pytest.raises(ReportError, match="not a compare report with a gate"):
        read_report(bad)


def test_cli_report_pr(github, tmp_path, monkeypatch):
    report, diff = tmp_path / "compare.json", tmp_path / "diff.md"
    report.write_text(json.dumps(result(-0.05)))
    diff.write_text(DIFF_TABLE)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/kirinuki")
    args = ["report-pr", "--report", str(report), "--pr", "5", "--sha", SHA1, "--metrics-diff", str(diff),
            "--server-url", github.url]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "comment created, status failure" in r.output and TOKEN not in r.output
    r = CliRunner().invoke(app, args)
    assert "comment updated" in r.output and sum(MARKER in c["body"] for c in github.comments) == 1
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "401 Bad credentials" in r.output and "wrong" not in r.output
