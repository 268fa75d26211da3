"""`gitsource.GitSource`: fetching a ref of a remote repo into a bare mirror, for real.

Every test builds real repositories in `tmp_path` (a work tree pushing to a bare repo) and fetches
over real transports: a local path, `file://`, smart HTTP served by `git http-backend` behind a
small `http.server` that demands an Authorization header, and remotes that accept a connection and
never answer (http, git and ssh). Covers branch / tag / pinned commit / default branch, a folder
inside the repo, incremental fetches into the same mirror, bad refs, timeouts, HTTPS credentials
(right, wrong, in the URL, never on a command line or in a message), Flux-style Secret folders and
the ssh command line (checked by `ssh -G`; no sshd here, so no SSH fetch succeeds).
"""

from __future__ import annotations

import base64
import http.server
import os
import shlex
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import git
import pytest

from reconciler.gitops import gitcredentials, gitsource

TOKEN = "s3cret-t0ken-0123456789"


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No system or user git configuration (an `insteadOf` or a credential helper on the
    developer's machine) changes what the tests see."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))


class Upstream:
    """A work tree that commits and pushes to a bare repo, the remote under test."""

    def __init__(self, root: Path, default_branch: str = "main") -> None:
        self.bare_path = root / "remote.git"
        self.bare = git.Repo.init(self.bare_path, bare=True, initial_branch=default_branch)
        self.work = git.Repo.init(root / "work", initial_branch=default_branch)
        with self.work.config_writer() as config:
            config.set_value("user", "name", "test")
            config.set_value("user", "email", "test@example.com")

    def commit(self, files: dict[str, str], message: str, branch: str | None = None) -> str:
        if branch is not None:
            self.work.git.checkout("-B", branch)
        root = Path(str(self.work.working_dir))
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        self.work.git.add(A=True)
        sha = str(self.work.index.commit(message).hexsha)
        self.work.git.push(str(self.bare_path), f"HEAD:refs/heads/{self.work.active_branch.name}")
        return sha

    def tag(self, name: str, ref: str, annotated: bool) -> None:
        if annotated:
            self.work.create_tag(name, ref=ref, message=f"release {name}")
        else:
            self.work.create_tag(name, ref=ref)
        self.work.git.push(str(self.bare_path), f"refs/tags/{name}")


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def source_of(url: str | Path, cache: Path, **options: object) -> gitsource.GitSource:
    return gitsource.GitSource(str(url), cache, **options)  # type: ignore[arg-type]


# -- refs ------------------------------------------------------------------------------------------


def test_default_branch_is_the_remote_head(tmp_path: Path, cache: Path) -> None:
    upstream = Upstream(tmp_path / "upstream", default_branch="trunk")
    first = upstream.commit({"extension.yaml": "kind: Extension\n"}, "first")
    upstream.commit({"other.yaml": "x: 1\n"}, "elsewhere", branch="feature")

    result = source_of(upstream.bare_path, cache).fetch()

    assert result.commit == first
    assert result.ref == "HEAD"
    assert list(result.snapshot.yaml_files()) == ["extension.yaml"]
    assert result.snapshot.revision() == first
    assert result.snapshot.origin() == str(upstream.bare_path.resolve())


def test_branch_with_a_folder_inside_the_repo(upstream: Upstream, cache: Path) -> None:
    upstream.commit({"README.md": "hi\n"}, "readme")
    sha = upstream.commit(
        {"deploy/manifests/extension.yaml": "kind: Extension\n", "deploy/manifests/m/a.yml": "a\n"},
        "manifests",
        branch="release",
    )
    url = f"file://{upstream.bare_path}"

    result = source_of(url, cache, branch="release", path="deploy/manifests/").fetch()

    assert result.commit == sha
    snapshot = result.snapshot
    assert list(snapshot.yaml_files()) == ["extension.yaml", "m/a.yml"]
    assert snapshot.read_text("m/a.yml") == "a\n"
    assert not snapshot.exists("README.md")
    assert snapshot.origin() == f"{url}//deploy/manifests"
    assert source_of(url, cache, path="deploy/manifests").origin() == snapshot.origin()
    assert snapshot.display("extension.yaml") == "release:deploy/manifests/extension.yaml"


@pytest.mark.parametrize("annotated", [True, False])
def test_tag_resolves_to_its_commit(upstream: Upstream, cache: Path, annotated: bool) -> None:
    tagged = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    upstream.tag("v1.0", tagged, annotated)
    upstream.commit({"a.yaml": "v: 2\n"}, "two")

    result = source_of(upstream.bare_path, cache, tag="v1.0").fetch()

    assert result.commit == tagged
    assert result.snapshot.read_text("a.yaml") == "v: 1\n"


def test_pinned_commit_is_fetched_by_id_and_kept_shallow(upstream: Upstream, cache: Path) -> None:
    old = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    upstream.commit({"a.yaml": "v: 2\n"}, "two")
    upstream.commit({"a.yaml": "v: 3\n"}, "three")
    pinned = source_of(f"file://{upstream.bare_path}", cache, revision=old.upper())

    result = pinned.fetch()

    assert result.commit == old
    assert result.ref == old[:12]
    assert result.snapshot.read_text("a.yaml") == "v: 1\n"
    mirror = git.Repo(pinned.mirror)
    # Protocol v2 serves a wanted commit directly: one commit, no branch history came along.
    assert (pinned.mirror / "shallow").read_text().split() == [old]
    assert not any(ref.path.startswith("refs/gitsource/all/") for ref in mirror.refs)
    mirror.close()


def test_pinned_commit_from_a_v0_server_falls_back_to_a_full_fetch(
    upstream: Upstream, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    upstream.commit({"a.yaml": "v: 2\n"}, "two")
    # Protocol v0 refuses a want for a commit that is not at the tip of a ref.
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'protocol.version=0'")
    pinned = source_of(f"file://{upstream.bare_path}", cache, revision=old)

    result = pinned.fetch()

    assert result.commit == old
    assert result.snapshot.read_text("a.yaml") == "v: 1\n"
    assert not (pinned.mirror / "shallow").exists()


def test_abbreviated_commit_id(upstream: Upstream, cache: Path) -> None:
    old = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    upstream.commit({"a.yaml": "v: 2\n"}, "two")

    assert source_of(upstream.bare_path, cache, revision=old[:10]).fetch().commit == old


def test_full_history_when_not_shallow(upstream: Upstream, cache: Path) -> None:
    first = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    second = upstream.commit({"a.yaml": "v: 2\n"}, "two")
    shallow = source_of(upstream.bare_path, cache)
    shallow.fetch()
    assert (shallow.mirror / "shallow").exists()

    deep = source_of(upstream.bare_path, cache, shallow=False)
    assert deep.fetch().commit == second
    mirror = git.Repo(deep.mirror)
    assert [p.hexsha for p in mirror.commit(second).parents] == [first]
    assert not (deep.mirror / "shallow").exists()
    mirror.close()


# -- incremental fetches ---------------------------------------------------------------------------


def objects_in(repository: Path) -> int:
    counts = dict(
        line.split(": ")
        for line in git.Git(repository).execute(["git", "count-objects", "-v"]).splitlines()
    )
    return int(counts["count"]) + int(counts["in-pack"])


def test_second_fetch_picks_up_new_commits_into_the_same_mirror(
    upstream: Upstream, cache: Path
) -> None:
    first = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    followed = source_of(f"file://{upstream.bare_path}", cache, branch="main")
    before = followed.fetch()
    marker = followed.mirror / "kept-across-fetches"
    marker.write_text("the mirror is not re-cloned\n")
    assert objects_in(followed.mirror) == 3  # commit, tree, blob

    assert followed.fetch().commit == first  # nothing new: same answer
    second = upstream.commit({"a.yaml": "v: 2\n", "b.yaml": "b: 1\n"}, "two")
    after = followed.fetch()

    assert after.commit == second
    assert list(after.snapshot.yaml_files()) == ["a.yaml", "b.yaml"]
    assert marker.exists()
    # Added to what was there (a fresh shallow clone would hold 4): commit, tree, two blobs.
    assert objects_in(followed.mirror) == 3 + 4
    # The last good revision stays readable: a new commit may turn out invalid.
    assert before.snapshot.read_text("a.yaml") == "v: 1\n"
    assert list(cache.glob("*.git")) == [followed.mirror]


def test_force_pushed_branch_is_followed(upstream: Upstream, cache: Path) -> None:
    upstream.commit({"a.yaml": "v: 1\n"}, "one")
    followed = source_of(upstream.bare_path, cache, branch="main")
    followed.fetch()
    upstream.work.git.reset("--hard", "HEAD^0")
    rewritten = upstream.commit({"a.yaml": "v: rewritten\n"}, "amended")
    upstream.work.git.push("--force", str(upstream.bare_path), "HEAD:refs/heads/main")

    assert followed.fetch().commit == rewritten


def test_a_stale_lock_left_by_a_killed_git_does_not_wedge_the_mirror(
    upstream: Upstream, cache: Path
) -> None:
    upstream.commit({"a.yaml": "v: 1\n"}, "one")
    followed = source_of(upstream.bare_path, cache, branch="main")
    followed.fetch()
    # What a SIGKILLed `git fetch --depth=1` leaves behind.
    (followed.mirror / "shallow.lock").write_text("")
    (followed.mirror / "refs" / "gitsource" / "heads" / "main.lock").write_text("")
    second = upstream.commit({"a.yaml": "v: 2\n"}, "two")

    assert followed.fetch().commit == second


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"branch": "nope"}, "the remote has no branch 'nope'"),
        ({"tag": "v9"}, "the remote has no tag 'v9'"),
        ({"revision": "0123456789" * 4}, "revision 0123456789012345678901234567890123456789 is"),
    ],
)
def test_a_missing_ref_is_a_clear_error(
    upstream: Upstream, cache: Path, options: dict[str, str], expected: str
) -> None:
    upstream.commit({"a.yaml": "v: 1\n"}, "one")

    with pytest.raises(gitsource.GitSourceError, match=expected) as caught:
        source_of(f"file://{upstream.bare_path}", cache, **options).fetch()
    assert f"file://{upstream.bare_path}" in str(caught.value)


