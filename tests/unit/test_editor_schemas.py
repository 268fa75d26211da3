"""The JSON Schemas published for editors (`schemas/editor/`) and the modelines in `manifests/`.

The committed files are what `reconciler schemas` writes now; each is a valid, self-contained
draft-07 schema (what yaml-language-server validates with); the settings table is enumerated in
the Extension's; every manifest in `manifests/` names its schema in a first-line modeline and
is valid by it, while a misspelt setting value is not. The validator's own schemas and the
loader do not change: `validate` still reads `manifests/` as before.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.model import editorschemas, settings
from tests import tools

EDITOR = tools.ROOT / "schemas" / "editor"
MANIFESTS = tools.ROOT / "manifests"
MODELINE = re.compile(r"# yaml-language-server: \$schema=(\S+)\n")
# The data files the manifests use (a conda file), which are no manifests.
DATA_FILES = {"deployments/model/conda.yml"}


def test_the_committed_schemas_are_what_the_command_writes_now(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["schemas", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in EDITOR.iterdir()}
    assert committed == written, "run: reconciler schemas schemas/editor"


@pytest.mark.parametrize("name", sorted(editorschemas.SHAPES))
def test_each_is_a_self_contained_draft_07_schema(name: str) -> None:
    schema = json.loads((EDITOR / f"{name}.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    text = json.dumps(schema)
    assert "$defs" not in text and "$id" not in text
    refs = re.findall(r'"\$ref": "([^"]*)"', text)
    assert refs and all(ref.startswith("#/") for ref in refs)
    for ref in refs:  # each a JSON pointer to a schema in the same file
        node = schema
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict), ref


def config(extension: dict[str, Any], where: str) -> dict[str, Any]:
    found: dict[str, Any] = extension["properties"]["spec"]["properties"][where]["properties"]
    return found


def test_every_setting_is_a_property_with_its_type_choices_default_and_description() -> None:
    extension = json.loads((EDITOR / "Extension.json").read_text())
    plain, protected = config(extension, "config"), config(extension, "configProtected")
    assert set(plain) | set(protected) == {s.name for s in settings.SETTINGS} | {
        a.name for a in settings.ALIASES
    }
    for setting in settings.SETTINGS:
        prop = (protected if setting.protected else plain)[setting.name]
        assert setting.description in prop["description"]
        assert prop.get("default") == setting.default
        if setting.choices:
            assert prop["enum"] == list(setting.choices)
    assert plain["installVolcano"]["type"] == ["boolean", "string"]
    assert plain["reuseExistingPromOp"]["deprecationMessage"].endswith("Use installPromOp.")


def modeline(path: Path) -> str | None:
    found = MODELINE.match(path.read_text())
    return found[1] if found else None


def manifest_files() -> list[Path]:
    return sorted(
        p for p in MANIFESTS.rglob("*.y*ml") if str(p.relative_to(MANIFESTS)) not in DATA_FILES
    )


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_each_manifest_names_its_published_schema_and_is_valid_by_it(path: Path) -> None:
    named = modeline(path)
    assert named, f"{path} has no yaml-language-server modeline on its first line"
    schema_file = (path.parent / named).resolve()
    assert schema_file.parent == EDITOR.resolve(), named
    validator = jsonschema.Draft7Validator(json.loads(schema_file.read_text()))
    for document in yaml.safe_load_all(path.read_text()):
        errors = [e.message for e in validator.iter_errors(document)]
        assert not errors, errors


def test_a_misspelt_setting_value_is_refused_by_the_published_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads((EDITOR / "Extension.json").read_text()))
    extension = yaml.safe_load((MANIFESTS / "infra" / "extension.yaml").read_text())
    extension["spec"]["config"]["inferenceRouterServiceType"] = "NodePrt"
    assert [e.message for e in validator.iter_errors(extension)] == [
        "'NodePrt' is not one of ['LoadBalancer', 'NodePort', 'ClusterIP']"
    ]
    extension["spec"]["config"]["inferenceRouterServiceType"] = "NodePort"
    extension["spec"]["config"]["installVolcano"] = "maybe"
    assert list(validator.iter_errors(extension))


def test_validate_reads_the_manifests_with_their_modelines_as_before() -> None:
    result = CliRunner().invoke(cli.main, ["validate", str(MANIFESTS)])
    assert result.exit_code == 0, result.output
    assert "1 extension, 3 instance types, 2 jobs, 2 deployments, 1 endpoint" in result.output
