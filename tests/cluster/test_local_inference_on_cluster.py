"""Scoring the example end to end on the local plane (issue 15): client -> router -> model pod.

The session plane's real node runs the test namespace's router pod (`reconciler router serve`
in the project's image, in-cluster with its service account's token) and model pods (the real
`azmlinfsrv` in the stand-in image with the example's score.py and model.json from their
ConfigMaps) under its kubelet (placed there by the plane's `realplacement`). Nothing is faked:
the pods' readiness is the kubelet's probes, the EndpointSlice controller follows it, the router
discovers its backends from the EndpointSlices and reaches them at their pod IPs, and scales the
Deployment through the scale subresource; the test reaches the router pod's IP through the
plane's host route, as `reconciler score` does. Shortened for the test: blue's polling_interval
(1 s instead of 10 s) and its queue wait (10 s, so that a 2-core machine starting model servers
does not time requests out); the scale-down waits the router's real minute.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import main as cli
from reconciler.render import workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realpods import Pod, Pods, post, primary_key
from tests.helpers import example_repo

pytestmark = pytest.mark.cluster

EXAMPLE_MODEL = Path(__file__).parents[2] / "manifests" / "deployments" / "model" / "model.json"
ROWS = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [4.0, -2.0, 8.0]]
LOAD_CLIENTS = 4
CONDA_PACKAGE = "tabulate==0.9.0"  # small, pure Python, not among the model server's packages
WITH_TABULATE = """\
import example
import tabulate


def init():
    example.init()


def run(raw_data):
    return {"tabulate": tabulate.__version__, "scores": example.run(raw_data)}
"""


def expected_answer() -> list[float]:
    """What the example's linear model says for ROWS, computed here from model.json."""
    model = json.loads(EXAMPLE_MODEL.read_text())
    return [
        sum(w * x for w, x in zip(model["weights"], row, strict=True)) + model["bias"]
        for row in ROWS
    ]


def replicas(cluster: kube.Cluster, namespace: str, deployment: str) -> int:
    scale = kube.get_scale(cluster, namespace, deployment)
    assert scale is not None
    return int(scale["spec"]["replicas"])


def pod_ready(cluster: kube.Cluster, namespace: str, name: str) -> tuple[bool, int] | None:
    """(Ready, restartCount) of a pod as its status says, None when it is gone."""
    pods = kube.list_objects(cluster, "v1", "Pod", namespace)
    for pod in pods:
        if pod["metadata"]["name"] == name:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            statuses = pod["status"].get("containerStatuses") or [{}]
            return conditions.get("Ready") == "True", int(statuses[0].get("restartCount", 0))
    return None


class Load:
    """LOAD_CLIENTS threads scoring blue through the router back to back, counting answers."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.codes: Counter[int] = Counter()
        self.failures: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_CLIENTS)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        body = json.dumps({"data": [[1.0, 1.0, 1.0]]}).encode()
        while not self._stop.is_set():
            code, answer = post(self.url, body, self.key)
            with self._lock:
                self.codes[code] += 1
                if code != 200:
                    self.failures.append((code, answer[:200]))

    def snapshot(self) -> tuple[int, int]:
        """(answered 200, failed) so far."""
        with self._lock:
            return self.codes[200], len(self.failures)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def scored_requests(pods: Pods, pod: Pod) -> int:
    """The scoring requests a model pod's azmlinfsrv has answered, from its own access log."""
    try:
        text = pods.log(pod.name)
    except kube.KubeError:
        return 0
    return text.count('"POST /score HTTP/1.1" 200')


