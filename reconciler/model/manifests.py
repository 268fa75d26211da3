"""Recognising what each YAML document of a repo declares (`docs/domain.md#manifests`).

A document is an Extension, InstanceType, InstanceTypeList, Job, Deployment or Endpoint by its
`kind`; a kind-less document is a Job, Deployment or online endpoint in the ML CLI v2 shape by its
`$schema` URL or its shape (a command and an environment: a job; an endpoint_name with a model or
`type: kubernetes`: a deployment; a `name` and an `auth_mode`, no model: an endpoint), or an older
endpoint whose `deployments:` list holds one Deployment per item (and, when it has a name,
declares that Endpoint too). A pipeline, sweep or other job that is not one command is a single
problem at the field that says so. Recognition splits documents into `Manifest`s (one per
declared object) and says which JSON Schemas check which part of the document. A document that
tries to be a manifest and fails is a problem naming its file and line; one with none of a
manifest's markers (no `kind`, `apiVersion`, known `$schema` or shape: a conda file, a workspace
compute file, CI configuration) is no manifest and is skipped with a note.

Also here: the name of a job that gives none (`name_from_path`, from its path in the repo) and
the files and folders a manifest uses as data (`data_references`: conda files, models, code),
which are never read as manifests.

Pure: works on parsed `documents.Document`s.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import source
from reconciler.model import documents, problems

GITOPS_API_VERSION = "gitops.mlext.io/v1alpha1"
AMLARC_API_VERSION = "amlarc.azureml.com/v1alpha1"

EXTENSION = "Extension"
INSTANCE_TYPE = "InstanceType"
INSTANCE_TYPE_LIST = "InstanceTypeList"
JOB = "Job"
DEPLOYMENT = "Deployment"
ENDPOINT = "Endpoint"
KINDS = (EXTENSION, INSTANCE_TYPE, INSTANCE_TYPE_LIST, JOB, DEPLOYMENT, ENDPOINT)
# The schema that checks the `spec` of each enveloped kind.
_SPEC_SCHEMAS = {JOB: JOB, DEPLOYMENT: DEPLOYMENT, ENDPOINT: "OnlineEndpoint"}

_JOB_SCHEMA_SUFFIX = "commandjob.schema.json"
_DEPLOYMENT_SCHEMA_SUFFIX = "onlinedeployment.schema.json"
# Job types of ML CLI v2 that are not a single command, and the fields that make one.
_UNSUPPORTED_JOB_TYPES = ("pipeline", "sweep", "parallel", "spark", "automl", "import")
_UNSUPPORTED_JOB_FIELDS = {
    "jobs": "pipeline",
    "trial": "sweep",
    "search_space": "sweep",
    "task": "parallel or AutoML",
}
# Fields of an ML job: a `type` or a field above says what kind of job only beside one of these
# (or another of them), as a CI file's `jobs:` (GitHub Actions, Azure Pipelines) is no job.
_JOB_FIELDS = (
    "compute",
    "experiment_name",
    "display_name",
    "settings",
    "inputs",
    "outputs",
    "environment",
    "command",
    "code",
    *_UNSUPPORTED_JOB_FIELDS,
)
_ENDPOINT_SCHEMA_SUFFIX = "onlineendpoint.schema.json"
# Fields that say a kind-less document is a deployment, not an endpoint of the CLI v2 shape.
_NOT_ENDPOINT = ("model", "models", "deployments", "environment", "endpoint_name", "$schema")
# Fields an older endpoint document passes on to each of its deployments.
_ENDPOINT_INHERITED = ("compute", "auth_mode")


@dataclass(frozen=True)
class Manifest:
    """One declared object: its kind, name, and where its fields sit in which document."""

    kind: str
    name: str
    document: documents.Document
    root: problems.FieldPath  # path of the object's fields inside the document
    fields: Mapping[str, Any] = field(repr=False)
    path: str = ""  # snapshot path of the file
    name_path: problems.FieldPath = ()

    @property
    def folder(self) -> str:
        """Local paths in the manifest are relative to its file's folder."""
        return posixpath.dirname(self.path)

    def problem(
        self,
        path: problems.FieldPath,
        message: str,
        severity: problems.Severity = problems.Severity.ERROR,
    ) -> problems.Problem:
        """A problem at `path`, given relative to the object's fields."""
        return self.document.problem((*self.root, *path), message, severity)

    @property
    def line(self) -> int:
        return self.document.line_of(self.name_path or self.root)

    @property
    def where(self) -> str:
        return f"{self.document.file}:{self.line}"


