"""The share of a Service port's load each endpoint should get, given the configuration.

Pure functions. Two steps:

1. Per entry node, the probability that a new connection entering that node picks
   each endpoint (kind ``endpoint_selection``), either from the node's own rules
   (:func:`selection_from_rules`: the probabilities of the iptables random cascade,
   nftables numgen, or IPVS schedulers) or from the Service spec and its endpoints
   (:func:`selection_from_spec`: what kube-proxy would program).
2. Weighted by the client-to-node mix (:func:`client_node_mix`: measured from
   conntrack's original destinations or rule counters, or assumed even), the expected
   share per endpoint (kind ``expected_shares``, :func:`expected_shares`).

Models and their approximations
-------------------------------
- iptables (``statistic --mode random`` cascade) and nftables (``numgen random mod N``)
  pick uniformly among the usable endpoints of the chain; the rules' own
  probabilities are used when known.
- IPVS (:func:`ipvs_probabilities`): ``rr`` uniform over servers with weight > 0;
  ``wrr``/``wlc``/``sed`` proportional to weight; ``lc``/``nq`` uniform (least
  connections equalises active connections, so with equal connection lifetimes new
  connections spread like round robin: an approximation that fails for mixed
  lifetimes); ``sh``/``dh``/``mh`` uniform (a hash spreads evenly over many sources;
  with few source addresses the realised shares follow the clients, which the
  affinity analysis measures).
- externalTrafficPolicy Local: a node's external traffic goes to its local usable
  endpoints only; a node without one drops it, and the prediction is for the traffic
  that is served (the dropped fraction is named in the model text).
- internalTrafficPolicy Local: the same for in-cluster (ClusterIP) traffic.
- Usable endpoints: ready ones; when none is ready, the serving-and-terminating ones
  (kube-proxy's ``CategorizeEndpoints`` fallback).
- Topology: with trafficDistribution PreferClose/PreferSameZone, or zone hints on
  every usable endpoint, a node in zone z uses the endpoints hinted for z (or in z
  when the hints are empty); with PreferSameNode, the node's own endpoints first.
  When the filter leaves nothing, all usable endpoints are used, as kube-proxy does.
- Session affinity (ClientIP) does not change the expected shares, only how many
  independent choices there are; attribution deals with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schemas import empty_frame, validate_frame

__all__ = [
    "IPVS_SCHEDULERS",
    "client_node_mix",
    "expected_shares",
    "ipvs_probabilities",
    "selection_from_rules",
    "selection_from_spec",
]

IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh")
"""IPVS schedulers :func:`ipvs_probabilities` models (see the module docstring)."""

_WEIGHTED = ("wrr", "wlc", "sed")
_CLOSE = ("PreferClose", "PreferSameZone")
_KEY = ["service_port_name", "window_start"]


def ipvs_probabilities(scheduler: str, weights) -> np.ndarray:
    """Long-run share of new connections per real server under an IPVS scheduler.

    Parameters
    ----------
    scheduler : str
        One of :data:`IPVS_SCHEDULERS`.
    weights : array-like
        Server weights (NA/NaN read as 1, kube-proxy's weight; 0 = quiesced).

    Returns
    -------
    numpy.ndarray
        Probabilities summing to 1, or all 0 when every weight is 0.

    Raises
    ------
    ValueError
        For a scheduler not in :data:`IPVS_SCHEDULERS`.
    """
    if scheduler not in IPVS_SCHEDULERS:
        raise ValueError(f"scheduler: expected one of {list(IPVS_SCHEDULERS)}, got {scheduler!r}")
    w = pd.to_numeric(pd.Series(weights, dtype="object"), errors="coerce").fillna(1.0).to_numpy(dtype="float64")
    w = np.maximum(w, 0.0)
    base = w if scheduler in _WEIGHTED else (w > 0).astype("float64")
    total = base.sum()
    return np.divide(base, total, out=np.zeros(len(base)), where=total > 0)


def _selection_frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    if len(rows) == 0:
        return empty_frame("endpoint_selection")
    df = rows.reset_index(drop=True) if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    out = pd.DataFrame(
        {
            "service_port_name": df["service_port_name"].astype("str").astype("category"),
            "window_start": pd.to_datetime(pd.Series(df["window_start"], dtype="object"), utc=True).astype("datetime64[ns, UTC]"),
            "entry_node": pd.Series(df["entry_node"], dtype="str").astype("category"),
            "endpoint_ip": df["endpoint_ip"].astype("str").astype("category"),
            "probability": df["probability"].astype("float64"),
            "model": df["model"].astype("str"),
        }
    )
    return validate_frame(out, "endpoint_selection")


def selection_from_rules(
    proxy_endpoints: pd.DataFrame,
    proxy_services: pd.DataFrame,
    *,
    window_start: pd.Timestamp | None = None,
    traffic: str = "external",
) -> pd.DataFrame:
    """Per node, the endpoint choice its kube-proxy rules make.

    Parameters
    ----------
    proxy_endpoints, proxy_services : pandas.DataFrame
        Kinds ``proxy_endpoints`` and ``proxy_services`` (with ``node`` when several
        nodes' rules are joined; without it, one node named ``""``).
    window_start : pandas.Timestamp, optional
        When these rules came into force (NaT: the final rules of a snapshot).
    traffic : {"external", "internal"}
        Node-port traffic follows externalTrafficPolicy, ClusterIP traffic
        internalTrafficPolicy: under Local the node's local chain is used.

    Returns
    -------
    pandas.DataFrame
        Kind ``endpoint_selection``. A node whose chosen chain has no endpoint (it
        drops or rejects the traffic) has no row. Where the dump cannot name the
        Service port (``ipvsadm`` output), the virtual server (``"TCP 10.96.0.10:53"``)
        stands in for it.
    """
    validate_frame(proxy_endpoints, "proxy_endpoints")
    validate_frame(proxy_services, "proxy_services")
    if traffic not in ("external", "internal"):
        raise ValueError(f"traffic: expected 'external' or 'internal', got {traffic!r}")
    policy_col = "external_traffic_policy" if traffic == "external" else "internal_traffic_policy"
    svc = pd.DataFrame({
        "node": _node_of(proxy_services).to_numpy(),
        "service_port_name": _port_key(proxy_services, "svc_chain"),
        "local_policy": (proxy_services[policy_col].astype("str") == "Local").to_numpy(),
        "scheduler": proxy_services["scheduler"].astype("object").to_numpy(),
    }).drop_duplicates(["node", "service_port_name"])
    ep = pd.DataFrame({
        "node": _node_of(proxy_endpoints).to_numpy(),
        "service_port_name": _port_key(proxy_endpoints, "chain"),
        "endpoint_ip": proxy_endpoints["endpoint_ip"].astype("str").to_numpy(),
        "local": proxy_endpoints["local"].to_numpy(dtype=bool),
        "probability": proxy_endpoints["probability"].to_numpy(dtype="float64", na_value=np.nan),
        "weight": proxy_endpoints["weight"].astype("object").to_numpy(),
    })
    # each node's traffic takes the Local chain under Local policy, else the cluster chain
    chain = ep.merge(svc, on=["node", "service_port_name"], how="inner")
    chain = chain[chain["local"] == chain["local_policy"]].drop_duplicates(["node", "service_port_name", "endpoint_ip"])
    if chain.empty:
        return _selection_frame([])
    chain = chain.sort_values(["service_port_name", "node", "endpoint_ip"], kind="stable").reset_index(drop=True)
    how = np.where(chain["scheduler"].notna(), "IPVS " + chain["scheduler"].astype("str"), "rules' probabilities")
    unknown = chain["probability"].isna()
    if unknown.any():  # IPVS schedulers whose probability the reader leaves NA
        for _, g in chain[unknown].groupby(["node", "service_port_name"], sort=False):
            sched = g["scheduler"].iloc[0]
            sched = sched if sched in IPVS_SCHEDULERS else "rr"
            chain.loc[g.index, "probability"] = ipvs_probabilities(sched, g["weight"])
            how[g.index] = f"IPVS {sched}"
    chain["model"] = how + np.where(chain["local_policy"], ", Local policy", ", Cluster policy")
    return _selection_frame(chain.assign(window_start=window_start, entry_node=chain["node"]))


def _port_key(df: pd.DataFrame, fallback: str) -> np.ndarray:
    """``service_port_name``, or where a dump cannot name it (ipvsadm), the virtual server."""
    spn = df["service_port_name"].astype("object")
    return spn.where(spn.notna(), df[fallback].astype("object")).astype("str").to_numpy()


def _node_of(df: pd.DataFrame) -> pd.Series:
    if "node" in df.columns:
        return df["node"].astype("str")
    return pd.Series("", index=df.index, dtype="str")


def _usable(eps: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Ready endpoints, else serving-and-terminating ones (kube-proxy's fallback)."""
    ready = eps["ready"].fillna(True).astype(bool)
    terminating = eps["terminating"].fillna(False).astype(bool)
    chosen = eps[ready & ~terminating]
    if len(chosen):
        return chosen, "ready"
    serving = eps["serving"].fillna(True).astype(bool)
    return eps[serving & terminating], "serving-terminating (no ready endpoint)"


def _topology_filter(eps: pd.DataFrame, node: str, zone: str | None, distribution: str | None) -> pd.DataFrame:
    if distribution == "PreferSameNode":
        same = eps[eps["node"].astype("str") == node]
        if len(same):
            return same
    hints = eps["hints"].fillna("").astype("str")
    use_hints = len(eps) > 0 and bool((hints != "").all())
    if zone is None or not (use_hints or distribution in _CLOSE or distribution == "PreferSameNode"):
        return eps
    if use_hints:
        near = eps[hints.map(lambda h: zone in h.split(","))]
    else:
        near = eps[eps["zone"].astype("str") == zone]
    return near if len(near) else eps


def selection_from_spec(
    k8s_services: pd.DataFrame,
    k8s_endpoints: pd.DataFrame,
    k8s_nodes: pd.DataFrame,
    *,
    window_start: pd.Timestamp | None = None,
    traffic: str = "external",
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Per node, the endpoint choice kube-proxy would program from the Kubernetes objects.

    Parameters
    ----------
    k8s_services, k8s_endpoints, k8s_nodes : pandas.DataFrame
        Kinds ``k8s_services``, ``k8s_endpoints``, ``k8s_nodes``.
    window_start : pandas.Timestamp, optional
        When the objects were observed (NaT: a snapshot).
    traffic : {"external", "internal"}
        Which traffic policy applies (see :func:`selection_from_rules`).
    scheduler : str, optional
        IPVS scheduler (weights are 1, so only the uniform/weighted split matters);
        None for iptables and nftables.

    Returns
    -------
    pandas.DataFrame
        Kind ``endpoint_selection``; a node that would drop the traffic has no row.
    """
    for df, kind in ((k8s_services, "k8s_services"), (k8s_endpoints, "k8s_endpoints"), (k8s_nodes, "k8s_nodes")):
        validate_frame(df, kind)
    if traffic not in ("external", "internal"):
        raise ValueError(f"traffic: expected 'external' or 'internal', got {traffic!r}")
    if scheduler is not None and scheduler not in IPVS_SCHEDULERS:
        raise ValueError(f"scheduler: expected one of {list(IPVS_SCHEDULERS)} or None, got {scheduler!r}")
    policy_col = "external_traffic_policy" if traffic == "external" else "internal_traffic_policy"
    nodes = k8s_nodes.astype({"node": "str"})
    svcs = k8s_services[k8s_services["service_port_name"].notna()]
    rows: list[dict] = []
    for svc in svcs.itertuples(index=False):
        spn = str(svc.service_port_name)
        eps = k8s_endpoints[k8s_endpoints["service_port_name"].astype("str") == spn].drop_duplicates("address")
        usable, which = _usable(eps)
        local = str(getattr(svc, policy_col)) == "Local"
        distribution = None if pd.isna(svc.traffic_distribution) else str(svc.traffic_distribution)
        for n in nodes.itertuples(index=False):
            zone = None if pd.isna(n.zone) else str(n.zone)
            if local:
                chosen = usable[usable["node"].astype("str") == n.node]
            else:
                chosen = _topology_filter(usable, n.node, zone, distribution)
            if chosen.empty:
                continue
            prob = ipvs_probabilities(scheduler or "rr", [1.0] * len(chosen))
            model = (
                f"{'IPVS ' + scheduler if scheduler else 'uniform'} over {which} endpoints"
                f"{', Local policy' if local else ''}{', ' + distribution if distribution and not local else ''}"
            )
            rows += [
                {"service_port_name": spn, "window_start": window_start, "entry_node": n.node,
                 "endpoint_ip": str(ip), "probability": float(p), "model": model}
                for ip, p in zip(chosen["address"].astype("str"), prob)
            ]
    return _selection_frame(rows)


def client_node_mix(load: pd.DataFrame) -> pd.DataFrame:
    """The client-to-node mix: each entry node's fraction of a source's load.

    Parameters
    ----------
    load : pandas.DataFrame
        Kind ``backend_load``; only rows with a known ``entry_node`` and measure
        ``connections`` count.

    Returns
    -------
    pandas.DataFrame
        ``service_port_name, window_start, source, entry_node, mix`` (fractions
        summing to 1 per key; a key without load has no row).
    """
    validate_frame(load, "backend_load")
    cols = ["service_port_name", "window_start", "source", "entry_node", "mix"]
    known = load[load["entry_node"].notna() & (load["measure"].astype("str") == "connections")]
    if known.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    key = _KEY + ["source"]
    per = (
        known.astype({"service_port_name": "str", "source": "str", "entry_node": "str"})
        .groupby(key + ["entry_node"], dropna=False, sort=True)["value"].sum().reset_index()
    )
    total = per.groupby(key, dropna=False)["value"].transform("sum")
    per = per[total > 0].assign(mix=per["value"] / total)
    return per[cols].reset_index(drop=True)


def _key_mix(plan: pd.DataFrame, mix: pd.DataFrame | None) -> pd.DataFrame:
    """``key, entry_node, mix, how`` for every key that a measured mix covers."""
    cols = ["key", "entry_node", "mix", "how"]
    if mix is None or len(mix) == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    m = pd.DataFrame({
        "service_port_name": mix["service_port_name"].astype("str").to_numpy(),
        "window_start": pd.to_datetime(pd.Series(mix["window_start"].to_numpy()), utc=True).to_numpy(),
        "source": mix["source"].astype("str").to_numpy(),
        "entry_node": mix["entry_node"].astype("str").to_numpy(),
        "mix": mix["mix"].to_numpy(dtype="float64"),
    })
    first = m.groupby(["service_port_name", "window_start"], dropna=False)["source"].transform("min")
    one = m[m["source"] == first]  # one source per window to lend its mix
    whole = one[one["window_start"].isna()].drop(columns="window_start")
    own = plan.merge(m, on=["service_port_name", "window_start", "source"])
    own["how"] = "measured (" + own["source"] + ")"
    same = plan.merge(one.rename(columns={"source": "lender"}), on=["service_port_name", "window_start"])
    same["how"] = "measured (" + same["lender"] + ")"
    late = plan.merge(whole.rename(columns={"source": "lender"}), on="service_port_name")
    late["how"] = "measured (" + late["lender"] + ", whole recording)"
    out = own[cols]
    for more in (same, late):
        out = pd.concat([out, more.loc[~more["key"].isin(out["key"]), cols]], ignore_index=True)
    return out


def expected_shares(
    selection: pd.DataFrame,
    keys: pd.DataFrame,
    mix: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Expected share per endpoint for each (Service port, window, source) key.

    ``expected(e) = sum_n mix(n) p_n(e) / sum_{n serving} mix(n)``: the nodes' choices
    weighted by the client-to-node mix, over the nodes that serve the traffic.

    Parameters
    ----------
    selection : pandas.DataFrame
        Kind ``endpoint_selection``. A key's window uses the selection with the same
        ``window_start``, else the NaT (final) one.
    keys : pandas.DataFrame
        ``service_port_name, window_start, source``: the keys to predict.
    mix : pandas.DataFrame, optional
        From :func:`client_node_mix`. A key without its own mix borrows one from
        another source of the same window, else of the whole recording; else the
        nodes are assumed to receive equal traffic.
    labels : pandas.DataFrame, optional
        ``endpoint_ip, pod, node, zone`` lookup for the label columns.

    Returns
    -------
    pandas.DataFrame
        Kind ``expected_shares``; keys without a selection have no row.
    """
    validate_frame(selection, "endpoint_selection")
    if selection.empty or len(keys) == 0:
        return empty_frame("expected_shares")
    spn_w = ["service_port_name", "window_start"]
    sel = pd.DataFrame({
        "service_port_name": selection["service_port_name"].astype("str").to_numpy(),
        "sel_window": selection["window_start"].to_numpy(),
        "entry_node": selection["entry_node"].astype("str").to_numpy(),
        "endpoint_ip": selection["endpoint_ip"].astype("str").to_numpy(),
        "probability": selection["probability"].to_numpy(dtype="float64"),
        "sel_model": selection["model"].astype("str").to_numpy(),
    })
    uniq = pd.DataFrame({
        "service_port_name": keys["service_port_name"].astype("str").to_numpy(),
        "window_start": pd.to_datetime(pd.Series(keys["window_start"].to_numpy()), utc=True).to_numpy(),
        "source": keys["source"].astype("str").to_numpy(),
    }).drop_duplicates().reset_index(drop=True)
    uniq["key"] = np.arange(len(uniq))

    # the selection of each key's window: its own, else the final (NaT) one
    windows = sel[["service_port_name", "sel_window"]].drop_duplicates()
    exact = uniq.merge(windows, left_on=["service_port_name", "window_start"],
                       right_on=["service_port_name", "sel_window"], how="inner")[["key", "sel_window"]]
    final = uniq.merge(windows[windows["sel_window"].isna()], on="service_port_name", how="inner")[["key", "sel_window"]]
    chosen = pd.concat([exact, final[~final["key"].isin(exact["key"])]], ignore_index=True)
    plan = uniq.merge(chosen, on="key", how="inner")
    if plan.empty:
        return empty_frame("expected_shares")
    nodes = sel[["service_port_name", "sel_window", "entry_node"]].drop_duplicates()

    # the mix of each key: its own source's, else another source's of the window, else of the
    # whole recording, else even over the nodes that serve
    weights = _key_mix(plan, mix)
    even = plan.merge(nodes, on=["service_port_name", "sel_window"], how="inner")
    even["mix"] = 1.0 / even.groupby("key")["entry_node"].transform("count")
    even["how"] = "assumed even"
    served = weights.merge(plan[["key", "service_port_name", "sel_window"]], on="key").merge(
        nodes, on=["service_port_name", "sel_window", "entry_node"], how="left", indicator=True)
    in_sel = served["_merge"] == "both"
    norm = served[in_sel & (served["mix"] > 0)].groupby("key")["mix"].sum()
    dropped = served[~in_sel].groupby("key")["mix"].sum()
    usable = weights[weights["key"].isin(norm.index)]
    mixes = pd.concat([usable, even[~even["key"].isin(norm.index)][["key", "entry_node", "mix", "how"]]],
                      ignore_index=True)
    norm = mixes.merge(plan[["key", "service_port_name", "sel_window"]], on="key").merge(
        nodes, on=["service_port_name", "sel_window", "entry_node"]).groupby("key")["mix"].sum()

    rows = plan.merge(mixes, on="key").merge(sel, on=["service_port_name", "sel_window", "entry_node"])
    rows["v"] = rows["mix"] * rows["probability"] / rows["key"].map(norm).to_numpy()
    share = rows.groupby(["key", "endpoint_ip"], sort=True)["v"].sum().rename("expected_share").reset_index()
    models = (sel.groupby(["service_port_name", "sel_window"], dropna=False)["sel_model"]
              .agg(lambda m: "; ".join(sorted(set(m)))).rename("sel_text").reset_index())
    text = plan.merge(models, on=["service_port_name", "sel_window"], how="left")
    text["how"] = text["key"].map(mixes.drop_duplicates("key").set_index("key")["how"])
    text["dropped"] = text["key"].map(dropped).fillna(0.0)
    text["model"] = (text["sel_text"] + "; client-to-node mix " + text["how"]
                     + np.where(text["dropped"] > 0,
                                "; " + (100 * text["dropped"]).round(1).astype("str") + "% of the traffic enters nodes that drop it",
                                ""))
    df = share.merge(text[["key", "service_port_name", "window_start", "source", "model"]], on="key")
    if labels is not None and len(labels):
        lab = labels.astype({"endpoint_ip": "str"}).drop_duplicates("endpoint_ip")
        df = df.merge(lab[["endpoint_ip", "pod", "node", "zone"]], on="endpoint_ip", how="left")
    else:
        df = df.assign(pod=None, node=None, zone=None)
    out = pd.DataFrame(
        {
            "service_port_name": df["service_port_name"].astype("category"),
            "window_start": pd.to_datetime(pd.Series(df["window_start"], dtype="object"), utc=True).astype("datetime64[ns, UTC]"),
            "source": df["source"].astype("category"),
            "endpoint_ip": df["endpoint_ip"].astype("category"),
            **{c: pd.Series(df[c], dtype="str").where(df[c].notna(), None).astype("category") for c in ("pod", "node", "zone")},
            "expected_share": df["expected_share"].astype("float64"),
            "model": df["model"].astype("str"),
        }
    )
    return validate_frame(out, "expected_shares")
