"""The topic sections share one Service-port attribution of the conntrack flows per
``analyze`` call, and give the same results as when each topic matches the flows itself."""

from __future__ import annotations

import pandas as pd
import pytest

import npanalytics
from npanalytics.analysis import _topics
from npanalytics.analysis.affinity import affinity_section
from npanalytics.analysis.diagnostics import diagnose
from npanalytics.analysis.longlived import long_lived_section

DATASETS = ("etp-cluster-spread", "affinity-few-clients", "endpoint-removed-stale", "node-sample")


@pytest.fixture
def matches(monkeypatch) -> list[int]:
    """Counts the topics' calls of attribute_flows (rows matched per call)."""
    calls: list[int] = []
    real = _topics.attribute_flows

    def counting(flows: pd.DataFrame, services: pd.DataFrame) -> pd.Series:
        calls.append(len(flows))
        return real(flows, services)

    monkeypatch.setattr(_topics, "attribute_flows", counting)
    return calls


def _nodes_with_rules(frames) -> int:
    flows, services = frames["conntrack_flows"], frames["proxy_services"]
    return len(set(flows["node"].astype("str")) & set(services["node"].astype("str")))


def test_analyze_matches_the_flows_once_per_node(matches):
    frames = npanalytics.load_dataset("etp-cluster-spread").frames
    nodes = _nodes_with_rules(frames)
    assert nodes > 1
    npanalytics.analyze(frames, n_boot=10)
    assert len(matches) == nodes
    assert sum(matches) == len(frames["conntrack_flows"])


def test_each_topic_called_alone_still_matches_the_flows_itself(matches):
    frames = npanalytics.load_dataset("etp-cluster-spread").frames
    nodes = _nodes_with_rules(frames)
    for topic in (affinity_section, long_lived_section, diagnose):
        before = len(matches)
        topic(frames)
        assert len(matches) - before == nodes, topic.__name__


@pytest.mark.parametrize("name", DATASETS)
def test_topics_give_the_same_results_with_the_shared_attribution(name, matches):
    frames = npanalytics.load_dataset(name).frames
    shared = _topics.with_attribution(frames)
    assert _topics.ATTRIBUTION in shared["conntrack_flows"].columns
    assert _topics.ATTRIBUTION not in frames["conntrack_flows"].columns  # the caller's frame is not changed
    computed = len(matches)
    for topic in (affinity_section, long_lived_section):
        own, reused = topic(frames), topic(shared)
        for a, b in zip(own, reused):
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b)
            else:
                assert a == b
    pd.testing.assert_frame_equal(diagnose(frames), diagnose(shared))
    # the shared frames were matched once (computed); the topics on them not again
    assert len(matches) == computed + 3 * _nodes_with_rules(frames)


def test_service_flows_reads_the_attribution_column():
    frames = npanalytics.load_dataset("etp-cluster-spread").frames
    flows, services = frames["conntrack_flows"], frames["proxy_services"]
    first = flows.index[0]
    marked = flows.assign(**{_topics.ATTRIBUTION: pd.Series("ns/only:one", index=[first], dtype="object")
                             .reindex(flows.index)})
    out = _topics.service_flows(marked, services)
    assert list(out.index) == [first]
    assert list(out["service_port_name"].astype("str")) == ["ns/only:one"]


def test_with_attribution_leaves_frames_without_flows_or_rules_alone():
    frames = dict(npanalytics.load_dataset("proxy-mode-sweep").frames)
    assert _topics.with_attribution(frames) is frames
    no_rules = {"conntrack_flows": npanalytics.load_dataset("etp-cluster-spread").frames["conntrack_flows"]}
    assert _topics.with_attribution(no_rules) is no_rules
