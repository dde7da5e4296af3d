"""Long-lived connections: even connection counts, uneven load.

Pure functions. kube-proxy balances **new connections** only: a keep-alive (or
HTTP/2, gRPC) client that opens a few connections and sends everything over
them loads the pods by how much each connection carries, which the rules never
see. After a scale-up the new pod gets only the connections opened after its
rules were programmed, so it stays starved until clients reconnect.

For each Service port and source (the conntrack table's accounted bytes, or the
requests the pods counted) this compares, per backend, the share of connections
with the share of load, and flags backends whose load share is far below what
the rules give them (:data:`STARVED_FRACTION`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._topics import (
    Frames,
    category,
    expected_counts,
    finding,
    findings_frame,
    frame,
    fmt_pct,
    missing_reason,
    present,
    service_attribute,
    service_flows,
)

__all__ = ["long_lived_section", "STARVED_FRACTION", "LOAD_SPREAD", "LONG_PACKETS", "LONG_REQUESTS"]

STARVED_FRACTION = 0.25
"""A backend is starved when its load share is below this fraction of its expected share."""

LOAD_SPREAD = 4.0
"""Load per connection differing by this factor between backends makes connections unequal."""

LONG_PACKETS = 100.0
"""Mean packets per conntrack entry from which connections count as long-lived (keep-alive)."""

LONG_REQUESTS = 10.0
"""Mean requests per connection from which connections count as long-lived."""

_EVENT_FRAME = re.compile(r"^ground_truth_after_event_(\d+)$")

_COLUMNS = [
    "service_port_name", "source", "window", "group", "backend", "connections", "connection_share", "load",
    "load_unit", "load_share", "packets", "load_per_connection", "age_seconds_mean", "expected_share", "starved",
]


def _shares(values: np.ndarray) -> np.ndarray:
    total = np.nansum(values)
    if not np.isfinite(total) or total <= 0:
        return np.where(np.isnan(values), np.nan, 0.0)
    return values / total


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Shares, load per connection and the starved flag of one (Service port, source, window)."""
    conns = df["connections"].to_numpy(dtype="float64")
    load = df["load"].to_numpy(dtype="float64")
    df["connection_share"] = _shares(conns)
    df["load_share"] = _shares(load) if not np.isnan(load).all() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        df["load_per_connection"] = np.where(conns > 0, load / np.where(conns > 0, conns, 1), np.nan)
    expected = df["expected_share"].to_numpy(dtype="float64")
    share = df["load_share"].to_numpy(dtype="float64")
    df["starved"] = np.isfinite(share) & (expected > 0) & (share < STARVED_FRACTION * expected)
    return df


def _conntrack_rows(flows: pd.DataFrame, services: pd.DataFrame, endpoints: pd.DataFrame | None) -> list[pd.DataFrame]:
    attributed = service_flows(flows, services)
    policy = service_attribute(services, "external_traffic_policy")
    parts = []
    for spn, part in attributed.groupby("service_port_name", sort=True):
        part = part.assign(backend=part["backend_ip"].astype("str"))
        accounted = part["orig_bytes"].notna() & part["reply_bytes"].notna()
        part = part.assign(
            load=(part["orig_bytes"].astype("Float64") + part["reply_bytes"].astype("Float64")).astype("float64"),
            pk=(part["orig_packets"].astype("Float64") + part["reply_packets"].astype("Float64")),
            age=part["delta_time_seconds"].astype("float64"),
        )
        g = part.groupby("backend", sort=True)
        rows = pd.DataFrame({
            "connections": g.size(),
            "load": g["load"].sum(min_count=1) if accounted.all() else np.nan,
            "packets": g["pk"].sum(min_count=1) if accounted.all() else pd.NA,
            "age_seconds_mean": g["age"].mean(),
        })
        expected = expected_counts(spn, part, endpoints, policy.get(spn))
        if expected is not None:
            rows = rows.reindex(rows.index.union(expected.index))
            rows["connections"] = rows["connections"].fillna(0)
            if accounted.all():
                rows["load"] = rows["load"].fillna(0.0)
                rows["packets"] = rows["packets"].fillna(0)
            exp_share = (expected / expected.sum()).reindex(rows.index).fillna(0.0)
        else:
            exp_share = pd.Series(1.0 / len(rows), index=rows.index)
        rows["expected_share"] = exp_share
        rows = rows.rename_axis("backend").reset_index()
        rows = rows.assign(service_port_name=spn, source="conntrack", window="snapshot", group="endpoint",
                           load_unit="bytes")
        parts.append(_finish(rows))
    return parts


def _ground_truth_rows(frames: Frames, spn: str | None) -> list[pd.DataFrame]:
    final = present(frames, "ground_truth")
    if final is None:
        return []
    windows = [("whole recording", final)]
    events = sorted((int(m.group(1)), name) for name in frames if (m := _EVENT_FRAME.match(name)))
    if events:
        k, name = events[-1]
        before = frame(frames, "ground_truth", name)
        if before is not None:
            windows.append((f"since event {k}", _subtract(final, before)))
    pods = sorted(final["pod"].astype("str").unique())
    parts = []
    for window, gt in windows:
        g = gt.assign(pod=gt["pod"].astype("str")).groupby("pod")
        rows = pd.DataFrame({"connections": g["connections"].sum(), "load": g["requests"].sum()}).reindex(pods)
        rows = rows.fillna(0).rename_axis("backend").reset_index()
        # pods that accepted no connection in the window are taken as gone (a removed pod)
        serving = rows["connections"] > 0
        expected = np.where(serving, 1.0 / max(int(serving.sum()), 1), 0.0)
        rows = rows.assign(service_port_name=spn, source="ground_truth", window=window, group="pod",
                           load_unit="requests", packets=pd.NA, age_seconds_mean=np.nan,
                           expected_share=expected)
        parts.append(_finish(rows))
    return parts


