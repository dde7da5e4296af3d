"""Benchmark: read_metrics_text and kube_state_frames on a 3,200-pod cluster's kube-state-metrics scrape.

Usage::

    .venv/bin/python bench/bench_metrics_text.py [--nodes 16] [--pods-per-node 200] [--services 32]
                                                 [--scrapes 5] [--runs 5]

The scrape is the lab's kube-state-metrics text of a scenario (``--services`` Services,
each selecting an equal share of the pods). Each of ``--runs`` interleaved rounds
times, in this process (medians of wall-clock seconds):

- ``parser floor``: ``prometheus_client.parser.text_string_to_metric_families`` alone
  (the parser read_metrics_text uses: what it cannot beat);
- ``read_metrics_text``: the same text into a ``prom_samples`` frame;
- ``kube_state_frames``: that frame into the four cluster-state frames;
- ``OpenMetrics floor`` / ``read_metrics_text (OpenMetrics)``: ``--scrapes`` timestamped
  scrapes joined by :func:`npanalytics.lab.metrics.openmetrics_series` (a backfill file):
  the text parser on the scrapes one by one, against read_metrics_text on the joined
  document (which prometheus_client's OpenMetrics parser cannot read in one go).

There is no target (the issue sets none); the figures and ratios go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from prometheus_client import parser

from npanalytics import kube_state_frames, read_metrics_text
from npanalytics.lab.metrics import kube_state_metrics_text, openmetrics_series
from _common import spread_scenario  # bench/ is the script's folder


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--nodes", type=int, default=16)
    args.add_argument("--pods-per-node", type=int, default=200)
    args.add_argument("--services", type=int, default=32)
    args.add_argument("--scrapes", type=int, default=5)
    args.add_argument("--runs", type=int, default=5)
    opts = args.parse_args()
    scenario = spread_scenario("bench-ksm", opts.nodes, opts.pods_per_node, opts.services)
    text = kube_state_metrics_text(scenario)
    lines = text.count("\n")
    t0 = 1_790_000_000
    texts = [kube_state_metrics_text(scenario) for _ in range(opts.scrapes)]
    joined = openmetrics_series([(t0 + 30 * k, t) for k, t in enumerate(texts)])
    times: dict[str, list[float]] = {k: [] for k in (
        "parser floor", "read_metrics_text", "kube_state_frames", "OpenMetrics floor", "read_metrics_text (OpenMetrics)")}
    for _ in range(opts.runs):
        times["parser floor"].append(timed(lambda: sum(len(f.samples) for f in
                                                       parser.text_string_to_metric_families(text)))[0])
        elapsed, frame = timed(lambda: read_metrics_text(text))
        times["read_metrics_text"].append(elapsed)
        elapsed, state = timed(lambda: kube_state_frames(frame))
        times["kube_state_frames"].append(elapsed)
        times["OpenMetrics floor"].append(timed(lambda: [list(parser.text_string_to_metric_families(t))
                                                         for t in texts])[0])
        elapsed, backfill = timed(lambda: read_metrics_text(joined))
        times["read_metrics_text (OpenMetrics)"].append(elapsed)
    assert len(backfill) == opts.scrapes * len(frame)
    print(f"scrape: {lines:,} lines, {len(frame):,} samples, {len(text) / 1e6:.1f} MB; "
          f"{len(state.pods):,} pods, {len(state.endpoints):,} endpoint rows; "
          f"backfill: {opts.scrapes} scrapes, {len(backfill):,} samples; load {os.getloadavg()[0]:.1f}")
    floor = statistics.median(times["parser floor"])
    om_floor = statistics.median(times["OpenMetrics floor"])
    for name, values in times.items():
        median = statistics.median(values)
        base = om_floor if "OpenMetrics" in name else floor
        print(f"{name:34s} {median:8.3f} s  {len(frame) * (opts.scrapes if 'OpenMetrics' in name else 1) / median:>12,.0f}"
              f" samples/s  {median / base:5.2f}x its floor")


if __name__ == "__main__":
    main()
