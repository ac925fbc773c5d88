"""evaluate: score on the test split the configured model, the tuned-best model and a
most-frequent-class baseline -> ``reports/metrics.json``, ``reports/uncertainty.json``
(intervals, paired tests), per-sample predictions of each model for DVC plots and revision
comparisons, and one MLflow run for the configured model, tagged with
:func:`~knnlab.pipeline.analysis.evaluation.evaluation_key` so plot finds it. The seconds go to the
run and to the git-ignored ``reports/timings/``, not to committed outputs."""

from __future__ import annotations

from dataclasses import dataclass

from knnlab.neighbors import warm_up
from knnlab.pipeline.analysis import data_record, evaluation, reference, significance, training
from knnlab.pipeline.data.dataset import LABEL, read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary, model_name
from knnlab.pipeline.io.model_io import load_model, read_header, read_model_params
from knnlab.pipeline.io.params import Params
from knnlab.tracking import registry
from knnlab.tracking.stage import LoggedStage


def _compare_with_exact(params: Params, results, X_train, y_train, X_test, y_test) -> dict:
    """{model name: ExactComparison} of the configured and tuned models that are approximate,
    against the cached exact neighbours of the test rows."""
    approximate = [name for name in ("configured", "tuned") if not results[name].model.exact_]
    if not approximate:
        return {}
    largest_k = max(results[name].model.n_neighbors for name in approximate)
    exact_neighbours = reference.exact_neighbours_for(
        paths.EXACT_NEIGHBOURS, X_train, X_test, largest_k, params.model.scale
    )
    stats_params = (params.stats.confidence, params.stats.resamples, params.stats.seed)
    build_seconds = {
        "configured": training.build_seconds(paths.TRAIN_TIMINGS, paths.MODEL_FILE),
        "tuned": results["tuned"].fit_seconds,
    }
    return {
        name: evaluation.compare_with_exact(
            name,
            results[name].model,
            exact_neighbours,
            (X_train, y_train, X_test, y_test),
            stats_params,
            build_seconds[name],
        )
        for name in approximate
    }


def _against_champion(run, champion, fingerprint, configured, X_test, y_test, params):
    """The paired test of the registered champion (first) against this run's model
    (second, ``configured`` = (y_pred, proba, classes)) on this test split, or (None, why
    they cannot be compared); (None, None) when there is no champion yet."""
    if champion is None:
        return None, None
    if champion.test_split != fingerprint:
        return None, "it was scored on another test split (other data, split seed or size)"
    model = run.load_classifier(f"runs:/{champion.run_id}/model")
    if model.n_features_in_ != X_test.shape[1] or set(model.classes_) != set(configured[2]):
        return None, "it takes other features or predicts other classes"
    proba = model.predict_proba(X_test)
    predictions = {
        "champion": (model.classes_[proba.argmax(axis=1)], proba, model.classes_),
        "configured": configured,
    }
    record = significance.uncertainty(
        y_test,
        predictions,
        params.stats.confidence,
        params.stats.resamples,
        params.stats.seed,
        fingerprint,
        pairs=(("champion", "configured"),),
    )
    return record["paired"][0], None


def _judge(run, champion, fingerprint, configured, X_test, y_test, params) -> registry.Decision:
    """Whether this run's model takes the alias champion (registry.Decision)."""
    pair, reason = _against_champion(run, champion, fingerprint, configured, X_test, y_test, params)
    version = champion.version if champion is not None else None
    return registry.Decision(*significance.champion_decision(version, pair, reason))


@dataclass
class Logged:
    """What the evaluate run logs, from the stage's results or, re-logged by ``knnlab
    relog``, from its outputs.

    scores : {model: {metric: value}}, ``reports/metrics.json``.
    uncertainty : ``reports/uncertainty.json``.
    metrics : the MLflow metrics beyond the scores and the uncertainty's (the seconds, the
        comparisons with exact search).
    sentences : the comparisons with exact search, for the run's description.
    configured : (y_pred, proba, classes) of the configured model on the test split.
    artifacts : the files attached to the run (metrics, timings, uncertainty).
    """

    split: SplitInfo
    model_params: dict
    tuned: TuneSummary
    scores: dict
    uncertainty: dict
    metrics: dict
    sentences: list
    configured: tuple
    artifacts: list


