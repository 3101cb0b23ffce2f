"""Train / validation / test: grouped, class-stratified and seeded, and the run's split.csv (no TensorFlow).

    assign_splits(ds, cfg)  -> the source's own splits where given, else grouped random ones
    grouped_split(...)      -> 20 class-stratified folds of groups dealt to test, validation and train
    write_split_csv / read_split_csv -> split.csv of a run (path,label,group,split,source[,dataset])

A group (a photo's faces, or near-duplicate images) never sits on two sides of a split.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np

from maskclf.config import DataConfig
from maskclf.data.datasets import LabeledImages, Problem
from maskclf.files import MaskclfError, atomic_path


def grouped_split(labels: list[int], groups: list[str], val_fraction: float, test_fraction: float,
                  seed: int) -> list[str]:
    """Assign train/validation/test by group, stratified by class, seeded.

    Groups are dealt into 20 class-stratified folds of about 5 % each (sklearn's
    StratifiedGroupKFold); the first folds go to test, the next to validation.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(labels)
    out = ["train"] * n
    n_groups = len(set(groups))
    # StratifiedGroupKFold needs at least as many members of some class as folds.
    k = min(20, n_groups, max(Counter(labels).values()) if labels else 0)
    n_test = int(round(test_fraction * k)) if test_fraction > 0 else 0
    n_val = int(round(val_fraction * k)) if val_fraction > 0 else 0
    if test_fraction > 0:
        n_test = max(1, n_test)
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_test + n_val >= k:
        raise MaskclfError(f"only {n_groups} image groups: too few to split into train, validation and test; "
                           "add images or set data.val_fraction/test_fraction to 0")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class" warnings for tiny classes
        folds = [test for _, test in sgkf.split(np.zeros(n), labels, groups)]
    for f, idx in enumerate(folds):
        side = "test" if f < n_test else "validation" if f < n_test + n_val else "train"
        for i in idx:
            out[i] = side
    return out


def drop_leaked(ds: LabeledImages, splits: list[str], kind: str, what: str) -> int:
    """Mark validation/test images whose group also has a training image as ``"drop"`` (in place),
    so no group sits on two sides; one problem of ``kind`` is reported in ``ds.problems``. Returns the count."""
    train_groups = {g for g, s in zip(ds.groups, splits) if s == "train"}
    leaked = [i for i, (g, s) in enumerate(zip(ds.groups, splits))
              if s in ("validation", "test") and g in train_groups]
    for i in leaked:
        splits[i] = "drop"
    if leaked:
        ds.problems.append(Problem(kind, ds.paths[leaked[0]],
                                   f"{len(leaked)} validation/test images duplicate {what} "
                                   f"(first: {ds.paths[leaked[0]]}); dropped from evaluation"))
    return len(leaked)


def assign_splits(ds: LabeledImages, cfg: DataConfig) -> list[str]:
    """Train/validation/test per image: the source's own splits where given, else grouped random.

    With given splits, copies of a training image found in validation/test are dropped
    from those splits (reported), so no group sits on two sides.
    """
    if not any(ds.given_splits):
        return grouped_split(ds.labels, ds.groups, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    splits = list(ds.given_splits)
    drop_leaked(ds, splits, "duplicate across splits", "a training image")
    for side, frac in (("validation", cfg.val_fraction), ("test", cfg.test_fraction)):
        if side in splits or frac <= 0:
            continue
        idx = [i for i, s in enumerate(splits) if s == "train"]
        share = frac / max(1e-9, 1.0 - sum(f for s2, f in (("validation", cfg.val_fraction),
                                                             ("test", cfg.test_fraction)) if s2 not in splits))
        sub = grouped_split([ds.labels[i] for i in idx], [ds.groups[i] for i in idx], share, 0.0, cfg.split_seed)
        for i, s in zip(idx, sub):
            if s == "validation":
                splits[i] = side
    return splits


def write_split_csv(path: str | os.PathLike, ds: LabeledImages, splits: list[str]) -> Path:
    """Write ``split.csv`` (path,label,group,split,source[,dataset]), atomically; ``dataset`` (the source
    name of each image) when the images carry origins."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "group", "split", "source"] + (["dataset"] if ds.origins else []))
            for i, (p, y, g, s, src) in enumerate(zip(ds.paths, ds.labels, ds.groups, splits, ds.sources)):
                if s != "drop":
                    w.writerow([p, ds.class_names[y], g, s, src] + ([ds.origins[i]] if ds.origins else []))
    return Path(path)


def read_split_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a run's split.csv as dicts."""
    p = Path(path)
    if not p.is_file():
        raise MaskclfError(f"{p}: split.csv not found; is this a run directory made by `maskclf train`?")
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "label", "group", "split"} <= set(rows[0]):
        raise MaskclfError(f"{p}: expected columns path,label,group,split")
    return rows
