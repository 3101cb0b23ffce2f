"""Training levers kept for reproduction, off the everyday path (docs/LEVERS.md says what each measured):
knowledge distillation from a teacher run (``train.distill_from``), sharpness-aware minimisation
(``train.sam_rho``) and the L2-SP start check (``train.l2sp``). ``maskclf.training.train`` calls them only when
the config turns them on; TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from maskclf.data import splitting
from maskclf.config import Config
from maskclf.files import MaskclfError


def _log(msg: str, progress: bool = True) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def distillation_targets(cfg: Config, class_names: list[str], paths: dict[str, list[str]], train_labels: list[int],
                         progress: bool = True):
    """``train.distill_from``: the training targets ``(1 - w) * one_hot(label) + w * softened teacher probabilities``.

    ``paths`` holds this run's train / validation / test image paths. The teacher (a run directory) must have
    the same classes and must not have trained on this run's validation or test images (its soft targets
    would carry their labels into training and model selection). Returns an (N, C) float32 array.
    """
    import numpy as np

    from maskclf.reports import evaluate
    from maskclf.config import load_config
    from maskclf.files import read_labels

    t = cfg.train
    teacher = Path(t.distill_from)
    if (teacher / "cv.json").is_file():
        raise MaskclfError(f"train.distill_from={teacher} is a `maskclf cv` folder; give one run directory, or use "
                           "it with `maskclf cv` (fold f then learns from its fold f)")
    for f in ("best.keras", "labels.txt", "split.csv", "config.yaml"):
        if not (teacher / f).is_file():
            raise MaskclfError(f"train.distill_from={teacher}: no {f}; name a finished run directory "
                               "(e.g. a `maskclf ensemble` of this split)")
    names = read_labels(teacher / "labels.txt")
    if names != class_names:
        raise MaskclfError(f"train.distill_from={teacher}: classes {', '.join(names)} differ from this data's "
                           f"{', '.join(class_names)}")
    seen = {r["path"]: r["split"] for r in splitting.read_split_csv(teacher / "split.csv")}
    for side in ("validation", "test"):
        leaked = [p for p in paths[side] if seen.get(p) == "train"]
        if leaked:
            raise MaskclfError(f"train.distill_from={teacher}: the teacher trained on {len(leaked)} of this run's "
                               f"{side} images (e.g. {leaked[0]}); use a teacher of the same split (the same fold)")
    _log(f"distilling from {teacher}: targets {1 - t.distill_weight:g} x label + {t.distill_weight:g} x its "
         f"probabilities at temperature {t.distill_temperature:g}", progress)
    size = load_config(teacher / "config.yaml").data.image_size
    p = evaluate.predict_paths(evaluate.load_run_model(teacher), paths["train"], size).astype(np.float64)
    p = np.clip(p, 1e-8, 1.0) ** (1.0 / t.distill_temperature)
    p /= p.sum(axis=1, keepdims=True)
    agree = float((p.argmax(axis=1) == np.asarray(train_labels)).mean())
    _log(f"the teacher agrees with {agree:.1%} of the training labels", progress)
    hard = np.eye(len(class_names))[np.asarray(train_labels)]
    return ((1.0 - t.distill_weight) * hard + t.distill_weight * p).astype(np.float32)


def use_sam(model, rho: float) -> None:
    """``train.sam_rho``: sharpness-aware minimisation (Foret et al. 2021) for this model's ``fit``.

    Each step computes the batch's gradient ``g`` at the weights ``w``, moves to ``w + rho * g / ||g||``
    (the steepest nearby point), takes the gradient there and applies it at ``w`` with the compiled
    optimizer. BatchNorm's moving statistics are kept from the first pass only, so they update once per step
    as without SAM. Class weights, the loss and the metrics are the compiled ones; two passes per step."""
    import types

    import tensorflow as tf
    from keras.utils import unpack_x_y_sample_weight as keras_unpack

    rho = float(rho)

    def train_step(self, data):
        x, y, sample_weight = keras_unpack(data)
        weights = self.trainable_weights
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        grads = tape.gradient(loss, weights)
        scale = rho / (tf.linalg.global_norm(grads) + 1e-12)
        eps = [None if g is None else g * scale for g in grads]
        stats = [tf.identity(v.value) for v in self.non_trainable_weights]
        for w, e in zip(weights, eps):
            if e is not None:
                w.assign_add(e)
        with tf.GradientTape() as tape:
            sharp_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True), sample_weight=sample_weight,
                                           training=True)
        sharp_grads = tape.gradient(sharp_loss, weights)
        for w, e in zip(weights, eps):
            if e is not None:
                w.assign_sub(e)
        for v, s in zip(self.non_trainable_weights, stats):
            v.assign(s)
        self.optimizer.apply_gradients(zip(sharp_grads, weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.train_step = types.MethodType(train_step, model)
    model.train_function = None  # a function made before this would keep the plain step


def check_l2sp_start(l2sp: float, started: bool, subject: str = "this run starts") -> None:
    """``train.l2sp`` pulls toward a trained start: refuse it when there is none (``maskclf train`` and tune)."""
    if l2sp and not started:
        raise MaskclfError(f"config key train.l2sp pulls the weights toward a trained start, but {subject} at random: "
                           "set model.init_from (a .keras file, a run, or bundled) or train.l2sp=0")
