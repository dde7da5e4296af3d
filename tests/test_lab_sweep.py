"""Tests of the lab's proxy-mode sweep: a small real sweep, the raw log reader, the summary."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from npanalytics.exceptions import LabError, ParseError, ParseWarning, SchemaError
from npanalytics.lab.netns import lab_namespaces
from npanalytics.lab.sweep import (
    NFT_TRANSACTION_SERVICES,
    SUMMARY_COLUMNS,
    filler_service_ports,
    fit_sweep,
    read_sweep_log,
    run_sweep,
    summarize_sweep,
    sweep_frames,
)
from npanalytics.schemas import validate_frame

SWEEP_PREFIX = "npa-lab-sweep-"


def _sweep_namespaces() -> list[str]:
    return [n for n in lab_namespaces() if n.startswith(SWEEP_PREFIX)]


# -- a real, small sweep ----------------------------------------------------------------------
_SMALL_SWEEP: dict[str, object] = {}


@pytest.fixture
def small_sweep(need_root, need_binary):
    """iptables-legacy and nftables, 0 and 2000 fillers, 300 connections each (~10 s), run once.

    Function-scoped (the root/binary checks are), with the result cached for the module.
    """
    for binary in ("iptables-legacy-restore", "nft", "conntrack"):
        need_binary(binary)
    if "result" not in _SMALL_SWEEP:
        assert _sweep_namespaces() == [], "a previous sweep left namespaces behind"
        _SMALL_SWEEP["result"] = run_sweep(("iptables-legacy", "nftables"), (0, 2000), 300, max_seconds=90)
    return _SMALL_SWEEP["result"]


def test_small_sweep_frames_validate_and_every_connection_succeeds(small_sweep):
    validate_frame(small_sweep.rule_loads, "rule_loads")
    validate_frame(small_sweep.connect_latency, "connect_latency")
    cl = small_sweep.connect_latency
    assert len(cl) == 2 * 2 * 300
    assert cl["ok"].all()
    assert (cl["connect_seconds"] > 0).all()
    assert sorted(cl["attempt"].unique()) == list(range(300))
    assert set(small_sweep.rule_loads["services"]) == {1, 2001}
    assert small_sweep.skipped == []


def test_small_sweep_rules_and_load_time_grow_with_services(small_sweep):
    loads = small_sweep.rule_loads.set_index(["proxy_mode", "services"])
    for mode in ("iptables-legacy", "nftables"):
        # at least one rule per filler Service port (its ClusterIP dispatch / service chain)
        assert loads.loc[(mode, 2001), "rules"] >= loads.loc[(mode, 1), "rules"] + 2000
        assert loads.loc[(mode, 2001), "load_seconds"] > loads.loc[(mode, 1), "load_seconds"]


def test_small_sweep_iptables_connect_slows_with_services(small_sweep):
    # Measured before writing this test (10 runs of this sweep on the 2-core dev machine,
    # load average ~3.5 from other jobs): iptables-legacy p50 was 17-27 us with the target
    # alone and 80-176 us with 2000 fillers (ratio >= 3.2), while nftables stayed at 17-35 us;
    # the walk through 2000 KUBE-SERVICES rules costs more than the noise.
    s = summarize_sweep(small_sweep.connect_latency, small_sweep.rule_loads)
    ipt = s[s["proxy_mode"] == "iptables-legacy"].set_index("services")
    assert ipt.loc[2001, "p50_us"] > 1.5 * ipt.loc[1, "p50_us"]


def test_small_sweep_loads_nftables_in_transactions(small_sweep):
    # 2001 Service ports in parts of NFT_TRANSACTION_SERVICES (500): 5 nft -f runs; iptables: 1
    loads = [json.loads(line) for mode in ("iptables-legacy", "nftables")
             for line in small_sweep.logs[mode].splitlines() if '"record":"load"' in line]
    got = {(r["proxy_mode"], r["services"]): r["transactions"] for r in loads}
    assert got == {("iptables-legacy", 1): 1, ("iptables-legacy", 2001): 1, ("nftables", 1): 1, ("nftables", 2001): 5}
    assert small_sweep.recording["parameters"]["nft_transaction_services"] == NFT_TRANSACTION_SERVICES == 500


def test_small_sweep_log_rederives_the_frames(small_sweep):
    again = sweep_frames(small_sweep.logs)
    pd.testing.assert_frame_equal(again["rule_loads"], small_sweep.rule_loads)
    pd.testing.assert_frame_equal(again["connect_latency"], small_sweep.connect_latency)


def test_small_sweep_leaves_no_namespace(small_sweep):
    assert _sweep_namespaces() == []


def test_run_sweep_deadline_raises_and_tears_down(need_root, need_binary):
    need_binary("iptables-legacy-restore")
    # rendering and loading 10000 fillers alone takes seconds
    with pytest.raises(LabError, match=r"sweep exceeded max_seconds=1\b"):
        run_sweep(("iptables-legacy",), (0, 5000, 10000), 1000, max_seconds=1.0)
    assert _sweep_namespaces() == []


class _SlowSession:
    """Stands in for a LabSession: each exec takes ``seconds``; records what it was given."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.inputs: list[str] = []

    def exec(self, namespace, args, *, input=None, timeout=30.0, check=True):
        import time

        assert timeout > 0
        self.inputs.append(input)
        time.sleep(self.seconds)


