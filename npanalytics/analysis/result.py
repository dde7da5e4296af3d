"""The result of :func:`npanalytics.analyze`: one object the report, widgets and CLI read.

Pure data, no computation: every field is filled by the analysis functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from ..schemas import empty_frame

__all__ = ["Analysis", "SEVERITIES", "FINDING_CODES"]

SEVERITIES = ("critical", "warning", "info")
"""Finding severities, most severe first."""

FINDING_CODES = (
    "etp-local-topology",
    "affinity-concentration",
    "long-lived-connections",
    "stale-conntrack",
    "no-ready-endpoints",
    "node-port-not-programmed",
    "local-policy-blackhole",
    "snat-source-lost",
    "cross-node-hops",
    "conntrack-pressure",
    "node-port-out-of-range",
    "iptables-scaling",
    "unexplained-skew",
    "network-programming-slow",
)
"""The stable finding codes (more may be added; none is ever renamed)."""


def _empty(kind: str) -> pd.DataFrame:
    return empty_frame(kind)


@dataclasses.dataclass
class Analysis:
    """What :func:`npanalytics.analyze` found in one dataset.

    Attributes
    ----------
    findings : pandas.DataFrame
        Kind ``findings``, most severe first.
    skew : pandas.DataFrame
        Kind ``skew``: per Service port, window, source and backend, the observed
        and the expected share with their intervals.
    skew_summary : pandas.DataFrame
        Kind ``skew_summary``: the skew statistics and the G-test per Service port.
    sections : dict of str to pandas.DataFrame
        Further results by topic, present only when the dataset allows them (the
        kind of each is in parentheses): ``"load"`` (``backend_load``: load per
        backend and source), ``"node_path"`` (local vs forwarded per entry node),
        ``"affinity"``, ``"long_lived"``, ``"overhead"`` and ``"overhead_fit"`` (a lab
        sweep), ``"control_plane"`` (the lab's rule loads: sync time against rule count),
        ``"proxy_sync"`` (kube-proxy's own metrics: sync and network programming
        latency quantiles per node) and ``"conntrack_pressure"``.
    missing : dict of str to str
        For each topic that could not be computed, what is missing and how to
        collect it (shown by the report in place of the section).
    provenance : dict
        The dataset's manifest (name, description, how it was recorded), for the report.
    """

    findings: pd.DataFrame = dataclasses.field(default_factory=lambda: _empty("findings"))
    skew: pd.DataFrame = dataclasses.field(default_factory=lambda: _empty("skew"))
    skew_summary: pd.DataFrame = dataclasses.field(default_factory=lambda: _empty("skew_summary"))
    sections: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
