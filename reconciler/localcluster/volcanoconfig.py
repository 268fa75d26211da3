"""Pure logic of volcano on the local plane: its pin, build command, files and command lines.

The extension renders training jobs as volcano Jobs and volcano's own components as
Deployments; on the local plane those Deployments land on kwok nodes, where nothing runs, so a
volcano Job would wait forever. When a plane has real nodes it also runs volcano's scheduler
and controller manager as processes of the plane (``volcano`` starts them), built from
``volcano.sh/volcano`` at the version the extension renders. They reach the API server on
loopback with a kubeconfig of their own, like kube-scheduler; the Job's pods then run on the
real node like any other pod.

volcano's go.mod has ``replace`` directives, so ``go install volcano.sh/volcano/cmd/...@v``
refuses to build it: ``controlplane/volcano/`` is a small module of the project's own that
requires volcano and copies its replace lines; its ``go.mod`` holds the pin.

No admission webhook: a Job that names its queue, ``minAvailable`` and its tasks (as the render
writes them) needs none of its defaults, and the webhook would need a serving certificate and a
Service the API server can reach.

Nothing here starts a process; ``volcano`` runs these.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from reconciler.localcluster.config import Layout
from reconciler.localcluster.pki import ClientIdentity

MODULE = "volcano.sh/volcano"
# The Go module of the project's own that builds volcano (under controlplane/).
SOURCE_SUBDIR = "volcano"
PACKAGES = (f"{MODULE}/cmd/scheduler", f"{MODULE}/cmd/controller-manager")
# `go build -o DIR/ pkgs...` names each binary after its package's last element; the plane
# runs them under volcano's image names instead.
BINARIES = {"scheduler": "vc-scheduler", "controller-manager": "vc-controller-manager"}

SCHEDULER = "volcano-scheduler"
CONTROLLER_MANAGER = "volcano-controller-manager"
COMPONENTS = (CONTROLLER_MANAGER, SCHEDULER)

# The Job's `spec.schedulerName` in what the extension renders.
SCHEDULER_NAME = "volcano"
# The queue the render's Jobs name; vc-scheduler creates it at start (--default-queue).
DEFAULT_QUEUE = "default"

# Both components are cluster-wide controllers; the plane's admin group, as kwok has.
IDENTITY = ClientIdentity("volcano", "system:volcano", ("system:masters",))

# The extension renders the CRDs of Jobs, PodGroups and Queues only. Two default-on gates of
# volcano 1.10 watch other kinds, and an informer of a kind the API server does not serve never
# syncs, so the controller that holds it never starts: QueueCommandSync (bus.volcano.sh
# Commands, in the job and queue controllers) and ResourceTopology (nodeinfo.volcano.sh
# Numatopologies, in the scheduler).
FEATURE_GATES = "QueueCommandSync=false,ResourceTopology=false"
# The jobflow and jobtemplate controllers need flow.volcano.sh, which nothing renders.
CONTROLLERS = ("job-controller", "pg-controller", "queue-controller", "gc-controller")

# The extension's volcano-scheduler-configmap (templates/components/volcano-scheduler.yaml.j2),
# so jobs are scheduled here as the extension's scheduler would (a unit test keeps them equal).
SCHEDULER_CONF = (
    'actions: "enqueue, allocate, backfill"\n'
    "tiers:\n"
    "- plugins:\n"
    "  - name: priority\n"
    "  - name: gang\n"
    "  - name: conformance\n"
    "- plugins:\n"
    "  - name: drf\n"
    "  - name: predicates\n"
    "  - name: proportion\n"
    "  - name: nodeorder\n"
    "  - name: binpack\n"
)

# Seconds between starts when a component exits (see `supervised`).
RESTART_DELAY = 2


def pinned_version(go_mod: str) -> str:
    """The volcano version ``controlplane/volcano/go.mod`` requires."""
    match = re.search(r"^\s*(?:require\s+)?volcano\.sh/volcano\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise ValueError("controlplane/volcano/go.mod does not require volcano.sh/volcano")
    return match.group(1)


def build_command(go: str, out_dir: Path, version: str) -> list[str]:
    """One ``go build`` of both programs into ``out_dir``, static, version stamped."""
    pkg = f"{MODULE}/pkg/version"
    ldflags = f"-s -w -X {pkg}.Version={version}"
    return [
        go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", f"{out_dir}/", *PACKAGES,
    ]  # fmt: skip


def folder(layout: Layout) -> Path:
    """Where the plane keeps volcano's files (its scheduler configuration)."""
    return layout.root / "volcano"


