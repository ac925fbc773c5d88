"""``params.yaml``, loaded and validated once, strictly.

Every stage calls :func:`load_params`; an unknown key, a wrong type or an out-of-range
value raises :class:`ParamsError` naming the key, the value and what is allowed. The
resolved, frozen :class:`Params` is what stages use and what gets logged to MLflow.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from knnlab.algorithms import (
    ALGORITHMS,
    BACKENDS,
    backend_available,
    index_option_problems,
    is_approximate,
    missing_backend_message,
)
from knnlab.options import (
    SCALINGS,
    SCORERS,
    SELECTIONS,
    WEIGHTS,
    is_count,
    is_minkowski_p,
)
from knnlab.pipeline import paths

EMBEDDED_DATASETS = ("digits", "iris", "moons")
# Read from its IDX files (data.path, data/input, Debian's dataset-fashion-mnist), else OpenML.
FASHION_MNIST = "fashion_mnist"
FILE_DATASET = "file"
OPENML_DATASETS = ("mnist_784",)  # by bare name; any other OpenML name as "openml:<name>"
OPENML_PREFIX = "openml:"
# data.path when no table or folder is chosen. DVC needs a real path for fetch's dependency on
# the table (dvc.yaml interpolates ${data.path}, which cannot be null): this folder holds only a
# README, or the Fashion-MNIST IDX files.
DEFAULT_DATA_PATH = "data/input"


class ParamsError(ValueError):
    """A value in params.yaml is missing, unknown, of the wrong type or out of range."""


# --- field checks -------------------------------------------------------------------------
# Each check takes (key, value) and returns the normalised value or raises ParamsError.


def _fail(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key} = {value!r} is not allowed; expected {allowed}")


def _int(minimum: int | None = None):
    def check(key: str, value: Any) -> int:
        allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        if not is_count(value):  # `n_neighbors: true` is a typo, not 1
            raise _fail(key, value, allowed)
        if minimum is not None and value < minimum:
            raise _fail(key, value, allowed)
        return value

    return check


def _minkowski_p(key: str, value: Any) -> int | float:
    if not is_minkowski_p(value):
        raise _fail(key, value, "a number >= 1 (Minkowski p; .inf for Chebyshev)")
    # 2.0 and 2 are the same metric; keep integers as int so logs and file names agree.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _test_size(key: str, value: Any) -> int | float:
    """scikit-learn's ``train_test_split`` semantics: a fraction of the rows, or a count."""
    allowed = (
        "a fraction strictly between 0 and 1, or a whole number of test rows >= 1 (e.g. 10000)"
    )
    if is_count(value):  # `test_size: true` is a typo, not 1 row
        if value < 1:
            raise _fail(key, value, allowed)
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, allowed)
    # A float >= 1 is refused, not taken as a count: 1.0 reads as "all of it", 2.5 is no count.
    if not 0 < value < 1:
        raise _fail(key, value, allowed)
    return float(value)


def _nonnegative_float(key: str, value: Any) -> float:
    allowed = "a number >= 0"
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise _fail(key, value, allowed)
    return float(value)


def _positive_seconds(key: str, value: Any) -> float:
    allowed = "a positive, finite number of seconds"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, allowed)
    if not (math.isfinite(value) and value > 0):
        raise _fail(key, value, allowed)
    return float(value)


def _confidence(key: str, value: Any) -> float:
    allowed = "a confidence level strictly between 0.5 and 1 (e.g. 0.95)"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, allowed)
    if not 0.5 < value < 1:
        raise _fail(key, value, allowed)
    return float(value)


def _choice(options: tuple[str, ...]):
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _fail(key, value, "one of " + ", ".join(options))
        return value

    return check


def _optional_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, value, "a non-empty string or null")
    return value


def _optional(check):
    def optional(key: str, value: Any):
        return None if value is None else check(key, value)

    return optional


def _optional_label(key: str, value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise _fail(key, value, "a class label (an integer or a string) or null")
    return value


# An OpenML dataset name also names its cache file, data/cache/openml/<name>.parquet: no
# separator, no "..", no leading "." (OpenML names such as BNG(breast-w) use parentheses).
_OPENML_NAME = re.compile(r"[A-Za-z0-9_\-.()]+")


def _dataset_name(key: str, value: Any) -> str:
    names = (*EMBEDDED_DATASETS, FASHION_MNIST, *OPENML_DATASETS, FILE_DATASET)
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, str) and value.startswith(OPENML_PREFIX):
        name = value.removeprefix(OPENML_PREFIX)
        if _OPENML_NAME.fullmatch(name) and not name.startswith(".") and ".." not in name:
            return value
        raise _fail(
            key,
            value,
            "openml:<name> with an OpenML dataset name: letters, digits, _, -, . and ( ), not "
            "starting with '.' and without '..' (it names a file in data/cache/openml)",
        )
    raise _fail(key, value, f"one of {', '.join(names)}, or openml:<name> for any OpenML dataset")


