"""kube-proxy's ``kubeproxy_*`` metrics into sync, rule-count and status frames.

:func:`kube_proxy_frames` is a pure function of a ``prom_samples`` frame (scrapes
read with :func:`~npanalytics.collectors.metrics_text.read_metrics_text`, a
backfill file, or raw range-query results); :func:`get_kube_proxy` asks
Prometheus, computing the quantiles in PromQL. Metric names and labels: KUBE_FACTS §3.

Quantiles follow Kubernetes' perf-tests and Prometheus: ``histogram_quantile(q,
sum by (node, le) (rate(<family>_bucket[5m])))`` per node, and for the network
programming latency also cluster-wide (``sum by (le)``, ``node`` NA). On samples,
the 5-minute rate is replaced by the increase of each bucket over the samples in
the window (counter resets handled as Prometheus does); a quantile is the same
for a rate and an increase, but Prometheus's ``rate`` also extrapolates to the
window's edges (per series), so ``per_second`` here is the plain increase over
the time between the first and last sample of the window and can differ from
Prometheus's ``rate`` by that extrapolation. :func:`histogram_quantile` is
Prometheus's own interpolation (``promql/quantile.go``, ``bucketQuantile``).

Proxy mode per node (``proxy_mode``), from which families exist (KUBE_FACTS §3,
families per mode): ``nftables`` when ``kubeproxy_sync_proxy_rules_nftables_*``
exists; ``iptables`` with the iptables-only families (rule counts, full/partial
sync histograms, partial-restore failures); ``ipvs`` when only
``..._iptables_restore_failures_total`` is there; NA otherwise (kube-proxy
1.33+ shows a labelled series only once it was set, so an IPVS proxy without
restore failures cannot be told apart).

Rule counts exist only in iptables mode (``kubeproxy_sync_proxy_rules_iptables_total``
and ``_last`` per table): kube-proxy exports no rule or element count for nftables or
IPVS (KUBE_FACTS §3), so ``rule_counts`` is empty for those nodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.promql import histogram_quantile
from ..exceptions import ParseError
from ..schemas import empty_frame, frame_from_records, schema_table, validate_frame

__all__ = [
    "KubeProxy",
    "QUANTILES",
    "WINDOW",
    "SYNC_FAMILIES",
    "PROGRAMMING_FAMILY",
    "histogram_quantile",
    "kube_proxy_frames",
    "get_kube_proxy",
]

#: Quantiles reported (as the ``p50_seconds``, ``p90_seconds``, ``p99_seconds`` columns).
QUANTILES = (0.5, 0.9, 0.99)
#: The rate window of perf-tests and the usual kube-proxy dashboards.
WINDOW = pd.Timedelta(minutes=5)
#: Sync histograms, by the ``metric`` value they get.
SYNC_FAMILIES = {
    "sync": "kubeproxy_sync_proxy_rules_duration_seconds",
    "sync_full": "kubeproxy_sync_full_proxy_rules_duration_seconds",
    "sync_partial": "kubeproxy_sync_partial_proxy_rules_duration_seconds",
}
#: The network programming latency histogram.
PROGRAMMING_FAMILY = "kubeproxy_network_programming_duration_seconds"
_HISTOGRAMS = {**SYNC_FAMILIES, "network_programming": PROGRAMMING_FAMILY}
_P = "kubeproxy_sync_proxy_rules_"
_RULES, _RULES_LAST = _P + "iptables_total", _P + "iptables_last"
_NFT_FAMILIES = (_P + "nftables_sync_failures_total", _P + "nftables_cleanup_failures_total")
_IPTABLES_ONLY = (_RULES, _RULES_LAST, _P + "iptables_partial_restore_failures_total",
                  SYNC_FAMILIES["sync_full"] + "_count", SYNC_FAMILIES["sync_partial"] + "_count")
_RESTORE_FAILURES = _P + "iptables_restore_failures_total"
_NODE_LABELS = ("node", "instance")


@dataclasses.dataclass
class KubeProxy:
    """kube-proxy's metrics as frames.

    Attributes
    ----------
    latency : pandas.DataFrame
        Kind ``proxy_latency``: sync durations (all, full, partial) and network
        programming latency per node and time (p50/p90/p99, rate, mean).
    rule_counts : pandas.DataFrame
        Kind ``proxy_rule_counts``: rules per table (iptables mode).
    status : pandas.DataFrame
        Kind ``proxy_status``: mode, change counters and rates, pending changes,
        no-local-endpoints, failures, last sync.
    notes : list of str
        What was found (node label, window, missing families).
    """

    latency: pd.DataFrame
    rule_counts: pd.DataFrame
    status: pd.DataFrame
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """The three frames by name."""
        return {"latency": self.latency, "rule_counts": self.rule_counts, "status": self.status}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


# -- from samples ---------------------------------------------------------------------------


def _increase(values: np.ndarray) -> np.ndarray:
    """Increase along axis 0 with counter resets (a drop means the counter restarted from 0)."""
    if len(values) < 2:
        return np.full(values.shape[1:], np.nan)
    diff = np.diff(values, axis=0)
    return np.where(diff < 0, values[1:], diff).sum(axis=0)


def _node_names(values: pd.Series, nodes: pd.DataFrame | None, notes: list[str]) -> pd.Series:
    """``instance`` values (``host:port``) to node names, by the nodes' addresses (k8s_nodes)."""
    if nodes is None:
        return values
    validate_frame(nodes, "k8s_nodes")
    names = {str(n): str(n) for n in nodes["node"]}
    for column in ("internal_ip", "external_ip"):
        names.update({str(ip): str(n) for ip, n in zip(nodes[column], nodes["node"]) if pd.notna(ip)})

    def name(value: Any) -> Any:
        if pd.isna(value):
            return value
        text = str(value)
        host = text.rsplit(":", 1)[0] if text.count(":") == 1 or text.startswith("[") else text
        return names.get(host.strip("[]"), text)

    mapped = values.map(name)
    known = {v for v in mapped.dropna().unique() if v in names.values()}
    notes.append(f"{len(known)} of {mapped.nunique()} instances named after their node (by address)")
    return mapped


