"""Diagnostics: the NodePort troubleshooting list as findings.

Pure functions. :func:`diagnose` runs every check the frames allow and returns
one ``findings`` frame (severity, code, service, node, what, evidence, advice):

=========================  ==================================================================
code                       check
=========================  ==================================================================
no-ready-endpoints         the rules reject a Service port for having no endpoints, or its
                           EndpointSlices hold no ready address
node-port-not-programmed   a nodePort of the Service (or of another node's rules) is missing
                           from a node's rules
local-policy-blackhole     externalTrafficPolicy Local on a node without a local endpoint:
                           external traffic that node receives is dropped
node-port-out-of-range     node ports outside ``--service-node-port-range``, two Services on
                           one port, or the dynamic band (KEP-3668) nearly used up
snat-source-lost           Cluster policy masquerades node-port traffic: the pods see a node
                           address instead of the client's
stale-conntrack            conntrack entries toward a backend that is no longer an endpoint
cross-node-hops            connections served on another node (or zone) than they entered
conntrack-pressure         the conntrack table is (or will be) nearly full; see
                           :func:`npanalytics.analysis.pressure.pressure_section`
=========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._topics import Frames, finding, findings_frame, findings_records, fmt_pct, present, service_flows
from .pressure import pressure_section

__all__ = [
    "diagnose",
    "static_band",
    "DEFAULT_NODE_PORT_RANGE",
    "SNAT_MIN_SHARE",
    "CROSS_NODE_SHARE",
    "CROSS_ZONE_SHARE",
    "DYNAMIC_BAND_FULL",
]

DEFAULT_NODE_PORT_RANGE = (30000, 32767)
"""kube-apiserver's default ``--service-node-port-range`` (inclusive)."""

SNAT_MIN_SHARE = 0.01
"""Share of a Service port's node-port flows that must be SNATed for ``snat-source-lost``."""

CROSS_NODE_SHARE = 0.5
"""Share of connections served on another node from which ``cross-node-hops`` is reported (info)."""

CROSS_ZONE_SHARE = 0.3
"""Share of connections served in another zone from which ``cross-node-hops`` is a warning."""

DYNAMIC_BAND_FULL = 0.9
"""Use of the dynamic band from which automatic allocation starts taking static ports."""


def static_band(node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE) -> tuple[int, int]:
    """The static band (KEP-3668) of a node-port range: ``(first, last)``; ``(lo, lo - 1)`` when empty.

    Its size is ``min(max(16, size // 32), 128)``, and 0 for ranges of 16 ports or fewer;
    it is the lower part of the range. The default range gives ``(30000, 30085)``.
    """
    lo, hi = _check_range(node_port_range)
    size = hi - lo + 1
    band = 0 if size <= 16 else min(max(16, size // 32), 128)
    return lo, lo + band - 1


def _check_range(node_port_range) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in node_port_range)
    except (TypeError, ValueError):
        raise ValueError(f"node_port_range must be a (low, high) pair of ports, got {node_port_range!r}") from None
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"node_port_range must satisfy 0 < low <= high <= 65535, got {node_port_range!r}")
    return lo, hi


def _nodes(services: pd.DataFrame) -> pd.Series:
    return services["node"].astype("str") if "node" in services.columns else pd.Series("", index=services.index)