def _data_path(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(
            key,
            value,
            "a path (the table of data.dataset: file, the folder of fashion_mnist's IDX "
            f"files, else the default {DEFAULT_DATA_PATH}; not null: dvc.yaml makes it a "
            "dependency of fetch)",
        )
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "true or false")
    return value


def _nonempty_str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, value, "a non-empty string")
    return value


def _list_of(item_check):
    def check(key: str, value: Any) -> tuple:
        if not isinstance(value, list) or not value:
            raise _fail(key, value, "a non-empty list")
        items = tuple(item_check(f"{key}[{i}]", item) for i, item in enumerate(value))
        if len(set(items)) != len(items):
            raise _fail(key, value, "a list without repeated values")
        return items

    return check


# A Dask scheduler's address: scheme://host:port (host a name, IPv4 or [IPv6]).
_SCHEDULER_ADDRESS = re.compile(
    r"(tcp|tls|ws|wss|ucx)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}"
)
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def _scheduler_address(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not _SCHEDULER_ADDRESS.fullmatch(value)
        or not 0 < int(value.rpartition(":")[2]) < 65536
    ):
        raise _fail(
            key,
            value,
            "a Dask scheduler address such as tcp://host:8786 (tcp, tls, ws, wss or ucx, a "
            "host and a port), or null to run on this machine",
        )
    return value


def _param(default: Any, check) -> Any:
    """A dataclass field with a default and a validating check stored in its metadata."""
    return field(default=default, metadata={"check": check})


# --- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoonsParams:
    """``sklearn.datasets.make_moons`` settings, used when ``data.dataset: moons``."""

    n_samples: int = _param(500, _int(10))
    noise: float = _param(0.3, _nonnegative_float)
    seed: int = _param(0, _int(0))


def _check_not_special(path: str) -> None:
    """Refuse a folder, fifo, socket or device at ``data.path`` (``stat`` never blocks; a
    fifo would block whatever reads it, DVC hashing it included). A missing or unreadable
    file is left for fetch to report."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe, socket or device"
        raise _fail("data.path", path, f"a .csv or .parquet file, not {kind}")


def _check_folder(path: str) -> None:
    """Refuse anything but a folder at ``data.path`` for Fashion-MNIST (a fifo would block DVC
    hashing it, as above). A missing folder is left for fetch, which lists what it needs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISDIR(mode):
        raise _fail(
            "data.path",
            path,
            f"with data.dataset: {FASHION_MNIST}, a folder holding the four Fashion-MNIST IDX "
            f"files (or the default {DEFAULT_DATA_PATH})",
        )


@dataclass(frozen=True)
class DataParams:
    """Where the samples come from: an embedded dataset, Fashion-MNIST's IDX files (in the
    folder ``path`` when it is not the default), OpenML, or a local CSV/parquet file.

    ``features`` keeps only those columns (iris on sepal length and width, for a surface);
    ``max_rows`` keeps a stratified sample of that many rows, drawn with ``seed``;
    ``positive_class`` names the class of a binary "is it a <class>?" analysis (plots).
    """

    dataset: str = _param("digits", _dataset_name)
    path: str = _param(DEFAULT_DATA_PATH, _data_path)
    label_column: str | None = _param(None, _optional_str)
    moons: MoonsParams = field(default_factory=MoonsParams)
    features: tuple[str, ...] | None = _param(None, _optional(_list_of(_nonempty_str)))
    max_rows: int | None = _param(None, _optional(_int(2)))
    seed: int = _param(0, _int(0))
    positive_class: int | str | None = _param(None, _optional_label)

    def __post_init__(self) -> None:
        if self.dataset == FILE_DATASET:
            if self.path == DEFAULT_DATA_PATH or self.label_column is None:
                raise ParamsError(
                    "params.yaml: data.dataset = 'file' needs data.path (a .csv or .parquet "
                    "file) and data.label_column (the column holding the labels)"
                )
            if Path(self.path).suffix.lower() not in (".csv", ".parquet"):
                raise _fail("data.path", self.path, "a path ending in .csv or .parquet")
            _check_not_special(self.path)
        elif self.label_column is not None:
            raise ParamsError(
                f"params.yaml: data.label_column = {self.label_column!r} is only used with "
                f"data.dataset: file, but data.dataset = {self.dataset!r}; set it to null or "
                "set data.dataset: file"
            )
        if self.dataset == FASHION_MNIST and self.path != DEFAULT_DATA_PATH:
            _check_folder(self.path)


