"""Load per backend, from any source, and the NodePort path per entry node.

Pure functions: frames in, frames out (kinds ``backend_load`` and ``node_path``).

Sources
-------
- ``conntrack`` (:func:`conntrack_load`): every flow whose original destination is a
  Service port's frontend on the node whose table holds it (see
  :func:`npanalytics.analysis.flows.attribute_flows`) and that was DNATed to a backend
  counts as one connection of that backend, entering through that node; bytes and
  packets are summed where conntrack accounting was on. The second leg of a forwarded
  connection (the entry node to the pod, in the backend node's table) has a pod as its
  original destination, matches no frontend and is not counted twice.
- ``rules`` (:func:`rules_load`): the packet counter of the nat rule that jumps to an
  endpoint counts the new connections the node sent there (the nat table sees only a
  connection's first packet).
- ``ground_truth`` (:func:`ground_truth_load`): what the lab's pods counted themselves
  (requests and connections).
- ``metrics`` (:func:`metrics_load`): a per-pod request counter scraped by Prometheus
  (the increase of each series over the window, counter resets handled).

Backends are labelled with pod, node and zone through :func:`backend_labels` (from
EndpointSlices, pods and nodes, or the lab's recorded topology,
:func:`topology_from_recording`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..schemas import conform_frame, empty_frame, frame_from_records, validate_frame
from ._topics import ATTRIBUTION, flow_attribution

__all__ = [
    "MEASURES",
    "SOURCES",
    "backend_labels",
    "concat_frames",
    "conntrack_load",
    "ground_truth_load",
    "metrics_load",
    "node_path",
    "rules_load",
    "topology_from_recording",
]

SOURCES = ("conntrack", "rules", "metrics", "ground_truth")
"""The ``source`` vocabulary of kinds ``backend_load``, ``skew`` and ``skew_summary``."""

MEASURES = ("connections", "requests", "bytes", "packets")
"""The ``measure`` vocabulary of kind ``backend_load``."""

_LABELS = ["endpoint_ip", "pod", "node", "zone"]

# Columns that identify a group of identical flows for the analysis.
_FLOW_KEY = ("node", "protocol", "orig_dst_ip", "orig_dst_port", "backend_ip", "dnat", "snat")


def topology_from_recording(recording: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pods and nodes a lab recording lists in its topology facts.

    Parameters
    ----------
    recording : mapping
        A dataset's ``recording`` (manifest) dictionary; its ``topology`` has
        ``nodes`` (name, zone, ip) and ``pods`` (name, node, ip).

    Returns
    -------
    pods, nodes : pandas.DataFrame
        Kinds ``k8s_pods`` and ``k8s_nodes`` (empty when the recording has no
        topology). Columns the recording does not know are NA.
    """
    topo = recording.get("topology") or {}
    nodes = topo.get("nodes") or []
    node_rows = [
        {"node": n["name"], "internal_ip": n.get("ip"), "external_ip": None, "zone": n.get("zone"),
         "region": None, "ready": None}
        for n in nodes
    ]
    namespace = (topo.get("service") or {}).get("namespace")
    host = {n["name"]: n.get("ip") for n in nodes}
    pod_rows = [
        {"namespace": namespace, "pod": p["name"], "node": p.get("node"), "host_ip": host.get(p.get("node")),
         "pod_ip": p.get("ip"), "pod_ips": p.get("ip") or "", "phase": None, "ready": None,
         "terminating": None, "owner_kind": None, "owner_name": None}
        for p in topo.get("pods") or []
    ]
    return frame_from_records(pod_rows, "k8s_pods"), frame_from_records(node_rows, "k8s_nodes")


