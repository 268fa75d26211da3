"""What running one pod on this machine means: pure logic of the local plane's pod runtime.

kwok makes pods Running without running anything. For the pods whose containers this project
itself provides, `podruntime` runs them as local processes, and this module decides how, from
the pod and the ConfigMaps / Secrets it mounts, exactly as a kubelet would lay them out:

- **model pods** (a model deployment's: the managed-by label and `gitops.mlext.io/deployment`)
  run their `azmlinfsrv` command with the installed model server (`modelserver`), their init
  containers first (the model files copied or fetched into the `model` volume; the one that
  creates a conda environment is left to the runtime's own install), the container's
  environment (`AZUREML_MODEL_DIR`, `WORKER_COUNT`, ...) and working directory;
- **router pods** (the managed-by label and the command `reconciler router serve`) run that
  command with this Python, in-cluster, with their service account's token.

Each pod gets a root folder; every volume lives at `<root>/.volumes/<name>` and each mount path
is a symbolic link `<root>/<mountPath>` to it, and every absolute mount path in a command,
argument, environment value or working directory is moved under the root (`relocate`). The
served container port gets a free loopback port instead (`--port` of azmlinfsrv, `listen` of
router.yaml), and so does a router's admin port (`admin_listen`: its metrics and the load
reports its peers read); the readiness probe is read from the container (`Probe`).

Nothing here touches a process, a file or the network.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from reconciler import objects
from reconciler.render import workloadobjects

MODEL = "model"
ROUTER = "router"
ROUTER_COMMAND = ("reconciler", "router", "serve")
MODEL_SERVER = "azmlinfsrv"
VOLUMES = ".volumes"


class Unsupported(Exception):
    """A pod this runtime cannot run as it is (the message says what); it stays not ready."""


@dataclass(frozen=True)
class Probe:
    """A container's HTTP probe (readiness or liveness), on its local port."""

    path: str
    scheme: str
    period: float
    failure_threshold: int
    initial_delay: float = 0.0
    timeout: float = 1.0


@dataclass(frozen=True)
class Process:
    """One container as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None


@dataclass
class LocalPod:
    """How to run one pod here: files to lay out under `root`, init containers, the main one."""

    kind: str
    namespace: str
    name: str
    uid: str
    ip: str
    container_port: int
    local_port: int
    service_account: str
    root: str
    links: dict[str, str] = field(default_factory=dict)  # mount path under root -> volume dir
    directories: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content
    init: list[Process] = field(default_factory=list)
    main: Process | None = None
    probe: Probe | None = None  # readiness
    liveness: Probe | None = None
    # A router's admin port: (container port, loopback port), None for other pods.
    admin: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.container_port}"

    @property
    def admin_key(self) -> str | None:
        return f"{self.ip}:{self.admin[0]}" if self.admin is not None else None


def kind_of(pod: objects.Object) -> str | None:
    """MODEL, ROUTER or None (a pod this runtime leaves alone)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(objects.MANAGED_BY_LABEL) != objects.MANAGED_BY:
        return None
    if workloadobjects.DEPLOYMENT_LABEL in labels:
        return MODEL
    containers = (pod.get("spec") or {}).get("containers") or []
    if containers and tuple((containers[0].get("command") or [])[:3]) == ROUTER_COMMAND:
        return ROUTER
    return None


def runnable(pod: objects.Object) -> bool:
    """Whether kwok has placed it and it should run: Running, with an IP, not being deleted."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return (
        not metadata.get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
    )


def references(pod: objects.Object) -> tuple[set[str], set[str]]:
    """The ConfigMaps and Secrets the pod reads (volumes and environment), by name."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            config_maps.add(volume["configMap"]["name"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                config_maps.add(source["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for entry in container.get("env") or []:
            source = entry.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                config_maps.add(source["configMapKeyRef"]["name"])
            if "secretKeyRef" in source:
                secrets.add(source["secretKeyRef"]["name"])
    return config_maps, secrets


