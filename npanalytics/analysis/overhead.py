"""Proxy-mode overhead: what the rules cost the data plane and the control plane.

Pure functions.

- **Data plane** (a lab sweep: ``connect_latency`` and ``rule_loads``, dataset
  ``proxy-mode-sweep``): per proxy mode, connect-time percentiles against the
  number of Service ports (:func:`summarize_sweep`), a least-squares line with
  the slope's confidence interval and R² (:func:`fit_sweep`), and its
  extrapolation to a cluster's own Service count (:func:`extrapolate_overhead`,
  :func:`describe_overhead`). In iptables mode a new connection to a NodePort
  walks one rule per ClusterIP in ``KUBE-SERVICES`` before the node-port jump,
  so its first packet costs time linear in the Service count; nftables looks the
  destination up in a verdict map, whose cost does not grow with it.
- **Control plane** (``rule_loads``, kube-proxy metrics in ``prom_samples``): per
  node and mode, load (sync) time against rule count, rules per Service port and
  per endpoint, and the network programming latency percentiles against
  perf-tests' 30 s SLO (:data:`PROGRAMMING_SLO_SECONDS`) (:func:`control_plane`).
  From a cluster's kube-proxy metrics (``proxy_latency``, ``proxy_rule_counts``,
  ``proxy_status``, as ``npanalytics collect --prometheus`` writes them): per node
  and mode, full and partial sync quantiles against the rule count, and the
  network programming latency p50/p90/p99 against the same threshold
  (:func:`proxy_sync`, section ``proxy_sync``). Both sections when both exist.

``network-programming-slow`` is reported when the network programming latency
p99 of ``proxy_sync`` (the cluster-wide row when there is one, as perf-tests pools
all nodes; else the one node's) is above the 30 s threshold: perf-tests'
ClusterLoader2 default ``CL2_NETWORK_PROGRAMMING_LATENCY_THRESHOLD`` (the
Kubernetes SLO document itself still has no number).

``iptables-scaling`` is reported when a cluster runs iptables mode and its
Service count makes the extrapolated first-packet cost at least
:data:`NOTABLE_ADDED_SECONDS` (100 µs: several times a local connect, which takes
15-20 µs in the lab with few Services).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..schemas import empty_frame, frame_from_records, validate_frame
from . import promql
from ._topics import Frames, category, finding, findings_frame, missing_reason, present

__all__ = [
    "SUMMARY_COLUMNS",
    "FIT_COLUMNS",
    "LAB_SLOPES_NS_PER_SERVICE",
    "NOTABLE_ADDED_SECONDS",
    "NEGLIGIBLE_ADDED_SECONDS",
    "PROGRAMMING_SLO_SECONDS",
    "summarize_sweep",
    "fit_sweep",
    "extrapolate_overhead",
    "describe_overhead",
    "control_plane",
    "proxy_sync",
    "histogram_quantile",
    "overhead_section",
]

SUMMARY_COLUMNS = (
    "proxy_mode", "services", "attempts", "failures", "p50_us", "p90_us", "p99_us",
    "load_seconds", "rules",
)
FIT_COLUMNS = (
    "proxy_mode", "statistic", "points", "slope_ns_per_service", "slope_ci_low", "slope_ci_high",
    "intercept_us", "r_squared",
)
_QUANTILES = {"p50_us": 0.50, "p90_us": 0.90, "p99_us": 0.99}

LAB_SLOPES_NS_PER_SERVICE: Mapping[str, float] = {
    "iptables-legacy": 16.8,
    "iptables-nft": 25.2,
    "nftables": 0.26,
}
"""Median connect-time slopes (ns per Service port) of the bundled ``proxy-mode-sweep``
dataset (``fit_sweep(summarize_sweep(ds["connect_latency"], ds["rule_loads"]))``,
statistic ``p50_us``; kernel 6.18, 1 to 40,001 Service ports). Used to extrapolate
for a cluster when no sweep is among the frames."""

NOTABLE_ADDED_SECONDS = 100e-6
"""Extrapolated first-packet cost from which ``iptables-scaling`` is reported."""

NEGLIGIBLE_ADDED_SECONDS = 5e-6
"""An extrapolated cost below this (or whose interval covers 0) reads "about nothing"."""

PROGRAMMING_SLO_SECONDS = 30.0
"""perf-tests' network programming latency SLO (99th percentile, in-cluster)."""

