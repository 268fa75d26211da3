"""YAML parsing with lines: multi-document files, empty documents, syntax errors, odd input."""

from reconciler.model import documents


def test_every_field_keeps_its_line() -> None:
    parsed = documents.parse("a.yaml", "a: 1\nb:\n  c:\n    - x\n    - y\n")
    (doc,) = parsed.documents
    assert doc.line_of(("b", "c", 1)) == 5
    assert doc.line_of(("b", "c", 7, "deeper")) == 3  # nearest existing parent
    assert doc.line_of(("missing",)) == 1


def test_multi_document_files_skip_empty_documents() -> None:
    parsed = documents.parse("a.yaml", "---\na: 1\n---\n---\n# only a comment\n---\nb: 2\n")
    assert [d.data for d in parsed.documents] == [{"a": 1}, {"b": 2}]
    assert [d.line for d in parsed.documents] == [2, 7]


def test_syntax_error_is_a_problem_with_its_line() -> None:
    parsed = documents.parse("bad.yaml", "a: 1\n---\nb: [1, 2\nc: 3\n")
    assert [d.data for d in parsed.documents] == [{"a": 1}]
    (problem,) = parsed.problems
    assert (problem.file, problem.line) == ("bad.yaml", 4)
    assert problem.message.startswith("invalid YAML:")


def test_repeated_key_is_a_problem() -> None:
    parsed = documents.parse("a.yaml", "name: a\nname: b\n")
    assert [str(p) for p in parsed.problems] == ["a.yaml:2: name: key repeated in a mapping"]


def test_dates_stay_strings() -> None:
    (doc,) = documents.parse("a.yaml", "version: 2024-01-01\n").documents
    assert doc.data == {"version": "2024-01-01"}


def test_bad_tagged_scalar_is_a_problem_not_a_crash() -> None:
    parsed = documents.parse("a.yaml", "a: 1\n---\nb: !!int nope\n")
    assert [d.data for d in parsed.documents] == [{"a": 1}]
    assert parsed.problems[0].message.startswith("invalid YAML value:")
