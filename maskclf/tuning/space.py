"""Search spaces of ``maskclf tune``: a ``tuning/*.yaml`` file -> a validated :class:`SearchSpace`.

    load_space(path) / parse_space(raw) -> SearchSpace (unknown keys, bad kinds, empty ranges name the key)

A space maps config keys (``train.learning_rate``, model options as ``model.<option>``) to a fixed value
or a kind with its range; :mod:`maskclf.tuning.tune` turns each trial's values into config overrides.
No TensorFlow or KerasTuner at import.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from typing import Any

from maskclf.config import SECTIONS, Config, _field_types, apply_overrides, starts_trained
from maskclf.files import MaskclfError, read_yaml

KINDS = ("choice", "int", "float", "boolean", "fixed")
MODIFIERS = {"choice": {"default"}, "int": {"step", "sampling", "default"}, "float": {"step", "sampling", "default"},
             "boolean": {"default"}, "fixed": set()}
SAMPLINGS = ("linear", "log", "reverse_log")
SPACE_KEYS = ("model", "description", "tuner", "objective", "max_trials", "max_epochs", "seed", "hyperparameters")
TUNERS = ("random", "hyperband", "bayesian", "grid")
OBJECTIVES = {"val_balanced_accuracy": "max", "val_macro_f1": "max", "val_accuracy": "max", "val_loss": "min"}
# Set elsewhere: the data by --data, the epochs by --max-epochs, the model family by `model:`.
NOT_IN_SPACE = {"data.path": "give the data with --data", "train.out": "give the folder with --out",
                "train.epochs": "trials train for --max-epochs (or the space's max_epochs)",
                "model.name": "name the model family with the space's top-level `model:`",
                "model.options": "write each option as model.<option>"}
# Read once per search, so only fixed values; fine-tuning is a second phase that only `train` runs.
FIXED_ONLY_PREFIXES = ("data.", "train.fine_tune_", "train.seed")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Param:
    """One entry of a space: a config key and either a fixed value or a KerasTuner kind.

    Attributes:
        key: config key (``section.key``; model options as ``model.<option>``).
        kind: choice, int, float, boolean or fixed.
        values: choice values (lists/dicts/mixed types are offered to KerasTuner as JSON labels).
        low, high: int/float range, both inclusive.
        step: int/float step, or None.
        sampling: linear, log or reverse_log.
        default: the value tried first (KerasTuner's default), or None.
        value: the fixed value.
    """

    key: str
    kind: str
    values: tuple = ()
    low: Any = None
    high: Any = None
    step: Any = None
    sampling: str = "linear"
    default: Any = None
    value: Any = None

    @property
    def encoded(self) -> bool:
        """True when choice values go to KerasTuner as JSON labels (it only takes one scalar type)."""
        kinds = {_scalar_kind(v) for v in self.values}
        return len(kinds) != 1 or None in kinds

    def labels(self) -> list:
        """The values as KerasTuner choices (JSON strings for lists and dicts)."""
        if self.encoded:
            return [json.dumps(v) for v in self.values]
        if {_scalar_kind(v) for v in self.values} == {"float"}:
            return [float(v) for v in self.values]
        return list(self.values)

    def declare(self, hp) -> Any:
        """Register with KerasTuner's ``hp`` (or read the trial's value) and return the config value."""
        if self.kind == "choice":
            labels = self.labels()
            default = None if self.default is None else labels[self.values.index(self.default)]
            return self.decode(hp.Choice(self.key, labels, default=default))
        if self.kind == "int":
            kw = {"step": self.step} if self.step is not None else {}
            return int(hp.Int(self.key, self.low, self.high, sampling=self.sampling, default=self.default, **kw))
        if self.kind == "float":
            return self.decode(hp.Float(self.key, self.low, self.high, step=self.step, sampling=self.sampling,
                                        default=self.default))
        if self.kind == "boolean":
            return bool(hp.Boolean(self.key, default=bool(self.default)))
        return self.value

    def decode(self, label) -> Any:
        """Config value of a KerasTuner value (inverse of ``labels``)."""
        if self.kind == "choice" and self.encoded:
            return json.loads(label) if isinstance(label, str) else label
        if self.kind == "float" and self.step is not None and label is not None:
            return round(float(label), 10)  # 0.30000000000000004 -> 0.3
        return label

    def candidates(self) -> list:
        """Values that must each make a valid config (range ends for int/float)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind in ("int", "float"):
            return [self.low, self.high]
        if self.kind == "boolean":
            return [True, False]
        return [self.value]


