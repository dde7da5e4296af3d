import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npanalytics
from npanalytics import concat_samples, kube_proxy_frames, read_metrics_text
from npanalytics.analysis.result import FINDING_CODES
from npanalytics.analysis import overhead
from npanalytics.analysis.overhead import (
    LAB_SLOPES_NS_PER_SERVICE,
    NOTABLE_ADDED_SECONDS,
    control_plane,
    describe_overhead,
    extrapolate_overhead,
    fit_sweep,
    histogram_quantile,
    overhead_section,
    summarize_sweep,
)
from npanalytics.schemas import empty_frame, frame_from_records, validate_frame


@pytest.fixture(scope="module")
def sweep():
    return npanalytics.load_dataset("proxy-mode-sweep").frames


@pytest.fixture(scope="module")
def sweep_sections(sweep):
    return overhead_section(sweep)


def _fit(sections, mode, stat="p50_us"):
    fit = sections["overhead_fit"]
    return fit.loc[(fit["proxy_mode"] == mode) & (fit["statistic"] == stat)].iloc[0]


def test_sweep_iptables_slope_is_positive_and_nftables_flat(sweep_sections):
    sections, findings, missing = sweep_sections
    assert missing == {} and findings.empty  # a sweep is no cluster: nothing to warn about
    validate_frame(sections["overhead"], "overhead")
    validate_frame(sections["overhead_fit"], "overhead_fit")
    validate_frame(sections["control_plane"], "control_plane")
    for mode in ("iptables-legacy", "iptables-nft"):
        f = _fit(sections, mode)
        assert f["slope_ci_low"] > 0 and f["slope_ns_per_service"] > 5
        assert f["r_squared"] > 0.9 and f["points"] == 6
    nft = _fit(sections, "nftables")
    assert nft["slope_ci_low"] < 0 < nft["slope_ci_high"]
    assert abs(nft["slope_ns_per_service"]) < _fit(sections, "iptables-legacy")["slope_ns_per_service"] / 10


def test_lab_slopes_are_the_bundled_sweeps(sweep_sections):
    sections, _, _ = sweep_sections
    for mode, slope in LAB_SLOPES_NS_PER_SERVICE.items():
        assert _fit(sections, mode)["slope_ns_per_service"] == pytest.approx(slope, abs=0.05)


def test_extrapolate_at_8000_services(sweep_sections):
    sections, _, _ = sweep_sections
    ext = extrapolate_overhead(sections["overhead_fit"], 8000)
    validate_frame(ext, "overhead_extrapolation")
    by_mode = ext.set_index(ext["proxy_mode"].astype(str))
    legacy = _fit(sections, "iptables-legacy")
    assert by_mode.loc["iptables-legacy", "added_us"] == pytest.approx(legacy["slope_ns_per_service"] * 8)
    assert by_mode.loc["iptables-legacy", "added_ci_low_us"] == pytest.approx(legacy["slope_ci_low"] * 8)
    assert not by_mode.loc["iptables-legacy", "negligible"] and by_mode.loc["nftables", "negligible"]
    text = describe_overhead(ext)
    assert text.startswith("At 8,000 Service ports iptables-legacy adds about ")
    assert f"{by_mode.loc['iptables-legacy', 'added_us']:,.0f} µs" in text
    assert text.endswith("nftables about nothing.")


def test_extrapolate_checks_arguments(sweep_sections):
    fit = sweep_sections[0]["overhead_fit"]
    for bad in (-1, 1.5, True, "8000"):
        with pytest.raises(ValueError, match="services must be a non-negative int"):
            extrapolate_overhead(fit, bad)
    assert extrapolate_overhead(fit, 10, statistic="p42_us").empty
    assert describe_overhead(extrapolate_overhead(fit, 10, statistic="p42_us")) == "No sweep fit to extrapolate from."


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=-50, max_value=200), st.floats(min_value=1, max_value=500),
       st.integers(min_value=0, max_value=100_000))
