"""Prometheus HTTP API: range and instant queries into ``prom_samples`` frames.

Public functions
----------------
- :func:`connect_prometheus` -- a configured ``prometheus_api_client.PrometheusConnect``
  (URL, bearer token or headers, ``auth=``, TLS verification or a CA bundle, timeout,
  bounded retries).
- :func:`get_prometheus_range` -- ``/api/v1/query_range``; ranges beyond
  :data:`MAX_POINTS_PER_SERIES` points per series are split into chunks fetched in
  parallel and joined with no duplicate and no missing sample at the seams.
- :func:`get_prometheus_instant` -- ``/api/v1/query``.
- :func:`read_prometheus_response` -- a saved response of either endpoint (or a JSON
  array of the chunk responses of one long range, as ``npanalytics collect`` saves
  them) into the same frame.

The HTTP session, retry adapter, headers, authentication and TLS settings are
``PrometheusConnect``'s; the requests themselves are sent here because its query
methods drop the response's ``warnings``, parse the body into Python objects (slow for
large ranges) and keep the query in the URL even for POST.

Conversion
----------
A ``query_range`` body is turned into a frame without building Python objects per
sample: the ``"values":[...]`` arrays are cut out of the bytes, checked against the
compact form Prometheus writes (``[<seconds>,"<value>"],...``) with numpy, and their
timestamps and value strings are parsed by Arrow (exact, correctly rounded). The small
rest of the document (status, warnings, labels) goes through :mod:`json`. Any body
that is not in that compact form (pretty-printed, hand-edited, broken) is read by the
plain :mod:`json` path instead, which gives the same frame or a
:class:`~npanalytics.ParseError` with the position.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import itertools
import json
import math
import numbers
import urllib.parse
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from ..exceptions import CollectorError, ParseError, PrometheusWarning
from ..schemas import empty_frame, schema_table, validate_frame
from ._source import Source, read_source_bytes

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_api_client import PrometheusConnect

__all__ = [
    "MAX_POINTS_PER_SERIES",
    "RETRY_STATUS",
    "LABEL_RENAMES",
    "DEFAULT_TIMEOUT",
    "connect_prometheus",
    "get_prometheus_range",
    "get_prometheus_instant",
    "read_prometheus_response",
]

MAX_POINTS_PER_SERIES = 11_000
"""Prometheus refuses a range query with more points per series than this."""

RETRY_STATUS = (429, 500, 502, 503, 504)
"""HTTP statuses retried (with backoff) before giving up."""

LABEL_RENAMES: Mapping[str, str] = {"timestamp": "timestamp_label", "value": "value_label"}
"""Labels whose names clash with the frame's own columns, and the columns they get."""

POST_ABOVE_BYTES = 2_000
"""Queries whose encoded parameters are longer than this are sent as a POST form."""

DEFAULT_TIMEOUT = 30.0
"""Seconds per request when the client was made without a timeout."""

_DEFAULT_WORKERS = 4

Time = Union[dt.datetime, pd.Timestamp, str, float, int]
Step = Union[dt.timedelta, pd.Timedelta, str, float, int]
Prom = Union["PrometheusConnect", str]


# -- connecting ------------------------------------------------------------------------------


