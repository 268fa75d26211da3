"""The git source of the GitOps loop: fetch one ref of a remote repo into a local bare mirror.

Sits at the network edge before `repo.load`: `GitSource.fetch()` brings the configured branch, tag
or pinned commit into a bare mirror kept in a cache folder (fetched incrementally, never cloned
again) and returns the commit id with a `gitsnapshot.GitSnapshot` of the configured folder at that
commit, read from tree objects with no checkout. Everything after it sees only the `Snapshot`.

Credentials come from files (a mounted Secret, Flux's key names) and are read on every fetch, so a
rotated Secret is picked up. They never reach a command line, a URL, a log line or an error
message: HTTPS credentials travel as an `http.<url>.extraHeader` set through git's
`GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` / `GIT_CONFIG_VALUE_n` environment variables, SSH keys as
a private copy of the key file named in `GIT_SSH_COMMAND`.

Every fetch is bounded by one timeout: git's own low-speed limit and ssh's connect timeout end a
stalled transfer cleanly, and gitpython's `kill_after_timeout` kills whatever is still running
(git, its remote helper, ssh) when the time is up, so a hung remote never hangs the loop.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import re
import shlex
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import git

from reconciler import gitsnapshot, source

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
# The username sent with a bare token: GitHub documents `x-access-token`; GitLab, Gitea and Azure
# DevOps accept any username with a personal access token.
TOKEN_USERNAME = "x-access-token"

# Where fetched refs live in the mirror: a namespace of their own, so that one mirror can serve
# several sources (branches, tags, pins) of the same URL without them overwriting each other.
_REFS = "refs/gitsource"
_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_FULL_SHA_LENGTHS = (40, 64)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
# Transports a configured URL may use; `ext::` and other remote helpers that run commands stay off.
_PROTOCOLS = ("https", "http", "ssh", "git", "file")
_HIDDEN = "***"


class GitSourceError(Exception):
    """A fetch failed or the source is misconfigured; the message names no credential."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Files holding the credentials for a git remote; read on every fetch, never logged.

    HTTPS: `username_file` + `password_file` (a password or a token; `username` is the literal
    username when there is no file, for a bare token), or `bearer_token_file`. SSH:
    `identity_file` (a private key without a passphrase: ssh runs in batch mode) and
    `known_hosts_file`. `ca_file`: extra CA certificates for an HTTPS server.
    """

    username: str | None = None
    username_file: Path | None = None
    password_file: Path | None = None
    bearer_token_file: Path | None = None
    identity_file: Path | None = None
    known_hosts_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def from_token_file(
        cls, token_file: str | os.PathLike[str], username: str = TOKEN_USERNAME
    ) -> Credentials:
        """`--git-token-file`: a token sent as the password of HTTP Basic auth."""
        return cls(username=username, password_file=Path(token_file))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> Credentials:
        """A mounted Secret with Flux's `GitRepository` keys: `username` / `password` or
        `bearerToken` for HTTPS, `identity` / `known_hosts` for SSH, `ca.crt` for a private CA.
        Keys that are absent are simply not used."""
        folder = Path(directory)
        if not folder.is_dir():
            raise GitSourceError(f"credentials folder {folder} does not exist")

        def key(name: str) -> Path | None:
            path = folder / name
            return path if path.is_file() else None

        return cls(
            username_file=key("username"),
            password_file=key("password"),
            bearer_token_file=key("bearerToken"),
            identity_file=key("identity"),
            known_hosts_file=key("known_hosts"),
            ca_file=key("ca.crt"),
        )


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
        credentials: Credentials | None = None,
    ) -> None:
        if sum(ref is not None for ref in (branch, tag, revision)) > 1:
            raise GitSourceError("give at most one of branch, tag and revision")
        if timeout <= 0:
            raise GitSourceError(f"the fetch timeout must be positive, not {timeout}")
        folder = source.normalize(path.strip("/")) if path.strip("/") else ""
        if folder is None:
            raise GitSourceError(f"path {path!r} leaves the repository")
        self._url, url_user, url_password = _split_url(url)
        self._branch = _ref_name("branch", branch)
        self._tag = _ref_name("tag", tag)
        self._revision = None if revision is None else _revision(revision)
        self._folder = folder
        self._shallow = shallow
        self._timeout = timeout
        self._credentials = credentials or Credentials()
        # Credentials written into the URL move to the Authorization header, so they never show
        # in `ps`; explicit credential files win.
        self._url_auth = (url_user, url_password) if url_password else None
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
        shown = self._hide(stderr).strip()
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
            reason = _last_line(self._hide(stderr))
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
            _log.warning("git gc in %s failed: %s", self.mirror, _last_line(self._hide(stderr)))

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

    # -- credentials ----------------------------------------------------------------------------

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
        header = self._authorization()
        if header is not None:
            # Scoped to this URL: a redirect to another host does not receive it.
            config.append((f"http.{self._url}.extraHeader", header))
        if self._credentials.ca_file is not None:
            config.append(("http.sslCAInfo", str(self._credentials.ca_file)))
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": str(len(config)),
        }
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        with self._identity() as identity:
            env["GIT_SSH_COMMAND"] = ssh_command(
                identity=identity,
                known_hosts=self._credentials.known_hosts_file,
                learned_hosts=self._cache / "known_hosts",
                timeout=self._timeout,
            )
            yield env

    def _authorization(self) -> str | None:
        """The `Authorization` header for an http(s) URL, from the files read now."""
        if not self._url.lower().startswith(("https://", "http://")):
            return None
        files = self._credentials
        if files.bearer_token_file is not None:
            return f"Authorization: Bearer {_read_secret(files.bearer_token_file)}"
        if files.password_file is not None:
            username = (
                _read_secret(files.username_file)
                if files.username_file is not None
                else files.username or TOKEN_USERNAME
            )
            pair = f"{username}:{_read_secret(files.password_file)}"
        elif self._url_auth is not None:
            pair = f"{self._url_auth[0]}:{self._url_auth[1]}"
        else:
            return None
        return f"Authorization: Basic {base64.b64encode(pair.encode()).decode()}"

    @contextlib.contextmanager
    def _identity(self) -> Iterator[Path | None]:
        """A 0600 copy of the SSH key: a Secret volume mounts files 0644 by default, which ssh
        refuses for a private key, and a key without a final newline fails to parse."""
        key_file = self._credentials.identity_file
        if key_file is None or not self._is_ssh():
            yield None
            return
        try:
            key = key_file.read_bytes()
        except OSError as err:
            raise GitSourceError(f"cannot read the SSH key {key_file}: {err.strerror}") from None
        handle, name = tempfile.mkstemp(prefix=".identity-", dir=self._cache)
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp creates it 0600
                out.write(key if key.endswith(b"\n") else key + b"\n")
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def _is_ssh(self) -> bool:
        scheme = _SCHEME.match(self._url)
        if scheme is not None:
            return scheme.group(1).lower() in ("ssh", "git+ssh", "ssh+git")
        return _is_scp_like(self._url)

    def _secrets(self) -> list[str]:
        """Every credential value in play, in each spelling that could reach git's output."""
        found: list[str] = []
        files = self._credentials
        for path in (files.password_file, files.bearer_token_file):
            if path is not None:
                with contextlib.suppress(OSError, GitSourceError):
                    found.append(_read_secret(path))
        if self._url_auth is not None:
            found.append(self._url_auth[1])
        header = None
        with contextlib.suppress(OSError, GitSourceError):
            header = self._authorization()
        if header is not None:
            found.append(header.split(" ", 2)[2])
        spelled = [*found, *(urllib.parse.quote(s, safe="") for s in found)]
        return sorted({s for s in spelled if s}, key=len, reverse=True)

    def _hide(self, text: str) -> str:
        """`text` with every credential and every URL's userinfo replaced."""
        for secret in self._secrets():
            text = text.replace(secret, _HIDDEN)
        return _URL_USERINFO.sub(r"\1", text)

    def _url_shown(self) -> str:
        return source.without_credentials(self._url)


