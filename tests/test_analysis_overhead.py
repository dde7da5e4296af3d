import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npanalytics
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
