"""read_metrics_text: exposition text and OpenMetrics into prom_samples, from files, strings and scrapes."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from npanalytics import CollectorError, ParseError, read_metrics_text
from npanalytics.lab.metrics import kube_proxy_metrics_text, serve_metrics
from npanalytics.schemas import validate_frame

DATA = Path(__file__).parent / "data" / "metrics"
DATASET = Path(__file__).parent.parent / "datasets" / "endpoint-removed-stale" / "raw" / "metrics"
AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def sample_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def as_set(frame: pd.DataFrame, drop=("timestamp",)) -> set:
    labels = [c for c in frame.columns if c not in ("timestamp", "value", "__name__") and c not in drop]
    out = set()
    for record in frame.to_dict("records"):
        pairs = tuple(sorted((k, record[k]) for k in labels if isinstance(record[k], str)))
        out.add((record["__name__"], pairs, record["value"]))
    return out


def test_reads_every_sample_with_its_labels():
    path = DATA / "kube-proxy-1.32-iptables.txt"
    frame = read_metrics_text(path, at=AT)
    validate_frame(frame, "prom_samples")
    lines = sample_lines(path.read_text())
    assert len(frame) == len(lines)
    assert (frame["timestamp"] == pd.Timestamp(AT)).all()
    # each line's name, labels and value, read back independently with a regex
    expected = set()
    for line in lines:
        m = re.fullmatch(r'(\w+)(?:\{(.*)\})? (\S+)', line)
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        expected.add((m.group(1), labels, float(m.group(3).replace("Inf", "inf"))))
    assert as_set(frame) == expected
    buckets = frame[frame["__name__"] == "kubeproxy_sync_proxy_rules_duration_seconds_bucket"]
    assert buckets["le"].tolist()[:3] == ["0.001", "0.002", "0.004"] and buckets["le"].tolist()[-1] == "+Inf"
    assert frame["le"].dtype == "category" and frame["__name__"].dtype == "category"


def test_sources_str_bytes_gzip_and_file_object(tmp_path):
    text = (DATA / "kube-proxy-1.33-nftables.txt").read_text()
    reference = read_metrics_text(text, at=AT)
    packed = tmp_path / "scrape.txt.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    with open(DATA / "kube-proxy-1.33-nftables.txt", "rb") as handle:
        from_handle = read_metrics_text(handle, at=AT)
    for other in (read_metrics_text(text.encode(), at=AT), read_metrics_text(packed, at=AT), from_handle):
        pd.testing.assert_frame_equal(other, reference)


def test_own_timestamps_win_and_default_is_now():
    text = 'a{x="1"} 1 1764547200123\na{x="2"} 2\n'
    frame = read_metrics_text(text, at=AT)
    assert frame["timestamp"].tolist() == [pd.Timestamp("2025-12-01T00:00:00.123Z"), pd.Timestamp(AT)]
    before = pd.Timestamp.now(tz="UTC")
    now = read_metrics_text("b 1\n")
    assert before <= now["timestamp"].iloc[0] <= pd.Timestamp.now(tz="UTC")


def test_counter_names_as_written():
    text = "# TYPE c counter\nc 5\n# TYPE d_total counter\nd_total 6\n"
    frame = read_metrics_text(text, at=AT)
    assert frame["__name__"].tolist() == ["c", "d_total"]
    assert frame["value"].tolist() == [5.0, 6.0]


def test_openmetrics_with_several_timestamps_matches_the_text_scrapes():
    # series.om holds three scrapes of each node's kube-proxy (instance=<node>) and of KSM;
    # prometheus_client's OpenMetrics parser alone fails on it (+Inf bucket missing)
    from prometheus_client.openmetrics import parser

    text = (DATASET / "series.om").read_text()
    with pytest.raises(ValueError, match="Inf bucket missing"):
        list(parser.text_string_to_metric_families(text))
    frame = read_metrics_text(DATASET / "series.om")
    assert len(frame) == len(sample_lines(text))  # every sample line, none dropped
    stamps = sorted(frame["timestamp"].unique())
    assert len(stamps) == 3
    last = frame[(frame["timestamp"] == stamps[-1]) & (frame["instance"] == "node-b")]
    scrape = read_metrics_text(DATASET / "kube-proxy-node-b.txt", at=AT)
    assert as_set(last, drop=("timestamp", "instance")) == as_set(scrape)
    ksm = frame[frame["__name__"].astype(str).str.startswith("kube_") & (frame["timestamp"] == stamps[-1])]
    assert as_set(ksm) == as_set(read_metrics_text(DATASET / "kube-state-metrics.txt", at=AT))


def test_openmetrics_single_timestamp_and_exact_seconds():
    text = "# TYPE g gauge\ng 1.5 1764547200.25\n# EOF\n"
    frame = read_metrics_text(text)
    assert frame["timestamp"].tolist() == [pd.Timestamp("2025-12-01T00:00:00.25Z")]
    assert frame["value"].tolist() == [1.5]


def test_openmetrics_exemplars_and_repeated_series():
    # a histogram at two timestamps whose buckets carry exemplars (spaces inside a label value)
    text = "# TYPE h histogram\n" + "".join(
        f'h_bucket{{le="1"}} {k} {ts} # {{trace_id="a b"}} 0.5 {ts}\nh_bucket{{le="+Inf"}} {k} {ts}\n'
        f"h_sum {k * 0.5} {ts}\nh_count {k} {ts}\n" for k, ts in ((1, 10), (2, 20))) + "# EOF\n"
    frame = read_metrics_text(text)
    assert frame["timestamp"].dt.second.tolist() == [10] * 4 + [20] * 4
    assert frame["value"].tolist() == [1, 1, 0.5, 1, 2, 2, 1, 2]
    # prometheus_client keeps one of two samples of a series at one time: an error, not a silent drop
    with pytest.raises(ParseError, match=r"<string>:0: expected every sample line to be read.*'1 of 2 samples'"):
        read_metrics_text("# TYPE g gauge\ng 1 5\ng 2 5\n# EOF\n")


def test_parse_error_names_source_and_line():
    path = DATA / "broken-unquoted-label.txt"
    with pytest.raises(ParseError, match=r"broken-unquoted-label.txt:4: expected Prometheus text format") as info:
        read_metrics_text(path)
    assert info.value.lineno == 4 and "table=nat" in info.value.line
    with pytest.raises(ParseError, match=r"<string>:2: expected Prometheus text format.*got 'b\{x=\"1\"\} one'"):
        read_metrics_text('a 1\nb{x="1"} one\nc 3\n')


def test_openmetrics_family_error_points_at_the_family():
    with pytest.raises(ParseError, match=r"broken-openmetrics-no-inf.om:1: expected OpenMetrics text "
                                         r"\(prometheus_client: \+Inf bucket missing"):
        read_metrics_text(DATA / "broken-openmetrics-no-inf.om")
    with pytest.raises(ParseError, match=r"<string>:3: expected OpenMetrics.*Received line after # EOF"):
        read_metrics_text("a 1\n# EOF\nb 2\n", format="openmetrics")


def test_bad_arguments():
    with pytest.raises(ValueError, match="timezone-aware"):
        read_metrics_text("a 1\n", at=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="format must be one of"):
        read_metrics_text("a 1\n", format="json")
    with pytest.raises(ParseError, match=r"<bytes>:2: expected UTF-8"):
        read_metrics_text(b"a 1\nb\xff 2\n")


def test_scrape_over_http():
    text = kube_proxy_metrics_text("n", sync_durations_seconds=[0.01], rules_total={"nat": 7})
    server, url = serve_metrics(lambda: text)
    try:
        before = pd.Timestamp.now(tz="UTC")
        frame = read_metrics_text(url)
        assert as_set(frame) == as_set(read_metrics_text(text, at=AT))
        assert before <= frame["timestamp"].iloc[0] <= pd.Timestamp.now(tz="UTC")
        with pytest.raises(CollectorError, match=r"http://127\.0\.0\.1:\d+/other: HTTP 404"):
            read_metrics_text(url.replace("/metrics", "/other"))
    finally:
        server.stop()
    with pytest.raises(CollectorError, match=re.escape(url) + ": cannot scrape"):
        read_metrics_text(url, timeout=2)


def test_scrape_timeout_is_an_error_not_a_hang():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept():  # accept and stay silent
        conn, _ = listener.accept()
        accepted.append(conn)
        stop.wait(10)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(CollectorError, match=rf"http://127.0.0.1:{port}/metrics: cannot scrape.*timeout 0.5 s"):
            read_metrics_text(f"http://127.0.0.1:{port}/metrics", timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_on_bad_line_skip_and_warn():
    from npanalytics import ParseWarning

    path = DATA / "broken-unquoted-label.txt"
    frame = read_metrics_text(path, at=AT, on_bad_line="skip")
    assert frame["table"].tolist() == ["filter"] and frame["value"].tolist() == [4.0]
    report = frame.attrs["parse_report"]
    assert (report.lines_total, report.skipped_linenos, report.format) == (4, (4,), "prometheus-text")
    with pytest.warns(ParseWarning, match=r"skipped 2 of 5 lines \(line 2, 4\)"):
        frame = read_metrics_text('a 1\nb{x="1"} one\nc 3\nd{ 4\ne 5\n', at=AT, on_bad_line="warn")
    assert frame["__name__"].tolist() == ["a", "c", "e"]
    om = "# TYPE g gauge\ng 1 10\ng 2 20 30\ng 3 30\n# EOF\n"
    frame = read_metrics_text(om, on_bad_line="skip")
    assert frame["value"].tolist() == [1.0, 3.0] and frame.attrs["parse_report"].skipped_linenos == (3,)
    # a whole family's error is not one line's: it raises whatever the policy
    with pytest.raises(ParseError, match="Inf bucket missing"):
        read_metrics_text(DATA / "broken-openmetrics-no-inf.om", on_bad_line="skip")
    with pytest.raises(ValueError, match="on_bad_line must be one of"):
        read_metrics_text("a 1\n", on_bad_line="ignore")


def test_only_newline_ends_a_line():
    frame = read_metrics_text('a{x="p\u2028q\x1er"} 1\nb 2\n', at=AT)
    assert frame["x"].tolist()[0] == "p\u2028q\x1er" and len(frame) == 2
    with pytest.raises(ParseError, match=r"<string>:3: expected"):
        read_metrics_text('a{x="\u2028"} 1\nb 2\nc{ 3\n', at=AT)


def test_labels_named_like_the_frame_columns():
    frame = read_metrics_text('a{value="v",timestamp="t",x="1"} 1\nb{x="2"} 2\n', at=AT)
    assert list(frame.columns) == ["timestamp", "value", "__name__", "value_label", "timestamp_label", "x"]
    assert frame["value_label"].tolist()[0] == "v" and pd.isna(frame["value_label"].tolist()[1])
    assert frame["value"].tolist() == [1.0, 2.0]


def test_concat_samples_keeps_labels_categorical():
    from npanalytics import concat_samples

    a = read_metrics_text('x{a="1"} 1\n', at=AT)
    b = read_metrics_text('y{b="2"} 2\n', at=AT).assign(node="n")
    both = concat_samples([a, b])
    validate_frame(both, "prom_samples")
    assert list(both.columns) == ["timestamp", "value", "__name__", "a", "b", "node"]
    assert all(both[c].dtype == "category" for c in ("__name__", "a", "b", "node"))
    assert both["a"].tolist()[0] == "1" and pd.isna(both["a"].tolist()[1])
    assert both["__name__"].tolist() == ["x", "y"] and both["value"].tolist() == [1.0, 2.0]
    assert concat_samples([]).empty
