"""A local stand-in for Pushover's messages endpoint: records each multipart POST."""
from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import localhttp


class FakePushover:
    def __init__(self, status: int = 200):
        self.status = status
        self.messages: list[dict] = []  # form fields; files as {"filename", "content_type", "data"}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                msg = BytesParser(policy=policy.default).parsebytes(head + body)
                fields = {}
                for part in msg.iter_parts() if msg.is_multipart() else []:
                    name = part.get_param("name", header="content-disposition")
                    if part.get_filename():
                        fields[name] = {"filename": part.get_filename(), "content_type": part.get_content_type(),
                                        "data": part.get_payload(decode=True)}
                    else:
                        fields[name] = part.get_payload(decode=True).decode()
                if not msg.is_multipart():  # urlencoded form (no attachment)
                    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                fake.messages.append(fields)
                reply = json.dumps({"status": 1 if fake.status == 200 else 0, "request": "r1"}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = localhttp.start(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.server.server_port}/1/messages.json"

    def close(self):
        localhttp.stop(self.server)
