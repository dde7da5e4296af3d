"""Read conntrack tables: ``conntrack -L`` (default, extended, XML), ``/proc/net/nf_conntrack``
and the statistics of ``conntrack -S`` / ``/proc/net/stat/nf_conntrack``.

Formats are described in ../shared/KUBE_FACTS.md §5. Two parsers read the line formats:

- :func:`_parse_line` -- a plain per-line parser. It is the specification: it decides what
  is accepted and words every error.
- :func:`_scan` -- a compiled kernel (numba, imported on first use) that walks the bytes
  a line at a time and writes the common shapes of lines straight into the output
  columns; every line it does not fully understand (and every line with a problem) goes
  to :func:`_parse_line`, so the two give identical frames (a hypothesis test checks it).
  A dump is read in chunks of a megabyte, two chunks at a time.

Event lines (``conntrack -E``, prefixed ``[NEW]``/``[UPDATE]``/``[DESTROY]``) are rejected
with a ParseError that says so. ``srckey``/``dstkey`` (GRE) and ``start``/``stop``
(``-o ktimestamp``) are validated but not stored: the frame spec has no column for them.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..exceptions import CollectorError
from ..schemas import SCHEMAS, empty_frame, schema_table
from ._source import BadLines, Source, check_on_bad_line, count_lines, read_source_bytes

__all__ = ["read_conntrack", "read_conntrack_stats", "get_conntrack", "get_conntrack_stats"]

FORMATS = ("auto", "conntrack", "extended", "proc", "xml")
"""Values of ``read_conntrack(format=...)``."""

# ---------------------------------------------------------------------------------------
# The row model shared by both parsers
# ---------------------------------------------------------------------------------------

# Numeric slots of a row: (slot name, output column or None when only validated, maximum).
_I64 = 2**63 - 1
_NUM_SLOTS: tuple[tuple[str, str | None, int], ...] = (
    ("orig_sport", "orig_src_port", 65535),
    ("orig_dport", "orig_dst_port", 65535),
    ("reply_sport", "reply_src_port", 65535),
    ("reply_dport", "reply_dst_port", 65535),
    ("orig_type", "icmp_type", 255),
    ("orig_code", "icmp_code", 255),
    ("orig_id", "icmp_id", 65535),
    ("reply_type", None, 255),
    ("reply_code", None, 255),
    ("reply_id", None, 65535),
    ("orig_packets", "orig_packets", _I64),
    ("orig_bytes", "orig_bytes", _I64),
    ("reply_packets", "reply_packets", _I64),
    ("reply_bytes", "reply_bytes", _I64),
    ("zone-orig", "zone_orig", 65535),
    ("zone-reply", "zone_reply", 65535),
    ("mark", "mark", _I64),
    ("secmark", "secmark", _I64),
    ("zone", "zone", 65535),
    ("delta-time", "delta_time_seconds", _I64),
    ("use", "use", _I64),
    ("ct_id", "conntrack_id", _I64),
    ("timeout", "timeout_seconds", _I64),
    ("protonum", "protocol_number", _I64),
)
_NUM = {name: i for i, (name, _, _) in enumerate(_NUM_SLOTS)}
_NUM_MAX = np.array([m for _, _, m in _NUM_SLOTS], dtype=np.int64)
# String slots (codes into one dictionary per block).
_STR_SLOTS = (
    ("orig_src", "orig_src_ip"),
    ("orig_dst", "orig_dst_ip"),
    ("reply_src", "reply_src_ip"),
    ("reply_dst", "reply_dst_ip"),
    ("l3", "l3_protocol"),
    ("proto", "protocol"),
    ("state", "state"),
    ("secctx", "secctx"),
    ("helper", "helper"),
    ("labels", "labels"),
)
_FLAGS = ("[UNREPLIED]", "[ASSURED]", "[OFFLOAD]", "[HW_OFFLOAD]")
_FLAG_COLUMNS = ("unreplied", "assured", "offload", "hw_offload")

_TUPLE_KEYS = ("dst", "sport", "dport", "type", "code", "id", "packets", "bytes", "srckey", "dstkey")
_GLOBAL_NUM_KEYS = ("zone-orig", "zone-reply", "mark", "secmark", "zone", "delta-time", "use")
_GLOBAL_STR_KEYS = ("secctx", "helper", "labels")
_IGNORED_KEYS = ("start", "stop")  # -o ktimestamp: no column in the spec
_KNOWN_KEYS = ("src",) + _TUPLE_KEYS + _GLOBAL_NUM_KEYS + _GLOBAL_STR_KEYS + _IGNORED_KEYS
_EVENT_PREFIXES = ("[NEW]", "[UPDATE]", "[DESTROY]")

_DIGITS = re.compile(r"[0-9]+")
_WORD = re.compile(r"[A-Za-z0-9_-]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_SUMMARY = re.compile(r"conntrack v\S+ \(conntrack-tools\): ([0-9]+) flow entries have been shown\.")


class _Bad(Exception):
    """A line is not understood: ``expected`` says what was wanted."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_IP_CACHE: dict[str, str | None] = {}


def _canon_ip(text: str) -> str | None:
    """The canonical spelling of an address (IPv6 compressed), or None if it is not one."""
    try:
        return _IP_CACHE[text]
    except KeyError:
        pass
    try:
        value: str | None = str(ipaddress.ip_address(text))
    except ValueError:
        value = None
    if len(_IP_CACHE) < 1_000_000:
        _IP_CACHE[text] = value
    return value


def _number(value: str, what: str, maximum: int = _I64) -> int:
    if not _DIGITS.fullmatch(value):
        raise _Bad(f"a decimal number in {what}")
    number = int(value)
    if number > maximum:
        raise _Bad(f"{what} at most {maximum}")
    return number