def relocate(text: str, mount_paths: Sequence[str], root: str) -> str:
    """`text` with every absolute mount path in it (as a whole path component) under `root`."""
    for path in sorted(set(mount_paths), key=len, reverse=True):
        pattern = r"(?<![\w./-])" + re.escape(path.rstrip("/")) + r"(?=/|$|[\s'\";:])"
        moved = root + path.rstrip("/")
        text = re.sub(pattern, moved.replace("\\", "\\\\"), text)
    return text


def _decoded(obj: objects.Object | None, key: str, secret: bool) -> bytes | None:
    if obj is None:
        return None
    if secret:
        value = (obj.get("data") or {}).get(key)
        return None if value is None else base64.b64decode(value)
    if key in (obj.get("data") or {}):
        return str(obj["data"][key]).encode()
    binary = (obj.get("binaryData") or {}).get(key)
    return None if binary is None else base64.b64decode(binary)


def _volume_files(
    volume: Mapping[str, Any],
    config_maps: Mapping[str, objects.Object],
    secrets: Mapping[str, objects.Object],
) -> dict[str, bytes]:
    """The files of a configMap / secret volume, by path inside it."""
    secret = "configMap" not in volume
    ref = volume["secret"] if secret else volume["configMap"]
    name = ref["secretName"] if secret else ref["name"]
    source = (secrets if secret else config_maps).get(name)
    if source is None:
        raise Unsupported(f"{'Secret' if secret else 'ConfigMap'} {name} not found")
    keys = sorted({*(source.get("data") or {}), *(source.get("binaryData") or {})})
    items = ref.get("items") or [{"key": key, "path": key} for key in keys]
    files = {}
    for item in items:
        content = _decoded(source, item["key"], secret)
        if content is None:
            raise Unsupported(f"{name} has no key {item['key']}")
        files[item["path"]] = content
    return files


def _projected_files(
    projected: Mapping[str, Any],
    pod: objects.Object,
    config_maps: Mapping[str, objects.Object],
) -> dict[str, bytes]:
    """The files of a projected volume that can be laid out here: its ConfigMaps (such as
    `kube-root-ca.crt`) and downward API fields. A service account token is not projected: the
    router gets its token in its kubeconfig, and model servers do not call the API."""
    files: dict[str, bytes] = {}
    for source in projected.get("sources") or []:
        if "configMap" in source:
            ref = source["configMap"]
            found = config_maps.get(ref["name"])
            if found is None:
                continue
            keys = sorted({*(found.get("data") or {}), *(found.get("binaryData") or {})})
            for item in ref.get("items") or [{"key": k, "path": k} for k in keys]:
                content = _decoded(found, item["key"], False)
                if content is not None:
                    files[item["path"]] = content
        elif "downwardAPI" in source:
            metadata = pod.get("metadata") or {}
            for item in source["downwardAPI"].get("items") or []:
                field_path = (item.get("fieldRef") or {}).get("fieldPath", "")
                value = {"metadata.namespace": metadata.get("namespace", "")}.get(field_path)
                if value is not None:
                    files[item["path"]] = value.encode()
    return files


def _env(
    container: Mapping[str, Any],
    pod: objects.Object,
    config_maps: Mapping[str, objects.Object],
    secrets: Mapping[str, objects.Object],
) -> dict[str, str]:
    metadata = pod.get("metadata") or {}
    fields = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
    }
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry.get("valueFrom") or {}
        if "fieldRef" in source:
            env[entry["name"]] = str(fields.get(source["fieldRef"]["fieldPath"], ""))
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if secret else "configMapKeyRef"]
            store = secrets if secret else config_maps
            content = _decoded(store.get(ref["name"]), ref["key"], secret)
            if content is None:
                if ref.get("optional"):
                    continue
                raise Unsupported(f"env {entry['name']}: {ref['name']} has no key {ref['key']}")
            env[entry["name"]] = content.decode()
    return env


