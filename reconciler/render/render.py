"""The `render` stage: a validated repo -> every Kubernetes object it declares, in apply order.

For each extension: its release namespace, the components `components.select` picks (one Jinja
template each under `templates/components/`), the router's TLS Secret when the protected PEM files
supply it; for the repo: the InstanceType CRD, the volcano CRDs when a training extension installs
volcano, and the declared instance types as custom resources. Every object then gets the labels
that tie it to its extension and the annotations naming its source file and revision, and the
list is put in apply order. Pure: the PEM files are read through the snapshot.

Rendering goes unit by unit (an extension's components, one job, one deployment, one instance
type, one CRD template); given a `memo.Memo`, a unit whose inputs are unchanged since another
revision's render is copied from it instead of rendered again, then stamped for this revision.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from reconciler import objects, source
from reconciler.model import (
    components,
    endpoints,
    extensions,
    instancetypes,
    memo,
    repo,
    workloads,
)
from reconciler.render import auth, templating, workloadobjects

INTERNAL_LB_ANNOTATION = "service.beta.kubernetes.io/azure-load-balancer-internal"
ROUTER_CONFIG_DIR = "/etc/azureml-fe"
ROUTER_HTTP_PORT = 8080
ROUTER_HTTPS_PORT = 8443
ROUTER_ADMIN_PORT = 8081  # plain HTTP: /metrics and the load reports, inside the cluster only


_T = TypeVar("_T")
# (`Rendered.objects` and `Rendered.extensions` hide the modules in its class body)
_Object = objects.Object
_Extension = extensions.Extension
_Placed = tuple[_Object, Hashable | None]  # an object and its place (see `_Units._get`)
# libyaml's emitter: the router's config lists every deployment of an extension, and the pure
# Python emitter is several times slower on it at thousands of deployments (same output).
_CONFIG_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Owner:
    """What ties an object to its extension: the labels and annotations it gets."""

    extension: str
    component: str
    name: str
    source_file: str


@dataclass
class Rendered:
    """A repo revision as the planner takes it: the objects to apply, the key Secrets to create
    once, and the extensions whose records name them; no model past this point."""

    objects: list[objects.Object] = field(default_factory=list)
    # By extension: the key Secrets (`auth`), created only when absent; their values are
    # random, so two renders of one repo differ in nothing else.
    generated: dict[str, list[_Object]] = field(default_factory=dict, repr=False, compare=False)
    # By name: the models the extensions' records are written from (`engine.record.record`).
    extensions: dict[str, _Extension] = field(default_factory=dict, repr=False)
    # By id: (the object, a digest of where it was rendered from: its unit's key, its place in
    # the unit, its owner). Two objects with one such id are the same but for the revision.
    placed: dict[int, tuple[_Object, bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def content_id(self, obj: _Object) -> bytes | None:
        """A short stand-in for all of `obj` but its source revision, known without reading
        it: planning's fingerprint is looked up by it, where digesting every whole object again
        would cost a large repo's tick a share of its time. None for an object not rendered
        here, or changed since (a filled secret, trimmed replicas: copies), or rendered without
        a memo."""
        found = self.placed.get(id(obj))
        return found[1] if found is not None and found[0] is obj else None


def render_repo(
    declared: repo.Repo,
    snapshot: source.Snapshot,
    revision: str,
    reuse: memo.Memo | None = None,
) -> Rendered:
    """Every object the repo declares, labelled and in apply order, with its key Secrets. With
    `reuse`, units whose inputs another render through the same memo already had are copied
    from it (see `_Units`); the result is the same either way."""
    owned: dict[objects.Key, objects.Object] = {}
    placed: dict[int, tuple[objects.Object, bytes]] = {}
    units = _Units(declared, snapshot, reuse)

    def add(obj: objects.Object, owner: Owner, place: Hashable | None) -> None:
        _stamp(obj, owner, revision)
        if owned.setdefault(objects.key(obj), obj) is obj and place is not None:
            # shared CRDs are rendered once
            stamped_with = (owner.extension, owner.component, owner.name, owner.source_file)
            where = memo.content_digest(("rendered", place, stamped_with))
            if where is not None:
                placed[id(obj)] = (obj, where)

    repo_owner = _repo_owner(declared)
    for extension in sorted(declared.extensions.values(), key=lambda e: e.name):
        source_file = extension.manifest.path if extension.manifest else ""
        served = [
            d for d in declared.deployments.values() if declared.extension_for(d) is extension
        ]
        fronted = declared.endpoints_served_by(extension)
        for (obj, component), place in units.extension(extension, served, fronted):
            add(obj, Owner(extension.name, component, _object_name(obj), source_file), place)
    for job in declared.jobs.values():
        runs_on = declared.extension_for(job)
        assert runs_on is not None, "a valid repo has an extension for every job"
        for obj, place in units.job(job, runs_on):
            add(obj, Owner(runs_on.name, "job", job.name, job.manifest.path), place)
    for deployment in declared.deployments.values():
        served_by = declared.extension_for(deployment)
        assert served_by is not None, "a valid repo has an extension for every deployment"
        for obj, place in units.deployment(deployment, served_by):
            path = deployment.manifest.path
            add(obj, Owner(served_by.name, "model-deployment", deployment.name, path), place)
    if repo_owner is not None:
        crd_file = repo_owner.manifest.path if repo_owner.manifest else ""
        for obj, place in units.template("crds/instancetypes.yaml.j2"):
            add(obj, Owner(repo_owner.name, "crd", _object_name(obj), crd_file), place)
        if any(_installs_volcano(e) for e in declared.extensions.values()):
            for obj, place in units.template("crds/volcano.yaml.j2"):
                add(obj, Owner(repo_owner.name, "crd", _object_name(obj), crd_file), place)
        for instance_type in sorted(declared.instance_types.values(), key=lambda i: i.name):
            for obj, place in units.instance_type(instance_type):
                owner = Owner(
                    repo_owner.name, "instancetype", instance_type.name, instance_type.source_path
                )
                add(obj, owner, place)
    in_order = objects.in_apply_order(owned.values())
    return Rendered(in_order, auth.repo_secrets(declared), dict(declared.extensions), placed)


class _Units:
    """The render units of one repo revision, each rendered or, with a memo, reused.

    A unit's key holds everything its renderer reads, and nothing of where it came from: the
    model values (`memo.fingerprint`: dataclass fields that compare, so not the manifest), the
    instance type a workload resolves to, the ids of the files it reads through the snapshot,
    and for an extension its router's entries (the only part of the deployments and endpoints
    it reads).
    Objects come back unstamped and fresh (see `memo.Memo.copied`): `render_repo` stamps them
    with this revision's owner, file and revision.
    """

    def __init__(
        self, declared: repo.Repo, snapshot: source.Snapshot, reuse: memo.Memo | None
    ) -> None:
        self._declared = declared
        self._snapshot = snapshot
        self._reuse = reuse
        # Every workload of an extension shares its fingerprint: compute it once.
        self._fingerprints: dict[tuple[str, str], Hashable] = {}

    def _get(
        self, key: Callable[[], Hashable], render_unit: Callable[[], list[_T]]
    ) -> list[tuple[_T, Hashable | None]]:
        """The unit's items, each with its place: (the unit key's digest, its index), or None
        without a memo (no key computed: a render without a memo is as it was)."""
        if self._reuse is None:
            return [(item, None) for item in render_unit()]
        unit = memo.digest(key())
        found = self._reuse.copied_at(unit, render_unit)
        return [(item, (unit, i)) for i, item in enumerate(found)]

    def _fingerprint(self, kind: str, name: str, value: object) -> Hashable:
        """`value`'s fingerprint as a digest: it goes into the key of every workload of the
        extension, and each key is marshalled to be looked up (a whole extension's settings
        marshalled into every key would dominate a warm render)."""
        if (kind, name) not in self._fingerprints:
            self._fingerprints[kind, name] = memo.digest(memo.fingerprint(value))
        return self._fingerprints[kind, name]

    def _model_fingerprint(self, model: object) -> Hashable:
        """A workload's fingerprint, computed once while load hands out the same model (a
        file unchanged since the last tick: `memo.Memo.built`)."""
        assert self._reuse is not None, "keys are made with a memo only"
        return self._reuse.fingerprint_digest(model)

    def _placement_key(
        self, workload: workloads.Workload, extension: extensions.Extension
    ) -> tuple[Hashable, Hashable]:
        instance_type = instancetypes.resolve(workload.instance_type, self._declared.instance_types)
        return (
            self._fingerprint("extension", extension.name, extension),
            self._fingerprint("instance type", workload.instance_type or "", instance_type),
        )

    def extension(
        self,
        extension: extensions.Extension,
        served: Sequence[workloads.Deployment],
        fronted: Sequence[endpoints.Endpoint],
    ) -> list[tuple[tuple[objects.Object, str], Hashable | None]]:
        def key() -> Hashable:
            entries = [
                workloadobjects.router_entry(d, extension.release_namespace)
                for d in sorted(served, key=lambda d: d.name)
            ]
            entries += [workloadobjects.endpoint_entry(e, served) for e in fronted]
            pem_files = [f for f in (extension.ssl_cert_file, extension.ssl_key_file) if f]
            return (
                "extension",
                self._fingerprint("extension", extension.name, extension),
                memo.data_fingerprint(entries),
                memo.files(self._snapshot, pem_files),
            )

        return self._get(key, lambda: extension_objects(extension, self._snapshot, served, fronted))

    def job(self, job: workloads.Job, extension: extensions.Extension) -> list[_Placed]:
        def key() -> Hashable:
            return (
                "job",
                self._model_fingerprint(job),
                self._placement_key(job, extension),
                memo.files(self._snapshot, job.local_files()),
            )

        declared, snapshot = self._declared.instance_types, self._snapshot
        return self._get(
            key, lambda: workloadobjects.job_objects(job, extension, declared, snapshot)
        )

    def deployment(
        self, deployment: workloads.Deployment, extension: extensions.Extension
    ) -> list[_Placed]:
        def key() -> Hashable:
            return (
                "deployment",
                self._model_fingerprint(deployment),
                self._placement_key(deployment, extension),
                memo.files(self._snapshot, deployment.local_files()),
            )

        declared, snapshot = self._declared.instance_types, self._snapshot
        return self._get(
            key,
            lambda: workloadobjects.deployment_objects(deployment, extension, declared, snapshot),
        )

    def template(self, name: str) -> list[_Placed]:
        """A template with no context (the CRDs): the same objects at every revision."""
        return self._get(lambda: ("template", name), lambda: templating.render_template(name, {}))

    def instance_type(self, instance_type: instancetypes.InstanceType) -> list[_Placed]:
        context = {"it": _instance_type(instance_type)}
        return self._get(
            lambda: ("instance type", memo.fingerprint(instance_type)),
            lambda: templating.render_template("instancetype.yaml.j2", context),
        )


def extension_objects(
    extension: extensions.Extension,
    snapshot: source.Snapshot,
    deployments: Sequence[workloads.Deployment] = (),
    fronted: Sequence[endpoints.Endpoint] = (),
) -> list[tuple[objects.Object, str]]:
    """(object, component label) for everything one extension installs; `deployments` are the
    model deployments its router serves, `fronted` the endpoints in front of them."""
    found: list[tuple[objects.Object, str]] = []
    base = _base_context(extension)
    for obj in templating.render_template("namespace.yaml.j2", base):
        found.append((obj, "namespace"))
    for component in components.select(extension):
        context = {**base, "c": _component_context(component, extension)}
        if component.template == "router":
            context["router"] = _router_context(component, extension, deployments, fronted)
            secret = _router_tls_secret(component, extension, snapshot)
            if secret is not None:
                found.append((secret, _component_label(component)))
        for obj in templating.render_template(component.template_name, context):
            found.append((obj, _component_label(component)))
    return found


def _base_context(extension: extensions.Extension) -> dict[str, Any]:
    values = extension.settings
    return {
        "ext": {
            "name": extension.name,
            "namespace": extension.release_namespace,
            "cluster_type": extension.cluster_type,
        },
        "s": dict(values.values),
        "node_selector": values.node_selector,
        "openshift": bool(values["openshift"]),
    }


def _component_label(component: components.Component) -> str:
    return component.name.replace("{EXT}-", "")


def _component_context(
    component: components.Component, extension: extensions.Extension
) -> dict[str, Any]:
    name = component.object_name(extension.name)
    selector = {objects.NAME_LABEL: name, objects.PART_OF_LABEL: extension.name}
    return {
        "name": name,
        "component": _component_label(component),
        "kind": component.kind,
        "image": components.image(component, extension.settings["imageRegistry"]),
        "resources": component.resources.as_dict(),
        # Cluster-scoped RBAC is shared by every extension on the cluster: prefix it.
        "cluster_name": name if name.startswith(extension.name) else f"{extension.name}-{name}",
        "selector": selector,
        "pod_labels": {
            **selector,
            objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
            objects.COMPONENT_LABEL: _component_label(component),
        },
        "host_access": component.kind == "DaemonSet",
    }


def router_tls_secret_name(router_name: str, extension: extensions.Extension) -> str | None:
    """The Secret the router's certificate comes from, or None over plain HTTP."""
    values = extension.settings
    if not values.https:
        return None
    return str(values["sslSecret"]) if values["sslSecret"] else f"{router_name}-tls"


