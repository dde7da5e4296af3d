"""Render a node's kube-proxy rules in iptables mode, as ``iptables-restore`` input.

:func:`render_iptables` writes what the kube-proxy 1.28+ iptables proxier feeds
to ``iptables-restore`` on a full sync (see KUBE_FACTS.md §1): the ``filter``
and ``nat`` tables, chain declarations, ``KUBE-SERVICES``, ``KUBE-NODEPORTS``,
the per-Service-port ``KUBE-EXT/SVC/SVL`` chains, the per-endpoint ``KUBE-SEP``
chains, ``KUBE-MARK-MASQ``, ``KUBE-POSTROUTING`` and ``KUBE-FORWARD``, and the
filter rules that reject Services without endpoints.

Two deliberate differences from kube-proxy's own restore input, so that one
``iptables-restore`` in a fresh network namespace builds the whole data plane:

- the jump rules from the built-in chains (nat ``PREROUTING``/``OUTPUT``/
  ``POSTROUTING``, filter ``INPUT``/``FORWARD``/``OUTPUT``), which kube-proxy adds
  separately with ``iptables -I``, are included, in the order that repeated
  ``-I`` leaves them (the rule inserted last comes first);
- no ``nfacct`` rule for localhost NodePorts (the lab has no nfacct objects).

kube-proxy's ``KUBE-FIREWALL`` rule ("block incoming localnet connections",
written for IPv4 with localhost NodePorts on, the default) is rendered; the
``INPUT``/``OUTPUT`` jumps to it are kubelet's and are not. ``KUBE-PROXY-CANARY``
(created with ``iptables -N``, never in the restore input) is not rendered either.

kube-proxy iterates Services in Go map order; here Service ports are written
sorted by ``(service_port_name, protocol)`` so that the output is
deterministic. Load-balancer IPs, source ranges (``KUBE-FW``), health-check
node ports and topology hints are not modelled by
:class:`~npanalytics.lab.model.ServicePort` and are not rendered.
IPv4 only (``ip6tables`` rules are not written).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..collectors._proxy import iptables_chain_hash, iptables_endpoint_chain_hash
from .model import MASQUERADE_MARK, Endpoint, ServicePort

__all__ = ["render_iptables", "count_rules", "LARGE_CLUSTER_ENDPOINTS_THRESHOLD"]

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000
"""Above this many endpoints in total kube-proxy drops the SVC->SEP and SEP comments."""

_MARK = f"{MASQUERADE_MARK:#x}"

# (table, built-in chain, kube-proxy chain, extra match, comment), in the order
# kube-proxy runs ``iptables -I`` (each insert goes to the top of the chain).
_JUMP_CHAINS: tuple[tuple[str, str, str, str, str], ...] = (
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW",
     "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW",
     "kubernetes externally-visible service portals"),
    ("filter", "INPUT", "KUBE-NODEPORTS", "", "kubernetes health check service ports"),
    ("filter", "FORWARD", "KUBE-SERVICES", "-m conntrack --ctstate NEW", "kubernetes service portals"),
    ("filter", "OUTPUT", "KUBE-SERVICES", "-m conntrack --ctstate NEW", "kubernetes service portals"),
    ("filter", "FORWARD", "KUBE-FORWARD", "", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW",
     "kubernetes load balancer firewall"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW",
     "kubernetes load balancer firewall"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW",
     "kubernetes load balancer firewall"),
    ("nat", "OUTPUT", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "", "kubernetes postrouting rules"),
)

_FILTER_CHAINS = (
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FIREWALL",
    "KUBE-FORWARD",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
)
_NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
_BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


def _quote(comment: str) -> str:
    """kube-proxy's quoting: double quotes only around comments containing a space."""
    return f'"{comment}"' if " " in comment else comment


def _probability(n: int) -> str:
    """kube-proxy's ``%0.10f`` rendering of ``1/n``."""
    return f"{1.0 / n:.10f}"


