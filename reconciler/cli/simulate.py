"""`reconciler router simulate`: replay request traces through the router's autoscaler.

Thin like every command: traces in (`router.traces`: a bundled name or a CSV file), a run of
`router.simulation` per trace, a PNG per trace (`router.simplot`, needs the `sim` extra) and the
summary out as text, JSON or YAML (`-o`). Registered under the `router` group by `cli.router`.

The deployment's settings come from the options, or from a Deployment manifest in a repo
(`--deployment PATH:NAME`, validated by the model layer like `reconciler validate`); an option
given on the command line wins over the manifest. Every trace is read and checked before
anything runs or is written. Exit codes: 0 ok, 1 invalid input (a bad trace file or repo,
matplotlib missing), 2 usage error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from reconciler import source
from reconciler.cli import common
from reconciler.model import repo, workloads
from reconciler.router import autoscaler, config, coordinator, simulation, traces

_DEFAULTS: dict[str, Any] = {
    "min_instances": 1,
    "max_instances": 20,
    "target_utilization": workloads.DEFAULT_TARGET_UTILIZATION,
    "polling_interval": float(workloads.DEFAULT_POLLING_INTERVAL),
    "max_concurrent": workloads.DEFAULT_MAX_CONCURRENT_REQUESTS,
    "max_queue_length": config.DEFAULT_MAX_QUEUE_LENGTH,
    "max_queue_wait_ms": workloads.DEFAULT_MAX_QUEUE_WAIT_MS,
    "request_timeout_ms": workloads.DEFAULT_REQUEST_TIMEOUT_MS,
}


@dataclass(frozen=True)
class _Run:
    trace: traces.Trace
    result: simulation.Result
    summary: simulation.Summary
    plot: Path


def _deployment_settings(spec: str) -> dict[str, Any]:
    """The simulation settings a repo's Deployment gives (`PATH:NAME`)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise click.BadParameter("expected PATH_TO_REPO:NAME", param_hint="--deployment")
    if not Path(path).is_dir():
        raise click.BadParameter(f"{path} is not a folder", param_hint="--deployment")
    loaded = repo.load(source.DirectorySnapshot(path))
    if not loaded.valid:
        for problem in loaded.errors:
            click.echo(str(problem), err=True)
        click.echo(f"{len(loaded.errors)} problems: fix the repo first", err=True)
        sys.exit(1)
    found = loaded.repo.deployments.get(name)
    if found is None:
        known = ", ".join(sorted(loaded.repo.deployments)) or "none"
        raise click.BadParameter(
            f"no deployment named {name!r} in {path} (deployments: {known})",
            param_hint="--deployment",
        )
    scale = found.scale
    if scale.type != coordinator.AUTOSCALED:
        click.echo(
            f"deployment {name} is not autoscaled (scale type {scale.type}): simulated at "
            f"{scale.min_instances} replicas",
            err=True,
        )
    return {
        "min_instances": scale.min_instances,
        "max_instances": scale.max_instances,
        "target_utilization": scale.target_utilization_percentage,
        "polling_interval": float(scale.polling_interval),
        "max_concurrent": found.max_concurrent_requests_per_instance,
        "max_queue_wait_ms": found.max_queue_wait_ms,
        "request_timeout_ms": found.request_timeout_ms,
    }


def _load_traces(specs: tuple[str, ...]) -> list[traces.Trace]:
    wanted = [name for spec in specs for name in (traces.names() if spec == "all" else [spec])]
    loaded: list[traces.Trace] = []
    failed = False
    for spec in wanted:
        try:
            loaded.append(traces.resolve(spec))
        except traces.TraceError as err:
            failed = True
            for problem in err.problems:
                click.echo(str(problem), err=True)
    if failed:
        sys.exit(1)
    names = [trace.name for trace in loaded]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise click.BadParameter(
            f"two traces named {', '.join(doubled)}: their plots would overwrite each other",
            param_hint="--trace",
        )
    return loaded


def _text(run: _Run) -> str:
    s = run.summary
    ratio = s.replica_seconds / s.formula_replica_seconds if s.formula_replica_seconds else 0.0
    windowed = (
        s.replica_seconds / s.windowed_formula_replica_seconds
        if s.windowed_formula_replica_seconds
        else 0.0
    )
    window = f"{simulation.RATE_WINDOW_S:g} s"
    bounded = (
        f" ({s.formula_replicas_in_bounds} within the scale bounds)"
        if s.formula_replicas_in_bounds != s.formula_replicas
        else ""
    )
    return "\n".join(
        [
            f"trace {s.trace}: {s.offered} requests over {s.seconds:g} s -> {run.plot}",
            f"  served {s.served}, dropped {s.dropped} (queue full 429: {s.queue_full}, "
            f"queue timeout 503: {s.queue_timeout}), backend timeout 504: {s.backend_timeout}",
            f"  queued > {s.slow_wait:g} s: {s.queued_longer}; wait of served requests p50 "
            f"{s.wait_p50:.3f} s, p99 {s.wait_p99:.3f} s, max {s.wait_max:.3f} s",
            f"  scaling: {s.scale_ups} up, {s.scale_downs} down, at most {s.max_replicas} "
            f"replicas ({run.result.pods_created} pods created)",
            f"  replica-seconds used {s.replica_seconds:,.0f}; sizing formula at the peak "
            f"{s.peak_rps:g} rps ({window} windows) x {s.mean_request_seconds:.2f} s: "
            f"{s.formula_replicas} replicas{bounded} = {s.formula_replica_seconds:,.0f} "
            f"({ratio:.2f} x); "
            f"per {window} window: {s.windowed_formula_replica_seconds:,.0f} ({windowed:.2f} x)",
        ]
    )


