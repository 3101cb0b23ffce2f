"""Checking config values: types per field (one-line errors naming the key) and the ranges and combinations
that make sense. :func:`maskclf.config.from_dict` calls both; nothing here knows the dataclasses.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from maskclf.files import MaskclfError

SOURCE_KEYS = {"path", "class_map", "layout", "name"}  # the keys of a data.sources entry
VALID_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta", "adagrad", "nadam")


def coerce(section: str, key: str, value: Any, typ: Any) -> Any:
    """Check/convert ``value`` to the field type; one-line error naming the key otherwise."""
    name = f"{section}.{key}"
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[str]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "")):
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    if typ is typing.Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise MaskclfError(f"config key {name}: expected true/false, got {value!r}")
    if typ is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not math.isfinite(value)) or int(value) != value):
            raise MaskclfError(f"config key {name}: expected an integer, got {value!r}")
        return int(value)
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MaskclfError(f"config key {name}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MaskclfError(f"config key {name}: expected a string, got {value!r}")
        return str(value)
    if typ is tuple:
        if value is None:
            return ()
        if isinstance(value, (str, int, float)):
            value = [v.strip() for v in str(value).split(",") if v.strip()] if isinstance(value, str) else [value]
        if not isinstance(value, (list, tuple)):
            raise MaskclfError(f"config key {name}: expected a list, got {value!r}")
        return tuple(value)
    if typ is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise MaskclfError(f"config key {name}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def check_values(cfg) -> None:
    """Raise a one-line :class:`MaskclfError` naming the key for any value out of its type or range."""
    d, t = cfg.data, cfg.train
    if d.layout not in ("auto", "folders", "splits", "voc"):
        raise MaskclfError(f"config key data.layout: {d.layout!r} is not one of auto, folders, splits, voc")
    if not 8 <= d.image_size <= 1024:
        raise MaskclfError(f"config key data.image_size: {d.image_size} is outside 8..1024")
    if not 0 <= d.val_fraction < 1 or not 0 <= d.test_fraction < 1 or d.val_fraction + d.test_fraction >= 1:
        raise MaskclfError("config keys data.val_fraction/test_fraction: each in [0, 1) and together below 1")
    if not 0 <= d.paint_train <= 1:
        raise MaskclfError(f"config key data.paint_train: {d.paint_train} is outside 0..1 (the share of bare "
                           "training faces to paint)")
    for i, src in enumerate(d.sources):
        if isinstance(src, dict):
            bad = sorted(set(src) - SOURCE_KEYS)
            if bad or not isinstance(src.get("path"), str) or not src["path"]:
                raise MaskclfError(f"config key data.sources[{i}]: expected a path or a mapping with keys "
                                   f"{', '.join(sorted(SOURCE_KEYS))} (path required), got {src!r}")
            if not isinstance(src.get("class_map", {}), dict):
                raise MaskclfError(f"config key data.sources[{i}].class_map: expected a mapping old: new")
        elif not isinstance(src, str) or not src:
            raise MaskclfError(f"config key data.sources[{i}]: expected a path or a mapping, got {src!r}")
    if t.optimizer.lower() not in VALID_OPTIMIZERS:
        raise MaskclfError(f"config key train.optimizer: {t.optimizer!r} is not one of {', '.join(VALID_OPTIMIZERS)}")
    if t.patience < 0:
        raise MaskclfError(f"config key train.patience: {t.patience} is negative; 0 turns early stopping off")
    if not 0 <= t.focal_gamma <= 10 or not 0 <= t.label_smoothing < 1:
        raise MaskclfError("config keys train.focal_gamma (0..10) and train.label_smoothing ([0, 1)) are out of range")
    if not 0 <= t.logit_adjust <= 5:
        raise MaskclfError(f"config key train.logit_adjust: {t.logit_adjust} is outside 0..5 (1 is the usual value)")
    if t.logit_adjust and (t.focal_gamma or t.sampling == "balanced"):
        raise MaskclfError("config key train.logit_adjust cannot be combined with train.focal_gamma or "
                           "train.sampling=balanced (each already balances the classes); set one of them")
    if t.epochs < 1 or t.batch_size < 1:
        raise MaskclfError("config keys train.epochs and train.batch_size must be at least 1")
    if t.learning_rate is not None and not t.learning_rate > 0:
        raise MaskclfError("config key train.learning_rate must be positive")
    if t.lr_schedule not in ("cosine", "plateau", "constant"):
        raise MaskclfError(f"config key train.lr_schedule: {t.lr_schedule!r} is not cosine, plateau or constant")
    if t.calibration not in ("none", "temperature", "temperature+bias"):
        raise MaskclfError(f"config key train.calibration: {t.calibration!r} is not none, temperature or "
                           "temperature+bias")
    cw = t.class_weight
    if not (isinstance(cw, dict) or (isinstance(cw, str) and cw in ("auto", "sqrt", "none"))):
        raise MaskclfError(f"config key train.class_weight: {cw!r} is not auto, sqrt, none or a mapping class: weight")
    b = cfg.augment.brightness_range
    if b and (len(b) != 2 or not all(isinstance(x, (int, float)) for x in b) or not 0 < b[0] <= b[1]):
        raise MaskclfError(f"config key augment.brightness_range: expected [lo, hi] with 0 < lo <= hi, got {list(b)}")
    sat = cfg.augment.saturation_range
    if sat and (len(sat) != 2 or not all(isinstance(x, (int, float)) for x in sat) or not 0 <= sat[0] <= sat[1]):
        raise MaskclfError(f"config key augment.saturation_range: expected [lo, hi] with 0 <= lo <= hi, got {list(sat)}")
    if not (0 <= cfg.augment.hue_range <= 0.5 and 0 <= cfg.augment.grayscale_probability <= 1):
        raise MaskclfError("config keys augment.hue_range ([0, 0.5] of the colour circle) and "
                           "augment.grayscale_probability ([0, 1]) are out of range")
    r = cfg.augment.resolution_range
    if r and (len(r) != 2 or not all(isinstance(x, (int, float)) for x in r) or not 0 < r[0] <= r[1] <= 1):
        raise MaskclfError(f"config key augment.resolution_range: expected [lo, hi] with 0 < lo <= hi <= 1, got {list(r)}")
    q = cfg.augment.jpeg_quality_range
    if q and (len(q) != 2 or not all(isinstance(x, int) for x in q) or not 1 <= q[0] <= q[1] <= 100):
        raise MaskclfError(f"config key augment.jpeg_quality_range: expected integers [lo, hi] in 1..100, got {list(q)}")
    if not 0 <= cfg.augment.resolution_probability <= 1:
        raise MaskclfError("config key augment.resolution_probability must be in [0, 1]")
    a = cfg.augment
    if not (0 <= a.mixup_alpha <= 10 and 0 <= a.cutmix_alpha <= 10 and 0 <= a.mix_probability <= 1):
        raise MaskclfError("config keys augment.mixup_alpha and augment.cutmix_alpha (0..10, 0 = off) and "
                           "augment.mix_probability ([0, 1]) are out of range")
    if not 0 <= t.weight_average < 1:
        raise MaskclfError(f"config key train.weight_average: {t.weight_average} is not in [0, 1) (0 = off)")
    if not 0 <= t.l2sp < float("inf"):
        raise MaskclfError(f"config key train.l2sp: {t.l2sp} must be a number >= 0 (0 = off)")
    if not 0 <= t.sam_rho <= 10:
        raise MaskclfError(f"config key train.sam_rho: {t.sam_rho} is not in [0, 10] (0 = off; 0.05 is usual)")
    if not (0 < t.distill_weight <= 1 and 1 <= t.distill_temperature <= 20):
        raise MaskclfError("config keys train.distill_weight (0 < w <= 1) and train.distill_temperature (1..20) are "
                           "out of range")
    if t.distill_from and (t.sampling == "balanced" or a.mixup_alpha or a.cutmix_alpha):
        raise MaskclfError("config key train.distill_from cannot be combined with train.sampling=balanced or "
                           "mixup/CutMix (the teacher's targets belong to whole, unmixed training images)")
    if t.sampling not in ("shuffle", "balanced"):
        raise MaskclfError(f"config key train.sampling: {t.sampling!r} is not shuffle or balanced")
    if cfg.augment.fill_mode not in ("reflect", "wrap", "nearest", "constant"):
        raise MaskclfError(f"config key augment.fill_mode: {cfg.augment.fill_mode!r} is not reflect, wrap, nearest or constant")
