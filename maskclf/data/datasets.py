"""Image sources → labelled samples: class folders, split folders, or Pascal VOC photos cropped to faces.

    load_dataset(DataConfig) -> LabeledImages (paths, labels, groups, given splits, problems)
    (splits: maskclf.data.splitting; several roots at once: maskclf.data.sources)

Every file is opened once here (results are cached per file in the user cache folder, keyed by
path, size and mtime), so problems are found before training: they are listed in one report and the
files are skipped. Duplicates (exact and near, by perceptual hash) share a group, and a group never
sits on two sides of a split. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path


from maskclf.data import images as imgs
from maskclf.config import DataConfig
from maskclf.files import MaskclfError, cache_dir, file_digest
from maskclf.data.index import _duplicate_groups, _Index, _describe, _inspect_files, near_duplicate_pairs, UnionFind  # noqa: F401
from maskclf.data.voc import VocAnnotation, clip_box, find_image, parse_voc

LAYOUTS_HELP = ("expected one of: ROOT/<class>/*.jpg (class folders); "
                "ROOT/{train,validation,test}/<class>/*.jpg (split folders, any case, val also accepted); "
                "ROOT/images/*.jpg + ROOT/annotations/*.xml (Pascal VOC)")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
               "validation": "validation", "test": "test", "testing": "test"}
CROP_VERSION = 1  # bump when the crop code changes, so caches rebuild


@dataclass
class Problem:
    """A file (or class) that was skipped, and why."""

    kind: str
    path: str
    message: str


@dataclass
class LabeledImages:
    """Labelled images found under a dataset root.

    Attributes:
        root: the dataset root.
        layout: folders, splits or voc.
        class_names: sorted class names (the model's output order).
        paths: image files (for VOC: face crops in the crop cache).
        labels: class index per path.
        groups: group per path (photo for VOC crops, duplicate group for folders).
        given_splits: the split named by the source (train/validation/test) or "" per path.
        sources: original photo per path (VOC) or the path itself.
        problems: everything skipped, with reasons.
        notes: counters of filtered-but-valid items (e.g. faces below min size).
        sizes: (width, height) of each image.
        origins: the source (dataset) name per path; empty when loaded by :func:`load_dataset` alone
            (one root), filled by :func:`maskclf.data.sources.load_data`.
    """

    root: str
    layout: str
    class_names: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    given_splits: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Images per class name, in class order."""
        c = Counter(self.labels)
        return {n: c.get(i, 0) for i, n in enumerate(self.class_names)}

    def copy(self) -> "LabeledImages":
        """A copy whose lists can grow without touching this one (``compare`` shares a dataset between models)."""
        return replace(self, paths=list(self.paths), labels=list(self.labels), groups=list(self.groups),
                       given_splits=list(self.given_splits), sources=list(self.sources),
                       problems=list(self.problems), notes=Counter(self.notes), sizes=list(self.sizes),
                       origins=list(self.origins))

    def subset(self, indices: list[int], class_names: list[str] | None = None) -> "LabeledImages":
        """The images at ``indices`` (relabelled to ``class_names``, which must hold their classes)."""
        names = list(class_names or self.class_names)
        new = {i: names.index(n) for i, n in enumerate(self.class_names) if n in names}

        def pick(values: list) -> list:
            return [values[i] for i in indices] if values else []

        return replace(self, class_names=names, paths=pick(self.paths), labels=[new[self.labels[i]] for i in indices],
                       groups=pick(self.groups), given_splits=pick(self.given_splits), sources=pick(self.sources),
                       problems=list(self.problems), notes=Counter(self.notes), sizes=pick(self.sizes),
                       origins=pick(self.origins))

    def add_training(self, splits: list[str], path: str, label: int, group: str, source: str,
                     size: tuple[int, int], origin: str | None = None) -> None:
        """Append one image to the training split (``splits`` grows with it); ``origin`` names its source
        (default: the last image's)."""
        self.paths.append(path)
        self.labels.append(label)
        self.groups.append(group)
        self.given_splits.append("train")
        self.sources.append(source)
        self.sizes.append(size)
        if self.origins:
            self.origins.append(self.origins[-1] if origin is None else origin)
        splits.append("train")


# ----------------------------------------------------------------------------- layout detection

def _subdirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))


def _ci_child(p: Path, name: str) -> Path | None:
    for d in _subdirs(p):
        if d.name.lower() == name:
            return d
    return None


