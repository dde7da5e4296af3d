"""read_k8s_objects on the kubectl-shaped dumps of tests/data/k8s (see its README)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from npanalytics import ParseError, get_endpoint_snapshot, read_k8s_objects
from npanalytics.schemas import validate_frame

DATA = Path(__file__).parent / "data" / "k8s"
FRAMES = ("services", "endpoints", "pods", "nodes")


def frames_as_text(snap):
    """Frames with the reader-specific ``source`` column dropped, as text in one row order.

    (The API returns objects sorted by namespace and name, a dump in the order it was written.)
    """
    out = {}
    for attr in FRAMES:
        df = getattr(snap, attr)
        if attr == "services":
            df = df.drop(columns="source")
        df = df.astype(str)
        out[attr] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


def test_cluster_json_rows():
    snap = read_k8s_objects(DATA / "cluster.json")
    for attr, kind in zip(FRAMES, ("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes")):
        validate_frame(getattr(snap, attr), kind)
    assert snap.resource_versions == {} and snap.notes == [] and snap.taken_at is None
    services = snap.services.set_index("service_port_name")
    assert list(services.index) == ["default/web:http", "default/web:metrics", "shop/api", "default/nothing"]
    assert services.loc["shop/api", "port_name"] == "" and services.loc["shop/api", "target_port"] == "8443"
    # "nothing" has no targetPort in the scenario: the API's default (the port) is what the dump says
    assert (services.loc["default/nothing", "port"], services.loc["default/nothing", "target_port"]) == (81, "81")
    assert services.loc["default/web:http", "session_affinity_timeout_seconds"] == 600
    assert set(snap.services["source"]) == {"file"} and set(snap.services["cluster_ip"]) == {
        "198.19.0.10", "198.19.0.11", "198.19.0.12"}

    eps = snap.endpoints
    assert len(eps) == 9  # web: 4 pods x 2 ports; api: 1; nothing: an empty slice (endpoints: null)
    web4 = eps[(eps["target_pod"] == "web-4") & (eps["port_name"] == "metrics")].iloc[0]
    assert (web4["port"], web4["ready"], web4["serving"], web4["terminating"], web4["node"], web4["zone"]) == (
        9091, False, True, True, "node-b", "zone-b")
    api = eps[eps["service"] == "api"].iloc[0]
    assert api["service_port_name"] == "shop/api" and pd.isna(api["zone"]) and api["hints"] == ""

    pods = snap.pods.set_index("pod")
    assert pods.loc["web-2", "ready"] == False and pods.loc["web-4", "ready"] == True  # noqa: E712
    assert pods.loc["web-4", "terminating"] and not pods.loc["web-1", "terminating"]
    assert json.loads(pods.loc["web-1", "labels"])["app"] == "web"
    nodes = snap.nodes.set_index("node")
    assert nodes.loc["node-b", "region"] == "npa-lab" and pd.isna(nodes.loc["node-c", "region"])
    assert nodes.loc["node-a", "pod_cidr"].endswith("/24")


def test_json_and_yaml_dumps_read_alike():
    from_json = frames_as_text(read_k8s_objects(DATA / "cluster.json"))
    from_yaml = frames_as_text(read_k8s_objects(DATA / "cluster.yaml"))
    for attr in FRAMES:
        pd.testing.assert_frame_equal(from_json[attr], from_yaml[attr])


def test_dump_and_live_api_give_the_same_frames(tmp_path, need):
    need(importlib.util.find_spec("kubernetes"), "needs the kubernetes client (pip install 'npanalytics[k8s]')")
    from npanalytics.lab.apiserver import LabApiServer
    from npanalytics.lab.scenario import scenario_from_dict

    spec = importlib.util.spec_from_file_location("make_dumps", DATA / "make_dumps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with LabApiServer(scenario_from_dict(module.SCENARIO)) as srv:
        live = get_endpoint_snapshot(kubeconfig=srv.write_kubeconfig(tmp_path / "kubeconfig"))
    dump = read_k8s_objects(DATA / "cluster.json")
    for attr in FRAMES:
        pd.testing.assert_frame_equal(frames_as_text(live)[attr], frames_as_text(dump)[attr])


def test_single_object_and_multi_document_yaml():
    pod = read_k8s_objects(DATA / "pod-web-1.yaml")
    assert list(pod.pods["pod"]) == ["web-1"] and pod.services.empty and pod.endpoints.empty
    validate_frame(pod.nodes, "k8s_nodes")
    multi = read_k8s_objects(DATA / "web-multi-doc.yaml")
    assert list(multi.services["port_name"]) == ["http", "metrics"]
    assert sorted(multi.endpoints["target_pod"].unique()) == ["web-1", "web-2", "web-3", "web-4"]


def test_legacy_endpoints_dump():
    snap = read_k8s_objects(DATA / "endpoints-legacy.json")
    assert set(snap.endpoints["source"]) == {"endpoints"}
    http = snap.endpoints[snap.endpoints["port_name"] == "http"].set_index("target_pod")
    assert sorted(http.index) == ["web-1", "web-2", "web-3"]  # terminating web-4 is not in Endpoints
    assert http.loc["web-2", "ready"] == False and pd.isna(http.loc["web-2", "terminating"])  # noqa: E712
    assert any("legacy Endpoints" in n for n in snap.notes)


def test_endpoints_are_not_counted_twice_when_slices_are_there():
    legacy = json.loads((DATA / "endpoints-legacy.json").read_text())
    both = json.loads((DATA / "cluster.json").read_text())
    both["items"] += legacy["items"]
    snap = read_k8s_objects(json.dumps(both) + "\n")
    assert set(snap.endpoints["source"]) == {"endpointslice"} and len(snap.endpoints) == 9
    assert any("3 Endpoints object(s) left out" in n for n in snap.notes)


def test_sources_bytes_text_gzip_file_object_and_concatenated_json():
    raw = (DATA / "pod-web-1.yaml").read_bytes()
    for source in (raw, raw.decode(), gzip.compress(raw), io.BytesIO(raw)):
        assert list(read_k8s_objects(source).pods["pod"]) == ["web-1"]
    two = (DATA / "endpoints-legacy.json").read_text() + (DATA / "cluster.json").read_text()
    snap = read_k8s_objects(two)
    assert len(snap.pods) == 5 and set(snap.endpoints["source"]) == {"endpointslice"}


def test_api_list_response_items_take_the_lists_kind():
    response = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "42"},
                "items": [{"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z"}},
                           "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}]}
    snap = read_k8s_objects(json.dumps(response) + "\n")
    assert snap.resource_versions == {"nodes": "42"}
    assert list(snap.nodes[["node", "zone", "internal_ip"]].iloc[0]) == ["n1", "z", "10.0.0.1"]
    assert pd.isna(snap.nodes["ready"].iloc[0])


def test_unset_conditions_take_the_apis_defaults():
    doc = ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s-1\n"
           "  labels: {kubernetes.io/service-name: s}\naddressType: IPv4\n"
           "endpoints:\n- addresses: [10.0.0.1, 10.0.0.2]\n  hints: {forZones: [{name: z1}, {name: z2}]}\n"
           "ports:\n- port: 80\n")
    eps = read_k8s_objects(doc).endpoints
    assert list(eps["address"]) == ["10.0.0.1", "10.0.0.2"]
    assert eps["ready"].all() and eps["serving"].all() and not eps["terminating"].any()
    assert set(eps["hints"]) == {"z1,z2"} and set(eps["service_port_name"]) == {"default/s"}
    assert set(eps["protocol"]) == {"tcp"} and set(eps["port_name"]) == {""}


# --- broken input -----------------------------------------------------------------------------

def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ParseError, match=r"broken-indent\.yaml:10: expected valid YAML") as info:
        read_k8s_objects(DATA / "broken-indent.yaml")
    assert info.value.lineno == 10 and "protocol" in info.value.line


def test_truncated_json_names_the_line():
    text = (DATA / "broken-truncated.json").read_text()
    last = len(text.splitlines())
    with pytest.raises(ParseError, match=rf"broken-truncated\.json:{last}: expected valid JSON"):
        read_k8s_objects(DATA / "broken-truncated.json")


def test_object_without_a_name_names_the_item_line():
    with pytest.raises(ParseError, match=r"broken-no-name\.yaml:10: expected a Pod with metadata\.name at items\[1\]"):
        read_k8s_objects(DATA / "broken-no-name.yaml")


def test_json_items_are_named_by_their_line():
    good = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok-1"}}
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default"}}
    text = json.dumps({"apiVersion": "v1", "items": [good, bad], "kind": "List",
                       "metadata": {"resourceVersion": ""}}, indent=4, sort_keys=True) + "\n"
    line = text.splitlines().index("        {", 10) + 1  # where kubectl starts the second item
    assert line > 3
    with pytest.raises(ParseError, match=rf"<string>:{line}: expected a Pod with metadata\.name at items\[1\]"):
        read_k8s_objects(text)
    # the walk over the top level gives what json.loads gives
    from npanalytics.collectors.k8s import _json_documents

    whole = (DATA / "cluster.json").read_text()
    ((first, data, item_lines),) = list(_json_documents(whole, "cluster.json"))
    assert data == json.loads(whole) and first == 1
    lines = whole.splitlines()
    assert [lines[n - 1] for n in item_lines] == ["        {"] * len(data["items"])


def test_other_kinds_raise_or_are_skipped_with_a_note():
    with pytest.raises(ParseError, match=r"broken-configmap\.yaml:7: expected one of Service, .* got \"kind 'ConfigMap'\""):
        read_k8s_objects(DATA / "broken-configmap.yaml")
    snap = read_k8s_objects(DATA / "broken-configmap.yaml", ignore_other_kinds=True)
    assert list(snap.nodes["node"]) == ["node-a"]
    assert snap.notes == [f"{DATA / 'broken-configmap.yaml'}: skipped 1 object(s) of kind ConfigMap (ignore_other_kinds=True)"]


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", r"<string>:1: expected a Kubernetes object or List"),
    ('{"kind": "PodList", "items": {"a": 1}}\n', r"<string>:1: expected a PodList whose items is a list"),
    ("kind: Service\nmetadata: {name: s}\nspec: {ports: [{name: x}]}\n",
     r"<string>:1: expected a Service port with a numeric 'port' at the document"),
    ("kind: List\nitems:\n- 3\n", r"<string>:3: expected an object at items\[0\] of the List"),
])
def test_malformed_documents(text, expected):
    with pytest.raises(ParseError, match=expected):
        read_k8s_objects(text)


def test_the_lab_datasets_api_lists_read_back():
    """The bundled datasets keep the lab's API list documents under raw/k8s/: they read as any API list."""
    from npanalytics.datasets import dataset_search_path

    folders = sorted({p.parent for root in dataset_search_path() if root.is_dir()
                      for p in root.glob("*/raw/k8s/services.json")})
    assert folders, "no bundled dataset keeps raw/k8s/"
    for folder in folders:
        snaps = {name: read_k8s_objects(folder / f"{name}.json")
                 for name in ("services", "endpointslices", "pods", "nodes")}
        assert set(snaps["endpointslices"].resource_versions) == {"endpointslices"}
        services, endpoints = snaps["services"].services, snaps["endpointslices"].endpoints
        pods, nodes = snaps["pods"].pods, snaps["nodes"].nodes
        assert len(services) and len(pods) and len(nodes), folder
        assert set(endpoints["target_pod"].dropna()) <= set(pods["pod"]), folder
        assert set(endpoints["node"].dropna()) <= set(nodes["node"]), folder
        assert set(endpoints["service_port_name"].dropna()) <= set(services["service_port_name"]), folder
