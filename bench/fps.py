"""Frames-per-second benchmark of the device runtime (issue: device runtime; results in docs/BENCHMARKS.md).

640×480 frames are made from the VOC photos (each letterboxed to 640×480, as a camera would give them,
stored BGR like cv2.VideoCapture frames). For every thread count (cv2.setNumThreads and the LiteRT
interpreter's num_threads) and detector upscale it times:

* detector alone: the detector's ``detect_bgr`` (YuNet, or ``--detector blazeface|haar``) on the BGR frames
  (what the camera gives; no conversion);
* whole pipeline, as ``maskclf detect`` runs a video or camera except capture and encoding:
  ``FaceMaskPipeline.stream(frames)`` — the next frame detected on a worker thread while this one is
  cropped, classified in one batched call and drawn on in place (per model precision);
* the same one frame at a time on one thread (``overlap=False``, ``maskclf detect --no-overlap``):
  ``process(frame, bgr=True)`` then the drawing.
Each gets fresh copies of the frames, made outside the timer, as a camera hands over a new buffer per frame.
"threads" is cv2.setNumThreads and the interpreter's num_threads; the overlapped pipeline adds one thread.

A pass times every frame through the detector and the one-thread pipeline, frame by frame (interleaved, so
load changes on a shared machine hit both alike), then the overlapped stream over all frames; FPS = frames /
time. Passes are repeated and the median FPS is reported with the pipeline/detector ratios (target ≥ 0.9).
Writes bench/out/fps-<stamp>.md and .json.

Usage:
  nice -n 15 python bench/fps.py RUN_DIR/export [--frames 100] [--repeats 5] [--threads 1,2]
         [--precisions float32,int8] [--upscales 1,2] [--data DIR_OF_PHOTOS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from foundation import machine, run_main, write_results  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "face-mask-detection" / "images"
WIDTH, HEIGHT = 640, 480
TARGET = 0.9  # pipeline / detector-alone FPS (issue 27)


def letterbox(rgb: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """``rgb`` scaled to fit width×height (aspect kept), centred on black."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def spread_photos(folder: Path, n: int, script: str) -> list[Path]:
    """``n`` photos spread evenly over the sorted ``folder``; a one-line exit naming ``script`` if there are none."""
    from maskclf.data.images import is_image_name

    if not folder.is_dir():
        sys.exit(f"{script}: {folder}: no such folder; pass --data with a folder of photos "
                 "(the VOC images are ../shared/data/face-mask-detection/images)")
    photos = sorted(p for p in folder.iterdir() if is_image_name(p.name))
    if not photos:
        sys.exit(f"{script}: {folder}: no photos here; pass --data with a folder of .jpg/.png photos")
    return photos[::max(1, len(photos) // n)][:n]


def make_frames(folder: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    """``n`` BGR 640×480 frames from photos spread evenly over the sorted folder."""
    from maskclf.data.images import load_rgb

    chosen = spread_photos(folder, n, "bench/fps.py")
    frames = [np.ascontiguousarray(letterbox(np.asarray(load_rgb(p), np.uint8))[:, :, ::-1]) for p in chosen]
    return frames, [p.name for p in chosen]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="an export folder (RUN_DIR/export) with model_<precision>.tflite files")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of photos (default the VOC images)")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5, help="untimed frames before each configuration")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--precisions", default="float32,int8")
    ap.add_argument("--upscales", default="1,2", help="detector upscale factors (1 = plain)")
    ap.add_argument("--detector", default="yunet", help="yunet (default), blazeface or haar")
    ap.add_argument("--tile", type=int, default=0, help="the detector's tile size (0: whole frame)")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()

    import cv2

    from maskclf.edge.app import FaceMaskPipeline
    from maskclf.edge.classifier import FaceClassifier
    from maskclf.edge.detector import create_detector

    threads = [int(t) for t in args.threads.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    upscales = [float(u) for u in args.upscales.split(",")]
    frames, names = make_frames(Path(args.data), args.frames)
    print(f"{len(frames)} frames {WIDTH}x{HEIGHT} from {args.data}; {machine()}", file=sys.stderr)

    rows = []
    for nt in threads:
        cv2.setNumThreads(nt)
        classifiers = {p: FaceClassifier(args.export, num_threads=nt, precision=p) for p in precisions}
        for up in upscales:
            det = create_detector(args.detector, upscale=up, tile=args.tile)
            pipes = {p: FaceMaskPipeline(c, det) for p, c in classifiers.items()}

            def full(frame, pipe):
                result = pipe.process(frame, bgr=True)
                pipe.annotate(frame, result, bgr=True, copy=False)
                return result

            for f in frames[:args.warmup]:
                det.detect_bgr(f)
            for pipe in pipes.values():
                for f in frames[:args.warmup]:
                    full(f.copy(), pipe)
            det_fps, pipe_fps, seq_fps = [], {p: [] for p in pipes}, {p: [] for p in pipes}
            # Per-stage times and face counts come from the timed passes themselves (an extra pass measured
            # other moments of a noisy VM, so its stages did not add up to the timed FPS).
            faces = {p: [] for p in pipes}
            stages = {p: {"detect": [], "classify": [], "draw": []} for p in pipes}
            for _ in range(args.repeats):
                # Interleaved frame by frame: a load change on a shared machine hits detector and pipelines alike.
                det_s, seq_s = 0.0, {p: 0.0 for p in pipes}
                for frame in frames:
                    t = time.perf_counter()
                    det.detect_bgr(frame)
                    det_s += time.perf_counter() - t
                    for p, pipe in pipes.items():
                        fresh = frame.copy()
                        t = time.perf_counter()
                        r = full(fresh, pipe)
                        seq_s[p] += time.perf_counter() - t
                        faces[p].append(len(r.faces))
                        for k in stages[p]:
                            stages[p][k].append(r.timings_ms.get(k, 0.0))
                det_fps.append(len(frames) / det_s)
                for p, pipe in pipes.items():
                    seq_fps[p].append(len(frames) / seq_s[p])
                    fresh = [f.copy() for f in frames]
                    t = time.perf_counter()
                    for frame, r in pipe.stream(fresh, bgr=True, overlap=True):
                        pipe.annotate(frame, r, bgr=True, copy=False)
                    pipe_fps[p].append(len(frames) / (time.perf_counter() - t))
            for p, pipe in pipes.items():
                d, q, s = (statistics.median(v) for v in (det_fps, pipe_fps[p], seq_fps[p]))
                rows.append({"threads": nt, "upscale": up, "precision": p,
                             "model": classifiers[p].model_path.name,
                             "detector_fps": round(d, 2), "pipeline_fps": round(q, 2), "ratio": round(q / d, 3),
                             "one_thread_fps": round(s, 2), "one_thread_ratio": round(s / d, 3),
                             "detector_fps_runs": [round(v, 2) for v in det_fps],
                             "pipeline_fps_runs": [round(v, 2) for v in pipe_fps[p]],
                             "one_thread_fps_runs": [round(v, 2) for v in seq_fps[p]],
                             "faces_per_frame": round(float(np.mean(faces[p])), 2),
                             "ms_per_frame": {k: round(float(np.mean(v)), 2) for k, v in stages[p].items()}})
                print(f"threads {nt} upscale {up:g} {p}: detector {d:.1f} FPS, pipeline {q:.1f} FPS "
                      f"({q / d:.2f}x; one frame at a time {s:.1f}, {s / d:.2f}x), "
                      f"{np.mean(faces[p]):.1f} faces/frame", file=sys.stderr, flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()], "opencv": cv2.__version__,
            "export": str(Path(args.export).resolve()), "data": str(args.data), "frames": len(frames),
            "size": [WIDTH, HEIGHT], "repeats": args.repeats, "photos": names}
    md = [f"### Frames per second, {WIDTH}×{HEIGHT} frames ({meta['date']})", "",
          f"{meta['machine']}; OpenCV {cv2.__version__}; load average at the end {meta['load_average']}; "
          f"{len(frames)} frames letterboxed from `{Path(args.data).name}` photos, median of {args.repeats} "
          f"passes. Detector: {args.detector}{f' (tile {args.tile})' if args.tile else ''} on the BGR frames. "
          f"Pipeline: detect, crop + one batched classify call, draw in "
          f"place; overlapped = the next frame detected on a second thread (maskclf detect's default), one thread = "
          f"one frame at a time (--no-overlap). Stage times per frame: the one-thread pipeline (no stage competing).", "",
          "| threads | upscale | model | detector FPS | pipeline FPS | pipeline / detector | one thread FPS "
          "| one thread / detector | faces/frame | detect ms | classify ms | classify ms/face | draw ms |",
          "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ms = r["ms_per_frame"]
        mark = "" if r["ratio"] >= TARGET else " ✗"
        per_face = ms["classify"] / r["faces_per_frame"] if r["faces_per_frame"] else float("nan")
        md.append(f"| {r['threads']} | {r['upscale']:g} | {r['precision']} | {r['detector_fps']:.1f} | "
                  f"{r['pipeline_fps']:.1f} | {r['ratio']:.3f}{mark} | {r['one_thread_fps']:.1f} | "
                  f"{r['one_thread_ratio']:.3f} | {r['faces_per_frame']:.1f} | "
                  f"{ms['detect']:.1f} | {ms['classify']:.1f} | {per_face:.2f} | {ms['draw']:.1f} |")
    md.append("")
    md.append(f"Target: pipeline ≥ {TARGET}× detector alone; {sum(r['ratio'] >= TARGET for r in rows)}/{len(rows)} rows meet it.")
    write_results(Path(args.out), "fps", stamp, md, meta | {"rows": rows})


if __name__ == "__main__":
    run_main(main, "bench/fps.py")
