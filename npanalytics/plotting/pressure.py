"""Conntrack pressure: table use per node against its maximum, with the steady-state forecast."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._common import axes

__all__ = ["plot_conntrack_pressure"]

ENTRIES_LABEL = "entries now"
FORECAST_LABEL = "steady-state forecast"
MAX_LABEL = "nf_conntrack_max"


def plot_conntrack_pressure(pressure: pd.DataFrame, *, forecast: bool = True, ax: Any = None) -> Any:
    """Per node, conntrack entries now and forecast, against ``nf_conntrack_max``.

    Parameters
    ----------
    pressure : pandas.DataFrame
        Kind ``conntrack_pressure`` (``Analysis.sections["conntrack_pressure"]``):
        ``entries``, ``max_entries`` and ``forecast_entries`` per node (a NaN
        forecast is not drawn).
    forecast : bool
        Draw the steady-state forecast.
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        Horizontal bars per node: ``"entries now"`` (solid), ``"steady-state
        forecast"`` (hatched, behind) and a red tick at the maximum of each node
        (label ``"nf_conntrack_max"``). Nodes sorted by name.
    """
    validate_frame(pressure, "conntrack_pressure")
    rows = pressure.sort_values("node", key=lambda s: s.astype("str"))
    y = np.arange(len(rows))
    ax = axes(ax)

    def values(column: str) -> np.ndarray:
        return pd.to_numeric(rows[column]).astype("float64").to_numpy()

    if forecast:
        ax.barh(y, np.nan_to_num(values("forecast_entries")), height=0.7, color="none", edgecolor="tab:orange",
                hatch="//", label=FORECAST_LABEL)
    ax.barh(y, np.nan_to_num(values("entries")), height=0.45, color="tab:blue", label=ENTRIES_LABEL)
    ax.vlines(values("max_entries"), y - 0.4, y + 0.4, colors="crimson", linewidth=3, label=MAX_LABEL)
    ax.set_yticks(y, ["(node)" if pd.isna(n) else str(n) for n in rows["node"]])
    ax.set_xlabel("conntrack entries")
    ax.set_xlim(left=0)
    ax.set_title("conntrack table use")
    if len(rows):
        ax.legend(loc="lower right", fontsize="small")
    return ax
