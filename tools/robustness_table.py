"""Rewrite the fault table of docs/robustness.md from a run of the fault-injection tests.

    KNNLAB_FAULT_OUTCOMES=/tmp/faults.json \\
        python -m pytest tests/e2e/test_faults.py -p no:cacheprovider
    python tools/robustness_table.py /tmp/faults.json

Each row of tests/support/fault_injection.py becomes a line of the table: the fault, the
exit code, the message (temporary paths shortened to …, ports and run ids made generic) and
what was kept. Rows not injected there but covered by other tests are kept by hand in
:data:`COVERED_ELSEWHERE` and marked †. A row that failed, was skipped or is missing from
the run is written as such, and the tool exits 1 naming it: publish a table from a run in
which every row passed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
BEGIN = "<!-- fault table: written by tools/robustness_table.py from the fault-injection tests -->"
END = "<!-- end of the fault table -->"
HEADER = (
    "| fault | exit | what the user sees (one line on stderr) | what is kept |",
    "|---|---|---|---|",
)

# Faults the fault-injection rows do not inject, with the tests that cover them:
# (fault, exit code, what the user sees, what is kept, covering tests).
COVERED_ELSEWHERE = [
    (
        "data.positive_class not a class",
        "2",
        "at `split`, before any stage logs: `data.positive_class = 7 is not a class of this "
        "dataset; classes are 0, 1, 2 …`",
        "all outputs",
        "tests/pipeline/test_datasets.py",
    ),
    (
        "a feature named label, a label of 0.5, list-valued labels, text mixed with numbers",
        "2",
        "one line each at `fetch`, before any stage logs; whole-number floats and booleans "
        "become integers",
        "all outputs",
        "tests/pipeline/test_datasets.py, tests/e2e/test_file_tables_pipeline.py",
    ),
    (
        "data.dataset openml:../../x",
        "2",
        "`params.yaml: data.dataset = 'openml:../../x' is not allowed; expected "
        "openml:<name> with an OpenML dataset name: …`",
        "all outputs",
        "tests/pipeline/test_datasets.py",
    ),
    (
        "mnist_784 offline, no cache",
        "2",
        "`could not download it from OpenML (…). Put the data at "
        "data/cache/openml/mnist_784.parquet …, or choose an embedded dataset: "
        "data.dataset: digits`",
        "all outputs",
        "tests/pipeline/test_datasets.py",
    ),
    (
        "predict: a 20000 x 20000 PNG, an 8000 x 8000 one",
        "2",
        "refused before decoding, no memory growth: `the image is 8000x8000 pixels; knnlab "
        "predict reads images of at most 4096x4096 …`",
        "–",
        "tests/pipeline/test_predict.py",
    ),
    (
        "model: a zip-bomb .npz (2 GiB of zeros in 2.3 MB), wrong k, unknown weights",
        "2",
        "refused before any array is read: `member X.npy is compressed; knnlab model files "
        "store their arrays uncompressed …`, `params.n_neighbors = 0 is not allowed …`",
        "–",
        "tests/pipeline/test_model_io.py",
    ),
    (
        "a tampered MLflow model folder (added .py and pickles, MLmodel rewritten)",
        "2",
        "added files never run; knnlab's loader refuses the rewritten `MLmodel`: `logged "
        "model … has the python_function keys ['cloudpickle_version', 'python_model'] …; it "
        "is not a model knnlab logged …, so it is not loaded`",
        "–",
        "tests/tracking/test_logged_model.py",
    ),
    (
        "mlflow.required: false and the store is down",
        "0",
        "a warning, once; the stage completes with correct outputs",
        "–",
        "tests/tracking/test_tracking_secrets.py",
    ),
    (
        "an output that cannot be replaced (an immutable metrics.json)",
        "2",
        "the OS error; the run, finished before its outputs move in, is marked `FAILED`",
        "the other outputs",
        "tests/e2e/test_robustness.py::test_failing_stage_marks_its_run_failed",
    ),
    (
        "an edit to code a stage runs, or to the data.path table",
        "–",
        "`dvc status` names exactly the stages that run it; `dvc repro` re-runs them",
        "–",
        "tests/e2e/test_integrity.py",
    ),
    (
        "a second knnlab server on the same --data",
        "2",
        "refused, naming the first one's pid (a lock on the data folder); a server whose "
        "PostgreSQL stops under it stops and says so",
        "the first server",
        "tests/tracking/test_server_postgres.py::"
        "test_a_second_server_on_the_same_folder_refuses_naming_the_first_ones_pid",
    ),
    (
        "served requests: an unknown params key, a body over the limit, deep nesting",
        "HTTP 400, 413",
        "400 naming the allowed keys; 413 before the body is read (the limit is "
        "configurable); 400 saying the JSON is nested too deep",
        "–",
        "tests/tracking/test_serving.py",
    ),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    text = _cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _generic(message: str) -> str:
    """What differs from run to run made generic: ports on this machine, run ids."""
    message = re.sub(r"(127\.0\.0\.1|localhost):\d{4,5}\b", r"\1:PORT", message)
    message = re.sub(r"\b[0-9a-f]{40}\b", "<commit>", message)
    return re.sub(r"\b[0-9a-f]{32}\b", "<run id>", message)


def rows(outcomes: dict[str, dict], names: list[str]) -> tuple[list[str], list[str]]:
    """The table's lines for the injected ``names`` (in that order) and the hand-kept rows,
    and the names of rows that did not pass in ``outcomes``."""
    lines, not_passed = [*HEADER], []
    for name in names:
        row = outcomes.get(name)
        if row is None:
            lines.append(f"| {_cell(name)} | – | not measured in this run | – |")
            not_passed.append(f"{name}: not in the outcomes")
            continue
        if row["skipped"]:
            lines.append(f"| {_cell(name)} | – | not injected: {_cell(row['skipped'])} | – |")
            not_passed.append(f"{name}: skipped")
            continue
        message = _code(_generic(row["message"])) if row["message"] else "(nothing)"
        if row["problems"]:
            problems = _cell(_generic("; ".join(row["problems"])))
            message = f"**fails:** {problems}; it printed {message}"
            not_passed.append(f"{name}: fails")
        kept = "all outputs" if not row["changed"] else "changed: " + ", ".join(row["changed"])
        lines.append(f"| {_cell(name)} | {row['exit_code']} | {message} | {kept} |")
    for fault, code, sees, kept, tests in COVERED_ELSEWHERE:
        lines.append(f"| {_cell(fault)} † | {code} | {sees} ({_cell(tests)}) | {kept} |")
    return lines, not_passed


def rewrite(doc: str, lines: list[str]) -> str:
    """``doc`` with the text between the table's markers replaced by ``lines``."""
    before, begin, rest = doc.partition(BEGIN)
    _, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOC} lacks the markers {BEGIN!r} and {END!r}")
    return before + BEGIN + "\n" + "\n".join(lines) + "\n" + END + after


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tools/robustness_table.py OUTCOMES.json", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tests.support.fault_injection import fault_names

    outcomes = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    lines, not_passed = rows(outcomes, fault_names())
    DOC.write_text(rewrite(DOC.read_text(encoding="utf-8"), lines), encoding="utf-8")
    for problem in not_passed:
        print(f"robustness_table: {problem}", file=sys.stderr)
    return 1 if not_passed else 0


if __name__ == "__main__":
    raise SystemExit(main())
