"""The controller's Helm chart, written from the template `reconciler install` renders.

One source, two outputs: `templates/install/controller.yaml.j2` is rendered by `install` with
values and here with Helm expressions in the same places (`namespace`, `image`, `args`, the RBAC
rules, ...), so the chart's `templates/controller.yaml` is that template in Helm's language and
`helm template` prints what `install` prints for the same options. The parts `install` computes
in Python are written from the same code: the args from `install.OPTION_FLAGS`, the
ClusterRole's rules from a render for a placeholder extension whose role names become a Helm
loop over `.Values.extensions`, the Role's optional Secret rule from `install.namespace_rules`.
The values are `install`'s options (the namespace is the release's); the ExtensionStatus CRD
goes into `crds/`. Helm does not create the namespace with the Pod Security label `install`
gives it (docs/commands.md says how).

`reconciler install --chart DIR` writes it; the committed chart (`charts/mlext-reconciler`) is
checked against `files()` by a unit test. Pure: returns the files' text.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from reconciler import __version__, objects
from reconciler.engine import record
from reconciler.gitops import install
from reconciler.render import templating

DIRECTORY = "charts/mlext-reconciler"
# A valid extension name no real one is: the ClusterRole names it renders become a Helm loop.
_EXTENSION = "helmextensionplaceholder"
_SECRET = "helm-decryption-secret-placeholder"
# What each Options field is called in values.yaml, with the comment it gets there.
VALUES: dict[str, tuple[str, str]] = {
    "repo": ("repo", "The manifests repo the controller follows: a git URL. Required."),
    "branch": ("branch", "Branch to follow."),
    "path": ("path", "The folder inside the repo that holds the manifests."),
    "interval": ("interval", "How often the controller fetches the repo."),
    "image": ("image", "The controller's image."),
    "git_secret": (
        "gitSecret",
        f"Secret in the release's namespace with the git credentials, mounted at "
        f"{install.GIT_CREDENTIALS_DIR}; only referenced, optional (a public repo needs none).",
    ),
    "decryption_secret": (
        "decryptionSecret",
        "Secret in the release's namespace whose *.agekey keys decrypt the repo's SOPS files.",
    ),
    "extensions": (
        "extensions",
        "The extensions the repo declares: the controller may create and bind only their roles.",
    ),
    "adopt": ("adopt", "Take over the repo's extensions another source owns (`apply --adopt`)."),
    "notifications_secret": (
        "notificationsSecret",
        f"Secret in the release's namespace whose {install.NOTIFICATIONS_FILE} key is the "
        f"controller's notifications file (docs/notifications.md), mounted at "
        f"{install.NOTIFICATIONS_DIR}; empty: no notifications.",
    ),
}
_REQUIRED = {"repo": "set repo: the git URL of the manifests repo"}


def _value(field: str) -> str:
    """The Helm expression of an Options field's value (required ones fail when empty)."""
    name = f".Values.{VALUES[field][0]}"
    if field in _REQUIRED:
        return f"(required {json.dumps(_REQUIRED[field])} {name})"
    return name


def _json(expression: str) -> str:
    return f"{{{{ {expression} | toJson }}}}"


def _args() -> str:
    """The controller's args as a Helm flow list: `install.controller_args` in Helm's words."""
    text = f'["controller", {_json(_value("path"))}, ' + json.dumps(list(install.FIXED_FLAGS))[1:-1]
    for flag, field in install.OPTION_FLAGS:
        kind = {f.name: f.type for f in dataclasses.fields(install.Options)}[field]
        if kind == "bool":
            text += f'{{{{ if {_value(field)} }}}}, "{flag}"{{{{ end }}}}'
        elif field in _REQUIRED:
            text += f', "{flag}", {_json(_value(field))}'
        else:
            text += f'{{{{ if {_value(field)} }}}}, "{flag}", {_json(_value(field))}{{{{ end }}}}'
    notifications = json.dumps(list(install.NOTIFICATIONS_ARGS))[1:-1]
    text += f"{{{{ if {_value('notifications_secret')} }}}}, {notifications}{{{{ end }}}}"
    return text + "]"


def _role_names(suffixes: list[str]) -> str:
    """The roles named after each extension, in Helm: `install._names` over a loop."""
    loop = " ".join(json.dumps(s) for s in suffixes)
    return (
        '{{ if not .Values.extensions }}{{ fail "extensions: name at least one" }}{{ end }}'
        "{{ $names := list }}{{ range $extension := .Values.extensions | uniq }}"
        f"{{{{ range $suffix := list {loop} }}}}"
        '{{ $names = append $names (printf "%s-%s" $extension $suffix) }}{{ end }}{{ end }}'
        "{{ $names | sortAlpha | toJson }}"
    )


