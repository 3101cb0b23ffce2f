"""Grad-CAM and Grad-CAM++ heatmaps, overlays and explanation panels.

Computation (``compute_heatmaps``) is pure TensorFlow/numpy and returns arrays; drawing
(``overlay``, ``plot_explanation``) is separate and only turns those arrays into pictures.

The feature map explained is the last convolutional one (the last 4-D output that is not a
pooling or dropout layer), found through a nested ``keras.applications`` backbone too. The
class score is the pre-softmax logit when the model ends in a softmax Dense layer (as every
registry model does), so a confident prediction still has non-vanishing gradients.

Nothing at module level imports TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskclf.files import MaskclfError

METHODS = ("gradcam", "gradcam++")
_SKIP_4D = ("Pooling", "Dropout", "SpatialDropout", "ZeroPadding", "Cropping", "InputLayer")


# ----------------------------------------------------------------------------- computation

def _is_feature_map(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4 and not any(s in type(layer).__name__ for s in _SKIP_4D)


def find_target_layer(model) -> str:
    """Name of the last convolutional feature map of ``model``.

    Returns:
        ``"layer"`` for a top-level layer, or ``"backbone/layer"`` for one inside a nested sub-model.
    """
    for layer in reversed(model.layers):
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested functional sub-model
            try:
                return f"{layer.name}/{find_target_layer(layer)}"
            except MaskclfError:
                continue
        if _is_feature_map(layer):
            return layer.name
    raise MaskclfError(f"model {model.name!r} has no 4-D (convolutional) feature map to explain")


def _score_head(model):
    """(layer whose input is the penultimate features, True) when the model ends in a softmax Dense layer."""
    import keras

    last = model.layers[-1]
    act = getattr(getattr(last, "activation", None), "__name__", "")
    return last, isinstance(last, keras.layers.Dense) and act == "softmax"


def _logits(dense, h):
    from keras import ops

    z = ops.matmul(h, dense.kernel)
    return z + dense.bias if dense.use_bias else z


def make_grad_function(model, layer: str | None = None):
    """A function ``images -> (feature_maps, class_scores, probabilities)`` for a Grad-CAM tape.

    Args:
        model: a Keras functional model with one image input (every registry model).
        layer: the feature-map layer, ``"name"`` or ``"submodel/name"``; default :func:`find_target_layer`.

    Returns:
        A callable on a float batch (N, H, W, 3); scores are logits when the head is a softmax Dense layer.
    """
    import keras
    from keras import ops

    layer = layer or find_target_layer(model)
    last, has_logits = _score_head(model)
    outer, _, inner = layer.partition("/")
    try:
        target = model.get_layer(outer)
        if inner:
            target.get_layer(inner)
    except ValueError:
        raise MaskclfError(f"model {model.name!r} has no layer {layer!r}") from None

    if not inner:
        # A top-level layer: one functional model gives the map and the head's input.
        head_in = last.input if has_logits else model.outputs[0]
        grad_model = keras.Model(model.inputs, [target.output, head_in])

        def run(x):
            feats, h = grad_model(x, training=False)
            if has_logits:
                z = _logits(last, h)
                return feats, z, ops.softmax(z, axis=-1)
            return feats, h, h
        return run

    # A map inside a nested sub-model: Keras 3 cannot wire its inner tensors to the outer input, so
    # replay the outer chain (linear for every registry model), calling a sub-model with two outputs.
    sub = keras.Model(target.inputs, [target.get_layer(inner).output, target.outputs[0]])
    chain = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]

    def run(x):
        h, feats = x, None
        for lay in chain:
            if lay is target:
                feats, h = sub(h, training=False)
            elif lay is last and has_logits:
                z = _logits(last, h)
                return feats, z, ops.softmax(z, axis=-1)
            else:
                h = lay(h, training=False)
        return feats, h, h
    return run


def compute_heatmaps(model, images: Any, class_index: int | Sequence[int] | None = None,
                     methods: Sequence[str] = METHODS, layer: str | None = None,
                     grad_fn=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Grad-CAM / Grad-CAM++ heatmaps of a batch.

    Args:
        model: a model taking float RGB [0, 255] (its preprocessing is inside).
        images: (N, H, W, 3) or (H, W, 3) array in [0, 255].
        class_index: the class to explain: one int, one per image, or None for the predicted class.
        methods: any of ``"gradcam"``, ``"gradcam++"``.
        layer: the feature-map layer (default: the last convolutional one, see :func:`find_target_layer`).
        grad_fn: a :func:`make_grad_function` result to reuse across batches.

    Returns:
        ({method: (N, H, W) float32 heatmaps in [0, 1] at the input size}, (N, C) probabilities).
    """
    import tensorflow as tf

    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise MaskclfError(f"unknown Grad-CAM method(s) {bad or methods}; choose from {', '.join(METHODS)}")
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise MaskclfError(f"images must be (N, H, W, 3), got shape {x.shape}")
    run = grad_fn or make_grad_function(model, layer)
    x_t = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        feats, scores, probs = run(x_t)
        n_cls = int(scores.shape[-1])
        if class_index is None:
            idx = tf.argmax(probs, axis=-1)
        else:
            idx = tf.constant(np.broadcast_to(np.asarray(class_index, dtype=np.int64), (x.shape[0],)))
            if int(tf.reduce_max(idx)) >= n_cls or int(tf.reduce_min(idx)) < 0:
                raise MaskclfError(f"class index {class_index} out of range 0..{n_cls - 1}")
        score = tf.gather(scores, idx, axis=1, batch_dims=1)
    g = tape.gradient(score, feats)  # (N, h, w, K)
    if g is None:
        raise MaskclfError("the class score does not depend on the chosen feature map")
    out: dict[str, np.ndarray] = {}
    for m in methods:
        if m == "gradcam":
            w = tf.reduce_mean(g, axis=(1, 2))
        else:
            # Grad-CAM++ closed form (Chattopadhay et al. 2018) for Y = exp(S): the exp(S) factors of the
            # 2nd/3rd derivatives cancel in alpha and only scale w, which the normalisation removes.
            g2, g3 = g * g, g * g * g
            denom = 2.0 * g2 + tf.reduce_sum(feats, axis=(1, 2), keepdims=True) * g3
            alpha = tf.math.divide_no_nan(g2, tf.where(tf.abs(denom) > 0, denom, tf.ones_like(denom)))
            w = tf.reduce_sum(alpha * tf.nn.relu(g), axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", feats, w))
        cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0]
        cam = tf.nn.relu(cam)
        top = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        out[m] = tf.math.divide_no_nan(cam, top).numpy().astype(np.float32)
    return out, np.asarray(probs, dtype=np.float32)


