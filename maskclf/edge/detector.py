"""Face detectors for the device runtime: YuNet (default), MediaPipe's BlazeFace (what phones run) and
OpenCV's Haar cascade (fallback).

All take an RGB uint8 image and return face boxes ``(x1, y1, x2, y2, score)`` in its pixels, clipped
to the image. Faces of ~20 px (crowd photos) are near YuNet's lower limit: ``upscale=k`` also runs
the detector on the image enlarged k× and merges both passes, and ``tile=T`` splits the enlarged
image into overlapping T×T tiles so the detector never needs a huge input at once.

Only numpy, opencv-python-headless and (BlazeFace) ai-edge-litert; no TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from maskclf.files import MaskclfError

MODELS_DIR = Path(__file__).resolve().parent / "models"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
HAAR_FILE = "haarcascade_frontalface_default.xml"
BLAZEFACE_FILE = "face_detection_short_range.tflite"
BLAZEFACE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
DETECTORS = ("yunet", "blazeface", "haar")

Box = tuple  # (x1, y1, x2, y2, score): floats in image pixels


def _cv2():
    try:
        import cv2
    except ImportError:
        raise MaskclfError("opencv-python-headless is not installed; pip install 'maskclf[edge]'") from None
    return cv2


def _read_model(model_path: str | Path | None, shipped: str, sha256: str, what: str) -> tuple[Path, bytes]:
    """(path, bytes) of a detector's model file: ``model_path``, or the copy shipped in :data:`MODELS_DIR`, whose
    sha256 must be ``sha256``; one-line errors naming the file."""
    path = Path(model_path) if model_path else MODELS_DIR / shipped
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MaskclfError(f"{path}: {what} model not found; reinstall maskclf or pass the {path.suffix} "
                           "file") from None
    except OSError as e:
        raise MaskclfError(f"{path}: cannot read the {what} model ({e.strerror})") from None
    if model_path is None and hashlib.sha256(data).hexdigest() != sha256:
        raise MaskclfError(f"{path}: sha256 differs from the shipped {what} model (corrupt install); "
                           "reinstall maskclf")
    return path, data


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(rgb) -> [(x1, y1, x2, y2, score), ...]``.

    A detector may also offer ``detect_bgr(bgr)`` for OpenCV's frames; the pipeline then skips the
    per-frame channel conversion.
    """

    name: str

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Face boxes ``(x1, y1, x2, y2, score)`` in pixels of an RGB uint8 frame."""
        ...


def _check_frame(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] < 1 or image.shape[1] < 1:
        raise MaskclfError(f"detect expects an RGB uint8 image (H, W, 3; BGR for detect_bgr), got {image.dtype} {image.shape}")
    return image


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """Area shared by two ``(x1, y1, x2, y2, ...)`` boxes (0 when they do not overlap)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2, ...)`` boxes."""
    inter = intersection(a, b)
    if inter <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """(len(a), len(b)) intersection over union of ``(x1, y1, x2, y2, ...)`` boxes, as :func:`iou` pair by pair."""
    a = np.asarray([x[:4] for x in a], np.float64).reshape(-1, 4)
    b = np.asarray([x[:4] for x in b], np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter > 0) & (union > 0), inter / np.where(union > 0, union, 1.0), 0.0)


# The same face's detector box and annotated box: the detector's includes the forehead, so a good detection of an
# annotated face often overlaps it only ~0.5 (framing fits and data.detector_train pair them at this IoU).
ANNOTATION_MATCH_IOU = 0.4


def reframe(box: Sequence[float], framing: Sequence[float] | None, width: float | None = None,
            height: float | None = None) -> tuple:
    """A detector's box moved onto where a person annotating faces draws it (``framing`` = ``(dx, dy, sw, sh)``:
    the centre moves by ``dx`` box widths and ``dy`` box heights, the width and height scale by ``sw``, ``sh``),
    clipped to a ``width`` x ``height`` image when given; extra fields (the score) are kept. ``framing=None``
    returns the box as it is."""
    if framing is None:
        return tuple(box)
    dx, dy, sw, sh = framing
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
    x1, y1, x2, y2 = cx - sw * w / 2, cy - sh * h / 2, cx + sw * w / 2, cy + sh * h / 2
    if width is not None and height is not None:
        x1, x2 = min(max(x1, 0.0), float(width)), min(max(x2, 0.0), float(width))
        y1, y2 = min(max(y1, 0.0), float(height)), min(max(y2, 0.0), float(height))
    return (x1, y1, x2, y2, *box[4:])


def nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of (N, 5) ``x1, y1, x2, y2, score`` rows; kept rows, best first."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    order = np.argsort(-boxes[:, 4], kind="stable")
    b = boxes[order]
    area = np.maximum(0, b[:, 2] - b[:, 0]) * np.maximum(0, b[:, 3] - b[:, 1])
    keep, alive = [], np.ones(len(b), bool)
    for i in range(len(b)):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= _iou_with_row(b, area, i) <= threshold
    return b[keep]


def _iou_with_row(b: np.ndarray, area: np.ndarray, i: int) -> np.ndarray:
    """IoU of box row ``i`` of ``b`` with every row (``area``: the rows' areas), for the suppression loops."""
    iw = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
    inter = iw * ih
    return inter / np.maximum(area[i] + area - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """MediaPipe's weighted non-maximum suppression of (N, 5) ``x1, y1, x2, y2, score`` rows: the best box and
    every box overlapping it by IoU > ``threshold`` become one box, their score-weighted mean, with the best
    score; kept rows, best first."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    b = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    area = np.maximum(0, b[:, 2] - b[:, 0]) * np.maximum(0, b[:, 3] - b[:, 1])
    out, alive = [], np.ones(len(b), bool)
    for i in range(len(b)):
        if not alive[i]:
            continue
        group = alive & (_iou_with_row(b, area, i) > threshold)
        group[i] = True
        w = b[group, 4:5]
        out.append(np.append((b[group, :4] * w).sum(0) / w.sum(), b[i, 4]))
        alive &= ~group
    return np.asarray(out, b.dtype)


def _tiles(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least ``overlap`` px overlap."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


class _ScaledDetector:
    """Upscaling, tiling, minimum size, clipping and merging around a raw single-pass detector.

    ``framing`` is where people annotating faces draw a face's box relative to this detector's box
    (:func:`reframe`); the pipeline reports, draws and crops the reframed box, as the training crops were cut
    around annotated boxes. The values are the medians over the faces of VOC's training photos
    (``python bench/framing.py``).
    """

    name = "detector"
    framing: tuple | None = None

    def __init__(self, score_threshold: float, nms_threshold: float = 0.3, min_face: int = 0,
                 upscale: float = 1.0, tile: int = 0, tile_overlap: float = 0.25):
        if not 0.0 <= score_threshold <= 1.0:
            raise MaskclfError(f"score threshold must lie in [0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise MaskclfError(f"NMS threshold must lie in (0, 1], got {nms_threshold}")
        if min_face < 0:
            raise MaskclfError(f"minimum face size must be >= 0 px, got {min_face}")
        if not 1.0 <= upscale <= 8.0:
            raise MaskclfError(f"upscale must lie between 1 and 8, got {upscale}")
        if tile and tile < 64:
            raise MaskclfError(f"tile size must be 0 (off) or at least 64 px, got {tile}")
        if not 0.0 <= tile_overlap < 0.9:
            raise MaskclfError(f"tile overlap must lie in [0, 0.9), got {tile_overlap}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face = int(min_face)
        self.upscale = float(upscale)
        self.tile = int(tile)
        self.tile_overlap = float(tile_overlap)

    def _raw(self, bgr: np.ndarray) -> np.ndarray:
        """(N, 5) ``x1, y1, x2, y2, score`` on one BGR image, no post-processing."""
        raise NotImplementedError

    def _pass(self, bgr: np.ndarray, tiled: bool = True) -> np.ndarray:
        """One scale: the whole image, or overlapping tiles merged without the half faces cut by tile edges."""
        h, w = bgr.shape[:2]
        if not tiled or not self.tile or (h <= self.tile and w <= self.tile):
            return self._raw(bgr)
        overlap = int(self.tile * self.tile_overlap)
        boxes, cut = [], []
        for y0 in _tiles(h, self.tile, overlap):
            for x0 in _tiles(w, self.tile, overlap):
                part = self._raw(np.ascontiguousarray(bgr[y0:y0 + self.tile, x0:x0 + self.tile]))
                if not len(part):
                    continue
                th, tw = min(self.tile, h - y0), min(self.tile, w - x0)
                edge = 2.0
                c = np.zeros(len(part), bool)
                if x0 > 0:
                    c |= part[:, 0] <= edge
                if y0 > 0:
                    c |= part[:, 1] <= edge
                if x0 + tw < w:
                    c |= part[:, 2] >= tw - edge
                if y0 + th < h:
                    c |= part[:, 3] >= th - edge
                part[:, [0, 2]] += x0
                part[:, [1, 3]] += y0
                boxes.append(part)
                cut.append(c)
        if not boxes:
            return np.zeros((0, 5), np.float32)
        boxes, cut = np.concatenate(boxes), np.concatenate(cut)
        # A face cut by an inner tile edge lies whole in the neighbouring tile when smaller than the overlap:
        # drop the cut box when a whole one covers most of it. Larger faces are cut in every tile: kept.
        whole = boxes[~cut]
        keep = ~cut
        for i in np.flatnonzero(cut):
            b = boxes[i]
            iw = np.clip(np.minimum(b[2], whole[:, 2]) - np.maximum(b[0], whole[:, 0]), 0, None)
            ih = np.clip(np.minimum(b[3], whole[:, 3]) - np.maximum(b[1], whole[:, 1]), 0, None)
            area = max(1e-6, float((b[2] - b[0]) * (b[3] - b[1])))
            keep[i] = not len(whole) or float((iw * ih).max()) / area < 0.5
        return boxes[keep]

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Faces of an RGB uint8 image (H, W, 3), best score first.

        Returns:
            ``[(x1, y1, x2, y2, score), ...]`` floats in the image's pixels, clipped to it.
        """
        cv2 = _cv2()
        rgb = _check_frame(rgb)
        return self._detect(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))  # 6x faster than [..., ::-1]

    def detect_bgr(self, bgr: np.ndarray) -> list[Box]:
        """:meth:`detect` on a BGR frame as OpenCV captures it: no channel conversion at all."""
        return self._detect(np.ascontiguousarray(_check_frame(bgr)))

    def _detect(self, bgr: np.ndarray) -> list[Box]:
        cv2 = _cv2()
        h, w = bgr.shape[:2]
        # With upscaling only the enlarged pass is tiled: the whole-image pass keeps the faces larger than
        # a tile's overlap, which no tile holds whole.
        found = [self._pass(bgr, tiled=self.upscale == 1.0)]
        if self.upscale > 1.0:
            big = cv2.resize(bgr, (int(round(w * self.upscale)), int(round(h * self.upscale))),
                             interpolation=cv2.INTER_LINEAR)
            up = self._pass(big)
            up[:, :4] /= self.upscale
            found.append(up)
        boxes = np.concatenate(found).astype(np.float64)
        if len(boxes):
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
            side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            boxes = boxes[(side >= max(1.0, self.min_face)) & (boxes[:, 4] >= self.score_threshold)]
        boxes = self._suppress(boxes)
        return [tuple(float(v) for v in b) for b in boxes]

    def _suppress(self, boxes: np.ndarray) -> np.ndarray:
        """Overlapping boxes of all passes and tiles merged into one per face (greedy NMS)."""
        return nms(boxes, self.nms_threshold)

    def describe(self) -> dict:
        """The detector's settings (written into JSON outputs)."""
        return {"name": self.name, "score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "min_face": self.min_face, "upscale": self.upscale, "tile": self.tile}


class YuNetDetector(_ScaledDetector):
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``); finds masked and turned faces.

    Args:
        model_path: the ONNX file; default the copy shipped in ``maskclf/edge/models`` (sha256 checked).
        score_threshold: minimum face confidence (0..1).
        nms_threshold: IoU above which overlapping boxes are merged.
        min_face: drop faces whose shorter side is below this many pixels.
        upscale: also detect on the image enlarged this many times (2-3 finds ~15-25 px faces).
        tile: detect in overlapping tiles of this many pixels (0: whole image): the enlarged pass when
            upscaling (bounded input size), else the image itself (then faces larger than a quarter of a
            tile may be missed).
        top_k: boxes kept before NMS per pass.
    """

    name = "yunet"
    framing = (0.019, 0.136, 1.042, 0.897)  # VOC's boxes sit 14 % of YuNet's height lower, 10 % shorter

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, min_face: int = 0, upscale: float = 1.0, tile: int = 0,
                 tile_overlap: float = 0.25, top_k: int = 5000):
        super().__init__(score_threshold, nms_threshold, min_face, upscale, tile, tile_overlap)
        cv2 = _cv2()
        if not hasattr(cv2, "FaceDetectorYN"):
            raise MaskclfError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; "
                               "pip install 'opencv-python-headless>=4.10,<5' or use --detector haar")
        path, data = _read_model(model_path, YUNET_FILE, YUNET_SHA256, "YuNet")
        try:
            # The buffer overload: the bytes just checked are the bytes loaded.
            self._net = cv2.FaceDetectorYN.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8),
                                                  (320, 320), 0.0, 1.0, int(top_k))
        except cv2.error as e:
            msg = str(e).strip().splitlines()[-1][:160] if str(e).strip() else "cv2.error"
            raise MaskclfError(f"{path}: not a YuNet ONNX model OpenCV can load ({msg})") from None
        # The detector's own threshold and NMS stay open: ours apply once after merging scales and tiles.
        self._net.setScoreThreshold(max(0.0, min(self.score_threshold, 0.99)))
        self._net.setNMSThreshold(self.nms_threshold)
        self.model_path = path

    def landmarks(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's raw rows on one BGR image, one pass: (N, 15) ``x, y, w, h``, five landmarks ``(x, y)``
        (right eye, left eye, nose tip, right and left mouth corner), score."""
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else np.asarray(faces, np.float32)

    def _raw(self, bgr: np.ndarray) -> np.ndarray:
        faces = self.landmarks(bgr)
        if not len(faces):
            return np.zeros((0, 5), np.float32)
        x, y, bw, bh, score = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3], faces[:, -1]
        return np.stack([x, y, x + bw, y + bh, score], 1).astype(np.float32)