def test_a_path_missing_at_the_commit_is_an_error(upstream: Upstream, cache: Path) -> None:
    upstream.commit({"a.yaml": "v: 1\n", "file": "x\n"}, "one")

    for folder in ("manifests", "file"):
        with pytest.raises(gitsource.GitSourceError, match=f"path '{folder}' is not a folder"):
            source_of(upstream.bare_path, cache, path=folder).fetch()


def test_a_missing_repository_is_an_error(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(gitsource.GitSourceError, match="git fetch of the default branch"):
        source_of(tmp_path / "nothing-here.git", cache, timeout=10).fetch()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"branch": "main", "tag": "v1"}, "at most one of"),
        ({"branch": "--upload-pack=touch /tmp/x"}, "not a valid git ref name"),
        ({"tag": "a..b"}, "not a valid git ref name"),
        ({"revision": "main"}, "not a commit id"),
        ({"path": "../outside"}, "leaves the repository"),
        ({"timeout": 0}, "must be positive"),
    ],
)
def test_bad_configuration_is_refused_up_front(
    cache: Path, options: dict[str, object], expected: str
) -> None:
    with pytest.raises(gitsource.GitSourceError, match=expected):
        source_of("https://example.com/repo.git", cache, **options)


# -- timeouts --------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that completes the handshake (the kernel's backlog) and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/repo.git",  # curl's low-speed limit ends it
        "git://127.0.0.1:{port}/repo.git",  # the git protocol has no timeout: killed
        "ssh://git@127.0.0.1:{port}/repo.git",  # a real ssh waiting for a banner
    ],
)
def test_a_hung_remote_times_out(silent_port: int, cache: Path, url: str) -> None:
    hung = source_of(url.format(port=silent_port), cache, timeout=2)

    started = time.monotonic()
    with pytest.raises(gitsource.GitSourceError, match="timed out after 2s"):
        hung.fetch()
    assert time.monotonic() - started < 6


