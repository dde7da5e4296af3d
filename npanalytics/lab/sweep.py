"""The lab's proxy-mode sweep: TCP connect latency and rule-load time against the number of Services.

For each proxy mode (``iptables-legacy``, ``iptables-nft``, ``nftables``) the sweep builds
one minimal data plane in lab namespaces::

    npa-lab-sweep-client  --(veth)--  npa-lab-sweep-node  --(veth)--  npa-lab-sweep-pod
       198.18.96.2/24        198.18.96.1/24  198.18.104.1/24      198.18.104.2/24 (podserver)

and, for each Service count ``N``, renders one target NodePort Service (two endpoints: the
pod, on two target ports) plus ``N - 1`` filler Service ports with the project's renderers,
loads them into the node (cold: the tables are emptied first, untimed), flushes
conntrack in the node, and opens ``connections`` new TCP connections from the client to
``node_ip:node_port``, timing each ``connect()`` with ``perf_counter_ns`` inside the
client namespace. Filler ports have ClusterIPs in 198.19.128.0/17, one or two
endpoints in 198.18.105.0/24 (addresses nobody answers on; only the rules matter), and
a nodePort of their own while the range 30000-32767 lasts; beyond that they are
ClusterIP-only. In iptables mode the NodePort jump is the last rule of
``KUBE-SERVICES``, after one rule per ClusterIP, so a new connection to a NodePort
walks every ClusterIP rule.

The nftables table is loaded in transactions of at most :data:`NFT_TRANSACTION_SERVICES`
Service ports (``render_nftables(..., transaction_size=...)``, one ``nft -f -`` per part, timed
together): the kernel state is the one kube-proxy's single transaction gives (same ``nft list
ruleset``), but kernel 6.18 binds each of its anonymous ``numgen`` maps by walking the whole
pending transaction, which makes one transaction quadratic in the table size (77 s at 10k
Service ports against about 17 s in parts of 500).

Everything is bounded: per command timeouts, a per-load limit (``max_load_seconds``:
a load predicted or observed to exceed it is skipped, and so are that mode's larger
steps, which the log records), and a total deadline (``max_seconds``) after which
:class:`~npanalytics.exceptions.LabError` is raised; the :class:`LabSession` tears the
namespaces down in every case.

The raw log (:func:`read_sweep_log`) is JSON lines, one object per line, with a
``record`` key:

``{"record": "load", "timestamp", "node", "proxy_mode", "services", "rules", "load_ns", "clear_ns", "render_ns", "command", "transactions"}``
    one rule load; ``load_ns`` is the wall-clock nanoseconds of the restore command
    (``ip netns exec`` included; for nftables the sum over its ``transactions``
    commands), ``clear_ns`` of the untimed emptying before it, ``render_ns`` of
    rendering the rules in Python. (Logs written before ``transactions`` existed lack
    it: one transaction.)
``{"record": "connect", "proxy_mode", "services", "connect_ns": [...], "stopped_by", "elapsed_ns", "errors", "loadavg_1min"}``
    one step's attempts in order; ``connect_ns[i]`` is attempt ``i``'s connect time in
    nanoseconds, ``-1`` when it failed; ``loadavg_1min`` is the machine's 1-minute load
    average before and after the step (the machine may be shared: a noise indicator).
``{"record": "skip", "proxy_mode", "services", "reason"}``
    a step that was not run.
``{"record": "header", ...}`` / ``{"record": "note", ...}``
    provenance; parsed, not turned into rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..collectors._source import BadLines, Source, check_on_bad_line, count_lines, read_source_text
from ..exceptions import LabError
from ..analysis.overhead import FIT_COLUMNS, SUMMARY_COLUMNS, fit_sweep, summarize_sweep
from ..schemas import empty_frame, schema_table, validate_frame
from .model import Endpoint, ServicePort
from .netns import LabSession, check_environment, run

__all__ = [
    "SWEEP_MODES",
    "SWEEP_SERVICE_COUNTS",
    "NFT_TRANSACTION_SERVICES",
    "SweepResult",
    "run_sweep",
    "summarize_sweep",
    "fit_sweep",
    "read_sweep_log",
    "sweep_frames",
    "record_sweep",
    "filler_service_ports",
    "tool_versions",
    "SUMMARY_COLUMNS",
    "FIT_COLUMNS",
]

SWEEP_MODES = ("iptables-legacy", "iptables-nft", "nftables")
SWEEP_SERVICE_COUNTS = (0, 1000, 5000, 10000, 20000, 40000)

CLIENT_NAMESPACE = "npa-lab-sweep-client"
NODE_NAMESPACE = "npa-lab-sweep-node"
POD_NAMESPACE = "npa-lab-sweep-pod"
NODE = "sweep-node"
POD = "sweep-pod"
CLIENT_IP = "198.18.96.2"
NODE_IP = "198.18.96.1"
NODE_POD_GATEWAY = "198.18.104.1"
POD_IP = "198.18.104.2"
CLUSTER_CIDR = "198.18.104.0/21"
FILLER_ENDPOINT_NETWORK = ipaddress.ip_network("198.18.105.0/24")
CLUSTER_IP_NETWORK = ipaddress.ip_network("198.19.128.0/17")
TARGET_PORTS = (8080, 8081)
TARGET_NODE_PORT = 30000
NODE_PORT_RANGE = (30000, 32767)
SERVICE_PORT = 80

#: Untimed input that empties the tables before each (cold) load.
CLEAR_INPUT = {
    "iptables-legacy": "*filter\nCOMMIT\n*nat\nCOMMIT\n",
    "iptables-nft": "*filter\nCOMMIT\n*nat\nCOMMIT\n",
    "nftables": "table ip kube-proxy\ndelete table ip kube-proxy\n",
}
LOAD_COMMANDS = {
    "iptables-legacy": ["iptables-legacy-restore"],
    "iptables-nft": ["iptables-nft-restore"],
    "nftables": ["nft", "-f", "-"],
}
NODE_SYSCTLS = (
    ("net.ipv4.ip_forward", 1),
    ("net.ipv4.conf.all.rp_filter", 0),
    ("net.ipv4.conf.default.rp_filter", 0),
)
VERSION_COMMANDS = {
    "iptables": ["iptables", "--version"],
    "iptables-legacy": ["iptables-legacy", "--version"],
    "iptables-nft": ["iptables-nft", "--version"],
    "nft": ["nft", "--version"],
    "conntrack": ["conntrack", "--version"],
    "kernel": ["uname", "-r"],
}
#: Service ports per ``nft -f`` transaction when loading the nftables table (see the module
#: docstring); measured at 10k Service ports: 1000 and 500 per transaction load in 18 s and
#: 17 s, against 77 s in one transaction.
NFT_TRANSACTION_SERVICES = 500
MAX_CONNECTIONS = 100_000
#: A load is extrapolated (quadratically in the Service count) to skip a step that would
#: exceed ``max_load_seconds`` only when it took at least this fraction of that limit.
PREDICT_FROM_FRACTION = 0.1
CONNECT_TIMEOUT_SECONDS = 1.0
STEP_CONNECT_SECONDS = 60.0
COMMAND_MARGIN_SECONDS = 15.0
POD_READY_SECONDS = 10.0
LOG_FORMAT = "npa-sweep-log/1"

#: The client loop run with ``python -c`` in the client namespace: argv = host port count
#: max_seconds timeout. Prints one JSON object; connect times in ns, -1 for a failure.
CLIENT_SCRIPT = r"""
import json, socket, sys, time
host, port, count, max_s, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
out, errors, stopped = [], {}, "count"
start = time.perf_counter_ns()
limit = start + int(max_s * 1e9)
for _ in range(count):
    if time.perf_counter_ns() >= limit:
        stopped = "max_seconds"
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        t0 = time.perf_counter_ns()
        s.connect((host, port))
        out.append(time.perf_counter_ns() - t0)
    except OSError as exc:
        out.append(-1)
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    finally:
        s.close()
