"""The Prometheus collectors against a real Prometheus (Debian's package, started per module).

Data gets in two real ways: ``promtool tsdb create-blocks-from openmetrics`` backfills a
recorded dataset's metrics (and a long synthetic series for chunking) before the start,
and Prometheus scrapes the lab's metrics endpoint live. Values are checked exactly
against the sources.
"""

from __future__ import annotations

import bisect
import math
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics import (
    CollectorError,
    connect_prometheus,
    get_prometheus_instant,
    get_prometheus_range,
    load_dataset,
)
from npanalytics.collect import DEFAULT_QUERIES, collect
from npanalytics.lab.metrics import SYNC_DURATION_BUCKETS, format_value, kube_proxy_metrics_text, openmetrics_series, serve_metrics

from prom_server import backfill, prometheus_binaries, start_prometheus, wait_for

pytestmark = pytest.mark.slow

DATASET = "etp-local-uneven"
CHUNK_T0 = 1_790_000_040  # a multiple of 60: the synthetic series' first sample
CHUNK_SAMPLES = 215  # one every 60 s: 3 h 34 min
DURATIONS = [0.003, 0.02, 0.02, 1.5, 0.0005]
RULES = {"nat": 42, "filter": 7}


def chunk_value(series: str, k: int) -> float:
    return k / 3 if series == "a" else -k * 1e-7


def chunk_openmetrics() -> str:
    frames = []
    for k in range(CHUNK_SAMPLES):
        text = "# TYPE npa_chunk gauge\n" + "".join(
            f'npa_chunk{{series="{s}"}} {format_value(chunk_value(s, k))}\n' for s in ("a", "b"))
        frames.append((CHUNK_T0 + 60 * k, text))
    return openmetrics_series(frames)


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    prometheus, promtool = prometheus_binaries()
    root = tmp_path_factory.mktemp("prometheus")
    backfill(promtool, load_dataset(DATASET).raw["raw/metrics/series.om"].decode(), root / "tsdb", "dataset")
    backfill(promtool, chunk_openmetrics(), root / "tsdb", "chunk")
    text = kube_proxy_metrics_text("node-a", sync_durations_seconds=DURATIONS, rules_total=RULES)
    metrics, url = serve_metrics(lambda: text)
    server = None
    try:
        server = start_prometheus(prometheus, root, targets=[url.removeprefix("http://").removesuffix("/metrics")])
        yield server
    finally:
        if server is not None:
            server.stop()
        metrics.stop()


@pytest.fixture
def client(prom):
    return connect_prometheus(prom.url, timeout=20, retries=1, backoff=0.05)


