"""The pod server and the load generator, over loopback (no namespaces needed)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter

import pytest

from npanalytics.lab.podserver import PodCounts, make_server
from npanalytics.lab.podserver import main as podserver_main
from npanalytics.lab.traffic import Target, generate, weighted_order
from npanalytics.lab.traffic import main as traffic_main


@pytest.fixture
def pods():
    """Two pod servers on 127.0.0.1, ephemeral ports."""
    servers = []
    for name in ("pod-a", "pod-b"):
        counts = PodCounts(name)
        server = make_server(0, counts, "127.0.0.1")
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append((server, counts))
    yield servers
    for server, _ in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("weights", "count"), [([1, 1], 10), ([3, 1], 100), ([0, 2, 1], 31), ([0.5, 0.25], 12)])
def test_weighted_order_follows_weights(weights, count):
    order = weighted_order(weights, count)
    counts = Counter(order)
    for i, w in enumerate(weights):
        assert abs(counts[i] - count * w / sum(weights)) <= 1
        # the running share never drifts by more than one pick
        for k in range(1, count + 1):
            assert abs(order[:k].count(i) - k * w / sum(weights)) <= 1 + 1e-9


def test_weighted_order_needs_a_positive_weight():
    with pytest.raises(ValueError, match="at least one weight must be positive"):
        weighted_order([0, 0], 3)


def test_target_parse():
    t = Target.parse("198.18.0.11:30080:2.5")
    assert (t.host, t.port, t.weight, t.name) == ("198.18.0.11", 30080, 2.5, "198.18.0.11:30080")
    assert Target.parse("127.0.0.1:80").weight == 1.0
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="expected host:port"):
        Target.parse("nohost")
    with pytest.raises(argparse.ArgumentTypeError, match="negative weight"):
        Target.parse("h:1:-1")


def test_new_connection_per_request_counts(pods):
    (sa, ca), (sb, cb) = pods
    targets = [Target("127.0.0.1", sa.server_address[1], 3), Target("127.0.0.1", sb.server_address[1], 1)]
    report = generate(targets, ["127.0.0.1"], requests=40, max_seconds=20)
    assert report["outcomes"] == {"connections": 40, "requests_ok": 40}
    assert report["by_pod"] == {"pod-a": 30, "pod-b": 10}
    assert len(report["connect_latency_seconds"]) == 40
    assert all(0 < x < 5 for x in report["connect_latency_seconds"])
    assert ca.as_dict() == {"pod": "pod-a", "requests": {"127.0.0.1": 30}, "connections": {"127.0.0.1": 30}}
    assert cb.as_dict()["connections"] == {"127.0.0.1": 10}


def test_keep_alive_reuses_connections(pods):
    (sa, ca), _ = pods
    report = generate([Target("127.0.0.1", sa.server_address[1], 1)], [], requests=23, max_seconds=20,
                      requests_per_connection=5)
    assert report["outcomes"] == {"connections": 5, "requests_ok": 23}
    assert ca.as_dict()["requests"] == {"127.0.0.1": 23}
    assert ca.as_dict()["connections"] == {"127.0.0.1": 5}


def test_counts_endpoint_is_not_counted(pods):
    (sa, ca), _ = pods
    generate([Target("127.0.0.1", sa.server_address[1], 1)], [], requests=3, max_seconds=20)
    url = f"http://127.0.0.1:{sa.server_address[1]}/__counts"
    for _ in range(2):
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.loads(resp.read())
    assert data == {"pod": "pod-a", "requests": {"127.0.0.1": 3}, "connections": {"127.0.0.1": 3}}


def test_bounded_by_time_and_failures_counted():
    # nothing listens on port 1: every connection fails fast, and the time bound still holds
    report = generate([Target("127.0.0.1", 1, 1)], [], requests=50, max_seconds=5)
    assert report["outcomes"]["requests_failed"] == 50
    assert report["outcomes"]["connect_error:ConnectionRefusedError"] == 50
    stopped = generate([Target("127.0.0.1", 1, 1)], [], requests=10**9, max_seconds=0.3)
    assert stopped["stopped_by"] == "max_seconds"
    assert stopped["elapsed_seconds"] < 5


def test_podserver_exits_at_deadline(capsys):
    assert podserver_main(["--pod", "p", "--port", "0", "--host", "127.0.0.1", "--deadline", "0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "listening 0"
    assert json.loads(lines[1]) == {"pod": "p", "requests": {}, "connections": {}}


def test_traffic_cli_runs(pods, capsys):
    (sa, _), _ = pods
    assert traffic_main(["run", "--target", f"127.0.0.1:{sa.server_address[1]}", "--requests", "4",
                         "--mode", "keep-alive", "--requests-per-connection", "2", "--max-seconds", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcomes"] == {"connections": 2, "requests_ok": 4}
    assert traffic_main(["counts", f"http://127.0.0.1:{sa.server_address[1]}/__counts"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert list(counts.values())[0]["requests"] == {"127.0.0.1": 4}


@pytest.mark.parametrize(("args", "match"), [
    (["run", "--target", "127.0.0.1:1", "--requests", "0", "--max-seconds", "1"], "--requests must be in"),
    (["run", "--target", "127.0.0.1:1", "--requests", "1", "--max-seconds", "9999"], "--max-seconds must be in"),
])
def test_traffic_cli_bounds(args, match, capsys):
    with pytest.raises(SystemExit, match="2"):
        traffic_main(args)
    assert match in capsys.readouterr().err


def test_podserver_cli_bounds(capsys):
    with pytest.raises(SystemExit, match="2"):
        podserver_main(["--pod", "p", "--port", "0", "--deadline", "0"])
    assert "--deadline must be in" in capsys.readouterr().err


def test_every_target_sees_every_source(pods):
    (sa, ca), (sb, cb) = pods
    targets = [Target("127.0.0.1", sa.server_address[1], 1), Target("127.0.0.1", sb.server_address[1], 1)]
    sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    generate(targets, sources, requests=16, max_seconds=20)
    assert ca.as_dict()["connections"] == {s: 2 for s in sources}
    assert cb.as_dict()["connections"] == {s: 2 for s in sources}
