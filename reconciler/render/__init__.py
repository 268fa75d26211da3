"""The `render` stage: a validated repo -> every Kubernetes object it declares, in apply order.

Pure (no cluster): `render` (the repo's extensions, instance types and workloads, with the
labels and annotations that tie each object to its extension), `templating` (the Jinja
environment over `templates/`), `workloadobjects` (jobs and model deployments -> objects), `auth`
(the keys of model deployments, kept in one Secret each).
"""
