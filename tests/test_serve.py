"""`kirinuki serve`: basic auth on everything, only dashboard folders, no path traversal."""
import base64
import json
import socket

import pytest

from kirinuki.core.imageio import read_jsonl
from kirinuki.core.cards import sha256_file
from kirinuki.publish.serve import PASSWORD_ENV, USER_ENV, ServeError, make_server

import localhttp
from works import tracked

ENV = {USER_ENV: "kana", PASSWORD_ENV: "s3cret pass phrase"}  # weak ones are refused (test_robustness)
AUTH = "Basic " + base64.b64encode(b"kana:s3cret pass phrase").decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("serve") / "root"
    ws, _ = tracked(root, tiny_model)
    (ws.dir / "secret.txt").write_text("not for the web")  # in the workspace, outside dashboard/
    (ws.dashboard / "escape.txt").symlink_to(ws.dir / "secret.txt")
    server = localhttp.start(make_server(root, "127.0.0.1", 0, env=ENV))
    yield server.server_port, ws
    localhttp.stop(server)


def raw_get(port: int, target: str, auth: str | None = AUTH) -> tuple[int, bytes]:
    """Send the request line exactly as given (clients would normalise `..` away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{f'Authorization: {auth}' + chr(13) + chr(10) if auth else ''}"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_refuses_to_start_without_credentials(tmp_path):
    with pytest.raises(ServeError, match="KIRINUKI_DASHBOARD_USER"):
        make_server(tmp_path, "127.0.0.1", 0, env={USER_ENV: "kana"})


def test_everything_needs_the_login(served):
    port, _ = served
    for target in ("/", "/tracker/QCC-011/", "/tracker/QCC-011/thumbs/aoki_ep1_00/1.png", "/nothing"):
        assert raw_get(port, target, auth=None)[0] == 401
    bad = "Basic " + base64.b64encode(b"kana:wrong").decode()
    assert raw_get(port, "/tracker/QCC-011/thumbs/aoki_ep1_00/1.png", auth=bad)[0] == 401
    assert raw_get(port, "/", auth="Basic !!notbase64")[0] == 401


def test_serves_dashboard_images_and_index(served):
    port, _ = served
    status, body = raw_get(port, "/tracker/QCC-011/")
    assert status == 200 and b'class="card"' in body
    status, body = raw_get(port, "/tracker/QCC-011/thumbs/aoki_ep1_00/1.png")
    assert status == 200 and body.startswith(b"\x89PNG")
    status, body = raw_get(port, "/")
    assert status == 200 and b'href="/tracker/QCC-011/"' in body
    assert raw_get(port, "/tracker/QCC-011")[0] == 301
    assert raw_get(port, "/tracker/NOPE-1/")[0] == 404


@pytest.mark.parametrize("target", [
    "/tracker/QCC-011/../track.json",
    "/tracker/QCC-011/../../../../../../etc/passwd",
    "/tracker/QCC-011/%2e%2e/track.json",
    "/tracker/QCC-011/%2E%2E%2Fsecret.txt",
    "/tracker/QCC-011/..%2f..%2fextract%2frecords.jsonl",
    "/tracker/%2e%2e/QCC-011/index.html",
    "/tracker/QCC-011/escape.txt",  # a symlink out of dashboard/
    "/tracker/QCC-011/.hidden",
    "/tracker/QCC-011/thumbs%5c..%5c..%5ctrack.json",
])
def test_path_traversal_is_rejected(served, target):
    status, body = raw_get(served[0], target)
    assert status == 404 and b"not for the web" not in body and b"tracker_id" not in body


# --- the review API -----------------------------------------------------------------------

API = "/tracker/QCC-011/api/reviews"


@pytest.fixture(scope="module")
def review_server(tmp_path_factory, tiny_model):
    """Two trackers of their own (the verdicts appended here stay out of `served`)."""
    root = tmp_path_factory.mktemp("review") / "root"
    ws, _ = tracked(root, tiny_model)
    tracked(root, tiny_model, tracker_id="QCC-012")
    server = localhttp.start(make_server(root, "127.0.0.1", 0, env=ENV))
    yield server.server_port, ws
    localhttp.stop(server)


def request(port: int, method: str, target: str, headers: dict | None = None, body: bytes = b"",
            auth: str | None = AUTH) -> tuple[int, dict, bytes]:
    """One raw HTTP request; -> (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}, payload


