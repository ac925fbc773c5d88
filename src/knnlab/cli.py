"""``knnlab`` / ``python -m knnlab``: the pipeline stages and the tools around them.

Usage::

    knnlab {fetch,split,train,tune,evaluate,plot} [--params params.yaml]
    knnlab predict [--model FILE] [--json] INPUT...  label images, .npy or CSV rows
    knnlab report [--base REV] [--output FILE]     the reviewer's report, with a diff
    knnlab bench [...]                              search benchmark (see knnlab.bench)

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
from knnlab.tracking import TrackingError

STAGES = ("fetch", "split", "train", "tune", "evaluate", "plot")
# Errors that mean "the input is wrong", reported as one line rather than a traceback.
USER_ERRORS = (ParamsError, DataError, ModelFileError)  # all ValueError subclasses


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knnlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        module = importlib.import_module(f"knnlab.stages.{stage}")
        sub = commands.add_parser(stage, help=module.__doc__.splitlines()[0])
        sub.add_argument("--params", default=str(paths.PARAMS_FILE), help="params file")
    report = commands.add_parser("report", help="print reports/report.md, with --base a diff")
    report.add_argument("--base", help="git revision to compare params and metrics against")
    report.add_argument("--output", help="write here instead of standard output")
    report.add_argument(
        "--figure-url",
        help="prefix for figure links instead of the relative 'figures/' (e.g. a raw-file "
        "URL of the reports/ folder, for a pull-request comment)",
    )
    predict = commands.add_parser("predict", help="label new inputs with a saved model")
    predict.add_argument("--model", default=str(paths.MODEL_FILE), help="a knnlab model file")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument("--top", type=int, default=3, help="class probabilities to show")
    predict.add_argument("inputs", nargs="+", help="images, .npy, .csv, or - (CSV on stdin)")
    bench = commands.add_parser("bench", help="benchmark the search against scikit-learn")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="see knnlab bench -h")
    return parser


def _report(base: str | None, output: str | None, figure_url: str | None) -> None:
    from knnlab import io, report

    text = paths.REPORT_FILE.read_text(encoding="utf-8")
    if base is not None:
        current = {
            "params": load_raw_params(),
            "metrics": io.read_json(paths.METRICS_FILE),
        }
        base_state = report.read_revision(base, str(paths.PARAMS_FILE), str(paths.METRICS_FILE))
        diff = report.diff_against(base_state, current)
        title, _, rest = text.partition("\n")
        text = title + "\n\n" + "\n".join(report.diff_section(diff)) + "\n" + rest
    if figure_url is not None:
        text = text.replace("](figures/", f"]({figure_url.rstrip('/')}/figures/")
    if output is None:
        sys.stdout.write(text)
    else:
        io.write_text(output, text)


def load_raw_params() -> dict:
    import yaml

    return yaml.safe_load(paths.PARAMS_FILE.read_text(encoding="utf-8")) or {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("KNNLAB_DEBUG") == "1"
    try:
        if args.command == "bench":
            from knnlab.bench import main as bench_main

            return bench_main(args.bench_args)
        if args.command == "predict":
            from knnlab import predict

            return predict.main(args.model, args.inputs, args.json, args.top)
        if args.command == "report":
            _report(args.base, args.output, args.figure_url)
            return 0
        module = importlib.import_module(f"knnlab.stages.{args.command}")
        module.run(load_params(args.params))
    except (*USER_ERRORS, OSError, ValueError, TrackingError) as error:
        if debug:
            raise
        print(f"knnlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
