"""Jobs and online deployments (SPEC sections 5 and 6) as typed models.

A recognised, schema-valid Job or Deployment manifest becomes a `Job` or `Deployment` here, with
its image, local files (checked against the snapshot, relative to the manifest's own folder) and,
for deployments, normalised `ScaleSettings` (both spellings, the v2 `target_utilization` /
`default` types and the older `auto` / `manual` ones). Cross-manifest checks (instance type
exists, extension enables training / inference) are in `repo`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import source
from reconciler.model import manifests, problems

DEFAULT_TARGET_UTILIZATION = 70
DEFAULT_POLLING_INTERVAL = 1  # seconds, the ML CLI v2 default
DEFAULT_MAX_CONCURRENT_REQUESTS = 1
DEFAULT_REQUEST_TIMEOUT_MS = 5000
DEFAULT_MAX_QUEUE_WAIT_MS = 500
# Small local files reach the pod through a ConfigMap, which holds at most 1 MiB: keep room
# for its metadata.
MAX_CONFIGMAP_BYTES = 1_000_000
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class ScaleSettings:
    """How many replicas a deployment runs: fixed, or autoscaled by the router."""

    type: str  # "target_utilization" | "fixed"
    min_instances: int
    max_instances: int
    target_utilization_percentage: int = DEFAULT_TARGET_UTILIZATION
    polling_interval: int = DEFAULT_POLLING_INTERVAL

    @property
    def initial_replicas(self) -> int:
        return self.min_instances


@dataclass(frozen=True)
class Workload:
    """What jobs and deployments share: identity, image, placement and where they came from."""

    name: str
    image: str
    instance_type: str | None
    compute: str | None
    environment_variables: Mapping[str, str]
    manifest: manifests.Manifest = field(compare=False, repr=False)


@dataclass(frozen=True)
class Job(Workload):
    command: str = ""
    code: str | None = None  # snapshot path of the code folder
    instance_count: int = 1


@dataclass(frozen=True)
class Deployment(Workload):
    endpoint_name: str | None = None
    models: tuple[str, ...] = ()  # snapshot paths or remote URIs
    code: str | None = None
    scoring_script: str | None = None
    conda_file: str | None = None
    scale: ScaleSettings = ScaleSettings("fixed", 1, 1)
    auth_mode: str = "key"
    app_insights_enabled: bool = False
    max_concurrent_requests_per_instance: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    max_queue_wait_ms: int = DEFAULT_MAX_QUEUE_WAIT_MS


class _Context:
    """Problem reporting and path checks for one manifest."""

    def __init__(self, manifest: manifests.Manifest, snapshot: source.Snapshot) -> None:
        self.manifest = manifest
        self.snapshot = snapshot
        self.found: list[problems.Problem] = []

    def error(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.manifest.problem(path, message))

    def warn(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.manifest.problem(path, message, problems.Severity.WARNING))

    def note(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.manifest.problem(path, message, problems.Severity.NOTE))

    def local_path(self, relative: str, path: problems.FieldPath, want_dir: bool = False) -> str:
        """Check a path relative to the manifest's folder; return its snapshot path."""
        resolved = source.join(self.manifest.folder, relative)
        if resolved is None:
            self.error(path, f"{relative} is outside the repo: local paths must stay inside it")
            return relative
        if not self.snapshot.exists(resolved):
            self.error(path, f"no such file or folder: {self.snapshot.display(resolved)}")
        elif want_dir and not self.snapshot.is_dir(resolved):
            self.error(path, f"must be a folder: {self.snapshot.display(resolved)}")
        elif (size := self.snapshot.size(resolved)) > MAX_CONFIGMAP_BYTES:
            self.error(
                path,
                f"{self.snapshot.display(resolved)} is {size:,} bytes: local files reach the pod "
                f"through a ConfigMap, which holds at most {MAX_CONFIGMAP_BYTES:,}; put them "
                "behind a URI (https://...) instead",
            )
        return resolved


REGISTERED_PREFIX = "azureml:"
_REGISTERED = re.compile(r"^azureml:([A-Za-z0-9][A-Za-z0-9._-]*):([A-Za-z0-9._-]+)$")


