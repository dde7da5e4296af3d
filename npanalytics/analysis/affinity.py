"""Session affinity: how few clients, pinned to one backend each, make a Service uneven.

Pure functions. With ``sessionAffinity: ClientIP`` kube-proxy sends every new
connection of a client address to the endpoint that client used last (iptables
``recent`` lists, nftables affinity sets, IPVS persistence), and that state is
kept **per node**: one client entering through two nodes can be pinned to two
different pods. The load of a backend is then the sum of the flows of the
clients pinned to it, so the skew depends on how many clients there effectively
are, not on how many connections.

Statistics of one Service port with ``N`` flows, ``k`` backends and client flow
counts ``x_c``:

- effective number of clients: ``exp(H)``, ``H = -sum p_c log p_c`` with
  ``p_c = x_c / N`` (Hill number of order 1: the number of equally busy clients
  that would give the same entropy);
- coefficient of variation of the backend loads expected **without** affinity
  (every flow picks a backend uniformly): ``sqrt((k - 1) / N)``;
- the same expected **with** affinity (every client picks a backend uniformly,
  all its flows follow): ``sqrt((k - 1) * sum x_c^2) / N`` — as without affinity
  but with ``N^2 / sum x_c^2`` (the inverse Simpson number of clients) in place
  of ``N``. The difference is the skew that affinity adds;
- a G-test of the backend counts against the rules' selection probabilities
  (the model without affinity), reported when every expected count is at least
  5 (NaN otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._topics import (
    Frames,
    category,
    expected_counts,
    findings_frame,
    finding,
    fmt_p,
    fmt_pct,
    missing_reason,
    present,
    service_attribute,
    service_flows,
)

__all__ = [
    "affinity_section",
    "effective_clients",
    "no_affinity_cv",
    "affinity_cv",
    "SIGNIFICANCE",
    "DOMINANT_CLIENT_SHARE",
]

SIGNIFICANCE = 0.01
"""p-value below which the backend counts reject the model without affinity."""

DOMINANT_CLIENT_SHARE = 0.5
"""A client address sending at least this share of a Service port's flows (with
other clients present) is reported as a likely NAT address."""

MIN_EXPECTED_COUNT = 5
"""Smallest expected count per backend for which the G-test is reported."""


def effective_clients(flows_per_client: np.ndarray) -> float:
    """``exp`` of the Shannon entropy of the client shares (0 when there are no flows).

    Parameters
    ----------
    flows_per_client : array of float
        Flows (or connections) per client; zeros are ignored.

    Returns
    -------
    float
        Between 1 and the number of clients with flows; 0.0 without flows.
    """
    x = np.asarray(flows_per_client, dtype="float64")
    x = x[x > 0]
    if x.size == 0:
        return 0.0
    p = x / x.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def no_affinity_cv(flows: float, backends: int) -> float:
    """Expected CV of the backend loads when each of ``flows`` picks one of ``backends`` uniformly.

    ``sqrt((k - 1) / N)``; 0.0 for one backend, NaN without flows.
    """
    if flows <= 0 or backends < 1:
        return float("nan")
    return float(np.sqrt((backends - 1) / flows))


def affinity_cv(flows_per_client: np.ndarray, backends: int) -> float:
    """Expected CV of the backend loads when each client (with all its flows) picks a backend uniformly.

    ``sqrt((k - 1) * sum x_c^2) / N``; 0.0 for one backend, NaN without flows.
    """
    x = np.asarray(flows_per_client, dtype="float64")
    total = x.sum()
    if total <= 0 or backends < 1:
        return float("nan")
    return float(np.sqrt((backends - 1) * (x ** 2).sum()) / total)


def _cv(loads: np.ndarray) -> float:
    mean = loads.mean() if loads.size else 0.0
    return float(loads.std() / mean) if mean > 0 else float("nan")


def _g_test(observed: pd.Series, expected: pd.Series | None) -> float:
    from scipy import stats

    if expected is None or len(expected) < 2:
        return float("nan")
    obs = observed.reindex(expected.index, fill_value=0).to_numpy(dtype="float64")
    if observed.drop(expected.index, errors="ignore").sum() > 0:
        return float("nan")  # flows to backends the model does not know: no valid test
    exp = expected.to_numpy(dtype="float64")
    exp = exp * obs.sum() / exp.sum()
    if (exp < MIN_EXPECTED_COUNT).any():
        return float("nan")
    return float(stats.power_divergence(obs, exp, lambda_="log-likelihood").pvalue)


def _per_service(spn: str, part: pd.DataFrame, affinity: str | None,
                 expected: pd.Series | None) -> pd.DataFrame:
    part = part.assign(client=part["orig_src_ip"].astype("str"), backend=part["backend_ip"].astype("str"))
    total = len(part)
    per_client = part.groupby("client", sort=True)
    pair = part.groupby(["client", "backend"], sort=True).size()
    # affinity state is per node: the top backend of each (client, entry node), summed
    top = part.groupby(["client", "node", "backend"]).size().groupby(level=["client", "node"]).max() \
        .groupby(level="client").sum()
    top_backend = pair.groupby(level="client").idxmax().map(lambda t: t[1])
    per_node = part.groupby(["client", "node"], sort=True)["backend"].nunique()
    counts = per_client.size()
    backend_counts = part.groupby("backend").size()
    k = int(len(expected)) if expected is not None else int(backend_counts.size)
    loads = backend_counts.reindex(expected.index, fill_value=0) if expected is not None else backend_counts
    loads = np.concatenate([loads.to_numpy(dtype="float64"),
                            np.zeros(max(0, k - len(loads)))])
    out = pd.DataFrame(
        {
            "client": counts.index,
            "flows": counts.to_numpy(dtype="int64"),
            "client_share": counts.to_numpy(dtype="float64") / total,
            "top_backend": top_backend.reindex(counts.index).to_numpy(),
            "pinned_share": (top / counts).reindex(counts.index).to_numpy(dtype="float64"),
            "backends": per_client["backend"].nunique().to_numpy(dtype="int64"),
            "nodes": per_client["node"].nunique().to_numpy(dtype="int64"),
            "max_backends_per_node": per_node.groupby(level="client").max().reindex(counts.index)
            .to_numpy(dtype="int64"),
            "snat_ratio": per_client["snat"].mean().to_numpy(dtype="float64"),
        }
    )
    out["node_local_affinity"] = (out["backends"] > 1) & (out["max_backends_per_node"] == 1) & (out["nodes"] > 1)
    x = counts.to_numpy(dtype="float64")
    out.insert(0, "service_port_name", spn)
    out.insert(2, "session_affinity", affinity)
    out["service_clients"] = len(counts)
    out["effective_clients"] = effective_clients(x)
    out["service_backends"] = k
    out["backend_cv"] = _cv(loads)
    out["no_affinity_cv"] = no_affinity_cv(total, k)
    out["affinity_cv"] = affinity_cv(x, k)
    out["p_value"] = _g_test(backend_counts, expected)
    return out


def _finding(rows: pd.DataFrame) -> dict | None:
    r = rows.iloc[0]
    if r["session_affinity"] != "ClientIP" or r["service_backends"] < 2:
        return None
    skewed = (r["p_value"] < SIGNIFICANCE) if np.isfinite(r["p_value"]) else (
        np.isfinite(r["backend_cv"]) and r["backend_cv"] > 2 * r["no_affinity_cv"] and r["backend_cv"] > 0.1
    )
    few = r["effective_clients"] < 5 * r["service_backends"]
    if not (skewed or few):
        return None
    top_share = float((rows["pinned_share"] * rows["flows"]).sum() / rows["flows"].sum())
    dominant = rows.loc[(rows["client_share"] >= DOMINANT_CLIENT_SHARE) & (r["service_clients"] > 1)]
    evidence = (
        f"{r['effective_clients']:.1f} effective clients ({r['service_clients']} client addresses) over "
        f"{r['service_backends']} backends; {fmt_pct(top_share)} of each client's flows go to its top backend; "
        f"backend-load CV {r['backend_cv']:.2f} against {r['no_affinity_cv']:.2f} expected without affinity "
        f"and {r['affinity_cv']:.2f} with affinity and these clients; G-test against the rules' "
        f"probabilities p={fmt_p(r['p_value'])}"
    )
    if not dominant.empty:
        d = dominant.iloc[0]
        evidence += f"; {d['client']} alone sends {fmt_pct(d['client_share'])} of the flows (one NAT address for many hosts?)"
    nodes_local = rows.loc[rows["node_local_affinity"], "client"].tolist()
    if nodes_local:
        evidence += (f"; {len(nodes_local)} client(s) reach different pods through different nodes "
                     f"(affinity state is per node), e.g. {nodes_local[0]}")
    what = (
        "sessionAffinity ClientIP pins each client address to one pod, and there are too few "
        "effective clients for the load to even out" if skewed else
        "sessionAffinity ClientIP with few effective clients: expect uneven pods"
    )
    return finding(
        "warning" if skewed else "info", "affinity-concentration", r["service_port_name"], None, what, evidence,
        "drop ClientIP affinity if the application does not need it, or make clients distinct "
        "(avoid one NAT address in front of many hosts; externalTrafficPolicy Local keeps the client "
        "address), or scale so that a pinned client cannot overload one pod",
    )


_COLUMNS = [
    "service_port_name", "client", "session_affinity", "flows", "client_share", "top_backend",
    "pinned_share", "backends", "nodes", "max_backends_per_node", "node_local_affinity",
    "snat_ratio", "service_clients", "effective_clients", "service_backends", "backend_cv",
    "no_affinity_cv", "affinity_cv", "p_value",
]


def affinity_section(frames: Frames) -> tuple[pd.DataFrame | None, pd.DataFrame, str | None]:
    """Per Service port and client: how concentrated the flows are, and whether affinity explains the skew.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        A dataset's frames by name. Uses ``conntrack_flows`` and ``proxy_services``
        (required), ``proxy_endpoints`` (for the expected counts and the G-test).

    Returns
    -------
    section : pandas.DataFrame or None
        Kind ``affinity``, one row per (Service port, client address), sorted;
        the Service-port statistics are repeated on each of its rows. None when
        the inputs are missing or no flow reaches a Service.
    findings : pandas.DataFrame
        Kind ``findings``: ``affinity-concentration`` for a ClientIP Service port
        whose backend counts reject the no-affinity model (p < :data:`SIGNIFICANCE`;
        warning) or that has fewer than 5 effective clients per backend (info).
    missing : str or None
        What to collect when the section is None.
    """
    flows = present(frames, "conntrack_flows")
    services = present(frames, "proxy_services")
    if flows is None or services is None:
        kinds = [k for k, df in (("conntrack_flows", flows), ("proxy_services", services)) if df is None]
        return None, findings_frame([]), missing_reason("no conntrack flows or no Service rules", *kinds)
    endpoints = present(frames, "proxy_endpoints")
    attributed = service_flows(flows, services)
    if attributed.empty:
        return None, findings_frame([]), (
            "no conntrack flow reaches a Service frontend of the rules: take the conntrack dump "
            "and the rules on the same node while traffic flows"
        )
    affinity = service_attribute(services, "session_affinity")
    policy = service_attribute(services, "external_traffic_policy")
    parts, records = [], []
    for spn, part in attributed.groupby("service_port_name", sort=True):
        expected = expected_counts(spn, part, endpoints, policy.get(spn))
        rows = _per_service(spn, part, affinity.get(spn), expected)
        parts.append(rows)
        rec = _finding(rows)
        if rec:
            records.append(rec)
    out = pd.concat(parts, ignore_index=True)[_COLUMNS]
    for col in ("service_port_name", "client", "session_affinity", "top_backend"):
        out[col] = category(out[col].tolist())
    out = out.astype({"flows": "int64", "backends": "int64", "nodes": "int64", "max_backends_per_node": "int64",
                      "service_clients": "int64", "service_backends": "int64", "node_local_affinity": "bool"})
    return validate_frame(out, "affinity"), findings_frame(records), None
