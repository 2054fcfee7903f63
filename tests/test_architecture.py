"""The package's shape, checked: one-way imports, no cycles, modules and functions a person can hold.

Nodes of the import graph are edgecnn's top-level modules and its (sub)packages: a module belongs to
the deepest package that holds it, so each backend (`edgecnn.backends.onnxruntime`, ...) is its own
node beside the registry (`edgecnn.backends`). Imports inside functions count; imports under
`if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_POSITIONAL = 5


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str) -> set[str]:
    """Every edgecnn module `module` imports (absolute names), TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block)
               for stmt in block.body for n in ast.walk(stmt)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "edgecnn" or n.startswith("edgecnn.")}


def _node(module: str, modules: dict[str, Path]) -> str:
    """The graph node of a module: itself for a package or top-level module, else its package."""
    while module not in modules and "." in module:
        module = module.rpartition(".")[0]  # `from edgecnn.x import name`: name is not a module
    if modules.get(module) and modules[module].name != "__init__.py" and module.count(".") > 1:
        return module.rpartition(".")[0]
    return module


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = _node(name, modules)
        targets = {_node(target, modules) for target in _imports(path, name)}
        graph.setdefault(source, set()).update(t for t in targets if t not in (source, "edgecnn"))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_nothing_below_the_cli_imports_it():
    offenders = sorted(
        f"{name} imports {target}"
        for name, path in _modules().items()
        if not (name in ("edgecnn.cli", "edgecnn.__main__") or name.startswith("edgecnn.cli."))
        for target in _imports(path, name) if target == "edgecnn.cli" or target.startswith("edgecnn.cli.")
    )
    assert not offenders, offenders


def test_import_graph_has_no_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_a_function_level_import_counts(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgecnn.cli\n"
                      "def f():\n    from edgecnn.bench import x\n")
    assert _imports(source, "edgecnn.m") == {"edgecnn.bench", "edgecnn.bench.x"}


def test_no_module_is_too_long():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def _functions():
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{name}.{node.name}:{node.lineno}", node


def _body_lines(node) -> int:
    """Lines from the first statement after the docstring to the end.

    The signature is left out: a Typer command declares one option per line there, which is a table
    of options, not logic to hold in one's head.
    """
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_no_function_is_too_long():
    long = {where: n for where, node in _functions() if (n := _body_lines(node)) > MAX_FUNCTION_LINES}
    assert not long, long


def test_no_function_takes_many_positional_parameters():
    many = {}
    for where, node in _functions():
        positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
        if len(positional) > MAX_POSITIONAL:
            many[where] = positional
    assert not many, many


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tflite", "tensorrt", "ncnn"])
def test_only_its_backend_names_a_runtime(runtime):
    """Outside the backends' packages, code asks the registry; a runtime's name as a whole string is a smell.

    A backend may name another it builds on (TensorRT's engine sources are checked in ONNX Runtime).
    """
    offenders = []
    for name, path in _modules().items():
        if name.startswith("edgecnn.backends."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == runtime:
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, offenders
