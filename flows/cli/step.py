"""``pbrf step NODE``: one node without Prefect — what each DVC stage runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli.config_cmds import config_from
from flows.cli.errors import ConfigError


def cmd_step(args: argparse.Namespace) -> int:
    from flows.threads import configure_threads
    from tasks.engine.plan import build_plan
    from tasks.engine.runner import run_node, write_run_config

    cfg = config_from(args, {"device": args.device} if args.device else None)
    plan = build_plan(cfg.model_dump(mode="json"))
    if args.node not in plan.nodes:
        raise ConfigError(
            f"unknown node {args.node!r} for this config; nodes: {', '.join(plan.nodes)}"
        )
    from flows.cli.run import check_device, check_out_dir
    from tasks.engine import preflight
    from tasks.engine.lock import run_lock

    check_device(cfg.device)
    configure_threads(1)
    out = Path(args.out)
    check_out_dir(out)
    node = plan[args.node]
    preflight.check_inputs(out, plan, node)  # nothing is written unless every input is usable
    if node.step == "prepare":
        preflight.check_data(cfg.data, content=False)  # the step itself parses the files
    with run_lock(out):
        result = run_node(out, cfg, args.node, plan=plan, force=True)
        write_run_config(out, cfg)
    print(json.dumps(result.as_dict()))
    return 0
