"""Render an :class:`~npanalytics.analysis.result.Analysis` as HTML, JSON and Markdown files.

Wiring only: the numbers come from :func:`report_payload`, the figures from
:mod:`npanalytics.plotting`, the layout from the jinja2 templates shipped in
``npanalytics/report/templates/`` (HTML autoescaped: label values from a cluster
are untrusted). Every file is written atomically.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


from ..analysis.result import SEVERITIES, Analysis
from ._figures import Figure, section_figure, skew_figure
from ._payload import report_payload

__all__ = ["REPORT_FORMATS", "render_report", "report_filename", "MAX_TABLE_ROWS", "MAX_SKEW_FIGURES"]

REPORT_FORMATS = ("html", "json", "md")
"""The formats :func:`render_report` writes, by file extension."""

MAX_TABLE_ROWS = 200
"""Rows shown per table in HTML and Markdown; the JSON report holds them all (the table says how many more)."""

MAX_SKEW_FIGURES = 20
"""Service ports with a figure in the HTML report: the most uneven first (``max_mean``); all are tabled."""

SECTION_TEXT: dict[str, tuple[str, str]] = {
    "affinity": (
        "Session affinity",
        "Services with sessionAffinity ClientIP: how the clients, and so the load, stick to backends.",
    ),
    "long_lived": (
        "Long-lived connections",
        "Connections that outlive endpoint changes keep their backend: where they pile up.",
    ),
    "overhead": (
        "Proxy-mode overhead",
        "TCP connect time against the number of Services, per kube-proxy mode, with the fitted cost per Service.",
    ),
    "overhead_fit": ("Proxy-mode overhead: fit", "Per proxy mode, the fitted cost of a Service."),
    "conntrack_pressure": (
        "Conntrack pressure",
        "Per node, conntrack entries now and at the steady state against nf_conntrack_max.",
    ),
    "node_path": (
        "Node path",
        "Per entry node: how much traffic was served locally and how much was forwarded to another node.",
    ),
    "control_plane": (
        "Control plane",
        "Per node and proxy mode: rule loads (syncs) against the rule count, and network programming latency.",
    ),
    "proxy_sync": (
        "Control plane: kube-proxy metrics",
        "Per node and proxy mode: full and partial sync times against the rule count, and network programming "
        "latency against perf-tests' 30 s threshold (the last row, no node, pools the nodes as perf-tests does).",
    ),
    "load": (
        "Load per backend",
        "The load each source attributes to each backend, per window and entry node (what the skew compares).",
    ),
}
"""Title and one-line introduction of each topic section."""

BRIEF_COLUMNS: dict[str, tuple[str, ...]] = {
    "affinity": ("service_port_name", "client", "session_affinity", "flows", "client_share", "top_backend",
                 "pinned_share", "backends", "snat_ratio", "p_value"),
    "long_lived": ("service_port_name", "source", "window", "backend", "connections", "connection_share",
                   "load_share", "expected_share", "starved"),
    "overhead": ("proxy_mode", "services", "attempts", "failures", "p50_us", "p99_us", "load_seconds"),
    "overhead_fit": ("proxy_mode", "statistic", "points", "slope_ns_per_service", "slope_ci_low",
                     "slope_ci_high", "intercept_us", "r_squared"),
    "conntrack_pressure": ("node", "entries", "max_entries", "fill_ratio", "drop", "early_drop",
                           "forecast_entries", "forecast_ratio"),
    "node_path": ("service_port_name", "entry_node", "backend_node", "path", "connections", "share",
                  "snat_connections"),
    "control_plane": ("node", "proxy_mode", "loads", "services", "rules", "load_seconds_median",
                      "load_seconds_max", "seconds_per_1000_rules", "programming_p99_seconds"),
    "proxy_sync": ("node", "proxy_mode", "rules", "syncs", "full_p50_seconds", "full_p99_seconds",
                   "partial_p99_seconds", "programming_p50_seconds", "programming_p90_seconds",
                   "programming_p99_over_time_seconds", "programming_slo_ratio"),
    "load": ("service_port_name", "window_start", "source", "measure", "entry_node", "endpoint_ip", "pod",
             "node", "value"),
}
"""The columns of each section's table in the Markdown report (HTML shows every column)."""

