"""The compiled schema validator (jsonschema-rs) and jsonschema judge every document alike.

`schemas.validate` trusts jsonschema-rs when it finds a document valid and asks jsonschema for
the errors otherwise, so a difference between the two (a draft detail, a regex dialect, a
`$ref` resolved elsewhere) would either hide an error or cost the fast path. These tests run the
example and fixture manifests, variants of them broken in every field, and generated documents
through both and require the same verdict; and documents holding YAML values that JSON has no
form for must get exactly jsonschema's problems.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import documents, manifests, schemas
from tests.helpers import API, load, write_repo
from tests.unit.test_properties import DEPLOYMENTS, DOCUMENTS, ENDPOINTS, EXTENSIONS, INSTANCE_TYPES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIRS = (ROOT / "manifests", ROOT / "tests" / "fixtures")

# What a field is replaced with to break it: each type, bounds, case, length, a trailing newline.
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    101,
    1.5,
    10**30,
    "",
    "Upper_Case",
    "x" * 300,
    "blue\n",
    "1e3",
    [],
    [1],
    {},
    {"x": 1},
)


def _checked_sections(document: documents.Document, path: str) -> Iterator[tuple[str, Any]]:
    """(schema name, part of the document) for each schema check the loader applies."""
    for check in manifests.recognize(document, path).checks:
        data = document.data
        try:
            for part in check.path:
                data = data[part]
        except (KeyError, IndexError, TypeError):
            continue  # the section is absent: the loader skips it too
        yield check.schema, data


def _example_sections() -> list[tuple[str, str, Any]]:
    """(where, schema name, section) for every manifest of the examples and fixtures."""
    found = []
    for folder in MANIFEST_DIRS:
        for file in sorted(folder.rglob("*")):
            if file.suffix not in (".yaml", ".yml"):
                continue
            for document in documents.parse(str(file), file.read_text()).documents:
                for name, data in _checked_sections(document, str(file)):
                    found.append((f"{file.relative_to(ROOT)}:{document.line}", name, data))
    return found


def _broken_variants(data: Any) -> Iterator[tuple[str, Any]]:
    """`data` with one field replaced by an odd value, removed, or joined by an unknown one."""
    for path, value in _paths(data):
        for odd in ODD_VALUES:
            if odd != value or type(odd) is not type(value):
                yield f"{path}={odd!r}", _replaced(data, path, odd)
        if path:
            yield f"{path} removed", _replaced(data, path, _REMOVE)
        if isinstance(value, dict):
            yield f"{path}+unknown", _replaced(data, (*path, "unknown_field"), "x")


_REMOVE = object()


def _paths(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*path, index))


def _replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(data)
    parent = changed
    for part in path[:-1]:
        parent = parent[part]
    if value is _REMOVE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return changed


def _verdicts(name: str, data: Any) -> tuple[bool, bool]:
    """(jsonschema-rs, jsonschema): is `data` valid under schema `name`?"""
    return schemas._compiled_validator(name).is_valid(data), schemas._validator(name).is_valid(data)


def test_examples_and_every_broken_variant_get_the_same_verdict_from_both() -> None:
    sections = _example_sections()
    assert {name for _, name, _ in sections} >= {
        "Extension",
        "InstanceType",
        "InstanceTypeList",
        "Job",
        "Deployment",
        "OnlineEndpoint",
    }
    disagreements = []
    verdicts = {True: 0, False: 0}
    for where, name, data in sections:
        assert _verdicts(name, data) == (True, True), f"{where}: the example should be valid"
        for change, variant in _broken_variants(data):
            compiled, reference = _verdicts(name, variant)
            verdicts[reference] += 1
            if compiled != reference:
                disagreements.append(f"{where} {name} {change}: rs {compiled}, py {reference}")
    assert disagreements == []
    # The variants reach both verdicts (most are broken; some changes are still allowed).
    assert verdicts[False] > 1000
    assert verdicts[True] > 50


@settings(max_examples=150, deadline=None)
@given(st.lists(EXTENSIONS | DEPLOYMENTS | ENDPOINTS | INSTANCE_TYPES | DOCUMENTS, max_size=3))
def test_generated_documents_get_the_same_verdict_from_both(docs: list[Any]) -> None:
    for data in docs:
        document = documents.Document("m.yaml", 1, data)
        for name, section in _checked_sections(document, "m.yaml"):
            assert schemas._plain_json(section)
            compiled, reference = _verdicts(name, section)
            assert compiled == reference, (name, section)


def test_a_name_with_a_trailing_newline_is_not_a_dns_label(tmp_path: Path) -> None:
    # Python's `re` lets `$` match before a final newline; JSON Schema's ECMA-262 regexes (and
    # jsonschema-rs) do not. Both validators now follow the latter.
    root = write_repo(
        tmp_path,
        {
            "job.yaml": f"""
                apiVersion: {API}
                kind: Job
                metadata:
                  name: |
                    hello
                spec: {{command: echo, environment: {{image: python}}}}
                """,
        },
    )
    assert [(p.line, p.field, p.message) for p in load(root).errors] == [
        (
            4,
            "metadata.name",
            "must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter"
            " or digit, at most 63 characters",
        )
    ]


YAML_ONLY_VALUES = {
    "an ordered map (tuples)": "!!omap [{a: 1}, {b: 2}]",
    "pairs (tuples)": "!!pairs [{a: 1}]",
    "infinity": ".inf",
    "minus infinity": "-.inf",
    "not a number": ".nan",
    "binary": "!!binary aGVsbG8=",
    "a set": "!!set {a, b}",
    "a date": "!!timestamp 2024-01-01",
    "a number as key": "{1: x}",
}
JOB_FIELDS = ("command", "instance_count", "tags", "environment_variables", "inputs", "resources")


def _jsonschema_problems(name: str, data: Any) -> list[tuple[Any, str]]:
    return [
        pair
        for error in schemas._validator(name).iter_errors(data)
        for pair in schemas._explain(error)
    ]


def test_values_json_cannot_hold_get_exactly_jsonschemas_problems() -> None:
    with_problems = 0
    for description, value in YAML_ONLY_VALUES.items():
        for field in JOB_FIELDS:
            fields = {"command": "echo", "environment": "{image: python}", field: value}
            text = "".join(f"{key}: {text}\n" for key, text in fields.items())
            (document,) = documents.parse("job.yaml", text).documents
            assert not schemas._plain_json(document.data), description
            reference = _jsonschema_problems("Job", document.data)
            assert schemas.validate("Job", document.data) == reference, (description, field)
            with_problems += bool(reference)
    assert 10 < with_problems < len(YAML_ONLY_VALUES) * len(JOB_FIELDS)


def test_a_string_without_a_utf8_form_gets_jsonschemas_verdict() -> None:
    # The loader never makes one (files are decoded with errors="replace" and PyYAML refuses a
    # "\ud800" escape), but validate() takes any data: jsonschema-rs refuses to convert it.
    for name in ("hello", "Hello"):
        data = {"command": "echo", "environment": {"image": "python"}, "name": name + "\ud800"}
        assert schemas.validate("Job", data) == _jsonschema_problems("Job", data)
        assert schemas.validate("Job", data)  # not a DNS label either way


FORMATS = {
    "date-time": "yesterday",
    "email": "nobody",
    "hostname": "-bad-",
    "ipv4": "300.1.1.1",
    "uri": "not a uri",
    "uuid": "xyz",
    "regex": "[",
}


def test_format_is_an_annotation_for_both() -> None:
    # No schema uses `format` today. Should one, neither validator asserts it (jsonschema has
    # no format checker here; jsonschema-rs is built with validate_formats=False), so the two
    # still agree: a value that breaks the format passes both.
    for keyword, value in FORMATS.items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "format": keyword}
        compiled = schemas._compiled_validator_for(schema).is_valid(value)
        reference = schemas._reference_validator_for(schema).is_valid(value)
        assert (compiled, reference) == (True, True), keyword
