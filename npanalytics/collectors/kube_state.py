"""kube-state-metrics (KSM) series into the cluster-state frames.

The kinds are ``k8s_services``, ``k8s_endpoints``, ``k8s_pods`` and ``k8s_nodes``, the
same the Kubernetes API collector returns.

:func:`kube_state_frames` is a pure function of a ``prom_samples`` frame, so it
reads the result of Prometheus instant queries (:func:`get_kube_state`) and a
direct scrape of KSM (:func:`~npanalytics.collectors.metrics_text.read_metrics_text`)
alike. The metric and label names are those of KUBE_FACTS §4 (KSM ``internal/store``).

What KSM cannot know is NA, never guessed: it exposes no Service ports, node
ports or session affinity, so those columns are NA in ``services``; an
EndpointSlice is joined to its Service only through
``kube_endpointslice_labels{label_kubernetes_io_service_name=...}``, which KSM
writes only with ``--metric-labels-allowlist=endpointslices=[kubernetes.io/service-name]``.
The ``labels`` JSON of services and pods holds the allow-listed labels under KSM's
sanitised names without the ``label_`` prefix (``app_kubernetes_io_name`` for
``app.kubernetes.io/name``): the original keys cannot be recovered from the metrics.

Versions of KSM, and what is read from each (``KubeState.variant`` says which):

* ``endpointslice``: ``kube_endpointslice_endpoints`` (default from v2.18; its
  node label is ``endpoint_nodename`` in the code, ``nodename`` in some docs and
  older releases; both are read, as are ``endpoint_zone`` and ``zone``), ports
  from ``kube_endpointslice_ports``, topology hints from ``kube_endpointslice_endpoints_hints``.
* ``endpoint_address``: ``kube_endpoint_address`` (one series per address and
  port, ``ready`` true/false; v2.x up to v2.17 by default, later with
  ``--resources=endpoints``). Without ``port_*`` labels the ports come from the
  deprecated ``kube_endpoint_ports``.
* ``endpoint_counts``: only ``kube_endpoint_address_available`` /
  ``kube_endpoint_address_not_ready`` (before v2.14): counts per Endpoints
  object, no addresses. ``endpoints`` is then empty and the counts are in
  ``KubeState.address_counts``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..exceptions import CollectorError
from ..schemas import frame_from_records, schema_table, validate_frame
from .metrics_text import concat_samples

__all__ = ["KubeState", "kube_state_frames", "get_kube_state", "KSM_QUERIES", "SOURCE"]

#: The ``source`` column of every frame made here.
SOURCE = "kube-state-metrics"

#: The metric families read (one instant query each in :func:`get_kube_state`).
KSM_QUERIES = (
    "kube_service_info", "kube_service_spec_type", "kube_service_labels",
    "kube_endpointslice_endpoints", "kube_endpointslice_ports", "kube_endpointslice_labels",
    "kube_endpointslice_endpoints_hints",
    "kube_endpoint_address", "kube_endpoint_ports",
    "kube_endpoint_address_available", "kube_endpoint_address_not_ready",
    "kube_pod_info", "kube_pod_ips", "kube_pod_status_ready", "kube_pod_status_phase",
    "kube_pod_deletion_timestamp", "kube_pod_labels",
    "kube_node_info", "kube_node_labels", "kube_node_status_condition", "kube_node_status_addresses",
)
#: Metrics that are not namespaced (no namespace matcher in queries).
_CLUSTER_SCOPED = ("kube_node_info", "kube_node_labels", "kube_node_status_condition",
                   "kube_node_status_addresses")

#: Labels a scrape adds that tell targets (KSM shards) apart.
_TARGET_LABELS = ("job", "instance")
# Alternative label names across KSM versions, newest first.
_NODE_LABELS = ("endpoint_nodename", "nodename")
_ZONE_LABELS = ("endpoint_zone", "zone")
_NODE_ZONE_LABELS = ("label_topology_kubernetes_io_zone", "label_failure_domain_beta_kubernetes_io_zone")
_NODE_REGION_LABELS = ("label_topology_kubernetes_io_region", "label_failure_domain_beta_kubernetes_io_region")
_NONE_WORDS = ("", "<none>")  # KSM writes '' (v2) or '<none>' (v1) for a field that is not set
_BOOL_WORDS = {"true": True, "false": False}


@dataclasses.dataclass
class KubeState:
    """The cluster-state frames read from kube-state-metrics, and how they were read.

    Attributes
    ----------
    services, endpoints, pods, nodes : pandas.DataFrame
        Kinds ``k8s_services``, ``k8s_endpoints``, ``k8s_pods`` and ``k8s_nodes``
        (``source`` = ``'kube-state-metrics'``).
    variant : str
        Where the endpoints came from: ``'endpointslice'``, ``'endpoint_address'``,
        ``'endpoint_counts'`` or ``'none'``.
    notes : list of str
        What was found and what is missing (label variants, allow-lists, ...).
    address_counts : dict
        ``(namespace, endpoints name) -> {"available": n, "not_ready": m}``, from the
        pre-v2.14 count gauges when present.
    """

    services: pd.DataFrame
    endpoints: pd.DataFrame
    pods: pd.DataFrame
    nodes: pd.DataFrame
    variant: str
    notes: list[str] = dataclasses.field(default_factory=list)
    address_counts: dict[tuple[str, str], dict[str, int]] = dataclasses.field(default_factory=dict)

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """The four frames by name."""
        return {"services": self.services, "endpoints": self.endpoints, "pods": self.pods, "nodes": self.nodes}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


# -- selecting series -----------------------------------------------------------------------


class _Series:
    """The samples of one metric at its latest time (at or before ``at``), as plain dicts."""

    def __init__(self, rows: pd.DataFrame, name: str, at_ns: int | None, namespace: str | None) -> None:
        if at_ns is not None and len(rows):
            rows = rows[rows["timestamp"] <= pd.Timestamp(at_ns, unit="ns", tz="UTC")]
        if len(rows):  # the latest scrape of each target (one group without job/instance labels)
            targets = [c for c in _TARGET_LABELS if c in rows and rows[c].notna().any()]
            if targets:
                keys = rows[targets].astype(object).fillna("")
                latest = rows["timestamp"].groupby([keys[c] for c in targets]).transform("max")
            else:
                latest = rows["timestamp"].max()
            rows = rows[rows["timestamp"] == latest]
        if namespace is not None and len(rows) and "namespace" in rows and name not in _CLUSTER_SCOPED:
            rows = rows[rows["namespace"] == namespace]
        self.present = len(rows) > 0
        labels = [c for c in rows.columns if c not in ("timestamp", "value", "__name__")
                  and self.present and rows[c].notna().any()]
        self.label_names = set(labels)
        self.rows: list[dict[str, Any]] = []
        if self.present:
            columns = {c: rows[c].astype(object).where(rows[c].notna(), None).tolist() for c in labels}
            columns["value"] = rows["value"].tolist()
            self.rows = [dict(zip(columns, values)) for values in zip(*columns.values())]

    def __iter__(self):
        return iter(self.rows)


def _word(value: Any) -> str | None:
    """A label value, or None when KSM wrote 'not set'."""
    return None if value is None or value in _NONE_WORDS else str(value)


def _bool(value: Any) -> bool | None:
    return _BOOL_WORDS.get(str(value).lower()) if value is not None else None


def _first_label(row: dict[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        if _word(row.get(name)) is not None:
            return _word(row.get(name))
    return None


def _labels_json(row: dict[str, Any] | None) -> str:
    if row is None:
        return "{}"
    pairs = {k[len("label_"):]: v for k, v in row.items() if k.startswith("label_") and v is not None}
    return json.dumps(dict(sorted(pairs.items())), ensure_ascii=False)


def _port(value: Any) -> int | None:
    try:
        return int(value) if _word(value) is not None else None
    except ValueError:
        return None


def _protocol(value: Any) -> str | None:
    word = _word(value)
    return word.lower() if word is not None else None


def _service_port_name(namespace: Any, service: Any, port_name: Any) -> str | None:
    if namespace is None or service is None or port_name is None:
        return None
    return f"{namespace}/{service}:{port_name}"


# -- the four frames ------------------------------------------------------------------------


def _services(get) -> pd.DataFrame:
    info, kinds, labels = get("kube_service_info"), get("kube_service_spec_type"), get("kube_service_labels")
    keys: dict[tuple[str, str], dict[str, Any]] = {}
    for series in (info, kinds):
        for row in series:
            keys.setdefault((row.get("namespace"), row.get("service")), {})
    by_key = {name: {(r.get("namespace"), r.get("service")): r for r in series}
              for name, series in (("info", info), ("type", kinds), ("labels", labels))}
    records = []
    for key in sorted(keys, key=lambda k: (str(k[0]), str(k[1]))):
        row, type_row = by_key["info"].get(key, {}), by_key["type"].get(key, {})
        records.append({
            "namespace": key[0], "service": key[1], "type": _word(type_row.get("type")),
            "cluster_ip": _word(row.get("cluster_ip")), "cluster_ips": "", "target_port": "",
            "external_traffic_policy": _word(row.get("external_traffic_policy")),
            "labels": _labels_json(by_key["labels"].get(key)) if labels.present else "{}",
            "source": SOURCE,
        })
    return validate_frame(frame_from_records(records, "k8s_services", optional=("labels", "source")),
                          "k8s_services")


def _slice_endpoints(get, notes: list[str]) -> list[dict[str, Any]]:
    endpoints, ports, slice_labels = (get("kube_endpointslice_endpoints"), get("kube_endpointslice_ports"),
                                      get("kube_endpointslice_labels"))
    hints = get("kube_endpointslice_endpoints_hints")
    node_label = next((n for n in _NODE_LABELS if n in endpoints.label_names), None)
    notes.append("endpoints from kube_endpointslice_endpoints"
                 + (f" (node label {node_label!r})" if node_label else " (no node label set)"))
    service_of = {(r.get("namespace"), r.get("endpointslice")): _word(r.get("label_kubernetes_io_service_name"))
                  for r in slice_labels}
    if not any(service_of.values()):
        notes.append("no kube_endpointslice_labels{label_kubernetes_io_service_name}: service is NA; run KSM "
                     "with --metric-labels-allowlist=endpointslices=[kubernetes.io/service-name]")
    ports_of: dict[tuple[Any, Any], list[tuple[Any, Any, Any]]] = {}
    for r in ports:
        ports_of.setdefault((r.get("namespace"), r.get("endpointslice")), []).append(
            (r.get("port_name") or "", _protocol(r.get("port_protocol")), _port(r.get("port_number"))))
    if not ports.present:
        notes.append("no kube_endpointslice_ports: endpoint ports are NA")
    hints_of: dict[tuple[Any, Any, Any], list[str]] = {}
    for r in hints:
        zone = _word(r.get("for_zone"))
        if zone is not None:
            hints_of.setdefault((r.get("namespace"), r.get("endpointslice"), r.get("address")), []).append(zone)
    records = []
    for r in endpoints:
        key = (r.get("namespace"), r.get("endpointslice"))
        service = service_of.get(key)
        target = _word(r.get("targetref_name")) if r.get("targetref_kind") == "Pod" else None
        base = {
            "namespace": key[0], "service": service, "slice": key[1], "address": r.get("address"),
            "ready": _bool(r.get("ready")), "serving": _bool(r.get("serving")),
            "terminating": _bool(r.get("terminating")), "node": _first_label(r, _NODE_LABELS),
            "zone": _first_label(r, _ZONE_LABELS),
            "hints": ",".join(sorted(hints_of.get(key + (r.get("address"),), []))),
            "target_pod": target, "source": SOURCE,
        }
        for port_name, protocol, port in ports_of.get(key, [(None, None, None)]):
            records.append(base | {"port_name": port_name, "protocol": protocol, "port": port,
                                   "service_port_name": _service_port_name(key[0], service, port_name)})
    return records


def _address_endpoints(get, notes: list[str]) -> list[dict[str, Any]]:
    addresses, old_ports = get("kube_endpoint_address"), get("kube_endpoint_ports")
    has_ports = "port_number" in addresses.label_names
    notes.append("endpoints from kube_endpoint_address (core/v1 Endpoints: no node, zone, serving, "
                 "terminating or target pod)" + ("" if has_ports else "; ports from kube_endpoint_ports"))
    ports_of: dict[tuple[Any, Any], list[tuple[Any, Any, Any]]] = {}
    for r in old_ports:
        ports_of.setdefault((r.get("namespace"), r.get("endpoint")), []).append(
            (r.get("port_name") or "", _protocol(r.get("port_protocol")), _port(r.get("port_number"))))
    records = []
    for r in addresses:
        key = (r.get("namespace"), r.get("endpoint"))
        if has_ports:
            port_list = [(r.get("port_name") or "", _protocol(r.get("port_protocol")), _port(r.get("port_number")))]
        else:
            port_list = ports_of.get(key, [(None, None, None)])
        for port_name, protocol, port in port_list:
            records.append({
                # an Endpoints object is named after its Service
                "namespace": key[0], "service": key[1], "slice": key[1], "address": r.get("ip"),
                "ready": _bool(r.get("ready")), "port_name": port_name, "protocol": protocol, "port": port,
                "hints": "", "service_port_name": _service_port_name(key[0], key[1], port_name),
                "source": SOURCE,
            })
    return records


def _endpoints(get, notes: list[str]) -> tuple[pd.DataFrame, str, dict]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for name, field in (("kube_endpoint_address_available", "available"),
                        ("kube_endpoint_address_not_ready", "not_ready")):
        for r in get(name):
            counts.setdefault((r.get("namespace"), r.get("endpoint")), {})[field] = int(r["value"])
    if get("kube_endpointslice_endpoints").present:
        variant, records = "endpointslice", _slice_endpoints(get, notes)
    elif get("kube_endpoint_address").present:
        variant, records = "endpoint_address", _address_endpoints(get, notes)
    elif counts:
        variant, records = "endpoint_counts", []
        notes.append("only kube_endpoint_address_available/_not_ready (kube-state-metrics before v2.14): "
                     "address counts per Endpoints object in address_counts, no addresses")
    else:
        variant, records = "none", []
        notes.append("no endpoint metrics (kube_endpointslice_endpoints, kube_endpoint_address) found")
    records.sort(key=lambda r: tuple(str(r.get(k)) for k in ("namespace", "service", "slice", "address",
                                                              "port_name")))
    frame = frame_from_records(records, "k8s_endpoints", optional=("source",))
    return validate_frame(frame, "k8s_endpoints"), variant, counts


def _pods(get) -> pd.DataFrame:
    info = get("kube_pod_info")
    ips: dict[tuple[Any, Any], list[str]] = {}
    for r in get("kube_pod_ips"):
        ips.setdefault((r.get("namespace"), r.get("pod")), []).append(r.get("ip"))
    phase = {(r.get("namespace"), r.get("pod")): r.get("phase") for r in get("kube_pod_status_phase")
             if r["value"] == 1}
    ready = {(r.get("namespace"), r.get("pod")): _bool(r.get("condition")) for r in get("kube_pod_status_ready")
             if r["value"] == 1}
    deleting = {(r.get("namespace"), r.get("pod")) for r in get("kube_pod_deletion_timestamp")}
    labels_series = get("kube_pod_labels")
    labels = {(r.get("namespace"), r.get("pod")): r for r in labels_series}
    records = []
    for r in sorted(info, key=lambda r: (str(r.get("namespace")), str(r.get("pod")))):
        key = (r.get("namespace"), r.get("pod"))
        records.append({
            "namespace": key[0], "pod": key[1], "node": _word(r.get("node")),
            "host_ip": _word(r.get("host_ip")), "pod_ip": _word(r.get("pod_ip")),
            "pod_ips": ",".join(sorted(ips.get(key, []))), "phase": phase.get(key), "ready": ready.get(key),
            "terminating": True if key in deleting else None,
            "owner_kind": _word(r.get("created_by_kind")), "owner_name": _word(r.get("created_by_name")),
            "labels": _labels_json(labels.get(key)) if labels_series.present else "{}",
        })
    return validate_frame(frame_from_records(records, "k8s_pods", optional=("labels",)), "k8s_pods")


def _nodes(get) -> pd.DataFrame:
    info = get("kube_node_info")
    labels = {r.get("node"): r for r in get("kube_node_labels")}
    ready = {r.get("node"): _bool(r.get("status")) for r in get("kube_node_status_condition")
             if r.get("condition") == "Ready" and r["value"] == 1}
    addresses: dict[tuple[Any, str], str] = {}
    for r in get("kube_node_status_addresses"):
        addresses.setdefault((r.get("node"), str(r.get("type"))), r.get("address"))
    records = []
    for r in sorted(info, key=lambda r: str(r.get("node"))):
        node = r.get("node")
        node_labels = labels.get(node, {})
        records.append({
            "node": node,
            "internal_ip": _word(r.get("internal_ip")) or addresses.get((node, "InternalIP")),
            "external_ip": addresses.get((node, "ExternalIP")),
            "zone": _first_label(node_labels, _NODE_ZONE_LABELS),
            "region": _first_label(node_labels, _NODE_REGION_LABELS),
            "ready": ready.get(node), "pod_cidr": _word(r.get("pod_cidr")) or "",
        })
    return validate_frame(frame_from_records(records, "k8s_nodes", optional=("pod_cidr",)), "k8s_nodes")


def kube_state_frames(samples: pd.DataFrame, *, at: Any = None, namespace: str | None = None) -> KubeState:
    """The cluster-state frames from kube-state-metrics samples (pure).

    Parameters
    ----------
    samples : pandas.DataFrame
        Kind ``prom_samples``: instant-query results, or a KSM scrape read with
        :func:`~npanalytics.collectors.metrics_text.read_metrics_text`. Other
        metrics in it are ignored.
    at : datetime, optional
        Of each metric, the samples of its latest timestamp at or before ``at``
        are used (default: its latest; per ``job``/``instance`` when the
        series carry those labels, so that KSM shards scraped at different
        times all count), so that several scrapes in one frame (a backfill
        file) give the state at one moment.
    namespace : str, optional
        Keep only this namespace's services, endpoints and pods (nodes stay).

    Returns
    -------
    KubeState
        ``services``, ``endpoints``, ``pods``, ``nodes`` (validated frames), the
        endpoints ``variant`` found and ``notes``.
    """
    validate_frame(samples, "prom_samples")
    at_ns = None
    if at is not None:
        stamp = pd.Timestamp(at)
        if stamp.tzinfo is None:
            raise ValueError(f"at must be timezone-aware (UTC), got the naive {at!r}")
        at_ns = stamp.tz_convert("UTC").value
    cache: dict[str, _Series] = {}
    if "__name__" in samples:
        wanted = samples[samples["__name__"].isin(KSM_QUERIES)]
        by_name = {str(name): rows for name, rows in wanted.groupby("__name__", observed=True)}
    else:
        by_name = {}

    def get(name: str) -> _Series:
        if name not in cache:
            cache[name] = _Series(by_name.get(name, samples.iloc[:0]), name, at_ns, namespace)
        return cache[name]

    notes: list[str] = []
    endpoints, variant, counts = _endpoints(get, notes)
    for name in ("kube_service_info", "kube_pod_info", "kube_node_info"):
        if not get(name).present:
            notes.append(f"no {name} samples")
    if get("kube_node_info").present and not get("kube_node_labels").present:
        notes.append("no kube_node_labels: node zones are NA (allow-list topology.kubernetes.io/zone)")
    return KubeState(services=_services(get), endpoints=endpoints, pods=_pods(get), nodes=_nodes(get),
                     variant=variant, notes=notes, address_counts=counts)


def get_kube_state(prom: Any, at: Any = None, namespace: str | None = None) -> KubeState:
    """Query kube-state-metrics' series from Prometheus and build the cluster-state frames.

    Runs one instant query per family of :data:`KSM_QUERIES` (with a
    ``namespace`` matcher when given) through
    :func:`npanalytics.collectors.prometheus.get_prometheus_instant`, and
    ``timestamp(<query>)`` for the families that answer, so that each series
    keeps its own sample time (an instant query still returns a series that
    went away up to 5 minutes later); then :func:`kube_state_frames`, which
    keeps each target's latest scrape.

    Parameters
    ----------
    prom : PrometheusConnect or str
        What ``get_prometheus_instant`` accepts (a connection or a URL).
    at : datetime, optional
        Evaluation time (timezone-aware); default now.
    namespace : str, optional
        Only this namespace (nodes are cluster-scoped and always read).

    Returns
    -------
    KubeState

    Raises
    ------
    CollectorError
        When Prometheus cannot be queried.
    """
    from .prometheus import get_prometheus_instant  # the HTTP layer, imported when used

    frames = []
    for name in KSM_QUERIES:
        if namespace is not None and name not in _CLUSTER_SCOPED:
            query = f'{name}{{namespace="{_escape(namespace)}"}}'
        else:
            query = name
        frame = get_prometheus_instant(prom, query, at=at)
        if len(frame):
            stamps = get_prometheus_instant(prom, f"timestamp({query})", at=at)
            frames.append(_sample_times(frame, stamps, query))
    samples = concat_samples(frames)
    return kube_state_frames(samples, namespace=namespace)


def _sample_times(values: pd.DataFrame, stamps: pd.DataFrame, query: str) -> pd.DataFrame:
    """Give each series of an instant result its own sample time (``timestamp(query)``).

    An instant query returns a series for up to the lookback delta (5 minutes) after
    its last sample, so a series that went away (a backfill has no staleness markers)
    would still look current; with the sample times, :func:`kube_state_frames` keeps
    the latest scrape only, as it does on text.
    """
    labels = [c for c in values.columns if c not in ("timestamp", "value", "__name__")]
    seconds = dict(zip(_label_keys(stamps, labels), stamps["value"]))
    sample_s = pd.Series(_label_keys(values, labels), index=values.index).map(seconds)
    if sample_s.isna().any():
        raise CollectorError(f"timestamp({query}) did not return every series of {query}")
    out = values.copy()
    out["timestamp"] = pd.to_datetime((sample_s.to_numpy(dtype="float64") * 1000).round().astype("int64"),
                                      unit="ms", utc=True).as_unit("ns")
    return out


def _label_keys(frame: pd.DataFrame, labels: list[str]) -> list[tuple[str | None, ...]]:
    columns = [frame[c].astype(object).where(frame[c].notna(), None).tolist() if c in frame else [None] * len(frame)
               for c in labels]
    return list(zip(*columns)) if columns else [()] * len(frame)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


for _function, _kinds in ((kube_state_frames, ("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes")),):
    _function.__doc__ += "\n    Notes\n    -----\n" + "".join(
        f"\n    ``{kind}``:\n\n    " + schema_table(kind).replace("\n", "\n    ") + "\n" for kind in _kinds)
