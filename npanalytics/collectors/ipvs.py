"""Read ``ipvsadm -Ln`` (and ``--stats``, ``--rate``, ``--exact``) into the proxy frames.

In IPVS mode kube-proxy programs one IPVS virtual server per ClusterIP:port,
ExternalIP:port, LB-IP:port and per node IP and NodePort, with the endpoints as
real servers in NAT ("Masq") mode (../shared/KUBE_FACTS.md §2.6).
:func:`read_ipvsadm` turns ipvsadm's listing into the same
``proxy_services``/``proxy_endpoints`` frames as the iptables and nftables
readers. ipvsadm does not know Service names, so ``namespace``, ``service`` and
``port_name`` are NA.
"""

from __future__ import annotations

import re

import pandas as pd

from ..schemas import frame_from_records, schema_table, validate_frame
from ._proxy import ProxyRules
from ._source import BadLines, Source, count_lines, read_source_text

__all__ = ["read_ipvsadm", "DEFAULT_NODE_PORT_RANGE", "STATS_COLUMNS", "RATE_COLUMNS"]

PROXY_MODE = "ipvs"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)

# ipvsadm's --stats and --rate columns -> extra frame columns (not in the schema).
STATS_COLUMNS = {
    "Conns": "connections_total",
    "InPkts": "in_packets_total",
    "OutPkts": "out_packets_total",
    "InBytes": "in_bytes_total",
    "OutBytes": "out_bytes_total",
}
RATE_COLUMNS = {
    "CPS": "connections_per_second",
    "InPPS": "in_packets_per_second",
    "OutPPS": "out_packets_per_second",
    "InBPS": "in_bytes_per_second",
    "OutBPS": "out_bytes_per_second",
}
# Schedulers whose choice probability follows from the weights alone.
WEIGHTED_SCHEDULERS = ("rr", "wrr")
FORWARD_METHODS = ("Masq", "Local", "Tunnel", "Route")
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}

_VERSION = re.compile(r"^IP Virtual Server version \d+\.\d+\.\d+ \(size=\d+\)$")
_TITLE_LIST = "Prot LocalAddress:Port Scheduler Flags"
_TITLE_LIST_RS = "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
_TITLE_COLUMNS = re.compile(r"^Prot LocalAddress:Port\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$")
_TITLE_RS = "  -> RemoteAddress:Port"
_ADDRPORT = r"(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})"
_SERVICE = re.compile(
    rf"^(TCP|UDP|SCTP) {{1,2}}{_ADDRPORT} (\S+)"
    r"(?: persistent (\d+)(?: mask (\S+))?(?: pe (\S+))?(?: (ops))?)?$"
)
# print_largenum fields: space-padded, or glued after a K/M/G/T suffix.
_FIELDS5 = r"((?:(?:\s+|(?<=[KMGT]))\d+[KMGT]?){5})"
_SERVICE_COUNTS = re.compile(rf"^(TCP|UDP|SCTP) {{1,2}}{_ADDRPORT}{_FIELDS5}$")
_DEST = re.compile(rf"^  -> {_ADDRPORT}\s+(\S+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s*$")
_DEST_COUNTS = re.compile(rf"^  -> {_ADDRPORT}{_FIELDS5}\s*$")
_NUMBER = re.compile(r"(\d+)([KMGT]?)")


def _counts(text: str) -> list[int | None]:
    """ipvsadm's print_largenum fields; a K/M/G/T suffix is rounded down, so NA."""
    return [int(n) if not suffix else None for n, suffix in _NUMBER.findall(text)]


def _check_node_port_range(node_port_range: tuple[int, int]) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in node_port_range)
    except (TypeError, ValueError):
        raise ValueError(f"node_port_range must be a (low, high) pair of ports, got {node_port_range!r}") from None
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"node_port_range must satisfy 1 <= low <= high <= 65535, got {node_port_range!r}")
    return low, high


