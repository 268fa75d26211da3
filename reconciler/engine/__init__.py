"""The `plan`, `apply` and `status` stages: a rendered repo against a live cluster.

Pure halves: `diffs` (normalised field-level diffs), `plans` (a plan is data), `inventory` (what
the reconciler owns; prune safety), `ownership` (fields shared with the router), `health` (is a
live object healthy; provisioning state), `record` (the `ExtensionStatus` record as data),
`workloadstatus`, `preflight` (documented prerequisites against the nodes), `revisiondiff` (two
git revisions compared, no cluster). The cluster side: `reconcile` (the named phases: observe,
plan, record, apply, prune, health) and `executor` (the only place a plan touches the cluster),
both through the `kube` edge.
"""
