"""The lab's read-only Kubernetes API server, spoken to with plain HTTP (urllib), and its CLI."""

from __future__ import annotations

import base64
import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from npanalytics.lab.apiserver import LabApiServer, parse_label_selector
from npanalytics.lab.cli import main as lab_main
from npanalytics.lab.scenario import scenario_from_dict

SCENARIO = {
    "name": "api",
    "nodes": [{"name": "node-a", "zone": "zone-a"}, {"name": "node-b"}],
    "pods": [{"name": f"web-{i}", "node": "node-a" if i % 2 else "node-b", "labels": {"app": "web"}}
             for i in range(1, 8)],
    "services": [{"name": "web", "selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}],
    "traffic": {"requests": 10},
}


@pytest.fixture
def server():
    with LabApiServer(scenario_from_dict(SCENARIO), token="t0ken") as srv:
        yield srv


def get(server, path, token="t0ken"):
    request = urllib.request.Request(server.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_list_pages_share_one_snapshot(server):
    status, headers, body = get(server, "/api/v1/pods?limit=3")
    first = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert first["kind"] == "PodList" and first["apiVersion"] == "v1"
    assert [p["metadata"]["name"] for p in first["items"]] == ["web-1", "web-2", "web-3"]
    assert "kind" not in first["items"][0]  # items of a list response carry no kind
    assert first["metadata"]["remainingItemCount"] == 4
    server.set_pod_states({"web-5": {"ready": False}})  # a change between pages
    token = first["metadata"]["continue"]
    _, _, body = get(server, f"/api/v1/pods?limit=3&continue={token}")
    second = json.loads(body)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    web5 = next(p for p in second["items"] if p["metadata"]["name"] == "web-5")
    ready = next(c["status"] for c in web5["status"]["conditions"] if c["type"] == "Ready")
    assert ready == "True"  # the page comes from the first page's snapshot
    assert int(server.resource_version) > int(first["metadata"]["resourceVersion"])
    # resourceVersions are revisions: the changed pod (and slice) carry the newest
    _, _, body = get(server, "/api/v1/pods")
    versions = {p["metadata"]["name"]: int(p["metadata"]["resourceVersion"]) for p in json.loads(body)["items"]}
    assert max(versions, key=versions.get) == "web-5"


def test_expired_continue_token_is_a_410_status(server):
    _, _, body = get(server, "/api/v1/pods?limit=2")
    token = json.loads(body)["metadata"]["continue"]
    server.set_pod_states({"web-1": {"ready": False}})
    server.compact()
    status, _, body = get(server, f"/api/v1/pods?limit=2&continue={token}")
    expired = json.loads(body)
    assert status == 410
    assert (expired["kind"], expired["status"], expired["reason"], expired["code"]) == ("Status", "Failure", "Expired", 410)
    fresh = json.loads(base64.urlsafe_b64decode(expired["metadata"]["continue"]))
    assert fresh["rv"] == int(server.resource_version)  # the inconsistent way on, offered as the API does
    assert get(server, "/api/v1/pods?continue=garbage")[0] == 400


def test_auth_forbidden_not_found_and_read_only(server):
    status, _, body = get(server, "/api/v1/services", token=None)
    assert status == 401 and json.loads(body)["reason"] == "Unauthorized"
    assert get(server, "/api/v1/services", token="other")[0] == 401
    server.forbidden = {("list", "nodes")}
    status, _, body = get(server, "/api/v1/nodes")
    denied = json.loads(body)
    assert status == 403 and denied["reason"] == "Forbidden" and denied["details"] == {"kind": "nodes"}
    assert 'cannot list resource "nodes" in API group "" at the cluster scope' in denied["message"]
    assert get(server, "/api/v1/namespaces/default/nodes")[0] == 404  # nodes are not namespaced
    assert get(server, "/api/v1/configmaps")[0] == 404
    server.endpointslices = False
    status, _, body = get(server, "/apis/discovery.k8s.io/v1/endpointslices")
    assert status == 404 and json.loads(body)["reason"] == "NotFound"
    request = urllib.request.Request(server.url + "/api/v1/pods", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405
    assert [r.status for r in server.requests] == [401, 401, 403, 404, 404, 404, 405]
    assert not server.requests[0].authorized and server.requests[2].authorized


def test_watch_streams_events_then_a_bookmark(server):
    version = server.resource_version
    threading.Timer(0.2, server.set_pod_states, args=({"web-2": {"present": False}},)).start()
    status, headers, body = get(server, f"/api/v1/pods?watch=1&resourceVersion={version}"
                                        "&timeoutSeconds=1&allowWatchBookmarks=true")
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert [e["type"] for e in events] == ["DELETED", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["name"] == "web-2"
    assert events[1]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": server.resource_version}}
    # from a compacted version: an ERROR event with the 410 Status
    server.compact()
    _, _, body = get(server, f"/api/v1/pods?watch=true&resourceVersion={version}&timeoutSeconds=1")
    (event,) = [json.loads(line) for line in body.decode().splitlines()]
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    # without a version: the current state as ADDED events
    _, _, body = get(server, "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1&labelSelector=app%3Dweb")
    assert [json.loads(line)["type"] for line in body.decode().splitlines()] == ["ADDED"] * 6


@pytest.mark.parametrize("selector, labels, expected", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("app", {"app": "x"}, True),
    ("!app", {"app": "x"}, False),
    ("tier in (a, b),app notin (x)", {"tier": "b", "app": "y"}, True),
    ("tier in (a,b)", {}, False),
    ("", {}, True),
])
def test_label_selectors(selector, labels, expected):
    assert parse_label_selector(selector)(labels) is expected


def test_bad_label_selector_is_a_400(server):
    assert get(server, "/api/v1/pods?labelSelector=a%20%3D%3D%3D%20b")[0] == 400
    assert get(server, "/api/v1/pods?watch=true&timeoutSeconds=soon")[0] == 400
    assert get(server, "/api/v1/pods?watch=true&resourceVersion=abc")[0] == 400
    assert [(r.verb, r.status) for r in server.requests] == [("list", 400), ("watch", 400), ("watch", 400)]
    with pytest.raises(ValueError, match="unable to parse requirement"):
        parse_label_selector("a === b")


def test_cli_serve_api(tmp_path, need):
    from npanalytics import get_endpoint_snapshot

    need(importlib.util.find_spec("kubernetes"), "needs the kubernetes client (pip install 'npanalytics[k8s]')")

    path = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "npanalytics.lab.cli", "serve-api", "two-nodes-local",
               "--kubeconfig", str(path), "--token", "cli-token", "--max-seconds", "60"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < end, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.02)
        snap = get_endpoint_snapshot(kubeconfig=path)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert len(snap.pods) == 3 and "cli-token" in path.read_text()
    assert "serving the Kubernetes objects of two-nodes-local at http://127.0.0.1:" in out
    assert proc.returncode == 130 and "interrupted" in err
    assert lab_main(["serve-api", "two-nodes-local", "--kubeconfig", str(path), "--max-seconds", "0"]) == 2
