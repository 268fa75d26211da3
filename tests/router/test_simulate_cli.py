"""`reconciler router simulate`: a PNG per trace, the summary as text and JSON, settings from a
repo's Deployment, and bad input refused before anything is written."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from reconciler.cli import main as cli
from reconciler.router import simplot, traces

REPO = Path(__file__).resolve().parents[2] / "manifests"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def simulate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["router", "simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_simulate_writes_a_valid_png_for_each_bundled_trace(tmp_path: Path) -> None:
    code, out, err = simulate("--trace", "all", "--out-dir", str(tmp_path), "--output", "json")
    assert code == 0, err
    summaries = json.loads(out)
    assert [s["trace"] for s in summaries] == list(traces.names())
    expected = (int(simplot.WIDTH_IN * simplot.DPI), int(simplot.HEIGHT_IN * simplot.DPI))
    for summary in summaries:
        plot = tmp_path / f"simulate-{summary['trace']}.png"
        assert summary["plot"] == str(plot)
        assert png_size(plot) == expected
        assert 20_000 < plot.stat().st_size < 200_000  # a real picture, small enough to commit
        with Image.open(plot) as image:
            image.verify()  # every chunk's CRC and the compressed data decode
        with Image.open(plot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 20  # lines drawn, not a blank canvas
        assert summary["offered"] == (
            summary["served"] + summary["dropped"] + summary["backend_timeout"]
        )
        assert summary["scale_ups"] >= 1 and summary["replica_seconds"] > 0


def test_text_summary_names_the_plot_and_the_numbers(tmp_path: Path) -> None:
    code, out, err = simulate("--trace", "spike", "--out-dir", str(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("trace spike: ") and lines[0].endswith(
        str(tmp_path / "simulate-spike.png")
    )
    assert "queued > 1 s:" in out and "replica-seconds used" in out and "sizing formula" in out


def test_settings_come_from_a_deployment_manifest_and_options_override_them(
    tmp_path: Path,
) -> None:
    # manifests/deployments/blue.yaml: min 1, max 5, target 70 %, polling every 10 s.
    code, out, err = simulate(
        "--trace", "step", "--out-dir", str(tmp_path), "--output", "json",
        "--deployment", f"{REPO}:blue",
    )  # fmt: skip
    assert code == 0, err
    [summary] = json.loads(out)
    assert summary["max_replicas"] == 5
    code, out, err = simulate(
        "--trace", "step", "--out-dir", str(tmp_path), "--output", "json",
        "--deployment", f"{REPO}:blue", "--max-instances", "3",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)[0]["max_replicas"] == 3


def test_a_fixed_deployment_is_simulated_at_its_instance_count(tmp_path: Path) -> None:
    # manifests/deployments/green.yaml: instance_count 2, no autoscaling.
    code, out, err = simulate(
        "--trace", "spike", "--out-dir", str(tmp_path), "--output", "json",
        "--deployment", f"{REPO}:green",
    )  # fmt: skip
    assert code == 0, err
    assert "deployment green is not autoscaled (scale type fixed): simulated at 2" in err
    [summary] = json.loads(out)
    assert (summary["scale_ups"], summary["scale_downs"], summary["max_replicas"]) == (0, 0, 2)


def test_an_invalid_repo_is_reported_and_nothing_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "blue.yaml").write_text("kind: Nope\nmetadata: {name: blue}\n", encoding="utf-8")
    out_dir = tmp_path / "plots"
    code, out, err = simulate(
        "--trace", "step", "--out-dir", str(out_dir), "--deployment", f"{repo}:blue"
    )
    assert code == 1 and out == ""
    assert "blue.yaml:1:" in err and "fix the repo first" in err
    assert not out_dir.exists()


def test_an_unknown_deployment_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = simulate("--trace", "step", "--deployment", f"{REPO}:nope")
    assert code == 2
    assert "no deployment named 'nope'" in err and "blue" in err


def test_a_bad_trace_file_is_reported_by_line_and_nothing_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_s,duration_s\n0,1\nlater,1\n3,-2\n", encoding="utf-8")
    out_dir = tmp_path / "plots"
    code, out, err = simulate("--trace", "step", "--trace", str(bad), "--out-dir", str(out_dir))
    assert code == 1 and out == ""
    assert f"{bad}:3: timestamp_s: 'later' is not a number" in err
    assert f"{bad}:4: duration_s: must be > 0, got -2" in err
    assert not out_dir.exists()  # not even the good trace's plot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-instances", "5", "--max-instances", "2"], "not a range"),
        (["--trace", "ramp", "--save-trace", "x.csv"], "needs exactly one --trace"),
        (["--trace", "all"], "two traces named step"),
    ],
)
def test_inconsistent_options_are_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = simulate("--trace", "step", "--out-dir", str(tmp_path), *args)
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_saved_bundled_trace_is_a_trace_file_that_gives_the_same_run(tmp_path: Path) -> None:
    saved = tmp_path / "spike.csv"
    code, first, err = simulate(
        "--trace", "spike", "--out-dir", str(tmp_path / "a"), "--output", "json",
        "--save-trace", str(saved),
    )  # fmt: skip
    assert code == 0, err
    assert saved.read_text(encoding="utf-8").startswith("timestamp_s,duration_s\n")
    code, second, err = simulate(
        "--trace", str(saved), "--out-dir", str(tmp_path / "b"), "--output", "json"
    )
    assert code == 0, err

    def numbers(text: str) -> dict[str, object]:
        [summary] = json.loads(text)
        return {k: v for k, v in summary.items() if k != "plot"}

    assert numbers(first) == numbers(second)


def test_without_matplotlib_the_command_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if matplotlib were missing: importing the plot module fails.
    monkeypatch.delattr("reconciler.router.simplot")
    monkeypatch.setitem(sys.modules, "reconciler.router.simplot", None)
    code, _, err = simulate("--trace", "step", "--out-dir", str(tmp_path))
    assert code == 1
    assert "pip install 'mlext-reconciler[sim]'" in err
    assert list(tmp_path.iterdir()) == []
