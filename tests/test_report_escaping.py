"""Label values from a cluster are untrusted: they come out escaped in HTML, exact in JSON, inert in Markdown."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from test_report import GENERATED, ROOT, make_analysis, parse

from npanalytics.report import render_report

EVIL = """<script>alert(1)</script>"'&amp; | `x` <img src=x onerror=alert(2)>"""
ALLOWED_ATTRIBUTES = {"id", "class", "src", "alt", "href", "lang", "charset", "http-equiv", "content", "name"}


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    manifest = json.loads((ROOT / "datasets" / "node-sample" / "manifest.json").read_text())
    manifest["description"] = f"described as {EVIL}"
    manifest["recording"][f"key {EVIL}"] = f"value {EVIL}"
    manifest["frames"]["conntrack_flows"]["sha256"] = EVIL
    analysis = make_analysis(service=f"default/{EVIL}:http", node=f"node {EVIL}", what=f"found {EVIL}",
                             manifest=manifest)
    findings = analysis.findings.copy()
    findings["advice"] = f"advice {EVIL}"
    findings["evidence"] = f"evidence {EVIL}"
    analysis.findings = findings
    affinity = analysis.sections["affinity"].copy()
    affinity["client"] = pd.Categorical([f"client {EVIL}"])
    analysis.sections["affinity"] = affinity
    analysis.missing[f"topic {EVIL}"] = f"missing {EVIL}"
    out = tmp_path_factory.mktemp("evil")
    paths = render_report(analysis, formats=("html", "json", "md"), out_dir=out, generated=GENERATED)
    return analysis, paths


def test_html_escapes_every_label(evil):
    _, paths = evil
    source = paths["html"].read_text()
    assert "<script" not in source
    assert "<img src=x" not in source
    assert source.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert "&amp;amp;" in source  # a literal '&amp;' is shown as such, not as '&'
    doc = parse(paths["html"])
    for tag, attrs in doc.tags:
        assert tag != "script"
        assert set(attrs) <= ALLOWED_ATTRIBUTES, (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
    text = "".join(doc.text)
    for shown in (f"found {EVIL}", f"advice {EVIL}", f"evidence {EVIL}", f"node {EVIL}", f"client {EVIL}",
                  f"described as {EVIL}", f"value {EVIL}", f"key {EVIL}", f"missing {EVIL}", f"default/{EVIL}:http"):
        assert shown in text, shown
    # the figure of the evil Service port is drawn, its title (alt text) intact in one attribute
    alts = [attrs["alt"] for tag, attrs in doc.tags if tag == "img"]
    assert any(f"default/{EVIL}:http" in alt for alt in alts)


def test_json_keeps_labels_exact(evil):
    analysis, paths = evil
    payload = json.loads(paths["json"].read_text())
    assert payload["findings"][0]["service"] == f"default/{EVIL}:http"
    assert payload["findings"][1]["node"] == f"node {EVIL}"
    assert payload["findings"][0]["what"] == f"found {EVIL}"
    assert payload["sections"]["affinity"][0]["client"] == f"client {EVIL}"
    assert payload["provenance"]["recording"][f"key {EVIL}"] == f"value {EVIL}"
    assert payload["missing"][f"topic {EVIL}"] == f"missing {EVIL}"


def test_markdown_escapes_pipes_backticks_and_tags(evil):
    _, paths = evil
    md = paths["md"].read_text()
    assert re.search(r"(?<!\\)[<>`]", md) is None  # no tag, no code span can be opened
    assert r"\<script\>alert(1)\</script\>" in md
    findings = [line for line in md.splitlines() if line.startswith("| critical |")]
    assert len(findings) == 1
    assert len(re.findall(r"(?<!\\)\|", findings[0])) == 8  # 7 cells, none split by a label's '|'
    expected = "found " + r"\<script\>alert(1)\</script\>" + "\"'&amp; " + r"\| \`x\` \<img src=x onerror=alert(2)\>"
    assert expected in findings[0]