def connect_prometheus(
    url: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    auth: Any = None,
    verify: bool | str = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 2,
    backoff: float = 0.5,
) -> PrometheusConnect:
    """A ``PrometheusConnect`` configured for the ``get_prometheus_*`` functions.

    Parameters
    ----------
    url : str
        Base URL of Prometheus (``http://host:9090``, or with a path prefix behind a proxy).
    token : str, optional
        Bearer token, sent as ``Authorization: Bearer <token>``.
    headers : mapping, optional
        More HTTP headers (for example a tenant header).
    auth : optional
        Anything ``requests`` accepts as ``auth=`` (a ``(user, password)`` tuple, ...).
    verify : bool or str, default True
        Check the server's TLS certificate; a path is a CA bundle to check it against.
    timeout : float, default 30
        Seconds to wait for the connection and for each read; also sent to Prometheus
        as the query's ``timeout`` so that it gives up evaluating too.
    retries : int, default 2
        Retries of a failed connection and of an HTTP 429/5xx answer (with
        exponential backoff); a request whose answer did not arrive in time is not
        retried (the query would most likely be slow again).
    backoff : float, default 0.5
        Backoff factor in seconds (urllib3's: 0, 2x, 4x ... between attempts).

    Returns
    -------
    prometheus_api_client.PrometheusConnect

    Raises
    ------
    ValueError
        On a URL that is not http(s), a negative timeout or retry count, or a token
        given together with an ``Authorization`` header.
    ImportError
        Without prometheus-api-client (``pip install 'npanalytics[prometheus]'``).
    """
    parsed = urllib.parse.urlsplit(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"url must be an http:// or https:// URL such as http://localhost:9090, got {url!r}")
    if not (isinstance(timeout, numbers.Real) and timeout > 0):
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    all_headers = dict(headers or {})
    if token is not None:
        if any(k.lower() == "authorization" for k in all_headers):
            raise ValueError("give either token= or an Authorization header, not both")
        all_headers["Authorization"] = f"Bearer {token}"
    PrometheusConnect, requests, Retry = _import_client()
    session = requests.Session()
    session.verify = verify
    retry = Retry(
        total=retries,
        connect=retries,
        read=0,
        status=retries,
        other=0,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,  # queries are read-only, POST included
        raise_on_status=False,  # give back the last answer, with Prometheus's message
    )
    return PrometheusConnect(
        url=str(url).rstrip("/"), headers=all_headers or None, retry=retry, auth=auth,
        session=session, timeout=timeout,
    )


def _import_client() -> tuple[Any, Any, Any]:
    try:
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "querying Prometheus needs prometheus-api-client: pip install 'npanalytics[prometheus]'"
        ) from exc
    return PrometheusConnect, requests, Retry


def _as_prom(prom: Prom) -> PrometheusConnect:
    if isinstance(prom, str):
        return connect_prometheus(prom)
    if not hasattr(prom, "_session") or not hasattr(prom, "url"):
        raise TypeError(
            f"prom must be a URL or a PrometheusConnect (see connect_prometheus), got {type(prom).__name__}"
        )
    return prom


# -- times ------------------------------------------------------------------------------------


