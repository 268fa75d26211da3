"""The notifications file (`--notifications FILE`): where the loop sends what it did.

Sits under `notifications` and `notifydispatch`, beside the loop's other settings. `parse` reads
the file's text into a `Config` of `Provider`s, or every problem at once as
`FILE:LINE: field.path: message` (the file is YAML with the lines kept, checked against
`schemas/Notifications.json`, then the rules a schema cannot say: which provider needs a token,
a repository URL for github, unique names). `parse` is pure; `load` reads the file first.

Secrets stay out of the file's text and out of every log line: a provider names where its
address and token are (`addressFile`, `tokenFile`, or a Secret's `address` / `token` keys through
`secretRef`), and `Provider.secrets` turns that into `Secrets`, the two values read when a
message is sent (so a rotated file is picked up) through the readers the runtime hands in.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.model import documents, problems, schemas

SCHEMA = "Notifications"
EVENT_KINDS = ("applied", "refused", "drift", "health")
DEFAULT_DEDUPE_WINDOW = 300.0
# The types whose address is the secret itself (whoever has the URL can post), and those that
# sign or authenticate with a token.
NEEDS_TOKEN = ("generic-hmac", "github")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_REPOSITORY = re.compile(r"^/([^/]+)/([^/]+?)(?:\.git)?/?$")

# How a Secret's value is read: (Secret name, key) -> its text, None when absent.
ReadSecret = Callable[[str, str], str | None]


class ConfigError(ValueError):
    """The notifications file is unreadable or invalid: `lines` are FILE:LINE problems."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Secrets:
    """A provider's address and token, each read when a message is sent."""

    address: Callable[[], str]
    token: Callable[[], str]


@dataclass(frozen=True)
class Provider:
    """One destination: its type, where its secrets are, and the events it wants."""

    name: str
    type: str  # generic | generic-hmac | slack | msteams | github
    address: str = ""
    address_file: Path | None = None
    token_file: Path | None = None
    secret_ref: str = ""  # a Secret's name, keys `address` and `token`
    api_url: str = ""  # github: the API's base URL ("" derived from the address)
    target_url: str = ""  # github: the link of each status ("" none)
    events: frozenset[str] = frozenset(EVENT_KINDS)
    extensions: frozenset[str] | None = None  # None: every extension

    def wants(self, kind: str, extension: str) -> bool:
        return kind in self.events and (self.extensions is None or extension in self.extensions)

    def secrets(self, read_secret: ReadSecret) -> Secrets:
        """Where this provider's address and token are read from; `read_secret` reads a
        Secret's key (through the cluster)."""

        def reader(plain: str, file: Path | None, key: str) -> Callable[[], str]:
            if plain:
                return lambda: plain
            if file is not None:
                return lambda: file.read_text(encoding="utf-8").strip()
            if self.secret_ref:
                return lambda: (read_secret(self.secret_ref, key) or "").strip()
            return lambda: ""

        return Secrets(
            reader(self.address, self.address_file, "address"),
            reader("", self.token_file, "token"),
        )


@dataclass(frozen=True)
class Config:
    providers: tuple[Provider, ...]
    dedupe_window: float = DEFAULT_DEDUPE_WINDOW


def load(path: str) -> Config:
    """The file at `path`, parsed (ConfigError when it cannot be read or is invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{path}: cannot read the notifications file: {err.strerror}"]) from err
    return parse(path, text)


def parse(path: str, text: str) -> Config:
    """`text`, the notifications file at `path`, as a `Config`; every problem in one ConfigError."""
    parsed = documents.parse(path, text)
    found = [str(p) for p in parsed.problems]
    if len(parsed.documents) != 1 and not found:
        found.append(f"{path}:1: the notifications file is one YAML document")
    if found:
        raise ConfigError(found)
    (document,) = parsed.documents

    def problem(where: problems.FieldPath, message: str) -> str:
        field = problems.format_field_path(where)
        return str(problems.Problem(path, document.line_of(where), field, message))

    found = [problem(where, message) for where, message in schemas.validate(SCHEMA, document.data)]
    if found:
        raise ConfigError(found)
    data = document.data
    folder = Path(path).parent
    providers = []
    seen: set[str] = set()
    for index, entry in enumerate(data["providers"]):
        at: problems.FieldPath = ("providers", index)
        provider = _provider(entry, folder)
        if provider.name in seen:
            found.append(problem((*at, "name"), f"a second provider named {provider.name!r}"))
        seen.add(provider.name)
        found.extend(problem((*at, field), message) for field, message in _rules(entry))
        providers.append(provider)
    if found:
        raise ConfigError(found)
    window = data.get("dedupeWindow")
    return Config(tuple(providers), _seconds(window) if window else DEFAULT_DEDUPE_WINDOW)


def _provider(entry: dict[str, object], folder: Path) -> Provider:
    def file(key: str) -> Path | None:
        given = entry.get(key)
        return folder / str(given) if given else None

    events = entry.get("events")
    extensions = entry.get("extensions")
    return Provider(
        name=str(entry["name"]),
        type=str(entry["type"]),
        address=str(entry.get("address") or ""),
        address_file=file("addressFile"),
        token_file=file("tokenFile"),
        secret_ref=str((entry.get("secretRef") or {}).get("name") or ""),  # type: ignore[attr-defined]
        api_url=str(entry.get("apiURL") or "").rstrip("/"),
        target_url=str(entry.get("targetURL") or ""),
        events=frozenset(events) if isinstance(events, list) else frozenset(EVENT_KINDS),
        extensions=frozenset(extensions) if isinstance(extensions, list) else None,
    )


def _rules(entry: dict[str, object]) -> list[tuple[str, str]]:
    """The rules across one provider's fields: (field, message) per broken one."""
    kind = entry["type"]
    found = []
    given = [key for key in ("address", "addressFile") if key in entry]
    if len(given) > 1:
        found.append(("addressFile", "give address or addressFile, not both"))
    if not given and "secretRef" not in entry:
        found.append(("address", "required: address, addressFile, or a secretRef with `address`"))
    if kind in NEEDS_TOKEN and "tokenFile" not in entry and "secretRef" not in entry:
        what = "the HMAC key" if kind == "generic-hmac" else "the API token"
        found.append(("tokenFile", f"{kind} needs {what}: tokenFile, or a secretRef with `token`"))
    for key in ("apiURL", "targetURL"):
        if kind != "github" and key in entry:
            found.append((key, "only a github provider has it"))
    if kind == "github" and "address" in entry and repository(str(entry["address"])) is None:
        found.append(("address", "must be the repository's URL: https://HOST/OWNER/REPO"))
    if kind in ("slack", "msteams") and "address" in entry:
        found.append(("address", f"a {kind} webhook URL is a secret: use addressFile or secretRef"))
    return found


def repository(address: str) -> tuple[str, str, str] | None:
    """(host, owner, repo) of a repository URL such as https://github.com/org/manifests."""
    url = urllib.parse.urlsplit(address)
    matched = _REPOSITORY.match(url.path)
    if not url.hostname or matched is None:
        return None
    return url.hostname, matched.group(1), matched.group(2)


def _seconds(duration: str) -> float:
    return float(duration[:-1]) * _UNITS[duration[-1]]
