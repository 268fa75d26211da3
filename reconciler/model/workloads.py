"""Jobs and online deployments as typed models.

The product's rules for them: `docs/domain.md#jobs` and `docs/domain.md#online-deployments`.

A recognised, schema-valid Job or Deployment manifest becomes a `Job` or `Deployment` here, with
its image, local files (checked against the snapshot, relative to the manifest's own folder),
the resources it asks for itself, its tags as annotation names and, for deployments, normalised
`ScaleSettings` (both spellings, the v2 `target_utilization` / `default` types and the older
`auto` / `manual` ones) and the container `Probe`s with the ML CLI v2 defaults. A job's `inputs`
become `JobInput`s (a public `wasbs://` blob is read as its https URL; remote data is fetched
into the pod, `mode: direct` keeps the URL) and the `${{inputs.NAME}}` / `${{outputs.NAME}}` of
its command are checked here and filled in by `substitute` (render knows the in-pod paths). An
environment is an image, a curated environment (`curated`), or refused with what to do instead
(a workspace's registered one, `build`). An MLflow model deployed with no code
(`mlflow_no_code`) takes the curated MLflow image and its own conda file when it names no
environment. Cross-manifest checks (instance type exists, extension enables training /
inference) are in `repo`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import source
from reconciler.model import curated, documents, manifests, problems, quantities

DEFAULT_TARGET_UTILIZATION = 70
DEFAULT_POLLING_INTERVAL = 1  # seconds, the ML CLI v2 default
DEFAULT_MAX_CONCURRENT_REQUESTS = 1
DEFAULT_REQUEST_TIMEOUT_MS = 5000
DEFAULT_MAX_QUEUE_WAIT_MS = 500
# Small local files reach the pod through a ConfigMap, which holds at most 1 MiB: keep room
# for its metadata.
MAX_CONFIGMAP_BYTES = 1_000_000
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# ML CLI v2's probe defaults (azure.ai.ml ProbeSettings), in seconds and counts.
DEFAULT_PROBE_INITIAL_DELAY = 10
DEFAULT_PROBE_PERIOD = 10
DEFAULT_PROBE_TIMEOUT = 2
DEFAULT_PROBE_SUCCESS_THRESHOLD = 1
DEFAULT_PROBE_FAILURE_THRESHOLD = 30
# A tag `KEY: value` becomes the annotation `tags.gitops.mlext.io/KEY` on the workload's objects.
TAG_ANNOTATION_PREFIX = "tags.gitops.mlext.io/"
DESCRIPTION_ANNOTATION = "gitops.mlext.io/description"
DISPLAY_NAME_ANNOTATION = "gitops.mlext.io/display-name"
_ANNOTATION_NAME_UNSAFE = re.compile(r"[^-A-Za-z0-9_.]+")
_ANNOTATION_NAME_MAX = 63
GPU = "nvidia.com/gpu"
# A job's output NAME is the empty folder OUTPUTS_DIR/NAME in its pod: nothing uploads it.
OUTPUTS_DIR = "/outputs"
# `${{inputs.NAME}}`, `${{outputs.NAME}}` (and anything else between `${{` and `}}`) in a job's
# command; `$[[ ... ]]` holds a part that is dropped when an input in it is not given.
_PLACEHOLDER = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_OPTIONAL_PART = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
_REFERENCE = re.compile(r"^(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\Z")
_PRIMITIVE_INPUT_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
# An Azure blob as the examples name it; the https URL of the same blob is read anonymously.
_WASB = re.compile(
    r"^wasbs?://(?P<container>[a-z0-9-]+)@(?P<account>[a-z0-9]+\.blob\.core\.windows\.net)/"
    r"(?P<path>.*)$"
)
# An Azure blob container's https URL and the prefix of a folder in it.
_BLOB_URL = re.compile(
    r"^https://(?P<account>[a-z0-9]+\.blob\.core\.windows\.net)/(?P<container>[a-z0-9-]+)"
    r"(?:/(?P<prefix>.*))?$"
)
# Remote data the cluster can fetch by itself: fetched into the pod by the job's init container
# (models by the deployment's), with curl. Any other scheme is refused where it is given: curl
# would read `file:///etc/passwd` (or gopher, dict, ...) as readily.
_REACHABLE_SCHEMES = ("http://", "https://")
_FILE_URI = "file://"


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
    """What jobs and deployments share: identity, image, placement and where they came from.

    `requests` / `limits` are the resources the manifest gives itself: they override the same
    keys of its instance type's (`placement`). `annotations` are its tags (prefixed), display
    name and description, put on its objects and their pods.
    """

    name: str
    image: str
    instance_type: str | None
    compute: str | None
    environment_variables: Mapping[str, str]
    manifest: manifests.Manifest = field(compare=False, repr=False)
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str | int] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def local_files(self) -> list[str]:
        """Snapshot paths of the repo files and folders its objects carry (what a render of it
        depends on besides the model)."""
        return []


@dataclass(frozen=True)
class JobInput:
    """One of a job's `inputs`: a literal (or URI) put into the command as it is, a local file or
    folder of the repo mounted into the pod, or an optional input not given (both None)."""

    name: str
    value: str | None = None
    local: str | None = None  # snapshot path
    remote: str | None = None  # an https URL the pod fetches before the command runs
    folder: bool = False  # `remote` is a folder of Azure blob storage (listed, then fetched)


@dataclass(frozen=True)
class Job(Workload):
    command: str = ""
    code: str | None = None  # snapshot path of the code folder
    instance_count: int = 1
    inputs: tuple[JobInput, ...] = ()
    outputs: tuple[str, ...] = ()  # names: each an empty folder in the pod

    def local_files(self) -> list[str]:
        found = [self.code] if self.code and not is_uri(self.code) else []
        return found + [i.local for i in self.inputs if i.local]


@dataclass(frozen=True)
class Probe:
    """A container probe's timing (`liveness_probe` / `readiness_probe`), in seconds."""

    initial_delay: int = DEFAULT_PROBE_INITIAL_DELAY
    period: int = DEFAULT_PROBE_PERIOD
    timeout: int = DEFAULT_PROBE_TIMEOUT
    success_threshold: int = DEFAULT_PROBE_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_PROBE_FAILURE_THRESHOLD


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
    liveness_probe: Probe = Probe()
    readiness_probe: Probe = Probe()
    # An MLflow model deployed with no code_configuration: the reconciler provides the scoring
    # script (templates/scoring/mlflow_score.py).
    mlflow_no_code: bool = False

    def local_files(self) -> list[str]:
        found = [self.code] if self.code and not is_uri(self.code) else []
        found += [m for m in self.models if not is_uri(m)]
        return found + ([self.conda_file] if self.conda_file else [])


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
        """Check a path relative to the manifest's folder (`file:PATH` is the same path); return
        its snapshot path. Every file at or below it must be one the snapshot reads: a symlink
        leading out of the repo or in a loop, a FIFO or a device is an error naming it."""
        if relative.startswith(_FILE_URI) or is_uri(relative):
            self.error(path, _not_in_repo(relative))
            return relative
        relative = relative.removeprefix("file:")
        resolved = source.join(self.manifest.folder, relative)
        if resolved is None:
            self.error(path, f"{relative} is outside the repo: local paths must stay inside it")
            return relative
        if not self.snapshot.exists(resolved):
            self.error(path, f"no such file or folder: {self.snapshot.display(resolved)}")
        elif self.readable(resolved, path):  # else each file not read is an error of its own
            if want_dir and not self.snapshot.is_dir(resolved):
                self.error(path, f"must be a folder: {self.snapshot.display(resolved)}")
            elif (size := self.snapshot.size(resolved)) > MAX_CONFIGMAP_BYTES:
                self.error(
                    path,
                    f"{self.snapshot.display(resolved)} is {size:,} bytes: local files reach the "
                    f"pod through a ConfigMap, which holds at most {MAX_CONFIGMAP_BYTES:,}; put "
                    "them behind a URI (https://...) instead",
                )
        return resolved

    def readable(self, resolved: str, path: problems.FieldPath) -> bool:
        """Whether every file at or below the snapshot path `resolved` can be read; an error
        at `path` for each that cannot (none of its content is read or shown)."""
        refused = self.snapshot.refusals(resolved)
        for where, reason in refused:
            self.error(path, f"{self.snapshot.display(where)}: {reason}")
        return not refused


