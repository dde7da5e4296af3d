"""read_prometheus_response, and the HTTP layer's requests and faults (against local HTTP servers)."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics import (
    CollectorError,
    ParseError,
    PrometheusWarning,
    connect_prometheus,
    get_prometheus_instant,
    get_prometheus_range,
    read_prometheus_response,
)
from npanalytics.collectors import prometheus as prom_module

from prom_server import Answer, FakePrometheus, free_port, success

T0 = 1_700_000_000


def matrix(series: list[tuple[dict, list]], **extra) -> bytes:
    return success("matrix", [{"metric": m, "values": v} for m, v in series], **extra)


# -- read_prometheus_response -------------------------------------------------------------------


def test_matrix_to_tidy_frame():
    body = matrix([
        ({"__name__": "up", "job": "a", "value": "x"}, [[T0, "1"], [T0 + 15.5, "NaN"]]),
        ({"__name__": "up", "job": "b", "zone": 'z "1"'}, [[T0, "+Inf"], [T0 + 15.5, "-0.25"], [T0 + 31, "1e+06"]]),
    ])
    df = read_prometheus_response(body)
    npanalytics.validate_frame(df, "prom_samples")
    assert list(df.columns) == ["timestamp", "value", "__name__", "job", "value_label", "zone"]
    assert df["timestamp"].tolist() == [pd.Timestamp(t, unit="s", tz="UTC") for t in
                                        (T0, T0 + 15.5, T0, T0 + 15.5, T0 + 31)]
    np.testing.assert_array_equal(df["value"].to_numpy(), [1.0, np.nan, math.inf, -0.25, 1e6])
    assert df["job"].tolist() == ["a", "a", "b", "b", "b"]
    assert df["value_label"].tolist()[:2] == ["x", "x"] and df["value_label"].isna().tolist()[2:] == [True] * 3
    assert df["zone"].isna().tolist() == [True, True, False, False, False] and df["zone"].iat[2] == 'z "1"'
    for col in ("__name__", "job", "value_label", "zone"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype)
    assert df.attrs["result_type"] == "matrix" and df.attrs["warnings"] == []


def test_vector_and_scalar(tmp_path):
    vector = success("vector", [{"metric": {"pod": "p1"}, "value": [T0 + 0.123, "2.5"]},
                                {"metric": {"pod": "p2"}, "value": [T0 + 0.123, "3"]}])
    path = tmp_path / "v.json"
    path.write_bytes(vector)
    df = read_prometheus_response(path)
    assert list(df.columns) == ["timestamp", "value", "pod"]
    assert df["value"].tolist() == [2.5, 3.0] and df["pod"].tolist() == ["p1", "p2"]
    assert (df["timestamp"] == pd.Timestamp("2023-11-14T22:13:20.123Z")).all()
    scalar = read_prometheus_response(success("scalar", [T0, "42"]).decode())
    assert list(scalar.columns) == ["timestamp", "value"] and scalar["value"].tolist() == [42.0]
    empty = read_prometheus_response(success("vector", []))
    assert empty.empty and list(empty.columns) == ["timestamp", "value"]
    npanalytics.validate_frame(empty, "prom_samples")


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "status": "success",\n  "data": {"resultType": "vector" "result": []}\n}\n')
    with pytest.raises(ParseError, match=r"broken.json:3: expected JSON \(column 35: Expecting ',' delimiter\)") as info:
        read_prometheus_response(path)
    assert info.value.lineno == 3 and info.value.column == 35


def test_truncated_and_error_responses():
    body = matrix([({"a": "1"}, [[T0, "1"]] * 3)])
    with pytest.raises(ParseError, match=r"<bytes>:1: expected JSON \(column \d+: "):
        read_prometheus_response(body[:-5])
    error = b'{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}'
    with pytest.raises(ParseError, match=r'expected status "success" at the top level, got "status \'error\', '
                                         r'bad_data: 1:5: parse error: unclosed left parenthesis"'):
        read_prometheus_response(error)


@pytest.mark.parametrize("body, where", [
    (b'{"status":"success"}', r"expected an object with \"resultType\" and \"result\" at \.data"),
    (success("string", [T0, "x"]), r"expected matrix, vector or scalar at \.data\.resultType, got 'string'"),
    (success("matrix", [{"metric": {}, "values": [[T0, "1"], [T0, "x"]]}]),
     r"expected a sample value as a string .* at \.data\.result\[0\]\.values\[1\], got 'x'"),
    (success("matrix", [{"metric": {}, "values": [[T0, "1"]]}, {"metric": {}, "values": [["t", "1"]]}]),
     r"expected a sample \[<unix seconds>, \"<value>\"\] at \.data\.result\[1\]\.values\[0\]"),
    (success("matrix", [{"metric": {}, "histograms": [[T0, {}]]}]),
     r"native histograms are not supported\) at \.data\.result\[0\], got \"native histograms"),
    (b"[]", r"expected a response object or a non-empty array of them at the top level"),
])
def test_content_errors_name_the_json_path(body, where):
    with pytest.raises(ParseError, match=where):
        read_prometheus_response(body)


def test_warnings_become_python_warnings():
    body = matrix([({"a": "1"}, [[T0, "1"]])], warnings=["remote read failed: partial result"])
    with pytest.warns(PrometheusWarning, match=r"the data may be partial\): remote read failed: partial result"):
        df = read_prometheus_response(body)
    assert df.attrs["warnings"] == ["remote read failed: partial result"] and len(df) == 1


def test_an_array_of_chunk_responses_is_joined_per_series():
    first = matrix([({"s": "a"}, [[T0, "1"], [T0 + 1, "2"]]), ({"s": "b"}, [[T0 + 1, "5"]])])
    second = matrix([({"s": "b"}, [[T0 + 2, "6"]]), ({"s": "c"}, [[T0 + 2, "9"]]), ({"s": "a"}, [[T0 + 2, "3"]])])
    df = read_prometheus_response(b"[" + first + b"," + second + b"]")
    assert list(zip(df["s"], df["timestamp"].astype("int64") // 10**9 - T0, df["value"])) == [
        ("a", 0, 1.0), ("a", 1, 2.0), ("a", 2, 3.0), ("b", 1, 5.0), ("b", 2, 6.0), ("c", 2, 9.0)]
    with pytest.raises(ParseError, match=r"two samples of series \{'s': 'a'\} at 2023-11-14 22:13:20"):
        read_prometheus_response(b"[" + first + b"," + first + b"]")


def big_body(series: int = 300, points: int = 200, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((series, points)) * 10.0 ** rng.integers(-12, 12, (series, points))
    out = []
    for i in range(series):
        texts = [repr(float(v)) for v in values[i]]
        texts[i % points] = ("NaN", "+Inf", "-Inf", "0", "1e+06")[i % 5]
        metric = {"__name__": "m", "pod": f"p{i}", "node": f"n{i % 7}"}
        if i % 4 == 0:
            metric["zone"] = f"z\\{i % 3}\"é"
        out.append((metric, [[T0 + 15 * j + (0.001 * (j % 3)), texts[j]] for j in range(points)]))
    return matrix(out)


def test_the_fast_path_gives_the_plain_json_frame():
    body = big_body()
    assert len(body) > prom_module._FAST_ABOVE_BYTES
    fast = prom_module._parse_fast("x", body)
    assert fast is not None  # the compact form is read without json for the samples
    pd.testing.assert_frame_equal(prom_module._frame(fast), prom_module._frame(prom_module._parse_slow("x", body)),
                                  check_exact=True)
    pd.testing.assert_frame_equal(read_prometheus_response(body), prom_module._frame(fast), check_exact=True)
    chunks = b"[" + body + b"," + body.replace(b"[17", b"[18") + b"]"
    pd.testing.assert_frame_equal(prom_module._frame(prom_module._parse_fast("x", chunks)),
                                  prom_module._frame(prom_module._parse_slow("x", chunks)), check_exact=True)


@pytest.mark.parametrize("change", [
    lambda b: json.dumps(json.loads(b), indent=1).encode(),  # pretty-printed
    lambda b: b.replace(b'"1e+06"', b'"1\\u0065+06"'),  # an escape inside a value
    lambda b: b.replace(b'"values":[[', b'"values":[ [', 1),  # a space
    lambda b: b.replace(b'"NaN"', b'"nan"', 1),  # Arrow would read it; json-only checks still agree
])
def test_bodies_off_the_compact_form_read_the_same(change):
    body = big_body(series=60)
    expected = prom_module._frame(prom_module._parse_slow("x", body))
    changed = change(body)
    assert len(changed) > 0
    pd.testing.assert_frame_equal(read_prometheus_response(changed), expected, check_exact=True)


def test_bad_values_in_a_big_body_are_parse_errors_with_their_place():
    body = big_body(series=60).replace(b'"+Inf"', b'"+Inff"', 1)
    with pytest.raises(ParseError, match=r"at \.data\.result\[1\]\.values\[1\], got '\+Inff'"):
        read_prometheus_response(body)


# -- the HTTP layer against a fake server -----------------------------------------------------


def test_requests_sent_token_and_times():
    answer = Answer(body=matrix([({"a": "1"}, [[T0, "1"]])]))
    with FakePrometheus(lambda seen: answer) as fake:
        prom = connect_prometheus(fake.url + "/", token="s3cret", headers={"X-Scope-OrgID": "t1"}, timeout=7)
        df = get_prometheus_range(prom, "up", dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.timezone.utc),
                                  "2023-11-14T22:43:20.5Z", dt.timedelta(seconds=15))
        assert len(df) == 1
        (seen,) = fake.requests
    assert seen.method == "GET" and seen.path == "/api/v1/query_range"
    assert seen.params == {"query": "up", "start": "1700000000.500", "end": "1700001800.500", "step": "15000ms",
                           "timeout": "7000ms"}
    assert seen.headers["authorization"] == "Bearer s3cret" and seen.headers["x-scope-orgid"] == "t1"


def test_long_queries_are_posted_as_a_form():
    query = "sum(" + " + ".join(f'up{{pod="p{i}"}}' for i in range(200)) + ")"
    with FakePrometheus(lambda seen: Answer(body=success("vector", []))) as fake:
        get_prometheus_instant(connect_prometheus(fake.url), query, at=T0)
        get_prometheus_instant(connect_prometheus(fake.url), "up", at=T0)
    long, short = fake.requests
    assert long.method == "POST" and long.params["query"] == query and long.params["time"] == f"{T0}.000"
    assert short.method == "GET"


def test_not_running_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(CollectorError, match=rf"{url}/api/v1/query: cannot query Prometheus \(.*refused.*\); query 'up'"):
        get_prometheus_instant(connect_prometheus(url, retries=2, backoff=0.01), "up")
    assert time.monotonic() - started < 5


def test_credentials_in_the_url_stay_out_of_messages():
    port = free_port()
    with pytest.raises(CollectorError, match=rf"^http://127.0.0.1:{port}/api/v1/query: cannot query") as info:
        get_prometheus_instant(connect_prometheus(f"http://admin:hunter2@127.0.0.1:{port}", retries=0), "up")
    assert "hunter2" not in str(info.value) and "admin" not in str(info.value)


def test_slower_than_the_timeout_fails_in_time():
    with FakePrometheus(lambda seen: Answer(body=success("vector", []), delay=3)) as fake:
        prom = connect_prometheus(fake.url, timeout=0.5, retries=3)
        started = time.monotonic()
        with pytest.raises(CollectorError, match=r"no answer within 0\.5 s to query 'up'"):
            get_prometheus_range(prom, "up", T0, T0 + 60, 15)
        elapsed = time.monotonic() - started
        assert len(fake.requests) == 1  # a slow query is not sent again
    assert 0.5 <= elapsed < 1.5


def test_5xx_is_retried_a_bounded_number_of_times():
    body = b'{"status":"error","errorType":"unavailable","error":"too busy"}'
    with FakePrometheus(lambda seen: Answer(503, body)) as fake:
        with pytest.raises(CollectorError, match=r"HTTP 503 after 3 attempts for query 'up': unavailable: too busy"):
            get_prometheus_instant(connect_prometheus(fake.url, retries=2, backoff=0.01), "up")
        assert len(fake.requests) == 3
    replies = iter([Answer(502, b"bad gateway"), Answer(body=success("scalar", [T0, "1"]))])
    with FakePrometheus(lambda seen: next(replies)) as fake:
        df = get_prometheus_instant(connect_prometheus(fake.url, retries=2, backoff=0.01), "1")
        assert df["value"].tolist() == [1.0] and len(fake.requests) == 2


def test_422_carries_the_message_and_a_failed_chunk_fails_the_whole_range():
    def answer(seen):
        if float(seen.params["start"]) > T0:  # the second chunk
            return Answer(422, b'{"status":"error","errorType":"execution","error":"query processing would load too many samples"}')
        return Answer(body=matrix([({"a": "1"}, [[T0, "1"]])]))

    with FakePrometheus(answer) as fake:
        with pytest.raises(CollectorError, match=r"HTTP 422 for query 'up': execution: query processing would load"):
            get_prometheus_range(connect_prometheus(fake.url), "up", T0, T0 + 199, 1, max_points=100)
        assert len(fake.requests) == 2


def test_warnings_of_any_chunk_are_raised():
    def answer(seen):
        notes = {"warnings": ["partial: store down"]} if float(seen.params["start"]) > T0 else {}
        return Answer(body=matrix([({"a": "1"}, [[float(seen.params["start"]), "1"]])], **notes))

    with FakePrometheus(answer) as fake:
        with pytest.warns(PrometheusWarning, match=r"query 'up': Prometheus answered with warnings .*store down"):
            df = get_prometheus_range(connect_prometheus(fake.url), "up", T0, T0 + 19, 1, max_points=10)
    assert df.attrs["warnings"] == ["partial: store down"] and len(df) == 2


KILLED_SERVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
    print(s.getsockname()[1], flush=True)
    c, _ = s.accept(); c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 100000\\r\\n\\r\\n"
              b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],')
    print("sent", flush=True)
    time.sleep(60)
""")


