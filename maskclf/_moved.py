"""Import paths from before the stages became subpackages (session 15) keep working, with a warning naming the
new path: ``import maskclf.train`` gives ``maskclf.training.train`` (the same module object), and
``from maskclf.models import create_model`` / ``from maskclf.export import export_run`` still find the
functions that ``maskclf/models.py`` and ``maskclf/export.py`` held. Nothing is imported until a moved name is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "audit": "research.audit", "calibrate": "training.calibrate", "callbacks": "training.callbacks",
    "datasets": "data.datasets", "ensemble": "training.ensemble", "evaluate": "reports.evaluate",
    "experiments": "training.experiments", "explain": "reports.explain", "images": "data.images",
    "losses": "models.losses", "paintmask": "research.paintmask", "pipeline": "data.pipeline",
    "plots": "reports.plots", "relabel": "research.relabel", "report": "reports.report",
    "synth": "research.synth", "tfds_facemask": "data.tfds_facemask", "tflite_metadata": "edge.tflite_metadata",
    "train": "training.train", "tune": "tuning.tune", "voc": "data.voc",
}
# The old flat modules whose names are now packages: their functions live in these modules.
PACKAGE_HOMES = {"models": "registry", "export": "convert"}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module):
        pass  # already executed under its new name


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        head, _, tail = fullname.partition(".")
        if head != "maskclf" or tail not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"maskclf.{MOVED[tail]}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the normal finders: a real module always wins)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def package_getattr(package: str, name: str):
    """``__getattr__`` of ``maskclf.models`` / ``maskclf.export``: a name the old flat module defined."""
    if name.startswith("_") or importlib.util.find_spec(f"maskclf.{package}.{name}") is not None:
        # dunders (inspect, pickle, pytest ask for them) and submodules (`from maskclf.models import losses`,
        # imported next by Python itself): nothing to import here
        raise AttributeError(f"module 'maskclf.{package}' has no attribute {name!r}")
    home = f"maskclf.{package}.{PACKAGE_HOMES[package]}"
    module = importlib.import_module(home)
    if not hasattr(module, name):
        raise AttributeError(f"module 'maskclf.{package}' has no attribute {name!r}")
    _warn(f"maskclf.{package}.{name}", f"{home}.{name}")
    value = getattr(module, name)
    setattr(sys.modules[f"maskclf.{package}"], name, value)  # warned once; later lookups are plain attributes
    return value
