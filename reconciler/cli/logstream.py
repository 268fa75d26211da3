"""Printing a workload's pod logs: what `reconciler job logs` and `deployment logs` share.

The commands (`workload`) find the workload and the label its pods carry; this module lists
those pods, asks `engine.podlogs` which containers' logs can be read (and why others cannot),
and prints them, as `kubectl logs` does: read once, or followed (`-f`) until every followed
container ends or Ctrl-C. With `-f`, a pod not there yet or still starting is waited for, saying
once on stderr what it waits for. Exit codes: 0 printed, 1 nothing to read (said why), 2 the API
server cannot be reached or refuses the request, 130 Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from reconciler import kube, objects
from reconciler.engine import podlogs

F = TypeVar("F", bound=Callable[..., Any])
POLL_SECONDS = 1.0  # how often `-f` looks again for a pod to start
QUIET_SECONDS = 3.0  # how long `-f` waits for a job's next pod before saying so
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


@dataclass(frozen=True)
class LogOptions:
    follow: bool
    tail: int | None
    container: str | None
    previous: bool
    pod: str | None


def log_options(command: F) -> F:
    """-f/--follow, --tail, -c/--container, -p/--previous and --pod (into `options`), as
    `kubectl logs` spells them."""
    options = [
        click.option("--pod", "pod", help="read this pod only (default: all of the workload's)"),
        click.option(
            "--previous",
            "-p",
            is_flag=True,
            help="the log of the container's run before its last restart (a crashed container)",
        ),
        click.option("--container", "-c", help="the container to read (default: the main one)"),
        click.option(
            "--tail",
            type=click.IntRange(min=-1),
            default=-1,
            show_default=True,
            help="lines from the end of each log to show (-1: all)",
        ),
        click.option(
            "--follow",
            "-f",
            is_flag=True,
            help="keep printing as lines come, until the containers end (or Ctrl-C)",
        ),
    ]
    for option in options:
        command = option(command)
    return command


def options_of(
    follow: bool, tail: int, container: str | None, previous: bool, pod: str | None
) -> LogOptions:
    if follow and previous:
        raise click.UsageError("--previous reads a container that ended: it cannot be followed")
    return LogOptions(follow, None if tail < 0 else tail, container, previous, pod)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """An API request that failed for good ends the command: exit 2 when the server was not
    reached or failed (5xx), 1 when it refused the request (the message says why); Ctrl-C
    ends it quietly, and so does a reader that stopped reading (`... | head`)."""
    try:
        yield
    except kube.KubeError as err:
        fail(str(err), 2 if err.status == 0 or err.status >= 500 else 1)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point stdout
        # at /dev/null first, as the Python documentation advises.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def node_or_none(cluster: kube.Cluster, name: str) -> objects.Object | None:
    """The Node, or None when it is gone or not readable (then the pods' own status decides)."""
    try:
        return kube.get(cluster, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    except kube.KubeError as err:
        if err.status != 403:
            raise
        return None


def show(
    cluster: kube.Cluster,
    namespace: str,
    selector: str,
    default_container: str,
    options: LogOptions,
    no_pod: Callable[[], tuple[str, bool]],
    *,
    always_prefix: bool,
    goes_on: Callable[[], bool] | None = None,
) -> None:
    """Print the logs of the pods `selector` picks in `namespace`. `no_pod()` says why there
    is no pod at all, and whether that passes by itself (`-f` then waits). With `-f` and
    `goes_on` (a job: is it still running?), pods that come after the followed ones ended (a
    job's retry) are followed in turn, a note on stderr between, until the workload is over."""
    container = options.container or default_container
    prefixed = always_prefix and options.pod is None
    if not options.follow:
        chosen = _select(cluster, namespace, selector, container, options, no_pod, set(), prefixed)
        assert chosen is not None, "without -f nothing is waited for"
        _notes(chosen)
        for stream in chosen.streams:
            text = kube.pod_log(
                cluster,
                namespace,
                stream.pod,
                stream.container,
                tail=options.tail,
                previous=options.previous,
            )
            if stream.prefix:
                for line in podlogs.lines(text, stream.prefix):
                    click.echo(line)
            else:
                click.echo(text, nl=False)
        return
    followed: set[str] = set()
    while True:
        found = _select(
            cluster, namespace, selector, container, options, no_pod, followed, prefixed
        )
        if found is None:
            return  # what was followed is all there is
        if followed:
            pods = ", ".join(s.pod for s in found.streams)
            click.echo(f"note: {pods} came after the pods followed so far ended", err=True)
        _notes(found)
        _follow(cluster, namespace, found.streams, options.tail)
        followed.update(s.pod for s in found.streams)
        if goes_on is None or not goes_on():
            return


def _notes(chosen: podlogs.Selection) -> None:
    for note in chosen.skipped:
        click.echo(f"note: {note}", err=True)


def _select(
    cluster: kube.Cluster,
    namespace: str,
    selector: str,
    container: str,
    options: LogOptions,
    no_pod: Callable[[], tuple[str, bool]],
    followed: set[str],
    prefixed: bool,
) -> podlogs.Selection | None:
    """The logs to read of the pods not `followed` yet. With `-f`, waits (saying once on
    stderr for what) while that passes by itself; None when it will not and something was
    followed already. Else exit 1 saying why there is nothing to read."""
    said = ""
    # After a pod ended, the Job controller takes a moment to say whether the job is over:
    # not worth a line unless the wait lasts.
    quiet_until = time.monotonic() + QUIET_SECONDS if followed else 0.0
    while True:
        pods = [
            pod
            for pod in kube.list_objects(cluster, "v1", "Pod", namespace, selector)
            if (pod.get("metadata") or {}).get("name") not in followed
        ]
        nodes = {}
        for name in podlogs.node_names(pods):
            node = node_or_none(cluster, name)
            if node is not None:
                nodes[name] = node
        chosen = podlogs.select(
            pods,
            nodes,
            container,
            pod_name=None if followed else options.pod,
            always_prefix=prefixed,
            previous=options.previous,
        )
        if chosen.streams:
            return chosen
        if followed and options.pod is not None:
            return None  # the one pod asked for was followed to its end
        reasons, waiting = list(chosen.skipped), chosen.waiting
        if not reasons:
            reason, waiting = no_pod()
            reasons = [reason]
        if followed and not waiting:
            return None
        why = "; ".join(reasons)
        if not (options.follow and waiting):
            fail(why)
        if why != said and time.monotonic() >= quiet_until:
            click.echo(f"waiting: {why}", err=True)
            said = why
        time.sleep(POLL_SECONDS)


_DONE = object()


def _follow(
    cluster: kube.Cluster, namespace: str, streams: tuple[podlogs.Stream, ...], tail: int | None
) -> None:
    """Print the streams' lines as they come, each whole (one reader thread per stream, one
    writer: this thread, which also takes Ctrl-C), until every stream has ended."""
    lines: queue.Queue[object] = queue.Queue()
    opened: list[kube.LogStream] = []
    interrupted = False

    def pump(stream: podlogs.Stream, log: kube.LogStream) -> None:
        try:
            for line in log:
                lines.put(stream.prefix + line.rstrip("\n"))
        except kube.KubeError as err:
            lines.put(err)
        finally:
            lines.put(_DONE)

    try:
        for stream in streams:
            log = kube.follow_pod_log(cluster, namespace, stream.pod, stream.container, tail=tail)
            opened.append(log)
            threading.Thread(target=pump, args=(stream, log), daemon=True).start()
        running = len(opened)
        while running:
            try:
                # A timeout, so that Ctrl-C is taken between two waits whatever the platform.
                item = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _DONE:
                running -= 1
            elif isinstance(item, kube.KubeError):
                click.echo(f"error: {item}", err=True)
                interrupted = True
            else:
                click.echo(item)
    except KeyboardInterrupt:
        for log in opened:
            log.close()
        sys.exit(INTERRUPTED)
    if interrupted:
        sys.exit(2)  # a stream was cut before its container ended
