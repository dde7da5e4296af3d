"""The lab's metrics writers: what kube-state-metrics and kube-proxy would expose (pure, plus one server).

* :func:`kube_state_metrics_text`: the kube-state-metrics (KSM) series of a scenario's
  Services, Endpoints, EndpointSlices, Pods and Nodes at one moment, built from
  :func:`npanalytics.lab.k8s_objects.cluster_objects` so that names, uids and
  addresses agree with the API objects.
* :func:`kube_proxy_metrics_text`: one node's kube-proxy ``/metrics`` (the
  ``kubeproxy_*`` families of KUBE_FACTS §3) filled from measured rule loads.
* :func:`openmetrics_series`: several timestamped scrapes joined into one
  OpenMetrics document for ``promtool tsdb create-blocks-from openmetrics``.
* :func:`serve_metrics`: a loopback HTTP server with ``/metrics`` for a live scrape.

Text format
-----------
The writers produce the Prometheus text exposition format 0.0.4: ``# HELP`` (with
``\\`` and newline escaped), ``# TYPE``, then one sample per line,
``name{label="value",...} value [timestamp_ms]``, label values escaped (``\\`` ->
``\\\\``, ``"`` -> ``\\"``, newline -> ``\\n``). Values are formatted as the Go
client does (``strconv.FormatFloat(v, 'g', -1, 64)``: ``1``, ``0.25``,
``1.7e+09``, ``+Inf``, ``NaN``), bucket bounds included (``le="0.001"``,
``le="1"``).

kube-proxy specifics: families are sorted by name and label pairs by label name
with ``le`` last, as client_golang writes them; HELP texts carry the ``[ALPHA]``
stability prefix of Kubernetes component metrics. ``ip_family_label=True``
gives the 1.33+ label sets (``ip_family="IPv4"`` on the metrics that have it),
``False`` the 1.28-1.32 ones. Every family of the mode is written, also before
its first observation (a real kube-proxy 1.33+ shows a labelled series only once
it was set; the lab always has synced when it records). Not written: the
process/Go runtime families, ``kubeproxy_proxy_healthz_total``/``livez_total``,
the nfacct packet counters and the 1.33 conntrack reconciler metrics.

KSM specifics: label order follows KSM (the object's default labels first;
``kube_endpointslice_endpoints`` carries a label only for a field that is set, so
an endpoint without a zone has no ``endpoint_zone``); HELP texts of STABLE families
carry KSM's ``[STABLE]`` prefix.
``kube_endpointslice_labels`` and ``kube_node_labels`` carry labels only because a
real KSM was started with an allowlist; for the same series from a real cluster run
KSM with ``--metric-labels-allowlist=endpointslices=[kubernetes.io/service-name],nodes=[topology.kubernetes.io/zone,topology.kubernetes.io/region]``.
The Endpoints metrics need ``--resources`` to include ``endpoints`` from KSM v2.18 on.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import decimal
import difflib
import http.server
import ipaddress
import math
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .k8s_objects import cluster_objects
from .scenario import Scenario

__all__ = [
    "SYNC_DURATION_BUCKETS",
    "NETWORK_PROGRAMMING_BUCKETS",
    "PROXY_METRICS_MODES",
    "TRAFFIC_POLICIES",
    "IP_FAMILY",
    "CONTENT_TYPE",
    "format_value",
    "escape_label_value",
    "kube_state_metrics_text",
    "kube_proxy_metrics_text",
    "openmetrics_series",
    "serve_metrics",
    "MetricsServer",
]

#: Content type of the text exposition format 0.0.4, as served by :func:`serve_metrics`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _exponential(start: float, factor: float, count: int) -> tuple[float, ...]:
    # Computed as client_golang's ExponentialBuckets does (repeated multiplication).
    out, value = [], start
    for _ in range(count):
        out.append(value)
        value *= factor
    return tuple(out)


def _linear(start: float, width: float, count: int) -> tuple[float, ...]:
    out, value = [], start
    for _ in range(count):
        out.append(value)
        value += width
    return tuple(out)


#: Upper bounds (seconds) of the sync-duration histograms: Exponential(0.001, x2, 15).
SYNC_DURATION_BUCKETS: tuple[float, ...] = _exponential(0.001, 2.0, 15)
#: Upper bounds (seconds) of kubeproxy_network_programming_duration_seconds: 81 finite
#: buckets, a leading 0 (component-base MergeBuckets) then 0.25, 0.5, 1..59, 60..115, 120..300.
NETWORK_PROGRAMMING_BUCKETS: tuple[float, ...] = (0.0,) + _linear(0.25, 0.25, 2) + _linear(
    1, 1, 59) + _linear(60, 5, 12) + _linear(120, 30, 7)

#: kube-proxy modes, and the lab's node proxy modes they stand for.
PROXY_METRICS_MODES: Mapping[str, str] = {
    "iptables": "iptables",
    "iptables-legacy": "iptables",
    "iptables-nft": "iptables",
    "nftables": "nftables",
    "ipvs": "ipvs",
}
#: Values of the ``traffic_policy`` label of the no-local-endpoints gauge.
TRAFFIC_POLICIES = ("internal", "external")
#: The ``ip_family`` label value (the lab is single-stack IPv4).
IP_FAMILY = "IPv4"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LABEL_SANITIZE = re.compile(r"[^a-zA-Z0-9_]")
_OPENMETRICS_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
                      "summary": "summary", "untyped": "unknown"}
_POD_PHASES = ("Pending", "Succeeded", "Failed", "Unknown", "Running")  # KSM's order


# -- formatting -----------------------------------------------------------------------------


def format_value(value: float) -> str:
    """Format a sample value as the Go Prometheus client does (``'g'``, shortest form).

    ``1`` -> ``"1"``, ``0.25`` -> ``"0.25"``, ``1e6`` -> ``"1e+06"``,
    ``1.7e9`` -> ``"1.7e+09"``, infinities ``"+Inf"``/``"-Inf"``, ``"NaN"``.
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # digits before the decimal point
    exp10 = point - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:  # Go: %e when exp < -4 || exp >= 6 for the shortest form
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{prefix}{text}{'0' * (point - len(text))}"
    return f"{prefix}{text[:point]}.{text[point:]}"


