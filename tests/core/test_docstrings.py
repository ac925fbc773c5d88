"""Every public function, class and method of the core modules has numpydoc sections.

A callable taking parameters (besides self/cls) documents them under ``Parameters``; one that
returns a value has ``Returns`` (or ``Yields``); a class whose ``__init__`` takes parameters
documents them in the class docstring. numpydoc is not a dependency, so the sections are
found with a regex: the name alone on a line, underlined by as many dashes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator

import pytest

MODULES = (
    "knnlab.metrics",
    "knnlab.neighbors",
    "knnlab.estimators",
    "knnlab.stats",
    "knnlab.model_selection",
    "knnlab.conformal",
    "knnlab.valuation",
)


def has_section(doc: str, name: str) -> bool:
    """Whether the cleaned docstring ``doc`` has the numpydoc section ``name``."""
    pattern = rf"^{name}[ \t]*\n-{{{len(name)}}}[ \t]*$"
    return re.search(pattern, doc, re.MULTILINE) is not None


def public_objects(module) -> Iterator[tuple[str, object]]:
    """(qualified name, object) of each public function and class the module defines, and
    of each public method of those classes defined in the module (inherited from one of its
    private bases too); dunder methods are left out."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if obj.__module__ != module.__name__:
            continue  # imported
        yield f"{module.__name__}.{name}", obj
        if inspect.isclass(obj):
            for attr in sorted(dir(obj)):
                if attr.startswith("_"):
                    continue
                raw = inspect.getattr_static(obj, attr)
                if isinstance(raw, staticmethod | classmethod):
                    raw = raw.__func__
                if inspect.isfunction(raw) and raw.__module__ == module.__name__:
                    yield f"{module.__name__}.{name}.{attr}", raw


def takes_parameters(func) -> bool:
    """Whether ``func`` takes a parameter other than self or cls."""
    return any(name not in ("self", "cls") for name in inspect.signature(func).parameters)


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of functions or classes nested in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield child
        yield from _own_nodes(child)


def returns_value(func) -> bool:
    """Whether ``func`` yields, or has a ``return`` with a value other than None."""
    if inspect.isgeneratorfunction(func):
        return True
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    definition = tree.body[0]
    for node in _own_nodes(definition):
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if isinstance(node, ast.Return) and node.value is not None:
            returns_none = isinstance(node.value, ast.Constant) and node.value.value is None
            if not returns_none:
                return True
    return False


def _class_init(cls):
    """The ``__init__`` a class's instances run, when written in Python (else None)."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            init = vars(klass)["__init__"]
            return init if inspect.isfunction(init) else None
    return None


def problems(name: str, obj) -> list[str]:
    """What ``obj``'s docstring lacks, each naming ``name``; empty when nothing."""
    raw = obj.__doc__  # not inspect.getdoc: a method must not borrow its parent's docstring
    if not raw or not raw.strip():
        return [f"{name}: no docstring"]
    doc = inspect.cleandoc(raw)
    found = []
    if inspect.isclass(obj):
        init = _class_init(obj)
        if init is not None and takes_parameters(init) and not has_section(doc, "Parameters"):
            found.append(f"{name}: __init__ takes parameters but no 'Parameters' section")
        return found
    if takes_parameters(obj) and not has_section(doc, "Parameters"):
        found.append(f"{name}: takes parameters but no 'Parameters' section")
    if returns_value(obj) and not (has_section(doc, "Returns") or has_section(doc, "Yields")):
        found.append(f"{name}: returns a value but no 'Returns' (or 'Yields') section")
    return found


@pytest.mark.parametrize("module_name", MODULES)
def test_public_objects_have_numpydoc_sections(module_name):
    module = importlib.import_module(module_name)
    objects = list(public_objects(module))
    assert objects, f"{module_name}: no public function or class found"
    missing = [line for name, obj in objects for line in problems(name, obj)]
    assert not missing, "numpydoc sections missing:\n" + "\n".join(missing)


def _undocumented(x, y):
    """Add."""
    return x + y


def _documented(x, y):
    """Add.

    Parameters
    ----------
    x : int
    y : int

    Returns
    -------
    int
    """
    return x + y


class _Undocumented:
    """A class."""

    def __init__(self, size):
        self.size = size


def test_the_check_names_what_is_missing():
    assert problems("_documented", _documented) == []
    assert problems("_undocumented", _undocumented) == [
        "_undocumented: takes parameters but no 'Parameters' section",
        "_undocumented: returns a value but no 'Returns' (or 'Yields') section",
    ]
    assert problems("_Undocumented", _Undocumented) == [
        "_Undocumented: __init__ takes parameters but no 'Parameters' section"
    ]
    # A section name in running text, or an underline of the wrong length, is not a section.
    assert not has_section("Parameters are those of X.\n---", "Parameters")
    assert not has_section("Returns\n---", "Returns")
