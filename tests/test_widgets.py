"""Explorers: set widget values as a user would (no browser) and check what is drawn and listed."""

from __future__ import annotations

import html
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

import npanalytics  # noqa: E402
from npanalytics.analysis.result import Analysis  # noqa: E402
from npanalytics.schemas import frame_from_records  # noqa: E402
from npanalytics.widgets import (  # noqa: E402
    AffinityExplorer,
    OverheadExplorer,
    SkewExplorer,
    TroubleshootingExplorer,
)

WEB = "default/web:http"
API = "shop/api:grpc"
T0 = pd.Timestamp("2026-01-01 10:00", tz="UTC")


def _skew_rows(spn, source, group, shares, window=pd.NaT):
    n = len(shares)
    return [{
        "service_port_name": spn, "window_start": window, "source": source, "group": group,
        "backend": f"{group}-{i}", "observed": 100.0 * s, "share": s, "share_ci_low": s - 0.01,
        "share_ci_high": s + 0.01, "expected_share": 1 / n, "expected_low": 1 / n - 0.05,
        "expected_high": 1 / n + 0.05,
    } for i, s in enumerate(shares)]


def _summary(spn, source, group, gini, window=pd.NaT):
    return {"service_port_name": spn, "window_start": window, "source": source, "group": group, "backends": 2,
            "total": 100.0, "max_mean": 1.2, "cv": 0.2, "gini": gini, "jain": 0.95, "entropy_norm": 0.97,
            "g_statistic": 3.0, "p_value": 0.08, "model": f"model of {spn} <{source}>"}


def _finding(severity, code, service, node, what):
    return {"severity": severity, "code": code, "service": service, "node": node, "what": what,
            "evidence": "n=100", "advice": "look"}


@pytest.fixture
def analysis():
    skew = frame_from_records(
        _skew_rows(WEB, "conntrack", "pod", [0.5, 0.3, 0.2])
        + _skew_rows(WEB, "conntrack", "node", [0.8, 0.2])
        + _skew_rows(WEB, "ground_truth", "pod", [0.34, 0.33, 0.33])
        + _skew_rows(WEB, "conntrack", "pod", [0.9, 0.05, 0.05], window=T0)
        + _skew_rows(API, "rules", "zone", [0.6, 0.4]),
        "skew")
    summary = frame_from_records([
        _summary(WEB, "conntrack", "pod", 0.2), _summary(WEB, "conntrack", "node", 0.3),
        _summary(WEB, "ground_truth", "pod", 0.01), _summary(WEB, "conntrack", "pod", 0.57, window=T0),
        _summary(API, "rules", "zone", 0.1),
    ], "skew_summary")
    findings = frame_from_records([
        _finding("critical", "no-ready-endpoints", API, None, "api has no ready endpoint"),
        _finding("warning", "affinity-concentration", WEB, None, "<script>alert(1)</script> one NAT address"),
        _finding("warning", "conntrack-pressure", None, "node-b", "node-b's table is 90 % full"),
        _finding("info", "cross-node-hops", WEB, "node-a", "2/3 of connections hop"),
    ], "findings")
    node_path = frame_from_records([
        {"service_port_name": WEB, "entry_node": "node-a", "backend_node": "node-a", "path": "local",
         "connections": 30, "share": 0.75, "snat_connections": 0},
        {"service_port_name": WEB, "entry_node": "node-a", "backend_node": "node-b", "path": "forwarded",
         "connections": 10, "share": 0.25, "snat_connections": 10},
    ], "node_path")
    overhead = frame_from_records([
        {"proxy_mode": mode, "services": n, "attempts": 10, "failures": 0, "p50_us": p50, "p90_us": p50,
         "p99_us": p99}
        for mode, n, p50, p99 in (("iptables-legacy", 0, 20.0, 40.0), ("iptables-legacy", 1000, 30.0, 70.0),
                                  ("nftables", 0, 20.0, 41.0), ("nftables", 1000, 20.0, 41.0))
    ], "overhead")
    fit = frame_from_records([
        {"proxy_mode": mode, "statistic": "p50_us", "points": 2, "slope_ns_per_service": slope, "intercept_us": 20.0}
        for mode, slope in (("iptables-legacy", 10.0), ("nftables", 0.0))
    ], "overhead_fit")
    pressure = frame_from_records([
        {"node": node, "entries": entries, "max_entries": 1000, "max_entries_source": "given",
         "fill_ratio": entries / 1000, "established": 0, "time_wait": entries, "close_wait": 0, "other_tcp": 0,
         "udp": 0, "other": 0, "new_connections_per_second": 1.0, "forecast_entries": forecast}
        for node, entries, forecast in (("node-a", 10, 20.0), ("node-b", 900, 1200.0))
    ], "conntrack_pressure")
    return Analysis(findings=findings, skew=skew, skew_summary=summary,
                    sections={"node_path": node_path, "overhead": overhead, "overhead_fit": fit,
                              "conntrack_pressure": pressure},
                    missing={"affinity": "affinity: collect conntrack -L on each node"})


