"""The plot stage's figures as pure functions: arrays and tables in, a matplotlib Figure
out, in the one style of :mod:`knnlab.pipeline.presentation.figure_style`."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from knnlab import metrics
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary
from knnlab.pipeline.presentation.figure_style import class_colours, styled, subplots
from knnlab.pipeline.presentation.tradeoff_figures import exact_rows


def confusion_matrix_figure(cm: np.ndarray, labels: list[str], title: str) -> Figure:
    """Counts, and row-normalised rates with the diagonal zeroed (where the errors go).

    cm : ndarray of shape (n_classes, n_classes), rows = true class, columns = predicted.
    """
    with styled():
        n = len(labels)
        size = max(4.0, 0.45 * n + 2.5)
        # Constrained: each colour bar keeps clear of the next panel's tick labels and
        # axis label (long class names, as Fashion-MNIST's, pushed them into it).
        fig, (ax_counts, ax_errors) = subplots(
            1, 2, figsize=(2 * size + 1, size), layout="constrained"
        )
        rows = cm.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
        np.fill_diagonal(rates, 0.0)
        panels = (
            (ax_counts, cm, "Counts", "d", "Blues"),
            (ax_errors, rates, "Error rate per true class (diagonal zeroed)", ".2f", "Reds"),
        )
        for ax, values, subtitle, fmt, cmap in panels:
            image = ax.imshow(values, cmap=cmap)
            ax.grid(False)
            ax.set_title(subtitle)
            ax.set_xlabel("Predicted label")
            ax.set_ylabel("True label")
            ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0)
            ax.set_yticks(range(n), labels)
            high = values.max() if values.size else 0
            for (i, j), v in np.ndenumerate(values):
                if v:
                    ax.text(
                        j,
                        i,
                        format(v, fmt),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if v > 0.6 * high else "black",
                    )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.suptitle(title, fontweight="bold")
        return fig


def cv_score_figure(
    cv_results: pd.DataFrame, scorer: str, best: dict, one_se: dict | None = None
) -> Figure:
    """Mean CV score against k, one line per (p, weights), with +/- 1 standard error bands;
    the best candidate marked and, given ``one_se``, the one-SE threshold drawn and the
    one-SE pick marked where it differs from the best.

    cv_results : DataFrame with ``param_n_neighbors``, ``param_p``, ``param_weights``,
        ``mean_test_{scorer}`` and ``sem_test_{scorer}`` columns; the exact algorithms'
        rows are drawn (they all score the same; approximate candidates have their own
        figure, :mod:`knnlab.pipeline.presentation.tradeoff_figures`). A table without
        ``sem_test_{scorer}`` (written by an older knnlab) gets +/- 1 std bands instead.
    best : the best candidate's params (``n_neighbors``, ``p``, ``weights``).
    one_se : the one-SE pick, ``{"params", "score", "threshold", ...}`` as in
        ``GridSearchResult.picks["one_se"]``, or None.
    """
    mean_col = f"mean_test_{scorer}"
    band_col, band = f"sem_test_{scorer}", "1 SE"
    if band_col not in cv_results:
        band_col, band = f"std_test_{scorer}", "1 std"
    rows = exact_rows(cv_results).drop_duplicates(["param_n_neighbors", "param_p", "param_weights"])
    styles = {"uniform": "-", "distance": "--"}

    def mean_of(params: dict):
        row = rows[
            (rows["param_n_neighbors"] == params["n_neighbors"])
            & (rows["param_p"] == params["p"])
            & (rows["param_weights"] == params["weights"])
        ]
        return None if row.empty else row[mean_col].iloc[0]

    with styled():
        fig, ax = subplots(figsize=(7.5, 4.5), layout="constrained")
        colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (p, by_p) in enumerate(rows.groupby("param_p", sort=True)):
            for weights, line in by_p.groupby("param_weights", sort=True):
                line = line.sort_values("param_n_neighbors")
                k = line["param_n_neighbors"].to_numpy()
                mean, spread = line[mean_col].to_numpy(), line[band_col].to_numpy()
                colour = colours[i % len(colours)]
                ax.plot(
                    k,
                    mean,
                    styles.get(weights, ":"),
                    marker="o",
                    markersize=3,
                    color=colour,
                    label=f"p={p}, {weights}",
                )
                ax.fill_between(k, mean - spread, mean + spread, color=colour, alpha=0.12)
        if one_se is not None:
            ax.axhline(
                one_se["threshold"],
                linestyle=":",
                linewidth=1,
                color="grey",
                label=f"one-SE line: best − 1 SE = {one_se['threshold']:.4f}",
            )
        best_mean = mean_of(best)
        if best_mean is not None:
            ax.plot(
                best["n_neighbors"],
                best_mean,
                marker="*",
                markersize=16,
                color="black",
                linestyle="none",
                label=f"best: k={best['n_neighbors']}, p={best['p']}, {best['weights']}",
            )
        pick = None if one_se is None else one_se["params"]
        moved = pick is not None and any(
            pick[key] != best[key] for key in ("n_neighbors", "p", "weights")
        )
        if moved and (pick_mean := mean_of(pick)) is not None:
            ax.plot(
                pick["n_neighbors"],
                pick_mean,
                marker="D",
                markersize=9,
                markerfacecolor="none",
                markeredgewidth=1.5,
                color="black",
                linestyle="none",
                label=f"one-SE pick: k={pick['n_neighbors']}, p={pick['p']}, {pick['weights']}",
            )
        # Ticks at the grid's k (thinned to integers for a long grid): no tick at k = 0,
        # whose label ran into the lowest score's.
        ks = np.unique(rows["param_n_neighbors"].to_numpy())
        if len(ks) <= 12:
            ax.set_xticks(ks)
        else:
            ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("n_neighbors (k)")
        ax.set_ylabel(f"mean CV {scorer} (± {band})")
        ax.set_title(f"Cross-validated {scorer} against k")
        # Beside the axes, not on them: "best" still covered the p = 3 curves.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8)
        return fig


def _grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return -(-max(n, 1) // cols), cols


def sample_gallery_figure(
    images: np.ndarray, labels: list[str], title: str, max_images: int = 32
) -> Figure:
    """A grid of images with their labels.

    images : ndarray of shape (n, height, width); labels : n display strings.
    """
    n = min(len(images), max_images)
    rows, cols = _grid_shape(n)
    with styled():
        fig, axes = subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows + 0.4), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, label in zip(axes.flat, images[:n], labels[:n], strict=False):
            ax.imshow(image, cmap="gray_r", interpolation="nearest")
            ax.set_title(label, fontsize=9, fontweight="normal")
        fig.suptitle(title, fontweight="bold")
        fig.tight_layout()
        return fig


def roc_figure(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, names: list[str]):
    """One-vs-rest ROC curve per class, with micro and macro averages; AUC in the legend.

    y_true : (n,) labels; proba : (n, n_classes) scores, columns in ``classes`` order.
    """
    is_class = y_true[:, None] == classes[None, :]  # (n, n_classes)
    grid = np.linspace(0.0, 1.0, 201)
    with styled():
        fig, ax = subplots(figsize=(6.5, 5.5))
        mean_tpr = np.zeros_like(grid)
        for c, (name, colour) in enumerate(zip(names, class_colours(len(classes)), strict=True)):
            fpr, tpr, _ = metrics.roc_curve(is_class[:, c], proba[:, c])
            auc = metrics.roc_auc_score(is_class[:, c], proba[:, c])
            ax.plot(fpr, tpr, color=colour, lw=1, alpha=0.8, label=f"{name} (AUC {auc:.3f})")
            mean_tpr += np.interp(grid, fpr, tpr)
        mean_tpr /= len(classes)
        fpr, tpr, _ = metrics.roc_curve(is_class.ravel(), proba.ravel())
        micro = metrics.roc_auc_score(is_class.ravel(), proba.ravel())
        macro = metrics.roc_auc_score(y_true, proba, labels=classes)
        ax.plot(fpr, tpr, "k--", lw=2, label=f"micro-average (AUC {micro:.3f})")
        ax.plot(grid, mean_tpr, "k:", lw=2.5, label=f"macro-average (AUC {macro:.3f})")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="-.", label="chance")
        ax.set_xlabel("False positive rate")
        ax.set_ylabel("True positive rate")
        ax.set_title("ROC curves, one class vs the rest")
        ax.legend(loc="lower right", fontsize=7, ncol=1 if len(classes) <= 6 else 2)
        return fig


def precision_recall_figure(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, names: list[str]
):
    """One-vs-rest precision-recall curve per class, with micro and macro averages."""
    is_class = y_true[:, None] == classes[None, :]
    grid = np.linspace(0.0, 1.0, 201)
    with styled():
        fig, ax = subplots(figsize=(6.5, 5.5))
        mean_precision = np.zeros_like(grid)
        for c, (name, colour) in enumerate(zip(names, class_colours(len(classes)), strict=True)):
            precision, recall, _ = metrics.precision_recall_curve(is_class[:, c], proba[:, c])
            ax.step(recall, precision, where="post", color=colour, lw=1, alpha=0.8, label=name)
            # recall decreases along the arrays; interpolate on the increasing copy.
            mean_precision += np.interp(grid, recall[::-1], precision[::-1])
        mean_precision /= len(classes)
        precision, recall, _ = metrics.precision_recall_curve(is_class.ravel(), proba.ravel())
        ax.step(recall, precision, "k--", where="post", lw=2, label="micro-average")
        ax.plot(grid, mean_precision, "k:", lw=2.5, label="macro-average")
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_ylim(0, 1.02)
        ax.set_title("Precision-recall curves, one class vs the rest")
        ax.legend(loc="lower left", fontsize=7, ncol=1 if len(classes) <= 6 else 2)
        return fig


def binary_threshold_figure(
    is_positive: np.ndarray,
    score: np.ndarray,
    positive_name: str,
    target: float = 0.9,
    threshold: float | None = None,
):
    """'Is it a <positive>?': precision and recall against the decision threshold with the
    threshold for ``target`` precision marked, and the ROC curve with that point.

    is_positive : (n,) booleans; score : (n,) the positive class's probability.
    threshold : the threshold to mark, chosen elsewhere (on training folds, so the test
        split does not pick it); None chooses it on this data.
    """
    precision, recall, thresholds = metrics.precision_recall_curve(is_positive, score)
    fpr, tpr, _ = metrics.roc_curve(is_positive, score)
    if threshold is None:
        chosen = metrics.threshold_for_precision(is_positive, score, target)
        where = "here"
    else:
        chosen = metrics.rates_at_threshold(is_positive, score, threshold)
        where = "on training folds"
    with styled():
        fig, (ax_t, ax_roc) = subplots(1, 2, figsize=(12, 4.8))
        ax_t.plot(thresholds, precision[:-1], "b--", lw=2, label="precision")
        ax_t.plot(thresholds, recall[:-1], "g-", lw=2, label="recall")
        ax_t.set_xlabel("Decision threshold (probability of the positive class)")
        ax_t.set_ylabel("Precision / recall")
        ax_t.set_title(f"Is it a {positive_name}? Precision and recall against threshold")
        ax_roc.plot(fpr, tpr, "b-", lw=2, label=f"ROC (AUC {np.trapezoid(tpr, fpr):.3f})")
        ax_roc.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="-.", label="chance")
        ax_roc.set_xlabel("False positive rate")
        ax_roc.set_ylabel("True positive rate (recall)")
        ax_roc.set_title(f"Is it a {positive_name}? ROC curve")
        if chosen is not None:
            t = chosen["threshold"]
            ax_t.axvline(t, color="red", ls=":", lw=1.5)
            ax_t.plot(
                [t] * 2,
                [chosen["precision"], chosen["recall"]],
                "ro",
                label=f"threshold {t:.3g} (for {target:.0%} precision {where})",
            )
            ax_t.annotate(
                f"precision {chosen['precision']:.3f}\nrecall {chosen['recall']:.3f}",
                (t, chosen["recall"]),
                xytext=(-8, -28),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color="red",
            )
            ax_roc.plot(
                chosen["false_positive_rate"],
                chosen["recall"],
                "ro",
                ms=8,
                label=f"threshold {t:.3g}: recall {chosen['recall']:.3f}, "
                f"FPR {chosen['false_positive_rate']:.3f}",
            )
        else:
            ax_t.set_title(ax_t.get_title() + f"\n(no threshold reaches {target:.0%} precision)")
        ax_t.legend(loc="lower left", fontsize=8, framealpha=0.9, frameon=True)
        ax_roc.legend(loc="lower right", fontsize=8, framealpha=0.9, frameon=True)
        return fig


def cv_heatmap_figure(cv_results: pd.DataFrame, scorer: str) -> Figure:
    """Mean CV score over k (columns) and p (rows), one panel per weighting."""
    mean_col = f"mean_test_{scorer}"
    rows = exact_rows(cv_results).drop_duplicates(["param_n_neighbors", "param_p", "param_weights"])
    weightings = sorted(rows["param_weights"].unique())
    low, high = rows[mean_col].min(), rows[mean_col].max()
    with styled():
        fig, axes = subplots(1, len(weightings), figsize=(6 * len(weightings), 3.6), squeeze=False)
        for ax, weights in zip(axes[0], weightings, strict=True):
            table = rows[rows["param_weights"] == weights].pivot_table(
                index="param_p", columns="param_n_neighbors", values=mean_col
            )
            image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=low, vmax=high, aspect="auto")
            ax.grid(False)
            ax.set_xticks(range(table.shape[1]), [str(k) for k in table.columns])
            ax.set_yticks(range(table.shape[0]), [str(p) for p in table.index])
            ax.set_xlabel("n_neighbors (k)")
            ax.set_ylabel("Minkowski p")
            ax.set_title(f"mean CV {scorer}, {weights} weights")
            middle = (low + high) / 2
            for (i, j), v in np.ndenumerate(table.to_numpy()):
                colour = "black" if v > middle else "white"  # readable on viridis
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color=colour)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        return fig


def most_confused_pair(cm: np.ndarray) -> tuple[int, int]:
    """Indices (a, b), a < b, of the two classes most often mistaken for each other.

    cm : (n_classes, n_classes) counts, rows true, columns predicted.
    """
    errors = cm + cm.T
    np.fill_diagonal(errors, -1)
    a, b = np.unravel_index(np.argmax(np.triu(errors, 1) - np.tril(np.ones_like(errors))), cm.shape)
    return int(min(a, b)), int(max(a, b))


THUMBNAIL_INCHES = 1.2  # per image of the confused pair: 132 px at the saved 110 dpi


def confused_pair_figure(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    pair: tuple,
    names: tuple[str, str],
    per_row: int = 8,
) -> Figure:
    """Right and wrong predictions for the two most-confused classes: four rows of images,
    ``a`` as ``a``, ``a`` as ``b``, ``b`` as ``a``, ``b`` as ``b``.

    images : (n, height, width); y_true, y_pred : (n,) labels; pair : the two labels.
    """
    a, b = pair
    groups = [(a, a), (a, b), (b, a), (b, b)]
    with styled():
        # One sub-figure per row, its caption above it: as an axes title, a long caption
        # (Fashion-MNIST's "true T-shirt/top, predicted Shirt ...") made the layout shrink
        # every image to a dozen pixels.
        row_inches = THUMBNAIL_INCHES + 0.35
        fig = Figure(figsize=(THUMBNAIL_INCHES * per_row, 4 * row_inches + 0.4))
        heading, body = fig.subfigures(2, 1, height_ratios=[0.4, 4 * row_inches])
        rows = body.subfigures(4, 1)
        for subfig, (truth, predicted) in zip(rows, groups, strict=True):
            picked = np.flatnonzero((y_true == truth) & (y_pred == predicted))[:per_row]
            name_t = names[0] if truth == a else names[1]
            name_p = names[0] if predicted == a else names[1]
            axes = subfig.subplots(1, per_row, squeeze=False)[0]
            subfig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.08)
            for col, ax in enumerate(axes):
                ax.axis("off")
                if col < picked.size:
                    ax.imshow(images[picked[col]], cmap="gray_r", interpolation="nearest")
            verdict = "right" if truth == predicted else "wrong"
            subfig.suptitle(
                f"true {name_t}, predicted {name_p} ({verdict}, {picked.size} shown)",
                x=0.01,
                ha="left",
                fontsize=9,
                fontweight="normal",
                color="black" if truth == predicted else "firebrick",
            )
        heading.suptitle(f"Most-confused pair: {names[0]} and {names[1]}", fontweight="bold")
        return fig


def probability_surface_figure(
    model,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    feature_names: list[str],
    names: dict,
    resolution: int = 200,
) -> Figure:
    """Decision surface of a 2-feature model: P(positive class) for binary problems, the
    confidence (top probability minus the second) for multi-class, over a mesh; train and
    test points drawn with distinct markers per split and colours per class.

    splits : {"train": (X, y), "test": (X, y)}, X of shape (n, 2).
    """
    X_all = np.vstack([X for X, _ in splits.values()])
    margin = 0.1 * (X_all.max(axis=0) - X_all.min(axis=0)) + 1e-9
    low, high = X_all.min(axis=0) - margin, X_all.max(axis=0) + margin
    xx, yy = np.meshgrid(
        np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    )
    proba = model.predict_proba(np.column_stack([xx.ravel(), yy.ravel()]))
    classes = model.classes_
    colours = class_colours(len(classes))
    with styled():
        fig, ax = subplots(figsize=(7.5, 6))
        if len(classes) == 2:
            surface = proba[:, 1].reshape(xx.shape)
            label = f"P(class {names.get(str(classes[1]), classes[1])})"
            contour = ax.contourf(
                xx, yy, surface, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75
            )
        else:
            top2 = np.sort(proba, axis=1)[:, -2:]
            surface = (top2[:, 1] - top2[:, 0]).reshape(xx.shape)
            label = "confidence: top probability minus the second"
            winner = np.argmax(proba, axis=1).reshape(xx.shape)
            contour = ax.contourf(
                xx, yy, surface, levels=np.linspace(0, 1, 11), cmap="Greys", alpha=0.6
            )
            ax.contour(
                xx, yy, winner, levels=np.arange(len(classes)) + 0.5, colors="k", linewidths=0.8
            )
        fig.colorbar(contour, ax=ax, label=label)
        markers = {"train": "o", "test": "^"}
        for split, (X, y) in splits.items():
            for c, colour in zip(classes, colours, strict=True):
                mask = y == c
                ax.scatter(
                    X[mask, 0],
                    X[mask, 1],
                    marker=markers.get(split, "s"),
                    color=colour,
                    edgecolors="k",
                    linewidths=0.5,
                    s=28 if split == "train" else 48,
                    alpha=0.9,
                    label=f"{split}: {names.get(str(c), c)}",
                )
        ax.set_xlabel(feature_names[0])
        ax.set_ylabel(feature_names[1])
        ax.set_title(f"Decision surface (k={model.n_neighbors}, p={model.p}, {model.weights})")
        ax.legend(loc="upper left", fontsize=7, ncol=2, framealpha=0.7, frameon=True)
        return fig


@dataclass(frozen=True)
class TestPredictions:
    """The configured model on the test split: y_true, y_pred (n,), proba (n, n_classes)
    with columns in ``classes`` order, X (n, d) the test features."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    classes: np.ndarray
    X: np.ndarray


