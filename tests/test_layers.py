"""The package's layers, checked from the source: imports only go down.

    core          knnlab/*.py (search, estimators, voting, metrics, model selection)
    pipeline      knnlab/pipeline/ (params, paths, files, datasets, model file, figures, report)
    tracking      knnlab/tracking/ (the only code that imports MLflow)
    stages        knnlab/stages/ (the DVC stage entry points)
    cli           knnlab/cli.py, knnlab/__main__.py

A module may import its own layer and the layers above it in this list, never one below: the
core knows nothing of files, params or MLflow, so it can be used (and tested) on arrays alone.
Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "knnlab"
LAYERS = ("core", "pipeline", "tracking", "stages", "cli")
# Third-party packages a layer must not import (at any depth of its own code).
FORBIDDEN = {
    "core": {"mlflow", "dvc", "matplotlib", "yaml", "PIL"},
    "pipeline": {"mlflow", "dvc"},
    "tracking": {"dvc"},
    "stages": {"dvc", "mlflow"},  # through knnlab.tracking only
    "cli": {"dvc", "mlflow"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "knnlab":
        raise ValueError(module)
    if len(parts) == 1:
        return "core"
    if parts[1] in ("pipeline", "tracking", "stages"):
        return parts[1]
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return "core"


def source_modules() -> list[tuple[str, object]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def imports_of(path, name: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            if base.split(".")[0] == "knnlab":
                names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize(("name", "path"), source_modules(), ids=lambda x: str(x))
def test_imports_only_go_down(name, path):
    own = LAYERS.index(layer_of(name))
    upward = []
    for imported in sorted(imports_of(path, name)):
        top = imported.split(".")[0]
        if top == "knnlab":
            try:
                target = layer_of(imported)
            except ValueError:
                continue
            if LAYERS.index(target) > own:
                upward.append(f"{imported} ({target})")
        elif top in FORBIDDEN[layer_of(name)]:
            upward.append(f"{imported} (third-party, not for the {layer_of(name)} layer)")
    assert not upward, f"{name} ({layer_of(name)} layer) imports {upward}"


def test_every_module_has_a_layer():
    assert {layer_of(name) for name, _ in source_modules()} == set(LAYERS)


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return {name.split(".")[0] for name in done.stdout.split()}


def test_importing_knnlab_loads_no_heavy_framework():
    loaded = _modules_loaded_by("import knnlab")
    assert not loaded & {"matplotlib", "mlflow", "dvc", "sklearn", "numba", "pandas"}


def test_the_command_line_parser_loads_no_heavy_framework():
    """``knnlab --help`` and the stage dispatch import only the CLI, params and paths; each
    command imports what it needs when it runs."""
    loaded = _modules_loaded_by("import knnlab.cli; knnlab.cli.build_parser()")
    heavy = {"matplotlib", "mlflow", "dvc", "sklearn", "numba", "pandas", "scipy", "numpy"}
    assert not loaded & heavy
