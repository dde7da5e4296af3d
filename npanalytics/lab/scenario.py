"""Lab scenarios: the cluster, the clients and the traffic of one lab run (pure, no I/O but YAML).

A scenario is a YAML mapping::

    name: two-nodes-local
    nodes:
      - {name: node-a, zone: zone-a, proxy_mode: iptables-legacy}
      - {name: node-b, zone: zone-b, proxy_mode: iptables-legacy}
    pods:
      - {name: web-1, node: node-a, labels: {app: web}}
      - {name: web-2, node: node-a, labels: {app: web}, ready: true}
      - {name: web-3, node: node-b, labels: {app: web}}
    services:
      - name: web
        namespace: default
        type: NodePort
        selector: {app: web}
        externalTrafficPolicy: Local        # Cluster (default) | Local
        internalTrafficPolicy: Cluster
        sessionAffinity: None               # None | ClientIP
        sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
        ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
    clients: {count: 8, addressing: distinct}   # distinct | nat (all behind one NAT)
    # or {count: 2, addressing: distinct, nat_count: 4}: 2 own addresses + 4 hosts behind one NAT
    traffic:
      node_weights: {node-a: 1, node-b: 1}      # how an external LB spreads connections
      mode: new-connection-per-request          # or keep-alive
      requests_per_connection: 1                # keep-alive only
      connections: 1                            # keep-alive only: connections open at once
      requests: 600
      max_seconds: 30
    events:                                     # optional
      - {at_request: 300, pod: web-2, action: unready}   # unready | ready | add
      - {at_second: 5.0, pod: web-2, action: ready}      # seconds since the traffic started

An ``at_request`` event splits the traffic: requests ``1..k`` are sent, the event is
applied (every node's rules are re-rendered and reloaded, timed), then the rest is
sent. An ``at_second`` event is applied by a timer while the traffic runs. A pod with
``start_absent: true`` runs from the start but is no endpoint until its ``add`` event.

:func:`load_scenario` validates it (a :class:`LabError` names the field) and
returns a :class:`Scenario`; :meth:`Scenario.addresses` lays out the addresses and
:meth:`Scenario.service_ports` builds the :class:`~npanalytics.lab.model.ServicePort`
objects the rule renderers take.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import LabError
from .model import DEFAULT_AFFINITY_TIMEOUT_SECONDS, Endpoint, ServicePort
from .netns import PROXY_MODES

__all__ = [
    "NodeSpec",
    "PodSpec",
    "PortSpec",
    "ServiceSpec",
    "ClientSpec",
    "TrafficSpec",
    "EventSpec",
    "Scenario",
    "Addresses",
    "load_scenario",
    "scenario_from_dict",
    "bundled_scenarios",
]

TRAFFIC_MODES = ("new-connection-per-request", "keep-alive")
ADDRESSING = ("distinct", "nat")
EVENT_ACTIONS = ("unready", "ready", "add")
POLICIES = ("Cluster", "Local")
AFFINITIES = ("None", "ClientIP")
PROTOCOLS = ("TCP",)  # the load generator speaks HTTP over TCP
MAX_NODES = 16
MAX_PODS_PER_NODE = 200
MAX_CLIENTS = 2000  # fits 198.18.200.0/21
MAX_NAT_CLIENTS = 1000  # fits 198.18.208.0/22
MAX_REQUESTS = 200_000
MAX_SECONDS = 600.0
MAX_PARALLEL_CONNECTIONS = 256
MAX_SCENARIO_NAME = 40

# The address plan (all inside 198.18.0.0/15, avoiding 198.18.{10,20,30}.0/24).
FABRIC_NETWORK = ipaddress.ip_network("198.18.0.0/24")
NODE_HOST_OFFSET = 11  # node i -> 198.18.0.(11 + i)
CLIENT_GATEWAY = ipaddress.ip_address("198.18.0.200")  # the clients' (or the NAT's) fabric address
DISTINCT_CLIENT_NETWORK = ipaddress.ip_network("198.18.200.0/21")
NAT_INSIDE_NETWORK = ipaddress.ip_network("198.18.208.0/22")
POD_CIDR_BASE = ipaddress.ip_address("198.18.64.0")  # node i -> 198.18.(64 + i).0/24
CLUSTER_CIDR = ipaddress.ip_network("198.18.64.0/18")
CLUSTER_IP_BASE = ipaddress.ip_address("198.19.0.10")  # service port k -> 198.19.0.(10 + k)

_TOP_KEYS = ("name", "description", "nodes", "pods", "services", "clients", "traffic", "events")


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """A node: its own network namespace running one kube-proxy mode."""

    name: str
    zone: str = ""
    proxy_mode: str = "iptables-legacy"


@dataclasses.dataclass(frozen=True)
class PodSpec:
    """A pod: a namespace behind its node's bridge, serving HTTP on every targetPort."""

    name: str
    node: str
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    start_absent: bool = False  # True for pods that only appear through an ``add`` event


