from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics.analysis.diagnostics import DEFAULT_NODE_PORT_RANGE, diagnose, static_band
from npanalytics.analysis.result import FINDING_CODES
from npanalytics.collectors.conntrack import read_conntrack, read_conntrack_stats
from npanalytics.collectors.iptables import read_iptables_save
from npanalytics.collectors.k8s import read_k8s_objects
from npanalytics.exceptions import SchemaError
from npanalytics.schemas import frame_from_records, validate_frame

DATA = Path(__file__).resolve().parent / "data"


def _codes(findings, code):
    return findings.loc[findings["code"] == code]


@pytest.fixture(scope="module")
def mixed_rules():
    return read_iptables_save(DATA / "iptables" / "mixed.legacy.save-c.txt")


@pytest.fixture(scope="module")
def cluster():
    return read_k8s_objects(DATA / "k8s" / "cluster.json").frames()


def _on_nodes(df: pd.DataFrame, nodes: list[str]) -> pd.DataFrame:
    parts = [df.assign(node=node) for node in nodes]
    out = pd.concat(parts, ignore_index=True)
    out["node"] = out["node"].astype("str").astype("category")
    return out


def test_node_sample_has_no_critical_finding():
    from npanalytics.analysis.affinity import affinity_section
    from npanalytics.analysis.longlived import long_lived_section
    from npanalytics.analysis.overhead import overhead_section
    from npanalytics.analysis.pressure import pressure_section

    frames = npanalytics.load_dataset("node-sample").frames
    for topic in (affinity_section, long_lived_section, overhead_section, pressure_section):
        assert topic(frames)[1].empty
    findings = diagnose(frames)
    validate_frame(findings, "findings")
    assert not (findings["severity"] == "critical").any()
    assert set(findings["code"]) <= set(FINDING_CODES)
    # Cluster policy masquerades: 6 clients, the pods see node addresses
    snat = _codes(findings, "snat-source-lost")
    assert len(snat) == 1 and "6 client addresses reach the node" in snat["evidence"].iloc[0]


def test_endpoint_removed_yields_stale_conntrack():
    frames = npanalytics.load_dataset("endpoint-removed-stale").frames
    findings = diagnose(frames)
    stale = _codes(findings, "stale-conntrack")
    assert sorted(stale["node"]) == ["node-a", "node-b"]
    flows = frames["conntrack_flows"]
    for r in stale.itertuples():
        n = ((flows["node"] == r.node) & (flows["backend_ip"] == "198.18.65.10") & (flows["orig_dst_port"] == 30080)).sum()
        assert f"{n:,} flows" in r.evidence and "198.18.65.10:8080" in r.what
    # they are all TIME_WAIT: nothing still sends to the removed pod
    assert (stale["severity"] == "info").all()


def test_stale_conntrack_from_a_given_endpoint_flows_frame():
    flows = read_conntrack((
        "tcp      6 86000 ESTABLISHED src=198.18.200.10 dst=198.18.0.11 sport=40000 dport=30080 "
        "src=198.18.65.99 dst=198.18.64.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1\n").encode())
    ef = frame_from_records([dict(service_port_name="default/web:http", endpoint_ip="198.18.65.99", endpoint_port=8080,
                                  in_rules=False, flows=1, flow_share=1.0)], "endpoint_flows")
    stale = _codes(diagnose({"endpoint_flows": ef, "conntrack_flows": flows}), "stale-conntrack")
    assert stale["severity"].tolist() == ["warning"] and "1 of them still ESTABLISHED" in stale["evidence"].iloc[0]


def test_no_ready_endpoints_from_the_rules(mixed_rules):
    findings = diagnose({"proxy_services": mixed_rules.services, "proxy_endpoints": mixed_rules.endpoints})
    none = _codes(findings, "no-ready-endpoints")
    assert none["service"].tolist() == ["shop/empty:http"] and none["severity"].tolist() == ["critical"]


def test_no_ready_endpoints_from_endpointslices(cluster):
    frames = {"k8s_services": cluster["k8s_services"], "k8s_endpoints": cluster["k8s_endpoints"]}
    none = _codes(diagnose(frames), "no-ready-endpoints")
    assert none["service"].tolist() == ["default/nothing"] and none["severity"].tolist() == ["critical"]
    # only the serving, terminating web-4 left for web:http: kube-proxy falls back to it
    eps = cluster["k8s_endpoints"].copy()
    eps["ready"] = pd.array([False] * len(eps), dtype="boolean")
    frames["k8s_endpoints"] = eps
    none = _codes(diagnose(frames), "no-ready-endpoints").set_index("service")
    assert none.loc["default/web:http", "severity"] == "warning"
    assert "1 serving and terminating" in none.loc["default/web:http", "evidence"]
    assert none.loc["shop/api", "severity"] == "critical"


