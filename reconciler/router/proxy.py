"""The router: one server of scoring requests, put together from its parts.

`Router` is what the CLI starts and what `incluster` attaches the Kubernetes side to. It holds
the config in force (`served.Table`), the metrics, the admission rule, the `dispatch.Dispatcher`
that answers the scoring port and the `lifecycle.Lifecycle` that listens, stops, reloads and
probes; it applies each new config to them in one step.

Where a scoring request goes: `front` parses it and asks `Dispatcher.refuse` whether the router
has room (`admission`: refused at once with 503 + Retry-After while the router's own event loop
is past its capacity) -> `Dispatcher.handle` (`routes` reads the URL) -> the deployment's or
endpoint's `tokens.Authenticator` -> body size checks -> `balancer.Pool` for a backend (or the
queue, whose `max_queue_wait_ms` counts from the request's arrival; 429 when full, 503 when the
wait is over, both with Retry-After) -> `upstream.Client` sends it and the response comes back,
whole when it arrived at once, streamed otherwise -> the pool gets the backend back in a
`finally`, so in-flight counts stay exact whatever happens. The bytes on the wire are
`forwarding`'s; the router's own JSON answers are `replies'`; the HTTP server itself is `front`.

Endpoints: `POST /api/v1/endpoint/{endpoint}/score` (or `/score` with `Host: {endpoint}.{cname}`)
-> the endpoint's Authenticator -> its deployment, named by the `azureml-model-deployment`
header or else the next step of its `traffic.Plan` (which may also name mirror deployments that
get a copy) -> the deployment's path above, without its own auth check. The answer carries
`azureml-model-deployment: NAME`.

In-cluster hooks, used by the Kubernetes side (`router.incluster`): `Router.on_apply` listeners
hear of every config applied, `Router.set_backends(name, urls)` feeds endpoints discovered from
the deployment's Service, and `Router.set_authenticator` installs keys read from a deployment's
or endpoint's Secret. A reload keeps both unless the `backends` or `auth` section changed. All
of them run on the event loop thread: from a watch thread, go through
`loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from reconciler.router import admission, dispatch, lifecycle, metrics, routes, served, tokens
from reconciler.router import config as routerconfig


class Router:
    """A router server: its config in force, its request path, its life and its metrics."""

    def __init__(
        self,
        cfg: routerconfig.RouterConfig,
        config_path: str | Path | None = None,
        probe_interval: float = 1.0,
        reload_interval: float = 1.0,
        instance: str | None = None,
    ) -> None:
        self.table = served.Table(cfg)
        self.metrics = metrics.Metrics(self.table.pools)
        self.admission = admission.Admission(cfg.overload_lag_ms / 1000)
        self.dispatcher = dispatch.Dispatcher(self.table, self.metrics, self.admission)
        self.lifecycle = lifecycle.Lifecycle(
            self.table,
            self.dispatcher,
            self.metrics,
            self.apply,
            # Who this instance is in its load reports: the pod's name in a cluster.
            instance or socket.gethostname(),
            Path(config_path) if config_path is not None else None,
            (probe_interval, reload_interval),
        )
        # Called with the new config after each later apply (`config` holds the first): the
        # in-cluster side starts or stops following deployments' endpoints and Secrets here.
        self.on_apply: list[Callable[[routerconfig.RouterConfig], None]] = []

    @property
    def config(self) -> routerconfig.RouterConfig:
        return self.table.config

    @property
    def port(self) -> int:
        """The scoring port: the real one once started, when the config said 0."""
        return self.lifecycle.port

    @property
    def admin_port(self) -> int | None:
        return self.lifecycle.admin_port

    def apply(self, cfg: routerconfig.RouterConfig) -> None:
        """Make `cfg` the config in force, in one swap, keeping pools and backends that remain."""
        deployments, endpoints = self.table.deployments, self.table.endpoints
        self.lifecycle.drop(self.table.apply(cfg))
        self.admission.target_lag = cfg.overload_lag_ms / 1000
        if self.admission.target_lag <= 0.0:
            self.admission.shed_fraction = 0.0
        for name in deployments.keys() - self.table.deployments.keys():
            self.metrics.forget(name)
        for name in endpoints.keys() - self.table.endpoints.keys():
            self.metrics.forget_endpoint(name)
        for listener in self.on_apply:
            listener(cfg)

    def set_backends(self, name: str, urls: list[str]) -> None:
        """The backends discovered for a deployment (its Service's ready endpoints); idle
        connections to backends that left are closed."""
        self.lifecycle.drop(self.table.set_backends(name, urls))

    def set_authenticator(
        self, name: str, authenticator: tokens.Authenticator, kind: str = routes.DEPLOYMENT
    ) -> None:
        """Replace a deployment's or (kind ENDPOINT) an endpoint's auth (keys read from its
        Secret in-cluster)."""
        target = self.table.find(name, kind)
        if target is not None:
            target.auth = authenticator

    def authenticator(
        self, name: str, kind: str = routes.DEPLOYMENT
    ) -> tokens.Authenticator | None:
        """The auth in force for a deployment or (kind ENDPOINT) an endpoint."""
        target = self.table.find(name, kind)
        return target.auth if target is not None else None

    def reload(self) -> bool:
        """Re-read the config file if it or a file it names changed; True when applied."""
        return self.lifecycle.reload()

    async def start(self) -> None:
        await self.lifecycle.start()

    async def stop(self) -> None:
        await self.lifecycle.stop()