def _node_column(rows: pd.DataFrame, node: str | None, notes: list[str],
                 nodes: pd.DataFrame | None = None) -> pd.Series:
    if node is not None:
        return pd.Series(node, index=rows.index, dtype="object")
    for label in _NODE_LABELS:
        if label in rows and rows[label].notna().all():
            notes.append(f"node from the {label!r} label")
            values = rows[label].astype("object")
            return _node_names(values, nodes, notes) if label == "instance" else values
    notes.append("no node or instance label on every kubeproxy series: node is NA (pass node=)")
    return pd.Series(None, index=rows.index, dtype="object")


_NO_NODE = "\u2400no node"  # the group key of series without a node (NUL would not survive str arrays)


class _Data:
    """kubeproxy_* samples with a node column, split once by metric name and node."""

    def __init__(self, samples: pd.DataFrame, node: str | None, notes: list[str],
                 nodes: pd.DataFrame | None = None) -> None:
        names = samples["__name__"].astype("object") if "__name__" in samples else pd.Series([], dtype=object)
        rows = samples[names.str.startswith("kubeproxy_", na=False)]
        node_column = _node_column(rows, node, notes, nodes)
        self.rows = rows.assign(_node=node_column, _key=node_column.fillna(_NO_NODE).astype(str),
                                _name=rows["__name__"].astype("object"))
        self.names = set(self.rows["_name"])
        self.nodes = sorted({n for n in self.rows["_node"] if pd.notna(n)}, key=str) or (
            [None] if len(self.rows) else [])
        self.by_name = {name: rows for name, rows in self.rows.groupby("_name", sort=False)} if len(self.rows) else {}
        self._split: dict[str, dict[str, pd.DataFrame]] = {}
        self._sums: dict[tuple, dict[str, pd.Series]] = {}

    def of_name(self, name: str) -> pd.DataFrame:
        """Every sample of metric ``name``."""
        return self.by_name.get(name, self.rows.iloc[:0])

    def of(self, name: str, node: Any) -> pd.DataFrame:
        """The samples of metric ``name`` on ``node`` (None: series without a node)."""
        if name not in self._split:
            self._split[name] = {key: rows for key, rows in self.of_name(name).groupby("_key", sort=False)}
        return self._split[name].get(_key(node), self.rows.iloc[:0])

    def names_of(self, node: Any) -> set[str]:
        """The metric names ``node`` exports."""
        return {name for name, rows in self.by_name.items() if (rows["_key"] == _key(node)).any()}

    def sum_by_time(self, name: str, where: dict[str, str] | None = None) -> dict[str, pd.Series]:
        """``sum by (node) (name{where})`` at each sample time, per node key (computed once)."""
        cache_key = (name, tuple(sorted((where or {}).items())))
        if cache_key not in self._sums:
            rows = self.of_name(name)
            for label, value in (where or {}).items():
                rows = rows[rows[label] == value] if label in rows else rows.iloc[:0]
            sums = rows.groupby(["_key", "timestamp"], observed=True, sort=True)["value"].sum()
            self._sums[cache_key] = {str(key): part.droplevel(0)
                                     for key, part in sums.groupby(level=0, sort=False)} if len(rows) else {}
        return self._sums[cache_key]


