"""Video benchmark: FPS and how often a face's tag flips from frame to frame, IoU tracking off and on (issue 27).

No video ships with the project, so one is made from the VOC photos: for each of ``--photos`` photos
(spread evenly over the sorted folder), ``--frames-per-photo`` frames of a slow pan and zoom (Ken Burns:
a 4:3 window drifting across the photo while it zooms 1.0 -> 1.3 or back, sub-pixel, eased) at 640×480,
written with cv2.VideoWriter (mp4v) to bench/out/video-<stamp>.mp4. A camera or phone clip can be given
instead with ``--video``.

The video then goes through what ``maskclf detect VIDEO`` runs, ``maskclf.edge.app.process_video`` (decode,
YuNet, crop + one batched classify call, tracker, drawing in place; no output video), with ``track=False``,
``track=True`` (both with the next frame decoded and detected on a second thread, the default) and
``track=True, overlap=False`` (``--no-overlap``: one frame at a time), all three as ``maskclf detect``
runs them (tracked faces re-classified every ``CLASSIFY_EVERY`` = 3 frames), and for each ``--classify-every N``
(default 1,2) ``track=True, classify_every=N``; interleaved, ``--repeats`` times each:

* FPS = frames / wall-clock time of the whole ``process_video`` call, decoding included, median over the
  repeats; "stage FPS" beside it = frames / summed per-frame stage times (detect, classify, track, draw;
  decoding outside), which is what one thread doing one frame at a time would reach.
* flip rate = of the face pairs in consecutive frames that are the same face, the fraction whose label
  differs. "The same face" is the tracker's own matching (``maskclf.edge.tracking.match``: greedy IoU ≥ 0.3)
  on the detector's boxes, in both cases, so the pairs are identical with tracking off and on; pairs across
  the cut between two photos are not counted.
* agreement (``--classify-every`` modes) = of the faces on each frame, the fraction with the same label as
  tracking with every face classified on every frame (``--classify-every 1``), same frame and box.

``--busiest`` picks the ``--photos`` photos where YuNet finds the most faces (crowds: where the classifier's
share of a frame is largest) instead of photos spread evenly over the folder.

Writes bench/out/video-<stamp>.md and .json (command, machine, date, figures).

Usage:
  nice -n 15 python bench/video.py RUN_DIR/export [--precision int8] [--threads 1] [--repeats 3]
         [--photos 8] [--busiest] [--frames-per-photo 45] [--data DIR_OF_PHOTOS] [--video FILE]
         [--classify-every 1,2]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from foundation import machine, run_main, write_results  # noqa: E402
from fps import DEFAULT_DATA, HEIGHT, WIDTH, spread_photos  # noqa: E402

FPS = 25.0  # the written video's nominal rate
ZOOM = 1.3
NAME = "bench/video.py"


def fail(msg: str) -> None:
    sys.exit(f"{NAME}: {msg}")


def ken_burns(rgb: np.ndarray, n: int, zoom_in: bool, reverse: bool) -> list[np.ndarray]:
    """``n`` BGR WIDTH×HEIGHT frames of a slow pan and zoom over one RGB photo.

    The window is 4:3, the largest that fits at zoom 1; its centre moves from one corner of the room
    left to the opposite one while the zoom goes 1 -> ZOOM (or back), eased so the motion starts and
    ends slowly. Sub-pixel (an affine warp), so faces move smoothly rather than in whole-pixel steps.
    """
    import cv2

    h, w = rgb.shape[:2]
    w0 = min(w, h * WIDTH / HEIGHT)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    frames = []
    for k in range(n):
        u = 0.5 - 0.5 * math.cos(math.pi * k / max(1, n - 1))
        z = 1.0 + (ZOOM - 1.0) * (u if zoom_in else 1.0 - u)
        ww = w0 / z
        wh = ww * HEIGHT / WIDTH
        pos = 1.0 - u if reverse else u
        cx = ww / 2 + (w - ww) * pos
        cy = wh / 2 + (h - wh) * pos
        s = WIDTH / ww
        m = np.array([[s, 0.0, -(cx - ww / 2) * s], [0.0, s, -(cy - wh / 2) * s]])
        frames.append(cv2.warpAffine(bgr, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def busiest_photos(folder: Path, n: int, detector) -> list[Path]:
    """The ``n`` photos of ``folder`` where ``detector`` finds the most faces (ties: sorted by name)."""
    from maskclf.files import MaskclfError
    from maskclf.data.images import load_rgb

    counts = []
    for p in spread_photos(folder, 10 ** 9, NAME):
        try:
            counts.append((-len(detector.detect(np.asarray(load_rgb(p), np.uint8))), p.name, p))
        except MaskclfError:
            continue
    return [p for _, _, p in sorted(counts)[:n]]


def make_video(folder: Path, photos: int, per_photo: int, path: Path, detector=None) -> list[str]:
    """Write the Ken Burns video of ``photos`` photos spread evenly over ``folder`` (or, given a
    ``detector``, the busiest); their names."""
    import cv2

    from maskclf.files import MaskclfError
    from maskclf.data.images import load_rgb

    chosen = busiest_photos(folder, photos, detector) if detector is not None else spread_photos(folder, photos, NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        fail(f"{path}: cannot write an mp4v video here; pass --out with a writable folder")
    try:
        for k, p in enumerate(chosen):
            try:
                rgb = np.asarray(load_rgb(p), np.uint8)
            except MaskclfError as e:
                fail(f"{e}; remove the file or pass --data with another folder")
            for f in ken_burns(rgb, per_photo, zoom_in=k % 2 == 0, reverse=k % 4 >= 2):
                writer.write(f)
    finally:
        writer.release()
    return [p.name for p in chosen]


def flips(frames: list[dict], per_segment: int | None) -> tuple[int, int]:
    """(pairs, flips) over consecutive frames, not across the cut between two photos."""
    from maskclf.edge.tracking import count_flips

    faces = [[(f["box"], f["label"]) for f in e["faces"]] for e in frames]
    step = per_segment or len(faces) or 1
    pairs = changed = 0
    for s in range(0, len(faces), step):
        p, c = count_flips(faces[s:s + step])
        pairs, changed = pairs + p, changed + c
    return pairs, changed


def agreement(frames: list[dict], reference: list[dict]) -> float:
    """Of the faces of ``frames`` (per frame, box -> label), the fraction labelled as in ``reference``."""
    same = total = 0
    for a, b in zip(frames, reference):
        for box, label in a.items():
            total += 1
            same += b.get(box) == label
    return round(same / total, 4) if total else 1.0


def decode_and_detect_fps(video: Path, detector) -> float:
    """Frames per second of decoding the video and running the detector alone on each frame (wall clock)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    n, t = 0, time.perf_counter()
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            detector.detect_bgr(frame)
            n += 1
    finally:
        cap.release()
    return n / max(1e-9, time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="an export folder (RUN_DIR/export) with model_<precision>.tflite files")
    ap.add_argument("--precision", default="int8", help="which model of the export folder (default int8)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of photos (default the VOC images)")
    ap.add_argument("--photos", type=int, default=8, help="photos in the made video (default 8)")
    ap.add_argument("--busiest", action="store_true", help="the photos with the most YuNet faces (default: spread)")
    ap.add_argument("--classify-every", default="1,2", metavar="N[,N]",
                    help="also time tracking with a face re-classified every N frames (maskclf detect "
                         "--classify-every N; default 1,2; 1 is always timed: the labels' reference)")
    ap.add_argument("--frames-per-photo", type=int, default=45, help="frames of pan/zoom per photo (default 45)")
    ap.add_argument("--video", help="run on this video file instead of making one (no cuts are known in it)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV and interpreter threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--upscale", type=float, default=1.0, help="detector upscale (default 1, as maskclf detect)")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    if args.photos < 1 or args.frames_per_photo < 2 or args.repeats < 1 or args.threads < 1:
        fail("--photos, --repeats and --threads must be at least 1, --frames-per-photo at least 2")
    try:
        every = [int(v) for v in args.classify_every.split(",") if v.strip()]
    except ValueError:
        every = [0]
    if any(n < 1 for n in every):
        fail(f"--classify-every {args.classify_every}: give whole numbers of frames >= 1, e.g. 1,2")
    from maskclf.edge.tracking import CLASSIFY_EVERY

    every = sorted({1, *every} - {CLASSIFY_EVERY})  # the default's is the "on" mode

    export = Path(args.export)
    import cv2

    from maskclf.edge.app import FaceMaskPipeline, process_video
    from maskclf.edge.classifier import FaceClassifier
    from maskclf.edge.detector import create_detector

    cv2.setNumThreads(args.threads)
    pipe = FaceMaskPipeline(FaceClassifier(export, num_threads=args.threads, precision=args.precision),
                            create_detector("yunet", upscale=args.upscale))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--out {out}: cannot create it ({e.strerror}); pass --out with a writable folder")
    if args.video:
        video, photos, per_segment = Path(args.video), [], None
        if not video.is_file():
            fail(f"{video}: no such video file; pass --video with an existing file or leave it out to make one")
    else:
        video, per_segment = out / f"video-{stamp}.mp4", args.frames_per_photo
        t = time.perf_counter()
        photos = make_video(Path(args.data), args.photos, args.frames_per_photo, video,
                            pipe.detector if args.busiest else None)
        print(f"made {video} ({len(photos)} photos x {args.frames_per_photo} frames) in "
              f"{time.perf_counter() - t:.1f} s; {machine()}", file=sys.stderr, flush=True)

    process_video(pipe, video, None, max_frames=10, progress=False, track=True)  # warm-up, untimed
    modes = {"off": (False, True, None), "on": (True, True, None), "on_no_overlap": (True, False, None)}
    modes |= {f"every_{n}": (True, True, n) for n in every}
    labels: dict = {}
    runs: dict = {m: [] for m in modes}
    detector_fps = []
    for r in range(args.repeats):
        detector_fps.append(decode_and_detect_fps(video, pipe.detector))
        for mode, (track, overlap, n) in modes.items():  # interleaved: a load change hits every mode alike
            t = time.perf_counter()
            res = process_video(pipe, video, None, progress=False, track=track, overlap=overlap, classify_every=n)
            wall = time.perf_counter() - t
            frames = res["frames"]
            proc_ms = sum(e["timings_ms"]["total"] for e in frames)
            pairs, changed = flips(frames, per_segment)
            run = {"frames": len(frames), "fps": len(frames) / (proc_ms / 1e3), "wall_fps": len(frames) / wall,
                   "pairs": pairs, "flips": changed, "faces": sum(len(e["faces"]) for e in frames),
                   "track_ms": float(np.mean([e["timings_ms"].get("track", 0.0) for e in frames])),
                   "tracks": len({f["track"] for e in frames for f in e["faces"] if "track" in f}),
                   "per_label": res["stats"]["per_label"],
                   "classify_ms": float(np.mean([e["timings_ms"]["classify"] for e in frames]))}
            labels.setdefault(mode, [{tuple(f["box"]): f["label"] for f in e["faces"]} for e in frames])
            runs[mode].append(run)
            print(f"repeat {r + 1} {mode}: {run['wall_fps']:.1f} FPS with decoding ({run['fps']:.1f} stage FPS), "
                  f"{changed}/{pairs} flips", file=sys.stderr, flush=True)

    rows = {}
    for mode, rs in runs.items():
        first, track = rs[0], modes[mode][0]
        rows[mode] = {
            "fps": round(statistics.median(r["fps"] for r in rs), 2),
            "fps_runs": [round(r["fps"], 2) for r in rs],
            "wall_fps": round(statistics.median(r["wall_fps"] for r in rs), 2),
            "wall_fps_runs": [round(r["wall_fps"], 2) for r in rs],
            "frames": first["frames"], "faces_per_frame": round(first["faces"] / max(1, first["frames"]), 2),
            "pairs": first["pairs"], "flips": first["flips"],
            "flip_rate": round(first["flips"] / first["pairs"], 4) if first["pairs"] else None,
            "flips_same_every_repeat": all((r["pairs"], r["flips"]) == (first["pairs"], first["flips"]) for r in rs),
            "track_ms_per_frame": round(statistics.median(r["track_ms"] for r in rs), 3),
            "tracks": first["tracks"] if track else None, "per_label": first["per_label"],
            "classify_ms_per_frame": round(statistics.median(r["classify_ms"] for r in rs), 3),
            "classify_every": (modes[mode][2] or CLASSIFY_EVERY) if track else None,
            "labels_as_every_frame": agreement(labels[mode], labels["every_1"])}
    off, on, seq = rows["off"], rows["on"], rows["on_no_overlap"]
    rows["detector"] = {"wall_fps": round(statistics.median(detector_fps), 2),
                        "wall_fps_runs": [round(v, 2) for v in detector_fps]}
    det_fps = rows["detector"]["wall_fps"]
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "load_average": [round(v, 2) for v in os.getloadavg()], "opencv": cv2.__version__,
            "export": str(export.resolve()), "model": pipe.classifier.model_path.name,
            "precision": pipe.classifier.precision, "threads": args.threads, "upscale": args.upscale,
            "video": str(video), "size": [WIDTH, HEIGHT], "frames_per_photo": per_segment, "photos": photos,
            "data": str(args.data) if photos else None, "repeats": args.repeats}
    src = (f"{len(photos)} VOC photos × {per_segment} frames of pan/zoom (`{video.name}`, mp4v, {WIDTH}×{HEIGHT})"
           if photos else f"`{video}`")
    md = [f"### Video: FPS and tag flips, IoU tracking off and on ({meta['date']})", "",
          f"`{meta['command']}`", "",
          f"{meta['machine']}; OpenCV {cv2.__version__}; load average at the end {meta['load_average']}; "
          f"{src}; {meta['model']}, {args.threads} thread(s), YuNet upscale {args.upscale:g}; "
          f"`process_video` as `maskclf detect VIDEO` runs it (no output video), median of {args.repeats} passes.", "",
          f"Detector alone (decode + YuNet, nothing else): **{det_fps:.1f} FPS**.", "",
          "| tracking | FPS (with decoding) | / detector alone | stage FPS | faces/frame | same-face pairs "
          "| label flips | flip rate | track ms/frame |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    default = f"on (default: a tracked face classified every {CLASSIFY_EVERY} frames)"
    for name, r in (("off (`--no-track`)", off), (default, on), ("on, one frame at a time (`--no-overlap`)", seq)):
        rate = f"{100 * r['flip_rate']:.2f} %" if r["flip_rate"] is not None else "—"
        track_ms = f"{r['track_ms_per_frame']:.2f}" if r is not off else "—"
        md.append(f"| {name} | {r['wall_fps']:.1f} | {r['wall_fps'] / det_fps:.2f} | {r['fps']:.1f} | "
                  f"{r['faces_per_frame']:.1f} | {r['pairs']} | "
                  f"{r['flips']} | {rate} | {track_ms} |")
    md.append("")
    md += [f"Re-classifying a tracked face every N frames (`maskclf detect --classify-every N`, default "
           f"{CLASSIFY_EVERY}; new faces at once):", "",
           "| classify every | FPS (with decoding) | / detector alone | classify ms/frame | label flips "
           "| labels as every frame |", "|---:|---:|---:|---:|---:|---:|"]
    for n in sorted({*every, CLASSIFY_EVERY}):
        r = on if n == CLASSIFY_EVERY else rows[f"every_{n}"]
        md.append(f"| {n}{' (default)' if n == CLASSIFY_EVERY else ''} | {r['wall_fps']:.1f} | "
                  f"{r['wall_fps'] / det_fps:.2f} | {r['classify_ms_per_frame']:.2f} "
                  f"| {r['flips']} | {100 * r['labels_as_every_frame']:.1f} % |")
    md.append("")
    if off["flip_rate"] and on["flip_rate"] is not None:
        md.append(f"Tracking removes {100 * (1 - on['flips'] / off['flips']):.0f} % of the flips "
                  f"({off['flips']} -> {on['flips']}) at {100 * (on['wall_fps'] / off['wall_fps'] - 1):+.1f} % FPS; "
                  f"{on['tracks']} track ids for {on['faces_per_frame'] * on['frames']:.0f} faces. Overlapping "
                  f"detection with the rest: {on['wall_fps']:.1f} vs {seq['wall_fps']:.1f} FPS one frame at a time "
                  f"({on['wall_fps'] / seq['wall_fps']:.2f}x).")
    write_results(out, "video", stamp, md, meta | rows)


if __name__ == "__main__":
    run_main(main, NAME)  # an unreadable model or video: one line, as the CLI gives it
