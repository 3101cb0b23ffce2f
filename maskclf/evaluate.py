"""Classification metrics from labels and softmax probabilities.

The functions here are pure (numpy + scikit-learn); nothing at module level imports TensorFlow.

Binary convention: the first class in labels.txt (``positive_index=0``, e.g. ``with_mask``) is the
positive class, and a sample is predicted positive when ``p_positive >= threshold``.
"""

from __future__ import annotations

import json
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


# ----------------------------------------------------------------------------- run directories (TensorFlow)

def load_run_model(run_dir: str | os.PathLike):
    """Load ``best.keras`` of a run with Keras' safe_mode on (no arbitrary code from the file)."""
    import keras

    import maskclf.models  # noqa: F401  registers the Preprocess layer

    import zipfile

    from maskclf.files import read_labels

    path = Path(run_dir) / "best.keras"
    if not path.is_file():
        raise MaskclfError(f"{path}: no trained model; is {run_dir} a finished `maskclf train` run?")
    if not zipfile.is_zipfile(path):  # Keras would say "file not found" about a truncated or foreign file
        raise MaskclfError(f"{path}: not a .keras model (no ZIP archive: truncated or another format); "
                           "retrain or restore it")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except ValueError as e:
        if "safe_mode" in str(e) or "lambda" in str(e).lower():
            raise MaskclfError(f"{path}: refused to load: the model contains a Lambda layer (arbitrary code); "
                               "only load models you trust") from None
        raise MaskclfError(f"{path}: cannot load model ({_first_line(e, 160)})") from None
    except Exception as e:  # zip errors, truncated files, classes this package does not define
        raise MaskclfError(f"{path}: not a readable .keras model ({type(e).__name__}: {_first_line(e, 120)}); "
                           "retrain or restore it") from None
    labels = Path(run_dir) / "labels.txt"
    outputs = getattr(model, "output_shape", (None,))[-1]
    if labels.is_file() and outputs != len(names := read_labels(labels)):
        raise MaskclfError(f"{labels}: lists {len(names)} classes but {path.name} has {outputs} outputs; "
                           "labels.txt and best.keras come from different runs: restore the run's own labels.txt")
    return model


def _first_line(e: Exception, n: int) -> str:
    """The first sentence of an exception's message, at most ``n`` characters (Keras writes paragraphs)."""
    line = (str(e).strip().splitlines() or [""])[0]
    return line.split(". ")[0].rstrip(".")[:n]


