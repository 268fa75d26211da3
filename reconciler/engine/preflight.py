"""Preflight: the documented prerequisites of a repo's extensions, checked against the nodes.

Sits after `load` / `validate` and beside `render`: it takes a valid repo's extensions and
instance types and the live cluster's Node objects (plain dicts, as `kube.list_objects` returns
them) and says what the cluster lacks, as `Finding` values (an error or a warning, the extension
or instance type it is about, and the fact). The rules (`docs/domain.md#preflight-facts`,
`docs/domain.md#instance-types`):

- `inferenceRouterHA` (3 router replicas) needs >= 3 ready worker nodes matching the extension's
  nodeSelector;
- production (inference over HTTPS, i.e. `allowInsecureConnections` false: plain HTTP is the
  dev/test scenario) needs >= 4 CPU and 14 GB of memory allocatable on ready worker nodes;
- every nodeSelector (the extension's, and each instance type's merged with it as `placement`
  merges them) matches at least one ready worker node;
- an instance type with `nvidia.com/gpu` limits needs a ready worker node with that many
  allocatable GPUs that matches its merged nodeSelector;
- `inferenceRouterServiceType: LoadBalancer` is a warning: the cluster must be able to provision
  one, which most on-prem clusters cannot;
- every job and model deployment (`Demand`: its pod's requests, as its placement merges them,
  times its instance count or initial replicas, and its merged nodeSelector) fits: its
  selector matches a ready worker node, and its pods can be placed one by one, as the scheduler
  would, on the matching nodes' allocatable capacity less what the pods already bound to them
  request (not the repo's own pods: they are what would be replaced), the repo's workloads
  taking their share in turn. Each finding names the workload's FILE:LINE.

A worker node is one without the control-plane role label and without a control-plane
NoSchedule / NoExecute taint. Pure: no I/O; `reconciler.cli.preflight` fetches the nodes and
pods and prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconciler.model import extensions, instancetypes, placement, problems, quantities, workloads
from reconciler.render import workloadobjects

HA_REPLICAS = 3
PRODUCTION_CPU = Decimal(4)
PRODUCTION_MEMORY = 14 * Decimal(10) ** 9  # 14 GB, as the product documentation writes it
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
_GIB = Decimal(2) ** 30


@dataclass(frozen=True)
class Finding:
    """One prerequisite the cluster does not meet (error) or cannot be seen to meet (warning)."""

    severity: problems.Severity
    subject: str  # `extension NAME`, `instance type NAME`, `deployment NAME` or `job NAME`
    message: str
    where: str = ""  # FILE:LINE of the workload's manifest, when it is about one

    @property
    def is_error(self) -> bool:
        return self.severity is problems.Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{self.severity.value}: {where}{self.subject}: {self.message}"

    def as_json(self) -> dict[str, str]:
        found = {"severity": self.severity.value, "subject": self.subject, "message": self.message}
        return {**found, "where": self.where} if self.where else found


@dataclass(frozen=True)
class Node:
    """What preflight needs to know about one Node object."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = False
    control_plane: bool = False
    cpu: Decimal = Decimal(0)  # allocatable cores
    memory: Decimal = Decimal(0)  # allocatable bytes
    gpus: Decimal = Decimal(0)  # allocatable nvidia.com/gpu

    @property
    def worker(self) -> bool:
        """Ready, and not a control-plane node: the extension's pods can land here."""
        return self.ready and not self.control_plane

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(label) == value for label, value in selector.items())


def node_from_object(obj: Mapping[str, Any]) -> Node:
    """A Node object (dict) -> `Node`; missing or unparsable quantities count as 0."""
    metadata = obj.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    tainted = any(
        t.get("key") in CONTROL_PLANE_LABELS and t.get("effect") in _BLOCKING_EFFECTS
        for t in spec.get("taints") or []
    )
    allocatable = status.get("allocatable") or {}
    return Node(
        name=str(metadata.get("name", "")),
        labels=labels,
        ready=ready,
        control_plane=tainted or any(label in labels for label in CONTROL_PLANE_LABELS),
        cpu=_quantity(allocatable.get("cpu")),
        memory=_quantity(allocatable.get("memory")),
        gpus=_quantity(allocatable.get(instancetypes.GPU)),
    )