@dataclass(frozen=True)
class SplitParams:
    """Stratified, seeded train/test split. ``test_size`` is a fraction of the rows (float)
    or the number of test rows (int), as in scikit-learn's ``train_test_split``."""

    test_size: float | int = _param(0.25, _test_size)
    seed: int = _param(42, _int(0))


def _option_mapping(key: str, value: Any) -> dict[str, Any]:
    """``model.index``: a mapping of option names to values (which options belong to which
    algorithm, and their ranges, is checked with the algorithm: :func:`_check_index`)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        raise _fail(key, value, "a mapping of index options, e.g. {ef_search: 32}, or {}")
    return dict(value)


def _check_index(section: str, algorithm: str, options: dict, p: Any) -> None:
    """The index options of ``algorithm`` (and its p) as search.py's registry allows them;
    section: where they sit in params.yaml (``model``)."""
    problems = index_option_problems(algorithm, options, p)
    if problems:
        key, message = problems[0]
        raise ParamsError(f"params.yaml: {section}.{key} {message}")
    if is_approximate(algorithm) and not backend_available(algorithm):
        raise ParamsError(
            "params.yaml: " + missing_backend_message(algorithm, f"{section}.algorithm")
        )


@dataclass(frozen=True)
class ModelParams:
    """The configured k-nearest-neighbours classifier; ``scale`` is fitted on the training
    rows only (also inside each tuning fold). ``index`` holds the options of an approximate
    ``algorithm`` (hnsw, ivf; :data:`knnlab.search.BACKENDS`), unset ones at their defaults;
    ``seed`` seeds its build."""

    n_neighbors: int = _param(5, _int(1))
    p: int | float = _param(2, _minkowski_p)
    weights: str = _param("uniform", _choice(WEIGHTS))
    algorithm: str = _param("auto", _choice(ALGORITHMS))
    scale: str = _param("none", _choice(SCALINGS))
    index: dict[str, Any] = field(default_factory=dict, metadata={"check": _option_mapping})
    seed: int = _param(0, _int(0))

    def __post_init__(self) -> None:
        _check_index("model", self.algorithm, self.index, self.p)


@dataclass(frozen=True)
class GridParams:
    """The hyper-parameter grid: every combination is one candidate."""

    n_neighbors: tuple[int, ...] = _param(tuple(range(2, 19, 2)), _list_of(_int(1)))
    p: tuple[int | float, ...] = _param((1, 2, 3), _list_of(_minkowski_p))
    weights: tuple[str, ...] = _param(WEIGHTS, _list_of(_choice(WEIGHTS)))
    algorithm: tuple[str, ...] = _param(("brute",), _list_of(_choice(ALGORITHMS)))
    index: dict[str, tuple] = field(default_factory=dict, metadata={"check": _option_mapping})

    def __post_init__(self) -> None:
        """Each list in ``index`` belongs to an approximate algorithm of the grid; those
        algorithms need p = 2 among the grid's p (they are tried at p = 2 only)."""
        approximate = [a for a in self.algorithm if is_approximate(a)]
        known = {name for backend in BACKENDS.values() for name in backend.options}
        # null: not varied (params.yaml lists every option, null by default)
        object.__setattr__(
            self,
            "index",
            {n: v for n, v in self.index.items() if not (v is None and n in known)},
        )
        for name, values in self.index.items():
            key = f"tune.grid.index.{name}"
            owners = [a for a in approximate if name in BACKENDS[a].options]
            if not owners:
                raise _fail(
                    key,
                    values,
                    "an option of an approximate algorithm in tune.grid.algorithm ("
                    + "; ".join(
                        f"{a}: {', '.join(BACKENDS[a].options)}"
                        for a in BACKENDS
                        if BACKENDS[a].options
                    )
                    + ")",
                )
            if not isinstance(values, list) or not values:
                raise _fail(key, values, "a non-empty list of values")
            for owner in owners:
                for i, value in enumerate(values):
                    for _, message in index_option_problems(owner, {name: value}):
                        raise ParamsError(f"params.yaml: {key}[{i}] {message}")
            if len(set(values)) != len(values):
                raise _fail(key, values, "a list without repeated values")
            object.__setattr__(self, "index", {**self.index, name: tuple(values)})
        if approximate and 2 not in self.p:
            raise _fail(
                "tune.grid.p",
                list(self.p),
                f"a list that includes 2: {', '.join(approximate)} in tune.grid.algorithm "
                "search Euclidean distance (p = 2) only",
            )
        for algorithm in approximate:
            if not backend_available(algorithm):
                raise ParamsError(
                    "params.yaml: " + missing_backend_message(algorithm, "tune.grid.algorithm")
                )


