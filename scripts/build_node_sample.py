"""Build the bundled ``node-sample`` dataset from the raw dumps the lab recorded.

The raw files come from ``npanalytics lab record node-sample --node node-a --out DIR``
(one node's ``iptables-save -c`` and ``conntrack -L`` after real traffic, plus the
pods' own counts and ``recording.json`` with the commands, tool versions and
topology). This script parses them with the project's own readers and writes the
dataset atomically (``recording.json`` becomes the manifest's ``recording``)::

    sudo .venv/bin/npanalytics lab record node-sample --node node-a --out /tmp/node-sample
    .venv/bin/python scripts/build_node_sample.py /tmp/node-sample datasets/node-sample
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from npanalytics.datasets import Dataset, Derivation


def build(folder: Path) -> Dataset:
    recording = json.loads((folder / "recording.json").read_text())
    node = recording["node"]
    raw = {f"raw/{p.name}": p.read_bytes() for p in sorted((folder / "raw").iterdir())}
    rules = "raw/iptables-save.txt"
    derivations = {
        "conntrack_flows": [Derivation("read_conntrack", "raw/conntrack.txt", "conntrack_flows", columns={"node": node})],
        "proxy_services": [Derivation("read_iptables_save", rules, "proxy_services", columns={"node": node})],
        "proxy_endpoints": [Derivation("read_iptables_save", rules, "proxy_endpoints", columns={"node": node})],
    }
    return Dataset.from_raw(
        name="node-sample",
        description=(
            "One node (node-a) of a 2-node iptables-legacy lab run: NodePort Service default/web "
            "(externalTrafficPolicy Cluster, 3 endpoints on 2 nodes), 400 new connections from 6 "
            "client addresses spread 3:1 over the nodes, conntrack accounting on. The rule dump and "
            "the conntrack table of the same node, as `npanalytics inspect` reads them."
        ),
        raw=raw,
        derivations=derivations,
        recording=recording,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the lab's output: recording.json and raw/")
    parser.add_argument("dest", type=Path, help="the dataset folder to write (replaced if it exists)")
    args = parser.parse_args()
    ds = build(args.source)
    ds.save(args.dest, overwrite=True)
    print(ds)


if __name__ == "__main__":
    main()