PROGRAMMING_METRIC = "kubeproxy_network_programming_duration_seconds_bucket"

# proxy_latency ``metric`` -> (prefix of the proxy_sync columns, quantiles kept)
_SYNC_COLUMNS = {
    "sync": ("sync", (0.5, 0.99)),
    "sync_full": ("full", (0.5, 0.9, 0.99)),
    "sync_partial": ("partial", (0.5, 0.9, 0.99)),
}
_SYNC_COUNTS = {"sync": "syncs", "sync_full": "full_syncs", "sync_partial": "partial_syncs"}


def fit_sweep(summary: pd.DataFrame, *, statistics: Sequence[str] = ("p50_us", "p99_us"),
              confidence: float = 0.95) -> pd.DataFrame:
    """Per mode, a least-squares line of a connect-time percentile against the Service count.

    Parameters
    ----------
    summary : pandas.DataFrame
        The per-step part of :func:`summarize_sweep` (columns ``proxy_mode``,
        ``services`` and the statistics, in microseconds).
    statistics : sequence of str
        Columns to fit.
    confidence : float
        Level of the slope's confidence interval (t distribution, ``points - 2``
        degrees of freedom).

    Returns
    -------
    pandas.DataFrame
        Kind ``overhead_fit``: one row per (mode, statistic): ``points``,
        ``slope_ns_per_service`` (ns per Service port), ``slope_ci_low``/``slope_ci_high``
        (ns per Service port; NaN with fewer than 3 points), ``intercept_us`` (µs),
        ``r_squared`` (NaN when the statistic is constant or with fewer than 2 points).
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rows = []
    for mode, group in summary.groupby("proxy_mode", observed=True, sort=True):
        for stat in statistics:
            g = group[["services", stat]].dropna()
            x = g["services"].to_numpy(dtype="float64")
            y = g[stat].to_numpy(dtype="float64") * 1e3  # ns
            row = {"proxy_mode": mode, "statistic": stat, "points": len(g), "slope_ns_per_service": np.nan,
                   "slope_ci_low": np.nan, "slope_ci_high": np.nan, "intercept_us": np.nan, "r_squared": np.nan}
            if len(g) >= 2 and np.ptp(x) > 0:
                fit = stats.linregress(x, y)
                row["slope_ns_per_service"] = fit.slope
                row["intercept_us"] = fit.intercept / 1e3
                row["r_squared"] = fit.rvalue ** 2 if np.ptp(y) > 0 else np.nan
                if len(g) >= 3:
                    half = stats.t.ppf(0.5 + confidence / 2, len(g) - 2) * fit.stderr
                    row["slope_ci_low"], row["slope_ci_high"] = fit.slope - half, fit.slope + half
            rows.append(row)
    if not rows:
        return empty_frame("overhead_fit")
    out = pd.DataFrame(rows, columns=list(FIT_COLUMNS))
    out["proxy_mode"] = category(out["proxy_mode"].astype("str").tolist())
    out["statistic"] = category(out["statistic"].astype("str").tolist())
    out["points"] = out["points"].astype("int64")
    return validate_frame(out, "overhead_fit")


def summarize_sweep(connect_latency: pd.DataFrame, rule_loads: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, Service count): connect-time percentiles, failures, load time, rules; and the per-mode fits.

    Parameters
    ----------
    connect_latency : pandas.DataFrame
        Kind ``connect_latency``.
    rule_loads : pandas.DataFrame
        Kind ``rule_loads`` (a step without a load row gets NA ``rules`` and NaN
        ``load_seconds``; several loads of one step are averaged).

    Returns
    -------
    pandas.DataFrame
        Kind ``overhead``: one row per (``proxy_mode``, ``services``), sorted:
        ``attempts``, ``failures``, ``p50_us``/``p90_us``/``p99_us`` (µs, over the
        successful attempts), ``load_seconds`` (s), ``rules``; then, repeated on
        every row of a mode, the fits of :func:`fit_sweep` for ``p50_us`` and
        ``p99_us``: ``p50_slope_ns_per_service``, ``p50_slope_ci_low``,
        ``p50_slope_ci_high`` (95 %), ``p50_intercept_us``, ``p50_r_squared`` and
        the same with ``p99_``.
    """
    validate_frame(connect_latency, "connect_latency")
    validate_frame(rule_loads, "rule_loads")
    fit_cols = [f"{s}_{c}" for s in ("p50", "p99")
                for c in ("slope_ns_per_service", "slope_ci_low", "slope_ci_high", "intercept_us", "r_squared")]
    if connect_latency.empty:
        return empty_frame("overhead")
    cl = connect_latency.assign(proxy_mode=connect_latency["proxy_mode"].astype("str"))
    grouped = cl.groupby(["proxy_mode", "services"], sort=True)
    summary = grouped.agg(attempts=("ok", "size"), failures=("ok", lambda s: int((~s).sum())))
    ok_times = cl.loc[cl["ok"]].groupby(["proxy_mode", "services"], sort=True)["connect_seconds"]
    for col, q in _QUANTILES.items():
        summary[col] = ok_times.quantile(q) * 1e6
    loads = (rule_loads.assign(proxy_mode=rule_loads["proxy_mode"].astype("str"))
             .groupby(["proxy_mode", "services"], sort=True)
             .agg(load_seconds=("load_seconds", "mean"), rules=("rules", "max")))
    summary = summary.join(loads, how="left").reset_index()
    summary["attempts"] = summary["attempts"].astype("int64")
    summary["failures"] = summary["failures"].astype("int64")
    summary["load_seconds"] = summary["load_seconds"].astype("float64")
    summary["rules"] = summary["rules"].astype("Int64")
    summary = summary[list(SUMMARY_COLUMNS)]
    fits = fit_sweep(summary)
    for stat in ("p50", "p99"):
        part = fits[fits["statistic"] == f"{stat}_us"].drop(columns=["statistic", "points"])
        part = part.assign(proxy_mode=part["proxy_mode"].astype("str"))
        part = part.rename(columns={c: f"{stat}_{c}" for c in part.columns if c != "proxy_mode"})
        summary = summary.merge(part, on="proxy_mode", how="left")
    summary["proxy_mode"] = category(summary["proxy_mode"].astype("str").tolist())
    return validate_frame(summary[list(SUMMARY_COLUMNS) + fit_cols], "overhead")