def _key(node: Any) -> str:
    return _NO_NODE if node is None else str(node)


def _window_starts(times: np.ndarray, window_ns: int | None) -> np.ndarray:
    if window_ns is None:
        return np.arange(len(times))  # cumulative: each point on its own
    return np.searchsorted(times, times - window_ns, side="left")  # [t - window, t], as Prometheus 2.x


def _histogram_tables(data: _Data, family: str) -> dict[str, tuple[np.ndarray, list[float], pd.DataFrame]]:
    """Per node key: times, le bounds and a (time x bucket) table summed as ``sum by (node, le)``."""
    rows = data.of_name(family + "_bucket")
    if rows.empty:
        return {}
    bounds_of = _bucket_bounds(rows, family + "_bucket")
    table = rows.assign(_le=rows["le"].astype("object").map(bounds_of)).pivot_table(
        index=["_key", "timestamp"], columns="_le", values="value", aggfunc="sum", observed=True)
    totals = {}
    for suffix in ("_count", "_sum"):
        part = data.of_name(family + suffix)
        if len(part):
            totals[suffix] = part.groupby(["_key", "timestamp"], observed=True)["value"].sum()
    joined = pd.concat([table, pd.DataFrame(totals).reindex(table.index)], axis=1) if totals else table
    bounds = list(table.columns)
    out = {}
    for key, part in joined.groupby(level=0, sort=False):
        part = part.droplevel(0).sort_index()
        out[str(key)] = (part.index.to_numpy(), bounds, part)
    return out


def _sample_text(rows: pd.DataFrame, index: Any) -> str:
    """``sample <index>: name{labels} value`` of one sample, for error messages."""
    row = rows.loc[index]
    skip = {"timestamp", "value", "__name__", "_node", "_key", "_name"}
    labels = ",".join(f'{k}="{v}"' for k, v in row.items() if k not in skip and pd.notna(v))
    return f"sample {index}: {row['__name__']}{{{labels}}} {row['value']}"


def _bucket_bounds(rows: pd.DataFrame, name: str) -> dict[Any, float]:
    """The float bound of each ``le`` value of a ``_bucket`` series; ParseError for a missing or bad one."""
    expected = f"an 'le' label (the bucket's upper bound, a float or +Inf) on every {name} sample"
    if "le" not in rows:
        raise ParseError(f"{name} samples", 0, expected, _sample_text(rows, rows.index[0]))
    missing = rows.index[rows["le"].isna()]
    if len(missing):
        raise ParseError(f"{name} samples", 0, expected, _sample_text(rows, missing[0]))
    bounds = {}
    for value in rows["le"].unique():
        try:
            bounds[value] = float(str(value).replace("Inf", "inf"))
        except ValueError:
            index = rows.index[rows["le"] == value][0]
            raise ParseError(f"{name} samples", 0, expected, _sample_text(rows, index)) from None
    return bounds


def _latency_rows(data: _Data, window_ns: int | None) -> list[dict[str, Any]]:
    records = []
    cluster: dict[pd.Timestamp, dict[float, float]] = {}
    for metric, family in _HISTOGRAMS.items():
        tables = _histogram_tables(data, family)
        for node in data.nodes:
            if _key(node) not in tables:
                continue
            times, bounds, table = tables[_key(node)]
            buckets = table[bounds].to_numpy(dtype="float64")
            count = table["_count"].to_numpy(dtype="float64") if "_count" in table else buckets[:, -1]
            total = table["_sum"].to_numpy(dtype="float64") if "_sum" in table else np.full(len(times), np.nan)
            starts = _window_starts(pd.DatetimeIndex(times).as_unit("ns").asi8, window_ns)
            for i, j in enumerate(starts):
                if window_ns is None:
                    inc, n, s, span = buckets[i], count[i], total[i], math.nan
                else:
                    inc = _increase(buckets[j:i + 1])
                    n, s = _increase(count[j:i + 1, None])[0], _increase(total[j:i + 1, None])[0]
                    span = (times[i] - times[j]) / pd.Timedelta(seconds=1)
                vector = list(zip(bounds, inc))
                records.append(_latency_record(times[i], node, metric, vector, n, s, span, window_ns))
                if metric == "network_programming" and not np.isnan(inc).any():
                    # sum by (le) (rate(...)): per-node rates add up (counts when cumulative)
                    scale = 1.0 if window_ns is None else span
                    point = cluster.setdefault(pd.Timestamp(times[i]), {"n": 0.0, "rate_n": 0.0, "rate_s": 0.0})
                    point["n"] += n
                    point["rate_n"] += n / scale
                    point["rate_s"] += s / scale
                    for bound, value in vector:
                        point[bound] = point.get(bound, 0.0) + value / scale
    if len(data.nodes) > 1:
        for time in sorted(cluster):
            point = cluster[time]
            vector = sorted((k, v) for k, v in point.items() if not isinstance(k, str))
            record = _latency_record(time, None, "network_programming", vector, point["n"], math.nan, math.nan,
                                     window_ns)
            record["per_second"] = point["rate_n"] if window_ns is not None else math.nan
            record["mean_seconds"] = point["rate_s"] / point["rate_n"] if point["rate_n"] > 0 else math.nan
            records.append(record)
    return records