def test_the_example_scores_through_the_router_and_autoscales_on_the_local_plane(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    pods: Pods,
) -> None:
    root = example_repo(tmp_path, f"x{namespace[-6:]}", namespace, jobs=False)
    blue = root / "deployments" / "blue.yaml"
    text = blue.read_text()
    assert "polling_interval: 10" in text and "max_concurrent_requests_per_instance: 1" in text
    text = text.replace("polling_interval: 10", "polling_interval: 1")
    text = text.replace(
        "max_concurrent_requests_per_instance: 1",
        "max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 10000",
    )
    blue.write_text(text)
    kubeconfig = ["--kubeconfig", cluster_kubeconfig] if cluster_kubeconfig else []
    runner = CliRunner()

    url = pods.apply(root, cluster_kubeconfig)

    # The model's real answer, through `reconciler score` (key mode and token mode) and curl's way.
    data = tmp_path / "request.json"
    data.write_text(json.dumps({"data": ROWS}))
    for deployment in ("blue", "green"):
        scored = runner.invoke(cli.main, ["score", deployment, "--data", str(data), *kubeconfig])
        assert scored.exit_code == 0, scored.output
        assert json.loads(scored.output) == pytest.approx(expected_answer())
    key = primary_key(cluster, namespace, "blue")
    score_url = f"{url}/api/v1/service/blue/score"
    code, answer = post(score_url, data.read_bytes(), key)
    assert code == 200 and json.loads(answer) == pytest.approx(expected_answer())
    assert post(score_url, data.read_bytes(), "not-the-key")[0] == 401
    assert post(score_url, data.read_bytes(), None)[0] == 401
    assert key not in scored.output

    # Load: the router scales blue up and the new pods serve.
    first = pods.model_pods("blue")
    assert len(first) == 1 and replicas(cluster, namespace, "blue") == 1
    load = Load(score_url, key)
    try:
        wait_until(lambda: replicas(cluster, namespace, "blue"), lambda n: n >= 3,
                   "the router to scale blue up", 90)  # fmt: skip
        serving = wait_until(
            lambda: [
                p
                for p in pods.model_pods("blue")
                if p.name != first[0].name and p.ready and scored_requests(pods, p) > 0
            ],
            lambda found: len(found) >= 2,
            "requests to reach the new blue pods",
            90,
        )
        assert {p.name for p in serving}.isdisjoint({first[0].name})
        top = runner.invoke(
            cli.main, ["router", "top", "--once", "--interval", "1", "-o", "json", *kubeconfig]
        )
        assert top.exit_code == 0, top.output
        [blue] = [d for d in json.loads(top.stdout)["deployments"] if d["deployment"] == "blue"]
        assert blue["replicas"] >= 3 and blue["requests_per_second"] > 0, top.output
        # Every router reports the same pods: each counted once, never more than there are.
        assert 1 <= blue["backends_up"] <= blue["replicas"], top.output

        # A model server's container is killed under load (SIGKILL to its processes in the
        # node): its pod goes not ready, the router fails over to the other pods
        # (nothing that had not reached it is lost), and the kubelet starts it again.
        victim = serving[0]
        answered, failed_before = load.snapshot()
        pods.kill(victim)

        def victim_state() -> tuple[bool, int] | None:
            return pod_ready(cluster, namespace, victim.name)

        wait_until(victim_state, lambda r: r is not None and (not r[0] or r[1] == 1),
                   "the pod not ready (or restarted already)", 30)  # fmt: skip
        wait_until(victim_state, lambda r: r == (True, 1), "the pod ready, restarted once", 60)
        wait_until(lambda: load.snapshot()[0], lambda n: n > answered + 50,
                   "requests to go on being answered", 30)  # fmt: skip
        lost = len(load.failures) - failed_before
        # At most the one request that was inside the killed server (WORKER_COUNT = 1).
        assert lost <= 1, load.failures
    finally:
        load.stop()
    assert load.codes[200] > 100
    assert len(load.failures) <= 1, load.failures

    # No load: after the router's minute below target, blue goes back to min_instances and
    # the kubelet stops the pods that went.
    wait_until(lambda: replicas(cluster, namespace, "blue"), lambda n: n == 1,
               "the router to scale blue back down", 180)  # fmt: skip
    wait_until(lambda: len(pods.model_pods("blue")), lambda n: n == 1,
               "the kubelet to stop the removed pods", 90)  # fmt: skip
    code, answer = post(score_url, data.read_bytes(), key)
    assert code == 200 and json.loads(answer) == pytest.approx(expected_answer())


