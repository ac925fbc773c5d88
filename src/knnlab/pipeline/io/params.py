"""``params.yaml``, loaded and validated once, strictly.

Every stage calls :func:`load_params`; an unknown key, a wrong type or an out-of-range
value raises :class:`ParamsError` naming the key, the value and what is allowed. The
resolved, frozen :class:`Params` is what stages use and what gets logged to MLflow.

The sections are pydantic dataclasses: pydantic gives the structure (nesting, unknown keys
refused, frozen instances, strict field types, ``Params.model_json_schema()``); each field's
check (below) gives the rule and knnlab's one-line message, with the allowed values taken
from :mod:`knnlab.options` and :mod:`knnlab.algorithms`. docs/pipeline.md's table of keys
is :func:`params_table`.

The file is read as DVC reads it (:func:`read_params_text`: YAML 1.2, duplicate keys
refused), so the values a stage uses are the ones ``dvc params diff`` and ``dvc exp show``
attribute its results to.
"""

from __future__ import annotations

import functools
import math
import os
import re
import reprlib
import stat
import sys
from dataclasses import MISSING, asdict, field, fields
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from knnlab.algorithms import (
    ALGORITHMS,
    APPROXIMATE_ALGORITHMS,
    BACKENDS,
    EXACT_ALGORITHMS,
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
    masked_address,
)
from knnlab.pipeline.io import paths

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


class _Excerpt(reprlib.Repr):
    """A value quoted in a message comes from a file anyone may have edited: cut in depth,
    length and digits, so a huge, deeply nested or self-referencing value still gives one
    short line (and quoting it cannot recurse without bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = 80

    def repr_int(self, x: int, level: int) -> str:
        # repr() refuses integers of more than 4300 digits (a hex literal gets there).
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_shown = _Excerpt().repr


def _fail(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key} = {_shown(value)} is not allowed; expected {allowed}")


def _int(minimum: int | None = None, maximum: int | None = None, why: str = ""):
    """An integer check; ``why`` says, after the range, what the maximum protects."""
    allowed = "an integer"
    if minimum is not None:
        allowed += f" >= {minimum}"
    if maximum is not None:
        allowed += f"{' and' if minimum is not None else ''} <= {maximum}"
    if why:
        allowed += f" ({why})"

    def check(key: str, value: Any) -> int:
        if not is_count(value):  # `n_neighbors: true` is a typo, not 1
            raise _fail(key, value, allowed)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _fail(key, value, allowed)
        return int(value)  # a numpy integer as Python's, which the field's StrictInt takes

    return check


# Upper bounds on the values that scale work, so that a typo (an extra digit or three) is
# refused at load instead of running for hours or exhausting memory.
# k beyond 100,000 has no use on data knnlab handles (mnist_784 has 70,000 rows), and every
# query keeps k distances and indices.
MAX_N_NEIGHBORS = 100_000
# make_moons' rows in memory, and a search over them, grow with n_samples (a million rows of
# two features is 16 MB, seconds for a tree search).
MAX_MOONS_SAMPLES = 1_000_000
# Each fold is a full set of searches, so time grows linearly with folds, while the CV
# estimate changes little past 10 to 20; 100 leaves room for near leave-one-out on small data.
MAX_FOLDS = 100
# Candidates of tune.grid (see _candidate_count): the default grid has 54, a thorough one a
# few hundred; every candidate is scored on every fold.
MAX_CANDIDATES = 10_000
# Bootstrap time is linear in resamples x test rows. 100,000 resamples put 2,500 draws in each
# 2.5 % tail of a 95 % interval, so the Monte Carlo error of its bounds is far below the
# sampling error they measure; more only costs time (10^9 would run for hours).
MAX_RESAMPLES = 100_000
# Row counts (data.max_rows, a split.test_size count) cannot scale work past the data, but an
# absurd one still travels into messages and MLflow; a billion rows is more than knnlab can
# hold in memory.
MAX_ROWS = 1_000_000_000
# numpy's and scikit-learn's seeds (random_state) are 32-bit unsigned.
_seed = _int(0, 2**32 - 1, "numpy's seed range")
# model.seed also seeds faiss's k-means (ivf), whose seed is a C int.
_index_seed = _int(0, 2**31 - 1, "faiss's seed range: model.seed seeds the ivf index's k-means")


def _beyond_float(value: Any) -> bool:
    """An integer no float can hold (10**400): the number checks below would raise
    OverflowError converting it."""
    return is_count(value) and abs(value) > sys.float_info.max


def _minkowski_p(key: str, value: Any) -> int | float:
    if _beyond_float(value) or not is_minkowski_p(value):
        raise _fail(key, value, "a number >= 1 (Minkowski p; .inf for Chebyshev)")
    # 2.0 and 2 are the same metric; keep integers as int so logs and file names agree.
    if is_count(value) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return float(value)


def _test_size(key: str, value: Any) -> int | float:
    """scikit-learn's ``train_test_split`` semantics: a fraction of the rows, or a count."""
    allowed = (
        "a fraction strictly between 0 and 1, or a whole number of test rows >= 1 and <= "
        f"{MAX_ROWS} (e.g. 10000)"
    )
    if is_count(value):  # `test_size: true` is a typo, not 1 row
        if not 1 <= value <= MAX_ROWS:
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
    if _beyond_float(value):
        raise _fail(key, value, allowed + " that a float can hold")
    return float(value)


