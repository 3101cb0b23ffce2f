"""Suspect labels: faces whose label the trained models confidently disagree with (``maskclf suspects``).

Public face-mask sets are hand-labelled in a hurry; "mask worn incorrectly" against "with mask" is a
judgement about a few pixels, and a few wrong labels in a class of ~120 faces move its recall by points.
Given a ``maskclf cv`` folder, every face is predicted by the fold model that never trained on it
(out-of-fold predictions), so each face gets an honest second opinion; given one run, its test split.

A face is a *suspect* by confident learning (Northcutt, Jiang & Chuang, JAIR 2021, the "confident joint"):
with ``t_k`` the mean predicted probability of class k over the faces labelled k, a face labelled ``i`` is
counted as class ``j`` when ``p_j >= t_j`` (the most probable such j); when ``j != i`` it is a suspect.
Suspects are ranked by how little probability the model gives their own label.

Writes into the output folder: ``predictions.csv`` (every face: label, fold, probabilities),
``suspects.csv`` (ranked; for VOC crops the photo, the object's index in its XML and the box),
``suspects.png`` (the top suspects in context: the face's box drawn on a wider crop of its photo) and
``suspects.md`` (counts per label → suggested class, the confident joint, and what to do).
The labels are not changed: a person looks at the sheet and edits the annotations.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from maskclf.files import MaskclfError, read_labels, write_text


def fold_runs(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """The runs to audit as (name, run directory): the folds of a ``maskclf cv`` folder (from its cv.json,
    named ``fold F``), or one run directory (named by its folder)."""
    from maskclf.reports.cvreport import cv_fold_runs

    p = Path(path)
    if (p / "cv.json").is_file():
        _, runs = cv_fold_runs(p)
        if not runs:
            raise MaskclfError(f"{p / 'cv.json'}: no finished fold; finish the folds first (`maskclf cv` resumes)")
        return [(f"fold {f}", r) for f, r in sorted(runs.items())]
    if (p / "split.csv").is_file() and (p / "best.keras").is_file():
        return [(p.name, p)]
    raise MaskclfError(f"{p}: neither a `maskclf cv` folder (cv.json) nor a trained run (best.keras + split.csv)")


def out_of_fold_predictions(runs: list[tuple[str, Path]], progress: bool = True) -> tuple[list[dict], np.ndarray, list[str]]:
    """Each run's test faces predicted by that run's model: (rows of split.csv + ``fold``, probabilities, classes).

    Over the folds of one cross-validation every face is in exactly one test fold, so this predicts every
    face once, by a model that did not train on it.
    """
    from maskclf.data import splitting
    from maskclf.config import load_config
    from maskclf.reports.evaluate import load_run_model, predict_paths

    names: list[str] | None = None
    rows: list[dict] = []
    probs = []
    for n, (fold, run) in enumerate(runs, 1):
        if not run.is_dir():
            raise MaskclfError(f"{run}: run directory not found (moved since the cv ran?)")
        these = read_labels(run / "labels.txt")
        if names is None:
            names = these
        elif these != names:
            raise MaskclfError(f"{run}: classes {these} differ from {runs[0][1]}'s {names}; audit runs of one dataset")
        test = [r for r in splitting.read_split_csv(run / "split.csv") if r["split"] == "test"]
        missing = [r["path"] for r in test if not os.path.exists(r["path"])]
        if missing:
            raise MaskclfError(f"{missing[0]}: image of {run / 'split.csv'} not found ({len(missing)} missing); "
                               f"`maskclf evaluate {run}` rebuilds the face-crop cache")
        unknown = sorted({r["label"] for r in test} - set(names))
        if unknown:
            raise MaskclfError(f"{run / 'split.csv'}: labels {unknown[:3]} are not in labels.txt")
        if progress:
            print(f"predicting {len(test)} test faces of {fold} ({n}/{len(runs)})", file=sys.stderr, flush=True)
        size = load_config(run / "config.yaml").data.image_size
        probs.append(predict_paths(load_run_model(run), [r["path"] for r in test], size))
        rows += [dict(r, fold=fold) for r in test]
    seen: dict[str, str] = {}
    for r in rows:
        if r["path"] in seen:
            raise MaskclfError(f"{r['path']}: in the test split of both {seen[r['path']]} and {r['fold']}; "
                               "audit the folds of one cross-validation (or one run)")
        seen[r["path"]] = r["fold"]
    return rows, np.concatenate(probs), names or []


def confident_joint(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident learning's per-class thresholds, each face's confidently counted class, and the joint.

    Returns:
        thresholds (C,): mean probability of class k over the faces labelled k (1.0 for an absent class);
        counted (N,): the class a face is confidently counted as (-1 when no class reaches its threshold);
        joint (C, C): faces labelled i (rows) counted as j (columns).
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[1]
    t = np.array([p[y == k, k].mean() if (y == k).any() else 1.0 for k in range(c)])
    # A small tolerance: a saturated model gives ~1.0 everywhere and the mean must not exclude half of its faces.
    above = p >= t[None, :] - 1e-4
    masked = np.where(above, p, -1.0)
    counted = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((c, c), dtype=np.int64)
    for i, j in zip(y, counted):
        if j >= 0:
            joint[i, j] += 1
    return t, counted, joint


@functools.lru_cache(maxsize=1024)
def _manifest(folder: str) -> dict:
    """A photo's crop-cache manifest (read once however many of its faces are asked about); {} if none."""
    try:
        rec = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def object_info(row: dict) -> dict:
    """Where a VOC face crop came from (photo, object index, box) from its crop-cache manifest; {} otherwise."""
    crop = Path(row["path"])
    rec = _manifest(str(crop.parent))
    for face in rec.get("faces", []):
        if face.get("file") == crop.name:
            return {"photo": rec.get("image", ""), "object": int(crop.stem), "box": face.get("box")}
    return {}