def log_run(mlflow_run, params: Params, logged: Logged, X_test, y_test):
    """Log the evaluate run: params, metrics, the split tables as datasets, the model, the
    artifacts and the description; then register the model, champion if the evidence says
    so. Returns (run id or "", model URI or None, (version, decision) or None)."""
    split = logged.split
    mlflow_run.log(
        params=evaluation.run_params(split, logged.model_params, logged.tuned),
        metrics={
            **evaluation.score_metrics(logged.scores),
            **significance.mlflow_metrics(logged.uncertainty),
            **logged.metrics,
        },
    )
    # One table at a time, read for MLflow only.
    train_frame = files.read_parquet(paths.TRAIN_SPLIT)
    mlflow_run.log_dataset(train_frame, f"{split.name}-train", "training", LABEL)
    del train_frame
    test_frame = files.read_parquet(paths.TEST_SPLIT)
    mlflow_run.log_dataset(test_frame, f"{split.name}-test", "evaluation", LABEL)
    example = test_frame.drop(columns=[LABEL]).head(5)
    mlflow_run.log_model(paths.MODEL_FILE, example, logged.configured[0][:5])
    for artifact in logged.artifacts:
        mlflow_run.log_artifact(artifact)
    run_id = mlflow_run.record.run_id  # "" when not tracked
    model_uri = f"runs:/{run_id}/model" if run_id else None
    description = evaluation.run_description(
        model_name(logged.model_params),
        split,
        model_name(logged.tuned.best_params),
        logged.scores,
        logged.uncertainty,
        logged.sentences,
        model_uri,
    )
    mlflow_run.log(tags={"mlflow.note.content": description})
    if not run_id:
        return run_id, model_uri, None
    fingerprint = logged.uncertainty["test_split"]
    lifecycle = mlflow_run.register_model(
        registry.registered_name(split.name),
        fingerprint,
        logged.scores["configured"]["accuracy"],
        lambda champion: _judge(
            mlflow_run, champion, fingerprint, logged.configured, X_test, y_test, params
        ),
    )
    return run_id, model_uri, lifecycle


def print_logged(split: SplitInfo, run_id: str, model_uri: str | None, lifecycle) -> None:
    """The run, the model's URI and its place in the registry, as the stage prints them."""
    if model_uri is not None:
        print(f"evaluate: MLflow run {run_id}, model {model_uri} (`knnlab runs` lists them)")
    if lifecycle is not None:
        version, decision = lifecycle
        name = registry.registered_name(split.name)
        role = "champion" if decision.crown else "challenger"
        print(f"evaluate: registered {name} version {version}, {role}: {decision.verdict}")


