"""tf.data input pipeline: parallel decode → resize → cache → (train: shuffle, augment) → batch → prefetch.

Images are decoded by Pillow (through ``maskclf.images``) so every mode and EXIF orientation
is handled the same way in training, evaluation and on the device. The model receives float32
RGB in [0, 255]; normalisation is a layer inside the model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf
import keras

from maskclf import images as imgs
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
                 cache: bool = True) -> tf.data.Dataset:
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
    """
    ds = decode_images(paths, image_size)
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))))
    else:
        ds = ds.map(lambda x: (x,))
    if cache:
        ds = ds.cache()
    if training:
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
    if aug is None and bright is None and degrade is None:
        return ds

    def apply(x, *y):
        if degrade is not None:
            x = degrade(x)
        if aug is not None:
            x = tf.clip_by_value(aug(x, training=True), 0.0, 255.0)
        if bright is not None:
            x = bright(x)
        return (x, *y)

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def steps(n: int, batch_size: int) -> int:
    """Batches per epoch."""
    return max(1, math.ceil(n / batch_size))