class HaarDetector(_ScaledDetector):
    """OpenCV's Haar frontal-face cascade: the seed project's detector, kept as a fallback.

    It misses most masked and turned faces; its score is a logistic of the cascade's level weight
    (a ranking value, not a probability).

    Args:
        score_threshold: minimum score (0..1; 0.5 is a level weight of 0).
        nms_threshold, min_face, upscale, tile: as for :class:`YuNetDetector`.
        scale_factor, min_neighbors: ``detectMultiScale`` settings.
    """

    name = "haar"
    framing = (0.005, 0.130, 0.824, 0.893)

    def __init__(self, score_threshold: float = 0.0, nms_threshold: float = 0.3, min_face: int = 0,
                 upscale: float = 1.0, tile: int = 0, tile_overlap: float = 0.25, scale_factor: float = 1.1,
                 min_neighbors: int = 4, cascade_path: str | Path | None = None):
        super().__init__(score_threshold, nms_threshold, min_face, upscale, tile, tile_overlap)
        cv2 = _cv2()
        if cascade_path is None:
            haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if not haar_dir:
                raise MaskclfError("this OpenCV build ships no Haar cascades (OpenCV 5 dropped them); "
                                   "pip install 'opencv-python-headless<5' or use --detector yunet")
            cascade_path = Path(haar_dir) / HAAR_FILE
        path = Path(cascade_path)
        self._cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if self._cascade is None or self._cascade.empty():
            raise MaskclfError(f"{path}: Haar cascade not found or unreadable; reinstall opencv-python-headless<5 "
                               "or use --detector yunet")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.model_path = path

    def _raw(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, outputRejectLevels=True)
        if rects is None or not len(rects):
            return np.zeros((0, 5), np.float32)
        r = np.asarray(rects, np.float32).reshape(-1, 4)
        s = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        return np.stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3], s], 1)