def _time_ms(value: Time, name: str) -> int:
    """Milliseconds since the epoch of a timezone-aware time, ISO 8601 text or Unix seconds."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a time, got {value!r}")
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite Unix seconds, got {value!r}")
        return int(round(float(value) * 1000))
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name} must be a timezone-aware datetime, ISO 8601 text with a zone "
            f"(2024-05-01T12:00:00Z) or Unix seconds, got {value!r}"
        ) from None
    if stamp.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (naive times are ambiguous), got {value!r}")
    return int(stamp.value // 1_000_000)


def _step_ms(step: Step) -> int:
    """Milliseconds of a step given as seconds, a timedelta or a duration text (``15s``, ``1m``)."""
    if isinstance(step, bool):
        raise TypeError(f"step must be a duration, got {step!r}")
    if isinstance(step, numbers.Real):
        ms = float(step) * 1000
    else:
        try:
            ms = pd.Timedelta(step).value / 1_000_000
        except (ValueError, TypeError):
            raise ValueError(f"step must be seconds, a timedelta or a duration such as '15s', got {step!r}") from None
    if not math.isfinite(ms) or ms < 1 or abs(ms - round(ms)) > 1e-6:
        raise ValueError(f"step must be a positive whole number of milliseconds, got {step!r}")
    return int(round(ms))


def _seconds_text(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _chunks(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> list[tuple[int, int]]:
    """(start, end) in ms of each chunk: consecutive evaluation times, none shared, none skipped."""
    last = (end_ms - start_ms) // step_ms  # index of the last evaluation time
    out = []
    for first in range(0, last + 1, max_points):
        final = min(first + max_points - 1, last)
        out.append((start_ms + first * step_ms, start_ms + final * step_ms))
    return out


# -- HTTP -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Reply:
    url: str
    query: str
    body: bytes


def _request(prom: PrometheusConnect, path: str, params: dict[str, str]) -> _Reply:
    """Send one query; return the body of a 200 answer or raise CollectorError."""
    import requests

    url = f"{prom.url}{path}"
    shown = _shown(url)
    query = params["query"]
    timeout = getattr(prom, "_timeout", None) or DEFAULT_TIMEOUT  # never wait forever
    if timeout:
        params = {**params, "timeout": f"{int(timeout * 1000)}ms"}
    encoded = urllib.parse.urlencode(params)
    post = getattr(prom, "_method", "GET") == "POST" or len(encoded) > POST_ABOVE_BYTES
    session = prom._session
    try:
        response = session.request(
            "POST" if post else "GET",
            url,
            params=None if post else params,
            data=params if post else None,
            headers=prom.headers,
            auth=prom.auth,
            timeout=timeout,
            verify=session.verify,
        )
        body = response.content
    except requests.exceptions.RequestException as exc:
        if _timed_out(exc):
            raise CollectorError(f"{shown}: no answer within {timeout} s to query {query!r}") from None
        raise CollectorError(f"{shown}: cannot query Prometheus ({_reason(exc)}); query {query!r}") from None
    if response.status_code != 200:
        raise CollectorError(_http_error(shown, query, response.status_code, body, _attempts(response)))
    return _Reply(shown, query, body)


def _shown(url: str) -> str:
    """``url`` without a user and password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _timed_out(exc: BaseException) -> bool:
    """Whether a requests error is a read timeout (also when urllib3 wrapped it in MaxRetryError)."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(getattr(inner, "reason", None), ReadTimeoutError)


def _reason(exc: BaseException) -> str:
    inner = exc
    while inner.__context__ is not None and not str(inner):
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _attempts(response: Any) -> int:
    history = getattr(getattr(response, "raw", None), "retries", None)
    return 1 + len(getattr(history, "history", ()) or ())


def _http_error(url: str, query: str, status: int, body: bytes, attempts: int) -> str:
    try:
        doc = json.loads(body)
        message = f"{doc.get('errorType', 'error')}: {doc.get('error', '')}"
    except (ValueError, AttributeError):
        message = body[:300].decode("utf-8", "replace").strip()
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return f"{url}: HTTP {status}{tries} for query {query!r}: {message}"


# -- parsing ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Parsed:
    """The content of one or more responses: series labels and their samples, flattened."""

    result_type: str
    metrics: list[dict[str, str]]
    counts: np.ndarray  # samples per series
    ms: np.ndarray  # int64 ms since the epoch, series after series
    values: np.ndarray  # float64
    warnings: list[str]
    infos: list[str]


_FAST_ABOVE_BYTES = 200_000
_CSV_OPTIONS: Any = None  # pyarrow.csv read, parse and convert options, made on first use


def _fail(name: str, where: str, expected: str, got: Any) -> ParseError:
    return ParseError(name, 0, f"{expected} at {where}", repr(got)[:120] if not isinstance(got, str) else got)


def _json_error(name: str, body: bytes, exc: json.JSONDecodeError) -> ParseError:
    lines = exc.doc.split("\n") if isinstance(exc.doc, str) else []
    line = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
    start = max(exc.colno - 40, 0)
    err = ParseError(name, exc.lineno, f"JSON (column {exc.colno}: {exc.msg})", line[start:start + 80])
    err.column = exc.colno  # type: ignore[attr-defined]
    return err


def _load_json(name: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise ParseError(name, 0, "UTF-8 JSON", f"undecodable byte at offset {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise _json_error(name, body, exc) from None


def _responses(name: str, doc: Any) -> list[tuple[str, dict]]:
    """The (where, response) pairs of a document: one response or a JSON array of them."""
    if isinstance(doc, list):
        if not doc:
            raise _fail(name, "the top level", "a response object or a non-empty array of them", "[]")
        return [(f"[{i}]", r) for i, r in enumerate(doc)]
    return [("", doc)]


def _check_response(name: str, where: str, doc: Any) -> tuple[str, list, list[str], list[str]]:
    """(resultType, result, warnings, infos) of one response; ParseError on anything else."""
    top = where or "the top level"
    if not isinstance(doc, dict) or "status" not in doc:
        raise _fail(name, top, 'a Prometheus API response {"status": ..., "data": ...}', doc)
    if doc["status"] != "success":
        raise ParseError(
            name, 0, f'status "success" at {top}',
            f"status {doc['status']!r}, {doc.get('errorType', 'error')}: {doc.get('error', '')}",
        )
    data = doc.get("data")
    if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
        raise _fail(name, f"{where}.data", 'an object with "resultType" and "result"', data)
    kind, result = data["resultType"], data["result"]
    if kind not in ("matrix", "vector", "scalar"):
        raise _fail(name, f"{where}.data.resultType", "matrix, vector or scalar", kind)
    if kind == "scalar":
        if not (isinstance(result, list) and len(result) == 2):
            raise _fail(name, f"{where}.data.result", 'a scalar [<seconds>, "<value>"]', result)
    elif not isinstance(result, list):
        raise _fail(name, f"{where}.data.result", "a list of series", result)
    notes = []
    for key in ("warnings", "infos"):
        items = doc.get(key) or []
        if not isinstance(items, list):
            raise _fail(name, f"{where}.{key}", "a list of strings", items)
        notes.append([str(x) for x in items])
    return kind, result, notes[0], notes[1]


def _parse_floats(texts: list[Any] | np.ndarray, name: str, where: Callable[[int], str]) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(pa.array(texts, type=pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for i, text in enumerate(texts):
            try:
                if not isinstance(text, str):
                    raise TypeError
                float(text)
            except (TypeError, ValueError):
                raise _fail(name, where(i), 'a sample value as a string ("1.5", "NaN", "+Inf")', text) from None
        raise  # pragma: no cover - Arrow and float() disagree


def _parse_slow(name: str, body: bytes) -> _Parsed:
    """Read a document with :mod:`json` (any whitespace, any order of keys)."""
    parts = []
    for where, doc in _responses(name, _load_json(name, body)):
        kind, result, warns, infos = _check_response(name, where, doc)
        if kind == "scalar":
            metrics, pairs, counts = [{}], [result], [1]
        else:
            key = "values" if kind == "matrix" else "value"
            metrics, lists = [], []
            for i, series in enumerate(result):
                here = f"{where}.data.result[{i}]"
                if not isinstance(series, dict) or not isinstance(series.get("metric", {}), dict):
                    raise _fail(name, here, 'a series {"metric": {...}, "%s": ...}' % key, series)
                if key not in series:
                    other = "native histograms ('histograms')" if "histograms" in series or "histogram" in series \
                        else f"no {key!r}"
                    raise _fail(name, here, f"float samples in {key!r} (native histograms are not supported)", other)
                samples = series[key] if kind == "matrix" else [series[key]]
                if not isinstance(samples, list):
                    raise _fail(name, f"{here}.{key}", "a list of samples", samples)
                metrics.append(series.get("metric", {}))
                lists.append(samples)
            counts = [len(s) for s in lists]
            pairs = list(itertools.chain.from_iterable(lists))
        starts = np.concatenate([[0], np.cumsum(counts)])

        def at(j: int, _w: str = where, _s: np.ndarray = starts, _k: str = kind) -> str:
            if _k == "scalar":
                return f"{_w}.data.result"
            i = int(np.searchsorted(_s, j, side="right") - 1)
            return f"{_w}.data.result[{i}].{'values' if _k == 'matrix' else 'value'}" + (
                f"[{j - _s[i]}]" if _k == "matrix" else "")

        for j, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (int, float))
                    and not isinstance(pair[0], bool)):
                raise _fail(name, at(j), 'a sample [<unix seconds>, "<value>"]', pair)
        seconds = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
        values = _parse_floats([p[1] for p in pairs], name, at)
        parts.append(_Parsed(kind, [dict(m) for m in metrics], np.asarray(counts, dtype=np.int64),
                             _ms(seconds), values, warns, infos))
    return _merge(parts)


def _ms(seconds: np.ndarray) -> np.ndarray:
    return np.rint(seconds * 1000.0).astype(np.int64)


def _parse_fast(name: str, body: bytes) -> _Parsed | None:
    """Read a matrix document in Prometheus's compact form; None when it is not in it.

    The ``"values":[...]`` arrays are cut out of the bytes and joined into one
    buffer ``,[t,"v"],[t,"v"]...`` in which every ``]`` becomes a newline and
    every ``[`` a ``0``: a CSV text with an empty column, the time and the quoted
    value, which Arrow's CSV reader parses (exactly, on several threads). Anything unexpected there (an
    escape, a stray bracket, a number that is not one) makes the CSV reader or
    the checks fail, and the caller falls back to :func:`_parse_slow`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    global _CSV_OPTIONS
    if _CSV_OPTIONS is None:
        _CSV_OPTIONS = _csv_options()
    spans = _values_spans(body)
    if not spans:
        return None
    begins, ends = (np.array(x, dtype=np.int64) for x in zip(*spans))
    view = memoryview(body)
    pieces, prev = [], 0
    for begin, end in spans:
        pieces.append(view[prev:begin])
        prev = end
    pieces.append(view[prev:])
    try:
        skeleton = json.loads(b"".join(pieces))
    except ValueError:
        return None
    del pieces
    text = bytearray(int((ends - begins + 1).sum()))  # ",<span>,<span>...", copied once
    into, at = memoryview(text), 0
    for begin, end in spans:
        into[at] = ord(",")
        into[at + 1:at + 1 + end - begin] = view[begin:end]
        at += 1 + end - begin
    del into
    buf = np.frombuffer(text, dtype=np.uint8)
    row_end = _positions(buf, ord("]"))
    starts = np.concatenate([[0], np.cumsum(ends - begins + 1)[:-1]]) + 1
    counts = np.diff(np.searchsorted(row_end, np.append(starts, len(buf)))).astype(np.int64)
    row_start = np.empty_like(row_end)
    row_start[:1], row_start[1:] = 1, row_end[:-1] + 2
    if not len(row_end) or row_end[-1] != len(buf) - 1 or (buf[row_start] != ord("[")).any() \
            or (buf[row_start - 1] != ord(",")).any():
        return None
    # ",[t,"v"],[t,"v"]" -> ",0t,"v"\n,0t,"v"\n": rows of an empty column, the time, the value
    # (a "[" or "]" anywhere else is inside a time or value, whose parse then fails)
    buf[row_end] = ord("\n")
    buf[row_start] = ord("0")
    del row_end, row_start, buf
    try:
        table = pcsv.read_csv(pa.py_buffer(text), read_options=_CSV_OPTIONS[0], parse_options=_CSV_OPTIONS[1],
                              convert_options=_CSV_OPTIONS[2], memory_pool=pa.system_memory_pool())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    del text
    if table.num_rows != int(counts.sum()):
        return None
    seconds = table.column("t").to_numpy()
    values = table.column("v").to_numpy()
    del table
    if not np.isfinite(seconds).all():
        return None
    # the skeleton must hold exactly the series whose values were cut out, in order
    try:
        parts, metrics = [], []
        for where, doc in _responses(name, skeleton):
            kind, result, warns, infos = _check_response(name, where, doc)
            if kind != "matrix":
                return None
            for series in result:
                if not isinstance(series, dict) or series.get("values") != [] or \
                        not isinstance(series.get("metric", {}), dict):
                    return None
                metrics.append(dict(series.get("metric", {})))
            parts.append((warns, infos))
    except ParseError:
        return None
    if len(metrics) != len(counts):
        return None
    parsed = _Parsed("matrix", metrics, counts, _ms(seconds), values,
                     [w for p in parts for w in p[0]], [i for p in parts for i in p[1]])
    return parsed if len(parts) == 1 else _merge([parsed])


