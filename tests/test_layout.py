"""The shape of the code: no import cycle inside the package, no module over 500 lines, no function over 80, and no
test module importing another (shared helpers live in conftest.py and helpers.py)."""

from __future__ import annotations

import ast
import pathlib

import dontstop

PACKAGE = pathlib.Path(dontstop.__file__).parent
TESTS = pathlib.Path(__file__).parent


def module_name(path: pathlib.Path) -> str:
    parts = ["dontstop", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (PACKAGE.joinpath(*name.split(".")[1:]) / "__init__.py").exists()


def known(name: str) -> bool:
    relative = PACKAGE.joinpath(*name.split(".")[1:])
    return relative.with_suffix(".py").exists() or (relative / "__init__.py").exists()


def imports(path: pathlib.Path) -> set[str]:
    """Every module of the package that `path` imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dontstop")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("dontstop"):
                target = node.module
            else:
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names if known(f"{target}.{alias.name}")}
            # `from . import schema` reads a sibling; the package around it is already being imported
            found |= submodules if node.module is None and submodules else {target, *submodules}
    return {target for target in found if known(target) and target != name}


def test_no_import_cycle():
    graph = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}
    visiting, done, cycles = [], set(), []

    def visit(node):
        if node in done:
            return
        if node in visiting:
            cycles.append(visiting[visiting.index(node) :] + [node])
            return
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
    assert "dontstop.models" in graph["dontstop.pretrain.pipeline"]  # the walk sees imports at all


def test_modules_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 500:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}()")
    assert not too_long, "over 500 lines a module or 80 a function: " + ", ".join(too_long)


def test_no_test_module_imports_another():
    offenders = []
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_"):
                offenders.append(f"{path.name} imports {node.module}")
    assert not offenders, ", ".join(offenders)
