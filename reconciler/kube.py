"""The Kubernetes API edge: the only module that imports the kubernetes client.

Holds the client connection (kubeconfig / context / in-cluster), resource discovery (kind ->
REST path, refreshed when a freshly installed CRD is not known yet), server-side apply with one
field manager and strict field validation (optionally as a server-side dry run, or on the status
subresource), reads, deletes, events, and the wait for a CRD to be Established; for the router
and leader election also the Deployment scale subresource, Leases with optimistic concurrency,
a Secret read by name, list + watch, and pod logs (read whole or followed, as `kubectl logs`
does). Everything above it passes plain dicts in and gets plain dicts back.

The first contact (`reach`) is not retried: a server that never answered this process is
given up on within the command's `--request-timeout`, as kubectl does. After it, every request
is retried with exponential backoff while the failure is one a healthy cluster recovers from
(connection refused while the API server restarts, 429, 500, 502, 503, 504): server-side
apply is idempotent, so repeating a request whose answer was lost is safe. The bound on that
wait belongs to the outage, not to each request (`Outage`, one per connection): every request
in flight, and every later one, gives up `retry_for` seconds after the server
stopped answering, and the first one to wait says once, through `Cluster.waiting`, what it waits
for. Each attempt has a timeout, and urllib3 retries nothing itself, so that no layer multiplies
the bound. Loops that are their own retry (leader election, the scaling coordinator) ask for one
bounded attempt instead (`timeout=`), so that no call outlives a lease while it backs off.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import tenacity
import urllib3
from kubernetes import client, config, dynamic
from kubernetes.client import exceptions as client_exceptions
from kubernetes.dynamic import exceptions as dynamic_exceptions

from reconciler import objects

FIELD_MANAGER = "mlext-reconciler"
RETRYABLE_STATUSES = frozenset({0, 429, 500, 502, 503, 504})
# The server is not there (not reached, or a proxy in front of it says so): an outage. A 429 or
# 500 is an answer from a server that is up.
OUTAGE_STATUSES = frozenset({0, 502, 503, 504})
CONNECT_TIMEOUT = 10.0  # seconds to open a connection (loopback or LAN: far more than enough)
CONNECTIONS = 64  # the connection pool: the most requests in flight at once
RETRY_FOR_SECONDS = 120.0  # long enough for an API server restart, short enough to give up

Body = objects.Object | list[objects.Object] | None  # a request body: an object or a JSON Patch


# --- The bound on waiting for a server that stopped answering: one budget per outage ----------
# It used to be per request: every request backed off for up to two minutes on its own, so an
# `apply` whose API server died spent two minutes per round of its concurrent workers and two
# more for each later phase (many minutes, silent throughout). An outage is shared
# instead: it starts with the first request that finds the server unreachable and ends with the
# first answer from it, and no request waits past `budget` seconds after it began, nor past
# `budget` seconds after its own start. Once the budget is spent a request still makes one
# short attempt, so a long-running loop notices a server that came back. Pure bookkeeping with
# an injected clock, tested without a server.

LONGEST_ATTEMPT = 90.0  # seconds one request may take: the API server ends its own at 60
LAST_ATTEMPT = 5.0  # seconds of the one attempt a request makes once the budget is spent


@dataclass
class Outage:
    """The current outage of one API server, if any, shared by every thread using it."""

    budget: float
    clock: Callable[[], float] = time.monotonic
    _since: float | None = None
    _announced: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def since(self) -> float | None:
        """When the outage began (the clock's time), None while the server answers."""
        return self._since

    def unreachable(self, attempt_started: float) -> None:
        """An attempt begun at `attempt_started` did not reach the server (or got 502-504)."""
        with self._lock:
            if self._since is None or attempt_started < self._since:
                self._since = attempt_started

    def answered(self) -> None:
        """The server answered (anything but 502-504): the outage, if any, is over."""
        if self._since is None and not self._announced:
            return  # the usual case, every request: no lock to take
        with self._lock:
            self._since = None
            self._announced = False

    def deadline(self, call_started: float) -> float:
        """When a request begun at `call_started` stops retrying."""
        own = call_started + self.budget
        since = self._since
        return own if since is None else min(own, since + self.budget)

    def remaining(self, call_started: float) -> float:
        """Seconds left before that request gives up (0 when its budget is spent)."""
        return max(0.0, self.deadline(call_started) - self.clock())

    def spent(self, call_started: float) -> bool:
        return self.clock() >= self.deadline(call_started)

    def attempt_timeout(self, call_started: float) -> float:
        """How long the next attempt may take: no longer than the time left (a server that
        accepts connections but never answers must not outlast the bound either), and never
        less than `LAST_ATTEMPT`, the attempt a request makes once the budget is spent."""
        return max(LAST_ATTEMPT, min(LONGEST_ATTEMPT, self.remaining(call_started)))

    def waited(self) -> float:
        """Seconds since the outage began (0 while the server answers)."""
        since = self._since
        return 0.0 if since is None else max(0.0, self.clock() - since)

    def announce(self) -> bool:
        """True once per outage: the first request to wait says what it waits for."""
        with self._lock:
            if self._since is None or self._announced:
                return False
            self._announced = True
            return True


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES


class Unreachable(KubeError):
    """The request did not reach the API server at `server`; `why` says how it failed
    ("connection refused"), without urllib3's wrapping; `waited`: the seconds it was retried
    for before giving up (0: not retried)."""

    def __init__(self, server: str, why: str, waited: float = 0.0) -> None:
        gave_up = f"; gave up after {waited:.0f} s" if waited else ""
        super().__init__(f"cannot reach the API server at {server} ({why}){gave_up}", 0)
        self.server = server
        self.why = why
        self.waited = waited


def _retryable(err: BaseException) -> bool:
    return isinstance(err, KubeError) and err.retryable


_T = TypeVar("_T")
_log = logging.getLogger(__name__)


def _retried(cluster: Cluster, attempt: Callable[[float], _T]) -> _T:
    """`attempt(timeout)` until it succeeds, fails for good, or the outage's budget is spent;
    a 500 only gets three tries, because the API server also answers 500 for some requests
    that can never succeed (an invalid apply patch of a custom resource), while a restart
    shows as refused connections, 503 or 504."""
    outage = cluster.outage
    started = outage.clock()
    exponential = tenacity.wait_exponential(multiplier=0.2, max=5.0)

    def stop(state: tenacity.RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, KubeError) and error.status == 500 and state.attempt_number >= 3:
            return True
        return outage.spent(started)

    def wait(state: tenacity.RetryCallState) -> float:
        # Never sleep past the deadline: the last attempt comes when the budget ends.
        return min(exponential(state), max(0.05, outage.remaining(started)))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, KubeError) and error.status in OUTAGE_STATUSES and outage.announce():
            why = error.why if isinstance(error, Unreachable) else f"HTTP {error.status}: {error}"
            cluster.waiting(
                f"waiting for the API server at {cluster.server} ({why}), "
                f"giving up in {outage.remaining(started):.0f} s"
            )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(lambda: attempt(outage.attempt_timeout(started)))
    except KubeError as err:
        waited = outage.waited()
        if isinstance(err, Unreachable) and waited >= 1:
            raise Unreachable(err.server, err.why, waited) from err
        if err.status in OUTAGE_STATUSES and waited >= 1:
            raise KubeError(f"{err}; gave up after {waited:.0f} s", err.status) from err
        raise


