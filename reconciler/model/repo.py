"""Loading and validating a whole manifests repo: the `load` and `validate` stages in one call.

`load(snapshot)` parses every YAML file the snapshot lists (`source.ManifestFilter`), recognises
the manifests (a document with none of a manifest's markers is a note), leaves out the files
manifests use as data (conda files, files in model, code and input folders), checks each manifest
against its JSON Schema, builds the typed models (`extensions`, `instancetypes`, `workloads`,
`endpoints`) from the ones that passed, then applies the rules that span manifests: unique names
per kind, endpoints and the deployments behind them (traffic, mirrors, `endpoint_name`), instance
types that exist, the extension a workload runs on and whether it enables training / inference.
It returns the `Repo` and every problem found, a duplicate's own problems too; a repo with any
error is never applied.

Each file's own work (decrypt, parse, recognise, schema check) depends on nothing but its path
and stored bytes; given a `memo.Memo`, it is kept by the bytes' id (a commit's blob id, so an
unchanged file is not even read) and reused for the same file at another revision (relabelled
with that revision's display name). Models and the rules across files are
built afresh for every revision.

Pure: reads only through the snapshot.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from reconciler import source
from reconciler.model import (
    components,
    decryption,
    documents,
    endpoints,
    extensions,
    instancetypes,
    manifests,
    memo,
    placement,
    problems,
    schemas,
    sops,
    workloads,
)

T = TypeVar("T")

# Aliases: the dataclass fields below share their names with these modules.
_Extension = extensions.Extension
_Problem = problems.Problem
_Endpoint = endpoints.Endpoint
_NOTE = problems.Severity.NOTE


class _Placed(Protocol):
    """What names the extension something runs on: a workload's or an endpoint's compute."""

    @property
    def compute(self) -> str | None: ...


@dataclass
class Repo:
    """Everything a repo revision declares, as typed models."""

    extensions: dict[str, _Extension] = field(default_factory=dict)
    instance_types: dict[str, instancetypes.InstanceType] = field(default_factory=dict)
    jobs: dict[str, workloads.Job] = field(default_factory=dict)
    deployments: dict[str, workloads.Deployment] = field(default_factory=dict)
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)  # declared ones only

    def summary(self) -> str:
        """`1 extension, 3 instance types, 2 jobs, 2 deployments, 1 endpoint`."""
        parts = (
            (len(self.extensions), "extension"),
            (len(self.instance_types), "instance type"),
            (len(self.jobs), "job"),
            (len(self.deployments), "deployment"),
            (len(self.endpoints), "endpoint"),
        )
        return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in parts)

    def extension_for(self, placed: _Placed) -> _Extension | None:
        """The extension a workload or endpoint runs on (see `_check_compute`)."""
        if placed.compute in self.extensions:
            return self.extensions[placed.compute]
        if len(self.extensions) == 1:
            return next(iter(self.extensions.values()))
        return None

    def extension_for_endpoint(self, endpoint: _Endpoint) -> _Extension | None:
        """The extension whose router serves `endpoint`: the one its compute names, else its
        deployments' (`_check_endpoints` makes them agree)."""
        if endpoint.compute is None:
            for name in endpoints.members(endpoint, self.deployments.values()):
                if name in self.deployments:
                    return self.extension_for(self.deployments[name])
        return self.extension_for(endpoint)

    def endpoints_served_by(self, extension: _Extension) -> list[_Endpoint]:
        """The endpoints, declared and implicit, that `extension`'s router serves, by name."""
        return [
            endpoint
            for endpoint in endpoints.effective(self.endpoints, self.deployments.values())
            if self.extension_for_endpoint(endpoint) is extension
        ]


