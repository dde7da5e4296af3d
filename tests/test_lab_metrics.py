"""The lab's metrics writers, parsed back with prometheus_client and checked with promtool."""

from __future__ import annotations

import math
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from npanalytics.lab.k8s_objects import LAB_EPOCH, cluster_objects
from npanalytics.lab.metrics import (
    NETWORK_PROGRAMMING_BUCKETS,
    SYNC_DURATION_BUCKETS,
    escape_label_value,
    format_value,
    kube_proxy_metrics_text,
    kube_state_metrics_text,
    openmetrics_series,
    serve_metrics,
)
from npanalytics.lab.scenario import scenario_from_dict

parser = pytest.importorskip("prometheus_client.parser")

WEIRD_ZONE = 'zone "a" \\ back\nslash'

SCENARIO = {
    "name": "metrics",
    "nodes": [
        {"name": "node-a", "zone": WEIRD_ZONE},
        {"name": "node-b", "zone": "zone-b"},
        {"name": "node-c"},
    ],
    "pods": [
        {"name": "web-1", "node": "node-a", "labels": {"app": "web"}},
        {"name": "web-2", "node": "node-a", "labels": {"app": "web"}, "ready": False},
        {"name": "web-3", "node": "node-b", "labels": {"app": "web"},
         "ready": False, "serving": True, "terminating": True},
        {"name": "web-4", "node": "node-c", "labels": {"app": "web"}, "start_absent": True},
        {"name": "api-1", "node": "node-c", "labels": {"app": "api"}},
    ],
    "services": [
        {"name": "web", "selector": {"app": "web"}, "externalTrafficPolicy": "Local",
         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                   {"name": "admin", "port": 81, "targetPort": 8081, "nodePort": 30081}]},
        {"name": "api", "namespace": "shop", "selector": {"app": "api"},
         "ports": [{"port": 443, "targetPort": 8443, "nodePort": 30443}]},
    ],
    "traffic": {"requests": 100},
    "events": [{"pod": "web-4", "action": "add", "at_request": 50}],
}

# The bucket bounds as kube-proxy prints them (KUBE_FACTS §3), written out by hand.
SYNC_LE = ["0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512",
           "1.024", "2.048", "4.096", "8.192", "16.384", "+Inf"]
PROGRAMMING_LE = (["0", "0.25", "0.5"] + [str(i) for i in range(1, 60)] + [str(i) for i in range(60, 120, 5)]
                  + [str(i) for i in range(120, 301, 30)] + ["+Inf"])


@pytest.fixture
def scenario():
    return scenario_from_dict(SCENARIO)


def families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def samples(text, name):
    return [s for f in parser.text_string_to_metric_families(text) for s in f.samples if s.name == name]


# -- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (0, "0"), (0.25, "0.25"), (-2.5, "-2.5"), (123456, "123456"), (1e6, "1e+06"),
     (1.7e9, "1.7e+09"), (1735689600, "1.7356896e+09"), (0.0001, "0.0001"), (0.00001, "1e-05"),
     (1.5e-7, "1.5e-07"), (16.384, "16.384"), (300.0, "300"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
     (math.nan, "NaN")],
)
def test_format_value_like_go(value, text):
    assert format_value(value) == text
    if not math.isnan(value):
        assert float(text.replace("Inf", "inf")) == value


def test_escape_label_value():
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_bucket_bounds():
    assert SYNC_DURATION_BUCKETS == tuple(0.001 * 2**k for k in range(15))
    assert len(NETWORK_PROGRAMMING_BUCKETS) == 81
    assert [format_value(b) for b in SYNC_DURATION_BUCKETS] + ["+Inf"] == SYNC_LE
    assert [format_value(b) for b in NETWORK_PROGRAMMING_BUCKETS] + ["+Inf"] == PROGRAMMING_LE


# -- kube-proxy -----------------------------------------------------------------------------

DURATIONS = [0.0005, 0.001, 0.0011, 0.0625, 0.3, 2.0, 20.0]  # 0.001 sits on a bound; 20 is past the last
PROGRAMMING = [0.0, 0.1, 0.25, 0.7, 59.5, 61.0, 299.0, 301.0]