def predict_paths(model, paths: list[str], image_size: int, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, C) of a Keras model for image files, decoded as in training."""
    from maskclf import pipeline

    ds = pipeline.make_dataset(paths, None, image_size, batch_size, cache=False)
    out = [np.asarray(model(x, training=False)) for x in ds]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))


def evaluate_run(run_dir: str | os.PathLike, data: str | None = None, progress: bool = True,
                 extra: dict | None = None) -> dict:
    """Evaluate a run's best model and write metrics JSON and plots into the run directory.

    Args:
        run_dir: a directory made by ``maskclf train``.
        data: None → the run's own test split (threshold for two classes chosen on its
            validation split); a dataset path → every image of it, matched to the model's
            classes by name (images of other classes are skipped), written as
            ``metrics-<name>.json``.
        progress: print progress.
        extra: more keys to store in the metrics file (e.g. training time).

    Returns:
        The metrics dict.
    """
    import sys

    from maskclf import datasets, plots, sources
    from maskclf.config import load_config, with_changes
    from maskclf.files import read_labels

    run = Path(run_dir)
    if not run.is_dir():
        raise MaskclfError(f"{run}: run directory not found")
    cfg = load_config(run / "config.yaml")
    class_names = read_labels(run / "labels.txt")
    model = load_run_model(run)
    size = cfg.data.image_size
    threshold = None
    if data is None:
        rows = sources.run_split_rows(run, cfg.data, "pass --data to evaluate on a dataset", progress)
        by = {s: [r for r in rows if r["split"] == s] for s in ("validation", "test")}
        if not by["test"]:
            raise MaskclfError(f"{run}/split.csv has no test images; pass --data PATH to evaluate on a dataset")
        lookup = {n: i for i, n in enumerate(class_names)}
        unknown = sorted({r["label"] for r in rows} - set(lookup))
        if unknown:
            raise MaskclfError(f"{run / 'split.csv'}: labels {', '.join(map(repr, unknown[:5]))} are not in "
                               f"labels.txt ({', '.join(class_names)}); restore the run's own labels.txt")
        if len(class_names) == 2 and by["validation"]:
            vp = predict_paths(model, [r["path"] for r in by["validation"]], size)
            threshold = choose_threshold([lookup[r["label"]] for r in by["validation"]], vp)
        paths = [r["path"] for r in by["test"]]
        y = np.array([lookup[r["label"]] for r in by["test"]])
        origins = [r.get("dataset") or "" for r in by["test"]]
        suffix, source = "", "test split"
    else:
        dcfg = with_changes(cfg, data={"path": str(data), "layout": "auto", "val_fraction": 0.0,
                                       "test_fraction": 0.0, "classes": (), "class_map": cfg.data.class_map}).data
        ds = datasets.load_dataset(dcfg, progress=progress)
        keep = [i for i, lab in enumerate(ds.labels) if ds.class_names[lab] in class_names]
        if not keep:
            raise MaskclfError(f"{data}: none of its classes ({', '.join(ds.class_names)}) is a class of the model "
                               f"({', '.join(class_names)})")
        paths = [ds.paths[i] for i in keep]
        y = np.array([class_names.index(ds.class_names[ds.labels[i]]) for i in keep])
        try:
            threshold = json.loads((run / "metrics.json").read_text()).get("threshold")
        except (OSError, ValueError):
            threshold = None
        suffix, source = "-" + Path(str(data)).resolve().name, str(data)
    if progress:
        print(f"evaluating {len(paths)} images of the {source}", file=sys.stderr, flush=True)
    probs = predict_paths(model, paths, size)
    metrics = compute_metrics(y, probs, class_names, threshold=threshold)
    if data is None and len(set(origins)) > 1:
        metrics["per_source"] = per_source_metrics(y, probs, class_names, origins, threshold)
    metrics.update({"evaluated_on": source, "model": cfg.model.name, "image_size": size, "run_dir": str(run)})
    if extra:
        metrics.update(extra)
    if (run / "history.csv").is_file() and not suffix:
        try:
            plots.plot_history(run / "history.csv", run / "history.png")
        except MaskclfError:
            pass
    plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, run / f"confusion_matrix{suffix}.png",
                                title=f"Confusion matrix ({source})")
    plots.plot_roc(y, probs, class_names, run / f"roc{suffix}.png")
    _plot_errors(paths, y, probs, class_names, size, run / f"errors{suffix}.png", threshold)
    write_metrics(metrics, run / f"metrics{suffix}.json")
    return metrics


def _plot_errors(paths, y, probs, class_names, size, out, threshold=None, n: int = 24) -> None:
    """A grid of the most confident mistakes (true → predicted, score), called as the metrics call them."""
    from maskclf import images, plots

    worst, pred = most_confident_mistakes(y, probs, threshold, n)
    if len(worst) == 0:
        return
    pics = [images.load_array(paths[i], max(size, 64)) for i in worst]
    short = short_class_names(class_names)
    titles = [f"{short[y[i]]}→{short[pred[i]]} {probs[i, pred[i]]:.2f}" for i in worst]
    plots.plot_sample_grid(np.stack(pics), titles, out)


def short_class_names(class_names: Sequence[str], width: int = 12) -> list[str]:
    """Class names that fit a small plot title: a name longer than ``width`` becomes its last word
    (``mask_weared_incorrect`` -> ``incorrect``) when no other class's last word is the same, else its
    first ``width`` characters."""
    last = [re.split(r"[_\-\s]+", c.strip("_- "))[-1] for c in class_names]
    return [c if len(c) <= width else (w if 0 < len(w) <= width and last.count(w) == 1 else c[:width])
            for c, w in zip(class_names, last)]


def predict_images(run_dir: str | os.PathLike, inputs: Sequence[str]) -> list[dict]:
    """Classify image files (or folders of them) with a run's best model.

    Returns:
        One dict per file: path, label, score, probabilities {class: p}; or path and error
        for files that could not be read.
    """
    from maskclf import images
    from maskclf.config import load_config
    from maskclf.files import read_labels

    run = Path(run_dir)
    cfg = load_config(run / "config.yaml")
    class_names = read_labels(run / "labels.txt")
    files = images.collect_images(inputs)
    results: list[dict] = []
    ok_paths = []
    for f in files:
        try:
            images.load_rgb(f)
            ok_paths.append(str(f))
        except MaskclfError as e:
            results.append({"path": str(f), "error": str(e)})
    threshold = None
    try:
        threshold = json.loads((run / "metrics.json").read_text()).get("threshold")
    except (OSError, ValueError):
        pass
    if ok_paths:
        model = load_run_model(run)
        probs = predict_paths(model, ok_paths, cfg.data.image_size)
        for path, p, k in zip(ok_paths, probs, predicted_classes(probs, threshold)):
            results.append({"path": path, "label": class_names[k], "score": float(p[k]),
                            "probabilities": {n: float(v) for n, v in zip(class_names, p)}})
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(results, key=lambda r: order.get(r["path"], 0))
