"""The GitOps loop behind `reconciler sync` and `reconciler controller`.

`gitsource` (fetch one ref of a remote repo into a bare mirror), `gitcredentials` (the
credentials it sends, read from files, and URLs shown without them),
`controller` (one tick: fetch, load, reconcile, record; the loop with backoff), `driftwatch`
(watches on owned objects that trigger a tick), `webhook` (signed push events), `httpserver`
(metrics, probes and webhook endpoints), `loopmetrics` (the loop's Prometheus metrics), `heap`
(when the loop collects garbage), `runtime` (the loop as a process, from typed settings: the
threads, signals, leader election, live cache and servers around one `controller`) and
`install` (the in-cluster controller's own manifests). Uses `engine` for each reconcile.
"""