def _no_ready_endpoints(services: pd.DataFrame | None, k8s_endpoints: pd.DataFrame | None,
                        k8s_services: pd.DataFrame | None) -> list[dict]:
    out = []
    if services is not None:
        bad = services.loc[~services["has_endpoints"]]
        for spn, g in bad.groupby(bad["service_port_name"].astype("str"), sort=True):
            nodes = sorted(set(_nodes(g)) - {""})
            out.append(finding(
                "critical", "no-ready-endpoints", spn, nodes[0] if len(nodes) == 1 else None,
                "the rules reject connections to this Service port: it has no endpoints",
                f"kube-proxy's rules on {', '.join(nodes) if nodes else 'the node'} REJECT it ('has no endpoints')",
                "check the Service's selector against the pods' labels and the pods' readiness probes "
                "(kubectl get endpointslices -l kubernetes.io/service-name=<service>)",
            ))
    if k8s_endpoints is None or k8s_services is None:
        return out
    seen = {r["service"] for r in out}
    ep = k8s_endpoints.assign(_key=k8s_endpoints["namespace"].astype("str") + "/" + k8s_endpoints["service"].astype("str"))
    svc = k8s_services.loc[(k8s_services["type"].astype("str") != "ExternalName")
                           & (k8s_services["cluster_ip"].astype("str") != "None")]
    for r in svc.itertuples():
        key = f"{r.namespace}/{r.service}"
        spn = r.service_port_name if pd.notna(r.service_port_name) else key
        if str(spn) in seen:
            continue
        rows = ep.loc[ep["_key"] == key]
        if pd.notna(r.port_name) and rows["port_name"].notna().any():
            rows = rows.loc[rows["port_name"].astype("str") == str(r.port_name)]
        ready = rows["ready"].fillna(True).astype(bool)  # conditions.ready: nil means true
        if ready.any():
            continue
        serving = rows["serving"].fillna(True).astype(bool) & rows["terminating"].fillna(False).astype(bool)
        fallback = bool(serving.any())
        seen.add(str(spn))
        out.append(finding(
            "warning" if fallback else "critical", "no-ready-endpoints", spn, None,
            "no ready endpoint" + ("; kube-proxy falls back to the serving, terminating ones" if fallback else ""),
            f"{len(rows)} endpoint addresses in the EndpointSlices, none ready"
            + (f"; {int(serving.sum())} serving and terminating" if fallback else ""),
            "check the pods' readiness and the Service's selector; during a rollout, make sure new pods "
            "become ready before old ones terminate",
        ))
    return out


def _node_port_not_programmed(services: pd.DataFrame | None, k8s_services: pd.DataFrame | None) -> list[dict]:
    if services is None or "node" not in services.columns:
        return []
    nodes = sorted(services["node"].astype("str").unique())
    have = {(str(r.node), str(r.protocol), int(r.node_port)) for r in services.itertuples() if pd.notna(r.node_port)}
    wanted: dict[tuple[str, int], tuple[str, str]] = {}
    if k8s_services is not None:
        for r in k8s_services.itertuples():
            if pd.notna(r.node_port):
                spn = r.service_port_name if pd.notna(r.service_port_name) else f"{r.namespace}/{r.service}"
                wanted[(str(r.protocol), int(r.node_port))] = (str(spn), "the Service")
    for r in services.itertuples():
        if pd.notna(r.node_port):
            wanted.setdefault((str(r.protocol), int(r.node_port)), (str(r.service_port_name), "other nodes' rules"))
    out = []
    for (protocol, port), (spn, source) in sorted(wanted.items()):
        missing = [n for n in nodes if (n, protocol, port) not in have]
        for node in missing:
            out.append(finding(
                "critical", "node-port-not-programmed", spn, node,
                f"node port {port}/{protocol} is not in this node's rules",
                f"{source} give node port {port}/{protocol}; {len(nodes) - len(missing)} of {len(nodes)} nodes "
                f"program it, {node} does not",
                "check kube-proxy on this node (running? its logs, kubeproxy_sync_proxy_rules_last_timestamp_seconds, "
                "restore failures) and whether it watches the same API server",
            ))
    return out


def _policy_of(services: pd.DataFrame) -> dict[str, str]:
    sub = services[["service_port_name", "external_traffic_policy"]].dropna()
    return dict(zip(sub["service_port_name"].astype("str"), sub["external_traffic_policy"].astype("str")))