def _cluster_rules() -> str:
    marker = f"@@{_EXTENSION}@@"
    rules = install.cluster_rules((_EXTENSION,))
    loops: dict[str, str] = {}
    for rule in rules:
        names: list[str] = rule.get("resourceNames", [])
        if any(_EXTENSION in n for n in names):
            prefix = f"{_EXTENSION}-"
            if not all(n.startswith(prefix) for n in names):  # a template bug, not input
                raise AssertionError(f"role names not all named after the extension: {names}")
            key = f"{marker}{len(loops)}"
            loops[key] = _role_names([n.removeprefix(prefix) for n in names])
            rule["resourceNames"] = key
    text = json.dumps(rules)
    for key, loop in loops.items():
        text = text.replace(json.dumps(key), loop)
    return text


def _namespace_rules() -> str:
    base = install.namespace_rules()
    extra = install.namespace_rules(_SECRET)[len(base) :]
    optional = json.dumps(extra)[1:-1].replace(
        json.dumps(_SECRET), _json(_value("decryption_secret"))
    )
    return (
        json.dumps(base)[:-1]
        + f"{{{{ if {_value('decryption_secret')} }}}}, {optional}{{{{ end }}}}]"
    )


def controller_template() -> str:
    """`templates/controller.yaml`: the install template with Helm in its variable parts."""
    encoded = {
        "namespace": _json(".Release.Namespace"),
        "cluster_name": _json(
            f"printf {json.dumps(install.cluster_name('%s'))} .Release.Namespace"
        ),
        "image": _json(_value("image")),
        "git_secret": _json(_value("git_secret")),
        "args": _args(),
        "cluster_rules": _cluster_rules(),
        "namespace_rules": _namespace_rules(),
        "notifications_secret": _json(_value("notifications_secret")),
        "with_notifications": True,
        "notifications_begin": f"{{{{- if {_value('notifications_secret')} }}}}",
        "notifications_end": "{{- end }}",
    }
    text = templating.render_text(
        "install/controller.yaml.j2", {**install.template_constants(), **encoded}
    )
    header = (
        "# Written by `reconciler install --chart` from templates/install/controller.yaml.j2.\n"
    )
    return header + text


def values(defaults: install.Options) -> str:
    """`values.yaml`: the options, with `defaults`' values (JSON is YAML)."""
    lines = [
        "# The options of `reconciler install` (docs/commands.md); the namespace is the",
        "# release's (helm install --namespace). Written by `reconciler install --chart`.",
    ]
    for field, (name, comment) in VALUES.items():
        value: Any = getattr(defaults, field)
        if field == "image":
            value = value or install.default_image()
        if isinstance(value, tuple):
            value = list(value)
        lines += ["", f"# {comment}", f"{name}: {json.dumps(value)}"]
    return "\n".join(lines) + "\n"


def values_schema() -> str:
    """`values.schema.json`: Helm refuses values of the wrong type or a misspelt name."""
    types = {"str": "string", "bool": "boolean", "tuple[str, ...]": "array"}
    fields = {f.name: f.type for f in dataclasses.fields(install.Options)}
    properties: dict[str, Any] = {}
    for field, (name, comment) in VALUES.items():
        prop: dict[str, Any] = {"type": types[str(fields[field])], "description": comment}
        if field == "extensions":
            prop |= {"items": {"type": "string"}, "minItems": 1}
        properties[name] = prop
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    return json.dumps(schema, indent=2) + "\n"


def chart_yaml() -> str:
    return (
        "apiVersion: v2\n"
        f"name: {install.NAME}\n"
        "description: The GitOps controller of the machine-learning extension for Kubernetes\n"
        "type: application\n"
        f"version: {__version__}\n"
        f"appVersion: {json.dumps(__version__)}\n"
    )


def files(defaults: install.Options) -> dict[str, str]:
    """The chart's files by path inside it, with `defaults` as the values' defaults."""
    return {
        "Chart.yaml": chart_yaml(),
        "values.yaml": values(defaults),
        "values.schema.json": values_schema(),
        "crds/extensionstatuses.yaml": objects.to_yaml([record.crd()]),
        "templates/controller.yaml": controller_template(),
    }
