"""Classify detected faces with an exported .tflite model (ai-edge-litert; no TensorFlow).

Crops match training: :func:`maskclf.data.images.square_box` (what ``crop_face`` cuts) with the run's ``crop_margin`` (from
metadata.json), resized bilinearly to the model's size by Pillow like ``images.load_array``. All faces
of a frame go through the interpreter in one call.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from maskclf.edge import runtime as _export
from maskclf.files import MaskclfError, read_labels
from maskclf.data.images import square_box

# Smallest and fastest first: what a device wants when the export folder offers a choice.
PRECISION_PREFERENCE = ("int8", "dynamic", "float16", "float32")


@dataclass(frozen=True)
class Face:
    """One classified face.

    Attributes:
        box: (x1, y1, x2, y2) in image pixels.
        label: the predicted class name.
        score: the probability of ``label``.
        probs: probability per class name (labels.txt order).
        detector_score: the face detector's confidence in the box.
    """

    box: tuple
    label: str
    score: float
    probs: dict = field(default_factory=dict)
    detector_score: float = 1.0

    def to_json(self) -> dict:
        """``{"box": [x1, y1, x2, y2], "label", "score", "detector_score", "probs"}`` with plain numbers."""
        return {"box": [int(round(v)) for v in self.box], "label": self.label, "score": round(float(self.score), 4),
                "detector_score": round(float(self.detector_score), 4),
                "probs": {k: round(float(v), 4) for k, v in self.probs.items()}}


def _find_model(path: Path, precision: str | None) -> tuple[Path, dict | None]:
    """The .tflite to load and the metadata.json beside it (None if absent)."""
    if path.is_dir():
        meta_path = path / "metadata.json"
        meta = _read_json(meta_path) if meta_path.is_file() else None
        files = {p.stem.removeprefix("model_"): p for p in sorted(path.glob("model_*.tflite"))}
        if not files:
            files = {p.stem: p for p in sorted(path.glob("*.tflite"))}
        if not files:
            raise MaskclfError(f"{path}: no .tflite model in this folder; pass an export folder made by "
                               "`maskclf export RUN_DIR` (RUN_DIR/export) or a .tflite file")
        if precision:
            if precision not in files:
                raise MaskclfError(f"{path}: no {precision} model here (found {', '.join(files)}); "
                                   f"choose one of those or export it with `maskclf export --quantize {precision}`")
            return files[precision], meta
        for p in PRECISION_PREFERENCE:
            if p in files:
                return files[p], meta
        return next(iter(files.values())), meta
    if not path.exists():
        raise MaskclfError(f"{path}: model not found; pass an export folder (RUN_DIR/export) or a .tflite file")
    meta_path = path.parent / "metadata.json"
    return path, _read_json(meta_path) if meta_path.is_file() else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise MaskclfError(f"{path}: unreadable metadata.json; copy the export folder again") from None
    if not isinstance(data, dict):
        raise MaskclfError(f"{path}: metadata.json is not an object; copy the export folder again")
    return data


class FaceClassifier:
    """A .tflite face-mask classifier with the input contract of its metadata.json.

    Args:
        model: an export folder (``RUN_DIR/export``) or a ``.tflite`` file; a file's packed
            metadata is used, else the metadata.json beside it.
        num_threads: interpreter threads.
        precision: which ``model_<precision>.tflite`` of a folder (default: the smallest present,
            int8 > dynamic > float16 > float32).

    Raises:
        MaskclfError: missing or corrupt model, no metadata, or a model whose input does not fit it.
    """

    def __init__(self, model: str | os.PathLike, num_threads: int = 1, precision: str | None = None):
        if int(num_threads) < 1:
            raise MaskclfError(f"--threads must be at least 1, got {num_threads}")
        self.model_path, beside = _find_model(Path(model), precision)
        # Load first: a damaged file is reported as such, not as missing metadata.
        self.interpreter = _export.load_interpreter(self.model_path, num_threads=num_threads)
        try:
            packed = _export.read_tflite_metadata(self.model_path)
        except MaskclfError:
            packed = None
        # The packed copy belongs to this very file; the folder's metadata.json is the fallback.
        meta = packed or beside
        if packed and beside and packed.get("class_names") != beside.get("class_names"):
            raise MaskclfError(f"{self.model_path}: its packed class names differ from the metadata.json beside it; "
                               "copy the whole export folder again")
        if meta is None:
            raise MaskclfError(f"{self.model_path}: no metadata (none packed in the file, no metadata.json beside "
                               "it); re-export the run with `maskclf export RUN_DIR`")
        try:
            self.class_names = [str(n) for n in meta["class_names"]]
            inp = meta["input"]
            self.size = int(inp["height"])
            self.crop_margin = float(inp["crop_margin"])
        except (KeyError, TypeError, ValueError):
            raise MaskclfError(f"{self.model_path}: metadata lacks class_names or input size/crop_margin; "
                               "re-export the run with `maskclf export RUN_DIR`") from None
        labels = self.model_path.parent / "labels.txt"
        if labels.is_file() and (names := read_labels(labels)) != self.class_names:
            raise MaskclfError(f"{labels}: lists {', '.join(names)} but {self.model_path.name} was exported for "
                               f"{', '.join(self.class_names)}; copy the whole export folder again")
        self.threshold = meta.get("decision_threshold")
        self.metadata = meta
        d = self.interpreter.get_input_details()[0]
        o = self.interpreter.get_output_details()[0]
        shape = [int(v) for v in d["shape"]]
        if len(shape) != 4 or shape[1:] != [self.size, int(inp.get("width", self.size)), 3]:
            raise MaskclfError(f"{self.model_path}: model input {shape} does not fit metadata.json "
                               f"({self.size}x{self.size}x3); the model and metadata come from different exports, "
                               "copy the whole export folder again")
        if int(o["shape"][-1]) != len(self.class_names):
            raise MaskclfError(f"{self.model_path}: model has {int(o['shape'][-1])} outputs but metadata lists "
                               f"{len(self.class_names)} classes; copy the whole export folder again")
        self.input_dtype = np.dtype(d["dtype"]).name
        self.dynamic_batch = int(d["shape_signature"][0]) == -1
        self.precision = (meta.get("model") or {}).get("precision") or self.model_path.stem.removeprefix("model_")

    def crops(self, image: Image.Image | np.ndarray, boxes: Sequence[Sequence[float]],
              bgr: bool = False) -> tuple[np.ndarray, list[int]]:
        """Model-ready RGB crops (N, S, S, 3) uint8 of the boxes that lie in the image, and their indices.

        Only the face pixels are copied: a Pillow image is cropped as it is, a NumPy frame is sliced.
        A BGR frame's channels are swapped after the resize, on the S×S result (resizing works per
        channel, so the pixels are those of Pillow's crop of the RGB frame, at a fraction of the cost
        of swapping a large face's crop).
        """
        if isinstance(image, Image.Image) and image.mode == "RGB" and not bgr:
            w, h = image.size
            frame = None
        else:
            frame = np.asarray(image, np.uint8)  # no copy for a uint8 array
            h, w = frame.shape[:2]
        squares, kept = [], []
        for i, b in enumerate(boxes):
            sq = square_box(tuple(b[:4]), self.crop_margin, w, h)
            if sq is not None:
                squares.append(sq)
                kept.append(i)
        size = (self.size, self.size)
        out = np.empty((len(squares), self.size, self.size, 3), np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(squares):
            crop = image.crop((x1, y1, x2, y2)) if frame is None else \
                Image.fromarray(np.ascontiguousarray(frame[y1:y2, x1:x2]))
            out[k] = np.asarray(crop.resize(size, Image.BILINEAR))
        if bgr and len(out):
            out = np.ascontiguousarray(out[..., ::-1])
        return out, kept

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) float32 of model-ready crops, all in one interpreter call."""
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return _export.predict_tflite(self.interpreter, crops, batch_size=max(1, len(crops)))

    def decide(self, probs: np.ndarray) -> tuple[int, float]:
        """The class index and its probability: the run's threshold for two classes, else argmax."""
        if len(self.class_names) == 2 and self.threshold is not None:
            k = 0 if probs[0] >= self.threshold else 1
        else:
            k = int(np.argmax(probs))
        return k, float(probs[k])

    def classify(self, image: Image.Image | np.ndarray, boxes: Sequence[Sequence[float]],
                 bgr: bool = False) -> list[Face]:
        """Classify every face box of an RGB image in one batch.

        Args:
            image: the whole frame, RGB (PIL image or uint8 array).
            boxes: ``(x1, y1, x2, y2[, detector_score])`` per face.
            bgr: ``image`` is a BGR uint8 array (an OpenCV frame).

        Returns:
            One :class:`Face` per box lying in the image, in the order given.
        """
        crops, kept = self.crops(image, boxes, bgr=bgr)
        probs = self.predict(crops)
        faces = []
        for i, p in zip(kept, probs):
            k, score = self.decide(p)
            b = boxes[i]
            faces.append(Face(tuple(float(v) for v in b[:4]), self.class_names[k], score,
                              dict(zip(self.class_names, (float(v) for v in p))),
                              float(b[4]) if len(b) > 4 else 1.0))
        return faces

    def describe(self) -> dict:
        """Model file, precision, classes, input size, crop margin, threshold and how many averaged networks
        the file holds (``maskclf ensemble``: each face costs that many networks' time), for JSON outputs."""
        return {"file": str(self.model_path), "precision": self.precision, "class_names": self.class_names,
                "input_size": self.size, "input_dtype": self.input_dtype, "crop_margin": self.crop_margin,
                "decision_threshold": self.threshold,
                "ensemble_members": int(self.metadata.get("ensemble_members") or 1)}