@dataclass
class Loaded:
    repo: Repo
    problems: list[_Problem]

    @property
    def errors(self) -> list[_Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def valid(self) -> bool:
        return not self.errors


def load(snapshot: source.Snapshot, reuse: memo.Memo | None = None) -> Loaded:
    """Load and validate every manifest of the repo in `snapshot`. With `reuse`, files another
    load through the same memo already saw with the same path and content are not parsed
    again; the result is the same either way."""
    snapshot = decryption.wrap(snapshot)
    found: list[problems.Problem] = []
    try:
        paths = list(snapshot.yaml_files())
    except source.RefusedFile as refused:  # its .sourceignore: which files to read is unknown
        return Loaded(Repo(), [problems.Problem(refused.shown, 0, "", refused.reason)])
    parsed_files = [(path, _load_file(snapshot, path, reuse)) for path in paths]
    # YAML files that manifests use as data (conda files, in model and code folders) are data,
    # not manifests.
    data = _data_references(parsed for _, parsed in parsed_files)
    valid_manifests: list[manifests.Manifest] = []
    for path, parsed in parsed_files:
        used = _used_as_data(path, data)
        if used is not None:
            found.extend(_data_not_manifests(path, parsed, *used))
            continue
        found.extend(parsed.found)
        for loaded_document in parsed.loaded:
            found.extend(loaded_document.found)
            valid_manifests.extend(loaded_document.valid)
    repo = Repo()
    duplicates = _build_models(repo, valid_manifests, snapshot, found, reuse)
    _check_endpoints(repo, found)
    _check_references(repo, found)
    _check_duplicates(repo, duplicates, found)
    if not parsed_files:
        found.append(
            problems.Problem(
                snapshot.display(""),
                0,
                "",
                "no *.yaml or *.yml files found",
                problems.Severity.WARNING,
            )
        )
    return Loaded(repo, problems.sort_problems(found))


_DataUse = tuple[manifests.DataReference, manifests.Manifest]


def _data_references(parsed_files: Iterable[_LoadedFile]) -> dict[str, _DataUse]:
    """Each file and folder a manifest uses as data, with the first manifest that does. A
    folder holding the manifest itself (`code: .`) is not data to it: the manifests there are
    read."""
    found: dict[str, _DataUse] = {}
    for parsed in parsed_files:
        for loaded_document in parsed.loaded:
            for manifest in loaded_document.declared:
                for reference in manifests.data_references(manifest):
                    if reference.path != manifest.path and not _within(
                        manifest.folder, reference.path
                    ):
                        found.setdefault(reference.path, (reference, manifest))
    return found


def _within(path: str, folder: str) -> bool:
    return folder == "" or path == folder or path.startswith(f"{folder}/")


def _used_as_data(path: str, data: dict[str, _DataUse]) -> _DataUse | None:
    """How the file at `path` is data: it, or a folder it is in, is a manifest's data."""
    if not data:
        return None
    at = path
    while at:
        if at in data:
            return data[at]
        at = posixpath.dirname(at)
    return None


def _data_not_manifests(
    path: str, parsed: _LoadedFile, reference: manifests.DataReference, user: manifests.Manifest
) -> list[_Problem]:
    """A file that is data is not read as manifests (nor are its problems as YAML shown);
    the manifests it would declare are a warning."""
    declared = [m for loaded in parsed.loaded for m in loaded.declared]
    if not declared:
        return []
    first = declared[0]
    names = ", ".join(f"{m.kind} {m.name!r}" for m in declared)
    field_path = (*user.root, *reference.field)
    where = f"{user.document.file}:{user.document.line_of(field_path)}"
    place = "" if reference.path == path else f"in {reference.path}/, "
    return [
        first.problem(
            first.name_path[len(first.root) :],
            f"not read as a manifest ({names}): the file is {place}the {reference.what} of "
            f"{user.kind} {user.name!r} ({where}: {problems.format_field_path(field_path)}), "
            "which is data; move it out of there to apply it",
            problems.Severity.WARNING,
        )
    ]


@dataclass(frozen=True)
class _LoadedDocument:
    """One document of a file: the manifests it declares, the problems recognising and
    checking it found, and the manifests its schemas passed (used unless the file is data)."""

    document: documents.Document
    declared: tuple[manifests.Manifest, ...]
    found: tuple[_Problem, ...]
    valid: tuple[manifests.Manifest, ...]


@dataclass(frozen=True)
class _LoadedFile:
    """A YAML file's own work: a function of its path, text and display name alone."""

    display: str
    found: tuple[_Problem, ...]  # the parser's (or why it could not be decrypted)
    loaded: tuple[_LoadedDocument, ...]
    decrypted: bool = False  # SOPS-encrypted, read as its plaintext


def _load_file(
    snapshot: decryption.DecryptingSnapshot, path: str, reuse: memo.Memo | None
) -> _LoadedFile:
    """The file's problems and manifests; a file the snapshot refuses to read (a symlink out of
    the repo, a FIFO, a device, too large: `source.RefusedFile`) is one error naming it."""
    try:
        return _load_readable(snapshot, path, reuse)
    except source.RefusedFile as refused:
        return _LoadedFile(
            refused.shown, (problems.Problem(refused.shown, 0, "", refused.reason),), ()
        )


def _load_readable(
    snapshot: decryption.DecryptingSnapshot, path: str, reuse: memo.Memo | None
) -> _LoadedFile:
    display = snapshot.display(path)
    if reuse is None:
        return _read_and_check(snapshot, path, display, lambda text: documents.parse(display, text))
    # Keyed by the stored bytes' id (a commit's blob id: nothing read), so an unchanged file
    # is not read at all. Decrypting is a function of those bytes and the memo's one set of
    # keys; a kept decrypted file is decrypted again only so the snapshot holds its plaintext
    # (`decrypted()` lists it), as a load without a memo leaves it.
    text_id = memo.text_id(snapshot, path)

    def parse(text: str) -> documents.ParsedFile:
        # The parse alone is also kept as plain data, by the text alone: `plan` and `apply`
        # start from the parses the last one kept on disk (`cli/rendercache.py`): parsing is a
        # large part of loading a repo.
        plain = reuse.copied(("parsed", text_id), lambda: documents.parse(display, text).plain())
        return documents.ParsedFile.from_plain(display, plain)

    kept = reuse.get(
        ("file", path, text_id), lambda: _read_and_check(snapshot, path, display, parse)
    )
    if kept.decrypted:
        snapshot.read_text(path)
    return _relabelled(kept, display)


def _read_and_check(
    snapshot: decryption.DecryptingSnapshot,
    path: str,
    display: str,
    parse: Callable[[str], documents.ParsedFile],
) -> _LoadedFile:
    try:
        encrypted = snapshot.encrypted(path)
        if encrypted:
            snapshot.read_text(path)  # decrypts the manifest (kept in memory) or says why not
    except sops.SopsError as err:
        found = problems.Problem(display, err.line, "", err.message)
        return _LoadedFile(display, (found,), ())
    return dataclasses.replace(
        _check(path, display, parse(snapshot.read_text(path))), decrypted=encrypted
    )


def _check(path: str, display: str, parsed: documents.ParsedFile) -> _LoadedFile:
    if not parsed.documents and not parsed.problems:
        empty = problems.Problem(
            display, 0, "", "no YAML document (empty, or only comments): skipped", _NOTE
        )
        return _LoadedFile(display, (empty,), ())
    loaded = []
    for document in parsed.documents:
        recognized = manifests.recognize(document, path)
        found: list[problems.Problem] = []
        valid = _check_schemas(document, recognized, found)
        loaded.append(
            _LoadedDocument(document, tuple(recognized.manifests), tuple(found), tuple(valid))
        )
    return _LoadedFile(display, tuple(parsed.problems), tuple(loaded))


def _relabelled(kept: _LoadedFile, display: str) -> _LoadedFile:
    """`kept` as loading the same file under another display name (the same path and text at
    another revision) gives it: the name appears only as each document's file and each
    problem's file, so those are replaced and everything else is shared (documents, manifests
    and problems are frozen; nothing changes the parsed data)."""
    if kept.display == display:
        return kept

    def problem(found: problems.Problem) -> problems.Problem:
        if found.file != kept.display:
            return found
        return dataclasses.replace(found, file=display)

    relabelled = []
    for loaded in kept.loaded:
        document = dataclasses.replace(loaded.document, file=display)
        moved = {id(m): dataclasses.replace(m, document=document) for m in loaded.declared}
        relabelled.append(
            _LoadedDocument(
                document,
                tuple(moved[id(m)] for m in loaded.declared),
                tuple(problem(p) for p in loaded.found),
                tuple(moved[id(m)] for m in loaded.valid),
            )
        )
    return _LoadedFile(
        display, tuple(problem(p) for p in kept.found), tuple(relabelled), kept.decrypted
    )


def _check_schemas(
    document: documents.Document,
    recognized: manifests.Recognized,
    found: list[problems.Problem],
) -> list[manifests.Manifest]:
    """Apply a document's schemas; keep the manifests they find nothing wrong with."""
    found.extend(recognized.problems)
    bad_paths: list[problems.FieldPath] = []
    for check in recognized.checks:
        data = _section(document.data, check.path)
        if data is _MISSING:
            continue  # the section is absent: the schema of the enclosing part reports that
        for error_path, message in schemas.validate(check.schema, data):
            absolute = (*check.path, *error_path)
            bad_paths.append(absolute)
            found.append(document.problem(absolute, message))
    roots = [check.path for check in recognized.checks if check.path]
    roots += [manifest.root for manifest in recognized.manifests if manifest.root]
    return [
        manifest
        for manifest in recognized.manifests
        if not any(_affects(bad, manifest.root, roots) for bad in bad_paths)
    ]


_MISSING = object()


def _section(data: Any, path: problems.FieldPath) -> Any:
    """The part of a document at `path`, or _MISSING when the document has no such part."""
    for part in path:
        if isinstance(data, dict):
            found = part in data
        else:
            found = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not found:
            return _MISSING
        data = data[part]
    return data


def _affects(
    bad: problems.FieldPath, root: problems.FieldPath, roots: Iterable[problems.FieldPath]
) -> bool:
    """An error at `bad` spoils the manifest at `root`: it is inside it, or outside every part
    of the document that a schema checks on its own (a document-level error, such as a bad
    apiVersion). A manifest of the whole document (the older endpoint's own fields, beside its
    `deployments:`) is spoiled only by document-level errors, not by one in a deployment."""
    if root and bad[: len(root)] == root:
        return True
    return not any(bad[: len(r)] == r for r in roots)


def _build_models(
    repo: Repo,
    valid: list[manifests.Manifest],
    snapshot: source.Snapshot,
    found: list[problems.Problem],
    reuse: memo.Memo | None,
) -> list[Any]:
    """Each manifest's model. With `reuse`, a workload's is kept between loads (`Memo.built`):
    a loop tick builds only those of changed files, and their fingerprints stay computed. A
    manifest whose kind and name an earlier one has is a problem; its model is built all the
    same, for its own problems, and returned (not put in `repo`) for the rules across manifests
    (`_check_duplicates`)."""

    def built(
        manifest: manifests.Manifest,
        build: Callable[[manifests.Manifest, source.Snapshot], tuple[T, list[problems.Problem]]],
    ) -> tuple[T, list[problems.Problem]]:
        if reuse is None:
            return build(manifest, snapshot)
        return reuse.built(manifest, snapshot, lambda asking: build(manifest, asking))

    seen: dict[tuple[str, str], manifests.Manifest] = {}
    duplicates: list[Any] = []
    for manifest in valid:
        key = (manifest.kind, manifest.name)
        first = seen.setdefault(key, manifest)
        if first is not manifest:
            found.append(_duplicate_problem(manifest, first))
        model: Any
        if manifest.kind == manifests.EXTENSION:
            model, more = extensions.build(manifest, snapshot)
            models: dict[str, Any] = repo.extensions
        elif manifest.kind == manifests.INSTANCE_TYPE:
            model, more = instancetypes.from_document(
                manifest.document, manifest.root, manifest.path
            )
            models = repo.instance_types
        elif manifest.kind == manifests.JOB:
            model, more = built(manifest, workloads.build_job)
            models = repo.jobs
        elif manifest.kind == manifests.ENDPOINT:
            model, more = endpoints.build(manifest)
            models = repo.endpoints
        else:
            model, more = built(manifest, workloads.build_deployment)
            models = repo.deployments
        if first is manifest:
            models[model.name] = model
        else:
            duplicates.append(model)
        found.extend(more)
    return duplicates


def _duplicate_problem(manifest: manifests.Manifest, first: manifests.Manifest) -> _Problem:
    message = f"duplicate {manifest.kind} named {manifest.name!r}: also declared at {first.where}"
    if manifests.named_after_path(manifest) or manifests.named_after_path(first):
        message += (
            " (a job without a name is named after its path in the repo: give one of them a name)"
        )
    return manifest.document.problem(manifest.name_path, message)


def _check_duplicates(repo: Repo, duplicates: list[Any], found: list[problems.Problem]) -> None:
    """The rules across manifests for each duplicate workload or endpoint, as if it were the
    one of its name (beside the repo's extensions, instance types and endpoints), so its
    problems show in the same run as the duplicate's."""
    for duplicate in duplicates:
        beside = Repo(
            extensions=repo.extensions,
            instance_types=repo.instance_types,
            endpoints=dict(repo.endpoints),
        )
        if isinstance(duplicate, workloads.Job):
            beside.jobs[duplicate.name] = duplicate
        elif isinstance(duplicate, workloads.Deployment):
            beside.deployments[duplicate.name] = duplicate
        elif isinstance(duplicate, endpoints.Endpoint):
            beside.deployments = repo.deployments
            found.extend(_endpoint_problems(beside, duplicate))
            continue
        else:
            continue  # an extension's or instance type's own problems are all it has
        _check_endpoint_names(beside, found)
        _check_references(beside, found)


def _check_endpoints(repo: Repo, found: list[problems.Problem]) -> None:
    """Endpoints and the deployments behind them: each `endpoint_name` names a declared
    endpoint, whose compute a deployment setting none inherits; traffic and mirrors go to
    the endpoint's own deployments (live shares adding up to 100, or all 0; a mirror at most
    50 % and only to a deployment taking no live traffic); an endpoint's name is not the
    implicit endpoint of a deployment that names none; one router serves all of an endpoint."""
    _check_endpoint_names(repo, found)
    for endpoint in repo.endpoints.values():
        found.extend(_endpoint_problems(repo, endpoint))


def _check_endpoint_names(repo: Repo, found: list[problems.Problem]) -> None:
    """Each deployment's `endpoint_name` names a declared endpoint, whose compute it inherits
    when it sets none."""
    for deployment in list(repo.deployments.values()):
        wanted = deployment.endpoint_name
        if wanted is None:
            continue
        endpoint = repo.endpoints.get(wanted)
        if endpoint is None:
            declared = ", ".join(sorted(repo.endpoints)) or "none"
            hint = problems.did_you_mean(wanted, repo.endpoints)
            found.append(
                deployment.manifest.problem(
                    ("endpoint_name",),
                    f"no endpoint named {wanted!r} is declared (declared: {declared}){hint}: "
                    "declare it (an OnlineEndpoint document), or leave endpoint_name out for an "
                    "endpoint of the deployment's own name",
                )
            )
        elif deployment.compute is None and endpoint.compute is not None:
            repo.deployments[deployment.name] = dataclasses.replace(
                deployment, compute=endpoint.compute
            )


def _endpoint_problems(repo: Repo, endpoint: _Endpoint) -> list[_Problem]:
    manifest = endpoint.manifest
    assert manifest is not None, "a declared endpoint has its manifest"
    found: list[_Problem] = []
    name_field = manifest.name_path[len(manifest.root) :]
    namesake = repo.deployments.get(endpoint.name)
    if namesake is not None and namesake.endpoint_name is None:
        found.append(
            manifest.problem(
                name_field,
                f"endpoint {endpoint.name!r} collides with deployment {endpoint.name!r} "
                f"({namesake.manifest.where}): a deployment with no endpoint_name stands behind "
                "an endpoint of its own name; give it endpoint_name or rename one of them",
            )
        )
    members = endpoints.members(endpoint, repo.deployments.values())
    shown = ", ".join(members) or "none"

    def not_member(deployment_name: str) -> str | None:
        deployment = repo.deployments.get(deployment_name)
        if deployment is None:
            hint = problems.did_you_mean(deployment_name, members)
            return f"no deployment named {deployment_name!r}{hint} (the endpoint's: {shown})"
        if deployment.endpoint_name is None:
            return (
                f"deployment {deployment_name!r} names no endpoint_name: it stands behind its "
                f"own endpoint; give it endpoint_name: {endpoint.name} to take traffic here"
            )
        if deployment.endpoint_name != endpoint.name:
            return (
                f"deployment {deployment_name!r} belongs to endpoint "
                f"{deployment.endpoint_name!r} (its endpoint_name), not to {endpoint.name!r}"
            )
        return None

    for deployment_name in endpoint.traffic:
        message = not_member(deployment_name)
        if message is not None:
            found.append(manifest.problem(("traffic", deployment_name), message))
    total = sum(endpoint.traffic.values())
    if total not in (0, 100):
        shares = ", ".join(f"{k} {v}" for k, v in endpoint.traffic.items())
        found.append(
            manifest.problem(
                ("traffic",),
                f"the shares add up to {total} % ({shares}): they must add up to 100, or all "
                "be 0 (then only requests naming a deployment in the azureml-model-deployment "
                "header are served)",
            )
        )
    for deployment_name, percent in endpoint.mirror_traffic.items():
        path = ("mirror_traffic", deployment_name)
        message = not_member(deployment_name)
        live = endpoint.traffic.get(deployment_name, 0)
        if message is None and percent > endpoints.MAX_MIRROR_PERCENT:
            message = f"at most {endpoints.MAX_MIRROR_PERCENT} % of the traffic can be mirrored"
        if message is None and live > 0:
            message = (
                f"deployment {deployment_name!r} takes live traffic ({live} %): a mirror copies "
                "requests to a deployment that takes none"
            )
        if message is not None:
            found.append(manifest.problem(path, message))
    found.extend(_endpoint_placement(repo, endpoint, members))
    return found


def _endpoint_placement(repo: Repo, endpoint: _Endpoint, members: list[str]) -> list[_Problem]:
    """One extension's router serves the endpoint and all of its deployments."""
    manifest = endpoint.manifest
    assert manifest is not None
    name_field = manifest.name_path[len(manifest.root) :]
    if not repo.extensions:
        if members:
            return []  # its deployments say that they need an extension
        return [manifest.problem(name_field, "needs an Extension in the repo (none is declared)")]
    extension = repo.extension_for_endpoint(endpoint)
    if extension is None:
        names = ", ".join(sorted(repo.extensions))
        if endpoint.compute:
            return [
                manifest.problem(
                    ("compute",),
                    f"{endpoint.compute!r} is not one of the repo's extensions ({names})",
                )
            ]
        if members:
            return []  # its deployments say which compute they miss
        message = f"compute must name one of the repo's extensions ({names})"
        return [manifest.problem(name_field, message)]
    found: list[_Problem] = []
    for name in members:
        deployment = repo.deployments[name]
        runs_on = repo.extension_for(deployment)
        if runs_on is not None and runs_on is not extension:
            found.append(
                deployment.manifest.problem(
                    ("compute",),
                    f"runs on extension {runs_on.name!r}, but its endpoint "
                    f"{endpoint.name!r} on {extension.name!r}: one router serves an endpoint "
                    "and all of its deployments",
                )
            )
    if not extension.settings.inference:
        found.append(
            manifest.problem(
                name_field, f"endpoints need enableInference: true on extension {extension.name!r}"
            )
        )
    return found


def _resolve_registered_models(
    repo: Repo, deployment: workloads.Deployment, extension: _Extension
) -> list[_Problem]:
    """Registered models (`azureml:NAME:VERSION`) become `registeredModelUri`/NAME/VERSION;
    without that setting each is an error naming it."""
    refs = [m for m in deployment.models if workloads.registered(m)]
    if not refs:
        return []
    prefix = extension.settings["registeredModelUri"]
    if prefix is None:
        manifest = deployment.manifest
        return [
            manifest.problem(
                ("model",) if "model" in manifest.fields else ("models",),
                f"registered model {ref.removeprefix(workloads.REGISTERED_PREFIX)} needs the "
                f"setting registeredModelUri on extension {extension.name!r} (a URI prefix: "
                "the model is fetched from PREFIX/NAME/VERSION)",
            )
            for ref in refs
        ]
    if not workloads.is_fetched(str(prefix)):
        return [
            deployment.manifest.problem(
                ("model",) if "model" in deployment.manifest.fields else ("models",),
                f"registered models are fetched from the setting registeredModelUri of extension "
                f"{extension.name!r}, {prefix}, which is no http:// or https:// URI (the "
                "cluster fetches a model with curl)",
            )
        ]
    resolved = []
    for model in deployment.models:
        name_version = workloads.registered(model)
        resolved.append(
            f"{str(prefix).rstrip('/')}/{name_version[0]}/{name_version[1]}"
            if name_version
            else model
        )
    repo.deployments[deployment.name] = dataclasses.replace(deployment, models=tuple(resolved))
    return []


_VM_SIZE = re.compile(r"^(Standard|Basic)_[A-Za-z0-9_]+\Z")


def _is_vm_size(name: str | None) -> bool:
    return name is not None and bool(_VM_SIZE.match(name))


def _on_default_instance_type(repo: Repo, workload: workloads.Workload) -> workloads.Workload:
    """The workload with no instance type (the default), in place of `workload` in `repo`."""
    replaced = dataclasses.replace(workload, instance_type=None)
    if isinstance(replaced, workloads.Job):
        repo.jobs[replaced.name] = replaced
    elif isinstance(replaced, workloads.Deployment):
        repo.deployments[replaced.name] = replaced
    return replaced


def _check_references(repo: Repo, found: list[problems.Problem]) -> None:
    """Rules across manifests: instance types, the extension a workload runs on, scenarios."""
    for deployment in list(repo.deployments.values()):
        owner = repo.extension_for(deployment)
        if owner is not None:
            found.extend(_resolve_registered_models(repo, deployment, owner))
    all_workloads: list[tuple[workloads.Workload, problems.FieldPath, str]] = [
        (job, ("resources", "instance_type"), "training") for job in repo.jobs.values()
    ]
    all_workloads += [
        (deployment, ("instance_type",), "inference") for deployment in repo.deployments.values()
    ]
    reserved: dict[str, set[str]] = {}
    for workload, instance_type_path, scenario in all_workloads:
        manifest = workload.manifest
        instance_type = instancetypes.resolve(workload.instance_type, repo.instance_types)
        if instance_type is None and _is_vm_size(workload.instance_type):
            # A managed endpoint's Azure VM size (the public examples' Standard_DS3_v2): on
            # Kubernetes compute it names no shape, so the workload runs on the default one.
            found.append(
                manifest.problem(
                    instance_type_path,
                    f"{workload.instance_type!r} is an Azure VM size (managed compute), not an "
                    "instance type of this cluster: runs with defaultinstancetype; declare an "
                    "InstanceType of that name to give it a shape",
                    problems.Severity.WARNING,
                )
            )
            workload = _on_default_instance_type(repo, workload)
            instance_type = instancetypes.resolve(None, repo.instance_types)
        if instance_type is None:
            known = ", ".join(instancetypes.known_names(repo.instance_types))
            found.append(
                manifest.problem(
                    instance_type_path,
                    f"no instance type named {workload.instance_type!r} (known: {known})",
                )
            )
        extension = _check_compute(repo, workload, found)
        if extension is None:
            continue
        if extension.name not in reserved:  # the same for every workload of the extension
            reserved[extension.name] = _reserved_names(extension)
        if workload.name in reserved[extension.name]:
            found.append(
                manifest.problem(
                    manifest.name_path[len(manifest.root) :],
                    f"{workload.name!r} is taken by a component of extension {extension.name!r} "
                    "in the same namespace: choose another name",
                )
            )
        if instance_type is not None:
            conflict = placement.conflict_problem(
                workload, extension, instance_type, instance_type_path
            )
            if conflict is not None:
                found.append(conflict)
            found.extend(placement.resource_problems(workload, instance_type))
        enabled = (
            extension.settings.training if scenario == "training" else extension.settings.inference
        )
        if not enabled:
            setting = "enableTraining" if scenario == "training" else "enableInference"
            kind = "jobs" if scenario == "training" else "deployments"
            found.append(
                manifest.problem(
                    manifest.name_path[len(manifest.root) :],
                    f"{kind} need {setting}: true on extension {extension.name!r}",
                )
            )


def _reserved_names(extension: extensions.Extension) -> set[str]:
    """Object names the extension's components use in its namespace."""
    names = {c.object_name(extension.name) for c in components.COMPONENTS}
    return names | {"prometheus-operated", "volcano-scheduler-configmap"}


def _check_compute(
    repo: Repo, workload: workloads.Workload, found: list[problems.Problem]
) -> extensions.Extension | None:
    """With one extension any `compute` selects it; with several it must name one."""
    manifest = workload.manifest
    if not repo.extensions:
        found.append(
            manifest.problem(
                manifest.name_path[len(manifest.root) :],
                "needs an Extension in the repo to run on (none is declared)",
            )
        )
        return None
    extension = repo.extension_for(workload)
    if extension is None:
        names = ", ".join(sorted(repo.extensions))
        where = ("compute",) if workload.compute else manifest.name_path[len(manifest.root) :]
        what = f"{workload.compute!r} is not" if workload.compute else "compute must name"
        found.append(manifest.problem(where, f"{what} one of the repo's extensions ({names})"))
    return extension
