"""Skew statistics: properties, defined values at the edges, the G-test and the bootstrap."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from npanalytics import SchemaError
from npanalytics.analysis.skew import bootstrap_share_ci, evenness, g_test, gini, jain, skew_table
from npanalytics.schemas import SCHEMAS, empty_frame, validate_frame

# zero, or large enough that scaling by 1e-3 does not underflow to zero (that would change the input)
load_value = st.one_of(st.just(0.0), st.floats(min_value=1e-290, max_value=1e6))
loads = st.lists(load_value, min_size=1, max_size=30).filter(lambda x: sum(x) > 0)


@given(st.floats(min_value=1e-3, max_value=1e9), st.integers(min_value=1, max_value=50))
def test_equal_loads_are_perfectly_even(value, n):
    ev = evenness(np.full(n, value), np.zeros(n, dtype="int64"), 1).iloc[0]
    assert ev["gini"] == pytest.approx(0.0, abs=1e-9)
    assert ev["jain"] == pytest.approx(1.0)
    assert ev["max_mean"] == pytest.approx(1.0)
    assert ev["cv"] == pytest.approx(0.0, abs=1e-6)
    assert ev["entropy_norm"] == pytest.approx(1.0)


@given(loads, st.floats(min_value=1e-3, max_value=1e3))
def test_statistics_are_scale_invariant(x, factor):
    a = evenness(np.array(x), np.zeros(len(x), dtype="int64"), 1).iloc[0]
    b = evenness(np.array(x) * factor, np.zeros(len(x), dtype="int64"), 1).iloc[0]
    for col in ("max_mean", "cv", "gini", "jain", "entropy_norm"):
        assert b[col] == pytest.approx(a[col], rel=1e-6, abs=1e-9)


@given(loads)
def test_statistics_stay_in_their_bounds(x):
    n = len(x)
    g, j = gini(x), jain(x)
    assert 0.0 <= g <= (n - 1) / n + 1e-12
    assert 1.0 / n - 1e-12 <= j <= 1.0 + 1e-12
    ev = evenness(np.array(x), np.zeros(n, dtype="int64"), 1).iloc[0]
    assert 0.0 <= ev["entropy_norm"] <= 1.0
    assert 1.0 <= ev["max_mean"] <= n + 1e-9


def test_one_backend_takes_all_hits_the_extremes():
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert jain([0, 0, 0, 10]) == pytest.approx(0.25)
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum |xi-xj| / (2 n^2 mean) by hand


@settings(max_examples=30)
@given(st.lists(st.integers(min_value=0, max_value=200), min_size=2, max_size=8).filter(lambda c: sum(c) > 0))
def test_statistics_of_many_groups_equal_those_of_each_group(counts):
    half = len(counts) // 2
    x = np.array(counts, dtype="float64")
    codes = np.array([0] * half + [1] * (len(counts) - half))
    both = evenness(x, codes, 2)
    for code, part in ((0, x[:half]), (1, x[half:])):
        if part.sum() == 0 or len(part) == 0:
            continue
        alone = evenness(part, np.zeros(len(part), dtype="int64"), 1).iloc[0]
        pd.testing.assert_series_equal(both.iloc[code], alone, check_names=False)


def test_defined_values_without_load_and_with_one_backend():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evenness(np.array([0.0, 0.0, 5.0]), np.array([0, 0, 1]), 3)
        stat, p = g_test(np.array([0.0, 0.0, 5.0]), np.array([0.5, 0.5, 1.0]), np.array([0, 0, 1]), 3)
    assert ev.loc[0, "total"] == 0 and np.isnan(ev.loc[0, "gini"]) and np.isnan(ev.loc[0, "max_mean"])
    assert ev.loc[1].to_dict() == {"backends": 1, "total": 5.0, "max_mean": 1.0, "cv": 0.0, "gini": 0.0,
                                   "jain": 1.0, "entropy_norm": 1.0}
    assert ev.loc[2, "backends"] == 0
    assert (stat[:2] == 0).all() and (p[:2] == 1).all()


def test_g_test_agrees_with_scipy_per_group():
    obs = np.array([10, 20, 30, 5, 5, 50, 1, 1])
    share = np.array([1 / 3, 1 / 3, 1 / 3, 0.25, 0.25, 0.5, 0.5, 0.5])
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    stat, p = g_test(obs, share, codes, 3)
    for g in range(3):
        o = obs[codes == g]
        e = share[codes == g] / share[codes == g].sum() * o.sum()
        ref = stats.power_divergence(o, e, lambda_="log-likelihood")
        assert stat[g] == pytest.approx(ref.statistic)
        assert p[g] == pytest.approx(ref.pvalue)


def test_g_test_load_where_the_model_says_none_rejects_and_nan_means_no_model():
    stat, p = g_test(np.array([50, 50, 10, 3, 4]), np.array([0.5, 0.5, 0.0, np.nan, 1.0]),
                     np.array([0, 0, 0, 1, 1]), 2)
    assert stat[0] == np.inf and p[0] == 0.0
    assert np.isnan(stat[1]) and np.isnan(p[1])


def test_bootstrap_is_reproducible_covers_the_share_and_keeps_zero_at_zero():
    counts = np.array([300, 100, 0, 7, 3])
    codes = np.array([0, 0, 0, 1, 1])
    low, high = bootstrap_share_ci(counts, codes, 2, n_boot=500, seed=7)
    again = bootstrap_share_ci(counts, codes, 2, n_boot=500, seed=7)
    np.testing.assert_array_equal(low, again[0])
    share = np.array([0.75, 0.25, 0.0, 0.7, 0.3])
    assert (low <= share + 1e-12).all() and (share <= high + 1e-12).all()
    assert low[2] == high[2] == 0.0
    # binomial standard error of 0.75 at n=400 is ~0.022: the interval is about +-2 of those
    assert 0.06 < high[0] - low[0] < 0.11
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        bootstrap_share_ci(counts, codes, 2, n_boot=0)


def _load(rows):
    df = pd.DataFrame(rows, columns=["service_port_name", "source", "endpoint_ip", "pod", "value"])
    nat = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    out = pd.DataFrame({
        "service_port_name": df["service_port_name"].astype("category"),
        "window_start": nat, "window_end": nat,
        "source": df["source"].astype("category"),
        "measure": pd.Series(["connections"] * len(df), dtype="str").astype("category"),
        "entry_node": pd.Series([None] * len(df), dtype="str").astype("category"),
        "endpoint_ip": df["endpoint_ip"].astype("category"),
        "pod": df["pod"].astype("category"),
        "node": pd.Series([None] * len(df), dtype="str").astype("category"),
        "zone": pd.Series([None] * len(df), dtype="str").astype("category"),
        "programmed": pd.array([True] * len(df), dtype="boolean"),
        "value": df["value"].astype("float64"),
    })
    return validate_frame(out, "backend_load")


def test_skew_table_without_a_model_and_with_zero_traffic():
    load = _load([("ns/a:", "conntrack", "10.0.0.1", "p1", 0.0), ("ns/a:", "conntrack", "10.0.0.2", "p2", 0.0),
                  ("ns/b:", "conntrack", "10.0.1.1", "q1", 12.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skew, summary = skew_table(load, groups=("endpoint", "pod"), n_boot=50)
    assert len(skew) == 6 and len(summary) == 4
    a = summary[summary["service_port_name"] == "ns/a:"]
    assert (a["total"] == 0).all() and a["gini"].isna().all()
    assert skew.loc[skew["service_port_name"] == "ns/a:", "share"].eq(0).all()
    b = summary[summary["service_port_name"] == "ns/b:"].iloc[0]
    assert (b["backends"], b["gini"], b["jain"]) == (1, 0.0, 1.0)
    assert skew["expected_share"].isna().all() and summary["p_value"].isna().all()


def test_skew_table_empty_input_gives_empty_frames_with_the_columns():
    skew, summary = skew_table(empty_frame("backend_load"))
    assert skew.empty and list(skew.columns) == [c.name for c in SCHEMAS["skew"].columns]
    assert summary.empty and list(summary.columns) == [c.name for c in SCHEMAS["skew_summary"].columns]


def test_skew_table_rejects_a_bad_frame_naming_every_problem():
    bad = _load([("ns/a:", "conntrack", "10.0.0.1", "p1", 1.0)]).drop(columns=["measure"])
    bad["value"] = bad["value"].astype("int64")
    with pytest.raises(SchemaError, match="backend_load") as info:
        skew_table(bad)
    assert any("measure" in p for p in info.value.problems)
    assert any("value" in p and "float64" in p for p in info.value.problems)
    with pytest.raises(ValueError, match="unknown grouping"):
        skew_table(_load([("ns/a:", "conntrack", "10.0.0.1", "p1", 1.0)]), groups=("pods",))
