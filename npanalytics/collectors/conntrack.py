"""Read conntrack tables: ``conntrack -L`` (default, extended, XML), ``/proc/net/nf_conntrack``
and the statistics of ``conntrack -S`` / ``/proc/net/stat/nf_conntrack``.

Formats are described in ../shared/KUBE_FACTS.md §5. Two parsers read the line formats:

- :func:`_parse_line` -- a plain per-line parser. It is the specification: it decides what
  is accepted and words every error.
- :func:`_fast_chunk` -- a vectorised numpy parser that reads the common shapes of lines a
  few megabytes at a time (no Python object per line). Every line it does not fully
  understand (and every line with a problem) goes to :func:`_parse_line`, so the two give
  identical frames (a hypothesis test checks it).

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
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..exceptions import CollectorError, ParseError
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
_STR = {name: i for i, (name, _) in enumerate(_STR_SLOTS)}
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
# Blocks of rows
# ---------------------------------------------------------------------------------------


class _Block:
    """Rows of one part of the input, in line order.

    Column-major: ``nums``/``present`` are ``(len(_NUM_SLOTS), rows)``, ``strs`` are
    ``(len(_STR_SLOTS), rows)`` codes into ``words`` (an Arrow string array; -1 for NA),
    ``flags`` is ``(4, rows)``.
    """

    __slots__ = ("lineno", "nums", "present", "strs", "words", "flags", "keys")

    def __init__(self, lineno, nums, present, strs, words, flags, keys):
        self.lineno = lineno
        self.nums = nums
        self.present = present
        self.strs = strs
        self.words = words
        self.flags = flags
        self.keys = keys  # _text_key of each word's source bytes, to merge blocks fast

    @classmethod
    def from_records(cls, records: list[tuple[int, dict, dict, list]]) -> "_Block":
        n = len(records)
        nums = np.zeros((len(_NUM_SLOTS), n), np.int64)
        present = np.zeros((len(_NUM_SLOTS), n), bool)
        strs = np.full((len(_STR_SLOTS), n), -1, np.int32)
        flags = np.zeros((len(_FLAGS), n), bool)
        words: dict[str, int] = {}
        lineno = np.zeros(n, np.int64)
        for r, (ln, nd, sd, fl) in enumerate(records):
            lineno[r] = ln
            for k, v in nd.items():
                j = _NUM[k]
                nums[j, r] = v
                present[j, r] = True
            for k, v in sd.items():
                strs[_STR[k], r] = words.setdefault(v, len(words))
            flags[:, r] = fl
        return cls(lineno, nums, present, strs, pa.array(list(words), pa.string()), flags, _text_keys(list(words)))

    def take(self, rows: np.ndarray) -> "_Block":
        return _Block(self.lineno[rows], np.take(self.nums, rows, axis=1), np.take(self.present, rows, axis=1), np.take(self.strs, rows, axis=1), self.words, np.take(self.flags, rows, axis=1), self.keys)

    @staticmethod
    def merge(a: "_Block", b: "_Block") -> "_Block":
        """Rows of both, ordered by line number (b's words appended to a's)."""
        if len(b.lineno) == 0:
            return a
        if len(a.lineno) == 0:
            return b
        words = pa.concat_arrays([a.words, b.words])
        bstrs = np.where(b.strs >= 0, b.strs + len(a.words), -1).astype(np.int32)
        order = np.argsort(np.concatenate([a.lineno, b.lineno]), kind="stable")
        return _Block(
            np.concatenate([a.lineno, b.lineno])[order],
            np.take(np.concatenate([a.nums, b.nums], axis=1), order, axis=1),
            np.take(np.concatenate([a.present, b.present], axis=1), order, axis=1),
            np.take(np.concatenate([a.strs, bstrs], axis=1), order, axis=1),
            words,
            np.take(np.concatenate([a.flags, b.flags], axis=1), order, axis=1),
            np.concatenate([a.keys, b.keys]),
        )


_KEY_MUL = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _text_keys(words: list[str]) -> np.ndarray:
    """The 64-bit key :func:`_factorize_windows` gives the bytes of each word."""
    out = np.zeros(len(words), np.uint64)
    for i, w in enumerate(words):
        b = w.encode()
        h = len(b)
        for k in range(0, len(b), 8):
            h = ((h * _KEY_MUL) & _M64) ^ int.from_bytes(b[k : k + 8], "little")
        out[i] = h
    return out


def _append(words: list[str], index: dict[str, int], w: str) -> int:
    index[w] = len(words)
    words.append(w)
    return index[w]


# ---------------------------------------------------------------------------------------
# The fast path
# ---------------------------------------------------------------------------------------

_U = np.uint64
_ZEROS = _U(0x3030303030303030)
_F0 = _U(0xF0F0F0F0F0F0F0F0)
_SIX = _U(0x0606060606060606)
_ONES = _U(0x0101010101010101)
_HIGH = _U(0x8080808080808080)
_EQ = _U(0x3D3D3D3D3D3D3D3D)
# _LOW[c]: the c first (low) bytes; _TOP[c]: the c last (high) bytes.
_LOW = np.array([(1 << (8 * c)) - 1 for c in range(9)], dtype=np.uint64)
_TOP = np.array([((1 << 64) - 1) ^ ((1 << (8 * (8 - c))) - 1) for c in range(9)], dtype=np.uint64)
_PAD = 16


def _word(text: str) -> int:
    return int.from_bytes(text.encode(), "little")


# Key ids of the fast path. Short keys (up to 7 bytes) are told by their masked first
# window, the three long ones by both windows.
_K_SRC, _K_DST, _K_SPORT, _K_DPORT, _K_TYPE, _K_CODE, _K_ID, _K_PACKETS, _K_BYTES = range(9)
_K_MARK, _K_SECMARK, _K_USE, _K_ZONE, _K_ZORIG, _K_ZREPLY, _K_DELTA, _K_OTHER = range(9, 16 + 1)
_SHORT_KEYS = {
    "src": _K_SRC, "dst": _K_DST, "sport": _K_SPORT, "dport": _K_DPORT, "type": _K_TYPE,
    "code": _K_CODE, "id": _K_ID, "packets": _K_PACKETS, "bytes": _K_BYTES, "mark": _K_MARK,
    "secmark": _K_SECMARK, "use": _K_USE, "zone": _K_ZONE,
}
_SK_WORDS = np.array(sorted(_word(k) for k in _SHORT_KEYS), dtype=np.uint64)
_SK_IDS = np.array([_SHORT_KEYS[k] for k in sorted(_SHORT_KEYS, key=_word)], dtype=np.int8)
_LONG_KEYS = {"zone-orig": _K_ZORIG, "zone-reply": _K_ZREPLY, "delta-time": _K_DELTA}
_NSLOT = len(_NUM_SLOTS) + 4 + len(_FLAGS)  # numeric slots, 4 IP slots, flags
_IP_BASE = len(_NUM_SLOTS)
_FLAG_BASE = _IP_BASE + 4
# slot of (key id, direction 0/1); -1: not handled by the fast path.
_SLOT = np.full((_K_OTHER + 2, 2), -1, np.int16)
for _k, (_o, _r) in {
    _K_SPORT: ("orig_sport", "reply_sport"), _K_DPORT: ("orig_dport", "reply_dport"),
    _K_TYPE: ("orig_type", "reply_type"), _K_CODE: ("orig_code", "reply_code"),
    _K_ID: ("orig_id", "reply_id"), _K_PACKETS: ("orig_packets", "reply_packets"),
    _K_BYTES: ("orig_bytes", "reply_bytes"),
}.items():
    _SLOT[_k] = (_NUM[_o], _NUM[_r])
for _k, _n in {_K_MARK: "mark", _K_SECMARK: "secmark", _K_USE: "use", _K_ZONE: "zone",
               _K_ZORIG: "zone-orig", _K_ZREPLY: "zone-reply", _K_DELTA: "delta-time"}.items():
    _SLOT[_k] = (_NUM[_n], _NUM[_n])
_SLOT[_K_SRC] = (_IP_BASE + 0, _IP_BASE + 2)
_SLOT[_K_DST] = (_IP_BASE + 1, _IP_BASE + 3)
_K_CTID = _K_OTHER + 1
_SLOT[_K_CTID] = (_NUM["ct_id"], _NUM["ct_id"])
_FLAG_WORDS = [(_word(f[:8]), _word(f[8:]), len(f)) for f in _FLAGS]


def _digits(u64: np.ndarray, vs: np.ndarray, ve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the decimal numbers at ``[vs, ve)`` and whether each is 1-16 digits."""
    vl = ve - vs
    ok = (vl >= 1) & (vl <= 16)
    c = np.minimum(vl, 8).clip(0, 8)
    w = u64[ve - 8]
    top = _TOP[c]
    w = (w & top) | (_ZEROS & ~top)
    ok &= ((w & _F0) == _ZEROS) & (((w + _SIX) & _F0) == _ZEROS)
    value = _swar8(w - _ZEROS)
    long = np.flatnonzero(vl > 8)
    if len(long):
        c2 = np.clip(vl[long] - 8, 0, 8)
        w2 = u64[ve[long] - 16]
        top2 = _TOP[c2]
        w2 = (w2 & top2) | (_ZEROS & ~top2)
        ok[long] &= ((w2 & _F0) == _ZEROS) & (((w2 + _SIX) & _F0) == _ZEROS)
        value[long] += _swar8(w2 - _ZEROS) * _U(100_000_000)
    return value.view(np.int64), ok