def check_histogram(text, name, observations, expected_le, labels=None):
    labels = {"ip_family": "IPv4"} if labels is None else labels
    buckets = samples(text, name + "_bucket")
    assert [s.labels["le"] for s in buckets] == expected_le
    for s in buckets:
        bound = float(s.labels["le"].replace("Inf", "inf"))
        assert s.value == sum(1 for v in observations if v <= bound), s.labels["le"]
        assert {k: v for k, v in s.labels.items() if k != "le"} == labels
    (total,) = samples(text, name + "_sum")
    (count,) = samples(text, name + "_count")
    assert total.value == pytest.approx(sum(observations))
    assert count.value == len(observations)
    assert total.labels == labels


def test_kube_proxy_histograms():
    text = kube_proxy_metrics_text(
        "node-a", sync_durations_seconds=DURATIONS, network_programming_seconds=PROGRAMMING,
        rules_total={"filter": 4, "nat": 31},
    )
    fams = families(text)
    assert fams["kubeproxy_sync_proxy_rules_duration_seconds"].type == "histogram"
    check_histogram(text, "kubeproxy_sync_proxy_rules_duration_seconds", DURATIONS, SYNC_LE)
    check_histogram(text, "kubeproxy_sync_full_proxy_rules_duration_seconds", DURATIONS, SYNC_LE)
    check_histogram(text, "kubeproxy_sync_partial_proxy_rules_duration_seconds", [], SYNC_LE)
    check_histogram(text, "kubeproxy_network_programming_duration_seconds", PROGRAMMING, PROGRAMMING_LE)
    # spot checks of the cumulative counts, by hand
    le = {s.labels["le"]: s.value for s in samples(text, "kubeproxy_sync_proxy_rules_duration_seconds_bucket")}
    assert (le["0.001"], le["0.002"], le["0.064"], le["0.512"], le["2.048"], le["16.384"], le["+Inf"]) == (
        2, 3, 4, 5, 6, 6, 7)


def test_partial_syncs_go_to_the_overall_and_partial_histograms():
    partial = [0.003, 0.009]
    text = kube_proxy_metrics_text("node-a", sync_durations_seconds=DURATIONS,
                                   partial_sync_durations_seconds=partial, rules_total={"nat": 1})
    check_histogram(text, "kubeproxy_sync_proxy_rules_duration_seconds", DURATIONS + partial, SYNC_LE)
    check_histogram(text, "kubeproxy_sync_full_proxy_rules_duration_seconds", DURATIONS, SYNC_LE)
    check_histogram(text, "kubeproxy_sync_partial_proxy_rules_duration_seconds", partial, SYNC_LE)


def test_kube_proxy_gauges_and_counters():
    text = kube_proxy_metrics_text(
        "node-a", sync_durations_seconds=[0.01], rules_total={"filter": 4, "nat": 31},
        rules_last={"filter": 4, "nat": 9}, endpoint_changes_total=7, service_changes_total=2,
        endpoint_changes_pending=1, no_local_endpoints={"external": 3}, restore_failures_total=1,
        last_sync_timestamp=1_700_000_000.5, last_queued_timestamp=1_700_000_001.0,
    )
    fams = families(text)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    v4 = (("ip_family", "IPv4"),)
    assert values[("kubeproxy_sync_proxy_rules_iptables_total", v4 + (("table", "filter"),))] == 4
    assert values[("kubeproxy_sync_proxy_rules_iptables_total", v4 + (("table", "nat"),))] == 31
    assert values[("kubeproxy_sync_proxy_rules_iptables_last", v4 + (("table", "nat"),))] == 9
    assert values[("kubeproxy_sync_proxy_rules_endpoint_changes_total", ())] == 7
    assert values[("kubeproxy_sync_proxy_rules_endpoint_changes_pending", ())] == 1
    assert values[("kubeproxy_sync_proxy_rules_service_changes_total", ())] == 2
    assert values[("kubeproxy_sync_proxy_rules_service_changes_pending", ())] == 0
    assert values[("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", v4)] == 1
    assert values[("kubeproxy_sync_proxy_rules_last_timestamp_seconds", v4)] == 1_700_000_000.5
    assert values[("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", v4)] == 1_700_000_001.0
    no_local = "kubeproxy_sync_proxy_rules_no_local_endpoints_total"
    assert fams[no_local].type == "gauge"  # a gauge despite its name
    assert values[(no_local, (("ip_family", "IPv4"), ("traffic_policy", "external")))] == 3
    assert values[(no_local, (("ip_family", "IPv4"), ("traffic_policy", "internal")))] == 0
    assert fams["kubeproxy_sync_proxy_rules_endpoint_changes"].type == "counter"
    # families sorted by name, labels by name with le last, as client_golang writes them
    names = re.findall(r"^# TYPE (\S+)", text, flags=re.M)
    assert names == sorted(names)
    assert 'kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="nat"} 31\n' in text
    assert '_bucket{ip_family="IPv4",le="0.001"} 0\n' in text


