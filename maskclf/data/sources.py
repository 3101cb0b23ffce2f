"""Several dataset roots as one labelled set: ``data.path`` plus ``data.sources`` (``--data A --data B``).

    data_sources(DataConfig) -> [Source]          name, path, class map and layout of every root
    load_data(DataConfig)    -> LabeledImages     every image with its source name (``origins``)
    assign_splits(ds, cfg)   -> splits            each source split by its own rules, duplicates kept on one side
    strata(ds)               -> [int]             (source, class) per image, to stratify folds by both
    summarize(ds, splits)    -> str               the data report with a per-source table

A user's camera meets faces from other photographers: training on several sources and reading the
metrics per source (``metrics.json["per_source"]``, ``maskclf cv --by-source``) is how the package
measures that. Classes are matched by name after each source's class map; a class the first source
(or ``data.classes``) does not have is an error naming the source, never a silent new class. Images
that are (near) duplicates across sources join one group, so a split never puts copies on two sides.
No TensorFlow here.
"""

from __future__ import annotations

from collections import Counter
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from maskclf.data import datasets, splitting
from maskclf.config import DataConfig
from maskclf.data.datasets import LabeledImages
from maskclf.files import MaskclfError

LAYOUTS = ("auto", "folders", "splits", "voc")


@dataclass(frozen=True)
class Source:
    """One dataset root of ``data.path`` / ``data.sources``."""

    name: str
    path: str
    class_map: dict
    layout: str


