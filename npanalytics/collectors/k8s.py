"""Kubernetes API objects: endpoint snapshots, EndpointSlice churn, and ``kubectl`` dumps.

Three entry points return the same frames (kinds ``k8s_services``,
``k8s_endpoints``, ``k8s_pods``, ``k8s_nodes``; the kube-state-metrics collector
returns the same kinds, so analysis does not care where a frame came from):

* :func:`get_endpoint_snapshot` lists Services, EndpointSlices, Pods and Nodes
  from a live API server with the official ``kubernetes`` client (kubeconfig,
  a named context, or the in-cluster service account);
* :func:`watch_endpoints` watches EndpointSlices for a bounded time and returns
  every endpoint change as an ``endpoint_churn`` frame;
* :func:`read_k8s_objects` reads the same objects from ``kubectl get ... -o
  json`` or ``-o yaml`` dumps (a List, a single object, several YAML documents
  or concatenated JSON documents), and from saved API list responses.

The API is read with ``_preload_content=False``: responses are parsed here as
plain JSON (the same code then reads live responses and dumps alike) and the raw
list responses are kept for datasets (:attr:`EndpointSnapshot.raw`).

Credentials: bearer tokens, client keys and certificates stay inside the
``kubernetes`` client's configuration. No frame, note, raw response, error
message or warning built here contains them; errors name the server URL, the
verb and the resource only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import CollectorError, ParseError
from ..schemas import frame_from_records, schema_table, validate_frame
from ._proxy import service_port_name
from .prometheus import _shown
from ._source import Source, read_source_text

__all__ = [
    "EndpointSnapshot",
    "get_endpoint_snapshot",
    "watch_endpoints",
    "read_k8s_objects",
    "read_endpoint_watch_log",
    "SNAPSHOT_KINDS",
    "DEFAULT_PAGE_LIMIT",
]

#: Frame attribute of :class:`EndpointSnapshot` -> frame kind.
SNAPSHOT_KINDS: Mapping[str, str] = {
    "services": "k8s_services",
    "endpoints": "k8s_endpoints",
    "pods": "k8s_pods",
    "nodes": "k8s_nodes",
}
#: Items per list page (``limit``); kubectl uses 500 as well.
DEFAULT_PAGE_LIMIT = 500
#: How many times a list restarts after its continue token expired (410) before giving up.
MAX_LIST_RESTARTS = 5
#: How many times a watch reconnects after a dropped connection before giving up.
MAX_WATCH_RECONNECTS = 10
#: Default timeout of one list request (seconds).
DEFAULT_REQUEST_TIMEOUT = 60.0
#: The kube-proxy defaults the API applies to unset EndpointSlice conditions.
CONDITION_DEFAULTS: Mapping[str, bool] = {"ready": True, "serving": True, "terminating": False}
#: Default ClientIP affinity timeout (``DefaultClientIPServiceAffinitySeconds``).
DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")

# kind -> resource plural; the kinds read_k8s_objects understands.
_KINDS: Mapping[str, str] = {
    "Service": "services",
    "EndpointSlice": "endpointslices",
    "Endpoints": "endpoints",
    "Pod": "pods",
    "Node": "nodes",
}
# resource -> (client API class, cluster-wide method, namespaced method or None, API group)
_CALLS: Mapping[str, tuple[str, str, str | None, str]] = {
    "services": ("CoreV1Api", "list_service_for_all_namespaces", "list_namespaced_service", ""),
    "endpointslices": ("DiscoveryV1Api", "list_endpoint_slice_for_all_namespaces",
                       "list_namespaced_endpoint_slice", "discovery.k8s.io"),
    "endpoints": ("CoreV1Api", "list_endpoints_for_all_namespaces", "list_namespaced_endpoints", ""),
    "pods": ("CoreV1Api", "list_pod_for_all_namespaces", "list_namespaced_pod", ""),
    "nodes": ("CoreV1Api", "list_node", None, ""),
}
_FALLBACK_NOTE = (
    "the API server at {host} does not serve EndpointSlices (discovery.k8s.io/v1): "
    "endpoints come from the legacy v1 Endpoints objects (serving/terminating unknown for "
    "not-ready addresses, no zones or hints, terminating pods left out)"
)


# --- the result -----------------------------------------------------------------------------

@dataclasses.dataclass
class EndpointSnapshot:
    """The cluster state one snapshot (or one dump) holds, as four frames.

    Attributes
    ----------
    services : pandas.DataFrame
        Kind ``k8s_services``: one row per Service port.
    endpoints : pandas.DataFrame
        Kind ``k8s_endpoints``: one row per endpoint address, slice and port
        (from EndpointSlices, or from legacy Endpoints where a server or a dump
        has no slices; the ``source`` column says which).
    pods : pandas.DataFrame
        Kind ``k8s_pods``: one row per pod.
    nodes : pandas.DataFrame
        Kind ``k8s_nodes``: one row per node.
    resource_versions : dict of str to str
        ``metadata.resourceVersion`` of each list (by resource plural:
        ``services``, ``endpointslices`` or ``endpoints``, ``pods``, ``nodes``);
        every page of one list shares it. Empty for dumps without one.
    notes : list of str
        What the reader had to know or decide: an Endpoints fallback, list
        restarts after an expired continue token, objects of other kinds
        skipped on request.
    raw : dict of str to bytes
        The list responses exactly as received, ``"<resource>/page-0001.json"``
        ... (only the pages of the list that was used; empty for dumps).
        :func:`read_k8s_objects` reads each page back into the same rows.
    taken_at : pandas.Timestamp or None
        When the snapshot was taken (UTC); ``None`` for dumps.
    server : str or None
        URL of the API server (without credentials); ``None`` for dumps.
    """

    services: pd.DataFrame
    endpoints: pd.DataFrame
    pods: pd.DataFrame
    nodes: pd.DataFrame
    resource_versions: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    raw: dict[str, bytes] = dataclasses.field(default_factory=dict)
    taken_at: pd.Timestamp | None = None
    server: str | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The four frames by frame kind (``{"k8s_services": ..., ...}``)."""
        return {kind: getattr(self, attr) for attr, kind in SNAPSHOT_KINDS.items()}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{attr} ({len(getattr(self, attr))} rows)" for attr in SNAPSHOT_KINDS)
        return f"<EndpointSnapshot: {sizes}; {len(self.notes)} note(s)>"


