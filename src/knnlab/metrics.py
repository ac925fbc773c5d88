"""Classification metrics, vectorized, equal to scikit-learn's to 1e-12.

Undefined cases (precision of a class never predicted, ROC-AUC of a class with no positive
or no negative sample) warn with :class:`UndefinedMetricWarning` and give NaN for that class,
never a silent 0; averages are taken over the classes where the metric is defined (as
scikit-learn does with ``zero_division=np.nan``), and are NaN only if no class is defined.
"""

from __future__ import annotations

import warnings

import numpy as np

AVERAGES = ("binary", "micro", "macro", "weighted", None)


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for some class (a zero denominator); NaN was returned for it."""


def _as_1d(name: str, y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {y.shape}")
    return y


def _encode(y_true, y_pred, labels=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both vectors encoded as positions in ``labels``.

    Returns (labels, true_code, pred_code); ``labels`` defaults to the sorted union.
    """
    y_true, y_pred = _as_1d("y_true", y_true), _as_1d("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {y_true.shape[0]} and "
            f"{y_pred.shape[0]}"
        )
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]

    def code(y: np.ndarray) -> np.ndarray:
        position = np.clip(np.searchsorted(sorted_labels, y), 0, max(labels.size - 1, 0))
        found = sorted_labels[position] == y if labels.size else np.zeros(y.shape, bool)
        if not found.all():
            raise ValueError(f"label {y[~found][0]!r} is not in labels={labels.tolist()}")
        return order[position]

    return labels, code(y_true), code(y_pred)


