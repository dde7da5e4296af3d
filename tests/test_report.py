"""render_report: the HTML, JSON and Markdown files of an Analysis.

The Analysis objects here are built from valid frames of each kind, so the report is
tested on its own; tests/test_report_cli.py runs it on the real analysis of datasets.
"""

from __future__ import annotations

import base64
import datetime as dt
import html.parser
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics.analysis.result import Analysis
from npanalytics.report import PAYLOAD_FORMAT, render_report, report_payload
from npanalytics.schemas import SCHEMAS, frame_from_records, validate_frame

ROOT = Path(__file__).resolve().parents[1]
GENERATED = dt.datetime(2026, 12, 1, 3, 4, 5, tzinfo=dt.timezone.utc)
NAT = pd.NaT
_DEFAULTS = {
    "category": "x",
    "str": "x",
    "int64": 1,
    "Int64": 1,
    "float64": 0.5,
    "bool": False,
    "boolean": True,
    "datetime64[ns, UTC]": pd.Timestamp("2026-12-01T00:00:00Z"),
}


def frame(kind: str, rows: list[dict]) -> pd.DataFrame:
    """A valid frame of ``kind``: each row's missing required columns get a plain default."""
    columns = [c for c in SCHEMAS[kind].columns if c.required]
    full = [{c.name: row.get(c.name, _DEFAULTS[c.dtype]) for c in columns} for row in rows]
    return validate_frame(frame_from_records(full, kind), kind)


def make_analysis(
    service: str = "default/web:http",
    node: str = "node-a",
    what: str = "Pod web-1 gets half of the load",
    manifest: dict | None = None,
    sections: tuple[str, ...] = ("affinity", "long_lived", "overhead", "overhead_fit", "control_plane",
                                 "conntrack_pressure", "node_path"),
) -> Analysis:
    """An Analysis of one Service port with three backends, a finding per severity and the sections asked."""
    findings = frame("findings", [
        dict(severity="critical", code="no-ready-endpoints", service=service, node=None, what=what,
             evidence="0 of 3 endpoints ready", advice="check the readiness probes"),
        dict(severity="warning", code="etp-local-topology", service=service, node=node,
             what="externalTrafficPolicy Local splits the load per node", evidence="shares 0.25/0.25/0.5",
             advice="spread the pods evenly over the nodes"),
        dict(severity="info", code="cross-node-hops", service=None, node=None,
             what="Two thirds of the connections hop to another node", evidence="267 of 400",
             advice="consider externalTrafficPolicy Local"),
    ])
    loads = {"10.0.0.1:8080": 200.0, "10.0.0.2:8080": 100.0, f"{node}/10.0.0.3:8080": 100.0}
    skew = frame("skew", [
        dict(service_port_name=service, window_start=NAT, source="conntrack", group="endpoint", backend=b,
             observed=o, share=o / 400, share_ci_low=o / 400 - 0.04, share_ci_high=o / 400 + 0.04,
             expected_share=np.nan if b.startswith(node) else 1 / 3, expected_low=0.29, expected_high=0.38)
        for b, o in loads.items()
    ])
    summary = frame("skew_summary", [
        dict(service_port_name=service, window_start=NAT, source="conntrack", group="endpoint", backends=3,
             total=400.0, max_mean=1.5, cv=0.3536, gini=0.1667, jain=0.8889, entropy_norm=0.9464,
             g_statistic=38.19, p_value=5.1e-9, model="uniform over 3 ready endpoints"),
    ])
    all_sections = {
        "affinity": frame("affinity", [dict(service_port_name=service, client="198.18.200.10", flows=40,
                                            client_share=0.1, top_backend="10.0.0.1:8080", p_value=np.nan)]),
        "long_lived": frame("long_lived", [dict(service_port_name=service, source="conntrack", backend=b,
                                                connections=3, starved=b.endswith("3:8080")) for b in loads]),
        "overhead": frame("overhead", [dict(proxy_mode=m, services=n, p50_us=50.0 + k * n / 1000,
                                            p90_us=60.0, p99_us=90.0)
                                       for m, k in (("iptables-legacy", 17.0), ("nftables", 0.3))
                                       for n in (0, 1000, 5000)]),
        "overhead_fit": frame("overhead_fit", [dict(proxy_mode=m, statistic="p50_us", points=3,
                                                    slope_ns_per_service=k, intercept_us=50.0)
                                               for m, k in (("iptables-legacy", 17.0), ("nftables", 0.3))]),
        "control_plane": frame("control_plane", [dict(node=node, proxy_mode="iptables-legacy", loads=2,
                                                      services=1, rules=35, load_seconds_median=0.0176)]),
        "conntrack_pressure": frame("conntrack_pressure", [
            dict(node=node, cpus=4, entries=1000, max_entries=262144, forecast_entries=1200.0),
            dict(node="node-b", cpus=None, entries=5000, max_entries=262144, forecast_entries=np.nan),
        ]),
        "node_path": frame("node_path", [dict(service_port_name=service, entry_node=node, backend_node=n,
                                              path=p, connections=c, share=c / 300)
                                         for n, p, c in ((node, "local", 100), ("node-b", "forwarded", 200))]),
    }
    missing = {
        name: f"no data for {name}: record it with npanalytics lab record"
        for name in ("affinity", "long_lived", "overhead", "overhead_fit", "control_plane", "conntrack_pressure",
                     "node_path")
        if name not in sections
    }
    if manifest is None:
        manifest = json.loads((ROOT / "datasets" / "node-sample" / "manifest.json").read_text())
    return Analysis(findings=findings, skew=skew, skew_summary=summary,
                    sections={k: v for k, v in all_sections.items() if k in sections},
                    missing=missing, provenance=manifest)


