"""Run a lab scenario end to end: build, program, drive traffic, collect raw outputs, tear down.

:func:`run_scenario` returns a :class:`RunResult` holding, per node, the raw
``conntrack -L`` / ``conntrack -S`` / rule dumps and the timed rule loads, the
pods' own counts (ground truth) and the load generator's report. Everything the
run created is removed before it returns, also on error or interruption.
:func:`record_node_sample` writes one node's dumps as a dataset folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..exceptions import LabError
from .netns import LabSession, check_environment, run
from .scenario import Scenario, load_scenario
from .topology import LOAD_COMMANDS, SAVE_COMMANDS, TRAFFIC_SCRIPT, Renderer, RuleLoad, Topology

__all__ = ["RunResult", "lab_up", "serving_metrics", "run_scenario", "record_node_sample", "write_run"]

TRAFFIC_MARGIN_SECONDS = 20.0


@dataclasses.dataclass
class RunResult:
    """Everything one lab run produced.

    Attributes
    ----------
    scenario : Scenario
        What ran.
    started, finished : datetime.datetime
        UTC wall-clock bounds of the run.
    node_ips, pod_ips : dict of str to str
        The addresses used.
    loads : list of RuleLoad
        Every rule load ("sync") with its wall-clock ``duration_seconds`` and ``rule_count``.
    dumps : dict of str to dict of str to str
        Per node, file name to raw text: ``conntrack.txt`` (``conntrack -L`` stdout then its
        stderr summary line), ``conntrack-stats.txt`` (``conntrack -S``), and
        ``iptables-save.txt`` (``iptables-*-save -c``) or ``nft-ruleset.txt``.
    pod_counts : dict
        Per pod, the podserver's ``{"requests": {client: n}, "connections": {client: n}}``.
    traffic : list of dict
        The load generator's report per traffic segment (segments split at events).
    events : list of dict
        The events applied, with the request index or second they were applied at, the UTC
        ``time``, the ``pod_state`` flags after it and the pods' ``pod_counts`` just after
        the rules were reloaded.
    commands : dict of str to str
        The commands that produced the dumps and loaded the rules, per proxy mode.
    run_id : str
        The tag in this run's namespace names.
    namespaces : list of str
        The namespaces the run used (all deleted when it returned).
    traffic_started, traffic_finished : datetime.datetime
        UTC bounds of the traffic (after the build, before the dumps).
    dumps_before_events : list of dict
        Per event, per node, the rule dump (with counters) taken just before the reload
        that applied it (a reload resets the counters). With an ``at_second`` event the
        connections opened between that dump and the node's reload are in neither dump.
    metrics_scrapes : int or None
        How many times the live metrics were scraped during the run (None when they
        were not served).
    """

    scenario: Scenario
    started: dt.datetime
    finished: dt.datetime
    node_ips: dict[str, str]
    pod_ips: dict[str, str]
    loads: list[RuleLoad]
    dumps: dict[str, dict[str, str]]
    pod_counts: dict[str, Any]
    traffic: list[dict[str, Any]]
    events: list[dict[str, Any]]
    commands: dict[str, Any]
    run_id: str = ""
    namespaces: list[str] = dataclasses.field(default_factory=list)
    traffic_started: dt.datetime | None = None
    traffic_finished: dt.datetime | None = None
    dumps_before_events: list[dict[str, dict[str, str]]] = dataclasses.field(default_factory=list)
    metrics_scrapes: int | None = None

    def requests_per_pod(self) -> dict[str, int]:
        """Requests each pod counted itself (all client addresses together)."""
        return {pod: sum(c["requests"].values()) for pod, c in self.pod_counts.items()}

    def connections_per_pod(self) -> dict[str, int]:
        """Connections each pod counted itself."""
        return {pod: sum(c["connections"].values()) for pod, c in self.pod_counts.items()}

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (no raw dumps, no per-connection latencies)."""
        latencies = sorted(x for seg in self.traffic for x in seg["connect_latency_seconds"])
        outcomes: dict[str, int] = {}
        for seg in self.traffic:
            for key, value in seg["outcomes"].items():
                outcomes[key] = outcomes.get(key, 0) + value
        return {
            "scenario": self.scenario.name,
            "run_id": self.run_id,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "node_ips": self.node_ips,
            "pod_ips": self.pod_ips,
            "requests_per_pod": self.requests_per_pod(),
            "connections_per_pod": self.connections_per_pod(),
            "outcomes": outcomes,
            "connect_latency_median_seconds": latencies[len(latencies) // 2] if latencies else None,
            "rule_loads": [dataclasses.asdict(x) for x in self.loads],
            "events": self.events,
        }


def _as_scenario(spec: Scenario | str | os.PathLike[str] | Mapping[str, Any]) -> Scenario:
    return spec if isinstance(spec, Scenario) else load_scenario(spec)


def _check_port(port: int | None) -> None:
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise LabError(f"serve_metrics_port must be an int in [0, 65535] (0: a free port); got {port!r}")


@contextlib.contextmanager
def serving_metrics(
    topology: Topology, port: int, on_url: Callable[[str], None] | None = None
) -> Iterator[Any]:
    """Serve the running lab's metrics on ``http://127.0.0.1:<port>/metrics`` during a ``with`` block.

    The text (:func:`~npanalytics.lab.record.live_metrics_text`: kube-state-metrics plus
    every node's kube-proxy series with ``instance="<node>"``) is rebuilt after every rule
    load of ``topology`` (from a snapshot taken at the load, in a background thread, so the
    next node's reload is not delayed), so a scrape sees the state after the last load or
    event within milliseconds; a scrape itself only sends the prepared text. A rendering
    failure is served as HTTP 500 and raised as LabError when the block ends.

    Parameters
    ----------
    topology : Topology
        A built topology.
    port : int
        TCP port on 127.0.0.1; 0 picks a free one.
    on_url : callable, optional
        Called with the scrape URL once the server listens.

    Yields
    ------
    MetricsServer
        The server (``server.scrapes`` counts the scrapes served).
    """
    from .metrics import serve_metrics
    from .record import live_metrics_text

    _check_port(port)
    current = [live_metrics_text(_snapshot(topology))]
    latest: list[Any] = [None]
    errors: list[BaseException] = []
    wake, stop = threading.Event(), threading.Event()

    def changed() -> None:
        # runs in the thread that loaded the rules: take a cheap snapshot, render elsewhere,
        # so that serving does not delay the next node's reload (~7 ms per render)
        latest[0] = _snapshot(topology)
        wake.set()

    def render() -> None:
        while not stop.is_set():
            wake.wait()
            wake.clear()
            snap = latest[0]
            if snap is not None and not stop.is_set():
                try:
                    current[0] = live_metrics_text(snap)
                except Exception as exc:  # served as HTTP 500, raised when the block ends
                    errors.append(exc)

    def text() -> str:
        if errors:
            raise errors[0]
        return current[0]

    try:
        server, url = serve_metrics(text, host="127.0.0.1", port=port)
    except OSError as exc:
        raise LabError(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
    renderer = threading.Thread(target=render, name="npa-metrics-render", daemon=True)
    renderer.start()
    topology.listeners.append(changed)
    try:
        if on_url is not None:
            on_url(url)
        yield server
    finally:
        topology.listeners.remove(changed)
        stop.set()
        wake.set()
        renderer.join(timeout=10)
        server.stop()
    if errors:
        raise LabError(f"the live metrics could not be rendered: {errors[0]!r}") from errors[0]


def _snapshot(topology: Topology) -> Any:
    """What :func:`~npanalytics.lab.record.live_metrics_text` reads, copied now."""
    import types

    flags = topology.pod_state_flags()
    return types.SimpleNamespace(
        scenario=topology.scenario, events=[dict(e) for e in topology.events], loads=list(topology.loads),
        rules_text=dict(topology.rules_text), pod_state_flags=lambda: flags,
    )


@contextlib.contextmanager
def lab_up(
    spec: Scenario | str | os.PathLike[str] | Mapping[str, Any],
    *,
    renderer: Renderer | None = None,
    run_id: str | None = None,
    serve_metrics_port: int | None = None,
    on_metrics_url: Callable[[str], None] | None = None,
) -> Iterator[Topology]:
    """Build a scenario's data plane for the duration of a ``with`` block, then tear it down.

    Checks the environment first (:func:`~npanalytics.lab.netns.check_environment`).
    ``run_id`` tags the namespace names (default: random). With ``serve_metrics_port``
    the lab's metrics are served on 127.0.0.1 from the end of the build to the end of
    the block (:func:`serving_metrics`; ``topology.metrics_server`` is the server,
    ``on_metrics_url`` gets its URL).
    """
    scenario = _as_scenario(spec)
    _check_port(serve_metrics_port)
    check_environment(scenario.proxy_modes)
    with LabSession() as session:
        topology = Topology(scenario, session, renderer=renderer, run_id=run_id)
        topology.build()
        if serve_metrics_port is None:
            yield topology
            return
        with serving_metrics(topology, serve_metrics_port, on_metrics_url) as server:
            topology.metrics_server = server
            yield topology


def _traffic_args(topology: Topology, requests: int, max_seconds: float) -> list[str]:
    sc = topology.scenario
    _, port = sc.target_service()
    args = [sys.executable, TRAFFIC_SCRIPT, "run"]
    for node, weight in sc.traffic.node_weights.items():
        if weight > 0:
            args += ["--target", f"{topology.addresses.node_ips[node]}:{port.node_port}:{weight:g}"]
    for ip in topology.addresses.client_ips:
        args += ["--source", ip]
    args += ["--mode", sc.traffic.mode,
             "--requests-per-connection", str(sc.traffic.requests_per_connection),
             "--connections", str(sc.traffic.connections),
             "--requests", str(requests), "--max-seconds", f"{max_seconds:.3f}"]
    return args


def _drive(topology: Topology) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the traffic, split at request-indexed events; second-indexed events on a timer."""
    sc = topology.scenario
    total, budget = sc.traffic.requests, sc.traffic.max_seconds
    by_request = sorted((e for e in sc.events if e.at_request is not None), key=lambda e: e.at_request)
    applied: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def apply(event: Any, **where: Any) -> None:
        with lock:
            when = dt.datetime.now(dt.timezone.utc)
            loads = topology.apply_event(event.pod, event.action)
            counts = topology.pod_counts()
            applied.append({"pod": event.pod, "action": event.action, **where,
                            "time": when.isoformat(),
                            "load_seconds": [x.duration_seconds for x in loads],
                            "pod_state": topology.pod_state_flags(),
                            "pod_counts": counts})

    def timed(event: Any) -> None:
        try:
            apply(event, at_second=event.at_second)
        except BaseException as exc:  # reported after the traffic ends
            errors.append(exc)

    start = time.monotonic()
    timers = [threading.Timer(e.at_second, timed, args=(e,)) for e in sc.events if e.at_second is not None]
    for t in timers:
        t.daemon = True
        t.start()
    reports = []
    try:
        done = 0
        bounds = [e.at_request for e in by_request] + [total]
        for i, bound in enumerate(bounds):
            if bound > done:
                left = budget - (time.monotonic() - start)
                if left <= 0:
                    break
                proc = topology.session.exec(
                    topology.clients_ns, _traffic_args(topology, bound - done, left),
                    timeout=left + TRAFFIC_MARGIN_SECONDS,
                )
                report = json.loads(proc.stdout)
                reports.append(report)
                done += report["requests_sent"]
                if report["stopped_by"] != "requests":
                    break
            if i < len(by_request):
                apply(by_request[i], at_request=bound)
    finally:
        for t in timers:
            t.cancel()
        for t in timers:
            t.join(timeout=TRAFFIC_MARGIN_SECONDS)
    if errors:
        raise LabError(f"an event failed during the run: {errors[0]}") from errors[0]
    return reports, applied


def run_scenario(
    spec: Scenario | str | os.PathLike[str] | Mapping[str, Any],
    *,
    out: str | os.PathLike[str] | None = None,
    renderer: Renderer | None = None,
    run_id: str | None = None,
    serve_metrics_port: int | None = None,
    on_metrics_url: Callable[[str], None] | None = None,
) -> RunResult:
    """Build the scenario, send its traffic, collect the raw outputs, tear everything down.

    Parameters
    ----------
    spec : Scenario, path, YAML text, bundled scenario name or mapping
        The scenario (see :mod:`npanalytics.lab.scenario`).
    out : path, optional
        Also write the result there (see :func:`write_run`).
    renderer : callable, optional
        Override the rule renderer (tests).
    run_id : str, optional
        Tag in the namespace names (``npa-lab-<run_id>-...``); default random.
    serve_metrics_port : int, optional
        Serve the live kube-state-metrics and kube-proxy metrics on
        ``http://127.0.0.1:<port>/metrics`` while the lab is up (0: a free port; see
        :func:`serving_metrics`).
    on_metrics_url : callable, optional
        Called with the metrics URL once it is served (before the traffic starts).

    Returns
    -------
    RunResult
    """
    scenario = _as_scenario(spec)
    started = dt.datetime.now(dt.timezone.utc)
    with lab_up(scenario, renderer=renderer, run_id=run_id, serve_metrics_port=serve_metrics_port,
                on_metrics_url=on_metrics_url) as topology:
        traffic_started = dt.datetime.now(dt.timezone.utc)
        traffic, events = _drive(topology)
        traffic_finished = dt.datetime.now(dt.timezone.utc)
        pod_counts = topology.pod_counts()
        dumps = {node.name: topology.dump_node(node.name) for node in scenario.nodes}
        dumps_before = list(topology.dumps_before_events)
        rules_files = {node.name: topology.rules_file_name(node.name) for node in scenario.nodes}
        addresses = topology.addresses
        loads = list(topology.loads)
        namespaces = topology.namespaces()
        server = topology.metrics_server
    result = RunResult(
        scenario=scenario,
        started=started,
        finished=dt.datetime.now(dt.timezone.utc),
        node_ips=dict(addresses.node_ips),
        pod_ips=dict(addresses.pod_ips),
        loads=loads,
        dumps=dumps,
        pod_counts=pod_counts,
        traffic=traffic,
        events=events,
        commands={
            "load": {m: " ".join(c) for m, c in LOAD_COMMANDS.items()},
            "save": {m: " ".join(c) for m, c in SAVE_COMMANDS.items()},
            "conntrack": "conntrack -L 2>&1",
            "conntrack_stats": "conntrack -S",
            "namespace": "ip netns exec npa-lab-<run_id>-n-<node> <command>",
        },
        run_id=topology.run_id,
        namespaces=namespaces,
        traffic_started=traffic_started,
        traffic_finished=traffic_finished,
        dumps_before_events=[
            {node: {rules_files[node]: text} for node, text in per_node.items()} for per_node in dumps_before
        ],
        metrics_scrapes=None if server is None else server.scrapes,
    )
    if out is not None:
        write_run(result, out)
    return result


def write_run(result: RunResult, out: str | os.PathLike[str]) -> Path:
    """Write a run: ``<out>/<node>/<dump files>``, ``ground_truth.json``, ``run.json``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for node, files in result.dumps.items():
        (root / node).mkdir(exist_ok=True)
        for name, text in files.items():
            (root / node / name).write_text(text)
    (root / "ground_truth.json").write_text(json.dumps(result.pod_counts, indent=2, sort_keys=True) + "\n")
    summary = result.summary()
    summary["scenario_spec"] = result.scenario.to_dict()
    summary["traffic"] = result.traffic
    summary["commands"] = result.commands
    (root / "run.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return root


def _version(args: list[str]) -> str:
    try:
        proc = run(args, check=False, timeout=10)
    except LabError as exc:
        return f"unavailable ({exc})"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr) else ""


def _sum_counts(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))