# --- objects -> rows ------------------------------------------------------------------------

class _BadObject(Exception):
    """An object lacks something every object of its kind has; the message says what."""


def _meta(obj: Mapping[str, Any], kind: str) -> tuple[str, str, Mapping[str, Any]]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise _BadObject(f"a {kind} with metadata.name")
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise _BadObject(f"a {kind} whose metadata.namespace is a string")
    # a namespaced object written without a namespace (a manifest) lives in "default"
    return namespace or ("" if kind == "Node" else "default"), meta["name"], meta


def _labels_json(meta: Mapping[str, Any]) -> str:
    return json.dumps(dict(meta.get("labels") or {}), sort_keys=True)


def _joined(values: Sequence[Any] | None) -> str:
    return ",".join(str(v) for v in values or [])


def _protocol(value: Any) -> str:
    return str(value or "TCP").lower()


def _service_rows(obj: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    namespace, name, meta = _meta(obj, "Service")
    spec = obj.get("spec") or {}
    affinity = spec.get("sessionAffinity")
    timeout = None
    if affinity == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    base = {
        "namespace": namespace,
        "service": name,
        "type": spec.get("type") or "ClusterIP",
        "cluster_ip": spec.get("clusterIP"),
        "cluster_ips": _joined(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])),
        "external_traffic_policy": spec.get("externalTrafficPolicy"),
        "internal_traffic_policy": spec.get("internalTrafficPolicy"),
        "session_affinity": affinity,
        "session_affinity_timeout_seconds": timeout,
        "traffic_distribution": spec.get("trafficDistribution"),
        "health_check_node_port": spec.get("healthCheckNodePort"),
        "labels": _labels_json(meta),
        "source": source,
    }
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        raise _BadObject("a Service whose spec.ports is a list")
    if not ports:
        return [{**base, "port_name": None, "protocol": None, "port": None, "target_port": "",
                 "node_port": None, "service_port_name": None}]
    rows = []
    for port in ports:
        if not isinstance(port, Mapping) or not isinstance(port.get("port"), int):
            raise _BadObject("a Service port with a numeric 'port'")
        port_name = port.get("name") or ""
        target = port.get("targetPort", port["port"])  # the API defaults targetPort to port
        rows.append({
            **base,
            "port_name": port_name,
            "protocol": _protocol(port.get("protocol")),
            "port": port["port"],
            "target_port": str(target),
            "node_port": port.get("nodePort"),
            "service_port_name": service_port_name(namespace, name, port_name),
        })
    return rows


def _slice_ports(ports: Any, kind: str) -> list[tuple[str | None, str | None, int | None]]:
    if not ports:
        return [(None, None, None)]
    if not isinstance(ports, list):
        raise _BadObject(f"an {kind} whose ports is a list")
    out = []
    for port in ports:
        if not isinstance(port, Mapping):
            raise _BadObject(f"an {kind} port as a mapping")
        number = port.get("port")
        if number is not None and not isinstance(number, int):
            raise _BadObject(f"an {kind} port whose 'port' is a number")
        out.append((port.get("name") or "", _protocol(port.get("protocol")), number))
    return out


def _hints(hints: Mapping[str, Any] | None) -> str:
    hints = hints or {}
    zones = sorted(z.get("name", "") for z in hints.get("forZones") or [])
    nodes = sorted(n.get("name", "") for n in hints.get("forNodes") or [])
    return ",".join(n for n in zones + nodes if n)


def _slice_rows(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    namespace, name, meta = _meta(obj, "EndpointSlice")
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    ports = _slice_ports(obj.get("ports"), "EndpointSlice")
    endpoints = obj.get("endpoints") or []
    if not isinstance(endpoints, list):
        raise _BadObject("an EndpointSlice whose endpoints is a list")
    rows = []
    for endpoint in endpoints:
        if not isinstance(endpoint, Mapping) or not isinstance(endpoint.get("addresses"), list):
            raise _BadObject("an EndpointSlice endpoint with a list of addresses")
        conditions = endpoint.get("conditions") or {}
        flags = {k: conditions.get(k) if conditions.get(k) is not None else default
                 for k, default in CONDITION_DEFAULTS.items()}
        topology = endpoint.get("topology") or {}  # discovery.k8s.io/v1beta1
        node = endpoint.get("nodeName") or topology.get("kubernetes.io/hostname")
        zone = endpoint.get("zone") or topology.get("topology.kubernetes.io/zone")
        ref = endpoint.get("targetRef") or {}
        for address in endpoint["addresses"]:
            for port_name, protocol, port in ports:
                rows.append({
                    "namespace": namespace, "service": service, "slice": name,
                    "port_name": port_name, "protocol": protocol, "port": port,
                    "address": address, **flags, "node": node, "zone": zone,
                    "hints": _hints(endpoint.get("hints")),
                    "target_pod": ref.get("name") if ref.get("kind") == "Pod" else None,
                    "service_port_name": (service_port_name(namespace, service, port_name)
                                          if service and port_name is not None else None),
                    "source": "endpointslice",
                })
    return rows


def _endpoints_object_rows(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    namespace, name, _ = _meta(obj, "Endpoints")
    subsets = obj.get("subsets") or []
    if not isinstance(subsets, list):
        raise _BadObject("an Endpoints object whose subsets is a list")
    rows = []
    for subset in subsets:
        ports = _slice_ports(subset.get("ports"), "Endpoints")
        groups = (("addresses", {"ready": True, "serving": True, "terminating": False}),
                  ("notReadyAddresses", {"ready": False, "serving": None, "terminating": None}))
        for field, flags in groups:
            for address in subset.get(field) or []:
                if not isinstance(address, Mapping) or not isinstance(address.get("ip"), str):
                    raise _BadObject(f"an Endpoints {field} entry with an 'ip'")
                ref = address.get("targetRef") or {}
                for port_name, protocol, port in ports:
                    rows.append({
                        "namespace": namespace, "service": name, "slice": name,
                        "port_name": port_name, "protocol": protocol, "port": port,
                        "address": address["ip"], **flags, "node": address.get("nodeName"),
                        "zone": None, "hints": "",
                        "target_pod": ref.get("name") if ref.get("kind") == "Pod" else None,
                        "service_port_name": (service_port_name(namespace, name, port_name)
                                              if port_name is not None else None),
                        "source": "endpoints",
                    })
    return rows


def _condition(conditions: Any, kind: str) -> bool | None:
    for condition in conditions or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            status = condition.get("status")
            return True if status == "True" else False if status == "False" else None
    return None


def _pod_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    namespace, name, meta = _meta(obj, "Pod")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
    return {
        "namespace": namespace,
        "pod": name,
        "node": spec.get("nodeName"),
        "host_ip": status.get("hostIP"),
        "pod_ip": status.get("podIP"),
        "pod_ips": _joined(ip.get("ip") for ip in status.get("podIPs") or []),
        "phase": status.get("phase"),
        "ready": _condition(status.get("conditions"), "Ready"),
        "terminating": meta.get("deletionTimestamp") is not None,
        "owner_kind": owner.get("kind"),
        "owner_name": owner.get("name"),
        "labels": _labels_json(meta),
    }


def _node_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    _, name, meta = _meta(obj, "Node")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}

    def address(kind: str) -> str | None:
        return next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == kind), None)

    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return {
        "node": name,
        "internal_ip": address("InternalIP"),
        "external_ip": address("ExternalIP"),
        "zone": next((labels[k] for k in ZONE_LABELS if labels.get(k)), None),
        "region": next((labels[k] for k in REGION_LABELS if labels.get(k)), None),
        "ready": _condition(status.get("conditions"), "Ready"),
        "pod_cidr": _joined(cidrs),
    }


