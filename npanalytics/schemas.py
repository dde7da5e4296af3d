"""Frame schemas: one spec per frame kind, and :func:`validate_frame`.

Every frame that crosses a layer (collector -> analysis -> plotting/report) has a
*kind*. Its spec lists each column with its dtype, unit and meaning. Readers
render the spec into their docstrings (:func:`schema_table`), datasets record
the kind of each frame, and analysis functions call :func:`validate_frame` on
their inputs.

Dtype vocabulary (pandas names): ``category`` for labels, ``int64``/``Int64``
for counts (``Int64`` when a value can be missing), ``Int32`` for ports,
``float64`` for measures, ``bool`` for flags (``boolean`` when a flag can be
unknown), ``str`` for free text and
``datetime64[ns, UTC]`` for time.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from .exceptions import SchemaError

__all__ = [
    "Column",
    "FrameSpec",
    "SCHEMAS",
    "validate_frame",
    "empty_frame",
    "frame_from_records",
    "conform_frame",
    "schema_table",
]


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a frame kind.

    Attributes
    ----------
    name : str
        Column name.
    dtype : str
        pandas dtype name (see the module docstring).
    unit : str
        Unit, ``""`` for labels and flags.
    description : str
        What the column means.
    required : bool
        Whether a frame of this kind must have the column (optional columns,
        such as ``node`` added when a dataset joins dumps of several nodes, are
        checked only when present).
    """

    name: str
    dtype: str
    unit: str
    description: str
    required: bool = True


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """The spec of one frame kind: its columns in order and what a row is."""

    kind: str
    row: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """All column names, required and optional, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The :class:`Column` called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.kind} has no column {name!r}")


def _c(name: str, dtype: str, unit: str, description: str, required: bool = True) -> Column:
    return Column(name, dtype, unit, description, required)


_NODE = _c("node", "category", "", "node the dump was taken on (added by datasets)", False)

_CONNTRACK_FLOWS = FrameSpec(
    "conntrack_flows",
    "conntrack entry",
    (
        _c("lineno", "int64", "", "1-based line (or <flow> element) number in the source"),
        _c("l3_protocol", "category", "", "ipv4 or ipv6"),
        _c("protocol", "category", "", "L4 protocol name as conntrack prints it (tcp, udp, icmp, ...)"),
        _c("protocol_number", "int64", "", "L4 protocol number (6, 17, 1, 132, ...)"),
        _c("timeout_seconds", "Int64", "s", "seconds until the entry expires; NA for offloaded flows"),
        _c("state", "category", "", "protocol state (TCP: ESTABLISHED, TIME_WAIT, ...); NA for UDP"),
        _c("orig_src_ip", "category", "", "original direction source address (the client)"),
        _c("orig_dst_ip", "category", "", "original direction destination address"),
        _c("orig_src_port", "Int32", "", "original source port; NA for port-less protocols"),
        _c("orig_dst_port", "Int32", "", "original destination port"),
        _c("reply_src_ip", "category", "", "reply direction source address (the backend after DNAT)"),
        _c("reply_dst_ip", "category", "", "reply direction destination (the client, or the SNAT address)"),
        _c("reply_src_port", "Int32", "", "reply source port"),
        _c("reply_dst_port", "Int32", "", "reply destination port"),
        _c("icmp_type", "Int32", "", "ICMP type (original direction); NA for other protocols"),
        _c("icmp_code", "Int32", "", "ICMP code (original direction)"),
        _c("icmp_id", "Int32", "", "ICMP id (original direction)"),
        _c("orig_packets", "Int64", "packets", "packets in the original direction; NA without accounting"),
        _c("orig_bytes", "Int64", "bytes", "bytes in the original direction; NA without accounting"),
        _c("reply_packets", "Int64", "packets", "packets in the reply direction; NA without accounting"),
        _c("reply_bytes", "Int64", "bytes", "bytes in the reply direction; NA without accounting"),
        _c("unreplied", "bool", "", "[UNREPLIED]: no reply seen yet"),
        _c("assured", "bool", "", "[ASSURED]"),
        _c("offload", "bool", "", "[OFFLOAD] (software flowtable)"),
        _c("hw_offload", "bool", "", "[HW_OFFLOAD]"),
        _c("mark", "Int64", "", "connection mark (decimal); NA when not printed"),
        _c("secmark", "Int64", "", "security mark; NA when not printed"),
        _c("secctx", "category", "", "security context; NA when not printed"),
        _c("zone", "Int32", "", "conntrack zone; NA when not printed (zone 0 is often omitted)"),
        _c("zone_orig", "Int32", "", "directional zone of the original tuple; NA when not printed"),
        _c("zone_reply", "Int32", "", "directional zone of the reply tuple; NA when not printed"),
        _c("use", "Int64", "", "reference count; NA when not printed"),
        _c("conntrack_id", "Int64", "", "entry id (-o id); NA when not printed"),
        _c("helper", "category", "", "conntrack helper name; NA when none"),
        _c("labels", "category", "", "connlabels, comma separated; NA when not printed"),
        _c("delta_time_seconds", "Int64", "s", "seconds since the entry was created (timestamping on)"),
        _c("service_ip", "category", "", "derived: original destination address (ClusterIP, node IP, ...)"),
        _c("service_port", "Int32", "", "derived: original destination port (service port or node port)"),
        _c("backend_ip", "category", "", "derived: reply source address (the chosen endpoint)"),
        _c("backend_port", "Int32", "", "derived: reply source port (the endpoint's target port)"),
        _c("dnat", "bool", "", "derived: reply source differs from original destination"),
        _c("snat", "bool", "", "derived: reply destination differs from original source"),
        _c("is_node_port", "bool", "", "derived: original destination port lies in the node-port range"),
        _NODE,
    ),
)

_STAT_COUNTERS = (
    ("entries", "entries in the table (only in /proc/net/stat/nf_conntrack; the same on every CPU)"),
    ("searched", "lookups (older kernels)"),
    ("found", "successful lookups"),
    ("new", "new entries (always 0 on recent kernels)"),
    ("invalid", "packets that could not be tracked"),
    ("ignore", "packets already tracked (always 0 on recent kernels)"),
    ("delete", "deletions (always 0 on recent kernels)"),
    ("delete_list", "deletions from the list (older kernels)"),
    ("insert", "entries inserted"),
    ("insert_failed", "inserts that failed (for example NAT races)"),
    ("drop", "packets dropped because an insert failed or the table was full"),
    ("early_drop", "entries dropped early to make room in a full table"),
    ("error", "ICMP errors (icmp_error in /proc)"),
    ("expect_new", "expectations created"),
    ("expect_create", "expectations created by helpers"),
    ("expect_delete", "expectations deleted"),
    ("search_restart", "lookups restarted after a hash resize"),
    ("clash_resolve", "insert clashes resolved (kernel 5.7+)"),
    ("chaintoolong", "inserts refused because a hash chain was too long (kernel 5.15+)"),
)

_CONNTRACK_STATS = FrameSpec(
    "conntrack_stats",
    "CPU (its conntrack counters)",
    (
        _c("cpu", "int64", "", "CPU number"),
        *(_c(n, "Int64", "events", d) for n, d in _STAT_COUNTERS),
        _NODE,
    ),
)


# The columns that name a Service port in every proxy frame, whatever the mode.
_SERVICE_PORT_KEY = (
    _c("proxy_mode", "category", "", "iptables, nftables or ipvs"),
    _c("namespace", "category", "", "Service namespace; NA when it cannot be recovered"),
    _c("service", "category", "", "Service name; NA when it cannot be recovered"),
    _c("port_name", "category", "", "Service port name ('' for an unnamed port)"),
    _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
    _c("protocol", "category", "", "tcp, udp or sctp"),
)

# IPVS statistics (ipvsadm --stats / --rate), optional columns of the proxy frames.
_IPVS_COUNTERS = (
    ("connections_total", "connections", "connections scheduled (ipvsadm --stats Conns)"),
    ("in_packets_total", "packets", "packets in (InPkts)"),
    ("out_packets_total", "packets", "packets out (OutPkts)"),
    ("in_bytes_total", "bytes", "bytes in (InBytes)"),
    ("out_bytes_total", "bytes", "bytes out (OutBytes)"),
    ("connections_per_second", "connections/s", "connection rate (ipvsadm --rate CPS)"),
    ("in_packets_per_second", "packets/s", "packet rate in (InPPS)"),
    ("out_packets_per_second", "packets/s", "packet rate out (OutPPS)"),
    ("in_bytes_per_second", "bytes/s", "byte rate in (InBPS)"),
    ("out_bytes_per_second", "bytes/s", "byte rate out (OutBPS)"),
)
_IPVS_COLUMNS = tuple(_c(n, "Int64", u, d + "; IPVS only", False) for n, u, d in _IPVS_COUNTERS)

_PROXY_SERVICES = FrameSpec(
    "proxy_services",
    "Service port as programmed in one node's kube-proxy rules",
    (
        *_SERVICE_PORT_KEY,
        _c("cluster_ip", "category", "", "ClusterIP; NA when not programmed"),
        _c("port", "Int32", "", "Service (ClusterIP) port; NA when not programmed"),
        _c("node_port", "Int32", "", "nodePort; NA when the Service port has none"),
        _c("external_ips", "str", "", "ExternalIPs, comma separated ('' when none)"),
        _c("load_balancer_ips", "str", "", "load-balancer IPs, comma separated ('' when none)"),
        _c("external_traffic_policy", "category", "", "Cluster or Local; NA when it cannot be told"),
        _c("internal_traffic_policy", "category", "", "Cluster or Local; NA when it cannot be told"),
        _c("session_affinity", "category", "", "None or ClientIP"),
        _c("session_affinity_timeout_seconds", "Int64", "s", "ClientIP affinity timeout; NA without affinity"),
        _c("scheduler", "category", "", "IPVS scheduler (rr, wrr, ...); NA in other modes"),
        _c("endpoint_count", "int64", "", "endpoints programmed for cluster traffic"),
        _c("local_endpoint_count", "Int64", "", "endpoints in the Local-policy chain; NA when there is none"),
        _c("has_endpoints", "bool", "", "False when the rules reject the Service for having no endpoints"),
        _c("svc_chain", "category", "", "cluster-policy chain (KUBE-SVC-... / service-...)"),
        _c("svl_chain", "category", "", "local-policy chain (KUBE-SVL-... / local-...)"),
        _c("ext_chain", "category", "", "external-destinations chain (KUBE-EXT-... / external-...)"),
        _c("fw_chain", "category", "", "load-balancer firewall chain (KUBE-FW-... / firewall-...)"),
        _c("virtual_server_ip", "category", "", "IPVS virtual server address (a node IP for node ports)", False),
        *_IPVS_COLUMNS,
        _NODE,
    ),
)

_PROXY_ENDPOINTS = FrameSpec(
    "proxy_endpoints",
    "endpoint in one load-balancing chain of one Service port",
    (
        *_SERVICE_PORT_KEY,
        _c("endpoint_ip", "category", "", "endpoint (pod) address"),
        _c("endpoint_port", "Int32", "", "endpoint (target) port"),
        _c("chain", "category", "", "the load-balancing chain (KUBE-SVC/SVL-..., service-/local-..., or the IPVS virtual server)"),
        _c("local", "bool", "", "the chain is the Local-policy chain (only this node's endpoints)"),
        _c("position", "int64", "", "0-based position of the endpoint's rule in the chain"),
        _c("rule_probability", "float64", "ratio", "the rule's conditional probability (1.0 for the last rule)"),
        _c("probability", "float64", "ratio", "resulting probability that a new connection picks this endpoint"),
        _c("endpoint_chain", "category", "", "per-endpoint chain (KUBE-SEP-... / endpoint-...)"),
        _c("weight", "Int64", "", "IPVS weight; NA in other modes"),
        _c("active_connections", "Int64", "connections", "IPVS ActiveConn; NA in other modes"),
        _c("inactive_connections", "Int64", "connections", "IPVS InActConn; NA in other modes"),
        _c("packets", "Int64", "packets", "counter of the rule that jumps to the endpoint (= new connections); NA without counters"),
        _c("bytes", "Int64", "bytes", "byte counter of that rule; NA without counters"),
        _c("affinity_packets", "Int64", "packets", "counter of the affinity check that sends returning clients to this endpoint (recent --rcheck in iptables; new connections = packets + affinity_packets); NA without affinity or counters, and in nftables (its packets counter sits on the endpoint chain's dnat, behind the affinity check, so it counts returning clients already) and IPVS", False),
        _c("affinity_bytes", "Int64", "bytes", "byte counter of that affinity check; NA without affinity or counters", False),
        *_IPVS_COLUMNS,
        _NODE,
    ),
)

_ENDPOINT_FLOWS = FrameSpec(
    "endpoint_flows",
    "endpoint of a Service port: what the rules say it should get, and the flows it got",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("endpoint_ip", "category", "", "endpoint address"),
        _c("endpoint_port", "Int32", "", "endpoint port"),
        _c("in_rules", "bool", "", "the endpoint is programmed in the rules (False: flows to an unknown backend)"),
        _c("probability", "float64", "ratio", "selection probability in the cluster-policy chain; NA when not in it"),
        _c("local_probability", "float64", "ratio", "selection probability in the Local-policy chain; NA when not in it"),
        _c("rule_connections", "Int64", "connections", "new connections the rules sent here (packet counters of the jumps to the endpoint); NA without counters"),
        _c("flows", "int64", "flows", "conntrack flows whose reply source is this endpoint"),
        _c("flow_share", "float64", "ratio", "flows / all flows of the Service port (0 when it has none)"),
        _NODE,
    ),
)

_RULE_LOADS = FrameSpec(
    "rule_loads",
    "load of a node's kube-proxy rules (the lab's 'sync proxy rules')",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "when the load started"),
        _c("node", "category", "", "node the rules were loaded on"),
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft or nftables"),
        _c("services", "int64", "services", "Service ports in the rule set"),
        _c("rules", "int64", "rules", "rules loaded (all tables)"),
        _c("load_seconds", "float64", "s", "wall-clock time of iptables-restore / nft -f"),
    ),
)

_CONNECT_LATENCY = FrameSpec(
    "connect_latency",
    "TCP connection attempt through a NodePort",
    (
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft or nftables"),
        _c("services", "int64", "services", "Service ports programmed on the node at the time"),
        _c("attempt", "int64", "", "0-based attempt number within its (mode, services) step"),
        _c("connect_seconds", "float64", "s", "time from connect() to the established socket; NaN when it failed"),
        _c("ok", "bool", "", "the connection was established"),
    ),
)

_GROUND_TRUTH = FrameSpec(
    "ground_truth",
    "(pod, client address) pair: what the pod itself counted (the lab's ground truth)",
    (
        _c("pod", "category", "", "pod that served the requests"),
        _c("node", "category", "", "node the pod runs on"),
        _c("client", "category", "", "client address as the pod saw it (an SNAT address under Cluster policy)"),
        _c("requests", "int64", "requests", "HTTP requests served"),
        _c("connections", "int64", "connections", "TCP connections accepted"),
    ),
)

# --- Cluster state (Kubernetes API objects or kube-state-metrics) -------------------------
# The API collector and the kube-state-metrics collector return these same kinds, so that
# analysis does not care where a frame came from. A column a source cannot know is NA
# (kube-state-metrics exposes no Service ports, for example), never guessed.

_K8S_SERVICES = FrameSpec(
    "k8s_services",
    "Service port (a Service without ports, or from a source without ports, has one row with port NA)",
    (
        _c("namespace", "category", "", "Service namespace"),
        _c("service", "category", "", "Service name"),
        _c("type", "category", "", "ClusterIP, NodePort, LoadBalancer or ExternalName"),
        _c("cluster_ip", "category", "", "spec.clusterIP ('None' for headless); NA when unknown"),
        _c("cluster_ips", "str", "", "spec.clusterIPs, comma separated ('' when unknown)"),
        _c("port_name", "category", "", "Service port name ('' for an unnamed port); NA when ports are unknown"),
        _c("protocol", "category", "", "tcp, udp or sctp (lower case, as in the proxy frames); NA when unknown"),
        _c("port", "Int32", "", "Service port; NA when unknown"),
        _c("target_port", "str", "", "targetPort as written (a number or a container port name); '' when unknown"),
        _c("node_port", "Int32", "", "nodePort; NA when the port has none or it is unknown"),
        _c("external_traffic_policy", "category", "", "Cluster or Local; NA when not set or unknown"),
        _c("internal_traffic_policy", "category", "", "Cluster or Local; NA when not set or unknown"),
        _c("session_affinity", "category", "", "None or ClientIP; NA when unknown"),
        _c("session_affinity_timeout_seconds", "Int64", "s", "ClientIP timeout; NA without ClientIP affinity"),
        _c("traffic_distribution", "category", "", "spec.trafficDistribution (PreferClose, ...); NA when not set"),
        _c("health_check_node_port", "Int32", "", "spec.healthCheckNodePort; NA when none"),
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key (joins the proxy frames); NA when ports are unknown"),
        _c("labels", "str", "", "Service labels as a JSON object ('{}' when none or unknown)", False),
        _c("source", "category", "", "where the row came from: 'api', 'file' or 'kube-state-metrics'", False),
    ),
)

_K8S_ENDPOINTS = FrameSpec(
    "k8s_endpoints",
    "address of an endpoint, per EndpointSlice (or Endpoints object) and port",
    (
        _c("namespace", "category", "", "namespace of the Service"),
        _c("service", "category", "", "Service the slice belongs to (kubernetes.io/service-name)"),
        _c("slice", "category", "", "EndpointSlice (or Endpoints) object name"),
        _c("port_name", "category", "", "endpoint port name ('' for an unnamed port); NA when ports are unknown"),
        _c("protocol", "category", "", "tcp, udp or sctp; NA when unknown"),
        _c("port", "Int32", "", "endpoint (target) port; NA when unknown"),
        _c("address", "category", "", "endpoint address"),
        _c("ready", "boolean", "", "conditions.ready; NA when unknown"),
        _c("serving", "boolean", "", "conditions.serving; NA when unknown"),
        _c("terminating", "boolean", "", "conditions.terminating; NA when unknown"),
        _c("node", "category", "", "nodeName; NA when not set"),
        _c("zone", "category", "", "zone; NA when not set"),
        _c("hints", "str", "", "topology hints: zones (and nodes) comma separated ('' when none)"),
        _c("target_pod", "category", "", "targetRef name when it is a Pod; NA otherwise"),
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key; NA when ports are unknown"),
        _c("source", "category", "", "'endpointslice', 'endpoints' (legacy object) or 'kube-state-metrics'", False),
    ),
)

_K8S_PODS = FrameSpec(
    "k8s_pods",
    "pod",
    (
        _c("namespace", "category", "", "pod namespace"),
        _c("pod", "category", "", "pod name"),
        _c("node", "category", "", "spec.nodeName; NA when not scheduled"),
        _c("host_ip", "category", "", "status.hostIP; NA when unknown"),
        _c("pod_ip", "category", "", "status.podIP; NA when unknown"),
        _c("pod_ips", "str", "", "status.podIPs, comma separated ('' when unknown)"),
        _c("phase", "category", "", "Pending, Running, Succeeded, Failed or Unknown; NA when unknown"),
        _c("ready", "boolean", "", "the Ready condition; NA when unknown"),
        _c("terminating", "boolean", "", "metadata.deletionTimestamp is set; NA when unknown"),
        _c("owner_kind", "category", "", "controller owner kind (ReplicaSet, StatefulSet, ...); NA when none"),
        _c("owner_name", "category", "", "controller owner name; NA when none"),
        _c("labels", "str", "", "pod labels as a JSON object ('{}' when none or unknown)", False),
    ),
)

_K8S_NODES = FrameSpec(
    "k8s_nodes",
    "node",
    (
        _c("node", "category", "", "node name"),
        _c("internal_ip", "category", "", "first InternalIP address; NA when unknown"),
        _c("external_ip", "category", "", "first ExternalIP address; NA when none"),
        _c("zone", "category", "", "topology.kubernetes.io/zone label (or the deprecated failure-domain one); NA when none"),
        _c("region", "category", "", "topology.kubernetes.io/region label; NA when none"),
        _c("ready", "boolean", "", "the Ready condition; NA when unknown"),
        _c("pod_cidr", "str", "", "spec.podCIDRs, comma separated ('' when unknown)", False),
    ),
)

_ENDPOINT_CHURN = FrameSpec(
    "endpoint_churn",
    "change of one endpoint address seen while watching EndpointSlices",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "when the change was observed"),
        _c("namespace", "category", "", "namespace of the Service"),
        _c("service", "category", "", "Service name"),
        _c("slice", "category", "", "EndpointSlice name"),
        _c("address", "category", "", "endpoint address"),
        _c("event", "category", "", "added, removed or changed"),
        _c("ready", "boolean", "", "conditions.ready after the change; NA when removed"),
        _c("serving", "boolean", "", "conditions.serving after the change; NA when removed"),
        _c("terminating", "boolean", "", "conditions.terminating after the change; NA when removed"),
        _c("node", "category", "", "nodeName; NA when not set"),
        _c("resource_version", "str", "", "resourceVersion of the slice that carried the change"),
    ),
)

# --- Prometheus ----------------------------------------------------------------------------

_PROM_SAMPLES = FrameSpec(
    "prom_samples",
    "sample of one series; besides these, one category column per label (NA where a series lacks it)",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "sample time (evaluation time for instant queries, scrape time for text)"),
        _c("value", "float64", "", "sample value (NaN and +-Inf as Prometheus sends them)"),
        _c("__name__", "category", "", "metric name; NA when a query result has none", False),
    ),
)

# kube-proxy's own metrics (collectors.kube_proxy), per node and time.
_PROXY_LATENCY = FrameSpec(
    "proxy_latency",
    "kube-proxy histogram (sync, sync_full, sync_partial or network_programming) of one node (or all) at one time",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "end of the window (sample or evaluation time)"),
        _c("node", "category", "", "node (its kube-proxy's node or instance label); NA for the cluster-wide aggregate"),
        _c("metric", "category", "", "sync, sync_full, sync_partial or network_programming"),
        _c("window_seconds", "float64", "s", "rate window; NaN when cumulative since kube-proxy started"),
        _c("observations", "float64", "events", "observations in the window (or since start)"),
        _c("per_second", "float64", "events/s", "observations per second in the window; NaN when cumulative"),
        _c("mean_seconds", "float64", "s", "mean duration (sum / count)"),
        _c("p50_seconds", "float64", "s", "median, histogram_quantile as Prometheus interpolates it"),
        _c("p90_seconds", "float64", "s", "90th percentile"),
        _c("p99_seconds", "float64", "s", "99th percentile"),
    ),
)

_PROXY_RULE_COUNTS = FrameSpec(
    "proxy_rule_counts",
    "rule table of one node's kube-proxy at one time (kubeproxy_sync_proxy_rules_iptables_total)",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "sample time"),
        _c("node", "category", "", "node; NA when no label names it"),
        _c("table", "category", "", "iptables table (filter, nat)"),
        _c("ip_family", "category", "", "IPv4 or IPv6 (kube-proxy 1.33+); NA before"),
        _c("rules", "int64", "rules", "rules kube-proxy owns in the table"),
        _c("rules_last", "Int64", "rules", "rules written by the last restore; NA when not exported"),
    ),
)

_PROXY_STATUS = FrameSpec(
    "proxy_status",
    "one node's kube-proxy at one time: mode, changes, failures",
    (
        _c("timestamp", "datetime64[ns, UTC]", "", "sample time"),
        _c("node", "category", "", "node; NA when no label names it"),
        _c("proxy_mode", "category", "", "iptables, nftables or ipvs as told by the metric families; NA when it cannot be told"),
        _c("endpoint_changes_total", "Int64", "changes", "endpoint changes seen (counter)"),
        _c("service_changes_total", "Int64", "changes", "Service changes seen (counter)"),
        _c("endpoint_changes_per_second", "float64", "changes/s", "increase of endpoint changes over the window / its span; NaN without a window"),
        _c("service_changes_per_second", "float64", "changes/s", "the same for Service changes"),
        _c("endpoint_changes_pending", "Int64", "changes", "endpoint changes not yet synced"),
        _c("service_changes_pending", "Int64", "changes", "Service changes not yet synced"),
        _c("no_local_endpoints_internal", "Int64", "services", "Services with internalTrafficPolicy Local and no local endpoint"),
        _c("no_local_endpoints_external", "Int64", "services", "Services with externalTrafficPolicy Local and no local endpoint"),
        _c("sync_failures_total", "Int64", "failures", "iptables-restore failures (iptables, ipvs) or nftables sync failures"),
        _c("partial_restore_failures_total", "Int64", "failures", "partial iptables-restore failures; NA outside iptables mode"),
        _c("last_sync_timestamp", "datetime64[ns, UTC]", "", "last successful sync; NaT when not exported"),
    ),
)

# --- Analysis ------------------------------------------------------------------------------

_FINDINGS = FrameSpec(
    "findings",
    "finding of the analysis",
    (
        _c("severity", "category", "", "critical, warning or info"),
        _c("code", "category", "", "stable finding code (etp-local-topology, stale-conntrack, ...)"),
        _c("service", "category", "", "'namespace/service:port_name' it concerns; NA when node- or cluster-wide"),
        _c("node", "category", "", "node it concerns; NA when not node-specific"),
        _c("what", "str", "", "one sentence: what was found"),
        _c("evidence", "str", "", "the numbers behind it (counts, shares, p-values)"),
        _c("advice", "str", "", "what to do about it"),
    ),
)

_SKEW = FrameSpec(
    "skew",
    "backend (pod, node, zone or endpoint) of one Service port in one window, from one source: observed vs expected share",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("window_start", "datetime64[ns, UTC]", "", "start of the time window; NaT for a whole-recording snapshot"),
        _c("source", "category", "", "conntrack, rules, metrics or ground_truth"),
        _c("group", "category", "", "what a backend is: pod, node, zone or endpoint"),
        _c("backend", "category", "", "the pod, node, zone or endpoint address"),
        _c("observed", "float64", "connections", "load the source attributes to the backend (connections; requests for ground truth)"),
        _c("share", "float64", "ratio", "observed / all observed of the Service port in the window (0 when it has none)"),
        _c("share_ci_low", "float64", "ratio", "lower end of the share's 95 % bootstrap interval"),
        _c("share_ci_high", "float64", "ratio", "upper end of the share's 95 % bootstrap interval"),
        _c("expected_share", "float64", "ratio", "share the configuration predicts; NaN when no model applies"),
        _c("expected_low", "float64", "ratio", "lower end of the 95 % range of the share under the model for this many connections"),
        _c("expected_high", "float64", "ratio", "upper end of that range"),
    ),
)

_SKEW_SUMMARY = FrameSpec(
    "skew_summary",
    "Service port, window, source and grouping: how uneven the load is, and whether the model explains it",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("window_start", "datetime64[ns, UTC]", "", "start of the time window; NaT for a whole-recording snapshot"),
        _c("source", "category", "", "conntrack, rules, metrics or ground_truth"),
        _c("group", "category", "", "pod, node, zone or endpoint"),
        _c("backends", "int64", "", "backends that could receive load (observed or expected)"),
        _c("total", "float64", "connections", "all observed load of the Service port in the window"),
        _c("max_mean", "float64", "ratio", "largest load / mean load (1 = even; NaN without load)"),
        _c("cv", "float64", "ratio", "coefficient of variation of the loads (population standard deviation / mean)"),
        _c("gini", "float64", "ratio", "Gini coefficient of the loads (0 = even)"),
        _c("jain", "float64", "ratio", "Jain's fairness index (1 = even, 1/n = one backend takes all)"),
        _c("entropy_norm", "float64", "ratio", "Shannon entropy of the shares / log(backends) (1 = even)"),
        _c("g_statistic", "float64", "", "G-test statistic against the expected shares; NaN when no model applies"),
        _c("p_value", "float64", "", "G-test p-value; NaN when no model applies"),
        _c("model", "str", "", "the expected-distribution model used (e.g. 'uniform over 3 ready endpoints', 'Local: per-node split')"),
    ),
)

_BACKEND_LOAD = FrameSpec(
    "backend_load",
    "load one source attributes to one backend of a Service port in one window, per entry node where the source knows it",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("window_start", "datetime64[ns, UTC]", "", "start of the time window; NaT for a whole-recording snapshot"),
        _c("window_end", "datetime64[ns, UTC]", "", "end of the time window; NaT when unknown or for a snapshot"),
        _c("source", "category", "", "conntrack, rules, metrics or ground_truth"),
        _c("measure", "category", "", "connections, requests, bytes or packets"),
        _c("entry_node", "category", "", "node the load entered through (conntrack, rule counters); NA when the source cannot tell"),
        _c("endpoint_ip", "category", "", "backend (endpoint) address; NA when unknown"),
        _c("pod", "category", "", "pod behind the endpoint; NA when unknown"),
        _c("node", "category", "", "node the pod runs on; NA when unknown"),
        _c("zone", "category", "", "zone of that node; NA when unknown"),
        _c("programmed", "boolean", "", "the endpoint is in the rules in force at the end of the window; NA when unknown"),
        _c("value", "float64", "", "the load, in the unit the measure names"),
    ),
)

_ENDPOINT_SELECTION = FrameSpec(
    "endpoint_selection",
    "(Service port, window, entry node, endpoint): the probability that a new connection entering the node picks the endpoint",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("window_start", "datetime64[ns, UTC]", "", "start of the window the configuration held in; NaT for the final one"),
        _c("entry_node", "category", "", "node the connection enters; NA when the choice is the same on every node"),
        _c("endpoint_ip", "category", "", "endpoint address"),
        _c("probability", "float64", "ratio", "selection probability (a node's probabilities sum to 1, or to 0 when it drops the traffic)"),
        _c("model", "str", "", "how the probability was obtained (rules' probabilities, uniform over ready endpoints, IPVS wrr, ...)"),
    ),
)

_EXPECTED_SHARES = FrameSpec(
    "expected_shares",
    "(Service port, window, source, endpoint): the share of the load the configuration predicts",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("window_start", "datetime64[ns, UTC]", "", "start of the time window; NaT for a whole-recording snapshot"),
        _c("source", "category", "", "the source whose client-to-node mix weighs the nodes' choices"),
        _c("endpoint_ip", "category", "", "endpoint address"),
        _c("pod", "category", "", "pod behind the endpoint; NA when unknown"),
        _c("node", "category", "", "node the pod runs on; NA when unknown"),
        _c("zone", "category", "", "zone of that node; NA when unknown"),
        _c("expected_share", "float64", "ratio", "predicted share of the served load"),
        _c("model", "str", "", "the model, in words (the skew_summary's model column)"),
    ),
)

_NODE_PATH = FrameSpec(
    "node_path",
    "(Service port, entry node, backend node): where the connections entering a node were served",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("entry_node", "category", "", "node whose address (node port) the client connected to"),
        _c("entry_zone", "category", "", "zone of the entry node; NA when unknown"),
        _c("backend_node", "category", "", "node of the chosen endpoint; NA when unknown"),
        _c("backend_zone", "category", "", "zone of that node; NA when unknown"),
        _c("path", "category", "", "local (served on the entry node), forwarded (to another node) or unknown"),
        _c("cross_zone", "boolean", "", "entry and backend nodes are in different zones; NA when a zone is unknown"),
        _c("connections", "int64", "connections", "conntrack flows of the entry node on this path"),
        _c("share", "float64", "ratio", "connections / all connections entering the node for the Service port"),
        _c("snat_connections", "int64", "connections", "of those, flows whose source was rewritten (SNAT: the pod never sees the client)"),
    ),
)

_PUBLISHED_LATENCY = FrameSpec(
    "published_latency",
    "published latency figure (proxy mode, Service count, quantile), to set beside the lab's (npanalytics.analysis.published)",
    (
        _c("source", "str", "", "where the number was published"),
        _c("proxy_mode", "category", "", "iptables, nftables, ipvs ... as the source names it"),
        _c("services", "int64", "services", "Services in the measured cluster"),
        _c("quantile", "float64", "ratio", "quantile of the latency distribution (0.5 = median)"),
        _c("rtt_seconds", "float64", "s", "first-packet round-trip time"),
        _c("upper_bound", "bool", "", "the source only says 'at most' this value"),
    ),
)

# --- Topic sections of the analysis (npanalytics.analysis.affinity, longlived, overhead, pressure) ---

_AFFINITY = FrameSpec(
    "affinity",
    "(Service port, client address) as conntrack saw it; the Service port's statistics repeated on each of its rows",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key"),
        _c("client", "category", "", "original source address (before any SNAT on the node; a NAT's address for hosts behind it)"),
        _c("session_affinity", "category", "", "None or ClientIP, from the rules; NA when unknown"),
        _c("flows", "int64", "flows", "conntrack flows of the client to the Service port"),
        _c("client_share", "float64", "ratio", "flows / all flows of the Service port"),
        _c("top_backend", "category", "", "backend (endpoint address) that got most of the client's flows"),
        _c("pinned_share", "float64", "ratio", "share of the client's flows that went to the busiest backend of the node they entered (affinity state is per node, so a client can be pinned to a different pod on each node; 1 = fully pinned)"),
        _c("backends", "int64", "", "distinct backends the client reached"),
        _c("nodes", "int64", "", "distinct entry nodes the client came through"),
        _c("max_backends_per_node", "int64", "", "most distinct backends the client reached through one node"),
        _c("node_local_affinity", "bool", "", "one backend per node but different backends on different nodes (affinity state is per node)"),
        _c("snat_ratio", "float64", "ratio", "share of the client's flows whose source was rewritten (the pod sees a node address)"),
        _c("service_clients", "int64", "", "client addresses of the Service port"),
        _c("effective_clients", "float64", "", "exp(entropy of the client shares): equally busy clients giving the same entropy"),
        _c("service_backends", "int64", "", "backends the Service port could use (in the rules, else observed)"),
        _c("backend_cv", "float64", "ratio", "observed coefficient of variation of the backend loads (NaN without flows)"),
        _c("no_affinity_cv", "float64", "ratio", "CV expected when every flow picks a backend uniformly: sqrt((k-1)/N)"),
        _c("affinity_cv", "float64", "ratio", "CV expected when every client picks a backend uniformly: sqrt((k-1) sum x_c^2)/N"),
        _c("p_value", "float64", "", "G-test of the backend counts against the rules' probabilities; NaN when an expected count < 5 or no model"),
    ),
)

_LONG_LIVED = FrameSpec(
    "long_lived",
    "(Service port, source, window, backend): connections against the load they carried",
    (
        _c("service_port_name", "category", "", "kube-proxy's 'namespace/service:port_name' key; NA when the source cannot tell"),
        _c("source", "category", "", "conntrack (bytes of accounted entries) or ground_truth (requests the pods counted)"),
        _c("window", "category", "", "'snapshot' (the conntrack table), 'whole recording', or 'since event k' (ground truth after the k-th change)"),
        _c("group", "category", "", "what a backend is: endpoint (address) or pod"),
        _c("backend", "category", "", "endpoint address or pod name"),
        _c("connections", "int64", "connections", "connections (conntrack entries, or TCP connections the pod accepted)"),
        _c("connection_share", "float64", "ratio", "connections / all connections of the group (0 when none)"),
        _c("load", "float64", "", "bytes (both directions) for conntrack, requests for ground truth; NaN without accounting"),
        _c("load_unit", "category", "", "bytes or requests"),
        _c("load_share", "float64", "ratio", "load / all load of the group (NaN without accounting)"),
        _c("packets", "Int64", "packets", "packets (both directions) of the conntrack entries; NA for ground truth or without accounting"),
        _c("load_per_connection", "float64", "", "load / connections (NaN without connections)"),
        _c("age_seconds_mean", "float64", "s", "mean age of the entries (conntrack delta-time); NaN when not recorded"),
        _c("expected_share", "float64", "ratio", "share the rules give a new connection (1/backends when unknown)"),
        _c("starved", "bool", "", "load_share < STARVED_FRACTION x expected_share although the backend is usable"),
    ),
)

_OVERHEAD_COLUMNS = tuple(
    _c(f"{s}_{name}", "float64", unit, f"{s} fit of the mode, repeated on its rows: {meaning}")
    for s in ("p50", "p99")
    for name, unit, meaning in (
        ("slope_ns_per_service", "ns/service", "slope"),
        ("slope_ci_low", "ns/service", "lower end of the slope's 95 % interval"),
        ("slope_ci_high", "ns/service", "upper end of the slope's 95 % interval"),
        ("intercept_us", "µs", "intercept"),
        ("r_squared", "ratio", "R²"),
    )
)

_OVERHEAD = FrameSpec(
    "overhead",
    "(proxy mode, Service count) step of a sweep: connect-time percentiles and rule load, with the mode's fits",
    (
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft or nftables"),
        _c("services", "int64", "services", "Service ports programmed"),
        _c("attempts", "int64", "connections", "connection attempts"),
        _c("failures", "int64", "connections", "attempts that failed"),
        _c("p50_us", "float64", "µs", "median connect time of the successful attempts"),
        _c("p90_us", "float64", "µs", "90th percentile connect time"),
        _c("p99_us", "float64", "µs", "99th percentile connect time"),
        _c("load_seconds", "float64", "s", "rule-load time of the step (mean of its loads; NaN without one)"),
        _c("rules", "Int64", "rules", "rules loaded; NA without a load"),
        *_OVERHEAD_COLUMNS,
    ),
)

_OVERHEAD_FIT = FrameSpec(
    "overhead_fit",
    "(proxy mode, statistic): least-squares line of a connect-time percentile against the Service count",
    (
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft or nftables"),
        _c("statistic", "category", "", "the fitted column of the overhead frame (p50_us, p99_us, ...)"),
        _c("points", "int64", "", "steps fitted"),
        _c("slope_ns_per_service", "float64", "ns/service", "added connect time per Service port; NaN with < 2 points"),
        _c("slope_ci_low", "float64", "ns/service", "lower end of the slope's interval (t, points-2 dof); NaN with < 3 points"),
        _c("slope_ci_high", "float64", "ns/service", "upper end of that interval"),
        _c("intercept_us", "float64", "µs", "connect time at 0 Service ports"),
        _c("r_squared", "float64", "ratio", "R²; NaN when the statistic is constant or with < 2 points"),
    ),
)

_OVERHEAD_EXTRAPOLATION = FrameSpec(
    "overhead_extrapolation",
    "proxy mode: the connect time a sweep's fit predicts it adds at a cluster's Service count",
    (
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft or nftables"),
        _c("statistic", "category", "", "the fitted percentile (p50_us, ...)"),
        _c("services", "int64", "services", "Service ports extrapolated to"),
        _c("added_us", "float64", "µs", "slope x services: the time added to a new connection's first packet"),
        _c("added_ci_low_us", "float64", "µs", "lower end, from the slope's interval (NaN without one)"),
        _c("added_ci_high_us", "float64", "µs", "upper end"),
        _c("negligible", "bool", "", "below NEGLIGIBLE_ADDED_SECONDS or the interval covers 0"),
    ),
)

_CONTROL_PLANE = FrameSpec(
    "control_plane",
    "(node, proxy mode): rule loads (syncs) against rule count, rule growth, network programming latency",
    (
        _c("node", "category", "", "node the rules were loaded on"),
        _c("proxy_mode", "category", "", "iptables-legacy, iptables-nft, nftables, ..."),
        _c("loads", "int64", "", "rule loads (syncs) recorded"),
        _c("services", "int64", "services", "Service ports in the largest load"),
        _c("rules", "int64", "rules", "rules in the largest load"),
        _c("endpoints", "Int64", "endpoints", "endpoints in the node's rules (proxy_endpoints); NA when not dumped"),
        _c("load_seconds_median", "float64", "s", "median load (sync) time"),
        _c("load_seconds_max", "float64", "s", "longest load (sync) time"),
        _c("seconds_per_1000_rules", "float64", "s", "slope of load time against rules x 1000 (when the rule counts span a factor >= 2), else load time / rules x 1000 of the largest load"),
        _c("rules_per_service", "float64", "rules/service", "slope of rules against Service ports (when the counts span a factor >= 2), else rules / Service ports; NaN without Services"),
        _c("rules_per_endpoint", "float64", "rules/endpoint", "rules / endpoints of the largest load; NaN without endpoints"),
        _c("programming_p50_seconds", "float64", "s", "median kubeproxy_network_programming_duration_seconds; NaN without metrics"),
        _c("programming_p90_seconds", "float64", "s", "90th percentile of it"),
        _c("programming_p99_seconds", "float64", "s", "99th percentile of it (perf-tests' SLO: <= 30 s)"),
    ),
)

_PROXY_SYNC = FrameSpec(
    "proxy_sync",
    "(node, proxy mode) from kube-proxy's metrics: sync time (full/partial) against rule count, network programming latency against perf-tests' 30 s",
    (
        _c("node", "category", "", "node; NA for the cluster-wide row (network programming pooled over the nodes, as perf-tests does)"),
        _c("proxy_mode", "category", "", "iptables, nftables or ipvs (proxy_status); NA when it cannot be told"),
        _c("timestamp", "datetime64[ns, UTC]", "", "end of the node's latest window (or the scrape time when cumulative)"),
        _c("window_seconds", "float64", "s", "rate window of the quantiles; NaN when cumulative since kube-proxy started"),
        _c("rules", "Int64", "rules", "rules kube-proxy owns, all tables, at the latest sample (proxy_rule_counts); NA outside iptables mode"),
        _c("syncs", "float64", "events", "syncs (full and partial) in the latest window with any (the quantiles below are of that window)"),
        _c("sync_p50_seconds", "float64", "s", "median sync time"),
        _c("sync_p99_seconds", "float64", "s", "99th percentile of sync time"),
        _c("full_syncs", "float64", "events", "full syncs in the latest window with any; NaN when not exported (iptables mode only)"),
        _c("full_p50_seconds", "float64", "s", "median full-sync time"),
        _c("full_p90_seconds", "float64", "s", "90th percentile of full-sync time"),
        _c("full_p99_seconds", "float64", "s", "99th percentile of full-sync time"),
        _c("partial_syncs", "float64", "events", "partial syncs in the latest window with any; NaN when not exported"),
        _c("partial_p50_seconds", "float64", "s", "median partial-sync time"),
        _c("partial_p90_seconds", "float64", "s", "90th percentile of partial-sync time"),
        _c("partial_p99_seconds", "float64", "s", "99th percentile of partial-sync time"),
        _c("full_seconds_per_1000_rules", "float64", "s", "full_p50_seconds (else sync_p50_seconds) / rules x 1000; NaN without rules"),
        _c("programming_observations", "float64", "events", "network programming observations in the latest window with any (the p50/p90/p99 below are of that window)"),
        _c("programming_p50_seconds", "float64", "s", "median network programming latency"),
        _c("programming_p90_seconds", "float64", "s", "90th percentile of it"),
        _c("programming_p99_seconds", "float64", "s", "99th percentile of it"),
        _c("programming_p99_over_time_seconds", "float64", "s", "quantile_over_time(0.99) of the windows' p99 (perf-tests' NetworkProgrammingLatency; the single value when cumulative)"),
        _c("programming_slo_ratio", "float64", "ratio", "programming_p99_over_time_seconds / 30 s (perf-tests' threshold); above 1 breaks it"),
    ),
)

_CONNTRACK_PRESSURE = FrameSpec(
    "conntrack_pressure",
    "node: conntrack entries against the table's maximum, drops, state mix and a steady-state forecast",
    (
        _c("node", "category", "", "node; NA for a single unnamed node"),
        _c("cpus", "Int64", "", "CPUs (rows of conntrack -S); NA without stats"),
        _c("entries", "int64", "entries", "entries in the table (stats 'entries' when present, else the flows dumped)"),
        _c("max_entries", "int64", "entries", "nf_conntrack_max (given, else kube-proxy's default max(32768 x CPUs, 131072))"),
        _c("max_entries_source", "str", "", "where max_entries comes from"),
        _c("fill_ratio", "float64", "ratio", "entries / max_entries"),
        _c("insert_failed", "Int64", "events", "inserts that failed, summed over CPUs; NA without stats"),
        _c("drop", "Int64", "events", "packets dropped for want of an entry, summed over CPUs; NA without stats"),
        _c("early_drop", "Int64", "events", "entries evicted from a full table, summed over CPUs; NA without stats"),
        _c("established", "int64", "entries", "TCP entries in ESTABLISHED"),
        _c("time_wait", "int64", "entries", "TCP entries in TIME_WAIT"),
        _c("close_wait", "int64", "entries", "TCP entries in CLOSE_WAIT"),
        _c("other_tcp", "int64", "entries", "TCP entries in other states"),
        _c("udp", "int64", "entries", "UDP entries"),
        _c("other", "int64", "entries", "entries of other protocols"),
        _c("new_connections_per_second", "float64", "connections/s", "connection rate (given, else TIME_WAIT entries / their observed age span)"),
        _c("forecast_entries", "float64", "entries", "steady state by Little's law per state (rate x state timeout) at that rate"),
        _c("forecast_ratio", "float64", "ratio", "forecast_entries / max_entries"),
    ),
)

SCHEMAS: dict[str, FrameSpec] = {
    spec.kind: spec
    for spec in (
        _CONNTRACK_FLOWS,
        _CONNTRACK_STATS,
        _PROXY_SERVICES,
        _PROXY_ENDPOINTS,
        _ENDPOINT_FLOWS,
        _RULE_LOADS,
        _CONNECT_LATENCY,
        _GROUND_TRUTH,
        _K8S_SERVICES,
        _K8S_ENDPOINTS,
        _K8S_PODS,
        _K8S_NODES,
        _ENDPOINT_CHURN,
        _PROM_SAMPLES,
        _PROXY_LATENCY,
        _PROXY_RULE_COUNTS,
        _PROXY_STATUS,
        _FINDINGS,
        _SKEW,
        _SKEW_SUMMARY,
        _PUBLISHED_LATENCY,
        _BACKEND_LOAD,
        _NODE_PATH,
        _ENDPOINT_SELECTION,
        _EXPECTED_SHARES,
        _AFFINITY,
        _LONG_LIVED,
        _OVERHEAD,
        _OVERHEAD_FIT,
        _OVERHEAD_EXTRAPOLATION,
        _CONTROL_PLANE,
        _PROXY_SYNC,
        _CONNTRACK_PRESSURE,
    )
}
"""Every frame kind npanalytics knows, by kind name."""


def _spec(kind: str) -> FrameSpec:
    try:
        return SCHEMAS[kind]
    except KeyError:
        known = ", ".join(sorted(SCHEMAS))
        raise ValueError(f"unknown frame kind {kind!r}; known kinds: {known}") from None


def _dtype_ok(series: pd.Series, dtype: str) -> bool:
    actual = series.dtype
    if dtype == "category":
        return isinstance(actual, pd.CategoricalDtype)
    if dtype == "str":
        return pd.api.types.is_string_dtype(actual) and not isinstance(actual, pd.CategoricalDtype)
    if dtype.startswith("datetime64"):
        return isinstance(actual, pd.DatetimeTZDtype) and str(actual.tz) == "UTC"
    return str(actual) == dtype


def validate_frame(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Check that ``df`` follows the spec of ``kind``; return it unchanged.

    Parameters
    ----------
    df : pandas.DataFrame
        The frame to check.
    kind : str
        A key of :data:`SCHEMAS`.

    Returns
    -------
    pandas.DataFrame
        ``df`` itself, so that calls can be chained.

    Raises
    ------
    SchemaError
        Listing every problem: missing required columns and wrong dtypes.
        Extra columns are allowed.
    """
    spec = _spec(kind)
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(kind, [f"expected a pandas DataFrame, got {type(df).__name__}"])
    problems = []
    for col in spec.columns:
        if col.name not in df.columns:
            if col.required:
                problems.append(f"missing column {col.name!r} ({col.dtype})")
            continue
        if not _dtype_ok(df[col.name], col.dtype):
            problems.append(
                f"column {col.name!r} has dtype {df[col.name].dtype}, expected {col.dtype}"
            )
    if problems:
        raise SchemaError(kind, problems)
    return df


