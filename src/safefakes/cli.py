"""The ``safefakes`` command line: one sub-command per pipeline step.

Each stage package owns its sub-commands in its own ``cli.py`` with a ``register(subparsers)``
function; this module only collects them and turns :class:`SafefakesError` into a one-line error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from safefakes import __version__
from safefakes.common.errors import SafefakesError

#: Stage modules whose ``register(subparsers)`` adds sub-commands, in ``--help`` order.
STAGE_CLI_MODULES = (
    "safefakes.data.cli",
    "safefakes.anonymize.cli",
    "safefakes.anonymize.gan_cli",
    "safefakes.detect.cli",
    "safefakes.evaluate.cli",
    "safefakes.evaluate.privacy_cli",
    "safefakes.plots.cli",
    "safefakes.plots.privacy_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every stage's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="safefakes",
        description="Anonymize face datasets, train face detectors on them, and measure the cost.",
    )
    parser.add_argument("--version", action="version", version=f"safefakes {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLI_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the sub-command, map errors to exit status 1 with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result = args.func(args)
    except SafefakesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
