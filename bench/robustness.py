"""Robustness sweep of an exported model (issue 24 target 3): faces shrunk and grown, JPEG quality, blur.

No training: the run's exported .tflite (what the device runs, through maskclf.edge, no TensorFlow) classifies
face crops after each perturbation, and the balanced accuracy (mean recall over the classes present) is reported
per perturbation and per face set:

* ``test``: the run's own test split (same source as training);
* every ``--data SOURCE`` (all of its images; classes matched to the model's by name, others skipped): the
  cross-source proxies, e.g. VOC -> chandrikadeb7.

Each face is first brought to at most ``--max-side`` px (a larger face is a face of that size in the photo;
it keeps memory small), then perturbed:

* ``size S``: the face resized to S×S (antialiased bilinear, as a camera's smaller or larger face would be
  sampled), then to the model's input as the device does — a face S px wide in the frame;
* ``jpeg Q``: re-encoded as JPEG at quality Q at that size (a cheap camera, a messaging app);
* ``blur F``: Gaussian blur with sigma = F × the face side (focus, motion);
* ``bright F``: every pixel × F, clipped (under- and over-exposure);
* ``crop F`` / ``top F`` / ``bottom F``: a window of F × the side kept, centred / at the top / at the bottom (another
  annotator's or detector's tighter box: a box sitting higher keeps the forehead and loses the chin).

Writes bench/out/robustness-<stamp>.{md,json}.

Usage:
  python bench/robustness.py RUN_DIR [--data ../shared/data/chandrikadeb7-face-mask] [--precision int8]
         [--max-images 2000] [--only size,crop]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from foundation import machine, run_face_sets, run_main, write_results  # noqa: E402

PERTURBATIONS = [("none", None), ("size", 12), ("size", 16), ("size", 24), ("size", 48), ("size", 96),
                 ("jpeg", 50), ("jpeg", 25), ("jpeg", 10), ("blur", 0.02), ("blur", 0.04), ("blur", 0.08),
                 ("bright", 0.5), ("bright", 1.3), ("bright", 1.6),
                 ("crop", 0.85), ("crop", 0.7), ("top", 0.85), ("bottom", 0.85)]


def perturb(img: Image.Image, kind: str, value) -> Image.Image:
    """``img`` (an RGB face crop) after one perturbation of :data:`PERTURBATIONS`."""
    if kind == "none":
        return img
    if kind == "size":
        return img.resize((int(value), int(value)), Image.BILINEAR)
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(value))
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=max(0.3, float(value) * min(img.size))))
    if kind == "bright":
        arr = np.asarray(img, np.float32) * float(value)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if kind in ("crop", "top", "bottom"):
        w, h = img.size
        cw, ch = max(1, round(w * value)), max(1, round(h * value))
        left = (w - cw) // 2
        top = {"crop": (h - ch) // 2, "top": 0, "bottom": h - ch}[kind]
        return img.crop((left, top, left + cw, top + ch))
    raise ValueError(f"unknown perturbation {kind}")


def label(kind: str, value) -> str:
    return kind if value is None else f"{kind} ×{value:g}" if kind == "bright" else f"{kind} {value:g}"


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> tuple[float, dict]:
    """Mean recall over the classes present in ``y`` (a prediction of an absent class counts as wrong)."""
    recalls = {int(c): float(np.mean(pred[y == c] == c)) for c in np.unique(y)}
    return float(np.mean(list(recalls.values()))), recalls


def face_sets(run: Path, data: list[str], class_names: list[str], max_images: int, seed: int) -> dict:
    """{name: (paths, labels)}: the run's test split, then each ``--data`` source."""
    from maskclf.config import load_config

    found = run_face_sets(run, load_config(run / "config.yaml"), class_names, data, splits=("test",),
                          hint="train the run again", progress=True)
    sets = {"test (same source)": found.pop("test"), **found}
    rng = np.random.default_rng(seed)
    for name, (paths, labels) in list(sets.items()):
        if len(paths) > max_images:  # a random subsample (class shares kept in expectation)
            idx = np.sort(rng.choice(len(paths), max_images, replace=False))
            sets[name] = ([paths[i] for i in idx], [labels[i] for i in idx])
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory with an export/ folder (maskclf export RUN)")
    ap.add_argument("--data", action="append", default=[], help="another source to sweep (repeatable)")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--max-side", type=int, default=128)
    ap.add_argument("--max-images", type=int, default=4000, help="per face set (a random subsample beyond)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated kinds to run (size, jpeg, blur, bright, crop, top, "
                    "bottom); the unperturbed row is always run")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()

    from maskclf.data.images import load_rgb
    from maskclf.edge.classifier import FaceClassifier

    run = Path(args.run)
    if not (run / "export").is_dir():
        sys.exit(f"bench/robustness.py: {run}/export: not found; run `maskclf export {run}` first")
    kinds = set(filter(None, args.only.split(","))) or {k for k, _ in PERTURBATIONS}
    unknown = kinds - {k for k, _ in PERTURBATIONS}
    if unknown:
        sys.exit(f"bench/robustness.py: --only {','.join(sorted(unknown))}: not a perturbation "
                 f"({', '.join(sorted({k for k, _ in PERTURBATIONS} - {'none'}))})")
    perturbations = [(k, v) for k, v in PERTURBATIONS if k == "none" or k in kinds]
    clf = FaceClassifier(run / "export", precision=args.precision)
    names = clf.class_names
    sets = face_sets(run, args.data, names, args.max_images, args.seed)
    size = (clf.size, clf.size)
    results = {}
    for set_name, (paths, labels) in sets.items():
        t0 = time.perf_counter()
        faces = []
        for p in paths:
            img = load_rgb(p)
            if max(img.size) > args.max_side:
                s = args.max_side / max(img.size)
                img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.BILINEAR)
            faces.append(img)
        y = np.array(labels)
        results[set_name] = {"faces": len(faces), "per_class": {names[c]: int(np.sum(y == c)) for c in np.unique(y)},
                             "rows": []}
        for kind, value in perturbations:
            batch = np.stack([np.asarray(perturb(f, kind, value).resize(size, Image.BILINEAR)) for f in faces])
            probs = np.concatenate([clf.predict(batch[i:i + 256]) for i in range(0, len(batch), 256)])
            pred = np.array([clf.decide(p)[0] for p in probs])
            bal, recalls = balanced_accuracy(y, pred)
            results[set_name]["rows"].append({"perturbation": label(kind, value), "balanced_accuracy": round(bal, 4),
                                              "recall": {names[c]: round(r, 4) for c, r in recalls.items()}})
            print(f"{set_name}: {label(kind, value):<10} balanced accuracy {bal:.4f}", file=sys.stderr, flush=True)
        results[set_name]["seconds"] = round(time.perf_counter() - t0, 1)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "run": str(run.resolve()),
            "model": clf.model_path.name, "max_side": args.max_side, "data": args.data}
    cols = list(results)
    md = [f"### Robustness sweep ({meta['date']})", "",
          f"`python bench/robustness.py {args.run}" + "".join(f" --data {d}" for d in args.data) +
          f" --precision {args.precision}`; {meta['machine']}; model {clf.model_path.name}. Balanced accuracy "
          f"(mean recall over the classes present); faces first brought to at most {args.max_side} px.", "",
          "| perturbation | " + " | ".join(f"{c} ({results[c]['faces']})" for c in cols) + " |",
          "|---|" + "---:|" * len(cols)]
    for i, (kind, value) in enumerate(perturbations):
        md.append(f"| {label(kind, value)} | " + " | ".join(f"{results[c]['rows'][i]['balanced_accuracy']:.3f}"
                                                           for c in cols) + " |")
    write_results(Path(args.out), "robustness", stamp, md, meta | {"sets": results})


if __name__ == "__main__":
    run_main(main, "bench/robustness.py")
