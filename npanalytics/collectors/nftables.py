"""Read kube-proxy's nftables table (``nft list ruleset``) into the proxy frames.

kube-proxy's nftables mode (1.29+, GA in 1.33) keeps everything in
``table ip kube-proxy`` (``ip6 kube-proxy`` for IPv6): the ``service-ips`` and
``service-nodeports`` verdict maps send a packet to a per-Service-port chain,
whose ``numgen random mod N vmap`` picks one ``endpoint-...`` chain, which DNATs
(../shared/KUBE_FACTS.md §2). :func:`read_nft_ruleset` turns a listing of that
table into the same ``proxy_services``/``proxy_endpoints`` frames as the iptables
reader.
"""

from __future__ import annotations

import dataclasses
import re

from ..schemas import frame_from_records, schema_table, validate_frame
from ._proxy import ProxyRules, nftables_chain_name, service_port_name
from ._source import BadLines, Source, count_lines, read_source_text

__all__ = ["read_nft_ruleset"]

PROXY_MODE = "nftables"
KUBE_PROXY_TABLE = "kube-proxy"
KUBE_PROXY_FAMILIES = ("ip", "ip6")
FORMAT = "nft list ruleset"

# Chain-name prefixes kube-proxy uses per Service port and per endpoint (§2.2).
SERVICE_PREFIX = "service"
LOCAL_PREFIX = "local"
EXTERNAL_PREFIX = "external"
FIREWALL_PREFIX = "firewall"
ENDPOINT_PREFIX = "endpoint"
AFFINITY_PREFIX = "affinity"
REJECT_CHAIN = "reject-chain"

# Verdict maps and sets whose elements the reader uses.
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
FIREWALL_IPS = "firewall-ips"
CLUSTER_IPS = "cluster-ips"
_USED_CONTAINERS = (SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, FIREWALL_IPS, CLUSTER_IPS)

# nft prints set timeouts as a sum of units ("3h", "1h30m", "10800s", "500ms").
_TIME_UNITS_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}

_HANDLE = re.compile(r"\s+# handle \d+\s*$")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = r"[A-Za-z0-9_./\-]+"
_IP = r"[0-9A-Fa-f:.]+"
_PROTO = r"(?:tcp|udp|sctp)"

# Block form (nft list ...).
_TABLE_OPEN = re.compile(rf"^table\s+(ip|ip6|inet|arp|bridge|netdev)\s+({_NAME})\s*\{{$")
_BLOCK_OPEN = re.compile(rf"^(chain|set|map|flowtable|ct helper|ct timeout|ct expectation|counter|quota|limit|secmark|synproxy)\s+({_NAME})\s*\{{$")
_ELEMENTS_OPEN = re.compile(r"^elements\s*=\s*\{(.*)$")
_SET_PROPERTY = re.compile(r"^(type|typeof|flags|timeout|gc-interval|size|comment|policy|auto-merge|counter)\b.*$")
_CHAIN_PROPERTY = re.compile(r"^(type\s+\w+\s+hook\s+\w+.*|comment\s+\".*\"|policy\s+\w+;?|devices\s*=.*)$")
_TABLE_PROPERTY = re.compile(r"^(comment\s+\".*\"|flags\s+\S+)$")

# Command form (nft -f input as kube-proxy and render_nftables write it).
_CMD = re.compile(rf"^(add|create|insert|delete|flush|destroy)\s+(table|chain|rule|set|map|element)\s+(ip|ip6|inet|arp|bridge|netdev)\s+({_NAME})\b\s*(.*)$")
_CMD_NAMED = re.compile(rf"^({_NAME})(?:\s+(.*))?$")

