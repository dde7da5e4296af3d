"""``npanalytics collect --prometheus``: the kube-state-metrics and kube-proxy catalog frames.

A real Prometheus (tests/prom_server.py) is backfilled with a recorded lab dataset's
``raw/metrics/series.om`` (promtool, as tests/test_prometheus_server.py does); the
catalog frames collected from it are checked against the dataset's own recordings:
the kube-state-metrics text of its last scrape, the Kubernetes objects of its scenario
and the samples of the OpenMetrics file itself.
"""

from __future__ import annotations

import importlib.util
import json
import time

import pandas as pd
import pytest

import npanalytics
from npanalytics import load_dataset
from npanalytics.cli import main
from npanalytics.collect import CATALOG_KINDS, DEFAULT_QUERIES, collect
from npanalytics.collectors.kube_state import kube_state_frames
from npanalytics.collectors.metrics_text import read_metrics_text
from npanalytics.exceptions import NpaWarning

from prom_server import Answer, FakePrometheus, backfill, prometheus_binaries, start_prometheus, success

pytestmark = pytest.mark.slow

DATASET = "endpoint-removed-stale"  # web-3 turns unready between scrapes
K8S = ("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes")
PROXY = ("proxy_latency", "proxy_rule_counts", "proxy_status")


def om_lines(text: str) -> list[tuple[str, dict[str, str], float, float]]:
    """(name, labels, value, seconds) of every sample line of an OpenMetrics backfill file."""
    import re

    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value, stamp = line.rsplit(" ", 2)
        name, _, body = head.partition("{")
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', body))
        out.append((name, labels, float(value), float(stamp)))
    return out


def shifted(text: str, delta: float) -> str:
    """The OpenMetrics text with every sample moved by ``delta`` seconds."""
    lines = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, stamp = line.rsplit(" ", 1)
            line = f"{head} {float(stamp) + delta:.3f}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal values and dtypes (an empty category column's categories dtype is a Parquet detail)."""
    assert [t.name for t in a.dtypes] == [t.name for t in b.dtypes]
    cats = {c: object for c in a if a[c].dtype.name == "category"}
    pd.testing.assert_frame_equal(a.astype(cats).reset_index(drop=True), b.astype(cats).reset_index(drop=True),
                                  check_exact=True)


@pytest.fixture(scope="module")
def binaries():
    return prometheus_binaries()


@pytest.fixture(scope="module")
def source():
    return load_dataset(DATASET)


@pytest.fixture(scope="module")
def samples(source):
    return om_lines(source.raw["raw/metrics/series.om"].decode())


