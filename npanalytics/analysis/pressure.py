"""Conntrack pressure: how full each node's connection-tracking table is, and will be.

Pure functions. Every connection through a NodePort holds a conntrack entry on
the node it enters (and, when forwarded, on the backend's node); when the table
reaches ``nf_conntrack_max`` new connections are dropped (``early_drop``,
``drop``). kube-proxy sizes the table itself: ``max(32768 x CPUs, 131072)``
(``--conntrack-max-per-core``, ``--conntrack-min``) and shortens two timeouts:
ESTABLISHED to 86400 s (``--conntrack-tcp-timeout-established``) and CLOSE_WAIT to
3600 s (``--conntrack-tcp-timeout-close-wait``); the others are the kernel's.

The forecast applies Little's law per state: entries = arrival rate x time spent.
States an entry sits in until its timeout (TIME_WAIT, CLOSE_WAIT, SYN_SENT, ...)
have a known age, ``timeout - seconds left``, so their arrival rate is their
count over the span of ages seen (at most the timeout), and their steady state
is that rate times the timeout. ESTABLISHED and UDP entries are refreshed by
every packet, so their age is unknown and their current count is kept. The new-
connection rate is the TIME_WAIT arrival rate (every cleanly closed TCP
connection passes TIME_WAIT once), unless given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._topics import Frames, category, finding, findings_frame, fmt_pct, missing_reason, present

__all__ = [
    "pressure_section",
    "kube_proxy_conntrack_max",
    "little_forecast",
    "STATE_TIMEOUTS",
    "FILL_WARNING",
    "FILL_CRITICAL",
]

CONNTRACK_MAX_PER_CORE = 32768
CONNTRACK_MIN = 131072

STATE_TIMEOUTS: Mapping[str, float] = {
    "ESTABLISHED": 86400.0,  # kube-proxy --conntrack-tcp-timeout-established (kernel: 432000)
    "CLOSE_WAIT": 3600.0,    # kube-proxy --conntrack-tcp-timeout-close-wait (kernel: 60)
    "TIME_WAIT": 120.0,
    "SYN_SENT": 120.0,
    "SYN_RECV": 60.0,
    "FIN_WAIT": 120.0,
    "LAST_ACK": 30.0,
    "CLOSE": 10.0,
}
"""State timeouts (s) on a kube-proxy node: kube-proxy's two, the kernel's defaults for the rest."""

_REFRESHED = frozenset({"ESTABLISHED"})
"""States whose timeout restarts with every packet (age unknown from the dump)."""

FILL_WARNING = 0.75
"""Fill (current or forecast) from which ``conntrack-pressure`` is a warning."""

FILL_CRITICAL = 0.9
"""Current fill from which ``conntrack-pressure`` is critical."""

_COLUMNS = [
    "node", "cpus", "entries", "max_entries", "max_entries_source", "fill_ratio", "insert_failed", "drop",
    "early_drop", "established", "time_wait", "close_wait", "other_tcp", "udp", "other",
    "new_connections_per_second", "forecast_entries", "forecast_ratio",
]


def kube_proxy_conntrack_max(cpus: int) -> int:
    """kube-proxy's nf_conntrack_max for a node: ``max(32768 x cpus, 131072)``."""
    if cpus < 0:
        raise ValueError(f"cpus must be >= 0, got {cpus!r}")
    return max(CONNTRACK_MAX_PER_CORE * int(cpus), CONNTRACK_MIN)


def little_forecast(flows: pd.DataFrame, *, new_connections_per_second: float | None = None,
                    timeouts: Mapping[str, float] = STATE_TIMEOUTS) -> tuple[float, float]:
    """Steady-state entries of one node's table, and the new-connection rate used.

    Parameters
    ----------
    flows : pandas.DataFrame
        Kind ``conntrack_flows`` of one node.
    new_connections_per_second : float, optional
        Rate of new TCP connections; default: estimated from the TIME_WAIT entries.
    timeouts : mapping of str to float
        State timeouts (s).

    Returns
    -------
    (forecast_entries, rate) : tuple of float
        ``rate`` is NaN when it can be neither given nor estimated (no TIME_WAIT
        entry with a timeout); the forecast then keeps the TIME_WAIT count.
    """
    tcp = flows.loc[(flows["protocol"] == "tcp").to_numpy(dtype=bool)]
    # UDP, other protocols and TCP entries without a state: refreshed or unknown, kept as they are
    forecast = float(len(flows) - len(tcp)) + float(tcp["state"].isna().sum())
    rate = float("nan") if new_connections_per_second is None else float(new_connections_per_second)
    state_timeouts = tcp.groupby("state", observed=True, sort=True)["timeout_seconds"].agg(["size", "min"])
    for state, (count, least) in state_timeouts.iterrows():
        timeout = timeouts.get(str(state))
        if timeout is None or state in _REFRESHED or pd.isna(least):
            forecast += count
            continue
        span = float(np.clip(timeout - float(least), 1.0, timeout))
        arrivals = count / span
        if state == "TIME_WAIT":
            if new_connections_per_second is None:
                rate = arrivals
            arrivals = rate
        forecast += arrivals * timeout
    if "TIME_WAIT" not in set(state_timeouts.index.astype("str")) and np.isfinite(rate):
        forecast += rate * timeouts.get("TIME_WAIT", 120.0)
    return forecast, rate