_COMPACT_KEY = b'"values":[['


def _values_spans(body: bytes) -> list[tuple[int, int]]:
    """(begin, end) of each non-empty ``"values":[...]`` array's content, compact form only.

    ``begin`` is the first sample's ``[``, ``end`` just past the last sample's ``]``: the
    last ``]]`` before the next key (a label value holding ``]]`` makes a wrong span,
    which the checks after reject). Empty when a key is not followed by its end.
    """
    keys = []
    at = body.find(_COMPACT_KEY)
    while at >= 0:
        keys.append(at + len(_COMPACT_KEY) - 1)
        at = body.find(_COMPACT_KEY, at + len(_COMPACT_KEY))
    spans = []
    for k, begin in enumerate(keys):
        limit = keys[k + 1] if k + 1 < len(keys) else len(body)
        end = body.rfind(b"]]", begin, limit)
        if end < 0:
            return []
        spans.append((begin, end + 1))
    return spans


def _positions(buf: np.ndarray, byte: int, block: int = 1 << 22) -> np.ndarray:
    """Positions of ``byte`` in ``buf``, found block by block (no mask as large as ``buf``)."""
    found = [np.flatnonzero(buf[at:at + block] == byte) + at for at in range(0, len(buf), block)]
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _csv_options() -> tuple[Any, Any, Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return (
        pcsv.ReadOptions(column_names=["s", "t", "v"]),
        pcsv.ParseOptions(double_quote=False, newlines_in_values=False),
        pcsv.ConvertOptions(column_types={"t": pa.float64(), "v": pa.float64()}, include_columns=["t", "v"],
                            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False),
    )


def _merge(parts: Sequence[_Parsed]) -> _Parsed:
    """Join parsed responses: the samples of one series (same labels) together, in time order."""
    if len(parts) == 1 and len({_key(m) for m in parts[0].metrics}) == len(parts[0].metrics):
        return parts[0]
    kinds = {p.result_type for p in parts}
    if len(kinds) > 1:
        raise ValueError(f"cannot join responses of different result types: {sorted(kinds)}")
    index: dict[tuple, int] = {}
    metrics: list[dict[str, str]] = []
    row_ids = []
    for part in parts:
        ids = []
        for metric in part.metrics:
            key = _key(metric)
            if key not in index:
                index[key] = len(metrics)
                metrics.append(metric)
            ids.append(index[key])
        row_ids.append(np.repeat(np.asarray(ids, dtype=np.int64), part.counts))
    ids = np.concatenate(row_ids)
    ms = np.concatenate([p.ms for p in parts])
    values = np.concatenate([p.values for p in parts])
    order = np.lexsort((ms, ids))  # by series, then time (stable)
    ids, ms, values = ids[order], ms[order], values[order]
    dup = (ids[1:] == ids[:-1]) & (ms[1:] == ms[:-1])
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"two samples of series {metrics[ids[k]]} at {pd.Timestamp(int(ms[k]), unit='ms', tz='UTC')}"
        )
    return _Parsed(kinds.pop(), metrics, np.bincount(ids, minlength=len(metrics)).astype(np.int64), ms, values,
                   [w for p in parts for w in p.warnings], [i for p in parts for i in p.infos])