# Rules of the per-Service-port and per-endpoint chains.
_COUNTER = re.compile(r"(?:^|\s)counter packets (\d+) bytes (\d+)(?=\s|$)")
_COUNTER_BARE = re.compile(r"(?:^|\s)counter(?=\s|$)")
_COMMENT = re.compile(r'\s+comment\s+"((?:[^"\\]|\\.)*)"$')
_MASQ_SERVICE = re.compile(rf"^ip6? daddr ({_IP})(?: {_PROTO} dport \d+)?(?: ip6? saddr != \S+)? jump mark-for-masquerade$")
_AFFINITY_CHECK = re.compile(rf"^ip6? saddr @({AFFINITY_PREFIX}-{_NAME}) goto ({ENDPOINT_PREFIX}-{_NAME})$")
_NUMGEN = re.compile(r"^numgen random mod (\d+) vmap \{ (.*) \}$")
_VMAP_ENTRY = re.compile(rf"^(\d+) : goto ({ENDPOINT_PREFIX}-{_NAME})$")
_EXT_MASQ = re.compile(r"^jump mark-for-masquerade$")
_EXT_GOTO = re.compile(rf"^goto ((?:{SERVICE_PREFIX}|{LOCAL_PREFIX})-{_NAME})$")
_EXT_POD = re.compile(rf"^ip6? saddr \S+ goto ({SERVICE_PREFIX}-{_NAME})$")
_EXT_FIB_MASQ = re.compile(r"^fib saddr type local jump mark-for-masquerade$")
_EXT_FIB_GOTO = re.compile(rf"^fib saddr type local goto ({SERVICE_PREFIX}-{_NAME})$")
_FW_DROP = re.compile(r"^ip6? saddr != .+ drop$")
_EP_HAIRPIN = re.compile(rf"^ip6? saddr ({_IP}) jump mark-for-masquerade$")
_EP_UPDATE = re.compile(rf"^update @({AFFINITY_PREFIX}-{_NAME}) \{{ ip6? saddr \}}$")
_EP_DNAT = re.compile(rf"^meta l4proto ({_PROTO}) dnat (?:ip6? )?to (?:({_IP})|\[({_IP})\]):(\d+)$")

# Map elements.
_ELEM3 = re.compile(rf'^({_IP}) \. ({_PROTO}) \. (\d+)(?: comment "((?:[^"\\]|\\.)*)")? : (goto {_NAME}|drop|accept|reject)$')
_ELEM2 = re.compile(rf'^({_PROTO}) \. (\d+)(?: comment "((?:[^"\\]|\\.)*)")? : (goto {_NAME}|drop|accept|reject)$')
_ELEM_IP = re.compile(rf"^({_IP})$")

_CHAIN_NAME = re.compile(
    rf"^({SERVICE_PREFIX}|{LOCAL_PREFIX}|{EXTERNAL_PREFIX}|{FIREWALL_PREFIX}|{ENDPOINT_PREFIX}|{AFFINITY_PREFIX})"
    r"-([A-Z2-7]{8})-(.+)$"
)
_BASE = re.compile(r"^([a-z0-9-]+)/([a-z0-9-]+)/(tcp|udp|sctp)/([a-z0-9-]*)$")
_ENDPOINT_BASE = re.compile(r"^([a-z0-9-]+/[a-z0-9-]+/(?:tcp|udp|sctp)/[a-z0-9-]*)__([0-9a-fA-F.]+)/(\d+)$")
_SPN_COMMENT = re.compile(r"^([a-z0-9-]+)/([a-z0-9-]+)(?::([a-z0-9-]+))?$")


