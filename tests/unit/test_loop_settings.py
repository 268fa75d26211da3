"""The loop's settings (`gitops.runtime`) as `reconciler sync` and `reconciler controller` map
their options onto them: what each option sets, what cannot run (a usage error, exit 2), the
in-cluster defaults, and how `--once` exits. The loop itself is not run: `runtime.run` and the
cluster connection are stood in for."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import connection
from reconciler.cli import main as cli
from reconciler.gitops import controller, install, runtime

REPO = "https://git.example.com/ml/manifests.git"


class Runs:
    """Stands in for `runtime.run`: keeps the settings, returns `outcome`; and for
    `connection.connect`: keeps whether the connection was a daemon's."""

    def __init__(self) -> None:
        self.settings: list[runtime.Settings] = []
        self.outcome: controller.TickOutcome | None = None
        self.daemon: list[bool] = []

    def connect(self, kubeconfig: str | None, context: str | None, *, daemon: bool) -> object:
        self.daemon.append(daemon)
        return object()

    def __call__(
        self, settings: runtime.Settings, cluster: object, identities: object
    ) -> controller.TickOutcome | None:
        self.settings.append(settings)
        return self.outcome


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Runs:
    stand_in = Runs()
    monkeypatch.setattr(runtime, "run", stand_in)
    monkeypatch.setattr(connection, "connect", stand_in.connect)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    return stand_in


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def test_sync_options_become_the_settings_of_each_concern(runs: Runs, tmp_path: Path) -> None:
    secret = tmp_path / "hook-secret"
    secret.write_text("s3cret\n")
    result = invoke(
        "sync", "--repo", REPO, "--tag", "v1", "ml", "--interval", "5m",
        "--fetch-timeout", "30s", "--no-shallow", "--webhook-addr", ":9292",
        "--webhook-secret-file", str(secret), "--metrics-addr", ":9292", "--leader-elect",
        "--lease-duration", "30s", "--drift", "report", "--no-prune", "--adopt",
        "--concurrency", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [settings] = runs.settings
    assert settings.source == runtime.Source(
        REPO, tag="v1", path="ml", shallow=False, fetch_timeout=30.0
    )
    assert settings.source.ref == "v1"  # a push to another ref triggers nothing
    assert (settings.loop.interval, settings.loop.drift) == (300.0, "report")
    options = settings.loop.options
    assert (options.prune, options.force_conflicts, options.adopt) == (False, True, True)
    assert options.concurrency == 3
    assert settings.leader_election == runtime.LeaderElection(enabled=True, duration=30.0)
    assert settings.serving.routes() == {":9292": {"metrics", "webhook"}}
    assert settings.serving.webhook_secret() == b"s3cret"
    assert not settings.once


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--branch", "main", "--tag", "v1"], "give at most one of --branch, --tag"),
        (["--watch"], "--watch follows a local work tree"),
        (["--webhook-addr", ":9292"], "--webhook-addr needs --webhook-secret-file"),
        (["--interval", "soon"], "is not a duration"),
    ],
)
def test_settings_that_cannot_run_are_usage_errors(
    runs: Runs, args: list[str], message: str
) -> None:
    result = invoke("sync", "--repo", REPO, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_watched_work_tree_needs_no_ref(tmp_path: Path) -> None:
    assert runtime.Source(str(tmp_path), watch=True).folder == tmp_path
    with pytest.raises(runtime.SettingsError):
        runtime.Source(str(tmp_path), branch="main", watch=True)


def test_a_git_source_that_cannot_be_followed_is_refused_before_a_fetch(tmp_path: Path) -> None:
    """Checked when `run` opens the source, first of all (the git URL and the path)."""
    for refused in (runtime.Source(REPO, path="../elsewhere"), runtime.Source(" ")):
        with pytest.raises(runtime.SettingsError):
            refused.fetcher()
    runtime.Source(REPO, cache_dir=str(tmp_path / "cache")).fetcher()
    assert not (tmp_path / "cache").exists()  # nothing fetched yet


def test_the_controller_runs_as_install_deploys_it(runs: Runs) -> None:
    """The Deployment's args (`install.controller_args`), through the `controller` command:
    leader election on, probes and metrics on the ports the manifests name, the git mirror in
    their cache volume."""
    options = install.Options(repo=REPO, adopt=True)
    args = install.controller_args(options)
    assert invoke(*args).exit_code == 0
    assert runs.daemon == [True]  # an API server it cannot reach yet is retried, not fatal
    [settings] = runs.settings
    assert settings.source == runtime.Source(
        REPO,
        branch=options.branch,
        path=options.path,
        cache_dir=install.CACHE_DIR,
        git_credentials=install.GIT_CREDENTIALS_DIR,
    )
    assert settings.leader_election.enabled and settings.loop.options.adopt
    assert settings.serving.routes() == {
        f":{install.METRICS_PORT}": {"metrics"},
        f":{install.HEALTH_PORT}": {"health"},
    }


def test_the_controllers_defaults_give_way_to_options(runs: Runs) -> None:
    result = invoke("controller", "--repo", REPO, "--metrics-addr", ":9000", "--cache-dir", "/c")
    assert result.exit_code == 0, result.output
    [settings] = runs.settings
    assert settings.serving.routes() == {
        ":9000": {"metrics"},
        f":{install.HEALTH_PORT}": {"health"},
    }
    assert settings.source.cache_dir == "/c"


@pytest.mark.parametrize(
    ("result", "exit_code"), [("success", 0), ("failed", 1), ("invalid", 1), ("error", 2)]
)
def test_once_prints_the_outcome_and_exits_by_it(runs: Runs, result: str, exit_code: int) -> None:
    runs.outcome = controller.TickOutcome(result, "abc123", "because")
    done = invoke("sync", "--repo", REPO, "--once")
    assert done.exit_code == exit_code
    assert done.stdout == f"{result}: revision abc123 because\n"
    assert runs.settings[0].once
    assert runs.daemon == [False]  # one-shot: an API server it cannot reach is exit 2
