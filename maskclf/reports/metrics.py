"""Classification metrics from labels and softmax probabilities (no TensorFlow, no run directories).

The functions here are pure (numpy + scikit-learn); nothing at module level imports TensorFlow.

Binary convention: the first class in labels.txt (``positive_index=0``, e.g. ``with_mask``) is the
positive class, and a sample is predicted positive when ``p_positive >= threshold``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from maskclf.files import MaskclfError, write_json


def _check_inputs(y_true: Any, probs: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``y_true`` (N,) and ``probs`` (N, C); raise MaskclfError on bad input."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise MaskclfError(f"y_true must be 1-D (N,), got shape {y.shape}")
    if p.ndim != 2:
        raise MaskclfError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if len(y) != len(p):
        raise MaskclfError(f"y_true has {len(y)} samples but probs has {len(p)} rows")
    if len(y) == 0:
        raise MaskclfError("no samples to evaluate")
    if p.shape[1] != len(class_names):
        raise MaskclfError(f"probs has {p.shape[1]} columns but there are {len(class_names)} class names")
    if not np.all(np.isfinite(p)):
        raise MaskclfError("probs contains NaN or infinite values")
    if y.dtype.kind not in "iub":
        # Float labels are accepted only when they are whole numbers (e.g. read back from JSON).
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise MaskclfError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise MaskclfError(f"y_true has labels outside 0..{p.shape[1] - 1} (min {y.min()}, max {y.max()})")
    return y, p


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _clean(x: Any) -> Any:
    """Plain Python value with NaN/inf replaced by None, so the result is strict JSON."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _binary_auc(y_pos: np.ndarray, score: np.ndarray, fn: Any) -> float | None:
    """AUC-type score, or None when one of the two classes is absent (undefined)."""
    if y_pos.all() or not y_pos.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _clean(fn(y_pos, score))


def predicted_classes(probs: Any, threshold: float | None = None, positive_index: int = 0) -> np.ndarray:
    """The class each row is called: for two classes with a threshold ``p_positive >= threshold``, else argmax.

    Metrics, predictions, error grids and the report all call classes through here, so they agree.
    """
    p = np.asarray(probs)
    if p.shape[1] == 2 and threshold is not None:
        return np.where(p[:, positive_index] >= threshold, positive_index, 1 - positive_index)
    return p.argmax(axis=1)


