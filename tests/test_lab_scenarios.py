"""The five recorded lab scenarios (datasets/<name>/): each shows its designed effect, three
independent counts of connections per pod agree, and every frame re-derives from its raw files.

Every test runs twice: on the committed dataset (no root needed) and on a fresh recording of
the bundled scenario made here with ``npanalytics lab record <name> --out <tmp>`` (root; the
five recordings take about a minute together), so that the command still reproduces what
the committed datasets show. To re-record one (root, ~10-30 s)::

    sudo .venv/bin/npanalytics lab record <name> --out datasets/<name> --overwrite
"""

from __future__ import annotations

import ipaddress
import re

import pandas as pd
import pytest

from npanalytics.datasets import load_dataset

SCENARIOS = [
    "etp-cluster-spread",
    "etp-local-uneven",
    "affinity-few-clients",
    "keepalive-scale-up",
    "endpoint-removed-stale",
]
SEP_DNAT = re.compile(r"^\[(\d+):\d+\] -A KUBE-SEP-\S+ .*-j DNAT --to-destination ([\d.]+):\d+$", re.M)


SOURCES = ["committed", "recorded"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Datasets loaded or recorded so far, by (name, source); recorded ones live in a temp dir."""
    return {"dir": tmp_path_factory.mktemp("recorded"), "loaded": {}}


@pytest.fixture
def get(request, recordings):
    """``get(name, source)``: the committed dataset, or a fresh ``lab record`` of the scenario (root)."""
    from npanalytics.lab import cli

    def load(name: str, source: str):
        if source == "recorded":
            request.getfixturevalue("need_root")
        key = (name, source)
        if key not in recordings["loaded"]:
            if source == "committed":
                recordings["loaded"][key] = load_dataset(name)
            else:
                out = recordings["dir"] / name
                assert cli.main(["record", name, "--out", str(out)]) == 0
                recordings["loaded"][key] = load_dataset(out)
        return recordings["loaded"][key]

    return load


@pytest.fixture(params=[(n, s) for s in SOURCES for n in SCENARIOS], ids=lambda p: f"{p[0]}-{p[1]}")
def ds(request, get):
    return get(*request.param)


source = pytest.mark.parametrize("source", SOURCES)


def topology(ds) -> dict:
    return ds.recording["topology"]


def pod_of_ip(ds) -> dict[str, str]:
    return {p["ip"]: p["name"] for p in topology(ds)["pods"]}


def node_of_pod(ds) -> dict[str, str]:
    return {p["name"]: p["node"] for p in topology(ds)["pods"]}


def entry_flows(ds) -> pd.DataFrame:
    """Each client connection once: the entry node's flow (orig dst = that node's IP and the node port).

    A connection forwarded to a pod on another node is in that node's table too (orig dst
    the pod's address, after DNAT and SNAT on the entry node); those are left out here.
    """
    flows = ds["conntrack_flows"]
    node_ip = {n["name"]: n["ip"] for n in topology(ds)["nodes"]}
    node_port = topology(ds)["service"]["node_port"]
    entry = flows[(flows["orig_dst_port"] == node_port)
                  & (flows["orig_dst_ip"].astype(str) == flows["node"].astype(str).map(node_ip))]
    assert len(entry) > 0
    return entry


def shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def conntrack_connections(ds) -> dict[str, int]:
    pods = pod_of_ip(ds)
    by_ip = entry_flows(ds)["backend_ip"].astype(str).value_counts()
    return {pods[ip]: int(n) for ip, n in by_ip.items()}


def rule_counter_connections(ds) -> dict[str, int]:
    """New connections per pod from the rule counters, over nodes, chains and reloads.

    Each reload resets the counters; the dataset keeps the rules dumped just before each
    reload (``proxy_endpoints_before_event_<k>``), so the run's total is the sum. Under
    ClientIP affinity the jump rules only count a client's first connection per node (the
    sticky ones take the ``-m recent --rcheck`` rules, which the reader does not count),
    so there the per-endpoint DNAT rules of the KUBE-SEP chains are summed from the raw dumps.
    """
    pods = pod_of_ip(ds)
    frames = [ds[f] for f, kind in ds.kinds.items() if kind == "proxy_endpoints"]
    total: dict[str, int] = {}
    if topology(ds)["service"]["session_affinity"] == "ClientIP":
        for rel, content in ds.raw.items():
            if rel.endswith("iptables-save.txt"):
                for packets, ip in SEP_DNAT.findall(content.decode()):
                    total[pods[ip]] = total.get(pods[ip], 0) + int(packets)
        return total
    for df in frames:
        for ip, n in df.groupby("endpoint_ip", observed=True)["packets"].sum().items():
            total[pods[str(ip)]] = total.get(pods[str(ip)], 0) + int(n)
    return total


def ground_truth_connections(ds) -> dict[str, int]:
    gt = ds["ground_truth"]
    return {str(k): int(v) for k, v in gt.groupby("pod", observed=True)["connections"].sum().items()}


def request_shares(gt: pd.DataFrame) -> dict[str, float]:
    return shares({str(k): float(v) for k, v in gt.groupby("pod", observed=True)["requests"].sum().items()})


# -- every scenario ---------------------------------------------------------------------------


def test_three_counts_of_connections_per_pod_agree(ds):
    conntrack = conntrack_connections(ds)
    rules = rule_counter_connections(ds)
    truth = ground_truth_connections(ds)
    assert sum(truth.values()) > 0
    # the same connections counted three ways: the totals match too
    assert sum(conntrack.values()) == sum(truth.values()) == sum(rules.values())
    pods = set(conntrack) | set(rules) | set(truth)
    a, b, c = shares(conntrack), shares(rules), shares(truth)
    for pod in pods:
        values = [a.get(pod, 0.0), b.get(pod, 0.0), c.get(pod, 0.0)]
        assert max(values) - min(values) <= 0.01, (pod, values)


def test_every_frame_rederives_from_raw(ds):
    assert {"conntrack_flows", "conntrack_stats", "proxy_services", "proxy_endpoints",
            "ground_truth", "rule_loads"} <= set(ds.frames)
    for frame in ds.frames:
        pd.testing.assert_frame_equal(ds.frames[frame], ds.rederive(frame), check_categorical=False)


def test_frames_cover_every_node_and_the_raw_files_are_there(ds):
    nodes = {n["name"] for n in topology(ds)["nodes"]}
    for kind in ("conntrack_stats", "proxy_services", "proxy_endpoints"):
        assert set(ds[kind]["node"].astype(str)) == nodes
    for rel in ("raw/ground_truth.json", "raw/rule_loads.json", "raw/scenario.yaml",
                "raw/k8s/services.json", "raw/k8s/endpointslices.json", "raw/k8s/pods.json",
                "raw/k8s/nodes.json", "raw/metrics/kube-state-metrics.txt", "raw/metrics/series.om"):
        assert rel in ds.raw
    assert ds.raw["raw/metrics/series.om"].endswith(b"# EOF\n")
    loads = ds["rule_loads"]
    assert len(loads) == len(nodes) * (1 + len(ds.recording["events"]))
    assert (loads["load_seconds"] > 0).all()


def test_scenario_yaml_is_the_bundled_scenario(ds):
    from npanalytics.lab.scenario import load_scenario

    recorded = load_scenario(ds.raw["raw/scenario.yaml"].decode())
    assert recorded == load_scenario(ds.name)


def test_datasets_stay_small(ds):
    assert ds.path is not None
    size = sum(p.stat().st_size for p in ds.path.rglob("*") if p.is_file())
    assert size <= 5 * 1024 * 1024


# -- the designed effects ---------------------------------------------------------------------


@source
def test_cluster_policy_spreads_evenly_hides_clients_and_hops(get, source):
    ds = get("etp-cluster-spread", source)
    gt = ds["ground_truth"]
    assert gt["requests"].sum() >= 3000
    got = request_shares(gt)
    assert set(got) == {"web-1", "web-2", "web-3"}
    for pod, share in got.items():
        assert abs(share - 1 / 3) <= 0.05, (pod, share)
    # SNAT: the pods see node addresses (the fabric IP, or the pod bridge's for local pods)
    node_addresses = {n["ip"] for n in topology(ds)["nodes"]} | {
        str(ipaddress.ip_network(n["pod_cidr"]).network_address + 1) for n in topology(ds)["nodes"]}
    seen = set(gt["client"].astype(str))
    assert seen <= node_addresses
    assert not seen & set(topology(ds)["clients"]["addresses"])
    # about 2/3 of the connections are forwarded to a pod on another node
    entry = entry_flows(ds)
    pod_node = entry["backend_ip"].astype(str).map(pod_of_ip(ds)).map(node_of_pod(ds))
    hop = float((pod_node != entry["node"].astype(str)).mean())
    assert abs(hop - 2 / 3) <= 0.05, hop
    # the external load balancer spread the connections evenly over the three nodes
    per_node = entry["node"].astype(str).value_counts(normalize=True)
    assert ((per_node - 1 / 3).abs() <= 0.01).all()


@source
def test_local_policy_gives_25_25_50(get, source):
    ds = get("etp-local-uneven", source)
    gt = ds["ground_truth"]
    assert gt["requests"].sum() >= 3000
    got = request_shares(gt)
    expected = {"web-1": 0.25, "web-2": 0.25, "web-3": 0.5}
    assert set(got) == set(expected)
    for pod, share in got.items():
        assert abs(share - expected[pod]) <= 0.05, (pod, share)
    # no SNAT under Local: the pods see the clients' own addresses
    assert set(gt["client"].astype(str)) <= set(topology(ds)["clients"]["addresses"])


@source
def test_client_ip_affinity_pins_each_address_per_node(get, source):
    ds = get("affinity-few-clients", source)
    entry = entry_flows(ds)
    pins = entry.groupby(["node", "orig_src_ip"], observed=True)["backend_ip"].nunique()
    assert (pins == 1).all(), pins
    # two clients with their own address and one NAT address for six hosts, on 2 nodes
    clients = topology(ds)["clients"]
    assert set(entry["orig_src_ip"].astype(str)) == {*clients["own_address"], clients["nat_address"]}
    assert len(pins) == 6
    # the jump rules counted only each pinned client's first connection per node
    assert int(ds["proxy_endpoints"]["packets"].sum()) == len(pins)
    # the NAT address carries 6/8 of the traffic, so the pod shares are far from uniform
    got = request_shares(ds["ground_truth"])
    assert max(got.values()) >= 1.5 / len(topology(ds)["pods"]), got


@source
def test_keepalive_new_pod_starves(get, source):
    ds = get("keepalive-scale-up", source)
    (event,) = ds.recording["events"]
    assert (event["pod"], event["action"]) == ("web-4", "add")
    before = ds["ground_truth_after_event_1"].groupby("pod", observed=True)["requests"].sum()
    after = ds["ground_truth"].groupby("pod", observed=True)["requests"].sum()
    assert before.get("web-4", 0) == 0  # not an endpoint before the add
    delta = after.sub(before, fill_value=0)
    assert delta.sum() > 0.5 * after.sum()  # most of the run came after the add
    share = delta.get("web-4", 0) / delta.sum()
    n = len(after)
    assert share < 0.5 / n, share  # far below its fair 1/n
    # it was programmed on every node: the rules were not the reason
    final = ds["proxy_endpoints"]
    web4 = next(p["ip"] for p in topology(ds)["pods"] if p["name"] == "web-4")
    assert set(final.loc[final["endpoint_ip"].astype(str) == web4, "node"].astype(str)) == {"node-a", "node-b"}
    # many requests per connection: the pool of 12 carried them all
    conns = ground_truth_connections(ds)
    assert sum(conns.values()) <= 2 * ds.recording["traffic"]["connections"]


@source
def test_removed_endpoint_leaves_stale_flows(get, source):
    ds = get("endpoint-removed-stale", source)
    (event,) = ds.recording["events"]
    assert (event["pod"], event["action"]) == ("web-3", "unready")
    web3 = next(p["ip"] for p in topology(ds)["pods"] if p["name"] == "web-3")
    # programmed before the removal, absent from the final rules of every node
    assert web3 in set(ds["proxy_endpoints_before_event_1"]["endpoint_ip"].astype(str))
    assert web3 not in set(ds["proxy_endpoints"]["endpoint_ip"].astype(str))
    # yet the final conntrack tables still hold the flows that went to it
    stale = entry_flows(ds)
    stale = stale[stale["backend_ip"].astype(str) == web3]
    assert len(stale) > 0 and set(stale["node"].astype(str)) == {"node-a", "node-b"}
    # and web-3 served nothing after the removal
    before = ds["ground_truth_after_event_1"]
    final = ds["ground_truth"]
    assert (before.loc[before["pod"] == "web-3", "requests"].sum()
            == final.loc[final["pod"] == "web-3", "requests"].sum() == len(stale))
