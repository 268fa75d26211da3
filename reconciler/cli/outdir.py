"""Writing rendered objects to a folder, one file each (`reconciler render --out-dir`).

The only place the renderer's output touches the file system. A re-render replaces the files a
previous render wrote (named `NNN-kind-namespace-name.yaml`) and leaves every other file alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from reconciler import objects

_RENDERED_FILE = re.compile(r"^\d{3}-.+\.(yaml|json)$")


def write_objects(
    folder: Path, rendered: Sequence[objects.Object], output_format: str, private: bool
) -> int:
    """Write each object to its own file; `private` files (real secrets) are mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file() and _RENDERED_FILE.match(stale.name):
            stale.unlink()
    for index, obj in enumerate(rendered):
        name = objects.file_name(index, obj)
        if output_format == "json":
            name = name.removesuffix(".yaml") + ".json"
            text = objects.to_json([obj])
        else:
            text = objects.to_yaml([obj])
        target = folder / name
        mode = 0o600 if private else 0o644
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    return len(rendered)