REGISTERED_PREFIX = "azureml:"
MLFLOW_MODEL = "mlflow_model"
# The image of an MLflow no-code deployment: the product's curated MLflow inference image.
MLFLOW_IMAGE = f"{curated.REGISTRY}/mlflow-py312-inference:latest"
_REGISTERED = re.compile(r"^azureml:([A-Za-z0-9][A-Za-z0-9._-]*):([A-Za-z0-9._-]+)\Z")


def registered(reference: str) -> tuple[str, str] | None:
    """(name, version) of a registered model reference `azureml:NAME:VERSION`, else None."""
    match = _REGISTERED.match(reference)
    return (match.group(1), match.group(2)) if match else None


def is_fetched(reference: str) -> bool:
    """A URI the cluster fetches by itself (http:// or https://)."""
    return reference.startswith(_REACHABLE_SCHEMES)


def is_uri(reference: str) -> bool:
    """A remote reference (`https://...`, `azureml://...`) rather than a path in the repo."""
    return bool(_URI.match(reference))


def _image(ctx: _Context, environment: Any) -> tuple[str, str | None]:
    """(image, conda file path) of a workload's environment."""
    path: problems.FieldPath = ("environment",)
    if isinstance(environment, str):
        if curated.is_curated(environment):
            resolved = curated.resolve(environment)
            if resolved.image is None:
                ctx.error(path, str(resolved.error))
                return environment, None
            return resolved.image, None
        if environment.startswith("azureml:"):
            ctx.error(
                path,
                "a workspace's registered environment (azureml:NAME:VERSION) cannot be resolved "
                "from a repo: give environment.image (a container image), or a curated "
                "environment (azureml:AzureML-NAME@latest)",
            )
        return environment, None
    if "build" in environment:
        ctx.error(
            (*path, "build"),
            "building an image from a Docker build context is not done by this reconciler (an "
            "apply has no registry to push to and the cluster pulls images by name): build the "
            "image in CI, push it to a registry the cluster can pull from, and give "
            "environment.image",
        )
        return "", None
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
        conda_path = ctx.local_path(conda, (*path, "conda_file"))
    return image or "", conda_path


