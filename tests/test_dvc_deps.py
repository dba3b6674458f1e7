"""Every DVC stage depends on exactly the project code it runs.

DVC reruns a stage only when a listed dependency changes, so a module a stage imports but does
not list lets a code change through with outputs that DVC calls up to date. The code a stage
runs is its entry script (``python stages/X.py`` in ``cmd``) and the transitive closure of the
project modules it imports (``glode/**`` and ``stages/``), read from the source with ``ast``:
imports inside functions count (static analysis cannot tell which functions a stage calls),
a package's ``__init__.py`` counts for every module below it (Python runs it first), and
imports under ``if TYPE_CHECKING:`` do not (they never run). Standard-library and third-party
imports are pinned by ``pyproject.toml``, not by DVC.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("glode", "stages")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module (``glode.x`` -> glode/x.py or glode/x/__init__.py), or None."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of the modules ``path`` imports anywhere in its body (not under TYPE_CHECKING).

    ``from a import b`` yields ``a`` and, when ``a.b`` is a module, ``a.b`` too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_closure(script: Path, root: Path = ROOT) -> set[Path]:
    """The entry script and every project file Python runs when it imports what the script imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root):
            parts = name.split(".")
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def resolved_stages() -> list:
    """dvc.yaml's stages with foreach/matrix expanded and variables filled in, as DVC sees them."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return list(repo.index.stages)


def entry_script(cmd: str) -> str:
    words = shlex.split(cmd)
    assert words[0] == "python" and words[1].startswith("stages/"), f"cmd does not run a stage script: {cmd}"
    return words[1]


STAGES = resolved_stages()


@pytest.mark.parametrize("stage", STAGES, ids=[s.addressing for s in STAGES])
def test_stage_lists_exactly_the_code_it_imports(stage):
    script = ROOT / entry_script(stage.cmd)
    needed = {p.relative_to(ROOT).as_posix() for p in import_closure(script)}
    listed = {str(d.def_path) for d in stage.deps if str(d.def_path).endswith(".py")}
    missing, unused = sorted(needed - listed), sorted(listed - needed)
    assert not missing and not unused, (
        f"dvc.yaml stage {stage.addressing}: "
        + (f"imports but does not list {missing}" if missing else "")
        + ("; " if missing and unused else "")
        + (f"lists but does not import {unused}" if unused else ""))


def test_closure_follows_function_level_from_and_package_imports(tmp_path):
    """The closure rules on a made-up project: what they must find and what they must skip."""
    (tmp_path / "glode" / "sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    files = {
        "stages/run.py": "import os\nfrom glode import a\n",
        "glode/__init__.py": "",
        "glode/a.py": "def f():\n    from glode.sub import b\n    return b\n",
        "glode/sub/__init__.py": "from .c import C\n",
        "glode/sub/b.py": "import glode.d\n",
        "glode/sub/c.py": "C = 1\n",
        "glode/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from glode import e\n",
        "glode/e.py": "",
        "glode/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    got = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path / "stages/run.py", tmp_path)}
    assert got == set(files) - {"glode/e.py", "glode/unused.py"}
