"""The documented replica sizing rule and the `reconciler router replicas` command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.router import sizing


def test_documented_example() -> None:
    assert sizing.replicas(20, 10, 70, 1) == 286


def test_exact_products_do_not_round_up() -> None:
    # 7 rps * 10 s / 0.7 is exactly 100; float arithmetic would say 100.00000000000001.
    assert sizing.replicas(7, 10, 70, 1) == 100
    assert sizing.replicas(0.1, 3, 30, 1) == 1


def test_requests_per_replica_divide() -> None:
    assert sizing.replicas(20, 10, 70, 2) == 143
    assert sizing.replicas(0, 10) == 0


@pytest.mark.parametrize(
    ("rps", "seconds", "target", "per"),
    [(-1, 1, 70, 1), (1, 1, 0, 1), (1, 1, 101, 1), (1, 1, 70, 0)],
)
def test_rejects_nonsense(rps: float, seconds: float, target: float, per: int) -> None:
    with pytest.raises(ValueError):
        sizing.replicas(rps, seconds, target, per)


def test_command_prints_the_formula() -> None:
    result = CliRunner().invoke(
        cli.main, ["router", "replicas", "--rps", "20", "--request-seconds", "10"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "286"
    result = CliRunner().invoke(
        cli.main,
        ["router", "replicas", "--rps", "20", "--request-seconds", "10", "--target", "50",
         "--per-replica", "4"],
    )  # fmt: skip
    assert result.output.strip() == "100"


def test_command_rejects_a_zero_target() -> None:
    result = CliRunner().invoke(
        cli.main, ["router", "replicas", "--rps", "1", "--request-seconds", "1", "--target", "0"]
    )
    assert result.exit_code == 2
