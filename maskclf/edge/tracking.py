"""Keep each face's tag across video frames: a greedy IoU tracker over the detector's boxes (numpy only).

A frame's classified faces are matched to the tracks of the frames before by box overlap
(:func:`match`: greedy, highest IoU first, IoU ≥ 0.3). A track keeps an id and an exponential moving
average of its face's class probabilities; the label and score a face is shown with are the classifier's
decision rule (``FaceClassifier.decide``) applied to that average, so one odd frame of a small, blurred
face does not flip its tag. A track no face matched for more than ``max_missed`` frames is dropped;
an unmatched face starts a new track with a new id.

    tracker = IouTracker(classifier.class_names, classifier.decide)
    for frame in frames:
        for face, track_id in tracker.update(pipeline.process(frame, bgr=True).faces):
            ...
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from maskclf.edge.classifier import Face
from maskclf.edge.detector import iou
from maskclf.files import MaskclfError

IOU_THRESHOLD = 0.3
MAX_MISSED = 5
ALPHA = 0.3  # weight of the newest frame: a one-frame swing from 0.9 to 0.1 moves the average to 0.66 only


def match(previous: Sequence[Sequence[float]], current: Sequence[Sequence[float]],
          threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """Pair boxes of two frames: greedily, highest IoU first, each box at most once, IoU ≥ ``threshold``.

    Args:
        previous, current: ``(x1, y1, x2, y2, ...)`` boxes.
        threshold: the smallest IoU that counts as the same face.

    Returns:
        ``(index in previous, index in current)`` pairs, highest IoU first.
    """
    pairs = [(v, i, j) for i, a in enumerate(previous) for j, b in enumerate(current)
             if (v := iou(a, b)) >= threshold]
    pairs.sort(key=lambda p: -p[0])  # stable: ties keep the earlier boxes first
    used_prev, used_cur, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_prev and j not in used_cur:
            used_prev.add(i)
            used_cur.add(j)
            out.append((i, j))
    return out


def _argmax(probs: np.ndarray) -> tuple[int, float]:
    k = int(np.argmax(probs))
    return k, float(probs[k])


@dataclass
class Track:
    """One face followed across frames: its id, last box, smoothed probabilities and frames since last seen."""

    id: int
    box: tuple
    probs: np.ndarray
    missed: int = 0
    frames: int = 1


class IouTracker:
    """Match each frame's faces to tracks by IoU and give them the track's smoothed label.

    Args:
        class_names: the classifier's class names (the order of the probability vectors).
        decide: probabilities (C,) -> (class index, score); ``FaceClassifier.decide`` (default argmax).
        iou_threshold: the smallest IoU between a track's last box and a face to be the same face.
        max_missed: frames a track survives without a matching face.
        alpha: weight of the newest frame in the moving average of the probabilities (1 = no smoothing).

    Raises:
        MaskclfError: an option out of range.
    """

    def __init__(self, class_names: Sequence[str], decide: Callable[[np.ndarray], tuple[int, float]] | None = None,
                 iou_threshold: float = IOU_THRESHOLD, max_missed: int = MAX_MISSED, alpha: float = ALPHA):
        if not 0.0 < iou_threshold <= 1.0:
            raise MaskclfError(f"tracker IoU threshold must lie in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise MaskclfError(f"tracker max_missed must be >= 0 frames, got {max_missed}")
        if not 0.0 < alpha <= 1.0:
            raise MaskclfError(f"tracker alpha must lie in (0, 1], got {alpha}")
        self.class_names = list(class_names)
        self.decide = decide or _argmax
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.alpha = float(alpha)
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: Sequence[Face]) -> list[tuple[Face, int]]:
        """Advance one frame.

        Args:
            faces: this frame's classified faces.

        Returns:
            ``(face, track id)`` per face, in the order given; each face is a copy whose ``label``,
            ``score`` and ``probs`` are its track's smoothed decision (box and detector score unchanged).
        """
        pairs = match([t.box for t in self.tracks], [f.box for f in faces], self.iou_threshold)
        track_of = {j: self.tracks[i] for i, j in pairs}
        seen = set()
        out = []
        for j, face in enumerate(faces):
            p = np.array([face.probs.get(n, 0.0) for n in self.class_names], np.float64)
            t = track_of.get(j)
            if t is None:
                t = Track(self._next_id, tuple(face.box), p)
                self._next_id += 1
                self.tracks.append(t)
            else:
                t.probs = self.alpha * p + (1.0 - self.alpha) * t.probs
                t.box, t.missed = tuple(face.box), 0
                t.frames += 1
            seen.add(t.id)
            k, score = self.decide(t.probs)
            smoothed = replace(face, label=self.class_names[k], score=float(score),
                               probs={n: float(v) for n, v in zip(self.class_names, t.probs)})
            out.append((smoothed, t.id))
        for t in self.tracks:
            if t.id not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out


def count_flips(frames: Iterable[Sequence[tuple[Sequence[float], str]]],
                threshold: float = IOU_THRESHOLD) -> tuple[int, int]:
    """How often a face's label changes between consecutive frames.

    The same face in two consecutive frames is a pair of :func:`match` (so a flip rate means the same
    with tracking on and off).

    Args:
        frames: per frame, ``(box, label)`` per face.
        threshold: the IoU for the same face.

    Returns:
        ``(pairs, flips)``: matched consecutive-frame face pairs, and those whose label differs.
    """
    pairs = flips = 0
    prev: Sequence[tuple[Sequence[float], str]] = []
    for faces in frames:
        for i, j in match([b for b, _ in prev], [b for b, _ in faces], threshold):
            pairs += 1
            flips += prev[i][1] != faces[j][1]
        prev = faces
    return pairs, flips
