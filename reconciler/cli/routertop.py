"""`reconciler router top`: each deployment's replicas, utilization, load, latency and errors, live.

Reads every router instance's own `/metrics` every `--interval` seconds and prints a timestamp
line and one row per deployment; what each figure is, and how several instances' figures are
merged (backends counted once per pod, rates and latency histograms added), is
`router.readings`' (pure). This module does the I/O: finding the instances, fetching their
pages, printing, and the terminal. The routers are `--url` (repeatable: each router's admin
port, where its /metrics is) or every ready router pod of the cluster (`admin_urls`: a container
running `reconciler router serve`, its admin port at its pod IP, which the local plane's host
routes to; the admin port is on no Service a client outside the cluster reaches).
`--once` reads twice, one interval apart, prints one sample and exits; `-o json|yaml` prints
the sample as data (`readings.Sample.as_dict`). Ctrl-C ends the live view with exit 0, as
`watch` does; an interrupted `--once`, which printed nothing, exits 130. The `router` group
(`cli/router.py`) loads it when `router top` runs.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
import urllib.request
from collections.abc import Iterable

import click
import yaml

from reconciler import kube, objects
from reconciler.cli import common, connection
from reconciler.render import workloadobjects
from reconciler.router import readings

COLUMNS = (
    ("DEPLOYMENT", "<16"), ("REPLICAS", ">8"), ("DESIRED", ">7"), ("BACKENDS", ">8"),
    ("UTIL", ">6"), ("QUEUE", ">5"), ("IN-FLIGHT", ">9"), ("RPS", ">8"), ("ERR", ">6"),
    ("P50", ">8"), ("P99", ">8"),
)  # fmt: skip


def table(found: readings.Sample) -> str:
    """The timestamp line, then one row per deployment (`-`: not known, e.g. no request in
    the interval, or a deployment the autoscaler does not scale)."""
    when = found.at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        f"{when}  every {found.interval_seconds:.1f}s  "
        f"routers {found.routers_answered}/{found.routers_read}",
        _line(title for title, _ in COLUMNS),
    ]
    for row in found.rows:
        lines.append(
            _line(
                (
                    row.deployment,
                    _or_dash(row.replicas),
                    _or_dash(row.desired_replicas),
                    str(row.backends_up),
                    _percent(row.utilization_ratio, 0),
                    str(row.queued_requests),
                    str(row.in_flight_requests),
                    f"{row.requests_per_second:.1f}",
                    _percent(row.error_ratio, 1),
                    _duration(row.latency_p50_seconds),
                    _duration(row.latency_p99_seconds),
                )
            )
        )
    return "\n".join(lines)


def _line(cells: Iterable[str]) -> str:
    return " ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, COLUMNS, strict=True))


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _percent(ratio: float | None, decimals: int) -> str:
    return "-" if ratio is None else f"{ratio * 100:.{decimals}f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 10:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.0f}s"


def _read(urls: list[str]) -> dict[str, readings.Page]:
    """Each instance's page by URL; one that does not answer is left out, with a warning."""
    pages = {}
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=2.0) as response:
                pages[url] = readings.read(response.read().decode())
        except OSError as err:
            click.echo(f"warning: {url}: {err}", err=True)
    return pages


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
@click.option("--once", is_flag=True, help="Print one sample (two reads an interval apart).")
@common.output_option("table", "json", "yaml")
@common.kube_options
def top(
    urls: tuple[str, ...],
    interval: float,
    once: bool,
    output_format: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Each deployment's replicas, utilization, load, requests/s, errors and latency from the
    routers."""
    try:
        _top(list(urls), interval, once, output_format, kubeconfig, context)
    except KeyboardInterrupt:
        # Ctrl-C is how a live view ends: exit 0 like `watch`, without click's "Aborted!".
        # `--once` stopped before its one sample did not do its job: 130, as for SIGINT.
        if once:
            sys.exit(130)
        if output_format == "table" and sys.stdout.isatty():
            click.echo()


def _top(
    targets: list[str],
    interval: float,
    once: bool,
    output_format: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
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
    before, then = _read(targets), time.monotonic()
    while True:
        time.sleep(interval)
        after, now = _read(targets), time.monotonic()
        found = readings.sample(
            before, after, now - then, datetime.datetime.now(datetime.UTC), len(targets)
        )
        if output_format == "json":
            # One line per sample in the live view (JSON Lines), so a pipe can read each.
            click.echo(json.dumps(found.as_dict(), indent=None if not once else 2))
        elif output_format == "yaml":
            click.echo(yaml.safe_dump(found.as_dict(), sort_keys=False, explicit_start=True),
                       nl=False)  # fmt: skip
        elif once or not sys.stdout.isatty():
            click.echo(table(found) + ("" if once else "\n"))
        else:
            click.echo("\x1b[2J\x1b[H" + table(found))
        if once:
            return
        before, then = after, now
