"""Datasets: recorded frames with their raw inputs and provenance.

A dataset is a folder ``<name>/`` holding

- ``manifest.json``: name, description, how it was recorded (commands, tool
  versions, kernel, time, topology facts), each frame's kind, row count, file and
  sha256, how each frame is derived from the raw files, and the sha256 of every
  raw file;
- ``frames/<frame>.parquet``: the frames, each following its spec in
  :mod:`npanalytics.schemas`;
- ``raw/``: the raw inputs (dumps, responses) the frames were parsed from, so
  that every frame can be derived again by re-parsing (:meth:`Dataset.rederive`).

Bundled datasets are found by name: in ``$NPANALYTICS_DATASETS`` (a
``os.pathsep``-separated list of folders), then in the checkout's ``datasets/``
folder, then inside the installed package.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .exceptions import DatasetError
from .schemas import SCHEMAS, conform_frame, validate_frame

__all__ = ["Dataset", "load_dataset", "list_datasets", "dataset_search_path", "DEFAULT_DATASET"]

DEFAULT_DATASET = "node-sample"
"""The dataset ``npanalytics inspect`` and ``make report`` use when given none."""

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_search_path() -> list[Path]:
    """Folders searched for datasets by name, in order."""
    paths = [Path(p) for p in os.environ.get("NPANALYTICS_DATASETS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    paths.append(here.parent / "datasets")  # a checkout or an editable install
    paths.append(here / "_bundled_datasets")  # a wheel (see pyproject.toml force-include)
    return paths


def list_datasets() -> list[str]:
    """Names of the datasets found on :func:`dataset_search_path`."""
    names = set()
    for folder in dataset_search_path():
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())
    return sorted(names)


def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path
    name = str(name_or_path)
    if _NAME_RE.match(name):
        for folder in dataset_search_path():
            if (folder / name / MANIFEST).is_file():
                return folder / name
    known = list_datasets()
    hint = difflib.get_close_matches(name, known, n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise DatasetError(
        f"no dataset {name!r}: not a folder with a {MANIFEST}, and not a dataset name "
        f"found in {', '.join(map(str, dataset_search_path()))}. "
        f"Known datasets: {', '.join(known) or 'none'}.{did_you_mean}"
    )


# How each frame is derived from raw files: reader name -> function(path) -> {kind: frame}.
# Readers are imported lazily so that loading a dataset does not import every collector.
def _derive_conntrack(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.conntrack import read_conntrack

    return {"conntrack_flows": read_conntrack(path, **options)}


def _derive_conntrack_stats(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.conntrack import read_conntrack_stats

    return {"conntrack_stats": read_conntrack_stats(path, **options)}


def _rules(reader: Callable[..., Any]) -> Callable[[Path, Mapping[str, Any]], dict[str, pd.DataFrame]]:
    def derive(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
        rules = reader()(path, **options)
        return {"proxy_services": rules.services, "proxy_endpoints": rules.endpoints}

    return derive


def _iptables_reader() -> Callable[..., Any]:
    from .collectors.iptables import read_iptables_save

    return read_iptables_save


def _nft_reader() -> Callable[..., Any]:
    from .collectors.nftables import read_nft_ruleset

    return read_nft_ruleset


def _ipvs_reader() -> Callable[..., Any]:
    from .collectors.ipvs import read_ipvsadm

    return read_ipvsadm


def _derive_k8s_objects(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.k8s import read_k8s_objects

    return read_k8s_objects(path, **options).frames()


def _derive_endpoint_watch_log(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.k8s import read_endpoint_watch_log

    return {"endpoint_churn": read_endpoint_watch_log(path, **options)}


def _lab(name: str, kind: str | None = None) -> Callable[[Path, Mapping[str, Any]], dict[str, pd.DataFrame]]:
    """A reader of the lab's own raw outputs (ground truth, rule-load logs, sweep logs)."""

    def derive(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
        import importlib

        module, _, func = name.rpartition(".")
        result = getattr(importlib.import_module(f"npanalytics.lab.{module}"), func)(path, **options)
        return {kind: result} if kind else result

    return derive


def _derive_prometheus(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.prometheus import read_prometheus_response

    return {"prom_samples": read_prometheus_response(path, **options)}


def _kube_state_outputs(samples: pd.DataFrame, at: Any = None) -> tuple[dict[str, pd.DataFrame], Any]:
    """The KSM catalog's frames by kind, and the ``KubeState`` (for its variant and notes).

    Parameters
    ----------
    samples : pandas.DataFrame
        Kind ``prom_samples`` holding kube-state-metrics series.
    at : datetime or str, optional
        The state at this time (see :func:`~npanalytics.collectors.kube_state.kube_state_frames`).
    """
    from .collectors.kube_state import kube_state_frames

    state = kube_state_frames(samples, at=at)
    frames = {"k8s_services": state.services, "k8s_endpoints": state.endpoints,
              "k8s_pods": state.pods, "k8s_nodes": state.nodes}
    return frames, state


def _kube_proxy_outputs(samples: pd.DataFrame, at: Any = None) -> tuple[dict[str, pd.DataFrame], Any]:
    """The kube-proxy catalog's frames by kind, and the ``KubeProxy`` (for its notes).

    The nodes that name ``instance`` values come from the kube-state-metrics series in
    ``samples`` at ``at`` (none: the ``instance`` values stay as they are).
    """
    from .collectors.kube_proxy import kube_proxy_frames

    nodes = _kube_state_outputs(samples, at)[0]["k8s_nodes"]
    proxy = kube_proxy_frames(samples, nodes=nodes if len(nodes) else None)
    frames = {"proxy_latency": proxy.latency, "proxy_rule_counts": proxy.rule_counts,
              "proxy_status": proxy.status}
    return frames, proxy


def _derive_kube_state(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.prometheus import read_prometheus_response

    return _kube_state_outputs(read_prometheus_response(path), **options)[0]


def _derive_kube_proxy(path: Path, options: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    from .collectors.prometheus import read_prometheus_response

    return _kube_proxy_outputs(read_prometheus_response(path), **options)[0]


DERIVERS: dict[str, Callable[[Path, Mapping[str, Any]], dict[str, pd.DataFrame]]] = {
    "read_conntrack": _derive_conntrack,
    "read_conntrack_stats": _derive_conntrack_stats,
    "read_iptables_save": _rules(_iptables_reader),
    "read_nft_ruleset": _rules(_nft_reader),
    "read_ipvsadm": _rules(_ipvs_reader),
    "read_k8s_objects": _derive_k8s_objects,
    "read_endpoint_watch_log": _derive_endpoint_watch_log,
    "read_ground_truth": _lab("record.read_ground_truth", "ground_truth"),
    "read_rule_loads": _lab("record.read_rule_loads", "rule_loads"),
    "read_sweep_log": _lab("sweep.read_sweep_log"),
    "read_prometheus_response": _derive_prometheus,
    # the catalogs of a Prometheus recording (npanalytics collect): one saved response file each
    "kube_state_from_prometheus": _derive_kube_state,
    "kube_proxy_from_prometheus": _derive_kube_proxy,
}


@dataclasses.dataclass
class Derivation:
    """How one frame is made from one raw file.

    Attributes
    ----------
    reader : str
        A key of :data:`DERIVERS` (the ``read_*`` function).
    raw : str
        The raw file, relative to the dataset folder (``raw/...``).
    kind : str
        Which of the reader's outputs this frame is.
    options : dict
        Keyword arguments of the reader.
    columns : dict
        Constant columns added after parsing, e.g. ``{"node": "node-a"}``.
    """

    reader: str
    raw: str
    kind: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    columns: dict[str, str] = dataclasses.field(default_factory=dict)


def _add_columns(df: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    df = df.copy()
    for name, value in columns.items():
        df[name] = pd.Categorical([value] * len(df))
    return df


@dataclasses.dataclass
class Dataset:
    """Frames of one recording, with the raw inputs and the provenance.

    Attributes
    ----------
    name : str
        Dataset name (the folder name).
    description : str
        What it holds and why it exists.
    frames : dict of str to pandas.DataFrame
        Frames by frame name; a frame's kind is in ``kinds``.
    kinds : dict of str to str
        Frame name -> frame kind (a key of :data:`npanalytics.schemas.SCHEMAS`).
    recording : dict
        How it was recorded: commands, tool versions, kernel, time, topology facts.
    raw : dict of str to bytes
        Raw inputs by path relative to the dataset folder (``raw/...``).
    derivations : dict of str to list of Derivation
        Frame name -> how it is derived from the raw files (the parts are concatenated).
    path : Path or None
        Where it was loaded from.
    """

    name: str
    description: str
    frames: dict[str, pd.DataFrame]
    kinds: dict[str, str]
    recording: dict[str, Any] = dataclasses.field(default_factory=dict)
    raw: dict[str, bytes] = dataclasses.field(default_factory=dict)
    derivations: dict[str, list[Derivation]] = dataclasses.field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"dataset name must match {_NAME_RE.pattern}, got {self.name!r}")
        for frame, kind in self.kinds.items():
            if kind not in SCHEMAS:
                raise ValueError(f"frame {frame!r}: unknown kind {kind!r}")
            if frame not in self.frames:
                raise ValueError(f"kinds names frame {frame!r}, which is not in frames")
        missing = set(self.frames) - set(self.kinds)
        if missing:
            raise ValueError(f"frames without a kind: {sorted(missing)}")

    def __getitem__(self, key: str) -> pd.DataFrame:
        """The frame called ``key``, or the only frame of kind ``key``."""
        if key in self.frames:
            return self.frames[key]
        of_kind = [f for f, k in self.kinds.items() if k == key]
        if len(of_kind) == 1:
            return self.frames[of_kind[0]]
        if of_kind:
            raise KeyError(f"dataset {self.name!r} has several frames of kind {key!r}: {of_kind}")
        raise KeyError(
            f"dataset {self.name!r} has no frame or kind {key!r}; it has {sorted(self.frames)}"
        )

    def __contains__(self, key: object) -> bool:
        return key in self.frames or key in self.kinds.values()

    def __repr__(self) -> str:
        frames = ", ".join(f"{f} ({self.kinds[f]}, {len(df)} rows)" for f, df in self.frames.items())
        return f"<Dataset {self.name!r}: {frames}>"

    @classmethod
    def from_raw(
        cls,
        name: str,
        description: str,
        raw: Mapping[str, bytes],
        derivations: Mapping[str, list[Derivation]],
        recording: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset by parsing raw files with the project's own readers.

        Parameters
        ----------
        name, description : str
            As in the manifest.
        raw : mapping of str to bytes
            Raw files by relative path (``raw/...``).
        derivations : mapping of str to list of Derivation
            For each frame, the parts it is made of (concatenated in order).
        recording : mapping, optional
            Provenance: commands, tool versions, kernel, time, topology.
        """
        with tempfile.TemporaryDirectory(prefix="npa-raw-") as tmp:
            for rel, content in raw.items():
                dest = Path(tmp) / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
            frames, kinds = {}, {}
            for frame, parts in derivations.items():
                frames[frame], kinds[frame] = _derive(Path(tmp), frame, parts)
        return cls(
            name=name,
            description=description,
            frames=frames,
            kinds=kinds,
            recording=dict(recording or {}),
            raw=dict(raw),
            derivations={k: list(v) for k, v in derivations.items()},
        )

    def rederive(self, frame: str) -> pd.DataFrame:
        """Parse the raw files of ``frame`` again and return the result (for checks)."""
        if frame not in self.derivations:
            raise DatasetError(f"dataset {self.name!r}: frame {frame!r} has no derivation")
        with tempfile.TemporaryDirectory(prefix="npa-raw-") as tmp:
            for part in self.derivations[frame]:
                dest = Path(tmp) / part.raw
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.raw[part.raw])
            df, _ = _derive(Path(tmp), frame, self.derivations[frame])
        return df

    def manifest(self, frame_digests: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The manifest as a dict (``frame_digests`` are the Parquet files' sha256)."""
        digests = frame_digests or {}
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "recording": self.recording,
            "frames": {
                f: {
                    "kind": self.kinds[f],
                    "file": f"frames/{f}.parquet",
                    "rows": int(len(df)),
                    "sha256": digests.get(f),
                    "derived_from": [dataclasses.asdict(p) for p in self.derivations.get(f, [])],
                }
                for f, df in self.frames.items()
            },
            "raw": {rel: hashlib.sha256(content).hexdigest() for rel, content in sorted(self.raw.items())},
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the dataset to the folder ``path`` atomically.

        Everything is written into a temporary folder next to ``path`` which is
        then renamed into place, so a reader never sees a half-written dataset.

        Parameters
        ----------
        path : path
            The dataset folder to create.
        overwrite : bool
            Replace an existing folder (the old one is removed only after the new
            one is in place).

        Returns
        -------
        Path
            ``path``.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise DatasetError(f"{target} exists; pass overwrite=True to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            digests = {}
            (tmp / "frames").mkdir()
            for frame, df in self.frames.items():
                validate_frame(df, self.kinds[frame])
                out = tmp / "frames" / f"{frame}.parquet"
                clean = df.copy()
                clean.attrs = {}  # ParseReports are not JSON; provenance lives in the manifest
                clean.to_parquet(out, index=False)
                digests[frame] = _sha256(out)
            for rel, content in self.raw.items():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
            (tmp / MANIFEST).write_text(json.dumps(self.manifest(digests), indent=2, sort_keys=False) + "\n")
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = target
        return target


def _derive(root: Path, frame: str, parts: list[Derivation]) -> tuple[pd.DataFrame, str]:
    pieces, kinds = [], {p.kind for p in parts}
    if len(kinds) != 1:
        raise DatasetError(f"frame {frame!r} mixes kinds {sorted(kinds)}")
    for part in parts:
        if part.reader not in DERIVERS:
            raise DatasetError(f"frame {frame!r}: unknown reader {part.reader!r}; known: {sorted(DERIVERS)}")
        outputs = DERIVERS[part.reader](root / part.raw, part.options)
        pieces.append(_add_columns(outputs[part.kind], part.columns))
    df = pieces[0] if len(pieces) == 1 else _concat(pieces)
    df.attrs = {}
    kind = kinds.pop()
    return validate_frame(df, kind), kind


def _concat(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames of one kind, keeping label columns categorical.

    Readers may give a label column categories of different dtypes (an all-missing
    column has no categories to infer a dtype from), so labels are joined as text.
    """
    out = pd.concat(pieces, ignore_index=True)
    for col in pieces[0].columns:
        if isinstance(pieces[0][col].dtype, pd.CategoricalDtype):
            out[col] = pd.concat([p[col].astype("str") for p in pieces], ignore_index=True).astype("category")
    return out


def load_dataset(name_or_path: str | os.PathLike[str], *, verify: bool = True) -> Dataset:
    """Load a dataset by name or folder.

    Parameters
    ----------
    name_or_path : str or path
        A folder holding a ``manifest.json``, or the name of a dataset on
        :func:`dataset_search_path` (for example ``"node-sample"``).
    verify : bool
        Check the sha256 of every frame and raw file against the manifest.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        When the dataset cannot be found (with the known names), a file listed
        in the manifest is missing, a digest does not match (naming the file and
        both digests) or a frame cannot be read.
    """
    root = _resolve(name_or_path)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root / MANIFEST}: not a readable JSON manifest ({exc})") from None
    for key in ("name", "frames", "raw"):
        if key not in manifest:
            raise DatasetError(f"{root / MANIFEST}: missing key {key!r}")

    def check(rel: str, expected: str | None) -> Path:
        file = root / rel
        if not file.is_file():
            raise DatasetError(f"{root}: {rel} is listed in the manifest but missing")
        if verify and expected is not None:
            actual = _sha256(file)
            if actual != expected:
                raise DatasetError(
                    f"{file}: sha256 mismatch: manifest says {expected}, file has {actual} "
                    "(the dataset was modified or corrupted)"
                )
        return file

    raw = {rel: check(rel, digest).read_bytes() for rel, digest in manifest["raw"].items()}
    frames, kinds, derivations = {}, {}, {}
    for frame, meta in manifest["frames"].items():
        file = check(meta["file"], meta.get("sha256"))
        try:
            df = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DatasetError(f"{file}: not a readable Parquet file ({exc})") from None
        if len(df) != meta.get("rows", len(df)):
            raise DatasetError(f"{file}: {len(df)} rows, the manifest says {meta['rows']}")
        frames[frame] = conform_frame(df, meta["kind"])
        kinds[frame] = meta["kind"]
        derivations[frame] = [Derivation(**d) for d in meta.get("derived_from", [])]
    return Dataset(
        name=manifest["name"],
        description=manifest.get("description", ""),
        frames=frames,
        kinds=kinds,
        recording=manifest.get("recording", {}),
        raw=raw,
        derivations=derivations,
        path=root,
    )
