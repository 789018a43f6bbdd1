"""``python -m raynas COMMAND``: each command lives in its own module under ``raynas.commands``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Errors that a user can fix (bad configuration, missing
data) are raised as ``UserError`` and printed as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from raynas.errors import UserError

COMMANDS = ("demo", "pretrain", "train-supernet", "sweep", "finetune", "rank-check", "predict", "compare", "report",
            "inspect", "latency")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raynas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"raynas.commands.{name.replace('-', '_')}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (UserError, FileNotFoundError) as err:
        print(f"raynas {args.command}: error: {err}", file=sys.stderr)
        return 2
