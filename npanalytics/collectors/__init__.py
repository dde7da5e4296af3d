"""Collectors: I/O only. Each reads one source into frames that follow ``npanalytics.schemas``.

``read_<format>(source)`` parses a dump (a path, ``.gz``, a file object, ``str`` or
``bytes``); ``get_<source>(...)`` collects live.
"""

from ._proxy import ProxyRules
from ._source import ParseReport
from .conntrack import get_conntrack, get_conntrack_stats, read_conntrack, read_conntrack_stats
from .iptables import read_iptables_save
from .k8s import EndpointSnapshot, get_endpoint_snapshot, read_k8s_objects, watch_endpoints
from .ipvs import read_ipvsadm
from .kube_proxy import KubeProxy, get_kube_proxy, histogram_quantile, kube_proxy_frames
from .kube_state import KubeState, get_kube_state, kube_state_frames
from .metrics_text import concat_samples, read_metrics_text
from .nftables import read_nft_ruleset
from .prometheus import connect_prometheus, get_prometheus_instant, get_prometheus_range, read_prometheus_response
from .rules import read_proxy_rules

__all__ = [
    "ParseReport",
    "ProxyRules",
    "get_conntrack",
    "get_conntrack_stats",
    "read_conntrack",
    "read_conntrack_stats",
    "read_iptables_save",
    "EndpointSnapshot",
    "get_endpoint_snapshot",
    "read_k8s_objects",
    "watch_endpoints",
    "read_ipvsadm",
    "read_nft_ruleset",
    "read_proxy_rules",
    "KubeProxy",
    "KubeState",
    "get_kube_proxy",
    "get_kube_state",
    "histogram_quantile",
    "kube_proxy_frames",
    "kube_state_frames",
    "read_metrics_text",
    "concat_samples",
    "connect_prometheus",
    "get_prometheus_instant",
    "get_prometheus_range",
    "read_prometheus_response",
]