@click.command()
@click.option(
    "--trace",
    "trace_specs",
    metavar="NAME|FILE",
    multiple=True,
    required=True,
    help=f"A trace file (CSV: timestamp_s,duration_s) or a bundled trace: "
    f"{', '.join(traces.names())}, or all of them with 'all'. Repeatable.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where the plots go, one simulate-TRACE.png per trace.",
)
@common.output_option("text", "json", "yaml")
@click.option(
    "--deployment",
    "deployment_spec",
    metavar="PATH:NAME",
    help="PATH_TO_REPO:NAME: take the settings from that Deployment manifest "
    "(scale_settings, request_settings); options given here override them.",
)
@click.option("--min-instances", type=click.IntRange(min=0), help="[default: 1]")
@click.option("--max-instances", type=click.IntRange(min=1), help="[default: 20]")
@click.option(
    "--target-utilization",
    type=click.IntRange(min=1, max=100),
    help="target_utilization_percentage. [default: 70]",
)
@click.option(
    "--polling-interval",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between the autoscaler's evaluations. [default: 1]",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    help="max_concurrent_requests_per_instance. [default: 1]",
)
@click.option(
    "--max-queue-length",
    type=click.IntRange(min=0),
    help="Requests the router queues before answering 429. [default: 1000]",
)
@click.option(
    "--max-queue-wait-ms",
    type=click.IntRange(min=0),
    help="How long a request may queue before a 503. [default: 500]",
)
@click.option(
    "--request-timeout-ms",
    type=click.IntRange(min=1),
    help="A request longer than this on its replica gets a 504. [default: 5000]",
)
@click.option(
    "--start-delay",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds from a scale-up to the new pod being ready.",
)
@click.option(
    "--initial-replicas",
    type=click.IntRange(min=1),
    help="Replicas at the start. [default: min instances]",
)
@click.option(
    "--until",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Simulate at least this many seconds (to watch the scale-down after a trace).",
)
@click.option(
    "--slow-wait",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="A queue wait longer than this many seconds counts as 'queued too long'.",
)
@click.option(
    "--save-trace",
    "save_trace",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the (single) trace as CSV here: a bundled trace in the file format.",
)
def simulate(
    trace_specs: tuple[str, ...],
    out_dir: Path,
    output_format: str,
    deployment_spec: str | None,
    start_delay: float,
    initial_replicas: int | None,
    until: float,
    slow_wait: float,
    save_trace: Path | None,
    **overrides: Any,
) -> None:
    """Replay request traces through the router's autoscaler on a simulated clock.

    For each trace, write a PNG of offered load, utilization, desired and ready replicas,
    queue and dropped requests over time, and print a summary (requests queued too long,
    replica-seconds used against the sizing formula's)."""
    try:
        from reconciler.router import simplot
    except ImportError as err:
        click.echo(
            f"the plot needs matplotlib ({err}): pip install 'mlext-reconciler[sim]'", err=True
        )
        sys.exit(1)
    values = dict(_DEFAULTS)
    if deployment_spec is not None:
        values.update(_deployment_settings(deployment_spec))
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        scale = autoscaler.Settings(
            min_instances=values["min_instances"],
            max_instances=values["max_instances"],
            target_utilization_percentage=values["target_utilization"],
            polling_interval=values["polling_interval"],
        )
        settings = simulation.Config(
            scale=scale,
            max_concurrent=values["max_concurrent"],
            max_queue_length=values["max_queue_length"],
            max_queue_wait=values["max_queue_wait_ms"] / 1000,
            request_timeout=values["request_timeout_ms"] / 1000,
            start_delay=start_delay,
            initial_replicas=initial_replicas,
            until=until,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    loaded = _load_traces(trace_specs)
    if save_trace is not None and len(loaded) != 1:
        raise click.BadParameter("needs exactly one --trace", param_hint="--save-trace")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for trace in loaded:
        result = simulation.run(trace, settings)
        summary = simulation.summarize(result, slow_wait)
        plot = out_dir / f"simulate-{trace.name}.png"
        simplot.write(result, summary, plot)
        runs.append(_Run(trace, result, summary, plot))
    if save_trace is not None:
        save_trace.write_text(traces.dumps(loaded[0]), encoding="utf-8")
    if output_format != "text":
        rows = [{**run.summary.as_json(), "plot": str(run.plot)} for run in runs]
        common.print_data(rows, output_format)
    else:
        click.echo("\n".join(_text(run) for run in runs))
