"""The in-cluster controller's own manifests, as `reconciler install` prints them.

Sits beside the pipeline rather than in it: it *uses* `revision` on a built-in repo that
switches every component and workload kind on (`templates/install/everything.yaml.j2`), so the
controller's RBAC is computed from what the extension can actually render, never written by hand:
a template that starts rendering a new kind widens the grant, one that stops narrows it. The
objects themselves come from `templates/install/controller.yaml.j2`: Namespace, ServiceAccount,
the ExtensionStatus CRD (`record.crd()`), a ClusterRole and Role with their bindings, the
Deployment (2 replicas, leader election) and its metrics Service. The git credentials and the
notifications file are only referenced (Secret volumes): no Secret data is ever printed.

Pure: no cluster, no files; the built-in repo lives in memory.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import __version__, objects, source
from reconciler.engine import record, revision
from reconciler.model import components
from reconciler.render import templating

NAME = "mlext-reconciler"
DEFAULT_NAMESPACE = "mlext-system"
DEFAULT_GIT_SECRET = "mlext-reconciler-git"
# The bundled example's extension, and the product documentation's own example name.
DEFAULT_EXTENSIONS = ("azureml-extension",)
DEFAULT_BRANCH = "main"
DEFAULT_PATH = "."
DEFAULT_INTERVAL = "60s"
REPLICAS = 2
METRICS_PORT = 8080
HEALTH_PORT = 8081
GIT_CREDENTIALS_DIR = "/etc/git-credentials"
NOTIFICATIONS_DIR = "/etc/notifications"
NOTIFICATIONS_FILE = "notifications.yaml"  # the key of the notifications Secret
CACHE_DIR = "/var/cache/reconciler"

RBAC_GROUP = "rbac.authorization.k8s.io"
# Every write is a server-side apply (PATCH; a create through apply is also authorised as
# `create`, as is a key Secret made once with POST), prune deletes, observe and the drift watch
# read. Nothing issues PUT, so `update` is not granted on anything the extension renders.
APPLY_VERBS: tuple[str, ...] = ("get", "list", "watch", "create", "patch", "delete")
# CRDs are never pruned (see `inventory`): deleting one deletes every resource of its kind.
CRD_VERBS: tuple[str, ...] = ("get", "list", "watch", "create", "patch")
# Leader election on a coordination.k8s.io Lease: read it, create it, renew / take over / release
# it with a PUT on its resourceVersion (`leaderelection`, as client-go does).
LEASE_VERBS: tuple[str, ...] = ("get", "create", "update")
_VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete", "bind", "escalate")

Resource = tuple[str, str]  # (API group, resource), "" for the core group
CRDS: Resource = ("apiextensions.k8s.io", "customresourcedefinitions")

# What the controller needs beyond applying the render: its own record and its status (written
# through the status subresource), Events about the records, and the pods of a workload that is
# not healthy, which say why (`health`). The record's CRD is rendered too.
CONTROLLER_RESOURCES: dict[Resource, tuple[str, ...]] = {
    (record.API_VERSION.rpartition("/")[0], "extensionstatuses"): APPLY_VERBS,
    (record.API_VERSION.rpartition("/")[0], "extensionstatuses/status"): ("patch",),
    ("", "events"): ("create",),
    ("events.k8s.io", "events"): ("create",),
    ("", "pods"): ("list",),
}


@dataclass(frozen=True)
class Options:
    """What `reconciler install` is told; everything but the repo has a default."""

    repo: str
    namespace: str = DEFAULT_NAMESPACE
    image: str = ""  # "" -> default_image()
    git_secret: str = DEFAULT_GIT_SECRET
    branch: str = DEFAULT_BRANCH
    path: str = DEFAULT_PATH
    interval: str = DEFAULT_INTERVAL
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    decryption_secret: str = ""  # a Secret in `namespace` with the age identities (*.agekey)
    adopt: bool = False  # the controller takes over extensions another source owns
    # A Secret in `namespace` whose `notifications.yaml` key is the --notifications file (its
    # other keys: the providers' addressFile / tokenFile, relative to it); "" none.
    notifications_secret: str = ""


def default_image() -> str:
    """The project's own image: the one the inference router runs, at this version."""
    (router,) = [c for c in components.COMPONENTS if c.name == "azureml-fe-v2"]
    return components.image(router)


# --- the built-in "everything" repo and what it renders -----------------------------------


