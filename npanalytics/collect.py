"""``npanalytics collect``: record what a live cluster's monitoring knows into a Dataset.

:func:`collect` runs range queries against Prometheus (the raw kube-state-metrics
and kube-proxy series the catalogs are built from, :data:`DEFAULT_QUERIES`, plus any
given) and writes a :class:`~npanalytics.Dataset`: one ``prom_samples`` frame per
query, and the responses exactly as Prometheus sent them under ``raw/prometheus/``,
from which every frame is derived again by
:func:`~npanalytics.read_prometheus_response` (``Dataset.rederive``). Tests and
notebooks then run on the folder without Prometheus.

With the default queries it also runs the catalogs, so that the dataset is ready for
:func:`npanalytics.analyze` and the report: the kube-state-metrics state at ``end``
(:func:`~npanalytics.collectors.kube_state.kube_state_frames`: frames ``k8s_services``,
``k8s_endpoints``, ``k8s_pods``, ``k8s_nodes``) from one more answer, the raw samples of
the last :data:`KSM_LOOKBACK` of every family it reads (an instant query of
``{__name__=~"kube_service_info|..."}[5m]`` at ``end``, kept as
``raw/prometheus/kube-state.json``; each KSM target's latest scrape counts, so a series
that went away is not taken for current as a lookback-filled range point would be), and
kube-proxy's sync latency, rule counts and status over the range
(:func:`~npanalytics.collectors.kube_proxy.kube_proxy_frames`: frames ``proxy_latency``,
``proxy_rule_counts``, ``proxy_status``) from ``raw/prometheus/kube-proxy.json``, a JSON
array of the KSM answer (its nodes name the ``instance`` values) and the range answers of
the default ``kubeproxy_*`` queries (a copy: the per-query files stay as they are). Each
catalog frame is derived again from its one file (readers ``kube_state_from_prometheus``
and ``kube_proxy_from_prometheus`` of :data:`npanalytics.datasets.DERIVERS`); the KSM
variant and the catalogs' notes are in ``recording["catalogs"]``.

With a kubeconfig it also takes a snapshot of the Kubernetes API
(:func:`~npanalytics.get_endpoint_snapshot`: frames ``k8s_services``,
``k8s_endpoints``, ``k8s_pods``, ``k8s_nodes``, derived again from the list pages kept
under ``raw/k8s/`` by :func:`~npanalytics.read_k8s_objects`) and, with
``watch_seconds``, the EndpointSlice churn of that window
(:func:`~npanalytics.watch_endpoints`: frame ``endpoint_churn``, derived again from
the watch log ``raw/k8s/endpoint-watch.jsonl``). The API's objects then win: they keep
the names ``k8s_*`` (what the analysis reads) and kube-state-metrics' are ``ksm_services``,
``ksm_endpoints``, ``ksm_pods``, ``ksm_nodes`` (same kinds).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .collectors.prometheus import (
    Step,
    Time,
    _shown,
    connect_prometheus,
    get_prometheus_instant,
    get_prometheus_range,
    read_prometheus_response,
)
from .datasets import _NAME_RE as _DATASET_NAME
from .datasets import Dataset, Derivation, _kube_proxy_outputs, _kube_state_outputs
from .exceptions import NpaWarning, PrometheusWarning

__all__ = ["DEFAULT_QUERIES", "DEFAULT_STEP", "DEFAULT_RANGE", "KSM_LOOKBACK", "CATALOG_KINDS", "collect",
           "parse_time"]

#: The raw series a recording keeps, by frame name (kube-state-metrics and kube-proxy,
#: KUBE_FACTS §3-4). Each is a bare selector, so the catalogs can compute anything
#: (rates, histogram quantiles) from the recording later. A series the cluster does
#: not expose gives an empty frame (recorded, not an error).
DEFAULT_QUERIES: Mapping[str, str] = {
    name: name
    for name in (
        # kube-state-metrics: Services, endpoints, pods, nodes
        "kube_service_info",
        "kube_service_spec_type",
        "kube_service_labels",
        "kube_endpointslice_info",
        "kube_endpointslice_endpoints",
        "kube_endpointslice_ports",
        "kube_endpointslice_labels",
        "kube_endpoint_address",
        "kube_pod_info",
        "kube_pod_status_ready",
        "kube_pod_status_phase",
        "kube_node_info",
        "kube_node_labels",
        "kube_node_status_condition",
        # kube-proxy: sync durations, rules, changes, failures
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_proxy_rules_duration_seconds_sum",
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_sum",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
        "kubeproxy_network_programming_duration_seconds_bucket",
        "kubeproxy_network_programming_duration_seconds_sum",
        "kubeproxy_network_programming_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_iptables_total",
        "kubeproxy_sync_proxy_rules_iptables_last",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "kubeproxy_sync_proxy_rules_service_changes_total",
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "kubeproxy_sync_proxy_rules_service_changes_pending",
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
        "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
        "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
        "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
    )
}

#: How far back from ``end`` the kube-state-metrics samples are read (Prometheus's
#: default lookback delta): the catalog takes each KSM target's latest scrape in it.
KSM_LOOKBACK = "5m"

#: Raw files of the catalogs (see :func:`collect`).
KSM_RAW = "raw/prometheus/kube-state.json"
PROXY_RAW = "raw/prometheus/kube-proxy.json"

#: The catalog frames a recording with the default queries gets, by kind.
CATALOG_KINDS = ("k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes",
                 "proxy_latency", "proxy_rule_counts", "proxy_status")

DEFAULT_STEP = "15s"
"""Resolution when none is given (a common scrape interval)."""

DEFAULT_RANGE = dt.timedelta(hours=1)
"""How far back ``start`` is when not given."""

_FRAME_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RELATIVE = re.compile(r"^now\s*(?:-\s*(\S+))?$")


def parse_time(text: str | Time, *, now: dt.datetime | None = None) -> pd.Timestamp:
    """A UTC time from ``now``, ``now-1h``, ISO 8601 text with a zone, or Unix seconds.

    Parameters
    ----------
    text : str, datetime or float
        The time; strings of digits are Unix seconds.
    now : datetime, optional
        What ``now`` means (default: the current time).

    Raises
    ------
    ValueError
        On a naive or unreadable time.
    """
    if not isinstance(text, str):
        stamp = pd.Timestamp(text, unit="s") if isinstance(text, (int, float)) else pd.Timestamp(text)
        if stamp.tzinfo is None:
            if isinstance(text, (int, float)):
                return stamp.tz_localize("UTC")
            raise ValueError(f"time must be timezone-aware, got {text!r}")
        return stamp.tz_convert("UTC")
    relative = _RELATIVE.match(text.strip())
    if relative:
        base = pd.Timestamp(now or dt.datetime.now(dt.timezone.utc)).tz_convert("UTC")
        if relative.group(1) is None:
            return base
        try:
            return base - pd.Timedelta(relative.group(1))
        except ValueError:
            raise ValueError(f"expected now-<duration> such as now-1h, got {text!r}") from None
    if re.fullmatch(r"\d+(\.\d+)?", text.strip()):
        return pd.Timestamp(float(text), unit="s", tz="UTC")
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise ValueError(f"expected now, now-<duration>, ISO 8601 or Unix seconds, got {text!r}") from None
    if stamp.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone; add Z for UTC (naive times are ambiguous)")
    return stamp.tz_convert("UTC")


def _check_queries(queries: Mapping[str, str] | None, defaults: bool) -> dict[str, str]:
    chosen = dict(DEFAULT_QUERIES) if defaults else {}
    for name, expr in (queries or {}).items():
        if not _FRAME_NAME.match(name):
            raise ValueError(
                f"query name {name!r} must start with a letter or _ and hold only letters, digits, _ . -"
            )
        if not str(expr).strip():
            raise ValueError(f"query {name!r} is empty")
        chosen[name] = str(expr)
    if not chosen:
        raise ValueError("no queries: give queries=, or keep the default list")
    return chosen


class _Progress:
    """A tqdm bar over chunks on a terminal, nothing elsewhere (thread-safe updates)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = None
        self._lock = threading.Lock()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="request", desc="collect", file=sys.stderr)

    def grow(self, extra: int) -> None:
        if self._bar is not None and extra:
            with self._lock:
                self._bar.total += extra
                self._bar.refresh()

    def step(self, label: str) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.set_postfix_str(label[:40], refresh=False)
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def collect(
    out: str | os.PathLike[str],
    *,
    prometheus: Any = None,
    start: Time | None = None,
    end: Time | None = None,
    step: Step | None = None,
    queries: Mapping[str, str] | None = None,
    default_queries: bool = True,
    name: str | None = None,
    description: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    verify: bool | str = True,
    timeout: float = 30.0,
    retries: int = 2,
    max_workers: int = 4,
    progress: bool | None = None,
    overwrite: bool = False,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    watch_seconds: float | None = None,
) -> Dataset:
    """Record Prometheus series (and Kubernetes API objects) into a dataset folder.

    Parameters
    ----------
    out : path
        The dataset folder to write (atomically). Its name is the dataset's name
        unless ``name`` is given.
    prometheus : str or PrometheusConnect
        Prometheus base URL, or a client from
        :func:`~npanalytics.connect_prometheus` (then ``token``, ``headers``,
        ``verify``, ``timeout`` and ``retries`` are its own).
    start, end : datetime, str or float, optional
        The range (timezone-aware, ISO 8601 with a zone, ``now``, ``now-1h`` or Unix
        seconds). Default: the last :data:`DEFAULT_RANGE` up to now.
    step : str, timedelta or float, optional
        Resolution (default :data:`DEFAULT_STEP`).
    queries : mapping of str to str, optional
        More queries, frame name -> PromQL (a name of the default list replaces it).
    default_queries : bool, default True
        Include :data:`DEFAULT_QUERIES`, and run the catalogs (see the module's
        documentation): frames of :data:`CATALOG_KINDS`, named after their kinds
        (``ksm_*`` for the kube-state-metrics ones when ``kubeconfig`` is given).
    name, description : str, optional
        The dataset's name and description.
    token, headers, verify, timeout, retries
        As for :func:`~npanalytics.connect_prometheus`.
    max_workers : int, default 4
        Requests in flight at once (over the chunks of long ranges).
    progress : bool, optional
        Show a tqdm progress bar; default: only when stderr is a terminal.
    overwrite : bool, default False
        Replace an existing folder.
    kubeconfig : path, optional
        Also snapshot the Kubernetes API this kubeconfig points at (frames
        ``k8s_services``, ``k8s_endpoints``, ``k8s_pods``, ``k8s_nodes``).
    context : str, optional
        The kubeconfig context (default: its current one).
    watch_seconds : float, optional
        After the snapshot, watch EndpointSlices this long (frame ``endpoint_churn``).

    Returns
    -------
    Dataset
        Saved at ``out``: one ``prom_samples`` frame per query, each derived from
        ``raw/prometheus/<frame>.json`` (the response, or a JSON array of the
        responses of a range fetched in chunks); with ``kubeconfig``, the
        Kubernetes frames, derived from ``raw/k8s/<resource>/page-NNNN.json``
        (the list responses as received) and ``raw/k8s/endpoint-watch.jsonl``;
        with the default queries, the catalog frames, derived from
        ``raw/prometheus/kube-state.json`` and ``raw/prometheus/kube-proxy.json``.

    Warns
    -----
    NpaWarning
        When a catalog fails on the collected series: its frames are left out, its
        raw file is kept and ``recording["catalogs"][<catalog>]["error"]`` says why.

    Raises
    ------
    CollectorError
        When a query fails (nothing is written then).
    ValueError
        On bad arguments (no Prometheus, a bad time, a bad query name).
    """
    if prometheus is None and kubeconfig is None:
        raise ValueError("collect needs a source: prometheus= (a URL or a PrometheusConnect) "
                         "and/or kubeconfig= (a Kubernetes kubeconfig file)")
    if watch_seconds is not None and kubeconfig is None:
        raise ValueError("watch_seconds needs kubeconfig= (the EndpointSlices are watched through the API)")
    target = Path(out)
    ds_name = name or target.name
    if not _DATASET_NAME.match(ds_name):  # checked before a long collection, not after
        raise ValueError(f"dataset name must match {_DATASET_NAME.pattern} (give name= or another --out), "
                         f"got {ds_name!r}")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    end_at = parse_time(end) if end is not None else pd.Timestamp.now(tz="UTC").floor("s")
    start_at = parse_time(start, now=end_at.to_pydatetime()) if start is not None else end_at - DEFAULT_RANGE
    if end_at < start_at:
        raise ValueError(f"end ({end_at.isoformat()}) is before start ({start_at.isoformat()})")
    chosen = _check_queries(queries, default_queries) if prometheus is not None else {}
    catalogs = prometheus is not None and default_queries
    reserved = list(_catalog_names(kubeconfig is not None).values()) if catalogs else []
    if kubeconfig is not None:
        reserved += ["k8s_services", "k8s_endpoints", "k8s_pods", "k8s_nodes", "endpoint_churn"]
    taken = [n for n in dict.fromkeys(reserved) if n in chosen]
    if taken:
        raise ValueError(f"query name(s) {taken} are taken: the catalog and Kubernetes frames are called so")
    step = DEFAULT_STEP if step is None else step
    prom = prometheus
    if isinstance(prometheus, str):
        prom = connect_prometheus(prometheus, token=token, headers=headers, verify=verify,
                                  timeout=timeout, retries=retries)
    bar = _Progress(len(chosen) + (1 if catalogs else 0), progress)
    frames: dict[str, pd.DataFrame] = {}
    raw: dict[str, bytes] = {}
    notes: dict[str, list[str]] = {}
    responses: dict[str, list[bytes]] = {}
    try:
        for frame, expr in chosen.items():
            bodies: dict[int, bytes] = {}

            def keep(k: int, total: int, _lo: int, body: bytes, _bodies: dict[int, bytes] = bodies,
                     _frame: str = frame) -> None:
                if k == 0 and total > 1:
                    bar.grow(total - 1)
                _bodies[k] = body
                bar.step(_frame)

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NpaWarning)
                frames[frame] = get_prometheus_range(prom, expr, start_at, end_at, step,
                                                     max_workers=max_workers, on_response=keep)
            for w in caught:  # pass them on, and keep them in the manifest
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if frames[frame].attrs.get("warnings"):
                notes[frame] = list(frames[frame].attrs["warnings"])
            ordered = responses[frame] = [bodies[k] for k in sorted(bodies)]
            raw[f"raw/prometheus/{frame}.json"] = ordered[0] if len(ordered) == 1 else \
                b"[" + b",".join(ordered) + b"]"
        if catalogs:
            ksm_body = _kube_state_response(prom, end_at)
            bar.step("kube-state-metrics")
    finally:
        bar.close()
    recording = {
        "what": "range queries against Prometheus, kept as the raw responses",
        "source": "prometheus",
        "prometheus_url": _shown(str(getattr(prom, "url", prometheus))),  # no user:password in the manifest
        "start_utc": start_at.isoformat(),
        "end_utc": end_at.isoformat(),
        "step": str(step),
        "queries": chosen,
        "warnings": notes,
        "collected_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commands": {"collect": "npanalytics collect --prometheus URL --start ... --end ... --step ..."},
    }
    kinds = {f: "prom_samples" for f in frames}
    derivations = {f: [Derivation("read_prometheus_response", f"raw/prometheus/{f}.json", "prom_samples")]
                   for f in frames}
    if catalogs:
        proxy_bodies = [body for f in chosen if f.startswith("kubeproxy_") and chosen[f] == DEFAULT_QUERIES.get(f)
                        for body in responses[f]]
        recording["catalogs"] = _add_catalogs(frames, kinds, raw, derivations, ksm_body, proxy_bodies, end_at,
                                              api=kubeconfig is not None)
    default_description = f"Prometheus series from {start_at.isoformat()} to {end_at.isoformat()}"
    if prometheus is None:
        recording = {"what": "a snapshot of the Kubernetes API, kept as the raw list responses",
                     "source": "kubernetes", "collected_utc": recording["collected_utc"], "commands": {}}
    if kubeconfig is not None:
        server = _add_kubernetes(frames, kinds, raw, derivations, recording, kubeconfig=kubeconfig,
                                 context=context, watch_seconds=watch_seconds)
        if prometheus is None:
            default_description = f"Kubernetes API objects of {server}"
    dataset = Dataset(
        name=ds_name,
        description=description or default_description,
        frames=frames,
        kinds=kinds,
        recording=recording,
        raw=raw,
        derivations=derivations,
    )
    dataset.save(target, overwrite=overwrite)
    return dataset


