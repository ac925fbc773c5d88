"""Child Pythons in which a package is not installed, as far as imports can tell: the path
finder skips it, so ``importlib.util.find_spec(name)`` is None and ``import name`` fails as
it would without the package. Real processes, nothing uninstalled."""

from __future__ import annotations


def without_package(name: str) -> str:
    """Python code that, run first in a process (``python -c`` or a ``sitecustomize.py``),
    hides the top-level package ``name`` from every later import."""
    return f"""
import importlib.machinery, sys

class PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == {name!r}:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [
    PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""
