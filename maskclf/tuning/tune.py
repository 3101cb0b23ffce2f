"""KerasTuner searches over a ``tuning/*.yaml`` space, and model comparisons on one split.

    load_space(path)            -> SearchSpace (validated: unknown keys, bad kinds, empty ranges name the key)
    tune(space, data, ...)      -> DIR with the KerasTuner project, trials.csv, objective.png, best.yaml
    compare(data, models, ...)  -> DIR with compare.csv/.md/.png (per-class accuracy, balanced accuracy, ...)

A space maps config keys (``train.learning_rate``, model options as ``model.<option>``) to a fixed
value or a kind with its range. Each trial's hyperparameters become config overrides, so a trial *is*
a Config and ``best.yaml`` is the best trial's Config, which ``maskclf train --config`` accepts.
The dataset is read and split once; decoded images are cached per image size and shared by every
trial. Distributed search is KerasTuner's own chief/worker mode (gRPC), driven by its
``KERASTUNER_*`` environment variables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable

import keras
import keras_tuner

from maskclf.data import sources
from maskclf.config import Config, save_config
from maskclf.config import learning_rate as initial_learning_rate
from maskclf.files import MaskclfError, write_json, write_text

from maskclf.tuning.space import (  # noqa: F401  (load_space/parse_space/SearchSpace re-exported)
    OBJECTIVES,
    Param,
    SearchSpace,
    TUNERS,
    _check_against_config,
    data_of_search,
    _option_defaults,
    load_space,
    parse_space,
)

PROJECT = "project"           # the KerasTuner project folder inside DIR
TRIAL_INFO = "maskclf_trial.json"  # per trial: tuner id, epochs, seconds (KerasTuner keeps none of these)
SEARCH_STATE = "search.json"  # what DIR was made from, so a re-run resumes only the same search

# ============================================================================= data, read once

class SearchData:
    """The dataset of a search: read and split once, images decoded once per image size.

    Every trial re-batches the cached, unbatched training images with its own batch size and
    augmentation, so trials never decode again.
    """

    def __init__(self, cfg: Config, progress: bool = True):
        ds = sources.load_data(cfg.data, progress=progress)
        splits = sources.assign_splits(ds, cfg.data)
        from maskclf.training.train import add_training_images

        ds, splits = add_training_images(ds, splits, cfg.data, progress)  # as in `train`: training split only
        if progress:
            print(sources.summarize(ds, splits), file=sys.stderr, flush=True)
        self.class_names = list(ds.class_names)
        pick = {s: [i for i, v in enumerate(splits) if v == s] for s in ("train", "validation")}
        if not pick["train"]:
            raise MaskclfError(f"{sources.describe(cfg.data)}: no training images after the split")
        if not pick["validation"]:
            raise MaskclfError(f"{sources.describe(cfg.data)}: no validation images; the search needs them "
                               "(set data.val_fraction > 0 or add a validation split)")
        self.train_paths = [ds.paths[i] for i in pick["train"]]
        self.train_labels = [ds.labels[i] for i in pick["train"]]
        self.val_paths = [ds.paths[i] for i in pick["validation"]]
        self.val_labels = [ds.labels[i] for i in pick["validation"]]
        self._decoded: dict[int, tuple] = {}
        self._arrays: dict = {}  # image size -> decoded training images as one array (balanced sampling)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def _cached(self, size: int):
        if size not in self._decoded:
            import numpy as np
            import tensorflow as tf

            from maskclf.data import pipeline

            def labelled(paths, labels):  # uint8 images kept in memory: 4x smaller than float32
                ys = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))
                return tf.data.Dataset.zip((pipeline.decode_images(paths, size), ys)).cache()

            val = labelled(self.val_paths, self.val_labels).batch(64)
            val = val.map(lambda x, y: (tf.cast(x, tf.float32), y))
            self._decoded[size] = (labelled(self.train_paths, self.train_labels), val)
        return self._decoded[size]

    def datasets(self, cfg: Config):
        """(train, validation, class_weight) for a trial's config: batched datasets with labels as its loss
        needs them (``train.fit_inputs``)."""
        import tensorflow as tf

        import numpy as np

        from maskclf.data import pipeline
        from maskclf.training.train import fit_inputs

        train, val = self._cached(cfg.data.image_size)
        seed = cfg.train.seed
        if cfg.train.sampling == "balanced":  # the decoded images as one array, made once per size
            size = cfg.data.image_size
            if size not in self._arrays:
                self._arrays[size] = np.stack([x for x, _ in train.as_numpy_iterator()])
            ds = pipeline.balanced_stream(self._arrays[size], self.train_labels, seed)
        else:
            ds = train.shuffle(len(self.train_paths), seed=seed, reshuffle_each_iteration=True)
        ds = pipeline.batch_and_augment(ds, cfg.train.batch_size, cfg.augment, seed)
        ds, val, weights = fit_inputs(cfg, self.class_names, self.train_labels, ds, val)
        return ds.prefetch(tf.data.AUTOTUNE), val, weights


# ============================================================================= the HyperModel

class MaskHyperModel(keras_tuner.HyperModel):
    """A space's trial as a model: ``build(hp)`` makes the trial's Config and calls ``create_model``;
    ``fit`` trains on the shared data with the trial's batch size, class weights and augmentation.

    Validation balanced accuracy and macro F1 are computed by ``ValidationMetrics``, placed before
    every other callback (early stopping and KerasTuner's own read them from the epoch logs).
    """

    def __init__(self, space: SearchSpace, base: Config, data: SearchData, max_epochs: int,
                 objective: str = "val_balanced_accuracy"):
        super().__init__(name=f"maskclf_{space.model}")
        self.space = space
        self.base = base
        self.data = data
        self.max_epochs = max_epochs
        self.objective = objective

    def trial_config(self, hp) -> Config:
        """The complete Config of the trial ``hp`` describes (registers the space with ``hp``)."""
        values = {p.key: p.declare(hp) for p in self.space.tuned}
        epochs = hp.values.get("tuner/epochs", self.max_epochs)  # Hyperband rounds train fewer epochs
        return self.space.config(self.base, values, epochs)

    def build(self, hp):
        """A trial's compiled model from its hyperparameters."""
        from maskclf.data import pipeline
        from maskclf.models.registry import create_model, start_model
        from maskclf.training.train import compile_model, learning_rate_for, make_loss

        cfg = self.trial_config(hp)
        keras.utils.set_random_seed(cfg.train.seed)  # a trial's result depends on its values only
        model = create_model(cfg.model.name, self.data.num_classes, cfg.data.image_size, cfg.model.weights,
                             **cfg.model.options)
        started = start_model(model, cfg.model.init_from, cfg.model.name)
        lr0 = initial_learning_rate(cfg, started=started is not None and started[1] > 0)
        lr = learning_rate_for(cfg.train.lr_schedule, lr0, cfg.train.epochs,
                               pipeline.steps(len(self.data.train_paths), cfg.train.batch_size))
        compile_model(model, cfg.train.optimizer, lr, make_loss(cfg, self.data.train_labels, self.data.num_classes),
                      cfg.train.sam_rho)
        return model

    def fit(self, hp, model, *args, callbacks=None, epochs=None, verbose=0, **kwargs):
        """Train one trial with the trial's batch size, schedule and validation metrics."""
        from maskclf.training.callbacks import ValidationMetrics
        from maskclf.training.train import averaging_callbacks, schedule_callbacks

        cfg = self.trial_config(hp)
        train_ds, val_ds, weights = self.data.datasets(cfg)
        mode = OBJECTIVES[self.objective]
        first, last = averaging_callbacks(cfg.train.weight_average)
        if cfg.train.l2sp:  # the model was just built at its start: that is the anchor, as in `maskclf train`
            from maskclf.training.callbacks import PullToStart
            first = [PullToStart(model, cfg.train.l2sp), *first]
        cbs = [*first, ValidationMetrics(val_ds),  # the metrics the others monitor
               *schedule_callbacks(self.objective, mode, cfg.train.patience, cfg.train.lr_schedule == "plateau")]
        kwargs.pop("validation_data", None)
        return model.fit(train_ds, validation_data=val_ds, epochs=epochs or cfg.train.epochs,
                         class_weight=weights, callbacks=cbs + list(callbacks or []) + last, verbose=verbose,
                         shuffle=False, **kwargs)


# ============================================================================= tuners

_TUNER_CLASSES = {"random": "RandomSearch", "hyperband": "Hyperband", "bayesian": "BayesianOptimization",
                  "grid": "GridSearch"}


class _RecordTrials:
    """Mixed into the chosen KerasTuner tuner: per trial, who ran it, epochs and seconds
    (``maskclf_trial.json`` in the trial folder), and DIR's reports refreshed after each trial."""

    maskclf_report = None  # callable(oracle), set by tune(); None on workers

    def run_trial(self, trial, *args, **kwargs):
        path = Path(self.get_trial_dir(trial.trial_id)) / TRIAL_INFO
        info = {"tuner_id": self.tuner_id, "status": "running", "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(path, info)
        t0 = time.time()
        try:
            results = super().run_trial(trial, *args, **kwargs)
            info.update(status="done", epochs=sum(len(getattr(h, "epoch", [])) for h in results))
            return results
        except Exception as e:
            info.update(status="error", error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
                        if str(e).strip() else type(e).__name__)
            raise
        except KeyboardInterrupt:
            info.update(status="interrupted")
            raise
        finally:
            info["seconds"] = round(time.time() - t0, 2)
            write_json(path, info)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.maskclf_report is not None:
            self.maskclf_report(self.oracle)


def make_tuner(name: str, hypermodel, objective: str, directory, max_trials: int | None, max_epochs: int,
               seed: int = 0):
    """A KerasTuner tuner by name (random, hyperband, bayesian, grid) that resumes its project."""
    if name not in _TUNER_CLASSES:
        raise MaskclfError(f"unknown tuner {name!r}; choose one of {', '.join(TUNERS)}")
    base = getattr(keras_tuner, _TUNER_CLASSES[name])
    cls = type(f"Maskclf{base.__name__}", (_RecordTrials, base), {})
    kw = dict(hypermodel=hypermodel, objective=keras_tuner.Objective(objective, OBJECTIVES[objective]),
              directory=str(directory), project_name=PROJECT, overwrite=False, seed=seed)
    if name == "hyperband":
        kw.update(max_epochs=max_epochs, factor=3)
    elif name in ("random", "bayesian"):
        kw["max_trials"] = max_trials or 20
    else:
        kw["max_trials"] = max_trials
    tuner = cls(**kw)
    _defaults_first(_oracle_of(tuner))
    if name == "hyperband" and max_trials:
        # Hyperband has no trial budget of its own; the Oracle stops creating trials past this one.
        _oracle_of(tuner).max_trials = max_trials
    return tuner


def _defaults_first(oracle) -> None:
    """Make a search's first trial its space's ``default:`` values (the package default recipe at the centre of
    the shipped spaces). KerasTuner's random, Hyperband and Bayesian oracles draw even the first trial at random;
    their draws all go through ``_random_values``, so its first call (nothing tried yet) returns the defaults.
    A resumed search has tried something and draws as before; a worker's oracle client is left alone."""
    draw = getattr(oracle, "_random_values", None)
    if draw is None or not hasattr(oracle, "_tried_so_far"):
        return

    def first_the_defaults():
        if not oracle._tried_so_far:
            hps = keras_tuner.HyperParameters()
            for hp in oracle.hyperparameters.space:
                hps.merge([hp])
                if hps.is_active(hp):
                    hps.values[hp.name] = hp.default
            if not oracle._duplicate(hps.values):
                return hps.values
        return draw()

    oracle._random_values = first_the_defaults


def _oracle_of(tuner):
    return getattr(tuner.oracle, "_oracle", tuner.oracle)  # a worker wraps it in an OracleClient


# ============================================================================= reports

def _trial_rows(oracle, space: SearchSpace, directory: Path) -> list[dict]:
    rows = []
    extra = sorted({k for t in oracle.trials.values() for k in t.hyperparameters.values
                    if k.startswith("tuner/")})
    for tid in sorted(oracle.trials, key=lambda i: (int(i) if i.isdigit() else -1, i)):
        t = oracle.trials[tid]
        info = {}
        try:
            info = json.loads((directory / PROJECT / f"trial_{tid}" / TRIAL_INFO).read_text())
        except (OSError, ValueError):
            pass
        row = {"trial_id": tid, "status": t.status, oracle.objective.name: t.score,
               "best_epoch": None if t.best_step is None or t.score is None else int(t.best_step) + 1,
               "epochs": info.get("epochs"), "seconds": info.get("seconds"), "tuner_id": info.get("tuner_id")}
        for p in space.tuned:
            row[p.key] = p.decode(t.hyperparameters.values.get(p.key))
        for k in extra:
            row[k] = t.hyperparameters.values.get(k)
        msg = (t.message or "").strip().splitlines()
        row["error"] = msg[-1][:200] if msg and t.status != "COMPLETED" else ""
        rows.append(row)
    return rows


def write_reports(oracle, space: SearchSpace, base: Config, directory: Path, max_epochs: int) -> dict:
    """Write trials.csv, objective.png and (once a trial completed) best.yaml + best_trial.json.

    Returns:
        ``{"trials": n, "completed": n, "best": best_trial_dict or None}``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskclf.reports.plots import _save

    directory = Path(directory)
    rows = _trial_rows(oracle, space, directory)
    obj = oracle.objective.name
    cols = list(rows[0]) if rows else ["trial_id", "status", obj, "best_epoch", "epochs", "seconds", "tuner_id"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in r.items()})
    write_text(directory / "trials.csv", buf.getvalue())

    done = [r for r in rows if r["status"] == "COMPLETED" and r[obj] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        xs = [int(r["trial_id"]) for r in done]
        ys = [float(r[obj]) for r in done]
        ax.plot(xs, ys, "o", label=obj)
        better = max if oracle.objective.direction == "max" else min
        ax.step(xs, [better(ys[:i + 1]) for i in range(len(ys))], where="post", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(obj)
    ax.set_title(f"{space.model}: {obj} per trial ({len(done)} completed)")
    ax.grid(alpha=0.3)
    _save(fig, directory / "objective.png")

    best = None
    best_trials = [t for t in oracle.get_best_trials(1) if t.status == "COMPLETED"]
    if best_trials:
        t = best_trials[0]
        values = {p.key: p.decode(t.hyperparameters.values[p.key]) for p in space.tuned
                  if p.key in t.hyperparameters.values}
        epochs = t.hyperparameters.values.get("tuner/epochs", max_epochs)
        save_config(space.config(base, values, epochs), directory / "best.yaml")
        best = {"trial_id": t.trial_id, "objective": obj, "score": t.score, "hyperparameters": values,
                "epochs": epochs}
        write_json(directory / "best_trial.json", best)
    return {"trials": len(rows), "completed": len(done), "best": best}


# ============================================================================= tune

@contextlib.contextmanager
def _environ(values: dict):
    """Set environment variables for the duration (KerasTuner reads its distributed settings there)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def distributed_env(role: str | None, oracle: str | None = None, tuner_id: str | None = None) -> dict:
    """The KERASTUNER_* variables for ``role`` (chief/worker); {} when not distributed.

    Args:
        role: ``chief``, ``worker`` or None (then the variables already set, if any, are used).
        oracle: ``HOST:PORT`` of the chief (the chief listens there); defaults to
            KERASTUNER_ORACLE_IP/PORT.
        tuner_id: a worker's unique name; a killed worker restarted with the same name runs
            its unfinished trial again. Defaults to KERASTUNER_TUNER_ID.
    """
    if role is None:
        return {}
    if role not in ("chief", "worker"):
        raise MaskclfError(f"--distributed {role!r}: expected chief or worker")
    if oracle:
        host, sep, port = oracle.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise MaskclfError(f"--oracle {oracle!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    else:
        host, port = os.environ.get("KERASTUNER_ORACLE_IP"), os.environ.get("KERASTUNER_ORACLE_PORT")
        if not host or not port:
            raise MaskclfError("distributed search needs the chief's address: --oracle HOST:PORT "
                               "(or KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT)")
    if role == "chief":
        tid = "chief"
    else:
        tid = tuner_id or os.environ.get("KERASTUNER_TUNER_ID")
        if not tid or "chief" in tid:
            raise MaskclfError("a worker needs a unique --tuner-id NAME (not containing 'chief'); restart a "
                               "killed worker with the same name to finish its trial")
    return {"KERASTUNER_TUNER_ID": tid, "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": port}


def _report_after_each_trial(oracle, report) -> None:
    """On the chief: save the Oracle and refresh the reports whenever a worker ends a trial.

    KerasTuner's chief saves the Oracle *before* it drops the ended trial from its ongoing trials,
    so without this save a restarted chief would run that finished trial again.
    """
    end_trial = oracle.end_trial

    def end_and_report(trial):
        end_trial(trial)
        oracle.save()
        report()

    oracle.end_trial = end_and_report


def _check_resume(directory: Path, state: dict) -> None:
    path = directory / SEARCH_STATE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old is not None and {k: old.get(k) for k in state} != state:
            diff = [k for k in state if old.get(k) != state[k]]
            raise MaskclfError(f"{directory} holds another search (different {', '.join(diff)}); "
                               "use another --out, or delete the folder to start over")
    write_json(path, state)


def _resolved_roots(cfg: Config):
    """The search's data for the resume check: one resolved root as before, or the list of several."""
    roots = [str(Path(r.path).resolve()) for r in sources.data_sources(cfg.data)]
    return roots[0] if len(roots) == 1 else roots


def tune(space, data: str | list | None = None, tuner: str | None = None, max_trials: int | None = None,
         max_epochs: int | None = None, objective: str | None = None, out=None, overrides: Iterable = (),
         distributed: str | None = None, oracle: str | None = None, tuner_id: str | None = None,
         callbacks: Iterable = (), tensorboard: bool = True, progress: bool = True) -> Path:
    """Run (or resume) a KerasTuner search over a space.

    Args:
        space: a SearchSpace or the path of a ``tuning/*.yaml`` file.
        data: dataset root (default: the config's ``data.path``).
        tuner: random, hyperband, bayesian or grid (default: the space's).
        max_trials: trial budget (default: the space's; Hyperband: its own schedule unless given).
        max_epochs: epochs per trial (default: the space's).
        objective: val_balanced_accuracy (default), val_macro_f1, val_accuracy or val_loss.
        out: the search folder (default ``runs/tune-<space name>``); running again resumes it.
        overrides: ``key=value`` settings of the base config (fixed for every trial).
        distributed: ``chief`` or ``worker`` for KerasTuner's distributed mode, with ``oracle``
            (``HOST:PORT``) and a worker's ``tuner_id``.
        callbacks: extra Keras callbacks for every trial (deep-copied per trial by KerasTuner).
        tensorboard: log each trial (with its hyperparameters) under ``DIR/tensorboard``.
        progress: print progress.

    Returns:
        The search folder: ``project/`` (KerasTuner), ``trials.csv``, ``objective.png``,
        ``best.yaml`` (a complete training config) and ``best_trial.json``.
    """
    from maskclf import config as C

    sp = space if isinstance(space, SearchSpace) else load_space(space)
    tuner_name = tuner or sp.tuner
    if tuner_name not in TUNERS:
        raise MaskclfError(f"--tuner {tuner_name!r}: choose one of {', '.join(TUNERS)}")
    objective = objective or sp.objective
    if objective not in OBJECTIVES:
        raise MaskclfError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    max_epochs = int(max_epochs or sp.max_epochs)
    max_trials = max_trials or sp.max_trials
    if max_epochs < 1 or (max_trials is not None and max_trials < 1):
        raise MaskclfError("--max-epochs and --max-trials must be at least 1")
    overrides = list(overrides or [])
    base = C.apply_overrides(C.Config(), overrides)
    if data is not None:
        base = C.apply_overrides(base, C.data_overrides(data))
    base = C.apply_overrides(base, {"model.name": sp.model})
    if base.train.distill_from:
        raise MaskclfError("train.distill_from is not used by `maskclf tune`; tune without it, then train the best "
                           "configuration with it (`maskclf train --config best.yaml train.distill_from=RUN`)")
    options = _option_defaults(sp.model)
    unknown = sorted(set(base.model.options) - set(options))
    if unknown:
        raise MaskclfError(f"model {sp.model}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(options)}")
    _check_against_config(sp, base)
    stem = Path(sp.source).stem if sp.source not in ("space", "") else sp.model
    directory = Path(out or Path(base.train.out) / f"tune-{stem}")
    env = distributed_env(distributed, oracle, tuner_id)
    with _environ(env):
        from keras_tuner.src.distribute import utils as kt_dist

        # Only the chief (or a lone tuner) owns the Oracle and writes the reports.
        try:
            is_worker = kt_dist.has_chief_oracle() and not kt_dist.is_chief_oracle()
        except RuntimeError as e:  # KERASTUNER_ORACLE_IP set without the port or the tuner id
            raise MaskclfError(str(e).replace('"', "")) from None
        who = os.environ.get("KERASTUNER_TUNER_ID", "")
        directory.mkdir(parents=True, exist_ok=True)
        if not is_worker:
            _check_resume(directory, {"space": sp.fingerprint(), "model": sp.model, "tuner": tuner_name,
                                      "objective": objective, "max_epochs": max_epochs,
                                      "base": base.fingerprint(), "data": _resolved_roots(base)})
        sp, read = data_of_search(sp, base)
        hypermodel = MaskHyperModel(sp, base, SearchData(read, progress=progress), max_epochs, objective)
        cbs = list(callbacks or [])
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(str(directory / "tensorboard"), write_graph=False,
                                                   profile_batch=0))
        t = make_tuner(tuner_name, hypermodel, objective, directory, max_trials, max_epochs, seed=sp.seed)
        oracle_ = _oracle_of(t)

        def report():
            return write_reports(oracle_, sp, base, directory, max_epochs) if oracle_.trials else None

        if not is_worker:
            t.maskclf_report = lambda _oracle: report()
        if kt_dist.is_chief_oracle():
            _report_after_each_trial(oracle_, report)
        if progress:
            role = f" as {who}" if who else ""
            print(f"maskclf tune: {tuner_name} search of {sp.model}{role}, objective {objective}, "
                  f"up to {max_epochs} epochs per trial, folder {directory}", file=sys.stderr, flush=True)
        summary = None
        try:
            t.search(epochs=max_epochs, callbacks=cbs, verbose=2 if progress else 0)
        except RuntimeError as e:
            if "consecutive failures" in str(e):
                raise MaskclfError(f"search stopped: several trials in a row failed; see the error column of "
                                   f"{directory / 'trials.csv'} ({str(e).splitlines()[0]})") from None
            raise
        finally:
            if not is_worker:
                summary = report()
    if progress:
        if is_worker:
            print(f"maskclf tune: worker {who} finished: the chief has no more trials", file=sys.stderr, flush=True)
        elif summary and summary["best"]:
            b = summary["best"]
            print(f"best {objective} {b['score']:.4f} (trial {b['trial_id']}), {summary['completed']} of "
                  f"{summary['trials']} trials completed; train it: maskclf train --config "
                  f"{directory / 'best.yaml'}", file=sys.stderr, flush=True)
    return directory


# ============================================================================= compare
