"""nd-web: serve the web dashboard, a browser eater of a hub."""

from __future__ import annotations

import argparse

import sys

from ..wire.messages import OUT_PORT, ws_uri
from .common import PORT, fail, hub_address, parser, setup_logging

PROG = "nd-web"
DEFAULT_PORT = 11350
EPILOG = f"""\
examples:
  nd-web                                   page on http://127.0.0.1:{DEFAULT_PORT}/, hub on 127.0.0.1:{OUT_PORT}
  nd-web --hub 10.0.0.5:{OUT_PORT} --address 0.0.0.0
  nd-web --hub-url wss://hub.example/eat    the URL the *browser* uses, when it differs

The page connects to the hub from the browser, so --hub must be reachable from where the
browser runs (127.0.0.1 means the browser's own machine). The page also accepts
?hub=ws://host:port in its address to look at another hub, and ?filter=EXPRESSION
(e.g. ?filter=status%3E%3D400) to open with a filter. The filter language, the detail
pane, statistics and exports: docs/guide/web-dashboard.md.

A hub that requires an eater token refuses the page until it has one: the page then asks
for it and keeps it for that hub in the tab only (never in a URL, config.json or a log).
A link ending in #token=TOKEN gives it too; the page removes it from the address bar.

Short flags: -a as nd-hub, -n as the other eaters (netdumplings 0.5).
The table of every command's flags: docs/cli/index.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = parser(PROG, "Serve the netdumplings web dashboard: live dumplings, per-protocol "
                     "panels and hub status, in a browser.", EPILOG)
    p.add_argument("--hub", default=f"127.0.0.1:{OUT_PORT}",
                   help="hub out-port host:port, ws:// or wss:// (default: %(default)s)")
    p.add_argument("--hub-url", help="WebSocket URL given to the browser (default: from --hub)")
    p.add_argument("-a", "--address", default="127.0.0.1",
                   help="address to serve the page on (default: %(default)s)")
    p.add_argument("--port", type=PORT, default=DEFAULT_PORT,
                   help="port to serve the page on (default: %(default)s; 0 = any free)")
    p.add_argument("-n", "--eater-name", default="nd-web",
                   help="name the page gives the hub (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    host, port, tls = hub_address(PROG, "--hub", args.hub, OUT_PORT)
    hub_url = args.hub_url or ws_uri(host, port, tls)
    if not hub_url.startswith(("ws://", "wss://")):
        fail(PROG, "--hub-url must start with ws:// or wss://", 2)

    from netdumplings.eaters.web_server import WebServer
    try:
        server = WebServer({"hub": hub_url, "eater_name": args.eater_name},
                           address=args.address, port=args.port)
    except OSError as exc:
        fail(PROG, f"cannot serve on {args.address}:{args.port}: {exc.strerror or exc}")
    except FileNotFoundError as exc:
        fail(PROG, str(exc))
    # The tests (and people) wait for this line; print it even with --quiet.
    print(f"{PROG}: dashboard on {server.url} (hub {hub_url})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