REPORT_SECTIONS = ("affinity", "long_lived", "overhead", "control_plane", "conntrack_pressure", "node_path")
"""Topic sections of the report in order (``overhead_fit`` is shown inside ``overhead``, ``proxy_sync``
inside ``control_plane``)."""

_MISSING_DEFAULT = "the analysis gave no result and no reason for this topic."


# --- formatting shared by HTML and Markdown ---------------------------------------------------

def format_cell(value: Any) -> str:
    """One JSON value of the payload as table text (the same text in HTML and Markdown)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _table(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
           max_rows: int = MAX_TABLE_ROWS) -> dict[str, Any]:
    """``{"columns", "rows" (cells as text), "more" (rows not shown)}`` of some records."""
    if columns is None:
        columns = list(records[0]) if records else []
    shown = records[:max_rows]
    return {
        "columns": list(columns),
        "rows": [[format_cell(r.get(c)) for c in columns] for r in shown],
        "more": max(0, len(records) - len(shown)),
    }


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested manifest values as ``(dotted.key, text)`` rows."""
    if isinstance(value, Mapping) and value:
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return [(prefix, format_cell(value))]


# --- the view: what the templates show, all text --------------------------------------------

def _summary_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    summary = payload["summary"]
    overview = sorted(
        (r for r in payload["skew_summary"] if r["window_start"] is None or len(payload["skew_summary"]) == 1),
        key=lambda r: -(r["max_mean"] if r["max_mean"] is not None else -1.0),
    )
    most_uneven = overview[0] if overview else None
    return {
        "counts": summary["findings_by_severity"],
        "worst": summary["worst_severity"],
        "service_ports": summary["service_ports"],
        "headline": payload["findings"][:3],
        "most_uneven": None if most_uneven is None else {
            "service_port_name": most_uneven["service_port_name"],
            "source": most_uneven["source"],
            "group": most_uneven["group"],
            "max_mean": format_cell(most_uneven["max_mean"]),
            "gini": format_cell(most_uneven["gini"]),
            "p_value": format_cell(most_uneven["p_value"]),
        },
    }


