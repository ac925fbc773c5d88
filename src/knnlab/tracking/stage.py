"""The protocol every logging stage (tune, evaluate, plot) follows, written once:

1. check the MLflow store before computing (or find the run to add to), so a stage whose
   store is unusable fails in seconds, not after its work;
2. write every output into a private staging folder
   (:func:`knnlab.pipeline.io.files.staged_outputs`);
3. log them: to a new run, closed FINISHED (FAILED if logging raises, KILLED on an interrupt,
   which arrives as :class:`KeyboardInterrupt`), or to the run found in step 1;
4. write the run marker ``tracking/<stage>_run.json`` (:func:`runs.logged_marker`);
5. move the outputs into place, and, if that fails, turn the new run FAILED.

The outputs are committed only once the run has closed FINISHED: a failure or a kill anywhere
before leaves the previous outputs in place (a killed stage's staging folder is removed by the
next stage, and its run, left RUNNING, is closed KILLED by the next stage that opens one).

Usage, a stage with its own run::

    stage = LoggedStage(params.mlflow, "tune", paths.TUNE_RUN)  # checks the store
    ...compute...
    with stage.outputs() as outputs:
        table = outputs.staged(paths.CV_RESULTS)
        ...write it...
        with stage.new_run(run_name, TAG, key) as run:
            run.log(params=..., metrics=...)
            run.log_artifact(table)

and a stage that adds to the run of an earlier stage::

    stage = LoggedStage(params.mlflow, "plot", paths.PLOT_RUN, add_to=("evaluate", TAG, key))
    ...compute...
    with stage.outputs() as outputs:
        ...write files...
        stage.log_artifacts([...], "figures")
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from knnlab.pipeline.io import files
from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs


class LoggedStage:
    """One run of a logging stage: its store checked on creation, its outputs staged by
    :meth:`outputs`, logged to a new run (:meth:`new_run`) or, with ``add_to``, to the run of
    an earlier stage (:meth:`log_artifacts`, :meth:`log_table`).

    Parameters
    ----------
    config : MlflowParams
        Where runs are logged; an unusable store raises :class:`TrackingError` here, or,
        with ``required: false``, warns and the stage logs nothing.
    stage : str
        The stage's name (``tune``, ``evaluate``): the run's ``knnlab.stage`` tag and the
        ``stage`` of its marker.
    marker : Path
        Where the run marker goes, relative to the project root (``paths.TUNE_RUN``).
    add_to : (producer, tag, key), optional
        Log to the FINISHED run of stage ``producer`` tagged ``tag = key`` instead of opening
        one (plot adds its figures to the evaluate run of the outputs it draws), found now:
        a store without that run fails before the work (:func:`runs.find_tagged_run`).
    """

    def __init__(
        self,
        config: MlflowParams,
        stage: str,
        marker: Path,
        *,
        add_to: tuple[str, str, str] | None = None,
    ):
        self.config = config
        self.stage = stage
        self.marker = Path(marker)
        self._opened: runs.StageRun | runs.UntrackedRun | None = None
        self._outputs: files.StagedOutputs | None = None
        self._found: runs.RunRecord | None = None
        self._logged: tuple[str, str] | None = None  # (tag, value) of the run logged to
        # The run opens after the work (its outputs are logged as it opens) but spans it.
        self._started_ms = int(time.time() * 1000)
        # Checked here, before the stage computes, not after.
        if add_to is None:
            runs.preflight(config, stage)
            return
        producer, tag, key = add_to
        found = runs.find_tagged_run(config, stage, producer, tag, key)
        # Not tracked (mlflow.required: false): an empty record, to which logging is a no-op.
        self._found = found or runs.RunRecord("", "", "")
        self._logged = (tag, key)

    @contextlib.contextmanager
    def outputs(self) -> Iterator[files.StagedOutputs]:
        """Stage the outputs; when the block succeeds, write the run marker and move the
        outputs into place (turning the new run FAILED if the move fails). When the block
        raises, or the process is killed, the previous outputs stay as they were."""
        if self._outputs is not None:
            raise RuntimeError(f"stage {self.stage}: outputs() is entered once per stage")
        with files.staged_outputs() as outputs:
            self._outputs = outputs
            yield outputs
            if self._logged is None:
                raise RuntimeError(
                    f"stage {self.stage} staged its outputs without logging them: open "
                    "stage.new_run(...) inside stage.outputs(), or create the stage with "
                    "LoggedStage(..., add_to=...)"
                )
            files.write_json(
                outputs.staged(self.marker), runs.logged_marker(self.stage, *self._logged)
            )
            if self._opened is not None:
                record = self._opened.record
                outputs.if_commit_fails(lambda error: runs.mark_outputs_failed(record, error))

    @contextlib.contextmanager
    def new_run(
        self, run_name: str, tag: str, key: str
    ) -> Iterator[runs.StageRun | runs.UntrackedRun]:
        """Open the stage's run (:func:`runs.stage_run`) inside :meth:`outputs`, tagged
        ``tag = key`` (the tag a later stage finds it by, and the marker records), starting
        when this stage was created, so it spans the stage's work; it closes
        FINISHED when the block succeeds, FAILED when it raises, KILLED when interrupted."""
        if self._outputs is None or self._found is not None or self._opened is not None:
            raise RuntimeError(
                f"stage {self.stage}: new_run() opens one run, inside outputs(), in a stage "
                "not created with LoggedStage(..., add_to=...)"
            )
        with runs.stage_run(self.config, self.stage, run_name, self._started_ms) as run:
            self._opened = run
            run.log(tags={tag: key})
            yield run
        self._logged = (tag, key)

    def log_artifacts(self, logged_files: list[Path], artifact_path: str | None) -> None:
        """Attach files to the run found by ``add_to``."""
        runs.log_artifacts_to(self._found_run(), logged_files, artifact_path)

    def log_table(self, table, artifact_file: str) -> None:
        """A DataFrame as a table artifact of the run found by ``add_to``."""
        runs.log_table(self._found_run(), table, artifact_file)

    def _found_run(self) -> runs.RunRecord:
        if self._found is None:
            raise RuntimeError(
                f"stage {self.stage} logs to a run of its own: use new_run(), or create the "
                "stage with LoggedStage(..., add_to=...) to add to an earlier stage's run"
            )
        return self._found
