"""`reconciler sync --notifications` on the real control plane (issue 30's "must show"): the
loop, a real process following a git repo, applies a commit and refuses an invalid one, and
receivers on loopback get both events: a generic webhook that verifies the HMAC, Slack- and
Teams-shaped receivers and a fake GitHub commit-status API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import kube
from tests.cluster.kubehelpers import wait_until
from tests.cluster.test_sync_on_cluster import Sync, applied_revision, commit, git_repo
from tests.helpers import Received, http_server, verified_generic, verified_slack, verified_teams

pytestmark = pytest.mark.cluster
HMAC_KEY = "cluster-hmac-key"
TOKEN = "cluster-github-token"


def notifications_file(folder: Path, url: str) -> Path:
    folder.mkdir()
    (folder / "hmac-key").write_text(HMAC_KEY)
    (folder / "github-token").write_text(TOKEN)
    (folder / "slack-url").write_text(f"{url}/slack/T0/B0/secret")
    (folder / "teams-url").write_text(f"{url}/teams/workflow")
    path = folder / "notifications.yaml"
    path.write_text(
        f"""\
providers:
  - {{name: hooks, type: generic-hmac, address: "{url}/hook", tokenFile: hmac-key}}
  - {{name: team, type: slack, addressFile: slack-url}}
  - {{name: ops, type: msteams, addressFile: teams-url}}
  - name: commits
    type: github
    address: https://github.example.com/org/manifests
    apiURL: {url}/api
    tokenFile: github-token
"""
    )
    return path


def test_the_loop_notifies_an_applied_and_a_refused_commit(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"n{namespace[-6:]}"
    root, first = git_repo(tmp_path, name, namespace)
    received = Received()
    with http_server(received.handler()) as url:
        config = notifications_file(tmp_path / "notify", url)
        sync = Sync(
            cluster_kubeconfig, root, tmp_path / "cache", "--branch", "main",
            "--notifications", str(config),
        )  # fmt: skip
        try:
            wait_until(lambda: applied_revision(cluster, name), lambda r: r == first, "1st", 90)

            def kinds(requests: list[tuple[str, dict[str, str], bytes]]) -> list[str]:
                return [json.loads(b)["kind"] for p, _, b in requests if p == "/hook"]

            received.wait(lambda r: "applied" in kinds(r) and len(r) >= 4, 30)

            blue = root / "deployments" / "blue.yaml"
            blue.write_text(blue.read_text().replace("max_instances: 5", "max_instances: lots"))
            bad = commit(root, "broken")
            requests = received.wait(lambda r: "refused" in kinds(r) and len(r) >= 8, 60)
        finally:
            assert sync.stop() == 0, sync.log.read_text()[-3000:]
    log = sync.log.read_text()
    for secret in (HMAC_KEY, TOKEN, "/slack/T0/B0/secret"):
        assert secret not in log

    generic = [verified_generic(HMAC_KEY, h, b) for p, h, b in requests if p == "/hook"]
    applied = next(g for g in generic if g["kind"] == "applied")
    assert (applied["extension"], applied["revision"]) == (name, first)
    refused = next(g for g in generic if g["kind"] == "refused")
    assert (refused["extension"], refused["revision"]) == (name, bad)
    assert any(
        "deployments/blue.yaml:27: scale_settings.max_instances" in d for d in refused["details"]
    )
    assert [g["kind"] for g in generic].count("refused") == 1  # not once per tick

    slack = [verified_slack(b) for p, _, b in requests if p.startswith("/slack/")]
    assert any(f"revision {bad[:12]} refused" in s["text"] for s in slack)
    cards = [verified_teams(b) for p, _, b in requests if p.startswith("/teams/")]
    assert any(f"revision {first[:12]} applied" in c["body"][0]["text"] for c in cards)

    statuses = {p: (h, json.loads(b)) for p, h, b in requests if "/statuses/" in p}
    first_status = statuses[f"/api/repos/org/manifests/statuses/{first}"]
    assert first_status[0]["Authorization"] == f"Bearer {TOKEN}"
    assert first_status[1]["context"] == f"reconciler/{name}"
    assert first_status[1]["state"] in ("success", "pending")
    assert statuses[f"/api/repos/org/manifests/statuses/{bad}"][1]["state"] == "failure"
