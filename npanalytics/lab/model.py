"""The cluster state the lab renders into kube-proxy rules (pure data, no I/O).

These dataclasses are the input of the rule renderers
(:mod:`npanalytics.lab.render_iptables`, :mod:`npanalytics.lab.render_nftables`)
and of the Kubernetes-object and metrics writers: one description of a Service
port and its endpoints, rendered the way kube-proxy renders it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

TrafficPolicy = Literal["Cluster", "Local"]
Affinity = Literal["None", "ClientIP"]

DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800
MASQUERADE_MARK = 0x4000


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One endpoint (pod address and target port) of a Service port.

    ``ready``/``serving``/``terminating`` follow EndpointSlice conditions.
    """

    ip: str
    port: int
    node: str
    pod: str = ""
    zone: str = ""
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def address(self) -> str:
        """``ip:port`` (``[ip]:port`` for IPv6), as kube-proxy joins it."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclasses.dataclass(frozen=True)
class ServicePort:
    """One port of a Service, with everything kube-proxy needs to program it."""

    namespace: str
    service: str
    port_name: str
    protocol: str  # "tcp", "udp" or "sctp" (lower case, as in chain hashes)
    cluster_ip: str
    port: int
    node_port: int | None = None
    external_traffic_policy: TrafficPolicy = "Cluster"
    internal_traffic_policy: TrafficPolicy = "Cluster"
    session_affinity: Affinity = "None"
    affinity_timeout_seconds: int = DEFAULT_AFFINITY_TIMEOUT_SECONDS
    external_ips: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def service_port_name(self) -> str:
        """``ns/name:port`` (``ns/name`` for an unnamed port)."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    def usable_endpoints(self, node: str | None = None) -> list[Endpoint]:
        """Endpoints kube-proxy would use, sorted by ``ip:port`` string as kube-proxy sorts them.

        Ready endpoints; if none is ready, the serving-and-terminating ones
        (``CategorizeEndpoints``). With ``node``, only that node's endpoints
        (the Local-policy set), with the same fallback applied to that set.
        """
        pool = [e for e in self.endpoints if node is None or e.node == node]
        chosen = [e for e in pool if e.ready]
        if not chosen:
            chosen = [e for e in pool if e.serving and e.terminating]
        return sorted(chosen, key=lambda e: e.address)
