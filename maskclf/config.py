"""Typed, frozen configuration: data, augmentation, model, training.

A config is read from YAML (sections ``data``, ``augment``, ``model``, ``train``) and refined by
``key=value`` overrides (``train.epochs=5``, or ``epochs=5`` when the name is unique). Unknown keys
and wrong types are errors that list what is valid. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from maskclf.config_checks import VALID_OPTIMIZERS, check_values, coerce  # noqa: F401
from maskclf.files import MaskclfError, read_yaml, write_text


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they become labelled face crops.

    Attributes:
        path: dataset root (class folders, split folders, or Pascal VOC images/ + annotations/).
        layout: ``auto`` (detect), ``folders``, ``splits`` or ``voc``.
        image_size: side of the square model input in pixels.
        crop_margin: VOC crops: fraction of the face's longer side added on each side.
        min_face_size: VOC crops: faces whose shorter side is below this many pixels are skipped.
        class_map: rename classes (``{old: new}``); map to ``null``/``""`` to drop a class.
        classes: keep only these classes (after ``class_map``); empty keeps all.
        val_fraction: share of groups for validation when the source has no validation split.
        test_fraction: share of groups for test when the source has no test split.
        dedupe_distance: images whose perceptual hashes differ in at most this many bits
            (of 64) are one duplicate group; -1 turns near-duplicate grouping off.
        split_seed: seed of the grouped, stratified split.
        extra_train: a class-folder dataset (e.g. made by ``maskclf synth``) added to the training
            split only; its class names must be classes of the dataset. Empty for none.
        paint_train: 0 (default) for none; else the share (up to 1) of the training split's
            ``without_mask`` faces that also join it as ``mask_weared_incorrect`` copies with a mask
            painted below the nose or on the chin (``maskclf.research.paintmask``; needs OpenCV). Only training
            faces are painted, so validation and test stay real photos.
        detector_train: also train on a YuNet-framed copy of each training-split VOC face (the box
            ``maskclf detect`` would crop on a device; :mod:`maskclf.research.detector_crops`; needs OpenCV).
        sources: more dataset roots trained and tested together with ``path`` (``--data A --data B``):
            each a path, or a mapping ``{path, class_map, layout, name}`` (``class_map`` and ``layout``
            default to this section's). Classes are matched by name after mapping; a class the first
            source (or ``classes``) lacks is an error naming the source. Every image keeps its source
            name, so metrics are also reported per source (:mod:`maskclf.data.sources`).
    """

    path: str = "data/sample"
    layout: str = "auto"
    image_size: int = 35  # the default model's (maskclf_cnn); `--model X` alone switches to X's size
    crop_margin: float = 0.15
    min_face_size: int = 8
    class_map: dict = field(default_factory=dict)
    classes: tuple = ()
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    dedupe_distance: int = 4
    split_seed: int = 0
    extra_train: str = ""
    paint_train: float = 0.0
    detector_train: bool = False
    sources: tuple = ()


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation, knobs named as in Keras' old ImageDataGenerator.

    Attributes:
        rotation_range: degrees, random rotation in [-r, r].
        width_shift_range: fraction of width, random horizontal shift.
        height_shift_range: fraction of height, random vertical shift.
        shear_range: shear intensity as a fraction (0.2 = up to 20 % shear).
        zoom_range: random zoom in [1 - z, 1 + z].
        horizontal_flip: random left-right flip (faces are symmetric enough).
        vertical_flip: random up-down flip (off for faces).
        brightness_range: multiplicative brightness range ``[lo, hi]``, or empty for none.
        contrast_range: random contrast factor in [1 - c, 1 + c]; 0 for none.
        saturation_range: multiplicative colour saturation range ``[lo, hi]`` per image, or empty for none.
        hue_range: random hue shift in [-h, h] of the colour circle per image (0.05 = +-18 degrees); 0 for none.
        grayscale_probability: share of training images turned to grey (colour kept in 3 channels); 0 for none.
            The three colour knobs make a model lean less on the colours of one photo set's masks and cameras.
        fill_mode: how pixels outside the image are filled: reflect, wrap, nearest, constant.
        resolution_range: resolution augmentation ``[lo, hi]``: an image is shrunk to a random
            fraction in [lo, hi] of its side and resized back, so sharp large faces and blurred
            20-pixel faces look alike to the model; empty for none.
        resolution_probability: share of training images that get the resolution augmentation.
        jpeg_quality_range: JPEG re-compression at a random quality in ``[lo, hi]`` (1..100),
            applied with ``resolution_probability``; empty for none.
        mixup_alpha: mixup (Zhang et al. 2018): a training image becomes ``lam * a + (1 - lam) * b`` of two
            images of the batch, its label the same mix, ``lam ~ Beta(alpha, alpha)``; 0 for none.
        cutmix_alpha: CutMix (Yun et al. 2019): a box of image b pasted into image a, labels mixed by area,
            ``lam ~ Beta(alpha, alpha)``; 0 for none. With both on, each mixed image gets one of the two.
        mix_probability: share of training images that are mixed (mixup/CutMix); the rest stay whole.
    """

    rotation_range: float = 15.0
    width_shift_range: float = 0.1
    height_shift_range: float = 0.1
    shear_range: float = 0.0
    zoom_range: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = False
    brightness_range: tuple = (0.8, 1.2)
    contrast_range: float = 0.0
    saturation_range: tuple = ()
    hue_range: float = 0.0
    grayscale_probability: float = 0.0
    fill_mode: str = "reflect"
    resolution_range: tuple = ()
    resolution_probability: float = 0.5
    jpeg_quality_range: tuple = ()
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_probability: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    """Which model family to build and its options.

    Attributes:
        name: a registry name (``maskclf.models.registry.available_models()``). ``maskclf train`` and ``cv``
            without ``--model`` train ``registry.DEFAULT_ENSEMBLE`` (this name's CNN + EfficientNet-Lite0, one
            member per family, averaged); as one network the default is ``maskclf_cnn`` (35 px:
            seed report 004's CNN with two convolutions per block), the best recipe under photo-grouped
            cross-validation, 0.27 ms per face as int8 on one core (docs/BENCHMARKS.md, sections 2 and 6);
            ``seed004_cnn`` (one convolution per block, the earlier default) is 3x cheaper (0.09 ms).
        weights: ``imagenet`` for pretrained backbones (downloaded by Keras), or null.
        options: builder options (e.g. small_cnn ``filters``, ``blocks``, ``dropout``); set them
            with ``model.<option>=value``.
        init_from: where the weights start. ``bundled`` (default): the start maskclf ships for the model,
            if any (maskclf_cnn and seed004_cnn: trained on chandrikadeb7's faces plus copies with masks
            painted on, worn and worn wrongly, maskclf/weights/README.md; for seed004_cnn +2.1 points of
            validation balanced accuracy over a random start under cross-validation, BENCHMARKS section 6);
            other models start at random. ``none``: random. Or a ``.keras`` file or run directory:
            layers with the same name and shapes, behind the same copied layers, take its weights (a
            different class count leaves the classifier fresh): fine-tune an earlier run on new photos, or
            pretrain on a larger set.
    """

    # The cross-validated winner (docs/BENCHMARKS.md section 6): seed report 004's CNN at 35 px with two
    # convolutions per block (seed004_cnn, one per block, was the earlier default).
    name: str = "maskclf_cnn"
    weights: typing.Optional[str] = None
    options: dict = field(default_factory=dict)
    init_from: str = "bundled"


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: maximum epochs (early stopping usually ends sooner).
        batch_size: images per step.
        optimizer: adam, adamw, sgd, rmsprop, adadelta, adagrad, nadam.
        learning_rate: initial learning rate; unset (``null``, the default): 3e-4 when the model starts from
            trained weights (the bundled start, or ``model.init_from`` naming a file or run), 1e-3 from a
            random start (or ImageNet backbones, whose new head trains from scratch). Fine-tuning the bundled
            start at 3e-4 instead of 1e-3: +0.7 validation points on VOC over two seeds, the same on test, and
            on faces from another photo set 83 instead of 70 (docs/BENCHMARKS.md section 6).
        lr_schedule: ``cosine`` (decay to 0 over ``epochs``, after one warm-up epoch),
            ``plateau`` (divide by 5 when the monitored metric stalls), or ``constant``.
        class_weight: ``auto`` (inverse frequency), ``sqrt`` (its square root), ``none``,
            or a mapping ``{class: weight}``.
        monitor: validation metric for early stopping and the best checkpoint.
        patience: epochs without improvement before early stopping; 0 (the default) trains the whole
            schedule and keeps the best validation epoch. With the cosine schedule the learning rate only
            gets small near the end, and the validation metric (about 20 rare faces) is noisy: early stopping
            cut 2 of 5 cross-validation folds at 16-21 epochs and cost 4 points of balanced accuracy
            (docs/BENCHMARKS.md, section 6).
        fine_tune_epochs: backbones with pretrained weights: epochs of the second phase.
        fine_tune_layers: backbone layers unfrozen (from the top) in the second phase.
        fine_tune_learning_rate: learning rate of the second phase.
        label_smoothing: label smoothing of the cross-entropy.
        focal_gamma: 0 (default) for plain cross-entropy; above 0, focal loss (Lin et al. 2017) with this
            focusing power, which down-weights the easy faces; class weights still balance the classes.
        logit_adjust: 0 (default) for none; above 0, logit-adjusted cross-entropy (Menon et al. 2021) with
            this strength tau (1 = the theory's value): the training labels' log class frequencies, times
            tau, are added to the logits inside the loss, so the trained model's argmax targets balanced
            error without class weights (``class_weight: auto`` is then not applied; ``sqrt`` or a mapping
            still are). Not with focal loss or balanced sampling.
        sampling: ``shuffle`` (each epoch sees every training image once) or ``balanced`` (each batch
            draws the classes equally often, rare images repeated; an epoch has as many steps as with
            ``shuffle``). With ``balanced``, ``class_weight: auto`` is not applied (the sampler already
            balances); ``sqrt`` or a mapping still are. Under cross-validation (docs/BENCHMARKS.md section 6)
            balanced sampling gave +1 point of validation balanced accuracy from a random start, the best
            macro F1, and far fewer sharp faces from other photo sets called "incorrect" (0.72 vs 0.57 on
            chandrikadeb7); with the bundled start it added nothing, so ``shuffle`` stays the default.
        distill_from: empty (default) for none; else a trained run (typically a ``maskclf ensemble``) of the
            same split whose predicted probabilities on the training images become part of the targets
            (knowledge distillation, Hinton et al. 2015, offline): one network learns what several agree on,
            at one network's cost on the device. Under ``maskclf cv`` it may name a cv folder of the same
            folds (fold f learns from that folder's fold f). A teacher that trained on this run's
            validation or test images is refused.
        distill_weight: share of the target that is the teacher's (0 < w <= 1; the rest is the label).
        distill_temperature: the teacher's probabilities are softened as ``p ** (1 / T)`` renormalised
            (the same as dividing its logits by T), so the student also learns which wrong class is likelier.
            The student learns these targets at T = 1, so T > 1 also makes it less confident (measured on VOC:
            ECE 3.6 % at T = 2, 17.8 % at T = 4 against 2.5-2.9 % without distillation); add
            ``train.calibration=temperature`` when the probabilities are thresholded.
        weight_average: 0 (default) for none; else the decay of an exponential moving average of the
            weights (Polyak averaging, e.g. 0.995 = a horizon of ~200 steps): the averaged model is what
            validation, the best checkpoint and the saved model use. It smooths the step-to-step noise that
            makes a small face set's validation metric jump between epochs.
        l2sp: 0 (default) for none; else the strength of L2-SP (Li et al. 2018, "Explicit inductive bias for
            transfer learning"), decoupled as AdamW decouples weight decay: after every step each trainable
            weight moves ``min(1, learning rate * l2sp)`` of the way back to its trained start
            (``model.init_from``), so fine-tuning keeps more of what the start learnt on other photos.
            Needs a trained start. At the default's 3e-4, ``l2sp=30`` pulls back ~1 % per step: measured on
            VOC, 1 point lower on validation and test than without, 2.7 points higher on held-out photos of
            another set (docs/BENCHMARKS.md section 6, session 11); off by default.
        sam_rho: 0 (default) for none; else the radius of sharpness-aware minimisation (SAM, Foret et al.
            2021): each step takes the gradient at the weights moved ``sam_rho`` (in L2 norm) uphill along the
            batch's gradient, which seeks flat minima and resists memorising noisy labels; 0.05 is the paper's
            value. Costs a second forward and backward pass per step (about 2x the training time). Measured
            on VOC (docs/BENCHMARKS.md section 6, sessions 12-13): 0.05 gives 90.8 validation / 89.3 test and ECE
            2.2-2.7 over three seeds, against the default's 90.8 / 88.5 / ~4 over three (level on validation, every
            SAM seed above every default seed on test, better calibrated, 1.7 points lower on another photo set);
            0.15 is worse; off by default.
        calibration: after training, fitted on the validation split and folded into the model's
            last layer: ``none``, ``temperature`` (probabilities that mean what they say) or
            ``temperature+bias`` (also per-class logit offsets maximising validation balanced
            accuracy; 3+ classes). See ``maskclf.training.calibrate``.
        seed: seeds Python, NumPy and TensorFlow.
        out: folder that receives run directories.
    """

    epochs: int = 40
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: typing.Optional[float] = None
    lr_schedule: str = "cosine"
    class_weight: typing.Any = "auto"
    monitor: str = "val_balanced_accuracy"
    patience: int = 0
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 20
    fine_tune_learning_rate: float = 1e-5
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    logit_adjust: float = 0.0
    calibration: str = "none"
    sampling: str = "shuffle"
    weight_average: float = 0.0
    l2sp: float = 0.0
    sam_rho: float = 0.0
    distill_from: str = ""
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    seed: int = 0
    out: str = "runs"


@dataclass(frozen=True)
class Config:
    """The whole training configuration, as saved to ``config.yaml`` in each run."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (tuples become lists) for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> str:
        """Short hash of everything that changes the result (not the output folder)."""
        d = self.to_dict()
        d["train"].pop("out", None)
        # Fields added after the first release leave the fingerprint alone at the value that behaves as
        # before they existed, so older runs still resume and are still found by compare/cv; if such a
        # field's default changes later, runs made with the new default get a new fingerprint.
        for (section, key), legacy in LATE_FIELDS.items():
            if d[section].get(key) in (legacy if isinstance(legacy, tuple) else (legacy,)):
                d[section].pop(key, None)
        if d["train"].get("learning_rate") is None:  # the rate it stands for: runs made before it existed match
            d["train"]["learning_rate"] = learning_rate(self)
        shipped = BUNDLED.get(d["model"]["name"])
        if d["model"].get("init_from") == "bundled" and shipped and shipped not in FIRST_BUNDLED:
            d["model"]["init_from"] = f"bundled:{shipped}"  # new shipped weights: new runs, not old ones resumed
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


SCRATCH_LEARNING_RATE, FINE_TUNE_LEARNING_RATE = 1e-3, 3e-4


RANDOM_START = ("", "none", None)  # model.init_from values that mean a random start


def starts_trained(model: ModelConfig) -> bool:
    """Whether ``model.init_from`` gives the model trained weights to start from (by the config alone)."""
    src = model.init_from
    return src not in RANDOM_START and (src != "bundled" or model.name in BUNDLED)


def learning_rate(cfg: "Config", started: bool | None = None) -> float:
    """``train.learning_rate``, or its default for how the model starts (``started``: whether weights were
    actually copied in; None decides by the config alone)."""
    if cfg.train.learning_rate is not None:
        return cfg.train.learning_rate
    started = starts_trained(cfg.model) if started is None else started
    return FINE_TUNE_LEARNING_RATE if started else SCRATCH_LEARNING_RATE


# (section, key) of fields added after the first release -> the value that behaves as before they existed.
# A field whose default changes must keep its legacy value here: runs made with the new default then get
# a new fingerprint (model.init_from: default bundled since session 4; older runs started at random).
LATE_FIELDS = {("data", "extra_train"): "", ("data", "sources"): [], ("data", "paint_train"): 0.0,
               ("data", "detector_train"): False, ("augment", "resolution_range"): [],
               ("augment", "resolution_probability"): 0.5, ("augment", "jpeg_quality_range"): [],
               ("train", "calibration"): "none", ("train", "focal_gamma"): 0.0, ("train", "logit_adjust"): 0.0,
               ("augment", "mixup_alpha"): 0.0, ("augment", "cutmix_alpha"): 0.0, ("augment", "mix_probability"): 1.0,
               ("train", "sampling"): "shuffle", ("train", "weight_average"): 0.0, ("train", "l2sp"): 0.0,
               ("train", "sam_rho"): 0.0, ("augment", "saturation_range"): [], ("augment", "hue_range"): 0.0,
               ("augment", "grayscale_probability"): 0.0,
               ("train", "distill_from"): "", ("train", "distill_weight"): 0.5, ("train", "distill_temperature"): 2.0,
               ("model", "init_from"): ("", "none")}  # a tuple: several spellings of the legacy behaviour


# Starting weights maskclf ships in maskclf/weights (``model.init_from=bundled``), per model name; runs made
# with the first shipped file keep the plain "bundled" fingerprint, later files are named in it.
BUNDLED = {"maskclf_cnn": "maskclf_cnn-35-chd-painted.keras", "seed004_cnn": "seed004_cnn-35-chd-painted.keras"}
FIRST_BUNDLED = {"seed004_cnn-35-chandrikadeb7.keras"}


SECTIONS = {"data": DataConfig, "augment": AugmentConfig, "model": ModelConfig, "train": TrainConfig}


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def from_dict(raw: dict | None, source: str = "config") -> Config:
    """Build a Config from a nested dict, rejecting unknown sections and keys."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise MaskclfError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
    parts = {}
    for sec, value in raw.items():
        if sec not in SECTIONS:
            raise MaskclfError(f"{source}: unknown section {sec!r}; valid sections: {', '.join(SECTIONS)}")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise MaskclfError(f"{source}: section {sec!r} must be a mapping")
        types = _field_types(SECTIONS[sec])
        kw = {}
        for k, v in value.items():
            if k not in types:
                raise MaskclfError(f"{source}: unknown key {sec}.{k}; valid keys: {', '.join(types)}")
            kw[k] = coerce(sec, k, v, types[k])
        parts[sec] = SECTIONS[sec](**kw)
    cfg = Config(**parts)
    check_values(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a YAML config (a run's ``config.yaml`` or a tuner's ``best.yaml``)."""
    raw = read_yaml(path, "config file")
    try:
        return from_dict(raw, source=str(path))
    except MaskclfError as e:  # a wrong value: say which file holds it
        if str(e).startswith(str(path)):
            raise
        raise MaskclfError(f"{path}: {e}") from None


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML atomically."""
    return write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def valid_keys() -> list[str]:
    """Every ``section.key`` accepted by overrides."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


def apply_overrides(cfg: Config, overrides: list[str] | dict) -> Config:
    """Apply ``key=value`` overrides (values parsed as YAML) and return a new Config.

    ``model.<name>`` for a name that is not a ModelConfig field sets a model option
    (checked by the model builder).
    """
    items = overrides.items() if isinstance(overrides, dict) else [_split_kv(o) for o in overrides]
    d = cfg.to_dict()
    for key, value in items:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value != "" else ""
            except yaml.YAMLError:
                pass
        sec, name = _resolve_key(key)
        if sec == "model" and name not in d["model"]:
            d["model"]["options"][name] = value
        else:
            d[sec][name] = value
    return from_dict(d, source="overrides")


def data_overrides(data) -> dict:
    """Overrides for ``--data``: one root (a string), or several (a list: the first becomes ``data.path``,
    the rest ``data.sources``). Giving ``--data`` replaces the config's roots."""
    roots = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(d) for d in data]
    if not roots:
        return {}
    return {"data.path": roots[0], "data.sources": roots[1:]}


def _split_kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise MaskclfError(f"override {text!r}: expected key=value, e.g. train.epochs=5")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _resolve_key(key: str) -> tuple[str, str]:
    if "." in key:
        sec, name = key.split(".", 1)
        if sec == "model" and name.startswith("options."):
            name = name[len("options."):]
        if sec in SECTIONS and (name in _field_types(SECTIONS[sec]) or sec == "model"):
            return sec, name
    else:
        owners = [s for s, cls in SECTIONS.items() if key in _field_types(cls)]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise MaskclfError(f"override key {key!r} is ambiguous; write one of "
                               + ", ".join(f"{s}.{key}" for s in owners))
    raise MaskclfError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())} "
                       "(model options as model.<option>)")


def full_key(key: str) -> str:
    """``section.field`` of an override key (``epochs`` -> ``train.epochs``); unknown keys are an error."""
    return ".".join(_resolve_key(key))


def with_changes(cfg: Config, **sections: dict) -> Config:
    """Copy of ``cfg`` with fields of sections replaced, e.g. ``with_changes(cfg, train={'epochs': 2})``."""
    parts = {s: replace(getattr(cfg, s), **kw) for s, kw in sections.items()}
    return replace(cfg, **parts)
