"""`kirinuki serve`: the tracker dashboards over HTTP, behind basic auth.

Serves `/` (the list of tracker IDs) and `/tracker/<ID>/<file>` from that tracker's
`dashboard/` folder and nothing else: every request needs the credentials from
$KIRINUKI_DASHBOARD_USER / $KIRINUKI_DASHBOARD_PASSWORD, paths are checked segment by
segment (no `..`, no hidden names) and must stay inside the dashboard folder after
symlinks are resolved.

`/tracker/<ID>/api/reviews` is the one thing that is not a file: GET gives the tracker's
reviews, its review counts and a CSRF token; POST records one verdict on one cut-out
(appended to the workspace's reviews.jsonl). A POST needs the login, that token (an HMAC of
a per-server secret with the user and the tracker ID) in X-CSRF-Token, a JSON body of at
most 8 KiB and, where the browser sends an Origin, this server's own origin.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mimetypes
import os
import re
import secrets
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import unquote, urlsplit

from kirinuki.core.cards import sha256_file
from kirinuki.core.config import SERVE_IDLE_TIMEOUT_S
from kirinuki.core.imageio import read_json, read_jsonl
from kirinuki.core.secrets import DASHBOARD_PASSWORD_ENV, DASHBOARD_USER_ENV, redact
from kirinuki.dataset.usage import training_usage
from kirinuki.dataset.reviews import VERDICTS, Review, ReviewError, append_review, latest, read_reviews, review_summary
from kirinuki.publish.dashboard import render_index, review_json
from kirinuki.publish.workspace import TRACKER_ID, Workspace, find_workspaces, live_state

USER_ENV, PASSWORD_ENV = DASHBOARD_USER_ENV, DASHBOARD_PASSWORD_ENV
MAX_CONNECTIONS = 64  # connections served at once; a flood beyond this is closed, not queued in threads
MAX_BODY = 8 * 1024  # bytes of a POST body (one verdict)
API = re.compile(r"/tracker/([^/]+)/api/reviews")
CUTOUT = re.compile(r"([^/]+)/([1-9][0-9]{0,8})")  # <image>/<k>


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
        raise ServeError(f"{PASSWORD_ENV} is too weak ({why}); choose another (at least {MIN_PASSWORD} "
                         "characters, not a common one, e.g. four random words), or pass --allow-weak-password to serve anyway")
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


def csrf_token(secret: bytes, user: bytes, tracker_id: str) -> str:
    """The token a page of `tracker_id` shown to `user` sends with its POSTs."""
    return hmac.new(secret, user + b"\0" + tracker_id.encode(), hashlib.sha256).hexdigest()


class ApiError(Exception):
    """A request the review API refuses: HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Cutouts:
    """The cut-outs of a tracker workspace as its scores.jsonl lists them, with the sha256 of
    each char_<k>.png (cached while the file keeps its size, mtime and inode)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._hashes: dict[Path, tuple[tuple, str]] = {}

    def sha256(self, path: Path) -> Optional[str]:
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._hashes.get(path)
        if hit and hit[0] == key:
            return hit[1]
        try:
            digest = sha256_file(path)
        except OSError:
            return None
        with self._lock:
            self._hashes[path] = (key, digest)
        return digest

    @staticmethod
    def records(ws: Workspace) -> dict[str, dict]:
        """"<image>/<k>" -> its score record (scores.jsonl, as `kirinuki track` writes it)."""
        scores = ws.scores
        try:
            rows = read_jsonl(scores) if scores.is_file() else []
        except (OSError, ValueError) as e:
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, f"scores.jsonl unreadable ({type(e).__name__})") from None
        return {f"{r['image']}/{int(r['k'])}": r for r in rows if isinstance(r, dict) and "image" in r and "k" in r}

    @staticmethod
    def path(ws: Workspace, cutout: str) -> Optional[Path]:
        """`<image>/<k>` -> its char_<k>.png inside the workspace's extract/ folder, or None."""
        m = CUTOUT.fullmatch(cutout)
        if not m:
            return None
        image, k = m[1], int(m[2])
        if image in (".", "..") or image.startswith(".") or "\\" in image or "\0" in image:
            return None
        base = ws.extract.resolve()
        target = (base / image / f"char_{k}.png").resolve()
        return target if target.is_file() and target.is_relative_to(base) else None

    def lora_ok(self, ws: Workspace, records: dict[str, dict]) -> dict[str, bool]:
        """sha256 -> the grade's verdict, over the cut-outs whose file is there."""
        out = {}
        for cutout, r in records.items():
            path = self.path(ws, cutout)
            sha = self.sha256(path) if path else None
            if sha:
                out[sha] = bool(r.get("lora_ok"))
        return out