def detect_layout(root: str | os.PathLike) -> str:
    """Return ``voc``, ``splits`` or ``folders`` for a dataset root.

    Raises:
        MaskclfError: the path is missing or matches no layout (the message lists the layouts).
    """
    r = Path(root)
    if not r.exists():
        raise MaskclfError(f"{r}: data folder not found; pass --data PATH")
    if not r.is_dir():
        raise MaskclfError(f"{r}: is a file; --data expects a folder ({LAYOUTS_HELP})")
    if _ci_child(r, "images") and _ci_child(r, "annotations"):
        return "voc"
    names = {d.name.lower() for d in _subdirs(r)}
    if names & {"train", "training"} or (names and names <= set(SPLIT_NAMES)):
        return "splits"
    if any(_has_image_names(d) for d in _subdirs(r)):
        return "folders"
    raise MaskclfError(f"{r}: no dataset layout found; {LAYOUTS_HELP}")


def _has_image_names(d: Path) -> bool:
    try:
        return any(imgs.is_image_name(f) for f in d.iterdir())
    except OSError:  # an unreadable class folder is reported when the files are listed
        return False


def image_fingerprints(ds: LabeledImages, progress: bool = False) -> tuple[list[int], list[bytes]]:
    """The dhash and 16x16 thumbnail of every image of ``ds`` (one root), from the per-file index (folder
    layouts were indexed when loaded; VOC face crops are indexed on first use)."""
    root = cache_dir("voc-crops") if ds.layout == "voc" else Path(ds.root)
    infos = _inspect_files([Path(p) for p in ds.paths], _Index(root), progress, "images for duplicates")
    return [i.dhash for i in infos], [i.thumb for i in infos]


# ----------------------------------------------------------------------------- folder layouts

def _list_files(d: Path, problems: list[Problem]) -> list[Path]:
    """All files under a class folder (recursively, symlink loops and unreadable folders reported)."""
    out: list[Path] = []
    seen: set[str] = set()

    def onerror(err: OSError) -> None:
        problems.append(Problem("unreadable", str(err.filename), f"{err.filename}: cannot list folder ({err.strerror})"))

    for dirpath, dirnames, filenames in os.walk(d, followlinks=True, onerror=onerror):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            problems.append(Problem("symlink loop", dirpath, f"{dirpath}: folder reached twice (symlink loop); skipped"))
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                out.append(Path(dirpath, f))
    return out


def _class_files(class_dirs: dict[str, Path], problems: list[Problem]) -> list[tuple[Path, str]]:
    items = []
    for name, d in class_dirs.items():
        for f in _list_files(d, problems):
            if imgs.is_image_name(f):
                items.append((f, name))
            else:
                problems.append(Problem("not an image", str(f), f"{f}: not an image file name; skipped"))
    return items


def _load_folder_layout(root: Path, cfg: DataConfig, layout: str, progress: bool) -> LabeledImages:
    problems: list[Problem] = []
    entries: list[tuple[Path, str, str]] = []  # path, class, given split
    if layout == "folders":
        class_dirs = {d.name: d for d in _subdirs(root)}
        entries = [(p, c, "") for p, c in _class_files(class_dirs, problems)]
        for f in root.iterdir():
            if f.is_file() and not f.name.startswith("."):
                problems.append(Problem("stray file", str(f), f"{f}: file outside any class folder; skipped"))
    else:
        for d in _subdirs(root):
            split = SPLIT_NAMES.get(d.name.lower())
            if split is None:
                problems.append(Problem("unknown split", str(d), f"{d}: not a split name (train, validation/val, test); skipped"))
                continue
            entries += [(p, c, split) for p, c in _class_files({c.name: c for c in _subdirs(d)}, problems)]
    infos = _inspect_files([e[0] for e in entries], _Index(root), progress, "images")
    ds = LabeledImages(str(root), layout, [], problems=problems)
    kept = []
    for (p, c, s), info in zip(entries, infos):
        if not info.ok:
            problems.append(Problem("unreadable image", str(p), info.message))
            continue
        kept.append((p, c, s, info))
    kept = _map_classes(kept, cfg, problems, key=lambda k: k[1], rebuild=lambda k, c: (k[0], c, k[2], k[3]))
    if layout == "splits":
        kept = _reconcile_split_classes(kept, problems)
    names = _final_classes(root, [k[1] for k in kept], _declared_classes(root, layout, cfg), problems)
    lookup = {n: i for i, n in enumerate(names)}
    for p, c, s, info in kept:
        ds.paths.append(str(p))
        ds.labels.append(lookup[c])
        ds.given_splits.append(s)
        ds.sources.append(str(p))
        ds.sizes.append((info.width, info.height))
    ds.class_names = names
    hashes = [info.dhash for *_, info in kept]
    thumbs = [info.thumb for *_, info in kept]
    ds.groups = _duplicate_groups([str(Path(p).relative_to(root)) for p, *_ in kept], hashes, thumbs,
                                  cfg.dedupe_distance)
    return ds


