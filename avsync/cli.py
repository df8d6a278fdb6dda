"""The `avsync` command: one entry point, one module per subcommand in `avsync.commands`.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``, returns an exit status). The
LightningCLI subcommands (fit, validate, test) take the raw arguments instead and live in
``avsync.commands.train`` as ``main(argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from avsync.errors import AvsyncError
from avsync.signals import Terminated, install_stop_handlers

SUBCOMMAND_MODULES = ("synth", "prepare", "eval", "align", "check", "sweep")
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``avsync: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"avsync: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand, or just ``only`` (its module alone is imported).

    Importing a subcommand module can pull in heavy libraries (Lightning: seconds), so a run of
    one subcommand imports only that one.
    """
    parser = OneLineParser(
        prog="avsync",
        description="Sync a singer's video to a music track by watching the lips.",
        epilog="Training: avsync {fit,validate,test} --config experiments/base.yaml ... (LightningCLI).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only in SUBCOMMAND_MODULES else SUBCOMMAND_MODULES:
        importlib.import_module(f"avsync.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the avsync command line; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    install_stop_handlers()
    try:
        if args and args[0] in LIGHTNING_SUBCOMMANDS:
            from avsync.commands import train

            return int(train.main(args) or 0)
        parser = build_parser(args[0] if args else None)
        namespace = parser.parse_args(args)
        if not getattr(namespace, "func", None):
            parser.print_help()
            return 2
        return int(namespace.func(namespace) or 0)
    except AvsyncError as exc:
        print(f"avsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("avsync: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("avsync: terminated", file=sys.stderr)
        return 143


QUICK_EXIT_SUBCOMMANDS = ("align", "check")
"""Subcommands whose process ends without Python's teardown once their work is done and flushed:
unloading torch (its CUDA build) takes 0.4-0.8 s and briefly maps 126 MB more than the whole
alignment needed at its peak; without torch (the ONNX networks), the teardown still took 0.3-0.45 s
of a 3.3-3.7 s `avsync align` (bench_align's clip, 3 alternating runs). They leave nothing for exit
handlers (outputs are renamed into place, worker pools and the lips worker are shut down)."""


def entry() -> NoReturn:
    """The ``avsync`` program: `main`, then exit (`QUICK_EXIT_SUBCOMMANDS` skip the interpreter's teardown)."""
    status = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT_SUBCOMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
