"""The loop's log as `--log-format json` writes it: one JSON object per line, with the time, the
level, the logger, the message and the fields of the engine's event (`printers.logformat`)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest

from reconciler.engine import events
from reconciler.printers import events as eventlines
from reconciler.printers import logformat
from tests import tools


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logformat.JsonFormatter())
    log = logging.getLogger("test.logformat")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log, out
    log.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_an_event_is_one_json_line_with_its_message_and_its_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = json_log
    emit = eventlines.logged(log)
    emit(events.Applied("ml", (("Deployment", 2), ("Service", 1))))
    emit(events.Pruned("ml", 4, 1))
    applied, pruned = lines(out)
    assert applied == {
        "time": applied["time"],
        "level": "info",
        "logger": "test.logformat",
        "message": "  applied 2 Deployment, 1 Service",
        "event": "applied",
        "extension": "ml",
        "kinds": {"Deployment": 2, "Service": 1},
    }
    assert list(applied)[:4] == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(applied["time"]))
    assert datetime.fromisoformat(str(applied["time"])).tzinfo is not None
    assert (pruned["event"], pruned["deleted"], pruned["failed"]) == ("pruned", 4, 1)


def test_a_plain_line_and_a_traceback_stay_one_json_object_each(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = json_log
    log.warning("drift %s: %d objects\ndiffered", "reverted", 3)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("reconcile failed")
    # A field may not pass for one of the line's own keys.
    log.info("mine", extra={logformat.FIELDS: {"message": "not this", "extension": "ml"}})
    warned, failed, mine = lines(out)
    assert warned["level"] == "warning"
    assert warned["message"] == "drift reverted: 3 objects\ndiffered"
    assert (failed["level"], failed["message"]) == ("error", "reconcile failed")
    assert "ValueError: boom" in str(failed["exception"])
    assert (mine["message"], mine["extension"]) == ("mine", "ml")


# `reconciler sync` in a fresh interpreter, with the loop and the cluster stood in for: the loop
# logs an event, an error with its traceback, a debug line and a warning.
_SYNC = """
import logging, sys, warnings
from reconciler.cli import connection, main
from reconciler.engine import events
from reconciler.gitops import controller, runtime
from reconciler.printers import events as eventlines

def run(settings, cluster, identities):
    log = logging.getLogger("reconciler.gitops.controller")
    eventlines.logged(log)(events.Applied("ml", (("Deployment", 2),)))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("reconcile failed")
    log.debug("not at INFO")
    warnings.warn("careful")
    return controller.TickOutcome("success", "abc123")

runtime.run = run
connection.connect = lambda kubeconfig, context, daemon=False: object()
main.main(sys.argv[1:], prog_name="reconciler")
"""


def sync(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _SYNC, "sync", "--repo", "https://x/y.git", "--once", *args]
    done = subprocess.run(
        command, cwd=tools.ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "success: revision abc123\n"  # the outcome, not a log line
    return done


def test_sync_logs_one_json_object_per_line_with_log_format_json() -> None:
    logged = [json.loads(line) for line in sync("--log-format", "json").stderr.splitlines()]
    by_message = {str(line["message"]).split("\n")[0]: line for line in logged}
    applied = by_message["  applied 2 Deployment"]
    assert (applied["logger"], applied["event"], applied["extension"]) == (
        "reconciler.gitops.controller",
        "applied",
        "ml",
    )
    assert "ValueError: boom" in str(by_message["reconcile failed"]["exception"])
    assert any("careful" in str(line["message"]) for line in logged)  # a warning, logged
    assert "not at INFO" not in by_message


def test_text_is_the_default_log_format() -> None:
    first = sync().stderr.splitlines()[0]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d [\d:,]+ INFO reconciler.gitops.controller:   applied 2 Deployment", first
    )
