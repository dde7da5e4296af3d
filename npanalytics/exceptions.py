"""Exceptions and warnings raised by npanalytics.

One tree, so that callers can catch as narrowly or as broadly as they need::

    NpaError
    ├── ParseError        a dump or response could not be read (source, line number, line)
    ├── SchemaError       a frame does not follow its spec in ``npanalytics.schemas``
    ├── DatasetError      a dataset folder is missing, incomplete or tampered with
    ├── CollectorError    a live source (binary, Prometheus, Kubernetes API) failed
    └── LabError          the lab cannot build or run here (not root, missing binary/kernel feature)

    NpaWarning (UserWarning)
    ├── ParseWarning      lines were skipped under ``on_bad_line="warn"``
    └── PrometheusWarning Prometheus answered with warnings (the data may be partial)
"""

from __future__ import annotations

__all__ = [
    "NpaError",
    "ParseError",
    "SchemaError",
    "DatasetError",
    "CollectorError",
    "LabError",
    "NpaWarning",
    "ParseWarning",
    "PrometheusWarning",
]


class NpaError(Exception):
    """Base class of every error npanalytics raises on purpose."""


class ParseError(NpaError, ValueError):
    """A line of a dump could not be parsed.

    The message reads ``"{source}:{lineno}: expected <what>, got <line>"``.

    Attributes
    ----------
    source : str
        Path of the dump, or a description such as ``"<string>"``.
    lineno : int
        1-based line number of the offending line (0 when it is not line-bound).
    expected : str
        What the reader expected at that place.
    line : str
        The offending line (or fragment).
    """

    def __init__(self, source: str, lineno: int, expected: str, line: str) -> None:
        self.source = str(source)
        self.lineno = int(lineno)
        self.expected = expected
        self.line = line
        super().__init__(f"{self.source}:{self.lineno}: expected {expected}, got {line[:120]!r}")


class SchemaError(NpaError, ValueError):
    """A frame does not follow its spec; ``problems`` lists every violation."""

    def __init__(self, kind: str, problems: list[str]) -> None:
        self.kind = kind
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"frame of kind {kind!r} does not follow its schema:\n{lines}")


class DatasetError(NpaError):
    """A dataset is missing, incomplete, or does not match its manifest."""


class CollectorError(NpaError):
    """A live source could not be queried (missing binary, permission, HTTP error...)."""


class LabError(NpaError):
    """The lab cannot run here, or a lab run failed."""


class NpaWarning(UserWarning):
    """Base class of the warnings npanalytics emits."""


class ParseWarning(NpaWarning):
    """Lines were skipped while parsing with ``on_bad_line="warn"``."""


class PrometheusWarning(NpaWarning):
    """Prometheus answered a query with ``warnings``: the result may be partial or approximate."""
