"""One real lab run in network namespaces: the data plane behaves like kube-proxy's, and the
root namespace is exactly as it was before."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter

import pytest

from npanalytics.lab.netns import lab_namespaces
from npanalytics.lab.runner import record_node_sample, run_scenario
from npanalytics.lab.scenario import load_scenario

ROOT_SNAPSHOT_COMMANDS = {
    "iptables-legacy-save": ["iptables-legacy-save"],
    "iptables-nft-save": ["iptables-nft-save"],
    "nft": ["nft", "list", "ruleset"],
    "route": ["ip", "route", "show", "table", "all"],
    "link": ["ip", "-d", "link", "show"],
    "netns": ["ip", "netns", "list"],
}
TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")
SAVE_COMMENT = re.compile(r"^# (Generated|Completed) .*$", re.M)


def snapshot_root() -> dict[str, str]:
    """The root namespace's rules, routes, links and namespaces (timestamps stripped)."""
    snap = {}
    for key, cmd in ROOT_SNAPSHOT_COMMANDS.items():
        if shutil.which(cmd[0]) is None:
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        text = SAVE_COMMENT.sub("", proc.stdout)
        if key == "netns":
            # other suites create and delete their own npa-* namespaces while we run (the
            # machine is shared): compare the non-npa ones; ours are checked by name
            text = "\n".join(line for line in text.splitlines() if not line.startswith("npa-"))
        snap[key] = text + f"\nrc={proc.returncode}"
    # link statistics are not printed without -s, so the link listing is stable
    return snap


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """two-nodes-local: eTP=Local, 2 pods on node-a, 1 on node-b, even spread, 600 connections."""
    import os

    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None  # the tests below use need_root and skip (or fail in CI)
    before = snapshot_root()
    out = tmp_path_factory.mktemp("lab-run")
    result = run_scenario("two-nodes-local", out=out)
    after = snapshot_root()
    return before, result, after, out