class _Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Tags:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report")
    return render_report(make_analysis(), formats=("html", "json", "md"), out_dir=out, generated=GENERATED)


def test_writes_each_format_under_its_name(written):
    assert {fmt: p.name for fmt, p in written.items()} == {
        "html": "report.html", "json": "report.json", "md": "report.md"}
    assert all(p.stat().st_size > 0 for p in written.values())


def test_html_is_self_contained(written):
    doc = parse(written["html"])
    tags = [t for t, _ in doc.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in doc.tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:80])
    text = written["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    csp = [a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]


def test_html_embeds_a_png_per_figure(written):
    imgs = [a for t, a in parse(written["html"]).tags if t == "img"]
    # share vs expected + Lorenz, overhead, conntrack pressure, node path
    assert len(imgs) == 4
    for attrs in imgs:
        png = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert attrs["alt"]
    assert "could not be drawn" not in written["html"].read_text()


def test_html_has_every_section_and_the_findings_by_severity(written):
    doc = parse(written["html"])
    ids = [a.get("id") for _, a in doc.tags if a.get("id")]
    for section in ("summary", "findings", "skew", "affinity", "overhead", "control_plane", "conntrack_pressure",
                    "node_path",
                    "provenance", "findings-critical", "findings-warning", "findings-info"):
        assert section in ids
    assert ids.index("findings-critical") < ids.index("findings-warning") < ids.index("findings-info")
    text = " ".join(" ".join(doc.text).split())
    assert "Pod web-1 gets half of the load" in text
    assert "spread the pods evenly over the nodes" in text
    assert "uniform over 3 ready endpoints" in text
    assert "Not computed" not in text
    # provenance from the manifest: its description, a recording entry, each frame's sha256
    manifest = json.loads((ROOT / "datasets" / "node-sample" / "manifest.json").read_text())
    assert manifest["description"] in text
    assert manifest["recording"]["kernel"] in text
    for meta in manifest["frames"].values():
        assert meta["sha256"] in text


def test_json_has_the_same_numbers_with_null_for_missing(written):
    payload = json.loads(written["json"].read_text())
    assert list(payload) == ["format", "format_version", "generated_utc", "npanalytics_version", "dataset",
                             "summary", "findings", "skew_summary", "skew", "sections", "missing", "provenance"]
    assert payload["format"] == PAYLOAD_FORMAT
    assert payload["generated_utc"] == "2026-12-01T03:04:05Z"
    assert payload["npanalytics_version"] == npanalytics.__version__
    assert payload["summary"]["findings_by_severity"] == {"critical": 1, "warning": 1, "info": 1}
    assert payload["summary"]["worst_severity"] == "critical"
    analysis = make_analysis()
    assert [list(r) for r in payload["skew"]] == [list(analysis.skew.columns)] * 3
    assert [r["observed"] for r in payload["skew"]] == analysis.skew["observed"].tolist()
    assert [r["expected_share"] for r in payload["skew"]] == [1 / 3, 1 / 3, None]
    assert all(r["window_start"] is None for r in payload["skew"])
    assert payload["skew_summary"][0]["p_value"] == 5.1e-9
    assert payload["sections"]["conntrack_pressure"][1]["forecast_entries"] is None
    assert payload["sections"]["conntrack_pressure"][1]["cpus"] is None  # Int64 NA
    assert payload["sections"]["conntrack_pressure"][0]["cpus"] == 4
    assert sorted(payload["sections"]) == sorted(analysis.sections)
    assert payload["provenance"]["name"] == "node-sample"
    assert "NaN" not in written["json"].read_text()


def test_html_and_markdown_show_the_numbers_of_the_json(written):
    payload = json.loads(written["json"].read_text())
    html_text = " ".join(parse(written["html"]).text)
    md_text = written["md"].read_text()
    row = payload["skew_summary"][0]
    for key, shown in (("gini", "0.1667"), ("jain", "0.8889"), ("p_value", "5.1e-09"), ("g_statistic", "38.19")):
        assert f"{row[key]:.4g}" == shown
        assert shown in html_text and shown in md_text
    slope = payload["sections"]["overhead_fit"][0]["slope_ns_per_service"]
    assert f"{slope:.4g}" in html_text and f"{slope:.4g}" in md_text


def test_markdown_has_the_findings_table_and_sections(written):
    md = written["md"].read_text()
    assert md.startswith("# npanalytics report: node-sample\n")
    assert "| critical | no-ready-endpoints | default/web:http |  | Pod web-1 gets half of the load |" in md
    for title in ("## Summary", "## Findings", "## Load skew", "## Session affinity", "## Proxy-mode overhead",
                  "## Conntrack pressure", "## Provenance"):
        assert title in md
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert table_lines
    # every row of a table has as many cells as its header
    blocks, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    for block in blocks:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block}
        assert len(widths) == 1, block