def make_handler(root: Path, user: bytes, password: bytes, idle_timeout_s: float, secret: bytes):
    root = Path(root)
    cutouts = Cutouts()
    write_lock = threading.Lock()  # one verdict at a time: the answer's counts include it

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
            self._notes, self._status, self.requestline, self._body_read = [], None, "", False
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
            self._drain()
            if not head_only:
                self.wfile.write(body)

        def _drain(self):
            """Read a small request body not read yet, so closing the connection does not reset
            it under the answer; a body over MAX_BODY is left (the answer is 413 or 401)."""
            if self._body_read or self.command != "POST":
                return
            self._body_read = True
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return
            if 0 < length <= MAX_BODY:
                self.rfile.read(length)

        def _json(self, status: int, obj: dict, head_only=False):
            body = (json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n").encode()
            self._send(status, body, "application/json; charset=utf-8", head_only=head_only)

        def _error(self, e: ApiError, head_only=False):
            self._notes.append(str(e))
            self._json(e.status, {"error": str(e)}, head_only=head_only)

        def _login(self) -> Optional[bytes]:
            """The basic-auth user name when the request has the login, else None."""
            header = self.headers.get("Authorization")
            if not authorized(header, user, password):
                return None
            return user

        def _unauthorized(self, head_only=False):
            return self._send(HTTPStatus.UNAUTHORIZED, b"401 Unauthorized\n", head_only=head_only,
                              WWW_Authenticate='Basic realm="kirinuki", charset="UTF-8"')

        def _workspace(self, tracker_id: str) -> Workspace:
            ws = find_workspaces(root).get(tracker_id) if TRACKER_ID.fullmatch(tracker_id) else None
            if ws is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "no such tracker")
            return ws

        def _state(self, ws: Workspace, records: dict[str, dict]) -> tuple[dict[str, Review], dict[str, bool]]:
            try:
                state = latest(read_reviews(ws.reviews))
            except (ReviewError, OSError, UnicodeDecodeError) as e:
                why = (str(e).splitlines() or [type(e).__name__])[0].replace(str(ws.reviews), ws.reviews.name)
                raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, f"reviews unreadable ({why})") from None
            return state, cutouts.lora_ok(ws, records)

        def _api_get(self, tracker_id: str, who: bytes, head_only=False):
            ws = self._workspace(tracker_id)
            state, lora_ok = self._state(ws, Cutouts.records(ws))
            self._json(HTTPStatus.OK, {
                "csrf": csrf_token(secret, who, tracker_id), "user": who.decode(errors="replace"),
                "reviews": {sha: review_json(state[sha]) for sha in sorted(lora_ok) if sha in state},
                "summary": review_summary(state, lora_ok),
                "usage": {sha: n for sha, n in sorted((training_usage(ws.exports) or {}).items()) if sha in lora_ok}},
                       head_only=head_only)

        def _check_origin(self):
            origin = self.headers.get("Origin")
            if origin is None:
                return
            host = (self.headers.get("Host") or "").strip().lower()
            if not host or origin.strip().lower() not in (f"http://{host}", f"https://{host}"):
                raise ApiError(HTTPStatus.FORBIDDEN, "cross-origin request refused")

        def _read_body(self) -> dict:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
            raw = self.headers.get("Content-Length")
            try:
                length = int(raw)
            except (TypeError, ValueError):
                raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length required") from None
            if length > MAX_BODY:
                raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY} bytes")
            if length < 0:
                raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            self._body_read = True
            data = self.rfile.read(length)
            try:
                body = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            for key in ("cutout", "sha256", "verdict"):
                if not isinstance(body.get(key), str):
                    raise ApiError(HTTPStatus.BAD_REQUEST, f"{key!r} missing (a string)")
            if not isinstance(body.get("reason", ""), str):
                raise ApiError(HTTPStatus.BAD_REQUEST, "'reason' must be a string")
            if body["verdict"] not in VERDICTS:
                raise ApiError(HTTPStatus.BAD_REQUEST, f"'verdict' must be one of {', '.join(VERDICTS)}")
            return body

        def do_POST(self):
            who = self._login()
            if who is None:
                return self._unauthorized()
            m = API.fullmatch(urlsplit(self.path).path)
            if not m:
                return self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"405 Method Not Allowed\n", Allow="GET, HEAD")
            try:
                ws = self._workspace(m[1])
                self._check_origin()
                given = self.headers.get("X-CSRF-Token") or ""
                if not hmac.compare_digest(given.encode(errors="replace"), csrf_token(secret, who, m[1]).encode()):
                    raise ApiError(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token; reload the page")
                body = self._read_body()
                with write_lock:
                    records = Cutouts.records(ws)
                    record = records.get(body["cutout"])
                    path = Cutouts.path(ws, body["cutout"]) if record is not None else None
                    if path is None:
                        raise ApiError(HTTPStatus.NOT_FOUND, "no such cut-out")
                    if cutouts.sha256(path) != body["sha256"]:
                        raise ApiError(HTTPStatus.CONFLICT, "the cut-out changed since the page was loaded")
                    self._state(ws, records)  # a damaged reviews file is told, not appended to
                    try:
                        entry = append_review(ws.reviews, who=who.decode(errors="replace"), cutout=body["cutout"],
                                              sha256=body["sha256"], verdict=body["verdict"],
                                              reason=body.get("reason", ""), grade=record.get("grade"))
                    except ReviewError as e:
                        raise ApiError(HTTPStatus.BAD_REQUEST, str(e).splitlines()[0]) from None
                    state, lora_ok = self._state(ws, records)
            except ApiError as e:
                return self._error(e)
            self._notes.append(f"{entry['verdict']} {entry['cutout']}")
            self._json(HTTPStatus.OK, {"cutout": entry["cutout"], "sha256": entry["sha256"],
                                       "review": review_json(state[entry["sha256"]]),
                                       "summary": review_summary(state, lora_ok)})

        def do_HEAD(self):
            self.do_GET(head_only=True)

        def do_GET(self, head_only: bool = False):
            who = self._login()
            if who is None:
                return self._unauthorized(head_only=head_only)
            path = urlsplit(self.path).path
            if m := API.fullmatch(path):
                try:
                    return self._api_get(m[1], who, head_only=head_only)
                except ApiError as e:
                    return self._error(e, head_only=head_only)
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
                allow_weak_password: bool = False, idle_timeout_s: float = SERVE_IDLE_TIMEOUT_S,
                max_connections: int = MAX_CONNECTIONS) -> ThreadingHTTPServer:
    """A dashboard server bound to host:port (port 0: any free one); raises ServeError."""
    user, password = credentials_from_env(env, allow_weak_password)
    root = Path(root)
    if not root.is_dir():
        raise ServeError(f"{root}: no such folder")
    try:
        return DashboardServer((host, port), make_handler(root, user, password, idle_timeout_s,
                                                          secret=secrets.token_bytes(32)),
                               max_connections=max_connections)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