def _jump_rules(table: str) -> list[str]:
    by_chain: dict[str, list[str]] = {}
    order: list[str] = []
    for tbl, builtin, target, extra, comment in _JUMP_CHAINS:
        if tbl != table:
            continue
        if builtin not in by_chain:
            by_chain[builtin] = []
            order.append(builtin)
        match = f"{extra} " if extra else ""
        by_chain[builtin].insert(
            0, f"-A {builtin} {match}-m comment --comment {_quote(comment)} -j {target}"
        )
    return [rule for chain in order for rule in by_chain[chain]]


def _check(sp: ServicePort) -> str:
    protocol = sp.protocol.lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(
            f"{sp.service_port_name}: protocol must be 'tcp', 'udp' or 'sctp', got {sp.protocol!r}"
        )
    for address in (sp.cluster_ip, *sp.external_ips, *(e.ip for e in sp.endpoints)):
        if ipaddress.ip_address(address).version != 4:
            raise ValueError(
                f"{sp.service_port_name}: render_iptables writes IPv4 rules only, got {address!r}"
            )
    return protocol


def render_iptables(
    service_ports: Sequence[ServicePort],
    node: str,
    *,
    cluster_cidr: str | None = None,
    comments: bool | None = None,
    masquerade_all: bool = False,
) -> str:
    """kube-proxy's iptables-restore input (tables ``filter`` and ``nat``) for one node.

    Parameters
    ----------
    service_ports : sequence of ServicePort
        The Service ports of the cluster, with all their endpoints.
    node : str
        Name of the node the rules are for; endpoints with ``Endpoint.node ==
        node`` are local (they fill the ``KUBE-SVL`` chains of Local policies).
    cluster_cidr : str, optional
        Pod CIDR of the cluster (kube-proxy's ``--cluster-cidr``), for example
        ``"198.18.64.0/18"``. When given, ClusterIP traffic from outside it is
        marked for masquerade and eTP=Local chains short-circuit pod traffic;
        when ``None`` (no local-traffic detector) those rules are not written.
    comments : bool, optional
        Write the ``ns/svc:port -> ip:port`` comments on SVC/SVL->SEP rules and
        the comments on SEP rules. ``None`` follows kube-proxy: no such comments
        when the cluster has more than 1000 endpoints in total
        (:data:`LARGE_CLUSTER_ENDPOINTS_THRESHOLD`).
    masquerade_all : bool, default False
        kube-proxy's ``--masquerade-all``: mark all ClusterIP traffic for SNAT.

    Returns
    -------
    str
        The restore input, ``*filter ... COMMIT`` then ``*nat ... COMMIT``,
        newline-terminated; probabilities have 10 decimals and comments are
        quoted only when they contain a space, as kube-proxy writes them. It
        loads with ``iptables-restore`` (legacy or nft) into empty tables; the
        jump rules from the built-in chains are included (kube-proxy adds those
        with ``iptables -I``).

    Raises
    ------
    ValueError
        For a protocol other than tcp/udp/sctp or an IPv6 address.

    Examples
    --------
    >>> from npanalytics.lab.model import Endpoint, ServicePort
    >>> sp = ServicePort("default", "web", "http", "tcp", "198.19.0.10", 80, node_port=30080,
    ...                  endpoints=(Endpoint("198.18.64.5", 8080, "node-a"),))
    >>> text = render_iptables([sp], "node-a")
    >>> count_rules(text)
    {'filter': 4, 'nat': 12}
    """
    ports = sorted(service_ports, key=lambda sp: (sp.service_port_name, sp.protocol.lower()))
    protocols = [_check(sp) for sp in ports]
    if comments is None:
        total = sum(len(sp.endpoints) for sp in ports)
        comments = total <= LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    if cluster_cidr is not None:
        cluster_cidr = str(ipaddress.ip_network(cluster_cidr, strict=False))

    filter_chains = [f":{c} - [0:0]" for c in _FILTER_CHAINS]
    filter_rules = [
        '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" '
        "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
    ]
    nat_chains = [f":{c} - [0:0]" for c in _NAT_CHAINS]
    nat_rules = [
        f"-A KUBE-POSTROUTING -m mark ! --mark {_MARK}/{_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {_MARK}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {_MARK}",
    ]

    for sp, proto in zip(ports, protocols):
        _render_service_port(
            sp, proto, node, cluster_cidr, comments, masquerade_all,
            filter_rules, nat_chains, nat_rules,
        )

    nat_rules.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    filter_rules += [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {_MARK}/{_MARK} -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    lines = [
        "*filter", *filter_chains, *_jump_rules("filter"), *filter_rules, "COMMIT",
        "*nat", *nat_chains, *_jump_rules("nat"), *nat_rules, "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def _render_service_port(
    sp: ServicePort,
    proto: str,
    node: str,
    cluster_cidr: str | None,
    comments: bool,
    masquerade_all: bool,
    filter_rules: list[str],
    nat_chains: list[str],
    nat_rules: list[str],
) -> None:
    """Append the rules of one Service port (kube-proxy's per-service loop body)."""
    name = sp.service_port_name
    suffix = iptables_chain_hash(name, proto)
    svc_chain, svl_chain, ext_chain = f"KUBE-SVC-{suffix}", f"KUBE-SVL-{suffix}", f"KUBE-EXT-{suffix}"

    externally_accessible = sp.node_port is not None or bool(sp.external_ips)
    external_local = externally_accessible and sp.external_traffic_policy == "Local"
    internal_local = sp.internal_traffic_policy == "Local"
    uses_cluster = not internal_local or externally_accessible
    uses_local = internal_local or external_local

    cluster_eps: list[Endpoint] = sp.usable_endpoints() if uses_cluster else []
    local_eps: list[Endpoint] = sp.usable_endpoints(node) if uses_local else []
    has_endpoints = bool(cluster_eps)
    if uses_local and not has_endpoints:
        has_endpoints = any(e.ready or (e.serving and e.terminating) for e in sp.endpoints)
    reachable = {e.address: e for e in (*cluster_eps, *local_eps)}
    all_reachable = [reachable[a] for a in sorted(reachable)]

    uses_cluster_chain = bool(cluster_eps) and uses_cluster
    uses_local_chain = bool(local_eps) and uses_local
    internal_chain = svl_chain if internal_local else svc_chain
    has_internal = has_endpoints and not (internal_local and not local_eps)
    external_policy_chain = svl_chain if external_local else svc_chain
    has_external = has_endpoints and not (external_local and not local_eps)
    uses_ext_chain = has_endpoints and externally_accessible

    if not has_endpoints:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f'"{name} has no endpoints"'
    else:
        int_target = ext_target = "DROP"
        int_comment = ext_comment = f'"{name} has no local endpoints"'

    port_match = f"-m {proto} -p {proto} -d {sp.cluster_ip} --dport {sp.port}"
    if has_internal:
        nat_rules.append(
            f'-A KUBE-SERVICES -m comment --comment "{name} cluster IP" {port_match} -j {internal_chain}'
        )
    else:
        filter_rules.append(
            f"-A KUBE-SERVICES -m comment --comment {int_comment} {port_match} -j {int_target}"
        )

    for external_ip in sp.external_ips:
        match = f"-m {proto} -p {proto} -d {external_ip} --dport {sp.port}"
        if has_endpoints:
            nat_rules.append(
                f'-A KUBE-SERVICES -m comment --comment "{name} external IP" {match} -j {ext_chain}'
            )
        if not has_external:
            filter_rules.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} {match} -j {ext_target}"
            )

    if sp.node_port is not None:
        if has_endpoints:
            nat_rules.append(
                f"-A KUBE-NODEPORTS -m comment --comment {_quote(name)} "
                f"-m {proto} -p {proto} --dport {sp.node_port} -j {ext_chain}"
            )
        if not has_external:
            filter_rules.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} "
                f"-m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {sp.node_port} "
                f"-j {ext_target}"
            )

    if has_internal:
        masq = f'-A {internal_chain} -m comment --comment "{name} cluster IP" {port_match}'
        if masquerade_all:
            nat_rules.append(f"{masq} -j KUBE-MARK-MASQ")
        elif cluster_cidr is not None:
            nat_rules.append(f"{masq} ! -s {cluster_cidr} -j KUBE-MARK-MASQ")

    if uses_ext_chain:
        nat_chains.append(f":{ext_chain} - [0:0]")
        if not external_local:
            nat_rules.append(
                f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} external '
                'destinations" -j KUBE-MARK-MASQ'
            )
        else:
            if cluster_cidr is not None:
                nat_rules.append(
                    f'-A {ext_chain} -m comment --comment "pod traffic for {name} external '
                    f'destinations" -s {cluster_cidr} -j {svc_chain}'
                )
            nat_rules.append(
                f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name} '
                'external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ'
            )
            nat_rules.append(
                f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} '
                f'external destinations" -m addrtype --src-type LOCAL -j {svc_chain}'
            )
        if has_external:
            nat_rules.append(f"-A {ext_chain} -j {external_policy_chain}")

    if uses_cluster_chain:
        nat_chains.append(f":{svc_chain} - [0:0]")
        _balance(sp, proto, svc_chain, cluster_eps, comments, nat_rules)
    if uses_local_chain:
        nat_chains.append(f":{svl_chain} - [0:0]")
        _balance(sp, proto, svl_chain, local_eps, comments, nat_rules)

    for ep in all_reachable:
        sep = _sep_chain(sp, proto, ep)
        nat_chains.append(f":{sep} - [0:0]")
        head = f"-A {sep}" + (f" -m comment --comment {_quote(name)}" if comments else "")
        nat_rules.append(f"{head} -s {ep.ip} -j KUBE-MARK-MASQ")
        recent = f" -m recent --name {sep} --set" if sp.session_affinity == "ClientIP" else ""
        nat_rules.append(f"{head}{recent} -m {proto} -p {proto} -j DNAT --to-destination {ep.address}")