def _note(cluster: Cluster, status: int, attempt_started: float) -> None:
    """Tell the connection's outage how an attempt went (`status` 0: not reached)."""
    if status in OUTAGE_STATUSES:
        cluster.outage.unreachable(attempt_started)
    else:
        cluster.outage.answered()


@contextlib.contextmanager
def _attempt(cluster: Cluster) -> Iterator[float]:
    """One attempt at the API server, yielding when it started: inside it the client's
    ApiException becomes a KubeError and a request that did not get through an Unreachable,
    and the connection's outage hears of either (a 2xx or other answer is the caller's to note,
    once it has read what it needs)."""
    started = cluster.outage.clock()
    try:
        yield started
    except client_exceptions.ApiException as err:
        _note(cluster, err.status or 0, started)
        raise KubeError(_reason(err.body, err.reason), err.status or 0) from err
    except (OSError, urllib3.exceptions.HTTPError) as err:  # refused while a server restarts
        _note(cluster, 0, started)
        raise Unreachable(cluster.server, _why(err)) from err


_TIMED_OUT = "no answer in time"


def _why(err: BaseException) -> str:
    """How a request failed to reach the server, in a few words: 'connection refused' rather
    than urllib3's 'HTTPSConnectionPool(...): Max retries exceeded ... (Caused by ...)'. The
    innermost cause speaks first: urllib3 files a refused connection under its timeouts."""
    chain: list[BaseException] = []
    found: BaseException | None = err
    while found is not None and found not in chain:
        chain.append(found)
        reason = getattr(found, "reason", None)  # urllib3's MaxRetryError wraps the cause
        found = reason if isinstance(reason, BaseException) else found.__cause__
    for cause in reversed(chain):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name: {cause.strerror}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        if isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError):
            return _TIMED_OUT
        if isinstance(cause, urllib3.exceptions.ProtocolError):
            return "the connection was closed mid-request"
    return str(getattr(chain[-1], "strerror", None) or chain[-1])


