"""Pure analysis: frames in, frames (or an :class:`Analysis`) out; no I/O.

One module per question: :mod:`.load` (load per backend, NodePort path),
:mod:`.expected` (what the configuration predicts), :mod:`.skew` (how uneven, and
whether the model explains it), :mod:`.attribution` (why), and the topic modules
(affinity, long-lived connections, proxy overhead, conntrack pressure, diagnostics).
:func:`analyze` runs all a dataset allows.
"""

from .analyze import analyze
from .result import FINDING_CODES, SEVERITIES, Analysis

__all__ = ["Analysis", "FINDING_CODES", "SEVERITIES", "analyze"]
