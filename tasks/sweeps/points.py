"""A sweep's run directory, and running its points so that no computation happens twice.

Layout of a sweep directory (``runs/sweeps/<sweep>-<scale>/`` by default)::

    sweep.json                  the resolved SweepSpec and its points (ids, swept values)
    points/<point-id>/          one ordinary run directory per grid point (config.json, …)
    .pbrf/index/<key>.json      finished nodes by manifest key: which point holds them
    sweep/                      table.parquet, table.csv, figure5.png, report.md (collect)

**Reuse across points.** A node's manifest key (:func:`tasks.engine.manifest.node_key`) hashes its
config stamp (its own config keys and its upstream stamps), its code and the bytes of its
inputs. Two points whose nodes have equal keys would compute the same thing — the base model
of a damping sweep, the influence solve of a PBRF-horizon sweep — so before a node runs, the
index is asked for that key; if a sibling point holds a current copy, its outputs are
hard-linked (copied where links fail) into this point with its manifest, and the node reports
``Reused`` and the point it came from. Artifacts are replaced by atomic rename, never written
in place, so a later rewrite in one point cannot change a sibling's file. The index is only a
hint: an entry is used only when the sibling's manifest is current for the very same key.

The same functions serve the Prefect ``sweep`` flow (one task per point and node), the serial
runner below (``pbrf sweep --serial``, tests) and the DVC stages (one per point).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbrf.study.sweeps import Point, SweepSpec
from tasks.engine import manifest
from tasks.engine.artifacts import write_json
from tasks.engine.plan import Node, Plan, build_plan
from tasks.engine.runner import run_node, write_run_config

SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
INDEX_DIR = Path(".pbrf") / "index"
DIVERGED_DIR = Path(".pbrf") / "diverged"


@dataclass(frozen=True)
class SweepPlan:
    """Every point's plan, and for each distinct node (by stamp) the first point that has it."""

    spec: SweepSpec
    points: tuple[Point, ...]
    plans: dict[str, Plan]  # point id → plan
    owner: dict[str, str]  # node stamp → id of the first point (grid order) holding it

    def point(self, pid: str) -> Point:
        for p in self.points:
            if p.id == pid:
                return p
        raise KeyError(f"no point {pid!r} in this sweep; points: {[p.id for p in self.points]}")

    def is_owner(self, pid: str, node: Node) -> bool:
        return self.owner[node.stamp] == pid

    def distinct_nodes(self) -> int:
        return len(self.owner)

    def total_nodes(self) -> int:
        return sum(len(p.nodes) for p in self.plans.values())


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    points = tuple(spec.points())
    plans = {p.id: build_plan(p.config.model_dump(mode="json")) for p in points}
    owner: dict[str, str] = {}
    for p in points:
        for node in plans[p.id]:
            owner.setdefault(node.stamp, p.id)
    return SweepPlan(spec, points, plans, owner)


def point_dir(root: Path | str, pid: str) -> Path:
    return Path(root) / POINTS_DIR / pid


def write_sweep(root: Path | str, sp: SweepPlan, *, only: str | None = None) -> Path:
    """Save ``sweep.json`` and every point's (or point ``only``'s) ``config.json``."""
    root = Path(root)
    for p in sp.points:
        if only is None or p.id == only:
            write_run_config(point_dir(root, p.id), p.config)
    return write_json(
        root / SWEEP_FILE,
        {
            "spec": sp.spec.model_dump(mode="json"),
            "points": [{"id": p.id, "values": p.values} for p in sp.points],
        },
    )


def read_sweep(root: Path | str) -> SweepSpec:
    """The spec saved by :func:`write_sweep` in sweep directory ``root``."""
    path = Path(root) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a pbrf sweep directory")
    return SweepSpec.model_validate(json.loads(path.read_text(encoding="utf-8"))["spec"])


# --------------------------------------------------------------------------- the index


def _index_path(root: Path, key: str) -> Path:
    return root / INDEX_DIR / f"{key}.json"


def remember(root: Path, pid: str, node: Node, *, fresh: bool = False) -> None:
    """Index ``node`` of point ``pid`` by its manifest key; a ``fresh`` computation replaces an
    existing entry, a cached or reused copy only fills a missing one."""
    path = manifest.manifest_path(point_dir(root, pid), node)
    key = json.loads(path.read_text(encoding="utf-8")).get("key") if path.is_file() else None
    if key and (fresh or not _index_path(root, key).is_file()):
        write_json(_index_path(root, key), {"point": pid, "node": node.id})


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def reuse_from_sibling(root: Path, pid: str, node: Node) -> str | None:
    """Link ``node``'s outputs from the sibling point the index names, if that copy is current
    for the key this point's inputs give; return the sibling's id (``None`` if not reused)."""
    proot = point_dir(root, pid)
    key = manifest.node_key(proot, node)
    if key is None:
        return None
    index = _index_path(root, key)
    if not index.is_file():
        return None
    src = json.loads(index.read_text(encoding="utf-8"))["point"]
    sroot = point_dir(root, src)
    if src == pid or not sroot.is_dir():
        return None
    state = manifest.status(sroot, node)
    if not state.current or (state.manifest or {}).get("key") != key:
        return None
    for rel in node.outputs.values():
        _link(sroot / rel, proot / rel)
    write_json(manifest.manifest_path(proot, node), state.manifest)
    return src