def _key(metric: Mapping[str, str]) -> tuple:
    return tuple(sorted(metric.items()))


def _parse(name: str, body: bytes) -> _Parsed:
    if len(body) >= _FAST_ABOVE_BYTES:
        fast = _parse_fast(name, body)
        if fast is not None:
            return fast
    try:
        return _parse_slow(name, body)
    except ValueError as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(name, 0, "responses that can be joined", str(exc)) from None


def _frame(parsed: _Parsed) -> pd.DataFrame:
    """The ``prom_samples`` frame of parsed responses."""
    n = int(parsed.counts.sum()) if len(parsed.counts) else 0
    if n == 0:
        frame = empty_frame("prom_samples")
    else:
        nanoseconds = (parsed.ms * 1_000_000).view("datetime64[ns]")
        stamps = pd.DatetimeIndex(nanoseconds, copy=False).tz_localize("UTC")
        data: dict[str, Any] = {"timestamp": stamps, "value": parsed.values}
        names = sorted({k for m in parsed.metrics for k in m}, key=lambda k: (k != "__name__", k))
        for label in names:
            per_series = pd.Series([m.get(label) for m in parsed.metrics], dtype="str").astype("category")
            codes = np.repeat(per_series.cat.codes.to_numpy(), parsed.counts)
            data[LABEL_RENAMES.get(label, label)] = pd.Categorical.from_codes(
                codes, categories=per_series.cat.categories)
        frame = pd.DataFrame(data, copy=False)
    frame.attrs["result_type"] = parsed.result_type
    frame.attrs["warnings"] = list(parsed.warnings)
    frame.attrs["infos"] = list(parsed.infos)
    return validate_frame(frame, "prom_samples")


