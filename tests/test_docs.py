"""Every repository path the docs and the code cite exists (docs that point nowhere mislead)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(?<![\w/.-])((?:docs|data|glode|stages|tests|bench|reports)/[\w./-]*\w\.(?:md|py|png|svg|txt|json|html))")
LINK = re.compile(r"\]\(([\w./-]+)\)")  # a relative markdown link


def citing_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "glode").rglob("*.py")),
            *sorted((ROOT / "stages").glob("*.py"))]


def test_every_cited_path_exists():
    missing = []
    for path in citing_files():
        text = path.read_text(encoding="utf-8")
        for cited in CITED.findall(text):
            if not (ROOT / cited).exists():
                missing.append(f"{path.relative_to(ROOT)}: {cited}")
        if path.suffix == ".md":
            for link in LINK.findall(text):
                if not (path.parent / link).exists():
                    missing.append(f"{path.relative_to(ROOT)}: ({link})")
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def test_the_check_finds_a_missing_path():
    assert CITED.findall("see docs/ENCODER.md, glode/encoder/build.py and (docs/x.md).") == [
        "docs/ENCODER.md", "glode/encoder/build.py", "docs/x.md"]
    assert not (ROOT / "docs/x.md").exists()
