"""Shared plumbing of the offline readers: opening a source and the bad-line policy.

Every ``read_<format>`` function accepts the same kinds of ``source`` (a path, a
``.gz`` path, a file object, ``str`` or ``bytes`` content) and the same
``on_bad_line`` policy. Both live here so that the readers behave alike.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import warnings
from pathlib import Path
from typing import IO, Literal, Union

from ..exceptions import ParseError, ParseWarning

Source = Union[str, bytes, "os.PathLike[str]", IO[str], IO[bytes]]
OnBadLine = Literal["raise", "warn", "skip"]

ON_BAD_LINE_VALUES = ("raise", "warn", "skip")
_GZIP_MAGIC = b"\x1f\x8b"


def read_source_bytes(source: Source) -> tuple[str, bytes]:
    """Return ``(name, content)`` of a dump given in any of the accepted forms.

    Parameters
    ----------
    source : path, file object, str or bytes
        ``bytes`` and ``str`` that contain a newline are the dump itself; any other
        ``str`` or ``os.PathLike`` is a path. Gzip content is recognised by its magic
        number, whatever the file is called.

    Returns
    -------
    name : str
        The path, the file object's ``name``, or ``"<string>"`` / ``"<bytes>"``;
        used in error messages.
    content : bytes
        The (decompressed) content.
    """
    if isinstance(source, bytes):
        name, data = "<bytes>", source
    elif isinstance(source, str) and ("\n" in source or source == ""):
        name, data = "<string>", source.encode()
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{name}: no such file (a dump path was expected)") from None
    elif hasattr(source, "read"):
        name = str(getattr(source, "name", "<stream>"))
        raw = source.read()
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
    else:
        raise TypeError(
            "source must be a path, a file object, str or bytes; "
            f"got {type(source).__name__}"
        )
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParseError(name, 0, "a complete gzip stream", f"gzip error: {exc}") from None
    return name, data


def read_source_text(source: Source) -> tuple[str, str]:
    """Like :func:`read_source_bytes`, decoded as UTF-8 (undecodable bytes are replaced)."""
    name, data = read_source_bytes(source)
    return name, data.decode("utf-8", errors="replace")


def check_on_bad_line(on_bad_line: str) -> None:
    """Raise a ValueError naming the allowed values when ``on_bad_line`` is not one of them."""
    if on_bad_line not in ON_BAD_LINE_VALUES:
        raise ValueError(
            f"on_bad_line must be one of {ON_BAD_LINE_VALUES}, got {on_bad_line!r}"
        )


@dataclasses.dataclass(frozen=True)
class ParseReport:
    """What a reader did with its input, line by line.

    ``lines_parsed + lines_skipped == lines_total`` always holds: blank lines,
    comments and summary lines the format defines count as parsed.

    Attributes
    ----------
    source : str
        Name of the source (path or ``"<string>"``).
    format : str
        The format that was read (for example ``"conntrack"``, ``"iptables-save"``).
    lines_total : int
        Lines in the input.
    lines_parsed : int
        Lines understood.
    skipped_linenos : tuple of int
        1-based numbers of the lines skipped under ``on_bad_line="warn"|"skip"``.
    first_error : str or None
        The message of the first skipped line, if any.
    """

    source: str
    format: str
    lines_total: int
    lines_parsed: int
    skipped_linenos: tuple[int, ...] = ()
    first_error: str | None = None

    @property
    def lines_skipped(self) -> int:
        """Number of lines skipped."""
        return len(self.skipped_linenos)


class BadLines:
    """Apply an ``on_bad_line`` policy and remember what was skipped.

    Readers call :meth:`bad` for each line they cannot parse; with ``"raise"`` it
    raises the :class:`~npanalytics.ParseError` at once, otherwise it records the
    line number. :meth:`report` builds the :class:`ParseReport` and emits a single
    :class:`~npanalytics.exceptions.ParseWarning` under ``"warn"``.
    """

    def __init__(self, source: str, on_bad_line: str) -> None:
        check_on_bad_line(on_bad_line)
        self.source = source
        self.policy = on_bad_line
        self.linenos: list[int] = []
        self.first_error: str | None = None

    def bad(self, lineno: int, expected: str, line: str) -> None:
        """Handle one bad line (raise, or record it)."""
        err = ParseError(self.source, lineno, expected, line)
        if self.policy == "raise":
            raise err
        if self.first_error is None:
            self.first_error = str(err)
        self.linenos.append(lineno)

    def report(self, fmt: str, lines_total: int) -> ParseReport:
        """Return the report; warn once if lines were skipped under ``"warn"``."""
        skipped = tuple(sorted(self.linenos))
        if skipped and self.policy == "warn":
            shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
            warnings.warn(
                f"{self.source}: skipped {len(skipped)} of {lines_total} lines "
                f"(line {shown}); first: {self.first_error}",
                ParseWarning,
                stacklevel=3,
            )
        return ParseReport(
            source=self.source,
            format=fmt,
            lines_total=lines_total,
            lines_parsed=lines_total - len(skipped),
            skipped_linenos=skipped,
            first_error=self.first_error,
        )


def count_lines(data: bytes | str) -> int:
    """Number of lines as ``str.splitlines`` counts them (a final newline ends a line)."""
    if not data:
        return 0
    nl = b"\n" if isinstance(data, bytes) else "\n"
    return data.count(nl) + (0 if data.endswith(nl) else 1)


__all__ = [
    "Source",
    "OnBadLine",
    "ParseReport",
    "BadLines",
    "read_source_bytes",
    "read_source_text",
    "check_on_bad_line",
    "count_lines",
]
