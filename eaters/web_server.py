"""A tiny HTTP server for the web dashboard (``nd-web``).

The dashboard is a static page that talks to the hub's eater WebSocket *from the browser*;
this server only hands out the page's files and ``/config.json`` (which tells the page
where the hub is). It is stdlib ``http.server`` in a thread so ``nd-web`` and the tests need
nothing beyond the package itself, and it only serves the files that ship in ``web/`` -
a fixed list read at start-up, so no request path ever reaches the filesystem.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("netdumplings.web")

#: Content types of the files the page is made of (anything else in web/ is not served).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

#: The page loads nothing from elsewhere and runs no inline script; WebSockets may go to
#: any host because the hub is usually not this server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def load_page_files() -> dict[str, tuple[bytes, str]]:
    """``{"/app.js": (bytes, content type), ...}`` for every servable file in ``web/``.

    Read once: the page is a handful of small files, and serving from memory means a
    request can name only what is in this dict."""
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("netdumplings.eaters").joinpath("web")
    for entry in root.iterdir():
        if not entry.is_file():
            continue
        name = entry.name
        ext = name[name.rfind("."):] if "." in name else ""
        if ext in CONTENT_TYPES:
            files["/" + name] = (entry.read_bytes(), CONTENT_TYPES[ext])
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


class WebServer:
    """Serves the dashboard on ``address:port`` from a daemon thread.

    ``config`` becomes ``/config.json``; the page reads ``hub`` (the eater WebSocket URL)
    and ``eater_name`` from it. ``port=0`` picks a free port (see ``.port``).
    """

    def __init__(self, config: dict[str, Any], address: str = "127.0.0.1", port: int = 11350,
                 files: dict[str, tuple[bytes, str]] | None = None) -> None:
        self.config = dict(config)
        self.files = files if files is not None else load_page_files()
        if "/" not in self.files:
            raise FileNotFoundError("the dashboard's index.html is not installed")
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer((address, port), handler)
        self.httpd.daemon_threads = True
        self.address = address
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "nd-web"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._respond(body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._respond(body=False)

            def version_string(self) -> str:
                return "nd-web"

            def _security_headers(self) -> None:
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Referrer-Policy", "no-referrer")

            def send_error(self, code: int, message: str | None = None,
                           explain: str | None = None) -> None:
                """http.server's own errors (other methods, bad or long request lines) as
                short plain text with the same headers as everything else, not its HTML
                page (which repeats parts of the request)."""
                if code == HTTPStatus.NOT_IMPLEMENTED and self.command not in ("GET", "HEAD"):
                    code = HTTPStatus.METHOD_NOT_ALLOWED   # a method this server never takes
                try:
                    status = HTTPStatus(code)
                except ValueError:
                    status = HTTPStatus.BAD_REQUEST
                self.log_error("code %d, message %s", code, message)
                data = f"{status.value} {status.phrase}\n".encode()
                self.send_response(status, status.phrase)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if status == HTTPStatus.METHOD_NOT_ALLOWED:
                    self.send_header("Allow", "GET, HEAD")
                self.send_header("Connection", "close")
                self._security_headers()
                self.end_headers()
                self.close_connection = True
                if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                    self.wfile.write(data)

            def _respond(self, body: bool) -> None:
                path = urlsplit(self.path).path
                if path == "/config.json":
                    data = json.dumps(server.config).encode()
                    ctype = "application/json"
                    status = HTTPStatus.OK
                elif path in server.files:
                    data, ctype = server.files[path]
                    status = HTTPStatus.OK
                else:
                    data, ctype, status = b"not found\n", "text/plain", HTTPStatus.NOT_FOUND
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                # Always fresh: a dashboard left open across an upgrade must not mix files.
                self._security_headers()
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s %s", self.address_string(), format % args)

        return Handler

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="nd-web",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
