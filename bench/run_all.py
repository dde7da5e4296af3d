"""Run every benchmark in bench/ (each compares against its baseline in the same run).

Usage: ``.venv/bin/python bench/run_all.py`` (or ``make bench``). Exits non-zero
if any benchmark misses its target. Figures go to bench/RESULTS.md by hand, with
the command that produced them: these machines are noisy, so quote medians and
ratios, never a single timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"missed targets: {', '.join(failed)}")
        return 1
    print("all benchmarks met their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