def _port(container: Mapping[str, Any], name: str | int) -> int | None:
    for port in container.get("ports") or []:
        if name in (port.get("name"), port.get("containerPort")):
            return int(port["containerPort"])
    return None


def _probe(container: Mapping[str, Any], served: int, field: str) -> Probe | None:
    """The container's `field` ("readinessProbe" / "livenessProbe") with Kubernetes' defaults,
    None when it has no HTTP probe."""
    probe = container.get(field) or {}
    http = probe.get("httpGet")
    if not http:
        return None
    if _port(container, http.get("port", served)) not in (served, None):
        raise Unsupported(f"the {field} is on a port other than the served one")
    return Probe(
        path=str(http.get("path") or "/"),
        scheme=str(http.get("scheme") or "HTTP").lower(),
        period=float(probe.get("periodSeconds", 10)),
        failure_threshold=int(probe.get("failureThreshold", 3)),
        initial_delay=float(probe.get("initialDelaySeconds", 0)),
        timeout=float(probe.get("timeoutSeconds", 1)),
    )


def plan(
    pod: objects.Object,
    config_maps: Mapping[str, objects.Object],
    secrets: Mapping[str, objects.Object],
    *,
    root: str,
    local_port: int,
    model_server: str,
    python: str,
    base_env: Mapping[str, str],
    admin_local_port: int = 0,
) -> LocalPod:
    """How to run `pod` here (raises Unsupported when it cannot be run as it is); a router's
    admin port is served on `admin_local_port`."""
    kind = kind_of(pod)
    if kind is None:
        raise Unsupported("not a pod of this project")
    metadata = pod["metadata"]
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if len(containers) != 1:
        raise Unsupported("only pods of one container are run")
    main = containers[0]
    served = (main.get("ports") or [{}])[0].get("containerPort")
    if served is None:
        raise Unsupported("the container declares no port")
    local = LocalPod(
        kind=kind,
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        ip=pod["status"]["podIP"],
        container_port=int(served),
        local_port=local_port,
        service_account=spec.get("serviceAccountName") or "default",
        root=root,
    )
    every = [*(spec.get("initContainers") or []), main]
    mounts = [m["mountPath"] for c in every for m in c.get("volumeMounts") or []]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for container in every:
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Unsupported(f"mount {mount['name']}: no such volume")
            link = root + mount["mountPath"].rstrip("/")
            target = f"{root}/{VOLUMES}/{mount['name']}"
            if local.links.get(link, target) != target:
                raise Unsupported(f"{mount['mountPath']} is mounted from two volumes")
            local.links[link] = target
    for name, volume in volumes.items():
        target = f"{root}/{VOLUMES}/{name}"
        if "emptyDir" in volume:
            local.directories.append(target)
        elif "configMap" in volume or "secret" in volume:
            for path, content in _volume_files(volume, config_maps, secrets).items():
                local.files[f"{target}/{PurePosixPath(path)}"] = content
        elif "projected" in volume:
            local.directories.append(target)
            for path, content in _projected_files(volume["projected"], pod, config_maps).items():
                local.files[f"{target}/{PurePosixPath(path)}"] = content
        else:
            raise Unsupported(f"volume {name}: only emptyDir, configMap and secret are run")

    def process(container: Mapping[str, Any], argv: list[str]) -> Process:
        env = {**base_env, **_env(container, pod, config_maps, secrets)}
        env = {k: relocate(v, mounts, root) for k, v in env.items()}
        cwd = container.get("workingDir")
        return Process(
            name=str(container["name"]),
            argv=[relocate(arg, mounts, root) for arg in argv],
            env=env,
            cwd=relocate(cwd, mounts, root) if cwd else None,
        )

    for container in spec.get("initContainers") or []:
        if kind == MODEL and container.get("name") == workloadobjects.PREPARE_ENVIRONMENT:
            # The conda environment: the pod runtime installs the conda file's packages itself
            # (`condafile`, `modelserver.ensure_environment`); there is no conda here.
            continue
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not argv:
            raise Unsupported(f"init container {container['name']} has no command")
        local.init.append(process(container, argv))
    argv = [*(main.get("command") or []), *(main.get("args") or [])]
    if kind == MODEL:
        if not argv or PurePosixPath(argv[0]).name != MODEL_SERVER:
            raise Unsupported(f"the model container does not run {MODEL_SERVER}")
        argv = [model_server, *_with_port(argv[1:], local_port)]
    else:
        argv = [python, "-m", *argv]
        admin = _port(main, workloadobjects.ROUTER_ADMIN_PORT_NAME)
        if admin is not None:
            local.admin = (admin, admin_local_port)
    local.main = process(main, argv)
    local.probe = _probe(main, int(served), "readinessProbe")
    local.liveness = _probe(main, int(served), "livenessProbe")
    return local


