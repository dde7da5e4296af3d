"""Tests of npanalytics.collectors.nftables.read_nft_ruleset on recorded nft output."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npanalytics import ParseError, validate_frame
from npanalytics.collectors._proxy import ProxyRules, nftables_chain_name
from npanalytics.collectors.nftables import read_nft_ruleset
from npanalytics.exceptions import ParseWarning
from npanalytics.lab.model import Endpoint, ServicePort
from npanalytics.lab.render_nftables import render_nftables

DATA = Path(__file__).parent / "data" / "nftables"
SCENARIOS = ("cluster3", "local", "affinity", "no_endpoints", "node", "with_iptables_nat", "counters")
FORMS = (".ruleset.txt", ".ruleset-a.txt", ".table.txt", ".nft")


def read(name: str, **kwargs) -> ProxyRules:
    return read_nft_ruleset(DATA / name, **kwargs)


def service(rules: ProxyRules, ns: str, svc: str, port_name: str, protocol: str = "tcp") -> dict:
    df = rules.services
    rows = df[(df.namespace == ns) & (df.service == svc) & (df.port_name == port_name) & (df.protocol == protocol)]
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def endpoint_rows(rules: ProxyRules, svc: str, local: bool = False) -> list[tuple]:
    df = rules.endpoints
    df = df[(df.service == svc) & (df.local == local)].sort_values("position")
    return list(df[["endpoint_ip", "endpoint_port", "position", "rule_probability", "probability"]].itertuples(index=False, name=None))


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_every_recording_reads_the_same(name, form):
    rules = read(name + form)
    validate_frame(rules.services, "proxy_services")
    validate_frame(rules.endpoints, "proxy_endpoints")
    assert rules.report.lines_parsed + rules.report.lines_skipped == rules.report.lines_total
    assert rules.report.lines_skipped == 0
    assert rules.report.format == "nft list ruleset"
    reference = read(name + ".ruleset.txt")
    pd.testing.assert_frame_equal(rules.services, reference.services)
    # the nft -f input has the counter statements but not their values
    cols = [c for c in reference.endpoints.columns if c not in ("packets", "bytes")]
    pd.testing.assert_frame_equal(rules.endpoints[cols], reference.endpoints[cols])


def test_cluster_policy_three_endpoints_exact_values():
    rules = read("cluster3.ruleset.txt")
    assert rules.report.lines_total == 145
    row = service(rules, "default", "web", "http")
    missing = sorted(k for k, v in row.items() if pd.isna(v))
    assert missing == ["fw_chain", "local_endpoint_count", "scheduler", "session_affinity_timeout_seconds", "svl_chain"]
    assert {k: v for k, v in row.items() if k not in missing} == {
        "proxy_mode": "nftables", "namespace": "default", "service": "web", "port_name": "http",
        "service_port_name": "default/web:http", "protocol": "tcp", "cluster_ip": "198.19.1.10",
        "port": 80, "node_port": 30080, "external_ips": "", "load_balancer_ips": "",
        "external_traffic_policy": "Cluster", "internal_traffic_policy": "Cluster",
        "session_affinity": "None", "endpoint_count": 3, "has_endpoints": True,
        "svc_chain": "service-SUSTUHLJ-default/web/tcp/http",
        "ext_chain": "external-SUSTUHLJ-default/web/tcp/http",
    }
    third = 1 / 3
    assert endpoint_rows(rules, "web") == [
        ("198.18.128.12", 8080, 0, third, third),
        ("198.18.128.5", 8080, 1, third, third),
        ("198.18.128.7", 8080, 2, third, third),
    ]
    ep = rules.endpoints.iloc[1]
    assert ep["chain"] == "service-SUSTUHLJ-default/web/tcp/http"
    assert ep["endpoint_chain"] == nftables_chain_name("endpoint", "default/web/tcp/http__198.18.128.5/8080")
    assert ep["proxy_mode"] == "nftables" and ep["service_port_name"] == "default/web:http"
    for col in ("weight", "active_connections", "inactive_connections", "packets", "bytes"):
        assert rules.endpoints[col].isna().all(), col


def test_local_policy_with_and_without_local_endpoints():
    rules = read("local.ruleset.txt")
    front = service(rules, "shop", "front", "https")
    assert (front["external_traffic_policy"], front["endpoint_count"], front["local_endpoint_count"]) == ("Local", 3, 2)
    assert front["svl_chain"] == nftables_chain_name("local", "shop/front/tcp/https")
    assert front["node_port"] == 30443 and front["has_endpoints"]
    assert endpoint_rows(rules, "front", local=True) == [
        ("198.18.128.21", 8443, 0, 0.5, 0.5),
        ("198.18.128.23", 8443, 1, 0.5, 0.5),
    ]
    api = service(rules, "shop", "api", "http")
    # no local endpoint: NodePort dropped by no-endpoint-nodeports, no local- chain
    assert (api["external_traffic_policy"], api["has_endpoints"], api["node_port"]) == ("Local", True, 30081)
    assert pd.isna(api["local_endpoint_count"]) and pd.isna(api["svl_chain"])
    assert api["endpoint_count"] == 2


def test_affinity_sets_give_client_ip_and_timeout():
    rules = read("affinity.ruleset.txt")
    http = service(rules, "default", "sticky", "http")
    admin = service(rules, "default", "sticky", "admin")
    assert (http["session_affinity"], http["session_affinity_timeout_seconds"]) == ("ClientIP", 10800)  # "3h"
    assert (admin["session_affinity"], admin["session_affinity_timeout_seconds"]) == ("ClientIP", 600)  # "10m"
    assert admin["cluster_ip"] == http["cluster_ip"] == "198.19.1.13"
    assert (admin["port"], http["port"]) == (8080, 80)


def test_no_endpoints_services_are_named_from_element_comments():
    rules = read("no_endpoints.ruleset.txt")
    assert len(rules.endpoints) == 0
    empty = service(rules, "default", "empty", "http")
    idle = service(rules, "batch", "idle", "", "udp")
    assert (empty["has_endpoints"], empty["cluster_ip"], empty["port"], empty["endpoint_count"]) == (False, "198.19.1.14", 80, 0)
    assert (idle["has_endpoints"], idle["node_port"], idle["service_port_name"]) == (False, 31999, "batch/idle")
    assert pd.isna(idle["session_affinity"]) and pd.isna(idle["external_traffic_policy"])


def test_whole_node_table():
    rules = read("node.ruleset-a.txt")
    assert len(rules.services) == 11
    assert len(rules.endpoints) == 20
    edge = service(rules, "default", "edge", "")
    assert (edge["external_ips"], edge["node_port"], edge["service_port_name"]) == ("198.18.30.100", 30016, "default/edge")
    agent = service(rules, "metrics", "agent", "scrape")
    assert (agent["internal_traffic_policy"], agent["local_endpoint_count"], agent["endpoint_count"]) == ("Local", 1, 0)
    dns = rules.services[rules.services.service == "kube-dns"]
    assert sorted(zip(dns.protocol, dns.port_name)) == [("tcp", "dns-tcp"), ("udp", "dns")]
    # per service port, probabilities of one chain add up to 1
    sums = rules.endpoints.groupby(["service", "port_name", "local"], observed=True)["probability"].sum()
    assert sums.round(12).eq(1.0).all()


def test_other_tables_are_recognised_and_ignored():
    rules = read("with_iptables_nat.ruleset.txt")
    assert rules.report.lines_total == 150 and rules.report.lines_parsed == 150
    web = service(rules, "default", "web", "http")
    assert web["endpoint_count"] == 3
    # no --cluster-cidr in this recording: the service chain has no masquerade rule
    assert "!=" not in (DATA / "with_iptables_nat.ruleset.txt").read_text().split("chain service-")[1].split("}")[0]


def test_counters_of_the_endpoint_dnat_rules():
    rules = read("counters.ruleset-a.txt")
    got = list(rules.endpoints[["endpoint_ip", "packets", "bytes"]].itertuples(index=False, name=None))
    assert got == [("198.18.128.81", 93, 2883), ("198.18.128.82", 111, 3441), ("198.18.128.83", 94, 2914)]
    assert str(rules.endpoints["packets"].dtype) == "Int64"


def test_sources_path_str_bytes_file_and_gzip(tmp_path):
    raw = (DATA / "cluster3.ruleset.txt").read_bytes()
    reference = read("cluster3.ruleset.txt").services
    gz = tmp_path / "ruleset.gz"
    gz.write_bytes(gzip.compress(raw))
    for source in (str(DATA / "cluster3.ruleset.txt"), raw, raw.decode(), io.BytesIO(raw), io.StringIO(raw.decode()), gz):
        pd.testing.assert_frame_equal(read_nft_ruleset(source).services, reference)
    assert read_nft_ruleset(raw).report.source == "<bytes>"


def test_empty_input_gives_empty_frames():
    rules = read_nft_ruleset("")
    assert len(rules.services) == 0 and len(rules.endpoints) == 0
    validate_frame(rules.services, "proxy_services")
    assert rules.report.lines_total == 0


BROKEN = [
    ("broken_extra_brace.txt", 146, r"broken_extra_brace\.txt:146: expected a line inside a block \('\}' closes nothing\), got '\}'"),
    ("broken_unclosed.txt", 144, r"broken_unclosed\.txt:144: expected '\}' closing 'table ip kube-proxy \{' opened at line 1, got '\\t\}'"),
    ("broken_numgen_count.txt", 138, r":138: expected a numgen vmap with indices 0\.\.2 for 'mod 3', got '\\t\\tnumgen random mod 3 vmap"),
    ("broken_chain_hash.txt", 136, r":136: expected a kube-proxy chain name PREFIX-HASH-ns/svc/proto/port whose hash matches, got '\\tchain service-ULMVA6XW-default/web/tcp/http \{'"),
    ("broken_dnat.txt", 128, r":128: expected a kube-proxy endpoint rule \(hairpin masquerade, affinity update or dnat\), got '\\t\\tmeta l4proto tcp dnat to 198\.18\.128\.5'"),
    ("broken_element.txt", 33, r":33: expected '<ip> \. <proto> \. <port> : goto <chain>' in map service-ips, got"),
    ("broken_top_level.txt", 1, r":1: expected 'table <family> <name> \{', an nft command or a blank line, got 'Error: syntax error"),
    ("broken_timeout.txt", 47, r":47: expected 'timeout <time>' \(e\.g\. 3h, 10m, 10800s\), got '\\t\\ttimeout 3 hours'"),
    ("broken_missing_chain.txt", 133, r":133: expected a goto to an endpoint chain defined in the table \(no chain 'endpoint-AMI4T7EW-default/web/tcp/http__198\.18\.128\.5/8080'\)"),
    ("broken_unknown_rule.txt", 138, r":138: expected a kube-proxy rule of a service chain \(masquerade, affinity or numgen vmap\), got '\\t\\tip daddr 198\.19\.1\.10 counter accept'"),
]


@pytest.mark.parametrize(("name", "lineno", "match"), BROKEN)
def test_broken_input_raises_at_the_line(name, lineno, match):
    with pytest.raises(ParseError, match=match) as info:
        read(name)
    assert info.value.lineno == lineno
    assert info.value.source.endswith(name)


@pytest.mark.parametrize(("name", "lineno", "match"), BROKEN)
def test_broken_input_skip_and_warn_count_the_line(name, lineno, match):
    skipped = read(name, on_bad_line="skip")
    # a dropped chain also drops the map elements and the goto that point to it
    cascade = {"broken_chain_hash.txt": (33, 39, 136, 141)}
    assert skipped.report.skipped_linenos == cascade.get(name, (lineno,))
    assert skipped.report.lines_parsed + skipped.report.lines_skipped == skipped.report.lines_total
    assert skipped.report.first_error is not None and f":{lineno}: expected" in skipped.report.first_error
    n = skipped.report.lines_skipped
    with pytest.warns(ParseWarning, match=rf"skipped {n} of {skipped.report.lines_total} lines \(line [0-9, ]*{lineno}"):
        warned = read(name, on_bad_line="warn")
    pd.testing.assert_frame_equal(warned.services, skipped.services)


def test_skip_keeps_the_rest_of_the_table():
    # the numgen rule is skipped: the service stays, without endpoints in its chain
    rules = read("broken_numgen_count.txt", on_bad_line="skip")
    web = service(rules, "default", "web", "http")
    assert (web["endpoint_count"], web["node_port"], web["cluster_ip"]) == (0, 30080, "198.19.1.10")
    assert len(rules.endpoints) == 0
    # a bad dnat rule: the endpoint keeps the address its chain name carries
    rules = read("broken_dnat.txt", on_bad_line="skip")
    assert endpoint_rows(rules, "web")[1][:2] == ("198.18.128.5", 8080)


def test_on_bad_line_is_checked():
    with pytest.raises(ValueError, match=r"on_bad_line must be one of \('raise', 'warn', 'skip'\), got 'ignore'"):
        read("cluster3.ruleset.txt", on_bad_line="ignore")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match=r"no-such\.txt: no such file"):
        read_nft_ruleset(DATA / "no-such.txt")


def test_command_form_errors():
    head = 'add table ip kube-proxy { comment "rules for kube-proxy" ; }\n'
    with pytest.raises(ParseError, match=r"<string>:2: expected a rule in a chain added before \(no chain 'services'\)"):
        read_nft_ruleset(head + "add rule ip kube-proxy services jump x\n")
    with pytest.raises(ParseError, match=r"<string>:2: expected 'add element \.\.\. <name> \{ <elements> \}'"):
        read_nft_ruleset(head + "add element ip kube-proxy cluster-ips 198.19.1.1\n")
    with pytest.raises(ParseError, match=r"<string>:2: expected an nft command with balanced braces"):
        read_nft_ruleset(head + "add chain ip kube-proxy x { type nat hook output priority -100 ;\n")
    # commands for other tables are recognised and ignored
    other = read_nft_ruleset(head + "add rule ip nat POSTROUTING masquerade\n")
    assert other.report.lines_parsed == 2 and len(other.services) == 0


# -- property and fuzz tests --------------------------------------------------------------

NODE = "node-a"
_label = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def service_ports(draw) -> list[ServicePort]:
    n = draw(st.integers(1, 4))
    names = draw(st.lists(st.tuples(_label, _label), min_size=n, max_size=n, unique=True))
    ports = []
    for i, (ns, svc) in enumerate(names):
        n_eps = draw(st.integers(0, 5))
        hosts = draw(st.lists(st.integers(1, 254), min_size=n_eps, max_size=n_eps, unique=True))
        target = draw(st.integers(1, 65535))
        endpoints = tuple(
            Endpoint(f"198.18.{128 + i}.{h}", target, node=draw(st.sampled_from([NODE, "node-b"])),
                     ready=draw(st.booleans()), serving=True, terminating=draw(st.booleans()))
            for h in hosts
        )
        ports.append(ServicePort(
            ns, svc, draw(st.sampled_from(["", "http", "p80"])), draw(st.sampled_from(["tcp", "udp", "sctp"])),
            f"198.19.1.{i + 1}", draw(st.integers(1, 65535)),
            node_port=draw(st.one_of(st.none(), st.just(30000 + i))),
            external_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            internal_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            session_affinity=draw(st.sampled_from(["None", "ClientIP"])),
            affinity_timeout_seconds=draw(st.integers(1, 86400)),
            external_ips=draw(st.sampled_from([(), (f"198.18.30.{i + 10}",)])),
            endpoints=endpoints,
        ))
    return ports


def check_round_trip(ports: list[ServicePort], rules: ProxyRules) -> None:
    """kube-proxy's decisions (proxier.go, CategorizeEndpoints) recomputed, then read back."""
    assert rules.report.lines_skipped == 0
    got = rules.services.set_index("service_port_name")
    assert sorted(got.index) == sorted(sp.service_port_name for sp in ports)
    for sp in ports:
        row = got.loc[sp.service_port_name]
        external = sp.node_port is not None or bool(sp.external_ips)
        internal_local = sp.internal_traffic_policy == "Local"
        external_local = external and sp.external_traffic_policy == "Local"
        cluster = sp.usable_endpoints() if (not internal_local or external) else []
        local = sp.usable_endpoints(NODE) if (internal_local or external_local) else []
        has_endpoints = bool(sp.usable_endpoints())
        has_internal = has_endpoints and not (internal_local and not local)
        assert (row["cluster_ip"], row["port"], row["protocol"]) == (sp.cluster_ip, sp.port, sp.protocol)
        assert row["has_endpoints"] == has_endpoints
        assert row["external_ips"] == ",".join(sp.external_ips)
        if sp.node_port is not None:
            assert row["node_port"] == sp.node_port
        else:
            assert pd.isna(row["node_port"])
        assert row["endpoint_count"] == len(cluster)
        assert (pd.isna(row["local_endpoint_count"]) if not local else row["local_endpoint_count"] == len(local))
        if has_internal:
            assert row["internal_traffic_policy"] == sp.internal_traffic_policy
        elif has_endpoints:
            assert row["internal_traffic_policy"] == "Local"  # dropped: no local endpoint
        else:
            assert pd.isna(row["internal_traffic_policy"])
        if external and has_endpoints:
            assert row["external_traffic_policy"] == sp.external_traffic_policy
        if cluster or local:
            assert row["session_affinity"] == sp.session_affinity
            if sp.session_affinity == "ClientIP":
                assert row["session_affinity_timeout_seconds"] == sp.affinity_timeout_seconds
        else:
            assert pd.isna(row["session_affinity"])
        eps = rules.endpoints[rules.endpoints.service_port_name == sp.service_port_name]
        for is_local, expected in ((False, cluster), (True, local)):
            chain = eps[eps.local == is_local].sort_values("position")
            assert list(zip(chain.endpoint_ip, chain.endpoint_port)) == [(e.ip, e.port) for e in expected]
            assert list(chain.position) == list(range(len(expected)))
            assert (chain.probability == 1 / max(len(expected), 1)).all()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(service_ports())