def _log_waiting(line: str) -> None:
    _log.warning("%s", line)


class WriteObserver(Protocol):
    """Told of every persisted write of an object (apply, create, patch, delete): `sending`
    before the request goes out, `settled` once it is over, with the object as the server
    stored it (None when the write failed, or for a delete; `deleted`: a delete that was
    accepted). A live-state cache keeps itself current so, and tells its own writes' watch
    events from everyone else's."""

    def sending(self, target: objects.Object) -> None: ...

    def settled(
        self, target: objects.Object, stored: objects.Object | None, deleted: bool
    ) -> None: ...


@dataclass
class Cluster:
    """A connection to one cluster's API server. Safe to share between threads: requests go
    through urllib3's pool, and discovery (whose cache is not thread-safe) takes a lock.

    `requests` counts the requests sent, by verb (get, list, watch, create, patch, update,
    delete; a dry run is `patch-dry-run`), for the loop's metrics. `observers` are told of every
    persisted write (`WriteObserver`)."""

    api: client.ApiClient
    _dynamic: dynamic.DynamicClient | None = None
    # (apiVersion, kind) -> discovered resource: the dynamic client's own lookup walks its whole
    # discovery tree, on every request; dropped with the discovery.
    _resources: dict[tuple[str, str], Any] = field(default_factory=dict)
    discovery_lock: threading.Lock = field(default_factory=threading.Lock)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    # Weak: a one-shot command's `Listing` is an observer for as long as it is in use.
    observers: weakref.WeakSet[WriteObserver] = field(default_factory=weakref.WeakSet)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)
    # The current outage of the server, shared by every request on this connection.
    outage: Outage = field(default_factory=lambda: Outage(RETRY_FOR_SECONDS))
    # Told once per outage what the requests wait for (a command prints it on stderr).
    waiting: Callable[[str], None] = field(default_factory=lambda: _log_waiting)
    # Where the connection's settings came from, for messages: "kubeconfig FILE, context NAME"
    # or "in-cluster service account".
    origin: str = ""

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def count(self, verb: str) -> None:
        with self._count_lock:
            self.requests[verb] += 1

    def sending(self, target: objects.Object) -> None:
        for observer in list(self.observers):
            observer.sending(target)

    def settled(self, target: objects.Object, stored: objects.Object | None, deleted: bool) -> None:
        for observer in list(self.observers):
            observer.settled(target, stored, deleted)

    @property
    def dynamic(self) -> dynamic.DynamicClient:
        if self._dynamic is None:
            self._dynamic = _TimedDynamicClient(self.api)
        return self._dynamic


class _TimedDynamicClient(dynamic.DynamicClient):
    """The dynamic client, whose discovery requests carry no timeout of their own: a server
    that accepts connections but never answers would hold discovery forever."""

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", (CONNECT_TIMEOUT, LONGEST_ATTEMPT))
        return super().request(method, path, body, **params)


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    retry_for: float = RETRY_FOR_SECONDS,
) -> Cluster:
    """Connect with a kubeconfig (default: $KUBECONFIG or ~/.kube/config), or in-cluster.
    `retry_for`: seconds to keep retrying once the server stops answering."""
    configuration = client.Configuration()
    # One kept-alive connection per concurrent request (the client's default is 5 per CPU, and
    # a request beyond the pool opens a new TLS connection and throws it away).
    configuration.connection_pool_maxsize = CONNECTIONS
    # urllib3 retries nothing: its own three quick retries inside each of ours would multiply
    # every attempt's timeout against a server that accepts connections but never answers.
    configuration.retries = False
    try:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        if context is None:  # the file's current-context, which the load just used
            context = config.list_kube_config_contexts(kubeconfig)[1]["name"]
        used = kubeconfig or config.KUBE_CONFIG_DEFAULT_LOCATION
        origin = f"kubeconfig {used}, context {context}"
    except config.ConfigException:
        if kubeconfig is not None:
            raise
        config.load_incluster_config(client_configuration=configuration)
        origin = "in-cluster service account"
    return Cluster(client.ApiClient(configuration), outage=Outage(retry_for), origin=origin)