def _latency_record(time: Any, node: Any, metric: str, vector: Sequence[tuple[float, float]], count: float,
                    total: float, span: float, window_ns: int | None) -> dict[str, Any]:
    record = {
        "timestamp": pd.Timestamp(time), "node": node, "metric": metric,
        "window_seconds": math.nan if window_ns is None else window_ns / 1e9,
        "observations": float(count),
        "per_second": float(count) / span if span and span > 0 else math.nan,
        "mean_seconds": float(total) / float(count) if count and count > 0 else math.nan,
    }
    known = bool(vector) and not any(math.isnan(v) for _, v in vector)
    for q in QUANTILES:
        record[_quantile_column(q)] = histogram_quantile(vector, q) if known else math.nan
    return record


def _quantile_column(q: float) -> str:
    return f"p{round(q * 100):d}_seconds"


def _mode(names: set[str]) -> str | None:
    if any(n in names for n in _NFT_FAMILIES):
        return "nftables"
    if any(n in names for n in _IPTABLES_ONLY):
        return "iptables"
    if _RESTORE_FAILURES in names:
        return "ipvs"
    return None


def _series_by_time(data: _Data, name: str, node: Any, where: dict[str, str] | None = None) -> pd.Series:
    """``sum by (node) (name{where})`` of one node at each sample time (computed once for all nodes)."""
    return data.sum_by_time(name, where).get(_key(node), pd.Series(dtype="float64"))


def _status_rows(data: _Data, window_ns: int | None) -> list[dict[str, Any]]:
    records = []
    for node in data.nodes:
        names = data.names_of(node)
        mode = _mode(names)
        columns = {
            "endpoint_changes_total": _series_by_time(data, _P + "endpoint_changes_total", node),
            "service_changes_total": _series_by_time(data, _P + "service_changes_total", node),
            "endpoint_changes_pending": _series_by_time(data, _P + "endpoint_changes_pending", node),
            "service_changes_pending": _series_by_time(data, _P + "service_changes_pending", node),
            "no_local_endpoints_internal": _series_by_time(data, _P + "no_local_endpoints_total", node,
                                                           {"traffic_policy": "internal"}),
            "no_local_endpoints_external": _series_by_time(data, _P + "no_local_endpoints_total", node,
                                                           {"traffic_policy": "external"}),
            "sync_failures_total": _series_by_time(
                data, _NFT_FAMILIES[0] if mode == "nftables" else _RESTORE_FAILURES, node),
            "partial_restore_failures_total": _series_by_time(
                data, _P + "iptables_partial_restore_failures_total", node),
            "last_sync": _series_by_time(data, _P + "last_timestamp_seconds", node),
        }
        times = sorted(set().union(*(s.index for s in columns.values())))
        if not times:
            continue
        frame = pd.DataFrame(columns).reindex(times)
        stamps = pd.DatetimeIndex(times).as_unit("ns").asi8
        starts = _window_starts(stamps, window_ns)
        for i, j in enumerate(starts):
            row = frame.iloc[i]
            record = {"timestamp": pd.Timestamp(times[i]), "node": node, "proxy_mode": mode}
            for column in columns:
                if column == "last_sync":
                    value = row[column]
                    record["last_sync_timestamp"] = pd.NaT if pd.isna(value) else pd.Timestamp(
                        float(value), unit="s", tz="UTC")
                else:
                    record[column] = None if pd.isna(row[column]) else int(row[column])
            for what in ("endpoint", "service"):
                values = frame[f"{what}_changes_total"].to_numpy(dtype="float64")[j:i + 1]
                span = (stamps[i] - stamps[j]) / 1e9
                rate = _increase(values[~np.isnan(values), None])
                record[f"{what}_changes_per_second"] = (
                    float(rate[0]) / span if window_ns is not None and span > 0 and len(rate) else math.nan)
            records.append(record)
    return records