def _code_path(ctx: _Context, code: Any, path: problems.FieldPath) -> str | None:
    if code is None:
        return None
    if isinstance(code, Mapping):
        return ctx.local_path(code["local_path"], (*path, "local_path"), want_dir=True)
    return ctx.local_path(code, path, want_dir=True)  # a URI is an error: code is not fetched


def _env_vars(fields: Mapping[str, Any]) -> dict[str, str]:
    """Environment variables as the strings a container takes (`true`, not `True`)."""
    return {str(k): scalar_text(v) for k, v in (fields.get("environment_variables") or {}).items()}


def build_job(
    manifest: manifests.Manifest, snapshot: source.Snapshot
) -> tuple[Job, list[problems.Problem]]:
    """A schema-valid Job manifest -> `Job`, checking its local files, inputs and command."""
    ctx = _Context(manifest, snapshot)
    fields = manifest.fields
    image, _conda = _image(ctx, fields["environment"])
    resources = fields.get("resources") or {}
    if "experiment_name" in fields:
        ctx.note(
            ("experiment_name",),
            "accepted, not used: jobs are not grouped into experiments on the cluster",
        )
    if "services" in fields:
        ctx.note(
            ("services",),
            "accepted, not provided: interactive services (VS Code, JupyterLab, TensorBoard, "
            "SSH) need the workspace's proxy; use kubectl port-forward to reach the job's pod",
        )
    inputs, broken = _inputs(ctx, fields.get("inputs") or {})
    outputs, broken_outputs = _outputs(ctx, fields.get("outputs") or {})
    _check_command(ctx, fields["command"], inputs, outputs, broken | broken_outputs)
    job = Job(
        name=manifest.name,
        image=image,
        instance_type=resources.get("instance_type"),
        compute=_compute_name(fields.get("compute")),
        environment_variables=_env_vars(fields),
        manifest=manifest,
        annotations=_annotations(ctx, fields),
        command=fields["command"],
        code=_code_path(ctx, fields.get("code"), ("code",)),
        instance_count=resources.get("instance_count", 1),
        inputs=inputs,
        outputs=outputs,
    )
    return job, ctx.found


