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

:meth:`IouTracker.step` takes the detector's boxes instead and classifies only the faces that need it: new
faces, and a tracked face every ``classify_every`` frames (its tag and probabilities are kept in between).
A crowd then costs the classifier 1/``classify_every`` of its per-frame time (``maskclf detect`` does this
with ``CLASSIFY_EVERY`` = 3, ``--classify-every 1`` classifies every face on every frame; the tracks' turns are
staggered by id, so a crowd that appears at once is not re-classified all on the same frame).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from maskclf.edge.classifier import Face
from maskclf.edge.detector import iou_matrix
from maskclf.files import MaskclfError

IOU_THRESHOLD = 0.3
MAX_MISSED = 5
ALPHA = 0.3  # weight of the newest frame: a one-frame swing from 0.9 to 0.1 moves the average to 0.66 only
# `maskclf detect` on videos and cameras: a tracked face goes to the classifier every 3rd frame. On a crowd video
# (28 faces a frame) the two-network default then keeps 0.87x YuNet's rate instead of 0.49x, with 96 % of the
# labels of classifying every frame and half the flips (docs/BENCHMARKS.md section 3, bench/video.py).
CLASSIFY_EVERY = 3


def match(previous: Sequence[Sequence[float]], current: Sequence[Sequence[float]],
          threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """Pair boxes of two frames: greedily, highest IoU first, each box at most once, IoU ≥ ``threshold``.

    Args:
        previous, current: ``(x1, y1, x2, y2, ...)`` boxes.
        threshold: the smallest IoU that counts as the same face.

    Returns:
        ``(index in previous, index in current)`` pairs, highest IoU first.
    """
    if not len(previous) or not len(current):
        return []
    v = iou_matrix(previous, current)  # one numpy pass: a crowd of 30 faces is 900 pairs per frame
    i, j = np.nonzero(v >= threshold)
    order = np.lexsort((j, i, -v[i, j]))  # highest IoU first; ties keep the earlier boxes first
    pairs = [(float(v[a, b]), int(a), int(b)) for a, b in zip(i[order], j[order])]
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
    since: int = 0  # frames since the classifier last saw this face


class IouTracker:
    """Match each frame's faces to tracks by IoU and give them the track's smoothed label.

    Args:
        class_names: the classifier's class names (the order of the probability vectors).
        decide: probabilities (C,) -> (class index, score); ``FaceClassifier.decide`` (default argmax).
        iou_threshold: the smallest IoU between a track's last box and a face to be the same face.
        max_missed: frames a track survives without a matching face.
        alpha: weight of the newest frame in the moving average of the probabilities (1 = no smoothing).
        classify_every: :meth:`step` re-classifies a tracked face every this many frames (1: every frame).

    Raises:
        MaskclfError: an option out of range.
    """

    def __init__(self, class_names: Sequence[str], decide: Callable[[np.ndarray], tuple[int, float]] | None = None,
                 iou_threshold: float = IOU_THRESHOLD, max_missed: int = MAX_MISSED, alpha: float = ALPHA,
                 classify_every: int = 1):
        if not 0.0 < iou_threshold <= 1.0:
            raise MaskclfError(f"tracker IoU threshold must lie in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise MaskclfError(f"tracker max_missed must be >= 0 frames, got {max_missed}")
        if not 0.0 < alpha <= 1.0:
            raise MaskclfError(f"tracker alpha must lie in (0, 1], got {alpha}")
        if int(classify_every) != classify_every or classify_every < 1:
            raise MaskclfError(f"--classify-every must be a whole number of frames >= 1, got {classify_every}")
        self.class_names = list(class_names)
        self.decide = decide or _argmax
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.alpha = float(alpha)
        self.classify_every = int(classify_every)
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
        return self._advance(list(faces), {j: self.tracks[i] for i, j in pairs})

    def step(self, boxes: Sequence[Sequence[float]],
             classify: Callable[[list], list[Face]]) -> list[tuple[Face, int]]:
        """Advance one frame from the detector's boxes, classifying only the faces whose turn it is.

        Args:
            boxes: this frame's ``(x1, y1, x2, y2[, detector_score])`` boxes.
            classify: boxes -> their classified faces (``FaceClassifier.classify`` on this frame), called
                once per frame at most, with the boxes of new faces and of tracks due for the classifier.

        Returns:
            As :meth:`update`, in the order of ``boxes``; a box ``classify`` dropped (outside the frame)
            gives no face. With ``classify_every=1`` the same as ``update(classify(boxes))``.
        """
        pairs = match([t.box for t in self.tracks], boxes, self.iou_threshold)
        track_of = {j: self.tracks[i] for i, j in pairs}
        due = [j for j in range(len(boxes)) if j not in track_of or track_of[j].since + 1 >= self.classify_every]
        by_box = {}
        if due:
            for f in classify([boxes[j] for j in due]):
                by_box.setdefault(tuple(f.box), f)
        faces, tracks, fresh = [], {}, set()
        for j, b in enumerate(boxes):
            key = tuple(float(v) for v in b[:4])
            t = track_of.get(j)
            if j in due:
                if key not in by_box:
                    continue  # the classifier dropped it (no pixels in the frame)
                face = by_box[key]
                fresh.add(len(faces))
            else:  # the track's own decision stands until its turn; the box follows the detector
                face = Face(key, "", 0.0, {}, float(b[4]) if len(b) > 4 else 1.0)
            if t is not None:
                tracks[len(faces)] = t
            faces.append(face)
        return self._advance(faces, tracks, classified=fresh)

    def _advance(self, faces: list[Face], track_of: dict[int, Track],
                 classified: set[int] | None = None) -> list[tuple[Face, int]]:
        """Move the tracks to this frame's ``faces`` (``track_of``: face index -> its matched track); the
        ``classified`` faces (default all) bring new probabilities, the others keep their track's."""
        seen = set()
        out = []
        for j, face in enumerate(faces):
            t = track_of.get(j)
            fresh = classified is None or j in classified
            if t is None:
                p = np.array([face.probs.get(n, 0.0) for n in self.class_names], np.float64)
                t = Track(self._next_id, tuple(face.box), p)
                t.since = t.id % self.classify_every  # stagger the turns of faces that appear together
                self._next_id += 1
                self.tracks.append(t)
            else:
                if fresh:
                    p = np.array([face.probs.get(n, 0.0) for n in self.class_names], np.float64)
                    t.probs = self.alpha * p + (1.0 - self.alpha) * t.probs
                    t.since = 0
                else:
                    t.since += 1
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
