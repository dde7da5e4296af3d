"""The Kubernetes API objects of a lab scenario, as a real API server would return them (pure).

:func:`cluster_objects` turns a :class:`~npanalytics.lab.scenario.Scenario` (and the
endpoint state of its pods at one moment) into the JSON-shaped dicts of the
Services, EndpointSlices, Pods and Nodes a cluster running that scenario would
hold; :func:`as_list` wraps items into the ``...List`` document a list call
returns. The lab's recorder saves them, and the Kubernetes collector's tests
serve them from a fake API server to the real ``kubernetes`` client.

Everything is deterministic: the same scenario and state give the same JSON
(``uid`` values are UUID-5 of the object's identity, ``resourceVersion`` is
derived from the object's content, times come from the arguments).

How the lab maps onto Kubernetes objects
----------------------------------------
* Every Service is ``type: NodePort``, single-stack IPv4, with the ports,
  policies and affinity of the scenario; ``targetPort`` is numeric.
* Pods live in the namespace of the first Service that selects them
  (``default`` when none does) and are owned by one ReplicaSet per distinct
  label set (name ``<app label or first service>-<hash>``, the pods carry
  ``pod-template-hash``, as a Deployment would make them).
* The EndpointSlice controller's view: one slice per Service and per 100
  endpoints (``maxEndpointsPerSlice``), addressType IPv4, every Service port
  (``port`` = targetPort), one endpoint per selected pod with a single address,
  ``conditions`` ready/serving/terminating taken from the pod state, nodeName,
  zone (when the node has one) and a Pod ``targetRef``. A Service without
  endpoints keeps one slice with ``endpoints: []`` (the API writes ``null``;
  ``[]`` is used because the ``kubernetes`` Python client rejects ``null``).
* The legacy Endpoints object (``include_endpoints=True``): ready pods in
  ``addresses``, not-ready pods in ``notReadyAddresses``, terminating pods left
  out (the Endpoints controller skips pods that are being deleted).
* A terminating pod has ``metadata.deletionTimestamp``; its ``Ready``
  condition is its ``serving`` state (EndpointSlice ``serving`` mirrors pod
  readiness while ``ready`` is forced false during termination).
* Nodes: labels ``kubernetes.io/hostname``, ``kubernetes.io/os``,
  ``topology.kubernetes.io/zone`` and ``topology.kubernetes.io/region`` (the
  last two only when the node has a zone), InternalIP and Hostname addresses,
  ``Ready=True``, ``spec.podCIDR``/``podCIDRs`` and a fixed ``nodeInfo``
  (:data:`NODE_INFO`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .scenario import Addresses, NodeSpec, PodSpec, Scenario, ServiceSpec

__all__ = [
    "LAB_EPOCH",
    "LAB_REGION",
    "NODE_INFO",
    "MAX_ENDPOINTS_PER_SLICE",
    "ENDPOINTSLICE_MANAGED_BY",
    "POD_IMAGE",
    "SERVICE_NAME_LABEL",
    "MANAGED_BY_LABEL",
    "TRIGGER_TIME_ANNOTATION",
    "ZONE_LABEL",
    "REGION_LABEL",
    "HOSTNAME_LABEL",
    "POD_TEMPLATE_HASH_LABEL",
    "DELETION_GRACE_PERIOD_SECONDS",
    "cluster_objects",
    "as_list",
    "object_uid",
    "k8s_time",
]

#: Creation time of every lab object unless ``created`` is given (UTC).
LAB_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
#: ``topology.kubernetes.io/region`` of every node that has a zone.
LAB_REGION = "npa-lab"
#: ``status.nodeInfo`` of every lab node (fixed, so that snapshots are deterministic).
NODE_INFO: Mapping[str, str] = {
    "architecture": "amd64",
    "containerRuntimeVersion": "containerd://1.7.24",
    "kernelVersion": "6.1.0-npa-lab",
    "kubeProxyVersion": "",
    "kubeletVersion": "v1.33.0",
    "operatingSystem": "linux",
    "osImage": "Debian GNU/Linux 12 (bookworm)",
}
#: The EndpointSlice controller's limit of endpoints per slice (its default).
MAX_ENDPOINTS_PER_SLICE = 100
#: Value of ``endpointslice.kubernetes.io/managed-by`` on controller-made slices.
ENDPOINTSLICE_MANAGED_BY = "endpointslice-controller.k8s.io"
#: Image of the lab's pod server container (descriptive only).
POD_IMAGE = "npanalytics/podserver:lab"

# Well-known label and annotation keys the objects carry.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
#: ``deletionGracePeriodSeconds`` of a terminating pod (the Kubernetes default).
DELETION_GRACE_PERIOD_SECONDS = 30

# Characters the API server uses for generateName suffixes (no vowels, no 0/1/3).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_UID_NAMESPACE = uuid.UUID("6f2b3c1e-4a5d-5e8f-9a0b-1c2d3e4f5a6b")
_LIST_KINDS = {
    "services": ("v1", "ServiceList"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSliceList"),
    "pods": ("v1", "PodList"),
    "nodes": ("v1", "NodeList"),
    "endpoints": ("v1", "EndpointsList"),
}
_POD_STATE_KEYS = ("ready", "serving", "terminating", "present")

#: A pod's state in ``pod_states``: a PodSpec, or overrides of ready/serving/terminating/present.
_PodState = PodSpec | Mapping[str, bool]


def k8s_time(when: dt.datetime) -> str:
    """Format a time as the API does (RFC 3339, UTC, whole seconds): ``2025-01-01T00:00:00Z``.

    Raises
    ------
    ValueError
        If ``when`` is naive.
    """
    if when.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {when!r}")
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_uid(scenario_name: str, kind: str, namespace: str, name: str) -> str:
    """Deterministic ``metadata.uid``: UUID-5 of scenario, kind, namespace and name."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{scenario_name}/{kind}/{namespace}/{name}"))


