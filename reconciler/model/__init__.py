"""The `load`, `validate` and `model` stages: YAML text -> a validated, typed repo.

Pure: no cluster, no network, no clock (it reads files only through a `source.Snapshot`).
From the text inwards: `documents` (YAML with line numbers), `manifests` (what each document
declares), `schemas` (the JSON Schemas of `schemas/`), `settings` (the extension's settings table
and rules), `extensions`, `instancetypes`, `workloads` (typed models), `components` (which
components an extension gets: `docs/domain.md#components`), `placement` (instance types and node
selectors of a workload), `quantities`, `tls`, `problems` (the `FILE:LINE: field: message` errors),
and `repo` (the whole repo loaded and validated in one call, reusing work through `memo`).
`extensionedit` is the pure half of `reconciler extension create|update|delete`: edits of an
Extension manifest's YAML text, on top of `yamledit` (one document of a multi-document YAML text
edited in place, keeping its comments and style).
"""