@dataclass(frozen=True)
class SchemaCheck:
    """Validate the part of a document at `path` with schema `schema`."""

    schema: str
    path: problems.FieldPath = ()


@dataclass
class Recognized:
    manifests: list[Manifest]
    checks: list[SchemaCheck]
    problems: list[problems.Problem]


def recognize(document: documents.Document, snapshot_path: str) -> Recognized:
    """What `document` (from the file at `snapshot_path`) declares."""
    data = document.data
    if not isinstance(data, Mapping):
        if isinstance(data, list) and any(_has_markers(item) for item in data):
            return _unknown(document, f"a manifest must be a mapping, not {_type_word(data)}")
        return _skipped(document, (), f"{_type_word(data)}, not a mapping: no manifest, skipped")
    kind = data.get("kind")
    if kind is not None:
        return _by_kind(document, data, kind, snapshot_path)
    unsupported = _unsupported_job(document, data)
    if unsupported is not None:
        return unsupported
    schema_url = data.get("$schema")
    if isinstance(schema_url, str):
        lowered = schema_url.lower()
        if lowered.endswith(_JOB_SCHEMA_SUFFIX):
            return _v2_job(document, data, snapshot_path)
        if lowered.endswith(_DEPLOYMENT_SCHEMA_SUFFIX):
            return _v2_deployment(document, data, snapshot_path)
        if lowered.endswith(_ENDPOINT_SCHEMA_SUFFIX) and "deployments" not in data:
            return _v2_endpoint(document, data, snapshot_path)
    if isinstance(data.get("deployments"), list):
        return _endpoint(document, data, snapshot_path)
    if "endpoint_name" in data and ("model" in data or _is_kubernetes(data.get("type"))):
        # A kubernetes online deployment as the ML CLI v2 examples write it: no $schema, an
        # endpoint_name and a model (or type: kubernetes) say what it is.
        return _v2_deployment(document, data, snapshot_path)
    if "name" in data and "auth_mode" in data and not any(k in data for k in _NOT_ENDPOINT):
        # The CLI v2 endpoint written without a $schema: a name and an auth mode, no model.
        return _v2_endpoint(document, data, snapshot_path)
    if "command" in data and "environment" in data:
        # The product docs' command job, written without a $schema: a command and an
        # environment say what it is.
        return _v2_job(document, data, snapshot_path)
    if "apiVersion" in data:
        return _unknown_at(
            document,
            ("kind",),
            f"required field is missing: give a kind (one of {', '.join(KINDS)})",
        )
    if _has_markers(data):
        return _unknown(
            document,
            "not a manifest this reconciler knows: give a kind (one of "
            f"{', '.join(KINDS)}), a $schema of a command job, an online deployment or an "
            "online endpoint, or a deployments: list",
        )
    if "$schema" in data:
        return _foreign_schema(document, schema_url)
    return _skipped(document, (), _no_manifest(data))


def _v2_job(document: documents.Document, data: Mapping[str, Any], path: str) -> Recognized:
    """A command job of the CLI v2 shape; without a `name`, named after its path."""
    name = data.get("name") or name_from_path(path)
    job = Manifest(JOB, str(name), document, (), data, path, ("name",))
    return Recognized([job], [SchemaCheck(JOB)], [])


def _has_markers(data: Any) -> bool:
    """`data` says it is (or tries to be) a manifest: a `kind`, an `apiVersion`, a `metadata`
    and a `spec` (a manifest of this project's envelope), a `$schema` of a job, deployment or
    endpoint, or a manifest's shape."""
    if not isinstance(data, Mapping):
        return False
    if "kind" in data or "apiVersion" in data or isinstance(data.get("deployments"), list):
        return True
    if "metadata" in data and "spec" in data:
        return True
    schema_url = data.get("$schema")
    if isinstance(schema_url, str) and schema_url.lower().endswith(
        ("job.schema.json", _DEPLOYMENT_SCHEMA_SUFFIX, _ENDPOINT_SCHEMA_SUFFIX)
    ):
        return True
    return (
        ("endpoint_name" in data and ("model" in data or _is_kubernetes(data.get("type"))))
        or ("name" in data and "auth_mode" in data)
        or ("command" in data and "environment" in data)
    )


