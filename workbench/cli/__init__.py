"""The ``workbench`` command line. Each module of this package adds its own sub-commands with
``add_cli(subparsers)``: ``store``, ``generate``, ``attention``, ``interpret`` (lens, arch,
attribute, compare), ``onnx`` (export, bench), ``datasets``, ``eval`` (module ``evaluate``),
``finetune`` and ``jobs`` (module ``finetune``), ``serve`` (serve, keys), ``app`` (the Streamlit app).
Heavy libraries are imported inside the commands, so ``workbench --help`` is quick.

Errors from the workbench print their message to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import WorkbenchError

# Modules (relative to this package) that add sub-commands: each defines ``add_cli(subparsers)``.
COMMANDS: tuple[str, ...] = (".store", ".generate", ".attention", ".interpret", ".onnx", ".datasets", ".evaluate",
                             ".finetune", ".serve", ".app", ".apps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="GPT Store Workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name, __name__).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
