"""Proxy-mode overhead: connect time against the Service count per mode, with the fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._common import axes, check_option

__all__ = ["plot_overhead"]

_SCALE = {"_us": 1.0, "_seconds": 1e6}
"""Factor to microseconds by column suffix."""


def _to_us(column: str) -> float:
    for suffix, factor in _SCALE.items():
        if column.endswith(suffix):
            return factor
    raise ValueError(f"plot_overhead: {column!r} has no time unit suffix (_us or _seconds)")


def _quantile(statistic: str) -> float:
    digits = statistic.split("_")[0].lstrip("p")
    if not digits.isdigit():
        raise ValueError(f"plot_overhead: cannot tell the quantile of {statistic!r} (expected p<NN>_...)")
    return int(digits) / 10 ** len(digits)


def _published(ax: Any, published: pd.DataFrame, statistic: str) -> None:
    validate_frame(published, "published_latency")
    rows = published[np.isclose(published["quantile"], _quantile(statistic))]
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
        One row per (``proxy_mode``, ``services``) step with the ``statistic``
        column (``Analysis.sections["overhead"]``, as made by the sweep summary).
    fit : pandas.DataFrame, optional
        One row per (``proxy_mode``, ``statistic``) with ``slope_ns_per_service``
        and ``intercept_us`` (``Analysis.sections["overhead_fit"]``): drawn as a
        dashed line per mode over the plotted range and up to ``services``.
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
    for column in ("proxy_mode", "services"):
        if column not in overhead.columns:
            raise ValueError(f"plot_overhead: overhead has no {column!r} column; columns: {list(overhead.columns)}")
    check_option("statistic", statistic, [c for c in overhead.columns if c.endswith(tuple(_SCALE))])
    factor = _to_us(statistic)
    ax = axes(ax)
    x_max = float(max(overhead["services"].max() if len(overhead) else 0, services or 0))
    colors: dict[str, str] = {}
    for mode, part in overhead.groupby(overhead["proxy_mode"].astype("str"), sort=True):
        part = part.sort_values("services")
        (line,) = ax.plot(part["services"], part[statistic] * factor, marker="o", label=mode)
        colors[mode] = line.get_color()
    if fit is not None and len(fit):
        rows = fit[fit["statistic"].astype("str") == statistic] if "statistic" in fit.columns else fit
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
