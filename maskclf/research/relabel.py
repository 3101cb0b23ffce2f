"""Apply reviewed label corrections: a corrected copy of a dataset (`maskclf data relabel`).

`maskclf suspects` lists faces whose label the out-of-fold models confidently contradict; a person judges each
one. This module turns those judgements into a dataset to train on, without touching the original:

* The decisions are a CSV with a ``correct_label`` column and, to find the face, either ``photo`` + ``object``
  (a VOC photo's file name or path and the object's index in its XML, counting from 0: what suspects.csv
  lists) or ``photo``/``path`` alone (a file of a class-folder or split-folder dataset). Rows with an empty
  ``correct_label`` are not reviewed and ignored; a ``correct_label`` equal to the face's label keeps it (a
  reviewed suspects.csv with "the model is wrong" rows works as it is). A ``label`` column, when present, must
  still match the data on every reviewed row: a decision made on another version of the annotations is
  refused, not applied to the wrong face.
* The copy: for VOC, ``OUT/images`` links to the original images and ``OUT/annotations`` holds every XML
  (changed ones rewritten, others linked); for folders, every image is linked into its (corrected) class
  folder. ``OUT/relabel.json`` records each change. The copy is built under a temporary name and renamed
  when complete; nothing is written if any decision is refused.

No TensorFlow here.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from maskclf.files import MaskclfError
from maskclf.data.voc import parse_voc


def read_decisions(path: str | os.PathLike) -> list[dict]:
    """The reviewed rows of a decisions CSV: {photo, object (int or None), label, correct_label, line}."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except OSError as e:
        raise MaskclfError(f"{p}: cannot read the decisions file ({e.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise MaskclfError(f"{p}: not a readable CSV ({e}); save it as UTF-8 CSV") from None
    where = "photo" if "photo" in fields else "path" if "path" in fields else None
    if where is None or "correct_label" not in fields:
        raise MaskclfError(f"{p}: needs a 'correct_label' column and a 'photo' (or 'path') column naming the face "
                           f"(it has: {', '.join(fields) or 'no header'}); add a correct_label column to "
                           "suspects.csv and fill it in")
    out = []
    for n, r in enumerate(rows, 2):
        new, old = r.get("correct_label", ""), r.get("label", "")
        if not new:
            continue
        obj = r.get("object", "")
        try:
            index = int(obj) if obj != "" else None
        except ValueError:
            raise MaskclfError(f"{p}: line {n}: object '{obj}' is not an index (0, 1, ...)") from None
        if index is not None and index < 0:
            raise MaskclfError(f"{p}: line {n}: object {index} is negative; objects count from 0")
        if not r.get(where):
            raise MaskclfError(f"{p}: line {n}: empty '{where}'")
        out.append({"photo": r[where], "object": index, "label": old, "correct_label": new, "line": n})
    return out


def relabel(data: str | os.PathLike, decisions: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write a corrected copy of ``data`` to ``out`` (see the module doc); returns the report it also writes.

    Raises:
        MaskclfError: ``out`` exists, a decision names a face that is not in the data, its ``label`` no longer
            matches, or its ``correct_label`` is not a class of the data (the message names the CSV line).
    """
    from maskclf.data.datasets import detect_layout

    root, out, dec_path = Path(data), Path(out), Path(decisions)
    layout = detect_layout(root)
    if out.exists():
        raise MaskclfError(f"{out}: already exists; choose a new --out folder (the copy is never merged)")
    if out.resolve().is_relative_to(root.resolve()):
        raise MaskclfError(f"{out}: inside the data folder {root}; write the copy next to it instead")
    rows = read_decisions(dec_path)
    if layout == "voc":
        plan, classes = _plan_voc(root, rows, dec_path)
    else:
        plan, classes = _plan_folders(root, layout, rows, dec_path)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        changes = _write_voc(plan, tmp) if layout == "voc" else _write_folders(plan, tmp)
        report = {"source": str(root.resolve()), "layout": layout, "decisions": str(dec_path.resolve()),
                  "classes": classes, "changed": len(changes), "changes": changes}
        (tmp / "relabel.json").write_text(json.dumps(report, indent=1))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report["out"] = str(out)
    return report


def _check(row: dict, current: str, classes: set[str], dec_path: Path, what: str) -> None:
    if row["label"] and row["label"] != current:
        raise MaskclfError(f"{dec_path}: line {row['line']}: {what} is labelled '{current}' in the data, not "
                           f"'{row['label']}'; the decision was made on other annotations: review it again")
    if row["correct_label"] not in classes:
        raise MaskclfError(f"{dec_path}: line {row['line']}: correct_label '{row['correct_label']}' is not a class "
                           f"of the data ({', '.join(sorted(classes))}); fix the spelling")


def _plan_voc(root: Path, rows: list[dict], dec_path: Path) -> tuple[dict, list[str]]:
    """{xml path: {object index: (old, new)}} and the data's classes."""
    from maskclf.data.datasets import _ci_child

    ann_dir = _ci_child(root, "annotations")
    xmls = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml")
    names: dict[Path, list[str]] = {}
    broken: dict[Path, MaskclfError] = {}  # training skips these too; a decision naming one is refused below
    classes: set[str] = set()
    for x in xmls:
        try:
            names[x] = [o.name for o in parse_voc(x).objects]
        except MaskclfError as e:
            names[x], broken[x] = [], e
        classes.update(names[x])
    by_stem: dict[str, Path] = {x.stem: x for x in xmls}
    plan: dict[Path, dict[int, tuple[str, str]]] = {}
    for r in rows:
        if r["object"] is None:
            raise MaskclfError(f"{dec_path}: line {r['line']}: a VOC dataset needs the 'object' column (the "
                               "object's index in the photo's XML, as suspects.csv lists it)")
        x = by_stem.get(Path(r["photo"]).stem)
        if x is None:
            raise MaskclfError(f"{dec_path}: line {r['line']}: no annotation for photo '{r['photo']}' in {ann_dir}")
        if x in broken:
            raise MaskclfError(f"{dec_path}: line {r['line']}: {broken[x]}")
        objs = names[x]
        if r["object"] >= len(objs):
            raise MaskclfError(f"{dec_path}: line {r['line']}: {x.name} has {len(objs)} objects, no object "
                               f"{r['object']} (objects count from 0)")
        _check(r, objs[r["object"]], classes, dec_path, f"object {r['object']} of {x.name}")
        if r["correct_label"] == objs[r["object"]]:
            continue
        prev = plan.setdefault(x, {}).get(r["object"])
        if prev and prev[1] != r["correct_label"]:
            raise MaskclfError(f"{dec_path}: line {r['line']}: object {r['object']} of {x.name} is corrected twice, "
                               f"to '{prev[1]}' and '{r['correct_label']}'; keep one decision")
        plan[x][r["object"]] = (objs[r["object"]], r["correct_label"])
    return {"images": _ci_child(root, "images"), "xmls": xmls, "changes": plan}, sorted(classes)


def _write_voc(plan: dict, tmp: Path) -> list[dict]:
    from defusedxml import ElementTree as SafeET

    ann_out = tmp / "annotations"
    ann_out.mkdir(parents=True)
    (tmp / "images").symlink_to(plan["images"].resolve(), target_is_directory=True)
    changes = []
    for x in plan["xmls"]:
        fix = plan["changes"].get(x)
        if not fix:
            (ann_out / x.name).symlink_to(x.resolve())
            continue
        tree = SafeET.parse(str(x))  # parse_voc already refused unsafe or broken files named by a decision
        for i, obj in enumerate(tree.getroot().iter("object")):
            if i in fix:
                obj.find("name").text = fix[i][1]
                changes.append({"photo": x.stem, "annotation": x.name, "object": i, "from": fix[i][0],
                                "to": fix[i][1]})
        tree.write(ann_out / x.name, encoding="utf-8", xml_declaration=True)
    return changes


def _plan_folders(root: Path, layout: str, rows: list[dict], dec_path: Path) -> tuple[dict, list[str]]:
    """{source file: (relative folder of its class, old class, new class)} for every image, and the classes.

    Images are listed as training lists them (`datasets._class_files`: recursively, hidden files and non-images
    left out), so the copy holds the same images; nested ones land directly in their class folder."""
    from maskclf.data.datasets import _class_files, _subdirs

    files: dict[Path, tuple[Path, str]] = {}  # resolved file -> (folder above its class folder, class)
    tops = [(Path(), root)] if layout == "folders" else [(Path(d.name), d) for d in _subdirs(root)]
    for rel, top in tops:
        for f, c in _class_files({d.name: d for d in _subdirs(top)}, problems=[]):
            files[f.resolve()] = (rel, c)
    classes = {c for _, c in files.values()}
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    moves: dict[Path, str] = {}
    for r in rows:
        cand = Path(r["photo"])
        hits = [cand.resolve()] if cand.resolve() in files else [] if cand.is_absolute() else by_name.get(cand.name, [])
        if not hits:
            raise MaskclfError(f"{dec_path}: line {r['line']}: '{r['photo']}' is not an image of {root}")
        if len(hits) > 1:
            raise MaskclfError(f"{dec_path}: line {r['line']}: '{r['photo']}' names {len(hits)} files of {root}; "
                               "give its path")
        _check(r, files[hits[0]][1], classes, dec_path, f"{hits[0].name}")
        if moves.get(hits[0], r["correct_label"]) != r["correct_label"]:
            raise MaskclfError(f"{dec_path}: line {r['line']}: {hits[0].name} is corrected twice, to "
                               f"'{moves[hits[0]]}' and '{r['correct_label']}'; keep one decision")
        moves[hits[0]] = r["correct_label"]
    plan = {f: (rel, c, moves.get(f, c)) for f, (rel, c) in files.items()}
    return plan, sorted(classes)


def _write_folders(plan: dict, tmp: Path) -> list[dict]:
    changes = []
    tmp.mkdir(parents=True)
    for f, (rel, old, new) in sorted(plan.items()):
        d = tmp / rel / new
        d.mkdir(parents=True, exist_ok=True)
        dst = d / f.name
        if dst.exists() or dst.is_symlink():  # two classes held files of one name; keep both
            dst = d / f"{f.stem}-from-{old}{f.suffix}"
        dst.symlink_to(f)
        if new != old:
            changes.append({"photo": str(f), "from": old, "to": new, "split": str(rel) if str(rel) != "." else ""})
    return changes