# The longest a stage waits for another process (the store lock): a day. A wait says on
# stderr what it waits for; this bound keeps a typo (extra zeros) from making it endless.
MAX_WAIT_SECONDS = 86_400.0


def _positive_seconds(key: str, value: Any) -> float:
    allowed = f"a positive number of seconds, at most {MAX_WAIT_SECONDS:.0f} (a day)"
    if isinstance(value, bool) or not isinstance(value, int | float) or _beyond_float(value):
        raise _fail(key, value, allowed)
    if not (math.isfinite(value) and 0 < value <= MAX_WAIT_SECONDS):
        raise _fail(key, value, allowed)
    return float(value)


def _below_one(allowed: str, zero_allowed: bool):
    """The check of a number below 1 and at least 0 (above 0 unless ``zero_allowed``)."""

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or _beyond_float(value):
            raise _fail(key, value, allowed)
        above = value >= 0 if zero_allowed else value > 0
        if not (math.isfinite(value) and above and value < 1):
            raise _fail(key, value, allowed)
        return float(value)

    return check


_share_below_one = _below_one("a number at least 0 and below 1 (e.g. 0.1)", zero_allowed=True)
_coverage = _below_one("a coverage level strictly between 0 and 1 (e.g. 0.9)", zero_allowed=False)
_effect = _below_one(
    "a change in the metric, at least 0 and below 1 (e.g. 0.005)", zero_allowed=True
)


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
    return int(value) if is_count(value) else value


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
        # A tuple is what a section holds: dataclasses.replace gives it back to the check.
        if not isinstance(value, list | tuple) or not value:
            raise _fail(key, value, "a non-empty list")
        items = tuple(item_check(f"{key}[{i}]", item) for i, item in enumerate(value))
        if len(set(items)) != len(items):
            raise _fail(key, value, "a list without repeated values")
        return items

    return check


# A Dask scheduler's address: scheme://host:port (host a name, IPv4 or [IPv6]).
_SCHEDULER_ADDRESS = re.compile(r"(tcp|tls|ws|wss)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}")
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
            masked_address(value) if isinstance(value, str) else value,
            "a Dask scheduler address such as tcp://host:8786 (tcp, tls, ws or wss, a host "
            "and a port; no user or password: Dask authenticates with TLS certificates, "
            "tls://), or null to run on this machine",
        )
    return value


def _param(default: Any, check, description: str) -> Any:
    """A field with a default, its check (run on every value given, before pydantic's type
    check) and the description the JSON Schema and docs/pipeline.md's table show."""
    metadata = {"check": check, "description": description}
    if isinstance(default, dict):  # a mutable default: each instance gets its own
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


def _section(key: str):
    """Make a params.yaml section of the class: a frozen pydantic dataclass that refuses
    unknown keys and checks every value with its field's check; ``key`` is where it sits in
    params.yaml (``tune.grid``), so that a message names the full key. Constructing one
    directly raises :class:`ParamsError` too, with the same messages."""

    def make(cls: type) -> type:
        cls._key = key
        cls = dataclass(frozen=True, config=_CONFIG)(cls)
        validate = cls.__init__

        @functools.wraps(validate)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validate(self, *args, **kwargs)
            except ValidationError as error:
                raise _params_error(error, key) from None

        cls.__init__ = __init__
        _SECTIONS[key] = cls
        return cls

    return make


