"""compute.scheduler: where searches run. Validated strictly, overridden by
DASK_SCHEDULER_ADDRESS, and (like mlflow.*) no stage's dependency: it does not change results."""

from __future__ import annotations

import pytest
import yaml

from knnlab.pipeline.io.params import Params, parse_params

from ..conftest import REPO_ROOT


def test_scheduler_setting_is_validated_and_the_environment_overrides(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    compute = parse_params({"compute": {"scheduler": "tcp://10.0.0.5:8786"}}).compute
    assert compute.resolved_scheduler() == "tcp://10.0.0.5:8786"
    assert Params().compute.resolved_scheduler() is None, "null: this machine"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://[::1]:9000")
    assert compute.resolved_scheduler() == "tcp://[::1]:9000", "the environment wins"
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "localhost")
    with pytest.raises(ValueError, match="environment: DASK_SCHEDULER_ADDRESS = 'localhost'"):
        compute.resolved_scheduler()
    for bad in ("tcp://host", "host:8786", 8786, "tcp://host:0", "http://host:8786"):
        with pytest.raises(ValueError, match=r"compute\.scheduler = .* tcp://host:8786"):
            parse_params({"compute": {"scheduler": bad}})


def test_no_stage_depends_on_where_searches_run():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        keys = [str(k) for k in stage.get("params", [])]
        assert not any(k.startswith("compute") for k in keys), f"stage {name}: {keys}"
    assert Params().compute.scheduler is None, "this machine by default"