def _sep_chain(sp: ServicePort, proto: str, ep: Endpoint) -> str:
    return "KUBE-SEP-" + iptables_endpoint_chain_hash(sp.service_port_name, proto, ep.address)


def _balance(
    sp: ServicePort,
    proto: str,
    chain: str,
    endpoints: list[Endpoint],
    comments: bool,
    nat_rules: list[str],
) -> None:
    """kube-proxy's writeServiceToEndpointRules: affinity checks, then the random cascade."""
    name = sp.service_port_name

    def comment(ep: Endpoint) -> str:
        return f' -m comment --comment "{name} -> {ep.address}"' if comments else ""

    if sp.session_affinity == "ClientIP":
        for ep in endpoints:
            sep = _sep_chain(sp, proto, ep)
            nat_rules.append(
                f"-A {chain}{comment(ep)} -m recent --name {sep} --rcheck "
                f"--seconds {sp.affinity_timeout_seconds} --reap -j {sep}"
            )
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        stat = f" -m statistic --mode random --probability {_probability(n - i)}" if i < n - 1 else ""
        nat_rules.append(f"-A {chain}{comment(ep)}{stat} -j {_sep_chain(sp, proto, ep)}")


def count_rules(text: str) -> dict[str, int]:
    """Rules per table in restore input or ``iptables-save`` output, as kube-proxy counts them.

    Counts the ``-A``/``-I`` lines of each ``*table`` section, leaving out rules
    in the built-in chains (the jumps kube-proxy adds with ``iptables -I`` are
    not in its restore buffers), so that for :func:`render_iptables` output the
    figures equal kube-proxy's ``kubeproxy_sync_proxy_rules_iptables_total{table}``.

    Parameters
    ----------
    text : str
        Restore input (or saved form) with ``*table`` headers.

    Returns
    -------
    dict of str to int
        ``{table: rules}`` for every table that appears, in order of appearance.
    """
    counts: dict[str, int] = {}
    table: str | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            counts.setdefault(table, 0)
        elif table is not None and (line.startswith("-A ") or line.startswith("-I ")):
            chain = line.split(None, 2)[1]
            if chain not in _BUILTIN_CHAINS:
                counts[table] += 1
    return counts
