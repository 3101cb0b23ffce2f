"""Detect and classify masked faces in photos, videos and camera streams (no TensorFlow).

``run_detect`` is what ``maskclf detect`` calls: photos give an annotated image each, videos and
cameras an annotated video with an FPS overlay, and ``json_path`` gets every face of every image or
frame (box, label, score) with timings. ``events`` appends one JSON line per video/camera frame as it
is processed (for a long-running camera service: nothing accumulates in memory).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from maskclf.edge.classifier import Face, FaceClassifier
from maskclf.edge.detector import FaceDetector, create_detector, reframe
from maskclf.edge.draw import draw_faces, draw_fps
from maskclf.edge.tracking import CLASSIFY_EVERY, IouTracker
from maskclf.files import MaskclfError, atomic_path, write_json
from maskclf.data.images import is_image_name, load_rgb

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp"}
WRITE_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_OUT = "detections"


@dataclass
class FrameResult:
    """The faces of one image or frame and the milliseconds each stage took."""

    faces: list[Face]
    timings_ms: dict = field(default_factory=dict)
    track_ids: list[int] | None = None  # per face, when a tracker followed them

    def to_json(self) -> dict:
        """The faces and the rounded stage timings as a JSON-ready dict."""
        return {"faces": [f.to_json() for f in self.faces],
                "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()}}


class FaceMaskPipeline:
    """Face detector + mask classifier: ``process(rgb)`` returns every face with its label.

    Args:
        classifier: a :class:`FaceClassifier` (an exported .tflite model).
        detector: any :class:`FaceDetector` (default YuNet).
        framing: move each detected box to where a person annotating the photo would have drawn it (the
            detector's ``framing``, :func:`maskclf.edge.detector.reframe`; clipped to the frame): the face is
            cropped as the training crops were cut, and reported, tracked and drawn with that box. False
            keeps the detector's boxes as they are.
    """

    def __init__(self, classifier: FaceClassifier, detector: FaceDetector | None = None, framing: bool = True):
        self.classifier = classifier
        self.detector = detector if detector is not None else create_detector("yunet")
        self.framing = getattr(self.detector, "framing", None) if framing else None

    def process(self, frame: np.ndarray, bgr: bool = False, tracker: IouTracker | None = None) -> FrameResult:
        """Detect and classify the faces of an RGB uint8 frame (H, W, 3); ``bgr=True`` for OpenCV's frames
        (with a ``tracker``: only the faces whose turn it is, see :meth:`classify`).

        A BGR frame is never converted whole when the detector offers ``detect_bgr`` (YuNet and Haar do):
        the detector takes it as it is and only the face crops are turned to RGB.
        """
        boxes, detect_ms = self.detect(frame, bgr)
        return self.classify(frame, boxes, detect_ms, bgr, tracker)

    def detect(self, frame: np.ndarray, bgr: bool = False) -> tuple[list, float]:
        """The face boxes of a frame (RGB, or BGR with ``bgr=True``), reframed (see the class), and the
        milliseconds detection took."""
        t0 = time.perf_counter()
        if not bgr:
            boxes = self.detector.detect(frame)
        elif hasattr(self.detector, "detect_bgr"):
            boxes = self.detector.detect_bgr(frame)
        else:
            import cv2

            boxes = self.detector.detect(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2RGB))
        if self.framing is not None:
            h, w = frame.shape[:2]
            boxes = [reframe(b, self.framing, w, h) for b in boxes]
        return boxes, (time.perf_counter() - t0) * 1e3

    def classify(self, frame: np.ndarray, boxes: list, detect_ms: float = 0.0, bgr: bool = False,
                 tracker: IouTracker | None = None) -> FrameResult:
        """Classify the detected ``boxes`` of ``frame``: the frame's :class:`FrameResult`.

        With a ``tracker`` the faces are its tracks' (ids in ``track_ids``), and only the faces whose turn
        it is go to the classifier (:meth:`IouTracker.step`); timings then add ``track``.
        """
        t = time.perf_counter()
        if tracker is None:
            faces = self.classifier.classify(frame, boxes, bgr=bgr)
            return FrameResult(faces, {"detect": detect_ms, "classify": (time.perf_counter() - t) * 1e3})
        spent = [0.0]

        def classify(chosen: list) -> list[Face]:
            t0 = time.perf_counter()
            try:
                return self.classifier.classify(frame, chosen, bgr=bgr)
            finally:
                spent[0] += time.perf_counter() - t0

        pairs = tracker.step(boxes, classify)
        total = time.perf_counter() - t
        return FrameResult([f for f, _ in pairs], {"detect": detect_ms, "classify": spent[0] * 1e3,
                                                   "track": (total - spent[0]) * 1e3}, [i for _, i in pairs])

    def stream(self, frames: Iterable[np.ndarray], bgr: bool = True, overlap: bool = True,
               tracker: IouTracker | None = None) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """(frame, result) for each frame of a stream, in order.

        With ``overlap`` (the default) a worker thread reads and detects frame t+1 while the caller's thread
        classifies frame t and does whatever it does with it (draw, write, track): detection, decoding,
        LiteRT and Pillow release the GIL, so on a device with two cores or more a frame costs the slower
        of the two stages instead of their sum. Results still come in frame order, one frame ahead at most.
        With a ``tracker`` each frame's faces are its tracks' (see :meth:`classify`).
        """
        if not overlap:
            for frame in frames:
                yield frame, self.process(frame, bgr=bgr, tracker=tracker)
            return
        from concurrent.futures import ThreadPoolExecutor

        source = iter(frames)

        def read_and_detect():
            frame = next(source, None)  # the frame source is only ever read by this one worker
            return None if frame is None else (frame, *self.detect(frame, bgr))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskclf-detect") as pool:
            pending = pool.submit(read_and_detect)
            while True:
                item = pending.result()  # re-raises the worker's error (an unreadable video) here
                if item is None:
                    return
                pending = pool.submit(read_and_detect)
                frame, boxes, detect_ms = item
                yield frame, self.classify(frame, boxes, detect_ms, bgr, tracker)

    def annotate(self, frame: np.ndarray, result: FrameResult, bgr: bool = False, copy: bool = True) -> np.ndarray:
        """Draw ``result`` on a copy of ``frame`` (or on ``frame`` itself) and add the draw time to its timings."""
        t = time.perf_counter()
        out = draw_faces(frame, result.faces, self.classifier.class_names, bgr=bgr, copy=copy)
        result.timings_ms["draw"] = (time.perf_counter() - t) * 1e3
        return out

    def describe(self) -> dict:
        """The classifier's and detector's descriptions, for JSON outputs."""
        return {"model": self.classifier.describe(),
                "detector": getattr(self.detector, "describe", lambda: {"name": type(self.detector).__name__})(),
                "framing": list(self.framing) if self.framing is not None else None}


def _total(timings: dict) -> dict:
    return timings | {"total": sum(timings.values())}


# ----------------------------------------------------------------------------- photos

def _save_image(rgb: np.ndarray, path: Path) -> Path:
    path = path.with_suffix(".png") if path.suffix.lower() not in WRITE_IMAGE_SUFFIXES else path
    img = Image.fromarray(rgb)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(tmp, format="JPEG", quality=92)
        else:
            img.save(tmp, format={".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}[path.suffix.lower()])
    return path


def process_image(pipeline: FaceMaskPipeline, path: str | os.PathLike,
                  out_path: str | os.PathLike | None = None) -> dict:
    """Detect, classify and (if ``out_path``) save an annotated copy of one photo.

    Returns:
        ``{"path", "width", "height", "faces": [...], "timings_ms": {...}[, "output"]}``.

    Raises:
        MaskclfError: the image cannot be read.
    """
    rgb = np.asarray(load_rgb(path), np.uint8)
    result = pipeline.process(rgb)
    entry = {"path": str(path), "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
    if out_path is not None:
        annotated = pipeline.annotate(rgb, result)
        entry["output"] = str(_save_image(annotated, Path(out_path)))
    result.timings_ms = _total(result.timings_ms)
    return entry | result.to_json()


def _images_in(folder: Path, skip: Path | None) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                             and not (skip is not None and _same(d / n, skip)))
        out += [d / n for n in sorted(filenames) if is_image_name(n) and not n.startswith(".")]
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# ----------------------------------------------------------------------------- video and camera

class _FpsMeter:
    """Frames per second over the last ``window`` frames (wall clock, so it includes decode and write)."""

    def __init__(self, window: int = 30):
        self.times: deque = deque(maxlen=window + 1)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(1e-9, self.times[-1] - self.times[0])


def _open_capture(source: str | int):
    import cv2

    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        if isinstance(source, int):
            raise MaskclfError(f"camera {source} cannot be opened; check it is connected and free "
                               "(ls /dev/video*) or try another --camera number")
        if not Path(source).exists():
            raise MaskclfError(f"{source}: file not found")
        raise MaskclfError(f"{source}: cannot open the video (corrupt file or unsupported codec); "
                           "convert it to MP4 (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)")
    return cap


def _frames(cap, source, max_frames: int | None) -> Iterator[np.ndarray]:
    n = 0
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            if n == 0:
                what = f"camera {source}" if isinstance(source, int) else str(source)
                raise MaskclfError(f"{what}: no frame could be read (corrupt video, unsupported codec or busy camera)")
            return
        n += 1
        yield frame


def _writer(path: Path, fps: float, size: tuple[int, int]):
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    w = cv2.VideoWriter(str(path), fourcc, float(fps), size)
    if not w.isOpened():
        raise MaskclfError(f"{path}: cannot write a video here (codec or folder problem); try --out with .avi")
    return w


def process_video(pipeline: FaceMaskPipeline, source: str | os.PathLike | int, out_path: str | os.PathLike | None,
                  max_frames: int | None = None, progress: bool = True,
                  on_frame: Callable[[int, np.ndarray, FrameResult], None] | None = None,
                  events: str | os.PathLike | None = None, keep_frames: bool = True, track: bool = True,
                  overlap: bool | None = None, classify_every: int | None = None) -> dict:
    """Annotate a video file or camera stream frame by frame, with an FPS overlay.

    Args:
        pipeline: detector + classifier.
        source: a video file, or a camera index (int).
        out_path: the annotated video (.mp4 with mp4v, .avi with MJPG); None writes nothing.
        max_frames: stop after this many frames (a camera otherwise runs until Ctrl-C).
        progress: print a line every 100 frames.
        on_frame: called with (index, annotated BGR frame, result) per frame.
        events: append one JSON line per frame to this file, flushed at once:
            ``{"time": ISO UTC, "source", "frame", "faces", "num_faces", "timings_ms", "fps"}``.
        keep_frames: False keeps no per-frame entries (``frames`` is empty; ``stats`` has the counts),
            so an endless camera stream uses constant memory.
        track: follow faces across frames (:class:`maskclf.edge.tracking.IouTracker`): each face gets
            a ``"track"`` id and its track's smoothed label, score and probabilities, so tags do not
            flicker from frame to frame; False classifies every frame on its own.
        overlap: read and detect the next frame on a worker thread while this one is classified, drawn and
            written (:meth:`FaceMaskPipeline.stream`); False does one frame at a time on one thread; None
            (default) overlaps when the machine has more than one core.
        classify_every: with ``track``, a tracked face goes to the classifier every this many frames and
            keeps its tag in between (new faces at once): the classifier's share of a crowd frame / N.
            None: ``tracking.CLASSIFY_EVERY`` (3) with ``track``; 1 classifies every face on every frame.

    Returns:
        ``{"path" or "camera", "output", "frames": [{"frame", "time_s", "faces", "timings_ms"}, ...],
        "fps": mean processing frames per second, "interrupted": bool,
        "stats": {"frames", "faces", "per_label", "mean_ms"}}``.

    Raises:
        MaskclfError: the video or camera cannot be opened or read, or the output cannot be written.
    """
    if max_frames is not None and max_frames < 1:
        raise MaskclfError(f"--max-frames must be at least 1, got {max_frames}")
    if classify_every not in (None, 1) and not track:
        raise MaskclfError("--classify-every needs the tracker (it keeps a face's tag between its turns); "
                           "leave out --no-track")
    tracker = (IouTracker(pipeline.classifier.class_names, pipeline.classifier.decide,
                          classify_every=CLASSIFY_EVERY if classify_every is None else classify_every)
               if track else None)  # a bad value fails here, before the video is opened
    camera = isinstance(source, int)
    cap = _open_capture(source if camera else str(source))
    nominal = cap.get(5) or 0.0  # CAP_PROP_FPS; 0 for many cameras and some files
    if not (1.0 <= nominal <= 240.0):
        nominal = 15.0 if camera else 25.0
    entries, meter, fps_values = [], _FpsMeter(), []
    interrupted = False
    out = Path(out_path) if out_path is not None else None
    writer = None
    stats = {"frames": 0, "faces": 0, "per_label": {n: 0 for n in pipeline.classifier.class_names}, "total_ms": 0.0}
    events_file = None
    if events is not None:
        try:
            Path(events).parent.mkdir(parents=True, exist_ok=True)
            events_file = open(events, "a", encoding="utf-8")
        except OSError as e:
            cap.release()
            raise MaskclfError(f"--events {events}: cannot append to it ({e.strerror})") from None
    source_name = f"camera{source}" if camera else str(source)
    if overlap is None:
        overlap = (os.cpu_count() or 1) > 1
    # The frame stays BGR throughout and is drawn on in place: each read gives a new buffer.
    stream = pipeline.stream(_frames(cap, source, max_frames), overlap=overlap, tracker=tracker)
    try:
        with (atomic_path(out) if out is not None else _nullpath()) as tmp:
            try:
                for i, (frame, result) in enumerate(stream):
                    track_ids = result.track_ids
                    annotated = pipeline.annotate(frame, result, bgr=True, copy=False)
                    fps = meter.tick()
                    if i:
                        fps_values.append(fps)
                    draw_fps(annotated, fps, f"faces {len(result.faces)}")
                    if tmp is not None:
                        if writer is None:
                            writer = _writer(tmp, nominal, (frame.shape[1], frame.shape[0]))
                        writer.write(annotated)
                    result.timings_ms = _total(result.timings_ms)
                    entry = {"frame": i, "time_s": round(i / nominal, 3)} | result.to_json() | {"fps": round(fps, 2)}
                    if track_ids is not None:
                        for f, tid in zip(entry["faces"], track_ids):
                            f["track"] = tid
                    if keep_frames:
                        entries.append(entry)
                    stats["frames"] += 1
                    stats["faces"] += len(result.faces)
                    stats["total_ms"] += result.timings_ms["total"]
                    for f in result.faces:
                        stats["per_label"][f.label] = stats["per_label"].get(f.label, 0) + 1
                    if events_file is not None:
                        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                  "source": source_name, "frame": i, "num_faces": len(result.faces),
                                  "faces": entry["faces"], "timings_ms": entry["timings_ms"], "fps": entry["fps"]}
                        events_file.write(json.dumps(record) + "\n")
                        events_file.flush()
                    if on_frame is not None:
                        on_frame(i, annotated, result)
                    if progress and (i + 1) % 100 == 0:
                        print(f"  {i + 1} frames, {fps:.1f} FPS", file=sys.stderr, flush=True)
            except KeyboardInterrupt:
                interrupted = True  # a camera stops with Ctrl-C: keep what was recorded
            if writer is not None:
                writer.release()
                writer = None
    finally:
        stream.close()  # waits for the worker's frame, so the capture is not released under it
        if writer is not None:
            writer.release()
        if events_file is not None:
            events_file.close()
        cap.release()
    head = {"camera": source} if camera else {"path": str(source)}
    total_ms = stats.pop("total_ms")
    stats["mean_ms"] = round(total_ms / stats["frames"], 2) if stats["frames"] else None
    return head | {"output": str(out) if out is not None else None, "frames": entries,
                   "fps": round(float(np.mean(fps_values)), 2) if fps_values else None,
                   "interrupted": interrupted, "stats": stats}


class _nullpath:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- the `detect` command

def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise MaskclfError(f"{path}: file or folder not found")
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if is_image_name(path):
        return "image"
    try:
        load_rgb(path)
        return "image"
    except MaskclfError:
        return "video"  # opening it as a video gives the error if it is not one either


def _video_out(out: Path, name: str) -> Path:
    return out if out.suffix.lower() in VIDEO_EXTENSIONS else out / f"{name}.mp4"


def run_detect(input: str | os.PathLike | None = None, model: str | os.PathLike = "",
               out: str | os.PathLike | None = None, json_path: str | os.PathLike | None = None,
               detector: str = "yunet", camera: int | None = None, max_frames: int | None = None,
               precision: str | None = None, threads: int = 1,
               score_threshold: float | None = None, nms_threshold: float | None = None, min_face: int | None = None,
               upscale: float | None = None, tile: int | None = None, save: bool = True,
               progress: bool = True, events: str | os.PathLike | None = None, track: bool = True,
               overlap: bool | None = None, classify_every: int | None = None, framing: bool = True) -> dict:
    """Detect faces, classify their masks, and write annotated outputs and JSON.

    Args:
        input: an image, a folder of images (searched recursively), or a video file.
        model: an export folder (RUN_DIR/export) or a .tflite file.
        out: where annotated files go: a folder (default ``detections/``), or a file name for a single
            image (image suffix) or a video/camera (.mp4/.avi).
        json_path: write ``{"inputs": [...]}`` with every face of every image or frame here.
        detector: ``yunet`` (default) or ``haar``.
        camera: a camera index instead of ``input``.
        max_frames: stop a video or camera after this many frames.
        precision: which model of an export folder (default the smallest present).
        threads: interpreter threads.
        score_threshold, nms_threshold, min_face, upscale, tile: face detector options.
        save: write annotated images/videos (False: JSON and counts only).
        progress: print a line per input.
        events: a video or camera appends one JSON line per frame here (see :func:`process_video`);
            without ``json_path`` no per-frame entries are kept in memory (a camera service runs for days).
        track: videos and cameras keep each face's tag across frames (an IoU tracker, see
            :func:`process_video`); False classifies every frame on its own. Photos are never tracked.
        overlap: videos and cameras detect the next frame on a second thread while this one is classified
            (:meth:`FaceMaskPipeline.stream`) when the machine has two cores or more; False never does.
        classify_every: videos and cameras re-classify a tracked face every this many frames (default 3;
            see :func:`process_video`).
        framing: move each detected box to where an annotator would draw it (see :class:`FaceMaskPipeline`).

    Returns:
        The JSON document (also written to ``json_path``); ``errors`` counts unreadable folder images.

    Raises:
        MaskclfError: bad model, input or options.
    """
    if (input is None) == (camera is None):
        raise MaskclfError("give either an INPUT (image, folder or video) or --camera N")
    if events is not None and camera is None and input is not None and _kind(Path(input)) != "video":
        raise MaskclfError("--events is for a video or --camera; use --json for images")
    keep_frames = events is None or json_path is not None
    streamed: list[dict] = []  # per-video stats when frames are not kept
    classifier = FaceClassifier(model, num_threads=threads, precision=precision)
    det = create_detector(detector, score_threshold=score_threshold, nms_threshold=nms_threshold,
                          min_face=min_face, upscale=upscale, tile=tile)
    pipeline = FaceMaskPipeline(classifier, det, framing=framing)
    out_root = Path(out) if out is not None else Path(DEFAULT_OUT)
    doc = pipeline.describe() | {"inputs": [], "videos": []}
    errors = 0

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    def video(src, name: str) -> None:
        target = _video_out(out_root, name) if save else None
        res = process_video(pipeline, src, target, max_frames=max_frames, progress=progress,
                            events=events, keep_frames=keep_frames, track=track, overlap=overlap,
                            classify_every=classify_every)
        key = {"camera": src} if isinstance(src, int) else {"path": str(src)}
        doc["inputs"] += [key | f for f in res["frames"]]
        stats = res.pop("stats")
        if not keep_frames:
            streamed.append(stats)
        doc["videos"].append({k: v for k, v in res.items() if k != "frames"} | {"num_frames": stats["frames"]})
        log(f"{name}: {stats['frames']} frames, {res['fps'] or 0:.1f} FPS"
            + (f" -> {target}" if target else "") + (" (interrupted)" if res["interrupted"] else ""))

    if camera is not None:
        video(int(camera), f"camera{int(camera)}")
    else:
        src = Path(input)
        kind = _kind(src)
        if kind == "video":
            video(src, src.stem)
        elif kind == "image":
            target = None
            if save:
                target = out_root if out_root.suffix.lower() in WRITE_IMAGE_SUFFIXES else out_root / src.name
            entry = process_image(pipeline, src, target)
            doc["inputs"].append(entry)
            log(_summary_line(entry))
        else:
            paths = _images_in(src, out_root)
            if not paths:
                raise MaskclfError(f"{src}: no images in this folder (looked for "
                                   f"{', '.join(sorted(e for e in ('.jpg', '.png', '.bmp', '.webp')))} ...)")
            if save and out_root.suffix.lower() in WRITE_IMAGE_SUFFIXES:
                raise MaskclfError(f"--out {out_root}: a folder input needs an output folder, not an image name")
            for p in paths:
                try:
                    entry = process_image(pipeline, p, out_root / p.relative_to(src) if save else None)
                except MaskclfError as e:
                    errors += 1
                    entry = {"path": str(p), "error": str(e)}
                    log(f"{p}: ERROR {e}")
                else:
                    log(_summary_line(entry))
                doc["inputs"].append(entry)
    if not doc["videos"]:
        del doc["videos"]
    faces = [f for e in doc["inputs"] for f in e.get("faces", [])]
    totals = [e["timings_ms"]["total"] for e in doc["inputs"] if "timings_ms" in e]
    doc["summary"] = {"inputs": len(doc["inputs"]), "errors": errors, "faces": len(faces),
                      "per_label": {n: sum(f["label"] == n for f in faces) for n in classifier.class_names},
                      "mean_ms": round(float(np.mean(totals)), 2) if totals else None}
    if streamed:  # --events without --json: counts from the stream, not from kept frames
        n = sum(s["frames"] for s in streamed)
        ms = sum(s["mean_ms"] * s["frames"] for s in streamed if s["mean_ms"] is not None)
        doc["summary"] |= {"inputs": n, "faces": sum(s["faces"] for s in streamed),
                           "per_label": {k: sum(s["per_label"].get(k, 0) for s in streamed)
                                         for k in classifier.class_names},
                           "mean_ms": round(ms / n, 2) if n else None}
    if json_path is not None:
        write_json(json_path, doc)
    return doc


def _summary_line(entry: dict) -> str:
    counts: dict = {}
    for f in entry["faces"]:
        counts[f["label"]] = counts.get(f["label"], 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no faces"
    return f"{entry['path']}: {what} ({entry['timings_ms']['total']:.0f} ms)" + (
        f" -> {entry['output']}" if entry.get("output") else "")
