"""Record the iptables samples of this folder from the real tools (re-runnable, needs root).

    cd /work/main && .venv/bin/python tests/data/iptables/record.py

For each rule set (``mixed``: comments on; ``large``: the same Services in
kube-proxy's large-cluster mode, without SVC->SEP and SEP comments) it writes
the renderer's output as ``<set>.restore.txt``, then, for each of
``iptables-legacy`` and ``iptables-nft``, loads it with ``iptables-*-restore``
into a fresh network namespace ``npa-ipt-rec-<pid>-<n>``, sends 30 UDP
datagrams from 30 sockets to the ``kube-system/dns`` ClusterIP (30 new flows,
so the nat counters move), and saves:

- ``<set>.<flavour>.save.txt``      ``iptables-save``
- ``<set>.<flavour>.save-c.txt``    ``iptables-save -c``
- ``<set>.<flavour>.nat-S.txt``     ``iptables -t nat -S``
- ``<set>.<flavour>.nat-Sv.txt``    ``iptables -t nat -S -v``

A third set, ``affinity``, holds one UDP Service with ClientIP affinity
(``shop/session:udp``, 3 endpoints) and gets its traffic from 4 client
addresses on lo (198.18.20.11-14) sending 3, 5, 7 and 9 flows: each client's
first flow is a random choice (``statistic`` rules, then ``recent --set`` in the
SEP chain), the others match the ``recent --rcheck`` rule of its endpoint, so
the affinity checks' counters move.

    .venv/bin/python tests/data/iptables/record.py affinity   # only that set

Safety: only namespaces it creates (deleted in ``finally``), addresses from
198.18.0.0/15 (lo in the namespace gets 198.18.20.1/24; ClusterIPs 198.19.0.0/16
and pods 198.18.64.0/18 are routed to lo inside the namespace), no kernel module,
the traffic loop is bounded (30 datagrams, 2 s timeout per command).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from npanalytics.lab.model import Endpoint, ServicePort  # noqa: E402
from npanalytics.lab.render_iptables import render_iptables  # noqa: E402

NODE = "node-a"
CLUSTER_CIDR = "198.18.64.0/18"
DNS_IP = "198.19.0.10"
FLOWS = 30
SESSION_IP = "198.19.0.30"
# (client address, flows) of the affinity set
AFFINITY_CLIENTS = (("198.18.20.11", 3), ("198.18.20.12", 5), ("198.18.20.13", 7), ("198.18.20.14", 9))


def service_ports() -> list[ServicePort]:
    """The Services of the samples; ``node-a`` is the node the rules are for."""
    web = tuple(Endpoint(f"198.18.{64 + i}.5", 8080, f"node-{n}") for i, n in enumerate("abc"))
    return [
        # Cluster policy, 3 endpoints, NodePort
        ServicePort("default", "web", "http", "tcp", "198.19.0.20", 80, node_port=30080, endpoints=web),
        # eTP=Local, one endpoint on this node
        ServicePort("default", "local", "http", "tcp", "198.19.0.21", 80, node_port=30081,
                    external_traffic_policy="Local", endpoints=web),
        # eTP=Local, no endpoint on this node
        ServicePort("default", "remote", "http", "tcp", "198.19.0.22", 80, node_port=30082,
                    external_traffic_policy="Local", endpoints=web[1:]),
        # ClientIP affinity (default timeout 10800 s), ExternalIP
        ServicePort("shop", "cart", "grpc", "tcp", "198.19.0.23", 9000, session_affinity="ClientIP",
                    external_ips=("198.18.20.50",),
                    endpoints=(Endpoint("198.18.70.7", 9000, "node-b"),
                               Endpoint("198.18.70.8", 9000, "node-c"))),
        # no endpoints at all (one not ready), NodePort and ExternalIP
        ServicePort("shop", "empty", "http", "tcp", "198.19.0.24", 80, node_port=30084,
                    external_ips=("198.18.20.51",),
                    endpoints=(Endpoint("198.18.71.1", 80, "node-b", ready=False, serving=False),)),
        # unnamed port, UDP, 3 endpoints: the traffic target
        ServicePort("kube-system", "dns", "", "udp", DNS_IP, 53,
                    endpoints=tuple(Endpoint(f"198.18.72.{i}", 53, "node-c") for i in (10, 11, 12))),
        # iTP=Local with a local endpoint
        ServicePort("default", "node-cache", "", "tcp", "198.19.0.26", 8081, internal_traffic_policy="Local",
                    endpoints=(Endpoint("198.18.64.9", 8081, NODE), Endpoint("198.18.65.9", 8081, "node-b"))),
    ]


def affinity_service_ports() -> list[ServicePort]:
    """The affinity set: one UDP Service port with ClientIP affinity and 3 endpoints."""
    return [
        ServicePort("shop", "session", "udp", "udp", SESSION_IP, 5000, session_affinity="ClientIP",
                    endpoints=tuple(Endpoint(f"198.18.73.{i}", 5000, "node-b") for i in (1, 2, 3))),
    ]


def sender(target: str, port: int, flows: list[tuple[str | None, int]]) -> str:
    """Python source sending one 1-byte datagram per new socket, from each (source, count)."""
    return (
        "import socket\n"
        f"for src, n in {flows!r}:\n"
        "    for _ in range(n):\n"
        "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "        if src:\n"
        "            s.bind((src, 0))\n"
        f"        s.sendto(b'x', ('{target}', {port}))\n"
        "        s.close()\n"
    )


def run(*cmd: str, stdin: str | None = None) -> str:
    return subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=30).stdout


def record(ruleset: str, text: str, flavour: str, n: int) -> None:
    ns = f"npa-ipt-rec-{os.getpid()}-{n}"
    run("ip", "netns", "add", ns)
    try:
        exe = ("ip", "netns", "exec", ns)
        run(*exe, "ip", "link", "set", "lo", "up")
        run(*exe, "ip", "addr", "add", "198.18.20.1/24", "dev", "lo")
        run(*exe, "ip", "route", "add", "198.19.0.0/16", "dev", "lo", "src", "198.18.20.1")
        run(*exe, "ip", "route", "add", CLUSTER_CIDR, "dev", "lo", "src", "198.18.20.1")
        run(*exe, f"iptables-{flavour}-restore", stdin=text)
        if ruleset == "affinity":
            for address, _ in AFFINITY_CLIENTS:
                run(*exe, "ip", "addr", "add", f"{address}/32", "dev", "lo")
            code = sender(SESSION_IP, 5000, list(AFFINITY_CLIENTS))
        else:
            code = sender(DNS_IP, 53, [(None, FLOWS)])
        subprocess.run([*exe, sys.executable, "-c", code], check=True, timeout=2)
        save = f"iptables-{flavour}-save"
        outputs = {
            "save": run(*exe, save),
            "save-c": run(*exe, save, "-c"),
            "nat-S": run(*exe, f"iptables-{flavour}", "-t", "nat", "-S"),
            "nat-Sv": run(*exe, f"iptables-{flavour}", "-t", "nat", "-S", "-v"),
        }
        for kind, out in outputs.items():
            (HERE / f"{ruleset}.{flavour}.{kind}.txt").write_text(out)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main(sets: list[str]) -> None:
    n = 0
    for ruleset, comments in (("mixed", True), ("large", False), ("affinity", True)):
        if sets and ruleset not in sets:
            continue
        sps = affinity_service_ports() if ruleset == "affinity" else service_ports()
        text = render_iptables(sps, NODE, cluster_cidr=CLUSTER_CIDR, comments=comments)
        (HERE / f"{ruleset}.restore.txt").write_text(text)
        for flavour in ("legacy", "nft"):
            record(ruleset, text, flavour, n)
            n += 1
    print("recorded into", HERE)


if __name__ == "__main__":
    main(sys.argv[1:])
