"""Expected shares: from the rules, from the Service spec, IPVS schedulers, the client-to-node mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics import SchemaError
from npanalytics.analysis.expected import (
    expected_shares,
    ipvs_probabilities,
    selection_from_rules,
    selection_from_spec,
)
from npanalytics.schemas import frame_from_records

SPN = "default/web:http"


def test_ipvs_schedulers():
    np.testing.assert_allclose(ipvs_probabilities("rr", [1, 1, 0, 1]), [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(ipvs_probabilities("wrr", [1, 3]), [0.25, 0.75])
    np.testing.assert_allclose(ipvs_probabilities("lc", [5, 1]), [0.5, 0.5])  # approximated as rr
    np.testing.assert_allclose(ipvs_probabilities("wrr", [None, 1]), [0.5, 0.5])  # missing weight reads as 1
    np.testing.assert_allclose(ipvs_probabilities("sh", [0, 0]), [0, 0])
    with pytest.raises(ValueError, match=r"scheduler: expected one of .*'rr'.*got 'roundrobin'"):
        ipvs_probabilities("roundrobin", [1])


def test_selection_from_rules_uses_each_nodes_local_chain_under_local_policy():
    ds = npanalytics.load_dataset("etp-local-uneven")
    sel = selection_from_rules(ds["proxy_endpoints"], ds["proxy_services"])
    got = {(n, ip): p for n, ip, p in zip(sel["entry_node"], sel["endpoint_ip"], sel["probability"])}
    assert got == {("node-a", "198.18.64.10"): 0.5, ("node-a", "198.18.64.11"): 0.5, ("node-b", "198.18.65.10"): 1.0}
    internal = selection_from_rules(ds["proxy_endpoints"], ds["proxy_services"], traffic="internal")
    assert len(internal) == 6 and np.allclose(internal["probability"], 1 / 3)
    with pytest.raises(SchemaError, match="proxy_services"):
        selection_from_rules(ds["proxy_endpoints"], ds["proxy_services"].drop(columns=["node_port"]))


def _spec(policy="Cluster", distribution=None, endpoints=()):
    services = frame_from_records([{
        "namespace": "default", "service": "web", "type": "NodePort", "cluster_ip": "10.96.0.10",
        "cluster_ips": "10.96.0.10", "port_name": "http", "protocol": "tcp", "port": 80, "target_port": "8080",
        "node_port": 30080, "external_traffic_policy": policy, "internal_traffic_policy": "Cluster",
        "session_affinity": "None", "session_affinity_timeout_seconds": None,
        "traffic_distribution": distribution, "health_check_node_port": None, "service_port_name": SPN,
    }], "k8s_services")
    eps = frame_from_records([{
        "namespace": "default", "service": "web", "slice": "web-x", "port_name": "http", "protocol": "tcp",
        "port": 8080, "address": a, "ready": ready, "serving": serving, "terminating": term, "node": node,
        "zone": zone, "hints": hints, "target_pod": None, "service_port_name": SPN,
    } for a, node, zone, ready, serving, term, hints in endpoints], "k8s_endpoints")
    nodes = frame_from_records([
        {"node": n, "internal_ip": ip, "external_ip": None, "zone": z, "region": None, "ready": True}
        for n, ip, z in (("n1", "192.0.2.1", "za"), ("n2", "192.0.2.2", "za"), ("n3", "192.0.2.3", "zb"))
    ], "k8s_nodes")
    return services, eps, nodes


EPS = (
    ("10.0.1.1", "n1", "za", True, True, False, ""),
    ("10.0.1.2", "n1", "za", True, True, False, ""),
    ("10.0.3.1", "n3", "zb", True, True, False, ""),
    ("10.0.3.2", "n3", "zb", False, True, True, ""),  # terminating: not used while others are ready
)


def _by_node(sel):
    return {n: dict(zip(g["endpoint_ip"].astype(str), g["probability"])) for n, g in sel.groupby("entry_node", observed=True)}


def test_spec_cluster_policy_is_uniform_over_ready_endpoints_on_every_node():
    sel = _by_node(selection_from_spec(*_spec(endpoints=EPS)))
    assert set(sel) == {"n1", "n2", "n3"}
    for probs in sel.values():
        assert probs == pytest.approx({"10.0.1.1": 1 / 3, "10.0.1.2": 1 / 3, "10.0.3.1": 1 / 3})


def test_spec_local_policy_splits_over_local_endpoints_and_nodes_without_one_drop():
    sel = _by_node(selection_from_spec(*_spec(policy="Local", endpoints=EPS)))
    assert set(sel) == {"n1", "n3"}  # n2 has no local endpoint: it drops the traffic
    assert sel["n1"] == pytest.approx({"10.0.1.1": 0.5, "10.0.1.2": 0.5})
    assert sel["n3"] == {"10.0.3.1": 1.0}


def test_spec_falls_back_to_serving_terminating_endpoints_when_none_is_ready():
    eps = [e[:3] + (False, True, True, "") for e in EPS[:2]] + [EPS[2][:3] + (False, False, True, "")]
    sel = selection_from_spec(*_spec(endpoints=eps))
    assert set(sel["endpoint_ip"].astype(str)) == {"10.0.1.1", "10.0.1.2"}
    assert sel["model"].str.contains("serving-terminating").all()


def test_spec_prefer_close_keeps_traffic_in_the_zone_and_hints_win():
    sel = _by_node(selection_from_spec(*_spec(distribution="PreferClose", endpoints=EPS)))
    assert sel["n2"] == pytest.approx({"10.0.1.1": 0.5, "10.0.1.2": 0.5})  # n2 is in za
    assert sel["n3"] == {"10.0.3.1": 1.0}
    hinted = [e[:6] + (h,) for e, h in zip(EPS[:3], ("za", "za", "za,zb"))]
    sel = _by_node(selection_from_spec(*_spec(endpoints=hinted)))
    assert sel["n3"] == {"10.0.3.1": 1.0}
    assert sel["n1"] == pytest.approx({"10.0.1.1": 1 / 3, "10.0.1.2": 1 / 3, "10.0.3.1": 1 / 3})


def test_expected_shares_weigh_nodes_by_the_mix_over_the_serving_nodes():
    sel = selection_from_spec(*_spec(policy="Local", endpoints=EPS))
    keys = pd.DataFrame({"service_port_name": [SPN, SPN], "window_start": [pd.NaT, pd.NaT],
                         "source": ["conntrack", "ground_truth"]})
    mix = pd.DataFrame({"service_port_name": [SPN] * 3, "window_start": [pd.NaT] * 3,
                        "source": ["conntrack"] * 3, "entry_node": ["n1", "n2", "n3"], "mix": [0.6, 0.2, 0.2]})
    ex = expected_shares(sel, keys, mix)
    ct = ex[ex["source"] == "conntrack"].set_index(ex.loc[ex["source"] == "conntrack", "endpoint_ip"].astype(str))
    # n2's 20 % is dropped: n1 serves 0.6/0.8, n3 0.2/0.8
    assert ct["expected_share"].to_dict() == pytest.approx({"10.0.1.1": 0.375, "10.0.1.2": 0.375, "10.0.3.1": 0.25})
    assert "20.0% of the traffic enters nodes that drop it" in ct["model"].iloc[0]
    # ground truth has no mix of its own and borrows conntrack's
    gt = ex[ex["source"] == "ground_truth"]
    assert gt["expected_share"].sum() == pytest.approx(1.0) and gt["model"].str.contains("measured").all()
    even = expected_shares(sel, keys.iloc[:1])
    assert even["expected_share"].to_list() == pytest.approx([0.25, 0.25, 0.5])
    assert even["model"].str.contains("assumed even").all()


def test_selection_from_ipvs_rules_per_scheduler():
    rules = npanalytics.read_ipvsadm("tests/data/ipvs/list.txt")
    sel = selection_from_rules(rules.endpoints, rules.services)
    by_vs = {k: dict(zip(g["endpoint_ip"].astype(str), g["probability"]))
             for k, g in sel.groupby("service_port_name", observed=True)}
    assert by_vs["TCP 10.96.12.38:80"] == {"10.244.1.7": 0.5, "10.244.2.9": 0.5}  # lc: as rr (approximation)
    assert by_vs["TCP 10.96.12.39:80"] == pytest.approx({"10.244.1.8": 0.75, "10.244.2.10": 0.25})  # wrr
    assert by_vs["TCP 10.96.12.34:80"]["10.244.3.10"] == 0.0  # weight 0: quiesced
    models = dict(zip(sel["service_port_name"].astype(str), sel["model"]))
    assert models["TCP 10.96.12.38:80"].startswith("IPVS lc") and models["TCP 10.96.12.39:80"].startswith("IPVS wrr")
