"""cluster_objects / as_list: the lab's API objects, read back with the real kubernetes client."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json

import pytest

from npanalytics.lab.k8s_objects import (
    ENDPOINTSLICE_MANAGED_BY,
    LAB_EPOCH,
    LAB_REGION,
    MAX_ENDPOINTS_PER_SLICE,
    as_list,
    cluster_objects,
    k8s_time,
)
from npanalytics.lab.scenario import scenario_from_dict

kubernetes = pytest.importorskip("kubernetes")

SCENARIO = {
    "name": "objects",
    "nodes": [
        {"name": "node-a", "zone": "zone-a"},
        {"name": "node-b", "zone": "zone-b"},
        {"name": "node-c"},
    ],
    "pods": [
        {"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
        {"name": "web-2", "node": "node-a", "labels": {"app": "web"}, "ready": False},
        {"name": "web-3", "node": "node-b", "labels": {"app": "web"}},
        {"name": "web-4", "node": "node-b", "labels": {"app": "web"},
         "ready": False, "serving": True, "terminating": True},
        {"name": "web-5", "node": "node-c", "labels": {"app": "web"}, "start_absent": True},
        {"name": "api-1", "node": "node-c", "labels": {"app": "api"}},
    ],
    "services": [
        {"name": "web", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
         "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                   {"name": "metrics", "port": 9090, "targetPort": 9091, "nodePort": 30090}]},
        {"name": "api", "namespace": "shop", "selector": {"app": "api"},
         "internalTrafficPolicy": "Local",
         "ports": [{"port": 443, "targetPort": 8443, "nodePort": 30443}]},
        {"name": "nothing", "selector": {"app": "none"},
         "ports": [{"port": 81, "nodePort": 30081}]},
    ],
    "traffic": {"requests": 100},
    "events": [{"pod": "web-5", "action": "add", "at_request": 50}],
}


@pytest.fixture
def scenario():
    return scenario_from_dict(SCENARIO)


def read(obj, klass):
    """Deserialize like the client does for a response body."""
    api = kubernetes.client.ApiClient()
    return api.deserialize(json.dumps(obj), klass, "application/json")


def selected(scenario, selector, present=None):
    """Independent view: the pods a selector picks in the initial state (or ``present``)."""
    return [
        p for p in scenario.pods
        if (p.name in present if present is not None else not p.start_absent)
        and all(p.labels.get(k) == v for k, v in selector.items())
    ]


def test_keys_and_kinds(scenario):
    objects = cluster_objects(scenario)
    assert list(objects) == ["services", "endpointslices", "pods", "nodes"]
    assert {o["kind"] for o in objects["services"]} == {"Service"}
    assert {o["apiVersion"] for o in objects["endpointslices"]} == {"discovery.k8s.io/v1"}
    assert [o["metadata"]["name"] for o in objects["nodes"]] == ["node-a", "node-b", "node-c"]
    # web-5 starts absent
    assert [o["metadata"]["name"] for o in objects["pods"]] == ["web-1", "web-2", "web-3", "web-4", "api-1"]
    assert "endpoints" in cluster_objects(scenario, include_endpoints=True)


def test_services_read_back_with_the_client(scenario):
    addresses = scenario.addresses()
    services = {o["metadata"]["name"]: read(o, "V1Service") for o in cluster_objects(scenario)["services"]}
    web = services["web"]
    assert web.metadata.namespace == "default"
    assert web.metadata.creation_timestamp == LAB_EPOCH
    assert web.spec.type == "NodePort"
    assert web.spec.cluster_ip == addresses.cluster_ips["web"]
    assert web.spec.cluster_ips == [addresses.cluster_ips["web"]]
    assert [(p.name, p.protocol, p.port, p.target_port, p.node_port) for p in web.spec.ports] == [
        ("http", "TCP", 80, 8080, 30080), ("metrics", "TCP", 9090, 9091, 30090)]
    assert web.spec.selector == {"app": "web"}
    assert web.spec.external_traffic_policy == "Local"
    assert web.spec.internal_traffic_policy == "Cluster"
    assert web.spec.session_affinity == "ClientIP"
    assert web.spec.session_affinity_config.client_ip.timeout_seconds == 600
    assert web.spec.ip_families == ["IPv4"] and web.spec.ip_family_policy == "SingleStack"
    api = services["api"]
    assert api.metadata.namespace == "shop"
    assert api.spec.session_affinity == "None" and api.spec.session_affinity_config is None
    assert api.spec.internal_traffic_policy == "Local"
    assert [(p.name, p.port, p.target_port, p.node_port) for p in api.spec.ports] == [(None, 443, 8443, 30443)]
    assert services["nothing"].spec.ports[0].target_port == 81  # targetPort defaults to port


def endpoint_rows(slices):
    rows = []
    for eps in slices:
        for e in eps.endpoints:
            c = e.conditions
            rows.append((e.target_ref.name, e.node_name, e.addresses[0], c.ready, c.serving, c.terminating))
    return sorted(rows)


def test_endpointslices_match_the_scenario_pods_per_node(scenario):
    addresses = scenario.addresses()
    objects = cluster_objects(scenario)
    pod_uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in objects["pods"]}
    slices = [read(o, "V1EndpointSlice") for o in objects["endpointslices"]]
    by_service = {}
    for eps in slices:
        assert eps.address_type == "IPv4"
        assert eps.metadata.labels["endpointslice.kubernetes.io/managed-by"] == ENDPOINTSLICE_MANAGED_BY
        by_service.setdefault(eps.metadata.labels["kubernetes.io/service-name"], []).append(eps)
    assert sorted(by_service) == ["api", "nothing", "web"]
    for svc in scenario.services:
        pods = selected(scenario, svc.selector)
        expected = sorted(
            (p.name, p.node, addresses.pod_ips[p.name], p.ready, p.serving, p.terminating) for p in pods
        )
        assert endpoint_rows(by_service[svc.name]) == expected
        for eps in by_service[svc.name]:
            assert eps.metadata.namespace == svc.namespace
            assert eps.metadata.name.startswith(f"{svc.name}-")
            assert eps.metadata.owner_references[0].kind == "Service"
            if eps.endpoints:
                assert [(p.name, p.port, p.protocol) for p in eps.ports] == [
                    (port.name, port.target_port, "TCP") for port in svc.ports]
            for e in eps.endpoints:
                assert e.target_ref.kind == "Pod"
                assert e.target_ref.uid == pod_uids[e.target_ref.name]
                assert e.zone == (scenario.node(e.node_name).zone or None)
    # per node: web has two endpoints on node-a and two on node-b (one of them terminating)
    per_node = {}
    for e in by_service["web"][0].endpoints:
        per_node.setdefault(e.node_name, []).append(e.target_ref.name)
    assert per_node == {"node-a": ["web-1", "web-2"], "node-b": ["web-3", "web-4"]}
    # a service without pods keeps one empty slice (no ports)
    assert [len(s.endpoints) for s in by_service["nothing"]] == [0]


def test_pod_states_override_the_scenario(scenario):
    states = {"web-2": {"ready": True, "serving": True}, "web-5": {"present": True},
              "web-1": {"ready": False, "serving": False}}
    objects = cluster_objects(scenario, pod_states=states)
    rows = {r[0]: r for r in endpoint_rows([read(objects["endpointslices"][0], "V1EndpointSlice")])}
    assert rows["web-2"][3:] == (True, True, False)
    assert rows["web-1"][3:] == (False, False, False)
    assert rows["web-5"][1] == "node-c"
    assert "web-5" in [p["metadata"]["name"] for p in objects["pods"]]
    # the lab topology's form: full PodSpec values
    web2 = next(p for p in scenario.pods if p.name == "web-2")
    as_specs = cluster_objects(scenario, pod_states={"web-2": dataclasses.replace(web2, ready=True, serving=True)})
    rows = {r[0]: r for r in endpoint_rows([read(as_specs["endpointslices"][0], "V1EndpointSlice")])}
    assert rows["web-2"][3:] == (True, True, False)
    assert "web-5" not in rows


@pytest.mark.parametrize(
    ("states", "match"),
    [
        ({"web-9": {"ready": True}}, "not in scenario 'objects': web-9"),
        ({"web-1": {"redy": True}}, "unknown key 'redy'"),
        ({"web-1": {"ready": "yes"}}, r"pod_states\['web-1'\]\['ready'\] must be a bool"),
        ({"web-1": 3}, "must be a PodSpec or a mapping"),
    ],
)
def test_bad_pod_states(scenario, states, match):
    with pytest.raises(ValueError, match=match):
        cluster_objects(scenario, pod_states=states)


def test_naive_times_are_rejected(scenario):
    with pytest.raises(ValueError, match="at must be a timezone-aware datetime"):
        cluster_objects(scenario, at=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="created must be a timezone-aware datetime"):
        cluster_objects(scenario, created=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="expected a timezone-aware datetime"):
        k8s_time(dt.datetime(2025, 1, 1))


def test_pods_read_back(scenario):
    addresses = scenario.addresses()
    at = dt.datetime(2025, 6, 1, 12, 30, 5, tzinfo=dt.timezone.utc)
    pods = {o["metadata"]["name"]: read(o, "V1Pod") for o in cluster_objects(scenario, at=at)["pods"]}
    for spec in selected(scenario, {}):
        pod = pods[spec.name]
        assert pod.spec.node_name == spec.node
        assert pod.status.pod_ip == addresses.pod_ips[spec.name]
        assert [i.ip for i in pod.status.pod_ips] == [addresses.pod_ips[spec.name]]
        assert pod.status.host_ip == addresses.node_ips[spec.node]
        assert pod.status.phase == "Running"
        ready = next(c.status for c in pod.status.conditions if c.type == "Ready")
        assert ready == ("True" if (spec.serving if spec.terminating else spec.ready) else "False")
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.controller, owner.api_version) == ("ReplicaSet", True, "apps/v1")
        assert pod.metadata.labels["app"] == spec.labels["app"]
        assert owner.name.endswith(pod.metadata.labels["pod-template-hash"])
        assert (pod.metadata.deletion_timestamp is not None) == spec.terminating
    assert pods["web-4"].metadata.deletion_timestamp == LAB_EPOCH  # terminating from the start
    assert pods["api-1"].metadata.namespace == "shop"
    # pods with equal labels share their ReplicaSet
    assert pods["web-1"].metadata.owner_references[0].uid == pods["web-3"].metadata.owner_references[0].uid
    assert pods["web-1"].metadata.owner_references[0].uid != pods["api-1"].metadata.owner_references[0].uid


def test_nodes_read_back(scenario):
    addresses = scenario.addresses()
    nodes = {o["metadata"]["name"]: read(o, "V1Node") for o in cluster_objects(scenario)["nodes"]}
    for spec in scenario.nodes:
        node = nodes[spec.name]
        labels = node.metadata.labels
        assert labels["kubernetes.io/hostname"] == spec.name
        if spec.zone:
            assert labels["topology.kubernetes.io/zone"] == spec.zone
            assert labels["topology.kubernetes.io/region"] == LAB_REGION
        else:
            assert "topology.kubernetes.io/zone" not in labels
        assert {(a.type, a.address) for a in node.status.addresses} == {
            ("InternalIP", addresses.node_ips[spec.name]), ("Hostname", spec.name)}
        assert node.spec.pod_cidr == addresses.pod_cidrs[spec.name]
        assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]
        assert node.status.node_info.system_uuid == node.metadata.uid
        assert node.metadata.namespace is None


def test_endpoints_objects(scenario):
    addresses = scenario.addresses()
    objects = cluster_objects(scenario, include_endpoints=True)
    endpoints = {o["metadata"]["name"]: read(o, "V1Endpoints") for o in objects["endpoints"]}
    subset = endpoints["web"].subsets[0]
    assert sorted(a.ip for a in subset.addresses) == sorted(
        addresses.pod_ips[n] for n in ("web-1", "web-3"))
    # not ready: web-2; terminating web-4 is left out
    assert [a.target_ref.name for a in subset.not_ready_addresses] == ["web-2"]
    assert [(p.name, p.port) for p in subset.ports] == [("http", 8080), ("metrics", 9091)]
    assert endpoints["nothing"].subsets is None


def test_deterministic_and_unique(scenario):
    first = json.dumps(cluster_objects(scenario, include_endpoints=True), sort_keys=True)
    again = json.dumps(cluster_objects(scenario_from_dict(copy.deepcopy(SCENARIO)), include_endpoints=True),
                       sort_keys=True)
    assert first == again
    objects = cluster_objects(scenario, include_endpoints=True)
    uids = [o["metadata"]["uid"] for items in objects.values() for o in items]
    assert len(uids) == len(set(uids))
    # a state change changes the slice's resourceVersion, not the Service's
    changed = cluster_objects(scenario, pod_states={"web-2": {"ready": True, "serving": True}})
    assert changed["services"][0]["metadata"]["resourceVersion"] == \
        objects["services"][0]["metadata"]["resourceVersion"]
    assert changed["endpointslices"][0]["metadata"]["resourceVersion"] != \
        objects["endpointslices"][0]["metadata"]["resourceVersion"]
    # another scenario name gives other uids
    other = cluster_objects(scenario_from_dict({**SCENARIO, "name": "other"}))
    assert other["services"][0]["metadata"]["uid"] != objects["services"][0]["metadata"]["uid"]


def test_at_stamps_only_what_changed(scenario):
    at = dt.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    trigger = "endpoints.kubernetes.io/last-change-trigger-time"
    unchanged = cluster_objects(scenario, at=at, include_endpoints=True)
    assert unchanged == cluster_objects(scenario, include_endpoints=True)  # nothing changed: at leaves no trace
    assert unchanged["endpointslices"][0]["metadata"]["annotations"][trigger] == "2025-01-01T00:00:00Z"
    later = cluster_objects(scenario, at=at, pod_states={"web-2": {"ready": True, "serving": True}},
                            include_endpoints=True)
    web, api, nothing = later["endpointslices"]
    assert web["metadata"]["annotations"][trigger] == "2025-03-04T03:06:07Z"
    assert later["endpoints"][0]["metadata"]["annotations"][trigger] == "2025-03-04T03:06:07Z"
    assert api == unchanged["endpointslices"][1] and nothing == unchanged["endpointslices"][2]
    pods = {p["metadata"]["name"]: p for p in later["pods"]}
    before = {p["metadata"]["name"]: p for p in unchanged["pods"]}
    ready = next(c for c in pods["web-2"]["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", "2025-03-04T03:06:07Z")
    assert pods["web-1"] == before["web-1"]
    # a pod that appears touches its service's slice too
    added = cluster_objects(scenario, at=at, pod_states={"web-5": {"present": True}})
    assert added["endpointslices"][0]["metadata"]["annotations"][trigger] == "2025-03-04T03:06:07Z"


def test_large_service_is_split_into_slices_of_100():
    data = {
        "name": "big",
        "nodes": [{"name": "node-a"}, {"name": "node-b"}],
        "pods": [{"name": f"p-{i}", "node": "node-a" if i % 2 else "node-b", "labels": {"app": "big"}}
                 for i in range(150)],
        "services": [{"name": "big", "selector": {"app": "big"},
                      "ports": [{"port": 80, "nodePort": 30080}]}],
        "traffic": {"requests": 10},
    }
    slices = [read(o, "V1EndpointSlice") for o in cluster_objects(scenario_from_dict(data))["endpointslices"]]
    assert [len(s.endpoints) for s in slices] == [MAX_ENDPOINTS_PER_SLICE, 50]
    assert len({s.metadata.name for s in slices}) == 2
    names = sorted(e.target_ref.name for s in slices for e in s.endpoints)
    assert names == sorted(f"p-{i}" for i in range(150))


@pytest.mark.parametrize(
    ("kind", "api_version", "list_kind", "klass"),
    [
        ("services", "v1", "ServiceList", "V1ServiceList"),
        ("EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList", "V1EndpointSliceList"),
        ("PodList", "v1", "PodList", "V1PodList"),
        ("nodes", "v1", "NodeList", "V1NodeList"),
    ],
)
def test_as_list(scenario, kind, api_version, list_kind, klass):
    objects = cluster_objects(scenario)
    key = {"ServiceList": "services", "EndpointSliceList": "endpointslices", "PodList": "pods",
           "NodeList": "nodes"}[list_kind]
    before = copy.deepcopy(objects[key])
    doc = as_list(kind, objects[key], 4711)
    assert (doc["apiVersion"], doc["kind"]) == (api_version, list_kind)
    assert doc["metadata"] == {"resourceVersion": "4711"}
    assert all("kind" not in item and "apiVersion" not in item for item in doc["items"])
    assert objects[key] == before  # inputs untouched
    parsed = read(doc, klass)
    assert parsed.metadata.resource_version == "4711"
    assert [i.metadata.name for i in parsed.items] == [o["metadata"]["name"] for o in objects[key]]


def test_as_list_page_and_errors(scenario):
    doc = as_list("pods", cluster_objects(scenario)["pods"][:2], "10", continue_token="abc",
                  remaining_item_count=3)
    assert doc["metadata"] == {"resourceVersion": "10", "continue": "abc", "remainingItemCount": 3}
    assert read(doc, "V1PodList").metadata.var_continue == "abc"
    with pytest.raises(ValueError, match="kind must be one of Service, EndpointSlice, Pod, Node"):
        as_list("Deployment", [], "1")


def test_all_lists_exactly_the_public_names():
    import inspect

    import npanalytics.lab.k8s_objects as module

    defined = {
        name for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
        and getattr(value, "__module__", module.__name__) == module.__name__
    }
    assert set(module.__all__) == defined
    assert len(module.__all__) == len(set(module.__all__))


def test_the_kubernetes_client_lists_them_from_a_fake_api_server(scenario):
    import http.server
    import threading

    objects = cluster_objects(scenario)
    routes = {
        "/api/v1/services": as_list("services", objects["services"], "101"),
        "/apis/discovery.k8s.io/v1/endpointslices": as_list("endpointslices", objects["endpointslices"], "101"),
        "/api/v1/pods": as_list("pods", objects["pods"], "101"),
        "/api/v1/nodes": as_list("nodes", objects["nodes"], "101"),
    }
    requested = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            requested.append(path)
            body = json.dumps(routes[path]).encode() if path in routes else b"{}"
            self.send_response(200 if path in routes else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        api = kubernetes.client.ApiClient(config)
        core = kubernetes.client.CoreV1Api(api)
        discovery = kubernetes.client.DiscoveryV1Api(api)
        services = core.list_service_for_all_namespaces(_request_timeout=10)
        slices = discovery.list_endpoint_slice_for_all_namespaces(_request_timeout=10)
        pods = core.list_pod_for_all_namespaces(_request_timeout=10)
        nodes = core.list_node(_request_timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert requested == list(routes)
    assert services.metadata.resource_version == "101"
    assert [(s.metadata.namespace, s.metadata.name, s.spec.ports[0].node_port) for s in services.items] == [
        ("default", "web", 30080), ("shop", "api", 30443), ("default", "nothing", 30081)]
    web = next(s for s in slices.items if s.metadata.labels["kubernetes.io/service-name"] == "web")
    assert sorted((e.target_ref.name, e.conditions.ready) for e in web.endpoints) == [
        ("web-1", True), ("web-2", False), ("web-3", True), ("web-4", False)]
    assert [p.metadata.name for p in pods.items] == ["web-1", "web-2", "web-3", "web-4", "api-1"]
    assert [n.spec.pod_cidr for n in nodes.items] == [scenario.addresses().pod_cidrs[n.name] for n in scenario.nodes]
