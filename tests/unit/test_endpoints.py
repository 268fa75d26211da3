"""Online endpoints (`docs/domain.md#online-endpoints`): recognised in every shape, their rules as
FILE:LINE problems naming the field, the implicit endpoint of a deployment that names none, and what
they render: the router config's `endpoints` list, its RBAC, the endpoint's created-once Secret, and
how `reconciler score` finds an endpoint."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from reconciler import objects, source
from reconciler.cli import score
from reconciler.model import endpoints, repo
from reconciler.render import auth, render, workloadobjects
from reconciler.router import tokens
from tests.helpers import API, EXAMPLE, errors, extension, lines, load, write_repo

EXT = extension(
    "enableInference: true\ninferenceRouterServiceType: ClusterIP\nallowInsecureConnections: true"
)
ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/kubernetesOnlineEndpoint.schema.json"


def deployment(name: str, endpoint: str | None = None, more: str = "") -> str:
    joins = f"endpoint_name: {endpoint}\n" if endpoint else ""
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json\n"
        f"name: {name}\n{joins}environment: {{image: python:3.11}}\n{more}"
    )


BLUE_GREEN = {"blue.yaml": deployment("blue", "mnist"), "green.yaml": deployment("green", "mnist")}
ENDPOINT = f"""
$schema: {ENDPOINT_SCHEMA}
name: mnist
auth_mode: key
traffic:
  blue: 90
  green: 10
