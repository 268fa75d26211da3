"""The loop's metrics as a scraper reads them: each extension's ready and provisioning-state
gauges and reconcile time, build_info, and no series left behind by an extension that left.

The loop ticks for real over the example repo, with the planner and the executor standing in
for the cluster (as in `test_owners`); /metrics is scraped from the HTTP server the loop
serves, and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import parser

from reconciler import source
from reconciler.engine import inventory, plans, reconcile, record, recordstore
from reconciler.gitops import controller, httpserver, loopmetrics
from tests.helpers import example_repo, stand_in_for_the_engine

P = loopmetrics.PREFIX
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Engine:
    """Plans and carries out the scripted extensions: `outcomes` by name for the next tick
    (a name with None is planned but left to the next tick), `removed` the retired ones."""

    def __init__(self) -> None:
        self.outcomes: dict[str, record.Outcome | None] = {}
        self.removed: set[str] = set()

    def names(self, *args: Any) -> list[str]:
        return sorted(self.outcomes)

    def plan_each(self, *args: Any, **kwargs: Any) -> Iterator[reconcile.ExtensionPlan]:
        nothing = inventory.PruneDecision(delete=(), kept_unowned=())
        for name in sorted(self.outcomes):
            yield reconcile.ExtensionPlan(
                name, plans.Plan(()), [], [], frozenset(), nothing, None, {}
            )

    def carry_out_all(self, *args: Any, **kwargs: Any) -> list[reconcile.ExtensionResult]:
        planned: Iterable[reconcile.ExtensionPlan] = args[2]
        results = []
        for extension_plan in planned:
            outcome = self.outcomes[extension_plan.name]
            if outcome is None:
                break  # a newer trigger: the rest is left to the next tick
            result = reconcile.ExtensionResult(extension_plan.name, extension_plan.plan, outcome)
            result.seconds = 0.3
            result.removed = extension_plan.name in self.removed
            results.append(result)
        return results


class _NoCache:
    def stats(self) -> tuple[int, int, dict[str, int]]:
        return 0, 0, {}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> _Engine:
    fake = _Engine()
    stand_in_for_the_engine(monkeypatch, fake)
    return fake


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[controller.Controller, str]]:
    """A loop over the example repo and the URL of the /metrics it serves."""
    root = example_repo(tmp_path, "ml", "ml-system", jobs=False)
    loop = controller.Controller(
        None,  # type: ignore[arg-type]
        lambda: source.DirectorySnapshot(root),
        controller.Settings(),
        loopmetrics.ControllerMetrics("1.2.3", COMMIT),
        cache=_NoCache(),  # type: ignore[arg-type]
    )
    endpoints = httpserver.Endpoints(
        metrics=loop.metrics.exposition,
        healthy=lambda: True,
        ready=lambda: True,
        trigger=loop.trigger,
        routes_by_address={"127.0.0.1:0": {"metrics"}},
    )
    servers = httpserver.Servers(endpoints)
    host, port = servers.addresses["127.0.0.1:0"]
    try:
        yield loop, f"http://{host}:{port}/metrics"
    finally:
        servers.close()


Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(url: str) -> dict[Sample, float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[Sample, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def naming(found: dict[Sample, float], extension: str) -> set[str]:
    """The metrics with a series of `extension`."""
    return {name for name, labels in found if ("extension", extension) in labels}


SUCCEEDED = record.Outcome(record.SUCCEEDED, "Succeeded")
PENDING = record.Outcome(record.PENDING, "Progressing", ("Deployment/ml/x: 0/1 available",))


def test_each_extension_has_its_ready_and_state_gauges_and_its_reconcile_time(
    engine: _Engine, served: tuple[controller.Controller, str]
) -> None:
    loop, url = served
    engine.outcomes = {"ready-one": SUCCEEDED, "rolling-out": PENDING}
    assert loop.tick().result == "success"
    found = scrape(url)
    assert value(found, f"{P}_extension_ready", extension="ready-one") == 1
    assert value(found, f"{P}_extension_ready", extension="rolling-out") == 0
    for state in ("Pending", "Succeeded", "Failed"):
        wanted = 1 if state == "Pending" else 0
        got = value(
            found, f"{P}_extension_provisioning_state", extension="rolling-out", state=state
        )
        assert got == wanted, state
    duration = f"{P}_reconcile_duration_seconds"
    assert value(found, f"{duration}_count", extension="ready-one") == 1
    assert value(found, f"{duration}_sum", extension="ready-one") == pytest.approx(0.3)
    assert value(found, f"{duration}_bucket", extension="ready-one", le="0.5") == 1
    assert value(found, f"{P}_tick_duration_seconds_count", result="success") == 1
    assert value(found, f"{P}_reconciles_total", result="success") == 1
    python = next(dict(labels)["python_version"] for name, labels in found if "build_info" in name)
    build = value(found, f"{P}_build_info", version="1.2.3", commit=COMMIT, python_version=python)
    assert build == 1


def test_an_extension_that_leaves_leaves_every_series_and_one_left_to_the_next_tick_keeps_them(
    engine: _Engine, served: tuple[controller.Controller, str]
) -> None:
    loop, url = served
    failed = record.Outcome(record.FAILED, "ApplyFailed", ("Deployment/ml/x: refused",))
    engine.outcomes = {"a-gone": failed, "c-later": SUCCEEDED, "b-stays": SUCCEEDED}
    loop.tick()
    before = scrape(url)
    assert value(before, f"{P}_apply_errors_total", extension="a-gone", kind="Deployment") == 1
    assert {f"{P}_extension_ready", f"{P}_apply_errors_total"} <= naming(before, "a-gone")

    # "a-gone" left the repo and was retired; a newer trigger leaves "c-later" to the next tick.
    engine.outcomes = {"a-gone": SUCCEEDED, "c-later": None, "b-stays": SUCCEEDED}
    engine.removed = {"a-gone"}
    assert loop.tick().result == "superseded"
    after = scrape(url)
    assert naming(after, "a-gone") == set()
    assert naming(after, "c-later") == naming(before, "c-later") != set()
    assert value(after, f"{P}_reconcile_duration_seconds_count", extension="b-stays") == 2

    # b-stays is neither in the repo nor recorded any more (its record deleted by hand).
    engine.outcomes = {"c-later": SUCCEEDED}
    loop.tick()
    assert naming(scrape(url), "b-stays") == set()


def test_a_rejected_revision_marks_the_extensions_it_recorded_failed(
    engine: _Engine,
    served: tuple[controller.Controller, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, url = served
    good = loop.fetch
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("kind: [unclosed\n")
    loop.fetch = lambda: source.DirectorySnapshot(broken)
    written = recordstore.Recorded(written=["ml"], refused=[])
    monkeypatch.setattr(reconcile, "record_problems", lambda *a, **k: written)
    assert loop.tick().result == "invalid"
    found = scrape(url)
    assert value(found, f"{P}_extension_ready", extension="ml") == 0
    assert value(found, f"{P}_extension_provisioning_state", extension="ml", state="Failed") == 1

    # The next good revision no longer declares it: retired, its series go with it.
    loop.fetch = good
    engine.outcomes = {"ml": SUCCEEDED}
    engine.removed = {"ml"}
    assert loop.tick().result == "success"
    assert naming(scrape(url), "ml") == set()
