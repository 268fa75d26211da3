"""The bundled inference router: `reconciler router serve` and friends.

What the product's router does: `docs/domain.md#the-inference-router`.

Modules, from the outside in (the `reconciler router` commands are `reconciler.cli.router`):
`config` (router.yaml, pure), `front` (the HTTP/1.1 server, httptools on uvloop), `admission` (how
much to refuse when the event loop is overloaded, pure), `proxy` (the router, put together from:
`served`, the deployments and endpoints in force; `routes`, a URL's one parse, pure; `dispatch`,
routing, auth, limits, forwarding, failover without replay, mirror copies; `lifecycle`, listening,
reload, backend probes, the lag measure), `traffic` (an endpoint's split and mirror schedule,
pure), `replies` (the router's own JSON answers: errors, 413, status), `tokens` (key, token and
none auth), `balancer` (pools, fewest-in-flight choice, the bounded queue, no I/O), `forwarding`
(HTTP/1.1 on the wire: headers passed on, the request head, bodies streamed with their limits,
responses relayed), `upstream` (the keep-alive HTTP/1.1 client to backends), `flow` (both sides'
flow control), `metrics` (Prometheus), `sizing` (the documented replica formula, pure), and the
autoscaler on a simulated clock: `traces`, `simulation` (pure) and `simplot` (`reconciler router
simulate`). In a cluster, `incluster` attaches the Kubernetes side to a `proxy.Router`: `discovery`
(backends and peers from EndpointSlices), keys from the deployments' and endpoints' Secrets, and
`coordinator` (load reports, the coordinator Lease, the scale subresource) driving `autoscaler`
(the scaling rule, pure).
"""
