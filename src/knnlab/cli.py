"""``knnlab`` / ``python -m knnlab``: the pipeline stages and the tools around them.

Usage::

    knnlab {fetch,split,train,tune,evaluate,plot} [--params params.yaml]
    knnlab params [--stamp]                        validate params.yaml, print it resolved
    knnlab predict [--model FILE] [--json] INPUT...  label images, .npy or CSV rows
    knnlab report [--base REV] [--output FILE]     the reviewer's report, with a diff
    knnlab serve MODEL_URI [--host H] [--port P]   serve a logged model over HTTP
    knnlab server --data DIR [--port P]            a shared MLflow server on PostgreSQL

Bad input ends the command with one line on stderr naming what is wrong and exit code 2;
``--debug`` (or ``KNNLAB_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import logging
import os
import signal
import sys
import textwrap

from knnlab.pipeline.io import files, paths
from knnlab.tracking.errors import TrackingError

DESCRIPTION = (
    "Tracked, reproducible k-nearest-neighbour experiments: the pipeline stages and tools."
)
# One line each, for ``knnlab -h``. Static: building the parser must not import the stages
# (and with them numba, matplotlib, scikit-learn and MLflow).
STAGES = {
    "fetch": "the configured dataset -> data/raw",
    "split": "data/raw -> a stratified, seeded train/test split in data/split",
    "train": "fit the configured model on the train split -> models/model.npz",
    "audit": "suspicious labels, kNN-Shapley values of the training rows -> reports/audit",
    "exact": "exact neighbours of the test rows, for approximate models -> data/neighbours",
    "tune": "cross-validated grid search on the train split -> reports/tune, MLflow runs",
    "evaluate": "score configured, tuned and baseline models on the test split -> reports/",
    "plot": "figures, DVC plot data and reports/report.md",
}
# What each stage reads and writes, for ``knnlab <stage> --help`` (dvc.yaml declares the same).
STAGE_FILES = {
    "fetch": (
        "params.yaml data.*; the data.path table or IDX folder when data.dataset needs one",
        "data/raw/dataset.parquet, data/raw/meta.json",
    ),
    "split": (
        "data/raw; split.*",
        "data/split/train.parquet, test.parquet, meta.json, leaks.json (test rows with a "
        "(near) duplicate in train)",
    ),
    "train": (
        "data/split; model.*, conformal.coverage",
        "models/model.npz (arrays and JSON, no pickle; the prediction sets' threshold), "
        "models/out_of_fold.parquet (the model's out-of-fold votes on the train split)",
    ),
    "audit": (
        "data/split, models/model.npz, models/out_of_fold.parquet",
        "reports/audit/audit.json, suspicious_labels.csv, shapley.csv (the test split's "
        "labels value the training rows; nothing here feeds a model)",
    ),
    "exact": (
        "data/split; model.scale, tune.grid.n_neighbors",
        "data/neighbours/test_exact.npz (exact distances and indices, p = 2; not committed)",
    ),
    "tune": (
        "data/split/train.parquet only (never the test split); tune.*, model.scale",
        "reports/tune/cv_results.csv, reports/tune/best_params.json; an MLflow run with "
        "one nested run per candidate; search times in that run and reports/timings/ (not "
        "committed)",
    ),
    "evaluate": (
        "data/split, data/neighbours, models/model.npz, reports/tune/best_params.json, "
        "reports/audit; stats.*",
        "reports/metrics.json, reports/vs_exact.json, reports/uncertainty.json, "
        "reports/conformal.json (the prediction sets' coverage), "
        "reports/plots/predictions.csv; "
        "one MLflow run with the model, tagged with a digest of these files; fit and "
        "predict seconds in that run and reports/timings/ (not committed)",
    ),
    "plot": (
        "data/split, models/model.npz, evaluate's and tune's outputs; data.positive_class; "
        "the MLflow run evaluate logged these outputs in",
        "reports/figures/*.png, reports/plots/*.csv, reports/report.md; figures and "
        "report added to the evaluate run",
    ),
}
# A stage is dispatched through this module's top-level imports only
# (tests/pipeline/test_dvc_deps.py relies on it): the imports inside functions serve the
# other commands.
# Errors that mean "the input or the environment is wrong", reported as one line rather than
# a traceback: ParamsError, DataError and ModelFileError are ValueErrors.
USER_ERRORS = (ValueError, OSError, TrackingError)
# Exit codes of a command stopped by a signal, as a shell reports them (128 + the signal).
INTERRUPTED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C's KeyboardInterrupt: a stage stops
    the same way (its run marked KILLED, its staging folder removed, its outputs kept)."""

    signal = signal.SIGTERM


