"""A run's concrete nodes, derived from the step registry and one config.

A :class:`Node` is one execution of a step (a variant and shard for ``retrain``), with its
input and output paths relative to the run directory, the nodes it waits for, and its config
stamp: a SHA-256 over the values of the config keys the step reads, the node's parameters and
the stamps of its upstream nodes (a Merkle hash over the DAG). Every artifact carries the stamp
of the node that wrote it, and a reader refuses an artifact whose stamp differs from the one the
current config implies — so a change reaches exactly the nodes downstream of what it touches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

from tasks.registry import STEPS, Config, Step, get_key, producer


@dataclass(frozen=True)
class Node:
    id: str  # e.g. "retrain-pbrf" or "retrain-pbrf-1of2"
    step: str
    params: Mapping[str, Any]
    reads: tuple[str, ...]  # own config keys
    inputs: Mapping[str, str]  # "artifact[node-id]" -> relative path
    outputs: Mapping[str, str]  # artifact name -> relative path
    upstream: tuple[str, ...]  # node ids
    stamp: str  # config stamp (Merkle over own keys and upstream stamps)
    forward_ad: bool
    code: tuple[str, ...] = ()  # modules whose import closure is the node's code
    # the keys its stamp covers: its own reads and those of every node upstream of it (Merkle)
    covers: frozenset[str] = frozenset()

    @property
    def module(self) -> str:
        return self.code[0]

    def output(self, name: str) -> str:
        return self.outputs[name]


@dataclass(frozen=True)
class Plan:
    nodes: Mapping[str, Node]  # in topological order

    def __iter__(self):
        return iter(self.nodes.values())

    def __getitem__(self, node_id: str) -> Node:
        if node_id not in self.nodes:
            raise KeyError(f"no node {node_id!r} in this run; nodes: {list(self.nodes)}")
        return self.nodes[node_id]

    def of_step(self, step: str) -> list[Node]:
        return [n for n in self if n.step == step]

    def producer_of(self, artifact: str, params: Mapping[str, Any] | None = None) -> list[Node]:
        """The nodes that write ``artifact`` (those matching ``params`` where given)."""
        step = producer(artifact).name
        return [
            n
            for n in self.of_step(step)
            if all(n.params.get(k) == v for k, v in (params or {}).items())
        ]

    def downstream(self, node_id: str) -> list[str]:
        """Every node that (transitively) depends on ``node_id``."""
        out: list[str] = []
        for n in self:
            if node_id in n.upstream or any(u in out for u in n.upstream):
                out.append(n.id)
        return out


def node_id(step: str, params: Mapping[str, Any]) -> str:
    if not params:
        return step
    label = [step, str(params["variant"])] if "variant" in params else [step]
    if "estimator" in params:
        label.append(str(params["estimator"]))
    if int(params.get("shards", 1)) > 1:
        label.append(f"{int(params['shard']) + 1}of{params['shards']}")
    return "-".join(label)


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in Formatter().parse(template) if f}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_plan(cfg: Config) -> Plan:
    """Expand :data:`tasks.registry.STEPS` for the config dict ``cfg`` (``model_dump``)."""
    nodes: dict[str, Node] = {}
    for step in STEPS.values():
        for params in step.nodes(cfg):
            node = _node(step, dict(params), cfg, nodes)
            nodes[node.id] = node
    return Plan(nodes)


def _node(step: Step, params: dict[str, Any], cfg: Config, done: dict[str, Node]) -> Node:
    inputs: dict[str, str] = {}
    upstream: list[str] = []
    for artifact in step.inputs_for(cfg, params):
        src = producer(artifact)
        template = src.outputs[artifact]
        bound = {k: params[k] for k in _fields(template) if k in params}
        makers = [
            n
            for n in done.values()
            if n.step == src.name and all(n.params.get(k) == v for k, v in bound.items())
        ]
        if not makers:
            raise ValueError(
                f"step {step.name!r} needs {artifact!r} from step {src.name!r}, which does not "
                "run under this config"
            )
        for n in makers:
            inputs[f"{artifact}[{n.id}]"] = n.outputs[artifact]
            if n.id not in upstream:
                upstream.append(n.id)
    reads = step.reads_for(cfg, params)
    own = {key: get_key(cfg, key) for key in reads}
    stamp = _digest(
        {
            "step": step.name,
            "params": params,
            "own": own,
            "upstream": sorted(done[u].stamp for u in upstream),
        }
    )
    outputs = {name: tpl.format(**params) for name, tpl in step.outputs.items()}
    return Node(
        id=node_id(step.name, params),
        step=step.name,
        params=params,
        reads=reads,
        inputs=inputs,
        outputs=outputs,
        upstream=tuple(upstream),
        stamp=stamp,
        forward_ad=step.forward_ad(cfg, params),
        code=(step.function.split(":")[0], *step.code_for(cfg, params)),
        covers=frozenset(reads).union(*(done[u].covers for u in upstream)),
    )