def build_deployment(
    manifest: manifests.Manifest, snapshot: source.Snapshot
) -> tuple[Deployment, list[problems.Problem]]:
    """A schema-valid Deployment manifest -> `Deployment`, checking files and scale settings."""
    ctx = _Context(manifest, snapshot)
    fields = manifest.fields
    models = _models(ctx, fields)
    mlflow_folder = _mlflow_model_folder(ctx, fields, models)
    no_code = mlflow_folder is not None and "code_configuration" not in fields
    if "environment" in fields:
        image, conda = _image(ctx, fields["environment"])
    elif no_code and mlflow_folder is not None:
        image, conda = MLFLOW_IMAGE, _mlflow_conda_file(ctx, mlflow_folder)
    else:
        ctx.error(
            ("environment",),
            "required field is missing (only an MLflow model, model.type mlflow_model, "
            "deployed with no code_configuration may leave it out)",
        )
        image, conda = "", None
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
    requests, limits = _resources(ctx, fields.get("resources") or {})
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
        requests=requests,
        limits=limits,
        annotations=_annotations(ctx, fields),
        endpoint_name=fields.get("endpoint_name"),
        models=models,
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
        liveness_probe=_probe(ctx, fields, "liveness_probe"),
        readiness_probe=_probe(ctx, fields, "readiness_probe"),
        mlflow_no_code=no_code,
    )
    return deployment, ctx.found


def _mlflow_model_folder(
    ctx: _Context, fields: Mapping[str, Any], models: tuple[str, ...]
) -> str | None:
    """The snapshot path of the deployment's model when it is an MLflow model in the repo
    (`model.type: mlflow_model`, a folder holding an `MLmodel` file), else None."""
    model = fields.get("model")
    if not isinstance(model, Mapping) or str(model.get("type", "")).lower() != MLFLOW_MODEL:
        return None
    local = [m for m in models if not is_uri(m) and not m.startswith(REGISTERED_PREFIX)]
    if not local or not ctx.snapshot.is_dir(local[0]):
        if "code_configuration" not in fields and "environment" not in fields:
            ctx.error(
                ("model", "path"),
                "an MLflow model deployed without code_configuration and environment must be a "
                "folder in the repo holding its MLmodel file",
            )
        return None
    folder = local[0]
    if not ctx.snapshot.exists(posixpath.join(folder, "MLmodel")):
        ctx.error(
            ("model", "path"),
            f"no MLmodel file in {ctx.snapshot.display(folder)}: an mlflow_model is the folder "
            "MLflow saved",
        )
        return None
    return folder


def _mlflow_conda_file(ctx: _Context, folder: str) -> str | None:
    """The conda file the MLflow model names for its pyfunc flavour (`python_function.env` of its
    MLmodel: a file name, or `{conda: FILE, ...}` in newer MLflow), `conda.yaml` by default."""
    name = "conda.yaml"
    path = posixpath.join(folder, "MLmodel")
    if ctx.snapshot.refusals(path):
        return None  # said where the model's folder is checked
    try:
        text = ctx.snapshot.read_bytes(path).decode("utf-8", errors="replace")
    except source.RefusedFile as refused:  # too large
        ctx.error(("model", "path"), str(refused))
        return None
    parsed = documents.parse(ctx.snapshot.display(path), text)  # bounded like any manifest
    if parsed.problems or not parsed.documents:
        why = "; ".join(str(p) for p in parsed.problems) or "it is empty"
        ctx.error(("model", "path"), f"the model's MLmodel file cannot be read: {why}")
        return None
    mlmodel = parsed.documents[0].data
    if not isinstance(mlmodel, Mapping):
        ctx.error(("model", "path"), "the model's MLmodel file is not a mapping")
        return None
    flavors = mlmodel.get("flavors")
    flavor = (flavors.get("python_function") if isinstance(flavors, Mapping) else None) or {}
    env = flavor.get("env") if isinstance(flavor, Mapping) else None
    if isinstance(env, str):
        name = env
    elif isinstance(env, Mapping) and isinstance(env.get("conda"), str):
        name = env["conda"]
    conda = source.join(folder, name)
    if conda is None or not ctx.snapshot.exists(conda):
        ctx.error(
            ("model", "path"),
            f"the MLflow model has no {name} (its environment): give environment.conda_file and "
            "environment.image",
        )
        return None
    return conda if ctx.readable(conda, ("model", "path")) else None