def run(params: Params) -> None:
    stage = LoggedStage(params.mlflow, "evaluate", paths.EVALUATE_RUN)  # checks the store first
    X_train, y_train = read_features_and_labels(paths.TRAIN_SPLIT)
    X_test, y_test = read_features_and_labels(paths.TEST_SPLIT)
    split = SplitInfo.read(paths.SPLIT_META)
    tuned = TuneSummary.read(paths.BEST_PARAMS)
    model_params = read_model_params(paths.MODEL_FILE)
    for p in {model_params["p"], tuned.best_params["p"]}:
        warm_up(p)  # timings below measure the search, not numba's one-time compilation

    results = evaluation.evaluate_models(
        lambda: load_model(paths.MODEL_FILE), tuned, X_train, y_train, X_test, y_test
    )
    configured = results["configured"]
    uncertainty = significance.uncertainty(
        y_test,
        {name: (r.y_pred, r.proba, r.classes) for name, r in results.items()},
        params.stats.confidence,
        params.stats.resamples,
        params.stats.seed,
        significance.test_split_fingerprint(X_test, y_test),
    )
    # Each approximate model, measured against its exact twin on the same rows.
    vs_exact = _compare_with_exact(params, results, X_train, y_train, X_test, y_test)
    if vs_exact:
        uncertainty["vs_exact"] = {name: c.record() for name, c in vs_exact.items()}
    # The fitted models (and their prepared searches) are done with; MLflow's dataset
    # logging below copies the split tables a few times over.
    for result in results.values():
        result.model = None
    del X_train
    # The prediction sets train calibrated, measured on the test rows.
    conformal_record = data_record.prediction_set_record(
        configured.proba,
        configured.classes,
        y_test,
        read_header(paths.MODEL_FILE)["extra"],
        params.stats.confidence,
        split.display_name,
    )
    data_metrics = data_record.tracked_metrics(
        conformal_record,
        files.read_json(paths.SPLIT_LEAKS),
        files.read_json(paths.AUDIT_SUMMARY),
    )
    run_name = model_name(model_params)
    with stage.outputs() as outputs:
        metrics_file = outputs.staged(paths.METRICS_FILE)
        timings_file = outputs.staged(paths.TIMINGS_FILE)
        evaluation.evaluation_of(results).write(metrics_file, timings_file)
        uncertainty_file = outputs.staged(paths.UNCERTAINTY_FILE)
        files.write_json(uncertainty_file, uncertainty)
        vs_exact_file = outputs.staged(paths.VS_EXACT_FILE)
        files.write_json(vs_exact_file, evaluation.vs_exact_metrics(results, vs_exact))
        others = {name: r for name, r in results.items() if name != "configured"}
        predictions_file = outputs.staged(paths.PREDICTIONS_PLOT)
        files.write_csv(predictions_file, evaluation.prediction_table(y_test, configured, others))
        conformal_file = outputs.staged(paths.CONFORMAL_FILE)
        files.write_json(conformal_file, conformal_record)
        key = evaluation.evaluation_key(
            {
                paths.METRICS_FILE: metrics_file,
                paths.UNCERTAINTY_FILE: uncertainty_file,
                paths.PREDICTIONS_PLOT: predictions_file,
                paths.CONFORMAL_FILE: conformal_file,
            }
        )
        logged = Logged(
            split,
            model_params,
            tuned,
            {name: r.scores for name, r in results.items()},
            uncertainty,
            {
                **evaluation.timing_metrics(configured),
                **{k: v for c in vs_exact.values() for k, v in c.metrics().items()},
                **data_metrics,
            },
            [c.sentence() for c in vs_exact.values()],
            (configured.y_pred, configured.proba, configured.classes),
            [
                metrics_file,
                timings_file,
                uncertainty_file,
                conformal_file,
                *data_record.AUDIT_FILES,
            ],
        )
        with stage.new_run(run_name, evaluation.EVALUATION_TAG, key) as mlflow_run:
            run_id, model_uri, lifecycle = log_run(mlflow_run, params, logged, X_test, y_test)
    for name, r in results.items():
        low, high = (uncertainty["intervals"][name]["accuracy"][k] for k in ("low", "high"))
        print(
            f"evaluate: {name:10s} accuracy {r.scores['accuracy']:.4f} [{low:.4f}, {high:.4f}]"
            f"  F1 macro {r.scores['f1_macro']:.4f}  ROC-AUC {r.scores['roc_auc_ovr']:.4f}"
        )
    for pair in uncertainty["paired"]:
        print(f"evaluate: {significance.verdict(pair, {})}")
    for comparison in vs_exact.values():
        print(f"evaluate: {comparison.sentence()}")
    print(
        f"evaluate: prediction sets for {conformal_record['target']:g} coverage hold the true "
        f"class of {conformal_record['coverage']:.4f} of test rows "
        f"[{conformal_record['coverage_low']:.4f}, {conformal_record['coverage_high']:.4f}], "
        f"{conformal_record['mean_set_size']:.2f} classes on average"
    )
    print_logged(split, run_id, model_uri, lifecycle)
