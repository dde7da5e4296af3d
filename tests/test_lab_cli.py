"""The lab's command line (argparse wiring) and the bundled node sample's consistency."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from npanalytics.exceptions import LabError
from npanalytics.lab import cli
from npanalytics.lab.runner import run_scenario

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "node-sample"
TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="npanalytics")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_register_adds_the_four_commands():
    assert parse("lab", "up", "two-nodes-local").max_seconds == cli.DEFAULT_UP_SECONDS
    args = parse("lab", "run", "x.yaml", "--out", "d")
    assert (args.lab_command, args.scenario, args.out, args.func) == ("run", "x.yaml", "d", cli._cmd_run)
    args = parse("lab", "record", "node-sample", "--node", "node-a", "--out", "d")
    assert (args.node, args.func) == ("node-a", cli._cmd_record)
    assert parse("lab", "down", "--run-id", "abc").run_id == "abc"
    args = parse("lab", "record", "etp-local-uneven", "--out", "d")  # a whole-run dataset
    assert (args.node, args.raw_only, args.overwrite, args.name) == (None, False, False, None)
    with pytest.raises(SystemExit):
        parse("lab", "record", "node-sample", "--node", "node-a")  # --out is required


def test_record_refuses_to_replace_a_dataset(capsys, tmp_path):
    assert cli.main(["record", "etp-local-uneven", "--out", str(tmp_path)]) == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err


def test_up_bounds_its_lifetime(capsys):
    assert cli.main(["up", "two-nodes-local", "--max-seconds", "0"]) == 2
    assert "--max-seconds must be in (0, 86400]" in capsys.readouterr().err


def test_record_rejects_unknown_node(capsys, tmp_path):
    assert cli.main(["record", "node-sample", "--node", "node-z", "--out", str(tmp_path)]) == 2
    assert "--node must be one of node-a, node-b; got 'node-z'" in capsys.readouterr().err


def test_run_refuses_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        run_scenario("two-nodes-local")


def test_node_sample_is_consistent():
    # `lab record` writes recording.json; the dataset builder folds it into manifest.json
    if (SAMPLE / "recording.json").exists():
        manifest = json.loads((SAMPLE / "recording.json").read_text())
    else:
        manifest = json.loads((SAMPLE / "manifest.json").read_text())["recording"]
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((SAMPLE / name).read_bytes()).hexdigest() == digest
    assert sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) < 1_000_000
    truth = json.loads((SAMPLE / "raw" / "ground_truth.json").read_text())
    requests = {pod: sum(c["requests"].values()) for pod, c in truth.items()}
    assert sum(requests.values()) == manifest["traffic"]["requests_sent"] == 400
    assert requests == manifest["traffic"]["requests_ok_per_pod"]
    # node-a's conntrack holds exactly the connections the load balancer sent to node-a
    node_ip = next(n["ip"] for n in manifest["topology"]["nodes"] if n["name"] == manifest["node"])
    text = (SAMPLE / "raw" / "conntrack.txt").read_text()
    lines = text.splitlines()
    assert re.fullmatch(r"conntrack v1\.4\.\d+ \(conntrack-tools\): (\d+) flow entries have been shown\.", lines[-1])
    assert int(lines[-1].split(": ")[1].split()[0]) == len(lines) - 1
    nodeport = [TUPLE.findall(line) for line in lines if f"dst={node_ip} " in line and "dport=30080 " in line]
    assert len(nodeport) == manifest["traffic"]["requests_ok_per_target"][f"{node_ip}:30080"] == 300
    assert all("packets=" in line for line in lines[:-1])  # accounting was on
    # and the iptables counters agree: 300 first packets went through KUBE-NODEPORTS
    saved = (SAMPLE / "raw" / "iptables-save.txt").read_text()
    assert re.search(r"^\[300:\d+\] -A KUBE-NODEPORTS .*--dport 30080 ", saved, re.M)


def test_serve_metrics_option_on_up_run_record():
    assert parse("lab", "up", "two-nodes-local", "--serve-metrics", "0").serve_metrics == 0
    assert parse("lab", "run", "x.yaml", "--serve-metrics", "9100").serve_metrics == 9100
    assert parse("lab", "record", "x", "--out", "d", "--serve-metrics", "9101").serve_metrics == 9101
    assert parse("lab", "run", "x.yaml").serve_metrics is None
    with pytest.raises(SystemExit):
        parse("lab", "run", "x.yaml", "--serve-metrics", "http")


@pytest.mark.parametrize("command", [["up", "two-nodes-local"], ["run", "two-nodes-local"],
                                     ["record", "two-nodes-local", "--out", "/nonexistent/npa-x"]])
def test_serve_metrics_port_is_checked_first(capsys, command):
    assert cli.main([*command, "--serve-metrics", "65536"]) == 2
    assert "--serve-metrics must be a port in [0, 65535] (0: a free one); got 65536" in capsys.readouterr().err


def test_record_help_documents_the_usage(capsys):
    from npanalytics.lab.scenario import bundled_scenarios

    with pytest.raises(SystemExit) as exc:
        cli.main(["record", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("lab record etp-local-uneven --out datasets/etp-local-uneven --overwrite",
                   "load_dataset", "promtool tsdb create-blocks-from openmetrics", "--serve-metrics PORT",
                   "manifest.json", "--node NODE"):
        assert needle in text, needle
    assert all(name in cli.__doc__ for name in bundled_scenarios())


TINY_UP = """
name: cli-served
nodes:
  - {name: node-a, proxy_mode: iptables-legacy}
  - {name: node-b, proxy_mode: iptables-legacy}
pods:
  - {name: web-1, node: node-a, labels: {app: web}}
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30084}]
clients: {count: 1, addressing: distinct}
traffic: {node_weights: {node-a: 1}, requests: 5, max_seconds: 5}
"""


def test_up_serves_metrics_until_it_is_down(need_root, capsys, tmp_path):
    import socket
    import threading
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "cli-served.yaml"
    spec.write_text(TINY_UP)
    scraped: list[str] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set() and not scraped:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                    scraped.append(reply.read().decode())
            except OSError:
                stop.wait(0.1)  # not up yet

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        assert cli.main(["up", str(spec), "--max-seconds", "3", "--serve-metrics", str(port)]) == 0
    finally:
        stop.set()
        thread.join(timeout=10)
    out, err = capsys.readouterr()
    assert f"serving the lab's metrics at http://127.0.0.1:{port}/metrics" in err
    assert re.search(r"metrics scraped [1-9]\d* time\(s\)", err)
    assert "lab is down" in out
    assert scraped and 'kubeproxy_sync_proxy_rules_duration_seconds_count{instance="node-b",ip_family="IPv4"} 1' in scraped[0]
    with pytest.raises(OSError):  # the server went down with the lab
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
