"""Plots of the skew results: share against expected, Lorenz curve, shares over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._common import axes, select_skew

__all__ = ["plot_share_vs_expected", "plot_lorenz", "plot_shares_over_time"]

OBSERVED_LABEL = "observed share (95 % CI)"
EXPECTED_LABEL = "expected share"
EXPECTED_RANGE_LABEL = "expected range (95 %)"


def _title(service_port_name: str, chosen: dict[str, Any]) -> str:
    return f"{service_port_name} by {chosen['group']} ({chosen['source']})"


def plot_share_vs_expected(
    skew: pd.DataFrame,
    service_port_name: str,
    *,
    source: str | None = None,
    group: str | None = None,
    window_start: Any = None,
    ax: Any = None,
) -> Any:
    """Bars of each backend's observed share with its interval, beside the expected share.

    Parameters
    ----------
    skew : pandas.DataFrame
        Kind ``skew`` (``Analysis.skew``).
    service_port_name : str
        The Service port to plot (``namespace/service:port_name``).
    source : str, optional
        ``conntrack``, ``rules``, ``metrics`` or ``ground_truth``; default the
        first present in that order.
    group : str, optional
        ``pod``, ``node``, ``zone`` or ``endpoint``; default the first present.
    window_start : timestamp, optional
        The window; default the whole-recording rows (or the only window).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        One bar per backend (label ``"observed share (95 % CI)"``) with whiskers
        from ``share_ci_low`` to ``share_ci_high``; a grey box from
        ``expected_low`` to ``expected_high`` and a black tick at
        ``expected_share`` where a model applies (NaN: not drawn).
    """
    rows, chosen = select_skew(skew, service_port_name, source=source, group=group, window_start=window_start)
    rows = rows.sort_values("backend", key=lambda s: s.astype("str"))
    ax = axes(ax)
    x = np.arange(len(rows))
    share = rows["share"].to_numpy(dtype="float64")
    low = rows["share_ci_low"].to_numpy(dtype="float64")
    high = rows["share_ci_high"].to_numpy(dtype="float64")
    whiskers = np.vstack([np.clip(share - low, 0, None), np.clip(high - share, 0, None)])
    ax.bar(x, share, width=0.6, yerr=whiskers, capsize=4, color="tab:blue", alpha=0.8,
           label=OBSERVED_LABEL, error_kw={"label": "_observed CI"})
    expected = rows["expected_share"].to_numpy(dtype="float64")
    has_model = ~np.isnan(expected)
    if has_model.any():
        exp_low = rows["expected_low"].to_numpy(dtype="float64")[has_model]
        exp_high = rows["expected_high"].to_numpy(dtype="float64")[has_model]
        ax.bar(x[has_model], exp_high - exp_low, bottom=exp_low, width=0.8, color="0.6", alpha=0.35,
               label=EXPECTED_RANGE_LABEL, zorder=0)
        ax.hlines(expected[has_model], x[has_model] - 0.4, x[has_model] + 0.4, colors="black",
                  linewidth=2, label=EXPECTED_LABEL)
    ax.set_xticks(x, [str(b) for b in rows["backend"]], rotation=30 if len(rows) > 6 else 0)
    ax.set_xlabel(chosen["group"])
    ax.set_ylabel("share of connections")
    ax.set_ylim(0, max(1.0, float(np.nanmax(high)) if len(high) else 1.0) * 1.05)
    ax.set_title(_title(service_port_name, chosen))
    if len(rows):
        ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_lorenz(
    skew_or_loads: pd.DataFrame | pd.Series | Sequence[float] | np.ndarray,
    service_port_name: str | None = None,
    *,
    summary: pd.DataFrame | None = None,
    source: str | None = None,
    group: str | None = None,
    window_start: Any = None,
    label: str | None = None,
    ax: Any = None,
) -> Any:
    """The Lorenz curve of the loads of a Service port's backends, with the line of equality.

    Parameters
    ----------
    skew_or_loads : pandas.DataFrame or array-like
        Kind ``skew`` (the ``observed`` loads of the selected rows are drawn), or
        the loads themselves (one number per backend).
    service_port_name : str, optional
        Required with a ``skew`` frame.
    summary : pandas.DataFrame, optional
        Kind ``skew_summary``: its ``gini`` for the same Service port, source,
        grouping and window is shown in the legend (nothing is computed here).
    source, group, window_start
        As in :func:`plot_share_vs_expected`.
    label : str, optional
        Legend label of the curve; default the Service port (or ``"loads"``).
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        The curve goes from (0, 0) through one point per backend, smallest load
        first, to (1, 1); the diagonal is labelled ``"equality"``.
    """
    chosen: dict[str, Any] = {"source": source, "group": group}
    if isinstance(skew_or_loads, pd.DataFrame):
        if service_port_name is None:
            raise ValueError("plot_lorenz needs service_port_name with a skew frame")
        rows, chosen = select_skew(skew_or_loads, service_port_name, source=source, group=group,
                                   window_start=window_start)
        loads = rows["observed"].to_numpy(dtype="float64")
    else:
        loads = np.asarray(skew_or_loads, dtype="float64")
    if loads.ndim != 1 or (loads < 0).any() or np.isnan(loads).any():
        raise ValueError("plot_lorenz needs one non-negative load per backend")
    ordered = np.sort(loads)
    total = ordered.sum()
    x = np.linspace(0.0, 1.0, len(ordered) + 1)
    y = np.concatenate([[0.0], np.cumsum(ordered) / total]) if total > 0 else x
    text = label or service_port_name or "loads"
    if summary is not None and service_port_name is not None:
        srows, _ = select_skew(summary, service_port_name, source=chosen["source"], group=chosen["group"],
                               window_start=window_start)
        if len(srows) == 1 and not pd.isna(srows["gini"].iloc[0]):
            text += f" (Gini {float(srows['gini'].iloc[0]):.3f})"
    ax = axes(ax)
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", label="equality")
    ax.plot(x, y, marker="o", label=text)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("cumulative share of backends (least loaded first)")
    ax.set_ylabel("cumulative share of load")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def _churn_rows(churn: pd.DataFrame, service_port_name: str) -> pd.DataFrame:
    validate_frame(churn, "endpoint_churn")
    namespace, _, rest = service_port_name.partition("/")
    service = rest.split(":", 1)[0]
    mine = (churn["namespace"].astype("str") == namespace) & (churn["service"].astype("str") == service)
    return churn[mine].sort_values("timestamp")


def plot_shares_over_time(
    skew: pd.DataFrame,
    service_port_name: str,
    churn: pd.DataFrame | None = None,
    *,
    source: str | None = None,
    group: str | None = None,
    ax: Any = None,
) -> Any:
    """Each backend's share per window as a line with its interval band; endpoint churn as vertical lines.

    Parameters
    ----------
    skew : pandas.DataFrame
        Kind ``skew``; only its windowed rows (``window_start`` set) are drawn, and
        the default source and grouping are chosen among them.
    service_port_name : str
        The Service port.
    churn : pandas.DataFrame, optional
        Kind ``endpoint_churn``: a dotted vertical line at each change of an
        endpoint of this Service (labelled ``"<event> <address>"``).
    source, group : str, optional
        As in :func:`plot_share_vs_expected`.
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        One line per backend (label = backend), x = ``window_start``.
    """
    validate_frame(skew, "skew")
    windowed = skew[skew["window_start"].notna()]
    if not (windowed["service_port_name"].astype("str") == service_port_name).any():
        raise ValueError(
            f"{service_port_name} has no windowed skew rows (windows come from recordings with events); "
            "plot_share_vs_expected shows the whole recording"
        )
    rows, chosen = select_skew(windowed, service_port_name, source=source, group=group, window_start="all")
    rows = rows.sort_values("window_start")
    ax = axes(ax)
    for backend, part in rows.groupby(rows["backend"].astype("str"), sort=True):
        when = part["window_start"].dt.tz_convert("UTC").dt.tz_localize(None)
        (line,) = ax.plot(when, part["share"], marker=".", label=backend)
        ax.fill_between(when, part["share_ci_low"], part["share_ci_high"], color=line.get_color(), alpha=0.2)
    if churn is not None:
        for change in _churn_rows(churn, service_port_name).itertuples(index=False):
            when = pd.Timestamp(change.timestamp).tz_convert("UTC").tz_localize(None)
            ax.axvline(when, color="black", linestyle=":", linewidth=1, label=f"_{change.event} {change.address}",
                       gid=f"churn {change.event} {change.address}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("window start (UTC)")
    ax.set_ylabel("share of connections")
    ax.set_title(_title(service_port_name, chosen))
    if len(rows):
        ax.legend(loc="upper right", fontsize="small")
    return ax