def test_load_runs_every_transaction_in_order_and_stops_at_the_limit():
    from npanalytics.lab.sweep import _load

    session = _SlowSession(0.0)
    assert _load(session, "nftables", ["a\n", "b\n", "c\n"], timeout=5.0) > 0
    assert session.inputs == ["a\n", "b\n", "c\n"]
    slow = _SlowSession(0.3)
    with pytest.raises(LabError, match=r"timed out after 0.5 s: the load of nftables rules \(before transaction 3 of 4\)"):
        _load(slow, "nftables", ["a", "b", "c", "d"], timeout=0.5)
    assert slow.inputs == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modes": ("iptables-legacyy",)}, "did you mean 'iptables-legacy'"),
        ({"modes": ("ipvs",)}, "each must be one of iptables-legacy, iptables-nft, nftables"),
        ({"modes": ()}, "non-empty sequence without repeats"),
        ({"modes": ("nftables", "nftables")}, "non-empty sequence without repeats"),
        ({"service_counts": (1000, 0)}, "distinct, ascending and >= 0"),
        ({"service_counts": (-1,)}, "distinct, ascending and >= 0"),
        ({"connections": 0}, r"connections must be in \[1, 100000\]"),
        ({"max_seconds": 0}, "must be positive"),
    ],
)
def test_run_sweep_checks_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_sweep(**kwargs)


# -- the cluster state -------------------------------------------------------------------------
def test_filler_service_ports():
    ports = filler_service_ports(40000)
    assert len(ports) == 40001
    target = ports[0]
    assert (target.node_port, target.service) == (30000, "target")
    assert len({(p.cluster_ip, p.port) for p in ports}) == len(ports)
    assert all(ipaddress.ip_address(p.cluster_ip) in ipaddress.ip_network("198.19.128.0/17") for p in ports)
    node_ports = [p.node_port for p in ports if p.node_port is not None]
    assert len(node_ports) == len(set(node_ports)) == 32767 - 30000 + 1
    assert max(node_ports) == 32767 and ports[2768].node_port is None
    assert {len(p.endpoints) for p in ports[1:]} == {1, 2}
    filler_net = ipaddress.ip_network("198.18.105.0/24")
    assert all(ipaddress.ip_address(e.ip) in filler_net for p in ports[1:] for e in p.endpoints)
    assert filler_service_ports(0) == [target]
    with pytest.raises(ValueError, match="fillers must be >= 0, got -1"):
        filler_service_ports(-1)


