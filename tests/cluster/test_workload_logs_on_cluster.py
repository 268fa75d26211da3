"""`reconciler job logs` and `reconciler deployment logs` (issue 28): pod logs read through the
API server, as `kubectl logs` reads them.

The workloads are the repo's own, rendered: a job's batch Job and a deployment's Deployment keep
the render's labels and container names (what the commands pick pods and containers by); their
pod spec is swapped for one that runs on the real node (the ``real_node`` fixture's plane) with
the node's locally built image and a shell script whose output the test knows. A pod on a kwok
node (the session plane) is reported as having no logs to read, an unschedulable one as pending
with the scheduler's reason, an unknown name with the nearest one, and an API server that does
not answer with exit 2.
"""

from __future__ import annotations

import queue
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from reconciler import kube, objects, source
from reconciler.cli import main as reconciler_cli
from reconciler.localcluster import realnodeconfig as rc
from reconciler.render import render, workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture
from tests.helpers import API, ctrl_c_ends_it, example_repo, free_port, load, write_repo

pytestmark = pytest.mark.cluster


def repo_in(tmp_path: Path, namespace: str) -> Path:
    """A repo with the jobs `echoer`, `streamer`, `ticker`, `stuck`, `retrier` and the deployment
    `scorer`,
    installed into `namespace` (batch Jobs: no volcano)."""
    extension = f"""
        apiVersion: {API}
        kind: Extension
        metadata: {{name: ml}}
        spec:
          clusterType: managedClusters
          releaseNamespace: {namespace}
          config:
            enableTraining: true
            enableInference: true
            inferenceRouterServiceType: ClusterIP
            allowInsecureConnections: true
            installVolcano: false
        """
    files: dict[str, str | bytes] = {"ext.yaml": extension}
    for name in ("echoer", "streamer", "ticker", "stuck", "retrier"):
        files[f"jobs/{name}.yaml"] = f"""
            $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
            name: {name}
            command: python train.py
            environment: {{image: python:3.11-slim}}
            """
    files["deployments/scorer.yaml"] = """
        $schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
        name: scorer
        environment: {image: python:3.11-slim}
        code_configuration: {code: ./score, scoring_script: score.py}
        model: {path: ./model.json}
        scale_settings: {type: target_utilization, min_instances: 2, max_instances: 2}
        """
    files["deployments/model.json"] = "{}"
    files["deployments/score/score.py"] = "def init():\n    pass\n"
    return write_repo(tmp_path / "repo", files)


def rendered(root: Path, kind: str, name: str) -> objects.Object:
    loaded = load(root)
    assert loaded.valid, [str(p) for p in loaded.problems]
    everything = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "test").objects
    (found,) = [o for o in everything if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def on_real_node(
    workload: objects.Object, image: str, script: str, restart: str = "Never"
) -> objects.Object:
    """The rendered Job or Deployment, its pod running `sh -c script` on the real node in the
    render's container (labels untouched)."""
    template = workload["spec"]["template"]
    (container,) = template["spec"]["containers"]
    template["spec"] = {
        "restartPolicy": restart,
        "nodeSelector": {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]},
        "tolerations": [rc.REAL_NODE_TOLERATION],
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": container["name"],
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }
        ],
    }
    return workload


def invoke(root: Path, kubeconfig: str, *args: str) -> Any:
    return CliRunner().invoke(reconciler_cli.main, [*args, str(root), "--kubeconfig", kubeconfig])


def command(root: Path, kubeconfig: str, *args: str) -> list[str]:
    """`reconciler ARGS` as a user runs it: a process of its own (for -f and Ctrl-C)."""
    return [sys.executable, "-m", "reconciler", *args, str(root),
            "--kubeconfig", kubeconfig]  # fmt: skip


