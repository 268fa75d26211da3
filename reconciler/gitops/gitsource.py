"""The git source of the GitOps loop: fetch one ref of a remote repo into a local bare mirror.

Sits at the network edge before `repo.load`: `GitSource.fetch()` brings the configured branch, tag
or pinned commit into a bare mirror kept in a cache folder (fetched incrementally, never cloned
again) and returns the commit id with a `gitsnapshot.GitSnapshot` of the configured folder at that
commit, read from tree objects with no checkout. Everything after it sees only the `Snapshot`.

Credentials come from `gitcredentials` (files read on every fetch, an Authorization header, a
private copy of an SSH key, git's output scrubbed of secrets); this module puts them into the
environment git runs with. They never reach a command line, a URL, a log line or an error
message: HTTPS credentials travel as an `http.<url>.extraHeader` set through git's
`GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` / `GIT_CONFIG_VALUE_n` environment variables, SSH keys as
a private copy of the key file named in `GIT_SSH_COMMAND`. Only the https, http, ssh, git and
file transports are allowed, and nothing stored on the machine (a credential helper) is used.

Every fetch is bounded by one timeout: git's own low-speed limit and ssh's connect timeout end a
stalled transfer cleanly, and gitpython's `kill_after_timeout` kills whatever is still running
(git, its remote helper, ssh) when the time is up, so a hung remote never hangs the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import git

from reconciler import gitsnapshot, source
from reconciler.gitops import gitcredentials

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0

# Where fetched refs live in the mirror: a namespace of their own, so that one mirror can serve
# several sources (branches, tags, pins) of the same URL without them overwriting each other.
_REFS = "refs/gitsource"
_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_FULL_SHA_LENGTHS = (40, 64)
# Transports a configured URL may use; `ext::` and other remote helpers that run commands stay off.
_PROTOCOLS = ("https", "http", "ssh", "git", "file")


class GitSourceError(Exception):
    """A fetch failed or the source is misconfigured; the message names no credential."""


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """One successful fetch: the commit the ref resolved to and the folder's files at it."""

    commit: str
    ref: str  # what was asked for, as shown in messages: `main`, `v1.2`, `HEAD`, a short commit
    snapshot: gitsnapshot.GitSnapshot


