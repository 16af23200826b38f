"""Import circles among a rendered service's own modules, lazy imports included.

A module that imports the command that imports it is a tangle (STYLE.md §32). Tests,
revisions and the virtualenv are left out; relationships between models may refer
to each other, so a circle inside the models package is allowed.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

SKIPPED = {".venv", "tests", "versions", ".git"}


def module_files(project: Path) -> dict[str, Path]:
    modules = {}
    for path in project.rglob("*.py"):
        parts = path.relative_to(project).with_suffix("").parts
        if SKIPPED & set(parts):
            continue
        modules[".".join(parts).removesuffix(".__init__")] = path
    return modules


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from scripts import lint_migrations` imports a module too.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_circles(project: Path, allowed_package: str) -> list[set[str]]:
    """Each set of modules that import one another (Tarjan's strongly connected
    components with more than one module), except within `allowed_package`."""
    modules = module_files(project)
    graph = {name: imports(path, modules) - {name} for name, path in modules.items()}
    return [
        component
        for component in strongly_connected(graph)
        if len(component) > 1
        and not all(name.startswith(f"{allowed_package}.") for name in component)
    ]


def strongly_connected(graph: dict[str, set[str]]) -> Iterator[set[str]]:
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[set[str]]:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                yield from visit(target)
                lowest[node] = min(lowest[node], lowest[target])
            elif target in on_stack:
                lowest[node] = min(lowest[node], index[target])
        if lowest[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            yield component

    for node in graph:
        if node not in index:
            yield from visit(node)
