"""Why a Service port's load is uneven: the findings that explain the skew.

Pure functions. :func:`attribute_skew` reads the skew statistics (kinds ``skew`` and
``skew_summary``), the load per backend (``backend_load``), the Service policies and
the topic modules' findings, and names a cause per Service port:

- ``etp-local-topology``: externalTrafficPolicy Local and the per-node split predicts
  the observed shares (the model is not rejected) while they differ from an even
  split over all endpoints;
- ``stale-conntrack``: connections toward backends the rules no longer have
  (endpoint churn: conntrack keeps what the rules forgot);
- ``affinity-concentration`` and ``long-lived-connections``: taken from the affinity
  and long-lived topic modules when they found them; a plain fallback from the skew
  alone otherwise;
- ``unexplained-skew``: a model that predicts the configuration is rejected
  (p < ``alpha``) and none of the above applies: "not explained by the
  configuration: investigate".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..schemas import empty_frame, frame_from_records, validate_frame
from ._topics import finding, fmt_pct
from .result import SEVERITIES
from .skew import g_test

__all__ = ["ALPHA", "attribute_skew", "sort_findings"]

ALPHA = 0.01
"""Significance level of the G-tests: a model with p below it is rejected."""

_MIN_DIFFERENCE = 0.02  # Local split vs even split: largest share difference that counts as a difference
_VOLUME_GAP = 0.10  # total variation distance between connection and volume shares for long-lived
_CONNECTION_SOURCES = ("conntrack", "rules")


def sort_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """Findings most severe first (then by code, Service port and node), duplicates of
    ``(code, service, node)`` dropped (the first kept)."""
    validate_frame(findings, "findings")
    if findings.empty:
        return findings.reset_index(drop=True)
    rank = findings["severity"].astype("str").map({s: i for i, s in enumerate(SEVERITIES)}).fillna(len(SEVERITIES))
    out = (
        findings.assign(_rank=rank.to_numpy())
        .drop_duplicates(["code", "service", "node"], keep="first")
        .sort_values(["_rank", "code", "service", "node"], kind="stable", na_position="last")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    return validate_frame(out, "findings")


def _fmt_p(p: float) -> str:
    if np.isnan(p):
        return "n/a"
    return "<1e-300" if p == 0 else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _record(severity: str, code: str, spn: str, what: str, evidence: str, advice: str) -> dict:
    """A findings record about a Service port (no node)."""
    return finding(severity, code, spn, None, what, evidence, advice)


def _stale(spn: str, load: pd.DataFrame, summary: pd.DataFrame) -> dict | None:
    conn = load[(load["source"] == "conntrack") & (load["measure"] == "connections")
                & load["window_start"].isna()]
    stale = conn[conn["programmed"].eq(False).fillna(False).astype(bool) & (conn["value"] > 0)]
    if stale.empty:
        return None
    n_stale, total = stale["value"].sum(), conn["value"].sum()
    who = ", ".join(sorted({f"{ip}" + (f" ({pod})" if pd.notna(pod) else "")
                            for ip, pod in zip(stale["endpoint_ip"].astype("str"), stale["pod"])}))
    nat = summary[(summary["source"] == "conntrack") & summary["window_start"].isna() & (summary["group"] == "endpoint")]
    evidence = f"{n_stale:.0f} of {total:.0f} conntrack flows ({fmt_pct(n_stale / total)}) go to {who}, not in the current rules"
    if len(nat):
        evidence += f"; G-test of conntrack against the current rules p={_fmt_p(float(nat['p_value'].iloc[0]))}"
    windows = summary[summary["window_start"].notna() & (summary["group"] == "endpoint")
                      & (summary["source"] == "rules")]
    if len(windows):
        evidence += "; per-window rule counters against each window's rules: " + ", ".join(
            f"{w.window_start:%H:%M:%S} p={_fmt_p(w.p_value)}" for w in windows.itertuples())
    return _record(
        "warning", "stale-conntrack", spn,
        "conntrack still holds connections to endpoints that were removed from the rules (endpoint churn)",
        evidence,
        "expected for TCP until the entries expire (TIME_WAIT 120 s, ESTABLISHED up to 86400 s); "
        "for UDP check that kube-proxy deletes stale entries (conntrack binary present), and make clients "
        "reconnect after a scale-down",
    )


def _local_topology(spn: str, skew: pd.DataFrame, summary: pd.DataFrame, alpha: float) -> dict | None:
    group = "pod" if (skew["group"] == "pod").any() else "endpoint"  # pod names read better
    rows = skew[skew["window_start"].isna() & (skew["group"] == group)
                & skew["source"].isin(_CONNECTION_SOURCES + ("ground_truth",))]
    if rows.empty:
        return None
    fits, against_uniform, detail = [], [], ""
    for source, r in rows.groupby(rows["source"].astype("str"), sort=True):
        s = summary[(summary["source"] == source) & summary["window_start"].isna() & (summary["group"] == group)]
        if s.empty or np.isnan(s["p_value"].iloc[0]):
            continue
        exp = r["expected_share"].to_numpy(dtype="float64")
        usable = exp > 0
        if usable.sum() < 2:
            continue
        even = np.where(usable, 1.0 / usable.sum(), 0.0)
        if np.max(np.abs(exp - even)) < _MIN_DIFFERENCE:
            return None  # the Local split happens to be even: nothing to explain
        _, p_even = g_test(r["observed"].to_numpy(), even, np.zeros(len(r), dtype="int64"), 1)
        fits.append((source, float(s["p_value"].iloc[0])))
        against_uniform.append((source, float(p_even[0])))
        if not detail:
            detail = "; ".join(f"{b} {fmt_pct(o)} observed / {fmt_pct(e)} expected"
                               for b, o, e in zip(r["backend"].astype("str"), r["share"], r["expected_share"]))
            mm = s["max_mean"].iloc[0]
    if not fits or min(p for _, p in fits) < alpha:
        return None
    evidence = (
        f"{detail}; max/mean {mm:.2f}; G-test against the Local per-node split: "
        + ", ".join(f"{s} p={_fmt_p(p)}" for s, p in fits)
        + "; against an even split over all endpoints: "
        + ", ".join(f"{s} p={_fmt_p(p)}" for s, p in against_uniform)
    )
    return _record(
        "warning" if mm >= 1.2 else "info", "etp-local-topology", spn,
        "externalTrafficPolicy Local: each node serves its traffic with its own pods, so pods on nodes "
        "with fewer endpoints get more",
        evidence,
        "spread the pods evenly over the nodes that receive traffic (topologySpreadConstraints), weight "
        "the load balancer by local endpoints, or use externalTrafficPolicy Cluster if the client address "
        "is not needed",
    )


def _long_lived_fallback(spn: str, load: pd.DataFrame, summary: pd.DataFrame, alpha: float) -> dict | None:
    nat = load[load["window_start"].isna()]
    conns = nat[nat["measure"] == "connections"]
    volume = nat[nat["measure"].isin(["requests", "bytes"])]
    if conns.empty or volume.empty:
        return None
    fit = summary[summary["window_start"].isna() & (summary["group"] == "endpoint")
                  & summary["source"].isin(_CONNECTION_SOURCES)]
    if fit.empty or (fit["p_value"] < alpha).any():
        return None
    c = conns.groupby(conns["endpoint_ip"].astype("str"))["value"].sum()
    best = None
    for (source, measure), v in volume.groupby([volume["source"].astype("str"), volume["measure"].astype("str")]):
        v = v.groupby(v["endpoint_ip"].astype("str"))["value"].sum()
        both = pd.concat([c / c.sum(), v / v.sum()], axis=1).fillna(0.0)
        gap = 0.5 * float(np.abs(both.iloc[:, 0] - both.iloc[:, 1]).sum())
        if best is None or gap > best[0]:
            best = (gap, source, measure, both)
    if best is None or best[0] < _VOLUME_GAP:
        return None
    gap, source, measure, both = best
    shares = ", ".join(f"{ip} {fmt_pct(a)} of connections / {fmt_pct(b)} of {measure}" for ip, (a, b) in both.iterrows())
    return _record(
        "info", "long-lived-connections", spn,
        "connections are spread as configured, but the load they carry is not (long-lived connections)",
        f"{shares}; connection and {measure} ({source}) shares differ by {fmt_pct(gap)} (total variation); "
        "G-test of connections against the model: " + ", ".join(
            f"{r.source} p={_fmt_p(r.p_value)}" for r in fit.itertuples()),
        "have clients reconnect periodically (max connection age) or balance requests at L7",
    )


def _unexplained(spn: str, summary: pd.DataFrame, alpha: float) -> dict | None:
    rej = summary[(summary["group"] == "endpoint") & (summary["p_value"] < alpha)]
    if rej.empty:
        return None
    evidence = "; ".join(
        f"{r.source} ({'whole recording' if pd.isna(r.window_start) else f'from {r.window_start:%H:%M:%S}'}): "
        f"G={r.g_statistic:.1f}, p={_fmt_p(r.p_value)}, max/mean {r.max_mean:.2f}, model: {r.model}"
        for r in rej.itertuples()
    )
    return _record(
        "warning", "unexplained-skew", spn,
        "the load is more uneven than the configuration predicts: not explained by the configuration, investigate",
        evidence,
        "check that every node's rules are current (kube-proxy sync errors), the client-to-node mix of the "
        "load balancer, clients that hold few long connections, and per-pod health",
    )


def attribute_skew(
    skew: pd.DataFrame,
    summary: pd.DataFrame,
    load: pd.DataFrame,
    *,
    policies: Mapping[str, Mapping[str, str | None]] | None = None,
    topic_findings: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Findings that explain (or fail to explain) each Service port's skew.

    Parameters
    ----------
    skew, summary : pandas.DataFrame
        Kinds ``skew`` and ``skew_summary`` (from :func:`npanalytics.analysis.skew.skew_table`).
    load : pandas.DataFrame
        Kind ``backend_load`` (all measures; ``programmed`` marks stale backends).
    policies : mapping, optional
        Per Service port: ``{"external_traffic_policy": ..., "session_affinity": ...}``.
    topic_findings : pandas.DataFrame, optional
        Kind ``findings`` from the topic modules: their ``affinity-concentration``,
        ``long-lived-connections`` and ``stale-conntrack`` findings count as causes;
        the first two are not repeated here (``stale-conntrack`` is, Service-wide with
        its G-tests, beside the diagnostics' per-node findings).
    alpha : float, default :data:`ALPHA`
        Significance level.

    Returns
    -------
    pandas.DataFrame
        Kind ``findings``, most severe first.
    """
    for df, kind in ((skew, "skew"), (summary, "skew_summary"), (load, "backend_load")):
        validate_frame(df, kind)
    policies = policies or {}
    topic = topic_findings if topic_findings is not None else empty_frame("findings")
    validate_frame(topic, "findings")
    records: list[dict] = []
    spns = sorted(set(summary["service_port_name"].astype("str")) | set(load["service_port_name"].astype("str")))
    for spn in spns:
        s = summary[summary["service_port_name"].astype("str") == spn]
        k = skew[skew["service_port_name"].astype("str") == spn]
        ld = load[load["service_port_name"].astype("str") == spn]
        policy = policies.get(spn, {})
        theirs = set(topic.loc[topic["service"].astype("str") == spn, "code"].astype("str"))
        causes = [c for c in ("affinity-concentration", "long-lived-connections", "stale-conntrack") if c in theirs]
        found = [_stale(spn, ld, s)]
        if policy.get("external_traffic_policy") == "Local":
            found.append(_local_topology(spn, k, s, alpha))
        rejected = bool((s.loc[s["group"] == "endpoint", "p_value"] < alpha).any())
        if ("affinity-concentration" not in theirs and policy.get("session_affinity") == "ClientIP" and rejected):
            found.append(_record(
                "warning", "affinity-concentration", spn,
                "sessionAffinity ClientIP pins each client address to one pod; with few clients the pods are uneven",
                "G-test against the no-affinity model: " + ", ".join(
                    f"{r.source} p={_fmt_p(r.p_value)}" for r in s[(s["group"] == "endpoint") & s["window_start"].isna()].itertuples()),
                "drop ClientIP affinity if not needed, or make clients distinct (no shared NAT address)",
            ))
        if "long-lived-connections" not in theirs:
            found.append(_long_lived_fallback(spn, ld, s, alpha))
        # the topic modules' affinity and long-lived findings carry the full evidence: not repeated;
        # stale-conntrack is kept beside the diagnostics' per-node findings, as the Service port's
        # explanation of its skew (with the G-tests)
        found = [f for f in found if f is not None and (f["code"] == "stale-conntrack" or f["code"] not in theirs)]
        records += found
        causes += [f["code"] for f in found]
        if not causes:
            un = _unexplained(spn, s, alpha)
            if un is not None:
                records.append(un)
    if not records:
        return empty_frame("findings")
    return sort_findings(validate_frame(frame_from_records(records, "findings"), "findings"))
