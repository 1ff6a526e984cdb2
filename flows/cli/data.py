"""``pbrf data fetch NAME``: download a data set's files, or say exactly where to put them."""

from __future__ import annotations

import argparse


def cmd_fetch(args: argparse.Namespace) -> int:
    from tasks.datafetch import fetch

    for path in fetch(args.name, args.root):
        print(path)
    return 0
