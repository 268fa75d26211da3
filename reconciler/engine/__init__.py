"""The `plan`, `apply` and `status` stages: a rendered repo against a live cluster.

`revision` owns a repo revision through load and render (with `reuse`, what its stages may
take from earlier work); the rest take its rendered objects. Pure halves: `diffs` (normalised
field-level diffs), `plans` (a plan is data), `inventory` (what
the reconciler owns; prune safety), `ownership` (fields shared with the router), `health` (is a
live object healthy; provisioning state), `record` (the `ExtensionStatus` record as data),
`workloadstatus`, `preflight` (documented prerequisites against the nodes), `revisiondiff` (two
git revisions compared, no cluster), `events` (what carrying out a revision reports, typed;
`reconciler.printers` words it). The cluster side, all through the `kube` edge: `reconcile`
(the named phases in order: observe, plan, record, apply, prune, health), `observe` (live objects
and the server's dry run), `executor` (the only place a plan touches the cluster) and
`recordstore` (the `ExtensionStatus` records read and written, and their Events).
"""
