"""kube_proxy_frames and histogram_quantile; against a real Prometheus with backfilled lab metrics."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import _need
from prom_server import backfill, prometheus_binaries, start_prometheus, wait_for

from npanalytics import (
    concat_samples,
    get_kube_proxy,
    get_kube_state,
    kube_proxy_frames,
    kube_state_frames,
    read_metrics_text,
)
from npanalytics.collectors.kube_proxy import histogram_quantile
from npanalytics.lab.metrics import kube_proxy_metrics_text, openmetrics_series
from npanalytics.schemas import validate_frame

DATA = Path(__file__).parent / "data" / "metrics"
SERIES = Path(__file__).parent.parent / "datasets" / "endpoint-removed-stale" / "raw" / "metrics" / "series.om"
AT = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
INF = math.inf

# The arguments that wrote the byte-exact fixtures (tests/data/metrics/README.md).
PROXY_132 = dict(sync_durations_seconds=[0.0015, 0.003, 0.003, 0.012], partial_sync_durations_seconds=[0.0007],
                 network_programming_seconds=[0.1, 0.7, 1.5, 2.2, 61.0], rules_total={"filter": 4, "nat": 23},
                 rules_last={"filter": 4, "nat": 9}, endpoint_changes_total=7, service_changes_total=2,
                 endpoint_changes_pending=1, no_local_endpoints={"external": 1}, restore_failures_total=1,
                 last_sync_timestamp=1764547200.5, last_queued_timestamp=1764547201.0, ip_family_label=False)
PROXY_133 = dict(sync_durations_seconds=[0.02, 0.05], network_programming_seconds=[0.3], endpoint_changes_total=3,
                 service_changes_total=1, restore_failures_total=2, mode="nftables", last_sync_timestamp=1764547200.25)


def test_fixtures_are_what_the_lab_writes():
    assert (DATA / "kube-proxy-1.32-iptables.txt").read_text() == kube_proxy_metrics_text("node-a", **PROXY_132)
    assert (DATA / "kube-proxy-1.33-nftables.txt").read_text() == kube_proxy_metrics_text("node-b", **PROXY_133)


# -- histogram_quantile: answers worked out by hand from Prometheus's rules --------------------


@pytest.mark.parametrize(("buckets", "q", "expected"), [
    # rank 2 of 4 falls in (0.002, 0.004] holding 2 (1 below): 0.002 + 0.002 * (2 - 1) / 2
    ([(0.001, 0), (0.002, 1), (0.004, 3), (INF, 4)], 0.5, 0.003),
    # rank 3.96 falls in +Inf: the largest finite bound
    ([(0.001, 0), (0.002, 1), (0.004, 3), (INF, 4)], 0.99, 0.004),
    # the first bucket interpolates from 0: 1 * 3 / 5
    ([(1, 5), (2, 5), (INF, 6)], 0.5, 0.6),
    # a first bound <= 0 (network programming's le="0") is returned as is
    ([(0, 2), (0.25, 2), (INF, 3)], 0.5, 0.0),
    # order does not matter; equal bounds add up: (1, 2+2), (2, 8), (+Inf, 8): rank 4 -> 1
    ([(INF, 8), (1, 2), (2, 8), (1, 2)], 0.5, 1.0),
    # decreasing counts are made monotonic: (1, 5), (2, 5), (+Inf, 6)
    ([(1, 5), (2, 3), (INF, 6)], 0.5, 0.6),
    # rates work as counts: (0.5, 0.1/s), (1, 0.3/s), (+Inf, 0.4/s); rank 0.2 -> 0.5 + 0.5 * 0.1 / 0.2
    ([(0.5, 0.1), (1, 0.3), (INF, 0.4)], 0.5, 0.75),
])
def test_histogram_quantile(buckets, q, expected):
    assert histogram_quantile(buckets, q) == pytest.approx(expected, rel=1e-12)


def test_histogram_quantile_edges():
    good = [(1, 1), (INF, 2)]
    assert histogram_quantile(good, 1.5) == INF and histogram_quantile(good, -0.1) == -INF
    assert math.isnan(histogram_quantile(good, math.nan))
    assert math.isnan(histogram_quantile([(1, 1), (2, 2)], 0.5))  # no +Inf bucket
    assert math.isnan(histogram_quantile([(INF, 2)], 0.5))  # fewer than two buckets
    assert math.isnan(histogram_quantile([(1, 0), (INF, 0)], 0.5))  # no observations
    assert math.isnan(histogram_quantile([], 0.5))
    assert math.isnan(histogram_quantile([(1, 0), (2, 3), (INF, 4)], 0.0))  # rank 0 in an empty first bucket
    assert histogram_quantile([(1, 2), (INF, 4)], 0.0) == 0.0


def test_histogram_quantile_properties():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.floats(0, 1e3), st.integers(0, 50)), min_size=1, max_size=12),
           st.integers(0, 50), st.floats(0, 1), st.floats(0, 1))
    def check(finite, overflow, q1, q2):
        bounds = sorted({b for b, _ in finite})
        counts, total = [], 0
        for _ in bounds:  # cumulative counts from random per-bucket counts
            total += finite[len(counts) % len(finite)][1]
            counts.append(total)
        buckets = list(zip(bounds, counts)) + [(INF, total + overflow)]
        low, high = sorted((q1, q2))
        a, b = histogram_quantile(buckets, low), histogram_quantile(buckets, high)
        if total + overflow == 0:
            assert math.isnan(a) and math.isnan(b)
            return
        for value in (a, b):  # never beyond the largest finite bound, never below 0 here
            assert math.isnan(value) or 0 <= value <= bounds[-1]
        if not (math.isnan(a) or math.isnan(b)):
            assert a <= b + 1e-9 * max(1.0, abs(b))

    check()


# -- frames from one scrape -------------------------------------------------------------------


def latency_of(frame, metric):
    (row,) = frame[frame["metric"] == metric].to_dict("records")
    return row


def test_one_iptables_scrape():
    proxy = kube_proxy_frames(read_metrics_text(DATA / "kube-proxy-1.32-iptables.txt", at=AT), node="node-a")
    validate_frame(proxy.latency, "proxy_latency")
    validate_frame(proxy.rule_counts, "proxy_rule_counts")
    validate_frame(proxy.status, "proxy_status")
    # cumulative buckets of the observations (worked out by hand):
    # all syncs 0.0007, 0.0015, 0.003, 0.003, 0.012 -> <=0.001: 1, <=0.002: 2, <=0.004: 4, <=0.016: 5
    sync = latency_of(proxy.latency, "sync")
    assert sync["observations"] == 5 and math.isnan(sync["window_seconds"]) and math.isnan(sync["per_second"])
    assert sync["mean_seconds"] == pytest.approx(0.0202 / 5)
    assert sync["p50_seconds"] == pytest.approx(0.002 + 0.002 * 0.5 / 2)   # rank 2.5 in (0.002, 0.004]
    assert sync["p90_seconds"] == pytest.approx(0.008 + 0.008 * 0.5)       # rank 4.5 in (0.008, 0.016]
    assert sync["p99_seconds"] == pytest.approx(0.008 + 0.008 * 0.95)
    full = latency_of(proxy.latency, "sync_full")  # 0.0015, 0.003, 0.003, 0.012
    assert (full["observations"], full["p50_seconds"], full["p90_seconds"]) == pytest.approx(
        (4, 0.003, 0.008 + 0.008 * 0.6))
    partial = latency_of(proxy.latency, "sync_partial")  # 0.0007: rank 0.5 in (0, 0.001]
    assert partial["p50_seconds"] == pytest.approx(0.0005)
    # programming 0.1, 0.7, 1.5, 2.2, 61: <=0.25: 1, <=1: 2, <=2: 3, <=3: 4, <=65: 5
    programming = latency_of(proxy.latency, "network_programming")
    assert (programming["p50_seconds"], programming["p90_seconds"], programming["p99_seconds"]) == pytest.approx(
        (1.5, 62.5, 64.75))
    assert set(proxy.latency["node"]) == {"node-a"}
    rules = {r["table"]: (r["rules"], r["rules_last"]) for r in proxy.rule_counts.to_dict("records")}
    assert rules == {"filter": (4, 4), "nat": (23, 9)} and proxy.rule_counts["ip_family"].isna().all()
    (status,) = proxy.status.to_dict("records")
    assert status["proxy_mode"] == "iptables"
    assert (status["endpoint_changes_total"], status["service_changes_total"], status["endpoint_changes_pending"],
            status["no_local_endpoints_external"], status["no_local_endpoints_internal"],
            status["sync_failures_total"], status["partial_restore_failures_total"]) == (7, 2, 1, 1, 0, 1, 0)
    assert status["last_sync_timestamp"] == pd.Timestamp("2025-12-01T00:00:00.5Z")
    assert math.isnan(status["endpoint_changes_per_second"])


RECORDED = sorted(p.parent.parent.parent for p in Path(__file__).parent.parent.glob("datasets/*/raw/metrics/series.om"))


@pytest.mark.parametrize("dataset", RECORDED, ids=lambda p: p.name)
def test_recorded_sync_histograms_equal_the_timed_rule_loads(dataset):
    from npanalytics.lab.metrics import SYNC_DURATION_BUCKETS

    loads = json.loads((dataset / "raw" / "rule_loads.json").read_text())["records"]
    nodes = sorted({r["node"] for r in loads})
    for node in nodes:
        seconds = [r["load_seconds"] for r in loads if r["node"] == node]
        proxy = kube_proxy_frames(read_metrics_text(dataset / "raw" / "metrics" / f"kube-proxy-{node}.txt", at=AT),
                                  node=node)
        sync = latency_of(proxy.latency, "sync")
        assert sync["observations"] == len(seconds)
        assert sync["mean_seconds"] * len(seconds) == pytest.approx(math.fsum(seconds), rel=1e-12)
        # buckets counted from the raw load times (le is inclusive), then Prometheus's interpolation
        buckets = [(b, sum(s <= b for s in seconds)) for b in SYNC_DURATION_BUCKETS] + [(INF, len(seconds))]
        for q in (0.5, 0.9, 0.99):
            assert sync[f"p{round(q * 100)}_seconds"] == pytest.approx(histogram_quantile(buckets, q), rel=1e-12)
    # the backfill file tells the nodes apart by instance and ends where the scrapes end
    over_time = kube_proxy_frames(read_metrics_text(dataset / "raw" / "metrics" / "series.om"), window=None)
    last = over_time.latency[over_time.latency["metric"] == "sync"].groupby("node", observed=True).last()
    assert last["observations"].to_dict() == {n: sum(r["node"] == n for r in loads) for n in nodes}


def test_nftables_and_ipvs_modes():
    proxy = kube_proxy_frames(read_metrics_text(DATA / "kube-proxy-1.33-nftables.txt", at=AT), node="node-b")
    (status,) = proxy.status.to_dict("records")
    assert status["proxy_mode"] == "nftables" and status["sync_failures_total"] == 2
    assert pd.isna(status["partial_restore_failures_total"]) and proxy.rule_counts.empty
    assert set(proxy.latency["metric"]) == {"sync", "network_programming"}
    assert any("no kubeproxy_sync_full_proxy_rules_duration_seconds" in n for n in proxy.notes)
    ipvs = kube_proxy_metrics_text("n", sync_durations_seconds=[0.1], mode="ipvs", restore_failures_total=3)
    (status,) = kube_proxy_frames(read_metrics_text(ipvs, at=AT), node="n").status.to_dict("records")
    assert (status["proxy_mode"], status["sync_failures_total"]) == ("ipvs", 3)
    bare = "kubeproxy_sync_proxy_rules_endpoint_changes_total 1\n"
    (status,) = kube_proxy_frames(read_metrics_text(bare, at=AT)).status.to_dict("records")
    assert pd.isna(status["proxy_mode"]) and pd.isna(status["node"])


# -- frames over time -------------------------------------------------------------------------


def scrapes(t0: int, nodes=("node-a", "node-b"), minutes=9, restart_at=None):
    """One scrape a minute per node: first four minutes one sync of 1.5 ms each, then 50 ms each."""
    frames = []
    for node_index, node in enumerate(nodes):
        syncs, changes = [], 0
        for minute in range(minutes):
            if restart_at is not None and minute == restart_at and node_index == 0:
                syncs, changes = [], 0  # kube-proxy restarted: its counters begin again
            syncs.append(0.0015 if minute < 4 else 0.05 * (node_index + 1))
            changes += 2
            text = kube_proxy_metrics_text(node, sync_durations_seconds=syncs, rules_total={"nat": 10 + minute},
                                           network_programming_seconds=[0.1 * (1 + minute % 3)] * len(syncs),
                                           endpoint_changes_total=changes, service_changes_total=minute)
            frames.append((t0 + 60 * minute, text, {"job": "kube-proxy", "instance": node}))
    return openmetrics_series(frames)


T0 = 1_764_547_200


def test_windows_over_scrapes():
    proxy = kube_proxy_frames(read_metrics_text(scrapes(T0)))
    assert "node from the 'instance' label" in proxy.notes and "window 300 s" in proxy.notes
    sync = proxy.latency[(proxy.latency["metric"] == "sync") & (proxy.latency["node"] == "node-a")]
    last = sync.iloc[-1]
    # at minute 8 the window [3, 8] holds the syncs of minutes 4..8: five of 50 ms in (0.032, 0.064]
    assert last["timestamp"] == pd.Timestamp(T0 + 480, unit="s", tz="UTC")
    assert (last["observations"], last["per_second"], last["mean_seconds"]) == pytest.approx((5, 5 / 300, 0.05))
    assert last["p50_seconds"] == pytest.approx(0.032 + 0.032 * 2.5 / 5)
    first = sync.iloc[0]  # one sample: nothing to take a rate of
    assert math.isnan(first["observations"]) and math.isnan(first["p50_seconds"])
    cumulative = kube_proxy_frames(read_metrics_text(scrapes(T0)), window=None).latency
    cum = cumulative[(cumulative["metric"] == "sync") & (cumulative["node"] == "node-a")].iloc[-1]
    assert cum["observations"] == 9 and cum["p50_seconds"] == pytest.approx(0.032 + 0.032 * (4.5 - 4) / 5)
    # the cluster-wide programming latency adds both nodes' bucket increases
    programming = proxy.latency[proxy.latency["metric"] == "network_programming"]
    cluster = programming[programming["node"].isna()].iloc[-1]
    per_node = programming[programming["node"].notna() & (programming["timestamp"] == cluster["timestamp"])]
    assert cluster["observations"] == per_node["observations"].sum()
    status = proxy.status[proxy.status["node"] == "node-b"].iloc[-1]
    assert status["endpoint_changes_total"] == 18 and status["endpoint_changes_per_second"] == pytest.approx(10 / 300)
    rules = proxy.rule_counts[proxy.rule_counts["node"] == "node-a"]
    assert rules["rules"].tolist() == list(range(10, 19))


def test_counter_reset_is_an_increase_from_zero():
    proxy = kube_proxy_frames(read_metrics_text(scrapes(T0, nodes=("node-a",), restart_at=6)))
    status = proxy.status.iloc[-1]
    # changes 2, 4, ..., 12 (minute 5), then restart: 2 (minute 6), 4, 6; window minutes 3..8:
    # +2 +2 (to 12), reset to 2 counts 2, +2, +2 = 10
    assert status["endpoint_changes_total"] == 6 and status["endpoint_changes_per_second"] == pytest.approx(10 / 300)
    sync = proxy.latency[proxy.latency["metric"] == "sync"].iloc[-1]
    assert sync["observations"] == 5  # minutes 4, 5 before the restart, 6, 7, 8 after it


def test_instances_named_after_their_nodes():
    nodes = kube_state_frames(read_metrics_text(SERIES.parent / "kube-state-metrics.txt", at=AT)).nodes
    assert dict(zip(nodes["node"], nodes["internal_ip"])) == {"node-a": "198.18.0.11", "node-b": "198.18.0.12"}
    frames = [(T0 + 60 * k, kube_proxy_metrics_text("n", sync_durations_seconds=[0.01] * (k + 1)),
               {"instance": instance})
              for k in range(2) for instance in ("198.18.0.12:10249", "node-a:10249", "10.9.9.9:10249")]
    proxy = kube_proxy_frames(read_metrics_text(openmetrics_series(frames)), nodes=nodes)
    assert set(proxy.status["node"]) == {"node-a", "node-b", "10.9.9.9:10249"}
    assert "2 of 3 instances named after their node (by address)" in proxy.notes
    assert set(kube_proxy_frames(read_metrics_text(openmetrics_series(frames))).status["node"]) == {
        "198.18.0.12:10249", "node-a:10249", "10.9.9.9:10249"}


def test_bad_window():
    with pytest.raises(ValueError, match="window must be a positive duration"):
        kube_proxy_frames(read_metrics_text("a 1\n", at=AT), window="-5m")
    with pytest.raises(ValueError, match="window must be 'auto', None or a duration"):
        kube_proxy_frames(read_metrics_text("a 1\n", at=AT), window="atuo")


# -- a real Prometheus ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """Prometheus on a backfilled TSDB: series.om (KSM + kube-proxy of a recorded run) and the minute scrapes."""
    prometheus_binary, promtool = prometheus_binaries()
    root = tmp_path_factory.mktemp("prom")
    t0 = (int(time.time()) // 3600 - 4) * 3600  # on the hour, hours before now
    backfill(promtool, SERIES.read_text(), root / "tsdb", "recorded")
    backfill(promtool, scrapes(t0), root / "tsdb", "proxy")
    server = start_prometheus(prometheus_binary, root)
    try:
        yield server.url, t0
    finally:
        server.stop()


def _instant(url: str, query: str, at: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": query, "time": at})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=10) as response:
        return json.load(response)["data"]["result"]


@pytest.mark.slow
def test_histogram_quantile_equals_prometheus(prometheus):
    url, t0 = prometheus
    frame = read_metrics_text(scrapes(t0))
    for minute in (2, 8):
        at = t0 + 60 * minute
        rows = frame[(frame["timestamp"] == pd.Timestamp(at, unit="s", tz="UTC")) & (frame["instance"] == "node-b")]
        for family in ("kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_network_programming_duration_seconds"):
            buckets = rows[rows["__name__"] == family + "_bucket"]
            pairs = [(float(le.replace("Inf", "inf")), v) for le, v in zip(buckets["le"].astype(str), buckets["value"])]
            for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
                (result,) = _instant(url, f'histogram_quantile({q}, {family}_bucket{{instance="node-b"}})', at)
                assert histogram_quantile(pairs, q) == pytest.approx(float(result["value"][1]), rel=1e-12,
                                                                     nan_ok=True), (family, minute, q)


@pytest.mark.slow
def test_get_kube_proxy_equals_the_pure_frames(prometheus):
    url, t0 = prometheus
    start, end = pd.Timestamp(t0 + 300, unit="s", tz="UTC"), pd.Timestamp(t0 + 480, unit="s", tz="UTC")
    live = get_kube_proxy(url, start, end, "60s")
    pure = kube_proxy_frames(read_metrics_text(scrapes(t0)))
    assert live.notes == ["node from the 'instance' label", "quantiles by PromQL over rate windows of 300 s",
                          "window 300 s"]
    # every evaluation lands on a scrape and the window starts on one: rate() does not extrapolate,
    # so quantiles, rates and means agree exactly
    columns = ["per_second", "mean_seconds", "p50_seconds", "p90_seconds", "p99_seconds"]
    key = ["timestamp", "node", "metric"]
    expected = pure.latency[(pure.latency["timestamp"] >= start)].copy()
    merged = expected.astype({"node": object, "metric": object}).merge(
        live.latency.astype({"node": object, "metric": object}), on=key, suffixes=("", "_live"), how="outer",
        indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][key + ["_merge"]]
    for column in columns:
        pd.testing.assert_series_equal(merged[column], merged[column + "_live"], check_names=False, rtol=1e-9)
    rules = live.rule_counts[live.rule_counts["node"] == "node-a"]
    assert rules["rules"].tolist() == [15, 16, 17, 18]
    status = live.status[live.status["node"] == "node-b"].set_index("timestamp")
    assert status.loc[end, "endpoint_changes_total"] == 18 and status.loc[end, "proxy_mode"] == "iptables"


@pytest.mark.slow
def test_get_kube_state_equals_the_pure_frames(prometheus):
    url, _ = prometheus
    samples = read_metrics_text(SERIES)
    for stamp in sorted(samples["timestamp"].unique()):
        live = get_kube_state(url, at=stamp)
        pure = kube_state_frames(samples, at=stamp)
        assert live.variant == pure.variant == "endpointslice"
        for name in ("services", "endpoints", "pods", "nodes"):
            pd.testing.assert_frame_equal(live[name], pure[name], check_categorical=False)
    shop = get_kube_state(url, namespace="no-such-namespace", at=stamp)
    assert shop.endpoints.empty and shop.pods.empty and len(shop.nodes) == 2


@pytest.mark.slow
def test_get_kube_state_on_a_live_scrape(tmp_path):
    # Prometheus scrapes the lab's kube-state-metrics text every second; the state it answers
    # is the state read from the same text directly
    from npanalytics.lab.metrics import kube_state_metrics_text, serve_metrics
    from npanalytics.lab.scenario import scenario_from_dict

    prometheus_binary = shutil.which("prometheus")
    _need(prometheus_binary, "needs the prometheus binary")
    scenario = scenario_from_dict({
        "name": "live", "nodes": [{"name": "node-a", "zone": "z1"}, {"name": "node-b", "zone": "z2"}],
        "pods": [{"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
                 {"name": "web-2", "node": "node-b", "labels": {"app": "web"}, "ready": False}],
        "services": [{"name": "web", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}],
        "traffic": {"requests": 10},
    })
    text = kube_state_metrics_text(scenario)
    metrics, url = serve_metrics(lambda: text)
    server = None
    try:
        target = url.removeprefix("http://").removesuffix("/metrics")
        server = start_prometheus(prometheus_binary, tmp_path, targets=[target])
        assert wait_for(lambda: bool(_instant(server.url, "kube_pod_info", time.time())), timeout=60)
        live = get_kube_state(server.url)
        pure = kube_state_frames(read_metrics_text(url))
        assert live.variant == pure.variant == "endpointslice"
        for name in ("services", "endpoints", "pods", "nodes"):
            pd.testing.assert_frame_equal(live[name], pure[name], check_categorical=False)
        assert sorted(zip(live.endpoints["target_pod"], live.endpoints["ready"])) == [("web-1", True), ("web-2", False)]
    finally:
        if server is not None:
            server.stop()
        metrics.stop()


def test_direct_scrapes_of_several_nodes():
    # each kube-proxy scraped on its own, tagged with its node, read together
    samples = concat_samples([
        read_metrics_text(DATA / "kube-proxy-1.32-iptables.txt", at=AT).assign(node="node-a"),
        read_metrics_text(DATA / "kube-proxy-1.33-nftables.txt", at=AT).assign(node="node-b")])
    assert samples["node"].dtype == "category" and samples["ip_family"].dtype == "category"
    # 1.32 has no ip_family at all; 1.33 leaves it off the change counters and gauges
    no_family = len(read_metrics_text(DATA / "kube-proxy-1.32-iptables.txt")) + sum(
        not line.startswith("#") and "ip_family" not in line
        for line in (DATA / "kube-proxy-1.33-nftables.txt").read_text().splitlines())
    assert samples["ip_family"].isna().sum() == no_family == 152 + 4
    proxy = kube_proxy_frames(samples)
    assert "node from the 'node' label" in proxy.notes
    modes = dict(zip(proxy.status["node"], proxy.status["proxy_mode"]))
    assert modes == {"node-a": "iptables", "node-b": "nftables"}
    assert set(proxy.rule_counts["node"]) == {"node-a"}
    cluster = proxy.latency[proxy.latency["node"].isna()]
    assert cluster["metric"].tolist() == ["network_programming"] and cluster["observations"].tolist() == [6.0]


LIVE = """
name: live-text
nodes:
  - {name: node-a, zone: zone-a, proxy_mode: iptables-legacy}
  - {name: node-b, zone: zone-b, proxy_mode: nftables}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
  - {name: web-2, node: node-b, labels: {app: web}}
