"""The ``npanalytics`` command line: wiring only, no statistic lives here.

Subcommands
-----------
inspect
    Per Service port, each endpoint with its selection probability from the
    kube-proxy rules and the flows conntrack shows it received. With no
    arguments it reads the bundled default dataset; with ``--rules`` and
    ``--conntrack`` it reads your own dumps of one node.
report
    Write the HTML/JSON/Markdown report of a dataset or of live sources, with an
    exit status for scheduled runs (see :mod:`npanalytics.report.cli`).
collect
    Record Prometheus series and/or a Kubernetes API snapshot (and their raw
    responses) into a dataset folder (see :mod:`npanalytics.collect`).
lab
    Build, run, record and tear down the network-namespace lab (root only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .exceptions import NpaError

__all__ = ["main"]


def node_port_range_arg(text: str) -> tuple[int, int]:
    """argparse type of ``--node-port-range LOW-HIGH`` (shared by the subcommands)."""
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, e.g. 30000-32767, got {text!r}") from None
    if not 0 < low <= high < 65536:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH < 65536, got {text!r}")
    return low, high


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="endpoints per Service port: probability from the rules, flows from conntrack",
        description=(
            "Print, per Service port, each endpoint with its selection probability from one "
            "node's kube-proxy rules and the conntrack flows it received. Without --rules/"
            "--conntrack the bundled default dataset is used."
        ),
    )
    p.add_argument("--dataset", help="dataset name or folder (default: the bundled default dataset)")
    p.add_argument("--rules", metavar="FILE", help="iptables-save, nft list ruleset or ipvsadm -Ln dump of one node")
    p.add_argument("--conntrack", metavar="FILE", help="conntrack -L dump of the same node")
    p.add_argument("--rules-format", default="auto", choices=["auto", "iptables", "nftables", "ipvs"])
    p.add_argument("--node-port-range", type=node_port_range_arg, default=(30000, 32767), metavar="LOW-HIGH")
    p.add_argument("--on-bad-line", default="raise", choices=["raise", "warn", "skip"])
    p.add_argument("--format", default="table", choices=["table", "csv", "json"], help="output format")
    p.set_defaults(func=_inspect)


def _load_inspect_frames(args: argparse.Namespace):
    if args.rules or args.conntrack:
        if not (args.rules and args.conntrack):
            raise NpaError("--rules and --conntrack go together (dumps of the same node)")
        if args.dataset:
            raise NpaError("give either --dataset or --rules/--conntrack, not both")
        from .collectors.conntrack import read_conntrack
        from .collectors.rules import read_proxy_rules

        rules = read_proxy_rules(args.rules, format=args.rules_format, on_bad_line=args.on_bad_line)
        flows = read_conntrack(args.conntrack, node_port_range=args.node_port_range, on_bad_line=args.on_bad_line)
        reports = [rules.report, flows.attrs["parse_report"]]
        return rules.services, rules.endpoints, flows, reports, f"{args.rules} + {args.conntrack}"
    from .datasets import DEFAULT_DATASET, load_dataset

    ds = load_dataset(args.dataset or DEFAULT_DATASET)
    return ds["proxy_services"], ds["proxy_endpoints"], ds["conntrack_flows"], [], f"dataset {ds.name!r} ({ds.path})"


def _inspect(args: argparse.Namespace) -> int:
    from .analysis.flows import endpoint_flows

    services, endpoints, flows, reports, origin = _load_inspect_frames(args)
    table = endpoint_flows(flows, services, endpoints)
    out = sys.stdout
    if args.format == "csv":
        table.to_csv(out, index=False)
        return 0
    if args.format == "json":
        json.dump(json.loads(table.to_json(orient="records")), out, indent=2)
        out.write("\n")
        return 0
    out.write(f"npanalytics inspect: {origin}\n")
    for report in reports:
        out.write(
            f"  {report.source}: {report.lines_total} lines, {report.lines_parsed} parsed, "
            f"{report.lines_skipped} skipped\n"
        )
    attributed = int(table["flows"].sum())
    out.write(
        f"  {len(flows)} conntrack flows: {attributed} to a Service frontend of this node, "
        f"{len(flows) - attributed} other (the node's own or transit traffic)\n"
    )
    svc = services.astype({"service_port_name": "str"}).set_index("service_port_name")
    for spn, rows in table.groupby("service_port_name", observed=True, sort=True):
        info = svc.loc[spn] if spn in svc.index else None
        if isinstance(info, type(svc)):  # duplicated key (several nodes): describe the first
            info = info.iloc[0]
        out.write(f"\n{spn}")
        if info is not None:
            out.write(
                f"  {info['protocol']}  clusterIP {info['cluster_ip']}:{info['port']}"
                f"  nodePort {info['node_port']}  eTP {info['external_traffic_policy']}"
                f"  affinity {info['session_affinity']}"
            )
        out.write(f"  flows {int(rows['flows'].sum())}\n")
        shown = rows[
            ["endpoint_ip", "endpoint_port", "in_rules", "probability", "local_probability",
             "rule_connections", "flows", "flow_share"]
        ]
        out.write(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-") + "\n")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="npanalytics", description="Understand Kubernetes NodePort traffic."
    )
    parser.add_argument("--version", action="version", version=f"npanalytics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_inspect(sub)
    from .report.cli import register as register_report

    register_report(sub)
    from .collect import register as register_collect

    register_collect(sub)
    try:
        from .lab.cli import register as register_lab
    except ImportError:  # the lab's optional dependencies are missing
        register_lab = None
    if register_lab is not None:
        register_lab(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 findings, 2 errors).

    ``report`` tells bad data (3), unreachable live sources (4) and unwritable output (5)
    apart: see :mod:`npanalytics.report.cli`.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (NpaError, FileNotFoundError, ValueError) as exc:
        print(f"npanalytics {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npanalytics {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