def registered(reference: str) -> tuple[str, str] | None:
    """(name, version) of a registered model reference `azureml:NAME:VERSION`, else None."""
    match = _REGISTERED.match(reference)
    return (match.group(1), match.group(2)) if match else None


def is_uri(reference: str) -> bool:
    """A remote reference (`https://...`, `azureml://...`) rather than a path in the repo."""
    return bool(_URI.match(reference))


def _image(ctx: _Context, environment: Any) -> tuple[str, str | None]:
    """(image, conda file path) of a workload's environment."""
    path: problems.FieldPath = ("environment",)
    if isinstance(environment, str):
        if environment.startswith("azureml:"):
            ctx.error(
                path,
                "registered environments (azureml:...) cannot be resolved from a repo: "
                "give environment.image (a container image)",
            )
        return environment, None
    if "path" in environment:
        ctx.note(
            (*path, "path"),
            "accepted, not used: the reconciler builds no image; the container image given "
            "(environment.image or environment.docker.image) runs as it is",
        )
    image = environment.get("image") or (environment.get("docker") or {}).get("image")
    if not image:
        ctx.error(path, "needs a container image: environment.image or environment.docker.image")
    conda = environment.get("conda_file")
    conda_path = None
    if conda:
        conda_path = ctx.local_path(conda.removeprefix("file:"), (*path, "conda_file"))
    return image or "", conda_path


def _code_path(ctx: _Context, code: Any, path: problems.FieldPath) -> str | None:
    if code is None:
        return None
    if isinstance(code, Mapping):
        return ctx.local_path(code["local_path"], (*path, "local_path"), want_dir=True)
    if is_uri(code):
        return str(code)
    return ctx.local_path(code, path, want_dir=True)


def _env_vars(fields: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in (fields.get("environment_variables") or {}).items()
    }


def build_job(
    manifest: manifests.Manifest, snapshot: source.Snapshot
) -> tuple[Job, list[problems.Problem]]:
    """A schema-valid Job manifest -> `Job`, checking its local files."""
    ctx = _Context(manifest, snapshot)
    fields = manifest.fields
    image, _conda = _image(ctx, fields["environment"])
    resources = fields.get("resources") or {}
    job = Job(
        name=manifest.name,
        image=image,
        instance_type=resources.get("instance_type"),
        compute=_compute_name(fields.get("compute")),
        environment_variables=_env_vars(fields),
        manifest=manifest,
        command=fields["command"],
        code=_code_path(ctx, fields.get("code"), ("code",)),
        instance_count=resources.get("instance_count", 1),
    )
    return job, ctx.found


def build_deployment(
    manifest: manifests.Manifest, snapshot: source.Snapshot
) -> tuple[Deployment, list[problems.Problem]]:
    """A schema-valid Deployment manifest -> `Deployment`, checking files and scale settings."""
    ctx = _Context(manifest, snapshot)
    fields = manifest.fields
    image, conda = _image(ctx, fields["environment"])
    code_config = fields.get("code_configuration") or {}
    code = _code_path(ctx, code_config.get("code"), ("code_configuration", "code"))
    scoring_script = code_config.get("scoring_script")
    if code and scoring_script and not is_uri(code) and snapshot.is_dir(code):
        script = source.join(code, scoring_script)
        if script is None or not snapshot.exists(script):
            shown = snapshot.display(posixpath.join(code, scoring_script))
            ctx.error(("code_configuration", "scoring_script"), f"no such file: {shown}")
    request = fields.get("request_settings") or {}
    auth_mode = fields.get("auth_mode", "key")
    if "app_insights_enabled" in fields:
        ctx.note(
            ("app_insights_enabled",),
            "accepted, not used: this reconciler sends no telemetry to Application Insights "
            "(the router's metrics are on its /metrics)",
        )
    deployment = Deployment(
        name=manifest.name,
        image=image,
        instance_type=fields.get("instance_type"),
        compute=_compute_name(fields.get("compute")),
        environment_variables=_env_vars(fields),
        manifest=manifest,
        endpoint_name=fields.get("endpoint_name"),
        models=_models(ctx, fields),
        code=code,
        scoring_script=scoring_script,
        conda_file=conda,
        scale=_scale_settings(ctx, fields),
        auth_mode="token" if auth_mode == "aml_token" else auth_mode,
        app_insights_enabled=bool(fields.get("app_insights_enabled", False)),
        max_concurrent_requests_per_instance=request.get(
            "max_concurrent_requests_per_instance", DEFAULT_MAX_CONCURRENT_REQUESTS
        ),
        request_timeout_ms=request.get("request_timeout_ms", DEFAULT_REQUEST_TIMEOUT_MS),
        max_queue_wait_ms=request.get("max_queue_wait_ms", DEFAULT_MAX_QUEUE_WAIT_MS),
    )
    return deployment, ctx.found


