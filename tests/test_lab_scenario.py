"""Scenario specs: validation errors name the field; conversion to ServicePort objects."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from npanalytics.exceptions import LabError
from npanalytics.lab.netns import check_address
from npanalytics.lab.scenario import bundled_scenarios, load_scenario, scenario_from_dict

BASE = {
    "name": "t",
    "nodes": [{"name": "node-a", "zone": "za"}, {"name": "node-b", "zone": "zb", "proxy_mode": "nftables"}],
    "pods": [
        {"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
        {"name": "web-2", "node": "node-b", "labels": {"app": "web"}, "ready": False},
        {"name": "web-3", "node": "node-b", "labels": {"app": "web"}, "ready": False,
         "serving": True, "terminating": True},
        {"name": "db-1", "node": "node-b", "labels": {"app": "db"}},
    ],
    "services": [{
        "name": "web", "namespace": "shop", "selector": {"app": "web"},
        "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
    }],
    "clients": {"count": 4, "addressing": "distinct"},
    "traffic": {"node_weights": {"node-a": 1, "node-b": 2}, "requests": 100, "max_seconds": 10},
}


def mutate(path, value):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_valid_scenario_converts_to_service_ports():
    sc = scenario_from_dict(BASE)
    (sp,) = sc.service_ports()
    assert sp.service_port_name == "shop/web:http"
    assert (sp.protocol, sp.port, sp.node_port) == ("tcp", 80, 30080)
    assert sp.external_traffic_policy == "Local"
    assert (sp.session_affinity, sp.affinity_timeout_seconds) == ("ClientIP", 60)
    assert sorted(e.pod for e in sp.endpoints) == ["web-1", "web-2", "web-3"]  # db-1 not selected
    ep = {e.pod: e for e in sp.endpoints}
    assert ep["web-2"].ready is False and ep["web-2"].serving is False
    assert ep["web-3"].terminating and ep["web-3"].serving
    assert {e.zone for e in sp.endpoints} == {"za", "zb"}
    assert [e.pod for e in sp.usable_endpoints()] == ["web-1"]
    assert [e.pod for e in sp.usable_endpoints("node-b")] == ["web-3"]  # serving+terminating fallback
    assert sc.proxy_modes == ["iptables-legacy", "nftables"]


def test_addresses_stay_in_the_lab_ranges():
    sc = scenario_from_dict(BASE)
    a = sc.addresses()
    every = [*a.node_ips.values(), *a.pod_ips.values(), *a.cluster_ips.values(), *a.client_ips,
             a.client_gateway, *a.pod_cidrs.values()]
    for address in every:
        check_address(address)
    assert len(set(every)) == len(every)
    for pod in sc.pods:
        assert ipaddress.ip_address(a.pod_ips[pod.name]) in ipaddress.ip_network(a.pod_cidrs[pod.node])
    assert sc.service_ports()[0].endpoints[0].ip in a.pod_ips.values()


def test_nat_clients_use_the_inside_network():
    sc = scenario_from_dict(mutate(["clients"], {"count": 3, "addressing": "nat"}))
    assert all(ip.startswith("198.18.208.") for ip in sc.addresses().client_ips)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (["name"], KeyError, r"field \(top level\)\.name: is required"),
        (["nodes"], [], "field nodes: expected a non-empty list"),
        (["nodes", 0, "proxy_mode"], "iptables", r"nodes\[0\]\.proxy_mode: must be one of .*did you mean"),
        (["nodes", 1, "name"], "node-a", "field nodes: duplicate name 'node-a'"),
        (["nodes", 0, "cpu"], 2, r"nodes\[0\]\.cpu: unknown key"),
        (["pods", 0, "node"], "node-c", r"pods\[0\]\.node: must be one of node-a, node-b; got 'node-c'"),
        (["pods", 0, "ready"], "yes", r"pods\[0\]\.ready: expected true or false"),
        (["services", 0, "type"], "LoadBalancer", r"services\[0\]\.type: the lab builds NodePort"),
        (["services", 0, "externalTrafficPolicy"], "local",
         r"externalTrafficPolicy: must be one of Cluster, Local; got 'local'; did you mean 'Local'"),
        (["services", 0, "sessionAffinity"], "Client", r"sessionAffinity: must be one of None, ClientIP"),
        (["services", 0, "sessionAffinityConfig"], {"clientIP": {"timeoutSeconds": 0}},
         r"clientIP\.timeoutSeconds: expected an integer in \[1, 86400\]"),
        (["services", 0, "ports", 0, "nodePort"], 80, r"ports\[0\]\.nodePort: expected an integer in \[30000"),
        (["services", 0, "ports", 0, "protocol"], "UDP", r"ports\[0\]\.protocol: must be one of TCP"),
        (["services", 0, "selector"], {}, r"services\[0\]\.selector: must select"),
        (["services", 0, "selectr"], {}, r"services\[0\]\.selectr: unknown key.*did you mean 'selector'"),
        (["clients", "addressing"], "shared", r"clients\.addressing: must be one of distinct, nat"),
        (["clients", "count"], 0, r"clients\.count: expected an integer in \[1, 2000\], got 0"),
        (["clients"], {"count": 1001, "addressing": "nat"}, r"clients\.count: expected an integer in \[1, 1000\]"),
        (["traffic", "requests"], KeyError, r"traffic\.requests: is required"),
        (["traffic", "max_seconds"], 1e9, r"traffic\.max_seconds: expected a number in \[0.1, 600"),
        (["traffic", "mode"], "pipelined", r"traffic\.mode: must be one of"),
        (["traffic", "requests_per_connection"], 5, r"requests_per_connection: must be 1 with mode"),
        (["traffic", "node_weights"], {"node-z": 1}, r"traffic\.node_weights: must be one of node-a"),
        (["traffic", "node_weights"], {"node-a": 0}, r"traffic\.node_weights: at least one node"),
        (["traffic", "service"], "api", r"traffic\.service: must be one of web"),
    ],
)
def test_validation_errors_name_the_field(path, value, match):
    with pytest.raises(LabError, match=match):
        scenario_from_dict(mutate(path, value))


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([{"pod": "web-9", "action": "unready", "at_request": 5}], r"events\[0\]\.pod: must be one of"),
        ([{"pod": "web-1", "action": "delete", "at_request": 5}], r"events\[0\]\.action: must be one of"),
        ([{"pod": "web-1", "action": "unready"}], r"events\[0\]: give exactly one of at_request"),
        ([{"pod": "web-1", "action": "unready", "at_request": 5, "at_second": 1}], "exactly one"),
        ([{"pod": "web-1", "action": "unready", "at_request": 100}], r"at_request: expected an integer in \[1, 99\]"),
        ([{"pod": "web-1", "action": "unready", "at_second": 11}], r"at_second: expected a number in \[0.0, 10.0\]"),
    ],
)
def test_event_validation(events, match):
    with pytest.raises(LabError, match=match):
        scenario_from_dict({**BASE, "events": events})


def test_start_absent_pod_needs_an_add_event():
    data = mutate(["pods", 0, "start_absent"], True)
    with pytest.raises(LabError, match="pod web-1 has start_absent but no 'add' event"):
        scenario_from_dict(data)
    sc = scenario_from_dict({**data, "events": [{"pod": "web-1", "action": "add", "at_request": 50}]})
    assert "web-1" not in [e.pod for e in sc.service_ports()[0].endpoints]


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(LabError, match=r"bad\.yaml: not valid YAML"):
        load_scenario(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: x\nnodes: 3\n")
    with pytest.raises(LabError, match=r"wrong\.yaml: scenario field nodes: expected a non-empty list"):
        load_scenario(wrong)
    with pytest.raises(LabError, match="no bundled scenario of that name"):
        load_scenario("no-such-scenario")


def test_bundled_scenarios_load():
    names = bundled_scenarios()
    assert {"two-nodes-local", "node-sample"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