# -- an independent reader of the backfilled source ------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+) (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def om_samples(text: str) -> set[tuple]:
    """(sorted labels incl. __name__, timestamp ms, value) of every sample line."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, body, value, stamp = _SAMPLE.match(line).groups()
        labels = {k: re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
                  for k, v in _LABEL.findall(body or "") if v}  # Prometheus drops empty labels
        labels["__name__"] = name
        out.add((tuple(sorted(labels.items())), round(float(stamp) * 1000), float(value)))
    return out


def frame_samples(df: pd.DataFrame) -> set[tuple]:
    labels = [c for c in df.columns if c not in ("timestamp", "value")]
    out = set()
    stamps = df["timestamp"].astype("int64") // 1_000_000
    for i, (ms, value) in enumerate(zip(stamps, df["value"])):
        items = tuple(sorted((k, str(df[k].iat[i])) for k in labels if not pd.isna(df[k].iat[i])))
        out.add((items, int(ms), float(value)))
    return out


def test_backfilled_dataset_reads_back_exactly(client):
    source = om_samples(load_dataset(DATASET).raw["raw/metrics/series.om"].decode())
    stamps = sorted({ms for _, ms, _ in source})
    first, last = stamps[0], stamps[-1]
    # a range selector evaluated at the last sample gives every raw sample with its own time
    window_ms = last - first + 1000
    df = get_prometheus_instant(client, f'{{__name__=~".+",job!="lab"}}[{window_ms}ms]', at=last / 1000)
    assert df.attrs["result_type"] == "matrix"
    npanalytics.validate_frame(df, "prom_samples")
    got = frame_samples(df)
    assert len(got) == len(df) == len(source) > 500
    assert got == source
    # and an instant query at the first moment: one sample per series, the source's values
    at_first = get_prometheus_instant(client, '{__name__=~"kube_endpoint_address|kubeproxy_sync_proxy_rules_iptables_total"}',
                                      at=first / 1000)
    assert (at_first["timestamp"] == pd.Timestamp(first, unit="ms", tz="UTC")).all()
    expected = {(labels, value) for labels, ms, value in source if ms == first
                and dict(labels)["__name__"] in ("kube_endpoint_address", "kubeproxy_sync_proxy_rules_iptables_total")}
    assert {(labels, value) for labels, _, value in frame_samples(at_first)} == expected


def test_endpoints_per_service_match_the_recording(client):
    ds = load_dataset(DATASET)
    source = om_samples(ds.raw["raw/metrics/series.om"].decode())
    last = max(ms for _, ms, _ in source)
    df = get_prometheus_instant(client, "count by (namespace, endpoint) (kube_endpoint_address)", at=last / 1000)
    assert "__name__" not in df.columns  # an aggregation has no metric name
    expected: dict[tuple, int] = {}
    for labels, ms, _ in source:
        labels = dict(labels)
        if ms == last and labels["__name__"] == "kube_endpoint_address":
            key = (labels["namespace"], labels["endpoint"])
            expected[key] = expected.get(key, 0) + 1
    got = {(r.namespace, r.endpoint): r.value for r in df.itertuples()}
    assert got == expected and expected


def expected_chunk_frame(start_s: int, end_s: int) -> pd.DataFrame:
    rows = []
    for series in ("a", "b"):
        for t in range(start_s, end_s + 1):
            k = (t - CHUNK_T0) // 60
            if 0 <= k < CHUNK_SAMPLES and t - (CHUNK_T0 + 60 * k) <= 300:  # 5 min lookback
                rows.append((pd.Timestamp(t, unit="s", tz="UTC"), chunk_value(series, k), series))
    df = pd.DataFrame(rows, columns=["timestamp", "value", "series"])
    return df.astype({"timestamp": "datetime64[ns, UTC]"})


def test_a_range_beyond_11000_points_is_chunked_exactly(client):
    start, end = CHUNK_T0 - 30, CHUNK_T0 + 12_300  # 12,331 evaluation times at 1 s
    calls = []
    df = get_prometheus_range(client, "npa_chunk", start, end, 1, on_response=lambda k, n, lo, body: calls.append((k, n, lo)))
    assert sorted(calls) == [(0, 2, (start) * 1000), (1, 2, (start + 11_000) * 1000)]
    npanalytics.validate_frame(df, "prom_samples")
    assert list(df.columns) == ["timestamp", "value", "__name__", "series"]
    expected = expected_chunk_frame(start, end)
    got = df[["timestamp", "value", "series"]].astype({"series": "str"})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.astype({"series": "str"}), check_exact=True)
    # no duplicate and no gap at the seam: every second once per series
    for _, part in df.groupby("series", observed=True):
        seconds = part["timestamp"].astype("int64").to_numpy() // 10**9
        assert (np.diff(seconds) == 1).all()


def test_many_small_chunks_in_parallel_give_the_same_frame(client):
    start, end = CHUNK_T0 + 17, CHUNK_T0 + 9_000
    whole = get_prometheus_range(client, "npa_chunk", start, end, "1s")
    calls = []
    parts = get_prometheus_range(client, "npa_chunk", start, end, "1s", max_points=997, max_workers=3,
                                 on_response=lambda k, n, lo, body: calls.append(n))
    assert calls == [10] * 10  # 8,984 points in chunks of 997
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)
    # a step that does not divide the range: the last evaluation time is start + k*step <= end
    odd = get_prometheus_range(client, 'npa_chunk{series="a"}', start, end, 7, max_points=100)
    seconds = odd["timestamp"].astype("int64").to_numpy() // 10**9
    assert seconds[0] == start and seconds[-1] == start + 7 * ((end - start) // 7)
    assert (np.diff(seconds) == 7).all()


def test_empty_result_is_an_empty_frame(client):
    df = get_prometheus_range(client, "npa_nothing_matches_this", CHUNK_T0, CHUNK_T0 + 600, 60)
    assert df.empty and list(df.columns) == ["timestamp", "value"]
    npanalytics.validate_frame(df, "prom_samples")
    df = get_prometheus_instant(client, "npa_nothing_matches_this")
    assert df.empty and list(df.columns) == ["timestamp", "value"]


def test_scalar_and_instant_at(client):
    df = get_prometheus_instant(client, "1 + 0.5", at="2026-01-02T03:04:05.678Z")
    assert df.attrs["result_type"] == "scalar"
    assert df["value"].tolist() == [1.5]
    assert df["timestamp"].tolist() == [pd.Timestamp("2026-01-02T03:04:05.678Z")]


def test_bad_query_carries_prometheus_message_and_the_query(client):
    with pytest.raises(CollectorError, match=r"HTTP 400 for query 'sum\(': bad_data: .*parse error") as info:
        get_prometheus_instant(client, "sum(")
    assert client.url in str(info.value)
    with pytest.raises(CollectorError, match=r"HTTP 400 .*'rate\(npa_chunk\)': bad_data: .*range vector"):
        get_prometheus_range(client, "rate(npa_chunk)", CHUNK_T0, CHUNK_T0 + 60, 15)


def test_live_scrape_of_the_lab_endpoint(client):
    def scraped():
        return not get_prometheus_instant(client, 'kubeproxy_sync_proxy_rules_iptables_total{job="lab"}').empty

    assert wait_for(scraped, timeout=30), "Prometheus did not scrape the lab's endpoint within 30 s"
    rules = get_prometheus_instant(client, 'kubeproxy_sync_proxy_rules_iptables_total{job="lab"}')
    assert {r.table: r.value for r in rules.itertuples()} == {k: float(v) for k, v in RULES.items()}
    assert set(rules["job"]) == {"lab"}
    buckets = get_prometheus_instant(client, 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{job="lab"}')
    got = {float(r.le): r.value for r in buckets.itertuples()}
    ordered = sorted(DURATIONS)
    expected = {b: float(bisect.bisect_right(ordered, b)) for b in SYNC_DURATION_BUCKETS}
    expected[math.inf] = float(len(DURATIONS))
    assert got == expected
    total = get_prometheus_instant(client, 'kubeproxy_sync_proxy_rules_duration_seconds_sum{job="lab"}')
    assert total["value"].tolist() == [math.fsum(DURATIONS)]


def test_collect_writes_a_rederivable_dataset(client, prom, tmp_path):
    source = om_samples(load_dataset(DATASET).raw["raw/metrics/series.om"].decode())
    stamps = sorted({ms for _, ms, _ in source})
    start, end = stamps[0] / 1000 - 2, stamps[-1] / 1000 + 2
    out = tmp_path / "recorded"
    done = subprocess.run(
        [sys.executable, "-m", "npanalytics.cli", "collect", "--prometheus", prom.url,
         "--start", f"{start:.3f}", "--end", f"{end:.3f}", "--step", "1s", "--out", str(out),
         "--query", "endpoints_per_service=count by (namespace, endpoint) (kube_endpoint_address)"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "\r" not in done.stderr  # no progress bar off a terminal
    ds = load_dataset(out)
    queried = {f for f, kind in ds.kinds.items() if kind == "prom_samples"}
    assert queried == set(DEFAULT_QUERIES) | {"endpoints_per_service"}  # and the catalogs: test_collect_catalogs.py
    for frame in queried:
        pd.testing.assert_frame_equal(ds.rederive(frame), ds.frames[frame], check_exact=True)
        assert ds.derivations[frame][0].raw == f"raw/prometheus/{frame}.json"
    direct = get_prometheus_range(client, "kube_endpoint_address", start, end, 1)
    pd.testing.assert_frame_equal(ds["kube_endpoint_address"], direct, check_exact=True)
    assert not ds["kube_endpoint_address"].empty and ds["kube_service_labels"].empty
    assert ds.recording["prometheus_url"] == prom.url


def test_collect_keeps_every_chunk_response(prom, tmp_path):
    client = connect_prometheus(prom.url)
    ds = collect(tmp_path / "chunked", prometheus=client, start=CHUNK_T0, end=CHUNK_T0 + 12_000, step=1,
                 queries={"chunk": "npa_chunk"}, default_queries=False, progress=False)
    body = ds.raw["raw/prometheus/chunk.json"]
    assert body.startswith(b'[{"status":"success"') and body.count(b'"status":"success"') == 2
    pd.testing.assert_frame_equal(ds.rederive("chunk"), ds["chunk"], check_exact=True)
    assert len(ds["chunk"]) == 2 * 12_001


def test_killed_during_a_chunked_query_gives_an_error_not_part_of_the_data(tmp_path):
    prometheus, promtool = prometheus_binaries()
    backfill(promtool, chunk_openmetrics(), tmp_path / "tsdb", "chunk")
    server = start_prometheus(prometheus, tmp_path)
    try:
        client = connect_prometheus(server.url, timeout=10, retries=1, backoff=0.05)
        done = []

        def kill_after_first(k, n, lo, body):
            done.append(k)
            if len(done) == 1:
                server.process.kill()  # SIGKILL while the other chunks are in flight or queued

        started = time.monotonic()
        with pytest.raises(CollectorError, match=rf"{server.url}/api/v1/query_range: cannot query Prometheus"):
            get_prometheus_range(client, "npa_chunk", CHUNK_T0, CHUNK_T0 + 9_999, 1, max_points=100, max_workers=2,
                                 on_response=kill_after_first)
        assert time.monotonic() - started < 30
        assert 1 <= len(done) < 100  # some chunks arrived, and still no frame came back
        server.process.wait(timeout=10)
    finally:
        server.stop()
