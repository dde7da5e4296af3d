"""Which Service port each conntrack flow belongs to, and the flows each endpoint got.

Pure functions: frames in, frames out. A flow belongs to a Service port when its
original destination is one of the port's frontends in the rules of the same
node: ``(protocol, nodePort)`` on any node address, or ``(protocol, ClusterIP,
port)``, or ``(protocol, externalIP, port)``. Its reply source is the endpoint
the rules chose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schemas import empty_frame, validate_frame

__all__ = ["attribute_flows", "endpoint_flows"]


def _frontends(services: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lookup tables ``(protocol, node_port) -> spn`` and ``(protocol, ip, port) -> spn``."""
    svc = services.astype({"protocol": "str", "service_port_name": "str"})
    by_node_port = (
        svc.loc[svc["node_port"].notna(), ["protocol", "node_port", "service_port_name"]]
        .drop_duplicates(["protocol", "node_port"])
    )
    rows = []
    for r in svc.itertuples(index=False):
        if pd.isna(r.port):
            continue
        ips = [] if pd.isna(r.cluster_ip) else [str(r.cluster_ip)]
        ips += [ip for ip in str(r.external_ips).split(",") if ip]
        rows += [(r.protocol, ip, int(r.port), r.service_port_name) for ip in ips]
    by_ip = pd.DataFrame(rows, columns=["protocol", "ip", "port", "service_port_name"]).drop_duplicates(
        ["protocol", "ip", "port"]
    )
    return by_node_port, by_ip


def attribute_flows(flows: pd.DataFrame, services: pd.DataFrame) -> pd.Series:
    """The Service port of each flow.

    Parameters
    ----------
    flows : pandas.DataFrame
        Kind ``conntrack_flows``.
    services : pandas.DataFrame
        Kind ``proxy_services`` of the same node.

    Returns
    -------
    pandas.Series
        ``service_port_name`` (category) aligned to ``flows``; NA for flows to no
        Service frontend (for example the node's own traffic).
    """
    validate_frame(flows, "conntrack_flows")
    validate_frame(services, "proxy_services")
    by_node_port, by_ip = _frontends(services)
    keys = pd.DataFrame(
        {
            "protocol": flows["protocol"].astype("str").to_numpy(),
            "ip": flows["orig_dst_ip"].astype("str").to_numpy(),
            "port": flows["orig_dst_port"].to_numpy(dtype="float64", na_value=np.nan),
        }
    )
    # Frontends on an address (ClusterIP, external IP) first: they are exact matches.
    on_ip = keys.merge(by_ip.astype({"port": "float64"}), on=["protocol", "ip", "port"], how="left")
    on_np = keys.merge(
        by_node_port.rename(columns={"node_port": "port"}).astype({"port": "float64"}),
        on=["protocol", "port"],
        how="left",
    )
    spn = on_ip["service_port_name"].fillna(on_np["service_port_name"])
    return pd.Series(spn.to_numpy(), index=flows.index, name="service_port_name", dtype="str").astype("category")


def endpoint_flows(flows: pd.DataFrame, services: pd.DataFrame, endpoints: pd.DataFrame) -> pd.DataFrame:
    """Per Service port and endpoint: the probability the rules give it and the flows it got.

    Parameters
    ----------
    flows : pandas.DataFrame
        Kind ``conntrack_flows`` of one node.
    services, endpoints : pandas.DataFrame
        Kinds ``proxy_services`` and ``proxy_endpoints`` of the same node.

    Returns
    -------
    pandas.DataFrame
        Kind ``endpoint_flows``, sorted by Service port and endpoint, with the
        rules' packet counters of the jumps to each endpoint (new connections)
        where the dump has counters. Backends
        that received flows but are not in the rules (stale entries) appear with
        ``in_rules`` False. Service ports with no flows have ``flow_share`` 0.
    """
    validate_frame(endpoints, "proxy_endpoints")
    spn = attribute_flows(flows, services)
    mine = flows.loc[spn.notna()]
    counts = (
        pd.DataFrame(
            {
                "service_port_name": spn[spn.notna()].astype("str").to_numpy(),
                "endpoint_ip": mine["backend_ip"].astype("str").to_numpy(),
                "endpoint_port": mine["backend_port"].to_numpy(dtype="float64", na_value=np.nan),
            }
        )
        .groupby(["service_port_name", "endpoint_ip", "endpoint_port"], dropna=False)
        .size()
        .rename("flows")
        .reset_index()
    )
    ep = endpoints.astype({"service_port_name": "str", "endpoint_ip": "str"}).assign(
        endpoint_port=endpoints["endpoint_port"].astype("float64")
    )
    key = ["service_port_name", "endpoint_ip", "endpoint_port"]
    cluster = ep.loc[~ep["local"], key + ["probability"]].drop_duplicates(key)
    local = ep.loc[ep["local"], key + ["probability"]].drop_duplicates(key).rename(
        columns={"probability": "local_probability"}
    )
    programmed = pd.concat([cluster[key], local[key]]).drop_duplicates()
    # The nat table sees only a connection's first packet, so a jump rule's packet
    # counter is the number of new connections it sent to the endpoint; under ClientIP
    # affinity (iptables) the returning clients took the `recent --rcheck` rule instead.
    if "affinity_packets" in ep.columns:
        ep = ep.assign(packets=ep["packets"] + ep["affinity_packets"].fillna(0))
    counters = ep.groupby(key)["packets"].agg(lambda s: s.sum() if s.notna().any() else pd.NA)
    out = (
        programmed.assign(in_rules=True)
        .merge(counters.rename("rule_connections").reset_index(), on=key, how="left")
        .merge(counts, on=key, how="outer")
        .merge(cluster, on=key, how="left")
        .merge(local, on=key, how="left")
    )
    if out.empty:
        return empty_frame("endpoint_flows")
    out["in_rules"] = out["in_rules"].fillna(False).astype(bool)
    out["flows"] = out["flows"].fillna(0).astype("int64")
    totals = out.groupby("service_port_name")["flows"].transform("sum")
    out["flow_share"] = np.divide(
        out["flows"].to_numpy(dtype="float64"),
        totals.to_numpy(dtype="float64"),
        out=np.zeros(len(out)),
        where=totals.to_numpy() > 0,
    )
    out = out.sort_values(key, kind="stable").reset_index(drop=True)
    result = pd.DataFrame(
        {
            "service_port_name": out["service_port_name"].astype("str").astype("category"),
            "endpoint_ip": out["endpoint_ip"].astype("str").astype("category"),
            "endpoint_port": out["endpoint_port"].astype("Int32"),
            "in_rules": out["in_rules"],
            "probability": out["probability"].astype("float64"),
            "local_probability": out["local_probability"].astype("float64"),
            "rule_connections": out["rule_connections"].astype("Int64"),
            "flows": out["flows"],
            "flow_share": out["flow_share"],
        }
    )
    return validate_frame(result, "endpoint_flows")
