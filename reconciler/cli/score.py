"""`reconciler score NAME --data FILE`: one scoring request through the inference router.

NAME is an endpoint when a router's config lists one of that name (the request goes to
`/api/v1/endpoint/NAME/score`, which splits it by the endpoint's traffic, or with `--deployment`
to that deployment of it through the `azureml-model-deployment` header), else a deployment
(`/api/v1/service/NAME/score`). Finds what a client needs, as an operator would by hand: the
endpoint or deployment in the routers' config ConfigMaps (label
`app.kubernetes.io/component: router-config`: its router Service, auth mode and Secret), its
credential from that Secret (the primary key, or in token mode a one-hour token signed with its
signing key; never printed), and the router: `--url`, else a ready router pod of that Service,
found in the Service's EndpointSlices and reached at its pod IP (`router_url`). Prints the
model's answer.

Why the pod IP: the local plane's host has a route to every real node's pods (`localcluster.
podnetwork`), so a pod IP answers from the host whatever type the render gave the router's
Service (ClusterIP has no port on a node; a NodePort exists only for NodePort / LoadBalancer),
and nothing is added to what renders for a real cluster. Where pod IPs are not routed (a remote
cluster), `--url` names the router's Service address. Exit 0 on a
2xx answer, 1 on any other (its status and body on stderr), 2 when the endpoint or deployment,
router or credential cannot be found.

A 429 or 503 that carries Retry-After (the router's answers for load: a full queue, no backend
free within the queue wait, admission control) is tried again after the time it says, up to
RETRIES times (`post`), as the Azure SDK's retry policy does for the original product's clients:
right after `apply --wait`, a new pod is ready before the router has followed its EndpointSlice.
"""

from __future__ import annotations

import base64
import ipaddress
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import click
import yaml

from reconciler import kube, objects
from reconciler.cli import common, connection
from reconciler.model import problems
from reconciler.render import auth as authsecrets
from reconciler.router import served, tokens

ROUTER_CONFIG_LABEL = "app.kubernetes.io/component=router-config"
CONFIG_SUFFIX = "-config"
TOKEN_SECONDS = 3600
RETRIES = 3  # more tries of a 429 / 503 with Retry-After
MAX_RETRY_AFTER = 5.0  # seconds; an answer asking for longer is not waited for


@dataclass(frozen=True)
class Target:
    """An endpoint or a deployment as the router serves it."""

    name: str
    namespace: str
    router_namespace: str
    router_service: str
    auth_mode: str
    secret: str | None
    endpoint: bool = False
    deployments: tuple[str, ...] = ()  # an endpoint's (the keys of its traffic)

    @property
    def path(self) -> str:
        """The router's scoring route for the target."""
        kind = "endpoint" if self.endpoint else "service"
        return f"/api/v1/{kind}/{self.name}/score"


def find_target(config_maps: list[objects.Object], name: str) -> Target | None:
    """The endpoint called `name` in the routers' ConfigMaps (`router.yaml`), else the
    deployment; None when no router has either."""
    found: Target | None = None
    for config_map in config_maps:
        metadata = config_map.get("metadata") or {}
        text = (config_map.get("data") or {}).get("router.yaml") or ""
        config = yaml.safe_load(text) or {}
        service = str(metadata.get("name", "")).removesuffix(CONFIG_SUFFIX)
        for key in ("endpoints", "deployments"):
            for entry in config.get(key) or []:
                if entry.get("name") != name:
                    continue
                entry_auth = entry.get("auth") or {}
                target = Target(
                    name=name,
                    namespace=str(entry.get("namespace") or metadata.get("namespace")),
                    router_namespace=str(metadata.get("namespace")),
                    router_service=service,
                    auth_mode=str(entry_auth.get("mode", "none")),
                    secret=entry_auth.get("secret"),
                    endpoint=key == "endpoints",
                    deployments=tuple(entry.get("traffic") or ()),
                )
                if target.endpoint:
                    return target
                found = found or target
    return found


def served_names(config_maps: list[objects.Object]) -> set[str]:
    """Every endpoint and deployment name the routers' ConfigMaps list: what a NAME no router
    serves is matched against for a "did you mean"."""
    names: set[str] = set()
    for config_map in config_maps:
        config = yaml.safe_load((config_map.get("data") or {}).get("router.yaml") or "") or {}
        for key in ("endpoints", "deployments"):
            names.update(str(entry.get("name")) for entry in config.get(key) or [])
    return names


def credential(target: Target, secret: objects.Object | None) -> str | None:
    """The Authorization value for `target` from its Secret (None: no auth or no Secret)."""
    if target.auth_mode == "none":
        return None
    data = (secret or {}).get("data") or {}
    if target.auth_mode == "key":
        value = data.get(authsecrets.KEY_FIELDS["primary"])
        return f"Bearer {base64.b64decode(value).decode()}" if value else None
    value = data.get(authsecrets.SIGNING_KEY_FIELD)
    if not value:
        return None
    signing_key = base64.b64decode(value).decode()
    return f"Bearer {tokens.issue(target.name, signing_key, TOKEN_SECONDS).access_token}"