def pipeline_figures(
    split: SplitInfo,
    test: TestPredictions,
    tuned: TuneSummary,
    cv_results: pd.DataFrame,
    binary: dict | None = None,
    surface=None,
) -> dict[str, Figure]:
    """Every figure of the report that fits these data, by file name.

    Always the confusion matrix, ROC and precision-recall curves and the CV figures (the
    search speed, which differs on every run, is tune's: :func:`search_speed_figure`); the
    binary threshold figure when ``binary`` (from
    :func:`knnlab.pipeline.analysis.evaluation.binary_analysis`, plus ``positive``) is given; for
    image data a sample gallery and, when there are errors, the most-confused pair; for
    2-feature data the decision surface of ``surface`` = (fitted model, {"train": (X, y)}).
    """
    display = [split.display_name(c) for c in test.classes]
    cm = metrics.confusion_matrix(test.y_true, test.y_pred, labels=test.classes)
    made = {
        "confusion_matrix.png": confusion_matrix_figure(
            cm, display, f"Confusion matrix: configured model on the {split.name} test split"
        ),
        "roc_curves.png": roc_figure(test.y_true, test.proba, test.classes, display),
        "precision_recall_curves.png": precision_recall_figure(
            test.y_true, test.proba, test.classes, display
        ),
    }
    if binary is not None:
        column = int(np.flatnonzero(test.classes == binary["positive"])[0])
        made["binary_threshold.png"] = binary_threshold_figure(
            test.y_true == binary["positive"],
            test.proba[:, column],
            binary["name"],
            binary["target"],
            threshold=binary["threshold"],
        )
    made["cv_score_vs_k.png"] = cv_score_figure(
        cv_results, tuned.scoring, tuned.picks["best"]["params"], tuned.picks.get("one_se")
    )
    made["cv_heatmap.png"] = cv_heatmap_figure(cv_results, tuned.scoring)
    if split.image_shape:
        images = test.X.reshape(-1, *split.image_shape)
        made["sample_gallery.png"] = sample_gallery_figure(
            images, [f"label {split.display_name(y)}" for y in test.y_true], "Test-split samples"
        )
        if (cm - np.diag(np.diag(cm))).any():
            a, b = most_confused_pair(cm)
            made["confused_pair.png"] = confused_pair_figure(
                images,
                test.y_true,
                test.y_pred,
                (test.classes[a], test.classes[b]),
                (display[a], display[b]),
            )
    if surface is not None and split.n_features == 2:
        model, splits = surface
        made["probability_surface.png"] = probability_surface_figure(
            model,
            {**splits, "test": (test.X, test.y_true)},
            split.feature_columns,
            split.class_names,
        )
    return made
