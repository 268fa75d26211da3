"""One source owns an extension: the owner's identity, the refusal decision, the record's owner,
and the loop's `--adopt` that ends after its first complete tick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import objects, source
from reconciler.engine import owners, reconcile, record, recordstore
from reconciler.gitops import controller, install, loopmetrics
from tests.helpers import example_repo, load, stand_in_for_the_engine


@pytest.mark.parametrize(
    "origin",
    [
        "https://github.com/org/ml//prod",
        "https://github.com/org/ml.git//prod",
        "https://x-access-token:ghp_secret@GitHub.com/org/ml.git//prod/",
        "http://github.com:443/org/ml//prod",
        "ssh://git@github.com/org/ml.git//prod",
        "ssh://git@github.com:22/org/ml//./prod",
        "git@github.com:org/ml.git//prod",
        "github.com/org/ml//prod",
    ],
)
def test_every_way_of_reaching_one_repo_is_one_owner(origin: str) -> None:
    assert owners.identity(origin) == "github.com/org/ml//prod"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://github.com/org/ml//prod", "https://github.com/org/ml//staging"),
        ("https://github.com/org/ml//prod", "https://github.com/org/ml"),
        ("https://github.com/org/ml", "https://github.com/fork/ml"),
        ("https://github.com/org/ml", "https://gitlab.com/org/ml"),
        ("/srv/a/repo", "/srv/b/repo"),
        ("/srv/repo", "/srv/repo//sub"),
    ],
)
def test_another_repo_or_another_folder_is_another_owner(one: str, other: str) -> None:
    assert owners.identity(one) != owners.identity(other)


def test_a_local_path_is_its_normalized_absolute_path() -> None:
    assert owners.identity("/srv/a/../b/repo") == "/srv/b/repo"
    assert owners.identity("file:///srv/b/repo//x/") == "/srv/b/repo//x"
    assert owners.identity("/srv/repo.git") == "/srv/repo.git"  # a path keeps its name


@given(st.text(alphabet="abcAB:/@._-~", max_size=40))
def test_the_identity_is_its_own_identity(origin: str) -> None:
    once = owners.identity(origin)
    assert owners.identity(once) == once


def test_no_credentials_in_the_identity_in_messages_or_in_the_record(tmp_path: Path) -> None:
    ours = "https://bot:t0ken@github.com/org/b.git"
    theirs = "https://user:pa55@github.com/org/a.git//prod"
    refused = owners.claim("ml", ours, theirs, theirs, adopt=False)
    adopted = owners.claim("ml", ours, theirs, theirs, adopt=True)
    shown = " ".join(
        [owners.identity(ours), owners.identity(theirs), refused.message(), adopted.message()]
    )
    assert "t0ken" not in shown and "pa55" not in shown and "@" not in shown
    extension = load(example_repo(tmp_path, "ml", "ml-system")).repo.extensions["ml"]
    written = record.record(extension, ours)
    assert written["spec"]["owner"] == "github.com/org/b"
    assert written["spec"]["source"] == "https://github.com/org/b.git"


@pytest.mark.parametrize(
    ("owner", "adopt", "verdict"),
    [
        (None, False, owners.Verdict.NEW),
        ("", False, owners.Verdict.UNCLAIMED),
        ("github.com/org/a//prod", False, owners.Verdict.OURS),
        ("git@github.com:org/a.git//prod", False, owners.Verdict.OURS),
        ("github.com/org/b//prod", False, owners.Verdict.REFUSED),
        ("github.com/org/a//staging", False, owners.Verdict.REFUSED),
        ("github.com/org/b//prod", True, owners.Verdict.ADOPTED),
        ("github.com/org/a//prod", True, owners.Verdict.OURS),
    ],
)
def test_the_claim_of_a_source_on_an_extension(
    owner: str | None, adopt: bool, verdict: owners.Verdict
) -> None:
    found = owners.claim("ml", "https://github.com/org/a//prod", owner, adopt=adopt)
    assert found.verdict is verdict
    assert found.refused is (verdict is owners.Verdict.REFUSED)


def test_a_refusal_names_the_extension_both_sources_and_the_way_out() -> None:
    refused = owners.claim("ml", "/home/me/b", "/home/me/a", "/home/me/a", adopt=False).message()
    assert "'ml'" in refused and "/home/me/a" in refused and "/home/me/b" in refused
    assert "--adopt" in refused and "nothing applied" in refused


def _record(spec: dict[str, Any]) -> objects.Object:
    return {**record.ref("ml"), "spec": spec}


def test_a_record_from_before_owners_is_owned_by_the_source_that_applied_it_last() -> None:
    legacy = _record({"source": "https://github.com/org/a.git//prod"})
    assert record.owner_of(legacy) == "https://github.com/org/a.git//prod"
    assert record.claim("ml", legacy, "git@github.com:org/a//prod", adopt=False).verdict is (
        owners.Verdict.OURS
    )
    assert record.claim("ml", legacy, "/home/me/b", adopt=False).refused
    assert record.owner_of(_record({})) == ""
    assert record.claim("ml", _record({}), "/home/me/b", adopt=False).verdict is (
        owners.Verdict.UNCLAIMED
    )
    assert record.owner_of(None) is None


def test_the_owner_is_kept_over_the_source_and_shown_by_status() -> None:
    live = _record({"source": "/home/me/b", "owner": "/home/me/a"})
    assert record.claim("ml", live, "/home/me/b", adopt=False).refused
    assert record.summary(live)["owner"] == "/home/me/a"
    assert record.summary(_record({"source": "https://t@github.com/org/a.git"}))["owner"] == (
        "github.com/org/a"
    )


def test_only_the_records_a_source_owns_are_its_own() -> None:
    records = {
        "mine": _record({"source": "x", "owner": "github.com/org/a"}),
        "legacy": _record({"source": "https://github.com/org/a.git"}),
        "theirs": _record({"source": "https://github.com/org/b", "owner": "github.com/org/b"}),
        "nobody": _record({}),
    }
    assert set(recordstore.from_origin(records, "git@github.com:org/a.git")) == {
        "mine",
        "legacy",
    }


def test_the_crd_keeps_the_owner_and_shows_it() -> None:
    (version,) = record.crd()["spec"]["versions"]
    assert "owner" in version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Owner"] == ".spec.owner"


def test_the_installed_controller_is_told_to_adopt_only_when_asked() -> None:
    options = install.Options(repo="https://github.com/org/a")
    assert "--adopt" not in install.controller_args(options)
    adopting = install.Options(repo="https://github.com/org/a", adopt=True)
    assert install.controller_args(adopting)[-1] == "--adopt"


# --- the loop: --adopt until the first tick that carries out every extension ---------------


class _Tick:
    """Stands in for the planner and the executor: records each tick's `adopt`, and leaves
    extensions to the next tick while `leave` is set."""

    def __init__(self) -> None:
        self.adopt: list[bool] = []
        self.leave = False

    def plan_each(self, *args: Any, **kwargs: Any) -> Iterator[reconcile.ExtensionPlan]:
        options: reconcile.Options = args[2]
        self.adopt.append(options.adopt)
        return iter(())

    def carry_out_all(self, *args: Any, **kwargs: Any) -> list[reconcile.ExtensionResult]:
        list(args[2])
        return []

    def names(self, *args: Any) -> list[str]:
        return ["ml"] if self.leave else []


class _NoCache:
    """Stands in for the live cache: every read goes through the patched recordstore."""

    def stats(self) -> tuple[int, int, dict[str, int]]:
        return 0, 0, {}


def test_the_loop_adopts_until_a_tick_has_carried_out_every_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_repo(tmp_path, "ml", "ml-system", jobs=False)
    fake = _Tick()
    stand_in_for_the_engine(monkeypatch, fake)
    settings = controller.Settings(options=reconcile.Options(adopt=True))
    loop = controller.Controller(
        None,  # type: ignore[arg-type]
        lambda: source.DirectorySnapshot(root),
        settings,
        loopmetrics.ControllerMetrics("0.0.0", None),
        cache=_NoCache(),  # type: ignore[arg-type]
    )
    fake.leave = True  # a newer trigger cut the tick short: the takeover is not done
    assert loop.tick().result == "superseded"
    fake.leave = False
    assert loop.tick().result == "success"
    assert loop.tick().result == "success"
    assert fake.adopt == [True, True, False]
