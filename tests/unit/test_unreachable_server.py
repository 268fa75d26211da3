"""A command against an API server it cannot reach: the first contact (`kube.reach`) gives up
within --request-timeout and the command exits 2 saying what it tried and what to do
(`connection.connect`), rather than retrying for an outage's two minutes. Against real sockets:
a closed port (refused), a listener that never accepts (no answer), and an HTTP server that
does answer. The retried outage once the server has answered: test_kube_outage.py and
tests/cluster/test_controlplane.py."""

from __future__ import annotations

import http.server
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import common, connection
from tests import helpers, tools

HINT = "is the cluster running? check with `kubectl cluster-info`"


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that listens but never accepts: the kernel completes the handshake, nothing
    ever answers (a server that hangs, or a firewall that drops)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "somewhere", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "somewhere",
    }
    path.write_text(yaml.safe_dump(config))
    return path


# --- kube.reach ------------------------------------------------------------------------------


def test_a_refused_connection_is_unreachable_at_once(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{helpers.free_port()}"
    cluster = kube.connect(str(kubeconfig(tmp_path, server)))
    assert cluster.origin == f"kubeconfig {tmp_path / 'kubeconfig'}, context somewhere"
    started = time.monotonic()
    with pytest.raises(kube.Unreachable) as failed:
        kube.reach(cluster, 5.0)
    assert time.monotonic() - started < 3  # not retried: refused is an answer from the host
    assert (failed.value.server, failed.value.why) == (server, "connection refused")


def test_a_server_that_never_answers_is_given_up_on_at_the_timeout(
    tmp_path: Path, blackhole: int
) -> None:
    cluster = kube.connect(str(kubeconfig(tmp_path, f"https://127.0.0.1:{blackhole}")))
    started = time.monotonic()
    with pytest.raises(kube.Unreachable) as failed:
        kube.reach(cluster, 0.5)
    assert time.monotonic() - started < 2
    assert failed.value.why == "no answer in 0.5 s"
    # A loop that goes on with the connection counts its outage from this first contact.
    assert cluster.outage.since is not None


def test_timeout_0_waits_as_for_an_outage(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{helpers.free_port()}"
    cluster = kube.connect(str(kubeconfig(tmp_path, server)), retry_for=1.0)
    with pytest.raises(kube.Unreachable) as failed:
        kube.reach(cluster, 0)
    assert failed.value.why == "connection refused"
    assert failed.value.waited >= 1
    assert str(failed.value).endswith("(connection refused); gave up after 1 s")


class _Answering(http.server.BaseHTTPRequestHandler):
    status = 403

    def do_GET(self) -> None:
        body = b'{"kind": "Status", "message": "said no"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "reached"), [(403, True), (401, True), (503, False)])
def test_any_answer_but_a_proxys_502_to_504_is_first_contact(
    tmp_path: Path, status: int, reached: bool
) -> None:
    handler = type("Handler", (_Answering,), {"status": status})
    with helpers.http_server(handler) as server:
        cluster = kube.connect(str(kubeconfig(tmp_path, server)))
        if reached:
            kube.reach(cluster, 5.0)  # the command meets a 401 or 403 at its own requests
            assert cluster.outage.since is None
        else:
            with pytest.raises(kube.Unreachable) as failed:
                kube.reach(cluster, 5.0)
            assert failed.value.why == "HTTP 503: said no"


# --- what a command says ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("why", "waited", "says"),
    [
        ("connection refused", 0.0, f"connection refused; {HINT}"),
        ("connection refused", 3.2, f"connection refused; gave up after 3 s; {HINT}"),
        (
            "TLS: CERTIFICATE_VERIFY_FAILED",
            0.0,
            "TLS: CERTIFICATE_VERIFY_FAILED; is the kubeconfig's certificate authority this "
            "server's? check with `kubectl cluster-info`",
        ),
        (
            "cannot resolve the host name: Name or service not known",
            0.0,
            "cannot resolve the host name: Name or service not known; is the server's host "
            "name right? check with `kubectl cluster-info`",
        ),
    ],
)
def test_the_message_says_what_was_tried_and_what_to_do(why: str, waited: float, says: str) -> None:
    err = kube.Unreachable("https://10.0.0.1:6443", why, waited)
    assert connection.unreachable(err, "kubeconfig /k, context c") == (
        f"cannot reach the Kubernetes API server at https://10.0.0.1:6443 "
        f"(kubeconfig /k, context c): {says}"
    )


@click.command()
@common.kube_options
def _timeout_of(kubeconfig: str | None, context: str | None) -> None:
    click.echo(common.request_timeout())


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ([], 5.0),
        (["--request-timeout", "1m"], 60.0),
        (["--request-timeout", "0"], 0.0),
        (["--request-timeout", "2.5s"], 2.5),
    ],
)
def test_request_timeout_is_kubectls_duration(given: list[str], seconds: float) -> None:
    result = CliRunner().invoke(_timeout_of, given)
    assert (result.exit_code, result.output) == (0, f"{seconds}\n")


