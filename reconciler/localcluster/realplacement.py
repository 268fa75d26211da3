"""Which pods the local plane runs on its real nodes: an admission policy of the plane's own.

Real nodes are tainted (``realnodeconfig.REAL_NODE_TAINT``) so that the extension's own
components, whose images no registry here serves, stay on the kwok nodes. The project's
workloads should run for real instead, without anything changing in what renders for a real
cluster. So the plane, not the render, places them: a ``MutatingAdmissionPolicy`` (CEL, served
by the API server itself: no webhook to run) adds the real node's toleration and node selector
to the pods it matches when they are created, and has their containers pull only an image the
node lacks (the plane loads the images it builds into the nodes; no registry is reachable).

Matched: the project's workload pods, except those asking for a GPU (no real node has one: they
stay on the simulated GPU nodes, where ``job status`` says they do not run):

- training job pods (the ``gitops.mlext.io/job`` label the render puts on a job's pod template)
  and model deployment pods (``gitops.mlext.io/deployment``), each with the reconciler's
  managed-by label;
- router pods: a container whose command starts ``reconciler router serve`` (the render's
  router component; the extension's labels on it are not the reconciler's own);
- the in-cluster controller's pods, as ``reconciler install`` prints their Deployment: the
  labels ``app.kubernetes.io/name=mlext-reconciler`` and ``app.kubernetes.io/component=
  controller`` on its pod template (``CONTROLLER_LABELS``). Matched by these labels rather than
  by how its container starts or by its image: the container gives only ``args`` (the image's
  entrypoint is ``reconciler``), so a match on the command would depend on the image's
  entrypoint, and ``install --image`` may name any image; the labels are the selector of the
  installed Deployment itself, so they are on every pod it makes whatever the image or args.
  This module cannot import ``gitops.install`` (sibling layers), so the pair is written here
  and a unit test holds it equal to what ``install`` prints.

Scoring then goes client -> router pod -> model pods over the real pod network: the router in its
pod reaches the model pods' IPs directly, and the host reaches the router's pod IP through the
plane's host route (``podnetwork``).

Pure: the objects only. ``realnode`` creates them when it starts real nodes.
"""

from __future__ import annotations

from typing import Any

from reconciler import objects
from reconciler.localcluster import realnodeconfig as rc
from reconciler.render import workloadobjects

POLICY_NAME = "mlext-local-real-node-placement"
GPU_RESOURCE = "nvidia.com/gpu"


def _quoted(text: str) -> str:
    """A CEL string literal (the label keys and values here have no quote or backslash)."""
    return f"'{text}'"


# The selector of `reconciler install`'s Deployment (`gitops.install`), on each of its pods.
CONTROLLER_LABELS = {objects.NAME_LABEL: "mlext-reconciler", objects.COMPONENT_LABEL: "controller"}


def _workload_labels() -> str:
    """CEL: the pod carries a job's or a model deployment's label and the managed-by label."""
    labels = "object.metadata.labels"
    kinds = " || ".join(
        f"{_quoted(label)} in {labels}"
        for label in (workloadobjects.JOB_LABEL, workloadobjects.DEPLOYMENT_LABEL)
    )
    return (
        f"has({labels}) && ({kinds})"
        f" && {_quoted(objects.MANAGED_BY_LABEL)} in {labels}"
        f" && {labels}[{_quoted(objects.MANAGED_BY_LABEL)}] == {_quoted(objects.MANAGED_BY)}"
    )


def _router_command() -> str:
    """CEL: a container of the pod runs the project's router."""
    words = " && ".join(
        f"c.command[{i}] == {_quoted(w)}" for i, w in enumerate(workloadobjects.ROUTER_COMMAND)
    )
    return (
        f"object.spec.containers.exists(c, has(c.command) && c.command.size() >= "
        f"{len(workloadobjects.ROUTER_COMMAND)} && {words})"
    )


def _controller_labels() -> str:
    """CEL: the pod is one of the installed controller's (its Deployment's selector labels)."""
    labels = "object.metadata.labels"
    pairs = " && ".join(
        f"{_quoted(k)} in {labels} && {labels}[{_quoted(k)}] == {_quoted(v)}"
        for k, v in CONTROLLER_LABELS.items()
    )
    return f"has({labels}) && {pairs}"


def match_expression() -> str:
    """CEL: the pod is a job's, a model deployment's, a router's or the controller's pod of this
    project and asks for no GPU."""
    return (
        f"(({_workload_labels()}) || {_router_command()} || ({_controller_labels()}))"
        " && !object.spec.containers.exists(c, has(c.resources) && has(c.resources.limits)"
        f" && {_quoted(GPU_RESOURCE)} in c.resources.limits)"
    )


def _add(path: str, value: str) -> str:
    return f"JSONPatch{{op: 'add', path: '{path}', value: {value}}}"


def _toleration_patch() -> str:
    """CEL: a JSON patch adding the real node's toleration to whatever tolerations the pod has
    (a pod's tolerations are an atomic list, which an apply configuration may not change)."""
    taint = rc.REAL_NODE_TAINT
    toleration = (
        "Object.spec.tolerations{"
        f"key: {_quoted(taint['key'])}, operator: 'Equal', "
        f"value: {_quoted(taint['value'])}, effect: {_quoted(taint['effect'])}"
        "}"
    )
    return (
        f"has(object.spec.tolerations) ? [{_add('/spec/tolerations/-', toleration)}]"
        f" : [{_add('/spec/tolerations', f'[{toleration}]')}]"
    )


def _node_selector_patch() -> str:
    """CEL: a JSON patch adding the real node's label to the pod's node selector (an atomic map
    too), keeping the labels it selects already."""
    key, value = rc.REAL_NODE_LABEL
    escaped = key.replace("~", "~0").replace("/", "~1")  # a JSON pointer's escapes
    selector = f"{{{_quoted(key)}: {_quoted(value)}}}"
    return (
        f"has(object.spec.nodeSelector) ? [{_add(f'/spec/nodeSelector/{escaped}', _quoted(value))}]"
        f" : [{_add('/spec/nodeSelector', selector)}]"
    )


def _pull_policy_apply() -> str:
    """CEL: every container pulls only when its image is missing. The API server gives an image
    named `:latest` (or untagged) the policy Always, which makes the kubelet pull it from a
    registry this machine cannot reach, though the plane loaded it into the node. Containers
    are a list keyed by name, so an apply configuration sets the field in each, by name."""

    def each(field: str) -> str:
        return (
            f"object.spec.{field}.map(c, Object.spec.{field}{{"
            "name: c.name, imagePullPolicy: 'IfNotPresent'})"
        )

    init = f"has(object.spec.initContainers) ? {each('initContainers')} : []"
    return (
        f"Object{{spec: Object.spec{{containers: {each('containers')}, initContainers: {init}}}}}"
    )


def policy_objects() -> list[dict[str, Any]]:
    """The policy and its binding, as the API server takes them."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "matchConditions": [{"name": "project-workload", "expression": match_expression()}],
            # A pod the policy cannot place is refused rather than left on a node that never
            # runs it: the error names the policy.
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [
                {
                    "patchType": "JSONPatch",
                    "jsonPatch": {"expression": _toleration_patch()},
                },
                {
                    "patchType": "JSONPatch",
                    "jsonPatch": {"expression": _node_selector_patch()},
                },
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {"expression": _pull_policy_apply()},
                },
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME},
    }
    return [policy, binding]
