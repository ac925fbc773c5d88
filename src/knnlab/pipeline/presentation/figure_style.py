"""One style for every figure (:data:`STYLE`), applied per figure through a context
manager, and the figure helpers the figure modules share.

Figures are built with matplotlib's object API (``Figure``, not ``pyplot``): no backend, no
display, no global figure registry, so importing this module changes no global state and the
stages run headless. Kept apart from :mod:`knnlab.pipeline.presentation.figures` so that tune,
which draws only the search-speed figure (:mod:`knnlab.pipeline.presentation.timing_figures`),
does not depend on the plot stage's figures: an edit there re-runs plot, not the grid search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from knnlab.pipeline.io.files import atomic_path

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    with mpl.rc_context(STYLE):
        yield


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``pyplot.subplots`` without pyplot: a standalone Figure and its axes (``layout``:
    matplotlib's, e.g. ``"constrained"``, which keeps colour bars clear of the next panel's
    labels)."""
    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize, layout=kwargs.pop("layout", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig: Figure, path: Path | str) -> None:
    """Write ``fig`` as PNG atomically, without the version stamp (stable bytes)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight")


def class_colours(n: int) -> list:
    """``n`` distinct colours: tab10, or tab20 beyond 10 (repeating beyond 20)."""
    cmap = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