def test_killed_in_the_middle_of_a_query():
    server = subprocess.Popen([sys.executable, "-c", KILLED_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        prom = connect_prometheus(f"http://127.0.0.1:{port}", timeout=20, retries=2, backoff=0.01)

        def kill_when_sent():
            assert server.stdout.readline().strip() == "sent"
            server.kill()

        import threading

        killer = threading.Thread(target=kill_when_sent)
        killer.start()
        started = time.monotonic()
        with pytest.raises(CollectorError, match=rf"127.0.0.1:{port}/api/v1/query_range: cannot query Prometheus"):
            get_prometheus_range(prom, "up", T0, T0 + 60, 15)
        killer.join(timeout=10)
        assert time.monotonic() - started < 10
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"start": dt.datetime(2024, 1, 1), "end": T0, "step": 1}, "start must be timezone-aware"),
    ({"start": T0 + 10, "end": T0, "step": 1}, r"end \(1700000000\) is before start"),
    ({"start": T0, "end": T0 + 1, "step": "0.0001s"}, "step must be a positive whole number of milliseconds"),
    ({"start": T0, "end": T0 + 1, "step": "soon"}, "step must be seconds, a timedelta or a duration"),
    ({"start": "yesterday", "end": T0 + 1, "step": 1}, "start must be a timezone-aware datetime, ISO 8601"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_prometheus_range("http://127.0.0.1:1", "up", **kwargs)


def test_a_client_without_timeout_still_times_out(monkeypatch):
    from prometheus_api_client import PrometheusConnect

    monkeypatch.setattr(prom_module, "DEFAULT_TIMEOUT", 0.3)
    with FakePrometheus(lambda seen: Answer(body=success("vector", []), delay=2)) as fake:
        prom = PrometheusConnect(fake.url)  # no timeout of its own
        with pytest.raises(CollectorError, match=r"no answer within 0\.3 s"):
            get_prometheus_instant(prom, "up")
        assert fake.requests[0].params["timeout"] == "300ms"


def test_connect_checks_its_arguments():
    with pytest.raises(ValueError, match="url must be an http:// or https:// URL"):
        connect_prometheus("localhost:9090")
    with pytest.raises(ValueError, match="either token= or an Authorization header"):
        connect_prometheus("http://x", token="t", headers={"authorization": "Basic y"})
    with pytest.raises(ValueError, match="retries must be a non-negative int"):
        connect_prometheus("http://x", retries=-1)
    prom = connect_prometheus("https://x:9090/prefix/", verify="/etc/ssl/certs/ca-certificates.crt", auth=("u", "p"))
    assert prom.url == "https://x:9090/prefix" and prom._session.verify.endswith("ca-certificates.crt")
    assert prom.auth == ("u", "p")
    with pytest.raises(TypeError, match="prom must be a URL or a PrometheusConnect"):
        get_prometheus_instant(42, "up")


def test_chunks_cover_every_evaluation_time_once():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 10**13), st.integers(0, 20_000), st.integers(0, 10**6), st.integers(1, 10**6),
           st.integers(1, 11_000))
    def check(start, points, extra, step, max_points):
        end = start + points * step + extra % step  # points + 1 evaluation times, end between two
        chunks = prom_module._chunks(start, end, step, max_points)
        # consecutive evaluation times: each chunk starts one step after the last one ended
        assert chunks[0][0] == start and chunks[-1][1] == start + (end - start) // step * step
        for (_, previous_end), (lo, _) in zip(chunks, chunks[1:]):
            assert lo == previous_end + step
        for lo, hi in chunks:
            assert lo <= hi and (hi - lo) % step == 0 and (hi - lo) // step + 1 <= max_points
        assert all((hi - lo) // step + 1 == max_points for lo, hi in chunks[:-1])  # as few as possible

    check()