def _subtract(final: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """Counts since ``before``: final minus earlier cumulative counts per (pod, client)."""
    key = ["pod", "client"]
    f = final.assign(**{k: final[k].astype("str") for k in key}).set_index(key)[["requests", "connections"]]
    b = before.assign(**{k: before[k].astype("str") for k in key}).set_index(key)[["requests", "connections"]]
    diff = f.sub(b.reindex(f.index, fill_value=0)).clip(lower=0)
    return diff.reset_index()


def _finding(rows: pd.DataFrame) -> str | None:
    """Evidence text when one (Service port, source, window) shows long-lived connections, else None."""
    served = rows.loc[(rows["connections"] > 0) & rows["load_per_connection"].notna()]
    if len(rows) < 2 or served.empty or rows["load"].isna().all():
        return None
    unit = rows["load_unit"].iloc[0]
    if unit == "bytes":
        per_conn = rows["packets"].astype("Float64").sum() / rows["connections"].sum()
        long_lived = per_conn >= LONG_PACKETS
        length = f"{float(per_conn):.0f} packets per connection"
    else:
        per_conn = rows["load"].sum() / max(rows["connections"].sum(), 1)
        long_lived = per_conn >= LONG_REQUESTS
        length = f"{per_conn:.0f} requests per connection"
    lpc = served["load_per_connection"]
    spread = lpc.max() / lpc.min() if lpc.min() > 0 else np.inf
    starved = rows.loc[rows["starved"]]
    if not long_lived or (spread < LOAD_SPREAD and starved.empty):
        return None
    shares = ", ".join(f"{r.backend} {fmt_pct(r.connection_share)} of connections / {fmt_pct(r.load_share)} of {unit}"
                       for r in rows.itertuples())
    text = (f"{rows['source'].iloc[0]} ({rows['window'].iloc[0]}): {length}; load per connection differs "
            f"{spread:.1f}x between backends; {shares}")
    if not starved.empty:
        text += "; starved: " + ", ".join(
            f"{r.backend} ({fmt_pct(r.load_share)} of {unit} against {fmt_pct(r.expected_share)} expected)"
            for r in starved.itertuples())
    return text


def long_lived_section(frames: Frames) -> tuple[pd.DataFrame | None, pd.DataFrame, str | None]:
    """Per Service port, source, window and backend: connections against the load they carried.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        A dataset's frames by name. Uses ``conntrack_flows`` with ``proxy_services``
        (and ``proxy_endpoints`` for the expected shares), and/or ``ground_truth``
        (with ``ground_truth_after_event_<k>``: the last one gives a window "since
        event k", the load after a scale-up).

    Returns
    -------
    section : pandas.DataFrame or None
        Kind ``long_lived``. None without conntrack flows and without ground truth.
    findings : pandas.DataFrame
        Kind ``findings``: ``long-lived-connections`` for a Service port whose
        connections are long (>= :data:`LONG_PACKETS` packets or
        :data:`LONG_REQUESTS` requests per connection) and carry unequal load
        (load per connection differing >= :data:`LOAD_SPREAD` x between backends)
        or leave a backend starved; warning when a backend is starved, else info.
    missing : str or None
        What to collect when the section is None.
    """
    flows = present(frames, "conntrack_flows")
    services = present(frames, "proxy_services")
    parts: list[pd.DataFrame] = []
    if flows is not None and services is not None:
        parts += _conntrack_rows(flows, services, present(frames, "proxy_endpoints"))
    spns = sorted(services["service_port_name"].dropna().astype("str").unique()) if services is not None else []
    parts += _ground_truth_rows(frames, spns[0] if len(spns) == 1 else None)
    if not parts:
        return None, findings_frame([]), missing_reason(
            "no conntrack flows with rules and no per-pod counts", "conntrack_flows", "proxy_services", "ground_truth")
    out = pd.concat(parts, ignore_index=True)[_COLUMNS]
    records = []
    for spn, rows in out.groupby(out["service_port_name"].fillna(""), sort=True):
        texts = [t for _, g in rows.groupby(["source", "window"], sort=False) if (t := _finding(g))]
        if not texts:
            continue
        starved = rows["starved"].any() and any("starved" in t for t in texts)
        records.append(finding(
            "warning" if starved else "info", "long-lived-connections", spn or None, None,
            "long-lived connections: the rules spread connections, not the load they carry"
            + (", and a backend is starved (e.g. a pod added after the connections were opened)" if starved else ""),
            " | ".join(texts),
            "have clients reconnect periodically (max connection age / requests per connection, e.g. "
            "Envoy max_connection_duration, gRPC MAX_CONNECTION_AGE, HTTP keep-alive limits) or balance "
            "requests at L7 (a service mesh or an L7 proxy) instead of connections",
        ))
    for col in ("service_port_name", "source", "window", "group", "backend", "load_unit"):
        out[col] = category(out[col].tolist())
    out = out.astype({"connections": "int64", "load": "float64", "packets": "Int64",
                      "age_seconds_mean": "float64", "expected_share": "float64", "starved": "bool",
                      "connection_share": "float64", "load_share": "float64", "load_per_connection": "float64"})
    return validate_frame(out, "long_lived"), findings_frame(records), None