class _RefusedError(GitSourceError):
    """`git fetch` ran and failed (as opposed to timing out): a fallback may still work."""


def ssh_command(
    *,
    identity: Path | None,
    known_hosts: Path | None,
    learned_hosts: Path,
    timeout: float,
) -> str:
    """`GIT_SSH_COMMAND`: batch mode (never prompt), a connect timeout and keep-alives within the
    fetch timeout, only the given key, and host keys checked.

    With a `known_hosts` file, only the hosts in it are accepted (`StrictHostKeyChecking=yes`).
    Without one, the first key a host presents is accepted and pinned in `learned_hosts`
    (`accept-new`, trust on first use): every later fetch refuses a changed key. Flux requires a
    known_hosts entry instead; give one to close the first-use window.
    """
    seconds = str(max(1, int(timeout)))
    args = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={seconds}",
        "-o", f"ServerAliveInterval={seconds}",
        "-o", "ServerAliveCountMax=1",
    ]  # fmt: skip
    if identity is not None:
        args += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    checking = "yes" if known_hosts is not None else "accept-new"
    hosts = known_hosts if known_hosts is not None else learned_hosts
    args += ["-o", f"UserKnownHostsFile={hosts}", "-o", f"StrictHostKeyChecking={checking}"]
    return shlex.join(args)


def _split_url(url: str) -> tuple[str, str, str]:
    """(url without a password, username, password): a local path becomes absolute; a password
    in an http(s) URL is taken out (it goes in a header instead)."""
    url = url.strip()
    if not url:
        raise GitSourceError("the git repository URL is empty")
    scheme = _SCHEME.match(url)
    if scheme is None:
        if _is_scp_like(url):
            return url, "", ""
        return str(Path(url).expanduser().resolve()), "", ""
    if scheme.group(1).lower() not in ("http", "https"):
        return url, "", ""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url, "", ""
    bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    username = urllib.parse.unquote(parts.username or "") or TOKEN_USERNAME
    return bare, username, urllib.parse.unquote(parts.password)


def _is_scp_like(url: str) -> bool:
    """`git@host:org/repo`: git's rule is a colon before the first slash."""
    head, colon, _ = url.partition(":")
    return bool(colon) and "/" not in head and len(head) > 1


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


def _read_secret(path: Path) -> str:
    """A credential file's content without the final newline `kubectl create secret
    --from-file` and editors leave."""
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as err:
        raise GitSourceError(f"cannot read the credentials file {path}: {err.strerror}") from None
    if not value:
        raise GitSourceError(f"the credentials file {path} is empty")
    return value


def _last_line(text: str) -> str:
    """git's telling lines: every `fatal:` / `error:` one (the first often names the cause, the
    last the consequence), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(("fatal:", "error:"))]
    if telling:
        return "; ".join(telling)
    return lines[-1] if lines else ""
