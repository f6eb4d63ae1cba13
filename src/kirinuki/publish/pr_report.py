"""The QC result on a pull request: one sticky comment and a commit status (github3.py).

The comment carries a hidden marker; on every push it is found again and edited, so a pull
request holds one QC comment however often it is checked. The token comes from the
environment and is never printed. `server_url` https://github.com talks to github.com;
any other URL is a GitHub Enterprise server (its API under /api/v3), which is also how the
tests point the client at a local HTTP server.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import github3
from github3.exceptions import GitHubError, GitHubException

from kirinuki.core.config import GITHUB_COM
from kirinuki.core.secrets import GITHUB_TOKEN_ENV, redact
from kirinuki.qc.compare import to_markdown

MARKER = "<!-- kirinuki-qc -->"  # finds our comment again
MAX_COMMENT = 65_000  # GitHub refuses comments longer than 65,536 characters
MAX_DESCRIPTION = 140  # GitHub's limit for a commit status description


class ReportError(Exception):
    """The report cannot be read or published; str() is a one-line reason."""


class ReportUsageError(ReportError):
    """What the command was given cannot work (no token, a bad repository name, an unreadable
    report): exit code 2, where a refusal or failure of GitHub is 1."""


# --- pure functions -------------------------------------------------------------------------

def commit_status(result: Optional[dict]) -> tuple[str, str]:
    """(state, description) of the commit status for a compare result (None: no report)."""
    if result is None:
        return "error", "QC produced no report: the pipeline failed before the gate"
    if result["gate"]["passed"]:
        return "success", f"QC passed: {result['verdict']}"
    worse = [m for m, r in result["metrics"].items() if r.get("verdict") == "regressed"]
    breached = [c["metric"] for c in (result.get("floors") or {}).get("checks", []) if not c["ok"]]
    parts = ([f"{', '.join(worse)} regressed"] if worse else []) + \
        ([f"floors breached: {', '.join(breached)}"] if breached else [])
    return "failure", _clip("QC failed: " + "; ".join(parts), MAX_DESCRIPTION)


def comment_body(result: Optional[dict], metrics_diff: Optional[str], sha: str, run_url: Optional[str],
                 dashboard_url: Optional[str] = None) -> str:
    """Markdown of the sticky comment: verdict and reasons, the `dvc metrics diff` table,
    then the full compare report folded away. Starts with MARKER."""
    footer = f"<sub>Commit {sha[:7]}" + (f" · [workflow run]({run_url})" if run_url else "") + \
        (f" · [dashboard of this run]({dashboard_url})" if dashboard_url else "") + \
        " · this comment is updated on every push</sub>"
    if result is None:
        return "\n".join([MARKER, "## Kirinuki QC: ⚠️ no report", "",
                          "The QC job stopped before the gate ran; see the workflow log.", "", footer]) + "\n"
    gate = result["gate"]
    head = [
        MARKER,
        f"## Kirinuki QC: {'✅ passed' if gate['passed'] else '❌ failed'} · statistics: {result['verdict']}",
        "",
        *[f"- {reason}" for reason in gate["reasons"]],
        "",
        f"### Metrics vs `{result.get('baseline_source', 'base')}` (`dvc metrics diff`)",
        "",
        (metrics_diff or "").strip() or "No metric differs from the base branch.",
        "",
    ]
    details = ["<details><summary>Paired statistics and floors</summary>", "", to_markdown(result), "</details>", ""]
    body = "\n".join(head + details + [footer]) + "\n"
    if len(body) > MAX_COMMENT:  # keep the verdict, reasons and table; drop the long report
        body = "\n".join(head + ["(The full report is too long for a comment: see the workflow artifacts.)", "",
                                 footer]) + "\n"
    return _clip(body, MAX_COMMENT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- I/O edge -----------------------------------------------------------------------------

def read_report(path: Path) -> Optional[dict]:
    """compare.json as a dict; None when the file does not exist (the gate never ran)."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReportUsageError(f"{path}: not a readable compare report ({e.__class__.__name__})") from None
    if not isinstance(result, dict) or "gate" not in result:
        raise ReportUsageError(f"{path}: not a compare report with a gate (run `kirinuki compare` first)")
    return result


def connect(server_url: str, token: str) -> github3.GitHub:
    """A github3 client for github.com or, for any other URL, a GitHub Enterprise server."""
    if not token:
        raise ReportUsageError(f"{GITHUB_TOKEN_ENV} is not set: no token to talk to GitHub with")
    if server_url.rstrip("/") == GITHUB_COM:
        return github3.GitHub(token=token)
    return github3.GitHubEnterprise(server_url, token=token)


def publish(gh: github3.GitHub, repo: str, pr: int, sha: str, body: str, state: str, description: str,
            context: str, target_url: Optional[str] = None) -> str:
    """Upsert the sticky comment on pull request `pr` of `repo` ("owner/name") and set the
    commit status of `sha`. Returns "created" or "updated" (the comment)."""
    owner, _, name = repo.partition("/")
    if not owner or not name:
        raise ReportUsageError(f"{repo}: not an owner/name repository")
    body, description = redact(body), redact(description)  # nothing secret ever reaches a pull request
    try:
        repository = gh.repository(owner, name)
        issue = repository.issue(pr)  # a pull request's comments live on its issue
        mine = next((c for c in issue.comments() if MARKER in (c.body or "")), None)
        if mine is None:
            issue.create_comment(body)
            action = "created"
        else:
            mine.edit(body)
            action = "updated"
        repository.create_status(sha, state, target_url=target_url, description=description, context=context)
    except GitHubError as e:
        request = e.response.request
        raise ReportError(redact(f"GitHub API: {request.method} {request.path_url}: {e}")) from None
    except GitHubException as e:  # connection failures and the like
        raise ReportError(redact(f"GitHub API: {e.__class__.__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}")) from None
    return action