_ROWS: Mapping[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "endpointslices": _slice_rows,
    "endpoints": _endpoints_object_rows,
    "pods": lambda o: [_pod_row(o)],
    "nodes": lambda o: [_node_row(o)],
}


def _rows(resource: str, obj: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    if resource == "services":
        return _service_rows(obj, source)
    return _ROWS[resource](obj)


def _frames(rows: Mapping[str, list[dict[str, Any]]]) -> dict[str, pd.DataFrame]:
    """Frames by snapshot attribute from rows by resource (slices and Endpoints both feed endpoints)."""
    optional = {
        "k8s_services": ("labels", "source"),
        "k8s_endpoints": ("source",),
        "k8s_pods": ("labels",),
        "k8s_nodes": ("pod_cidr",),
    }
    by_attr = {
        "services": rows.get("services", []),
        "endpoints": rows.get("endpointslices", []) + rows.get("endpoints", []),
        "pods": rows.get("pods", []),
        "nodes": rows.get("nodes", []),
    }
    frames = {}
    for attr, kind in SNAPSHOT_KINDS.items():
        frames[attr] = validate_frame(frame_from_records(by_attr[attr], kind, optional=optional[kind]), kind)
    return frames


# --- the kubernetes client ------------------------------------------------------------------

def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Kubernetes API collector needs the kubernetes client: "
            "pip install 'npanalytics[k8s]'"
        ) from None
    return kubernetes


def _api_client(client: Any, kubeconfig: str | os.PathLike[str] | None, context: str | None) -> tuple[Any, bool]:
    """``(ApiClient, owned)``: the given client, or one from a kubeconfig or the in-cluster config."""
    if client is not None:
        if kubeconfig is not None or context is not None:
            raise ValueError("pass either client or kubeconfig/context, not both")
        if not hasattr(client, "call_api"):
            raise TypeError(f"client must be a kubernetes.client.ApiClient, got {type(client).__name__}")
        return client, False
    k8s = _kubernetes()
    if kubeconfig is None and context is None and not _default_kubeconfig_exists() \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s.client.Configuration()
        try:
            k8s.config.load_incluster_config(client_configuration=configuration)
        except k8s.config.ConfigException as exc:
            raise CollectorError(f"in-cluster configuration could not be loaded: {exc}") from None
        return k8s.client.ApiClient(configuration), True
    if kubeconfig is not None:
        kubeconfig = Path(kubeconfig).expanduser()
    where = str(kubeconfig) if kubeconfig is not None else "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise CollectorError(f"{where}: no such kubeconfig file")
    try:
        api = k8s.config.new_client_from_config(
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context, persist_config=False)
    except k8s.config.ConfigException as exc:
        contexts = _context_names(k8s, kubeconfig)
        hint = f"; its contexts: {', '.join(contexts)}" if contexts else ""
        raise CollectorError(f"{where}: cannot use it ({_first_line(exc)}){hint}") from None
    except (OSError, ValueError) as exc:
        raise CollectorError(f"{where}: not a readable kubeconfig ({type(exc).__name__})") from None
    return api, True


def _default_kubeconfig_exists() -> bool:
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep)
    paths = [p for p in paths if p] or [os.path.expanduser("~/.kube/config")]
    return any(Path(p).is_file() for p in paths)


