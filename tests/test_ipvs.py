"""Tests of npanalytics.collectors.ipvs.read_ipvsadm on samples built from ipvsadm 1.31's formats."""

from __future__ import annotations

import gzip
import io
import random
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npanalytics import ParseError, validate_frame
from npanalytics.collectors.ipvs import read_ipvsadm
from npanalytics.exceptions import ParseWarning

DATA = Path(__file__).parent / "data" / "ipvs"


def read(name: str, **kwargs):
    return read_ipvsadm(DATA / name, **kwargs)


def vs(rules, key: str) -> dict:
    rows = rules.services[rules.services.svc_chain == key]
    assert len(rows) == 1, key
    return rows.iloc[0].to_dict()


def real_servers(rules, key: str) -> list[tuple]:
    df = rules.endpoints[rules.endpoints.chain == key].sort_values("position")
    return list(df[["endpoint_ip", "endpoint_port", "position", "weight", "probability"]].itertuples(index=False, name=None))


@pytest.mark.parametrize("name", ["list.txt", "stats.txt", "stats-exact.txt", "rate.txt", "list-one-service.txt"])
def test_every_sample_reads_and_validates(name):
    rules = read(name)
    validate_frame(rules.services, "proxy_services")
    validate_frame(rules.endpoints, "proxy_endpoints")
    report = rules.report
    assert report.lines_parsed == report.lines_total and report.lines_skipped == 0
    assert (rules.services.proxy_mode == "ipvs").all() and (rules.endpoints.proxy_mode == "ipvs").all()
    for col in ("namespace", "service", "port_name", "service_port_name"):
        assert rules.services[col].isna().all() and rules.endpoints[col].isna().all()


def test_same_table_in_every_listing():
    keys = list(read("list.txt").services.svc_chain)
    assert len(keys) == 14
    for name in ("stats.txt", "stats-exact.txt", "rate.txt"):
        assert list(read(name).services.svc_chain) == keys
        pd.testing.assert_frame_equal(
            read(name).endpoints[["chain", "endpoint_ip", "endpoint_port", "position"]],
            read("list.txt").endpoints[["chain", "endpoint_ip", "endpoint_port", "position"]],
        )
    assert read("list.txt").report.format == "ipvsadm"
    assert read("stats.txt").report.format == "ipvsadm --stats"
    assert read("rate.txt").report.format == "ipvsadm --rate"


def test_cluster_ip_virtual_server_with_a_terminating_endpoint():
    rules = read("list.txt")
    row = vs(rules, "TCP 10.96.12.34:80")
    assert (row["protocol"], row["cluster_ip"], row["port"], row["scheduler"]) == ("tcp", "10.96.12.34", 80, "rr")
    assert (row["session_affinity"], row["endpoint_count"], row["has_endpoints"]) == ("None", 4, True)
    assert pd.isna(row["node_port"]) and pd.isna(row["session_affinity_timeout_seconds"])
    third = 1 / 3
    # rr: equal shares among weight > 0, none for the weight-0 (terminating) server
    assert real_servers(rules, "TCP 10.96.12.34:80") == [
        ("10.244.1.5", 8080, 0, 1, third),
        ("10.244.2.7", 8080, 1, 1, third),
        ("10.244.3.9", 8080, 2, 1, third),
        ("10.244.3.10", 8080, 3, 0, 0.0),
    ]
    eps = rules.endpoints[rules.endpoints.chain == "TCP 10.96.12.34:80"]
    assert list(eps.active_connections) == [3, 2, 4, 1]
    assert list(eps.inactive_connections) == [41, 39, 44, 5]
    assert (eps.rule_probability == eps.probability).all()
    assert eps.endpoint_chain.isna().all() and eps.packets.isna().all() and (~eps.local).all()


def test_node_ports_are_recognised_by_the_node_port_range():
    rules = read("list.txt")
    for key, ip in (("TCP 192.168.10.21:30080", "192.168.10.21"), ("TCP 10.0.2.15:30080", "10.0.2.15")):
        row = vs(rules, key)
        assert row["node_port"] == 30080 and row["virtual_server_ip"] == ip
        assert pd.isna(row["cluster_ip"]) and pd.isna(row["port"])
    # a narrower range: 30080 is no longer a node port
    narrow = read_ipvsadm(DATA / "list.txt", node_port_range=(31000, 31999))
    row = vs(narrow, "TCP 10.0.2.15:30080")
    assert (row["cluster_ip"], row["port"]) == ("10.0.2.15", 30080) and pd.isna(row["node_port"])
    assert rules.services.node_port.notna().sum() == 3  # two TCP 30080, one UDP 30053