@dataclass(frozen=True)
class Resources:
    """What a pod requests (or a node has free) of the resources preflight counts."""

    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    gpus: Decimal = Decimal(0)

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory, self.gpus + other.gpus)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.gpus - other.gpus)

    def holds(self, wanted: Resources) -> bool:
        return self.cpu >= wanted.cpu and self.memory >= wanted.memory and self.gpus >= wanted.gpus

    def text(self) -> str:
        gpus = f" / {_number(self.gpus)} GPU" if self.gpus else ""
        return f"{_number(self.cpu)} CPU / {_gib(self.memory)} GiB{gpus}"


@dataclass(frozen=True)
class Demand:
    """What one job or model deployment asks of the nodes: `pods` pods of `each`, on nodes
    matching `selector`. `label` / `namespace`: how its own pods on the cluster are known."""

    subject: str  # `deployment NAME` / `job NAME`
    where: str  # FILE:LINE
    pods: int
    each: Resources
    selector: Mapping[str, str]
    namespace: str
    label: tuple[str, str]


def demand(
    workload: workloads.Workload,
    extension: extensions.Extension,
    instance_types: dict[str, instancetypes.InstanceType],
) -> Demand:
    """A valid workload's demand: its placement's requests (a resource given only as a limit is
    requested at the limit, as Kubernetes defaults it; GPUs are limits only), times its
    instance count (a job) or initial replicas (a deployment)."""
    where = placement.place(workload, extension, instance_types)
    wanted = {**{k: v for k, v in where.limits.items() if k != instancetypes.GPU}, **where.requests}
    if isinstance(workload, workloads.Job):
        subject, pods = f"job {workload.name}", workload.instance_count
        label = (workloadobjects.JOB_LABEL, workload.name)
    else:
        assert isinstance(workload, workloads.Deployment)
        subject, pods = f"deployment {workload.name}", workload.scale.initial_replicas
        label = (workloadobjects.DEPLOYMENT_LABEL, workload.name)
    each = Resources(
        _quantity(wanted.get("cpu")),
        _quantity(wanted.get("memory")),
        _quantity(where.limits.get(instancetypes.GPU)),
    )
    return Demand(subject, workload.manifest.where, pods, each, where.node_selector,
                  extension.release_namespace, label)  # fmt: skip


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """What a pod requests, as the scheduler counts it: its containers' requests summed (a
    resource given only as a limit at the limit), or its largest init container's when that
    is more, plus its overhead."""

    def of(container: Mapping[str, Any]) -> Resources:
        resources = container.get("resources") or {}
        given = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return Resources(_quantity(given.get("cpu")), _quantity(given.get("memory")),
                         _quantity(given.get(instancetypes.GPU)))  # fmt: skip

    spec = pod.get("spec") or {}
    total = sum((of(c) for c in spec.get("containers") or []), Resources())
    for init in spec.get("initContainers") or []:
        first = of(init)
        total = Resources(max(total.cpu, first.cpu), max(total.memory, first.memory),
                          max(total.gpus, first.gpus))  # fmt: skip
    return total + of({"resources": {"requests": spec.get("overhead") or {}}})