def _suffix(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:length])


def _resource_version(obj: Mapping[str, Any]) -> str:
    # Opaque to clients (they may only compare it for equality): a decimal number
    # derived from the content, so that a changed object gets a changed version.
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    return str(int(digest[:12], 16) % 10**9 + 1000)


def _check_time(value: dt.datetime | None, name: str, default: dt.datetime) -> dt.datetime:
    if value is None:
        return default
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(dt.timezone.utc)


def _current_pods(scenario: Scenario, pod_states: Mapping[str, _PodState] | None) -> list[PodSpec]:
    """The pods present at the moment, in scenario order, with their state applied."""
    states = dict(pod_states or {})
    known = {p.name for p in scenario.pods}
    unknown = sorted(set(states) - known)
    if unknown:
        raise ValueError(
            f"pod_states names pods that are not in scenario {scenario.name!r}: {', '.join(unknown)}"
        )
    pods = []
    for pod in scenario.pods:
        present = not pod.start_absent
        state = states.get(pod.name)
        if isinstance(state, PodSpec):
            pod, present = state, not state.start_absent
        elif state is not None:
            if not isinstance(state, Mapping):
                raise ValueError(
                    f"pod_states[{pod.name!r}] must be a PodSpec or a mapping of "
                    f"{'/'.join(_POD_STATE_KEYS)} to bool, got {state!r}"
                )
            bad = [k for k in state if k not in _POD_STATE_KEYS]
            if bad:
                raise ValueError(
                    f"pod_states[{pod.name!r}]: unknown key {bad[0]!r} "
                    f"(allowed: {', '.join(_POD_STATE_KEYS)})"
                )
            for key, value in state.items():
                if not isinstance(value, bool):
                    raise ValueError(f"pod_states[{pod.name!r}][{key!r}] must be a bool, got {value!r}")
            present = state.get("present", present)
            pod = dataclasses.replace(pod, **{k: v for k, v in state.items() if k != "present"})
        if present:
            pods.append(pod)
    return pods


def _state(pod: PodSpec) -> tuple[bool, bool, bool]:
    return pod.ready, pod.serving, pod.terminating


def _selects(selector: Mapping[str, str], pod: PodSpec) -> bool:
    return all(pod.labels.get(k) == v for k, v in selector.items())


