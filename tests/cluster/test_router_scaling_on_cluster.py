"""The router scales a real Deployment through the scale subresource, and follows real
EndpointSlices (`router.coordinator`, `router.autoscaler`, `router.discovery`, issue 9).

The coordinator gets a synthetic load and an injected clock (the minute of low load before a
scale-down passes in no time); its reads and writes go to the real API server, whose Deployment
controller and kwok nodes turn the new replica count into running, ready pods.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Mapping

import pytest

from reconciler import kube, objects
from reconciler.engine import ownership
from reconciler.router import autoscaler, coordinator, discovery
from tests.cluster.kubehelpers import PAUSE_IMAGE, wait_until

pytestmark = pytest.mark.cluster


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def model_deployment(namespace: str, replicas: int) -> objects.Object:
    """A model deployment as the reconciler applies it (its own field manager)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "blue", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "blue"}},
            "template": {
                "metadata": {"labels": {"app": "blue"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": PAUSE_IMAGE,
                            "ports": [{"name": "http", "containerPort": 5001}],
                        }
                    ]
                },
            },
        },
    }


def model_service(namespace: str) -> objects.Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "blue", "namespace": namespace},
        "spec": {
            "selector": {"app": "blue"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def live_deployment(cluster: kube.Cluster, namespace: str) -> objects.Object:
    live = kube.get(cluster, model_deployment(namespace, 0))
    assert live is not None
    return live


def pod_urls(cluster: kube.Cluster, namespace: str) -> list[str]:
    """The URLs of blue's ready, not terminating pods. Sorted and without duplicates: kwok can
    give pods on different simulated nodes the same IP."""
    urls = set()
    for pod in kube.list_objects(cluster, "v1", "Pod", namespace, "app=blue"):
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        ip = (pod.get("status") or {}).get("podIP")
        if ready and ip and not pod["metadata"].get("deletionTimestamp"):
            urls.add(f"http://{ip}:5001")
    return sorted(urls)


def scale_entries(live: objects.Object) -> list[objects.Object]:
    return [
        entry
        for entry in live["metadata"].get("managedFields") or []
        if entry.get("subresource") == "scale"
    ]


def test_coordinator_scales_a_real_deployment_up_and_down(
    cluster: kube.Cluster, namespace: str
) -> None:
    kube.apply(cluster, model_deployment(namespace, 2))
    kube.apply(cluster, model_service(namespace))
    clock = FakeClock()
    loads: dict[str, autoscaler.Sample] = {}
    decisions: list[autoscaler.Decision] = []
    coord = coordinator.Coordinator(
        coordinator.KubeScaler(cluster),
        lambda: dict(loads),
        clock=clock,
        on_decision=decisions.append,
    )
    coord.configure([coordinator.Target("blue", namespace, autoscaler.Settings(2, 5, 70, 1))])
    seen: list[list[str]] = []
    backends = discovery.EndpointWatcher(cluster, namespace, "blue", seen.append, port="http")
    backends.start()
    try:
        # Busy 2 + queued 3 on 2 replicas: 250 %; ceil(5 / 0.7) = 8, bounded by max_instances 5.
        loads["blue"] = autoscaler.Sample(2.0, 3, 2)
        [up] = coord.tick()
        assert (up.current, up.desired, up.direction) == (2, 5, "up")
        live = live_deployment(cluster, namespace)
        assert live["spec"]["replicas"] == 5
        [entry] = scale_entries(live)
        assert entry["manager"] == kube.SCALER_FIELD_MANAGER and entry["operation"] == "Update"
        assert entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}  # that field and no other
        assert ownership.owners_of_replicas(live) == {kube.SCALER_FIELD_MANAGER}

        # The Deployment controller and kwok make it real; discovery follows the endpoints.
        wait_until(
            lambda: live_deployment(cluster, namespace).get("status", {}).get("readyReplicas"),
            lambda ready: ready == 5,
            "5 ready replicas",
        )
        wait_until(
            lambda: (backends.urls(), pod_urls(cluster, namespace)),
            lambda found: found[0] == found[1] and len(found[1]) >= 1,
            "the discovered backends to be the ready pods",
        )
        assert all(url.startswith("http://") and url.endswith(":5001") for url in seen[-1])

        # The reconciler applies its object again, leaving out the replicas the router owns.
        desired = model_deployment(namespace, 2)
        kube.apply(cluster, ownership.respect_scaler(desired, live, kube.FIELD_MANAGER))
        assert live_deployment(cluster, namespace)["spec"]["replicas"] == 5

        # Still overloaded at max_instances: bounded, nothing written.
        clock.advance(1)
        loads["blue"] = autoscaler.Sample(5.0, 40, 5)
        [held] = coord.tick()
        assert held.desired == 5 and "max_instances 5" in held.reason

        # Load drops to 0.5 replicas' worth: nothing for a minute, then down to min_instances.
        loads["blue"] = autoscaler.Sample(0.5, 0, 5)
        for _ in range(60):
            clock.advance(1)
            [stay] = coord.tick()
            assert stay.desired == 5, stay
        clock.advance(1)
        [down] = coord.tick()
        assert (down.current, down.desired, down.direction) == (5, 2, "down")
        assert live_deployment(cluster, namespace)["spec"]["replicas"] == 2
        wait_until(
            lambda: (backends.urls(), pod_urls(cluster, namespace)),
            lambda found: found[0] == found[1] and len(found[1]) <= 2,
            "the discovered backends to follow the scale-down",
        )
        assert [d.direction for d in decisions].count("up") == 1
    finally:
        backends.stop()


def test_the_scale_write_is_conditional_on_the_count_not_the_version(
    cluster: kube.Cluster, namespace: str
) -> None:
    kube.apply(cluster, model_deployment(namespace, 1))
    scaler = coordinator.KubeScaler(cluster)
    assert scaler.current(namespace, "blue") == 1
    # Another write to the Deployment (as its controller's status updates are, several a second
    # during a rollout) moves the version but not the count: the write still lands.
    before = live_deployment(cluster, namespace)["metadata"]["resourceVersion"]
    annotation = {"name": "blue", "namespace": namespace, "annotations": {"touched": "yes"}}
    kube.apply(
        cluster,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": annotation},
        field_manager="someone-else",
    )
    assert live_deployment(cluster, namespace)["metadata"]["resourceVersion"] != before
    assert scaler.scale(namespace, "blue", 2, expected=1)
    assert scaler.current(namespace, "blue") == 2

    # Someone scales in between: not overwritten.
    kube.set_scale(cluster, namespace, "blue", 3, field_manager="someone-else")
    assert not scaler.scale(namespace, "blue", 4, expected=2)
    assert scaler.current(namespace, "blue") == 3

    # At 0 the Scale has no spec.replicas at all: the condition holds there too.
    assert scaler.scale(namespace, "blue", 0, expected=3)
    assert not scaler.scale(namespace, "blue", 5, expected=1)
    assert scaler.scale(namespace, "blue", 1, expected=0)
    assert scaler.current(namespace, "blue") == 1

    assert scaler.current(namespace, "absent") is None
    assert kube.get_scale(cluster, namespace, "absent") is None


# --- Discovery on hand-made EndpointSlices ------------------------------------------------------


def endpoint_slice(namespace: str, name: str, endpoints: list[objects.Object]) -> objects.Object:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                discovery.SERVICE_NAME_LABEL: "green",
                "endpointslice.kubernetes.io/managed-by": "reconciler-tests",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def endpoint(ip: str, ready: bool | None = True, pod: str | None = None) -> objects.Object:
    found: objects.Object = {"addresses": [ip]}
    if ready is not None:
        found["conditions"] = {"ready": ready}
    if pod:
        found["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "x"}
    return found


class Changes:
    def __init__(self) -> None:
        self.lists: list[list[str]] = []
        self.changed = threading.Condition()

    def __call__(self, urls: list[str]) -> None:
        with self.changed:
            self.lists.append(urls)
            self.changed.notify_all()

    def wait_for(self, urls: list[str], timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.lists[-1:] == [urls], timeout), self.lists


def test_discovery_follows_endpoint_slices(cluster: kube.Cluster, namespace: str) -> None:
    kube.apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "green", "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    first = endpoint_slice(
        namespace,
        "green-a",
        [endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False), endpoint("10.0.0.3", None)],
    )
    kube.apply(cluster, first)
    changes = Changes()
    watcher = discovery.EndpointWatcher(cluster, namespace, "green", changes, port="http")
    watcher.start()
    try:
        changes.wait_for(["http://10.0.0.1:8080", "http://10.0.0.3:8080"])
        assert watcher.synced.is_set()
        # A second slice, then the first one's endpoint turning ready: each a change.
        kube.apply(cluster, endpoint_slice(namespace, "green-b", [endpoint("10.0.1.1")]))
        changes.wait_for(["http://10.0.0.1:8080", "http://10.0.0.3:8080", "http://10.0.1.1:8080"])
        ready = copy.deepcopy(first)
        ready["endpoints"][1] = endpoint("10.0.0.2")
        kube.apply(cluster, ready)
        changes.wait_for(
            [
                "http://10.0.0.1:8080",
                "http://10.0.0.2:8080",
                "http://10.0.0.3:8080",
                "http://10.0.1.1:8080",
            ]
        )
        kube.delete(cluster, ready)
        changes.wait_for(["http://10.0.1.1:8080"])
        # A slice of another Service is none of this watcher's business.
        other = endpoint_slice(namespace, "other", [endpoint("10.9.9.9")])
        other["metadata"]["labels"][discovery.SERVICE_NAME_LABEL] = "other"
        kube.apply(cluster, other)
        kube.delete(cluster, endpoint_slice(namespace, "green-b", []))
        changes.wait_for([])
        assert all("10.9.9.9" not in url for urls in changes.lists for url in urls)
    finally:
        watcher.stop()