def _parse_line(line: str, extended: bool) -> tuple[dict[str, int], dict[str, str], list[bool]]:
    """Parse one entry line (the specification of the line formats).

    Returns ``(numbers, strings, flags)``: numeric slots by name, string slots by
    name, and the four flags. Raises :class:`_Bad` naming what was expected.
    """
    tokens = line.split()
    if tokens and tokens[0] in _EVENT_PREFIXES:
        raise _Bad("a conntrack -L entry (event lines of conntrack -E are not supported)")
    nums: dict[str, int] = {}
    strs: dict[str, str] = {}
    flags = [False, False, False, False]
    i = 0
    if extended:
        if len(tokens) < 2 or not _WORD.fullmatch(tokens[0]) or "=" in tokens[0]:
            raise _Bad("an L3 protocol name (ipv4, ipv6) first")
        strs["l3"] = tokens[0]
        _number(tokens[1], "the L3 protocol number")
        i = 2
    if len(tokens) < i + 2 or not _WORD.fullmatch(tokens[i]):
        raise _Bad("an L4 protocol name and number")
    strs["proto"] = tokens[i]
    nums["protonum"] = _number(tokens[i + 1], "the L4 protocol number")
    i += 2
    first_key = next((j for j in range(i, len(tokens)) if "=" in tokens[j]), None)
    if first_key is None:
        raise _Bad("src= dst= ... tuples")
    positional = tokens[i:first_key]
    if len(positional) > 2:
        raise _Bad("at most a timeout and a state before the tuples")
    if len(positional) == 2:
        nums["timeout"] = _number(positional[0], "the timeout")
        if not _WORD.fullmatch(positional[1]):
            raise _Bad("a protocol state")
        strs["state"] = positional[1]
    elif len(positional) == 1:
        if _DIGITS.fullmatch(positional[0]):
            nums["timeout"] = _number(positional[0], "the timeout")
        elif _WORD.fullmatch(positional[0]):
            strs["state"] = positional[0]
        else:
            raise _Bad("a timeout or a protocol state")
    direction = ""
    seen: set[str] = set()
    prev_key = ""
    for tok in tokens[first_key:]:
        if "=" not in tok:
            if tok not in _FLAGS:
                raise _Bad("key=value or a flag ([UNREPLIED], [ASSURED], [OFFLOAD], [HW_OFFLOAD])")
            k = _FLAGS.index(tok)
            if flags[k]:
                raise _Bad(f"{tok} only once")
            flags[k] = True
            prev_key = ""
            continue
        key, value = tok.split("=", 1)
        if key not in _KNOWN_KEYS:
            close = difflib.get_close_matches(key, _KNOWN_KEYS, 1)
            hint = f" (did you mean {close[0]}=?)" if close else ""
            raise _Bad(f"a known key{hint}")
        if key == "src":
            direction = "orig" if direction == "" else "reply" if direction == "orig" else "x"
            if direction == "x":
                raise _Bad("two tuples (a third src=)")
            slot = direction + "_src"
            strs[slot] = _ip(value, "src=")
            seen.add(slot)
        elif key in _TUPLE_KEYS or key == "id":
            if key == "id" and prev_key != "code":
                slot = "ct_id"
            elif direction == "":
                raise _Bad("src= before " + key + "=")
            else:
                slot = f"{direction}_{key}" if key != "id" else f"{direction}_id"
            if slot in seen:
                raise _Bad(f"{key}= only once per tuple")
            seen.add(slot)
            if key == "dst":
                strs[slot] = _ip(value, "dst=")
            elif key in ("srckey", "dstkey"):
                if not _HEX.fullmatch(value):
                    raise _Bad(f"a hex key in {key}=")
            else:
                name = {"sport": "sport", "dport": "dport"}.get(key, key)
                nums[f"{direction}_{name}" if slot != "ct_id" else slot] = _number(
                    value, key + "=", int(_NUM_MAX[_NUM[slot]])
                )
        else:
            slot = key
            if slot in seen:
                raise _Bad(f"{key}= only once")
            seen.add(slot)
            if key in _GLOBAL_NUM_KEYS:
                nums[key] = _number(value, key + "=", int(_NUM_MAX[_NUM[key]]))
            elif key in _GLOBAL_STR_KEYS:
                if value == "":
                    raise _Bad(f"a value in {key}=")
                strs[key] = value
            elif not _DIGITS.fullmatch(value.replace(".", "", 1)):
                raise _Bad(f"a time in {key}=")
        prev_key = key
    for d in ("orig", "reply"):
        if d + "_src" not in strs or d + "_dst" not in strs:
            raise _Bad(f"{'an original' if d == 'orig' else 'a reply'} tuple with src= and dst=")
        for group in (("sport", "dport"), ("type", "code", "id"), ("packets", "bytes"), ("srckey", "dstkey")):
            have = [f"{d}_{k}" in seen for k in group]
            if any(have) and not all(have):
                raise _Bad(" ".join(k + "=" for k in group) + " together")
    if "l3" not in strs:
        strs["l3"] = "ipv6" if ":" in strs["orig_src"] else "ipv4"
    return nums, strs, flags


def _ip(value: str, what: str) -> str:
    canon = _canon_ip(value) if value.isascii() and 0 < len(value) <= 39 else None
    if canon is None:
        raise _Bad(f"an IP address in {what}")
    return canon


def _line_kind(line: str) -> tuple[str, int]:
    """``("blank", 0)``, ``("summary", N)`` or ``("entry", 0)``."""
    stripped = line.strip()
    if not stripped:
        return "blank", 0
    m = _SUMMARY.fullmatch(stripped)
    if m:
        return "summary", int(m.group(1))
    return "entry", 0


# ---------------------------------------------------------------------------------------
# The fast path: one compiled pass over the bytes
# ---------------------------------------------------------------------------------------
#
# The functions of this section are plain Python until :func:`_compiled` hands them to
# numba (imported then, not at ``import npanalytics``). The kernel reads the common shapes
# of lines -- tcp/udp/icmp/sctp over IPv4, in the default or the extended/proc layout --
# and leaves every other line (IPv6, rare keys, blank and summary lines, anything odd,
# any error) to :func:`_parse_line`. It only accepts what :func:`_parse_line` accepts,
# with the same values, so both paths give the same frame.

# Names the kernel knows; their index is the code it writes (``_Output.words`` starts so).
_L3_NAMES = ("ipv4",)
_PROTO_NAMES = ("tcp", "udp", "icmp", "sctp", "udplite", "dccp", "unknown")
_STATE_NAMES = (
    "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "CLOSE",
    "NONE", "SYN_SENT2", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "SHUTDOWN_SENT", "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT", "HEARTBEAT_ACKED",
)
_NAMES = _L3_NAMES + _PROTO_NAMES + _STATE_NAMES
_PROTO_FIRST = len(_L3_NAMES)
_STATE_FIRST = _PROTO_FIRST + len(_PROTO_NAMES)
# Keys the kernel knows.
_FAST_KEYS = ("src", "dst", "sport", "dport", "packets", "bytes", "mark", "use", "delta-time",
              "type", "code", "id", "zone", "zone-orig", "zone-reply", "secmark")
_K_SRC, _K_DST, _K_CODE, _K_ID = (_FAST_KEYS.index(k) for k in ("src", "dst", "code", "id"))
# The kernel's keys differ in length or first letter: this table tells which one to compare.
_KEY_AT = np.full((16, 128), -1, np.int64)
for _k, _key in enumerate(_FAST_KEYS):
    _KEY_AT[len(_key), ord(_key[0])] = _k