def conda_file(local: LocalPod) -> bytes | None:
    """The conda file a model pod's container names (`AZUREML_EXTRA_CONDA_YAML_ABS_PATH`), as
    its volume holds it; None when it names none."""
    if local.main is None:
        return None
    path = local.main.env.get(workloadobjects.CONDA_ENV_VAR)
    if not path:
        return None
    for link, volume in local.links.items():
        if path.startswith(f"{link}/"):
            return local.files.get(volume + path[len(link) :])
    return local.files.get(path)


def _with_port(args: list[str], port: int) -> list[str]:
    """azmlinfsrv's arguments serving on `port` (its `--port`, added when absent)."""
    out = list(args)
    for index, arg in enumerate(out):
        if arg == "--port" and index + 1 < len(out):
            out[index + 1] = str(port)
            return out
        if arg.startswith("--port="):
            out[index] = f"--port={port}"
            return out
    return [*out, "--port", str(port)]


def router_config(
    text: str, local_port: int, mount_paths: Sequence[str], root: str, admin_port: int = 0
) -> str:
    """router.yaml as the router pod reads it here: listening on its loopback port (its admin
    port, if it has one, on `admin_port`), with the files it names (TLS) under the pod's root."""
    config = yaml.safe_load(text) or {}
    if not isinstance(config, dict):
        return text
    config["listen"] = f"127.0.0.1:{local_port}"
    if "admin_listen" in config:
        config["admin_listen"] = f"127.0.0.1:{admin_port}"
    tls = config.get("tls")
    if isinstance(tls, dict):
        config["tls"] = {k: relocate(str(v), mount_paths, root) for k, v in tls.items()}
    return yaml.safe_dump(config, sort_keys=False)


def mount_paths(pod: objects.Object) -> list[str]:
    spec = pod.get("spec") or {}
    every = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [m["mountPath"] for c in every for m in c.get("volumeMounts") or []]


def ready_status(pod: objects.Object, ready: bool, restarts: int, now: str) -> objects.Object:
    """The pod `status` a kubelet would write for its one container being (not) ready: the
    Ready and ContainersReady conditions and the container's `ready` and `restartCount`."""
    status = pod.get("status") or {}
    value = "True" if ready else "False"
    conditions = []
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Ready", "ContainersReady"):
            changed = condition.get("status") != value
            condition = {
                **condition,
                "status": value,
                "lastTransitionTime": now if changed else condition.get("lastTransitionTime"),
            }
            if not ready:
                condition["reason"] = "ContainersNotReady"
            else:
                condition.pop("reason", None)
                condition.pop("message", None)
        conditions.append(condition)
    containers = []
    for container in status.get("containerStatuses") or []:
        containers.append({**container, "ready": ready, "restartCount": restarts})
    return {"conditions": conditions, "containerStatuses": containers}


def is_ready(pod: objects.Object) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False
