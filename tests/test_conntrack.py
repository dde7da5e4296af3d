"""Tests of npanalytics.collectors.conntrack on real captures (tests/data/conntrack/, made by
record.py in npa-ct-* namespaces), hand-made broken files, generated entries and a live netns."""

from __future__ import annotations

import gzip
import io
import ipaddress
import os
import random
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npanalytics.collectors.conntrack as ctmod
from npanalytics import CollectorError, ParseError, ParseWarning, validate_frame
from npanalytics.collectors.conntrack import (
    get_conntrack,
    get_conntrack_stats,
    read_conntrack,
    read_conntrack_stats,
)
from npanalytics.schemas import SCHEMAS

DATA = Path(__file__).parent / "data" / "conntrack"
NPR = (30000, 32767)


def ref(source, **kw) -> pd.DataFrame:
    """The reference (per-line) parser only."""
    return ctmod._read(source, kw.pop("format", "auto"), NPR, kw.pop("on_bad_line", "raise"), fast=False)


def fast(source, chunk_size=0, **kw) -> pd.DataFrame:
    return ctmod._read(source, kw.pop("format", "auto"), NPR, kw.pop("on_bad_line", "raise"), chunk_size=chunk_size)


def test_all_is_the_public_api():
    public = {n for n in dir(ctmod) if not n.startswith("_") and callable(getattr(ctmod, n))
              and getattr(getattr(ctmod, n), "__module__", "") == ctmod.__name__}
    assert set(ctmod.__all__) == public


def test_docstrings_carry_the_schema():
    assert "orig_src_ip" in read_conntrack.__doc__ and "is_node_port" in read_conntrack.__doc__
    assert "clash_resolve" in read_conntrack_stats.__doc__


# --------------------------------------------------------------------------- real samples


def test_default_sample_exact_values():
    df = read_conntrack(DATA / "default.txt")
    validate_frame(df, "conntrack_flows")
    assert len(df) == 21
    rep = df.attrs["parse_report"]
    assert (rep.format, rep.lines_total, rep.lines_parsed, rep.lines_skipped) == ("conntrack", 22, 22, 0)
    first = df.iloc[0]
    assert first["lineno"] == 1
    assert (first["protocol"], first["protocol_number"], first["timeout_seconds"], first["state"]) == ("tcp", 6, 118, "TIME_WAIT")
    assert (first["orig_src_ip"], first["orig_dst_ip"], first["orig_src_port"], first["orig_dst_port"]) == ("198.18.10.1", "198.18.10.2", 55702, 30080)
    assert (first["reply_src_ip"], first["reply_dst_ip"], first["reply_src_port"], first["reply_dst_port"]) == ("198.18.10.18", "198.18.10.17", 8080, 55702)
    assert (first["orig_packets"], first["orig_bytes"], first["reply_packets"], first["reply_bytes"]) == (6, 325, 4, 224)
    assert (first["assured"], first["unreplied"], first["mark"], first["use"], first["delta_time_seconds"]) == (True, False, 0, 1, 1)
    # NodePort 30080 DNATed to the pod and masqueraded to the node's pod-side address
    assert (first["service_ip"], first["service_port"], first["backend_ip"], first["backend_port"]) == ("198.18.10.2", 30080, "198.18.10.18", 8080)
    assert first["dnat"] and first["snat"] and first["is_node_port"]
    # the eTP=Local-like port keeps the client: DNAT without SNAT, connmark 42
    local = df[df["orig_dst_port"] == 30081]
    assert len(local) == 3 and (local["mark"] == 42).all() and local["dnat"].all() and not local["snat"].any()
    # half of the entries were created before accounting was turned on
    assert df["orig_packets"].isna().sum() == 9 and df["orig_packets"].notna().sum() == 12
    assert (df["orig_packets"].isna() == df["delta_time_seconds"].isna()).all()
    # two SYN_SENT entries to the dropping pod are [UNREPLIED]
    unrep = df[df["unreplied"]]
    assert list(unrep["state"]) == ["SYN_SENT", "SYN_SENT"] and not unrep["assured"].any()
    assert unrep["orig_packets"].dropna().tolist() == [1] and unrep["reply_packets"].dropna().tolist() == [0]
    # ICMP: no ports, type/code/id of the original direction; zone 7 to the node
    icmp = df[df["protocol"] == "icmp"]
    assert len(icmp) == 4 and icmp["orig_src_port"].isna().all() and (icmp["icmp_type"] == 8).all()
    assert sorted(icmp["icmp_id"].tolist()) == [7, 8, 9, 10]
    assert sorted(icmp["zone"].dropna().tolist()) == [7, 7]
    assert not icmp["dnat"].any() and not icmp["is_node_port"].any()
    # IPv6 entries
    v6 = df[df["l3_protocol"] == "ipv6"]
    assert len(v6) == 4 and set(v6["protocol"]) == {"tcp", "icmpv6"}
    assert set(v6["orig_src_ip"]) == {"2001:2:0:a::1"}
    tcp6 = v6[v6["protocol"] == "tcp"]
    assert set(tcp6["backend_ip"]) == {"2001:2:0:a:1::18"} and tcp6["dnat"].all()
    assert df["conntrack_id"].isna().all() and df["secctx"].isna().all() and df["helper"].isna().all()
    assert str(df["orig_src_port"].dtype) == "Int32" and isinstance(df["state"].dtype, pd.CategoricalDtype)


