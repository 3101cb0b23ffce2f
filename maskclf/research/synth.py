"""Autoencoder-generated face crops for rare classes (seed report 001): ``maskclf synth``.

    synthesize(source, method, per_class, ...) -> DIR with DIR/<class>/*.png, contact_sheet.png,
                                                  loss.png, loss.csv and synth.json

One small convolutional autoencoder per chosen class is trained on that class's crops of the
*training* split only (a run's ``split.csv`` train rows, or the same grouped split ``train`` makes of a
dataset), so validation and test faces never shape the generated images. Two methods:

- ``vae``: a variational autoencoder (reconstruction + KL loss); a new image decodes a sample of the
  posterior q(z | x) of a random training crop x, i.e. a variation near a real face.
- ``dae``: a denoising autoencoder (trained to undo Gaussian pixel noise); a new image decodes a
  point between the latent codes of two random noisy training crops (at most half-way, so it stays
  nearer one of them).

``maskclf train --extra-train DIR`` (``data.extra_train``) adds DIR to the training split. DIR is
written to a temporary folder and renamed at the end, so an interruption leaves no half-written DIR.
Seed report 001 found this kind of augmentation did not help; ``bench/synth.py`` measures it here.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from maskclf.files import MaskclfError, write_json

METHODS = ("vae", "dae")
SHEET_COLUMNS = 8


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the training crops

def training_crops(source: str | os.PathLike, overrides: list[str] | None = None,
                   progress: bool = False) -> tuple[list[str], dict[str, list[str]], str]:
    """The training split's image files per class.

    Args:
        source: a run directory (its ``split.csv`` train rows, extra images of that run left out) or a
            dataset root (read and split as ``maskclf train`` does with the same data settings).
        overrides: ``key=value`` data settings for a dataset root (e.g. ``data.class_map=...``).
        progress: print progress of the dataset scan.

    Returns:
        (class names in model order, {class: [paths]}, "run" or "dataset").
    """
    from maskclf import config as C
    from maskclf.data import datasets, splitting
    from maskclf.files import read_labels

    src = Path(source).expanduser()
    if (src / "split.csv").is_file():
        if overrides:
            raise MaskclfError(f"{src} is a run directory: its data settings are fixed; key=value overrides "
                               "apply only to a dataset path")
        names = read_labels(src / "labels.txt")
        rows = [r for r in splitting.read_split_csv(src / "split.csv")
                if r["split"] == "train" and not r["group"].startswith(datasets.EXTRA_GROUP)]
        if any(not os.path.exists(r["path"]) for r in rows):
            # VOC crops live in the user cache; rebuilding gives the same paths (content-keyed).
            datasets.load_dataset(C.load_config(src / "config.yaml").data, progress=progress)
            missing = [r["path"] for r in rows if not os.path.exists(r["path"])]
            if missing:
                raise MaskclfError(f"{missing[0]}: image of {src}/split.csv not found ({len(missing)} missing); "
                                   "restore the dataset the run was trained on")
        by_class = {n: [r["path"] for r in rows if r["label"] == n] for n in names}
        return names, by_class, "run"
    if not src.exists():
        raise MaskclfError(f"{src}: not found; give a run directory (with split.csv) or a dataset folder")
    cfg = C.apply_overrides(C.Config(), {"data.path": str(source)})
    if overrides:
        cfg = C.apply_overrides(cfg, overrides)
    ds = datasets.load_dataset(cfg.data, progress=progress)
    splits = splitting.assign_splits(ds, cfg.data)
    by_class = {n: [p for p, y, s in zip(ds.paths, ds.labels, splits) if y == k and s == "train"]
                for k, n in enumerate(ds.class_names)}
    return list(ds.class_names), by_class, "dataset"


def choose_classes(by_class: dict[str, list[str]], classes: list[str] | None) -> list[str]:
    """The asked classes (checked), or the rarest class of the training split."""
    names = list(by_class)
    if classes:
        unknown = [c for c in classes if c not in by_class]
        if unknown:
            raise MaskclfError(f"--classes: {', '.join(unknown)} not a class of the source; classes: {', '.join(names)}")
        chosen = list(dict.fromkeys(classes))
    else:
        chosen = [min(names, key=lambda n: (len(by_class[n]), n))]
    for c in chosen:
        if len(by_class[c]) < 2:
            raise MaskclfError(f"class {c!r} has {len(by_class[c])} training image(s); an autoencoder needs at least 2")
    return chosen


# ----------------------------------------------------------------------------- the autoencoders

def build_autoencoder(method: str, image_size: int, latent_dim: int = 32):
    """(encoder, decoder) Keras models for images in [0, 1].

    The encoder is three stride-2 convolutions (ReLU) and a dense layer: one output ``z`` for
    ``dae``, two (``z_mean``, ``z_log_var``) for ``vae``. The decoder mirrors it with transposed
    convolutions and a sigmoid. No batch-norm: a rare class gives a few hundred steps, too few for its
    moving statistics to settle, and the decoder is used in inference mode to generate.
    """
    import keras
    from keras import layers

    if method not in METHODS:
        raise MaskclfError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if image_size < 16 or image_size % 8:
        raise MaskclfError(f"--image-size {image_size}: the autoencoder needs a multiple of 8, at least 16")
    x_in = keras.Input((image_size, image_size, 3), name="image")
    h = x_in
    for i, f in enumerate((32, 64, 128), 1):
        h = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc_conv{i}")(h)
    h = layers.Flatten()(h)
    if method == "vae":
        outs = [layers.Dense(latent_dim, name="z_mean")(h), layers.Dense(latent_dim, name="z_log_var")(h)]
    else:
        outs = [layers.Dense(latent_dim, name="z")(h)]
    encoder = keras.Model(x_in, outs, name=f"{method}_encoder")
    s = image_size // 8
    z_in = keras.Input((latent_dim,), name="z")
    g = layers.Dense(s * s * 128, activation="relu", name="dec_dense")(z_in)
    g = layers.Reshape((s, s, 128))(g)
    for i, f in enumerate((64, 32), 1):
        g = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec_deconv{i}")(g)
    out = layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid", name="dec_out")(g)
    decoder = keras.Model(z_in, out, name=f"{method}_decoder")
    return encoder, decoder


def train_autoencoder(method: str, x: np.ndarray, epochs: int, seed: int = 0, latent_dim: int = 32,
                      batch_size: int = 16, noise: float = 0.1, learning_rate: float = 1e-3,
                      progress: bool = False, label: str = "") -> tuple:
    """Train an autoencoder on ``x`` (float32 in [0, 1], N x S x S x 3).

    A tenth of the images (when there are at least 10) is held out to measure reconstruction on
    images the autoencoder did not train on. The VAE's KL term is warmed up linearly over the first
    third of the epochs, so the decoder learns to use the code before the prior pulls it in.

    Returns:
        (encoder, decoder, rows): one row per epoch with ``reconstruction`` and ``val_reconstruction``
        (mean binary cross-entropy per pixel) and ``kl`` (per image; 0 for ``dae``).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = len(x) // 10 if len(x) >= 10 else 0
    x_val, x_fit = x[order[:n_val]], x[order[n_val:]]
    encoder, decoder = build_autoencoder(method, x.shape[1], latent_dim)
    opt = keras.optimizers.Adam(learning_rate)
    pixels = float(np.prod(x.shape[1:]))
    variables = encoder.trainable_variables + decoder.trainable_variables
    vae = method == "vae"
    beta = tf.Variable(0.0, trainable=False, dtype=tf.float32)
    warmup = max(1, epochs // 3)

    def bce_sum(a, b):  # per image, summed over pixels
        b = tf.clip_by_value(b, 1e-6, 1 - 1e-6)
        return -tf.reduce_sum(a * tf.math.log(b) + (1 - a) * tf.math.log(1 - b), axis=[1, 2, 3])

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            if vae:
                mu, log_var = encoder(xb, training=True)
                z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
                kl = -0.5 * tf.reduce_sum(1 + log_var - tf.square(mu) - tf.exp(log_var), axis=1)
            else:
                noisy = tf.clip_by_value(xb + noise * tf.random.normal(tf.shape(xb)), 0.0, 1.0)
                z = encoder(noisy, training=True)
                kl = tf.zeros(tf.shape(xb)[:1])
            rec = bce_sum(xb, decoder(z, training=True))
            loss = tf.reduce_mean(rec + beta * kl)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.reduce_sum(rec), tf.reduce_sum(kl)

    @tf.function
    def reconstruct_loss(xb):
        z = encoder(xb, training=False)
        z = z[0] if vae else z
        return tf.reduce_sum(bce_sum(xb, decoder(z, training=False)))

    rows = []
    for epoch in range(epochs):
        beta.assign(min(1.0, (epoch + 1) / warmup))
        perm = rng.permutation(len(x_fit))
        rec_sum = kl_sum = 0.0
        for i in range(0, len(x_fit), batch_size):
            r, k = step(tf.constant(x_fit[perm[i:i + batch_size]]))
            rec_sum += float(r)
            kl_sum += float(k)
        row = {"epoch": epoch, "reconstruction": rec_sum / len(x_fit) / pixels, "kl": kl_sum / len(x_fit),
               "val_reconstruction": None}
        if n_val:
            row["val_reconstruction"] = float(reconstruct_loss(tf.constant(x_val))) / n_val / pixels
        rows.append(row)
        if progress and (epoch + 1 == epochs or (epoch + 1) % max(1, epochs // 5) == 0):
            val = "" if row["val_reconstruction"] is None else f", held-out {row['val_reconstruction']:.4f}"
            _log(f"  {label} epoch {epoch + 1}/{epochs}: reconstruction {row['reconstruction']:.4f}{val}"
                 + (f", KL {row['kl']:.2f}" if vae else ""), progress)
    return encoder, decoder, rows


def generate(method: str, encoder, decoder, x: np.ndarray, n: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """``n`` new uint8 images from training crops ``x`` (float32 in [0, 1]); see the module docstring."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for start in range(0, n, 64):
        m = min(64, n - start)
        a = x[rng.integers(0, len(x), m)]
        if method == "vae":
            mu, log_var = (np.asarray(t) for t in encoder(a, training=False))
            z = mu + np.exp(0.5 * log_var) * rng.standard_normal(mu.shape).astype(np.float32)
        else:
            b = x[rng.integers(0, len(x), m)]

            def code(imgs):
                noisy = np.clip(imgs + noise * rng.standard_normal(imgs.shape), 0, 1).astype(np.float32)
                return np.asarray(encoder(noisy, training=False))

            t = rng.uniform(0.0, 0.5, (m, 1)).astype(np.float32)
            z = (1 - t) * code(a) + t * code(b)
        out.append(np.asarray(decoder(z.astype(np.float32), training=False)))
    return np.clip(np.concatenate(out) * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- figures and tables

def _contact_sheet(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], method: str, path: Path) -> None:
    """Per class two rows: real training crops, then generated images."""
    import maskclf.reports.plots  # noqa: F401  selects the headless Agg backend
    import matplotlib.pyplot as plt

    rows = [r for c in real for r in ((f"real\n{c}", real[c]), (f"{method}\n{c}", fake[c]))]
    cols = SHEET_COLUMNS
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols + 1.2, 1.4 * len(rows)), squeeze=False)
    for r, (title, pics) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(pics):
                ax.imshow(pics[c])
        axes[r, 0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle("training crops (real) vs generated", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _loss_plot(curves: dict[str, list[dict]], method: str, path: Path) -> None:
    import maskclf.reports.plots  # noqa: F401  selects the headless Agg backend
    import matplotlib.pyplot as plt

    vae = method == "vae"
    fig, axes = plt.subplots(1, 2 if vae else 1, figsize=(10 if vae else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    for c, rows in curves.items():
        ep = [r["epoch"] + 1 for r in rows]
        line, = ax.plot(ep, [r["reconstruction"] for r in rows], label=f"{c} train")
        if rows and rows[0]["val_reconstruction"] is not None:
            ax.plot(ep, [r["val_reconstruction"] for r in rows], "--", color=line.get_color(), label=f"{c} held-out")
    ax.set(xlabel="epoch", ylabel="BCE per pixel", title=f"{method.upper()} reconstruction loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if vae:
        ax = axes[0, 1]
        for c, rows in curves.items():
            ax.plot([r["epoch"] + 1 for r in rows], [r["kl"] for r in rows], label=c)
        ax.set(xlabel="epoch", ylabel="KL per image", title="KL divergence")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_loss_csv(curves: dict[str, list[dict]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class", "epoch", "reconstruction", "val_reconstruction", "kl"])
        for c, rows in curves.items():
            for r in rows:
                val = "" if r["val_reconstruction"] is None else f"{r['val_reconstruction']:.6f}"
                w.writerow([c, r["epoch"], f"{r['reconstruction']:.6f}", val, f"{r['kl']:.4f}"])


# ----------------------------------------------------------------------------- the command

def _check_out(out: Path) -> None:
    """Refuse to replace a folder that ``synth`` did not make (it would be deleted)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "synth.json").is_file())):
        raise MaskclfError(f"{out}: exists and is not a `maskclf synth` folder; choose another --out")


def synthesize(source: str | os.PathLike, out: str | os.PathLike, method: str = "vae", per_class: int = 100,
               classes: list[str] | None = None, epochs: int = 200, image_size: int = 64, seed: int = 0,
               latent_dim: int = 32, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Train an autoencoder per class on training crops and write generated images as a class-folder dataset.

    Args:
        source: a run directory or a dataset root (see :func:`training_crops`).
        out: the folder to write (``DIR/<class>/*.png``, ``contact_sheet.png``, ``loss.png``,
            ``loss.csv``, ``synth.json``); a previous ``synth`` output there is replaced.
        method: ``vae`` or ``dae``.
        per_class: images generated per class.
        classes: class names (default: the rarest class of the training split).
        epochs: autoencoder training epochs.
        image_size: side of the generated squares (a multiple of 8).
        seed: seeds the autoencoders and the sampling.
        latent_dim: size of the latent code.
        overrides: ``key=value`` data settings when ``source`` is a dataset root.
        progress: print progress to stderr.

    Returns:
        The written folder.
    """
    from PIL import Image

    from maskclf.data import images

    if method not in METHODS:
        raise MaskclfError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if per_class < 1 or epochs < 1:
        raise MaskclfError("--per-class and --epochs must be at least 1")
    if image_size < 16 or image_size % 8:
        raise MaskclfError(f"--image-size {image_size}: the autoencoder needs a multiple of 8, at least 16")
    out = Path(out).expanduser()
    _check_out(out)
    names, by_class, kind = training_crops(source, overrides, progress)
    chosen = choose_classes(by_class, classes)
    _log("training crops: " + ", ".join(f"{n} {len(by_class[n])}" for n in names)
         + f"; generating {per_class} per class for {', '.join(chosen)} with a {method.upper()}", progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        t0 = time.time()
        curves, real, fake = {}, {}, {}
        for k, c in enumerate(chosen):
            x = np.stack([images.load_array(p, image_size) for p in by_class[c]]).astype(np.float32) / 255.0
            enc, dec, curves[c] = train_autoencoder(method, x, epochs, seed=seed + k, latent_dim=latent_dim,
                                                    progress=progress, label=c)
            gen = generate(method, enc, dec, x, per_class, seed=seed + k)
            (tmp / c).mkdir()
            for i, img in enumerate(gen):
                Image.fromarray(img).save(tmp / c / f"{method}_{i:05d}.png")
            pick = np.random.default_rng(seed).permutation(len(x))[:SHEET_COLUMNS]
            real[c] = (x[pick] * 255).round().astype(np.uint8)
            fake[c] = gen[:SHEET_COLUMNS]
        _contact_sheet(real, fake, method, tmp / "contact_sheet.png")
        _loss_plot(curves, method, tmp / "loss.png")
        _write_loss_csv(curves, tmp / "loss.csv")
        write_json(tmp / "synth.json", {
            "method": method, "classes": chosen, "counts": {c: per_class for c in chosen},
            "training_images": {c: len(by_class[c]) for c in chosen}, "epochs": epochs, "seed": seed,
            "image_size": image_size, "latent_dim": latent_dim,
            "source": str(Path(source).expanduser().resolve()), "source_kind": kind,
            "sampling": ("decode z ~ q(z|x) of a random training crop x" if method == "vae" else
                         "decode (1-t) z(a) + t z(b), t in [0, 0.5], codes of two random noisy training crops"),
            "final_reconstruction": {c: rows[-1]["reconstruction"] for c, rows in curves.items()},
            "final_val_reconstruction": {c: rows[-1]["val_reconstruction"] for c, rows in curves.items()},
            "seconds": round(time.time() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _log(f"wrote {sum(per_class for _ in chosen)} images to {out}", progress)
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; a previous ``out`` is moved aside first and deleted after."""
    old = None
    if out.exists():
        _check_out(out)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

