"""Record the byte-exact conntrack samples of this folder from the real tools.

Run as root from the repository root::

    .venv/bin/python tests/data/conntrack/record.py

It builds three network namespaces, ``npa-ct-client`` -- ``npa-ct-node`` --
``npa-ct-pod``, joined by veths in 198.18.10.0/24 (and 2001:2:0:a::/64 for IPv6):

    client 198.18.10.1  <->  198.18.10.2  node  198.18.10.17  <->  198.18.10.18 pod

The node namespace forwards and NATs like a kube-proxy node:

- tcp 198.18.10.2:30080 -> DNAT 198.18.10.18:8080, then MASQUERADE (eTP=Cluster-like)
- tcp 198.18.10.2:30081 -> DNAT 198.18.10.18:8081, no SNAT (eTP=Local-like), connmark 42
- tcp 198.18.10.2:30082 -> DNAT 198.18.10.18:9999, dropped by the pod (SYN_SENT [UNREPLIED])
- udp 198.18.10.2:30053 -> DNAT 198.18.10.18:5353, MASQUERADE
- ICMP echo client -> pod (no NAT); ICMP to the node in conntrack zone 7
- IPv6: tcp [2001:2:0:a::2]:30080 -> DNAT [2001:2:0:a:1::18]:8080, and ICMPv6 echo

Half of the traffic runs before, half after ``nf_conntrack_acct=1`` and
``nf_conntrack_timestamp=1`` are set *inside the node namespace*, so the dumps hold
entries with and without accounting. Then every dump format is saved the way a
``cmd > file 2>&1`` capture would save it (stdout, then the stderr summary line).

Safety: only namespaces named ``npa-ct-*``, only 198.18.10.0/24 and 2001:2::/48,
nothing changes in the root namespace, every wait is bounded, and everything is
torn down in ``finally``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS = ("npa-ct-client", "npa-ct-node", "npa-ct-pod")
PY = sys.executable

SERVER = textwrap.dedent(
    """
    import socket, select, time
    socks = []
    for fam, addr in ((socket.AF_INET, "198.18.10.18"), (socket.AF_INET6, "2001:2:0:a:1::18")):
        for port in (8080, 8081):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port)); s.listen(64); socks.append(s)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("198.18.10.18", 5353))
    socks.append(u)
    conns = []
    end = time.monotonic() + 60
    print("ready", flush=True)
    while time.monotonic() < end:
        r, _, _ = select.select(socks + conns, [], [], 0.5)
        for s in r:
            if s is u:
                data, peer = u.recvfrom(2048); u.sendto(data.upper(), peer)
            elif s in socks:
                c, _ = s.accept(); conns.append(c)
            else:
                data = s.recv(2048)
                if data:
                    s.sendall(b"ok " + data)
                else:
                    s.close(); conns.remove(s)
    """
)

CLIENT = textwrap.dedent(
    """
    import socket, sys, time, select, struct
    phase = sys.argv[1]
    held = []

    def tcp(addr, port, keep, fam=socket.AF_INET, payload=b"hello"):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
        s.connect((addr, port)); s.sendall(payload); s.recv(100)
        if keep:
            held.append(s)
        else:
            s.close()

    def icmp_echo(addr, ident, fam=socket.AF_INET):
        if fam == socket.AF_INET:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); typ = 8
        else:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); typ = 128
        s.settimeout(2)
        body = struct.pack("!BBHHH", typ, 0, 0, ident, 1) + b"npa"
        if fam == socket.AF_INET:
            csum = 0
            for i in range(0, len(body) + len(body) % 2, 2):
                csum += (body + b"\\0")[i] << 8 | (body + b"\\0")[i + 1]
            csum = (csum >> 16) + (csum & 0xFFFF); csum = ~(csum + (csum >> 16)) & 0xFFFF
            body = body[:2] + struct.pack("!H", csum) + body[4:]
        s.sendto(body, (addr, 0))
        try:
            s.recv(200)
        except OSError:
            pass
        s.close()

    def udp(addr, port, payload):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
        u.sendto(payload, (addr, port)); u.recv(100); u.close()

    def syn_only(addr, port):
        s = socket.socket(); s.setblocking(False)
        try:
            s.connect((addr, port))
        except BlockingIOError:
            pass
        held.append(s)

    n = 1 if phase == "a" else 2
    for _ in range(n):
        tcp("198.18.10.2", 30080, keep=True)
        tcp("198.18.10.2", 30080, keep=False)
        tcp("198.18.10.2", 30081, keep=True, payload=b"x" * 1000)
    tcp("2001:2:0:a::2", 30080, keep=True, fam=socket.AF_INET6)
    udp("198.18.10.2", 30053, b"query-" + phase.encode())
    syn_only("198.18.10.2", 30082)
    icmp_echo("198.18.10.18", 7 if phase == "a" else 8)
    icmp_echo("198.18.10.2", 9 if phase == "a" else 10)
    icmp_echo("2001:2:0:a:1::18", 11 if phase == "a" else 12, fam=socket.AF_INET6)
    print("ready", flush=True)
    select.select([sys.stdin], [], [], 30)
    for s in held:
        s.close()
    """
)


def sh(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def nsx(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *cmd, check=check)


def teardown() -> None:
    for ns in NS:
        sh("ip", "netns", "del", ns, check=False)


def build() -> None:
    client, node, pod = NS
    for ns in NS:
        sh("ip", "netns", "add", ns)
        nsx(ns, "ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "npa-ct-c0", "netns", client, "type", "veth", "peer", "npa-ct-n0", "netns", node)
    sh("ip", "link", "add", "npa-ct-n1", "netns", node, "type", "veth", "peer", "npa-ct-p0", "netns", pod)
    for ns, dev, v4, v6 in (
        (client, "npa-ct-c0", "198.18.10.1/28", "2001:2:0:a::1/80"),
        (node, "npa-ct-n0", "198.18.10.2/28", "2001:2:0:a::2/80"),
        (node, "npa-ct-n1", "198.18.10.17/28", "2001:2:0:a:1::17/80"),
        (pod, "npa-ct-p0", "198.18.10.18/28", "2001:2:0:a:1::18/80"),
    ):
        nsx(ns, "ip", "addr", "add", v4, "dev", dev)
        nsx(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        nsx(ns, "ip", "link", "set", dev, "up")
    nsx(client, "ip", "route", "add", "default", "via", "198.18.10.2")
    nsx(client, "ip", "-6", "route", "add", "default", "via", "2001:2:0:a::2")
    nsx(pod, "ip", "route", "add", "default", "via", "198.18.10.17")
    nsx(pod, "ip", "-6", "route", "add", "default", "via", "2001:2:0:a:1::17")
    nsx(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    nsx(node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    nsx(node, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0")
    ipt = ("ip", "netns", "exec", node, "iptables")
    for rule in (
        "-t nat -A PREROUTING -d 198.18.10.2 -p tcp --dport 30080 -j DNAT --to-destination 198.18.10.18:8080",
        "-t nat -A PREROUTING -d 198.18.10.2 -p tcp --dport 30081 -j DNAT --to-destination 198.18.10.18:8081",
        "-t nat -A PREROUTING -d 198.18.10.2 -p tcp --dport 30082 -j DNAT --to-destination 198.18.10.18:9999",
        "-t nat -A PREROUTING -d 198.18.10.2 -p udp --dport 30053 -j DNAT --to-destination 198.18.10.18:5353",
        "-t nat -A POSTROUTING -o npa-ct-n1 -p tcp --dport 8080 -j MASQUERADE",
        "-t nat -A POSTROUTING -o npa-ct-n1 -p udp --dport 5353 -j MASQUERADE",
        "-t mangle -A PREROUTING -p tcp --dport 30081 -j CONNMARK --set-mark 42",
        "-t raw -A PREROUTING -d 198.18.10.2 -p icmp -j CT --zone 7",
        "-t raw -A OUTPUT -s 198.18.10.2 -p icmp -j CT --zone 7",
    ):
        sh(*ipt, *rule.split())
    sh("ip", "netns", "exec", node, "ip6tables", *(
        "-t nat -A PREROUTING -d 2001:2:0:a::2 -p tcp --dport 30080 "
        "-j DNAT --to-destination [2001:2:0:a:1::18]:8080").split())
    sh("ip", "netns", "exec", pod, "iptables", *"-A INPUT -p tcp --dport 9999 -j DROP".split())


def run_client(phase: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS[0], PY, "-c", CLIENT, phase],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"client phase {phase} failed: {line!r}")
    return proc


def capture(name: str, *cmd: str) -> None:
    """Save stdout then stderr, as ``cmd > name 2>&1`` with a line-buffered stderr would."""
    res = subprocess.run(["ip", "netns", "exec", NS[1], *cmd], capture_output=True, timeout=20)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {res.stderr!r}")
    (HERE / name).write_bytes(res.stdout + res.stderr)


def main() -> None:
    teardown()
    clients = []
    server = None
    try:
        build()
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS[2], PY, "-c", SERVER], stdout=subprocess.PIPE, text=True
        )
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("server did not start")
        clients.append(run_client("a"))
        nsx(NS[1], "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        nsx(NS[1], "sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")
        clients.append(run_client("b"))
        time.sleep(1.2)  # so that delta-time is not always 0
        capture("default.txt", "conntrack", "-L")
        capture("extended.txt", "conntrack", "-L", "-o", "extended")
        capture("id.txt", "conntrack", "-L", "-o", "id")
        capture("xml.xml", "conntrack", "-L", "-o", "xml")
        capture("ipv6.txt", "conntrack", "-L", "-f", "ipv6")
        capture("proc.txt", "cat", "/proc/net/nf_conntrack")
        capture("stats.txt", "conntrack", "-S")
        capture("proc_stat.txt", "cat", "/proc/net/stat/nf_conntrack")
    finally:
        for proc in clients:
            try:
                proc.communicate("done\n", timeout=5)
            except Exception:
                proc.kill()
        if server is not None:
            server.kill()
            server.wait(timeout=5)
        teardown()


if __name__ == "__main__":
    main()