def reach(cluster: Cluster, timeout: float) -> None:
    """First contact with the API server: a GET of /version, which anyone may read (even
    unauthenticated: `system:public-info-viewer`). Any answer will do, an error status
    included (the command meets a 401 or 403 at its own requests); Unreachable when none
    came: the connection failed (refused, no route, name resolution, TLS), took more than
    `timeout` seconds in all (name resolution included), or a proxy in front of the server
    answered 502-504 for it. Never retried, so a server that never answered fails in
    `timeout` seconds rather than after an outage's budget; once it has answered, a later
    failure is an outage, retried (`Outage`). `timeout` 0: no bound of its own, retried as
    every request is, within the outage's budget (to wait for a cluster that is starting)."""
    try:
        if timeout <= 0:
            _call(cluster, "GET", "/version", [], None, None)
        else:
            _contact_within(cluster, timeout)
    except Unreachable as err:
        if err.why == _TIMED_OUT and timeout > 0:
            raise Unreachable(cluster.server, f"no answer in {timeout:g} s") from err
        raise
    except KubeError as err:
        if err.status in OUTAGE_STATUSES:
            raise Unreachable(cluster.server, f"HTTP {err.status}: {err}") from err
        # Any other status is an answer.


def _contact_within(cluster: Cluster, timeout: float) -> None:
    """One GET of /version, given up after `timeout` seconds in all. In a thread of its own:
    urllib3's timeouts do not cover name resolution. A daemon thread, so that a lookup that
    hangs does not hold the process at its exit."""
    failures: list[BaseException] = []

    def attempt() -> None:
        try:
            _call_once(cluster, "GET", "/version", [], None, None, timeout)
        except BaseException as err:  # raised again in the caller's thread
            failures.append(err)

    started = cluster.outage.clock()
    contact = threading.Thread(target=attempt, name="first-contact", daemon=True)
    contact.start()
    contact.join(timeout)
    if contact.is_alive():
        cluster.outage.unreachable(started)
        raise Unreachable(cluster.server, _TIMED_OUT)
    if failures:
        raise failures[0]


def _resource(cluster: Cluster, obj: objects.Object) -> Any:
    """The discovered resource for the object's kind; rediscovers once for new CRDs."""
    known = cluster._resources.get((obj["apiVersion"], obj["kind"]))
    if known is not None:
        return known
    return _retried(cluster, lambda _timeout: _discover(cluster, obj))


def _discover(cluster: Cluster, obj: objects.Object) -> Any:
    try:
        with _attempt(cluster) as started, cluster.discovery_lock:
            found = _discover_once(cluster, obj)
    except Unreachable:
        cluster._dynamic = None  # discovery starts again once the server is back
        cluster._resources.clear()
        raise
    _note(cluster, 200, started)
    return found


def _discover_once(cluster: Cluster, obj: objects.Object) -> Any:
    api_version, kind = obj["apiVersion"], obj["kind"]
    try:
        resource = cluster.dynamic.resources.get(api_version=api_version, kind=kind)
    except dynamic_exceptions.ResourceNotFoundError:
        _invalidate_discovery(cluster)
        try:
            resource = cluster.dynamic.resources.get(api_version=api_version, kind=kind)
        except dynamic_exceptions.ResourceNotFoundError as err:
            raise KubeError(f"the cluster does not serve {api_version} {kind}", 404) from err
    cluster._resources[(api_version, kind)] = resource
    return resource


def _invalidate_discovery(cluster: Cluster) -> None:
    cluster.dynamic.resources.invalidate_cache()
    cluster._resources.clear()


def _object_path(cluster: Cluster, obj: objects.Object) -> str:
    """The REST path of the object named like `obj`."""
    resource = _resource(cluster, obj)
    metadata = obj["metadata"]
    namespace = metadata.get("namespace") if resource.namespaced else None
    return str(resource.path(name=metadata["name"], namespace=namespace))