def test_render_then_read_back_the_same_services(ports):
    check_round_trip(ports, read_nft_ruleset(render_nftables(ports, NODE, cluster_cidr="198.18.128.0/17")))


@pytest.mark.slow
@pytest.mark.root
def test_render_load_list_then_read_back_the_same_services(need_root, need_binary):
    need_binary("nft")
    name = f"npa-nft-prop-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(service_ports())
        def round_trip(ports):
            text = render_nftables(ports, NODE, cluster_cidr="198.18.128.0/17", node_ips=["198.18.30.2"])
            subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=text, text=True, check=True, timeout=30)
            listed = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                                    capture_output=True, text=True, check=True, timeout=30).stdout
            check_round_trip(ports, read_nft_ruleset(listed))

        round_trip()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        line = lines[i]
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, line)
        elif op == 2 and line.strip():
            j = rng.randrange(len(line))
            lines[i] = line[:j] + line[j + 1:]
        elif op == 3:
            j = rng.randrange(len(line) + 1)
            lines[i] = line[:j] + rng.choice("{}\" ,.:/#@0aZ\t") + line[j:]
        elif op == 4:
            k = rng.randrange(len(lines))
            lines[i], lines[k] = lines[k], lines[i]
        else:
            words = line.split(" ")
            words[rng.randrange(len(words))] = rng.choice(["goto", "}", "{", "3", "", "elements", "chain", "x"])
            lines[i] = " ".join(words)
        if not lines:
            break
    return "".join(lines)