def backend_labels(
    pods: pd.DataFrame | None = None,
    nodes: pd.DataFrame | None = None,
    endpoints: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Lookup ``endpoint_ip -> pod, node, zone``.

    Parameters
    ----------
    pods, nodes, endpoints : pandas.DataFrame, optional
        Kinds ``k8s_pods``, ``k8s_nodes``, ``k8s_endpoints``. Endpoints give their
        target pod, node and zone directly; pods give node by pod IP; nodes give the
        zone of a node.

    Returns
    -------
    pandas.DataFrame
        Columns ``endpoint_ip, pod, node, zone`` (str, None when unknown), one row
        per address.
    """
    parts = []
    if endpoints is not None and len(endpoints):
        validate_frame(endpoints, "k8s_endpoints")
        parts.append(pd.DataFrame({
            "endpoint_ip": endpoints["address"].astype("object"),
            "pod": endpoints["target_pod"].astype("object"),
            "node": endpoints["node"].astype("object"),
            "zone": endpoints["zone"].astype("object"),
        }))
    if pods is not None and len(pods):
        validate_frame(pods, "k8s_pods")
        parts.append(pd.DataFrame({
            "endpoint_ip": pods["pod_ip"].astype("object"),
            "pod": pods["pod"].astype("object"),
            "node": pods["node"].astype("object"),
            "zone": None,
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in _LABELS})
    labels = pd.concat(parts, ignore_index=True)
    labels = labels[labels["endpoint_ip"].notna()]
    # first non-missing value per address, endpoints before pods
    labels = labels.groupby("endpoint_ip", sort=True).first().reset_index()
    if nodes is not None and len(nodes):
        validate_frame(nodes, "k8s_nodes")
        zone_of = dict(zip(nodes["node"].astype("str"), nodes["zone"].astype("object")))
        labels["zone"] = labels["zone"].where(labels["zone"].notna(), labels["node"].map(zone_of))
    return labels.astype("object").where(labels.notna(), None)[_LABELS]


def _dense(s: pd.Series) -> tuple[np.ndarray, int]:
    """Small non-negative integer codes of a column (0 = missing) and their number."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(), len(s.cat.categories) + 1  # -1 (missing) is moved to 0 below
    if s.dtype == "bool":
        return s.to_numpy(), 2
    values = s.to_numpy(dtype="int64", na_value=-1) + 1  # ports: 0 = missing
    if len(values) == 0:
        return values, 1
    seen = np.bincount(values) > 0
    lookup = np.cumsum(seen) - 1
    return lookup[values], int(seen.sum())


def _aggregate_flows(flows: pd.DataFrame, sums: tuple[str, ...] = ("bytes", "packets")
                     ) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Collapse identical flows: a representative row, a count, and sums per group.

    A mixed-radix integer key over the columns' small codes (int32 when it fits),
    then ``pandas.factorize``: millions of rows collapse in well under a second.
    ``sums`` names ``bytes`` and/or ``packets`` (original + reply direction); a
    group's sum is NaN when any of its flows lacks accounting.
    """
    cols = [c for c in _FLOW_KEY if c in flows.columns]
    parts = [(c, *_dense(flows[c])) for c in cols]
    radix = int(np.prod([span for _, _, span in parts], dtype="float64"))
    if radix >= 2**62:  # would overflow: hash the tuples instead
        key = flows.groupby(cols, observed=True, dropna=False, sort=False).ngroup().to_numpy(dtype="int64")
    else:
        dtype = "int32" if radix < 2**31 else "int64"
        key = np.zeros(len(flows), dtype=dtype)
        step = 1
        for c, code, span in parts:
            part = code.astype(dtype)
            if isinstance(flows[c].dtype, pd.CategoricalDtype):
                part += 1
            if step > 1:
                part *= step
            key += part
            step *= span
    group, uniques = pd.factorize(key)
    ngroups = len(uniques)
    rep = np.empty(ngroups, dtype="int64")
    rep[group] = np.arange(len(flows))
    count = np.bincount(group, minlength=ngroups).astype("int64")
    totals = {}
    for name in sums:
        a, b = {"bytes": ("orig_bytes", "reply_bytes"), "packets": ("orig_packets", "reply_packets")}[name]
        v = flows[a].to_numpy(dtype="float64", na_value=np.nan)
        v += flows[b].to_numpy(dtype="float64", na_value=np.nan)
        totals[name] = np.bincount(group, weights=v, minlength=ngroups)  # NaN when any flow lacks accounting
    return flows.iloc[rep], count, totals


def _label(df: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    if labels is None or len(labels) == 0:
        return df.assign(pod=None, node=None, zone=None)
    lab = labels[_LABELS].astype({"endpoint_ip": "str"}).drop_duplicates("endpoint_ip")
    return df.merge(lab, on="endpoint_ip", how="left")


def _label_pods(df: pd.DataFrame, labels: pd.DataFrame | None, columns: tuple[str, ...]) -> pd.DataFrame:
    """``df`` with ``columns`` of :func:`backend_labels` looked up by its ``pod`` (None without labels)."""
    if labels is None or len(labels) == 0:
        return df.assign(**{c: None for c in columns})
    lab = labels.dropna(subset=["pod"]).drop_duplicates("pod").set_index("pod")
    return df.assign(**{c: df["pod"].map(lab[c]) for c in columns})


def _cat(values) -> pd.Series:
    s = pd.Series(values, dtype="object")
    return pd.Series(s.where(s.notna(), None).tolist(), dtype="str").astype("category")


def concat_frames(frames: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    """Concatenate frames of one kind, keeping the spec's dtypes.

    ``pandas.concat`` turns ``category`` columns with different categories into
    plain strings; they are made categories again.

    Parameters
    ----------
    frames : list of pandas.DataFrame
        Frames of kind ``kind``.
    kind : str
        Their kind.

    Returns
    -------
    pandas.DataFrame
        One validated frame of ``kind`` (empty, with its columns, when ``frames`` is).
    """
    frames = [validate_frame(f, kind) for f in frames if len(f)]
    if not frames:
        return empty_frame(kind)
    return conform_frame(pd.concat(frames, ignore_index=True), kind)


def _utc(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="object"), utc=True).astype("datetime64[ns, UTC]")


def _load_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of ``df`` -> a validated ``backend_load`` frame."""
    if df.empty:
        return empty_frame("backend_load")
    out = pd.DataFrame(
        {
            "service_port_name": _cat(df["service_port_name"]),
            "window_start": _utc(df["window_start"].to_numpy()),
            "window_end": _utc(df["window_end"].to_numpy()),
            "source": _cat(df["source"]),
            "measure": _cat(df["measure"]),
            "entry_node": _cat(df["entry_node"]),
            "endpoint_ip": _cat(df["endpoint_ip"]),
            "pod": _cat(df["pod"]),
            "node": _cat(df["node"]),
            "zone": _cat(df["zone"]),
            "programmed": pd.array(df["programmed"].tolist(), dtype="boolean"),
            "value": df["value"].to_numpy(dtype="float64"),
        }
    )
    return validate_frame(out, "backend_load")


def _programmed(proxy_endpoints: pd.DataFrame | None) -> set[tuple[str, str, str]]:
    """``(service_port_name, node, endpoint_ip)`` of every endpoint in the rules."""
    if proxy_endpoints is None:
        return set()
    node = proxy_endpoints["node"].astype("str") if "node" in proxy_endpoints else pd.Series("", index=proxy_endpoints.index)
    return set(zip(proxy_endpoints["service_port_name"].astype("str"), node, proxy_endpoints["endpoint_ip"].astype("str")))


def _attributed(flows: pd.DataFrame, services: pd.DataFrame, sums: tuple[str, ...] = ()
                ) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Aggregated flows with their Service port (attributed per node against that node's rules).

    Flows that already carry the :data:`._topics.ATTRIBUTION` column (as ``analyze``
    passes them) are not matched again.
    """
    validate_frame(flows, "conntrack_flows")
    validate_frame(services, "proxy_services")
    rep, count, totals = _aggregate_flows(flows, sums)
    if ATTRIBUTION in rep.columns:
        # matched once by analyze; a flow's Service port depends only on columns of the group key
        return rep, count, totals
    return rep.assign(**{ATTRIBUTION: flow_attribution(rep, services)}), count, totals


def conntrack_load(
    flows: pd.DataFrame,
    services: pd.DataFrame,
    *,
    labels: pd.DataFrame | None = None,
    proxy_endpoints: pd.DataFrame | None = None,
    window_start: pd.Timestamp | None = None,
    window_end: pd.Timestamp | None = None,
    measures: tuple[str, ...] = ("connections", "bytes", "packets"),
) -> pd.DataFrame:
    """Connections (and bytes, packets where accounted) per backend and entry node from conntrack.

    Parameters
    ----------
    flows : pandas.DataFrame
        Kind ``conntrack_flows`` (with ``node`` when several nodes' tables are joined).
    services : pandas.DataFrame
        Kind ``proxy_services`` of the same nodes.
    labels : pandas.DataFrame, optional
        From :func:`backend_labels`.
    proxy_endpoints : pandas.DataFrame, optional
        Kind ``proxy_endpoints`` in force at the dump: sets ``programmed`` (False for
        a backend the entry node's rules no longer have: a stale entry).
    window_start, window_end : pandas.Timestamp, optional
        The window the table covers (NaT: a snapshot).
    measures : tuple of str
        Which of ``connections``, ``bytes``, ``packets`` to compute.

    Returns
    -------
    pandas.DataFrame
        Kind ``backend_load`` with source ``conntrack``; measures ``connections``,
        and ``bytes``/``packets`` for (Service port, entry node, backend) groups where
        every flow was accounted.
    """
    unknown = sorted(set(measures) - {"connections", "bytes", "packets"})
    if unknown:
        raise ValueError(f"measures: unknown {unknown}; allowed: ['connections', 'bytes', 'packets']")
    sums = tuple(m for m in ("bytes", "packets") if m in measures)
    rep, count, totals = _attributed(flows, services, sums)
    served = rep["service_port_name"].notna().to_numpy() & rep["dnat"].to_numpy(dtype=bool)
    if not served.any():
        return empty_frame("backend_load")
    entry = rep["node"].astype("object") if "node" in rep.columns else pd.Series(None, index=rep.index, dtype="object")
    base = pd.DataFrame({
        "service_port_name": rep["service_port_name"].to_numpy()[served],
        "entry_node": entry.to_numpy()[served],
        "endpoint_ip": rep["backend_ip"].astype("object").to_numpy()[served],
        "connections": count[served].astype("float64"),
        **{m: totals[m][served] for m in sums},
    })
    key = ["service_port_name", "entry_node", "endpoint_ip"]
    agg = base.groupby(key, dropna=False, sort=True).sum(min_count=1).reset_index()
    # sum(min_count=1) skips NaN; a group is accounted only when none of its flows lacked counters
    for m in sums:
        unaccounted = base.assign(u=base[m].isna()).groupby(key, dropna=False, sort=True)["u"].any().to_numpy()
        agg.loc[unaccounted, m] = np.nan
    programmed = _programmed(proxy_endpoints)
    if proxy_endpoints is not None:
        agg["programmed"] = [
            (str(s), "" if e is None or pd.isna(e) else str(e), str(ip)) in programmed
            for s, e, ip in zip(agg["service_port_name"], agg["entry_node"], agg["endpoint_ip"])
        ]
    else:
        agg["programmed"] = None
    long = agg.melt(id_vars=key + ["programmed"], value_vars=[m for m in ("connections", *sums) if m in measures],
                    var_name="measure", value_name="value")
    long = long[long["value"].notna()]
    long = _label(long, labels).assign(source="conntrack", window_start=window_start, window_end=window_end)
    return _load_frame(long.sort_values(["measure", *key], kind="stable").reset_index(drop=True))


def rules_load(
    proxy_endpoints: pd.DataFrame,
    *,
    labels: pd.DataFrame | None = None,
    window_start: pd.Timestamp | None = None,
    window_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """New connections per backend and node from the rules' packet counters.

    Parameters
    ----------
    proxy_endpoints : pandas.DataFrame
        Kind ``proxy_endpoints`` dumped with counters (``iptables-save -c``, ``nft
        list ruleset`` with counters, ``ipvsadm --stats``).
    labels : pandas.DataFrame, optional
        From :func:`backend_labels`.
    window_start, window_end : pandas.Timestamp, optional
        Since when the counters counted (the rules' load) and when they were dumped.

    Returns
    -------
    pandas.DataFrame
        Kind ``backend_load`` with source ``rules`` and measure ``connections``
        (counters of the cluster and the local chain summed); empty when the dump
        has no counters.

    Notes
    -----
    The new connections of an endpoint row are ``packets + affinity_packets``
    (an NA ``affinity_packets``, or no such column, adds nothing): under ClientIP
    affinity in iptables mode ``packets`` counts only the random choices and
    the ``recent --rcheck`` checks count the returning clients. Rows whose
    affinity counters are missing are not repaired here; the caller decides
    whether to leave such Service ports out.
    """
    validate_frame(proxy_endpoints, "proxy_endpoints")
    ep = proxy_endpoints[proxy_endpoints["packets"].notna()]
    if ep.empty:
        return empty_frame("backend_load")
    node = ep["node"].astype("object") if "node" in ep.columns else pd.Series(None, index=ep.index, dtype="object")
    value = ep["packets"].to_numpy(dtype="float64")
    if "affinity_packets" in ep.columns:
        value = value + ep["affinity_packets"].fillna(0).to_numpy(dtype="float64")
    df = pd.DataFrame({
        "service_port_name": ep["service_port_name"].astype("object"),
        "entry_node": node,
        "endpoint_ip": ep["endpoint_ip"].astype("object"),
        "value": value,
    })
    key = ["service_port_name", "entry_node", "endpoint_ip"]
    agg = df.groupby(key, dropna=False, sort=True)["value"].sum().reset_index()
    agg = _label(agg, labels).assign(source="rules", measure="connections", programmed=True,
                                     window_start=window_start, window_end=window_end)
    return _load_frame(agg)


def ground_truth_load(
    ground_truth: pd.DataFrame,
    service_port_name: str,
    *,
    labels: pd.DataFrame | None = None,
    window_start: pd.Timestamp | None = None,
    window_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Requests and connections per pod as the lab's pods counted them.

    Parameters
    ----------
    ground_truth : pandas.DataFrame
        Kind ``ground_truth`` (counts over the window; see
        :func:`npanalytics.lab.record.read_ground_truth`).
    service_port_name : str
        The Service port the pods served (the lab's scenarios have one).
    labels : pandas.DataFrame, optional
        From :func:`backend_labels`; gives each pod its address and zone.
    window_start, window_end : pandas.Timestamp, optional
        The window the counts cover.

    Returns
    -------
    pandas.DataFrame
        Kind ``backend_load`` with source ``ground_truth``, measures ``requests`` and
        ``connections``; ``entry_node`` NA (a pod does not know the node a client
        entered through).
    """
    validate_frame(ground_truth, "ground_truth")
    if ground_truth.empty:
        return empty_frame("backend_load")
    per = (ground_truth.astype({"pod": "str", "node": "str"})
           .groupby(["pod", "node"], sort=True)[["requests", "connections"]].sum().reset_index())
    per = _label_pods(per, labels, ("endpoint_ip", "zone"))
    long = per.melt(id_vars=["pod", "node", "endpoint_ip", "zone"], value_vars=["requests", "connections"],
                    var_name="measure", value_name="value")
    long = long.assign(service_port_name=service_port_name, entry_node=None, programmed=None,
                       source="ground_truth", window_start=window_start, window_end=window_end)
    return _load_frame(long)


def metrics_load(
    samples: pd.DataFrame,
    service_port_name: str,
    *,
    metric: str | None = None,
    pod_label: str = "pod",
    labels: pd.DataFrame | None = None,
    window_start: pd.Timestamp | None = None,
    window_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Requests per pod from a request counter (e.g. ``http_requests_total``) per pod.

    Parameters
    ----------
    samples : pandas.DataFrame
        Kind ``prom_samples`` of a counter, with a label column naming the pod.
    service_port_name : str
        The Service port the pods serve.
    metric : str, optional
        Keep only samples whose ``__name__`` is this.
    pod_label : str, default "pod"
        The label column that names the pod.
    labels : pandas.DataFrame, optional
        From :func:`backend_labels`.
    window_start, window_end : pandas.Timestamp, optional
        Only samples in ``[window_start, window_end]`` count.

    Returns
    -------
    pandas.DataFrame
        Kind ``backend_load`` with source ``metrics`` and measure ``requests``: per pod,
        the sum over its series of the counter's increase (a drop is a reset: the
        value after it counts from zero, as Prometheus' ``increase`` reads it).

    Raises
    ------
    ValueError
        When ``pod_label`` is not a column of ``samples``.
    """
    validate_frame(samples, "prom_samples")
    if pod_label not in samples.columns:
        raise ValueError(f"pod_label: the samples have no label column {pod_label!r}; "
                         f"they have {sorted(c for c in samples.columns if c not in ('timestamp', 'value'))}")
    df = samples
    if metric is not None and "__name__" in df.columns:
        df = df[df["__name__"].astype("str") == metric]
    if window_start is not None and pd.notna(window_start):
        df = df[df["timestamp"] >= window_start]
    if window_end is not None and pd.notna(window_end):
        df = df[df["timestamp"] <= window_end]
    df = df[df[pod_label].notna() & df["value"].notna()]
    if df.empty:
        return empty_frame("backend_load")
    series = [c for c in df.columns if c not in ("timestamp", "value")]
    df = df.astype({c: "str" for c in series}).sort_values([*series, "timestamp"], kind="stable")
    step = df.groupby(series, sort=False)["value"].diff()
    step = step.where(step.isna() | (step >= 0), df["value"])  # a reset: the new value is the increase
    per = step.fillna(0.0).groupby(df[pod_label]).sum().rename("value").reset_index()
    per = per.rename(columns={pod_label: "pod"})
    per = _label_pods(per, labels, ("endpoint_ip", "node", "zone"))
    per = per.assign(service_port_name=service_port_name, entry_node=None, programmed=None, source="metrics",
                     measure="requests", window_start=window_start, window_end=window_end)
    return _load_frame(per)


def node_path(
    flows: pd.DataFrame,
    services: pd.DataFrame,
    *,
    labels: pd.DataFrame | None = None,
    nodes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per entry node: the share of its node-port connections served locally vs forwarded.

    A connection enters through the node whose address it was sent to (its original
    destination, a node port on that node) and is served by the node of the endpoint
    its reply comes from. Forwarded connections under externalTrafficPolicy Cluster
    are SNATed to the entry node's address, so the pod never sees the client.

    Parameters
    ----------
    flows, services : pandas.DataFrame
        Kinds ``conntrack_flows`` and ``proxy_services`` (with ``node``).
    labels : pandas.DataFrame, optional
        From :func:`backend_labels` (the backend's node).
    nodes : pandas.DataFrame, optional
        Kind ``k8s_nodes``: node addresses (to recognise node-port destinations and
        backends that are node addresses) and zones.

    Returns
    -------
    pandas.DataFrame
        Kind ``node_path``, sorted by Service port, entry node and backend node.
    """
    if "node" not in flows.columns:
        return empty_frame("node_path")
    rep, count, _ = _attributed(flows, services)
    node_of_ip: dict[str, str] = {}
    zone_of: dict[str, Any] = {}
    if nodes is not None and len(nodes):
        validate_frame(nodes, "k8s_nodes")
        for col in ("internal_ip", "external_ip"):
            node_of_ip.update({str(ip): str(n) for ip, n in zip(nodes[col], nodes["node"]) if pd.notna(ip)})
        zone_of = {str(n): (None if pd.isna(z) else str(z)) for n, z in zip(nodes["node"], nodes["zone"])}
    is_np = rep["is_node_port"].to_numpy(dtype=bool)
    if node_of_ip:  # a node-port connection is addressed to a node
        is_np = is_np | rep["orig_dst_ip"].astype("str").isin(list(node_of_ip)).to_numpy()
    keep = rep["service_port_name"].notna().to_numpy() & rep["dnat"].to_numpy(dtype=bool) & is_np
    if not keep.any():
        return empty_frame("node_path")
    backend_node = dict(zip(labels["endpoint_ip"].astype("str"), labels["node"])) if labels is not None and len(labels) else {}
    df = pd.DataFrame({
        "service_port_name": rep["service_port_name"].to_numpy()[keep],
        "entry_node": rep["node"].astype("str").to_numpy()[keep],
        "backend_ip": rep["backend_ip"].astype("str").to_numpy()[keep],
        "connections": count[keep],
        "snat_connections": np.where(rep["snat"].to_numpy(dtype=bool)[keep], count[keep], 0),
    })
    df["backend_node"] = df["backend_ip"].map(lambda ip: backend_node.get(ip) or node_of_ip.get(ip))
    key = ["service_port_name", "entry_node", "backend_node"]
    agg = df.groupby(key, dropna=False, sort=True)[["connections", "snat_connections"]].sum().reset_index()
    total = agg.groupby(["service_port_name", "entry_node"])["connections"].transform("sum")
    agg["share"] = np.divide(agg["connections"], total, out=np.zeros(len(agg)), where=total > 0)
    agg["path"] = np.where(agg["backend_node"].isna(), "unknown",
                           np.where(agg["backend_node"] == agg["entry_node"], "local", "forwarded"))
    agg["entry_zone"] = agg["entry_node"].map(zone_of)
    agg["backend_zone"] = agg["backend_node"].map(lambda n: zone_of.get(n) if isinstance(n, str) else None)
    cross = [None if pd.isna(a) or pd.isna(b) else a != b for a, b in zip(agg["entry_zone"], agg["backend_zone"])]
    out = pd.DataFrame({
        "service_port_name": _cat(agg["service_port_name"]),
        "entry_node": _cat(agg["entry_node"]),
        "entry_zone": _cat(agg["entry_zone"]),
        "backend_node": _cat(agg["backend_node"]),
        "backend_zone": _cat(agg["backend_zone"]),
        "path": _cat(agg["path"]),
        "cross_zone": pd.array(cross, dtype="boolean"),
        "connections": agg["connections"].astype("int64"),
        "share": agg["share"].astype("float64"),
        "snat_connections": agg["snat_connections"].astype("int64"),
    })
    return validate_frame(out, "node_path")
