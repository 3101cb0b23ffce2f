"""Training: ``train(config) -> run directory``.

A run directory ``<out>/<YYYYmmdd-HHMMSS>-<model>-<size>/`` holds config.yaml, labels.txt,
split.csv, data_report.txt, history.csv, best.keras, metrics.json, plots and tensorboard/.
Running the same configuration again after an interruption resumes the unfinished run
(Keras BackupAndRestore) instead of starting a new one.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path


from maskclf.data import datasets, sources, splitting
from maskclf.data.datasets import LabeledImages
from maskclf.config import Config, DataConfig, save_config
from maskclf.config import learning_rate as initial_learning_rate
from maskclf.files import MaskclfError, write_json, write_labels, write_text
from maskclf.research.levers import check_l2sp_start, distillation_targets, use_sam

RUN_STATE = "run.json"


def _log(msg: str, progress: bool = True) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def class_weights(labels: list[int], num_classes: int, mode) -> dict[int, float] | None:
    """Class weights for the loss.

    Args:
        labels: training labels.
        num_classes: number of classes.
        mode: ``auto`` (n / (k * count), sklearn's "balanced"), ``sqrt`` (its square root,
            gentler on rare classes), ``none``, or a mapping {class name or index: weight}.
    """
    if isinstance(mode, dict):
        return {int(k): float(v) for k, v in mode.items()}
    if mode == "none":
        return None
    counts = Counter(labels)
    n = len(labels)
    w = {c: n / (num_classes * counts[c]) if counts.get(c) else 0.0 for c in range(num_classes)}
    if mode == "sqrt":
        w = {c: math.sqrt(v) for c, v in w.items()}
    return w


def _resolve_named_weights(mode, class_names: list[str]):
    if not isinstance(mode, dict):
        return mode
    out = {}
    for k, v in mode.items():
        if isinstance(k, str) and not k.isdigit():
            if k not in class_names:
                raise MaskclfError(f"config key train.class_weight: unknown class {k!r}; classes: {', '.join(class_names)}")
            out[class_names.index(k)] = v
        else:
            out[int(k)] = v
    return out


def find_resumable_run(out: Path, fingerprint: str) -> Path | None:
    """The newest unfinished run under ``out`` made from the same configuration."""
    if not out.is_dir():
        return None
    for d in sorted(out.iterdir(), reverse=True):
        state = d / RUN_STATE
        if state.is_file():
            try:
                s = json.loads(state.read_text())
            except ValueError:
                continue
            if s.get("fingerprint") == fingerprint and s.get("status") != "complete":
                return d
    return None


def find_completed_run(out: Path, fingerprint: str) -> Path | None:
    """The newest finished run under ``out`` made from the same configuration (compare and cv re-use it)."""
    if not out.is_dir():
        return None
    for d in sorted(out.iterdir(), reverse=True):
        try:
            s = json.loads((d / RUN_STATE).read_text())
        except (OSError, ValueError):
            continue
        if s.get("fingerprint") == fingerprint and s.get("status") == "complete" and (d / "metrics.json").is_file():
            return d
    return None


def new_run_dir(out: Path, model: str, size: int) -> Path:
    """``<out>/<YYYYmmdd-HHMMSS>-<model>-<size>``, made unique if two runs start in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = out / f"{stamp}-{model}-{size}"
    i = 1
    while d.exists():
        d = out / f"{stamp}-{model}-{size}-{i}"
        i += 1
    d.mkdir(parents=True)
    return d


def _optimizer(name: str, lr):
    import keras

    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
           "rmsprop": keras.optimizers.RMSprop, "adadelta": keras.optimizers.Adadelta,
           "adagrad": keras.optimizers.Adagrad, "nadam": keras.optimizers.Nadam}[name.lower()]
    if name.lower() == "sgd":
        return cls(learning_rate=lr, momentum=0.9)
    return cls(learning_rate=lr)


