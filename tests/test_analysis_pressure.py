import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npanalytics
from npanalytics.analysis.pressure import (
    FILL_CRITICAL,
    STATE_TIMEOUTS,
    kube_proxy_conntrack_max,
    little_forecast,
    pressure_section,
)
from npanalytics.collectors.conntrack import read_conntrack, read_conntrack_stats
from npanalytics.exceptions import SchemaError
from npanalytics.schemas import validate_frame


def _line(i: int, state: str, left: int) -> str:
    port = 20000 + i % 40000
    client = f"198.18.{200 + i // 40000}.{10 + i % 200}"
    return (f"tcp      6 {left} {state} src={client} dst=198.18.0.11 sport={port} dport=30080 "
            f"src=198.18.64.10 dst=198.18.64.1 sport=8080 dport={port} [ASSURED] mark=0 use=1")


def _table(entries: list[tuple[str, int]]) -> pd.DataFrame:
    text = "\n".join(_line(i, state, left) for i, (state, left) in enumerate(entries)) + "\n"
    return read_conntrack(text.encode())


def _proc_stat(cpus: int, entries: int, early_drop: int = 0, drop: int = 0, insert_failed: int = 0) -> pd.DataFrame:
    head = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop "
            "icmp_error  expect_new expect_create expect_delete search_restart\n")
    values = [entries, 0, 0, 0, 0, 0, 0, 0, 0, insert_failed, drop, early_drop, 0, 0, 0, 0, 0]
    row = " ".join(f"{v:08x}" for v in values)
    return read_conntrack_stats((head + "\n".join([row] * cpus) + "\n").encode())


@pytest.mark.parametrize("name", ["affinity-few-clients", "endpoint-removed-stale", "keepalive-scale-up", "node-sample"])
def test_lab_runs_are_far_from_full(name):
    frames = npanalytics.load_dataset(name).frames
    section, findings, missing = pressure_section(frames)
    assert missing is None and findings.empty
    validate_frame(section, "conntrack_pressure")
    flows = frames["conntrack_flows"]
    for r in section.itertuples():
        mine = flows.loc[flows["node"].astype(str) == r.node]
        assert r.entries == len(mine)
        tw = mine.loc[mine["state"] == "TIME_WAIT", "timeout_seconds"]
        assert r.time_wait == len(tw)
        # Little's law: TIME_WAIT arrivals over the ages seen, times the 120 s timeout
        rate = len(tw) / (120 - tw.min())
        assert r.new_connections_per_second == pytest.approx(rate)
        assert r.forecast_entries == pytest.approx(rate * 120 + (len(mine) - len(tw)))
        assert r.max_entries == 131072  # max(32768 x 2 CPUs, 131072), or the minimum without stats
        assert r.max_entries_source == ("kube-proxy default for 2 CPUs" if "conntrack_stats" in frames
                                        else "kube-proxy's minimum (CPUs unknown)")
        assert r.fill_ratio == pytest.approx(len(mine) / 131072)


def test_steady_time_wait_forecasts_its_own_size():
    # 3 connections closed every second for the last 120 s: the table is already steady
    entries = [("TIME_WAIT", left) for left in range(1, 121) for _ in range(3)]
    section, findings, _ = pressure_section({"conntrack_flows": _table(entries)}, max_entries=1000)
    r = section.iloc[0]
    assert r["time_wait"] == 360 and r["new_connections_per_second"] == pytest.approx(360 / 119)
    assert r["forecast_entries"] == pytest.approx(360 * 120 / 119)
    assert r["max_entries_source"] == "given" and r["fill_ratio"] == pytest.approx(0.36)
    assert findings.empty