def empty_frame(kind: str, *, optional: bool = False) -> pd.DataFrame:
    """An empty frame of ``kind`` with every required column (and optional ones if asked)."""
    spec = _spec(kind)
    data = {}
    for col in spec.columns:
        if not col.required and not optional:
            continue
        if col.dtype == "category":
            data[col.name] = _as_dtype([], "category")
        elif col.dtype == "str":
            data[col.name] = pd.Series([], dtype="str")
        else:
            data[col.name] = pd.Series([], dtype=col.dtype)
    return pd.DataFrame(data)


def schema_table(kind: str) -> str:
    """The spec of ``kind`` as a reStructuredText table, for docstrings."""
    spec = _spec(kind)
    rows = [(c.name + ("" if c.required else " (optional)"), c.dtype, c.unit or "-", c.description) for c in spec.columns]
    widths = [max(len(r[i]) for r in rows + [("column", "dtype", "unit", "meaning")]) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    head = "  ".join(h.ljust(w) for h, w in zip(("column", "dtype", "unit", "meaning"), widths))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([f"One row per {spec.row}.", "", rule, head.rstrip(), rule, *body, rule])


def _as_dtype(values, dtype: str) -> pd.Series:
    if dtype == "category":
        # str categories even when every value is missing, so that dtypes survive Parquet
        return pd.Series(values, dtype="str").astype("category")
    if dtype == "str":
        return pd.Series(values, dtype="str")
    return pd.Series(values, dtype=dtype)


def frame_from_records(records: list[dict], kind: str, *, optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Build a frame of ``kind`` from a list of dicts, casting each column to its spec dtype.

    Missing keys become NA (``False`` for ``bool`` columns would hide a bug, so a
    missing flag raises ``KeyError``). Optional columns are included when named in
    ``optional``. Meant for the readers of small inputs (rule dumps); the conntrack
    reader builds its columns vectorised.
    """
    spec = _spec(kind)
    data = {}
    for col in spec.columns:
        if not col.required and col.name not in optional:
            continue
        if col.dtype == "bool":
            values = [r[col.name] for r in records]
        else:
            values = [r.get(col.name) for r in records]
        data[col.name] = _as_dtype(values, col.dtype)
    return pd.DataFrame(data)


def conform_frame(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Restore label dtypes that storage formats lose, then validate.

    Parquet gives back a zero-row (or all-missing) ``category`` column as
    ``object``/``float64``; such a column is converted back when every value is a
    string or missing. Any other mismatch is left for :func:`validate_frame` to
    report.
    """
    spec = _spec(kind)
    out = df.copy()
    for col in spec.columns:
        if col.name not in out.columns or _dtype_ok(out[col.name], col.dtype):
            continue
        values = out[col.name]
        only_text = values.map(lambda v: v is None or isinstance(v, str) or v != v).all()
        if col.dtype in ("category", "str") and only_text:
            out[col.name] = _as_dtype(values.astype("str").where(values.notna(), None).tolist(), col.dtype)
    return validate_frame(out, kind)
