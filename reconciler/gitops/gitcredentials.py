"""How `gitsource` authenticates to a git remote, and keeps the secrets out of what it shows.

Sits below `gitsource`, which holds the fetch and the mirror and asks this module for the
credential part of git's environment. `Credentials` names the files holding them (a mounted
Secret, Flux's key names); `Access` is one remote URL with its credentials: a password written into
an http(s) URL is taken out of it, the files are read each time they are needed (so a rotated Secret
is picked up), and they become an `Authorization` header scoped to the URL, a CA file, or a
private 0600 copy of an SSH key for `ssh_command`. `Access.hide` scrubs every credential and every
URL's userinfo from git's output before it reaches a log line or an error message.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import shlex
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

# The username sent with a bare token: GitHub documents `x-access-token`; GitLab, Gitea and Azure
# DevOps accept any username with a personal access token.
TOKEN_USERNAME = "x-access-token"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_HIDDEN = "***"


class CredentialsError(Exception):
    """A credentials file or folder is missing, unreadable or empty; the message names no secret."""


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
            raise CredentialsError(f"credentials folder {folder} does not exist")

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
class Access:
    """One remote URL and how to authenticate to it.

    `url` carries no password: credentials written into an http(s) URL move to `url_auth`
    (username, password) and from there to the Authorization header, so they never show in `ps`;
    explicit credential files win over them.
    """

    url: str
    credentials: Credentials
    url_auth: tuple[str, str] | None = None

    @classmethod
    def for_url(cls, url: str, credentials: Credentials) -> Access:
        """`url` as configured (stripped, not empty): a local path becomes absolute; a password in
        an http(s) URL is taken out."""
        bare, username, password = _split_url(url)
        return cls(bare, credentials, (username, password) if password else None)

    def http_config(self) -> list[tuple[str, str]]:
        """git configuration for the HTTPS credentials, from the files read now: the
        Authorization header and the CA file."""
        config: list[tuple[str, str]] = []
        header = self.authorization()
        if header is not None:
            # Scoped to this URL: a redirect to another host does not receive it.
            config.append((f"http.{self.url}.extraHeader", header))
        if self.credentials.ca_file is not None:
            config.append(("http.sslCAInfo", str(self.credentials.ca_file)))
        return config

    def authorization(self) -> str | None:
        """The `Authorization` header for an http(s) URL, from the files read now."""
        if not self.url.lower().startswith(("https://", "http://")):
            return None
        files = self.credentials
        if files.bearer_token_file is not None:
            return f"Authorization: Bearer {_read_secret(files.bearer_token_file)}"
        if files.password_file is not None:
            username = (
                _read_secret(files.username_file)
                if files.username_file is not None
                else files.username or TOKEN_USERNAME
            )
            pair = f"{username}:{_read_secret(files.password_file)}"
        elif self.url_auth is not None:
            pair = f"{self.url_auth[0]}:{self.url_auth[1]}"
        else:
            return None
        return f"Authorization: Basic {base64.b64encode(pair.encode()).decode()}"

    @contextlib.contextmanager
    def identity(self, folder: Path) -> Iterator[Path | None]:
        """A 0600 copy of the SSH key in `folder`, for an SSH URL: a Secret volume mounts files
        0644 by default, which ssh refuses for a private key, and a key without a final newline
        fails to parse. The copy lives only as long as the context."""
        key_file = self.credentials.identity_file
        if key_file is None or not self._is_ssh():
            yield None
            return
        try:
            key = key_file.read_bytes()
        except OSError as err:
            raise CredentialsError(f"cannot read the SSH key {key_file}: {err.strerror}") from None
        handle, name = tempfile.mkstemp(prefix=".identity-", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp creates it 0600
                out.write(key if key.endswith(b"\n") else key + b"\n")
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def _is_ssh(self) -> bool:
        scheme = _SCHEME.match(self.url)
        if scheme is not None:
            return scheme.group(1).lower() in ("ssh", "git+ssh", "ssh+git")
        return _is_scp_like(self.url)

    def hide(self, text: str) -> str:
        """`text` with every credential and every URL's userinfo replaced."""
        for secret in self._secrets():
            text = text.replace(secret, _HIDDEN)
        return _URL_USERINFO.sub(r"\1", text)

    def _secrets(self) -> list[str]:
        """Every credential value in play, in each spelling that could reach git's output."""
        found: list[str] = []
        files = self.credentials
        for path in (files.password_file, files.bearer_token_file):
            if path is not None:
                with contextlib.suppress(OSError, CredentialsError):
                    found.append(_read_secret(path))
        if self.url_auth is not None:
            found.append(self.url_auth[1])
        header = None
        with contextlib.suppress(OSError, CredentialsError):
            header = self.authorization()
        if header is not None:
            found.append(header.split(" ", 2)[2])
        spelled = [*found, *(urllib.parse.quote(s, safe="") for s in found)]
        return sorted({s for s in spelled if s}, key=len, reverse=True)


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


def _read_secret(path: Path) -> str:
    """A credential file's content without the final newline `kubectl create secret
    --from-file` and editors leave."""
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as err:
        raise CredentialsError(f"cannot read the credentials file {path}: {err.strerror}") from None
    if not value:
        raise CredentialsError(f"the credentials file {path} is empty")
    return value