# Each section by its place in params.yaml ("" for the whole file), to name the keys it allows.
_SECTIONS: dict[str, type] = {}
# The field types are pydantic's strict ones (StrictInt: no "5", no 5.0, no true), the
# sections refuse unknown keys; config-wide strict mode would also refuse a mapping for a
# nested section.
_CONFIG = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_CONFIG)
class _Section:
    """What every section shares: the mapping check, the unknown-key check and the
    per-field checks, each raising knnlab's own one-line message."""

    _key: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, raw: Any) -> Any:
        # The whole mapping is seen before any field, so an unknown key is reported before
        # a wrong value, and a misspelt key never reads as "missing".
        if isinstance(raw, cls | ArgsKwargs):
            return raw
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise _fail(cls._key, raw, "a mapping of keys to values")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known), key=_shown)
        if unknown:
            raise _unknown_key(cls._key, unknown[0], known)
        return raw

    @field_validator("*", mode="before")
    @classmethod
    def _check(cls, value: Any, info: ValidationInfo) -> Any:
        check = cls.__dataclass_fields__[info.field_name].metadata.get("check")
        if check is None:  # a nested section: its own validators check it
            return value
        return check(f"{cls._key}.{info.field_name}" if cls._key else info.field_name, value)

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the section (of the whole file for :class:`Params`)."""
        return TypeAdapter(cls).json_schema()


def _unknown_key(section: str, name: Any, known: list[str]) -> ParamsError:
    label = name if isinstance(name, str) else _shown(name)
    where = f"{section}.{label}" if section else label
    return ParamsError(
        f"params.yaml: unknown key {_shown(where)}; allowed keys"
        f"{' in ' + section if section else ''}: {', '.join(known)}"
    )


def _params_error(error: ValidationError, section: str) -> ParamsError:
    """The first of pydantic's errors as knnlab's one-line message. The checks raise
    ParamsError themselves; pydantic's own errors name a key given to a constructor that
    the section does not have, or a value the field's type refuses."""
    first = error.errors()[0]
    raised = first.get("ctx", {}).get("error")
    if isinstance(raised, ParamsError):
        return raised
    loc = [str(part) for part in first["loc"]]
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden", "invalid_key"):
        where = ".".join(filter(None, [section, *loc[:-1]]))
        owner = _SECTIONS.get(where)
        known = [f.name for f in fields(owner)] if owner else []
        return _unknown_key(where, first["loc"][-1], known)
    key = ".".join(filter(None, [section, *loc]))
    return _fail(key, first["input"], f"a value of the key's type ({first['msg']})")


# --- sections -------------------------------------------------------------------------------


@_section("data.moons")
class MoonsParams(_Section):
    """``sklearn.datasets.make_moons`` settings, used when ``data.dataset: moons``."""

    n_samples: StrictInt = _param(
        500,
        _int(10, MAX_MOONS_SAMPLES),
        f"rows generated (10 to {MAX_MOONS_SAMPLES:,}), for `dataset: moons`",
    )
    noise: StrictFloat = _param(0.3, _nonnegative_float, "the noise of the moons")
    seed: StrictInt = _param(0, _seed, "generates the moons")


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


def _code(names: tuple[str, ...]) -> str:
    """Names as the docs show them: `a`, `b`."""
    return ", ".join(f"`{name}`" for name in names)


