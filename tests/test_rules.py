"""read_proxy_rules: one entry point for the three kube-proxy modes."""

import io
from pathlib import Path

import pytest

from npanalytics import ParseError, read_proxy_rules
from npanalytics.collectors.rules import detect_rules_format

DATA = Path(__file__).parent / "data"


def _first(folder, pattern):
    files = sorted((DATA / folder).glob(pattern))
    assert files, f"no sample {folder}/{pattern}"
    return [f for f in files if "broken" not in f.name][0]


@pytest.mark.parametrize(
    ("folder", "pattern", "mode"),
    [("iptables", "*save*.txt", "iptables"), ("nftables", "*ruleset*.txt", "nftables"), ("ipvs", "*.txt", "ipvs")],
)
def test_format_is_detected_and_the_right_reader_runs(folder, pattern, mode):
    path = _first(folder, pattern)
    expected = {"iptables": "iptables", "nftables": "nftables", "ipvs": "ipvs"}[mode]
    assert detect_rules_format(path.read_bytes(), str(path)) == expected
    rules = read_proxy_rules(path)
    assert set(rules.services["proxy_mode"].astype(str)) <= {expected}
    assert rules.report.source == str(path)
    with path.open("rb") as stream:  # a stream keeps its name in the report
        assert read_proxy_rules(stream).report.source == str(path)


def test_unknown_format_and_bad_arguments():
    with pytest.raises(ValueError, match="<string>: cannot tell the rule format"):
        read_proxy_rules("hello world\nnot rules\n")
    with pytest.raises(ValueError, match="format must be 'auto' or one of"):
        read_proxy_rules("x\n", format="iptable")


def test_forced_format_errors_name_the_stream():
    stream = io.BytesIO(b"*nat\n-A KUBE-SERVICES garbage-without-target\n")
    stream.name = "node-a.rules"
    with pytest.raises(ParseError, match=r"^node-a\.rules:"):
        read_proxy_rules(stream, format="nftables")