# ----------------------------------------------------------------------------- drawing

def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A (H, W) map in [0, 1] as a uint8 RGB image."""
    from matplotlib import colormaps

    rgb = colormaps[cmap](np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0))[..., :3]
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image (resized to it); both returned as uint8 RGB (H, W, 3)."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape != img.shape[:2]:
        hm = np.asarray(Image.fromarray(hm).resize((img.shape[1], img.shape[0]), Image.BILINEAR))
    blend = (1.0 - alpha) * img.astype(np.float32) + alpha * colorize(hm, cmap).astype(np.float32)
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


def plot_explanation(image: np.ndarray, heatmaps: dict[str, np.ndarray], title: str,
                     out_path: str | os.PathLike) -> Path:
    """One panel as in seed report 001: the input, each method's heatmap, then each method's overlay.

    Args:
        image: uint8 RGB (H, W, 3), any size.
        heatmaps: {method: (h, w) map in [0, 1]} (resized to the image).
        title: a line above the panel (the prediction).
        out_path: destination PNG.
    """
    from maskclf.reports.plots import _save, plt

    img = np.asarray(image, dtype=np.uint8)
    methods = [m for m in METHODS if m in heatmaps]
    cols = 1 + 2 * len(methods)
    fig, axes = plt.subplots(1, cols, figsize=(2.6 * cols, 3.0), squeeze=False)
    panels = [("input", img, None)]
    panels += [(f"{_TITLES[m]} heatmap", heatmaps[m], "jet") for m in methods]
    panels += [(f"{_TITLES[m]} overlay", overlay(img, heatmaps[m]), None) for m in methods]
    for ax, (name, pic, cmap) in zip(axes[0], panels):
        ax.imshow(pic, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_path)


# ----------------------------------------------------------------------------- run directories

@dataclass(frozen=True)
class Explained:
    """One explained image: where it came from, what the model said, the maps and the panel file."""

    path: str
    label: str
    score: float
    explained_class: str
    heatmaps: dict
    panel: Path | None = None


def grad_functions(model) -> list:
    """:func:`make_grad_function` of a run's model, or of each member of an ensemble (``maskclf ensemble``)."""
    from maskclf.models.registry import ensemble_members

    return [make_grad_function(m) for m in ensemble_members(model) or [model]]