def extrapolate_overhead(fit: pd.DataFrame, services: int, *, statistic: str = "p50_us") -> pd.DataFrame:
    """The connect time each mode adds at ``services`` Service ports, from a sweep's fit.

    Parameters
    ----------
    fit : pandas.DataFrame
        Kind ``overhead_fit`` (:func:`fit_sweep`).
    services : int
        The cluster's Service ports (>= 0).
    statistic : str
        Which fitted percentile to use.

    Returns
    -------
    pandas.DataFrame
        Kind ``overhead_extrapolation``: per mode, ``added_us`` = slope x services
        (the intercept, the cost with no Services, is left out), its interval from
        the slope's, and ``negligible`` (below :data:`NEGLIGIBLE_ADDED_SECONDS` or
        an interval covering 0). Empty when the fit has no row of ``statistic``.
    """
    validate_frame(fit, "overhead_fit")
    if isinstance(services, bool) or not isinstance(services, (int, np.integer)) or services < 0:
        raise ValueError(f"services must be a non-negative int, got {services!r}")
    rows = fit.loc[(fit["statistic"].astype("str") == statistic) & fit["slope_ns_per_service"].notna()]
    n = float(services)
    added = rows["slope_ns_per_service"].to_numpy(dtype="float64") * n / 1e3
    low = rows["slope_ci_low"].to_numpy(dtype="float64") * n / 1e3
    high = rows["slope_ci_high"].to_numpy(dtype="float64") * n / 1e3
    covers_zero = (low <= 0) & (high >= 0)
    out = pd.DataFrame({
        "proxy_mode": category(rows["proxy_mode"].astype("str").tolist()),
        "statistic": category([statistic] * len(rows)),
        "services": np.full(len(rows), services, dtype="int64"),
        "added_us": added,
        "added_ci_low_us": low,
        "added_ci_high_us": high,
        "negligible": (np.abs(added) < NEGLIGIBLE_ADDED_SECONDS * 1e6) | covers_zero,
    })
    return validate_frame(out, "overhead_extrapolation")


