"""docs/robustness.md's fault table and the fault-injection rows name the same faults: a row
added to tests/support/fault_injection.py needs its line in the table (regenerate it with
tools/robustness_table.py), and the table lists no fault that is not injected or covered."""

from __future__ import annotations

import importlib.util

from .conftest import REPO_ROOT
from .support import fault_injection

_spec = importlib.util.spec_from_file_location(
    "robustness_table", REPO_ROOT / "tools/robustness_table.py"
)
robustness_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(robustness_table)


def _table_faults(doc: str) -> list[str]:
    """The first cell of each row between the table's markers."""
    _, _, rest = doc.partition(robustness_table.BEGIN)
    table, _, _ = rest.partition(robustness_table.END)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    return [row[2:].split(" | ")[0].replace("\\|", "|") for row in rows[1:]]  # not the header


def test_every_injected_fault_has_a_row_in_the_doc_and_every_row_a_fault():
    doc = robustness_table.DOC.read_text(encoding="utf-8")
    assert robustness_table.BEGIN in doc and robustness_table.END in doc, "markers missing"
    in_doc = _table_faults(doc)
    injected = fault_injection.fault_names()
    covered = [f"{row[0]} †" for row in robustness_table.COVERED_ELSEWHERE]
    assert len(set(injected)) == len(injected), "two rows share a name"
    assert len(set(in_doc)) == len(in_doc), "the table lists a fault twice"
    missing = [name for name in injected + covered if name not in in_doc]
    unknown = [name for name in in_doc if name not in injected + covered]
    hint = "regenerate it: python tools/robustness_table.py OUTCOMES.json (docs/robustness.md)"
    assert not missing, f"no row in docs/robustness.md for {missing}; {hint}"
    assert not unknown, f"docs/robustness.md lists faults no test injects: {unknown}; {hint}"


def test_the_table_marks_rows_that_failed_were_skipped_or_were_not_run():
    names = ["a passing row", "a failing row", "a skipped row", "a row not run"]
    passed = {"exit_code": 2, "message": "knnlab x: error: a | b", "changed": []}
    outcomes = {
        names[0]: {**passed, "problems": [], "skipped": ""},
        names[1]: {**passed, "problems": ["exit code 1, expected 2"], "skipped": ""},
        names[2]: {**passed, "problems": [], "skipped": "no tmpfs here"},
    }
    lines, not_passed = robustness_table.rows(outcomes, names)
    assert lines[:2] == list(robustness_table.HEADER)
    assert lines[2] == "| a passing row | 2 | `knnlab x: error: a \\| b` | all outputs |"
    assert "**fails:** exit code 1, expected 2" in lines[3]
    assert "not injected: no tmpfs here" in lines[4] and "not measured" in lines[5]
    assert [problem.split(":")[0] for problem in not_passed] == names[1:]
    assert len(lines) == 2 + len(names) + len(robustness_table.COVERED_ELSEWHERE)


def test_rewriting_replaces_only_the_text_between_the_markers():
    begin, end = robustness_table.BEGIN, robustness_table.END
    doc = f"intro\n{begin}\nold table\n{end}\noutro\n"
    assert robustness_table.rewrite(doc, ["| new |"]) == f"intro\n{begin}\n| new |\n{end}\noutro\n"