def _swar8(d: np.ndarray) -> np.ndarray:
    """8 digit bytes (first digit in the low byte) to their value."""
    d = d * _U(10) + (d >> _U(8))
    return (
        ((d & _U(0x000000FF000000FF)) * _U(100 + (1000000 << 32)))
        + (((d >> _U(16)) & _U(0x000000FF000000FF)) * _U(1 + (10000 << 32)))
    ) >> _U(32)


def _factorize_windows(u64: np.ndarray, vs: np.ndarray, vl: np.ndarray, buf: np.ndarray):
    """Codes and distinct byte strings (an Arrow string array) of the spans ``[vs, vs+vl)``.

    Exact: spans are told apart by all their bytes (8-byte windows), hashing only
    speeds up the grouping and a collision falls back to a sort.
    """
    if len(vs) == 0:
        return np.zeros(0, np.int32), pa.array([], pa.string()), np.zeros(0, np.uint64)
    nwin = int((int(vl.max()) + 7) // 8)
    wins = []
    h = vl.astype(np.uint64)
    for k in range(nwin):
        c = np.clip(vl - 8 * k, 0, 8)
        w = u64[vs + 8 * k] & _LOW[c]
        wins.append(w)
        if k == 0:
            h = np.where(vl > 0, (h * _U(_KEY_MUL)) ^ w, h)
        else:
            h = np.where(vl > 8 * k, (h * _U(_KEY_MUL)) ^ w, h)
    codes, _ = pd.factorize(h)
    running = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]]))
    rep = first[codes]
    if not all(np.array_equal(w, w[rep]) for w in wins) or not np.array_equal(vl, vl[rep]):
        # a hash collision: fall back to an exact sort-based factorisation
        keys = np.stack([vl.astype(np.uint64)] + wins, axis=1)
        _, first, codes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        codes = codes.ravel()
    lengths = vl[first]
    offsets = np.zeros(len(first) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    gather = np.repeat(vs[first] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
    texts = pa.StringArray.from_buffers(
        len(first), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(buf[gather]))
    )
    return codes.astype(np.int32), texts, h[first]


_IPV4_RE = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
# Names the fast path knows; any other goes to the reference parser.
_VOCAB = (
    "ipv4", "ipv6", "tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "udplite", "dccp", "unknown",
    "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
    "TIME_WAIT", "CLOSE", "SYN_SENT2",
)
_VOCAB_PA = pa.array(_VOCAB, pa.string())
_VOCAB_KEYS = _text_keys(list(_VOCAB))


def _vocab_table():
    w1 = np.array([_word(v[:8]) for v in _VOCAB], np.uint64)
    w2 = np.array([_word(v[8:16]) for v in _VOCAB], np.uint64)
    ln = np.array([len(v) for v in _VOCAB], np.int64)
    key = w1 ^ (w2 * _U(0x9E3779B97F4A7C15)) ^ (ln.astype(np.uint64) << _U(56))
    order = np.argsort(key)
    return key[order], w1[order], w2[order], ln[order], order.astype(np.int32)


_VT_KEY, _VT_W1, _VT_W2, _VT_LEN, _VT_CODE = _vocab_table()


def _vocab_codes(w1: np.ndarray, w2: np.ndarray, ln: np.ndarray) -> np.ndarray:
    """Index in ``_VOCAB`` of tokens given by their two windows and length; -1 if unknown."""
    a = w1 & _LOW[np.minimum(ln, 8)]
    b = w2 & _LOW[np.clip(ln - 8, 0, 8)]
    key = a ^ (b * _U(0x9E3779B97F4A7C15)) ^ (ln.astype(np.uint64) << _U(56))
    j = np.searchsorted(_VT_KEY, key).clip(0, len(_VT_KEY) - 1)
    ok = (_VT_W1[j] == a) & (_VT_W2[j] == b) & (_VT_LEN[j] == ln) & (ln <= 16)
    return np.where(ok, _VT_CODE[j], -1).astype(np.int32)


def _generic_chunk(chunk: bytes | memoryview, line0: int, extended: bool) -> tuple[_Block, np.ndarray, int]:
    """Parse the lines of ``chunk`` (which ends with a newline) vectorised, token by token.

    Returns the block of rows understood, the chunk-relative indices of the lines left
    for the reference parser (blank lines are neither), and the number of lines.
    """
    n = len(chunk)
    a = np.empty(n + 2 * _PAD + 16, np.uint8)
    a[:_PAD] = 32
    a[_PAD : _PAD + n] = np.frombuffer(chunk, np.uint8)
    a[_PAD + n :] = 32
    u64 = np.ndarray((len(a) - 7,), dtype="<u8", buffer=a, strides=(1,))
    nl = np.flatnonzero(a == 10)
    nlines = len(nl)
    sep = a <= 32
    edges = np.flatnonzero(sep[1:] != sep[:-1])
    starts = edges[0::2] + 1
    ends = edges[1::2] + 1
    ntokens = len(starts)
    before_nl = np.searchsorted(starts, nl)
    ft = np.concatenate([[0], before_nl[:-1]])
    ntok = before_nl - ft
    tl = np.repeat(np.arange(nlines), ntok)
    bad = np.zeros(nlines, bool)
    ctrl = np.flatnonzero((a < 32) & (a != 10))
    if len(ctrl):
        bad[np.searchsorted(nl, ctrl)] = True
    blank = (ntok == 0) & ~bad
    bad |= blank  # not rows; blank lines are removed from the fallback below
    tlen = ends - starts
    # where is '=' in the first 8 bytes of each token?
    w1 = u64[starts]
    x = w1 ^ _EQ
    z = (x - _ONES) & ~x & _HIGH
    p = ((np.bitwise_count((z & (~z + _U(1))) - _U(1)).astype(np.int64) - 7) >> 3)
    iskey = (z != 0) & (p < tlen)
    p = np.where(iskey, p, 0)
    kid = np.full(ntokens, -1, np.int16)
    short = np.flatnonzero(iskey)
    kw = w1[short] & _LOW[p[short]]
    j = np.searchsorted(_SK_WORDS, kw).clip(0, len(_SK_WORDS) - 1)
    hit = _SK_WORDS[j] == kw
    kid[short] = np.where(hit, _SK_IDS[j], _K_OTHER)
    # tokens longer than 8 bytes without '=' in the first window: long keys, flags, names
    rest = np.flatnonzero(~iskey & (tlen > 8))
    w2 = np.zeros(ntokens, np.uint64)
    if len(rest):
        w2r = u64[starts[rest] + 8]
        w2[rest] = w2r
        x2 = w2r ^ _EQ
        z2 = (x2 - _ONES) & ~x2 & _HIGH
        p2 = ((np.bitwise_count((z2 & (~z2 + _U(1))) - _U(1)).astype(np.int64) - 7) >> 3)
        long = (z2 != 0) & (p2 + 8 < tlen[rest])
        lr = rest[long]
        p[lr] = p2[long] + 8
        iskey[lr] = True
        kid[lr] = _K_OTHER
        for name, k in _LONG_KEYS.items():
            m = (w1[lr] == _U(_word(name[:8]))) & ((w2[lr] & _LOW[p[lr] - 8]) == _U(_word(name[8:]))) & (p[lr] == len(name))
            kid[lr[m]] = k
    keys = np.flatnonzero(iskey)
    ktl = tl[keys]
    nkeys = np.bincount(ktl, minlength=nlines)
    j = np.searchsorted(keys, ft).clip(0, max(len(keys) - 1, 0))
    has_key = (nkeys > 0)
    firstkey = np.where(has_key, keys[j] if len(keys) else 0, 0)
    off = 2 if extended else 0
    npos = firstkey - ft
    bad |= ~has_key | ((npos != off + 3) & (npos != off + 4))
    # non-key tokens after the positional ones must be flags
    tokidx = np.arange(ntokens)
    flagtok = np.flatnonzero(~iskey & (tokidx >= firstkey[tl]))
    fslot = np.full(len(flagtok), -1, np.int16)
    fl = tlen[flagtok]
    f1 = w1[flagtok] & _LOW[np.minimum(fl, 8)]
    f2 = w2[flagtok] & _LOW[np.clip(fl - 8, 0, 8)]
    for k, (a1, a2, ln) in enumerate(_FLAG_WORDS):
        fslot[(f1 == _U(a1)) & (f2 == _U(a2)) & (fl == ln)] = _FLAG_BASE + k
    bad[tl[flagtok[fslot < 0]]] = True
    # directions: tokens from the second src= on belong to the reply tuple
    kk = kid[keys]
    srcs = keys[kk == _K_SRC]
    nsrc = np.bincount(tl[srcs], minlength=nlines)
    bad |= nsrc != 2
    second = np.zeros(nlines, np.int64)
    first = np.zeros(nlines, np.int64)
    if len(srcs):
        cum = np.cumsum(nsrc) - 1
        second = srcs[cum.clip(0, len(srcs) - 1)]
        first = srcs[(cum - 1).clip(0, len(srcs) - 1)]
    direction = (keys >= second[ktl]).astype(np.int8)
    prev_code = kid[keys - 1] == _K_CODE
    kk = np.where((kk == _K_ID) & ~prev_code, _K_CTID, kk)
    # tuple keys before the first src= are an error (the reference parser words it)
    tuple_key = (kk == _K_DST) | ((kk >= _K_SPORT) & (kk <= _K_BYTES))
    bad[ktl[tuple_key & (keys < first[ktl])]] = True
    slot = _SLOT[np.where(kk < 0, _K_OTHER, kk), direction]
    bad[ktl[slot < 0]] = True
    # at most one value per slot and line
    allslot = np.concatenate([slot.astype(np.int64), fslot.astype(np.int64)])
    alltl = np.concatenate([ktl, tl[flagtok]])
    okslot = allslot >= 0
    counts = np.bincount(allslot[okslot] * nlines + alltl[okslot], minlength=nlines * _NSLOT).reshape(_NSLOT, nlines)
    bad |= (counts > 1).any(axis=0)
    have = counts > 0
    # values
    vs = starts[keys] + p[keys] + 1
    ve = ends[keys]
    isnum = (slot >= 0) & (slot < _IP_BASE)
    nk = np.flatnonzero(isnum)
    values, okv = _digits(u64, vs[nk], ve[nk])
    okv &= values <= _NUM_MAX[slot[nk]]
    bad[ktl[nk[~okv]]] = True
    nums = np.zeros((len(_NUM_SLOTS), nlines), np.int64)
    nums[slot[nk], ktl[nk]] = values
    # positional tokens: protocol name/number, timeout, state (and l3 name/number)
    pos0 = ft + off
    posok = ~bad
    pl = np.flatnonzero(posok)
    vals, okp = _digits(u64, starts[pos0[pl] + 1], ends[pos0[pl] + 1])
    nums[_NUM["protonum"], pl] = vals
    vals2, okt = _digits(u64, starts[pos0[pl] + 2], ends[pos0[pl] + 2])
    nums[_NUM["timeout"], pl] = vals2
    okp &= okt
    if extended:
        _, okl = _digits(u64, starts[ft[pl] + 1], ends[ft[pl] + 1])
        okp &= okl
    bad[pl[~okp]] = True
    present = have[: len(_NUM_SLOTS)].copy()
    present[_NUM["protonum"]] = True
    present[_NUM["timeout"]] = True
    # groups that must come together, and both tuples' src and dst
    for d, (s_, t_, c_, i_, pk, by) in enumerate(
        (("orig_sport", "orig_type", "orig_code", "orig_id", "orig_packets", "orig_bytes"),
         ("reply_sport", "reply_type", "reply_code", "reply_id", "reply_packets", "reply_bytes"))
    ):
        dp = "orig_dport" if d == 0 else "reply_dport"
        bad |= present[_NUM[s_]] != present[_NUM[dp]]
        bad |= (present[_NUM[t_]] != present[_NUM[c_]]) | (present[_NUM[t_]] != present[_NUM[i_]])
        bad |= present[_NUM[pk]] != present[_NUM[by]]
    bad |= ~have[_IP_BASE : _IP_BASE + 4].all(axis=0)
    # strings: names from a known vocabulary, addresses checked once per distinct text
    strs = np.full((len(_STR_SLOTS), nlines), -1, np.int32)
    pl = np.flatnonzero(~bad)
    sl = pl[npos[pl] == off + 4]
    for rows_, tok, slot_ in ((pl, pos0[pl], "proto"), (sl, pos0[sl] + 3, "state")) + (
        ((pl, ft[pl], "l3"),) if extended else ()
    ):
        w2t = np.where(tlen[tok] > 8, u64[starts[tok] + 8], _U(0))
        vc = _vocab_codes(w1[tok], w2t, tlen[tok])
        strs[_STR[slot_], rows_] = vc
        bad[rows_[vc < 0]] = True
    ipk = np.flatnonzero((slot >= _IP_BASE) & (slot < _FLAG_BASE))
    ipk = ipk[~bad[ktl[ipk]]]
    ipl = ve[ipk] - vs[ipk]
    too_long = ipl > 39
    bad[ktl[ipk[too_long]]] = True
    ipk = ipk[~too_long]
    codes, texts, tkeys = _factorize_windows(u64, vs[ipk], ve[ipk] - vs[ipk], a)
    valid = pc.match_substring_regex(texts, _IPV4_RE).to_numpy(zero_copy_only=False)
    v6 = pc.match_substring(texts, ":").to_numpy(zero_copy_only=False)
    if v6.any():
        listed = texts.to_pylist()
        for u in np.flatnonzero(v6 & ~valid).tolist():
            canon = _canon_ip(listed[u]) if listed[u].isascii() else None
            if canon is not None:
                listed[u] = canon
                valid[u] = True
        texts = pa.array(listed, pa.string())
    bad[ktl[ipk[~valid[codes]]]] = True
    strs[slot[ipk] - _IP_BASE, ktl[ipk]] = codes + len(_VOCAB)
    if not extended:
        isv6 = np.concatenate([np.zeros(len(_VOCAB), bool), v6, [False]])
        strs[_STR["l3"]] = isv6[strs[_STR["orig_src"]]].astype(np.int32)
    words = pa.concat_arrays([_VOCAB_PA, texts])
    flags = have[_FLAG_BASE:]
    good = np.flatnonzero(~bad)
    block = _Block(good + line0, np.take(nums, good, axis=1), np.take(present, good, axis=1), np.take(strs, good, axis=1), words, np.take(flags, good, axis=1),
                   np.concatenate([_VOCAB_KEYS, tkeys]))
    fallback = np.flatnonzero(bad & ~blank)
    return block, fallback, nlines


class _Template:
    """The token layout of one shape of line, learnt from a line the generic path accepted.

    Lines with the same layout are checked column by column (every key's bytes, every
    flag, every value) instead of token by token.
    """

    def __init__(self, line: bytes, extended: bool) -> None:
        tokens = line.split()
        off = 2 if extended else 0
        self.ntok = len(tokens)
        self.npos = next(j for j, t in enumerate(tokens) if b"=" in t)
        self.off = off
        self.state = self.npos == off + 4
        kcols, e1, m1, e2, m2, voff = [], [], [], [], [], []
        self.num_cols, self.num_slots, self.num_voff = [], [], []
        self.ip_cols, self.ip_slots, self.ip_voff = [], [], []
        self.flag_cols, self.flag_len, self.flag_e1, self.flag_e2 = [], [], [], []
        self.flags = np.zeros(len(_FLAGS), bool)
        direction = -1
        prev = ""
        for j in range(self.npos, len(tokens)):
            tok = tokens[j]
            if b"=" not in tok:
                f = tok.decode()
                self.flags[_FLAGS.index(f)] = True
                self.flag_cols.append(j)
                self.flag_len.append(len(tok))
                self.flag_e1.append(_word(f[:8]))
                self.flag_e2.append(_word(f[8:16]))
                prev = ""
                continue
            key = tok.split(b"=", 1)[0].decode()
            d = "orig" if direction <= 0 else "reply"
            if key == "src":
                direction += 1
                d = "orig" if direction == 0 else "reply"
                slot = _IP_BASE + (0 if direction == 0 else 2)
            elif key == "dst":
                slot = _IP_BASE + (1 if d == "orig" else 3)
            elif key == "id":
                slot = _NUM[f"{d}_id"] if prev == "code" else _NUM["ct_id"]
            elif key in ("sport", "dport", "type", "code", "packets", "bytes"):
                slot = _NUM[f"{d}_{key}"]
            else:
                slot = _NUM[key]
            kb = (key + "=").encode()
            kcols.append(j)
            e1.append(int.from_bytes(kb[:8], "little"))
            m1.append(int(_LOW[min(len(kb), 8)]))
            e2.append(int.from_bytes(kb[8:16], "little"))
            m2.append(int(_LOW[max(len(kb) - 8, 0)]))
            if slot >= _IP_BASE:
                self.ip_cols.append(j)
                self.ip_slots.append(slot - _IP_BASE)
                self.ip_voff.append(len(kb))
            else:
                self.num_cols.append(j)
                self.num_slots.append(slot)
                self.num_voff.append(len(kb))
            prev = key
        self.kcols = np.array(kcols, np.int64)
        self.num_kpos = np.array([kcols.index(c) for c in self.num_cols], np.int64)
        self.ip_kpos = np.array([kcols.index(c) for c in self.ip_cols], np.int64)
        self.e1 = np.array(e1, np.uint64)
        self.m1 = np.array(m1, np.uint64)
        self.e2 = np.array(e2, np.uint64)
        self.m2 = np.array(m2, np.uint64)
        self.long = np.flatnonzero(self.m2 != 0)
        self.num_max = _NUM_MAX[np.array(self.num_slots, np.int64)]
        self.present = np.zeros(len(_NUM_SLOTS), bool)
        self.present[self.num_slots] = True
        self.present[_NUM["protonum"]] = True
        self.present[_NUM["timeout"]] = True
        for name in ("num_cols", "num_slots", "num_voff", "ip_cols", "ip_slots", "ip_voff",
                     "flag_cols", "flag_len"):
            setattr(self, name, np.array(getattr(self, name), np.int64))
        self.flag_e1 = np.array(self.flag_e1, np.uint64)
        self.flag_e2 = np.array(self.flag_e2, np.uint64)


_MAX_TEMPLATES = 64


def _fast_chunk(chunk: bytes | memoryview, line0: int, extended: bool,
                templates: dict | None = None) -> tuple[_Block, np.ndarray, int]:
    """Parse the lines of ``chunk`` (which ends with a newline) vectorised.

    Lines whose layout matches a learnt :class:`_Template` are read column-wise; the
    others go through :func:`_generic_chunk`, whose accepted lines teach new templates.
    Returns the rows understood, the chunk-relative indices of the lines left for the
    reference parser (blank lines are neither), and the number of lines.
    """
    if templates is None:
        templates = {}
    n = len(chunk)
    a = np.empty(n + 2 * _PAD + 16, np.uint8)
    a[:_PAD] = 32
    a[_PAD : _PAD + n] = np.frombuffer(chunk, np.uint8)
    a[_PAD + n :] = 32
    u64 = np.ndarray((len(a) - 7,), dtype="<u8", buffer=a, strides=(1,))
    nl = np.flatnonzero(a == 10)
    nlines = len(nl)
    sep = a <= 32
    edges = np.flatnonzero(sep[1:] != sep[:-1])
    starts = edges[0::2] + 1
    ends = edges[1::2] + 1
    before_nl = np.searchsorted(starts, nl)
    ft = np.concatenate([[0], before_nl[:-1]])
    ntok = before_nl - ft
    off = 2 if extended else 0
    candidate = ntok > off + 4
    low = a < 32
    ctrl = np.flatnonzero(low & (a != 10)) if np.count_nonzero(low) != nlines else np.zeros(0, np.int64)
    if len(ctrl):
        candidate[np.searchsorted(nl, ctrl)] = False
    # signature: token count, the bytes at the protocol name, positions of [flags]
    cand = np.flatnonzero(candidate)
    sig = np.zeros(nlines, np.uint64)
    if len(cand):
        bt = np.flatnonzero(a[starts] == 91)
        bl = np.searchsorted(before_nl, bt, side="right")
        bj = np.minimum(bt - ft[bl], 52)
        bmask = np.bincount(bl, weights=np.exp2(bj), minlength=nlines).astype(np.uint64)
        sig[cand] = (
            (u64[starts[ft[cand] + off]] * _U(_KEY_MUL))
            ^ (ntok[cand].astype(np.uint64) * _U(0xC2B2AE3D27D4EB4F))
            ^ (bmask[cand] * _U(0x165667B19E3779F9))
        )
    done = np.zeros(nlines, bool)
    nums = np.zeros((len(_NUM_SLOTS), nlines), np.int64)
    present = np.zeros((len(_NUM_SLOTS), nlines), bool)
    strs = np.full((len(_STR_SLOTS), nlines), -1, np.int32)
    flags = np.zeros((len(_FLAGS), nlines), bool)
    ip_vs, ip_vl, ip_slot, ip_line = [], [], [], []
    if templates and len(cand):
        codes, uniq = pd.factorize(sig[cand])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
        for u, sg in enumerate(uniq.tolist()):
            lines = cand[order[bounds[u] : bounds[u + 1]]]
            for t in templates.get(sg, ()):
                if len(lines) == 0:
                    break
                ok = _apply_template(t, lines, a, u64, starts, ends, ft, ntok, nums, present, strs, flags,
                                     ip_vs, ip_vl, ip_slot, ip_line, extended)
                done[lines[ok]] = True
                lines = lines[~ok]
    words = _VOCAB_PA
    wkeys = _VOCAB_KEYS
    if ip_vs:
        vs = np.concatenate(ip_vs)
        vl = np.concatenate(ip_vl)
        islot = np.concatenate(ip_slot)
        iline = np.concatenate(ip_line)
        # only lines that passed their template
        keep = done[iline]
        vs, vl, islot, iline = vs[keep], vl[keep], islot[keep], iline[keep]
        codes, texts, tkeys = _factorize_windows(u64, vs, vl, a)
        valid = pc.match_substring_regex(texts, _IPV4_RE).to_numpy(zero_copy_only=False)
        v6 = pc.match_substring(texts, ":").to_numpy(zero_copy_only=False)
        if v6.any():
            listed = texts.to_pylist()
            for u in np.flatnonzero(v6 & ~valid).tolist():
                canon = _canon_ip(listed[u]) if listed[u].isascii() else None
                if canon is not None:
                    listed[u] = canon
                    valid[u] = True
            texts = pa.array(listed, pa.string())
        done[iline[~valid[codes]]] = False
        strs[islot, iline] = codes + len(_VOCAB)
        if not extended:
            isv6 = np.concatenate([np.zeros(len(_VOCAB), bool), v6, [False]])
            strs[_STR["l3"]] = isv6[strs[_STR["orig_src"]]].astype(np.int32)
        words = pa.concat_arrays([_VOCAB_PA, texts])
        wkeys = np.concatenate([_VOCAB_KEYS, tkeys])
    good = np.flatnonzero(done)
    if len(good) == nlines:
        block = _Block(good + line0, nums, present, strs, words, flags, wkeys)
    else:
        block = _Block(good + line0, np.take(nums, good, axis=1), np.take(present, good, axis=1),
                       np.take(strs, good, axis=1), words, np.take(flags, good, axis=1), wkeys)
    ctrl_line = np.zeros(nlines, bool)
    ctrl_line[np.searchsorted(nl, ctrl)] = True
    rest = np.flatnonzero(~done & ((ntok > 0) | ctrl_line))
    if len(rest) == 0:
        return block, rest, nlines
    # the generic path over the remaining lines, copied into a sub-chunk
    line_start = np.concatenate([[_PAD], nl[:-1] + 1])
    lengths = nl[rest] + 1 - line_start[rest]
    offsets = np.zeros(len(rest) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    sub = a[np.repeat(line_start[rest] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))]
    gblock, gfb, _ = _generic_chunk(sub.tobytes(), 0, extended)
    glines = rest[gblock.lineno]
    if len(templates) < _MAX_TEMPLATES:
        gsig = sig[glines]
        seen, first = np.unique(gsig, return_index=True)
        for sg, i in zip(seen.tolist(), first.tolist()):
            line = glines[i]
            if not candidate[line] or len(templates.get(sg, ())) >= 4 or len(templates) >= _MAX_TEMPLATES:
                continue
            raw = a[line_start[line] : nl[line]].tobytes()
            templates.setdefault(sg, []).append(_Template(raw, extended))
    gblock.lineno = glines + line0
    return _Block.merge(block, gblock), rest[gfb], nlines


def _apply_template(t: _Template, lines, a, u64, starts, ends, ft, ntok, nums, present, strs, flags,
                    ip_vs, ip_vl, ip_slot, ip_line, extended) -> np.ndarray:
    """Check ``lines`` against template ``t``; fill the arrays for those that match.

    Works column-major: row ``c`` of each 2-D array is token column ``c`` of the template.
    """
    base = ft[lines]
    ok = ntok[lines] == t.ntok
    kidx = t.kcols[:, None] + base
    ks = starts[kidx]
    ok &= ((u64[ks] & t.m1[:, None]) == t.e1[:, None]).all(axis=0)
    if len(t.long):
        ok &= ((u64[ks[t.long] + 8] & t.m2[t.long, None]) == t.e2[t.long, None]).all(axis=0)
    if len(t.flag_cols):
        fidx = t.flag_cols[:, None] + base
        fs = starts[fidx]
        fl = ends[fidx] - fs
        ok &= (fl == t.flag_len[:, None]).all(axis=0)
        ok &= ((u64[fs] & _LOW[np.minimum(fl, 8)]) == t.flag_e1[:, None]).all(axis=0)
        ok &= ((u64[fs + 8] & _LOW[np.clip(fl - 8, 0, 8)]) == t.flag_e2[:, None]).all(axis=0)
    # numbers: key values, then the positional protocol number, timeout (and l3 number)
    off = t.off
    pcols = np.array([off + 1, off + 2] + ([1] if extended else []), np.int64)
    pidx = pcols[:, None] + base
    vs = np.concatenate([ks[t.num_kpos] + t.num_voff[:, None], starts[pidx]])
    ve = np.concatenate([ends[kidx[t.num_kpos]], ends[pidx]])
    values, vok = _digits(u64, vs.ravel(), ve.ravel())
    values = values.reshape(vs.shape)
    vok = vok.reshape(vs.shape)
    nn = len(t.num_cols)
    vok[:nn] &= values[:nn] <= t.num_max[:, None]
    ok &= vok.all(axis=0)
    # names
    ncols = [off] + ([off + 3] if t.state else []) + ([0] if extended else [])
    nslots = [_STR["proto"]] + ([_STR["state"]] if t.state else []) + ([_STR["l3"]] if extended else [])
    nidx = np.array(ncols, np.int64)[:, None] + base
    ns = starts[nidx]
    nlen = ends[nidx] - ns
    w2 = np.where(nlen > 8, u64[ns + 8], _U(0))
    vc = _vocab_codes(u64[ns].ravel(), w2.ravel(), nlen.ravel()).reshape(ns.shape)
    ok &= (vc >= 0).all(axis=0)
    if ok.all():
        good = lines
    else:
        good = lines[ok]
        if len(good) == 0:
            return ok
        values = values[:, ok]
        vc = vc[:, ok]
        ks = ks[:, ok]
        kidx = kidx[:, ok]
    for j, slot in enumerate(t.num_slots.tolist()):
        nums[slot, good] = values[j]
    nums[_NUM["protonum"], good] = values[nn]
    nums[_NUM["timeout"], good] = values[nn + 1]
    present[:, good] = t.present[:, None]
    for j, slot in enumerate(nslots):
        strs[slot, good] = vc[j]
    flags[:, good] = t.flags[:, None]
    ivs = ks[t.ip_kpos] + t.ip_voff[:, None]
    ivl = ends[kidx[t.ip_kpos]] - ivs
    ip_vs.append(ivs.ravel())
    ip_vl.append(ivl.ravel())
    ip_slot.append(np.repeat(t.ip_slots, len(good)))
    ip_line.append(np.tile(good, len(t.ip_cols)))
    return ok
    values = values[ok]
    for j, slot in enumerate(t.num_slots.tolist()):
        nums[slot, good] = values[:, j]
    nums[_NUM["protonum"], good] = values[:, nn]
    nums[_NUM["timeout"], good] = values[:, nn + 1]
    present[:, good] = t.present[:, None]
    vc = vc[ok]
    for j, slot in enumerate(nslots):
        strs[slot, good] = vc[:, j]
    flags[:, good] = t.flags[:, None]
    iidx = base[ok][:, None] + t.ip_cols
    ivs = starts[iidx] + t.ip_voff
    ivl = ends[iidx] - ivs
    ip_vs.append(ivs.ravel())
    ip_vl.append(ivl.ravel())
    ip_slot.append(np.broadcast_to(t.ip_slots, ivs.shape).ravel())
    ip_line.append(np.repeat(good, len(t.ip_cols)))
    return ok


def _append_word(words: list[str], index: dict[str, int], w: str) -> int:
    return index[w] if w in index else _append(words, index, w)


# ---------------------------------------------------------------------------------------
# Driving the parsers over an input
# ---------------------------------------------------------------------------------------

_CHUNK = 4 << 20


def _chunks(data: bytes | memoryview, size: int = _CHUNK) -> Iterator[memoryview]:
    view = memoryview(data)
    start = 0
    n = len(view)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = bytes(view[end - 1 : min(end + 65536, n)]).find(b"\n")
            if cut < 0:
                cut = bytes(view[end:]).find(b"\n")
                end = n if cut < 0 else end + cut + 1
            else:
                end = end - 1 + cut + 1
        yield view[start:end]
        start = end


def _file_chunks(path: Path, size: int = _CHUNK) -> Iterator[memoryview]:
    """Chunks of a file cut after a newline, read into one reused buffer.

    Each chunk is only valid until the next one is requested (the reader consumes
    chunks one at a time).
    """
    buf = bytearray(size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        carry = 0
        while True:
            if carry == len(buf):  # a line longer than the buffer: a bigger buffer
                bigger = bytearray(2 * len(buf))
                bigger[:carry] = buf
                buf, view = bigger, memoryview(bigger)
            got = f.readinto(view[carry:])
            end = carry + (got or 0)
            if not got:
                if end:
                    yield view[:end]
                return
            cut = buf.rfind(b"\n", 0, end)
            if cut < 0:
                carry = end
                continue
            yield view[: cut + 1]
            rest = end - cut - 1
            buf[:rest] = buf[cut + 1 : end]
            carry = rest


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


def _read_lines(chunks: Iterator[bytes | memoryview], name: str, fmt: str, policy: BadLines,
                out: "_Output", fast: bool = True) -> tuple[int, bool]:
    """Run the fast path over each chunk, then the reference parser over the lines it left.

    Chunks are read one after the other: on this project's 2-core machine two threads
    gave no speed-up (measured), and one thread keeps the learnt templates simple.
    """
    extended = fmt in ("extended", "proc")
    line0 = 1
    entries_since_summary = 0
    saw_summary = False
    total = 0
    templates: dict = {}

    def reference(lineno: int, raw: bytes, records: list) -> None:
        nonlocal entries_since_summary, saw_summary
        line = raw.decode("utf-8", errors="replace")
        kind, count = _line_kind(line)
        if kind == "blank":
            return
        if kind == "summary":
            saw_summary = True
            entries = entries_since_summary
            entries_since_summary = 0
            if count != entries:
                policy.bad(lineno, f"a summary of {entries} flow entries (the entries read)", line)
            return
        entries_since_summary += 1
        try:
            nd, sd, fl = _parse_line(line, extended)
        except _Bad as exc:
            policy.bad(lineno, exc.expected, line)
            return
        records.append((lineno, nd, sd, fl))

    def work(chunk, first_line):
        if not fast:
            return None, None, 0
        return _fast_chunk(chunk, first_line, extended, templates)

    def handle(result, chunk, first_line) -> _Block:
        nonlocal total, entries_since_summary
        block, fb, nlines = result
        records: list = []
        if block is None:
            lines = bytes(chunk).split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            total += len(lines)
            for i, raw in enumerate(lines):
                reference(first_line + i, raw, records)
            return _Block.from_records(records)
        total += nlines
        if len(fb) == 0:
            entries_since_summary += len(block.lineno)
            return block
        lines = bytes(chunk).split(b"\n")
        before = np.searchsorted(block.lineno - first_line, fb).tolist()
        prev = 0
        for k, i in enumerate(fb.tolist()):
            entries_since_summary += before[k] - prev
            prev = before[k]
            reference(first_line + i, lines[i], records)
        entries_since_summary += len(block.lineno) - prev
        return _Block.merge(block, _Block.from_records(records))

    for chunk in chunks:
        if len(chunk) and bytes(chunk[-1:]) != b"\n":
            chunk = bytes(chunk) + b"\n"
        result = work(chunk, line0)
        out.add(handle(result, chunk, line0))
        line0 += result[2] if result[0] is not None else _count_nl(chunk)
    return total, saw_summary


def _count_nl(chunk) -> int:
    return int(np.count_nonzero(np.frombuffer(chunk, np.uint8) == 10))


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


def _read_xml(data: bytes, name: str, policy: BadLines) -> _Block:
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
    return _Block.from_records(records)


# ---------------------------------------------------------------------------------------
# Frame assembly
# ---------------------------------------------------------------------------------------


def _categorical(codes: np.ndarray, words: list[str], rank: np.ndarray, by_rank: list[str]) -> pd.Categorical:
    """Categories are the values that occur, sorted (as ``pd.Categorical(values)`` makes them).

    ``rank[i]`` is the position of ``words[i]`` in ``by_rank`` (the sorted words).
    """
    n = len(words)
    used = np.zeros(n + 1, bool)
    used[codes] = True
    used_rank = np.zeros(n, bool)
    used_rank[rank[used[:n]]] = True
    new_of_rank = np.cumsum(used_rank, dtype=np.int64) - 1
    remap = np.append(new_of_rank[rank], -1).astype(np.int32)
    cats = [by_rank[r] for r in np.flatnonzero(used_rank).tolist()]
    index = pd.Index(cats, dtype="str") if cats else pd.Index([], dtype="str")
    return pd.Categorical.from_codes(remap[codes], categories=index, validate=False)


def _merge_words(word_arrays: list, key_arrays: list) -> tuple[np.ndarray, list[str]]:
    """Global code of every block word (in block order), and the distinct words."""
    texts = pa.concat_arrays(word_arrays)
    keys = np.concatenate(key_arrays)
    codes, _ = pd.factorize(keys)
    running = np.maximum.accumulate(codes) if len(codes) else codes
    first = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]])) if len(codes) else codes
    same = pc.all(pc.equal(texts, texts.take(pa.array(first[codes])))).as_py() if len(codes) else True
    if not same:  # a key collision: exact but slower
        encoded = pc.dictionary_encode(texts)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        words = encoded.dictionary.to_pylist()
    else:
        words = texts.take(pa.array(first)).to_pylist()
    # canonical IPv6 spelling can make two keys one word
    index: dict[str, int] = {}
    remap = np.array([index.setdefault(w, len(index)) for w in words], np.int32)
    if len(index) != len(words):
        codes = remap[codes]
        words = list(index)
    return codes.astype(np.int32), words


