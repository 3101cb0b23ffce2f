"""TFDS builder "face_mask_detection": the Pascal VOC Face Mask Detection photos from a local folder.

Usage: ``ds = load_face_mask_detection("/data/face-mask-detection")`` (a folder with images/ + annotations/);
plain TFDS, after importing this module: ``tfds.builder("face_mask_detection", source_dir=SRC)`` (or
``DownloadConfig(manual_dir=SRC)``), then ``download_and_prepare()``. Nothing is downloaded, nothing is
written in the source folder; the one split "train" holds every photo (split by photo group yourself).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from etils import epath
import tensorflow_datasets as tfds
from PIL import Image

from maskclf.files import MaskclfError, cache_dir
from maskclf.data.images import load_rgb
from maskclf.data.voc import clip_box, find_image, parse_voc

log = logging.getLogger(__name__)

# Sorted: the class order maskclf uses everywhere (label index = position here).
CLASS_NAMES = ["mask_weared_incorrect", "with_mask", "without_mask"]
JPEG_QUALITY = 95  # re-encoded images (PNG, RGBA, CMYK, EXIF-rotated ...): quality 95, no chroma subsampling
_EXIF_ORIENTATION = 0x0112


def _source_layout(source_dir: Path) -> tuple[Path, Path]:
    """(images_dir, annotations_dir) of a VOC folder, or a one-line error saying what is missing."""
    if not source_dir.is_dir():
        raise MaskclfError(f"{source_dir}: source folder not found; pass the folder holding images/ and annotations/")
    images, annotations = source_dir / "images", source_dir / "annotations"
    missing = [p.name + "/" for p in (images, annotations) if not p.is_dir()]
    if missing:
        raise MaskclfError(f"{source_dir}: no {' or '.join(missing)} inside; expected the Pascal VOC layout "
                           "images/*.jpg + annotations/*.xml")
    return images, annotations


def _encoded_jpeg(path: Path, img: Image.Image) -> bytes:
    """JPEG bytes for the RGB image: the file's own bytes when they already decode to ``img``, else re-encoded.

    Passing an RGB JPEG through avoids a second lossy compression; anything else (PNG, RGBA,
    grey, CMYK, EXIF-rotated, MPO) is encoded from the corrected RGB pixels.
    """
    try:
        with Image.open(path) as raw:
            passthrough = (raw.format == "JPEG" and raw.mode == "RGB"
                           and raw.getexif().get(_EXIF_ORIENTATION, 1) == 1
                           and raw.size == img.size)
    except Exception:  # load_rgb already read the pixels; re-encoding is always safe
        passthrough = False
    if passthrough:
        return path.read_bytes()
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


class FaceMaskDetection(tfds.core.GeneratorBasedBuilder):
    """Face Mask Detection (853 photos, Pascal VOC boxes, 3 classes) from a local folder.

    Give the folder (``images/`` + ``annotations/``) as ``source_dir=`` to the constructor, or
    as TFDS's manual dir (``DownloadConfig(manual_dir=...)``); ``source_dir`` wins when both are given.
    The source is only needed to build; reading a prepared ``data_dir`` needs neither.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: local Pascal VOC folder, boxes clipped to the image."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    No download: point the builder at a local copy of the Kaggle "Face Mask Detection" dataset
    (andrewmvd/face-mask-detection) laid out as images/*.{jpg,png} + annotations/*.xml, either with
    `FaceMaskDetection(source_dir=...)` or `DownloadConfig(manual_dir=...)`.
    """

    # TFDS 4.9.10 finds this file through `importlib_resources`, a package it uses but does not
    # declare (tensorflow/datasets#11212): a clean install fails with ModuleNotFoundError. This
    # module is an ordinary file, so say where it is (used for checksums.tsv and metadata lookup).
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This module's path (TFDS locates the builder's checksums beside it)."""
        return epath.Path(__file__)

    def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
        super().__init__(**kwargs)
        self._source_dir = Path(source_dir) if source_dir is not None else None
        # DatasetBuilder pickles as its constructor arguments; keep the source among them.
        self._original_state["source_dir"] = source_dir

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Street and crowd photos with Pascal VOC face boxes labelled with_mask, "
                         "without_mask or mask_weared_incorrect, built from a local folder. Boxes are "
                         "clipped to the real image size; boxes with no area, unknown classes, "
                         "annotations without an image and unreadable images are left out. "
                         "One split, 'train': split by photo group yourself (duplicates exist)."),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                }),
            }),
            homepage="https://www.kaggle.com/datasets/andrewmvd/face-mask-detection",
            # Where it was built from and what was skipped (restored from metadata.json on reload).
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source = self._source_dir if self._source_dir is not None else Path(dl_manager.manual_dir)
        images_dir, annotations_dir = _source_layout(source)
        self.info.metadata["source_dir"] = str(source.resolve())
        return {"train": self._generate_examples(images_dir, annotations_dir)}

    def _generate_examples(self, images_dir: Path, annotations_dir: Path):
        xml_files = sorted(p for p in annotations_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
        if not xml_files:
            raise MaskclfError(f"{annotations_dir}: no .xml annotation files")
        counts = dict(examples=0, boxes=0, bad_annotations=0, missing_images=0, unreadable_images=0,
                      unknown_class_boxes=0, empty_boxes=0)
        first_bad: dict[str, str] = {}
        for xml in xml_files:
            try:
                ann = parse_voc(xml)
            except MaskclfError as e:
                counts["bad_annotations"] += 1
                first_bad.setdefault("bad_annotations", str(e))
                continue
            image_path = find_image(images_dir, ann)
            if image_path is None:
                counts["missing_images"] += 1
                continue
            try:
                img = load_rgb(image_path)
            except MaskclfError as e:
                counts["unreadable_images"] += 1
                first_bad.setdefault("unreadable_images", str(e))
                continue
            width, height = img.size
            objects = []
            for obj in ann.objects:
                if obj.name not in CLASS_NAMES:
                    counts["unknown_class_boxes"] += 1
                    continue
                box = clip_box(obj, width, height)
                if box is None:
                    counts["empty_boxes"] += 1
                    continue
                x1, y1, x2, y2 = box
                objects.append({
                    "bbox": tfds.features.BBox(ymin=y1 / height, xmin=x1 / width,
                                               ymax=y2 / height, xmax=x2 / width),
                    "label": obj.name,
                })
            counts["examples"] += 1
            counts["boxes"] += len(objects)
            yield xml.name, {
                "image": _encoded_jpeg(image_path, img),
                "image/filename": image_path.name,
                "objects": objects,
            }
        for key, what in (("unreadable_images", "unreadable images"), ("bad_annotations", "malformed annotations")):
            if counts[key]:
                log.warning("face_mask_detection: skipped %d %s (first: %s)", counts[key], what, first_bad[key])
        log.info("face_mask_detection: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
        if not counts["examples"]:
            raise MaskclfError(f"{annotations_dir.parent}: no usable photo (every annotation lacks a readable image)")
        self.info.metadata["counts"] = counts


def load_face_mask_detection(source_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                             split: str = "train", *, rebuild: bool = False) -> tf.data.Dataset:
    """Build (once) and load the Face Mask Detection photos as a ``tf.data.Dataset``.

    Elements: ``{"image": uint8 (H, W, 3), "image/filename": string,
    "objects": {"bbox": float32 (N, 4) normalised ymin, xmin, ymax, xmax, "label": int64 (N,)}}``,
    label indices into :data:`CLASS_NAMES`.

    Args:
        source_dir: the VOC folder (``images/`` + ``annotations/``); only read, never written.
        data_dir: where TFDS keeps the prepared data; defaults to ``maskclf.files.cache_dir("tfds")``.
            A second call with the same ``data_dir`` reuses it without reading the photos again.
        split: a TFDS split spec ("train", "train[:80%]", ...).
        rebuild: regenerate even when prepared data exists (after editing the source folder).

    Raises:
        MaskclfError: the source folder is missing or not VOC, or ``data_dir`` already holds the
            dataset built from another source folder (pass ``rebuild=True`` or another ``data_dir``).
    """
    source = Path(source_dir)
    data_dir = Path(data_dir) if data_dir is not None else cache_dir("tfds")
    builder = FaceMaskDetection(data_dir=os.fspath(data_dir), source_dir=source)
    # The test download_and_prepare uses (is_prepared() warns about a missing folder).
    if builder.data_path.exists() and not rebuild:
        built_from = (builder.info.metadata or {}).get("source_dir")
        if built_from and built_from != str(source.resolve()):
            raise MaskclfError(f"{builder.data_dir}: holds face_mask_detection built from {built_from}, not {source}; "
                               "pass rebuild=True to rebuild it, or another data_dir")
    else:
        _source_layout(source)  # a clear error before TFDS starts writing
    mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD if rebuild else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(download_mode=mode))
    return builder.as_dataset(split=split)
