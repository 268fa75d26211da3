"""Fuzzing the loader and the validators with YAML built the way YAML is built (issue 27).

`test_properties.py` throws arbitrary data and text at the validator; this module generates YAML
*text* from its grammar: block and flow collections, every scalar style, anchors and aliases,
merge keys, comments, several documents, and the hostile shapes (alias bombs, deep nesting in
each style). Three kinds of oracle:

- PyYAML's pure-Python SafeLoader (what the C loader in `documents` must agree with): a text
  the loader reads without a problem gives exactly the reference's data, and a text the
  reference cannot read is a problem, never an exception;
- the limits' own arithmetic: a bomb expanding past MAX_VALUES and nesting past MAX_DEPTH are
  problems at a line, anything below them is read as the reference reads it;
- Kubernetes' label rules written again from apimachinery's validation (`IsQualifiedName`,
  `IsValidLabelValue`), independently of `labels`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import assume, example, given
from hypothesis import strategies as st

from reconciler.model import documents, labels, settings
from tests.helpers import extension, load, self_signed_pem, write_repo


class _ReferenceLoader(yaml.SafeLoader):
    """The pure-Python loader, without timestamps (as `documents` reads manifests)."""


_ReferenceLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def reference(text: str) -> list[Any] | None:
    """The documents PyYAML's reference loader reads (empty ones dropped), or None if it
    cannot read the text or reads data no manifest can be (an alias inside its own anchor
    gives a collection that contains itself)."""
    try:
        found = [d for d in yaml.load_all(text, Loader=_ReferenceLoader) if d is not None]
        json.dumps(found, default=str)  # ValueError: "Circular reference detected"
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    return found


# ---------------------------------------------------------------- YAML text from its grammar

PLAIN_WORDS = st.sampled_from(
    ["a", "b", "name", "x-y", "1", "0.5", "true", "null", "~", "yes", "2024-01-01", "1e3", ""]
)
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from("\n\t"),
    max_size=12,
)
KEYS = st.sampled_from(["a", "b", "c", "name", "spec", "kind", "1", "true", "x y", "é"])


def scalar(draw: st.DrawFn, value: Any) -> str:
    """One scalar in a style drawn at random: plain, single- or double-quoted, or JSON."""
    if not isinstance(value, str):
        return json.dumps(value)
    style = draw(st.sampled_from(["plain", "single", "double"]))
    if style == "plain" and re.fullmatch(r"[A-Za-z][A-Za-z0-9 _-]*", value):
        return value
    if style == "single" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a double-quoted scalar


class Emitter:
    """Writes a data tree as YAML text, choosing a style at every node, with anchors on some
    collections and aliases to them later on (the reference expands them like `documents`)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.anchors: list[str] = []

    def node(self, value: Any, indent: int, flow: bool) -> str:
        draw = self.draw
        if self.anchors and draw(st.integers(0, 9)) == 0:
            return "*" + draw(st.sampled_from(self.anchors))
        if not isinstance(value, dict | list) or not value:
            if isinstance(value, dict | list):
                return "{}" if isinstance(value, dict) else "[]"
            return scalar(draw, value)
        anchor = ""
        if draw(st.integers(0, 4)) == 0:
            name = f"a{len(self.anchors)}"
            anchor = f"&{name} "
            self.anchors.append(name)  # usable from the next node on
        if flow or draw(st.booleans()):
            return anchor + self.flow(value)
        return anchor.rstrip() + self.block(value, indent)

    def flow(self, value: Any) -> str:
        if isinstance(value, dict):
            items = (f"{scalar(self.draw, k)}: {self.node(v, 0, True)}" for k, v in value.items())
            return "{" + ", ".join(items) + "}"
        return "[" + ", ".join(self.node(v, 0, True) for v in value) + "]"

    def block(self, value: Any, indent: int) -> str:
        pad = " " * indent
        lines = []
        if isinstance(value, dict):
            for key, item in value.items():
                lines.append(f"{pad}{scalar(self.draw, key)}:{self.child(item, indent + 2)}")
        else:
            for item in value:
                lines.append(f"{pad}-{self.child(item, indent + 2)}")
        if self.draw(st.integers(0, 5)) == 0:
            lines.insert(0, f"{pad}# a comment")
        return "\n" + "\n".join(lines)

    def child(self, value: Any, indent: int) -> str:
        text = self.node(value, indent, False)
        return text if text.startswith("\n") else " " + text


