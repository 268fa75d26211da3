"""YAML parsing with lines: multi-document files, empty documents, syntax errors, odd input."""

import subprocess
import sys
from pathlib import Path

import pytest

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


def laughs(levels: int) -> str:
    """A "billion laughs" document: each anchor a list of nine aliases of the one before."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "kind: Job\n" + "\n".join(lines) + "\n"


def test_an_alias_bomb_is_a_problem_not_an_expansion() -> None:
    # 9**10 values once expanded: before the bound, parsing it ran for minutes.
    parsed = documents.parse("bomb.yaml", "a: 1\n---\n" + laughs(10))
    assert [p.data for p in parsed.documents] == [{"a": 1}]
    assert [str(p) for p in parsed.problems] == [
        f"bomb.yaml:3: this document expands to more than {documents.MAX_VALUES:,} values "
        "through its aliases (a YAML alias bomb?): not read"
    ]


def test_aliases_that_stay_small_are_read() -> None:
    parsed = documents.parse("ok.yaml", laughs(4))  # 9**4 values
    assert parsed.problems == [] and len(parsed.documents[0].data["a3"]) == 9


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("kind: Job\nx: " + "[" * 50_000 + "]" * 50_000 + "\n", 2),
        ("kind: Job\nx:\n  " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", 3),
        ("kind: Job\nx:\n" + "- " * 50_000 + "1\n", 3),
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences"],
)
def test_deep_nesting_is_a_problem_not_a_crash(text: str, line: int, tmp_path: Path) -> None:
    # In a process of its own: before the bound, the C composer overflowed its stack (rc 139).
    script = tmp_path / "parse.py"
    script.write_text(
        "import sys\nfrom reconciler.model import documents\n"
        "parsed = documents.parse('deep.yaml', sys.stdin.read())\n"
        "print([str(p) for p in parsed.problems], len(parsed.documents))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    message = f"deep.yaml:{line}: nested deeper than {documents.MAX_DEPTH} levels: not read"
    assert done.stdout.strip() == f"[{message!r}] 0"


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = documents.MAX_DEPTH - 1  # the document's own mapping is one level
    parsed = documents.parse("ok.yaml", "x: " + "[" * depth + "1" + "]" * depth + "\n")
    assert parsed.problems == [] and parsed.documents
