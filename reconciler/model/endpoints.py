"""Online endpoints as typed models: one scoring URL in front of deployments.

The product's rules for them: `docs/domain.md#online-endpoints`.

A recognised, schema-valid Endpoint manifest (the CLI v2 `kubernetesOnlineEndpoint` shape, a
`kind: Endpoint` document, or the older endpoint document with a `deployments:` list) becomes an
`Endpoint` here, its auth mode normalised (`aml_token` is the router's `token`, any case). A
deployment joins an endpoint with `endpoint_name`; one that names none keeps the meaning it has
always had, its own endpoint of the same name, which `effective` adds (an implicit endpoint: all
of the traffic, the deployment's own auth). The rules across manifests (traffic to deployments of
the endpoint, sums, mirrors, names that collide) are in `repo`.

Pure: works on manifests and deployment models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import manifests, problems, workloads

AUTH_MODES = {"key": "key", "aml_token": "token", "token": "token", "none": "none"}
KUBERNETES = "kubernetes"
# The original product's limit: at most half of an endpoint's requests are copied to a mirror.
MAX_MIRROR_PERCENT = 50


@dataclass(frozen=True)
class Endpoint:
    """An endpoint: who may call it (`auth_mode`), how its live traffic is split over its
    deployments (percent each) and which of them get a copy of a share of it."""

    name: str
    auth_mode: str  # "key" | "token" | "none"
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int]
    compute: str | None
    tags: Mapping[str, str]
    description: str | None
    manifest: manifests.Manifest | None = field(compare=False, repr=False)

    @property
    def implicit(self) -> bool:
        """The endpoint a deployment with no `endpoint_name` stands behind on its own."""
        return self.manifest is None


def build(manifest: manifests.Manifest) -> tuple[Endpoint, list[problems.Problem]]:
    """A schema-valid Endpoint manifest -> `Endpoint`, checking its auth mode and type."""
    fields = manifest.fields
    found: list[problems.Problem] = []
    raw_mode = str(fields.get("auth_mode", "key"))
    auth_mode = AUTH_MODES.get(raw_mode.lower())
    if auth_mode is None:
        found.append(
            manifest.problem(
                ("auth_mode",),
                f"unknown auth mode {raw_mode!r}: expected key, aml_token, token or none"
                f"{problems.did_you_mean(raw_mode.lower(), tuple(AUTH_MODES))}",
            )
        )
        auth_mode = "key"
    kind = fields.get("type")
    if kind is not None and str(kind).lower() != KUBERNETES:
        found.append(
            manifest.problem(
                ("type",),
                f"{kind!r} endpoints are not reconciled: only Kubernetes endpoints are (type: "
                "kubernetes, or no type), served by the extension's inference router",
            )
        )
    compute = fields.get("compute")
    endpoint = Endpoint(
        name=manifest.name,
        auth_mode=auth_mode,
        traffic=_percents(fields.get("traffic")),
        mirror_traffic=_percents(fields.get("mirror_traffic")),
        compute=str(compute).removeprefix("azureml:") if compute else None,
        tags={str(k): workloads.scalar_text(v) for k, v in (fields.get("tags") or {}).items()},
        description=fields.get("description"),
        manifest=manifest,
    )
    return endpoint, found


def implicit(deployment: workloads.Deployment) -> Endpoint:
    """The endpoint of a deployment that names none: its own name, all of the traffic."""
    return Endpoint(
        name=deployment.name,
        auth_mode=deployment.auth_mode,
        traffic={deployment.name: 100},
        mirror_traffic={},
        compute=deployment.compute,
        tags={},
        description=None,
        manifest=None,
    )


def effective(
    repo_endpoints: Mapping[str, Endpoint], deployments: Iterable[workloads.Deployment]
) -> list[Endpoint]:
    """The declared endpoints and the implicit one of every deployment with no
    `endpoint_name`, sorted by name."""
    found = dict(repo_endpoints)
    for deployment in deployments:
        if deployment.endpoint_name is None:
            found.setdefault(deployment.name, implicit(deployment))
    return [found[name] for name in sorted(found)]


def members(endpoint: Endpoint, deployments: Iterable[workloads.Deployment]) -> list[str]:
    """The names of the deployments behind `endpoint`, sorted."""
    if endpoint.implicit:
        return [endpoint.name]
    return sorted(d.name for d in deployments if d.endpoint_name == endpoint.name)


def _percents(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (value or {}).items()}
