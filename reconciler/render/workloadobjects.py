"""Jobs and model deployments -> Kubernetes objects.

The product's rules for them: `docs/domain.md#jobs` and `docs/domain.md#online-deployments`.

A job becomes a volcano Job when its extension installs volcano, else a batch/v1 Job; a model
deployment becomes an apps/v1 Deployment (never an HPA: the router scales it) and the Service the
router reaches it through. Both run in their extension's release namespace, get their instance
type's resources (with the workload's own over them) and the merged nodeSelector (`placement`),
their tags as annotations, and have their small local files (code, model, conda file, job inputs)
delivered through ConfigMaps; remote model URIs are fetched by an init container. A job's command
gets its `${{inputs.NAME}}` / `${{outputs.NAME}}` filled in with values and in-pod paths.
The router's own configuration entry for each deployment (`router_entry`) and each endpoint
(`endpoint_entry`) is the `router.yaml` format `reconciler router serve` reads; the names the
router and the render must agree on (the auth Secrets, the model Service's port name, the
coordinator Lease) and the router's RBAC for its deployments (`router_rules`) live here too.
Pure: files are read through the snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler import objects, source
from reconciler.model import endpoints, extensions, instancetypes, placement, workloads
from reconciler.render import templating

APP_DIR = "/var/azureml-app"
# A deployment's conda file is mounted here and named by AZUREML_EXTRA_CONDA_YAML_ABS_PATH, the
# variable the AzureML inference images' start script creates the environment from.
CONDA_DIR = f"{APP_DIR}/environment"
CONDA_ENV_VAR = "AZUREML_EXTRA_CONDA_YAML_ABS_PATH"
# A deployment with a conda file runs its model server from the environment the init container
# PREPARE_ENVIRONMENT makes of it, under ENVIRONMENT_DIR/<digest of the file>.
ENVIRONMENT_DIR = f"{APP_DIR}/conda-env"
PREPARE_ENVIRONMENT = "prepare-environment"
MODEL_SERVER = "azmlinfsrv"
# The model server (the product's inference server) added to an environment that lacks it; the
# local plane runs the same pin.
MODEL_SERVER_VERSION = "1.5.1"
MODEL_SERVER_REQUIREMENT = f"azureml-inference-server-http=={MODEL_SERVER_VERSION}"
JOB_CODE_DIR = "/code"
# A job runs in a writable folder of its own, its code copied in: scripts write ./outputs and
# ./logs there, as they do on the product's compute (the code's ConfigMap is read-only).
JOB_WORKSPACE_DIR = "/workspace"
PREPARE_WORKSPACE = "prepare-workspace"
JOB_INPUTS_DIR = "/inputs"  # a local input NAME is at /inputs/NAME (a file: /inputs/NAME/FILE)
JOB_OUTPUTS_DIR = workloads.OUTPUTS_DIR  # an output NAME is the empty folder /outputs/NAME
INFERENCE_PORT = 5001
JOB_BACKOFF_LIMIT = 3
# Finished jobs stay this long so their status can be read.
JOB_TTL_SECONDS = 30 * 24 * 3600
FETCH_IMAGE = "curlimages/curl:8.10.1"
# The scoring script of an MLflow no-code deployment (under templates/).
MLFLOW_SCRIPT = "scoring/mlflow_score.py"
DEPLOYMENT_LABEL = "gitops.mlext.io/deployment"
ENDPOINT_LABEL = "gitops.mlext.io/endpoint"
JOB_LABEL = "gitops.mlext.io/job"
# The container that runs a job's command and the one that runs a deployment's model server:
# what `job logs` / `deployment logs` read unless told another.
JOB_CONTAINER = "job"
DEPLOYMENT_CONTAINER = "inference-server"
# A deployment's pod template annotation: the digest of what its pods get that the template
# does not spell out (`content_digest`), so that a change of it rolls the pods. A Job carries it
# on itself (its template is immutable).
CONTENT_DIGEST_ANNOTATION = "gitops.mlext.io/content-digest"
# The name of the model Service's port (templates/workloads/deployment.yaml.j2): its
# EndpointSlices carry the replicas' port under this name, which is how the router finds it.
SERVICE_PORT_NAME = "http"
AUTOSCALED = "target_utilization"  # the scale type the router scales; "fixed" it leaves alone
_KEY_UNSAFE = re.compile(r"[^-._a-zA-Z0-9]")


def files_config_map(
    name: str, namespace: str, snapshot: source.Snapshot, root: str, keep_folder: bool = False
) -> tuple[objects.Object, list[dict[str, str]]]:
    """A ConfigMap holding every file at or below `root`, and the volume items that put each
    back at its relative path (ConfigMap keys cannot hold `/`). With `keep_folder`, a folder's
    files keep its name in front of their path (`model/x.pkl`, as a folder model lands in
    AZUREML_MODEL_DIR); a file is its name either way."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items: list[dict[str, str]] = []
    base = posixpath.dirname(root) if keep_folder else root
    for path in snapshot.files_under(root):
        relative = posixpath.basename(path) if path == root else posixpath.relpath(path, base)
        key = _KEY_UNSAFE.sub("_", relative.replace("/", "__"))
        content = snapshot.read_bytes(path)
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode()
        items.append({"key": key, "path": relative})
    config_map: objects.Object = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }
    if data:
        config_map["data"] = data
    if binary:
        config_map["binaryData"] = binary
    return config_map, items


