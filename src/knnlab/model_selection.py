"""Cross-validated grid search over k, p, weights and algorithm that searches once.

scikit-learn's ``GridSearchCV`` refits and re-searches for every candidate. For kNN one
search per (fold, p) at the grid's largest k already holds every smaller k's neighbours, in
order, and both weightings need only the distances, so every candidate is scored exactly
from that one search. The exact algorithms return the same neighbours (same tie rule), so
among them the algorithm only changes time: each is still fitted and searched once per
(fold, p) so its cost is recorded in ``mean_fit_time`` / ``mean_score_time``. An
approximate algorithm (hnsw, ivf) changes the neighbours: each fold builds its index once
per set of build options and searches it once per set of search options, its candidates are
scored on their own neighbours, and the table records their recall@k against the exact
ones and the distances computed per query (:func:`candidate_list` says which candidates a
grid holds).

Two rules pick a candidate from the table: ``"best"``, the highest mean CV score (what
``GridSearchCV`` refits), and ``"one_se"``, the largest k whose mean is within one standard
error of the best (:func:`one_standard_error_index`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import ParameterGrid, StratifiedKFold

from knnlab import algorithms, distributed, metrics, search
from knnlab._kernels import KIND_GENERAL, KIND_INF, power_kind
from knnlab.estimators import KNNClassifier
from knnlab.neighbors import cross_fold_kneighbors
from knnlab.options import GRID_KEYS, SCORERS, SELECTIONS, check_choice, fit_scaling
from knnlab.progress import Progress
from knnlab.voting import class_probabilities


@dataclass
class GridSearchResult:
    """What :func:`grid_search_cv` found; each parameter is kept as the attribute of its
    name.

    Parameters
    ----------
    cv_results : DataFrame of shape (n_candidates, n_columns)
        One row per candidate in ``ParameterGrid`` order, with scikit-learn's
        ``cv_results_`` columns (``params``, ``param_*``, ``split{i}_test_{scorer}``,
        ``mean/std/rank_test_{scorer}``, ``mean/std_fit_time``, ``mean/std_score_time``)
        and ``sem_test_{scorer}`` after each ``std_test_{scorer}``: the standard error of
        the mean over folds, the sample std of the fold scores (ddof=1) over sqrt(cv);
        ``std_test_*`` keeps scikit-learn's ddof=0. Fit and score times of a candidate are
        those of the one search it shares with every candidate of the same (fold, p,
        algorithm).
    search_timings : DataFrame
        One row per (fold, p, algorithm): ``fit_seconds``, ``search_seconds``,
        ``n_train``, ``n_queries``.
    best_params : dict
        The parameters of the candidate ``select`` picked (by ``rank_by``).
    best_score : float
        Its mean CV ``rank_by`` score.
    best_index : int
        Its row in ``cv_results``.
    rank_by : str
        The scorer both rules rank by.
    best_estimator : KNNClassifier or None
        The picked candidate fitted on all of X, when ``refit`` asked for it.
    select : {"best", "one_se"}, default "best"
        The rule that picked the candidate.
    picks : dict of str to dict
        Both rules' candidates, whichever was selected: ``picks["best"]`` and
        ``picks["one_se"]`` each hold ``index``, ``params``, ``score`` (mean CV score) and
        ``se`` (its standard error), as plain Python values; ``picks["one_se"]`` also holds
        ``threshold`` (the best mean minus the best's SE).
    """

    cv_results: pd.DataFrame
    search_timings: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float
    best_index: int
    rank_by: str
    best_estimator: KNNClassifier | None
    select: str = "best"
    picks: dict[str, dict[str, Any]] = field(default_factory=dict)


def _score(scorer: str, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """One scorer on encoded labels y_true (m,) and proba (m, n_classes)."""
    if scorer == "roc_auc_ovr":
        if classes.size == 2:
            return metrics.roc_auc_score(y_true, proba[:, 1], pos_label=1)
        return metrics.roc_auc_score(y_true, proba, labels=np.arange(classes.size))
    y_pred = np.argmax(proba, axis=1)  # ties to the smallest class, as predict does
    if scorer == "accuracy":
        return metrics.accuracy_score(y_true, y_pred)
    return metrics.f1_score(y_true, y_pred, average="macro", labels=np.arange(classes.size))


@dataclass(frozen=True)
class _FoldTask:
    """One (fold, p) search: the fold's rows (labels encoded 0..n_classes-1), the grid's
    engines at this p (see :func:`_engine`), weightings and sorted ks, and the threads each
    search may use. ``precomputed``: this fold's share of the cross-fold p = 2 search and
    its seconds; ``seed``: the approximate indexes' build seed."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    p: float
    engines: tuple[tuple[str, tuple], ...]
    weightings: tuple[str, ...]
    ks: tuple[int, ...]
    n_classes: int
    scoring: tuple[str, ...]
    threads: int | None
    scale: str
    precomputed: tuple | None = None
    seed: int = 0


EXACT = ("exact", ())  # the scores every exact algorithm shares


def _engine(candidate: Mapping[str, Any]) -> tuple[str, tuple]:
    """What answers a candidate's queries: (algorithm, its index options as sorted pairs)."""
    return candidate["algorithm"], tuple(sorted(candidate.get("index", {}).items()))


def _score_key(candidate: Mapping[str, Any]) -> tuple[str, tuple]:
    """Whose neighbours score a candidate: the exact algorithms all return the same."""
    return EXACT if not algorithms.is_approximate(candidate["algorithm"]) else _engine(candidate)


def _search_and_score(task: _FoldTask):
    """One (fold, p) task: one search per exact algorithm at the largest k, every
    (weights, k) scored from the first one's neighbours (they all return the same); one
    index per approximate algorithm and build options, searched once per set of search
    options (:meth:`knnlab.backends._faiss.FaissIndex.kneighbors_each`), each scored on its
    own neighbours and measured against the exact ones (recall@k).

    Returns ({(engine, weights, k): {scorer: value}}, [(engine, fit_s, search_s, resolved)],
    {(engine, k): recall}, {(engine, k): distances computed per query}); exact engines score
    under :data:`EXACT`.
    """
    k_max = task.ks[-1]
    neighbours = None
    times = []
    exact = [e for e in task.engines if not algorithms.is_approximate(e[0])]
    approximate = [e for e in task.engines if algorithms.is_approximate(e[0])]
    for engine in exact:
        algorithm = engine[0]
        if algorithm == "brute" and task.precomputed is not None:
            found, seconds = task.precomputed  # this fold's share of the cross-fold search
            times.append((engine, 0.0, seconds, "brute"))
            neighbours = neighbours or found
            continue
        start = time.perf_counter()
        model = KNNClassifier(
            k_max, p=task.p, algorithm=algorithm, scale=task.scale, n_jobs=task.threads
        )
        model.fit(task.X_train, task.y_train)
        fitted = time.perf_counter()
        found = model.kneighbors(task.X_valid)  # (n_valid, k_max) distances and indices
        searched = time.perf_counter()
        times.append((engine, fitted - start, searched - fitted, model.algorithm_))
        neighbours = neighbours or found
    if approximate and neighbours is None:  # the reference for recall
        neighbours = (
            KNNClassifier(k_max, p=task.p, scale=task.scale, n_jobs=task.threads)
            .fit(task.X_train, task.y_train)
            .kneighbors(task.X_valid)
        )
    scores, recalls, work = {}, {}, {}
    if exact:
        distances, indices = neighbours
        _score_into(scores, EXACT, task, {k: (distances[:, :k], indices[:, :k]) for k in task.ks})
        for engine in exact:
            for k in task.ks:
                work[engine, k] = float(len(task.X_train))  # a full scan's, per query
    for seconds, found, counted in _approximate_searches(task, approximate):
        engine = seconds[0]
        times.append(seconds)
        _score_into(scores, engine, task, found)
        for k, (_, approx_indices) in found.items():
            work[engine, k] = counted[k] / len(task.X_valid)
            recalls[engine, k] = metrics.recall_at_k(approx_indices, neighbours[1][:, :k])
    return scores, times, recalls, work


def _score_into(scores: dict, engine, task: _FoldTask, found: dict) -> None:
    """scores[(engine, weights, k)] from found = {k: (distances, indices)}, each (n_valid, k)."""
    classes = np.arange(task.n_classes)
    for weights in task.weightings:
        for k, (distances, indices) in found.items():
            (proba,) = class_probabilities(
                distances, task.y_train[indices], task.n_classes, weights, [k]
            )
            scores[engine, weights, k] = {
                s: _score(s, task.y_valid, proba, classes) for s in task.scoring
            }


def _approximate_searches(task: _FoldTask, engines: list):
    """Per approximate engine: (timing row, {k: neighbours}, distances computed). One
    index per (algorithm, build options), fitted on the fold's (scaled) training rows."""
    centre, factor = fit_scaling(task.X_train, task.scale)
    X_train, X_valid = task.X_train, task.X_valid
    if task.scale != "none":  # the estimator's own transform, operation for operation
        X_train, X_valid = (X_train - centre) / factor, (X_valid - centre) / factor
    builds: dict[tuple, list] = {}
    for engine in engines:
        algorithm, options = engine
        spec = algorithms.BACKENDS[algorithm].options
        build_options = tuple((n, v) for n, v in options if spec[n].acts_at == "build")
        builds.setdefault((algorithm, build_options), []).append(engine)
    for (algorithm, _), group in builds.items():
        start = time.perf_counter()
        index = search.build_index(
            algorithm,
            X_train,
            p=float(task.p),
            options=dict(group[0][1]),
            seed=task.seed,
            n_jobs=task.threads,
        )
        build_seconds = time.perf_counter() - start
        for engine in group:
            searcher = index.with_search_options(
                algorithms.index_options(algorithm, dict(engine[1]))
            )
            start = time.perf_counter()
            found = searcher.kneighbors_each(X_valid, task.ks)
            seconds = time.perf_counter() - start
            yield (engine, build_seconds, seconds, algorithm), found, searcher.distances_by_k


def _check_grid(grid: Mapping[str, Sequence]) -> dict[str, Any]:
    """The grid with every key (defaults filled in) and ``index``: {option: values}."""
    unknown = sorted(set(grid) - {*GRID_KEYS, "index"})
    if unknown:
        raise ValueError(f"unknown grid key {unknown[0]!r}; allowed: {', '.join(GRID_KEYS)}, index")
    checked: dict[str, Any] = {}
    for key in GRID_KEYS:
        values = list(grid.get(key, [KNNClassifier().get_params()[key]]))
        if not values:
            raise ValueError(f"grid {key!r} is an empty list; give at least one value")
        checked[key] = values
    checked["index"] = {
        name: list(values) for name, values in dict(grid.get("index") or {}).items()
    }
    approximate = [a for a in checked["algorithm"] if algorithms.is_approximate(a)]
    for name, values in checked["index"].items():
        owners = [a for a in approximate if name in algorithms.BACKENDS[a].options]
        if not owners or not values:
            raise ValueError(
                f"grid index option {name!r} must be a non-empty list of values of an "
                f"approximate algorithm in the grid ({', '.join(approximate) or 'none'})"
            )
        for owner in owners:
            for value in values:
                algorithms.index_options(owner, {name: value})  # raises on a bad value
    if approximate and 2 not in checked["p"]:
        raise ValueError(f"{', '.join(approximate)} search at p = 2 only; the grid's p has no 2")
    return checked


def candidate_list(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every candidate of a checked grid, in scikit-learn's ``ParameterGrid`` order per
    algorithm.

    Parameters
    ----------
    grid : mapping
        A checked grid: a list of values for each of ``n_neighbors``, ``p``, ``weights``
        and ``algorithm``, and ``index``: {option: list of values}.

    Returns
    -------
    list of dict
        One parameter dict per candidate. An approximate algorithm's candidates are at
        p = 2 only, one per combination of its options in ``grid["index"]``, each with
        ``index``: {option: value} (exact candidates have no ``index``).
    """
    plain = {key: grid[key] for key in GRID_KEYS}
    candidates = []
    for algorithm in grid["algorithm"]:
        if not algorithms.is_approximate(algorithm):
            candidates += list(ParameterGrid({**plain, "algorithm": [algorithm]}))
            continue
        own = [name for name in algorithms.BACKENDS[algorithm].options if name in grid["index"]]
        p2 = [p for p in grid["p"] if p == 2]
        for values in itertools.product(*(grid["index"][name] for name in own)):
            options = dict(zip(own, values, strict=True))
            for candidate in ParameterGrid({**plain, "algorithm": [algorithm], "p": p2}):
                candidates.append({**candidate, "index": options})
    return candidates


def grid_search_cv(
    X,
    y,
    grid: Mapping[str, Sequence],
    *,
    cv: int = 5,
    scoring: Sequence[str] = SCORERS,
    rank_by: str = "accuracy",
    refit: bool = False,
    seed: int | None = None,
    n_jobs: int | None = None,
    scale: str = "none",
    select: str = "best",
    scheduler=None,
    index_seed: int = 0,
) -> GridSearchResult:
    """Exhaustive cross-validated search over a kNN grid, one neighbour search per
    (fold, p, algorithm), and per set of index options of an approximate algorithm.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training points.
    y : array-like of shape (n_samples,)
        Class labels.
    grid : mapping
        Any of ``n_neighbors``, ``p``, ``weights``, ``algorithm`` to lists (unset ones:
        :class:`KNNClassifier`'s default), and ``index``: {option: list} of the approximate
        algorithms' options (e.g. ``{"ef_search": [16, 64]}``; :func:`candidate_list` says
        how they combine).
    cv : int, default 5
        Folds of ``StratifiedKFold(cv)``, shuffled with ``seed`` when given, exactly as
        scikit-learn builds them.
    scoring : sequence of str, default all scorers
        Scorer names among ``accuracy``, ``f1_macro``, ``roc_auc_ovr``.
    rank_by : str, default "accuracy"
        The scorer both rules of ``select`` rank by (ties: the earlier candidate); one of
        ``scoring``.
    refit : bool, default False
        Also fit the picked candidate on all of X (``best_estimator``); off by default,
        since the pipeline refits from ``best_params`` where it needs the model.
    seed : int, optional
        Shuffles the folds; None keeps the rows' order (no shuffle).
    n_jobs : int, optional
        Parallel (fold, p) tasks with joblib; None or 1 runs them in this process (whose
        search then uses every core). Results are the same for any value.
    scale : {"none", "standard", "minmax"}, default "none"
        Feature scaling of every candidate, fitted on each fold's training rows only.
    select : {"best", "one_se"}, default "best"
        Which candidate becomes ``best_params`` (and is refit): ``"best"``, the highest
        mean ``rank_by`` score (scikit-learn's choice), or ``"one_se"``, the largest k
        within one standard error of it (:func:`one_standard_error_index`). Both picks are
        in ``picks`` either way.
    scheduler : str or distributed.Client, optional
        A Dask scheduler's address (``tcp://host:8786``) or client: the (fold, p) searches
        run as tasks on its workers (one thread each; ``n_jobs`` is then unused), X and y
        scattered once. None: this machine, or the cluster of an enclosing
        :func:`knnlab.distributed.on_cluster`. The table and the picks are the same either
        way; only the time columns differ.
    index_seed : int, default 0
        The seed of every approximate index's build (``model.seed``).

    Returns
    -------
    GridSearchResult
        With an approximate algorithm in the grid, ``cv_results`` also has
        ``param_index`` (the options as JSON, empty for exact candidates), ``mean_recall``
        (recall@k against the exact neighbours of the same fold, 1 for exact candidates)
        and ``mean_distances_per_query`` (distances computed per query: n_train for exact
        search; the same on every machine, unlike the seconds).

    Raises
    ------
    ValueError
        If ``select``, ``scale``, ``scoring`` or ``rank_by`` is not allowed; the grid has
        an unknown key, an empty list, an index option no approximate algorithm in it
        takes (or a bad value of one), or an approximate algorithm without p = 2 in its
        ``p``; a class has fewer than ``cv`` rows; or the largest k exceeds the smallest
        training fold.
    """
    check_choice("select", select, SELECTIONS)
    grid, scoring = _check_grid(grid), _check_scoring(scoring, rank_by)
    X = np.asarray(X, dtype=np.float64)
    classes, y_code = np.unique(np.asarray(y), return_inverse=True)
    ks = tuple(sorted(set(grid["n_neighbors"])))
    folds = _plan_folds(X, y_code, cv, seed, ks[-1])
    candidates = candidate_list(grid)
    n_candidates = len(candidates)
    settings = (ks, classes.size, scoring, scale, index_seed, _engines(candidates))
    with distributed.client_for(scheduler) as client:
        if client is None:
            tasks = _fold_tasks(X, y_code, folds, grid, n_jobs, *settings)
            found = _run(X, y_code, tasks, folds, n_jobs, n_candidates)
        else:
            found = _run_on_cluster(client, X, y_code, folds, grid, n_candidates, *settings)
    cv_results = _tabulate(candidates, scoring, found, cv)
    picks = selection_picks(cv_results, rank_by)
    chosen = picks[select]
    best_params = dict(chosen["params"])
    return GridSearchResult(
        cv_results=cv_results,
        search_timings=pd.DataFrame(found["timing_rows"]),
        best_params=best_params,
        best_score=chosen["score"],
        best_index=chosen["index"],
        rank_by=rank_by,
        best_estimator=(
            KNNClassifier(**best_params, scale=scale).fit(X, classes[y_code]) if refit else None
        ),
        select=select,
        picks=picks,
    )


def _best_index(cv_results: pd.DataFrame, scorer: str) -> int:
    """The row of rank 1 by ``mean_test_{scorer}`` (ties: the earlier candidate)."""
    return int(np.argmin(cv_results[f"rank_test_{scorer}"].to_numpy()))


def one_standard_error_index(cv_results: pd.DataFrame, scorer: str) -> int:
    """The one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani & Friedman,
    *The Elements of Statistical Learning*, 7.10): the smoothest candidate the CV cannot
    tell apart from the best.

    With ``best`` the row of rank 1 (ties: the earlier row) and threshold =
    mean[best] - sem[best], the eligible candidates are those whose mean is >= threshold (a
    NaN mean never is; the best always is, so a NaN threshold leaves only the best). Among
    them the largest ``n_neighbors``, then the highest mean, then the earliest row.

    Parameters
    ----------
    cv_results : DataFrame of shape (n_candidates, n_columns)
        With ``param_n_neighbors``, ``mean_test_{scorer}``, ``sem_test_{scorer}`` and
        ``rank_test_{scorer}``.
    scorer : str
        The scorer whose columns are read.

    Returns
    -------
    int
        The row position (0 .. n_candidates - 1).
    """
    mean = cv_results[f"mean_test_{scorer}"].to_numpy(dtype=np.float64)  # (n_candidates,)
    sem = cv_results[f"sem_test_{scorer}"].to_numpy(dtype=np.float64)
    k = cv_results["param_n_neighbors"].to_numpy(dtype=np.int64)
    best = _best_index(cv_results, scorer)
    eligible = mean >= mean[best] - sem[best]  # NaN compares False: never eligible
    eligible[best] = True
    largest_k = eligible & (k == k[eligible].max())
    rows = np.flatnonzero(largest_k)
    # argmax keeps the first of equal maxima; only a lone best can carry a NaN mean here.
    return int(rows[np.argmax(mean[rows])])


def selection_picks(cv_results: pd.DataFrame, scorer: str) -> dict[str, dict[str, Any]]:
    """Both rules' candidates as plain Python values.

    Parameters
    ----------
    cv_results : DataFrame of shape (n_candidates, n_columns)
        As in :func:`one_standard_error_index`, with ``params`` too.
    scorer : str
        The scorer whose columns are read.

    Returns
    -------
    dict of str to dict
        ``{"best": pick, "one_se": pick}``, each pick ``{"index", "params", "score",
        "se"}`` and the one-SE pick also ``threshold`` (mean minus SE of the best).
    """
    mean, sem = cv_results[f"mean_test_{scorer}"], cv_results[f"sem_test_{scorer}"]

    def pick(index: int) -> dict[str, Any]:
        params = {key: _plain(value) for key, value in cv_results["params"].iloc[index].items()}
        return {
            "index": index,
            "params": params,
            "score": float(mean.iloc[index]),
            "se": float(sem.iloc[index]),
        }

    best = pick(_best_index(cv_results, scorer))
    threshold = best["score"] - best["se"]
    one_se = {**pick(one_standard_error_index(cv_results, scorer)), "threshold": threshold}
    return {"best": best, "one_se": one_se}


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON files and MLflow params need them)."""
    return value.item() if isinstance(value, np.generic) else value


def _check_scoring(scoring: Sequence[str], rank_by: str) -> tuple[str, ...]:
    scoring = tuple(scoring)
    bad = [s for s in scoring if s not in SCORERS]
    if bad or rank_by not in scoring:
        raise ValueError(
            f"scoring must be among {', '.join(SCORERS)} and include rank_by={rank_by!r}, "
            f"got scoring={scoring}"
        )
    return scoring


def _plan_folds(X: np.ndarray, y_code: np.ndarray, cv: int, seed: int | None, k_max: int):
    """scikit-learn's StratifiedKFold folds as [(train rows, validation rows)], checked: every
    class has a row in every fold and every training fold holds at least k_max rows."""
    smallest_class = np.bincount(y_code).min()
    if cv > smallest_class:
        raise ValueError(
            f"cv = {cv} folds need at least {cv} samples of every class, but the smallest "
            f"class has {smallest_class}; lower tune.cv"
        )
    folds = list(StratifiedKFold(cv, shuffle=seed is not None, random_state=seed).split(X, y_code))
    smallest_train = min(len(train) for train, _ in folds)
    if k_max > smallest_train:
        raise ValueError(
            f"n_neighbors = {k_max} in the grid exceeds the smallest training fold "
            f"({smallest_train} samples); lower it or use fewer folds"
        )
    return folds


def _engines(candidates: list[dict]) -> dict:
    """{p: the engines of the candidates at p, in candidate order}."""
    engines: dict = {}
    for candidate in candidates:
        at_p = engines.setdefault(candidate["p"], [])
        if _engine(candidate) not in at_p:
            at_p.append(_engine(candidate))
    return {p: tuple(at_p) for p, at_p in engines.items()}


def _fold_tasks(X, y_code, folds, grid, n_jobs, ks, n_classes, scoring, scale, seed, engines):
    """One :class:`_FoldTask` per (fold, p), as {(fold, p): task}."""
    # At p = 2 with brute force and no scaling, the folds' searches share their products
    # (half the multiply work); other settings search fold by fold.
    shared, shared_seconds = None, 0.0
    if 2 in grid["p"] and "brute" in grid["algorithm"] and scale == "none":
        start = time.perf_counter()
        shared = cross_fold_kneighbors(X, folds, ks[-1])
        shared_seconds = (time.perf_counter() - start) / len(folds)
    # Workers of a parallel run search on one thread each (no oversubscription); results
    # do not depend on n_jobs. The tasks hold no rows: each is given its fold's copy only
    # when it runs (see _run), so a grid of many (fold, p) tasks never holds them all (on
    # Fashion-MNIST each copy is 376 MB).
    threads = 1 if n_jobs not in (None, 1) else None
    empty = np.empty((0, X.shape[1]))
    return {
        (fold, p): _FoldTask(
            empty,
            y_code[:0],
            empty,
            y_code[:0],
            p,
            engines[p],
            tuple(grid["weights"]),
            ks,
            n_classes,
            scoring,
            threads,
            scale,
            None if shared is None or p != 2 else (shared[fold], shared_seconds),
            seed,
        )
        for fold, (train, valid) in enumerate(folds)
        for p in grid["p"]
    }


def _run(X, y_code, tasks: dict, folds, n_jobs: int | None, n_candidates: int):
    """Run every task (in parallel with joblib when n_jobs asks for it) and collect
    scores[(fold, p, weights, k)][scorer], times[(fold, p, algorithm)] = (fit, search) and
    one timing row per (fold, p, algorithm). Each task gets its fold's rows of X (n, d) and
    y_code (n,) as it is dispatched (joblib takes a few tasks ahead, not all)."""
    jobs = (
        delayed(_search_and_score)(_with_rows(task, X, y_code, *folds[fold]))
        for (fold, _), task in tasks.items()
    )
    outputs = Parallel(n_jobs=n_jobs or 1, return_as="generator")(jobs)
    return _collect(list(tasks), outputs, folds, n_candidates)


def _with_rows(template: _FoldTask, X, y_code, train, valid) -> _FoldTask:
    """The task with its fold's rows: X (n, d) and y_code (n,) sliced by train, valid."""
    return dataclasses.replace(
        template,
        X_train=np.asarray(X[train], dtype=np.float64),  # X may come narrowed (see compact)
        y_train=y_code[train],
        X_valid=np.asarray(X[valid], dtype=np.float64),
        y_valid=y_code[valid],
    )


_COST_RANK = {KIND_GENERAL: 0, 3: 1, 1: 2, KIND_INF: 3, 2: 4}  # by power_kind


def _fold_on_worker(X, y_code, train, valid, template: _FoldTask):
    """One (fold, p) task on a Dask worker: X (n, d) and y_code (n,) are the scattered
    whole; train, valid the fold's rows; template the task without its arrays."""
    return _search_and_score(_with_rows(template, X, y_code, train, valid))


def _run_on_cluster(
    client, X, y_code, folds, grid, n_candidates, ks, n_classes, scoring, scale, seed, engines
):
    """As :func:`_run`, each (fold, p) task on a Dask worker, one thread each. X and y are
    scattered once to every worker; each task sends only its fold's row indices. Every fold
    searches itself at p = 2 too (the one-machine path shares the folds' products, with the
    same neighbours: see :func:`cross_fold_kneighbors`), so the scores are the same."""
    empty = np.empty((0, X.shape[1]))
    keys = [(fold, p) for fold in range(len(folds)) for p in grid["p"]]
    # Longest first, so the last tasks to start are short ones (Dask runs tasks in the order
    # they are submitted): any other p (pow per term), then p = 3, 1, inf, then p = 2 (a
    # matrix multiply, often pre-filtered).
    order = sorted(range(len(keys)), key=lambda i: _COST_RANK[power_kind(float(keys[i][1]))])
    calls = []
    for fold, p in (keys[i] for i in order):
        train, valid = folds[fold]
        template = _FoldTask(
            empty,
            y_code[:0],
            empty,
            y_code[:0],
            p,
            engines[p],
            tuple(grid["weights"]),
            ks,
            n_classes,
            scoring,
            1,
            scale,
            seed=seed,
        )
        args = (distributed.Ref("X"), distributed.Ref("y"), train, valid, template)
        calls.append((_fold_on_worker, args))
    with Progress(len(calls), f"tune, {n_candidates} candidates, on Dask", "search") as bar:
        found = distributed.run_tasks(
            client,
            {"X": X, "y": y_code},
            calls,
            broadcast=("X", "y"),
            on_result=lambda position, result: bar.update(1),
        )
    outputs = [None] * len(keys)
    for position, i in enumerate(order):
        outputs[i] = found[position]
    return _collect(keys, outputs, folds, n_candidates, progress=False)


def _collect(keys: list, outputs, folds, n_candidates: int, progress: bool = True) -> dict:
    """What every (fold, p) task found, in the order of keys: ``scores[(fold, p, score key,
    weights, k)][scorer]``, ``times[(fold, p, engine)] = (fit, search)``, ``recalls[(fold,
    engine, k)]``, ``work[(fold, p, engine)]`` (distances per query) and ``timing_rows``,
    one per (fold, p, engine)."""
    found: dict[str, Any] = {"scores": {}, "times": {}, "recalls": {}, "work": {}}
    timing_rows = []
    total = len(keys) if progress else 0
    with Progress(total, f"tune, {n_candidates} candidates", "search") as bar:
        for (fold, p), (task_scores, task_times, recalls, work) in zip(keys, outputs, strict=True):
            for (engine, weights, k), values in task_scores.items():
                found["scores"][fold, p, engine, weights, k] = values
            for (engine, k), recall in recalls.items():
                found["recalls"][fold, engine, k] = recall
            for (engine, k), per_query in work.items():
                found["work"][fold, p, engine, k] = per_query
            for engine, fit_seconds, search_seconds, resolved in task_times:
                found["times"][fold, p, engine] = (fit_seconds, search_seconds)
                algorithm, options = engine
                timing_rows.append(
                    {
                        "fold": fold,
                        "p": p,
                        "algorithm": algorithm,
                        **({"index": json.dumps(dict(options))} if options else {}),
                        "resolved_algorithm": resolved,
                        "fit_seconds": fit_seconds,
                        "search_seconds": search_seconds,
                        "n_train": len(folds[fold][0]),
                        "n_queries": len(folds[fold][1]),
                    }
                )
            bar.update(1)
    found["timing_rows"] = timing_rows
    return found


def _tabulate(candidates: list[dict], scoring, found: dict, cv: int):
    """scikit-learn's ``cv_results_`` table, one row per candidate in grid order (plus the
    approximate search's columns when the grid has an approximate algorithm)."""
    scores, times = found["scores"], found["times"]
    table: dict[str, Any] = {"params": candidates}
    for key in sorted(GRID_KEYS):
        table[f"param_{key}"] = [c[key] for c in candidates]
    approximate = any("index" in c for c in candidates)
    if approximate:
        table["param_index"] = [json.dumps(c["index"]) if "index" in c else "" for c in candidates]
    for s in scoring:
        split_scores = np.array(
            [
                [
                    scores[f, c["p"], _score_key(c), c["weights"], c["n_neighbors"]][s]
                    for f in range(cv)
                ]
                for c in candidates
            ]
        )  # (n_candidates, cv)
        for f in range(cv):
            table[f"split{f}_test_{s}"] = split_scores[:, f]
        mean = split_scores.mean(axis=1)
        table[f"mean_test_{s}"] = mean
        table[f"std_test_{s}"] = split_scores.std(axis=1)  # ddof=0, as scikit-learn's
        # The standard error of the mean over folds takes the sample std (ddof=1): the folds
        # are a sample of the splits the data allow. cv >= 2, so it is defined.
        table[f"sem_test_{s}"] = split_scores.std(axis=1, ddof=1) / np.sqrt(cv)
        table[f"rank_test_{s}"] = _rank_min(mean)
    if approximate:
        table["mean_recall"] = [
            np.mean(
                [found["recalls"].get((f, _engine(c), c["n_neighbors"]), 1.0) for f in range(cv)]
            )
            for c in candidates
        ]
        table["mean_distances_per_query"] = [
            np.mean([found["work"][f, c["p"], _engine(c), c["n_neighbors"]] for f in range(cv)])
            for c in candidates
        ]
    for column, which in (("fit_time", 0), ("score_time", 1)):
        per_split = np.array(
            [[times[f, c["p"], _engine(c)][which] for f in range(cv)] for c in candidates]
        )
        table[f"mean_{column}"] = per_split.mean(axis=1)
        table[f"std_{column}"] = per_split.std(axis=1)
    return pd.DataFrame(table)


def _rank_min(values: np.ndarray) -> np.ndarray:
    """Rank 1 for the highest value, ties sharing the lowest rank; NaN ranks last
    (scikit-learn's ``rank_test_*``)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    order = np.sort(-filled)
    return np.searchsorted(order, -filled, side="left").astype(np.int32) + 1
