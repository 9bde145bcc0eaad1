"""The layering rules, read from the source with ast (nothing is imported):

- strategies/ imports no torch, transformers, Prefect or loop/, but `loop.plugins`: the one registry shape every
  extension point shares, which imports nothing but the standard library; reports/ no torch, transformers or
  Prefect; loop/ no Prefect, its task runners' clusters (Ray, Dask: the orchestrator's, behind
  loop.model.shards.Executor), reports/ or flows/.
- flows/ is the top floor: nothing in loop/, strategies/ or reports/ imports it, and it imports neither bench/ nor
  tests/.
- The floors of loop/ import only downward, in the order of LOOP_FLOORS (DESIGN.md's list): the analysis sweep and
  the run on top, then the controller, signals, dynamics, models, statistics, data, the store, the leaf modules,
  the config and the registry shape.
- No import cycle inside loop/: module-level and function-level imports alike (a deferred import is still a
  dependency), less those under `if TYPE_CHECKING:` (annotations only: the run context is named by the lower floors
  it is handed to, never imported by them).
- Only `loop/store/layout.py` builds a path of the run store: no other module of loop/, flows/ or reports/ holds a
  string with one of the store's names (step.json, data/seed-, steps/, ...); the reports read the store through
  loop.store.layout too.
- Every module has a docstring."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"strategies": {"torch", "transformers", "prefect", "flows", "loop"},
             "reports": {"torch", "transformers", "prefect", "flows"},
             "loop": {"prefect", "prefect_ray", "prefect_dask", "ray", "dask", "distributed", "flows", "reports"},
             "flows": {"bench", "tests"}}
# Modules of a forbidden package that a package may still import: the registry shape sits below everything.
ALLOWED = {"strategies": {"loop.plugins"}}
# Fragments of run-store paths: a string holding one builds (or globs) a path of the store.
STORE_NAMES = ("step.json", "run.json", "manifest.json", "config.yaml", "summary.json", "report.json",
               "examples.parquet", "contamination.parquet", "generated.parquet", "tau_curve.parquet",
               "data/seed", "signals/seed", "steps/", "analysis/seed", "/round-", "/run-")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            out |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def imports(path: Path, modules: frozenset[str] = frozenset()) -> list[str]:
    """Every absolute module name `path` imports, but under TYPE_CHECKING. `from a.b import c` imports a.b.c where
    that is one of `modules` (a submodule), else a.b."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out += submodules if len(submodules) == len(node.names) else [node.module, *submodules]
    return out


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imports(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layers(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        allowed = ALLOWED.get(package, set())
        bad = {name.split(".")[0] for name in imports(path) if name not in allowed} & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_registry_shape_imports_only_the_standard_library():
    import sys

    outside = {name for name in imported_roots(ROOT / "loop" / "plugins.py")
               if name not in sys.stdlib_module_names and name != "__future__"}
    assert not outside, f"loop/plugins.py imports {sorted(outside)}: strategies/ imports it, so it must stay bare"
    assert not imports(ROOT / "loop" / "__init__.py"), "loop/__init__.py must import nothing (strategies/ imports loop.plugins)"


def test_flows_is_the_top_floor():
    for package in ("loop", "strategies", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            assert "flows" not in imported_roots(path), f"{path.relative_to(ROOT)} imports flows/"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# loop/'s floors, top first; a module's floor is its package under loop/ (evaluation.py sits with the dynamics it
# measures, embedded/ with the data it makes; other top-level modules are leaves).
LOOP_FLOORS = ("analysis", "run", "control", "signals", "dynamics", "model", "metrics", "data", "store", "leaves",
               "config", "plugins")
FLOOR_OF = {"evaluation": "dynamics", "embedded": "data"}


def _floor(module: str) -> str:
    name = module.split(".")[1]
    name = FLOOR_OF.get(name, name)
    return name if name in LOOP_FLOORS else "leaves"


def test_the_floors_of_loop_import_only_downward():
    for path in sorted((ROOT / "loop").rglob("*.py")):
        if path.name == "__init__.py" and path.parent.name == "loop":
            continue
        mine = _floor(_module_name(path))
        for name in imports(path):
            if name.startswith("loop.") and _floor(name) != mine:
                assert LOOP_FLOORS.index(_floor(name)) > LOOP_FLOORS.index(mine), (
                    f"{path.relative_to(ROOT)} ({mine}) imports {name} ({_floor(name)}), a floor above it")


def test_no_import_cycle_inside_loop():
    modules = {_module_name(p): p for p in sorted((ROOT / "loop").rglob("*.py"))}
    names = frozenset(modules)
    graph = {name: sorted({m for m in imports(path, names) if m in modules and m != name})
             for name, path in modules.items()}
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles inside loop/: {cycles}"


def _strings(tree: ast.AST) -> list[str]:
    """Every string constant, an f-string's literal parts included."""
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _code_strings(path: Path) -> list[str]:
    """The strings of `path` less its docstrings (which may name the files they describe)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_only_the_store_layout_builds_store_paths():
    layout = ROOT / "loop" / "store" / "layout.py"
    for package in ("loop", "flows", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == layout:
                continue
            relative = str(path.relative_to(ROOT))
            found = {name for s in _code_strings(path) for name in STORE_NAMES if name in s}
            assert not found, f"{relative} builds run-store paths ({sorted(found)}): use loop.store.layout"


def test_every_module_has_a_docstring():
    for package in ("loop", "strategies", "flows", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.stat().st_size:
                assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} lacks a docstring"