def _router_context(
    component: components.Component,
    extension: extensions.Extension,
    deployments: Sequence[workloads.Deployment],
    fronted: Sequence[endpoints.Endpoint],
) -> dict[str, Any]:
    """What `templates/components/router.yaml.j2` fills in: the Deployment, its Services, its
    config file and the RBAC the router needs."""
    values = extension.settings
    name = component.object_name(extension.name)
    tls_secret = router_tls_secret_name(name, extension)
    https = tls_secret is not None
    container_port = ROUTER_HTTPS_PORT if https else ROUTER_HTTP_PORT
    volumes, mounts = _router_volumes(name, tls_secret)
    config = _router_config(extension, deployments, fronted, container_port, https)
    internal = (
        values["internalLoadBalancerProvider"] == "azure"
        and values["inferenceRouterServiceType"] == "LoadBalancer"
    )
    return {
        "replicas": 3 if values["inferenceRouterHA"] else 1,
        "service_type": values["inferenceRouterServiceType"],
        "service_annotations": {INTERNAL_LB_ANNOTATION: "true"} if internal else None,
        **_router_ports(https, container_port),
        # Headless, so it is never a load balancer: the instances find each other's admin
        # ports through it, and Prometheus (which scrapes every Service's endpoints) scrapes it.
        "admin_service": workloadobjects.router_admin_service(name),
        "config_map": f"{name}-config",
        "config_yaml": yaml.dump(config, Dumper=_CONFIG_DUMPER, sort_keys=False),
        "rules": _router_rules(name, deployments, fronted),
        "volumes": volumes,
        "volume_mounts": mounts,
    }