IPTABLES_ONLY = {
    "kubeproxy_sync_full_proxy_rules_duration_seconds",
    "kubeproxy_sync_partial_proxy_rules_duration_seconds",
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures",
    "kubeproxy_sync_proxy_rules_iptables_total",
    "kubeproxy_sync_proxy_rules_iptables_last",
}
COMMON = {
    "kubeproxy_sync_proxy_rules_duration_seconds",
    "kubeproxy_network_programming_duration_seconds",
    "kubeproxy_sync_proxy_rules_endpoint_changes",
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
    "kubeproxy_sync_proxy_rules_service_changes",
    "kubeproxy_sync_proxy_rules_service_changes_pending",
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("iptables", COMMON | IPTABLES_ONLY | {"kubeproxy_sync_proxy_rules_iptables_restore_failures"}),
        ("ipvs", COMMON | {"kubeproxy_sync_proxy_rules_iptables_restore_failures"}),
        ("nftables", COMMON | {"kubeproxy_sync_proxy_rules_nftables_sync_failures",
                               "kubeproxy_sync_proxy_rules_nftables_cleanup_failures"}),
    ],
)
def test_families_per_mode(mode, expected):
    text = kube_proxy_metrics_text("n", sync_durations_seconds=[0.01], rules_total={"nat": 3}, mode=mode,
                                   restore_failures_total=2)
    assert set(families(text)) == expected
    failures = [s.value for f in families(text).values() for s in f.samples
                if f.name in ("kubeproxy_sync_proxy_rules_iptables_restore_failures",
                              "kubeproxy_sync_proxy_rules_nftables_sync_failures")]
    assert failures == [2]


@pytest.mark.parametrize("lab_mode", ["iptables-legacy", "iptables-nft"])
def test_lab_modes_are_iptables(lab_mode):
    kwargs = {"sync_durations_seconds": [0.2], "rules_total": {"nat": 3}}
    assert kube_proxy_metrics_text("n", mode=lab_mode, **kwargs) == kube_proxy_metrics_text("n", **kwargs)


def test_ip_family_label_versions():
    with_label = kube_proxy_metrics_text("n", sync_durations_seconds=[0.2], rules_total={"nat": 3},
                                         last_sync_timestamp=5.0)
    without = kube_proxy_metrics_text("n", sync_durations_seconds=[0.2], rules_total={"nat": 3},
                                      last_sync_timestamp=5.0, ip_family_label=False)
    assert "ip_family" not in without
    for f in families(with_label).values():
        for s in f.samples:
            has = "ip_family" in s.labels
            assert has == ("changes" not in f.name), s.name
    check_histogram(without, "kubeproxy_sync_proxy_rules_duration_seconds", [0.2], SYNC_LE, labels={})