def _local_blackhole(services: pd.DataFrame | None, attributed: pd.DataFrame | None) -> list[dict]:
    if services is None:
        return []
    local = services.loc[(services["external_traffic_policy"].astype("str") == "Local") & services["node_port"].notna()]
    out = []
    for r in local.itertuples():
        if pd.notna(r.local_endpoint_count) and r.local_endpoint_count > 0:
            continue
        node = str(getattr(r, "node", "")) if hasattr(r, "node") else ""
        received = 0
        if attributed is not None:
            mine = attributed.loc[(attributed["service_port_name"] == str(r.service_port_name))
                                  & (attributed["node"] == node) & attributed["is_node_port"]]
            received = len(mine)
        out.append(finding(
            "critical" if received else "warning", "local-policy-blackhole", r.service_port_name, node or None,
            "externalTrafficPolicy Local on a node without a local endpoint: external traffic it receives is dropped",
            f"0 local endpoints on {node or 'the node'} for node port {int(r.node_port)}"
            + (f"; {received} conntrack entries show traffic arriving there" if received else
               "; no traffic seen in its conntrack table (a load balancer health check may keep traffic away)"),
            "send external traffic only to nodes with endpoints (type LoadBalancer with its healthCheckNodePort, "
            "or an external LB that checks it), spread the pods over every node that receives traffic "
            "(DaemonSet, topology spread), or use Cluster policy",
        ))
    return out


def _node_port_range(services: pd.DataFrame | None, k8s_services: pd.DataFrame | None,
                     node_port_range: tuple[int, int]) -> list[dict]:
    lo, hi = node_port_range
    ports: dict[tuple[str, int], set[str]] = {}
    for df in (k8s_services, services):
        if df is None:
            continue
        for r in df.itertuples():
            if pd.notna(r.node_port):
                spn = r.service_port_name if pd.notna(r.service_port_name) else f"{r.namespace}/{r.service}"
                ports.setdefault((str(r.protocol), int(r.node_port)), set()).add(str(spn))
    out = []
    for (protocol, port), spns in sorted(ports.items()):
        if not lo <= port <= hi:
            for spn in sorted(spns):
                out.append(finding(
                    "warning", "node-port-out-of-range", spn, None,
                    f"node port {port}/{protocol} lies outside the node-port range {lo}-{hi}",
                    f"configured range {lo}-{hi} (--service-node-port-range); port {port}",
                    "check the API server's --service-node-port-range against the one assumed here; a port "
                    "outside it may collide with host services",
                ))
        if len(spns) > 1:
            out.append(finding(
                "critical", "node-port-out-of-range", None, None,
                f"node port {port}/{protocol} is used by {len(spns)} Service ports",
                f"{', '.join(sorted(spns))} all claim {port}/{protocol}",
                "give each Service port its own nodePort (the API server refuses duplicates: the rules or "
                "objects come from different clusters or states)",
            ))
    s_lo, s_hi = static_band((lo, hi))
    dynamic = {p for _, p in ports if s_hi < p <= hi}
    size = hi - s_hi
    use = len(dynamic) / size if size > 0 else 0.0
    if use >= DYNAMIC_BAND_FULL / 2:
        static_used = len({p for _, p in ports if s_lo <= p <= s_hi})
        out.append(finding(
            "warning" if use >= DYNAMIC_BAND_FULL else "info", "node-port-out-of-range", None, None,
            "the dynamic node-port band is filling up: automatic allocation then takes static ports",
            f"dynamic band {s_hi + 1}-{hi}: {len(dynamic)} of {size} used ({fmt_pct(use)}); static band "
            f"{s_lo}-{s_hi}: {static_used} used",
            "widen --service-node-port-range or remove unused NodePort Services; set node ports by hand only "
            "from the static band",
        ))
    return out


