"""`kirinuki serve`: basic auth on everything, only dashboard folders, no path traversal."""
import base64
import socket

import pytest

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
