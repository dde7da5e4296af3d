"""npanalytics collect --kubeconfig: the snapshot (and churn) as a re-derivable dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from npanalytics import load_dataset
from npanalytics.cli import main
from npanalytics.collect import collect
from npanalytics.lab.apiserver import LabApiServer
from npanalytics.lab.scenario import load_scenario

from conftest import IN_CI
from prom_server import Answer, FakePrometheus, success

if IN_CI:
    import kubernetes  # noqa: F401 - CI installs the k8s extra: a missing client fails, never skips
else:
    pytest.importorskip("kubernetes")

TOKEN = "npa-collect-token-5e1f0a"
K8S_FRAMES = {"k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes"}


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.astype(str).reset_index(drop=True), b.astype(str).reset_index(drop=True))


def test_collect_snapshot_and_churn_into_a_dataset(tmp_path):
    scenario = load_scenario("two-nodes-local")
    with LabApiServer(scenario, token=TOKEN) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        changed = []

        def on_watch(record):  # a pod turns not ready once the watch has begun
            if record.verb == "watch" and not changed:
                changed.append(srv.set_pod_states({scenario.pods[0].name: {"ready": False}}))

        srv.before_request = on_watch
        ds = collect(tmp_path / "k8s-sample", kubeconfig=config, watch_seconds=1.5)
    assert ds.kinds == {k: k for k in [*K8S_FRAMES, "endpoint_churn"]}
    loaded = load_dataset(tmp_path / "k8s-sample")
    assert loaded.description.startswith("Kubernetes API objects of http://127.0.0.1:")
    assert len(loaded["k8s_pods"]) == len(scenario.pods) and set(loaded["k8s_services"]["source"]) == {"api"}
    assert list(loaded["endpoint_churn"]["event"]) == ["changed"]
    for frame in loaded.frames:  # every frame is derived again from the raw files
        same_rows(loaded.rederive(frame), loaded.frames[frame])
    k8s = loaded.recording["kubernetes"]
    assert k8s["server"] == srv.url and k8s["resource_versions"]["pods"]
    assert k8s["watch"] == {"seconds": 1.5, "changes": 1, "notes": []}
    assert sorted(loaded.raw) == ["raw/k8s/endpoint-watch.jsonl", "raw/k8s/endpointslices/page-0001.json",
                                  "raw/k8s/nodes/page-0001.json", "raw/k8s/pods/page-0001.json",
                                  "raw/k8s/services/page-0001.json"]
    assert "prometheus_url" not in loaded.recording
    # the bearer token is in no file of the dataset
    for path in Path(tmp_path / "k8s-sample").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_collect_endpoints_fallback_derives_from_the_endpoints_pages(tmp_path):
    with LabApiServer(load_scenario("two-nodes-local"), endpointslices=False) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        ds = collect(tmp_path / "old-server", kubeconfig=config)
    parts = ds.derivations["k8s_endpoints"]
    assert [p.raw for p in parts] == ["raw/k8s/endpoints/page-0001.json"]
    same_rows(ds.rederive("k8s_endpoints"), ds["k8s_endpoints"])
    assert set(ds["k8s_endpoints"]["source"]) == {"endpoints"}
    assert any("legacy v1 Endpoints" in n for n in ds.recording["kubernetes"]["notes"])


def test_cli_collect_kubeconfig(tmp_path, capsys):
    with LabApiServer(load_scenario("two-nodes-local"), endpointslices=False) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig", context="lab")
        code = main(["collect", "--kubeconfig", str(config), "--context", "lab", "--out", str(tmp_path / "ds")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Kubernetes API at {srv.url}: 1 service ports, 3 endpoints, 3 pods, 2 nodes" in out
    assert "note: the API server at" in out
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["recording"]["kubernetes"]["context"] == "lab"


@pytest.mark.parametrize("argv, message", [
    (["collect", "--out", "x"], "give --prometheus URL, --kubeconfig PATH or both"),
    (["collect", "--prometheus", "http://127.0.0.1:1", "--watch", "5", "--out", "x"],
     "--context and --watch need --kubeconfig"),
    (["collect", "--kubeconfig", "k", "--watch", "0", "--out", "x"], "--watch must be a positive number"),
    (["collect", "--kubeconfig", "/nonexistent/kubeconfig", "--out", "x"],
     "/nonexistent/kubeconfig: no such kubeconfig file"),
])
def test_cli_collect_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_collect_needs_a_source(tmp_path):
    with pytest.raises(ValueError, match="and/or kubeconfig="):
        collect(tmp_path / "x")
    with pytest.raises(ValueError, match="watch_seconds needs kubeconfig"):
        collect(tmp_path / "x", prometheus="http://127.0.0.1:1", watch_seconds=3)


@pytest.fixture
def prometheus_stub():
    """A stand-in Prometheus answering every query with an empty matrix (records the requests)."""
    with FakePrometheus(lambda seen: Answer(body=success("matrix", []))) as server:
        yield server


def test_collect_prometheus_and_kubernetes_together(tmp_path, prometheus_stub):
    url = prometheus_stub.url
    with LabApiServer(load_scenario("two-nodes-local")) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig")
        ds = collect(tmp_path / "both", prometheus=url, queries={"up": "up"}, default_queries=False,
                     kubeconfig=config, start=0, end=60, step=15, progress=False)
        with pytest.raises(ValueError, match=r"query name\(s\) \['k8s_pods'\] are taken"):
            collect(tmp_path / "clash", prometheus=url, queries={"k8s_pods": "up"}, default_queries=False,
                    kubeconfig=config, start=0, end=60, step=15, progress=False)
    assert ds.kinds == {"up": "prom_samples", **{k: k for k in K8S_FRAMES}}
    assert [seen.params["query"] for seen in prometheus_stub.requests] == ["up"]  # the clash is found before any query
    assert ds.recording["prometheus_url"] == url and ds.recording["kubernetes"]["server"] == srv.url
    assert ds.description.startswith("Prometheus series from")
    loaded = load_dataset(tmp_path / "both")
    for frame in loaded.frames:
        same_rows(loaded.rederive(frame), loaded.frames[frame])
    assert not (tmp_path / "clash").exists()