def _warn(origin: str, notes: Sequence[str], stacklevel: int) -> None:
    if notes:
        shown = "; ".join(dict.fromkeys(notes))
        warnings.warn(
            PrometheusWarning(f"{origin}: Prometheus answered with warnings (the data may be partial): {shown}"),
            stacklevel=stacklevel + 1,
        )


# -- public functions -------------------------------------------------------------------------


def read_prometheus_response(source: Source) -> pd.DataFrame:
    """Read a saved ``/api/v1/query`` or ``/api/v1/query_range`` response.

    Parameters
    ----------
    source : path, file object, str or bytes
        The JSON body as Prometheus sent it (a ``matrix``, ``vector`` or ``scalar``
        result), or a JSON array of such bodies (the chunks of one long range, as
        ``npanalytics collect`` saves them; series are joined across them).

    Returns
    -------
    pandas.DataFrame
        Kind ``prom_samples``: one row per sample, series after series, in time
        order within a series. Every label becomes a ``category`` column (NA where
        a series lacks it); labels named ``timestamp`` or ``value`` become
        ``timestamp_label``/``value_label`` (:data:`LABEL_RENAMES`). Instant
        queries give the evaluation time; a scalar gives one row without labels.
        ``df.attrs`` holds ``result_type``, ``warnings`` and ``infos``.

    Raises
    ------
    ParseError
        On malformed JSON (with its line and column), a response whose status is
        ``"error"`` (with Prometheus's message), or content that is not a result
        (with its JSON path, for example ``data.result[3].values[17]``).

    Warns
    -----
    PrometheusWarning
        When the response carries Prometheus ``warnings`` (its data may be partial).

    Notes
    -----
    """
    if isinstance(source, str) and source.lstrip()[:1] in ("{", "["):
        name, body = "<string>", source.encode()  # compact JSON has no newline to tell it from a path
    else:
        name, body = read_source_bytes(source)
    parsed = _parse(name, body)
    _warn(name, parsed.warnings, 2)
    return _frame(parsed)


