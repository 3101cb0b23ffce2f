"""A run report: ``report.html`` (self-contained, images inlined) and ``report.md`` (PNGs beside it).

Sections: configuration, data summary (images per class per split, problems skipped), learning
curves, metrics, confusion matrix, ROC, and the worst misclassified test images with their
Grad-CAM overlays. Missing figures are made from the run's files (``metrics.json`` by evaluating
the run when it was never evaluated). Nothing at module level imports TensorFlow.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from maskclf.files import members_of
from maskclf.files import MaskclfError, write_text

SPLITS = ("train", "validation", "test")
ERRORS_PNG = "report_errors_gradcam.png"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #bbb;padding:.25em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.7em;overflow-x:auto;font-size:.85em}
img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
.muted{color:#777}
"""


# ----------------------------------------------------------------------------- gathering

def split_counts(rows: list[dict], class_names: list[str]) -> list[list]:
    """Images per class per split: rows [class, train, validation, test, total] and a total row."""
    c = Counter((r["label"], r["split"]) for r in rows)
    table = []
    for name in class_names:
        vals = [c.get((name, s), 0) for s in SPLITS]
        table.append([name, *vals, sum(vals)])
    totals = [sum(row[i] for row in table) for i in range(1, 5)]
    return table + [["total", *totals]]


def problems_text(data_report: str) -> str:
    """The 'problems' part of a run's data_report.txt (what was skipped), or ''."""
    lines = data_report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("problems:"):
            return "\n".join(lines[i:])
    return ""


def _metrics_rows(m: dict) -> tuple[list[tuple[str, str]], list[list]]:
    def f(v):
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    keys = ["num_samples", "accuracy", "balanced_accuracy", "macro_f1", "positive_class", "threshold", "f1",
            "precision", "recall", "specificity", "npv", "roc_auc", "pr_auc", "roc_auc_ovr"]
    head = [(k, f(m[k])) for k in keys if k in m]
    per = [[n, f(v["precision"]), f(v["recall"]), f(v["f1"]), str(v["support"])]
           for n, v in m.get("per_class", {}).items()]
    return head, per


def worst_errors(run_dir: str | os.PathLike, n: int = 8, model=None) -> dict:
    """The run's most confident test mistakes (or, with none, its least confident correct calls).

    Returns:
        dict with paths, true, pred, score (lists) and ``kind`` (``"errors"`` or ``"least confident"``).
    """
    from maskclf.data import splitting
    from maskclf.config import load_config
    from maskclf.reports.evaluate import predict_paths, load_run_model, most_confident_mistakes
    from maskclf.files import read_labels

    run = Path(run_dir)
    cfg = load_config(run / "config.yaml")
    names = read_labels(run / "labels.txt")
    rows = [r for r in splitting.read_split_csv(run / "split.csv")
            if r["split"] == "test" and os.path.exists(r["path"])]
    if not rows:
        return {"paths": [], "true": [], "pred": [], "score": [], "kind": "errors"}
    model = model if model is not None else load_run_model(run)
    probs = predict_paths(model, [r["path"] for r in rows], cfg.data.image_size)
    y = np.array([names.index(r["label"]) for r in rows])
    try:
        thr = json.loads((run / "metrics.json").read_text()).get("threshold")
    except (OSError, ValueError):
        thr = None
    pick, pred = most_confident_mistakes(y, probs, thr, n)
    conf = probs[np.arange(len(pred)), pred]
    kind = "errors"
    if not len(pick):
        pick, kind = np.argsort(conf)[:n], "least confident"
    return {"paths": [rows[i]["path"] for i in pick], "true": [names[y[i]] for i in pick],
            "pred": [names[pred[i]] for i in pick], "score": [float(conf[i]) for i in pick], "kind": kind,
            "pred_index": [int(pred[i]) for i in pick]}


def plot_errors_gradcam(run_dir: str | os.PathLike, errors: dict, out_path: str | os.PathLike,
                        model=None) -> Path | None:
    """A grid: each image beside its Grad-CAM overlay for the predicted (wrong) class."""
    from maskclf.reports import explain
    from maskclf.data import images
    from maskclf.config import load_config
    from maskclf.reports.evaluate import load_run_model
    from maskclf.reports.plots import plot_sample_grid

    if not errors["paths"]:
        return None
    run = Path(run_dir)
    size = load_config(run / "config.yaml").data.image_size
    model = model if model is not None else load_run_model(run)
    x = np.stack([images.load_array(p, size) for p in errors["paths"]]).astype(np.float32)
    maps, _ = explain.model_heatmaps(model, x, errors["pred_index"], methods=["gradcam"])
    show = max(size, 96)
    pics, titles = [], []
    for p, t, pr, s, hm in zip(errors["paths"], errors["true"], errors["pred"], errors["score"], maps["gradcam"]):
        img = images.load_array(p, show)
        pics += [img, explain.overlay(img, hm)]
        titles += [f"true {t[:14]}", f"→ {pr[:14]} {s:.2f}"]
    return plot_sample_grid(pics, titles, out_path, cols=min(8, len(pics)))


# ----------------------------------------------------------------------------- writing

def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: list[str], rows: list[list]) -> str:
    def esc(c):
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(c) for c in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def build_report(run_dir: str | os.PathLike, max_errors: int = 8, progress: bool = False) -> Path:
    """Write ``report.html`` and ``report.md`` into a run directory.

    Args:
        run_dir: a directory made by ``maskclf train``.
        max_errors: how many misclassified test images to show with Grad-CAM overlays.
        progress: print what is being made.

    Returns:
        The path of ``report.html``.
    """
    import sys

    from maskclf.data import splitting

    from maskclf.reports import plots
    from maskclf.files import read_labels

    run = Path(run_dir)
    if not run.is_dir():
        raise MaskclfError(f"{run}: run directory not found")
    for need in ("config.yaml", "labels.txt", "split.csv"):
        if not (run / need).is_file():
            raise MaskclfError(f"{run / need}: missing; is {run} a run directory made by `maskclf train`?")
    names = read_labels(run / "labels.txt")

    def log(msg):
        if progress:
            print(msg, file=sys.stderr, flush=True)

    model = None
    if not (run / "metrics.json").is_file() and (run / "best.keras").is_file():
        from maskclf.reports.evaluate import evaluate_run
        log("no metrics.json: evaluating the run first")
        evaluate_run(run, progress=progress)
    if (run / "history.csv").is_file() and not (run / "history.png").is_file():
        try:
            plots.plot_history(run / "history.csv", run / "history.png")
        except MaskclfError:
            pass
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    errors = {"paths": [], "kind": "errors"}
    ensemble = bool(members_of(run))  # Grad-CAM: the mean of the members' heatmaps
    if (run / "best.keras").is_file() and max_errors > 0:
        from maskclf.reports.evaluate import load_run_model
        log("Grad-CAM of the worst test mistakes")
        model = load_run_model(run)
        errors = worst_errors(run, max_errors, model=model)
        if errors["paths"]:
            plot_errors_gradcam(run, errors, run / ERRORS_PNG, model=model)
        elif (run / ERRORS_PNG).exists():
            (run / ERRORS_PNG).unlink()

    config_text = (run / "config.yaml").read_text(encoding="utf-8")
    rows = splitting.read_split_csv(run / "split.csv")
    counts = split_counts(rows, names)
    data_report = (run / "data_report.txt").read_text(encoding="utf-8") if (run / "data_report.txt").is_file() else ""
    problems = problems_text(data_report) or "problems: not recorded (no data_report.txt)"
    head, per = _metrics_rows(metrics)
    if errors["paths"] and errors["kind"] == "errors":
        err_caption = (f"The {len(errors['paths'])} most confident mistakes on the test split: each image, then its "
                       "Grad-CAM overlay for the (wrong) predicted class with its probability"
                       + (" (an ensemble: the mean of its members' heatmaps, ensemble.json names them)." if ensemble
                          else "."))
    elif errors["paths"]:
        err_caption = ("No test image is misclassified. Shown instead: the least confident correct predictions, "
                       "each with its Grad-CAM overlay for the predicted class.")
    else:
        err_caption = "No test images to show (no model or no test split)."

    # (title, file, caption) of every figure, in report order.
    figures = [
        ("Learning curves", "history.png", "Loss and accuracy per epoch (training and validation)."),
        ("Confusion matrix", "confusion_matrix.png", "Test split: counts and row-normalised."),
        ("ROC", "roc.png", "Test split: ROC (and precision-recall for two classes)."),
        ("Worst misclassified test images with Grad-CAM", ERRORS_PNG, err_caption),
    ]
    title = f"maskclf run report: {run.name}"
    model_line = f"model {metrics.get('model', '?')}, image size {metrics.get('image_size', '?')}, classes: " \
                 f"{', '.join(names)}"
    count_header = ["class", *SPLITS, "total"]

    h = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
         f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
         f"<p>{html.escape(model_line)}</p>",
         "<h2>Data</h2>", _html_table(count_header, counts), f"<pre>{html.escape(problems)}</pre>"]
    if data_report:
        h.append(f"<details><summary>full data report</summary><pre>{html.escape(data_report)}</pre></details>")
    h.append("<h2>Metrics</h2>")
    if metrics:
        h += [_html_table(["metric", "value"], head), _html_table(["class", "precision", "recall", "F1", "support"], per)]
    else:
        h.append("<p class='muted'>no metrics.json (no trained model)</p>")
    md = [f"# {title}", "", model_line, "", "## Data", "", _md_table(count_header, counts), "", "```", problems, "```",
          "", "## Metrics", ""]
    md += ([_md_table(["metric", "value"], head), "", _md_table(["class", "precision", "recall", "F1", "support"], per)]
           if metrics else ["no metrics.json (no trained model)"])
    for fig_title, fname, caption in figures:
        p = run / fname
        h.append(f"<h2>{html.escape(fig_title)}</h2>")
        md += ["", f"## {fig_title}", ""]
        if p.is_file():
            h.append(f"<figure><img src='{_data_uri(p)}' alt='{html.escape(fig_title)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            md += [f"![{fig_title}]({fname})", "", caption]
        else:
            h.append(f"<p class='muted'>{html.escape(caption if fname == ERRORS_PNG else fname + ' not found')}</p>")
            md.append(caption if fname == ERRORS_PNG else f"{fname} not found")
    h += ["<h2>Configuration</h2>", f"<pre>{html.escape(config_text)}</pre>", "</body></html>"]
    md += ["", "## Configuration", "", "```yaml", config_text.rstrip(), "```", ""]
    write_text(run / "report.md", "\n".join(md))
    return write_text(run / "report.html", "\n".join(h) + "\n")