del _k, _key
# Numeric slot of each key in the original (column 0) and reply (column 1) tuple; the
# same slot twice for keys outside the tuples. ``id=`` right after ``code=`` is the ICMP
# id, any other ``id=`` the entry id.
_KEY_SLOT = np.array(
    [(-1, -1), (-1, -1)]
    + [(_NUM[f"orig_{k}"], _NUM[f"reply_{k}"]) for k in ("sport", "dport", "packets", "bytes")]
    + [(_NUM[k], _NUM[k]) for k in ("mark", "use", "delta-time")]
    + [(_NUM[f"orig_{k}"], _NUM[f"reply_{k}"]) for k in ("type", "code", "id")]
    + [(_NUM[k], _NUM[k]) for k in ("zone", "zone-orig", "zone-reply", "secmark")],
    dtype=np.int64,
)
_KEY_IN_TUPLE = np.array([k in _TUPLE_KEYS for k in _FAST_KEYS])
# Slots of the keys that come all or none in a tuple, per direction (-1: no third).
_GROUPS = np.array(
    [[_NUM[f"{d}_{k}"] for k in ("sport", "dport")] + [-1] for d in ("orig", "reply")]
    + [[_NUM[f"{d}_{k}"] for k in ("type", "code", "id")] for d in ("orig", "reply")]
    + [[_NUM[f"{d}_{k}"] for k in ("packets", "bytes")] + [-1] for d in ("orig", "reply")],
    dtype=np.int64,
)
_PROTONUM, _TIMEOUT, _CT_ID = _NUM["protonum"], _NUM["timeout"], _NUM["ct_id"]
_MIN_ENTRY = 31  # "a 1 src=:: dst=:: src=:: dst=::": no entry line is shorter (bytes, no newline)