@dataclasses.dataclass(frozen=True)
class PortSpec:
    """One Service port."""

    name: str
    port: int
    target_port: int
    node_port: int
    protocol: str = "TCP"


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """A NodePort Service."""

    name: str
    namespace: str
    selector: Mapping[str, str]
    ports: tuple[PortSpec, ...]
    type: str = "NodePort"
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity: str = "None"
    affinity_timeout_seconds: int = DEFAULT_AFFINITY_TIMEOUT_SECONDS


@dataclasses.dataclass(frozen=True)
class ClientSpec:
    """The external clients: ``count`` source addresses, or ``count`` hosts behind one NAT.

    With ``addressing: distinct`` and ``nat_count: k``, ``k`` more hosts sit behind one
    NAT next to the ``count`` clients that keep their own address.
    """

    count: int = 1
    addressing: str = "distinct"
    nat_count: int = 0

    @property
    def distinct_count(self) -> int:
        """Clients whose own address reaches the nodes."""
        return self.count if self.addressing == "distinct" else 0

    @property
    def nat_hosts(self) -> int:
        """Clients behind the NAT."""
        return self.count if self.addressing == "nat" else self.nat_count

    @property
    def has_nat(self) -> bool:
        """Whether the run has a NAT namespace."""
        return self.nat_hosts > 0


@dataclasses.dataclass(frozen=True)
class TrafficSpec:
    """What the external load balancer and the clients do."""

    node_weights: Mapping[str, float]
    mode: str = "new-connection-per-request"
    requests_per_connection: int = 1
    requests: int = 100
    max_seconds: float = 30.0
    connections: int = 1  # keep-alive: connections kept open at once
    service: str = ""  # default: the first service
    port_name: str = ""  # default: its first port


@dataclasses.dataclass(frozen=True)
class EventSpec:
    """A change of the endpoint set mid-run: at request ``at_request`` or second ``at_second``."""

    pod: str
    action: str
    at_request: int | None = None
    at_second: float | None = None


