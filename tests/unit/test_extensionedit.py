"""`extensionedit`: Extension manifests edited as text, comments and other documents untouched."""

from __future__ import annotations

import difflib
import textwrap

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from reconciler.model import documents, extensionedit, manifests, yamledit
from reconciler.model.extensionedit import Assignment, EditError, Value

# A user's Extension file, comments and all (not one we wrote).
EXAMPLE = textwrap.dedent(
    """\
    # The ML extension on this cluster: a quick proof of concept.
    apiVersion: gitops.mlext.io/v1alpha1
    kind: Extension
    metadata:
      name: azureml-extension
    spec:
      clusterType: managedClusters        # or connectedClusters (Arc-like, on-prem)
      releaseNamespace: azureml
      config:                             # keys are case-insensitive, booleans may be "True"
        enableTraining: true
        enableInference: true
        inferenceRouterServiceType: NodePort
        allowInsecureConnections: true    # plain HTTP: dev/test only
        InferenceRouterHA: False
      # configProtected:                  # never printed, never in a diff
      #   sslCertPemFile: certs/cert.pem  # relative to this file
      #   sslKeyPemFile: certs/key.pem
    """
)

OTHER = textwrap.dedent(
    """\
    # instance types, written by hand
    apiVersion: amlarc.azureml.com/v1alpha1
    kind: InstanceType
    metadata: {name: cpusmall}
    spec:
        resources:
            requests:   {cpu: 100m,  memory: 1Gi}   # odd spacing on purpose
    """
)


def diff(before: str, after: str) -> list[str]:
    """The changed lines only, as `-old` / `+new`."""
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def data(text: str) -> list[object]:
    return [d.data for d in documents.parse("f.yaml", text).documents]


# --- key=value arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("enableTraining=true", Assignment("enableTraining", True)),
        ("InferenceRouterHA=False", Assignment("InferenceRouterHA", False)),
        ("allowInsecureConnections=TRUE", Assignment("allowInsecureConnections", True)),
        ("nodeSelector.disk=ssd", Assignment("nodeSelector.disk", "ssd")),
        ("nodeSelector.version=1.10", Assignment("nodeSelector.version", "1.10")),
        ("sslCname=a=b", Assignment("sslCname", "a=b")),
        ("sslSecret=yes", Assignment("sslSecret", "yes")),
    ],
)
def test_values_are_strings_except_true_and_false(argument: str, expected: Assignment) -> None:
    assert extensionedit.parse_assignment(argument) == expected


def test_protected_values_stay_strings() -> None:
    parsed = extensionedit.parse_assignment("sslKeyPemFile=true", protected=True)
    assert parsed == Assignment("sslKeyPemFile", "true")


@pytest.mark.parametrize("argument", ["noequals", "=value", "  =value"])
def test_an_argument_without_a_key_is_refused(argument: str) -> None:
    with pytest.raises(EditError, match="expected KEY=VALUE"):
        extensionedit.parse_assignment(argument)


def test_a_bad_protected_argument_is_not_echoed() -> None:
    with pytest.raises(EditError) as raised:
        extensionedit.parse_assignment("hunter2-secret", protected=True)
    assert "hunter2" not in str(raised.value)


def test_an_empty_value_points_at_remove() -> None:
    with pytest.raises(EditError, match=r"sslCname has no value \(to remove it: --remove-config"):
        extensionedit.parse_assignment("sslCname=")


# --- create ----------------------------------------------------------------------------------


def test_a_new_manifest_has_the_documented_shape() -> None:
    text = extensionedit.new_manifest(
        "ml",
        "connectedClusters",
        "ml-system",
        [Assignment("enableTraining", True), Assignment("nodeSelector.version", "1.10")],
        [Assignment("sslKeyPemFile", "certs/key.pem")],
    )
    assert text == textwrap.dedent(
        """\
        apiVersion: gitops.mlext.io/v1alpha1
        kind: Extension
        metadata:
          name: ml
        spec:
          extensionType: Microsoft.AzureML.Kubernetes
          clusterType: connectedClusters
          releaseNamespace: ml-system
          config:
            enableTraining: true
            nodeSelector.version: '1.10'
          configProtected:
            sslKeyPemFile: certs/key.pem
        """
    )


def test_a_new_manifest_is_recognized_as_an_extension() -> None:
    text = extensionedit.new_manifest("ml", config=[Assignment("enableTraining", True)])
    (document,) = documents.parse("e.yaml", text).documents
    recognized = manifests.recognize(document, "e.yaml")
    assert [(m.kind, m.name) for m in recognized.manifests] == [("Extension", "ml")]
    assert "configProtected" not in document.data["spec"]