def learning_rate_for(schedule: str, lr: float, epochs: int, steps_per_epoch: int):
    """A float, or a Keras schedule: cosine decay to 0 over all steps after a one-epoch linear warm-up."""
    import keras

    if schedule != "cosine":
        return lr
    warm = steps_per_epoch if epochs > 2 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.1 if warm else lr, decay_steps=max(1, (epochs * steps_per_epoch) - warm),
        warmup_target=lr if warm else None, warmup_steps=warm)


def one_hot_labels(cfg: Config) -> bool:
    """Whether the loss needs one-hot (or mixed) labels: label smoothing, focal loss, mixup/CutMix."""
    from maskclf.data.pipeline import mixing

    return bool(cfg.train.label_smoothing or cfg.train.focal_gamma or mixing(cfg.augment) or cfg.train.distill_from)


def fit_inputs(cfg: Config, class_names: list[str], train_labels: list[int], train_ds, val_ds,
               soft_targets=None) -> tuple:
    """What ``model.fit`` gets, shared by ``train`` and the tuner's trials: ``(train, validation,
    class_weight)``.

    Class weights follow ``train.class_weight`` (``auto`` is skipped under balanced sampling, which
    already balances the classes, and under logit adjustment, which balances the loss). Labels become
    one-hot when the loss needs them; with mixup/CutMix the training batches are mixed here and the class
    weights travel as per-image sample weights (so the returned ``class_weight`` is None). With
    ``soft_targets`` (distillation: one target row per training image, ``distillation_targets``) ``train_ds``
    must carry each image's row index as its label; the rows become the targets and the class weights
    travel as sample weights.
    """
    import tensorflow as tf

    from maskclf.data import pipeline

    t, k = cfg.train, len(class_names)
    mode = _resolve_named_weights(t.class_weight, class_names)
    if (t.sampling == "balanced" or t.logit_adjust) and mode == "auto":
        mode = "none"
    weights = class_weights(train_labels, k, mode)
    if soft_targets is not None:
        table = tf.constant(soft_targets, tf.float32)
        per_image = tf.constant([weights.get(c, 0.0) if weights else 1.0 for c in train_labels], tf.float32)
        return (train_ds.map(lambda x, i: (x, tf.gather(table, i), tf.gather(per_image, i))),
                val_ds.map(lambda x, y: (x, tf.one_hot(y, k))), None)
    if not one_hot_labels(cfg):
        return train_ds, val_ds, weights
    val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, k)))
    if pipeline.mixing(cfg.augment):
        per_class = [weights.get(c, 0.0) for c in range(k)] if weights else None
        return pipeline.mix(train_ds, k, cfg.augment, per_class, t.seed), val_ds, None
    return train_ds.map(lambda x, y: (x, tf.one_hot(y, k))), val_ds, weights


def schedule_callbacks(monitor: str, mode: str, patience: int, plateau: bool) -> list:
    """Early stopping when ``patience`` > 0 (0 trains the whole schedule) and, for the plateau schedule,
    learning-rate reduction: the callbacks ``train`` and the tuner's trials share."""
    import keras

    cbs = []
    if plateau:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.2,
                                                     patience=max(1, (patience or 9) // 3), min_lr=1e-6))
    if patience > 0:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                                 restore_best_weights=False))
    return cbs


def make_loss(cfg: Config, train_labels: list[int], num_classes: int):
    """The training loss ``cfg`` asks for: cross-entropy on class indices, or on one-hot (or mixed) labels
    when the loss or mixup/CutMix needs them; label smoothing; focal loss; logit adjustment (``train.
    logit_adjust``: the training labels' class frequencies shift the logits)."""
    import keras

    from maskclf.models.losses import LogitAdjustedCrossentropy, log_prior

    t, one_hot = cfg.train, one_hot_labels(cfg)
    if t.logit_adjust:
        return LogitAdjustedCrossentropy(log_prior(train_labels, num_classes), t.logit_adjust, sparse=not one_hot,
                                         label_smoothing=t.label_smoothing)
    if t.focal_gamma:
        # alpha 1: the class weights balance the classes; gamma focuses on the hard faces.
        return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=t.focal_gamma,
                                                         label_smoothing=t.label_smoothing)
    if one_hot:
        return keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def compile_model(model, optimizer: str, learning_rate, loss=None, sam_rho: float = 0.0) -> None:
    """Compile with ``loss`` (``make_loss``; default: cross-entropy on class indices) and accuracy;
    ``sam_rho`` > 0 makes ``fit`` take sharpness-aware steps (``use_sam``)."""
    import keras

    model.compile(optimizer=_optimizer(optimizer, learning_rate),
                  loss=loss if loss is not None else keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    if sam_rho:
        use_sam(model, sam_rho)


def make_callbacks(run_dir: Path, val_ds, monitor: str, patience: int, backup: str = "backup",
                   progress: bool = True, plateau: bool = False, weight_average: float = 0.0,
                   pull=None) -> list:
    """Validation balanced accuracy, early stopping, atomic best checkpoint, CSV log, TensorBoard, backup;
    ``pull``: a :class:`maskclf.training.callbacks.PullToStart` (``train.l2sp``), first so the averaging sees its step."""
    import keras

    from maskclf.training.callbacks import AtomicBackupAndRestore, AtomicBestCheckpoint, ValidationMetrics

    mode = "min" if monitor.endswith("loss") else "max"
    first, last = averaging_callbacks(weight_average)
    return [
        *([pull] if pull is not None else []),
        *first,  # swaps the averaged weights in for what follows
        ValidationMetrics(val_ds),  # adds val_balanced_accuracy to the logs the others read
        *schedule_callbacks(monitor, mode, patience, plateau),
        AtomicBestCheckpoint(run_dir / "best.keras", monitor=monitor, mode=mode, verbose=progress),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False, profile_batch=0),
        *last,  # raw weights back before the backup, which must hold the training state
        AtomicBackupAndRestore(str(run_dir / backup)),  # a kill mid-save leaves no truncated backup
    ]


def averaging_callbacks(decay: float) -> tuple[list, list]:
    """``train.weight_average``: the callbacks that go first and last in the list (none when 0)."""
    if not decay:
        return [], []
    from maskclf.training.callbacks import WeightAverage

    avg = WeightAverage(decay)
    return [avg], [avg.restore]


def _set_backbone_for_fine_tuning(model, n_layers: int) -> bool:
    """Unfreeze the top ``n_layers`` of the backbone, keeping BatchNorm frozen (keras-io recipe)."""
    import keras

    from maskclf.models.registry import backbone_of

    base = backbone_of(model)
    if base is None:
        return False
    base.trainable = True
    for layer in base.layers[:-n_layers] if n_layers > 0 else base.layers:
        layer.trainable = False
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return True


def add_training_images(ds: LabeledImages, splits: list[str], cfg: DataConfig,
                        progress: bool = False) -> tuple[LabeledImages, list[str]]:
    """The training split's additions, as ``train`` and ``tune`` make them: YuNet-framed copies of its VOC faces
    (``data.detector_train``, :func:`maskclf.research.detector_crops.add_detector_crops`), painted copies of its
    own bare faces (``data.paint_train``, :func:`maskclf.research.paintmask.paint_training_faces`), then the
    images of ``data.extra_train`` (:func:`maskclf.data.datasets.add_extra_train`). Validation and test are never
    touched."""
    if cfg.detector_train:
        from maskclf.research.detector_crops import add_detector_crops

        ds, splits = add_detector_crops(ds, splits, cfg.crop_margin, progress=progress)
    if cfg.paint_train:
        from maskclf.research.paintmask import paint_training_faces

        ds, splits = paint_training_faces(ds, splits, cfg.paint_train, seed=cfg.split_seed, progress=progress)
    if cfg.extra_train:
        ds, splits = datasets.add_extra_train(ds, splits, cfg, progress=progress)
    return ds, splits


def train(cfg: Config, progress: bool = True, data: tuple | None = None) -> Path:
    """Train a model as configured and evaluate it on the test split.

    Args:
        cfg: the full configuration.
        progress: print progress to stderr.
        data: an already loaded ``(LabeledImages, splits)`` pair made from ``cfg.data``
            (``maskclf compare`` loads one dataset for several models); None loads it here.

    Returns:
        The run directory.
    """
    import keras

    from maskclf.reports import evaluate

    from maskclf.data import pipeline
    from maskclf.models.registry import create_model, get_spec, init_source, start_model

    spec = get_spec(cfg.model.name)
    image_size = cfg.data.image_size
    init_source(cfg.model.init_from, cfg.model.name)  # a wrong path fails before any data is read
    keras.utils.set_random_seed(cfg.train.seed)

    if data is None:
        _log(f"reading {sources.describe(cfg.data)} ...", progress)
        ds = sources.load_data(cfg.data, progress=progress)
        splits = sources.assign_splits(ds, cfg.data)
    else:
        ds, splits = data
    ds, splits = add_training_images(ds, splits, cfg.data, progress)
    report = sources.summarize(ds, splits)
    _log(report, progress)
    idx = {s: [i for i, v in enumerate(splits) if v == s] for s in ("train", "validation", "test")}
    if not idx["train"]:
        raise MaskclfError(f"{sources.describe(cfg.data)}: no training images after the split")
    if not idx["validation"]:
        raise MaskclfError(f"{sources.describe(cfg.data)}: no validation images; set data.val_fraction > 0 or add a validation split")

    def take(s):
        return [ds.paths[i] for i in idx[s]], [ds.labels[i] for i in idx[s]]

    train_paths, train_labels = take("train")
    val_paths, val_labels = take("validation")
    # Before any run directory exists: a refused teacher leaves nothing behind.
    soft = (distillation_targets(cfg, ds.class_names, {"train": train_paths, "validation": val_paths,
                                                       "test": take("test")[0]}, train_labels, progress)
            if cfg.train.distill_from else None)
    out = Path(cfg.train.out)
    fingerprint = cfg.fingerprint()
    run_dir = find_resumable_run(out, fingerprint)
    if run_dir is not None:
        _log(f"resuming unfinished run {run_dir}", progress)
    else:
        run_dir = new_run_dir(out, cfg.model.name, image_size)
    write_json(run_dir / RUN_STATE, {"fingerprint": fingerprint, "status": "running",
                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    save_config(cfg, run_dir / "config.yaml")
    write_labels(run_dir / "labels.txt", ds.class_names)
    splitting.write_split_csv(run_dir / "split.csv", ds, splits)
    write_text(run_dir / "data_report.txt", report + "\n")

    k = len(ds.class_names)
    bs = cfg.train.batch_size
    # Distillation: each training image carries its row of ``soft`` (by index) through shuffling.
    train_ds = pipeline.make_dataset(train_paths, train_labels if soft is None else list(range(len(train_paths))),
                                     image_size, bs, training=True, augment=cfg.augment, seed=cfg.train.seed,
                                     balanced=cfg.train.sampling == "balanced")
    val_ds = pipeline.make_dataset(val_paths, val_labels, image_size, bs)
    train_ds, fit_val, weights = fit_inputs(cfg, ds.class_names, train_labels, train_ds, val_ds, soft)
    if weights:
        _log("class weights: " + ", ".join(f"{ds.class_names[c]}={w:.2f}" for c, w in weights.items()), progress)
    if pipeline.mixing(cfg.augment):
        _log(f"mixup alpha {cfg.augment.mixup_alpha}, CutMix alpha {cfg.augment.cutmix_alpha} on "
             f"{cfg.augment.mix_probability:.0%} of the training images", progress)

    model = create_model(cfg.model.name, k, image_size, cfg.model.weights, **cfg.model.options)
    started = start_model(model, cfg.model.init_from, cfg.model.name)
    copied = 0
    if started is not None:
        start, copied, total = started
        _log(f"started {copied} of {total} layers from {start.name} (model.init_from={cfg.model.init_from}; "
             "none for a random start)" if copied else
             f"model.init_from=bundled: {start.name} fits no layer of this model; random start", progress)
    pull = None
    check_l2sp_start(cfg.train.l2sp, copied > 0)
    if cfg.train.l2sp:
        from maskclf.training.callbacks import PullToStart
        pull = PullToStart(model, cfg.train.l2sp)  # anchored now: a resumed run restores its weights in fit
        _log(f"L2-SP: after each step the weights move learning rate x {cfg.train.l2sp:g} of the way back to the "
             "start (train.l2sp)", progress)
    lr0 = initial_learning_rate(cfg, started=copied > 0)
    if cfg.train.learning_rate is None:
        _log(f"learning rate {lr0:g} ({'fine-tuning trained weights' if copied else 'random start'}; "
             "train.learning_rate sets it)", progress)
    lr = learning_rate_for(cfg.train.lr_schedule, lr0, cfg.train.epochs, pipeline.steps(len(train_paths), bs))
    loss = make_loss(cfg, train_labels, k)
    compile_model(model, cfg.train.optimizer, lr, loss, cfg.train.sam_rho)
    if cfg.train.sam_rho:
        _log(f"sharpness-aware minimisation, radius {cfg.train.sam_rho:g} (train.sam_rho): 2 passes per step",
             progress)
    _log(f"model {cfg.model.name}: {model.count_params():,} parameters; run dir {run_dir}", progress)
    t0 = time.time()
    model.fit(train_ds, validation_data=fit_val, epochs=cfg.train.epochs, class_weight=weights, shuffle=False,
              callbacks=make_callbacks(run_dir, val_ds, cfg.train.monitor, cfg.train.patience, progress=progress,
                                       plateau=cfg.train.lr_schedule == "plateau",
                                       weight_average=cfg.train.weight_average, pull=pull),
              verbose=2 if progress else 0)
    epochs_done = _history_rows(run_dir / "history.csv")
    if spec.backbone and cfg.model.weights and cfg.train.fine_tune_epochs > 0:
        # Phase 2: continue from the best frozen-backbone weights, top layers unfrozen, lower rate.
        model = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
        _set_backbone_for_fine_tuning(model, cfg.train.fine_tune_layers)
        compile_model(model, cfg.train.optimizer, cfg.train.fine_tune_learning_rate, loss, cfg.train.sam_rho)
        _log(f"fine-tuning the top {cfg.train.fine_tune_layers} backbone layers", progress)
        model.fit(train_ds, validation_data=fit_val, initial_epoch=epochs_done,
                  epochs=epochs_done + cfg.train.fine_tune_epochs, class_weight=weights, shuffle=False,
                  callbacks=make_callbacks(run_dir, val_ds, cfg.train.monitor, cfg.train.patience,
                                           backup="backup_finetune", progress=progress),
                  verbose=2 if progress else 0)
    seconds = time.time() - t0
    rows = _history_rows(run_dir / "history.csv")
    train_info = {"seconds": round(seconds, 1), "epochs": rows, "parameters": int(model.count_params()),
                  "train_images": len(train_paths), "learning_rate": lr0,
                  "train_images_per_second": round(len(train_paths) * rows / max(seconds, 1e-9), 1)}
    if cfg.train.calibration != "none":
        from maskclf.training.calibrate import calibrate_run
        train_info["calibration"] = calibrate_run(run_dir, cfg.train.calibration, progress=progress)
    metrics = evaluate.evaluate_run(run_dir, progress=progress, extra={"training": train_info})
    write_json(run_dir / RUN_STATE, {"fingerprint": fingerprint, "status": "complete",
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    for b in ("backup", "backup_finetune"):
        shutil.rmtree(run_dir / b, ignore_errors=True)
    _log(evaluate.format_summary(metrics), progress)
    return run_dir


def _history_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except OSError:
        return 0