def ssd_anchors(size: int, strides: Sequence[int], per_layer: int) -> np.ndarray:
    """(N, 2) anchor centres (x, y in 0..1) of a MediaPipe SSD face model, in its output order.

    MediaPipe's ``SsdAnchorsCalculator`` with fixed-size anchors: a ``size``/stride grid per distinct stride,
    ``per_layer`` anchors per cell for each layer of that stride (2 with an interpolated scale, else 1).
    """
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = size // strides[i]
        yy, xx = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


class BlazeFaceDetector(_ScaledDetector):
    """MediaPipe's BlazeFace short-range face detector through ai-edge-litert: the network MediaPipe Tasks'
    ``FaceDetector`` runs on Android and iOS (there as a float16 build), so a phone app's boxes are these boxes.

    The frame is letterboxed onto the 128×128 input as MediaPipe does (aspect kept, bilinear, zero border,
    pixels to [-1, 1]), the 896 SSD anchors are decoded, and overlapping boxes are merged by MediaPipe's
    weighted suppression; the boxes match MediaPipe Tasks' (tests/test_export.py). Made for faces within ~2 m
    of a phone camera: in VOC's street photos it finds far fewer faces than YuNet unless ``tile`` (and
    ``upscale``) give it the small ones at a larger size (docs/BENCHMARKS.md section 3).

    Args:
        model_path: the .tflite; default the copy shipped in ``maskclf/edge/models`` (sha256 checked).
        score_threshold: minimum face confidence (MediaPipe's ``min_detection_confidence``, 0.5).
        nms_threshold: IoU above which boxes are merged (MediaPipe's ``min_suppression_threshold``, 0.3).
        min_face, upscale, tile, tile_overlap: as for :class:`YuNetDetector`.
        num_threads: LiteRT threads.
    """

    name = "blazeface"
    framing = (-0.008, 0.057, 0.918, 1.055)  # VOC's boxes: 6 % of BlazeFace's height lower, 8 % narrower

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.5,
                 nms_threshold: float = 0.3, min_face: int = 0, upscale: float = 1.0, tile: int = 0,
                 tile_overlap: float = 0.25, num_threads: int = 1):
        super().__init__(score_threshold, nms_threshold, min_face, upscale, tile, tile_overlap)
        from maskclf.edge.runtime import load_interpreter

        path, data = _read_model(model_path, BLAZEFACE_FILE, BLAZEFACE_SHA256, "BlazeFace")
        it = load_interpreter(data, num_threads=num_threads)
        inp = it.get_input_details()[0]
        outs = sorted(it.get_output_details(), key=lambda d: int(d["shape"][-1]))
        if (len(outs) != 2 or list(inp["shape"]) != [1, 128, 128, 3] or int(outs[0]["shape"][-1]) != 1
                or int(outs[1]["shape"][-1]) != 16 or int(outs[0]["shape"][1]) != 896):
            raise MaskclfError(f"{path}: not a BlazeFace short-range model (input {list(inp['shape'])}, outputs "
                               f"{[list(o['shape']) for o in outs]}; expected [1, 128, 128, 3] -> 896 boxes)")
        self._it, self._input = it, inp["index"]
        self._scores, self._regressors = outs[0]["index"], outs[1]["index"]
        self.size = 128
        self.anchors = ssd_anchors(self.size, (8, 16, 16, 16), 2)
        self.model_path = path

    def _raw(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        h, w = bgr.shape[:2]
        s = self.size
        scale = s / max(h, w)
        px, py = (s - w * scale) / 2, (s - h * scale) / 2
        warp = np.float32([[scale, 0, px], [0, scale, py]])
        canvas = cv2.warpAffine(bgr, warp, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(0, 0, 0))
        x = canvas[None, :, :, ::-1].astype(np.float32) / 127.5 - 1.0
        self._it.set_tensor(self._input, x)
        self._it.invoke()
        logits = np.clip(self._it.get_tensor(self._scores)[0, :, 0], -80, 80)
        score = 1.0 / (1.0 + np.exp(-logits))
        keep = score >= min(self.score_threshold, 0.99)
        if not keep.any():
            return np.zeros((0, 5), np.float32)
        r, a = self._it.get_tensor(self._regressors)[0, keep, :4] / s, self.anchors[keep]
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        rows = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2, score[keep]], 1)
        rows[:, [0, 2]] = (rows[:, [0, 2]] * s - px) / scale  # letterbox -> frame pixels
        rows[:, [1, 3]] = (rows[:, [1, 3]] * s - py) / scale
        return rows.astype(np.float32)

    def _suppress(self, boxes: np.ndarray) -> np.ndarray:
        return weighted_nms(boxes, self.nms_threshold)


