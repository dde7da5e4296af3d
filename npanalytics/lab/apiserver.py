"""A read-only Kubernetes API on loopback, serving the objects of a lab scenario.

No kube-apiserver can run on the lab's machines, so :class:`LabApiServer` plays
its part for the Kubernetes collector (:mod:`npanalytics.collectors.k8s`) and
its tests: the real ``kubernetes`` client talks to it over real HTTP. It holds
the objects :func:`~npanalytics.lab.k8s_objects.cluster_objects` renders and
serves them the way the API documents it:

* **list** of Services, EndpointSlices (``discovery.k8s.io/v1``), Pods, Nodes
  and legacy Endpoints, cluster-wide or in one namespace, with
  ``labelSelector`` (equality and set-based), ``limit``/``continue``
  pagination (every page of a list is read from the same snapshot: the one of
  the first page's ``resourceVersion``) and ``remainingItemCount``;
* **watch** (``?watch=true``): a chunked stream of JSON lines
  ``{"type": ..., "object": ...}`` with ``ADDED``/``MODIFIED``/``DELETED``
  events after ``resourceVersion`` (or synthetic ``ADDED`` events for the
  current state when none is given), a ``BOOKMARK`` before the stream ends
  at ``timeoutSeconds`` when ``allowWatchBookmarks`` is set, and an ``ERROR``
  event carrying a 410 ``Expired`` Status when the version has been compacted;
* errors as ``Status`` objects: 401 ``Unauthorized`` without the bearer token
  (when one is set), 403 ``Forbidden`` for the (verb, resource) pairs in
  ``forbidden``, 404 ``NotFound`` for unknown paths (and for EndpointSlices
  when they are hidden, as on a server older than discovery.k8s.io/v1),
  410 ``Expired`` for a continue token whose snapshot was compacted,
  400 ``BadRequest`` for malformed parameters, 405 for anything but GET.

How versions work: like etcd, the server keeps one global revision. Every
object change (:meth:`LabApiServer.set_pod_states`, :meth:`~LabApiServer.set_objects`)
takes the next revision, which becomes the object's
``metadata.resourceVersion`` (the content hash :mod:`k8s_objects` writes is
replaced) and an event in the watch history. :meth:`~LabApiServer.compact`
forgets the history and the old snapshots, so that older continue tokens and
watch positions get 410, as after an etcd compaction. The test hooks
:meth:`~LabApiServer.drop_watches` (cut every open watch mid-stream) and
``before_request`` (called with each request before it is served) let tests
put these situations at exact places.

Nothing here needs root or touches the network beyond a listening socket on
127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hmac
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .k8s_objects import as_list, cluster_objects
from .scenario import Scenario

__all__ = ["LabApiServer", "RequestRecord", "RESOURCES", "kubeconfig_dict", "DEFAULT_WATCH_SECONDS"]

#: Resources served: plural -> (API path prefix, group, namespaced).
RESOURCES: Mapping[str, tuple[str, str, bool]] = {
    "services": ("/api/v1", "", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "discovery.k8s.io", True),
    "pods": ("/api/v1", "", True),
    "nodes": ("/api/v1", "", False),
    "endpoints": ("/api/v1", "", True),
}
#: Length of a watch that sends no ``timeoutSeconds`` (the real default is 30-60 min).
DEFAULT_WATCH_SECONDS = 60.0
#: How often an idle watch checks for a drop or a stop request (seconds).
_POLL_SECONDS = 0.05
_PATH_RE = re.compile(
    r"^(?P<prefix>/api/v1|/apis/discovery\.k8s\.io/v1)"
    r"(?:/namespaces/(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?))?"
    r"/(?P<resource>[a-z]+)/?$"
)
_TRUE = ("true", "1")


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (for tests to check what a client sent).

    Attributes
    ----------
    method, path : str
        HTTP method and path (without the query).
    query : dict of str to str
        Query parameters (last value wins).
    verb : str
        ``list``, ``watch`` or ``""`` when the path names no resource.
    resource : str
        The resource plural, or ``""``.
    namespace : str or None
        The namespace of a namespaced path.
    status : int
        HTTP status sent (200 for a watch, whatever its events).
    authorized : bool
        Whether the request carried an ``Authorization`` header (its value is not kept).
    """

    method: str
    path: str
    query: dict[str, str]
    verb: str
    resource: str
    namespace: str | None
    status: int
    authorized: bool