def get_prometheus_range(
    prom: Prom,
    query: str,
    start: Time,
    end: Time,
    step: Step,
    *,
    max_points: int = MAX_POINTS_PER_SERIES,
    max_workers: int = _DEFAULT_WORKERS,
    on_response: Callable[[int, int, int, bytes], None] | None = None,
) -> pd.DataFrame:
    """Evaluate ``query`` over a time range (``/api/v1/query_range``).

    Parameters
    ----------
    prom : PrometheusConnect or str
        From :func:`connect_prometheus` (or a URL, connected with its defaults).
    query : str
        PromQL expression.
    start, end : datetime, str or float
        Timezone-aware times, ISO 8601 text with a zone, or Unix seconds.
        Millisecond resolution, as in Prometheus.
    step : timedelta, str or float
        Resolution: seconds, a timedelta or a duration text (``"15s"``, ``"1m"``).
    max_points : int, default 11,000
        Points per series per request. Longer ranges are split into chunks of
        consecutive evaluation times (each time in exactly one chunk).
    max_workers : int, default 4
        Chunks fetched at once.
    on_response : callable, optional
        Called as ``on_response(chunk, chunks, start_ms, body)`` after each chunk
        arrives (from a worker thread): for progress bars and for keeping raw
        responses.

    Returns
    -------
    pandas.DataFrame
        Kind ``prom_samples`` (see :func:`read_prometheus_response`); an empty
        frame with the required columns when nothing matched.

    Raises
    ------
    CollectorError
        When Prometheus cannot be reached (naming the URL), does not answer within
        the timeout, answers HTTP 429/5xx after the retries, or rejects the query
        (400/422, with Prometheus's message and the query). If any chunk fails, the
        whole call fails: partial data is never returned.
    ValueError
        On an ``end`` before ``start``, a naive time or a bad step.

    Warns
    -----
    PrometheusWarning
        When any chunk's response carries warnings.
    """
    prom = _as_prom(prom)
    start_ms, end_ms, step_ms = _time_ms(start, "start"), _time_ms(end, "end"), _step_ms(step)
    if end_ms < start_ms:
        raise ValueError(f"end ({end!r}) is before start ({start!r})")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or not 1 <= max_points <= MAX_POINTS_PER_SERIES:
        raise ValueError(f"max_points must be an int in 1..{MAX_POINTS_PER_SERIES}, got {max_points!r}")
    chunks = _chunks(start_ms, end_ms, step_ms, max_points)

    def fetch(k: int) -> bytes:
        lo, hi = chunks[k]
        reply = _request(prom, "/api/v1/query_range", {
            "query": query, "start": _seconds_text(lo), "end": _seconds_text(hi), "step": f"{step_ms}ms",
        })
        if on_response is not None:
            on_response(k, len(chunks), lo, reply.body)
        return reply.body

    bodies = _fetch_all(fetch, len(chunks), max_workers)
    url = _shown(f"{prom.url}/api/v1/query_range")
    parts = []
    for k, body in enumerate(bodies):
        try:
            part = _parse(f"{url} (chunk {k + 1}/{len(chunks)})", body)
        except ParseError as exc:
            raise CollectorError(f"{url}: unreadable answer to query {query!r}: {exc}") from None
        if part.result_type != "matrix":
            raise CollectorError(f"{url}: expected a matrix for query {query!r}, got a {part.result_type}")
        parts.append(part)
    try:
        parsed = _merge(parts)
    except ValueError as exc:
        raise CollectorError(f"{url}: chunks of query {query!r} overlap: {exc}") from None
    _warn(f"{url} query {query!r}", parsed.warnings, 2)
    return _frame(parsed)