def _catalog_names(api: bool) -> dict[str, str]:
    """Frame name of each catalog kind; with the Kubernetes API's frames, KSM's are ``ksm_*``."""
    return {kind: kind.replace("k8s_", "ksm_") if api and kind.startswith("k8s_") else kind
            for kind in CATALOG_KINDS}


def _ksm_selector() -> str:
    """Every kube-state-metrics family the catalog reads, as raw samples of the last :data:`KSM_LOOKBACK`."""
    from .collectors.kube_state import KSM_QUERIES

    return '{__name__=~"' + "|".join(KSM_QUERIES) + f'"}}[{KSM_LOOKBACK}]'


def _kube_state_response(prom: Any, end_at: pd.Timestamp) -> bytes:
    """The raw answer of the kube-state-metrics instant query at ``end_at``."""
    bodies: list[bytes] = []
    get_prometheus_instant(prom, _ksm_selector(), at=end_at, on_response=lambda *reply: bodies.append(reply[3]))
    return bodies[0]


def _parsed(body: bytes) -> pd.DataFrame:
    """A saved response read again (its Prometheus warnings were passed on when it was fetched)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrometheusWarning)
        return read_prometheus_response(body)


def _add_catalogs(
    frames: dict[str, pd.DataFrame], kinds: dict[str, str], raw: dict[str, bytes],
    derivations: dict[str, list[Derivation]], ksm_body: bytes, proxy_bodies: list[bytes],
    end_at: pd.Timestamp, *, api: bool,
) -> dict[str, Any]:
    """Run the kube-state-metrics and kube-proxy catalogs into the dataset's parts; returns their notes.

    ``raw/prometheus/kube-state.json`` is the KSM answer alone; ``raw/prometheus/kube-proxy.json``
    is a JSON array of it and the kube-proxy range answers (the KSM nodes name the
    ``instance`` values), so that each catalog is derived again from one file.
    """
    at = end_at.isoformat()
    raw[KSM_RAW] = ksm_body
    raw[PROXY_RAW] = b"[" + b",".join([ksm_body, *proxy_bodies]) + b"]"
    names = _catalog_names(api)
    done: dict[str, Any] = {
        "kube_state": {"query": _ksm_selector(), "at_utc": at, "raw": KSM_RAW},
        "kube_proxy": {"responses": len(proxy_bodies), "raw": PROXY_RAW},
    }
    if api:
        done["kube_state"]["note"] = "the Kubernetes API's frames are k8s_*; these (kube-state-metrics') ksm_*"
    for catalog, reader, path, run in (
        ("kube_state", "kube_state_from_prometheus", KSM_RAW, _kube_state_outputs),
        ("kube_proxy", "kube_proxy_from_prometheus", PROXY_RAW, _kube_proxy_outputs),
    ):
        try:
            outputs, result = run(_parsed(raw[path]), at)
        except Exception as exc:  # noqa: BLE001 - a catalog's failure must not lose the whole recording
            message = (f"{path}: the {catalog} catalog failed on the collected series "
                       f"({type(exc).__name__}: {exc}); its frames are left out, the responses are kept")
            warnings.warn(NpaWarning(message), stacklevel=3)
            done[catalog]["error"] = message
            continue
        for kind, df in outputs.items():
            df.attrs = {}
            frames[names[kind]], kinds[names[kind]] = df, kind
            derivations[names[kind]] = [Derivation(reader, path, kind, options={"at": at})]
        done[catalog].update(frames=[names[k] for k in outputs], notes=list(result.notes))
        if catalog == "kube_state":
            done[catalog]["variant"] = result.variant
    return done


def _add_kubernetes(
    frames: dict[str, pd.DataFrame], kinds: dict[str, str], raw: dict[str, bytes],
    derivations: dict[str, list[Derivation]], recording: dict[str, Any], *,
    kubeconfig: str | os.PathLike[str], context: str | None, watch_seconds: float | None,
) -> str:
    """Snapshot (and watch) the Kubernetes API into the dataset's parts; returns the server URL."""
    import tempfile

    from .collectors.k8s import SNAPSHOT_KINDS, get_endpoint_snapshot, watch_endpoints

    snapshot = get_endpoint_snapshot(kubeconfig=kubeconfig, context=context)
    # which list pages each frame is read from ("endpoints": slices, or the legacy objects)
    resources = {"services": ("services",), "endpoints": ("endpointslices", "endpoints"),
                 "pods": ("pods",), "nodes": ("nodes",)}
    for attr, kind in SNAPSHOT_KINDS.items():
        frames[kind], kinds[kind] = getattr(snapshot, attr), kind
        pages = [rel for rel in sorted(snapshot.raw) if rel.split("/")[0] in resources[attr]]
        derivations[kind] = [Derivation("read_k8s_objects", f"raw/k8s/{rel}", kind, options={"origin": "api"})
                             for rel in pages]
    raw.update({f"raw/k8s/{rel}": body for rel, body in snapshot.raw.items()})
    part: dict[str, Any] = {
        "server": snapshot.server,
        "context": context,
        "taken_utc": snapshot.taken_at.isoformat() if snapshot.taken_at is not None else None,
        "resource_versions": snapshot.resource_versions,
        "notes": snapshot.notes,
        "command": "npanalytics collect --kubeconfig PATH [--context C] [--watch SECONDS]",
    }
    if watch_seconds is not None:
        with tempfile.TemporaryDirectory(prefix="npa-watch-") as tmp:
            log = Path(tmp) / "endpoint-watch.jsonl"
            churn = watch_endpoints(watch_seconds, kubeconfig=kubeconfig, context=context, record_to=log)
            raw["raw/k8s/endpoint-watch.jsonl"] = log.read_bytes()
        part["watch"] = {"seconds": watch_seconds, "changes": len(churn), "notes": churn.attrs.get("notes", [])}
        churn.attrs = {}
        frames["endpoint_churn"], kinds["endpoint_churn"] = churn, "endpoint_churn"
        derivations["endpoint_churn"] = [
            Derivation("read_endpoint_watch_log", "raw/k8s/endpoint-watch.jsonl", "endpoint_churn")]
    recording["kubernetes"] = part
    return str(snapshot.server)


