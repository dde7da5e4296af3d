"""``analyze(dataset)``: every analysis a dataset allows, in one :class:`Analysis`.

Pure: frames (and the recording's facts) in, an :class:`~npanalytics.analysis.result.Analysis`
out. The steps:

1. labels: endpoint address -> pod, node, zone, from ``k8s_endpoints``/``k8s_pods``/
   ``k8s_nodes`` frames when present, else from the lab recording's topology;
2. load per backend (:mod:`.load`) from conntrack, rule counters and the lab's ground
   truth, for the whole recording (``window_start`` NaT) and, when the recording has
   events with rules dumped before each, per window between events;
3. the expected model (:mod:`.expected`) per window: the rules in force (or, without
   rules, the Service spec and its endpoints), weighted by the client-to-node mix;
4. skew statistics and G-tests (:mod:`.skew`);
5. the topic sections (affinity, long-lived connections, proxy overhead, conntrack
   pressure) and the diagnostics, each from its module, sharing one Service-port
   attribution of the conntrack flows;
6. attribution (:mod:`.attribution`): findings that explain the skew.

The whole-recording window is compared with the final configuration (a snapshot is
what a user has of a live cluster); per-event windows with the rules of each window.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Callable

import pandas as pd

from ..datasets import Dataset
from ..schemas import SCHEMAS, empty_frame, validate_frame
from ._topics import with_attribution
from .affinity import affinity_section
from .attribution import ALPHA, attribute_skew, sort_findings
from .expected import client_node_mix, expected_shares, selection_from_rules, selection_from_spec
from .load import (
    backend_labels,
    concat_frames,
    conntrack_load,
    ground_truth_load,
    metrics_load,
    node_path,
    rules_load,
    topology_from_recording,
)
from .diagnostics import diagnose
from .longlived import long_lived_section
from .overhead import overhead_section
from .pressure import pressure_section
from .result import Analysis
from .skew import skew_table

__all__ = ["TOPICS", "analyze"]

TOPICS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("affinity", affinity_section),
    ("long_lived", long_lived_section),
    ("overhead", overhead_section),
    ("conntrack_pressure", pressure_section),
)
"""``(section name, function)`` of each topic. Each function takes the frames by name
and returns ``(section or None, findings, missing reason or None)``; a topic with
several frames (overhead) returns dicts by section name instead."""

REQUEST_METRICS = "request_metrics"
"""Name of an optional ``prom_samples`` frame: a per-pod request counter (label ``pod``),
read as the ``metrics`` source (:func:`~npanalytics.analysis.load.metrics_load`)."""

# Which measure of each source the skew compares (the schema of kind skew: connections,
# requests for ground truth).
_SKEW_MEASURE = {"conntrack": "connections", "rules": "connections", "metrics": "requests", "ground_truth": "requests"}

_HOW = {
    "conntrack": "conntrack flows: collect `conntrack -L` on each node (with net.netfilter.nf_conntrack_acct=1 "
                 "for bytes) together with kube-proxy's rules of the same node",
    "rules": "rule counters: dump kube-proxy's rules with counters on each node (`iptables-save -c`, "
             "`nft list ruleset`, `ipvsadm -Ln --stats`)",
    "labels": "pod, node and zone of each endpoint: collect EndpointSlices, pods and nodes "
              "(npanalytics.collectors k8s snapshot or `kubectl get endpointslices,pods,nodes -o json`)",
    "model": "the expected distribution needs kube-proxy's rules (proxy_services + proxy_endpoints) or the "
             "Services with their EndpointSlices and nodes",
    "node_path": "the NodePort path needs conntrack flows of every node (with a node column) and the rules",
}


_EVENT_FRAME = re.compile(r"^(?P<kind>[a-z0-9_]+?)_(?:before|after)_event_\d+$")


def _kind_of(name: str) -> str | None:
    """The kind of a frame given by name: the name itself, or a lab event frame's base kind."""
    if name in SCHEMAS:
        return name
    m = _EVENT_FRAME.match(name)
    return m.group("kind") if m and m.group("kind") in SCHEMAS else None


