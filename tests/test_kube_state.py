"""kube_state_frames on recorded lab scrapes and on kube-state-metrics' label variants."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from npanalytics import kube_state_frames, read_k8s_objects, read_metrics_text
from npanalytics.lab.metrics import kube_state_metrics_text
from npanalytics.lab.scenario import scenario_from_dict
from npanalytics.schemas import validate_frame

DATA = Path(__file__).parent / "data" / "metrics"
DATASETS = Path(__file__).parent.parent / "datasets"
RECORDED = sorted(p.parent.parent.parent.name for p in DATASETS.glob("*/raw/metrics/kube-state-metrics.txt"))
AT = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
KINDS = {"services": "k8s_services", "endpoints": "k8s_endpoints", "pods": "k8s_pods", "nodes": "k8s_nodes"}


def read(path: Path):
    return kube_state_frames(read_metrics_text(path, at=AT))


def boolean(value):
    return None if pd.isna(value) else bool(value)


def text(value):
    return None if pd.isna(value) else str(value)


def check_kinds(state):
    for name, kind in KINDS.items():
        validate_frame(state[name], kind)
    assert (state.services["source"] == "kube-state-metrics").all()


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_endpoints_equal_the_api_objects(name):
    raw = DATASETS / name / "raw"
    state = read(raw / "metrics" / "kube-state-metrics.txt")
    check_kinds(state)
    assert state.variant == "endpointslice"
    slices = json.loads((raw / "k8s" / "endpointslices.json").read_text())["items"]
    expected = set()
    for item in slices:
        service = item["metadata"]["labels"]["kubernetes.io/service-name"]
        for port in item.get("ports") or []:
            for endpoint in item["endpoints"]:
                cond = endpoint["conditions"]
                for address in endpoint["addresses"]:
                    expected.add((item["metadata"]["namespace"], service, item["metadata"]["name"], port["name"],
                                  port["protocol"].lower(), port["port"], address, cond.get("ready"),
                                  cond.get("serving"), cond.get("terminating"), endpoint.get("nodeName"),
                                  endpoint.get("zone"), endpoint["targetRef"]["name"]))
    got = {(r["namespace"], r["service"], r["slice"], r["port_name"], r["protocol"], int(r["port"]), r["address"],
            boolean(r["ready"]), boolean(r["serving"]), boolean(r["terminating"]), text(r["node"]), text(r["zone"]),
            r["target_pod"]) for r in state.endpoints.to_dict("records")}
    assert got == expected and len(state.endpoints) == len(expected)
    per_service = state.endpoints.groupby("service", observed=True)["address"].nunique().to_dict()
    assert per_service == {item["metadata"]["labels"]["kubernetes.io/service-name"]: len(item["endpoints"])
                           for item in slices}


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_frames_agree_with_the_api_reader(name):
    # the k8s collector reads the same moment from the API objects: the columns KSM knows must agree
    raw = DATASETS / name / "raw"
    api = read_k8s_objects("".join((raw / "k8s" / f"{kind}.json").read_text()
                                   for kind in ("services", "endpointslices", "pods", "nodes")))
    state = read(raw / "metrics" / "kube-state-metrics.txt")
    columns = {
        "endpoints": ["namespace", "service", "slice", "port_name", "protocol", "port", "address", "ready",
                      "serving", "terminating", "node", "zone", "target_pod", "service_port_name"],
        "pods": ["namespace", "pod", "node", "host_ip", "pod_ip", "phase", "ready", "owner_kind", "owner_name"],
        "nodes": ["node", "internal_ip", "zone", "region", "ready", "pod_cidr"],
        "services": ["namespace", "service", "type", "cluster_ip", "external_traffic_policy"],
    }
    for frame, cols in columns.items():
        ours = state[frame][cols].astype(object).where(state[frame][cols].notna(), None)
        theirs = getattr(api, frame)[cols].drop_duplicates().astype(object)
        theirs = theirs.where(theirs.notna(), None)
        key = lambda f: sorted(map(tuple, f.to_numpy().tolist()), key=str)  # noqa: E731
        assert key(ours) == key(theirs), frame
    # pods join their nodes: a pod's host IP is its node's internal IP
    joined = state.pods.merge(state.nodes, on="node", suffixes=("", "_node"))
    assert len(joined) == len(state.pods)
    assert (joined["host_ip"].astype(str) == joined["internal_ip"].astype(str)).all()


def test_scenario_text_without_slices_reads_the_endpoints_family():
    scenario = scenario_from_dict({
        "name": "ksm", "nodes": [{"name": "node-a", "zone": "z1"}, {"name": "node-b"}],
        "pods": [{"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
                 {"name": "web-2", "node": "node-b", "labels": {"app": "web"}, "ready": False},
                 {"name": "api-1", "node": "node-b", "labels": {"app": "api"}}],
        "services": [{"name": "web", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
                     {"name": "api", "namespace": "shop", "selector": {"app": "api"},
                      "ports": [{"port": 443, "targetPort": 8443, "nodePort": 30443}]}],
        "traffic": {"requests": 10},
    })
    ips = scenario.addresses().pod_ips
    samples = read_metrics_text(kube_state_metrics_text(scenario, include_endpointslices=False), at=AT)
    state = kube_state_frames(samples)
    check_kinds(state)
    assert state.variant == "endpoint_address"
    got = sorted((r["namespace"], r["service"], r["port"], r["address"], r["ready"])
                 for r in state.endpoints.to_dict("records"))
    assert got == sorted([("default", "web", 8080, ips["web-1"], True), ("default", "web", 8080, ips["web-2"], False),
                          ("shop", "api", 8443, ips["api-1"], True)])
    assert state.endpoints["node"].isna().all() and state.endpoints["serving"].isna().all()
    shop = kube_state_frames(samples, namespace="shop")
    assert shop.endpoints["service"].tolist() == ["api"] and shop.pods["pod"].tolist() == ["api-1"]
    assert len(shop.nodes) == 2  # nodes are cluster-scoped


def test_v1_endpoint_counts():
    state = read(DATA / "ksm-v1-endpoint-counts.txt")
    check_kinds(state)
    assert state.variant == "endpoint_counts" and state.endpoints.empty
    assert state.address_counts == {("default", "web"): {"available": 2, "not_ready": 1},
                                    ("kube-system", "kube-dns"): {"available": 4, "not_ready": 0}}
    assert any("before v2.14" in note for note in state.notes)
    services = state.services.set_index("service")
    assert services.loc["web", "type"] == "NodePort" and services.loc["kube-dns", "cluster_ip"] == "10.96.0.10"
    assert services["external_traffic_policy"].isna().all() and services["port"].isna().all()
    pods = state.pods.set_index("pod")
    assert pd.isna(pods.loc["debug", "owner_kind"]) and pd.isna(pods.loc["debug", "owner_name"])  # '<none>'
    assert pods.loc["web-5d8f7c9b6-abcde", "owner_name"] == "web-5d8f7c9b6"
    assert pods["ready"].tolist() == [False, True]
    nodes = state.nodes.set_index("node")
    assert nodes["zone"].tolist() == ["eu-1a", "eu-1b"]  # the deprecated failure-domain label
    assert nodes["internal_ip"].isna().all() and nodes["ready"].isna().all()


def test_v2_13_endpoint_address_with_ports():
    state = read(DATA / "ksm-v2.13-endpoint-address.txt")
    check_kinds(state)
    assert state.variant == "endpoint_address"
    got = sorted((r["service_port_name"], r["protocol"], r["port"], r["address"], r["ready"])
                 for r in state.endpoints.to_dict("records"))
    assert got == [("default/web:dns", "udp", 5353, "10.244.1.5", True),
                   ("default/web:http", "tcp", 8080, "10.244.1.5", True),
                   ("default/web:http", "tcp", 8080, "10.244.2.7", True),
                   ("default/web:http", "tcp", 8080, "10.244.2.8", False)]
    assert state.services["external_traffic_policy"].tolist() == ["Local"]
    assert state.nodes["internal_ip"].tolist() == ["10.0.0.11"]


def test_v2_18_endpointslices():
    state = read(DATA / "ksm-v2.18-endpointslice.txt")
    check_kinds(state)
    assert state.variant == "endpointslice"
    assert any("'endpoint_nodename'" in note for note in state.notes)
    rows = {r["address"]: r for r in state.endpoints.to_dict("records")}
    assert set(rows) == {"10.244.1.5", "10.244.2.7", "10.244.2.8"}
    assert (rows["10.244.2.7"]["ready"], rows["10.244.2.7"]["serving"], rows["10.244.2.7"]["terminating"]) == (
        False, True, True)
    assert rows["10.244.1.5"]["hints"] == "eu-1a" and rows["10.244.2.8"]["hints"] == ""
    assert pd.isna(rows["10.244.2.8"]["zone"]) and rows["10.244.2.8"]["node"] == "worker-2"
    assert {r["service_port_name"] for r in rows.values()} == {"default/web:http"}
    assert json.loads(state.services["labels"].iloc[0]) == {"app": "web"}
    pods = state.pods.set_index("pod")
    assert pods.loc["web-2", "terminating"] == True  # noqa: E712 - a nullable boolean
    assert pd.isna(pods.loc["web-1", "terminating"])  # no deletion timestamp: not known to be false
    assert pd.isna(pods.loc["web-1", "ready"])  # no kube_pod_status_ready in this scrape
    ready = state.nodes.set_index("node")["ready"]
    assert ready["worker-1"] == True and pd.isna(ready["worker-2"])  # noqa: E712 - status unknown is NA


def test_endpointslice_nodename_variant_without_service_names():
    state = read(DATA / "ksm-endpointslice-nodename.txt")
    check_kinds(state)
    assert any("'nodename'" in note for note in state.notes)
    assert any("label_kubernetes_io_service_name" in note for note in state.notes)
    assert any("kube_endpointslice_ports" in note for note in state.notes)
    rows = state.endpoints.set_index("address")
    assert rows["node"].tolist() == ["worker-1", "worker-2"]
    assert rows["service"].isna().all() and rows["port"].isna().all() and rows["service_port_name"].isna().all()
    assert rows.loc["10.244.2.7", ["ready", "serving", "terminating"]].isna().all()  # '' = nil
    assert pd.isna(rows.loc["10.244.2.7", "target_pod"]) and rows.loc["10.244.1.5", "target_pod"] == "web-1"


def test_state_at_a_moment_of_a_backfill_file():
    samples = read_metrics_text(DATASETS / "endpoint-removed-stale" / "raw" / "metrics" / "series.om")
    stamps = sorted(samples["timestamp"].unique())
    ready = {t: kube_state_frames(samples, at=t).endpoints.set_index("target_pod")["ready"].to_dict() for t in stamps}
    assert ready[stamps[0]] == {"web-1": True, "web-2": True, "web-3": True}
    assert ready[stamps[-1]] == {"web-1": True, "web-2": True, "web-3": False}
    assert kube_state_frames(samples).endpoints.set_index("target_pod")["ready"].to_dict() == ready[stamps[-1]]
    with pytest.raises(ValueError, match="timezone-aware"):
        kube_state_frames(samples, at=dt.datetime(2026, 1, 1))


def test_no_kube_state_series():
    state = kube_state_frames(read_metrics_text("up 1\n", at=AT))
    check_kinds(state)
    assert state.variant == "none" and all(state[n].empty for n in KINDS)
    assert any("no kube_pod_info" in note for note in state.notes)