def test_persistence_schedulers_and_protocols():
    rules = read("list.txt")
    sticky = vs(rules, "TCP 10.96.12.35:80")
    assert (sticky["session_affinity"], sticky["session_affinity_timeout_seconds"]) == ("ClientIP", 10800)
    udp = vs(rules, "UDP 192.168.10.21:30053")
    assert (udp["protocol"], udp["session_affinity_timeout_seconds"], udp["node_port"]) == ("udp", 600, 30053)
    empty = vs(rules, "TCP 10.96.12.36:80")
    assert (empty["has_endpoints"], empty["endpoint_count"]) == (False, 0)
    assert vs(rules, "SCTP 10.96.12.40:9999")["protocol"] == "sctp"
    v6 = vs(rules, "TCP [fd00:10:96::a]:53")
    assert (v6["cluster_ip"], v6["port"]) == ("fd00:10:96::a", 53)
    assert real_servers(rules, "TCP [fd00:10:96::a]:53")[1][:2] == ("fd00:10:244:1::3", 53)
    # wrr: weight / sum of weights; lc depends on connection counts: NA
    assert [p for *_, p in real_servers(rules, "TCP 10.96.12.39:80")] == [0.75, 0.25]
    assert all(pd.isna(p) for *_, p in real_servers(rules, "TCP 10.96.12.38:80"))
    assert vs(rules, "TCP 10.96.12.38:80")["scheduler"] == "lc"


def test_stats_columns():
    rules = read("stats.txt")
    row = vs(rules, "TCP 10.96.12.34:80")
    assert [row[c] for c in ("connections_total", "in_packets_total", "out_packets_total", "in_bytes_total", "out_bytes_total")] == [
        4961, 29766, 24805, 1962792, 34727000]
    assert pd.isna(row["scheduler"]) and pd.isna(row["session_affinity"])
    eps = rules.endpoints[rules.endpoints.chain == "TCP 10.96.12.34:80"]
    assert list(eps.packets) == [1520, 1498, 1533, 410] == list(eps.connections_total)  # packets = Conns
    assert eps.bytes.isna().all() and eps.weight.isna().all() and eps.probability.isna().all()
    assert str(eps.connections_total.dtype) == "Int64"
    # 1203553221 bytes is printed "1203M" without --exact: not knowable, NA; --exact gives it
    api = rules.endpoints[rules.endpoints.chain == "TCP 10.96.0.1:443"].iloc[0]
    assert pd.isna(api["out_bytes_total"]) and api["in_bytes_total"] == 98702114
    exact = read("stats-exact.txt").endpoints
    assert exact[exact.chain == "TCP 10.96.0.1:443"].iloc[0]["out_bytes_total"] == 1_203_553_221


def test_rate_columns():
    rules = read("rate.txt")
    eps = rules.endpoints[rules.endpoints.chain == "TCP 10.96.12.34:80"]
    assert list(eps.connections_per_second) == [5, 4, 5, 0]
    assert list(eps.out_bytes_per_second) == [35000, 28000, 35000, 0]
    assert vs(rules, "TCP 10.96.12.34:80")["in_packets_per_second"] == 84
    assert eps.packets.isna().all()


def test_one_service_listing_has_no_version_line():
    rules = read("list-one-service.txt")
    assert list(rules.services.svc_chain) == ["TCP 10.96.12.34:80"]
    assert len(rules.endpoints) == 4 and rules.report.lines_total == 7


def test_sources_and_empty_table(tmp_path):
    raw = (DATA / "list.txt").read_bytes()
    gz = tmp_path / "ipvs.gz"
    gz.write_bytes(gzip.compress(raw))
    reference = read("list.txt").endpoints
    for source in (raw, raw.decode(), io.BytesIO(raw), gz, str(DATA / "list.txt")):
        pd.testing.assert_frame_equal(read_ipvsadm(source).endpoints, reference)
    empty = read_ipvsadm(b"".join(raw.splitlines(keepends=True)[:3]))
    assert len(empty.services) == 0 and len(empty.endpoints) == 0
    validate_frame(empty.services, "proxy_services")