def deployment_problem(target: Target, deployment: str | None) -> str | None:
    """Why `--deployment` cannot go with `target`, or None."""
    if deployment is None:
        return None
    if not target.endpoint:
        return f"--deployment needs an endpoint: {target.name} is a deployment"
    if deployment not in target.deployments:
        shown = ", ".join(target.deployments) or "none"
        hint = problems.did_you_mean(deployment, target.deployments)
        return f"{deployment} is not a deployment of endpoint {target.name}{hint} (its: {shown})"
    return None


def router_url(slices: list[objects.Object]) -> str | None:
    """The URL of a ready router pod among a router Service's EndpointSlices: its pod IP and
    the serving port (`http`, else `https`), None when no endpoint is ready."""
    for item in sorted(slices, key=lambda s: str((s.get("metadata") or {}).get("name"))):
        ports = {str(p.get("name")): p.get("port") for p in item.get("ports") or []}
        scheme = next((n for n in ("http", "https") if ports.get(n)), None)
        if scheme is None:
            continue
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
                return f"{scheme}://{host}:{ports[scheme]}"
    return None


def find_router(cluster: kube.Cluster, target: Target) -> str | None:
    """A ready router pod's URL of the target's router Service (`router_url`)."""
    slices = kube.list_objects(
        cluster,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        target.router_namespace,
        f"kubernetes.io/service-name={target.router_service}",
    )
    return router_url(slices)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command()
@click.argument("name")
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.File("rb"),
    help="The request body (JSON, as the scoring script's run() takes it); - for stdin.",
)
@click.option(
    "--deployment",
    help="With an endpoint NAME: send the request to this deployment of it (the "
    f"{served.DEPLOYMENT_HEADER} header) instead of splitting by the endpoint's traffic.",
)
@click.option(
    "--url",
    help="The router's base URL (e.g. http://NODE:NODEPORT); default: a ready router pod's IP "
    "(routed from the host on the local plane).",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@common.kube_options
def score(
    name: str,
    deployment: str | None,
    data_file: click.utils.LazyFile,
    url: str | None,
    timeout: float,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Score NAME (an endpoint, else a deployment) through the inference router and print the
    model's answer."""
    body = data_file.read()
    cluster = connection.connect(kubeconfig, context)
    try:
        config_maps = kube.list_objects(cluster, "v1", "ConfigMap", "", ROUTER_CONFIG_LABEL)
        target = find_target(config_maps, name)
        if target is None:
            hint = problems.did_you_mean(name, served_names(config_maps))
            _fail(f"no router serves an endpoint or a deployment named {name}{hint}")
        assert target is not None
        problem = deployment_problem(target, deployment)
        if problem is not None:
            _fail(problem)
        secret = (
            kube.get_secret(cluster, target.namespace, target.secret)
            if target.secret and target.auth_mode != "none"
            else None
        )
        if url is None:
            url = find_router(cluster, target)
            if url is None:
                _fail(
                    f"no ready router pod of {target.router_namespace}/{target.router_service}; "
                    "pass --url with the router Service's address"
                )
    except kube.KubeError as err:
        _fail(str(err))
        return
    authorization = credential(target, secret)
    if target.auth_mode != "none" and authorization is None:
        what = "endpoint" if target.endpoint else "deployment"
        _fail(f"{what} {name}: no credential in Secret {target.namespace}/{target.secret}")
    assert url is not None
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    if deployment is not None:
        headers[served.DEPLOYMENT_HEADER] = deployment
    request = urllib.request.Request(
        f"{url.rstrip('/')}{target.path}", body, headers, method="POST"
    )
    try:
        click.echo(post(request, timeout).decode(errors="replace"))
    except urllib.error.HTTPError as err:
        click.echo(f"{err.code} {err.reason}: {err.read().decode(errors='replace')}", err=True)
        sys.exit(1)
    except OSError as err:
        _fail(f"cannot reach the router at {url}: {err}")


def post(
    request: urllib.request.Request,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The body of a 2xx answer to `request`; `HTTPError` for any other, after trying a 429 or
    503 with a Retry-After of at most MAX_RETRY_AFTER seconds again, up to RETRIES times."""
    retries = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as err:
            wait = retry_after(err.code, err.headers.get("Retry-After"))
            if wait is None or retries == RETRIES:
                raise
            retries += 1
            err.close()
            sleep(wait)


def retry_after(status: int, header: str | None) -> float | None:
    """Seconds to wait before trying again, or None: not a load answer (429 / 503) or no usable
    Retry-After (missing, an HTTP date, over MAX_RETRY_AFTER)."""
    if status not in (429, 503) or header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return seconds if 0.0 <= seconds <= MAX_RETRY_AFTER else None