def data_files(manifest: manifests.Manifest) -> list[str]:
    """Snapshot paths of YAML files a Job or Deployment manifest uses as data (conda files)."""
    environment = manifest.fields.get("environment")
    if manifest.kind not in (manifests.JOB, manifests.DEPLOYMENT) or not isinstance(
        environment, Mapping
    ):
        return []
    conda = environment.get("conda_file")
    if not isinstance(conda, str):
        return []
    resolved = source.join(manifest.folder, conda.removeprefix("file:"))
    return [resolved] if resolved else []


def _compute_name(compute: str | None) -> str | None:
    """`azureml:<name>` and `<name>` both name the attached compute, i.e. an extension."""
    return compute.removeprefix("azureml:") if compute else None


def _models(ctx: _Context, fields: Mapping[str, Any]) -> tuple[str, ...]:
    entries: list[tuple[Any, problems.FieldPath]] = []
    if "model" in fields:
        entries.append((fields["model"], ("model",)))
    entries.extend((m, ("models", i)) for i, m in enumerate(fields.get("models") or []))
    found: list[str] = []
    for model, path in entries:
        if isinstance(model, str):
            ref, ref_path = model, path
        else:
            key = "path" if "path" in model else "local_path"
            ref, ref_path = model.get(key), (*path, key)
            if ref is None and model.get("name") and model.get("version") is not None:
                ref = f"{REGISTERED_PREFIX}{model['name']}:{model['version']}"
            elif ref is None:
                ctx.error(path, "needs path (a file or folder in the repo, or a URI)")
                continue
        if is_uri(ref):
            found.append(ref)
        elif ref.startswith(REGISTERED_PREFIX):
            if not _REGISTERED.match(ref):
                ctx.error(ref_path, "a registered model is azureml:NAME:VERSION")
                continue
            found.append(ref)  # resolved by repo.load through the extension's setting
        else:
            found.append(ctx.local_path(ref, ref_path))
    return tuple(found)


def _scale_settings(ctx: _Context, fields: Mapping[str, Any]) -> ScaleSettings:
    if "scale_settings" in fields and "scale_setting" in fields:
        ctx.error(("scale_setting",), "given twice: scale_settings and scale_setting")
    key = "scale_settings" if "scale_settings" in fields else "scale_setting"
    raw: Mapping[str, Any] = fields.get(key) or {"type": "default"}
    where: problems.FieldPath = (key,)
    kind = raw["type"]
    if kind in ("auto", "manual"):
        newer = "target_utilization" if kind == "auto" else "default"
        ctx.warn((*where, "type"), f"'{kind}' is the older name: use {newer}")
    if kind in ("default", "manual"):
        for name in ("min_instances", "max_instances", "target_utilization_percentage"):
            if name in raw:
                ctx.error((*where, name), "only with type target_utilization")
        count = int(raw.get("instance_count", fields.get("instance_count", 1)))
        return ScaleSettings("fixed", count, count)
    if "instance_count" in raw:
        ctx.error(
            (*where, "instance_count"),
            "not with type target_utilization: use min_instances and max_instances",
        )
    if "instance_count" in fields:
        ctx.warn(
            ("instance_count",),
            "ignored with scale_settings type target_utilization: the deployment starts at "
            "min_instances and the router scales it",
        )
    low = int(raw.get("min_instances", 1))
    high = int(raw.get("max_instances", max(low, 1)))
    if low > high:
        ctx.error((*where, "max_instances"), f"must be at least min_instances ({low})")
    return ScaleSettings(
        "target_utilization",
        low,
        max(low, high),
        int(raw.get("target_utilization_percentage", DEFAULT_TARGET_UTILIZATION)),
        int(raw.get("polling_interval", DEFAULT_POLLING_INTERVAL)),
    )