def _tuples(df: pd.DataFrame, icmp: bool = True) -> set:
    cols = ["protocol", "orig_src_ip", "orig_dst_ip", "orig_src_port", "orig_dst_port"] + (["icmp_id"] if icmp else []) + [
            "reply_src_ip", "reply_dst_ip", "reply_src_port", "reply_dst_port"]
    return {tuple(None if pd.isna(v) else v for v in row) for row in df[cols].astype(object).itertuples(index=False)}


@pytest.mark.parametrize("name, fmt", [("extended.txt", "extended"), ("proc.txt", "proc"), ("xml.xml", "xml"), ("id.txt", "conntrack")])
def test_every_format_reads_the_same_table(name, fmt):
    base = read_conntrack(DATA / "default.txt")
    df = read_conntrack(DATA / name)
    validate_frame(df, "conntrack_flows")
    assert df.attrs["parse_report"].format == fmt
    assert df.attrs["parse_report"].lines_skipped == 0
    assert len(df) == 21
    # conntrack's XML prints no ICMP type/code/id (libnetfilter_conntrack leaves <layer4> empty)
    assert _tuples(df, icmp=fmt != "xml") == _tuples(base, icmp=fmt != "xml")
    if fmt == "xml":
        assert df["icmp_id"].isna().all()
    assert sorted(df["mark"]) == sorted(base["mark"])
    assert df["assured"].sum() == base["assured"].sum() and df["unreplied"].sum() == 2


def test_proc_prints_zone_zero_and_expanded_ipv6():
    df = read_conntrack(DATA / "proc.txt")
    assert sorted(df["zone"].value_counts().items()) == [(0, 19), (7, 2)]
    assert set(df.loc[df["l3_protocol"] == "ipv6", "orig_src_ip"]) == {"2001:2:0:a::1"}
    assert (df["use"] == 2).all()


def test_xml_and_id_carry_the_same_entry_ids():
    x = read_conntrack(DATA / "xml.xml")
    i = read_conntrack(DATA / "id.txt")
    key = ["orig_src_ip", "orig_dst_ip", "orig_src_port", "protocol", "mark", "orig_packets"]
    a = x.set_index(key)["conntrack_id"].astype("Int64").sort_index()
    b = i.set_index(key)["conntrack_id"].astype("Int64").sort_index()
    assert a.notna().all() and a.equals(b)
    assert x["lineno"].min() == 3  # flows start on the third line of the XML document


def test_ipv6_only_sample():
    df = read_conntrack(DATA / "ipv6.txt")
    assert len(df) == 4 and set(df["l3_protocol"]) == {"ipv6"}
    assert df.loc[df["protocol"] == "icmpv6", "icmp_type"].tolist() == [128, 128]


def test_fast_path_equals_reference_on_samples():
    for name in ("default.txt", "extended.txt", "id.txt", "ipv6.txt", "proc.txt", "broken_mixed.txt"):
        kw = {"on_bad_line": "skip"}
        pd.testing.assert_frame_equal(fast(DATA / name, chunk_size=300, **kw), ref(DATA / name, **kw))


@pytest.mark.parametrize("chunk_size", [50, 1000])
def test_file_chunks_shorter_than_a_line_and_no_final_newline(tmp_path, chunk_size):
    raw = (DATA / "default.txt").read_bytes() + (DATA / "ipv6.txt").read_bytes()
    raw = raw.replace(b"conntrack v1.4.7 (conntrack-tools): 21 flow entries have been shown.\n", b"\n")
    path = tmp_path / "dump.txt"
    path.write_bytes(raw.rstrip(b"\n"))
    df = fast(path, chunk_size=chunk_size, on_bad_line="skip")
    pd.testing.assert_frame_equal(df, ref(raw.rstrip(b"\n"), on_bad_line="skip"))
    assert df.attrs["parse_report"].lines_total == raw.rstrip(b"\n").count(b"\n") + 1
    assert len(df) == raw.count(b"src=") // 2


