"""``knnlab`` / ``python -m knnlab``: one subcommand per pipeline stage.

Usage: ``knnlab {fetch,split,train,tune,evaluate,plot} [--params params.yaml] [--debug]``.
Bad input ends the command with one line on stderr naming what is wrong and exit code 2;
``--debug`` (or ``KNNLAB_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from knnlab import paths
from knnlab.datasets import DataError
from knnlab.model_io import ModelFileError
from knnlab.params import ParamsError, load_params

STAGES = ("fetch", "split", "train", "tune", "evaluate", "plot")
# Errors that mean "the input is wrong", reported as one line rather than a traceback.
USER_ERRORS = (ParamsError, DataError, ModelFileError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knnlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        module = importlib.import_module(f"knnlab.stages.{stage}")
        sub = commands.add_parser(stage, help=module.__doc__.splitlines()[0])
        sub.add_argument("--params", default=str(paths.PARAMS_FILE), help="params file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("KNNLAB_DEBUG") == "1"
    module = importlib.import_module(f"knnlab.stages.{args.command}")
    try:
        if args.command == "plot":  # reads only upstream outputs, no params
            module.run()
        else:
            module.run(load_params(args.params))
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"knnlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