@pytest.mark.slow
def test_fuzz_mutated_rulesets_raise_only_parse_errors():
    rng = random.Random(20261130)
    sources = [(DATA / f"{n}{f}").read_text() for n in ("node", "affinity", "local") for f in (".ruleset-a.txt", ".nft")]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(250):
        text = _mutate(rng.choice(sources), rng)
        try:
            read_nft_ruleset(text)
            outcomes["ok"] += 1
        except ParseError:
            outcomes["error"] += 1
        rules = read_nft_ruleset(text, on_bad_line="skip")
        assert rules.report.lines_parsed + rules.report.lines_skipped == rules.report.lines_total
        validate_frame(rules.services, "proxy_services")
        validate_frame(rules.endpoints, "proxy_endpoints")
    assert outcomes["error"] > 60  # the mutations do reach the checks


def test_public_names():
    import npanalytics.collectors.nftables as module

    assert module.__all__ == ["read_nft_ruleset"]
    assert sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])
                  and getattr(vars(module)[n], "__module__", "") == module.__name__) == ["read_nft_ruleset"]


def test_ip6_table_in_nft_f_form():
    # the safety rules give no IPv6 range for the kernel, so this form is read from the renderer's text only
    sp = ServicePort("default", "web", "http", "tcp", "fd00:10:96::a", 80, node_port=30080,
                     endpoints=(Endpoint("fd00:10:244::5", 8080, node=NODE), Endpoint("fd00:10:244:1::7", 8080, node="node-b")))
    rules = read_nft_ruleset(render_nftables([sp], NODE, cluster_cidr="fd00:10:244::/56", family="ip6"))
    web = service(rules, "default", "web", "http")
    assert (web["cluster_ip"], web["port"], web["node_port"], web["endpoint_count"]) == ("fd00:10:96::a", 80, 30080, 2)
    assert endpoint_rows(rules, "web") == [("fd00:10:244:1::7", 8080, 0, 0.5, 0.5), ("fd00:10:244::5", 8080, 1, 0.5, 0.5)]


