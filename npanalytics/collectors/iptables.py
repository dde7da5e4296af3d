"""Read kube-proxy's iptables rules from an ``iptables-save`` dump.

One reader, :func:`read_iptables_save`, for every text form the iptables tools
print and kube-proxy writes (KUBE_FACTS.md §1):

- ``iptables-save`` output, with or without ``-c`` counters (``[pkts:bytes] -A ...``),
  several tables in one file (filter, nat, mangle, ...), from iptables-legacy or
  iptables-nft;
- ``iptables [-t nat] -S`` (``-P``/``-N``/``-A`` lines, no table header) and
  ``-S -v`` (counters printed as ``-c PKTS BYTES`` before the target);
- kube-proxy's own ``iptables-restore`` input (what
  :func:`npanalytics.lab.render_iptables.render_iptables` writes: 10-decimal
  probabilities, unquoted comments without spaces, addresses without ``/32``,
  ``--or-mark``/``--xor-mark``);
- the messiness of dumps pasted from somewhere: a fragment of one chain with no
  table header, elided lines (``...``, ``[...]``, ``…``), blank lines, ``#``
  comments, tabs, a missing ``COMMIT``.

The reader is I/O-free apart from reading its source; it makes one pass over
the lines with cheap ``str`` operations, dispatching on the chain name, and
builds the frames column-wise at the end.
"""

from __future__ import annotations

import gc
import re

import numpy as np
import pandas as pd

from ..schemas import schema_table, validate_frame
from ._proxy import ProxyRules, iptables_chain_hash, probability_from_saved
from ._source import BadLines, OnBadLine, Source, check_on_bad_line, read_source_text

__all__ = ["read_iptables_save"]

FORMAT = "iptables-save"
PROXY_MODE = "iptables"

# Prefixes of kube-proxy's per-Service-port chains; all share one 16-character hash suffix.
_SVC, _SVL, _XLB, _EXT, _FW, _SEP = (
    "KUBE-SVC-", "KUBE-SVL-", "KUBE-XLB-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-",
)
# Comment suffixes kube-proxy appends to the Service port name (KUBE_FACTS.md §1.4).
_CLUSTER_IP = " cluster IP"
_EXTERNAL_IP = " external IP"
_LOADBALANCER_IP = " loadbalancer IP"
_NO_ENDPOINTS = " has no endpoints"
_NO_LOCAL_ENDPOINTS = " has no local endpoints"
_EXT_COMMENTS = (  # (prefix, suffix, traffic policy the comment implies)
    ("masquerade traffic for ", " external destinations", "Cluster"),
    ("pod traffic for ", " external destinations", "Local"),
    ("masquerade LOCAL traffic for ", " external destinations", "Local"),
    ("route LOCAL traffic for ", " external destinations", "Local"),
)
_ELISIONS = frozenset({"...", "[...]", "\u2026", "[\u2026]", "(...)", "# ..."})
_POLICIES = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE", "-"})
_COUNTERS = re.compile(r"\[[0-9]+:[0-9]+\]")
_ALL_COUNTERS = re.compile(r"(?:\[[0-9]+:[0-9]+\])*")
_TARGET_CHAINS = (_SVC, _SVL, _XLB, _EXT, _FW)
_NINE = frozenset({_SVC, _SVL, _XLB, _EXT})

_EXPECTED_LINE = (
    "a rule ('-A CHAIN ...', optionally after '[packets:bytes]'), a chain line "
    "(':CHAIN POLICY [packets:bytes]', '-N CHAIN', '-P CHAIN POLICY'), a table header "
    "('*table'), COMMIT, a '#' comment or a blank line"
)


class _Svc:
    """What the dump says about one Service port (keyed by its chain hash)."""

    __slots__ = (
        "name", "protocol", "cluster_ip", "port", "node_port", "external_ips", "lb_ips",
        "ext_local", "ext_cluster", "itp", "rejected", "chains", "first",
    )

    def __init__(self, first: int) -> None:
        self.name: str | None = None
        self.protocol: str | None = None
        self.cluster_ip: str | None = None
        self.port: int | None = None
        self.node_port: int | None = None
        self.external_ips: list[str] = []
        self.lb_ips: list[str] = []
        self.ext_local = False
        self.ext_cluster = False
        self.itp: str | None = None
        self.rejected = False
        self.chains: dict[str, str] = {}
        self.first = first


