"""A real Prometheus for the tests, and a tiny fake one for the faults a real one will not show.

:func:`start_prometheus` runs Debian's ``/usr/bin/prometheus`` on a free loopback port
with a temporary TSDB: data gets in by ``promtool tsdb create-blocks-from openmetrics``
(backfilled before the start) and by scraping live targets. :class:`FakePrometheus` is
an HTTP server whose answers a test scripts (status, body, delay), recording every
request it got.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def prometheus_binaries() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``: skip locally, fail under CI=true, when one is missing."""
    from conftest import _need

    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    _need(prometheus, "needs the prometheus binary")
    _need(promtool, "needs the promtool binary")
    return prometheus, promtool


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class PromServer:
    """A running Prometheus: its URL and process."""

    url: str
    process: subprocess.Popen
    root: Path

    def stop(self) -> None:
        """Terminate (then kill) the process; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def backfill(promtool: str, openmetrics: str, tsdb: Path, name: str) -> None:
    """Write ``openmetrics`` into blocks under ``tsdb`` with promtool."""
    tsdb.mkdir(parents=True, exist_ok=True)
    source = tsdb.parent / f"{name}.om"
    source.write_text(openmetrics)
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"promtool failed on {name}: {done.stdout}{done.stderr}")


def start_prometheus(
    prometheus: str,
    root: Path,
    *,
    targets: Sequence[str] = (),
    scrape_interval: str = "1s",
    ready_timeout: float = 60.0,
) -> PromServer:
    """Start Prometheus with its TSDB in ``root/tsdb`` (blocks already there are loaded).

    ``targets`` (``host:port``) are scraped under ``job="lab"`` every ``scrape_interval``.
    Returns once ``/-/ready`` answers 200; raises (after stopping it) otherwise.
    """
    config = root / "prometheus.yml"
    lines = ["global:", f"  scrape_interval: {scrape_interval}", f"  evaluation_interval: {scrape_interval}"]
    if targets:
        lines += ["scrape_configs:", "  - job_name: lab", "    static_configs:",
                  "      - targets: [" + ", ".join(f"'{t}'" for t in targets) + "]"]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=20y"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    server = PromServer(f"http://127.0.0.1:{port}", process, root)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"prometheus not ready within {ready_timeout} s:\n{server.log()}")


def wait_for(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.25) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


# -- a fake Prometheus -----------------------------------------------------------------------


@dataclasses.dataclass
class Seen:
    """One request the fake server got."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclasses.dataclass
class Answer:
    """What the fake server sends: a status, a body, after ``delay`` seconds."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0


def success(result_type: str, result: object, **extra: object) -> bytes:
    """A Prometheus-shaped success body."""
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}, **extra},
                      separators=(",", ":")).encode()


class FakePrometheus(http.server.ThreadingHTTPServer):
    """Answers every request with ``answer(seen)``; ``requests`` lists what it got."""

    daemon_threads = True

    def __init__(self, answer: Callable[[Seen], Answer]) -> None:
        self.answer = answer
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.thread.join(timeout=5)
        self.server_close()

    def __enter__(self) -> FakePrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakePrometheus
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            params.update(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        seen = Seen(self.command, path, params, {k.lower(): v for k, v in self.headers.items()})
        with self.server.lock:
            self.server.requests.append(seen)
        answer = self.server.answer(seen)
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = _serve  # noqa: N815 - the stdlib's names

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass
