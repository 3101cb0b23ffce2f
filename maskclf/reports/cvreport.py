"""Cross-validation folders: reading them and writing their summaries (cv.json, cv.md, cv.png).

    cv_fold_runs(dir)             -> K and the finished folds' run directories of a ``maskclf cv`` folder
    summarize_folds(rows, ...)    -> the mean ± sd summary of per-fold metrics (cv.json)
    format_cv / format_cv_by_source -> cv.md; plot_folds -> cv.png

Shared by ``maskclf cv`` (:mod:`maskclf.training.experiments`) and ``maskclf ensemble`` of cv folders
(:mod:`maskclf.training.ensemble`); nothing here trains, so both can import it. No TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from maskclf.data import sources
from maskclf.config import Config
from maskclf.files import MaskclfError


def mean_sd(values: list[float]) -> dict:
    """Mean and sample standard deviation of the non-None values (None, None when there are none)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {"mean": None, "sd": None}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def best_validation(run: Path, monitor: str) -> float | None:
    """The best epoch's validation value of the monitored metric (what recipes are chosen on)."""
    try:
        with open(run / "history.csv", newline="") as f:
            vals = [float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor) not in (None, "")]
    except (OSError, ValueError, KeyError):
        return None
    if not vals:
        return None
    return max(vals) if "loss" not in monitor else min(vals)


def fold_row(m: dict, class_names: list[str]) -> dict:
    """One fold's row for cv.json from its metrics.json."""
    row = {"balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
           "ece": m.get("ece"), "test_images": m["num_samples"],
           "recall": {c: m["per_class"][c]["recall"] for c in class_names},
           "support": {c: m["per_class"][c]["support"] for c in class_names},
           "confusion_matrix": m["confusion_matrix"],
           "train_seconds": m.get("training", {}).get("seconds"), "epochs": m.get("training", {}).get("epochs")}
    if m.get("per_source"):
        row["per_source"] = {s: v["balanced_accuracy"] for s, v in m["per_source"].items()}
    return row


