"""The client -> node -> pod flow diagram: layered boxes joined by lines as wide as their share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._common import axes

__all__ = ["plot_flow_diagram"]

MAX_LINE_WIDTH = 24.0
"""Line width (points) of a link that carries all the traffic."""


def _positions(labels: Sequence[str]) -> dict[str, float]:
    """Evenly spaced heights in (0, 1), first label on top."""
    n = len(labels)
    return {label: 1.0 - (i + 0.5) / n for i, label in enumerate(labels)}


def plot_flow_diagram(
    paths: pd.DataFrame,
    *,
    layers: Sequence[str] = ("client", "node", "pod"),
    weight: str = "connections",
    max_line_width: float = MAX_LINE_WIDTH,
    ax: Any = None,
) -> Any:
    """A layered diagram of where traffic went: one column per layer, one line per link.

    Parameters
    ----------
    paths : pandas.DataFrame
        One row per path with a column per layer and a ``weight`` column: for
        example ``Analysis.sections["node_path"]`` (entry node -> serving node ->
        pod) or a ``ground_truth`` frame (client -> node -> pod, weight
        ``connections`` or ``requests``). Rows with a missing label are drawn
        under ``"(unknown)"``, never dropped.
    layers : sequence of str
        The columns, left to right (at least two).
    weight : str
        The column whose sum over a link sets its line width.
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
    layers = list(layers)
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
    ax.set_title(f"where the {weight} went")
    return ax