def answered_by(url: str, body: bytes, key: str) -> str:
    """The deployment that answered one scoring request (the router's response header)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.headers["azureml-model-deployment"])
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{err.code} {err.read()[:300]!r}") from None


def test_a_traffic_change_committed_to_the_example_is_followed_by_the_running_router(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    pods: Pods,
) -> None:
    root = example_repo(tmp_path, f"t{namespace[-6:]}", namespace, jobs=False)
    endpoint = root / "deployments" / "endpoint.yaml"
    split = endpoint.read_text()
    assert "blue: 90" in split and "green: 10" in split
    endpoint.write_text(split.replace("blue: 90", "blue: 100").replace("green: 10", "green: 0"))
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.git.commit(m="mnist: all traffic to blue", author="Test <test@example.com>")
    kubeconfig = ["--kubeconfig", cluster_kubeconfig] if cluster_kubeconfig else []
    runner = CliRunner()
    url = pods.apply(root, cluster_kubeconfig)
    [router] = pods.router_pods()
    secret = kube.get_secret(cluster, namespace, "mnist-endpoint-auth")
    assert secret is not None
    key = base64.b64decode(secret["data"]["primaryKey"]).decode()
    score_url = f"{url}/api/v1/endpoint/mnist/score"
    body = json.dumps({"data": ROWS}).encode()
    # `apply --wait` saw blue's pod ready; the router sees it once the EndpointSlice controller
    # and the router's watch have followed, which on a loaded machine can take longer than
    # blue's queue wait (500 ms, then a 503): count from the first answer.
    wait_until(lambda: post(score_url, body, key), lambda reply: reply[0] == 200,
               "the router to reach blue", 30)  # fmt: skip
    assert Counter(answered_by(score_url, body, key) for _ in range(20)) == {"blue": 20}

    # The pull request's change, merged: 10 % to green.
    endpoint.write_text(split)
    repo.git.commit("-am", "mnist: 10 % to green", author="Test <test@example.com>")
    applied = runner.invoke(cli.main, ["apply", str(root), "--wait", *kubeconfig])
    assert applied.exit_code == 0, applied.output
    # The router reads its config from a ConfigMap volume, which a real kubelet refreshes at
    # its next sync of the pod: up to its sync period (1 min) plus the cache's TTL. CI saw 60 s
    # pass without the new split.
    wait_until(lambda: answered_by(score_url, body, key), lambda name: name == "green",
               "the router to follow the new split", 150)  # fmt: skip
    answers = Counter(answered_by(score_url, body, key) for _ in range(100))
    assert abs(answers["green"] - 10) <= 1 and answers["blue"] + answers["green"] == 100, answers
    # Followed by the same router pod: no restart.
    assert pods.router_pods() == [router]


def test_a_hung_model_server_is_killed_and_restarted_by_its_liveness_probe(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    pods: Pods,
) -> None:
    root = example_repo(tmp_path, f"h{namespace[-6:]}", namespace, jobs=False)
    blue = root / "deployments" / "blue.yaml"
    liveness = "liveness_probe: {initial_delay: 1, period: 1, timeout: 1, failure_threshold: 3}"
    blue.write_text(f"{blue.read_text()}{liveness}\n")
    url = pods.apply(root, cluster_kubeconfig)
    [hung] = wait_until(lambda: [p for p in pods.model_pods("blue") if p.ready],
                        lambda found: len(found) == 1, "blue's server to be ready")  # fmt: skip
    assert pod_ready(cluster, namespace, hung.name) == (True, 0)

    # Stopped, its server still exists but answers nothing: only the liveness probe can tell.
    pods.signal_all(hung, "SIGSTOP")
    wait_until(
        lambda: pod_ready(cluster, namespace, hung.name),
        lambda state: state == (True, 1),
        "the pod restarted once and ready",
    )
    [restarted] = pods.model_pods("blue")
    assert restarted.container_id != hung.container_id and restarted.restarts == 1
    # The kubelet says why (the Event of its failed liveness probe).
    events = kube.list_objects(cluster, "v1", "Event", namespace)
    assert any(
        e.get("reason") == "Unhealthy"
        and "Liveness probe failed" in str(e.get("message"))
        and e["involvedObject"]["name"] == hung.name
        for e in events
    ), [e.get("message") for e in events]

    key = primary_key(cluster, namespace, "blue")
    body = json.dumps({"data": ROWS}).encode()
    _, answer = wait_until(lambda: post(f"{url}/api/v1/service/blue/score", body, key),
                           lambda reply: reply[0] == 200, "blue to score again")  # fmt: skip
    assert json.loads(answer) == pytest.approx(expected_answer())


def test_a_conda_files_pip_packages_are_installed_for_its_model_server(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    pods: Pods,
) -> None:
    root = example_repo(tmp_path, f"c{namespace[-6:]}", namespace, jobs=False)
    conda = root / "deployments" / "model" / "conda.yml"
    conda.write_text(
        f"{conda.read_text()}  - six=1.16\n  - libgcc-ng\n  - pip:\n    - {CONDA_PACKAGE}\n"
    )
    # Blue's own copy of the example's scoring script (green shares the folder, not the conda
    # file), wrapped: it also answers with the version of the package.
    scripts = root / "deployments" / "score-tabulate"
    scripts.mkdir()
    (scripts / "example.py").write_text((root / "deployments" / "score" / "score.py").read_text())
    (scripts / "score.py").write_text(WITH_TABULATE)
    blue = root / "deployments" / "blue.yaml"
    blue.write_text(
        blue.read_text().replace("local_path: ./score/", "local_path: ./score-tabulate/")
    )
    url = pods.apply(root, cluster_kubeconfig, timeout="4m")  # with a pip install
    key = primary_key(cluster, namespace, "blue")
    body = json.dumps({"data": ROWS}).encode()
    code, answer = post(f"{url}/api/v1/service/blue/score", body, key)
    assert code == 200, answer
    assert json.loads(answer) == {"tabulate": "0.9.0", "scores": pytest.approx(expected_answer())}
    # The log of the pod's prepare-environment container (the stand-in's micromamba) says what
    # it installed and what of the file it left out.
    [pod] = pods.model_pods("blue")
    log = pods.log(pod.name, workloadobjects.PREPARE_ENVIRONMENT)
    # A conda package is installed from PyPI (conda's `=1.16` is pip's `==1.16.*`); one that is
    # no Python package is named as left out.
    assert "six==1.16.*" in log and "tabulate-0.9.0" in log, log[-3000:]
    assert "libgcc-ng: a conda package that is no Python package on PyPI" in log