print(json.dumps({"connect_ns": out, "errors": errors, "stopped_by": stopped,
                  "elapsed_ns": time.perf_counter_ns() - start}))
"""


#: The pod's server, run with ``python -c`` in the pod namespace: argv = deadline_seconds port...
#: Accepts with a deep backlog, reads until the client closes, closes; exits at the deadline.
#: (The lab's podserver is a ThreadingHTTPServer with the default listen backlog of 5: under a
#: burst of new connections its accept queue overflows and SYNs are dropped, which shows up as
#: 1 s connect timeouts. This server measures the rules, not the accept loop.)
POD_SERVER_SCRIPT = r"""
import selectors, socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
sel = selectors.DefaultSelector()
for port in sys.argv[2:]:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(port)))
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ, "listen")
print("listening " + " ".join(sys.argv[2:]), flush=True)
accepted = 0
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        if key.data == "listen":
            while True:
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                accepted += 1
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
        else:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
print("accepted %d" % accepted, flush=True)
"""


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` measured.

    Attributes
    ----------
    rule_loads : pandas.DataFrame
        Kind ``rule_loads``: one row per completed load.
    connect_latency : pandas.DataFrame
        Kind ``connect_latency``: one row per connection attempt.
    logs : dict of str to str
        The raw JSON-lines log of each mode (what :func:`read_sweep_log` parses).
    recording : dict
        Provenance: commands, tool versions, kernel, times, topology facts, skipped steps.
    """

    rule_loads: pd.DataFrame
    connect_latency: pd.DataFrame
    logs: dict[str, str]
    recording: dict[str, Any]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The steps that were not run, with the reason."""
        return list(self.recording.get("skipped", []))


# -- the cluster state ---------------------------------------------------------------------
def filler_service_ports(fillers: int) -> list[ServicePort]:
    """The target NodePort Service port plus ``fillers`` filler Service ports.

    Parameters
    ----------
    fillers : int
        Filler Service ports besides the target (the sweep's step; 0 is the baseline).

    Returns
    -------
    list of ServicePort
        ``fillers + 1`` ports: ``sweep/target:http`` (ClusterIP 198.19.128.1, node port
        30000, endpoints ``POD_IP:8080`` and ``POD_IP:8081``) first, then fillers
        ``sweep/f<k>`` whose ClusterIP cycles through 198.19.128.0/17 (the Service port
        number grows by one per lap, so that every ``(ClusterIP, port)`` is distinct),
        with 1 (even ``k``) or 2 (odd ``k``) endpoints in 198.18.105.0/24, and node
        ports 30001... while the range lasts (2767 of them), ClusterIP-only after.
    """
    if fillers < 0:
        raise ValueError(f"fillers must be >= 0, got {fillers}")
    target = ServicePort(
        "sweep", "target", "http", "tcp", str(CLUSTER_IP_NETWORK.network_address + 1),
        SERVICE_PORT, node_port=TARGET_NODE_PORT,
        endpoints=tuple(Endpoint(POD_IP, p, NODE, pod=POD) for p in TARGET_PORTS),
    )
    ports = [target]
    usable_ips = CLUSTER_IP_NETWORK.num_addresses - 3  # not .0, not the target's, not broadcast
    first_ip = CLUSTER_IP_NETWORK.network_address + 2
    n_endpoint_ips = FILLER_ENDPOINT_NETWORK.num_addresses - 2
    for k in range(1, fillers + 1):
        lap, slot = divmod(k - 1, usable_ips)
        node_port = NODE_PORT_RANGE[0] + k if NODE_PORT_RANGE[0] + k <= NODE_PORT_RANGE[1] else None
        endpoints = tuple(
            Endpoint(str(FILLER_ENDPOINT_NETWORK.network_address + 1 + (2 * k + e) % n_endpoint_ips),
                     8080 + e, NODE, pod=f"f{k}-{e}")
            for e in range(1 + k % 2)
        )
        ports.append(ServicePort(
            "sweep", f"f{k:05d}", "http", "tcp", str(first_ip + slot), SERVICE_PORT + lap,
            node_port=node_port, endpoints=endpoints,
        ))
    return ports


def _render(mode: str, ports: Sequence[ServicePort]) -> tuple[str, int]:
    """Rule text for ``mode`` and the number of rules in it."""
    if mode == "nftables":
        from .render_nftables import count_rules, render_nftables

        text = render_nftables(ports, NODE, cluster_cidr=CLUSTER_CIDR, node_ips=(NODE_IP,),
                               transaction_size=NFT_TRANSACTION_SERVICES)
        return text, count_rules(text)
    from .render_iptables import render_iptables

    text = render_iptables(ports, NODE, cluster_cidr=CLUSTER_CIDR)
    # every rule of every table, the built-in chains' jumps included (the -A lines)
    return text, sum(1 for line in text.splitlines() if line.startswith("-A "))


def _check_modes(modes: Sequence[str]) -> list[str]:
    out = []
    for mode in modes:
        if mode not in SWEEP_MODES:
            import difflib

            hint = difflib.get_close_matches(str(mode), SWEEP_MODES, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"modes: each must be one of {', '.join(SWEEP_MODES)}, got {mode!r}{extra}")
        out.append(mode)
    if len(set(out)) != len(out) or not out:
        raise ValueError(f"modes must be a non-empty sequence without repeats, got {list(modes)!r}")
    return out


# -- running ---------------------------------------------------------------------------------
class _Clock:
    """The total deadline of a sweep."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.end = time.monotonic() + max_seconds

    def left(self, what: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise LabError(f"sweep exceeded max_seconds={self.max_seconds:g} (before {what})")
        return left

    def timeout(self, limit: float, what: str) -> float:
        return max(0.1, min(limit, self.left(what)))

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _build(session: LabSession, clock: _Clock) -> subprocess.Popen[str]:
    """Client, node and pod namespaces, addresses, routes; start the pod server."""
    for ns in (CLIENT_NAMESPACE, NODE_NAMESPACE, POD_NAMESPACE):
        session.add_namespace(ns)
    for key, value in NODE_SYSCTLS:
        session.sysctl(NODE_NAMESPACE, key, value)
    session.add_veth(CLIENT_NAMESPACE, "eth0", NODE_NAMESPACE, "eth0")
    session.add_veth(NODE_NAMESPACE, "eth1", POD_NAMESPACE, "eth0")
    session.ip(CLIENT_NAMESPACE, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    session.ip(NODE_NAMESPACE, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
    session.ip(NODE_NAMESPACE, "addr", "add", f"{NODE_POD_GATEWAY}/24", "dev", "eth1")
    session.ip(POD_NAMESPACE, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
    for ns, dev in ((CLIENT_NAMESPACE, "eth0"), (NODE_NAMESPACE, "eth0"), (NODE_NAMESPACE, "eth1"),
                    (POD_NAMESPACE, "eth0")):
        session.ip(ns, "link", "set", dev, "up")
    session.ip(POD_NAMESPACE, "route", "add", "default", "via", NODE_POD_GATEWAY)
    deadline = min(3600.0, clock.left("starting the pod server") + 60.0)
    args = [sys.executable, "-I", "-c", POD_SERVER_SCRIPT, f"{deadline:.0f}", *map(str, TARGET_PORTS)]
    server = session.spawn(POD_NAMESPACE, args)
    import select

    end = time.monotonic() + POD_READY_SECONDS
    line = ""
    while time.monotonic() < end and not line:
        ready, _, _ = select.select([server.stdout], [], [], 0.2)
        if ready:
            line = server.stdout.readline().strip()  # type: ignore[union-attr]
        elif server.poll() is not None:
            break
    if not line.startswith("listening"):
        raise LabError(f"the sweep's pod server did not start: {line!r}")
    return server


def _connect(session: LabSession, clock: _Clock, connections: int) -> dict[str, Any]:
    limit = clock.timeout(STEP_CONNECT_SECONDS, "connecting")
    proc = session.exec(
        CLIENT_NAMESPACE,
        [sys.executable, "-I", "-c", CLIENT_SCRIPT, NODE_IP, str(TARGET_NODE_PORT), str(connections),
         f"{limit:.3f}", str(CONNECT_TIMEOUT_SECONDS)],
        timeout=limit + COMMAND_MARGIN_SECONDS,
    )
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise LabError(f"the sweep's client printed no JSON: {proc.stdout[:200]!r} {proc.stderr[-500:]!r}") from None
    return out


def _load_parts(mode: str, text: str) -> list[str]:
    """What is fed to the load command, one item per command run (nftables: per transaction)."""
    if mode == "nftables":
        from .render_nftables import split_transactions

        return split_transactions(text)
    return [text]


def _load(session: LabSession, mode: str, parts: Sequence[str], timeout: float) -> int:
    """Run the load command once per part, in order; wall-clock ns of all of them together.

    Raises :class:`LabError` ("timed out") when they take more than ``timeout`` seconds.
    """
    t0 = time.perf_counter_ns()
    end = time.monotonic() + timeout
    for number, part in enumerate(parts, start=1):
        left = end - time.monotonic()
        if left <= 0:
            raise LabError(f"command timed out after {timeout} s: the load of {mode} rules "
                           f"(before transaction {number} of {len(parts)})")
        session.exec(NODE_NAMESPACE, LOAD_COMMANDS[mode], input=part, timeout=left)
    return time.perf_counter_ns() - t0


def _sweep_mode(
    mode: str, counts: Sequence[int], connections: int, clock: _Clock, max_load_seconds: float,
    rendered: dict[tuple[str, int], tuple[str, int, int]], log: list[dict[str, Any]], skipped: list[dict[str, Any]],
) -> None:
    with LabSession() as session:
        _build(session, clock)
        previous: tuple[int, float] | None = None  # (services, load seconds) of the last load
        stop_reason: str | None = None
        for fillers in counts:
            services = fillers + 1  # the target is always programmed
            # extrapolate only from a load long enough to be dominated by the rules, not by
            # starting the restore process
            if (stop_reason is None and previous is not None and services > previous[0]
                    and previous[1] >= max_load_seconds * PREDICT_FROM_FRACTION):
                predicted = previous[1] * (services / previous[0]) ** 2
                if predicted > max_load_seconds:
                    stop_reason = (
                        f"load predicted to take {predicted:.0f} s (the {previous[0]}-service load took "
                        f"{previous[1]:.1f} s; extrapolated quadratically), over max_load_seconds="
                        f"{max_load_seconds:g}"
                    )
            if stop_reason is not None:
                record = {"record": "skip", "proxy_mode": mode, "services": services, "reason": stop_reason}
                log.append(record)
                skipped.append(record)
                continue
            family = "nftables" if mode == "nftables" else "iptables"
            key = (family, fillers)
            if key not in rendered:
                clock.left(f"rendering {services} services")
                for old in [k for k in rendered if k[0] != family]:
                    del rendered[old]  # the other family's texts are not needed again
                t0 = time.perf_counter_ns()
                rendered[key] = (*_render(mode, filler_service_ports(fillers)), time.perf_counter_ns() - t0)
            text, rules, render_ns = rendered[key]
            t0 = time.perf_counter_ns()
            session.exec(NODE_NAMESPACE, LOAD_COMMANDS[mode], input=CLEAR_INPUT[mode],
                         timeout=clock.timeout(max_load_seconds, "clearing rules"))
            clear_ns = time.perf_counter_ns() - t0
            parts = _load_parts(mode, text)
            stamp = _utc_now()
            timeout = clock.timeout(max_load_seconds, f"loading {services} services")
            try:
                load_ns = _load(session, mode, parts, timeout)
            except LabError as exc:
                if "timed out" not in str(exc) or timeout < max_load_seconds:
                    raise
                stop_reason = (f"load of {services} services took longer than "
                               f"max_load_seconds={max_load_seconds:g} and was killed")
                record = {"record": "skip", "proxy_mode": mode, "services": services, "reason": stop_reason}
                log.append(record)
                skipped.append(record)
                continue
            previous = (services, load_ns / 1e9)
            log.append({
                "record": "load", "timestamp": stamp, "node": NODE, "proxy_mode": mode,
                "services": services, "rules": rules, "load_ns": load_ns, "clear_ns": clear_ns, "render_ns": render_ns,
                "command": " ".join(LOAD_COMMANDS[mode]), "transactions": len(parts),
            })
            session.exec(NODE_NAMESPACE, ["conntrack", "-F"], timeout=clock.timeout(30, "conntrack -F"))
            load_before = os.getloadavg()[0]
            out = _connect(session, clock, connections)
            log.append({"record": "connect", "proxy_mode": mode, "services": services, **out,
                        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]})


def run_sweep(
    modes: Sequence[str] = SWEEP_MODES,
    service_counts: Sequence[int] = SWEEP_SERVICE_COUNTS,
    connections: int = 2000,
    *,
    max_seconds: float = 300.0,
    max_load_seconds: float = 120.0,
) -> SweepResult:
    """Run the sweep: for each mode and Service count, load the rules and time new connections.

    Parameters
    ----------
    modes : sequence of str
        Proxy modes, from :data:`SWEEP_MODES`.
    service_counts : sequence of int
        Filler Service ports at each step (ascending; 0 is the baseline). Every step
        also programs the target NodePort Service, so the frames' ``services`` column
        is the step's count plus one (see :func:`filler_service_ports`).
    connections : int
        New TCP connections per step (at most 100,000).
    max_seconds : float
        Deadline of the whole sweep in seconds; beyond it :class:`LabError` is raised
        (after the namespaces are torn down).
    max_load_seconds : float
        Limit of one rule load in seconds. A load that exceeds it is killed, and a
        step whose load is predicted to exceed it (the previous load time, when that
        was at least a tenth of the limit, scaled by the square of the Service
        ratio) is not run; in both cases that mode's remaining steps are skipped and
        the log records why. (nft 1.0.6 on kernel 6.18 loads kube-proxy's table in a
        time that grows faster than quadratically even in transactions of
        :data:`NFT_TRANSACTION_SERVICES` ports, since creating each anonymous map
        scans every set of the table: 17-18 s at 10k and 65-79 s at 20k Service ports; a
        40k load was killed after 420 s. So with the defaults the 40k nftables step
        is skipped.)

    Returns
    -------
    SweepResult

    Raises
    ------
    LabError
        Not root, a binary or kernel feature missing, a command failed, or a deadline passed.
    ValueError
        For an unknown mode, a negative or unsorted Service count, or a bad ``connections``.
    """
    modes = _check_modes(modes)
    counts = [int(n) for n in service_counts]
    if not counts or any(n < 0 for n in counts) or counts != sorted(set(counts)):
        raise ValueError(f"service_counts must be distinct, ascending and >= 0, got {list(service_counts)!r}")
    if not 0 < int(connections) <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be in [1, {MAX_CONNECTIONS}], got {connections!r}")
    if not max_seconds > 0 or not max_load_seconds > 0:
        raise ValueError("max_seconds and max_load_seconds must be positive")
    check_environment(modes)
    clock = _Clock(float(max_seconds))
    started = _utc_now()
    rendered: dict[tuple[str, int], tuple[str, int, int]] = {}
    logs: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    for mode in modes:
        log: list[dict[str, Any]] = [{
            "record": "header", "format": LOG_FORMAT, "proxy_mode": mode, "started": _utc_now(),
            "connections": int(connections), "service_counts": counts,
        }]
        try:
            _sweep_mode(mode, counts, int(connections), clock, float(max_load_seconds), rendered, log, skipped)
        except LabError as exc:
            if clock.expired() and "exceeded max_seconds" not in str(exc):
                # a command the total deadline cut short
                raise LabError(f"sweep exceeded max_seconds={clock.max_seconds:g} ({exc})") from None
            raise
        finally:
            logs[mode] = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in log)
    frames = {kind: [] for kind in ("rule_loads", "connect_latency")}
    for mode in modes:
        for kind, df in read_sweep_log(logs[mode]).items():
            frames[kind].append(df)
    result_frames = {kind: _concat(dfs, kind) for kind, dfs in frames.items()}
    recording = {
        "started": started,
        "finished": _utc_now(),
        "commands": {
            "load": {m: " ".join(LOAD_COMMANDS[m]) + (
                f" (once per transaction of at most {NFT_TRANSACTION_SERVICES} Service ports, "
                "render_nftables(transaction_size=...); load_ns is the sum)" if m == "nftables" else "")
                for m in modes},
            "clear_before_load": {m: CLEAR_INPUT[m] for m in modes},
            "conntrack_flush": "conntrack -F (in the node namespace, before each step)",
            "client": f"ip netns exec {CLIENT_NAMESPACE} {sys.executable} -I -c CLIENT_SCRIPT "
                      f"{NODE_IP} {TARGET_NODE_PORT} <connections> <max_seconds> {CONNECT_TIMEOUT_SECONDS}",
            "pod_server": f"ip netns exec {POD_NAMESPACE} {sys.executable} -I -c POD_SERVER_SCRIPT "
                          f"<deadline> {' '.join(map(str, TARGET_PORTS))}",
            "CLIENT_SCRIPT": CLIENT_SCRIPT,
            "POD_SERVER_SCRIPT": POD_SERVER_SCRIPT,
        },
        "tool_versions": tool_versions(),
        "parameters": {
            "modes": modes, "service_counts": counts, "connections": int(connections),
            "max_seconds": float(max_seconds), "max_load_seconds": float(max_load_seconds),
            "connect_timeout_seconds": CONNECT_TIMEOUT_SECONDS,
            "nft_transaction_services": NFT_TRANSACTION_SERVICES,
        },
        "topology": {
            "namespaces": [CLIENT_NAMESPACE, NODE_NAMESPACE, POD_NAMESPACE],
            "client_ip": CLIENT_IP, "node_ip": NODE_IP, "pod_ip": POD_IP, "cluster_cidr": CLUSTER_CIDR,
            "target": f"{NODE_IP}:{TARGET_NODE_PORT} -> {POD_IP}:{TARGET_PORTS[0]}, {POD_IP}:{TARGET_PORTS[1]}",
            "cluster_ips": str(CLUSTER_IP_NETWORK), "filler_endpoints": str(FILLER_ENDPOINT_NETWORK),
            "filler_node_ports": f"{NODE_PORT_RANGE[0] + 1}-{NODE_PORT_RANGE[1]} (then ClusterIP only)",
            "links": "veth client-node, veth node-pod; no bridge",
        },
        "skipped": skipped,
    }
    return SweepResult(result_frames["rule_loads"], result_frames["connect_latency"], logs, recording)


def tool_versions() -> dict[str, str]:
    """Versions of the tools the sweep uses (``"missing"`` for an absent binary)."""
    out = {}
    for name, args in VERSION_COMMANDS.items():
        if shutil.which(args[0]) is None:
            out[name] = "missing"
            continue
        proc = run(args, check=False, timeout=10)
        out[name] = (proc.stdout or proc.stderr).strip()
    return out


def _concat(frames: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame(kind)
    out = pd.concat(frames, ignore_index=True)
    for col in ("node", "proxy_mode"):
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("str").astype("category")
    out.attrs = {}
    return validate_frame(out, kind)


# -- the raw log ----------------------------------------------------------------------------
_RECORD_FIELDS = {
    "load": ("timestamp", "node", "proxy_mode", "services", "rules", "load_ns"),
    "connect": ("proxy_mode", "services", "connect_ns"),
    "skip": ("proxy_mode", "services", "reason"),
    "header": ("format",),
    "note": (),
}


def read_sweep_log(source: Source, *, on_bad_line: str = "raise") -> dict[str, pd.DataFrame]:
    """Parse the sweep's raw JSON-lines log into its two frames.

    Parameters
    ----------
    source : path, file object, str or bytes
        The log (see the module docstring for the records), possibly gzip-compressed.
    on_bad_line : {"raise", "warn", "skip"}
        What to do with a line that is not a known record: raise
        :class:`~npanalytics.ParseError`, warn once, or skip silently; skipped lines
        are counted in the report.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``{"rule_loads": ..., "connect_latency": ...}``; each frame carries the
        :class:`ParseReport` in ``df.attrs["parse_report"]``.

    Notes
    -----
    ``rule_loads``:

    {rule_loads}

    ``connect_latency`` (``connect_seconds`` is NaN and ``ok`` False for a failed attempt):

    {connect_latency}
    """
    check_on_bad_line(on_bad_line)
    name, text = read_source_text(source)
    bad = BadLines(name, on_bad_line)
    loads: dict[str, list[Any]] = {c: [] for c in ("timestamp", "node", "proxy_mode", "services", "rules", "load_seconds")}
    steps: list[tuple[str, int, np.ndarray]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.bad(lineno, "a JSON object", line)
            continue
        kind = record.get("record") if isinstance(record, dict) else None
        if kind not in _RECORD_FIELDS:
            bad.bad(lineno, f"a record of type {', '.join(_RECORD_FIELDS)}", line)
            continue
        missing = [f for f in _RECORD_FIELDS[kind] if f not in record]
        if missing:
            bad.bad(lineno, f"a {kind} record with {', '.join(missing)}", line)
            continue
        if kind == "load":
            try:
                stamp = pd.Timestamp(record["timestamp"])
                if stamp.tzinfo is None:
                    raise ValueError("naive")
                values = (int(record["services"]), int(record["rules"]), int(record["load_ns"]))
                if min(values) < 0 or not isinstance(record["proxy_mode"], str):
                    raise ValueError("negative")
            except (ValueError, TypeError):
                bad.bad(lineno, "a load record with a UTC timestamp and non-negative integers", line)
                continue
            loads["timestamp"].append(stamp.tz_convert("UTC"))
            loads["node"].append(str(record["node"]))
            loads["proxy_mode"].append(record["proxy_mode"])
            loads["services"].append(values[0])
            loads["rules"].append(values[1])
            loads["load_seconds"].append(values[2] / 1e9)
        elif kind == "connect":
            try:
                ns = np.asarray(record["connect_ns"], dtype="int64")
                services = int(record["services"])
                if ns.ndim != 1 or (ns < -1).any() or services < 0 or not isinstance(record["proxy_mode"], str):
                    raise ValueError("bad values")
            except (ValueError, TypeError, OverflowError):
                bad.bad(lineno, "a connect record with a list of integer nanoseconds (-1 = failed)", line)
                continue
            steps.append((record["proxy_mode"], services, ns))
    report = bad.report("sweep-log", count_lines(text))

    rule_loads = pd.DataFrame({
        "timestamp": pd.Series(pd.DatetimeIndex(loads["timestamp"], dtype="datetime64[ns, UTC]")),
        "node": pd.Series(loads["node"], dtype="str").astype("category"),
        "proxy_mode": pd.Series(loads["proxy_mode"], dtype="str").astype("category"),
        "services": pd.Series(loads["services"], dtype="int64"),
        "rules": pd.Series(loads["rules"], dtype="int64"),
        "load_seconds": pd.Series(loads["load_seconds"], dtype="float64"),
    })
    sizes = [len(ns) for _, _, ns in steps]
    all_ns = np.concatenate([ns for _, _, ns in steps]) if steps else np.array([], dtype="int64")
    ok = all_ns >= 0
    connect_latency = pd.DataFrame({
        "proxy_mode": pd.Series(np.repeat([m for m, _, _ in steps], sizes) if steps else [], dtype="str").astype("category"),
        "services": pd.Series(np.repeat([s for _, s, _ in steps], sizes), dtype="int64"),
        "attempt": pd.Series(np.concatenate([np.arange(k) for k in sizes]) if steps else [], dtype="int64"),
        "connect_seconds": pd.Series(np.where(ok, all_ns / 1e9, np.nan), dtype="float64"),
        "ok": pd.Series(ok, dtype="bool"),
    })
    out = {"rule_loads": validate_frame(rule_loads, "rule_loads"),
           "connect_latency": validate_frame(connect_latency, "connect_latency")}
    for df in out.values():
        df.attrs["parse_report"] = report
    return out


if read_sweep_log.__doc__:
    read_sweep_log.__doc__ = read_sweep_log.__doc__.replace(
        "{rule_loads}", schema_table("rule_loads").replace("\n", "\n    ")
    ).replace("{connect_latency}", schema_table("connect_latency").replace("\n", "\n    "))


# -- analysis: the statistics live in npanalytics.analysis.overhead (the lab imports analysis, never
# the reverse); re-exported here for the lab's CLI, benchmarks and existing callers.


# -- recording ------------------------------------------------------------------------------
DATASET_NAME = "proxy-mode-sweep"


def _raw_name(mode: str) -> str:
    return f"raw/{mode}.jsonl"


def sweep_frames(logs: Mapping[str, bytes | str]) -> dict[str, pd.DataFrame]:
    """Both frames from the raw logs (``{relative path or mode: log}``), concatenated in order."""
    parts: dict[str, list[pd.DataFrame]] = {"rule_loads": [], "connect_latency": []}
    for content in logs.values():
        for kind, df in read_sweep_log(content if isinstance(content, bytes) else content.encode()).items():
            parts[kind].append(df)
    return {kind: _concat(dfs, kind) for kind, dfs in parts.items()}


def record_sweep(result: SweepResult, path: str | Path, *, overwrite: bool = False,
                 name: str = DATASET_NAME) -> Path:
    """Write a sweep as a dataset folder (frames, raw logs, provenance).

    Parameters
    ----------
    result : SweepResult
        From :func:`run_sweep`.
    path : path
        The dataset folder, e.g. ``datasets/proxy-mode-sweep``.
    overwrite : bool
        Replace an existing folder.
    name : str
        The dataset name.

    Returns
    -------
    Path
        ``path``. Frames ``rule_loads`` and ``connect_latency`` are re-derived from
        the raw logs here (so the saved frames are exactly what
        :func:`read_sweep_log` gives); when the reader is registered in
        :data:`npanalytics.datasets.DERIVERS` the manifest names the derivation.
    """
    from ..datasets import DERIVERS, Dataset, Derivation

    raw = {_raw_name(mode): text.encode() for mode, text in result.logs.items()}
    frames = sweep_frames(raw)
    derivations: dict[str, list[Derivation]] = {}
    if "read_sweep_log" in DERIVERS:
        derivations = {kind: [Derivation("read_sweep_log", rel, kind) for rel in raw]
                       for kind in ("rule_loads", "connect_latency")}
    description = (
        "Proxy-mode sweep of the npanalytics lab: for iptables-legacy, iptables-nft and nftables "
        "(kube-proxy rules rendered by npanalytics.lab, cold-loaded into a node namespace), the "
        "wall-clock rule-load time and the TCP connect() latency of new connections from a client "
        "namespace to a NodePort, against the number of Service ports. Raw per-attempt timings "
        "(ns) in raw/<mode>.jsonl; frames derive from them with npanalytics.lab.sweep.read_sweep_log."
    )
    dataset = Dataset(
        name=name, description=description, frames=frames,
        kinds={"rule_loads": "rule_loads", "connect_latency": "connect_latency"},
        recording=dict(result.recording), raw=raw, derivations=derivations,
    )
    return dataset.save(path, overwrite=overwrite)