def describe_overhead(extrapolation: pd.DataFrame) -> str:
    """One sentence: "At 8,000 Service ports iptables-legacy adds about 134 µs (95 % CI ...) to every new connection; ..."."""
    validate_frame(extrapolation, "overhead_extrapolation")
    if extrapolation.empty:
        return "No sweep fit to extrapolate from."
    parts = []
    for r in extrapolation.itertuples():
        if r.negligible:
            parts.append(f"{r.proxy_mode} about nothing")
            continue
        ci = (f" (95 % CI {r.added_ci_low_us:,.0f}-{r.added_ci_high_us:,.0f} µs)"
              if np.isfinite(r.added_ci_low_us) else "")
        parts.append(f"{r.proxy_mode} adds about {r.added_us:,.0f} µs{ci} to every new connection")
    return f"At {int(extrapolation['services'].iloc[0]):,} Service ports " + "; ".join(parts) + "."


def histogram_quantile(le: np.ndarray, counts: np.ndarray, q: float) -> float:
    """Quantile of a cumulative Prometheus histogram given as two arrays.

    The array form of :func:`npanalytics.analysis.promql.histogram_quantile`, which
    interpolates as Prometheus does.

    Parameters
    ----------
    le : array of float
        Bucket upper bounds, ``+Inf`` last (as Prometheus exposes them).
    counts : array of float
        Cumulative counts of those buckets.
    q : float
        Quantile in [0, 1].

    Returns
    -------
    float
        NaN without observations; the largest finite bound when the quantile
        falls in the ``+Inf`` bucket; else linear interpolation in the bucket.

    Raises
    ------
    ValueError
        When ``q`` is outside [0, 1] (PromQL would answer -Inf/+Inf).
    """
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    return promql.histogram_quantile(zip(np.asarray(le, dtype="float64"), np.asarray(counts, dtype="float64")), q)


def _programming_latency(samples: pd.DataFrame | None) -> pd.DataFrame:
    """Per node (label ``node``, else ``instance``, else ''): p50/p90/p99 of network programming latency."""
    cols = ["node", "programming_p50_seconds", "programming_p90_seconds", "programming_p99_seconds"]
    if samples is None or "__name__" not in samples.columns or "le" not in samples.columns:
        return pd.DataFrame(columns=cols)
    s = samples.loc[samples["__name__"].astype("str") == PROGRAMMING_METRIC]
    if s.empty:
        return pd.DataFrame(columns=cols)
    label = next((c for c in ("node", "instance") if c in s.columns), None)
    s = s.assign(_node=s[label].astype("str") if label else "", _le=s["le"].astype("str").astype("float64"))
    rows = []
    for node, g in s.groupby("_node", sort=True):
        # increase over the samples' span (a single scrape: its cumulative counts)
        per_le = g.sort_values("timestamp").groupby("_le")["value"].agg(lambda v: v.iloc[-1] - (v.iloc[0] if len(v) > 1 else 0))
        per_le = per_le.sort_index()
        le, counts = per_le.index.to_numpy(), np.maximum.accumulate(per_le.to_numpy(dtype="float64"))
        rows.append([node] + [histogram_quantile(le, counts, q) for q in (0.5, 0.9, 0.99)])
    return pd.DataFrame(rows, columns=cols)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope through the points when x spans at least a factor of 2, else y/x at the largest x.

    A few loads of nearly the same size (35 and 38 rules) give a slope that is all noise.
    """
    i = int(np.flatnonzero(x == x.max())[-1])  # the points come sorted by rules: the largest load
    if np.unique(x).size >= 2 and x.min() >= 0 and x.max() >= 2 * x.min():
        return float(np.polyfit(x, y, 1)[0])
    return float(y[i] / x[i]) if x[i] > 0 else float("nan")


def control_plane(rule_loads: pd.DataFrame, endpoints: pd.DataFrame | None = None,
                  samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per node and mode: load (sync) time against rules, rule growth, programming latency.

    Parameters
    ----------
    rule_loads : pandas.DataFrame
        Kind ``rule_loads``.
    endpoints : pandas.DataFrame, optional
        Kind ``proxy_endpoints`` (with ``node``), for rules per endpoint.
    samples : pandas.DataFrame, optional
        Kind ``prom_samples`` holding ``kubeproxy_network_programming_duration_seconds_bucket``
        (labels ``le`` and ``node`` or ``instance``).

    Returns
    -------
    pandas.DataFrame
        Kind ``control_plane``, sorted by node and mode.
    """
    validate_frame(rule_loads, "rule_loads")
    if rule_loads.empty:
        return empty_frame("control_plane")
    ep_counts: dict[str, int] = {}
    if endpoints is not None and not endpoints.empty:
        validate_frame(endpoints, "proxy_endpoints")
        node = endpoints["node"].astype("str") if "node" in endpoints.columns else pd.Series("", index=endpoints.index)
        eps = endpoints.assign(_node=node, _ep=endpoints["endpoint_ip"].astype("str") + ":" +
                               endpoints["endpoint_port"].astype("str") + "/" +
                               endpoints["service_port_name"].astype("str"))
        ep_counts = eps.groupby("_node")["_ep"].nunique().to_dict()
        if set(ep_counts) == {""}:
            ep_counts = {"*": ep_counts[""]}
    rows = []
    loads = rule_loads.assign(node=rule_loads["node"].astype("str"), proxy_mode=rule_loads["proxy_mode"].astype("str"))
    for (node, mode), g in loads.groupby(["node", "proxy_mode"], sort=True):
        g = g.sort_values(["rules", "timestamp"])
        rules = g["rules"].to_numpy(dtype="float64")
        services = g["services"].to_numpy(dtype="float64")
        secs = g["load_seconds"].to_numpy(dtype="float64")
        n_ep = ep_counts.get(node, ep_counts.get("*"))
        rows.append({
            "node": node, "proxy_mode": mode, "loads": len(g), "services": int(services.max()),
            "rules": int(rules.max()), "endpoints": n_ep,
            "load_seconds_median": float(np.median(secs)), "load_seconds_max": float(secs.max()),
            "seconds_per_1000_rules": _slope(rules, secs) * 1000,
            "rules_per_service": _slope(services, rules) if services.max() > 0 else float("nan"),
            "rules_per_endpoint": float(rules.max() / n_ep) if n_ep else float("nan"),
        })
    out = pd.DataFrame(rows)
    prog = _programming_latency(samples)
    if len(prog) == 1 and prog["node"].iloc[0] == "":
        prog = pd.concat([prog.assign(node=n) for n in out["node"]], ignore_index=True)
    out = out.merge(prog, on="node", how="left")
    out["node"] = category(out["node"].tolist())
    out["proxy_mode"] = category(out["proxy_mode"].tolist())
    out = out.astype({"loads": "int64", "services": "int64", "rules": "int64", "endpoints": "Int64",
                      "programming_p50_seconds": "float64", "programming_p90_seconds": "float64",
                      "programming_p99_seconds": "float64"})
    return validate_frame(out, "control_plane")