def conf_path(layout: Layout) -> Path:
    return folder(layout) / "volcano-scheduler.conf"


def kubeconfig_path(layout: Layout) -> Path:
    return layout.kubeconfig("volcano")


def scheduler_args(layout: Layout, healthz_port: int) -> list[str]:
    """vc-scheduler answers /healthz only once the default Queue exists (it makes the queue
    first), so a healthy scheduler means the CRDs are served too. No metrics server."""
    return [
        f"--kubeconfig={kubeconfig_path(layout)}",
        f"--scheduler-conf={conf_path(layout)}",
        f"--scheduler-name={SCHEDULER_NAME}",
        f"--default-queue={DEFAULT_QUEUE}",
        "--leader-elect=false",
        "--enable-healthz=true",
        f"--healthz-address=127.0.0.1:{healthz_port}",
        # It would write its cache to /tmp on SIGUSR2; nothing here asks for it.
        "--cache-dumper=false",
        f"--feature-gates={FEATURE_GATES}",
        "--schedule-period=1s",
        "-v=2",
    ]


def controller_manager_args(layout: Layout, healthz_port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig_path(layout)}",
        f"--scheduler-name={SCHEDULER_NAME}",
        "--leader-elect=false",
        "--enable-healthz=true",
        f"--healthz-address=127.0.0.1:{healthz_port}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--feature-gates={FEATURE_GATES}",
        "-v=2",
    ]


# The API groups of the extension's volcano CRDs; each component starts once all are served.
SERVED_APIS = ("/apis/batch.volcano.sh/v1alpha1", "/apis/scheduling.volcano.sh/v1beta1")
# Seconds between checks while they are not served.
SERVED_POLL = 2


def served_check(kubectl: list[str], kubeconfig: Path) -> str:
    """A shell condition: the API server serves every group in ``SERVED_APIS`` (kubectl of the
    plane's own binary, with volcano's kubeconfig)."""
    checks = [
        f"{shlex.join([*kubectl, f'--kubeconfig={kubeconfig}', 'get', '--raw', api])} "
        ">/dev/null 2>&1"
        for api in SERVED_APIS
    ]
    return " && ".join(checks)


def supervised(argv: list[str], served: str) -> list[str]:
    """``argv`` started once the shell condition ``served`` holds, and again whenever it exits,
    as the kubelet restarts a Deployment's pod.

    On ``cluster up`` volcano starts before the extension's apply creates its CRDs. Started
    then, vc-scheduler exits after 60 s without Queues, and the controller manager's informers
    retry with client-go's backoff (up to 30 s) after the CRDs appear; waiting for them first
    starts both within ``SERVED_POLL`` s of the apply. The shell leads the process group, so the
    plane's stop (SIGTERM to the group) ends both.
    """
    line = shlex.join(argv)
    return [
        "/bin/sh",
        "-c",
        f"while :; do until {served}; do sleep {SERVED_POLL}; done; {line}; "
        f'echo "exited with code $?; starting again in {RESTART_DELAY} s"; '
        f"sleep {RESTART_DELAY}; done",
    ]


def commands(
    bin_dir: Path, layout: Layout, ports: dict[str, int], kubectl: list[str]
) -> dict[str, list[str]]:
    """Each component's command line; ``ports`` holds the ``PORT_NAMES``, ``kubectl`` the
    plane's kubectl command (its binary and ``kubectl``)."""
    served = served_check(kubectl, kubeconfig_path(layout))
    return {
        CONTROLLER_MANAGER: supervised(
            [
                str(bin_dir / BINARIES["controller-manager"]),
                *controller_manager_args(layout, ports["controller-manager-healthz"]),
            ],
            served,
        ),
        SCHEDULER: supervised(
            [
                str(bin_dir / BINARIES["scheduler"]),
                *scheduler_args(layout, ports["scheduler-healthz"]),
            ],
            served,
        ),
    }


PORT_NAMES = ("controller-manager-healthz", "scheduler-healthz")


def health_urls(ports: dict[str, int]) -> dict[str, str]:
    return {
        CONTROLLER_MANAGER: f"http://127.0.0.1:{ports['controller-manager-healthz']}/healthz",
        SCHEDULER: f"http://127.0.0.1:{ports['scheduler-healthz']}/healthz",
    }
