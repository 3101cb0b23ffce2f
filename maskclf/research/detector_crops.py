"""Training crops framed by YuNet's own boxes on the training photos (``data.detector_train``).

VOC faces are cropped around hand-drawn boxes; YuNet's boxes start higher (forehead included) and are sized
differently. Since ``maskclf detect`` moves YuNet's boxes where VOC's annotators draw faces (the detector's
``framing``), these copies match the device's crops only with ``--no-reframe``; they are kept as measured.
With ``data.detector_train=true`` every VOC photo with faces in the training split is run through YuNet
(``create_detector("yunet")``, as ``maskclf detect`` makes it); each detection matched to a training face (greedy
IoU >= ``ANNOTATION_MATCH_IOU``, :func:`maskclf.edge.tracking.match`) is cropped with the same square crop and
margin (:func:`maskclf.data.images.crop_face`) and joins the training split as a second copy of that face: its
label, photo group and source. Validation and test faces are never touched, so cross-validation stays honest. Faces
YuNet does not find (most under ~16 px) get no copy. Detections and crops are cached in the user cache folder (key:
the VOC crop folder's own key, which covers the photo's and the XML's bytes and the margin, plus this module's
version).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from maskclf.files import MaskclfError, atomic_path, cache_dir

VERSION = 1


def _photo_copies(manifest: Path, photo: str, margin: float, detector) -> dict:
    """{VOC crop file name: {"file": cached YuNet crop, "iou": overlap}} for one photo (cached)."""
    from maskclf.data.images import crop_face, load_rgb
    from maskclf.edge.detector import ANNOTATION_MATCH_IOU, iou
    from maskclf.edge.tracking import match

    key = hashlib.sha1(f"{manifest.parent.name}|{margin:.4f}|{VERSION}".encode()).hexdigest()
    folder = cache_dir("detector-crops") / key[:2] / key
    index = folder / "index.json"
    if index.is_file():
        try:
            cached = json.loads(index.read_text())
            if all(Path(c["file"]).is_file() for c in cached.values()):
                return cached
        except (ValueError, KeyError, TypeError):
            pass  # damaged or partly deleted: made again
    rec = json.loads(manifest.read_text())
    img = load_rgb(photo)  # the manifest's own path may be relative to another working folder
    found = detector().detect(np.asarray(img, np.uint8)) if rec["faces"] else []
    boxes = [f["box"] for f in rec["faces"]]
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i, j in match(boxes, found, ANNOTATION_MATCH_IOU):
        crop = crop_face(img, tuple(float(v) for v in found[j][:4]), margin)
        if crop is None:
            continue
        name = f"yunet-{rec['faces'][i]['file']}"
        with atomic_path(folder / name) as tmp:
            crop.save(tmp, format="PNG")
        out[rec["faces"][i]["file"]] = {"file": str(folder / name), "iou": round(iou(boxes[i], found[j]), 4),
                                        "size": list(crop.size)}
    with atomic_path(index) as tmp:
        Path(tmp).write_text(json.dumps(out))
    return out


def add_detector_crops(ds, splits: list[str], margin: float, progress: bool = False):
    """Add a YuNet-framed copy of every training-split VOC face YuNet finds (``data.detector_train``).

    Returns:
        A new (LabeledImages, splits) pair; the copies keep their face's label, group, source and origin.

    Raises:
        MaskclfError: no face comes from VOC photos (nothing to frame; VOC faces held out of training add
            nothing and are no error), or OpenCV is missing.
    """
    made = []

    def detector():  # made on the first photo not in the cache, as `maskclf detect` makes it
        if not made:
            try:
                from maskclf.edge.detector import create_detector

                made.append(create_detector("yunet"))
            except ImportError as e:
                raise MaskclfError(f"data.detector_train needs OpenCV for YuNet ({e}); "
                                   "pip install 'opencv-python-headless<5'") from None
        return made[0]

    by_photo: dict[Path, list[int]] = {}
    for i, (path, split) in enumerate(zip(ds.paths, splits)):
        manifest = Path(path).parent / "manifest.json"
        if split == "train" and manifest.is_file():
            by_photo.setdefault(manifest, []).append(i)
    if not by_photo and any((Path(path).parent / "manifest.json").is_file() for path in ds.paths):
        return ds, splits  # VOC faces only outside the training split (a held-out VOC source): nothing to add
    if not by_photo:
        raise MaskclfError(f"data.detector_train: {ds.root} has no training faces cropped from VOC photos "
                           "(annotations/*.xml + images/); it frames VOC faces as YuNet does. Set it to false "
                           "(data.detector_train=false)")
    out, new_splits = ds.copy(), list(splits)
    added = 0
    for n, (manifest, faces) in enumerate(sorted(by_photo.items()), 1):
        copies = _photo_copies(manifest, ds.sources[faces[0]], margin, detector)
        for i in faces:
            c = copies.get(Path(ds.paths[i]).name)  # _photo_copies checked that every cached crop exists
            if c is None:
                continue
            out.add_training(new_splits, c["file"], ds.labels[i], ds.groups[i], ds.sources[i], tuple(c["size"]),
                             ds.origins[i] if ds.origins else None)
            added += 1
        if progress and (n % 200 == 0 or n == len(by_photo)):
            print(f"  YuNet-framed training faces: {n}/{len(by_photo)} photos", file=sys.stderr, flush=True)
    found = sum(len(v) for v in by_photo.values())
    out.notes[f"YuNet-framed copies of training faces (data.detector_train; {found - added} of {found} "
              "not found by YuNet), train split only"] = added
    return out, new_splits