def _pod_labels(selector: Mapping[str, str], extension: extensions.Extension) -> dict[str, str]:
    return {
        **selector,
        objects.PART_OF_LABEL: extension.name,
        objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
    }


def content_digest(
    rendered: Iterable[objects.Object],
    volumes: Iterable[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
) -> str:
    """A digest of the data of each of the `rendered` ConfigMaps that `volumes` mount, and of
    `settings`.

    The files a workload's pods get through ConfigMaps (code, model, conda file, job inputs, the
    MLflow scoring script) are not in its pod template: without this digest there, an edited
    `score.py` changed the ConfigMap and no pod ever loaded it. Taken from the ConfigMaps as
    rendered, by the volumes that mount them, so no file that reaches the pod can be missed.
    """
    made = {str(o["metadata"]["name"]): o for o in rendered if o.get("kind") == "ConfigMap"}
    mounted: set[str] = set()
    for volume in volumes:
        if "configMap" in volume:
            mounted.add(str(volume["configMap"]["name"]))
        for projected in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in projected:
                mounted.add(str(projected["configMap"]["name"]))
    content = [
        [name, made[name].get("data") or {}, made[name].get("binaryData") or {}]
        for name in sorted(mounted & made.keys())
    ]
    text = json.dumps([content, dict(settings or {})], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pod_annotations(
    deployment: workloads.Deployment,
    rendered: Iterable[objects.Object],
    volumes: Iterable[Mapping[str, Any]],
) -> dict[str, str]:
    """The deployment's tags and its pods' content digest, which also covers its request
    settings: the router applies them, but a change of them is a new version of the deployment,
    rolled out as one like a change of its files."""
    settings = {
        "max_concurrent_requests_per_instance": deployment.max_concurrent_requests_per_instance,
        "request_timeout_ms": deployment.request_timeout_ms,
        "max_queue_wait_ms": deployment.max_queue_wait_ms,
    }
    digest = content_digest(rendered, volumes, settings)
    return {**deployment.annotations, CONTENT_DIGEST_ANNOTATION: digest}


def _env(workload: workloads.Workload, extra: Mapping[str, str]) -> list[dict[str, str]]:
    merged = {**extra, **workload.environment_variables}
    return [{"name": k, "value": v} for k, v in sorted(merged.items())]


def _mount_files(
    name: str,
    volume: str,
    namespace: str,
    snapshot: source.Snapshot,
    root: str,
    mount_path: str,
    found: list[objects.Object],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> None:
    """The files at or below `root` as the ConfigMap `name`, mounted read-only at `mount_path`
    through the pod volume `volume` (code folders, conda files, job inputs)."""
    config_map, items = files_config_map(name, namespace, snapshot, root)
    found.append(config_map)
    volumes.append({"name": volume, "configMap": {"name": name, "items": items}})
    mounts.append({"name": volume, "mountPath": mount_path, "readOnly": True})


def job_objects(
    job: workloads.Job,
    extension: extensions.Extension,
    declared: dict[str, instancetypes.InstanceType],
    snapshot: source.Snapshot,
) -> list[objects.Object]:
    where = placement.place(job, extension, declared)
    namespace = extension.release_namespace
    found: list[objects.Object] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if job.code and snapshot.exists(job.code):
        _mount_files(f"{job.name}-code", "code", namespace, snapshot, job.code, JOB_CODE_DIR,
                     found, volumes, mounts)  # fmt: skip
    init = [_prepare_workspace(job.image, list(mounts), volumes, mounts)]
    values = _job_io(job, namespace, snapshot, found, volumes, mounts, init)
    selector = {JOB_LABEL: job.name}
    volcano = bool(extension.settings["installVolcano"])
    context = {
        "w": {
            "name": job.name,
            "namespace": namespace,
            # On the Job, not its pod template: that is immutable, so there an edited file would
            # fail the apply (a Job runs once per name); here the change shows in diff and plan.
            "annotations": {
                **job.annotations,
                CONTENT_DIGEST_ANNOTATION: content_digest(found, volumes),
            },
            "instance_count": job.instance_count,
            "backoff_limit": JOB_BACKOFF_LIMIT,
            "ttl": JOB_TTL_SECONDS,
            "pod_labels": _pod_labels(selector, extension),
            "pod_annotations": dict(job.annotations),
            "node_selector": where.node_selector,
            "volumes": volumes,
            "init_containers": init,
            "container_name": JOB_CONTAINER,
            "image": job.image,
            "command": ["/bin/sh", "-c", workloads.substitute(job.command, values)],
            "working_dir": JOB_WORKSPACE_DIR,
            "env": _env(job, {"AZUREML_INSTANCE_TYPE": where.instance_type.name}),
            "ports": [],
            "resources": where.resources(),
            "volume_mounts": mounts,
            "readiness_probe": None,
            "liveness_probe": None,
        }
    }
    template = "workloads/volcano-job.yaml.j2" if volcano else "workloads/job.yaml.j2"
    found.extend(templating.render_template(template, context))
    return found


def _prepare_workspace(
    image: str,
    code_mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The init container that makes the job's working folder (an emptyDir), with `outputs`
    and `logs` in it and the job's code, if any, copied in. It runs the job's own image, so it
    needs nothing but `/bin/sh`, `mkdir` and `cp`."""
    workspace = {"name": "workspace", "mountPath": JOB_WORKSPACE_DIR}
    volumes.append({"name": "workspace", "emptyDir": {}})
    mounts.append(workspace)
    steps = [f"mkdir -p {JOB_WORKSPACE_DIR}/outputs {JOB_WORKSPACE_DIR}/logs"]
    if code_mounts:
        steps.append(f"cp -R {JOB_CODE_DIR}/. {JOB_WORKSPACE_DIR}/")
    return {
        "name": PREPARE_WORKSPACE,
        "image": image,
        "command": ["/bin/sh", "-c", " && ".join(steps)],
        "volumeMounts": [*code_mounts, workspace],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _job_io(
    job: workloads.Job,
    namespace: str,
    snapshot: source.Snapshot,
    found: list[objects.Object],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    init: list[dict[str, Any]],
) -> dict[str, str]:
    """Mount the job's local inputs (one ConfigMap each), fetch its remote ones into the pod
    (the init container `fetch-inputs`: a file to /inputs/NAME/FILE, a blob folder's files
    to /inputs/NAME/...) and an empty folder per output; the value each `inputs.NAME` /
    `outputs.NAME` of its command stands for."""
    fetch_mounts: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    local_index = 0
    fetches: list[str] = []
    for job_input in job.inputs:
        if job_input.value is not None:
            values[f"inputs.{job_input.name}"] = job_input.value
            continue
        if job_input.remote is not None:
            target = f"{JOB_INPUTS_DIR}/{job_input.name}"
            volume = f"fetched-{len(fetches)}"
            volumes.append({"name": volume, "emptyDir": {}})
            mounts.append({"name": volume, "mountPath": target, "readOnly": True})
            fetch_mounts.append({"name": volume, "mountPath": target})
            fetches.append(_fetch_step(job_input, target))
            if not job_input.folder:
                target = f"{target}/{_url_file_name(job_input.remote)}"
            values[f"inputs.{job_input.name}"] = target
            continue
        if job_input.local is None or not snapshot.exists(job_input.local):
            continue  # an optional input not given
        target = f"{JOB_INPUTS_DIR}/{job_input.name}"
        _mount_files(f"{job.name}-input-{local_index}", f"input-{local_index}", namespace,
                     snapshot, job_input.local, target, found, volumes, mounts)  # fmt: skip
        local_index += 1
        if not snapshot.is_dir(job_input.local):
            target = f"{target}/{posixpath.basename(job_input.local)}"
        values[f"inputs.{job_input.name}"] = target
    if fetches:
        init.append(
            {
                "name": "fetch-inputs",
                "image": FETCH_IMAGE,
                "command": ["/bin/sh", "-c", "\n".join([FETCH_BLOB_FOLDER, *fetches])],
                "volumeMounts": fetch_mounts,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            }
        )
    for index, output in enumerate(job.outputs):
        volume = f"output-{index}"
        volumes.append({"name": volume, "emptyDir": {}})
        mounts.append({"name": volume, "mountPath": f"{JOB_OUTPUTS_DIR}/{output}"})
        values[f"outputs.{output}"] = f"{JOB_OUTPUTS_DIR}/{output}"
    return values


def _prepare_environment(
    deployment: workloads.Deployment,
    snapshot: source.Snapshot,
    conda_path: str,
    init: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> str:
    """The init container that creates the deployment's conda environment before its server
    starts; returns the path of the model server in it.

    The environment is made with the image's own conda (micromamba, mamba or conda, the first
    on PATH: the product's base images carry conda) into a volume, at a folder named by the
    conda file's digest, and the pinned model server is added when the file does not bring
    it. An image without conda fails the init container with that reason.
    """
    digest = hashlib.sha256(snapshot.read_bytes(str(deployment.conda_file))).hexdigest()[:16]
    prefix = f"{ENVIRONMENT_DIR}/{digest}"
    quoted, conda = shlex.quote(prefix), shlex.quote(conda_path)
    script = "\n".join(
        [
            "set -e",
            f"if [ -x {quoted}/bin/{MODEL_SERVER} ]; then exit 0; fi",
            "tool=",
            "for candidate in micromamba mamba conda; do",
            '  if command -v "$candidate" >/dev/null 2>&1; then tool=$candidate; break; fi',
            "done",
            'if [ -z "$tool" ]; then',
            f"  echo 'the image has no micromamba, mamba or conda to create {conda_path}' >&2",
            "  exit 1",
            "fi",
            'if [ "$tool" = micromamba ]; then',
            f"  micromamba create -y -p {quoted} -f {conda}",
            "else",
            f'  "$tool" env create -p {quoted} -f {conda}',
            "fi",
            f"if [ ! -x {quoted}/bin/{MODEL_SERVER} ]; then",
            f"  {quoted}/bin/python -m pip install {shlex.quote(MODEL_SERVER_REQUIREMENT)}",
            "fi",
        ]
    )
    volumes.append({"name": "environment", "emptyDir": {}})
    mount = {"name": "environment", "mountPath": ENVIRONMENT_DIR}
    mounts.append({**mount, "readOnly": True})
    init.append(
        {
            "name": PREPARE_ENVIRONMENT,
            "image": deployment.image,
            "command": ["/bin/sh", "-c", script],
            "volumeMounts": [mount, {"name": "conda", "mountPath": CONDA_DIR, "readOnly": True}],
        }
    )
    return f"{prefix}/bin/{MODEL_SERVER}"


def _mount_mlflow_script(
    deployment: str,
    namespace: str,
    found: list[objects.Object],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> None:
    """An MLflow no-code deployment's code: the reconciler's own scoring script, as `score.py`."""
    name = f"{deployment}-code"
    found.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"score.py": templating.static_text(MLFLOW_SCRIPT)},
        }
    )
    volumes.append({"name": "code", "configMap": {"name": name}})
    mounts.append({"name": "code", "mountPath": f"{APP_DIR}/code", "readOnly": True})


# A shell function of the fetch-inputs script: `fetch_blob_folder CONTAINER_URL PREFIX TARGET`
# lists the blobs under PREFIX anonymously (the List Blobs API, page by page) and fetches each
# to TARGET/<its path below PREFIX>. Blob names with spaces are not supported.
FETCH_BLOB_FOLDER = """\
set -e
fetch_blob_folder() {
  marker=
  while :; do
    page=$(curl -fsSL "$1?restype=container&comp=list&prefix=$2${marker:+&marker=$marker}")
    for name in $(printf '%s' "$page" | tr '<' '\\n' | sed -n 's/^Name>//p'); do
      relative=${name#"$2"}
      mkdir -p "$3/$(dirname "$relative")"
      curl -fsSL -o "$3/$relative" "$1/$name"
    done
    marker=$(printf '%s' "$page" | tr '<' '\\n' | sed -n 's/^NextMarker>//p')
    [ -n "$marker" ] || break
  done
}"""


def _fetch_step(job_input: workloads.JobInput, target: str) -> str:
    """The line of the fetch-inputs script that fetches one remote input into `target`."""
    url = str(job_input.remote)
    if job_input.folder:
        container, prefix = workloads.blob_folder(url)
        args = " ".join(shlex.quote(a) for a in (container, prefix, target))
        return f"fetch_blob_folder {args}"
    file = f"{target}/{_url_file_name(url)}"
    return f"curl -fsSL -o {shlex.quote(file)} {shlex.quote(url)}"


def _url_file_name(url: str) -> str:
    return posixpath.basename(url.split("?")[0].rstrip("/")) or "input"


def _probe(probe: workloads.Probe) -> dict[str, Any]:
    """A container probe of the model server's health route with the deployment's timing."""
    return {
        "httpGet": {"path": "/", "port": "http"},
        "initialDelaySeconds": probe.initial_delay,
        "periodSeconds": probe.period,
        "timeoutSeconds": probe.timeout,
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def deployment_objects(
    deployment: workloads.Deployment,
    extension: extensions.Extension,
    declared: dict[str, instancetypes.InstanceType],
    snapshot: source.Snapshot,
) -> list[objects.Object]:
    where = placement.place(deployment, extension, declared)
    namespace = extension.release_namespace
    found: list[objects.Object] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    init: list[dict[str, Any]] = []
    if deployment.code and snapshot.exists(deployment.code):
        code_dir = f"{APP_DIR}/code"
        _mount_files(f"{deployment.name}-code", "code", namespace, snapshot, deployment.code,
                     code_dir, found, volumes, mounts)  # fmt: skip
    elif deployment.mlflow_no_code:
        _mount_mlflow_script(deployment.name, namespace, found, volumes, mounts)
    extra_env: dict[str, str] = {}
    if deployment.conda_file and snapshot.exists(deployment.conda_file):
        _mount_files(f"{deployment.name}-conda", "conda", namespace, snapshot,
                     deployment.conda_file, CONDA_DIR, found, volumes, mounts)  # fmt: skip
        conda_path = f"{CONDA_DIR}/{posixpath.basename(deployment.conda_file)}"
        extra_env[CONDA_ENV_VAR] = conda_path
        server = _prepare_environment(deployment, snapshot, conda_path, init, volumes, mounts)
    else:
        server = MODEL_SERVER
    local = [m for m in deployment.models if not workloads.is_uri(m)]
    remote = [m for m in deployment.models if workloads.is_uri(m)]
    if deployment.models:
        volumes.append({"name": "model", "emptyDir": {}})
        mounts.append({"name": "model", "mountPath": f"{APP_DIR}/model", "readOnly": True})
        steps = ["set -e"]
        init_mounts = [{"name": "model", "mountPath": f"{APP_DIR}/model"}]
        for index, model in enumerate(local):
            name = f"{deployment.name}-model" + (f"-{index}" if index else "")
            config_map, items = files_config_map(name, namespace, snapshot, model, keep_folder=True)
            found.append(config_map)
            volume = f"model-files-{index}"
            volumes.append({"name": volume, "configMap": {"name": name, "items": items}})
            init_mounts.append({"name": volume, "mountPath": f"{APP_DIR}/model-files/{index}"})
            steps.append(f"cp -RL {APP_DIR}/model-files/{index}/. {APP_DIR}/model/")
        for uri in remote:
            target = posixpath.basename(uri.rstrip("/").split("?")[0]) or "model"
            steps.append(
                f"curl -fsSL -o {shlex.quote(f'{APP_DIR}/model/{target}')} {shlex.quote(uri)}"
            )
        init.append(
            {
                "name": "fetch-model",
                "image": FETCH_IMAGE,
                "command": ["/bin/sh", "-c", "\n".join(steps)],
                "volumeMounts": init_mounts,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            }
        )
    selector = {DEPLOYMENT_LABEL: deployment.name}
    script = deployment.scoring_script or "score.py"
    context = {
        "w": {
            "name": deployment.name,
            "namespace": namespace,
            "annotations": dict(deployment.annotations),
            "replicas": deployment.scale.initial_replicas,
            "selector": selector,
            "pod_labels": _pod_labels(selector, extension),
            "pod_annotations": _pod_annotations(deployment, found, volumes),
            "node_selector": where.node_selector,
            "volumes": volumes,
            "init_containers": init,
            "container_name": DEPLOYMENT_CONTAINER,
            "image": deployment.image,
            "command": [
                server,
                "--entry_script",
                f"{APP_DIR}/code/{script}",
                "--port",
                str(INFERENCE_PORT),
            ],
            "working_dir": f"{APP_DIR}/code"
            if deployment.code or deployment.mlflow_no_code
            else None,
            "env": _env(
                deployment,
                {
                    "AZUREML_MODEL_DIR": f"{APP_DIR}/model",
                    "AZUREML_ENTRY_SCRIPT": script,
                    "WORKER_COUNT": str(deployment.max_concurrent_requests_per_instance),
                    **extra_env,
                },
            ),
            "ports": [{"name": "http", "containerPort": INFERENCE_PORT, "protocol": "TCP"}],
            "resources": where.resources(),
            "volume_mounts": mounts,
            "readiness_probe": _probe(deployment.readiness_probe),
            "liveness_probe": _probe(deployment.liveness_probe),
        }
    }
    found.extend(templating.render_template("workloads/deployment.yaml.j2", context))
    return found


def router_entry(deployment: workloads.Deployment, namespace: str) -> dict[str, Any]:
    """The deployment's entry in `router.yaml`, every default filled in."""
    auth: dict[str, Any] = {"mode": deployment.auth_mode}
    if deployment.auth_mode != "none":
        auth["secret"] = auth_secret_name(deployment.name)
    scale = deployment.scale
    return {
        "name": deployment.name,
        "namespace": namespace,
        "service": deployment.name,
        "port": 80,
        "max_concurrent_requests_per_instance": deployment.max_concurrent_requests_per_instance,
        "request_timeout_ms": deployment.request_timeout_ms,
        "max_queue_wait_ms": deployment.max_queue_wait_ms,
        "auth": auth,
        "scale_settings": {
            "type": scale.type,
            "min_instances": scale.min_instances,
            "max_instances": scale.max_instances,
            "target_utilization_percentage": scale.target_utilization_percentage,
            "polling_interval": scale.polling_interval,
        },
    }


def auth_secret_name(deployment_name: str) -> str:
    """The Secret holding a deployment's keys (key mode) or token signing key (token mode)."""
    return f"{deployment_name}-auth"


def endpoint_auth_secret_name(endpoint_name: str) -> str:
    """The Secret holding a declared endpoint's keys or token signing key."""
    return f"{endpoint_name}-endpoint-auth"


def endpoint_secret(endpoint: endpoints.Endpoint) -> str | None:
    """The Secret the router checks an endpoint's callers with: a declared endpoint's own, an
    implicit one's that of its deployment (None in auth mode none)."""
    if endpoint.auth_mode == "none":
        return None
    if endpoint.implicit:
        return auth_secret_name(endpoint.name)
    return endpoint_auth_secret_name(endpoint.name)


def endpoint_entry(
    endpoint: endpoints.Endpoint, deployments: Iterable[workloads.Deployment]
) -> dict[str, Any]:
    """The endpoint's entry in `router.yaml`: every deployment behind it in `traffic` (0 for
    one the endpoint gives no share: reachable by the azureml-model-deployment header only),
    its mirrors (default none) and its auth, shaped as a deployment's."""
    auth: dict[str, Any] = {"mode": endpoint.auth_mode}
    secret = endpoint_secret(endpoint)
    if secret is not None:
        auth["secret"] = secret
    return {
        "name": endpoint.name,
        "traffic": {
            name: endpoint.traffic.get(name, 0) for name in endpoints.members(endpoint, deployments)
        },
        "mirror_traffic": dict(sorted(endpoint.mirror_traffic.items())),
        "auth": auth,
    }


def coordinator_lease_name(router_service: str) -> str:
    """The Lease the router instances of `router_service` elect their scaling coordinator on."""
    return f"{router_service}-coordinator"


# The router's admin port (metrics, load reports): its container port's name, on the headless
# Service `router_admin_service` names, never on the router's own Service (which may be public).
ROUTER_ADMIN_PORT_NAME = "admin"
# How the router component's container starts (templates/components/router.yaml.j2): what the
# local plane's placement and `router top` recognise a router pod by.
ROUTER_COMMAND = ("reconciler", "router", "serve")


def router_admin_service(router_service: str) -> str:
    """The headless Service through which the router instances of `router_service` (and
    Prometheus) reach each other's admin ports."""
    return f"{router_service}-admin"


def router_rules(
    router_service: str, auth_secrets: Iterable[str], autoscaled: Iterable[str]
) -> list[dict[str, Any]]:
    """The router's Role in the release namespace, as little as it uses: list + watch of
    EndpointSlices (its deployments' backends and its peers), `get` of its deployments' auth
    Secrets, `get` + `patch` of their scale subresource, and its coordinator Lease (`create`
    cannot be limited to a name: the name is not in a create request's path).

    A rule whose name list would be empty is left out: an empty resourceNames means every name.
    """
    secrets = sorted(set(auth_secrets))
    scaled = sorted(set(autoscaled))
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        }
    ]
    if secrets:
        rules.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": secrets,
                "verbs": ["get"],
            }
        )
    if scaled:
        rules.append(
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "resourceNames": scaled,
                "verbs": ["get", "patch"],
            }
        )
    rules += [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [coordinator_lease_name(router_service)],
            "verbs": ["get", "update"],
        },
    ]
    return rules