def _foreign_schema(document: documents.Document, schema_url: Any) -> Recognized:
    """A document whose `$schema` is of nothing this reconciler deploys (a workspace compute,
    an environment or data asset, a component, a batch endpoint): skipped with a note naming
    it. (Job types that do not run here are an error: `_unsupported_job`.)"""
    what = "this document"
    if isinstance(schema_url, str) and schema_url.lower().endswith(".schema.json"):
        what = posixpath.basename(schema_url)[: -len(".schema.json")]
    message = (
        f"{what} ($schema {schema_url}) is no manifest: a $schema this reconciler does not "
        "deploy (it deploys command jobs, online deployments and online endpoints), skipped"
    )
    if "compute" in what.lower():
        message += "; a workload runs on the extension its compute names"
    return _skipped(document, ("$schema",), message)


def _no_manifest(data: Mapping[str, Any]) -> str:
    what = "no manifest"
    if "dependencies" in data and ("channels" in data or "name" in data):
        what = "a conda environment file that no manifest points at (environment.conda_file)"
    return (
        f"{what}: none of a manifest's markers (a kind, an apiVersion, the $schema of a command "
        "job, online deployment or online endpoint, a deployments: list, or the fields of one: "
        "command and environment, endpoint_name and model, name and auth_mode), skipped"
    )


def _skipped(document: documents.Document, path: problems.FieldPath, message: str) -> Recognized:
    return Recognized([], [], [document.problem(path, message, problems.Severity.NOTE)])


def _by_kind(
    document: documents.Document, data: Mapping[str, Any], kind: Any, path: str
) -> Recognized:
    metadata = data.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    name_path: problems.FieldPath = ("metadata", "name")
    if kind == INSTANCE_TYPE_LIST:
        items = data.get("items")
        found = [
            Manifest(
                INSTANCE_TYPE,
                str(item.get("metadata", {}).get("name", ""))
                if isinstance(item.get("metadata"), Mapping)
                else "",
                document,
                ("items", i),
                item,
                path,
                ("items", i, "metadata", "name"),
            )
            for i, item in enumerate(items if isinstance(items, list) else [])
            if isinstance(item, Mapping)
        ]
        return Recognized(found, [SchemaCheck(INSTANCE_TYPE_LIST)], [])
    if kind in (EXTENSION, INSTANCE_TYPE):
        manifest = Manifest(kind, name, document, (), data, path, name_path)
        return Recognized([manifest], [SchemaCheck(kind)], [])
    if isinstance(kind, str) and kind in _SPEC_SCHEMAS:
        spec = data.get("spec")
        fields = spec if isinstance(spec, Mapping) else {}
        manifest = Manifest(kind, name, document, ("spec",), fields, path, name_path)
        checks = [SchemaCheck("Envelope"), SchemaCheck(_SPEC_SCHEMAS[kind], ("spec",))]
        return Recognized([manifest], checks, [])
    hint = problems.did_you_mean(str(kind), KINDS)
    return Recognized(
        [],
        [],
        [
            document.problem(
                ("kind",), f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}{hint}"
            )
        ],
    )


def _v2_deployment(document: documents.Document, data: Mapping[str, Any], path: str) -> Recognized:
    checks = [SchemaCheck(DEPLOYMENT)]
    if "name" not in data:
        return Recognized([], checks, [document.problem(("name",), "required field is missing")])
    manifest = Manifest(DEPLOYMENT, str(data["name"]), document, (), data, path, ("name",))
    return Recognized([manifest], checks, [])


def _is_kubernetes(value: Any) -> bool:
    return isinstance(value, str) and value.lower() == "kubernetes"


