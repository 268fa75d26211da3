"""Kubernetes label keys and values, checked as the API server checks them.

A node selector's keys and values (an extension's `nodeSelector`, an InstanceType's
`spec.nodeSelector`) are written into every workload the reconciler renders: one the API server
would refuse, or that carries a newline or a template marker, must fail validation with its
file and line instead of reaching the cluster. The rules are Kubernetes' own
(`IsQualifiedName`, `IsValidLabelValue`): a key is an optional DNS-subdomain prefix and `/`, then
a name of at most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending with an
alphanumeric; a value is empty or such a name.

Pure: text in, the reason it is not valid (or None) out. Used by `settings` and `instancetypes`.
"""

from __future__ import annotations

import re

MAX_NAME = 63
MAX_PREFIX = 253
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = (
    "at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a "
    "letter or digit"
)


def key_problem(key: object) -> str | None:
    """Why `key` is not a valid label key, or None."""
    if not isinstance(key, str):
        return f"a label key must be a string, not {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {key!r}: the prefix before '/' is empty"
    if prefix and (len(prefix) > MAX_PREFIX or not _PREFIX.fullmatch(prefix)):
        return (
            f"label key {key!r}: the prefix must be a DNS subdomain (lowercase letters, digits, "
            f"'-' and '.', at most {MAX_PREFIX} characters)"
        )
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        return f"label key {key!r}: the name must be {_NAME_RULE}"
    return None


def value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None (empty is valid)."""
    if value == "" or (len(value) <= MAX_NAME and _NAME.fullmatch(value)):
        return None
    return f"label value {value!r} must be empty or {_NAME_RULE}"
