"""The lab's bounded load generator, run inside the clients' namespace.

::

    ip netns exec npa-lab-clients python -m npanalytics.lab.traffic run \\
        --target 198.18.0.11:30080:1 --target 198.18.0.12:30080:1 \\
        --source 198.18.200.10 --source 198.18.200.11 \\
        --mode new-connection-per-request --requests 600 --max-seconds 30

Connections go to the targets in smooth weighted round-robin order (what an
external load balancer with weights does); each target takes the sources in turn. With
``--mode keep-alive`` each connection carries ``--requests-per-connection``
requests, and ``--connections K`` keeps K of them open at once, taking the requests
in turn (long-lived connections, as a client pool holds them). It stops at ``--requests`` requests or ``--max-seconds``, whichever
comes first, and prints one JSON object: outcome counts, requests per target and
per answering pod, and the TCP connect latency of every connection in seconds.

``python -m npanalytics.lab.traffic counts URL...`` fetches podservers' ``/__counts``
and prints ``{url: counts}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["Target", "weighted_order", "generate", "main"]

MAX_REQUESTS = 200_000
MAX_SECONDS = 600.0
MAX_CONNECTIONS = 256
REQUEST_TIMEOUT_SECONDS = 2.0


class Target:
    """A ``host:port`` with a weight."""

    def __init__(self, host: str, port: int, weight: float) -> None:
        self.host, self.port, self.weight = host, port, weight

    @property
    def name(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``host:port[:weight]``."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"expected host:port[:weight], got {text!r}")
        weight = float(parts[2]) if len(parts) == 3 else 1.0
        if weight < 0:
            raise argparse.ArgumentTypeError(f"negative weight in {text!r}")
        return cls(parts[0], int(parts[1]), weight)


def weighted_order(weights: Sequence[float], count: int) -> list[int]:
    """Smooth weighted round-robin: ``count`` indices whose shares follow ``weights``.

    The running shares never drift from the weights by more than one pick.
    """
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    current = [0.0] * len(weights)
    order = []
    for _ in range(count):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        order.append(best)
    return order


def generate(
    targets: Sequence[Target],
    sources: Sequence[str],
    *,
    requests: int,
    max_seconds: float,
    requests_per_connection: int = 1,
    connections: int = 1,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Send the requests and return the report (see the module docstring).

    ``connections`` keep-alive connections are open at once and take the requests in
    turn; a connection that has carried ``requests_per_connection`` requests is closed
    and replaced by a new one (to the next target in weighted order).
    """
    requests = min(int(requests), MAX_REQUESTS)
    max_seconds = min(float(max_seconds), MAX_SECONDS)
    per_conn = max(1, int(requests_per_connection))
    parallel = max(1, min(int(connections), MAX_CONNECTIONS))
    order = iter(weighted_order([t.weight for t in targets], -(-requests // per_conn) + parallel))
    outcomes: Counter[str] = Counter()
    by_target: Counter[str] = Counter()
    by_pod: Counter[str] = Counter()
    connect_latency: list[float] = []
    per_target = [0] * len(targets)
    slots: list[list[Any]] = [[None, None, 0] for _ in range(parallel)]  # conn, target, requests left
    sent = 0
    start = time.monotonic()
    stopped = "requests"
    k = 0
    try:
        while sent < requests:
            if time.monotonic() - start >= max_seconds:
                stopped = "max_seconds"
                break
            slot = slots[k % parallel]
            k += 1
            if slot[0] is None:
                ti = next(order)
                target = targets[ti]
                # sources rotate per target, so that every target sees every source evenly
                # (one rotation across targets would pin source k to target k mod len(targets))
                source = sources[per_target[ti] % len(sources)] if sources else ""
                per_target[ti] += 1
                conn = http.client.HTTPConnection(
                    target.host, target.port, timeout=timeout,
                    source_address=(source, 0) if source else None,
                )
                try:
                    t0 = time.perf_counter()
                    conn.connect()
                    connect_latency.append(time.perf_counter() - t0)
                    outcomes["connections"] += 1
                except (OSError, socket.timeout) as exc:
                    outcomes[f"connect_error:{type(exc).__name__}"] += 1
                    lost = min(per_conn, requests - sent)
                    sent += lost
                    outcomes["requests_failed"] += lost
                    conn.close()
                    continue
                slot[:] = [conn, target, per_conn]
            conn, target = slot[0], slot[1]
            sent += 1
            slot[2] -= 1
            try:
                conn.request("GET", "/", headers={"Connection": "keep-alive"})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                if resp.status == 200:
                    outcomes["requests_ok"] += 1
                    by_target[target.name] += 1
                    by_pod[body.removeprefix("pod=")] += 1
                else:
                    outcomes[f"status_{resp.status}"] += 1
                    outcomes["requests_failed"] += 1
            except (OSError, http.client.HTTPException) as exc:
                outcomes[f"request_error:{type(exc).__name__}"] += 1
                outcomes["requests_failed"] += 1
                slot[2] = 0
            if slot[2] <= 0:
                conn.close()
                slot[:] = [None, None, 0]
    finally:
        for slot in slots:
            if slot[0] is not None:
                slot[0].close()
    return {
        "requests_planned": requests,
        "requests_sent": sent,
        "stopped_by": stopped,
        "elapsed_seconds": time.monotonic() - start,
        "outcomes": dict(outcomes),
        "by_target": dict(by_target),
        "by_pod": dict(by_pod),
        "connect_latency_seconds": connect_latency,
    }


def fetch_counts(urls: Sequence[str], timeout: float = 5.0) -> dict[str, Any]:
    """GET every URL and decode its JSON body."""
    import urllib.request

    result = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - lab URLs
            result[url] = json.loads(resp.read())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m npanalytics.lab.traffic")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="send bounded traffic")
    run.add_argument("--target", type=Target.parse, action="append", required=True)
    run.add_argument("--source", action="append", default=[])
    run.add_argument("--mode", choices=("new-connection-per-request", "keep-alive"),
                     default="new-connection-per-request")
    run.add_argument("--requests-per-connection", type=int, default=1)
    run.add_argument("--connections", type=int, default=1,
                     help="keep-alive connections open at once (default 1)")
    run.add_argument("--requests", type=int, required=True)
    run.add_argument("--max-seconds", type=float, required=True)
    counts = sub.add_parser("counts", help="fetch podservers' /__counts")
    counts.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "counts":
        print(json.dumps(fetch_counts(args.urls)))
        return 0
    if not 0 < args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be in [1, {MAX_REQUESTS}]")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        parser.error(f"--max-seconds must be in (0, {MAX_SECONDS}]")
    keep_alive = args.mode == "keep-alive"
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be in [1, {MAX_CONNECTIONS}]")
    report = generate(
        args.target, args.source, requests=args.requests, max_seconds=args.max_seconds,
        requests_per_connection=args.requests_per_connection if keep_alive else 1,
        connections=args.connections if keep_alive else 1,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