def test_sections_that_cannot_be_computed_say_what_is_missing(tmp_path):
    analysis = make_analysis(sections=("overhead",))
    analysis.missing["skew"] = "no conntrack_flows frame: dump it with conntrack -L"
    analysis.skew = analysis.skew.iloc[0:0]
    analysis.skew_summary = analysis.skew_summary.iloc[0:0]
    paths = render_report(analysis, formats=("html", "md", "json"), out_dir=tmp_path, generated=GENERATED)
    text = " ".join(" ".join(parse(paths["html"]).text).split())
    md = paths["md"].read_text()
    for topic in ("affinity", "long_lived", "control_plane", "conntrack_pressure", "node_path"):
        reason = f"no data for {topic}: record it with npanalytics lab record"
        assert f"Not computed. {reason}" in text
        assert f"**Not computed.** {reason}" in md
    assert "Not computed. no conntrack_flows frame: dump it with conntrack -L" in text
    assert "Fit not computed" in md and "no data for overhead_fit" in text
    payload = json.loads(paths["json"].read_text())
    assert payload["summary"]["missing"] == sorted(analysis.missing)
    assert payload["summary"]["sections"] == ["overhead"]
    assert payload["skew"] == [] and payload["summary"]["service_ports"] == 0


def test_an_empty_analysis_still_gives_a_report(tmp_path):
    paths = render_report(Analysis(), formats=("html", "json", "md"), out_dir=tmp_path, generated=GENERATED)
    text = " ".join(parse(paths["html"]).text)
    assert "No findings." in text
    assert "the analysis gave no result and no reason for this topic" in text
    assert json.loads(paths["json"].read_text())["summary"]["worst_severity"] is None


def test_a_figure_that_cannot_be_drawn_is_shown_as_an_error(tmp_path, monkeypatch):
    import npanalytics.plotting

    def refuse(*args, **kwargs):
        raise ValueError("plot_conntrack_pressure: pressure has no column 'entries'")

    monkeypatch.setattr(npanalytics.plotting, "plot_conntrack_pressure", refuse)
    paths = render_report(make_analysis(sections=("conntrack_pressure",)), out_dir=tmp_path)
    text = " ".join(" ".join(parse(paths["html"]).text).split())
    assert ("This figure could not be drawn: ValueError: plot_conntrack_pressure: pressure has no column "
            "'entries'") in text
    assert "node-b" in text  # the table is still there


