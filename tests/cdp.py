"""Drive Debian's headless Chromium over the Chrome DevTools Protocol (websocket-client).

Small on purpose: start the browser on a fresh profile, open one page target, send
commands and wait for their answers, evaluate JavaScript, take screenshots.
"""
from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path() -> str | None:
    return shutil.which("chromium")


class Browser:
    def __init__(self, width: int = 1400, height: int = 1000, timeout_s: float = 30):
        self.profile = tempfile.mkdtemp(prefix="kirinuki-chromium-")
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
        targets = json.load(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout_s,
                                              suppress_origin=True, http_proxy_host=None)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.send("Page.enable")
        self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def set_headers(self, headers: dict[str, str]) -> None:
        self.send("Network.setExtraHTTPHeaders", headers=headers)

    def goto(self, url: str) -> int:
        """Open url, wait for the load event; return the HTTP status of the document."""
        self.events.clear()
        frame = self.send("Page.navigate", url=url)["frameId"]
        deadline = time.monotonic() + self.timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no load event")
            self.events.append(json.loads(self.ws.recv()))
        return next(e["params"]["response"]["status"] for e in self.events
                    if e.get("method") == "Network.responseReceived" and e["params"]["type"] == "Document"
                    and e["params"].get("frameId") == frame)

    def js(self, expression: str):
        """Evaluate JavaScript in the page (promises awaited); return its JSON value."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JavaScript failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return Path(path)

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


# --- additions for the review tests -----------------------------------------------------------

def _wait(self, expression: str, timeout_s: float | None = None, interval_s: float = 0.05):
    """Evaluate `expression` until it gives a truthy value; return that value."""
    deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
    while True:
        value = self.js(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still falsy after {timeout_s or self.timeout_s} s: {expression}")
        time.sleep(interval_s)


def _type_text(self, text: str) -> None:
    """Type `text` into the focused element, as a keyboard would."""
    self.send("Input.insertText", text=text)


def _open_file(self, path: Path) -> None:
    """Open a local file (file://) and wait for its load event (file pages have no HTTP status)."""
    self.events.clear()
    self.send("Page.navigate", url=Path(path).resolve().as_uri())
    deadline = time.monotonic() + self.timeout_s
    while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no load event")
        self.events.append(json.loads(self.ws.recv()))


Browser.wait = _wait
Browser.type_text = _type_text
Browser.open_file = _open_file