def accuracy_score(y_true, y_pred) -> float:
    """Fraction of exact matches.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.

    Returns
    -------
    float
        The share of samples with ``y_pred == y_true``.

    Raises
    ------
    ValueError
        If either vector is not 1-D, or they are empty or of different lengths.
    """
    y_true, y_pred = _as_1d("y_true", y_true), _as_1d("y_pred", y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"y_true and y_pred must be non-empty and of the same length, got {y_true.shape[0]} "
            f"and {y_pred.shape[0]}"
        )
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    labels : array-like of shape (n_labels,), optional
        The labels counted, in row and column order; default the sorted union of both
        vectors.

    Returns
    -------
    ndarray of shape (n_labels, n_labels)
        Row = true label, column = predicted, in ``labels`` order.

    Raises
    ------
    ValueError
        If either vector is not 1-D, their lengths differ, or they hold a label not in
        ``labels``.
    """
    labels, true_code, pred_code = _encode(y_true, y_pred, labels)
    n = labels.size
    return np.bincount(true_code * n + pred_code, minlength=n * n).reshape(n, n)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, what: str) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    undefined = denominator == 0
    if undefined.any():
        warnings.warn(
            f"{what} is undefined (0/0) for {int(undefined.sum())} label(s); returning NaN "
            "for them",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(undefined, np.nan, numerator / np.where(undefined, 1.0, denominator))


def _nan_average(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    defined = ~np.isnan(values)
    if not defined.any():
        return float("nan")
    w = None if weights is None else weights[defined]
    if w is None or w.sum() == 0:
        # No weight on any defined label: their plain mean, as scikit-learn falls back to.
        return float(np.mean(values[defined]))
    return float(np.average(values[defined], weights=w))


def precision_recall_fscore_support(
    y_true, y_pred, *, average: str | None = "macro", pos_label=1, labels=None, beta: float = 1.0
):
    """Precision, recall, F-beta and support.

    A label's precision (never predicted) or recall (never true) is NaN, with an
    :class:`UndefinedMetricWarning`; its F-beta comes from the counts, so a label present
    but never predicted gets F = 0, as in scikit-learn. Averages leave NaN labels out.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    average : {"binary", "micro", "macro", "weighted"} or None, default "macro"
        None returns per-label arrays of shape (n_labels,); ``binary`` scores ``pos_label``;
        ``micro`` pools every label's counts; ``macro`` is the plain mean over labels,
        ``weighted`` the mean weighted by support.
    pos_label : label, default 1
        The label ``average="binary"`` scores; unused otherwise.
    labels : array-like of shape (n_labels,), optional
        The labels to score (sorted union of both vectors by default).
    beta : float, default 1.0
        Weight of recall: ``F = (1 + beta**2) tp / (beta**2 (tp + fn) + tp + fp)``.

    Returns
    -------
    precision : float or ndarray of shape (n_labels,)
        Per label, in ``labels`` order, when ``average`` is None; else a float.
    recall : float or ndarray of shape (n_labels,)
        As ``precision``.
    fbeta : float or ndarray of shape (n_labels,)
        As ``precision``.
    support : ndarray of shape (n_labels,) or None
        True counts per label when ``average`` is None, else None.

    Raises
    ------
    ValueError
        If ``average`` is not one of the above; with ``average="binary"``, if there are
        more than 2 labels or ``pos_label`` is not one of them; if the vectors are not 1-D
        of one length or hold a label not in ``labels``.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    labels, true_code, pred_code = _encode(y_true, y_pred, labels)
    if average == "binary":
        if labels.size > 2:
            raise ValueError(
                f"average='binary' needs at most 2 labels, got {labels.size}: {labels}; "
                "use average='macro', 'micro' or 'weighted'"
            )
        if pos_label not in labels.tolist():
            raise ValueError(f"pos_label={pos_label!r} is not a label; labels are {labels}")
    cm = np.bincount(
        true_code * labels.size + pred_code, minlength=labels.size * labels.size
    ).reshape(labels.size, labels.size)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    if average == "micro":
        tp, predicted, support_sum = tp.sum(), predicted.sum(), support.sum()
        precision = _safe_divide(tp, predicted, "precision")
        recall = _safe_divide(tp, support_sum, "recall")
        f = _fbeta(tp, predicted, support_sum, beta)
        return float(precision), float(recall), float(f), None
    precision = _safe_divide(tp, predicted, "precision")
    recall = _safe_divide(tp, support, "recall")
    f = _fbeta(tp, predicted, support, beta)
    if average is None:
        return precision, recall, f, support
    if average == "binary":
        k = labels.tolist().index(pos_label)
        return float(precision[k]), float(recall[k]), float(f[k]), None
    weights = support.astype(np.float64) if average == "weighted" else None
    return (
        _nan_average(precision, weights),
        _nan_average(recall, weights),
        _nan_average(f, weights),
        None,
    )


def _fbeta(tp, predicted, support, beta: float):
    # From counts rather than from precision and recall, so a class never predicted but
    # present gets F = 0 (a defined value), as in scikit-learn.
    b2 = beta * beta
    return _safe_divide((1 + b2) * tp, b2 * np.asarray(support) + predicted, "F-score")


def precision_score(y_true, y_pred, *, average="macro", pos_label=1, labels=None):
    """Precision: :func:`precision_recall_fscore_support`'s first value.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    average : {"binary", "micro", "macro", "weighted"} or None, default "macro"
        As in :func:`precision_recall_fscore_support`.
    pos_label : label, default 1
        The label ``average="binary"`` scores; unused otherwise.
    labels : array-like of shape (n_labels,), optional
        The labels to score (sorted union of both vectors by default).

    Returns
    -------
    float or ndarray of shape (n_labels,)
        Per label (NaN where undefined) when ``average`` is None, else a float.

    Raises
    ------
    ValueError
        As :func:`precision_recall_fscore_support`.
    """
    return precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=pos_label, labels=labels
    )[0]


