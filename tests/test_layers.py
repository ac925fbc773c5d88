"""The package's layers, checked from the source: imports only go down.

    core                    knnlab/*.py, knnlab/backends/ (search, estimators, metrics, ...)
    pipeline.io             knnlab/pipeline/io/ (params, paths, files, formats, records, model file)
    pipeline.data           knnlab/pipeline/data/ (datasets by source, the split)
    pipeline.analysis       knnlab/pipeline/analysis/ (training, tuning, evaluation, ...)
    pipeline.presentation   knnlab/pipeline/presentation/ (figures, the report)
    tracking                knnlab/tracking/ (the only code that imports MLflow)
    stages                  knnlab/stages/ (the DVC stage entry points)
    cli                     knnlab/cli.py, knnlab/__main__.py

A module may import its own layer and the layers above it in this list, never one below: the
core knows nothing of files, params or MLflow, so it can be used (and tested) on arrays alone;
the pipeline's files know nothing of the analyses, and the analyses nothing of how they are
drawn. Every import counts, also those inside functions. A module in a folder this list does
not name fails :func:`test_every_module_has_a_layer`: a new folder gets its place here first.
And the modules' import graph has no cycle (:func:`import_graph`, :func:`find_cycles`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "knnlab"
LAYERS = (
    "core",
    "pipeline.io",
    "pipeline.data",
    "pipeline.analysis",
    "pipeline.presentation",
    "tracking",
    "stages",
    "cli",
)
PIPELINE = {"pipeline.io", "pipeline.data", "pipeline.analysis", "pipeline.presentation"}
# Third-party packages a layer must not import (at any depth of its own code).
FORBIDDEN = {
    "core": {"mlflow", "dvc", "matplotlib", "yaml", "PIL"},
    **{layer: {"mlflow", "dvc"} for layer in PIPELINE},
    "tracking": {"dvc"},
    "stages": {"dvc", "mlflow"},  # through knnlab.tracking only
    "cli": {"dvc", "mlflow"},
}
# Every folder of the package and its layer; the package's own modules are the core.
FOLDERS = {
    "backends": "core",
    "pipeline.io": "pipeline.io",
    "pipeline.data": "pipeline.data",
    "pipeline.analysis": "pipeline.analysis",
    "pipeline.presentation": "pipeline.presentation",
    "tracking": "tracking",
    "stages": "stages",
}


class UnplacedModule(ValueError):
    """A module in a folder that has no layer."""


def layer_of(module: str) -> str:
    """The layer of a dotted module name of knnlab; :class:`UnplacedModule` if its folder
    has none, ``ValueError`` for a name outside knnlab."""
    parts = module.split(".")
    if parts[0] != "knnlab":
        raise ValueError(module)
    if len(parts) == 1:
        return "core"
    if module == "knnlab.pipeline":  # the package's docstring only: the lowest pipeline layer
        return "pipeline.io"
    if module in ("knnlab.cli", "knnlab.__main__"):
        return "cli"
    for depth in (2, 1):
        folder = ".".join(parts[1 : 1 + depth])
        if folder in FOLDERS and len(parts) > depth:
            return FOLDERS[folder]
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file():
        return "core"
    raise UnplacedModule(f"{module}: its folder has no layer; add it to tests/test_layers.py")


def source_modules(package: Path = PACKAGE) -> list[tuple[str, Path]]:
    """(dotted name, path) of every module under the package directory ``package``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
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
            if base.split(".")[0] == name.split(".")[0]:  # from own package: may be modules
                names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def module_of(imported: str) -> str:
    """The knnlab module an imported dotted name lives in: its longest prefix that is a module
    or package (``knnlab.options.power_kind`` -> ``knnlab.options``)."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = PACKAGE.parent.joinpath(*parts[:end])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:end])
    raise UnplacedModule(f"{imported}: no such knnlab module")


@pytest.mark.parametrize(("name", "path"), source_modules(), ids=lambda x: str(x))
def test_imports_only_go_down(name, path):
    own = LAYERS.index(layer_of(name))
    upward = []
    for imported in sorted(imports_of(path, name)):
        top = imported.split(".")[0]
        if top == "knnlab":
            target = layer_of(module_of(imported))
            if LAYERS.index(target) > own:
                upward.append(f"{imported} ({target})")
        elif top in FORBIDDEN[layer_of(name)]:
            upward.append(f"{imported} (third-party, not for the {layer_of(name)} layer)")
    assert not upward, f"{name} ({layer_of(name)} layer) imports {upward}"


def test_every_module_has_a_layer():
    unplaced = []
    for name, _ in source_modules():
        try:
            layer_of(name)
        except UnplacedModule as error:
            unplaced.append(str(error))
    assert not unplaced, unplaced
    assert {layer_of(name) for name, _ in source_modules()} == set(LAYERS), "a layer is empty"


def test_a_module_in_an_unknown_folder_is_not_placed():
    with pytest.raises(UnplacedModule, match=r"knnlab\.pipeline\.misc\.thing: its folder"):
        layer_of("knnlab.pipeline.misc.thing")
    with pytest.raises(UnplacedModule):
        layer_of("knnlab.newfolder.module")
    assert layer_of("knnlab.pipeline.analysis.tuning") == "pipeline.analysis"
    assert layer_of("knnlab.backends.hnsw") == "core"


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


# --- cycles -------------------------------------------------------------------------------


def module_strings(path: Path, modules) -> set[str]:
    """String constants in ``path`` that are exactly the name of one of ``modules``: the
    imports done through ``importlib.import_module`` from a registry (knnlab.search's
    ``ENGINES``, the package's lazy ``LAZY_EXPORTS``, an MLflow loader module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules
    }


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Which modules of ``package`` (a package directory) each of its modules imports: every
    ``import`` (also inside functions; relative ones resolved by :func:`imports_of`) and
    every string constant naming one of its modules (:func:`module_strings`).

    An imported name maps to the longest module prefix of it (``from knnlab.search import
    kneighbors``: ``knnlab.search``), plus that module's parent packages, whose
    ``__init__`` runs first (``knnlab.pipeline.io.params`` implies ``knnlab.pipeline``).
    The top package is the exception: its ``__init__`` imports no module of its own
    eagerly (:func:`test_the_top_package_imports_nothing_of_its_own_eagerly`), so ``import
    knnlab`` or ``from knnlab import search`` gives no edge to it; only a name that is not
    a module (``from knnlab import KNNClassifier``, a lazy attribute) does, and the top
    package's edges are its lazy exports (the string constants). Self-edges are dropped."""
    modules = dict(source_modules(package))
    root = package.name
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in imports_of(path, name) | module_strings(path, modules):
            parts = imported.split(".")
            if parts[0] != root or imported == root:
                continue
            prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
            target = next(prefix for prefix in prefixes if prefix in modules)
            edges.add(target)
            edges |= {prefix for prefix in prefixes[prefixes.index(target) + 1 : -1]}
        graph[name] = edges - {name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a
    path from its smallest module back to it: ``[a, b, a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, c) for c in components if len(c) > 1]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's smallest module back to it, inside it (BFS)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def _show(cycles: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_package_has_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, f"import cycles (each one path): {_show(cycles)}"