@_section("data")
class DataParams(_Section):
    """Where the samples come from: an embedded dataset, Fashion-MNIST's IDX files (in the
    folder ``path`` when it is not the default), OpenML, or a local CSV/parquet file.

    ``features`` keeps only those columns (iris on sepal length and width, for a surface);
    ``max_rows`` keeps a stratified sample of that many rows, drawn with ``seed``;
    ``positive_class`` names the class of a binary "is it a <class>?" analysis (plots).
    """

    dataset: StrictStr = _param(
        "digits",
        _dataset_name,
        f"{_code(EMBEDDED_DATASETS)} (embedded), {_code((FASHION_MNIST, *OPENML_DATASETS))}, "
        f"`{OPENML_PREFIX}<name>`, `{FILE_DATASET}`",
    )
    path: StrictStr = _param(
        DEFAULT_DATA_PATH,
        _data_path,
        "with `dataset: file`, a `.csv`/`.parquet` file (a dependency of `fetch`); with "
        "`fashion_mnist`, a folder of its IDX files",
    )
    label_column: StrictStr | None = _param(
        None, _optional_str, "the label column of `data.path`, with `dataset: file`"
    )
    moons: MoonsParams = field(default_factory=MoonsParams)
    features: tuple[StrictStr, ...] | None = _param(
        None,
        _optional(_list_of(_nonempty_str)),
        "a list of feature columns to keep (iris on two features)",
    )
    max_rows: StrictInt | None = _param(
        None, _optional(_int(2, MAX_ROWS)), "a stratified, seeded sample of that many rows"
    )
    seed: StrictInt = _param(0, _seed, "draws that sample")
    positive_class: StrictInt | StrictStr | None = _param(
        None, _optional_label, 'a class for the binary "is it a …?" analysis'
    )

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


@_section("split")
class SplitParams(_Section):
    """Stratified, seeded train/test split. ``test_size`` is a fraction of the rows (float)
    or the number of test rows (int), as in scikit-learn's ``train_test_split``."""

    test_size: StrictFloat | StrictInt = _param(
        0.25, _test_size, "a fraction in (0, 1) or a count of test rows ≥ 1"
    )
    seed: StrictInt = _param(42, _seed, "integer ≥ 0: the split's seed")
    # Leaks: a test row whose nearest training row (Euclidean, raw features) lies within
    # this share of the test rows' median nearest-training distance is a near duplicate
    # (0: exact duplicates only). A tenth of the typical gap: on digits (median 16.6) two
    # pixels one grey level apart are within it (1.41), no real pair is (the closest: 8.6).
    near_duplicate: StrictFloat | StrictInt = _param(
        0.1,
        _share_below_one,
        "a share in [0, 1) of the median nearest-training distance; 0: exact duplicates only",
    )
    deduplicate: StrictBool = _param(
        False, _bool, "true: move each test row with a (near) duplicate in train to the train split"
    )


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


@_section("model")
class ModelParams(_Section):
    """The configured k-nearest-neighbours classifier; ``scale`` is fitted on the training
    rows only (also inside each tuning fold). ``index`` holds the options of an approximate
    ``algorithm`` (hnsw, ivf; :data:`knnlab.search.BACKENDS`), unset ones at their defaults;
    ``seed`` seeds its build."""

    n_neighbors: StrictInt = _param(
        5,
        _int(1, MAX_N_NEIGHBORS),
        f"integer ≥ 1 and ≤ {MAX_N_NEIGHBORS:,} (and ≤ the train split)",
    )
    p: StrictInt | StrictFloat = _param(2, _minkowski_p, "number ≥ 1, `.inf` for Chebyshev")
    weights: StrictStr = _param("uniform", _choice(WEIGHTS), _code(WEIGHTS))
    algorithm: StrictStr = _param(
        "auto",
        _choice(ALGORITHMS),
        f"{_code(('auto', *EXACT_ALGORITHMS))} (exact); {_code(APPROXIMATE_ALGORITHMS)} "
        "(approximate, p = 2, the `ann` extra; [approximate.md](approximate.md))",
    )
    scale: StrictStr = _param(
        "none",
        _choice(SCALINGS),
        f"{_code(SCALINGS)} (fitted on training rows only, per fold when tuning)",
    )
    index: dict[str, Any] = _param(
        {},
        _option_mapping,
        "the options of an approximate `model.algorithm`, below; null: its default; an "
        "option of another algorithm is an error",
    )
    seed: StrictInt = _param(0, _index_seed, "integer ≥ 0: seeds an approximate index's build")

    def __post_init__(self) -> None:
        _check_index("model", self.algorithm, self.index, self.p)


