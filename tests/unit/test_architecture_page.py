"""docs/architecture.md is the only description of the layout, so it must name every module.

Each module is named by its path under `reconciler/` (`model/settings.py`, `kube.py`), a
subpackage by its folder (`model/`): the convention of the page's "Layout: every module". A
module added without a line there fails here, naming it; so does a line left for a module that
is gone, so the page cannot drift either way.
"""

from __future__ import annotations

import re

from tests import tools

PACKAGE = tools.ROOT / "reconciler"
PAGE = tools.ROOT / "docs" / "architecture.md"


def module_names() -> list[str]:
    """Every module and subpackage of the package, as the page names them."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.name == "__init__.py":
            if relative.parent.parts:  # the package itself is `reconciler/`
                names.append(f"{relative.parent.as_posix()}/")
        else:
            names.append(relative.as_posix())
    return names


def mentioned(name: str, text: str) -> bool:
    # Not a longer path ending the same way: `config.py` is not `router/config.py`.
    return re.search(rf"(?<![\w/.]){re.escape(name)}(?![\w])", text) is not None


def test_every_module_is_on_the_architecture_page() -> None:
    text = PAGE.read_text()
    missing = [name for name in module_names() if not mentioned(name, text)]
    assert not missing, f"docs/architecture.md does not mention: {', '.join(missing)}"


def test_the_page_names_no_module_that_is_gone() -> None:
    layout = PAGE.read_text().split("## Layout: every module", 1)[1]
    named = set(re.findall(r"^\s+((?:[a-z]+/)?[a-z_]+\.py)\s", layout, re.MULTILINE))
    gone = sorted(name for name in named if not (PACKAGE / name).is_file())
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"


def test_the_check_sees_a_missing_module() -> None:
    assert mentioned("model/settings.py", "  model/settings.py   the settings table")
    assert not mentioned("config.py", "  router/config.py   router.yaml")
    assert not mentioned("model/", "  router/model/ something")