TREES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | PLAIN_WORDS | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)


@st.composite
def yaml_files(draw: st.DrawFn) -> str:
    """One to three documents, each a tree written by `Emitter`, after a `---` each."""
    trees = draw(
        st.lists(TREES.filter(lambda t: isinstance(t, dict) and t), min_size=1, max_size=3)
    )
    parts = []
    for tree in trees:
        text = Emitter(draw).block(tree, 0).lstrip("\n")
        parts.append(text)
    return "---\n" + "\n---\n".join(parts) + "\n"


@given(yaml_files())
@example("a: null\nb: [&a0 [*a0]]\n")  # a cycle: the recursion used to end in a traceback
def test_generated_yaml_reads_as_the_reference_reads_it(text: str) -> None:
    expected = reference(text)
    parsed = documents.parse("m.yaml", text)
    if expected is None:
        assert parsed.problems, "the reference loader refused this text; the loader must say so"
        return
    repeated = [p for p in parsed.problems if p.message == "key repeated in a mapping"]
    assume(not repeated)  # the reference keeps the last value where the loader refuses
    assert not parsed.problems, [str(p) for p in parsed.problems]
    assert [d.data for d in parsed.documents] == expected


@given(yaml_files())
def test_every_field_of_a_generated_document_has_a_line_inside_the_file(text: str) -> None:
    parsed = documents.parse("m.yaml", text)
    last = text.count("\n") + 1
    for document in parsed.documents:
        assert all(1 <= line <= last for line in document.lines.values())
    assert all(0 <= p.line <= last and "\n" not in p.message for p in parsed.problems)


# ---------------------------------------------------------------- the limits


@given(width=st.integers(2, 12), depth=st.integers(1, 9), line=st.integers(0, 5))
def test_an_alias_bomb_is_a_problem_exactly_past_the_budget(
    width: int, depth: int, line: int
) -> None:
    """`l0: &l0 [x, x, ...]`, `l1: &l1 [*l0, *l0, ...]`, ...: `width ** depth` leaves."""
    rows = ["# padding"] * line + ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, depth):
        aliases = ", ".join([f"*l{level - 1}"] * width)
        rows.append(f"l{level}: &l{level} [{aliases}]")
    text = "kind: bomb\n" + "\n".join(rows) + "\n"
    # Values visited: the root, its keys' values, and every node under each, aliases expanded.
    visited = 1 + 1 + sum(sum(width**k for k in range(level + 2)) for level in range(depth))
    parsed = documents.parse("bomb.yaml", text)
    if visited > documents.MAX_VALUES:
        assert [p.line for p in parsed.problems] == [1]
        assert "through its aliases" in parsed.problems[0].message
        assert parsed.documents == []
    else:
        assert not parsed.problems
        assert [d.data for d in parsed.documents] == reference(text)


def _nested(style: str, depth: int) -> str:
    """A document nesting `depth` collections in one style, with a scalar at the bottom."""
    if style == "flow":
        return "[" * depth + "x" + "]" * depth + "\n"
    if style == "compact":
        return "- " * depth + "x\n"
    if style == "mixed":
        half = depth // 2
        return "- " * half + "[" * (depth - half) + "x" + "]" * (depth - half) + "\n"
    return "".join(" " * i + f"k{i}:\n" for i in range(depth - 1)) + " " * (depth - 1) + "x: 1\n"


@given(
    style=st.sampled_from(["flow", "compact", "mixed", "indented"]),
    depth=st.integers(1, 3 * documents.MAX_DEPTH) | st.integers(60_000, 70_000),
)
def test_nesting_is_read_up_to_the_limit_and_refused_past_it(style: str, depth: int) -> None:
    if style == "indented":
        depth = min(depth, 2_000)  # quadratic text: 2,000 levels is 2 MB already
    text = _nested(style, depth)
    parsed = documents.parse("deep.yaml", text)
    if depth > documents.MAX_DEPTH:
        assert [p.message for p in parsed.problems] == [
            f"nested deeper than {documents.MAX_DEPTH} levels: not read"
        ]
        assert parsed.problems[0].line >= 1
    else:
        assert not parsed.problems, [str(p) for p in parsed.problems]
        assert [d.data for d in parsed.documents] == reference(text)