@_section("tune.grid")
class GridParams(_Section):
    """The hyper-parameter grid: every combination is one candidate."""

    n_neighbors: tuple[StrictInt, ...] = _param(
        tuple(range(2, 19, 2)),
        _list_of(_int(1, MAX_N_NEIGHBORS)),
        "a non-empty list of `model.n_neighbors` values",
    )
    p: tuple[StrictInt | StrictFloat, ...] = _param(
        (1, 2, 3), _list_of(_minkowski_p), "a non-empty list of `model.p` values"
    )
    weights: tuple[StrictStr, ...] = _param(
        WEIGHTS, _list_of(_choice(WEIGHTS)), "a non-empty list of `model.weights` values"
    )
    algorithm: tuple[StrictStr, ...] = _param(
        ("brute",),
        _list_of(_choice(ALGORITHMS)),
        "a non-empty list of `model.algorithm` values; an approximate one is tried at p = 2 only",
    )
    index: dict[str, Any] = _param(
        {},
        _option_mapping,
        "`tune.grid.index.<option>`: a list of values of an approximate algorithm's option "
        "in the grid; null: not varied",
    )

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
            if not isinstance(values, list | tuple) or not values:
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
        count = _candidate_count(self)
        if count > MAX_CANDIDATES:
            raise ParamsError(
                f"params.yaml: tune.grid has {count} candidates (every combination of its "
                f"lists, per algorithm); at most {MAX_CANDIDATES} are allowed: shorten "
                "tune.grid's lists"
            )
        for algorithm in approximate:
            if not backend_available(algorithm):
                raise ParamsError(
                    "params.yaml: " + missing_backend_message(algorithm, "tune.grid.algorithm")
                )


def _candidate_count(grid: GridParams) -> int:
    """How many candidates :func:`knnlab.model_selection.candidate_list` makes of ``grid``,
    counted without importing it (scikit-learn) or listing them: every combination per exact
    algorithm; an approximate one's at p = 2 only, times the combinations of its own index
    lists."""
    count = 0
    for algorithm in grid.algorithm:
        if is_approximate(algorithm):
            combinations = math.prod(
                len(grid.index[name]) for name in BACKENDS[algorithm].options if name in grid.index
            )
            count += len(grid.n_neighbors) * len(grid.weights) * (2 in grid.p) * combinations
        else:
            count += len(grid.n_neighbors) * len(grid.p) * len(grid.weights)
    return count


@_section("tune")
class TuneParams(_Section):
    """Cross-validated grid search on the train split.

    ``select`` is the rule that picks the tuned model: ``best``, the highest mean CV score
    (what scikit-learn's ``GridSearchCV`` refits), or ``one_se``, the largest k whose mean
    is within one standard error of the best (Breiman et al. 1984; Hastie, Tibshirani &
    Friedman, ESL 7.10). Both picks are recorded either way.
    """

    grid: GridParams = field(default_factory=GridParams)
    cv: StrictInt = _param(
        5, _int(2, MAX_FOLDS), f"folds: ≥ 2 and ≤ the smallest class (at most {MAX_FOLDS})"
    )
    scoring: StrictStr = _param("accuracy", _choice(SCORERS), _code(SCORERS))
    seed: StrictInt = _param(0, _seed, "shuffles the folds")
    # `best` by default: it is scikit-learn's choice and keeps existing runs' tuned models.
    # `one_se` prefers the smoothest model the CV cannot tell from the best, but its SE comes
    # from a handful of overlapping folds and is itself rough (Bengio & Grandvalet 2004), so
    # it is an opt-in.
    select: StrictStr = _param(
        "best",
        _choice(SELECTIONS),
        "`best` (highest mean CV score) or `one_se` (largest k within one SE of the best); "
        "[statistics.md](statistics.md#tuning-that-knows-its-noise-tuneselect)",
    )


@_section("conformal")
class ConformalParams(_Section):
    """Prediction sets of the configured model (train keeps their threshold in the model
    file, evaluate measures them): each set holds the true class of about ``coverage`` of
    rows like the training data. Calibrated on out-of-fold votes of the train split, never
    on test rows (:mod:`knnlab.conformal`)."""

    coverage: StrictFloat = _param(
        0.9, _coverage, "in (0, 1): share of rows whose prediction set holds the true class"
    )


@_section("stats")
class StatsParams(_Section):
    """Intervals and paired tests on the test split (evaluate, ``knnlab report --base``):
    ``resamples`` stratified bootstrap resamples of the test rows drawn with ``seed``;
    intervals at ``confidence``, and a difference is significant at 1 - ``confidence``."""

    confidence: StrictFloat = _param(
        0.95, _confidence, "in (0.5, 1): of every interval; significance at 1 - confidence"
    )
    # Percentile intervals need their tails resolved: 2000 resamples put 50 in each 2.5 %
    # tail; fewer than 200 would leave the bounds to a handful of draws.
    resamples: StrictInt = _param(
        2000,
        _int(200, MAX_RESAMPLES),
        f"stratified bootstrap resamples of the test rows (200 to {MAX_RESAMPLES:,})",
    )
    seed: StrictInt = _param(0, _seed, "the bootstrap's seed (evaluate, `knnlab report --base`)")