def test_fit_recovers_a_line_and_extrapolation_is_linear(slope_ns, intercept_us, services):
    x = np.array([1, 1001, 5001, 10001, 20001])
    summary = pd.DataFrame({"proxy_mode": pd.Categorical(["m"] * 5), "services": x,
                            "p50_us": intercept_us + slope_ns * x / 1e3, "p99_us": np.full(5, intercept_us)})
    fit = fit_sweep(summary)
    row = fit.loc[fit["statistic"] == "p50_us"].iloc[0]
    assert row["slope_ns_per_service"] == pytest.approx(slope_ns, abs=1e-6)
    assert row["intercept_us"] == pytest.approx(intercept_us, abs=1e-6)
    ext = extrapolate_overhead(fit, services)
    assert ext["added_us"].iloc[0] == pytest.approx(slope_ns * services / 1e3, abs=1e-6 * max(services, 1))


def test_iptables_cluster_with_many_services_gets_iptables_scaling():
    frames = npanalytics.load_dataset("node-sample").frames
    sections, findings, missing = overhead_section(frames, services=8000)
    assert "control_plane" in missing and "conntrack" not in missing["overhead"]
    assert findings["code"].tolist() == ["iptables-scaling"]
    ev = findings["evidence"].iloc[0]
    # 'iptables' in the dump does not tell legacy from nft: the costlier one is quoted
    assert f"iptables-nft adds about {LAB_SLOPES_NS_PER_SERVICE['iptables-nft'] * 8:,.0f} µs" in ev
    assert "nftables about 2 µs" in ev
    # below the threshold: no finding; the threshold is where the costlier slope crosses 100 µs
    few = int(NOTABLE_ADDED_SECONDS * 1e9 / LAB_SLOPES_NS_PER_SERVICE["iptables-nft"]) - 1
    assert overhead_section(frames, services=few)[1].empty
    assert overhead_section(frames)[1].empty  # its own single Service port


def test_iptables_scaling_uses_a_reference_fit(sweep_sections):
    frames = npanalytics.load_dataset("affinity-few-clients").frames  # rule loads say iptables-legacy
    fit = sweep_sections[0]["overhead_fit"]
    _, findings, _ = overhead_section(frames, services=20000, reference_fit=fit)
    legacy = _fit(sweep_sections[0], "iptables-legacy")["slope_ns_per_service"]
    assert f"iptables-legacy adds about {legacy * 20:,.0f} µs" in findings["evidence"].iloc[0]
    assert "the sweep in this dataset" in findings["evidence"].iloc[0]


def test_nftables_cluster_gets_no_scaling_finding():
    frames = dict(npanalytics.load_dataset("node-sample").frames)
    frames["proxy_services"] = frames["proxy_services"].assign(proxy_mode=pd.Categorical(["nftables"]))
    assert overhead_section(frames, services=40000)[1].empty


def test_control_plane_of_a_lab_run():
    frames = npanalytics.load_dataset("keepalive-scale-up").frames
    sections, _, missing = overhead_section(frames)
    assert set(missing) == {"overhead", "overhead_fit"} and "proxy-mode-sweep" in missing["overhead"]
    cp = sections["control_plane"].set_index(sections["control_plane"]["node"].astype(str))
    loads = frames["rule_loads"]
    a = loads.loc[loads["node"] == "node-a"]
    assert cp.loc["node-a", "loads"] == 2 and cp.loc["node-a", "rules"] == 38
    assert cp.loc["node-a", "load_seconds_max"] == pytest.approx(a["load_seconds"].max())
    # 35 and 38 rules are too close for a slope: time per rule of the largest load
    big = a.loc[a["rules"].idxmax()]
    assert cp.loc["node-a", "seconds_per_1000_rules"] == pytest.approx(big["load_seconds"] / 38 * 1000)
    assert cp.loc["node-a", "rules_per_service"] == 38.0
    assert cp.loc["node-a", "endpoints"] == 4 and cp.loc["node-a", "rules_per_endpoint"] == 9.5
    assert cp["programming_p99_seconds"].isna().all()


def test_control_plane_sweep_rule_growth(sweep):
    cp = control_plane(sweep["rule_loads"])
    legacy = cp.loc[cp["proxy_mode"] == "iptables-legacy"].iloc[0]
    loads = sweep["rule_loads"]
    loads = loads.loc[loads["proxy_mode"] == "iptables-legacy"]
    assert legacy["rules_per_service"] == pytest.approx(np.polyfit(loads["services"], loads["rules"], 1)[0])
    assert 6 < legacy["rules_per_service"] < 7
    assert control_plane(empty_frame("rule_loads")).empty


