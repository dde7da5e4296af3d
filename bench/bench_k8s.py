"""Benchmark: the Kubernetes API collector and the kubectl dump reader on a 3,200-pod cluster.

Usage::

    .venv/bin/python bench/bench_k8s.py [--nodes 16] [--pods-per-node 200] [--services 32]
                                        [--limit 500] [--runs 5]

The cluster is a lab scenario (``--services`` Services, each selecting an equal share of
the pods) served by :class:`npanalytics.lab.apiserver.LabApiServer` on loopback. Each of
``--runs`` interleaved rounds times, in this process (medians of wall-clock seconds):

- ``http floor``: the same paginated list requests with ``urllib`` and ``json.loads`` only
  (transport, the server's rendering and JSON decoding: what no collector can beat here);
- ``get_endpoint_snapshot``: the collector, through the ``kubernetes`` client;
- ``json.loads`` / ``yaml CSafeLoader``: decoding the ``kubectl -o json`` / ``-o yaml``
  dump of the same objects (the parse floor of the dump reader);
- ``read_k8s_objects`` on each dump.

There is no target (the issue sets none); the figures and ratios go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from npanalytics import get_endpoint_snapshot, read_k8s_objects
from npanalytics.lab.apiserver import RESOURCES, LabApiServer
from npanalytics.lab.k8s_objects import cluster_objects
from _common import spread_scenario  # bench/ is the script's folder


def http_floor(url: str, limit: int) -> int:
    items = 0
    for resource in ("services", "endpointslices", "pods", "nodes"):
        token = ""
        while True:
            query = f"?limit={limit}" + (f"&continue={token}" if token else "")
            with urllib.request.urlopen(f"{url}{RESOURCES[resource][0]}/{resource}{query}") as resp:
                doc = json.loads(resp.read())
            items += len(doc["items"])
            token = doc["metadata"].get("continue", "")
            if not token:
                break
    return items


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--pods-per-node", type=int, default=200)
    parser.add_argument("--services", type=int, default=32)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scenario = spread_scenario("bench-k8s", args.nodes, args.pods_per_node, args.services)
    objects = cluster_objects(scenario)
    everything = [o for key in ("services", "endpointslices", "pods", "nodes") for o in objects[key]]
    dump = {"apiVersion": "v1", "items": everything, "kind": "List", "metadata": {"resourceVersion": ""}}
    with tempfile.TemporaryDirectory(prefix="npa-bench-k8s-") as tmp, LabApiServer(scenario) as server:
        json_path, yaml_path = Path(tmp) / "cluster.json", Path(tmp) / "cluster.yaml"
        json_path.write_text(json.dumps(dump, indent=4, sort_keys=True) + "\n")
        yaml_path.write_text(yaml.safe_dump(dump, sort_keys=True, default_flow_style=False))
        config = server.write_kubeconfig(Path(tmp) / "kubeconfig")
        candidates = {
            "http floor": lambda: http_floor(server.url, args.limit),
            "get_endpoint_snapshot": lambda: get_endpoint_snapshot(kubeconfig=config, limit=args.limit),
            "json.loads (dump)": lambda: json.loads(json_path.read_text()),
            "read_k8s_objects (json)": lambda: read_k8s_objects(json_path),
            "yaml CSafeLoader (dump)": lambda: yaml.load(yaml_path.read_text(), Loader=yaml.CSafeLoader),
            "read_k8s_objects (yaml)": lambda: read_k8s_objects(yaml_path),
        }
        snap = candidates["get_endpoint_snapshot"]()  # warm-up (imports), and the sizes
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.runs):
            for name, func in candidates.items():
                times[name].append(timed(func))
        sizes = (json_path.stat().st_size, yaml_path.stat().st_size)
    print(f"{len(snap.services)} service ports, {len(snap.endpoints)} endpoints, {len(snap.pods)} pods, "
          f"{len(snap.nodes)} nodes; {len(snap.raw)} pages at limit={args.limit}; "
          f"dumps: json {sizes[0] / 1e6:.1f} MB, yaml {sizes[1] / 1e6:.1f} MB")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:28s} median {value:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in times[name])})")
    print(f"snapshot / http floor: {medians['get_endpoint_snapshot'] / medians['http floor']:.2f}x; "
          f"read json / json.loads: {medians['read_k8s_objects (json)'] / medians['json.loads (dump)']:.2f}x; "
          f"read yaml / CSafeLoader: {medians['read_k8s_objects (yaml)'] / medians['yaml CSafeLoader (dump)']:.2f}x")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