def test_the_last_of_the_same_setting_wins_on_create() -> None:
    text = extensionedit.new_manifest(
        "ml", config=[Assignment("enableTraining", False), Assignment("EnableTraining", True)]
    )
    assert yaml.safe_load(text)["spec"]["config"] == {"enableTraining": True}


def test_a_document_is_added_after_a_separator() -> None:
    added = yamledit.add_document(OTHER, "kind: Extension\n")
    assert added == OTHER + "---\nkind: Extension\n"
    assert yamledit.add_document("a: 1", "b: 2\n") == "a: 1\n---\nb: 2\n"
    assert yamledit.add_document("", "b: 2\n") == "b: 2\n"


# --- finding documents -----------------------------------------------------------------------


def test_extensions_are_located_by_name_among_several_documents() -> None:
    second = EXAMPLE.replace("name: azureml-extension", "name: second")
    text = f"{OTHER}---\n{EXAMPLE}--- # the second one\n{second}"
    assert extensionedit.locate(text) == [
        extensionedit.Located("azureml-extension", 13),
        extensionedit.Located("second", 31),
    ]
    assert text.splitlines()[30] == "  name: second"
    assert extensionedit.locate(text, "second") == [extensionedit.Located("second", 31)]
    assert extensionedit.locate(text, "absent") == []


def test_documents_that_do_not_parse_are_skipped_when_locating() -> None:
    assert extensionedit.locate("kind: Extension\nmetadata: [unclosed\n") == []


# --- update ----------------------------------------------------------------------------------


def test_changing_a_value_changes_that_line_only() -> None:
    edited = extensionedit.update(
        EXAMPLE, "azureml-extension", [Assignment("inferenceRouterServiceType", "LoadBalancer")]
    )
    assert diff(EXAMPLE, edited.text) == [
        "-    inferenceRouterServiceType: NodePort",
        "+    inferenceRouterServiceType: LoadBalancer",
    ]
    assert edited.set == ("config.inferenceRouterServiceType",)
    assert edited.summary == "set config.inferenceRouterServiceType"


def test_keys_match_case_insensitively_and_keep_their_spelling_and_comment() -> None:
    edited = extensionedit.update(
        EXAMPLE,
        "azureml-extension",
        [Assignment("inferenceRouterHA", True), Assignment("ALLOWINSECURECONNECTIONS", False)],
    )
    assert diff(EXAMPLE, edited.text) == [
        "-    allowInsecureConnections: true    # plain HTTP: dev/test only",
        "-    InferenceRouterHA: False",
        "+    allowInsecureConnections: false   # plain HTTP: dev/test only",
        "+    InferenceRouterHA: true",
    ]


def test_a_new_key_goes_after_the_last_one_above_trailing_comments() -> None:
    edited = extensionedit.update(
        EXAMPLE, "azureml-extension", [Assignment("installDcgmExporter", True)]
    )
    assert diff(EXAMPLE, edited.text) == ["+    installDcgmExporter: true"]
    lines = edited.text.splitlines()
    assert (
        lines.index("    installDcgmExporter: true")
        == lines.index("    InferenceRouterHA: False") + 1
    )


def test_a_new_protected_section_goes_after_config() -> None:
    edited = extensionedit.update(
        EXAMPLE,
        "azureml-extension",
        protected=[Assignment("sslCertPemFile", "c.pem"), Assignment("sslKeyPemFile", "k.pem")],
    )
    assert diff(EXAMPLE, edited.text) == [
        "+  configProtected:",
        "+    sslCertPemFile: c.pem",
        "+    sslKeyPemFile: k.pem",
    ]
    assert edited.text.index("configProtected:\n") < edited.text.index("# configProtected:")
    assert edited.secrets == {"c.pem", "k.pem"}


def test_setting_then_removing_a_key_gives_back_the_file() -> None:
    added = extensionedit.update(EXAMPLE, "azureml-extension", [Assignment("sslCname", "x")])
    removed = extensionedit.update(added.text, "azureml-extension", remove=["sslcname"])
    assert removed.text == EXAMPLE
    assert removed.removed == ("config.sslCname",)
    assert removed.summary == "removed config.sslCname"


