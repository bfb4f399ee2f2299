"""The packages import downward only: nfcore < store < service < {api, worker} < nfrecon, with no cycles.

The imports are read from the source (every `import`, also those inside functions), so a lazy import
cannot hide a cycle or a layer violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nfcore", "store", "service", "api", "worker", "nfrecon")

# What each package may import from the others (its own modules always).
ALLOWED = {
    "nfcore": set(),
    "store": set(),
    "service": {"nfcore", "store"},
    "api": {"nfcore", "store", "service"},
    "worker": {"nfcore", "store", "service"},
    "nfrecon": {"nfcore", "store", "service", "api", "worker"},
}
# Third-party web stacks that must stay out of the library.
FORBIDDEN_IN_NFCORE = ("fastapi", "starlette", "celery", "sqlalchemy", "redis", "uvicorn", "httpx")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, name: str) -> set[str]:
    """Every absolute module name `path` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(path, name):
            if target in modules and target != name:
                graph.add_edge(name, target)
    return graph


def test_packages_import_downward_only():
    bad = []
    for name, path in _modules().items():
        pkg = name.split(".")[0]
        for target in _imports(path, name):
            top = target.split(".")[0]
            if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                bad.append(f"{name} imports {target}")
            if pkg == "nfcore" and top in FORBIDDEN_IN_NFCORE:
                bad.append(f"{name} imports {target} (nfcore stays free of the web stack)")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:20])


def test_the_layering_test_sees_violations(tmp_path):
    # The checks above must be able to fail: the reader finds a lazy import inside a function.
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from api.app import create_app\n    return create_app\n")
    assert "api.app" in _imports(src, "worker.mod")


@pytest.mark.parametrize("module", ["worker.tasks", "worker.celery_app", "service.reaper"])
def test_worker_side_imports_neither_fastapi_nor_torch(module):
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fastapi', 'starlette', 'api', 'torch')); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
