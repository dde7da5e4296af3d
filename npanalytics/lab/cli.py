"""``npanalytics lab up|run|record|down``: the lab's command line (root; Linux network namespaces).

The main CLI calls :func:`register` with its subparsers object; the module also runs
alone as ``python -m npanalytics.lab.cli <command> ...``.

- ``lab up SCENARIO [--max-seconds S]``: build the data plane and keep it until Ctrl-C
  (or S seconds, default 600); everything is torn down when the command ends.
- ``lab run SCENARIO [--out DIR]``: build, send the traffic, collect the dumps, tear
  down; print a JSON summary (and write the dumps under DIR).
- ``lab record SCENARIO --out DIR [--name NAME] [--description TEXT] [--overwrite]``:
  like ``run``, then save the run as a dataset, written atomically: every node's
  ``conntrack -L``/``-S`` and rule dumps (also just before each event's reload), the
  pods' own counts (ground truth), the timed rule loads, the scenario YAML, the
  Kubernetes objects, the kube-state-metrics/kube-proxy expositions and an OpenMetrics
  series; see :mod:`npanalytics.lab.record`. Load it with
  ``npanalytics.datasets.load_dataset(DIR)``.
- ``lab record SCENARIO --node NODE --out DIR`` (``--raw-only`` is implied): write only
  NODE's dumps and ``recording.json`` (what ``scripts/build_node_sample.py`` reads).
- ``lab down [--run-id ID]``: delete every ``npa-lab-*`` namespace (or only run ID's) that
  a crashed run left behind.
- ``lab serve-api SCENARIO --kubeconfig PATH [--port P] [--token T] [--max-seconds S]
  [--no-endpointslices]``: serve the scenario's Kubernetes objects as a read-only API on
  127.0.0.1 (no root, no namespaces; see :mod:`npanalytics.lab.apiserver`) and write a
  kubeconfig for it, for ``npanalytics collect --kubeconfig PATH`` or the notebooks.

``--serve-metrics PORT`` (up, run, record): while the lab is up, serve what
kube-state-metrics and every node's kube-proxy would expose (kube-proxy series with
``instance="<node>"``) on ``http://127.0.0.1:PORT/metrics``, rebuilt after every rule
load and event; 0 picks a free port. The URL is printed on stderr.

SCENARIO is a YAML file or the name of a bundled scenario (``etp-cluster-spread``,
``etp-local-uneven``, ``affinity-few-clients``, ``keepalive-scale-up``,
``endpoint-removed-stale``, ``two-nodes-local``, ``node-sample``).

Examples::

    sudo npanalytics lab record etp-local-uneven --out datasets/etp-local-uneven --overwrite
    sudo npanalytics lab run my-scenario.yaml --serve-metrics 9100
    sudo npanalytics lab up two-nodes-local --max-seconds 300 --serve-metrics 0
    sudo npanalytics lab down
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from ..exceptions import LabError

__all__ = ["register", "main"]

DEFAULT_UP_SECONDS = 600.0
MAX_UP_SECONDS = 24 * 3600.0
SCENARIO_HELP = "scenario YAML file or bundled scenario name"
RECORD_DESCRIPTION = """\
Run a scenario (root: it builds network namespaces) and save the run as a dataset
folder: frames/*.parquet parsed from raw/ by the project's readers, raw/ (every node's
conntrack and rule dumps, rules before each event's reload, ground_truth.json,
rule_loads.json, scenario.yaml, k8s/*.json, metrics/*.txt and metrics/series.om) and
manifest.json (how it was recorded, tool versions, sha256 of every file).

  sudo npanalytics lab record etp-local-uneven --out datasets/etp-local-uneven --overwrite
  python -c "from npanalytics.datasets import load_dataset; print(load_dataset('datasets/etp-local-uneven'))"
  promtool tsdb create-blocks-from openmetrics datasets/etp-local-uneven/raw/metrics/series.om /tmp/tsdb

With --node NODE only that node's raw dumps and recording.json are written (the
node-sample build input)."""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``lab`` command (with ``up``, ``run``, ``record``, ``down``) to ``subparsers``.

    Each leaf parser sets ``func`` to a callable taking the parsed namespace and
    returning the exit status.
    """
    lab = subparsers.add_parser(
        "lab", help="build a kube-proxy data plane in network namespaces (root)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="{up,run,record,down,serve-api}")
    up = sub.add_parser("up", help="build the lab and keep it until Ctrl-C or --max-seconds")
    up.add_argument("scenario", help=SCENARIO_HELP)
    up.add_argument("--max-seconds", type=float, default=DEFAULT_UP_SECONDS,
                    help=f"tear down after this many seconds (default {DEFAULT_UP_SECONDS:g})")
    _serve_option(up)
    up.set_defaults(func=_cmd_up)
    run = sub.add_parser("run", help="run a scenario and print its summary")
    run.add_argument("scenario", help=SCENARIO_HELP)
    run.add_argument("--out", help="write the raw dumps and ground truth to this folder")
    _serve_option(run)
    run.set_defaults(func=_cmd_run)
    rec = sub.add_parser(
        "record", help="run a scenario and save it as a dataset",
        description=RECORD_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rec.add_argument("scenario", help=SCENARIO_HELP)
    rec.add_argument("--out", required=True, help="dataset folder to write")
    rec.add_argument("--name", help="dataset name (default: the scenario's name)")
    rec.add_argument("--description", help="dataset description (default: the scenario's)")
    rec.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    rec.add_argument("--node", help="write only this node's raw dumps (implies --raw-only)")
    rec.add_argument("--raw-only", action="store_true",
                     help="write one node's raw dumps and recording.json only (the node-sample build input)")
    _serve_option(rec)
    rec.set_defaults(func=_cmd_record)
    down = sub.add_parser("down", help="delete npa-lab-* namespaces left by a crashed run")
    down.add_argument("--run-id", help="only the namespaces of this run (npa-lab-<run-id>-*)")
    down.set_defaults(func=_cmd_down)
    api = sub.add_parser("serve-api", help="serve the scenario's Kubernetes objects as a read-only API")
    api.add_argument("scenario", help=SCENARIO_HELP)
    api.add_argument("--kubeconfig", required=True, help="write a kubeconfig for the server here")
    api.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    api.add_argument("--token", help="require this bearer token (it goes into the kubeconfig)")
    api.add_argument("--max-seconds", type=float, default=DEFAULT_UP_SECONDS,
                     help=f"stop after this many seconds (default {DEFAULT_UP_SECONDS:g})")
    api.add_argument("--no-endpointslices", action="store_true",
                     help="answer 404 for EndpointSlices, like a server that predates them")
    api.set_defaults(func=_cmd_serve_api)
    return lab


def _serve_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--serve-metrics", type=int, metavar="PORT",
        help="while the lab is up, serve kube-state-metrics and every node's kube-proxy metrics "
             "(instance=<node>) on http://127.0.0.1:PORT/metrics, updated after each rule load "
             "and event (0: a free port; the URL is printed on stderr)",
    )


def _serving(args: argparse.Namespace) -> dict[str, object]:
    """run_scenario/lab_up keyword arguments for --serve-metrics (checked before any build)."""
    port = getattr(args, "serve_metrics", None)
    if port is None:
        return {}
    if not 0 <= port <= 65535:
        raise LabError(f"--serve-metrics must be a port in [0, 65535] (0: a free one); got {port}")

    def announce(url: str) -> None:
        print(f"serving the lab's metrics at {url}", file=sys.stderr, flush=True)

    return {"serve_metrics_port": port, "on_metrics_url": announce}


def _scrapes(count: int | None) -> None:
    if count is not None:
        print(f"metrics scraped {count} time(s)", file=sys.stderr, flush=True)


def _cmd_up(args: argparse.Namespace) -> int:
    from .runner import lab_up

    if not 0 < args.max_seconds <= MAX_UP_SECONDS:
        raise LabError(f"--max-seconds must be in (0, {MAX_UP_SECONDS:g}]; got {args.max_seconds}")
    with lab_up(args.scenario, **_serving(args)) as topo:
        a = topo.addresses
        for node in topo.scenario.nodes:
            print(f"node {node.name}: {topo.node_ns(node.name)} {a.node_ips[node.name]} "
                  f"pods {a.pod_cidrs[node.name]} ({node.proxy_mode})")
        for pod in topo.scenario.pods:
            print(f"pod {pod.name}: {topo.pod_ns(pod.name)} {a.pod_ips[pod.name]} on {pod.node}")
        print(f"clients: {topo.clients_ns} {' '.join(a.client_ips[:4])}"
              f"{' ...' if len(a.client_ips) > 4 else ''}")
        for load in topo.loads:
            print(f"rules {load.node}: {load.rule_count} rules loaded in {load.duration_seconds:.4f} s")
        print(f"run id: {topo.run_id} (namespaces npa-lab-{topo.run_id}-*)")
        print(f"lab is up; Ctrl-C tears it down (at the latest in {args.max_seconds:g} s)", flush=True)
        end = time.monotonic() + args.max_seconds
        while time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        server = topo.metrics_server
    _scrapes(None if server is None else server.scrapes)
    print("lab is down", flush=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_scenario

    result = run_scenario(args.scenario, out=args.out, **_serving(args))
    _scrapes(result.metrics_scrapes)
    print(json.dumps(result.summary(), indent=2, sort_keys=True))
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from .runner import record_node_sample, run_scenario
    from .scenario import load_scenario

    from pathlib import Path

    scenario = load_scenario(args.scenario)
    names = [n.name for n in scenario.nodes]
    if args.node is not None:
        args.raw_only = True  # the node-sample build (scripts/build_node_sample.py) calls it so
    if args.raw_only and args.node not in names:
        raise LabError(f"--node must be one of {', '.join(names)}; got {args.node!r}")
    if not args.raw_only and Path(args.out).exists() and not args.overwrite:
        raise LabError(f"{args.out} exists; pass --overwrite to replace it")
    serving = _serving(args)
    result = run_scenario(scenario, **serving)
    _scrapes(result.metrics_scrapes)
    print(json.dumps(result.summary()["requests_per_pod"], sort_keys=True))
    if args.raw_only:
        path = record_node_sample(result, args.node, args.out)
        print(f"recorded {args.node} into {path}")
        return 0
    from .record import record_run

    ds = record_run(result, args.name or scenario.name, args.description or scenario.description.strip())
    path = ds.save(args.out, overwrite=args.overwrite)
    print(f"recorded {ds!r} into {path}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from .netns import cleanup_leftovers

    removed = cleanup_leftovers(f"npa-lab-{args.run_id}-" if args.run_id else "npa-lab-")
    print(f"removed {len(removed)} namespace(s)" + (": " + " ".join(removed) if removed else ""))
    return 0


def _cmd_serve_api(args: argparse.Namespace) -> int:
    from .apiserver import LabApiServer
    from .scenario import load_scenario

    if not 0 < args.max_seconds <= MAX_UP_SECONDS:
        raise LabError(f"--max-seconds must be in (0, {MAX_UP_SECONDS:g}]; got {args.max_seconds}")
    if not 0 <= args.port <= 65535:
        raise LabError(f"--port must be in [0, 65535] (0: a free one); got {args.port}")
    scenario = load_scenario(args.scenario)
    with LabApiServer(scenario, token=args.token, port=args.port,
                      endpointslices=not args.no_endpointslices) as server:
        path = server.write_kubeconfig(args.kubeconfig)
        print(f"serving the Kubernetes objects of {scenario.name} at {server.url}; kubeconfig: {path}; "
              f"Ctrl-C stops (at the latest in {args.max_seconds:g} s)", flush=True)
        end = time.monotonic() + args.max_seconds
        while time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
    print(f"served {len(server.requests)} request(s)", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lab`` commands stand-alone (``python -m npanalytics.lab.cli``)."""
    parser = argparse.ArgumentParser(prog="python -m npanalytics.lab.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except LabError as exc:
        print(f"npanalytics lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"npanalytics lab: {str(exc) or 'interrupted'}; torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
