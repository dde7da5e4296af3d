"""``npanalytics report``: datasets, dumps and live sources in, report files and an exit status out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import ROOT, make_analysis, parse

from npanalytics.analysis.result import Analysis
from npanalytics.cli import main
from npanalytics.report import cli as report_cli

NODE_SAMPLE = ROOT / "datasets" / "node-sample"


def _copy_dataset(tmp_path: Path, name: str = "node-sample") -> Path:
    dest = tmp_path / name
    shutil.copytree(ROOT / "datasets" / name, dest)
    return dest


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_default_dataset_through_the_real_entry_point(tmp_path):
    """``python -m npanalytics.cli report`` in a subprocess, as ``make report`` runs it, all formats."""
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "npanalytics.cli", "report", "--out", str(out),
                          "--format", "json,md,html"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    for name in ("report.html", "report.json", "report.md"):
        assert f"wrote {(out / name).resolve()}" in run.stdout
    payload = json.loads((out / "report.json").read_text())
    assert payload["dataset"]["name"] == "node-sample"
    # provenance is the manifest as on disk, sha256 included
    assert payload["provenance"]["frames"]["conntrack_flows"]["sha256"] == \
        _manifest(NODE_SAMPLE)["frames"]["conntrack_flows"]["sha256"]
    counts = payload["summary"]["findings_by_severity"]
    assert ", ".join(f"{counts[s]} {s}" for s in ("critical", "warning", "info")) in run.stdout
    md = (out / "report.md").read_text()
    for port in {r["service_port_name"] for r in payload["skew_summary"]}:
        assert f"### {port}" in md
    html = (out / "report.html").read_text()
    assert "npanalytics report: node-sample" in html and '<img src="data:image/png;base64,' in html


@pytest.mark.parametrize(
    ("fail_on", "severities", "status"),
    [
        (None, ["critical"], 0),
        ("critical", ["critical", "warning"], 1),
        ("critical", ["warning", "info"], 0),
        ("warning", ["warning"], 1),
        ("warning", ["critical"], 1),
        ("warning", ["info"], 0),
        ("warning", [], 0),
    ],
)
def test_exit_status_by_fail_on(tmp_path, monkeypatch, fail_on, severities, status):
    analysis = make_analysis(sections=())
    analysis.findings = analysis.findings[analysis.findings["severity"].astype("str").isin(severities)]
    monkeypatch.setattr(report_cli, "_analyze", lambda dataset: analysis)
    args = ["report", "--out", str(tmp_path), "--format", "json"] + (["--fail-on", fail_on] if fail_on else [])
    assert main(args) == status
    assert (tmp_path / "report.json").is_file()  # written whatever the status


def test_fail_on_with_the_real_analysis(tmp_path):
    """The status follows the findings of the JSON report of a dataset with findings."""
    status = main(["report", "--dataset", str(ROOT / "datasets" / "etp-local-uneven"), "--out", str(tmp_path),
                   "--format", "json", "--fail-on", "warning"])
    findings = json.loads((tmp_path / "report.json").read_text())["findings"]
    assert status == int(any(f["severity"] in ("critical", "warning") for f in findings))


def test_tampered_dataset_is_an_error_before_anything_is_written(tmp_path, capsys):
    ds = _copy_dataset(tmp_path)
    parquet = ds / "frames" / "conntrack_flows.parquet"
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    parquet.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main(["report", "--dataset", str(ds), "--out", str(out), "--format", "html,json,md"]) == 3
    err = capsys.readouterr().err
    assert re.search(r"npanalytics report: error: .*conntrack_flows\.parquet: sha256 mismatch", err), err
    assert not out.exists()


def test_unreadable_parquet_is_an_error_before_anything_is_written(tmp_path, capsys):
    import hashlib

    ds = _copy_dataset(tmp_path)
    parquet = ds / "frames" / "proxy_services.parquet"
    parquet.write_bytes(b"PAR1 this is not parquet PAR1")
    manifest = _manifest(ds)
    manifest["frames"]["proxy_services"]["sha256"] = hashlib.sha256(parquet.read_bytes()).hexdigest()
    _write_manifest(ds, manifest)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous report")
    assert main(["report", "--dataset", str(ds), "--out", str(out)]) == 3
    assert "proxy_services.parquet: not a readable Parquet file" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["report.html"]
    assert (out / "report.html").read_text() == "the previous report"


def test_unknown_dataset_is_a_data_error_with_a_hint(tmp_path, capsys):
    assert main(["report", "--dataset", "node-sampel", "--out", str(tmp_path / "out")]) == 3
    assert "Did you mean 'node-sample'?" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_dataset_lacking_frames_still_gives_a_report(tmp_path):
    ds = _copy_dataset(tmp_path)
    manifest = _manifest(ds)
    del manifest["frames"]["conntrack_flows"]
    _write_manifest(ds, manifest)
    (ds / "frames" / "conntrack_flows.parquet").unlink()
    out = tmp_path / "out"
    assert main(["report", "--dataset", str(ds), "--out", str(out), "--format", "html,json,md"]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert payload["missing"], "without conntrack some topics cannot be computed"
    text = " ".join(" ".join(parse(out / "report.html").text).split())
    md = (out / "report.md").read_text()
    for topic, reason in payload["missing"].items():
        assert reason in text, topic
        assert reason.replace("`", "\\`").replace("<", "\\<").replace(">", "\\>").replace("|", "\\|") in md


def test_dumps_given_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    raw = NODE_SAMPLE / "raw"
    status = main(["report", "--conntrack", f"node-a={raw / 'conntrack.txt'}", "--rules",
                   f"node-a={raw / 'iptables-save.txt'}", "--out", str(out), "--format", "json", "--dated"])
    assert status == 0, capsys.readouterr().err
    (written,) = out.iterdir()
    assert re.fullmatch(r"report-\d{8}T\d{6}Z\.json", written.name)
    payload = json.loads(written.read_text())
    assert payload["dataset"]["name"] == "live"
    assert payload["provenance"]["recording"]["sources"]["conntrack"] == [f"node-a={raw / 'conntrack.txt'}"]
    assert {r["service_port_name"] for r in payload["skew_summary"]} == {"default/web:http"}


def test_a_bad_dump_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "flows.txt"
    bad.write_text("tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [ASSURED] mark=0 use=1\n"
                   "this is not conntrack\n")
    out = tmp_path / "out"
    assert main(["report", "--conntrack", str(bad), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "expected" in err
    assert not out.exists()


def test_a_missing_dump_is_a_data_error(tmp_path, capsys):
    assert main(["report", "--rules", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out")]) == 3
    assert "nope.txt: no such file" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["report", "--dataset", "node-sample", "--conntrack", "x.txt", "--out", out]) == 2
    assert "either --dataset or live sources (--conntrack)" in capsys.readouterr().err
    for args in (["--format", "htm"], ["--fail-on", "info"], []):
        with pytest.raises(SystemExit) as exc:
            main(["report", *args] + (["--out", out] if args else []))
        assert exc.value.code == 2
    assert "did you mean 'html'?" in capsys.readouterr().err
    assert not Path(out).exists()


def test_an_unwritable_out_is_exit_5(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report_cli, "_analyze", lambda dataset: Analysis())
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", "--out", str(blocker / "out")]) == 5
    assert f"cannot write the report into {blocker / 'out'}" in capsys.readouterr().err


def test_exit_status_helper_levels():
    analysis = make_analysis(sections=())
    assert report_cli.exit_status(analysis.findings, None) == report_cli.EXIT_OK
    assert report_cli.exit_status(analysis.findings.iloc[2:], "warning") == report_cli.EXIT_OK
    assert report_cli.exit_status(analysis.findings.iloc[1:], "warning") == report_cli.EXIT_FINDINGS
    assert report_cli.exit_status(analysis.findings.iloc[1:], "critical") == report_cli.EXIT_OK


def test_live_kubernetes_api_and_node_dumps(tmp_path, capsys):
    """--kubeconfig against the lab's read-only API server (real HTTP), with two nodes' dumps."""
    from npanalytics.lab.apiserver import LabApiServer
    from npanalytics.lab.scenario import load_scenario

    raw = ROOT / "datasets" / "etp-local-uneven" / "raw"
    with LabApiServer(load_scenario(raw / "scenario.yaml"), token="t0ken") as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        args = ["report", "--kubeconfig", str(kubeconfig), "--out", str(tmp_path / "out"), "--format", "json"]
        for node in ("node-a", "node-b"):
            args += ["--conntrack", f"{node}={raw / node / 'conntrack.txt'}",
                     "--rules", f"{node}={raw / node / 'iptables-save.txt'}"]
        status = main(args)
        paths = {r.path.split("?")[0] for r in server.requests}
    assert status == 0, capsys.readouterr().err
    assert {"/api/v1/services", "/api/v1/pods", "/api/v1/nodes", "/apis/discovery.k8s.io/v1/endpointslices"} <= paths
    payload = json.loads((tmp_path / "out" / "report.json").read_text())
    assert payload["dataset"]["name"] == "live"
    sources = payload["provenance"]["recording"]["sources"]
    assert sources["kubeconfig"] == str(kubeconfig)
    assert len(sources["conntrack"]) == 2 and len(sources["rules"]) == 2
    assert {"k8s_services", "k8s_pods", "conntrack_flows", "proxy_endpoints"} <= set(payload["provenance"]["frames"])
    assert {r["service_port_name"] for r in payload["skew_summary"]} == {"default/web:http"}


@pytest.mark.parametrize("source", ["prometheus", "kubeconfig"])
def test_an_unreachable_live_source_is_named(tmp_path, capsys, source):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    value = f"http://127.0.0.1:{port}" if source == "prometheus" else str(tmp_path / "no-kubeconfig")
    out = tmp_path / "out"
    assert main(["report", f"--{source}", value, "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert "npanalytics report: error: live source unreachable: " in err
    assert (f"127.0.0.1:{port}" if source == "prometheus" else f"{value}: no such kubeconfig file") in err
    assert not out.exists()