def escape_label_value(value: str) -> str:
    """Escape a label value for the text formats: backslash, double quote and newline."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str, openmetrics: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


Labels = tuple[tuple[str, str], ...]


@dataclasses.dataclass
class _Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = dataclasses.field(default_factory=list)

    def add(self, labels: Iterable[tuple[str, Any]] = (), value: float = 1.0, suffix: str = "") -> None:
        pairs = tuple((k, "" if v is None else str(v)) for k, v in labels)
        for key, _ in pairs:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"invalid label name {key!r} in {self.name}")
        self.samples.append((self.name + suffix, pairs, float(value)))


def _sample_line(name: str, labels: Labels, value: float, timestamp: str | None) -> str:
    body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    line = f"{name}{{{body}}} {format_value(value)}" if body else f"{name} {format_value(value)}"
    return f"{line} {timestamp}" if timestamp is not None else line


def _render(families: Iterable[_Family], timestamp_ms: int | None) -> str:
    stamp = None if timestamp_ms is None else str(int(timestamp_ms))
    lines = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines.extend(_sample_line(n, lab, v, stamp) for n, lab, v in family.samples)
    return "\n".join(lines) + "\n" if lines else ""


def _check_timestamp_ms(timestamp_ms: int | None) -> int | None:
    if timestamp_ms is None:
        return None
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
        raise ValueError(f"timestamp_ms must be a non-negative int (milliseconds), got {timestamp_ms!r}")
    return timestamp_ms


def _bool_word(value: Any) -> str:
    return "" if value is None else ("true" if value else "false")


def _unix_seconds(rfc3339: str) -> float:
    return dt.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


# -- kube-state-metrics ---------------------------------------------------------------------


def kube_state_metrics_text(
    scenario: Scenario,
    *,
    timestamp_ms: int | None = None,
    pod_states: Mapping[str, Any] | None = None,
    include_endpoints: bool = True,
    include_endpointslices: bool = True,
    allowlist_service_name: bool = True,
    at: dt.datetime | None = None,
) -> str:
    """kube-state-metrics' exposition of a scenario's objects at one moment.

    Families (all gauges, value 1 unless said otherwise): ``kube_service_info``,
    ``kube_service_spec_type``, ``kube_service_created`` (Unix seconds);
    ``kube_endpoint_address`` (one per port and address, ``ready`` true/false;
    with ``include_endpoints``); ``kube_endpointslice_info``,
    ``kube_endpointslice_ports``, ``kube_endpointslice_endpoints`` (one per
    endpoint address), ``kube_endpointslice_labels`` (with
    ``label_kubernetes_io_service_name``; with ``include_endpointslices``);
    ``kube_pod_info``, ``kube_pod_status_ready`` (three series per pod,
    ``condition`` true/false/unknown, 1 on the pod's state),
    ``kube_pod_status_phase`` (five per pod); ``kube_node_info``
    (``kubeproxy_version="deprecated"``), ``kube_node_status_condition`` (Ready,
    three series), ``kube_node_labels`` (zone and region, allow-listed).

    Parameters
    ----------
    scenario : Scenario
        The lab scenario.
    timestamp_ms : int, optional
        Sample timestamp in milliseconds since the Unix epoch, written on every
        sample (for backfilling); also the moment described when ``at`` is not
        given. Default: no timestamps.
    pod_states : mapping, optional
        Pod state at that moment, as for :func:`~npanalytics.lab.k8s_objects.cluster_objects`.
    include_endpoints : bool, default True
        Write the core/v1 Endpoints family (KSM v2.18+ needs ``--resources`` for it).
    include_endpointslices : bool, default True
        Write the EndpointSlice families.
    allowlist_service_name : bool, default True
        Write ``kube_endpointslice_labels{label_kubernetes_io_service_name=...}``, as
        KSM does with ``--metric-labels-allowlist=endpointslices=[kubernetes.io/service-name]``.
    at : datetime, optional
        The moment described (timezone-aware); default from ``timestamp_ms``.

    Returns
    -------
    str
        Text exposition format 0.0.4, ending in a newline.

    Raises
    ------
    ValueError
        If ``timestamp_ms`` is not a non-negative int, or a pod state is invalid.
    """
    timestamp_ms = _check_timestamp_ms(timestamp_ms)
    if at is None and timestamp_ms is not None:
        at = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.timezone.utc)
    objects = cluster_objects(scenario, at=at, pod_states=pod_states, include_endpoints=include_endpoints)
    fam = {
        name: _Family(name, "gauge", text) for name, text in (
            ("kube_service_info", "[STABLE] Information about a service."),
            ("kube_service_spec_type", "[STABLE] Type of a service."),
            ("kube_service_created", "[STABLE] Unix creation time of a service, in seconds."),
            ("kube_endpoint_address", "[STABLE] Addresses of an endpoint, with their readiness."),
            ("kube_endpointslice_info", "Information about an endpointslice."),
            ("kube_endpointslice_ports", "Ports of an endpointslice."),
            ("kube_endpointslice_endpoints", "Endpoints of an endpointslice, one series per address."),
            ("kube_endpointslice_labels", "Allow-listed Kubernetes labels of an endpointslice."),
            ("kube_pod_info", "[STABLE] Information about a pod."),
            ("kube_pod_status_ready", "[STABLE] Whether a pod is ready to serve requests."),
            ("kube_pod_status_phase", "[STABLE] Current phase of a pod."),
            ("kube_node_info", "[STABLE] Information about a cluster node."),
            ("kube_node_status_condition", "[STABLE] Condition of a cluster node."),
            ("kube_node_labels", "[STABLE] Allow-listed Kubernetes labels of a node."),
        )
    }
    for svc in objects["services"]:
        meta, spec = svc["metadata"], svc["spec"]
        base = (("namespace", meta["namespace"]), ("service", meta["name"]), ("uid", meta["uid"]))
        fam["kube_service_info"].add(base + (
            ("cluster_ip", spec["clusterIP"]), ("external_name", spec.get("externalName", "")),
            ("load_balancer_ip", spec.get("loadBalancerIP", "")),
            ("external_traffic_policy", spec.get("externalTrafficPolicy", "")),
        ))
        fam["kube_service_spec_type"].add(base + (("type", spec["type"]),))
        fam["kube_service_created"].add(base, _unix_seconds(meta["creationTimestamp"]))
    for ep in objects.get("endpoints", []) if include_endpoints else []:
        base = (("namespace", ep["metadata"]["namespace"]), ("endpoint", ep["metadata"]["name"]))
        for subset in ep.get("subsets", []):
            for port in subset.get("ports", []):
                for key, ready in (("addresses", "true"), ("notReadyAddresses", "false")):
                    for address in subset.get(key, []):
                        fam["kube_endpoint_address"].add(base + (
                            ("port_protocol", port["protocol"]), ("port_number", port["port"]),
                            ("port_name", port.get("name", "")), ("ip", address["ip"]), ("ready", ready),
                        ))
    if include_endpointslices:
        for eps in objects["endpointslices"]:
            meta = eps["metadata"]
            base = (("endpointslice", meta["name"]), ("namespace", meta["namespace"]))
            fam["kube_endpointslice_info"].add(base + (("addresstype", eps["addressType"]),))
            for port in eps.get("ports") or []:
                fam["kube_endpointslice_ports"].add(base + (
                    ("port_name", port.get("name", "")), ("port_protocol", port.get("protocol", "")),
                    ("port_number", port.get("port", "")),
                ))
            for endpoint in eps.get("endpoints") or []:
                cond, ref = endpoint.get("conditions", {}), endpoint.get("targetRef", {})
                # As KSM does: a label only for a field that is set, in this order.
                optional = [(f"{key}", _bool_word(cond[key])) for key in ("ready", "serving", "terminating")
                            if cond.get(key) is not None]
                optional += [(label, source[field]) for label, source, field in (
                    ("hostname", endpoint, "hostname"),
                    ("targetref_kind", ref, "kind"),
                    ("targetref_name", ref, "name"),
                    ("targetref_namespace", ref, "namespace"),
                    ("endpoint_nodename", endpoint, "nodeName"),
                    ("endpoint_zone", endpoint, "zone"),
                ) if source.get(field)]
                for address in endpoint["addresses"]:
                    fam["kube_endpointslice_endpoints"].add(base + tuple(optional) + (("address", address),))
            if allowlist_service_name:
                fam["kube_endpointslice_labels"].add(base + (
                    ("label_kubernetes_io_service_name", meta["labels"]["kubernetes.io/service-name"]),
                ))
    for pod in objects["pods"]:
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        base = (("namespace", meta["namespace"]), ("pod", meta["name"]), ("uid", meta["uid"]))
        owner = next((o for o in meta.get("ownerReferences", []) if o.get("controller")), {})
        fam["kube_pod_info"].add(base + (
            ("host_ip", status.get("hostIP", "")), ("pod_ip", status.get("podIP", "")),
            ("node", spec.get("nodeName", "")), ("created_by_kind", owner.get("kind", "")),
            ("created_by_name", owner.get("name", "")),
            ("priority_class", spec.get("priorityClassName", "")),
            ("host_network", _bool_word(bool(spec.get("hostNetwork", False)))),
        ))
        ready = next(c["status"] for c in status["conditions"] if c["type"] == "Ready")
        for word in ("true", "false", "unknown"):
            fam["kube_pod_status_ready"].add(base + (("condition", word),), float(ready.lower() == word))
        for phase in _POD_PHASES:
            fam["kube_pod_status_phase"].add(base + (("phase", phase),), float(status["phase"] == phase))
    for node in objects["nodes"]:
        meta, spec, status = node["metadata"], node["spec"], node["status"]
        info = status["nodeInfo"]
        internal_ip = next((a["address"] for a in status["addresses"] if a["type"] == "InternalIP"), "")
        base = (("node", meta["name"]),)
        fam["kube_node_info"].add(base + (
            ("kernel_version", info["kernelVersion"]), ("os_image", info["osImage"]),
            ("container_runtime_version", info["containerRuntimeVersion"]),
            ("kubelet_version", info["kubeletVersion"]), ("kubeproxy_version", "deprecated"),
            ("provider_id", spec.get("providerID", "")), ("pod_cidr", spec.get("podCIDR", "")),
            ("system_uuid", info["systemUUID"]), ("internal_ip", internal_ip),
        ))
        for condition in status["conditions"]:
            for word in ("true", "false", "unknown"):
                fam["kube_node_status_condition"].add(
                    base + (("condition", condition["type"]), ("status", word)),
                    float(condition["status"].lower() == word),
                )
        allowed = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")
        fam["kube_node_labels"].add(base + tuple(
            ("label_" + _LABEL_SANITIZE.sub("_", key), value)
            for key, value in sorted(meta.get("labels", {}).items()) if key in allowed
        ))
    return _render(fam.values(), timestamp_ms)


# -- kube-proxy ---------------------------------------------------------------------------


_PROXY_HELP = {
    "kubeproxy_sync_proxy_rules_duration_seconds": "Time one proxy rules sync took, in seconds.",
    "kubeproxy_sync_full_proxy_rules_duration_seconds": "Time one full proxy rules sync took, in seconds.",
    "kubeproxy_sync_partial_proxy_rules_duration_seconds":
        "Time one partial proxy rules sync took, in seconds.",
    "kubeproxy_network_programming_duration_seconds":
        "Time from an endpoint change to the proxy rules programming it, in seconds.",
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds":
        "Unix time of the last successful proxy rules sync, in seconds.",
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds":
        "Unix time the last proxy rules sync was queued, in seconds.",
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": "Endpoint changes not yet synced.",
    "kubeproxy_sync_proxy_rules_endpoint_changes_total": "Endpoint changes seen.",
    "kubeproxy_sync_proxy_rules_service_changes_pending": "Service changes not yet synced.",
    "kubeproxy_sync_proxy_rules_service_changes_total": "Service changes seen.",
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total":
        "Services with a Local traffic policy that have no local endpoints.",
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total": "Failed iptables restores.",
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total":
        "Failed partial iptables restores.",
    "kubeproxy_sync_proxy_rules_iptables_total": "Rules kube-proxy owns, per table.",
    "kubeproxy_sync_proxy_rules_iptables_last": "Rules written in the last restore, per table.",
    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total": "Failed nftables syncs.",
    "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total":
        "Failures to remove stale nftables chains.",
}


def _check_durations(values: Iterable[float], name: str) -> list[float]:
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"{name} must hold finite non-negative seconds, got {value!r}")
        out.append(float(value))
    return out


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _check_choice(value: Any, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}{hint}")
    return value


def _histogram(family: _Family, labels: Labels, bounds: Sequence[float], values: Sequence[float]) -> None:
    ordered = sorted(values)
    for bound in bounds:  # cumulative: observations <= bound (client_golang's upper-inclusive buckets)
        count = bisect.bisect_right(ordered, bound)
        family.add(labels + (("le", format_value(bound)),), count, "_bucket")
    family.add(labels + (("le", "+Inf"),), len(ordered), "_bucket")
    family.add(labels, math.fsum(ordered), "_sum")
    family.add(labels, len(ordered), "_count")


def kube_proxy_metrics_text(
    node: str,
    *,
    sync_durations_seconds: Sequence[float],
    network_programming_seconds: Sequence[float] = (),
    rules_total: Mapping[str, int] | None = None,
    rules_last: Mapping[str, int] | None = None,
    endpoint_changes_total: int = 0,
    service_changes_total: int = 0,
    endpoint_changes_pending: int = 0,
    service_changes_pending: int = 0,
    no_local_endpoints: Mapping[str, int] | None = None,
    restore_failures_total: int = 0,
    partial_sync_durations_seconds: Sequence[float] = (),
    mode: str = "iptables",
    last_sync_timestamp: float | None = None,
    last_queued_timestamp: float | None = None,
    timestamp_ms: int | None = None,
    ip_family_label: bool = True,
) -> str:
    """One node's kube-proxy ``/metrics`` (the ``kubeproxy_*`` families), from measurements.

    Parameters
    ----------
    node : str
        The node (for error messages; kube-proxy's own series carry no node label,
        the scrape adds ``instance``).
    sync_durations_seconds : sequence of float
        Durations of the full syncs, in seconds (every lab rule load is a full
        restore). They fill ``kubeproxy_sync_proxy_rules_duration_seconds`` and, in
        iptables mode, ``kubeproxy_sync_full_proxy_rules_duration_seconds``.
    network_programming_seconds : sequence of float, default ()
        Seconds from an endpoint change to its rules being loaded, one per change;
        ``kubeproxy_network_programming_duration_seconds``.
    rules_total : mapping of table to int, optional
        Rules kube-proxy owns per iptables table (``{"filter": n, "nat": m}``, as
        :func:`npanalytics.lab.render_iptables.count_rules` counts them);
        ``kubeproxy_sync_proxy_rules_iptables_total{table}``. iptables mode only
        (kube-proxy exports no rule count in the other modes; it is ignored there).
    rules_last : mapping of table to int, optional
        Rules written by the last restore; default ``rules_total``.
    endpoint_changes_total, service_changes_total : int, default 0
        Counters of changes seen.
    endpoint_changes_pending, service_changes_pending : int, default 0
        Gauges of changes not yet synced.
    no_local_endpoints : mapping of {"internal", "external"} to int, optional
        Services with a Local policy and no local endpoint, per traffic policy;
        ``kubeproxy_sync_proxy_rules_no_local_endpoints_total`` (a gauge despite
        its name). Both series are written, missing ones as 0.
    restore_failures_total : int, default 0
        Failed rule loads: ``..._iptables_restore_failures_total`` in iptables and
        IPVS modes, ``..._nftables_sync_failures_total`` in nftables mode.
    partial_sync_durations_seconds : sequence of float, default ()
        Durations of partial syncs (iptables mode): they go into the overall and
        the partial histograms, not the full one.
    mode : str, default "iptables"
        ``iptables``, ``nftables`` or ``ipvs`` (the lab's ``iptables-legacy`` and
        ``iptables-nft`` mean ``iptables``); decides which families exist.
    last_sync_timestamp, last_queued_timestamp : float, optional
        Unix seconds of the last successful sync and of the last queued one; the
        gauge is left out when not given (no sync yet).
    timestamp_ms : int, optional
        Sample timestamp in milliseconds written on every sample.
    ip_family_label : bool, default True
        Kubernetes 1.33+ label sets (``ip_family="IPv4"``); False for 1.28-1.32.

    Returns
    -------
    str
        Text exposition format 0.0.4, families sorted by name.

    Raises
    ------
    ValueError
        For an unknown mode or traffic policy, negative or non-finite durations,
        negative counts, or a non-int timestamp.
    """
    canonical = PROXY_METRICS_MODES.get(mode)
    if canonical is None:
        _check_choice(mode, list(PROXY_METRICS_MODES), f"mode (node {node})")
    timestamp_ms = _check_timestamp_ms(timestamp_ms)
    full = _check_durations(sync_durations_seconds, "sync_durations_seconds")
    partial = _check_durations(partial_sync_durations_seconds, "partial_sync_durations_seconds")
    programming = _check_durations(network_programming_seconds, "network_programming_seconds")
    counts = {
        name: _check_count(value, name) for name, value in (
            ("endpoint_changes_total", endpoint_changes_total),
            ("service_changes_total", service_changes_total),
            ("endpoint_changes_pending", endpoint_changes_pending),
            ("service_changes_pending", service_changes_pending),
            ("restore_failures_total", restore_failures_total),
        )
    }
    no_local = {policy: 0 for policy in TRAFFIC_POLICIES}
    for policy, value in (no_local_endpoints or {}).items():
        _check_choice(policy, TRAFFIC_POLICIES, "no_local_endpoints key")
        no_local[policy] = _check_count(value, f"no_local_endpoints[{policy!r}]")
    tables = {str(t): _check_count(v, f"rules_total[{t!r}]") for t, v in (rules_total or {}).items()}
    last = tables if rules_last is None else {
        str(t): _check_count(v, f"rules_last[{t!r}]") for t, v in rules_last.items()
    }
    for name, value in (("last_sync_timestamp", last_sync_timestamp),
                        ("last_queued_timestamp", last_queued_timestamp)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"{name} must be finite Unix seconds, got {value!r}")

    family_label: Labels = (("ip_family", IP_FAMILY),) if ip_family_label else ()
    families: dict[str, _Family] = {}

    def family(name: str, kind: str) -> _Family:
        families[name] = _Family(name, kind, "[ALPHA] " + _PROXY_HELP[name])
        return families[name]

    _histogram(family("kubeproxy_sync_proxy_rules_duration_seconds", "histogram"),
               family_label, SYNC_DURATION_BUCKETS, full + partial)
    _histogram(family("kubeproxy_network_programming_duration_seconds", "histogram"),
               family_label, NETWORK_PROGRAMMING_BUCKETS, programming)
    if last_sync_timestamp is not None:
        family("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge").add(
            family_label, last_sync_timestamp)
    if last_queued_timestamp is not None:
        family("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge").add(
            family_label, last_queued_timestamp)
    for what in ("endpoint", "service"):
        family(f"kubeproxy_sync_proxy_rules_{what}_changes_pending", "gauge").add(
            (), counts[f"{what}_changes_pending"])
        family(f"kubeproxy_sync_proxy_rules_{what}_changes_total", "counter").add(
            (), counts[f"{what}_changes_total"])
    no_local_family = family("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge")
    for policy in sorted(TRAFFIC_POLICIES):
        no_local_family.add(tuple(sorted(family_label + (("traffic_policy", policy),))), no_local[policy])
    failures = counts["restore_failures_total"]
    if canonical == "iptables":
        _histogram(family("kubeproxy_sync_full_proxy_rules_duration_seconds", "histogram"),
                   family_label, SYNC_DURATION_BUCKETS, full)
        _histogram(family("kubeproxy_sync_partial_proxy_rules_duration_seconds", "histogram"),
                   family_label, SYNC_DURATION_BUCKETS, partial)
        family("kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", "counter").add(
            family_label, 0)
        for name, values in (("kubeproxy_sync_proxy_rules_iptables_total", tables),
                             ("kubeproxy_sync_proxy_rules_iptables_last", last)):
            table_family = family(name, "gauge")
            for table in sorted(values):
                table_family.add(tuple(sorted(family_label + (("table", table),))), values[table])
    if canonical in ("iptables", "ipvs"):
        family("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "counter").add(
            family_label, failures)
    if canonical == "nftables":
        family("kubeproxy_sync_proxy_rules_nftables_sync_failures_total", "counter").add(
            family_label, failures)
        family("kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total", "counter").add(
            family_label, 0)
    return _render((families[name] for name in sorted(families)), timestamp_ms)


# -- OpenMetrics for backfilling ------------------------------------------------------------


_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_LINE = re.compile(rf"^({_METRIC_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$")
_LABEL_NAME_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LABEL_VALUE_PATTERN = r'"(?:[^"\\\n]|\\.)*"'  # escapes kept as written
_ONE_LABEL = rf"[ \t]*{_LABEL_NAME_PATTERN}[ \t]*=[ \t]*{_LABEL_VALUE_PATTERN}[ \t]*"
_LABEL_BODY = re.compile(rf"(?:{_ONE_LABEL},)*(?:{_ONE_LABEL})?[ \t]*")
_LABEL_PAIR = re.compile(rf'[ \t]*({_LABEL_NAME_PATTERN})[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"')
_COMMENT_LINE = re.compile(rf"^#[ \t]*(HELP|TYPE)[ \t]+({_METRIC_NAME})(?:[ \t]+(.*))?$")
_TEXT_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_TYPE_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclasses.dataclass
class _Parsed:
    """One family read from text exposition; label values and values stay as written."""

    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, Labels, str]] = dataclasses.field(default_factory=list)

    def owns(self, sample_name: str) -> bool:
        return sample_name == self.name or (
            sample_name.startswith(self.name)
            and sample_name[len(self.name):] in _TYPE_SUFFIXES.get(self.type, ())
        )


def _unescape_help(text: str) -> str:
    return re.sub(r"\\([\\n])", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def _read_exposition(text: str, where: str) -> list[_Parsed]:
    """Read text exposition format 0.0.4 strictly (``where:lineno: expected ..., got ...``)."""
    families: list[_Parsed] = []
    by_name: dict[str, _Parsed] = {}
    current: _Parsed | None = None

    def fail(lineno: int, expected: str, line: str) -> ValueError:
        return ValueError(f"{where}:{lineno}: expected {expected}, got {line[:120]!r}")

    def family(name: str, lineno: int, line: str) -> _Parsed:
        nonlocal current
        if current is not None and current.name == name:
            return current
        if name in by_name:
            raise fail(lineno, f"the lines of family {name} together", line)
        current = by_name[name] = _Parsed(name)
        families.append(current)
        return current

    for lineno, line in enumerate(text.split("\n"), 1):  # only \n ends a line (not \x1e, \u2028...)
        if not line.strip():
            continue
        if line.startswith("#"):
            match = _COMMENT_LINE.match(line)
            if match is None:
                continue  # a plain comment
            keyword, name, rest = match.group(1), match.group(2), match.group(3) or ""
            fam = family(name, lineno, line)
            if fam.samples:
                raise fail(lineno, f"# {keyword} before the samples of {name}", line)
            if keyword == "HELP":
                fam.help = _unescape_help(rest)
            else:
                kind = rest.strip()
                if kind not in _TEXT_TYPES:
                    raise fail(lineno, f"a type among {', '.join(_TEXT_TYPES)}", line)
                fam.type = kind
            continue
        match = _SAMPLE_LINE.match(line)
        if match is None:
            raise fail(lineno, "a sample line 'name{label=\"value\",...} value [timestamp]'", line)
        name, body, value = match.group(1), match.group(2), match.group(3)
        try:
            float(value)
        except ValueError:
            raise fail(lineno, "a float sample value", line) from None
        pairs: Labels = ()
        if body:
            if _LABEL_BODY.fullmatch(body) is None:
                raise fail(lineno, 'labels name="value" separated by commas', line)
            pairs = tuple(_LABEL_PAIR.findall(body))
        fam = current if current is not None and current.owns(name) else family(name, lineno, line)
        fam.samples.append((name, pairs, value))
    return families


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def openmetrics_series(
    frames: Sequence[tuple[float, str] | tuple[float, str, Mapping[str, str]]],
) -> str:
    """Join timestamped scrapes into one OpenMetrics document for backfilling.

    Each frame is ``(timestamp_seconds, text)`` or ``(timestamp_seconds, text,
    labels)``: a text exposition (format 0.0.4, as :func:`kube_state_metrics_text`
    or :func:`kube_proxy_metrics_text` write it, or a real scrape) taken at that
    Unix time, and target labels to add to each of its samples, as a scrape adds
    ``job`` and ``instance`` (needed to tell apart the kube-proxy frames of
    several nodes, whose own series carry no node label). Every sample of a
    frame gets the frame's timestamp (timestamps inside the text are replaced).
    Each family is written once, with its series in time order, as ``promtool
    tsdb create-blocks-from openmetrics`` requires; a counter ``x_total`` becomes
    the OpenMetrics family ``x`` with samples ``x_total``; a counter sample
    without the ``_total`` suffix makes its family ``unknown``, as does
    ``untyped``. Label values and sample values are copied as written (both
    formats escape label values alike). The texts are read strictly, without
    prometheus-client (whose parser silently drops a malformed label such as
    ``a{b=} 1``).

    Parameters
    ----------
    frames : sequence of (float, str) or (float, str, mapping)
        Unix seconds, exposition text and optional target labels. Frames may
        share a timestamp as long as no series gets two samples at one time.

    Returns
    -------
    str
        OpenMetrics text ending with ``# EOF``.

    Raises
    ------
    ValueError
        When a series gets two samples at one timestamp, a family's type differs
        between frames, a target label is invalid or already in the text, or a
        line is not text exposition (``frame K (t=T):LINENO: expected ..., got ...``).
    """
    checked = []
    for k, frame in enumerate(frames):
        if not isinstance(frame, (tuple, list)) or len(frame) not in (2, 3):
            raise ValueError(f"frame {k}: expected (seconds, text) or (seconds, text, labels), got {frame!r}")
        seconds, text = frame[0], frame[1]
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
            raise ValueError(f"frame {k}: expected finite Unix seconds, got {seconds!r}")
        extra = dict(frame[2]) if len(frame) == 3 else {}
        for key in extra:
            if not _LABEL_NAME.match(str(key)) or key in ("le", "quantile"):
                raise ValueError(f"frame {k}: invalid target label name {key!r}")
        target = tuple((str(key), escape_label_value(value)) for key, value in extra.items())
        checked.append((seconds, k, text, target))
    checked.sort(key=lambda item: item[0])  # stable: frames of one time keep their order
    kinds: dict[str, str] = {}
    helps: dict[str, str] = {}
    # family -> group key (labels without le/quantile) -> list of (timestamp, samples)
    series: dict[str, dict[Labels, list[tuple[float, list[tuple[str, Labels, str]]]]]] = {}
    for seconds, k, text, target in checked:
        where = f"frame {k} (t={seconds})"
        target_names = {key for key, _ in target}
        for parsed in _read_exposition(text, where):
            name, kind = parsed.name, _OPENMETRICS_TYPES[parsed.type]
            if kind == "counter":
                if name.endswith("_total") and all(n == name for n, _, _ in parsed.samples):
                    name = name[: -len("_total")]
                else:
                    kind = "unknown"
            if name in kinds and kinds[name] != kind:
                raise ValueError(
                    f"{where}: family {name} is a {kind}, but an earlier frame had it as a {kinds[name]}"
                )
            kinds.setdefault(name, kind)
            if not helps.get(name):
                helps[name] = parsed.help
            groups = series.setdefault(name, {})
            point: dict[Labels, list[tuple[str, Labels, str]]] = {}
            for sample_name, labels, value in parsed.samples:
                if target_names and target_names & {key for key, _ in labels}:
                    clash = sorted(target_names & {key for key, _ in labels})
                    raise ValueError(f"{where}: {sample_name} already has the target label {clash[0]!r}")
                labels = target + labels
                key = tuple(pair for pair in labels if pair[0] not in ("le", "quantile"))
                point.setdefault(key, []).append((sample_name, labels, value))
            for key, samples in point.items():
                points = groups.setdefault(key, [])
                if points and points[-1][0] == seconds:
                    shown = ",".join(f'{k}="{v}"' for k, v in key)
                    raise ValueError(
                        f"{where}: series {name}{{{shown}}} has two samples at t={seconds}; "
                        "give each scrape its own time or its own target labels"
                    )
                points.append((seconds, samples))
    lines = []
    for name, groups in series.items():
        if helps[name]:
            lines.append(f"# HELP {name} {_escape_help(helps[name], openmetrics=True)}")
        lines.append(f"# TYPE {name} {kinds[name]}")
        for points in groups.values():
            for seconds, samples in points:
                stamp = _format_seconds(seconds)
                for sample_name, labels, value in samples:
                    # label values are still escaped as written; both formats escape alike
                    body = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{sample_name}{{{body}}} {value} {stamp}" if body
                                 else f"{sample_name} {value} {stamp}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# -- live serving ---------------------------------------------------------------------------


class MetricsServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server answering ``GET /metrics`` from a callable (see :func:`serve_metrics`)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], texts: Callable[[], str]) -> None:
        self.texts = texts
        self.scrapes = 0
        self._thread: threading.Thread | None = None
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="npa-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, "text/plain; charset=utf-8", b"not found; try /metrics\n")
            return
        try:
            body = self.server.texts().encode("utf-8")
        except Exception as exc:  # the scrape must see the failure, not hang
            self._reply(500, "text/plain; charset=utf-8", f"metrics callable failed: {exc!r}\n".encode())
            return
        self.server.scrapes += 1
        self._reply(200, CONTENT_TYPE, body)

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """The library does not log; requests are counted in ``server.scrapes``."""


def serve_metrics(
    texts: Callable[[], str], host: str = "127.0.0.1", port: int = 0
) -> tuple[MetricsServer, str]:
    """Serve ``texts()`` at ``http://host:port/metrics`` from a background thread.

    Parameters
    ----------
    texts : callable returning str
        Called on every scrape; its text is served as
        ``text/plain; version=0.0.4; charset=utf-8``. An exception becomes HTTP 500.
    host : str, default "127.0.0.1"
        A loopback address (the lab only talks to loopback).
    port : int, default 0
        0 picks a free port.

    Returns
    -------
    (MetricsServer, str)
        The running server (``server.stop()`` ends it; also a context manager)
        and the scrape URL.

    Raises
    ------
    ValueError
        If ``host`` is not a loopback address.
    """
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host must be a loopback address such as 127.0.0.1, got {host!r}")
    server = MetricsServer((host, int(port)), texts)
    server.start()
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return server, f"http://{shown}:{bound_port}/metrics"
