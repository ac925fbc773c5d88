"""The model lifecycle in MLflow's registry, gated by evidence: each evaluate run registers
its model as a new version of ``knnlab-<dataset>``; the alias ``champion`` moves to that
version only when the model is significantly better than the current champion on the same
test split (the paired test evaluate already runs: bootstrap interval and McNemar's exact
test); otherwise the version is tagged ``challenger`` with the verdict. Serve the one to
use with ``knnlab serve models:/knnlab-digits@champion``.

The decision is the caller's (evaluate's, from its paired test:
:func:`knnlab.pipeline.analysis.significance.champion_decision`); this module reads and writes
the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHAMPION = "champion"
ROLE_TAG = "knnlab.role"  # champion, or challenger
VERDICT_TAG = "knnlab.verdict"
SPLIT_TAG = "knnlab.test_split"  # the test split's fingerprint the version was scored on
ACCURACY_TAG = "knnlab.test_accuracy"


def registered_name(dataset: str) -> str:
    """``knnlab-<dataset>``, the dataset's name reduced to what model names allow."""
    return "knnlab-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-.") or "dataset")


@dataclass(frozen=True)
class Champion:
    """The version the alias points to, the run that logged it, its test split."""

    version: str
    run_id: str
    test_split: str | None


@dataclass(frozen=True)
class Decision:
    """Whether a new version takes the alias, and the sentence that says why."""

    crown: bool
    verdict: str


def current_champion(client, name: str) -> Champion | None:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no such model, or no alias yet
        return None
    return Champion(str(version.version), version.run_id, version.tags.get(SPLIT_TAG))


def register(client, name: str, run_id: str, test_split: str, accuracy: float) -> str:
    """A new version of ``name`` (created if missing) from the run's logged model; returns
    its version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="knnlab models of one dataset; the alias champion is the one to use"
        )
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    logged = client.get_run(run_id).outputs.model_outputs
    model_id = logged[0].model_id if logged else None  # MLflow 3's logged model
    version = client.create_model_version(
        name,
        f"models:/{model_id}" if model_id else f"runs:/{run_id}/model",
        run_id=run_id,
        tags={SPLIT_TAG: test_split, ACCURACY_TAG: f"{accuracy:.6f}"},
        model_id=model_id,  # a server requires it beside a models:/ source
    )
    return str(version.version)


def record(client, name: str, version: str, decision: Decision) -> None:
    """Move the alias (or not) and tag the version with its role and verdict."""
    if decision.crown:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(
        name, version, ROLE_TAG, "champion" if decision.crown else "challenger"
    )
    client.set_model_version_tag(name, version, VERDICT_TAG, decision.verdict)
