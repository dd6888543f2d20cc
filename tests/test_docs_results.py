"""The evaluation page's tables (docs/evaluations.md) are `cortex eval all`'s output, copied, never retyped."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- eval-all:begin -->", "<!-- eval-all:end -->"


def test_evaluation_tables_are_lines_of_the_committed_report():
    readme = (ROOT / "docs" / "evaluations.md").read_text()
    report = (ROOT / "docs" / "eval" / "report.md").read_text().splitlines()
    assert START in readme and END in readme, "docs/evaluations.md lost the markers around the copied evaluation tables"
    section = readme.split(START, 1)[1].split(END, 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) >= 20
    missing = [line for line in rows if line not in report]
    assert not missing, f"docs/evaluations.md table rows not in docs/eval/report.md (rerun `cortex eval all --out docs/eval`): {missing[:3]}"