# --------------------------------------------------------------------------- divergence


def divergence(root: Path, pid: str, node: Node) -> str | None:
    """The message of a recorded numerical failure of ``node`` for the inputs, config and code
    it has now in point ``pid`` (any point's failure with the same key counts), else ``None``."""
    key = manifest.node_key(point_dir(root, pid), node)
    path = root / DIVERGED_DIR / f"{key}.json"
    if key is None or not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8"))["message"])


def blocked_by(root: Path, pid: str, plan: Plan, node: Node) -> str | None:
    """The upstream node of this point that diverged (directly or further up), if any."""
    proot = point_dir(root, pid)
    for uid in node.upstream:
        up = plan[uid]
        if manifest.status(proot, up).current:
            continue
        if divergence(root, pid, up) is not None:
            return uid
        further = blocked_by(root, pid, plan, up)
        if further is not None:
            return further
    return None


def _record_divergence(root: Path, pid: str, node: Node, message: str) -> None:
    key = manifest.node_key(point_dir(root, pid), node)
    if key is not None:
        write_json(
            root / DIVERGED_DIR / f"{key}.json", {"point": pid, "node": node.id, "message": message}
        )


# --------------------------------------------------------------------------- running


@dataclass
class SweepNodeResult:
    point: str
    node: str
    # "Completed" (ran), "Cached" (current here), "Reused" (from a sibling), "Diverged" (a
    # numerical failure: NaN loss, LiSSA diverging) or "Skipped" (an upstream node diverged)
    state: str
    seconds: float  # compute time of the run that produced the outputs
    warnings: list[str] = field(default_factory=list)
    source: str = ""  # the point it was reused from
    message: str = ""  # why it diverged or was skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "node": self.node,
            "state": self.state,
            "seconds": self.seconds,
            "warnings": self.warnings,
            "source": self.source,
            "message": self.message,
        }


def run_sweep_node(
    root: Path | str, sp: SweepPlan, pid: str, node_id: str, *, refresh: bool = False
) -> SweepNodeResult:
    """Reuse (here or from a sibling) or execute one node of one point.

    With ``refresh`` the first point holding a node recomputes it and the others link its
    fresh outputs, so every distinct computation still runs exactly once. A numerical failure
    (:class:`FloatingPointError`: a non-finite loss, LiSSA diverging) is a result of the grid
    point, not of the sweep: it is recorded by key (``Diverged``; a rerun does not repeat it)
    and the point's nodes below it are ``Skipped``, while the other points go on.
    """
    root = Path(root)
    point, plan = sp.point(pid), sp.plans[pid]
    node = plan[node_id]
    proot = point_dir(root, pid)
    owner = sp.is_owner(pid, node)
    blocker = blocked_by(root, pid, plan, node)
    if blocker is not None:
        return SweepNodeResult(pid, node.id, "Skipped", 0.0, message=f"{blocker} diverged")
    if not refresh:
        known = divergence(root, pid, node)
        if known is not None and not manifest.status(proot, node).current:
            return SweepNodeResult(pid, node.id, "Diverged", 0.0, message=known)
    if not (refresh and owner):
        state = manifest.status(proot, node)
        if state.current and not refresh:
            remember(root, pid, node)
            m = state.manifest or {}
            return SweepNodeResult(
                pid, node.id, "Cached", float(m.get("seconds", 0.0)), list(m.get("warnings", []))
            )
        src = reuse_from_sibling(root, pid, node)
        if src is not None:
            m = json.loads(manifest.manifest_path(proot, node).read_text(encoding="utf-8"))
            return SweepNodeResult(
                pid, node.id, "Reused", float(m["seconds"]), list(m.get("warnings", [])), src
            )
    try:
        res = run_node(proot, point.config, node_id, plan=plan, force=refresh)
    except FloatingPointError as exc:
        message = " ".join(str(exc).split())
        _record_divergence(root, pid, node, message)
        return SweepNodeResult(pid, node.id, "Diverged", 0.0, message=message)
    remember(root, pid, node, fresh=True)
    return SweepNodeResult(pid, node.id, res.state, res.seconds, res.warnings)


def run_sweep_points(
    root: Path | str,
    sp: SweepPlan,
    *,
    only: str | None = None,
    refresh: bool = False,
    on_result: Callable[[SweepNodeResult], None] | None = None,
) -> list[SweepNodeResult]:
    """Run every point (or ``only`` one) serially, nodes in plan order, points in grid order,
    so the first holder of each node computes it before a sibling asks for it."""
    out = []
    for p in sp.points:
        if only is not None and p.id != only:
            continue
        for node in sp.plans[p.id]:
            r = run_sweep_node(root, sp, p.id, node.id, refresh=refresh)
            out.append(r)
            if on_result is not None:
                on_result(r)
    return out


def summarize(results: list[SweepNodeResult]) -> dict[str, int]:
    """How many node executions ran, were current, or were reused from a sibling."""
    counts = {"Completed": 0, "Cached": 0, "Reused": 0, "Diverged": 0, "Skipped": 0}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    return counts
