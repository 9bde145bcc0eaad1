"""The layering rules: strategies/ and reports/ never import torch; loop/ never imports Prefect, its task runners'
clusters (Ray, Dask: the orchestrator's, behind loop.model.shards.Executor) or flows/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"strategies": {"torch", "transformers", "prefect", "flows", "loop"},
             "reports": {"torch", "transformers", "prefect", "flows"},
             "loop": {"prefect", "prefect_ray", "prefect_dask", "ray", "dask", "distributed", "flows", "reports"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layers(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_roots(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_module_has_a_docstring():
    for package in ("loop", "strategies", "flows", "reports"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.stat().st_size:
                assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} lacks a docstring"