def _probe(ctx: _Context, fields: Mapping[str, Any], key: str) -> Probe:
    """A probe with the ML CLI v2 default for each field not given."""
    given: Mapping[str, Any] = fields.get(key) or {}
    probe = Probe(**{k: int(v) for k, v in given.items()})
    if key == "liveness_probe" and probe.success_threshold != 1:
        ctx.error(
            (key, "success_threshold"),
            "must be 1 for a liveness probe (Kubernetes allows no other value)",
        )
    return probe


def _resources(
    ctx: _Context, resources: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str | int]]:
    """The deployment's own requests and limits (quantities as text, GPUs as a count)."""
    requests = {k: _quantity_text(v) for k, v in (resources.get("requests") or {}).items()}
    limits: dict[str, str | int] = {
        k: (int(v) if k == GPU else _quantity_text(v))
        for k, v in (resources.get("limits") or {}).items()
    }
    if GPU in requests:
        ctx.error(
            ("resources", "requests", GPU),
            f"{GPU} goes only in limits (Kubernetes sets the request equal to the limit)",
        )
        del requests[GPU]
    for name in ("cpu", "memory"):
        request, limit = requests.get(name), limits.get(name)
        if request is None or limit is None:
            continue
        if quantities.parse(request) > quantities.parse(limit):
            ctx.error(
                ("resources", "requests", name),
                f"request {request} is more than the limit {limit}",
            )
    return requests, limits


def _quantity_text(value: object) -> str:
    """`0.5` and `"0.5"` are the same quantity: kept as the text Kubernetes reads."""
    return value if isinstance(value, str) else str(value)


def _annotations(ctx: _Context, fields: Mapping[str, Any]) -> dict[str, str]:
    """Tags as `tags.gitops.mlext.io/KEY` annotations (KEY made a valid annotation name), and the
    display name and description as annotations of their own."""
    found: dict[str, str] = {}
    first_key: dict[str, str] = {}
    for key, value in (fields.get("tags") or {}).items():
        name = _ANNOTATION_NAME_UNSAFE.sub("-", str(key)).strip("-_.")
        name = name[:_ANNOTATION_NAME_MAX].rstrip("-_.")
        if not name:
            ctx.error(("tags", str(key)), "a tag name needs at least one letter or digit")
            continue
        if name in first_key:
            ctx.error(
                ("tags", str(key)),
                f"becomes the same annotation as tag {first_key[name]!r} "
                f"({TAG_ANNOTATION_PREFIX}{name}): rename one",
            )
            continue
        first_key[name] = str(key)
        found[TAG_ANNOTATION_PREFIX + name] = scalar_text(value)
    for key, annotation in (
        ("display_name", DISPLAY_NAME_ANNOTATION),
        ("description", DESCRIPTION_ANNOTATION),
    ):
        if fields.get(key) is not None:
            found[annotation] = str(fields[key])
    return found