# -- the raw log -------------------------------------------------------------------------------
def _log(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


LOAD = {"record": "load", "timestamp": "2026-11-30T23:00:00.000001Z", "node": "n", "proxy_mode": "nftables",
        "services": 11, "rules": 40, "load_ns": 2_500_000}
CONNECT = {"record": "connect", "proxy_mode": "nftables", "services": 11, "connect_ns": [1000, -1, 3000]}


def test_read_sweep_log_parses_records():
    text = _log({"record": "header", "format": "npa-sweep-log/1"}, LOAD, CONNECT,
                {"record": "skip", "proxy_mode": "nftables", "services": 20001, "reason": "slow"})
    frames = read_sweep_log(text)
    loads, cl = frames["rule_loads"], frames["connect_latency"]
    assert loads["load_seconds"].tolist() == [0.0025]
    assert loads["timestamp"].iloc[0] == pd.Timestamp("2026-11-30T23:00:00.000001", tz="UTC")
    assert cl["attempt"].tolist() == [0, 1, 2]
    assert cl["ok"].tolist() == [True, False, True]
    np.testing.assert_array_equal(cl["connect_seconds"].to_numpy(), [1e-6, np.nan, 3e-6])
    report = cl.attrs["parse_report"]
    assert (report.lines_total, report.lines_parsed, report.lines_skipped) == (4, 4, 0)


def test_read_sweep_log_empty():
    frames = read_sweep_log("")
    assert len(frames["rule_loads"]) == 0 and len(frames["connect_latency"]) == 0


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("not json", r"<string>:2: expected a JSON object, got 'not json'"),
        ('{"record": "mystery"}', "expected a record of type load, connect"),
        ('{"record": "load", "node": "n"}', "expected a load record with timestamp, proxy_mode"),
        (json.dumps({**LOAD, "timestamp": "2026-11-30T23:00:00"}), "UTC timestamp"),
        (json.dumps({**LOAD, "load_ns": -5}), "non-negative integers"),
        (json.dumps({**CONNECT, "connect_ns": [5, -7]}), r"integer nanoseconds \(-1 = failed\)"),
        (json.dumps({**CONNECT, "connect_ns": ["x"]}), "integer nanoseconds"),
    ],
)
def test_read_sweep_log_bad_lines(line, match):
    text = _log(LOAD) + line + "\n"
    with pytest.raises(ParseError, match=match):
        read_sweep_log(text)
    skipped = read_sweep_log(text, on_bad_line="skip")
    report = skipped["rule_loads"].attrs["parse_report"]
    assert (report.lines_total, report.lines_parsed, report.skipped_linenos) == (2, 1, (2,))
    assert len(skipped["rule_loads"]) == 1
    with pytest.warns(ParseWarning, match="skipped 1 of 2 lines"):
        read_sweep_log(text, on_bad_line="warn")


def test_read_sweep_log_bad_policy():
    with pytest.raises(ValueError, match="on_bad_line must be one of"):
        read_sweep_log(_log(LOAD), on_bad_line="ignore")