def _declared_classes(root: Path, layout: str, cfg: DataConfig) -> list[str]:
    """Class folder names as found on disk (after mapping), so empty classes can be reported."""
    if layout == "folders":
        raw = [d.name for d in _subdirs(root)]
    else:
        # Only train's folders: a class found elsewhere but not in train is reported as missing from train,
        # not (wrongly) as a class without readable images.
        splits = [d for d in _subdirs(root) if d.name.lower() in SPLIT_NAMES]
        train = [d for d in splits if SPLIT_NAMES[d.name.lower()] == "train"]
        raw = sorted({c.name for d in (train or splits) for c in _subdirs(d)})
    out = []
    for n in raw:
        m = cfg.class_map.get(n, n) if cfg.class_map else n
        if m and (not cfg.classes or m in cfg.classes):
            out.append(m)
    return sorted(set(out))


def _reconcile_split_classes(kept: list, problems: list[Problem]) -> list:
    """A class absent from train cannot be learnt: its images in other splits are skipped."""
    train_classes = {k[1] for k in kept if k[2] == "train"}
    if not train_classes:
        return kept
    out = []
    dropped = Counter()
    for k in kept:
        if k[1] in train_classes:
            out.append(k)
        else:
            dropped[(k[1], k[2])] += 1
    for (c, s), n in sorted(dropped.items()):
        problems.append(Problem("class missing from train", c,
                                f"class {c!r} has {n} images in {s} but none in train; skipped"))
    by_split = defaultdict(set)
    for k in out:
        by_split[k[2]].add(k[1])
    for s, cs in sorted(by_split.items()):
        for c in sorted(train_classes - cs):
            problems.append(Problem("class missing from split", c, f"class {c!r} has no images in {s}"))
    return out


def _map_classes(items: list, cfg: DataConfig, problems: list[Problem], key, rebuild) -> list:
    if not cfg.class_map and not cfg.classes:
        return items
    out, dropped = [], Counter()
    for it in items:
        name = key(it)
        new = cfg.class_map.get(name, name) if cfg.class_map else name
        if not new or (cfg.classes and new not in cfg.classes):
            dropped[name] += 1
            continue
        out.append(rebuild(it, new))
    for name, n in sorted(dropped.items()):
        problems.append(Problem("class dropped", name, f"class {name!r}: {n} items dropped by class_map/classes"))
    return out


def _final_classes(root: Path, labels: list[str], declared: list[str], problems: list[Problem]) -> list[str]:
    present = Counter(labels)
    for c in declared:
        if c not in present:
            problems.append(Problem("empty class", c, f"class {c!r} has no readable images; ignored"))
    names = sorted(present)
    if len(names) < 2:
        found = ", ".join(f"{n} ({present[n]})" for n in names) or "none"
        raise MaskclfError(f"{root}: need at least 2 classes with readable images, found {found}; "
                           f"check the folder layout ({LAYOUTS_HELP})")
    for n in names:
        if present[n] < 2:
            problems.append(Problem("tiny class", n, f"class {n!r} has only {present[n]} image(s); "
                                                     "it cannot appear in every split"))
    return names


# ----------------------------------------------------------------------------- Pascal VOC

def _file_sha1(p: Path) -> str:
    return file_digest(p, "sha1")