def read_ipvsadm(
    source: Source,
    *,
    on_bad_line: str = "raise",
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
) -> ProxyRules:
    """Read an ``ipvsadm -Ln`` listing (plain, ``--stats`` or ``--rate``).

    Parameters
    ----------
    source : path, file object, str or bytes
        Output of ``ipvsadm -Ln`` (or ``-L -n``), ``ipvsadm -Ln --stats``,
        ``ipvsadm -Ln --rate``, each also with ``--exact``, or of one service
        (``ipvsadm -Ln -t VIP:PORT``). Addresses must be numeric (``-n``).
        ``.gz`` is recognised.
    on_bad_line : {"raise", "warn", "skip"}, default "raise"
        What to do with a line that cannot be read: raise
        :class:`~npanalytics.ParseError`, or skip it (counted in the report;
        ``"warn"`` also emits one :class:`~npanalytics.exceptions.ParseWarning`).
        The real servers under a skipped virtual server are skipped too.
    node_port_range : (int, int), default (30000, 32767)
        kube-apiserver's ``--service-node-port-range``, inclusive. A virtual
        server whose port lies in it is taken as a NodePort on a node IP:
        ``node_port`` is set and ``cluster_ip``/``port`` are NA.

    Returns
    -------
    ProxyRules
        ``services`` (kind ``proxy_services``, one row per virtual server) and
        ``endpoints`` (kind ``proxy_endpoints``, one row per real server), with
        ``proxy_mode="ipvs"``, and the :class:`ParseReport` (format
        ``"ipvsadm"``, ``"ipvsadm --stats"`` or ``"ipvsadm --rate"``).

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected <what>, got <line>"`` under ``"raise"``:
        a missing or unknown title (``--thresholds``, ``--persistent-conn``
        and ``--tun-info`` listings are not read), a non-numeric address, a
        firewall-mark (``FWM``) service, a real server before any virtual
        server, or a malformed line.
    ValueError
        ``on_bad_line`` or ``node_port_range`` is not valid.

    Notes
    -----
    - ipvsadm output holds no Service names: ``namespace``, ``service``,
      ``port_name`` and ``service_port_name`` are NA. ``svc_chain`` (services)
      and ``chain`` (endpoints) hold the virtual server, e.g.
      ``"TCP 10.96.0.10:53"``, so the two frames join on it.
    - ``scheduler`` and ``persistent N`` (-> ``session_affinity`` ClientIP,
      ``session_affinity_timeout_seconds`` N; otherwise None) are printed only
      by the plain listing; with ``--stats``/``--rate`` they are NA, as are
      ``weight`` and the connection counts.
    - ``probability`` of a real server: ``wrr`` -> weight / sum of weights;
      ``rr`` -> 1 / (servers with weight > 0), and 0 for weight 0 (rr skips
      quiesced servers but otherwise ignores weights; kube-proxy uses weights
      1, and 0 for terminating endpoints, so both rules agree there). Other
      schedulers (lc, wlc, sh, dh, mh, sed, nq, lblc, lblcr, fo, ovf) depend on
      connection state or hashing: NA. ``rule_probability`` equals
      ``probability`` (IPVS has no rule chain); ``position`` is the real
      server's place in ipvsadm's (address-sorted) listing.
    - ``--stats``: ``packets`` is ``Conns``, the connections IPVS scheduled to
      the real server (the quantity the iptables and nftables readers count as
      ``packets`` of the rule that picks an endpoint); ``bytes`` is NA. All
      five columns are kept as extra columns ``connections_total``,
      ``in_packets_total``, ``out_packets_total``, ``in_bytes_total`` and
      ``out_bytes_total`` (services and endpoints). ``--rate`` columns become
      ``connections_per_second`` ... ``out_bytes_per_second``. Without
      ``--exact`` ipvsadm prints numbers of 10**8 and above rounded down with
      a K/M/G/T suffix: those values are NA.
    - ``has_endpoints`` is False for a virtual server without real servers;
      ``endpoint_count`` counts all real servers, weight 0 included.
    """
    low, high = _check_node_port_range(node_port_range)
    name, text = read_source_text(source)
    bad = BadLines(name, on_bad_line)
    lines = text.splitlines()
    mode = None  # "list", "stats" or "rate"
    columns: dict[str, str] = {}
    services: list[dict] = []
    endpoints: list[dict] = []
    current: dict | None = None  # the virtual server the next real servers belong to
    orphan = False  # real servers under a skipped virtual server are skipped too
    expect_rs_title = False

    for lineno, line in enumerate(lines, 1):
        if expect_rs_title:
            expect_rs_title = False
            wanted = _TITLE_LIST_RS if mode == "list" else _TITLE_RS
            if line.rstrip() != wanted:
                bad.bad(lineno, f"the real-server title {wanted.strip()!r}", line)
            continue
        if not line.strip():
            continue
        if mode is None:
            if _VERSION.match(line) and not services:
                continue
            if line.rstrip() == _TITLE_LIST:
                mode, expect_rs_title = "list", True
                continue
            m = _TITLE_COLUMNS.match(line.rstrip())
            if m and tuple(m.groups()) in (tuple(STATS_COLUMNS), tuple(RATE_COLUMNS)):
                mode = "stats" if m.group(1) == "Conns" else "rate"
                columns = STATS_COLUMNS if mode == "stats" else RATE_COLUMNS
                expect_rs_title = True
                continue
            bad.bad(lineno, "ipvsadm's title ('Prot LocalAddress:Port Scheduler Flags', or the --stats/--rate columns)", line)
            orphan = True
            continue

        if line.startswith("  -> "):
            if current is None or orphan:
                bad.bad(lineno, "a real server under a readable virtual server", line)
                continue
            if mode == "list":
                m = _DEST.match(line)
                if not m or m.group(4) not in FORWARD_METHODS:
                    bad.bad(lineno, "'  -> <ip>:<port> <Masq|Local|Tunnel|Route> <weight> <active> <inactive>'", line)
                    continue
                v4, v6, port, _, weight, active, inactive = m.groups()
                row = _endpoint(current, v4 or v6, int(port))
                row.update(weight=int(weight), active_connections=int(active), inactive_connections=int(inactive))
            else:
                m = _DEST_COUNTS.match(line)
                if not m:
                    bad.bad(lineno, f"'  -> <ip>:<port>' and five numbers ({', '.join(columns)})", line)
                    continue
                v4, v6, port, numbers = m.groups()
                row = _endpoint(current, v4 or v6, int(port))
                _add_counts(row, columns, _counts(numbers))
            endpoints.append(row)
            current["_dests"].append(row)
            continue

        current, orphan = None, True
        if line.startswith("FWM "):
            bad.bad(lineno, "a TCP, UDP or SCTP virtual server (firewall-mark services are not kube-proxy's)", line)
            continue
        m = (_SERVICE if mode == "list" else _SERVICE_COUNTS).match(line.rstrip() if mode == "list" else line)
        if not m:
            what = ("'<TCP|UDP|SCTP>  <ip>:<port> <scheduler> [persistent <seconds>]' (numeric, ipvsadm -n)"
                    if mode == "list" else f"'<TCP|UDP|SCTP>  <ip>:<port>' and five numbers ({', '.join(columns)})")
            bad.bad(lineno, what, line)
            continue
        proto, v4, v6, port = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if port > 65535:
            bad.bad(lineno, "a port 0..65535", line)
            continue
        ip = v4 or v6
        is_node_port = low <= port <= high
        key = f"{proto} {'[' + ip + ']' if v6 else ip}:{port}"
        current = {
            "proxy_mode": PROXY_MODE,
            "namespace": None,
            "service": None,
            "port_name": None,
            "service_port_name": None,
            "protocol": PROTOCOLS[proto],
            "cluster_ip": None if is_node_port else ip,
            "port": None if is_node_port else port,
            "node_port": port if is_node_port else None,
            "external_ips": "",
            "load_balancer_ips": "",
            "external_traffic_policy": None,
            "internal_traffic_policy": None,
            "session_affinity": None,
            "session_affinity_timeout_seconds": None,
            "scheduler": None,
            "endpoint_count": 0,
            "local_endpoint_count": None,
            "has_endpoints": False,
            "svc_chain": key,
            "svl_chain": None,
            "ext_chain": None,
            "fw_chain": None,
            "virtual_server_ip": ip,
            "_dests": [],
        }
        if mode == "list":
            current["scheduler"] = m.group(5)
            persistent = m.group(6)
            current["session_affinity"] = "ClientIP" if persistent is not None else "None"
            current["session_affinity_timeout_seconds"] = int(persistent) if persistent is not None else None
        else:
            _add_counts(current, columns, _counts(m.group(5)))
        services.append(current)
        orphan = False

    if expect_rs_title:
        bad.bad(len(lines), "the real-server title after ipvsadm's title", lines[-1])

    for svc in services:
        dests = svc.pop("_dests")
        svc["endpoint_count"] = len(dests)
        svc["has_endpoints"] = bool(dests)
        _probabilities(svc["scheduler"], dests)

    fmt = {"list": "ipvsadm", "stats": "ipvsadm --stats", "rate": "ipvsadm --rate"}.get(mode, "ipvsadm")
    report = bad.report(fmt, count_lines(text))
    extra = ("virtual_server_ip", *columns.values())
    svc_df = frame_from_records(services, "proxy_services")
    ep_df = frame_from_records(endpoints, "proxy_endpoints")
    for df, rows in ((svc_df, services), (ep_df, endpoints)):
        for col in extra:
            if col == "virtual_server_ip":
                if df is svc_df:
                    df[col] = _category([r.get(col) for r in rows])
                continue
            df[col] = _int64([r.get(col) for r in rows])
    validate_frame(svc_df, "proxy_services")
    validate_frame(ep_df, "proxy_endpoints")
    return ProxyRules(services=svc_df, endpoints=ep_df, report=report)