def test_kube_proxy_escaping_and_timestamps():
    table = 'a"b\\c\nd'
    text = kube_proxy_metrics_text("n", sync_durations_seconds=[], rules_total={table: 5},
                                   timestamp_ms=1_700_000_000_123)
    assert 'table="a\\"b\\\\c\\nd"} 5 1700000000123\n' in text
    (sample,) = [s for s in samples(text, "kubeproxy_sync_proxy_rules_iptables_total")]
    assert sample.labels["table"] == table
    assert all(s.timestamp == pytest.approx(1_700_000_000.123) for f in families(text).values()
               for s in f.samples)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "iptable"}, r"mode \(node n\) must be one of .*did you mean 'iptables'"),
        ({"sync_durations_seconds": [-1.0]}, "sync_durations_seconds must hold finite non-negative"),
        ({"network_programming_seconds": [math.nan]}, "network_programming_seconds must hold finite"),
        ({"endpoint_changes_total": -1}, "endpoint_changes_total must be a non-negative int"),
        ({"no_local_endpoints": {"externel": 1}}, "did you mean 'external'"),
        ({"rules_total": {"nat": 1.5}}, r"rules_total\['nat'\] must be a non-negative int"),
        ({"timestamp_ms": 1.5}, "timestamp_ms must be a non-negative int"),
        ({"last_sync_timestamp": math.inf}, "last_sync_timestamp must be finite Unix seconds"),
    ],
)
def test_kube_proxy_bad_arguments(kwargs, match):
    kwargs = {"sync_durations_seconds": [0.1], **kwargs}
    with pytest.raises(ValueError, match=match):
        kube_proxy_metrics_text("n", **kwargs)


# -- kube-state-metrics ---------------------------------------------------------------------


def by_labels(text, name, *keys):
    return {tuple(s.labels[k] for k in keys): s for s in samples(text, name)}


def test_ksm_endpointslice_endpoints_match_the_scenario(scenario):
    addresses = scenario.addresses()
    text = kube_state_metrics_text(scenario)
    objects = cluster_objects(scenario)
    slice_of = {o["metadata"]["labels"]["kubernetes.io/service-name"]: o["metadata"]["name"]
                for o in objects["endpointslices"]}
    rows = samples(text, "kube_endpointslice_endpoints")
    for svc in scenario.services:
        pods = [p for p in scenario.pods if not p.start_absent
                and all(p.labels.get(k) == v for k, v in svc.selector.items())]
        zones = {n.name: n.zone for n in scenario.nodes}
        expected = sorted(
            (p.name, p.node, zones[p.node], addresses.pod_ips[p.name], str(p.ready).lower(),
             str(p.serving).lower(), str(p.terminating).lower())
            for p in pods
        )
        got = sorted(
            (s.labels["targetref_name"], s.labels["endpoint_nodename"], s.labels.get("endpoint_zone", ""),
             s.labels["address"], s.labels["ready"], s.labels["serving"], s.labels["terminating"])
            for s in rows if s.labels["endpointslice"] == slice_of[svc.name]
        )
        assert got == expected
    assert all(s.value == 1 and s.labels["targetref_kind"] == "Pod" for s in rows)
    # as KSM: a label only for a field that is set (node-c has no zone, no pod has a hostname)
    for s in rows:
        assert ("endpoint_zone" in s.labels) == (s.labels["endpoint_nodename"] != "node-c")
        assert "hostname" not in s.labels
    assert list(rows[0].labels) == ["endpointslice", "namespace", "ready", "serving", "terminating",
                                    "targetref_kind", "targetref_name", "targetref_namespace",
                                    "endpoint_nodename", "endpoint_zone", "address"]
    assert {s.labels["namespace"] for s in rows} == {"default", "shop"}
    labels = by_labels(text, "kube_endpointslice_labels", "endpointslice")
    assert {k[0]: s.labels["label_kubernetes_io_service_name"] for k, s in labels.items()} == {
        slice_of["web"]: "web", slice_of["api"]: "api"}
    ports = by_labels(text, "kube_endpointslice_ports", "endpointslice", "port_name")
    assert ports[(slice_of["web"], "admin")].labels["port_number"] == "8081"
    assert ports[(slice_of["api"], "")].labels["port_protocol"] == "TCP"


def test_ksm_endpoint_address(scenario):
    addresses = scenario.addresses()
    text = kube_state_metrics_text(scenario)
    got = sorted((s.labels["endpoint"], s.labels["port_number"], s.labels["ip"], s.labels["ready"])
                 for s in samples(text, "kube_endpoint_address"))
    ip = addresses.pod_ips
    expected = sorted(
        [("web", port, ip["web-1"], "true") for port in ("8080", "8081")]
        + [("web", port, ip["web-2"], "false") for port in ("8080", "8081")]  # web-3 terminates: left out
        + [("api", "8443", ip["api-1"], "true")]
    )
    assert got == expected


