"""The JSON Schemas published for editors (`schemas/editor/`), made from the validator's.

The validator's schemas (`schemas/*.json`, draft 2020-12, referring to each other by `$id`) stay
the one description of each manifest kind; the editors' are written from them here, because an
editor needs three things they are not: draft-07 (what yaml-language-server, the YAML support
of VS Code and other editors, validates with), self-contained (a schema opened from a path or
a raw URL cannot resolve `https://gitops.mlext.io/schemas/Common.json`: every schema it refers
to is bundled under `definitions`), and the Extension's settings enumerated: each key of the
settings table (`settings.SETTINGS`) a property of `spec.config` or `spec.configProtected` with
its type, choices, default and description, each older name (`settings.ALIASES`) one marked
deprecated, so an editor completes and explains them. Other keys stay allowed as the validator
allows them (keys match case-insensitively, `nodeSelector.KEY` entries; the validator names an
unknown one).

One schema per document shape: the kinds `Extension`, `InstanceType`, `InstanceTypeList`,
`Job`, `Deployment`, `Endpoint` (the `kind:` envelope with its spec), and the ML CLI v2 shapes
`CommandJob`, `OnlineDeployment`, `OnlineEndpoint` and `OlderEndpoint` (a `deployments:` list).
`reconciler schemas DIR` writes them; a unit test checks that `schemas/editor/` is what this
module makes now. Pure: schemas in, schemas out.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from reconciler.model import schemas, settings

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# Keywords whose value maps names to schemas (not keywords to walk into as schemas).
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
# Published name -> (validator schema, the kind its `kind:` envelope holds, if enveloped).
SHAPES: dict[str, tuple[str, str | None]] = {
    "Extension": ("Extension", None),
    "InstanceType": ("InstanceType", None),
    "InstanceTypeList": ("InstanceTypeList", None),
    "Job": ("Job", "Job"),
    "Deployment": ("Deployment", "Deployment"),
    "Endpoint": ("OnlineEndpoint", "Endpoint"),
    "CommandJob": ("Job", None),
    "OnlineDeployment": ("Deployment", None),
    "OnlineEndpoint": ("OnlineEndpoint", None),
    "OlderEndpoint": ("Endpoint", None),
}
# The older endpoint's `deployments:` items are Deployments (the validator checks each alone).
_ITEMS_OF = {"Endpoint": ("deployments", "Deployment")}
_TRUE_OR_FALSE = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$"


def _convert(node: Any, owner: str, root: str, found: set[str]) -> Any:
    """A 2020-12 schema node as draft-07 inside the bundle whose root is the schema `root`:
    `$defs` -> `definitions`, every `$ref` to a pointer into the bundle (`owner`: the schema
    the node belongs to; the others are found in `definitions` under their names), a `$ref`
    with sibling keywords wrapped in `allOf` (draft-07 ignores a `$ref`'s siblings)."""
    if isinstance(node, list):
        return [_convert(item, owner, root, found) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$id", "$schema"):
            continue
        if key in _SCHEMA_MAPS:
            name = "definitions" if key == "$defs" else key
            converted[name] = {k: _convert(v, owner, root, found) for k, v in value.items()}
        elif key == "$ref":
            file, _, pointer = value.partition("#")
            schema = file.removesuffix(".json") or owner
            pointer = pointer.replace("/$defs/", "/definitions/")
            if schema == root:
                converted[key] = f"#{pointer}"
            else:
                found.add(schema)
                converted[key] = f"#/definitions/{schema}{pointer}"
        else:
            converted[key] = _convert(value, owner, root, found)
    if "$ref" in converted and len(converted) > 1:
        ref = converted.pop("$ref")
        converted["allOf"] = [{"$ref": ref}, *converted.get("allOf", [])]
    return converted


def _bundle(root: dict[str, Any], root_name: str) -> dict[str, Any]:
    """`root` (the schema `root_name`, maybe amended) with every schema it refers to, at any
    depth, under `definitions` by name."""
    found: set[str] = set()
    bundled = _convert(root, root_name, root_name, found)
    definitions = bundled.setdefault("definitions", {})
    done: set[str] = set()
    while found - done:
        name = sorted(found - done)[0]
        done.add(name)
        if name in definitions:  # a file named like one of the root's own definitions
            raise AssertionError(f"schema {name} clashes with a definition of the root")
        definitions[name] = _convert(schemas.load(name), name, root_name, found)
    return {"$schema": DRAFT_07, **bundled}


def _setting_schema(setting: settings.Setting) -> dict[str, Any]:
    by_type: dict[settings.Type, dict[str, Any]] = {
        settings.Type.BOOL: {"type": ["boolean", "string"], "pattern": _TRUE_OR_FALSE},
        settings.Type.CHOICE: {"type": "string", "enum": list(setting.choices)},
        settings.Type.STRING: {"type": "string"},
        settings.Type.MAP: {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        settings.Type.PATH: {"type": "string"},
    }
    described = f"{setting.description} Scenario: {setting.applies.value}."
    found: dict[str, Any] = {"description": described, **by_type[setting.type]}
    if setting.default is not None:
        found["default"] = setting.default
    return found


def _enumerate_settings(extension: dict[str, Any]) -> None:
    """The settings table as the properties of `spec.config` and `spec.configProtected`."""
    spec = extension["properties"]["spec"]["properties"]
    # A protected value: a path or a secretRef, as every key of configProtected.
    protected = {"$ref": "#/properties/spec/properties/configProtected/additionalProperties"}
    by_name = {s.name: s for s in settings.SETTINGS}
    for setting in settings.SETTINGS:
        found = _setting_schema(setting)
        if setting.protected:
            found = {"description": found["description"], **protected}
        where = "configProtected" if setting.protected else "config"
        spec[where].setdefault("properties", {})[setting.name] = found
    for alias in settings.ALIASES:
        target = by_name[alias.target]
        older = f"Older name of {target.name}" + (", inverted" if alias.negate else "") + "."
        found = {
            **spec["configProtected" if target.protected else "config"]["properties"][target.name]
        }
        found.pop("default", None)
        found |= {"description": older, "deprecationMessage": f"{older} Use {target.name}."}
        where = "configProtected" if target.protected else "config"
        spec[where]["properties"][alias.name] = found


def published() -> dict[str, dict[str, Any]]:
    """Every editor schema by its published name."""
    found: dict[str, dict[str, Any]] = {}
    for name, (source, kind) in SHAPES.items():
        if kind is None:
            root = copy.deepcopy(schemas.load(source))
            if source in _ITEMS_OF:
                field, items = _ITEMS_OF[source]
                root["properties"][field]["items"] = {"$ref": f"{items}.json"}
            if source == "Extension":
                _enumerate_settings(root)
            found[name] = _bundle(root, source)
        else:
            envelope = copy.deepcopy(schemas.load("Envelope"))
            envelope["title"] = kind
            envelope["description"] = f"A kind: {kind} document; its fields sit under spec."
            envelope["properties"]["kind"] = {"const": kind}
            envelope["properties"]["spec"] = {"$ref": f"{source}.json"}
            found[name] = _bundle(envelope, "Envelope")
    return found


def text(schema: dict[str, Any]) -> str:
    """A published schema's file text."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
