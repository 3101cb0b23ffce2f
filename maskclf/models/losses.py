"""Losses maskclf trains with beyond Keras' own, registered so saved models load without ``custom_objects``."""

from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="maskclf")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits shifted by ``tau * log(prior)`` (Menon et al. 2021, "Long-tail learning via
    logit adjustment"): the loss a rare class's faces are easy to reach under is made harder, so the
    trained model's plain argmax already targets *balanced* error, without inflating the rare images'
    gradients as class weights do (an "incorrect" face weighted 28x is memorised rather than generalised).

    The model outputs softmax probabilities; their logs are the logits up to a constant, which the softmax
    ignores. Labels are class indices (``sparse``) or one-hot/mixed rows.
    """

    def __init__(self, log_prior, tau: float = 1.0, sparse: bool = True, label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.log_prior = [float(v) for v in log_prior]
        self.tau = float(tau)
        self.sparse = bool(sparse)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        """Cross-entropy of the logits shifted by tau × log prior."""
        from keras import ops

        shift = ops.convert_to_tensor([self.tau * v for v in self.log_prior], dtype=y_pred.dtype)
        logits = ops.log(ops.clip(y_pred, 1e-7, 1.0)) + shift
        if self.sparse:
            return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        """The loss's config, so a saved model loads it back."""
        return {**super().get_config(), "log_prior": self.log_prior, "tau": self.tau, "sparse": self.sparse,
                "label_smoothing": self.label_smoothing}


def log_prior(labels: list[int], num_classes: int) -> list[float]:
    """Log class frequencies of the training labels (a class with no image counts as one)."""
    counts = [max(1, sum(1 for y in labels if y == c)) for c in range(num_classes)]
    total = sum(counts)
    return [math.log(n / total) for n in counts]
