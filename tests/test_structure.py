"""The shape of the code: data flows one way (no module imports one later in the flow, and there is
no import circle), no source file is long, and attention is computed only by the stages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "attncli"

# Each module's place in the flow: read -> Problem -> stages -> Trace -> view or export -> the
# application -> the command line. A module may import modules of its own layer or an earlier one.
LAYERS = [
    # names, wording, the registries and the error type: numpy-free, used everywhere
    {"errors", "keys", "wording", "formats", "machine"},
    {"sources", "numbers", "precision"},
    {"readers", "torchnames", "delimited", "safetensors", "families", "dumps"},
    {"variants", "visibility", "appended", "tokens"},
    {"problem", "generate"},
    {"sizes", "blas", "formulas"},
    {"arithmetic", "flow"},
    {"stages"},
    {"trace"},
    {"blocked"},
    {"pipeline"},
    {"shapes", "explain", "known_mistakes", "layouts", "wrong_runs", "tolerance", "mistakes", "demo", "walkthrough",
     "stacks"},
    {"export", "writers", "view.labels", "view.numbers", "view.console", "view.tables", "view.heatmap", "view.text",
     "view.layers", "view.page", "view"},
    {"stream", "request", "models", "results"},
    {"app"},
    {"options", "cli", "__main__", "__init__"},
]
LAYER = {module: number for number, modules in enumerate(LAYERS) for module in modules}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" and len(relative.parts) > 1 else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every attncli module ``path`` imports, at the top, inside functions or for type checking."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attncli"):
            base = node.module.removeprefix("attncli").lstrip(".")
            if base:
                found.add(base)
            else:  # from attncli import torchnames
                found.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("attncli.") for alias in node.names
                         if alias.name.startswith("attncli."))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))
IMPORTS = {module_name(path): imported_modules(path) for path in SOURCES}


def test_every_module_has_a_place_in_the_flow():
    assert set(IMPORTS) - set(LAYER) == set(), "add the new module to LAYERS"


@pytest.mark.parametrize("module", sorted(IMPORTS))
def test_no_module_imports_one_later_in_the_flow(module):
    later = {name: LAYER[name] for name in IMPORTS[module] if LAYER.get(name, -1) > LAYER[module]}
    assert later == {}, f"{module} (layer {LAYER[module]}) imports modules later in the flow"


def test_no_import_circle():
    # depth-first search; a module met again while it is still being visited closes a circle
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "visiting"
        for name in sorted(IMPORTS.get(module, ())):
            if state.get(name) == "visiting":
                raise AssertionError("import circle: " + " -> ".join(path + [module, name]))
            if name not in state:
                visit(name, path + [module])
        state[module] = "done"

    for module in sorted(IMPORTS):
        if module not in state:
            visit(module, [])
    assert set(state) >= set(IMPORTS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_source_file_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def attention_arithmetic(path: Path) -> list[str]:
    """Where ``path`` multiplies matrices (``@``, np.matmul, np.dot, np.einsum) or takes exponentials."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"line {node.lineno}: @")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("matmul", "dot", "einsum", "exp", "exp2", "tensordot")):
            found.append(f"line {node.lineno}: {node.func.attr}()")
    return found


def test_only_the_stages_arithmetic_computes_attention():
    # the products and the exponentials of attention are in arithmetic.py and nowhere else: the
    # full and blocked paths, explain, check's mistakes and the demo all call the stages
    computing = {module_name(path): attention_arithmetic(path) for path in SOURCES}
    assert {module: found for module, found in computing.items() if found and module != "arithmetic"} == {}
    assert len(computing["arithmetic"]) >= 4


def test_the_view_package_gives_every_name_it_lists():
    # its names are imported when first asked for (a run that shows tables imports no other view)
    import attncli.view as view

    assert sorted(view._MODULE_OF) == sorted(view.__all__)
    for name in view.__all__:
        assert callable(getattr(view, name)), name
