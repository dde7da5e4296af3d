"""Construct the ipvsadm samples of this folder from ipvsadm 1.31's print formats.

The kernel of the test machine has no ip_vs, so ``ipvsadm -Ln`` cannot be
recorded here. This script prints one kube-proxy-like IPVS table the way
ipvsadm 1.31 prints it: the format strings are those of ``ipvsadm.c``
(``list_all``, ``print_title``, ``print_service_entry``, ``print_largenum``,
``addrport_to_anyname`` with ``-n``) and of Debian's ``/usr/sbin/ipvsadm`` 1.31
string table (``"%-4s %s"`` for the protocol column, so ``SCTP`` gets one
space). Services are sorted as ``ipvs_cmp_services`` sorts them (fwmark,
family, protocol, address, port) and real servers by address then port, with
libipvs' comparison ``ntohl(a) - ntohl(b)`` taken as a C ``int``: an address
more than 2**31 above another sorts *before* it (192.168.x before 10.x).

Run from the repository root: ``.venv/bin/python tests/data/ipvs/construct.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_NUMBER = {"TCP": 6, "UDP": 17, "SCTP": 132}


@dataclasses.dataclass
class Dest:
    addr: str
    port: int
    weight: int = 1
    active: int = 0
    inactive: int = 0
    fwd: str = "Masq"
    # --stats: conns, inpkts, outpkts, inbytes, outbytes; --rate: cps, inpps, outpps, inbps, outbps
    stats: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    rate: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


@dataclasses.dataclass
class VirtualServer:
    proto: str
    addr: str
    port: int
    sched: str = "rr"
    persistent: int | None = None
    dests: list[Dest] = dataclasses.field(default_factory=list)

    def stats(self) -> tuple[int, ...]:
        return tuple(sum(d.stats[i] for d in self.dests) for i in range(5))

    def rate(self) -> tuple[int, ...]:
        return tuple(sum(d.rate[i] for d in self.dests) for i in range(5))


def _addrport(addr: str, port: int) -> str:  # addrport_to_anyname, FMT_NUMERIC
    v6 = ipaddress.ip_address(addr).version == 6
    return f"{'[' if v6 else ''}{addr}{']' if v6 else ''}:{port}"


def _largenum(i: int, exact: bool) -> str:  # print_largenum
    if exact:
        text = str(i)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    if i < 100_000_000:
        return f"{i:9d}"
    if i < 1_000_000_000:
        return f"{i // 1000:8d}K"
    if i < 100_000_000_000:
        return f"{i // 1_000_000:8d}M"
    if i < 100_000_000_000_000:
        return f"{i // 1_000_000_000:8d}G"
    return f"{i // 1_000_000_000_000:8d}T"


def _int32(n: int) -> int:
    """C's conversion of an unsigned 32-bit difference to int (wraps above 2**31)."""
    n &= 0xFFFFFFFF
    return n - 0x1_0000_0000 if n >= 0x8000_0000 else n


def _cmp_addr(a: str, b: str) -> int:
    """``ntohl(a) - ntohl(b)`` as libipvs computes it (word by word for IPv6)."""
    x, y = ipaddress.ip_address(a).packed, ipaddress.ip_address(b).packed
    for i in range(0, len(x), 4):
        r = _int32(int.from_bytes(x[i:i + 4], "big") - int.from_bytes(y[i:i + 4], "big"))
        if r:
            return r
    return 0


def _cmp_services(s1: VirtualServer, s2: VirtualServer) -> int:  # ipvs_cmp_services
    af1 = 2 if ipaddress.ip_address(s1.addr).version == 4 else 10
    af2 = 2 if ipaddress.ip_address(s2.addr).version == 4 else 10
    return (af1 - af2) or (PROTO_NUMBER[s1.proto] - PROTO_NUMBER[s2.proto]) or _cmp_addr(s1.addr, s2.addr) or (s1.port - s2.port)


def _cmp_dests(d1: Dest, d2: Dest) -> int:  # ipvs_cmp_dests
    return _cmp_addr(d1.addr, d2.addr) or (d1.port - d2.port)