def _meta(
    scenario: Scenario, kind: str, name: str, namespace: str | None, created: dt.datetime,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["uid"] = object_uid(scenario.name, kind, namespace or "", name)
    meta["resourceVersion"] = ""
    meta["creationTimestamp"] = k8s_time(created)
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _finish(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = _resource_version(obj)
    return obj


def _replica_set(scenario: Scenario, pod: PodSpec) -> tuple[str, str]:
    """(name, pod-template-hash) of the ReplicaSet owning ``pod`` (one per label set)."""
    template_hash = _suffix("template/" + json.dumps(dict(sorted(pod.labels.items()))), 10)
    owner = next((s.name for s in scenario.services if _selects(s.selector, pod)), "pods")
    base = pod.labels.get("app", owner)
    return f"{base}-{template_hash}", template_hash


def _pod_namespace(scenario: Scenario, pod: PodSpec) -> str:
    return next((s.namespace for s in scenario.services if _selects(s.selector, pod)), "default")


def _service(scenario: Scenario, svc: ServiceSpec, addresses: Addresses, created: dt.datetime) -> dict[str, Any]:
    ports = []
    for port in svc.ports:
        entry: dict[str, Any] = {}
        if port.name:
            entry["name"] = port.name
        entry.update(protocol=port.protocol, port=port.port, targetPort=port.target_port,
                     nodePort=port.node_port)
        ports.append(entry)
    cluster_ip = addresses.cluster_ips[svc.name]
    spec: dict[str, Any] = {
        "ports": ports,
        "selector": dict(svc.selector),
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "type": svc.type,
        "sessionAffinity": svc.session_affinity,
        "externalTrafficPolicy": svc.external_traffic_policy,
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": svc.internal_traffic_policy,
    }
    if svc.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_timeout_seconds}}
    return _finish({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(scenario, "Service", svc.name, svc.namespace, created),
        "spec": spec,
        "status": {"loadBalancer": {}},
    })


def _endpointslices(
    scenario: Scenario, svc: ServiceSpec, members: list[PodSpec], addresses: Addresses,
    created: dt.datetime, at: dt.datetime,
) -> list[dict[str, Any]]:
    zones = {n.name: n.zone for n in scenario.nodes}
    endpoints = []
    for pod in members:
        endpoint: dict[str, Any] = {
            "addresses": [addresses.pod_ips[pod.name]],
            "conditions": {"ready": pod.ready, "serving": pod.serving, "terminating": pod.terminating},
            "targetRef": {
                "kind": "Pod",
                "namespace": _pod_namespace(scenario, pod),
                "name": pod.name,
                "uid": object_uid(scenario.name, "Pod", _pod_namespace(scenario, pod), pod.name),
            },
            "nodeName": pod.node,
        }
        if zones[pod.node]:
            endpoint["zone"] = zones[pod.node]
        endpoints.append(endpoint)
    ports = [
        {"name": p.name, "protocol": p.protocol, "port": p.target_port} for p in svc.ports
    ]
    chunks = [
        endpoints[i:i + MAX_ENDPOINTS_PER_SLICE]
        for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)
    ] or [[]]
    service_uid = object_uid(scenario.name, "Service", svc.namespace, svc.name)
    slices = []
    for k, chunk in enumerate(chunks):
        name = f"{svc.name}-{_suffix(f'{scenario.name}/{svc.namespace}/{svc.name}/{k}', 5)}"
        meta = _meta(scenario, "EndpointSlice", name, svc.namespace, created, {
            SERVICE_NAME_LABEL: svc.name,
            MANAGED_BY_LABEL: ENDPOINTSLICE_MANAGED_BY,
        })
        meta["generateName"] = f"{svc.name}-"
        meta["annotations"] = {TRIGGER_TIME_ANNOTATION: k8s_time(at)}
        meta["ownerReferences"] = [{
            "apiVersion": "v1", "kind": "Service", "name": svc.name, "uid": service_uid,
            "controller": True, "blockOwnerDeletion": True,
        }]
        slices.append(_finish({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta,
            "addressType": "IPv4",
            "endpoints": chunk,
            "ports": ports if chunk else [],
        }))
    return slices


def _endpoints_object(
    scenario: Scenario, svc: ServiceSpec, members: list[PodSpec], addresses: Addresses,
    created: dt.datetime, at: dt.datetime,
) -> dict[str, Any]:
    def address(pod: PodSpec) -> dict[str, Any]:
        namespace = _pod_namespace(scenario, pod)
        return {
            "ip": addresses.pod_ips[pod.name],
            "nodeName": pod.node,
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod.name,
                          "uid": object_uid(scenario.name, "Pod", namespace, pod.name)},
        }

    live = [p for p in members if not p.terminating]
    subset: dict[str, Any] = {}
    ready = [address(p) for p in live if p.ready]
    not_ready = [address(p) for p in live if not p.ready]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    meta = _meta(scenario, "Endpoints", svc.name, svc.namespace, created, {SERVICE_NAME_LABEL: svc.name})
    meta["annotations"] = {TRIGGER_TIME_ANNOTATION: k8s_time(at)}
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
    if subset:
        subset["ports"] = [
            {**({"name": p.name} if p.name else {}), "port": p.target_port, "protocol": p.protocol}
            for p in svc.ports
        ]
        obj["subsets"] = [subset]
    return _finish(obj)


