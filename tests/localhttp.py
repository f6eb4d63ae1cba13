"""Real HTTP servers on 127.0.0.1 for the tests: served from a daemon thread, stopped cleanly."""
import threading
from http.server import ThreadingHTTPServer


def start(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()
