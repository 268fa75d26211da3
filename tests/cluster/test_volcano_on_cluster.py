"""volcano Jobs run on a plane with a real node (``localcluster.volcano``).

The plane runs volcano's scheduler and controller manager, built from ``volcano.sh/volcano``,
as processes of its own; volcano's CRDs are those the extension renders (applied here as its
apply would). A volcano Job whose pod echoes and exits 0 reaches phase Completed with its pod
Succeeded on the real node (placed there by ``realplacement``, from the render's job label);
one exiting 3 ends Failed with exit code 3. Then ``reconciler job status`` on the bundled
example, its jobs changed to run the node's image, says succeeded and failed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from reconciler import kube, objects
from reconciler.cli import main as cli
from reconciler.localcluster import plane, volcano
from reconciler.localcluster import volcanoconfig as vc
from reconciler.render import workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture
from tests.helpers import EXAMPLE, example_repo

pytestmark = pytest.mark.cluster
GROUP = "batch.volcano.sh"


def rendered_volcano_crds() -> list[dict[str, Any]]:
    """The CRDs of volcano's kinds in what the extension renders for the bundled example."""
    result = CliRunner().invoke(cli.main, ["render", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    crds = [
        d
        for d in docs
        if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"].endswith("volcano.sh")
    ]
    assert {c["metadata"]["name"] for c in crds} == {
        "jobs.batch.volcano.sh",
        "podgroups.scheduling.volcano.sh",
        "queues.scheduling.volcano.sh",
    }
    return crds


@pytest.fixture(scope="module")
def volcano_plane(real_node: RealNodeFixture) -> RealNodeFixture:
    """The real-node plane with volcano started first, then the CRDs applied (as on ``cluster
    up`` then ``apply``), waiting until both components are healthy."""
    began = time.monotonic()
    volcano.start(real_node.plane, print)
    print(f"volcano built (or found) and started in {time.monotonic() - began:.1f} s")
    # Server-side applied as the reconciler applies them (its field manager), so that the
    # extension's apply in a later test owns them as it would on `cluster up` then `apply`.
    connection = kube.connect(real_node.plane.kubeconfig)
    try:
        for crd in rendered_volcano_crds():
            kube.apply(connection, crd)
    finally:
        connection.api.close()
    waited = volcano.wait_healthy(real_node.plane, timeout=150)
    print(f"volcano healthy {waited:.1f} s after the CRDs were created")
    return real_node


@pytest.fixture
def namespace(volcano_plane: RealNodeFixture, real_namespace: str) -> str:
    """A namespace on the real node's plane, volcano running."""
    return real_namespace


def volcano_job(name: str, image: str, script: str) -> dict[str, Any]:
    """A volcano Job in the render's shape (queue, minAvailable, one task, the job label),
    nothing in it about real nodes."""
    labels = {objects.MANAGED_BY_LABEL: objects.MANAGED_BY, workloadobjects.JOB_LABEL: name}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": vc.SCHEDULER_NAME,
            "queue": vc.DEFAULT_QUEUE,
            "minAvailable": 1,
            "maxRetry": 3,
            "tasks": [
                {
                    "name": "main",
                    "replicas": 1,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "job",
                                    "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["sh", "-c", script],
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "64Mi"},
                                        "limits": {"cpu": "500m", "memory": "256Mi"},
                                    },
                                }
                            ],
                        },
                    },
                }
            ],
        },
    }