def _pod(scenario: Scenario, pod: PodSpec, addresses: Addresses, created: dt.datetime,
         at: dt.datetime) -> dict[str, Any]:
    namespace = _pod_namespace(scenario, pod)
    rs_name, template_hash = _replica_set(scenario, pod)
    labels = {**pod.labels, POD_TEMPLATE_HASH_LABEL: template_hash}
    meta = _meta(scenario, "Pod", pod.name, namespace, created, labels)
    meta["generateName"] = f"{rs_name}-"
    meta["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
        "uid": object_uid(scenario.name, "ReplicaSet", namespace, rs_name),
        "controller": True, "blockOwnerDeletion": True,
    }]
    if pod.terminating:
        meta["deletionTimestamp"] = k8s_time(at)
        meta["deletionGracePeriodSeconds"] = DELETION_GRACE_PERIOD_SECONDS
    target_ports = sorted({
        p.target_port for s in scenario.services if _selects(s.selector, pod) for p in s.ports
    })
    ready = pod.serving if pod.terminating else pod.ready
    status_word = "True" if ready else "False"
    created_at = k8s_time(created)
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": created_at},
        {"type": "Initialized", "status": "True", "lastTransitionTime": created_at},
        {"type": "Ready", "status": status_word, "lastTransitionTime": k8s_time(at)},
        {"type": "ContainersReady", "status": status_word, "lastTransitionTime": k8s_time(at)},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": created_at},
    ]
    pod_ip = addresses.pod_ips[pod.name]
    host_ip = addresses.node_ips[pod.node]
    return _finish({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [{
                "name": "server",
                "image": POD_IMAGE,
                "ports": [{"containerPort": p, "protocol": "TCP"} for p in target_ports],
            }],
            "nodeName": pod.node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": DELETION_GRACE_PERIOD_SECONDS,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "priority": 0,
        },
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": created_at,
            "containerStatuses": [{
                "name": "server",
                "image": POD_IMAGE,
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": created_at}},
            }],
            "qosClass": "BestEffort",
        },
    })


def _node(scenario: Scenario, node: NodeSpec, addresses: Addresses, created: dt.datetime) -> dict[str, Any]:
    labels = {
        "kubernetes.io/arch": NODE_INFO["architecture"],
        HOSTNAME_LABEL: node.name,
        "kubernetes.io/os": NODE_INFO["operatingSystem"],
    }
    if node.zone:
        labels[REGION_LABEL] = LAB_REGION
        labels[ZONE_LABEL] = node.zone
    uid = object_uid(scenario.name, "Node", "", node.name)
    created_at = k8s_time(created)
    return _finish({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(scenario, "Node", node.name, None, created, labels),
        "spec": {
            "podCIDR": addresses.pod_cidrs[node.name],
            "podCIDRs": [addresses.pod_cidrs[node.name]],
            "providerID": f"npa://{scenario.name}/{node.name}",
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": addresses.node_ips[node.name]},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": created_at, "lastTransitionTime": created_at,
            }],
            "nodeInfo": {
                **NODE_INFO,
                "bootID": str(uuid.uuid5(_UID_NAMESPACE, f"{scenario.name}/boot/{node.name}")),
                "machineID": uuid.uuid5(_UID_NAMESPACE, f"{scenario.name}/machine/{node.name}").hex,
                "systemUUID": uid,
            },
        },
    })


