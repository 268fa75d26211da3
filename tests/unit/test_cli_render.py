"""`reconciler render`: formats, determinism, invalid repos, and secrets that never leak."""

import json
import logging
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler import objects
from reconciler.cli import main as cli
from tests.helpers import extension, scenario_repo, write_repo

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["render", *args])
    return result.exit_code, result.stdout, result.stderr


def test_yaml_stream_is_byte_identical_between_runs() -> None:
    first = run(str(REPO_ROOT / "manifests"))
    second = run(str(REPO_ROOT / "manifests"))
    assert first[0] == 0 and first == second
    docs = list(yaml.safe_load_all(first[1]))
    assert docs[0]["kind"] == "CustomResourceDefinition"
    assert len(docs) == len({objects.key(d) for d in docs})


def test_json_is_one_list_like_kubectl() -> None:
    code, out, _ = run(str(REPO_ROOT / "manifests"), "--output", "json")
    assert code == 0
    listing = json.loads(out)
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    yaml_docs = list(yaml.safe_load_all(run(str(REPO_ROOT / "manifests"))[1]))
    assert listing["items"] == yaml_docs


def test_invalid_repo_prints_problems_and_no_objects(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"e.yaml": extension("enableTraining: maybe")})
    code, out, err = run(str(root))
    assert code == 1
    assert out == ""
    assert "spec.config.enableTraining: must be true or false (got 'maybe')" in err


def test_private_key_never_appears_in_any_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root = scenario_repo(tmp_path / "repo", "production-https")
    key_lines = (root / "certs/key.pem").read_text().splitlines()[1:-1]
    outputs = [run(str(root))[1], run(str(root), "-o", "json")[1]]
    out_dir = tmp_path / "out"
    code, _, err = run(str(root), "--out-dir", str(out_dir))
    assert code == 0 and "wrote" in err
    outputs += [p.read_text() for p in out_dir.iterdir()]
    outputs.append(caplog.text)
    for text in outputs:
        assert all(line not in text for line in key_lines)
    assert objects.REDACTED in outputs[0]


def test_show_secrets_writes_real_values_to_private_files(tmp_path: Path) -> None:
    root = scenario_repo(tmp_path / "repo", "production-https")
    out_dir = tmp_path / "out"
    (out_dir).mkdir()
    (out_dir / "999-stale-object.yaml").write_text("old")
    (out_dir / "notes.txt").write_text("kept")
    assert run(str(root), "--out-dir", str(out_dir), "--show-secrets")[0] == 0
    (secret_file,) = [p for p in out_dir.iterdir() if "-secret-" in p.name]
    secret = yaml.safe_load(secret_file.read_text())
    assert secret["data"]["key.pem"] != objects.REDACTED
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert not (out_dir / "999-stale-object.yaml").exists()
    assert (out_dir / "notes.txt").read_text() == "kept"


def test_show_secrets_needs_out_dir() -> None:
    code, _, err = run(str(REPO_ROOT / "manifests"), "--show-secrets")
    assert code == 2
    assert "--out-dir" in err
