"""Rewrite the params table of docs/pipeline.md from knnlab.pipeline.io.params.

    python tools/params_table.py          # rewrite the table
    python tools/params_table.py --check  # exit 1 if the page's table is not the generated one

The rows come from the fields of the params sections (key, default, description), so a key
added, renamed or re-described there shows up here by running this tool;
tests/pipeline/test_params_doc.py fails until it is run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from knnlab.pipeline.io.params import params_table

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "pipeline.md"
BEGIN = "<!-- params table: written by tools/params_table.py from knnlab.pipeline.io.params -->"
END = "<!-- end of the params table -->"


def split_page(text: str) -> tuple[str, str, str]:
    """The page before the table (through BEGIN's line), the table, and the rest (from END)."""
    head, begin, rest = text.partition(BEGIN + "\n")
    table, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} and {END!r} are missing; put them back")
    return head + begin, table, end + tail


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = DOC.read_text(encoding="utf-8")
    head, table, tail = split_page(text)
    if argv == ["--check"]:
        if table != params_table():
            print(f"{DOC}: the params table differs from the schema; run tools/params_table.py")
            return 1
        return 0
    if argv:
        print("usage: python tools/params_table.py [--check]", file=sys.stderr)
        return 2
    DOC.write_text(head + params_table() + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
