"""lab.record: one small real run recorded end to end (root), the live metrics served while it
runs, and the lab's JSON readers on broken input (no root)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import subprocess
import threading
import urllib.request
from collections import Counter

import pandas as pd
import pytest

from npanalytics.datasets import load_dataset
from npanalytics.exceptions import LabError, ParseError, ParseWarning
from npanalytics.lab.record import (
    GROUND_TRUTH_FORMAT,
    RULE_LOADS_FORMAT,
    ground_truth_json,
    read_ground_truth,
    read_rule_loads,
    record_run,
)
from npanalytics.lab.runner import run_scenario
from npanalytics.lab.scenario import load_scenario
from npanalytics.schemas import validate_frame

# two nodes in two proxy modes (both rule readers), an endpoint removed half-way
TINY = """
name: record-tiny
description: Two nodes (iptables-legacy, nftables), three pods, web-2 unready after 150 of 300 requests.
nodes:
  - {name: node-a, zone: zone-a, proxy_mode: iptables-legacy}
  - {name: node-b, zone: zone-b, proxy_mode: nftables}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
  - {name: web-2, node: node-a, labels: {app: web}}
  - {name: web-3, node: node-b, labels: {app: web}}
services:
  - name: web
    namespace: default
    type: NodePort
    selector: {app: web}
    externalTrafficPolicy: Cluster
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082, protocol: TCP}]
clients: {count: 4, addressing: distinct}
traffic:
  node_weights: {node-a: 1, node-b: 1}
  mode: new-connection-per-request
  requests: 300
  max_seconds: 20
events:
  - {at_request: 150, pod: web-2, action: unready}
"""
SYNC_COUNT = "kubeproxy_sync_proxy_rules_duration_seconds_count"


class Scraper:
    """Scrapes a URL every ``interval`` seconds from a thread until stopped (at most 1200 times)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.texts: list[str] = []
        self.errors: list[tuple[dt.datetime, BaseException]] = []
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, url: str) -> None:
        self.url = url
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        for _ in range(1200):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    self.texts.append(reply.read().decode())
            except Exception as exc:  # noqa: BLE001 - reported by the test
                if not self.done.is_set():
                    self.errors.append((dt.datetime.now(dt.timezone.utc), exc))
            if self.done.wait(self.interval):
                return

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None  # the tests use need_root: they skip (or fail in CI)
    scraper = Scraper()
    try:
        result = run_scenario(TINY, serve_metrics_port=0, on_metrics_url=scraper.start)
    finally:
        scraper.stop()
    ds = record_run(result, "record-tiny", "a tiny recorded run (test)")
    path = ds.save(tmp_path_factory.mktemp("rec") / "record-tiny")
    return result, ds, path, scraper


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_dataset_saves_loads_and_rederives(need_root, recorded):
    result, ds, path, _ = recorded
    loaded = load_dataset(path)  # checks every sha256 of the manifest
    assert set(loaded.frames) == {
        "conntrack_flows", "conntrack_stats", "proxy_services", "proxy_endpoints",
        "proxy_endpoints_before_event_1", "ground_truth", "ground_truth_after_event_1", "rule_loads",
        "k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes"}
    for frame, df in loaded.frames.items():
        validate_frame(df, loaded.kinds[frame])
        pd.testing.assert_frame_equal(df, loaded.rederive(frame), check_categorical=False)
        if frame in ("ground_truth_after_event_1", "k8s_services"):
            continue
        assert set(df["node"].astype(str)) >= {"node-a", "node-b"}, frame
    # the API objects say what the scenario says: one endpoint per pod, on the pod's node
    endpoints = loaded["k8s_endpoints"]
    assert dict(zip(endpoints["target_pod"].astype(str), endpoints["node"].astype(str))) == {
        p.name: p.node for p in result.scenario.pods}
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"raw/node-a/iptables-save.txt", "raw/node-b/nft-ruleset.txt",
            "raw/node-a/before-event-1/iptables-save.txt", "raw/node-b/before-event-1/nft-ruleset.txt",
            "raw/node-a/conntrack.txt", "raw/node-b/conntrack-stats.txt", "raw/ground_truth.json",
            "raw/rule_loads.json", "raw/scenario.yaml", "raw/metrics/series.om",
            "raw/metrics/kube-state-metrics.txt", "raw/metrics/kube-proxy-node-a.txt",
            "raw/metrics/kube-proxy-node-b.txt", "raw/k8s/services.json",
            "raw/k8s/start/endpointslices.json"} <= set(manifest["raw"])
    for rel, digest in manifest["raw"].items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest, rel
    assert load_scenario((path / "raw/scenario.yaml").read_text()) == result.scenario
    # 2 initial syncs + one reload per node for the event, in time order
    loads = loaded["rule_loads"]
    assert list(loads["reason"].astype(str)) == ["initial sync"] * 2 + ["web-2 unready"] * 2
    assert loads["timestamp"].is_monotonic_increasing


