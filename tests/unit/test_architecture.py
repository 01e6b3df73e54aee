"""The house rules that keep the packages apart, checked on the source: no import circle in the
product code, no product module importing a benchmark or test helper, thin step wrappers."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("components", "serving", "pipelines", "grafana")
WORKSHOP = ("benchmarks", "tests")
MAX_WRAPPER_BODY_LINES = 45


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PRODUCT for path in (REPO / package).rglob("*.py")
    }


def imported(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth (function bodies too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_product_module_imports_a_benchmark_or_test_helper() -> None:
    offenders = {
        name: sorted(n for n in imported(path) if n.split(".")[0] in WORKSHOP)
        for name, path in product_modules().items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_product_code_has_no_import_circle() -> None:
    modules = product_modules()
    graph = {
        name: {n for n in imported(path) if n in modules and n != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a circle between modules.
    graph = {
        name: {n for n in deps if not (name == n.rsplit(".", 1)[0] or n.startswith(name + "."))}
        for name, deps in graph.items()
    }
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_every_step_wrapper_is_thin() -> None:
    sizes = {}
    for path in (REPO / "components" / "steps").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring
                sizes[node.name] = (body[-1].end_lineno or 0) - body[0].lineno + 1
    assert len(sizes) >= 12
    assert {name: n for name, n in sizes.items() if n > MAX_WRAPPER_BODY_LINES} == {}


def test_projects_are_named_only_in_their_specs() -> None:
    """A fourth project is one spec file and one registry line: no product module outside
    components/core/projects/ keys anything on a project's name."""
    from components.core.projects import PROJECTS

    offenders = []
    for name, path in product_modules().items():
        if name.startswith("components.core.projects"):
            continue
        tree = ast.parse(path.read_text())
        # Docstrings, of modules, classes, functions and attributes: bare string statements.
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        offenders += [
            f"{name}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and id(node) not in docstrings
            and isinstance(node.value, str)
            and any(project in node.value for project in PROJECTS)
        ]
    assert offenders == []
