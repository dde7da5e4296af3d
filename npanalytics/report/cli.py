"""``npanalytics report``: analyse a dataset (or live sources) and write the report files.

Wiring only: load or collect a :class:`~npanalytics.datasets.Dataset`, run
:func:`npanalytics.analyze`, hand the result to :func:`render_report`, and turn
the findings into an exit status for scheduled runs.

Exit status
-----------
0  the report was written; no finding at or above ``--fail-on`` (or no ``--fail-on``)
1  the report was written; some finding is at or above ``--fail-on``
2  usage error (bad arguments)
3  bad data: the dataset is missing, corrupt or tampered with (sha256 mismatch,
   unreadable Parquet), a dump cannot be parsed, or a frame breaks its schema;
   nothing is written
4  a live source (Prometheus, the Kubernetes API, a binary) cannot be reached;
   nothing is written
5  the report files cannot be written (the previous ones are left as they were)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.result import SEVERITIES
from ..cli import node_port_range_arg
from ..exceptions import CollectorError, DatasetError, ParseError, SchemaError
from .render import REPORT_FORMATS, _check_formats

__all__ = ["register", "run_report", "EXIT_OK", "EXIT_FINDINGS", "EXIT_USAGE", "EXIT_DATA", "EXIT_SOURCE",
           "EXIT_WRITE", "FAIL_ON_LEVELS"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_SOURCE = 4
EXIT_WRITE = 5

FAIL_ON_LEVELS = ("warning", "critical")
"""Values of ``--fail-on``: the least severe finding that makes the exit status 1."""

LIVE_OPTIONS = ("prometheus", "kubeconfig", "conntrack", "conntrack_stats", "rules")
"""Arguments that name live sources (or dumps taken from them), as opposed to ``--dataset``."""


class UsageError(Exception):
    """Arguments that do not go together (exit status 2)."""


def _formats(text: str) -> list[str]:
    try:
        return _check_formats(f.strip() for f in text.split(",") if f.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to the ``npanalytics`` parser."""
    p = sub.add_parser(
        "report",
        help="write the HTML/JSON/Markdown report of a dataset or of live sources",
        description=(
            "Analyse a recorded dataset (default: the bundled default dataset) or live sources and "
            "write the report: self-contained HTML, JSON with the same numbers, Markdown. Exit "
            "status: 0 written (nothing at or above --fail-on), 1 written with findings at or "
            "above --fail-on, 2 usage error, 3 bad data (missing, corrupt or tampered dataset, "
            "unparsable dump; nothing written), 4 a live source unreachable (nothing written), "
            "5 the report cannot be written."
        ),
    )
    src = p.add_argument_group("data (one of)")
    src.add_argument("--dataset", metavar="NAME|PATH", help="a recorded dataset (default: the bundled default)")
    src.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (kube-state-metrics, kube-proxy metrics)")
    src.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig of the cluster (Services, EndpointSlices, Pods, Nodes)")
    src.add_argument("--conntrack", metavar="[NODE=]FILE", action="append",
                     help="conntrack -L dump of a node (repeat for several nodes)")
    src.add_argument("--conntrack-stats", metavar="[NODE=]FILE", action="append",
                     help="conntrack -S output of a node (repeat for several nodes)")
    src.add_argument("--rules", metavar="[NODE=]FILE", action="append",
                     help="iptables-save, nft list ruleset or ipvsadm -Ln dump of a node (repeat for several nodes)")
    src.add_argument("--node-port-range", type=node_port_range_arg, default=(30000, 32767), metavar="LOW-HIGH")
    src.add_argument("--on-bad-line", default="raise", choices=["raise", "warn", "skip"],
                     help="what the dump readers do with a line they cannot parse (default: raise)")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", required=True, type=Path, help="folder to write the report into")
    out.add_argument("--format", dest="formats", type=_formats, default=["html"], metavar="FMT[,FMT]",
                     help=f"comma-separated, of {', '.join(REPORT_FORMATS)} (default: html)")
    out.add_argument("--dated", action="store_true",
                     help="name the files report-YYYYmmddTHHMMSSZ.<fmt> (UTC) instead of report.<fmt>")
    out.add_argument("--fail-on", choices=FAIL_ON_LEVELS, default=None,
                     help="exit with status 1 when a finding is at least this severe")
    p.set_defaults(func=run_report)
    return p


