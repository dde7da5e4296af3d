"""Plots draw what the results say: bars, whiskers, lines and labels are checked, not just the Axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

import npanalytics  # noqa: E402
from npanalytics.plotting import (  # noqa: E402
    plot_affinity,
    plot_conntrack_pressure,
    plot_flow_diagram,
    plot_lorenz,
    plot_overhead,
    plot_share_vs_expected,
    plot_shares_over_time,
)
from npanalytics.schemas import frame_from_records  # noqa: E402

SPN = "default/web:http"
NAT = pd.NaT


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def skew_rows(spn=SPN, source="conntrack", group="pod", window=NAT, shares=(0.5, 0.3, 0.2),
              expected=(1 / 3, 1 / 3, 1 / 3), total=300.0, backends=None):
    backends = backends or [f"web-{i + 1}" for i in range(len(shares))]
    rows = []
    for b, s, e in zip(backends, shares, expected):
        rows.append({
            "service_port_name": spn, "window_start": window, "source": source, "group": group,
            "backend": b, "observed": s * total, "share": s, "share_ci_low": s - 0.04,
            "share_ci_high": s + 0.05, "expected_share": e,
            "expected_low": e - 0.06 if e == e else np.nan, "expected_high": e + 0.07 if e == e else np.nan,
        })
    return rows


def skew_frame(*parts):
    return frame_from_records([r for p in parts for r in p], "skew")


def summary_frame(gini, spn=SPN, source="conntrack", group="pod"):
    return frame_from_records([{
        "service_port_name": spn, "window_start": NAT, "source": source, "group": group, "backends": 3,
        "total": 300.0, "max_mean": 1.5, "cv": 0.3, "gini": gini, "jain": 0.9, "entropy_norm": 0.95,
        "g_statistic": 1.0, "p_value": 0.5, "model": "uniform over 3 ready endpoints",
    }], "skew_summary")


def by_label(ax, label):
    return [c for c in ax.containers if c.get_label() == label]


# -- share vs expected ----------------------------------------------------------------------

def test_share_vs_expected_draws_one_bar_per_backend_with_its_interval():
    skew = skew_frame(skew_rows(), skew_rows(source="rules", shares=(0.1, 0.1, 0.8)),
                      skew_rows(spn="default/other:http", shares=(1.0,), expected=(1.0,)))
    ax = plot_share_vs_expected(skew, SPN)
    (bars,) = by_label(ax, "observed share (95 % CI)")
    assert isinstance(bars, BarContainer)
    assert [p.get_height() for p in bars.patches] == pytest.approx([0.5, 0.3, 0.2])  # conntrack first
    assert [t.get_text() for t in ax.get_xticklabels()] == ["web-1", "web-2", "web-3"]
    (whiskers,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = whiskers.lines[2][0].get_segments()
    assert [v for s in segments for v in (s[0][1], s[1][1])] == pytest.approx([0.46, 0.55, 0.26, 0.35, 0.16, 0.25])
    (band,) = by_label(ax, "expected range (95 %)")
    assert [v for p in band.patches for v in (p.get_y(), p.get_y() + p.get_height())] == pytest.approx(
        [1 / 3 - 0.06, 1 / 3 + 0.07] * 3)
    (ticks,) = [c for c in ax.collections if c.get_label() == "expected share"]
    assert [s[0][1] for s in ticks.get_segments()] == pytest.approx([1 / 3] * 3)
    assert "conntrack" in ax.get_title() and "pod" in ax.get_xlabel()


def test_share_vs_expected_picks_the_asked_source_and_skips_missing_models():
    skew = skew_frame(skew_rows(), skew_rows(source="rules", shares=(0.1, 0.1, 0.8),
                                             expected=(np.nan, np.nan, 0.5)))
    fig, ax = plt.subplots()
    assert plot_share_vs_expected(skew, SPN, source="rules", ax=ax) is ax
    (bars,) = by_label(ax, "observed share (95 % CI)")
    assert [p.get_height() for p in bars.patches] == pytest.approx([0.1, 0.1, 0.8])
    (band,) = by_label(ax, "expected range (95 %)")
    assert len(band.patches) == 1 and band.patches[0].get_x() + band.patches[0].get_width() / 2 == pytest.approx(2)


def test_share_vs_expected_names_what_is_wrong():
    skew = skew_frame(skew_rows())
    with pytest.raises(ValueError, match=r"service_port_name .*did you mean 'default/web:http'"):
        plot_share_vs_expected(skew, "default/web:htp")
    with pytest.raises(ValueError, match=r"source must be one of 'conntrack'; got 'metrics'"):
        plot_share_vs_expected(skew, SPN, source="metrics")
    with pytest.raises(npanalytics.SchemaError, match="skew"):
        plot_share_vs_expected(skew.drop(columns=["share_ci_low"]), SPN)


def test_share_vs_expected_needs_a_window_when_there_are_several():
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    skew = skew_frame(skew_rows(window=t0), skew_rows(window=t0 + pd.Timedelta("1min"), shares=(0.2, 0.2, 0.6)))
    with pytest.raises(ValueError, match="2 windows"):
        plot_share_vs_expected(skew, SPN)
    ax = plot_share_vs_expected(skew, SPN, window_start=t0 + pd.Timedelta("1min"))
    (bars,) = by_label(ax, "observed share (95 % CI)")
    assert [p.get_height() for p in bars.patches] == pytest.approx([0.2, 0.2, 0.6])


# -- Lorenz ---------------------------------------------------------------------------------

def test_lorenz_from_a_skew_frame_takes_the_gini_from_the_summary():
    skew = skew_frame(skew_rows(shares=(0.5, 0.3, 0.2)))
    ax = plot_lorenz(skew, SPN, summary=summary_frame(0.2))
    curve = [line for line in ax.lines if line.get_label().startswith(SPN)][0]
    assert curve.get_label() == f"{SPN} (Gini 0.200)"
    assert list(curve.get_ydata()) == pytest.approx([0, 0.2, 0.5, 1.0])
    assert list(curve.get_xdata()) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert any(line.get_label() == "equality" for line in ax.lines)


def test_lorenz_of_plain_loads_has_no_invented_gini():
    ax = plot_lorenz([0, 10, 30], label="pods")
    (curve,) = [line for line in ax.lines if line.get_label() == "pods"]
    assert list(curve.get_ydata()) == pytest.approx([0, 0, 0.25, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        plot_lorenz([1, -2])
    with pytest.raises(ValueError, match="service_port_name"):
        plot_lorenz(skew_frame(skew_rows()))


def test_lorenz_of_no_load_is_the_diagonal():
    ax = plot_lorenz(np.zeros(4))
    (curve,) = [line for line in ax.lines if line.get_label() == "loads"]
    assert list(curve.get_ydata()) == pytest.approx(list(curve.get_xdata()))


# -- flow diagram ---------------------------------------------------------------------------

def test_flow_diagram_widths_follow_the_shares():
    paths = pd.DataFrame({
        "client": ["c1", "c1", "c2", "c2"],
        "node": ["node-a", "node-a", "node-b", None],
        "pod": ["web-1", "web-2", "web-1", "web-3"],
        "connections": [30, 10, 40, 20],
    })
    ax = plot_flow_diagram(paths, max_line_width=10)
    widths = {line.get_gid(): line.get_linewidth() for line in ax.lines}
    assert widths == pytest.approx({
        "client:c1 -> node:node-a": 4.0,
        "client:c2 -> node:node-b": 4.0,
        "client:c2 -> node:(unknown)": 2.0,
        "node:node-a -> pod:web-1": 3.0,
        "node:node-a -> pod:web-2": 1.0,
        "node:node-b -> pod:web-1": 4.0,
        "node:(unknown) -> pod:web-3": 2.0,
    })
    boxes = {t.get_gid() for t in ax.texts}
    assert {"client:c1", "node:(unknown)", "pod:web-3"} <= boxes and len(boxes) == 8
    assert [t.get_text() for t in ax.get_xticklabels()] == ["client", "node", "pod"]


def test_flow_diagram_from_ground_truth():
    gt = npanalytics.load_dataset("etp-local-uneven")["ground_truth"]
    ax = plot_flow_diagram(gt, layers=("node", "pod"), weight="requests", max_line_width=1)
    total = sum(line.get_linewidth() for line in ax.lines)
    assert total == pytest.approx(1.0)
    assert len(ax.lines) == gt[["node", "pod"]].drop_duplicates().shape[0]


def test_flow_diagram_of_a_node_path_frame():
    node_path = frame_from_records([
        {"service_port_name": SPN, "entry_node": "node-a", "backend_node": "node-a", "path": "local",
         "connections": 30, "share": 0.75, "snat_connections": 0},
        {"service_port_name": SPN, "entry_node": "node-a", "backend_node": "node-b", "path": "forwarded",
         "connections": 10, "share": 0.25, "snat_connections": 10},
    ], "node_path")
    ax = plot_flow_diagram(node_path, max_line_width=8)
    assert {line.get_gid(): line.get_linewidth() for line in ax.lines} == pytest.approx({
        "entry_node:node-a -> backend_node:node-a": 6.0, "entry_node:node-a -> backend_node:node-b": 2.0})
    load = pd.DataFrame({"entry_node": ["a", "a"], "node": ["a", "b"], "pod": ["p", "q"],
                         "measure": ["connections", "bytes"], "value": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"mix measures \['bytes', 'connections'\]"):
        plot_flow_diagram(load)
    ax = plot_flow_diagram(load[load["measure"] == "bytes"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["entry_node", "node", "pod"]
    assert ax.get_title() == "where the bytes went"


def test_flow_diagram_of_one_service_port():
    paths = pd.DataFrame({"service_port_name": [SPN, SPN, "default/db:sql"], "client": ["c1", "c2", "c1"],
                          "node": ["a", "b", "a"], "pod": ["p", "q", "r"], "connections": [1, 3, 100]})
    ax = plot_flow_diagram(paths, SPN, max_line_width=4)
    assert {line.get_gid(): line.get_linewidth() for line in ax.lines} == pytest.approx({
        "client:c1 -> node:a": 1, "client:c2 -> node:b": 3, "node:a -> pod:p": 1, "node:b -> pod:q": 3})
    assert ax.get_title().endswith(SPN)
    with pytest.raises(ValueError, match="did you mean 'default/web:http'"):
        plot_flow_diagram(paths, "default/web:htp")


def test_flow_diagram_names_missing_columns():
    with pytest.raises(ValueError, match=r"no column\(s\) \['client'\]"):
        plot_flow_diagram(pd.DataFrame({"node": ["a"], "pod": ["p"], "connections": [1]}))
    with pytest.raises(ValueError, match="at least two layers"):
        plot_flow_diagram(pd.DataFrame({"node": ["a"], "connections": [1]}), layers=["node"])


# -- shares over time -----------------------------------------------------------------------

def test_shares_over_time_marks_churn_of_this_service_only():
    t0 = pd.Timestamp("2026-01-01 10:00", tz="UTC")
    skew = skew_frame(*(skew_rows(source="rules", window=t0 + pd.Timedelta(minutes=m),
                                  shares=(0.4 + 0.1 * m, 0.6 - 0.1 * m)) for m in range(3)),
                      skew_rows(shares=(0.5, 0.5)))  # conntrack: whole recording only
    churn = frame_from_records([
        {"timestamp": t0 + pd.Timedelta(seconds=90), "namespace": "default", "service": "web", "slice": "web-x",
         "address": "10.0.0.3", "event": "removed", "resource_version": "7"},
        {"timestamp": t0 + pd.Timedelta(seconds=30), "namespace": "default", "service": "db", "slice": "db-x",
         "address": "10.0.0.9", "event": "added", "resource_version": "8"},
    ], "endpoint_churn")
    ax = plot_shares_over_time(skew, SPN, churn)
    lines = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    assert sorted(lines) == ["web-1", "web-2"]
    assert list(lines["web-1"].get_ydata()) == pytest.approx([0.4, 0.5, 0.6])  # the NaT snapshot is left out
    marks = [line for line in ax.lines if (line.get_gid() or "").startswith("churn")]
    assert [m.get_gid() for m in marks] == ["churn removed 10.0.0.3"]
    assert "rules" in ax.get_title()  # the source that has windows
    with pytest.raises(ValueError, match="no windowed skew rows"):
        plot_shares_over_time(skew_frame(skew_rows()), SPN)
    x = matplotlib.dates.date2num(marks[0].get_xdata()[0])
    assert x == pytest.approx(matplotlib.dates.date2num((t0 + pd.Timedelta(seconds=90)).to_pydatetime()))


# -- overhead -------------------------------------------------------------------------------

def sweep_summary():
    rows = []
    for mode, slope in (("iptables-legacy", 10.0), ("nftables", 0.0)):
        for n in (0, 1000, 2000):
            rows.append({"proxy_mode": mode, "services": n, "attempts": 10, "failures": 0,
                         "p50_us": 20 + slope * n / 1e3, "p90_us": 30.0, "p99_us": 40.0})
    summary = frame_from_records(rows, "overhead")
    fit = frame_from_records([
        {"proxy_mode": mode, "statistic": stat, "points": 3, "slope_ns_per_service": slope, "intercept_us": b}
        for mode, stat, slope, b in (("iptables-legacy", "p50_us", 10.0, 20.0), ("nftables", "p50_us", 0.0, 20.0),
                                     ("nftables", "p99_us", 5.0, 1.0))
    ], "overhead_fit")
    return summary, fit


def test_overhead_draws_modes_fits_and_the_users_service_count():
    summary, fit = sweep_summary()
    ax = plot_overhead(summary, fit, services=8000)
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines["iptables-legacy"].get_ydata()) == pytest.approx([20, 30, 40])
    fit_line = lines["iptables-legacy fit (10.00 ns/service)"]
    assert list(fit_line.get_xdata()) == pytest.approx([0, 8000])
    assert list(fit_line.get_ydata()) == pytest.approx([20, 100])  # 20 µs + 10 ns x 8000
    assert "nftables fit (0.00 ns/service)" in lines and "nftables fit (5.00 ns/service)" not in lines
    marker = lines["your 8,000 services"]
    assert list(marker.get_xdata()) == [8000, 8000]
    assert "µs" in ax.get_ylabel() and "p50" in ax.get_ylabel()


def test_overhead_sets_published_numbers_beside_the_lab():
    from npanalytics.analysis.published import kep3866_first_packet

    summary, fit = sweep_summary()
    published = kep3866_first_packet()
    ax = plot_overhead(summary, fit, statistic="p50_us", published=published)
    lines = {line.get_label(): line for line in ax.lines}
    iptables = lines["published iptables"]
    assert list(iptables.get_xdata()) == [5000, 10000, 30000]
    assert list(iptables.get_ydata()) == pytest.approx([49, 61, 274])  # µs, as charted in KEP-3866
    assert list(lines["published nftables"].get_ydata()) == pytest.approx([14, 14, 14])
    floor = published[published["upper_bound"]].assign(quantile=0.5)  # the p01 bars, drawn as if p50
    ax = plot_overhead(summary, statistic="p50_us", published=floor)
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines["published nftables (at most)"].get_ydata()) == pytest.approx([10, 10, 10])
    assert lines["published nftables (at most)"].get_marker() == "v"


def test_published_kep3866_table_keeps_the_charts_shape():
    from npanalytics.analysis.published import KEP3866_SOURCE, kep3866_first_packet

    table = npanalytics.validate_frame(kep3866_first_packet(), "published_latency")
    assert (table["source"] == KEP3866_SOURCE).all() and len(table) == 2 * 4 * 3
    p50 = table[table["quantile"] == 0.5].pivot(index="services", columns="proxy_mode", values="rtt_seconds")
    assert p50.loc[30000, "iptables"] / p50.loc[30000, "nftables"] == pytest.approx(19.6, abs=0.1)
    assert p50["nftables"].nunique() == 1  # flat from 5k to 30k
    assert table.loc[table["upper_bound"], "rtt_seconds"].eq(10e-6).all()


def test_overhead_on_the_recorded_sweep():
    from npanalytics.analysis.overhead import fit_sweep, summarize_sweep

    ds = npanalytics.load_dataset("proxy-mode-sweep")
    summary = summarize_sweep(ds["connect_latency"], ds["rule_loads"])
    ax = plot_overhead(summary, fit_sweep(summary), statistic="p99_us")
    modes = sorted(str(m) for m in summary["proxy_mode"].unique())
    assert [label for label in (line.get_label() for line in ax.lines) if label in modes] == modes
    with pytest.raises(ValueError, match="statistic must be one of .*did you mean 'p99_us'"):
        plot_overhead(summary, statistic="p99us")
    with pytest.raises(npanalytics.SchemaError, match="overhead_fit"):
        plot_overhead(summary, summary)


# -- conntrack pressure ---------------------------------------------------------------------

def pressure_frame():
    return frame_from_records([
        {"node": node, "entries": entries, "max_entries": top, "max_entries_source": "kube-proxy default",
         "fill_ratio": entries / top, "established": 0, "time_wait": entries, "close_wait": 0, "other_tcp": 0,
         "udp": 0, "other": 0, "new_connections_per_second": 1.0, "forecast_entries": forecast}
        for node, entries, top, forecast in (("node-b", 100, 262144, 5000.0), ("node-a", 250, 131072, np.nan))
    ], "conntrack_pressure")


def test_conntrack_pressure_bars_forecast_and_maximum():
    ax = plot_conntrack_pressure(pressure_frame())
    (now,) = by_label(ax, "entries now")
    assert [p.get_width() for p in now.patches] == [250.0, 100.0]  # node-a first
    (forecast,) = by_label(ax, "steady-state forecast")
    assert [p.get_width() for p in forecast.patches] == [0.0, 5000.0]  # node-a has no forecast
    (maximum,) = [c for c in ax.collections if c.get_label() == "nf_conntrack_max"]
    assert [s[0][0] for s in maximum.get_segments()] == [131072.0, 262144.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["node-a", "node-b"]
    assert by_label(plot_conntrack_pressure(pressure_frame(), forecast=False), "steady-state forecast") == []
    with pytest.raises(npanalytics.SchemaError, match="max_entries"):
        plot_conntrack_pressure(pressure_frame().drop(columns=["max_entries"]))


# -- affinity -------------------------------------------------------------------------------

def affinity_frame():
    rows = []
    for client, flows, top, backend in (("198.18.9.1", 60, 1.0, "10.0.0.1"), ("198.18.9.2", 30, 0.5, "10.0.0.2"),
                                        ("198.18.9.3", 10, 1.0, "10.0.0.1")):
        rows.append({"service_port_name": SPN, "client": client, "session_affinity": "ClientIP", "flows": flows,
                     "client_share": flows / 100, "top_backend": backend, "pinned_share": top, "backends": 1,
                     "nodes": 1, "max_backends_per_node": 1, "node_local_affinity": False, "snat_ratio": 0.0,
                     "service_clients": 3, "effective_clients": 2.45, "service_backends": 2, "backend_cv": 0.4,
                     "no_affinity_cv": 0.1, "affinity_cv": 0.5, "p_value": 0.001})
    return frame_from_records(rows, "affinity")


def test_affinity_splits_each_clients_flows_at_its_top_backend():
    ax = plot_affinity(affinity_frame(), SPN)
    (top,) = by_label(ax, "flows pinned (to the busiest backend of their entry node)")
    (rest,) = by_label(ax, "flows elsewhere")
    assert [p.get_width() for p in top.patches] == [10, 15, 60]  # busiest client on top (last)
    assert [(p.get_x(), p.get_width()) for p in rest.patches][1] == (15, 15)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["198.18.9.3", "198.18.9.2", "198.18.9.1"]
    assert [t.get_text() for t in ax.texts] == ["most to 10.0.0.1", "most to 10.0.0.2", "most to 10.0.0.1"]
    assert "2.5 effective of 3 clients" in ax.get_title()
    with pytest.raises(ValueError, match="service_port_name"):
        plot_affinity(affinity_frame(), "default/nope:http")
