"""The client -> node -> pod flow diagram: layered boxes joined by lines as wide as their share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._common import axes, check_option

__all__ = ["plot_flow_diagram"]

MAX_LINE_WIDTH = 24.0
"""Line width (points) of a link that carries all the traffic."""


def _positions(labels: Sequence[str]) -> dict[str, float]:
    """Evenly spaced heights in (0, 1), first label on top."""
    n = len(labels)
    return {label: 1.0 - (i + 0.5) / n for i, label in enumerate(labels)}


_DEFAULTS = (
    # (columns that identify the frame, layers, weight)
    (("entry_node", "backend_node", "path"), ("entry_node", "backend_node"), "connections"),  # node_path
    (("entry_node", "pod", "measure", "value"), ("entry_node", "node", "pod"), "value"),  # backend_load
    ((), ("client", "node", "pod"), "connections"),  # ground_truth and the like
)


def _defaults(paths: pd.DataFrame) -> tuple[list[str], str]:
    for marks, layers, weight in _DEFAULTS:
        if all(m in paths.columns for m in marks):
            return list(layers), weight
    raise AssertionError("unreachable: the last default matches every frame")


def _check_one_kind_of_load(paths: pd.DataFrame) -> None:
    """A ``backend_load`` frame must hold one source and one measure: they do not add up."""
    for column in ("source", "measure"):
        if column in paths.columns and "value" in paths.columns and paths[column].nunique() > 1:
            values = sorted(str(v) for v in paths[column].dropna().unique())
            raise ValueError(
                f"plot_flow_diagram: the paths mix {column}s {values}; select one "
                f"(paths[paths['{column}'] == ...]) first"
            )


def plot_flow_diagram(
    paths: pd.DataFrame,
    service_port_name: str | None = None,
    *,
    layers: Sequence[str] | None = None,
    weight: str | None = None,
    max_line_width: float = MAX_LINE_WIDTH,
    ax: Any = None,
) -> Any:
    """A layered diagram of where traffic went: one column per layer, one line per link.

    Parameters
    ----------
    paths : pandas.DataFrame
        One row per path with a column per layer and a ``weight`` column. Rows
        with a missing label are drawn under ``"(unknown)"``, never dropped.
    service_port_name : str, optional
        Draw only the rows of this Service port (``paths`` needs a
        ``service_port_name`` column); default every row.
    layers : sequence of str, optional
        The columns, left to right (at least two). Default by the frame:
        ``node_path`` (``Analysis.sections["node_path"]``): entry node -> backend
        node; ``backend_load`` (one source and measure): entry node -> node ->
        pod; otherwise client -> node -> pod (e.g. ``ground_truth``).
    weight : str, optional
        The column whose sum over a link sets its line width; default
        ``connections`` (``value`` for ``backend_load``).
    max_line_width : float
        Width (points) of a link that carries all the weight.
    ax : matplotlib.axes.Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.axes.Axes
        Each link is a line with ``gid="<layer>:<from> -> <layer>:<to>"`` and a
        width of ``max_line_width`` times its share of the total weight; each
        box is a text label.
    """
    if service_port_name is not None:
        if "service_port_name" not in paths.columns:
            raise ValueError("plot_flow_diagram: service_port_name given but paths has no service_port_name column")
        check_option("service_port_name", service_port_name,
                     sorted(str(v) for v in paths["service_port_name"].dropna().unique()))
        paths = paths[paths["service_port_name"].astype("str") == service_port_name]
    default_layers, default_weight = _defaults(paths)
    layers = default_layers if layers is None else list(layers)
    weight = default_weight if weight is None else weight
    _check_one_kind_of_load(paths)
    missing = [c for c in [*layers, weight] if c not in paths.columns]
    if len(layers) < 2:
        raise ValueError(f"plot_flow_diagram needs at least two layers; got {layers!r}")
    if missing:
        raise ValueError(f"plot_flow_diagram: paths has no column(s) {missing}; columns: {list(paths.columns)}")
    labels = paths[layers].astype("str").where(paths[layers].notna(), "(unknown)")
    weights = pd.to_numeric(paths[weight], errors="raise").astype("float64").fillna(0.0)
    if (weights < 0).any():
        raise ValueError(f"plot_flow_diagram: {weight!r} has negative values")
    total = float(weights.sum())
    ax = axes(ax)
    heights = [_positions(sorted(labels[layer].unique())) for layer in layers]
    for i in range(len(layers) - 1):
        left, right = layers[i], layers[i + 1]
        links = weights.groupby([labels[left], labels[right]], sort=True).sum()
        for (a, b), w in links.items():
            if w <= 0:
                continue
            ax.plot([i, i + 1], [heights[i][a], heights[i + 1][b]], color="tab:blue", alpha=0.45,
                    solid_capstyle="butt", linewidth=max_line_width * w / total,
                    gid=f"{left}:{a} -> {right}:{b}")
    for i, layer in enumerate(layers):
        for label, y in heights[i].items():
            ax.text(i, y, label, ha="center", va="center", fontsize="small", gid=f"{layer}:{label}",
                    bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.4"})
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    what = weight
    if "measure" in paths.columns and paths["measure"].nunique() == 1:
        what = str(paths["measure"].dropna().iloc[0])
    ax.set_title(f"where the {what} went" + (f": {service_port_name}" if service_port_name else ""))
    return ax