# The signals this process received, in order: a library may turn the KeyboardInterrupt
# raised inside its native code into an error of its own (matplotlib's C++ code gives
# "ValueError: Invalid affine transformation matrix"), and the command must still report it
# as the interrupt it was.
SIGNALS_RECEIVED: list[int] = []


def _raise_interrupted(signum, frame) -> None:
    SIGNALS_RECEIVED.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _interrupted(command: str, received: signal.Signals) -> int:
    print(
        f"knnlab {command}: interrupted ({received.name}); stopped before finishing, "
        "so the outputs of its last complete run are kept",
        file=sys.stderr,
    )
    return INTERRUPTED_EXIT[received]


# Characters knnlab prints that a non-UTF-8 terminal (a Latin-1 or C locale,
# PYTHONIOENCODING=latin-1) cannot show, and what it shows instead. Encoding must never fail
# a stage: its messages are printed after its outputs are in place.
_ASCII_FALLBACKS = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u2014": "--",
    "\u00d7": "x",
    "\u00b1": "+/-",
    "\u2265": ">=",
    "\u2264": "<=",
    "\u2192": "->",
    "\u2026": "...",
    "\u25b2": "^",
    "\u25bc": "v",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2020": "+",
}


def _ascii_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    shown = error.object[error.start : error.end]
    return "".join(_ASCII_FALLBACKS.get(c, "?") for c in shown), error.end


codecs.register_error("knnlab-fallback", _ascii_fallback)


def safe_streams() -> None:
    """Make stdout and stderr write what their encoding cannot show as its nearest ASCII
    (``\u2212`` as ``-``) or ``?``, instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="knnlab-fallback")


def quiet_library_tracebacks() -> None:
    """MLflow logs a store's SQL error with its full traceback before raising it, and its
    progress (INFO lines, download bars) on stderr: the raised error becomes this command's
    one line, and ``--debug`` shows the rest. The environment's own settings win."""
    logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: not record.exc_info)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class OneLineParser(argparse.ArgumentParser):
    """Command-line mistakes as one line, like every other error (the usage is one
    ``--help`` away), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    """--port: a TCP port, 1 to 65535 (argparse reports the error with the usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="knnlab", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    params_help = (
        f"the parameters file, validated whole before the stage starts "
        f"(default: {paths.PARAMS_FILE})"
    )
    for stage, summary in STAGES.items():
        reads, writes = STAGE_FILES[stage]
        sub = commands.add_parser(
            stage,
            help=summary,
            description=f"{summary}\n\n{_labelled('reads:  ', reads)}\n"
            f"{_labelled('writes: ', writes)}\n\n"
            "Usually run by `dvc repro`, which runs it only when what it reads changed.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)
    check = commands.add_parser(
        "params",
        help="validate params.yaml and print it with every default filled in",
        description="Validate params.yaml (unknown keys, types, ranges) and print the resolved "
        "values. With --stamp, also write the file the DVC 'params' stage outputs, so every "
        "`dvc repro` target checks the whole file first.",
    )
    check.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)
    check.add_argument(
        "--stamp", action="store_true", help=f"write {paths.PARAMS_STAMP} instead of printing"
    )
    report = commands.add_parser(
        "report",
        help="print reports/report.md, with --base a diff",
        description="Print reports/report.md (or write it to --output). With --base, first "
        "the change in params and metrics against a git revision, each metric change tested "
        "for significance (paired row by row when both revisions scored the same test "
        "split, unpaired otherwise) and marked better or worse only when it is also at "
        "least review.min_effect; revisions on another dataset or label set are not "
        "compared. Exit status: 0, 1 when --fail-on worse finds a worse metric, 2 on error.",
    )
    report.add_argument(
        "--base",
        help="git revision to compare against (e.g. main); changes within noise are marked so",
    )
    report.add_argument("--output", help="write here instead of standard output")
    report.add_argument(
        "--figure-url",
        help="prefix for figure links instead of the relative 'figures/' (e.g. a raw-file "
        "URL of the reports/ folder, for a pull-request comment)",
    )
    report.add_argument(
        "--fail-on",
        choices=["worse"],
        help="with --base: exit 1, after writing the report, when a headline metric of the "
        "configured model (accuracy, F1, ROC-AUC) is significantly and materially worse "
        "(review.min_effect) than at the base; revisions that are not comparable never fail",
    )
    predict = commands.add_parser(
        "predict",
        help="label new inputs with a saved model",
        description="Label new inputs with a saved model: images (made grey, transparency on "
        "white, resized to the model's image shape), .npy arrays or CSV rows. Each line gives "
        "the label, the top class probabilities and, for inputs far from every training row, "
        "an UNUSUAL flag.",
    )
    predict.add_argument(
        "--model",
        help=f"a knnlab model file (default: {paths.MODEL_FILE} at the root of the repository "
        "holding the working directory, found by its dvc.yaml)",
    )
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.add_argument(
        "--top", type=_at_least_one, default=3, help="class probabilities to show (default: 3)"
    )
    predict.add_argument("inputs", nargs="+", help="images, .npy, .csv, or - (CSV on stdin)")
    serve = commands.add_parser(
        "serve",
        help="serve a logged model over HTTP with MLflow's scoring server",
        description="Serve a model an evaluate run logged with MLflow's own scoring server "
        "(POST /invocations, GET /ping, /health, /version), as `mlflow models serve "
        "--env-manager local` does, after checking it is knnlab's own model. Needs no "
        "activated environment. The store: MLFLOW_TRACKING_URI, else mlflow.tracking_uri in "
        "--params, else mlflow.db at the repository root.",
    )
    serve.add_argument("model_uri", help="runs:/<run_id>/model, models:/<model_id> or a folder")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=port_number, default=5000, help="port (default: %(default)s)")
    serve.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)
    serve.add_argument(
        "--max-body-mib",
        type=_at_least_one,
        default=16,
        help="largest request body in MiB; a larger one gets HTTP 413 before it is read "
        "(default: %(default)s)",
    )
    _add_server(commands)
    _add_store_views(commands, params_help)
    return parser


