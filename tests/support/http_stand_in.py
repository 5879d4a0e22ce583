"""Stand-ins for the HTTP peers segcast talks to - cameras, running nodes, weight hosts, Triton - served
from a thread of the test.

`serving` is the one way the tests start and stop such a server: on 127.0.0.1 only, at a port the
kernel picks when it binds (port 0) and that it keeps until it stops, so no other test can take it
meanwhile. Requests are answered each in its own daemon thread (`ThreadingHTTPServer`'s default), so a
handler still streaming or held on an event never keeps the test process from exiting; a stand-in that
holds its handlers should release them before its `serving` block ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: How long stopping waits for the serving thread once the server has been told to shut down.
STOP_TIMEOUT_S = 5.0


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[ThreadingHTTPServer]:
    """A server answering with ``handler``, serving in a daemon thread called ``name`` for the block.

    Its port is ``server.server_address[1]``. On leaving the block it stops accepting, closes its
    socket (connections made afterwards are refused) and joins the thread; handler threads still
    running are not waited for.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT_S)