def recall_score(y_true, y_pred, *, average="macro", pos_label=1, labels=None):
    """Recall: :func:`precision_recall_fscore_support`'s second value.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    average : {"binary", "micro", "macro", "weighted"} or None, default "macro"
        As in :func:`precision_recall_fscore_support`.
    pos_label : label, default 1
        The label ``average="binary"`` scores; unused otherwise.
    labels : array-like of shape (n_labels,), optional
        The labels to score (sorted union of both vectors by default).

    Returns
    -------
    float or ndarray of shape (n_labels,)
        Per label (NaN where undefined) when ``average`` is None, else a float.

    Raises
    ------
    ValueError
        As :func:`precision_recall_fscore_support`.
    """
    return precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=pos_label, labels=labels
    )[1]


def f1_score(y_true, y_pred, *, average="macro", pos_label=1, labels=None):
    """F1 score: :func:`precision_recall_fscore_support`'s third (beta = 1) value.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    average : {"binary", "micro", "macro", "weighted"} or None, default "macro"
        As in :func:`precision_recall_fscore_support`.
    pos_label : label, default 1
        The label ``average="binary"`` scores; unused otherwise.
    labels : array-like of shape (n_labels,), optional
        The labels to score (sorted union of both vectors by default).

    Returns
    -------
    float or ndarray of shape (n_labels,)
        Per label (NaN where undefined) when ``average`` is None, else a float.

    Raises
    ------
    ValueError
        As :func:`precision_recall_fscore_support`.
    """
    return precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=pos_label, labels=labels
    )[2]


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n down each column of ``scores`` (n, c), tied values sharing the mean of
    their ranks (``scipy.stats.rankdata(method="average", axis=0)``)."""
    n = scores.shape[0]
    order = np.argsort(scores, axis=0, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=0)
    position = np.arange(n)[:, None]
    differs = ordered[1:] != ordered[:-1]  # (n - 1, c): a new run starts below
    starts_run = np.vstack([np.ones((1, scores.shape[1]), bool), differs])
    ends_run = np.vstack([differs, np.ones((1, scores.shape[1]), bool)])
    # First and last sorted position of each element's run of equal values.
    run_first = np.maximum.accumulate(np.where(starts_run, position, 0), axis=0)
    run_last = np.minimum.accumulate(np.where(ends_run, position, n)[::-1], axis=0)[::-1]
    ranks = np.empty_like(scores, dtype=np.float64)
    np.put_along_axis(ranks, order, (run_first + run_last) / 2.0 + 1.0, axis=0)
    return ranks


def _one_vs_rest_auc(is_positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each column as the Mann-Whitney statistic: the
    probability that a random positive scores above a random negative, ties counting one
    half. is_positive, scores: (n, c) -> (c,), NaN where a column has no positive or no
    negative sample."""
    n_pos = is_positive.sum(axis=0).astype(np.float64)
    n_neg = is_positive.shape[0] - n_pos
    rank_sum = np.where(is_positive, _average_ranks(scores), 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def roc_auc_score(y_true, y_score, *, average: str = "macro", labels=None, pos_label=None):
    """ROC-AUC, binary or one-vs-rest.

    The AUC is the Mann-Whitney statistic: the probability that a random positive scores
    above a random negative, ties counting one half. A label with no positive or no
    negative sample has an undefined AUC: NaN, with an :class:`UndefinedMetricWarning`,
    left out of the averages.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_score : array-like of shape (n_samples,) or (n_samples, n_classes)
        1-D: scores of the positive class (binary; positive = ``pos_label``, by default the
        larger of the two labels). 2-D: one column per label in ``labels`` order (default:
        sorted unique ``y_true``), e.g. ``predict_proba``; scored one-vs-rest, except that
        two columns are scored as binary on column 1, as scikit-learn does.
    average : {"macro", "weighted"} or None, default "macro"
        How the one-vs-rest AUCs are combined; None returns them per label, shape
        (n_classes,). Weighted uses each label's prevalence in ``y_true``. Unused for
        binary scores.
    labels : array-like of shape (n_classes,), optional
        2-D ``y_score`` only: the label of each column.
    pos_label : label, optional
        1-D ``y_score`` only: the positive label.

    Returns
    -------
    float or ndarray of shape (n_classes,)
        Per label when ``average`` is None and there are more than two labels, else a
        float.

    Raises
    ------
    ValueError
        If ``y_true`` is not 1-D or its length differs from ``y_score``'s; if ``y_score``
        is 1-D, ``pos_label`` is None and ``y_true`` has more than 2 labels; if
        ``average`` is not one of the above, or a 2-D ``y_score`` does not have one column
        per label.
    """
    y_true = _as_1d("y_true", y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.shape[0] != y_true.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} samples but y_score has {y_score.shape[0]}")
    if y_score.ndim == 1:
        classes = np.unique(y_true)
        if pos_label is None:
            if classes.size > 2:
                raise ValueError(
                    f"1-D y_score needs a binary y_true, got {classes.size} labels; pass "
                    "scores of shape (n_samples, n_classes) for one-vs-rest"
                )
            pos_label = classes[-1] if classes.size else 1
        auc = float(_one_vs_rest_auc((y_true == pos_label)[:, None], y_score[:, None])[0])
        if np.isnan(auc):
            warnings.warn(
                "ROC-AUC is undefined when y_true holds only one class; returning NaN",
                UndefinedMetricWarning,
                stacklevel=2,
            )
        return auc
    if average not in ("macro", "weighted", None):
        raise ValueError(f"average must be 'macro', 'weighted' or None, got {average!r}")
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    if y_score.ndim != 2 or y_score.shape[1] != labels.size:
        raise ValueError(
            f"y_score must have shape (n_samples, {labels.size}) (one column per label "
            f"{labels.tolist()}), got {y_score.shape}"
        )
    if labels.size == 2:
        # Two columns that sum to 1 rank samples identically; scikit-learn scores column 1.
        return roc_auc_score(y_true, y_score[:, 1], pos_label=labels[1])
    per_class = _one_vs_rest_auc(y_true[:, None] == labels[None, :], y_score)
    if np.isnan(per_class).any():
        warnings.warn(
            f"ROC-AUC is undefined for labels {labels[np.isnan(per_class)].tolist()} "
            "(no positive or no negative sample); returning NaN for them",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    if average is None:
        return per_class
    prevalence = np.array([(y_true == label).sum() for label in labels], dtype=np.float64)
    return _nan_average(per_class, prevalence if average == "weighted" else None)


# The metrics classification_scores returns, in report order, with the name a reader sees:
# the one list the stages, the intervals (knnlab.stats), MLflow and the report follow.
HEADLINE_LABELS = {
    "accuracy": "Accuracy",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "f1_macro": "F1 (macro)",
    "f1_weighted": "F1 (weighted)",
    "roc_auc_ovr": "ROC-AUC (one-vs-rest)",
}
HEADLINE_METRICS = tuple(HEADLINE_LABELS)


def classification_scores(y_true, y_pred, proba: np.ndarray, classes: np.ndarray) -> dict:
    """The headline metrics knnlab reports for one model on one split.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    proba : ndarray of shape (n_samples, n_classes)
        Class probabilities, columns in ``classes`` order.
    classes : ndarray of shape (n_classes,)
        The label of each column of ``proba``.

    Returns
    -------
    dict of str to float
        The :data:`HEADLINE_METRICS`: accuracy, precision/recall/F1 macro, F1 weighted and
        one-vs-rest ROC-AUC macro.

    Raises
    ------
    ValueError
        If the vectors are not 1-D of one length, or ``proba`` is not of shape
        (n_samples, n_classes).
    """
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro")
    if classes.size == 2:
        roc_auc = roc_auc_score(y_true, proba[:, 1], pos_label=classes[1])
    else:
        roc_auc = roc_auc_score(y_true, proba, labels=classes)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "f1_weighted": f1_score(y_true, y_pred, average="weighted"),
        "roc_auc_ovr": float(roc_auc),
    }


def _binary_counts(y_true_binary, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest first.

    Returns (tps, fps, thresholds), each of shape (n_distinct,): predicting positive for
    score >= thresholds[i] gives tps[i] true and fps[i] false positives.
    """
    is_positive = np.asarray(y_true_binary, dtype=bool)
    score = np.asarray(y_score, dtype=np.float64)
    if is_positive.shape != score.shape or score.ndim != 1:
        raise ValueError(
            f"y_true and y_score must be 1-D of the same length, got {is_positive.shape} and "
            f"{score.shape}"
        )
    order = np.argsort(-score, kind="stable")
    score, is_positive = score[order], is_positive[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(is_positive)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps, fps, score[last_of_run]


def roc_curve(y_true_binary, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic: false and true positive rates at every distinct
    threshold, starting at (0, 0) with threshold +inf.

    Parameters
    ----------
    y_true_binary : array-like of shape (n_samples,)
        True for a positive sample.
    y_score : array-like of shape (n_samples,)
        Scores, higher = positive.

    Returns
    -------
    fpr : ndarray of shape (n_distinct + 1,)
        False positive rates; NaN (with a warning) when there is no negative sample.
    tpr : ndarray of shape (n_distinct + 1,)
        True positive rates; NaN (with a warning) when there is no positive sample.
    thresholds : ndarray of shape (n_distinct + 1,)
        Decreasing: +inf, then every distinct score. Predicting positive for
        ``score >= thresholds[i]`` gives ``fpr[i]`` and ``tpr[i]``.

    Raises
    ------
    ValueError
        If the two are not 1-D of the same length.
    """
    tps, fps, thresholds = _binary_counts(y_true_binary, y_score)
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    fpr = _safe_divide(fps, np.full(fps.shape, fps[-1]), "false positive rate")
    tpr = _safe_divide(tps, np.full(tps.shape, tps[-1]), "true positive rate")
    return fpr, tpr, np.r_[np.inf, thresholds]


def precision_recall_curve(y_true_binary, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold, as scikit-learn returns them.

    Parameters
    ----------
    y_true_binary : array-like of shape (n_samples,)
        True for a positive sample.
    y_score : array-like of shape (n_samples,)
        Scores, higher = positive.

    Returns
    -------
    precision : ndarray of shape (n_distinct + 1,)
        Precision at each threshold; the last is 1, with no threshold.
    recall : ndarray of shape (n_distinct + 1,)
        Recall at each threshold; the last is 0, with no threshold. NaN (with a warning)
        when there is no positive sample.
    thresholds : ndarray of shape (n_distinct,)
        The distinct scores, increasing.

    Raises
    ------
    ValueError
        If the two are not 1-D of the same length.
    """
    tps, fps, thresholds = _binary_counts(y_true_binary, y_score)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tps / (tps + fps)
    recall = _safe_divide(tps, np.full(tps.shape, tps[-1]), "recall")
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def threshold_for_precision(y_true_binary, y_score, target: float) -> dict[str, float] | None:
    """The lowest threshold whose precision reaches ``target`` (the most recall at that
    precision), with its precision, recall and false positive rate.

    Parameters
    ----------
    y_true_binary : array-like of shape (n_samples,)
        True for a positive sample.
    y_score : array-like of shape (n_samples,)
        Scores, higher = positive.
    target : float
        The precision to reach.

    Returns
    -------
    dict of str to float or None
        ``threshold``, ``precision``, ``recall`` and ``false_positive_rate`` (NaN with no
        negative sample) when predicting positive for ``score >= threshold``; None if no
        threshold reaches ``target`` or there is no positive sample.

    Raises
    ------
    ValueError
        If the two are not 1-D of the same length.
    """
    tps, fps, thresholds = _binary_counts(y_true_binary, y_score)
    precision = tps / (tps + fps)
    reaching = np.flatnonzero(precision >= target)
    if reaching.size == 0 or tps[-1] == 0:
        return None
    i = reaching[-1]  # thresholds decrease along the arrays: the last is the lowest
    negatives = fps[-1]
    return {
        "threshold": float(thresholds[i]),
        "precision": float(precision[i]),
        "recall": float(tps[i] / tps[-1]),
        "false_positive_rate": float(fps[i] / negatives) if negatives else float("nan"),
    }


def multilabel_f1_score(Y_true, Y_pred, *, average: str = "macro") -> float:
    """F1 for multilabel indicator matrices (the "large digit" and "odd digit" targets).

    A label (or, with ``samples``, a row) with no true and no predicted positive has an
    undefined F1: NaN, with an :class:`UndefinedMetricWarning`, left out of the average.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_labels)
        True indicators, 0/1 or booleans.
    Y_pred : array-like of shape (n_samples, n_labels)
        Predicted indicators, 0/1 or booleans.
    average : {"macro", "micro", "weighted", "samples"}, default "macro"
        ``macro``: mean over labels; ``micro``: pooled counts; ``weighted``: by each
        label's positives; ``samples``: mean over rows.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the matrices are not 2-D of one shape, or ``average`` is not one of the above.
    """
    Y_true = np.asarray(Y_true).astype(bool)
    Y_pred = np.asarray(Y_pred).astype(bool)
    if Y_true.ndim != 2 or Y_true.shape != Y_pred.shape:
        raise ValueError(
            f"Y_true and Y_pred must be 2-D indicator matrices of one shape, got {Y_true.shape} "
            f"and {Y_pred.shape}"
        )
    axis = 1 if average == "samples" else 0
    tp = (Y_true & Y_pred).sum(axis=axis)
    predicted = Y_pred.sum(axis=axis)
    actual = Y_true.sum(axis=axis)
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
        return float(_fbeta(tp, predicted, actual, 1.0))
    if average not in ("macro", "weighted", "samples"):
        raise ValueError(f"average must be macro, micro, weighted or samples, got {average!r}")
    f = _fbeta(tp, predicted, actual, 1.0)
    return _nan_average(f, actual.astype(np.float64) if average == "weighted" else None)


def rates_at_threshold(y_true_binary, y_score, threshold: float) -> dict[str, float]:
    """Precision, recall and false positive rate when predicting positive for
    ``score >= threshold``.

    Parameters
    ----------
    y_true_binary : array-like of shape (n_samples,)
        True for a positive sample.
    y_score : array-like of shape (n_samples,)
        Scores, higher = positive.
    threshold : float
        Scores at or above it are predicted positive.

    Returns
    -------
    dict of str to float
        ``threshold``, ``precision``, ``recall`` and ``false_positive_rate``; NaN where the
        denominator is 0 (nothing predicted positive, no positive or no negative sample).
    """
    is_positive = np.asarray(y_true_binary, dtype=bool)
    predicted = np.asarray(y_score, dtype=np.float64) >= threshold
    tp = float(np.sum(predicted & is_positive))
    fp = float(np.sum(predicted & ~is_positive))
    positives, negatives = float(is_positive.sum()), float((~is_positive).sum())
    return {
        "threshold": float(threshold),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / positives if positives else float("nan"),
        "false_positive_rate": fp / negatives if negatives else float("nan"),
    }


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """recall@k: the mean over queries of the share of their k exact neighbours that were
    found.

    Parameters
    ----------
    found : ndarray of shape (n_queries, k)
        Training-row indices an approximate search returned, distinct within a row.
    exact : ndarray of shape (n_queries, k)
        The exact neighbours' training-row indices, distinct within a row.

    Returns
    -------
    float
        In [0, 1].
    """
    k = exact.shape[1]
    # Rows hold distinct indices, so matches per row are the size of the intersection.
    hits = (found[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1)  # (n_queries,)
    return float(hits.mean() / k)
