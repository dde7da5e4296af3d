"""Proxy-mode overhead: connect time against the Service count per mode, with the fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._common import axes, check_option

__all__ = ["plot_overhead"]

STATISTICS = ("p50_us", "p90_us", "p99_us")
"""The connect-time columns of an ``overhead`` frame (µs)."""


_QUANTILES = {"p50_us": 0.50, "p90_us": 0.90, "p99_us": 0.99}


def _published(ax: Any, published: pd.DataFrame, statistic: str) -> None:
    validate_frame(published, "published_latency")
    rows = published[np.isclose(published["quantile"], _QUANTILES[statistic])]
    for (mode, bound), part in rows.groupby([rows["proxy_mode"].astype("str"), rows["upper_bound"]], sort=True):
        ax.plot(part["services"], part["rtt_seconds"] * 1e6, linestyle="none", color="black",
                marker="v" if bound else "x", markersize=8,
                label=f"published {mode}" + (" (at most)" if bound else ""))


def plot_overhead(
    overhead: pd.DataFrame,
    fit: pd.DataFrame | None = None,
    services: int | None = None,
    *,
    statistic: str = "p50_us",
    published: pd.DataFrame | None = None,
    ax: Any = None,
) -> Any:
    """Per proxy mode, a connect-time percentile against the number of Services, with the fitted line.

    Parameters
    ----------
    overhead : pandas.DataFrame
        Kind ``overhead`` (``Analysis.sections["overhead"]``): one row per
        (``proxy_mode``, ``services``) step.
    fit : pandas.DataFrame, optional
        Kind ``overhead_fit`` (``Analysis.sections["overhead_fit"]``): the rows
        of ``statistic`` are drawn as a dashed line per mode from 0 to the
        largest Service count (or ``services``).
    services : int, optional
        The user's Service count: a vertical line labelled ``"your N services"``.
    statistic : str
        The column to plot (``p50_us``, ``p90_us``, ``p99_us`` ...).
    published : pandas.DataFrame, optional
        Kind ``published_latency`` (e.g.
        :func:`npanalytics.analysis.published.kep3866_first_packet`): its rows at
        the statistic's quantile are drawn as black markers per published mode
        (``x``; ``v`` where the source gives only an upper bound), labelled
        ``"published <mode>"``.
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        Lines labelled ``"<mode>"`` (measured) and ``"<mode> fit (<slope> ns/service)"``.
    """
    validate_frame(overhead, "overhead")
    if fit is not None:
        validate_frame(fit, "overhead_fit")
    check_option("statistic", statistic, STATISTICS)
    ax = axes(ax)
    x_max = float(max(overhead["services"].max() if len(overhead) else 0, services or 0))
    colors: dict[str, str] = {}
    for mode, part in overhead.groupby(overhead["proxy_mode"].astype("str"), sort=True):
        part = part.sort_values("services")
        (line,) = ax.plot(part["services"], part[statistic], marker="o", label=mode)
        colors[mode] = line.get_color()
    if fit is not None:
        rows = fit[fit["statistic"].astype("str") == statistic]
        for row in rows.itertuples(index=False):
            if pd.isna(row.slope_ns_per_service) or pd.isna(row.intercept_us):
                continue
            xs = np.array([0.0, x_max])
            ys = row.intercept_us + row.slope_ns_per_service * xs / 1e3
            ax.plot(xs, ys, linestyle="--", color=colors.get(str(row.proxy_mode), "0.3"),
                    label=f"{row.proxy_mode} fit ({row.slope_ns_per_service:.2f} ns/service)")
    if published is not None:
        _published(ax, published, statistic)
    if services is not None:
        ax.axvline(services, color="crimson", linestyle=":", label=f"your {services:,} services")
    ax.set_xlabel("Services (ports) programmed on the node")
    ax.set_ylabel(f"connect time {statistic.split('_')[0]} (µs)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title("first-packet cost by proxy mode")
    ax.legend(loc="upper left", fontsize="small")
    return ax