def apply(
    cluster: Cluster,
    obj: objects.Object,
    *,
    dry_run: bool = False,
    force_conflicts: bool = False,
    field_manager: str = FIELD_MANAGER,
) -> objects.Object:
    """Server-side apply `obj` (strict field validation); returns the object as stored (or as it
    would be stored, with `dry_run`)."""
    path = _object_path(cluster, obj)
    query: list[tuple[str, str]] = [
        ("fieldManager", field_manager),
        ("fieldValidation", "Strict"),
    ]
    if force_conflicts:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return _call(cluster, "PATCH", path, query, obj, "application/apply-patch+yaml", obj)


def create_if_absent(cluster: Cluster, obj: objects.Object) -> bool:
    """Create `obj` unless an object of that name exists (which is left untouched): for
    material generated once, such as deployment keys. True when it was created."""
    resource = _resource(cluster, obj)
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    try:
        _call(
            cluster,
            "POST",
            resource.path(namespace=namespace),
            [("fieldManager", FIELD_MANAGER)],
            obj,
            "application/json",
            obj,
        )
    except KubeError as err:
        if err.status == 409:
            return False
        raise
    return True


def merge_patch(
    cluster: Cluster,
    obj: objects.Object,
    patch: objects.Object,
    field_manager: str = FIELD_MANAGER,
) -> objects.Object:
    """JSON merge patch of the live object named like `obj`."""
    path = _object_path(cluster, obj)
    query = [("fieldManager", field_manager)]
    return _call(cluster, "PATCH", path, query, patch, "application/merge-patch+json", obj)


def apply_status(cluster: Cluster, obj: objects.Object) -> objects.Object:
    """Server-side apply `obj`'s `status` through the status subresource (custom resources
    with a status subresource ignore status in a normal apply)."""
    path = _object_path(cluster, obj) + "/status"
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    return _call(cluster, "PATCH", path, query, obj, "application/apply-patch+yaml", obj)


def delete(cluster: Cluster, obj: objects.Object) -> bool:
    """Delete the object named like `obj` (dependents in the background, as kubectl does).
    False when it was already gone."""
    path = _object_path(cluster, obj)
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    try:
        _call(cluster, "DELETE", path, [], body, "application/json", obj)
    except KubeError as err:
        if err.status == 404:
            return False
        raise
    return True


def create_event(cluster: Cluster, event: objects.Object) -> None:
    """Record a core/v1 Event (shown by `kubectl describe` of the object it is about)."""
    namespace = event["metadata"].get("namespace") or "default"
    path = f"/api/v1/namespaces/{namespace}/events"
    _call(cluster, "POST", path, [], event, "application/json")


def get(cluster: Cluster, obj: objects.Object) -> objects.Object | None:
    """The live object with the same identity, or None when there is none."""
    path = _object_path(cluster, obj)
    try:
        return _call(cluster, "GET", path, [], None, None)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def list_objects(
    cluster: Cluster, api_version: str, kind: str, namespace: str = "", label_selector: str = ""
) -> list[objects.Object]:
    """Every object of a kind in a namespace, or cluster-wide when `namespace` is "" (empty
    when the cluster does not serve the kind)."""
    try:
        return list_with_version(cluster, api_version, kind, namespace, label_selector)[0]
    except KubeError as err:
        if err.status == 404:
            return []
        raise