# --- data -------------------------------------------------------------------------------------

def _split_node(value: str) -> tuple[str | None, Path]:
    """``NODE=FILE`` -> (NODE, FILE); a plain FILE -> (None, FILE)."""
    node, sep, file = value.partition("=")
    if sep and node and not Path(value).exists():
        return node, Path(file)
    return None, Path(value)


def _with_node(df: Any, node: str | None) -> Any:
    import pandas as pd

    if node is None:
        return df
    df = df.copy()
    df["node"] = pd.Categorical([node] * len(df))
    return df


def _read_dumps(values: Sequence[str] | None, read: Any, kinds: Sequence[str]) -> dict[str, list[Any]]:
    """Each dump read with ``read(path)`` into frames of ``kinds`` (with a node column when named)."""
    parts: dict[str, list[Any]] = {kind: [] for kind in kinds}
    for value in values or ():
        node, path = _split_node(value)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (given as {value!r})")
        frames = read(path)
        for kind in kinds:
            parts[kind].append(_with_node(frames[kind], node))
    return parts


def _join(parts: list[Any]) -> Any:
    from ..datasets import _concat

    return parts[0] if len(parts) == 1 else _concat(parts)


def _files_dataset(args: argparse.Namespace) -> Any:
    """A Dataset in memory from the dumps named on the command line."""
    from ..collectors.conntrack import read_conntrack, read_conntrack_stats
    from ..collectors.rules import read_proxy_rules
    from ..datasets import Dataset

    def flows(path: Path) -> dict[str, Any]:
        return {"conntrack_flows": read_conntrack(path, node_port_range=args.node_port_range,
                                                  on_bad_line=args.on_bad_line)}

    def stats(path: Path) -> dict[str, Any]:
        return {"conntrack_stats": read_conntrack_stats(path, on_bad_line=args.on_bad_line)}

    def rules(path: Path) -> dict[str, Any]:
        read = read_proxy_rules(path, on_bad_line=args.on_bad_line)
        return {"proxy_services": read.services, "proxy_endpoints": read.endpoints}

    parts: dict[str, list[Any]] = {}
    parts.update(_read_dumps(args.conntrack, flows, ["conntrack_flows"]))
    parts.update(_read_dumps(args.conntrack_stats, stats, ["conntrack_stats"]))
    parts.update(_read_dumps(args.rules, rules, ["proxy_services", "proxy_endpoints"]))
    frames = {kind: _join(p) for kind, p in parts.items() if p}
    for df in frames.values():
        df.attrs = {}
    sources = {name: list(getattr(args, name) or []) for name in ("conntrack", "conntrack_stats", "rules")}
    return Dataset(
        name="live",
        description="Dumps given on the npanalytics report command line.",
        frames=frames,
        kinds={kind: kind for kind in frames},
        recording={"recorded_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
                   "sources": {k: v for k, v in sources.items() if v}},
    )


