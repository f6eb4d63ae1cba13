"""Secrets never leak: known fake secrets (a fresh RSA key in a service-account JSON, GitHub and
Pushover tokens, the dashboard password) are set, every command that can touch them (track,
ticket, report-pr, notify through track, serve) runs through its failure paths against hostile
local servers that echo everything they receive back in their errors, and every output and every
file written is searched for the secrets. Credentials are accepted as a path, inline JSON,
quoted JSON and base64; anything else is a one-line error that shows none of the value."""
from __future__ import annotations

import base64
import json
import os
import secrets as random_secrets
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kirinuki.core.config import CompareParams, SheetsParams
from kirinuki.qc.compare import decide_gate, paired_compare
from kirinuki.core.secrets import CredentialsError, parse_credentials, redact, redact_obj
from kirinuki.core.secrets import CREDENTIALS_ENV
from kirinuki.publish.tickets import Ticket, publish_tickets

import localhttp
from conftest import TINY_SIZE
from fake_github import FakeGitHub
from fake_sheets import FakeGoogle, service_account
from works import make_work

CLI = [sys.executable, "-m", "kirinuki.cli"]


class Echo:
    """A hostile server: answers every request with `status` and a body that repeats the
    request's headers and body (as some services do in their error messages)."""

    def __init__(self, status: int = 401):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                echo.requests.append((self.command, self.path, dict(self.headers), body))
                said = f"{dict(self.headers)} {body.decode(errors='replace')}"
                reply = json.dumps({"error": "invalid_grant", "error_description": f"rejected: {said}",
                                    "message": f"Bad credentials: {said}", "status": 0,
                                    "errors": [f"token invalid: {said}"]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = localhttp.start(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        localhttp.stop(self.server)


@pytest.fixture(scope="module")
def fake():
    """The fake secrets: a service-account JSON with a fresh private key, tokens, a password."""
    info, public = service_account("http://127.0.0.1:9/token")
    info["private_key_id"] = random_secrets.token_hex(20)
    pem = info["private_key"]
    body_lines = [line for line in pem.splitlines() if line and "PRIVATE KEY" not in line]
    github = "ghp_" + random_secrets.token_urlsafe(27).replace("-", "a").replace("_", "b")
    token, user = random_secrets.token_hex(15), random_secrets.token_hex(15)
    password = "dash-" + random_secrets.token_urlsafe(18)
    raw = json.dumps(info)
    values = {"github": github, "pushover_token": token, "pushover_user": user, "password": password,
              "key_id": info["private_key_id"], "basic": base64.b64encode(f"kana:{password}".encode()).decode(),
              "b64_credentials": base64.b64encode(raw.encode()).decode(),
              **{f"key_line_{i}": line for i, line in enumerate(body_lines)}}
    env = {"GITHUB_TOKEN": github, "KIRINUKI_PUSHOVER_TOKEN": token, "KIRINUKI_PUSHOVER_USER": user,
           "KIRINUKI_DASHBOARD_USER": "kana", "KIRINUKI_DASHBOARD_PASSWORD": password}
    return {"info": info, "public": public, "raw": raw, "values": values, "env": env}


def base_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIRINUKI_", "GITHUB_"))}
    return {**env, **extra}


def leaks(text: str | bytes, fake) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in fake["values"].items() if value.encode() in data]


def file_leaks(root: Path, fake, skip=()) -> dict[str, list[str]]:
    found = {}
    for p in root.rglob("*"):
        if p.is_file() and p not in skip:
            hit = leaks(p.read_bytes(), fake)
            if hit:
                found[str(p)] = hit
    return found


# --- the redaction itself -------------------------------------------------------------------

def test_redact_hides_env_values_keys_and_tokens(fake):
    env = {**fake["env"], CREDENTIALS_ENV: fake["raw"]}
    v = fake["values"]
    text = (f"failed: {fake['raw']} / {json.dumps(fake['info'])} / {fake['info']['private_key']} / "
            f"Authorization: Basic {v['basic']} / token={v['pushover_token']}&user={v['pushover_user']} / "
            f"{v['github']} / ya29.a0AfH6SMBxyzxyzxyzxyz / {v['key_line_3']}")
    out = redact(text, env)
    assert leaks(out, fake) == [] and "ya29." not in out and "BEGIN PRIVATE KEY" not in out
    assert out.startswith("failed: [redacted]")
    # ordinary text stays as it is
    plain = "set KIRINUKI_PUSHOVER_TOKEN and KIRINUKI_PUSHOVER_USER to send one; page_timeout_s = 0.05"
    assert redact(plain, env) == plain
    state = redact_obj({"summary": f"see {v['github']}", "errors": [v["password"]], "pages": 3}, env)
    assert state == {"summary": "see [redacted]", "errors": ["[redacted]"], "pages": 3}
    # a secret in os.environ is hidden even where a caller passes its own env
    assert redact(f"x {v['pushover_token']}", {}) == f"x {v['pushover_token']}"


def test_credentials_accept_every_spelling_and_refuse_the_rest(fake, tmp_path):
    info, raw = fake["info"], fake["raw"]
    google = FakeGoogle(fake["public"], {"tickets": [["ID"]]})
    try:
        info = {**info, "token_uri": f"{google.url}/token"}
        raw = json.dumps(info)
        path = tmp_path / "outside" / "sa.json"
        path.parent.mkdir()
        path.write_text(raw)
        params = SheetsParams(spreadsheet_key="sheet-key", api_base=google.url, backoff_s=0.01, retries=1)
        spellings = {"path": str(path), "inline": raw, "single-quoted": f"'{raw}'", "double-quoted": json.dumps(raw),
                     "base64": base64.b64encode(raw.encode()).decode(), "padded": f"  {raw}\n",
                     "urlsafe base64": base64.urlsafe_b64encode(raw.encode()).decode()}
        for i, (name, value) in enumerate(spellings.items()):
            assert parse_credentials(value)[0]["client_email"] == info["client_email"], name
            r = publish_tickets([Ticket(f"QCC-{i:03d}", at="t", status="着手前")], params, tmp_path / f"o{i}.jsonl",
                                env={CREDENTIALS_ENV: value})
            assert r.sent == 1, (name, r.message)
    finally:
        google.close()
    bad = {"garbage": "not-a-credential-" + fake["values"]["key_line_2"],
           "truncated base64": fake["values"]["b64_credentials"][:-40],
           "broken JSON": raw[:-10], "long": "x" * 10_000, "a list": "[1, 2]"}
    for name, value in bad.items():
        with pytest.raises(CredentialsError) as e:
            parse_credentials(value)
        message = str(e.value)
        assert "\n" not in message and leaks(message, fake) == [], name
        assert value[:12] not in message, name
    with pytest.raises(CredentialsError, match="no such file"):
        parse_credentials(str(tmp_path / "missing.json"))


# --- every command through its failure paths ---------------------------------------------------

def run(args, env, cwd=None, timeout=120):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.mark.slow
def test_no_command_leaks_a_secret(fake, tmp_path, tiny_model):
    echo_sheets, echo_push, echo_gh = Echo(400), Echo(400), Echo(401)
    root = tmp_path / "root"
    outputs: list[tuple[str, str]] = []
    try:
        info = {**fake["info"], "token_uri": f"{echo_sheets.url}/token"}
        raw = json.dumps(info)
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump({
            "extract": {"model": str(tiny_model), "input_size": TINY_SIZE, "margin": 0.05, "splitter": None},
            "publish": {"sheets": {"spreadsheet_key": "sheet-key", "api_base": echo_sheets.url, "retries": 1,
                                   "backoff_s": 0.01, "timeout_s": 5},
                        "notify": {"pushover_url": echo_push.url, "timeout_s": 5, "attach_best": 1}}},
            allow_unicode=True))
        work = make_work(root, n_pages=2)
        (work / "broken.png").write_bytes(b"\x89PNG\r\n")  # one failing page
        summary = f"ep.1 (token {fake['values']['github']})"  # a user pastes a secret into a field

        spellings = {"quoted": f"'{raw}'", "double-quoted": json.dumps(raw),
                     "base64": base64.b64encode(raw.encode()).decode(), "inline": raw,
                     "garbage": "oops" + fake["values"]["key_line_1"], "too long": raw.replace("{", "x") * 20}
        for name, value in spellings.items():
            env = base_env({**fake["env"], CREDENTIALS_ENV: value})
            r = run(["ticket", "QCC-001", "--status", "対応中", "--summary", summary, "--root", str(root),
                     "-p", str(params)], env)
            outputs.append((f"ticket {name}", r.stdout + r.stderr))
            assert r.returncode == 1 and "kept in" in r.stdout, (name, r.stdout, r.stderr)  # queued, not lost
            assert "Traceback" not in r.stderr, (name, r.stderr)
            if name in ("garbage", "too long"):
                assert "the value is not shown" in r.stdout, r.stdout
            else:  # taken for credentials: it got as far as the token endpoint
                assert "the value is not shown" not in r.stdout and "invalid_grant" in r.stdout, (name, r.stdout)

        env = base_env({**fake["env"], CREDENTIALS_ENV: f"'{raw}'"})
        r = run(["track", "QCC-011", "--input", str(work), "-p", str(params), "--summary", summary], env)
        outputs.append(("track", r.stdout + r.stderr))
        assert r.returncode == 1, r.stderr  # one page failed: listed, exit 1
        assert "notification failed: HTTP 400" in r.stderr and "ticket sheet not updated" in r.stderr
        assert any(b"token=" in body or b"token" in body for _, _, _, body in echo_push.requests)  # it was sent

        # report-pr: GitHub refuses and echoes the token; then a real exchange whose report holds secrets
        report = tmp_path / "compare.json"
        result = gate_report()
        result["gate"]["reasons"].append(f"leaked {fake['values']['password']}")
        result["verdict"] = f"regressed {fake['values']['github']}"
        report.write_text(json.dumps(result))
        r = run(["report-pr", "--report", str(report), "--pr", "5", "--sha", "a" * 40, "--repo", "acme/kirinuki",
                 "--server-url", echo_gh.url], base_env(fake["env"]))
        outputs.append(("report-pr refused", r.stdout + r.stderr))
        assert r.returncode == 1 and "Bad credentials" in r.stderr and "Traceback" not in r.stderr, r.stderr
        with FakeGitHub("acme", "kirinuki", pr=5, token=fake["values"]["github"]) as gh:
            r = run(["report-pr", "--report", str(report), "--pr", "5", "--sha", "a" * 40, "--repo", "acme/kirinuki",
                     "--server-url", gh.url, "--run-url", f"https://ci/?token={fake['values']['pushover_token']}"],
                    base_env(fake["env"]))
            outputs.append(("report-pr posted", r.stdout + r.stderr))
            assert r.returncode == 0, r.stderr
            posted = json.dumps([c["body"] for c in gh.comments] + [s["description"] for s in gh.statuses])
            assert "[redacted]" in posted and leaks(posted, fake) == []
        r = run(["report-pr", "--report", str(report), "--pr", "5", "--sha", "a" * 40, "--repo", "acme/kirinuki",
                 "--server-url", echo_gh.url], base_env({}))
        assert r.returncode == 2 and "GITHUB_TOKEN is not set" in r.stderr  # a configuration error

        # serve: a weak password is refused without being shown; a served one never reaches the log
        weak = base_env({"KIRINUKI_DASHBOARD_USER": "kana", "KIRINUKI_DASHBOARD_PASSWORD": "hunter2"})
        r = run(["serve", "--root", str(root), "--port", "0"], weak)
        assert r.returncode == 2 and "too weak" in r.stderr and "hunter2" not in r.stderr + r.stdout
        outputs.append(("serve", serve_and_probe(root, fake)))
    finally:
        for server in (echo_sheets, echo_push, echo_gh):
            server.close()

    for name, text in outputs:
        assert leaks(text, fake) == [], (name, leaks(text, fake), text[-2000:])
    assert file_leaks(tmp_path, fake, skip={report}) == {}  # compare.json: the hostile input itself
    served = outputs[-1][1]
    assert "Traceback" not in served and served.count('"GET ') == 5 and " 401" in served, served
    state = json.loads((root / "aoki" / "tracker-workspace" / "QCC-011" / "track.json").read_text())
    assert "[redacted]" in state["summary"]
    outbox = (root / ".kirinuki-outbox.jsonl").read_text()
    assert "[redacted]" in outbox and "QCC-011" in outbox and "QCC-001" in outbox


def gate_report() -> dict:
    """A real compare report with its gate, as `kirinuki compare` writes it."""
    base = [0.50, 0.62, 0.71, 0.40, 0.83, 0.55, 0.66, 0.90]
    names = [f"p{i}" for i in range(len(base))]
    r = paired_compare(pd.DataFrame({"image": names, "instance_iou": base}),
                       pd.DataFrame({"image": names, "instance_iou": [b - 0.1 for b in base]}),
                       CompareParams(metrics=["instance_iou"], n_boot=200))
    r.update(baseline_source="origin/main", candidate_source="metrics/per_image.csv", floors=None,
             gate=decide_gate(r, None))
    return r


def serve_and_probe(root: Path, fake) -> str:
    """Run `kirinuki serve`, send it wrong logins, a password in the URL and an early disconnect,
    stop it; return everything it printed."""
    env = base_env(fake["env"])
    # SIGINT as a terminal gives it: a shell running these tests as a background job ignores
    # SIGINT, and the server would inherit that (Python then installs no KeyboardInterrupt)
    proc = subprocess.Popen([*CLI, "serve", "--root", str(root), "--port", "0", "--idle-timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        password = fake["values"]["password"]
        wrong = base64.b64encode(f"kana:{password}x".encode()).decode()
        for target, auth in [("/", f"Basic {wrong}"), (f"/?password={password}", None),
                             (f"/tracker/QCC-011/{password}", f"Basic {fake['values']['basic']}"),
                             ("/", f"Basic {fake['values']['basic']}")]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                head = f"GET {target} HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: {auth}\r\n" if auth else "")
                s.sendall((head + "Connection: close\r\n\r\n").encode())
                while s.recv(65536):
                    pass
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # gone before the answer
            s.sendall(f"GET / HTTP/1.1\r\nAuthorization: Basic {fake['values']['basic']}\r\n\r\n".encode())
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    return out + err
