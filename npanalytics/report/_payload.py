"""The report's numbers as plain JSON values: one payload that every format renders.

Nothing is computed here: frames of the :class:`~npanalytics.analysis.result.Analysis`
are turned into records (NaN, NA and NaT become ``None``; timestamps ISO 8601 UTC
strings) and counted. The HTML and Markdown templates format these same values,
so the three formats show the same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.result import SEVERITIES, Analysis
from ..schemas import SCHEMAS, validate_frame

__all__ = ["PAYLOAD_FORMAT", "PAYLOAD_VERSION", "SECTION_ORDER", "report_payload", "frame_records", "json_value"]

PAYLOAD_FORMAT = "npanalytics-report"
"""Value of the JSON report's ``format`` key."""

PAYLOAD_VERSION = 1
"""Value of the JSON report's ``format_version`` key; bumped when a key changes meaning."""

SECTION_ORDER = ("affinity", "long_lived", "overhead", "overhead_fit", "control_plane", "conntrack_pressure",
                 "node_path", "load")
"""The topic sections of :attr:`Analysis.sections`, in report order (others follow, sorted)."""


def json_value(value: Any) -> Any:
    """One cell as a JSON value: ``None`` for every kind of missing, ISO text for time.

    Parameters
    ----------
    value : object
        A cell of a frame, or a value of the manifest.

    Returns
    -------
    object
        ``None``, ``bool``, ``int``, ``float`` (finite), ``str``, ``list`` or ``dict``.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, pd.Timestamp):
        return _iso(value.to_pydatetime())
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return pd.Timedelta(value).total_seconds()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [json_value(v) for v in value]
    return str(value)


def _iso(stamp: dt.datetime) -> str:
    if stamp.tzinfo is None:
        return stamp.isoformat()
    return stamp.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON records, keys in column order, missing values ``None``."""
    columns = [str(c) for c in df.columns]
    values = [df[c].astype("object").to_numpy() for c in df.columns]
    return [{col: json_value(vals[i]) for col, vals in zip(columns, values)} for i in range(len(df))]


def _severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    severities = findings["severity"].astype("str")
    return {level: int((severities == level).sum()) for level in SEVERITIES}


def _section_names(analysis: Analysis) -> list[str]:
    known = [name for name in SECTION_ORDER if name in analysis.sections]
    return known + sorted(set(analysis.sections) - set(SECTION_ORDER))


def report_payload(analysis: Analysis, *, generated: dt.datetime) -> dict[str, Any]:
    """Everything the report shows, as JSON values (the ``.json`` report is this dict).

    Parameters
    ----------
    analysis : Analysis
        The result of :func:`npanalytics.analyze`.
    generated : datetime.datetime
        When the report was made (timezone-aware).

    Returns
    -------
    dict
        Keys, always present and in this order:

        ``format`` (``"npanalytics-report"``), ``format_version`` (int),
        ``generated_utc`` (ISO 8601), ``npanalytics_version``,
        ``dataset`` (``name``, ``description``, ``recorded_utc`` from the manifest; None when absent),
        ``summary`` (``findings_by_severity``: count per severity, ``worst_severity``:
        the most severe present or None, ``service_ports``: Service ports in ``skew_summary``,
        ``sections``: topics computed, ``missing``: topics not computed),
        ``findings``, ``skew_summary``, ``skew`` (records of those frames, columns as in
        :mod:`npanalytics.schemas`), ``sections`` (topic -> records), ``missing``
        (topic -> what is missing and how to collect it), ``provenance`` (the manifest).
        Missing numbers (NaN, NA, NaT) are ``null``.

    Raises
    ------
    SchemaError
        When ``findings``, ``skew``, ``skew_summary`` or a section named after a frame
        kind (``affinity``, ``overhead``, ...) does not follow its kind.
    """
    from .. import __version__

    if generated.tzinfo is None:
        raise ValueError(f"generated must be timezone-aware (UTC); got {generated!r}")
    findings = validate_frame(analysis.findings, "findings")
    skew = validate_frame(analysis.skew, "skew")
    summary = validate_frame(analysis.skew_summary, "skew_summary")
    counts = _severity_counts(findings)
    worst = next((level for level in SEVERITIES if counts[level]), None)
    provenance = json_value(dict(analysis.provenance))
    recording = provenance.get("recording") if isinstance(provenance.get("recording"), dict) else {}
    sections = _section_names(analysis)
    for name in sections:
        if name in SCHEMAS:  # the topic sections are frame kinds of the same name
            validate_frame(analysis.sections[name], name)
    return {
        "format": PAYLOAD_FORMAT,
        "format_version": PAYLOAD_VERSION,
        "generated_utc": _iso(generated),
        "npanalytics_version": __version__,
        "dataset": {
            "name": provenance.get("name"),
            "description": provenance.get("description"),
            "recorded_utc": recording.get("recorded_utc"),
        },
        "summary": {
            "findings_by_severity": counts,
            "worst_severity": worst,
            "service_ports": int(summary["service_port_name"].nunique()),
            "sections": sections,
            "missing": sorted(analysis.missing),
        },
        "findings": frame_records(findings),
        "skew_summary": frame_records(summary),
        "skew": frame_records(skew),
        "sections": {name: frame_records(analysis.sections[name]) for name in sections},
        "missing": {str(k): str(v) for k, v in sorted(analysis.missing.items())},
        "provenance": provenance,
    }
