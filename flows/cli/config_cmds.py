"""``pbrf presets``, ``pbrf params`` and ``pbrf plan``: what a study is, before running it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flows.cli.errors import ConfigError
from flows.cli.table import print_table


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x,y]"]`` → ``{"a.b": 1, "c": ["x", "y"]}`` (values read as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r} has an empty key")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML ({exc.problem})"
            ) from None
    return out


def config_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    """The validated config of ``args.params`` (a YAML file) or ``args.preset``/``args.scale``."""
    from pbrf.config import StudyConfig
    from pbrf.presets import DEFAULT_PRESET, apply_overrides, load_preset

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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} holds no configuration (write one with `pbrf params -o {path}`)")
    return data


def cmd_presets(args: argparse.Namespace) -> int:
    from pbrf.presets import DEFAULT_PRESET, PRESETS

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
    from tasks.paper import paper_values

    df = paper_values()
    tables = df[(df["model"] == row[0]) & (df["dataset"] == row[1])]["table"].unique()
    order = sorted(tables, key=lambda t: (t != "5", t != "2", t))
    return f"{row[0]}/{row[1]} ({', '.join(order) or 'none'})"


def _show_preset(name: str) -> int:
    from pbrf.presets import get_preset, preset_dict

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
    import yaml

    cfg = config_from(args)
    text = (
        "# Full StudyConfig for the DVC pipeline (dvc.yaml); regenerate with `pbrf params`.\n"
        + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    if args.output:
        from tasks.artifacts import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tasks.plan import build_plan

    cfg = config_from(args)
    plan = build_plan(cfg.model_dump(mode="json"))
    rows = [
        [n.id, ", ".join(n.upstream) or "—", ", ".join(n.reads) or "—", str(len(n.outputs))]
        for n in plan
    ]
    print_table(rows, ["node", "waits for", "config keys read", "outputs"])
    return 0