def _findings_view(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    groups = []
    for level in SEVERITIES:
        rows = [r for r in payload["findings"] if r["severity"] == level]
        if rows:
            groups.append({"severity": level, "findings": [
                {k: format_cell(r.get(k)) if r.get(k) is not None else "" for k in
                 ("code", "service", "node", "what", "evidence", "advice")} for r in rows
            ]})
    return groups


_SUMMARY_COLUMNS = ("source", "group", "window_start", "backends", "total", "max_mean", "cv", "gini",
                    "jain", "entropy_norm", "g_statistic", "p_value", "model")
_BACKEND_COLUMNS = ("source", "group", "window_start", "backend", "observed", "share", "share_ci_low",
                    "share_ci_high", "expected_share", "expected_low", "expected_high")


def _skew_view(analysis: Analysis, payload: Mapping[str, Any], figures: bool) -> list[dict[str, Any]]:
    by_port: dict[str, list[dict[str, Any]]] = {}
    rows_by_port: dict[str, list[dict[str, Any]]] = {}
    for row in payload["skew_summary"]:
        by_port.setdefault(row["service_port_name"], []).append(row)
    for row in payload["skew"]:
        by_port.setdefault(row["service_port_name"], [])
        rows_by_port.setdefault(row["service_port_name"], []).append(row)

    def unevenness(name: str) -> float:
        values = [r["max_mean"] for r in by_port[name] if r["max_mean"] is not None]
        return max(values) if values else -1.0

    ports = sorted(by_port, key=lambda n: (-unevenness(n), n))
    view = []
    for i, name in enumerate(ports):
        backends = rows_by_port.get(name, [])
        figure: Figure | None = None
        if figures and backends and i < MAX_SKEW_FIGURES:
            figure = skew_figure(analysis.skew, analysis.skew_summary, name)
        view.append({
            "name": name,
            "summary": _table(by_port[name], _SUMMARY_COLUMNS),
            "backends": _table(backends, _BACKEND_COLUMNS),
            "figure": figure,
        })
    return view


def _section_tables(caption: str, records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A section's table in full (HTML) and with its main columns (Markdown)."""
    full = _table(records)
    wanted = [c for c in BRIEF_COLUMNS.get(name, ()) if c in full["columns"]]
    return {"caption": caption, "full": full, "brief": _table(records, wanted) if wanted else full}


def _section_view(analysis: Analysis, payload: Mapping[str, Any], figures: bool) -> list[dict[str, Any]]:
    names = list(REPORT_SECTIONS) + sorted(
        set(analysis.sections) - set(REPORT_SECTIONS) - {"overhead_fit", "proxy_sync"}
    )
    view = []
    for name in names:
        title, intro = SECTION_TEXT.get(name, (name.replace("_", " ").capitalize(), ""))
        item: dict[str, Any] = {"key": name, "title": title, "intro": intro, "tables": [], "figure": None,
                                "missing": None, "fit_missing": None}
        if name in analysis.sections:
            item["tables"].append(_section_tables("", payload["sections"][name], name))
            if name == "overhead" and "overhead_fit" in analysis.sections:
                item["tables"].append(_section_tables(SECTION_TEXT["overhead_fit"][0],
                                                      payload["sections"]["overhead_fit"], "overhead_fit"))
            if figures:
                item["figure"] = section_figure(name, analysis.sections)
        elif not (name == "control_plane" and "proxy_sync" in analysis.sections):
            item["missing"] = payload["missing"].get(name, _MISSING_DEFAULT)
        if name == "control_plane" and "proxy_sync" in analysis.sections:  # from kube-proxy's metrics
            item["tables"].append(_section_tables(SECTION_TEXT["proxy_sync"][0], payload["sections"]["proxy_sync"],
                                                  "proxy_sync"))
        if name == "overhead" and "overhead" in analysis.sections and "overhead_fit" not in analysis.sections:
            item["fit_missing"] = payload["missing"].get("overhead_fit")
        view.append(item)
    return view


def _provenance_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    manifest = payload["provenance"]
    frames = manifest.get("frames") if isinstance(manifest.get("frames"), Mapping) else {}
    frame_rows = [
        {"frame": name, "kind": meta.get("kind"), "rows": meta.get("rows"), "sha256": meta.get("sha256")}
        for name, meta in frames.items() if isinstance(meta, Mapping)
    ]
    raw = manifest.get("raw") if isinstance(manifest.get("raw"), Mapping) else {}
    recording = _flatten(manifest["recording"]) if manifest.get("recording") else []
    return {
        "name": format_cell(manifest.get("name")),
        "description": format_cell(manifest.get("description")),
        "recording": recording[:MAX_TABLE_ROWS],
        "recording_more": max(0, len(recording) - MAX_TABLE_ROWS),
        "frames": _table(frame_rows, ("frame", "kind", "rows", "sha256")),
        "raw": _table([{"file": k, "sha256": v} for k, v in raw.items()], ("file", "sha256")),
        "other": [(k, format_cell(v)) for k, v in manifest.items()
                  if k not in ("name", "description", "recording", "frames", "raw")],
    }


def _view(analysis: Analysis, payload: Mapping[str, Any], figures: bool) -> dict[str, Any]:
    missing = payload["missing"]
    shown = set(REPORT_SECTIONS) | {"overhead_fit", "proxy_sync"}
    return {
        "payload": payload,
        "title": f"npanalytics report: {payload['dataset']['name'] or 'unnamed dataset'}",
        "summary": _summary_view(payload),
        "findings": _findings_view(payload),
        "skew": _skew_view(analysis, payload, figures),
        "skew_missing": missing.get("skew") if not payload["skew_summary"] and not payload["skew"] else None,
        "sections": _section_view(analysis, payload, figures),
        "other_missing": [(k, v) for k, v in missing.items() if k not in shown and k != "skew"],
        "provenance": _provenance_view(payload),
        "severities": SEVERITIES,
    }


# --- templates ------------------------------------------------------------------------------

MARKDOWN_SPECIAL = "\\`|*[]<>"
"""Characters escaped with a backslash in Markdown (backslash first): code spans, table cells,
``*`` emphasis, links and raw HTML tags cannot be opened by a label value. ``_`` is left as is,
so that names such as ``service_port_name`` stay readable as plain text: a label written
``_like this_`` may show in italics, which changes no cell, link or tag."""


def _markdown_escape(value: Any) -> str:
    """Text safe inside a Markdown table cell or paragraph: one line, markup characters escaped."""
    text = " ".join(str(value).split())
    for char in MARKDOWN_SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    try:
        import jinja2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the report needs jinja2: pip install 'npanalytics[report]'") from err
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("npanalytics.report", "templates"),
        autoescape=jinja2.select_autoescape(disabled_extensions=("md.j2",), default=True,
                                            default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _markdown_escape
    env.filters["cell"] = format_cell
    return env


def _render_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# --- files ----------------------------------------------------------------------------------

def report_filename(fmt: str, *, dated: bool = False, generated: dt.datetime | None = None) -> str:
    """``report.<fmt>``, or ``report-YYYYmmddTHHMMSSZ.<fmt>`` when ``dated``."""
    if not dated:
        return f"report.{fmt}"
    if generated is None or generated.tzinfo is None:
        raise ValueError("a dated file name needs a timezone-aware generated time")
    return f"report-{generated.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}.{fmt}"


def _check_formats(formats: Iterable[str]) -> list[str]:
    chosen = []
    for fmt in formats:
        if fmt not in REPORT_FORMATS:
            close = difflib.get_close_matches(str(fmt), REPORT_FORMATS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"formats must be among {', '.join(REPORT_FORMATS)}; got {fmt!r}{hint}")
        if fmt not in chosen:
            chosen.append(fmt)
    if not chosen:
        raise ValueError(f"formats must name at least one of {', '.join(REPORT_FORMATS)}")
    return chosen


def _write_atomically(contents: Mapping[Path, str]) -> None:
    """Write every file into a temporary file beside it, then rename them all into place.

    Nothing is replaced until every temporary file is complete, so an error while
    writing leaves the previous reports as they were (and no temporary file behind).
    """
    temps: dict[Path, Path] = {}
    try:
        for target, text in contents.items():
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps[target] = Path(name)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(name, 0o644)
        for target, temp in temps.items():
            os.replace(temp, target)
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()


def render_report(
    analysis: Analysis,
    *,
    formats: Sequence[str] = ("html",),
    out_dir: str | os.PathLike[str],
    dated: bool = False,
    generated: dt.datetime | None = None,
) -> dict[str, Path]:
    """Write the report of an analysis: self-contained HTML, JSON, Markdown.

    Parameters
    ----------
    analysis : Analysis
        The result of :func:`npanalytics.analyze`; nothing is recomputed.
    formats : sequence of str
        Any of ``"html"`` (figures embedded as base64 PNG, CSS inline, no script and
        no external request: a Content-Security-Policy forbids them), ``"json"``
        (every number, see :func:`npanalytics.report.report_payload` for the keys)
        and ``"md"`` (for tickets and chat).
    out_dir : path
        Folder to write into (created if needed).
    dated : bool
        Name the files ``report-YYYYmmddTHHMMSSZ.<fmt>`` (UTC) instead of ``report.<fmt>``.
    generated : datetime.datetime, optional
        The report's time (timezone-aware); default now.

    Returns
    -------
    dict of str to Path
        The file written per format.

    Raises
    ------
    ValueError
        For an unknown format or a naive ``generated``.
    SchemaError
        When a frame of ``analysis`` does not follow its kind.
    OSError
        When ``out_dir`` cannot be written; the previous reports are left intact.
    """
    chosen = _check_formats(formats)
    generated = generated or dt.datetime.now(dt.timezone.utc)
    if generated.tzinfo is None:
        raise ValueError(f"generated must be timezone-aware (UTC); got {generated!r}")
    payload = report_payload(analysis, generated=generated)
    texts: dict[str, str] = {}
    if "json" in chosen:
        texts["json"] = _render_json(payload)
    if "html" in chosen or "md" in chosen:
        view = _view(analysis, payload, figures="html" in chosen)
        for fmt in ("html", "md"):
            if fmt in chosen:
                texts[fmt] = _environment().get_template(f"report.{fmt}.j2").render(**view)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {fmt: out / report_filename(fmt, dated=dated, generated=generated) for fmt in chosen}
    _write_atomically({paths[fmt]: texts[fmt] for fmt in chosen})
    return paths
