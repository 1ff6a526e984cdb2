"""``pbrf dvc``: write (or check) dvc.yaml for params.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.config_cmds import config_from


def cmd_dvc(args: argparse.Namespace) -> int:
    from tasks.engine.artifacts import write_text
    from tasks.engine.dvcgen import dvc_yaml

    args.set = []
    cfg = config_from(args)
    text = dvc_yaml(cfg, params_file=args.params, out=args.out)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(
                f"pbrf: {path} differs from the registry and {args.params}; run `pbrf dvc`",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date")
        return 0
    write_text(path, text)
    print(path)
    return 0