def _unsupported_job(document: documents.Document, data: Mapping[str, Any]) -> Recognized | None:
    """A pipeline, sweep, parallel or other non-command job: one clear problem at the field that
    says so, rather than every schema rule it breaks."""
    job_type = data.get("type")
    schema_url = data.get("$schema")
    schema_kind = None
    if isinstance(schema_url, str) and schema_url.lower().endswith("job.schema.json"):
        schema_kind = posixpath.basename(schema_url.lower()).removesuffix("job.schema.json")
    if isinstance(job_type, str) and job_type.lower() in _UNSUPPORTED_JOB_TYPES:
        where: problems.FieldPath = ("type",)
        what = f"a {job_type.lower()} job"
    elif schema_kind and schema_kind != "command":
        where, what = ("$schema",), f"a {schema_kind} job"
    elif (found := next((k for k in _UNSUPPORTED_JOB_FIELDS if k in data), None)) is not None:
        where, what = (found,), f"a {_UNSUPPORTED_JOB_FIELDS[found]} job"
    else:
        return None
    if not schema_kind and not _job_like(data, where[0]):
        return None  # a field of that name alone makes no job: a CI file's `jobs:`
    return _unknown_at(
        document,
        where,
        f"{what} cannot run on Kubernetes through this reconciler: only command jobs do "
        "(a command and an environment); write each step as a command job of its own",
    )


def _job_like(data: Mapping[str, Any], found: problems.PathPart) -> bool:
    """Beside the field `found`, `data` has another field of an ML job, or the field holds
    one (`trial: {command: ...}`) or, as a pipeline's `jobs:`, several."""
    if any(k in data for k in _JOB_FIELDS if k != found):
        return True
    value = data.get(str(found))
    steps = [value, *value.values()] if isinstance(value, Mapping) else []
    return any(isinstance(s, Mapping) and ("command" in s or "component" in s) for s in steps)


def _v2_endpoint(document: documents.Document, data: Mapping[str, Any], path: str) -> Recognized:
    checks = [SchemaCheck("OnlineEndpoint")]
    if "name" not in data:
        return Recognized([], checks, [document.problem(("name",), "required field is missing")])
    manifest = Manifest(ENDPOINT, str(data["name"]), document, (), data, path, ("name",))
    return Recognized([manifest], checks, [])


def _endpoint(document: documents.Document, data: Mapping[str, Any], path: str) -> Recognized:
    """The older endpoint shape: each item of `deployments:` is one Deployment; with a name,
    the document also declares that Endpoint (its `deployments:` are no field of it)."""
    manifests: list[Manifest] = []
    checks = [SchemaCheck("Endpoint")]
    found: list[problems.Problem] = []
    if isinstance(data.get("name"), str):
        fields = {k: v for k, v in data.items() if k != "deployments"}
        manifests.append(Manifest(ENDPOINT, data["name"], document, (), fields, path, ("name",)))
    for i, item in enumerate(data["deployments"]):
        if not isinstance(item, Mapping):
            continue  # the Endpoint schema reports it
        root: problems.FieldPath = ("deployments", i)
        inherited = {k: data[k] for k in _ENDPOINT_INHERITED if k in data and k not in item}
        fields = {**inherited, **item}
        if "endpoint_name" not in fields and isinstance(data.get("name"), str):
            fields["endpoint_name"] = data["name"]
        checks.append(SchemaCheck(DEPLOYMENT, root))
        if "name" not in item:
            found.append(document.problem((*root, "name"), "required field is missing"))
            continue
        name_path = (*root, "name")
        manifests.append(
            Manifest(DEPLOYMENT, str(item["name"]), document, root, fields, path, name_path)
        )
    return Recognized(manifests, checks, found)


def _unknown(document: documents.Document, message: str) -> Recognized:
    return Recognized([], [], [document.problem((), message)])


def _unknown_at(document: documents.Document, path: problems.FieldPath, message: str) -> Recognized:
    return Recognized([], [], [document.problem(path, message)])


