"""What the router serves: the deployments and endpoints in force, built from its config.

Sits under `dispatch` (which reads it for every request) and `proxy` (which applies a new
config and feeds it discovered backends and keys). `Table.apply` builds the new maps and swaps
them in at once, reusing each kept deployment's Pool (and, through `Pool.set_backends`, each
kept Backend with its in-flight count) and each kept auth and traffic Plan: a request holds the
objects it started with, so a reload never drops one, and a split that did not change goes on
where it was. No I/O here: what the swap leaves unused is handed back for the caller to close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reconciler.router import autoscaler, balancer, routes, tokens, traffic
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

# Names the deployment of an endpoint a request is for (the original product's header), and in
# an endpoint's answer the deployment that answered.
DEPLOYMENT_HEADER = "azureml-model-deployment"

Address = tuple[str, int]  # a backend's (host, port), what the upstream client keys on


@dataclass
class Deployment:
    """One deployment as the data path sees it; replaced whole on a reload."""

    config: routerconfig.Deployment
    pool: balancer.Pool
    auth: tokens.Authenticator
    timeout: float  # seconds from taking a backend to the end of the response
    queue_wait: float  # seconds a request may wait for a free backend
    answered_by: bytes = b""  # the DEPLOYMENT_HEADER line of an endpoint's answer


@dataclass
class Endpoint:
    """One endpoint as the data path sees it; replaced whole on a reload."""

    config: routerconfig.Endpoint
    auth: tokens.Authenticator
    plan: traffic.Plan  # kept across a reload that leaves the weights alone
    members: frozenset[str]  # the deployments the DEPLOYMENT_HEADER may name


class Table:
    """The config in force and the deployments and endpoints built from it."""

    def __init__(self, cfg: routerconfig.RouterConfig) -> None:
        self.config = cfg
        self.deployments: dict[str, Deployment] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.hosts: dict[str, Endpoint] = {}  # "{endpoint}.{cname}" -> endpoint, when cname set
        self.apply(cfg)

    def apply(self, cfg: routerconfig.RouterConfig) -> set[Address]:
        """Make `cfg` the config in force, in one swap; the backends no deployment keeps."""
        if self.deployments and _listening(cfg) != _listening(self.config):
            log.warning(
                "router config: listen, admin_listen and tls changes take effect after a restart"
            )
        before = self.addresses()
        deployments = _deployments(cfg, self.deployments)
        endpoints = _endpoints(cfg, self.endpoints)
        # One swap of both maps, with no await between: a request sees the old or the new ones.
        self.deployments = deployments
        self.endpoints = endpoints
        self.hosts = (
            {f"{name}.{cfg.cname}".lower(): e for name, e in endpoints.items()} if cfg.cname else {}
        )
        self.config = cfg
        return before - self.addresses()

    def set_backends(self, name: str, urls: list[str]) -> set[Address]:
        """The backends discovered for a deployment (its Service's ready endpoints); the ones
        no deployment keeps. Ignored for a deployment that is gone or has static backends by
        now (a reload came first)."""
        deployment = self.deployments.get(name)
        if deployment is None or deployment.config.backends is not None:
            return set()
        before = {(b.host, b.port) for b in deployment.pool.backends}
        deployment.pool.set_backends(urls)
        return before - self.addresses()

    def find(self, name: str, kind: str = routes.DEPLOYMENT) -> Deployment | Endpoint | None:
        """A deployment or (kind `routes.ENDPOINT`) an endpoint, by name: the kinds a URL
        names are the kinds looked up."""
        return (self.endpoints if kind == routes.ENDPOINT else self.deployments).get(name)

    def pools(self) -> dict[str, balancer.Pool]:
        return {name: d.pool for name, d in self.deployments.items()}

    def pool(self, name: str) -> balancer.Pool | None:
        deployment = self.deployments.get(name)
        return deployment.pool if deployment is not None else None

    def samples(self) -> dict[str, autoscaler.Sample]:
        """The load per deployment, as the autoscaler takes it (loop thread only: the pools are
        not thread-safe)."""
        return {name: autoscaler.Sample.of(d.pool.load()) for name, d in self.deployments.items()}

    def addresses(self) -> set[Address]:
        return {(b.host, b.port) for d in self.deployments.values() for b in d.pool.backends}


def _listening(cfg: routerconfig.RouterConfig) -> tuple[object, ...]:
    """What only a restart changes: the listening sockets and their TLS."""
    return (cfg.host, cfg.port, cfg.tls, cfg.admin)


def _deployments(
    cfg: routerconfig.RouterConfig, old: dict[str, Deployment]
) -> dict[str, Deployment]:
    new: dict[str, Deployment] = {}
    for item in cfg.deployments:
        prev = old.get(item.name)
        if prev is None:
            pool = balancer.Pool(item.max_concurrent_requests_per_instance, item.max_queue_length)
        else:
            pool = prev.pool
            pool.configure(item.max_concurrent_requests_per_instance, item.max_queue_length)
        if item.backends is not None:
            pool.set_backends(item.backends)
        elif prev is not None and prev.config.backends is not None:
            pool.set_backends([])  # static backends gone: discovery fills the pool from now on
        new[item.name] = Deployment(
            item,
            pool,
            _auth(item.name, item.auth, prev),
            timeout=item.request_timeout_ms / 1000,
            queue_wait=item.max_queue_wait_ms / 1000,
            answered_by=f"{DEPLOYMENT_HEADER}: {item.name}\r\n".encode("latin-1"),
        )
    return new


def _endpoints(cfg: routerconfig.RouterConfig, old: dict[str, Endpoint]) -> dict[str, Endpoint]:
    new: dict[str, Endpoint] = {}
    for spec in cfg.endpoints:
        was = old.get(spec.name)
        split = (spec.traffic, spec.mirror_traffic)
        if was is not None and (was.config.traffic, was.config.mirror_traffic) == split:
            plan = was.plan  # the split goes on where it was
        else:
            plan = traffic.Plan(spec.traffic, spec.mirror_traffic)
        new[spec.name] = Endpoint(spec, _auth(spec.name, spec.auth, was), plan, spec.members)
    return new


def _auth(
    name: str, spec: routerconfig.Auth, prev: Deployment | Endpoint | None
) -> tokens.Authenticator:
    if prev is not None and prev.config.auth == spec:
        return prev.auth  # keeps keys set from the Secret and the checked-token cache
    return tokens.Authenticator(spec.mode, name, spec.keys, spec.signing_key)
