"""The layout the README's Architecture section describes: who may import whom, and no circles.

Read from the source with `ast` (every import, function-level ones included: an import moved into
a function to dodge a circle is still a circle).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Each unit (a subpackage, or a top-level module) and the units it may import. policies and the
# two shared leaves (config, errors) are at the bottom; app composes; cli and dev are entry points.
ALLOWED: dict[str, set[str]] = {
    "policies": set(),
    "gateway.config": {"policies"},
    "gateway.errors": {"policies"},
    "gateway.ops": {"policies", "gateway.config", "gateway.errors"},
    "gateway.store": {"policies", "gateway.config", "gateway.errors", "gateway.ops"},
    "gateway.limits": {"policies", "gateway.config", "gateway.errors", "gateway.ops"},
    "gateway.serving": {"policies", "gateway.config", "gateway.errors", "gateway.ops", "gateway.store",
                        "gateway.limits", "gateway.state"},
    "gateway.accounts": {"policies", "gateway.config", "gateway.errors", "gateway.ops", "gateway.store",
                         "gateway.serving.breaker"},
    "gateway.state": {"policies", "gateway.config", "gateway.ops", "gateway.store", "gateway.limits",
                      "gateway.serving", "gateway.accounts"},
    "gateway.runtime": {"policies", "gateway.config", "gateway.errors", "gateway.ops", "gateway.store",
                        "gateway.limits", "gateway.serving", "gateway.accounts", "gateway.state"},
    "gateway.admin": {"policies", "gateway.config", "gateway.errors", "gateway.ops", "gateway.store",
                      "gateway.limits", "gateway.accounts", "gateway.state"},
    "gateway.console": {"policies", "gateway.config", "gateway.errors", "gateway.ops", "gateway.store",
                        "gateway.limits", "gateway.accounts", "gateway.state"},
}
TOP = set(ALLOWED) | {"gateway.app", "gateway.cli", "gateway.dev"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for d in ("gateway", "policies") for p in (ROOT / d).rglob("*.py")}


def imports(name: str) -> set[str]:
    """The project modules `name` imports (a package's name when it imports the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES and m not in ("gateway", "policies")}


GRAPH = {name: imports(name) for name in MODULES if name not in ("gateway", "policies")}


def unit(module: str) -> str:
    for candidate in sorted(TOP, key=len, reverse=True):
        if module == candidate or module.startswith(candidate + "."):
            return candidate
    raise AssertionError(f"{module} belongs to no unit of the architecture: add it to ALLOWED")


def test_every_module_belongs_to_a_unit() -> None:
    for name in GRAPH:
        unit(name)


def test_each_unit_imports_only_what_its_layer_allows() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        if unit(name) not in ALLOWED:
            continue
        allowed = ALLOWED[unit(name)] | {unit(name)}
        for target in targets:
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_import_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    assert circles == []


def test_nothing_imports_the_entry_points() -> None:
    for name, targets in GRAPH.items():
        if unit(name) in ("gateway.cli", "gateway.dev"):
            continue
        assert not {t for t in targets if unit(t) in ("gateway.cli", "gateway.dev")}, name


def test_each_subpackage_states_its_role_and_the_readme_maps_it() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = sorted(p.parent for p in (ROOT / "gateway").glob("*/__init__.py"))
    assert packages
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"{package.name}/__init__.py has no docstring stating its role"
        if package.name not in ("console", "admin"):
            assert re.search(r"May import|may import", doc), f"{package.name}: say what it may import"
        assert f"gateway/{package.name}/" in section, f"README's Architecture section lacks gateway/{package.name}/"