def conntrack_flows(text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(original, reply) tuples of every flow line of ``conntrack -L``."""
    flows = []
    for line in text.splitlines():
        tuples = TUPLE.findall(line)
        if len(tuples) == 2:
            flows.append((tuples[0], tuples[1]))
    return flows


def test_root_namespace_is_unchanged(need_root, local_run):
    before, result, after, _ = local_run
    assert len(result.namespaces) == 7
    assert before.keys() == after.keys()
    for key in before:
        assert before[key] == after[key], f"root namespace changed: {key}"
    assert not set(result.namespaces) & set(lab_namespaces())


def test_local_policy_shares(need_root, local_run):
    _, result, _, _ = local_run
    per_pod = result.requests_per_pod()
    total = sum(per_pod.values())
    assert total >= 600
    assert result.summary()["outcomes"] == {"connections": 600, "requests_ok": 600}
    shares = {pod: n / total for pod, n in per_pod.items()}
    # eTP=Local, nodes get half each: node-a's two pods a quarter each, node-b's pod a half
    assert shares["web-1"] == pytest.approx(0.25, abs=0.05)
    assert shares["web-2"] == pytest.approx(0.25, abs=0.05)
    assert shares["web-3"] == pytest.approx(0.50, abs=0.05)


def test_conntrack_agrees_with_pods(need_root, local_run):
    _, result, _, _ = local_run
    pod_by_ip = {ip: pod for pod, ip in result.pod_ips.items()}
    from_conntrack: Counter[tuple[str, str]] = Counter()
    for node, files in result.dumps.items():
        node_ip = result.node_ips[node]
        assert files["conntrack.txt"].rstrip().endswith("flow entries have been shown.")
        for orig, reply in conntrack_flows(files["conntrack.txt"]):
            if orig[1] == node_ip and orig[3] == "30080":
                assert reply[1] == orig[0]  # eTP=Local: no SNAT, the reply goes to the client
                from_conntrack[(pod_by_ip[reply[0]], orig[0])] += 1
    from_pods = Counter({
        (pod, client): n
        for pod, counts in result.pod_counts.items()
        for client, n in counts["connections"].items()
    })
    assert from_conntrack == from_pods
    assert {client for _, client in from_pods} == set(load_scenario("two-nodes-local").addresses().client_ips)
    assert sum(from_pods.values()) == 600


def test_rules_were_loaded_and_counted(need_root, local_run):
    _, result, _, out = local_run
    assert [(x.node, x.reason) for x in result.loads] == [("node-a", "initial sync"), ("node-b", "initial sync")]
    for load in result.loads:
        saved = result.dumps[load.node]["iptables-save.txt"]
        assert load.rule_count == len(re.findall(r"^\[\d+:\d+\] -A ", saved, re.M))
        assert 0 < load.duration_seconds < 5
    # nat rules see the first packet of each connection only: every endpoint's DNAT counter
    # equals the connections its pod counted, on the node that holds it (eTP=Local)
    dnat = re.compile(r"^\[(\d+):\d+\] -A KUBE-SEP-\w+ .*-j DNAT --to-destination ([\d.]+):8080$", re.M)
    connections = result.connections_per_pod()
    for node, files in result.dumps.items():
        local = {p.name for p in result.scenario.pods if p.node == node}
        counters = {ip: int(n) for n, ip in dnat.findall(files["iptables-save.txt"])}
        for pod, ip in result.pod_ips.items():
            assert counters[ip] == (connections[pod] if pod in local else 0), (node, pod)
    assert (out / "node-a" / "conntrack.txt").exists() and (out / "ground_truth.json").exists()


KEEPALIVE_NAT_EVENTS = """
name: keepalive-nat-events
nodes:
  - {name: node-a, proxy_mode: iptables-legacy}
  - {name: node-b, proxy_mode: nftables}
  - {name: node-c, proxy_mode: iptables-nft}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
  - {name: web-2, node: node-b, labels: {app: web}}
  - {name: web-3, node: node-c, labels: {app: web}}
  - {name: web-4, node: node-a, labels: {app: web}, start_absent: true}
services:
  - name: web
    selector: {app: web}
    externalTrafficPolicy: Cluster
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
clients: {count: 5, addressing: nat}
traffic:
  node_weights: {node-a: 1, node-b: 1, node-c: 0}
  mode: keep-alive
  requests_per_connection: 4
  requests: 240
  max_seconds: 20
events:
  - {at_request: 60, pod: web-4, action: add}
  - {at_request: 120, pod: web-3, action: unready}
"""


def test_keepalive_nat_and_endpoint_events(need_root, need_binary):
    """Three nodes, one per proxy mode (node-c gets no external traffic, only forwarded
    flows); a pod is added after 60 requests and another becomes unready after 120."""
    need_binary("iptables-nft-restore")
    need_binary("nft")
    result = run_scenario(KEEPALIVE_NAT_EVENTS)
    assert len(result.namespaces) == 10 and not set(result.namespaces) & set(lab_namespaces())
    seg1, seg2, seg3 = result.traffic
    assert [s["requests_sent"] for s in result.traffic] == [60, 60, 120]
    assert [s["outcomes"] for s in result.traffic] == [
        {"connections": 15, "requests_ok": 60}, {"connections": 15, "requests_ok": 60},
        {"connections": 30, "requests_ok": 120}]
    # web-4 is an endpoint only after its add; web-3 only before its unready event
    assert "web-4" not in seg1["by_pod"] and seg3["by_pod"].get("web-4", 0) > 0
    assert seg1["by_pod"].get("web-3", 0) + seg2["by_pod"].get("web-3", 0) > 0
    assert "web-3" not in seg3["by_pod"]
    assert result.requests_per_pod()["web-3"] == seg1["by_pod"].get("web-3", 0) + seg2["by_pod"].get("web-3", 0)
    # keep-alive: every connection carried 4 requests, on whichever pod it landed
    for pod, n in result.connections_per_pod().items():
        assert result.requests_per_pod()[pod] == 4 * n
    # eTP=Cluster masquerades: pods see node addresses (or their bridge gateway), never a client
    seen = {client for counts in result.pod_counts.values() for client in counts["requests"]}
    assert seen <= {"198.18.0.11", "198.18.0.12", "198.18.64.1", "198.18.65.1"}
    assert set(result.pod_counts["web-3"]["requests"]) <= {"198.18.0.11", "198.18.0.12"}
    # the conntrack entries of node-a show one NAT'ed client source for all flows
    flows = conntrack_flows(result.dumps["node-a"]["conntrack.txt"])
    sources = {orig[0] for orig, _ in flows if orig[3] == "30081"}
    assert sources == {"198.18.0.200"}
    modes = ["iptables-legacy", "nftables", "iptables-nft"]
    assert [(x.node, x.reason, x.proxy_mode) for x in result.loads] == [
        *[(n, "initial sync", m) for n, m in zip(("node-a", "node-b", "node-c"), modes)],
        *[(n, "web-4 add", m) for n, m in zip(("node-a", "node-b", "node-c"), modes)],
        *[(n, "web-3 unready", m) for n, m in zip(("node-a", "node-b", "node-c"), modes)],
    ]
    assert [e["action"] for e in result.events] == ["add", "unready"]
    assert [e["at_request"] for e in result.events] == [60, 120]
    # one endpoint more, then one fewer: the rule counts follow on every node
    initial, added, removed = result.loads[:3], result.loads[3:6], result.loads[6:]
    for a, b, c in zip(initial, added, removed):
        assert b.rule_count > a.rule_count and c.rule_count < b.rule_count
    assert "198.18.66.10" not in result.dumps["node-b"]["nft-ruleset.txt"]
    assert "198.18.66.10" not in result.dumps["node-c"]["iptables-save.txt"]
    assert "198.18.64.11" in result.dumps["node-c"]["iptables-save.txt"]  # web-4
    # node-c received no NodePort flows from the clients, only node-a/b's masqueraded ones
    flows_c = conntrack_flows(result.dumps["node-c"]["conntrack.txt"])
    assert flows_c and all(orig[0] in ("198.18.0.11", "198.18.0.12") for orig, _ in flows_c)


AFFINITY = """
name: affinity-local
nodes:
  - {name: node-a, proxy_mode: iptables-legacy}
  - {name: node-b, proxy_mode: nftables}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
  - {name: web-2, node: node-a, labels: {app: web}}
  - {name: web-3, node: node-b, labels: {app: web}}
  - {name: web-4, node: node-b, labels: {app: web}}
services:
  - name: web
    selector: {app: web}
    externalTrafficPolicy: Local
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30082}]
clients: {count: 8, addressing: distinct}
traffic:
  node_weights: {node-a: 1, node-b: 1}
  requests: 160
  max_seconds: 20
