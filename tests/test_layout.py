"""The layout docs/ARCHITECTURE.md describes: what two pipeline steps share is library code (no
glode/steps module imports another), bench scripts use glode's public names only, the label
scores load no faiss, every stage imports glode before torch, and no file outside tests/
outgrows one screenful of concerns."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything ``path`` imports anywhere in its body; ``from a import b``
    gives ``a`` and ``a.b``; a relative import gives its dots."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def step_imports_of_steps(steps_dir: Path) -> list[str]:
    return [f"{path.name}:{line}: {name}" for path in sorted(steps_dir.glob("*.py"))
            for line, name in imported_names(path) if name.startswith(("glode.steps.", "."))]


def private_glode_names(script: Path) -> list[str]:
    """Names starting with ``_`` that a script imports from glode or reads off an imported glode module."""
    tree = ast.parse(script.read_text(encoding="utf-8"), str(script))
    bad, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "glode":
            for a in node.names:
                (bad.append(f"{script.name}:{node.lineno}: {node.module}.{a.name}") if a.name.startswith("_")
                 else modules.add(a.asname or a.name))
        elif isinstance(node, ast.Import):
            modules.update((a.asname or a.name.split(".")[0]) for a in node.names if a.name.split(".")[0] == "glode")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                bad.append(f"{script.name}:{node.lineno}: {ast.unparse(node)}")
    return sorted(bad, key=lambda line: int(line.split(":")[1]))


def test_no_pipeline_step_imports_another():
    assert step_imports_of_steps(ROOT / "glode" / "steps") == []


def test_the_step_check_finds_a_step_importing_another(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from glode.steps.b import g\n")
    (tmp_path / "c.py").write_text("from .b import g\nfrom glode.corpus import span_frame\n")
    assert step_imports_of_steps(tmp_path) == ["a.py:2: glode.steps.b", "a.py:2: glode.steps.b.g", "c.py:1: .b",
                                               "c.py:1: .b.g"]


def test_bench_scripts_use_public_glode_names_only():
    bad = [line for script in sorted((ROOT / "bench").glob("*.py")) for line in private_glode_names(script)]
    assert bad == []


def test_the_private_name_check_finds_imports_and_attributes(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import glode.training as t\nfrom glode.model import _x, y\nt._optimizer()\ny._z\nimport os\nos._exit\n")
    assert private_glode_names(script) == ["s.py:2: glode.model._x", "s.py:3: t._optimizer", "s.py:4: y._z"]


def test_scoring_labels_against_gold_loads_no_faiss():
    """initial_labels scores Y0 with glode/label_quality.py; the kNN index is the denoise step's alone."""
    code = ("import sys, glode.label_quality, glode.steps.initial_labels, glode.denoising.projection; "
            "print('faiss' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_python_file_outside_tests_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for folder in ("glode", "stages", "bench") for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these by concern (at most {MAX_LINES} lines): {long}"


def test_stage_entry_points_import_glode_before_torch():
    """libgomp reads GOMP_SPINCOUNT once, when torch loads: every stage must import glode first."""
    from pathlib import Path

    stages = Path(__file__).resolve().parents[1] / "stages"
    for script in sorted(stages.glob("*.py")):
        imports = [ln for ln in script.read_text().splitlines() if ln.startswith(("import ", "from "))]
        heavy = [i for i, ln in enumerate(imports) if ln.split()[1].split(".")[0] in ("torch", "faiss", "transformers", "numpy")]
        first_glode = next((i for i, ln in enumerate(imports) if ln.split()[1].split(".")[0] == "glode"), None)
        assert first_glode is not None, script
        assert not heavy or first_glode < min(heavy), f"{script.name} imports a threaded library before glode"
