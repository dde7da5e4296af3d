"""Build a scenario's data plane in network namespaces and program kube-proxy's rules in it.

Layout (every box is a network namespace the :class:`~npanalytics.lab.netns.LabSession`
owns; ``<id>`` is the run's random tag, so that concurrent runs never collide)::

    npa-lab-<id>-clients --(eth0 / fc0)--+                  (distinct clients: one address each)
      or ...-clients -- npa-lab-<id>-nat --(fc0)--+          ("nat": MASQUERADE in the NAT)
                                                  |
                            npa-lab-<id>-fabric: bridge br0  (node IPs 198.18.0.0/24)
                                 |                 |
          npa-lab-<id>-n-<node a>: eth0, cbr0   npa-lab-<id>-n-<node b>: ...
                 |        |                      (kube-proxy rules live here;
      npa-lab-<id>-p-<pod>  ...                   pod CIDR 198.18.(64+i).0/24 on cbr0)

Node ``i`` routes node ``j``'s pod CIDR via node ``j``'s fabric address, and the client
network via the clients' fabric address. Rules are rendered by
:mod:`npanalytics.lab.render_iptables` / :mod:`npanalytics.lab.render_nftables` and loaded with
``iptables-legacy-restore``, ``iptables-nft-restore`` or ``nft -f`` inside the node's
namespace; each load's wall-clock duration is the lab's "sync proxy rules" time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
import select
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import LabError
from .model import ServicePort
from .netns import LabSession
from .scenario import Addresses, PodSpec, Scenario

__all__ = [
    "FABRIC_NAMESPACE",
    "CLIENTS_NAMESPACE",
    "NAT_NAMESPACE",
    "RuleLoad",
    "Topology",
    "new_run_id",
    "node_namespace",
    "pod_namespace",
    "render_rules",
    "count_rules",
]

FABRIC_NAMESPACE = "npa-lab-{run_id}-fabric"
CLIENTS_NAMESPACE = "npa-lab-{run_id}-clients"
NAT_NAMESPACE = "npa-lab-{run_id}-nat"
NAT_INSIDE_GATEWAY_OFFSET = 1
POD_SERVER_MARGIN_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 30.0
#: The pod server and load generator are stdlib-only scripts; running them by path
#: (rather than ``-m``) skips ``import npanalytics`` (pandas), ~1.5 s per process here.
PODSERVER_SCRIPT = str(Path(__file__).with_name("podserver.py"))
TRAFFIC_SCRIPT = str(Path(__file__).with_name("traffic.py"))

#: The restore command per proxy mode, and the dump command the runner records.
LOAD_COMMANDS = {
    "iptables-legacy": ["iptables-legacy-restore"],
    "iptables-nft": ["iptables-nft-restore"],
    "nftables": ["nft", "-f", "-"],
}
SAVE_COMMANDS = {
    "iptables-legacy": ["iptables-legacy-save", "-c"],
    "iptables-nft": ["iptables-nft-save", "-c"],
    "nftables": ["nft", "list", "ruleset"],
}
NODE_SYSCTLS = (
    ("net.ipv4.ip_forward", 1),
    ("net.netfilter.nf_conntrack_acct", 1),
    ("net.ipv4.conf.all.rp_filter", 0),
    ("net.ipv4.conf.default.rp_filter", 0),
)
_IPT_RULE = re.compile(r"^(\[\d+:\d+\] )?-A ")
_NFT_RULE = re.compile(r"^\s+(?!chain |set |map |type |elements |flags |policy |table |\}|counter$).+# handle \d+$")

Renderer = Callable[[Sequence[ServicePort], str, str, Addresses], str]


def new_run_id() -> str:
    """A short random tag that keeps concurrent lab runs' namespace names apart."""
    return secrets.token_hex(3)


def node_namespace(node: str, run_id: str) -> str:
    """The namespace name of a node."""
    return f"npa-lab-{run_id}-n-{node}"


def pod_namespace(pod: str, run_id: str) -> str:
    """The namespace name of a pod."""
    return f"npa-lab-{run_id}-p-{pod}"