@dataclasses.dataclass(frozen=True)
class Addresses:
    """The address plan of a scenario (see the module constants)."""

    node_ips: Mapping[str, str]
    pod_cidrs: Mapping[str, str]
    pod_ips: Mapping[str, str]
    cluster_ips: Mapping[str, str]  # service name -> ClusterIP
    client_ips: tuple[str, ...]  # the addresses the clients bind to
    client_gateway: str  # the clients' (or NAT's) fabric address
    fabric_network: str = str(FABRIC_NETWORK)
    cluster_cidr: str = str(CLUSTER_CIDR)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated lab scenario; build it with :func:`load_scenario`."""

    name: str
    nodes: tuple[NodeSpec, ...]
    pods: tuple[PodSpec, ...]
    services: tuple[ServiceSpec, ...]
    clients: ClientSpec
    traffic: TrafficSpec
    events: tuple[EventSpec, ...] = ()
    description: str = ""

    @property
    def proxy_modes(self) -> list[str]:
        """The distinct proxy modes the nodes run."""
        return list(dict.fromkeys(n.proxy_mode for n in self.nodes))

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    def target_service(self) -> tuple[ServiceSpec, PortSpec]:
        """The Service and port the traffic goes to."""
        svc = next(s for s in self.services if s.name == (self.traffic.service or s.name))
        port = next(p for p in svc.ports if p.name == (self.traffic.port_name or p.name))
        return svc, port

    def addresses(self) -> Addresses:
        """Lay out node, pod, ClusterIP and client addresses (deterministic)."""
        node_ips, pod_cidrs, pod_ips = {}, {}, {}
        fabric = list(FABRIC_NETWORK.hosts())
        for i, node in enumerate(self.nodes):
            node_ips[node.name] = str(fabric[NODE_HOST_OFFSET - 1 + i])
            base = ipaddress.ip_address(int(POD_CIDR_BASE) + 256 * i)
            pod_cidrs[node.name] = f"{base}/24"
            on_node = [p for p in self.pods if p.node == node.name]
            for j, pod in enumerate(on_node):
                pod_ips[pod.name] = str(base + 10 + j)
        cluster_ips = {s.name: str(CLUSTER_IP_BASE + k) for k, s in enumerate(self.services)}
        client_ips = tuple(
            [str(DISTINCT_CLIENT_NETWORK.network_address + 10 + k) for k in range(self.clients.distinct_count)]
            + [str(NAT_INSIDE_NETWORK.network_address + 10 + k) for k in range(self.clients.nat_hosts)]
        )
        return Addresses(node_ips, pod_cidrs, pod_ips, cluster_ips, client_ips, str(CLIENT_GATEWAY))

    def service_ports(
        self, pod_state: Mapping[str, PodSpec] | None = None, addresses: Addresses | None = None
    ) -> list[ServicePort]:
        """The :class:`ServicePort` objects kube-proxy would program for this pod state.

        Parameters
        ----------
        pod_state : mapping of pod name to PodSpec, optional
            The current pods (after events); default: the initial state, without the
            pods that start absent.
        addresses : Addresses, optional
            Default: :meth:`addresses`.
        """
        addresses = addresses or self.addresses()
        if pod_state is None:
            pod_state = {p.name: p for p in self.pods if not p.start_absent}
        zones = {n.name: n.zone for n in self.nodes}
        result = []
        for svc in self.services:
            members = [
                p for p in pod_state.values()
                if all(p.labels.get(k) == v for k, v in svc.selector.items())
            ]
            for port in svc.ports:
                endpoints = tuple(
                    Endpoint(
                        ip=addresses.pod_ips[p.name], port=port.target_port, node=p.node, pod=p.name,
                        zone=zones[p.node], ready=p.ready, serving=p.serving, terminating=p.terminating,
                    )
                    for p in members
                )
                result.append(ServicePort(
                    namespace=svc.namespace, service=svc.name, port_name=port.name,
                    protocol=port.protocol.lower(), cluster_ip=addresses.cluster_ips[svc.name],
                    port=port.port, node_port=port.node_port,
                    external_traffic_policy=svc.external_traffic_policy,  # type: ignore[arg-type]
                    internal_traffic_policy=svc.internal_traffic_policy,  # type: ignore[arg-type]
                    session_affinity=svc.session_affinity,  # type: ignore[arg-type]
                    affinity_timeout_seconds=svc.affinity_timeout_seconds,
                    endpoints=endpoints,
                ))
        return result

    def to_dict(self) -> dict[str, Any]:
        """A plain-data view (for recording manifests)."""
        return dataclasses.asdict(self)


# -- validation helpers -------------------------------------------------------------------


def _fail(field: str, message: str) -> LabError:
    return LabError(f"scenario field {field}: {message}")


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(field, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(field, f"expected a non-empty list, got {value!r}")
    return value


def _keys(data: Mapping[str, Any], allowed: tuple[str, ...], field: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(f"{field}.{key}", f"unknown key (allowed: {', '.join(allowed)}){hint}")


def _require(data: Mapping[str, Any], key: str, field: str) -> Any:
    if key not in data:
        raise _fail(f"{field}.{key}", "is required")
    return data[key]


def _choice(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _fail(field, f"must be one of {', '.join(allowed)}; got {value!r}{hint}")
    return value


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(field, f"expected an integer in [{low}, {high}], got {value!r}")
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _fail(field, f"expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, f"expected true or false, got {value!r}")
    return value


def _name(value: Any, field: str, max_length: int = 20) -> str:
    ok = isinstance(value, str) and 0 < len(value) <= max_length and value[0].isalnum() and all(
        c.isalnum() or c == "-" for c in value
    )
    if not ok:
        raise _fail(field, f"expected a short DNS-style name (letters, digits, '-'; <= {max_length}), got {value!r}")
    return value


def _labels(value: Any, field: str) -> dict[str, str]:
    data = _mapping(value, field)
    return {str(k): str(v) for k, v in data.items()}


def _unique(names: list[str], field: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise _fail(field, f"duplicate name {name!r}")
        seen.add(name)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario mapping (as loaded from YAML) and build a :class:`Scenario`.

    Raises
    ------
    LabError
        Naming the offending field, what was expected and what came.
    """
    data = _mapping(data, "(top level)")
    _keys(data, _TOP_KEYS, "(top level)")
    # the scenario name is in no namespace or interface name, so it may be longer
    name = _name(_require(data, "name", "(top level)"), "name", MAX_SCENARIO_NAME)

    nodes = []
    for i, raw in enumerate(_list(_require(data, "nodes", "(top level)"), "nodes")):
        f = f"nodes[{i}]"
        raw = _mapping(raw, f)
        _keys(raw, ("name", "zone", "proxy_mode"), f)
        nodes.append(NodeSpec(
            name=_name(_require(raw, "name", f), f"{f}.name"),
            zone=str(raw.get("zone", "")),
            proxy_mode=_choice(raw.get("proxy_mode", "iptables-legacy"), PROXY_MODES, f"{f}.proxy_mode"),
        ))
    if len(nodes) > MAX_NODES:
        raise _fail("nodes", f"at most {MAX_NODES} nodes, got {len(nodes)}")
    _unique([n.name for n in nodes], "nodes")
    node_names = [n.name for n in nodes]

    pods = []
    for i, raw in enumerate(_list(_require(data, "pods", "(top level)"), "pods")):
        f = f"pods[{i}]"
        raw = _mapping(raw, f)
        _keys(raw, ("name", "node", "labels", "ready", "serving", "terminating", "start_absent"), f)
        pod_node = _require(raw, "node", f)
        _choice(pod_node, tuple(node_names), f"{f}.node")
        ready = _bool(raw.get("ready", True), f"{f}.ready")
        pods.append(PodSpec(
            name=_name(_require(raw, "name", f), f"{f}.name"),
            node=pod_node,
            labels=_labels(raw.get("labels", {}), f"{f}.labels"),
            ready=ready,
            serving=_bool(raw.get("serving", ready), f"{f}.serving"),
            terminating=_bool(raw.get("terminating", False), f"{f}.terminating"),
            start_absent=_bool(raw.get("start_absent", False), f"{f}.start_absent"),
        ))
    _unique([p.name for p in pods], "pods")
    for node in node_names:
        if sum(p.node == node for p in pods) > MAX_PODS_PER_NODE:
            raise _fail("pods", f"at most {MAX_PODS_PER_NODE} pods per node ({node})")

    services = []
    node_ports: set[int] = set()
    for i, raw in enumerate(_list(_require(data, "services", "(top level)"), "services")):
        f = f"services[{i}]"
        raw = _mapping(raw, f)
        _keys(raw, ("name", "namespace", "type", "selector", "ports", "externalTrafficPolicy",
                    "internalTrafficPolicy", "sessionAffinity", "sessionAffinityConfig"), f)
        svc_type = raw.get("type", "NodePort")
        if svc_type != "NodePort":
            raise _fail(f"{f}.type", f"the lab builds NodePort Services only; got {svc_type!r}")
        ports = []
        for j, rp in enumerate(_list(_require(raw, "ports", f), f"{f}.ports")):
            g = f"{f}.ports[{j}]"
            rp = _mapping(rp, g)
            _keys(rp, ("name", "port", "targetPort", "nodePort", "protocol"), g)
            port = _int(_require(rp, "port", g), f"{g}.port", 1, 65535)
            node_port = _int(_require(rp, "nodePort", g), f"{g}.nodePort", 30000, 32767)
            if node_port in node_ports:
                raise _fail(f"{g}.nodePort", f"{node_port} is already used by another port")
            node_ports.add(node_port)
            ports.append(PortSpec(
                name=str(rp.get("name", "")),
                port=port,
                target_port=_int(rp.get("targetPort", port), f"{g}.targetPort", 1, 65535),
                node_port=node_port,
                protocol=_choice(rp.get("protocol", "TCP"), PROTOCOLS, f"{g}.protocol"),
            ))
        if len(ports) > 1 and any(not p.name for p in ports):
            raise _fail(f"{f}.ports", "every port needs a name when a Service has several")
        affinity = _choice(raw.get("sessionAffinity", "None"), AFFINITIES, f"{f}.sessionAffinity")
        timeout = DEFAULT_AFFINITY_TIMEOUT_SECONDS
        if "sessionAffinityConfig" in raw:
            g = f"{f}.sessionAffinityConfig"
            cfg = _mapping(raw["sessionAffinityConfig"], g)
            _keys(cfg, ("clientIP",), g)
            cip = _mapping(cfg.get("clientIP", {}), f"{g}.clientIP")
            _keys(cip, ("timeoutSeconds",), f"{g}.clientIP")
            timeout = _int(cip.get("timeoutSeconds", timeout), f"{g}.clientIP.timeoutSeconds", 1, 86400)
        selector = _labels(_require(raw, "selector", f), f"{f}.selector")
        if not selector:
            raise _fail(f"{f}.selector", "must select at least one label")
        services.append(ServiceSpec(
            name=_name(_require(raw, "name", f), f"{f}.name"),
            namespace=_name(raw.get("namespace", "default"), f"{f}.namespace"),
            selector=selector,
            ports=tuple(ports),
            external_traffic_policy=_choice(
                raw.get("externalTrafficPolicy", "Cluster"), POLICIES, f"{f}.externalTrafficPolicy"),
            internal_traffic_policy=_choice(
                raw.get("internalTrafficPolicy", "Cluster"), POLICIES, f"{f}.internalTrafficPolicy"),
            session_affinity=affinity,
            affinity_timeout_seconds=timeout,
        ))
    _unique([s.name for s in services], "services")

    f = "clients"
    raw = _mapping(data.get("clients", {}), f)
    _keys(raw, ("count", "addressing", "nat_count"), f)
    clients = ClientSpec(
        count=_int(raw.get("count", 1), f"{f}.count", 1,
                   MAX_CLIENTS if raw.get("addressing", "distinct") == "distinct" else MAX_NAT_CLIENTS),
        addressing=_choice(raw.get("addressing", "distinct"), ADDRESSING, f"{f}.addressing"),
        nat_count=_int(raw.get("nat_count", 0), f"{f}.nat_count", 0, MAX_NAT_CLIENTS),
    )
    if clients.addressing == "nat" and clients.nat_count:
        raise _fail(f"{f}.nat_count", "only with addressing distinct (with nat, all clients are behind the NAT)")

    f = "traffic"
    raw = _mapping(_require(data, "traffic", "(top level)"), f)
    _keys(raw, ("node_weights", "mode", "requests_per_connection", "connections", "requests",
                "max_seconds", "service", "port_name"), f)
    weights_raw = _mapping(raw.get("node_weights", {n: 1 for n in node_names}), f"{f}.node_weights")
    weights = {}
    for node, weight in weights_raw.items():
        _choice(node, tuple(node_names), f"{f}.node_weights")
        weights[node] = _number(weight, f"{f}.node_weights.{node}", 0, 1e6)
    if not any(weights.values()):
        raise _fail(f"{f}.node_weights", "at least one node needs a positive weight")
    mode = _choice(raw.get("mode", TRAFFIC_MODES[0]), TRAFFIC_MODES, f"{f}.mode")
    per_conn = _int(raw.get("requests_per_connection", 1), f"{f}.requests_per_connection", 1, 100_000)
    if mode == "new-connection-per-request" and per_conn != 1:
        raise _fail(f"{f}.requests_per_connection", "must be 1 with mode new-connection-per-request")
    parallel = _int(raw.get("connections", 1), f"{f}.connections", 1, MAX_PARALLEL_CONNECTIONS)
    if mode == "new-connection-per-request" and parallel != 1:
        raise _fail(f"{f}.connections", "must be 1 with mode new-connection-per-request")
    service_name = str(raw.get("service", ""))
    if service_name:
        _choice(service_name, tuple(s.name for s in services), f"{f}.service")
    target = next(s for s in services if s.name == (service_name or s.name))
    port_name = str(raw.get("port_name", ""))
    if port_name:
        _choice(port_name, tuple(p.name for p in target.ports), f"{f}.port_name")
    traffic = TrafficSpec(
        node_weights=weights,
        mode=mode,
        requests_per_connection=per_conn,
        requests=_int(_require(raw, "requests", f), f"{f}.requests", 1, MAX_REQUESTS),
        max_seconds=_number(raw.get("max_seconds", 30.0), f"{f}.max_seconds", 0.1, MAX_SECONDS),
        connections=parallel,
        service=service_name,
        port_name=port_name,
    )

    events = []
    pod_names = tuple(p.name for p in pods)
    for i, rev in enumerate(data.get("events") or []):
        f = f"events[{i}]"
        rev = _mapping(rev, f)
        _keys(rev, ("pod", "action", "at_request", "at_second"), f)
        pod = _choice(_require(rev, "pod", f), pod_names, f"{f}.pod")
        action = _choice(_require(rev, "action", f), EVENT_ACTIONS, f"{f}.action")
        if ("at_request" in rev) == ("at_second" in rev):
            raise _fail(f, "give exactly one of at_request or at_second")
        at_request = (
            _int(rev["at_request"], f"{f}.at_request", 1, traffic.requests - 1)
            if "at_request" in rev else None
        )
        at_second = (
            _number(rev["at_second"], f"{f}.at_second", 0.0, traffic.max_seconds)
            if "at_second" in rev else None
        )
        events.append(EventSpec(pod=pod, action=action, at_request=at_request, at_second=at_second))
    for pod in pods:
        if pod.start_absent and not any(e.pod == pod.name and e.action == "add" for e in events):
            raise _fail("pods", f"pod {pod.name} has start_absent but no 'add' event")

    return Scenario(
        name=name, nodes=tuple(nodes), pods=tuple(pods), services=tuple(services),
        clients=clients, traffic=traffic, events=tuple(events),
        description=str(data.get("description", "")),
    )