def scalar_text(value: Any) -> str:
    """A YAML scalar as the string an annotation or environment variable holds (`true`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _inputs(ctx: _Context, given: Mapping[str, Any]) -> tuple[tuple[JobInput, ...], set[str]]:
    """The job's inputs, and `inputs.NAME` of those with a problem (reported here, once)."""
    found: list[JobInput] = []
    broken: set[str] = set()
    for name, spec in given.items():
        path: problems.FieldPath = ("inputs", name)
        if not isinstance(spec, Mapping):
            if isinstance(spec, str):
                spec = blob_https(spec)
            if isinstance(spec, str) and _unreachable(spec):
                ctx.error(path, _unreachable_message(spec))
                broken.add(f"inputs.{name}")
                continue
            found.append(JobInput(name, value=scalar_text(spec)))
            continue
        kind = spec.get("type")
        if kind in _PRIMITIVE_INPUT_TYPES:
            key = "value" if "value" in spec else "default"
            value = spec.get(key)
            if value is None:
                if not spec.get("optional"):
                    ctx.error(path, f"a {kind} input needs a value or a default")
                    broken.add(f"inputs.{name}")
                found.append(JobInput(name))
                continue
            allowed = _PRIMITIVE_INPUT_TYPES[kind]
            if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
                ctx.error((*path, key), f"must be a {kind} (the input's type)")
                broken.add(f"inputs.{name}")
                continue
            found.append(JobInput(name, value=scalar_text(value)))
            continue
        path_key = next((k for k in ("path", "file", "folder") if k in spec), None)
        if path_key is None:
            if not spec.get("optional"):
                ctx.error(path, "needs a path (a file or folder in the repo, or an https:// URI)")
                broken.add(f"inputs.{name}")
            found.append(JobInput(name))
            continue
        reference = blob_https(str(spec[path_key]))
        if _unreachable(reference):
            ctx.error((*path, path_key), _unreachable_message(reference))
            broken.add(f"inputs.{name}")
        elif reference.startswith(_REACHABLE_SCHEMES):
            found.append(_remote_input(ctx, name, spec, path_key, reference, broken))
        else:
            local = ctx.local_path(reference, (*path, path_key))
            exists = ctx.snapshot.exists(local)
            want = "folder" if kind == "uri_folder" or path_key == "folder" else None
            want = "file" if kind == "uri_file" or path_key == "file" else want
            if exists and want == "folder" and not ctx.snapshot.is_dir(local):
                ctx.error((*path, path_key), f"must be a folder (type {kind or path_key})")
            elif exists and want == "file" and ctx.snapshot.is_dir(local):
                ctx.error((*path, path_key), f"must be a file (type {kind or path_key})")
            found.append(JobInput(name, local=local))
    return tuple(found), broken


def _remote_input(
    ctx: _Context,
    name: str,
    spec: Mapping[str, Any],
    path_key: str,
    url: str,
    broken: set[str],
) -> JobInput:
    """An input at an http(s) URL: fetched into the pod (the command gets its path there), as
    the product mounts or downloads it; with `mode: direct` the URL itself is put in."""
    if spec.get("mode") == "direct":
        return JobInput(name, value=url)
    folder = spec.get("type") == "uri_folder" or path_key == "folder"
    if folder and not _BLOB_URL.match(url):
        ctx.error(
            ("inputs", name, path_key),
            f"{url}: a folder is fetched only from Azure blob storage, whose folders can be "
            "listed anonymously; give a file URL, a folder in the repo, or mode: direct (the "
            "URL is then put in as it is)",
        )
        broken.add(f"inputs.{name}")
        return JobInput(name)
    return JobInput(name, remote=url, folder=folder)


def blob_folder(url: str) -> tuple[str, str]:
    """(the container's URL, the folder's prefix in it) of a blob storage folder URL."""
    match = _BLOB_URL.match(url)
    if match is None:
        raise ValueError(f"not an Azure blob storage URL: {url}")
    prefix = (match["prefix"] or "").strip("/")
    return f"https://{match['account']}/{match['container']}", f"{prefix}/" if prefix else ""


def blob_https(reference: str) -> str:
    """A `wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH` blob as the https URL it is read
    from anonymously (`https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH`), as the public
    examples' data is; any other reference as it is."""
    match = _WASB.match(reference)
    if match is None:
        return reference
    return f"https://{match['account']}/{match['container']}/{match['path']}"


def _unreachable(reference: str) -> bool:
    """A reference the cluster cannot fetch: a workspace datastore or data asset, or a storage
    URI that needs the workspace's credentials."""
    return reference.startswith(REGISTERED_PREFIX) or (
        is_uri(reference) and not reference.startswith(_REACHABLE_SCHEMES)
    )