def _status(code: int, reason: str, message: str, *, details: Mapping[str, Any] | None = None,
            continue_token: str | None = None) -> dict[str, Any]:
    """A ``Status`` object as the API returns it with a failed request."""
    metadata: dict[str, Any] = {}
    if continue_token:
        metadata["continue"] = continue_token
    obj: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": metadata, "status": "Failure",
        "message": message, "reason": reason,
    }
    if details is not None:
        obj["details"] = dict(details)
    obj["code"] = code
    return obj


class _HttpError(Exception):
    """Raised inside a handler to answer with a Status object."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status["message"])
        self.status = status


# --- label selectors ------------------------------------------------------------------------

def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_REQ_RE = re.compile(
    r"^(?:(?P<notkey>!)\s*(?P<nk>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)$"
)


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a label selector (``a=b,c!=d,e,!f,g in (x,y),h notin (z)``) into a predicate.

    Raises
    ------
    ValueError
        Naming the requirement that could not be read.
    """
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_selector(text):
        m = _REQ_RE.match(part)
        if not m:
            raise ValueError(f"unable to parse requirement {part!r}")
        if m["notkey"]:
            checks.append(lambda labels, k=m["nk"]: k not in labels)
        elif m["op"]:
            key, value = m["key"], m["value"]
            if m["op"] == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if m["setop"] == "in":
                checks.append(lambda labels, k=m["key"], vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=m["key"], vs=values: labels.get(k) not in vs)
        else:
            checks.append(lambda labels, k=m["key"]: k in labels)
    return lambda labels: all(check(labels) for check in checks)


# --- kubeconfig ------------------------------------------------------------------------------

def kubeconfig_dict(url: str, *, token: str | None = None, context: str = "npa-lab",
                    namespace: str | None = None) -> dict[str, Any]:
    """A kubeconfig (as a dict) with one cluster, user and context for ``url``.

    Parameters
    ----------
    url : str
        API server URL (``http://127.0.0.1:PORT``).
    token : str, optional
        Bearer token of the user (none: an anonymous user entry).
    context : str
        Name of the cluster, user and context; it is the current context.
    namespace : str, optional
        The context's default namespace.
    """
    ctx: dict[str, Any] = {"cluster": context, "user": context}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token} if token else {}}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
        "preferences": {},
    }


# --- the server -----------------------------------------------------------------------------

def _key(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _content(obj: Mapping[str, Any]) -> str:
    """The object without its resourceVersion, for change detection."""
    clean = copy.deepcopy(dict(obj))
    clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k != "resourceVersion"}
    return json.dumps(clean, sort_keys=True)


def _bookmark(resource: str, revision: int) -> dict[str, Any]:
    """A BOOKMARK event's object: only kind, apiVersion and the resourceVersion."""
    empty = as_list(resource, [], revision)
    return {"kind": empty["kind"][: -len("List")], "apiVersion": empty["apiVersion"],
            "metadata": {"resourceVersion": str(revision)}}


@dataclasses.dataclass
class _Watcher:
    dropped: bool = False