def get_api(port: int, target: str = API) -> dict:
    status, headers, body = request(port, "GET", target)
    assert status == 200 and headers["content-type"].startswith("application/json")
    return json.loads(body)


def post(port: int, payload, token: str | None, target: str = API, ctype: str = "application/json",
         origin: str | None = None, auth: str | None = AUTH, raw: bytes | None = None) -> tuple[int, dict]:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": ctype, "Content-Length": str(len(body))}
    if token is not None:
        headers["X-CSRF-Token"] = token
    if origin is not None:
        headers["Origin"] = origin
    status, _, answer = request(port, "POST", target, headers, body, auth=auth)
    try:
        return status, json.loads(answer)
    except ValueError:
        return status, {"raw": answer.decode(errors="replace")}


def a_cutout(ws, n: int = 0) -> tuple[dict, str, str]:
    """The n-th score record, its id `<image>/<k>` and the sha256 of its file."""
    r = sorted(read_jsonl(ws.extract / "scores.jsonl"), key=lambda r: (r["image"], r["k"]))[n]
    return r, f"{r['image']}/{r['k']}", sha256_file(ws.extract / r["image"] / f"char_{r['k']}.png")


def test_review_api_needs_the_login(review_server):
    port, ws = review_server
    assert request(port, "GET", API, auth=None)[0] == 401
    token = get_api(port)["csrf"]
    _, cutout, sha = a_cutout(ws)
    status, _ = post(port, {"cutout": cutout, "sha256": sha, "verdict": "approve"}, token, auth=None)
    assert status == 401
    bad = "Basic " + base64.b64encode(b"kana:wrong").decode()
    assert post(port, {"cutout": cutout, "sha256": sha, "verdict": "approve"}, token, auth=bad)[0] == 401
    assert not ws.reviews.exists()


def test_review_api_get_gives_token_reviews_and_counts(review_server):
    port, _ = review_server
    api = get_api(port)
    assert api["user"] == "kana" and len(api["csrf"]) == 64
    assert set(api["summary"]) == {"reviewed", "approved", "excluded", "wrong_grade", "grade_agreed"}
    assert get_api(port, "/tracker/QCC-012/api/reviews")["csrf"] != api["csrf"]  # one token per tracker
    status, _, body = request(port, "GET", "/tracker/NOPE-1/api/reviews")
    assert status == 404 and json.loads(body) == {"error": "no such tracker"}


def test_review_api_refuses_bad_posts(review_server):
    port, ws = review_server
    token = get_api(port)["csrf"]
    other = get_api(port, "/tracker/QCC-012/api/reviews")["csrf"]
    _, cutout, sha = a_cutout(ws)
    good = {"cutout": cutout, "sha256": sha, "verdict": "approve"}
    own = f"http://127.0.0.1:{port}"
    cases = [
        (403, post(port, good, None)),  # no token
        (403, post(port, good, "0" * 64)),  # a wrong one
        (403, post(port, good, other)),  # another tracker's
        (403, post(port, good, token, origin="http://evil.example")),  # cross-site
        (403, post(port, good, token, origin="null")),  # a file:// or sandboxed page
        (403, post(port, good, token, origin=f"http://127.0.0.1:{port + 1}")),
        (415, post(port, good, token, ctype="text/plain")),
        (415, post(port, good, token, ctype="application/x-www-form-urlencoded")),
        (400, post(port, good, token, raw=b"{not json")),
        (400, post(port, [good], token)),
        (400, post(port, {**good, "verdict": "maybe"}, token)),
        (400, post(port, {**good, "verdict": "wrong_grade", "reason": "  "}, token)),  # needs a reason
        (400, post(port, {**good, "sha256": 5}, token)),
        (404, post(port, {**good, "cutout": cutout.split("/")[0] + "/99"}, token)),
        (404, post(port, {**good, "cutout": "../extract/1"}, token)),
        (404, post(port, {**good, "cutout": ".hidden/1"}, token)),
        (404, post(port, {**good, "cutout": cutout.split("/")[0] + "/0"}, token)),
        (404, post(port, {**good, "cutout": "nope"}, token)),
        (404, post(port, good, token, target="/tracker/NOPE-1/api/reviews")),
        (409, post(port, {**good, "sha256": "0" * 64}, token)),
        (409, post(port, {**good, "sha256": "f" * 64}, token, origin=own)),
    ]
    for want, (status, answer) in cases:
        assert status == want, (want, status, answer)
        assert set(answer) == {"error"} and "\n" not in answer["error"], answer
    assert cases[-1][1][1] == {"error": "the cut-out changed since the page was loaded"}
    assert post(port, good, token, target="/tracker/QCC-011/index.html")[0] == 405
    assert post(port, good, token, target="/")[0] == 405
    assert not ws.reviews.exists()  # nothing refused was written


