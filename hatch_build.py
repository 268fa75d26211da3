"""The hatch build hook that writes the commit a wheel or sdist is built from into it.

The file lands as `reconciler/COMMIT`, where `reconciler/buildinfo.py` reads it (for
`reconciler --version` and the `build_info` metric). The commit is `RECONCILER_COMMIT` when set
(the Dockerfile's build has no `.git`: the image's builder passes it in), else the HEAD of the
checkout being built. An sdist carries the file, so a wheel built from it keeps the commit; an
editable install gets none (a checkout asks git at run time). No commit found: no file, and the
package says `commit unknown`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _buildinfo(root: Path) -> ModuleType:
    """`reconciler/buildinfo.py` loaded from the tree being built (it imports only the standard
    library), so that the file name and the question put to git are written once."""
    spec = importlib.util.spec_from_file_location(
        "_reconciler_buildinfo", root / "reconciler" / "buildinfo.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CommitHook(BuildHookInterface):  # type: ignore[type-arg]  # generic in its config
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        buildinfo = _buildinfo(root)
        target = f"reconciler/{buildinfo.COMMIT_FILE}"
        if (root / target).is_file():
            return  # an unpacked sdist: the file is part of the package already
        found = os.environ.get("RECONCILER_COMMIT", "").strip() or buildinfo.commit(
            root / "reconciler"
        )
        if not found:
            return
        self._folder = tempfile.mkdtemp(prefix="reconciler-build-")
        written = Path(self._folder) / buildinfo.COMMIT_FILE
        written.write_text(found + "\n")
        build_data["force_include"][str(written)] = target

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        folder = getattr(self, "_folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