BROKEN = [
    ("broken_no_title.txt", 2, (2,) + tuple(range(3, 45)),
     r"broken_no_title\.txt:2: expected ipvsadm's title \('Prot LocalAddress:Port Scheduler Flags', or the --stats/--rate columns\), got 'TCP  192\.168\.10\.21:30080 rr'"),
    ("broken_not_numeric.txt", 16, (16, 17, 18),
     r":16: expected '<TCP\|UDP\|SCTP>  <ip>:<port> <scheduler> \[persistent <seconds>\]' \(numeric, ipvsadm -n\), got 'TCP  10\.96\.0\.10:domain rr'"),
    ("broken_orphan_real_server.txt", 4, (4,),
     r":4: expected a real server under a readable virtual server, got '  -> 10\.244\.9\.9:80"),
    ("broken_fwmark.txt", 30, (30, 31),
     r":30: expected a TCP, UDP or SCTP virtual server \(firewall-mark services are not kube-proxy's\), got 'FWM  7 rr'"),
    ("broken_forward.txt", 24, (24,),
     r":24: expected '  -> <ip>:<port> <Masq\|Local\|Tunnel\|Route> <weight> <active> <inactive>', got '  -> 10\.244\.2\.7:8080 +Bridge"),
    ("broken_stats_columns.txt", 23, (23,),
     r":23: expected '  -> <ip>:<port>' and five numbers \(Conns, InPkts, OutPkts, InBytes, OutBytes\), got '  -> 10\.244\.1\.5:8080"),
    ("broken_thresholds.txt", 2, (2, 3, 4, 5),
     r":2: expected ipvsadm's title .*, got 'Prot LocalAddress:Port +Uthreshold"),
]


@pytest.mark.parametrize(("name", "lineno", "skipped", "match"), BROKEN)
def test_broken_samples_raise_at_the_line(name, lineno, skipped, match):
    with pytest.raises(ParseError, match=match) as info:
        read(name)
    assert info.value.lineno == lineno


@pytest.mark.parametrize(("name", "lineno", "skipped", "match"), BROKEN)
def test_broken_samples_skip_and_warn(name, lineno, skipped, match):
    rules = read(name, on_bad_line="skip")
    assert rules.report.skipped_linenos == skipped
    assert rules.report.lines_parsed + rules.report.lines_skipped == rules.report.lines_total
    with pytest.warns(ParseWarning, match=rf"skipped {len(skipped)} of {rules.report.lines_total} lines \(line {lineno}"):
        warned = read(name, on_bad_line="warn")
    pd.testing.assert_frame_equal(warned.endpoints, rules.endpoints)


def test_skip_drops_the_real_servers_of_a_skipped_virtual_server():
    rules = read("broken_fwmark.txt", on_bad_line="skip")
    assert len(rules.services) == 14 and len(rules.endpoints) == 29  # the FWM server's real server is gone
    rules = read("broken_forward.txt", on_bad_line="skip")
    assert [ip for ip, *_ in real_servers(rules, "TCP 10.96.12.34:80")] == ["10.244.1.5", "10.244.3.9", "10.244.3.10"]
    assert [p for *_, p in real_servers(rules, "TCP 10.96.12.34:80")] == [0.5, 0.5, 0.0]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match=r"on_bad_line must be one of \('raise', 'warn', 'skip'\), got 'Raise'"):
        read("list.txt", on_bad_line="Raise")
    with pytest.raises(ValueError, match=r"node_port_range must satisfy 1 <= low <= high <= 65535, got \(32767, 30000\)"):
        read("list.txt", node_port_range=(32767, 30000))
    with pytest.raises(ValueError, match=r"node_port_range must be a \(low, high\) pair of ports, got 30000"):
        read("list.txt", node_port_range=30000)


def test_real_server_title_is_required():
    title = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
    with pytest.raises(ParseError, match=r"<string>:2: expected the real-server title after ipvsadm's title, got 'Prot LocalAddress"):
        read_ipvsadm(title)
    with pytest.raises(ParseError, match=r"<string>:3: expected the real-server title '-> RemoteAddress:Port +Forward Weight ActiveConn InActConn', got 'TCP  10\.96\.0\.1:443 rr'"):
        read_ipvsadm(title + "TCP  10.96.0.1:443 rr\n")


# -- the construction script's formats, checked against the reader ----------------------------

sys.path.insert(0, str(DATA))
import construct  # noqa: E402  (tests/data/ipvs/construct.py)

sys.path.pop(0)


def test_samples_are_what_construct_py_prints():
    table = construct.kube_proxy_node()
    assert (DATA / "list.txt").read_text() == construct.render(table)
    assert (DATA / "stats.txt").read_text() == construct.render(table, "stats")
    assert (DATA / "stats-exact.txt").read_text() == construct.render(table, "stats", exact=True)
    assert (DATA / "rate.txt").read_text() == construct.render(table, "rate")


