"""Helpers shared by the plot functions: the soft matplotlib import, axes and row selection.

Nothing here computes a statistic: rows are selected from finished results and
handed to matplotlib as they are.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..schemas import validate_frame

SOURCES = ("conntrack", "rules", "metrics", "ground_truth")
"""Skew sources, in the order a plot picks one when none is given."""

GROUPS = ("pod", "node", "zone", "endpoint")
"""Skew groupings, in the order a plot picks one when none is given."""


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "npanalytics.plotting needs matplotlib: pip install 'npanalytics[plot]'"
        ) from err
    return plt


def axes(ax: Any = None) -> Any:
    """``ax``, or the current Axes of a new figure when ``ax`` is None."""
    if ax is not None:
        return ax
    _, new = pyplot().subplots()
    return new


def check_option(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ValueError naming the parameter, the allowed values and a close match."""
    if value in allowed:
        return
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(repr(a) for a in allowed) or "(none)"
    raise ValueError(f"{name} must be one of {shown}; got {value!r}{hint}")


def _pick(frame: pd.DataFrame, column: str, value: Any, preference: Sequence[str], name: str) -> Any:
    present = [str(v) for v in frame[column].dropna().unique()]
    if value is None:
        for candidate in preference:
            if candidate in present:
                return candidate
        if present:
            return sorted(present)[0]
        return None
    check_option(name, str(value), sorted(present))
    return str(value)


def select_skew(
    skew: pd.DataFrame,
    service_port_name: str,
    *,
    source: str | None = None,
    group: str | None = None,
    window_start: Any = "all",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows of a ``skew`` (or ``skew_summary``) frame for one Service port, source and grouping.

    Parameters
    ----------
    skew : pandas.DataFrame
        Kind ``skew`` or ``skew_summary`` (recognised by its columns).
    service_port_name : str
        The Service port (``namespace/service:port_name``).
    source, group : str, optional
        Default: the first present in :data:`SOURCES` / :data:`GROUPS`.
    window_start : timestamp, None or ``"all"``
        ``"all"`` keeps every window; None keeps the whole-recording rows (NaT),
        or the only window if there is just one; a timestamp keeps that window.

    Returns
    -------
    (pandas.DataFrame, dict)
        The rows, and the choices made (``source``, ``group``).

    Raises
    ------
    ValueError
        When the Service port, source, group or window is not in the frame.
    """
    kind = "skew" if "share" in skew.columns else "skew_summary"
    validate_frame(skew, kind)
    names = sorted(str(v) for v in skew["service_port_name"].dropna().unique())
    check_option("service_port_name", service_port_name, names)
    rows = skew[skew["service_port_name"].astype("str") == service_port_name]
    source = _pick(rows, "source", source, SOURCES, "source")
    rows = rows[rows["source"].astype("str") == source]
    group = _pick(rows, "group", group, GROUPS, "group")
    rows = rows[rows["group"].astype("str") == group]
    if isinstance(window_start, str) and window_start == "all":
        return rows, {"source": source, "group": group}
    if window_start is None:
        snapshot = rows[rows["window_start"].isna()]
        windows = rows["window_start"].dropna().unique()
        if snapshot.empty and len(windows) == 1:
            snapshot = rows
        if snapshot.empty and len(windows) > 1:
            raise ValueError(
                f"{service_port_name} ({source}, {group}) has {len(windows)} windows and no "
                "whole-recording row; pass window_start"
            )
        return snapshot, {"source": source, "group": group}
    stamp = pd.Timestamp(window_start)
    if stamp.tzinfo is None:
        raise ValueError(f"window_start must be timezone-aware (UTC); got {window_start!r}")
    picked = rows[rows["window_start"] == stamp]
    if picked.empty:
        shown = ", ".join(str(w) for w in rows["window_start"].dropna().unique()[:5])
        raise ValueError(f"no window starting at {stamp} for {service_port_name}; windows: {shown}")
    return picked, {"source": source, "group": group}