@dataclass(frozen=True)
class SearchSpace:
    """A parsed ``tuning/*.yaml`` file.

    Attributes:
        model: registry name of the model family.
        params: the hyperparameters (tuned and fixed) in file order.
        tuner: default tuner (random, hyperband, bayesian, grid).
        objective: default objective (a validation metric).
        max_trials: default trial budget (None: the tuner's own, e.g. Hyperband's schedule).
        max_epochs: default epochs per trial.
        seed: tuner seed.
        description: free text.
        source: where it was read from (for messages).
    """

    model: str
    params: tuple = ()
    tuner: str = "hyperband"
    objective: str = "val_balanced_accuracy"
    max_trials: int | None = None
    max_epochs: int = 20
    seed: int = 0
    description: str = ""
    source: str = "space"

    @property
    def tuned(self) -> list[Param]:
        """The parameters that vary."""
        return [p for p in self.params if p.kind != "fixed"]

    @property
    def fixed(self) -> dict[str, Any]:
        """The fixed config values, by key."""
        return {p.key: p.value for p in self.params if p.kind == "fixed"}

    def overrides(self, values: dict, epochs: int) -> dict:
        """Config overrides of one trial: the model family, fixed values, tuned ``values``, epochs."""
        return {"model.name": self.model, **self.fixed, **values, "train.epochs": int(epochs)}

    def config(self, base: Config, values: dict, epochs: int) -> Config:
        """The complete training Config of a trial."""
        return apply_overrides(base, self.overrides(values, epochs))

    def fingerprint(self) -> str:
        """A short hash of the space, so a resumed search refuses a changed file."""
        d = {"model": self.model, "params": [p.__dict__ for p in self.params]}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _scalar_kind(v) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "float" if isinstance(v, float) else "int"
    if isinstance(v, str):
        return "str"
    return None


def _number(v):
    """YAML 1.1 reads ``1e-4`` as a string; accept it where a number is expected."""
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    return v


def _option_defaults(model: str) -> dict:
    from maskclf.models.registry import get_spec

    spec = get_spec(model)
    params = inspect.signature(spec.builder).parameters
    return {n: params[n].default for n in spec.option_names()}


def _check_option_value(where: str, option: str, default, value) -> None:
    """Cheap type check of a model option against its builder default (bad values fail fast, not per trial)."""
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true/false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (list, tuple, int)) and not isinstance(value, bool)
        want = "a list (or one integer)"
    else:
        return
    if not ok:
        raise MaskclfError(f"{where}: model option {option} expects {want}, got {value!r}")


def _resolve(key, where: str, options: dict) -> tuple[str, str]:
    """Check a space key; returns (section, name)."""
    if not isinstance(key, str) or "." not in key:
        raise MaskclfError(f"{where}: unknown key {key!r}; write section.key (e.g. train.learning_rate, "
                           f"model.dropout) with a section of {', '.join(SECTIONS)}")
    if key in NOT_IN_SPACE:
        raise MaskclfError(f"{where}: key {key} does not belong in a space: {NOT_IN_SPACE[key]}")
    sec, name = key.split(".", 1)
    if sec not in SECTIONS:
        raise MaskclfError(f"{where}: unknown key {key!r}: no section {sec!r}; sections: {', '.join(SECTIONS)}")
    fields = _field_types(SECTIONS[sec])
    if sec == "model":
        if name not in fields and name not in options:
            raise MaskclfError(f"{where}: unknown key {key!r}: not a model option; valid: "
                               + ", ".join(["model.weights"] + [f"model.{o}" for o in options]))
    elif name not in fields:
        raise MaskclfError(f"{where}: unknown key {key!r}; valid keys of {sec}: "
                           + ", ".join(f"{sec}.{f}" for f in fields))
    return sec, name