def context_image(row: dict, info: dict, side: int = 160) -> np.ndarray:
    """The face as a person should judge it: a wider crop of its photo, upscaled, its box drawn in yellow."""
    from PIL import Image, ImageDraw

    from maskclf.data import images

    if info.get("photo") and info.get("box") and os.path.exists(info["photo"]):
        img = images.load_rgb(info["photo"])
        x1, y1, x2, y2 = info["box"]
        b = images.square_box((x1, y1, x2, y2), 0.6, img.width, img.height)
        if b is not None:
            view = img.crop(b)
            scale = side / max(view.width, view.height)
            view = view.resize((max(1, round(view.width * scale)), max(1, round(view.height * scale))),
                               Image.Resampling.BICUBIC)
            ImageDraw.Draw(view).rectangle([(x1 - b[0]) * scale, (y1 - b[1]) * scale, (x2 - b[0]) * scale,
                                            (y2 - b[1]) * scale], outline=(255, 220, 0), width=2)
            canvas = Image.new("RGB", (side, side))
            canvas.paste(view, ((side - view.width) // 2, (side - view.height) // 2))
            return np.asarray(canvas)
    return images.load_array(row["path"], side).astype(np.uint8)


def find_suspects(path: str | os.PathLike, out: str | os.PathLike | None = None, top: int = 48,
                  progress: bool = True) -> dict:
    """Audit the labels of a cv folder (or one run's test split); write the files listed in the module doc.

    Returns a summary dict (counts, thresholds, joint, out-of-fold balanced accuracy, output folder).
    """
    from maskclf.reports import plots
    from maskclf.reports.evaluate import compute_metrics, short_class_names

    runs = fold_runs(path)
    out = Path(out) if out else Path(path) / "suspects"
    rows, probs, names = out_of_fold_predictions(runs, progress=progress)
    if not rows:
        raise MaskclfError(f"{path}: no test faces to audit")
    y = np.array([names.index(r["label"]) for r in rows])
    t, counted, joint = confident_joint(y, probs)
    suspect = np.nonzero((counted >= 0) & (counted != y))[0]
    suspect = suspect[np.argsort(probs[suspect, y[suspect]], kind="stable")]
    metrics = compute_metrics(y, probs, names)
    out.mkdir(parents=True, exist_ok=True)

    def csv_text(header: list[str], body: list[list]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(body)
        return buf.getvalue()

    pred = probs.argmax(axis=1)
    write_text(out / "predictions.csv", csv_text(
        ["path", "label", "predicted", "fold", *[f"p_{n}" for n in names]],
        [[r["path"], r["label"], names[pred[i]], r["fold"], *[f"{v:.4f}" for v in probs[i]]]
         for i, r in enumerate(rows)]))
    info = {int(i): object_info(rows[i]) for i in suspect}
    body = []
    for rank, i in enumerate(suspect, 1):
        r, o = rows[i], info[int(i)]
        box = ",".join(f"{v:g}" for v in o["box"]) if o.get("box") else ""
        body.append([rank, o.get("photo") or r.get("source") or r["path"], o.get("object", ""), box, r["label"],
                     names[counted[i]], f"{probs[i, y[i]]:.3f}", f"{probs[i, counted[i]]:.3f}", r["fold"], r["path"]])
    write_text(out / "suspects.csv", csv_text(["rank", "photo", "object", "box", "label", "suggested", "p_label",
                                               "p_suggested", "fold", "crop"], body))
    shown = suspect[:max(0, top)]
    short = short_class_names(names)
    if len(shown):
        pics = [context_image(rows[i], info[int(i)]) for i in shown]
        titles = [f"#{k} {short[y[i]]}→{short[counted[i]]} {probs[i, counted[i]]:.2f}\n"
                  f"{Path(info[int(i)].get('photo') or rows[i]['path']).name}"
                  + (f" obj {info[int(i)]['object']}" if "object" in info[int(i)] else "")
                  for k, i in enumerate(shown, 1)]
        plots.plot_sample_grid(pics, titles, out / "suspects.png", cols=8)
    elif (out / "suspects.png").exists():
        (out / "suspects.png").unlink()
    summary = {"source": str(Path(path)), "runs": [str(r) for _, r in runs], "faces": len(rows), "classes": names,
               "faces_per_class": [int((y == k).sum()) for k in range(len(names))],
               "thresholds": [float(v) for v in t], "confident_joint": joint.tolist(),
               "suspects": int(len(suspect)), "balanced_accuracy": metrics["balanced_accuracy"],
               "per_class_recall": [metrics["per_class"][n]["recall"] for n in names], "out": str(out)}
    write_text(out / "suspects.md", format_suspects(summary, body[:max(0, top)]))
    return summary


def format_suspects(s: dict, top_rows: list[list] | None = None, advice: bool = True) -> str:
    """The audit as Markdown: counts, the confident joint, (with ``advice``) what to do, and the top suspects."""
    names = s["classes"]
    folds = len(s["runs"])
    what = (f"out-of-fold predictions of {folds} fold models (each face predicted by the model that did not train "
            "on it)" if folds > 1 else "the run's test split")
    lines = [f"# Suspect labels: {s['source']}", "",
             f"{s['faces']} faces, {what}. Balanced accuracy {s['balanced_accuracy']:.3f}; recall "
             + ", ".join(f"{n} {r:.3f}" for n, r in zip(names, s["per_class_recall"])) + ".", "",
             f"**{s['suspects']} suspects** ({100 * s['suspects'] / max(1, s['faces']):.1f} % of the faces): the "
             "model is confident they belong to another class (confident learning, Northcutt et al. 2021).", "",
             "Confident joint (rows: given label; columns: the class the face is confidently counted as; "
             "faces that reach no class's threshold are not counted):", "",
             "| label \\ counted as | " + " | ".join(names) + " | faces | threshold |",
             "|---|" + "---:|" * (len(names) + 2)]
    for k, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(v) for v in s["confident_joint"][k])
                     + f" | {s['faces_per_class'][k]} | {s['thresholds'][k]:.2f} |")
    if not advice:
        return "\n".join(lines) + "\n"
    lines += ["", "A suspect is either a wrong label or a face the model gets wrong; only a person can tell. Open "
              "suspects.png (each face's box in yellow on a wider crop of its photo), add a `correct_label` column "
              "to suspects.csv and fill it in for the faces you judged (the right class; leave it empty where you "
              "cannot tell), then `maskclf data relabel DATA --decisions suspects.csv --out DATA_FIXED` writes a "
              "corrected copy (the original is not touched; for VOC photos it rewrites the `<name>` of object number "
              "*object*, counting from 0, in the photo's XML) and you train on it. Judge the test split's labels "
              "before you read its accuracy, never after choosing a model on it.", ""]
    if top_rows:
        lines += ["| # | photo | object | label | suggested | p(label) | p(suggested) | fold |",
                  "|---:|---|---:|---|---|---:|---:|---|"]
        for r in top_rows:
            lines.append(f"| {r[0]} | {Path(str(r[1])).name} | {r[2]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | {r[8]} |")
        lines.append("")
    lines.append(f"All {s['suspects']} in suspects.csv; every face's probabilities in predictions.csv.")
    return "\n".join(lines) + "\n"
