"""Write a realistic ``conntrack -L`` dump of a busy Kubernetes node, for the benchmark.

The node (198.18.0.10) serves NodePorts 30000-30049 and ClusterIPs 198.19.0.0/24; DNAT
goes to pod addresses 198.18.128.0/17. Mix (seeded, reproducible): TCP ESTABLISHED,
TIME_WAIT, SYN_SENT [UNREPLIED], CLOSE_WAIT, FIN_WAIT, LAST_ACK, SYN_RECV; UDP
(replied and unreplied); a little ICMP. About half of the entries carry accounting
(packets=/bytes= in both directions) and delta-time, as after turning on
``nf_conntrack_acct`` on a running node; NodePort traffic under eTP=Cluster is
masqueraded to the node's pod-network address (SNAT), the rest keeps the client.
The stderr summary line ends the file, as a ``conntrack -L > f 2>&1`` capture does.

Usage::

    .venv/bin/python bench/gen_conntrack.py [--entries 1000000] [--out bench/.work/conntrack-1000000.txt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / ".work"

TCP_STATES = np.array(["ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSE_WAIT", "FIN_WAIT", "LAST_ACK", "SYN_RECV"])
TCP_STATE_P = np.array([0.62, 0.25, 0.05, 0.03, 0.02, 0.02, 0.01])
TCP_TIMEOUT = {"ESTABLISHED": 432000, "TIME_WAIT": 120, "SYN_SENT": 120, "CLOSE_WAIT": 60,
               "FIN_WAIT": 120, "LAST_ACK": 30, "SYN_RECV": 60}


def _ip4(base: int, offsets: np.ndarray) -> list[str]:
    v = base + offsets.astype(np.int64)
    return [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in v.tolist()]


def generate(entries: int, seed: int = 7) -> bytes:
    """The dump as bytes."""
    rng = np.random.default_rng(seed)
    n = entries
    proto = rng.choice(3, size=n, p=[0.80, 0.18, 0.02])  # tcp, udp, icmp
    clients = _ip4(0xC6120000 + 0x4000, rng.integers(0, 60000, n))  # 198.18.64.0 + ...
    pods = _ip4(0xC6128000, rng.integers(0, 2000, n))  # 198.18.128.0/17
    cluster_ips = _ip4(0xC6130000, rng.integers(1, 250, n))  # 198.19.0.x
    node_port = rng.random(n) < 0.6
    etp_local = rng.random(n) < 0.3
    acct = rng.random(n) < 0.5
    states = rng.choice(TCP_STATES, size=n, p=TCP_STATE_P)
    sports = rng.integers(32768, 61000, n)
    nodeports = rng.integers(30000, 30050, n)
    svcports = rng.choice([80, 443, 8080, 9090, 53], size=n)
    targetports = rng.choice([8080, 8443, 9000, 5353], size=n)
    snat_ports = rng.integers(1024, 65535, n)
    pk = rng.integers(1, 5000, (n, 2))
    by = pk * rng.integers(60, 1500, (n, 2))
    remaining = rng.random(n)
    marks = rng.choice([0, 0, 0, 0x4000], size=n)
    lines = []
    append = lines.append
    for i in range(n):
        client = clients[i]
        if node_port[i]:
            dst, dport = "198.18.0.10", int(nodeports[i])
        else:
            dst, dport = cluster_ips[i], int(svcports[i])
        pod, tport = pods[i], int(targetports[i])
        sport = int(sports[i])
        masq = node_port[i] and not etp_local[i]
        rdst, rdport = ("198.18.0.1", int(snat_ports[i])) if masq else (client, sport)
        a = acct[i]
        ao = f" packets={pk[i, 0]} bytes={by[i, 0]}" if a else ""
        ar = f" packets={pk[i, 1]} bytes={by[i, 1]}" if a else ""
        dt = f" delta-time={int(remaining[i] * 3000)}" if a else ""
        p = proto[i]
        if p == 0:
            st = states[i]
            unrep = st == "SYN_SENT"
            to = int(TCP_TIMEOUT[st] * remaining[i]) + 1
            if unrep:
                ar = " packets=0 bytes=0" if a else ""
                append(f"tcp      6 {to} {st} src={client} dst={dst} sport={sport} dport={dport}{ao} [UNREPLIED] "
                       f"src={pod} dst={rdst} sport={tport} dport={rdport}{ar} mark={marks[i]}{dt} use=1")
            else:
                flag = "" if st == "SYN_RECV" else " [ASSURED]"
                append(f"tcp      6 {to} {st} src={client} dst={dst} sport={sport} dport={dport}{ao} "
                       f"src={pod} dst={rdst} sport={tport} dport={rdport}{ar}{flag} mark={marks[i]}{dt} use=1")
        elif p == 1:
            to = int(120 * remaining[i]) + 1
            if remaining[i] < 0.2:
                append(f"udp      17 {to} src={client} dst={dst} sport={sport} dport={dport}{ao} [UNREPLIED] "
                       f"src={pod} dst={rdst} sport={tport} dport={rdport}{' packets=0 bytes=0' if a else ''} mark=0{dt} use=1")
            else:
                append(f"udp      17 {to} src={client} dst={dst} sport={sport} dport={dport}{ao} "
                       f"src={pod} dst={rdst} sport={tport} dport={rdport}{ar} [ASSURED] mark=0{dt} use=1")
        else:
            ident = sport & 0xFFFF
            append(f"icmp     1 {int(30 * remaining[i])} src={client} dst={pod} type=8 code=0 id={ident}{ao} "
                   f"src={pod} dst={client} type=0 code=0 id={ident}{ar} mark=0{dt} use=1")
    lines.append(f"conntrack v1.4.7 (conntrack-tools): {n} flow entries have been shown.")
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = args.out or WORK / f"conntrack-{args.entries}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(generate(args.entries, args.seed))
    print(out)


if __name__ == "__main__":
    main()
