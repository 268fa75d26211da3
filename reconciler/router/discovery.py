"""In-cluster discovery: the ready endpoints of a Service, followed live from its EndpointSlices.

Sits between `kube` (list + watch of discovery.k8s.io/v1 EndpointSlices labelled
`kubernetes.io/service-name`) and the router: the balancer gets a model deployment's backend
URLs from it, the coordinator the URLs of its peer router instances. An `EndpointWatcher` lists
once, then watches from the list's resourceVersion in a daemon thread, lists again when the
watch's version has expired (410), backs off on other errors, and calls its callback with the
sorted ready URLs (`http://IP:PORT`) whenever they change. `ready_urls` is the pure part. The
router runs in a pod (on the local plane too, on its real nodes), so the pod IPs are used as
they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler import kube, objects

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
WATCH_SECONDS = 240  # the server ends a watch after this; it is resumed from its version
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


def ready_urls(
    slices: Iterable[Mapping[str, Any]],
    *,
    port: str | int | None = None,
    scheme: str = "http",
    exclude_pod: str | None = None,
) -> list[str]:
    """The URLs of the ready endpoints of these EndpointSlices, sorted, without duplicates.

    `port`: the port's name (a Service port name) or number; None takes each slice's first
    port. Endpoints with `ready: false` are left out (an absent condition counts as ready,
    as the API documents); `exclude_pod` leaves out the endpoint of that pod (the caller)."""
    urls: set[str] = set()
    for piece in slices:
        number = _port_number(piece.get("ports") or [], port)
        if number is None:
            continue
        ipv6 = piece.get("addressType") == "IPv6"
        if piece.get("addressType") not in (None, "IPv4", "IPv6"):
            continue  # FQDN endpoints are not routed to
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            target = endpoint.get("targetRef") or {}
            if exclude_pod and target.get("name") == exclude_pod:
                continue
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if ipv6 else address
                urls.add(f"{scheme}://{host}:{number}")
    return sorted(urls)


def _port_number(ports: Iterable[Mapping[str, Any]], wanted: str | int | None) -> int | None:
    for entry in ports:
        number = entry.get("port")
        if number is None:
            continue
        if wanted is None or entry.get("name") == wanted or number == wanted:
            return int(number)
    return None


class EndpointWatcher:
    """Follows one Service's EndpointSlices; `on_change(urls)` runs on the watcher's thread
    with the new list each time it changes (first with the initial list) and must not block.
    `urls()` is the latest list, from any thread."""

    def __init__(
        self,
        cluster: kube.Cluster,
        namespace: str,
        service: str,
        on_change: Callable[[list[str]], None] | None = None,
        *,
        port: str | int | None = None,
        scheme: str = "http",
        exclude_pod: str | None = None,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.service = service
        self._on_change = on_change
        self._port = port
        self._scheme = scheme
        self._exclude_pod = exclude_pod
        self._watch_seconds = watch_seconds
        self._slices: dict[str, objects.Object] = {}
        self._urls: list[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: kube.Watch | None = None
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set once the first list has been published

    def urls(self) -> list[str]:
        with self._lock:
            return list(self._urls or [])

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the watcher is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"endpoints-{self.namespace}-{self.service}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            running = self._watch
        if running is not None:
            running.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._list_and_watch()
                failures = 0
            except kube.KubeError as err:
                if self._stop.is_set():
                    return
                if err.status == 410:  # the version is too old to resume from: list again
                    log.debug("endpoints of %s/%s: %s", self.namespace, self.service, err)
                    continue
                failures += 1
                self._back_off(failures, str(err))
            except Exception as err:  # a callback's bug must not end the discovery
                log.exception("endpoints of %s/%s: watcher failed", self.namespace, self.service)
                failures += 1
                self._back_off(failures, repr(err))

    def _back_off(self, failures: int, why: str) -> None:
        delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1]
        log.warning(
            "endpoints of %s/%s: %s (again in %.1fs)", self.namespace, self.service, why, delay
        )
        self._stop.wait(delay)

    def _list_and_watch(self) -> None:
        selector = f"{SERVICE_NAME_LABEL}={self.service}"
        items, version = kube.list_with_version(
            self.cluster, "discovery.k8s.io/v1", "EndpointSlice", self.namespace, selector
        )
        self._slices = {item["metadata"]["name"]: item for item in items}
        self._publish()
        while not self._stop.is_set():
            running = kube.watch(
                self.cluster,
                "discovery.k8s.io/v1",
                "EndpointSlice",
                namespace=self.namespace,
                label_selector=selector,
                resource_version=version,
                timeout_seconds=self._watch_seconds,
            )
            with self._lock:
                self._watch = running
            if self._stop.is_set():  # stop() ran before the watch was recorded
                running.close()
                return
            try:
                for event in running:
                    version = self._apply(event) or version
            finally:
                with self._lock:
                    self._watch = None

    def _apply(self, event: objects.Object) -> str | None:
        """Fold one watch event in; returns the resourceVersion it brings."""
        kind = event.get("type")
        item = event.get("object") or {}
        metadata = item.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED"):
            self._slices[metadata["name"]] = item
            self._publish()
        elif kind == "DELETED":
            self._slices.pop(metadata.get("name", ""), None)
            self._publish()
        version = metadata.get("resourceVersion")
        return str(version) if version else None

    def _publish(self) -> None:
        urls = ready_urls(
            self._slices.values(),
            port=self._port,
            scheme=self._scheme,
            exclude_pod=self._exclude_pod,
        )
        with self._lock:
            if urls == self._urls:
                return
            self._urls = urls
        log.info("endpoints of %s/%s: %s", self.namespace, self.service, urls or "none ready")
        if self._on_change:
            self._on_change(urls)
        self.synced.set()
