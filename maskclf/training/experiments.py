"""Experiments that train several runs on one dataset: model comparison and cross-validation.

``compare`` trains several registry models on the same split (seed report 004's table);
``cross_validate`` trains one configuration on K photo-grouped, class-stratified folds and
summarises the spread. Both load and crop the dataset once, and both re-use a finished run made
from the same configuration, so an interrupted experiment picks up where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from maskclf.data import sources, splitting
from maskclf.reports.cvreport import (best_validation, cv_fold_runs, fold_row, format_cv, format_cv_by_source, mean_sd,
                              plot_folds, summarize_folds)
from maskclf.config import Config
from maskclf.files import MaskclfError, write_json, write_text


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def fit_members(cfgs: Config | Sequence[Config], data: tuple | None = None, wanted: bool = True,
                progress: bool = True) -> Path | None:
    """One configuration's run, or one run per member configuration and their average as one more run beside
    the first member's (the cross-family ensemble ``maskclf train`` gives without ``--model``).

    A run already finished in its ``train.out`` with the same configuration is taken as it is, so an
    interrupted command picks up where it stopped.

    Args:
        cfgs: one configuration, or the members' (same data and split, e.g. two model families).
        data: an already loaded ``(LabeledImages, splits)`` pair, as :func:`maskclf.training.train.train` takes.
        wanted: train what is missing; False only looks for finished runs (None unless all are there).
        progress: print progress.

    Returns:
        The run directory (the ensemble's for several members), or None.
    """
    from maskclf.training.ensemble import ensemble_of
    from maskclf.training.train import find_completed_run, train

    cfgs = _as_list(cfgs)
    runs = []
    for k, c in enumerate(cfgs):
        run = find_completed_run(Path(c.train.out), c.fingerprint())
        if run is None and not wanted:
            return None
        if len(cfgs) > 1:
            _log(f"member {k + 1}/{len(cfgs)} ({c.model.name} at {c.data.image_size} px)"
                 + (f": already trained in {run}" if run else ""), progress)
        runs.append(run or train(c, progress=progress, data=data))
    if len(runs) == 1:
        return runs[0]
    out = runs[0].parent / f"{runs[0].name}-ensemble-{'-'.join(c.model.name for c in cfgs[1:])}"
    ensemble_of(runs, out, progress=progress)
    return out


def _as_list(cfg: Config | Sequence[Config]) -> list[Config]:
    """One configuration or an ensemble's member configurations, as a list."""
    return [cfg] if isinstance(cfg, Config) else list(cfg)


def members_label(cfgs: Sequence[Config]) -> str:
    """``model-size`` of one configuration, ``a+b`` of an ensemble's members: names cv folders."""
    return (f"{cfgs[0].model.name}-{cfgs[0].data.image_size}" if len(cfgs) == 1
            else "+".join(c.model.name for c in cfgs))


def compare(data: str | list | None, models: list[str], epochs: int | None = None, image_size: int | None = None,
            weights: str | None = None, out=None, overrides: Iterable = (), progress: bool = True) -> Path:
    """Train several models on the same split and tabulate them like seed report 004.

    Args:
        data: dataset root (default: the config's ``data.path``).
        models: registry names.
        epochs: maximum epochs per model.
        image_size: input size for every model (default: each model's own).
        weights: ``imagenet`` for the backbones (models built from scratch ignore it).
        out: folder for the table and the models' runs (default ``runs/compare``); a model whose
            run finished with the same configuration is not trained again.
        overrides: ``key=value`` settings for every model; a ``model.<option>`` goes to the models
            that have that option.
        progress: print progress.

    Returns:
        The folder with ``compare.csv``, ``compare.md``, ``compare.png`` and ``runs/``.
    """
    from maskclf import config as C
    from maskclf.models.registry import get_spec
    from maskclf.training.train import find_completed_run, train

    if not models:
        raise MaskclfError("--models: name at least one model, e.g. small_cnn,vgg19")
    specs = [get_spec(m) for m in models]
    if len(set(models)) != len(models):
        raise MaskclfError(f"--models lists a model twice: {','.join(models)}")
    general, model_opts = [], {}
    for o in overrides or []:
        k, v = C._split_kv(o)
        if k.startswith("model.") and k.split(".", 1)[1] not in ("name", "weights", "options"):
            model_opts[k.split(".", 1)[1]] = v
        else:
            general.append(o)
    for opt in model_opts:
        if not any(opt in s.option_names() for s in specs):
            raise MaskclfError(f"model.{opt}: none of {', '.join(models)} has this option")
    base = C.apply_overrides(C.Config(), general)
    if data is not None:
        base = C.apply_overrides(base, C.data_overrides(data))
    directory = Path(out or Path(base.train.out) / "compare")
    base = C.apply_overrides(base, {"train.out": str(directory / "runs"), **({"train.epochs": epochs} if epochs else {})})
    ds = sources.load_data(base.data, progress=progress)
    splits = sources.assign_splits(ds, base.data)
    rows = []
    for spec in specs:
        ov = {"model.name": spec.name, "data.image_size": image_size or spec.image_size,
              "model.weights": weights if spec.backbone else None}
        ov.update({f"model.{k}": v for k, v in model_opts.items() if k in spec.option_names()})
        cfg = C.apply_overrides(base, ov)
        run = find_completed_run(Path(cfg.train.out), cfg.fingerprint())
        if run is None:
            if progress:
                print(f"maskclf compare: training {spec.name} at {cfg.data.image_size} px", file=sys.stderr, flush=True)
            run = train(cfg, progress=progress, data=(ds, splits))
        elif progress:
            print(f"maskclf compare: {spec.name} already trained in {run}", file=sys.stderr, flush=True)
        m = json.loads((run / "metrics.json").read_text())
        tr = m.get("training", {})
        row = {"model": spec.name, "image_size": cfg.data.image_size}
        row.update({f"{c} accuracy": m["per_class"][c]["recall"] for c in ds.class_names})
        row.update({"balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                    "parameters": tr.get("parameters"), "train_seconds": tr.get("seconds"),
                    "epochs": tr.get("epochs"), "run_dir": str(run)})
        rows.append(row)
    _write_comparison(rows, ds.class_names, directory)
    return directory


def _write_comparison(rows: list[dict], class_names: list[str], directory: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from maskclf.reports.plots import _save

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(directory / "compare.csv", buf.getvalue())

    head = ["Model", "Size"] + class_names + ["Balanced accuracy", "Accuracy", "Parameters", "Training time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r["model"], str(r["image_size"])]
        cells += [f"{100 * r[f'{c} accuracy']:.2f}" for c in class_names]
        cells += [f"{100 * r['balanced_accuracy']:.2f}", f"{100 * r['accuracy']:.2f}",
                  f"{r['parameters']:,}" if r["parameters"] is not None else "",
                  f"{r['train_seconds']:.1f}" if r["train_seconds"] is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Per-class accuracy is the recall of each class on the test split; balanced accuracy is their mean "
            "(seed report 004's ACA). Percent.")
    write_text(directory / "compare.md", "\n".join(lines) + "\n\n" + note + "\n")

    groups = class_names + ["balanced"]
    x = np.arange(len(groups))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 0.4 * len(rows)), 4))
    for i, r in enumerate(rows):
        vals = [100 * r[f"{c} accuracy"] for c in class_names] + [100 * r["balanced_accuracy"]]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=r["model"])
    ax.set_xticks(x, groups)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class and balanced accuracy by model")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, directory / "compare.png")


# ----------------------------------------------------------------------------- cross-validation

def kfold_splits(labels: list[int], groups: list[str], folds: int, val_fraction: float, seed: int) -> list[list[str]]:
    """K photo-grouped, class-stratified folds; per fold a train/validation/test assignment.

    Fold ``f``'s test split is the f-th of K group-disjoint, class-stratified parts (sklearn's
    StratifiedGroupKFold, seeded); its validation split is a grouped, stratified share of the
    remaining groups of about ``val_fraction`` of all images. Every image is tested exactly once.

    Returns:
        ``folds`` lists of ``train``/``validation``/``test``, one entry per image.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise MaskclfError(f"--folds must be at least 2, got {folds}")
    n_groups = len(set(groups))
    if n_groups < folds:
        raise MaskclfError(f"only {n_groups} image groups: too few for {folds} folds; use fewer folds or more images")
    sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class" warnings for tiny classes
        parts = [test for _, test in sgkf.split(np.zeros(len(labels)), labels, groups)]
    out = []
    share = min(0.5, val_fraction / (1.0 - 1.0 / folds))
    for test_idx in parts:
        test = set(test_idx.tolist())
        rest = [i for i in range(len(labels)) if i not in test]
        sub = splitting.grouped_split([labels[i] for i in rest], [groups[i] for i in rest], share, 0.0, seed)
        splits = ["test"] * len(labels)
        for i, s in zip(rest, sub):
            splits[i] = s
        out.append(splits)
    return out


def cross_validate(cfg: Config | Sequence[Config], folds: int = 5, out=None, only: Iterable[int] | None = None,
                   progress: bool = True) -> Path:
    """Train ``cfg`` on K photo-grouped folds and summarise the test metrics over the folds.

    Args:
        cfg: the configuration of every fold (its ``data`` section names the dataset; given
            train/validation/test folders are pooled and re-split into folds), or the members' of an
            ensemble (same data), each trained on every fold and averaged fold by fold (:func:`fit_members`).
        folds: K.
        out: output folder (default ``<train.out>/cv-<model>-<size>``); fold f's run goes to
            ``out/fold-<f>-of-<K>/``; a fold already finished with the same configuration is not retrained.
        only: train only these folds (1-based), e.g. to spread folds over machines; the summary
            covers the folds finished so far.
        progress: print progress.

    Returns:
        The folder with ``cv.json``, ``cv.md`` and ``cv.png``.
    """
    from maskclf import config as C

    cfgs = _as_list(cfg)
    cfg = cfgs[0]
    directory = Path(out or Path(cfg.train.out) / f"cv-{members_label(cfgs)}")
    wanted = set(only) if only else set(range(1, folds + 1))
    if not wanted <= set(range(1, folds + 1)):
        raise MaskclfError(f"--fold: fold numbers run from 1 to {folds}, got {sorted(wanted)}")
    _log(f"reading {sources.describe(cfg.data)} ...", progress)
    ds = sources.load_data(cfg.data, progress=progress)
    # With several sources, folds are stratified by source and class, so every fold tests every source.
    fold_splits = kfold_splits(sources.strata(ds), ds.groups, folds, cfg.data.val_fraction, cfg.data.split_seed)
    teachers = _fold_teachers(cfg.train.distill_from, folds)
    rows = []
    for f, splits in enumerate(fold_splits, start=1):
        # The folder names the fold and K: the configuration (and so its fingerprint) is the same for all.
        fcfgs = [C.apply_overrides(c, {"train.out": str(directory / f"fold-{f}-of-{folds}")}) for c in cfgs]
        if f in teachers:
            fcfgs = [C.apply_overrides(c, {"train.distill_from": teachers[f]}) for c in fcfgs]
        elif teachers and f in wanted:
            raise MaskclfError(f"train.distill_from={cfg.train.distill_from}: fold {f} is not finished there; "
                               "finish it first (`maskclf cv` resumes)")
        run = fit_members(fcfgs, wanted=False, progress=False)
        if run is None and f in wanted:
            _log(f"maskclf cv: fold {f}/{folds}: {splits.count('train')} train / {splits.count('validation')} "
                 f"validation / {splits.count('test')} test images", progress)
            run = fit_members(fcfgs, data=(ds, splits), progress=progress)
        elif run is not None:
            _log(f"maskclf cv: fold {f}/{folds} already trained in {run}", progress)
        if run is None:
            continue
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"fold": f, "run_dir": str(run), "validation_best": _validation_best(run, m, cfg),
                     **fold_row(m, ds.class_names)})
    if not rows:
        raise MaskclfError(f"{directory}: no fold finished")
    summary = _with_members(summarize_folds(rows, ds.class_names, cfg, folds), cfgs)
    write_json(directory / "cv.json", summary)
    write_text(directory / "cv.md", format_cv(summary))
    plot_folds(summary, directory / "cv.png")
    return directory


def cross_validate_by_source(cfg: Config, out=None, only: Iterable[str] | None = None, progress: bool = True) -> Path:
    """Leave-one-source-out: for each source of ``cfg.data`` (``data.path`` + ``data.sources``), train on the
    others and test on every image of it; the honest figure for photos from a source never seen in training.

    Args:
        cfg: the configuration of every fold (its data must name at least two sources), or the members' of an
            ensemble (:func:`fit_members`).
        out: output folder (default ``<train.out>/cv-by-source-<model>-<size>``); the fold holding out source
            S trains into ``out/heldout-<S>/`` and is not retrained when finished with the same configuration.
        only: hold out only these sources (names as in the data report), e.g. to share folds between machines.
        progress: print progress.

    Returns:
        The folder with ``cv.json`` and ``cv.md`` (one row per held-out source, and their mean).
    """
    from maskclf import config as C

    cfgs = _as_list(cfg)
    cfg = cfgs[0]
    directory = Path(out or Path(cfg.train.out) / f"cv-by-source-{members_label(cfgs)}")
    _log(f"reading {sources.describe(cfg.data)} ...", progress)
    ds = sources.load_data(cfg.data, progress=progress)
    names = list(dict.fromkeys(ds.origins))
    if len(names) < 2:
        raise MaskclfError("maskclf cv --by-source needs at least two sources: give --data A --data B "
                           "(or data.sources in the config)")
    wanted = set(only) if only else set(names)
    if not wanted <= set(names):
        raise MaskclfError(f"--source {', '.join(sorted(wanted - set(names)))}: not a source; sources: {', '.join(names)}")
    rows = []
    for held in names:
        fold, splits, left_out = sources.leave_one_out(ds, held, cfg.data.val_fraction, cfg.data.split_seed)
        fcfgs = [C.apply_overrides(c, {"train.out": str(directory / f"heldout-{held}")}) for c in cfgs]
        run = fit_members(fcfgs, wanted=False, progress=False)
        if run is None and held in wanted:
            _log(f"maskclf cv --by-source: testing on {held} ({splits.count('test')} images"
                 + (f"; {left_out} of classes the other sources lack left out" if left_out else "")
                 + f"), training on {', '.join(n for n in names if n != held)}", progress)
            run = fit_members(fcfgs, data=(fold, splits), progress=progress)
        if run is None:
            continue
        m = json.loads((run / "metrics.json").read_text())
        present = [c for c in m["class_names"] if m["per_class"][c]["support"]]
        rows.append({"held_out": held, "trained_on": [n for n in names if n != held], "run_dir": str(run),
                     "test_images": m["num_samples"], "left_out": left_out, "class_names": m["class_names"],
                     "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                     "recall": {c: m["per_class"][c]["recall"] for c in present},
                     "precision": {c: m["per_class"][c]["precision"] for c in m["class_names"]},
                     "confusion_matrix": m["confusion_matrix"],
                     "validation_best": _validation_best(run, m, cfg)})
    if not rows:
        raise MaskclfError(f"{directory}: no held-out source finished")
    summary = _with_members({"by_source": True, "sources": names, "data": sources.describe(cfg.data),
                             "model": cfg.model.name, "image_size": cfg.data.image_size, "config": cfg.to_dict(),
                             "balanced_accuracy": mean_sd([r["balanced_accuracy"] for r in rows]),
                             "per_source": rows}, cfgs)
    write_json(directory / "cv.json", summary)
    write_text(directory / "cv.md", format_cv_by_source(summary))
    return directory


def _validation_best(run: Path, metrics: dict, cfg: Config) -> float | None:
    """The validation figure recipes are chosen on: the best epoch's, or an ensemble's own (no epochs)."""
    best = best_validation(run, cfg.train.monitor)
    return best if best is not None else metrics.get("validation_balanced_accuracy")


def _with_members(summary: dict, cfgs: Sequence[Config]) -> dict:
    """A cv summary of an ensemble names its members; its model is ``a+b``, fed the largest input."""
    if len(cfgs) > 1:
        summary.update(model=members_label(cfgs), image_size=max(c.data.image_size for c in cfgs),
                       members=[f"{c.model.name}-{c.data.image_size}" for c in cfgs],
                       classifier_calls_per_face=len(cfgs))
    return summary


def _fold_teachers(distill_from: str, folds: int) -> dict[int, str]:
    """``train.distill_from`` naming a cv folder (e.g. ``maskclf cv --ensemble``'s): fold f -> its fold f run."""
    if not distill_from or not (Path(distill_from) / "cv.json").is_file():
        return {}
    k, runs = cv_fold_runs(distill_from)
    if k != folds:
        raise MaskclfError(f"train.distill_from={distill_from}: {k} folds, this cv has {folds}; "
                           "distil from a cv folder of the same folds")
    return {f: str(p.resolve()) for f, p in runs.items()}


