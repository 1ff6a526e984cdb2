"""``pbrf presets``, ``pbrf params`` and ``pbrf plan``: what a study is, before running it."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from flows.cli.errors import ConfigError, show
from flows.cli.table import print_table


class DuplicateKeyError(ValueError):
    """A YAML mapping that gives one key twice (PyYAML would keep the last silently)."""


@functools.cache
def _unique_key_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice in one mapping, naming its line."""

        def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(
                        f"key {show(key)} is given twice (lines {seen[key]} and {line})"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return Loader


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKeyError` for a key given twice."""
    import yaml

    return yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x,y]"]`` → ``{"a.b": 1, "c": ["x", "y"]}`` (values read as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        shown = show(item)
        if "=" not in item:
            raise ConfigError(f"--set {shown} must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {shown} has an empty key")
        try:
            out[key] = load_yaml(raw) if raw.strip() else None
        except DuplicateKeyError as exc:
            raise ConfigError(f"--set {shown}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {shown}: the value is not valid YAML ({exc.problem})"
            ) from None
    return out


def config_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    """The validated config of ``args.params`` (a YAML file) or ``args.preset``/``args.scale``."""
    from pbrf.study.config import StudyConfig
    from pbrf.study.presets import DEFAULT_PRESET, apply_overrides, load_preset

    overrides = {**parse_overrides(getattr(args, "set", [])), **(overrides or {})}
    params = getattr(args, "params", None)
    if params:
        return StudyConfig.model_validate(apply_overrides(read_params(Path(params)), overrides))
    try:
        return load_preset(args.preset or DEFAULT_PRESET, overrides, getattr(args, "scale", None))
    except ValueError as exc:
        if type(exc) is ValueError:  # unknown preset or scale
            raise ConfigError(str(exc)) from None
        raise


def read_params(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(
            f"parameter file {path} not found (write one with `pbrf params -o {path}`)"
        )
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}; keep one of them") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} holds no configuration (write one with `pbrf params -o {path}`)")
    return data


def cmd_presets(args: argparse.Namespace) -> int:
    from pbrf.study.presets import DEFAULT_PRESET, PRESETS

    if getattr(args, "preset", None):
        return _show_preset(args.preset)
    rows = [
        [
            name + (" (default)" if name == DEFAULT_PRESET else ""),
            ", ".join(p.scale_names()),
            _paper_tables(p.paper_row),
            p.description,
        ]
        for name, p in PRESETS.items()
    ]
    print_table(rows, ["preset", "scales", "paper row (tables)", "study"])
    return 0


def _paper_tables(row: tuple[str, str] | None) -> str:
    """``model/dataset (5, 2)``: the paper's row and the tables holding it."""
    if row is None:
        return "—"
    from tasks.reports.paper import paper_values

    df = paper_values()
    tables = df[(df["model"] == row[0]) & (df["dataset"] == row[1])]["table"].unique()
    order = sorted(tables, key=lambda t: (t != "5", t != "2", t))
    return f"{row[0]}/{row[1]} ({', '.join(order) or 'none'})"


def _show_preset(name: str) -> int:
    from pbrf.study.presets import get_preset, preset_dict

    try:
        preset = get_preset(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    default = preset.default_scale or "default"
    print(f"{name}: {preset.description}")
    print(f"paper row: {_paper_tables(preset.paper_row)}")
    print(f"scales: {', '.join(preset.scale_names())} (default: {default})")
    for scale, overrides in preset.scales.items():
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the preset's settings"
        print(f"  {scale}: {shown}")
        for note in preset.scale_notes.get(scale, ()):
            print(f"    - {note}")
    if preset.notes:
        print("choices where the paper is silent or contradicts itself:")
        for note in preset.notes:
            print(f"  - {note}")
    print(
        f"`pbrf params {name}` prints the full config; this preset's data: "
        f"{preset_dict(name)['data']}"
    )
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from tasks.engine.paramsfile import dump_params

    cfg = config_from(args)
    text = dump_params(
        cfg.model_dump(mode="json"),
        "# Full StudyConfig for the DVC pipeline (dvc.yaml); regenerate with `pbrf params`.\n",
    )
    if args.output:
        from tasks.engine.artifacts import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tasks.engine.plan import build_plan

    cfg = config_from(args)
    plan = build_plan(cfg.model_dump(mode="json"))
    rows = [
        [n.id, ", ".join(n.upstream) or "—", ", ".join(n.reads) or "—", str(len(n.outputs))]
        for n in plan
    ]
    print_table(rows, ["node", "waits for", "config keys read", "outputs"])
    return 0