def test_node_port_not_programmed(mixed_rules, cluster):
    services = _on_nodes(mixed_rules.services, ["node-a", "node-b"])
    # node-b lost its rules for default/web:http
    drop = (services["node"] == "node-b") & (services["service_port_name"] == "default/web:http")
    services = services.loc[~drop].reset_index(drop=True)
    found = _codes(diagnose({"proxy_services": services}), "node-port-not-programmed")
    assert found[["service", "node"]].values.tolist() == [["default/web:http", "node-b"]]
    assert "node port 30080/tcp" in found["what"].iloc[0] and "1 of 2 nodes" in found["evidence"].iloc[0]
    # the Services say which node ports should exist: 30090 and 30443 are on no node (30081 is on both)
    found = _codes(diagnose({"proxy_services": services, "k8s_services": cluster["k8s_services"]}),
                   "node-port-not-programmed")
    assert sorted(set(found["service"])) == ["default/web:http", "default/web:metrics", "shop/api"]
    assert sorted(found.loc[found["service"] == "shop/api", "node"]) == ["node-a", "node-b"]
    assert (found["severity"] == "critical").all()


def test_local_policy_blackhole(mixed_rules):
    services = mixed_rules.services
    found = _codes(diagnose({"proxy_services": services}), "local-policy-blackhole")
    assert found["service"].tolist() == ["default/remote:http"] and found["severity"].tolist() == ["warning"]
    # traffic arrives at the node for the node port: critical
    flows = read_conntrack((
        "tcp      6 118 SYN_SENT src=203.0.113.7 dst=198.18.0.11 sport=51544 dport=30082 [UNREPLIED] "
        "src=198.18.0.11 dst=203.0.113.7 sport=30082 dport=51544 mark=0 use=1\n").encode())
    findings = diagnose({"proxy_services": services, "proxy_endpoints": mixed_rules.endpoints, "conntrack_flows": flows})
    found = _codes(findings, "local-policy-blackhole")
    assert found["severity"].tolist() == ["critical"] and "1 conntrack entries" in found["evidence"].iloc[0]
    # the dropped connection was never DNATed: it is no stale backend
    assert _codes(findings, "stale-conntrack").empty
    # the node with its local endpoint (default/local:http) is fine
    assert "default/local:http" not in set(found["service"])


def _np_services(ports: list[tuple[str, int]]) -> pd.DataFrame:
    rows = [dict(proxy_mode="iptables", namespace="ns", service=name, port_name="", service_port_name=f"ns/{name}",
                 protocol="tcp", cluster_ip=f"198.19.{i // 250}.{i % 250 + 1}", port=80, node_port=port,
                 external_ips="", load_balancer_ips="", endpoint_count=1, has_endpoints=True)
            for i, (name, port) in enumerate(ports)]
    return frame_from_records(rows, "proxy_services")


def test_node_port_range_collisions_and_bands():
    svc = _np_services([("a", 29999), ("b", 30100), ("c", 30100), ("d", 30000)])
    found = _codes(diagnose({"proxy_services": svc}), "node-port-out-of-range")
    assert found.loc[found["severity"] == "warning", "service"].tolist() == ["ns/a"]
    collide = found.loc[found["severity"] == "critical"]
    assert len(collide) == 1 and "ns/b, ns/c" in collide["evidence"].iloc[0]
    # a custom range moves the limits
    found = _codes(diagnose({"proxy_services": svc}, node_port_range=(20000, 29999)), "node-port-out-of-range")
    assert sorted(found.loc[found["severity"] == "warning", "service"]) == ["ns/b", "ns/c", "ns/d"]
    # the dynamic band (30086-32767) 95% used: automatic allocation will take static ports
    lo, hi = static_band()
    dynamic = [(f"s{i}", hi + 1 + i) for i in range(int(0.95 * (32767 - hi)))]
    found = _codes(diagnose({"proxy_services": _np_services(dynamic)}), "node-port-out-of-range")
    assert found["severity"].tolist() == ["warning"] and "dynamic band 30086-32767" in found["evidence"].iloc[0]
    with pytest.raises(ValueError, match="node_port_range must satisfy"):
        diagnose({}, node_port_range=(40000, 30000))
    with pytest.raises(ValueError, match="node_port_range must be a"):
        diagnose({}, node_port_range="30000-32767")