# -- summary and fits (pure) ---------------------------------------------------------------------
def _synthetic(slope_ns: float, noise_us: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    services = [1, 1001, 5001, 10001, 20001, 40001]
    rows = []
    for mode, slope in (("iptables-legacy", slope_ns), ("nftables", 0.0)):
        for n in services:
            base = 30e-6 + slope * 1e-9 * n
            t = base + rng.normal(0, noise_us * 1e-6, 1000) if noise_us else np.full(1000, base)
            rows.append(pd.DataFrame({"proxy_mode": mode, "services": n, "attempt": np.arange(1000),
                                      "connect_seconds": t, "ok": True}))
    cl = pd.concat(rows, ignore_index=True)
    cl.loc[cl.index[::100], ["ok", "connect_seconds"]] = [False, np.nan]
    cl = cl.astype({"proxy_mode": "category", "services": "int64", "attempt": "int64", "ok": "bool"})
    loads = pd.DataFrame({
        "timestamp": pd.Timestamp("2026-11-30T23:00:00Z"), "node": "n",
        "proxy_mode": [m for m in ("iptables-legacy", "nftables") for _ in services],
        "services": services * 2, "rules": [7 * n for n in services] * 2,
        "load_seconds": [1e-4 * n for n in services] * 2,
    }).astype({"node": "category", "proxy_mode": "category", "timestamp": "datetime64[ns, UTC]"})
    return cl, loads


def test_summarize_sweep_recovers_a_known_slope():
    cl, loads = _synthetic(slope_ns=9.0, noise_us=5.0)
    s = summarize_sweep(cl, loads)
    assert list(s.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    assert len(s) == 12
    ipt = s[s["proxy_mode"] == "iptables-legacy"].iloc[0]
    assert ipt["p50_slope_ci_low"] < 9.0 < ipt["p50_slope_ci_high"]
    assert ipt["p50_slope_ci_high"] - ipt["p50_slope_ci_low"] < 1.0
    assert ipt["p50_r_squared"] > 0.99
    assert (s["failures"] == 10).all() and (s["attempts"] == 1000).all()
    nft = s[s["proxy_mode"] == "nftables"].iloc[0]
    assert nft["p50_slope_ci_low"] < 0.0 < nft["p50_slope_ci_high"]
    assert s.loc[s["services"] == 40001, "rules"].tolist() == [280007, 280007]


def test_summarize_sweep_perfect_line():
    cl, loads = _synthetic(slope_ns=9.0, noise_us=0.0)
    s = summarize_sweep(cl, loads)
    ipt = s[s["proxy_mode"] == "iptables-legacy"]
    assert ipt["p50_r_squared"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    assert ipt["p50_slope_ns_per_service"].iloc[0] == pytest.approx(9.0, rel=1e-9)
    assert ipt["p50_intercept_us"].iloc[0] == pytest.approx(30.0, rel=1e-9)
    np.testing.assert_allclose(ipt["p90_us"], ipt["p50_us"])
    # a flat line has no R² (0/0) but a zero slope
    nft = s[s["proxy_mode"] == "nftables"].iloc[0]
    assert np.isnan(nft["p50_r_squared"]) and nft["p50_slope_ns_per_service"] == pytest.approx(0.0, abs=1e-9)


def test_summarize_sweep_empty():
    cl, loads = _synthetic(9.0, 0.0)
    s = summarize_sweep(cl.iloc[:0], loads.iloc[:0])
    assert len(s) == 0
    assert list(s.columns) == list(SUMMARY_COLUMNS) + [
        f"{q}_{c}" for q in ("p50", "p99")
        for c in ("slope_ns_per_service", "slope_ci_low", "slope_ci_high", "intercept_us", "r_squared")
    ]


def test_summarize_sweep_checks_kinds():
    cl, loads = _synthetic(9.0, 0.0)
    with pytest.raises(SchemaError, match=r"(?s)kind 'connect_latency'.*missing column 'ok'"):
        summarize_sweep(cl.drop(columns=["ok"]), loads)


def test_fit_sweep_few_points_and_bad_confidence():
    summary = pd.DataFrame({"proxy_mode": pd.Categorical(["a", "a"]), "services": [1, 1001],
                            "p50_us": [10.0, 20.0], "p99_us": [30.0, 50.0]})
    fits = fit_sweep(summary)
    row = fits[fits["statistic"] == "p50_us"].iloc[0]
    assert row["slope_ns_per_service"] == pytest.approx(10.0)
    assert np.isnan(row["slope_ci_low"]) and row["points"] == 2
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 95"):
        fit_sweep(summary, confidence=95)


# -- the recorded dataset --------------------------------------------------------------------------
DATASET = Path(__file__).resolve().parents[1] / "datasets" / "proxy-mode-sweep"


def test_recorded_dataset_rederives_from_raw():
    from npanalytics.datasets import load_dataset

    ds = load_dataset("proxy-mode-sweep")
    again = sweep_frames({rel: content for rel, content in ds.raw.items() if rel.endswith(".jsonl")})
    for kind in ("rule_loads", "connect_latency"):
        pd.testing.assert_frame_equal(again[kind], ds[kind], check_categorical=True)
        if ds.derivations.get(kind):
            pd.testing.assert_frame_equal(ds.rederive(kind), ds[kind], check_categorical=True)
    size = sum(f.stat().st_size for f in DATASET.rglob("*") if f.is_file())
    assert size <= 5 * 1024 * 1024
    cl = ds["connect_latency"]
    steps = cl.groupby(["proxy_mode", "services"], observed=True).size()
    assert (steps >= 2000).all()
    assert set(cl["proxy_mode"].astype(str)) == {"iptables-legacy", "iptables-nft", "nftables"}
    # every step of every mode was run or is in the manifest with the reason it was not
    planned = {(m, n + 1) for m in ("iptables-legacy", "iptables-nft", "nftables")
               for n in ds.recording["parameters"]["service_counts"]}
    run = set(steps.index.map(lambda i: (str(i[0]), int(i[1]))))
    skipped = {(s["proxy_mode"], s["services"]): s["reason"] for s in ds.recording["skipped"]}
    assert run | set(skipped) == planned and not run & set(skipped)
    assert all(reason for reason in skipped.values())
    # nftables loads its table in transactions now: every size up to 20k fits the load limit
    assert {(m, n) for m, n in planned if n <= 20001} <= run
