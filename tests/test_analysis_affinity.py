import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npanalytics
from npanalytics.analysis.affinity import affinity_cv, affinity_section, effective_clients, no_affinity_cv
from npanalytics.analysis.result import FINDING_CODES
from npanalytics.exceptions import SchemaError
from npanalytics.schemas import empty_frame, validate_frame

SPN = "default/web:http"


@pytest.fixture(scope="module")
def few_clients():
    return npanalytics.load_dataset("affinity-few-clients").frames


def test_few_clients_yield_affinity_concentration(few_clients):
    section, findings, missing = affinity_section(few_clients)
    assert missing is None
    validate_frame(section, "affinity")
    validate_frame(findings, "findings")
    row = findings.loc[findings["code"] == "affinity-concentration"]
    assert len(row) == 1 and row["severity"].iloc[0] == "warning" and row["service"].iloc[0] == SPN
    # 3 client addresses as the nodes see them: two own addresses and the NAT's, which sends 3/4
    assert sorted(section["client"].astype(str)) == ["198.18.0.200", "198.18.200.10", "198.18.200.11"]
    nat = section.set_index(section["client"].astype(str)).loc["198.18.0.200"]
    assert nat["flows"] == 1200 and nat["client_share"] == pytest.approx(0.75)
    # each node pins each client to one pod, but the two nodes pick different pods
    assert (section["pinned_share"] == 1.0).all()
    assert section["node_local_affinity"].all()
    assert (section["max_backends_per_node"] == 1).all() and (section["backends"] == 2).all()
    # exp(entropy) of (0.75, 0.125, 0.125)
    p = np.array([0.75, 0.125, 0.125])
    assert nat["effective_clients"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert nat["service_backends"] == 4
    assert nat["p_value"] < 1e-10
    assert nat["backend_cv"] > 5 * nat["no_affinity_cv"]
    evidence = row["evidence"].iloc[0]
    assert "2.1 effective clients" in evidence and "198.18.0.200 alone sends 75.0%" in evidence
    assert "different pods through different nodes" in evidence
    assert set(findings["code"]) <= set(FINDING_CODES)


@pytest.mark.parametrize("name", ["node-sample", "etp-cluster-spread", "etp-local-uneven", "keepalive-scale-up"])
def test_no_affinity_no_finding(name):
    section, findings, missing = affinity_section(npanalytics.load_dataset(name).frames)
    assert missing is None and len(section) > 0
    assert findings.empty
    assert (section["session_affinity"].astype(str) == "None").all()


def test_affinity_section_without_flows_says_what_to_collect(few_clients):
    section, findings, missing = affinity_section({"proxy_services": few_clients["proxy_services"]})
    assert section is None and findings.empty and list(findings.columns) == list(empty_frame("findings").columns)
    assert "conntrack -L -o extended" in missing
    section, _, missing = affinity_section({})
    assert section is None and "kube-proxy's rules" in missing


def test_affinity_section_flows_to_no_service(few_clients):
    flows = few_clients["conntrack_flows"]
    services = few_clients["proxy_services"].iloc[:0]
    section, findings, missing = affinity_section({"conntrack_flows": flows, "proxy_services": services})
    assert section is None and "collect kube-proxy's rules" in missing
    other = few_clients["proxy_services"].assign(node_port=pd.array([31999, 31999], dtype="Int32"),
                                                 cluster_ip=pd.Categorical(["198.19.9.9"] * 2))
    section, _, missing = affinity_section({"conntrack_flows": flows, "proxy_services": other})
    assert section is None and "no conntrack flow reaches a Service frontend" in missing


def test_affinity_section_checks_kinds(few_clients):
    with pytest.raises(SchemaError, match="conntrack_flows"):
        affinity_section({"conntrack_flows": few_clients["conntrack_flows"].drop(columns=["orig_src_ip"]),
                          "proxy_services": few_clients["proxy_services"]})


def test_affinity_section_one_node_without_endpoint_rules(few_clients):
    # without proxy_endpoints there is no model: no p-value, backends as observed
    frames = {k: few_clients[k] for k in ("conntrack_flows", "proxy_services")}
    section, findings, _ = affinity_section(frames)
    assert section["p_value"].isna().all()
    assert (section["service_backends"] == 4).all()
    assert findings["code"].tolist() == ["affinity-concentration"]  # the CV rule still sees the skew


def test_effective_clients_edges():
    assert effective_clients(np.array([])) == 0.0
    assert effective_clients(np.array([0, 0])) == 0.0
    assert effective_clients(np.array([7])) == pytest.approx(1.0)
    assert effective_clients(np.array([5, 5, 5, 5])) == pytest.approx(4.0)
    assert np.isnan(no_affinity_cv(0, 3)) and no_affinity_cv(10, 1) == 0.0
    assert np.isnan(affinity_cv(np.array([]), 3)) and affinity_cv(np.array([4, 1]), 1) == 0.0


counts = st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(min_value=1, max_value=50))
def test_effective_clients_bounds_and_scale(x, scale):
    x = np.array(x, dtype=float)
    e = effective_clients(x)
    assert 1.0 - 1e-9 <= e <= len(x) + 1e-9
    assert effective_clients(x * scale) == pytest.approx(e, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(counts, st.integers(min_value=1, max_value=20))
def test_affinity_never_expects_less_skew_than_per_flow_choice(x, k):
    x = np.array(x, dtype=float)
    with_affinity, without = affinity_cv(x, k), no_affinity_cv(x.sum(), k)
    assert with_affinity >= without - 1e-12
    if (x == 1).all():  # one flow per client: affinity changes nothing
        assert with_affinity == pytest.approx(without)


def test_affinity_cv_matches_simulation():
    rng = np.random.default_rng(1)
    x = np.array([600, 200, 100, 50, 50])
    k = 4
    cvs = []
    for _ in range(4000):
        loads = np.bincount(rng.integers(0, k, size=len(x)), weights=x, minlength=k)
        cvs.append(loads.std() / loads.mean())
    # the formula is the root of E[CV^2] (the backends' mean load is always N/k)
    assert np.mean(np.square(cvs)) == pytest.approx(affinity_cv(x, k) ** 2, rel=0.08)


def test_no_affinity_cv_matches_simulation():
    rng = np.random.default_rng(2)
    n, k = 500, 5
    cvs = [(lambda c: c.std() / c.mean())(rng.multinomial(n, [1 / k] * k)) for _ in range(4000)]
    assert np.mean(np.square(cvs)) == pytest.approx(no_affinity_cv(n, k) ** 2, rel=0.08)


def test_one_backend_cannot_concentrate(few_clients):
    flows = few_clients["conntrack_flows"]
    eps = few_clients["proxy_endpoints"]
    one = eps.loc[eps["endpoint_ip"] == "198.18.64.11"]
    mine = flows.loc[flows["backend_ip"].astype(str) == "198.18.64.11"]
    section, findings, _ = affinity_section({"conntrack_flows": mine, "proxy_services": few_clients["proxy_services"],
                                             "proxy_endpoints": one})
    assert findings.empty
    assert (section["service_backends"] == 1).all() and (section["backend_cv"] == 0).all()
    assert (section["no_affinity_cv"] == 0).all() and (section["affinity_cv"] == 0).all()
    assert section["p_value"].isna().all()  # no G-test with a single backend
