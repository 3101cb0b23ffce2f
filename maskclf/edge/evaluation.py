"""Photo-level evaluation of detector + classifier on Pascal VOC photos: AP@0.5, mAP, detector recall.

Only the photos the classifier never trained on are used: the run's ``split.csv`` names the original
photo of every face crop (``source``) and its split. Matching follows Pascal VOC: per class,
detections labelled with that class are ranked by confidence (detector score × class probability)
and each is a true positive when its best-overlapping unmatched ground-truth box of the class has
IoU ≥ 0.5; AP is the area under the all-point interpolated precision-recall curve (VOC 2010+).
Difficult boxes, boxes of classes the model does not know (dropped by the run's class_map or
classes) and, optionally, boxes below a size are ignore regions: detections on them count neither way.

No TensorFlow: runs on the device with the export folder and the run's split.csv.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskclf.edge.app import FaceMaskPipeline
from maskclf.edge.classifier import FaceClassifier
from maskclf.edge.detector import ANNOTATION_MATCH_IOU, create_detector, iou
from maskclf.files import MaskclfError, write_json, write_text
from maskclf.data.images import load_rgb
from maskclf.data.voc import clip_box, find_image, parse_voc

SPLITS = ("test", "validation", "unseen")
SIZE_BINS = ((0, 16), (16, 32), (32, 64), (64, 10 ** 9))


@dataclass(frozen=True)
class GroundTruth:
    """One annotated face of a VOC photo: its box, its class (after the class map) and whether it is an ignore region."""
    box: tuple
    label: str | None  # class name after the run's class_map; None when the class was dropped
    ignore: bool  # difficult, a class the model does not know, or below min_gt_size: an ignore region


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve with all-point interpolation (Pascal VOC 2010+)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):  # precision envelope: max precision at any higher recall
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(detections: list[tuple[str, float, tuple]], truths: dict[str, list[GroundTruth]],
                      label: str, iou_threshold: float = 0.5) -> dict:
    """VOC AP of one class.

    Args:
        detections: ``(photo, confidence, box)`` of every detection labelled ``label``.
        truths: photo -> its ground-truth boxes (all classes).
        label: the class.

    Returns:
        ``{"ap", "num_gt", "num_detections", "tp", "fp"}``; ap is None when the class has no ground truth.
    """
    gts = {p: [g for g in t if g.label == label and not g.ignore] for p, t in truths.items()}
    ignored = {p: [g for g in t if g.ignore] for p, t in truths.items()}
    npos = sum(len(v) for v in gts.values())
    used = {p: [False] * len(v) for p, v in gts.items()}
    tp, fp = [], []
    for photo, _, box in sorted(detections, key=lambda d: -d[1]):
        cands = gts.get(photo, [])
        best, k = 0.0, -1
        for j, g in enumerate(cands):
            o = iou(box, g.box)
            if o > best:
                best, k = o, j
        if best >= iou_threshold:
            if not used[photo][k]:
                used[photo][k] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)  # a second detection of the same face
        elif any(iou(box, g.box) >= iou_threshold for g in ignored.get(photo, [])):
            continue
        else:
            tp.append(0), fp.append(1)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    ap = None
    if npos:
        rec = ctp / npos if len(ctp) else np.zeros(0)
        prec = ctp / np.maximum(ctp + cfp, np.finfo(float).eps) if len(ctp) else np.zeros(0)
        ap = voc_ap(rec, prec)
    return {"ap": ap, "num_gt": npos, "num_detections": len(tp), "tp": int(ctp[-1]) if len(ctp) else 0,
            "fp": int(cfp[-1]) if len(cfp) else 0}


def _match_any_label(dets: list, gts: list[GroundTruth], iou_threshold: float) -> tuple[dict, list]:
    """Class-agnostic one-to-one matching (best detector score first): gt index -> det index, unmatched dets."""
    pairs, free = {}, []
    order = sorted(range(len(dets)), key=lambda i: -dets[i].detector_score)
    for i in order:
        best, k = 0.0, -1
        for j, g in enumerate(gts):
            if g.ignore or j in pairs:
                continue
            o = iou(dets[i].box, g.box)
            if o > best:
                best, k = o, j
        if best >= iou_threshold:
            pairs[k] = i
        elif not any(g.ignore and iou(dets[i].box, g.box) >= iou_threshold for g in gts):
            free.append(i)
    return pairs, free


def _find_run(classifier: FaceClassifier, model: Path, run_dir) -> Path:
    cands = [Path(run_dir)] if run_dir else []
    if not run_dir:
        src = classifier.metadata.get("source_run")
        if src:
            cands.append(Path(src))
        folder = model if model.is_dir() else model.parent
        cands.append(folder.parent)
    for c in cands:
        if (c / "split.csv").is_file():
            return c
    where = f" ({cands[0]})" if cands else ""
    raise MaskclfError(f"no split.csv of the model's run found{where}; pass --run RUN_DIR so only the photos "
                       "the classifier was not trained on are evaluated")


def _read_split(run: Path) -> list[dict]:
    import csv

    p = run / "split.csv"
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"split", "source"} <= set(rows[0]):
        raise MaskclfError(f"{p}: no source column (which photo each crop came from); retrain the run with this "
                           "maskclf version")
    return rows


def _class_map(run: Path) -> dict:
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return {}
    from maskclf.config import load_config

    return dict(load_config(cfg_path).data.class_map or {})


def select_photos(rows: list[dict], split: str) -> tuple[set[str], set[str]]:
    """Photo file names from split.csv rows: (the ``split`` photos never used for training, every photo
    used for training or validation)."""
    by_split: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_split[r["split"]].add(Path(r["source"]).name)
    used = by_split["train"] | by_split["validation"]
    if split == "unseen":
        return set(), used
    return by_split[split] - by_split["train"], used


def _voc_root(data: str | os.PathLike) -> Path:
    """``data`` as a Pascal VOC folder (images/ + annotations/), or a one-line error."""
    root = Path(data)
    if not root.is_dir():
        raise MaskclfError(f"{root}: data folder not found")
    if not (root / "annotations").is_dir() or not (root / "images").is_dir():
        raise MaskclfError(f"{root}: not a Pascal VOC folder (needs images/ and annotations/)")
    return root


def _voc_photos(root: Path, problems: list | None = None):
    """(annotation, image path) of every XML of a VOC folder whose image is present, in file-name order; an
    unreadable XML is skipped (its error appended to ``problems``)."""
    for x in sorted(p for p in (root / "annotations").iterdir() if p.suffix.lower() == ".xml"):
        try:
            ann = parse_voc(x)
        except MaskclfError as e:
            if problems is not None:
                problems.append(str(e))
            continue
        img = find_image(root / "images", ann)
        if img is not None:
            yield ann, img


def fit_framing(detector, data: str | os.PathLike, photos: set[str] | None = None) -> dict:
    """Where a VOC set's annotators draw face boxes relative to ``detector``'s boxes of the same faces.

    Every photo of ``data`` (or those named in ``photos``) goes through the detector; each annotated face it
    finds (greedy IoU >= ``ANNOTATION_MATCH_IOU``) gives its offset and size ratio. The medians are the
    detector's ``framing`` (:func:`maskclf.edge.detector.reframe`), as shipped for YuNet and Haar.

    Returns:
        ``{"framing": [dx, dy, sw, sh], "faces", "photos", "annotated_faces", "by_class": {class: [...]}}``.
    """
    from maskclf.edge.tracking import match

    root = _voc_root(data)
    rows, n_photos, n_faces = [], 0, 0
    for ann, img in _voc_photos(root):
        if photos is not None and img.name not in photos:
            continue
        rgb = np.asarray(load_rgb(img), np.uint8)
        h, w = rgb.shape[:2]
        faces = [(b, o.name) for o in ann.objects if (b := clip_box(o, w, h)) is not None]
        n_photos, n_faces = n_photos + 1, n_faces + len(faces)
        found = detector.detect(rgb) if faces else []
        for i, j in match([b for b, _ in faces], found, ANNOTATION_MATCH_IOU):
            (a1, b1, a2, b2), (d1, e1, d2, e2) = faces[i][0], found[j][:4]
            dw, dh = d2 - d1, e2 - e1
            rows.append((faces[i][1], ((a1 + a2) - (d1 + d2)) / 2 / dw, ((b1 + b2) - (e1 + e2)) / 2 / dh,
                         (a2 - a1) / dw, (b2 - b1) / dh))
    if not rows:
        raise MaskclfError(f"{root}: the detector found none of the {n_faces} annotated faces of {n_photos} photos; "
                           "nothing to fit")

    def medians(r):
        return [round(float(np.median([x[k] for x in r])), 3) for k in range(1, 5)]

    return {"framing": medians(rows), "faces": len(rows), "photos": n_photos, "annotated_faces": n_faces,
            "by_class": {c: medians([x for x in rows if x[0] == c]) for c in sorted({x[0] for x in rows})}}


def evaluate_detection(model: str | os.PathLike, data: str | os.PathLike, split: str = "test",
                       run_dir: str | os.PathLike | None = None, detector: str = "yunet",
                       out: str | os.PathLike | None = None, iou_threshold: float = 0.5, min_gt_size: float = 0,
                       precision: str | None = None, threads: int = 1, score_threshold: float | None = None,
                       nms_threshold: float | None = None, min_face: int | None = None, upscale: float | None = None,
                       tile: int | None = None, max_photos: int | None = None, progress: bool = True,
                       framing: bool = True) -> dict:
    """Evaluate face detection + mask classification on the VOC photos the classifier did not train on.

    Args:
        model: an export folder (RUN_DIR/export) or a .tflite file.
        data: a Pascal VOC root (images/ + annotations/), normally the one the run was trained on.
        split: ``test`` (default) or ``validation`` photos of the run's split.csv, or ``unseen``:
            every photo of ``data`` that the run used neither for training nor validation
            (for a dataset other than the training one).
        run_dir: the run whose split.csv to use (default: found from the model's metadata).
        detector: ``yunet`` or ``haar``; score_threshold, nms_threshold, min_face, upscale, tile
            are its options.
        out: folder for ``detection_eval_<split>.json`` and ``.md`` (default: the run directory).
        iou_threshold: IoU for a match (0.5: AP@0.5).
        min_gt_size: ground-truth faces whose shorter side is below this are ignore regions.
        max_photos: evaluate only the first N photos (quick checks).
        framing: move each detected box to where an annotator would draw it, as ``maskclf detect`` does
            (:class:`maskclf.edge.app.FaceMaskPipeline`); False keeps the detector's boxes as they are.

    Returns:
        The report dict (per-class AP, mAP, detector recall per class and size, confusion table).
    """
    if split not in SPLITS:
        raise MaskclfError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if not 0.0 < iou_threshold < 1.0:
        raise MaskclfError(f"IoU threshold must lie in (0, 1), got {iou_threshold}")
    root = _voc_root(data)
    classifier = FaceClassifier(model, num_threads=threads, precision=precision)
    run = _find_run(classifier, Path(model), run_dir)
    wanted, used = select_photos(_read_split(run), split)
    class_map = _class_map(run)
    det = create_detector(detector, score_threshold=score_threshold, nms_threshold=nms_threshold,
                          min_face=min_face, upscale=upscale, tile=tile)
    pipeline = FaceMaskPipeline(classifier, det, framing=framing)

    jobs, problems = [], []
    for ann, img in _voc_photos(root, problems):
        take = (img.name not in used) if split == "unseen" else (img.name in wanted)
        if take:
            jobs.append((ann, img))
    if split != "unseen":
        missing = wanted - {img.name for _, img in jobs}
        if not jobs:
            raise MaskclfError(f"{root}: none of the {len(wanted)} {split} photos of {run / 'split.csv'} is here; "
                               "pass the VOC folder the run was trained on, or --split unseen for another dataset")
    else:
        missing = set()
        if not jobs:
            raise MaskclfError(f"{root}: every photo here was used to train or validate {run}; nothing unseen to "
                               "evaluate")
    if max_photos:
        jobs = jobs[:max_photos]

    names = list(classifier.class_names)
    ignored_classes: Counter = Counter()
    truths: dict[str, list[GroundTruth]] = {}
    detections: dict[str, list] = {}
    timings = []
    t_start = time.time()
    for n, (ann, img_path) in enumerate(jobs, 1):
        try:
            rgb = np.asarray(load_rgb(img_path), np.uint8)
        except MaskclfError as e:
            problems.append(str(e))
            continue
        h, w = rgb.shape[:2]
        gts = []
        for o in ann.objects:
            box = clip_box(o, w, h)
            if box is None:
                continue
            label = (class_map.get(o.name) if o.name in class_map else o.name) or None
            if label not in names:  # dropped by the run's class_map or classes: the model never learnt it
                ignored_classes[o.name] += 1
                label = None
            small = min(box[2] - box[0], box[3] - box[1]) < min_gt_size
            gts.append(GroundTruth(box, label, bool(o.difficult or label is None or small)))
        result = pipeline.process(rgb)
        truths[img_path.name] = gts
        detections[img_path.name] = result.faces
        timings.append(sum(result.timings_ms.values()))
        if progress and (n % 25 == 0 or n == len(jobs)):
            print(f"  {n}/{len(jobs)} photos", file=sys.stderr, flush=True)

    per_class = {}
    for c in names:
        dets = [(p, f.detector_score * f.score, f.box) for p, fs in detections.items() for f in fs if f.label == c]
        per_class[c] = average_precision(dets, truths, c, iou_threshold)
    aps = [v["ap"] for v in per_class.values() if v["ap"] is not None]

    recall_hits, recall_total = Counter(), Counter()
    size_hits, size_total = Counter(), Counter()
    confusion: dict[str, Counter] = {c: Counter() for c in names}
    false_dets: Counter = Counter()
    for photo, gts in truths.items():
        faces = detections[photo]
        for g in gts:
            if g.ignore:
                continue
            hit = any(iou(g.box, f.box) >= iou_threshold for f in faces)
            side = min(g.box[2] - g.box[0], g.box[3] - g.box[1])
            bin_ = next(f"{lo}-{hi}px" if hi < 10 ** 9 else f">={lo}px" for lo, hi in SIZE_BINS if lo <= side < hi)
            recall_total[g.label] += 1
            recall_hits[g.label] += hit
            size_total[bin_] += 1
            size_hits[bin_] += hit
        pairs, free = _match_any_label(faces, gts, iou_threshold)
        for j, g in enumerate(gts):
            if g.ignore:
                continue
            confusion[g.label][faces[pairs[j]].label if j in pairs else "missed"] += 1
        for i in free:
            false_dets[faces[i].label] += 1
    columns = names + ["missed"]
    matched = sum(confusion[c][p] for c in confusion for p in names)
    correct = sum(confusion[c][c] for c in names)
    report = {
        "model": classifier.describe(),
        "detector": det.describe(),
        "framing": list(pipeline.framing) if pipeline.framing is not None else None,
        "run_dir": str(run),
        "data": str(root),
        "split": split,
        "num_photos": len(truths),
        "photos_of_split_not_found": len(missing),
        "num_gt_faces": int(sum(recall_total.values())),
        "num_ignored_gt": int(sum(g.ignore for t in truths.values() for g in t)),
        "ignored_classes": dict(ignored_classes),
        "num_detections": int(sum(len(v) for v in detections.values())),
        "iou_threshold": iou_threshold,
        "min_gt_size": min_gt_size,
        "confidence": "detector score x probability of the predicted label",
        "ap": {c: v["ap"] for c, v in per_class.items()},
        "map": float(np.mean(aps)) if aps else None,
        "per_class": per_class,
        "detector_recall": {c: (recall_hits[c] / recall_total[c]) for c in recall_total},
        "detector_recall_overall": (sum(recall_hits.values()) / sum(recall_total.values())
                                    if recall_total else None),
        "detector_recall_by_size": {b: size_hits[b] / size_total[b] for b in
                                    [f"{lo}-{hi}px" if hi < 10 ** 9 else f">={lo}px" for lo, hi in SIZE_BINS]
                                    if size_total[b]},
        "gt_by_size": dict(size_total),
        "confusion": {"rows": "ground truth", "columns": columns,
                      "table": {c: [confusion[c][p] for p in columns] for c in confusion if sum(confusion[c].values())},
                      "false_detections": {p: false_dets[p] for p in names}},
        "matched_accuracy": correct / matched if matched else None,
        "mean_ms_per_photo": round(float(np.mean(timings)), 2) if timings else None,
        "seconds": round(time.time() - t_start, 1),
        "problems": problems,
    }
    target = Path(out) if out is not None else run
    stem = f"detection_eval_{split}"
    write_json(target / f"{stem}.json", report)
    write_text(target / f"{stem}.md", format_detection_md(report))
    report["outputs"] = [str(target / f"{stem}.json"), str(target / f"{stem}.md")]
    return report


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_detection_md(r: dict) -> str:
    """The evaluation report as Markdown."""
    d = r["detector"]
    opts = ", ".join(f"{k} {v}" for k, v in d.items() if k != "name")
    out = [
        "# Photo-level evaluation: face detection + mask classification",
        "",
        f"Model `{r['model']['file']}` ({r['model']['precision']}), detector {d['name']} ({opts}); "
        + (f"boxes reframed {r['framing']} (dx, dy, sw, sh).  " if r.get("framing") else "the detector's boxes.  "),
        f"{r['num_photos']} {r['split']} photos of `{r['data']}` (split from `{r['run_dir']}/split.csv`), "
        f"{r['num_gt_faces']} faces ({r['num_ignored_gt']} ignored), {r['num_detections']} detections; "
        f"{r['mean_ms_per_photo']} ms per photo.  ",
        f"Match: IoU >= {r['iou_threshold']}, VOC all-point AP; confidence = {r['confidence']}.",
        "",
        f"**mAP@{r['iou_threshold']}: {_pct(r['map'])}**",
        "",
        "| class | AP | GT faces | detections | TP | FP | detector recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c, v in r["per_class"].items():
        out.append(f"| {c} | {_pct(v['ap'])} | {v['num_gt']} | {v['num_detections']} | {v['tp']} | {v['fp']} | "
                   f"{_pct(r['detector_recall'].get(c))} |")
    out += ["", f"Detector recall (any label, IoU >= {r['iou_threshold']}): "
                f"{_pct(r['detector_recall_overall'])}; by face size (shorter side): "
            + ", ".join(f"{b} {_pct(v)} (n={r['gt_by_size'][b]})" for b, v in r["detector_recall_by_size"].items()),
            "", "Confusion of matched faces (rows: ground truth, columns: predicted; `missed`: no detection):", ""]
    cols = r["confusion"]["columns"]
    out.append("| ground truth | " + " | ".join(cols) + " |")
    out.append("|---|" + "---:|" * len(cols))
    for c, row in r["confusion"]["table"].items():
        out.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    fd = r["confusion"]["false_detections"]
    out.append("| *no face (false detection)* | " + " | ".join(str(fd.get(c, 0)) for c in cols[:-1]) + " | |")
    out += ["", f"Label accuracy on matched faces: {_pct(r['matched_accuracy'])}."]
    if r["photos_of_split_not_found"]:
        out.append(f"{r['photos_of_split_not_found']} photos of the split were not found in the data folder.")
    if r["problems"]:
        out += ["", "Problems:", *[f"- {p}" for p in r["problems"][:20]]]
    return "\n".join(out) + "\n"
