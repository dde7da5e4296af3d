"""Benchmark: the lab's proxy-mode sweep (needs root).

    .venv/bin/python bench/bench_proxy_sweep.py [--record datasets/proxy-mode-sweep] [--markdown FILE]
        [--max-seconds S] [--max-load-seconds S]

Runs :func:`npanalytics.lab.sweep.run_sweep` with its defaults (iptables-legacy,
iptables-nft, nftables x 0/1k/5k/10k/20k/40k filler Services, 2,000 new TCP
connections per step) and prints, per mode and step, the connect-time p50/p90/p99,
their ratio to the same mode's 0-filler step measured in the same run (the
baseline), the rule-load time and rule count, the steps that were skipped and why,
and the per-mode linear fit of p50 and p99 against the Service count (ns per Service
with its 95 % confidence interval, R²). Exits with status 1 when the whole run takes
more than 5 minutes (TARGET_SECONDS) or the sweep fails; 2 when not root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TARGET_SECONDS = 300.0


def _loadavg(log: str) -> str:
    values = [v for line in log.splitlines() if '"record":"connect"' in line
              for v in json.loads(line).get("loadavg_1min", [])]
    return f"{min(values):.1f} .. {max(values):.1f}" if values else "n/a"


def _table(summary, fits, skipped, logs, elapsed: float, command: str) -> str:
    lines = [f"Command: `{command}`", "",
             f"Whole run: {elapsed:.0f} s (target <= {TARGET_SECONDS:.0f} s).", ""]
    for mode, g in summary.groupby("proxy_mode", observed=True, sort=False):
        base = g.loc[g["services"] == g["services"].min()].iloc[0]
        lines += [f"### {mode}", "",
                  f"Machine 1-minute load average around the connect steps: {_loadavg(logs.get(mode, ''))}.", "",
                  "| fillers | services | rules | load s | p50 µs | p90 µs | p99 µs | p50 / base | p99 / base | failed |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for _, r in g.iterrows():
            lines.append(
                f"| {r.services - 1} | {r.services} | {r.rules} | {r.load_seconds:.3f} | {r.p50_us:.0f} | "
                f"{r.p90_us:.0f} | {r.p99_us:.0f} | {r.p50_us / base.p50_us:.2f} | "
                f"{r.p99_us / base.p99_us:.2f} | {r.failures}/{r.attempts} |"
            )
        for s in skipped:
            if s["proxy_mode"] == mode:
                lines.append(f"| {s['services'] - 1} | {s['services']} | skipped: {s['reason']} ||||||||")
        lines.append("")
        for _, f in fits[fits["proxy_mode"] == mode].iterrows():
            lines.append(
                f"- fit of {f.statistic} on {f.points} steps: {f.slope_ns_per_service:.2f} ns/service "
                f"(95 % CI {f.slope_ci_low:.2f} .. {f.slope_ci_high:.2f}), intercept "
                f"{f.intercept_us:.0f} µs, R² {f.r_squared:.3f}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", type=Path, help="also write the dataset folder (overwritten)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=TARGET_SECONDS,
                        help="the sweep's own deadline (the exit status still checks the 5-minute target)")
    parser.add_argument("--max-load-seconds", type=float, default=90.0,
                        help="limit of one rule load; a load predicted (quadratically) to exceed it is skipped")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_proxy_sweep: needs root (network namespaces)", file=sys.stderr)
        return 2
    from npanalytics.exceptions import LabError
    from npanalytics.lab.sweep import fit_sweep, record_sweep, run_sweep, summarize_sweep

    start = time.perf_counter()
    try:
        result = run_sweep(connections=args.connections, max_seconds=args.max_seconds,
                           max_load_seconds=args.max_load_seconds)
    except LabError as exc:
        print(f"bench_proxy_sweep: FAILED after {time.perf_counter() - start:.0f} s: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    summary = summarize_sweep(result.connect_latency, result.rule_loads)
    fits = fit_sweep(summary)
    command = " ".join([".venv/bin/python", "bench/bench_proxy_sweep.py", *(argv or sys.argv[1:])])
    text = _table(summary, fits, result.skipped, result.logs, elapsed, command)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.record:
        record_sweep(result, args.record, overwrite=True)
        print(f"recorded {args.record}")
    if elapsed > TARGET_SECONDS:
        print(f"bench_proxy_sweep: took {elapsed:.0f} s, over the {TARGET_SECONDS:.0f} s target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