def test_discovery_lists_again_when_the_watch_has_expired(
    cluster: kube.Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.apply(cluster, endpoint_slice(namespace, "green-a", [endpoint("10.0.0.1")]))
    real_watch = kube.watch
    expired = threading.Event()

    def expiring_watch(*args: object, **kwargs: object) -> kube.Watch:
        if not expired.is_set():
            expired.set()
            # Meanwhile the slice changed, and the version is too old to resume from.
            kube.apply(cluster, endpoint_slice(namespace, "green-a", [endpoint("10.0.0.2")]))
            raise kube.KubeError("too old resource version", 410)
        return real_watch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(kube, "watch", expiring_watch)
    changes = Changes()
    watcher = discovery.EndpointWatcher(cluster, namespace, "green", changes)
    watcher.start()
    try:
        changes.wait_for(["http://10.0.0.2:8080"])
        assert changes.lists[0] == ["http://10.0.0.1:8080"]
        kube.apply(cluster, endpoint_slice(namespace, "green-a", [endpoint("10.0.0.3")]))
        changes.wait_for(["http://10.0.0.3:8080"])  # and the watch after the re-list works
    finally:
        watcher.stop()


def test_ready_urls() -> None:
    slices: list[objects.Object] = [
        {
            "addressType": "IPv6",
            "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
            "endpoints": [endpoint("fd00::1"), endpoint("fd00::2", pod="me")],
        },
        {"addressType": "FQDN", "ports": [{"port": 80}], "endpoints": [endpoint("a.example")]},
        {"ports": [{"name": "metrics", "port": 9090}], "endpoints": [endpoint("10.0.0.1")]},
    ]
    assert discovery.ready_urls(slices, port="http", exclude_pod="me") == ["http://[fd00::1]:8080"]
    assert discovery.ready_urls(slices, port=9090, scheme="https") == [
        "https://10.0.0.1:9090",
        "https://[fd00::1]:9090",
        "https://[fd00::2]:9090",
    ]


# --- HA: two router instances, one coordinator ---------------------------------------------------


class Instance:
    """One router instance: its own load, served at LOAD_PATH on a real socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loads: dict[str, autoscaler.Sample] = {}
        instance = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                report = coordinator.local_report(instance.name, instance())
                body = json.dumps(report).encode()
                self.send_response(200 if self.path == coordinator.LOAD_PATH else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.scaling: coordinator.Scaling | None = None

    def __call__(self) -> dict[str, autoscaler.Sample]:
        return dict(self.loads)

    def close(self) -> None:
        if self.scaling is not None:
            self.scaling.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# EndpointSlices may not hold loopback addresses: the instances' slices name a documentation
# address, and the coordinator's fetch maps it to loopback, where the instances listen.
POD_NETWORK = "198.51.100.1"


def via_loopback(url: str) -> Mapping[str, autoscaler.Sample]:
    return coordinator.fetch_report(url.replace(POD_NETWORK, "127.0.0.1"))


def router_endpoints(namespace: str, instance: Instance) -> objects.Object:
    """The router Service's EndpointSlice for one instance, as the control plane keeps it."""
    found = endpoint_slice(namespace, f"router-{instance.name}", [])
    found["metadata"]["labels"][discovery.SERVICE_NAME_LABEL] = "router"
    found["ports"] = [{"name": "http", "port": instance.port, "protocol": "TCP"}]
    found["endpoints"] = [endpoint(POD_NETWORK, pod=instance.name)]
    return found


def test_two_instances_one_coordinator_from_everyones_load(
    cluster: kube.Cluster, namespace: str
) -> None:
    kube.apply(cluster, model_deployment(namespace, 1))
    instances = [Instance("router-a"), Instance("router-b")]
    try:
        for instance in instances:
            kube.apply(cluster, router_endpoints(namespace, instance))
        # 0.6 busy replicas on each instance: 1.2 in all, above 70 % of 1 replica only summed.
        for instance in instances:
            instance.loads["blue"] = autoscaler.Sample(0.6, 0, 1)
        decisions: list[tuple[str, autoscaler.Decision]] = []
        leading_at_decisions: list[tuple[str, list[str]]] = []

        def recorder(who: str) -> coordinator.DecisionHook:
            def record(decision: autoscaler.Decision) -> None:
                decisions.append((who, decision))
                leading = [i.name for i in instances if i.scaling and i.scaling.is_coordinator()]
                leading_at_decisions.append((who, leading))

            return record

        for instance in instances:
            instance.scaling = coordinator.start_in_cluster(
                cluster,
                namespace=namespace,
                router_service="router",
                identity=instance.name,
                local_load=instance,
                targets=[coordinator.Target("blue", namespace, autoscaler.Settings(1, 6))],
                on_decision=recorder(instance.name),
                peer_port="http",
                fetch=via_loopback,
                lease_duration=2.0,
                renew_deadline=1.5,
                retry_period=0.4,
            )

        def replicas() -> int:
            return int(live_deployment(cluster, namespace)["spec"]["replicas"])

        wait_until(replicas, lambda count: count == 2, "a scale-up from the summed load", 10)
        leaders = [i for i in instances if i.scaling and i.scaling.is_coordinator()]
        assert len(leaders) == 1
        [leader] = leaders
        [standby] = [i for i in instances if i is not leader]
        # Only the coordinator decides. Which one that is may change on a slow machine (a renewal
        # late by more than the 1.5 s deadline hands the lease over), never two at once.
        assert all(leading in ([], [who]) for who, leading in leading_at_decisions)

        # The coordinator goes away; the other instance takes over and scales on.
        assert leader.scaling is not None
        leader.scaling.stop()
        leader.scaling = None
        standby.loads["blue"] = autoscaler.Sample(2.0, 2, 2)
        wait_until(replicas, lambda count: count == 6, "the new coordinator to scale", 10)
        assert decisions[-1][0] == standby.name
    finally:
        for instance in instances:
            instance.close()