def test_review_api_refuses_an_oversize_body(review_server):
    port, ws = review_server
    token = get_api(port)["csrf"]
    headers = {"Content-Type": "application/json", "Content-Length": str(8 * 1024 + 1), "X-CSRF-Token": token}
    status, _, body = request(port, "POST", API, headers)  # the body is never sent: refused on its length
    assert status == 413 and "error" in json.loads(body)
    _, cutout, sha = a_cutout(ws)
    padded = json.dumps({"cutout": cutout, "sha256": sha, "verdict": "exclude", "pad": "x" * 9000}).encode()
    headers["Content-Length"] = str(len(padded))
    assert request(port, "POST", API, headers, padded)[0] == 413
    assert not ws.reviews.exists()


def test_review_api_appends_one_line_per_verdict(review_server, capsys):
    port, ws = review_server
    token = get_api(port)["csrf"]
    r0, cutout, sha = a_cutout(ws, 0)
    own = f"http://127.0.0.1:{port}"
    status, answer = post(port, {"cutout": cutout, "sha256": sha, "verdict": "approve"}, token, origin=own)
    assert status == 200, answer
    lines = ws.reviews.read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert (line["who"], line["cutout"], line["sha256"], line["verdict"], line["grade"]) == \
        ("kana", cutout, sha, "approve", r0["grade"])
    assert line["at"][:2] == "20"
    assert answer["cutout"] == cutout and answer["sha256"] == sha
    assert answer["review"]["decision"] == "approve" and answer["review"]["wrong_grade"] is None
    assert answer["review"]["who"] == "kana"
    assert answer["summary"]["reviewed"] == 1 and answer["summary"]["approved"] == 1
    assert answer["summary"]["grade_agreed"] == (1.0 if r0["lora_ok"] else 0.0)

    _, cutout1, sha1 = a_cutout(ws, 1)
    status, answer = post(port, {"cutout": cutout1, "sha256": sha1, "verdict": "wrong_grade",
                                 "reason": "should be  B"}, token)  # no Origin (curl): fine
    assert status == 200, answer
    assert answer["review"] == {**answer["review"], "decision": None, "wrong_grade": "should be B"}
    assert answer["summary"]["reviewed"] == 2 and answer["summary"]["wrong_grade"] == 1
    assert len(ws.reviews.read_text().splitlines()) == 2

    api = get_api(port)
    assert set(api["reviews"]) == {sha, sha1} and api["reviews"][sha]["decision"] == "approve"
    assert api["summary"] == answer["summary"]
    out = capsys.readouterr().out
    assert f'"POST {API} HTTP/1.1" 200' in out
    assert token not in out and "Authorization" not in out and AUTH.split()[1] not in out


def test_review_api_tells_a_damaged_reviews_file(tmp_path, tiny_model):
    ws, _ = tracked(tmp_path / "root", tiny_model)
    ws.reviews.write_text("garbage\n{}\n")
    server = localhttp.start(make_server(tmp_path / "root", "127.0.0.1", 0, env=ENV))
    try:
        status, _, body = request(server.server_port, "GET", API)
        assert status == 500 and "line 2" in json.loads(body)["error"] and str(tmp_path) not in body.decode()
        token = json.loads(request(server.server_port, "GET", "/tracker/QCC-011/api/reviews")[2]).get("csrf")
        assert token is None  # no token without a readable state; nothing is appended either
        assert ws.reviews.read_text() == "garbage\n{}\n"
    finally:
        localhttp.stop(server)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_sigterm_and_sigint_even_started_ignoring_sigint(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    (tmp_path / "root").mkdir()
    env = {**os.environ, USER_ENV: "kana", PASSWORD_ENV: "correct horse battery"}
    proc = subprocess.Popen([sys.executable, "-m", "kirinuki.cli", "serve", "--root", str(tmp_path / "root"),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # a background job
    try:
        assert "serving" in proc.stderr.readline()
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.communicate()