def _fetch_all(fetch: Callable[[int], bytes], count: int, max_workers: int) -> list[bytes]:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
    if count == 1:
        return [fetch(0)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(max_workers, count),
                                               thread_name_prefix="npa-prom") as pool:
        futures = [pool.submit(fetch, k) for k in range(count)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def get_prometheus_instant(prom: Prom, query: str, at: Time | None = None,
                           *, on_response: Callable[[int, int, int, bytes], None] | None = None) -> pd.DataFrame:
    """Evaluate ``query`` at one moment (``/api/v1/query``).

    Parameters
    ----------
    prom : PrometheusConnect or str
        From :func:`connect_prometheus` (or a URL).
    query : str
        PromQL expression.
    at : datetime, str or float, optional
        Evaluation time (timezone-aware, ISO 8601 with a zone, or Unix seconds);
        default: Prometheus's current time.
    on_response : callable, optional
        Called as ``on_response(0, 1, at_ms or -1, body)`` with the raw answer.

    Returns
    -------
    pandas.DataFrame
        Kind ``prom_samples``: one row per series (a scalar gives one row without
        labels), ``timestamp`` the evaluation time.

    Raises
    ------
    CollectorError
        As :func:`get_prometheus_range`.

    Warns
    -----
    PrometheusWarning
        When the response carries warnings.
    """
    prom = _as_prom(prom)
    params = {"query": query}
    at_ms = -1
    if at is not None:
        at_ms = _time_ms(at, "at")
        params["time"] = _seconds_text(at_ms)
    reply = _request(prom, "/api/v1/query", params)
    if on_response is not None:
        on_response(0, 1, at_ms, reply.body)
    try:
        parsed = _parse(reply.url, reply.body)
    except ParseError as exc:
        raise CollectorError(f"{reply.url}: unreadable answer to query {query!r}: {exc}") from None
    _warn(f"{reply.url} query {query!r}", parsed.warnings, 2)
    return _frame(parsed)


if read_prometheus_response.__doc__:  # the frame's spec, rendered from schemas.py
    read_prometheus_response.__doc__ = read_prometheus_response.__doc__.replace("    Notes\n    -----\n", "    Notes\n    -----\n" + "\n".join(
            "    " + line if line else "" for line in schema_table("prom_samples").splitlines()) + "\n", 1)
