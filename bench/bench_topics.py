"""Time the topic sections (affinity, long-lived, pressure), diagnose and analyze over many conntrack flows.

Usage::

    .venv/bin/python bench/bench_topics.py [--rows 1000000] [--runs 3] [--analyze-runs 3]

Builds the flows by repeating the bundled ``etp-cluster-spread`` dataset's conntrack
table (3 nodes, 5,028 entries) up to ``--rows``, with its rules, and times (median of
``--runs`` after a warm-up call):

* ``attribute_flows`` once per node: matching the flows to Service ports, the floor
  every topic needs (the baseline of the topic ratios);
* ``with_attribution``: that matching done once, stored as a column of a copy of the flows;
* each topic called alone on the dataset's frames (it matches the flows itself) and
  on the frames of ``with_attribution`` (it reads the column), as ``analyze`` calls it;
* ``analyze`` whole (``--analyze-runs``; 0 skips it), against the old path in the same
  run: ``analyze`` with the shared attribution switched off, so that each topic
  matches the flows again.

There is no target (issue #6 sets one only for skew + expected), so the script
always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd

import npanalytics
from npanalytics.analysis._topics import with_attribution
from npanalytics.analysis.affinity import affinity_section
from npanalytics.analysis.diagnostics import diagnose
from npanalytics.analysis.flows import attribute_flows
from npanalytics.analysis.longlived import long_lived_section
from npanalytics.analysis.pressure import pressure_section


def frames(rows: int) -> dict[str, pd.DataFrame]:
    """The dataset's frames with its conntrack table repeated to about ``rows`` entries."""
    out = dict(npanalytics.load_dataset("etp-cluster-spread").frames)
    flows = out["conntrack_flows"]
    big = pd.concat([flows] * max(1, rows // len(flows)), ignore_index=True)
    for col in flows.columns:  # concat keeps categories only when they are identical: restore them
        if isinstance(flows[col].dtype, pd.CategoricalDtype):
            big[col] = big[col].astype(flows[col].dtype)
    out["conntrack_flows"] = big
    return out


def _baseline(f: dict[str, pd.DataFrame]) -> None:
    flows, services = f["conntrack_flows"], f["proxy_services"]
    for node, part in flows.groupby("node", observed=True):
        attribute_flows(part, services.loc[services["node"] == node])


@contextmanager
def _unshared() -> Iterator[None]:
    """``analyze`` as before the shared attribution: each topic matches the flows itself."""
    module = sys.modules["npanalytics.analysis.analyze"]
    module.with_attribution = lambda frames: frames
    try:
        yield
    finally:
        module.with_attribution = with_attribution


def _old_analyze(f: dict[str, pd.DataFrame]) -> None:
    with _unshared():
        npanalytics.analyze(f, n_boot=200)


def _median(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up (imports, scipy.stats)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--analyze-runs", type=int, default=3)
    args = parser.parse_args()
    f = frames(args.rows)
    shared = with_attribution(f)
    n = len(f["conntrack_flows"])
    load = os.getloadavg()[0]
    base = _median(lambda: _baseline(f), args.runs)
    print(f"{n:,} flows, median of {args.runs}, load average {load:.1f} before")
    print(f"{'function':<22}{'alone s':>10}{'x baseline':>12}{'shared s':>10}{'x baseline':>12}")
    print(f"{'attribute_flows/node':<22}{base:>10.2f}{1.0:>12.2f}")
    once = _median(lambda: with_attribution(f), args.runs)
    print(f"{'with_attribution':<22}{once:>10.2f}{once / base:>12.2f}")
    for name, fn in (("affinity_section", affinity_section), ("long_lived_section", long_lived_section),
                     ("pressure_section", pressure_section), ("diagnose", diagnose)):
        alone = _median(lambda fn=fn: fn(f), args.runs)
        reused = _median(lambda fn=fn: fn(shared), args.runs)
        print(f"{name:<22}{alone:>10.2f}{alone / base:>12.2f}{reused:>10.2f}{reused / base:>12.2f}")
    if args.analyze_runs > 0:
        old = _median(lambda: _old_analyze(f), args.analyze_runs)
        new = _median(lambda: npanalytics.analyze(f, n_boot=200), args.analyze_runs)
        print(f"analyze (n_boot=200), median of {args.analyze_runs}: each topic matching {old:.2f} s, "
              f"shared attribution {new:.2f} s ({new / old:.2f}x)")
    print(f"load average {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
