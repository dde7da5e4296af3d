"""Benchmark: ``make report`` (the HTML report of the default dataset) with a warm virtualenv.

Usage::

    .venv/bin/python bench/bench_report.py [--runs 5] [--dataset node-sample] [--formats html]

Times, in interleaved rounds (one run of each command per round, so that load drift
hits all alike), the wall-clock seconds of these subprocesses and reports their medians:

- ``import``: ``python -c 'import npanalytics'`` (the floor: interpreter + package import);
- ``inspect``: ``npanalytics inspect --dataset D`` (the former ``make report``);
- ``report``: ``npanalytics report --dataset D --out TMP --format F`` (what ``make report`` runs);
- ``make report``: the Makefile target itself, when the dataset is the default and the
  formats are ``html`` (it writes ``report/report.html`` of the checkout).

Then one in-process run in a fresh interpreter splits the report into its phases
(imports, load_dataset with sha256 checks, analyze, render_report).

Target: median of ``make report`` (else ``report``) <= 15 s. Prints the figures, the ratios
to the baselines and the load average; exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 15.0
DEFAULT_DATASET = "node-sample"

PHASES = """
import json, sys, tempfile, time
t0 = time.perf_counter()
import npanalytics
from npanalytics.analysis.analyze import analyze
from npanalytics.report import render_report
t1 = time.perf_counter()
ds = npanalytics.load_dataset(sys.argv[1])
t2 = time.perf_counter()
analysis = analyze(ds)
t3 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    render_report(analysis, formats=sys.argv[2].split(","), out_dir=out)
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load_dataset": t2 - t1, "analyze": t3 - t2, "render_report": t4 - t3}))
"""


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _commands(dataset: str, formats: str, out: str) -> dict[str, list[str]]:
    python = sys.executable
    cli = [python, "-m", "npanalytics.cli"]
    commands = {
        "import": [python, "-c", "import npanalytics"],
        "inspect": [*cli, "inspect", "--dataset", dataset],
        "report": [*cli, "report", "--dataset", dataset, "--out", out, "--format", formats],
    }
    make = shutil.which("make")
    venv_python = ROOT / ".venv" / "bin" / "python"
    if (make and dataset == DEFAULT_DATASET and formats == "html"
            and Path(python).resolve() == venv_python.resolve()):
        commands["make report"] = [make, "-s", "report"]
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--formats", default="html")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="npa-bench-report-") as out:
        commands = _commands(args.dataset, args.formats, out)
        for cmd in commands.values():  # warm-up: page cache, numba cache, .pyc
            _time(cmd)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(_time(cmd))
        phases_run = subprocess.run([sys.executable, "-c", PHASES, args.dataset, args.formats], cwd=ROOT,
                                    check=True, capture_output=True, text=True)
    phases = json.loads(phases_run.stdout.strip().splitlines()[-1])
    median = {name: statistics.median(values) for name, values in times.items()}
    load = os.getloadavg()
    print(f"dataset {args.dataset}, formats {args.formats}, {args.runs} runs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    for name, values in times.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"  {name:12s} median {median[name]:6.2f} s   runs: {shown}")
    headline = "make report" if "make report" in median else "report"
    print(f"  {headline} / import  = {median[headline] / median['import']:.1f}x")
    print(f"  {headline} / inspect = {median[headline] / median['inspect']:.1f}x")
    print("  phases of one in-process run: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    met = median[headline] <= TARGET_SECONDS
    print(f"target: median of {headline} <= {TARGET_SECONDS:.0f} s: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
