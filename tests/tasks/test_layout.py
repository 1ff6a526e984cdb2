"""The layers stay apart: the math never reads the study config, tasks never import Prefect, and
tasks/ keeps its contract at the root and its parts in folders without import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

from repo_root import REPO


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _within(modules: set[str], prefix: str) -> set[str]:
    return {m for m in modules if m == prefix or m.startswith(prefix + ".")}


def test_no_file_of_the_math_that_imports_torch_imports_the_study_config():
    offenders = []
    for path in _files("pbrf"):
        mods = _imports(path)
        if _within(mods, "torch") and (_within(mods, "pbrf.study") or "pbrf.study" in mods):
            offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == []


def test_the_math_imports_neither_tasks_nor_flows_nor_orchestration():
    for path in _files("pbrf"):
        mods = _imports(path)
        bad = {m for m in mods if m.split(".")[0] in ("tasks", "flows", "prefect", "dvc")}
        assert not bad, (path.relative_to(REPO).as_posix(), bad)


def test_tasks_never_import_prefect_or_flows():
    for path in _files("tasks"):
        mods = _imports(path)
        bad = {m for m in mods if m.split(".")[0] in ("prefect", "prefect_dask", "flows")}
        assert not bad, (path.relative_to(REPO).as_posix(), bad)


def test_tasks_keeps_its_contract_at_the_root_and_its_parts_in_folders():
    root = sorted(p.name for p in (REPO / "tasks").iterdir() if p.is_file())
    assert root == ["__init__.py", "registry.py", "schemas.py"]
    folders = sorted(p.name for p in (REPO / "tasks").iterdir() if p.is_dir() and p.name[0] != "_")
    assert folders == ["engine", "reports", "steps", "sweeps"]


def test_tasks_has_no_import_cycle():
    modules = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in _files("tasks")
    }
    graph = {m: _within(_imports(p), "tasks") & set(modules) for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if n == m:
                continue
            assert state.get(n) != 1, "import cycle: " + " → ".join([*stack, m, n])
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