def cluster_objects(
    scenario: Scenario,
    *,
    at: dt.datetime | None = None,
    pod_states: Mapping[str, _PodState] | None = None,
    created: dt.datetime | None = None,
    include_endpoints: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """The Services, EndpointSlices, Pods and Nodes of ``scenario`` at one moment.

    Parameters
    ----------
    scenario : Scenario
        The lab scenario (addresses from :meth:`Scenario.addresses`).
    at : datetime, optional
        The moment described (timezone-aware). Objects whose pods differ from the
        scenario's initial state carry it: the EndpointSlices' (and Endpoints')
        ``endpoints.kubernetes.io/last-change-trigger-time`` annotation, a pod's
        Ready transition time and ``deletionTimestamp``. Unchanged objects carry
        ``created`` there, so their JSON and ``resourceVersion`` stay the same
        from one snapshot to the next. Default: ``created``.
    pod_states : mapping of pod name to PodSpec or to a mapping, optional
        The pod state at ``at``. A :class:`PodSpec` value replaces the scenario's
        pod (present unless ``start_absent``, as the lab topology keeps its
        ``pod_state``); a mapping overrides any of ``ready``, ``serving``,
        ``terminating`` (bools) and ``present`` (whether the pod exists yet).
        Pods not named keep their scenario state (absent when ``start_absent``).
    created : datetime, optional
        ``creationTimestamp`` of every object (timezone-aware). Default
        :data:`LAB_EPOCH`, so that snapshots of one run share it.
    include_endpoints : bool, default False
        Also return the legacy core/v1 Endpoints objects under ``"endpoints"``.

    Returns
    -------
    dict of str to list of dict
        Keys ``"services"``, ``"endpointslices"``, ``"pods"``, ``"nodes"`` (and
        ``"endpoints"``), each a list of objects in the API's JSON shape
        (``apiVersion``, ``kind``, ``metadata``, ``spec``/``status`` or the
        EndpointSlice fields), in scenario order. Times are RFC 3339 strings
        with whole seconds, as the API writes them.

    Raises
    ------
    ValueError
        If a time is naive, or ``pod_states`` names an unknown pod or key.
    """
    created = _check_time(created, "created", LAB_EPOCH)
    at = _check_time(at, "at", created)
    addresses = scenario.addresses()
    pods = _current_pods(scenario, pod_states)
    # Objects whose state differs from the scenario's initial state changed "at" the moment;
    # the others keep their creation time, so that their JSON (and resourceVersion) is stable.
    initial = {p.name: p for p in _current_pods(scenario, None)}
    current = {p.name: p for p in pods}
    changed = {
        name for name in set(initial) | set(current)
        if name not in initial or name not in current
        or _state(initial[name]) != _state(current[name])
    }
    result: dict[str, list[dict[str, Any]]] = {
        "services": [], "endpointslices": [], "pods": [], "nodes": [],
    }
    if include_endpoints:
        result["endpoints"] = []
    for svc in scenario.services:
        members = [p for p in pods if _selects(svc.selector, p)]
        touched = any(
            _selects(svc.selector, p) for p in scenario.pods if p.name in changed
        ) or any(_selects(svc.selector, p) for p in pods if p.name in changed)
        trigger = at if touched else created
        result["services"].append(_service(scenario, svc, addresses, created))
        result["endpointslices"].extend(_endpointslices(scenario, svc, members, addresses, created, trigger))
        if include_endpoints:
            result["endpoints"].append(_endpoints_object(scenario, svc, members, addresses, created, trigger))
    result["pods"] = [
        _pod(scenario, p, addresses, created, at if p.name in changed else created) for p in pods
    ]
    result["nodes"] = [_node(scenario, n, addresses, created) for n in scenario.nodes]
    return result


def as_list(
    kind: str,
    items: Sequence[Mapping[str, Any]],
    resource_version: str | int,
    *,
    continue_token: str | None = None,
    remaining_item_count: int | None = None,
) -> dict[str, Any]:
    """Wrap objects into the document a list call returns (``{"kind": "ServiceList", ...}``).

    Parameters
    ----------
    kind : str
        The item kind (``"Service"``), the list kind (``"ServiceList"``) or the key of
        :func:`cluster_objects` (``"services"``); also Endpoints.
    items : sequence of dict
        The objects. As in a real list response, their own ``apiVersion`` and
        ``kind`` are left out (copies are made; the inputs are not changed).
    resource_version : str or int
        ``metadata.resourceVersion`` of the list (the snapshot's version).
    continue_token : str, optional
        ``metadata.continue``, for a page of a paginated list.
    remaining_item_count : int, optional
        ``metadata.remainingItemCount``, for a page of a paginated list.

    Returns
    -------
    dict
        ``{"apiVersion", "kind", "metadata", "items"}``; ``apiVersion`` is
        ``discovery.k8s.io/v1`` for EndpointSliceList and ``v1`` otherwise.

    Raises
    ------
    ValueError
        If ``kind`` is none of the known kinds.
    """
    lookup: dict[str, tuple[str, str]] = {}
    for key, (api_version, list_kind) in _LIST_KINDS.items():
        for alias in (key, list_kind, list_kind[: -len("List")]):
            lookup[alias.lower()] = (api_version, list_kind)
    found = lookup.get(str(kind).lower())
    if found is None:
        allowed = ", ".join(k[: -len("List")] for _, k in _LIST_KINDS.values())
        raise ValueError(f"kind must be one of {allowed} (or their List / plural forms); got {kind!r}")
    api_version, list_kind = found
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if continue_token:
        metadata["continue"] = continue_token
    if remaining_item_count is not None:
        metadata["remainingItemCount"] = int(remaining_item_count)
    stripped = []
    for item in items:
        item = copy.deepcopy(dict(item))
        item.pop("apiVersion", None)
        item.pop("kind", None)
        stripped.append(item)
    return {"apiVersion": api_version, "kind": list_kind, "metadata": metadata, "items": stripped}
