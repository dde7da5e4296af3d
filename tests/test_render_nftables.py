"""Tests of npanalytics.lab.render_nftables: text checks everywhere, nft loads with root."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from npanalytics.collectors._proxy import nftables_chain_name
from npanalytics.collectors.nftables import read_nft_ruleset
from npanalytics.lab.model import Endpoint, ServicePort
from npanalytics.lab.render_nftables import TRANSACTION_MARK, count_rules, render_nftables, split_transactions

DATA = Path(__file__).parent / "data" / "nftables"
CIDR = "198.18.128.0/20"
NODE = "node-a"


def eps(port, *hosts):
    return tuple(Endpoint(f"198.18.128.{h}", port, node=node) for h, node in hosts)


WEB = ServicePort(
    "default", "web", "http", "tcp", "198.19.1.10", 80, node_port=30080,
    endpoints=eps(8080, (5, NODE), (12, "node-b"), (7, "node-c")),
)
WEB_SVC = "service-SUSTUHLJ-default/web/tcp/http"
WEB_EXT = "external-SUSTUHLJ-default/web/tcp/http"


def rules_of(text: str, chain: str) -> list[str]:
    prefix = f"add rule ip kube-proxy {chain} "
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def elements_of(text: str, container: str) -> list[str]:
    prefix = f"add element ip kube-proxy {container} {{ "
    return [line[len(prefix):-2] for line in text.splitlines() if line.startswith(prefix)]


def test_chain_names_match_kube_proxy_hashes():
    sp = ServicePort("ns1", "svc1", "p80", "tcp", "10.0.0.41", 80,
                     endpoints=(Endpoint("10.180.0.1", 80, node="n"),))
    text = render_nftables([sp], "n")
    # KUBE_FACTS §2.2, upstream test vectors
    assert "add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80" in text.splitlines()
    assert "add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80" in text.splitlines()
    assert rules_of(text, "service-ULMVA6XW-ns1/svc1/tcp/p80") == [
        "numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }"
    ]
    # worked example of §2.4
    assert nftables_chain_name("service", "default/web/tcp/http") == WEB_SVC


def test_cluster_policy_three_endpoints():
    text = render_nftables([WEB], NODE, cluster_cidr=CIDR, node_ips=["198.18.30.2"])
    e12, e5, e7 = (nftables_chain_name("endpoint", f"default/web/tcp/http__198.18.128.{h}/8080") for h in (12, 5, 7))
    assert rules_of(text, WEB_SVC) == [
        f"ip daddr 198.19.1.10 tcp dport 80 ip saddr != {CIDR} jump mark-for-masquerade",
        # sorted as strings "ip:port": .12 before .5 before .7
        f"numgen random mod 3 vmap {{ 0 : goto {e12} , 1 : goto {e5} , 2 : goto {e7} }}",
    ]
    assert rules_of(text, WEB_EXT) == ["jump mark-for-masquerade", f"goto {WEB_SVC}"]
    assert rules_of(text, e5) == [
        "ip saddr 198.18.128.5 jump mark-for-masquerade",
        "meta l4proto tcp dnat to 198.18.128.5:8080",
    ]
    assert elements_of(text, "service-ips") == [f"198.19.1.10 . tcp . 80 : goto {WEB_SVC}"]
    assert elements_of(text, "service-nodeports") == [f"tcp . 30080 : goto {WEB_EXT}"]
    assert elements_of(text, "nodeport-ips") == ["198.18.30.2"]
    assert elements_of(text, "no-endpoint-services") == []
    assert "add chain ip kube-proxy local-SUSTUHLJ-default/web/tcp/http" not in text
    assert rules_of(text, "mark-for-masquerade") == ["mark set mark or 0x4000"]
    assert rules_of(text, "masquerading") == [
        "mark and 0x4000 == 0 return", "mark set mark xor 0x4000", "masquerade fully-random",
    ]
    assert rules_of(text, "services")[1] == "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"


def test_base_chains_have_the_1_33_hooks_and_priorities():
    lines = render_nftables([WEB], NODE).splitlines()
    assert "add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }" in lines
    assert "add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }" in lines
    assert "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }" in lines
    assert "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }" in lines


def test_without_cluster_cidr_or_node_ips():
    text = render_nftables([WEB], NODE)
    assert rules_of(text, WEB_SVC)[0].startswith("numgen random mod 3 ")
    assert "nodeport-ips" not in text
    assert rules_of(text, "services")[1] == (
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    )


def test_local_policy_with_and_without_local_endpoints():
    with_local = ServicePort("shop", "front", "https", "tcp", "198.19.1.11", 443, node_port=30443,
                             external_traffic_policy="Local",
                             endpoints=eps(8443, (21, NODE), (22, "node-b"), (23, NODE)))
    without = ServicePort("shop", "api", "http", "tcp", "198.19.1.12", 80, node_port=30081,
                          external_traffic_policy="Local", endpoints=eps(8081, (31, "node-b")))
    text = render_nftables([with_local, without], NODE, cluster_cidr=CIDR)
    base = "shop/front/tcp/https"
    svc, local, ext = (nftables_chain_name(p, base) for p in ("service", "local", "external"))
    e21, e22, e23 = (nftables_chain_name("endpoint", f"{base}__198.18.128.{h}/8443") for h in (21, 22, 23))
    assert rules_of(text, ext) == [
        f'ip saddr {CIDR} goto {svc} comment "short-circuit pod traffic"',
        'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
        f'fib saddr type local goto {svc} comment "short-circuit local traffic"',
        f"goto {local}",
    ]
    assert rules_of(text, local) == [f"numgen random mod 2 vmap {{ 0 : goto {e21} , 1 : goto {e23} }}"]
    assert rules_of(text, svc)[1] == f"numgen random mod 3 vmap {{ 0 : goto {e21} , 1 : goto {e22} , 2 : goto {e23} }}"

    base = "shop/api/tcp/http"
    ext = nftables_chain_name("external", base)
    assert [r.split(" comment")[0] for r in rules_of(text, ext)] == [
        f"ip saddr {CIDR} goto {nftables_chain_name('service', base)}",
        "fib saddr type local jump mark-for-masquerade",
        f"fib saddr type local goto {nftables_chain_name('service', base)}",
    ]
    assert f"add chain ip kube-proxy {nftables_chain_name('local', base)}" not in text
    assert elements_of(text, "no-endpoint-nodeports") == ['tcp . 30081 comment "shop/api:http" : drop']
    assert elements_of(text, "service-nodeports")[1] == f"tcp . 30081 : goto {ext}"


def test_internal_traffic_policy_local():
    sp = ServicePort("metrics", "agent", "scrape", "tcp", "198.19.1.17", 9100, internal_traffic_policy="Local",
                     endpoints=eps(9100, (71, NODE), (72, "node-b")))
    text = render_nftables([sp], NODE, cluster_cidr=CIDR)
    local = nftables_chain_name("local", "metrics/agent/tcp/scrape")
    assert elements_of(text, "service-ips") == [f"198.19.1.17 . tcp . 9100 : goto {local}"]
    assert f"add chain ip kube-proxy {nftables_chain_name('service', 'metrics/agent/tcp/scrape')}" not in text
    assert len(rules_of(text, local)) == 2  # masquerade of off-cluster sources, then numgen mod 1
    away = render_nftables([sp], "node-z", cluster_cidr=CIDR)
    assert elements_of(away, "no-endpoint-services") == ['198.19.1.17 . tcp . 9100 comment "metrics/agent:scrape" : drop']


def test_client_ip_affinity():
    sp = ServicePort("default", "sticky", "http", "tcp", "198.19.1.13", 80, session_affinity="ClientIP",
                     affinity_timeout_seconds=600, endpoints=eps(9000, (41, NODE), (42, "node-b")))
    text = render_nftables([sp], NODE)
    base = "default/sticky/tcp/http"
    aff41, aff42 = (nftables_chain_name("affinity", f"{base}__198.18.128.{h}/9000") for h in (41, 42))
    ep41, ep42 = (nftables_chain_name("endpoint", f"{base}__198.18.128.{h}/9000") for h in (41, 42))
    assert f"add set ip kube-proxy {aff41} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }}" in text
    assert rules_of(text, nftables_chain_name("service", base)) == [
        f"ip saddr @{aff41} goto {ep41}",
        f"ip saddr @{aff42} goto {ep42}",
        f"numgen random mod 2 vmap {{ 0 : goto {ep41} , 1 : goto {ep42} }}",
    ]
    assert rules_of(text, ep42)[1] == f"update @{aff42} {{ ip saddr }}"


def test_no_endpoints_reject():
    sp = ServicePort("batch", "idle", "", "udp", "198.19.1.15", 9999, node_port=31999)
    text = render_nftables([sp], NODE, cluster_cidr=CIDR)
    assert elements_of(text, "no-endpoint-services") == ['198.19.1.15 . udp . 9999 comment "batch/idle" : goto reject-chain']
    assert elements_of(text, "no-endpoint-nodeports") == ['udp . 31999 comment "batch/idle" : goto reject-chain']
    assert elements_of(text, "service-ips") == []
    assert "batch/idle/udp/" not in text
    assert rules_of(text, "reject-chain") == ["reject"]


def test_terminating_fallback_and_unready_endpoints():
    sp = ServicePort("default", "web", "http", "tcp", "198.19.1.10", 80, endpoints=(
        Endpoint("198.18.128.5", 80, node=NODE, ready=False, serving=True, terminating=True),
        Endpoint("198.18.128.6", 80, node=NODE, ready=False, serving=False, terminating=True),
    ))
    numgen = rules_of(render_nftables([sp], NODE), WEB_SVC)
    assert numgen == [f"numgen random mod 1 vmap {{ 0 : goto {nftables_chain_name('endpoint', 'default/web/tcp/http__198.18.128.5/80')} }}"]


def test_counters_option_puts_counters_on_dnat_rules():
    text = render_nftables([WEB], NODE, counters=True)
    e5 = nftables_chain_name("endpoint", "default/web/tcp/http__198.18.128.5/8080")
    assert rules_of(text, e5)[-1] == "meta l4proto tcp counter dnat to 198.18.128.5:8080"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(protocol="TCP"), r"protocol must be one of \('tcp', 'udp', 'sctp'\), got 'TCP'"),
        (dict(cluster_ip="fd00::10"), r"cluster_ip must be an IPv4 address \(table ip\), got 'fd00::10'"),
        (dict(endpoints=(Endpoint("198.18.128.999", 80, node=NODE),)), r"endpoint ip must be an IPv4 address"),
        (dict(namespace="Default"), r"namespace must be a DNS label \(\[a-z0-9-\]\), got 'Default'"),
        (dict(port_name="p_80"), r"port_name must be '' or a DNS label, got 'p_80'"),
        (dict(node_port=70000), r"node_port must be 1..65535, got 70000"),
        (dict(session_affinity="ClientIP", affinity_timeout_seconds=0), r"affinity_timeout_seconds must be 1..86400, got 0"),
    ],
)
def test_invalid_service_ports_are_refused(change, match):
    import dataclasses

    with pytest.raises(ValueError, match=match):
        render_nftables([dataclasses.replace(WEB, **change)], NODE)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match=r"given twice"):
        render_nftables([WEB, WEB], NODE)
    with pytest.raises(ValueError, match=r"cluster_cidr must be an IPv4 CIDR, got '198.18.128.0/40'"):
        render_nftables([WEB], NODE, cluster_cidr="198.18.128.0/40")
    with pytest.raises(ValueError, match=r"service_cidr must be an IPv4 CIDR, got 'x'"):
        render_nftables([WEB], NODE, service_cidr="x")
    with pytest.raises(ValueError, match=r"node_ips must hold IPv4 addresses, got 'node-a'"):
        render_nftables([WEB], NODE, node_ips=["node-a"])


def test_count_rules_in_both_forms():
    text = render_nftables([WEB], NODE, cluster_cidr=CIDR, node_ips=["198.18.30.2"])
    # 22 table-wide rules; web: masquerade + numgen, 2 external, 2 per endpoint
    assert count_rules(text) == sum(line.startswith("add rule ") for line in text.splitlines()) == 22 + 10
    for name in ("cluster3", "local", "affinity", "no_endpoints", "node", "counters"):
        rendered = (DATA / f"{name}.nft").read_text()
        assert count_rules((DATA / f"{name}.table.txt").read_text()) == count_rules(rendered)
        assert count_rules((DATA / f"{name}.ruleset-a.txt").read_text()) == count_rules(rendered)
    # the iptables-nft nat table adds its one MASQUERADE rule to the ruleset
    with_nat = (DATA / "with_iptables_nat.ruleset.txt").read_text()
    assert count_rules(with_nat) == count_rules((DATA / "with_iptables_nat.nft").read_text()) + 1


def test_recorded_nft_inputs_are_what_the_renderer_writes_today():
    sys.path.insert(0, str(DATA))
    try:
        import record  # noqa: PLC0415  (the recording script's scenarios)
    finally:
        sys.path.pop(0)
    for name, (ports, kwargs, _, _) in record.SCENARIOS.items():
        assert (DATA / f"{name}.nft").read_text() == render_nftables(ports, record.NODE, **kwargs), name


# -- with root: load into npa-nft-* namespaces ----------------------------------------------


class _Netns:
    def __init__(self) -> None:
        self.name = f"npa-nft-test-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> "_Netns":
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=30)
        return self

    def run(self, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=stdin,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


@pytest.fixture
def netns(need_root, need_binary):
    need_binary("nft")
    with _Netns() as ns:
        yield ns


@pytest.mark.root
def test_rendered_text_loads_and_lists_maps_and_chains(netns):
    text = render_nftables([WEB], NODE, cluster_cidr=CIDR, node_ips=["198.18.30.2"])
    netns.run("nft", "-f", "-", stdin=text)
    listed = netns.run("nft", "list", "ruleset")
    for name in ("map service-ips {", "map service-nodeports {", "map no-endpoint-services {",
                 "set cluster-ips {", f"chain {WEB_SVC} {{", f"chain {WEB_EXT} {{",
                 "chain masquerading {", "chain mark-for-masquerade {"):
        assert f"\t{name}\n" in listed, name
    assert "masquerade fully-random" in listed
    assert "type filter hook prerouting priority dstnat - 10; policy accept;" in listed
    # loading the same text again replaces the table: the listing does not change
    netns.run("nft", "-f", "-", stdin=text)
    assert netns.run("nft", "list", "ruleset") == listed
    assert count_rules(listed) == count_rules(text)


@pytest.mark.root
def test_loaded_table_spreads_new_udp_flows_over_all_endpoints(netns):
    sp = ServicePort("default", "echo", "udp", "udp", "198.19.1.20", 7,
                     endpoints=eps(7007, (81, NODE), (82, NODE), (83, NODE)))
    netns.run("ip", "link", "set", "lo", "up")
    for cidr in ("198.18.128.0/20", "198.19.1.0/24"):
        netns.run("ip", "addr", "add", cidr, "dev", "lo")
    netns.run("nft", "-f", "-", stdin=render_nftables([sp], NODE, counters=True))
    code = (
        "import socket\n"
        "for _ in range(90):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('198.19.1.20', 7)); s.close()\n"
    )
    netns.run(sys.executable, "-c", code)
    rules = read_nft_ruleset(netns.run("nft", "list", "ruleset"))
    packets = rules.endpoints.set_index("endpoint_ip")["packets"]
    assert sorted(packets.index) == ["198.18.128.81", "198.18.128.82", "198.18.128.83"]
    assert 80 <= packets.sum() <= 90  # one per new flow (a reused source port is not a new flow)
    assert (packets > 0).all()
    assert (rules.endpoints["bytes"] == rules.endpoints["packets"] * 29).all()  # 20 IP + 8 UDP + 1 byte


def test_public_names():
    import npanalytics.lab.render_nftables as module

    assert module.__all__ == ["render_nftables", "split_transactions", "count_rules", "TABLE_FAMILY", "TABLE_NAME",
                              "TRANSACTION_MARK"]
    assert sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])
                  and getattr(vars(module)[n], "__module__", "") == module.__name__) == [
        "count_rules", "render_nftables", "split_transactions"]


def test_ip6_table_text():
    sp = ServicePort("default", "web", "http", "tcp", "fd00:10:96::a", 80, node_port=30080, session_affinity="ClientIP",
                     endpoints=(Endpoint("fd00:10:244::5", 8080, node=NODE), Endpoint("fd00:10:244:1::7", 8080, node="node-b")))
    text = render_nftables([sp], NODE, cluster_cidr="fd00:10:244::/56", family="ip6")
    assert text.startswith('add table ip6 kube-proxy { comment "rules for kube-proxy" ; }\ndelete table ip6 kube-proxy\n')
    ep = nftables_chain_name("endpoint", "default/web/tcp/http__fd00.10.244..5/8080")
    assert rules_of(text.replace(" ip6 kube-proxy ", " ip kube-proxy "), ep) == [
        "ip6 saddr fd00:10:244::5 jump mark-for-masquerade",
        f"update @{nftables_chain_name('affinity', 'default/web/tcp/http__fd00.10.244..5/8080')} {{ ip6 saddr }}",
        "meta l4proto tcp dnat to [fd00:10:244::5]:8080",
    ]
    assert "add set ip6 kube-proxy cluster-ips { type ipv6_addr ;" in text
    assert "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports" in text
    with pytest.raises(ValueError, match=r"family must be one of \('ip', 'ip6'\), got 'inet'"):
        render_nftables([sp], NODE, family="inet")
    with pytest.raises(ValueError, match=r"cluster_ip must be an IPv6 address \(table ip6\), got '198.19.1.10'"):
        render_nftables([WEB], NODE, family="ip6")
    with pytest.raises(ValueError, match=r"cluster_cidr must be an IPv6 CIDR, got '198.18.128.0/20'"):
        render_nftables([sp], NODE, cluster_cidr=CIDR, family="ip6")


# -- transaction_size: the same table, loaded in several transactions ---------------------------


def _varied_ports() -> list[ServicePort]:
    """Service ports of every kind the renderer treats differently (affinity, Local, no endpoints...)."""
    ports = [
        WEB,
        ServicePort("default", "sticky", "", "tcp", "198.19.1.11", 443, session_affinity="ClientIP",
                    affinity_timeout_seconds=600, endpoints=eps(8443, (21, NODE), (22, "node-b"))),
        ServicePort("default", "local", "dns", "udp", "198.19.1.12", 53, node_port=30053,
                    external_traffic_policy="Local", external_ips=("198.18.31.7",),
                    endpoints=eps(5353, (31, NODE), (32, "node-b"))),
        ServicePort("default", "empty", "http", "tcp", "198.19.1.13", 80, node_port=30081),
        ServicePort("default", "internal", "http", "tcp", "198.19.1.14", 80, internal_traffic_policy="Local",
                    endpoints=eps(8080, (41, NODE))),
        # a second port of a cluster IP used above: still one cluster-ips element
        ServicePort("default", "web", "https", "tcp", "198.19.1.10", 443, endpoints=eps(8443, (5, NODE))),
    ]
    ports += [
        ServicePort("fill", f"f{k}", "http", "tcp", f"198.19.2.{k}", 80, node_port=31000 + k,
                    endpoints=eps(8080, *((50 + (k + e) % 100, NODE) for e in range(1 + k % 3))))
        for k in range(1, 21)
    ]
    return ports


@pytest.mark.parametrize("size", [1, 4, 7, 26, 1000])
def test_transaction_size_cuts_between_service_ports_and_keeps_every_command(size):
    ports = _varied_ports()
    one = render_nftables(ports, NODE, cluster_cidr=CIDR, node_ips=["198.18.30.2"])
    cut = render_nftables(ports, NODE, cluster_cidr=CIDR, node_ips=["198.18.30.2"], transaction_size=size)
    parts = split_transactions(cut)
    assert len(parts) == -(-len(ports) // size)
    assert split_transactions(one) == [one]
    assert all(p.endswith("\n") and TRANSACTION_MARK not in p for p in parts)
    # the same commands, each once, the table's own first
    commands = [line for line in one.splitlines() if line]
    assert sorted(line for p in parts for line in p.splitlines() if line) == sorted(commands)
    assert parts[0].splitlines()[:3] == one.splitlines()[:3]
    assert count_rules(cut) == count_rules(one)
    # the project's reader of nft -f input sees the same Services and endpoints in both
    read_one, read_cut = read_nft_ruleset(one), read_nft_ruleset(cut)
    pd.testing.assert_frame_equal(read_cut.services, read_one.services)
    pd.testing.assert_frame_equal(read_cut.endpoints, read_one.endpoints)
    # every part creates the chains and sets it uses before the rules and elements that use them
    created: set[str] = set()
    for part in parts:
        for line in part.splitlines():
            words = line.split()
            if line.startswith(("add chain ", "add set ", "add map ")):
                created.add(words[4])
            elif line.startswith(("add rule ", "add element ")):
                assert words[4] in created, line
                for target in (w for w in words if w.startswith(("endpoint-", "service-", "external-", "local-"))):
                    assert target in created, line


def test_transaction_size_without_ports_and_bad_values():
    assert render_nftables([], NODE, transaction_size=3) == render_nftables([], NODE)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match=r"transaction_size must be None or an integer >= 1, got"):
            render_nftables([WEB], NODE, transaction_size=bad)


@pytest.mark.root
def test_transactions_load_the_same_ruleset_as_one_transaction(need_root, need_binary):
    """The lab's fast form: N ``nft -f`` of the parts list exactly as kube-proxy's single transaction."""
    need_binary("nft")
    ports = _varied_ports()
    kwargs = dict(cluster_cidr=CIDR, node_ips=["198.18.30.2"], service_cidr="198.19.0.0/16")
    one = render_nftables(ports, NODE, **kwargs)
    cut = render_nftables(ports, NODE, transaction_size=4, **kwargs)
    name = f"npa-lab-sweep-{uuid.uuid4().hex[:6]}-render"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        def nft(*argv: str, stdin: str | None = None) -> str:
            done = subprocess.run(["ip", "netns", "exec", name, "nft", *argv], input=stdin,
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return done.stdout

        nft("-f", "-", stdin=one)
        listed_one = nft("list", "ruleset")
        nft("delete", "table", "ip", "kube-proxy")
        assert nft("list", "ruleset") == ""
        parts = split_transactions(cut)
        assert len(parts) == 7
        for part in parts:
            nft("-f", "-", stdin=part)
        listed_cut = nft("list", "ruleset")
        # the text with its marks is also valid nft input in one go (the marks are comments)
        nft("-f", "-", stdin=cut)
        listed_whole = nft("list", "ruleset")
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    assert listed_cut == listed_one
    assert listed_whole == listed_one
    assert "numgen random mod 3 vmap" in listed_one and "@affinity-" in listed_one
    assert count_rules(listed_cut) == count_rules(one)