_OUT_SLOTS = [(j, slot, col) for j, (slot, col, _) in enumerate(_NUM_SLOTS) if col is not None]
_INT32_SLOTS = {j for j, _, col in _OUT_SLOTS if SCHEMAS["conntrack_flows"].column(col).dtype == "Int32"}


_MIN_ENTRY_BYTES = 32  # "a 1 src=:: dst=:: src=:: dst=::\n": no entry line is shorter


class _Output:
    """The output columns, allocated once for at most ``capacity`` rows and filled per block.

    Filling preallocated arrays (rather than concatenating per-chunk pieces at the end)
    keeps the peak memory near the size of the frame itself. Unused capacity is never
    written, so its pages are never resident.
    """

    def __init__(self, capacity: int) -> None:
        self.cap = max(int(capacity), 1)
        self.n = 0
        self.lineno = np.empty(self.cap, np.int64)
        self.vals = {j: np.empty(self.cap, np.int32 if j in _INT32_SLOTS else np.int64) for j, _, _ in _OUT_SLOTS}
        self.mask = {j: np.empty(self.cap, bool) for j, _, _ in _OUT_SLOTS}
        self.codes = {j: np.empty(self.cap, np.int32) for j in range(len(_STR_SLOTS))}
        self.flags = {k: np.empty(self.cap, bool) for k in range(len(_FLAGS))}
        self.words: list = []
        self.keys: list = []
        self.woff = 0

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.cap)
        for store in (self.vals, self.mask, self.codes, self.flags):
            for j, arr in store.items():
                new = np.empty(cap, arr.dtype)
                new[: self.n] = arr[: self.n]
                store[j] = new
        new = np.empty(cap, np.int64)
        new[: self.n] = self.lineno[: self.n]
        self.lineno = new
        self.cap = cap

    def add(self, b: _Block) -> None:
        m = len(b.lineno)
        if m == 0:
            return
        if self.n + m > self.cap:
            self._grow(self.n + m)
        sl = slice(self.n, self.n + m)
        self.lineno[sl] = b.lineno
        for j, _, _ in _OUT_SLOTS:
            self.vals[j][sl] = b.nums[j]
            np.logical_not(b.present[j], out=self.mask[j][sl])
        for j in range(len(_STR_SLOTS)):
            codes = b.strs[j]
            self.codes[j][sl] = np.where(codes >= 0, codes + self.woff, -1)
        for k in range(len(_FLAGS)):
            self.flags[k][sl] = b.flags[k]
        self.words.append(b.words)
        self.keys.append(b.keys)
        self.woff += len(b.words)
        self.n += m

    def frame(self, node_port_range: tuple[int, int]) -> pd.DataFrame:
        """The ``conntrack_flows`` frame (views of the filled part of the arrays)."""
        n = self.n
        if n == 0:
            return empty_frame("conntrack_flows")
        indices, words = _merge_words(self.words, self.keys)
        self.words = self.keys = []
        lookup = np.append(indices, np.int32(len(words)))
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words), np.int64)
        rank[order] = np.arange(len(words))
        by_rank = [words[i] for i in order]
        spec = SCHEMAS["conntrack_flows"]
        out: dict[str, object] = {"lineno": self.lineno[:n]}
        nums = {}
        for j, slot, col in _OUT_SLOTS:
            values, mask = self.vals[j][:n], self.mask[j][:n]
            nums[slot] = (values, mask)
            out[col] = values if spec.column(col).dtype == "int64" else pd.arrays.IntegerArray(values, mask)
        sc = {}
        for j, (slot, col) in enumerate(_STR_SLOTS):
            codes = self.codes[j][:n]
            np.take(lookup, codes, out=codes)
            sc[slot] = codes
            out[col] = _categorical(codes, words, rank, by_rank)
        for k, col in enumerate(_FLAG_COLUMNS):
            out[col] = self.flags[k][:n]
        out["service_ip"] = out["orig_dst_ip"]
        out["service_port"] = out["orig_dst_port"]
        out["backend_ip"] = out["reply_src_ip"]
        out["backend_port"] = out["reply_src_port"]

        def differs(ip_a, ip_b, port_a, port_b):
            (va, ma), (vb, mb) = nums[port_a], nums[port_b]
            return (sc[ip_a] != sc[ip_b]) | (ma != mb) | (~ma & ~mb & (va != vb))

        out["dnat"] = differs("reply_src", "orig_dst", "reply_sport", "orig_dport")
        out["snat"] = differs("reply_dst", "orig_src", "reply_dport", "orig_sport")
        lo, hi = node_port_range
        dv, dm = nums["orig_dport"]
        out["is_node_port"] = ~dm & (dv >= lo) & (dv <= hi)
        names = [c.name for c in spec.columns if c.required]
        return pd.DataFrame({c: out[c] for c in names}, copy=False)


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
        out = _Output(0)
        out.add(_read_xml(data, src_name, policy))
        total = count_lines(data)
        saw_summary = True
    else:
        size = chunk_size or _CHUNK
        chunks = _file_chunks(Path(source), size) if data is None else _chunks(data, size)
        capacity = Path(source).stat().st_size // _MIN_ENTRY_BYTES + 2 if data is None else data.count(b"\n") + 1
        out = _Output(capacity)
        total, saw_summary = _read_lines(chunks, src_name, detected, policy, out, fast=fast)
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
