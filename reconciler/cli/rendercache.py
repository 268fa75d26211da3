"""The render units `plan` and `apply` keep on disk, so that the next one of the same repo
renders only what changed: at 10,000 objects rendering is most of a no-op apply's time. Beside
them, each file's parse (plain data, keyed by the file's text: parsing is ~40 % of loading a
repo), and the fingerprint answers the command's planning computed (`fingerprint.remembered`:
digests, fingerprints and booleans), so the next one does not walk every unchanged object's
fields against its managedFields again.

A `memo.Memo` keys each render unit by everything its renderer reads (model values, file ids);
what it cannot see is the code that renders, so the kept units are tied to a digest of this
package's code, templates and schemas and of the Python version (a new release, or an edited
template in a checkout, starts afresh). One file per repo folder, in `$RECONCILER_CACHE_DIR`
(empty: off), else `$XDG_CACHE_HOME/mlext-reconciler`, else `~/.cache/mlext-reconciler`; the
folder is made readable by its owner only, and a repo's file unused for 30 days is removed.

What is written holds no secret value: no unit that renders a Secret or parse that holds one
(an answer keeps only digests of what it was computed from), and nothing at all for a repo with
SOPS-encrypted files that were decrypted (their plaintext could be in a ConfigMap).
An unreadable or foreign file is ignored, and a file that cannot be written only costs the next
command its head start; the cache never changes what is rendered, only how fast.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import marshal
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import reconciler
from reconciler import source
from reconciler.engine import fingerprint, reuse
from reconciler.model import decryption, memo

log = logging.getLogger(__name__)

ENVIRONMENT = "RECONCILER_CACHE_DIR"
_FORMAT = 2  # of the file itself (2: with the fingerprint answers)
UNUSED_FOR = 30 * 24 * 3600.0  # seconds after which another repo's file is removed


def directory() -> Path | None:
    """Where the units are kept, or None when the cache is off."""
    configured = os.environ.get(ENVIRONMENT)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlext-reconciler"


@functools.cache
def code_id() -> str:
    """A digest of what renders: the Python version (marshal's format follows it) and every
    file of this package's code, templates and schemas."""
    digest = hashlib.sha256(f"{_FORMAT} {sys.version}".encode())
    package = Path(reconciler.__file__).parent
    folders = [package, reconciler.data_dir("templates"), reconciler.data_dir("schemas")]
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _file(root: str) -> Path | None:
    folder = directory()
    if folder is None:
        return None
    name = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:24]
    return folder / f"render-{name}.marshal"


@contextlib.contextmanager
def reusing(root: str, snapshot: source.Snapshot) -> Iterator[reuse.Reuse]:
    """For a command's load, render and plan of the repo at `root`: a memo holding the units
    the last one kept (`_opened`); what the block used and computed is kept for the next one
    when it ends without an error (`_keep`)."""
    used = _opened(root)
    yield reuse.Reuse(used)
    _keep(root, used, snapshot)


def _opened(root: str) -> memo.Memo:
    """A memo holding the units the last `plan` or `apply` of the repo at `root` kept; the
    fingerprint answers it kept are learned."""
    found = memo.Memo()
    path = _file(root)
    if path is None or not path.is_file():
        return found
    try:
        kept = marshal.loads(path.read_bytes())
        if isinstance(kept, dict) and kept.get("code") == code_id():
            found.take_frozen_units(kept["units"])
            fingerprint.learn(kept["answers"])
    except (OSError, ValueError, EOFError, TypeError, KeyError) as err:
        log.debug("render cache %s ignored: %s", path, err)
    return found


def _keep(root: str, used: memo.Memo, snapshot: source.Snapshot) -> None:
    """Write the units and parses `used` computed or reused, and the fingerprint answers this
    process holds, for the next command (not when none of them was computed: the file already
    holds it all, and is only marked as used)."""
    path = _file(root)
    if path is None:
        return
    if used.copied_misses == 0 and fingerprint.computed() == 0:
        with contextlib.suppress(OSError):
            os.utime(path)  # used today: not another repo's to remove after UNUSED_FOR
        return
    if isinstance(snapshot, decryption.DecryptingSnapshot) and snapshot.decrypted():
        return
    kept = {"code": code_id(), "units": used.frozen_units(), "answers": fingerprint.remembered()}
    data = marshal.dumps(kept)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".render-")
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(lambda: Path(temporary).unlink(missing_ok=True))
            with os.fdopen(descriptor, "wb") as out:  # mkstemp: readable by its owner only
                out.write(data)
            os.replace(temporary, path)
        _forget_old(path.parent, time.time() - UNUSED_FOR)
    except OSError as err:
        log.debug("render cache %s not written: %s", path, err)


def _forget_old(folder: Path, before: float) -> None:
    """Remove the files of repos no command has used since `before` (one per folder ever
    applied would otherwise pile up)."""
    for old in folder.glob("render-*.marshal"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < before:
                old.unlink()
