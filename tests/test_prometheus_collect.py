"""npanalytics.collect: arguments, times, progress and the dataset it writes (against a fake Prometheus)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from npanalytics import CollectorError, PrometheusWarning, load_dataset
from npanalytics.cli import main
from npanalytics.collect import DEFAULT_QUERIES, _ksm_selector, collect, parse_time

from prom_server import Answer, FakePrometheus, success

T0 = 1_700_000_000


def answer_with_name(seen):
    """A matrix with one sample per evaluation time, named after the query (instant queries: none)."""
    if "start" not in seen.params:  # the kube-state-metrics catalog's instant query
        return Answer(body=success("matrix", []))
    start, end = float(seen.params["start"]), float(seen.params["end"])
    step = int(seen.params["step"].removesuffix("ms")) / 1000
    times = [start + k * step for k in range(int(round((end - start) / step)) + 1)]
    le = {"le": "+Inf"} if seen.params["query"].endswith("_bucket") else {}
    return Answer(body=success("matrix", [{"metric": {"__name__": seen.params["query"], "node": "n1", **le},
                                           "values": [[t, str(t - T0)] for t in times]}]))


def test_parse_time():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert parse_time("now", now=now) == pd.Timestamp(now)
    assert parse_time("now-90m", now=now) == pd.Timestamp("2026-01-02T01:34:05Z")
    assert parse_time("1700000000.5") == pd.Timestamp("2023-11-14T22:13:20.5Z")
    assert parse_time("2026-01-02T03:04:05+02:00") == pd.Timestamp("2026-01-02T01:04:05Z")
    assert parse_time(T0) == pd.Timestamp(T0, unit="s", tz="UTC")
    with pytest.raises(ValueError, match="has no zone; add Z for UTC"):
        parse_time("2026-01-02T03:04:05")
    with pytest.raises(ValueError, match="expected now-<duration> such as now-1h, got 'now-soon'"):
        parse_time("now-soon")
    with pytest.raises(ValueError, match="expected now, now-<duration>, ISO 8601 or Unix seconds"):
        parse_time("yesterday")


def test_collect_writes_frames_raw_and_provenance(tmp_path):
    with FakePrometheus(answer_with_name) as fake:
        ds = collect(tmp_path / "rec", prometheus=fake.url.replace("://", "://u:secret@"), start=T0, end=T0 + 60,
                     step="30s", queries={"extra": "sum(up)"}, progress=False)
        sent = {r.params["query"] for r in fake.requests}
    assert sent == set(DEFAULT_QUERIES.values()) | {"sum(up)", _ksm_selector()}
    again = load_dataset(tmp_path / "rec")
    queried = {f for f, kind in again.kinds.items() if kind == "prom_samples"}
    assert queried == set(DEFAULT_QUERIES) | {"extra"}  # and the catalogs: test_collect_catalogs.py
    df = again["extra"]
    assert df["value"].tolist() == [0.0, 30.0, 60.0] and df["__name__"].tolist() == ["sum(up)"] * 3
    for frame in queried:
        pd.testing.assert_frame_equal(again.rederive(frame), again.frames[frame], check_exact=True)
    assert again.recording["start_utc"] == "2023-11-14T22:13:20+00:00"
    assert again.recording["queries"]["extra"] == "sum(up)" and again.recording["step"] == "30s"
    assert ds.path == tmp_path / "rec"
    assert again.recording["prometheus_url"] == fake.url and "secret" not in (tmp_path / "rec" / "manifest.json").read_text()


def test_collect_shows_a_bar_only_when_asked_or_on_a_terminal(tmp_path, capfd):
    with FakePrometheus(answer_with_name) as fake:
        collect(tmp_path / "a", prometheus=fake.url, start=T0, end=T0 + 30, step=15,
                queries={"q": "up"}, default_queries=False, progress=True)
        assert "collect" in capfd.readouterr().err
        collect(tmp_path / "b", prometheus=fake.url, start=T0, end=T0 + 30, step=15,
                queries={"q": "up"}, default_queries=False)  # stderr is not a terminal under pytest
        assert capfd.readouterr().err == ""


def test_collect_fails_whole_and_writes_nothing(tmp_path):
    def answer(seen):
        if seen.params["query"] == "bad":
            return Answer(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')
        return answer_with_name(seen)

    with FakePrometheus(answer) as fake:
        with pytest.raises(CollectorError, match="HTTP 400 for query 'bad': bad_data: parse error"):
            collect(tmp_path / "rec", prometheus=fake.url, start=T0, end=T0 + 30, step=15,
                    queries={"ok": "up", "broken": "bad"}, default_queries=False)
    assert not (tmp_path / "rec").exists()


def test_collect_keeps_warnings_in_the_manifest(tmp_path):
    def answer(seen):
        body = success("matrix", [{"metric": {}, "values": [[T0, "1"]]}], warnings=["partial response"])
        return Answer(body=body)

    with FakePrometheus(answer) as fake, pytest.warns(PrometheusWarning, match="partial response"):
        ds = collect(tmp_path / "rec", prometheus=fake.url, start=T0, end=T0, step=15,
                     queries={"q": "up"}, default_queries=False)
    assert ds.recording["warnings"] == {"q": ["partial response"]}


@pytest.mark.parametrize("kwargs, message", [
    ({}, "collect needs a source: prometheus="),
    ({"prometheus": "http://127.0.0.1:1", "queries": {"a b": "up"}}, "query name 'a b' must start with a letter"),
    ({"prometheus": "http://127.0.0.1:1", "queries": {"q": " "}}, "query 'q' is empty"),
    ({"prometheus": "http://127.0.0.1:1", "default_queries": False}, "no queries"),
    ({"prometheus": "http://127.0.0.1:1", "start": T0 + 10, "end": T0}, "is before start"),
    ({"prometheus": "http://127.0.0.1:1", "name": "Not A Name"}, r"dataset name must match .* got 'Not A Name'"),
])
def test_collect_checks_its_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        collect(tmp_path / "x", **kwargs)


def test_collect_refuses_an_existing_folder_before_querying(tmp_path):
    (tmp_path / "rec").mkdir()
    with FakePrometheus(answer_with_name) as fake:
        with pytest.raises(ValueError, match="exists; pass overwrite=True"):
            collect(tmp_path / "rec", prometheus=fake.url, start=T0, end=T0, step=15)
        assert fake.requests == []
        ds = collect(tmp_path / "rec", prometheus=fake.url, start=T0, end=T0, step=15, overwrite=True,
                     queries={"q": "up"}, default_queries=False)
    assert load_dataset(tmp_path / "rec").frames.keys() == ds.frames.keys() == {"q"}


def test_cli_collect(tmp_path, capsys):
    with FakePrometheus(answer_with_name) as fake:
        status = main(["collect", "--prometheus", fake.url, "--start", str(T0), "--end", str(T0 + 15), "--step", "15s",
                       "--out", str(tmp_path / "rec"), "--no-default-queries", "--query", "up",
                       "--query", "rate5m=rate(x[5m])", "--header", "X-Scope-OrgID: t1"])
        assert {r.headers["x-scope-orgid"] for r in fake.requests} == {"t1"}
    out = capsys.readouterr().out
    assert status == 0 and f"wrote {tmp_path / 'rec'}: 2 frames, 4 samples" in out
    assert set(load_dataset(tmp_path / "rec").frames) == {"up", "rate5m"}
    status = main(["collect", "--prometheus", "http://127.0.0.1:1", "--out", str(tmp_path / "x"),
                   "--insecure", "--ca-cert", "ca.pem"])
    assert status == 2 and "either --insecure or --ca-cert" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collect", "--prometheus", "http://x", "--out", str(tmp_path / "y"), "--query", "a b=up"])