def _router_ports(https: bool, container_port: int) -> dict[str, Any]:
    """The router's ports as its Services, its container and its probes name them: the one it
    serves on (HTTPS when it has a certificate, else HTTP) and the admin port."""
    port_name = "https" if https else "http"
    admin = workloadobjects.ROUTER_ADMIN_PORT_NAME
    return {
        "service_ports": [
            {
                "name": port_name,
                "port": 443 if https else 80,
                "targetPort": port_name,
                "protocol": "TCP",
            }
        ],
        "container_ports": [
            {"name": port_name, "containerPort": container_port, "protocol": "TCP"},
            {"name": admin, "containerPort": ROUTER_ADMIN_PORT, "protocol": "TCP"},
        ],
        "admin_service_ports": [
            {"name": admin, "port": ROUTER_ADMIN_PORT, "targetPort": admin, "protocol": "TCP"}
        ],
        "probe_port": port_name,
        "probe_scheme": "HTTPS" if https else "HTTP",
    }


def _router_config(
    extension: extensions.Extension,
    deployments: Sequence[workloads.Deployment],
    fronted: Sequence[endpoints.Endpoint],
    container_port: int,
    https: bool,
) -> dict[str, Any]:
    """The router's config file (`router.config` reads it): where it listens, the deployments
    it serves and the endpoints in front of them, and with HTTPS its certificate's files."""
    config: dict[str, Any] = {
        "listen": f"0.0.0.0:{container_port}",
        "admin_listen": f"0.0.0.0:{ROUTER_ADMIN_PORT}",
        "deployments": [
            workloadobjects.router_entry(d, extension.release_namespace)
            for d in sorted(deployments, key=lambda d: d.name)
        ],
        "endpoints": [
            workloadobjects.endpoint_entry(e, deployments)
            for e in sorted(fronted, key=lambda e: e.name)
        ],
    }
    if https:
        config["tls"] = {
            "cert": f"{ROUTER_CONFIG_DIR}/tls/cert.pem",
            "key": f"{ROUTER_CONFIG_DIR}/tls/key.pem",
        }
        config["cname"] = extension.settings["sslCname"]
    return config