def _by_kind(frames: Mapping[str, pd.DataFrame], kinds: Mapping[str, str], kind: str) -> pd.DataFrame | None:
    """The frame named ``kind`` (validated), else None."""
    df = frames.get(kind)
    if df is None or kinds.get(kind, kind) != kind:
        return None
    return validate_frame(df, kind)


def _events(recording: Mapping[str, Any], frames: Mapping[str, pd.DataFrame]) -> list[pd.Timestamp]:
    """Event times when every event has the rules dumped before it."""
    events = recording.get("events") or []
    times = []
    for k, event in enumerate(events, 1):
        if f"proxy_endpoints_before_event_{k}" not in frames or "time" not in event:
            return []
        times.append(pd.Timestamp(event["time"]).tz_convert("UTC"))
    return times


def _gt_window(later: pd.DataFrame, earlier: pd.DataFrame | None) -> pd.DataFrame:
    """Counts between two cumulative ground-truth snapshots."""
    if earlier is None:
        return later
    key = ["pod", "node", "client"]
    a = later.astype({k: "str" for k in key}).set_index(key)[["requests", "connections"]]
    b = earlier.astype({k: "str" for k in key}).set_index(key)[["requests", "connections"]]
    diff = a.sub(b, fill_value=0).clip(lower=0).astype("int64").reset_index()
    for k in key:
        diff[k] = diff[k].astype("category")
    return validate_frame(diff, "ground_truth")


def _single_spn(services: pd.DataFrame | None) -> str | None:
    if services is None:
        return None
    spns = services["service_port_name"].dropna().astype("str").unique()
    return str(spns[0]) if len(spns) == 1 else None


