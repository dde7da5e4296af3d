"""Figures of the report, drawn by :mod:`npanalytics.plotting` and embedded as base64 PNG.

matplotlib is imported here, lazily, and only through ``matplotlib.figure.Figure``
(no pyplot, no GUI backend): PNGs are drawn with Agg. A figure that cannot be drawn
(a result without the columns a plot needs) is not dropped silently: the report shows
the error in its place.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable
from typing import Any

import pandas as pd

__all__ = ["Figure", "draw", "skew_figure", "section_figure"]

DPI = 96
"""Resolution of the embedded PNGs (dots per inch)."""


@dataclasses.dataclass
class Figure:
    """One embedded figure: a ``data:image/png;base64,...`` URI, or the error that stopped it.

    Attributes
    ----------
    title : str
        Caption (and alt text).
    data_uri : str or None
        The PNG as a data URI.
    error : str or None
        Why it could not be drawn.
    """

    title: str
    data_uri: str | None = None
    error: str | None = None


def _new_figure(ncols: int, width: float, height: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def draw(title: str, painter: Callable[[list[Any]], None], *, ncols: int = 1,
         width: float = 6.4, height: float = 3.6) -> Figure:
    """Run ``painter(axes)`` on a new figure and return it as an embedded PNG.

    Parameters
    ----------
    title : str
        Caption of the figure.
    painter : callable
        Draws on the list of ``ncols`` Axes (calls the plotting functions).
    ncols : int
        Axes side by side.
    width, height : float
        Figure size in inches.

    Returns
    -------
    Figure
        With ``data_uri`` set, or ``error`` set to ``"<ExceptionType>: <message>"``
        when the painter raised ``ValueError``, ``KeyError`` or ``TypeError``.
    """
    fig, axes = _new_figure(ncols, width, height)
    buffer = io.BytesIO()
    try:
        painter(axes)
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    except (ValueError, KeyError, TypeError) as exc:  # e.g. a column missing, mathtext in a label
        return Figure(title, error=f"{type(exc).__name__}: {exc}")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Figure(title, data_uri=f"data:image/png;base64,{encoded}")


def _window(skew: pd.DataFrame, service_port_name: str) -> Any:
    """The whole-recording window (None) when the Service port has one, else its latest window."""
    windows = skew.loc[skew["service_port_name"].astype("str") == service_port_name, "window_start"]
    if windows.isna().any() or windows.empty:
        return None
    return windows.max()


def skew_figure(skew: pd.DataFrame, summary: pd.DataFrame, service_port_name: str) -> Figure:
    """Share against expected, beside the Lorenz curve, of one Service port."""
    from ..plotting import plot_lorenz, plot_share_vs_expected

    window = _window(skew, service_port_name)
    summarised = (summary["service_port_name"].astype("str") == service_port_name).any()

    def paint(axes: list[Any]) -> None:
        plot_share_vs_expected(skew, service_port_name, window_start=window, ax=axes[0])
        plot_lorenz(skew, service_port_name, summary=summary if summarised else None,
                    window_start=window, ax=axes[1])

    title = f"{service_port_name}: observed share against the expected distribution"
    if window is not None:
        title += f" (window from {pd.Timestamp(window).isoformat()})"
    return draw(title, paint, ncols=2, width=10.5, height=3.8)


def section_figure(name: str, sections: dict[str, pd.DataFrame]) -> Figure | None:
    """The figure of a topic section, or None when the topic has no plot."""
    frame = sections[name]
    if frame.empty:
        return None
    if name == "overhead":
        from ..plotting import plot_overhead

        fit = sections.get("overhead_fit")
        return draw("Connect time against the number of Services, per proxy mode",
                    lambda axes: plot_overhead(frame, fit, ax=axes[0]))
    if name == "conntrack_pressure":
        from ..plotting import plot_conntrack_pressure

        return draw("Conntrack entries per node against nf_conntrack_max",
                    lambda axes: plot_conntrack_pressure(frame, ax=axes[0]),
                    height=max(2.0, 0.5 * len(frame) + 1.2))
    if name == "node_path":
        from ..plotting import plot_flow_diagram

        return draw("Where the connections entering each node were served",
                    lambda axes: plot_flow_diagram(frame, ax=axes[0]))
    return None