"""


def test_client_ip_affinity_pins_each_client_per_node(need_root, need_binary):
    """With sessionAffinity ClientIP each node sends a client to one pod (the recent list
    in iptables, the affinity set in nftables); eTP=Local keeps the client address."""
    need_binary("nft")
    result = run_scenario(AFFINITY)
    assert sum(result.connections_per_pod().values()) == 160
    pods_of_client: dict[tuple[str, str], set[str]] = {}
    for pod in result.scenario.pods:
        for client, n in result.pod_counts[pod.name]["connections"].items():
            assert client.startswith("198.18.200.")
            pods_of_client.setdefault((pod.node, client), set()).add(pod.name)
    assert len(pods_of_client) == 16  # 8 clients on each of the 2 nodes
    assert all(len(pods) == 1 for pods in pods_of_client.values()), pods_of_client


SERVED = """
name: served-metrics
nodes:
  - {name: node-a, proxy_mode: iptables-legacy}
  - {name: node-b, proxy_mode: iptables-legacy}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
  - {name: web-2, node: node-b, labels: {app: web}}
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30083}]
clients: {count: 2, addressing: distinct}
traffic:
  node_weights: {node-a: 1, node-b: 1}
  requests: 10
  max_seconds: 10
"""
PROMETHEUS_CONFIG = """
global: {{scrape_interval: 1s, scrape_timeout: 900ms}}
scrape_configs:
  - job_name: npa-lab
    honor_labels: true   # keep the lab's instance=<node> on the kube-proxy series
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_query(base: str, query: str) -> list[dict]:
    import json
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}", timeout=5) as r:
        reply = json.load(r)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def test_a_real_prometheus_scrapes_the_live_lab(need_root, need_binary, tmp_path):
    """lab_up(serve_metrics_port=...) is scraped by a real Prometheus (loopback, temp TSDB)
    before and after an event; both nodes' kube-proxy series are told apart by instance."""
    import time

    from npanalytics.lab.runner import lab_up

    prometheus = need_binary("prometheus")
    port, web = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(port=port))
    base = f"http://127.0.0.1:{web}"
    proc = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}", "--storage.tsdb.retention.time=1h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sync = 'kubeproxy_sync_proxy_rules_duration_seconds_count{job="npa-lab"}'

    def wait_for(query: str, want: dict[str, float], seconds: float = 10.0) -> None:
        end, got = time.monotonic() + seconds, None
        while time.monotonic() < end:
            try:
                got = {r["metric"].get("instance"): float(r["value"][1]) for r in prometheus_query(base, query)}
            except OSError:
                got = None  # Prometheus still starting
            if got == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"{query}: wanted {want}, Prometheus has {got}")

    try:
        with lab_up(SERVED, serve_metrics_port=port) as topo:
            assert topo.metrics_server.server_address[1] == port
            wait_for(sync, {"node-a": 1, "node-b": 1})
            topo.apply_event("web-2", "unready")
            wait_for(sync, {"node-a": 2, "node-b": 2})
            wait_for('kube_pod_status_ready{job="npa-lab",pod="web-2",condition="false"}', {f"127.0.0.1:{port}": 1})
            scrapes = topo.metrics_server.scrapes
        assert scrapes >= 2
        assert prometheus_query(base, 'up{job="npa-lab"}')  # the target was known and scraped
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
