"""Helpers shared by several test files (imported as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serve_folder(folder) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port); yields the base URL ``http://127.0.0.1:PORT``."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