def test_a_section_that_breaks_its_kind_is_an_error(tmp_path):
    analysis = make_analysis(sections=("overhead",))
    analysis.sections["overhead"] = analysis.sections["overhead"].drop(columns=["p50_us"])
    with pytest.raises(npanalytics.SchemaError, match="overhead"):
        render_report(analysis, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_dated_names(tmp_path):
    paths = render_report(make_analysis(sections=()), formats=("html", "md"), out_dir=tmp_path, dated=True,
                          generated=GENERATED)
    assert paths["html"].name == "report-20261201T030405Z.html"
    assert paths["md"].name == "report-20261201T030405Z.md"
    later = render_report(make_analysis(sections=()), formats=("html",), out_dir=tmp_path, dated=True,
                          generated=GENERATED + dt.timedelta(hours=1))
    assert later["html"].name == "report-20261201T040405Z.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report-20261201T030405Z.html", "report-20261201T030405Z.md", "report-20261201T040405Z.html"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'html'"):
        render_report(Analysis(), formats=("htm",), out_dir=tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        render_report(Analysis(), formats=(), out_dir=tmp_path)
    with pytest.raises(ValueError, match="timezone-aware"):
        render_report(Analysis(), out_dir=tmp_path, generated=dt.datetime(2026, 1, 1))
    with pytest.raises(npanalytics.SchemaError, match="findings"):
        render_report(Analysis(findings=pd.DataFrame({"severity": ["critical"]})), out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failure_while_rendering_leaves_the_previous_report(tmp_path, monkeypatch):
    from npanalytics.report import render

    render_report(make_analysis(sections=()), formats=("html", "json", "md"), out_dir=tmp_path,
                  generated=GENERATED)
    before = _snapshot(tmp_path)

    def broken_table(*args, **kwargs):
        raise RuntimeError("disk on fire")

    # the HTML template fails half way through (after the summary, inside a section)
    monkeypatch.setattr(render, "_provenance_view", broken_table)
    with pytest.raises(RuntimeError, match="disk on fire"):
        render_report(make_analysis(what="a new finding"), formats=("html", "json", "md"), out_dir=tmp_path)
    assert _snapshot(tmp_path) == before


def test_a_failure_while_writing_leaves_the_previous_report(tmp_path, monkeypatch):
    render_report(make_analysis(sections=()), formats=("html", "json", "md"), out_dir=tmp_path,
                  generated=GENERATED)
    before = _snapshot(tmp_path)
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the first file is complete, the second fails
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        render_report(make_analysis(what="a new finding"), formats=("html", "json", "md"), out_dir=tmp_path)
    assert len(calls) == 2
    assert _snapshot(tmp_path) == before  # no file replaced, no temporary file left


def test_report_payload_is_json_values_only():
    analysis = make_analysis()
    payload = report_payload(analysis, generated=GENERATED)
    text = json.dumps(payload, allow_nan=False)  # raises on NaN or a non-JSON type
    assert json.loads(text) == payload
    with pytest.raises(ValueError, match="timezone-aware"):
        report_payload(analysis, generated=dt.datetime(2026, 1, 1))


def test_templates_ship_in_the_wheel(tmp_path):
    """Build the wheel and render a report from the installed copy, outside the checkout."""
    import subprocess
    import sys
    import zipfile

    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), "."], check=True, cwd=ROOT)
    (wheel,) = wheel_dir.glob("npanalytics-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"npanalytics/report/templates/report.html.j2", "npanalytics/report/templates/report.md.j2",
            "npanalytics/report/templates/_table.html.j2"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys, npanalytics.report as r; from npanalytics.analysis.result import Analysis; "
        "paths = r.render_report(Analysis(), formats=('html', 'md'), out_dir=sys.argv[1]); "
        "print(r.__file__); print(paths['html'].read_text()[:15])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    module_file, first = out.stdout.split("\n", 1)
    assert module_file.startswith(str(site))
    assert first.startswith("<!DOCTYPE html>")


def test_a_service_port_without_summary_rows_still_gets_its_figure(tmp_path):
    analysis = make_analysis(sections=())
    summary = analysis.skew_summary.copy()
    summary["service_port_name"] = pd.Categorical(["other/svc:http"])  # summarises another port only
    analysis.skew_summary = summary
    paths = render_report(analysis, formats=("html",), out_dir=tmp_path, generated=GENERATED)
    imgs = [a for t, a in parse(paths["html"]).tags if t == "img"]
    assert len(imgs) == 1 and "could not be drawn" not in paths["html"].read_text()
