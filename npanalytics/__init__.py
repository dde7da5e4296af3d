"""npanalytics: where Kubernetes NodePort traffic went, and why.

The layers, with imports flowing one way (see the developers' guide):
collectors (I/O) -> schema'd frames -> analysis -> plotting -> widgets/report/CLI.
"""

from .exceptions import (
    CollectorError,
    DatasetError,
    LabError,
    NpaError,
    NpaWarning,
    ParseError,
    ParseWarning,
    PrometheusWarning,
    SchemaError,
)
from .collectors import (
    ParseReport,
    ProxyRules,
    get_conntrack,
    get_conntrack_stats,
    read_conntrack,
    read_conntrack_stats,
    read_iptables_save,
    read_ipvsadm,
    read_nft_ruleset,
    read_proxy_rules,
)
from .collectors import connect_prometheus, get_prometheus_instant, get_prometheus_range, read_prometheus_response
from .collectors import (
    concat_samples,
    get_kube_proxy,
    get_kube_state,
    kube_proxy_frames,
    kube_state_frames,
    read_metrics_text,
)

from .collectors import EndpointSnapshot, get_endpoint_snapshot, read_k8s_objects, watch_endpoints
from .datasets import Dataset, list_datasets, load_dataset
from .analysis import Analysis, analyze
from .schemas import SCHEMAS, validate_frame

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CollectorError",
    "DatasetError",
    "LabError",
    "NpaError",
    "NpaWarning",
    "ParseError",
    "ParseWarning",
    "PrometheusWarning",
    "SchemaError",
    "ParseReport",
    "ProxyRules",
    "get_conntrack",
    "get_conntrack_stats",
    "read_conntrack",
    "read_conntrack_stats",
    "read_iptables_save",
    "read_ipvsadm",
    "read_nft_ruleset",
    "read_proxy_rules",
    "connect_prometheus",
    "get_prometheus_instant",
    "get_prometheus_range",
    "read_prometheus_response",
    "read_metrics_text",
    "concat_samples",
    "get_kube_state",
    "get_kube_proxy",
    "kube_state_frames",
    "kube_proxy_frames",
    "EndpointSnapshot",
    "get_endpoint_snapshot",
    "read_k8s_objects",
    "watch_endpoints",
    "Dataset",
    "list_datasets",
    "load_dataset",
    "Analysis",
    "analyze",
    "SCHEMAS",
    "validate_frame",
]