def _snat_source_lost(services: pd.DataFrame | None, attributed: pd.DataFrame | None,
                      ground_truth: pd.DataFrame | None) -> list[dict]:
    if services is None or attributed is None:
        return []
    policy = _policy_of(services)
    out = []
    for spn, g in attributed.loc[attributed["is_node_port"]].groupby("service_port_name", sort=True):
        share = float(g["snat"].mean()) if len(g) else 0.0
        if share < SNAT_MIN_SHARE:
            continue
        clients = g["orig_src_ip"].astype("str").nunique()
        seen = g.loc[g["snat"], "reply_dst_ip"].astype("str").nunique()
        evidence = (f"{fmt_pct(share)} of {len(g):,} node-port flows are SNATed; {clients} client addresses "
                    f"reach the node, the pods see {seen} node address(es) in their place")
        if ground_truth is not None:
            evidence += f"; the pods counted {ground_truth['client'].astype('str').nunique()} client address(es)"
        out.append(finding(
            "info", "snat-source-lost", spn, None,
            f"externalTrafficPolicy {policy.get(spn, 'Cluster')}: node-port traffic is masqueraded, "
            "so the pods never see the client's address",
            evidence,
            "use externalTrafficPolicy Local (keeps the client address; only nodes with endpoints serve) or "
            "pass the client address at L7 (X-Forwarded-For, PROXY protocol)",
        ))
    return out


def _stale_conntrack(frames: Frames, attributed: pd.DataFrame | None, endpoints: pd.DataFrame | None,
                     flows: pd.DataFrame | None) -> list[dict]:
    given = present(frames, "endpoint_flows")
    if given is not None:
        stale = given.loc[~given["in_rules"] & (given["flows"] > 0)]
        rows = [(getattr(r, "node", None), str(r.service_port_name), str(r.endpoint_ip), r.endpoint_port, int(r.flows),
                 float(r.flow_share), _live_entries(flows, getattr(r, "node", None), str(r.endpoint_ip))
                 if flows is not None else 0) for r in stale.itertuples()]
    elif attributed is not None and endpoints is not None:
        rows = _stale_rows(attributed, endpoints)
    else:
        return []
    out = []
    for node, spn, ip, port, n_flows, share, live in rows:
        out.append(finding(
            "warning" if live else "info", "stale-conntrack", spn, node,
            f"conntrack entries toward {ip}:{port}, which is no longer an endpoint",
            f"{n_flows:,} flows ({fmt_pct(share)} of the Service port's) go to a backend the rules "
            f"no longer hold; {live:,} of them still ESTABLISHED or UDP",
            "established TCP entries keep sending to the removed pod until they close: let pods drain "
            "(preStop, terminationGracePeriod) and clients reconnect; for UDP, kube-proxy deletes such "
            "entries (conntrack -D -r <address> by hand)",
        ))
    return out


def _stale_rows(attributed: pd.DataFrame, endpoints: pd.DataFrame) -> list[tuple]:
    """``(node, spn, ip, port, flows, share, live)`` per DNATed backend that the node's rules do not hold."""
    ep_node = endpoints["node"].astype("str") if "node" in endpoints.columns else pd.Series("*", index=endpoints.index)
    programmed = set(zip(ep_node, endpoints["service_port_name"].astype("str"), endpoints["endpoint_ip"].astype("str"),
                         endpoints["endpoint_port"].astype("float64")))
    dnat = attributed.loc[attributed["dnat"]]
    live = ((dnat["state"] == "ESTABLISHED") | (dnat["protocol"] == "udp")).to_numpy(dtype=bool)
    keys = [dnat["node"], dnat["service_port_name"], dnat["backend_ip"].astype("str"),
            dnat["backend_port"].astype("float64")]
    counts = dnat.assign(_live=live).groupby(keys, sort=True, dropna=False)["_live"].agg(["size", "sum"])
    totals = counts["size"].groupby(level=[0, 1]).transform("sum")
    rows = []
    for (node, spn, ip, port), size, n_live, total in zip(counts.index, counts["size"], counts["sum"], totals):
        if (node, spn, ip, port) in programmed or ("*", spn, ip, port) in programmed:
            continue
        port_text = "?" if pd.isna(port) else int(port)
        rows.append((node or None, spn, ip, port_text, int(size), float(size / total), int(n_live)))
    return rows