# -- HTTPS credentials against a real smart-HTTP server --------------------------------------------


class GitHTTPServer(http.server.ThreadingHTTPServer):
    """`git http-backend` as CGI behind a required Authorization header. While git talks to it,
    every process's command line on the machine is checked for the credentials."""

    daemon_threads = True

    def __init__(self, project_root: Path, authorization: str, secrets: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), GitHTTPHandler)
        self.project_root = project_root
        self.authorization = authorization
        self.secrets = secrets
        self.leaks: list[str] = []
        self.saw_git_client = False
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def inspect_command_lines(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # gone already
            if "remote-http" in cmdline:
                self.saw_git_client = True
            self.leaks += [cmdline for secret in self.secrets if secret in cmdline]


class GitHTTPHandler(http.server.BaseHTTPRequestHandler):
    server: GitHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the server's attributes, not its log."""

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def serve(self) -> None:
        self.server.requests += 1
        self.server.inspect_command_lines()
        if self.headers.get("Authorization") != self.server.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        assert "chunked" not in self.headers.get("Transfer-Encoding", "")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(self.server.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": "127.0.0.1",
        }
        backend = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        )
        head, _, payload = backend.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


Serve = Callable[[str, list[str]], GitHTTPServer]


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def serve(upstream: Upstream) -> Iterator[Serve]:
    """Start a server over the upstream's bare repo: `serve(authorization, secrets)`."""
    started: list[GitHTTPServer] = []

    def start(authorization: str, secrets: list[str]) -> GitHTTPServer:
        server = GitHTTPServer(upstream.bare_path.parent, authorization, secrets)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")  # as `kubectl create secret --from-file` leaves it
    return path


