"""Notifications: the config file's problems, events from tick reports, de-duplication, the rate
limit, redaction, and each provider's request received by a real HTTP server on loopback (a
generic webhook that verifies the HMAC, Slack- and Teams-shaped receivers, a fake GitHub
commit-status API)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.engine import record
from reconciler.gitops import (
    controller,
    loopmetrics,
    notifications,
    notifiers,
    notifyconfig,
    notifydispatch,
    runtime,
)
from tests.helpers import (
    Received,
    http_server,
    verified_generic,
    verified_slack,
    verified_teams,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
HMAC_KEY = "hmac-key-s3cret"
TOKEN = "ghp_token_s3cret"


# --- the receivers -------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """One loopback server for every provider (each has its own path under it)."""
    received = Received()
    with http_server(received.handler()) as url:
        yield url, received


# --- the config file -----------------------------------------------------------------------


def write(tmp_path: Path, text: str, **files: str) -> str:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "notifications.yaml"
    path.write_text(text)
    return str(path)


def config_for(tmp_path: Path, receiver_url: str) -> notifyconfig.Config:
    path = write(
        tmp_path,
        f"""\
dedupeWindow: 1m
providers:
  - name: hooks
    type: generic-hmac
    address: {receiver_url}/hook
    tokenFile: hmac-key
  - name: team
    type: slack
    addressFile: slack-url
    events: [applied, refused]
  - name: teams
    type: msteams
    addressFile: teams-url
  - name: commits
    type: github
    address: https://github.com/org/manifests
    apiURL: {receiver_url}/api
    targetURL: https://grafana.example.com/d/reconciler
    tokenFile: github-token
    extensions: [ext-a]
""",
        **{
            "hmac-key": HMAC_KEY + "\n",
            "slack-url": f"{receiver_url}/slack/T000/B000/XXXX\n",
            "teams-url": f"{receiver_url}/teams/workflow\n",
            "github-token": TOKEN,
        },
    )
    return notifyconfig.load(path)


def test_the_config_file_reads_its_providers(tmp_path: Path) -> None:
    config = config_for(tmp_path, "http://127.0.0.1:1")
    assert config.dedupe_window == 60
    assert [p.type for p in config.providers] == ["generic-hmac", "slack", "msteams", "github"]
    team = config.providers[1]
    assert team.wants("applied", "x") and not team.wants("health", "x")
    assert not config.providers[3].wants("applied", "ext-b")
    secrets = team.secrets(lambda name, key: None)
    assert secrets.address() == "http://127.0.0.1:1/slack/T000/B000/XXXX"


def test_config_problems_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
providers:
  - name: team
    type: slak
  - name: team
    type: slack
    address: https://hooks.slack.com/services/T/B/X
  - name: commits
    type: github
    address: https://github.com/org
    evnts: [applied]
""",
    )
    with pytest.raises(notifyconfig.ConfigError) as caught:
        notifyconfig.load(path)
    text = str(caught.value)
    assert f"{path}:3: providers[0].type: must be one of generic" in text
    assert "did you mean slack?" in text
    assert f"{path}:10: providers[2].evnts: unknown field (did you mean events?)" in text
    # The rules across fields, once the schema holds.
    fixed = Path(path).read_text().replace("slak", "slack").replace("evnts", "events")
    Path(path).write_text(fixed)
    with pytest.raises(notifyconfig.ConfigError) as caught:
        notifyconfig.load(path)
    lines = caught.value.lines
    assert f"{path}:2: providers[0].address: required: address, addressFile" in lines[0]
    assert any(f"{path}:4: providers[1].name: a second provider named 'team'" in x for x in lines)
    assert any(
        f"{path}:6: providers[1].address: a slack webhook URL is a secret" in x for x in lines
    )
    assert any(f"{path}:9: providers[2].address: must be the repository's URL" in x for x in lines)
    assert any(f"{path}:7: providers[2].tokenFile: github needs the API token" in x for x in lines)