def data_sources(cfg: DataConfig) -> list[Source]:
    """The roots to read: ``cfg.path`` first, then each ``cfg.sources`` entry (names made unique).

    A source's name is its ``name`` key or its folder's name; ``class_map`` and ``layout`` default to
    the data section's own.
    """
    entries = [{"path": cfg.path}] + [s if isinstance(s, dict) else {"path": s} for s in cfg.sources]
    out, seen = [], Counter()
    for i, e in enumerate(entries):
        layout = e.get("layout", cfg.layout)
        if layout not in LAYOUTS:
            raise MaskclfError(f"config key data.sources[{i - 1}].layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
        name = str(e.get("name") or Path(str(e["path"])).expanduser().resolve().name or f"source{i + 1}")
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        out.append(Source(name, str(e["path"]), dict(e.get("class_map", cfg.class_map) or {}), layout))
    return out


def has_voc(cfg: DataConfig) -> bool:
    """Whether any data root is a Pascal VOC photo set: where ``data.detector_train`` has faces to frame (a root
    that cannot be read counts as none: loading it reports why)."""
    from maskclf.data.datasets import detect_layout

    try:
        return any((s.layout if s.layout != "auto" else detect_layout(s.path)) == "voc" for s in data_sources(cfg))
    except MaskclfError:
        return False


def applicable(brought: dict, cfg: DataConfig) -> dict:
    """Config values a recipe or a search space brings, without ``data.detector_train`` where no data root is a VOC
    photo set: it frames VOC photos' faces, and crop folders have nothing to frame (a user's own setting still
    gets the one-line error there)."""
    if brought.get("data.detector_train") and not has_voc(cfg):
        return {k: v for k, v in brought.items() if k != "data.detector_train"}
    return brought


def describe(cfg: DataConfig) -> str:
    """The data as a user gave it: ``A`` or ``A + B + ...``."""
    return " + ".join(s.path for s in data_sources(cfg))


def load_data(cfg: DataConfig, progress: bool = True) -> LabeledImages:
    """Load every source of ``cfg`` (:func:`maskclf.data.datasets.load_dataset` each) and merge them.

    Returns:
        One LabeledImages: classes the sorted union (all of them classes of the first source or of
        ``cfg.classes``), groups prefixed by the source name and merged where images are near duplicates
        across sources, ``origins`` naming each image's source. One source gives its own dataset with
        ``origins`` filled in.

    Raises:
        MaskclfError: a source cannot be read (the message names it), or a source brings a class the
            first source does not have.
    """
    srcs = data_sources(cfg)
    parts = []
    for s in srcs:
        scfg = replace(cfg, path=s.path, layout=s.layout, class_map=s.class_map, sources=())
        try:
            parts.append(datasets.load_dataset(scfg, progress=progress))
        except MaskclfError as e:
            if len(srcs) == 1:
                raise
            raise MaskclfError(f"source {s.name}: {e}") from None
    if len(parts) == 1:
        ds = parts[0]
        ds.origins = [srcs[0].name] * len(ds)
        return ds
    allowed = list(cfg.classes) or parts[0].class_names
    for s, part in zip(srcs[1:], parts[1:]):
        extra = [c for c in part.class_names if c not in allowed]
        if extra:
            raise MaskclfError(
                f"{s.path}: class {extra[0]!r} of source {s.name} is not a class of {srcs[0].name} "
                f"({', '.join(allowed)}); map it in data.sources ({{path: {s.path}, class_map: {{{extra[0]}: "
                f"{allowed[0]}}}}}) or drop it with class_map {extra[0]}: null")
    prints = [datasets.image_fingerprints(p, progress) if cfg.dedupe_distance >= 0 else ([], []) for p in parts]
    names = sorted({c for p in parts for c in p.class_names})
    ds = LabeledImages(" + ".join(p.root for p in parts), "sources", names)
    for s, part in zip(srcs, parts):
        ds.paths += part.paths
        ds.labels += [names.index(part.class_names[y]) for y in part.labels]
        ds.groups += [f"{s.name}:{g}" for g in part.groups]
        ds.given_splits += part.given_splits
        ds.sources += part.sources
        ds.sizes += part.sizes
        ds.origins += [s.name] * len(part)
        ds.problems += part.problems
        for k, v in part.notes.items():
            ds.notes[f"{k} [{s.name}]"] += v
    if cfg.dedupe_distance >= 0:
        _group_across_sources(ds, [h for p in prints for h in p[0]], [t for p in prints for t in p[1]],
                              cfg.dedupe_distance)
    return ds


def _group_across_sources(ds: LabeledImages, hashes: list[int], thumbs: list[bytes], distance: int) -> None:
    """Near-duplicate images of different sources join one group (in place); the count goes to ds.notes."""
    ids = {g: i for i, g in enumerate(dict.fromkeys(ds.groups))}
    names = list(ids)
    sets = datasets.UnionFind(len(ids))
    crossed = 0
    for i, j in datasets.near_duplicate_pairs(hashes, thumbs, distance):
        if ds.origins[i] != ds.origins[j]:
            crossed += 1
            sets.union(ids[ds.groups[i]], ids[ds.groups[j]])
    if crossed:
        ds.groups = [names[sets.find(ids[g])] for g in ds.groups]
        ds.notes["image pairs duplicated across sources (grouped together)"] = crossed


def assign_splits(ds: LabeledImages, cfg: DataConfig) -> list[str]:
    """Train/validation/test per image: each source by its own rules (:func:`maskclf.data.splitting.assign_splits`:
    its split folders, else a grouped, stratified random split), so every source is in every split.

    A group that reaches two sides through duplicates across sources keeps its training images; its
    validation/test copies are dropped (reported in ``ds.problems``).
    """
    origins = list(dict.fromkeys(ds.origins))
    if len(origins) <= 1:
        return splitting.assign_splits(ds, cfg)
    splits = [""] * len(ds)
    for name in origins:
        idx = [i for i, o in enumerate(ds.origins) if o == name]
        sub = ds.subset(idx)
        for i, s in zip(idx, splitting.assign_splits(sub, cfg)):
            splits[i] = s
        ds.problems += sub.problems[len(ds.problems):]
    splitting.drop_leaked(ds, splits, "duplicate across sources", "a training image of another source")
    return splits


def strata(ds: LabeledImages) -> list[int]:
    """A stratum per image for stratified splits: its class, or (source, class) with several sources."""
    if len(set(ds.origins)) <= 1:
        return list(ds.labels)
    keys = {k: i for i, k in enumerate(sorted(set(zip(ds.origins, ds.labels))))}
    return [keys[k] for k in zip(ds.origins, ds.labels)]


def summarize(ds: LabeledImages, splits: list[str] | None = None, max_examples: int = 3) -> str:
    """A human report: layout, counts per class (and split), sizes, groups, problems; with several sources
    also images per source, class and split."""
    text = _report(ds, splits, max_examples)
    origins = list(dict.fromkeys(ds.origins))
    if len(origins) <= 1:
        return text
    sides = [s for s in ("train", "validation", "test") if splits and s in splits]
    lines = ["per source:", f"  {'source':<28}{'class':<24}" + "".join(f"{s:>12}" for s in sides) + f"{'total':>8}"]
    for o in origins:
        idx = [i for i, x in enumerate(ds.origins) if x == o]
        for c in sorted({ds.labels[i] for i in idx}):
            mine = [i for i in idx if ds.labels[i] == c]
            row = [sum(1 for i in mine if splits[i] == s) for s in sides] if sides else []
            lines.append(f"  {o:<28}{ds.class_names[c]:<24}" + "".join(f"{v:>12}" for v in row) + f"{len(mine):>8}")
    return text + "\n" + "\n".join(lines)


def leave_one_out(ds: LabeledImages, held_out: str, val_fraction: float, seed: int) -> tuple[LabeledImages, list[str], int]:
    """A leave-one-source-out fold: ``held_out``'s images are the test split, the other sources train and
    validate (grouped, stratified by source and class).

    The fold's classes are those the training sources have; held-out images of other classes cannot be
    scored and are left out (their count is returned).

    Returns:
        (dataset of the fold, its splits, held-out images left out).
    """
    if held_out not in ds.origins:
        raise MaskclfError(f"no source named {held_out!r}; sources: {', '.join(dict.fromkeys(ds.origins))}")
    train_idx = [i for i, o in enumerate(ds.origins) if o != held_out]
    if not train_idx:
        raise MaskclfError("leave-one-source-out needs at least two sources; give --data A --data B")
    known = sorted({ds.labels[i] for i in train_idx})
    names = [ds.class_names[c] for c in known]
    if len(names) < 2:
        raise MaskclfError(f"without {held_out} the other sources have only the class {names[0]!r}; "
                           "training needs at least two")
    test_idx = [i for i, o in enumerate(ds.origins) if o == held_out and ds.labels[i] in known]
    left_out = sum(1 for o in ds.origins if o == held_out) - len(test_idx)
    fold = ds.subset(train_idx + test_idx, names)
    n = len(train_idx)
    sub = splitting.grouped_split(strata(fold.subset(list(range(n)))), fold.groups[:n], val_fraction, 0.0, seed)
    test_groups = set(fold.groups[n:])
    splits = ["drop" if g in test_groups else s for s, g in zip(sub, fold.groups[:n])] + ["test"] * len(test_idx)
    return fold, splits, left_out


def images_of(data: str | os.PathLike, cfg: DataConfig, class_names: list[str],
              progress: bool = True) -> tuple[list[str], list[int]]:
    """Every image of another dataset root, read with a run's data settings (crop margin, class map), as paths
    and indices into the model's ``class_names`` (matched by name; images of other classes are skipped): what
    ``maskclf evaluate RUN --data PATH`` scores.

    Raises:
        MaskclfError: none of the root's classes is a class of the model.
    """
    dcfg = replace(cfg, path=str(data), layout="auto", val_fraction=0.0, test_fraction=0.0, classes=(), sources=())
    ds = datasets.load_dataset(dcfg, progress=progress)
    keep = [i for i, lab in enumerate(ds.labels) if ds.class_names[lab] in class_names]
    if not keep:
        raise MaskclfError(f"{data}: none of its classes ({', '.join(ds.class_names)}) is a class of the model "
                           f"({', '.join(class_names)})")
    return [ds.paths[i] for i in keep], [class_names.index(ds.class_names[ds.labels[i]]) for i in keep]


def run_split_rows(run_dir: str | os.PathLike, cfg: DataConfig, hint: str, progress: bool = True) -> list[dict]:
    """A run's split.csv rows, the VOC face-crop cache rebuilt first when its images are gone (rebuilding
    gives the same content-keyed paths); ``hint`` ends the error when images are still missing."""
    run = Path(run_dir)
    rows = splitting.read_split_csv(run / "split.csv")
    if any(not os.path.exists(r["path"]) for r in rows):
        if progress:
            print("some images of split.csv are missing; rebuilding the face-crop cache", file=sys.stderr, flush=True)
        load_data(cfg, progress=progress)
        missing = [r["path"] for r in rows if not os.path.exists(r["path"])]
        if missing:
            raise MaskclfError(f"{missing[0]}: image of split.csv not found ({len(missing)} missing); {hint}")
    return rows


def _report(ds: LabeledImages, splits: list[str] | None = None, max_examples: int = 3) -> str:
    """The report of one dataset (or the merged one): layout, counts per class (and split), sizes, groups, problems."""
    lines = [f"dataset: {ds.root}", f"layout:  {ds.layout}", f"images:  {len(ds)} in {len(ds.class_names)} classes"]
    if splits is None and any(ds.given_splits):
        splits = ds.given_splits
    if splits:
        sides = [s for s in ("train", "validation", "test") if s in splits]
        header = f"  {'class':<28}" + "".join(f"{s:>12}" for s in sides) + f"{'total':>8}"
        lines.append(header)
        table = Counter(zip(ds.labels, splits))
        for i, n in enumerate(ds.class_names):
            row = [table.get((i, s), 0) for s in sides]
            lines.append(f"  {n:<28}" + "".join(f"{v:>12}" for v in row) + f"{sum(row):>8}")
    else:
        for n, c in ds.counts().items():
            lines.append(f"  {n:<28}{c:>8}")
    if ds.sizes:
        w = np.array([s[0] for s in ds.sizes])
        h = np.array([s[1] for s in ds.sizes])
        side = np.minimum(w, h)
        lines.append(f"image sizes: width {w.min()}..{w.max()}, height {h.min()}..{h.max()}, "
                     f"shorter side median {int(np.median(side))} px")
    own = [i for i, g in enumerate(ds.groups) if not g.startswith(datasets.EXTRA_GROUP)]  # extras: a note below
    gc = Counter(ds.groups[i] for i in own)
    dup = {g: c for g, c in gc.items() if c > 1}
    if ds.layout == "voc":
        photos = len({ds.sources[i] for i in own})
        merged = photos - len(gc)
        lines.append(f"groups: {len(gc)} photo groups from {photos} photos "
                     f"({merged} photos merged as duplicates of another)")
    elif ds.layout == "sources":
        lines.append(f"groups: {len(gc)} (a photo's faces, and duplicate images, share one; never split)")
    else:
        lines.append(f"duplicate groups: {len(dup)} groups holding {sum(dup.values())} images")
    for k, v in sorted(ds.notes.items()):
        lines.append(f"note: {v} {k}")
    if ds.problems:
        kinds = Counter(p.kind for p in ds.problems)
        lines.append(f"problems: {len(ds.problems)} (skipped)")
        for kind, c in kinds.most_common():
            lines.append(f"  {kind}: {c}")
            for p in [p for p in ds.problems if p.kind == kind][:max_examples]:
                lines.append(f"    {p.message}")
    else:
        lines.append("problems: none")
    return "\n".join(lines)
