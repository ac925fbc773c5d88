"""dvc.yaml's dependencies are exact: each stage depends on every knnlab module it runs and on
no other, and on exactly the params.yaml keys it reads. A stale result after a code edit (a
stage whose dependency list missed a module) cannot come back unnoticed.

The modules a stage runs are derived from the source: ``python -m knnlab <stage>`` runs
``knnlab/__main__.py``, the top-level imports of ``knnlab/cli.py`` (its imports inside
functions serve the other commands) and ``knnlab/stages/<stage>.py``; from there every import
of a knnlab module is followed, at any depth and also inside functions (a function may run),
plus any string naming a knnlab module (``importlib`` or MLflow's ``loader_module``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

import knnlab

from ..conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "knnlab"
DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]
MODULE_NAME = re.compile(r"^knnlab(\.[A-Za-z_]\w*)+$")


def module_file(name: str) -> Path | None:
    """The file of knnlab module ``name`` (a package's ``__init__.py``), or None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def with_parents(name: str) -> set[str]:
    """Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """The knnlab modules that the code of ``path`` imports or names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "knnlab"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "knnlab":
                continue
            found.add(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}"):
                    found.add(f"{base}.{alias.name}")
                elif base == "knnlab" and alias.name in knnlab.LAZY_EXPORTS:
                    found.add(knnlab.LAZY_EXPORTS[alias.name])
        elif (
            path != PACKAGE / "__init__.py"  # its lazy exports resolve where they are imported
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_NAME.match(node.value)
            and module_file(node.value)
        ):
            found.add(node.value)
    unresolved = sorted(name for name in found if module_file(name) is None)
    assert not unresolved, f"{path}: imports {unresolved}, which are not knnlab modules"
    return set().union(*(with_parents(name) for name in found))


def stage_modules(stage: str) -> set[Path]:
    """Every knnlab source file that ``python -m knnlab <stage>`` can run."""
    # cli loads params.yaml for every command that is a stage (and for `knnlab params`),
    # importing the params module inside the function that does it.
    roots = {"knnlab", "knnlab.__main__", "knnlab.cli", "knnlab.pipeline.io.params"}
    todo = list(imported_modules(PACKAGE / "cli.py", top_level_only=True) | roots)
    command = STAGES[stage]["cmd"].split()
    assert command[:3] == ["python", "-m", "knnlab"], f"{stage}: unexpected cmd {command}"
    if command[3] != "params":
        todo.extend(with_parents(f"knnlab.stages.{command[3]}"))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        # cli.py's imports inside functions serve the other commands (see its comment).
        todo.extend(imported_modules(path, top_level_only=name == "knnlab.cli") - seen)
    return {module_file(name) for name in seen}


def declared_code(stage: str) -> set[Path]:
    deps = [REPO_ROOT / dep for dep in STAGES[stage].get("deps", [])]
    return {dep.resolve() for dep in deps if dep.suffix == ".py"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_exactly_the_code_it_runs(stage):
    needed, declared = stage_modules(stage), declared_code(stage)
    rel = lambda files: sorted(str(f.relative_to(REPO_ROOT)) for f in files)  # noqa: E731
    assert not needed - declared, (
        f"dvc.yaml stage {stage!r} runs {rel(needed - declared)} but does not depend on it: an "
        f"edit there would leave `dvc repro` serving stale results. Its deps should be: "
        f"{rel(needed)}"
    )
    assert not declared - needed, (
        f"dvc.yaml stage {stage!r} depends on {rel(declared - needed)}, which it never runs: "
        f"an edit there re-runs it for nothing. Its deps should be: {rel(needed)}"
    )


def test_the_derivation_sees_function_level_and_lazy_imports():
    # evaluate imports the estimators; fetch must not (lazy package exports).
    assert PACKAGE / "estimators.py" in stage_modules("evaluate")
    assert PACKAGE / "_kernels.py" in stage_modules("train"), "train -> estimators -> neighbors"
    assert PACKAGE / "estimators.py" not in stage_modules("fetch")
    predict = PACKAGE / "pipeline" / "predict.py"
    assert predict not in stage_modules("tune"), "cli's predict import is not a stage's"


# The params.yaml keys each stage reads, with the reason where it is not obvious. A key that
# only names where runs are logged (mlflow.*) is not a dependency: renaming the experiment
# must not re-run the grid search.
STAGE_PARAMS = {
    "params": set(),  # depends on the whole file, as a file
    "fetch": {
        "data.dataset",
        "data.path",
        "data.label_column",
        "data.moons",
        "data.features",
        "data.max_rows",
        "data.seed",
    },
    "split": {  # data.positive_class: checked early
        "split.test_size",
        "split.seed",
        "split.near_duplicate",
        "split.deduplicate",
        "data.positive_class",
    },
    "train": {"model", "conformal"},
    "audit": set(),  # the model's params come from the model file
    "exact": {"model.scale", "tune.grid.n_neighbors"},
    "tune": {"tune", "model.scale", "model.seed"},  # seed: approximate indexes
    # The model file and tune's summary carry the models; stats.* draws the intervals.
    "evaluate": {"stats"},
    "plot": {"data.positive_class"},
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_are_exactly_those_it_reads(stage):
    declared = set(STAGES[stage].get("params", []))
    assert declared == STAGE_PARAMS[stage], f"stage {stage!r}: params {sorted(declared)}"
    assert not any(key.startswith("mlflow") for key in declared), "where runs go is not a result"


def test_every_stage_checks_the_whole_params_file_first():
    assert "params.yaml" in STAGES["params"]["deps"], "any edit to params.yaml re-runs the check"
    stamp = STAGES["params"]["outs"][0]
    stamp = stamp if isinstance(stamp, str) else next(iter(stamp))
    assert stamp in STAGES["fetch"]["deps"], "fetch (so every stage) comes after the check"


def test_fetch_depends_on_the_data_file():
    assert "${data.path}" in STAGES["fetch"]["deps"], "editing data.path's file re-runs fetch"