def _packed(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Words as one byte array and the offsets of their starts (and of the end)."""
    data = "".join(words).encode("ascii")
    offsets = np.zeros(len(words) + 1, np.int64)
    np.cumsum([len(w) for w in words], out=offsets[1:])
    return np.frombuffer(data, np.uint8).copy(), offsets


# Output layout: every numeric slot with a column is a row of the int64 or the int32
# table (``_OUT_TABLE`` 1 or 2, ``_OUT_ROW``) and of the ``missing`` table (``_OUT_MISSING``).
_OUT_SLOTS = [(j, slot, col) for j, (slot, col, _) in enumerate(_NUM_SLOTS) if col is not None]
_OUT_TABLE = np.zeros(len(_NUM_SLOTS), np.int64)
_OUT_ROW = np.full(len(_NUM_SLOTS), -1, np.int64)
_OUT_MISSING = np.full(len(_NUM_SLOTS), -1, np.int64)
for _m, (_j, _slot, _col) in enumerate(_OUT_SLOTS):
    _OUT_TABLE[_j] = 2 if SCHEMAS["conntrack_flows"].column(_col).dtype == "Int32" else 1
    _OUT_ROW[_j] = int(np.count_nonzero(_OUT_TABLE[:_j] == _OUT_TABLE[_j]))
    _OUT_MISSING[_j] = _m
del _m, _j, _slot, _col
_N64 = int(np.count_nonzero(_OUT_TABLE == 1))
_N32 = int(np.count_nonzero(_OUT_TABLE == 2))
# The kernel reads these tables as globals: numba compiles them in as constants (as an
# argument, a tuple of arrays cost reference counting on every line, ~15% of the time).
_NAME_DATA, _NAME_OFF = _packed(_NAMES)
_KEY_DATA, _KEY_OFF = _packed(_FAST_KEYS)
_FLAG_DATA, _FLAG_OFF = _packed(_FLAGS)


def _match(buf, start, end, data, offsets, first, stop):
    """Index in ``[first, stop)`` of the packed word equal to ``buf[start:end]``, or -1."""
    n = end - start
    for w in range(first, stop):
        if offsets[w + 1] - offsets[w] == n:
            o = offsets[w] - start
            i = start
            while i < end and buf[i] == data[o + i]:
                i += 1
            if i == end:
                return w
    return -1


def _decimal(buf, start):
    """``(value, stop)``: the decimal number that starts at ``start`` and ends at ``stop``
    (the first byte that is not a digit); value -1 for none or more than 18 digits."""
    value = 0
    i = start
    while 48 <= buf[i] <= 57:
        value = value * 10 + buf[i] - 48
        i += 1
    return (value if 0 < i - start <= 18 else -1), i


def _ipv4(buf, start):
    """``(value, stop)``: the IPv4 address that starts at ``start`` as a number (-1 if it is
    not one as :mod:`ipaddress` reads it: four parts of at most 255, no leading zero)."""
    value = 0
    i = start
    for part in range(4):
        if part > 0:
            if buf[i] != 46:
                return -1, i
            i += 1
        first = i
        octet = 0
        while 48 <= buf[i] <= 57 and i - first < 3:
            octet = octet * 10 + buf[i] - 48
            i += 1
        if i == first or octet > 255 or (i - first > 1 and buf[first] == 48):
            return -1, i
        value = value * 256 + octet
    return value, i


def _fast_line(buf, start, extended, nums, have, ips, names, flags):
    """Read the line at ``start`` into the scratch arrays. Returns the position of its
    newline, or -1 if it is not a line the kernel reads (what it wrote then does not count).

    ``nums``/``have``: numeric slots (``_NUM_SLOTS``); ``ips``: the four addresses (original
    src, dst, reply src, dst); ``names``: codes of l3, protocol, state (-1: none); ``flags``.
    Each byte is looked at once: a key is read up to its ``=``, its value parsed in place;
    no bounds are checked, as every loop stops at the newline that ends each line.
    """
    for j in range(len(have)):
        have[j] = False
    for j in range(4):
        ips[j] = -1
    for j in range(3):
        names[j] = -1
    for j in range(len(flags)):
        flags[j] = False
    # fields in order: 0 L3 name, 1 L3 number, 2 L4 name, 3 L4 number, 4 timeout/state, 5 keys
    field = 0 if extended else 2
    positional = 0
    direction = -1  # -1 before the first src=, then 0 (original), 1 (reply)
    prev = -1  # the previous key (-1 after a flag)
    i = start
    while True:
        while buf[i] == 32:
            i += 1
        if buf[i] == 10:
            break
        a = i
        while 97 <= buf[i] <= 122 or buf[i] == 45:  # a-z and -: a key's bytes
            i += 1
        if buf[i] == 61 and field >= 4:  # key=value
            field = 5
            k = _KEY_AT[i - a, buf[a]] if i - a < len(_KEY_AT) else -1
            if k < 0 or _match(buf, a, i, _KEY_DATA, _KEY_OFF, k, k + 1) < 0:
                return -1
            if k == _K_SRC or k == _K_DST:
                if k == _K_SRC:
                    direction += 1
                if direction < 0 or direction > 1:
                    return -1
                slot = 2 * direction + (1 if k == _K_DST else 0)
                if ips[slot] >= 0:
                    return -1
                ips[slot], i = _ipv4(buf, i + 1)
                if ips[slot] < 0:
                    return -1
            else:
                if k == _K_ID and prev != _K_CODE:
                    slot = _CT_ID
                elif _KEY_IN_TUPLE[k] and direction < 0:
                    return -1
                else:
                    slot = _KEY_SLOT[k, max(direction, 0)]
                if have[slot]:
                    return -1
                nums[slot], i = _decimal(buf, i + 1)
                if nums[slot] < 0 or nums[slot] > _NUM_MAX[slot]:
                    return -1
                have[slot] = True
            if buf[i] != 32 and buf[i] != 10:
                return -1
            prev = k
            continue
        while 32 < buf[i] < 127 and buf[i] != 61:  # any other token: printable ASCII but =
            i += 1
        if buf[i] != 32 and buf[i] != 10:
            return -1
        if field == 0 or field == 2:  # L3 (ipv4 only) or L4 protocol name
            first, stop = (0, _PROTO_FIRST) if field == 0 else (_PROTO_FIRST, _STATE_FIRST)
            names[field // 2] = _match(buf, a, i, _NAME_DATA, _NAME_OFF, first, stop)
            if names[field // 2] < 0:
                return -1
            field += 1
        elif field == 1 or field == 3:  # L3 or L4 protocol number
            value, stop = _decimal(buf, a)
            if value < 0 or stop != i:
                return -1
            nums[_PROTONUM] = value
            have[_PROTONUM] = field == 3
            field += 1
        elif field == 4:  # [timeout] [state]
            positional += 1
            value, stop = _decimal(buf, a)
            if positional == 1 and value >= 0 and stop == i:
                nums[_TIMEOUT] = value
                have[_TIMEOUT] = True
            else:
                names[2] = _match(buf, a, i, _NAME_DATA, _NAME_OFF, _STATE_FIRST, len(_NAME_OFF) - 1)
                if names[2] < 0 or positional > 2 or (positional == 2 and not have[_TIMEOUT]):
                    return -1
        else:  # a flag
            k = _match(buf, a, i, _FLAG_DATA, _FLAG_OFF, 0, len(_FLAG_OFF) - 1)
            if k < 0 or flags[k]:
                return -1
            flags[k] = True
            prev = -1
    if field != 5 or ips.min() < 0:
        return -1
    for g in range(len(_GROUPS)):
        for j in range(1, 3):
            if _GROUPS[g, j] >= 0 and have[_GROUPS[g, j]] != have[_GROUPS[g, 0]]:
                return -1
    if not extended:
        names[0] = 0  # ipv4: the kernel reads IPv4 addresses only
    return i


def _scan(buf, pos, extended, fast, lineno, row, out, fallback):
    """Read the lines of ``buf`` (which ends with a newline) from byte ``pos`` on.

    Rows go to the output tables ``out`` from row ``row`` on. Each line the kernel does
    not read is listed in ``fallback`` (start, end, line number, the row kept for it or
    -1 for lines too short to be an entry, the rows read so far in this call), and a row
    is kept for it so that the rows stay in line order. Stops at the end of ``buf`` or
    when ``fallback`` is full. Returns ``(pos, lineno, row, fallbacks, read)``: where it
    stopped, the next line number, the next row, how many lines went to ``fallback``, how
    many rows the kernel read. ``fast=False`` leaves every line to the reference parser
    (a test knob).
    """
    out_lineno, num64, num32, missing, ipkeys, codes, flag_out = out
    nslots = len(_OUT_TABLE)
    nums = np.zeros(nslots, np.int64)
    have = np.zeros(nslots, np.bool_)
    ips = np.zeros(4, np.int64)
    names = np.zeros(3, np.int64)
    flags = np.zeros(flag_out.shape[0], np.bool_)
    nfb = 0
    read = 0
    n = len(buf)
    while pos < n and nfb < fallback.shape[0]:
        end = _fast_line(buf, pos, extended, nums, have, ips, names, flags) if fast else -1
        if end >= 0:
            out_lineno[row] = lineno
            for s in range(nslots):
                value = nums[s] if have[s] else 0
                if _OUT_TABLE[s] == 1:
                    num64[_OUT_ROW[s], row] = value
                elif _OUT_TABLE[s] == 2:
                    num32[_OUT_ROW[s], row] = value
                if _OUT_MISSING[s] >= 0:
                    missing[_OUT_MISSING[s], row] = not have[s]
            for j in range(4):
                ipkeys[j, row] = ips[j]
            for j in range(3):
                codes[j, row] = names[j]
            for j in range(3, codes.shape[0]):
                codes[j, row] = -1
            for j in range(len(flags)):
                flag_out[j, row] = flags[j]
            row += 1
            read += 1
        else:
            end = pos
            while buf[end] != 10:
                end += 1
            fallback[nfb, 0] = pos
            fallback[nfb, 1] = end
            fallback[nfb, 2] = lineno
            fallback[nfb, 3] = row if end - pos >= _MIN_ENTRY else -1
            fallback[nfb, 4] = read
            if end - pos >= _MIN_ENTRY:
                row += 1
            nfb += 1
        lineno += 1
        pos = end + 1
    return pos, lineno, row, nfb, read


_KERNEL = ("_match", "_decimal", "_ipv4", "_fast_line", "_scan", "_count_rows")


_COMPILING = threading.Lock()


def _compiled():
    """:func:`_scan` compiled (numba, cached on disk: the first call on a machine pays
    the compilation, a few seconds; each process then loads it, about half a second)."""
    g = globals()
    with _COMPILING:
        if not hasattr(g["_scan"], "py_func"):
            from numba import njit

            for name in _KERNEL:  # callees first: a kernel function sees the compiled ones
                g[name] = njit(cache=True, nogil=True)(g[name])
    return g["_scan"]


# ---------------------------------------------------------------------------------------
# The output columns, and driving both parsers over an input
# ---------------------------------------------------------------------------------------


class _Output:
    """The frame's columns, allocated once for at most ``capacity`` rows and filled in place.

    The tables hold one column per row, so a column is a contiguous view, and a capacity
    computed from the input's size (an upper bound) costs only the pages the rows reach.
    Address columns hold keys: an IPv4 address is its number, any other address
    ``2**32 +`` its index in ``words``; the other text columns hold indices into ``words``
    (-1: NA), which starts with the kernel's names.
    """

    def __init__(self, capacity: int) -> None:
        cap = max(int(capacity), 1)
        self.lineno = np.empty(cap, np.int64)
        self.num64 = np.empty((_N64, cap), np.int64)
        self.num32 = np.empty((_N32, cap), np.int32)
        self.missing = np.empty((len(_OUT_SLOTS), cap), bool)
        self.ipkeys = np.empty((4, cap), np.int64)
        self.codes = np.empty((len(_STR_SLOTS) - 4, cap), np.int32)
        self.flags = np.empty((len(_FLAGS), cap), bool)
        self.words: dict[str, int] = {w: i for i, w in enumerate(_NAMES)}
        self.n = 0
        self.dead: list[int] = []  # rows kept for lines that turned out not to be entries

    def tables(self) -> tuple[np.ndarray, ...]:
        return self.lineno, self.num64, self.num32, self.missing, self.ipkeys, self.codes, self.flags

    def put(self, row: int, lineno: int, nums: dict[str, int], strs: dict[str, str], flags: list[bool]) -> None:
        """Write the row of an entry read by the reference parser."""
        self.lineno[row] = lineno
        for j, slot, _ in _OUT_SLOTS:
            value = nums.get(slot)
            table = self.num64 if _OUT_TABLE[j] == 1 else self.num32
            table[_OUT_ROW[j], row] = 0 if value is None else value
            self.missing[_OUT_MISSING[j], row] = value is None
        for j, (slot, _) in enumerate(_STR_SLOTS):
            text = strs.get(slot)
            if j < 4:
                v4 = "." in text and ":" not in text  # canonical IPv4: the kernel's key
                self.ipkeys[j, row] = int(ipaddress.IPv4Address(text)) if v4 else 2**32 + self._word(text)
            else:
                self.codes[j - 4, row] = -1 if text is None else self._word(text)
        self.flags[:, row] = flags

    def _word(self, text: str) -> int:
        return self.words.setdefault(text, len(self.words))

    def compact(self) -> None:
        """Drop the dead rows (a summary line's row, the last, costs nothing)."""
        while self.dead and self.dead[-1] == self.n - 1:
            self.dead.pop()
            self.n -= 1
        if not self.dead:
            return
        keep = np.ones(self.n, bool)
        keep[self.dead] = False
        m = int(np.count_nonzero(keep))
        for table in (self.lineno[None], self.num64, self.num32, self.missing, self.ipkeys, self.codes, self.flags):
            for column in table:
                column[:m] = column[: self.n][keep]
        self.n, self.dead = m, []

    def frame(self, node_port_range: tuple[int, int]) -> pd.DataFrame:
        """The ``conntrack_flows`` frame (mostly views of the tables)."""
        n = self.n
        if n == 0:
            return empty_frame("conntrack_flows")
        spec = SCHEMAS["conntrack_flows"]
        out: dict[str, object] = {"lineno": self.lineno[:n]}
        nums = {}
        for j, slot, col in _OUT_SLOTS:
            values = (self.num64 if _OUT_TABLE[j] == 1 else self.num32)[_OUT_ROW[j], :n]
            mask = self.missing[_OUT_MISSING[j], :n]
            nums[slot] = values, mask
            out[col] = values if spec.column(col).dtype == "int64" else pd.arrays.IntegerArray(values, mask)
        words = np.array(list(self.words), dtype=object)
        keys = {slot: self.ipkeys[j, :n] for j, (slot, _) in enumerate(_STR_SLOTS[:4])}
        jobs = [(_address_categorical, keys[slot]) for slot, _ in _STR_SLOTS[:4]]
        jobs += [(_categorical, self.codes[j, :n]) for j in range(len(_STR_SLOTS) - 4)]
        with ThreadPoolExecutor(_THREADS) as pool:  # factorize, take, bincount release the GIL
            columns = pool.map(lambda job: job[0](job[1], words), jobs)
            out.update(zip([col for _, col in _STR_SLOTS], columns))
        for k, col in enumerate(_FLAG_COLUMNS):
            out[col] = self.flags[k, :n]
        out["service_ip"] = out["orig_dst_ip"]
        out["service_port"] = out["orig_dst_port"]
        out["backend_ip"] = out["reply_src_ip"]
        out["backend_port"] = out["reply_src_port"]

        def differs(ip_a, ip_b, port_a, port_b):
            (va, ma), (vb, mb) = nums[port_a], nums[port_b]
            return (keys[ip_a] != keys[ip_b]) | (ma != mb) | (~ma & ~mb & (va != vb))

        out["dnat"] = differs("reply_src", "orig_dst", "reply_sport", "orig_dport")
        out["snat"] = differs("reply_dst", "orig_src", "reply_dport", "orig_sport")
        lo, hi = node_port_range
        dv, dm = nums["orig_dport"]
        out["is_node_port"] = ~dm & (dv >= lo) & (dv <= hi)
        return pd.DataFrame({c.name: out[c.name] for c in spec.columns if c.required}, copy=False)


def _categorical(codes: np.ndarray, texts: np.ndarray) -> pd.Categorical:
    """Codes (-1: NA) into ``texts`` (distinct) as a Categorical whose categories are the
    texts that occur, sorted (as ``pd.Categorical(values)`` makes them)."""
    used = np.flatnonzero(np.bincount(codes + 1, minlength=len(texts) + 1)[1:])
    cats = texts[used]
    order = pc.array_sort_indices(pa.array(cats, pa.string())).to_numpy()
    remap = np.full(len(texts) + 1, -1, np.int32)
    remap[used[order] + 1] = np.arange(len(used), dtype=np.int32)
    categories = pd.Index(cats[order], dtype="str")
    return pd.Categorical.from_codes(remap[codes + 1], categories=categories, validate=False)


def _address_categorical(keys: np.ndarray, words: np.ndarray) -> pd.Categorical:
    """Address keys (see :class:`_Output`) as a Categorical; only distinct ones are spelled."""
    codes, distinct = pd.factorize(keys)
    texts = np.empty(len(distinct), object)
    v4 = distinct < 2**32
    octets = [pa.array((distinct[v4] >> shift) & 255).cast(pa.string()) for shift in (24, 16, 8, 0)]
    texts[v4] = pc.binary_join_element_wise(*octets, ".").to_numpy(zero_copy_only=False)
    texts[~v4] = words[distinct[~v4] - 2**32]
    order = pc.array_sort_indices(pa.array(texts, pa.string())).to_numpy()
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return pd.Categorical.from_codes(rank[codes], categories=pd.Index(texts[order], dtype="str"), validate=False)


_CHUNK = 1 << 20
_FALLBACK_ROWS = 4096  # lines handed to the reference parser per kernel call, at most
_THREADS = 2  # kernels run at once (numba releases the GIL); this project's machine has 2 cores


def _count_rows(buf):
    """``(lines, rows)`` of a chunk: its lines, and those long enough to be an entry (the
    rows :func:`_scan` will fill or keep)."""
    lines = rows = start = 0
    for i in range(len(buf)):
        if buf[i] == 10:
            lines += 1
            if i - start >= _MIN_ENTRY:
                rows += 1
            start = i + 1
    return lines, rows


def _scan_chunk(buf: np.ndarray, extended: bool, fast: bool, lineno: int, row: int, tables: tuple) -> list:
    """Run the kernel over one chunk (its first line is ``lineno``, its first row ``row``).

    Returns, per kernel call, the lines left to the reference parser and the rows the
    kernel read (see :func:`_scan`).
    """
    fallback = np.empty((_FALLBACK_ROWS, 5), np.int64)
    pos = 0
    calls = []
    while pos < len(buf):
        pos, lineno, row, nfb, read = _scan(buf, pos, extended, fast, lineno, row, tables, fallback)
        calls.append((fallback[:nfb].tolist(), read))
    return calls


def _read_lines(chunks: Iterator[np.ndarray], fmt: str, policy: BadLines, out: _Output,
                fast: bool = True) -> tuple[int, bool]:
    """Run the kernel over the chunks, ``_THREADS`` at a time, each straight into its rows
    of ``out``; then, chunk after chunk in order, the reference parser over the lines the
    kernel left.

    Returns the number of lines and whether a summary line was seen.
    """
    _compiled()
    extended = fmt in ("extended", "proc")
    entries = 0  # entry lines since the last summary line (read or skipped)
    saw_summary = False

    def finish(job) -> None:
        nonlocal entries, saw_summary
        future, buf = job
        for fallback, read in future.result():
            before = 0
            for start, end, lineno, row, read_before in fallback:
                entries += read_before - before
                before = read_before
                line = bytes(buf[start:end]).decode("utf-8", errors="replace")
                kind, count = _line_kind(line)
                if kind == "entry":
                    entries += 1
                    try:
                        record = _parse_line(line, extended)
                    except _Bad as exc:
                        policy.bad(lineno, exc.expected, line)
                    else:  # row >= 0: no entry is shorter than _MIN_ENTRY
                        out.put(row, lineno, *record)
                        continue
                elif kind == "summary":
                    saw_summary = True
                    if count != entries:
                        policy.bad(lineno, f"a summary of {entries} flow entries (the entries read)", line)
                    entries = 0
                if row >= 0:
                    out.dead.append(row)
            entries += read - before

    lines = rows = 0
    pending: deque = deque()
    with ThreadPoolExecutor(_THREADS) as pool:
        for buf in chunks:
            if len(pending) > _THREADS:
                finish(pending.popleft())
            job = pool.submit(_scan_chunk, buf, extended, fast, lines + 1, rows, out.tables())
            pending.append((job, buf))
            chunk_lines, chunk_rows = _count_rows(buf)
            lines += chunk_lines
            rows += chunk_rows
        while pending:
            finish(pending.popleft())
    out.n = rows
    out.compact()
    return lines, saw_summary


def _chunks(data: bytes, size: int = _CHUNK) -> Iterator[np.ndarray]:
    """Chunks of ``data`` cut after a newline (the last one ends with a newline too)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", min(start + size, len(data)) - 1) + 1 or len(data)
        yield _ending_line(np.frombuffer(data, np.uint8, end - start, start).copy())
        start = end


def _file_chunks(path: Path, size: int = _CHUNK) -> Iterator[np.ndarray]:
    """Chunks of a file cut after a newline (the last one ends with a newline too), each
    in its own array (the kernels of several chunks run at once)."""
    carry = b""
    with open(path, "rb", buffering=0) as f:
        while True:
            raw = bytearray(len(carry) + size)
            raw[: len(carry)] = carry
            got = f.readinto(memoryview(raw)[len(carry) :])
            end = len(carry) + got
            if not got:
                if end:
                    yield _ending_line(np.frombuffer(raw, np.uint8, end))
                return
            cut = raw.rfind(b"\n", 0, end) + 1
            carry = bytes(raw[cut:end])
            if cut:  # else a line longer than the chunk: read on
                yield np.frombuffer(raw, np.uint8, cut)


def _ending_line(buf: np.ndarray) -> np.ndarray:
    return buf if buf[-1] == 10 else np.append(buf, np.uint8(10))


def _detect(first: bytes) -> str:
    for raw in first.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(b"<"):
            return "xml"
        head = line.split(None, 1)[0]
        if head in (b"ipv4", b"ipv6"):
            return "extended"
        return "conntrack"
    return "conntrack"


# ---------------------------------------------------------------------------------------
# XML
# ---------------------------------------------------------------------------------------


def _xml_flow(flow: ET.Element) -> tuple[dict, dict, list]:
    nums: dict[str, int] = {}
    strs: dict[str, str] = {}
    flags = [False, False, False, False]
    metas = {m.get("direction"): m for m in flow.findall("meta")}
    for d in ("original", "reply"):
        meta = metas.get(d)
        pre = "orig" if d == "original" else "reply"
        if meta is None:
            raise _Bad(f'a <meta direction="{d}"> element')
        l3 = meta.find("layer3")
        l4 = meta.find("layer4")
        if l3 is None or l4 is None:
            raise _Bad(f"<layer3> and <layer4> in the {d} tuple")
        if d == "original":
            strs["l3"] = l3.get("protoname", "")
            strs["proto"] = l4.get("protoname", "")
            nums["protonum"] = _number(l4.get("protonum", ""), "layer4 protonum")
            if not _WORD.fullmatch(strs["l3"]) or not _WORD.fullmatch(strs["proto"]):
                raise _Bad("protoname attributes")
        for tag in ("src", "dst"):
            el = l3.find(tag)
            if el is None or el.text is None:
                raise _Bad(f"<{tag}> in the {d} layer3")
            strs[f"{pre}_{tag}"] = _ip(el.text.strip(), f"<{tag}>")
        for tag, slot in (("sport", "sport"), ("dport", "dport"), ("type", "type"), ("code", "code"), ("id", "id")):
            el = l4.find(tag)
            if el is not None:
                nums[f"{pre}_{slot}"] = _number((el.text or "").strip(), f"<{tag}>", int(_NUM_MAX[_NUM[f'{pre}_{slot}']]))
        counters = meta.find("counters")
        if counters is not None:
            for tag in ("packets", "bytes"):
                el = counters.find(tag)
                if el is None:
                    raise _Bad(f"<{tag}> in <counters>")
                nums[f"{pre}_{tag}"] = _number((el.text or "").strip(), f"<{tag}>")
        zone = meta.find("zone")
        if zone is not None:
            nums["zone-orig" if pre == "orig" else "zone-reply"] = _number((zone.text or "").strip(), "<zone>", 65535)
    ind = metas.get("independent")
    if ind is not None:
        for child in ind:
            tag, text = child.tag, (child.text or "").strip()
            if tag == "state":
                if not _WORD.fullmatch(text):
                    raise _Bad("a protocol state in <state>")
                strs["state"] = text
            elif tag in ("timeout", "mark", "secmark", "use", "zone", "deltatime", "id"):
                slot = {"deltatime": "delta-time", "id": "ct_id", "timeout": "timeout"}.get(tag, tag)
                nums[slot] = _number(text, f"<{tag}>", int(_NUM_MAX[_NUM[slot]]))
            elif tag in ("secctx", "helper"):
                strs[tag] = text
            elif tag == "labels":
                strs["labels"] = ",".join((lab.text or "").strip() for lab in child)
            elif tag == "assured":
                flags[1] = True
            elif tag == "unreplied":
                flags[0] = True
            elif tag == "offload":
                flags[2] = True
            elif tag == "hw_offload":
                flags[3] = True
    for d in ("orig", "reply"):
        for group in (("sport", "dport"), ("type", "code", "id"), ("packets", "bytes")):
            have = [f"{d}_{k}" in nums for k in group]
            if any(have) and not all(have):
                raise _Bad(" ".join(f"<{k}>" for k in group) + " together")
    return nums, strs, flags


def _read_xml(data: bytes, name: str, policy: BadLines) -> list[tuple[int, dict, dict, list]]:
    parser = ET.XMLPullParser(events=("end",))
    records = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    closed = False
    entries = 0
    for lineno, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", errors="replace")
        if closed:
            kind, count = _line_kind(text)
            if kind == "blank":
                continue
            if kind == "summary":
                if count != entries:
                    policy.bad(lineno, f"a summary of {entries} flow entries (the entries read)", text)
                continue
            policy.bad(lineno, "nothing after </conntrack> but the summary line", text)
            continue
        try:
            parser.feed(raw + b"\n")
            for _, el in parser.read_events():
                if el.tag == "flow":
                    entries += 1
                    try:
                        records.append((lineno, *_xml_flow(el)))
                    except _Bad as exc:
                        policy.bad(lineno, exc.expected, text)
                    el.clear()
                elif el.tag == "conntrack":
                    closed = True
        except ET.ParseError as exc:
            line = exc.position[0] if exc.position else lineno
            policy.bad(line, f"well-formed XML ({exc})", text)
            # the parser cannot go on: the rest of the document is skipped line by line
            for rest in range(lineno + 1, len(lines) + 1):
                policy.bad(rest, "well-formed XML before this line", lines[rest - 1].decode("utf-8", "replace"))
            break
    else:
        if lines and not closed:
            last = len(lines)
            policy.bad(last, "</conntrack> (the XML dump is truncated)", lines[-1].decode("utf-8", "replace"))
            records = [r for r in records if r[0] != last]
    return records


# ---------------------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        close = difflib.get_close_matches(str(fmt), FORMATS, 1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}{hint}")


def _check_range(node_port_range) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in node_port_range)
    except (TypeError, ValueError):
        raise ValueError(f"node_port_range must be a (low, high) pair of ports, got {node_port_range!r}") from None
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"node_port_range must satisfy 0 <= low <= high <= 65535, got {node_port_range!r}")
    return lo, hi


def _read(source: Source, fmt: str, node_port_range, on_bad_line: str, fast: bool = True,
          name: str | None = None, chunk_size: int = 0) -> pd.DataFrame:
    """:func:`read_conntrack` with test knobs (reference parser only, chunk size).

    NumPy asks the kernel for transparent huge pages on large arrays; the output arrays
    are allocated for an upper bound of rows and filled gradually, and a 2 MiB page per
    partly filled column costs ~100 MB of peak RSS on a 1M-entry dump. So the advice is
    switched off while reading (NumPy's private switch; restored afterwards).
    """
    switch = getattr(getattr(np, "_core", None), "multiarray", None)
    switch = getattr(switch, "_set_madvise_hugepage", None)
    previous = switch(False) if switch is not None else None
    try:
        return _read_impl(source, fmt, node_port_range, on_bad_line, fast, name, chunk_size)
    finally:
        if switch is not None:
            switch(previous)


def _read_impl(source: Source, fmt: str, node_port_range, on_bad_line: str, fast: bool,
               name: str | None, chunk_size: int) -> pd.DataFrame:
    _check_format(fmt)
    check_on_bad_line(on_bad_line)
    npr = _check_range(node_port_range)
    streamed = isinstance(source, (str, os.PathLike)) and not (
        isinstance(source, str) and ("\n" in source or source == "")
    )
    data: bytes | None = None
    if streamed:
        path = Path(source)
        try:
            with open(path, "rb") as f:
                head = f.read(65536)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file (a dump path was expected)") from None
        src_name = str(path)
        if head[:2] == b"\x1f\x8b":
            streamed = False
    if not streamed:
        src_name, data = read_source_bytes(source)
        head = data[:65536]
    if name is not None:
        src_name = name
    policy = BadLines(src_name, on_bad_line)
    detected = _detect(head) if fmt == "auto" else fmt
    if detected == "xml":
        if data is None:
            data = Path(source).read_bytes()
        records = _read_xml(data, src_name, policy)
        out = _Output(len(records))
        for row, record in enumerate(records):
            out.put(row, *record)
        out.n = len(records)
        total = count_lines(data)
        saw_summary = True
    else:
        size = chunk_size or _CHUNK
        chunks = _file_chunks(Path(source), size) if data is None else _chunks(data, size)
        nbytes = Path(source).stat().st_size if data is None else len(data)
        out = _Output((nbytes + 1) // (_MIN_ENTRY + 1) + 1)  # a row takes a line of _MIN_ENTRY bytes or more
        total, saw_summary = _read_lines(chunks, detected, policy, out, fast=fast)
        if fmt == "auto" and detected == "extended" and not saw_summary:
            detected = "proc"
    report = policy.report(detected, total)
    df = out.frame(npr)
    df.attrs["parse_report"] = report
    return df


def read_conntrack(
    source: Source,
    *,
    format: str = "auto",
    node_port_range: tuple[int, int] = (30000, 32767),
    on_bad_line: str = "raise",
) -> pd.DataFrame:
    """Read a conntrack table dump into a frame of kind ``conntrack_flows``.

    Parameters
    ----------
    source : path, file object, str or bytes
        The dump: a path (plain or gzip), an open file, or its content. A plain path is
        read in chunks of a few megabytes, so memory stays bounded by the frame.
    format : {"auto", "conntrack", "extended", "proc", "xml"}
        ``"conntrack"``: ``conntrack -L``; ``"extended"``: ``conntrack -L -o extended``
        (lines start ``ipv4     2``); ``"proc"``: ``/proc/net/nf_conntrack`` (the extended
        layout); ``"xml"``: ``conntrack -L -o xml``. ``"auto"`` looks at the first line:
        ``<`` is XML, an L3 column is extended (reported as ``"proc"`` when no summary line
        follows), anything else is the default format.
    node_port_range : (int, int)
        Inclusive node-port range, for the ``is_node_port`` column (default 30000-32767).
    on_bad_line : {"raise", "warn", "skip"}
        What to do with a line that cannot be parsed: raise a :class:`~npanalytics.ParseError`,
        or skip it (and warn once with a :class:`~npanalytics.ParseWarning`).

    Returns
    -------
    pandas.DataFrame
        One row per entry, in input order. ``df.attrs["parse_report"]`` holds the
        :class:`~npanalytics.collectors._source.ParseReport` (``lines_parsed +
        lines_skipped == lines_total``; blank and summary lines count as parsed).

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected <what>, got <line>"`` for the first bad line
        (with ``on_bad_line="raise"``), including a summary line
        (``conntrack v1.4.x (conntrack-tools): N flow entries have been shown.``) whose N
        differs from the number of entry lines since the previous summary (parsed or
        skipped); lines of ``conntrack -E`` (``[NEW]`` ...) are rejected too.
    ValueError
        For a bad ``format``, ``on_bad_line`` or ``node_port_range``.

    Notes
    -----
    Addresses are spelled canonically (IPv6 compressed: ``/proc`` prints it expanded).
    In the default format ``l3_protocol`` is told from the address family. ICMP type,
    code and id are those of the original direction. Derived columns: ``service_ip`` /
    ``service_port`` are the original destination, ``backend_ip`` / ``backend_port``
    the reply source; ``dnat`` is true when the reply source differs from the original
    destination (address or port), ``snat`` when the reply destination differs from the
    original source.

    {schema}
    """
    return _read(source, format, node_port_range, on_bad_line)


read_conntrack.__doc__ = read_conntrack.__doc__.replace(
    "{schema}", schema_table("conntrack_flows").replace("\n", "\n    ")
)


# ---------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------

PROC_STAT_NAMES = {"clashres": "clash_resolve", "chainlength": "chaintoolong", "icmp_error": "error"}
"""Header names of ``/proc/net/stat/nf_conntrack`` that differ from the ``conntrack -S`` names.

In the kernel's ``ct_cpu_seq_show`` the ``clashres`` column prints ``st->clash_resolve``,
``chainlength`` prints ``st->chaintoolong`` and ``icmp_error`` prints ``st->error``.
"""
_STAT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_HEX8 = re.compile(r"[0-9a-fA-F]{1,16}")


def read_conntrack_stats(source: Source, *, on_bad_line: str = "raise") -> pd.DataFrame:
    """Read per-CPU conntrack counters into a frame of kind ``conntrack_stats``.

    Parameters
    ----------
    source : path, file object, str or bytes
        Output of ``conntrack -S`` (``cpu=0   \\tfound=0 invalid=142 ...``, decimal) or
        the content of ``/proc/net/stat/nf_conntrack`` (a header line, then one line of
        8-digit hexadecimal counters per CPU); told apart by the first line.
    on_bad_line : {"raise", "warn", "skip"}
        Policy for lines that cannot be parsed.

    Returns
    -------
    pandas.DataFrame
        One row per CPU; ``df.attrs["parse_report"]`` holds the ParseReport. Counters
        a source does not print are NA. ``/proc`` names are renamed as in
        :data:`PROC_STAT_NAMES`; in ``/proc`` the ``cpu`` is the line's position. Counters
        the spec does not know (``unknown1`` ... printed by conntrack-tools for newer
        kernel attributes) are kept as extra ``Int64`` columns of the same name.

    Raises
    ------
    ParseError
        For a line that is not ``name=value`` pairs (``-S``) or does not have one hex
        value per header column (``/proc``).

    {schema}
    """
    check_on_bad_line(on_bad_line)
    name, text = read_source_bytes(source)
    policy = BadLines(name, on_bad_line)
    lines = text.decode("utf-8", errors="replace").splitlines()
    rows: list[dict[str, int]] = []
    first = next((ln for ln in lines if ln.strip()), "")
    fmt = "proc" if first.split()[:1] == ["entries"] else "conntrack"
    header: list[str] | None = None
    for lineno, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        if fmt == "proc":
            if header is None:
                if tokens[0] != "entries" or not all(_STAT_NAME.fullmatch(t) for t in tokens):
                    policy.bad(lineno, "the header line of /proc/net/stat/nf_conntrack", line)
                    continue
                header = [PROC_STAT_NAMES.get(t, t) for t in tokens]
                continue
            if len(tokens) != len(header) or not all(_HEX8.fullmatch(t) for t in tokens):
                policy.bad(lineno, f"{len(header)} hexadecimal counters", line)
                continue
            row = {"cpu": len(rows)}
            row.update({h: int(t, 16) for h, t in zip(header, tokens)})
            rows.append(row)
        else:
            row = {}
            try:
                for tok in tokens:
                    key, sep, value = tok.partition("=")
                    if not sep or not _STAT_NAME.fullmatch(key) or not _DIGITS.fullmatch(value):
                        raise _Bad("name=value counters (cpu=N first)")
                    if key in row:
                        raise _Bad(f"{key}= only once")
                    row[key] = int(value)
                if tokens[0].partition("=")[0] != "cpu":
                    raise _Bad("cpu=N first")
            except _Bad as exc:
                policy.bad(lineno, exc.expected, line)
                continue
            rows.append(row)
    report = policy.report(fmt, len(lines))
    spec = SCHEMAS["conntrack_stats"]
    extra = sorted({k for r in rows for k in r} - set(spec.names))
    data: dict[str, object] = {}
    for col in spec.columns:
        if not col.required:
            continue
        values = [r.get(col.name) for r in rows]
        data[col.name] = pd.Series(values, dtype="int64" if col.name == "cpu" else "Int64")
    for col in extra:
        data[col] = pd.Series([r.get(col) for r in rows], dtype="Int64")
    df = pd.DataFrame(data)
    df.attrs["parse_report"] = report
    return df


read_conntrack_stats.__doc__ = read_conntrack_stats.__doc__.replace(
    "{schema}", schema_table("conntrack_stats").replace("\n", "\n    ")
)


# ---------------------------------------------------------------------------------------
# Live collection
# ---------------------------------------------------------------------------------------


def _run(args: list[str], netns: str | None, timeout: float) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + args
    shown = " ".join(cmd)
    for binary in ([cmd[0]] if not netns else ["ip", args[0]]):
        if shutil.which(binary) is None:
            raise CollectorError(
                f"{shown}: the {binary} binary was not found on PATH; install "
                + ("conntrack-tools (apt install conntrack)" if binary == "conntrack" else "iproute2")
            )
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{shown}: no answer within {timeout} s") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip()
        if os.geteuid() != 0 or "not permitted" in err.lower() or "permission" in err.lower():
            raise CollectorError(
                f"{shown}: failed ({err or 'exit ' + str(res.returncode)}); reading the conntrack "
                "table needs root (or CAP_NET_ADMIN): run as root or with sudo"
            )
        raise CollectorError(f"{shown}: exit status {res.returncode}: {err}")
    return res


def get_conntrack(
    netns: str | None = None,
    *,
    node_port_range: tuple[int, int] = (30000, 32767),
    timeout: float = 30,
) -> pd.DataFrame:
    """Run ``conntrack -L`` (in ``netns`` if given) and read its output.

    Parameters
    ----------
    netns : str, optional
        Network namespace name (``ip netns exec <netns> conntrack -L``).
    node_port_range : (int, int)
        As in :func:`read_conntrack`.
    timeout : float
        Seconds to wait for the command.

    Returns
    -------
    pandas.DataFrame
        Frame of kind ``conntrack_flows``; the summary line (on stderr) is checked
        against the entries read.

    Raises
    ------
    CollectorError
        The binary is missing, the command failed (not root), or it timed out.
    """
    res = _run(["conntrack", "-L"], netns, timeout)
    summary = b"".join(
        line + b"\n" for line in res.stderr.splitlines() if _SUMMARY.fullmatch(line.decode("utf-8", "replace").strip())
    )
    name = "conntrack -L" + (f" (netns {netns})" if netns else "")
    return _read(res.stdout + summary, "conntrack", node_port_range, "raise", name=name)


def get_conntrack_stats(netns: str | None = None, *, timeout: float = 30) -> pd.DataFrame:
    """Run ``conntrack -S`` (in ``netns`` if given); a frame of kind ``conntrack_stats``.

    Raises
    ------
    CollectorError
        The binary is missing, the command failed (not root), or it timed out.
    """
    res = _run(["conntrack", "-S"], netns, timeout)
    return read_conntrack_stats(res.stdout)