def test_ground_truth_is_the_pods_counts(need_root, recorded):
    result, ds, _, _ = recorded
    truth = ds["ground_truth"]
    got = truth.groupby("pod", observed=True)["requests"].sum().to_dict()
    assert got == {p: n for p, n in result.requests_per_pod().items() if n}
    assert sum(got.values()) == 300
    got = truth.groupby("pod", observed=True)["connections"].sum().to_dict()
    assert got == {p: n for p, n in result.connections_per_pod().items() if n}
    after = ds["ground_truth_after_event_1"]
    at_event = {p: sum(c["requests"].values()) for p, c in result.events[0]["pod_counts"].items()}
    assert after.groupby("pod", observed=True)["requests"].sum().to_dict() == {p: n for p, n in at_event.items() if n}
    assert sum(at_event.values()) == 150
    # web-2 got nothing after it was removed from every node's rules
    assert result.requests_per_pod()["web-2"] == at_event["web-2"]
    # eTP=Cluster masquerades NodePort traffic: the pods see the nodes' addresses (the node's
    # fabric address after a hop, its pod-bridge gateway for a local endpoint), never a client
    addresses = result.scenario.addresses()
    gateways = {str(next(ipaddress.ip_network(c).hosts())) for c in addresses.pod_cidrs.values()}
    assert set(truth["client"].astype(str)) <= set(result.node_ips.values()) | gateways


def test_k8s_lists_match_the_scenario(need_root, recorded):
    result, _, path, _ = recorded
    services = json.loads((path / "raw/k8s/services.json").read_text())
    assert services["kind"] == "ServiceList"
    assert [(s["metadata"]["name"], s["spec"]["type"], s["spec"]["ports"][0]["nodePort"])
            for s in services["items"]] == [("web", "NodePort", 30082)]
    pods_per_node = Counter(p.node for p in result.scenario.pods)
    for rel, ready in (("raw/k8s/start/endpointslices.json", {"web-1", "web-2", "web-3"}),
                       ("raw/k8s/endpointslices.json", {"web-1", "web-3"})):
        slices = json.loads((path / rel).read_text())
        assert slices["kind"] == "EndpointSliceList"
        endpoints = [e for s in slices["items"]
                     if s["metadata"]["labels"]["kubernetes.io/service-name"] == "web" for e in s["endpoints"]]
        assert Counter(e["nodeName"] for e in endpoints) == pods_per_node, rel
        assert {e["targetRef"]["name"] for e in endpoints if e["conditions"]["ready"]} == ready, rel
        for e in endpoints:
            assert e["addresses"] == [result.pod_ips[e["targetRef"]["name"]]]


