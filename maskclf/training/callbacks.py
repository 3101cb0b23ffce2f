"""Keras callbacks maskclf adds: validation balanced accuracy and an atomic best checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from maskclf.files import atomic_path


def predict_dataset(model, ds) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) over a labelled batched dataset."""
    ys, ps = [], []
    for x, y in ds:
        ps.append(np.asarray(model(x, training=False)))
        ys.append(np.asarray(y))
    y = np.concatenate(ys)
    if y.ndim == 2:  # one-hot
        y = y.argmax(1)
    return y.astype(int), np.concatenate(ps)


class ValidationMetrics(keras.callbacks.Callback):
    """Adds ``val_balanced_accuracy`` and ``val_macro_f1`` to the epoch logs.

    Placed first in the callback list, so early stopping and checkpointing can monitor them.
    """

    def __init__(self, val_ds):
        super().__init__()
        self.val_ds = val_ds

    def on_epoch_end(self, epoch, logs=None):
        """Add validation balanced accuracy and macro F1 to the epoch's logs."""
        from sklearn.metrics import balanced_accuracy_score, f1_score

        y, p = predict_dataset(self.model, self.val_ds)
        pred = p.argmax(1)
        if logs is not None:
            logs["val_balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
            logs["val_macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, but each backup file is written to a temporary name and renamed.

    Keras writes ``latest.weights.h5`` and ``training_metadata.json`` in place: a kill -9 during
    that write leaves a truncated file, and every later resume then fails to load it. Renamed
    files are always whole; at worst the weights are one epoch ahead of the epoch counter, and
    that epoch is trained once more.
    """

    def _save_model(self):
        import json

        os.makedirs(self.backup_dir, exist_ok=True)
        with atomic_path(self._weights_path, suffix=".weights.h5") as tmp:  # Keras insists on this suffix
            self.model.save_weights(filepath=str(tmp), overwrite=True)
        with atomic_path(self._training_metadata_path) as tmp:
            tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Saves the model when ``monitor`` improves, to a temporary name then renamed.

    A kill during the save never leaves a truncated ``best.keras``. The best value is kept
    in a side file so a resumed run does not overwrite a better checkpoint.
    """

    def __init__(self, path: str | os.PathLike, monitor: str, mode: str = "max", verbose: bool = True):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self.state = self.path.with_suffix(".best")
        self.best = None
        if self.state.is_file() and self.path.is_file():
            try:
                self.best = float(self.state.read_text())
            except ValueError:
                self.best = None

    def _better(self, v: float) -> bool:
        if self.best is None:
            return True
        return v > self.best if self.mode == "max" else v < self.best

    def on_epoch_end(self, epoch, logs=None):
        """Save the model (temp file, then rename) when the monitored value improves."""
        v = (logs or {}).get(self.monitor)
        if v is None:
            raise KeyError(f"checkpoint monitor {self.monitor!r} not in the epoch logs: {sorted(logs or {})}")
        v = float(v)
        if np.isnan(v) or not self._better(v):
            return
        self.best = v
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)
        with atomic_path(self.state) as tmp:
            tmp.write_text(repr(v))
        if self.verbose:
            print(f"  epoch {epoch + 1}: {self.monitor} improved to {v:.4f}, saved {self.path.name}", flush=True)


class PullToStart(keras.callbacks.Callback):
    """``train.l2sp``: L2-SP (Li et al. 2018) in decoupled form, as AdamW decouples weight decay: after every
    optimizer step each trainable weight moves ``min(1, lr * strength)`` of the way back to its value when
    this callback was made (the trained start), ``lr`` being the step's learning rate. A penalty added to the
    loss would instead be rescaled away by Adam's per-weight normalisation. Build it before ``fit``: a
    resumed run's restored weights must not become the anchor."""

    def __init__(self, model, strength: float):
        super().__init__()
        import tensorflow as tf

        self.strength = float(strength)
        self._vars = list(model.trainable_weights)
        self._start = [tf.constant(v.numpy()) for v in self._vars]

        @tf.function
        def pull():  # the step's rate read in the graph: no copy to the host per step
            lr = tf.cast(self.model.optimizer.learning_rate, tf.float32)
            f = tf.minimum(1.0, lr * self.strength)
            for v, w0 in zip(self._vars, self._start):
                v.assign(w0 + (1.0 - f) * (v.value - w0))  # exactly the start at f = 1

        self._pull = pull

    def on_train_batch_end(self, batch, logs=None):
        """Pull the weights toward their starting values (L2-SP)."""
        self._pull()


class WeightAverage(keras.callbacks.Callback):
    """Exponential moving average of the model's float variables (weights and BatchNorm statistics),
    Polyak averaging as in timm's ``ModelEma``: ``avg = decay * avg + (1 - decay) * w`` after every step.

    At each epoch's end the averaged weights are swapped in, so the callbacks after this one (validation
    metrics, the best checkpoint, the CSV log) see the averaged model; ``restore`` (placed after them) puts
    the raw weights back and training continues from them. After training the model keeps the average.
    Keras' own ``val_loss``/``val_accuracy`` are computed before any callback, on the raw weights.
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = float(decay)
        self._vars = self._shadow = self._raw = None
        outer = self

        class _Restore(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer._put_back()

        self.restore = _Restore()

    def _start(self):
        # At the first step, not on_train_begin: a resumed run's weights are restored after that.
        import tensorflow as tf

        self._vars = [v for v in self.model.weights if v.dtype in ("float16", "float32", "float64", "bfloat16")]
        self._shadow = [tf.Variable(v.value, trainable=False) for v in self._vars]
        d = self.decay

        @tf.function
        def update():
            for s, v in zip(self._shadow, self._vars):
                s.assign(d * s + (1.0 - d) * v.value)

        self._update = update

    def on_train_batch_end(self, batch, logs=None):
        """Update the running average of the weights."""
        if self._shadow is None:
            self._start()
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        """Swap the averaged weights in: the callbacks after this one (metrics, checkpoint) see them."""
        if self._shadow is None:
            return
        self._raw = [v.numpy() for v in self._vars]
        for v, s in zip(self._vars, self._shadow):
            v.assign(s.numpy())

    def _put_back(self):
        if self._raw is not None:
            for v, r in zip(self._vars, self._raw):
                v.assign(r)
            self._raw = None

    def on_train_end(self, logs=None):
        """Leave the averaged weights in the model."""
        self._put_back()
        if self._shadow is None:
            return
        for v, s in zip(self._vars, self._shadow):
            v.assign(s.numpy())