def _crop_photo(ann: VocAnnotation, image_path: Path, margin: float) -> dict:
    """Crop every face of one photo into the crop cache (reused when image, XML and margin are unchanged)."""
    try:
        key = hashlib.sha1(f"{_file_sha1(image_path)}:{_file_sha1(Path(ann.path))}:{margin:.4f}:{CROP_VERSION}"
                           .encode()).hexdigest()
    except OSError as e:  # unreadable (chmod 000) or vanished since it was listed: skip the photo, not the run
        return {"error": f"{e.filename or image_path}: cannot read ({e.strerror or e}); make it readable or remove it"}
    folder = cache_dir("voc-crops") / key[:2] / key
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text()) | {"folder": str(folder)}
        except ValueError:
            shutil.rmtree(folder, ignore_errors=True)
    try:
        img = imgs.load_rgb(image_path)
    except MaskclfError as e:
        return {"error": str(e)}
    w, h, dh, thumb = _describe(img)
    faces, issues = [], []
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, obj in enumerate(ann.objects):
        if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
            issues.append(["bad box", f"{ann.path}: object {i} ({obj.name}) has an empty or inverted box "
                                      f"({obj.xmin:g},{obj.ymin:g},{obj.xmax:g},{obj.ymax:g}); skipped"])
            continue
        box = clip_box(obj, w, h)
        if box is None:
            issues.append(["box outside image", f"{ann.path}: object {i} ({obj.name}) lies outside the "
                                                f"{w}x{h} image; skipped"])
            continue
        clipped = box != (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
        crop = imgs.crop_face(img, box, margin)
        name = f"{i:03d}.png"
        crop.save(tmp / name)
        faces.append({"file": name, "label": obj.name, "box": list(box), "clipped": clipped,
                      "face_size": min(box[2] - box[0], box[3] - box[1]), "size": list(crop.size)})
    rec = {"image": str(image_path), "width": w, "height": h, "dhash": str(dh), "thumb": thumb.hex(),
           "faces": faces, "issues": issues}
    (tmp / "manifest.json").write_text(json.dumps(rec))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return rec | {"folder": str(folder)}


def _load_voc(root: Path, cfg: DataConfig, progress: bool) -> LabeledImages:
    images_dir, ann_dir = _ci_child(root, "images"), _ci_child(root, "annotations")
    problems: list[Problem] = []
    xmls = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml")
    if not xmls:
        raise MaskclfError(f"{ann_dir}: no .xml annotation files; a VOC dataset needs ROOT/annotations/*.xml")
    for p in sorted(ann_dir.iterdir()):
        if p.suffix.lower() != ".xml" and not p.name.startswith("."):
            problems.append(Problem("not an annotation", str(p), f"{p}: not an .xml file; skipped"))
    jobs = []
    for x in xmls:
        try:
            ann = parse_voc(x)
        except MaskclfError as e:
            problems.append(Problem("bad annotation", str(x), str(e)))
            continue
        img_path = find_image(images_dir, ann)
        if img_path is None:
            problems.append(Problem("missing image", str(x), f"{x}: its image {ann.filename or x.stem} is not in "
                                                              f"{images_dir}; skipped"))
            continue
        jobs.append((ann, img_path))
    records = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        for n, rec in enumerate(ex.map(lambda j: _crop_photo(j[0], j[1], cfg.crop_margin), jobs), 1):
            records.append(rec)
            if progress and (n % 200 == 0 or n == len(jobs)):
                print(f"  cropped faces of {n}/{len(jobs)} photos", file=sys.stderr, flush=True)
    faces, photo_hashes, photo_thumbs, photo_names = [], [], [], []
    ds = LabeledImages(str(root), "voc", [], problems=problems)
    for (ann, img_path), rec in zip(jobs, records):
        if "error" in rec:
            problems.append(Problem("unreadable image", str(img_path), rec["error"]))
            continue
        for kind, msg in rec["issues"]:
            problems.append(Problem(kind, ann.path, msg))
        folder = rec["folder"]
        photo_names.append(img_path.name)
        photo_hashes.append(int(rec["dhash"]))
        photo_thumbs.append(bytes.fromhex(rec["thumb"]))
        for f in rec["faces"]:
            ds.notes["faces clipped to the image"] += int(f["clipped"])
            if f["face_size"] < cfg.min_face_size:
                ds.notes[f"faces below min_face_size={cfg.min_face_size}px (skipped)"] += 1
                continue
            faces.append((str(Path(folder, f["file"])), f["label"], img_path.name, tuple(f["size"])))
    faces = _map_classes(faces, cfg, problems, key=lambda f: f[1], rebuild=lambda f, c: (f[0], c, f[2], f[3]))
    declared = sorted({cfg.class_map.get(f[1], f[1]) if cfg.class_map else f[1] for f in faces})
    ds.class_names = _final_classes(root, [f[1] for f in faces], declared, problems)
    photo_group = dict(zip(photo_names, _duplicate_groups(photo_names, photo_hashes, photo_thumbs,
                                                          cfg.dedupe_distance)))
    lookup = {n: i for i, n in enumerate(ds.class_names)}
    for path, label, photo, size in faces:
        ds.paths.append(path)
        ds.labels.append(lookup[label])
        ds.groups.append(photo_group[photo])
        ds.given_splits.append("")
        ds.sources.append(str(images_dir / photo))
        ds.sizes.append(size)
    return ds


# ----------------------------------------------------------------------------- public API

def load_dataset(cfg: DataConfig, progress: bool = True) -> LabeledImages:
    """Find, check and label every image of a dataset root.

    Args:
        cfg: data settings (path, layout, crop margin, class map ...).
        progress: print progress lines to stderr on long steps.

    Returns:
        LabeledImages with problems listed (nothing unreadable is kept).

    Raises:
        MaskclfError: no layout fits, or fewer than two usable classes.
    """
    root = Path(cfg.path).expanduser()
    try:
        layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
        if layout == "voc":
            if not (_ci_child(root, "images") and _ci_child(root, "annotations")):
                raise MaskclfError(f"{root}: layout voc needs images/ and annotations/ folders")
            return _load_voc(root, cfg, progress)
        return _load_folder_layout(root, cfg, layout, progress)
    except PermissionError as e:  # the root or a folder the layout needs cannot be listed
        raise MaskclfError(f"{e.filename or root}: permission denied; make it readable") from None


EXTRA_GROUP = "extra:"  # group prefix of images added by data.extra_train (one group per class folder)


def add_extra_train(ds: LabeledImages, splits: list[str], cfg: DataConfig,
                    progress: bool = False) -> tuple[LabeledImages, list[str]]:
    """Add the class-folder images of ``cfg.extra_train`` (e.g. ``maskclf synth`` output) to the training split.

    They never reach validation or test. ``ds`` is left unchanged (``compare`` shares it between models);
    ``class_map``/``classes`` apply to the folder names as to the dataset's. Each class folder is one group
    ``extra:<folder>/<class>``, and the folder is the source of its images.

    Returns:
        A new (LabeledImages, splits) pair with the extra images appended (split ``train``).

    Raises:
        MaskclfError: the folder is missing or empty, or names a class the dataset does not have.
    """
    root = Path(cfg.extra_train).expanduser()
    if not root.is_dir():
        raise MaskclfError(f"{root}: extra training folder not found; data.extra_train (--extra-train) expects "
                           "DIR/<class>/*.png, e.g. made by `maskclf synth`")
    out = ds.copy()
    problems: list[Problem] = []
    wanted = {}
    for d in _subdirs(root):
        name = cfg.class_map.get(d.name, d.name) if cfg.class_map else d.name
        if name and (not cfg.classes or name in cfg.classes):
            wanted[d] = name
    unknown = sorted({n for n in wanted.values() if n not in ds.class_names})
    if unknown:
        raise MaskclfError(f"{root}: extra training class folder(s) {', '.join(unknown)} are not classes of the "
                           f"dataset ({', '.join(ds.class_names)}); rename or remove them")
    entries = [(f, name, d.name) for d, name in wanted.items() for f in _list_files(d, problems)
               if imgs.is_image_name(f)]
    infos = _inspect_files([e[0] for e in entries], _Index(root), progress, "extra images")
    added = Counter()
    new_splits = list(splits)
    for (f, name, folder), info in zip(entries, infos):
        if not info.ok:
            problems.append(Problem("unreadable image", str(f), info.message))
            continue
        out.add_training(new_splits, str(f), ds.class_names.index(name), f"{EXTRA_GROUP}{root.name}/{folder}",
                         str(root), (info.width, info.height), "extra_train")
        added[name] += 1
    if not added:
        raise MaskclfError(f"{root}: no readable images in class folders; data.extra_train expects DIR/<class>/*.png")
    out.problems += problems
    detail = ", ".join(f"{c} {n}" for c, n in sorted(added.items()))
    out.notes[f"extra training images from {root} ({detail}), train split only"] = sum(added.values())
    return out, new_splits