def wait_established(
    cluster: Cluster,
    crd_name: str,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until the CRD's Established condition is True (its kinds can then be served)."""
    deadline = clock() + timeout
    ref = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
    }
    while True:
        live = get(cluster, ref)
        conditions = ((live or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            with cluster.discovery_lock:
                _invalidate_discovery(cluster)
            return
        if clock() > deadline:
            raise KubeError(f"CustomResourceDefinition {crd_name} not Established in {timeout}s")
        time.sleep(0.2)


def _call(
    cluster: Cluster,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: Body,
    content_type: str | None,
    target: objects.Object | None = None,
) -> objects.Object:
    """One request, retried (see `_retried`). `target` names the object a write writes: the
    observers are told of it before and after (a write without one - an Event, a Lease - is
    told only what it stored)."""
    persisted = method in _WRITES and ("dryRun", "All") not in query
    tracked = target if persisted else None
    if tracked is not None:
        cluster.sending(tracked)
    stored: objects.Object | None = None
    deleted = False
    try:
        result: objects.Object = _retried(
            cluster,
            lambda timeout: _call_once(cluster, method, path, query, body, content_type, timeout),
        )
        deleted = method == "DELETE"
        if persisted and not deleted and result.get("metadata"):
            stored = result
        return result
    finally:
        if tracked is not None:
            cluster.settled(tracked, stored, deleted)
        elif stored is not None:
            cluster.settled(stored, stored, False)


_WRITES = frozenset({"PATCH", "POST", "PUT", "DELETE"})
_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def _verb(method: str, path: str, query: list[tuple[str, str]]) -> str:
    """The API server's name for a request's verb (a GET of a collection is a list)."""
    if method == "GET":
        return "get" if _names_one(path) else "list"
    verb = _VERBS.get(method, method.lower())
    return f"{verb}-dry-run" if ("dryRun", "All") in query else verb


def _names_one(path: str) -> bool:
    """Whether a GET path names one object (…/KIND/NAME[/SUB]) rather than a collection."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/[namespaces/NS/]RESOURCE[/NAME]
        rest = parts[2:]
    elif parts[0] == "apis":  # /apis/GROUP/VERSION/...
        rest = parts[3:]
    else:
        return True  # /metrics, /version: not a collection
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]
    return len(rest) >= 2


def _call_once(
    cluster: Cluster,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: Body,
    content_type: str | None,
    timeout: float | None = None,
) -> objects.Object:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    cluster.count(_verb(method, path, query))
    seconds = LONGEST_ATTEMPT if timeout is None else timeout
    with _attempt(cluster) as started:
        request = cluster.api.param_serialize(
            method,
            path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = cluster.api.call_api(
            *request, _request_timeout=(min(CONNECT_TIMEOUT, seconds), seconds)
        )
        payload = response.read()
    _note(cluster, response.status, started)
    if not 200 <= response.status <= 299:
        raise KubeError(_reason(payload, response.reason), response.status)
    result: objects.Object = json.loads(payload)
    return result


def _reason(body: bytes | str | None, fallback: str | None) -> str:
    """The API server's own message from a Status body."""
    try:
        status = json.loads(body or b"")
    except ValueError:
        return str(fallback or body)
    return str(status.get("message") or fallback)


# --- Bounded calls, the scale subresource, leases, list + watch --------------------------------
# For loops that are their own retry (leader election, the router's coordinator, watches): one
# attempt with a request timeout, so a call can never outlast a lease while it backs off.

SCALER_FIELD_MANAGER = "mlext-router"  # the router's name as manager of spec.replicas
BOUNDED_TIMEOUT = 5.0  # seconds for one bounded request


def _call_bounded(
    cluster: Cluster,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: Body,
    content_type: str | None,
    timeout: float | None,
) -> objects.Object:
    """One request, retried (as `_call`) only when `timeout` is None, else one attempt."""
    if timeout is None:
        return _call(cluster, method, path, query, body, content_type)
    return _call_once(cluster, method, path, query, body, content_type, timeout)


def _scale_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"


def get_scale(
    cluster: Cluster, namespace: str, name: str, *, timeout: float | None = None
) -> objects.Object | None:
    """The apps/v1 Deployment's autoscaling/v1 Scale (`spec.replicas`, `status.replicas`,
    `metadata.resourceVersion`), or None when there is no such Deployment. `timeout`: one
    bounded attempt instead of the retrying call."""
    try:
        return _call_bounded(cluster, "GET", _scale_path(namespace, name), [], None, None, timeout)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def set_scale(
    cluster: Cluster,
    namespace: str,
    name: str,
    replicas: int,
    *,
    expected: int | None = None,
    field_manager: str = SCALER_FIELD_MANAGER,
    timeout: float | None = None,
) -> objects.Object:
    """Write the Deployment's `spec.replicas` through its scale subresource, which makes
    `field_manager` the manager of that one field (managedFields: subresource "scale") and of
    nothing else. With `expected` the write only lands while the count is still that
    (KubeError 409 otherwise: someone scaled in between). Returns the new Scale.

    The condition is on the count, not on the resourceVersion: the Deployment's version moves
    with every status update (several a second during a rollout), which says nothing about the
    count. A JSON Patch `test` makes the API server compare and write in one step; a Scale at 0
    has no `spec.replicas` at all (omitempty), so 0 is tested as an empty spec."""
    if expected is None:
        body: Body = {"spec": {"replicas": replicas}}
        content_type = "application/merge-patch+json"
    else:
        test = (
            {"op": "test", "path": "/spec/replicas", "value": expected}
            if expected
            else {"op": "test", "path": "/spec", "value": {}}
        )
        body = [test, {"op": "add", "path": "/spec/replicas", "value": replicas}]
        content_type = "application/json-patch+json"
    path, query = _scale_path(namespace, name), [("fieldManager", field_manager)]
    try:
        return _call_bounded(cluster, "PATCH", path, query, body, content_type, timeout)
    except KubeError as err:
        if expected is not None and err.status == 422:  # the failed `test`
            raise KubeError(f"{namespace}/{name} is no longer at {expected} replicas", 409) from err
        raise


def get_secret(
    cluster: Cluster, namespace: str, name: str, *, timeout: float = BOUNDED_TIMEOUT
) -> objects.Object | None:
    """The v1 Secret (its `data` base64, as the API returns it), or None when there is none;
    one bounded attempt, for a loop that re-reads it (the router's keys). The path is built
    here rather than discovered, so that a request needs `get` on that one Secret only."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    try:
        return _call_bounded(cluster, "GET", path, [], None, None, timeout)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def _leases_path(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def get_lease(
    cluster: Cluster, namespace: str, name: str, *, timeout: float = BOUNDED_TIMEOUT
) -> objects.Object | None:
    """The coordination.k8s.io/v1 Lease, or None when there is none (one bounded attempt)."""
    try:
        return _call_bounded(
            cluster, "GET", f"{_leases_path(namespace)}/{name}", [], None, None, timeout
        )
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def create_lease(
    cluster: Cluster, lease: objects.Object, *, timeout: float = BOUNDED_TIMEOUT
) -> objects.Object:
    """Create the Lease; KubeError 409 when one of that name exists (someone else won)."""
    namespace = lease["metadata"]["namespace"]
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease}
    return _call_bounded(
        cluster,
        "POST",
        _leases_path(namespace),
        [("fieldManager", FIELD_MANAGER)],
        body,
        "application/json",
        timeout,
    )


def update_lease(
    cluster: Cluster, lease: objects.Object, *, timeout: float = BOUNDED_TIMEOUT
) -> objects.Object:
    """Replace the Lease, conditional on `metadata.resourceVersion` (required): KubeError 409
    when it changed since it was read, i.e. someone else wrote first. Not to be retried blindly:
    read again and decide again."""
    metadata = lease["metadata"]
    if not metadata.get("resourceVersion"):
        raise ValueError("update_lease needs the resourceVersion the lease was read at")
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease}
    return _call_bounded(
        cluster,
        "PUT",
        f"{_leases_path(metadata['namespace'])}/{metadata['name']}",
        [("fieldManager", FIELD_MANAGER)],
        body,
        "application/json",
        timeout,
    )


def list_with_version(
    cluster: Cluster, api_version: str, kind: str, namespace: str = "", label_selector: str = ""
) -> tuple[list[objects.Object], str]:
    """Like `list_objects`, with the list's resourceVersion to start a `watch` from."""
    resource = _resource(cluster, {"apiVersion": api_version, "kind": kind})
    query = [("labelSelector", label_selector)] if label_selector else []
    where = namespace if namespace and resource.namespaced else None
    listing = _call(cluster, "GET", resource.path(namespace=where), query, None, None)
    items: list[objects.Object] = listing.get("items") or []
    for item in items:  # a list's items carry no type of their own
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
    return items, version


class Watch:
    """A running watch: iterate for events (`{"type": ADDED|MODIFIED|DELETED|BOOKMARK,
    "object": {...}}`) until the server ends it (its timeout) or `close()` is called from any
    thread. An expired resourceVersion raises KubeError with status 410: list again."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        raw = self._response.response
        # Wakes a reader blocked on the socket in another thread. urllib3 2 refuses (ValueError,
        # RuntimeError) when the watch already ended and its connection went back to the pool:
        # then no one is blocked.
        with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
            raw.shutdown()
        raw.release_conn()

    def __iter__(self) -> Iterator[objects.Object]:
        raw = self._response.response
        try:
            for line in raw:
                if self._closed.is_set():
                    return
                if not line.strip():
                    continue
                event: objects.Object = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(str(status.get("message")), int(status.get("code") or 0))
                yield event
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as err:
            if self._closed.is_set():
                return
            raise KubeError(f"watch interrupted: {err}") from err
        finally:
            raw.release_conn()


def watch(
    cluster: Cluster,
    api_version: str,
    kind: str,
    *,
    namespace: str = "",
    label_selector: str = "",
    resource_version: str = "",
    timeout_seconds: int = 300,
) -> Watch:
    """Start watching a kind from `resource_version` (with bookmarks); the server ends the
    watch after about `timeout_seconds`."""
    resource = _resource(cluster, {"apiVersion": api_version, "kind": kind})
    where = namespace if namespace and resource.namespaced else None
    query = [
        ("watch", "true"),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(timeout_seconds)),
    ]
    if resource_version:
        query.append(("resourceVersion", resource_version))
    if label_selector:
        query.append(("labelSelector", label_selector))
    cluster.count("watch")
    try:
        request = cluster.api.param_serialize(
            "GET",
            resource.path(namespace=where),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        # A read timeout past the server's own: a connection that went silent is dead.
        response = cluster.api.call_api(*request, _request_timeout=(10, timeout_seconds + 30))
    except client_exceptions.ApiException as err:
        raise KubeError(_reason(err.body, err.reason), err.status or 0) from err
    except (OSError, urllib3.exceptions.HTTPError) as err:
        raise Unreachable(cluster.server, _why(err)) from err
    if not 200 <= response.status <= 299:
        raise KubeError(_reason(response.read(), response.reason), response.status)
    return Watch(response)


# --- Pod logs, as `kubectl logs` reads them: the API server asks the pod's kubelet -------------


def _open_pod_log(
    cluster: Cluster,
    namespace: str,
    pod: str,
    container: str,
    timeout: tuple[float, float | None],
    query: list[tuple[str, str]],
) -> Any:
    """One request for a pod's log (`read_namespaced_pod_log`'s); the unread urllib3 response.
    `timeout`: (connect, read), read None for no bound. Sent as `watch` sends its request: the
    generated method validates its timeout as numbers only, and a followed log has no read
    bound."""
    cluster.count("get")
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    with _attempt(cluster) as started:
        request = cluster.api.param_serialize(
            "GET",
            path,
            query_params=[("container", container), *query],
            # What the generated client sends: the API server refuses text/plain here.
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = cluster.api.call_api(*request, _request_timeout=timeout)
    _note(cluster, response.status, started)
    if not 200 <= response.status <= 299:
        raise KubeError(_reason(response.read(), response.reason), response.status)
    return response.response


def pod_log(
    cluster: Cluster,
    namespace: str,
    pod: str,
    container: str,
    *,
    tail: int | None = None,
    previous: bool = False,
) -> str:
    """The log of `container` in `pod` (its last `tail` lines; `previous`: of the container's
    run before its last restart), retried as every request is."""

    def attempt(timeout: float) -> str:
        query = [("tailLines", str(tail))] if tail is not None else []
        if previous:
            query.append(("previous", "true"))
        raw = _open_pod_log(
            cluster, namespace, pod, container, (min(CONNECT_TIMEOUT, timeout), timeout), query
        )
        try:
            data: bytes = raw.read()
        except (OSError, urllib3.exceptions.HTTPError) as err:
            raise Unreachable(cluster.server, _why(err)) from err
        finally:
            raw.release_conn()
        return data.decode("utf-8", errors="replace")

    return _retried(cluster, attempt)


class LogStream:
    """A followed pod log: iterate for its lines (each with its newline, the last one maybe
    without) until the container ends and the kubelet closes it, or `close()` is called from
    any thread (Ctrl-C)."""

    def __init__(self, raw: Any, server: str) -> None:
        self._raw = raw
        self._server = server
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        # Wakes a reader blocked on the socket in another thread (see `Watch.close`).
        with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
            self._raw.shutdown()
        with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
            self._raw.release_conn()

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._raw:
                if self._closed.is_set():
                    return
                yield line.decode("utf-8", errors="replace")
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as err:
            if self._closed.is_set():
                return
            raise KubeError(f"log stream interrupted: {_why(err)}") from err
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
                self._raw.release_conn()


def follow_pod_log(
    cluster: Cluster, namespace: str, pod: str, container: str, *, tail: int | None = None
) -> LogStream:
    """Follow the log of `container` in `pod` (from its last `tail` lines). Opening it is
    retried as every request is; the stream has no read timeout, since a job may print
    nothing for hours."""
    query = [("follow", "true"), *([("tailLines", str(tail))] if tail is not None else [])]
    raw = _retried(
        cluster,
        lambda timeout: _open_pod_log(
            cluster, namespace, pod, container, (min(CONNECT_TIMEOUT, timeout), None), query
        ),
    )
    return LogStream(raw, cluster.server)
