"""`reconciler diff` option rules that need no git repo or cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli


@pytest.mark.parametrize("options", [[], ["--base", "HEAD", "--cluster"]])
def test_exactly_one_of_base_and_cluster(tmp_path: Path, options: list[str]) -> None:
    result = CliRunner().invoke(cli.main, ["diff", str(tmp_path), *options])
    assert result.exit_code == 2
    assert "exactly one of --base REF and --cluster" in result.output