def test_largenum_matches_ipvsadm():
    assert construct._largenum(99_999_999, False) == " 99999999"
    assert construct._largenum(100_000_000, False) == "  100000K"
    assert construct._largenum(1_203_553_221, False) == "    1203M"
    assert construct._largenum(123, True) == "      123"
    assert construct._largenum(1_203_553_221, True) == " 1203553221"


_octet = st.integers(0, 255)
_ip = st.tuples(_octet, _octet, _octet, _octet).map(lambda t: ".".join(map(str, t)))


@st.composite
def tables(draw):
    servers = []
    seen = set()
    for _ in range(draw(st.integers(0, 6))):
        proto = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
        addr, port = draw(_ip), draw(st.integers(1, 65535))
        if (proto, addr, port) in seen:
            continue
        seen.add((proto, addr, port))
        dests = {}
        for _ in range(draw(st.integers(0, 5))):
            d = construct.Dest(draw(_ip), draw(st.integers(1, 65535)), weight=draw(st.integers(0, 5)),
                               active=draw(st.integers(0, 10**6)), inactive=draw(st.integers(0, 10**6)),
                               stats=tuple(draw(st.integers(0, 10**12)) for _ in range(5)))
            dests[(d.addr, d.port)] = d
        servers.append(construct.VirtualServer(proto, addr, port, sched=draw(st.sampled_from(["rr", "wrr", "lc", "sh"])),
                                               persistent=draw(st.one_of(st.none(), st.integers(1, 86400))),
                                               dests=list(dests.values())))
    return servers


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(tables())
def test_constructed_listings_read_back(table):
    listed = read_ipvsadm(construct.render(table))
    exact = read_ipvsadm(construct.render(table, "stats", exact=True))
    assert listed.report.lines_skipped == 0 and exact.report.lines_skipped == 0
    assert len(listed.services) == len(table) and len(listed.endpoints) == sum(len(v.dests) for v in table)
    by_key = {f"{v.proto} {v.addr}:{v.port}": v for v in table}
    for row in listed.services.itertuples():
        v = by_key[row.svc_chain]
        assert row.scheduler == v.sched and row.endpoint_count == len(v.dests)
        assert (row.session_affinity == "ClientIP") == (v.persistent is not None)
        in_range = 30000 <= v.port <= 32767
        assert (row.node_port == v.port) if in_range else (row.port == v.port and row.cluster_ip == v.addr)
    for key, v in by_key.items():
        eps = listed.endpoints[listed.endpoints.chain == key]
        assert sorted(zip(eps.endpoint_ip, eps.endpoint_port, eps.weight)) == sorted((d.addr, d.port, d.weight) for d in v.dests)
        if v.sched in ("rr", "wrr") and any(d.weight for d in v.dests):
            assert abs(eps.probability.sum() - 1) < 1e-9
        conns = exact.endpoints[exact.endpoints.chain == key]
        assert sorted(conns.packets) == sorted(d.stats[0] for d in v.dests)


@pytest.mark.slow
def test_fuzz_mutated_listings_raise_only_parse_errors():
    rng = random.Random(7)
    sources = [(DATA / n).read_text() for n in ("list.txt", "stats.txt", "rate.txt")]
    errors = 0
    for _ in range(300):
        lines = rng.choice(sources).splitlines(keepends=True)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            line = lines[i]
            op = rng.randrange(5)
            if op == 0:
                del lines[i]
            elif op == 1 and line.strip():
                j = rng.randrange(len(line))
                lines[i] = line[:j] + line[j + 1:]
            elif op == 2:
                j = rng.randrange(len(line) + 1)
                lines[i] = line[:j] + rng.choice(" ->:[]KMx9\t") + line[j:]
            elif op == 3:
                lines.insert(i, line)
            else:
                k = rng.randrange(len(lines))
                lines[i], lines[k] = lines[k], lines[i]
            if not lines:
                break
        text = "".join(lines)
        try:
            read_ipvsadm(text)
        except ParseError:
            errors += 1
        rules = read_ipvsadm(text, on_bad_line="skip")
        assert rules.report.lines_parsed + rules.report.lines_skipped == rules.report.lines_total
        validate_frame(rules.services, "proxy_services")
        validate_frame(rules.endpoints, "proxy_endpoints")
    assert errors > 50


def test_public_names():
    import npanalytics.collectors.ipvs as module

    assert module.__all__ == ["read_ipvsadm", "DEFAULT_NODE_PORT_RANGE", "STATS_COLUMNS", "RATE_COLUMNS"]
    assert [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])
            and getattr(vars(module)[n], "__module__", "") == module.__name__] == ["read_ipvsadm"]