def _labels(frame: pd.DataFrame, label: str) -> list[str | None]:
    if label not in frame:
        return [None] * len(frame)
    return [None if pd.isna(v) else str(v) for v in frame[label]]


def _rule_rows(data: _Data) -> list[dict[str, Any]]:
    records = []
    for node in data.nodes:
        rules, last = data.of(_RULES, node), data.of(_RULES_LAST, node)
        last_of = {(stamp, str(table), family): value for stamp, table, family, value in
                   zip(last["timestamp"], _labels(last, "table"), _labels(last, "ip_family"), last["value"])}
        for stamp, table, family, value in zip(rules["timestamp"], _labels(rules, "table"),
                                               _labels(rules, "ip_family"), rules["value"]):
            last_value = last_of.get((stamp, str(table), family))
            records.append({"timestamp": stamp, "node": node, "table": table, "ip_family": family,
                            "rules": int(value), "rules_last": None if last_value is None else int(last_value)})
    return records


def _parse_window(window: Any) -> int | None:
    if window is None:
        return None
    try:
        delta = pd.Timedelta(window)
    except (ValueError, TypeError):
        raise ValueError(f"window must be 'auto', None or a duration such as '5m', got {window!r}") from None
    if delta <= pd.Timedelta(0):
        raise ValueError(f"window must be a positive duration, got {window!r}")
    return int(delta.value)


def kube_proxy_frames(samples: pd.DataFrame, *, node: str | None = None, window: Any = "auto",
                      nodes: pd.DataFrame | None = None) -> KubeProxy:
    """kube-proxy's sync latency, rule counts and status from ``kubeproxy_*`` samples (pure).

    Parameters
    ----------
    samples : pandas.DataFrame
        Kind ``prom_samples`` (other metrics are ignored). The node of a series
        is its ``node`` label, else its ``instance`` label (as a scrape adds it).
    node : str, optional
        The node of every series (for the scrape of one kube-proxy, which has no
        node label).
    window : "auto", duration or None, default "auto"
        Rates and quantiles over this window ending at each sample time (as
        ``rate(...[5m])``); None: cumulative since kube-proxy started (what one
        scrape gives); "auto": 5 minutes when a node has several sample times,
        else None.
    nodes : pandas.DataFrame, optional
        Kind ``k8s_nodes`` (from :func:`~npanalytics.collectors.kube_state.kube_state_frames`
        or the API): an ``instance`` such as ``10.0.0.11:10249`` whose host is a
        node's address (or name) is replaced by that node's name.

    Returns
    -------
    KubeProxy
        ``latency``, ``rule_counts`` and ``status`` (validated) and ``notes``.

    Raises
    ------
    ParseError
        When a ``kubeproxy_*_bucket`` sample has no ``le`` label or one that is not
        a float (the message names the metric and the sample).
    """
    validate_frame(samples, "prom_samples")
    notes: list[str] = []
    data = _Data(samples, node, notes, nodes)
    if isinstance(window, str) and window == "auto":
        times = data.rows.groupby("_node", dropna=False, observed=True)["timestamp"].nunique()
        several = len(data.rows) > 0 and times.max() > 1
        window_ns = int(WINDOW.value) if several else None
    else:
        window_ns = _parse_window(window)
    notes.append("cumulative since kube-proxy start (one sample time)" if window_ns is None
                 else f"window {window_ns / 1e9:g} s")
    for metric, family in _HISTOGRAMS.items():
        if family + "_bucket" not in data.names:
            notes.append(f"no {family}")
    latency = _frame(_latency_rows(data, window_ns), "proxy_latency")
    rule_counts = _frame(_rule_rows(data), "proxy_rule_counts")
    status = _frame(_status_rows(data, window_ns), "proxy_status")
    return KubeProxy(latency=latency, rule_counts=rule_counts, status=status, notes=notes)


def _frame(records: list[dict[str, Any]], kind: str) -> pd.DataFrame:
    if not records:
        return empty_frame(kind)
    frame = frame_from_records(records, kind)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ns")
    sort = [c for c in ("node", "metric", "table", "timestamp") if c in frame]
    frame = frame.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
    return validate_frame(frame, kind)