def render(table: list[VirtualServer], mode: str = "list", exact: bool = False, version: bool = True) -> str:
    """``ipvsadm -Ln`` (mode "list"), ``-Ln --stats`` ("stats") or ``-Ln --rate`` ("rate")."""
    out = []
    if version:
        out.append("IP Virtual Server version 1.2.1 (size=4096)\n")
    if mode == "stats":
        out.append("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
                   % ("Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"))
    elif mode == "rate":
        out.append("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
                   % ("Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"))
    else:
        out.append("Prot LocalAddress:Port Scheduler Flags\n"
                   "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
    for vs in sorted(table, key=functools.cmp_to_key(_cmp_services)):
        svc_name = "%-4s %s" % (vs.proto, _addrport(vs.addr, vs.port))
        if ipaddress.ip_address(vs.addr).version == 4:
            svc_name = svc_name[:33]
        if mode == "stats":
            out.append("%-33s" % svc_name + "".join(_largenum(n, exact) for n in vs.stats()) + "\n")
        elif mode == "rate":
            out.append("%-33s" % svc_name + "".join(_largenum(n, exact) for n in vs.rate()) + "\n")
        else:
            line = f"{svc_name} {vs.sched}"
            if vs.persistent is not None:
                line += f" persistent {vs.persistent}"
            out.append(line + "\n")
        dests = sorted(vs.dests, key=functools.cmp_to_key(_cmp_dests))
        for d in dests:
            dname = _addrport(d.addr, d.port)
            if ipaddress.ip_address(vs.addr).version == 4:
                dname = dname[:28]
            if mode == "stats":
                out.append("  -> %-28s" % dname + "".join(_largenum(n, exact) for n in d.stats) + "\n")
            elif mode == "rate":
                out.append("  -> %-28s %8d %8d %8d" % (dname, *d.rate[:3])
                           + "".join(_largenum(n, exact) for n in d.rate[3:]) + "\n")
            else:
                out.append("  -> %-28s %-7s %-6d %-10d %-10d\n" % (dname, d.fwd, d.weight, d.active, d.inactive))
    return "".join(out)


WEB_PODS = [
    Dest("10.244.1.5", 8080, active=3, inactive=41, stats=(1520, 9120, 7600, 601_344, 10_640_000), rate=(5, 30, 25, 1980, 35000)),
    Dest("10.244.2.7", 8080, active=2, inactive=39, stats=(1498, 8988, 7490, 592_608, 10_486_000), rate=(4, 24, 20, 1584, 28000)),
    Dest("10.244.3.9", 8080, active=4, inactive=44, stats=(1533, 9198, 7665, 606_480, 10_731_000), rate=(5, 30, 25, 1980, 35000)),
    # terminating pod: kube-proxy sets weight 0 and keeps it until its connections end
    Dest("10.244.3.10", 8080, weight=0, active=1, inactive=5, stats=(410, 2460, 2050, 162_360, 2_870_000)),
]


def kube_proxy_node() -> list[VirtualServer]:
    """A node of a kube-proxy IPVS cluster (node IPs 192.168.10.21 and 10.0.2.15)."""
    dns = [Dest("10.244.0.2", 53, stats=(88_000, 176_000, 176_000, 11_264_000, 27_456_000)),
           Dest("10.244.1.3", 53, stats=(87_412, 174_824, 174_824, 11_188_736, 27_272_544))]
    return [
        VirtualServer("TCP", "10.96.0.1", 443, dests=[Dest("192.168.10.11", 6443, active=1, stats=(12, 480_113, 455_901, 98_702_114, 1_203_553_221))]),
        VirtualServer("TCP", "10.96.0.10", 53, dests=[dataclasses.replace(d, stats=(4, 20, 16, 1200, 2100)) for d in dns]),
        VirtualServer("TCP", "10.96.0.10", 9153, dests=[dataclasses.replace(d, port=9153, stats=(0, 0, 0, 0, 0)) for d in dns]),
        VirtualServer("UDP", "10.96.0.10", 53, dests=[dataclasses.replace(d, inactive=0) for d in dns]),
        VirtualServer("TCP", "10.96.12.34", 80, dests=list(WEB_PODS)),
        VirtualServer("TCP", "192.168.10.21", 30080, dests=[dataclasses.replace(d, active=0, inactive=1, stats=(7, 42, 35, 2772, 49_000), rate=(0,) * 5) for d in WEB_PODS]),
        VirtualServer("TCP", "10.0.2.15", 30080, dests=[dataclasses.replace(d, active=0, inactive=0, stats=(0,) * 5, rate=(0,) * 5) for d in WEB_PODS]),
        VirtualServer("TCP", "10.96.12.35", 80, persistent=10800, dests=[
            Dest("10.244.1.6", 8080, active=5, inactive=0, stats=(301, 4000, 3600, 250_000, 4_100_000)),
            Dest("10.244.2.8", 8080, active=1, inactive=2, stats=(77, 900, 810, 61_000, 980_000)),
        ]),
        VirtualServer("TCP", "10.96.12.36", 80),  # a Service without endpoints
        VirtualServer("TCP", "10.96.12.38", 80, sched="lc", dests=[Dest("10.244.1.7", 80, active=7), Dest("10.244.2.9", 80, active=6)]),
        VirtualServer("TCP", "10.96.12.39", 80, sched="wrr", dests=[Dest("10.244.1.8", 80, weight=3), Dest("10.244.2.10", 80, weight=1)]),
        VirtualServer("SCTP", "10.96.12.40", 9999, dests=[Dest("10.244.3.11", 9999)]),
        VirtualServer("UDP", "192.168.10.21", 30053, persistent=600, dests=[Dest("10.244.0.2", 53)]),
        VirtualServer("TCP", "fd00:10:96::a", 53, dests=[Dest("fd00:10:244::2", 53), Dest("fd00:10:244:1::3", 53)]),
    ]


def main() -> None:
    table = kube_proxy_node()
    (HERE / "list.txt").write_text(render(table))
    (HERE / "stats.txt").write_text(render(table, "stats"))
    (HERE / "stats-exact.txt").write_text(render(table, "stats", exact=True))
    (HERE / "rate.txt").write_text(render(table, "rate"))
    one = [vs for vs in table if vs.addr == "10.96.12.34"]
    (HERE / "list-one-service.txt").write_text(render(one, version=False))  # ipvsadm -Ln -t 10.96.12.34:80


if __name__ == "__main__":
    main()