def _bars(explorer):
    ax = explorer.figure.axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer) and c.get_label().startswith("observed")]
    return [round(p.get_height(), 6) for p in bars.patches]


def test_skew_explorer_follows_service_source_grouping_and_window(analysis):
    explorer = SkewExplorer(analysis)
    assert explorer.dataset.options == ("(given analysis)",) and explorer.dataset.disabled
    assert explorer.service.options == (WEB, API)
    explorer.service.value = WEB
    assert explorer.source.options == ("conntrack", "ground_truth")
    assert explorer.group.options == ("node", "pod")
    explorer.group.value = "pod"
    explorer.source.value = "conntrack"
    assert [label for label, _ in explorer.window.options] == ["whole recording", "2026-01-01 10:00:00 UTC"]
    assert _bars(explorer) == [0.5, 0.3, 0.2]
    assert "Gini 0.200" in explorer.text.value
    over_time = explorer.figure.axes[2]  # this choice has a window
    assert sorted(line.get_label() for line in over_time.lines) == ["pod-0", "pod-1", "pod-2"]
    first_png = explorer.image.value
    explorer.window.value = T0
    assert _bars(explorer) == [0.9, 0.05, 0.05]
    assert "Gini 0.570" in explorer.text.value and explorer.image.value != first_png
    explorer.source.value = "ground_truth"  # has no windows: back to the whole recording
    assert explorer.window.options == (("whole recording", "whole recording"),)
    assert _bars(explorer) == [0.34, 0.33, 0.33]
    assert len(explorer.figure.axes) == 2  # no windows: no shares over time
    lorenz = explorer.figure.axes[1]
    assert any("Gini 0.010" in line.get_label() for line in lorenz.lines)


def test_skew_explorer_lists_the_services_findings_escaped(analysis):
    explorer = SkewExplorer(analysis)
    explorer.service.value = WEB
    table = explorer.table.value
    assert "affinity-concentration" in table and "cross-node-hops" in table
    assert "no-ready-endpoints" not in table and "conntrack-pressure" not in table
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "&lt;conntrack&gt;" in explorer.text.value  # label text from the result is escaped too
    explorer.service.value = API
    assert "no-ready-endpoints" in explorer.table.value and "affinity" not in explorer.table.value
    assert _bars(explorer) == [0.6, 0.4] and explorer.group.value == "zone"


def test_troubleshooting_explorer_filters_findings(analysis):
    explorer = TroubleshootingExplorer(analysis)
    assert len(explorer.rows) == 4 and "4 of 4 findings" in explorer.text.value
    explorer.severity.value = ("critical", "warning")
    assert list(explorer.rows["code"]) == ["no-ready-endpoints", "affinity-concentration", "conntrack-pressure"]
    explorer.node.value = "node-b"
    assert list(explorer.rows["code"]) == ["conntrack-pressure"]
    assert "1 of 4 findings" in explorer.text.value and "table is 90 % full" in explorer.table.value
    explorer.node.value = "(all)"
    explorer.service.value = WEB
    assert list(explorer.rows["code"]) == ["affinity-concentration"]
    ax = explorer.figure.axes[0]
    (now,) = [c for c in ax.containers if c.get_label() == "entries now"]
    assert [p.get_width() for p in now.patches] == [10.0, 900.0]


def test_affinity_explorer_draws_the_node_path_and_says_what_is_missing(analysis):
    explorer = AffinityExplorer(analysis)
    explorer.service.value = WEB
    ax = explorer.figure.axes[1]
    assert sorted(line.get_gid() for line in ax.lines) == [
        "entry_node:node-a -> backend_node:node-a", "entry_node:node-a -> backend_node:node-b"]
    assert "collect conntrack -L on each node" in explorer.text.value  # affinity is missing
    assert "affinity-concentration" in explorer.table.value and "no-ready-endpoints" not in explorer.table.value
    explorer.service.value = API
    assert len(explorer.figure.axes[1].lines) == 0 and "No NodePort path" in explorer.text.value


