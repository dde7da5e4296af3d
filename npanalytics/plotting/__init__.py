"""Plots of finished results: results in, ``ax=None``, the Axes out.

Nothing here computes a statistic: every function draws the rows of a result
(``Analysis.skew``, ``Analysis.sections[...]``) as they are. Needs matplotlib
(``pip install 'npanalytics[plot]'``); ``import npanalytics`` does not import it.
"""

from .affinity import plot_affinity
from .flow import plot_flow_diagram
from .overhead import plot_overhead
from .pressure import plot_conntrack_pressure
from .skew import plot_lorenz, plot_share_vs_expected, plot_shares_over_time

__all__ = [
    "plot_share_vs_expected",
    "plot_lorenz",
    "plot_flow_diagram",
    "plot_shares_over_time",
    "plot_overhead",
    "plot_conntrack_pressure",
    "plot_affinity",
]