def test_strings_a_yaml_1_1_reader_would_misread_are_quoted() -> None:
    edited = extensionedit.update(
        EXAMPLE,
        "azureml-extension",
        [Assignment("nodeSelector.on", "yes"), Assignment("nodeSelector.v", "1.10")],
    )
    assert diff(EXAMPLE, edited.text) == [
        "+    nodeSelector.on: 'yes'",
        "+    nodeSelector.v: '1.10'",
    ]
    (document,) = data(edited.text)
    assert isinstance(document, dict)
    assert document["spec"]["config"]["nodeSelector.v"] == "1.10"


def test_an_older_name_is_replaced_in_place_by_the_new_one() -> None:
    text = EXAMPLE.replace("InferenceRouterHA: False", "inferenceLoadBalancerHA: False  # old")
    edited = extensionedit.update(
        text, "azureml-extension", [Assignment("inferenceRouterHA", True)]
    )
    assert diff(text, edited.text) == [
        "-    inferenceLoadBalancerHA: False  # old",
        "+    inferenceRouterHA: true         # old",
    ]


def test_node_selector_labels_go_into_a_node_selector_map() -> None:
    text = EXAMPLE.replace(
        "    InferenceRouterHA: False\n",
        "    nodeSelector:\n      disk: ssd\n    InferenceRouterHA: False\n",
    )
    edited = extensionedit.update(
        text,
        "azureml-extension",
        [Assignment("nodeSelector.disk", "hdd"), Assignment("nodeSelector.zone", "z1")],
    )
    assert diff(text, edited.text) == ["-      disk: ssd", "+      disk: hdd", "+      zone: z1"]
    removed = extensionedit.update(edited.text, "azureml-extension", remove=["nodeSelector"])
    assert removed.text == EXAMPLE
    assert removed.removed == ("config.nodeSelector.disk", "config.nodeSelector.zone")


def test_the_document_keeps_its_own_indentation() -> None:
    text = textwrap.dedent(
        """\
        kind: Extension
        metadata:
            name: x
        spec:
            clusterType: managedClusters
            config:
                enableTraining: true
        """
    )
    edited = extensionedit.update(text, "x", [Assignment("installVolcano", False)])
    assert diff(text, edited.text) == ["+        installVolcano: false"]


def test_only_the_named_document_of_a_file_is_rewritten() -> None:
    second = EXAMPLE.replace("name: azureml-extension", "name: second")
    text = f"{OTHER}---\n{EXAMPLE}--- # the second one\n{second}"
    edited = extensionedit.update(text, "second", [Assignment("enableInference", False)])
    assert diff(text, edited.text) == ["-    enableInference: true", "+    enableInference: false"]
    start = edited.text.index("--- # the second one")
    assert edited.text[:start] == text[:start]


def test_windows_line_endings_survive() -> None:
    text = EXAMPLE.replace("\n", "\r\n")
    edited = extensionedit.update(text, "azureml-extension", [Assignment("enableTraining", False)])
    assert edited.text == EXAMPLE.replace("enableTraining: true", "enableTraining: false").replace(
        "\n", "\r\n"
    )


def test_an_update_that_changes_nothing_keeps_the_text() -> None:
    edited = extensionedit.update(
        EXAMPLE, "azureml-extension", [Assignment("enableTraining", True)]
    )
    assert not edited.changed
    assert edited.text == EXAMPLE


def test_removing_the_last_protected_setting_removes_the_section() -> None:
    with_protected = extensionedit.update(
        EXAMPLE, "azureml-extension", protected=[Assignment("sslSecretFile", "s")]
    )
    removed = extensionedit.update(
        with_protected.text, "azureml-extension", remove=["sslSecretFile"]
    )
    assert removed.text == EXAMPLE
    assert removed.removed == ("configProtected.sslSecretFile",)
    assert removed.secrets == {"s"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "absent"}, "no extension named 'absent' in this file"),
        ({"remove": ["sslCname"]}, "extension 'azureml-extension' has no setting sslCname"),
        (
            {"config": [Assignment("sslCname", "x")], "remove": ["SSLCNAME"]},
            "sslCname is both set and removed",
        ),
    ],
)
def test_edits_that_cannot_be_made_are_errors(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "azureml-extension", **kwargs}
    with pytest.raises(EditError, match=message):
        extensionedit.update(EXAMPLE, **arguments)  # type: ignore[arg-type]


def test_an_extension_declared_twice_in_a_file_is_an_error() -> None:
    with pytest.raises(EditError, match=r"declared more than once \(lines 1, 19\)"):
        extensionedit.update(f"{EXAMPLE}---\n{EXAMPLE}", "azureml-extension", remove=["x"])


