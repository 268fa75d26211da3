"""How the local plane's pod runtime runs a pod (`localcluster.podspec`), the pod network map
(`podnetwork`), and the pure parts of `reconciler score` and `reconciler router top`.

The pods are the example's own, as the render makes them: the pod template of the rendered
Deployment with the status kwok gives a Running pod.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from reconciler import objects, podnetwork, source
from reconciler.cli import routertop, score
from reconciler.localcluster import podspec
from reconciler.render import render
from reconciler.router import tokens
from tests.helpers import EXAMPLE, load

ROOT = "/run/pods/ns/blue-1"


def rendered() -> list[objects.Object]:
    loaded = load(EXAMPLE)
    assert loaded.valid, loaded.problems
    return render.render_repo(loaded.repo, source.DirectorySnapshot(EXAMPLE), "x").objects


def find(found: list[objects.Object], kind: str, name: str) -> objects.Object:
    return next(o for o in found if o["kind"] == kind and o["metadata"]["name"] == name)


def as_pod(deployment: objects.Object, name: str, ip: str) -> objects.Object:
    """A Running pod of a rendered Deployment, as kwok leaves it."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": deployment["metadata"]["namespace"],
            "uid": f"uid-{name}",
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "t0"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "t0"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
            ],
            "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0}],
        },
    }


def config_maps(found: list[objects.Object]) -> dict[str, objects.Object]:
    return {o["metadata"]["name"]: o for o in found if o["kind"] == "ConfigMap"}


def plan_blue(local_port: int = 40001) -> podspec.LocalPod:
    found = rendered()
    pod = as_pod(find(found, "Deployment", "blue"), "blue-1", "10.244.0.7")
    return podspec.plan(
        pod,
        config_maps(found),
        {},
        root=ROOT,
        local_port=local_port,
        model_server="/opt/azmlinfsrv",
        python="/usr/bin/python3",
        base_env={"PATH": "/usr/bin"},
    )


def test_which_pods_the_runtime_runs() -> None:
    found = rendered()
    blue = as_pod(find(found, "Deployment", "blue"), "blue-1", "10.244.0.7")
    router = as_pod(find(found, "Deployment", "azureml-fe-v2"), "fe-1", "10.244.0.8")
    other = as_pod(find(found, "Deployment", "gateway"), "gw-1", "10.244.0.9")
    assert podspec.kind_of(blue) == podspec.MODEL
    assert podspec.kind_of(router) == podspec.ROUTER
    assert podspec.kind_of(other) is None
    assert podspec.runnable(blue)
    assert not podspec.runnable({**blue, "status": {"phase": "Pending"}})
    deleting = {**blue, "metadata": {**blue["metadata"], "deletionTimestamp": "now"}}
    assert not podspec.runnable(deleting)


def test_a_model_pod_runs_azmlinfsrv_with_its_files_where_the_pod_would_have_them() -> None:
    local = plan_blue()
    assert local.key == "10.244.0.7:5001" and local.local_port == 40001
    # The code and model ConfigMaps as files of their volumes, each mount a link to one.
    code = (EXAMPLE / "deployments" / "score" / "score.py").read_bytes()
    model = (EXAMPLE / "deployments" / "model" / "model.json").read_bytes()
    assert local.files[f"{ROOT}/.volumes/code/score.py"] == code
    assert local.files[f"{ROOT}/.volumes/model-files-0/model.json"] == model
    assert local.links[f"{ROOT}/var/azureml-app/code"] == f"{ROOT}/.volumes/code"
    assert local.links[f"{ROOT}/var/azureml-app/model"] == f"{ROOT}/.volumes/model"
    assert f"{ROOT}/.volumes/model" in local.directories
    # The pod's own init container copies the model into place, its paths under the root.
    (init,) = local.init
    assert init.name == "fetch-model"
    assert init.argv[:2] == ["/bin/sh", "-c"]
    assert (
        f"cp -RL {ROOT}/var/azureml-app/model-files/0/. {ROOT}/var/azureml-app/model/"
        in (init.argv[2])
    )
    # The container's command, on the loopback port, with the pod's environment.
    main = local.main
    assert main is not None
    assert main.argv == [
        "/opt/azmlinfsrv",
        "--entry_script",
        f"{ROOT}/var/azureml-app/code/score.py",
        "--port",
        "40001",
    ]
    assert main.env["AZUREML_MODEL_DIR"] == f"{ROOT}/var/azureml-app/model"
    assert main.env["WORKER_COUNT"] == "1" and main.env["PATH"] == "/usr/bin"
    assert main.cwd == f"{ROOT}/var/azureml-app/code"
    # The example gives no probes: the ML CLI v2 defaults (after 10 s, every 10 s, 2 s to
    # answer, 30 failures), for readiness and for liveness.
    defaults = podspec.Probe("/", "http", period=10.0, failure_threshold=30, initial_delay=10.0,
                             timeout=2.0)  # fmt: skip
    assert local.probe == local.liveness == defaults

    # Its conda file, as the container's AZUREML_EXTRA_CONDA_YAML_ABS_PATH names it.
    conda = (EXAMPLE / "deployments" / "model" / "conda.yml").read_bytes()
    assert podspec.conda_file(local) == conda


