"""What one stage writes and a later stage reads, as small frozen records.

Each record is a frozen pydantic dataclass (strict types, unknown fields forbidden), written
as JSON by :func:`write` (sorted keys, so the files stay byte-identical across runs) and read
back by :func:`read`: a missing field, an unknown field or a value of the wrong type is an
:class:`ArtifactError` naming the file, the field and the stage that rebuilds it. Nothing
falls back to a default: a file written by an older knnlab is rebuilt, not half-read.

    DatasetInfo   data/raw/meta.json          fetch    -> split
    SplitInfo     data/split/meta.json        split    -> train, tune, evaluate, plot
    TuneSummary   reports/tune/best_params    tune     -> evaluate, plot
    ModelCard     the model file's "extra"    train    -> predict (and the MLflow model)
    Evaluation    reports/metrics.json        evaluate -> plot, ``knnlab report``
                  (and the uncommitted reports/timings/timings.json)
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from knnlab.pipeline.io import files

MODELS = ("configured", "tuned", "baseline")  # the models evaluate scores
# MLflow draws a run's metrics in one section per ``prefix/``: the configured model's test
# scores (the run's own model) under test/, the others under their name; the evaluate run
# adds paired/, approximate/ and timing/, the tune run cv/.
METRIC_SECTIONS = {"configured": "test", "tuned": "tuned", "baseline": "baseline"}


def model_name(params: dict) -> str:
    """A model's run name: "k=5 p=2 uniform brute", an approximate index's options after it
    ("k=5 p=2 uniform hnsw M=16 ef_construction=200 ef_search=32")."""
    options = " ".join(f"{name}={value}" for name, value in (params.get("index") or {}).items())
    name = "k={n_neighbors} p={p} {weights} {algorithm}".format(**params)
    return f"{name} {options}" if options else name


def metric_name(model: str, metric: str) -> str:
    """The MLflow name of a model's test metric: ``test/accuracy`` for the configured model,
    ``tuned/accuracy_ci_low`` for the tuned one."""
    return f"{METRIC_SECTIONS[model]}/{metric}"


class ArtifactError(ValueError):
    """A file passed between stages is missing a field, has an unknown one, or a wrong type."""


def _expected(cls, name: str) -> str:
    """The type field ``name`` of ``cls`` holds, as a message names it (``int``, ``list``)."""
    hint = typing.get_type_hints(cls)[name]
    options = [o for o in typing.get_args(hint) if o is not type(None)] or [hint]
    return getattr(typing.get_origin(options[0]) or options[0], "__name__", str(hint))


# The records' rules, given to pydantic: a field's value must have the field's type (no
# "9" for 9, no true for 1), an unknown field is refused, and a record never changes.
RECORD_CONFIG = ConfigDict(strict=True, extra="forbid", frozen=True)


@dataclass(config=RECORD_CONFIG)
class _Record:
    WRITTEN_BY: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<data>"):
        rebuild = f"re-run `dvc repro {cls.WRITTEN_BY}`"
        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            what = "; ".join(
                part
                for part in (
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                    f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            raise ArtifactError(f"{source}: {what} for a {cls.__name__}; {rebuild}")
        try:
            return cls(**data)
        except ValidationError as error:
            name = str(error.errors()[0]["loc"][0])
            value = data[name]
            raise ArtifactError(
                f"{source}: field {name} is {type(value).__name__} {value!r}, expected "
                f"{_expected(cls, name)}; {rebuild}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, path: Path | str):
        return cls.from_dict(files.read_json(path), path)

    def write(self, path: Path | str) -> None:
        files.write_json(path, self.to_dict())


@dataclass(config=RECORD_CONFIG)
class DatasetInfo(_Record):
    """The fetched dataset. ``class_names`` maps a label (as text) to a display name;
    ``image_shape`` is (height, width) for image data, else None."""

    WRITTEN_BY: ClassVar[str] = "fetch"

    name: str
    n_samples: int
    n_features: int
    n_classes: int
    feature_columns: list
    label_column: str
    image_shape: list | None
    class_names: dict

    def display_name(self, label) -> str:
        return self.class_names.get(str(label), str(label))


@dataclass(config=RECORD_CONFIG)
class SplitInfo(DatasetInfo):
    """The dataset as split: its :class:`DatasetInfo` and the split's own facts."""

    WRITTEN_BY: ClassVar[str] = "split"

    test_size: float
    seed: int
    n_train: int
    n_test: int

    @classmethod
    def of(cls, dataset: DatasetInfo, test_size: float, seed: int, n_train: int, n_test: int):
        return cls(
            **dataset.to_dict(), test_size=test_size, seed=seed, n_train=n_train, n_test=n_test
        )