def _latest_of(group: pd.DataFrame) -> pd.Series:
    """The row of the latest window of one node and metric."""
    return group.sort_values("timestamp", kind="stable").iloc[-1]


def _latest_observed(group: pd.DataFrame) -> pd.Series:
    """The row of the latest window with observations (a quiet last window has no quantiles), else the latest."""
    observed = group.loc[group["observations"] > 0]
    return _latest_of(observed if not observed.empty else group)


def _p99_over_time(group: pd.DataFrame) -> float:
    """perf-tests' ``quantile_over_time(0.99, ...)`` of the windows' p99; the latest p99 when cumulative."""
    last = _latest_of(group)
    if np.isnan(last["window_seconds"]):
        return float(last["p99_seconds"])
    values = group["p99_seconds"].to_numpy(dtype="float64")
    values = values[np.isfinite(values)]
    # Prometheus's quantile_over_time interpolates at rank q x (n - 1), as numpy's "linear"
    return float(np.quantile(values, 0.99)) if values.size else float("nan")


def _node_key(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in values]


def _latest_rules(rule_counts: pd.DataFrame | None, node: str | None) -> int | None:
    """Rules of all tables (and IP families) of a node at its latest sample; None without counts."""
    if rule_counts is None or rule_counts.empty:
        return None
    mine = rule_counts.loc[[k == node for k in _node_key(rule_counts["node"])]]
    if mine.empty:
        return None
    return int(mine.loc[mine["timestamp"] == mine["timestamp"].max(), "rules"].sum())