@pytest.mark.parametrize("bounds, band", [
    (DEFAULT_NODE_PORT_RANGE, (30000, 30085)),  # size 2768 -> 86
    ((30000, 30015), (30000, 29999)),           # 16 ports -> no static band
    ((30000, 30016), (30000, 30015)),           # 17 -> max(16, 0) = 16
    ((20000, 32767), (20000, 20127)),           # capped at 128
])
def test_static_band(bounds, band):
    assert static_band(bounds) == band


def test_cross_node_hops_with_pod_nodes(cluster):
    frames = dict(npanalytics.load_dataset("etp-cluster-spread").frames)
    frames.update(k8s_pods=cluster["k8s_pods"], k8s_nodes=cluster["k8s_nodes"])
    hops = _codes(diagnose(frames), "cross-node-hops")
    assert len(hops) == 1
    flows = frames["conntrack_flows"]
    np_flows = flows.loc[flows["orig_dst_port"] == 30080]
    home = np_flows["backend_ip"].astype(str).map(lambda ip: "node-a" if ip.startswith("198.18.64.") else "node-b")
    share = float((home != np_flows["node"].astype(str)).mean())
    assert 0.6 < share < 0.72  # about 2/3, as designed
    assert f"{100 * share:.1f}% of {len(np_flows):,} connections cross nodes" in hops["evidence"].iloc[0]
    # zone-a and zone-b (node-c has none): a cross-zone share is reported, and over 30% makes it a warning
    assert "cross zones" in hops["evidence"].iloc[0] and hops["severity"].iloc[0] == "warning"
    # without a way to place the endpoints, no finding (and no guess)
    bare = {f: df for f, df in npanalytics.load_dataset("etp-cluster-spread").frames.items() if not f.startswith("k8s_")}
    assert _codes(diagnose(bare), "cross-node-hops").empty


def test_local_policy_keeps_traffic_on_the_node():
    frames = npanalytics.load_dataset("etp-local-uneven").frames
    findings = diagnose(frames)  # the Local chains place the endpoints on their nodes
    assert findings.empty


def test_conntrack_pressure_is_part_of_the_list():
    head = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop "
            "icmp_error  expect_new expect_create expect_delete search_restart\n")
    row = " ".join(f"{v:08x}" for v in [131000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0])
    stats = read_conntrack_stats((head + row + "\n" + row + "\n").encode())
    found = _codes(diagnose({"conntrack_stats": stats}), "conntrack-pressure")
    assert found["severity"].tolist() == ["critical"] and "early_drop 14" in found["evidence"].iloc[0]


def test_empty_and_bad_input():
    findings = diagnose({})
    validate_frame(findings, "findings")
    assert findings.empty
    with pytest.raises(SchemaError, match="proxy_services"):
        diagnose({"proxy_services": pd.DataFrame({"node_port": [1]})})


def test_findings_are_most_severe_first(mixed_rules):
    services = _on_nodes(mixed_rules.services, ["node-a", "node-b"])
    findings = diagnose({"proxy_services": services})
    order = findings["severity"].map({"critical": 0, "warning": 1, "info": 2}).to_numpy()
    assert (np.diff(order) >= 0).all() and len(set(findings["severity"])) >= 2


def test_cross_node_hops_from_a_node_path_frame(cluster):
    from npanalytics.analysis.load import backend_labels, node_path

    frames = npanalytics.load_dataset("etp-cluster-spread").frames
    labels = backend_labels(cluster["k8s_pods"], cluster["k8s_nodes"])
    path = node_path(frames["conntrack_flows"], frames["proxy_services"], labels=labels, nodes=cluster["k8s_nodes"])
    hops = _codes(diagnose(frames, node_path=path), "cross-node-hops")
    served = path.loc[path["path"].astype(str).isin(["local", "forwarded"])]
    share = served.loc[served["path"] == "forwarded", "connections"].sum() / served["connections"].sum()
    assert len(hops) == 1 and f"{100 * share:.1f}% of {served['connections'].sum():,} connections" in hops["evidence"].iloc[0]
    # the same answer as from the pods' nodes directly
    direct = _codes(diagnose({**frames, "k8s_pods": cluster["k8s_pods"]}), "cross-node-hops")
    assert direct["evidence"].iloc[0].split(" cross nodes")[0] == hops["evidence"].iloc[0].split(" cross nodes")[0]
    # a path with every connection served locally: nothing to report
    local = path.assign(path=pd.Categorical(["local"] * len(path)), cross_zone=pd.array([False] * len(path), dtype="boolean"))
    assert _codes(diagnose(frames, node_path=local), "cross-node-hops").empty