class GitSource:
    """One ref of one remote repo, fetched into a bare mirror under `cache_dir`."""

    def __init__(
        self,
        url: str,
        cache_dir: str | os.PathLike[str],
        *,
        branch: str | None = None,
        tag: str | None = None,
        revision: str | None = None,
        path: str = "",
        shallow: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: gitcredentials.Credentials | None = None,
    ) -> None:
        if sum(ref is not None for ref in (branch, tag, revision)) > 1:
            raise GitSourceError("give at most one of branch, tag and revision")
        if timeout <= 0:
            raise GitSourceError(f"the fetch timeout must be positive, not {timeout}")
        folder = source.normalize(path.strip("/")) if path.strip("/") else ""
        if folder is None:
            raise GitSourceError(f"path {path!r} leaves the repository")
        url = url.strip()
        if not url:
            raise GitSourceError("the git repository URL is empty")
        self._access = gitcredentials.Access.for_url(
            url, credentials or gitcredentials.Credentials()
        )
        self._url = self._access.url
        self._branch = _ref_name("branch", branch)
        self._tag = _ref_name("tag", tag)
        self._revision = None if revision is None else _revision(revision)
        self._folder = folder
        self._shallow = shallow
        self._timeout = timeout
        self._cache = Path(cache_dir)
        self.mirror = self._cache / f"{_slug(self._url)}.git"

    # -- what this source is ------------------------------------------------------------------

    def origin(self) -> str:
        """The repo as recorded on rendered objects and in status: the URL without credentials
        (a local path made absolute), plus `//folder` as `GitSnapshot.origin` spells it."""
        base = source.without_credentials(self._url)
        return f"{base}//{self._folder}" if self._folder else base

    def describe(self) -> str:
        """The ref asked for, for messages: `branch 'main'`, `tag 'v1'`, `revision abc1234`."""
        if self._branch is not None:
            return f"branch {self._branch!r}"
        if self._tag is not None:
            return f"tag {self._tag!r}"
        if self._revision is not None:
            return f"revision {self._revision}"
        return "the default branch (HEAD)"

    def _url_shown(self) -> str:
        return source.without_credentials(self._url)

    # -- fetching -----------------------------------------------------------------------------

    def fetch(self) -> FetchResult:
        """Bring the ref into the mirror and snapshot the folder at its commit.

        Raises `GitSourceError` when the remote cannot be reached in time, refuses the
        credentials, lacks the ref, or the folder is not in the commit.
        """
        deadline = time.monotonic() + self._timeout
        started = time.monotonic()
        self._cache.mkdir(parents=True, exist_ok=True)
        with self._locked(deadline), self.git_environment() as env:
            self._ensure_mirror()
            commit = self._fetch_ref(env, deadline)
            self._collect_garbage(env)
        repository = git.Repo(self.mirror)
        try:
            commit_object = repository.commit(commit)
        except (git.BadName, git.BadObject, ValueError) as err:
            raise GitSourceError(f"{commit} is not a commit in {self.origin()}") from err
        ref = self._display_ref(commit)
        snapshot = gitsnapshot.GitSnapshot(
            repository,
            commit_object,
            self._folder,
            ref,
            origin=source.without_credentials(self._url),
        )
        if self._folder and not snapshot.is_dir(""):
            # A missing folder is a mistake in --path or a commit that moved it; treating it as an
            # empty repo would prune everything the reconciler owns.
            raise GitSourceError(
                f"path {self._folder!r} is not a folder in {self._url_shown()} at {commit[:12]}"
            )
        _log.info(
            "fetched %s of %s: %s in %.2fs",
            self.describe(),
            self.origin(),
            commit,
            time.monotonic() - started,
        )
        return FetchResult(commit=commit, ref=ref, snapshot=snapshot)

    def _display_ref(self, commit: str) -> str:
        if self._branch is not None:
            return self._branch
        if self._tag is not None:
            return self._tag
        if self._revision is not None:
            return commit[:12]
        return "HEAD"

    def _fetch_ref(self, env: Mapping[str, str], deadline: float) -> str:
        if self._revision is not None:
            return self._fetch_revision(self._revision, env, deadline)
        if self._branch is not None:
            remote, local = f"refs/heads/{self._branch}", f"{_REFS}/heads/{self._branch}"
        elif self._tag is not None:
            remote, local = f"refs/tags/{self._tag}", f"{_REFS}/tags/{self._tag}"
        else:
            remote, local = "HEAD", f"{_REFS}/remote-head"
        self._git_fetch([f"+{remote}:{local}"], env, deadline, depth=self._shallow)
        resolved = self._resolve(f"{local}^{{commit}}", env, deadline)
        if resolved is None:
            raise GitSourceError(f"{self.describe()} of {self._url_shown()} is not a commit")
        return resolved

    def _fetch_revision(self, revision: str, env: Mapping[str, str], deadline: float) -> str:
        """A pinned commit never changes: use the mirror's copy when it has one, else ask the
        remote for exactly that commit, else fetch every branch and tag with full history (a
        server speaking protocol v0 only hands out commits at the tip of a ref)."""
        found = self._resolve(f"{revision}^{{commit}}", env, deadline)
        if found is None and len(revision) in _FULL_SHA_LENGTHS:
            with contextlib.suppress(_RefusedError):
                wanted = f"{revision}:{_REFS}/revisions/{revision}"
                self._git_fetch([wanted], env, deadline, depth=self._shallow)
                found = self._resolve(f"{revision}^{{commit}}", env, deadline)
        if found is None:
            refspecs = [f"+refs/heads/*:{_REFS}/all/heads/*", f"+refs/tags/*:{_REFS}/all/tags/*"]
            try:
                self._git_fetch(refspecs, env, deadline, depth=False)
            except _RefusedError as err:
                raise GitSourceError(str(err)) from None
            found = self._resolve(f"{revision}^{{commit}}", env, deadline)
        if found is None:
            raise GitSourceError(
                f"revision {revision} is not a commit on any branch or tag of {self._url_shown()}"
            )
        # A ref keeps the pinned commit out of garbage collection while the source points at it.
        self._git(["update-ref", f"{_REFS}/revisions/{found}", found], env, deadline)
        return found

    def _git_fetch(
        self, refspecs: Sequence[str], env: Mapping[str, str], deadline: float, *, depth: bool
    ) -> None:
        args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--quiet"]
        if depth:
            args.append("--depth=1")
        elif (self.mirror / "shallow").exists():
            args.append("--unshallow")
        status, _, stderr = self._run([*args, "--", self._url, *refspecs], env, deadline)
        if status != 0:
            raise _RefusedError(self._fetch_failure(stderr))

    def _fetch_failure(self, stderr: str) -> str:
        shown = self._access.hide(stderr).strip()
        where = f"git fetch of {self.describe()} from {self._url_shown()}"
        lowered = shown.lower()
        if "couldn't find remote ref" in lowered or "no such ref" in lowered:
            return f"{where} failed: the remote has no {self.describe()}"
        if any(
            sign in lowered
            for sign in (
                "authentication failed",
                "could not read username",
                "could not read password",
                "http 401",
                "http 403",
                "permission denied (publickey",
                "the requested url returned error: 401",
                "the requested url returned error: 403",
            )
        ):
            return f"{where} failed: the remote refused the credentials ({_last_line(shown)})"
        if "operation too slow" in lowered or "timed out" in lowered:
            return f"{where} timed out after {self._timeout:g}s ({_last_line(shown)})"
        return f"{where} failed: {_last_line(shown) or 'git gave no reason'}"

    def _resolve(self, name: str, env: Mapping[str, str], deadline: float) -> str | None:
        status, out, _ = self._run(["rev-parse", "--verify", "--quiet", name], env, deadline)
        return out.strip() if status == 0 and out.strip() else None

    def _git(self, args: Sequence[str], env: Mapping[str, str], deadline: float) -> str:
        status, out, stderr = self._run(args, env, deadline)
        if status != 0:
            reason = _last_line(self._access.hide(stderr))
            raise GitSourceError(f"git {args[0]} in the mirror {self.mirror} failed: {reason}")
        return out

    def _run(
        self, args: Sequence[str], env: Mapping[str, str], deadline: float
    ) -> tuple[int, str, str]:
        """Run git in the mirror with what is left of the fetch's time, killing it (and its
        remote helper, ssh) when that runs out."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        runner = git.Git(self.mirror)
        started = time.monotonic()
        status, out, err = runner.execute(
            ["git", *args],
            env=dict(env),
            kill_after_timeout=remaining,
            with_extended_output=True,
            with_exceptions=False,
            stdout_as_string=True,
        )
        if status != 0 and time.monotonic() - started >= remaining:
            raise self._timed_out()
        return status, str(out), str(err)

    def _timed_out(self) -> GitSourceError:
        return GitSourceError(
            f"git fetch of {self.describe()} from {self._url_shown()} timed out after "
            f"{self._timeout:g}s"
        )

    def _collect_garbage(self, env: Mapping[str, str]) -> None:
        """Repack now and then, in the foreground (a detached gc could outlive this process's
        lock); a failure only costs disk space, so it is logged, not raised."""
        deadline = time.monotonic() + self._timeout
        try:
            status, _, stderr = self._run(["gc", "--auto", "--quiet"], env, deadline)
        except GitSourceError as err:
            _log.warning("git gc in %s: %s", self.mirror, err)
            return
        if status != 0:
            reason = _last_line(self._access.hide(stderr))
            _log.warning("git gc in %s failed: %s", self.mirror, reason)

    # -- the mirror -----------------------------------------------------------------------------

    def _ensure_mirror(self) -> None:
        """A bare repo at `self.mirror`, created once: made in a temporary folder and renamed into
        place, so a fetch killed half-way never leaves a half-made repo behind."""
        if (self.mirror / "HEAD").is_file():
            self._remove_stale_locks()
            return
        if self.mirror.exists():
            _log.warning("replacing the broken git mirror %s", self.mirror)
            shutil.rmtree(self.mirror)
        building = Path(tempfile.mkdtemp(prefix=".init-", dir=self._cache))
        try:
            repository = git.Repo.init(building, bare=True)
            with repository.config_writer() as config:
                config.set_value("gc", "autoDetach", "false")
                config.set_value("core", "logAllRefUpdates", "false")
            repository.close()
            building.rename(self.mirror)
        finally:
            if building.exists():
                shutil.rmtree(building)

    def _remove_stale_locks(self) -> None:
        """Lock files a killed git left behind (SIGKILL gives it no chance to clean up); called
        while holding the mirror's lock, so no git of ours is running in it."""
        candidates = list(self.mirror.glob("*.lock")) + list((self.mirror / "refs").rglob("*.lock"))
        for lock in candidates:
            _log.warning("removing the stale git lock %s", lock)
            lock.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """One fetch at a time per mirror, across threads and processes sharing the cache."""
        with open(self._cache / f"{self.mirror.name}.lock", "a+b") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise self._timed_out() from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- git's environment ----------------------------------------------------------------------

    @contextlib.contextmanager
    def git_environment(self) -> Iterator[dict[str, str]]:
        """The environment `fetch` runs git with: no prompts, no stored credentials, only the
        allowed transports, the timeout, and the credentials for this URL. A private copy of an
        SSH key lives only as long as the context. Public so that what git receives can be
        inspected; it holds credentials, so never log it."""
        self._cache.mkdir(parents=True, exist_ok=True)
        config: list[tuple[str, str]] = [
            # No credential helper: nothing stored on this machine is sent, nothing is stored.
            ("credential.helper", ""),
            ("http.lowSpeedLimit", "1"),
            ("http.lowSpeedTime", str(max(1, int(self._timeout)))),
            ("protocol.allow", "never"),
            *((f"protocol.{name}.allow", "always") for name in _PROTOCOLS),
        ]
        with contextlib.ExitStack() as stack:
            try:
                config += self._access.http_config()
                identity = stack.enter_context(self._access.identity(self._cache))
            except gitcredentials.CredentialsError as err:
                raise GitSourceError(str(err)) from None
            env = {
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_COUNT": str(len(config)),
            }
            for index, (key, value) in enumerate(config):
                env[f"GIT_CONFIG_KEY_{index}"] = key
                env[f"GIT_CONFIG_VALUE_{index}"] = value
            env["GIT_SSH_COMMAND"] = gitcredentials.ssh_command(
                identity=identity,
                known_hosts=self._access.credentials.known_hosts_file,
                learned_hosts=self._cache / "known_hosts",
                timeout=self._timeout,
            )
            yield env


