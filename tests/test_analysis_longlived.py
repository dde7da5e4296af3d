import numpy as np
import pandas as pd
import pytest

import npanalytics
from npanalytics.analysis.longlived import STARVED_FRACTION, long_lived_section
from npanalytics.exceptions import SchemaError
from npanalytics.schemas import frame_from_records, validate_frame

SPN = "default/web:http"


@pytest.fixture(scope="module")
def keepalive():
    return npanalytics.load_dataset("keepalive-scale-up").frames


def _rows(section, source, window):
    s = section.loc[(section["source"] == source) & (section["window"] == window)]
    return s.set_index(s["backend"].astype(str))


def test_keepalive_scale_up_yields_long_lived_connections(keepalive):
    section, findings, missing = long_lived_section(keepalive)
    assert missing is None
    validate_frame(section, "long_lived")
    assert findings["code"].tolist() == ["long-lived-connections"]
    f = findings.iloc[0]
    assert f["severity"] == "warning" and f["service"] == SPN and "starved" in f["what"]
    # the conntrack view: the pod added late (web-4, 198.18.65.11) got 1/8 of the connections but ~1% of the bytes
    ct = _rows(section, "conntrack", "snapshot")
    assert set(ct.index) == {"198.18.64.10", "198.18.64.11", "198.18.65.10", "198.18.65.11"}
    assert ct["connection_share"].sum() == pytest.approx(1.0) and ct["load_share"].sum() == pytest.approx(1.0)
    new = ct.loc["198.18.65.11"]
    assert new["starved"] and new["load_share"] < 0.02 and new["connection_share"] > 0.1
    assert new["expected_share"] == pytest.approx(0.25)
    assert ct.loc[~ct["starved"], "load_share"].min() > 0.05
    # the pods' own counts since the scale-up: web-4 served 180 of 15,555 requests
    since = _rows(section, "ground_truth", "since event 1")
    assert since["load"].sum() == 18000 - 2445
    assert since.loc["web-4", "load"] == 180 and since.loc["web-4", "starved"]
    assert since.loc["web-4", "load_share"] == pytest.approx(180 / 15555)
    assert "ground_truth (since event 1)" in f["evidence"] and "198.18.65.11" in f["evidence"]


@pytest.mark.parametrize("name", ["node-sample", "affinity-few-clients", "etp-local-uneven",
                                  "etp-cluster-spread", "endpoint-removed-stale"])
def test_one_request_per_connection_is_not_long_lived(name):
    section, findings, missing = long_lived_section(npanalytics.load_dataset(name).frames)
    assert missing is None and not section.empty
    assert findings.empty
    ct = section.loc[section["source"] == "conntrack"]
    # every connection carries the same request: load per connection is the same everywhere
    lpc = ct.loc[ct["connections"] > 0, "load_per_connection"]
    assert lpc.max() / lpc.min() < 1.01


def test_removed_pod_is_not_starved():
    section, _, _ = long_lived_section(npanalytics.load_dataset("endpoint-removed-stale").frames)
    since = _rows(section, "ground_truth", "since event 1")
    assert since.loc["web-3", "connections"] == 0 and since.loc["web-3", "expected_share"] == 0.0
    assert not since["starved"].any()
    # the stale backend has no expected share in the final rules
    ct = _rows(section, "conntrack", "snapshot")
    assert ct.loc["198.18.65.10", "expected_share"] == 0.0 and ct.loc["198.18.65.10", "connections"] == 347


def test_without_accounting_the_load_is_nan(keepalive):
    flows = keepalive["conntrack_flows"].copy()
    for col in ("orig_bytes", "reply_bytes", "orig_packets", "reply_packets"):
        flows[col] = pd.array([pd.NA] * len(flows), dtype="Int64")
    section, findings, _ = long_lived_section({"conntrack_flows": flows, "proxy_services": keepalive["proxy_services"]})
    assert section["load"].isna().all() and section["load_share"].isna().all()
    assert not section["starved"].any() and findings.empty
    assert section["connections"].sum() == 24


def _gt(rows):
    return frame_from_records([dict(pod=p, node="n", client="c", requests=r, connections=c) for p, r, c in rows],
                              "ground_truth")


def test_ground_truth_only_edge_cases():
    # one pod, zero traffic: defined shares, no finding
    section, findings, missing = long_lived_section({"ground_truth": _gt([("p", 0, 0)])})
    assert missing is None and findings.empty
    assert section["connection_share"].tolist() == [0.0] and section["load_share"].tolist() == [0.0]
    assert np.isnan(section["load_per_connection"].iloc[0])
    assert section["service_port_name"].isna().all()
    # long connections, one pod with a tenth of the others' load
    section, findings, _ = long_lived_section({"ground_truth": _gt([("a", 1000, 2), ("b", 1000, 2), ("c", 50, 2)])})
    c = section.set_index(section["backend"].astype(str)).loc["c"]
    assert c["starved"] == (50 / 2050 < STARVED_FRACTION / 3)
    assert findings["code"].tolist() == ["long-lived-connections"] and findings["service"].isna().all()


def test_nothing_to_work_with():
    section, findings, missing = long_lived_section({})
    assert section is None and findings.empty
    assert "conntrack -L -o extended" in missing and "ground_truth" in missing
    with pytest.raises(SchemaError, match="ground_truth"):
        long_lived_section({"ground_truth": _gt([("a", 1, 1)]).drop(columns=["requests"])})


def _ct_line(i: int, backend: str, packets: int, nbytes: int, age: int) -> str:
    return (f"tcp      6 86000 ESTABLISHED src=198.18.200.{10 + i} dst=198.18.0.11 sport={40000 + i} dport=30080 "
            f"packets={packets} bytes={nbytes} src={backend} dst=198.18.64.1 sport=8080 dport={40000 + i} "
            f"packets={packets} bytes={nbytes} [ASSURED] mark=0 delta-time={age} use=1")


def test_connection_age_and_bytes_from_timestamped_accounted_entries(keepalive):
    from npanalytics.collectors.conntrack import read_conntrack

    # two connections each: the old pod's are an hour old and heavy, the new pod's a minute old and light
    lines = [_ct_line(0, "198.18.64.10", 5000, 4_000_000, 3600), _ct_line(1, "198.18.64.10", 5000, 4_000_000, 3000),
             _ct_line(2, "198.18.64.11", 200, 16_000, 60), _ct_line(3, "198.18.64.11", 200, 16_000, 40)]
    flows = read_conntrack(("\n".join(lines) + "\n").encode())
    services = keepalive["proxy_services"].iloc[:1].drop(columns=["node"])
    section, findings, _ = long_lived_section({"conntrack_flows": flows, "proxy_services": services})
    ct = section.set_index(section["backend"].astype(str))
    assert ct.loc["198.18.64.10", "age_seconds_mean"] == 3300 and ct.loc["198.18.64.11", "age_seconds_mean"] == 50
    assert ct["connection_share"].tolist() == [0.5, 0.5]
    assert ct.loc["198.18.64.11", "load_share"] == pytest.approx(32_000 / 8_032_000)
    assert ct.loc["198.18.64.10", "packets"] == 20000
    assert ct.loc["198.18.64.11", "starved"] and not ct.loc["198.18.64.10", "starved"]
    assert findings["severity"].tolist() == ["warning"] and "250.0x between backends" in findings["evidence"].iloc[0]
