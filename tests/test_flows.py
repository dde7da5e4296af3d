import numpy as np
import pandas as pd
import pytest

import npanalytics

from npanalytics.analysis.flows import attribute_flows, endpoint_flows
from npanalytics.schemas import SCHEMAS, empty_frame, frame_from_records, validate_frame

SPN = "default/web:http"


def _services():
    rows = [
        dict(proxy_mode="iptables", namespace="default", service="web", port_name="http",
             service_port_name=SPN, protocol="tcp", cluster_ip="198.19.0.10", port=80,
             node_port=30080, external_ips="198.19.9.9", load_balancer_ips="", endpoint_count=2,
             has_endpoints=True),
        dict(proxy_mode="iptables", namespace="default", service="dns", port_name="dns",
             service_port_name="default/dns:dns", protocol="udp", cluster_ip="198.19.0.53", port=53,
             node_port=None, external_ips="", load_balancer_ips="", endpoint_count=1,
             has_endpoints=True),
    ]
    return frame_from_records(rows, "proxy_services")


def _endpoints():
    rows = []
    for i, ip in enumerate(["198.18.64.2", "198.18.65.2"]):
        rows.append(dict(proxy_mode="iptables", namespace="default", service="web", port_name="http",
                         service_port_name=SPN, protocol="tcp", endpoint_ip=ip, endpoint_port=8080,
                         chain="KUBE-SVC-A", local=False, position=i, rule_probability=[0.5, 1.0][i],
                         probability=0.5, packets=[5, 2][i]))
    rows.append(dict(proxy_mode="iptables", namespace="default", service="web", port_name="http",
                     service_port_name=SPN, protocol="tcp", endpoint_ip="198.18.64.2", endpoint_port=8080,
                     chain="KUBE-SVL-A", local=True, position=0, rule_probability=1.0, probability=1.0,
                     packets=1))
    rows.append(dict(proxy_mode="iptables", namespace="default", service="dns", port_name="dns",
                     service_port_name="default/dns:dns", protocol="udp", endpoint_ip="198.18.64.9",
                     endpoint_port=53, chain="KUBE-SVC-B", local=False, position=0, rule_probability=1.0,
                     probability=1.0))
    return frame_from_records(rows, "proxy_endpoints")


def _flow(proto, dst, dport, backend, bport):
    flags = {c.name: False for c in SCHEMAS["conntrack_flows"].columns if c.dtype == "bool"}
    return dict(flags, lineno=1, l3_protocol="ipv4", protocol=proto, protocol_number=6,
                orig_src_ip="198.18.200.1", orig_dst_ip=dst, orig_src_port=40000, orig_dst_port=dport,
                reply_src_ip=backend, reply_dst_ip="198.18.0.1", reply_src_port=bport, reply_dst_port=40000,
                service_ip=dst, service_port=dport, backend_ip=backend, backend_port=bport)


def _flows():
    rows = (
        [_flow("tcp", "198.18.0.1", 30080, "198.18.64.2", 8080)] * 3      # node port, endpoint 1
        + [_flow("tcp", "198.18.0.2", 30080, "198.18.65.2", 8080)]        # node port via another node IP
        + [_flow("tcp", "198.19.0.10", 80, "198.18.65.2", 8080)]          # cluster IP
        + [_flow("tcp", "198.19.9.9", 80, "198.18.64.2", 8080)]           # external IP
        + [_flow("tcp", "198.18.0.1", 30080, "198.18.66.7", 8080)]        # stale: backend not in rules
        + [_flow("tcp", "198.18.0.1", 22, "198.18.0.1", 22)]              # not a service
        + [_flow("udp", "198.18.0.1", 30080, "198.18.64.2", 8080)]        # wrong protocol
    )
    return frame_from_records(rows, "conntrack_flows")


def test_attribute_flows_matches_node_port_cluster_ip_and_external_ip():
    spn = attribute_flows(_flows(), _services())
    assert list(spn.astype("object").where(spn.notna(), None)) == [SPN] * 7 + [None, None]


def test_endpoint_flows_counts_shares_and_unknown_backends():
    table = endpoint_flows(_flows(), _services(), _endpoints())
    validate_frame(table, "endpoint_flows")
    web = table[table["service_port_name"] == SPN].set_index("endpoint_ip")
    assert web.loc["198.18.64.2", "flows"] == 4
    assert web.loc["198.18.65.2", "flows"] == 2
    assert web.loc["198.18.66.7", "flows"] == 1
    assert not web.loc["198.18.66.7", "in_rules"] and np.isnan(web.loc["198.18.66.7", "probability"])
    assert web.loc["198.18.64.2", "local_probability"] == 1.0
    assert np.isnan(web.loc["198.18.65.2", "local_probability"])
    assert web["flow_share"].sum() == pytest.approx(1.0)
    assert web.loc["198.18.64.2", "rule_connections"] == 6  # SVC jump 5 + SVL jump 1
    assert web.loc["198.18.65.2", "rule_connections"] == 2
    assert pd.isna(web.loc["198.18.66.7", "rule_connections"])
    assert web.loc["198.18.64.2", "flow_share"] == pytest.approx(4 / 7)
    dns = table[table["service_port_name"] == "default/dns:dns"]
    assert dns["flows"].tolist() == [0] and dns["flow_share"].tolist() == [0.0]  # no flows: 0, not NaN
    assert pd.isna(dns["rule_connections"].iloc[0])  # no counters in the dump


def test_empty_inputs_give_an_empty_frame_with_the_right_columns():
    table = endpoint_flows(empty_frame("conntrack_flows"), empty_frame("proxy_services"), empty_frame("proxy_endpoints"))
    assert table.empty
    validate_frame(table, "endpoint_flows")


def test_wrong_input_kind_is_a_schema_error():
    from npanalytics import SchemaError

    with pytest.raises(SchemaError, match="conntrack_flows"):
        attribute_flows(pd.DataFrame({"x": [1]}), _services())


@pytest.mark.parametrize("node", ["node-a", "node-b"])
def test_rule_connections_count_returning_affinity_clients(node):
    """Under ClientIP affinity most connections take the `recent --rcheck` rule; the
    rules' count of new connections includes them and equals the node's conntrack flows."""
    ds = npanalytics.load_dataset("affinity-few-clients")
    on = {k: ds[k][ds[k]["node"] == node] for k in ("conntrack_flows", "proxy_services", "proxy_endpoints")}
    out = endpoint_flows(on["conntrack_flows"], on["proxy_services"], on["proxy_endpoints"])
    assert out["flows"].sum() > 0
    assert out["rule_connections"].astype("int64").tolist() == out["flows"].tolist()