# -- from Prometheus ------------------------------------------------------------------------


def get_kube_proxy(prom: Any, start: Any, end: Any, step: Any, *, node_label: str = "instance",
                   window: Any = WINDOW, nodes: pd.DataFrame | None = None) -> KubeProxy:
    """kube-proxy's frames from Prometheus over a time range.

    Quantiles, rates and means of the histograms are computed by Prometheus:
    ``histogram_quantile(q, sum by (<node_label>, le) (rate(<family>_bucket[<window>])))``
    (and ``sum by (le)`` for the cluster-wide network programming latency, as
    perf-tests does). Rule counts and status come from the raw series at each
    step through :func:`kube_proxy_frames` (their ``*_per_second`` columns are
    increases over the window of those points, not ``rate``).

    Parameters
    ----------
    prom : PrometheusConnect or str
        As for :func:`npanalytics.collectors.prometheus.get_prometheus_range`.
    start, end, step
        The range and resolution.
    node_label : str, default "instance"
        The target label that names the node.
    window : duration, default 5 minutes
        The ``rate`` window.
    nodes : pandas.DataFrame, optional
        Kind ``k8s_nodes``, to name ``instance`` values after their nodes (see
        :func:`kube_proxy_frames`).

    Returns
    -------
    KubeProxy
    """
    from .prometheus import get_prometheus_range  # the HTTP layer, imported when used

    window_ns = _parse_window(window)
    window_text = f"{window_ns // 1_000_000}ms"
    notes = [f"node from the {node_label!r} label", f"quantiles by PromQL over rate windows of {window_ns / 1e9:g} s"]
    parts = []
    for metric, family in _HISTOGRAMS.items():
        groups = [(node_label, f"{node_label}, le")]
        if metric == "network_programming":
            groups.append((None, "le"))
        for node_by, by in groups:
            rates = f"sum by ({by}) (rate({family}_bucket[{window_text}]))"
            queries = {_quantile_column(q): f"histogram_quantile({q}, {rates})" for q in QUANTILES}
            outer = node_by or ""
            queries["per_second"] = f"sum by ({outer}) (rate({family}_count[{window_text}]))"
            queries["mean_seconds"] = (f"sum by ({outer}) (rate({family}_sum[{window_text}])) / "
                                       f"sum by ({outer}) (rate({family}_count[{window_text}]))")
            queries["observations"] = f"sum by ({outer}) (increase({family}_count[{window_text}]))"
            merged = None
            for column, query in queries.items():
                frame = get_prometheus_range(prom, query, start, end, step)
                if frame.empty:
                    continue
                names = frame[node_by].astype("object") if node_by and node_by in frame else None
                if names is not None and node_by == "instance":
                    names = _node_names(names, nodes, [])
                part = pd.DataFrame({"timestamp": frame["timestamp"], "node": names, column: frame["value"]})
                merged = part if merged is None else merged.merge(part, on=["timestamp", "node"], how="outer")
            if merged is None:
                if node_by:
                    notes.append(f"no {family} in Prometheus")
                continue
            merged["metric"] = metric
            merged["window_seconds"] = window_ns / 1e9
            parts.append(merged)
    records = [
        {k: (None if k == "node" and pd.isna(v) else v) for k, v in r.items()}
        for part in parts for r in part.to_dict("records")
    ]
    latency = _frame(records, "proxy_latency")
    raw = get_prometheus_range(prom, '{__name__=~"kubeproxy_.+",__name__!~".+_bucket"}', start, end, step)
    if node_label != "instance" and node_label in raw and "node" not in raw:
        raw = raw.rename(columns={node_label: "node"})
    rest = kube_proxy_frames(raw, window=window, nodes=nodes)
    histogram_notes = {f"no {family}" for family in _HISTOGRAMS.values()}  # buckets were not fetched raw
    notes += [n for n in rest.notes if n not in histogram_notes and not n.startswith("node from")]
    return KubeProxy(latency=latency, rule_counts=rest.rule_counts, status=rest.status, notes=notes)


for _function, _kinds in ((kube_proxy_frames, ("proxy_latency", "proxy_rule_counts", "proxy_status")),):
    _function.__doc__ += "\n    Notes\n    -----\n" + "".join(
        f"\n    ``{kind}``:\n\n    " + schema_table(kind).replace("\n", "\n    ") + "\n" for kind in _kinds)