def _category(values: list) -> pd.Categorical:
    return pd.Categorical(values)


def _int64(values: list) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype="Int64")


def _endpoint(service: dict, ip: str, port: int) -> dict:
    return {
        "proxy_mode": PROXY_MODE,
        "namespace": None,
        "service": None,
        "port_name": None,
        "service_port_name": None,
        "protocol": service["protocol"],
        "endpoint_ip": ip,
        "endpoint_port": port,
        "chain": service["svc_chain"],
        "local": False,
        "position": len(service["_dests"]),
        "rule_probability": None,
        "probability": None,
        "endpoint_chain": None,
        "weight": None,
        "active_connections": None,
        "inactive_connections": None,
        "packets": None,
        "bytes": None,
    }


def _add_counts(row: dict, columns: dict[str, str], values: list[int | None]) -> None:
    for column, value in zip(columns.values(), values):
        row[column] = value
    if "connections_total" in row and "endpoint_ip" in row:
        row["packets"] = row["connections_total"]


def _probabilities(scheduler: str | None, dests: list[dict]) -> None:
    if scheduler not in WEIGHTED_SCHEDULERS or not dests:
        return
    weights = [d["weight"] for d in dests]
    if scheduler == "wrr":
        total = sum(w for w in weights if w > 0)
        shares = [(w / total if total else 0.0) if w > 0 else 0.0 for w in weights]
    else:
        active = sum(1 for w in weights if w > 0)
        shares = [(1.0 / active if w > 0 else 0.0) for w in weights]
    for d, p in zip(dests, shares):
        d["probability"] = d["rule_probability"] = p


read_ipvsadm.__doc__ += (
    "\n    Frames\n    ------\n"
    + "\n".join("    " + line for line in schema_table("proxy_services").splitlines())
    + "\n\n"
    + "\n".join("    " + line for line in schema_table("proxy_endpoints").splitlines())
    + "\n"
)
