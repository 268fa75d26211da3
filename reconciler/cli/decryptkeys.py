"""Where the age identities for SOPS-encrypted files come from: the command line's edge.

`--decryption-key FILE` (an age key file), else the environment as `sops` reads it
(`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`), else, for `sync` / `controller`, the Secret named by
`--decryption-secret NAME` in the controller's namespace (every key ending in `.agekey`, as
Flux's kustomize-controller reads its decryption Secret; the caller reads the Secret, so that
`validate` and `render`, which use this module, start without the kubernetes client).
`snapshot` wraps a snapshot so its encrypted files read decrypted (`model.decryption`).
Nothing here prints or logs a key.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import objects, source
from reconciler.model import decryption, sops

F = TypeVar("F", bound=Callable[..., Any])
KEY_SUFFIX = ".agekey"


def option(command: F) -> F:
    """--decryption-key FILE (every command that loads a repo)."""
    return click.option(
        "--decryption-key",
        type=click.Path(exists=True, dir_okay=False),
        help="age key file that decrypts SOPS-encrypted files (default: $SOPS_AGE_KEY_FILE, "
        "$SOPS_AGE_KEY).",
    )(command)


def identities(key_file: str | None) -> list[sops.Identity]:
    """The age identities from --decryption-key or the environment (none: no key given).
    An unreadable key file is a usage error (exit 2), named without its content."""
    texts: list[tuple[str, str]] = []
    if key_file:
        texts.append((key_file, Path(key_file).read_text(encoding="utf-8", errors="replace")))
    else:
        env_file = os.environ.get("SOPS_AGE_KEY_FILE")
        if env_file and Path(env_file).is_file():
            texts.append(("$SOPS_AGE_KEY_FILE", Path(env_file).read_text(errors="replace")))
        if os.environ.get("SOPS_AGE_KEY"):
            texts.append(("$SOPS_AGE_KEY", os.environ["SOPS_AGE_KEY"]))
    found: list[sops.Identity] = []
    for where, text in texts:
        try:
            found.extend(sops.parse_identities(text))
        except sops.SopsError as err:
            click.echo(f"error: {where}: {err.message}", err=True)
            sys.exit(2)
    return found


def from_secret(secret: objects.Object | None, namespace: str, name: str) -> list[sops.Identity]:
    """The identities in `secret`, the Secret `namespace/name` as read from the cluster (None:
    there is none), from its `*.agekey` keys; or exit 2 saying why."""
    if secret is None:
        click.echo(f"error: --decryption-secret: no Secret {namespace}/{name}", err=True)
        sys.exit(2)
    found: list[sops.Identity] = []
    for key, value in sorted((secret.get("data") or {}).items()):
        if not key.endswith(KEY_SUFFIX):
            continue
        try:
            found.extend(sops.parse_identities(base64.b64decode(value).decode(errors="replace")))
        except sops.SopsError as err:
            click.echo(f"error: Secret {namespace}/{name} key {key}: {err.message}", err=True)
            sys.exit(2)
    if not found:
        click.echo(
            f"error: Secret {namespace}/{name} has no age identity (a key ending in {KEY_SUFFIX})",
            err=True,
        )
        sys.exit(2)
    return found


def snapshot(
    inner: source.Snapshot, key_file: str | None, *, opaque_without_key: bool = False
) -> decryption.DecryptingSnapshot:
    """`inner` whose SOPS-encrypted files read decrypted with the identities given."""
    return decryption.DecryptingSnapshot(
        inner, identities(key_file), opaque_without_key=opaque_without_key
    )