def _live_entries(flows: pd.DataFrame, node, backend: str) -> int:
    mask = flows["backend_ip"].astype("str") == backend
    if node is not None and "node" in flows.columns:
        mask &= flows["node"].astype("str") == str(node)
    sub = flows.loc[mask]
    live = (sub["state"].astype("str") == "ESTABLISHED") | (sub["protocol"].astype("str") == "udp")
    return int(live.sum())


def _endpoint_nodes(frames: Frames, given: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """``endpoint address -> node`` and ``node -> zone`` from the frames (and a given mapping)."""
    nodes: dict[str, str] = {}
    zones: dict[str, str] = {}
    eps = present(frames, "proxy_endpoints")
    if eps is not None and "node" in eps.columns:
        local = eps.loc[eps["local"]]
        nodes.update(zip(local["endpoint_ip"].astype("str"), local["node"].astype("str")))
    pods = present(frames, "k8s_pods")
    if pods is not None:
        sub = pods.dropna(subset=["pod_ip", "node"])
        nodes.update(zip(sub["pod_ip"].astype("str"), sub["node"].astype("str")))
    k8s_eps = present(frames, "k8s_endpoints")
    if k8s_eps is not None:
        sub = k8s_eps.dropna(subset=["address", "node"])
        nodes.update(zip(sub["address"].astype("str"), sub["node"].astype("str")))
        sub = k8s_eps.dropna(subset=["node", "zone"])
        zones.update(zip(sub["node"].astype("str"), sub["zone"].astype("str")))
    k8s_nodes = present(frames, "k8s_nodes")
    if k8s_nodes is not None:
        sub = k8s_nodes.dropna(subset=["zone"])
        zones.update(zip(sub["node"].astype("str"), sub["zone"].astype("str")))
    nodes.update(dict(given or {}))
    return nodes, zones


def _cross_node_hops(frames: Frames, attributed: pd.DataFrame | None, flows: pd.DataFrame | None,
                     endpoint_nodes: Mapping[str, str] | None) -> list[dict]:
    if attributed is None or flows is None or "node" not in flows.columns:
        return []
    backend_node, zone = _endpoint_nodes(frames, endpoint_nodes)
    if not backend_node:
        return []
    attributed = attributed.assign(_bnode=attributed["backend_ip"].astype("str").map(backend_node))
    attributed = attributed.loc[attributed["_bnode"].notna()]
    out = []
    for spn, g in attributed.groupby("service_port_name", sort=True):
        cross = g["_bnode"] != g["node"]
        share = float(cross.mean())
        ez, bz = g["node"].map(zone), g["_bnode"].map(zone)
        known = ez.notna() & bz.notna()
        zone_share = float((ez[known] != bz[known]).mean()) if known.any() else float("nan")
        per_node = ", ".join(f"{n} {fmt_pct(v)}" for n, v in cross.groupby(g["node"]).mean().items())
        rec = _hops_finding(spn, share, zone_share, len(g), per_node)
        if rec:
            out.append(rec)
    return out


def _hops_finding(spn: str, share: float, zone_share: float, total: int, per_node: str) -> dict | None:
    if share < CROSS_NODE_SHARE and not (np.isfinite(zone_share) and zone_share >= CROSS_ZONE_SHARE):
        return None
    return finding(
        "warning" if np.isfinite(zone_share) and zone_share >= CROSS_ZONE_SHARE else "info",
        "cross-node-hops", spn, None,
        "many connections are served on another node than the one they entered (an extra hop, SNAT)",
        f"{fmt_pct(share)} of {total:,} connections cross nodes (per entry node: {per_node})"
        + (f"; {fmt_pct(zone_share)} cross zones" if np.isfinite(zone_share) else ""),
        "send traffic to nodes with endpoints (externalTrafficPolicy Local with health checks), or keep it "
        "in the zone (trafficDistribution PreferClose / topology-aware routing)",
    )


def _cross_node_from_path(node_path: pd.DataFrame) -> list[dict]:
    """``cross-node-hops`` from a ``node_path`` frame (local vs forwarded per entry node)."""
    validate_frame(node_path, "node_path")
    path = node_path.loc[node_path["path"].astype("str").isin(["local", "forwarded"])]
    out = []
    for spn, g in path.groupby(path["service_port_name"].astype("str"), sort=True):
        conns = g["connections"].to_numpy(dtype="float64")
        total = conns.sum()
        if total <= 0:
            continue
        fwd = (g["path"].astype("str") == "forwarded").to_numpy()
        known = g["cross_zone"].notna().to_numpy()
        cross_zone = g["cross_zone"].fillna(False).astype(bool).to_numpy()
        zone_share = conns[cross_zone].sum() / conns[known].sum() if conns[known].sum() > 0 else float("nan")
        per_entry = g.assign(_fwd=np.where(fwd, conns, 0.0), _all=conns).groupby(
            g["entry_node"].astype("str"), sort=True)[["_fwd", "_all"]].sum()
        per_node = ", ".join(f"{n} {fmt_pct(r._fwd / r._all)}" for n, r in per_entry.iterrows() if r._all > 0)
        rec = _hops_finding(spn, float(conns[fwd].sum() / total), float(zone_share), int(total), per_node)
        if rec:
            out.append(rec)
    return out


def diagnose(frames: Frames, *, node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
             endpoint_nodes: Mapping[str, str] | None = None,
             node_path: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every troubleshooting check the frames allow, as findings.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        A dataset's frames by name; each check uses what it needs and is skipped
        without it: ``proxy_services``, ``proxy_endpoints``, ``conntrack_flows``,
        ``conntrack_stats``, ``endpoint_flows``, ``ground_truth``, ``k8s_services``,
        ``k8s_endpoints``, ``k8s_pods``, ``k8s_nodes``.
    node_port_range : (int, int)
        The API server's ``--service-node-port-range``, inclusive.
    endpoint_nodes : mapping of str to str, optional
        Endpoint address -> node, added to what the frames tell (for cross-node hops).
    node_path : pandas.DataFrame, optional
        Kind ``node_path`` (local vs forwarded per entry node, as the analysis
        computes it); when given, cross-node hops come from it instead.

    Returns
    -------
    pandas.DataFrame
        Kind ``findings``, most severe first (see the module docstring for the codes).
        The ``conntrack-pressure`` rows are those of
        :func:`~npanalytics.analysis.pressure.pressure_section` (identical rows: drop
        duplicates when concatenating both).
    """
    node_port_range = _check_range(node_port_range)
    services = present(frames, "proxy_services")
    endpoints = present(frames, "proxy_endpoints")
    flows = present(frames, "conntrack_flows")
    k8s_services = present(frames, "k8s_services")
    attributed = service_flows(flows, services) if flows is not None and services is not None else None
    records = []
    records += _no_ready_endpoints(services, present(frames, "k8s_endpoints"), k8s_services)
    records += _node_port_not_programmed(services, k8s_services)
    records += _local_blackhole(services, attributed)
    records += _node_port_range(services, k8s_services, node_port_range)
    records += _snat_source_lost(services, attributed, present(frames, "ground_truth"))
    records += _stale_conntrack(frames, attributed, endpoints, flows)
    if node_path is not None:
        records += _cross_node_from_path(node_path)
    else:
        records += _cross_node_hops(frames, attributed, flows, endpoint_nodes)
    _, pressure, _ = pressure_section(frames)
    records += findings_records(pressure)
    out = findings_frame(records)
    return validate_frame(out, "findings")