def test_affinity_explorer_draws_the_clients(analysis):
    rows = [{"service_port_name": spn, "client": client, "session_affinity": "ClientIP", "flows": flows,
             "client_share": 0.5, "top_backend": "10.0.0.1", "pinned_share": 1.0, "backends": 1, "nodes": 1,
             "max_backends_per_node": 1, "node_local_affinity": False, "snat_ratio": 0.0, "service_clients": 2,
             "effective_clients": 2.0, "service_backends": 2, "backend_cv": 0.0, "no_affinity_cv": 0.1,
             "affinity_cv": 0.5, "p_value": 0.5}
            for spn, client, flows in ((WEB, "198.18.9.1", 7), (WEB, "198.18.9.2", 5), (API, "198.18.9.3", 3))]
    analysis.sections["affinity"] = frame_from_records(rows, "affinity")
    explorer = AffinityExplorer(analysis)
    explorer.service.value = WEB
    (top,) = [c for c in explorer.figure.axes[0].containers if c.get_label().startswith("flows pinned")]
    assert [p.get_width() for p in top.patches] == [5, 7]
    assert "198.18.9.1" in explorer.table.value and "198.18.9.3" not in explorer.table.value
    explorer.service.value = API
    (top,) = [c for c in explorer.figure.axes[0].containers if c.get_label().startswith("flows pinned")]
    assert [p.get_width() for p in top.patches] == [3]


def test_overhead_explorer_marks_your_service_count_and_published_numbers(analysis):
    explorer = OverheadExplorer(analysis)
    assert explorer.statistic.options == ("p50_us", "p90_us", "p99_us")

    def labels():
        return {line.get_label() for line in explorer.figure.axes[0].lines}

    assert "published iptables" in labels() and not any(lb.startswith("your") for lb in labels())
    assert "Service ports" not in explorer.text.value
    explorer.services.value = 8000
    assert "At 8,000 Service ports iptables-legacy adds about 80 µs" in explorer.text.value  # 10 ns x 8000
    assert "nftables about nothing" in explorer.text.value
    marker = [line for line in explorer.figure.axes[0].lines if line.get_label() == "your 8,000 services"]
    assert list(marker[0].get_xdata()) == [8000, 8000]
    explorer.published.value = False
    assert not any(lb.startswith("published") for lb in labels())
    explorer.statistic.value = "p99_us"
    (iptables,) = [ln for ln in explorer.figure.axes[0].lines if ln.get_label() == "iptables-legacy"]
    assert list(iptables.get_ydata()) == [40.0, 70.0]
    assert "slope_ns_per_service" in explorer.table.value


def test_explorers_say_what_a_missing_section_needs():
    bare = Analysis(missing={"conntrack_pressure": "conntrack pressure: collect `conntrack -S`",
                             "overhead": "overhead: run the lab sweep"})
    trouble = TroubleshootingExplorer(bare)
    assert "collect `conntrack -S`" in trouble.text.value and "0 of 0 findings" in trouble.text.value
    assert "run the lab sweep" in OverheadExplorer(bare).text.value
    skew = SkewExplorer(bare)
    assert skew.service.options == () and "No Service port" in skew.text.value


def test_choosing_a_dataset_analyses_it_once(monkeypatch):
    calls = []

    def fake_analyze(dataset):
        calls.append(dataset.name)
        return Analysis(findings=frame_from_records(
            [_finding("info", "cross-node-hops", None, None, f"from {dataset.name}")], "findings"))

    explorer = TroubleshootingExplorer("node-sample", analyze=fake_analyze)
    assert set(npanalytics.list_datasets()) <= set(explorer.dataset.options)
    assert "from node-sample" in explorer.table.value
    explorer.dataset.value = "etp-local-uneven"
    assert "from etp-local-uneven" in explorer.table.value
    explorer.dataset.value = "node-sample"
    assert calls == ["node-sample", "etp-local-uneven"]


def test_widget_holds_the_controls_and_outputs(analysis):
    explorer = SkewExplorer(analysis)
    box = explorer.widget
    controls, image, text, table = box.children
    assert list(controls.children) == [explorer.dataset, explorer.service, explorer.source, explorer.group,
                                       explorer.window]
    assert image is explorer.image and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert (text, table) == (explorer.text, explorer.table)
    assert np.isfinite(explorer.figure.get_size_inches()).all()