def test_an_invalid_file_is_a_usage_error_of_the_loop(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: []\n")
    with pytest.raises(runtime.SettingsError, match=r"notifications.yaml:1: providers: "):
        runtime.notifications(path)


def test_a_provider_whose_secret_is_missing_fails_at_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers:\n  - {name: a, type: generic-hmac, address: 'http://x/', tokenFile: gone}\n",
    )
    settings = runtime.Settings(
        runtime.Source(str(tmp_path)), notifications=notifyconfig.load(path)
    )
    with pytest.raises(runtime.SettingsError, match="provider a: its secrets cannot be read"):
        runtime.notifier(settings, None)  # type: ignore[arg-type]


# --- events --------------------------------------------------------------------------------


def report(
    revision: str = SHA,
    *exts: controller.ExtensionReport,
    problems: tuple[str, ...] = (),
    report_only: bool = False,
) -> controller.TickReport:
    return controller.TickReport(
        revision, "git@x:org/m.git", "success", problems, exts, report_only
    )


def ext(
    state: str = record.SUCCEEDED,
    before: str = SHA,
    drifted: int = 0,
    reason: str = "Succeeded",
    name: str = "ext-a",
    reasons: tuple[str, ...] = (),
) -> controller.ExtensionReport:
    return controller.ExtensionReport(name, state, reason, reasons, before, drifted)


def test_a_new_revision_is_applied_once_and_an_in_sync_tick_says_nothing() -> None:
    events = notifications.Events()
    (applied,) = events.of(report(SHA, ext(before=OTHER)))
    assert (applied.kind, applied.reason, applied.state) == ("applied", "Applied", "Succeeded")
    assert applied.summary == f"ext-a: revision {SHA[:12]} applied (Succeeded)"
    assert events.of(report(SHA, ext())) == []
    refusal = ("apps/v1/Deployment/ns/x: forbidden",)
    failed = ext(record.FAILED, before=OTHER, reason="ApplyFailed", reasons=refusal)
    (not_applied,) = notifications.Events().of(report(SHA, failed))
    assert (not_applied.reason, not_applied.details) == ("ApplyFailed", refusal)
    assert not_applied.summary.endswith("could not be applied")


def test_a_refused_revision_lists_its_problems_one_line_each_capped() -> None:
    problems = tuple(f"repo/a.yaml:{n}: spec.x: wrong" for n in range(1, 25))
    events = notifications.Events().of(
        report(SHA, ext(record.FAILED, reason="ValidationFailed"), problems=problems)
    )
    (refused,) = events
    assert refused.kind == "refused" and "24 problems, nothing applied" in refused.summary
    assert len(refused.details) == notifications.MAX_LINES
    assert refused.details[0] == "repo/a.yaml:1: spec.x: wrong"
    assert refused.details[-1] == "... and 15 more"
    long = notifications.capped(["x" * 1000])
    assert len(long[0]) == notifications.MAX_LINE


def test_drift_and_health_only_on_transitions() -> None:
    events = notifications.Events()
    assert events.of(report(SHA, ext())) == []  # the first tick only learns the state
    (drift,) = events.of(report(SHA, ext(drifted=2)))
    assert (drift.kind, drift.reason) == ("drift", "DriftReverted")
    assert "2 objects differed" in drift.summary
    reasons = ("apps/v1/Deployment/ns/x: 0/1 replicas available",)
    (lost,) = events.of(report(SHA, ext(record.PENDING, reason="Progressing", reasons=reasons)))
    assert (lost.reason, lost.details) == ("HealthLost", reasons)
    assert events.of(report(SHA, ext(record.PENDING, reason="Progressing"))) == []
    (failed,) = events.of(report(SHA, ext(record.FAILED, reason="HealthCheckFailed")))
    assert failed.reason == "HealthLost"
    assert events.of(report(SHA, ext(record.PENDING))) == []  # Failed -> Pending: no news
    (back,) = events.of(report(SHA, ext()))
    assert (back.reason, back.severity) == ("HealthRegained", "info")
    (found,) = events.of(report(SHA, ext(drifted=1), report_only=True))
    assert found.reason == "DriftFound" and found.severity == "error"


