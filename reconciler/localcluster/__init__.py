"""A real, local Kubernetes control plane for the project's tests and demo.

Docker (and so kind) cannot run on the project's machines, so this subpackage builds the real
control plane from the Go module proxy and runs it on loopback:

- ``build``: builds the multi-call binary in ``<repo>/controlplane`` (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kwok, and kubectl at the same version) once per pin
  into ``<repo>/.cache/controlplane/<version>/``.
- ``pki``: the certificates and service-account keys of one plane (``cryptography``).
- ``config``: pure logic: ports, paths, each component's flags, kubeconfigs, node objects, the
  state record.
- ``plane``: process I/O: start the components, wait until ready, create the simulated nodes,
  record a state file, stop with no orphans; kill one component and relaunch it (crash tests).

Its commands (``reconciler cluster up|down|status|build|kubectl``) are ``reconciler.cli.cluster``.
Nothing here is imported by the reconciler's own pipeline; it is tooling around it.
"""
