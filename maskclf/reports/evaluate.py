"""Evaluating a run: its best model on its test split (or another dataset), metrics and plots into the run.

    evaluate_run(run_dir[, data]) -> metrics dict, written as metrics.json (+ confusion matrix, ROC, errors)
    predict_images(run_dir, paths) -> per-image predictions
    load_run_model / predict_paths  -> the Keras model of a run, and its probabilities for image files

The metric definitions are in :mod:`maskclf.reports.metrics` (re-exported here); TensorFlow is imported inside functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from maskclf.files import MaskclfError
from maskclf.reports.metrics import (  # noqa: F401  (re-exported: the metrics API of maskclf.reports.evaluate)
    choose_threshold,
    compute_metrics,
    expected_calibration_error,
    format_summary,
    most_confident_mistakes,
    per_source_metrics,
    predicted_classes,
    short_class_names,
    write_metrics,
)

def load_run_model(run_dir: str | os.PathLike):
    """Load ``best.keras`` of a run with Keras' safe_mode on (no arbitrary code from the file)."""
    import keras

    import maskclf.models.registry  # noqa: F401  registers the Preprocess layer

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
    from maskclf.data import pipeline

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

    from maskclf.data import sources

    from maskclf.reports import plots
    from maskclf.config import load_config
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
        paths, labels = sources.images_of(data, cfg.data, class_names, progress)
        y = np.array(labels)
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
    from maskclf.data import images
    from maskclf.reports import plots

    worst, pred = most_confident_mistakes(y, probs, threshold, n)
    if len(worst) == 0:
        return
    pics = [images.load_array(paths[i], max(size, 64)) for i in worst]
    short = short_class_names(class_names)
    titles = [f"{short[y[i]]}→{short[pred[i]]} {probs[i, pred[i]]:.2f}" for i in worst]
    plots.plot_sample_grid(np.stack(pics), titles, out)


def predict_images(run_dir: str | os.PathLike, inputs: Sequence[str]) -> list[dict]:
    """Classify image files (or folders of them) with a run's best model.

    Returns:
        One dict per file: path, label, score, probabilities {class: p}; or path and error
        for files that could not be read.
    """
    from maskclf.data import images
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
