"""`kirinuki serve`: the tracker dashboards over HTTP, behind basic auth.

Serves `/` (the list of tracker IDs) and `/tracker/<ID>/<file>` from that tracker's
`dashboard/` folder and nothing else: every request needs the credentials from
$KIRINUKI_DASHBOARD_USER / $KIRINUKI_DASHBOARD_PASSWORD, paths are checked segment by
segment (no `..`, no hidden names) and must stay inside the dashboard folder after
symlinks are resolved.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import mimetypes
import os
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

from kirinuki.publish.dashboard import read_json, render_index
from kirinuki.publish.workspace import TRACKER_ID, find_workspaces

USER_ENV, PASSWORD_ENV = "KIRINUKI_DASHBOARD_USER", "KIRINUKI_DASHBOARD_PASSWORD"


class ServeError(Exception):
    """The server cannot start; str() is a one-line reason."""


def credentials_from_env(env: Mapping[str, str] = os.environ) -> tuple[bytes, bytes]:
    user, password = env.get(USER_ENV, ""), env.get(PASSWORD_ENV, "")
    if not (user and password):
        raise ServeError(f"set {USER_ENV} and {PASSWORD_ENV}: the dashboards are never served without a login")
    return user.encode(), password.encode()


def authorized(header: str | None, user: bytes, password: bytes) -> bool:
    """Does an Authorization header carry these basic-auth credentials? (constant time)"""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given_user, _, given_password = base64.b64decode(header[6:], validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    # both compared every time, so timing tells nothing about which one was wrong
    return hmac.compare_digest(given_user, user) & hmac.compare_digest(given_password, password)


def resolve(root: Path, url_path: str) -> Path | None:
    """`/tracker/<ID>/<file>` -> that file of the tracker's dashboard folder, or None (404)."""
    parts = unquote(urlsplit(url_path).path).split("/")[1:]
    if len(parts) < 3 or parts[0] != "tracker":
        return None
    tracker_id, rel = parts[1], parts[2:]
    if not TRACKER_ID.fullmatch(tracker_id):
        return None
    if rel == [""]:
        rel = ["index.html"]
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in rel):
        return None
    ws = find_workspaces(root).get(tracker_id)
    if ws is None:
        return None
    base = ws.dashboard.resolve()
    target = base.joinpath(*rel).resolve()
    return target if target.is_file() and target.is_relative_to(base) else None


def make_handler(root: Path, user: bytes, password: bytes):
    root = Path(root)

    class Handler(BaseHTTPRequestHandler):
        server_version = "kirinuki"
        sys_version = ""

        def log_message(self, fmt, *args):  # one line per request, never the Authorization header
            print(f"{self.address_string()} {fmt % args}", flush=True)

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8", head_only=False, **headers):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "private, no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'")
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET(head_only=True)

        def do_GET(self, head_only: bool = False):
            if not authorized(self.headers.get("Authorization"), user, password):
                return self._send(HTTPStatus.UNAUTHORIZED, b"401 Unauthorized\n", head_only=head_only,
                                  WWW_Authenticate='Basic realm="kirinuki", charset="UTF-8"')
            path = urlsplit(self.path).path
            if path == "/":
                entries = [s for s in (read_json(ws.state) for ws in find_workspaces(root).values()) if s]
                body = render_index(entries, "/tracker/{id}/").encode()
                return self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", head_only=head_only)
            if path.startswith("/tracker/") and TRACKER_ID.fullmatch(path.removeprefix("/tracker/")):
                return self._send(HTTPStatus.MOVED_PERMANENTLY, b"", head_only=head_only, Location=path + "/")
            target = resolve(root, self.path)
            if target is None:
                return self._send(HTTPStatus.NOT_FOUND, b"404 Not Found\n", head_only=head_only)
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/"):
                ctype += "; charset=utf-8"
            self._send(HTTPStatus.OK, target.read_bytes(), ctype, head_only=head_only)

    return Handler


def make_server(root: Path, host: str, port: int, env: Mapping[str, str] = os.environ) -> ThreadingHTTPServer:
    """A dashboard server bound to host:port (port 0: any free one); raises ServeError."""
    user, password = credentials_from_env(env)
    root = Path(root)
    if not root.is_dir():
        raise ServeError(f"{root}: no such folder")
    try:
        return ThreadingHTTPServer((host, port), make_handler(root, user, password))
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