def render_rules(
    service_ports: Sequence[ServicePort], node: str, proxy_mode: str, addresses: Addresses
) -> str:
    """Render kube-proxy's rules for ``node`` with the project's renderers."""
    if proxy_mode in ("iptables-legacy", "iptables-nft"):
        try:
            from .render_iptables import render_iptables
        except ImportError as exc:
            raise LabError(f"the iptables renderer is not available: {exc}") from None
        return render_iptables(service_ports, node, cluster_cidr=addresses.cluster_cidr)
    if proxy_mode == "nftables":
        try:
            from .render_nftables import render_nftables
        except ImportError as exc:
            raise LabError(f"the nftables renderer is not available: {exc}") from None
        return render_nftables(
            service_ports, node, cluster_cidr=addresses.cluster_cidr,
            node_ips=(addresses.node_ips[node],),
        )
    raise LabError(f"proxy_mode {proxy_mode!r} cannot be programmed in this lab")


def count_rules(text: str, proxy_mode: str) -> int:
    """Rules in a dump: ``-A`` lines of iptables-save/restore text, rule lines of ``nft -a list``."""
    if proxy_mode.startswith("iptables"):
        return sum(1 for line in text.splitlines() if _IPT_RULE.match(line))
    return sum(1 for line in text.splitlines() if _NFT_RULE.match(line))


@dataclasses.dataclass(frozen=True)
class RuleLoad:
    """One rule load ("sync") on one node."""

    node: str
    proxy_mode: str
    reason: str
    duration_seconds: float
    rule_count: int
    command: str
    started: str = ""  # UTC ISO 8601 time the load started