def model_heatmaps(model, x: np.ndarray, class_index, methods: Sequence[str] = METHODS, grad_fns: list | None = None):
    """:func:`compute_heatmaps` of a run's model, an ensemble's included: there each member's heatmaps of the
    class at its own input size (each looks at the face in its own way), brought to the ensemble's input and
    averaged, as its probabilities are; the probabilities are the ensemble's.

    Args:
        model, x, class_index, methods: as :func:`compute_heatmaps`.
        grad_fns: :func:`grad_functions` of ``model``, to reuse across batches.
    """
    from maskclf.models.registry import ensemble_members

    parts = ensemble_members(model)
    grad_fns = grad_fns or grad_functions(model)
    if not parts:
        return compute_heatmaps(model, x, class_index, methods, grad_fn=grad_fns[0])
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    side = x.shape[1]
    mean = {m: np.zeros(x.shape[:3], np.float32) for m in methods}
    for part, fn in zip(parts, grad_fns):
        s = int(part.inputs[0].shape[1])
        maps, _ = compute_heatmaps(part, x if s == side else tf.image.resize(x, (s, s)).numpy(), class_index,
                                   methods, grad_fn=fn)
        for m in methods:
            h = maps[m] if s == side else tf.image.resize(maps[m][..., None], (side, side)).numpy()[..., 0]
            mean[m] += h / len(parts)
    return mean, np.asarray(model(x, training=False), dtype=np.float32)


def _collect(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    from maskclf.data import images

    return images.collect_images(inputs)


def _threshold(run: Path) -> float | None:
    import json

    try:
        return json.loads((run / "metrics.json").read_text()).get("threshold")
    except (OSError, ValueError):
        return None


def _method_list(method: str | Sequence[str]) -> list[str]:
    if isinstance(method, str):
        return list(METHODS) if method == "both" else [method]
    return list(method)


def explain_images(run_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike], method: str = "both",
                   class_name: str | None = None, out_dir: str | os.PathLike | None = None,
                   batch_size: int = 16, model=None, save: bool = True) -> list[Explained]:
    """Explain a run's predictions on image files (or folders) and write one PNG panel per image.

    Args:
        run_dir: a directory made by ``maskclf train``.
        inputs: image files or folders of them.
        method: ``gradcam``, ``gradcam++`` or ``both``.
        class_name: the class to explain; default each image's predicted class (with the run's
            two-class threshold, as ``maskclf predict``).
        out_dir: folder for ``<image stem>_gradcam.png`` panels (default ``RUN_DIR/explain``).
        batch_size: images per gradient pass.
        model: an already loaded model of the run (default: load ``best.keras``).
        save: write the panels (False: return heatmaps only).

    Returns:
        One :class:`Explained` per image, in input order.
    """
    from maskclf.data import images
    from maskclf.config import load_config
    from maskclf.files import read_labels
    from maskclf.reports.evaluate import load_run_model

    run = Path(run_dir)
    if not run.is_dir():
        raise MaskclfError(f"{run}: run directory not found")
    methods = _method_list(method)
    class_names = read_labels(run / "labels.txt")
    size = load_config(run / "config.yaml").data.image_size
    if class_name is not None and class_name not in class_names:
        raise MaskclfError(f"class {class_name!r} is not a class of the model ({', '.join(class_names)})")
    files = _collect(inputs)
    originals = [images.load_array(f) for f in files]  # unreadable files fail here with a one-line error
    model = model if model is not None else load_run_model(run)
    grad_fns = grad_functions(model)
    threshold = _threshold(run) if len(class_names) == 2 else None
    out = Path(out_dir) if out_dir else run / "explain"
    results: list[Explained] = []
    used: set[str] = set()
    for start in range(0, len(files), batch_size):
        chunk = list(range(start, min(start + batch_size, len(files))))
        x = np.stack([images.load_array(files[i], size) for i in chunk]).astype(np.float32)
        if class_name is not None:
            target = class_names.index(class_name)
        else:
            # The predicted class first (one cheap pass), so a thresholded two-class call is honoured.
            probs = np.asarray(model(x, training=False))
            pred = probs.argmax(1)
            if threshold is not None:
                pred = np.where(probs[:, 0] >= threshold, 0, 1)
            target = pred
        maps, probs = model_heatmaps(model, x, target, methods, grad_fns)
        targets = np.broadcast_to(np.asarray(target), (len(chunk),))
        for j, i in enumerate(chunk):
            p = probs[j]
            k = int(p.argmax()) if threshold is None else (0 if p[0] >= threshold else 1)
            hm = {m: maps[m][j] for m in methods}
            panel = None
            if save:
                explained = class_names[int(targets[j])]
                title = f"{files[i].name}: predicted {class_names[k]} ({p[k]:.2f})"
                if explained != class_names[k]:
                    title += f"; explaining {explained}"
                name, n = f"{files[i].stem}_gradcam", 1
                while name in used:  # same file name in two folders: keep both panels
                    n += 1
                    name = f"{files[i].stem}_{n}_gradcam"
                used.add(name)
                panel = plot_explanation(originals[i], hm, title, out / f"{name}.png")
            results.append(Explained(str(files[i]), class_names[k], float(p[k]), class_names[int(targets[j])],
                                     hm, panel))
    return results