def _live_dataset(args: argparse.Namespace) -> Any:
    """A Dataset in memory from the live sources and dumps named on the command line.

    Prometheus and the Kubernetes API are read by :func:`npanalytics.collect.collect`
    (the last hour of the kube-state-metrics and kube-proxy series, a snapshot of the
    API objects) into a temporary folder, removed afterwards; the dumps are added to it.
    """
    dumps = _files_dataset(args) if (args.conntrack or args.conntrack_stats or args.rules) else None
    if not (args.prometheus or args.kubeconfig):
        return dumps
    import tempfile

    from ..collect import collect

    with tempfile.TemporaryDirectory(prefix="npa-report-") as tmp:
        live = collect(Path(tmp) / "live", prometheus=args.prometheus, kubeconfig=args.kubeconfig,
                       progress=False, description="Live sources read by npanalytics report.")
    live.path = None  # the folder is gone; the report's provenance is the recording
    if dumps is not None:
        live.frames.update(dumps.frames)
        live.kinds.update(dumps.kinds)
        live.recording["sources"] = dumps.recording["sources"]
    sources = {"prometheus": args.prometheus, "kubeconfig": args.kubeconfig}
    live.recording.setdefault("sources", {}).update({k: v for k, v in sources.items() if v})
    return live


def load_input(args: argparse.Namespace) -> Any:
    """The Dataset the arguments name: ``--dataset``, live sources, or the bundled default."""
    live = [name for name in LIVE_OPTIONS if getattr(args, name)]
    if args.dataset and live:
        flags = ", ".join("--" + name.replace("_", "-") for name in live)
        raise UsageError(f"give either --dataset or live sources ({flags}), not both")
    if live:
        return _live_dataset(args)
    from ..datasets import DEFAULT_DATASET, load_dataset

    return load_dataset(args.dataset or DEFAULT_DATASET)


# --- the command ------------------------------------------------------------------------------

def exit_status(findings: Any, fail_on: str | None) -> int:
    """``EXIT_FINDINGS`` when a finding is at least as severe as ``fail_on``, else ``EXIT_OK``."""
    if fail_on is None:
        return EXIT_OK
    levels = SEVERITIES[: SEVERITIES.index(fail_on) + 1]
    return EXIT_FINDINGS if findings["severity"].astype("str").isin(levels).any() else EXIT_OK


def _error(message: str) -> None:
    print(f"npanalytics report: error: {message}", file=sys.stderr)


def _analyze(dataset: Any) -> Any:
    """:func:`npanalytics.analysis.analyze.analyze` of the dataset (imported when a report is made)."""
    from ..analysis.analyze import analyze

    return analyze(dataset)


def _with_manifest(analysis: Any, dataset: Any) -> Any:
    """The analysis with the dataset's manifest as written on disk (with every sha256) as its provenance.

    Keys of the analysis' own provenance that the manifest lacks are kept.
    """
    import dataclasses
    import json

    path = getattr(dataset, "path", None)
    if path is None or not (Path(path) / "manifest.json").is_file():
        return analysis
    manifest = json.loads((Path(path) / "manifest.json").read_text())  # load_dataset verified it
    extra = {k: v for k, v in analysis.provenance.items() if k not in manifest}
    return dataclasses.replace(analysis, provenance={**manifest, **extra})


def run_report(args: argparse.Namespace) -> int:
    """Run ``npanalytics report``; return the exit status (see the module docstring)."""
    from .render import render_report

    try:
        dataset = load_input(args)
        analysis = _with_manifest(_analyze(dataset), dataset)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except CollectorError as exc:
        _error(f"live source unreachable: {exc}")
        return EXIT_SOURCE
    except (DatasetError, ParseError, SchemaError, FileNotFoundError) as exc:
        _error(str(exc))
        return EXIT_DATA
    try:
        paths = render_report(analysis, formats=args.formats, out_dir=args.out, dated=args.dated)
    except OSError as exc:
        _error(f"cannot write the report into {args.out}: {exc}")
        return EXIT_WRITE
    counts = analysis.findings["severity"].astype("str").value_counts()
    print(f"npanalytics report: {dataset.name!r}: "
          + ", ".join(f"{int(counts.get(level, 0))} {level}" for level in SEVERITIES))
    for fmt, path in paths.items():
        print(f"npanalytics report: wrote {path.resolve()}")
    return exit_status(analysis.findings, args.fail_on)