def _add_store_views(commands, params_help: str) -> None:
    store = (
        "The store: MLFLOW_TRACKING_URI, else mlflow.tracking_uri in --params, else mlflow.db "
        "at the repository root; the experiment: mlflow.experiment."
    )
    listing = commands.add_parser(
        "runs",
        help="list the latest evaluate runs: model, accuracy with interval, model URI",
        description="List the latest evaluate runs, newest first: run id, start, dataset, "
        "k, p, weights, algorithm, test accuracy with its interval, and the model URI that "
        f"`knnlab serve` and `mlflow models serve -m` take. {store}",
    )
    listing.add_argument(
        "-n", "--limit", type=_at_least_one, default=10, help="runs to list (default: 10)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    listing.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)
    ui = commands.add_parser(
        "ui",
        help="MLflow's UI on the project's store, opened on the runs",
        description="Run `mlflow ui` on the project's store in the foreground and print the "
        "link to the experiment's runs (MLflow 3's own start page is its GenAI overview). "
        f"On a tracking server, only print the link. Ctrl-C stops it. {store}",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    ui.add_argument("--port", type=port_number, default=5000, help="port (default: %(default)s)")
    ui.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)
    relog = commands.add_parser(
        "relog",
        help="log the current outputs again to the current store, without recomputing",
        description="Log the outputs in place (tune's, evaluate's with the model, plot's "
        "figures and report) to the current MLflow store as the stages log them, without "
        "recomputing: for a clone pointed at a new store, whose `dvc repro` is up to date "
        "and logs nothing. Refused unless `dvc status` is up to date; a stage whose run the "
        "store has already is skipped. The evaluate run registers its model, champion only "
        f"by the paired test against the store's champion. {store}",
    )
    relog.add_argument("--params", default=str(paths.PARAMS_FILE), help=params_help)


def _add_server(commands) -> None:
    server = commands.add_parser(
        "server",
        help="run a shared MLflow tracking server on PostgreSQL, with proxied artifacts",
        description="Run a shared MLflow tracking server in the foreground: runs in a "
        "PostgreSQL cluster in DIR/postgres (created on first use, reused after), artifacts "
        "uploaded and downloaded through the server into DIR/artifacts. PostgreSQL is "
        "Debian's (installed with apt-get when missing and run as root; as root it runs as "
        "the postgres user) and listens on 127.0.0.1 only, with passwords kept in DIR/pgpass. "
        "Point the pipeline at it with MLFLOW_TRACKING_URI=http://HOST:PORT. Ctrl-C or "
        "SIGTERM stops both. See docs/team-server.md.",
    )
    server.add_argument(
        "--data",
        metavar="DIR",
        help="folder for the database, the artifacts and the passwords (created if missing; "
        "required unless --check)",
    )
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the MLflow server listens on; any other than loopback is reachable by "
        "others without authentication, and warned about (default: %(default)s)",
    )
    server.add_argument(
        "--port", type=port_number, default=5000, help="MLflow's port (default: %(default)s)"
    )
    server.add_argument(
        "--pg-port",
        type=lambda text: 0 if text.strip() == "0" else port_number(text),
        default=0,
        help="PostgreSQL's port on 127.0.0.1 (default: 0, a free port picked at each start)",
    )
    server.add_argument(
        "--workers",
        type=_at_least_one,
        default=2,
        help="MLflow server worker processes (default: %(default)s)",
    )
    server.add_argument(
        "--check",
        action="store_true",
        help="only find PostgreSQL (installing it when root with apt-get) and its driver, "
        "then exit",
    )