# -- command line -------------------------------------------------------------------------------


def _query_arg(text: str) -> tuple[str, str]:
    import argparse

    name, sep, expr = text.partition("=")
    if sep and _FRAME_NAME.match(name.strip()):
        return name.strip(), expr.strip()
    if _FRAME_NAME.match(text.strip()):  # a bare metric name names its own frame
        return text.strip(), text.strip()
    raise argparse.ArgumentTypeError(f"expected NAME=PROMQL (or a bare metric name), got {text!r}")


def register(sub: Any) -> None:
    """Add the ``collect`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "collect",
        help="record Prometheus series (and Kubernetes API objects) into a dataset folder",
        description=(
            "Run range queries against Prometheus (the raw kube-state-metrics and kube-proxy series "
            "by default, plus --query) and write a dataset: one prom_samples frame per query and the "
            "raw responses under raw/prometheus/; with the default queries also the catalog frames "
            "(k8s_services, k8s_endpoints, k8s_pods, k8s_nodes from kube-state-metrics at --end; "
            "proxy_latency, proxy_rule_counts, proxy_status from kube-proxy's series). "
            "Times: now, now-1h, ISO 8601 with a zone, or Unix seconds. "
            "With --kubeconfig, also a snapshot of the Kubernetes API (Services, EndpointSlices, Pods, "
            "Nodes; the list responses under raw/k8s/) and, with --watch, the EndpointSlice churn. "
            "Give --prometheus, --kubeconfig or both."
        ),
    )
    p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL")
    p.add_argument("--kubeconfig", metavar="PATH", help="snapshot the Kubernetes API of this kubeconfig")
    p.add_argument("--context", metavar="C", help="kubeconfig context (default: its current one)")
    p.add_argument("--watch", metavar="SECONDS", type=float,
                   help="after the snapshot, record EndpointSlice changes for SECONDS")
    p.add_argument("--start", help="range start (default: end - 1h)")
    p.add_argument("--end", help="range end (default: now)")
    p.add_argument("--step", default=DEFAULT_STEP, help=f"resolution (default {DEFAULT_STEP})")
    p.add_argument("--out", metavar="DIR", required=True, help="dataset folder to write")
    p.add_argument("--query", metavar="NAME=PROMQL", action="append", type=_query_arg, default=[],
                   help="another query (repeatable); NAME is its frame")
    p.add_argument("--no-default-queries", action="store_true", help="only the --query ones")
    p.add_argument("--token-file", metavar="FILE", help="file holding a bearer token")
    p.add_argument("--header", metavar="NAME:VALUE", action="append", default=[], help="extra HTTP header")
    p.add_argument("--ca-cert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument("--retries", type=int, default=2, help="retries of failed connections and 5xx (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    p.set_defaults(func=_run)


def _run(args: Any) -> int:
    headers = {}
    for item in args.header:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"--header expects NAME:VALUE, got {item!r}")
        headers[key.strip()] = value.strip()
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    if args.insecure and args.ca_cert:
        raise ValueError("give either --insecure or --ca-cert, not both")
    verify: bool | str = False if args.insecure else (args.ca_cert or True)
    if args.prometheus is None and args.kubeconfig is None:
        raise ValueError("give --prometheus URL, --kubeconfig PATH or both")
    if (args.context is not None or args.watch is not None) and args.kubeconfig is None:
        raise ValueError("--context and --watch need --kubeconfig")
    if args.watch is not None and not args.watch > 0:
        raise ValueError(f"--watch must be a positive number of seconds, got {args.watch:g}")
    dataset = collect(
        args.out, prometheus=args.prometheus, start=args.start, end=args.end, step=args.step,
        queries=dict(args.query), default_queries=not args.no_default_queries, token=token,
        headers=headers, verify=verify, timeout=args.timeout, retries=args.retries, overwrite=args.overwrite,
        kubeconfig=args.kubeconfig, context=args.context, watch_seconds=args.watch,
    )
    prom = [f for f, kind in dataset.kinds.items() if kind == "prom_samples"]
    empty = [f for f in prom if dataset.frames[f].empty]
    rows = sum(len(dataset.frames[f]) for f in prom)
    print(f"npanalytics collect: wrote {dataset.path}: {len(dataset.frames)} frames"
          + (f", {rows} samples" if prom else "")
          + (f"; {len(empty)} queries matched nothing: {', '.join(empty)}" if empty else ""))
    for catalog, part in dataset.recording.get("catalogs", {}).items():
        sizes = ", ".join(f"{len(dataset.frames[f])} {f}" for f in part.get("frames", []))
        print(f"npanalytics collect: {catalog} catalog: " + (part.get("error") or sizes)
              + (f" (variant {part['variant']})" if part.get("variant") else ""))
    k8s = dataset.recording.get("kubernetes")
    if k8s:
        counts = {"k8s_services": "service ports", "k8s_endpoints": "endpoints", "k8s_pods": "pods",
                  "k8s_nodes": "nodes", "endpoint_churn": "endpoint changes"}
        sizes = ", ".join(f"{len(dataset.frames[k])} {what}" for k, what in counts.items() if k in dataset.frames)
        print(f"npanalytics collect: Kubernetes API at {k8s['server']}: {sizes}")
        for note in k8s["notes"] + k8s.get("watch", {}).get("notes", []):
            print(f"npanalytics collect: note: {note}")
    return 0
