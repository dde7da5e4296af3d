"""Tests of npanalytics.lab.render_iptables (kube-proxy's iptables restore input)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess

import pytest

from npanalytics.lab.model import Endpoint, ServicePort
from npanalytics.lab.render_iptables import count_rules, render_iptables

CIDR = "10.244.0.0/16"
EXAMPLE = ServicePort(
    "default", "web", "http", "tcp", "10.96.12.34", 80, node_port=30080,
    endpoints=(
        Endpoint("10.244.1.5", 8080, "node-a"),
        Endpoint("10.244.2.7", 8080, "node-b"),
        Endpoint("10.244.3.9", 8080, "node-c"),
    ),
)
SVC = "KUBE-SVC-CDGGSHYLG3RE2FKL"
EXT = "KUBE-EXT-CDGGSHYLG3RE2FKL"
SVL = "KUBE-SVL-CDGGSHYLG3RE2FKL"
SEP1, SEP2, SEP3 = "KUBE-SEP-AFGSLHOD2HFNCBX4", "KUBE-SEP-2RIJ5GIYXEFH6G4D", "KUBE-SEP-RBX5X5TOEG5GD3RO"


def lines(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def table(text: str, name: str) -> str:
    return text.split(f"*{name}\n", 1)[1].split("COMMIT\n", 1)[0]


def test_worked_example_cluster_policy():
    text = render_iptables([EXAMPLE], "node-a", cluster_cidr=CIDR)
    nat = table(text, "nat")
    assert text.startswith("*filter\n") and text.endswith("COMMIT\n")
    assert text.index("*filter") < text.index("*nat")
    for chain in (SVC, EXT, SEP1, SEP2, SEP3, "KUBE-MARK-MASQ", "KUBE-POSTROUTING"):
        assert f":{chain} - [0:0]\n" in nat
    assert SVL not in text and "KUBE-FW-" not in text and "nfacct" not in text
    assert lines(nat, f"-A {SVC}") == [
        f'-A {SVC} -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
        f"-d 10.96.12.34 --dport 80 ! -s {CIDR} -j KUBE-MARK-MASQ",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" '
        f"-m statistic --mode random --probability 0.3333333333 -j {SEP1}",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.2.7:8080" '
        f"-m statistic --mode random --probability 0.5000000000 -j {SEP2}",
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.3.9:8080" -j {SEP3}',
    ]
    assert lines(nat, f"-A {SEP2}") == [
        f"-A {SEP2} -m comment --comment default/web:http -s 10.244.2.7 -j KUBE-MARK-MASQ",
        f"-A {SEP2} -m comment --comment default/web:http -m tcp -p tcp -j DNAT "
        "--to-destination 10.244.2.7:8080",
    ]
    assert lines(nat, f"-A {EXT}") == [
        f'-A {EXT} -m comment --comment "masquerade traffic for default/web:http external '
        'destinations" -j KUBE-MARK-MASQ',
        f"-A {EXT} -j {SVC}",
    ]
    assert lines(nat, "-A KUBE-NODEPORTS") == [
        f"-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j {EXT}"
    ]
    services = lines(nat, "-A KUBE-SERVICES")
    assert services[0] == (
        '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
        f"-d 10.96.12.34 --dport 80 -j {SVC}"
    )
    assert "KUBE-NODEPORTS" in services[-1] and "must be the last rule" in services[-1]
    assert lines(nat, "-A KUBE-MARK-MASQ") == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    assert lines(nat, "-A KUBE-POSTROUTING")[-1].endswith("-j MASQUERADE --random-fully")
    assert lines(nat, "-A POSTROUTING") == [
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
    ]
    # endpoints with traffic: no filter rule for this service
    assert "default/web" not in table(text, "filter")
    assert count_rules(text) == {"filter": 4, "nat": 19}


def test_no_cluster_cidr_and_masquerade_all():
    plain = render_iptables([EXAMPLE], "node-a")
    assert not any("KUBE-MARK-MASQ" in ln for ln in lines(plain, f"-A {SVC}"))
    everything = render_iptables([EXAMPLE], "node-a", masquerade_all=True)
    masq = [ln for ln in lines(everything, f"-A {SVC}") if ln.endswith("-j KUBE-MARK-MASQ")]
    assert masq == [
        f'-A {SVC} -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
        "-d 10.96.12.34 --dport 80 -j KUBE-MARK-MASQ"
    ]


def test_session_affinity_client_ip():
    sp = dataclasses.replace(EXAMPLE, session_affinity="ClientIP", affinity_timeout_seconds=600)
    nat = table(render_iptables([sp], "node-a"), "nat")
    svc = lines(nat, f"-A {SVC}")
    assert svc[:3] == [
        f'-A {SVC} -m comment --comment "default/web:http -> {ip}:8080" -m recent '
        f"--name {sep} --rcheck --seconds 600 --reap -j {sep}"
        for ip, sep in (("10.244.1.5", SEP1), ("10.244.2.7", SEP2), ("10.244.3.9", SEP3))
    ]
    assert "--probability 0.3333333333" in svc[3]
    assert lines(nat, f"-A {SEP1}")[1] == (
        f"-A {SEP1} -m comment --comment default/web:http -m recent --name {SEP1} --set "
        "-m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080"
    )


def test_external_policy_local_with_local_endpoint():
    sp = dataclasses.replace(EXAMPLE, external_traffic_policy="Local")
    nat = table(render_iptables([sp], "node-a", cluster_cidr=CIDR), "nat")
    assert lines(nat, f"-A {EXT}") == [
        f'-A {EXT} -m comment --comment "pod traffic for default/web:http external destinations" '
        f"-s {CIDR} -j {SVC}",
        f'-A {EXT} -m comment --comment "masquerade LOCAL traffic for default/web:http external '
        'destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
        f'-A {EXT} -m comment --comment "route LOCAL traffic for default/web:http external '
        f'destinations" -m addrtype --src-type LOCAL -j {SVC}',
        f"-A {EXT} -j {SVL}",
    ]
    assert lines(nat, f"-A {SVL}") == [
        f'-A {SVL} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {SEP1}'
    ]
    assert len(lines(nat, f"-A {SVC}")) == 1 + 3  # masquerade rule, then all endpoints


def test_external_policy_local_without_local_endpoint():
    sp = dataclasses.replace(EXAMPLE, external_traffic_policy="Local")
    text = render_iptables([sp], "node-z", cluster_cidr=CIDR)
    nat = table(text, "nat")
    assert SVL not in text
    assert lines(nat, f"-A {EXT}")[-1].endswith(f"-j {SVC}")  # only the short-circuit rules
    assert not any(ln.endswith(f"-j {SVL}") for ln in nat.splitlines())
    assert lines(table(text, "filter"), "-A KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP"
    ]


def test_internal_policy_local():
    sp = dataclasses.replace(EXAMPLE, node_port=None, internal_traffic_policy="Local")
    text = render_iptables([sp], "node-b", cluster_cidr=CIDR)
    nat = table(text, "nat")
    assert SVC not in text and EXT not in text
    assert f"--dport 80 -j {SVL}" in lines(nat, "-A KUBE-SERVICES")[0]
    assert lines(nat, f"-A {SVL}")[-1] == (
        f'-A {SVL} -m comment --comment "default/web:http -> 10.244.2.7:8080" -j {SEP2}'
    )
    alone = render_iptables([sp], "node-z", cluster_cidr=CIDR)
    assert lines(table(alone, "filter"), "-A KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "default/web:http has no local endpoints" '
        "-m tcp -p tcp -d 10.96.12.34 --dport 80 -j DROP"
    ]


def test_no_endpoints_rejects_and_external_ip():
    sp = dataclasses.replace(EXAMPLE, endpoints=(), external_ips=("198.18.20.9",))
    text = render_iptables([sp], "node-a", cluster_cidr=CIDR)
    assert "KUBE-SVC-" not in text and "KUBE-EXT-" not in text and "KUBE-SEP-" not in text
    flt = table(text, "filter")
    assert lines(flt, "-A KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" '
        "-m tcp -p tcp -d 10.96.12.34 --dport 80 -j REJECT"
    ]
    assert lines(flt, "-A KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no endpoints" '
        "-m tcp -p tcp -d 198.18.20.9 --dport 80 -j REJECT",
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT",
    ]


def test_unready_endpoints_and_terminating_fallback():
    eps = (
        Endpoint("10.244.1.5", 8080, "node-a", ready=False, serving=True, terminating=True),
        Endpoint("10.244.2.7", 8080, "node-b", ready=False, serving=False),
    )
    text = render_iptables([dataclasses.replace(EXAMPLE, endpoints=eps)], "node-a")
    assert lines(table(text, "nat"), f"-A {SVC}") == [
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {SEP1}'
    ]
    assert SEP2 not in text


def test_large_cluster_mode_drops_endpoint_comments():
    many = tuple(Endpoint(f"10.244.{i // 250}.{i % 250 + 1}", 80, "n") for i in range(1001))
    sp = ServicePort("ns", "big", "", "udp", "10.96.0.1", 53, endpoints=many)
    text = render_iptables([sp], "n")
    assert "->" not in text
    assert "--comment ns/big " not in text  # SEP rules carry no comment
    assert '--comment "ns/big cluster IP"' in text
    assert "--probability 0.0009990010 " in text  # 1/1001 with 10 decimals
    assert len(lines(text, "-A KUBE-SEP-")) == 2002
    small = render_iptables([dataclasses.replace(sp, endpoints=many[:1000])], "n")
    assert '"ns/big -> ' in small and "-m comment --comment ns/big -s " in small
    assert "->" in render_iptables([sp], "n", comments=True)
    assert "->" not in render_iptables([EXAMPLE], "node-a", comments=False)


def test_deterministic_and_sorted_endpoints():
    shuffled = dataclasses.replace(EXAMPLE, endpoints=EXAMPLE.endpoints[::-1])
    assert render_iptables([shuffled], "x") == render_iptables([EXAMPLE], "x")
    other = ServicePort("a", "b", "p", "tcp", "10.96.0.2", 81)
    assert render_iptables([EXAMPLE, other], "x") == render_iptables([other, EXAMPLE], "x")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"protocol": "icmp"}, "protocol must be 'tcp', 'udp' or 'sctp', got 'icmp'"),
        ({"cluster_ip": "fd00::1"}, "IPv4 rules only, got 'fd00::1'"),
    ],
)
def test_invalid_service_port(change, match):
    with pytest.raises(ValueError, match=match):
        render_iptables([dataclasses.replace(EXAMPLE, **change)], "node-a")


def test_count_rules_skips_builtin_chains():
    text = "*mangle\n:X - [0:0]\n-A INPUT -j X\n-A X -j RETURN\nCOMMIT\n*nat\nCOMMIT\n"
    assert count_rules(text) == {"mangle": 1, "nat": 0}


# --- in the kernel -----------------------------------------------------------------------

_counter = iter(range(1000))


@contextlib.contextmanager
def netns():
    """A fresh network namespace ``npa-ipt-t<pid>-<n>``, always deleted."""
    name = f"npa-ipt-t{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.root
@pytest.mark.parametrize("flavour", ["legacy", "nft"])
def test_loads_in_a_namespace(need_root, need_binary, flavour):
    need_binary(f"iptables-{flavour}-restore")
    need_binary(f"iptables-{flavour}-save")
    sp = dataclasses.replace(EXAMPLE, session_affinity="ClientIP", external_traffic_policy="Local")
    text = render_iptables([sp, dataclasses.replace(EXAMPLE, service="old", endpoints=())], "node-a",
                           cluster_cidr=CIDR)
    with netns() as ns:
        subprocess.run(["ip", "netns", "exec", ns, f"iptables-{flavour}-restore"], input=text,
                       text=True, check=True, capture_output=True)
        saved = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{flavour}-save"], text=True,
                               check=True, capture_output=True).stdout
    assert f"-A {SVC} -m comment --comment \"default/web:http -> 10.244.1.5:8080\" -m statistic " \
           f"--mode random --probability 0.33333333349 -j {SEP1}" in saved
    assert "--probability 0.50000000000 " in saved
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in saved
    assert "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0" in saved
    assert f"-A {SEP1} -s 10.244.1.5/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ" in saved
    assert (f"-m recent --rcheck --seconds 10800 --reap --name {SEP1} --mask 255.255.255.255 "
            f"--rsource -j {SEP1}") in saved
    assert f"-A {EXT} -j {SVL}" in saved
    assert ('-A KUBE-SERVICES -d 10.96.12.34/32 -p tcp -m comment --comment "default/old:http has '
            'no endpoints" -m tcp --dport 80 -j REJECT') in saved
    assert count_rules(saved) == count_rules(text)


# The saved nat table of KUBE_FACTS.md §1.8 (worked example, eTP=Cluster), without the
# KUBE-PROXY-CANARY chain (kube-proxy creates it with -N, outside the restore input) and
# without the nfacct localhost rule (not rendered: the lab has no nfacct objects).
WORKED_EXAMPLE_SAVED_NAT = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-CDGGSHYLG3RE2FKL - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-2RIJ5GIYXEFH6G4D - [0:0]
:KUBE-SEP-AFGSLHOD2HFNCBX4 - [0:0]
:KUBE-SEP-RBX5X5TOEG5GD3RO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-CDGGSHYLG3RE2FKL -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-CDGGSHYLG3RE2FKL -j KUBE-SVC-CDGGSHYLG3RE2FKL
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-CDGGSHYLG3RE2FKL
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-2RIJ5GIYXEFH6G4D -s 10.244.2.7/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-2RIJ5GIYXEFH6G4D -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.7:8080
-A KUBE-SEP-AFGSLHOD2HFNCBX4 -s 10.244.1.5/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-AFGSLHOD2HFNCBX4 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-SEP-RBX5X5TOEG5GD3RO -s 10.244.3.9/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-RBX5X5TOEG5GD3RO -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.3.9:8080
-A KUBE-SERVICES -d 10.96.12.34/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-CDGGSHYLG3RE2FKL ! -s 10.244.0.0/16 -d 10.96.12.34/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-AFGSLHOD2HFNCBX4
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.2.7:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2RIJ5GIYXEFH6G4D
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.3.9:8080" -j KUBE-SEP-RBX5X5TOEG5GD3RO
COMMIT
"""


@pytest.mark.root
@pytest.mark.parametrize("flavour", ["legacy", "nft"])
def test_worked_example_saved_nat_table(need_root, need_binary, flavour):
    need_binary(f"iptables-{flavour}-restore")
    text = render_iptables([EXAMPLE], "node-a", cluster_cidr=CIDR)
    with netns() as ns:
        subprocess.run(["ip", "netns", "exec", ns, f"iptables-{flavour}-restore"], input=text,
                       text=True, check=True, capture_output=True)
        saved = subprocess.run(["ip", "netns", "exec", ns, f"iptables-{flavour}-save", "-t", "nat"],
                               text=True, check=True, capture_output=True).stdout
    got = "".join(ln + "\n" for ln in saved.splitlines() if not ln.startswith("#"))
    assert got == WORKED_EXAMPLE_SAVED_NAT
