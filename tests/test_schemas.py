import pandas as pd
import pytest

import npanalytics
from npanalytics import SCHEMAS, SchemaError, validate_frame
from npanalytics.schemas import conform_frame, empty_frame, frame_from_records, schema_table


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_empty_frame_follows_its_own_spec(kind):
    df = empty_frame(kind)
    assert validate_frame(df, kind) is df
    assert list(df.columns) == [c.name for c in SCHEMAS[kind].columns if c.required]


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_spec_is_well_formed(kind):
    spec = SCHEMAS[kind]
    names = spec.names
    assert len(names) == len(set(names)), "duplicate column"
    allowed = {"category", "str", "bool", "boolean", "int64", "Int64", "Int32", "float64", "datetime64[ns, UTC]"}
    for col in spec.columns:
        assert col.dtype in allowed, (col.name, col.dtype)
        assert col.description
        if col.name.endswith("_seconds"):
            assert col.unit == "s"


def test_validate_lists_every_problem():
    df = empty_frame("proxy_endpoints").drop(columns=["chain", "position"])
    df["probability"] = df["probability"].astype("object")
    with pytest.raises(SchemaError, match="proxy_endpoints") as info:
        validate_frame(df, "proxy_endpoints")
    problems = info.value.problems
    assert any("missing column 'chain'" in p for p in problems)
    assert any("missing column 'position'" in p for p in problems)
    assert any("'probability' has dtype object, expected float64" in p for p in problems)
    assert len(problems) == 3


def test_validate_rejects_non_frames_and_unknown_kinds():
    with pytest.raises(SchemaError, match="expected a pandas DataFrame, got list"):
        validate_frame([], "conntrack_flows")
    with pytest.raises(ValueError, match="unknown frame kind 'flows'; known kinds: .*conntrack_flows"):
        validate_frame(pd.DataFrame(), "flows")


def test_optional_columns_are_checked_only_when_present():
    df = empty_frame("conntrack_stats")
    validate_frame(df, "conntrack_stats")
    df["node"] = pd.Series([], dtype="str")  # present but not category
    with pytest.raises(SchemaError, match="'node' has dtype str, expected category"):
        validate_frame(df, "conntrack_stats")


def test_frame_from_records_casts_to_spec_and_keeps_missing_as_na():
    rec = dict(
        proxy_mode="iptables", namespace="default", service="web", port_name="http",
        service_port_name="default/web:http", protocol="tcp", endpoint_ip="198.18.64.2",
        endpoint_port=8080, chain="KUBE-SVC-X", local=False, position=0,
        rule_probability=0.5, probability=0.5,
    )
    df = frame_from_records([rec], "proxy_endpoints")
    validate_frame(df, "proxy_endpoints")
    assert df.loc[0, "endpoint_port"] == 8080
    assert pd.isna(df.loc[0, "packets"]) and pd.isna(df.loc[0, "weight"])
    with pytest.raises(KeyError):  # a flag is never silently False
        frame_from_records([{k: v for k, v in rec.items() if k != "local"}], "proxy_endpoints")


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_conform_restores_dtypes_lost_in_parquet(kind, tmp_path):
    path = tmp_path / "f.parquet"
    empty_frame(kind).to_parquet(path)
    back = pd.read_parquet(path)
    conform_frame(back, kind)


def test_schema_table_renders_every_column():
    text = schema_table("conntrack_flows")
    for col in SCHEMAS["conntrack_flows"].columns:
        assert col.name in text
    assert text.startswith("One row per conntrack entry.")


def test_validate_frame_is_exported():
    assert npanalytics.validate_frame is validate_frame