class _RefusedError(GitSourceError):
    """`git fetch` ran and failed (as opposed to timing out): a fallback may still work."""


def _ref_name(kind: str, name: str | None) -> str | None:
    """A branch or tag name git would accept; refused early so it cannot be read as an option or
    a pattern."""
    if name is None:
        return None
    bad = (
        not name
        or name.startswith(("-", "/", "refs/"))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "@{" in name
        or "//" in name
        or any(c in name for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in name)
    )
    if bad:
        raise GitSourceError(f"{kind} {name!r} is not a valid git ref name")
    return name


def _revision(revision: str) -> str:
    if not _SHA.fullmatch(revision):
        raise GitSourceError(
            f"revision {revision!r} is not a commit id (4 to 64 hex digits); use tag or branch "
            "for names"
        )
    return revision.lower()


def _slug(url: str) -> str:
    """The mirror's folder name: readable tail of the URL plus a hash of the whole of it."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])
    tail = tail.removesuffix(".git").strip("-.")[:40]
    return f"{tail}-{digest}" if tail else digest


def _last_line(text: str) -> str:
    """git's telling lines: every `fatal:` / `error:` one (the first often names the cause, the
    last the consequence), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(("fatal:", "error:"))]
    if telling:
        return "; ".join(telling)
    return lines[-1] if lines else ""