def test_close_wait_leak_is_forecast():
    # 100 CLOSE_WAIT entries, all younger than 10 s: 10 per second for kube-proxy's 3600 s
    entries = [("CLOSE_WAIT", 3600 - 1 - i % 10) for i in range(100)] + [("ESTABLISHED", 86399)] * 5
    flows = _table(entries)
    forecast, rate = little_forecast(flows)
    assert np.isnan(rate)
    assert forecast == pytest.approx(100 / 10 * 3600 + 5)
    section, findings, _ = pressure_section({"conntrack_flows": flows}, max_entries=30000)
    assert section["close_wait"].iloc[0] == 100 and section["established"].iloc[0] == 5
    assert findings["severity"].tolist() == ["warning"] and findings["code"].tolist() == ["conntrack-pressure"]
    assert "CLOSE_WAIT 100" in findings["evidence"].iloc[0]
    _, findings, _ = pressure_section({"conntrack_flows": flows}, max_entries=45000)
    assert findings["severity"].tolist() == ["info"]


def test_drops_and_full_table_are_critical():
    stats = _proc_stat(cpus=4, entries=int(kube_proxy_conntrack_max(4) * FILL_CRITICAL) + 1)
    section, findings, _ = pressure_section({"conntrack_stats": stats})
    r = section.iloc[0]
    assert r["cpus"] == 4 and r["max_entries"] == 131072 and r["max_entries_source"] == "kube-proxy default for 4 CPUs"
    assert r["entries"] == stats["entries"].iloc[0] and r["forecast_entries"] == r["entries"]
    assert findings["severity"].tolist() == ["critical"]
    stats = _proc_stat(cpus=8, entries=10, early_drop=3)
    section, findings, _ = pressure_section({"conntrack_stats": stats})
    assert section["max_entries"].iloc[0] == 8 * 32768 and section["early_drop"].iloc[0] == 24
    assert findings["severity"].tolist() == ["critical"] and "early_drop 24" in findings["evidence"].iloc[0]
    _, findings, _ = pressure_section({"conntrack_stats": _proc_stat(cpus=2, entries=10, insert_failed=1)})
    assert findings["severity"].tolist() == ["warning"] and "insert_failed 2" in findings["evidence"].iloc[0]


def test_stats_count_more_than_the_dump():
    flows = _table([("ESTABLISHED", 86000)] * 10)
    section, _, _ = pressure_section({"conntrack_flows": flows, "conntrack_stats": _proc_stat(2, 50)})
    r = section.iloc[0]
    assert r["entries"] == 50 and r["forecast_entries"] == 50 and np.isnan(r["new_connections_per_second"])


def test_given_rate_and_cpus():
    flows = _table([("ESTABLISHED", 86000)] * 10)
    section, findings, _ = pressure_section({"conntrack_flows": flows}, cpus=16, new_connections_per_second=1000)
    r = section.iloc[0]
    assert r["max_entries"] == 16 * 32768 and r["cpus"] == 16
    assert r["forecast_entries"] == pytest.approx(10 + 1000 * STATE_TIMEOUTS["TIME_WAIT"])
    assert findings.empty
    section, findings, _ = pressure_section({"conntrack_flows": flows}, new_connections_per_second=2000)
    assert section["max_entries_source"].iloc[0] == "kube-proxy's minimum (CPUs unknown)"
    assert findings["severity"].tolist() == ["warning"]  # 240,010 > 131,072


def test_nothing_to_work_with():
    section, findings, missing = pressure_section({})
    assert section is None and findings.empty and "conntrack -S" in missing
    with pytest.raises(SchemaError, match="conntrack_stats"):
        pressure_section({"conntrack_stats": _proc_stat(1, 1).drop(columns=["cpu"])})


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=1024))
def test_kube_proxy_max(cpus):
    m = kube_proxy_conntrack_max(cpus)
    assert m >= 131072 and m >= 32768 * cpus
    assert kube_proxy_conntrack_max(cpus + 1) >= m


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0, max_value=1e5), st.integers(min_value=0, max_value=50))
def test_forecast_is_linear_in_the_given_rate(rate, established):
    flows = _table([("ESTABLISHED", 86000)] * established + [("TIME_WAIT", 100)] * 3)
    forecast, used = little_forecast(flows, new_connections_per_second=rate)
    assert used == rate
    assert forecast == pytest.approx(established + rate * 120)