@dataclass(frozen=True)
class _MemorySnapshot:
    """A `source.Snapshot` over files held in memory (here: one YAML file, no data files)."""

    files: dict[str, bytes] = field(default_factory=dict)

    def yaml_files(self) -> Iterator[str]:
        yield from sorted(p for p in self.files if p.endswith(source.YAML_SUFFIXES))

    def read_text(self, path: str) -> str:
        return self.files[path].decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes:
        return self.files[path]

    def exists(self, path: str) -> bool:
        return path in self.files or self.is_dir(path)

    def is_dir(self, path: str) -> bool:
        return any(p.startswith(f"{path}/") for p in self.files) or path == ""

    def size(self, path: str) -> int:
        return sum(len(self.files[p]) for p in self.files_under(path))

    def files_under(self, path: str) -> list[str]:
        if path in self.files:
            return [path]
        return sorted(p for p in self.files if p.startswith(f"{path}/") or path == "")

    def refusals(self, path: str) -> list[tuple[str, str]]:
        return []  # no symlink, FIFO or device is held in memory

    def display(self, path: str) -> str:
        return posixpath.join("<install>", path)

    def revision(self) -> str:
        return source.UNVERSIONED

    def origin(self) -> str:
        return "<install>"


def rendered(extension_names: Iterable[str] = DEFAULT_EXTENSIONS) -> list[objects.Object]:
    """Every object the controller could apply for extensions of these names: the built-in
    repo with everything switched on, in both generations, with each deployment's and
    endpoint's key Secret (which the reconciler creates next to the render)."""
    found: list[objects.Object] = []
    for name in sorted(set(extension_names)):
        for older in (False, True):
            docs = templating.render_template(
                "install/everything.yaml.j2", {"name": name, "older": older}
            )
            snapshot = _MemorySnapshot({"everything.yaml": objects.to_yaml(docs).encode()})
            everything = revision.Revision(snapshot)
            if not everything.valid:  # a template bug, never the user's input
                raise AssertionError(everything.error_lines())
            found.extend(everything.rendered.objects)
            for secrets in everything.rendered.generated.values():
                found.extend(secrets)
    return found