def _labelled(label: str, text: str) -> str:
    return textwrap.fill(text, 79, initial_indent=label, subsequent_indent=" " * len(label))


def _at_least_one(text: str) -> int:
    """--top: a whole number >= 1 (argparse reports the error with the usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def default_model_file() -> str:
    """models/model.npz of the repository holding the working directory, wherever in it
    the command runs; outside any repository, a message saying where it looked."""
    root = paths.repository_root()
    model = root / paths.MODEL_FILE
    if model.is_file():
        return str(model)
    if not (root / "dvc.yaml").is_file():
        raise FileNotFoundError(
            f"no model given and no knnlab repository here: no dvc.yaml in {root} or its "
            "parents; pass --model FILE, or run inside the repository"
        )
    raise FileNotFoundError(
        f"no model at {model} (the repository root holding the working directory); run "
        "`dvc repro train` there first, or pass --model FILE"
    )


def _report(
    base: str | None, output: str | None, figure_url: str | None, fail_on: str | None = None
) -> int:
    """The report, with ``--base`` the diff section; returns the exit status: 1 when
    ``fail_on`` ("worse") finds a headline metric significantly and materially worse."""

    text = paths.REPORT_FILE.read_text(encoding="utf-8")
    failures: list[str] = []
    not_comparable: list[str] = []
    if base is not None:
        section, failures, not_comparable = _diff_section(base)
        title, _, rest = text.partition("\n")
        text = title + "\n\n" + "\n".join(section) + "\n" + rest
    if figure_url is not None:
        text = text.replace("](figures/", f"]({figure_url.rstrip('/')}/figures/")
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        files.write_text(output, text)
    if fail_on is None:
        return 0
    if not_comparable:
        print(
            f"knnlab report: not judged: {base} is not comparable ({'; '.join(not_comparable)})",
            file=sys.stderr,
        )
    for failure in failures:
        print(f"knnlab report: fail: {failure}", file=sys.stderr)
    if not failures and not not_comparable:
        print(f"knnlab report: pass: no headline metric is worse than at {base}", file=sys.stderr)
    return 1 if failures else 0


def _diff_section(base: str) -> tuple[list[str], list[str], list[str]]:
    """The report's section comparing the working tree with revision ``base``, the gate's
    failures (configured headline metrics significantly and materially worse) and why the
    two are not comparable ([] when they are)."""
    from knnlab.pipeline.analysis import significance
    from knnlab.pipeline.io.params import load_params
    from knnlab.pipeline.presentation import report

    params = load_params()  # the current revision's confidence, resamples and min_effect
    settings = params.stats
    min_effect = params.review.min_effect.by_metric(tuple(dict(report.HEADLINE)))
    tracked = {
        "params": paths.PARAMS_FILE,
        "metrics": paths.METRICS_FILE,
        "uncertainty": paths.UNCERTAINTY_FILE,
        "predictions": paths.PREDICTIONS_PLOT,
    }
    current = report.revision_state(
        report.CURRENT,
        {
            name: path.read_text(encoding="utf-8") if path.exists() else None
            for name, path in tracked.items()
        },
    )
    base_state = report.revision_state(
        base, report.read_revision(base, {k: v.as_posix() for k, v in tracked.items()})
    )
    for state in (current, base_state):
        _redact_tracking_uri(state["params"])
    diff = report.diff_against(base_state, current)
    reasons = report.comparability(base_state, current)
    if reasons:
        values = report.metric_values(base_state, current)
        return report.diff_section(diff, None, min_effect, reasons, values), [], reasons
    if not report.pairable(base_state, current):
        base_state["predictions"] = current["predictions"] = None
    comparison = significance.compare_revisions(
        base_state, current, settings.confidence, settings.resamples, settings.seed
    )
    section = report.diff_section(diff, comparison, min_effect)
    return section, report.gate_failures(comparison, min_effect), []


def _redact_tracking_uri(params: dict) -> None:
    """Hide any credential in ``mlflow.tracking_uri`` of a params mapping before printing."""
    from knnlab.tracking.store import redact_uri

    section = params.get("mlflow")
    if isinstance(section, dict) and isinstance(section.get("tracking_uri"), str):
        section["tracking_uri"] = redact_uri(section["tracking_uri"])


def _params(params_file: str, stamp: bool) -> None:
    import yaml

    from knnlab.pipeline.io.params import load_params

    params = load_params(params_file)
    if stamp:
        files.write_text(paths.PARAMS_STAMP, STAMP_TEXT)
    else:
        shown = params.to_dict()
        _redact_tracking_uri(shown)
        sys.stdout.write(yaml.safe_dump(shown, sort_keys=False))


def _mlflow_config(params_file: str):
    """The mlflow section of ``params_file`` (the experiment's name); its defaults when
    MLFLOW_TRACKING_URI names the store and there is no such file (outside a clone)."""
    from pathlib import Path

    from knnlab.pipeline.io.params import MlflowParams, load_params

    if os.environ.get("MLFLOW_TRACKING_URI") and not Path(params_file).exists():
        return MlflowParams()
    return load_params(params_file).mlflow


def _serve(model_uri: str, host: str, port: int, params_file: str, max_body_mib: int) -> None:
    from knnlab.pipeline.io.params import MlflowParams, load_params
    from knnlab.tracking import serving
    from knnlab.tracking.store import resolve_tracking_uri

    if os.environ.get("MLFLOW_TRACKING_URI"):
        config = MlflowParams()  # the environment's store comes first: no params.yaml needed
    else:
        config = load_params(params_file).mlflow
    serving.serve(resolve_tracking_uri(config), model_uri, host, port, max_body_mib * 2**20)


def _runs(limit: int, as_json: bool, params_file: str) -> int:
    import json

    from knnlab.tracking import listing
    from knnlab.tracking.runs import store_errors
    from knnlab.tracking.store import resolve_tracking_uri

    config = _mlflow_config(params_file)
    uri = resolve_tracking_uri(config)
    with store_errors(uri):
        rows = listing.latest_evaluate_runs(uri, config.experiment, limit)
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    else:
        sys.stdout.write(listing.format_runs(rows, config.experiment, uri) + "\n")
    return 0


def _ui(host: str, port: int, params_file: str) -> int:
    from knnlab.tracking import listing
    from knnlab.tracking.runs import store_errors
    from knnlab.tracking.store import resolve_tracking_uri

    config = _mlflow_config(params_file)
    uri = resolve_tracking_uri(config)
    with store_errors(uri):
        return listing.run_ui(uri, config.experiment, host, port)


def _server(args: argparse.Namespace) -> int:
    from pathlib import Path

    from knnlab.tracking import server

    if args.check:
        server.check()
        return 0
    if not args.data:
        raise ValueError("--data DIR is required: the folder the server keeps its data in")
    return server.serve(Path(args.data), args.host, args.port, args.pg_port, args.workers)


STAMP_TEXT = (
    "params.yaml passed validation. Written by `knnlab params --stamp` (the DVC stage "
    "'params'); fetch depends on this file so that every `dvc repro` target checks the whole "
    "of params.yaml first. Its content never changes, so it re-runs nothing.\n"
)


def _predict(model_path: str, sources: list[str], as_json: bool, top: int) -> int:
    from knnlab.pipeline.analysis.prediction import SavedModel, format_results, predict_rows
    from knnlab.pipeline.io.inputs import read_inputs
    from knnlab.pipeline.io.model_io import read_model

    header, arrays = read_model(model_path)
    extra = header["extra"]
    model = SavedModel(header, arrays)
    X, names = read_inputs(
        sources,
        model.n_features_in_,
        extra.get("image_shape"),
        extra.get("value_range", [0.0, 1.0]),
    )
    results = predict_rows(model, X, names, extra, top)
    sys.stdout.write(
        format_results(results, as_json, extra.get("false_alarm_rate"), extra.get("coverage"))
    )
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from knnlab.pipeline.io.params import load_params

    if args.command == "predict":
        model = args.model if args.model is not None else default_model_file()
        return _predict(model, args.inputs, args.json, args.top)
    if args.command == "report":
        if args.fail_on is not None and args.base is None:
            raise ValueError("--fail-on needs --base: the revision to judge the change against")
        return _report(args.base, args.output, args.figure_url, args.fail_on)
    if args.command == "params":
        _params(args.params, args.stamp)
        return 0
    if args.command == "serve":
        _serve(args.model_uri, args.host, args.port, args.params, args.max_body_mib)
        return 0
    if args.command == "server":
        return _server(args)
    if args.command == "runs":
        return _runs(args.limit, args.json, args.params)
    if args.command == "ui":
        return _ui(args.host, args.port, args.params)
    from knnlab.progress import Progress  # says nothing a stage's outputs depend on

    params = load_params(args.params)  # the whole file, before the stage's imports
    module = importlib.import_module(f"knnlab.stages.{args.command}")
    # A line at least every 10 s in a log; the stage's long steps say more (done/total).
    with Progress(1, args.command):
        module.run(params)
    return 0


def main(argv: list[str] | None = None) -> int:
    safe_streams()
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("KNNLAB_DEBUG") == "1"
    if not debug and args.command != "server":  # the server's own log is MLflow's
        quiet_library_tracebacks()
    if args.command not in ("serve", "server", "ui"):  # those stop their servers themselves
        signal.signal(signal.SIGTERM, _raise_interrupted)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored
            signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return _dispatch(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        return _interrupted(args.command, getattr(interrupt, "signal", signal.SIGINT))
    except Exception as error:
        if debug:
            raise
        # The interrupt, as a library's own error of any kind (see SIGNALS_RECEIVED): a numba
        # kernel stopped mid-search raises SystemError, matplotlib's native code ValueError.
        if SIGNALS_RECEIVED:
            return _interrupted(args.command, signal.Signals(SIGNALS_RECEIVED[0]))
        if missing := _missing_pipeline_package(error):
            print(
                f"knnlab {args.command}: error: this command needs knnlab's pipeline extra "
                f"(DVC, MLflow, matplotlib...), and {missing!r} is not installed; install it "
                "with: pip install 'knnlab[pipeline]' (`make repro` does)",
                file=sys.stderr,
            )
            return 2
        if not isinstance(error, (*USER_ERRORS, RecursionError)):
            raise
        if isinstance(error, RecursionError):
            error = "an input is nested too deeply to read"
        print(f"knnlab {args.command}: error: {error}", file=sys.stderr)
        return 2


# The top-level modules of the pipeline extra (pyproject.toml): the library and a served
# model run without them; the pipeline's commands say which extra to install.
PIPELINE_MODULES = frozenset({"dvc", "mlflow", "matplotlib", "pyarrow", "PIL", "yaml", "ruamel"})


def _missing_pipeline_package(error: BaseException) -> str | None:
    """The pipeline-only module whose absence raised ``error``, or None."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.partition(".")[0]
    return top if top in PIPELINE_MODULES else None


# Commands whose process may skip Python's teardown: after a search, tearing down numba's and
# LLVM's modules takes about 0.4 s, a quarter of `knnlab predict` on one image. predict
# writes nothing but its output (flushed first) and starts no process, so nothing is lost.
FAST_EXIT_COMMANDS = ("predict",)


def run() -> None:
    """The ``knnlab`` program and ``python -m knnlab``: :func:`main`, then exit with its
    code."""
    argv = sys.argv[1:]
    code = main(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    # An interrupted command has closed its runs and removed its staging folder already; it
    # ends here, so that no teardown (library exit hooks, joins of worker threads) can turn
    # the exit into a death by the signal (exit -2 instead of 130, seen once in a loaded run).
    if command in FAST_EXIT_COMMANDS or code in INTERRUPTED_EXIT.values():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
