"""Benchmark: the lab's proxy-mode sweep (needs root).

    .venv/bin/python bench/bench_proxy_sweep.py [--record datasets/proxy-mode-sweep] [--markdown FILE]
        [--max-seconds S] [--max-load-seconds S]
    .venv/bin/python bench/bench_proxy_sweep.py --from-dataset datasets/proxy-mode-sweep
    .venv/bin/python bench/bench_proxy_sweep.py --nft-load-variants 1000,2000,4000,8000

Runs :func:`npanalytics.lab.sweep.run_sweep` with its defaults (iptables-legacy,
iptables-nft, nftables x 0/1k/5k/10k/20k/40k filler Services, 2,000 new TCP
connections per step) and prints, per mode and step, the connect-time p50/p90/p99,
their ratio to the same mode's 0-filler step measured in the same run (the
baseline), the rule-load time and rule count, the steps that were skipped and why,
and the per-mode linear fit of p50 and p99 against the Service count (ns per Service
with its 95 % confidence interval, R²). Exits with status 1 when the whole run takes
more than 5 minutes (TARGET_SECONDS) or the sweep fails; 2 when not root.
``--from-dataset`` prints the same tables from a recorded sweep (no root needed; the
whole-run time is the recording's finished - started).

``--nft-load-variants SIZES`` times ``nft -f`` of the sweep's nftables table (target + fillers,
SIZES Service ports in all) written in several equivalent forms, each loaded once into a fresh
``npa-lab-sweep-variants-*`` namespace: kube-proxy's form (one transaction), without the
``add table``/``delete table`` prefix, with one ``add element`` per map, in ``table { chain {
... } }`` block syntax (elements inline, or batched after), and the lab's fast form
(``render_nftables(transaction_size=500)``, one ``nft -f`` per part, times summed). At the
smallest size it checks that every form lists the same ``nft list ruleset``. A diagnostic
form with a ``goto`` in place of each ``numgen`` vmap (NOT the same table) shows the cost of
the anonymous maps. Wall, user and system seconds of the ``nft`` processes.
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
                  f"Machine 1-minute load average around the connect steps: {_loadavg(logs.get(mode, ''))}.",
                  f"Rule loads of this mode: {g['load_seconds'].sum():.1f} s in total.", "",
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


def _from_dataset(path: Path, command: str) -> int:
    import pandas as pd

    from npanalytics.datasets import load_dataset
    from npanalytics.lab.sweep import fit_sweep, summarize_sweep

    ds = load_dataset(path)
    logs = {rel[len("raw/"):-len(".jsonl")]: content.decode() for rel, content in ds.raw.items()
            if rel.startswith("raw/") and rel.endswith(".jsonl")}
    summary = summarize_sweep(ds["connect_latency"], ds["rule_loads"])
    elapsed = (pd.Timestamp(ds.recording["finished"]) - pd.Timestamp(ds.recording["started"])).total_seconds()
    print(_table(summary, fit_sweep(summary), ds.recording.get("skipped", []), logs, elapsed, command))
    return 0


_TABLE = "ip kube-proxy"
_PREFIX = 3  # add table / delete table / add table


def _commands(text: str) -> tuple[list[str], dict[str, str], list[tuple[str, str]], dict[str, list[str]]]:
    """Sets/maps, chains (with spec), rules and elements of one-transaction render_nftables text."""
    import re

    sets, chains, rules, elements = [], {}, [], {}
    for line in text.splitlines()[_PREFIX:]:
        if not line:
            continue
        words = line.split(" ", 5)
        if line.startswith(("add set ", "add map ")):
            sets.append(line)
        elif line.startswith("add chain "):
            spec = re.match(r"add chain \S+ \S+ \S+(?: \{ (.*) \})?$", line).group(1)
            chains[words[4]] = spec or ""
        elif line.startswith("add rule "):
            rules.append((words[4], words[5]))
        elif line.startswith("add element "):
            elements.setdefault(words[4], []).append(line.split(" { ", 1)[1][:-2])
        else:
            raise ValueError(f"unexpected line {line!r}")
    return sets, chains, rules, elements


def _variants(ports) -> dict[str, list[str]]:
    """Equivalent nft -f inputs (one list item per nft -f run), plus the goto diagnostic."""
    import re

    from npanalytics.lab.render_nftables import render_nftables, split_transactions
    from npanalytics.lab.sweep import CLUSTER_CIDR, NODE, NODE_IP

    kwargs = dict(cluster_cidr=CLUSTER_CIDR, node_ips=(NODE_IP,))
    kp = render_nftables(ports, NODE, **kwargs)
    head = kp.splitlines()[:_PREFIX]
    sets, chains, rules, elements = _commands(kp)
    batched = [f"add element {_TABLE} {c} {{ {', '.join(els)} }}" for c, els in elements.items()]

    def block(inline: bool) -> str:
        by_chain: dict[str, list[str]] = {c: [] for c in chains}
        for chain, rule in rules:
            by_chain[chain].append(rule)
        out = [*head, "table ip kube-proxy {"]
        for line in sets:
            kind, name, spec = re.match(r"add (set|map) \S+ \S+ (\S+) \{ (.*) \}$", line).groups()
            els = elements.get(name) if inline else None
            out.append(f"  {kind} {name} {{ {spec}" + (f" elements = {{ {', '.join(els)} }} ;" if els else "") + " }")
        for chain, spec in chains.items():
            out += [f"  chain {chain} {{", *([f"    {spec}"] if spec else []), *(f"    {r}" for r in by_chain[chain]), "  }"]
        out.append("}")
        return "\n".join(out + ([] if inline else batched)) + "\n"

    no_elements = [line for line in kp.splitlines() if not line.startswith("add element ")]
    return {
        "kube-proxy form (1 transaction)": [kp],
        "without add/delete table prefix": ["\n".join(kp.splitlines()[:1] + kp.splitlines()[_PREFIX:]) + "\n"],
        "one add element per map": ["\n".join(no_elements + batched) + "\n"],
        "block syntax, elements inline": [block(True)],
        "block syntax, elements batched": [block(False)],
        "transactions of 1000 (fast form)": split_transactions(render_nftables(ports, NODE, transaction_size=1000, **kwargs)),
        "transactions of 500 (fast form, the sweep's)": split_transactions(
            render_nftables(ports, NODE, transaction_size=500, **kwargs)),
        "DIAGNOSTIC, not the same table: goto instead of numgen vmap": [re.sub(
            r"numgen random mod \d+ vmap \{ 0 : (goto \S+).*\}$", r"\1", kp, flags=re.M)],
    }


def _nft_load_variants(sizes: list[int]) -> int:
    import resource

    from npanalytics.lab.netns import LabSession
    from npanalytics.lab.sweep import filler_service_ports

    if os.geteuid() != 0:
        print("bench_proxy_sweep: needs root (network namespaces)", file=sys.stderr)
        return 2
    import subprocess

    print(f"nft: {subprocess.run(['nft', '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"kernel {os.uname().release}; load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[int, str]] = {}
    for n in sizes:
        listings: dict[str, str] = {}
        for number, (name, parts) in enumerate(_variants(filler_service_ports(n - 1)).items()):
            with LabSession() as lab:
                ns = lab.add_namespace(f"npa-lab-sweep-variants-{number}")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                for part in parts:
                    lab.exec(ns, ["nft", "-f", "-"], input=part, timeout=600)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if n == sizes[0]:
                    listings[name] = lab.exec(ns, ["nft", "list", "ruleset"], timeout=120).stdout
            cell = (f"{wall:.2f} ({after.ru_utime - before.ru_utime:.2f} / {after.ru_stime - before.ru_stime:.2f})"
                    + (f" x{len(parts)}" if len(parts) > 1 else ""))
            results.setdefault(name, {})[n] = cell
            print(f"{n:6d}  {name}: {cell}", flush=True)
        if listings:
            reference = listings["kube-proxy form (1 transaction)"]
            for name, listed in listings.items():
                same = listed == reference
                print(f"{n:6d}  {name}: nft list ruleset {'==' if same else '!='} kube-proxy form's")
    print()
    print("| form | " + " | ".join(f"{n} services" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells.get(n, "") for n in sizes) + " |")
    print(f"\nwall s (user s / sys s) of the nft processes; xK = K nft -f runs; load average {os.getloadavg()[0]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", type=Path, help="also write the dataset folder (overwritten)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=TARGET_SECONDS,
                        help="the sweep's own deadline (the exit status still checks the 5-minute target)")
    parser.add_argument("--max-load-seconds", type=float, default=120.0,
                        help="limit of one rule load; a load predicted (quadratically) to exceed it is skipped")
    parser.add_argument("--from-dataset", type=Path, help="print the tables of a recorded sweep and exit")
    parser.add_argument("--nft-load-variants", metavar="SIZES",
                        help="time nft -f of equivalent forms of the nftables table at these sizes and exit")
    args = parser.parse_args(argv)
    if args.nft_load_variants:
        return _nft_load_variants([int(v) for v in args.nft_load_variants.split(",")])
    command = " ".join([".venv/bin/python", "bench/bench_proxy_sweep.py", *(argv or sys.argv[1:])])
    if args.from_dataset:
        return _from_dataset(args.from_dataset, command)
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