@pytest.fixture(scope="module")
def prom(binaries, source, tmp_path_factory):
    prometheus, promtool = binaries
    root = tmp_path_factory.mktemp("prometheus")
    backfill(promtool, source.raw["raw/metrics/series.om"].decode(), root / "tsdb", "dataset")
    server = start_prometheus(prometheus, root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def collected(prom, samples, tmp_path_factory):
    stamps = sorted({s for *_, s in samples})
    out = tmp_path_factory.mktemp("collected") / "recorded"
    collect(out, prometheus=prom.url, start=int(stamps[0]) - 2, end=int(stamps[-1]) + 2, step=1, progress=False)
    return load_dataset(out)


def test_catalog_frames_are_there_and_rederive(collected):
    assert set(collected.frames) == set(DEFAULT_QUERIES) | set(CATALOG_KINDS)
    for kind in CATALOG_KINDS:
        assert collected.kinds[kind] == kind
    assert {collected.derivations[k][0].reader for k in K8S} == {"kube_state_from_prometheus"}
    assert {collected.derivations[k][0].raw for k in K8S} == {"raw/prometheus/kube-state.json"}
    assert {collected.derivations[k][0].reader for k in PROXY} == {"kube_proxy_from_prometheus"}
    for frame in collected.frames:
        same_frame(collected.rederive(frame), collected.frames[frame])
    ksm = collected.recording["catalogs"]["kube_state"]
    assert ksm["variant"] == "endpointslice" and ksm["notes"]
    assert collected.recording["catalogs"]["kube_proxy"]["notes"]


def test_state_equals_the_last_kube_state_metrics_scrape(collected, source):
    text = read_metrics_text(source.raw["raw/metrics/kube-state-metrics.txt"])
    expected = kube_state_frames(text)
    for kind in K8S:
        assert len(collected[kind]) > 0, kind
        same_frame(collected[kind], expected.frames[kind.removeprefix("k8s_")])


def test_endpoints_per_service_are_the_scenarios(collected, source):
    def rows(df: pd.DataFrame) -> set[tuple]:
        cols = ["namespace", "service", "address", "node", "ready", "serving", "terminating"]
        return {tuple(str(v) for v in r) for r in df[cols].itertuples(index=False)}

    got = collected["k8s_endpoints"]
    assert rows(got) == rows(source["k8s_endpoints"])  # the scenario's objects, from the API reader
    assert not got["ready"].all()  # web-3 is unready at the end


def test_an_earlier_end_gives_the_state_of_its_scrape(prom, samples, tmp_path, capsys):
    first = min(s for *_, s in samples)
    end = pd.Timestamp(round((first + 0.5) * 1000), unit="ms", tz="UTC")
    status = main(["collect", "--prometheus", prom.url, "--start", str(int(first) - 2), "--end", end.isoformat(),
                   "--step", "1s", "--out", str(tmp_path / "early")])
    ds = load_dataset(tmp_path / "early")
    expected = {(labels["address"], labels["ready"] == "true") for name, labels, _, s in samples
                if name == "kube_endpointslice_endpoints" and s == first}
    got = ds["k8s_endpoints"]
    assert set(zip(got["address"].astype(str), got["ready"])) == expected
    out = capsys.readouterr().out
    assert status == 0 and f"kube_state catalog: {len(ds['k8s_services'])} k8s_services, {len(got)} k8s_endpoints" in out
    assert "(variant endpointslice)" in out and "kube_proxy catalog: " in out
    later = {(labels["address"], labels["ready"] == "true") for name, labels, _, s in samples
             if name == "kube_endpointslice_endpoints" and s > first}
    changed = later - expected
    assert changed  # the recording changes later: the first scrape's state is not simply the only one


def test_proxy_frames_follow_the_recorded_series(collected, samples):
    last = max(s for *_, s in samples)
    rules = {(labels["instance"], labels["table"]): int(v) for name, labels, v, s in samples
             if name == "kubeproxy_sync_proxy_rules_iptables_total" and s == last}
    counts = collected["proxy_rule_counts"]
    final = counts[counts["timestamp"] == counts["timestamp"].max()]
    assert {(str(n), str(t)): int(r) for n, t, r in zip(final["node"], final["table"], final["rules"])} == rules
    status = collected["proxy_status"]
    assert set(status["node"].astype(str)) == {labels["instance"] for name, labels, *_ in samples
                                               if name.startswith("kubeproxy_")}
    assert set(status["proxy_mode"].astype(str)) == {"iptables"}
    synced = {(labels["instance"]): v for name, labels, v, s in samples
              if name == "kubeproxy_sync_proxy_rules_duration_seconds_count" and s == last}
    latency = collected["proxy_latency"]
    sync = latency[(latency["metric"].astype(str) == "sync") & (latency["timestamp"] == latency["timestamp"].max())]
    assert set(sync["node"].astype(str)) == set(synced)
    assert sync["p50_seconds"].notna().all()


def bucket_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile of cumulative bucket counts by upper bound (written out again)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank, below, lower = q * total, 0.0, 0.0
    for k, upper in enumerate(bounds):
        if buckets[upper] >= rank:
            if upper == float("inf"):
                return bounds[k - 1]
            if k == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / (buckets[upper] - below)
        below, lower = buckets[upper], upper
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def test_sync_quantiles_equal_the_recorded_buckets(collected, samples):
    """Over the 5-minute window at the last step: the increase of every bucket since the first scrape."""
    family = "kubeproxy_sync_proxy_rules_duration_seconds_bucket"
    first, last = min(s for *_, s in samples), max(s for *_, s in samples)
    increase: dict[str, dict[float, float]] = {}
    for name, labels, value, stamp in samples:
        if name == family and stamp in (first, last):
            per_node = increase.setdefault(labels["instance"], {})
            per_node[float(labels["le"])] = per_node.get(float(labels["le"]), 0.0) + (value if stamp == last
                                                                                     else -value)
    latency = collected["proxy_latency"]
    final = latency[(latency["metric"].astype(str) == "sync") & (latency["timestamp"] == latency["timestamp"].max())]
    assert set(final["node"].astype(str)) == set(increase)
    checked = 0
    for row in final.itertuples():
        buckets = increase[str(row.node)]
        assert row.observations == buckets[float("inf")]
        if buckets[float("inf")] > 0:
            for q, got in ((0.5, row.p50_seconds), (0.9, row.p90_seconds), (0.99, row.p99_seconds)):
                assert got == pytest.approx(bucket_quantile(q, buckets), rel=1e-12)
                checked += 1
    assert checked  # some node synced during the recording


def test_analyze_runs_on_the_collection_with_endpoint_labels(collected):
    result = npanalytics.analyze(collected)
    assert "labels" not in result.missing
    assert "labels" in npanalytics.analyze({k: v for k, v in collected.frames.items() if not k.startswith("k8s_")}
                                           ).missing  # what the catalog frames bring


def test_with_the_kubernetes_api_its_frames_win(prom, samples, source, tmp_path, need):
    need(importlib.util.find_spec("kubernetes"), "needs the kubernetes client (pip install 'npanalytics[k8s]')")
    from npanalytics.lab.apiserver import LabApiServer
    from npanalytics.lab.scenario import load_scenario

    last = max(s for *_, s in samples)
    with LabApiServer(load_scenario(source.recording["scenario"])) as api:
        config = api.write_kubeconfig(tmp_path / "kubeconfig")
        ds = collect(tmp_path / "both", prometheus=prom.url, kubeconfig=config, start=int(last) - 5,
                     end=int(last) + 2, step=1, progress=False)
    for kind in K8S:
        ksm = kind.replace("k8s_", "ksm_")
        assert ds.kinds[kind] == ds.kinds[ksm] == kind
        assert ds.derivations[kind][0].reader == "read_k8s_objects"
        assert ds.derivations[ksm][0].reader == "kube_state_from_prometheus"
        same_frame(ds.rederive(ksm), ds.frames[ksm])
    assert set(ds["ksm_endpoints"]["address"].astype(str)) == set(ds["k8s_endpoints"]["address"].astype(str))


def test_a_query_may_not_take_a_catalog_frames_name(tmp_path):
    with pytest.raises(ValueError, match="proxy_status"):
        collect(tmp_path / "x", prometheus="http://127.0.0.1:9", queries={"proxy_status": "up"})
    assert not (tmp_path / "x").exists()


def test_a_failing_catalog_is_reported_and_the_recording_kept(tmp_path):
    bucket = "kubeproxy_sync_proxy_rules_duration_seconds_bucket"

    def answer(seen):  # a histogram bucket without its le label: the kube-proxy catalog cannot use it
        if seen.params["query"] != bucket:
            return Answer(body=success("matrix", []))
        return Answer(body=success("matrix", [{"metric": {"__name__": bucket, "instance": "n1"},
                                               "values": [[1_700_000_000, "1"]]}]))

    with FakePrometheus(answer) as fake, pytest.warns(NpaWarning, match="kube_proxy catalog failed"):
        ds = collect(tmp_path / "rec", prometheus=fake.url, start=1_700_000_000, end=1_700_000_000, step=15,
                     progress=False)
    proxy = ds.recording["catalogs"]["kube_proxy"]
    assert "raw/prometheus/kube-proxy.json" in proxy["error"] and "frames" not in proxy
    assert not set(PROXY) & set(ds.frames) and set(K8S) <= set(ds.frames)
    kept = load_dataset(tmp_path / "rec").raw["raw/prometheus/kube-proxy.json"]
    assert kept == ds.raw["raw/prometheus/kube-proxy.json"]
    assert len(ds[bucket]) == 1


def test_report_from_a_live_prometheus(binaries, source, tmp_path):
    """``npanalytics report --prometheus URL`` (the last hour up to now) writes a report with the catalogs."""
    prometheus, promtool = binaries
    text = source.raw["raw/metrics/series.om"].decode()
    last = max(s for *_, s in om_lines(text))
    backfill(promtool, shifted(text, time.time() - 20 - last), tmp_path / "tsdb", "recent")
    server = start_prometheus(prometheus, tmp_path)
    try:
        out = tmp_path / "report"
        status = main(["report", "--prometheus", server.url, "--out", str(out), "--format", "html,json"])
    finally:
        server.stop()
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.html").stat().st_size > 0
    assert "labels" not in report["missing"] and "conntrack" in report["missing"]  # only what was not collected
    provenance = report["provenance"]
    assert provenance["recording"]["catalogs"]["kube_state"]["variant"] == "endpointslice"
    endpoints = source["k8s_endpoints"]
    assert provenance["frames"]["k8s_endpoints"] == {"kind": "k8s_endpoints", "rows": len(endpoints)}
    assert provenance["frames"]["proxy_status"]["rows"] > 0
