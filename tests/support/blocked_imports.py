"""Child Pythons in which a package is not installed, as far as imports can tell: the path
finder skips it, so ``importlib.util.find_spec(name)`` is None and ``import name`` fails as
it would without the package; ``importlib.metadata`` does not list the distributions named
either. Real processes, nothing uninstalled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The pipeline extra (pyproject.toml) and what only it brings: hidden, the rest is knnlab's
# core, as in an environment built from the core alone (a served model's).
PIPELINE_PACKAGES = ("dvc", "matplotlib", "pyarrow", "PIL", "ruamel", "celery", "flask",
                     "alembic", "sqlalchemy", "docker", "gunicorn")  # fmt: skip
# mlflow-skinny stays: MLflow's scoring server, which a served model runs on.
PIPELINE_DISTRIBUTIONS = ("dvc", "matplotlib", "pyarrow", "pillow", "ruamel.yaml", "celery",
                          "flask", "alembic", "sqlalchemy", "docker", "gunicorn",
                          "mlflow")  # fmt: skip


def without_package(name: str, *more: str, distributions: tuple[str, ...] = ()) -> str:
    """Python code that, run first in a process (``python -c`` or a ``sitecustomize.py``),
    hides the top-level packages ``name, *more`` from every later import, and the
    ``distributions`` (lower-case names) from ``importlib.metadata``."""
    names = (name, *more)
    return f"""
import importlib.machinery, sys

class PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in {names!r}:
            return None
        return super().find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        found = super().find_distributions(*args, **kwargs)
        return (d for d in found if (d.metadata["Name"] or "").lower() not in {distributions!r})

sys.meta_path[:] = [
    PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""


def run_core_only(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` (``python -c``, with ``args``) with the pipeline extra hidden
    (:data:`PIPELINE_PACKAGES`, :data:`PIPELINE_DISTRIBUTIONS`); the names hidden are
    ``HIDDEN`` in it."""
    prelude = without_package(*PIPELINE_PACKAGES, distributions=PIPELINE_DISTRIBUTIONS)
    prelude += f"HIDDEN = {PIPELINE_PACKAGES!r}\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args], cwd=cwd, capture_output=True, text=True
    )
