"""GitOps reconciler for the machine-learning extension for Kubernetes.

The package turns a repo of YAML manifests (Extension, InstanceType, Job, Deployment) into the
Kubernetes objects of the extension and keeps a cluster on them. The flow is one direction, and
the subpackages follow it (`docs/architecture.md`):

    source -> load -> validate -> model -> render -> plan -> apply -> status
    (source, gitsnapshot)  (model/)      (render/)  (engine/, through kube)  (gitops/: the loop)

`cli/` sits on top, `router/` and `localcluster/` beside the loop. The data the pipeline reads,
`schemas/` and `templates/`, sit at the repository's top level and ship inside the wheel.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder of the package's data called `name` (`schemas` or `templates`).

    An installed wheel carries it inside the package (the build copies it there); a source
    checkout, editable installs included, keeps it at the repository's top level beside the
    package.
    """
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
