"""Prometheus exposition text (a scrape of ``/metrics``, or a file) into a ``prom_samples`` frame.

The parsing is prometheus_client's (``prometheus_client.parser`` for the text
format 0.0.4, ``prometheus_client.openmetrics.parser`` for OpenMetrics); this
module only opens the source, finds the line of a parse error, and builds the
tidy frame.

Known limits of the parsers, and what this module does about them
------------------------------------------------------------------
* prometheus_client's OpenMetrics parser drops samples when one histogram (or
  summary, or counter with ``_created``) series carries several timestamps in
  one document: it remembers the samples of a group across timestamps and takes
  the second point's buckets for duplicates, then fails with ``+Inf bucket
  missing`` or, for ``_sum``/``_count`` only, silently loses samples. Backfill
  files such as the lab's ``series.om`` (:func:`npanalytics.lab.metrics.openmetrics_series`)
  are exactly that shape. When a document has more than one timestamp, it is
  read one timestamp at a time (each part with every family's metadata), which
  the parser handles; every sample line is then checked to be in the result.
* The text-format parser is lax: it ignores malformed comment lines, and a
  malformed label pair such as ``a{b=} 1`` can be dropped without an error (see
  the lab's notes). It is not re-validated here.
* The text parser renames the samples of a ``counter`` family without the
  ``_total`` suffix to ``<name>_total``; they are given back their written names.
* Native histograms are not supported (a ParseError).
* OpenMetrics ``_created`` samples are kept as samples (Prometheus turns them into
  created timestamps instead).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..exceptions import CollectorError, ParseError
from ..schemas import empty_frame, schema_table, validate_frame
from .prometheus import LABEL_RENAMES
from ._source import BadLines, OnBadLine, Source, check_on_bad_line, read_source_bytes

__all__ = ["read_metrics_text", "samples_frame", "concat_samples"]

Format = Literal["auto", "text", "openmetrics"]
FORMATS = ("auto", "text", "openmetrics")

#: What a scrape asks for: the text format 0.0.4 first (prometheus_client's text parser is
#: the more forgiving one), OpenMetrics if that is all the server has.
ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"

_METADATA = re.compile(r"^#\s*(?:HELP|TYPE|UNIT)\s+(\S+)")
_COUNTER_TYPE = re.compile(r"^#\s*TYPE\s+(\S+)\s+counter\s*$")
# A sample line: name, optional {labels} (quoted values may hold anything but an unescaped quote),
# value, optional timestamp (group 1, only used to group lines), optional exemplar.
_LABELS = r'\{(?:[^"{}]|"(?:[^"\\\n]|\\.)*")*\}'
_PLAIN_SAMPLE = re.compile(
    rf'^[a-zA-Z_:][a-zA-Z0-9_:]*(?:{_LABELS})?[ ]+[^ #]+(?:[ ]+([^ #]+))?'
    rf'(?:[ ]+#[ ]+{_LABELS}[ ]+[^ #]+(?:[ ]+[^ #]+)?)?$')
_FAMILY_ERROR = re.compile(r":\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$")


def _parsers() -> tuple[Any, Any]:
    try:
        from prometheus_client import parser as text_parser
        from prometheus_client.openmetrics import parser as om_parser
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "read_metrics_text needs prometheus_client: pip install 'npanalytics[prometheus]'"
        ) from exc
    return text_parser, om_parser


class _Lines:
    """Feed lines to a parser and remember where it is (1-based original line numbers)."""

    def __init__(self, lines: list[str], linenos: list[int]) -> None:
        self.lines = lines
        self.linenos = linenos
        self.index = -1

    def __iter__(self) -> Iterator[str]:
        for index, line in enumerate(self.lines):
            self.index = index
            yield line

    @property
    def lineno(self) -> int:
        return self.linenos[self.index] if 0 <= self.index < len(self.linenos) else 0

    @property
    def line(self) -> str:
        return self.lines[self.index].rstrip("\n") if 0 <= self.index < len(self.lines) else ""


def _parse_error(name: str, fmt: str, feed: _Lines, exc: Exception, family_lines: dict[str, int],
                 all_lines: list[str]) -> ParseError:
    message = str(exc) or type(exc).__name__
    what = "Prometheus text format 0.0.4" if fmt == "text" else "OpenMetrics text"
    lineno, line = feed.lineno, feed.line
    match = _FAMILY_ERROR.search(message)
    if match and match.group(1) in family_lines and family_lines[match.group(1)] < lineno:
        # a check of a whole family (histogram buckets, name clashes) fails when the parser
        # has already read the next family's first line: point at the family instead
        lineno = family_lines[match.group(1)]
        line = all_lines[lineno - 1].rstrip("\n")
    line_bound = lineno == feed.lineno and lineno > 0
    if lineno == 0:
        line = "end of input"
    error = ParseError(name, lineno, f"{what} (prometheus_client: {message})", line)
    error.line_bound = line_bound  # a bad line (not a whole family, not the end): on_bad_line may skip it
    return error


def _timestamp_ns(timestamp: Any, fmt: str) -> int | None:
    if timestamp is None:
        return None
    if fmt == "openmetrics":  # prometheus_client.samples.Timestamp(sec, nsec)
        return int(timestamp.sec) * 1_000_000_000 + int(timestamp.nsec)
    return int(round(float(timestamp) * 1000)) * 1_000_000  # text: milliseconds, read as s / 1000


def _sample_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))


Chunk = tuple[list[str], list[dict[str, str]], list[float], list[int | None]]
"""Samples of one family: names, label dicts, values, timestamps in ns (None: none written)."""


def _parse(name: str, fmt: str, lines: list[str], linenos: list[int], all_lines: list[str],
           family_lines: dict[str, int]) -> list[Chunk]:
    text_parser, om_parser = _parsers()
    feed = _Lines(lines, linenos)
    module = text_parser if fmt == "text" else om_parser
    counters_written_bare = {m.group(1) for line in lines if (m := _COUNTER_TYPE.match(line))
                             and not m.group(1).endswith("_total")}
    out: list[Chunk] = []
    try:
        for family in module.text_fd_to_metric_families(feed):
            bare = fmt == "text" and family.type == "counter" and family.name in counters_written_bare
            names, labels, values, stamps = [], [], [], []
            for sample in family.samples:
                if sample.value is None or getattr(sample, "native_histogram", None) is not None:
                    raise ValueError(f"native histograms are not supported: {family.name}")
                names.append(family.name if bare and sample.name == family.name + "_total" else sample.name)
                labels.append(sample.labels)
                values.append(float(sample.value))
                stamps.append(None if sample.timestamp is None else _timestamp_ns(sample.timestamp, fmt))
            out.append((names, labels, values, stamps))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _parse_error(name, fmt, feed, exc, family_lines, all_lines) from None
    return out


def _split_by_timestamp(name: str, lines: list[str], linenos: list[int]) -> list[tuple[list[str], list[int]]]:
    """OpenMetrics lines grouped by sample timestamp, each group with all metadata lines.

    Only the grouping is decided here: a plain sample line (no exemplar) has its
    timestamp as the token after the value; any other line is given alone to
    prometheus_client's parser to learn its timestamp. The groups are then parsed
    in full by prometheus_client.
    """
    _, om_parser = _parsers()
    meta: list[int] = []
    groups: dict[Any, list[int]] = {}
    for index, line in enumerate(lines):
        body = line.rstrip("\n")
        if not body or body.startswith("#"):
            meta.append(index)
            continue
        match = _PLAIN_SAMPLE.match(body)
        try:
            key = decimal.Decimal(match.group(1)) if match and match.group(1) else None if match else _om_stamp(
                om_parser, body)
        except (ValueError, decimal.InvalidOperation) as exc:
            error = ParseError(name, linenos[index], f"an OpenMetrics sample line (prometheus_client: {exc})", body)
            error.line_bound = True
            raise error from None
        groups.setdefault(key, []).append(index)
    parts = []
    for indices in groups.values():
        keep = sorted(meta + indices)
        parts.append(([lines[i] for i in keep], [linenos[i] for i in keep]))
    return parts


def _om_stamp(om_parser: Any, body: str) -> decimal.Decimal | None:
    """The timestamp of one sample line, from prometheus_client (a one-line document)."""
    (family,) = om_parser.text_string_to_metric_families(body + "\n# EOF\n")
    stamp = family.samples[0].timestamp
    return None if stamp is None else decimal.Decimal(stamp.sec) + decimal.Decimal(stamp.nsec) / 10**9


def _detect_format(lines: list[str], content_type: str | None) -> str:
    if content_type is not None:
        return "openmetrics" if "application/openmetrics-text" in content_type.lower() else "text"
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return "openmetrics" if last == "# EOF" else "text"


def _fetch(url: str, timeout: float) -> tuple[bytes, str | None]:
    import urllib.error  # urllib.request pulls in http.client and ssl: only a scrape needs them
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "npanalytics"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(), response.headers.get("Content-Type")
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode("utf-8", "replace").strip()
        raise CollectorError(f"{url}: HTTP {exc.code} {exc.reason}: {body[:200]!r}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CollectorError(f"{url}: cannot scrape metrics (timeout {timeout:g} s): {reason}") from None


def _utc_ns(at: Any) -> int:
    if at is None:
        return pd.Timestamp.now(tz="UTC").value
    stamp = pd.Timestamp(at)
    if stamp.tzinfo is None:
        raise ValueError(f"at must be timezone-aware (UTC), got the naive {at!r}")
    return stamp.tz_convert("UTC").value


def samples_frame(chunks: list[Chunk], default_ns: int) -> pd.DataFrame:
    """Build a ``prom_samples`` frame from chunks of samples (one chunk per family).

    Label columns come in order of first appearance; a series without a label has NA
    there. Labels called ``timestamp`` or ``value`` become ``timestamp_label`` /
    ``value_label``, as in :func:`~npanalytics.collectors.prometheus.get_prometheus_range`.
    """
    chunks = [c for c in chunks if c[0]]
    if not chunks:
        return empty_frame("prom_samples", optional=True)
    total = sum(len(c[0]) for c in chunks)
    stamps = [default_ns if t is None else t for c in chunks for t in c[3]]
    data: dict[str, Any] = {
        "timestamp": pd.to_datetime(np.asarray(stamps, dtype="int64"), unit="ns", utc=True),
        "value": np.fromiter((v for c in chunks for v in c[2]), dtype="float64", count=total),
        "__name__": pd.Categorical([n for c in chunks for n in c[0]]),
    }
    # one pass per family over its own label names (a family's series share most of them)
    chunk_keys = [list(dict.fromkeys(k for labels in c[1] for k in labels)) for c in chunks]
    keys = list(dict.fromkeys(k for ks in chunk_keys for k in ks))
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    for chunk, own in zip(chunks, chunk_keys):
        size = len(chunk[0])
        for key in own:
            columns[key].extend(labels.get(key) for labels in chunk[1])
        for key in keys:
            if key not in own:
                columns[key].extend([None] * size)
    for key in keys:
        column = LABEL_RENAMES.get(key, key)
        data[column] = pd.Categorical(columns[key])
    return validate_frame(pd.DataFrame(data), "prom_samples")


def concat_samples(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate ``prom_samples`` frames, for example scrapes of several kube-proxies.

    ``pandas.concat`` turns categorical columns with different categories into
    text; here every label column stays categorical (categories unioned), a
    label missing from a frame is NA there, and label columns added with
    ``frame.assign(node="node-a")`` become categorical too.

    Parameters
    ----------
    frames : list of pandas.DataFrame
        Frames of kind ``prom_samples``.

    Returns
    -------
    pandas.DataFrame
        Kind ``prom_samples``, rows in the order given.
    """
    frames = [validate_frame(frame, "prom_samples") for frame in frames]
    if not frames:
        return empty_frame("prom_samples", optional=True)
    columns = list(dict.fromkeys(c for frame in frames for c in frame.columns))
    parts = []
    for frame in frames:
        part = {}
        for column in columns:
            if column in ("timestamp", "value"):
                part[column] = frame[column]
            elif column in frame:
                part[column] = frame[column].astype(object).where(frame[column].notna(), None)
            else:
                part[column] = pd.Series(None, index=frame.index, dtype=object)
        parts.append(pd.DataFrame(part, index=frame.index))
    out = pd.concat(parts, ignore_index=True)
    for column in columns:
        if column not in ("timestamp", "value"):
            out[column] = pd.Categorical([None if pd.isna(v) else str(v) for v in out[column]])
    return validate_frame(out, "prom_samples")


