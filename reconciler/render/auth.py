"""Authentication material of model deployments (SPEC section 6), kept in one Secret each.

Key mode (the default): a primary and a secondary key, either accepted by the router, each
regenerable on its own. Token mode: a signing key the router signs and checks tokens with. None:
no Secret. The Secret is generated once, when the deployment first appears, and never rewritten
by a reconcile: keys handed to clients stay valid until someone regenerates them. Pure: the
randomness comes from `secrets`, the API calls are the caller's.
"""

from __future__ import annotations

import base64
import secrets

from reconciler import objects
from reconciler.model import workloads
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
    if deployment.auth_mode == "none":
        return None
    if deployment.auth_mode == "key":
        data = {field: _b64(new_key()) for field in KEY_FIELDS.values()}
    else:
        data = {SIGNING_KEY_FIELD: _b64(new_key())}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": workloadobjects.auth_secret_name(deployment.name),
            "namespace": namespace,
            "labels": {
                objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
                objects.PART_OF_LABEL: extension,
                workloadobjects.DEPLOYMENT_LABEL: deployment.name,
                objects.COMPONENT_LABEL: "deployment-auth",
            },
        },
        "data": data,
    }


def regenerated(which: str) -> dict[str, str]:
    """The Secret `data` patch that replaces one key (`primary` or `secondary`)."""
    return {KEY_FIELDS[which]: _b64(new_key())}