def _traffic_summary(sc: Scenario, result: RunResult) -> str:
    _, port = sc.target_service()
    targets = " ".join(f"--target {result.node_ips[n]}:{port.node_port}:{w:g}"
                       for n, w in sc.traffic.node_weights.items() if w > 0)
    return (f"{targets} --source <each of {sc.clients.count} client addresses> --mode {sc.traffic.mode} "
            f"--requests-per-connection {sc.traffic.requests_per_connection} "
            f"--requests {sc.traffic.requests} --max-seconds {sc.traffic.max_seconds:g}")


def record_node_sample(result: RunResult, node: str, directory: str | os.PathLike[str]) -> Path:
    """Write one node's raw dumps and the run's ground truth as a dataset folder.

    Layout: ``raw/iptables-save.txt`` (or ``raw/nft-ruleset.txt``), ``raw/conntrack.txt``,
    ``raw/ground_truth.json`` and ``recording.json`` (commands, tool versions, kernel,
    UTC time, topology, Service spec, clients, requests, sha256 of every raw file).
    """
    if node not in result.dumps:
        raise LabError(f"node must be one of {', '.join(result.dumps)}; got {node!r}")
    root = Path(directory)
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files = {name: text for name, text in result.dumps[node].items() if name != "conntrack-stats.txt"}
    files["ground_truth.json"] = json.dumps(result.pod_counts, indent=2, sort_keys=True) + "\n"
    for name, text in files.items():
        (raw / name).write_text(text)
    sc = result.scenario
    mode = sc.node(node).proxy_mode
    svc, port = sc.target_service()
    ns = f"npa-lab-{result.run_id}-n-{node}"
    sent = sum(seg["requests_sent"] for seg in result.traffic)
    manifest = {
        "what": f"one node ({node}) of a lab run of scenario {sc.name!r}: kube-proxy rules with "
                f"counters and the conntrack table, plus the pods' own request counts",
        "recorded_utc": result.finished.isoformat(),
        "kernel": platform.release(),
        "tools": {
            "iptables": _version(["iptables", "--version"]),
            "iptables-legacy": _version(["iptables-legacy", "--version"]),
            "iptables-nft": _version(["iptables-nft", "--version"]),
            "nft": _version(["nft", "--version"]),
            "conntrack": _version(["conntrack", "--version"]),
            "iproute2": _version(["ip", "-V"]),
            "python": platform.python_version(),
        },
        "commands": {
            "rules": f"ip netns exec {ns} {' '.join(SAVE_COMMANDS[mode])}",
            "conntrack": f"ip netns exec {ns} conntrack -L 2>&1",
            "rules_loaded_with": f"ip netns exec {ns} {' '.join(LOAD_COMMANDS[mode])}",
            "traffic": f"ip netns exec npa-lab-{result.run_id}-clients "
                       f"python -m npanalytics.lab.traffic run {_traffic_summary(sc, result)}",
            "reproduce": f"npanalytics lab record {sc.name} --node {node} --out <dir>",
        },
        "sysctls_in_nodes": {"net.netfilter.nf_conntrack_acct": 1, "net.ipv4.ip_forward": 1},
        "node": node,
        "proxy_mode": mode,
        "topology": {
            "nodes": [{"name": n.name, "zone": n.zone, "ip": result.node_ips[n.name],
                       "proxy_mode": n.proxy_mode} for n in sc.nodes],
            "pods": [{"name": p.name, "node": p.node, "ip": result.pod_ips[p.name]} for p in sc.pods],
            "cluster_cidr": "198.18.64.0/18",
        },
        "service": dataclasses.asdict(svc),
        "clients": {**dataclasses.asdict(sc.clients), "addresses": list(sc.addresses().client_ips),
                    "nat_address": sc.addresses().client_gateway if sc.clients.has_nat else None},
        "traffic": {**dataclasses.asdict(sc.traffic), "requests_sent": sent,
                    "requests_ok_per_target": _sum_counts(seg["by_target"] for seg in result.traffic),
                    "requests_ok_per_pod": _sum_counts(seg["by_pod"] for seg in result.traffic)},
        "ground_truth": "raw/ground_truth.json: per pod, requests and connections per client address "
                        "as the pod saw it (after SNAT), counted by the pod's own HTTP server",
        "rule_loads": [dataclasses.asdict(x) for x in result.loads if x.node == node],
        "sha256": {f"raw/{name}": hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in files},
    }
    (root / "recording.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return root
