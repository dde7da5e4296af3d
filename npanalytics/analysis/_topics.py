"""Helpers shared by the topic modules (affinity, long-lived, overhead, pressure, diagnostics).

Private: frame look-up by kind, findings records, and Service-port attribution of
conntrack flows across nodes (computed once by :func:`with_attribution` when several
topics run on the same frames, as in ``analyze``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..schemas import empty_frame, frame_from_records, validate_frame
from .flows import attribute_flows

Frames = Mapping[str, pd.DataFrame]

COLLECT = {
    "conntrack_flows": "collect `conntrack -L -o extended` on each node (with "
    "`net.netfilter.nf_conntrack_acct=1` for bytes and packets)",
    "conntrack_stats": "collect `conntrack -S` and `conntrack -C` (or /proc/net/stat/nf_conntrack) on each node",
    "proxy_services": "collect kube-proxy's rules on each node (`iptables-save -c`, `nft list ruleset` or `ipvsadm -Ln`)",
    "proxy_endpoints": "collect kube-proxy's rules with counters on each node (`iptables-save -c`, `nft list ruleset`)",
    "rule_loads": "record rule-load (sync) durations: kube-proxy's kubeproxy_sync_proxy_rules_duration_seconds, or the lab's rule_loads",
    "connect_latency": "run the lab's proxy-mode sweep (`npanalytics lab sweep`) or load the bundled dataset 'proxy-mode-sweep'",
    "ground_truth": "count requests per pod and client on the pods (the lab records this as ground_truth)",
    "k8s_services": "collect the Services from the API (`kubectl get svc -A -o json`) or kube-state-metrics",
}
"""What to collect for each frame kind, quoted in the ``missing`` reasons."""


def frame(frames: Frames, kind: str, name: str | None = None) -> pd.DataFrame | None:
    """The frame called ``name`` (default ``kind``) validated as ``kind``, or None when absent."""
    df = frames.get(name or kind)
    if df is None:
        return None
    return validate_frame(df, kind)


def present(frames: Frames, kind: str, name: str | None = None) -> pd.DataFrame | None:
    """Like :func:`frame`, but None for an empty frame too."""
    df = frame(frames, kind, name)
    return None if df is None or df.empty else df


def missing_reason(what: str, *kinds: str) -> str:
    """``"<what>: <how to collect kind 1>; <how to collect kind 2>"``."""
    return f"{what}: " + "; ".join(COLLECT[k] for k in kinds)


def finding(severity: str, code: str, service: object, node: object, what: str, evidence: str,
            advice: str) -> dict:
    """One findings record (``service``/``node`` None when not specific)."""
    return {
        "severity": severity,
        "code": code,
        "service": None if service is None or pd.isna(service) else str(service),
        "node": None if node is None or pd.isna(node) else str(node),
        "what": what,
        "evidence": evidence,
        "advice": advice,
    }


_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def findings_frame(records: list[dict]) -> pd.DataFrame:
    """Records -> a validated ``findings`` frame, most severe first (empty frame for none)."""
    if not records:
        return empty_frame("findings")
    records = sorted(records, key=lambda r: _SEVERITY_ORDER[r["severity"]])
    return validate_frame(frame_from_records(records, "findings"), "findings")


def findings_records(findings: pd.DataFrame) -> list[dict]:
    """A ``findings`` frame back to records (NA -> None), to merge with others."""
    cols = ["severity", "code", "service", "node", "what", "evidence", "advice"]
    return [{c: (None if pd.isna(v) else str(v)) for c, v in zip(cols, row)}
            for row in findings[cols].itertuples(index=False)]


FLOW_COLUMNS = (
    "protocol", "state", "timeout_seconds", "orig_src_ip", "orig_dst_ip", "orig_dst_port", "reply_dst_ip",
    "backend_ip", "backend_port", "orig_packets", "orig_bytes", "reply_packets", "reply_bytes",
    "delta_time_seconds", "snat", "dnat", "is_node_port",
)
"""The conntrack columns the topic modules read (service_flows keeps only these)."""


ATTRIBUTION = "service_port_name"
"""The ``conntrack_flows`` column that carries each flow's Service port once computed
(:func:`with_attribution`); :func:`service_flows` reads it instead of matching again."""


def flow_attribution(flows: pd.DataFrame, services: pd.DataFrame) -> np.ndarray:
    """The Service port of each flow (object array, None for no Service frontend).

    Each node's flows are attributed with that node's ``proxy_services`` when both
    frames carry ``node``; otherwise all flows with all services.
    """
    spn = np.full(len(flows), None, dtype=object)
    by_node = "node" in flows.columns and "node" in services.columns
    if by_node:
        svc_nodes = services["node"].astype("str")
        for node, positions in flows.groupby("node", observed=True, dropna=True).indices.items():
            svc = services.loc[svc_nodes == str(node)]
            if not svc.empty:
                spn[positions] = attribute_flows(flows.iloc[positions], svc).astype("object").to_numpy()
    elif len(flows) and len(services):
        spn[:] = attribute_flows(flows, services).astype("object").to_numpy()
    return spn


def with_attribution(frames: Frames) -> Frames:
    """``frames`` with the flows' Service ports computed once, for several topics to share.

    Returns
    -------
    Mapping of str to pandas.DataFrame
        A shallow copy of ``frames`` whose ``conntrack_flows`` is a copy carrying the
        :data:`ATTRIBUTION` column (:func:`flow_attribution`), or ``frames`` itself
        when it has no (non-empty) ``conntrack_flows`` and ``proxy_services`` or the
        flows already carry the column.
    """
    flows, services = present(frames, "conntrack_flows"), present(frames, "proxy_services")
    if flows is None or services is None or ATTRIBUTION in flows.columns:
        return frames
    spn = flow_attribution(flows, services)
    out = dict(frames)
    out["conntrack_flows"] = flows.assign(**{ATTRIBUTION: pd.Series(spn, index=flows.index, dtype="object")})
    return out


def service_flows(flows: pd.DataFrame, services: pd.DataFrame) -> pd.DataFrame:
    """The flows that reach a Service frontend, with ``service_port_name`` and ``node``.

    The Service port is read from the flows' :data:`ATTRIBUTION` column when they
    carry it (:func:`with_attribution`), else matched here (:func:`flow_attribution`).

    Returns
    -------
    pandas.DataFrame
        The attributed rows of ``flows`` (index kept), columns :data:`FLOW_COLUMNS`
        plus ``service_port_name`` and ``node`` (both str categories; ``node`` is
        ``""`` for a single unnamed node).
    """
    if ATTRIBUTION in flows.columns:
        spn = flows[ATTRIBUTION].astype("object").to_numpy()
    else:
        spn = flow_attribution(flows, services)
    keep = pd.notna(spn)
    out = flows.loc[keep, list(FLOW_COLUMNS)]
    out["service_port_name"] = pd.Categorical(spn[keep].astype("str"))
    if "node" not in flows.columns:
        out["node"] = pd.Categorical(np.full(int(keep.sum()), "", dtype=object).astype("str"))
    elif isinstance(flows["node"].dtype, pd.CategoricalDtype):
        out["node"] = flows["node"][keep]
    else:
        out["node"] = pd.Categorical(flows["node"][keep].astype("str"))
    return out


def service_attribute(services: pd.DataFrame, column: str) -> dict[str, str]:
    """``service_port_name -> value`` of a proxy_services column (first non-missing over nodes)."""
    out: dict[str, str] = {}
    sub = services[["service_port_name", column]].dropna()
    for spn, value in zip(sub["service_port_name"].astype("str"), sub[column].astype("str")):
        out.setdefault(spn, value)
    return out


def category(values, index=None) -> pd.Series:
    """str category Series (NA kept), so that dtypes survive Parquet."""
    return pd.Series(values, index=index, dtype="str").astype("category")


def safe_ratio(num: float, den: float, default: float = 0.0) -> float:
    """``num / den``, or ``default`` when ``den`` is 0 or missing (no warnings)."""
    if den is None or not np.isfinite(den) or den == 0:
        return default
    return float(num) / float(den)


def fmt_pct(x: float) -> str:
    """0.1234 -> '12.3%' ('n/a' for NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def fmt_p(p: float) -> str:
    """A p-value for evidence text ('n/a' for NaN)."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-300 else "<1e-300"


def expected_counts(spn: str, part: pd.DataFrame, endpoints: pd.DataFrame | None,
                     policy: str | None) -> pd.Series | None:
    """Expected flows per backend under the rules' probabilities, summed over entry nodes.

    ``part`` holds one Service port's attributed flows (with ``node``); a node's
    flows are spread by that node's probabilities (its Local-policy chain when the
    policy is Local and the node has one). None when a node has no rules for the port.
    """
    if endpoints is None:
        return None
    ep = endpoints.loc[endpoints["service_port_name"].astype("str") == spn]
    local = policy == "Local"
    ep = ep.loc[ep["local"] == local] if (ep["local"] == local).any() else ep.loc[~ep["local"]]
    if ep.empty:
        return None
    has_node = "node" in ep.columns
    total = pd.Series(dtype="float64")
    for node, flows in part.groupby("node", sort=True).size().items():
        rows = ep.loc[ep["node"].astype("str") == node] if has_node and node else ep
        if rows.empty:
            return None
        probs = rows.groupby(rows["endpoint_ip"].astype("str"))["probability"].sum()
        total = total.add(probs * flows, fill_value=0.0)
    return total
