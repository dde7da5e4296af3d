"""Benchmark read_prometheus_response against prometheus-api-client's MetricRangeDataFrame.

Usage::

    .venv/bin/python bench/bench_prometheus.py [--series 2000] [--points 720] [--runs 5]

1. Writes (once) a synthetic ``/api/v1/query_range`` body shaped like Prometheus's
   (compact JSON, ``[<seconds>,"<value>"]`` samples, kube-state-metrics-like labels,
   counters, gauges with 17 significant digits, ``NaN``/``+Inf``) into bench/.work/.
2. Times, interleaved, the median of ``--runs`` calls after one warm-up each, from the
   response body (bytes) to a frame:

   - ours: ``read_prometheus_response(body)`` (typed ``prom_samples`` frame);
   - theirs: ``MetricRangeDataFrame(json.loads(body)["data"]["result"])`` -- what one does
     with prometheus-api-client on the same response;
   - and, for context, ``MetricRangeDataFrame`` alone on the already decoded JSON, and our
     plain-``json`` path (used for bodies not in Prometheus's compact form).

3. Peak memory in fresh interpreters, as the kernel's ``VmHWM`` (peak resident set of the
   process image, reset at exec, unlike ``ru_maxrss``) after the conversion minus
   ``VmHWM`` of the same process just before it (everything imported, the body read;
   for "theirs, decoded" the JSON already decoded): the conversion's own peak.

Prints the medians, the ratios and the load average (the machine is shared), and exits 1
if a target is missed: >= 10x faster and <= 1/5 the peak memory of the baseline (bytes to
frame, both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
WORK = HERE / ".work"

import numpy as np  # noqa: E402

TARGET_SPEED = 10.0
TARGET_MEMORY = 1 / 5
T0 = 1_764_547_200.123  # start of the range; the samples are T0 + k * 15 s


def generate(series: int, points: int) -> Path:
    """Write the synthetic response once; return its path."""
    path = WORK / f"prom-range-{series}x{points}.json"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261201)
    stamps = [f"{T0 + 15 * k:.3f}".rstrip("0").rstrip(".") for k in range(points)]
    out = []
    for i in range(series):
        metric = {
            "__name__": "kube_pod_container_status_restarts_total" if i % 2 else "container_memory_working_set_bytes",
            "container": f"app-{i % 5}", "endpoint": "http-metrics", "instance": f"198.18.{i % 250}.{i % 7}:8080",
            "job": "kube-state-metrics", "namespace": f"team-{i % 40}", "pod": f"web-{i:05d}-7d9f8c6b5d-x{i % 97:02d}",
            "service": "kube-state-metrics", "uid": f"{i:08x}-4292-5940-824b-89046d5479e1",
        }
        if i % 2:  # a counter: integers
            values = [str(v) for v in np.cumsum(rng.integers(0, 3, points))]
        else:  # a gauge: shortest float text, up to 17 digits
            values = [repr(float(v)) for v in rng.lognormal(18, 1, points)]
            if i % 10 == 0:
                values[i % points] = ("NaN", "+Inf", "-Inf")[i % 3]
        samples = ",".join(f'[{t},"{v}"]' for t, v in zip(stamps, values))
        out.append(f'{{"metric":{json.dumps(metric, separators=(",", ":"))},"values":[{samples}]}}')
    body = '{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(out) + "]}}"
    path.write_text(body)
    return path


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def timings(path: Path, runs: int) -> dict[str, list[float]]:
    import pandas as pd
    from prometheus_api_client import MetricRangeDataFrame

    from npanalytics import read_prometheus_response, validate_frame
    from npanalytics.collectors import prometheus as prom_module

    body = path.read_bytes()
    decoded = json.loads(body)["data"]["result"]
    cases = {
        "ours": lambda: read_prometheus_response(body),
        "theirs": lambda: MetricRangeDataFrame(json.loads(body)["data"]["result"]),
        "theirs_decoded": lambda: MetricRangeDataFrame(decoded),
        "ours_json_path": lambda: prom_module._frame(prom_module._parse_slow(str(path), body)),
    }
    ours = validate_frame(cases["ours"](), "prom_samples")  # warm-up, and checks
    theirs = cases["theirs"]()
    assert len(ours) == len(theirs) == sum(len(s["values"]) for s in decoded)
    np.testing.assert_array_equal(ours["value"].to_numpy(), theirs["value"].to_numpy(dtype=float))
    # theirs converts float seconds to ns (off by < 1 us); ours keeps Prometheus's milliseconds
    gap = ours["timestamp"].dt.tz_localize(None).to_numpy() - theirs.index.to_numpy()
    assert np.abs(gap.astype("int64")).max() < 1000
    pd.testing.assert_frame_equal(ours, cases["ours_json_path"](), check_exact=True)
    del theirs, ours
    out: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for name, call in cases.items():
            started = time.perf_counter()
            result = call()
            out[name].append(time.perf_counter() - started)
            del result
    return out


_CHILD = """
import json, sys
from pathlib import Path
import numpy, pandas, pyarrow, pyarrow.compute, pyarrow.csv, requests
import npanalytics
from npanalytics import read_prometheus_response
from prometheus_api_client import MetricRangeDataFrame

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