def test_a_request_timeout_that_is_not_a_duration_is_a_usage_error() -> None:
    result = CliRunner().invoke(_timeout_of, ["--request-timeout", "soon"])
    assert result.exit_code == 2
    assert "Invalid value for '--request-timeout': 'soon' is not a duration" in result.output


def test_a_loop_logs_an_unreachable_server_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = f"https://127.0.0.1:{helpers.free_port()}"
    with caplog.at_level(logging.ERROR, logger="reconciler.cli.connection"):
        cluster = connection.connect(str(kubeconfig(tmp_path, server)), None, daemon=True)
    assert cluster.server == server
    assert caplog.messages == [
        f"cannot reach the Kubernetes API server at {server} (kubeconfig "
        f"{tmp_path / 'kubeconfig'}, context somewhere): connection refused; {HINT}; retrying"
    ]


# --- the real CLI ----------------------------------------------------------------------------

# Seconds: the 5 s default plus the interpreter's start-up (loading the kubernetes client)
# on a machine busy with other tests: generous, as the point is seconds rather than the two
# minutes of an outage's budget.
BOUND = 10.0


def run(config: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`reconciler ARGS --kubeconfig CONFIG`, and how long it took."""
    started = time.monotonic()
    done = helpers.reconciler(
        *args,
        "--kubeconfig",
        str(config),
        cwd=tools.ROOT,  # this checkout's package first on the path
        env={k: v for k, v in os.environ.items() if k != "RECONCILER_API_RETRY_SECONDS"},
        timeout=180,  # without the first contact a command retried for 2 minutes
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["plan", "manifests"],
        ["deployment", "status", "manifests"],
        ["router", "top", "--once"],
    ],
    ids=" ".join,
)
def test_a_command_against_a_closed_port_exits_2_within_seconds(
    tmp_path: Path, command: list[str]
) -> None:
    server = f"https://127.0.0.1:{helpers.free_port()}"
    config = kubeconfig(tmp_path, server)
    done, took = run(config, *command)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot reach the Kubernetes API server at {server} (kubeconfig {config}, "
        f"context somewhere): connection refused; {HINT}"
    )
    assert took < BOUND


def test_a_command_against_a_server_that_never_answers_exits_2_at_the_timeout(
    tmp_path: Path, blackhole: int
) -> None:
    server = f"https://127.0.0.1:{blackhole}"
    config = kubeconfig(tmp_path, server)
    done, took = run(config, "status")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot reach the Kubernetes API server at {server} (kubeconfig {config}, "
        f"context somewhere): no answer in 5 s; {HINT}"
    )
    # The wait is the timeout's: the same command's start-up and refusal (a closed port),
    # measured here, plus 5 s, with a margin for a busy machine.
    _, start_up = run(kubeconfig(tmp_path, f"https://127.0.0.1:{helpers.free_port()}"), "status")
    assert 5 <= took < start_up + 5 + 3
