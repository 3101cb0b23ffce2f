"""tf.data input pipeline: parallel decode → resize → cache → (train: shuffle, augment) → batch → prefetch.

Images are decoded by Pillow (through ``maskclf.data.images``) so every mode and EXIF orientation
is handled the same way in training, evaluation and on the device. The model receives float32
RGB in [0, 255]; normalisation is a layer inside the model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf
import keras

from maskclf.data import images as imgs
from maskclf.config import AugmentConfig


def build_augmenter(cfg: AugmentConfig, seed: int = 0) -> keras.Sequential | None:
    """Keras preprocessing layers for the ImageDataGenerator-style knobs (None when all are off)."""
    layers = []
    fill = cfg.fill_mode
    if cfg.horizontal_flip or cfg.vertical_flip:
        mode = ("horizontal_and_vertical" if cfg.horizontal_flip and cfg.vertical_flip
                else "horizontal" if cfg.horizontal_flip else "vertical")
        layers.append(keras.layers.RandomFlip(mode, seed=seed))
    if cfg.rotation_range:
        layers.append(keras.layers.RandomRotation(cfg.rotation_range / 360.0, fill_mode=fill, seed=seed + 1))
    if cfg.width_shift_range or cfg.height_shift_range:
        layers.append(keras.layers.RandomTranslation(cfg.height_shift_range, cfg.width_shift_range,
                                                     fill_mode=fill, seed=seed + 2))
    if cfg.shear_range:
        layers.append(keras.layers.RandomShear(cfg.shear_range, cfg.shear_range, fill_mode=fill, seed=seed + 3))
    if cfg.zoom_range:
        layers.append(keras.layers.RandomZoom(cfg.zoom_range, cfg.zoom_range, fill_mode=fill, seed=seed + 4))
    if cfg.contrast_range:
        layers.append(keras.layers.RandomContrast(cfg.contrast_range, value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augment") if layers else None


def _brightness(lo: float, hi: float):
    def apply(x):
        # ImageDataGenerator's brightness_range multiplies pixel values.
        f = tf.random.uniform([tf.shape(x)[0], 1, 1, 1], lo, hi)
        return tf.clip_by_value(x * f, 0.0, 255.0)

    return apply


def _colour(saturation: tuple, hue: float, gray: float, seed: int):
    """Per-image colour jitter on a float batch in [0, 255]: saturation x [lo, hi], hue shift in [-hue, hue]
    (in HSV), then a ``gray`` share of the images turned to grey (luma, in all 3 channels)."""
    gen = tf.random.Generator.from_seed(seed + 11)

    def apply(x):
        n = tf.shape(x)[0]
        if saturation or hue:
            h, s, v = tf.unstack(tf.image.rgb_to_hsv(x / 255.0), axis=-1)
            if saturation:
                s = tf.clip_by_value(s * gen.uniform([n, 1, 1], saturation[0], saturation[1]), 0.0, 1.0)
            if hue:
                h = tf.math.floormod(h + gen.uniform([n, 1, 1], -hue, hue), 1.0)
            x = tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0, 0.0, 255.0)
        if gray:
            luma = tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 1, 3])
            x = tf.where(gen.uniform([n, 1, 1, 1]) < gray, luma, x)
        return x

    return apply


def _degrade(lo: float, hi: float, quality: tuple, prob: float, seed: int):
    """Resolution augmentation on a float batch in [0, 255]: shrink-and-restore and/or JPEG re-compression.

    One random scale per batch (resizing needs one shape), applied to a random ``prob`` share
    of its images; the JPEG quality is drawn per image.
    """
    gen = tf.random.Generator.from_seed(seed + 7)

    def apply(x):
        n, size = tf.shape(x)[0], tf.shape(x)[1]
        out = x
        if lo:
            scale = gen.uniform([], lo, hi)
            small = tf.maximum(4, tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32))
            down = tf.image.resize(x, [small, small], method="area", antialias=True)
            out = tf.clip_by_value(tf.image.resize(down, [size, size], method="bilinear"), 0.0, 255.0)
        if quality:
            q = gen.uniform([n], quality[0], quality[1] + 1, dtype=tf.float32)

            def jpeg(args):
                img, qi = args
                return tf.cast(tf.image.adjust_jpeg_quality(tf.cast(img, tf.uint8), tf.cast(qi, tf.int32)),
                               tf.float32)

            out = tf.map_fn(jpeg, (out, q), fn_output_signature=tf.float32)
        pick = gen.uniform([n, 1, 1, 1]) < prob
        return tf.where(pick, out, x)

    return apply


def decode_images(paths: Sequence[str], image_size: int) -> tf.data.Dataset:
    """Dataset of uint8 (size, size, 3) images decoded in parallel by Pillow."""

    def load(p):
        return imgs.load_array(p.decode() if isinstance(p, bytes) else str(p), image_size)

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(list(paths), dtype=object).astype(str))
    ds = ds.map(lambda p: tf.ensure_shape(tf.numpy_function(load, [p], tf.uint8, stateful=False),
                                          (image_size, image_size, 3)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds


def make_dataset(paths: Sequence[str], labels: Sequence[int] | None, image_size: int, batch_size: int,
                 training: bool = False, augment: AugmentConfig | None = None, seed: int = 0,
                 cache: bool = True, balanced: bool = False) -> tf.data.Dataset:
    """Batched (images float32 [0, 255], labels int32) dataset.

    Args:
        paths: image files.
        labels: class indices, or None for unlabelled prediction.
        image_size: square side the images are resized to.
        batch_size: batch size.
        training: shuffle (reshuffled each epoch) and augment.
        augment: augmentation knobs (used only when training).
        seed: shuffle and augmentation seed.
        cache: keep decoded images in memory after the first epoch.
        balanced: training only: draw the classes equally often (``balanced_stream``) instead of
            shuffling each image once per epoch.
    """
    ds = decode_images(paths, image_size)
    if training and balanced and labels is not None:
        ds = balanced_stream(np.stack(list(ds.as_numpy_iterator())), labels, seed)
    elif labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))))
    else:
        ds = ds.map(lambda x: (x,))
    if cache and not (training and balanced):
        ds = ds.cache()
    if training and not balanced:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = batch_and_augment(ds, batch_size, augment if training else None, seed)
    if labels is None:
        ds = ds.map(lambda x: x)
    return ds.prefetch(tf.data.AUTOTUNE)


def batch_and_augment(ds: tf.data.Dataset, batch_size: int, augment: AugmentConfig | None = None,
                      seed: int = 0) -> tf.data.Dataset:
    """Batch uint8 images (with any labels), cast to float32 [0, 255], and augment when ``augment`` is given.

    Shared by training and by tuning, which re-batches one decoded cache per trial.
    """
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, *y: (tf.cast(x, tf.float32), *y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is None:
        return ds
    aug = build_augmenter(augment, seed)
    bright = _brightness(*augment.brightness_range) if augment.brightness_range else None
    degrade = (_degrade(*(augment.resolution_range or (0.0, 0.0)), tuple(augment.jpeg_quality_range),
                        augment.resolution_probability, seed)
               if (augment.resolution_range or augment.jpeg_quality_range) and augment.resolution_probability > 0
               else None)
    colour = (_colour(tuple(augment.saturation_range), augment.hue_range, augment.grayscale_probability, seed)
              if augment.saturation_range or augment.hue_range or augment.grayscale_probability else None)
    if aug is None and bright is None and degrade is None and colour is None:
        return ds

    def apply(x, *y):
        if degrade is not None:
            x = degrade(x)
        if aug is not None:
            x = tf.clip_by_value(aug(x, training=True), 0.0, 255.0)
        if bright is not None:
            x = bright(x)
        if colour is not None:
            x = colour(x)
        return (x, *y)

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def balanced_stream(images: np.ndarray, labels: Sequence[int], seed: int = 0) -> tf.data.Dataset:
    """Unbatched (uint8 image, label) pairs drawing every class with equal probability, ``len(labels)`` per
    epoch (so an epoch has the usual number of steps); a rare class's images repeat, a common class's
    are sampled. ``images`` are the decoded training images, kept in memory (small at face-crop sizes)."""
    labels = np.asarray(labels, dtype=np.int32)
    parts = []
    for c in np.unique(labels):
        sel = np.flatnonzero(labels == c)
        d = tf.data.Dataset.from_tensor_slices((images[sel], labels[sel]))
        parts.append(d.shuffle(len(sel), seed=seed + int(c) + 1, reshuffle_each_iteration=True).repeat())
    mixed = tf.data.Dataset.sample_from_datasets(parts, weights=[1.0 / len(parts)] * len(parts), seed=seed,
                                                 rerandomize_each_iteration=True)
    return mixed.take(len(labels))


def mixing(augment: AugmentConfig | None) -> bool:
    """Whether ``augment`` asks for mixup or CutMix (which turn the labels into class mixtures)."""
    return bool(augment is not None and (augment.mixup_alpha or augment.cutmix_alpha) and augment.mix_probability > 0)


def mix(ds: tf.data.Dataset, num_classes: int, augment: AugmentConfig, class_weights: Sequence[float] | None = None,
        seed: int = 0) -> tf.data.Dataset:
    """mixup / CutMix on a batched (images float32, int labels) dataset.

    Each image is paired with another of its batch (a random permutation); with ``mix_probability`` it
    is mixed by mixup or CutMix (one of the two, at random, when both alphas are set). Labels become
    the same mixture of one-hot vectors. With ``class_weights`` (one per class) a third element, the
    per-image sample weight ``sum(label * weights)``, carries class weighting through the mix
    (Keras' ``class_weight`` would weight a mixed image by its larger share only).
    """
    gen = tf.random.Generator.from_seed(seed + 11)
    ma, ca, prob = float(augment.mixup_alpha), float(augment.cutmix_alpha), float(augment.mix_probability)
    w = tf.constant(list(class_weights), tf.float32) if class_weights is not None else None

    def beta(n, alpha):
        s = gen.make_seeds(2)
        g1 = tf.random.stateless_gamma([n], s[:, 0], alpha)
        g2 = tf.random.stateless_gamma([n], s[:, 1], alpha)
        return g1 / tf.maximum(g1 + g2, 1e-12)

    def apply(x, y):
        n, h, wd = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        y1 = tf.one_hot(y, num_classes)
        other = tf.argsort(gen.uniform([n]))
        x2, y2 = tf.gather(x, other), tf.gather(y1, other)
        candidates = []
        if ma:
            lam = beta(n, ma)
            candidates.append((lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x2, lam))
        if ca:
            cut = tf.sqrt(1.0 - beta(n, ca))  # side fraction of the pasted box
            hf, wf = tf.cast(h, tf.float32), tf.cast(wd, tf.float32)
            cy, cx = gen.uniform([n]) * hf, gen.uniform([n]) * wf
            rows = tf.range(hf) + 0.5
            cols = tf.range(wf) + 0.5
            in_r = tf.abs(rows[None, :] - cy[:, None]) < (cut * hf / 2)[:, None]
            in_c = tf.abs(cols[None, :] - cx[:, None]) < (cut * wf / 2)[:, None]
            box = tf.logical_and(in_r[:, :, None], in_c[:, None, :])  # (n, h, w): pixels taken from x2
            lam = 1.0 - tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2])
            candidates.append((tf.where(box[..., None], x2, x), lam))
        xm, lam = candidates[0]
        if len(candidates) == 2:
            pick_cut = gen.uniform([n]) < 0.5
            xm = tf.where(pick_cut[:, None, None, None], candidates[1][0], xm)
            lam = tf.where(pick_cut, candidates[1][1], lam)
        keep = gen.uniform([n]) >= prob
        xm = tf.where(keep[:, None, None, None], x, xm)
        lam = tf.where(keep, tf.ones_like(lam), lam)
        ym = lam[:, None] * y1 + (1 - lam[:, None]) * y2
        if w is None:
            return xm, ym
        return xm, ym, tf.linalg.matvec(ym, w)

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def steps(n: int, batch_size: int) -> int:
    """Batches per epoch."""
    return max(1, math.ceil(n / batch_size))