def _context_names(k8s: Any, kubeconfig: Any) -> list[str]:
    try:
        contexts, _ = k8s.config.list_kube_config_contexts(
            config_file=str(kubeconfig) if kubeconfig is not None else None)
        return [c["name"] for c in contexts]
    except Exception:  # noqa: BLE001 - only a hint for an error message
        return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class _Api:
    """The list/watch calls of one resource, with errors mapped to CollectorError."""

    def __init__(self, api_client: Any, resource: str, namespace: str | None, label_selector: str | None,
                 request_timeout: float) -> None:
        k8s = _kubernetes()
        cls, cluster_method, namespaced_method, group = _CALLS[resource]
        api = getattr(k8s.client, cls)(api_client)
        self.resource = resource
        self.group = group
        self.namespace = namespace if namespaced_method else None
        self.host = _shown(str(api_client.configuration.host))
        self.request_timeout = request_timeout
        method = getattr(api, namespaced_method if self.namespace else cluster_method)
        kwargs: dict[str, Any] = {"namespace": self.namespace} if self.namespace else {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        self._call = lambda **kw: method(**kwargs, **kw, _preload_content=False)

    @property
    def what(self) -> str:
        group = f".{self.group}" if self.group else ""
        scope = f' in namespace "{self.namespace}"' if self.namespace else ""
        return f"{self.resource}{group}{scope}"

    def request(self, verb: str, **kwargs: Any) -> Any:
        k8s = _kubernetes()
        import urllib3

        try:
            return self._call(**kwargs)
        except k8s.client.ApiException as exc:
            raise self.error(verb, exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _Unreachable(
                f"cannot reach the Kubernetes API server at {self.host} to {verb} {self.what}: "
                f"{_network_reason(exc)}"
            ) from None

    def error(self, verb: str, exc: Any) -> CollectorError:
        """A CollectorError for an HTTP error status (keeps ``status`` and ``reason`` on it)."""
        status = exc.status
        message, reason = _status_message(exc.body)
        if status == 401:
            text = (f"{self.host}: 401 Unauthorized to {verb} {self.what}: the server did not accept "
                    "the kubeconfig user's credentials (token or client certificate missing, wrong "
                    "or expired)")
        elif status == 403:
            text = (f"{self.host}: 403 Forbidden: the user may not {verb} {self.what}"
                    f"{': ' + message if message else ''}")
        else:
            text = (f"{self.host}: HTTP {status} {reason or exc.reason or ''} on {verb} {self.what}"
                    f"{': ' + message if message else ''}")
        error = CollectorError(text)
        error.status = status  # type: ignore[attr-defined]
        error.reason = reason  # type: ignore[attr-defined]
        return error


class _Unreachable(CollectorError):
    """The API server could not be reached (connection refused, timeout, broken stream)."""


def _status_message(body: Any) -> tuple[str, str]:
    """(message, reason) of a Status object body; empty strings when it is none."""
    try:
        status = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return "", ""
    if not isinstance(status, Mapping):
        return "", ""
    return str(status.get("message", ""))[:300], str(status.get("reason", ""))


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if ": " in text and "object at 0x" in text:
        text = text.split(": ", 1)[1]
    return f"{type(reason).__name__}: {text[:200]}".rstrip("')")


def _read_body(resp: Any, api: _Api, verb: str) -> bytes:
    import urllib3

    try:
        return resp.data
    except urllib3.exceptions.HTTPError as exc:
        raise CollectorError(
            f"the connection to {api.host} broke while reading the {verb} of {api.what}: "
            f"{_network_reason(exc)}") from None
    finally:
        resp.release_conn()


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        lineno = getattr(exc, "lineno", 0)
        lines = data.decode("utf-8", "replace").splitlines()
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else data[:120].decode("utf-8", "replace")
        raise ParseError(where, lineno, "a JSON document from the Kubernetes API", line) from None


def _list_all(api: _Api, limit: int, notes: list[str]) -> tuple[list[dict[str, Any]], str, list[bytes]]:
    """All items of one list, paginated; restarts from scratch when a continue token expires.

    Returns ``(items, resourceVersion, raw pages)``; never a mix of two snapshots.
    """
    restarts = 0
    while True:
        items: list[dict[str, Any]] = []
        pages: list[bytes] = []
        token: str | None = None
        version = ""
        try:
            while True:
                kwargs: dict[str, Any] = {"limit": limit, "_request_timeout": api.request_timeout}
                if token:
                    kwargs["_continue"] = token
                resp = api.request("list", **kwargs)
                data = _read_body(resp, api, "list")
                doc = _parse_json(data, f"{api.host} list {api.what} page {len(pages) + 1}")
                if not isinstance(doc, Mapping) or not isinstance(doc.get("metadata"), Mapping) \
                        or not isinstance(doc.get("items") or [], list):
                    raise ParseError(f"{api.host} list {api.what} page {len(pages) + 1}", 0,
                                     "a List object (metadata and a list of items)",
                                     data[:120].decode("utf-8", "replace"))
                pages.append(data)
                items.extend(doc.get("items") or [])
                version = version or str(doc["metadata"].get("resourceVersion", ""))
                token = doc["metadata"].get("continue") or None
                if token is None:
                    return items, version, pages
        except CollectorError as exc:
            expired = getattr(exc, "status", None) == 410 and token is not None
            if not expired or restarts >= MAX_LIST_RESTARTS:
                raise
            restarts += 1
            notes.append(
                f"the continue token of the {api.what} list expired after {len(pages)} page(s) "
                f"(410 {getattr(exc, 'reason', '') or 'Expired'}); listed again from a fresh "
                f"resourceVersion (restart {restarts})"
            )


# --- get_endpoint_snapshot ------------------------------------------------------------------

def get_endpoint_snapshot(
    client: Any = None,
    namespace: str | None = None,
    label_selector: str | None = None,
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    limit: int = DEFAULT_PAGE_LIMIT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> EndpointSnapshot:
    """List Services, EndpointSlices, Pods and Nodes from the Kubernetes API.

    Parameters
    ----------
    client : kubernetes.client.ApiClient, optional
        A configured client. Default: one built from ``kubeconfig``/``context``;
        without either, from the default kubeconfig (``$KUBECONFIG`` or
        ``~/.kube/config``) or, when there is none and the process runs in a
        pod, from the in-cluster service account.
    namespace : str, optional
        Only this namespace's Services, slices and Pods (Nodes are cluster-wide).
    label_selector : str, optional
        Selects Services (server-side, e.g. ``"app=web"``); only the slices of
        the selected Services are kept. Pods and Nodes are not filtered.
    kubeconfig : path, optional
        Kubeconfig file to use.
    context : str, optional
        Kubeconfig context to use (default: its current context).
    limit : int, default 500
        Items per page; lists are paginated with ``limit``/``continue``. When a
        continue token expires (410), the list starts again from a fresh
        ``resourceVersion`` (noted in :attr:`EndpointSnapshot.notes`), so a
        list is never a mix of two moments.
    request_timeout : float, default 60
        Timeout of each request in seconds.

    Returns
    -------
    EndpointSnapshot
        The four frames, the lists' resourceVersions, notes and the raw pages.

    Raises
    ------
    CollectorError
        The API server cannot be reached (naming its URL), refuses the
        credentials (401), forbids a list (403: which verb on which resource),
        or answers another error; the kubeconfig or context cannot be used.
    ParseError
        A response is not the JSON List the API sends.

    Notes
    -----
    On servers without discovery.k8s.io/v1 EndpointSlices (404), endpoints
    come from the legacy v1 Endpoints objects and a note says so. Unset
    EndpointSlice conditions take the API's documented meaning (ready and
    serving true, terminating false).

    Frames:

    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    api_client, owned = _api_client(client, kubeconfig, context)
    try:
        return _snapshot(api_client, namespace, label_selector, limit, request_timeout)
    finally:
        if owned:
            api_client.close()


def _snapshot(api_client: Any, namespace: str | None, label_selector: str | None, limit: int,
              timeout: float) -> EndpointSnapshot:
    taken_at = pd.Timestamp.now(tz="UTC")
    notes: list[str] = []
    versions: dict[str, str] = {}
    raw: dict[str, bytes] = {}
    objects: dict[str, list[dict[str, Any]]] = {}

    def fetch(resource: str, selector: str | None = None) -> None:
        api = _Api(api_client, resource, namespace, selector, timeout)
        items, versions[resource], pages = _list_all(api, limit, notes)
        objects[resource] = items
        for k, page in enumerate(pages, 1):
            raw[f"{resource}/page-{k:04d}.json"] = page

    fetch("services", label_selector)
    try:
        fetch("endpointslices")
    except CollectorError as exc:
        if getattr(exc, "status", None) != 404:
            raise
        notes.append(_FALLBACK_NOTE.format(host=_shown(str(api_client.configuration.host))))
        fetch("endpoints")
    fetch("pods")
    fetch("nodes")
    if label_selector:
        chosen = {(_ns(s), s["metadata"]["name"]) for s in objects["services"]}
        for resource in ("endpointslices", "endpoints"):
            if resource in objects:
                kept = [o for o in objects[resource] if (_ns(o), _service_of(o, resource)) in chosen]
                notes.append(f"label selector {label_selector!r}: kept {len(kept)} of "
                             f"{len(objects[resource])} {resource} (those of the selected Services)")
                objects[resource] = kept
    rows = {r: [row for o in items for row in _rows(r, o, "api")] for r, items in objects.items()}
    frames = _frames(rows)
    return EndpointSnapshot(**frames, resource_versions=versions, notes=notes, raw=raw, taken_at=taken_at,
                            server=_shown(str(api_client.configuration.host)))


def _ns(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def _service_of(obj: Mapping[str, Any], resource: str) -> str | None:
    meta = obj.get("metadata") or {}
    if resource == "endpoints":
        return meta.get("name")
    return (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)


# --- watch_endpoints -----------------------------------------------------------------------

_Conditions = tuple[Any, Any, Any, Any]  # ready, serving, terminating, node


def _endpoint_state(resource: str, obj: Mapping[str, Any]) -> tuple[str, str | None, str, dict[str, _Conditions]]:
    """(namespace, service, object name, {address: (ready, serving, terminating, node)})."""
    rows = _rows(resource, obj, "api")
    namespace, name, _ = _meta(obj, "EndpointSlice" if resource == "endpointslices" else "Endpoints")
    addresses = {r["address"]: (r["ready"], r["serving"], r["terminating"], r["node"]) for r in rows}
    return namespace, _service_of(obj, resource), name, addresses


def _diff(old: tuple[str, str | None, str, dict[str, _Conditions]] | None,
          new: tuple[str, str | None, str, dict[str, _Conditions]] | None,
          when: pd.Timestamp, version: str) -> list[dict[str, Any]]:
    """Churn rows between two states of one slice (None: absent)."""
    ref = new or old
    assert ref is not None
    namespace, service, name, _ = ref
    before = old[3] if old else {}
    after = new[3] if new else {}
    rows = []
    for address in sorted(set(before) | set(after)):
        if address not in after:
            event, flags = "removed", (None, None, None, before[address][3])
        elif address not in before:
            event, flags = "added", after[address]
        elif before[address] != after[address]:
            event, flags = "changed", after[address]
        else:
            continue
        rows.append({
            "timestamp": when, "namespace": namespace, "service": service, "slice": name,
            "address": address, "event": event, "ready": flags[0], "serving": flags[1],
            "terminating": flags[2], "node": flags[3], "resource_version": version,
        })
    return rows


def _lines(resp: Any) -> Iterator[bytes]:
    """Lines of a watch stream as they arrive (chunks may split or join lines)."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def watch_endpoints(
    duration: float,
    client: Any = None,
    namespace: str | None = None,
    label_selector: str | None = None,
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    limit: int = DEFAULT_PAGE_LIMIT,
    max_reconnects: int = MAX_WATCH_RECONNECTS,
    connect_timeout: float = 10.0,
    record_to: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Record every EndpointSlice endpoint change for ``duration`` seconds.

    The slices are listed first (that state is the baseline, not reported),
    then watched from the list's ``resourceVersion``. Each event is compared
    with the slice's previous state, address by address: an address that
    appears is ``added``, one that disappears ``removed``, one whose
    ready/serving/terminating condition or node changed ``changed``.

    Parameters
    ----------
    duration : float
        Length of the window in seconds (> 0); the call returns after it.
    client, namespace, kubeconfig, context
        As in :func:`get_endpoint_snapshot`.
    label_selector : str, optional
        Watch only slices with these labels (the EndpointSlice controller copies
        a Service's labels onto its slices).
    limit : int, default 500
        Page size of the (re)lists.
    max_reconnects : int, default 10
        Dropped connections tolerated in one window; each resumes the watch
        from the last resourceVersion seen (so no change is lost or repeated).
    connect_timeout : float, default 10
        Connect timeout of each request in seconds.
    record_to : path, optional
        Write the watch log there: one JSON line per (re)list and per event,
        with the time it was observed. :func:`read_endpoint_watch_log` turns
        it into the same frame again (datasets keep it as the churn's raw file).

    Returns
    -------
    pandas.DataFrame
        Kind ``endpoint_churn``, in the order the changes were observed. Its
        ``attrs["notes"]`` lists reconnects and relists, and
        ``attrs["resource_version"]`` the last version seen.

    Raises
    ------
    CollectorError
        As :func:`get_endpoint_snapshot`; also when the connection drops more
        than ``max_reconnects`` times or the server sends an ERROR event other
        than 410.

    Notes
    -----
    When the server no longer has the history to resume from (410 Expired /
    "too old resource version", sent as a status or as an ERROR event), the
    slices are listed again and the changes between the last known state and
    the new list are reported with the time of the relist. On servers without
    EndpointSlices the legacy Endpoints objects are watched (noted).

    Frame:

    """
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not duration > 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if not isinstance(max_reconnects, int) or max_reconnects < 0:
        raise ValueError(f"max_reconnects must be an int >= 0, got {max_reconnects!r}")
    api_client, owned = _api_client(client, kubeconfig, context)
    log = open(record_to, "wb") if record_to is not None else None  # noqa: SIM115 - closed below
    try:
        return _Watcher(api_client, namespace, label_selector, limit, max_reconnects,
                        connect_timeout, log).run(float(duration))
    finally:
        if log is not None:
            log.close()
        if owned:
            api_client.close()


class _Churn:
    """Endpoint state by object, and the churn rows of every change applied to it.

    Live watches and :func:`read_endpoint_watch_log` drive the same methods, so a
    recorded log gives the same rows again.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.state: dict[str, tuple[str, str | None, str, dict[str, _Conditions]]] = {}

    def listed(self, resource: str, items: Sequence[Mapping[str, Any]], when: pd.Timestamp,
               version: str, report: bool) -> None:
        """A (re)list: the new baseline; with ``report``, the differences become rows."""
        new = {}
        for obj in items:
            state = _endpoint_state(resource, obj)
            new[f"{state[0]}/{state[2]}"] = state
        if report:
            for key in sorted(set(self.state) | set(new)):
                self.rows.extend(_diff(self.state.get(key), new.get(key), when, version))
        self.state = new

    def event(self, resource: str, kind: str, obj: Mapping[str, Any], when: pd.Timestamp) -> None:
        """One ADDED/MODIFIED/DELETED watch event."""
        state = _endpoint_state(resource, obj)
        key = f"{state[0]}/{state[2]}"
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        old = self.state.get(key)
        if kind == "DELETED":
            self.rows.extend(_diff(old, None, when, version) if old else [])
            self.state.pop(key, None)
        else:
            self.rows.extend(_diff(old, state, when, version))
            self.state[key] = state

    def frame(self) -> pd.DataFrame:
        return validate_frame(frame_from_records(self.rows, "endpoint_churn"), "endpoint_churn")


def _log_time(when: pd.Timestamp) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{when.nanosecond:03d}Z"


class _Watcher:
    """The state of one watch_endpoints window."""

    def __init__(self, api_client: Any, namespace: str | None, label_selector: str | None, limit: int,
                 max_reconnects: int, connect_timeout: float, log: Any = None) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.label_selector = label_selector
        self.limit = limit
        self.max_reconnects = max_reconnects
        self.connect_timeout = connect_timeout
        self.log = log
        self.notes: list[str] = []
        self.churn = _Churn()
        self.version = ""
        self.resource = "endpointslices"
        self.api = _Api(api_client, self.resource, namespace, label_selector, DEFAULT_REQUEST_TIMEOUT)

    def record(self, entry: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")

    def relist(self, report: bool) -> None:
        try:
            items, self.version, _ = _list_all(self.api, self.limit, self.notes)
        except CollectorError as exc:
            if getattr(exc, "status", None) != 404 or self.resource != "endpointslices":
                raise
            self.notes.append(_FALLBACK_NOTE.format(host=self.api.host))
            self.resource = "endpoints"
            self.api = _Api(self.api_client, "endpoints", self.namespace, self.label_selector,
                            DEFAULT_REQUEST_TIMEOUT)
            items, self.version, _ = _list_all(self.api, self.limit, self.notes)
        when = pd.Timestamp.now(tz="UTC")
        self.record({"observed": _log_time(when), "type": "RELIST" if report else "LIST",
                     "resource": self.resource, "resourceVersion": self.version, "items": items})
        self.churn.listed(self.resource, items, when, self.version, report)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        when = pd.Timestamp.now(tz="UTC")
        self.record({"observed": _log_time(when), "type": kind, "resource": self.resource, "object": obj})
        self.churn.event(self.resource, kind, obj, when)
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if version:
            self.version = version

    def run(self, duration: float) -> pd.DataFrame:
        deadline = time.monotonic() + duration
        self.relist(report=False)
        reconnects = relists = 0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                outcome = self.watch_once(remaining, deadline)
            except _Dropped as exc:
                reconnects += 1
                if reconnects > self.max_reconnects:
                    raise CollectorError(
                        f"the watch of {self.api.what} at {self.api.host} dropped {reconnects} times "
                        f"(more than max_reconnects={self.max_reconnects}); last: {exc}") from None
                self.notes.append(f"the watch connection dropped ({exc}); resumed from "
                                  f"resourceVersion {self.version}")
                time.sleep(min(0.1 * reconnects, 1.0, max(0.0, deadline - time.monotonic())))
                continue
            if outcome == "ended":
                # the server closed the stream (its timeout): go on from the last version;
                # a short pause keeps a server that closes at once from being hammered
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            elif outcome == "expired":
                relists += 1
                if relists > MAX_LIST_RESTARTS:
                    raise CollectorError(
                        f"the watch of {self.api.what} at {self.api.host} expired (410) {relists} times in one "
                        f"window (more than {MAX_LIST_RESTARTS} relists)")
                self.notes.append(f"resourceVersion {self.version} is too old to resume the watch "
                                  "(410 Expired); listed the slices again and reported the differences")
                self.relist(report=True)
        frame = self.churn.frame()
        frame.attrs["notes"] = list(self.notes)
        frame.attrs["resource_version"] = self.version
        return frame

    def watch_once(self, remaining: float, deadline: float) -> str:
        """One watch request; returns ``"ended"`` or ``"expired"``, raises _Dropped."""
        import urllib3

        try:
            resp = self.api.request(
                "watch", watch=True, resource_version=self.version, allow_watch_bookmarks=True,
                timeout_seconds=max(1, math.ceil(remaining)),
                _request_timeout=(self.connect_timeout, remaining + 5.0))
        except _Unreachable as exc:
            raise _Dropped(str(exc)) from None
        except CollectorError as exc:
            if getattr(exc, "status", None) == 410:
                return "expired"
            raise
        try:
            for line in _lines(resp):
                event = _parse_json(line, f"{self.api.host} watch {self.api.what}")
                kind = event.get("type") if isinstance(event, Mapping) else None
                obj = event.get("object") if isinstance(event, Mapping) else None
                if not isinstance(obj, Mapping) or kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"):
                    raise ParseError(f"{self.api.host} watch {self.api.what}", 0,
                                     "a watch event {type, object}", line[:120].decode("utf-8", "replace"))
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return "expired"
                    raise CollectorError(
                        f"{self.api.host}: the watch of {self.api.what} failed: "
                        f"{obj.get('code')} {obj.get('reason', '')}: {str(obj.get('message', ''))[:300]}")
                if kind == "BOOKMARK":
                    self.version = str((obj.get("metadata") or {}).get("resourceVersion") or self.version)
                else:
                    self.apply(kind, obj)
                if time.monotonic() >= deadline:
                    break
        except urllib3.exceptions.HTTPError as exc:
            raise _Dropped(_network_reason(exc)) from None
        finally:
            resp.release_conn()
            resp.close()
        return "ended"


class _Dropped(Exception):
    """The watch connection broke (or could not be made) before the window ended."""


def read_endpoint_watch_log(source: Source) -> pd.DataFrame:
    """Read a watch log written by :func:`watch_endpoints` (``record_to``) into its churn frame.

    Parameters
    ----------
    source : path, file object, str or bytes
        The JSON-lines log: a ``LIST`` line (the baseline), then ``ADDED``,
        ``MODIFIED``, ``DELETED`` and ``RELIST`` lines, each with the time it
        was observed.

    Returns
    -------
    pandas.DataFrame
        Kind ``endpoint_churn``, row for row what the watch returned.

    Raises
    ------
    ParseError
        Naming the line that is not JSON or not a log entry.

    Notes
    -----
    Frame:
    """
    name, text = read_source_text(source)
    churn = _Churn()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            kind, resource = entry["type"], entry["resource"]
            when = pd.Timestamp(entry["observed"])
            if resource not in ("endpointslices", "endpoints") or when.tzinfo is None:
                raise ValueError(resource)
            if kind in ("LIST", "RELIST"):
                churn.listed(resource, entry["items"], when, str(entry["resourceVersion"]), kind == "RELIST")
            elif kind in ("ADDED", "MODIFIED", "DELETED"):
                churn.event(resource, kind, entry["object"], when)
            else:
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError, _BadObject):
            raise ParseError(name, lineno, "a watch log entry {observed, type, resource, items|object}",
                             line) from None
    return churn.frame()


# --- read_k8s_objects ----------------------------------------------------------------------

def _yaml_documents(text: str, name: str) -> Iterator[tuple[int, Any, list[int]]]:
    """(line of the document, data, line of each ``items`` entry) per YAML document."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading YAML dumps needs PyYAML: pip install 'npanalytics[k8s]'") from None
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                data = loader.construct_document(node) if node is not None else None
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
                lineno = mark.line + 1 if mark is not None else 0
                lines = text.splitlines()
                line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
                problem = getattr(exc, "problem", None) or "syntax error"
                raise ParseError(name, lineno, f"valid YAML ({problem})", line) from None
            if node is None:
                continue
            item_lines: list[int] = []
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == "items" and isinstance(value, yaml.SequenceNode):
                        item_lines = [v.start_mark.line + 1 for v in value.value]
            yield node.start_mark.line + 1, data, item_lines
    finally:
        loader.dispose()


_WHITESPACE = " \t\n\r"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _expect(text: str, pos: int, chars: str, what: str) -> str:
    if pos >= len(text) or text[pos] not in chars:
        raise json.JSONDecodeError(f"Expecting {what}", text, pos)
    return text[pos]


def _json_object(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int, list[int]]:
    """Decode the JSON value at ``pos``; for an object, also the offsets of its ``items`` entries.

    Each member value is decoded by the C decoder (``raw_decode``); only the top
    level is walked here, so that an error in a List item can name its line.
    """
    if text[pos] != "{":
        value, end = decoder.raw_decode(text, pos)
        return value, end, []
    obj: dict[str, Any] = {}
    offsets: list[int] = []
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "}":
        return obj, pos + 1, offsets
    while True:
        _expect(text, pos, '"', "property name enclosed in double quotes")
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos)
        _expect(text, pos, ":", "':' delimiter")
        pos = _skip(text, pos + 1)
        if key == "items" and pos < len(text) and text[pos] == "[":
            value, offsets = [], []
            pos = _skip(text, pos + 1)
            if pos < len(text) and text[pos] == "]":
                pos += 1
            else:
                while True:
                    offsets.append(pos)
                    item, pos = decoder.raw_decode(text, pos)
                    value.append(item)
                    pos = _skip(text, pos)
                    if _expect(text, pos, ",]", "',' delimiter") == "]":
                        pos += 1
                        break
                    pos = _skip(text, pos + 1)
        else:
            value, pos = decoder.raw_decode(text, pos)
        obj[key] = value
        pos = _skip(text, pos)
        if _expect(text, pos, ",}", "',' delimiter") == "}":
            return obj, pos + 1, offsets
        pos = _skip(text, pos + 1)


def _json_documents(text: str, name: str) -> Iterator[tuple[int, Any, list[int]]]:
    """(line of the document, data, line of each ``items`` entry) per JSON document.

    Several documents may follow each other (concatenated ``kubectl -o json`` outputs).
    """
    decoder = json.JSONDecoder()
    pos, line, counted = _skip(text, 0), 1, 0
    while pos < len(text):
        try:
            data, end, offsets = _json_object(decoder, text, pos)
        except json.JSONDecodeError as exc:
            lines = text.splitlines()
            found = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
            raise ParseError(name, exc.lineno, f"valid JSON ({exc.msg} at column {exc.colno})", found) from None
        item_lines = []
        for offset in [pos, *offsets]:  # line numbers, counting newlines once overall
            line += text.count("\n", counted, offset)
            counted = offset
            item_lines.append(line)
        yield item_lines[0], data, item_lines[1:]
        pos = _skip(text, end)


def read_k8s_objects(source: Source, *, ignore_other_kinds: bool = False,
                     origin: str = "file") -> EndpointSnapshot:
    """Read Services, EndpointSlices, Endpoints, Pods and Nodes from a dump.

    Parameters
    ----------
    source : path, file object, str or bytes
        Output of ``kubectl get services,endpointslices,pods,nodes -A -o json``
        (or ``-o yaml``), a single object, several YAML documents separated by
        ``---``, concatenated JSON documents, or a list response of the API
        (whose items carry no ``kind``: it follows from the list's kind). Gzip
        is recognised.
    ignore_other_kinds : bool, default False
        Skip objects of other kinds (ConfigMaps in a ``kubectl get all`` dump...)
        and say how many in :attr:`EndpointSnapshot.notes`; by default they are
        an error.
    origin : {"file", "api"}, default "file"
        The ``source`` column of ``k8s_services``: datasets re-reading the list
        responses they saved from the API pass ``"api"``.

    Returns
    -------
    EndpointSnapshot
        The four frames (``source`` columns say ``file`` and ``endpointslice``
        or ``endpoints``), the Lists' resourceVersions when they have one, and
        notes. For each Service, endpoints come from its EndpointSlices when
        the dump has any, else from its Endpoints object (noted), so that an
        address is not counted twice.

    Raises
    ------
    ParseError
        Naming the source, the line (of the document, or of the List item)
        and the item's index: invalid JSON/YAML, a document that is not an
        object or List, an object of another kind, or an object missing what
        every object of its kind has (``metadata.name``...).

    Notes
    -----
    For big clusters prefer ``-o json``: PyYAML builds its objects in Python, so
    a YAML dump reads about 40x slower than the same objects as JSON (3,280
    objects: 14 s against 0.37 s, bench/RESULTS-k8s.md).

    Frames:

    """
    if origin not in ("file", "api"):
        raise ValueError(f"origin must be 'file' or 'api', got {origin!r}")
    name, text = read_source_text(source)
    stripped = text.lstrip()
    documents = (_json_documents if stripped[:1] in ("{", "[") else _yaml_documents)(text, name)
    objects: dict[str, list[tuple[int, str, Mapping[str, Any]]]] = {r: [] for r in _CALLS}
    versions: dict[str, str] = {}
    notes: list[str] = []
    skipped: dict[str, int] = {}
    for lineno, doc, item_lines in documents:
        if doc is None:
            continue
        if not isinstance(doc, Mapping) or not isinstance(doc.get("kind"), str):
            raise ParseError(name, lineno, "a Kubernetes object or List (a mapping with 'kind')",
                             json.dumps(doc, default=str)[:120])
        kind = doc["kind"]
        if kind.endswith("List"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ParseError(name, lineno, f"a {kind} whose items is a list", str(items)[:120])
            item_kind = kind[: -len("List")] or None
            if item_kind in _KINDS and (doc.get("metadata") or {}).get("resourceVersion"):
                versions[_KINDS[item_kind]] = str(doc["metadata"]["resourceVersion"])
            for i, item in enumerate(items):
                where = item_lines[i] if i < len(item_lines) else lineno
                position = f"items[{i}] of the {kind}"
                _add(objects, skipped, name, where, position, item,
                     item.get("kind", item_kind) if isinstance(item, Mapping) else None, ignore_other_kinds)
        else:
            _add(objects, skipped, name, lineno, "the document", doc, kind, ignore_other_kinds)
    for kind, count in sorted(skipped.items()):
        notes.append(f"{name}: skipped {count} object(s) of kind {kind} (ignore_other_kinds=True)")
    rows = _file_rows(objects, name, notes, origin)
    return EndpointSnapshot(**_frames(rows), resource_versions=versions, notes=notes)


def _add(objects: dict[str, list[tuple[int, str, Mapping[str, Any]]]], skipped: dict[str, int],
         name: str, lineno: int, position: str, obj: Any, kind: Any, ignore: bool) -> None:
    if not isinstance(obj, Mapping):
        raise ParseError(name, lineno, f"an object at {position}", str(obj)[:120])
    if kind not in _KINDS:
        if ignore and isinstance(kind, str):
            skipped[kind] = skipped.get(kind, 0) + 1
            return
        raise ParseError(name, lineno,
                         f"one of {', '.join(_KINDS)} (or a List of them) at {position}",
                         f"kind {kind!r}")
    objects[_KINDS[kind]].append((lineno, position, obj))


def _file_rows(objects: Mapping[str, list[tuple[int, str, Mapping[str, Any]]]], name: str,
               notes: list[str], origin: str) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    with_slices: set[tuple[str, str | None]] = set()
    for resource in ("services", "endpointslices", "endpoints", "pods", "nodes"):
        out: list[dict[str, Any]] = []
        skipped_endpoints = 0
        for lineno, position, obj in objects[resource]:
            if resource == "endpoints" and (_ns(obj), _service_of(obj, resource)) in with_slices:
                skipped_endpoints += 1
                continue
            try:
                new = _rows(resource, obj, origin)
            except _BadObject as exc:
                raise ParseError(name, lineno, f"{exc} at {position}",
                                 json.dumps(obj.get("metadata", obj), default=str)[:120]) from None
            except (AttributeError, TypeError, KeyError) as exc:
                raise ParseError(name, lineno, f"a well-formed {resource[:-1]} at {position} ({exc})",
                                 json.dumps(obj.get("metadata", obj), default=str)[:120]) from None
            if resource == "endpointslices":
                with_slices.add((_ns(obj), _service_of(obj, resource)))
            out.extend(new)
        if skipped_endpoints:
            notes.append(f"{name}: {skipped_endpoints} Endpoints object(s) left out: their Services "
                         "have EndpointSlices in the dump (read instead)")
        elif resource == "endpoints" and out:
            notes.append(f"{name}: endpoints of {len(objects['endpoints'])} Service(s) come from legacy "
                         "Endpoints objects (no EndpointSlices in the dump for them)")
        rows[resource] = out
    return rows


def _document(func: Callable[..., Any], kinds: Sequence[str]) -> None:
    if func.__doc__:
        tables = "\n\n".join(f"``{k}``\n\n" + schema_table(k) for k in kinds)
        indented = "\n".join(("    " + line) if line else "" for line in tables.splitlines())
        func.__doc__ = func.__doc__.rstrip() + "\n\n" + indented + "\n"


_document(get_endpoint_snapshot, list(SNAPSHOT_KINDS.values()))
_document(read_k8s_objects, list(SNAPSHOT_KINDS.values()))
_document(watch_endpoints, ["endpoint_churn"])
_document(read_endpoint_watch_log, ["endpoint_churn"])
