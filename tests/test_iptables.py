"""Tests of npanalytics.collectors.iptables.read_iptables_save.

The samples in tests/data/iptables/ were recorded from the real tools by
tests/data/iptables/record.py (iptables 1.8.9, legacy and nft, in npa-ipt-*
namespaces, with 30 real UDP flows to kube-system/dns; the ``affinity.*`` set
with 24 flows from 4 client addresses to a ClientIP-affinity Service). ``fragment-web.txt`` is
cut from ``mixed.legacy.save-c.txt`` and roughed up by hand (tab, elisions,
comment, no table header, no COMMIT, one SEP chain missing); the ``broken-*``
files are hand-made.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import random
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npanalytics import ParseError, ParseWarning, validate_frame
from npanalytics.collectors.iptables import read_iptables_save
from npanalytics.lab.model import Endpoint, ServicePort
from npanalytics.lab.render_iptables import render_iptables

DATA = Path(__file__).parent / "data" / "iptables"
FLOWS = 30  # UDP datagrams record.py sent to kube-system/dns
SAVED = [f"{s}.{f}.{k}.txt" for s in ("mixed", "large") for f in ("legacy", "nft")
         for k in ("save", "save-c")]
NAT_ONLY = [f"{s}.{f}.{k}.txt" for s in ("mixed", "large") for f in ("legacy", "nft")
            for k in ("nat-S", "nat-Sv")]
RESTORE = ["mixed.restore.txt", "large.restore.txt"]
WITH_COUNTERS = [n for n in SAVED + NAT_ONLY if n.endswith(("save-c.txt", "nat-Sv.txt"))]
AFFINITY = [f"affinity.{f}.{k}.txt" for f in ("legacy", "nft") for k in ("save", "save-c", "nat-S", "nat-Sv")]
AFFINITY_CLIENTS = (3, 5, 7, 9)  # flows record.py sent from each of 4 client addresses
COUNTER_COLUMNS = ("packets", "bytes", "affinity_packets", "affinity_bytes")


def row(df: pd.DataFrame, name: str) -> pd.Series:
    rows = df[df["service_port_name"] == name]
    assert len(rows) == 1, name
    return rows.iloc[0]


def eps(df: pd.DataFrame, name: str, chain_prefix: str = "KUBE-SVC-") -> pd.DataFrame:
    sel = df[(df["service_port_name"] == name) & df["chain"].astype(str).str.startswith(chain_prefix)]
    return sel.reset_index(drop=True)


@pytest.mark.parametrize("name", SAVED + NAT_ONLY + RESTORE)
def test_recorded_samples(name):
    rules = read_iptables_save(DATA / name)
    s, e = rules.services, rules.endpoints
    validate_frame(s, "proxy_services")
    validate_frame(e, "proxy_endpoints")
    rep = rules.report
    assert rep.format == "iptables-save" and rep.source.endswith(name)
    assert rep.lines_skipped == 0 and rep.lines_parsed + rep.lines_skipped == rep.lines_total
    assert rep.lines_total == (DATA / name).read_text().count("\n")
    assert set(s["proxy_mode"]) == {"iptables"} and set(e["proxy_mode"]) == {"iptables"}

    web = row(s, "default/web:http")
    assert (web["namespace"], web["service"], web["port_name"], web["protocol"]) == (
        "default", "web", "http", "tcp")
    assert (web["cluster_ip"], web["port"], web["node_port"]) == ("198.19.0.20", 80, 30080)
    assert web["external_traffic_policy"] == "Cluster" and web["internal_traffic_policy"] == "Cluster"
    assert web["session_affinity"] == "None" and pd.isna(web["session_affinity_timeout_seconds"])
    assert web["endpoint_count"] == 3 and pd.isna(web["local_endpoint_count"]) and web["has_endpoints"]
    assert (web["svc_chain"], web["ext_chain"]) == ("KUBE-SVC-CDGGSHYLG3RE2FKL", "KUBE-EXT-CDGGSHYLG3RE2FKL")
    assert pd.isna(web["svl_chain"]) and pd.isna(web["fw_chain"]) and pd.isna(web["scheduler"])
    w = eps(e, "default/web:http")
    assert w["endpoint_ip"].tolist() == ["198.18.64.5", "198.18.65.5", "198.18.66.5"]
    assert w["endpoint_port"].tolist() == [8080] * 3 and w["position"].tolist() == [0, 1, 2]
    assert w["rule_probability"].tolist() == pytest.approx([1 / 3, 1 / 2, 1.0], abs=1e-15)
    assert w["probability"].tolist() == pytest.approx([1 / 3] * 3, abs=1e-15)
    assert not w["local"].any()

    local = row(s, "default/local:http")
    assert local["external_traffic_policy"] == "Local" and local["internal_traffic_policy"] == "Cluster"
    assert local["endpoint_count"] == 3 and local["local_endpoint_count"] == 1
    svl = eps(e, "default/local:http", "KUBE-SVL-")
    assert svl["endpoint_ip"].tolist() == ["198.18.64.5"] and svl["local"].all()
    assert svl["probability"].tolist() == [1.0]

    remote = row(s, "default/remote:http")  # eTP=Local, no endpoint on this node
    assert remote["external_traffic_policy"] == "Local" and pd.isna(remote["svl_chain"])
    assert pd.isna(remote["local_endpoint_count"]) and remote["endpoint_count"] == 2
    assert eps(e, "default/remote:http")["probability"].tolist() == pytest.approx([0.5, 0.5])

    cart = row(s, "shop/cart:grpc")
    assert cart["session_affinity"] == "ClientIP" and cart["session_affinity_timeout_seconds"] == 10800
    assert cart["external_ips"] == "198.18.20.50" and cart["load_balancer_ips"] == ""
    assert cart["external_traffic_policy"] == "Cluster"
    assert len(eps(e, "shop/cart:grpc")) == 2  # the affinity checks are not endpoint rows

    dns = row(s, "kube-system/dns")  # unnamed port
    assert (dns["port_name"], dns["protocol"], dns["port"]) == ("", "udp", 53)
    assert pd.isna(dns["node_port"]) and pd.isna(dns["external_traffic_policy"])
    assert dns["svc_chain"] == "KUBE-SVC-UERY4RAZ7VIXJ7V4"

    cache = row(s, "default/node-cache")  # iTP=Local
    assert cache["internal_traffic_policy"] == "Local" and pd.isna(cache["svc_chain"])
    assert cache["endpoint_count"] == 0 and cache["local_endpoint_count"] == 1

    if name in NAT_ONLY:  # the filter table is not in the dump
        assert "shop/empty:http" not in set(s["service_port_name"])
        assert len(s) == 6
    else:
        empty = row(s, "shop/empty:http")
        assert not empty["has_endpoints"] and empty["endpoint_count"] == 0
        assert (empty["cluster_ip"], empty["port"], empty["node_port"]) == ("198.19.0.24", 80, 30084)
        assert pd.isna(empty["svc_chain"]) and pd.isna(empty["external_traffic_policy"])
        assert len(s) == 7
    assert len(e) == 15
    assert e["namespace"].notna().all() and e["endpoint_ip"].notna().all()


@pytest.mark.parametrize("name", WITH_COUNTERS)
def test_counters(name):
    e = read_iptables_save(DATA / name).endpoints
    dns = eps(e, "kube-system/dns")
    assert dns["packets"].sum() == FLOWS and (dns["packets"] >= 0).all()
    # each flow is one 29-byte datagram (20 IP + 8 UDP + 1 payload)
    assert (dns["bytes"] == 29 * dns["packets"]).all()
    assert (eps(e, "default/web:http")["packets"] == 0).all()
    # only shop/cart:grpc has affinity checks; nothing was sent to it
    cart = e["service_port_name"] == "shop/cart:grpc"
    assert (e.loc[cart, "affinity_packets"] == 0).all() and (e.loc[cart, "affinity_bytes"] == 0).all()
    assert e.loc[~cart, "affinity_packets"].isna().all() and e.loc[~cart, "affinity_bytes"].isna().all()


@pytest.mark.parametrize("name", [n for n in SAVED + NAT_ONLY + RESTORE if n not in WITH_COUNTERS])
def test_no_counters_means_na(name):
    e = read_iptables_save(DATA / name).endpoints
    for column in COUNTER_COLUMNS:
        assert e[column].isna().all(), column


_DUMP_COUNTERS = re.compile(r"^(?:\[(\d+):(\d+)\] )?-A (KUBE-\S+) .*?(?: -c (\d+) (\d+))? -j (\S+)")


def dump_counters(text: str) -> tuple[dict, dict]:
    """From the dump text alone: per SEP chain, the counters of its affinity check and of its DNAT rule."""
    checks, dnats = {}, {}
    for line in text.splitlines():
        m = _DUMP_COUNTERS.match(line)
        if m is None:
            continue
        pk, by = (m[1], m[2]) if m[1] is not None else (m[4], m[5])
        if "--rcheck" in line:
            checks[m[6]] = (int(pk), int(by))
        elif m[6] == "DNAT":
            dnats[m[3]] = (int(pk), int(by))
    return checks, dnats


@pytest.mark.parametrize("name", [n for n in AFFINITY if n.endswith(("save-c.txt", "nat-Sv.txt"))])
def test_affinity_counters(name):
    """The counters of the recent --rcheck rules: returning clients, per endpoint."""
    text = (DATA / name).read_text()
    rules = read_iptables_save(text)
    e = rules.endpoints
    assert rules.report.lines_skipped == 0
    assert e["endpoint_ip"].tolist() == ["198.18.73.1", "198.18.73.2", "198.18.73.3"]
    checks, dnats = dump_counters(text)
    assert len(checks) == len(dnats) == 3
    chains = e["endpoint_chain"].astype(str)
    assert e["affinity_packets"].tolist() == [checks[c][0] for c in chains]
    assert e["affinity_bytes"].tolist() == [checks[c][1] for c in chains]
    # every new flow went through exactly one of the two rules of its endpoint, then its DNAT
    assert (e["packets"] + e["affinity_packets"]).tolist() == [dnats[c][0] for c in chains]
    # each client's first flow is a random choice, its other flows return through affinity
    assert e["packets"].sum() == len(AFFINITY_CLIENTS)
    assert e["affinity_packets"].sum() == sum(AFFINITY_CLIENTS) - len(AFFINITY_CLIENTS)
    assert (e["affinity_bytes"] == 29 * e["affinity_packets"]).all()  # 1-byte UDP datagrams


def test_affinity_counters_as_printed():
    """affinity.legacy.save-c.txt, its numbers copied from the dump text by hand."""
    e = read_iptables_save(DATA / "affinity.legacy.save-c.txt").endpoints
    # [8:232] / [8:232] / [4:116] on the --rcheck rules; [1:29] / [2:58] / [1:29] on the random choices
    assert e["affinity_packets"].tolist() == [8, 8, 4] and e["affinity_bytes"].tolist() == [232, 232, 116]
    assert e["packets"].tolist() == [1, 2, 1] and e["bytes"].tolist() == [29, 58, 29]


@pytest.mark.parametrize("name", AFFINITY + ["affinity.restore.txt"])
def test_affinity_sample_paths_agree(name):
    """Fast path and full grammar give the same affinity counters; without counters they are NA."""
    from npanalytics.collectors import iptables as mod

    text = (DATA / name).read_text()
    fast = read_iptables_save(text)
    r = mod._Reader()
    for lineno, line in enumerate(text.splitlines(), 1):
        r.line(line, lineno)
    services, endpoints = mod._frames(r)
    pd.testing.assert_frame_equal(fast.services, services)
    pd.testing.assert_frame_equal(fast.endpoints, endpoints)
    svc = row(fast.services, "shop/session:udp")
    assert svc["session_affinity"] == "ClientIP" and svc["session_affinity_timeout_seconds"] == 10800
    if not name.endswith(("save-c.txt", "nat-Sv.txt")):
        assert fast.endpoints["affinity_packets"].isna().all()
        assert fast.endpoints["affinity_bytes"].isna().all()


def test_all_forms_agree():
    """The same rules read the same from restore input, saved form, legacy and nft."""
    ref = read_iptables_save(DATA / "mixed.restore.txt")
    for name in SAVED[:2] + SAVED[4:6] + ["large.restore.txt"]:
        other = read_iptables_save(DATA / name)
        pd.testing.assert_frame_equal(other.services, ref.services)
        cols = [c for c in ref.endpoints.columns if c not in COUNTER_COLUMNS]
        pd.testing.assert_frame_equal(other.endpoints[cols], ref.endpoints[cols])


def test_fragment_of_a_dump():
    rules = read_iptables_save(DATA / "fragment-web.txt")
    assert rules.report.lines_total == 14 and rules.report.lines_skipped == 0
    s, e = rules.services, rules.endpoints
    assert len(s) == 1
    web = row(s, "default/web:http")
    assert (web["cluster_ip"], web["endpoint_count"]) == ("198.19.0.20", 3)
    assert pd.isna(web["node_port"]) and pd.isna(web["external_traffic_policy"])
    # the SEP chain of 198.18.65.5 is not in the fragment: the comment still names it
    assert e["endpoint_ip"].tolist() == ["198.18.64.5", "198.18.65.5", "198.18.66.5"]
    assert e["probability"].tolist() == pytest.approx([1 / 3] * 3)
    assert e["packets"].tolist() == [0, 0, 0]


def test_unrecoverable_names_keep_their_rows():
    text = (
        "-A KUBE-SVC-AAAAAAAAAAAAAAAA -m statistic --mode random --probability 0.25000000000 "
        "-j KUBE-SEP-BBBBBBBBBBBBBBBB\n"
        "-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-CCCCCCCCCCCCCCCC\n"
        "-A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m tcp -j DNAT --to-destination 198.18.64.1:80\n"
    )
    rules = read_iptables_save(text)
    s, e = rules.services, rules.endpoints
    assert len(s) == 1 and s["namespace"].isna().all() and s["service_port_name"].isna().all()
    assert s["protocol"].tolist() == ["tcp"] and s["endpoint_count"].tolist() == [2]
    assert e["endpoint_ip"].isna().tolist() == [True, False] and e["endpoint_ip"][1] == "198.18.64.1"
    assert e["probability"].tolist() == pytest.approx([0.25, 0.75])
    assert e["namespace"].isna().all()


def test_pre_124_xlb_chain():
    """kube-proxy < 1.24 named the Local chain KUBE-XLB and jumped to it from KUBE-NODEPORTS."""
    text = "\n".join([
        "*nat",
        '-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 '
        "-j KUBE-XLB-CDGGSHYLG3RE2FKL",
        '-A KUBE-SERVICES -d 10.96.12.34/32 -p tcp -m comment --comment "default/web:http cluster IP" '
        "-m tcp --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL",
        '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http" -j KUBE-SEP-AFGSLHOD2HFNCBX4',
        '-A KUBE-XLB-CDGGSHYLG3RE2FKL -s 10.244.0.0/16 -m comment --comment "Redirect pods trying to '
        'reach external loadbalancer VIP to clusterIP" -j KUBE-SVC-CDGGSHYLG3RE2FKL',
        '-A KUBE-XLB-CDGGSHYLG3RE2FKL -m comment --comment "Balancing rule 0 for default/web:http" '
        "-j KUBE-SEP-AFGSLHOD2HFNCBX4",
        "-A KUBE-SEP-AFGSLHOD2HFNCBX4 -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080",
        "COMMIT",
    ]) + "\n"
    rules = read_iptables_save(text)
    web = row(rules.services, "default/web:http")
    assert web["external_traffic_policy"] == "Local" and web["node_port"] == 30080
    assert web["svl_chain"] == "KUBE-XLB-CDGGSHYLG3RE2FKL" and web["local_endpoint_count"] == 1
    local = eps(rules.endpoints, "default/web:http", "KUBE-XLB-")
    assert local["local"].tolist() == [True] and local["endpoint_ip"].tolist() == ["10.244.1.5"]


def test_source_kinds(tmp_path):
    raw = (DATA / "mixed.legacy.save-c.txt").read_bytes()
    gz = tmp_path / "dump.gz"
    gz.write_bytes(gzip.compress(raw))
    ref = read_iptables_save(DATA / "mixed.legacy.save-c.txt")
    for source in (raw, raw.decode(), str(DATA / "mixed.legacy.save-c.txt"), io.BytesIO(raw),
                   io.StringIO(raw.decode()), gz):
        got = read_iptables_save(source)
        pd.testing.assert_frame_equal(got.services, ref.services)
        pd.testing.assert_frame_equal(got.endpoints, ref.endpoints)


def test_empty_input():
    rules = read_iptables_save("")
    assert rules.services.empty and rules.endpoints.empty and rules.report.lines_total == 0
    validate_frame(rules.services, "proxy_services")
    validate_frame(rules.endpoints, "proxy_endpoints")


# --- errors and the bad-line policy ----------------------------------------------------

@pytest.mark.parametrize(
    "name, match",
    [
        ("broken-counters.txt", r"broken-counters\.txt:4: expected counters '\[packets:bytes\]', got '\[12:x\] -A"),
        ("broken-quote.txt", r"broken-quote\.txt:2: expected a comment closed by a double quote, got '-A KUBE-SERVICES"),
        ("broken-probability.txt", r"broken-probability\.txt:2: expected a probability in \(0, 1\], got"),
        ("broken-listing.txt", r"broken-listing\.txt:1: expected a rule \('-A CHAIN \.\.\.'.*got 'Chain KUBE-SERVICES \(2 references\)'"),
        ("broken-dnat-port.txt", r"broken-dnat-port\.txt:2: expected '--to-destination ADDRESS' in a DNAT rule"),
    ],
)
def test_broken_samples_raise(name, match):
    with pytest.raises(ParseError, match=match):
        read_iptables_save(DATA / name)


@pytest.mark.parametrize(
    "text, match",
    [
        ("*\n", r"<string>:1: expected a table name after '\*'"),
        (":KUBE-X ACCEPT\n", r"<string>:1: expected a chain line ':CHAIN POLICY \[packets:bytes\]'"),
        (":KUBE-X - [1:b]\n", r"<string>:1: expected counters '\[packets:bytes\]', got ':KUBE-X - \[1:b\]'"),
        ("-A KUBE-X\n", r"<string>:1: expected a rule body after the chain name"),
        ("[1:2] -A KUBE-X\n", r"<string>:1: expected a rule body after the chain name"),
        ("[1:2] COMMIT\n", r"<string>:1: expected a rule \('-A CHAIN \.\.\.'\) after the counters"),
        ("-N A B\n", r"<string>:1: expected exactly one chain name"),
        ("-P INPUT MAYBE\n", r"<string>:1: expected a policy line"),
        ("-I INPUT -j ACCEPT\n", r"<string>:1: expected a rule \('-A CHAIN"),
        ("-A KUBE-SVC-X -m comment --comment \"a -> b\" -m statistic --mode random --probability x "
         "-j KUBE-SEP-Y\n", r"expected a number after --probability"),
        ("-A KUBE-SVC-X -m comment --comment \"a -> b\"\n", r"expected a target \('-j TARGET'\)"),
        ("-A KUBE-SVC-X -m recent --rcheck --seconds soon --reap --name KUBE-SEP-Y -j KUBE-SEP-Y\n",
         r"expected a whole number of seconds after --seconds"),
        ("-A KUBE-SVC-X -c 1 -j KUBE-SEP-Y\n", r"expected counters '-c PACKETS BYTES'"),
        ("-A KUBE-SERVICES -m comment --comment \"a/b:c cluster IP\" -d 1.2.3.4/32\n",
         r"expected a target \('-j TARGET'\)"),
        ("-A KUBE-SERVICES -m comment --comment \"a/b:c cluster IP\" -d 1.2.3.4 --dport 0 -j KUBE-SVC-X\n",
         r"expected a port after --dport between 1 and 65535"),
        ("-A KUBE-EXTERNAL-SERVICES -m comment --comment \"a/b has no endpoints\" -j REJECT\n",
         r"expected '-p PROTOCOL' in a rule for a Service port"),
        ("-A KUBE-SEP-X -p tcp -j DNAT --to-destination 1.2.3.4:http\n",
         r"expected a port after 'ADDRESS:' between 1 and 65535"),
        ("-A KUBE-SEP-X nonsense\n", r"expected a rule body \('\.\.\. -j TARGET'\)"),
        ("-A KUBE-EXT-X -m comment --comment x\n", r"expected a target"),
        ("-A KUBE-NODEPORTS -m comment --comment x\n", r"expected a target"),
        ("-A KUBE-EXTERNAL-SERVICES -m comment --comment x\n", r"expected a target"),
        ("-A KUBE-SVC-X -m comment --comment -j KUBE-SEP-Y\n", r"expected a target"),
        ("-A KUBE-FW-X -m comment --comment \"x\n", r"expected a comment closed by a double quote"),
        ("-A KUBE-FW-X -s 10.0.0.0/8\n", r"expected a target \('-j TARGET'\) or a comment"),
        ("-A KUBE-SVC-X -j\n", r"expected a target"),
        ("hello\n", r"<string>:1: expected a rule"),
        ("-A KUBE-FW-X -j ACCEPT -m comment --comment \n", r"expected a comment after --comment"),
    ],
)
def test_error_paths(text, match):
    with pytest.raises(ParseError, match=match):
        read_iptables_save(text)


def test_bad_line_policy():
    path = DATA / "broken-dnat-port.txt"
    with pytest.warns(ParseWarning, match=r"skipped 2 of 4 lines \(line 2, 3\)"):
        warned = read_iptables_save(path, on_bad_line="warn")
    skipped = read_iptables_save(path, on_bad_line="skip")
    for rules in (warned, skipped):
        rep = rules.report
        assert rep.skipped_linenos == (2, 3) and rep.lines_skipped == 2
        assert rep.lines_parsed + rep.lines_skipped == rep.lines_total == 4
        assert "expected '--to-destination ADDRESS'" in rep.first_error
        assert rules.services.empty and rules.endpoints.empty  # the skipped lines add nothing


def test_skipped_counter_line_adds_nothing():
    rules = read_iptables_save(DATA / "broken-counters.txt", on_bad_line="skip")
    assert rules.report.skipped_linenos == (4,)
    e = rules.endpoints
    assert e["endpoint_chain"].tolist() == ["KUBE-SEP-GODLT2YLMRHMJPM2"] and e["packets"].tolist() == [0]


def test_invalid_policy_value():
    with pytest.raises(ValueError, match=r"on_bad_line must be one of \('raise', 'warn', 'skip'\), got 'ignore'"):
        read_iptables_save("", on_bad_line="ignore")


# --- property and fuzz tests -----------------------------------------------------------

_QUOTE = re.compile(r"--comment ([^\" ]+)")


def saved_form(restore: str) -> str:
    """What iptables-save does to the parts of restore input the reader uses.

    Comments always quoted, probabilities printed as ``round(p * 2**31) / 2**31``
    with 11 decimals, ``[packets:bytes]`` before each rule, rules grouped by chain.
    """
    out, rules, n = [], {}, 0
    for line in restore.splitlines():
        if line.startswith("-A "):
            line = _QUOTE.sub(r'--comment "\1"', line)
            if "--probability " in line:
                head, _, tail = line.partition("--probability ")
                p, _, tail = tail.partition(" ")
                line = f"{head}--probability {round(float(p) * 2**31) / 2**31:.11f} {tail}"
            n += 1
            rules.setdefault(line.split()[1], []).append(f"[{n}:{n * 100}] {line}")
        elif line == "COMMIT":
            for chain in sorted(rules):
                out += rules[chain]
            out.append(line)
            rules = {}
        else:
            out.append(line)
    return "\n".join(out) + "\n"


_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@st.composite
def service_ports(draw):
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        k = draw(st.integers(0, 7))
        ips = draw(st.lists(st.integers(1, 4000), min_size=k, max_size=k, unique=True))
        eps_ = tuple(
            Endpoint(f"198.18.{64 + ip // 250}.{ip % 250 + 1}", draw(st.integers(1, 65535)),
                     draw(st.sampled_from(["n1", "n2"])), ready=draw(st.booleans()) or j == 0)
            for j, ip in enumerate(ips)
        )
        np_ = draw(st.one_of(st.none(), st.integers(30000, 32767)))
        out.append(ServicePort(
            draw(_names), f"svc{i}", draw(st.sampled_from(["", "http", "p-1"])),
            draw(st.sampled_from(["tcp", "udp", "sctp"])), f"198.19.0.{i + 1}",
            draw(st.integers(1, 65535)), node_port=np_,
            external_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            internal_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            session_affinity=draw(st.sampled_from(["None", "ClientIP"])),
            affinity_timeout_seconds=draw(st.integers(1, 86400)),
            endpoints=eps_,
        ))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sps=service_ports(), comments=st.booleans(), cidr=st.sampled_from([None, "198.18.64.0/18"]))
def test_render_then_read_round_trip(sps, comments, cidr):
    text = render_iptables(sps, "n1", cluster_cidr=cidr, comments=comments)
    for form in (text, saved_form(text)):
        rules = read_iptables_save(form)
        s, e = rules.services, rules.endpoints
        assert rules.report.lines_skipped == 0
        assert len(s) == len(sps)
        for sp in sps:
            r = row(s, sp.service_port_name)
            assert (r["namespace"], r["service"], r["port_name"]) == (sp.namespace, sp.service, sp.port_name)
            assert (r["protocol"], r["cluster_ip"], r["port"]) == (sp.protocol, sp.cluster_ip, sp.port)
            assert (r["node_port"] if pd.notna(r["node_port"]) else None) == sp.node_port
            assert r["has_endpoints"] == bool(sp.usable_endpoints())
            for local, chain in ((False, "KUBE-SVC-"), (True, "KUBE-SVL-")):
                got = eps(e, sp.service_port_name, chain)
                if not len(got):
                    continue
                want = sp.usable_endpoints("n1" if local else None)
                assert got["endpoint_ip"].tolist() == [x.ip for x in want]
                assert got["endpoint_port"].tolist() == [x.port for x in want]
                assert got["local"].tolist() == [local] * len(want)
                assert got["probability"].tolist() == pytest.approx([1 / len(want)] * len(want), abs=1e-9)
                # saved_form puts counters on every rule, the restore input has none
                has_checks = sp.session_affinity == "ClientIP" and form is not text
                assert got["affinity_packets"].notna().tolist() == [has_checks] * len(want)
                affinity = sp.affinity_timeout_seconds if sp.session_affinity == "ClientIP" else None
                assert r["session_affinity"] == sp.session_affinity
                assert (None if pd.isna(r["session_affinity_timeout_seconds"])
                        else r["session_affinity_timeout_seconds"]) == affinity
            if r["svc_chain"] is not None and pd.notna(r["svc_chain"]):
                assert r["endpoint_count"] == len(sp.usable_endpoints())


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        line = lines[i]
        op = rng.randrange(6)
        if op == 0 and line:
            j = rng.randrange(len(line))
            lines[i] = line[:j] + line[j + 1:]
        elif op == 1:
            j = rng.randrange(len(line) + 1)
            lines[i] = line[:j] + rng.choice('"[]:-# \t\n0x9aZ*/>') + line[j:]
        elif op == 2:
            lines[i] = line[: rng.randrange(len(line) + 1)] + "\n"
        elif op == 3:
            k = rng.randrange(len(lines))
            lines[i], lines[k] = lines[k], lines[i]
        elif op == 4:
            lines.insert(i, rng.choice(lines))
        else:
            words = line.split(" ")
            rng.shuffle(words)
            lines[i] = " ".join(words)
    return "".join(lines)


@pytest.mark.parametrize("name", ["mixed.legacy.save-c.txt", "large.nft.nat-Sv.txt", "mixed.restore.txt"])
def test_fuzz_raises_only_parse_errors(name):
    text = (DATA / name).read_text()
    rng = random.Random(20261130)
    for _ in range(150):
        mutated = _mutate(rng, text)
        try:
            read_iptables_save(mutated)
        except ParseError:
            pass
        rules = read_iptables_save(mutated, on_bad_line="skip")
        rep = rules.report
        assert rep.lines_parsed + rep.lines_skipped == rep.lines_total == len(mutated.splitlines())
        validate_frame(rules.services, "proxy_services")
        validate_frame(rules.endpoints, "proxy_endpoints")


# --- live: the kernel's own rendering ----------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("flavour", ["legacy", "nft"])
def test_live_save_matches_recorded(need_root, need_binary, flavour, tmp_path):
    need_binary(f"iptables-{flavour}-restore")
    import os
    ns = f"npa-ipt-live-{os.getpid()}-{flavour}"
    restore = (DATA / "mixed.restore.txt").read_text()
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        exe = ["ip", "netns", "exec", ns]
        subprocess.run([*exe, f"iptables-{flavour}-restore"], input=restore, text=True, check=True,
                       capture_output=True, timeout=30)
        saved = subprocess.run([*exe, f"iptables-{flavour}-save", "-c"], text=True, check=True,
                               capture_output=True, timeout=30).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    live = read_iptables_save(saved)
    recorded = read_iptables_save(DATA / f"mixed.{flavour}.save-c.txt")
    pd.testing.assert_frame_equal(live.services, recorded.services)
    assert (live.endpoints["packets"] == 0).all()
    cols = [c for c in live.endpoints.columns if c not in COUNTER_COLUMNS]
    pd.testing.assert_frame_equal(live.endpoints[cols], recorded.endpoints[cols])


def test_replace_is_dataclass():  # ServicePort stays a frozen dataclass the tests can vary
    assert dataclasses.is_dataclass(ServicePort)


def test_fast_paths_match_the_full_grammar():
    """The inline fast paths of the line scan give what the full per-line grammar gives."""
    from npanalytics.collectors import iptables as mod

    rng = random.Random(5)
    sps = []
    for i in range(150):
        k = rng.randint(1, 6)
        sps.append(ServicePort(
            f"ns{i % 7}", f"s{i}", rng.choice(["", "http"]), rng.choice(["tcp", "udp"]),
            f"198.19.1.{i}", 80, node_port=30000 + i if i % 3 else None,
            external_traffic_policy="Local" if i % 5 == 0 else "Cluster",
            session_affinity="ClientIP" if i % 4 == 0 else "None",
            endpoints=tuple(Endpoint(f"198.18.{64 + i % 50}.{j + 1}", 8080, f"n{j % 3}") for j in range(k)),
        ))
    for comments in (False, True):
        for text in (render_iptables(sps, "n1", cluster_cidr="198.18.64.0/18", comments=comments),
                     saved_form(render_iptables(sps, "n1", comments=comments))):
            fast = read_iptables_save(text)
            r = mod._Reader()
            for lineno, line in enumerate(text.splitlines(), 1):
                r.line(line, lineno)
            services, endpoints = mod._frames(r)
            pd.testing.assert_frame_equal(fast.services, services)
            pd.testing.assert_frame_equal(fast.endpoints, endpoints)
            assert len(fast.endpoints) >= 150


def test_other_tables_and_other_software():
    """mangle/raw tables, other software's chains and kube-proxy's nfacct rule read as noise."""
    saved = (DATA / "mixed.legacy.save-c.txt").read_text()
    extra_tables = (
        "# Generated by iptables-save v1.8.9\n*mangle\n:PREROUTING ACCEPT [5:300]\n"
        ":KUBE-IPTABLES-HINT - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\n:KUBE-PROXY-CANARY - [0:0]\n"
        "[0:0] -A PREROUTING -i eth0 -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n"
        "*raw\n:PREROUTING ACCEPT [0:0]\n[3:180] -A PREROUTING -p udp -m udp --dport 4789 -j NOTRACK\nCOMMIT\n"
    )
    nfacct = (
        '[0:0] -A KUBE-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment "default/web:http" '
        "-m tcp --dport 30080 -m nfacct --nfacct-name  localhost_nps_accepted_pkts "
        "-j KUBE-EXT-CDGGSHYLG3RE2FKL\n"
    )
    docker = '[0:0] -A DOCKER-USER -m comment --comment "user rule" -j RETURN\n'
    text = extra_tables + saved.replace("*nat\n", "*nat\n:DOCKER-USER - [0:0]\n" + docker, 1)
    first_nodeport = text.index("[0:0] -A KUBE-NODEPORTS")
    text = text[:first_nodeport] + nfacct + text[first_nodeport:]
    ref = read_iptables_save(saved)
    got = read_iptables_save(text)
    assert got.report.lines_skipped == 0 and got.report.lines_total == text.count("\n")
    pd.testing.assert_frame_equal(got.services, ref.services)
    pd.testing.assert_frame_equal(got.endpoints, ref.endpoints)


def test_load_balancer_ip_and_firewall_chain():
    """LB IP with loadBalancerSourceRanges, written in kube-proxy's shape (KUBE_FACTS.md §1.1, §1.4)."""
    from npanalytics.collectors._proxy import iptables_chain_hash

    h = iptables_chain_hash("ns/lb:http", "tcp")
    text = "\n".join([
        "*nat",
        f'-A KUBE-SERVICES -d 198.19.0.30/32 -p tcp -m comment --comment "ns/lb:http cluster IP" '
        f"-m tcp --dport 80 -j KUBE-SVC-{h}",
        f'-A KUBE-SERVICES -d 198.18.20.80/32 -p tcp -m comment --comment "ns/lb:http loadbalancer IP" '
        f"-m tcp --dport 80 -j KUBE-FW-{h}",
        f"-A KUBE-EXT-{h} -j KUBE-SVC-{h}",
        f'-A KUBE-FW-{h} -s 198.18.0.0/16 -m comment --comment "ns/lb:http loadbalancer IP" -j KUBE-EXT-{h}',
        f'-A KUBE-FW-{h} -m comment --comment "other traffic to ns/lb:http will be dropped by '
        'KUBE-PROXY-FIREWALL"',
        f"-A KUBE-SVC-{h} -j KUBE-SEP-AAAAAAAAAAAAAAAA",
        "COMMIT",
    ]) + "\n"
    lb = row(read_iptables_save(text).services, "ns/lb:http")
    assert lb["load_balancer_ips"] == "198.18.20.80" and lb["external_ips"] == ""
    assert (lb["fw_chain"], lb["ext_chain"]) == (f"KUBE-FW-{h}", f"KUBE-EXT-{h}")
    assert lb["external_traffic_policy"] == "Cluster" and lb["endpoint_count"] == 1
