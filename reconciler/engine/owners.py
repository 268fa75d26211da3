"""Which source owns an extension: one source per extension, another one refused until adopted.

The rule: the record of an applied extension names its source; another source declaring
the same extension name is refused until the user adopts it explicitly, and nothing is ever
pruned because a different repo was applied. As Argo CD refuses to sync a resource another
application manages: without the rule, applying a second repo whose Extension has the same
`metadata.name` took the first one's record over and pruned what only the first declared.

A source is known by its `Snapshot.origin()`: the git remote `origin` (credentials stripped) or
the work tree's path, plus `//folder` for a folder inside the repo; a folder outside git by its
absolute path. `identity` turns that into the owner the record keeps (`spec.owner`), spelled so
that two ways of reaching the same repo compare equal: the scheme, any user name or password,
the port and a `.git` suffix are dropped and the host lower-cased, so
`https://token@GitHub.com/org/ml.git//prod`, `ssh://git@github.com/org/ml//prod` and
`git@github.com:org/ml//prod` are all `github.com/org/ml//prod`: a CI job's checkout and a
laptop's clone of one repo are one owner, and a fork (another URL) or another folder of the repo
is another. A local path is its normalized absolute path (`file://` dropped).

`claim` decides, for one extension, whether a source may reconcile it given the owner its
record names. Pure: strings in, a `Claim` out; `record` reads and writes the owner.
"""

from __future__ import annotations

import enum
import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from reconciler import source

# `user@host:path` or `host:path`, as git and scp write an SSH remote (no scheme, no slash
# before the colon; a one-letter "host" would be a Windows drive).
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]{2,}):(?P<path>.*)$")


def identity(origin: str) -> str:
    """The owner `origin` stands for (see the module docstring). Idempotent: an identity is
    its own identity, so a record's owner can be compared after a later release spells one
    differently."""
    base, folder = _split(origin.strip())
    inside = posixpath.normpath(folder).strip("/") if folder else ""
    where = _repo(base)
    return f"{where}//{inside}" if inside and inside != "." else where


def _split(origin: str) -> tuple[str, str]:
    """(the repo, the folder inside it) of `REPO//folder` (a scheme's `://` is no folder)."""
    scheme, separator, rest = origin.partition("://")
    if not separator:
        scheme, rest = "", origin
    base, _, folder = rest.partition("//")
    return (f"{scheme}://{base}" if separator else base), folder


def _repo(base: str) -> str:
    if "://" in base:
        parts = urllib.parse.urlsplit(base)
        if parts.scheme.lower() == "file":
            return _local(urllib.parse.unquote(parts.path))
        return _remote(parts.hostname or "", parts.path)
    if base.startswith("/"):
        return _local(base)
    scp = _SCP_LIKE.match(base)
    if scp is not None:
        return _remote(scp["host"], scp["path"])
    host, _, path = base.partition("/")  # already an identity: host/path
    return _remote(host, path)


def _remote(host: str, path: str) -> str:
    path = path.strip("/")
    path = path.removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path}" if path else host.lower()


def _local(path: str) -> str:
    return posixpath.normpath(path) if path else "/"


def shown(origin: str) -> str:
    """`origin` as a message may show it: never a password or token in a URL."""
    return source.without_credentials(origin)


class Verdict(enum.Enum):
    NEW = "new"  # no record yet: this source will own it
    OURS = "ours"  # the record names this source
    UNCLAIMED = "unclaimed"  # a record naming no source at all: taken over, silently
    ADOPTED = "adopted"  # another source owns it; `--adopt` takes it over
    REFUSED = "refused"  # another source owns it: nothing is applied, pruned or recorded


@dataclass(frozen=True)
class Claim:
    """Whether the source at `origin` may reconcile extension `name`, whose record names
    `owner` (shown as `owner_shown`; both "" without a record or an owner)."""

    name: str
    origin: str
    owner: str
    owner_shown: str
    verdict: Verdict

    @property
    def refused(self) -> bool:
        return self.verdict is Verdict.REFUSED

    def message(self) -> str:
        """What to tell the user about a refused or adopted claim: both sources, by name."""
        ours, theirs = shown(self.origin), shown(self.owner_shown)
        if self.verdict is Verdict.ADOPTED:
            return (
                f"owned by {theirs}; --adopt makes this source ({ours}) its owner, and what "
                "only the previous owner declared is pruned"
            )
        return (
            f"extension {self.name!r} is owned by {theirs}, not by this source ({ours}): "
            "refused, nothing applied, pruned or recorded; "
            "apply --adopt (or sync --adopt) to take it over"
        )


def claim(
    name: str, origin: str, owner: str | None, owner_shown: str = "", *, adopt: bool
) -> Claim:
    """The verdict on the source at `origin` reconciling extension `name`, whose record names
    `owner` (an identity or an origin; "" when the record names none, None when there is no
    record; `owner_shown`: how to show it), with or without `--adopt`."""
    if owner is None:
        verdict = Verdict.NEW
    elif not owner:
        verdict = Verdict.UNCLAIMED
    elif identity(owner) == identity(origin):
        verdict = Verdict.OURS
    else:
        verdict = Verdict.ADOPTED if adopt else Verdict.REFUSED
    return Claim(name, origin, owner or "", owner_shown or owner or "", verdict)