class Topology:
    """The namespaces, links, pod servers and rules of one scenario.

    Parameters
    ----------
    scenario : Scenario
        What to build.
    session : LabSession
        The open session that owns (and will tear down) everything built.
    renderer : callable, optional
        ``renderer(service_ports, node, proxy_mode, addresses) -> str``; default
        :func:`render_rules` (the project's renderers).
    run_id : str, optional
        Tag in every namespace name (``npa-lab-<run_id>-...``) so that concurrent runs
        do not collide; default: random (:func:`new_run_id`).
    """

    def __init__(
        self,
        scenario: Scenario,
        session: LabSession,
        *,
        renderer: Renderer | None = None,
        run_id: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.run_id = run_id or new_run_id()
        self.fabric_ns = FABRIC_NAMESPACE.format(run_id=self.run_id)
        self.clients_ns = CLIENTS_NAMESPACE.format(run_id=self.run_id)
        self.nat_ns = NAT_NAMESPACE.format(run_id=self.run_id)
        self.session = session
        self.addresses = scenario.addresses()
        self.renderer = renderer or render_rules
        self.pod_state: dict[str, PodSpec] = {p.name: p for p in scenario.pods if not p.start_absent}
        self.loads: list[RuleLoad] = []
        self.rules_text: dict[str, str] = {}
        #: per event, each node's rule dump (with counters) taken just before the reload
        self.dumps_before_events: list[dict[str, str]] = []
        #: the events applied so far: ``{"pod", "action", "time"}`` (UTC ISO 8601, before the reloads)
        self.events: list[dict[str, str]] = []
        #: callables run after every rule load (the live metrics server refreshes its text)
        self.listeners: list[Callable[[], None]] = []
        #: the live metrics server while :func:`~npanalytics.lab.runner.serving_metrics` runs
        self.metrics_server: Any = None
        self._servers: dict[str, Any] = {}
        self.built = False

    def node_ns(self, node: str) -> str:
        """This run's namespace of ``node``."""
        return node_namespace(node, self.run_id)

    def pod_ns(self, pod: str) -> str:
        """This run's namespace of ``pod``."""
        return pod_namespace(pod, self.run_id)

    def namespaces(self) -> list[str]:
        """Every namespace name this topology uses (whether built yet or not)."""
        names = [self.fabric_ns, *(self.node_ns(n.name) for n in self.scenario.nodes),
                 *(self.pod_ns(p.name) for p in self.scenario.pods), self.clients_ns]
        return names + ([self.nat_ns] if self.scenario.clients.has_nat else [])

    # -- building ---------------------------------------------------------------------------
    def build(self) -> None:
        """Create the fabric, nodes, pods and clients; start the pod servers; load the rules."""
        s, a = self.session, self.addresses
        s.add_namespace(self.fabric_ns)
        s.add_bridge(self.fabric_ns, "br0")
        prefix = a.fabric_network.split("/")[1]
        for i, node in enumerate(self.scenario.nodes):
            ns = self.node_ns(node.name)
            s.add_namespace(ns)
            for key, value in NODE_SYSCTLS:
                s.sysctl(ns, key, value)
            self._fabric_port(ns, f"fn{i}", "eth0", f"{a.node_ips[node.name]}/{prefix}")
            s.add_bridge(ns, "cbr0")
            gateway = _host(a.pod_cidrs[node.name], 1)
            s.ip(ns, "addr", "add", f"{gateway}/24", "dev", "cbr0")
        for i, node in enumerate(self.scenario.nodes):
            ns = self.node_ns(node.name)
            for other in self.scenario.nodes:
                if other.name != node.name:
                    s.ip(ns, "route", "add", a.pod_cidrs[other.name], "via", a.node_ips[other.name])
            client_net = self._client_network()
            if client_net:
                s.ip(ns, "route", "add", client_net, "via", a.client_gateway)
        for k, pod in enumerate(self.scenario.pods):
            self._add_pod(k, pod)
        self._add_clients(prefix)
        self.start_pod_servers()
        for node in self.scenario.nodes:
            self.load_rules(node.name, reason="initial sync")
        self.built = True

    def _fabric_port(self, ns: str, fabric_end: str, inner: str, address: str) -> None:
        s = self.session
        s.add_veth(self.fabric_ns, fabric_end, ns, inner)
        s.ip(self.fabric_ns, "link", "set", fabric_end, "master", "br0")
        s.ip(self.fabric_ns, "link", "set", fabric_end, "up")
        s.ip(ns, "addr", "add", address, "dev", inner)
        s.ip(ns, "link", "set", inner, "up")

    def _client_network(self) -> str | None:
        if self.scenario.clients.distinct_count:
            from .scenario import DISTINCT_CLIENT_NETWORK

            return str(DISTINCT_CLIENT_NETWORK)
        return None  # NAT: sources are the NAT's fabric address, which is on-link

    def _add_pod(self, k: int, pod: PodSpec) -> None:
        s, a = self.session, self.addresses
        ns, node_ns = self.pod_ns(pod.name), self.node_ns(pod.node)
        s.add_namespace(ns)
        s.add_veth(node_ns, f"vp{k}", ns, "eth0")
        s.ip(node_ns, "link", "set", f"vp{k}", "master", "cbr0")
        s.ip(node_ns, "link", "set", f"vp{k}", "up")
        s.ip(node_ns, "link", "set", "cbr0", "up")
        s.ip(ns, "addr", "add", f"{a.pod_ips[pod.name]}/24", "dev", "eth0")
        s.ip(ns, "link", "set", "eth0", "up")
        s.ip(ns, "route", "add", "default", "via", _host(a.pod_cidrs[pod.node], 1))

    def _add_clients(self, prefix: str) -> None:
        s, a = self.session, self.addresses
        s.add_namespace(self.clients_ns)
        if not self.scenario.clients.has_nat:
            self._fabric_port(self.clients_ns, "fc0", "eth0", f"{a.client_gateway}/{prefix}")
            for ip in a.client_ips:
                s.ip(self.clients_ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            return
        from .scenario import NAT_INSIDE_NETWORK

        s.add_namespace(self.nat_ns)
        s.sysctl(self.nat_ns, "net.ipv4.ip_forward", 1)
        self._fabric_port(self.nat_ns, "fc0", "eth0", f"{a.client_gateway}/{prefix}")
        inside_gw = str(NAT_INSIDE_NETWORK.network_address + NAT_INSIDE_GATEWAY_OFFSET)
        inside_len = NAT_INSIDE_NETWORK.prefixlen
        s.add_veth(self.nat_ns, "eth1", self.clients_ns, "eth0")
        s.ip(self.nat_ns, "addr", "add", f"{inside_gw}/{inside_len}", "dev", "eth1")
        s.ip(self.nat_ns, "link", "set", "eth1", "up")
        distinct = set(a.client_ips[: self.scenario.clients.distinct_count])
        for ip in a.client_ips:
            # distinct clients keep their address through the NAT (only the inside network
            # is masqueraded), so that one run can mix them with NATed hosts
            s.ip(self.clients_ns, "addr", "add", f"{ip}/{32 if ip in distinct else inside_len}", "dev", "eth0")
        s.ip(self.clients_ns, "link", "set", "eth0", "up")
        s.ip(self.clients_ns, "route", "add", "default", "via", inside_gw)
        if distinct:
            from .scenario import DISTINCT_CLIENT_NETWORK

            s.ip(self.nat_ns, "route", "add", str(DISTINCT_CLIENT_NETWORK), "dev", "eth1")
        inside = str(NAT_INSIDE_NETWORK)
        if shutil.which("iptables-legacy-restore"):
            rules = f"*nat\n-A POSTROUTING -s {inside} -o eth0 -j MASQUERADE\nCOMMIT\n"
            s.exec(self.nat_ns, ["iptables-legacy-restore"], input=rules)
        else:
            rules = "table ip npa-nat {\n chain post {\n  type nat hook postrouting priority 100;\n" \
                    f"  ip saddr {inside} oifname \"eth0\" masquerade\n }}\n}}\n"
            s.exec(self.nat_ns, ["nft", "-f", "-"], input=rules)

    # -- pod servers ------------------------------------------------------------------------
    def target_ports(self) -> list[int]:
        """Every targetPort of every Service (each pod listens on all of them)."""
        return sorted({p.target_port for svc in self.scenario.services for p in svc.ports})

    def start_pod_servers(self) -> None:
        """Start one podserver per pod and wait until each says it listens."""
        deadline = self.scenario.traffic.max_seconds + POD_SERVER_MARGIN_SECONDS
        ports = [str(p) for p in self.target_ports()]
        for pod in self.scenario.pods:
            args = [sys.executable, PODSERVER_SCRIPT, "--pod", pod.name,
                    "--deadline", f"{deadline:.1f}"]
            for port in ports:
                args += ["--port", port]
            self._servers[pod.name] = self.session.spawn(self.pod_ns(pod.name), args)
        end = time.monotonic() + READY_TIMEOUT_SECONDS
        for name, proc in self._servers.items():
            line = _read_line(proc, end)
            if not line.startswith("listening"):
                err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
                raise LabError(f"pod server of {name} did not start: {line!r} {err[-500:]}")

    def pod_counts(self) -> dict[str, Any]:
        """Ask every pod server for its counts (``GET /__counts``), from the first node."""
        urls = []
        port = self.target_ports()[0]
        for pod in self.scenario.pods:
            urls.append(f"http://{self.addresses.pod_ips[pod.name]}:{port}/__counts")
        ns = self.node_ns(self.scenario.nodes[0].name)
        out = self.session.exec(
            ns, [sys.executable, TRAFFIC_SCRIPT, "counts", *urls], timeout=30
        ).stdout
        data = json.loads(out)
        return {pod.name: data[url] for pod, url in zip(self.scenario.pods, urls)}

    # -- rules ------------------------------------------------------------------------------
    def service_ports(self) -> list[ServicePort]:
        """The ServicePorts for the current pod state."""
        return self.scenario.service_ports(self.pod_state, self.addresses)

    def load_rules(self, node: str, *, reason: str) -> RuleLoad:
        """Render and load the rules of ``node``, timing the load."""
        mode = self.scenario.node(node).proxy_mode
        text = self.renderer(self.service_ports(), node, mode, self.addresses)
        ns = self.node_ns(node)
        if mode == "nftables" and node in self.rules_text and "delete table ip kube-proxy" not in text:
            text = "table ip kube-proxy\ndelete table ip kube-proxy\n" + text
        command = LOAD_COMMANDS.get(mode)
        if command is None:
            raise LabError(f"proxy_mode {mode!r} cannot be programmed in this lab")
        started = dt.datetime.now(dt.timezone.utc).isoformat()
        _, seconds = self.session.timed_exec(ns, command, input=text)
        if mode == "nftables":
            listing = self.session.exec(ns, ["nft", "-a", "list", "table", "ip", "kube-proxy"]).stdout
            rules = count_rules(listing, mode)
        else:
            rules = count_rules(text, mode)
        self.rules_text[node] = text
        load = RuleLoad(node, mode, reason, seconds, rules, " ".join(command), started)
        self.loads.append(load)
        for listener in list(self.listeners):
            listener()
        return load

    def apply_event(self, pod: str, action: str) -> list[RuleLoad]:
        """Change a pod's endpoint state (``unready``, ``ready``, ``add``) and resync every node."""
        spec = next(p for p in self.scenario.pods if p.name == pod)
        current = self.pod_state.get(pod, spec)
        if action == "unready":
            new = dataclasses.replace(current, ready=False, serving=False)
        elif action == "ready":
            new = dataclasses.replace(current, ready=True, serving=True, terminating=False)
        elif action == "add":
            new = dataclasses.replace(current, start_absent=False)
        else:
            raise LabError(f"unknown event action {action!r}")
        self.pod_state[pod] = new
        self.events.append({"pod": pod, "action": action, "time": dt.datetime.now(dt.timezone.utc).isoformat()})
        # a reload resets the rule counters: keep what they counted until now
        self.dumps_before_events.append({n.name: self.dump_rules(n.name) for n in self.scenario.nodes})
        return [self.load_rules(n.name, reason=f"{pod} {action}") for n in self.scenario.nodes]

    def pod_state_flags(self) -> dict[str, dict[str, bool]]:
        """Every scenario pod's ``ready``/``serving``/``terminating``/``present`` now."""
        flags = {}
        for spec in self.scenario.pods:
            pod = self.pod_state.get(spec.name, spec)
            flags[spec.name] = {"ready": pod.ready, "serving": pod.serving,
                                "terminating": pod.terminating,
                                "present": spec.name in self.pod_state and not pod.start_absent}
        return flags

    def rules_file_name(self, node: str) -> str:
        """``nft-ruleset.txt`` or ``iptables-save.txt``, after the node's proxy mode."""
        return "nft-ruleset.txt" if self.scenario.node(node).proxy_mode == "nftables" else "iptables-save.txt"

    def dump_rules(self, node: str) -> str:
        """The node's rules with counters (``iptables-*-save -c`` / ``nft list ruleset``)."""
        mode = self.scenario.node(node).proxy_mode
        return self.session.exec(self.node_ns(node), SAVE_COMMANDS[mode]).stdout

    # -- dumps ------------------------------------------------------------------------------
    def dump_node(self, node: str) -> dict[str, str]:
        """Raw outputs of one node: conntrack -L (stdout then stderr), conntrack -S, rules."""
        ns = self.node_ns(node)
        mode = self.scenario.node(node).proxy_mode
        ct = self.session.exec(ns, ["conntrack", "-L"])
        stats = self.session.exec(ns, ["conntrack", "-S"])
        rules = self.session.exec(ns, SAVE_COMMANDS[mode])
        rules_name = "nft-ruleset.txt" if mode == "nftables" else "iptables-save.txt"
        return {
            "conntrack.txt": ct.stdout + ct.stderr,
            "conntrack-stats.txt": stats.stdout,
            rules_name: rules.stdout,
        }


def _host(cidr: str, offset: int) -> str:
    import ipaddress

    return str(ipaddress.ip_network(cidr).network_address + offset)


def _read_line(proc: Any, end: float) -> str:
    """Read one stdout line from ``proc`` before the monotonic time ``end``."""
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, min(0.2, end - time.monotonic())))
        if ready:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            return proc.stdout.readline().strip()
    return ""