@_section("review.min_effect")
class MinEffectParams(_Section):
    """The smallest change in a headline metric worth a reviewer's attention, per kind of
    metric: a change that is significant but smaller (the point estimate, in absolute value)
    is reported as "significant but negligible", never as better or worse, and does not fail
    the gate. ``rates`` (accuracy, precision, recall, F1: shares of rows): half a percentage
    point, two test rows of digits' 450, fifty of Fashion-MNIST's 10,000, about what a user
    of a classifier could notice. ``roc_auc`` ranks pairs of rows and sits within 0.01 of 1
    for these models, where the test split resolves changes of 0.0001 that reorder a few
    pairs: 0.001, a tenth of that gap."""

    rates: StrictFloat = _param(
        0.005, _effect, "accuracy, precision, recall, F1: the smallest change that matters"
    )
    roc_auc: StrictFloat = _param(0.001, _effect, "ROC-AUC: the smallest change that matters")

    def by_metric(self, metrics: tuple[str, ...]) -> dict[str, float]:
        """{metric: its smallest change that matters} for the headline ``metrics``."""
        return {m: self.roc_auc if m.startswith("roc_auc") else self.rates for m in metrics}


@_section("review")
class ReviewParams(_Section):
    """How ``knnlab report --base`` judges a change, and its gate (``--fail-on worse``):
    read when the report runs, a dependency of no stage. ``min_effect``:
    :class:`MinEffectParams`."""

    min_effect: MinEffectParams = field(default_factory=MinEffectParams)


@_section("mlflow")
class MlflowParams(_Section):
    """Where runs are logged. ``tracking_uri: null`` means ``sqlite:///<repo>/mlflow.db``;
    ``required: false`` lets stages complete (with a warning) when the store is down;
    ``lock_timeout`` is how long a stage waits for another process's write to a SQLite store
    before giving up (``KNNLAB_LOCK_TIMEOUT`` in the environment overrides it)."""

    experiment: StrictStr = _param(
        "knnlab", _nonempty_str, "the MLflow experiment; not a dependency of any stage"
    )
    tracking_uri: StrictStr | None = _param(
        None,
        _optional_str,
        "null: `sqlite:///<repository root>/mlflow.db` (`MLFLOW_TRACKING_URI` overrides); not a "
        "dependency of any stage",
    )
    required: StrictBool = _param(
        True,
        _bool,
        "`false`: a stage whose store is unreachable warns and completes; not a dependency "
        "of any stage",
    )
    lock_timeout: StrictFloat = _param(
        600.0,
        _positive_seconds,
        "seconds to wait for the SQLite store's lock (`KNNLAB_LOCK_TIMEOUT` overrides)",
    )


@_section("compute")
class ComputeParams(_Section):
    """Where searches run. ``scheduler``: a Dask scheduler's address (``tcp://host:8786``):
    tune sends its (fold, p) searches to its workers; null runs on this machine (and never
    imports Dask). ``DASK_SCHEDULER_ADDRESS`` in the environment overrides it. Results are
    bit-identical either way, so, like ``mlflow.*``, no stage depends on it."""

    scheduler: StrictStr | None = _param(
        None,
        _scheduler_address,
        "a Dask scheduler, `tcp://host:port` (also `tls`, `ws`, `wss`): `tune`'s (fold, p) "
        "searches run on its workers, with bit-identical results, so not a dependency of any "
        "stage; `DASK_SCHEDULER_ADDRESS` overrides; [distributed.md](distributed.md)",
    )

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


@_section("")
class Params(_Section):
    """The whole of params.yaml, every default filled in."""

    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    conformal: ConformalParams = field(default_factory=ConformalParams)
    tune: TuneParams = field(default_factory=TuneParams)
    stats: StatsParams = field(default_factory=StatsParams)
    review: ReviewParams = field(default_factory=ReviewParams)
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


_PARAMS = TypeAdapter(Params)


