"""Options and helpers the commands share: --kubeconfig/--context/--request-timeout, `-o/--output`
and the JSON / YAML it prints (`output_option`, `print_data`), "did you mean" on a name lookup
(`lookup`), durations, colour (`colour_wanted`), and when the cyclic garbage collector is paused
(`collector_paused`: a one-shot command over a whole repo, `one_shot`, and the import of a
command's module, `lazygroup`).

Part of the command line (`reconciler.cli`): each command-group module decorates its commands with
`kube_options` and opens its cluster with `connection.connect`, so every command names and reports
a kubeconfig, and gives up on an API server it cannot reach, the same way. Nothing here needs the
kubernetes client (`connection` holds what does), so commands that run without a cluster start
without loading it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import click

from reconciler.model import problems

F = TypeVar("F", bound=Callable[..., Any])
REQUEST_TIMEOUT = "5s"  # the first contact's bound: kubectl fails about as fast
_REQUEST_TIMEOUT_KEY = "reconciler.request_timeout"  # in the click context's `meta`
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def colour_wanted() -> bool:
    """Colour only on a terminal, and never when `NO_COLOR` is set to anything (no-color.org),
    so piped output and a user who opted out get plain text."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """CPython's cyclic collector off inside the block, back as it was after it, however it
    ends: for work that leaves no garbage cycles behind, where the collector would only walk the
    growing heap again and again finding next to nothing. A one-shot command runs in it
    (`one_shot`), and so does the import of a command's module (`lazygroup`: modules, classes
    and functions are cycles, but none is garbage, so collecting during an import only costs
    start-up time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def one_shot(command: F) -> F:
    """Run `command`, a one-shot pass over a whole repo (validate, render, diff, plan, apply),
    with CPython's cyclic collector off. Its data (parsed files, models, rendered and live
    objects) holds no reference cycles, so reference counting frees what it drops, while the
    collector would walk the ever larger heap in full again and again finding next to nothing,
    which made it a large part of a no-op `apply` of a big repo. The process ends with the
    command; the GitOps loop, which does not, has its own rule (`gitops/heap.py`)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with collector_paused():
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]


def kube_options(command: F) -> F:
    """--kubeconfig, --context and --request-timeout, as kubectl spells them (every command that
    reads a cluster). The timeout is not passed to the command: `connection.connect` reads it
    (`request_timeout`), so no command carries it only to hand it on."""
    command = click.option(
        "--request-timeout",
        default=REQUEST_TIMEOUT,
        show_default=True,
        expose_value=False,
        callback=_keep_request_timeout,
        help="How long to wait for the API server's first answer before giving up (5s, 1m; "
        "0: no bound of its own, wait as for a server that restarts).",
    )(command)
    command = click.option("--context", help="kubeconfig context to use")(command)
    kubeconfig = click.option(
        "--kubeconfig",
        type=click.Path(exists=True, dir_okay=False),
        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config; in-cluster when absent)",
    )
    return kubeconfig(command)


def _keep_request_timeout(context: click.Context, _: click.Parameter, value: str) -> None:
    context.meta[_REQUEST_TIMEOUT_KEY] = parse_duration(value)


def request_timeout() -> float:
    """The running command's --request-timeout in seconds (the default outside a command, or
    for one without the option: the controller)."""
    context = click.get_current_context(silent=True)
    default = parse_duration(REQUEST_TIMEOUT)
    return float(context.meta.get(_REQUEST_TIMEOUT_KEY, default)) if context else default


def output_option(*choices: str, help: str | None = None) -> Callable[[F], F]:
    """`-o/--output` (into `output_format`), kubectl's spelling, the one output flag of every
    command (`-o` always names a format, never a file); the first choice is the default."""
    return click.option(
        "--output",
        "-o",
        "output_format",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help=help,
    )


def print_data(data: Any, output_format: str) -> None:
    """`data` (lists, mappings, strings, numbers) as `-o json` (indented) or `-o yaml` print it.
    YAML keeps the order the command built the keys in, as the JSON does."""
    if output_format == "json":
        click.echo(json.dumps(data, indent=2))
        return
    import yaml  # only a command asked for YAML pays for the import

    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


V = TypeVar("V")


def lookup(found: Mapping[str, V], name: str, what: str, where: str) -> V:
    """`found[name]`, or a usage error (exit 2) naming the nearest name, as `validate` does:
    `no deployment named 'bleu' in manifests/ (did you mean blue?)`."""
    if name not in found:
        hint = problems.did_you_mean(name, found)
        raise click.UsageError(f"no {what} named {name!r} {where}{hint}")
    return found[name]


def parse_duration(text: str) -> float:
    """`90s`, `5m`, `1h30m` or plain seconds -> seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 5m or 1h30m")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