class LabApiServer:
    """A read-only Kubernetes API server on loopback, backed by a scenario's objects.

    Parameters
    ----------
    source : Scenario or mapping of str to list of dict
        A lab scenario (rendered with :func:`cluster_objects`, including the
        legacy Endpoints) or objects shaped as :func:`cluster_objects` returns
        them (keys among ``services``, ``endpointslices``, ``pods``, ``nodes``,
        ``endpoints``).
    pod_states : mapping, optional
        Initial pod states (as :func:`cluster_objects` takes them); scenario only.
    token : str, optional
        When given, every request must carry ``Authorization: Bearer <token>``;
        others get 401.
    forbidden : iterable of (verb, resource)
        Pairs such as ``("list", "pods")`` or ``("watch", "endpointslices")``
        answered with 403.
    endpointslices : bool, default True
        Serve discovery.k8s.io/v1 EndpointSlices; ``False`` answers 404 for
        them, like a server that predates them.
    host : str, default "127.0.0.1"
    port : int, default 0
        0 picks a free port; see :attr:`url`.

    Attributes
    ----------
    requests : list of RequestRecord
        Every request answered, in order.
    events_sent : int
        ADDED/MODIFIED/DELETED events written to watch streams so far (tests
        wait on it before cutting a stream, so that the event is known delivered).
    max_page_items : int or None
        When set (>= 1), a paginated list sends at most this many items per page
        even if the client asked for more (the API may return fewer items than
        ``limit``; clients must follow ``continue``, not count items).
    max_watch_seconds : float or None
        When set, every watch stream ends (cleanly, after a BOOKMARK when
        asked) after at most this many seconds, whatever ``timeoutSeconds`` says.
    watch_expired_status : bool
        ``False`` (default): a watch from a compacted version gets a 200 stream
        with one ``ERROR`` event carrying the 410 Status (what the watch cache
        does); ``True``: an HTTP 410 response with that Status instead.
    before_request : callable or None
        Called as ``before_request(record_so_far)`` (a :class:`RequestRecord`
        with status 0) before a list or watch is served; tests use it to
        change or compact the state at an exact request.

    Examples
    --------
    >>> with LabApiServer(scenario, token="s3cret") as server:  # doctest: +SKIP
    ...     server.write_kubeconfig(tmp_path / "kubeconfig")
    ...     server.set_pod_states({"web-1": {"ready": False}})
    """

    def __init__(
        self,
        source: Scenario | Mapping[str, list[Mapping[str, Any]]],
        *,
        pod_states: Mapping[str, Any] | None = None,
        token: str | None = None,
        forbidden: Iterable[tuple[str, str]] = (),
        endpointslices: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.scenario = source if isinstance(source, Scenario) else None
        self.token = token
        self.forbidden = {(str(v), str(r)) for v, r in forbidden}
        self.endpointslices = endpointslices
        self.requests: list[RequestRecord] = []
        self.before_request: Callable[[RequestRecord], None] | None = None
        self.watch_expired_status = False
        self.events_sent = 0
        self.max_page_items: int | None = None
        self.max_watch_seconds: float | None = None
        self._cond = threading.Condition()
        self._revision = 1
        self._oldest = 1  # watches from an older revision get 410
        self._store: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._snapshots: dict[int, dict[str, dict[str, dict[str, Any]]]] = {}
        self._history: list[tuple[int, str, str, dict[str, Any]]] = []
        self._watchers: list[_Watcher] = []
        self._stopping = False
        if self.scenario is not None:
            objects = cluster_objects(self.scenario, pod_states=pod_states, include_endpoints=True)
        elif pod_states:
            raise ValueError("pod_states needs a Scenario source")
        else:
            objects = source  # type: ignore[assignment]
        self.set_objects(objects)
        self._history.clear()  # the initial state is not a change
        self._oldest = self._revision
        self._httpd = _Server((host, port), _Handler, self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the server."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def resource_version(self) -> str:
        """The current revision, as a list would report it."""
        with self._cond:
            return str(self._revision)

    def start(self) -> LabApiServer:
        """Serve in a daemon thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="npa-lab-apiserver",
                                            kwargs={"poll_interval": 0.1}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """End open watches, stop serving and close the socket."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LabApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | os.PathLike[str], *, token: str | None = None,
                         context: str = "npa-lab", namespace: str | None = None) -> Path:
        """Write a kubeconfig pointing at this server (JSON, which every YAML reader reads).

        ``token`` defaults to the server's own token. Returns the path.
        """
        config = kubeconfig_dict(self.url, token=token if token is not None else self.token,
                                 context=context, namespace=namespace)
        target = Path(path)
        target.write_text(json.dumps(config, indent=2) + "\n")
        target.chmod(0o600)
        return target

    # -- state changes --------------------------------------------------------------------

    def set_objects(self, objects: Mapping[str, list[Mapping[str, Any]]]) -> int:
        """Replace the state by ``objects``; changed objects get new revisions and watch events.

        Resources not named in ``objects`` keep their objects. Returns the new revision.
        """
        unknown = sorted(set(objects) - set(RESOURCES))
        if unknown:
            raise ValueError(f"unknown resources {unknown}; known: {sorted(RESOURCES)}")
        with self._cond:
            for resource, items in objects.items():
                current = self._store[resource]
                new = {_key(o): o for o in items}
                for key in sorted(set(current) - set(new)):
                    self._revision += 1
                    gone = copy.deepcopy(current.pop(key))
                    gone["metadata"]["resourceVersion"] = str(self._revision)
                    self._history.append((self._revision, resource, "DELETED", gone))
                for key in sorted(new):
                    old = current.get(key)
                    if old is not None and _content(old) == _content(new[key]):
                        continue
                    self._revision += 1
                    obj = copy.deepcopy(dict(new[key]))
                    obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self._revision)}
                    current[key] = obj
                    self._history.append((self._revision, resource, "ADDED" if old is None else "MODIFIED", obj))
            self._snapshots[self._revision] = {r: dict(v) for r, v in self._store.items()}
            self._cond.notify_all()
            return self._revision

    def set_pod_states(self, pod_states: Mapping[str, Any], *, at: Any = None) -> int:
        """Re-render the scenario with ``pod_states`` (see :func:`cluster_objects`) and apply it.

        Returns the new revision (unchanged when nothing changed).
        """
        if self.scenario is None:
            raise ValueError("set_pod_states needs a server built from a Scenario")
        return self.set_objects(cluster_objects(self.scenario, at=at, pod_states=pod_states,
                                                include_endpoints=True))

    def compact(self) -> int:
        """Forget the watch history and old list snapshots (as an etcd compaction does).

        Continue tokens of older lists and watches from older versions get 410
        Expired afterwards. Returns the compacted (current) revision.
        """
        with self._cond:
            self._history.clear()
            self._oldest = self._revision
            self._snapshots = {self._revision: self._snapshots[self._revision]}
            self._cond.notify_all()
            return self._revision

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream (no end of stream); returns how many."""
        with self._cond:
            count = 0
            for watcher in self._watchers:
                if not watcher.dropped:
                    watcher.dropped = True
                    count += 1
            self._cond.notify_all()
            return count

    def open_watches(self) -> int:
        """Number of watch streams being served."""
        with self._cond:
            return sum(not w.dropped for w in self._watchers)

    # -- serving (called from handler threads) ---------------------------------------------

    def _check(self, record: RequestRecord, authorization: str | None) -> None:
        if self.token is not None:
            expected = f"Bearer {self.token}"
            if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
                raise _HttpError(_status(401, "Unauthorized", "Unauthorized"))
        if not record.resource or (record.resource == "endpointslices" and not self.endpointslices):
            raise _HttpError(_status(404, "NotFound", "the server could not find the requested resource",
                                     details={}))
        if (record.verb, record.resource) in self.forbidden:
            group = RESOURCES[record.resource][1]
            scope = (f'in the namespace "{record.namespace}"' if record.namespace
                     else "at the cluster scope")
            message = (f'{record.resource}{"." + group if group else ""} is forbidden: User '
                       f'"system:serviceaccount:npa-lab:collector" cannot {record.verb} resource '
                       f'"{record.resource}" in API group "{group}" {scope}')
            details = {"group": group, "kind": record.resource} if group else {"kind": record.resource}
            raise _HttpError(_status(403, "Forbidden", message, details=details))

    @staticmethod
    def _selector(query: Mapping[str, str]) -> Callable[[Mapping[str, str]], bool]:
        try:
            return parse_label_selector(query.get("labelSelector", ""))
        except ValueError as exc:
            raise _HttpError(_status(400, "BadRequest", f"unable to parse labelSelector: {exc}")) from None

    @staticmethod
    def _matches(obj: Mapping[str, Any], namespace: str | None,
                 selector: Callable[[Mapping[str, str]], bool]) -> bool:
        meta = obj["metadata"]
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        return selector(meta.get("labels") or {})

    def _list(self, record: RequestRecord, query: Mapping[str, str]) -> dict[str, Any]:
        selector = self._selector(query)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise _HttpError(_status(400, "BadRequest", f"invalid limit {query.get('limit')!r}")) from None
        token = query.get("continue")
        start = ""
        with self._cond:
            if token:
                rv, start = self._decode_continue(token)
                if rv not in self._snapshots:
                    fresh = self._encode_continue(self._revision, start)
                    raise _HttpError(_status(
                        410, "Expired",
                        f"the continue token of revision {rv} has expired (compacted at {self._oldest}); "
                        "list again without continue for a consistent result, or continue with the "
                        "token in this Status for an inconsistent one",
                        continue_token=fresh))
            else:
                rv = self._revision
            items = self._snapshots[rv][record.resource]
        chosen = [items[k] for k in sorted(items) if k >= start
                  and self._matches(items[k], record.namespace, selector)]
        next_token, remaining = None, None
        if limit > 0 and self.max_page_items is not None:
            limit = min(limit, self.max_page_items)  # the API may send fewer items than asked
        if limit > 0 and len(chosen) > limit:
            next_token = self._encode_continue(rv, _key(chosen[limit]))
            remaining = len(chosen) - limit if "labelSelector" not in query else None
            chosen = chosen[:limit]
        return as_list(record.resource, chosen, rv, continue_token=next_token, remaining_item_count=remaining)

    @staticmethod
    def _encode_continue(rv: int, start: str) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, str]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            return int(data["rv"]), str(data["start"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise _HttpError(_status(400, "BadRequest", "continue key is not valid")) from None

    def _watch(self, handler: _Handler, record: RequestRecord, query: Mapping[str, str],
               on_start: Callable[[], None]) -> None:
        selector = self._selector(query)
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise _HttpError(_status(400, "BadRequest", "invalid timeoutSeconds")) from None
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds)  # servers end watches when they like
        rv_text = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks", "").lower() in _TRUE
        if rv_text not in ("", "0") and not rv_text.isdigit():
            raise _HttpError(_status(400, "BadRequest", f"invalid resourceVersion {rv_text!r}"))
        watcher = _Watcher()
        deadline = time.monotonic() + timeout
        with self._cond:
            pending: list[tuple[str, dict[str, Any]]] = []
            if rv_text in ("", "0"):
                position = self._revision
                items = self._store[record.resource]
                pending = [("ADDED", items[k]) for k in sorted(items)]
            else:
                position = int(rv_text)
                if position < self._oldest and self.watch_expired_status:
                    raise _HttpError(_status(
                        410, "Expired", f"too old resource version: {rv_text} ({self._oldest})"))
            self._watchers.append(watcher)
        try:
            on_start()
            handler.start_stream()
            while True:
                with self._cond:
                    expired = position < self._oldest
                    if not expired:
                        for rev, resource, kind, obj in self._history:
                            if rev > position and resource == record.resource:
                                pending.append((kind, obj))
                        position = self._revision
                    if not pending and not expired and not watcher.dropped and not self._stopping:
                        self._cond.wait(min(_POLL_SECONDS * 4, max(0.0, deadline - time.monotonic())))
                    dropped, stopping = watcher.dropped, self._stopping
                if dropped:
                    handler.cut()
                    return
                if expired:
                    handler.send_event("ERROR", _status(
                        410, "Expired", f"too old resource version: {rv_text} ({self._oldest})"))
                    break
                for kind, obj in pending:
                    if self._matches(obj, record.namespace, selector):
                        handler.send_event(kind, obj)
                        with self._cond:
                            self.events_sent += 1
                pending = []
                if stopping or time.monotonic() >= deadline:
                    if bookmarks:
                        handler.send_event("BOOKMARK", _bookmark(record.resource, position))
                    break
            handler.end_stream()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self._cond:
                self._watchers.remove(watcher)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, api: LabApiServer) -> None:
        super().__init__(address, handler)
        self.api = api


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        api = self.server.api
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        m = _PATH_RE.match(parsed.path)
        resource, namespace = "", None
        if m and m["resource"] in RESOURCES and RESOURCES[m["resource"]][0] == m["prefix"]:
            resource = m["resource"]
            namespace = m["namespace"]
            if namespace and not RESOURCES[resource][2]:
                resource = ""
        verb = ("watch" if query.get("watch", "").lower() in _TRUE else "list") if resource else ""
        record = RequestRecord("GET", parsed.path, query, verb, resource, namespace, 0,
                               self.headers.get("Authorization") is not None)
        try:
            api._check(record, self.headers.get("Authorization"))
            if api.before_request is not None:
                api.before_request(record)
            if verb == "watch":
                api._watch(self, record, query, on_start=lambda: self._record(api, record, 200))
                return
            body = api._list(record, query)
        except _HttpError as exc:
            self._record(api, record, exc.status["code"])
            self._reply(exc.status["code"], exc.status)
            return
        self._record(api, record, 200)
        self._reply(200, body)

    def _not_allowed(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status = _status(405, "MethodNotAllowed", "the lab API server is read-only")
        self._record(self.server.api, RequestRecord(self.command, self.path, {}, "", "", None, 405,
                                                   self.headers.get("Authorization") is not None), 405)
        self._reply(405, status)

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed  # noqa: N815

    @staticmethod
    def _record(api: LabApiServer, record: RequestRecord, status: int) -> None:
        with api._cond:
            api.requests.append(dataclasses.replace(record, status=status))

    def _reply(self, code: int, obj: Mapping[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # -- chunked watch streams --------------------------------------------------------------

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def send_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Close the connection abruptly, in the middle of the chunked stream."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Quiet: requests are kept in :attr:`LabApiServer.requests` instead."""
