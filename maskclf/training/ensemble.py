"""An ensemble of trained runs as one run directory: ``maskclf ensemble RUN_A RUN_B ... --out DIR``.

The members are runs of one split (typically the same configuration trained with different
``train.seed``, or two model families: a small CNN and an ImageNet-started EfficientNet-Lite0); the ensemble
is a single Keras model whose output is the mean of the members' softmax probabilities. Members of different
input sizes are fed the largest one, resized inside the model (bilinear) for each smaller member. It is written as an ordinary run directory (best.keras, config.yaml,
labels.txt, split.csv, metrics.json and the plots), so ``maskclf evaluate``, ``export``, ``detect``
and the edge runtime take it unchanged: one .tflite, one interpreter call per face, which costs
about k times one member's arithmetic (docs/BENCHMARKS.md §6 measures what it buys).

Why members must share the split: an ensemble is scored on the first member's test split, and a
member trained on another split may have trained on those very images.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from maskclf.files import ENSEMBLE_FILE, MaskclfError, atomic_path, members_of, read_json_object, read_labels, write_json

def scored_rows(run: str | os.PathLike) -> list[tuple[str, str, str]]:
    """A run's validation and test rows of split.csv: what members of one ensemble must share. Training rows may
    differ: a recipe's training-only additions (YuNet-framed or painted copies of training faces, extra_train)
    never hold a validation or test image, and a run of another split has other validation and test rows."""
    from maskclf.data import splitting

    return sorted((r["path"], r["label"], r["split"]) for r in splitting.read_split_csv(Path(run) / "split.csv")
                  if r["split"] != "train")


def check_members(runs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str], int]:
    """The member run directories, their shared class names and the largest input size; a one-line error
    otherwise."""
    from maskclf.config import load_config

    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise MaskclfError("an ensemble needs at least two runs (e.g. the same config trained with train.seed=0 "
                           "and train.seed=1)")
    if len({p.resolve() for p in paths}) < len(paths):
        raise MaskclfError("the same run is named twice; name each member once")
    for p in paths:
        for f in ("best.keras", "config.yaml", "labels.txt", "split.csv"):
            if not (p / f).is_file():
                raise MaskclfError(f"{p / f}: missing; is {p} a finished `maskclf train` run?")
        if members_of(p):
            raise MaskclfError(f"{p}: is itself an ensemble; name its member runs instead")
    first = paths[0]
    names = read_labels(first / "labels.txt")
    size = load_config(first / "config.yaml").data.image_size
    rows = scored_rows(first)
    for p in paths[1:]:
        if read_labels(p / "labels.txt") != names:
            raise MaskclfError(f"{p / 'labels.txt'}: classes {', '.join(read_labels(p / 'labels.txt'))} differ from "
                               f"{first}'s ({', '.join(names)}); ensemble runs of the same classes")
        size = max(size, load_config(p / "config.yaml").data.image_size)
        if scored_rows(p) != rows:
            raise MaskclfError(f"{p / 'split.csv'}: a different split from {first}'s (its test images may be in "
                               "another member's training data); ensemble runs trained on one split, e.g. one "
                               "`maskclf cv` fold with different train.seed")
    return paths, names, size


def build_ensemble(models: Sequence, name: str = "ensemble"):
    """One Keras model: the mean of the members' probabilities, each member a named sub-model.

    The input is the largest member's (square RGB); a smaller member sees it resized (bilinear, a builtin
    TFLite op, so int8 export and the device runtime take it)."""
    import keras

    from maskclf.models.registry import MEMBER_PREFIX

    shapes = [tuple(m.input_shape[1:]) for m in models]
    if any(len(s) != 3 or s[0] != s[1] or s[2] != 3 for s in shapes):
        raise MaskclfError(f"members must take square RGB images; inputs are {shapes}")
    side = max(s[0] for s in shapes)
    inp = keras.Input(shape=(side, side, 3), name="image")
    outs = []
    for i, (m, s) in enumerate(zip(models, shapes)):
        x = inp if s[0] == side else keras.layers.Resizing(s[0], s[1], interpolation="bilinear",
                                                           name=f"resize_{i}")(inp)
        # training=False spelled out: a member called on the Resizing output without it runs its dropout at
        # inference (Keras 3.15), so the ensemble's answer would change from call to call.
        outs.append(keras.Model(m.inputs[0], m.outputs[0], name=f"{MEMBER_PREFIX}{i}")(x, training=False))
    return keras.Model(inp, keras.layers.Average(name="mean_probabilities")(outs), name=name)


def make_ensemble(runs: Sequence[str | os.PathLike], out: str | os.PathLike, progress: bool = True) -> dict:
    """Write an ensemble run directory ``out`` from member runs and evaluate it on their test split.

    Returns the ensemble's metrics with ``members``: each member's run and test balanced accuracy.
    """
    from maskclf.config import load_config, save_config, with_changes
    from maskclf.reports.evaluate import evaluate_run, load_run_model

    paths, names, size = check_members(runs)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MaskclfError(f"{out}: exists and is not empty; choose a new --out folder")
    models = [load_run_model(p) for p in paths]
    model = build_ensemble(models)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for f in ("labels.txt", "split.csv"):
            with atomic_path(out / f) as tmp:
                shutil.copyfile(paths[0] / f, tmp)
        cfg = load_config(paths[0] / "config.yaml")  # the ensemble is fed the largest member's input size
        save_config(with_changes(cfg, data={"image_size": size}), out / "config.yaml")
        with atomic_path(out / "best.keras") as tmp:
            model.save(tmp)
        members = []
        for p in paths:
            m = evaluate_run(p, progress=False) if not (p / "metrics.json").is_file() else read_json_object(p / "metrics.json")
            members.append({"run_dir": str(p.resolve()), "model": load_config(p / "config.yaml").model.name,
                            "test_balanced_accuracy": m.get("balanced_accuracy")})
        write_json(out / ENSEMBLE_FILE, {"members": members, "combination": "mean of probabilities",
                                         "classifier_calls_per_face": len(paths)})
        if progress:
            print(f"ensemble of {len(paths)} runs -> {out}", file=sys.stderr, flush=True)
        extra = {"ensemble_of": [m["run_dir"] for m in members],
                 "validation_balanced_accuracy": _validation_balanced_accuracy(model, out, names, size)}
        metrics = evaluate_run(out, progress=progress, extra=extra)
        write_json(out / "run.json", {"status": "complete"})  # last: the folder is whole (members: ensemble.json)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-made stays behind
        raise
    metrics["members"] = members
    return metrics


def ensemble_of(runs: Sequence[str | os.PathLike], out: str | os.PathLike, progress: bool = True) -> dict:
    """:func:`make_ensemble`, unless ``out`` already holds the finished ensemble of these very runs (its metrics
    are read then); a stale or half-made ``out`` is replaced. So commands that build ensembles resume."""
    out = Path(out)
    done = read_json_object(out / "run.json").get("status") == "complete"
    if done and [m["run_dir"] for m in members_of(out)] == [str(Path(r).resolve()) for r in runs]:
        if progress:
            print(f"ensemble already in {out}", file=sys.stderr, flush=True)
        return {**read_json_object(out / "metrics.json"), "members": members_of(out)}
    if out.exists():
        shutil.rmtree(out)
    return make_ensemble(runs, out, progress=progress)


def _validation_balanced_accuracy(model, run: Path, names: list[str], size: int) -> float | None:
    """The ensemble's balanced accuracy on the split's validation images (None without any).

    Slightly optimistic, like every member's: each member's best epoch was chosen on these images."""
    from maskclf.data import splitting
    from maskclf.reports.evaluate import compute_metrics, predict_paths

    rows = [r for r in splitting.read_split_csv(run / "split.csv") if r["split"] == "validation"]
    if not rows or any(not os.path.exists(r["path"]) for r in rows):
        return None
    probs = predict_paths(model, [r["path"] for r in rows], size)
    return compute_metrics([names.index(r["label"]) for r in rows], probs, names)["balanced_accuracy"]


def ensemble_cv(cv_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, progress: bool = True) -> Path:
    """Ensemble ``maskclf cv`` folders fold by fold (fold f of each) and summarise like ``maskclf cv``.

    Writes ``out/fold-<f>-of-<K>/`` (ensemble runs) and ``out/cv.json``, ``cv.md``, ``cv.png``; a fold whose
    ensemble of the same members is already there is not rebuilt. Returns ``out``.
    """
    from maskclf.config import load_config
    from maskclf.reports.cvreport import cv_fold_runs, fold_row, format_cv, plot_folds, summarize_folds
    from maskclf.files import write_text

    dirs = [Path(d) for d in cv_dirs]
    read = [cv_fold_runs(d) for d in dirs]
    k = read[0][0]
    for d, (kd, _) in zip(dirs[1:], read[1:]):
        if kd != k:
            raise MaskclfError(f"{d}: {kd} folds, {dirs[0]} has {k}; ensemble cv folders of the same folds")
    runs = [r for _, r in read]
    common = sorted(set.intersection(*(set(r) for r in runs)))
    if not common:
        raise MaskclfError("the cv folders share no finished fold; finish the folds first (`maskclf cv` resumes)")
    out = Path(out)
    rows = []
    for f in common:
        fold_out = out / f"fold-{f}-of-{k}"
        if progress:
            print(f"fold {f}/{k}: ensemble of {len(runs)} runs", file=sys.stderr, flush=True)
        m = ensemble_of([r[f] for r in runs], fold_out, progress=False)
        names = read_labels(fold_out / "labels.txt")
        rows.append({"fold": f, "run_dir": str(fold_out), "validation_best": m.get("validation_balanced_accuracy"),
                     **fold_row(m, names)})
    cfg = load_config(out / f"fold-{common[0]}-of-{k}" / "config.yaml")
    summary = summarize_folds(rows, names, cfg, k)
    summary["ensemble_of"] = [str(d.resolve()) for d in dirs]
    summary["classifier_calls_per_face"] = len(dirs)
    write_json(out / "cv.json", summary)
    write_text(out / "cv.md", format_cv(summary))
    plot_folds(summary, out / "cv.png")
    return out


def format_ensemble(metrics: dict) -> str:
    """Members' and the ensemble's test balanced accuracy, one line each."""
    lines = []
    for i, m in enumerate(metrics["members"]):
        ba = m["test_balanced_accuracy"]
        lines.append(f"member {i} balanced accuracy {ba:.4f}  {m['run_dir']}" if ba is not None
                     else f"member {i}  {m['run_dir']}")
    lines.append(f"ensemble balanced accuracy {metrics['balanced_accuracy']:.4f} "
                 f"({len(metrics['members'])} classifier calls per face)")
    return "\n".join(lines)
