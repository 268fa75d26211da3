"""The picture of an autoscaler simulation (`router.simulation`): a PNG written with matplotlib.

Four panels over simulated time, one sample per coordinator tick: the offered load (requests
per second, and its 10 s average); the replicas (desired, current, ready, and what the sizing
formula gives for each 10 s window's rate); the utilization the autoscaler saw against its
target; the router's queue and the requests it dropped (429 + 503). The summary's headline
numbers go in the title.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state).
matplotlib is the optional extra `sim` (`pip install 'mlext-reconciler[sim]'`); the command
imports this module only when it runs. The one I/O here is writing the file.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reconciler.router import simulation, sizing

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 9.0, 80  # 800 x 720 pixels: legible, and a small file


def _moving_average(values: list[float], times: list[float], seconds: float) -> list[float]:
    """The mean of the samples in the trailing `seconds` at each sample."""
    out: list[float] = []
    start = 0
    total = 0.0
    for i, value in enumerate(values):
        total += value
        while times[i] - times[start] >= seconds:
            total -= values[start]
            start += 1
        out.append(max(0.0, total / (i - start + 1)))  # no -1e-17 from the float sums
    return out


def figure(result: simulation.Result, summary: simulation.Summary) -> Figure:
    """The four panels of one run."""
    config = result.config
    scale = config.scale
    points = result.points
    t = [p.t for p in points]
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    load_ax, replica_ax, util_ax, queue_ax = fig.subplots(4, 1, sharex=True)

    rps = [p.offered_rps for p in points]
    load_ax.plot(t, rps, color="0.75", linewidth=0.6, label="per tick")
    window = simulation.RATE_WINDOW_S
    smooth = _moving_average(rps, t, window)
    load_ax.plot(t, smooth, color="tab:blue", linewidth=1.5, label=f"{window:g} s average")
    load_ax.set_ylabel("offered (req/s)")
    load_ax.legend(loc="upper right", fontsize="small")

    needed = [
        scale.clamp(
            sizing.replicas(
                rate,
                summary.mean_request_seconds,
                scale.target_utilization_percentage,
                config.max_concurrent,
            )
        )
        for rate in smooth
    ]
    replica_ax.step(t, needed, where="post", color="0.6", linestyle="--", label="sizing formula")
    replica_ax.step(t, [p.desired for p in points], where="post", label="desired")
    replica_ax.step(t, [p.ready for p in points], where="post", label="ready")
    replica_ax.axhline(scale.max_instances, color="tab:red", linewidth=0.8, linestyle=":")
    replica_ax.set_ylabel("replicas")
    replica_ax.set_ylim(0, scale.max_instances * 1.1 + 1)
    replica_ax.legend(loc="upper right", fontsize="small")

    util = [min(p.utilization, 10.0) * 100 for p in points]  # inf (no replica) drawn as 1000 %
    util_ax.plot(t, util, color="tab:purple", linewidth=0.8)
    util_ax.axhline(
        scale.target_utilization_percentage,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"target {scale.target_utilization_percentage}%",
    )
    util_ax.set_ylabel("utilization (%)")
    util_ax.set_ylim(0, max(200.0, min(max(util, default=0.0), 1000.0) * 1.05))
    util_ax.legend(loc="upper right", fontsize="small")

    queue_ax.plot(t, [p.queued for p in points], color="tab:orange", label="queued")
    dropped = [p.dropped for p in points]
    queue_ax.bar(t, dropped, width=scale.polling_interval, color="tab:red", label="dropped")
    queue_ax.set_ylabel("requests")
    queue_ax.set_xlabel("simulated time (s)")
    queue_ax.legend(loc="upper right", fontsize="small")

    for ax in (load_ax, replica_ax, util_ax, queue_ax):
        ax.grid(True, linewidth=0.3)
        ax.set_xlim(0, max(result.end, 1.0))

    ratio = (
        summary.replica_seconds / summary.formula_replica_seconds
        if summary.formula_replica_seconds
        else math.nan
    )
    fig.suptitle(
        f"trace {summary.trace}: {summary.offered} requests, {summary.dropped} dropped, "
        f"{summary.queued_longer} queued > {summary.slow_wait:g} s; replica-seconds "
        f"{summary.replica_seconds:,.0f} ({ratio:.2f} x the formula's "
        f"{summary.formula_replicas_in_bounds})"
        f"\nmin {scale.min_instances} max {scale.max_instances} target "
        f"{scale.target_utilization_percentage}% polling {scale.polling_interval:g} s, "
        f"pod start {config.start_delay:g} s, {config.max_concurrent} per replica, queue "
        f"{config.max_queue_length} / {config.max_queue_wait * 1000:g} ms",
        fontsize="medium",
    )
    return fig


def write(result: simulation.Result, summary: simulation.Summary, path: Path) -> None:
    """Write the run's PNG to `path` (its folder must exist)."""
    figure(result, summary).savefig(path, format="png")