def _prom(rows):
    df = pd.DataFrame(rows, columns=["timestamp", "value", "__name__", "le", "node"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df["value"] = df["value"].astype("float64")
    for c in ("__name__", "le", "node"):
        df[c] = df[c].astype("str").astype("category")
    return validate_frame(df, "prom_samples")


def test_control_plane_programming_latency_from_histogram(sweep):
    name = overhead.PROGRAMMING_METRIC
    t0, t1 = "2026-12-01T00:00:00Z", "2026-12-01T00:05:00Z"
    # between the two scrapes: 100 syncs, 50 under 1 s, 40 in (1, 10], 10 in (10, 60]
    buckets = [("1", 10, 60), ("10", 10, 100), ("60", 10, 110), ("+Inf", 10, 110)]
    rows = [(t, v, name, le, "sweep-node") for le, v0, v1 in buckets for t, v in ((t0, v0), (t1, v1))]
    cp = control_plane(sweep["rule_loads"], samples=_prom(rows))
    r = cp.iloc[0]
    assert r["programming_p50_seconds"] == pytest.approx(1.0)
    assert r["programming_p90_seconds"] == pytest.approx(10.0)
    assert r["programming_p99_seconds"] == pytest.approx(10 + 50 * 9 / 10)


def test_histogram_quantile_edges():
    le = np.array([0.5, 1.0, np.inf])
    assert np.isnan(histogram_quantile(le, np.array([0, 0, 0]), 0.5))
    assert histogram_quantile(le, np.array([0, 0, 10]), 0.5) == 1.0  # all in +Inf: the largest bound
    assert histogram_quantile(le, np.array([10, 10, 10]), 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        histogram_quantile(le, np.array([1, 1, 1]), 1.5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=100), min_size=2, max_size=10),
       st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_histogram_quantile_is_monotone_and_bounded(per_bucket, q1, q2):
    le = np.append(np.arange(1, len(per_bucket)) * 1.0, np.inf)
    counts = np.cumsum(per_bucket)
    if counts[-1] == 0:
        return
    a, b = histogram_quantile(le, counts, min(q1, q2)), histogram_quantile(le, counts, max(q1, q2))
    assert 0 <= a <= b <= le[-2]


def test_summarize_sweep_returns_the_overhead_kind(sweep):
    s = summarize_sweep(sweep["connect_latency"], sweep["rule_loads"])
    validate_frame(s, "overhead")
    assert len(s) == 17 and (s["attempts"] == 2000).all()
    empty = summarize_sweep(empty_frame("connect_latency"), empty_frame("rule_loads"))
    validate_frame(empty, "overhead")
    assert empty.empty


def test_lab_reexports_the_analysis_functions():
    from npanalytics.lab import sweep as lab_sweep

    assert lab_sweep.fit_sweep is fit_sweep and lab_sweep.summarize_sweep is summarize_sweep


def test_analysis_does_not_import_the_lab():
    import ast
    import pathlib

    src = pathlib.Path(overhead.__file__).read_text()
    imported = [n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
    assert not any(m and "lab" in m.split(".") for m in imported)


def test_nothing_to_work_with():
    sections, findings, missing = overhead_section({})
    assert sections == {} and findings.empty
    assert set(missing) == {"overhead", "overhead_fit", "control_plane"}
    one = frame_from_records([dict(timestamp=pd.Timestamp("2026-12-01", tz="UTC"), node="n", proxy_mode="nftables",
                                   services=0, rules=10, load_seconds=0.01)], "rule_loads")
    cp = control_plane(one)
    assert np.isnan(cp["rules_per_service"].iloc[0]) and cp["seconds_per_1000_rules"].iloc[0] == pytest.approx(1.0)


# -- control plane from kube-proxy's metrics (what `npanalytics collect --prometheus` writes) ----------

METRICS = Path(__file__).parent / "data" / "metrics"
AT = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
PROGRAMMING = "kubeproxy_network_programming_duration_seconds"


def _proxy_frames(samples, **kwargs):
    proxy = kube_proxy_frames(samples, **kwargs)
    return {"proxy_latency": proxy.latency, "proxy_rule_counts": proxy.rule_counts, "proxy_status": proxy.status}


def _programming_text(buckets, total):
    """One kube-proxy's network programming histogram as exposition text (cumulative bucket counts)."""
    lines = [f"# TYPE {PROGRAMMING} histogram"]
    lines += [f'{PROGRAMMING}_bucket{{le="{le}"}} {n}' for le, n in buckets]
    lines += [f"{PROGRAMMING}_sum {total}", f"{PROGRAMMING}_count {buckets[-1][1]}",
              "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter",
              "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 0"]
    return "\n".join(lines) + "\n"


def _row(sync, node):
    rows = sync.loc[sync["node"].isna()] if node is None else sync.loc[sync["node"] == node]
    assert len(rows) == 1
    return rows.iloc[0]


def test_proxy_sync_equals_the_kube_proxy_frames_of_a_recorded_dataset():
    ds = npanalytics.load_dataset("endpoint-removed-stale")
    frames = _proxy_frames(read_metrics_text(ds.path / "raw" / "metrics" / "series.om"))
    sections, findings, missing = overhead_section({**frames, "rule_loads": ds["rule_loads"]})
    assert "control_plane" in sections and "control_plane" not in missing  # both paths, side by side
    sync = validate_frame(sections["proxy_sync"], "proxy_sync")
    latency, counts, status = frames["proxy_latency"], frames["proxy_rule_counts"], frames["proxy_status"]
    assert (latency["window_seconds"] == 300).all()  # several scrapes: 5-minute windows
    nodes = sorted(latency["node"].dropna().astype("str").unique())
    assert sync["node"].tolist()[:-1] == nodes and pd.isna(sync["node"].iloc[-1])  # the cluster-wide row last
    for node in nodes:
        row = _row(sync, node)
        mine = latency.loc[latency["node"] == node]
        for metric, prefix, stats in (("sync", "sync", (50, 99)), ("sync_full", "full", (50, 90, 99))):
            g = mine.loc[(mine["metric"] == metric) & (mine["observations"] > 0)].sort_values("timestamp")
            assert len(g) >= 1
            for p in stats:
                assert row[f"{prefix}_p{p}_seconds"] == g[f"p{p}_seconds"].iloc[-1]
        programming = mine.loc[mine["metric"] == "network_programming"].sort_values("timestamp")
        observed = programming.loc[programming["observations"] > 0]
        for p in (50, 90, 99):
            assert row[f"programming_p{p}_seconds"] == observed[f"p{p}_seconds"].iloc[-1]
        p99s = programming["p99_seconds"].dropna().to_numpy()
        assert row["programming_p99_over_time_seconds"] == pytest.approx(np.quantile(p99s, 0.99))
        assert row["programming_slo_ratio"] == pytest.approx(row["programming_p99_over_time_seconds"] / 30)
        mine_counts = counts.loc[counts["node"] == node]
        latest = mine_counts.loc[mine_counts["timestamp"] == mine_counts["timestamp"].max()]
        assert row["rules"] == latest["rules"].sum() and row["rules"] > 0
        assert row["full_seconds_per_1000_rules"] == pytest.approx(row["full_p50_seconds"] / row["rules"] * 1000)
        assert row["proxy_mode"] == status.loc[status["node"] == node, "proxy_mode"].iloc[-1] == "iptables"
    cluster = _row(sync, None)
    pooled = latency.loc[latency["node"].isna() & (latency["observations"] > 0)].sort_values("timestamp")
    assert cluster["programming_p99_seconds"] == pooled["p99_seconds"].iloc[-1]
    assert pd.isna(cluster["rules"]) and np.isnan(cluster["syncs"])
    assert "network-programming-slow" not in set(findings["code"])  # the lab programs in well under a second


def test_proxy_sync_of_two_scrapes_worked_out_by_hand():
    # tests/data/metrics: node-a (iptables, 1.32) programmed changes in 0.1, 0.7, 1.5, 2.2 and 61 s,
    # node-b (nftables, 1.33) in 0.3 s; syncs of node-a: full 0.0015, 0.003, 0.003, 0.012, partial 0.0007
    a = read_metrics_text(METRICS / "kube-proxy-1.32-iptables.txt", at=AT).assign(instance="node-a")
    b = read_metrics_text(METRICS / "kube-proxy-1.33-nftables.txt", at=AT).assign(instance="node-b")
    sections, findings, missing = overhead_section(_proxy_frames(concat_samples([a, b])))
    assert "control_plane" not in missing
    sync = sections["proxy_sync"]
    node_a, node_b, cluster = _row(sync, "node-a"), _row(sync, "node-b"), _row(sync, None)
    assert (node_a["proxy_mode"], node_b["proxy_mode"]) == ("iptables", "nftables") and pd.isna(cluster["proxy_mode"])
    assert node_a["rules"] == 4 + 23 and pd.isna(node_b["rules"])  # no rule counts outside iptables mode
    assert (node_a["full_syncs"], node_a["full_p50_seconds"]) == (4, pytest.approx(0.003))
    assert (node_a["partial_syncs"], node_a["partial_p50_seconds"]) == (1, pytest.approx(0.0005))
    assert node_a["full_seconds_per_1000_rules"] == pytest.approx(0.003 / 27 * 1000)
    assert np.isnan(node_b["full_syncs"]) and node_b["syncs"] == 2
    assert (node_a["programming_p50_seconds"], node_a["programming_p90_seconds"],
            node_a["programming_p99_seconds"]) == pytest.approx((1.5, 62.5, 64.75))
    # pooled: <=0.25: 1, <=0.5: 2, <=1: 3, ..., <=65: 6; p50 at rank 3 = 1 s, p99 at rank 5.94 in (60, 65]
    assert (cluster["programming_p50_seconds"], cluster["programming_p99_seconds"]) == pytest.approx(
        (1.0, 60 + 5 * 0.94))
    assert np.isnan(cluster["window_seconds"])  # one scrape: cumulative since kube-proxy started
    (slow,) = findings.loc[findings["code"] == "network-programming-slow"].to_dict("records")
    assert pd.isna(slow["node"]) and "64.7 s pooled over the nodes" in slow["evidence"]
    assert "node-a (64.8 s)" in slow["evidence"] and "node-b" not in slow["evidence"]


def test_network_programming_slow_from_exposition_text():
    # 10 changes: 1 within 1 s, 4 in (30, 40], 5 in (40, 60]: p50 rank 5 -> 40 s, p90 rank 9 -> 40 + 20 x 4/5,
    # p99 rank 9.9 -> 40 + 20 x 4.9/5
    slow_text = _programming_text([("0", 0), ("1", 1), ("30", 1), ("40", 5), ("60", 10), ("+Inf", 10)], 420)
    sections, findings, _ = overhead_section(_proxy_frames(read_metrics_text(slow_text, at=AT), node="node-x"))
    row = _row(sections["proxy_sync"], "node-x")
    assert (row["programming_p50_seconds"], row["programming_p90_seconds"], row["programming_p99_seconds"]) == \
        pytest.approx((40.0, 56.0, 59.6))
    assert row["programming_slo_ratio"] == pytest.approx(59.6 / 30)
    assert row["proxy_mode"] == "ipvs" and pd.isna(row["rules"])
    (slow,) = findings.to_dict("records")
    assert (slow["code"], slow["severity"], slow["node"]) == ("network-programming-slow", "warning", "node-x")
    assert "p99 59.6 s on node node-x" in slow["evidence"] and "30 s" in slow["evidence"] and slow["advice"]
    assert "network-programming-slow" in FINDING_CODES
    # 9 within 1 s, 1 in (1, 30]: p99 rank 9.9 -> 1 + 29 x 0.9 = 27.1 s, within perf-tests' 30 s
    fast_text = _programming_text([("0", 0), ("1", 9), ("30", 10), ("60", 10), ("+Inf", 10)], 30)
    sections, findings, _ = overhead_section(_proxy_frames(read_metrics_text(fast_text, at=AT), node="node-x"))
    assert _row(sections["proxy_sync"], "node-x")["programming_p99_seconds"] == pytest.approx(27.1)
    assert findings.empty


def test_analyze_and_report_a_collected_dataset(tmp_path):
    from npanalytics.report import render_report

    a = read_metrics_text(METRICS / "kube-proxy-1.32-iptables.txt", at=AT).assign(instance="node-a")
    b = read_metrics_text(METRICS / "kube-proxy-1.33-nftables.txt", at=AT).assign(instance="node-b")
    analysis = npanalytics.analyze(_proxy_frames(concat_samples([a, b])))
    assert "proxy_sync" in analysis.sections and "control_plane" not in analysis.missing
    assert "network-programming-slow" in set(analysis.findings["code"])
    paths = render_report(analysis, formats=("md", "html"), out_dir=tmp_path)
    for path in paths.values():
        text = path.read_text()
        assert "Control plane: kube-proxy metrics" in text and "programming_p99_over_time_seconds" in text
        assert "the analysis gave no result and no reason" not in text.split("Control plane")[1].split("Conntrack")[0]
