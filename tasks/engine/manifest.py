"""Node manifests: what a finished node read and wrote, by content.

When a node finishes, ``<run>/.pbrf/nodes/<node-id>.json`` records its key — a SHA-256 over its
config stamp, its code (:mod:`tasks.engine.codehash`) and the SHA-256 of every input file — and the
SHA-256 of every output file, with the environment that can change bits (threads, device, torch
version). A node is reused only when its manifest exists, its key equals the key the current
config, code and inputs give, and every output still hashes to what was recorded: a damaged
data page, a flipped bit in a checkpoint or a hand-edited table makes the node run again.

Paths are relative to the run directory, so a moved or copied run is reused as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.engine.artifacts import CorruptArtifactError, MissingArtifactError, write_json
from tasks.engine.codehash import modules_hash
from tasks.engine.plan import Node

MANIFEST_DIR = Path(".pbrf") / "nodes"

# (path, size, mtime_ns) -> sha256: a file is hashed once per process unless it changes
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def manifest_path(root: Path, node: Node) -> Path:
    return root / MANIFEST_DIR / f"{node.id}.json"


def node_key(root: Path, node: Node) -> str | None:
    """The key of ``node`` given the files now on disk; ``None`` if an input is missing."""
    inputs = {}
    for rel in sorted(set(node.inputs.values())):
        path = root / rel
        if not path.is_file():
            return None
        inputs[rel] = file_sha256(path)
    blob = {
        "stamp": node.stamp,
        "code": modules_hash(node.code),
        "inputs": inputs,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


@dataclass
class Status:
    current: bool
    reason: str  # why not current ("" when current)
    manifest: dict[str, Any] | None = None


def status(root: Path, node: Node) -> Status:
    """Whether ``node``'s outputs can be reused as they are, and if not, why."""
    path = manifest_path(root, node)
    if not path.is_file():
        return Status(False, "never finished here")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Status(False, f"unreadable manifest {path}")
    key = node_key(root, node)
    if key is None:
        return Status(False, "an input is missing")
    if manifest.get("key") != key:
        return Status(False, "config, code or inputs changed")
    for rel, digest in manifest.get("outputs", {}).items():
        out = root / rel
        if not out.is_file():
            return Status(False, f"output {rel} is missing")
        if file_sha256(out) != digest:
            return Status(False, f"output {rel} changed on disk (content hash mismatch)")
    if set(manifest.get("outputs", {})) != set(node.outputs.values()):
        return Status(False, "outputs differ from the plan")
    return Status(True, "", manifest)


def begin(root: Path, node: Node) -> dict[str, Any]:
    """The key and input hashes of ``node`` as it starts: what :func:`record` writes when it
    ends. Taken at the start, so that code edited while the step runs is not recorded as the
    code that made its outputs (the running process keeps what it imported)."""
    inputs = {rel: file_sha256(root / rel) for rel in sorted(set(node.inputs.values()))}
    return {"key": node_key(root, node), "inputs": inputs}


def record(
    root: Path,
    node: Node,
    *,
    seconds: float,
    warnings: list[str],
    env: dict[str, Any],
    begun: dict[str, Any],
) -> dict[str, Any]:
    """Write the manifest of a node whose outputs were just written; ``begun`` is
    :func:`begin`'s record from the node's start."""
    manifest = {
        "node": node.id,
        "step": node.step,
        "params": dict(node.params),
        "stamp": node.stamp,
        "key": begun["key"],
        "inputs": begun["inputs"],
        "outputs": {rel: file_sha256(root / rel) for rel in node.outputs.values()},
        "seconds": round(seconds, 3),
        "warnings": warnings,
        "env": env,
    }
    write_json(manifest_path(root, node), manifest)
    return manifest


def forget(root: Path, node: Node) -> None:
    """Drop a node's manifest (its outputs are then recomputed on the next run)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(manifest_path(root, node))


def verify_output(root: Path, node: Node, path: Path) -> None:
    """Check ``path`` (an output of ``node``) against the SHA-256 in ``node``'s manifest.

    Every reader calls this before using an artifact: a file changed after its step wrote it
    (a flipped bit that still parses, an edited table) or one without a finished producer is
    refused with an :class:`~tasks.engine.artifacts.ArtifactError` naming the step to rerun.
    """
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    if not path.is_file():
        raise MissingArtifactError(path, node.step, "missing")
    mpath = manifest_path(Path(root), node)
    try:
        recorded = json.loads(mpath.read_text(encoding="utf-8")).get("outputs", {})
    except FileNotFoundError:
        raise MissingArtifactError(
            path,
            node.step,
            f"node {node.id!r} has no manifest ({mpath} missing: it never finished)",
        ) from None
    except (OSError, ValueError) as exc:
        raise CorruptArtifactError(path, node.step, f"unreadable manifest {mpath} ({exc})") from exc
    if rel not in recorded:
        raise CorruptArtifactError(path, node.step, f"not recorded in the manifest of {node.id!r}")
    if file_sha256(path) != recorded[rel]:
        raise CorruptArtifactError(
            path,
            node.step,
            f"content changed after node {node.id!r} wrote it (SHA-256 differs from its manifest)",
        )


def read_output(root: Path | str, node: Node, artifact: str, schema: Any) -> Any:
    """Table ``artifact`` of a finished ``node`` outside a step (reports, summaries, flows):
    its bytes checked against the node's manifest, its provenance against the node's stamp."""
    from tasks.engine.artifacts import read_table

    path = Path(root) / node.outputs[artifact]
    verify_output(Path(root), node, path)
    return read_table(path, schema, step=node.step, stamp=node.stamp)