def test_the_graph_sees_imports_inside_functions_and_registry_strings():
    graph = import_graph()
    assert "knnlab.distributed" in graph["knnlab.search"], (
        "search imports distributed inside kneighbors(): that import is an edge"
    )
    assert {"knnlab.backends.hnsw", "knnlab.backends.ivf", "knnlab.backends.trees"} <= graph[
        "knnlab.search"
    ], "search imports its engines by name from ENGINES: those strings are edges"
    assert "knnlab.backends" in graph["knnlab.search"], (
        "importing knnlab.backends.x runs knnlab.backends' __init__ first: an edge to it"
    )
    assert "knnlab" not in graph["knnlab.estimators"], (
        "from knnlab import search imports the submodule; the top __init__ adds nothing"
    )


def test_the_top_package_imports_nothing_of_its_own_eagerly():
    """What :func:`import_graph` assumes about ``knnlab/__init__.py``: its module-level
    imports name no knnlab module (its exports are imported lazily, by name)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    eager = [
        ast.unparse(node)
        for node in tree.body
        if (isinstance(node, ast.ImportFrom) and (node.level or node.module == "knnlab"))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("knnlab."))
        or (isinstance(node, ast.Import) and any(a.name.startswith("knnlab") for a in node.names))
    ]
    assert not eager, f"knnlab/__init__.py imports {eager} at import time"


def _package(root: Path, name: str, files: dict[str, str]) -> Path:
    package = root / name
    for relative, text in {"__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text, encoding="utf-8")
    return package


def test_a_planted_two_module_cycle_is_found(tmp_path):
    package = _package(
        tmp_path,
        "planted",
        {
            "a.py": "from planted import b\n",
            "b.py": "def f():\n    from . import a  # inside a function: still an edge\n",
            "c.py": "from planted.a import something\n",  # into the cycle, not part of it
        },
    )
    cycles = find_cycles(import_graph(package))
    assert cycles == [["planted.a", "planted.b", "planted.a"]], (
        f"expected planted.a -> planted.b -> planted.a, found {_show(cycles) or 'none'}"
    )


def test_a_planted_three_module_cycle_through_a_registry_string_is_found(tmp_path):
    package = _package(
        tmp_path,
        "planted",
        {
            "x.py": "import planted.y\n",
            "y.py": "ENGINES = {'z': 'planted.sub.z'}  # imported by name\n",
            "sub/__init__.py": "",
            "sub/z.py": "from ..x import thing\n",
            "ok.py": "import planted.x\n",
        },
    )
    graph = import_graph(package)
    assert graph["planted.y"] == {"planted.sub", "planted.sub.z"}, (
        f"y names planted.sub.z, which implies its package planted.sub; got {graph['planted.y']}"
    )
    cycles = find_cycles(graph)
    assert cycles == [["planted.sub.z", "planted.x", "planted.y", "planted.sub.z"]], (
        f"expected the 3-module cycle, found {_show(cycles) or 'none'}"
    )


def test_an_acyclic_package_has_no_cycle(tmp_path):
    package = _package(
        tmp_path,
        "planted",
        {
            "__init__.py": "EXPORTS = {'Thing': 'planted.b'}  # lazy, PEP 562\n",
            "a.py": "from planted import b\n",
            "b.py": "import os\n",
            "c.py": "import planted\n",
            "d.py": "from planted import Thing\n",
        },
    )
    graph = import_graph(package)
    assert graph["planted.a"] == {"planted.b"}, f"a imports b only, got {graph['planted.a']}"
    assert graph["planted.c"] == set(), "import of the top package alone: no edge"
    assert graph["planted.d"] == {"planted"}, "a lazy attribute of the top package: an edge"
    assert graph["planted"] == {"planted.b"}, "the top package's lazy exports are its edges"
    assert not find_cycles(graph), f"no cycle planted, found {_show(find_cycles(graph))}"