def _per_node(df: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    if df is None:
        return {}
    if "node" not in df.columns:
        return {"": df}
    return {str(n): g for n, g in df.groupby(df["node"].astype("str"), sort=True)}


def _lookup(value, node: str):
    if isinstance(value, Mapping):
        return value.get(node)
    return value


def _sum(stats: pd.DataFrame | None, column: str):
    if stats is None or column not in stats.columns or stats[column].isna().all():
        return pd.NA
    return int(stats[column].sum())


def _row(node: str, flows: pd.DataFrame | None, stats: pd.DataFrame | None, max_entries, cpus,
         rate, timeouts) -> dict | None:
    n_cpus = len(stats) if stats is not None else _lookup(cpus, node)
    stat_entries = stats["entries"].max() if stats is not None and stats["entries"].notna().any() else None
    if stat_entries is not None:
        entries = int(stat_entries)
    elif flows is not None:
        entries = len(flows)
    else:
        return None
    given = _lookup(max_entries, node)
    if given is not None:
        maximum, source = int(given), "given"
    elif n_cpus:
        maximum, source = kube_proxy_conntrack_max(int(n_cpus)), f"kube-proxy default for {int(n_cpus)} CPUs"
    else:
        maximum, source = CONNTRACK_MIN, "kube-proxy's minimum (CPUs unknown)"
    row = {"node": node or None, "cpus": n_cpus, "entries": entries, "max_entries": maximum,
           "max_entries_source": source, "fill_ratio": entries / maximum if maximum > 0 else float("nan"),
           "insert_failed": _sum(stats, "insert_failed"), "drop": _sum(stats, "drop"),
           "early_drop": _sum(stats, "early_drop")}
    if flows is not None:
        proto, state = flows["protocol"], flows["state"]
        tcp = (proto == "tcp").to_numpy(dtype=bool)
        row.update(established=int((tcp & (state == "ESTABLISHED")).sum()),
                   time_wait=int((tcp & (state == "TIME_WAIT")).sum()),
                   close_wait=int((tcp & (state == "CLOSE_WAIT")).sum()),
                   udp=int((proto == "udp").sum()))
        row["other_tcp"] = int(tcp.sum()) - row["established"] - row["time_wait"] - row["close_wait"]
        row["other"] = len(flows) - int(tcp.sum()) - row["udp"]
        forecast, est = little_forecast(flows, new_connections_per_second=_lookup(rate, node), timeouts=timeouts)
        # entries the dump missed (stats count more) are kept as they are
        forecast += max(0, entries - len(flows))
    else:
        row.update(established=0, time_wait=0, close_wait=0, other_tcp=0, udp=0, other=0)
        given_rate = _lookup(rate, node)
        est = float("nan") if given_rate is None else float(given_rate)
        forecast = entries + (est * timeouts.get("TIME_WAIT", 120.0) if np.isfinite(est) else 0.0)
    row.update(new_connections_per_second=est, forecast_entries=forecast,
               forecast_ratio=forecast / maximum if maximum > 0 else float("nan"))
    return row


def _finding(r: pd.Series) -> dict | None:
    drops = {k: int(r[k]) for k in ("early_drop", "drop", "insert_failed") if pd.notna(r[k]) and r[k] > 0}
    if r["fill_ratio"] >= FILL_CRITICAL or drops.get("early_drop") or drops.get("drop"):
        severity = "critical"
    elif r["fill_ratio"] >= FILL_WARNING or r["forecast_ratio"] >= 1.0 or drops:
        severity = "warning"
    elif r["forecast_ratio"] >= FILL_WARNING:
        severity = "info"
    else:
        return None
    rate = r["new_connections_per_second"]
    evidence = (
        f"{r['entries']:,} entries of {r['max_entries']:,} ({fmt_pct(r['fill_ratio'])}; maximum: "
        f"{r['max_entries_source']}); state mix ESTABLISHED {r['established']:,}, TIME_WAIT {r['time_wait']:,}, "
        f"CLOSE_WAIT {r['close_wait']:,}, other TCP {r['other_tcp']:,}, UDP {r['udp']:,}; "
        f"steady-state forecast {r['forecast_entries']:,.0f} ({fmt_pct(r['forecast_ratio'])})"
        + (f" at {rate:,.0f} new connections/s" if np.isfinite(rate) else "")
    )
    if drops:
        evidence += "; counters: " + ", ".join(f"{k} {v:,}" for k, v in drops.items())
    return finding(
        severity, "conntrack-pressure", None, r["node"],
        "the conntrack table is close to full or will fill at the current connection rate"
        if not drops else "conntrack dropped or failed to insert entries",
        evidence,
        "raise nf_conntrack_max (kube-proxy --conntrack-max-per-core / --conntrack-min), shorten the "
        "timeouts of the states that pile up (CLOSE_WAIT: the application does not close its sockets), "
        "reuse connections; insert_failed alone usually means SNAT port races (use --random-fully)",
    )


def pressure_section(frames: Frames, *, max_entries: int | Mapping[str, int] | None = None,
                     cpus: int | Mapping[str, int] | None = None,
                     new_connections_per_second: float | Mapping[str, float] | None = None,
                     timeouts: Mapping[str, float] = STATE_TIMEOUTS,
                     ) -> tuple[pd.DataFrame | None, pd.DataFrame, str | None]:
    """Per node: conntrack entries against the maximum, drop counters, state mix and forecast.

    Parameters
    ----------
    frames : mapping of str to pandas.DataFrame
        A dataset's frames by name: ``conntrack_flows`` and/or ``conntrack_stats``
        (one row per CPU, so its rows count the CPUs).
    max_entries : int or mapping of node to int, optional
        ``nf_conntrack_max``; default kube-proxy's ``max(32768 x CPUs, 131072)``.
    cpus : int or mapping of node to int, optional
        CPUs per node when there are no stats.
    new_connections_per_second : float or mapping of node to float, optional
        New TCP connections per second; default estimated from TIME_WAIT entries.
    timeouts : mapping of str to float
        State timeouts (s), default :data:`STATE_TIMEOUTS`.

    Returns
    -------
    section : pandas.DataFrame or None
        Kind ``conntrack_pressure``, one row per node. None without flows and stats.
    findings : pandas.DataFrame
        Kind ``findings``: ``conntrack-pressure`` per node: critical at
        :data:`FILL_CRITICAL` fill or any drop/early_drop; warning at
        :data:`FILL_WARNING` fill, a forecast beyond the maximum, or insert
        failures; info for a forecast above :data:`FILL_WARNING`.
    missing : str or None
        What to collect when the section is None.
    """
    flows = _per_node(present(frames, "conntrack_flows"))
    stats = _per_node(present(frames, "conntrack_stats"))
    rows = [r for node in sorted(set(flows) | set(stats))
            if (r := _row(node, flows.get(node), stats.get(node), max_entries, cpus,
                          new_connections_per_second, timeouts)) is not None]
    if not rows:
        return None, findings_frame([]), missing_reason(
            "no conntrack table or counters", "conntrack_flows", "conntrack_stats")
    out = pd.DataFrame(rows)[_COLUMNS]
    out["node"] = category(out["node"].tolist())
    out = out.astype({"cpus": "Int64", "entries": "int64", "max_entries": "int64", "max_entries_source": "str",
                      "fill_ratio": "float64", "insert_failed": "Int64", "drop": "Int64", "early_drop": "Int64",
                      "established": "int64", "time_wait": "int64", "close_wait": "int64", "other_tcp": "int64",
                      "udp": "int64", "other": "int64", "new_connections_per_second": "float64",
                      "forecast_entries": "float64", "forecast_ratio": "float64"})
    records = [rec for _, r in out.iterrows() if (rec := _finding(r))]
    return validate_frame(out, "conntrack_pressure"), findings_frame(records), None