def _guess_plural(kind: str) -> str:
    """The REST resource of a built-in kind, as kubectl guesses it without discovery
    (`meta.UnsafeGuessKindToResource`); the cluster test proves each against a real server."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def resources_of(objs: Iterable[objects.Object]) -> set[Resource]:
    """(API group, resource) of each object; custom kinds take the plural their CRD (among
    `objs`, or the record's) declares."""
    objs = list(objs)
    declared: dict[tuple[str, str], str] = {}
    for crd in [record.crd(), *(o for o in objs if o["kind"] == "CustomResourceDefinition")]:
        names = crd["spec"]["names"]
        declared[(crd["spec"]["group"], names["kind"])] = names["plural"]
    found = set()
    for obj in objs:
        group = objects.key(obj).group
        found.add((group, declared.get((group, obj["kind"])) or _guess_plural(obj["kind"])))
    return found


# --- RBAC --------------------------------------------------------------------------------


def _names(objs: Iterable[objects.Object], kind: str) -> list[str]:
    """The names of the RBAC objects of `kind` among `objs`."""
    api_version = f"{RBAC_GROUP}/v1"
    return sorted(
        {o["metadata"]["name"] for o in objs if (o["apiVersion"], o["kind"]) == (api_version, kind)}
    )


def _rules(
    grants: Mapping[Resource, Iterable[str]], names: Mapping[Resource, list[str]] | None = None
) -> list[dict[str, Any]]:
    """PolicyRules, one per (group, verbs, resourceNames) with its resources: sorted, stable."""
    merged: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for (group, resource), verbs in sorted(grants.items()):
        ordered = tuple(v for v in _VERB_ORDER if v in set(verbs))
        limited = tuple((names or {}).get((group, resource), ()))
        merged.setdefault((group, ordered, limited), []).append(resource)
    rules = []
    for (group, verbs, limited), resources in sorted(merged.items()):
        rule: dict[str, Any] = {"apiGroups": [group], "resources": sorted(resources)}
        if limited:
            rule["resourceNames"] = list(limited)
        rule["verbs"] = list(verbs)
        rules.append(rule)
    return rules


def cluster_rules(extension_names: Iterable[str] = DEFAULT_EXTENSIONS) -> list[dict[str, Any]]:
    """The ClusterRole's rules: the render's kinds, the controller's own needs, and the right to
    create and bind the components' roles.

    Kubernetes lets a subject create or change a (Cluster)Role only if it holds every permission
    the role grants, or has `escalate` on it, and bind one only if it holds them, or has `bind`
    on it. Holding them would hand this ServiceAccount the union of every component's rules:
    over a hundred permissions on 43 resources it never uses itself (mutating webhook
    configurations, pods/binding, persistent volumes, volcano and prometheus resources, `update`
    on most of what it applies) and the /metrics URL. Instead `bind` and `escalate` are granted
    only with resourceNames: the roles the templates render for the named extensions
    (server-side apply names the role in the request path, so the limit holds when the role is
    created, too).
    The trade-off, accepted: whoever holds this ServiceAccount could put other rules into those
    named roles. It can already run a pod under any ServiceAccount of any namespace (it creates
    Deployments wherever an extension is released), so that adds no reach; and the rules come
    from the templates in the image, not from the repo it follows."""
    objs = rendered(extension_names)
    grants: dict[Resource, set[str]] = {}
    for resource in resources_of(objs):
        verbs = CRD_VERBS if resource == CRDS else APPLY_VERBS
        grants.setdefault(resource, set()).update(verbs)
    for resource, verbs in CONTROLLER_RESOURCES.items():
        grants.setdefault(resource, set()).update(verbs)
    role_names = {
        (RBAC_GROUP, "clusterroles"): _names(objs, "ClusterRole"),
        (RBAC_GROUP, "roles"): _names(objs, "Role"),
    }
    delegation = {resource: ("bind", "escalate") for resource, named in role_names.items() if named}
    return _rules(grants) + _rules(delegation, role_names)


def namespace_rules(decryption_secret: str = "") -> list[dict[str, Any]]:
    """The Role's rules, in the controller's own namespace only: its leader-election Lease, and
    `get` on the one Secret holding its SOPS decryption key when it has one."""
    rules = _rules({("coordination.k8s.io", "leases"): LEASE_VERBS})
    if decryption_secret:
        secrets: Resource = ("", "secrets")
        rules += _rules({secrets: ("get",)}, {secrets: [decryption_secret]})
    return rules


# --- the objects -------------------------------------------------------------------------


# The controller's flags that come from the options, as (flag, Options field), after its PATH
# argument and FIXED_FLAGS: a string field's value follows its flag and an empty one leaves the
# flag out; a bool is the flag alone, when true. The chart (`chart`) writes the same args from
# these tables as Helm expressions.
OPTION_FLAGS: tuple[tuple[str, str], ...] = (
    ("--repo", "repo"),
    ("--branch", "branch"),
    ("--interval", "interval"),
    ("--decryption-secret", "decryption_secret"),
    ("--adopt", "adopt"),
)
FIXED_FLAGS: tuple[str, ...] = (
    "--leader-elect",
    "--metrics-addr", f":{METRICS_PORT}",
    "--health-addr", f":{HEALTH_PORT}",
    "--git-credentials", GIT_CREDENTIALS_DIR,
)  # fmt: skip
# With a notifications Secret: the file it is mounted as.
NOTIFICATIONS_ARGS: tuple[str, ...] = (
    "--notifications",
    f"{NOTIFICATIONS_DIR}/{NOTIFICATIONS_FILE}",
)


def controller_args(options: Options) -> list[str]:
    args = ["controller", options.path, *FIXED_FLAGS]
    for flag, field_name in OPTION_FLAGS:
        value = getattr(options, field_name)
        if value is True:
            args.append(flag)
        elif value:
            args += [flag, value]
    if options.notifications_secret:
        args += NOTIFICATIONS_ARGS
    return args


def labels() -> dict[str, str]:
    return {
        objects.NAME_LABEL: NAME,
        objects.COMPONENT_LABEL: "controller",
        "app.kubernetes.io/version": __version__,
    }


def template_constants() -> dict[str, Any]:
    """What `install/controller.yaml.j2` is given that is the same in every installation."""
    return {
        "name": NAME,
        "labels": labels(),
        "selector": {objects.NAME_LABEL: NAME, objects.COMPONENT_LABEL: "controller"},
        "replicas": REPLICAS,
        "metrics_port": METRICS_PORT,
        "health_port": HEALTH_PORT,
        "git_credentials_dir": GIT_CREDENTIALS_DIR,
        "notifications_dir": NOTIFICATIONS_DIR,
        "cache_dir": CACHE_DIR,
    }


def cluster_name(namespace: str) -> str:
    """The ClusterRole's (and its binding's) name: two installations never share a role."""
    return f"{NAME}:{namespace}"


def namespace_object(namespace: str) -> objects.Object:
    """The controller's namespace, with the restricted Pod Security Standard enforced (the pod
    meets it). Not in the chart: Helm installs into a namespace it is given."""
    meta = {
        "name": namespace,
        "labels": {**labels(), "pod-security.kubernetes.io/enforce": "restricted"},
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def manifests(options: Options) -> list[objects.Object]:
    """Every object of the controller's installation, in apply order."""
    encoded = {
        "namespace": options.namespace,
        "cluster_name": cluster_name(options.namespace),
        "image": options.image or default_image(),
        "git_secret": options.git_secret,
        "args": controller_args(options),
        "cluster_rules": cluster_rules(options.extensions),
        "namespace_rules": namespace_rules(options.decryption_secret),
        "notifications_secret": options.notifications_secret,
    }
    context = {
        **template_constants(),
        **{k: json.dumps(v) for k, v in encoded.items()},
        # The notifications Secret's volume and mount, when there is one (the chart: always,
        # inside a Helm condition).
        "with_notifications": bool(options.notifications_secret),
        "notifications_begin": "",
        "notifications_end": "",
    }
    objs = [
        record.crd(),
        namespace_object(options.namespace),
        *templating.render_template("install/controller.yaml.j2", context),
    ]
    return objects.in_apply_order(objs)
