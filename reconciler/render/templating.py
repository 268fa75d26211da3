"""The Jinja environment over `templates/`, rendering one template into objects, and reading
a static manifest there (`static_manifest`: plain YAML, such as the record's CRD).

The templates are data at the repository's top level (inside the package once installed:
`reconciler.data_dir`).

Shared by the extension renderer (`render`) and the workload renderer (`workloadobjects`).
Templates insert values with `tojson` (JSON is YAML, so quoting is never a question); `prune`
drops keys whose value is None or empty so optional fields simply do not appear. Jinja is
imported on the first render: a command whose units all come from the render cache
(`cli/rendercache.py`) never loads it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

import reconciler
from reconciler import objects

if TYPE_CHECKING:
    import jinja2

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def prune(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None and v != [] and v != {}}


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(reconciler.data_dir("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML
    )
    environment.filters["prune"] = prune
    return environment


def render_template(name: str, context: Mapping[str, Any]) -> list[objects.Object]:
    """Render one template into the objects its YAML documents hold (empty ones dropped)."""
    return _documents(render_text(name, context))


def render_text(name: str, context: Mapping[str, Any]) -> str:
    """Render one template into text (for text that is itself a template: the Helm chart)."""
    return _environment().get_template(name).render(**context)


def static_manifest(name: str) -> list[objects.Object]:
    """The objects of a manifest under `templates/` that is plain YAML, not a template (new
    objects at every call; the file is read once, as Jinja reads a template once)."""
    return _documents(_static_text(name))


def static_text(name: str) -> str:
    """A file under `templates/` as text (read once per process)."""
    return _static_text(name)


@functools.cache
def _static_text(name: str) -> str:
    return (reconciler.data_dir("templates") / name).read_text(encoding="utf-8")


def _documents(text: str) -> list[objects.Object]:
    return [doc for doc in yaml.load_all(text, Loader=_YAML_LOADER) if doc]
