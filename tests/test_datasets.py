import json
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from npanalytics import DatasetError, load_dataset
from npanalytics.datasets import Dataset, dataset_search_path, list_datasets
from npanalytics.schemas import frame_from_records


def _endpoints():
    rows = []
    for i, ip in enumerate(["198.18.64.2", "198.18.64.3", "198.18.65.2"]):
        rows.append(
            dict(
                proxy_mode="iptables", namespace="default", service="web", port_name="http",
                service_port_name="default/web:http", protocol="tcp", endpoint_ip=ip,
                endpoint_port=8080, chain="KUBE-SVC-X", local=False, position=i,
                rule_probability=1 / (3 - i), probability=1 / 3, packets=10 + i,
            )
        )
    return frame_from_records(rows, "proxy_endpoints")


@pytest.fixture
def dataset():
    return Dataset(
        name="tiny",
        description="three endpoints",
        frames={"proxy_endpoints": _endpoints()},
        kinds={"proxy_endpoints": "proxy_endpoints"},
        recording={"commands": ["iptables-save -c"], "kernel": "test"},
        raw={"raw/note.txt": b"raw input\n"},
    )


def test_save_and_load_round_trip(dataset, tmp_path):
    path = dataset.save(tmp_path / "tiny")
    back = load_dataset(path)
    pd.testing.assert_frame_equal(back["proxy_endpoints"], dataset["proxy_endpoints"], check_categorical=False)
    assert back.raw == {"raw/note.txt": b"raw input\n"}
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["frames"]["proxy_endpoints"]["rows"] == 3
    assert manifest["frames"]["proxy_endpoints"]["kind"] == "proxy_endpoints"
    assert len(manifest["raw"]["raw/note.txt"]) == 64
    assert back.recording["kernel"] == "test"


def test_lookup_by_kind_and_errors(dataset):
    assert dataset["proxy_endpoints"] is dataset.frames["proxy_endpoints"]
    with pytest.raises(KeyError, match="no frame or kind 'conntrack_flows'"):
        dataset["conntrack_flows"]
    with pytest.raises(ValueError, match="unknown kind 'flows'"):
        Dataset(name="x", description="", frames={"a": _endpoints()}, kinds={"a": "flows"})
    with pytest.raises(ValueError, match="dataset name must match"):
        Dataset(name="Bad Name", description="", frames={}, kinds={})


def test_tampered_file_names_the_file_and_both_digests(dataset, tmp_path):
    path = dataset.save(tmp_path / "tiny")
    (path / "raw" / "note.txt").write_bytes(b"changed\n")
    with pytest.raises(DatasetError, match=r"note\.txt: sha256 mismatch: manifest says [0-9a-f]{64}, file has [0-9a-f]{64}"):
        load_dataset(path)
    assert load_dataset(path, verify=False).raw["raw/note.txt"] == b"changed\n"


def test_missing_and_corrupt_frames_are_clear_errors(dataset, tmp_path):
    path = dataset.save(tmp_path / "tiny")
    frame = path / "frames" / "proxy_endpoints.parquet"
    frame.write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        load_dataset(path, verify=False)
    frame.unlink()
    with pytest.raises(DatasetError, match="frames/proxy_endpoints.parquet is listed in the manifest but missing"):
        load_dataset(path)


def test_save_is_atomic_and_refuses_to_overwrite(dataset, tmp_path, monkeypatch):
    target = tmp_path / "tiny"
    dataset.save(target)
    with pytest.raises(DatasetError, match="exists; pass overwrite=True"):
        dataset.save(target)

    # A failure half-way leaves the old dataset intact and no temporary folder behind.
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        dataset.save(target, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    assert len(load_dataset(target)["proxy_endpoints"]) == 3

    dataset.frames["proxy_endpoints"] = _endpoints().iloc[:2]
    dataset.save(target, overwrite=True)
    assert len(load_dataset(target)["proxy_endpoints"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_unknown_name_suggests_a_known_one(dataset, tmp_path, monkeypatch):
    dataset.save(tmp_path / "tiny")
    monkeypatch.setenv("NPANALYTICS_DATASETS", str(tmp_path))
    assert "tiny" in list_datasets()
    assert load_dataset("tiny").name == "tiny"
    with pytest.raises(DatasetError, match="no dataset 'tinny'.*Did you mean 'tiny'"):
        load_dataset("tinny")
    assert dataset_search_path()[0] == tmp_path


def test_bundled_datasets_are_found_after_a_wheel_install(tmp_path):
    """Build the wheel and import the package from it, outside the checkout."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), "."],
        check=True, cwd=dataset_search_path()[-2].parent,
    )
    (wheel,) = wheel_dir.glob("npanalytics-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    name = list_datasets()[0]
    code = (
        "import npanalytics, sys; from npanalytics import load_dataset; "
        f"ds = load_dataset({name!r}); print(npanalytics.__file__); print(ds.path)"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    module_file, ds_path = out.stdout.split()
    assert module_file.startswith(str(site))
    assert ds_path.startswith(str(site / "npanalytics" / "_bundled_datasets"))


def test_frames_of_one_kind_from_different_readers_concatenate():
    """An all-missing label column (float categories) joins one with str categories."""
    from npanalytics.datasets import _concat

    a = _endpoints()
    b = _endpoints()
    a["endpoint_chain"] = pd.Categorical([None] * len(a))
    b["endpoint_chain"] = pd.Series(["KUBE-SEP-A", "KUBE-SEP-B", "KUBE-SEP-C"], dtype="str").astype("category")
    out = _concat([a, b])
    assert isinstance(out["endpoint_chain"].dtype, pd.CategoricalDtype)
    assert out["endpoint_chain"].isna().sum() == len(a)
    assert out["endpoint_chain"].iloc[len(a):].tolist() == ["KUBE-SEP-A", "KUBE-SEP-B", "KUBE-SEP-C"]
    assert isinstance(out["endpoint_ip"].dtype, pd.CategoricalDtype)
    assert len(out) == len(a) + len(b)