def test_ksm_pods(scenario):
    text = kube_state_metrics_text(scenario)
    uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in cluster_objects(scenario)["pods"]}
    addresses = scenario.addresses()
    ready = by_labels(text, "kube_pod_status_ready", "pod", "condition")
    phase = by_labels(text, "kube_pod_status_phase", "pod", "phase")
    info = by_labels(text, "kube_pod_info", "pod")
    present = [p for p in scenario.pods if not p.start_absent]
    assert len(ready) == 3 * len(present) and len(phase) == 5 * len(present)
    for pod in present:
        is_ready = pod.serving if pod.terminating else pod.ready
        assert [ready[(pod.name, c)].value for c in ("true", "false", "unknown")] == (
            [1, 0, 0] if is_ready else [0, 1, 0])
        assert [phase[(pod.name, p)].value for p in ("Pending", "Succeeded", "Failed", "Unknown", "Running")] \
            == [0, 0, 0, 0, 1]
        labels = info[(pod.name,)].labels
        assert labels["uid"] == uids[pod.name]
        assert (labels["pod_ip"], labels["host_ip"], labels["node"]) == (
            addresses.pod_ips[pod.name], addresses.node_ips[pod.node], pod.node)
        assert labels["created_by_kind"] == "ReplicaSet" and labels["host_network"] == "false"
    assert ("web-4",) not in info


def test_ksm_services_and_nodes(scenario):
    addresses = scenario.addresses()
    text = kube_state_metrics_text(scenario)
    info = by_labels(text, "kube_service_info", "service")
    assert info[("web",)].labels["cluster_ip"] == addresses.cluster_ips["web"]
    assert info[("web",)].labels["external_traffic_policy"] == "Local"
    assert by_labels(text, "kube_service_spec_type", "service")[("api",)].labels["type"] == "NodePort"
    assert by_labels(text, "kube_service_created", "service")[("web",)].value == LAB_EPOCH.timestamp()
    nodes = by_labels(text, "kube_node_info", "node")
    for node in scenario.nodes:
        labels = nodes[(node.name,)].labels
        assert labels["kubeproxy_version"] == "deprecated"
        assert labels["internal_ip"] == addresses.node_ips[node.name]
        assert labels["pod_cidr"] == addresses.pod_cidrs[node.name]
    condition = by_labels(text, "kube_node_status_condition", "node", "condition", "status")
    assert [condition[("node-b", "Ready", s)].value for s in ("true", "false", "unknown")] == [1, 0, 0]
    node_labels = by_labels(text, "kube_node_labels", "node")
    assert node_labels[("node-b",)].labels["label_topology_kubernetes_io_zone"] == "zone-b"
    assert "label_topology_kubernetes_io_zone" not in node_labels[("node-c",)].labels


def test_ksm_label_escaping(scenario):
    text = kube_state_metrics_text(scenario)
    escaped = 'label_topology_kubernetes_io_zone="zone \\"a\\" \\\\ back\\nslash"'
    assert escaped in text
    node_labels = by_labels(text, "kube_node_labels", "node")
    assert node_labels[("node-a",)].labels["label_topology_kubernetes_io_zone"] == WEIRD_ZONE
    zones = {s.labels["endpoint_zone"] for s in samples(text, "kube_endpointslice_endpoints")
             if s.labels["endpoint_nodename"] == "node-a"}
    assert zones == {WEIRD_ZONE}


def test_ksm_options_and_state(scenario):
    plain = families(kube_state_metrics_text(scenario, include_endpoints=False, include_endpointslices=False))
    assert not any(name.startswith(("kube_endpoint_", "kube_endpointslice")) for name in plain)
    no_allow = families(kube_state_metrics_text(scenario, allowlist_service_name=False))
    assert "kube_endpointslice_labels" not in no_allow and "kube_endpointslice_endpoints" in no_allow
    later = kube_state_metrics_text(scenario, pod_states={"web-2": {"ready": True, "serving": True},
                                                          "web-4": {"present": True}})
    ready = by_labels(later, "kube_pod_status_ready", "pod", "condition")
    assert ready[("web-2", "true")].value == 1 and ready[("web-4", "true")].value == 1
    stamped = kube_state_metrics_text(scenario, timestamp_ms=1_700_000_000_000)
    assert all(s.timestamp == 1_700_000_000 for f in families(stamped).values() for s in f.samples)
    with pytest.raises(ValueError, match="timestamp_ms must be a non-negative int"):
        kube_state_metrics_text(scenario, timestamp_ms=-5)


