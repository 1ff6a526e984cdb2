"""Which source files decide a step's outputs, and their hash.

A node's code is its step's module plus the modules it loads by name (``Step.code`` in the
registry, e.g. ``pbrf.estimators.trak`` for ``estimate-trak``), plus everything those import
from the project's own packages (``pbrf``, ``tasks``), followed transitively through
``import``/``from … import`` statements read with :mod:`ast` (nothing is imported). Editing ``tasks/reports/report.py`` therefore reruns only the
report; editing ``pbrf/objectives.py`` reruns every step that trains. The same file list is what
the DVC stages declare as their code dependencies.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

PACKAGES = ("pbrf", "tasks")
ORCHESTRATION = frozenset({"tasks.engine", "tasks.registry"})
ROOT = Path(__file__).resolve().parents[2]  # the repository: tasks/engine/codehash.py
# CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion depth mismatch" when
# two threads parse at once); the threaded Prefect runner hashes several nodes' code at once
_PARSE = threading.Lock()


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> set[str]:
    with _PARSE:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names]
            found.update(subs)  # `from pkg import module` imports that module
            if not all(_module_file(m) for m in subs):  # a name defined by the package itself
                found.add(target)
    return {m for m in found if m.split(".")[0] in PACKAGES and not _orchestration(m)}


def _orchestration(module: str) -> bool:
    """The engine and the registry decide what runs and where files go, not what a step computes:
    they are left out of code closures (a change of the artifact format bumps
    :data:`tasks.engine.artifacts.FORMAT`, which every reader checks)."""
    return module in ORCHESTRATION or module.startswith("tasks.engine.")


@cache
def module_closure(module: str) -> tuple[Path, ...]:
    """Source files of ``module`` and of every project module it imports, transitively.

    Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``: those files are part
    of the closure, but what *they* import is followed only when a module imports the package
    itself (``from pbrf import retrain``). A package's ``__init__`` re-exports its API; following
    its imports for every submodule would tie every step to every module of the package.
    """
    seen: dict[str, Path] = {}
    followed: set[str] = set()
    todo: list[tuple[str, bool]] = [(module, True)]
    while todo:
        name, follow = todo.pop()
        path = _module_file(name)
        if path is None or (name in followed or (name in seen and not follow)):
            continue
        seen[name] = path
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend((p, False) for p in parents)
        if follow:
            followed.add(name)
            todo.extend((m, True) for m in _imports(path, name))
    return tuple(sorted(set(seen.values())))


def code_files(modules: Sequence[str]) -> tuple[Path, ...]:
    """The union of the closures of ``modules`` (a node's :attr:`~tasks.engine.plan.Node.code`:
    its step's module and the modules it loads by name, e.g. an estimator's)."""
    return tuple(sorted({f for m in modules for f in module_closure(m)}))


def modules_hash(modules: Sequence[str]) -> str:
    """SHA-256 over the relative paths and bytes of :func:`code_files`."""
    h = hashlib.sha256()
    for path in code_files(modules):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def code_hash(function: str) -> str:
    """The hash of the closure of the module of ``"module:function"`` alone."""
    return modules_hash((function.split(":")[0],))
