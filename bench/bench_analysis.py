"""Benchmark the skew + expected model over millions of conntrack flows, against a naive baseline.

Usage::

    .venv/bin/python bench/bench_analysis.py [--rows 10000000] [--runs 3] [--baseline-runs 1]

1. Builds a synthetic ``conntrack_flows`` frame shaped like the real kind (every
   required column with its dtype; 3 nodes, ``--services`` NodePort Service ports with
   2-12 endpoints each, 20,000 client addresses, accounting on), with the matching
   ``proxy_services``/``proxy_endpoints`` of every node.
2. Times the analysis path (``conntrack_load`` -> ``selection_from_rules`` ->
   ``client_node_mix`` -> ``expected_shares`` -> ``skew_table`` with 1,000 bootstrap
   replicates): the median of ``--runs`` calls after a warm-up call.
3. Times a naive baseline on the same frame: ``attribute_flows`` per node on every row
   (string merges), a ``groupby`` on the string keys, then a Python loop over the Service
   ports computing the same statistics with one ``power_divergence`` and one bootstrap
   per port.

Prints the seconds, the ratio and the load average (the machine is shared); exits 1 when
the analysis path takes more than 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

from npanalytics.analysis.expected import client_node_mix, expected_shares, selection_from_rules
from npanalytics.analysis.flows import attribute_flows
from npanalytics.analysis.load import conntrack_load
from npanalytics.analysis.skew import skew_table
from npanalytics.schemas import SCHEMAS, frame_from_records, validate_frame

TARGET_SECONDS = 3.0
NODES = ("node-a", "node-b", "node-c")


def _cat(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="str"))


def _na(n: int, dtype: str) -> pd.api.extensions.ExtensionArray:
    return pd.array(np.zeros(n, dtype="int64"), dtype=dtype).__class__(
        np.zeros(n, dtype="int32" if dtype == "Int32" else "int64"), np.ones(n, dtype=bool))


def synthetic(rows: int, services: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A conntrack_flows frame of ``rows`` flows, and the rules of every node."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, size=services)
    backends = [f"10.{1 + s // 250}.{s % 250}.{e + 1}" for s in range(services) for e in range(sizes[s])]
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    node_ips = [f"192.0.2.{i + 1}" for i in range(len(NODES))]
    svc_records, ep_records = [], []
    for s in range(services):
        spn = f"default/svc-{s}:http"
        for node in NODES:
            svc_records.append({
                "proxy_mode": "iptables", "namespace": "default", "service": f"svc-{s}", "port_name": "http",
                "service_port_name": spn, "protocol": "tcp", "cluster_ip": f"10.96.{s // 250}.{s % 250}",
                "port": 80, "node_port": 30000 + s, "external_ips": "", "load_balancer_ips": "",
                "external_traffic_policy": "Cluster", "internal_traffic_policy": "Cluster",
                "session_affinity": "None", "session_affinity_timeout_seconds": None, "scheduler": None,
                "endpoint_count": int(sizes[s]), "local_endpoint_count": None, "has_endpoints": True,
                "svc_chain": f"KUBE-SVC-{s}", "svl_chain": None, "ext_chain": f"KUBE-EXT-{s}", "fw_chain": None,
                "node": node,
            })
            for e in range(sizes[s]):
                ep_records.append({
                    "proxy_mode": "iptables", "namespace": "default", "service": f"svc-{s}", "port_name": "http",
                    "service_port_name": spn, "protocol": "tcp", "endpoint_ip": backends[first[s] + e],
                    "endpoint_port": 8080, "chain": f"KUBE-SVC-{s}", "local": False, "position": e,
                    "rule_probability": 1.0 / (sizes[s] - e), "probability": 1.0 / sizes[s],
                    "endpoint_chain": f"KUBE-SEP-{s}-{e}", "weight": None, "active_connections": None,
                    "inactive_connections": None, "packets": None, "bytes": None, "node": node,
                })
    proxy_services = frame_from_records(svc_records, "proxy_services", optional=("node",))
    proxy_endpoints = frame_from_records(ep_records, "proxy_endpoints", optional=("node",))

    svc = rng.integers(0, services, size=rows)
    node = rng.integers(0, len(NODES), size=rows)
    backend = first[svc] + (rng.random(rows) * sizes[svc]).astype("int64")
    client = rng.integers(0, 20_000, size=rows)
    clients = [f"198.51.{c // 250}.{c % 250}" for c in range(20_000)]
    n = rows
    data = {
        "lineno": np.arange(1, n + 1, dtype="int64"),
        "l3_protocol": _cat(np.zeros(n, dtype="int8"), ["ipv4"]),
        "protocol": _cat(np.zeros(n, dtype="int8"), ["tcp"]),
        "protocol_number": np.full(n, 6, dtype="int64"),
        "timeout_seconds": pd.array(rng.integers(1, 120, size=n), dtype="Int64"),
        "state": _cat(rng.integers(0, 2, size=n).astype("int8"), ["ESTABLISHED", "TIME_WAIT"]),
        "orig_src_ip": _cat(client.astype("int32"), clients),
        "orig_dst_ip": _cat(node.astype("int8"), node_ips),
        "orig_src_port": pd.array(rng.integers(1024, 65535, size=n).astype("int32"), dtype="Int32"),
        "orig_dst_port": pd.array((30000 + svc).astype("int32"), dtype="Int32"),
        "reply_src_ip": _cat(backend.astype("int32"), backends),
        "reply_dst_ip": _cat(node.astype("int8"), node_ips),
        "reply_src_port": pd.array(np.full(n, 8080, dtype="int32"), dtype="Int32"),
        "reply_dst_port": pd.array(rng.integers(1024, 65535, size=n).astype("int32"), dtype="Int32"),
        "icmp_type": _na(n, "Int32"), "icmp_code": _na(n, "Int32"), "icmp_id": _na(n, "Int32"),
        "orig_packets": pd.array(rng.integers(5, 50, size=n), dtype="Int64"),
        "orig_bytes": pd.array(rng.integers(300, 50_000, size=n), dtype="Int64"),
        "reply_packets": pd.array(rng.integers(5, 50, size=n), dtype="Int64"),
        "reply_bytes": pd.array(rng.integers(300, 50_000, size=n), dtype="Int64"),
        "unreplied": np.zeros(n, dtype=bool), "assured": np.ones(n, dtype=bool),
        "offload": np.zeros(n, dtype=bool), "hw_offload": np.zeros(n, dtype=bool),
        "mark": _na(n, "Int64"), "secmark": _na(n, "Int64"),
        "secctx": _cat(np.full(n, -1, dtype="int8"), []),
        "zone": _na(n, "Int32"), "zone_orig": _na(n, "Int32"), "zone_reply": _na(n, "Int32"),
        "use": _na(n, "Int64"), "conntrack_id": _na(n, "Int64"),
        "helper": _cat(np.full(n, -1, dtype="int8"), []), "labels": _cat(np.full(n, -1, dtype="int8"), []),
        "delta_time_seconds": _na(n, "Int64"),
        "service_ip": _cat(node.astype("int8"), node_ips),
        "service_port": pd.array((30000 + svc).astype("int32"), dtype="Int32"),
        "backend_ip": _cat(backend.astype("int32"), backends),
        "backend_port": pd.array(np.full(n, 8080, dtype="int32"), dtype="Int32"),
        "dnat": np.ones(n, dtype=bool), "snat": np.ones(n, dtype=bool), "is_node_port": np.ones(n, dtype=bool),
        "node": _cat(node.astype("int8"), list(NODES)),
    }
    flows = pd.DataFrame(data)[[c.name for c in SCHEMAS["conntrack_flows"].columns]]
    return validate_frame(flows, "conntrack_flows"), proxy_services, proxy_endpoints


def analysis_path(flows, services, endpoints):
    load = conntrack_load(flows, services, proxy_endpoints=endpoints, measures=("connections",))
    selection = selection_from_rules(endpoints, services)
    conns = load[load["measure"] == "connections"]
    expected = expected_shares(selection, conns, client_node_mix(load))
    return skew_table(conns, expected, groups=("endpoint",), n_boot=1000)


def naive_path(flows, services, endpoints):
    """attribute_flows on every row, a groupby on strings, a loop over Service ports."""
    from scipy import stats

    parts = []
    for node, idx in flows.groupby("node", observed=True).groups.items():
        part = flows.loc[idx]
        spn = attribute_flows(part, services[services["node"] == node])
        parts.append(pd.DataFrame({"service_port_name": spn.astype(str), "backend": part["backend_ip"].astype(str)}))
    every = pd.concat(parts)
    counts = every.groupby(["service_port_name", "backend"]).size()
    probs = endpoints.drop_duplicates(["service_port_name", "endpoint_ip"]).set_index(
        ["service_port_name", "endpoint_ip"])["probability"]
    rng = np.random.default_rng(0)
    out = []
    for spn, c in counts.groupby(level=0):
        o = c.to_numpy(dtype="float64")
        p = probs.loc[spn].reindex(c.index.get_level_values(1)).to_numpy()
        e = p / p.sum() * o.sum()
        g = stats.power_divergence(o, e, lambda_="log-likelihood")
        boot = rng.multinomial(int(o.sum()), o / o.sum(), size=1000) / o.sum()
        lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
        x = np.sort(o)
        n = len(x)
        gini = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum())
        out.append((spn, g.pvalue, gini, o.max() / o.mean(), lo.min(), hi.max()))
    return out


def _time(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--services", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-runs", type=int, default=1)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    flows, services, endpoints = synthetic(args.rows, args.services)
    print(f"synthetic frame: {len(flows):,} flows, {args.services} Service ports x {len(NODES)} nodes, "
          f"{len(endpoints) // len(NODES):,} endpoints; built in {time.perf_counter() - t0:.1f} s; "
          f"{flows.memory_usage(deep=False).sum() / 2**20:.0f} MiB")
    skew, summary = analysis_path(flows, services, endpoints)  # warm-up (imports scipy, allocates)
    assert len(summary) == args.services and summary["total"].sum() == len(flows)
    fast = _time(lambda: analysis_path(flows, services, endpoints), args.runs)
    slow = _time(lambda: naive_path(flows, services, endpoints), args.baseline_runs)
    f, s = statistics.median(fast), statistics.median(slow)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"analysis path (conntrack_load + expected + skew_table, 1000 bootstrap draws): "
          f"median {f:.3f} s of {args.runs} {[round(x, 3) for x in fast]}")
    print(f"naive baseline (attribute_flows per row + groupby + loop per Service port): "
          f"median {s:.3f} s of {args.baseline_runs} {[round(x, 3) for x in slow]}")
    print(f"speed-up: {s / f:.1f}x; target <= {TARGET_SECONDS} s: {'met' if f <= TARGET_SECONDS else 'MISSED'}")
    return 0 if f <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
