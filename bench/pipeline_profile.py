"""Where the per-frame time of the device pipeline goes (issue: device runtime; docs/BENCHMARKS.md section 3).

On 640×480 BGR frames made from the VOC photos (as bench/fps.py makes them), times each step of one frame
separately, mean ms over ``--repeats`` passes of all frames, one thread:

* channel conversion of a whole frame: a NumPy ``[..., ::-1]`` copy vs ``cv2.cvtColor``;
* the whole frame turned into a Pillow image (what the crops used to need);
* YuNet on the BGR frame (``detect_bgr``), and ``detect`` on the RGB frame (conversion included);
* the crops of the frame's faces (``FaceClassifier.crops``, BGR slicing) and one batched ``predict``;
* the bare ``invoke`` per face at batch 1, 2, 4, 8 and 16 (the network's own arithmetic);
* interpreter re-allocation: ``predict`` over a realistic sequence of face counts (1-12 per frame) with the
  classifier's single interpreter (re-sized whenever the count changes) vs one interpreter per batch size.

Writes bench/out/profile-<stamp>.md and .json.

Usage:  python bench/pipeline_profile.py RUN/export [--frames 40] [--repeats 3] [--precision int8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from foundation import machine  # noqa: E402
from fps import DEFAULT_DATA, make_frames  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()
    import cv2
    from PIL import Image

    from maskclf.export import convert as E
    from maskclf.edge.classifier import FaceClassifier
    from maskclf.edge.detector import create_detector

    cv2.setNumThreads(1)
    frames, _ = make_frames(Path(a.data), a.frames)
    clf = FaceClassifier(a.export, num_threads=1, precision=a.precision)
    det = create_detector("yunet")
    boxes = [det.detect_bgr(f) for f in frames]
    rgbs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    crops = [clf.crops(f, b, bgr=True)[0] for f, b in zip(frames, boxes)]
    steps = {
        "frame BGR->RGB, numpy [..., ::-1] copy": lambda i: np.ascontiguousarray(frames[i][:, :, ::-1]),
        "frame BGR->RGB, cv2.cvtColor": lambda i: cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB),
        "frame -> Pillow image": lambda i: Image.fromarray(rgbs[i]),
        "YuNet detect_bgr (BGR frame)": lambda i: det.detect_bgr(frames[i]),
        "YuNet detect (RGB frame, converts)": lambda i: det.detect(rgbs[i]),
        "crops of the frame's faces (BGR slices)": lambda i: clf.crops(frames[i], boxes[i], bgr=True),
        "one batched predict": lambda i: clf.predict(crops[i]),
    }
    ms = {}
    for name, fn in steps.items():
        fn(0)
        t = time.perf_counter()
        for _ in range(a.repeats):
            for i in range(len(frames)):
                fn(i)
        ms[name] = (time.perf_counter() - t) / (a.repeats * len(frames)) * 1e3

    # Re-allocation: the same sequence of batch sizes through one interpreter vs one per size.
    counts = np.random.default_rng(0).choice([1, 2, 3, 4, 5, 6, 8, 12], size=300)
    batch = {n: np.random.default_rng(n).integers(0, 255, (n, clf.size, clf.size, 3), dtype=np.uint8)
             for n in set(counts.tolist())}
    pool: dict[int, object] = {}

    def pooled(x):
        it = pool.get(len(x))
        if it is None:
            it = pool[len(x)] = E.load_interpreter(clf.model_path, num_threads=1)
        return E.predict_tflite(it, x, batch_size=len(x))

    realloc = {}
    for name, fn in (("one interpreter, re-sized", clf.predict), ("one interpreter per batch size", pooled)):
        for n in batch:
            fn(batch[n])  # warm-up (and the pool's interpreters)
        t = time.perf_counter()
        for n in counts:
            fn(batch[n])
        realloc[name] = (time.perf_counter() - t) / len(counts) * 1e3

    # The network's own arithmetic: a bare invoke per batch size (input set once, outside the timer).
    it = E.load_interpreter(clf.model_path, num_threads=1)
    d = it.get_input_details()[0]
    invoke_ms_per_face = {}
    for n in (1, 2, 4, 8, 16):
        it.resize_tensor_input(d["index"], [n, clf.size, clf.size, 3])
        it.allocate_tensors()
        it.set_tensor(d["index"], np.random.default_rng(n).integers(0, 255, (n, clf.size, clf.size, 3))
                      .astype(d["dtype"]))
        it.invoke()
        t = time.perf_counter()
        for _ in range(100):
            it.invoke()
        invoke_ms_per_face[n] = (time.perf_counter() - t) / (100 * n) * 1e3

    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "export": str(Path(a.export).resolve()),
            "precision": a.precision, "frames": len(frames), "repeats": a.repeats,
            "faces_per_frame": round(float(np.mean([len(b) for b in boxes])), 2),
            "mean_faces_in_realloc_sequence": round(float(counts.mean()), 2)}
    md = [f"### Per-frame costs of the device pipeline ({meta['date']})", "",
          f"`python bench/pipeline_profile.py {a.export} --frames {a.frames} --repeats {a.repeats} "
          f"--precision {a.precision}`; {meta['machine']}; 640×480 frames, 1 thread, "
          f"{meta['faces_per_frame']} faces per frame.", "", "| step | ms per frame |", "|---|---:|"]
    md += [f"| {k} | {v:.2f} |" for k, v in ms.items()]
    md += ["", f"Interpreter re-allocation ({len(counts)} predict calls of 1-12 faces, mean "
           f"{meta['mean_faces_in_realloc_sequence']}):", "", "| interpreters | ms per call |", "|---|---:|"]
    md += [f"| {k} | {v:.2f} |" for k, v in realloc.items()]
    md += ["", "Bare `invoke` (the network alone), ms per face by batch size:", "",
           "| " + " | ".join(f"batch {n}" for n in invoke_ms_per_face) + " |",
           "|" + "---:|" * len(invoke_ms_per_face),
           "| " + " | ".join(f"{v:.3f}" for v in invoke_ms_per_face.values()) + " |"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{stamp}.md").write_text("\n".join(md) + "\n")
    (out / f"profile-{stamp}.json").write_text(json.dumps(meta | {"ms_per_frame": ms, "realloc_ms": realloc,
                                                                      "invoke_ms_per_face": invoke_ms_per_face},
                                                          indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