def _quantity(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    try:
        return quantities.parse(value)
    except (ValueError, TypeError, AttributeError):
        return Decimal(0)


def check(
    declared: Mapping[str, extensions.Extension],
    instance_types: Mapping[str, instancetypes.InstanceType],
    node_objects: Iterable[Mapping[str, Any]],
    demands: Sequence[Demand] = (),
    pod_objects: Iterable[Mapping[str, Any]] = (),
) -> list[Finding]:
    """Every finding for the repo's extensions (`declared`), instance types and workloads
    (`demands`, in the order they take their share) on these nodes, with these pods bound to
    them: extensions by name, then instance types by name, then workloads."""
    node_objects = list(node_objects)
    workers = sorted(
        (n for n in map(node_from_object, node_objects) if n.worker), key=lambda n: n.name
    )
    found: list[Finding] = []
    for _, extension in sorted(declared.items()):
        found.extend(_extension_findings(extension, workers))
    for _, instance_type in sorted(instance_types.items()):
        for _, extension in sorted(declared.items()):
            found.extend(_instance_type_findings(instance_type, extension, workers))
    found.extend(_capacity_findings(demands, workers, pod_objects))
    return found


def _capacity_findings(
    demands: Sequence[Demand], workers: Sequence[Node], pod_objects: Iterable[Mapping[str, Any]]
) -> list[Finding]:
    """Each workload's pods placed in turn on the free capacity of the workers its selector
    matches, each pod on the node with the most CPU free (the scheduler spreads by least
    allocated), as long as one holds it."""
    ours = {(d.namespace, *d.label) for d in demands}
    free = {n.name: Resources(n.cpu, n.memory, n.gpus) for n in workers}
    for pod in pod_objects:
        metadata = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in free or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = metadata.get("labels") or {}
        if any(metadata.get("namespace") == ns and labels.get(k) == v for ns, k, v in ours):
            continue  # the repo's own pod: what applying it replaces, not what it adds to
        free[node] = free[node] - pod_requests(pod)
    found = []
    for wanted in demands:
        matching = [n.name for n in workers if n.matches(wanted.selector)]
        if not matching:
            message = f"{_selector_text(wanted.selector)} matches no ready worker node"
            found.append(_error(wanted.subject, message, wanted.where))
            continue
        placed = 0
        for _ in range(wanted.pods):
            fits = [name for name in matching if free[name].holds(wanted.each)]
            if not fits:
                break
            best = max(fits, key=lambda name: (free[name].cpu, free[name].memory))
            free[best] = free[best] - wanted.each
            placed += 1
        if placed < wanted.pods:
            found.append(_error(wanted.subject, _short(wanted, placed, matching, free),
                                wanted.where))  # fmt: skip
    return found


def _short(
    wanted: Demand, placed: int, matching: Sequence[str], free: Mapping[str, Resources]
) -> str:
    """`needs 2 pods of 64 CPU / 1.5 GiB; 0 fit on the 4 ready worker nodes ...`."""
    plural = "" if wanted.pods == 1 else "s"
    where = f" matching {_selector_text(wanted.selector)}" if wanted.selector else ""
    most = sorted(matching, key=lambda name: (-free[name].cpu, name))[:3]
    left = ", ".join(f"{name} {free[name].text()}" for name in most)
    more = f", ... ({len(matching)} in all)" if len(matching) > len(most) else ""
    return (
        f"needs {wanted.pods} pod{plural} of {wanted.each.text()}; {placed} fit on the ready "
        f"worker nodes{where} (free after what is requested there: {left}{more})"
    )


def _extension_findings(extension: extensions.Extension, workers: Sequence[Node]) -> list[Finding]:
    values = extension.settings
    subject = f"extension {extension.name}"
    selector = values.node_selector
    matching = [n for n in workers if n.matches(selector)]
    found: list[Finding] = []
    if not matching:
        no_node = (
            f"{_selector_text(selector)} matches no ready worker node"
            if selector
            else "the cluster has no ready worker node"
        )
        found.append(_error(subject, no_node))
    if values.inference and values["inferenceRouterHA"] and len(matching) < HA_REPLICAS:
        where = f" matching {_selector_text(selector)}" if selector else ""
        found.append(
            _error(
                subject,
                f"inferenceRouterHA needs at least {HA_REPLICAS} ready worker nodes{where} "
                f"for its {HA_REPLICAS} router replicas; found {_nodes_text(matching)}",
            )
        )
    cpu, memory = _totals(workers)
    if values.https and (cpu < PRODUCTION_CPU or memory < PRODUCTION_MEMORY):
        found.append(
            _error(
                subject,
                "production (HTTPS inference, allowInsecureConnections false) needs at least "
                f"{_number(PRODUCTION_CPU)} CPU and 14 GB ({_gib(PRODUCTION_MEMORY)} GiB) of "
                f"memory on ready worker nodes; cluster has {_capacity_text(workers)}",
            )
        )
    if values.inference and values["inferenceRouterServiceType"] == "LoadBalancer":
        found.append(
            Finding(
                problems.Severity.WARNING,
                subject,
                "inferenceRouterServiceType LoadBalancer: the cluster must be able to provision "
                "a load balancer (most on-prem clusters cannot; NodePort works everywhere)",
            )
        )
    return found


def _instance_type_findings(
    instance_type: instancetypes.InstanceType,
    extension: extensions.Extension,
    workers: Sequence[Node],
) -> list[Finding]:
    """The instance type's nodeSelector merged with the extension's; a merge that conflicts is
    validation's business (an error when a workload uses that pair), not a cluster fact."""
    ours = extension.settings.node_selector
    if any(ours.get(label, value) != value for label, value in instance_type.node_selector.items()):
        return []
    selector = dict(sorted({**ours, **instance_type.node_selector}.items()))
    subject = f"instance type {instance_type.name}"
    with_extension = f" (with extension {extension.name})" if ours else ""
    matching = [n for n in workers if n.matches(selector)]
    if not matching:
        if not instance_type.node_selector:
            return []  # the same selector as the extension's: reported there
        message = f"{_selector_text(selector)}{with_extension} matches no ready worker node"
        return [_error(subject, message)]
    gpus = instance_type.gpus
    if gpus and not any(n.gpus >= gpus for n in matching):
        have = ", ".join(f"{n.name}: {_number(n.gpus)}" for n in matching[:5])
        more = f", ... ({len(matching)} in all)" if len(matching) > 5 else ""
        where = f" matching {_selector_text(selector)}{with_extension}" if selector else ""
        return [
            _error(
                subject,
                f"needs {gpus} {instancetypes.GPU} on one node, but no ready worker node{where} "
                f"has that many allocatable ({have}{more})",
            )
        ]
    return []


def summary(node_objects: Iterable[Mapping[str, Any]]) -> str:
    """`4 ready worker nodes, 16 CPU / 64 GiB allocatable`."""
    workers = [n for n in map(node_from_object, node_objects) if n.worker]
    plural = "" if len(workers) == 1 else "s"
    return f"{len(workers)} ready worker node{plural}, {_capacity_text(workers)}"


def _totals(nodes: Sequence[Node]) -> tuple[Decimal, Decimal]:
    """(allocatable cores, allocatable bytes) summed over `nodes`."""
    return sum((n.cpu for n in nodes), Decimal(0)), sum((n.memory for n in nodes), Decimal(0))


def _capacity_text(nodes: Sequence[Node]) -> str:
    cpu, memory = _totals(nodes)
    return f"{_number(cpu)} CPU / {_gib(memory)} GiB allocatable"


def _error(subject: str, message: str, where: str = "") -> Finding:
    return Finding(problems.Severity.ERROR, subject, message, where)


def _selector_text(selector: Mapping[str, str]) -> str:
    return "nodeSelector " + ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _nodes_text(nodes: Sequence[Node]) -> str:
    if not nodes:
        return "none"
    return f"{len(nodes)} ({', '.join(n.name for n in nodes)})"


def _number(value: Decimal) -> str:
    """`4`, `3.5`, `0.25`: no exponent, no trailing zeros."""
    return f"{value.quantize(Decimal('0.001')).normalize():f}"


def _gib(value: Decimal) -> str:
    """Bytes as GiB with at most one decimal: `48`, `13`, `7.5`."""
    return _number((value / _GIB).quantize(Decimal("0.1")))
