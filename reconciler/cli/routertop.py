"""`reconciler router top`: each deployment's replicas, utilization, queue and rate, live.

Reads the routers' own `/metrics` (Prometheus text, parsed with `prometheus_client`'s parser)
every `--interval` seconds and prints one row per deployment: replicas (the Deployment's, as
the scaling coordinator last read them, and the ones it wants), backends up, utilization (the
autoscaler's last figure), requests queued and in flight, and requests per second (the rise of
`router_requests_total` between two reads, all codes). With several router instances the
queue, in-flight and rate are summed; replicas and utilization come from the coordinator, the
only instance that exports them. The routers are `--url` (repeatable: each router's admin
port, where its /metrics is) or every ready router pod of the cluster (`admin_urls`: a container
running `reconciler router serve`, its admin port at its pod IP, which the local plane's host
routes to; the admin port is on no Service a client outside the cluster reaches).
`--once` reads twice, one interval apart, prints one table and exits. The `router` group
(`cli/router.py`) loads it when `router top` runs.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import click
from prometheus_client import parser

from reconciler import kube, objects
from reconciler.cli import common, connection
from reconciler.render import workloadobjects

Samples = dict[tuple[str, str, str], float]  # (metric, deployment, extra label) -> value


@dataclass(frozen=True)
class Row:
    deployment: str
    replicas: int | None
    desired: int | None
    backends: int
    utilization: float | None
    queued: int
    in_flight: int
    rps: float


def parse(text: str) -> Samples:
    """The samples top shows from one router's metrics page."""
    found: Samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            deployment = sample.labels.get("deployment")
            if deployment is None:
                continue
            extra = sample.labels.get("state") or sample.labels.get("code") or ""
            key = (sample.name, deployment, extra)
            found[key] = found.get(key, 0.0) + float(sample.value)
    return found


def merge(pages: Iterable[Samples]) -> Samples:
    """Several routers' samples as one: values summed."""
    total: Samples = defaultdict(float)
    for page in pages:
        for key, value in page.items():
            total[key] += value
    return dict(total)


def rows(before: Samples, after: Samples, seconds: float) -> list[Row]:
    """One row per deployment seen in `after`; the rate over `seconds` since `before`."""
    by: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for (metric, deployment, extra), value in after.items():
        by[deployment][(metric, extra)] = value
    requests_before: dict[str, float] = defaultdict(float)
    for (metric, deployment, _extra), value in before.items():
        if metric == "router_requests_total":
            requests_before[deployment] += value
    found = []
    for deployment, values in sorted(by.items()):
        requests = sum(v for (m, _), v in values.items() if m == "router_requests_total")
        rate = max(requests - requests_before[deployment], 0.0) / seconds if seconds > 0 else 0.0

        gauge = _reader(values)
        replicas = gauge("router_current_replicas")
        desired = gauge("router_desired_replicas")
        found.append(
            Row(
                deployment=deployment,
                replicas=None if replicas is None else int(replicas),
                desired=None if desired is None else int(desired),
                backends=int(gauge("router_backends", "up") or 0),
                utilization=gauge("router_utilization"),
                queued=int(gauge("router_queue_depth") or 0),
                in_flight=int(gauge("router_in_flight") or 0),
                rps=rate,
            )
        )
    return found


def _reader(values: Mapping[tuple[str, str], float]) -> Callable[..., float | None]:
    def gauge(metric: str, extra: str = "") -> float | None:
        return values.get((metric, extra))

    return gauge


def table(found: list[Row]) -> str:
    head = f"{'DEPLOYMENT':<16} {'REPLICAS':>8} {'DESIRED':>7} {'BACKENDS':>8} {'UTIL':>6} "
    head += f"{'QUEUE':>5} {'IN-FLIGHT':>9} {'RPS':>8}"
    lines = [head]
    for row in found:
        replicas = "-" if row.replicas is None else str(row.replicas)
        desired = "-" if row.desired is None else str(row.desired)
        util = "-" if row.utilization is None else f"{row.utilization * 100:.0f}%"
        lines.append(
            f"{row.deployment:<16} {replicas:>8} {desired:>7} {row.backends:>8} {util:>6} "
            f"{row.queued:>5} {row.in_flight:>9} {row.rps:>8.1f}"
        )
    return "\n".join(lines)


def _scrape(urls: list[str]) -> Samples:
    pages = []
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=2.0) as response:
                pages.append(parse(response.read().decode()))
        except OSError as err:
            click.echo(f"warning: {url}: {err}", err=True)
    return merge(pages)


def admin_urls(pods: Iterable[objects.Object]) -> list[str]:
    """`http://POD_IP:ADMIN_PORT` of each ready pod with a container running the router (its
    port named `admin`), in order of namespace and name."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if not ready or not status.get("podIP"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            command = container.get("command") or []
            if (
                tuple(command[: len(workloadobjects.ROUTER_COMMAND)])
                != workloadobjects.ROUTER_COMMAND
            ):
                continue
            port = next(
                (p.get("containerPort") for p in container.get("ports") or []
                 if p.get("name") == workloadobjects.ROUTER_ADMIN_PORT_NAME),
                None,
            )  # fmt: skip
            if port:
                meta = pod.get("metadata") or {}
                key = (str(meta.get("namespace")), str(meta.get("name")))
                found.append((key, f"http://{status['podIP']}:{port}"))
    return [url for _key, url in sorted(found)]


@click.command("top")
@click.option(
    "--url", "urls", multiple=True, help="A router's admin URL, where its /metrics is (repeatable)."
)
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one table (two reads an interval apart).")
@common.kube_options
def top(
    urls: tuple[str, ...],
    interval: float,
    once: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Each deployment's replicas, utilization, queue and requests/s from the routers."""
    targets = list(urls)
    if not targets:
        cluster = connection.connect(kubeconfig, context)
        try:
            targets = admin_urls(kube.list_objects(cluster, "v1", "Pod"))
        except kube.KubeError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
    if not targets:
        click.echo("error: no ready router pod found: pass --url, or apply a router",
                   err=True)  # fmt: skip
        sys.exit(2)
    before, then = _scrape(targets), time.monotonic()
    while True:
        time.sleep(interval)
        after, now = _scrape(targets), time.monotonic()
        text = table(rows(before, after, now - then))
        if once:
            click.echo(text)
            return
        click.echo("\x1b[2J\x1b[H" + text if sys.stdout.isatty() else text + "\n")
        before, then = after, now
