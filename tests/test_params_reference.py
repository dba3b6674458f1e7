"""docs/PARAMETERS.md's key table is made from the declarations (glode/settings.py), never by hand."""

from __future__ import annotations

from pathlib import Path

from glode.params import REFERENCE_BEGIN, REFERENCE_END, SCHEMA, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_parameters_doc_holds_the_table_made_from_the_declarations():
    text = (ROOT / "docs" / "PARAMETERS.md").read_text(encoding="utf-8")
    block = text.split(REFERENCE_BEGIN, 1)[1].split(REFERENCE_END, 1)[0].lstrip("\n")
    assert block == reference_markdown(), "docs/PARAMETERS.md is stale: paste the output of `glode params` between its markers"


def test_reference_table_has_one_row_per_key_with_its_default_and_help():
    rows = reference_markdown().splitlines()[2:]
    assert [r.split(" | ")[0].strip("| `") for r in rows] == list(SCHEMA)
    k_row = rows[list(SCHEMA).index("k")]
    assert k_row == f"| `k` | `{SCHEMA['k'].default}` | an integer >= 1 | {SCHEMA['k'].help} |"
    assert "| `data.labels` | `[PER, ORG, LOC]` |" in reference_markdown()