def _policies(services: pd.DataFrame | None, k8s_services: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for df in (k8s_services, services):
        if df is None:
            continue
        for r in df.dropna(subset=["service_port_name"]).itertuples(index=False):
            out.setdefault(str(r.service_port_name), {
                "external_traffic_policy": None if pd.isna(r.external_traffic_policy) else str(r.external_traffic_policy),
                "session_affinity": None if pd.isna(r.session_affinity) else str(r.session_affinity),
            })
    return out


def _provenance(dataset: Any) -> dict[str, Any]:
    if isinstance(dataset, Dataset):
        return {
            "name": dataset.name,
            "description": dataset.description,
            "recording": dataset.recording,
            "frames": {f: {"kind": dataset.kinds[f], "rows": int(len(df))} for f, df in dataset.frames.items()},
        }
    return {"name": None, "description": "frames given directly", "recording": {},
            "frames": {f: {"rows": int(len(df))} for f, df in dataset.items()}}


def _affinity_pinned(services: pd.DataFrame | None, rules_frames: list[pd.DataFrame]) -> list[str]:
    """Service ports with ClientIP affinity whose rule counters miss returning clients.

    In iptables mode a returning client takes the ``recent --rcheck`` rule of its
    endpoint, not the random-choice jump whose counter is ``packets``; the
    connections are complete only with ``affinity_packets``. A Service port is
    left out when an iptables row of it has ``packets`` but no
    ``affinity_packets`` (frames read before the reader kept those counters, or
    a dump cut without the checks). nftables rows are complete (their counter
    sits on the endpoint chain's ``dnat``, behind the affinity check) and so
    are IPVS's (the virtual server's own statistics).
    """
    if services is None:
        return []
    clientip = services[services["session_affinity"].astype("str") == "ClientIP"]
    names = set(clientip["service_port_name"].dropna().astype("str"))
    pinned: set[str] = set()
    for frame in rules_frames:
        rows = frame[(frame["proxy_mode"].astype("str") == "iptables") & frame["packets"].notna()
                     & frame["service_port_name"].astype("str").isin(names)]
        if "affinity_packets" in rows.columns:
            rows = rows[rows["affinity_packets"].isna()]
        pinned.update(rows["service_port_name"].astype("str"))
    return sorted(pinned)


def _programmed_from_selection(load: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """Without rules: a backend is programmed when the spec's final selection has it for the entry node."""
    final = selection[selection["window_start"].isna()]
    chosen = set(zip(final["service_port_name"].astype("str"), final["entry_node"].astype("str"),
                     final["endpoint_ip"].astype("str")))
    unknown = load["programmed"].isna() & load["entry_node"].notna()
    if not unknown.any():
        return load
    out = load.copy()
    out.loc[unknown, "programmed"] = [
        (str(s), str(n), str(ip)) in chosen
        for s, n, ip in zip(out.loc[unknown, "service_port_name"], out.loc[unknown, "entry_node"],
                            out.loc[unknown, "endpoint_ip"])
    ]
    return validate_frame(out, "backend_load")


def _whole_recording(per_window: pd.DataFrame, final_rules: pd.DataFrame) -> pd.DataFrame:
    """Rule counters of all windows summed into the whole recording (window NaT).

    ``programmed`` is then whether the final rules still have the endpoint.
    """
    if per_window.empty:
        return per_window
    node = final_rules["node"].astype("str") if "node" in final_rules else pd.Series("", index=final_rules.index)
    final = set(zip(final_rules["service_port_name"].astype("str"), node, final_rules["endpoint_ip"].astype("str")))
    key = ["service_port_name", "source", "measure", "entry_node", "endpoint_ip", "pod", "node", "zone"]
    whole = per_window.groupby(key, observed=True, dropna=False, sort=True)["value"].sum().reset_index()
    nat = pd.Series(pd.NaT, index=whole.index, dtype="datetime64[ns, UTC]")
    whole = whole.assign(window_start=nat, window_end=nat)
    whole["programmed"] = pd.array([(str(s), str(n), str(ip)) in final for s, n, ip in zip(
        whole["service_port_name"], whole["entry_node"], whole["endpoint_ip"])], dtype="boolean")
    return concat_frames([whole[per_window.columns]], "backend_load")


@dataclasses.dataclass
class _Inputs:
    """The frames analyze uses, validated, with the labels and the event windows."""

    frames: Mapping[str, pd.DataFrame]
    flows: pd.DataFrame | None
    services: pd.DataFrame | None
    endpoints: pd.DataFrame | None
    truth: pd.DataFrame | None
    k8s: dict[str, pd.DataFrame | None]
    nodes: pd.DataFrame | None
    labels: pd.DataFrame
    windows: list[tuple[pd.Timestamp, pd.Timestamp]]


def _inputs(dataset: Dataset | Mapping[str, pd.DataFrame]) -> _Inputs:
    frames: Mapping[str, pd.DataFrame] = dataset.frames if isinstance(dataset, Dataset) else dataset
    # the flows' Service ports, matched once for the loads, the NodePort path and the topics
    frames = with_attribution(frames)
    kinds = dataset.kinds if isinstance(dataset, Dataset) else {k: _kind_of(k) for k in frames}
    recording = dataset.recording if isinstance(dataset, Dataset) else {}
    for name, df in frames.items():
        if kinds.get(name) is not None:  # frames of no known kind are not used
            validate_frame(df, kinds[name])
    k8s = {k: _by_kind(frames, kinds, k) for k in ("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes")}
    pods, nodes = k8s["k8s_pods"], k8s["k8s_nodes"]
    if pods is None or nodes is None:  # the lab recorded its topology
        rec_pods, rec_nodes = topology_from_recording(recording)
        pods = pods if pods is not None else (rec_pods if len(rec_pods) else None)
        nodes = nodes if nodes is not None else (rec_nodes if len(rec_nodes) else None)
    events = _events(recording, frames)
    start = pd.Timestamp(recording["traffic_started_utc"]) if recording.get("traffic_started_utc") else pd.NaT
    end = pd.Timestamp(recording["traffic_finished_utc"]) if recording.get("traffic_finished_utc") else pd.NaT
    bounds = [start, *events, end]
    return _Inputs(
        frames=frames,
        flows=_by_kind(frames, kinds, "conntrack_flows"),
        services=_by_kind(frames, kinds, "proxy_services"),
        endpoints=_by_kind(frames, kinds, "proxy_endpoints"),
        truth=_by_kind(frames, kinds, "ground_truth"),
        k8s=k8s,
        nodes=nodes,
        labels=backend_labels(pods, nodes, k8s["k8s_endpoints"]),
        windows=list(zip(bounds[:-1], bounds[1:])) if events else [],
    )


def _rules(inp: _Inputs, missing: dict[str, str]) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Rule-counter loads (per window and summed) and the rules' endpoint selections."""
    if inp.endpoints is None:
        missing["rules"] = _HOW["rules"]
        return [], []
    rules_frames = [validate_frame(inp.frames[f"proxy_endpoints_before_event_{k}"], "proxy_endpoints")
                    for k in range(1, len(inp.windows))] + [inp.endpoints]
    pinned = _affinity_pinned(inp.services, rules_frames)
    if pinned:
        missing["rules_affinity"] = (
            f"rule counters of {', '.join(pinned)} left out: under ClientIP affinity in iptables mode "
            "returning clients take the `recent --rcheck` rules, and these frames have no counters of "
            "them (affinity_packets NA: read before the iptables reader kept them, or the dump lacks "
            "the checks), so the random-choice counters alone count only first choices"
        )
    counted = [f[~f["service_port_name"].astype("str").isin(pinned)] for f in rules_frames]
    if inp.windows:
        loads = [rules_load(f, labels=inp.labels, window_start=w0, window_end=w1)
                 for f, (w0, w1) in zip(counted, inp.windows)]
        loads.append(_whole_recording(concat_frames(loads, "backend_load"), inp.endpoints))
    else:
        loads = [rules_load(counted[-1], labels=inp.labels)]
    if not pinned and not any(len(x) for x in loads):
        missing["rules"] = _HOW["rules"]  # dumped without counters
    selections = []
    if inp.services is not None:
        selections.append(selection_from_rules(inp.endpoints, inp.services))
        selections += [selection_from_rules(f, inp.services, window_start=w0)
                       for f, (w0, _) in zip(rules_frames, inp.windows)]
    return loads, selections


def _pods_own_counts(inp: _Inputs) -> list[pd.DataFrame]:
    """The lab's ground truth (whole recording and per window) and request metrics."""
    spn = _single_spn(inp.services)
    if spn is None:
        return []
    loads = []
    if inp.truth is not None:
        loads.append(ground_truth_load(inp.truth, spn, labels=inp.labels))
        names = [f"ground_truth_after_event_{k}" for k in range(1, len(inp.windows))]
        if inp.windows and all(n in inp.frames for n in names):
            snaps = [validate_frame(inp.frames[n], "ground_truth") for n in names] + [inp.truth]
            for i, (w0, w1) in enumerate(inp.windows):
                piece = _gt_window(snaps[i], snaps[i - 1] if i else None)
                loads.append(ground_truth_load(piece, spn, labels=inp.labels, window_start=w0, window_end=w1))
    requests = inp.frames.get(REQUEST_METRICS)
    if requests is not None:
        loads.append(metrics_load(validate_frame(requests, "prom_samples"), spn, labels=inp.labels))
    return loads


def _topic_sections(frames: Mapping[str, pd.DataFrame], sections: dict[str, pd.DataFrame],
                    missing: dict[str, str]) -> pd.DataFrame:
    """Run each topic and the diagnostics; fill sections and missing; return their findings.

    ``frames`` come from :func:`_inputs`, whose flows carry their Service ports
    (:func:`._topics.with_attribution`): every topic reads that attribution instead
    of matching again.
    """
    found = [empty_frame("findings")]
    for section, fn in TOPICS:
        frame, findings, reason = fn(frames)
        # a topic with several frames (overhead: "overhead" and "overhead_fit") returns dicts by section
        if isinstance(frame, Mapping):
            sections.update({k: v for k, v in frame.items() if v is not None})
        elif frame is not None:
            sections[section] = frame
        if isinstance(reason, Mapping):
            missing.update({k: v for k, v in reason.items() if v})
        elif reason:
            missing[section] = reason
        found.append(validate_frame(findings, "findings"))
    # the diagnostics read the NodePort path computed above (endpoints placed on nodes
    # from the cluster's objects or the lab's topology) for the cross-node hop shares
    found.append(validate_frame(diagnose(frames, node_path=sections.get("node_path")), "findings"))
    return concat_frames(found, "findings")


def analyze(dataset: Dataset | Mapping[str, pd.DataFrame], *, n_boot: int = 1000, seed: int = 0,
            alpha: float = ALPHA) -> Analysis:
    """Analyse one dataset: skew, its expected model and causes, and every topic it allows.

    Parameters
    ----------
    dataset : Dataset or mapping of str to pandas.DataFrame
        A dataset (:func:`npanalytics.load_dataset`) or frames by kind name
        (``conntrack_flows``, ``proxy_services``, ``proxy_endpoints``,
        ``ground_truth``, ``k8s_services``, ``k8s_endpoints``, ``k8s_pods``,
        ``k8s_nodes``, and ``request_metrics`` (kind ``prom_samples``, a per-pod
        request counter), ...).
    n_boot, seed : int
        Bootstrap replicates and seed of the share intervals.
    alpha : float
        Significance level of the G-tests.

    Returns
    -------
    Analysis
        ``skew``/``skew_summary`` per Service port, window, source and grouping;
        ``findings`` most severe first; ``sections`` (``"load"``, ``"node_path"``
        and the topics'); ``missing`` (what could not be computed and how to
        collect it); ``provenance``.

    Raises
    ------
    SchemaError
        When a frame does not follow the spec of its kind (naming the kind and every
        problem).
    ValueError
        For ``alpha`` outside (0, 1) or ``n_boot`` < 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a significance level in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot: expected at least 1 bootstrap replicate, got {n_boot!r}")
    inp = _inputs(dataset)
    result = Analysis(provenance=_provenance(dataset))
    missing = result.missing
    if inp.labels.empty:
        missing["labels"] = _HOW["labels"]

    # load per backend and the expected model, per window
    loads: list[pd.DataFrame] = []
    if inp.flows is not None and inp.services is not None:
        loads.append(conntrack_load(inp.flows, inp.services, labels=inp.labels, proxy_endpoints=inp.endpoints))
    else:
        missing["conntrack"] = _HOW["conntrack"]
    rule_loads, selections = _rules(inp, missing)
    loads += rule_loads + _pods_own_counts(inp)
    if not selections and all(inp.k8s[k] is not None for k in ("k8s_services", "k8s_endpoints", "k8s_nodes")):
        selections.append(selection_from_spec(inp.k8s["k8s_services"], inp.k8s["k8s_endpoints"], inp.k8s["k8s_nodes"]))
    load = concat_frames(loads, "backend_load")
    selection = concat_frames(selections, "endpoint_selection")
    if selection.empty:
        missing["model"] = _HOW["model"]
    elif inp.endpoints is None:
        load = _programmed_from_selection(load, selection)
    result.sections["load"] = load
    path = (node_path(inp.flows, inp.services, labels=inp.labels, nodes=inp.nodes)
            if inp.flows is not None and inp.services is not None else empty_frame("node_path"))
    if len(path):
        result.sections["node_path"] = path
    else:
        missing["node_path"] = _HOW["node_path"]

    # skew against the model
    measure = load["source"].astype("str").map(_SKEW_MEASURE)
    compared = load[load["measure"].astype("str") == measure]
    expected = (expected_shares(selection, compared, client_node_mix(load), inp.labels)
                if len(selection) and len(compared) else None)
    result.skew, result.skew_summary = skew_table(compared, expected, n_boot=n_boot, seed=seed)

    # topics, diagnostics, and the attribution of the skew
    topics = _topic_sections(inp.frames, result.sections, missing)
    attributed = attribute_skew(result.skew, result.skew_summary, load,
                                policies=_policies(inp.services, inp.k8s["k8s_services"]),
                                topic_findings=topics, alpha=alpha)
    result.findings = sort_findings(concat_frames([attributed, topics], "findings"))
    return result