@dataclass(config=RECORD_CONFIG)
class TuneSummary(_Record):
    """The grid search's pick: ``best_params`` (n_neighbors, p, weights, algorithm, and
    ``index`` for an approximate algorithm) by
    ``scoring`` over ``cv`` folds of the ``n_train`` training rows, chosen by the rule
    ``select`` (``best`` or ``one_se``); ``best_score`` and ``best_se`` are its mean CV score
    and that mean's standard error. ``picks`` holds both rules' candidates whichever was
    selected: ``{"best": pick, "one_se": pick}``, each pick ``{"index", "params", "score",
    "se"}`` and the one-SE pick also ``threshold`` (the best's mean minus its SE)."""

    WRITTEN_BY: ClassVar[str] = "tune"

    best_params: dict
    best_score: float
    best_se: float
    scoring: str
    select: str
    picks: dict
    cv: int
    seed: int
    scale: str
    n_candidates: int
    n_train: int
    index_seed: int  # the approximate indexes' build seed (model.seed)

    def model_params(self) -> dict[str, Any]:
        """The tuned model's constructor arguments (the scaling and the seed are not
        tuned)."""
        return {**self.best_params, "scale": self.scale, "random_state": self.index_seed}


@dataclass(config=RECORD_CONFIG)
class ModelCard(_Record):
    """Facts train keeps in the model file beside the arrays: where the data came from,
    how ``knnlab predict`` turns an image into features (``image_shape``, ``value_range``:
    the training values' smallest and largest), the test rows' mean distance to their
    neighbours at every 0.1 percentile (``test_distance_scale``, 1,001 numbers), the mean
    neighbour distance above which a query is flagged unusual (``novelty_threshold``: the
    test rows' 99th percentile) and the share of test rows the flag marks
    (``false_alarm_rate``, about 1 %); the prediction sets' promised ``coverage`` and
    ``conformal_threshold`` (a class is in a row's set when 1 - its vote is at most this),
    calibrated on the out-of-fold votes of ``calibration_rows`` training rows
    (:mod:`knnlab.conformal`)."""

    WRITTEN_BY: ClassVar[str] = "train"

    dataset: str
    feature_columns: list
    image_shape: list | None
    value_range: list
    novelty_threshold: float
    test_distance_scale: list
    false_alarm_rate: float
    coverage: float
    conformal_threshold: float
    calibration_rows: int


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Test-split scores and times of each model in :data:`MODELS`: ``metrics[model]`` maps
    a metric name to its value, ``timings[model]`` holds fit_seconds and predict_seconds.
    Written as two files: the metrics are committed and compared across revisions; the
    times differ on every run, so they are only logged and kept locally, and nothing reads
    them back."""

    metrics: dict[str, dict[str, float]]
    timings: dict[str, dict[str, float]]

    @staticmethod
    def read_metrics(metrics_path: Path | str) -> dict[str, dict[str, float]]:
        """``reports/metrics.json``: one mapping of metric name to value per model."""
        metrics = files.read_json(metrics_path)
        if not isinstance(metrics, dict) or sorted(metrics) != sorted(MODELS):
            got = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
            raise ArtifactError(
                f"{metrics_path}: expected one entry per model ({', '.join(MODELS)}), got "
                f"{got}; re-run `dvc repro evaluate`"
            )
        return metrics

    def write(self, metrics_path: Path | str, timings_path: Path | str) -> None:
        files.write_json(metrics_path, self.metrics)
        files.write_json(timings_path, self.timings)
