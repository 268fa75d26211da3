"""JSON Schemas (draft 2020-12) for each manifest kind, and the validator that applies them.

The `schemas/*.json` files (at the repository's top level, inside the package once installed:
`reconciler.data_dir`) are data: one schema per kind (Extension, InstanceType, InstanceTypeList,
Job, Deployment, OnlineEndpoint) plus the shared definitions, the kind envelope of Job,
Deployment and Endpoint documents and the older endpoint shape. They ship with the package and
can be used by editors too.
This module turns jsonschema's errors into `Problem`s that name the file, line and field, in
words a user can act on (a schema may carry an `x-message` to phrase its own rule).

Most documents are valid, and jsonschema's pure-Python descent is most of the cost of loading a
large repository, so each schema is also compiled by jsonschema-rs: a document it accepts costs
only that check; one it rejects is validated again by jsonschema, whose errors are the ones
explained, so messages, field paths and lines do not depend on which validator ran first. That
is also why jsonschema (and `referencing`, its registry) is imported only when a document is
rejected: a command over a valid repository never pays for importing it.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import regress

import reconciler
from reconciler.model import problems

if TYPE_CHECKING:
    import jsonschema
    import referencing
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

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


def _ecma_pattern(
    validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """jsonschema's `pattern` keyword (same message), matched as JSON Schema defines it: as an
    ECMA-262 regular expression, which is also what jsonschema-rs does. jsonschema itself uses
    Python's `re`, whose `$` also matches before a final newline, so "blue\\n" passed as a DNS
    label."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _ecma_search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _ecma_search(pattern: str, text: str) -> bool:
    try:
        return _ecma_regex(pattern).find(text) is not None
    except UnicodeEncodeError:
        # A lone surrogate is no character and has no UTF-8 form for regress: match U+FFFD, the
        # replacement character, in its place (what decoding the file would have put there).
        return _ecma_regex(pattern).find(_SURROGATE.sub("\ufffd", text)) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")


@functools.cache
def _ecma_regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")  # "u": code points, like Python's str and jsonschema-rs


@functools.cache
def _reference_validator_class() -> type[jsonschema.Draft202012Validator]:
    """Draft 2020-12 with `pattern` matched as ECMA-262 (`_ecma_pattern`)."""
    import jsonschema

    # (types-jsonschema has no types for extend().)
    extended: type[jsonschema.Draft202012Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
    )
    return extended


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return _reference_validator_for(load(name))


def _reference_validator_for(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # No format checker: `format` is an annotation, as in the compiled validator.
    return _reference_validator_class()(schema, registry=_registry())


@functools.cache
def _registry() -> referencing.Registry[Any]:
    """Every schema under its `$id`, so that `Common.json#/$defs/...` resolves offline."""
    import referencing

    return referencing.Registry().with_resources(
        (
            _BASE_URI + f"{schema_name}.json",
            referencing.Resource.from_contents(load(schema_name)),
        )
        for schema_name in SCHEMA_NAMES
    )


@functools.cache
def _compiled_validator(name: str) -> jsonschema_rs.Validator:
    return _compiled_validator_for(load(name))


def _compiled_validator_for(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    # `x-message` is an unknown keyword, ignored in 2020-12. `format` stays an annotation, as
    # jsonschema without a format checker treats it; offline: a `$ref` outside the registry is
    # an error when compiling, never a download.
    return jsonschema_rs.Draft202012Validator(
        schema, registry=_compiled_registry(), validate_formats=False, offline=True
    )


@functools.cache
def _compiled_registry() -> jsonschema_rs.Registry:
    """The same `$ref` targets as `_registry`, for jsonschema-rs."""
    return jsonschema_rs.Registry(
        [(_BASE_URI + f"{schema_name}.json", load(schema_name)) for schema_name in SCHEMA_NAMES]
    )


def _compiled_accepts(name: str, data: Any) -> bool:
    """Whether jsonschema-rs vouches for `data`; False also when it cannot judge it faithfully."""
    if not _plain_json(data):
        return False
    try:
        return _compiled_validator(name).is_valid(data)
    except ValueError:  # a string with a lone surrogate has no UTF-8 (so no JSON) form
        return False


def _plain_json(value: Any) -> bool:
    """Whether `value` holds only what JSON holds, so that jsonschema-rs sees what jsonschema sees.

    jsonschema-rs converts the value to JSON first: a tuple (a YAML `!!omap` or `!!pairs` gives
    lists of them) would be an array where jsonschema sees none, a NaN or infinity (`.nan`,
    `.inf`) would be of no type at all, so that `maximum` passes it where jsonschema compares
    it, and bytes, sets, dates and non-string keys have no JSON form.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                return False
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in _JSON_SCALARS:
            return False
    return True


_JSON_SCALARS = (str, int, bool, type(None))


def validate(name: str, data: Any) -> list[tuple[problems.FieldPath, str]]:
    """Check `data` against schema `name`: (field path inside `data`, message) per problem."""
    if _compiled_accepts(name, data):
        return []
    return [pair for error in _validator(name).iter_errors(data) for pair in _explain(error)]


def _explain(
    error: ValidationError, sensitive: bool = False
) -> Iterator[tuple[problems.FieldPath, str]]:
    """One jsonschema error -> (field path, message) pairs a user can act on.

    Below a schema marked `x-sensitive` (a protected setting's value) no message quotes the
    value, whatever it holds: a protected value is kept out of output by where it is, not by
    matching its text."""
    path: problems.FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    sensitive = sensitive or schema.get("x-sensitive") is True
    keyword = error.validator
    expected: Any = error.validator_value
    if keyword in ("oneOf", "anyOf") and error.context:
        # Explain the alternative whose type fits (a mapping where a mapping is allowed)
        # instead of "is not valid under any of the given schemas".
        from jsonschema.exceptions import best_match

        fitting = _fitting_alternative(error.context)
        for sub in fitting or [best_match(error.context)]:
            yield from _explain(sub, sensitive)
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
        yield path, f"must be {wanted}, not {_describe(error.instance, sensitive)}"
        return
    if sensitive:
        yield path, f"does not fit the schema ({keyword}: {expected!r}); the value is not shown"
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


def _describe(value: Any, sensitive: bool = False) -> str:
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "empty"
    for name, kind in (("a string", str), ("a whole number", int), ("a number", float)):
        if isinstance(value, kind):
            return name if sensitive else f"{name} ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
