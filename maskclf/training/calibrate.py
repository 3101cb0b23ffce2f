"""Post-training calibration on the validation split, folded into the model's last layer.

Two corrections of the final softmax layer, both fitted on validation images only:

- **temperature** (Guo et al. 2017): logits divided by one scalar T chosen to minimise the
  validation log-loss, so "called with probability p" means "right about p of the time"
  (measured as the expected calibration error). It never changes which class is called.
- **class bias** (3+ classes): one additive offset per class logit, chosen to maximise the
  validation balanced accuracy: the multi-class form of moving a decision threshold, for a rare
  class that full class weights still under- or over-call. (Two classes use the decision
  threshold chosen on validation instead.)

Both are exact edits of the ``probabilities`` Dense layer (kernel/T, bias/T + b), so the saved
``best.keras``, every exported .tflite and the device code need nothing new.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from maskclf.files import MaskclfError, write_json

METHODS = ("none", "temperature", "temperature+bias")


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    p = _softmax(z)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(probs, y) -> float:
    """The T in [0.05, 20] minimising the log-loss of softmax(log p / T) (grid, then golden section)."""
    z, y = _log_probs(probs), np.asarray(y, dtype=np.int64)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
    losses = [_nll(z / t, y) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(0, i - 1)]), np.log(grid[min(len(grid) - 1, i + 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if _nll(z / np.exp(a), y) < _nll(z / np.exp(b), y):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def _balanced_accuracy(z: np.ndarray, y: np.ndarray, k: int) -> float:
    pred = z.argmax(axis=1)
    rec = [np.mean(pred[y == c] == c) for c in range(k) if np.any(y == c)]
    return float(np.mean(rec))


def fit_class_bias(probs, y, span: float = 3.0, step: float = 0.1, sweeps: int = 3) -> np.ndarray:
    """Per-class logit offsets maximising balanced accuracy (coordinate ascent; class 0 stays at 0).

    Ties go to the offset nearest 0, so a bias moves only as far as the validation data demand.
    """
    z, y = _log_probs(probs), np.asarray(y, dtype=np.int64)
    k = z.shape[1]
    b = np.zeros(k)
    grid = np.round(np.arange(-span, span + step / 2, step), 6)
    order = np.argsort(np.abs(grid), kind="stable")  # nearest 0 first, so max() keeps the smallest offset
    for _ in range(sweeps):
        changed = False
        for c in range(1, k):
            scores = []
            for v in grid[order]:
                trial = b.copy()
                trial[c] = v
                scores.append(_balanced_accuracy(z + trial, y, k))
            best = grid[order][int(np.argmax(scores))]
            if best != b[c]:
                b[c], changed = best, True
        if not changed:
            break
    return b


def fold_into_model(model, temperature: float, bias) -> None:
    """Divide the logits of the ``probabilities`` layer by ``temperature`` and add ``bias``, in place."""
    layer = model.get_layer("probabilities")
    kernel, b0 = layer.get_weights()
    layer.set_weights([kernel / temperature, b0 / temperature + np.asarray(bias, dtype=b0.dtype)])


def calibrate_run(run_dir: str | os.PathLike, method: str = "temperature+bias", progress: bool = True) -> dict:
    """Fit the calibration on the run's validation split, fold it into ``best.keras`` and record it.

    An ensemble's members are each calibrated on that split and folded into their own last layer (as
    ``train.calibration`` does for the members of ``maskclf train``), so the ensemble averages calibrated members.

    Args:
        run_dir: a ``maskclf train`` run directory (its split.csv names the validation images).
        method: ``temperature``, ``temperature+bias`` or ``none``.
        progress: print what was fitted.

    Returns:
        The fitted values (``members``: one per network; one network's also as ``temperature`` and
        ``class_bias``) and the validation ECE / balanced accuracy of the run's model before and after (also written to ``calibration.json``). The model before calibration
        is kept as ``uncalibrated.keras``; calibrating a run twice starts from that file again.
    """
    import sys

    from maskclf.data import splitting
    from maskclf.config import load_config
    from maskclf.models.registry import ensemble_members
    from maskclf.reports.evaluate import predict_paths, expected_calibration_error, load_run_model
    from maskclf.files import atomic_path, read_labels

    if method not in METHODS:
        raise MaskclfError(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")
    run = Path(run_dir)
    names = read_labels(run / "labels.txt")
    lookup = {n: i for i, n in enumerate(names)}
    rows = [r for r in splitting.read_split_csv(run / "split.csv") if r["split"] == "validation"]
    if not rows:
        raise MaskclfError(f"{run}/split.csv has no validation images to calibrate on")
    original = run / "uncalibrated.keras"
    if original.is_file():  # calibrate from the trained weights, never on top of an earlier calibration
        with atomic_path(run / "best.keras") as tmp:
            shutil.copyfile(original, tmp)
    model = load_run_model(run)
    size = load_config(run / "config.yaml").data.image_size
    paths = [r["path"] for r in rows]
    y = np.array([lookup[r["label"]] for r in rows])
    k = len(names)
    probs = predict_paths(model, paths, size)
    fits = []
    for part in ensemble_members(model) or [model]:
        p = probs if part is model else predict_paths(part, paths, int(part.inputs[0].shape[1]))
        t = fit_temperature(p, y) if method != "none" else 1.0
        bias = fit_class_bias(_softmax(_log_probs(p) / t), y) if method == "temperature+bias" and k >= 3 else np.zeros(k)
        if method != "none":
            fold_into_model(part, t, bias)
        fits.append({"temperature": t, "class_bias": {n: float(v) for n, v in zip(names, bias)}})
    if len(fits) == 1 or method == "none":  # the folded model's probabilities, without another pass over the images
        after = _softmax(_log_probs(probs) / fits[0]["temperature"] + np.array(list(fits[0]["class_bias"].values())))
    else:  # the mean of calibrated members is not a function of the old mean: predict again
        after = predict_paths(model, paths, size)
    info = {"method": method, **(fits[0] if len(fits) == 1 else {}), "members": fits, "validation_images": len(y),
            "validation_ece_before": expected_calibration_error(y, probs),
            "validation_ece_after": expected_calibration_error(y, after),
            "validation_balanced_accuracy_before": _balanced_accuracy(_log_probs(probs), y, k),
            "validation_balanced_accuracy_after": _balanced_accuracy(_log_probs(after), y, k)}
    if method != "none":
        if not original.is_file():
            with atomic_path(original) as tmp:
                shutil.copyfile(run / "best.keras", tmp)
        with atomic_path(run / "best.keras") as tmp:
            model.save(tmp)
    write_json(run / "calibration.json", info)
    if progress:
        print(f"calibration ({method}) on {len(y)} validation images: {format_fits(fits)}; validation ECE "
              f"{info['validation_ece_before']:.3f} -> {info['validation_ece_after']:.3f}, balanced accuracy "
              f"{info['validation_balanced_accuracy_before']:.4f} -> {info['validation_balanced_accuracy_after']:.4f}",
              file=sys.stderr, flush=True)
    return info


def format_fits(fits: list[dict]) -> str:
    """``temperature T; class bias a +x, ...`` per calibrated network (``member N:`` before each of several)."""
    return "; ".join((f"member {i}: " if len(fits) > 1 else "") + f"temperature {f['temperature']:.3f}, class bias "
                     + ", ".join(f"{n} {v:+.1f}" for n, v in f["class_bias"].items()) for i, f in enumerate(fits))