def parse_params(raw: Any) -> Params:
    """Validate an already-parsed params mapping (as read from YAML)."""
    try:
        return _PARAMS.validate_python(raw)
    except ValidationError as error:
        raise _params_error(error, "") from None


# --- the table of docs/pipeline.md ----------------------------------------------------------

PARAMS_TABLE_HEADER = ("| key | default | allowed |", "|---|---|---|")


def params_table() -> str:
    """The table of every params.yaml key in docs/pipeline.md, one row per key: its default
    and what it allows, from the fields' descriptions (``model.index``'s options from
    :data:`knnlab.algorithms.BACKENDS`). tools/params_table.py writes it into the page."""
    rows = [f"| `{key}` | {default} | {text} |" for key, default, text in _table_rows(Params)]
    return "\n".join([*PARAMS_TABLE_HEADER, *rows]) + "\n"


def _table_rows(cls: type):
    """(key, default, description) of every field of section ``cls``, nested ones in place."""
    for f in fields(cls):
        key = f"{cls._key}.{f.name}" if cls._key else f.name
        if "check" not in f.metadata:  # a nested section
            yield from _table_rows(f.default_factory)
            continue
        default = f.default_factory() if f.default is MISSING else f.default
        yield key, _markdown(default), f.metadata["description"]
        if cls is ModelParams and f.name == "index":
            for algorithm in APPROXIMATE_ALGORITHMS:
                for name, option in BACKENDS[algorithm].options.items():
                    built_in = "" if option.default is None else f" ({option.default})"
                    yield (
                        f"{key}.{name}",
                        f"`null`{built_in}",
                        f"{algorithm}: {option.help}; an integer ≥ {option.minimum} and ≤ "
                        f"{option.maximum}, or null for the default",
                    )


def _markdown(value: Any) -> str:
    """A default as the table shows it: YAML's spelling, strings as code."""
    if value is None or isinstance(value, bool):
        return f"`{str(value).lower() if value is not None else 'null'}`"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ", ".join(_markdown(item) for item in value)
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return str(value)


def read_params_text(text: str, source: str) -> dict[str, Any]:
    """The mapping in the text of a params file, read exactly as DVC reads ``params.yaml``
    (``dvc.utils.serialize.parse_yaml``: ruamel.yaml's safe loader, YAML 1.2), so that a
    stage trains with the values ``dvc params diff`` and ``dvc exp show`` record: ``010`` is
    10, ``1:30`` and ``yes`` are strings, and a key given twice in one mapping (a second
    ``model:`` section too) is refused. An empty file is ``{}``, as for DVC. Not validated
    (:func:`parse_params` does that).

    source : how messages name the file (``params.yaml``, ``params.yaml at revision 'main'``).
    Raises :class:`ParamsError`: one line naming the line and column of a fault, never a
    traceback, however deep or malformed the text.
    """
    from ruamel.yaml import YAML  # imported here: ~90 ms that only file-reading commands pay
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    try:
        raw = YAML(typ="safe").load(text)
    except DuplicateKeyError as error:
        raise ParamsError(_duplicate_key_message(text, error, source)) from None
    except YAMLError as error:
        raise ParamsError(
            f"{source}: not valid YAML{_yaml_error_place(text, error)}: {_yaml_problem(error)}"
        ) from None
    except RecursionError:
        # The composer recurses once per level of nesting; Python's stack bounds it.
        raise ParamsError(
            f"{source}: nested too deeply to read (hundreds of levels of lists or mappings); "
            "params.yaml needs a few: section, key, list"
        ) from None
    except (ValueError, TypeError, KeyError, AssertionError, OverflowError) as error:
        # The constructor's own conversions (a date 2001-13-45, !!int x, !!bool maybe,
        # an integer of more than 4300 digits) raise these rather than a YAMLError.
        raise ParamsError(
            f"{source}: not valid YAML: a value cannot be converted ({_one_line(error)}); "
            "write it as a plain number or string"
        ) from None
    raw = raw or {}  # DVC's own reading: an empty file (or a bare null) is no params at all
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping of sections (data:, model:, ...) at the top, "
            f"found {_shown(raw)}"
        )
    return raw