services:
  - {name: web, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082}]}
traffic: {requests: 10}
"""


def test_the_labs_live_text_reads_into_both_catalogs():
    # what `npanalytics lab up --serve-metrics` serves: KSM and each node's kube-proxy (instance=<node>)
    # in one document (a stand-in topology, as in tests/test_lab_record.py: no root needed)
    import types

    from npanalytics.lab.record import live_metrics_text
    from npanalytics.lab.scenario import load_scenario
    from npanalytics.lab.topology import RuleLoad

    sc = load_scenario(LIVE)
    t0 = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.timezone.utc)
    flags = {p.name: {"ready": True, "serving": True, "terminating": False, "present": True} for p in sc.pods}
    flags["web-2"] = {"ready": False, "serving": True, "terminating": True, "present": True}
    topo = types.SimpleNamespace(
        scenario=sc, events=[], pod_state_flags=lambda: flags,
        rules_text={"node-a": "*nat\n-A KUBE-SERVICES -j KUBE-NODEPORTS\nCOMMIT\n",
                    "node-b": "table ip kube-proxy {\n}\n"},
        loads=[RuleLoad(n.name, n.proxy_mode, "initial sync", 0.01 * (i + 1), 10, "x", t0.isoformat())
               for i, n in enumerate(sc.nodes)])
    samples = read_metrics_text(live_metrics_text(topo, t0 + dt.timedelta(seconds=1)))
    state = kube_state_frames(samples)
    assert sorted(zip(state.endpoints["target_pod"], state.endpoints["ready"], state.endpoints["terminating"])) == [
        ("web-1", True, False), ("web-2", False, True)]
    proxy = kube_proxy_frames(samples, nodes=state.nodes)
    assert dict(zip(proxy.status["node"], proxy.status["proxy_mode"])) == {"node-a": "iptables", "node-b": "nftables"}
    sync = proxy.latency[proxy.latency["metric"] == "sync"].set_index("node")
    assert sync["mean_seconds"].to_dict() == pytest.approx({"node-a": 0.01, "node-b": 0.02})


# -- malformed histogram buckets -----------------------------------------------------------------

BUCKETS = """# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"} 1
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="+Inf"} 2
kubeproxy_sync_proxy_rules_duration_seconds_sum 0.01
kubeproxy_sync_proxy_rules_duration_seconds_count 2
"""


def test_a_bucket_without_le_is_a_parse_error_naming_the_metric():
    from npanalytics import ParseError

    samples = read_metrics_text(BUCKETS, at=AT)
    assert kube_proxy_frames(samples, node="n").latency["observations"].tolist() == [2]  # the intact histogram
    name = "kubeproxy_sync_proxy_rules_duration_seconds_bucket"
    with pytest.raises(ParseError, match=rf"{name} samples:0: expected an 'le' label .* on every {name} sample, "
                                         rf"got 'sample 0: {name}\{{\}} 1.0'"):
        kube_proxy_frames(samples.drop(columns="le"), node="n")  # no le column at all (was KeyError: 'le')
    one_missing = samples.copy()
    one_missing.loc[1, "le"] = None  # the +Inf bucket lost its label: not silently dropped
    with pytest.raises(ParseError, match=r"got 'sample 1: kubeproxy_sync_proxy_rules_duration_seconds_bucket\{\}"):
        kube_proxy_frames(one_missing, node="n")
    bad = samples.assign(le=samples["le"].cat.rename_categories({"0.001": "fast"}))
    with pytest.raises(ParseError, match=r'got \'sample 0: \S+_bucket\{le="fast"\} 1.0\''):
        kube_proxy_frames(bad, node="n")
