"""Which source files decide a step's outputs, and their hash.

A step's code is its module plus everything it imports from the project's own packages
(``pbrf``, ``tasks``), followed transitively through ``import``/``from … import`` statements read
with :mod:`ast` (nothing is imported). Editing ``tasks/reports/report.py`` therefore reruns only the
report; editing ``pbrf/objectives.py`` reruns every step that trains. The same file list is what
the DVC stages declare as their code dependencies.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import cache
from pathlib import Path

PACKAGES = ("pbrf", "tasks")
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


def _imports(path: Path, module: str) -> set[str]:
    with _PARSE:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in PACKAGES}


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


def code_files(function: str) -> tuple[Path, ...]:
    """The closure of the module of ``"module:function"``."""
    return module_closure(function.split(":")[0])


def code_hash(function: str) -> str:
    """SHA-256 over the relative paths and bytes of :func:`code_files`."""
    h = hashlib.sha256()
    for path in code_files(function):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