LB_EXTRA = """\
add chain ip kube-proxy firewall-SUSTUHLJ-default/web/tcp/http
add rule ip kube-proxy firewall-SUSTUHLJ-default/web/tcp/http ip saddr != { 198.18.31.0/25 } drop
add element ip kube-proxy firewall-ips { 198.18.30.50 . tcp . 80 : goto firewall-SUSTUHLJ-default/web/tcp/http }
add element ip kube-proxy service-ips { 198.18.30.50 . tcp . 80 : goto external-SUSTUHLJ-default/web/tcp/http }
add element ip kube-proxy service-ips { 198.18.30.60 . tcp . 80 : goto external-SUSTUHLJ-default/web/tcp/http }
"""


def check_load_balancer(rules: ProxyRules) -> None:
    web = service(rules, "default", "web", "http")
    assert web["load_balancer_ips"] == "198.18.30.50"  # the LB IP with source ranges
    assert web["external_ips"] == "198.18.30.60"  # an ExternalIP (or an LB IP without source ranges)
    assert web["fw_chain"] == "firewall-SUSTUHLJ-default/web/tcp/http"
    assert (web["cluster_ip"], web["port"]) == ("198.19.1.10", 80)


def test_load_balancer_firewall_in_nft_f_form():
    check_load_balancer(read_nft_ruleset((DATA / "cluster3.nft").read_text() + LB_EXTRA))


@pytest.mark.root
def test_load_balancer_firewall_loaded_and_listed(need_root, need_binary):
    need_binary("nft")
    name = f"npa-nft-lb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        text = (DATA / "cluster3.nft").read_text() + LB_EXTRA
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=text, text=True, check=True, timeout=30)
        listed = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    assert "ip saddr != 198.18.31.0/25 drop" in listed
    check_load_balancer(read_nft_ruleset(listed))