class _BadRule(Exception):
    """Raised inside the line handlers; turned into an on_bad_line event."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _comment(rest: str) -> tuple[str | None, str]:
    """Split off the ``--comment`` value: ``(comment, rest_without_it)``."""
    i = rest.find("--comment ")
    if i < 0:
        return None, rest
    j = i + 10
    while j < len(rest) and rest[j] == " ":
        j += 1
    if j < len(rest) and rest[j] == '"':
        k = rest.find('"', j + 1)
        while k > 0 and rest[k - 1] == "\\":
            k = rest.find('"', k + 1)
        if k < 0:
            raise _BadRule('a comment closed by a double quote')
        text = rest[j + 1:k].replace('\\"', '"')
        return text, rest[:i] + rest[k + 1:]
    k = rest.find(" ", j)
    if k < 0:
        k = len(rest)
    if k == j:
        raise _BadRule("a comment after --comment")
    return rest[j:k], rest[:i] + rest[k:]


def _word(text: str, start: int) -> str:
    """The whitespace-delimited word at ``text[start:]`` ('' when there is none)."""
    parts = text[start:].split(None, 1)
    return parts[0] if parts else ""


def _options(tokens: list[str]) -> dict[str, str]:
    """Map each token to the token after it (only option keys such as ``-d`` are looked up)."""
    return dict(zip(tokens, tokens[1:]))


def _target(tokens: list[str]) -> str | None:
    for i in range(len(tokens) - 2, -1, -1):
        if tokens[i] == "-j" or tokens[i] == "--jump" or tokens[i] == "-g" or tokens[i] == "--goto":
            return tokens[i + 1]
    return None


def _dash_c(body: str) -> tuple[int, int] | None:
    """The counters ``-c PACKETS BYTES`` of an ``iptables -S -v`` rule, None without them."""
    c = body.find("-c ")
    if c < 0 or (c > 0 and body[c - 1] != " "):
        return None
    pk = body[c + 3:].split(None, 2)
    if len(pk) < 2 or not pk[0].isdigit() or not pk[1].isdigit():
        raise _BadRule("counters '-c PACKETS BYTES'")
    return int(pk[0]), int(pk[1])


def _port(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _BadRule(f"{what} between 1 and 65535")
    return int(text)


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    if text.endswith("/32") or text.endswith("/128"):
        return text.rpartition("/")[0]
    return text


def _split_name(name: str | None) -> tuple[str | None, str | None, str | None]:
    if name is None:
        return None, None, None
    namespace, slash, rest = name.partition("/")
    service, _, port_name = rest.partition(":")
    if not slash or not namespace or not service:
        return None, None, None
    return namespace, service, port_name


class _Reader:
    """State of one pass over a dump."""

    def __init__(self) -> None:
        self.svcs: dict[str, _Svc] = {}
        # LB chain -> list of (sep_chain, probability string, packets, bytes, comment endpoint, lineno)
        self.lb: dict[str, list[tuple]] = {}
        self.affinity: dict[str, int] = {}
        # LB chain -> {SEP chain: [counters of its affinity checks]} ('[p:b]', (p, b) or None)
        self.affinity_counters: dict[str, dict[str, list]] = {}
        # SEP chain -> (ip, port, protocol)
        self.seps: dict[str, tuple[str | None, int | None, str | None]] = {}
        self.prob_cache: dict[str, float] = {"1": 1.0}
        self.lineno = 0

    # -- service port bookkeeping ----------------------------------------------------
    def svc(self, suffix: str) -> _Svc:
        s = self.svcs.get(suffix)
        if s is None:
            s = self.svcs[suffix] = _Svc(self.lineno)
        return s

    def by_name(self, name: str, protocol: str | None) -> _Svc:
        """The Service port named in a comment of a rule that names no chain of it."""
        if protocol is None:
            raise _BadRule("'-p PROTOCOL' in a rule for a Service port")
        s = self.svc(iptables_chain_hash(name, protocol))
        s.name = s.name or name
        s.protocol = s.protocol or protocol
        return s

    @staticmethod
    def chain_of(s: _Svc, chain: str) -> None:
        kind = chain[: chain.index("-", 5) + 1]
        s.chains.setdefault(kind, chain)

    def target_svc(self, target: str | None) -> _Svc | None:
        """The Service port a jump to KUBE-SVC/SVL/XLB/EXT/FW-<hash> belongs to."""
        if target is None:
            return None
        if target[:9] in _NINE:
            suffix = target[9:]
        elif target[:8] == _FW:
            suffix = target[8:]
        else:
            return None
        s = self.svcs.get(suffix)
        if s is None:
            s = self.svc(suffix)
        if target not in s.chains.values():
            self.chain_of(s, target)
        return s

    # -- one line, the full grammar ------------------------------------------------------
    def line(self, line: str, lineno: int) -> None:
        """Handle any line; raise :class:`_BadRule` for one no iptables tool prints."""
        self.lineno = lineno
        if not line or line.isspace():
            return
        line = line.strip()
        c = line[0]
        head = None
        if c == "[":
            head, _, line = line.partition(" ")
            if head in _ELISIONS:
                return
            if _COUNTERS.fullmatch(head) is None:
                raise _BadRule("counters '[packets:bytes]'")
            line = line.lstrip()
            if not line.startswith("-A "):
                raise _BadRule("a rule ('-A CHAIN ...') after the counters")
            c = "-"
        if c == "-":
            if line.startswith("-A "):
                parts = line.split(None, 2)
                if len(parts) < 3:
                    raise _BadRule("a rule body after the chain name")
                self.rule(parts[1], parts[2], head)
                return
            if line.startswith("-N ") or line.startswith("-X "):
                if len(line.split()) != 2:
                    raise _BadRule("exactly one chain name")
                return
            if line.startswith("-P "):
                parts = line.split()
                if len(parts) not in (3, 6) or parts[2] not in _POLICIES or (
                    len(parts) == 6
                    and (parts[3] != "-c" or not parts[4].isdigit() or not parts[5].isdigit())
                ):
                    raise _BadRule("a policy line '-P CHAIN POLICY [-c PACKETS BYTES]'")
                return
            raise _BadRule(_EXPECTED_LINE)
        if c == ":":
            parts = line.split()
            if len(parts) != 3 or len(parts[0]) < 2 or parts[1] not in _POLICIES:
                raise _BadRule("a chain line ':CHAIN POLICY [packets:bytes]'")
            if _COUNTERS.fullmatch(parts[2]) is None:
                raise _BadRule("counters '[packets:bytes]'")
            return
        if c == "#":
            return
        if c == "*":
            table = line[1:]
            if not table.isalpha() or not table.islower():
                raise _BadRule("a table name after '*' (filter, nat, mangle, raw, security)")
            return
        if line == "COMMIT" or line in _ELISIONS:
            return
        raise _BadRule(_EXPECTED_LINE)

    # -- one rule ----------------------------------------------------------------------
    def rule(self, chain: str, rest: str, counters: str | None) -> None:
        if chain.startswith(_SEP):
            self.sep_rule(chain, rest)
        elif chain.startswith(_SVC) or chain.startswith(_SVL) or chain.startswith(_XLB):
            self.lb_rule(chain, rest, counters)
        elif chain == "KUBE-SERVICES":
            self.services_rule(rest)
        elif chain == "KUBE-NODEPORTS":
            self.nodeports_rule(rest)
        elif chain == "KUBE-EXTERNAL-SERVICES":
            self.external_services_rule(rest)
        elif chain.startswith(_EXT):
            self.ext_rule(chain, rest)
        elif chain.startswith(_FW):
            # The last rule of a FW chain has only a comment ("other traffic to ...
            # will be dropped by KUBE-PROXY-FIREWALL") and no target.
            comment, body = _comment(rest)
            target = _target(body.split())
            if target is None and comment is None:
                raise _BadRule("a target ('-j TARGET') or a comment")
            s = self.svc(chain[len(_FW):])
            self.chain_of(s, chain)
            self.target_svc(target)
            if comment and comment.endswith(_LOADBALANCER_IP):
                s.name = s.name or comment[: -len(_LOADBALANCER_IP)]
        else:
            # Built-in chains, KUBE-MARK-MASQ, KUBE-POSTROUTING, KUBE-FORWARD, other
            # software's chains: parsed, nothing to extract. A rule still needs a body.
            if not rest.strip():
                raise _BadRule("a rule body after the chain name")
            if '--comment "' in rest:
                _comment(rest)

    def sep_rule(self, chain: str, rest: str) -> None:
        k = rest.find("--to-destination")
        if k < 0:
            if " DNAT" in rest:
                raise _BadRule("'--to-destination ADDRESS' in a DNAT rule")
            if rest.endswith("KUBE-MARK-MASQ") or "-m " in rest or "-j " in rest:
                return  # hairpin masquerade rule, or anything else kube-proxy may add
            raise _BadRule("a rule body ('... -j TARGET')")
        dest = rest[k + 16:].split(None, 1)
        if not dest:
            raise _BadRule("an address after --to-destination")
        host, colon, port = dest[0].rpartition(":")
        if not colon or host.endswith(":") or (":" in host and not host.startswith("[")):
            ip, port_no = dest[0], None
        else:
            ip = host[1:-1] if host.startswith("[") else host
            port_no = _port(port, "a port after 'ADDRESS:'")
        p = rest.find("-p ")
        proto = _word(rest, p + 3) if p >= 0 else None
        self.seps[chain] = (ip, port_no, proto or None)

    def lb_rule(self, chain: str, rest: str, counters: str | tuple[int, int] | None) -> None:
        # Parse and check everything first: a rule that is rejected changes nothing.
        comment = None
        body = rest
        if "--comment" in rest:
            comment, body = _comment(rest)
        j = body.rfind("-j ")
        if j < 0:
            j = body.rfind("-g ")
            if j < 0:
                raise _BadRule("a target ('-j TARGET')")
        target = body[j + 3:].split(None, 1)
        if not target:
            raise _BadRule("a target after -j")
        target = target[0]
        seconds = prob = endpoint = None
        if target.startswith(_SEP):
            if "-m recent" in body:
                k = body.find("--seconds ")
                if "--rcheck" in body and k >= 0:
                    secs = _word(body, k + 10)
                    if not secs.isdigit():
                        raise _BadRule("a whole number of seconds after --seconds")
                    seconds = int(secs)
                    if counters is None:
                        counters = _dash_c(body)
            else:
                k = body.find("--probability ")
                prob = _word(body, k + 14) if k >= 0 else "1"
                if prob not in self.prob_cache:
                    try:
                        value = float(prob)
                    except ValueError:
                        raise _BadRule("a number after --probability") from None
                    if not 0.0 < value <= 1.0:
                        raise _BadRule("a probability in (0, 1]")
                    self.prob_cache[prob] = probability_from_saved(value)
                if counters is None:
                    counters = _dash_c(body)
        s = self.svcs.get(chain[9:])
        if s is None:
            s = self.svc(chain[9:])
        if chain not in s.chains.values():
            self.chain_of(s, chain)
        if seconds is not None:
            self.affinity[chain] = seconds
            self.affinity_counters.setdefault(chain, {}).setdefault(target, []).append(counters)
        elif prob is not None:
            if comment is not None:
                name, arrow, endpoint = comment.partition(" -> ")
                if not arrow:
                    endpoint = None
                elif s.name is None:
                    s.name = name
            rules = self.lb.get(chain)
            if rules is None:
                rules = self.lb[chain] = []
            rules.append((target, prob, counters, endpoint, self.lineno))
        elif not target.startswith(_SEP):
            if comment is not None and comment.endswith(_CLUSTER_IP) and s.name is None:
                s.name = comment[: -len(_CLUSTER_IP)]
            if chain.startswith(_XLB):
                s.ext_local = True
            self.target_svc(target)

    def services_rule(self, rest: str) -> None:
        comment, body = _comment(rest)
        tokens = body.split()
        target = _target(tokens)
        if target is None:
            raise _BadRule("a target ('-j TARGET')")
        if comment is None or target == "KUBE-NODEPORTS":
            return
        opts = _options(tokens)
        proto = opts.get("-p")
        for suffix, kind in (
            (_CLUSTER_IP, "cluster"), (_EXTERNAL_IP, "external"), (_LOADBALANCER_IP, "lb"),
            (_NO_ENDPOINTS, "reject"), (_NO_LOCAL_ENDPOINTS, "drop"),
        ):
            if comment.endswith(suffix):
                break
        else:
            return  # some other comment (another controller's rule): nothing to extract
        name = comment[: -len(suffix)]
        address = _address(opts.get("-d"))
        port = _port(opts.get("--dport"), "a port after --dport")
        if proto is None and not any(target.startswith(p) for p in _TARGET_CHAINS):
            raise _BadRule("'-p PROTOCOL' in a rule for a Service port")
        s = self.target_svc(target)
        if s is None:
            s = self.by_name(name, proto)
        s.name = s.name or name
        s.protocol = s.protocol or proto
        if kind in ("cluster", "reject", "drop"):
            if kind == "cluster" and target.startswith(_SVL):
                s.itp = "Local"
            elif kind == "cluster" and target.startswith(_SVC):
                s.itp = "Cluster"
            elif kind == "drop":
                s.itp = "Local"
            if kind == "reject":
                s.rejected = True
            if address is not None and s.cluster_ip is None:
                s.cluster_ip, s.port = address, port
        elif address is not None:
            ips = s.external_ips if kind == "external" else s.lb_ips
            if address not in ips:
                ips.append(address)
            if s.port is None:
                s.port = port

    def nodeports_rule(self, rest: str) -> None:
        comment, body = _comment(rest)
        tokens = body.split()
        target = _target(tokens)
        if target is None:
            raise _BadRule("a target ('-j TARGET')")
        if target == "ACCEPT" or comment is None:
            return  # health check node port (filter table), or not kube-proxy's
        opts = _options(tokens)
        proto = opts.get("-p")
        port = _port(opts.get("--dport"), "a port after --dport")
        if target == "KUBE-MARK-MASQ":
            if proto is None:
                raise _BadRule("'-p PROTOCOL' in a rule for a Service port")
            s = self.by_name(comment, proto)  # pre-1.24: mark, then jump to KUBE-SVC
            s.ext_cluster = True
        else:
            s = self.target_svc(target)
            if s is None:
                return
        s.name = s.name or comment
        s.protocol = s.protocol or proto
        if target.startswith(_XLB):
            s.ext_local = True
        elif target.startswith(_SVC):
            s.ext_cluster = True
        if port is not None:
            s.node_port = port

    def external_services_rule(self, rest: str) -> None:
        comment, body = _comment(rest)
        tokens = body.split()
        if _target(tokens) is None:
            raise _BadRule("a target ('-j TARGET')")
        if comment is None:
            return
        if comment.endswith(_NO_ENDPOINTS):
            name, local = comment[: -len(_NO_ENDPOINTS)], False
        elif comment.endswith(_NO_LOCAL_ENDPOINTS):
            name, local = comment[: -len(_NO_LOCAL_ENDPOINTS)], True
        else:
            return
        opts = _options(tokens)
        port = _port(opts.get("--dport"), "a port after --dport")
        s = self.by_name(name, opts.get("-p"))
        if local:
            s.ext_local = True
        else:
            s.rejected = True
        if opts.get("--dst-type") == "LOCAL" and port is not None:
            s.node_port = port

    def ext_rule(self, chain: str, rest: str) -> None:
        comment, body = _comment(rest)
        tokens = body.split()
        target = _target(tokens)
        if target is None:
            raise _BadRule("a target ('-j TARGET')")
        s = self.svc(chain[len(_EXT):])
        self.chain_of(s, chain)
        if comment is not None:
            for prefix, suffix, policy in _EXT_COMMENTS:
                if comment.startswith(prefix) and comment.endswith(suffix):
                    s.name = s.name or comment[len(prefix): -len(suffix)]
                    if policy == "Local":
                        s.ext_local = True
                    break
        local_src = "--src-type" in tokens
        if target.startswith(_SVL) or target.startswith(_XLB) or local_src:
            s.ext_local = True
        elif target == "KUBE-MARK-MASQ" or (target.startswith(_SVC) and "-s" not in tokens):
            s.ext_cluster = True
        self.target_svc(target)


def read_iptables_save(source: Source, *, on_bad_line: OnBadLine = "raise") -> ProxyRules:
    """Read the Service ports and endpoints kube-proxy programmed, from an iptables dump.

    Parameters
    ----------
    source : path, file object, str or bytes
        ``iptables-save [-c]`` output (any tables, legacy or nft), ``iptables -S``
        or ``-S -v`` output, kube-proxy's ``iptables-restore`` input, or a
        fragment of any of them; a ``.gz`` file is decompressed.
    on_bad_line : {"raise", "warn", "skip"}, default "raise"
        What to do with a line no iptables tool prints: raise
        :class:`~npanalytics.ParseError`, or skip it (with one
        :class:`~npanalytics.exceptions.ParseWarning` under ``"warn"``) and count
        it in the report.

    Returns
    -------
    ProxyRules
        ``services`` (kind ``proxy_services``), ``endpoints`` (kind
        ``proxy_endpoints``) and ``report`` (lines total/parsed/skipped; format
        ``"iptables-save"``); ``proxy_mode`` is ``"iptables"``.

    Raises
    ------
    ParseError
        ``"{source}:{lineno}: expected <what>, got <line>"`` for the first bad
        line under ``on_bad_line="raise"``.
    ValueError
        For an unknown ``on_bad_line``.

    Notes
    -----
    **What is read.** A Service port is identified by the 16-character hash its
    ``KUBE-SVC/SVL/EXT/FW`` chains share. Its name (``ns/svc:port``) comes from
    the rule comments (``"... cluster IP"``, the ``KUBE-NODEPORTS`` comment,
    ``"... has no endpoints"`` ...); a comment on a rule that names no chain is
    linked to the chains by recomputing kube-proxy's hash. In large-cluster
    mode (no comments on SVC->SEP and SEP rules) endpoints come from the DNAT
    target of their ``KUBE-SEP`` chain. A Service port whose name cannot be
    recovered keeps its rows, with ``namespace``/``service`` NA.

    - ``cluster_ip``/``port``: the ``KUBE-SERVICES`` "cluster IP" rule (or the
      filter REJECT/DROP rule of a Service port without (local) endpoints).
    - ``node_port``: ``KUBE-NODEPORTS`` (nat), or the ``--dst-type LOCAL`` REJECT/DROP in
      filter ``KUBE-EXTERNAL-SERVICES``.
    - ``external_ips``/``load_balancer_ips``: the nat "external IP" and
      "loadbalancer IP" rules. (For a Service without endpoints the filter table
      does not tell ExternalIPs from load-balancer IPs; those are not reported.)
    - ``external_traffic_policy``: Local when the EXT chain jumps to SVL (or the
      pre-1.24 ``KUBE-XLB``), has the "LOCAL traffic" short-circuit rules, or
      the filter table drops the node port for "no local endpoints"; Cluster when
      EXT marks for masquerade and jumps to SVC (or, before 1.24, KUBE-NODEPORTS
      did so directly); NA when it cannot be told (no NodePort/ExternalIP/LB IP,
      or a Service rejected for having no endpoints at all).
    - ``internal_traffic_policy``: Local when the cluster-IP rule jumps to SVL or
      the cluster IP is dropped for "no local endpoints", Cluster when it jumps
      to SVC, NA otherwise.
    - ``session_affinity``: ClientIP when the load-balancing chain has ``-m
      recent --rcheck`` rules; the timeout is their ``--seconds``.
    - ``endpoint_count``/``local_endpoint_count``: rules jumping to a SEP chain
      (not counting affinity checks) in SVC and in SVL/XLB.

    Rows of ``proxy_services`` are sorted by ``service_port_name`` (unrecoverable
    names last), protocol and chain hash; rows of ``proxy_endpoints`` follow their
    Service port, the SVC chain before SVL/XLB, then ``position``, so that the same
    rules give the same frames whatever form the dump has.

    ``proxy_endpoints`` has one row per rule that jumps from a load-balancing
    chain (SVC, SVL, XLB) to a SEP chain; ``position`` is the 0-based index of
    the rule among those jumps. ``rule_probability`` is the printed
    ``--probability`` mapped back to ``1/k`` by
    :func:`~npanalytics.collectors._proxy.probability_from_saved` (1.0 for a rule
    without one), and ``probability = p_i * prod(1 - p_j, j < i)``. ``packets``
    and ``bytes`` are the counters of that jump rule (``[p:b]`` prefix or ``-c p
    b``), NA when the dump has none. Under ClientIP affinity those jumps see only
    the random choices: a returning client takes the ``-m recent --rcheck``
    rule of its endpoint at the top of the chain instead. ``affinity_packets``
    and ``affinity_bytes`` are the counters of those checks (summed if a chain
    has several for one SEP chain), so the new connections an endpoint got from
    a chain are ``packets + affinity_packets``; NA for a chain without affinity
    checks, or a dump without counters.

    **What is rejected.** Lines no tool prints: text that is not a rule, chain
    line, table header, COMMIT, comment or elision; malformed counters; an
    unterminated quoted comment; a rule without target; a probability outside
    (0, 1]; a port outside 1..65535; a DNAT without ``--to-destination``.

    **proxy_services**

    {services_table}

    **proxy_endpoints**

    {endpoints_table}

    Examples
    --------
    >>> rules = read_iptables_save("tests/data/iptables/mixed.legacy.save-c.txt")  # doctest: +SKIP
    >>> rules.endpoints[["service_port_name", "endpoint_ip", "probability", "packets"]]  # doctest: +SKIP
    """
    check_on_bad_line(on_bad_line)
    name, text = read_source_text(source)
    if "\t" in text:
        text = text.replace("\t", " ")
    lines = text.splitlines()
    # The scan allocates a few hundred thousand small tuples and builds no reference
    # cycles; the cyclic garbage collector would only walk them again and again
    # (about 20 % of the run time on a 1 M-line dump), so it is paused meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        bad = BadLines(name, on_bad_line)
        r = _Reader()
        if not _scan(lines, r, bad, strict=False):
            # A counter prefix that the fast pass did not check is malformed: read again,
            # checking every line, so that the bad line is reported (or skipped) exactly.
            bad = BadLines(name, on_bad_line)
            r = _Reader()
            _scan(lines, r, bad, strict=True)
        services, endpoints = _frames(r)
    finally:
        if collecting:
            gc.enable()
    report = bad.report(FORMAT, len(lines))
    return ProxyRules(services=services, endpoints=endpoints, report=report)


def _scan(lines: list[str], r: _Reader, bad: BadLines, *, strict: bool) -> bool:
    """One pass over the lines.

    The bulk of a large dump is four kinds of line: ``:KUBE-SEP-... - [0:0]``
    declarations, the two rules of each SEP chain and the SVC/SVL->SEP jumps.
    Those take inline fast paths when they have their usual shape; anything
    else (and the first rule of each load-balancing chain) goes through
    :meth:`_Reader.line`, which implements the full grammar. Both paths give
    the same result. Unless ``strict``, ``[packets:bytes]`` prefixes are checked
    all at once at the end; the return value says whether they were all valid.
    """
    lb = r.lb
    svcs = r.svcs
    seps = r.seps
    cache = r.prob_cache
    counters_ok = _COUNTERS.fullmatch
    heads: list[str] = []
    keep = heads.append
    slow = r.line
    lineno = 0
    for line in lines:
        lineno += 1
        c = line[:1]
        try:
            if c == "[":
                i = line.find("] -A ")
                if i < 0:
                    slow(line, lineno)
                    continue
                head = line[: i + 1]
                if not strict:
                    keep(head)
                elif counters_ok(head) is None:
                    raise _BadRule("counters '[packets:bytes]'")
                body = line[i + 5:]
            elif c == "-" and line[:3] == "-A ":
                head = None
                body = line[3:]
            elif c == ":" and line.endswith(" - [0:0]") and line.count(" ") == 2 and len(line) > 9:
                continue
            else:
                slow(line, lineno)
                continue
            chain, _, rest = body.partition(" ")
            pre = chain[:9]
            if pre == _SEP:
                if rest.endswith(" -j KUBE-MARK-MASQ") and rest[:3] == "-s ":
                    continue
                k = rest.find(" --to-destination ")
                if k >= 0:
                    dest = rest[k + 18:]
                    host, colon, port = dest.rpartition(":")
                    if colon and host and port.isdigit() and ":" not in host and " " not in host:
                        p = rest.find("-p ")
                        if p >= 0 and 0 < int(port) < 65536:
                            seps[chain] = (host, int(port), rest[p + 3:].partition(" ")[0])
                            continue
            elif pre == _SVC or pre == _SVL or pre == _XLB:
                svc = svcs.get(chain[9:])
                if svc is not None and chain in svc.chains.values():
                    if rest[:3] == "-j ":
                        target = rest[3:]
                    else:
                        target = rest[rest.rfind(" -j ") + 4:]
                    if " " in target or (
                        "--comment" in rest and (rest.count('"') != 2 or '--comment "' not in rest)
                    ):
                        pass  # unusual shape: the full grammar below
                    elif target[:9] == _SEP:
                        k = rest.find("-m recent --rcheck --seconds ")
                        if k >= 0:
                            secs = rest[k + 29:].partition(" ")[0]
                            if secs.isdigit() and (head is not None or "-c " not in rest):
                                r.affinity[chain] = int(secs)
                                r.affinity_counters.setdefault(chain, {}).setdefault(target, []).append(head)
                                continue
                        elif (
                            "--comment" not in rest and "-m recent" not in rest
                            and (head is not None or "-c " not in rest)
                        ):
                            k = rest.find("--probability ")
                            prob = rest[k + 14:].partition(" ")[0] if k >= 0 else "1"
                            if prob in cache:
                                rules = lb.get(chain)
                                if rules is None:
                                    rules = lb[chain] = []
                                rules.append((target, prob, head, None, lineno))
                                continue
                    elif target == "KUBE-MARK-MASQ" and svc.name is not None and pre != _XLB:
                        continue  # the masquerade rule of off-cluster ClusterIP traffic
            r.lineno = lineno
            if not rest.strip():
                raise _BadRule("a rule body after the chain name")
            r.rule(chain, rest, head)
        except _BadRule as exc:
            bad.bad(lineno, exc.expected, line)
    return strict or _ALL_COUNTERS.fullmatch("".join(heads)) is not None


read_iptables_save.__doc__ = read_iptables_save.__doc__.replace(
    "{services_table}", schema_table("proxy_services").replace("\n", "\n    ")
).replace("{endpoints_table}", schema_table("proxy_endpoints").replace("\n", "\n    "))


# -- frames -------------------------------------------------------------------------------


def _cat(values: list) -> pd.Categorical:
    # str categories even when every value is missing, as the other readers give them
    return pd.Categorical(values, categories=pd.Index(sorted({v for v in values if v is not None}), dtype="str"))


def _endpoint_columns(r: _Reader) -> dict:
    """The endpoint rows (one per LB-chain -> SEP jump), column-wise, in dump order."""
    chains = list(r.lb)
    lengths = np.array([len(r.lb[c]) for c in chains], dtype=np.intp)
    rules = [rule for c in chains for rule in r.lb[c]]
    m = len(rules)
    if m:
        targets, probs, heads, comment_eps, _ = (list(col) for col in zip(*rules))
    else:
        targets, probs, heads, comment_eps = [], [], [], []
    chain_code = np.repeat(np.arange(len(chains), dtype=np.intp), lengths)
    starts = (np.cumsum(lengths) - lengths).astype(np.intp)
    position = np.arange(m, dtype=np.int64) - np.repeat(starts, lengths)
    cache = r.prob_cache
    rule_p = np.array([cache[p] for p in probs], dtype="float64")
    # probability = p_i * prod_{j<i}(1 - p_j), per chain
    first = np.zeros(m, dtype=bool)
    first[starts[lengths > 0]] = True
    remaining = np.empty(m, dtype="float64")
    left = 1.0
    for i, (p, f) in enumerate(zip(rule_p.tolist(), first.tolist())):
        if f:
            left = 1.0
        remaining[i] = left
        left *= 1.0 - p
    probability = rule_p * remaining
    seps = r.seps
    dest = [seps.get(t) for t in targets]
    ips: list = []
    ports: list = []
    for d, e in zip(dest, comment_eps):
        if d is not None:
            ips.append(d[0])
            ports.append(d[1])
        elif e is not None:  # fragment without the SEP chain: the comment names the endpoint
            host, _, port = e.rpartition(":")
            ips.append(host.strip("[]") or None)
            ports.append(int(port) if port.isdigit() else None)
        else:
            ips.append(None)
            ports.append(None)
    packets: list = []
    nbytes: list = []
    for h in heads:  # inline _counter_values: this loop runs once per endpoint row
        if h is None:
            packets.append(None)
            nbytes.append(None)
        elif type(h) is str:
            pk, _, by = h[1:-1].partition(":")
            packets.append(int(pk))
            nbytes.append(int(by))
        else:
            packets.append(h[0])
            nbytes.append(h[1])
    affinity_packets, affinity_bytes = _affinity_columns(r.affinity_counters, chains, starts, lengths, targets)
    return {
        "chains": chains, "chain_code": chain_code, "targets": targets, "position": position,
        "rule_p": rule_p, "probability": probability, "ips": ips, "ports": ports,
        "packets": packets, "bytes": nbytes, "lengths": lengths,
        "affinity_packets": affinity_packets, "affinity_bytes": affinity_bytes,
    }


def _counter_values(head: str | tuple[int, int] | None) -> tuple[int | None, int | None]:
    """``(packets, bytes)`` of a ``[p:b]`` prefix or a parsed ``-c p b``; NAs without counters."""
    if head is None:
        return None, None
    if type(head) is str:
        pk, _, by = head[1:-1].partition(":")
        return int(pk), int(by)
    return head[0], head[1]


def _affinity_columns(
    checks: dict[str, dict[str, list]], chains: list[str], starts: np.ndarray, lengths: np.ndarray,
    targets: list[str],
) -> tuple[pd.arrays.IntegerArray, pd.arrays.IntegerArray]:
    """Per endpoint row: the summed counters of the affinity checks of its chain that jump to its SEP.

    Rows of chain ``chains[i]`` are ``starts[i]:starts[i] + lengths[i]``. NA when the
    chain has no affinity check for that SEP chain, or a check has no counters. Built
    as value and mask arrays: most rows of a large dump have no affinity.
    """
    m = len(targets)
    packets = np.zeros(m, dtype="int64")
    nbytes = np.zeros(m, dtype="int64")
    missing = np.ones(m, dtype=bool)
    for i, chain in enumerate(chains):
        per_sep = checks.get(chain)
        if not per_sep:
            continue
        start = int(starts[i])
        for row in range(start, start + int(lengths[i])):
            heads = per_sep.get(targets[row])
            if not heads:
                continue
            values = [_counter_values(h) for h in heads]
            if all(v[0] is not None for v in values):
                packets[row] = sum(v[0] for v in values)
                nbytes[row] = sum(v[1] for v in values)
                missing[row] = False
    return pd.arrays.IntegerArray(packets, missing), pd.arrays.IntegerArray(nbytes, missing.copy())


def _frames(r: _Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
    # Service ports that own a load-balancing chain but were never seen otherwise
    for chain in r.lb:
        if chain[9:] not in r.svcs:
            r.svc(chain[9:])
    seps = r.seps
    # Rows sorted by name (unnamed last), protocol, chain hash: the same dump in
    # any order (saved form, restore input) gives the same frames.
    suffixes = sorted(
        r.svcs,
        key=lambda k: (r.svcs[k].name is None, r.svcs[k].name or "", r.svcs[k].protocol or "", k),
    )
    index = {k: i for i, k in enumerate(suffixes)}
    svcs = [r.svcs[k] for k in suffixes]
    e = _endpoint_columns(r)
    lb_count = dict(zip(e["chains"], e["lengths"].tolist()))

    # -- services
    names = [s.name for s in svcs]
    split = [_split_name(n) for n in names]
    sep_protocol: dict[str, str] = {}  # chain hash -> protocol of a DNAT it leads to
    for c, rules in r.lb.items():
        for rule in rules:
            target = seps.get(rule[0])
            if target is not None and target[2]:
                sep_protocol.setdefault(c[9:], target[2])
                break
    protocols = [s.protocol or sep_protocol.get(k) for k, s in zip(suffixes, svcs)]
    n = len(svcs)
    svc_chain = [s.chains.get(_SVC) for s in svcs]
    svl_chain = [s.chains.get(_SVL) or s.chains.get(_XLB) for s in svcs]
    ext_chain = [s.chains.get(_EXT) for s in svcs]
    fw_chain = [s.chains.get(_FW) for s in svcs]
    affinity = [
        (r.affinity.get(a) if a else None) if (a and a in r.affinity) else
        (r.affinity.get(b) if b else None)
        for a, b in zip(svc_chain, svl_chain)
    ]
    externally = [
        s.node_port is not None or bool(s.external_ips) or bool(s.lb_ips)
        or s.ext_local or s.ext_cluster or x is not None
        for s, x in zip(svcs, ext_chain)
    ]
    services = pd.DataFrame(
        {
            "proxy_mode": _cat([PROXY_MODE] * n),
            "namespace": _cat([t[0] for t in split]),
            "service": _cat([t[1] for t in split]),
            "port_name": _cat([t[2] for t in split]),
            "service_port_name": _cat(
                [nm if t[0] is not None else None for nm, t in zip(names, split)]
            ),
            "protocol": _cat(protocols),
            "cluster_ip": _cat([s.cluster_ip for s in svcs]),
            "port": pd.array([s.port for s in svcs], dtype="Int32"),
            "node_port": pd.array([s.node_port for s in svcs], dtype="Int32"),
            "external_ips": pd.Series([",".join(s.external_ips) for s in svcs], dtype="str"),
            "load_balancer_ips": pd.Series([",".join(s.lb_ips) for s in svcs], dtype="str"),
            "external_traffic_policy": _cat([
                ("Local" if s.ext_local else "Cluster" if s.ext_cluster else None) if x else None
                for s, x in zip(svcs, externally)
            ]),
            "internal_traffic_policy": _cat([s.itp for s in svcs]),
            "session_affinity": _cat(["ClientIP" if a is not None else "None" for a in affinity]),
            "session_affinity_timeout_seconds": pd.array(affinity, dtype="Int64"),
            "scheduler": _cat([None] * n),
            "endpoint_count": np.array(
                [lb_count.get(c, 0) if c else 0 for c in svc_chain], dtype="int64"
            ),
            "local_endpoint_count": pd.array(
                [lb_count.get(c, 0) if c else None for c in svl_chain], dtype="Int64"
            ),
            "has_endpoints": np.array([not s.rejected for s in svcs], dtype=bool),
            "svc_chain": _cat(svc_chain),
            "svl_chain": _cat(svl_chain),
            "ext_chain": _cat(ext_chain),
            "fw_chain": _cat(fw_chain),
        }
    )

    # -- endpoints: per-service columns by code, then sorted by (service row, chain, position)
    chains = e["chains"]
    chain_svc = np.array([index[c[9:]] for c in chains], dtype=np.intp)
    chain_local = np.array([not c.startswith(_SVC) for c in chains], dtype=bool)
    code = e["chain_code"]
    rank = {c: i for i, c in enumerate(sorted(chains))}
    chain_rank = np.array([rank[c] for c in chains], dtype=np.intp)
    svc_code = chain_svc[code]
    m = len(code)

    def per_service(column: str) -> pd.Categorical:
        cat = services[column].array
        return pd.Categorical.from_codes(cat.codes[svc_code], categories=cat.categories)

    endpoints = pd.DataFrame(
        {
            "proxy_mode": _cat([PROXY_MODE] * m),
            "namespace": per_service("namespace"),
            "service": per_service("service"),
            "port_name": per_service("port_name"),
            "service_port_name": per_service("service_port_name"),
            "protocol": per_service("protocol"),
            "endpoint_ip": _cat(e["ips"]),
            "endpoint_port": pd.array(e["ports"], dtype="Int32"),
            "chain": pd.Categorical.from_codes(chain_rank[code], categories=sorted(chains)),
            "local": chain_local[code],
            "position": e["position"],
            "rule_probability": e["rule_p"],
            "probability": e["probability"],
            "endpoint_chain": _cat(e["targets"]),
            "weight": pd.array([None] * m, dtype="Int64"),
            "active_connections": pd.array([None] * m, dtype="Int64"),
            "inactive_connections": pd.array([None] * m, dtype="Int64"),
            "packets": pd.array(e["packets"], dtype="Int64"),
            "bytes": pd.array(e["bytes"], dtype="Int64"),
            "affinity_packets": e["affinity_packets"],
            "affinity_bytes": e["affinity_bytes"],
        }
    )
    order = np.lexsort((e["position"], chain_local[code], svc_code))
    if m and not (order == np.arange(m)).all():
        endpoints = endpoints.take(order).reset_index(drop=True)
    validate_frame(services, "proxy_services")
    validate_frame(endpoints, "proxy_endpoints")
    return services, endpoints
