"""Record a lab run as a :class:`~npanalytics.datasets.Dataset`, and read the lab's own raw files.

:func:`record_run` turns a :class:`~npanalytics.lab.runner.RunResult` into a dataset whose
every frame is derived from raw files by the project's readers
(:meth:`~npanalytics.datasets.Dataset.from_raw`), so that ``ds.rederive(frame)`` gives the
frame back. Layout of ``raw/``:

- ``<node>/conntrack.txt``, ``<node>/conntrack-stats.txt`` and ``<node>/iptables-save.txt``
  (or ``nft-ruleset.txt``): each node's dumps at the end of the run;
  ``<node>/before-event-<k>/<rules file>``: the rules with their counters just before the
  reload that applied event ``k`` (a reload resets the counters, so the connections of
  the whole run are the sum over these dumps and the final one);
- ``ground_truth.json``: the pods' own counts (:func:`read_ground_truth`);
- ``rule_loads.json``: every rule load (:func:`read_rule_loads`);
- ``scenario.yaml``: the scenario, loadable with :func:`~npanalytics.lab.scenario.load_scenario`;
- ``k8s/{services,endpointslices,pods,nodes}.json``: the API list documents at the end of
  the run (and under ``k8s/start/`` at its start when the run had events);
- ``metrics/kube-state-metrics.txt``, ``metrics/kube-proxy-<node>.txt``: the last expositions;
  ``metrics/series.om``: OpenMetrics snapshots at the start, after each event and at the end,
  for ``promtool tsdb create-blocks-from openmetrics`` (kube-proxy series carry
  ``instance="<node>"``, as a scrape would add it).

Frames: ``conntrack_flows``, ``conntrack_stats``, ``proxy_services``, ``proxy_endpoints``
(all nodes, with ``node``), ``proxy_endpoints_before_event_<k>``, ``ground_truth`` (final
counts), ``ground_truth_after_event_<k>`` (counts just after event ``k``'s reload) and
``rule_loads``.

:func:`live_metrics_text` renders the same metrics for a running lab (what
``--serve-metrics`` serves, see :func:`npanalytics.lab.runner.serving_metrics`).

The two JSON files hold one record per line between a header line and a ``]}`` line, so that
the whole file is JSON and a reader can name the line of a bad record::

    {"format": "npanalytics-lab-rule-loads/1", "records": [
    {"timestamp": "2026-11-30T23:50:01.123456+00:00", "node": "node-a", ...},
    ...
    ]}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..collectors._source import BadLines, Source, count_lines, read_source_text
from ..exceptions import LabError, ParseError
from ..schemas import frame_from_records, schema_table, validate_frame

__all__ = [
    "GROUND_TRUTH_FORMAT",
    "RULE_LOADS_FORMAT",
    "record_run",
    "k8s_derivations",
    "read_ground_truth",
    "read_rule_loads",
    "ground_truth_json",
    "rule_loads_json",
    "scenario_yaml",
    "live_metrics_text",
]

GROUND_TRUTH_FORMAT = "npanalytics-lab-ground-truth/1"
RULE_LOADS_FORMAT = "npanalytics-lab-rule-loads/1"
FINAL = "final"
_RULES_READERS = {"iptables-save.txt": "read_iptables_save", "nft-ruleset.txt": "read_nft_ruleset"}
_COUNTER_PREFIX = re.compile(r"^\[\d+:\d+\] ", re.M)
_K8S_KINDS = ("services", "endpointslices", "pods", "nodes")


# -- the JSON files: one record per line -------------------------------------------------------


def _json_lines(fmt: str, records: Sequence[Mapping[str, Any]]) -> str:
    body = ",\n".join(json.dumps(r, sort_keys=True) for r in records)
    return f'{{"format": "{fmt}", "records": [\n' + (body + "\n" if body else "") + "]}\n"


def _read_records(
    source: Source, fmt: str, on_bad_line: str
) -> tuple[str, list[tuple[int, str, dict[str, Any]]], BadLines, int]:
    """The records of one of the lab's JSON files, with their line numbers."""
    bad = BadLines("<unnamed>", on_bad_line)  # checks the policy before any I/O
    name, text = read_source_text(source)
    bad.source = name
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header = f'{{"format": "{fmt}", "records": ['
    if not lines or lines[0].strip() != header:
        raise ParseError(name, 1, f"the header line {header!r}", lines[0] if lines else "")
    end = len(lines)
    while end > 1 and not lines[end - 1].strip():
        end -= 1
    if end < 2 or lines[end - 1].strip() != "]}":
        raise ParseError(name, max(end, 1), "the closing line ']}'", lines[end - 1] if end else "")
    records = []
    for lineno in range(2, end):
        line = lines[lineno - 1]
        stripped = line.strip()
        if not stripped:
            continue
        if lineno < end - 1:
            if not stripped.endswith(","):
                bad.bad(lineno, "a JSON object followed by ','", line)
                continue
            stripped = stripped[:-1]
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            bad.bad(lineno, f"a JSON object ({exc.msg} at column {exc.colno})", line)
            continue
        if not isinstance(record, dict):
            bad.bad(lineno, "a JSON object", line)
            continue
        records.append((lineno, line, record))
    return name, records, bad, count_lines(text)


