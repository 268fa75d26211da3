"""JSON Schemas (draft 2020-12) for each manifest kind, and the validator that applies them.

The `schemas/*.json` files (at the repository's top level, inside the package once installed:
`reconciler.data_dir`) are data: one schema per kind (Extension, InstanceType, InstanceTypeList,
Job, Deployment, OnlineEndpoint) plus the shared definitions, the kind envelope of Job,
Deployment and Endpoint documents and the older endpoint shape. They ship with the package and
can be used by editors too.
This module turns jsonschema's errors into `Problem`s that name the file, line and field, in
words a user can act on (a schema may carry an `x-message` to phrase its own rule).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import referencing
from jsonschema.exceptions import ValidationError, best_match

import reconciler
from reconciler.model import problems

SCHEMA_NAMES = (
    "Common",
    "Extension",
    "InstanceType",
    "InstanceTypeList",
    "Job",
    "Deployment",
    "Envelope",
    "Endpoint",
    "OnlineEndpoint",
)
_BASE_URI = "https://gitops.mlext.io/schemas/"
_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def load(name: str) -> dict[str, Any]:
    """The schema called `name` as a dict (for tools and tests)."""
    text = (reconciler.data_dir("schemas") / f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (
            _BASE_URI + f"{schema_name}.json",
            referencing.Resource.from_contents(load(schema_name)),
        )
        for schema_name in SCHEMA_NAMES
    )
    return jsonschema.Draft202012Validator(load(name), registry=registry)


def validate(name: str, data: Any) -> list[tuple[problems.FieldPath, str]]:
    """Check `data` against schema `name`: (field path inside `data`, message) per problem."""
    return [pair for error in _validator(name).iter_errors(data) for pair in _explain(error)]


def _explain(error: ValidationError) -> Iterator[tuple[problems.FieldPath, str]]:
    """One jsonschema error -> (field path, message) pairs a user can act on."""
    path: problems.FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    expected: Any = error.validator_value
    if keyword in ("oneOf", "anyOf") and error.context:
        # Explain the alternative whose type fits (a mapping where a mapping is allowed)
        # instead of "is not valid under any of the given schemas".
        fitting = _fitting_alternative(error.context)
        for sub in fitting or [best_match(error.context)]:
            yield from _explain(sub)
        return
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                hint = problems.did_you_mean(str(key), known)
                yield (*path, str(key)), f"unknown field{hint}"
        return
    if keyword == "required" and isinstance(expected, list):
        for key in expected:
            if isinstance(error.instance, dict) and key not in error.instance:
                yield (*path, key), "required field is missing"
        return
    if "x-message" in schema and keyword not in ("type",):
        yield path, str(schema["x-message"])
        return
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_WORDS.get(n, n) for n in names)
        yield path, f"must be {wanted}, not {_describe(error.instance)}"
        return
    if keyword == "enum":
        choices = [str(c) for c in expected]
        hint = problems.did_you_mean(str(error.instance), choices)
        yield path, f"must be one of {', '.join(choices)} (got {error.instance!r}){hint}"
        return
    if keyword == "const":
        yield path, f"must be {expected!r} (got {error.instance!r})"
        return
    yield path, error.message


def _fitting_alternative(errors: list[ValidationError]) -> list[ValidationError]:
    """The errors of the only oneOf/anyOf branch whose type matches the value, if one."""
    branches: dict[object, list[ValidationError]] = {}
    for sub in errors:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errs
        for errs in branches.values()
        if not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    return fitting[0] if len(fitting) == 1 else []


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "empty"
    for name, kind in (("a string", str), ("a whole number", int), ("a number", float)):
        if isinstance(value, kind):
            return f"{name} ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