def _parse_param(key: str, spec, where: str, field_type) -> Param:
    """Turn one ``key: spec`` entry into a Param; errors name the key."""
    is_mapping_field = field_type is dict
    if not isinstance(spec, dict) or (is_mapping_field and not set(spec) & set(KINDS)):
        return Param(key, "fixed", value=spec)
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        unknown = [k for k in spec if k not in KINDS]
        what = f"unknown kind {unknown[0]!r}" if not kinds and unknown else f"several kinds {kinds}"
        raise MaskclfError(f"{where}: {what}; write one of {', '.join(KINDS)} "
                           "(e.g. {choice: [a, b]}, {int: [1, 3]}, {float: [1e-4, 1e-2], sampling: log}) "
                           "or a plain value")
    kind = kinds[0]
    extra = sorted(set(spec) - {kind} - MODIFIERS[kind])
    if extra:
        valid = ", ".join(sorted(MODIFIERS[kind])) or "none"
        raise MaskclfError(f"{where}: unknown field {extra[0]!r} for kind {kind}; valid fields: {valid}")
    arg = spec[kind]
    default = spec.get("default")
    if kind == "fixed":
        return Param(key, "fixed", value=arg)
    if kind == "boolean":
        if arg is not True:
            raise MaskclfError(f"{where}: write {{boolean: true}} to tune true/false (or a plain true/false to fix it)")
        if default is not None and not isinstance(default, bool):
            raise MaskclfError(f"{where}: default must be true or false, got {default!r}")
        return Param(key, "boolean", default=default)
    if kind == "choice":
        if not isinstance(arg, list):
            raise MaskclfError(f"{where}: choice expects a list of values, got {arg!r}")
        if not arg:
            raise MaskclfError(f"{where}: choice list is empty; give at least one value")
        values = [_number(v) for v in arg]
        if {_scalar_kind(v) for v in values} == {"int", "float"}:
            values = [float(v) for v in values]
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise MaskclfError(f"{where}: choice lists a value twice: {arg}")
        if default is not None:
            default = _number(default)
            if default not in values:
                raise MaskclfError(f"{where}: default {default!r} is not one of the choices {values}")
        return Param(key, "choice", values=tuple(values), default=default)
    # int / float ranges
    if not isinstance(arg, list) or len(arg) != 2:
        raise MaskclfError(f"{where}: {kind} expects a range [low, high], got {arg!r}")
    lo, hi = (_number(v) for v in arg)
    step = _number(spec.get("step"))
    sampling = spec.get("sampling", "linear")
    if kind == "int":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
            raise MaskclfError(f"{where}: int range needs two integers, got {arg!r}")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
            raise MaskclfError(f"{where}: int step must be a positive integer, got {spec.get('step')!r}")
    else:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise MaskclfError(f"{where}: float range needs two numbers, got {arg!r}")
        lo, hi = float(lo), float(hi)
        if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0):
            raise MaskclfError(f"{where}: float step must be a positive number, got {spec.get('step')!r}")
        step = None if step is None else float(step)
    if not lo < hi:
        raise MaskclfError(f"{where}: {kind} range [{arg[0]}, {arg[1]}] is empty; need low < high "
                           "(write a plain value to fix it)")
    if sampling not in SAMPLINGS:
        raise MaskclfError(f"{where}: sampling {sampling!r} is not one of {', '.join(SAMPLINGS)}")
    if sampling != "linear" and lo <= 0:
        raise MaskclfError(f"{where}: {sampling} sampling needs a positive range, got [{arg[0]}, {arg[1]}]")
    if default is not None:
        default = _number(default)
        if not isinstance(default, (int, float)) or isinstance(default, bool) or not lo <= default <= hi:
            raise MaskclfError(f"{where}: default {default!r} is outside [{lo}, {hi}]")
    return Param(key, kind, low=lo, high=hi, step=step, sampling=sampling, default=default)