# -- promtool -------------------------------------------------------------------------------


def promtool_check(promtool, text):
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=60)


def test_promtool_accepts_ksm(scenario, need_binary):
    promtool = need_binary("promtool")
    done = promtool_check(promtool, kube_state_metrics_text(scenario, timestamp_ms=1_700_000_000_000))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["iptables", "nftables", "ipvs"])
def test_promtool_on_kube_proxy(mode, need_binary):
    promtool = need_binary("promtool")
    text = kube_proxy_metrics_text("n", sync_durations_seconds=DURATIONS, network_programming_seconds=PROGRAMMING,
                                   rules_total={"filter": 4, "nat": 31}, mode=mode, last_sync_timestamp=1.7e9)
    done = promtool_check(promtool, text)
    findings = sorted(line for line in (done.stdout + done.stderr).splitlines() if line.strip())
    # The only lint findings are kube-proxy's own names: gauges with a _total suffix.
    expected = ["kubeproxy_sync_proxy_rules_no_local_endpoints_total non-counter metrics should not have "
                '"_total" suffix']
    if mode == "iptables":
        expected.insert(0, "kubeproxy_sync_proxy_rules_iptables_total non-counter metrics should not have "
                           '"_total" suffix')
    assert findings == expected
    assert done.returncode == 3  # promtool: lint problems, no parse error


# -- OpenMetrics backfill -------------------------------------------------------------------

T0 = 1_700_000_000


def proxy_frames(n=4):
    return [
        (T0 + 15 * i, kube_proxy_metrics_text("n", sync_durations_seconds=[0.01] * (i + 1),
                                               rules_total={"nat": 10 + i}, endpoint_changes_total=i))
        for i in range(n)
    ]


def test_openmetrics_series_structure(scenario):
    frames = proxy_frames() + [(T0 + 1, kube_state_metrics_text(scenario))]
    text = openmetrics_series(frames)
    assert text.endswith("\n# EOF\n")
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M)
    assert len(types) == len({name for name, _ in types})  # families not repeated
    assert ("kubeproxy_sync_proxy_rules_endpoint_changes", "counter") in types
    assert ("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge") in types
    stamps = {T0 + 15 * i for i in range(4)} | {T0 + 1}
    for line in text.splitlines():
        if not line.startswith("#"):
            assert int(line.rsplit(" ", 1)[1]) in stamps, line
    nat = [line for line in text.splitlines()
           if line.startswith('kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="nat"}')]
    assert nat == [f'kubeproxy_sync_proxy_rules_iptables_total{{ip_family="IPv4",table="nat"}} {10 + i} '
                   f"{T0 + 15 * i}" for i in range(4)]
    # the series come out in time order even when the frames do not
    assert openmetrics_series(list(reversed(frames))) == text


def test_openmetrics_series_types_and_escapes():
    frame = (
        '# HELP c_total A "quoted" help \\ with\\nnewline\n# TYPE c_total counter\nc_total{x="a\\"b"} 3\n'
        "# TYPE raw counter\nraw 1\n"
        "plain 2 123\n"
        "# TYPE s summary\ns{quantile=\"0.5\"} 1.5\ns_sum 3\ns_count 2\n"
    )
    text = openmetrics_series([(T0, frame), (T0 + 0.5, frame)])
    assert text.splitlines() == [
        '# HELP c A \\"quoted\\" help \\\\ with\\nnewline',
        "# TYPE c counter",
        f'c_total{{x="a\\"b"}} 3 {T0}',
        f'c_total{{x="a\\"b"}} 3 {T0}.5',
        "# TYPE raw unknown",
        f"raw 1 {T0}",
        f"raw 1 {T0}.5",
        "# TYPE plain unknown",
        f"plain 2 {T0}",  # the frame's time replaces the one in the text
        f"plain 2 {T0}.5",
        "# TYPE s summary",
        f's{{quantile="0.5"}} 1.5 {T0}',
        f"s_sum 3 {T0}",
        f"s_count 2 {T0}",
        f's{{quantile="0.5"}} 1.5 {T0}.5',
        f"s_sum 3 {T0}.5",
        f"s_count 2 {T0}.5",
        "# EOF",
    ]