def load_scenario(source: str | os.PathLike[str] | Mapping[str, Any]) -> Scenario:
    """Load and validate a scenario from a YAML file, a YAML string, or a mapping.

    A bare name such as ``"two-nodes-local"`` loads a bundled scenario
    (``npanalytics/lab/scenarios/<name>.yaml``).
    """
    if isinstance(source, Mapping):
        return scenario_from_dict(source)
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "lab scenarios are YAML files and need pyyaml: pip install 'npanalytics[lab]'"
        ) from None
    text = str(source)
    path = Path(text)
    bundled = Path(__file__).with_name("scenarios") / f"{text}.yaml"
    if "\n" not in text and path.suffix in (".yaml", ".yml") and path.exists():
        text, where = path.read_text(), str(path)
    elif "\n" not in text and bundled.exists():
        text, where = bundled.read_text(), str(bundled)
    elif "\n" not in text and ":" not in text:
        raise LabError(
            f"no scenario file {text!r} and no bundled scenario of that name "
            f"(bundled: {', '.join(bundled_scenarios())})"
        )
    else:
        where = "<string>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabError(f"{where}: not valid YAML: {exc}") from None
    try:
        return scenario_from_dict(data)
    except LabError as exc:
        raise LabError(f"{where}: {exc}") from None


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``npanalytics/lab/scenarios/``."""
    return sorted(p.stem for p in (Path(__file__).with_name("scenarios")).glob("*.yaml"))
