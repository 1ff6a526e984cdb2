"""What a step function gets: its config, its node, and stamped artifact I/O by name.

A step is ``def step(ctx: StepContext) -> None``. It sees the config keys it declares
(``ctx.cfg``, a :class:`~tasks.engine.config_view.ConfigView`), reads inputs by artifact name
(``ctx.load_checkpoint("theta_s")``), which checks the file's bytes against its producer's
manifest and that it was written by the expected node under the current config, and writes its outputs by name (``ctx.write_table("gaps", …)``),
which stamps them and records the environment (threads, device, torch version). Paths come from
the plan, never from the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from tasks.engine import artifacts
from tasks.engine.config_view import ConfigView
from tasks.engine.manifest import verify_output
from tasks.engine.plan import Node, Plan
from tasks.schemas import TableSchema


def environment(device: str, kernel: str = "auto") -> dict[str, Any]:
    """What can change the bits of a result: thread count, device, training kernel, library
    versions."""
    return {
        "threads": torch.get_num_threads(),
        "device": device,
        "kernel": kernel,
        "torch": str(torch.__version__),
    }


@dataclass
class StepContext:
    root: Path
    config: Any  # the validated pbrf.study.config.StudyConfig; steps read it through ``cfg``
    plan: Plan
    node: Node
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ facts
    @property
    def cfg(self) -> ConfigView:
        """The config limited to the keys this node's stamp covers: those its step declares and
        those its inputs were made under (:mod:`~tasks.engine.config_view`)."""
        return ConfigView(self.config, self.node.covers, self.node.step)

    @property
    def params(self) -> Mapping[str, Any]:
        return self.node.params

    @property
    def env(self) -> dict[str, Any]:
        return environment(self.config.device, self.config.kernel)

    def warn(self, message: str) -> None:
        """Record a warning (convergence, precision) for the manifest, summary and report."""
        self.warnings.append(message)

    # ------------------------------------------------------------------ paths
    def output_path(self, name: str) -> Path:
        return self.root / self.node.outputs[name]

    def producers(self, artifact: str) -> list[Node]:
        """The nodes this node reads ``artifact`` from (several for the aggregate)."""
        ids = [
            key.split("[", 1)[1][:-1] for key in self.node.inputs if key.startswith(f"{artifact}[")
        ]
        if not ids:
            raise KeyError(f"node {self.node.id!r} does not read artifact {artifact!r}")
        return [self.plan[i] for i in ids]

    def _source(self, artifact: str, node: Node | None) -> tuple[Path, Node]:
        if node is None:
            found = self.producers(artifact)
            if len(found) != 1:
                raise ValueError(f"{artifact!r} has {len(found)} producers; pass node=")
            node = found[0]
        return self.root / node.outputs[artifact], node

    # ------------------------------------------------------------------ reads
    def load_checkpoint(self, artifact: str, node: Node | None = None) -> artifacts.Checkpoint:
        path, src = self._source(artifact, node)
        verify_output(self.root, src, path)
        return artifacts.load_checkpoint(path, step=src.step, stamp=src.stamp)

    def read_table(
        self, artifact: str, schema: TableSchema, node: Node | None = None
    ) -> pd.DataFrame:
        path, src = self._source(artifact, node)
        verify_output(self.root, src, path)
        return artifacts.read_table(path, schema, step=src.step, stamp=src.stamp)

    def read_tables(self, artifact: str, schema: TableSchema) -> list[tuple[Node, pd.DataFrame]]:
        return [(n, self.read_table(artifact, schema, n)) for n in self.producers(artifact)]

    # ------------------------------------------------------------------ writes
    def save_checkpoint(
        self, name: str, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any] | None = None
    ) -> Path:
        return artifacts.save_checkpoint(
            self.output_path(name),
            state_dict,
            step=self.node.step,
            stamp=self.node.stamp,
            meta=meta,
            env=self.env,
        )

    def write_table(self, name: str, schema: TableSchema, columns: Mapping[str, Any]) -> Path:
        return artifacts.write_table(
            self.output_path(name),
            schema,
            columns,
            step=self.node.step,
            stamp=self.node.stamp,
            env=self.env,
        )

    def write_text(self, name: str, text: str) -> Path:
        return artifacts.write_text(self.output_path(name), text)

    def write_json(self, name: str, obj: Any) -> Path:
        return artifacts.write_json(self.output_path(name), obj)

    def clean_temps(self) -> None:
        """Remove temporary files a killed writer of this node left behind."""
        for rel in self.node.outputs.values():
            artifacts.remove_stale_temps((self.root / rel).parent)