def _mode_of(status: pd.DataFrame | None, node: str | None, nodes: list[str | None]) -> str | None:
    """A node's latest proxy mode; for the cluster-wide row, the nodes' mode when they share one."""
    if status is None or status.empty:
        return None
    keys = _node_key(status["node"])
    cluster_row = node is None and any(n is not None for n in nodes)
    mine = status if cluster_row else status.loc[[k == node for k in keys]]
    modes = []
    for _, g in mine.groupby(pd.Series(_node_key(mine["node"]), index=mine.index, dtype="object"), dropna=False):
        mode = _latest_of(g)["proxy_mode"]
        modes.append(None if pd.isna(mode) else str(mode))
    return modes[0] if len(set(modes)) == 1 else None


def proxy_sync(latency: pd.DataFrame, rule_counts: pd.DataFrame | None = None,
               status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per node and mode, from kube-proxy's metrics: sync time against rules, network programming latency.

    The frames are those of :func:`~npanalytics.collectors.kube_proxy.kube_proxy_frames`
    (``npanalytics collect --prometheus``). Each value is the node's latest window
    with observations (or, for a single scrape, cumulative since kube-proxy
    started), except
    ``programming_p99_over_time_seconds``: perf-tests' ``NetworkProgrammingLatency``,
    the 99th percentile over time of the windows' p99, compared with its 30 s
    threshold (:data:`PROGRAMMING_SLO_SECONDS`).

    Parameters
    ----------
    latency : pandas.DataFrame
        Kind ``proxy_latency``.
    rule_counts : pandas.DataFrame, optional
        Kind ``proxy_rule_counts`` (iptables mode only: kube-proxy exports no rule
        count for nftables or IPVS).
    status : pandas.DataFrame, optional
        Kind ``proxy_status``, for the proxy mode.

    Returns
    -------
    pandas.DataFrame
        Kind ``proxy_sync``: one row per node of ``latency``, sorted by node, and
        the cluster-wide row (``node`` NA; network programming pooled over the
        nodes) last when ``latency`` has one.
    """
    validate_frame(latency, "proxy_latency")
    if rule_counts is not None:
        validate_frame(rule_counts, "proxy_rule_counts")
    if status is not None:
        validate_frame(status, "proxy_status")
    if latency.empty:
        return empty_frame("proxy_sync")
    lat = latency.assign(_node=pd.Series(_node_key(latency["node"]), index=latency.index, dtype="object"),
                         _metric=latency["metric"].astype("str"))
    nodes = sorted({n for n in lat["_node"] if n is not None}) + ([None] if lat["_node"].isna().any() else [])
    records = []
    for node in nodes:
        mine = lat.loc[[n == node for n in lat["_node"]]]
        newest = _latest_of(mine)
        record = {"node": node, "proxy_mode": _mode_of(status, node, nodes), "timestamp": newest["timestamp"],
                  "window_seconds": float(newest["window_seconds"])}
        rules = _latest_rules(rule_counts, node)
        record["rules"] = rules
        for metric, g in mine.groupby("_metric", sort=True):
            last = _latest_observed(g)
            if metric in _SYNC_COLUMNS:
                prefix, quantiles = _SYNC_COLUMNS[metric]
                record[_SYNC_COUNTS[metric]] = float(last["observations"])
                for q in quantiles:
                    record[f"{prefix}_p{round(q * 100)}_seconds"] = float(last[f"p{round(q * 100)}_seconds"])
            elif metric == "network_programming":
                record["programming_observations"] = float(last["observations"])
                for q in (50, 90, 99):
                    record[f"programming_p{q}_seconds"] = float(last[f"p{q}_seconds"])
                record["programming_p99_over_time_seconds"] = _p99_over_time(g)
        per_sync = record.get("full_p50_seconds", float("nan"))
        if not np.isfinite(per_sync):
            per_sync = record.get("sync_p50_seconds", float("nan"))
        record["full_seconds_per_1000_rules"] = per_sync / rules * 1000 if rules else float("nan")
        record["programming_slo_ratio"] = (record.get("programming_p99_over_time_seconds", float("nan"))
                                           / PROGRAMMING_SLO_SECONDS)
        records.append(record)
    return validate_frame(frame_from_records(records, "proxy_sync"), "proxy_sync")


def _programming_finding(sync: pd.DataFrame) -> dict | None:
    """``network-programming-slow`` when the (cluster-wide, else the one node's) p99 breaks perf-tests' 30 s."""
    if sync.empty:
        return None
    keys = _node_key(sync["node"])
    cluster = sync.loc[[k is None for k in keys]]
    judged = cluster if not cluster.empty else sync
    slow = judged.loc[judged["programming_slo_ratio"] > 1]
    if slow.empty:
        return None
    per_node = sync.loc[[k is not None for k in keys]]
    slow_nodes = [f"{n} ({p:.1f} s)" for n, p in zip(per_node["node"].astype("str"),
                                                       per_node["programming_p99_over_time_seconds"])
                  if p > PROGRAMMING_SLO_SECONDS]
    worst = slow.sort_values("programming_p99_over_time_seconds").iloc[-1]
    where = "pooled over the nodes" if not cluster.empty else (
        f"on node {worst['node']}" if pd.notna(worst["node"]) else "of the node")
    window = ("cumulative since kube-proxy started" if np.isnan(worst["window_seconds"])
              else f"{worst['window_seconds']:g} s windows, 99th percentile over time of their p99")
    nodes_text = f"; nodes above 30 s on their own: {', '.join(slow_nodes)}" if slow_nodes else ""
    return finding(
        "warning", "network-programming-slow", None, None if not cluster.empty or len(slow) > 1 else worst["node"],
        "kube-proxy takes longer than perf-tests' 30 s to program endpoint changes: traffic keeps going to "
        "removed endpoints, and new ones get none, for that long",
        f"network programming latency p99 {worst['programming_p99_over_time_seconds']:.1f} s {where} "
        f"(latest p50 {worst['programming_p50_seconds']:.1f} s, p90 {worst['programming_p90_seconds']:.1f} s, "
        f"p99 {worst['programming_p99_seconds']:.1f} s; {window}); threshold "
        f"{PROGRAMMING_SLO_SECONDS:g} s (perf-tests' CL2_NETWORK_PROGRAMMING_LATENCY_THRESHOLD; the Kubernetes "
        f"SLO itself has no number yet){nodes_text}",
        "compare the sync times with the rule count in this section: long full syncs at many rules mean the "
        "rule set itself is slow to write (iptables rewrites KUBE-SERVICES on every sync); a minSyncPeriod "
        "(--iptables-min-sync-period) above the default 1 s delays changes (mostly the median: full resyncs "
        "dominate p90 and p99); check the EndpointSlice churn (proxy_status *_changes_per_second) and the "
        "clocks of the nodes against the control plane, whose skew distorts this metric",
    )


def _cluster(frames: Frames, services: int | None, is_sweep: bool) -> tuple[str | None, int | None]:
    """The cluster's proxy mode and Service-port count, from the rules (or the loads of a non-sweep dataset)."""
    mode, count = None, services
    proxy_services = present(frames, "proxy_services")
    loads = present(frames, "rule_loads")
    if loads is not None and not is_sweep:
        mode = str(loads["proxy_mode"].astype("str").iloc[-1])
        if count is None:
            count = int(loads["services"].max())
    if proxy_services is not None:
        if mode is None:
            mode = str(proxy_services["proxy_mode"].astype("str").iloc[0])
        if count is None:
            per_node = (proxy_services.groupby(proxy_services["node"].astype("str"))["service_port_name"].nunique()
                        if "node" in proxy_services.columns else
                        pd.Series([proxy_services["service_port_name"].nunique()]))
            count = int(per_node.max())
    return mode, count


def _scaling_finding(mode: str | None, count: int | None, fit: pd.DataFrame | None) -> dict | None:
    if mode is None or count is None or not mode.startswith("iptables"):
        return None
    if fit is not None and not fit.empty:
        ext = extrapolate_overhead(fit, count)
        source = "the sweep in this dataset"
    else:
        ext = pd.DataFrame({"proxy_mode": list(LAB_SLOPES_NS_PER_SERVICE),
                            "added_us": [s * count / 1e3 for s in LAB_SLOPES_NS_PER_SERVICE.values()]})
        source = "the npanalytics lab sweep (dataset proxy-mode-sweep)"
    ext = ext.assign(proxy_mode=ext["proxy_mode"].astype("str"))
    ipt = ext.loc[ext["proxy_mode"].str.startswith("iptables")]
    # the cluster's own flavour when the sweep has it, else the costlier iptables flavour
    own = ipt.loc[ipt["proxy_mode"] == mode]
    row = (own if not own.empty else ipt.sort_values("added_us")).iloc[-1:] if not ipt.empty else ipt
    if row.empty:
        return None
    added = float(row["added_us"].iloc[0])
    if added < NOTABLE_ADDED_SECONDS * 1e6:
        return None
    nft = ext.loc[ext["proxy_mode"] == "nftables", "added_us"]
    nft_text = f"; nftables about {float(nft.iloc[0]):,.0f} µs" if not nft.empty else ""
    return finding(
        "warning", "iptables-scaling", None, None,
        f"iptables mode with {count:,} Service ports: every new connection walks a rule per Service "
        "before it reaches its own",
        f"at {count:,} Service ports {row['proxy_mode'].iloc[0]} adds about {added:,.0f} µs to the first packet "
        f"of every new connection (median; slope from {source}){nft_text}; threshold "
        f"{NOTABLE_ADDED_SECONDS * 1e6:.0f} µs",
        "switch kube-proxy to nftables mode (GA since 1.33), or IPVS before it, or reduce the Service ports; "
        "reuse connections (keep-alive) where new-connection latency matters",
    )


def overhead_section(frames: Frames, *, services: int | None = None,
                     reference_fit: pd.DataFrame | None = None
                     ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, str]]:
    """The overhead sections of a dataset: sweep summary and fits, control plane; their findings.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        A dataset's frames by name: ``connect_latency`` + ``rule_loads`` (a lab
        sweep), ``rule_loads`` alone (a cluster's syncs), ``proxy_services``,
        ``proxy_endpoints``, ``prom_samples``; ``proxy_latency`` (with
        ``proxy_rule_counts``, ``proxy_status``) from kube-proxy's metrics.
    services : int, optional
        The cluster's Service-port count to extrapolate to (default: from the rules
        or the loads of a non-sweep dataset).
    reference_fit : pandas.DataFrame, optional
        Kind ``overhead_fit`` to extrapolate with when the frames hold no sweep
        (default: :data:`LAB_SLOPES_NS_PER_SERVICE`).

    Returns
    -------
    sections : dict of str to pandas.DataFrame
        ``"overhead"`` (kind ``overhead``) and ``"overhead_fit"`` (kind
        ``overhead_fit``) for a sweep; ``"control_plane"`` (kind
        ``control_plane``) when there are rule loads; ``"proxy_sync"`` (kind
        ``proxy_sync``, :func:`proxy_sync`) when there is a ``proxy_latency``
        frame. Only the sections the frames allow.
    findings : pandas.DataFrame
        Kind ``findings``: ``iptables-scaling``, ``network-programming-slow`` (see
        the module docstring).
    missing : dict of str to str
        For each section not computed, what to collect (``control_plane`` only
        when there are neither rule loads nor kube-proxy metrics).
    """
    sections: dict[str, pd.DataFrame] = {}
    missing: dict[str, str] = {}
    loads = present(frames, "rule_loads")
    latency = present(frames, "connect_latency")
    proxy_latency = present(frames, "proxy_latency")
    records: list[dict] = []
    fit = None
    if latency is not None:
        summary = summarize_sweep(latency, loads if loads is not None else empty_frame("rule_loads"))
        fit = fit_sweep(summary, statistics=tuple(_QUANTILES))
        sections["overhead"], sections["overhead_fit"] = summary, fit
    else:
        reason = missing_reason("no connect-latency sweep", "connect_latency")
        missing["overhead"] = missing["overhead_fit"] = reason
    if loads is not None:
        sections["control_plane"] = control_plane(loads, present(frames, "proxy_endpoints"),
                                                  present(frames, "prom_samples"))
    if proxy_latency is not None:
        sync = proxy_sync(proxy_latency, present(frames, "proxy_rule_counts"), present(frames, "proxy_status"))
        sections["proxy_sync"] = sync
        records.append(_programming_finding(sync))
    if loads is None and proxy_latency is None:
        missing["control_plane"] = (missing_reason("no rule loads (syncs) and no kube-proxy metrics", "rule_loads")
                                    + "; or collect kube-proxy's metrics (`npanalytics collect --prometheus`, "
                                    "or a scrape of its /metrics) into proxy_latency, proxy_rule_counts and "
                                    "proxy_status")
    mode, count = _cluster(frames, services, is_sweep=latency is not None)
    records.append(_scaling_finding(mode, count, fit if fit is not None else reference_fit))
    return sections, findings_frame([r for r in records if r]), missing
