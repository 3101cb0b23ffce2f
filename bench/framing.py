"""Detector framing (issue 24, "crops made the way the device makes them"): where VOC's annotators draw a face's
box relative to each detector's box of the same face (YuNet, BlazeFace, Haar), and what cropping the device's
faces that way does.

1. Fit: the run's *training* photos go through each detector; every annotated face it finds (IoU >= 0.4) gives
   its offset and size ratio; the medians are the detector's ``framing`` (shipped in maskclf/edge/detector.py).
2. A/B: each export given is evaluated on the run's validation and test photos through ``--detector`` (YuNet
   by default; ``--upscale``/``--tile`` as for ``maskclf evaluate-detection``), once with the detector's boxes as
   they are, once reframed (the shipped constants; the box is then cropped, matched and drawn there): label
   accuracy and balanced accuracy of the matched faces, masked faces called "incorrect", detector recall at
   IoU 0.5 and mAP.

3. With ``--faces DIR`` (class folders of face images from another source, e.g. chandrikadeb7): each image is
   put in a larger frame (padded by half its side, ``edge``: border pixels repeated, ``black``), the detector finds
   the largest face and each export classifies it both ways: the device path on another source's faces.

Decide on the validation photos and the other source. Writes bench/out/framing-<stamp>.{md,json}.

Usage:  python bench/framing.py RUN [EXPORT ...] [--data VOC] [--detector yunet|blazeface|haar] [--upscale K]
            [--tile PX] [--faces DIR --per-class 300] [--precision int8]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from foundation import machine, run_main, write_results  # noqa: E402

VOC = HERE.parent.parent / "shared" / "data" / "face-mask-detection"


def matched(report: dict) -> dict:
    """Label accuracy, balanced accuracy and per-class (found, matched) of the faces the detector matched."""
    cols, table = report["confusion"]["columns"], report["confusion"]["table"]
    per = {c: (row[cols.index(c)], sum(row[:-1])) for c, row in table.items() if sum(row[:-1])}
    masked = table.get("with_mask")
    return {"accuracy": report["matched_accuracy"], "map": report["map"], "recall": report["detector_recall_overall"],
            "balanced_accuracy": sum(a / b for a, b in per.values()) / len(per), "per_class": per,
            "masked_called_incorrect": masked[cols.index("mask_weared_incorrect")]
            if masked and "mask_weared_incorrect" in cols else None}


def other_source(export: str, faces: str, per_class: int, precision: str, detector: str = "yunet") -> dict:
    """{padding: {"detector box" | "reframed": recall per class, balanced accuracy, faces found, called
    incorrect}} of the largest detected face of each padded image of ``faces``' class folders."""
    import random

    import numpy as np

    from maskclf.data.images import is_image_name, load_rgb
    from maskclf.edge.classifier import FaceClassifier
    from maskclf.edge.detector import create_detector, reframe

    det, clf = create_detector(detector), FaceClassifier(export, precision=precision)
    classes = [d.name for d in sorted(Path(faces).iterdir()) if d.is_dir() and d.name in clf.class_names]
    out = {}
    for pad in ("edge", "black"):
        labels = {"detector box": {}, "reframed": {}}
        for c in classes:
            files = sorted(f for f in (Path(faces) / c).iterdir() if is_image_name(f.name))
            random.Random(0).shuffle(files)
            for f in files[:per_class]:
                a = np.asarray(load_rgb(f), np.uint8)
                p = max(a.shape[:2]) // 2
                frame = np.pad(a, ((p, p), (p, p), (0, 0)), mode="edge" if pad == "edge" else "constant")
                boxes = det.detect(frame)
                if boxes:
                    b = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
                    h, w = frame.shape[:2]
                    for crops, box in (("detector box", b), ("reframed", reframe(b, det.framing, w, h))):
                        labels[crops].setdefault(c, []).append(clf.classify(frame, [box])[0].label)
        out[pad] = {}
        for crops, per in labels.items():
            recall = {c: float(np.mean([x == c for x in v])) for c, v in per.items()}
            out[pad][crops] = {"found": {c: len(v) for c, v in per.items()}, "recall": recall,
                               "balanced_accuracy": float(np.mean(list(recall.values()))),
                               "incorrect": {c: sum(x == "mask_weared_incorrect" for x in v) for c, v in per.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the run whose split.csv names the training, validation and test photos")
    ap.add_argument("exports", nargs="*", help="export folders to evaluate both ways (runs of the same split)")
    ap.add_argument("--data", default=str(VOC), help="the VOC folder the run was trained on")
    ap.add_argument("--faces", help="class folders of face images from another source (e.g. chandrikadeb7)")
    ap.add_argument("--per-class", type=int, default=300, help="--faces: images per class (seeded sample)")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--detector", default="yunet", help="the detector whose boxes are evaluated both ways")
    ap.add_argument("--upscale", type=float, help="the detector's --upscale (A/B only)")
    ap.add_argument("--tile", type=int, help="the detector's --tile (A/B only)")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()

    from maskclf.edge.detector import DETECTORS, create_detector, framing_table
    from maskclf.edge.evaluation import evaluate_detection, fit_framing

    with open(Path(a.run) / "split.csv", newline="", encoding="utf-8") as f:
        train = {Path(r["source"]).name for r in csv.DictReader(f) if r["split"] == "train"}
    fits = {d: fit_framing(create_detector(d), a.data, train) for d in DETECTORS}
    shipped = framing_table()  # the class constants: no second detector of each kind loaded
    md = ["# Detector framing: where VOC's annotators draw faces, and cropping the device's faces there", "",
          f"`python bench/framing.py {' '.join(sys.argv[1:])}`, {machine()}, {time.strftime('%Y-%m-%d %H:%M')}.", "",
          "## Fit on the run's training photos (medians: centre offset dx, dy in box widths / heights, size ratios)",
          "", "| detector | faces matched (of annotated) | dx | dy | sw | sh | shipped | per class (dy, sh) |",
          "|---|---:|---:|---:|---:|---:|---|---|"]
    for d, r in fits.items():
        dx, dy, sw, sh = r["framing"]
        cls = "; ".join(f"{c} {v[1]:+.3f}, {v[3]:.3f}" for c, v in r["by_class"].items())
        md.append(f"| {d} | {r['faces']} ({r['annotated_faces']}) | {dx:+.3f} | {dy:+.3f} | {sw:.3f} | {sh:.3f} | "
                  f"{shipped[d]} | {cls} |")
    results = {}
    if a.exports:
        opts = a.detector + (f", upscale {a.upscale}" if a.upscale else "") + (f", tile {a.tile}" if a.tile else "")
        md += ["", f"## Detector ({opts}) + classifier on the run's photos: the detector's box as it is vs reframed",
               "", "| export | split | boxes | label accuracy | balanced accuracy (matched) | found incorrect / with / "
               "without | masked called incorrect | detector recall | mAP@0.5 |",
               "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for e in a.exports:
        for split in ("validation", "test"):
            for framing in (False, True):
                r = matched(evaluate_detection(e, a.data, split=split, run_dir=a.run, out=Path(a.out) / "framing-eval",
                                               precision=a.precision, progress=False, framing=framing,
                                               detector=a.detector, upscale=a.upscale, tile=a.tile))
                results[f"{e}|{split}|{'reframed' if framing else 'raw'}"] = r
                found = " / ".join(f"{x}/{n}" for x, n in r["per_class"].values())
                md.append(f"| `{Path(e).parent.name}` | {split} | {'reframed' if framing else 'detector box'} | "
                          f"{r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {found} | "
                          f"{r['masked_called_incorrect']} | {r['recall']:.3f} | {r['map']:.3f} |")
    if a.faces and a.exports:
        md += ["", f"## Another source through {a.detector}: `{a.faces}`, {a.per_class} images per class, each "
               "padded into a larger frame", "", "| export | padding | box | faces found per class | balanced accuracy | "
               "recall per class | called incorrect per class |", "|---|---|---|---|---:|---|---|"]
        for e in a.exports:
            for pad, r in other_source(e, a.faces, a.per_class, a.precision, a.detector).items():
                results[f"{e}|{a.faces}|{pad}"] = r
                for crops, v in r.items():
                    md.append(f"| `{Path(e).parent.name}` | {pad} | {crops} | "
                              f"{' / '.join(str(x) for x in v['found'].values())} | {v['balanced_accuracy']:.3f} | "
                              f"{' / '.join(f'{x:.3f}' for x in v['recall'].values())} | "
                              f"{' / '.join(str(x) for x in v['incorrect'].values())} |")
    write_results(Path(a.out), "framing", time.strftime("%Y%m%d-%H%M%S"), md,
                  {"run": a.run, "fits": fits, "shipped": shipped, "results": results,
                   "command": "python bench/framing.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    run_main(main, "bench/framing.py")
