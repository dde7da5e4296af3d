"""The npanalytics command line, run the way users run it."""

import json
import subprocess
import sys

import pytest

from npanalytics import load_dataset
from npanalytics.cli import main


def _run(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_inspect_without_arguments_reads_the_bundled_dataset(capsys):
    status, out, err = _run(capsys, "inspect")
    assert status == 0, err
    ds = load_dataset("node-sample")
    assert "dataset 'node-sample'" in out
    assert "default/web:http" in out
    # every programmed endpoint is listed with the flows conntrack attributes to it
    for ep in ds["proxy_endpoints"].itertuples():
        assert str(ep.endpoint_ip) in out


def test_inspect_json_matches_rule_counters_and_conntrack(capsys):
    status, out, _ = _run(capsys, "inspect", "--format", "json")
    assert status == 0
    rows = json.loads(out)
    ds = load_dataset("node-sample")
    flows = ds["conntrack_flows"]
    for row in rows:
        # flows per endpoint equal the conntrack rows whose reply source is that endpoint on the node port
        mine = flows[(flows["backend_ip"] == row["endpoint_ip"]) & (flows["orig_dst_port"] == 30080)]
        assert row["flows"] == len(mine)
        assert row["probability"] == pytest.approx(1 / 3)
    # the nat rule counters count each new connection once: they agree with conntrack here
    assert [r["rule_connections"] for r in rows] == [r["flows"] for r in rows]
    assert sum(r["flow_share"] for r in rows) == pytest.approx(1.0)


def test_inspect_reads_user_dumps(capsys, tmp_path):
    ds = load_dataset("node-sample")
    rules, ct = tmp_path / "rules.txt", tmp_path / "ct.txt"
    rules.write_bytes(ds.raw["raw/iptables-save.txt"])
    ct.write_bytes(ds.raw["raw/conntrack.txt"])
    status, out, err = _run(capsys, "inspect", "--rules", str(rules), "--conntrack", str(ct), "--format", "csv")
    assert status == 0, err
    header, *lines = out.strip().splitlines()
    assert header.startswith("service_port_name,endpoint_ip,endpoint_port,in_rules,probability")
    assert len(lines) == 3


def test_inspect_errors_name_the_problem(capsys, tmp_path):
    status, _, err = _run(capsys, "inspect", "--rules", "x.txt")
    assert status == 2 and "--rules and --conntrack go together" in err
    status, _, err = _run(capsys, "inspect", "--rules", str(tmp_path / "nope"), "--conntrack", str(tmp_path / "nope2"))
    assert status == 2 and "no such file" in err
    bad = tmp_path / "ct.txt"
    bad.write_text("tcp      6 10 ESTABLISHED src=1.2.3.4 garbage\n")
    rules = tmp_path / "rules.txt"
    rules.write_bytes(load_dataset("node-sample").raw["raw/iptables-save.txt"])
    status, _, err = _run(capsys, "inspect", "--rules", str(rules), "--conntrack", str(bad))
    assert status == 2 and f"{bad}:1: expected" in err
    status, _, err = _run(capsys, "inspect", "--dataset", "no-such-dataset")
    assert status == 2 and "no dataset 'no-such-dataset'" in err


def test_inspect_skip_reports_skipped_lines(capsys, tmp_path):
    ds = load_dataset("node-sample")
    text = ds.raw["raw/conntrack.txt"].decode().splitlines(keepends=True)
    text.insert(3, "this is not conntrack output\n")
    text = [line for line in text if not line.startswith("conntrack v")]  # the count no longer matches
    ct, rules = tmp_path / "ct.txt", tmp_path / "rules.txt"
    ct.write_text("".join(text))
    rules.write_bytes(ds.raw["raw/iptables-save.txt"])
    status, out, _ = _run(capsys, "inspect", "--rules", str(rules), "--conntrack", str(ct), "--on-bad-line", "skip")
    assert status == 0
    assert f"{ct}: {len(text)} lines, {len(text) - 1} parsed, 1 skipped" in out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "npanalytics.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("npanalytics ")
