"""GitOps reconciler for the machine-learning extension for Kubernetes.

The package turns a repo of YAML manifests (Extension, InstanceType, Job, Deployment) into the
Kubernetes objects of the extension and keeps a cluster on them. The flow is one direction:
source -> load -> validate -> model -> render -> plan -> apply -> status (see README).
"""

__version__ = "0.1.0"