def test_a_router_pod_runs_the_router_listening_on_its_loopback_port() -> None:
    found = rendered()
    pod = as_pod(find(found, "Deployment", "azureml-fe-v2"), "fe-1", "10.244.0.8")
    local = podspec.plan(
        pod,
        config_maps(found),
        {},
        root="/r",
        local_port=40002,
        model_server="/opt/azmlinfsrv",
        python="/usr/bin/python3",
        base_env={},
        admin_local_port=40003,
    )
    # Its admin port (metrics, load reports) gets a loopback port of its own.
    assert local.admin == (render.ROUTER_ADMIN_PORT, 40003)
    assert local.admin_key == f"10.244.0.8:{render.ROUTER_ADMIN_PORT}"
    assert local.main is not None
    assert local.main.argv == [
        "/usr/bin/python3", "-m", "reconciler", "router", "serve",
        "--config", "/r/etc/azureml-fe/router.yaml",
    ]  # fmt: skip
    assert local.main.env["POD_NAME"] == "fe-1"
    assert local.main.env["ROUTER_SERVICE"] == "azureml-fe-v2"
    mounted = local.files["/r/.volumes/config/router.yaml"].decode()
    config = yaml.safe_load(
        podspec.router_config(mounted, 40002, ["/etc/azureml-fe"], "/r", admin_port=40003)
    )
    assert config["listen"] == "127.0.0.1:40002"
    assert config["admin_listen"] == "127.0.0.1:40003"
    assert [d["name"] for d in config["deployments"]] == ["blue", "green"]
    tls = {"listen": "0.0.0.0:8443", "tls": {"cert": "/etc/azureml-fe/tls/cert.pem"}}
    moved = yaml.safe_load(podspec.router_config(yaml.safe_dump(tls), 1, ["/etc/azureml-fe"], "/r"))
    assert moved["tls"] == {"cert": "/r/etc/azureml-fe/tls/cert.pem"}


def test_relocate_moves_whole_mount_paths_only() -> None:
    mounts = ["/var/app", "/var/app/model"]
    assert podspec.relocate("/var/app/model/x /var/app", mounts, "/R") == (
        "/R/var/app/model/x /R/var/app"
    )
    assert podspec.relocate("/var/apple /x/var/app", mounts, "/R") == "/var/apple /x/var/app"
    assert podspec.relocate("'/var/app/a'", mounts, "/R") == "'/R/var/app/a'"


def test_what_cannot_run_is_said() -> None:
    found = rendered()
    pod = as_pod(find(found, "Deployment", "blue"), "blue-1", "10.244.0.7")
    with pytest.raises(podspec.Unsupported, match="ConfigMap blue-code not found"):
        podspec.plan(pod, {}, {}, root="/r", local_port=1, model_server="m", python="p",
                     base_env={})  # fmt: skip
    pod["spec"]["containers"][0]["command"] = ["python", "serve.py"]
    with pytest.raises(podspec.Unsupported, match="does not run azmlinfsrv"):
        podspec.plan(pod, config_maps(found), {}, root="/r", local_port=1, model_server="m",
                     python="p", base_env={})  # fmt: skip


