"""The engine's progress events as the commands and the loop show them (`printers.events`):
the text lines users have always read, and one JSON object per line for tooling."""

from __future__ import annotations

import json
import logging

import pytest

from reconciler import objects
from reconciler.engine import events, owners, plans, record
from reconciler.printers import events as eventlines

KEY = objects.Key("apps/v1", "Deployment", "ns", "web")
PLAN = plans.Plan(
    (
        plans.Step(plans.Action.CREATE, KEY),
        plans.Step(plans.Action.UNCHANGED, objects.Key("v1", "Service", "ns", "web")),
        plans.Step(plans.Action.DELETE, objects.Key("v1", "ConfigMap", "ns", "old")),
    )
)
ADOPTED = owners.claim("ml", "https://bot:t0ken@example.com/b.git", "/a", "/a", adopt=True)


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            events.Planned("ml", PLAN),
            "extension ml: 1 to create, 0 to update, 1 to delete, 1 unchanged",
        ),
        (events.Suspended("ml"), "extension ml: suspended, nothing applied or pruned"),
        (events.Adopted("ml", ADOPTED), f"extension ml: {ADOPTED.message()}"),
        (
            events.Applied("ml", (("Deployment", 2), ("Service", 1))),
            "  applied 2 Deployment, 1 Service",
        ),
        (events.ApplyFailed("ml", 1, 3, (("ConfigMap", 3),)), "  failed: 1 of 3 (3 ConfigMap)"),
        (events.Pruned("ml", 4, 0), "  pruned 4 objects"),
        (events.Pruned("ml", 4, 1), "  pruned 4 objects, 1 failed"),
        (events.Waiting("ml", 120.0), "ml: waiting up to 120s for every component to be healthy"),
        (
            events.Progressing("ml", ("a: 0/1 ready", "b: job running")),
            "  waiting: a: 0/1 ready; b: job running",
        ),
        (events.Removed("ml"), "extension ml: removed from the cluster"),
    ],
)  # fmt: skip
def test_each_event_reads_as_one_line(event: events.Event, line: str) -> None:
    assert eventlines.text(event) == line
    document = json.loads(eventlines.as_json(event))
    assert document["extension"] == "ml" and "\n" not in eventlines.as_json(event)


def test_json_lines_name_the_event_and_carry_its_fields() -> None:
    def of(event: events.Event) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(eventlines.as_json(event))
        return loaded

    assert of(events.Planned("ml", PLAN)) == {
        "event": "planned", "extension": "ml", "create": 1, "update": 0, "unchanged": 1, "delete": 1
    }  # fmt: skip
    assert of(events.ApplyFailed("ml", 1, 3, (("ConfigMap", 3),))) == {
        "event": "apply-failed", "extension": "ml", "failed": 1, "of": 3, "kinds": {"ConfigMap": 3}
    }  # fmt: skip
    adopted = of(events.Adopted("ml", ADOPTED))
    assert adopted["owner"] == "/a" and "t0ken" not in json.dumps(adopted)
    outcome = record.Outcome(record.FAILED, "ApplyFailed", ("web: refused",))
    assert json.loads(eventlines.outcome_as_json("ml", outcome)) == {
        "event": "outcome", "extension": "ml", "state": "Failed", "reason": "ApplyFailed",
        "reasons": ["web: refused"],
    }  # fmt: skip


def test_the_loop_logs_each_event_as_its_text_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("reconciler.gitops.controller")
    with caplog.at_level(logging.INFO, logger=log.name):
        eventlines.logged(log)(events.Pruned("ml", 2, 0))
    assert caplog.messages == ["  pruned 2 objects"]
