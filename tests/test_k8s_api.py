"""get_endpoint_snapshot / watch_endpoints end to end: the real kubernetes client against the lab's API server.

The server (:mod:`npanalytics.lab.apiserver`) serves the objects of a lab scenario over real HTTP on
loopback; expectations are written from the scenario itself, not from the collector's code.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from npanalytics import CollectorError, ParseError, get_endpoint_snapshot, read_k8s_objects, watch_endpoints
from npanalytics.collectors.k8s import read_endpoint_watch_log
from npanalytics.lab.apiserver import LabApiServer, kubeconfig_dict
from npanalytics.lab.k8s_objects import cluster_objects
from npanalytics.lab.scenario import scenario_from_dict
from npanalytics.schemas import validate_frame

from conftest import IN_CI
from prom_server import Answer, FakePrometheus, free_port

if IN_CI:
    import kubernetes  # noqa: F401 - CI installs the k8s extra: a missing client fails, never skips
else:
    pytest.importorskip("kubernetes")

DATA = Path(__file__).parent / "data" / "k8s"
TOKEN = "npa-test-token-3f9c1d7e5b"


def _dumps_module():
    spec = importlib.util.spec_from_file_location("make_dumps", DATA / "make_dumps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCENARIO = _dumps_module().SCENARIO


@pytest.fixture
def scenario():
    return scenario_from_dict(SCENARIO)


@pytest.fixture
def server(scenario, tmp_path):
    with LabApiServer(scenario, token=TOKEN) as srv:
        srv.kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
        yield srv


def big_scenario(pods_per_node=200, nodes=5):
    return scenario_from_dict({
        "name": "big",
        "nodes": [{"name": f"node-{i}"} for i in range(nodes)],
        "pods": [{"name": f"web-{i}-{j}", "node": f"node-{i}", "labels": {"app": "web"}}
                 for i in range(nodes) for j in range(pods_per_node)],
        "services": [{"name": "web", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}],
        "traffic": {"requests": 10},
    })


# --- snapshot ---------------------------------------------------------------------------------

def test_snapshot_holds_the_scenarios_objects(server):
    snap = get_endpoint_snapshot(kubeconfig=server.kubeconfig)
    for attr, kind in (("services", "k8s_services"), ("endpoints", "k8s_endpoints"),
                       ("pods", "k8s_pods"), ("nodes", "k8s_nodes")):
        validate_frame(getattr(snap, attr), kind)
    services = snap.services.set_index("service_port_name")
    assert sorted(services.index) == ["default/nothing", "default/web:http", "default/web:metrics", "shop/api"]
    web = services.loc["default/web:http"]
    assert (web["type"], web["port"], web["target_port"], web["node_port"]) == ("NodePort", 80, "8080", 30080)
    assert (web["external_traffic_policy"], web["session_affinity"], web["session_affinity_timeout_seconds"]) == (
        "Local", "ClientIP", 600)
    assert services.loc["shop/api", "internal_traffic_policy"] == "Local"
    assert pd.isna(services.loc["shop/api", "session_affinity_timeout_seconds"])
    assert set(snap.services["source"]) == {"api"}

    eps = snap.endpoints
    assert set(eps["source"]) == {"endpointslice"}
    # web-1..web-4 on both ports of web; api-1 on api; "nothing" has an empty slice
    web_rows = eps[eps["service"] == "web"]
    assert sorted(web_rows["target_pod"].unique()) == ["web-1", "web-2", "web-3", "web-4"]
    assert sorted(set(web_rows["port_name"])) == ["http", "metrics"] and len(web_rows) == 8
    by_pod = web_rows[web_rows["port_name"] == "http"].set_index("target_pod")
    assert tuple(by_pod.loc["web-2", ["ready", "serving", "terminating"]]) == (False, False, False)
    assert tuple(by_pod.loc["web-4", ["ready", "serving", "terminating"]]) == (False, True, True)
    assert tuple(by_pod.loc["web-1", ["ready", "serving", "terminating", "node", "zone"]]) == (
        True, True, False, "node-a", "zone-a")
    assert list(eps.loc[eps["service"] == "api", "port"]) == [8443]
    assert not (eps["service"] == "nothing").any()

    pods = snap.pods.set_index("pod")
    assert sorted(pods.index) == ["api-1", "web-1", "web-2", "web-3", "web-4"]
    assert pods.loc["api-1", "namespace"] == "shop" and pods.loc["web-4", "terminating"]
    assert pods.loc["web-1", "owner_kind"] == "ReplicaSet" and pods.loc["web-1", "phase"] == "Running"
    nodes = snap.nodes.set_index("node")
    assert nodes.loc["node-a", "zone"] == "zone-a" and pd.isna(nodes.loc["node-c", "zone"])
    assert nodes["ready"].all()

    assert snap.server == server.url and snap.taken_at.tz is not None
    assert set(snap.resource_versions) == {"services", "endpointslices", "pods", "nodes"}
    assert set(snap.resource_versions.values()) == {server.resource_version}
    lists = [r for r in server.requests if r.verb == "list"]
    assert [r.resource for r in lists] == ["services", "endpointslices", "pods", "nodes"]
    assert all(r.authorized and r.query["limit"] == "500" and r.status == 200 for r in lists)


def test_raw_pages_read_back_into_the_same_rows(server):
    snap = get_endpoint_snapshot(kubeconfig=server.kubeconfig, limit=2)
    assert sorted(snap.raw) == [
        "endpointslices/page-0001.json", "endpointslices/page-0002.json",
        "nodes/page-0001.json", "nodes/page-0002.json",
        "pods/page-0001.json", "pods/page-0002.json", "pods/page-0003.json",
        "services/page-0001.json", "services/page-0002.json",
    ]
    pods = pd.concat([read_k8s_objects(snap.raw[f"pods/page-000{k}.json"]).pods for k in (1, 2, 3)],
                     ignore_index=True)
    pd.testing.assert_frame_equal(pods.astype(str), snap.pods.astype(str))
    services = pd.concat([read_k8s_objects(snap.raw[f"services/page-000{k}.json"], origin="api").services
                          for k in (1, 2)], ignore_index=True)
    pd.testing.assert_frame_equal(services.astype(str), snap.services.astype(str))
    with pytest.raises(ValueError, match="origin must be 'file' or 'api'"):
        read_k8s_objects(snap.raw["services/page-0001.json"], origin="cluster")
    first = json.loads(snap.raw["pods/page-0001.json"])
    assert first["kind"] == "PodList" and len(first["items"]) == 2 and first["metadata"]["continue"]


def test_pagination_across_many_pages(tmp_path):
    with LabApiServer(big_scenario()) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        snap = get_endpoint_snapshot(kubeconfig=config, limit=50)
    assert len(snap.pods) == 1000 and snap.pods["pod"].is_unique
    assert len(snap.endpoints) == 1000 and snap.endpoints["address"].is_unique
    pod_lists = [r for r in srv.requests if r.resource == "pods"]
    assert len(pod_lists) == 20
    assert "continue" not in pod_lists[0].query and all("continue" in r.query for r in pod_lists[1:])
    versions = {json.loads(snap.raw[f"pods/page-{k:04d}.json"])["metadata"]["resourceVersion"]
                for k in range(1, 21)}
    assert versions == {snap.resource_versions["pods"]}
    # 1000 endpoints make 10 slices of 100 (the controller's limit): one page of slices
    assert snap.endpoints["slice"].nunique() == 10


def test_pages_shorter_than_the_limit_are_followed(tmp_path):
    with LabApiServer(big_scenario(pods_per_node=50, nodes=2)) as srv:
        srv.max_page_items = 7  # the server sends fewer items than asked
        snap = get_endpoint_snapshot(kubeconfig=srv.write_kubeconfig(tmp_path / "kubeconfig"), limit=50)
    assert len(snap.pods) == 100 and snap.pods["pod"].is_unique
    assert sum(r.resource == "pods" for r in srv.requests) == 15  # ceil(100 / 7)
    assert all(r.query["limit"] == "50" for r in srv.requests)


def test_expired_continue_token_lists_again_from_scratch(tmp_path):
    scenario = big_scenario(pods_per_node=100, nodes=2)
    with LabApiServer(scenario) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        fired = []

        def mid_list(record):
            # on the 4th page of pods: a pod turns not ready, then the history is compacted
            if record.resource == "pods" and "continue" in record.query and not fired:
                pages = sum(r.resource == "pods" for r in srv.requests)
                if pages == 3:
                    fired.append(srv.set_pod_states({"web-1-7": {"ready": False}}))
                    srv.compact()

        srv.before_request = mid_list
        snap = get_endpoint_snapshot(kubeconfig=config, limit=20)
    assert fired, "the hook did not run"
    pod_lists = [r for r in srv.requests if r.resource == "pods"]
    statuses = [r.status for r in pod_lists]
    assert statuses[:4] == [200, 200, 200, 410]
    assert "continue" not in pod_lists[4].query  # a fresh list, not the 410's token
    assert len(pod_lists) == 4 + 10
    assert len(snap.pods) == 200 and snap.pods["pod"].is_unique
    # the whole list is from the new snapshot: the changed pod is not ready
    assert snap.resource_versions["pods"] == str(fired[0])
    assert snap.pods.set_index("pod").loc["web-1-7", "ready"] == False  # noqa: E712
    assert any("expired" in n and "pods" in n for n in snap.notes)


def test_named_context_and_unknown_context(server, tmp_path, monkeypatch):
    config = kubeconfig_dict(f"http://127.0.0.1:{free_port()}", token=TOKEN, context="dead")
    live = kubeconfig_dict(server.url, token=TOKEN, context="lab")
    for key in ("clusters", "users", "contexts"):
        config[key] += live[key]
    path = tmp_path / "two-contexts"
    path.write_text(json.dumps(config))
    snap = get_endpoint_snapshot(kubeconfig=path, context="lab")
    assert len(snap.nodes) == 3
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(get_endpoint_snapshot(kubeconfig="~/two-contexts", context="lab").nodes) == 3
    with pytest.raises(CollectorError, match=r"cannot reach the Kubernetes API server at http://127\.0\.0\.1"):
        get_endpoint_snapshot(kubeconfig=path)  # current context: dead
    with pytest.raises(CollectorError, match=r"two-contexts: cannot use it .*its contexts: dead, lab") as info:
        get_endpoint_snapshot(kubeconfig=path, context="nope")
    assert TOKEN not in str(info.value)
    with pytest.raises(CollectorError, match=r"no-such-file: no such kubeconfig file"):
        get_endpoint_snapshot(kubeconfig=tmp_path / "no-such-file")


def test_namespace_and_label_selector(scenario, tmp_path):
    objects = cluster_objects(scenario, include_endpoints=True)
    objects["services"][0]["metadata"]["labels"] = {"tier": "front"}  # web
    with LabApiServer(objects) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        shop = get_endpoint_snapshot(kubeconfig=config, namespace="shop")
        front = get_endpoint_snapshot(kubeconfig=config, label_selector="tier=front")
    assert list(shop.services["service"]) == ["api"] and list(shop.endpoints["service"]) == ["api"]
    assert list(shop.pods["pod"]) == ["api-1"] and len(shop.nodes) == 3
    paths = {r.path for r in srv.requests[:4]}
    assert paths == {"/api/v1/namespaces/shop/services", "/api/v1/namespaces/shop/pods", "/api/v1/nodes",
                     "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"}
    assert set(front.services["service"]) == {"web"} and set(front.endpoints["service"]) == {"web"}
    assert srv.requests[4].query["labelSelector"] == "tier=front"
    assert any("kept 1 of 3 endpointslices" in n for n in front.notes)


def test_endpoints_fallback_on_servers_without_endpointslices(scenario, tmp_path):
    with LabApiServer(scenario, endpointslices=False) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        snap = get_endpoint_snapshot(kubeconfig=config)
    assert [(r.resource, r.status) for r in srv.requests][:3] == [
        ("services", 200), ("endpointslices", 404), ("endpoints", 200)]
    assert any("does not serve EndpointSlices" in n and "legacy v1 Endpoints" in n for n in snap.notes)
    eps = snap.endpoints[snap.endpoints["port_name"] == "http"].set_index("target_pod")
    assert set(snap.endpoints["source"]) == {"endpoints"}
    # terminating web-4 is left out by the Endpoints controller; not-ready web-2 is known only as not ready
    assert sorted(eps.index) == ["web-1", "web-2", "web-3"]
    assert eps.loc["web-1", "ready"] and eps.loc["web-1", "serving"]
    assert eps.loc["web-2", "ready"] == False and pd.isna(eps.loc["web-2", "serving"])  # noqa: E712
    assert snap.resource_versions.keys() == {"services", "endpoints", "pods", "nodes"}


# --- errors -----------------------------------------------------------------------------------

def test_forbidden_names_the_verb_and_resource(scenario, tmp_path):
    with LabApiServer(scenario, token=TOKEN, forbidden=[("list", "pods")]) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(CollectorError, match=r"403 Forbidden: the user may not list pods: pods is forbidden") as info:
            get_endpoint_snapshot(kubeconfig=config)
    assert info.value.status == 403 and srv.url in str(info.value)
    with LabApiServer(scenario, forbidden=[("watch", "endpointslices")]) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        with pytest.raises(CollectorError, match=r"may not watch endpointslices\.discovery\.k8s\.io"):
            watch_endpoints(1, kubeconfig=config)


def test_unauthorized(scenario, tmp_path):
    with LabApiServer(scenario, token=TOKEN) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig", token="wrong-token-81d3")
        with pytest.raises(CollectorError, match=r"401 Unauthorized to list services") as info:
            get_endpoint_snapshot(kubeconfig=config)
    assert "wrong-token-81d3" not in str(info.value) and TOKEN not in str(info.value)
    assert srv.requests[0].authorized and srv.requests[0].status == 401


def test_unreachable_server_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig_dict(url, token=TOKEN)))
    with pytest.raises(CollectorError, match=rf"cannot reach the Kubernetes API server at {url} to list services") as info:
        get_endpoint_snapshot(kubeconfig=path, request_timeout=5)
    assert TOKEN not in str(info.value)


def test_in_cluster_config_when_there_is_no_kubeconfig(tmp_path, monkeypatch):
    import kubernetes.config.incluster_config as incluster

    port = free_port()
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
    # the service account's https endpoint is used (nothing listens there)
    with pytest.raises(CollectorError, match=rf"cannot reach the Kubernetes API server at https://127\.0\.0\.1:{port}") as info:
        get_endpoint_snapshot(request_timeout=5)
    assert TOKEN not in str(info.value)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(CollectorError, match=r"the default kubeconfig .*: cannot use it"):
        get_endpoint_snapshot()


def test_a_given_client_is_used_and_left_open(server):
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
    first = get_endpoint_snapshot(client, namespace="shop")
    churn = watch_endpoints(0.3, client)
    second = get_endpoint_snapshot(client)  # still usable: the caller owns it
    client.close()
    assert list(first.services["service"]) == ["api"] and len(second.pods) == 5 and churn.empty
    assert all(r.authorized for r in server.requests)


def test_a_response_that_is_not_json_is_a_parse_error(tmp_path):
    html = b"<html>\n<body>login required</body>\n</html>\n"  # a misconfigured proxy answering HTML
    with FakePrometheus(lambda seen: Answer(body=html)) as proxy:  # prom_server's scripted HTTP server
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(kubeconfig_dict(proxy.url)))
        with pytest.raises(ParseError, match=r"list services page 1:1: expected a JSON document from the "
                                             r"Kubernetes API, got '<html>'"):
            get_endpoint_snapshot(kubeconfig=path)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="limit must be a positive int"):
        get_endpoint_snapshot(kubeconfig="x", limit=0)
    with pytest.raises(ValueError, match="duration must be a positive number"):
        watch_endpoints(0, kubeconfig="x")
    with pytest.raises(ValueError, match="either client or kubeconfig"):
        get_endpoint_snapshot(client=object(), kubeconfig="x")


def test_secrets_reach_no_frame_raw_note_or_log(scenario, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = "-----BEGIN PRIVATE KEY-----npa-fake-client-key-7c2e"
    with LabApiServer(scenario, token=TOKEN) as srv:
        config = kubeconfig_dict(srv.url, token=TOKEN)
        config["users"][0]["user"]["client-key-data"] = base64.b64encode(key.encode()).decode()
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(config))
        snap = get_endpoint_snapshot(kubeconfig=path, limit=2)
        srv.before_request = lambda record: record.verb == "watch" and srv.events_sent == 0 and \
            srv.set_pod_states({"web-1": {"ready": False}})
        churn = watch_endpoints(0.8, kubeconfig=path)
        srv.before_request = None
        srv.forbidden = {("list", "nodes")}
        with pytest.raises(CollectorError) as info:
            get_endpoint_snapshot(kubeconfig=path)
    assert len(churn) == 1 and len(snap.pods) == 5
    texts = [caplog.text, str(info.value), repr(info.value), *snap.notes, *churn.attrs["notes"]]
    texts += [page.decode() for page in snap.raw.values()]
    for frame in [*snap.frames().values(), churn]:
        texts.append(frame.astype(str).to_csv())
    for secret in (TOKEN, key, base64.b64encode(key.encode()).decode()):
        assert not any(secret in t for t in texts)
    assert "127.0.0.1" in caplog.text  # the logs were captured (urllib3 logs each request)


# --- watch ------------------------------------------------------------------------------------

def _wait_for_watch(srv, count=1, timeout=5.0):
    end = time.monotonic() + timeout
    while srv.open_watches() < count:
        assert time.monotonic() < end, "the collector did not open a watch"
        time.sleep(0.01)


def _wait_for_events(srv, count, timeout=5.0):
    """Until ``count`` change events were written to watch streams (so the collector has them)."""
    end = time.monotonic() + timeout
    while srv.events_sent < count:
        assert time.monotonic() < end, "the watch did not deliver the change"
        time.sleep(0.01)


def _in_thread(func, *args, **kwargs):
    result = {}

    def run():
        try:
            result["value"] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _finish(thread, result):
    thread.join(timeout=15)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_watch_records_changes_and_resumes_after_a_dropped_connection(server, tmp_path):
    address = {p: None for p in ("web-1", "web-3", "api-1")}
    snap = get_endpoint_snapshot(kubeconfig=server.kubeconfig)
    for pod in address:
        address[pod] = snap.endpoints.set_index("target_pod").loc[pod, "address"].iloc[0] \
            if pod.startswith("web") else snap.endpoints.set_index("target_pod").loc[pod, "address"]
    log = tmp_path / "watch.jsonl"
    thread, result = _in_thread(watch_endpoints, 2.0, kubeconfig=server.kubeconfig, record_to=log)
    _wait_for_watch(server)
    server.set_pod_states({"web-1": {"ready": False}})                       # A: changed
    _wait_for_events(server, 1)
    assert server.drop_watches() == 1
    server.set_pod_states({"web-1": {"ready": False}, "web-3": {"present": False}})  # B: removed, while cut
    _wait_for_watch(server)
    server.set_pod_states({"web-1": {"ready": False}, "web-3": {"present": False},
                           "api-1": {"ready": False, "serving": False, "terminating": True}})  # C
    churn = _finish(thread, result)

    validate_frame(churn, "endpoint_churn")
    seen = list(zip(churn["address"], churn["event"], churn["ready"], churn["serving"], churn["terminating"]))
    assert seen == [
        (address["web-1"], "changed", False, True, False),
        (address["web-3"], "removed", pd.NA, pd.NA, pd.NA),
        (address["api-1"], "changed", False, False, True),
    ]
    assert list(churn["service"]) == ["web", "web", "api"] and churn["timestamp"].is_monotonic_increasing
    watches = [r for r in server.requests if r.verb == "watch"]
    assert len(watches) == 2
    assert watches[0].query["resourceVersion"] == snap.resource_versions["endpointslices"]
    # resumed from the version of the last change seen before the cut: B is not lost, A not repeated
    assert watches[1].query["resourceVersion"] == churn["resource_version"].iloc[0]
    assert any("dropped" in n and "resumed" in n for n in churn.attrs["notes"])
    assert all(w.query["allowWatchBookmarks"] == "true" and int(w.query["timeoutSeconds"]) <= 2 for w in watches)
    pd.testing.assert_frame_equal(read_endpoint_watch_log(log), churn)


def test_watch_log_errors_name_the_line(tmp_path):
    path = tmp_path / "watch.jsonl"
    path.write_text('{"observed": "2026-01-01T00:00:00Z", "type": "LIST", "resource": "endpointslices",'
                    ' "resourceVersion": "1", "items": []}\n{"observed": "2026-01-01T00:00:01Z", "type": "MODIFIED"}\n')
    with pytest.raises(ParseError, match=r"watch\.jsonl:2: expected a watch log entry"):
        read_endpoint_watch_log(path)


def test_watch_goes_on_from_the_bookmark_after_a_stream_ends(scenario, tmp_path):
    objects = cluster_objects(scenario)
    with LabApiServer(objects) as srv:
        srv.max_watch_seconds = 0.8  # the server ends each stream early
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        thread, result = _in_thread(watch_endpoints, 2.0, kubeconfig=config)
        _wait_for_watch(srv)
        objects["pods"][0]["metadata"]["labels"]["extra"] = "yes"  # a pod changes, no slice does
        bumped = srv.set_objects({"pods": objects["pods"]})
        churn = _finish(thread, result)
    watches = [r for r in srv.requests if r.verb == "watch"]
    assert len(watches) >= 3 and churn.empty
    # the first stream's closing BOOKMARK carried the newer version; the next watch starts there
    assert watches[1].query["resourceVersion"] == str(bumped)
    assert int(watches[0].query["resourceVersion"]) < bumped
    assert churn.attrs["resource_version"] == str(bumped) and churn.attrs["notes"] == []


def test_watch_relists_after_410(server, tmp_path):
    log = tmp_path / "watch.jsonl"
    thread, result = _in_thread(watch_endpoints, 1.5, kubeconfig=server.kubeconfig, record_to=log)
    _wait_for_watch(server)
    server.set_pod_states({"web-2": {"ready": True}})  # A, seen by the watch
    _wait_for_events(server, 1)

    def while_away(record):
        if record.verb == "watch":
            server.before_request = None
            server.set_pod_states({"web-2": {"ready": True}, "web-1": {"present": False}})  # B, then compaction
            server.compact()

    server.before_request = while_away
    server.drop_watches()
    churn = _finish(thread, result)
    assert list(churn["event"]) == ["changed", "removed"]
    assert churn["ready"].iloc[0] == True  # noqa: E712 - web-2 became ready (A)
    assert churn["timestamp"].iloc[1] > churn["timestamp"].iloc[0]
    requests = [(r.verb, r.resource) for r in server.requests]
    # list, watch, (drop) watch -> 410 ERROR event, relist, watch from the relist's version
    assert requests == [("list", "endpointslices"), ("watch", "endpointslices"), ("watch", "endpointslices"),
                        ("list", "endpointslices"), ("watch", "endpointslices")]
    relist = server.requests[3]
    assert "continue" not in relist.query and server.requests[2].status == 200
    assert server.requests[-1].query["resourceVersion"] == churn["resource_version"].iloc[1]
    assert any("410" in n and "listed the slices again" in n for n in churn.attrs["notes"])
    assert [json.loads(line)["type"] for line in log.read_text().splitlines()] == ["LIST", "MODIFIED", "RELIST"]
    pd.testing.assert_frame_equal(read_endpoint_watch_log(log), churn)


def test_watch_relists_after_a_410_response(server):
    server.watch_expired_status = True  # 410 as the HTTP status of the watch, not as an ERROR event
    thread, result = _in_thread(watch_endpoints, 1.0, kubeconfig=server.kubeconfig)
    _wait_for_watch(server)

    def while_away(record):
        if record.verb == "watch":
            server.before_request = None
            server.set_pod_states({"web-3": {"present": False}})
            server.compact()

    server.before_request = while_away
    server.drop_watches()
    churn = _finish(thread, result)
    assert list(churn["event"]) == ["removed"]
    assert [(r.verb, r.status) for r in server.requests] == [
        ("list", 200), ("watch", 200), ("watch", 410), ("list", 200), ("watch", 200)]


def test_watch_gives_up_after_too_many_drops(server):
    thread, result = _in_thread(watch_endpoints, 10.0, kubeconfig=server.kubeconfig, max_reconnects=1)
    for _ in range(2):
        _wait_for_watch(server)
        server.drop_watches()
    with pytest.raises(CollectorError, match=r"dropped 2 times \(more than max_reconnects=1\)"):
        _finish(thread, result)


def test_watch_falls_back_to_endpoints(scenario, tmp_path):
    with LabApiServer(scenario, endpointslices=False) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        thread, result = _in_thread(watch_endpoints, 1.0, kubeconfig=config)
        _wait_for_watch(srv)
        srv.set_pod_states({"web-3": {"ready": False}})
        churn = _finish(thread, result)
    assert list(churn["event"]) == ["changed"] and list(churn["slice"]) == ["web"]
    assert churn["ready"].iloc[0] == False  # noqa: E712
    assert {r.resource for r in srv.requests if r.verb == "watch"} == {"endpoints"}
    assert any("legacy v1 Endpoints" in n for n in churn.attrs["notes"])