def run_volcano_job(
    fixture: RealNodeFixture, namespace: str, name: str, script: str
) -> tuple[dict[str, Any], Any, float]:
    """Create the Job, wait for its phase to be final; (the Job, its pod, seconds taken)."""
    custom = client.CustomObjectsApi(fixture.api)
    began = time.monotonic()
    custom.create_namespaced_custom_object(
        GROUP, "v1alpha1", namespace, "jobs", volcano_job(name, fixture.pod_image, script)
    )

    def phase() -> dict[str, Any]:
        job: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, "jobs", name
        )
        return job

    done = wait_until(
        phase,
        lambda j: (
            ((j.get("status") or {}).get("state") or {}).get("phase")
            in ("Completed", "Failed", "Aborted", "Terminated")
        ),
        f"volcano Job {name} to end",
        180,
    )
    seconds = time.monotonic() - began
    core = client.CoreV1Api(fixture.api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"volcano.sh/job-name={name}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return done, pods[0], seconds


def test_a_volcano_job_that_echoes_completes_on_the_real_node(
    volcano_plane: RealNodeFixture, namespace: str
) -> None:
    job, pod, seconds = run_volcano_job(volcano_plane, namespace, "hello", "echo hello")
    print(f"volcano Job hello Completed in {seconds:.1f} s")
    assert job["status"]["state"]["phase"] == "Completed", job["status"]
    assert job["status"].get("succeeded") == 1
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == volcano_plane.node.name
    assert pod.spec.scheduler_name == vc.SCHEDULER_NAME
    core = client.CoreV1Api(volcano_plane.api)
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "hello\n"


def test_a_volcano_job_exiting_3_fails(volcano_plane: RealNodeFixture, namespace: str) -> None:
    job, pod, seconds = run_volcano_job(volcano_plane, namespace, "crash", "exit 3")
    print(f"volcano Job crash Failed in {seconds:.1f} s")
    assert job["status"]["state"]["phase"] == "Failed", job["status"]
    assert job["status"].get("failed") == 1
    assert pod.status.phase == "Failed"
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 3
    assert status.container_id  # a container runtime ran it


def test_job_status_says_succeeded_and_failed_for_volcano_jobs_that_ran(
    volcano_plane: RealNodeFixture, tmp_path: Path
) -> None:
    """The bundled example (volcano on), its hello job changed to run the node's image and a
    second job that exits 3; applied to the plane, `job status` reads what volcano reported."""
    namespace = f"t-vcs-{uuid.uuid4().hex[:6]}"
    root = example_repo(tmp_path, f"v{namespace[-6:]}", namespace)
    (root / "jobs" / "train.yaml").unlink()
    hello = root / "jobs" / "hello.yml"
    text = hello.read_text().replace("python:3.11-slim", volcano_plane.pod_image)
    text = text.replace("""python -c "print('Hello world!')\"""", "echo hello")
    hello.write_text(text)
    (root / "jobs" / "crash.yml").write_text(text.replace("echo hello", "sh -c 'exit 3'"))
    kubeconfig = volcano_plane.plane.kubeconfig
    applied = CliRunner().invoke(cli.main, ["apply", str(root), "--kubeconfig", kubeconfig])
    assert applied.exit_code == 0, applied.output

    def states() -> dict[str, tuple[str, str]]:
        result = CliRunner().invoke(
            cli.main, ["job", "status", str(root), "--kubeconfig", kubeconfig]
        )
        assert result.exit_code == 0, result.output
        found = {}
        for line in result.stdout.splitlines()[1:]:
            name, state, *detail = line.split(maxsplit=2)
            found[name] = (state, detail[0] if detail else "")
        return found

    final = wait_until(
        states,
        lambda found: (
            found.get("jobs-hello", ("",))[0] == "succeeded"
            and found.get("jobs-crash", ("",))[0] == "failed"
        ),
        "job status to say succeeded and failed",
        240,
    )
    assert final["jobs-hello"][1].startswith("exit code 0 (jobs-hello-main-0"), final
    # What the Job says, then how its pod ended (the cause).
    assert final["jobs-crash"][1].startswith("Failed; pod jobs-crash-main-0 "), final
    assert "exit code 3" in final["jobs-crash"][1], final


def test_volcano_runs_as_processes_of_the_plane(volcano_plane: RealNodeFixture) -> None:
    """volcano's processes are the plane's: its status lists them alive (so its stop ends
    them), and a second start keeps them."""
    status = {c.name: c for c in plane.status(Path(volcano_plane.plane.state_dir)).components}
    for name in vc.COMPONENTS:
        assert status[name].alive, status
    again = volcano.start(volcano_plane.plane)
    assert again == {name: status[name].pid for name in vc.COMPONENTS}


def test_the_bundled_jobs_run_as_written_and_their_logs_and_outputs_are_real(
    volcano_plane: RealNodeFixture, tmp_path: Path
) -> None:
    """The bundled example's hello job as written (`python:3.11-slim`, here its stand-in), one
    whose code writes ./outputs, and one whose Python exits 3: applied, each runs in a real
    container; `job logs` prints what each printed, `job status` says how each ended."""
    from reconciler.localcluster import localimages

    images = localimages.ensure_images(["python:3.11-slim"])
    localimages.load(Path(volcano_plane.plane.state_dir), images, [volcano_plane.node])
    namespace = f"t-vct-{uuid.uuid4().hex[:6]}"
    root = example_repo(tmp_path, f"w{namespace[-6:]}", namespace)
    (root / "jobs" / "train.yaml").unlink()  # a GPU job: no real node has a GPU
    hello = (root / "jobs" / "hello.yml").read_text()
    (root / "jobs" / "src").mkdir(exist_ok=True)
    (root / "jobs" / "src" / "fit.py").write_text(
        "import os\n"
        "with open('outputs/model.txt', 'w') as f:\n"
        "    f.write('weights')\n"
        "print(sorted(os.listdir('outputs')), open('outputs/model.txt').read())\n"
    )
    fit = hello.replace("""python -c "print('Hello world!')\"""", "python fit.py")
    (root / "jobs" / "fit.yml").write_text(fit.replace("compute:", "code: ./src\ncompute:", 1))
    crash = hello.replace("print('Hello world!')", "import sys; print('bye'); sys.exit(3)")
    (root / "jobs" / "crash.yml").write_text(crash)
    kubeconfig = ["--kubeconfig", volcano_plane.plane.kubeconfig]
    applied = CliRunner().invoke(cli.main, ["apply", str(root), *kubeconfig])
    assert applied.exit_code == 0, applied.output

    def status() -> dict[str, str]:
        result = CliRunner().invoke(cli.main, ["job", "status", str(root), *kubeconfig])
        return {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}

    wanted = {"jobs-hello": "succeeded", "jobs-fit": "succeeded", "jobs-crash": "failed"}
    final = wait_until(status, lambda s: all(s.get(k) == v for k, v in wanted.items()),
                       "the three jobs to end", 300)  # fmt: skip
    assert {k: final[k] for k in wanted} == wanted

    def logs(job: str) -> str:
        result = CliRunner().invoke(cli.main, ["job", "logs", job, str(root), *kubeconfig])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert logs("jobs-hello") == "Hello world!\n"
    assert logs("jobs-fit") == "['model.txt'] weights\n"
    assert "bye" in logs("jobs-crash")
    crashed = client.CoreV1Api(volcano_plane.api).list_namespaced_pod(
        namespace, label_selector=f"{workloadobjects.JOB_LABEL}=jobs-crash"
    )
    codes = {
        c.state.terminated.exit_code for p in crashed.items for c in p.status.container_statuses
    }
    assert codes == {3}