def test_metrics_files_parse_and_backfill(need_root, need_binary, recorded, tmp_path):
    _, _, path, _ = recorded
    for name in ("kube-state-metrics.txt", "kube-proxy-node-a.txt", "kube-proxy-node-b.txt"):
        assert samples((path / "raw/metrics" / name).read_text()), name
    proxy = samples((path / "raw/metrics/kube-proxy-node-a.txt").read_text())
    assert proxy[(SYNC_COUNT, (("ip_family", "IPv4"),))] == 2  # initial sync + the event's reload
    promtool = need_binary("promtool")
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics",
                           str(path / "raw/metrics/series.om"), str(tmp_path / "tsdb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any(p.is_dir() and (p / "meta.json").exists() for p in (tmp_path / "tsdb").iterdir())


def test_metrics_were_served_during_the_run(need_root, recorded):
    result, _, _, scraper = recorded
    # the server stops with the lab, before run_scenario returns: later scrapes may fail
    assert not [exc for when, exc in scraper.errors if when <= result.traffic_finished]
    assert scraper.texts and result.metrics_scrapes is not None
    assert result.metrics_scrapes >= len(scraper.texts)
    first, last = samples(scraper.texts[0]), samples(scraper.texts[-1])
    for node in ("node-a", "node-b"):
        assert first[(SYNC_COUNT, (("instance", node), ("ip_family", "IPv4")))] == 1
        assert last[(SYNC_COUNT, (("instance", node), ("ip_family", "IPv4")))] == 2  # updated after the event's reloads

    def web2_unready(scrape):
        (value,) = [v for (name, labels), v in scrape.items() if name == "kube_pod_status_ready"
                    and dict(labels)["pod"] == "web-2" and dict(labels)["condition"] == "false"]
        return value

    assert (web2_unready(first), web2_unready(last)) == (0, 1)


def test_serve_metrics_port_is_checked_before_building():
    with pytest.raises(LabError, match=r"serve_metrics_port must be an int in \[0, 65535\]"):
        run_scenario(TINY, serve_metrics_port=70000)


# -- the readers on broken input (no root) ------------------------------------------------------

POD = '{"ip": "198.18.64.10", "node": "node-a", "pod": "web-1", "record": "pod"}'
COUNTS = ('{"at": "final", "client": "198.18.200.1", "connections": 2, "pod": "web-1", '
          '"record": "counts", "requests": 5}')
LOAD = ('{"command": "iptables-legacy-restore", "load_seconds": 0.01, "node": "node-a", '
        '"proxy_mode": "iptables-legacy", "reason": "initial sync", "rules": 20, "services": 1, '
        '"timestamp": "2026-11-30T23:50:01.123456+00:00"}')


def doc(fmt: str, *records: str) -> str:
    body = ",\n".join(records)
    return f'{{"format": "{fmt}", "records": [\n' + (body + "\n" if body else "") + "]}\n"


def test_ground_truth_round_trip():
    text = ground_truth_json({"web-1": {"node": "node-a", "ip": "198.18.64.10"},
                              "web-2": {"node": "node-b", "ip": "198.18.65.10"}},
                             {"final": {"web-1": {"requests": {"c1": 3, "c2": 1}, "connections": {"c1": 3}},
                                        "web-2": {"requests": {}, "connections": {}}},
                              "event-1": {"web-1": {"requests": {"c1": 1}, "connections": {"c1": 1}}}})
    df = read_ground_truth(text)
    assert df[["pod", "client", "requests", "connections"]].astype(str).values.tolist() == [
        ["web-1", "c1", "3", "3"], ["web-1", "c2", "1", "0"]]
    assert list(read_ground_truth(text, at="event-1")["requests"]) == [1]
    report = df.attrs["parse_report"]
    assert report.lines_parsed + report.lines_skipped == report.lines_total


@pytest.mark.parametrize("records, lineno, expected", [
    ((POD, "not json"), 3, r"a JSON object \(Expecting value at column 1\)"),
    ((POD, COUNTS.replace('"requests": 5', '"requests": -1')), 3, r"'requests' as a count >= 0"),
    ((POD, COUNTS.replace('"requests": 5', '"requests": 1')), 3, r"at most as many 'connections'"),
    ((POD, COUNTS.replace('"counts"', '"count"')), 3, r"'record' as 'pod' or 'counts'"),
    ((POD, COUNTS.replace('"web-1"', '"web-9"')), 3, r"a pod with a 'pod' record \(pod 'web-9' has none\)"),
    (("[1, 2]", COUNTS), 2, r"a JSON object, got '\[1, 2\],'"),
])
def test_ground_truth_bad_lines_raise(records, lineno, expected):
    text = doc(GROUND_TRUTH_FORMAT, *records)
    with pytest.raises(ParseError, match=rf"^truth\.json:{lineno}: expected (a ground-truth record with )?{expected}"):
        read_ground_truth(_named(text, "truth.json"))


def test_ground_truth_record_without_its_comma():
    text = doc(GROUND_TRUTH_FORMAT, POD, COUNTS).replace(POD + ",", POD)
    with pytest.raises(ParseError, match=r"^<string>:2: expected a JSON object followed by ',', got '\{\"ip\""):
        read_ground_truth(text)


def _named(text: str, name: str):
    import io

    buf = io.StringIO(text)
    buf.name = name
    return buf


def test_ground_truth_header_and_closing_lines():
    with pytest.raises(ParseError, match=r"^g\.json:1: expected the header line .*npanalytics-lab-ground-truth/1"):
        read_ground_truth(_named(doc(RULE_LOADS_FORMAT, POD), "g.json"))
    with pytest.raises(ParseError, match=r"^g\.json:3: expected the closing line '\]\}', got"):
        read_ground_truth(_named(doc(GROUND_TRUTH_FORMAT, POD, COUNTS).replace("]}\n", ""), "g.json"))
    with pytest.raises(ValueError, match=r"on_bad_line must be one of .*got 'ignore'"):
        read_ground_truth(doc(GROUND_TRUTH_FORMAT, POD), on_bad_line="ignore")


def test_ground_truth_warn_and_skip_count_the_bad_lines():
    text = doc(GROUND_TRUTH_FORMAT, POD, "oops", COUNTS.replace('"requests": 5', '"requests": "5"'), COUNTS)
    with pytest.warns(ParseWarning, match=r"skipped 2 of 6 lines \(line 3, 4\); first: .*:3: expected a JSON object"):
        df = read_ground_truth(text, on_bad_line="warn")
    for frame in (df, read_ground_truth(text, on_bad_line="skip")):
        report = frame.attrs["parse_report"]
        assert report.skipped_linenos == (3, 4)  # 'oops' and the count given as a string
        assert report.lines_parsed + report.lines_skipped == report.lines_total
        assert list(frame["requests"]) == [5]


@pytest.mark.parametrize("change, expected", [
    (('"load_seconds": 0.01', '"load_seconds": -1'), r"'load_seconds' >= 0"),
    (('+00:00"', '"'), r"'timestamp' with a UTC offset"),
    (('"2026-11-30T23:50:01.123456+00:00"', '"yesterday"'), r"'timestamp' as ISO 8601"),
    (('"rules": 20', '"rules": "20"'), r"'rules' as int"),
    (('"node": "node-a"', '"node": 1'), r"'node' as str"),
    (('"services": 1', '"services": true'), r"'services' as int"),
])
def test_rule_loads_bad_lines_raise(change, expected):
    text = doc(RULE_LOADS_FORMAT, LOAD, LOAD.replace(*change))
    with pytest.raises(ParseError, match=rf"^loads\.json:3: expected a rule-load record with {expected}, got"):
        read_rule_loads(_named(text, "loads.json"))


def test_rule_loads_reads_utc_and_counts_skips():
    text = doc(RULE_LOADS_FORMAT, LOAD, LOAD.replace("+00:00", "+02:00"), "{", LOAD.replace('"rules": 20', '"rules": -3'))
    with pytest.warns(ParseWarning, match=r"skipped 2 of 6 lines \(line 4, 5\); first: .*:4: expected a JSON object"):
        df = read_rule_loads(text, on_bad_line="warn")
    assert [str(t) for t in df["timestamp"]] == ["2026-11-30 23:50:01.123456+00:00",
                                                 "2026-11-30 21:50:01.123456+00:00"]
    report = read_rule_loads(text, on_bad_line="skip").attrs["parse_report"]
    assert (report.lines_parsed, report.lines_skipped) == (len(df) + 2, 2)  # + header and closer
    assert report.lines_parsed + report.lines_skipped == report.lines_total
    with pytest.raises(ParseError, match=r":4: expected a JSON object"):
        read_rule_loads(text)
    assert read_rule_loads(doc(RULE_LOADS_FORMAT)).empty


def test_live_metrics_text_follows_loads_and_events():
    """The served text (no root: a stand-in for a built topology) names every node's
    kube-proxy series by instance and follows the loads, events and pod states."""
    import types

    from npanalytics.lab.record import live_metrics_text
    from npanalytics.lab.topology import RuleLoad

    sc = load_scenario(TINY)
    t0 = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.timezone.utc)
    flags = {p.name: {"ready": True, "serving": True, "terminating": False, "present": True} for p in sc.pods}
    topo = types.SimpleNamespace(
        scenario=sc, events=[], rules_text={"node-a": "*nat\n-A KUBE-SERVICES -j KUBE-NODEPORTS\nCOMMIT\n",
                                            "node-b": "table ip kube-proxy {\n}\n"},
        loads=[RuleLoad(n.name, n.proxy_mode, "initial sync", 0.01, 10, "x", t0.isoformat()) for n in sc.nodes],
        pod_state_flags=lambda: flags)
    first = samples(live_metrics_text(topo, t0 + dt.timedelta(seconds=1)))
    assert {dict(k[1]).get("instance") for k in first if k[0] == SYNC_COUNT} == {"node-a", "node-b"}
    event = t0 + dt.timedelta(seconds=2)
    topo.events.append({"pod": "web-2", "action": "unready", "time": event.isoformat()})
    topo.loads += [RuleLoad(n.name, n.proxy_mode, "web-2 unready", 0.25, 9, "x",
                            (event + dt.timedelta(seconds=0.5)).isoformat()) for n in sc.nodes]
    flags["web-2"] = {"ready": False, "serving": False, "terminating": False, "present": True}
    later = samples(live_metrics_text(topo, t0 + dt.timedelta(seconds=5)))
    for node in ("node-a", "node-b"):
        key = (("instance", node), ("ip_family", "IPv4"))
        assert (first[(SYNC_COUNT, key)], later[(SYNC_COUNT, key)]) == (1, 2)
        # the event's rules were in place 0.75 s after it: in the (0.5, 1] s bucket
        bucket = "kubeproxy_network_programming_duration_seconds_bucket"
        assert later[(bucket, (*key, ("le", "0.5")))] == 0
        assert later[(bucket, (*key, ("le", "1")))] == 1
    ready = [(dict(k[1])["condition"], v) for k, v in later.items()
             if k[0] == "kube_pod_status_ready" and dict(k[1])["pod"] == "web-2" and v == 1]
    assert ready == [("false", 1)]
