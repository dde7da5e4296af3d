"""Benchmark read_conntrack against the pandas ``Series.str.extract`` approach, in the same run.

Usage::

    .venv/bin/python bench/bench_conntrack.py [--entries 1000000] [--runs 5] [--baseline-lines 200000]

1. Writes (once) a realistic dump with bench/gen_conntrack.py into bench/.work/.
2. The first calls, each in a fresh interpreter, timed around the call only: "cold" with an
   empty numba cache (compiles the kernel: paid once per machine, as the cache is kept on
   disk), then "first" with the cache on disk (numba import and cache load: paid once per
   process).
3. Times ``read_conntrack(path)`` into the final typed frame in this process: the median
   of ``--runs`` calls after one warm-up call.
4. Times the baseline (one regex per line through ``Series.str.extract`` plus the casts to
   the same dtypes) on the first ``--baseline-lines`` lines of the same file, and scales it
   linearly to the whole file (the baseline is linear in lines; say 0 to run it on all,
   which needs several GB).
5. Measures the peak RSS of ``read_conntrack`` in a fresh interpreter (``ru_maxrss`` and
   ``VmHWM``), and of fresh interpreters that only import (numpy, pandas, pyarrow and the
   reader), or import and load the compiled kernel (numba, llvmlite: ~150 MB), to report
   the reader's own memory net of each.

Prints entries/s, the speed ratio and RSS / dump size, with the load average (the machine
is shared), and exits 1 if a target is missed: >= 1,000,000 entries/s, >= 15x the baseline,
peak RSS <= 2.5x the dump size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gen_conntrack import WORK, generate  # noqa: E402
from npanalytics import validate_frame  # noqa: E402
from npanalytics.collectors.conntrack import read_conntrack  # noqa: E402

TARGET_RATE = 1_000_000
TARGET_RATIO = 15.0
TARGET_RSS = 2.5

# One regex per line, as one would write it with pandas: the common fields of tcp/udp/icmp
# lines with optional accounting, flags and trailing fields.
_PATTERN = (
    r"^(?P<protocol>\S+)\s+(?P<protocol_number>\d+)\s+(?P<timeout_seconds>\d+)\s+(?:(?P<state>[A-Z_]+)\s+)?"
    r"src=(?P<orig_src_ip>\S+) dst=(?P<orig_dst_ip>\S+) "
    r"(?:sport=(?P<orig_src_port>\d+) dport=(?P<orig_dst_port>\d+) |type=(?P<icmp_type>\d+) code=(?P<icmp_code>\d+) id=(?P<icmp_id>\d+) )"
    r"(?:packets=(?P<orig_packets>\d+) bytes=(?P<orig_bytes>\d+) )?(?P<unreplied>\[UNREPLIED\] )?"
    r"src=(?P<reply_src_ip>\S+) dst=(?P<reply_dst_ip>\S+) "
    r"(?:sport=(?P<reply_src_port>\d+) dport=(?P<reply_dst_port>\d+)|type=\d+ code=\d+ id=\d+)"
    r"(?: packets=(?P<reply_packets>\d+) bytes=(?P<reply_bytes>\d+))?(?P<assured> \[ASSURED\])?"
    r"(?: mark=(?P<mark>\d+))?(?: delta-time=(?P<delta_time_seconds>\d+))?(?: use=(?P<use>\d+))?$"
)
_TYPES = {
    "protocol": "category", "protocol_number": "int64", "timeout_seconds": "Int64", "state": "category",
    "orig_src_ip": "category", "orig_dst_ip": "category", "orig_src_port": "Int32", "orig_dst_port": "Int32",
    "icmp_type": "Int32", "icmp_code": "Int32", "icmp_id": "Int32", "orig_packets": "Int64",
    "orig_bytes": "Int64", "reply_src_ip": "category", "reply_dst_ip": "category", "reply_src_port": "Int32",
    "reply_dst_port": "Int32", "reply_packets": "Int64", "reply_bytes": "Int64", "mark": "Int64",
    "delta_time_seconds": "Int64", "use": "Int64",
}


def baseline(path: Path, lines: int) -> tuple[float, int]:
    """Seconds to parse the first ``lines`` entry lines with str.extract + casts; and the count."""
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        text = f.readlines()[:lines] if lines else f.readlines()
    s = pd.Series([t.rstrip("\n") for t in text if not t.startswith("conntrack v")], dtype="str")
    df = s.str.extract(_PATTERN)
    out = {}
    for col, dtype in _TYPES.items():
        v = df[col]
        out[col] = v.astype("category") if dtype == "category" else pd.to_numeric(v).astype(dtype)
    out["unreplied"] = df["unreplied"].notna()
    out["assured"] = df["assured"].notna()
    frame = pd.DataFrame(out)
    return time.perf_counter() - t0, len(frame)


def _fresh(code: str, env: dict | None = None) -> list[str]:
    """Run ``code`` in a fresh interpreter (with the project on sys.path); its stdout words."""
    head = f"import sys, time, resource\nsys.path.insert(0, {str(HERE.parent)!r})\n"
    environ = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-c", head + code], capture_output=True, text=True, check=True, env=environ)
    return res.stdout.split()


_IMPORTS = "import numpy, pandas, pyarrow, pyarrow.compute\nfrom npanalytics.collectors import conntrack\n"
_PEAK = (
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, int(hwm) * 1024)\n"
)


def peak_rss(path: Path | None, kernel: bool = False) -> dict[str, int]:
    """Peak RSS (bytes) of a fresh interpreter that imports, and reads ``path`` if given
    (or, with ``kernel``, loads the compiled kernel by reading a one-line dump).

    Reports ``ru_maxrss`` and the kernel's ``VmHWM``. ``ru_maxrss`` survives fork+exec
    on Linux (a child starts with its parent's maximum), so the bench measures RSS before
    it reads anything itself; ``VmHWM`` is the exec'd process's own high-water mark.
    """
    line = "tcp      6 5 src=198.18.0.1 dst=198.18.0.2 sport=1 dport=2 src=198.18.0.2 dst=198.18.0.1 sport=2 dport=1\n"
    read = f"df = conntrack.read_conntrack({str(path)!r})\n" if path else ""
    read += f"conntrack.read_conntrack({line!r})\n" if kernel else ""
    maxrss, hwm = map(int, _fresh(_IMPORTS + read + _PEAK))
    return {"ru_maxrss": maxrss, "vm_hwm": hwm}


def first_call(path: Path, cache_dir: str | None) -> float:
    """Seconds of the first ``read_conntrack(path)`` in a fresh interpreter (imports done
    before); with ``cache_dir``, numba caches there (an empty one: the kernel compiles)."""
    code = _IMPORTS + f"t = time.perf_counter(); conntrack.read_conntrack({str(path)!r}); print(time.perf_counter() - t)\n"
    return float(_fresh(code, {"NUMBA_CACHE_DIR": cache_dir} if cache_dir else None)[0])


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-lines", type=int, default=200_000)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    path = WORK / f"conntrack-{args.entries}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(generate(args.entries))
    size = path.stat().st_size
    load_before = load_average()

    with tempfile.TemporaryDirectory() as empty_cache:
        cold = first_call(path, empty_cache)
    first = first_call(path, None)
    rss_read = peak_rss(path)
    rss_imports = peak_rss(None)
    rss_kernel = peak_rss(None, kernel=True)

    read_conntrack(path)  # warm-up: numba import and cache load in this process
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        df = read_conntrack(path)
        times.append(time.perf_counter() - t0)
        assert len(df) == args.entries, len(df)
        validate_frame(df, "conntrack_flows")
        del df
    ours = statistics.median(times)
    rate = args.entries / ours

    blines = min(args.baseline_lines, args.entries) if args.baseline_lines else 0
    bsec, bcount = baseline(path, blines)
    base_full = bsec * args.entries / bcount
    ratio = base_full / ours

    mb = 1 << 20
    figures = {
        "entries": args.entries,
        "dump_bytes": size,
        "load_average_before": load_before,
        "cold_first_call_seconds": round(cold, 3),
        "first_call_seconds": round(first, 3),
        "read_conntrack_seconds_runs": [round(t, 3) for t in times],
        "read_conntrack_seconds_median": round(ours, 3),
        "entries_per_second": round(rate),
        "baseline_lines": bcount,
        "baseline_scaled": bcount < args.entries,
        "baseline_seconds": round(bsec, 3),
        "baseline_seconds_scaled_to_all": round(base_full, 3),
        "speed_ratio": round(ratio, 2),
        "peak_rss_mb_ru_maxrss": round(rss_read["ru_maxrss"] / mb, 1),
        "peak_rss_mb_vm_hwm": round(rss_read["vm_hwm"] / mb, 1),
        "imports_rss_mb": round(rss_imports["ru_maxrss"] / mb, 1),
        "imports_and_kernel_rss_mb": round(rss_kernel["ru_maxrss"] / mb, 1),
        "rss_over_dump": round(rss_read["ru_maxrss"] / size, 3),
        "net_of_imports_rss_over_dump": round((rss_read["ru_maxrss"] - rss_imports["ru_maxrss"]) / size, 3),
        "net_of_kernel_rss_over_dump": round((rss_read["ru_maxrss"] - rss_kernel["ru_maxrss"]) / size, 3),
        "load_average_after": load_average(),
    }
    for k, v in figures.items():
        print(f"{k:34s} {v}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    missed = []
    if rate < TARGET_RATE:
        missed.append(f"rate {rate:,.0f}/s < {TARGET_RATE:,}/s")
    if ratio < TARGET_RATIO:
        missed.append(f"ratio {ratio:.1f}x < {TARGET_RATIO}x")
    if rss_read["ru_maxrss"] / size > TARGET_RSS:
        missed.append(f"peak RSS {rss_read['ru_maxrss'] / size:.2f}x dump > {TARGET_RSS}x")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