def _yaml_error_place(text: str, error: Exception) -> str:
    """`` at line L, column C`` of a YAML error, or '' when it has no place."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is not None:
        return f" at line {mark.line + 1}, column {mark.column + 1}"
    position = getattr(error, "position", None)  # a ReaderError: an index into the text
    if isinstance(position, int):
        before = text[:position]
        line = before.count("\n") + 1
        column = position - before.rfind("\n")  # rfind gives -1 on the first line
        return f" at line {line}, column {column}"
    return ""


def _yaml_problem(error: Exception) -> str:
    """What a YAML error says went wrong (with its context: "expected a single document in
    the stream; but found another document"), as one short, printable line."""
    problem = getattr(error, "problem", None) or getattr(error, "reason", None)
    if problem is None:
        return _one_line(error)
    context = getattr(error, "context", None)
    character = getattr(error, "character", None)
    if isinstance(character, int):  # a ReaderError: the code point it refused
        problem = f"{problem} (character U+{character:04X})"
    return _cut(f"{context}; {problem}" if context else str(problem))


def _cut(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(error: Exception) -> str:
    """``error``'s type and the first line of its message, cut short."""
    lines = str(error).strip().splitlines()
    # int()'s limit message advises a Python setting, which is no fix for a params file.
    first = lines[0].partition("; use sys.set_int_max_str_digits")[0] if lines else ""
    return _cut(f"{type(error).__name__}: {first}" if first else type(error).__name__)


def _duplicate_key_message(text: str, error: Exception, source: str) -> str:
    """One line naming a key given twice in one mapping and the lines of both."""
    second = error.problem_mark
    found = _first_occurrence(text, error.context_mark.index, second.index)
    if found is None:
        return f"{source}: a key appears twice in one mapping (line {second.line + 1}); keep one"
    key, first_line = found
    return (
        f"{source}: key {_shown(key)} appears twice (lines {first_line} and "
        f"{second.line + 1}); keep one"
    )


def _first_occurrence(text: str, mapping_at: int, second_at: int) -> tuple[str, int] | None:
    """(dotted key, line of its first occurrence) of the duplicate key whose second
    occurrence starts at index ``second_at`` of ``text``, in the mapping that starts at
    ``mapping_at``; None if the node graph does not show it."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import MappingNode

    try:
        root = YAML(typ="safe").compose(text)
    except (YAMLError, RecursionError):
        return None
    constructor = YAML(typ="safe").constructor
    for node, path in _nodes(root, constructor):
        if not isinstance(node, MappingNode) or node.start_mark.index != mapping_at:
            continue
        keys = [k for k, _ in node.value]
        second = next((k for k in keys if k.start_mark.index == second_at), None)
        if second is None:
            continue
        wanted = _key_of(constructor, second)
        first = next((k for k in keys if _key_of(constructor, k) == wanted), second)
        label = wanted if isinstance(wanted, str) else _shown(wanted)
        return (f"{path}.{label}" if path else label), first.start_mark.line + 1
    return None


def _key_of(constructor, node) -> Any:
    """The Python value of a mapping's key node, as the loader constructs it (``010`` and
    ``10`` are the same key)."""
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import ScalarNode

    try:
        return constructor.construct_object(node, deep=True)
    except (YAMLError, ValueError, TypeError, KeyError, AssertionError, RecursionError):
        # The merge key `<<` has no constructor of its own.
        return node.value if isinstance(node, ScalarNode) else (node.tag, node.start_mark)


def _nodes(root, constructor):
    """Every node under ``root`` with its dotted path (``model.index``, ``x[1]``), walked
    with an explicit stack, each node once: nesting may be deep and anchors may make the
    graph cyclic."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    stack, seen = [(root, "")], set()
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node, path
        if isinstance(node, MappingNode):
            for k, v in node.value:
                key = _key_of(constructor, k) if isinstance(k, ScalarNode) else None
                label = key if isinstance(key, str) else _shown(key)
                stack.append((v, f"{path}.{label}" if path else label))
        elif isinstance(node, SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def load_params(path: Path | str = paths.PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except UnicodeDecodeError as error:
        raise ParamsError(
            f"{path}: not UTF-8 text (byte {error.start} cannot be decoded); save it as UTF-8"
        ) from None
    except OSError as error:
        raise ParamsError(
            f"{path}: cannot be read ({error.strerror or type(error).__name__}); "
            "params.yaml must be a readable file"
        ) from None
    return parse_params(read_params_text(text, str(path)))
