"""Training and evaluation figures written as PNG files.

Every function writes atomically (temporary name, then rename), closes its figure and returns the path.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: training machines and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve  # noqa: E402

from maskclf.reports.metrics import _check_inputs  # noqa: E402
from maskclf.files import MaskclfError, atomic_path  # noqa: E402

_DPI = 120


def _save(fig: Any, out_path: str | os.PathLike) -> Path:
    try:
        fig.tight_layout()
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return Path(out_path)


def _read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise MaskclfError(f"{path}: training history not found (written by the CSVLogger during training)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise MaskclfError(f"{path}: training history has no epochs")
    cols: dict[str, list[float]] = {}
    for key in rows[0]:
        vals = []
        for row in rows:
            try:
                vals.append(float(row.get(key) or "nan"))
            except ValueError:
                vals.append(math.nan)  # a gap in the line beats failing the whole plot
        cols[key] = vals
    return cols


def plot_history(history_csv: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Plot loss and accuracy curves from a Keras CSVLogger file.

    Rows are plotted in file order (x = row index + 1), so a second training phase that
    restarts its epoch numbers still reads left to right.

    Args:
        history_csv: CSV with some of loss, val_loss, accuracy, val_accuracy, val_balanced_accuracy.
        out_path: destination PNG.

    Returns:
        The written path.
    """
    cols = _read_history(Path(history_csv))
    panels = [
        ("Loss", ["loss", "val_loss"]),
        ("Accuracy", ["accuracy", "val_accuracy", "val_balanced_accuracy"]),
    ]
    panels = [(t, [k for k in keys if k in cols]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        raise MaskclfError(f"{history_csv}: no loss or accuracy columns; found {', '.join(cols)}")
    n = len(next(iter(cols.values())))
    x = np.arange(1, n + 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(x, cols[key], marker="o" if n < 30 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch (row)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_path)


def plot_confusion_matrix(
    cm: Any, class_names: Sequence[str], out_path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """Plot counts and row-normalised confusion matrices side by side.

    Args:
        cm: (C, C) counts, rows = true class, columns = predicted class.
        class_names: C class names.
        out_path: destination PNG.
        title: figure title.

    Returns:
        The written path.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise MaskclfError(f"confusion matrix shape {cm.shape} does not match {len(class_names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    c = len(class_names)
    side = max(4.0, 1.0 + 0.9 * c)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side + 0.8))
    for ax, data, sub, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=max(data.max(), 1e-9))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ticks = np.arange(c)
        ax.set_xticks(ticks, labels=list(class_names), rotation=35, ha="right", fontsize=8)
        ax.set_yticks(ticks, labels=list(class_names), fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(sub)
        mid = data.max() / 2
        for i in range(c):
            for j in range(c):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > mid else "black")
    fig.suptitle(title)
    return _save(fig, out_path)


def plot_roc(y_true: Any, probs: Any, class_names: Sequence[str], out_path: str | os.PathLike) -> Path:
    """Plot ROC curves (and a precision-recall panel for two classes).

    Args:
        y_true: integer labels (N,).
        probs: probabilities (N, C).
        class_names: C class names; for two classes index 0 is the positive class.
        out_path: destination PNG.

    Returns:
        The written path.
    """
    y, p = _check_inputs(y_true, probs, class_names)
    binary = len(class_names) == 2
    fig, axes = plt.subplots(1, 2 if binary else 1, figsize=(11 if binary else 6, 5), squeeze=False)
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    classes = [0] if binary else range(len(class_names))
    for k in classes:
        y_k = y == k
        if y_k.all() or not y_k.any():
            continue  # ROC is undefined without both positives and negatives
        fpr, tpr, _ = roc_curve(y_k, p[:, k])
        ax.plot(fpr, tpr, lw=1.5, label=f"{class_names[k]} (AUC {auc(fpr, tpr):.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title("ROC" + (f" (positive: {class_names[0]})" if binary else " (one-vs-rest)"))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    if binary:
        ax = axes[0][1]
        y_pos = y == 0
        if y_pos.any():
            prec, rec, _ = precision_recall_curve(y_pos, p[:, 0])
            ap = average_precision_score(y_pos, p[:, 0])
            ax.plot(rec, prec, lw=1.5, label=f"{class_names[0]} (AP {ap:.3f})")
            ax.axhline(y_pos.mean(), color="k", ls="--", lw=1, label="chance")
            ax.legend(fontsize=8, loc="lower left")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="Precision-recall")
        ax.grid(alpha=0.3)
    return _save(fig, out_path)


def plot_sample_grid(
    images: Any, titles: Sequence[str], out_path: str | os.PathLike, cols: int = 8
) -> Path:
    """Plot images in a grid with a small title above each.

    Args:
        images: uint8 array (N, H, W, 3) or a list of (H, W, 3) arrays.
        titles: N strings.
        out_path: destination PNG.
        cols: images per row.

    Returns:
        The written path.
    """
    imgs = [np.asarray(im) for im in images]
    if not imgs:
        raise MaskclfError("no images to plot")
    if len(titles) != len(imgs):
        raise MaskclfError(f"{len(imgs)} images but {len(titles)} titles")
    for im in imgs:
        if im.ndim != 3 or im.shape[2] != 3:
            raise MaskclfError(f"images must be (H, W, 3), got shape {im.shape}")
    cols = max(1, min(int(cols), len(imgs)))
    rows = math.ceil(len(imgs) / cols)
    # One mosaic in one axes (titles as text in a band above each tile): a grid of N axes costs ~20 ms per
    # axes to lay out and draw, and every evaluation writes one of these.
    th, tw = max(im.shape[0] for im in imgs), max(im.shape[1] for im in imgs)
    band, gap = max(4, th // 5), max(2, tw // 16)
    ch, cw = th + band + gap, tw + gap
    mosaic = np.full((rows * ch, cols * cw - gap, 3), 255, np.uint8)
    for i, im in enumerate(imgs):
        if im.dtype != np.uint8:
            im = np.clip(im if im.max() > 1.0 else im * 255.0, 0, 255).astype(np.uint8)
        r, c = divmod(i, cols)
        y, x = r * ch + band, c * cw
        mosaic[y:y + im.shape[0], x:x + im.shape[1]] = im
    fig = plt.figure(figsize=(max(3.0, 1.8 * cols), max(3.0, 2.0 * rows)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for i, title in enumerate(titles):
        r, c = divmod(i, cols)
        ax.text(c * cw + tw / 2, r * ch + band * 0.6, str(title), fontsize=7, ha="center", va="center")
    try:
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return Path(out_path)