def _not_in_repo(reference: str) -> str:
    """Why a URI given where a file or folder of the repo belongs is refused."""
    if reference.startswith(_FILE_URI):
        return (
            f"{reference}: a file:// URI names a file of the machine that reads the manifest, "
            "not of the repo: give a path relative to the manifest's folder (./PATH)"
        )
    return f"{reference}: a URI, where a file or folder of the repo belongs (it is not fetched)"


def _unfetched_model(reference: str) -> str:
    if reference.startswith(_FILE_URI):
        return _not_in_repo(reference)
    return (
        f"{reference}: the cluster fetches a model only from an http:// or https:// URI (a "
        "public wasbs:// blob as its https URL): give that, a file or folder in the repo, or a "
        "registered model (azureml:NAME:VERSION)"
    )


def _unreachable_message(reference: str) -> str:
    if reference.startswith(_FILE_URI):
        return _not_in_repo(reference)
    return (
        f"{reference} cannot be reached from the cluster (a workspace datastore or data asset): "
        "give a file or folder in the repo, or an https:// URI"
    )


def _outputs(ctx: _Context, given: Mapping[str, Any]) -> tuple[tuple[str, ...], set[str]]:
    found: list[str] = []
    broken: set[str] = set()
    for name, spec in given.items():
        if isinstance(spec, Mapping) and "path" in spec:
            ctx.error(
                ("outputs", name, "path"),
                f"{spec['path']} cannot be written from the cluster: leave path out (the "
                f"output is then a folder in the pod, {OUTPUTS_DIR}/{name}, kept only while the "
                "pod is)",
            )
            broken.add(f"outputs.{name}")
            continue
        ctx.note(
            ("outputs", name),
            f"an empty folder in the pod, {OUTPUTS_DIR}/{name}: nothing uploads what the job "
            "writes there, and it is gone with the pod",
        )
        found.append(str(name))
    return tuple(found), broken


def _check_command(
    ctx: _Context,
    command: str,
    inputs: tuple[JobInput, ...],
    outputs: tuple[str, ...],
    broken: set[str],
) -> None:
    """Every `${{...}}` of the command names an input or output the job declares; one inside an
    optional part `$[[...]]` may name an input that is not given."""
    declared = {i.name for i in inputs}
    given = {i.name for i in inputs if (i.value, i.local, i.remote) != (None, None, None)}
    optional_spans = [m.span() for m in _OPTIONAL_PART.finditer(command)]
    for match in _PLACEHOLDER.finditer(command):
        line_number = command.count("\n", 0, match.start()) + 1
        line = command.splitlines()[line_number - 1].strip()
        where = f"line {line_number} ({line})"
        reference = _REFERENCE.match(match.group(1))
        if reference is None:
            ctx.error(
                ("command",),
                f"{where}: {match.group(0)} cannot be filled in on Kubernetes: a command job's "
                "command may use ${{inputs.NAME}} and ${{outputs.NAME}} only",
            )
            continue
        group, name = reference.groups()
        names = declared if group == "inputs" else set(outputs)
        if match.group(1) in broken or any(
            start <= match.start() < end for start, end in optional_spans
        ):
            continue
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            ctx.error(("command",), f"{where}: no {group[:-1]} named {name!r} ({group}: {known})")
        elif group == "inputs" and name not in given:
            ctx.error(
                ("command",),
                f"{where}: input {name!r} is not given: give it a value, or put the part "
                "that uses it inside $[[...]] (left out when the input is not given)",
            )


def substitute(command: str, values: Mapping[str, str]) -> str:
    """The command with each `${{inputs.NAME}}` / `${{outputs.NAME}}` replaced by its value from
    `values` (keyed `inputs.NAME`, ...), as text, the way ML CLI v2 does; an optional part
    `$[[...]]` is kept (without its brackets) when every reference in it has a value, else
    dropped."""

    def fill(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    def optional(match: re.Match[str]) -> str:
        part = match.group(1)
        wanted = [m.group(1) for m in _PLACEHOLDER.finditer(part)]
        return fill(part) if all(w in values for w in wanted) else ""

    return fill(_OPTIONAL_PART.sub(optional, command))


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
        ref = blob_https(ref)
        if is_fetched(ref):
            found.append(ref)
        elif is_uri(ref):
            ctx.error(ref_path, _unfetched_model(ref))
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