def test_token_file_authenticates_without_showing_the_token(
    upstream: Upstream, serve: Serve, cache: Path, tmp_path: Path
) -> None:
    sha = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    expected = basic(gitcredentials.TOKEN_USERNAME, TOKEN)
    server = serve(expected, [TOKEN, expected.split()[1]])
    url = f"{server.url}/remote.git"
    good = gitcredentials.Credentials.from_token_file(write_secret(tmp_path / "token", TOKEN))

    result = source_of(url, cache, credentials=good).fetch()

    assert result.commit == sha
    assert server.saw_git_client, "the git client was never seen in /proc: the check is void"
    assert server.leaks == []

    wrong = gitcredentials.Credentials.from_token_file(
        write_secret(tmp_path / "bad", "not-" + TOKEN)
    )
    with pytest.raises(gitsource.GitSourceError, match="refused the credentials") as caught:
        source_of(url, cache, credentials=wrong).fetch()
    message = str(caught.value)
    assert url in message
    assert TOKEN not in message
    assert (
        base64.b64encode(f"{gitcredentials.TOKEN_USERNAME}:not-{TOKEN}".encode()).decode()
        not in message
    )
    assert server.leaks == []


def test_no_credentials_against_a_server_that_wants_them(
    upstream: Upstream, serve: Serve, cache: Path
) -> None:
    upstream.commit({"a.yaml": "v: 1\n"}, "one")
    server = serve(basic("x", "y"), [])

    with pytest.raises(gitsource.GitSourceError, match="refused the credentials"):
        source_of(f"{server.url}/remote.git", cache, timeout=10).fetch()


def test_flux_secret_folder_with_username_and_password(
    upstream: Upstream, serve: Serve, cache: Path, tmp_path: Path
) -> None:
    sha = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    server = serve(basic("alice", "pa ss:word"), ["pa ss:word"])
    secret = tmp_path / "secret"
    write_secret(secret / "username", "alice")
    write_secret(secret / "password", "pa ss:word")

    credentials = gitcredentials.Credentials.from_directory(secret)

    assert credentials.identity_file is None
    assert source_of(f"{server.url}/remote.git", cache, credentials=credentials).fetch().commit == (
        sha
    )
    assert server.leaks == []


def test_flux_secret_folder_with_a_bearer_token(
    upstream: Upstream, serve: Serve, cache: Path, tmp_path: Path
) -> None:
    sha = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    server = serve(f"Bearer {TOKEN}", [TOKEN])
    write_secret(tmp_path / "secret" / "bearerToken", TOKEN)

    credentials = gitcredentials.Credentials.from_directory(tmp_path / "secret")

    assert source_of(f"{server.url}/remote.git", cache, credentials=credentials).fetch().commit == (
        sha
    )
    assert server.leaks == []


def test_credentials_in_the_url_move_to_a_header(
    upstream: Upstream, serve: Serve, cache: Path
) -> None:
    sha = upstream.commit({"a.yaml": "v: 1\n"}, "one")
    server = serve(basic("bob", TOKEN), [TOKEN])
    host = server.url.removeprefix("http://")

    with_token = source_of(f"http://bob:{TOKEN}@{host}/remote.git", cache)
    result = with_token.fetch()

    assert result.commit == sha
    assert result.snapshot.origin() == f"{server.url}/remote.git"
    assert TOKEN not in with_token.mirror.name
    assert server.leaks == []
    with pytest.raises(gitsource.GitSourceError) as caught:
        source_of(f"http://bob:{TOKEN}@{host}/missing.git", cache, timeout=10).fetch()
    assert TOKEN not in str(caught.value)
    assert f"{server.url}/missing.git" in str(caught.value)


