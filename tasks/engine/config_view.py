"""A step's view of the config: only the keys it declares.

A node's stamp hashes the values of the config keys its step declares (``reads`` in
:mod:`tasks.registry`), so a step that read any other key could return stale results after
that key changed. :class:`ConfigView` makes that impossible: ``ctx.cfg.influence.solver.depth``
works when the step declares ``influence``, ``influence.solver`` or
``influence.solver.depth``; any other read raises :class:`UndeclaredConfigRead` naming the key
and the registry entry to extend. A declared section is returned as the config object itself
(its methods then read only that section); a section that is only partly declared is another
view. Mappings (``grade.estimators``) are views too: their keys can be listed, their values are
checked like attributes.

:data:`AMBIENT` keys are readable by every step without being stamped: ``device`` places the
computation and ``kernel`` picks the training step's implementation (both are recorded in every
manifest's environment, like the thread count: they change a result's last bits, not what it
is, so a finished study is not recomputed when it moves to another device or kernel).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

AMBIENT = frozenset({"device", "kernel"})
# config methods a step may call, and the key each one reads
METHODS: Mapping[str, str] = {"loss_name": "loss"}


class UndeclaredConfigRead(RuntimeError):
    """A step read a config key its registry entry does not declare."""

    def __init__(self, step: str, key: str) -> None:
        self.step, self.key = step, key
        super().__init__(
            f"step {step!r} read config key {key!r}, which it does not declare: add it to the "
            f"step's reads in tasks/registry.py (else a change of {key!r} would not rerun it)"
        )

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (type(self), (self.step, self.key))


def _covered(path: str, reads: frozenset[str]) -> bool:
    """``path`` or a section containing it is declared."""
    return any(path == k or path.startswith(k + ".") for k in reads)


def _inside(path: str, reads: frozenset[str]) -> bool:
    """Some declared key lies inside ``path`` (so ``path`` may be walked through)."""
    return any(k.startswith(path + ".") for k in reads)


class ConfigView:
    """The config object ``obj`` at dotted ``path``, restricted to ``reads`` of ``step``."""

    __slots__ = ("_obj", "_path", "_reads", "_step")

    def __init__(
        self, obj: Any, reads: frozenset[str] | tuple[str, ...], step: str, path: str = ""
    ):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", frozenset(reads))
        object.__setattr__(self, "_step", step)

    def _child(self, name: str, value: Any) -> Any:
        path = f"{self._path}.{name}" if self._path else name
        if _covered(path, self._reads) or (not self._path and path in AMBIENT):
            return value
        if _inside(path, self._reads) and isinstance(value, BaseModel | Mapping):
            return ConfigView(value, self._reads, self._step, path)
        raise UndeclaredConfigRead(self._step, path)

    def __getattr__(self, name: str) -> Any:
        obj = self._obj
        if isinstance(obj, BaseModel) and name not in type(obj).model_fields:
            if not hasattr(obj, name):
                raise AttributeError(f"{type(obj).__name__} has no attribute {name!r}")
            method = METHODS.get(name) if not self._path else None
            if method is None:
                where = f"{self._path}.{name}" if self._path else name
                raise UndeclaredConfigRead(self._step, where)
            self._child(method, getattr(obj, method))  # the key the method reads
            return getattr(obj, name)
        return self._child(name, getattr(obj, name))  # AttributeError when absent

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a step's config is read-only")

    # mappings (e.g. grade.estimators)
    def __getitem__(self, key: str) -> Any:
        return self._child(str(key), self._obj[key])

    def __iter__(self) -> Iterator[Any]:
        return iter(self._obj)

    def __len__(self) -> int:
        return len(self._obj)

    def __contains__(self, key: object) -> bool:
        return key in self._obj

    def keys(self):
        return self._obj.keys()

    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((k, self[k]) for k in self._obj)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._obj else default

    def __repr__(self) -> str:
        return f"ConfigView({self._path or '<config>'} for step {self._step!r})"
