"""The lab's pod: a small HTTP/1.1 server that counts what reaches it (the ground truth).

Run inside a pod namespace::

    ip netns exec npa-lab-p-web-1 python -m npanalytics.lab.podserver \\
        --pod web-1 --port 8080 --deadline 60

It listens on every ``--port`` (all addresses), keeps connections alive (HTTP/1.1),
and counts, per client address as the pod sees it (after any SNAT), the requests
and the TCP connections that carried at least one request. ``GET /__counts``
returns ``{"pod", "requests": {addr: n}, "connections": {addr: n}}`` as JSON and is
not itself counted. Any other GET answers ``pod=<name>``. The process prints
``listening <ports>`` once bound and exits by itself after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["PodCounts", "make_server", "main"]

COUNTS_PATH = "/__counts"
MAX_DEADLINE_SECONDS = 3600.0


class PodCounts:
    """Thread-safe request and connection counters, per client address."""

    def __init__(self, pod: str) -> None:
        self.pod = pod
        self.requests: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, client: str, new_connection: bool) -> None:
        """Count one request from ``client``; also one connection when it is the first on it."""
        with self._lock:
            self.requests[client] += 1
            if new_connection:
                self.connections[client] += 1

    def as_dict(self) -> dict[str, object]:
        """The counts as plain data."""
        with self._lock:
            return {
                "pod": self.pod,
                "requests": dict(self.requests),
                "connections": dict(self.connections),
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "npa-lab-pod/1"
    counts: PodCounts  # set on the subclass made by make_server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without NODELAY, Nagle plus the
        # client's delayed ACK would add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._counted_connection = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == COUNTS_PATH:
            body = json.dumps(self.counts.as_dict()).encode()
            content_type = "application/json"
        else:
            self.counts.record(self.client_address[0], not self._counted_connection)
            self._counted_connection = True
            body = f"pod={self.counts.pod}\n".encode()
            content_type = "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


def make_server(port: int, counts: PodCounts, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """A threading HTTP/1.1 server on ``host:port`` that records into ``counts``."""
    handler = type("PodHandler", (_Handler,), {"counts": counts})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m npanalytics.lab.podserver")
    parser.add_argument("--pod", required=True, help="pod name, echoed in responses")
    parser.add_argument("--port", type=int, action="append", required=True, help="TCP port (repeatable)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--deadline", type=float, required=True, help="exit after this many seconds")
    args = parser.parse_args(argv)
    if not 0 < args.deadline <= MAX_DEADLINE_SECONDS:
        parser.error(f"--deadline must be in (0, {MAX_DEADLINE_SECONDS}]")
    counts = PodCounts(args.pod)
    servers = [make_server(p, counts, args.host) for p in args.port]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    print("listening " + " ".join(str(p) for p in args.port), flush=True)
    done = threading.Event()
    done.wait(args.deadline)
    for s in servers:
        s.shutdown()
        s.server_close()
    print(json.dumps(counts.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
