"""The stand-in table (``localcluster.standins``) and the project's image name and build.

Every image the repo's manifests and the product's public examples render for a job or a model
deployment (containers and init containers) has a stand-in, and each stand-in for a model image
carries the model server at the render's pin; recipes are built parents first and named by a
digest that changes when anything under them changes; names are normalised as containerd and the
kubelet spell them. The project's image is built under the name the render gives the router, the
Dockerfile's base can be replaced by a build argument, and the kind workflow builds that name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reconciler import objects, source
from reconciler.gitops import install
from reconciler.localcluster import localimages, standins
from reconciler.model import components, curated, repo
from reconciler.render import render, workloadobjects
from tests import tools

REPOS = [
    tools.ROOT / "manifests",
    *sorted(p for p in (tools.ROOT / "tests/fixtures/public-examples").iterdir() if p.is_dir()),
]
WORKLOAD_KINDS = {"Job", "Deployment"}
BASE = "mlext.local/python-base:0123456789ab"


def workload_images(root: Path) -> set[str]:
    """The images of the jobs' and model deployments' pods a repo renders (not components')."""
    snapshot = source.DirectorySnapshot(root)
    loaded = repo.load(snapshot)
    assert loaded.errors == []
    # The extension's components run the product's pinned images (the router: the project's).
    component_images = {components.image(c) for c in components.COMPONENTS}
    images: set[str] = set()
    for obj in render.render_repo(loaded.repo, snapshot, "rev").objects:
        if obj["kind"] not in WORKLOAD_KINDS and not obj["apiVersion"].startswith("batch.volcano"):
            continue
        templates = [t["template"] for t in obj["spec"].get("tasks", [])] or [
            obj["spec"]["template"]
        ]
        for template in templates:
            pod = template["spec"]
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                images.add(container["image"])
    return images - component_images


@pytest.mark.parametrize("root", REPOS, ids=lambda p: p.name)
def test_every_image_a_repos_workloads_name_has_a_stand_in(root: Path) -> None:
    images = workload_images(root)
    assert images, "the repo renders no workload"
    assert images - set(standins.STANDINS) == set()


def test_the_curated_environments_of_the_examples_and_python_are_in_the_table() -> None:
    for reference in ("azureml:AzureML-sklearn-1.5@latest", "azureml:AzureML-lightgbm-3.3@latest"):
        image = curated.resolve(reference).image
        assert image in standins.STANDINS
    assert standins.STANDINS["python:3.11-slim"] == "modelserver"


def recipe_chain(key: str) -> list[standins.Recipe]:
    return [standins.RECIPES[k] for k in standins.build_order({key})]


def test_every_model_image_stand_in_has_the_pinned_model_server() -> None:
    for name, key in standins.STANDINS.items():
        assert key in standins.RECIPES, name
        if name == workloadobjects.FETCH_IMAGE:
            continue
        pips = [p for r in recipe_chain(key) for p in r.pip]
        assert workloadobjects.MODEL_SERVER_REQUIREMENT in pips, name
        assert workloadobjects.MODEL_SERVER_VERSION in workloadobjects.MODEL_SERVER_REQUIREMENT


def test_recipes_are_built_parents_first_and_once() -> None:
    order = standins.build_order({"sklearn", "lightgbm", "modelserver"})
    assert order[0] == "modelserver"
    assert sorted(order) == ["lightgbm", "modelserver", "sklearn"]
    assert standins.build_order(set(standins.RECIPES)).count("modelserver") == 1


def test_a_recipes_dockerfile_builds_on_its_parent_and_puts_the_venv_first_on_path() -> None:
    text = standins.dockerfile(standins.RECIPES["sklearn"], "mlext.local/standin-x:1")
    lines = text.splitlines()
    assert lines[0] == "FROM mlext.local/standin-x:1"
    assert "scikit-learn==1.5.2" in text
    (env,) = [line for line in lines if line.startswith("ENV PATH=")]
    assert env.startswith(f"ENV PATH={standins.VENV}/bin:")
    assert f"LABEL {standins.STANDIN_LABEL}=sklearn" in lines
    curl = standins.dockerfile(standins.RECIPES["curl"], BASE)
    assert "apt-get install -y --no-install-recommends curl" in curl
    assert "pip" not in curl


def test_a_change_under_a_recipe_renames_it_and_what_builds_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = {k: standins.local_name(k, BASE) for k in standins.RECIPES}
    assert all(
        re.fullmatch(r"mlext\.local/standin-[a-z]+:[0-9a-f]{12}", n) for n in before.values()
    )
    assert (
        standins.local_name("sklearn", "mlext.local/python-base:ffffffffffff") != before["sklearn"]
    )
    server = standins.RECIPES["modelserver"]
    bumped = standins.Recipe(server.key, None, (), ("azureml-inference-server-http==9",), "x")
    monkeypatch.setitem(standins.RECIPES, "modelserver", bumped)
    after = {k: standins.local_name(k, BASE) for k in standins.RECIPES}
    assert after["modelserver"] != before["modelserver"]
    assert after["sklearn"] != before["sklearn"]  # built on the model server
    assert after["curl"] == before["curl"]  # not


@pytest.mark.parametrize(
    ("reference", "normal"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("library/python:latest", "docker.io/library/python:latest"),
        ("curlimages/curl:8.10.1", "docker.io/curlimages/curl:8.10.1"),
        ("python", "docker.io/library/python:latest"),
        (
            "mcr.microsoft.com/azureml/curated/sklearn-1.5:latest",
            "mcr.microsoft.com/azureml/curated/sklearn-1.5:latest",
        ),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("ghcr.io/mlext/reconciler:0.1.0", "ghcr.io/mlext/reconciler:0.1.0"),
        ("python@sha256:ab", "docker.io/library/python@sha256:ab"),
    ],
)
def test_names_are_normalised_as_the_kubelet_spells_them(reference: str, normal: str) -> None:
    assert standins.normalize(reference) == normal


def test_the_project_image_is_the_one_the_render_gives_the_router_and_the_controller() -> None:
    snapshot = source.DirectorySnapshot(tools.ROOT / "manifests")
    loaded = repo.load(snapshot)
    rendered: list[objects.Object] = render.render_repo(loaded.repo, snapshot, "rev").objects
    (router,) = [
        o
        for o in rendered
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "azureml-fe-v2"
    ]
    image = router["spec"]["template"]["spec"]["containers"][0]["image"]
    assert localimages.project_image() == image == install.default_image()


def test_the_dockerfiles_base_is_a_build_argument_defaulting_to_python() -> None:
    text = (tools.ROOT / "Dockerfile").read_text()
    assert f"ARG {localimages.BASE_ARG}={localimages.DOCKERFILE_BASE}" in text
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2
    assert all(line.startswith(f"FROM ${{{localimages.BASE_ARG}}}") for line in froms)


def test_the_dockerfile_copies_every_input_of_the_project_image() -> None:
    """What the digest covers is what the build reads: a file the build needs and the
    Dockerfile does not copy (the build hook, say) fails the image's build."""
    copied = set()
    for line in (tools.ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied |= set(line.split()[1:-1])
    assert copied == set(localimages.PROJECT_INPUTS) - {"Dockerfile"}
    assert f"ARG {localimages.COMMIT_ARG}=" in (tools.ROOT / "Dockerfile").read_text()


def test_the_kind_workflow_builds_and_loads_the_image_the_render_references() -> None:
    flow = yaml.safe_load((tools.ROOT / ".github/workflows/e2e-kind.yml").read_text())
    steps = flow["jobs"]["kind"]["steps"]
    (step,) = [s for s in steps if "docker build" in s.get("run", "")]
    script = step["run"]
    assert "project_image()" in script
    assert re.search(r'docker build [^\n]*-t "\$image"', script)
    assert f'--build-arg {localimages.COMMIT_ARG}="$GITHUB_SHA"' in script
    assert 'kind load docker-image "$image"' in script


def test_the_project_sources_digest_covers_what_the_dockerfile_copies(tmp_path: Path) -> None:
    for entry in localimages.PROJECT_INPUTS:
        path = tmp_path / entry
        if "." in entry or entry == "Dockerfile":
            path.write_text("x")
        else:
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "f.py").write_text("x")
    first = localimages.project_source_digest(tmp_path)
    (tmp_path / "templates" / "sub" / "f.py").write_text("y")
    second = localimages.project_source_digest(tmp_path)
    assert second != first
    (tmp_path / "reconciler" / "sub" / "__pycache__").mkdir()
    (tmp_path / "reconciler" / "sub" / "__pycache__" / "f.pyc").write_text("z")
    assert localimages.project_source_digest(tmp_path) == second  # bytecode is not a source


def test_model_server_stand_ins_carry_a_conda_stand_in_for_the_prepare_environment_step() -> None:
    for key in ("modelserver", "mlflow"):
        recipe = standins.RECIPES[key]
        files = standins.context_files(recipe)
        assert sorted(files) == ["condafile.py", "micromamba"]
        # The conda stand-in reads conda files with the module the tests of condafile cover.
        assert (
            files["condafile.py"]
            == (tools.ROOT / "reconciler/localcluster/condafile.py").read_bytes()
        )
        text = standins.dockerfile(recipe, BASE)
        assert f"ENV MLEXT_MODEL_SERVER={workloadobjects.MODEL_SERVER_REQUIREMENT}" in text
        assert "python3-yaml python3-packaging" in text
    # What builds on the model server inherits it; curl has none.
    assert standins.context_files(standins.RECIPES["sklearn"]) == {}
    assert standins.context_files(standins.RECIPES["curl"]) == {}


def test_a_change_of_the_conda_stand_in_renames_the_images_that_carry_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = {k: standins.local_name(k, BASE) for k in standins.RECIPES}
    changed = tmp_path / "micromamba"
    changed.write_text("#!/bin/sh\n")
    monkeypatch.setitem(standins.SHIM_FILES, "micromamba", changed)
    after = {k: standins.local_name(k, BASE) for k in standins.RECIPES}
    assert {k for k in before if before[k] != after[k]} == {
        "modelserver",
        "sklearn",
        "lightgbm",
        "mlflow",
    }