class Lines:
    """A process's stdout, line by line, each awaited at most `timeout` seconds (a follower
    that prints nothing must fail the test, not hang the run)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = 60.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from {self.process.args} in {timeout:.0f}s") from None
        return line or ""

    def rest(self, timeout: float = 60.0) -> str:
        """Every line until the process closes its stdout."""
        found = []
        while line := self.next(timeout):
            found.append(line)
        return "".join(found)


def stderr_of(process: subprocess.Popen[str]) -> str:
    """What a process that ended said on stderr (for an assertion's message)."""
    process.wait(timeout=30)
    return process.stderr.read() if process.stderr else ""


def job_finished(cluster: kube.Cluster, namespace: str, name: str) -> str | None:
    ref = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
    for cond in ((kube.get(cluster, ref) or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["type"])
    return None


@pytest.fixture
def real(real_node: RealNodeFixture, tmp_path: Path) -> Iterator[tuple[kube.Cluster, str, Path]]:
    """(a connection to the real node's plane, a fresh namespace there, the repo installed
    into it)."""
    cluster = kube.connect(real_node.plane.kubeconfig)
    name = f"t-logs-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(real_node.api)
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        lambda: core.list_namespaced_service_account(name).items,
        bool,
        f"the default service account in {name}",
    )
    try:
        yield cluster, name, repo_in(tmp_path, name)
    finally:
        core.delete_namespace(name, propagation_policy="Background")
        cluster.api.close()


def test_job_logs_prints_the_jobs_output_line_for_line(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    kubeconfig = real_node.plane.kubeconfig
    job = on_real_node(
        rendered(root, "Job", "echoer"), real_node.pod_image, "printf 'one\\ntwo\\nthree\\n'"
    )
    kube.apply(cluster, job)
    wait_until(lambda: job_finished(cluster, namespace, "echoer"), bool, "echoer to finish", 120)
    assert job_finished(cluster, namespace, "echoer") == "Complete"

    shown = invoke(root, kubeconfig, "job", "logs", "echoer")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "one\ntwo\nthree\n"
    last = invoke(root, kubeconfig, "job", "logs", "echoer", "--tail", "1")
    assert last.exit_code == 0, last.output
    assert last.stdout == "three\n"
    # A container the pod does not have: said, with the ones it has.
    other = invoke(root, kubeconfig, "job", "logs", "echoer", "--container", "sidecar")
    assert other.exit_code == 1
    assert "has no container sidecar (its containers: job)" in other.stderr


def test_job_logs_follow_streams_a_running_job_until_it_ends(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 1; done"
    # Started before the Job exists: -f waits for its pod, then follows it.
    began = time.monotonic()
    with subprocess.Popen(
        command(root, real_node.plane.kubeconfig, "job", "logs", "streamer", "-f"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            job = on_real_node(rendered(root, "Job", "streamer"), real_node.pod_image, script)
            kube.apply(cluster, job)
            assert follower.stdout is not None
            lines = Lines(follower)
            first = lines.next()
            first_at = time.monotonic()
            # Streamed: the first line is out while the job still runs.
            assert first == "line 1\n", stderr_of(follower)
            assert job_finished(cluster, namespace, "streamer") is None
            rest = lines.rest()
            code = follower.wait(timeout=60)
            ended_at = time.monotonic()
        finally:
            if follower.poll() is None:
                follower.kill()
        assert code == 0, stderr_of(follower)
    assert first + rest == "".join(f"line {i}\n" for i in range(1, 6))
    # The lines came as the job printed them (one a second), not all at its end.
    assert ended_at - first_at >= 3
    print(f"\njob logs -f: first line {first_at - began:.1f}s after start (pod included), "
          f"ended {ended_at - first_at:.1f}s later with the container")  # fmt: skip


def test_job_logs_follow_follows_a_failed_pods_retry_until_the_job_is_over(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    job = on_real_node(
        rendered(root, "Job", "retrier"), real_node.pod_image, 'echo "attempt in $HOSTNAME"; exit 1'
    )
    job["spec"]["backoffLimit"] = 1  # two pods; the Job controller waits ~10 s before the second
    kube.apply(cluster, job)
    began = time.monotonic()
    done = subprocess.run(
        command(root, real_node.plane.kubeconfig, "job", "logs", "retrier", "-f"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert job_finished(cluster, namespace, "retrier") == "Failed"
    pods = sorted(
        kube.list_objects(cluster, "v1", "Pod", namespace, "job-name=retrier"),
        key=lambda p: p["metadata"]["creationTimestamp"],
    )
    names = [p["metadata"]["name"] for p in pods]
    assert len(names) == 2
    assert done.stdout == "".join(f"attempt in {name}\n" for name in names)
    assert f"note: {names[1]} came after the pods followed so far ended" in done.stderr
    print(f"\njob logs -f over a failed pod and its retry: {took:.1f}s")


def test_job_logs_follow_ends_cleanly_on_ctrl_c(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, _, root = real
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"
    kube.apply(cluster, on_real_node(rendered(root, "Job", "ticker"), real_node.pod_image, script))
    with subprocess.Popen(
        command(root, real_node.plane.kubeconfig, "job", "logs", "ticker", "-f"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_ends_it,
    ) as follower:
        try:
            assert follower.stdout is not None
            ticks = Lines(follower)
            assert ticks.next() == "tick 0\n", stderr_of(follower)
            assert ticks.next() == "tick 1\n"
            interrupted = time.monotonic()
            follower.send_signal(signal.SIGINT)
            code = follower.wait(timeout=10)
            took = time.monotonic() - interrupted
        finally:
            if follower.poll() is None:
                follower.kill()
        errors = stderr_of(follower)
    assert code == 130, errors
    assert "Traceback" not in errors and "Aborted" not in errors, errors
    assert took < 3
    # A reader that stops reading (`job logs -f | head -1`) ends it quietly too.
    with subprocess.Popen(
        command(root, real_node.plane.kubeconfig, "job", "logs", "ticker", "-f"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as reader:
        assert reader.stdout is not None
        # Not through `Lines`: its thread would hold the pipe this test closes.
        assert select.select([reader.stdout], [], [], 60)[0], "no tick in 60 s"
        assert reader.stdout.readline().startswith("tick ")
        reader.stdout.close()
        try:
            code = reader.wait(timeout=10)  # the next tick's write finds the pipe closed
        finally:
            if reader.poll() is None:
                reader.kill()
        errors = stderr_of(reader)
    assert code == 0, errors
    assert errors == ""


def test_deployment_logs_prefixes_every_replicas_lines_and_reads_one_with_pod(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    kubeconfig = real_node.plane.kubeconfig
    deployment = rendered(root, "Deployment", "scorer")
    assert deployment["spec"]["replicas"] == 2
    script = 'echo "serving from $HOSTNAME"; exec sleep 3600'
    kube.apply(cluster, on_real_node(deployment, real_node.pod_image, script, restart="Always"))
    selector = f"{workloadobjects.DEPLOYMENT_LABEL}=scorer"

    def running() -> list[str]:
        pods = kube.list_objects(cluster, "v1", "Pod", namespace, selector)
        return sorted(
            p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"
        )

    names = wait_until(running, lambda found: len(found) == 2, "both replicas to run", 120)
    shown = invoke(root, kubeconfig, "deployment", "logs", "scorer")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"[pod/{name}/inference-server] serving from {name}" for name in names
    ]
    one = invoke(root, kubeconfig, "deployment", "logs", "scorer", "--pod", names[1])
    assert one.exit_code == 0, one.output
    assert one.stdout == f"serving from {names[1]}\n"
    # No restart yet: no previous run to read.
    before = invoke(root, kubeconfig, "deployment", "logs", "scorer", "--previous")
    assert before.exit_code == 1
    assert "has not restarted: no previous log" in before.stderr
    # -f follows both replicas at once (they never end: Ctrl-C does).
    with subprocess.Popen(
        command(root, kubeconfig, "deployment", "logs", "scorer", "-f"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_ends_it,
    ) as follower:
        try:
            assert follower.stdout is not None
            replicas = Lines(follower)
            got = {replicas.next(), replicas.next()}
            follower.send_signal(signal.SIGINT)
            code = follower.wait(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
        errors = stderr_of(follower)
    assert got == {f"[pod/{name}/inference-server] serving from {name}\n" for name in names}
    assert code == 130, errors


def test_deployment_logs_previous_reads_a_crashed_containers_last_run(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    deployment = rendered(root, "Deployment", "scorer")
    deployment["spec"]["replicas"] = 1
    # stdout then stderr, apart in time: the kubelet's log keeps them in the order written.
    script = "echo starting; sleep 0.5; echo cannot load the model >&2; exit 1"
    kube.apply(cluster, on_real_node(deployment, real_node.pod_image, script, restart="Always"))
    selector = f"{workloadobjects.DEPLOYMENT_LABEL}=scorer"

    def restarted() -> list[objects.Object]:
        return [
            p
            for p in kube.list_objects(cluster, "v1", "Pod", namespace, selector)
            for s in (p.get("status") or {}).get("containerStatuses") or []
            if s.get("restartCount", 0) >= 1
        ]

    (pod,) = wait_until(restarted, bool, "the model server to crash and restart", 120)
    name = pod["metadata"]["name"]
    expected = [
        f"[pod/{name}/inference-server] starting",
        f"[pod/{name}/inference-server] cannot load the model",
    ]
    # In a crash loop the kubelet's "previous" container moves on with each restart, and for a
    # moment names one whose log it has already removed ("unable to retrieve container logs";
    # CI saw it): read again until a whole run's log comes back.
    shown = wait_until(
        lambda: invoke(root, real_node.plane.kubeconfig, "deployment", "logs", "scorer", "-p"),
        lambda result: result.exit_code == 0 and result.stdout.splitlines() == expected,
        "the previous run's log",
        30,
    )
    assert shown.stdout.splitlines() == expected


def test_an_unschedulable_jobs_logs_say_it_is_pending_and_why(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    job = on_real_node(rendered(root, "Job", "stuck"), real_node.pod_image, "echo never")
    job["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "does-not-exist"}
    kube.apply(cluster, job)

    def unschedulable() -> bool:
        for pod in kube.list_objects(cluster, "v1", "Pod", namespace, "job-name=stuck"):
            for condition in (pod.get("status") or {}).get("conditions") or []:
                if condition.get("reason") == "Unschedulable":
                    return True
        return False

    wait_until(unschedulable, bool, "the pod to be reported Unschedulable")
    shown = invoke(root, real_node.plane.kubeconfig, "job", "logs", "stuck")
    assert shown.exit_code == 1
    (line,) = shown.stderr.splitlines()
    assert line.startswith("error: pod stuck-")
    assert "is pending: it is unschedulable: 0/1 nodes are available" in line
    # -f does not wait for what will not pass by itself.
    followed = invoke(root, real_node.plane.kubeconfig, "job", "logs", "stuck", "-f")
    assert followed.exit_code == 1
    assert "unschedulable" in followed.stderr


def test_unknown_names_get_the_nearest_one(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    _, _, root = real
    job = invoke(root, real_node.plane.kubeconfig, "job", "logs", "echoerr")
    assert job.exit_code == 2
    assert f"no job named 'echoerr' in {root} (did you mean echoer?)" in job.stderr
    deployment = invoke(root, real_node.plane.kubeconfig, "deployment", "logs", "scorrer")
    assert deployment.exit_code == 2
    assert f"no deployment named 'scorrer' in {root} (did you mean scorer?)" in deployment.stderr
    # In the repo, not applied: said so.
    absent = invoke(root, real_node.plane.kubeconfig, "job", "logs", "echoer")
    assert absent.exit_code == 1
    assert "job echoer is not on the cluster" in absent.stderr


def test_an_unreachable_api_server_exits_2(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture, tmp_path: Path
) -> None:
    _, _, root = real
    config = yaml.safe_load(Path(real_node.plane.kubeconfig).read_text())
    port = free_port()
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        command(root, str(dead), "job", "logs", "echoer"),
        capture_output=True,
        text=True,
        timeout=60,  # a server that never answered fails the first contact at once
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"error: cannot reach the Kubernetes API server at https://127.0.0.1:{port} "
        f"(kubeconfig {dead}, context "
    )
    assert "connection refused; is the cluster running?" in done.stderr


def test_a_job_on_a_kwok_node_has_no_logs_to_read(
    cluster: kube.Cluster,
    cluster_kubeconfig: str | None,
    namespace: str,
    tmp_path: Path,
    local_plane: Any,
) -> None:
    if local_plane is None:
        pytest.skip("needs the local plane's kwok nodes (USE_EXISTING_CLUSTER is set)")
    root = repo_in(tmp_path, namespace)
    job = rendered(root, "Job", "echoer")
    # Asking for a GPU keeps it off the real node (none has one): it goes to a kwok GPU node.
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = 1
    kube.apply(cluster, job)

    def bound() -> list[objects.Object]:
        pods = kube.list_objects(cluster, "v1", "Pod", namespace, "job-name=echoer")
        return [p for p in pods if (p.get("spec") or {}).get("nodeName")]

    (pod,) = wait_until(bound, bool, "the job's pod to be bound to a kwok node")
    assert cluster_kubeconfig is not None
    shown = invoke(root, cluster_kubeconfig, "job", "logs", "echoer")
    assert shown.exit_code == 1
    node = pod["spec"]["nodeName"]
    assert shown.stderr == (
        f"error: pod {pod['metadata']['name']} runs on a simulated node ({node}, kwok runs no "
        "containers): no logs; use a real node\n"
    )


def test_a_volcano_job_that_volcano_never_ran_says_so(
    cluster_kubeconfig: str | None, namespace: str, tmp_path: Path, local_plane: Any
) -> None:
    if local_plane is None:
        pytest.skip("needs the local plane's kwok nodes (USE_EXISTING_CLUSTER is set)")
    assert cluster_kubeconfig is not None
    # The bundled example (volcano on, the default): volcano's controller lands on a kwok node,
    # so the volcano Job never gets a pod.
    root = example_repo(tmp_path, f"l{namespace[-6:]}", namespace)
    applied = invoke_at(root, cluster_kubeconfig, "apply", str(root))
    assert applied.exit_code == 0, applied.output
    shown = wait_until(
        lambda: invoke(root, cluster_kubeconfig, "job", "logs", "jobs-hello"),
        lambda result: "not-run" in result.stderr,
        "job logs to say volcano never ran the job",
    )
    assert shown.exit_code == 1
    assert shown.stderr.startswith(
        "error: job jobs-hello has no pod: it is not-run (volcano made no PodGroup for it: "
        "volcano-controllers runs on kwok node kwok-"
    ), shown.stderr


def invoke_at(root: Path, kubeconfig: str, *args: str) -> Any:
    """A command run with its own arguments as given (`invoke` appends the repo last)."""
    return CliRunner().invoke(reconciler_cli.main, [*args, "--kubeconfig", kubeconfig])


def test_a_job_whose_pod_cannot_be_created_says_why(
    real: tuple[kube.Cluster, str, Path], real_node: RealNodeFixture
) -> None:
    cluster, namespace, root = real
    quota = {"apiVersion": "v1", "kind": "ResourceQuota",
             "metadata": {"name": "no-pods", "namespace": namespace},
             "spec": {"hard": {"pods": "0"}}}  # fmt: skip
    kube.apply(cluster, quota)
    wait_until(
        lambda: (kube.get(cluster, quota) or {}).get("status", {}).get("hard"),
        bool,
        "the quota to be counted",
    )
    kube.apply(cluster, on_real_node(rendered(root, "Job", "echoer"), real_node.pod_image, "true"))
    shown = wait_until(
        lambda: invoke(root, real_node.plane.kubeconfig, "job", "logs", "echoer"),
        lambda result: "cannot create one" in result.stderr,
        "job logs to say the Job cannot create its pod",
    )
    assert shown.exit_code == 1
    (line,) = shown.stderr.splitlines()
    assert line.startswith('error: job echoer has no pod: its Job cannot create one: pods "echoer-')
    assert "exceeded quota: no-pods" in line