def test_openmetrics_series_errors(scenario):
    with pytest.raises(ValueError, match=r"frame 1 \(t=1700000000\): series a\{\} has two samples at t=1700000000"):
        openmetrics_series([(T0, "a 1\n"), (T0, "a 2\n")])
    with pytest.raises(ValueError, match=r"frame 0 \(t=1700000000\): a already has the target label 'job'"):
        openmetrics_series([(T0, 'a{job="x"} 1\n', {"job": "y"})])
    with pytest.raises(ValueError, match="frame 0: invalid target label name 'le'"):
        openmetrics_series([(T0, "a 1\n", {"le": "1"})])
    with pytest.raises(ValueError, match=r"frame 0: expected \(seconds, text\) or \(seconds, text, labels\)"):
        openmetrics_series([(T0,)])
    with pytest.raises(ValueError, match="family a is a counter, but an earlier frame had it as a gauge"):
        openmetrics_series([(T0, "# TYPE a gauge\na 1\n"), (T0 + 1, "# TYPE a_total counter\na_total 2\n")])
    with pytest.raises(ValueError, match=r"frame 0 \(t=1700000000\):2: expected a float sample value, got 'a x'"):
        openmetrics_series([(T0, "# a comment\na x\n")])
    with pytest.raises(ValueError, match=r":1: expected labels name=\"value\" separated by commas, got 'a\{b=\} 1'"):
        openmetrics_series([(T0, "a{b=} 1\n")])
    with pytest.raises(ValueError, match=r":1: expected a sample line"):
        openmetrics_series([(T0, "{} 1\n")])
    with pytest.raises(ValueError, match=r":3: expected the lines of family a together"):
        openmetrics_series([(T0, "a 1\nb 2\na 3\n")])
    with pytest.raises(ValueError, match=r":2: expected a type among counter, gauge"):
        openmetrics_series([(T0, "# HELP a x\n# TYPE a gouge\na 1\n")])
    with pytest.raises(ValueError, match=r":2: expected # TYPE before the samples of a"):
        openmetrics_series([(T0, "a 1\n# TYPE a gauge\n")])
    with pytest.raises(ValueError, match="expected finite Unix seconds"):
        openmetrics_series([(math.nan, "a 1\n")])