def test_error_messages_never_hold_protected_values() -> None:
    text = EXAMPLE.replace(
        "  # configProtected:",
        "  configProtected:\n    sslKeyPemFile: hunter2\n  # configProtected:",
    )
    for kwargs in (
        {"protected": [Assignment("sslKeyPemFile", "hunter3")], "remove": ["sslKeyPemFile"]},
        {"remove": ["sslCertPemFile"]},
    ):
        with pytest.raises(EditError) as raised:
            extensionedit.update(text, "azureml-extension", **kwargs)  # type: ignore[arg-type]
        assert "hunter" not in str(raised.value)


# --- delete ----------------------------------------------------------------------------------


def test_deleting_the_only_document_deletes_the_file() -> None:
    assert extensionedit.delete(EXAMPLE, "azureml-extension").text is None
    comments_after = f"{EXAMPLE}---\n# nothing but a comment\n"
    assert extensionedit.delete(comments_after, "azureml-extension").text is None


def test_deleting_one_document_keeps_the_others_byte_for_byte() -> None:
    second = OTHER.replace("cpusmall", "cpularge")
    cases = {
        f"{EXAMPLE}---\n{OTHER}---\n{second}": f"---\n{OTHER}---\n{second}",
        f"{OTHER}---\n{EXAMPLE}---\n{second}": f"{OTHER}---\n{second}",
        f"{OTHER}--- # b\n{second}---\n{EXAMPLE}": f"{OTHER}--- # b\n{second}",
    }
    for text, expected in cases.items():
        assert extensionedit.delete(text, "azureml-extension").text == expected


def test_deleting_reports_the_protected_values_it_removed() -> None:
    text = EXAMPLE.replace("  # configProtected:", "  configProtected:\n    sslKeyPemFile: k\n  #")
    assert extensionedit.delete(text, "azureml-extension").secrets == {"k"}


def test_edited_text_reads_back_as_meant() -> None:
    """What an edit writes is what the loader (PyYAML, YAML 1.1) reads back."""
    edited = extensionedit.update(
        EXAMPLE,
        "azureml-extension",
        [Assignment("sslCname", "on"), Assignment("inferenceRouterHA", True)],
    )
    (document,) = data(edited.text)
    assert isinstance(document, dict)
    assert document["spec"]["config"]["sslCname"] == "on"
    assert document["spec"]["config"]["InferenceRouterHA"] is True


def test_emptying_config_leaves_an_empty_map() -> None:
    text = "kind: Extension\nmetadata: {name: x}\nspec:\n  config:\n    enableTraining: true\n"
    edited = extensionedit.update(text, "x", remove=["enableTraining"])
    assert edited.text == "kind: Extension\nmetadata: {name: x}\nspec:\n  config: {}\n"


def test_a_flow_style_document_stays_flow_style() -> None:
    text = "kind: Extension\nmetadata: {name: x}\nspec: {config: {enableTraining: true}}\n"
    edited = extensionedit.update(text, "x", [Assignment("sslCname", "a b")])
    assert edited.text == (
        "kind: Extension\nmetadata: {name: x}\n"
        "spec: {config: {enableTraining: true, sslCname: a b}}\n"
    )


_KEYS = st.from_regex(r"[a-z][a-zA-Z]{0,12}(\.[a-z0-9]{1,5})?", fullmatch=True).filter(
    lambda key: key.lower() not in EXAMPLE.lower()
)
_VALUES = st.one_of(
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1),
)


@given(st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=5))
def test_any_value_reads_back_and_removing_restores_the_file(new: dict[str, Value]) -> None:
    assignments = [Assignment(key, value) for key, value in new.items()]
    assume(len({a.key.lower() for a in assignments}) == len(assignments))
    edited = extensionedit.update(EXAMPLE, "azureml-extension", assignments)
    (document,) = data(edited.text)
    assert isinstance(document, dict)
    config = document["spec"]["config"]
    assert {key: config[key] for key in new} == new
    restored = extensionedit.update(edited.text, "azureml-extension", remove=list(new))
    assert restored.text == EXAMPLE


def test_a_section_with_nothing_under_it_is_filled_in_place() -> None:
    text = (
        "kind: Extension\nmetadata: {name: x}\nspec:\n  config:\n  clusterType: managedClusters\n"
    )
    edited = extensionedit.update(text, "x", [Assignment("enableTraining", True)])
    assert edited.text == (
        "kind: Extension\nmetadata: {name: x}\nspec:\n  config:\n    enableTraining: true\n"
        "  clusterType: managedClusters\n"
    )
