"""Record the nft samples of this folder from the real ``nft`` tool.

Each scenario is rendered with :func:`npanalytics.lab.render_nftables.render_nftables`
(saved as ``<name>.nft``), loaded with ``nft -f`` into a fresh network namespace
``npa-nft-rec-<n>``, and listed three ways:

- ``<name>.ruleset.txt``    ``nft list ruleset``
- ``<name>.ruleset-a.txt``  ``nft -a list ruleset`` (with ``# handle N``)
- ``<name>.table.txt``      ``nft list table ip kube-proxy``

Safety (the lab rules): only namespaces named ``npa-nft-rec-*`` that this script
creates, addresses from 198.18.0.0/15 only, nothing in the root namespace, a
bounded traffic loop (``counters`` scenario: at most 300 datagrams and 20 s),
and every namespace deleted in ``finally``.

Run as root from the repository root::

    .venv/bin/python tests/data/nftables/record.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from npanalytics.lab.model import Endpoint, ServicePort
from npanalytics.lab.render_nftables import render_nftables

HERE = Path(__file__).resolve().parent
NODE = "node-a"
NODE_IP = "198.18.30.2"
CLUSTER_CIDR = "198.18.128.0/20"
SERVICE_CIDR = "198.19.1.0/24"
TRAFFIC_DATAGRAMS = 300
TRAFFIC_SECONDS = 20.0


def _eps(port: int, *hosts: tuple[int, str]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(f"198.18.128.{h}", port, node=node, pod=f"pod-{h}") for h, node in hosts)


WEB = ServicePort(
    "default", "web", "http", "tcp", "198.19.1.10", 80, node_port=30080,
    endpoints=_eps(8080, (5, NODE), (12, "node-b"), (7, "node-c")),
)
LOCAL_WITH = ServicePort(
    "shop", "front", "https", "tcp", "198.19.1.11", 443, node_port=30443,
    external_traffic_policy="Local",
    endpoints=_eps(8443, (21, NODE), (22, "node-b"), (23, NODE)),
)
LOCAL_WITHOUT = ServicePort(
    "shop", "api", "http", "tcp", "198.19.1.12", 80, node_port=30081,
    external_traffic_policy="Local",
    endpoints=_eps(8081, (31, "node-b"), (32, "node-c")),
)
STICKY = ServicePort(
    "default", "sticky", "http", "tcp", "198.19.1.13", 80, node_port=30082,
    session_affinity="ClientIP",
    endpoints=_eps(9000, (41, NODE), (42, "node-b")),
)
STICKY_SHORT = ServicePort(
    "default", "sticky", "admin", "tcp", "198.19.1.13", 8080,
    session_affinity="ClientIP", affinity_timeout_seconds=600,
    endpoints=_eps(9090, (41, NODE), (42, "node-b")),
)
EMPTY = ServicePort("default", "empty", "http", "tcp", "198.19.1.14", 80)
EMPTY_NODEPORT = ServicePort("batch", "idle", "", "udp", "198.19.1.15", 9999, node_port=31999)
DNS_UDP = ServicePort(
    "kube-system", "kube-dns", "dns", "udp", "198.19.1.53", 53,
    endpoints=_eps(53, (51, NODE), (52, "node-b")),
)
DNS_TCP = ServicePort(
    "kube-system", "kube-dns", "dns-tcp", "tcp", "198.19.1.53", 53,
    endpoints=_eps(53, (51, NODE), (52, "node-b")),
)
EXTERNAL = ServicePort(
    "default", "edge", "", "tcp", "198.19.1.16", 80, node_port=30016,
    external_ips=("198.18.30.100",),
    endpoints=_eps(80, (61, "node-b")),
)
INTERNAL_LOCAL = ServicePort(
    "metrics", "agent", "scrape", "tcp", "198.19.1.17", 9100,
    internal_traffic_policy="Local",
    endpoints=_eps(9100, (71, NODE), (72, "node-b")),
)
UDP_TRAFFIC = ServicePort(
    "default", "echo", "udp", "udp", "198.19.1.20", 7, node_port=30007,
    endpoints=_eps(7007, (81, NODE), (82, NODE), (83, NODE)),
)

# name -> (service ports, render keyword arguments, extra setup commands, drive traffic)
SCENARIOS: dict[str, tuple[list[ServicePort], dict, list[list[str]], bool]] = {
    "cluster3": ([WEB], dict(cluster_cidr=CLUSTER_CIDR, node_ips=[NODE_IP]), [], False),
    "local": ([LOCAL_WITH, LOCAL_WITHOUT], dict(cluster_cidr=CLUSTER_CIDR, node_ips=[NODE_IP]), [], False),
    "affinity": ([STICKY, STICKY_SHORT], dict(cluster_cidr=CLUSTER_CIDR, node_ips=[NODE_IP]), [], False),
    "no_endpoints": ([EMPTY, EMPTY_NODEPORT], dict(cluster_cidr=CLUSTER_CIDR, node_ips=[NODE_IP]), [], False),
    "node": (
        [WEB, LOCAL_WITH, LOCAL_WITHOUT, STICKY, STICKY_SHORT, EMPTY, EMPTY_NODEPORT, DNS_UDP, DNS_TCP,
         EXTERNAL, INTERNAL_LOCAL],
        dict(cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR),
        [],
        False,
    ),
    "with_iptables_nat": (
        [WEB],
        dict(node_ips=[NODE_IP]),
        [["iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.30.0/24", "-j", "MASQUERADE"]],
        False,
    ),
    "counters": ([UDP_TRAFFIC], dict(cluster_cidr=CLUSTER_CIDR, node_ips=[NODE_IP], counters=True), [], True),
}


def _run(ns: str | None, *argv: str, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _drive_udp(ns: str, ip: str, port: int) -> int:
    """Send at most TRAFFIC_DATAGRAMS datagrams, each from a new socket, inside ``ns``."""
    code = (
        "import socket, sys, time\n"
        f"deadline = time.monotonic() + {TRAFFIC_SECONDS}\n"
        "n = 0\n"
        f"for _ in range({TRAFFIC_DATAGRAMS}):\n"
        "    if time.monotonic() > deadline: break\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"    s.sendto(b'npa', ({ip!r}, {port}))\n"
        "    s.close(); n += 1\n"
        "print(n)\n"
    )
    return int(_run(ns, sys.executable, "-c", code).strip())


def record(names: list[str] | None = None) -> None:
    """Record every scenario (or the ones named) into this folder."""
    if os.geteuid() != 0:
        raise SystemExit("record.py needs root (it creates network namespaces)")
    for i, (name, (ports, kwargs, setup, traffic)) in enumerate(SCENARIOS.items()):
        if names and name not in names:
            continue
        ns = f"npa-nft-rec-{i}"
        text = render_nftables(ports, NODE, **kwargs)
        (HERE / f"{name}.nft").write_text(text)
        _run(None, "ip", "netns", "add", ns)
        try:
            _run(ns, "ip", "link", "set", "lo", "up")
            for argv in setup:
                _run(ns, *argv)
            _run(ns, "nft", "-f", "-", stdin=text)
            if traffic:
                _run(ns, "ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
                _run(ns, "ip", "addr", "add", CLUSTER_CIDR, "dev", "lo")
                _run(ns, "ip", "addr", "add", SERVICE_CIDR, "dev", "lo")
                sp = ports[0]
                sent = _drive_udp(ns, sp.cluster_ip, sp.port)
                print(f"{name}: sent {sent} datagrams to {sp.cluster_ip}:{sp.port}")
            (HERE / f"{name}.ruleset.txt").write_text(_run(ns, "nft", "list", "ruleset"))
            (HERE / f"{name}.ruleset-a.txt").write_text(_run(ns, "nft", "-a", "list", "ruleset"))
            (HERE / f"{name}.table.txt").write_text(_run(ns, "nft", "list", "table", "ip", "kube-proxy"))
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        print(f"{name}: recorded in {ns}")
    versions = _run(None, "nft", "--version").strip()
    print(f"{versions}; kernel {os.uname().release}; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")


if __name__ == "__main__":
    record(sys.argv[1:] or None)