def read_metrics_text(
    source: Source,
    *,
    at: dt.datetime | pd.Timestamp | None = None,
    format: Format = "auto",  # noqa: A002 - the natural name
    timeout: float = 10.0,
    on_bad_line: OnBadLine = "raise",
) -> pd.DataFrame:
    """Read Prometheus exposition text (a ``/metrics`` scrape or a file) into samples.

    Parameters
    ----------
    source : path, file object, str, bytes, or an ``http(s)://`` URL
        The text itself (``str`` with a newline, or ``bytes``), a file (``.gz``
        too), or a URL that is scraped once (``GET`` with an ``Accept`` header
        preferring the text format 0.0.4).
    at : datetime, optional
        Scrape time given to samples that carry no timestamp of their own
        (timezone-aware). Default: now.
    format : {"auto", "text", "openmetrics"}, default "auto"
        ``auto`` reads the ``Content-Type`` of a scrape, and otherwise takes a
        document whose last line is ``# EOF`` for OpenMetrics.
    timeout : float, default 10
        Seconds to wait for a scrape (connect and each read).
    on_bad_line : {"raise", "warn", "skip"}, default "raise"
        What to do with a line the parser rejects: raise, or leave it out (with
        one ParseWarning under ``"warn"``) and parse the rest again. Errors of a
        whole family (a histogram without ``+Inf``...) and of the end of input
        always raise.

    Returns
    -------
    pandas.DataFrame
        Kind ``prom_samples``: one row per sample as written (histogram
        ``_bucket`` samples keep ``le`` as a label column; counters keep their
        written names, e.g. ``x_total``). Samples with a timestamp of their own
        keep it (text format: milliseconds; OpenMetrics: seconds).
        ``frame.attrs["parse_report"]`` is a :class:`~npanalytics.ParseReport`
        (lines read, skipped).

        {schema}

    Raises
    ------
    ParseError
        ``source:lineno: expected <format> (prometheus_client: <why>), got <line>``.
    CollectorError
        A scrape failed (the URL, the HTTP status or the network error).
    ValueError
        A naive ``at`` or an unknown ``format``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    check_on_bad_line(on_bad_line)
    default_ns = _utc_ns(at)
    content_type = None
    if isinstance(source, str) and re.match(r"^https?://", source, re.IGNORECASE):
        name = source
        data, content_type = _fetch(source, timeout)
        if at is None:
            default_ns = _utc_ns(None)
        if data[:2] == b"\x1f\x8b":
            name, data = read_source_bytes(data)
            name = source
    else:
        name, data = read_source_bytes(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise ParseError(name, lineno, "UTF-8 text", repr(data[exc.start: exc.start + 20])) from None
    lines = _split_lines(text)
    fmt = _detect_format(lines, content_type) if format == "auto" else format
    family_lines: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        match = _METADATA.match(line)
        if match:
            family_lines.setdefault(match.group(1), lineno)
    bad = BadLines(name, on_bad_line)
    skipped: set[int] = set()
    while True:  # each round drops one more bad line (at most every line once)
        keep = [i for i in range(len(lines)) if i + 1 not in skipped]
        kept, linenos = [lines[i] for i in keep], [i + 1 for i in keep]
        try:
            samples = _parse(name, fmt, kept, linenos, lines, family_lines) if fmt == "text" \
                else _parse_openmetrics(name, kept, linenos, lines, family_lines)
            break
        except ParseError as exc:
            if on_bad_line == "raise" or not getattr(exc, "line_bound", False) or exc.lineno in skipped:
                raise
            bad.bad(exc.lineno, exc.expected, exc.line)
            skipped.add(exc.lineno)
    frame = samples_frame(samples, default_ns)
    frame.attrs["parse_report"] = bad.report("openmetrics" if fmt == "openmetrics" else "prometheus-text",
                                             len(lines))
    return frame


def _split_lines(text: str) -> list[str]:
    """Lines as the parsers see them: only a newline ends a line (not ``\\x1e`` or U+2028)."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    return lines + [pieces[-1]] if pieces[-1] else lines


def _parse_openmetrics(name: str, lines: list[str], linenos: list[int], all_lines: list[str],
                       family_lines: dict[str, int]):
    """Parse OpenMetrics one timestamp at a time (see the module notes), checking nothing was dropped."""
    parts = _split_by_timestamp(name, lines, linenos)
    if len(parts) <= 1:
        parts = [(lines, linenos)]
    samples = []
    for part_lines, part_linenos in parts:
        samples.extend(_parse(name, "openmetrics", part_lines, part_linenos, all_lines, family_lines))
    expected = _sample_lines(lines)
    read = sum(len(chunk[0]) for chunk in samples)
    if read != expected:
        raise ParseError(name, 0, "every sample line to be read (prometheus_client dropped repeated series)",
                         f"{read} of {expected} samples")
    return samples


read_metrics_text.__doc__ = read_metrics_text.__doc__.replace(
    "{schema}", schema_table("prom_samples").replace("\n", "\n        ")
)