def parse_space(raw, source: str = "space") -> SearchSpace:
    """Validate a space given as a dict (the YAML file's content).

    Raises:
        MaskclfError: unknown keys, bad kinds, empty ranges or values the config rejects,
            each naming the key.
    """
    if not isinstance(raw, dict):
        raise MaskclfError(f"{source}: expected a mapping with keys {', '.join(SPACE_KEYS)}")
    for k in raw:
        if k not in SPACE_KEYS:
            raise MaskclfError(f"{source}: unknown key {k!r}; valid keys: {', '.join(SPACE_KEYS)}")
    from maskclf.models.registry import get_spec

    model = raw.get("model")
    if not isinstance(model, str):
        raise MaskclfError(f"{source}: key 'model' is missing: name the model family, e.g. model: small_cnn")
    try:
        get_spec(model)
    except MaskclfError as e:
        raise MaskclfError(f"{source}: key 'model': {e}") from None
    tuner = raw.get("tuner", "hyperband")
    if tuner not in TUNERS:
        raise MaskclfError(f"{source}: key 'tuner': {tuner!r} is not one of {', '.join(TUNERS)}")
    objective = raw.get("objective", "val_balanced_accuracy")
    if objective not in OBJECTIVES:
        raise MaskclfError(f"{source}: key 'objective': {objective!r} is not one of {', '.join(OBJECTIVES)}")
    for k in ("max_trials", "max_epochs", "seed"):
        v = raw.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "seed" else 1)):
            raise MaskclfError(f"{source}: key {k!r} must be a {'non-negative' if k == 'seed' else 'positive'} "
                               f"integer, got {v!r}")
    hps = raw.get("hyperparameters")
    if not isinstance(hps, dict) or not hps:
        raise MaskclfError(f"{source}: key 'hyperparameters' must map config keys to values or ranges, "
                           "e.g. train.learning_rate: {float: [1.0e-4, 1.0e-2], sampling: log}")
    options = _option_defaults(model)
    params = []
    for key, spec in hps.items():
        where = f"{source}: hyperparameters.{key}"
        sec, name = _resolve(key, where, options)
        ftype = _field_types(SECTIONS[sec]).get(name)
        p = _parse_param(key, spec, where, ftype)
        if p.kind != "fixed" and key.startswith(FIXED_ONLY_PREFIXES) and key != "data.image_size":
            raise MaskclfError(f"{where}: cannot be tuned (the data is read once per search and fine-tuning "
                               "runs only in `train`); give a plain value")
        if sec == "model" and name in options:
            for v in p.candidates():
                _check_option_value(where, name, options[name], v)
        params.append(p)
    space = SearchSpace(model=model, params=tuple(params), tuner=tuner, objective=objective,
                        max_trials=raw.get("max_trials"), max_epochs=raw.get("max_epochs") or 20,
                        seed=raw.get("seed") or 0, description=str(raw.get("description") or ""), source=source)
    _check_against_config(space)
    return space


def _check_against_config(space: SearchSpace, base: Config | None = None) -> None:
    """Every candidate value must make a valid Config (types, allowed names), checked before any trial."""
    from maskclf.research.levers import check_l2sp_start

    with_start = base is not None  # the space alone (no overrides yet) cannot tell how trials start
    base = base or Config()
    first = {p.key: p.candidates()[0] for p in space.tuned}

    def trial(values):
        cfg = space.config(base, values, space.max_epochs)
        if with_start:
            check_l2sp_start(cfg.train.l2sp, starts_trained(cfg.model), "the trials start")

    try:
        trial(first)
    except MaskclfError as e:
        raise MaskclfError(f"{space.source}: the fixed values do not make a valid config: {e}") from None
    for p in space.tuned:
        for v in p.candidates():
            try:
                trial({**first, p.key: v})
            except MaskclfError as e:
                raise MaskclfError(f"{space.source}: hyperparameters.{p.key}: value {v!r} rejected: {e}") from None


def data_of_search(sp: SearchSpace, base: Config) -> tuple[SearchSpace, Config]:
    """The space, and the config the data is read with once: the base with the space's fixed ``data.*`` values
    (they shape every trial's images), less what does not apply to this data, as ``maskclf train --model`` drops it
    (sources.applicable: a fixed ``data.detector_train: true``, the lite0 recipe's, where no root is a VOC photo set)."""
    import dataclasses

    from maskclf.data import sources

    fixed = {k: v for k, v in sp.fixed.items() if k.startswith("data.")}
    kept = sources.applicable(fixed, base.data)
    dropped = fixed.keys() - kept.keys()
    if dropped:
        sp = dataclasses.replace(sp, params=tuple(p for p in sp.params if p.key not in dropped))
    return sp, apply_overrides(base, kept)


def load_space(path) -> SearchSpace:
    """Read and validate a ``tuning/*.yaml`` space."""
    return parse_space(read_yaml(path, "search space file (see tuning/README.md)"), source=str(path))