variant, path = sys.argv[1], sys.argv[2]
body = Path(path).read_bytes()
if variant == "theirs_decoded":
    decoded = json.loads(body)["data"]["result"]
base = hwm()
if variant == "ours":
    df = read_prometheus_response(body)
elif variant == "theirs":
    df = MetricRangeDataFrame(json.loads(body)["data"]["result"])
elif variant == "theirs_decoded":
    df = MetricRangeDataFrame(decoded)
print(json.dumps({"base": base, "peak": hwm(), "rows": len(df)}))
"""


def peak_memory(path: Path, variant: str) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _CHILD, variant, str(path)], capture_output=True, text=True,
                          check=True, cwd=HERE.parent)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=720)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-runs", type=int, default=3)
    args = parser.parse_args(argv)
    path = generate(args.series, args.points)
    mb = 1024 * 1024
    print(f"response: {args.series} series x {args.points} points = {args.series * args.points:,} samples, "
          f"{path.stat().st_size / mb:.1f} MB ({path}); load average {_load()}")
    times = timings(path, args.runs)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"  {name:15s} median {med[name]:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in values)})")
    speed = med["theirs"] / med["ours"]
    paired = {k: statistics.median(t / o for t, o in zip(times[k], times["ours"])) for k in ("theirs", "theirs_decoded")}
    print(f"per-run ratios (each run times all cases back to back), median: {paired['theirs']:.1f}x "
          f"json.loads + MetricRangeDataFrame, {paired['theirs_decoded']:.1f}x MetricRangeDataFrame alone")
    print(f"speed: ours is {speed:.1f}x faster than json.loads + MetricRangeDataFrame "
          f"({med['theirs_decoded'] / med['ours']:.1f}x MetricRangeDataFrame alone on decoded JSON); "
          f"load average {_load()}")
    memory = {}
    for variant in ("ours", "theirs", "theirs_decoded"):
        nets = []
        for _ in range(args.memory_runs):
            m = peak_memory(path, variant)
            nets.append(m["peak"] - m["base"])
        memory[variant] = statistics.median(nets)
        print(f"  {variant:15s} peak memory of the conversion (VmHWM net, median of {args.memory_runs}): "
              f"{memory[variant] / mb:.1f} MB  (base {m['base'] / mb:.1f} MB)")
    ratio = memory["ours"] / memory["theirs"]
    print(f"memory: ours is {ratio:.3f} of json.loads + MetricRangeDataFrame "
          f"({memory['ours'] / memory['theirs_decoded']:.3f} of MetricRangeDataFrame alone on decoded JSON)")
    ok = speed >= TARGET_SPEED and ratio <= TARGET_MEMORY
    print("targets: >= 10x faster, <= 1/5 peak memory:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