def kernel_lines(text: bytes, extended: bool, chunk_lines: int = 0) -> set[int]:
    """Line numbers the compiled kernel reads itself (the others go to _parse_line)."""
    ctmod._compiled()
    buf = np.frombuffer(text, np.uint8).copy()
    out = ctmod._Output(len(buf) // 32 + 1)
    calls = ctmod._scan_chunk(buf, extended, True, 1, 0, out.tables())
    left = {lineno for fallback, _ in calls for _, _, lineno, _, _ in fallback}
    return set(range(1, text.count(b"\n") + 1)) - left


_RARE = ("secctx=", "helper=", "labels=", "srckey=", "start=", ":")


@pytest.mark.parametrize("name, extended", [("default.txt", False), ("extended.txt", True), ("proc.txt", True), ("id.txt", False)])
def test_kernel_reads_the_common_lines_and_leaves_the_rest(name, extended):
    lines = (DATA / name).read_bytes().split(b"\n")[:-1]
    common = {n for n, line in enumerate(lines, 1)
              if not line.startswith(b"conntrack v") and not any(r.encode() in line for r in _RARE)}
    assert len(common) >= len(lines) // 2  # the samples are mostly IPv4 tcp/udp/icmp
    assert kernel_lines(b"\n".join(lines) + b"\n", extended) == common


@pytest.mark.parametrize(
    "line, kernel",
    [
        ("tcp      6 5 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 use=1000000000000000000", False),  # 19 digits
        ("tcp      6 5 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 use=0000000000000000000001", False),
        ("tcp      6 5 src=1.2.3.4\tdst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", False),
        ("tcp      6 5 5 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", False),  # '5' as a state
        ("dccp     33 5 OPEN src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", False),  # a state it does not know
        ("tcp      6 CLOSE src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", True),  # offloaded: no timeout
        ("  tcp 6 5 src=1.2.3.4  dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 id=7 [OFFLOAD]  ", True),
    ],
)
def test_lines_at_the_kernel_edge_read_as_the_reference_reads_them(line, kernel):
    text = line + "\n"
    assert kernel_lines(text.encode(), False) == ({1} if kernel else set())
    df = read_conntrack(text)
    pd.testing.assert_frame_equal(df, ref(text))
    assert len(df) == 1


def test_first_calls_from_several_threads_at_once():
    """In a fresh interpreter, where the kernel is not loaded yet."""
    code = textwrap.dedent(f"""
        import threading
        import pandas as pd
        from npanalytics.collectors.conntrack import read_conntrack
        frames = []
        threads = [threading.Thread(target=lambda: frames.append(read_conntrack({str(DATA / "default.txt")!r})))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(frames) == 4, len(frames)
        for df in frames[1:]:
            pd.testing.assert_frame_equal(df, frames[0])
        print(len(frames[0]))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(len(read_conntrack(DATA / "default.txt")))]


_V4_CASES = ["0.0.0.0", "255.255.255.255", "198.18.0.1", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
             "1..2.3", "0.0.0.00", "1234.1.1.1", "1.2.3.4x", "", ".1.2.3", "1.2.3.255", "9.99.199.249"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_V4_CASES) | st.text("0123456789.", max_size=16))
def test_kernel_ipv4_accepts_what_ipaddress_accepts(text):
    ctmod._compiled()
    buf = np.frombuffer((text + " ").encode(), np.uint8).copy()
    value, stop = ctmod._ipv4(buf, 0)
    try:
        want = int(ipaddress.IPv4Address(text))
    except ValueError:
        want = None
    got = value if value >= 0 and stop == len(text) else None
    assert got == want


# --------------------------------------------------------------------------- sources


def test_sources_path_gz_file_str_bytes(tmp_path):
    raw = (DATA / "default.txt").read_bytes()
    expected = read_conntrack(DATA / "default.txt")
    gz = tmp_path / "dump.txt.gz"
    gz.write_bytes(gzip.compress(raw))
    for source in (str(DATA / "default.txt"), gz, io.BytesIO(raw), io.StringIO(raw.decode()), raw, raw.decode()):
        df = read_conntrack(source)
        pd.testing.assert_frame_equal(df, expected)
    assert read_conntrack(gz).attrs["parse_report"].source == str(gz)
    assert read_conntrack(raw).attrs["parse_report"].source == "<bytes>"


@pytest.mark.parametrize("content", ["", b"", "\n\n"])
def test_empty_input_gives_an_empty_typed_frame(content):
    df = read_conntrack(content)
    validate_frame(df, "conntrack_flows")
    assert len(df) == 0
    assert list(df.columns) == [c.name for c in SCHEMAS["conntrack_flows"].columns if c.required]
    rep = df.attrs["parse_report"]
    assert rep.lines_parsed == rep.lines_total == content.count("\n" if isinstance(content, str) else b"\n")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_conntrack(DATA / "nope.txt")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, match",
    [
        ("broken_truncated.txt", r"broken_truncated.txt:2: expected key=value or a flag"),
        ("broken_port.txt", r"broken_port.txt:2: expected sport= at most 65535, got 'tcp"),
        ("broken_missing_reply.txt", r"broken_missing_reply.txt:1: expected a reply tuple with src= and dst="),
        ("broken_summary_count.txt", r"broken_summary_count.txt:4: expected a summary of 3 flow entries"),
        ("broken_event.txt", r"broken_event.txt:1: expected a conntrack -L entry \(event lines of conntrack -E"),
        ("broken_mixed.txt", r"broken_mixed.txt:2: expected a known key \(did you mean mark=\?\)"),
        ("broken_malformed.xml", r"broken_malformed.xml:3: expected well-formed XML \(mismatched tag"),
        ("broken_truncated.xml", r"broken_truncated.xml:3: expected </conntrack> \(the XML dump is truncated\)"),
    ],
)
def test_parse_errors_name_file_line_and_what(name, match):
    with pytest.raises(ParseError, match=match):
        read_conntrack(DATA / name)


@pytest.mark.parametrize(
    "line, match",
    [
        ("tcp      6 5 ESTABLISHED dst=1.2.3.4 src=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", "src= before dst="),
        ("tcp      6 5 ESTABLISHED src=1.2.3.4 dst=1.2.3.4 sport=1 dport=2 src=1.2.3.4 dst=1.2.3.4 sport=1", "sport= dport= together"),
        ("tcp      6 5 ESTABLISHED src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4", "a third src="),
        ("tcp      6 5 ESTABLISHED src=1.2.3 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", "an IP address in src="),
        ("tcp      6 5 ESTABLISHED src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 mark=1 mark=2", "mark= only once"),
        ("tcp      6 5 ESTABLISHED src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 [FOO]", "a flag"),
        ("tcp      6 5 ESTABLISHED src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 [ASSURED] [ASSURED]", r"\[ASSURED\] only once"),
        ("tcp      6 x ESTABLISHED src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", "a decimal number in the timeout"),
        ("tcp      6 1 2 3 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4", "at most a timeout and a state"),
        ("tcp      six", "an L4 protocol name and number|a decimal number in the L4"),
        ("tcp      6 5 ESTABLISHED", "src= dst= ... tuples"),
        ("icmp     1 5 src=1.2.3.4 dst=1.2.3.4 type=300 code=0 id=1 src=1.2.3.4 dst=1.2.3.4 type=0 code=0 id=1", "type= at most 255"),
        ("gre      47 5 src=1.2.3.4 dst=1.2.3.4 srckey=zz dstkey=0x1 src=1.2.3.4 dst=1.2.3.4 srckey=0x1 dstkey=0x1", "a hex key in srckey="),
        ("tcp      6 5 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4 use=99999999999999999999", "use= at most"),
        ("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.", "a summary of 0 flow entries"),
    ],
)
def test_line_errors(line, match):
    for source in (line + "\n", (line + "\n").encode()):
        with pytest.raises(ParseError, match=r"<(string|bytes)>:1: expected .*" + match):
            read_conntrack(source)
        with pytest.raises(ParseError, match=match):
            ref(source)


def test_extended_errors():
    with pytest.raises(ParseError, match=r":1: expected a decimal number in the L3 protocol number"):
        read_conntrack("ipv4     x tcp      6 5 src=1.2.3.4 dst=1.2.3.4 src=1.2.3.4 dst=1.2.3.4\n", format="extended")
    with pytest.raises(ParseError, match=r":1: expected an L3 protocol name"):
        read_conntrack("src=1.2.3.4\n", format="proc")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"format must be one of .*did you mean 'extended'"):
        read_conntrack(DATA / "default.txt", format="extnded")
    with pytest.raises(ValueError, match="on_bad_line must be one of"):
        read_conntrack(DATA / "default.txt", on_bad_line="ignore")
    with pytest.raises(ValueError, match="node_port_range must satisfy"):
        read_conntrack(DATA / "default.txt", node_port_range=(40000, 30000))
    with pytest.raises(ValueError, match="node_port_range must be a"):
        read_conntrack(DATA / "default.txt", node_port_range=5)
    with pytest.raises(TypeError, match="source must be a path"):
        read_conntrack(3.5)


def test_node_port_range():
    df = read_conntrack(DATA / "default.txt", node_port_range=(30081, 30081))
    assert set(df.loc[df["is_node_port"], "orig_dst_port"]) == {30081}


# --------------------------------------------------------------------------- bad-line policy


def test_skip_counts_and_keeps_the_good_lines():
    df = read_conntrack(DATA / "broken_mixed.txt", on_bad_line="skip")
    rep = df.attrs["parse_report"]
    assert rep.skipped_linenos == (2, 5)
    assert (rep.lines_total, rep.lines_parsed, rep.lines_skipped) == (7, 5, 2)
    assert rep.lines_parsed + rep.lines_skipped == rep.lines_total
    assert df["lineno"].tolist() == [1, 3, 6]
    assert "did you mean mark=" in rep.first_error


def test_warn_emits_one_parse_warning():
    with pytest.warns(ParseWarning, match=r"broken_mixed.txt: skipped 2 of 7 lines \(line 2, 5\)"):
        df = read_conntrack(DATA / "broken_mixed.txt", on_bad_line="warn")
    assert len(df) == 3


def test_summary_count_mismatch_is_skipped_under_skip():
    df = read_conntrack(DATA / "broken_summary_count.txt", on_bad_line="skip")
    assert len(df) == 3 and df.attrs["parse_report"].skipped_linenos == (4,)


def test_summary_counts_entries_since_the_previous_summary():
    one = (DATA / "default.txt").read_bytes()
    df = read_conntrack(one + one)
    assert len(df) == 42 and df.attrs["parse_report"].lines_parsed == 44
    # a truncated capture: the summary says 21, only 20 entries precede it
    lines = one.split(b"\n")
    cut = b"\n".join(lines[:19] + lines[20:])
    with pytest.raises(ParseError, match=r":21: expected a summary of 20 flow entries"):
        read_conntrack(cut)


def test_xml_policy_skips_rest_after_a_syntax_error():
    df = read_conntrack(DATA / "broken_malformed.xml", on_bad_line="skip")
    rep = df.attrs["parse_report"]
    assert len(df) == 0 and rep.skipped_linenos == (3, 4, 5) and rep.lines_total == 5


# --------------------------------------------------------------------------- stats


def test_stats_conntrack_S():
    df = read_conntrack_stats(DATA / "stats.txt")
    validate_frame(df, "conntrack_stats")
    assert df["cpu"].tolist() == [0, 1]
    assert df.attrs["parse_report"].format == "conntrack"
    assert (df["found"] == 0).all() and df["clash_resolve"].notna().all() and df["entries"].isna().all()


def test_stats_proc_hex_and_renamed_columns():
    df = read_conntrack_stats(DATA / "proc_stat.txt")
    validate_frame(df, "conntrack_stats")
    assert df.attrs["parse_report"].format == "proc"
    assert df["entries"].tolist() == [0x15, 0x15]
    for col in ("clash_resolve", "chaintoolong", "error", "expect_new", "search_restart"):
        assert df[col].notna().all()
    assert df["searched"].isna().all() and df["delete_list"].isna().all()


def test_stats_unknown_counters_are_kept():
    df = read_conntrack_stats(DATA / "stats_unknown.txt")
    validate_frame(df, "conntrack_stats")
    assert df.loc[0, "invalid"] == 142 and df.loc[0, "clash_resolve"] == 2 and df.loc[0, "unknown1"] == 9
    assert str(df["unknown1"].dtype) == "Int64"


def test_stats_errors():
    with pytest.raises(ParseError, match=r"broken_stats.txt:1: expected name=value counters"):
        read_conntrack_stats(DATA / "broken_stats.txt")
    with pytest.raises(ParseError, match=r"<string>:2: expected 3 hexadecimal counters"):
        read_conntrack_stats("entries found insert\n00000001 zz 00000000\n")
    with pytest.raises(ParseError, match=r"<string>:1: expected cpu=N first"):
        read_conntrack_stats("found=1 cpu=0\n")
    df = read_conntrack_stats("cpu=0 found=1\ncpu=1 found=x\n", on_bad_line="skip")
    assert len(df) == 1 and df.attrs["parse_report"].skipped_linenos == (2,)


# --------------------------------------------------------------------------- property-based

TCP_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"]


@st.composite
def entries(draw, xml=False):
    v6 = draw(st.booleans())
    if v6:
        addr = lambda: str(ipaddress.IPv6Address((0x2001_0002 << 96) + draw(st.integers(0, 2**80 - 1))))  # noqa: E731
    else:
        addr = lambda: str(ipaddress.IPv4Address(0xC6120000 + draw(st.integers(0, 2**17 - 1))))  # noqa: E731
    kinds = ["tcp", "udp", "icmp", "sctp", "generic"] + ([] if xml else ["gre"])
    kind = draw(st.sampled_from(kinds))
    e = {"l3": "ipv6" if v6 else "ipv4"}
    if kind == "icmp":
        e["proto"], e["pnum"] = ("icmpv6", 58) if v6 else ("icmp", 1)
    else:
        e["proto"], e["pnum"] = {"tcp": ("tcp", 6), "udp": ("udp", 17), "sctp": ("sctp", 132),
                                 "generic": ("unknown", draw(st.sampled_from([2, 99, 253]))), "gre": ("gre", 47)}[kind]
    e["timeout"] = draw(st.none() | st.integers(0, 10**6)) if not xml else draw(st.integers(0, 10**6))
    e["state"] = (draw(st.sampled_from(TCP_STATES)) if kind == "tcp" else
                  draw(st.sampled_from(["ESTABLISHED", "COOKIE_WAIT", "CLOSED"])) if kind == "sctp" else None)
    if e["timeout"] is None and e["state"] is None and not xml:
        e["timeout"] = 1
    e["orig_src"], e["orig_dst"], e["reply_src"], e["reply_dst"] = addr(), addr(), addr(), addr()
    port = st.integers(0, 65535)
    e["ports"] = [draw(port) for _ in range(4)] if kind in ("tcp", "udp", "sctp") else None
    e["icmp"] = [draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(port)] if kind == "icmp" else None
    e["gre"] = kind == "gre"
    e["acct"] = [draw(st.integers(0, 2**62)) for _ in range(4)] if draw(st.booleans()) else None
    e["unreplied"] = draw(st.booleans())
    e["flag"] = draw(st.sampled_from([None, "[ASSURED]"] + ([] if xml else ["[OFFLOAD]", "[HW_OFFLOAD]"])))
    opt = lambda s: draw(st.none() | s)  # noqa: E731
    e["mark"] = opt(st.integers(0, 2**32 - 1))
    e["secmark"] = opt(st.integers(0, 2**32 - 1))
    e["secctx"] = opt(st.sampled_from(["system_u:object_r:unlabeled_t:s0", "ctx"]))
    e["zone"] = opt(st.integers(0, 65535))
    e["zone_orig"] = opt(st.integers(0, 65535))
    e["zone_reply"] = opt(st.integers(0, 65535))
    e["delta"] = opt(st.integers(0, 10**9))
    e["helper"] = None if xml else opt(st.sampled_from(["ftp", "sip"]))
    e["use"] = opt(st.integers(0, 10**6))
    e["id"] = opt(st.integers(0, 2**32 - 1))
    e["labels"] = None if xml else opt(st.sampled_from(["a", "a,b"]))
    return e


def render_line(e: dict, fmt: str) -> str:
    def ip(a):
        return ipaddress.ip_address(a).exploded if fmt == "proc" and ":" in a else a

    out = []
    if fmt in ("extended", "proc"):
        out.append(f"{e['l3']:<8s} {2 if e['l3'] == 'ipv4' else 10} ")
    out.append(f"{e['proto']:<8s} {e['pnum']} ")
    head = "".join(out)
    parts = []
    if e["timeout"] is not None:
        parts.append(str(e["timeout"]))
    if e["state"]:
        parts.append(e["state"])
    for d in ("orig", "reply"):
        parts += [f"src={ip(e[d + '_src'])}", f"dst={ip(e[d + '_dst'])}"]
        if e["ports"]:
            i = 0 if d == "orig" else 2
            parts += [f"sport={e['ports'][i]}", f"dport={e['ports'][i + 1]}"]
        if e["icmp"]:
            parts += [f"type={e['icmp'][0]}", f"code={e['icmp'][1]}", f"id={e['icmp'][2]}"]
        if e["gre"]:
            parts += ["srckey=0x1", "dstkey=0x2"]
        z = e["zone_orig"] if d == "orig" else e["zone_reply"]
        if z is not None:
            parts.append(f"zone-{d if d == 'reply' else 'orig'}={z}")
        if e["acct"]:
            i = 0 if d == "orig" else 2
            parts += [f"packets={e['acct'][i]}", f"bytes={e['acct'][i + 1]}"]
        if d == "orig" and e["unreplied"]:
            parts.append("[UNREPLIED]")
    if e["flag"]:
        parts.append(e["flag"])
    for key, val in (("mark", e["mark"]), ("secmark", e["secmark"]), ("secctx", e["secctx"])):
        if val is not None:
            parts.append(f"{key}={val}")
    zone = e["zone"] if e["zone"] is not None or fmt != "proc" else 0
    if zone is not None:
        parts.append(f"zone={zone}")
    for key, val in (("delta-time", e["delta"]), ("helper", e["helper"]), ("use", e["use"]), ("id", e["id"]), ("labels", e["labels"])):
        if val is not None:
            parts.append(f"{key}={val}")
    return head + " ".join(parts)


def render_xml(es: list[dict]) -> str:
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<conntrack>"]
    for e in es:
        l3num = 2 if e["l3"] == "ipv4" else 10
        metas = []
        for d, name in (("orig", "original"), ("reply", "reply")):
            l4 = ""
            if e["ports"]:
                i = 0 if d == "orig" else 2
                l4 = f"<sport>{e['ports'][i]}</sport><dport>{e['ports'][i + 1]}</dport>"
            if e["icmp"]:
                l4 = f"<type>{e['icmp'][0]}</type><code>{e['icmp'][1]}</code><id>{e['icmp'][2]}</id>"
            z = e["zone_orig"] if d == "orig" else e["zone_reply"]
            extra = f"<zone>{z}</zone>" if z is not None else ""
            if e["acct"]:
                i = 0 if d == "orig" else 2
                extra += f"<counters><packets>{e['acct'][i]}</packets><bytes>{e['acct'][i + 1]}</bytes></counters>"
            metas.append(
                f'<meta direction="{name}"><layer3 protonum="{l3num}" protoname="{e["l3"]}"><src>{e[d + "_src"]}</src>'
                f'<dst>{e[d + "_dst"]}</dst></layer3><layer4 protonum="{e["pnum"]}" protoname="{e["proto"]}">{l4}</layer4>{extra}</meta>'
            )
        ind = ""
        if e["state"]:
            ind += f"<state>{e['state']}</state>"
        ind += f"<timeout>{e['timeout']}</timeout>"
        for tag, key in (("mark", "mark"), ("secmark", "secmark"), ("secctx", "secctx"), ("zone", "zone"), ("use", "use"), ("id", "id")):
            if e[key] is not None:
                ind += f"<{tag}>{e[key]}</{tag}>"
        if e["flag"] == "[ASSURED]":
            ind += "<assured/>"
        if e["unreplied"]:
            ind += "<unreplied/>"
        if e["delta"] is not None:
            ind += f"<deltatime>{e['delta']}</deltatime>"
        metas.append(f'<meta direction="independent">{ind}</meta>')
        out.append("<flow>" + "".join(metas) + "</flow>")
    out.append("</conntrack>")
    return "\n".join(out) + "\n"


def expected_row(e: dict, fmt: str) -> dict:
    ports = e["ports"] or [None] * 4
    icmp = e["icmp"] or [None] * 3
    acct = e["acct"] or [None] * 4
    zone = e["zone"] if e["zone"] is not None or fmt != "proc" else 0
    canon = lambda a: str(ipaddress.ip_address(a))  # noqa: E731
    return {
        "l3_protocol": e["l3"], "protocol": e["proto"], "protocol_number": e["pnum"],
        "timeout_seconds": e["timeout"], "state": e["state"],
        "orig_src_ip": canon(e["orig_src"]), "orig_dst_ip": canon(e["orig_dst"]),
        "reply_src_ip": canon(e["reply_src"]), "reply_dst_ip": canon(e["reply_dst"]),
        "orig_src_port": ports[0], "orig_dst_port": ports[1], "reply_src_port": ports[2], "reply_dst_port": ports[3],
        "icmp_type": icmp[0], "icmp_code": icmp[1], "icmp_id": icmp[2],
        "orig_packets": acct[0], "orig_bytes": acct[1], "reply_packets": acct[2], "reply_bytes": acct[3],
        "unreplied": e["unreplied"], "assured": e["flag"] == "[ASSURED]", "offload": e["flag"] == "[OFFLOAD]",
        "hw_offload": e["flag"] == "[HW_OFFLOAD]", "mark": e["mark"], "secmark": e["secmark"], "secctx": e["secctx"],
        "zone": zone, "zone_orig": e["zone_orig"], "zone_reply": e["zone_reply"], "use": e["use"],
        "conntrack_id": e["id"], "helper": e["helper"], "labels": e["labels"], "delta_time_seconds": e["delta"],
        "dnat": canon(e["reply_src"]) != canon(e["orig_dst"]) or ports[2] != ports[1],
        "snat": canon(e["reply_dst"]) != canon(e["orig_src"]) or ports[3] != ports[0],
        "is_node_port": ports[1] is not None and 30000 <= ports[1] <= 32767,
    }


def _check(df: pd.DataFrame, es: list[dict], fmt: str) -> None:
    validate_frame(df, "conntrack_flows")
    assert len(df) == len(es)
    for (_, row), e in zip(df.iterrows(), es):
        for col, want in expected_row(e, fmt).items():
            got = row[col]
            assert (pd.isna(got) and want is None) or got == want, (col, got, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=12), st.sampled_from(["conntrack", "extended", "proc"]),
       st.sampled_from([0, 90, 400]))
def test_rendered_lines_parse_back(es, fmt, chunk):
    text = "".join(render_line(e, fmt) + "\n" for e in es)
    if fmt != "proc":
        text += f"conntrack v1.4.7 (conntrack-tools): {len(es)} flow entries have been shown.\n"
    df = fast(text, chunk_size=chunk, format=fmt)
    _check(df, es, fmt)
    pd.testing.assert_frame_equal(df, ref(text, format=fmt))
    auto = fast(text, chunk_size=chunk)
    assert auto.attrs["parse_report"].format == fmt
    pd.testing.assert_frame_equal(auto, df)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(xml=True), min_size=1, max_size=8))
def test_rendered_xml_parses_back(es):
    df = read_conntrack(render_xml(es))
    assert df.attrs["parse_report"].format == "xml"
    _check(df, es, "xml")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=10), st.randoms(use_true_random=False), st.sampled_from([0, 120]))
def test_fast_path_equals_reference_on_mutated_lines(es, rnd, chunk):
    lines = [render_line(e, "conntrack") for e in es] * 3
    for i in range(len(lines)):
        if rnd.random() < 0.3:
            lines[i] = _mutate(lines[i], rnd)
    text = "\n".join(lines) + "\n"
    a = fast(text, chunk_size=chunk, format="conntrack", on_bad_line="skip")
    b = ref(text, format="conntrack", on_bad_line="skip")
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["parse_report"] == b.attrs["parse_report"]


# --------------------------------------------------------------------------- fuzz

_JUNK = ["=", " ", "  ", "\t", "\r", "[", "]", "x", "9", "0", ":", ".", "-", "src=", "dst=", "id=", "\x00", "é", "99999999999999999999"]


def _mutate(line: str, rnd: random.Random) -> str:
    op = rnd.randrange(5)
    i = rnd.randrange(len(line) + 1)
    if op == 0:
        return line[:i]
    if op == 1:
        return line[:i] + rnd.choice(_JUNK) + line[i:]
    if op == 2:
        return line[:i] + line[i + rnd.randrange(1, 8):]
    if op == 3:
        toks = line.split(" ")
        rnd.shuffle(toks)
        return " ".join(toks)
    j = rnd.randrange(len(line) + 1)
    return line[:i] + line[j:i] + line[i:]


def test_fuzz_only_parse_errors():
    rnd = random.Random(20261130)
    corpus = [p.read_text().splitlines() for p in (DATA / "default.txt", DATA / "extended.txt", DATA / "proc.txt")]
    for n in range(300):
        lines = list(rnd.choice(corpus))
        for _ in range(rnd.randrange(1, 4)):
            k = rnd.randrange(len(lines))
            lines[k] = _mutate(lines[k], rnd)
        text = "\n".join(lines) + "\n"
        try:
            read_conntrack(text)
        except ParseError:
            pass
        df = read_conntrack(text, on_bad_line="skip")
        rep = df.attrs["parse_report"]
        assert rep.lines_parsed + rep.lines_skipped == rep.lines_total == len(lines)
        assert len(df) <= len(lines)
        pd.testing.assert_frame_equal(df, ref(text, on_bad_line="skip"))
    xml = (DATA / "xml.xml").read_text().splitlines()
    for n in range(100):
        lines = list(xml)
        k = rnd.randrange(len(lines))
        lines[k] = _mutate(lines[k], rnd)
        try:
            read_conntrack("\n".join(lines) + "\n", format="xml")
        except ParseError:
            pass


# --------------------------------------------------------------------------- live


def test_get_conntrack_without_the_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CollectorError, match=r"conntrack -L: the conntrack binary was not found on PATH; install conntrack-tools"):
        get_conntrack()
    with pytest.raises(CollectorError, match=r"ip netns exec x conntrack -S: the ip binary was not found"):
        get_conntrack_stats("x")


def test_get_conntrack_reports_a_failing_command(need_root, need_binary):
    need_binary("conntrack")
    with pytest.raises(CollectorError, match=r"ip netns exec npa-ct-absent-.* conntrack -L: "):
        get_conntrack(f"npa-ct-absent-{uuid.uuid4().hex[:6]}")


def test_get_conntrack_in_a_namespace(need_root, need_binary):
    need_binary("conntrack")
    need_binary("iptables")
    ns = f"npa-ct-t{uuid.uuid4().hex[:6]}"
    client = textwrap.dedent("""
        import socket
        for port in (30001, 30002, 30003):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", ("198.18.10.200", port))
            s.close()
    """)
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        run = lambda *c: subprocess.run(["ip", "netns", "exec", ns, *c], check=True, timeout=10, capture_output=True)  # noqa: E731
        run("ip", "link", "set", "lo", "up")
        run("ip", "addr", "add", "198.18.10.200/32", "dev", "lo")
        # a conntrack match makes the kernel track this namespace's traffic
        run("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
        run(sys.executable, "-c", client)
        df = get_conntrack(ns)
        validate_frame(df, "conntrack_flows")
        assert df.attrs["parse_report"].source == f"conntrack -L (netns {ns})"
        mine = df[(df["orig_dst_ip"] == "198.18.10.200") & (df["protocol"] == "udp")]
        assert sorted(mine["orig_dst_port"].tolist()) == [30001, 30002, 30003]
        assert mine["is_node_port"].all() and not mine["dnat"].any()
        stats = get_conntrack_stats(ns)
        validate_frame(stats, "conntrack_stats")
        assert len(stats) == os.cpu_count() and (stats["found"] >= 0).all()
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10, capture_output=True)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns not in listed
