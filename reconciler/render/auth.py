"""Authentication material of model deployments and endpoints, kept in one Secret each.

The product's auth modes: `docs/domain.md#online-deployments`.

Key mode (the default): a primary and a secondary key, either accepted by the router, each
regenerable on its own. Token mode: a signing key the router signs and checks tokens with. None:
no Secret. The Secret is generated once, when the deployment or declared endpoint first appears,
and never rewritten by a reconcile: keys handed to clients stay valid until someone regenerates
them. An implicit endpoint (a deployment that names none) has no Secret of its own: it is checked
with its deployment's. `repo_secrets` is every Secret a repo needs; `render.render_repo` hands
them to the reconcile (and the install's RBAC) with the rendered objects. Pure: the randomness
comes from `secrets`, the API calls are the caller's.
"""

from __future__ import annotations

import base64
import secrets

from reconciler import objects
from reconciler.model import endpoints, repo, workloads
from reconciler.render import workloadobjects

KEY_FIELDS = {"primary": "primaryKey", "secondary": "secondaryKey"}
SIGNING_KEY_FIELD = "signingKey"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def new_secret(
    deployment: workloads.Deployment, namespace: str, extension: str
) -> objects.Object | None:
    """A fresh Secret for the deployment's auth mode (None in mode none), labelled as owned by
    `extension` so that its inventory and prune cover it."""
    return _secret(
        deployment.auth_mode,
        workloadobjects.auth_secret_name(deployment.name),
        namespace,
        {
            objects.PART_OF_LABEL: extension,
            workloadobjects.DEPLOYMENT_LABEL: deployment.name,
            objects.COMPONENT_LABEL: "deployment-auth",
        },
    )


def new_endpoint_secret(
    endpoint: endpoints.Endpoint, namespace: str, extension: str
) -> objects.Object | None:
    """A fresh Secret for a declared endpoint's auth mode (None in mode none, and for an
    implicit endpoint, which uses its deployment's)."""
    if endpoint.implicit:
        return None
    return _secret(
        endpoint.auth_mode,
        workloadobjects.endpoint_auth_secret_name(endpoint.name),
        namespace,
        {
            objects.PART_OF_LABEL: extension,
            workloadobjects.ENDPOINT_LABEL: endpoint.name,
            objects.COMPONENT_LABEL: "endpoint-auth",
        },
    )


def repo_secrets(declared: repo.Repo) -> dict[str, list[objects.Object]]:
    """The key Secrets each extension's deployments and declared endpoints need, freshly
    generated (only created when absent, so the generated values are discarded when the
    Secret exists), by extension name."""
    found: dict[str, list[objects.Object]] = {}
    for deployment in declared.deployments.values():
        extension = declared.extension_for(deployment)
        assert extension is not None, "a valid repo has an extension for every deployment"
        secret = new_secret(deployment, extension.release_namespace, extension.name)
        if secret is not None:
            found.setdefault(extension.name, []).append(secret)
    for endpoint in declared.endpoints.values():
        extension = declared.extension_for_endpoint(endpoint)
        assert extension is not None, "a valid repo has an extension for every endpoint"
        secret = new_endpoint_secret(endpoint, extension.release_namespace, extension.name)
        if secret is not None:
            found.setdefault(extension.name, []).append(secret)
    return found


def _secret(mode: str, name: str, namespace: str, labels: dict[str, str]) -> objects.Object | None:
    if mode == "none":
        return None
    if mode == "key":
        data = {field: _b64(new_key()) for field in KEY_FIELDS.values()}
    else:
        data = {SIGNING_KEY_FIELD: _b64(new_key())}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {objects.MANAGED_BY_LABEL: objects.MANAGED_BY, **labels},
        },
        "data": data,
    }


def regenerated(which: str) -> dict[str, str]:
    """The Secret `data` patch that replaces one key (`primary` or `secondary`)."""
    return {KEY_FIELDS[which]: _b64(new_key())}