@dataclass(frozen=True)
class TuneParams:
    """Cross-validated grid search on the train split.

    ``select`` is the rule that picks the tuned model: ``best``, the highest mean CV score
    (what scikit-learn's ``GridSearchCV`` refits), or ``one_se``, the largest k whose mean
    is within one standard error of the best (Breiman et al. 1984; Hastie, Tibshirani &
    Friedman, ESL 7.10). Both picks are recorded either way.
    """

    grid: GridParams = field(default_factory=GridParams)
    cv: int = _param(5, _int(2))
    scoring: str = _param("accuracy", _choice(SCORERS))
    seed: int = _param(0, _int(0))
    # `best` by default: it is scikit-learn's choice and keeps existing runs' tuned models.
    # `one_se` prefers the smoothest model the CV cannot tell from the best, but its SE comes
    # from a handful of overlapping folds and is itself rough (Bengio & Grandvalet 2004), so
    # it is an opt-in.
    select: str = _param("best", _choice(SELECTIONS))


@dataclass(frozen=True)
class StatsParams:
    """Intervals and paired tests on the test split (evaluate, ``knnlab report --base``):
    ``resamples`` stratified bootstrap resamples of the test rows drawn with ``seed``;
    intervals at ``confidence``, and a difference is significant at 1 - ``confidence``."""

    confidence: float = _param(0.95, _confidence)
    # Percentile intervals need their tails resolved: 2000 resamples put 50 in each 2.5 %
    # tail; fewer than 200 would leave the bounds to a handful of draws.
    resamples: int = _param(2000, _int(200))
    seed: int = _param(0, _int(0))


@dataclass(frozen=True)
class MlflowParams:
    """Where runs are logged. ``tracking_uri: null`` means ``sqlite:///<repo>/mlflow.db``;
    ``required: false`` lets stages complete (with a warning) when the store is down;
    ``lock_timeout`` is how long a stage waits for another process's write to a SQLite store
    before giving up (``KNNLAB_LOCK_TIMEOUT`` in the environment overrides it)."""

    experiment: str = _param("knnlab", _nonempty_str)
    tracking_uri: str | None = _param(None, _optional_str)
    required: bool = _param(True, _bool)
    lock_timeout: float = _param(600.0, _positive_seconds)


@dataclass(frozen=True)
class ComputeParams:
    """Where searches run. ``scheduler``: a Dask scheduler's address (``tcp://host:8786``):
    tune sends its (fold, p) searches to its workers; null runs on this machine (and never
    imports Dask). ``DASK_SCHEDULER_ADDRESS`` in the environment overrides it. Results are
    bit-identical either way, so, like ``mlflow.*``, no stage depends on it."""

    scheduler: str | None = _param(None, _scheduler_address)

    def resolved_scheduler(self) -> str | None:
        """The address to use: ``DASK_SCHEDULER_ADDRESS`` when set (and not empty), else
        ``scheduler``; checked the same way."""
        from_env = os.environ.get(SCHEDULER_ENV, "").strip()
        if from_env:
            try:
                return _scheduler_address(SCHEDULER_ENV, from_env)
            except ParamsError as error:
                message = str(error).replace("params.yaml: ", "environment: ", 1)
                raise ParamsError(message) from None
        return self.scheduler


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    tune: TuneParams = field(default_factory=TuneParams)
    stats: StatsParams = field(default_factory=StatsParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)
    compute: ComputeParams = field(default_factory=ComputeParams)

    def to_dict(self) -> dict[str, Any]:
        """Every value, defaults filled in, as plain YAML/JSON types (tuples as lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))


def _build(cls: type, raw: Any, prefix: str):
    """Build dataclass ``cls`` from mapping ``raw``, checking every key under ``prefix``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(prefix, raw, "a mapping of keys to values")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ParamsError(
            f"params.yaml: unknown key {where!r}; allowed keys"
            f"{' in ' + prefix if prefix else ''}: {', '.join(known)}"
        )
    values = {}
    for name, f in known.items():
        key = f"{prefix}.{name}" if prefix else name
        if "check" in f.metadata:
            if name in raw:
                values[name] = f.metadata["check"](key, raw[name])
        else:  # a nested section
            nested_cls = f.default_factory if f.default_factory is not MISSING else None
            values[name] = _build(nested_cls, raw.get(name), key)
    return cls(**values)


def parse_params(raw: Any) -> Params:
    """Validate an already-parsed params mapping (as read from YAML)."""
    return _build(Params, raw, "")


def load_params(path: Path | str = paths.PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML{at}: {problem}") from None
    return parse_params(raw)