"""


def loaded_repo(tmp_path: Path, files: dict[str, str]) -> repo.Loaded:
    return load(write_repo(tmp_path, {"ext.yaml": EXT, **files}))


def problems_at(tmp_path: Path, loaded: repo.Loaded, where: str) -> list[str]:
    """The error messages at `FILE:LINE: field` (the file relative to the repo)."""
    prefix = f"{tmp_path}/{where}: "
    return [p.removeprefix(prefix) for p in errors(loaded) if p.startswith(prefix)]


# --- recognition ------------------------------------------------------------------------------


def test_an_endpoint_is_recognised_in_every_shape(tmp_path: Path) -> None:
    loaded = loaded_repo(
        tmp_path,
        {
            # The CLI v2 shape, its $schema in any case; compute names the extension.
            "v2.yaml": """
                $schema: https://x/latest/KubernetesOnlineEndpoint.schema.json
                name: mnist
                type: Kubernetes
                compute: azureml:azureml-extension
                auth_mode: AML_Token
                traffic: {blue: 100}
                mirror_traffic: {green: 20}
                description: the mnist model
                tags: {team: vision, tier: 1}
                """,
            # The reconciler's own envelope.
            "kind.yaml": f"""
                apiVersion: {API}
                kind: Endpoint
                metadata: {{name: fashion}}
                spec: {{auth_mode: none}}
                """,
            # By shape: a name and an auth mode, no model, no $schema.
            "shape.yaml": "name: digits\nauth_mode: Key\n",
            # The older document declares its endpoint beside its deployments.
            "older.yaml": """
                name: older
                traffic: {red: 100}
                deployments:
                  - name: red
                    environment: {image: python}
                """,
            **BLUE_GREEN,
        },
    )
    assert lines(loaded) == []
    declared = loaded.repo.endpoints
    assert sorted(declared) == ["digits", "fashion", "mnist", "older"]
    mnist = declared["mnist"]
    assert mnist == endpoints.Endpoint(
        name="mnist",
        auth_mode="token",
        traffic={"blue": 100},
        mirror_traffic={"green": 20},
        compute="azureml-extension",
        tags={"team": "vision", "tier": "1"},
        description="the mnist model",
        manifest=None,  # not compared
    )
    assert mnist.manifest is not None and mnist.manifest.where == f"{tmp_path}/v2.yaml:2"
    assert (declared["fashion"].auth_mode, declared["digits"].auth_mode) == ("none", "key")
    assert declared["fashion"].manifest is not None
    assert declared["fashion"].manifest.where == f"{tmp_path}/kind.yaml:3"
    assert declared["older"].traffic == {"red": 100}
    assert loaded.repo.deployments["red"].endpoint_name == "older"
    assert loaded.repo.summary() == (
        "1 extension, 0 instance types, 0 jobs, 3 deployments, 4 endpoints"
    )


def test_a_deployment_shaped_document_is_not_taken_for_an_endpoint(tmp_path: Path) -> None:
    # name + auth_mode with a model is a deployment's shape, not an endpoint's.
    loaded = loaded_repo(tmp_path, {"d.yaml": "name: blue\nauth_mode: key\nmodel: ./m\n"})
    assert loaded.repo.endpoints == {}
    assert errors(loaded)[0].startswith(f"{tmp_path}/d.yaml:1: not a manifest")


# --- rules --------------------------------------------------------------------------------------


def test_traffic_goes_to_the_endpoints_own_deployments_and_adds_up_to_100(
    tmp_path: Path,
) -> None:
    loaded = loaded_repo(
        tmp_path,
        {
            "e.yaml": f"""
                $schema: {ENDPOINT_SCHEMA}
                name: mnist
                auth_mode: key
                traffic:
                  blue: 50
                  purple: 10
                  red: 10
                  solo: 10
                """,
            "other.yaml": f"$schema: {ENDPOINT_SCHEMA}\nname: other\nauth_mode: key\n",
            "red.yaml": deployment("red", "other"),
            "solo.yaml": deployment("solo"),
            **BLUE_GREEN,
        },
    )
    assert problems_at(tmp_path, loaded, "e.yaml:6: traffic.purple") == [
        "no deployment named 'purple' (the endpoint's: blue, green)"
    ]
    assert problems_at(tmp_path, loaded, "e.yaml:7: traffic.red") == [
        "deployment 'red' belongs to endpoint 'other' (its endpoint_name), not to 'mnist'"
    ]
    assert problems_at(tmp_path, loaded, "e.yaml:8: traffic.solo") == [
        "deployment 'solo' names no endpoint_name: it stands behind its own endpoint; give it "
        "endpoint_name: mnist to take traffic here"
    ]
    (total,) = problems_at(tmp_path, loaded, "e.yaml:4: traffic")
    assert total.startswith("the shares add up to 80 % (blue 50, purple 10, red 10, solo 10)")
    assert len(errors(loaded)) == 4


@pytest.mark.parametrize("traffic", ["{blue: 0, green: 0}", "{}", "{blue: 100}"])
def test_all_zero_or_a_whole_hundred_is_valid(tmp_path: Path, traffic: str) -> None:
    text = f"$schema: {ENDPOINT_SCHEMA}\nname: mnist\nauth_mode: key\ntraffic: {traffic}\n"
    loaded = loaded_repo(tmp_path, {"e.yaml": text, **BLUE_GREEN})
    assert lines(loaded) == []


def test_mirrors_copy_to_a_deployment_taking_no_live_traffic_at_most_half(
    tmp_path: Path,
) -> None:
    loaded = loaded_repo(
        tmp_path,
        {
            "e.yaml": f"""
                $schema: {ENDPOINT_SCHEMA}
                name: mnist
                auth_mode: key
                traffic: {{blue: 100}}
                mirror_traffic:
                  blue: 10
                  nobody: 10
                """,
            "e2.yaml": f"""
                $schema: {ENDPOINT_SCHEMA}
                name: fashion
                auth_mode: key
                mirror_traffic: {{green: 60}}
                """,
            **BLUE_GREEN,
        },
    )
    assert problems_at(tmp_path, loaded, "e.yaml:6: mirror_traffic.blue") == [
        "deployment 'blue' takes live traffic (100 %): a mirror copies requests to a deployment "
        "that takes none"
    ]
    assert problems_at(tmp_path, loaded, "e.yaml:7: mirror_traffic.nobody") == [
        "no deployment named 'nobody' (the endpoint's: blue, green)"
    ]
    assert problems_at(tmp_path, loaded, "e2.yaml:4: mirror_traffic.green") == [
        "a mirrored share is a whole percent, 0 to 50 (at most half of the live traffic is copied)"
    ]


def test_endpoint_names_deployments_join_and_collisions(tmp_path: Path) -> None:
    loaded = loaded_repo(
        tmp_path,
        {
            "lost.yaml": deployment("lost", "mnits"),
            "e.yaml": ENDPOINT,
            "again.yaml": f"$schema: {ENDPOINT_SCHEMA}\nname: mnist\nauth_mode: key\n",
            # An endpoint named like a deployment that stands behind its own endpoint.
            "solo-endpoint.yaml": f"$schema: {ENDPOINT_SCHEMA}\nname: solo\nauth_mode: key\n",
            "solo.yaml": deployment("solo"),
            **BLUE_GREEN,
        },
    )
    (lost,) = problems_at(tmp_path, loaded, "lost.yaml:3: endpoint_name")
    assert lost.startswith(
        "no endpoint named 'mnits' is declared (declared: mnist, solo) (did you mean mnist?)"
    )
    (duplicate,) = [e for e in errors(loaded) if "duplicate" in e]
    assert duplicate in (
        f"{tmp_path}/{second}:2: name: duplicate Endpoint named 'mnist': also declared at "
        f"{tmp_path}/{first}:2"
        for first, second in (("again.yaml", "e.yaml"), ("e.yaml", "again.yaml"))
    )
    (collision,) = problems_at(tmp_path, loaded, "solo-endpoint.yaml:2: name")
    assert collision.startswith(
        f"endpoint 'solo' collides with deployment 'solo' ({tmp_path}/solo.yaml:2)"
    )
    assert len(errors(loaded)) == 3


def test_only_kubernetes_endpoints_and_known_auth_modes(tmp_path: Path) -> None:
    text = f"$schema: {ENDPOINT_SCHEMA}\nname: mnist\ntype: managed\nauth_mode: keys\n"
    loaded = loaded_repo(tmp_path, {"e.yaml": text})
    (kind,) = problems_at(tmp_path, loaded, "e.yaml:3: type")
    assert kind.startswith("'managed' endpoints are not reconciled: only Kubernetes endpoints are")
    assert problems_at(tmp_path, loaded, "e.yaml:4: auth_mode") == [
        "unknown auth mode 'keys': expected key, aml_token, token or none (did you mean key?)"
    ]


def test_the_endpoints_compute_flows_to_its_deployments(tmp_path: Path) -> None:
    second = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\n"
        "allowInsecureConnections: true"
    ).replace("name: azureml-extension", "name: second")
    loaded = loaded_repo(
        tmp_path,
        {
            "second.yaml": second,
            "e.yaml": ENDPOINT.replace("auth_mode: key", "compute: azureml:second\nauth_mode: key"),
            "blue.yaml": deployment("blue", "mnist"),  # no compute: takes the endpoint's
            # its own compute, another extension: one router must serve the whole endpoint
            "green.yaml": deployment("green", "mnist", "compute: azureml-extension\n"),
        },
    )
    assert loaded.repo.deployments["blue"].compute == "second"
    assert problems_at(tmp_path, loaded, "green.yaml:5: compute") == [
        "runs on extension 'azureml-extension', but its endpoint 'mnist' on 'second': one router "
        "serves an endpoint and all of its deployments"
    ]
    assert len(errors(loaded)) == 1


# --- effective endpoints ------------------------------------------------------------------------


def test_a_deployment_naming_no_endpoint_stands_behind_its_own(tmp_path: Path) -> None:
    loaded = loaded_repo(
        tmp_path,
        {"e.yaml": ENDPOINT, "solo.yaml": deployment("solo", more="auth_mode: aml_token\n"),
         **BLUE_GREEN},
    )  # fmt: skip
    assert lines(loaded) == []
    found = endpoints.effective(loaded.repo.endpoints, loaded.repo.deployments.values())
    assert [e.name for e in found] == ["mnist", "solo"]
    solo = found[1]
    assert solo.implicit and not found[0].implicit
    assert (solo.traffic, solo.mirror_traffic, solo.auth_mode) == ({"solo": 100}, {}, "token")
    assert endpoints.members(found[0], loaded.repo.deployments.values()) == ["blue", "green"]
    assert endpoints.members(solo, loaded.repo.deployments.values()) == ["solo"]


# --- render -------------------------------------------------------------------------------------


def render_files(tmp_path: Path, files: dict[str, str]) -> tuple[repo.Repo, list[objects.Object]]:
    loaded = loaded_repo(tmp_path, files)
    assert loaded.valid, errors(loaded)
    snapshot = source.DirectorySnapshot(tmp_path)
    return loaded.repo, render.render_repo(loaded.repo, snapshot, "rev").objects


def find(rendered: list[objects.Object], kind: str, name: str) -> objects.Object:
    (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_router_config_lists_declared_and_implicit_endpoints(tmp_path: Path) -> None:
    _, rendered = render_files(
        tmp_path,
        {
            "e.yaml": ENDPOINT.replace("blue: 90\n  green: 10", "blue: 100")
            + "mirror_traffic: {green: 10}\n",
            "open.yaml": f"$schema: {ENDPOINT_SCHEMA}\nname: open\nauth_mode: none\n",
            "solo.yaml": deployment("solo"),
            "shut.yaml": deployment("shut", more="auth_mode: none\n"),
            **BLUE_GREEN,
        },
    )
    config = yaml.safe_load(
        find(rendered, "ConfigMap", "azureml-fe-v2-config")["data"]["router.yaml"]
    )
    assert config["endpoints"] == [
        {
            "name": "mnist",
            "traffic": {"blue": 100, "green": 0},  # green: only by header, and mirrored
            "mirror_traffic": {"green": 10},
            "auth": {"mode": "key", "secret": "mnist-endpoint-auth"},
        },
        {"name": "open", "traffic": {}, "mirror_traffic": {}, "auth": {"mode": "none"}},
        {"name": "shut", "traffic": {"shut": 100}, "mirror_traffic": {}, "auth": {"mode": "none"}},
        {
            "name": "solo",
            "traffic": {"solo": 100},
            "mirror_traffic": {},
            "auth": {"mode": "key", "secret": "solo-auth"},  # the deployment's own keys
        },
    ]
    # Every deployment an endpoint sends to is in the deployments list.
    served = {d["name"] for d in config["deployments"]}
    assert served == {"blue", "green", "shut", "solo"}
    assert all(set(e["traffic"]) <= served for e in config["endpoints"])
    (secrets_rule,) = [
        r for r in find(rendered, "Role", "azureml-fe-v2")["rules"] if r["resources"] == ["secrets"]
    ]
    assert secrets_rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["blue-auth", "green-auth", "mnist-endpoint-auth", "solo-auth"],
        "verbs": ["get"],
    }


@pytest.mark.parametrize(
    ("mode", "fields"), [("key", ["primaryKey", "secondaryKey"]), ("aml_token", ["signingKey"])]
)
def test_a_declared_endpoint_gets_one_secret_of_its_own(
    tmp_path: Path, mode: str, fields: list[str]
) -> None:
    loaded, _ = render_files(
        tmp_path,
        {
            "e.yaml": ENDPOINT.replace("auth_mode: key", f"auth_mode: {mode}"),
            "open.yaml": f"$schema: {ENDPOINT_SCHEMA}\nname: open\nauth_mode: none\n",
            "solo.yaml": deployment("solo", more="auth_mode: none\n"),
            **BLUE_GREEN,
        },
    )
    (generated,) = auth.repo_secrets(loaded).values()
    by_name = {s["metadata"]["name"]: s for s in generated}
    # The deployments' keys and the one declared endpoint with auth: none for open and solo.
    assert sorted(by_name) == ["blue-auth", "green-auth", "mnist-endpoint-auth"]
    secret = by_name["mnist-endpoint-auth"]
    assert secret["metadata"]["namespace"] == "azureml"
    assert secret["metadata"]["labels"] == {
        objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
        objects.PART_OF_LABEL: "azureml-extension",
        workloadobjects.ENDPOINT_LABEL: "mnist",
        objects.COMPONENT_LABEL: "endpoint-auth",
    }
    assert sorted(secret["data"]) == fields
    values = [base64.b64decode(v) for v in secret["data"].values()]
    assert len(set(values)) == len(values) and all(len(v) >= 32 for v in values)


def test_score_finds_an_endpoint_before_a_deployment_and_its_keys() -> None:
    loaded = load(EXAMPLE)
    assert loaded.valid, loaded.problems
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(EXAMPLE), "x").objects
    maps = [o for o in rendered if o["metadata"]["name"] == "azureml-fe-v2-config"]
    target = score.find_target(maps, "mnist")
    assert target == score.Target(
        "mnist", "azureml", "azureml", "azureml-fe-v2", "key", "mnist-endpoint-auth",
        endpoint=True, deployments=("blue", "green"),
    )  # fmt: skip
    assert target.path == "/api/v1/endpoint/mnist/score"
    assert score.deployment_problem(target, "green") is None
    assert score.deployment_problem(target, "red") == (
        "red is not a deployment of endpoint mnist (its: blue, green)"
    )
    blue = score.find_target(maps, "blue")
    assert blue is not None and not blue.endpoint and blue.path == "/api/v1/service/blue/score"
    assert score.deployment_problem(blue, "blue") == (
        "--deployment needs an endpoint: blue is a deployment"
    )
    # The key comes from the endpoint's Secret, the same way as a deployment's.
    key = base64.b64encode(b"endpoint-key").decode()
    assert score.credential(target, {"data": {"primaryKey": key}}) == "Bearer endpoint-key"
    signing = "a-signing-key-of-at-least-32-bytes!"
    token_target = score.Target("mnist", "azureml", "azureml", "r", "token", "s", endpoint=True)
    bearer = score.credential(
        token_target, {"data": {"signingKey": base64.b64encode(signing.encode()).decode()}}
    )
    assert bearer is not None
    assert tokens.Authenticator("token", "mnist", signing_key=signing).allows(bearer)
