"""The observe phase of a reconcile: what the cluster holds now, and what it would make of ours.

Two reads, through the `kube` edge, that change nothing (and a third for the health phase: the
pods of workloads that are not healthy, `pods_in`): the live object for each key (one LIST
per kind and namespace, or the loop's watch-backed cache: `livecache`), and the server's dry run
of a server-side apply of every desired object that is not `in_sync` (its fingerprint says it is
unchanged since our last apply and still ours: `fingerprint`), so defaulting, admission and
field-manager conflicts count before anything is applied. `reconcile`
runs them for each extension and plans from what they return; the rejections become the
extension's errors, and nothing of it is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler import kube, objects
from reconciler.engine import executor, fingerprint, livecache


def live_objects(
    cluster: kube.Cluster,
    keys: Iterable[objects.Key],
    reads: livecache.Reads | None = None,
) -> dict[objects.Key, objects.Object | None]:
    """The live object for each key (None: absent): from `reads` (the loop's cache, or the
    command's listing), else one list request per kind and namespace rather than one read per
    object."""
    return (reads or livecache.Listing(cluster)).lookup(keys)


def pods_in(cluster: kube.Cluster, namespaces: Iterable[str]) -> list[objects.Object]:
    """Every pod of these namespaces, one list request each: what tells why a workload there is
    not healthy (`health.of`). Read only for workloads that are not, so neither a healthy
    extension nor the loop's in-sync tick sends these requests."""
    return [
        pod
        for namespace in sorted(set(namespaces))
        for pod in kube.list_objects(cluster, "v1", "Pod", namespace)
    ]


def in_sync(
    desired: Iterable[tuple[objects.Key, objects.Object]],
    live: Mapping[objects.Key, objects.Object | None],
) -> set[objects.Key]:
    """The desired objects (fingerprinted, by key) that need no dry run: unchanged since our
    last apply, and no one else changed our fields (`fingerprint.in_sync`)."""
    return {
        key for key, obj in desired if fingerprint.in_sync(obj, live.get(key), kube.FIELD_MANAGER)
    }


def dry_run(
    cluster: kube.Cluster,
    desired: Sequence[objects.Object],
    live: Mapping[objects.Key, objects.Object | None],
    *,
    force_conflicts: bool,
    workers: int = executor.WORKERS,
) -> tuple[dict[objects.Key, objects.Object], list[str]]:
    """What the server would make of each desired object, and its rejections (sorted), each
    explained. An object whose namespace or kind this apply creates first is left out: the
    server cannot dry-run it yet."""
    new_kinds = _crd_kinds(desired, live)
    errors: list[str] = []
    would_be: dict[objects.Key, objects.Object] = {}

    def one(obj: objects.Object) -> None:
        try:
            would_be[objects.key(obj)] = kube.apply(
                cluster, obj, dry_run=True, force_conflicts=force_conflicts
            )
        except kube.KubeError as err:
            errors.append(_explain(objects.key(obj), err))

    checkable = [obj for obj in desired if not _dry_run_blocked(obj, live, new_kinds)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, checkable))
    return would_be, sorted(errors)


def _dry_run_blocked(
    obj: objects.Object, live: Mapping[objects.Key, objects.Object | None], new_kinds: set[str]
) -> bool:
    """The server cannot dry-run an object whose namespace or kind this apply creates first."""
    namespace = obj["metadata"].get("namespace")
    if namespace:
        ns_key = objects.Key("v1", "Namespace", "", namespace)
        if ns_key in live and live[ns_key] is None:
            return True
    return f"{obj['apiVersion']}/{obj['kind']}" in new_kinds


def _crd_kinds(
    desired: Iterable[objects.Object], live: Mapping[objects.Key, objects.Object | None]
) -> set[str]:
    """`group/version/Kind` of every custom kind whose CRD this apply creates."""
    kinds = set()
    for obj in desired:
        if obj["kind"] != "CustomResourceDefinition" or live.get(objects.key(obj)) is not None:
            continue
        spec = obj["spec"]
        for version in spec["versions"]:
            kinds.add(f"{spec['group']}/{version['name']}/{spec['names']['kind']}")
    return kinds


def _explain(key: objects.Key, err: kube.KubeError) -> str:
    if err.status == 409:
        return (
            f"{key}: {err} (another field manager owns these fields; apply with "
            "--force-conflicts to take them over)"
        )
    if key.kind == "Job" and err.status == 422 and "immutable" in str(err):
        return (
            f"{key}: this Job already ran with a different spec and a Job runs once per name; "
            "give it a new name to run it again"
        )
    return f"{key}: {err}"
