"""SOPS fixtures made the way a user makes them: the real `sops` binary (built by `tests.tools`)
encrypting files for age recipients generated here with pyrage, never a hand-written imitation.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyrage

from tests import tools


@dataclass(frozen=True)
class AgeKey:
    identity: str  # AGE-SECRET-KEY-1...
    recipient: str  # age1...

    def write(self, path: Path) -> Path:
        path.write_text(f"# created by the test\n{self.identity}\n")
        return path


def age_key() -> AgeKey:
    identity = pyrage.x25519.Identity.generate()
    return AgeKey(str(identity), str(identity.to_public()))


def encrypt(path: Path, *recipients: AgeKey, extra: tuple[str, ...] = ()) -> None:
    """Encrypt `path` in place with sops for the recipients (its store from its extension)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    subprocess.run(
        [
            tools.sops(),
            "encrypt",
            "--in-place",
            "--age",
            ",".join(r.recipient for r in recipients),
            *extra,
            str(path),
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
