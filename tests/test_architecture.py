"""The package's shape, checked: one-way imports, no cycles, modules and functions a person can hold.

Nodes of the import graph are `edgecnn.X`: a top-level module or a whole top-level package, so every
runtime is part of `edgecnn.backends` and the registry (`edgecnn.registry`) is a node of its own.
Every import counts: inside functions, and under `if TYPE_CHECKING:` too (a type that names a module
above is an arrow the wrong way all the same). The graph must follow the data, layer by layer
(`LAYERS`): sources -> pipeline -> backends -> bundle -> runners -> bench/verify -> report, cli on top.
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


def _imports(path: Path, module: str, *, type_checking: bool = True) -> set[str]:
    """Every edgecnn module `module` imports (absolute names); TYPE_CHECKING blocks too unless told not to."""
    tree = ast.parse(path.read_text())
    skipped = set() if type_checking else {
        id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block)
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


# Bottom to top: a module may import its own layer's nodes or those of layers below, never above.
LAYERS = [
    {"edgecnn.errors", "edgecnn.stages", "edgecnn.registry", "edgecnn.thresholds", "edgecnn.atomic", "edgecnn.validate", "edgecnn.host",
     "edgecnn.formatting", "edgecnn.compare", "edgecnn.preprocess"},
    {"edgecnn.data", "edgecnn.zoo", "edgecnn.checkpoint", "edgecnn.profiles", "edgecnn.bundle", "edgecnn.export",
     "edgecnn.quantize", "edgecnn.train"},
    {"edgecnn.build_context"},
    {"edgecnn.backends"},
    {"edgecnn.inference"},
    {"edgecnn.sources", "edgecnn.bench"},
    {"edgecnn.verify", "edgecnn.samples", "edgecnn.explain", "edgecnn.tune"},
    {"edgecnn.pipeline", "edgecnn.remote", "edgecnn.report"},
    {"edgecnn.quickstart", "edgecnn.api"},
    {"edgecnn.compare_models"},  # built on the Python API
    {"edgecnn.cli", "edgecnn.__main__"},
]


def _node(module: str) -> str:
    """The graph node of a module: `edgecnn.X`."""
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        source = _node(name)
        targets = {_node(target) for target in _imports(path, name)}
        graph.setdefault(source, set()).update(t for t in targets if t not in (source, "edgecnn"))
    return graph


def _layer(node: str) -> int | None:
    return next((index for index, layer in enumerate(LAYERS) if node in layer), None)


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


def test_every_package_has_a_layer():
    """A new edgecnn.X package is placed in LAYERS on purpose, not left to drift."""
    unplaced = sorted(node for node in {_node(name) for name in _modules()} - {"edgecnn"} if _layer(node) is None)
    assert not unplaced, unplaced


def test_imports_follow_the_data():
    """No arrow runs up the layers: e.g. quantize imports no runner, bench or verify; backends no pipeline."""
    upward = sorted(f"{source} -> {target}" for source, targets in _graph().items() for target in targets
                    if None not in (_layer(source), _layer(target)) and _layer(target) > _layer(source))
    assert not upward, upward


def test_the_layer_check_sees_an_arrow_up_and_a_type_checking_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgecnn.inference import x\n")
    assert _imports(source, "edgecnn.quantize.m") == {"edgecnn.inference", "edgecnn.inference.x"}
    assert _layer("edgecnn.inference") > _layer("edgecnn.quantize")


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_a_function_level_import_counts(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgecnn.cli\n"
                      "def f():\n    from edgecnn.bench import x\n")
    assert _imports(source, "edgecnn.m", type_checking=False) == {"edgecnn.bench", "edgecnn.bench.x"}
    assert _imports(source, "edgecnn.m") == {"edgecnn.cli", "edgecnn.bench", "edgecnn.bench.x"}


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


def _deploy_runtimes() -> list[str]:
    from edgecnn.registry import backends

    return [backend.name for backend in backends(deploy_only=True)]


def test_the_registry_lists_the_runtime_folders():
    folders = sorted(p.name for p in (PACKAGE / "backends").iterdir() if (p / "__init__.py").is_file())
    from edgecnn.registry import runtime_names

    assert sorted(runtime_names()) == folders


@pytest.mark.parametrize("runtime", _deploy_runtimes())
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