def _field(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{key!r} as {names}")
    return value


def _count(record: Mapping[str, Any], key: str) -> int:
    value = _field(record, key, int)
    if value < 0:
        raise ValueError(f"{key!r} as a count >= 0")
    return value


# -- ground truth ------------------------------------------------------------------------------


def ground_truth_json(
    pods: Mapping[str, Mapping[str, str]],
    counts: Mapping[str, Mapping[str, Mapping[str, Mapping[str, int]]]],
) -> str:
    """The text of ``ground_truth.json``.

    Parameters
    ----------
    pods : mapping
        Pod name -> ``{"node": ..., "ip": ...}``.
    counts : mapping
        Snapshot name (``"final"``, ``"event-1"``, ...) -> pod -> the podserver's
        ``{"requests": {client: n}, "connections": {client: n}}``.
    """
    records: list[dict[str, Any]] = [
        {"record": "pod", "pod": pod, "node": info["node"], "ip": info["ip"]} for pod, info in pods.items()
    ]
    for at, per_pod in counts.items():
        for pod, c in per_pod.items():
            for client in sorted(set(c.get("requests", {})) | set(c.get("connections", {}))):
                records.append({"record": "counts", "at": at, "pod": pod, "client": client,
                                "requests": int(c.get("requests", {}).get(client, 0)),
                                "connections": int(c.get("connections", {}).get(client, 0))})
    return _json_lines(GROUND_TRUTH_FORMAT, records)


def read_ground_truth(source: Source, *, at: str = FINAL, on_bad_line: str = "raise") -> pd.DataFrame:
    """Read the lab's ``ground_truth.json``: what each pod counted, per client address.

    Parameters
    ----------
    source : path, file object, str or bytes
        The file (see :func:`npanalytics.collectors._source.read_source_bytes`).
    at : str, default "final"
        Which snapshot: ``"final"`` (end of the run) or ``"event-<k>"`` (just after the
        rules were reloaded for the run's ``k``-th event, 1-based). Counts are cumulative
        since the start of the run.
    on_bad_line : {"raise", "warn", "skip"}
        What to do with a record line that is not valid (the header and closing lines
        must be valid).

    Returns
    -------
    pandas.DataFrame
        Kind ``ground_truth``; one row per (pod, client address) the pod saw, in file
        order; pods that saw nothing have no row. ``df.attrs["parse_report"]`` holds the
        :class:`~npanalytics.collectors._source.ParseReport`.

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected ..., got ..."`` for a bad line (under "raise"), a
        bad header or closing line, or a count for a pod that has no ``pod`` record.

    Notes
    -----
    {table}
    """
    name, records, bad, total = _read_records(source, GROUND_TRUTH_FORMAT, on_bad_line)
    nodes: dict[str, str] = {}
    rows = []
    for lineno, line, record in records:
        try:
            kind = _field(record, "record", str)
            if kind == "pod":
                nodes[_field(record, "pod", str)] = _field(record, "node", str)
                _field(record, "ip", str)
            elif kind == "counts":
                snapshot = _field(record, "at", str)
                pod = _field(record, "pod", str)
                row = {"pod": pod, "client": _field(record, "client", str),
                       "requests": _count(record, "requests"), "connections": _count(record, "connections")}
                if row["connections"] > row["requests"]:
                    raise ValueError("at most as many 'connections' as 'requests'")
                if snapshot == at:
                    rows.append((lineno, line, row))
            else:
                raise ValueError("'record' as 'pod' or 'counts'")
        except ValueError as exc:
            bad.bad(lineno, f"a ground-truth record with {exc}", line)
    out = []
    for lineno, line, row in rows:
        if row["pod"] not in nodes:
            raise ParseError(name, lineno, f"a pod with a 'pod' record (pod {row['pod']!r} has none)", line)
        out.append({**row, "node": nodes[row["pod"]]})
    df = frame_from_records(out, "ground_truth")
    df.attrs["parse_report"] = bad.report("lab-ground-truth", total)
    return validate_frame(df, "ground_truth")


# -- rule loads --------------------------------------------------------------------------------


def rule_loads_json(loads: Sequence[Any], services: int) -> str:
    """The text of ``rule_loads.json`` from :class:`~npanalytics.lab.topology.RuleLoad` objects."""
    records = [{"timestamp": x.started, "node": x.node, "proxy_mode": x.proxy_mode, "services": services,
                "rules": x.rule_count, "load_seconds": x.duration_seconds, "reason": x.reason,
                "command": x.command} for x in loads]
    return _json_lines(RULE_LOADS_FORMAT, records)


def read_rule_loads(source: Source, *, on_bad_line: str = "raise") -> pd.DataFrame:
    """Read the lab's ``rule_loads.json``: every timed load of a node's kube-proxy rules.

    Parameters
    ----------
    source : path, file object, str or bytes
        The file.
    on_bad_line : {"raise", "warn", "skip"}
        What to do with a record line that is not valid.

    Returns
    -------
    pandas.DataFrame
        Kind ``rule_loads``, one row per load in file (time) order, plus ``reason``
        (category: ``initial sync`` or ``<pod> <action>``). ``df.attrs["parse_report"]``
        holds the ParseReport.

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected ..., got ..."`` for a bad line (under "raise"):
        not JSON, a missing or mistyped field, a naive or unreadable timestamp, a negative
        duration or count.

    Notes
    -----
    {table}
    """
    name, records, bad, total = _read_records(source, RULE_LOADS_FORMAT, on_bad_line)
    rows = []
    for lineno, line, record in records:
        try:
            stamp = _field(record, "timestamp", str)
            try:
                when = dt.datetime.fromisoformat(stamp)
            except ValueError:
                raise ValueError("'timestamp' as ISO 8601") from None
            if when.tzinfo is None:
                raise ValueError("'timestamp' with a UTC offset")
            seconds = float(_field(record, "load_seconds", (int, float)))
            if not seconds >= 0:
                raise ValueError("'load_seconds' >= 0")
            rows.append({"timestamp": when.astimezone(dt.timezone.utc), "node": _field(record, "node", str),
                         "proxy_mode": _field(record, "proxy_mode", str),
                         "services": _count(record, "services"), "rules": _count(record, "rules"),
                         "load_seconds": seconds, "reason": str(record.get("reason", ""))})
        except ValueError as exc:
            bad.bad(lineno, f"a rule-load record with {exc}", line)
    df = frame_from_records(rows, "rule_loads")
    df["timestamp"] = pd.to_datetime(pd.Series([r["timestamp"] for r in rows], dtype=object), utc=True)
    df["timestamp"] = df["timestamp"].astype("datetime64[ns, UTC]")
    df["reason"] = pd.Series([r["reason"] for r in rows], dtype="str").astype("category")
    df.attrs["parse_report"] = bad.report("lab-rule-loads", total)
    return validate_frame(df, "rule_loads")


read_ground_truth.__doc__ = (read_ground_truth.__doc__ or "").replace(
    "{table}", schema_table("ground_truth").replace("\n", "\n    "))
read_rule_loads.__doc__ = (read_rule_loads.__doc__ or "").replace(
    "{table}", schema_table("rule_loads").replace("\n", "\n    "))


# -- the scenario as YAML ----------------------------------------------------------------------


def _scenario_mapping(sc: Any) -> dict[str, Any]:
    """The scenario as the YAML mapping :func:`load_scenario` reads."""
    data: dict[str, Any] = {"name": sc.name}
    if sc.description:
        data["description"] = sc.description
    data["nodes"] = [{"name": n.name, "zone": n.zone, "proxy_mode": n.proxy_mode} for n in sc.nodes]
    data["pods"] = [{"name": p.name, "node": p.node, "labels": dict(p.labels), "ready": p.ready,
                     "serving": p.serving, "terminating": p.terminating, "start_absent": p.start_absent}
                    for p in sc.pods]
    data["services"] = [{
        "name": s.name, "namespace": s.namespace, "type": s.type, "selector": dict(s.selector),
        "externalTrafficPolicy": s.external_traffic_policy, "internalTrafficPolicy": s.internal_traffic_policy,
        "sessionAffinity": s.session_affinity,
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": s.affinity_timeout_seconds}},
        "ports": [{"name": p.name, "port": p.port, "targetPort": p.target_port, "nodePort": p.node_port,
                   "protocol": p.protocol} for p in s.ports],
    } for s in sc.services]
    clients: dict[str, Any] = {"count": sc.clients.count, "addressing": sc.clients.addressing}
    if sc.clients.nat_count:
        clients["nat_count"] = sc.clients.nat_count
    data["clients"] = clients
    t = sc.traffic
    traffic: dict[str, Any] = {"node_weights": dict(t.node_weights), "mode": t.mode,
                               "requests_per_connection": t.requests_per_connection,
                               "connections": t.connections, "requests": t.requests,
                               "max_seconds": t.max_seconds}
    if t.service:
        traffic["service"] = t.service
    if t.port_name:
        traffic["port_name"] = t.port_name
    data["traffic"] = traffic
    if sc.events:
        data["events"] = [{"pod": e.pod, "action": e.action,
                           **({"at_request": e.at_request} if e.at_request is not None else {}),
                           **({"at_second": e.at_second} if e.at_second is not None else {})}
                          for e in sc.events]
    return data


def scenario_yaml(scenario: Any) -> str:
    """The scenario as YAML text that :func:`~npanalytics.lab.scenario.load_scenario` reads back equal."""
    import yaml

    return yaml.safe_dump(_scenario_mapping(scenario), sort_keys=False, default_flow_style=None, width=100)


# -- metrics -----------------------------------------------------------------------------------


def _with_instance(text: str, instance: str) -> str:
    """Add ``instance="<instance>"`` to every sample (what a scrape adds), first in the label set."""
    out = []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            out.append(line)
            continue
        head, sep, rest = line.partition("{")
        if sep:
            out.append(f'{head}{{instance="{instance}",{rest}')
        else:
            name, _, value = line.partition(" ")
            out.append(f'{name}{{instance="{instance}"}} {value}')
    return "\n".join(out)


def _merge_expositions(texts: Sequence[str]) -> str:
    """Join expositions into one, each family's lines together (HELP/TYPE once)."""
    order: list[str] = []
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for text in texts:
        current = None
        for line in text.split("\n"):
            if not line.strip():
                continue
            parts = line.split(" ", 3)
            if line.startswith("# ") and len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if name not in heads:
                    order.append(name)
                    heads[name], samples[name] = [], []
                if len(heads[name]) < 2 and not any(h.split(" ", 3)[1] == parts[1] for h in heads[name]):
                    heads[name].append(line)
                current = name
                continue
            if line.startswith("#"):
                continue
            if current is None:
                raise LabError(f"a sample before any # TYPE line: {line[:120]!r}")
            samples[current].append(line)
    return "\n".join(line for name in order for line in heads[name] + samples[name]) + "\n"


def _proxy_metrics_mode(proxy_mode: str) -> str:
    return "nftables" if proxy_mode == "nftables" else "iptables"


def _rule_tables(text: str) -> dict[str, int]:
    from .render_iptables import count_rules

    return count_rules(_COUNTER_PREFIX.sub("", text))


def _metrics_at(result: Any, moment: dt.datetime, flags: Mapping[str, Mapping[str, bool]],
                rules_text: Mapping[str, str], timestamp_ms: int | None) -> tuple[str, dict[str, str]]:
    """KSM text and each node's kube-proxy text at ``moment`` (loads started before it)."""
    from .metrics import kube_proxy_metrics_text, kube_state_metrics_text

    sc = result.scenario
    ksm = kube_state_metrics_text(sc, timestamp_ms=timestamp_ms, pod_states=flags, at=moment)
    events = [e for e in result.events if _time(e["time"]) <= moment]
    proxy = {}
    for node in sc.nodes:
        loads = [x for x in result.loads if x.node == node.name and x.started and _time(x.started) <= moment]
        programming = []
        for event in events:
            for x in loads:
                if x.reason == f"{event['pod']} {event['action']}" and _time(x.started) >= _time(event["time"]):
                    done = _time(x.started) + dt.timedelta(seconds=x.duration_seconds)
                    programming.append(max(0.0, (done - _time(event["time"])).total_seconds()))
                    break
        mode = _proxy_metrics_mode(node.proxy_mode)
        tables = _rule_tables(rules_text[node.name]) if mode == "iptables" else None
        last = loads[-1] if loads else None
        last_sync = ((_time(last.started) + dt.timedelta(seconds=last.duration_seconds)).timestamp()
                     if last else None)
        proxy[node.name] = kube_proxy_metrics_text(
            node.name, sync_durations_seconds=[x.duration_seconds for x in loads],
            network_programming_seconds=programming, rules_total=tables,
            endpoint_changes_total=len(events), mode=mode, last_sync_timestamp=last_sync,
            last_queued_timestamp=last_sync, timestamp_ms=timestamp_ms,
        )
    return ksm, proxy


def live_metrics_text(topology: Any, now: dt.datetime | None = None) -> str:
    """What a scrape of the running lab would see now: KSM and every node's kube-proxy.

    One exposition: the kube-state-metrics series of the current pod states, then each
    node's ``kubeproxy_*`` series with ``instance="<node>"`` (as a scrape adds it), filled
    from the rule loads and events so far; the same writers as ``raw/metrics/series.om``.

    Parameters
    ----------
    topology : Topology
        A built :class:`~npanalytics.lab.topology.Topology`.
    now : datetime, optional
        UTC time of the snapshot (default: now).

    Returns
    -------
    str
        Text exposition format 0.0.4.
    """
    import types

    moment = now or dt.datetime.now(dt.timezone.utc)
    sc = topology.scenario
    view = types.SimpleNamespace(scenario=sc, events=list(topology.events), loads=list(topology.loads))
    ksm, proxy = _metrics_at(view, moment, topology.pod_state_flags(), dict(topology.rules_text), None)
    return _merge_expositions([ksm, *(_with_instance(proxy[n.name], n.name) for n in sc.nodes)])


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _initial_flags(sc: Any) -> dict[str, dict[str, bool]]:
    return {p.name: {"ready": p.ready, "serving": p.serving, "terminating": p.terminating,
                     "present": not p.start_absent} for p in sc.pods}


# -- the recording ----------------------------------------------------------------------------


def _k8s_files(sc: Any, moment: dt.datetime, flags: Mapping[str, Any], prefix: str) -> dict[str, bytes]:
    from .k8s_objects import as_list, cluster_objects

    objects = cluster_objects(sc, at=moment, pod_states=flags)
    files = {}
    for kind in _K8S_KINDS:
        items = objects[kind]
        version = max((int(i["metadata"]["resourceVersion"]) for i in items), default=1)
        doc = as_list(kind, items, version)
        files[f"{prefix}{kind}.json"] = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    return files


def k8s_derivations(prefix: str = "raw/k8s/") -> dict[str, list[Any]]:
    """The ``k8s_*`` frames of a recording, derived from the API lists saved at its end.

    The frames are named after their kinds, so that analysis finds the cluster's
    Services, EndpointSlices, pods and nodes as it would in a collected dataset.
    """
    from ..datasets import Derivation

    files = dict(zip(("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes"), _K8S_KINDS))
    return {kind: [Derivation("read_k8s_objects", f"{prefix}{name}.json", kind)] for kind, name in files.items()}


def record_run(result: Any, name: str, description: str) -> Any:
    """Turn a lab run into a :class:`~npanalytics.datasets.Dataset` (frames parsed from raw files).

    Parameters
    ----------
    result : RunResult
        What :func:`~npanalytics.lab.runner.run_scenario` returned.
    name : str
        Dataset name (``[a-z0-9][a-z0-9._-]*``).
    description : str
        What the dataset shows.

    Returns
    -------
    Dataset
        Frames and raw files as described in the module docstring; save it with
        :meth:`~npanalytics.datasets.Dataset.save`.
    """
    from ..datasets import Dataset, Derivation
    from .metrics import openmetrics_series
    from .runner import _sum_counts, _version
    from .topology import LOAD_COMMANDS, SAVE_COMMANDS

    sc = result.scenario
    nodes = [n.name for n in sc.nodes]
    raw: dict[str, bytes] = {}
    derivations: dict[str, list[Derivation]] = {k: [] for k in (
        "conntrack_flows", "conntrack_stats", "proxy_services", "proxy_endpoints")}
    for node in nodes:
        files = result.dumps[node]
        for fname, text in files.items():
            raw[f"raw/{node}/{fname}"] = text.encode()
        cols = {"node": node}
        derivations["conntrack_flows"].append(
            Derivation("read_conntrack", f"raw/{node}/conntrack.txt", "conntrack_flows", columns=cols))
        derivations["conntrack_stats"].append(
            Derivation("read_conntrack_stats", f"raw/{node}/conntrack-stats.txt", "conntrack_stats", columns=cols))
        rules = next(f for f in files if f in _RULES_READERS)
        for kind in ("proxy_services", "proxy_endpoints"):
            derivations[kind].append(Derivation(_RULES_READERS[rules], f"raw/{node}/{rules}", kind, columns=cols))
    for k, per_node in enumerate(result.dumps_before_events, 1):
        parts = []
        for node in nodes:
            (rules, text), = per_node[node].items()
            rel = f"raw/{node}/before-event-{k}/{rules}"
            raw[rel] = text.encode()
            parts.append(Derivation(_RULES_READERS[rules], rel, "proxy_endpoints", columns={"node": node}))
        derivations[f"proxy_endpoints_before_event_{k}"] = parts

    addresses = sc.addresses()
    pods = {p.name: {"node": p.node, "ip": result.pod_ips[p.name]} for p in sc.pods}
    counts = {FINAL: result.pod_counts}
    for k, event in enumerate(result.events, 1):
        counts[f"event-{k}"] = event["pod_counts"]
    raw["raw/ground_truth.json"] = ground_truth_json(pods, counts).encode()
    derivations["ground_truth"] = [Derivation("read_ground_truth", "raw/ground_truth.json", "ground_truth")]
    for k in range(1, len(result.events) + 1):
        derivations[f"ground_truth_after_event_{k}"] = [Derivation(
            "read_ground_truth", "raw/ground_truth.json", "ground_truth", options={"at": f"event-{k}"})]
    service_ports = len(sc.service_ports())
    raw["raw/rule_loads.json"] = rule_loads_json(result.loads, service_ports).encode()
    derivations["rule_loads"] = [Derivation("read_rule_loads", "raw/rule_loads.json", "rule_loads")]
    raw["raw/scenario.yaml"] = scenario_yaml(sc).encode()

    # Kubernetes objects and metrics at the start, after each event, at the end
    start = result.traffic_started or result.started
    end = result.traffic_finished or result.finished
    final_flags = result.events[-1]["pod_state"] if result.events else _initial_flags(sc)
    raw.update(_k8s_files(sc, end, final_flags, "raw/k8s/"))
    derivations.update(k8s_derivations())
    if result.events:
        raw.update(_k8s_files(sc, start, _initial_flags(sc), "raw/k8s/start/"))
    rules_files = {n: next(f for f in result.dumps[n] if f in _RULES_READERS) for n in nodes}
    # the rules in force after event k are the ones dumped before event k+1 (or the final ones)
    texts_after = [
        {n: (result.dumps_before_events[k][n] if k < len(result.dumps_before_events) else result.dumps[n])
         [rules_files[n]] for n in nodes}
        for k in range(len(result.events) + 1)
    ]
    moments: list[tuple[dt.datetime, dict[str, Any], dict[str, str]]] = [(start, _initial_flags(sc), texts_after[0])]
    for k, event in enumerate(result.events, 1):
        event_loads = [x for x in result.loads if x.reason == f"{event['pod']} {event['action']}"
                       and _time(x.started) >= _time(event["time"])][: len(nodes)]
        after = max((_time(x.started) + dt.timedelta(seconds=x.duration_seconds) for x in event_loads),
                    default=_time(event["time"]))
        moments.append((after, event["pod_state"], texts_after[k]))
    moments.append((end, final_flags, texts_after[-1]))
    frames, last_ms = [], None
    for moment, flags, rules_text in moments:
        ms = int(moment.timestamp() * 1000)
        if last_ms is not None and ms <= last_ms:
            ms = last_ms + 1
        last_ms = ms
        when = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
        ksm, proxy = _metrics_at(result, when, flags, rules_text, None)
        text = _merge_expositions([ksm, *(_with_instance(proxy[n], n) for n in nodes)])
        frames.append((ms / 1000, text))
    raw["raw/metrics/series.om"] = openmetrics_series(frames).encode()
    ksm, proxy = _metrics_at(result, moments[-1][0], final_flags, texts_after[-1], None)
    raw["raw/metrics/kube-state-metrics.txt"] = ksm.encode()
    for node in nodes:
        raw[f"raw/metrics/kube-proxy-{node}.txt"] = proxy[node].encode()

    svc, port = sc.target_service()
    sent = sum(seg["requests_sent"] for seg in result.traffic)
    recording = {
        "what": f"a lab run of scenario {sc.name!r}: every node's kube-proxy rules (with counters) "
                "and conntrack table, the pods' own counts, every timed rule load, the Kubernetes "
                "objects and the metrics kube-state-metrics and kube-proxy would expose",
        "scenario": sc.name,
        "run_id": result.run_id,
        "started_utc": result.started.isoformat(),
        "finished_utc": result.finished.isoformat(),
        "traffic_started_utc": start.isoformat(),
        "traffic_finished_utc": end.isoformat(),
        "kernel": platform.release(),
        "tools": {
            "iptables-legacy": _version(["iptables-legacy", "--version"]),
            "iptables-nft": _version(["iptables-nft", "--version"]),
            "nft": _version(["nft", "--version"]),
            "conntrack": _version(["conntrack", "--version"]),
            "iproute2": _version(["ip", "-V"]),
            "python": platform.python_version(),
        },
        "commands": {
            "record": f"npanalytics lab record {sc.name} --out <dir>",
            "rules": {n.name: f"ip netns exec npa-lab-{result.run_id}-n-{n.name} "
                              f"{' '.join(SAVE_COMMANDS[n.proxy_mode])}" for n in sc.nodes},
            "rules_loaded_with": {n.name: " ".join(LOAD_COMMANDS[n.proxy_mode]) for n in sc.nodes},
            "conntrack": "ip netns exec npa-lab-<run_id>-n-<node> conntrack -L 2>&1",
            "conntrack_stats": "ip netns exec npa-lab-<run_id>-n-<node> conntrack -S",
            "traffic": f"ip netns exec npa-lab-{result.run_id}-clients python npanalytics/lab/traffic.py run "
                       + _traffic_command(sc, result),
            "backfill": "promtool tsdb create-blocks-from openmetrics raw/metrics/series.om <tsdb dir>",
        },
        "sysctls_in_nodes": {"net.netfilter.nf_conntrack_acct": 1, "net.ipv4.ip_forward": 1},
        "topology": {
            "nodes": [{"name": n.name, "zone": n.zone, "ip": result.node_ips[n.name], "proxy_mode": n.proxy_mode,
                       "pod_cidr": addresses.pod_cidrs[n.name]} for n in sc.nodes],
            "pods": [{"name": p.name, "node": p.node, "ip": result.pod_ips[p.name]} for p in sc.pods],
            "cluster_ips": dict(addresses.cluster_ips),
            "cluster_cidr": addresses.cluster_cidr,
            "fabric_network": addresses.fabric_network,
            "service": {"namespace": svc.namespace, "name": svc.name, "port": port.port,
                        "node_port": port.node_port, "target_port": port.target_port,
                        "external_traffic_policy": svc.external_traffic_policy,
                        "session_affinity": svc.session_affinity},
            "clients": {"addresses": list(addresses.client_ips),
                        "own_address": list(addresses.client_ips[: sc.clients.distinct_count]),
                        "behind_nat": list(addresses.client_ips[sc.clients.distinct_count:]),
                        "nat_address": addresses.client_gateway if sc.clients.has_nat else None,
                        "gateway": addresses.client_gateway},
        },
        "traffic": {**dataclasses.asdict(sc.traffic), "requests_sent": sent,
                    "segments": [{k: v for k, v in seg.items() if k != "connect_latency_seconds"}
                                 for seg in result.traffic],
                    "requests_ok_per_target": _sum_counts(seg["by_target"] for seg in result.traffic),
                    "requests_ok_per_pod": _sum_counts(seg["by_pod"] for seg in result.traffic)},
        "events": [{k: v for k, v in e.items() if k not in ("pod_counts",)} for e in result.events],
        "rule_loads": len(result.loads),
    }
    return Dataset.from_raw(name=name, description=description, raw=raw, derivations=derivations,
                            recording=recording)


def _traffic_command(sc: Any, result: Any) -> str:
    _, port = sc.target_service()
    targets = " ".join(f"--target {result.node_ips[n]}:{port.node_port}:{w:g}"
                       for n, w in sc.traffic.node_weights.items() if w > 0)
    return (f"{targets} --source <each client address> --mode {sc.traffic.mode} "
            f"--requests-per-connection {sc.traffic.requests_per_connection} "
            f"--connections {sc.traffic.connections} "
            f"--requests {sc.traffic.requests} --max-seconds {sc.traffic.max_seconds:g}")
