"""The tune stage's figure of search times (logged to its MLflow run; not committed, as
seconds differ on every run)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from knnlab.pipeline.presentation.figure_style import class_colours, styled, subplots


def _engine_label(row) -> str:
    index = row.get("index")
    if not isinstance(index, str) or not index:
        return row["algorithm"]
    options = " ".join(f"{name}={value}" for name, value in json.loads(index).items())
    return f"{row['algorithm']} {options}"


def search_speed_figure(timings: pd.DataFrame) -> Figure:
    """Mean fit and search seconds per algorithm and p, from the tuning searches (drawn by
    tune, logged to its run; not in the committed report, as seconds differ on every run).

    timings : one row per (fold, p, algorithm) with fit_seconds and search_seconds, and per
        set of index options (an ``index`` column, JSON) for an approximate algorithm, drawn
        as its own bar ("hnsw ef_search=16"); an engine absent at a p has no bar there.
    """
    timings = timings.assign(algorithm=[_engine_label(row) for _, row in timings.iterrows()])
    summary = timings.groupby(["p", "algorithm"], sort=True)[
        ["fit_seconds", "search_seconds"]
    ].mean()
    ps = summary.index.get_level_values("p").unique()
    algorithms = timings["algorithm"].unique()
    summary = summary.reindex(pd.MultiIndex.from_product([ps, algorithms]))  # NaN: no bar
    width = 0.8 / len(algorithms)
    with styled():
        fig, (ax_fit, ax_search) = subplots(1, 2, figsize=(11, 4.2))
        colours = class_colours(len(algorithms))
        for a, (algorithm, colour) in enumerate(zip(algorithms, colours, strict=True)):
            x = np.arange(len(ps)) + (a - (len(algorithms) - 1) / 2) * width
            for ax, column in ((ax_fit, "fit_seconds"), (ax_search, "search_seconds")):
                values = [summary.loc[(p, algorithm), column] for p in ps]
                ax.bar(x, values, width, color=colour, label=algorithm)
        for ax, what in ((ax_fit, "fit"), (ax_search, "search (k_max neighbours of each fold)")):
            ax.set_xticks(range(len(ps)), [f"p={p}" for p in ps])
            ax.set_ylabel("seconds (mean over folds)")
            ax.set_title(f"Time to {what}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig
