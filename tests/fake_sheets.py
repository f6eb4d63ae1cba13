"""A local stand-in for the few Google endpoints the ticket publisher uses.

A real HTTP server on 127.0.0.1 speaking: the OAuth2 JWT-bearer token endpoint (it checks
the RS256 signature of the service account's assertion), and Sheets v4 spreadsheet
metadata, values get, values batchUpdate and values append. `fail_next` makes the next
API calls answer with the given HTTP status codes (rate limits, outages).
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import localhttp

TOKEN = "test-access-token"
_RANGE = re.compile(r"^(?:'((?:[^']|'')*)'|([^!']+))(?:!([A-Z]+)(\d+)(?::[A-Z]*\d*)?)?$")


def service_account(token_uri: str) -> tuple[dict, object]:
    """A throwaway service-account JSON (fresh RSA key) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "kirinuki-test", "private_key_id": "k1",
            "private_key": pem, "client_email": "bot@kirinuki-test.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri}
    return info, key.public_key()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


class FakeGoogle:
    def __init__(self, public_key, sheets: dict[str, list[list[str]]], key: str = "sheet-key"):
        self.public_key, self.sheets, self.key = public_key, sheets, key
        self.calls: list[tuple[str, str]] = []  # (method, path) of every API call, failed ones included
        self.fail_next: list[int] = []
        self.lock = threading.Lock()
        self.server = localhttp.start(ThreadingHTTPServer(("127.0.0.1", 0), self._handler()))
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        localhttp.stop(self.server)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self):
                if self.path == "/token":
                    return self._token(parse_qs(self._body().decode()))
                self._api("POST", json.loads(self._body() or b"{}"))

            def do_GET(self):
                self._api("GET", None)

            def _token(self, form):
                header, payload, sig = form["assertion"][0].split(".")
                try:
                    fake.public_key.verify(_b64(sig), f"{header}.{payload}".encode(),
                                           padding.PKCS1v15(), hashes.SHA256())
                except Exception:
                    return self._reply(400, {"error": "invalid_grant"})
                claims = json.loads(_b64(payload))
                assert claims["aud"].endswith("/token") and "spreadsheets" in claims["scope"]
                self._reply(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})

            def _api(self, method, body):
                url = urlsplit(self.path)
                with fake.lock:
                    fake.calls.append((method, url.path))
                    if fake.fail_next:
                        code = fake.fail_next.pop(0)
                        return self._reply(code, {"error": {"code": code, "message": "injected failure"}})
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        return self._reply(401, {"error": {"code": 401, "message": "no token"}})
                    prefix = f"/v4/spreadsheets/{fake.key}"
                    if not url.path.startswith(prefix):
                        return self._reply(404, {"error": {"code": 404, "message": "no such spreadsheet"}})
                    try:
                        self._reply(200, fake.dispatch(method, unquote(url.path[len(prefix):]), body))
                    except (AssertionError, KeyError) as e:  # a call the real API would refuse
                        self._reply(400, {"error": {"code": 400, "message": f"bad request: {e!r}"}})

        return Handler

    # --- the Sheets API, on self.sheets -------------------------------------------------

    def _cell(self, a1: str) -> tuple[list[list[str]], int, int]:
        m = _RANGE.match(a1)
        title = (m.group(1) or "").replace("''", "'") if m.group(1) is not None else m.group(2)
        row = int(m.group(4)) - 1 if m.group(4) else 0
        return self.sheets[title], row, _col(m.group(3)) if m.group(3) else 0

    def _write(self, grid, row, col, values):
        for i, vals in enumerate(values):
            while len(grid) <= row + i:
                grid.append([])
            line = grid[row + i]
            line += [""] * (col + len(vals) - len(line))
            line[col:col + len(vals)] = [str(v) for v in vals]

    def dispatch(self, method: str, rest: str, body):
        if method == "GET" and rest == "":
            return {"spreadsheetId": self.key, "properties": {"title": "tickets"}, "sheets": [
                {"properties": {"sheetId": i, "title": t, "index": i,
                                "gridProperties": {"rowCount": 1000, "columnCount": 26}}}
                for i, t in enumerate(self.sheets)]}
        if method == "GET" and rest.startswith("/values/"):
            grid, _, _ = self._cell(rest[len("/values/"):])
            width = max((len(r) for r in grid), default=0)
            return {"range": rest, "majorDimension": "ROWS",
                    "values": [r + [""] * (width - len(r)) for r in grid]}
        if method == "POST" and rest == "/values:batchUpdate":
            assert body["valueInputOption"] == "RAW"
            for item in body["data"]:
                grid, row, col = self._cell(item["range"])
                self._write(grid, row, col, item["values"])
            return {"spreadsheetId": self.key, "totalUpdatedRows": len(body["data"])}
        if method == "POST" and rest.startswith("/values/") and rest.endswith(":append"):
            grid, _, _ = self._cell(rest[len("/values/"):-len(":append")])
            while grid and not any(grid[-1]):
                grid.pop()
            self._write(grid, len(grid), 0, body["values"])
            return {"spreadsheetId": self.key, "updates": {"updatedRows": len(body["values"])}}
        raise AssertionError(f"unexpected call {method} {rest}")