def _router_volumes(
    name: str, tls_secret: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The router pod's volumes and its container's mounts of them: the config file, /tmp, and
    with HTTPS (`tls_secret` set) the certificate."""
    # The root file system is read-only; the Kubernetes client writes the in-cluster CA and token
    # to temporary files, so /tmp is an emptyDir (as the controller's): without it the router's
    # watches fail ("No usable temporary directory") and it never discovers a backend.
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": ROUTER_CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if tls_secret is not None:
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
        mounts.append({"name": "tls", "mountPath": f"{ROUTER_CONFIG_DIR}/tls", "readOnly": True})
    return volumes, mounts


def _router_rules(
    name: str,
    deployments: Sequence[workloads.Deployment],
    fronted: Sequence[endpoints.Endpoint],
) -> list[dict[str, Any]]:
    """The router's RBAC: the key Secrets of the deployments and endpoints it checks requests
    against, and the autoscaled deployments whose replicas it sets."""
    keys = [
        *(workloadobjects.auth_secret_name(d.name) for d in deployments if d.auth_mode != "none"),
        *(s for e in fronted if (s := workloadobjects.endpoint_secret(e))),
    ]
    autoscaled = [d.name for d in deployments if d.scale.type == workloadobjects.AUTOSCALED]
    return workloadobjects.router_rules(name, keys, autoscaled)


SECRET_REFS_ANNOTATION = "gitops.mlext.io/secret-refs"
# What a Secret key taken from the cluster holds until the engine fills it in before applying.
SECRET_REF_PLACEHOLDER = ""
_TLS_KEYS = (("sslCertPemFile", "cert.pem"), ("sslKeyPemFile", "key.pem"))


def _router_tls_secret(
    component: components.Component, extension: extensions.Extension, snapshot: source.Snapshot
) -> objects.Object | None:
    """The Secret built from the protected PEM files (not when sslSecret names one). A PEM given
    as a secretRef is left empty here and named in the `secret-refs` annotation (JSON: data key
    -> {name, key}); the engine reads it from the cluster and fills it in before applying."""
    name = component.object_name(extension.name)
    if not extension.settings.https or extension.settings["sslSecret"]:
        return None
    files = {"sslCertPemFile": extension.ssl_cert_file, "sslKeyPemFile": extension.ssl_key_file}
    refs = dict(extension.secret_refs)
    if not all(files[setting] or setting in refs for setting, _ in _TLS_KEYS):
        return None
    data: dict[str, str] = {}
    from_cluster: dict[str, dict[str, str]] = {}
    for setting, data_key in _TLS_KEYS:
        path = files[setting]
        if path:
            data[data_key] = base64.b64encode(snapshot.read_bytes(path)).decode()
        else:
            data[data_key] = SECRET_REF_PLACEHOLDER
            from_cluster[data_key] = {"name": refs[setting].name, "key": refs[setting].key}
    metadata: dict[str, Any] = {"name": f"{name}-tls", "namespace": extension.release_namespace}
    if from_cluster:
        metadata["annotations"] = {SECRET_REFS_ANNOTATION: json.dumps(from_cluster, sort_keys=True)}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
            "data": data}  # fmt: skip


def _installs_volcano(extension: extensions.Extension) -> bool:
    return extension.settings.training and bool(extension.settings["installVolcano"])


def _repo_owner(declared: repo.Repo) -> extensions.Extension | None:
    """Cluster-wide objects (CRDs, instance types) belong to the repo's first extension."""
    if not declared.extensions:
        return None
    return declared.extensions[min(declared.extensions)]


def _instance_type(instance_type: instancetypes.InstanceType) -> dict[str, Any]:
    return {
        "name": instance_type.name,
        "node_selector": dict(instance_type.node_selector),
        "resources": instance_type.resources(),
    }


def _object_name(obj: objects.Object) -> str:
    return str(obj["metadata"]["name"])


def _stamp(obj: objects.Object, owner: Owner, revision: str) -> None:
    """Labels that tie the object to its extension; annotations naming where it came from.
    Labels a template set itself (such as the router-config component) win."""
    metadata = obj.setdefault("metadata", {})
    labels = {
        objects.NAME_LABEL: owner.name,
        objects.PART_OF_LABEL: owner.extension,
        objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
        objects.COMPONENT_LABEL: owner.component,
    }
    metadata["labels"] = {**labels, **(metadata.get("labels") or {})}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        objects.SOURCE_FILE_ANNOTATION: owner.source_file,
        objects.SOURCE_REVISION_ANNOTATION: revision,
    }