def test_credentials_are_read_on_every_fetch(
    upstream: Upstream, serve: Serve, cache: Path, tmp_path: Path
) -> None:
    """A rotated Secret is picked up without restarting."""
    upstream.commit({"a.yaml": "v: 1\n"}, "one")
    server = serve(basic(gitcredentials.TOKEN_USERNAME, "new-token"), [])
    token = write_secret(tmp_path / "token", "old-token")
    followed = source_of(
        f"{server.url}/remote.git",
        cache,
        credentials=gitcredentials.Credentials.from_token_file(token),
    )
    with pytest.raises(gitsource.GitSourceError, match="refused the credentials"):
        followed.fetch()

    write_secret(token, "new-token")
    assert followed.fetch().commit


# -- SSH: the command line and the key, checked by ssh itself --------------------------------------


def ssh_config(command: str) -> dict[str, list[str]]:
    """What ssh makes of `command`'s options (`ssh -G` resolves them without connecting)."""
    args = shlex.split(command)
    assert args[0] == "ssh"
    out = subprocess.run(
        ["ssh", "-F", "/dev/null", "-G", *args[1:], "example.com"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, []).append(value)
    return found


def test_ssh_command_with_known_hosts(tmp_path: Path) -> None:
    (tmp_path / "my key").write_text("")  # `ssh -G` lists only identity files that exist
    command = gitcredentials.ssh_command(
        identity=tmp_path / "my key",
        known_hosts=tmp_path / "known_hosts",
        learned_hosts=tmp_path / "learned",
        timeout=7,
    )

    config = ssh_config(command)
    assert config["identityfile"] == [str(tmp_path / "my key")]
    assert config["identitiesonly"] == ["yes"]
    assert config["batchmode"] == ["yes"]
    assert config["connecttimeout"] == ["7"]
    assert config["stricthostkeychecking"] == ["true"]
    assert config["userknownhostsfile"] == [str(tmp_path / "known_hosts")]


def test_ssh_command_without_known_hosts_trusts_on_first_use(tmp_path: Path) -> None:
    command = gitcredentials.ssh_command(
        identity=None, known_hosts=None, learned_hosts=tmp_path / "learned", timeout=0.5
    )

    config = ssh_config(command)
    assert config["stricthostkeychecking"] == ["accept-new"]
    assert config["userknownhostsfile"] == [str(tmp_path / "learned")]
    assert config["connecttimeout"] == ["1"]
    assert "-i" not in shlex.split(command)


def test_ssh_key_from_a_secret_is_handed_to_ssh_as_a_private_copy(
    tmp_path: Path, cache: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(secret / "identity")], check=True
    )
    # As a Secret volume mounts it: world-readable, and often without the final newline.
    key = (secret / "identity").read_text().rstrip("\n")
    (secret / "identity").write_text(key)
    (secret / "identity").chmod(0o644)
    write_secret(secret / "known_hosts", "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA")
    refused = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(secret / "identity")], capture_output=True, check=False
    )
    assert refused.returncode != 0  # ssh would not use the mounted file as it is

    over_ssh = source_of(
        "git@example.com:org/repo.git",
        cache,
        credentials=gitcredentials.Credentials.from_directory(secret),
    )
    with over_ssh.git_environment() as env:
        config = ssh_config(env["GIT_SSH_COMMAND"])
        copy = Path(config["identityfile"][0])
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        public = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(copy)], capture_output=True, text=True, check=True
        ).stdout
        assert public.split()[:2] == (secret / "identity.pub").read_text().split()[:2]
        assert config["userknownhostsfile"] == [str(secret / "known_hosts")]
        assert "extraHeader" not in " ".join(env.values())  # no HTTP header for an ssh URL
    assert not copy.exists()


def test_https_environment_carries_the_header_not_the_command_line(
    tmp_path: Path, cache: Path
) -> None:
    token = write_secret(tmp_path / "token", TOKEN)
    url = "https://git.example.com/org/repo.git"
    over_https = source_of(
        url, cache, credentials=gitcredentials.Credentials.from_token_file(token, username="me")
    )

    with over_https.git_environment() as env:
        count = int(env["GIT_CONFIG_COUNT"])
        config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}
    assert config[f"http.{url}.extraHeader"] == f"Authorization: {basic('me', TOKEN)}"
    assert config["credential.helper"] == ""
    assert "protocol.ext.allow" not in config  # remote helpers that run commands stay off
    assert config["protocol.allow"] == "never"
    assert "-i" not in shlex.split(env["GIT_SSH_COMMAND"])