# ---------------------------------------------------------------- label keys and values

_K8S_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_K8S_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def kubernetes_accepts_key(key: str) -> bool:
    """apimachinery `IsQualifiedName`: split on '/', at most one; a non-empty DNS-subdomain
    prefix of at most 253; a name of at most 63."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix or len(prefix) > 253 or not re.fullmatch(_K8S_SUBDOMAIN, prefix):
            return False
    else:
        return False
    return 0 < len(name) <= 63 and re.fullmatch(_K8S_NAME, name) is not None


def kubernetes_accepts_value(value: str) -> bool:
    """apimachinery `IsValidLabelValue`: empty, or a name of at most 63."""
    return value == "" or (len(value) <= 63 and re.fullmatch(_K8S_NAME, value) is not None)


LABEL_TEXT = st.text(
    alphabet=st.sampled_from("aZ09-_./\n\t é{}") | st.characters(codec="utf-8"), max_size=70
) | st.from_regex(
    r"([a-z0-9-]{1,10}\.){0,3}[a-z]{1,5}/[A-Za-z0-9][-A-Za-z0-9_.]{0,70}\n?", fullmatch=True
)


@given(LABEL_TEXT)
@example("pool\n")  # Python's `$` matches before a final newline; Kubernetes' rule does not
def test_label_keys_are_judged_as_kubernetes_judges_them(key: str) -> None:
    assert (labels.key_problem(key) is None) == kubernetes_accepts_key(key)


@given(LABEL_TEXT)
@example("gpu\n")
def test_label_values_are_judged_as_kubernetes_judges_them(value: str) -> None:
    assert (labels.value_problem(value) is None) == kubernetes_accepts_value(value)


# ---------------------------------------------------------------- protected values


def _key_materials() -> list[str]:
    """PEM and base64 DER of each kind of key and of a certificate."""
    keys = [
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ]
    found = []
    for key in keys:
        for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH):
            pem = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
            found.append(pem.decode())
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        found.append(base64.b64encode(der).decode())
    found.append(self_signed_pem()[0].decode())
    return found


KEY_MATERIAL = _key_materials()
PATH_SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)


@given(st.sampled_from(KEY_MATERIAL), st.sampled_from(["", "  ", "\n", "\r\n"]))
def test_every_kind_of_key_material_is_recognised(material: str, around: str) -> None:
    assert settings.looks_like_key_material(around + material + around)


@given(
    st.lists(st.sampled_from([".", ".."]) | PATH_SEGMENT, max_size=8),
    PATH_SEGMENT,
    st.sampled_from([".pem", ".key", ".crt", ".enc.pem", ".sops.key"]),
)
def test_no_file_path_is_mistaken_for_key_material(
    folders: list[str], stem: str, suffix: str
) -> None:
    assert not settings.looks_like_key_material("/".join([*folders, stem + suffix]))


MARKER = "hunter2"


@given(
    st.text(max_size=40) | st.sampled_from(KEY_MATERIAL),
    st.text(max_size=40),
)
def test_no_problem_quotes_a_protected_value(
    tmp_path_factory: object, before: str, after: str
) -> None:
    """Whatever a protected value holds, no problem message repeats it (the marker inside the
    value stands for the whole)."""
    value = before + MARKER + after
    assume("\x00" not in value)
    root = Path(tmp_path_factory.mktemp("repo"))  # type: ignore[attr-defined]
    config = "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.b.c"
    protected = "sslCertPemFile: cert.pem\nsslKeyPemFile: " + json.dumps(value)
    loaded = load(
        write_repo(root, {"ext.yaml": extension(config, protected=protected), "cert.pem": "x"})
    )
    assert loaded.problems
    for problem in loaded.problems:
        assert MARKER not in str(problem)