def test_skew_explorer_on_a_recorded_dataset_shows_the_analysis_rows():
    explorer = SkewExplorer("etp-local-uneven")
    explorer.service.value = "default/web:http"
    explorer.group.value = "pod"
    for source in explorer.source.options:
        explorer.source.value = source
        skew = explorer.analysis.skew
        rows = skew[(skew["source"] == source) & (skew["group"] == "pod") & skew["window_start"].isna()]
        assert _bars(explorer) == [round(v, 6) for v in rows.sort_values("backend")["share"]]
    assert "etp-local-topology" in explorer.table.value


def test_widgets_compute_no_statistic():
    """House rule: callbacks select rows and call plotting; reductions belong to analysis."""
    import inspect
    import re

    import npanalytics.widgets as module

    source = inspect.getsource(module)
    reductions = re.findall(r"\.(mean|median|std|var|quantile|sum|cumsum|groupby|agg|value_counts)\(|scipy", source)
    assert reductions == []


# -- the live-source panel: real sources, driven through the Collect button ------------------------------

LIVE_TOKEN = "npa-live-token-7c2d91"


def _live_files(live):
    """Every file the panel wrote (its temporary folder)."""
    from pathlib import Path

    return [p for p in Path(live._folder.name).rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def recent_prometheus(tmp_path_factory):
    """A real Prometheus holding endpoint-removed-stale's series, moved to end 20 s ago."""
    import shutil
    import time

    from conftest import _need
    from prom_server import backfill, start_prometheus
    from test_collect_catalogs import om_lines, shifted

    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    _need(prometheus, "needs the prometheus binary")
    _need(promtool, "needs the promtool binary")
    text = npanalytics.load_dataset("endpoint-removed-stale").raw["raw/metrics/series.om"].decode()
    last = max(s for *_, s in om_lines(text))
    root = tmp_path_factory.mktemp("live-prometheus")
    backfill(promtool, shifted(text, time.time() - 20 - last), root / "tsdb", "recent")
    server = start_prometheus(prometheus, root)
    try:
        yield server
    finally:
        server.stop()


def test_live_source_collects_from_prometheus_into_every_attached_explorer(recent_prometheus):
    from npanalytics.collect import CATALOG_KINDS
    from npanalytics.widgets import LiveSource

    live = LiveSource()
    trouble = TroubleshootingExplorer("endpoint-removed-stale", live=live)
    skew = SkewExplorer("endpoint-removed-stale", live=live)
    affinity = AffinityExplorer("endpoint-removed-stale", live=live)
    before = list(trouble.dataset.options)
    assert "stale-conntrack" in trouble.table.value and len(trouble.rows) > 0
    assert any(c.get_label() == "entries now" for c in trouble.figure.axes[0].containers)
    assert skew.service.options  # the bundled recording has skew rows
    live.url.value, live.token.value = recent_prometheus.url, LIVE_TOKEN
    live.minutes.value, live.step.value = 10, "5s"
    live.button.click()
    assert live.error.value == ""
    (label,) = live.collected
    assert label.startswith(f"live: {recent_prometheus.url} @ ") and label.endswith(" UTC")
    for explorer in (trouble, skew, affinity):
        assert list(explorer.dataset.options) == [*before, label] and explorer.dataset.value == label
        assert explorer.analysis is live.analyses[label]
    assert f"Collected <b>{label}</b>" in live.status.value and not live.button.disabled
    # the recording: the catalogs from kube-state-metrics and kube-proxy, no conntrack
    collected = live.collected[label]
    assert set(CATALOG_KINDS) <= set(collected.frames) and len(collected["k8s_endpoints"]) > 0
    assert not {"conntrack", "conntrack_stats"} & set(collected.kinds.values())
    # what the explorers show now is the analysis of that recording
    expected = npanalytics.analyze(npanalytics.load_dataset(live._folder.name + "/live-1"))
    pd.testing.assert_frame_equal(trouble.rows.reset_index(drop=True),
                                  expected.findings.reset_index(drop=True))
    assert f"0 of {len(expected.findings)} findings" in trouble.text.value
    assert "stale-conntrack" not in trouble.table.value
    assert html.escape(expected.missing["conntrack_pressure"]) in trouble.text.value
    assert not trouble.figure.axes[0].containers and trouble.figure.axes[0].texts[0].get_text() == (
        "conntrack_pressure: not available")
    assert skew.service.options == () and "No Service port" in skew.text.value
    assert html.escape(expected.missing["affinity"]) in affinity.text.value
    # the token went to Prometheus only: not in the files, the choice or the messages
    files = _live_files(live)
    assert any(p.name == "manifest.json" for p in files)
    assert all(LIVE_TOKEN.encode() not in p.read_bytes() for p in files)
    assert LIVE_TOKEN not in label + live.status.value + live.error.value
    # back to a bundled dataset and forth again: the recording stays a choice
    trouble.dataset.value = "endpoint-removed-stale"
    assert "stale-conntrack" in trouble.table.value
    trouble.dataset.value = label
    assert "stale-conntrack" not in trouble.table.value
    folder = live._folder.name
    live.close()
    assert not os.path.exists(folder) and live.button.disabled


def test_live_source_follows_the_kubernetes_api(need, tmp_path):
    import importlib.util

    need(importlib.util.find_spec("kubernetes"), "needs the kubernetes client (pip install 'npanalytics[k8s]')")
    from npanalytics.lab.apiserver import LabApiServer
    from npanalytics.lab.scenario import load_scenario

    scenario = load_scenario("two-nodes-local")
    with LabApiServer(scenario) as srv:
        config = srv.write_kubeconfig(tmp_path / "kubeconfig", context="lab")
        explorer = TroubleshootingExplorer("node-sample", live=True)
        live = explorer.live
        assert explorer.widget.children[0] is live.widget
        live.kubeconfig.value, live.context.value = str(config), "no-such-context"
        live.button.click()
        assert "no-such-context" in live.error.value and str(config) in live.error.value
        assert "its contexts: lab" in live.error.value and "Traceback" not in live.error.value
        assert explorer.dataset.value == "node-sample" and not live.collected
        live.context.value = "lab"
        srv.set_pod_states({pod.name: {"ready": False} for pod in scenario.pods})
        live.button.click()
        assert live.error.value == ""
        (unready,) = live.collected
        assert unready.startswith(f"live: kubeconfig {config} @ ") and explorer.dataset.value == unready
        assert list(explorer.rows["code"]) == ["no-ready-endpoints"]
        assert list(explorer.rows["service"]) == ["default/web:http"]
        assert explorer.service.options == ("(all)", "default/web:http")
        srv.set_pod_states({pod.name: {"ready": True} for pod in scenario.pods})
        live.button.click()
    ready = [label for label in live.collected if label != unready]
    assert len(ready) == 1 and explorer.dataset.value == ready[0]
    assert explorer.rows.empty and "0 of 0 findings" in explorer.text.value
    assert sorted(live.collected[ready[0]]["k8s_pods"]["pod"].astype(str)) == sorted(p.name for p in scenario.pods)
    # an explorer attached later gets both recordings as choices, without switching to them
    later = TroubleshootingExplorer("node-sample", live=live)
    assert list(later.dataset.options)[-2:] == [unready, ready[0]] and later.dataset.value == "node-sample"
    folder = live._folder.name
    explorer.close()
    assert not os.path.exists(folder)


def test_live_source_shows_an_unreachable_source_escaped():
    from prom_server import free_port

    explorer = SkewExplorer("node-sample", live=True)
    live = explorer.live
    options, shown = explorer.dataset.options, explorer.image.value
    url = f"http://127.0.0.1:{free_port()}/<script>alert(1)</script>"
    live.url.value, live.token.value = url, LIVE_TOKEN
    live.button.click()
    error = live.error.value
    assert "<script>" not in error and "&lt;script&gt;alert(1)&lt;/script&gt;" in error
    assert "Collecting from Prometheus at http://127.0.0.1:" in error and "cannot query Prometheus" in error
    assert "Traceback" not in error and LIVE_TOKEN not in error + live.status.value
    assert "<script>" not in live.status.value and "failed" in live.status.value
    assert explorer.dataset.options == options and explorer.image.value == shown and not live.collected
    assert not live.button.disabled
    # a password in the URL is not shown either
    live.url.value = f"http://viewer:hunter2secret@127.0.0.1:{free_port()}"
    live.button.click()
    assert "hunter2secret" not in live.error.value + live.status.value and "viewer" not in live.error.value
    # no source at all, or a bad step: said, not raised
    live.url.value = ""
    live.button.click()
    assert "collect needs a source" in live.error.value and "no source" in live.status.value
    explorer.close()