def test_promtool_backfills_the_series(tmp_path, need_binary, scenario):
    promtool = need_binary("promtool")
    # two nodes scraped at the same times, told apart by their target labels
    nodes = [
        (T0 + 15 * i, kube_proxy_metrics_text(node, sync_durations_seconds=[0.01], rules_total={"nat": base + i}),
         {"job": "kube-proxy", "instance": node})
        for i in range(3) for node, base in (("node-a", 100), ("node-b", 200))
    ]
    frames = proxy_frames(5) + nodes + [
        (T0 + 7, kube_state_metrics_text(scenario)),
        (T0 + 37, kube_state_metrics_text(scenario, pod_states={"web-2": {"ready": True, "serving": True}})),
    ]
    source = tmp_path / "series.om"
    source.write_text(openmetrics_series(frames))
    out = tmp_path / "tsdb"
    out.mkdir()
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    blocks = [p for p in out.iterdir() if re.fullmatch(r"[0-9A-Z]{26}", p.name)]
    assert blocks and blocks[0].name in done.stdout
    (out / "wal").mkdir()  # promtool 2.42's dump wants a WAL directory, even an empty one
    dump = subprocess.run(
        [promtool, "tsdb", "dump", "--match",
         '{__name__=~"kubeproxy_sync_proxy_rules_iptables_total|kube_pod_status_ready",'
         'pod=~"|web-2",condition=~"|true"}', str(out)],
        capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    points = sorted(
        (m.group(1) + (m.group(2) or ""), int(m.group(4)), float(m.group(3)))
        for m in re.finditer(r'\{__name__="(\w+)"(, instance="[\w-]+")?.*\} (\S+) (\d+)$', dump.stdout,
                             flags=re.M)
    )
    expected = sorted(
        [("kubeproxy_sync_proxy_rules_iptables_total", (T0 + 15 * i) * 1000, 10.0 + i) for i in range(5)]
        + [(f'kubeproxy_sync_proxy_rules_iptables_total, instance="{node}"', (T0 + 15 * i) * 1000, base + i)
           for i in range(3) for node, base in (("node-a", 100.0), ("node-b", 200.0))]
        + [("kube_pod_status_ready", (T0 + 7) * 1000, 0.0), ("kube_pod_status_ready", (T0 + 37) * 1000, 1.0)]
    )
    assert points == expected


# -- serving --------------------------------------------------------------------------------


def test_serve_metrics():
    calls = []

    def texts():
        calls.append(1)
        return kube_proxy_metrics_text("n", sync_durations_seconds=[0.01] * len(calls), rules_total={"nat": 1})

    server, url = serve_metrics(texts)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        for expected_count in (1, 2):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                body = response.read().decode()
            (count,) = samples(body, "kubeproxy_sync_proxy_rules_duration_seconds_count")
            assert count.value == expected_count
        assert server.scrapes == 2
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_serve_metrics_failure_and_host():
    def broken():
        raise RuntimeError("no data yet")

    with serve_metrics(broken)[0] as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with pytest.raises(urllib.error.HTTPError, match="500") as info:
            urllib.request.urlopen(url, timeout=10)
        assert "no data yet" in info.value.read().decode()
    with pytest.raises(ValueError, match="host must be a loopback address"):
        serve_metrics(lambda: "", host="0.0.0.0")


def test_all_lists_exactly_the_public_names():
    import inspect

    import npanalytics.lab.metrics as module

    defined = {
        name for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
        and getattr(value, "__module__", module.__name__) == module.__name__
    }
    assert set(module.__all__) == defined
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_lab(tmp_path, need_binary):
    import json
    import socket
    import time

    prometheus = need_binary("prometheus")
    text = kube_proxy_metrics_text("n", sync_durations_seconds=[0.003, 0.02], rules_total={"nat": 42})
    server, url = serve_metrics(lambda: text)
    with socket.socket() as probe:  # a free loopback port for Prometheus' own web server
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    target = url.removeprefix("http://").removesuffix("/metrics")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lab\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def query(expr):
        api = f"http://127.0.0.1:{web_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(api, timeout=5) as response:
            return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
                    for r in json.load(response)["data"]["result"]}

    try:
        deadline = time.monotonic() + 60
        result = {}
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            try:
                result = query('kubeproxy_sync_proxy_rules_iptables_total{table="nat"}')
            except (urllib.error.URLError, ConnectionError):
                continue
        assert list(result.values()) == [42.0]
        assert list(query('up{job="lab"}').values()) == [1.0]
        assert list(query("kubeproxy_sync_proxy_rules_duration_seconds_count").values()) == [2.0]
        assert list(query('kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.004"}').values()) == [1.0]
        assert server.scrapes >= 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        server.stop()


def test_format_value_round_trips():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.floats(allow_nan=False))
    def check(value):
        text = format_value(value)
        assert float(text.replace("Inf", "inf")) == value
        mantissa = text.lstrip("-").split("e")[0]
        if "e" in text:  # Go switches to the exponent form below 1e-4 and from 1e6 on
            assert not 1e-4 <= abs(value) < 1e6
            assert re.fullmatch(r"[+-]\d\d+", text.split("e")[1])
        elif value != 0 and math.isfinite(value):
            assert 1e-4 <= abs(value) < 1e6, text
            assert not mantissa.endswith(".") and not (mantissa.endswith("0") and "." in mantissa)

    check()


def test_label_values_round_trip_through_both_readers():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
    def check(value):
        text = kube_proxy_metrics_text("n", sync_durations_seconds=[], rules_total={value: 7})
        (sample,) = samples(text, "kubeproxy_sync_proxy_rules_iptables_total")
        assert sample.labels["table"] == value
        om = openmetrics_series([(T0, text)])
        line = next(x for x in om.split("\n") if x.startswith("kubeproxy_sync_proxy_rules_iptables_total{"))
        assert line == f'kubeproxy_sync_proxy_rules_iptables_total{{ip_family="IPv4",table="{escape_label_value(value)}"}} 7 {T0}'

    check()