def _type_word(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


_NAME_MAX = 63  # a DNS label: the Job's name and its pods' job-name label
_NAME_DIGEST = 8  # hex digits of the path's SHA-256 that keep a shortened name unique


def name_from_path(snapshot_path: str) -> str:
    """The name of a CLI v2 job that gives none, from its path in the repo (relative to the
    folder applied): the path without its extension, lowercased, each run of other characters
    than a-z and 0-9 (`/`, `_`, `.`, ` `) one `-`, no `-` at either end:
    `cli/jobs/single-step/lightgbm/iris/job.yml` -> `cli-jobs-single-step-lightgbm-iris-job`.
    Longer than 63 characters (a DNS label), it is its first 54 characters, `-` and the first 8
    hex digits of the SHA-256 of the path, so it stays unique and the same at every revision."""
    stem = posixpath.splitext(snapshot_path)[0].lower()
    slug = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")
    if slug and len(slug) <= _NAME_MAX:
        return slug
    digest = hashlib.sha256(snapshot_path.encode("utf-8")).hexdigest()[:_NAME_DIGEST]
    prefix = slug[: _NAME_MAX - _NAME_DIGEST - 1].rstrip("-") or "job"
    return f"{prefix}-{digest}"


def named_after_path(manifest: Manifest) -> bool:
    """The manifest is a job that gives no name (named by `name_from_path`)."""
    return (
        manifest.kind == JOB
        and not manifest.root
        and "kind" not in manifest.fields
        and not manifest.fields.get("name")
    )


@dataclass(frozen=True)
class DataReference:
    """A file or folder of the repo that a manifest uses as data, and which field says so."""

    path: str  # snapshot path
    what: str  # "conda file", "model", "code", "input", "build context"
    field: problems.FieldPath  # relative to the manifest's fields


def data_references(manifest: Manifest) -> list[DataReference]:
    """The files and folders in the repo a Job or Deployment uses as data: its conda file,
    models, code folder, local inputs and build context (URIs and registered assets are none;
    nor is a path that leaves the repo). YAML files there are data, not manifests."""
    if manifest.kind not in (JOB, DEPLOYMENT):
        return []
    return [
        DataReference(resolved, what, path)
        for what, path, value in _data_fields(manifest.fields)
        if (resolved := _local_path(manifest.folder, value)) is not None
    ]


def _data_fields(fields: Mapping[str, Any]) -> Iterator[tuple[str, problems.FieldPath, Any]]:
    def at(
        parent: Any, path: problems.FieldPath, *keys: str
    ) -> Iterator[tuple[problems.FieldPath, Any]]:
        if isinstance(parent, Mapping):
            for key in keys:
                if key in parent:
                    yield (*path, key), parent[key]

    environment = fields.get("environment")
    for path, value in at(environment, ("environment",), "conda_file"):
        yield "conda file", path, value
    if isinstance(environment, Mapping):
        for path, value in at(environment.get("build"), ("environment", "build"), "path"):
            yield "build context", path, value
    models: list[tuple[problems.FieldPath, Any]] = [(("model",), fields.get("model"))]
    if isinstance(fields.get("models"), list):
        models += [(("models", i), m) for i, m in enumerate(fields["models"])]
    for path, model in models:
        if isinstance(model, str):
            yield "model", path, model
        yield from (("model", *found) for found in at(model, path, "path", "local_path"))
    codes: list[tuple[problems.FieldPath, Any]] = [(("code",), fields.get("code"))]
    configuration = fields.get("code_configuration")
    if isinstance(configuration, Mapping):
        codes.append((("code_configuration", "code"), configuration.get("code")))
    for path, code in codes:
        if isinstance(code, str):
            yield "code", path, code
        yield from (("code", *found) for found in at(code, path, "local_path"))
    inputs = fields.get("inputs")
    if isinstance(inputs, Mapping):
        for name, spec in inputs.items():
            keys = ("path", "local_path", "file", "folder")
            yield from (("input", *found) for found in at(spec, ("inputs", str(name)), *keys))


def _local_path(folder: str, value: Any) -> str | None:
    """The snapshot path `value` names relative to `folder`; None for a URI, a registered
    asset (`azureml:...`) or a path outside the repo."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("file:") and not value.startswith("file://"):
        value = value.removeprefix("file:")
    if "://" in value or value.startswith("azureml:"):
        return None
    return source.join(folder, value)
