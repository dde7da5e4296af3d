"""Render a node's kube-proxy nftables table (the 1.31-1.33 form) from the cluster model.

:func:`render_nftables` writes the ``nft -f`` input that kube-proxy's nftables
proxier would load on one node for a list of :class:`~npanalytics.lab.model.ServicePort`:
``table ip kube-proxy`` with its base chains, the dispatch sets and verdict maps,
one ``service-``/``local-``/``external-`` chain per Service port, one ``endpoint-``
chain per endpoint, the ``numgen random mod N`` verdict maps that pick an endpoint,
the ClientIP affinity sets, and the masquerade chains (mark ``0x4000``,
``masquerade fully-random``). The rule text follows kube-proxy's proxier at the
1.31-1.33 versions (../shared/KUBE_FACTS.md §2.2-2.4): filter chains at
priority -110 (``dstnat - 10``) plus ``filter-output-post-dnat`` at -90.

Pure text: nothing here touches the kernel. The lab loads the text with
``ip netns exec npa-... nft -f FILE`` inside a namespace it created.

The text starts with ``add table`` + ``delete table`` so that loading it again
replaces the whole table atomically (``nft -f`` applies a file as one
transaction); kube-proxy itself flushes and rewrites its chains instead, which
ends in the same table.

Large tables load faster in several transactions. kube-proxy writes one
``numgen random mod N vmap { ... }`` rule, i.e. one anonymous map, per Service
port. On kernel 6.18 binding each new anonymous map to its rule walks the
whole pending transaction (``__nft_set_trans_bind``), so one ``nft -f`` of
the whole table takes a time quadratic in its size: 77 s for 10k Service
ports, against 17 s when the same commands are sent as 20 transactions. With
``transaction_size`` the text is cut, between Service ports, into
transactions separated by :data:`TRANSACTION_MARK` lines;
:func:`split_transactions` gives the parts to load one after the other with
``nft -f``. The table in the kernel is the same (the same ``nft list
ruleset``); only the loading is no longer atomic. (What remains quadratic is
in the kernel too: creating an anonymous map scans every set of the table.)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Sequence

from ..collectors._proxy import nftables_chain_name
from .model import MASQUERADE_MARK, Endpoint, ServicePort

__all__ = ["render_nftables", "split_transactions", "count_rules", "TABLE_FAMILY", "TABLE_NAME",
           "TRANSACTION_MARK"]

TABLE_FAMILY = "ip"
TABLE_NAME = "kube-proxy"
#: The comment line that ends one transaction of a text rendered with ``transaction_size``
#: (nft itself reads it as a comment).
TRANSACTION_MARK = "# npanalytics: end of transaction"


@dataclasses.dataclass(frozen=True)
class _Family:
    """What differs between ``table ip kube-proxy`` and ``table ip6 kube-proxy``."""

    nft: str  # table family and address matcher: "ip" or "ip6"
    version: int
    addr_type: str
    no_localhost: str

    @property
    def table(self) -> str:
        return f"{self.nft} {TABLE_NAME}"


_FAMILIES = {
    "ip": _Family("ip", 4, "ipv4_addr", "ip daddr != 127.0.0.0/8"),
    "ip6": _Family("ip6", 6, "ipv6_addr", "ip6 daddr != ::1"),
}

# (name, type, hook, priority): kube-proxy 1.31-1.33 (before PR #132456).
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

# (regular chain, base chain it is jumped to from, match before the jump)
JUMP_CHAINS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting", "ct state new"),
    ("firewall-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
)

_ADDR3 = "ADDR . inet_proto . inet_service : verdict"
_ADDR2 = "inet_proto . inet_service : verdict"
# (kind, name, type, comment)
SETS_AND_MAPS = (
    ("set", "cluster-ips", "ADDR", "Active ClusterIPs"),
    ("set", "nodeport-ips", "ADDR", "IPs that accept NodePort traffic"),
    ("map", "no-endpoint-services", _ADDR3, "vmap to drop or reject packets to services with no endpoints"),
    ("map", "no-endpoint-nodeports", _ADDR2, "vmap to drop or reject packets to service nodeports with no endpoints"),
    ("map", "firewall-ips", _ADDR3, "destinations that are subject to LoadBalancerSourceRanges"),
    ("map", "service-ips", _ADDR3, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    ("map", "service-nodeports", _ADDR2, "NodePort traffic"),
)

_PROTOCOLS = ("tcp", "udp", "sctp")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _service_base(sp: ServicePort) -> str:
    return f"{sp.namespace}/{sp.service}/{sp.protocol}/{sp.port_name}"


def _endpoint_base(sp: ServicePort, ep: Endpoint) -> str:
    return f"{_service_base(sp)}__{ep.ip.replace(':', '.')}/{ep.port}"


def _check_service_port(sp: ServicePort, fam: _Family) -> None:
    where = f"ServicePort {sp.service_port_name!r}"
    if sp.protocol not in _PROTOCOLS:
        raise ValueError(f"{where}: protocol must be one of {_PROTOCOLS}, got {sp.protocol!r}")
    for field in ("namespace", "service"):
        value = getattr(sp, field)
        if not _NAME_RE.match(value):
            raise ValueError(f"{where}: {field} must be a DNS label ([a-z0-9-]), got {value!r}")
    if sp.port_name and not _NAME_RE.match(sp.port_name):
        raise ValueError(f"{where}: port_name must be '' or a DNS label, got {sp.port_name!r}")
    addresses = [("cluster_ip", sp.cluster_ip), *(("external_ips", ip) for ip in sp.external_ips)]
    addresses += [("endpoint ip", ep.ip) for ep in sp.endpoints]
    for field, value in addresses:
        try:
            ok = ipaddress.ip_address(value).version == fam.version
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{where}: {field} must be an IPv{fam.version} address (table {fam.nft}), got {value!r}")
    ports = [("port", sp.port), *(("endpoint port", ep.port) for ep in sp.endpoints)]
    if sp.node_port is not None:
        ports.append(("node_port", sp.node_port))
    for field, value in ports:
        if not 1 <= int(value) <= 65535:
            raise ValueError(f"{where}: {field} must be 1..65535, got {value!r}")
    if sp.session_affinity == "ClientIP" and not 1 <= sp.affinity_timeout_seconds <= 86400:
        raise ValueError(
            f"{where}: affinity_timeout_seconds must be 1..86400, got {sp.affinity_timeout_seconds!r}"
        )


class _Tx:
    """The four sections of the file; chains, sets and maps must exist before use."""

    def __init__(self, fam: _Family) -> None:
        self.fam = fam
        self.sets: list[str] = []
        self.chains: list[str] = []
        self.rules: list[str] = []
        self.elements: list[str] = []

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.append(f"add chain {self.fam.table} {name}" + (f" {{ {spec} ; }}" if spec else ""))

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        text = f"add rule {self.fam.table} {chain} {rule}"
        if comment is not None:
            text += f' comment "{comment}"'
        self.rules.append(text)

    def element(self, container: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        body = key
        if comment is not None:
            body += f' comment "{comment}"'
        if value is not None:
            body += f" : {value}"
        self.elements.append(f"add element {self.fam.table} {container} {{ {body} }}")


def _lb_rules(tx: _Tx, sp: ServicePort, chain: str, endpoints: list[Endpoint]) -> None:
    """Affinity checks then the numgen vmap (kube-proxy's writeServiceToEndpointRules)."""
    if sp.session_affinity == "ClientIP":
        for ep in endpoints:
            base = _endpoint_base(sp, ep)
            tx.rule(
                chain,
                f"{tx.fam.nft} saddr @{nftables_chain_name('affinity', base)} "
                f"goto {nftables_chain_name('endpoint', base)}",
            )
    targets = " , ".join(
        f"{i} : goto {nftables_chain_name('endpoint', _endpoint_base(sp, ep))}"
        for i, ep in enumerate(endpoints)
    )
    tx.rule(chain, f"numgen random mod {len(endpoints)} vmap {{ {targets} }}")


def _render_service_port(
    tx: _Tx, sp: ServicePort, node: str, cluster_cidr: str | None, counters: bool
) -> None:
    proto = sp.protocol
    ipx = tx.fam.nft
    base = _service_base(sp)
    name = sp.service_port_name
    svc_chain = nftables_chain_name("service", base)
    local_chain = nftables_chain_name("local", base)
    ext_chain = nftables_chain_name("external", base)

    externally_accessible = sp.node_port is not None or bool(sp.external_ips)
    external_local = externally_accessible and sp.external_traffic_policy == "Local"
    internal_local = sp.internal_traffic_policy == "Local"
    uses_cluster = not internal_local or externally_accessible
    uses_local = internal_local or external_local

    cluster_eps = sp.usable_endpoints() if uses_cluster else []
    local_eps = sp.usable_endpoints(node) if uses_local else []
    has_endpoints = bool(sp.usable_endpoints())
    reachable = {ep.address: ep for ep in [*cluster_eps, *local_eps]}
    reachable_eps = [reachable[a] for a in sorted(reachable)]

    uses_cluster_chain = bool(cluster_eps)
    uses_local_chain = bool(local_eps)
    internal_chain = local_chain if internal_local else svc_chain
    has_internal = has_endpoints and not (internal_local and not local_eps)
    has_external = has_endpoints and not (external_local and not local_eps)
    uses_ext_chain = has_endpoints and externally_accessible

    if not has_endpoints:
        internal_verdict = external_verdict = "goto reject-chain"
    else:
        internal_verdict = external_verdict = "drop"

    for ep in reachable_eps:
        tx.chain(nftables_chain_name("endpoint", _endpoint_base(sp, ep)))
    if uses_cluster_chain:
        tx.chain(svc_chain)
    if uses_local_chain:
        tx.chain(local_chain)
    if uses_ext_chain:
        tx.chain(ext_chain)

    # Elements of the dispatch maps.
    tx.element("cluster-ips", sp.cluster_ip)
    key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    if has_internal:
        tx.element("service-ips", key, f"goto {internal_chain}")
    else:
        tx.element("no-endpoint-services", key, internal_verdict, comment=name)
    for ext_ip in sp.external_ips:
        ext_key = f"{ext_ip} . {proto} . {sp.port}"
        if has_endpoints:
            tx.element("service-ips", ext_key, f"goto {ext_chain}")
        if not has_external:
            tx.element("no-endpoint-services", ext_key, external_verdict, comment=name)
    if sp.node_port is not None:
        np_key = f"{proto} . {sp.node_port}"
        if has_endpoints:
            tx.element("service-nodeports", np_key, f"goto {ext_chain}")
        if not has_external:
            tx.element("no-endpoint-nodeports", np_key, external_verdict, comment=name)

    # Internal traffic: masquerade off-cluster sources (only with a local-traffic detector).
    if has_internal and cluster_cidr is not None:
        tx.rule(
            internal_chain,
            f"{ipx} daddr {sp.cluster_ip} {proto} dport {sp.port} {ipx} saddr != {cluster_cidr} "
            "jump mark-for-masquerade",
        )

    if uses_ext_chain:
        if not external_local:
            tx.rule(ext_chain, "jump mark-for-masquerade")
        else:
            if cluster_cidr is not None:
                tx.rule(ext_chain, f"{ipx} saddr {cluster_cidr} goto {svc_chain}", "short-circuit pod traffic")
            tx.rule(ext_chain, "fib saddr type local jump mark-for-masquerade", "masquerade local traffic")
            tx.rule(ext_chain, f"fib saddr type local goto {svc_chain}", "short-circuit local traffic")
        if has_external:
            tx.rule(ext_chain, f"goto {local_chain if external_local else svc_chain}")

    if sp.session_affinity == "ClientIP":
        for ep in reachable_eps:
            tx.sets.append(
                f"add set {tx.fam.table} {nftables_chain_name('affinity', _endpoint_base(sp, ep))} "
                f"{{ type {tx.fam.addr_type} ; flags dynamic,timeout ; timeout {sp.affinity_timeout_seconds}s ; }}"
            )

    if uses_cluster_chain:
        _lb_rules(tx, sp, svc_chain, cluster_eps)
    if uses_local_chain:
        _lb_rules(tx, sp, local_chain, local_eps)

    for ep in reachable_eps:
        ep_base = _endpoint_base(sp, ep)
        chain = nftables_chain_name("endpoint", ep_base)
        tx.rule(chain, f"{ipx} saddr {ep.ip} jump mark-for-masquerade")
        if sp.session_affinity == "ClientIP":
            tx.rule(chain, f"update @{nftables_chain_name('affinity', ep_base)} {{ {ipx} saddr }}")
        count = "counter " if counters else ""
        tx.rule(chain, f"meta l4proto {proto} {count}dnat to {ep.address}")


def render_nftables(
    service_ports: Sequence[ServicePort],
    node: str,
    *,
    cluster_cidr: str | None = None,
    node_ips: Sequence[str] = (),
    service_cidr: str | None = None,
    counters: bool = False,
    family: str = TABLE_FAMILY,
    transaction_size: int | None = None,
) -> str:
    """kube-proxy's ``table ip kube-proxy`` (or ``ip6``) for one node, as ``nft -f`` input.

    Parameters
    ----------
    service_ports : sequence of ServicePort
        The Service ports to program, all of the table's address family. Their
        endpoints are filtered and sorted as kube-proxy does
        (:meth:`ServicePort.usable_endpoints`).
    node : str
        The node the table is for; endpoints whose ``node`` equals it are local
        (they fill the ``local-...`` chains used under
        ``externalTrafficPolicy``/``internalTrafficPolicy: Local``).
    cluster_cidr : str, optional
        kube-proxy's ``--cluster-cidr`` (the pod CIDR used to detect local
        traffic), e.g. ``"198.18.128.0/20"``. With it the service chains
        masquerade off-cluster sources (``ip saddr != CIDR jump
        mark-for-masquerade``) and eTP=Local external chains short-circuit pod
        traffic; without it those rules are absent, as in kube-proxy.
    node_ips : sequence of str
        Addresses that accept NodePort traffic (``--nodeport-addresses``). Empty
        means every local address: the ``nodeport-ips`` set is left out and the
        NodePort dispatch uses ``fib daddr type local ip daddr != 127.0.0.0/8``.
    service_cidr : str, optional
        Service CIDR(s), comma separated; adds the ``cluster-ips-check`` rule
        that drops traffic to unallocated ClusterIPs.
    counters : bool, default False
        Add a ``counter`` to each endpoint chain's ``dnat`` rule. kube-proxy
        writes no counters; the lab uses them to count, per endpoint, the new
        connections the ``numgen`` map sent there (a NAT chain sees only the
        first packet of a connection).
    family : {"ip", "ip6"}, default "ip"
        The table kube-proxy's IPv4 or IPv6 proxier writes (``table ip6
        kube-proxy`` uses ``ip6`` matches, ``ipv6_addr`` sets, ``[addr]:port``
        DNAT targets and ``.`` for ``:`` in endpoint chain names).
    transaction_size : int, optional
        Cut the text into transactions of at most this many Service ports each
        (the first also holds the table, its base chains, sets and maps),
        separated by :data:`TRANSACTION_MARK` lines; load the parts of
        :func:`split_transactions` one after the other. Loaded so, the table
        lists exactly as the one-transaction text does, in a time that grows far
        less with the Service count (see the module docstring). ``None`` (the
        default) writes one transaction, as kube-proxy does.

    Returns
    -------
    str
        The ``nft -f`` text, ending with a newline. Loading it twice leaves the
        same table (it deletes and recreates ``table ip kube-proxy``).

    Raises
    ------
    ValueError
        An unknown ``family``, a Service port with an address of the other family, a protocol other than tcp, udp
        or sctp, a name nft cannot carry in a chain name, an out-of-range
        port or affinity timeout, or a ``transaction_size`` below 1.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {tuple(_FAMILIES)}, got {family!r}")
    if transaction_size is not None and (
        isinstance(transaction_size, bool) or not isinstance(transaction_size, int) or transaction_size < 1
    ):
        raise ValueError(f"transaction_size must be None or an integer >= 1, got {transaction_size!r}")
    fam = _FAMILIES[family]
    network = ipaddress.IPv4Network if fam.version == 4 else ipaddress.IPv6Network
    address = ipaddress.IPv4Address if fam.version == 4 else ipaddress.IPv6Address
    for sp in service_ports:
        _check_service_port(sp, fam)
    seen: set[tuple[str, str]] = set()
    for sp in service_ports:
        key = (_service_base(sp), sp.cluster_ip)
        if key in seen:
            raise ValueError(f"ServicePort {sp.service_port_name!r}/{sp.protocol} given twice")
        seen.add(key)
    for value, what in [(cluster_cidr, "cluster_cidr"), *((c, "service_cidr") for c in (service_cidr or "").split(",") if c)]:
        if value is not None:
            try:
                network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{what} must be an IPv{fam.version} CIDR, got {value!r}") from None
    for ip in node_ips:
        try:
            address(ip)
        except ValueError:
            raise ValueError(f"node_ips must hold IPv{fam.version} addresses, got {ip!r}") from None

    match_all = not node_ips
    tx = _Tx(fam)
    ipx = fam.nft
    for kind, name, type_, comment in SETS_AND_MAPS:
        if name == "nodeport-ips" and match_all:
            continue
        type_ = type_.replace("ADDR", fam.addr_type)
        tx.sets.append(f'add {kind} {fam.table} {name} {{ type {type_} ; comment "{comment}" ; }}')

    for name, type_, hook, prio in BASE_CHAINS:
        tx.chain(name, f"type {type_} hook {hook} priority {prio}")
    for name in (
        "nodeport-endpoints-check",
        "service-endpoints-check",
        "firewall-check",
        "services",
        "masquerading",
        "cluster-ips-check",
        "mark-for-masquerade",
    ):
        tx.chain(name)
    tx.chains.append(
        f'add chain {fam.table} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}'
    )

    for dst, src, match in JUMP_CHAINS:
        tx.rule(src, f"{match} jump {dst}".strip())
    mark = f"{MASQUERADE_MARK:#x}"
    tx.rule("mark-for-masquerade", f"mark set mark or {mark}")
    tx.rule("masquerading", f"mark and {mark} == 0 return")
    tx.rule("masquerading", f"mark set mark xor {mark}")
    tx.rule("masquerading", "masquerade fully-random")
    tx.rule("cluster-ips-check", f"{ipx} daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    if service_cidr:
        tx.rule("cluster-ips-check", f"{ipx} daddr {{ {service_cidr} }} drop", "Drop traffic to unallocated ClusterIPs")
    tx.rule("reject-chain", "reject")
    tx.rule("service-endpoints-check", f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    if match_all:
        tx.rule("nodeport-endpoints-check", f"{fam.no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports")
    else:
        tx.rule("nodeport-endpoints-check", f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    tx.rule("firewall-check", f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips")
    tx.rule("services", f"{ipx} daddr . meta l4proto . th dport vmap @service-ips")
    if match_all:
        tx.rule("services", f"fib daddr type local {fam.no_localhost} meta l4proto . th dport vmap @service-nodeports")
    else:
        tx.rule("services", f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    for ip in node_ips:
        if not address(ip).is_loopback:
            tx.element("nodeport-ips", ip)

    size = max(1, len(service_ports)) if transaction_size is None else transaction_size
    batches = [service_ports[i:i + size] for i in range(0, len(service_ports), size)] or [[]]
    lines = [
        f'add table {fam.table} {{ comment "rules for kube-proxy" ; }}',
        f"delete table {fam.table}",
        f'add table {fam.table} {{ comment "rules for kube-proxy" ; }}',
    ]
    seen_elements: set[str] = set()
    for number, batch in enumerate(batches):
        if number:
            lines.append(TRANSACTION_MARK)
            tx = _Tx(fam)
        for sp in batch:
            _render_service_port(tx, sp, node, cluster_cidr, counters)
        # A cluster IP shared by several ports is one set element.
        elements = [e for e in dict.fromkeys(tx.elements) if e not in seen_elements]
        seen_elements.update(elements)
        lines += ["", *tx.sets, "", *tx.chains, "", *tx.rules, "", *elements]
    return "\n".join(lines) + "\n"


def split_transactions(text: str) -> list[str]:
    """The transactions of a text rendered with ``transaction_size``, to load in order.

    Parameters
    ----------
    text : str
        ``nft -f`` input from :func:`render_nftables`.

    Returns
    -------
    list of str
        The parts between :data:`TRANSACTION_MARK` lines (marks left out), each
        ending with a newline; one part when the text has no mark.
    """
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line == TRANSACTION_MARK:
            parts.append([])
        else:
            parts[-1].append(line)
    return ["\n".join(p) + "\n" for p in parts]


_RULE_CMD = re.compile(r"^\s*(add|insert)\s+rule\s")
_CHAIN_OPEN = re.compile(r"^\s*chain\s+\S+\s*\{\s*(#.*)?$")
_NOT_A_RULE = re.compile(r"^\s*(type\s|policy\s|comment\s|devices\s|flags\s|#|$)")


def count_rules(text: str) -> int:
    """Number of rules in nft text, in either form.

    Counts ``add rule``/``insert rule`` commands of ``nft -f`` input, plus the
    rule lines inside ``chain NAME { ... }`` blocks of ``nft list`` output (a
    chain's ``type ... hook ...;``, ``policy``, ``comment`` and blank lines are
    not rules). Verdict-map elements are not rules.

    Parameters
    ----------
    text : str
        ``nft -f`` input (as :func:`render_nftables` writes it) or ``nft list
        ruleset`` / ``nft list table`` output.

    Returns
    -------
    int
        The number of rules.
    """
    count = 0
    in_chain = False
    depth = 0
    for line in text.splitlines():
        if in_chain:
            opens, closes = line.count("{"), line.count("}")
            if depth == 1 and line.strip() == "}":
                in_chain = False
                depth = 0
                continue
            if depth == 1 and not _NOT_A_RULE.match(line):
                count += 1
            depth += opens - closes
            continue
        if _RULE_CMD.match(line):
            count += 1
        elif _CHAIN_OPEN.match(line):
            in_chain = True
            depth = 1
    return count