@dataclasses.dataclass
class _Chain:
    name: str
    lineno: int
    family: str
    rules: list[tuple[int, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Table:
    family: str
    chains: dict[str, _Chain] = dataclasses.field(default_factory=dict)
    elements: dict[str, list[tuple[int, str]]] = dataclasses.field(default_factory=dict)
    set_timeouts: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # name -> (lineno, s)


class _Bad:
    """BadLines that records each line at most once."""

    def __init__(self, name: str, on_bad_line: str) -> None:
        self.lines = BadLines(name, on_bad_line)
        self.seen: set[int] = set()

    def __call__(self, lineno: int, expected: str, line: str) -> None:
        if lineno in self.seen:
            return
        self.lines.bad(lineno, expected, line)
        self.seen.add(lineno)


def _braces(line: str) -> int:
    text = _QUOTED.sub('""', line) if '"' in line else line
    return text.count("{") - text.count("}")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes and braces."""
    if '"' not in text and "{" not in text:
        return [p for p in (part.strip() for part in text.split(sep)) if p]
    parts, depth, quoted, cur = [], 0, False, []
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "{":
            depth += 1
        elif not quoted and ch == "}":
            depth -= 1
        if ch == sep and not quoted and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _parse_timeout(text: str) -> int | None:
    """``"3h"``, ``"1h30m"``, ``"10800s"`` -> seconds; None when it is not a time."""
    parts = re.findall(r"(\d+)(ms|d|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return int(round(sum(int(n) * _TIME_UNITS_SECONDS[u] for n, u in parts)))


def _split_chain_name(name: str) -> tuple[str, str, str] | None:
    """``(prefix, hash, base)`` of a kube-proxy per-service chain name, or None."""
    m = _CHAIN_NAME.match(name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _hash_ok(name: str) -> bool:
    parts = _split_chain_name(name)
    if parts is None:
        return False
    prefix, _, base = parts
    if base.endswith("..."):  # kube-proxy truncates names over 240 characters
        return True
    if prefix in (ENDPOINT_PREFIX, AFFINITY_PREFIX):
        if not _ENDPOINT_BASE.match(base):
            return False
    elif not _BASE.match(base):
        return False
    return nftables_chain_name(prefix, base) == name


class _Reader:
    def __init__(self, name: str, text: str, bad: _Bad) -> None:
        self.name = name
        self.lines = text.splitlines()
        self.bad = bad
        self.tables: dict[str, _Table] = {}  # family -> kube-proxy table

    # -- line pass ---------------------------------------------------------------------

    def run(self) -> None:
        stack: list[tuple[str, int, str]] = []  # (kind, lineno, header) of open blocks
        table: _Table | None = None  # the kube-proxy table being read (None: ignored table)
        container: str | None = None  # set/map/chain name inside the kube-proxy table
        container_kind = ""
        in_elements = False
        for lineno, raw in enumerate(self.lines, 1):
            line = (_HANDLE.sub("", raw) if "# handle" in raw else raw).strip()
            if not stack:
                if not line or line.startswith("#"):
                    continue
                m = _TABLE_OPEN.match(line)
                if m:
                    stack.append(("table", lineno, line))
                    table = self._table(m.group(1)) if m.group(2) == KUBE_PROXY_TABLE and m.group(1) in KUBE_PROXY_FAMILIES else None
                    continue
                if _CMD.match(line):
                    self._command(lineno, line)
                    continue
                if line == "}":
                    self.bad(lineno, "a line inside a block ('}' closes nothing)", raw)
                    continue
                self.bad(lineno, "'table <family> <name> {', an nft command or a blank line", raw)
                continue

            # inside a table
            if table is None:  # a table other than kube-proxy: recognised, ignored
                delta = _braces(line)
                for _ in range(max(delta, 0)):
                    stack.append(("ignored", lineno, line))
                for _ in range(max(-delta, 0)):
                    stack.pop()
                    if not stack:
                        break
                continue

            if in_elements:
                body = line
                closes = body.endswith("}")
                if closes:
                    body = body[:-1].strip()
                if _braces(body) != 0:
                    self.bad(lineno, "map or set elements", raw)
                else:
                    self._elements(table, container, lineno, body, raw)
                if closes:
                    in_elements = False
                continue

            if line == "}":
                stack.pop()
                if container is not None:
                    container = None
                else:
                    table = None
                continue

            if container is None:  # directly inside table ip kube-proxy
                if not line or _TABLE_PROPERTY.match(line):
                    continue
                m = _BLOCK_OPEN.match(line)
                if m:
                    stack.append((m.group(1), lineno, line))
                    container_kind, container = m.group(1), m.group(2)
                    if container_kind == "chain":
                        table.chains.setdefault(container, _Chain(container, lineno, table.family))
                    continue
                self.bad(lineno, "'chain|set|map <name> {' or '}' inside table kube-proxy", raw)
                continue

            # inside a chain/set/map of table kube-proxy
            if container_kind in ("set", "map"):
                m = _ELEMENTS_OPEN.match(line)
                if m:
                    body = m.group(1).strip()
                    closes = body.endswith("}")
                    if closes:
                        body = body[:-1].strip()
                    if _braces(body) != 0:
                        self.bad(lineno, "'elements = { ... }'", raw)
                    else:
                        self._elements(table, container, lineno, body, raw)
                    in_elements = not closes
                    continue
                if not line or _SET_PROPERTY.match(line):
                    if line.startswith("timeout "):
                        seconds = _parse_timeout(line.split(None, 1)[1].strip())
                        if seconds is None:
                            self.bad(lineno, "'timeout <time>' (e.g. 3h, 10m, 10800s)", raw)
                        else:
                            table.set_timeouts[container] = (lineno, seconds)
                    continue
                self.bad(lineno, f"a property or the elements of {container_kind} {container}", raw)
                continue
            if container_kind == "chain":
                if not line or _CHAIN_PROPERTY.match(line):
                    continue
                if _braces(line) != 0:
                    self.bad(lineno, "a rule with balanced braces", raw)
                    continue
                table.chains[container].rules.append((lineno, line))
                continue
            # other objects (counter, quota, flowtable ...): properties, ignored
            if _braces(line) != 0:
                self.bad(lineno, f"a property of {container_kind} {container}", raw)

        if stack:
            _, opened, header = stack[-1]
            last = len(self.lines)
            self.bad(last, f"'}}' closing {header!r} opened at line {opened}", self.lines[-1] if self.lines else "")

    def _table(self, family: str) -> _Table:
        return self.tables.setdefault(family, _Table(family))

    def _elements(self, table: _Table, container: str | None, lineno: int, body: str, raw: str) -> None:
        if container is None:
            return
        if container.startswith(f"{AFFINITY_PREFIX}-"):
            return  # client addresses currently pinned: state, not configuration
        for element in _split_top(body):
            table.elements.setdefault(container, []).append((lineno, element))

    def _command(self, lineno: int, line: str) -> None:
        m = _CMD.match(line)
        verb, obj, family, tname, rest = m.groups()
        raw = self.lines[lineno - 1]
        if tname != KUBE_PROXY_TABLE or family not in KUBE_PROXY_FAMILIES:
            return  # another table: recognised, ignored
        if _braces(line) != 0:
            self.bad(lineno, "an nft command with balanced braces", raw)
            return
        if obj == "table":
            if verb in ("delete", "destroy", "flush"):
                self.tables.pop(family, None)
            else:
                self._table(family)
            return
        table = self._table(family)
        n = _CMD_NAMED.match(rest)
        if not n:
            self.bad(lineno, f"'{verb} {obj} {family} {tname} <name> ...'", raw)
            return
        name, tail = n.group(1), (n.group(2) or "").strip()
        if obj == "chain":
            if verb in ("delete", "destroy"):
                table.chains.pop(name, None)
            elif verb == "flush":
                if name in table.chains:
                    table.chains[name].rules.clear()
            else:
                table.chains.setdefault(name, _Chain(name, lineno, family))
            return
        if obj == "rule":
            if verb in ("delete", "destroy"):
                self.bad(lineno, "a rule command other than delete (handles are not tracked)", raw)
                return
            if name not in table.chains:
                self.bad(lineno, f"a rule in a chain added before (no chain {name!r})", raw)
                return
            if not tail:
                self.bad(lineno, "a rule after the chain name", raw)
                return
            if verb == "insert":
                table.chains[name].rules.insert(0, (lineno, tail))
            else:
                table.chains[name].rules.append((lineno, tail))
            return
        if obj in ("set", "map"):
            if verb in ("delete", "destroy"):
                table.elements.pop(name, None)
                table.set_timeouts.pop(name, None)
            elif verb == "flush":
                table.elements.pop(name, None)
            else:
                m = re.search(r"(?:^|[{;]\s*)timeout\s+(\S+?)\s*;", tail)
                if m:
                    seconds = _parse_timeout(m.group(1))
                    if seconds is None:
                        self.bad(lineno, "'timeout <time>' (e.g. 3h, 10m, 10800s)", raw)
                        return
                    table.set_timeouts[name] = (lineno, seconds)
            return
        if obj == "element":
            if not (tail.startswith("{") and tail.endswith("}")):
                self.bad(lineno, "'add element ... <name> { <elements> }'", raw)
                return
            if verb in ("delete", "destroy"):
                self.bad(lineno, "an element command other than delete", raw)
                return
            self._elements(table, name, lineno, tail[1:-1].strip(), raw)
            return

    # -- semantic pass -----------------------------------------------------------------

    def frames(self) -> tuple[list[dict], list[dict]]:
        services: dict[tuple[str, str], dict] = {}
        endpoints: list[dict] = []
        for family, table in self.tables.items():
            self._table_frames(table, services, endpoints)
        rows = sorted(services.values(), key=lambda r: (r["namespace"], r["service"], r["port_name"], r["protocol"], r["_family"]))
        for r in rows:
            del r["_family"]
        endpoints.sort(key=lambda r: (r["namespace"], r["service"], r["port_name"], r["protocol"], r["local"], r["position"]))
        return rows, endpoints

    def _service(self, services: dict, family: str, base: str) -> dict:
        key = (family, base)
        if key not in services:
            ns, svc, proto, port_name = _BASE.match(base).groups()
            services[key] = {
                "_family": family,
                "proxy_mode": PROXY_MODE,
                "namespace": ns,
                "service": svc,
                "port_name": port_name,
                "service_port_name": service_port_name(ns, svc, port_name),
                "protocol": proto,
                "cluster_ip": None,
                "port": None,
                "node_port": None,
                "_external_ips": [],
                "_lb_ips": [],
                "external_traffic_policy": None,
                "internal_traffic_policy": None,
                "session_affinity": None,
                "session_affinity_timeout_seconds": None,
                "scheduler": None,
                "endpoint_count": 0,
                "local_endpoint_count": None,
                "has_endpoints": True,
                "svc_chain": None,
                "svl_chain": None,
                "ext_chain": None,
                "fw_chain": None,
            }
        return services[key]

    def _line(self, lineno: int) -> str:
        return self.lines[lineno - 1]

    def _chain_target(self, table: _Table, lineno: int, verdict: str, prefixes: tuple[str, ...]) -> tuple[str, str, str] | None:
        """``(prefix, base, chain)`` of a ``goto <chain>`` verdict to a defined per-service chain."""
        chain = verdict.split(None, 1)[1]
        parts = _split_chain_name(chain)
        if parts is None or parts[0] not in prefixes or not _BASE.match(parts[2]):
            self.bad(lineno, f"a goto to a {'/'.join(prefixes)}-HASH-ns/svc/proto/port chain", self._line(lineno))
            return None
        if chain not in table.chains:
            self.bad(lineno, f"a goto to a chain defined in the table (no chain {chain!r})", self._line(lineno))
            return None
        return parts[0], parts[2], chain

    def _table_frames(self, table: _Table, services: dict, endpoints: list[dict]) -> None:
        fam = table.family
        good_chains: dict[str, _Chain] = {}
        for name, chain in table.chains.items():
            if "/" not in name:
                continue  # top-level chains (services, filter-input, ...): recognised, not needed
            if not _hash_ok(name):
                self.bad(chain.lineno, "a kube-proxy chain name PREFIX-HASH-ns/svc/proto/port whose hash matches", self._line(chain.lineno))
                continue
            good_chains[name] = chain
        table.chains = {**{k: v for k, v in table.chains.items() if "/" not in k}, **good_chains}

        cluster_ips = {e for _, e in table.elements.get(CLUSTER_IPS, [])}
        for lineno, e in table.elements.get(CLUSTER_IPS, []):
            if not _ELEM_IP.match(e):
                self.bad(lineno, "an address in set cluster-ips", self._line(lineno))

        # service-ips: ClusterIP -> service-/local-, external and LB IPs -> external-
        for lineno, e in table.elements.get(SERVICE_IPS, []):
            m = _ELEM3.match(e)
            if not m or not m.group(5).startswith("goto "):
                self.bad(lineno, "'<ip> . <proto> . <port> : goto <chain>' in map service-ips", self._line(lineno))
                continue
            ip, proto, port, _, verdict = m.groups()
            target = self._chain_target(table, lineno, verdict, (SERVICE_PREFIX, LOCAL_PREFIX, EXTERNAL_PREFIX))
            if target is None:
                continue
            prefix, base, chain = target
            if base.split("/")[2] != proto:
                self.bad(lineno, f"the protocol of chain {chain!r}", self._line(lineno))
                continue
            row = self._service(services, fam, base)
            if prefix == EXTERNAL_PREFIX:
                row["_external_ips"].append(ip)
                row["port"] = row["port"] if row["port"] is not None else int(port)
            else:
                row["cluster_ip"], row["port"] = ip, int(port)
                row["internal_traffic_policy"] = "Local" if prefix == LOCAL_PREFIX else "Cluster"

        for lineno, e in table.elements.get(SERVICE_NODEPORTS, []):
            m = _ELEM2.match(e)
            if not m or not m.group(4).startswith("goto "):
                self.bad(lineno, "'<proto> . <port> : goto external-...' in map service-nodeports", self._line(lineno))
                continue
            proto, node_port, _, verdict = m.groups()
            target = self._chain_target(table, lineno, verdict, (EXTERNAL_PREFIX,))
            if target is None:
                continue
            if target[1].split("/")[2] != proto:
                self.bad(lineno, f"the protocol of chain {target[2]!r}", self._line(lineno))
                continue
            self._service(services, fam, target[1])["node_port"] = int(node_port)

        for lineno, e in table.elements.get(FIREWALL_IPS, []):
            m = _ELEM3.match(e)
            if not m or not m.group(5).startswith("goto "):
                self.bad(lineno, "'<ip> . <proto> . <port> : goto firewall-...' in map firewall-ips", self._line(lineno))
                continue
            target = self._chain_target(table, lineno, m.group(5), (FIREWALL_PREFIX,))
            if target is not None:
                self._service(services, fam, target[1])["_lb_ips"].append(m.group(1))

        # no-endpoint maps: reject (no endpoints at all) or drop (no local endpoints)
        for map_name, pattern, n_key in ((NO_ENDPOINT_SERVICES, _ELEM3, 3), (NO_ENDPOINT_NODEPORTS, _ELEM2, 2)):
            for lineno, e in table.elements.get(map_name, []):
                m = pattern.match(e)
                what = "<ip> . <proto> . <port>" if n_key == 3 else "<proto> . <port>"
                if not m:
                    self.bad(lineno, f"'{what} comment \"ns/svc:port\" : <verdict>' in map {map_name}", self._line(lineno))
                    continue
                groups = m.groups()
                comment, verdict = groups[-2], groups[-1]
                c = _SPN_COMMENT.match(comment or "")
                if c is None or verdict not in ("drop", f"goto {REJECT_CHAIN}"):
                    self.bad(lineno, f"a 'ns/svc:port' comment and drop or goto {REJECT_CHAIN} in map {map_name}", self._line(lineno))
                    continue
                proto = groups[1] if n_key == 3 else groups[0]
                base = f"{c.group(1)}/{c.group(2)}/{proto}/{c.group(3) or ''}"
                row = self._service(services, fam, base)
                if verdict != "drop":
                    row["has_endpoints"] = False
                if n_key == 2:
                    row["node_port"] = int(groups[1])
                    if verdict == "drop":
                        row["external_traffic_policy"] = "Local"
                    continue
                ip, port = groups[0], int(groups[2])
                if ip in cluster_ips:
                    row["cluster_ip"], row["port"] = ip, port
                    if verdict == "drop":
                        row["internal_traffic_policy"] = "Local"
                else:
                    row["_external_ips"].append(ip)
                    row["port"] = row["port"] if row["port"] is not None else port
                    if verdict == "drop":
                        row["external_traffic_policy"] = "Local"

        # endpoint chains: DNAT target, affinity update, counters
        ep_info: dict[str, dict] = {}
        for name, chain in table.chains.items():
            parts = _split_chain_name(name)
            if parts is None:
                continue
            prefix, _, base = parts
            if prefix == ENDPOINT_PREFIX:
                ep_info[name] = self._endpoint_chain(chain)
            elif prefix in (SERVICE_PREFIX, LOCAL_PREFIX):
                row = self._service(services, fam, base)
                row["svc_chain" if prefix == SERVICE_PREFIX else "svl_chain"] = name
            elif prefix == EXTERNAL_PREFIX:
                row = self._service(services, fam, base)
                row["ext_chain"] = name
                self._external_chain(chain, row)
            elif prefix == FIREWALL_PREFIX:
                self._service(services, fam, base)["fw_chain"] = name
                for lineno, rule in chain.rules:
                    if not _FW_DROP.match(self._strip(rule)[0]):
                        self.bad(lineno, "'ip saddr != { <ranges> } drop' in a firewall chain", self._line(lineno))

        # load-balancing chains: affinity checks and the numgen vmap
        for name, chain in table.chains.items():
            parts = _split_chain_name(name)
            if parts is None or parts[0] not in (SERVICE_PREFIX, LOCAL_PREFIX):
                continue
            row = self._service(services, fam, parts[2])
            local = parts[0] == LOCAL_PREFIX
            affinity_sets: list[str] = []
            picks: list[tuple[int, str]] | None = None
            for lineno, rule in chain.rules:
                text, _, _ = self._strip(rule)
                m = _MASQ_SERVICE.match(text)
                if m:
                    if row["cluster_ip"] is None:
                        row["cluster_ip"] = m.group(1)
                    continue
                m = _AFFINITY_CHECK.match(text)
                if m:
                    if m.group(2) not in ep_info:
                        self.bad(lineno, f"a goto to an endpoint chain defined in the table (no chain {m.group(2)!r})", self._line(lineno))
                        continue
                    affinity_sets.append(m.group(1))
                    continue
                m = _NUMGEN.match(text)
                if m:
                    picks = self._numgen(lineno, int(m.group(1)), m.group(2), ep_info)
                    continue
                self.bad(lineno, f"a kube-proxy rule of a {parts[0]} chain (masquerade, affinity or numgen vmap)", self._line(lineno))
            if local:
                row["local_endpoint_count"] = len(picks or [])
            else:
                row["endpoint_count"] = len(picks or [])
            if picks:
                timeouts = [table.set_timeouts[s][1] for s in affinity_sets if s in table.set_timeouts]
                if affinity_sets:
                    row["session_affinity"] = "ClientIP"
                    if timeouts:
                        row["session_affinity_timeout_seconds"] = timeouts[0]
                elif row["session_affinity"] is None:
                    row["session_affinity"] = "None"
                n = len(picks)
                for position, ep_chain in picks:
                    info = ep_info[ep_chain]
                    endpoints.append({
                        "proxy_mode": PROXY_MODE,
                        "namespace": row["namespace"],
                        "service": row["service"],
                        "port_name": row["port_name"],
                        "service_port_name": row["service_port_name"],
                        "protocol": row["protocol"],
                        "endpoint_ip": info["ip"],
                        "endpoint_port": info["port"],
                        "chain": name,
                        "local": local,
                        "position": position,
                        "rule_probability": 1.0 / n,
                        "probability": 1.0 / n,
                        "endpoint_chain": ep_chain,
                        "weight": None,
                        "active_connections": None,
                        "inactive_connections": None,
                        "packets": info["packets"],
                        "bytes": info["bytes"],
                    })

        for (family, _), row in services.items():
            if family != fam:
                continue
            lbs = set(row["_lb_ips"])
            row["external_ips"] = ",".join(ip for ip in dict.fromkeys(row["_external_ips"]) if ip not in lbs)
            row["load_balancer_ips"] = ",".join(dict.fromkeys(row["_lb_ips"]))

    @staticmethod
    def _strip(rule: str) -> tuple[str, int | None, int | None]:
        """Rule text without its comment and counter; the counter's packets and bytes."""
        text = _COMMENT.sub("", rule)
        packets = nbytes = None
        m = _COUNTER.search(text)
        if m:
            packets, nbytes = int(m.group(1)), int(m.group(2))
            text = (text[: m.start()] + text[m.end():]).strip()
        else:
            text = _COUNTER_BARE.sub("", text).strip()
        return re.sub(r"\s+", " ", text), packets, nbytes

    def _endpoint_chain(self, chain: _Chain) -> dict:
        _, _, base = _split_chain_name(chain.name)
        m = _ENDPOINT_BASE.match(base)
        info = {"ip": None, "port": None, "packets": None, "bytes": None, "name_ip": None, "name_port": None}
        if m:  # the readable part holds ip/port (IPv6 with '.' for ':')
            info["name_ip"], info["name_port"] = m.group(2), int(m.group(3))
        for lineno, rule in chain.rules:
            text, packets, nbytes = self._strip(rule)
            if _EP_HAIRPIN.match(text) or _EP_UPDATE.match(text):
                continue
            d = _EP_DNAT.match(text)
            if d:
                info["ip"] = d.group(2) or d.group(3)
                info["port"] = int(d.group(4))
                info["packets"], info["bytes"] = packets, nbytes
                continue
            self.bad(lineno, "a kube-proxy endpoint rule (hairpin masquerade, affinity update or dnat)", self._line(lineno))
        if info["ip"] is None and info["name_ip"] is not None and ":" not in info["name_ip"] and info["name_ip"].count(".") == 3:
            info["ip"], info["port"] = info["name_ip"], info["name_port"]
        return info

    def _external_chain(self, chain: _Chain, row: dict) -> None:
        local = cluster = False
        for lineno, rule in chain.rules:
            text, _, _ = self._strip(rule)
            if _EXT_MASQ.match(text) or _EXT_POD.match(text):
                continue
            if _EXT_FIB_MASQ.match(text) or _EXT_FIB_GOTO.match(text):
                local = True
                continue
            m = _EXT_GOTO.match(text)
            if m:
                if m.group(1).startswith(f"{LOCAL_PREFIX}-"):
                    local = True
                else:
                    cluster = True
                continue
            self.bad(lineno, "a kube-proxy external-chain rule (masquerade, short-circuit or goto)", self._line(lineno))
        if local:
            row["external_traffic_policy"] = "Local"
        elif cluster and row["external_traffic_policy"] is None:
            row["external_traffic_policy"] = "Cluster"

    def _numgen(self, lineno: int, n: int, body: str, ep_info: dict) -> list[tuple[int, str]] | None:
        entries = []
        for entry in _split_top(body):
            m = _VMAP_ENTRY.match(entry)
            if not m:
                self.bad(lineno, "'<index> : goto endpoint-...' entries in the numgen vmap", self._line(lineno))
                return None
            entries.append((int(m.group(1)), m.group(2)))
        entries.sort()
        if n < 1 or [i for i, _ in entries] != list(range(n)):
            self.bad(lineno, f"a numgen vmap with indices 0..{n - 1} for 'mod {n}'", self._line(lineno))
            return None
        for _, chain in entries:
            if chain not in ep_info:
                self.bad(lineno, f"a goto to an endpoint chain defined in the table (no chain {chain!r})", self._line(lineno))
                return None
            if ep_info[chain]["ip"] is None:
                self.bad(lineno, f"endpoint chain {chain!r} with a dnat rule", self._line(lineno))
                return None
        return entries


def read_nft_ruleset(source: Source, *, on_bad_line: str = "raise") -> ProxyRules:
    """Read kube-proxy's nftables rules from ``nft list ruleset`` output.

    Parameters
    ----------
    source : path, file object, str or bytes
        ``nft list ruleset``, ``nft list table ip kube-proxy`` (with or without
        ``-a`` handles), or ``nft -f`` input in kube-proxy's ``add ...`` command
        form (as :func:`npanalytics.lab.render_nftables.render_nftables`
        writes it). ``.gz`` is recognised.
    on_bad_line : {"raise", "warn", "skip"}, default "raise"
        What to do with a line that cannot be read: raise
        :class:`~npanalytics.ParseError`, or skip it (counted in the report;
        ``"warn"`` also emits one :class:`~npanalytics.exceptions.ParseWarning`).

    Returns
    -------
    ProxyRules
        ``services`` (kind ``proxy_services``) and ``endpoints`` (kind
        ``proxy_endpoints``), with ``proxy_mode="nftables"``, and the
        :class:`ParseReport` (format ``"nft list ruleset"``).

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected <what>, got <line>"`` under ``"raise"``,
        for a line that is not nft syntax, a rule of a Service or endpoint chain
        kube-proxy does not write, a chain name whose hash does not match its
        readable part, a numgen vmap whose indices are not ``0..N-1``, a
        ``goto`` to a chain the dump does not define, or unbalanced braces (at
        the stray ``}`` or at the last line).

    Notes
    -----
    - Services are named from the readable part of the chain names
      (``service-HASH-ns/svc/proto/port``) and from the ``ns/svc:port``
      comments of the no-endpoint maps. Only kube-proxy's ``ip``/``ip6
      kube-proxy`` tables are read; other tables (an iptables-nft ``table ip
      nat``, ...) are recognised and ignored: their lines count as parsed.
    - Each endpoint of a ``numgen random mod N`` vmap gets ``position`` = its
      index and ``rule_probability`` = ``probability`` = 1/N.
    - ``packets``/``bytes`` come from a ``counter`` on the endpoint chain's
      ``dnat`` rule (a NAT chain sees only the first packet of a connection,
      so ``packets`` counts new connections); kube-proxy writes no counters,
      so they are usually NA. That counter sits behind both ways into the
      endpoint chain, the affinity check (``ip saddr @affinity-... goto
      endpoint-...``) and the ``numgen`` vmap, so under ClientIP affinity
      ``packets`` already counts returning clients. ``affinity_packets`` and
      ``affinity_bytes`` are therefore always NA here: kube-proxy and the lab
      (:func:`~npanalytics.lab.render_nftables.render_nftables`) put no counter
      on the affinity checks, and a counter found there is read past (adding
      it would count those connections twice).
    - ``external_traffic_policy`` is Local when the external chain
      short-circuits local traffic or goes to a ``local-`` chain, or a
      no-endpoint map drops the NodePort/external IP; Cluster when it goes to
      the ``service-`` chain; NA without an external chain.
      ``internal_traffic_policy`` comes from the chain the ClusterIP goes to.
    - ``load_balancer_ips`` lists only the LB IPs of ``firewall-ips`` (those
      with source ranges); other LB IPs cannot be told from ExternalIPs and
      are listed in ``external_ips``.
    - ``session_affinity`` is ClientIP when the service chain checks affinity
      sets (timeout from the set); NA when the Service port has no
      load-balancing chain (no endpoints).
    - ``scheduler``, ``weight`` and the IPVS connection counts are NA.

    """
    name, text = read_source_text(source)
    bad = _Bad(name, on_bad_line)
    reader = _Reader(name, text, bad)
    reader.run()
    services, endpoints = reader.frames()
    for row in services:
        row.pop("_external_ips")
        row.pop("_lb_ips")
    report = bad.lines.report(FORMAT, count_lines(text))
    svc_df = validate_frame(frame_from_records(services, "proxy_services"), "proxy_services")
    ep_df = validate_frame(
        frame_from_records(endpoints, "proxy_endpoints", optional=("affinity_packets", "affinity_bytes")),
        "proxy_endpoints",
    )
    return ProxyRules(services=svc_df, endpoints=ep_df, report=report)


read_nft_ruleset.__doc__ += (
    "\n    Frames\n    ------\n"
    + "\n".join("    " + line for line in schema_table("proxy_services").splitlines())
    + "\n\n"
    + "\n".join("    " + line for line in schema_table("proxy_endpoints").splitlines())
    + "\n"
)
