"""``vmgga`` command line: one sub-command per module in :mod:`vmgga.cli`.

Each sub-command module defines ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`vmgga.errors.VmggaError`, and system errors a user can act on such as a full
disk or a read-only folder) are printed as one line without a traceback and exit with 2;
``--debug`` shows the traceback; ``--verbose`` also shows what the C libraries (GDCM, HDF5, ITK)
printed, which is otherwise kept off the terminal (logger ``vmgga.libraries``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vmgga.allocator import keep_freed_memory
from vmgga.errors import VmggaError

#: Sub-command name -> module under vmgga.cli.
SUBCOMMANDS = {
    "register": "vmgga.cli.register",
    "apply": "vmgga.cli.apply",
    "match": "vmgga.cli.match",
    "train": "vmgga.cli.train",
    "batch": "vmgga.cli.batch",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="vmgga", description="VMGGA CT-MRI deformable registration")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--verbose", action="store_true", help="also show what the C libraries (GDCM, HDF5, ITK) printed"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # sub-command not built in this installation
            raise
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vmgga`` script; returns the exit status."""
    keep_freed_memory()  # before the sub-commands import torch
    args = build_parser().parse_args(argv)
    if args.verbose:
        show_library_output()
    try:
        return int(args.run(args) or 0)
    except VmggaError as error:
        if args.debug:
            raise
        print(f"vmgga {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        from vmgga.cli.checks import USER_ERRNOS, os_error_message

        if args.debug or error.errno not in USER_ERRNOS:
            raise
        print(f"vmgga {args.command}: error: {os_error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vmgga {args.command}: interrupted; no partial output was left", file=sys.stderr)
        return 130


def show_library_output() -> None:
    """Send the captured library text (logger ``vmgga.libraries``, DEBUG) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vmgga: %(message)s"))
    logger = logging.getLogger("vmgga.libraries")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


if __name__ == "__main__":
    sys.exit(main())
