"""Session affinity: per client, its flows and how many of them went to its top backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..schemas import validate_frame
from ._common import axes, check_option

__all__ = ["plot_affinity"]

TOP_LABEL = "flows pinned (to the busiest backend of their entry node)"
REST_LABEL = "flows elsewhere"


def plot_affinity(affinity: pd.DataFrame, service_port_name: str, *, ax: Any = None) -> Any:
    """Horizontal bars per client of a Service port: flows on its top backend, and the rest.

    Parameters
    ----------
    affinity : pandas.DataFrame
        Kind ``affinity`` (``Analysis.sections["affinity"]``).
    service_port_name : str
        The Service port.
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        One bar per client, busiest on top, split into ``flows x
        pinned_share`` (dark) and the rest (light), labelled with the backend
        that got most of the client's flows; the title gives the effective and actual number of clients from
        the frame.
    """
    validate_frame(affinity, "affinity")
    check_option("service_port_name", service_port_name,
                 sorted(str(v) for v in affinity["service_port_name"].dropna().unique()))
    rows = affinity[affinity["service_port_name"].astype("str") == service_port_name]
    rows = rows.sort_values(["flows", "client"], ascending=[True, False])
    flows = rows["flows"].to_numpy(dtype="float64")
    on_top = flows * rows["pinned_share"].to_numpy(dtype="float64")
    y = np.arange(len(rows))
    ax = axes(ax)
    ax.barh(y, on_top, color="tab:purple", label=TOP_LABEL)
    ax.barh(y, flows - on_top, left=on_top, color="tab:purple", alpha=0.3, label=REST_LABEL)
    for yi, width, backend in zip(y, flows, rows["top_backend"].astype("str")):
        ax.annotate(f"most to {backend}", (width, yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize="small")
    ax.set_yticks(y, [str(c) for c in rows["client"]])
    ax.set_xlabel("conntrack flows")
    ax.set_ylabel("client address")
    first = rows.iloc[-1] if len(rows) else None
    title = service_port_name
    if first is not None:
        title += (f": {first['effective_clients']:.1f} effective of {int(first['service_clients'])} clients"
                  f" (affinity {first['session_affinity']})")
    ax.set_title(title)
    ax.margins(x=0.15)
    if len(rows):
        ax.legend(loc="lower right", fontsize="small")
    return ax