def create_detector_class(name: str) -> type:
    """The detector class of a name of :data:`DETECTORS` (case-insensitive), or a one-line error."""
    classes = {"yunet": YuNetDetector, "blazeface": BlazeFaceDetector, "haar": HaarDetector}
    key = str(name).strip().lower()
    if key not in classes:
        raise MaskclfError(f"unknown face detector {name!r}; choose from {', '.join(DETECTORS)}")
    return classes[key]


def framing_table() -> dict:
    """Every known detector's ``framing`` and the rule that applies it (each export's metadata.json carries it, so
    a phone app moves its detector's box as :func:`reframe` does)."""
    return {"rule": "a detector box (x1, y1, x2, y2), w = x2 - x1, h = y2 - y1: move its centre by "
                    "(dx * w, dy * h), make it sw * w wide and sh * h high, clip it to the frame; then crop as above "
                    "(the training crops were cut around hand-drawn boxes, which sit there)",
            **{name: list(create_detector_class(name).framing) for name in DETECTORS}}


def create_detector(name: str = "yunet", **options) -> _ScaledDetector:
    """A detector by name (``yunet``, ``blazeface`` or ``haar``); ``options`` go to its constructor.

    Options left as None take the detector's own default (score threshold: YuNet 0.6, BlazeFace 0.5, Haar 0).
    """
    return create_detector_class(name)(**{k: v for k, v in options.items() if v is not None})