def most_confident_mistakes(y_true: Any, probs: Any, threshold: float | None = None,
                            n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the (at most ``n``) wrong calls, most confident first, and every row's predicted class."""
    p = np.asarray(probs)
    pred = predicted_classes(p, threshold)
    wrong = np.nonzero(pred != np.asarray(y_true))[0]
    return wrong[np.argsort(-p[wrong, pred[wrong]])][:n], pred


def expected_calibration_error(y_true: Any, probs: Any, bins: int = 15) -> float:
    """Expected calibration error of the top-1 probability (equal-width bins, weighted by count).

    0 means "of the faces called with confidence p, a share p is right" at every p; a model whose
    probabilities a user thresholds should be near 0. Binning as in Guo et al. 2017.
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(ece)


def compute_metrics(
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    threshold: float | None = None,
    positive_index: int = 0,
) -> dict:
    """Compute classification metrics as a JSON-serialisable dict.

    Args:
        y_true: integer labels, shape (N,).
        probs: softmax probabilities, shape (N, C).
        class_names: C class names in model output order.
        threshold: binary only: predict positive when ``p_positive >= threshold`` (default 0.5).
            Ignored for 3+ classes, which use argmax.
        positive_index: binary only: index of the positive class (default 0, the first in labels.txt).

    Returns:
        dict with accuracy, balanced_accuracy, macro_f1, per_class, confusion matrices, class_names,
        num_samples, ece (expected calibration error); ``roc_auc_ovr`` for 3+ classes; for two classes also positive_class, threshold,
        f1, precision, recall, specificity, npv, roc_auc, pr_auc. Undefined values are None.
    """
    names = [str(n) for n in class_names]
    y, p = _check_inputs(y_true, probs, names)
    n_cls = len(names)
    binary = n_cls == 2
    if binary:
        if positive_index not in (0, 1):
            raise MaskclfError(f"positive_index must be 0 or 1 for two classes, got {positive_index}")
        threshold = 0.5 if threshold is None else float(threshold)
        if not math.isfinite(threshold):
            raise MaskclfError(f"threshold must be a finite number, got {threshold}")
    y_pred = predicted_classes(p, threshold if binary else None, positive_index)

    labels = list(range(n_cls))
    cm = confusion_matrix(y, y_pred, labels=labels)
    row_sums = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)
    prec, rec, f1, support = precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=0
    )
    # Same as sklearn's balanced_accuracy_score (mean recall over classes present in y_true),
    # computed from the matrix so absent classes give no warning.
    present = row_sums[:, 0] > 0
    metrics: dict[str, Any] = {
        "accuracy": _ratio(np.trace(cm), cm.sum()),
        "balanced_accuracy": float(np.mean(np.diag(cm_norm)[present])),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        "confusion_matrix_normalized": cm_norm.tolist(),
        "class_names": names,
        "num_samples": int(len(y)),
        "ece": expected_calibration_error(y, p),
    }
    if binary:
        pos, neg = positive_index, 1 - positive_index
        fn, fp, tn = cm[pos, neg], cm[neg, pos], cm[neg, neg]
        y_pos = y == pos
        metrics.update(
            positive_class=names[pos],
            threshold=threshold,
            f1=float(f1[pos]),
            precision=float(prec[pos]),
            recall=float(rec[pos]),
            specificity=_ratio(tn, tn + fp),
            npv=_ratio(tn, tn + fn),
            roc_auc=_binary_auc(y_pos, p[:, pos], roc_auc_score),
            pr_auc=_binary_auc(y_pos, p[:, pos], average_precision_score),
        )
    elif n_cls >= 3:
        # Macro one-vs-rest by hand: sklearn's multiclass path rejects rows not summing to 1,
        # which float32 softmax outputs sometimes fail.
        aucs = [_binary_auc(y == k, p[:, k], roc_auc_score) for k in labels]
        metrics["roc_auc_ovr"] = None if any(a is None for a in aucs) else float(np.mean(aucs))
    return metrics


def choose_threshold(y_true: Any, probs: Any, positive_index: int = 0) -> float:
    """Pick the threshold on ``p_positive`` that maximises balanced accuracy (Youden's J).

    Args:
        y_true: integer labels (N,), from validation data.
        probs: probabilities (N, 2).
        positive_index: index of the positive class.

    Returns:
        The best threshold among the unique probabilities and 0.5 (ties: closest to 0.5);
        0.5 when only one class is present.
    """
    p_arr = np.asarray(probs)
    if p_arr.ndim != 2 or p_arr.shape[1] != 2:
        raise MaskclfError(f"choose_threshold needs probs of shape (N, 2), got {p_arr.shape}")
    y, p = _check_inputs(y_true, p_arr, ["0", "1"])
    if positive_index not in (0, 1):
        raise MaskclfError(f"positive_index must be 0 or 1, got {positive_index}")
    score = p[:, positive_index]
    is_pos = y == positive_index
    if is_pos.all() or not is_pos.any():
        return 0.5
    cands = np.unique(np.append(score, 0.5))
    pos_sorted, neg_sorted = np.sort(score[is_pos]), np.sort(score[~is_pos])
    # Sorted scores + searchsorted give counts at every candidate in O(N log N), no N x N matrix.
    tpr = 1.0 - np.searchsorted(pos_sorted, cands, side="left") / len(pos_sorted)
    tnr = np.searchsorted(neg_sorted, cands, side="left") / len(neg_sorted)
    j = tpr + tnr
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def per_source_metrics(y_true: Any, probs: Any, class_names: Sequence[str], origins: Sequence[str],
                       threshold: float | None = None) -> dict:
    """Headline metrics of each source's images (``origins``: the source name per image).

    A source without some class (e.g. a two-class set under a three-class model) is scored on the classes it
    has: balanced accuracy is the mean recall over them, and predicting a class it lacks counts as an error.

    Returns:
        {source: {num_samples, accuracy, balanced_accuracy, classes, recall, precision, confusion_matrix}}.
    """
    names = [str(n) for n in class_names]
    y, p = _check_inputs(y_true, probs, names)
    out = {}
    for src in dict.fromkeys(origins):
        mask = np.array([o == src for o in origins])
        m = compute_metrics(y[mask], p[mask], names, threshold=threshold)
        present = [n for n in names if m["per_class"][n]["support"]]
        out[src] = {"num_samples": m["num_samples"], "accuracy": m["accuracy"],
                    "balanced_accuracy": m["balanced_accuracy"], "classes": present,
                    "recall": {n: m["per_class"][n]["recall"] for n in present},
                    "precision": {n: m["per_class"][n]["precision"] for n in names},
                    "confusion_matrix": m["confusion_matrix"]}
    return out


def write_metrics(metrics: dict, path: str | os.PathLike) -> Path:
    """Write ``metrics`` as JSON atomically.

    Args:
        metrics: dict from :func:`compute_metrics`.
        path: destination ``.json`` file.

    Returns:
        The written path.
    """
    return write_json(path, metrics)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def format_summary(metrics: dict) -> str:
    """Human-readable headline metrics, one per line.

    Args:
        metrics: dict from :func:`compute_metrics`.

    Returns:
        Multi-line text (no trailing newline).
    """
    lines = [
        f"samples            {metrics.get('num_samples', 'n/a')}",
        f"accuracy           {_fmt(metrics.get('accuracy'))}",
        f"balanced accuracy  {_fmt(metrics.get('balanced_accuracy'))}",
        f"macro F1           {_fmt(metrics.get('macro_f1'))}",
    ]
    per_class = metrics.get("per_class", {})
    width = max((len(n) for n in per_class), default=0)
    for name, m in per_class.items():
        lines.append(
            f"  {name:<{width}}  recall {_fmt(m['recall'])}  precision {_fmt(m['precision'])}"
            f"  F1 {_fmt(m['f1'])}  support {m['support']}"
        )
    if "positive_class" in metrics:
        lines.append(
            f"positive={metrics['positive_class']} threshold={metrics['threshold']:.3f}"
            f"  F1 {_fmt(metrics['f1'])}  specificity {_fmt(metrics['specificity'])}"
            f"  NPV {_fmt(metrics['npv'])}  ROC-AUC {_fmt(metrics['roc_auc'])}"
        )
    elif "roc_auc_ovr" in metrics:
        lines.append(f"ROC-AUC (macro OvR) {_fmt(metrics['roc_auc_ovr'])}")
    for src, m in metrics.get("per_source", {}).items():
        recalls = "  ".join(f"{n} {_fmt(r)}" for n, r in m["recall"].items())
        lines.append(f"source {src}: {m['num_samples']} images, balanced accuracy {_fmt(m['balanced_accuracy'])}"
                     f"  (recall {recalls})")
    return "\n".join(lines)


def short_class_names(class_names: Sequence[str], width: int = 12) -> list[str]:
    """Class names that fit a small plot title: a name longer than ``width`` becomes its last word
    (``mask_weared_incorrect`` -> ``incorrect``) when no other class's last word is the same, else its
    first ``width`` characters."""
    last = [re.split(r"[_\-\s]+", c.strip("_- "))[-1] for c in class_names]
    return [c if len(c) <= width else (w if 0 < len(w) <= width and last.count(w) == 1 else c[:width])
            for c, w in zip(class_names, last)]