def summarize_folds(rows: list[dict], class_names: list[str], cfg: Config, folds: int) -> dict:
    """cv.json's summary: mean ± sd per metric, pooled confusion matrix, per-source rows."""
    pooled = np.sum([np.asarray(r["confusion_matrix"]) for r in rows], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_recall = np.diag(pooled) / pooled.sum(axis=1)
    per_source = {}
    for r in rows:
        for s in r.get("per_source", {}):
            per_source.setdefault(s, mean_sd([x.get("per_source", {}).get(s) for x in rows]))
    return {
        "folds": folds, "folds_done": len(rows), "data": sources.describe(cfg.data), "model": cfg.model.name,
        "image_size": cfg.data.image_size, "config": cfg.to_dict(),
        "monitor": cfg.train.monitor,
        "validation_best": mean_sd([r["validation_best"] for r in rows]),
        "balanced_accuracy": mean_sd([r["balanced_accuracy"] for r in rows]),
        "accuracy": mean_sd([r["accuracy"] for r in rows]),
        "macro_f1": mean_sd([r["macro_f1"] for r in rows]),
        "ece": mean_sd([r["ece"] for r in rows]),
        "recall": {c: mean_sd([r["recall"][c] for r in rows]) for c in class_names},
        "pooled_confusion_matrix": pooled.astype(int).tolist(),
        "pooled_balanced_accuracy": float(np.nanmean(pooled_recall)),
        "class_names": class_names,
        "train_seconds": mean_sd([r["train_seconds"] for r in rows]),
        "per_source_balanced_accuracy": per_source,
        "per_fold": rows,
    }


def _pm(s: dict, scale: float = 100.0) -> str:
    return "n/a" if s["mean"] is None else f"{scale * s['mean']:.1f} ± {scale * s['sd']:.1f}"


def format_cv(summary: dict) -> str:
    """The cross-validation summary as Markdown: mean ± sd over folds, then one row per fold."""
    names = summary["class_names"]
    title = (f"# Cross-validation: {summary['model']} at {summary['image_size']} px, "
             f"{summary['folds_done']} of {summary['folds']} folds")
    if summary.get("ensemble_of"):
        title += f", ensemble of {len(summary['ensemble_of'])} cv folders (mean of probabilities)"
    lines = [title,
             "", f"Data: `{summary['data']}` (photo-grouped, class-stratified folds; each image tested once).", "",
             "| metric | mean ± sd over folds (%) |", "|---|---:|",
             f"| balanced accuracy | **{_pm(summary['balanced_accuracy'])}** |",
             ("| validation balanced accuracy of the ensemble (members' best epochs; choose on this) | "
              if summary.get("ensemble_of") else
              f"| validation {summary['monitor']} at the best epoch (choose recipes on this) | ")
             + f"{_pm(summary['validation_best'])} |",
             f"| macro F1 | {_pm(summary['macro_f1'])} |",
             f"| accuracy | {_pm(summary['accuracy'])} |"]
    lines += [f"| recall {c} | {_pm(summary['recall'][c])} |" for c in names]
    lines += [f"| balanced accuracy on {s} (its own classes) | {_pm(v)} |"
              for s, v in summary.get("per_source_balanced_accuracy", {}).items()]
    lines += [f"| expected calibration error | {_pm(summary['ece'])} |",
              f"| balanced accuracy of the pooled confusion matrix | {100 * summary['pooled_balanced_accuracy']:.1f} |",
              "", ("| fold | test images | balanced acc. | macro F1 | " + " | ".join(f"recall {c}" for c in names)
                   + " | ECE | epochs | train s |"),
              "|---:|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|"]
    for r in summary["per_fold"]:
        cells = [str(r["fold"]), str(r["test_images"]), f"{r['balanced_accuracy']:.4f}", f"{r['macro_f1']:.4f}"]
        cells += [f"{r['recall'][c]:.3f} ({r['support'][c]})" for c in names]
        cells += ["n/a" if r["ece"] is None else f"{r['ece']:.3f}", "" if r["epochs"] is None else str(r["epochs"]),
                  "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_folds(summary: dict, path: Path) -> None:
    """cv.png: balanced accuracy and per-class recall per fold, with their means."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskclf.reports.plots import _save

    names = summary["class_names"]
    keys = ["balanced accuracy"] + [f"recall\n{c}" for c in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(keys) + 2, 4))
    for r in summary["per_fold"]:
        vals = [r["balanced_accuracy"]] + [r["recall"][c] for c in names]
        ax.plot(range(len(keys)), [100 * v for v in vals], "o", alpha=0.6, label=f"fold {r['fold']}")
    means = [summary["balanced_accuracy"]["mean"]] + [summary["recall"][c]["mean"] for c in names]
    ax.plot(range(len(keys)), [100 * v for v in means], "k_", markersize=30, mew=2, label="mean")
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel("test fold (%)")
    ax.set_title(f"{summary['model']} {summary['image_size']} px: {summary['folds_done']}-fold cross-validation")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def cv_fold_runs(directory: str | os.PathLike) -> tuple[int, dict[int, Path]]:
    """A cv folder's K and its finished folds' run directories (fold -> run), from its cv.json.

    cv.json stores run paths as the command was given (possibly relative to where it ran); a path that does
    not exist as stored is found again inside ``directory`` by its ``fold-F-of-K`` part.
    """
    d = Path(directory)
    try:
        summary = json.loads((d / "cv.json").read_text())
        per_fold, k = summary["per_fold"], int(summary["folds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise MaskclfError(f"{d / 'cv.json'}: missing or unreadable; is {d} a `maskclf cv` folder?") from None
    runs = {}
    for r in per_fold:
        p = Path(r["run_dir"])
        if not p.is_dir():
            parts = p.parts
            at = next((i for i, part in enumerate(parts) if part.startswith("fold-") and "-of-" in part), None)
            if at is not None and (d.joinpath(*parts[at:])).is_dir():
                p = d.joinpath(*parts[at:])
        runs[int(r["fold"])] = p
    return k, runs


def format_cv_by_source(summary: dict) -> str:
    """The leave-one-source-out summary as Markdown: one row per held-out source."""
    lines = [f"# Leave-one-source-out: {summary['model']} at {summary['image_size']} px, "
             f"{len(summary['per_source'])} of {len(summary['sources'])} sources held out", "",
             f"Data: `{summary['data']}`. Each row trains on the other sources and tests on every image of the "
             "held-out one (scored on its own classes: predicting a class it lacks is an error).", "",
             "| held out | trained on | test images | balanced acc. | recall per class | precision per class |",
             "|---|---|---:|---:|---|---|"]
    for r in summary["per_source"]:
        rec = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items())
        prec = ", ".join(f"{c} {v:.3f}" for c, v in r["precision"].items())
        note = f" ({r['left_out']} left out)" if r["left_out"] else ""
        lines.append(f"| {r['held_out']} | {', '.join(r['trained_on'])} | {r['test_images']}{note} | "
                     f"**{r['balanced_accuracy']:.4f}** | {rec} | {prec} |")
    lines += ["", f"Mean over held-out sources: balanced accuracy **{_pm(summary['balanced_accuracy'])}** %."]
    return "\n".join(lines) + "\n"