def test_the_same_event_for_the_same_revision_goes_once_within_the_window() -> None:
    gate = notifications.Gate(window=300)
    refused = notifications.Events().of(report(SHA, ext(record.FAILED), problems=("p",)))[0]
    assert not gate.duplicate(refused, now=0)
    assert gate.duplicate(refused, now=100)
    assert not gate.duplicate(refused, now=301)  # the window passed: a reminder
    newer = notifications.Events().of(report(OTHER, ext(record.FAILED), problems=("p",)))[0]
    assert not gate.duplicate(newer, now=302)
    # Lost, regained, lost again: each a change, none a duplicate.
    lost = notifications.Event("health", "HealthLost", "e", SHA, "o", "Failed", "s")
    regained = notifications.Event("health", "HealthRegained", "e", SHA, "o", "Succeeded", "s")
    assert [gate.duplicate(e, now=400) for e in (lost, regained, lost)] == [False, False, False]


def test_the_rate_limit_is_a_token_bucket() -> None:
    gate = notifications.Gate(window=300, burst=3, refill=2.0)
    assert [gate.wait(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert gate.wait(0.0) == pytest.approx(2.0)
    assert gate.wait(1.0) == pytest.approx(1.0)
    assert gate.wait(2.0) == 0.0


def test_redaction_hides_secrets_and_their_quoted_forms() -> None:
    url = "https://hooks.slack.com/services/T0/B0/s3cret"
    quoted = "https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0%2FB0%2Fs3cret"
    text = f"POST {url} failed; token={TOKEN}; quoted {quoted}"
    shown = notifydispatch.redact(text, [url, TOKEN, ""])
    assert "s3cret" not in shown and shown.count("***") == 3


# --- the payloads --------------------------------------------------------------------------


def event(
    kind: str = "applied", reason: str = "Applied", state: str = "Succeeded"
) -> notifications.Event:
    return notifications.Event(kind, reason, "ext-a", SHA, "git@x:org/m.git", state, "summary")


@pytest.mark.parametrize(
    ("kind", "reason", "state", "expected"),
    [
        ("applied", "Applied", "Succeeded", "success"),
        ("applied", "Applied", "Pending", "pending"),
        ("applied", "ApplyFailed", "Failed", "error"),
        ("refused", "Refused", "Failed", "failure"),
        ("health", "HealthLost", "Failed", "failure"),
        ("health", "HealthRegained", "Succeeded", "success"),
        ("drift", "DriftReverted", "Succeeded", None),
    ],
)
def test_commit_states(kind: str, reason: str, state: str, expected: str | None) -> None:
    assert notifiers.github_state(event(kind, reason, state)) == expected


def test_github_enterprise_api_and_work_tree_revisions() -> None:
    provider = notifyconfig.Provider("c", "github", address="https://ghe.example.com/o/r")
    assert notifiers.github_api(provider, "ghe.example.com") == "https://ghe.example.com/api/v3"
    assert notifiers.github_api(provider, "github.com") == notifiers.GITHUB_API
    dirty = notifications.Event("applied", "Applied", "e", SHA + "-dirty", "o", "Succeeded", "s")
    assert notifiers.request(provider, dirty, provider.address, "t") is None


# --- received by real servers --------------------------------------------------------------


def test_every_provider_is_received_with_its_shape_signature_and_auth(
    tmp_path: Path, receiver: tuple[str, Received]
) -> None:
    url, received_by = receiver
    config = config_for(tmp_path, url)
    notifier = notifydispatch.Notifier(config, lambda name, key: None)
    notifier(report(SHA, ext(before=OTHER)))  # applied: to all four
    problems = ("repo/blue.yaml:26: scale_settings.max_instances: must be a whole number",)
    notifier(report(OTHER, ext(record.FAILED, reason="ValidationFailed"), problems=problems))
    notifier(report(OTHER, ext(record.FAILED, reason="ValidationFailed"), problems=problems))
    notifier.close()
    received = received_by.wait(8)
    assert len(received) == 8, [r[0] for r in received]  # the repeated refusal went once
    by_path: dict[str, list[tuple[dict[str, str], bytes]]] = {}
    for path, headers, body in received:
        by_path.setdefault(path.split("/")[1], []).append((headers, body))

    generic = [verified_generic(HMAC_KEY, h, b) for h, b in by_path["hook"]]
    assert [(g["kind"], g["revision"], g["state"]) for g in generic] == [
        ("applied", SHA, "Succeeded"),
        ("refused", OTHER, "Failed"),
    ]
    assert generic[1]["details"] == list(problems)

    slack = [verified_slack(b) for _, b in by_path["slack"]]
    assert "applied" in slack[0]["text"] and "refused" in slack[1]["text"]
    assert problems[0] in slack[1]["attachments"][0]["text"]
    assert slack[1]["attachments"][0]["color"] == "danger"

    teams = [verified_teams(b) for _, b in by_path["teams"]]
    assert any(problems[0] == block.get("text") for block in teams[1]["body"])

    statuses = [(p, h, json.loads(b)) for p, h, b in received if "/statuses/" in p]
    assert [p for p, _, _ in statuses] == [
        f"/api/repos/org/manifests/statuses/{SHA}",
        f"/api/repos/org/manifests/statuses/{OTHER}",
    ]
    for _, headers, body in statuses:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Accept"] == "application/vnd.github+json"
        assert body["context"] == "reconciler/ext-a"
        assert body["target_url"] == "https://grafana.example.com/d/reconciler"
        assert len(body["description"]) <= notifiers.MAX_DESCRIPTION
    assert [b["state"] for _, _, b in statuses] == ["success", "failure"]


def test_a_failing_provider_is_retried_then_logged_without_its_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Received(fail=1)
    with http_server(Received().handler()) as dead_url:
        pass  # nothing listens there any more: every attempt is refused
    with http_server(flaky.handler()) as flaky_url:
        path = write(
            tmp_path,
            "providers:\n"
            "  - {name: flaky, type: slack, addressFile: flaky-url}\n"
            "  - {name: dead, type: msteams, addressFile: dead-url}\n",
            **{
                "flaky-url": f"{flaky_url}/slack/s3cret-a",
                "dead-url": f"{dead_url}/teams/s3cret-b",
            },
        )
        notifier = notifydispatch.Notifier(
            notifyconfig.load(path), lambda name, key: None, retry_wait=0.01
        )
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger=notifydispatch.__name__):
            notifier(report(SHA, ext(before=OTHER)))
            assert time.monotonic() - started < 0.5  # the tick's thread never waits on a send
            notifier.close()
        assert len(flaky.wait(1)) == 1  # the 503 was retried
    logged = caplog.text
    assert "notified flaky (slack)" in logged
    assert "notification Applied of ext-a to dead (msteams) failed" in logged
    assert "s3cret" not in logged


def test_a_full_queue_drops_instead_of_blocking_the_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(notifydispatch, "QUEUE_SIZE", 1)
    stuck = threading.Event()
    monkeypatch.setattr(notifydispatch._Channel, "_deliver", lambda self, e: stuck.wait(5))
    path = write(tmp_path, "providers:\n  - {name: a, type: generic, address: 'http://x/'}\n")
    notifier = notifydispatch.Notifier(notifyconfig.load(path), lambda name, key: None)
    names = [f"e{n}" for n in range(4)]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        notifier(report(SHA, *(ext(before=OTHER, name=n) for n in names)))
    assert time.monotonic() - started < 0.5
    assert "1 waiting, Applied of e3 dropped" in caplog.text
    stuck.set()
    notifier.close()


def test_the_controller_reports_to_on_tick_and_survives_its_errors() -> None:
    seen: list[controller.TickReport] = []

    def on_tick(tick: controller.TickReport) -> None:
        seen.append(tick)
        raise RuntimeError("a bug in the observer")

    loop = controller.Controller(
        None,  # type: ignore[arg-type]
        lambda: None,  # type: ignore[arg-type,return-value]
        controller.Settings(),
        loopmetrics.ControllerMetrics("0.0.0", None),
        on_tick=on_tick,
    )
    loop._report(report())
    assert seen == [report()]


def test_the_documented_file_is_valid() -> None:
    page = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    (example,) = [block for block in page.split("```yaml\n")[1:] if "providers:" in block]
    config = notifyconfig.parse("docs/notifications.md", example.split("```")[0])
    assert [p.type for p in config.providers] == ["slack", "msteams", "generic-hmac", "github"]
