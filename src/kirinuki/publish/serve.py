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
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

from kirinuki.core.imageio import read_json
from kirinuki.core.secrets import DASHBOARD_PASSWORD_ENV, DASHBOARD_USER_ENV, redact
from kirinuki.publish.dashboard import render_index
from kirinuki.publish.workspace import TRACKER_ID, find_workspaces, live_state

USER_ENV, PASSWORD_ENV = DASHBOARD_USER_ENV, DASHBOARD_PASSWORD_ENV
IDLE_TIMEOUT_S = 30.0  # seconds a connection may stay silent (half-open, slow) before it is closed
MAX_CONNECTIONS = 64  # connections served at once; a flood beyond this is closed, not queued in threads


class ServeError(Exception):
    """The server cannot start; str() is a one-line reason."""


MIN_PASSWORD = 12
# the most common passwords of 12 characters and more (breach lists), and obvious picks here
COMMON_PASSWORDS = frozenset({
    "password1234", "password12345", "password123456", "passwordpassword", "123456789012", "1234567890123",
    "12345678901234", "123123123123", "qwertyuiop12", "qwertyuiopasdf", "qwertyuiopasdfghjkl", "1q2w3e4r5t6y",
    "iloveyou1234", "letmein12345", "changeme1234", "changemeplease", "administrator", "admin1234567",
    "adminadmin12", "welcome12345", "trustno1trustno1", "kirinuki1234", "kirinukikirinuki", "dashboard123",
    "dashboard1234", "correcthorsebatterystaple", "passw0rdpassw0rd", "abcdefghijkl", "abc123abc123",
})


def weak_password(user: str, password: str) -> str | None:
    """Why `password` is too weak for a dashboard reachable over a network, or None."""
    if len(password) < MIN_PASSWORD:
        return f"shorter than {MIN_PASSWORD} characters"
    if not password.strip() or len(set(password)) == 1:
        return "a single repeated character"
    if password.lower() in COMMON_PASSWORDS:
        return "one of the most common passwords"
    if password.lower() == user.lower():
        return "the same as the user name"
    return None


def credentials_from_env(env: Mapping[str, str] = os.environ, allow_weak: bool = False) -> tuple[bytes, bytes]:
    """The login from the environment; refuses a weak password unless `allow_weak`. The
    password itself is never shown."""
    user, password = env.get(USER_ENV, ""), env.get(PASSWORD_ENV, "")
    if not (user and password):
        raise ServeError(f"set {USER_ENV} and {PASSWORD_ENV}: the dashboards are never served without a login")
    why = weak_password(user, password)
    if why and not allow_weak:
        raise ServeError(f"{PASSWORD_ENV} is too weak ({why}); choose a longer one (at least {MIN_PASSWORD} "
                         "characters, e.g. four random words), or pass --allow-weak-password to serve anyway")
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


def make_handler(root: Path, user: bytes, password: bytes, idle_timeout_s: float = IDLE_TIMEOUT_S):
    root = Path(root)

    class Handler(BaseHTTPRequestHandler):
        server_version = "kirinuki"
        sys_version = ""
        timeout = idle_timeout_s  # a connection that sends nothing for this long is closed
        protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive to hold a thread

        def log_message(self, fmt, *args):  # never the Authorization header; lines come out in handle_one_request
            self._notes.append(fmt % args)

        def log_request(self, code="-", size="-"):
            self._status = getattr(code, "value", code)

        def handle_one_request(self):
            """One request, one log line: `address "request line" status`, with what went wrong
            for a failed one; a client that goes away or stays silent is a line, not a traceback."""
            self._notes, self._status, self.requestline = [], None, ""
            try:
                super().handle_one_request()
            except (ConnectionError, TimeoutError) as e:  # BrokenPipe, ConnectionReset, a write timing out
                self.close_connection = True
                self._notes.append(f"client went away ({type(e).__name__})")
            if self._status is None and not self._notes:
                return  # the connection closed without a request: nothing happened
            line = f'{self.address_string()} "{self.requestline[:200]}" {self._status or "-"}'
            print(redact(" - ".join([line, *self._notes])), flush=True)

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
                entries = [live_state(s) for s in (read_json(ws.state) for ws in find_workspaces(root).values()) if s]
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


class DashboardServer(ThreadingHTTPServer):
    """A threading HTTP server that holds at most `max_connections` connections at a time (more
    are closed at once) and logs a failed request in one line, never as a traceback."""
    daemon_threads = True

    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            print(f"{client_address[0]} refused: {self.max_connections} connections open already", flush=True)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):
            return  # a client gone while its connection was closed: nothing to tell
        print(redact(f"{client_address[0]} error: {type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}"), flush=True)


def make_server(root: Path, host: str, port: int, env: Mapping[str, str] = os.environ,
                allow_weak_password: bool = False, idle_timeout_s: float = IDLE_TIMEOUT_S,
                max_connections: int = MAX_CONNECTIONS) -> ThreadingHTTPServer:
    """A dashboard server bound to host:port (port 0: any free one); raises ServeError."""
    user, password = credentials_from_env(env, allow_weak_password)
    root = Path(root)
    if not root.is_dir():
        raise ServeError(f"{root}: no such folder")
    try:
        return DashboardServer((host, port), make_handler(root, user, password, idle_timeout_s),
                               max_connections=max_connections)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
