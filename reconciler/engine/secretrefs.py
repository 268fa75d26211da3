"""Protected values referenced as `{secretRef: {name, key}}`, read from the cluster at apply time.

The renderer leaves such a value empty and names its source in the object's
`gitops.mlext.io/secret-refs` annotation (JSON: data key -> {name, key}, a Secret in the
object's namespace). `fill` reads each referenced Secret through `kube` and puts the value in
place before the plan's dry run, so plan, apply and the controller all send the real value and
the diffs stay masked as for any Secret. A missing Secret or key, or a value that is not the PEM
it should be, is a `kube.KubeError` naming the Secret and key (never the value): nothing is
applied. `references` is the pure half.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass

from reconciler import kube, objects
from reconciler.model import tls
from reconciler.render import render

_CHECKS = {"cert.pem": tls.certificate_problem, "key.pem": tls.private_key_problem}


@dataclass(frozen=True)
class Reference:
    data_key: str
    namespace: str
    name: str
    key: str


def references(obj: objects.Object) -> list[Reference]:
    """The values `obj` takes from cluster Secrets (none for most objects)."""
    metadata = obj.get("metadata") or {}
    text = (metadata.get("annotations") or {}).get(render.SECRET_REFS_ANNOTATION)
    if not text:
        return []
    namespace = str(metadata.get("namespace") or "default")
    return [
        Reference(data_key, namespace, str(ref["name"]), str(ref["key"]))
        for data_key, ref in sorted(json.loads(text).items())
    ]


def fill(cluster: kube.Cluster, rendered: list[objects.Object]) -> list[objects.Object]:
    """`rendered` with every referenced value read from its Secret (objects copied, not
    changed in place)."""
    filled: list[objects.Object] = []
    cache: dict[tuple[str, str], objects.Object | None] = {}
    for obj in rendered:
        refs = references(obj)
        if not refs:
            filled.append(obj)
            continue
        obj = copy.deepcopy(obj)
        for ref in refs:
            where = (ref.namespace, ref.name)
            if where not in cache:
                cache[where] = kube.get_secret(cluster, ref.namespace, ref.name)
            obj["data"][ref.data_key] = _value(cache[where], ref, obj)
        filled.append(obj)
    return filled


def _value(secret: objects.Object | None, ref: Reference, obj: objects.Object) -> str:
    target = f"{obj['kind']}/{ref.namespace}/{obj['metadata']['name']} {ref.data_key}"
    source = f"Secret {ref.namespace}/{ref.name}"
    if secret is None:
        raise kube.KubeError(f"{target}: secretRef names {source}, which does not exist")
    data = secret.get("data") or {}
    if ref.key not in data:
        known = ", ".join(sorted(data)) or "none"
        raise kube.KubeError(f"{target}: {source} has no key {ref.key!r} (its keys: {known})")
    value = str(data[ref.key])
    check = _CHECKS.get(ref.data_key)
    problem = check(base64.b64decode(value)) if check else None
    if problem is not None:
        raise kube.KubeError(f"{target}: {source} key {ref.key} {problem}")
    return value
