"""The bound on waiting for an API server that stopped answering (`kube.Outage`), shared by
every request of a connection, with an injected clock; and how a command is told that bound
(`$RECONCILER_API_RETRY_SECONDS`). Against a real dead API server:
tests/cluster/test_controlplane.py."""

from __future__ import annotations

import click
import pytest

from reconciler.cli import connection
from reconciler.kube import LAST_ATTEMPT, LONGEST_ATTEMPT, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_in_flight_share_one_budget_from_the_first_failure() -> None:
    clock = Clock()
    outage = Outage(120.0, clock)
    first, later = 1000.0, 1090.0  # a request started 90 s after the other
    outage.unreachable(first)
    clock.now = 1100.0
    # The later request does not get two minutes of its own: 20 s are left for both.
    assert outage.remaining(later) == outage.remaining(first) == 20.0
    clock.now = 1120.0
    assert outage.spent(first) and outage.spent(later)
    # A request begun after the budget is spent gives up after its one attempt.
    assert outage.spent(1120.0)
    assert outage.attempt_timeout(1120.0) == LAST_ATTEMPT


def test_an_answer_ends_the_outage_and_a_new_one_gets_a_new_budget() -> None:
    clock = Clock()
    outage = Outage(120.0, clock)
    outage.unreachable(1000.0)
    clock.now = 1200.0
    outage.answered()
    assert outage.since is None and outage.waited() == 0.0
    assert outage.remaining(1200.0) == 120.0  # a request's own bound only
    outage.unreachable(1201.0)
    clock.now = 1211.0
    assert outage.waited() == 10.0
    assert outage.remaining(1200.0) == 109.0  # its own bound ends first


def test_the_earliest_failed_attempt_starts_the_outage() -> None:
    outage = Outage(60.0, Clock())
    outage.unreachable(1005.0)
    outage.unreachable(1000.0)  # slower to fail, but it started first
    outage.unreachable(1010.0)
    assert outage.since == 1000.0


def test_one_request_per_outage_says_what_it_waits_for() -> None:
    outage = Outage(60.0, Clock())
    assert not outage.announce()  # nothing to wait for
    outage.unreachable(1000.0)
    assert [outage.announce() for _ in range(3)] == [True, False, False]
    outage.answered()
    outage.unreachable(1001.0)
    assert outage.announce()


def test_an_attempt_never_outlasts_the_time_left() -> None:
    clock = Clock()
    outage = Outage(120.0, clock)
    assert outage.attempt_timeout(1000.0) == LONGEST_ATTEMPT
    clock.now = 1100.0
    assert outage.attempt_timeout(1000.0) == 20.0
    clock.now = 1118.0
    assert outage.attempt_timeout(1000.0) == LAST_ATTEMPT


def test_the_bound_comes_from_the_environment() -> None:
    assert connection.retry_seconds({}) == 120.0
    assert connection.retry_seconds({connection.RETRY_ENV: "3"}) == 3.0
    assert connection.retry_seconds({connection.RETRY_ENV: " 0 "}) == 0.0


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_a_bound_that_is_not_seconds_is_a_usage_error(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended, click.Context(click.Command("x")):
        connection.retry_seconds({connection.RETRY_ENV: raw})
    assert ended.value.code == 2
    assert capsys.readouterr().err == (
        f"error: RECONCILER_API_RETRY_SECONDS={raw!r}: not a number of seconds (0 or more)\n"
    )