def test_ready_status_flips_both_conditions_and_counts_restarts() -> None:
    found = rendered()
    pod = as_pod(find(found, "Deployment", "blue"), "blue-1", "10.244.0.7")
    status = podspec.ready_status(pod, False, 2, "t1")
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["lastTransitionTime"] == "t1"
    assert by_type["ContainersReady"]["reason"] == "ContainersNotReady"
    assert by_type["PodScheduled"] == pod["status"]["conditions"][2]  # left as it was
    assert status["containerStatuses"] == [{"name": "c", "ready": False, "restartCount": 2}]
    assert not podspec.is_ready({**pod, "status": status})
    again = podspec.ready_status({**pod, "status": status}, True, 2, "t2")
    assert podspec.is_ready({**pod, "status": again})
    assert "reason" not in {c["type"]: c for c in again["conditions"]}["Ready"]


def test_the_pod_network_map(tmp_path: Path) -> None:
    path = tmp_path / "pod-network.json"
    podnetwork.write(path, {"10.244.0.7:5001": "127.0.0.1:40001"})
    urls = ["http://10.244.0.7:5001", "http://10.244.0.9:5001"]
    # Unmapped endpoints are not served here and are left out.
    assert podnetwork.translate(urls, {podnetwork.VARIABLE: str(path)}) == [
        "http://127.0.0.1:40001"
    ]
    assert podnetwork.translate(urls, {}) == urls  # a real cluster: unchanged
    assert podnetwork.read(tmp_path / "missing.json") == {}
    assert not list(tmp_path.glob(".*partial"))


def test_score_finds_the_deployment_its_router_and_credential() -> None:
    found = rendered()
    maps = [o for o in found if o["metadata"]["name"] == "azureml-fe-v2-config"]
    target = score.find_target(maps, "blue")
    assert target == score.Target("blue", "azureml", "azureml", "azureml-fe-v2", "key",
                                  "blue-auth")  # fmt: skip
    assert score.find_target(maps, "nope") is None
    key = base64.b64encode(b"k1").decode()
    assert score.credential(target, {"data": {"primaryKey": key}}) == "Bearer k1"
    assert score.credential(target, None) is None
    green = score.find_target(maps, "green")
    assert green is not None and green.auth_mode == "token"
    signing = base64.b64encode(b"a-signing-key-of-at-least-32-bytes!").decode()
    bearer = score.credential(green, {"data": {"signingKey": signing}})
    assert bearer is not None
    assert tokens.Authenticator(
        "token", "green", signing_key="a-signing-key-of-at-least-32-bytes!"
    ).allows(bearer)
    pods = [
        {"kind": "router", "ready": False, "namespace": "azureml", "service": "azureml-fe-v2",
         "url": "http://127.0.0.1:1"},
        {"kind": "router", "ready": True, "namespace": "azureml", "service": "azureml-fe-v2",
         "url": "http://127.0.0.1:2"},
    ]  # fmt: skip
    assert score.local_router(pods, target) == "http://127.0.0.1:2"
    assert score.local_router([], target) is None


METRICS_BEFORE = """
router_requests_total{code="200",deployment="blue"} 100.0
router_requests_total{code="401",deployment="blue"} 2.0
"""
METRICS_AFTER = """
# TYPE router_requests_total counter
router_requests_total{code="200",deployment="blue"} 150.0
router_requests_total{code="401",deployment="blue"} 2.0
router_requests_total{code="200",deployment="green"} 4.0
router_queue_depth{deployment="blue"} 3.0
router_in_flight{deployment="blue"} 2.0
router_backends{deployment="blue",state="up"} 2.0
router_backends{deployment="blue",state="down"} 1.0
router_utilization{deployment="blue"} 2.5
router_desired_replicas{deployment="blue"} 4.0
router_current_replicas{deployment="blue"} 2.0
"""


def test_router_top_rows_from_two_reads() -> None:
    before = routertop.parse(METRICS_BEFORE)
    after = routertop.parse(METRICS_AFTER)
    blue, green = routertop.rows(before, after, 5.0)
    assert blue == routertop.Row("blue", 2, 4, 2, 2.5, 3, 2, 10.0)
    assert green == routertop.Row("green", None, None, 0, None, 0, 0, 0.8)
    text = routertop.table([blue, green])
    assert text.splitlines()[1].split() == ["blue", "2", "4", "2", "250%", "3", "2", "10.0"]
    # Two routers: queue, in flight and rate add up.
    merged = routertop.merge([after, after])
    assert routertop.rows(before, merged, 1.0)[0].queued == 6
    assert json.dumps(text)  # printable as it is
