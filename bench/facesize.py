"""Accuracy by face size (issue "Model quality", target 2: faces come at every size and sharpness).

No training: each fold's best model of a cross-validated recipe (bench/out/quality/<recipe>/, made by
bench/quality.py) predicts its test faces; every VOC face's size (the shorter side of its annotated box, in
the photo's pixels) comes from the crop cache's manifest. Pooled over the folds, per size band: faces,
accuracy, balanced accuracy and each class's recall. Tells whether errors live in the tiny faces (where
"worn incorrectly" is hard to see at all) or everywhere.

Writes bench/out/facesize-<stamp>.{md,json}.

Usage:  python bench/facesize.py --recipes seed004_nostop[,tiramisu_32] [--quality bench/out/quality]
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
from posthoc import fold_runs  # noqa: E402

BANDS = [(0, 16), (16, 24), (24, 32), (32, 64), (64, 10_000)]


def face_sizes(paths: list[str]) -> np.ndarray:
    """Box size (shorter side, photo pixels) of each VOC crop, read from its folder's manifest.json."""
    manifests: dict[Path, dict] = {}
    out = []
    for p in map(Path, paths):
        if p.parent not in manifests:
            rec = json.loads((p.parent / "manifest.json").read_text())
            manifests[p.parent] = {f["file"]: f["face_size"] for f in rec["faces"]}
        out.append(manifests[p.parent][p.name])
    return np.asarray(out, dtype=float)


def predict_test(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(labels, predicted classes, face sizes, class names) of a run's test split."""
    from maskclf.data.splitting import read_split_csv
    from maskclf.reports.evaluate import load_run_model, predict_paths
    from maskclf.files import read_labels

    model = load_run_model(run)
    names = read_labels(run / "labels.txt")
    rows = [r for r in read_split_csv(run / "split.csv") if r["split"] == "test"]
    paths = [r["path"] for r in rows]
    y = np.array([names.index(r["label"]) for r in rows])
    pred = predict_paths(model, paths, int(model.input_shape[1])).argmax(1)
    return y, pred, face_sizes(paths), names


def table(y: np.ndarray, pred: np.ndarray, size: np.ndarray, names: list[str]) -> list[dict]:
    rows = []
    for lo, hi in BANDS:
        m = (size >= lo) & (size < hi)
        if not m.any():
            continue
        rec = {}
        for c, n in enumerate(names):
            sel = m & (y == c)
            rec[n] = {"faces": int(sel.sum()), "recall": float((pred[sel] == c).mean()) if sel.any() else None}
        present = [v["recall"] for v in rec.values() if v["faces"] >= 5]
        rows.append({"band": f"{lo}-{hi}" if hi < 10_000 else f">={lo}", "faces": int(m.sum()),
                     "accuracy": float((pred[m] == y[m]).mean()),
                     "balanced_accuracy": float(np.mean(present)) if present else None, "per_class": rec})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", required=True, help="comma-separated recipe folders of bench/out/quality")
    ap.add_argument("--quality", default=str(HERE / "out" / "quality"))
    a = ap.parse_args()
    quality = Path(a.quality)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
              "command": "python bench/facesize.py " + " ".join(sys.argv[1:]), "recipes": {}}
    md = [result["command"], "", f"{result['machine']}, {result['date']}", ""]
    for recipe in a.recipes.split(","):
        ys, ps, ss = [], [], []
        names: list[str] = []
        for fold, run in sorted(fold_runs(quality, recipe).items()):
            y, p, s, names = predict_test(run)
            ys.append(y), ps.append(p), ss.append(s)
        rows = table(np.concatenate(ys), np.concatenate(ps), np.concatenate(ss), names)
        result["recipes"][recipe] = rows
        md += [f"### {recipe} (test faces of every fold, pooled)", "",
               "| face size (px, shorter box side) | faces | accuracy | balanced accuracy* | "
               + " | ".join(f"recall {n} (faces)" for n in names) + " |",
               "|---|---:|---:|---:|" + "---:|" * len(names)]
        for r in rows:
            ba = "-" if r["balanced_accuracy"] is None else f"{100 * r['balanced_accuracy']:.1f}"
            cells = [("-" if v["recall"] is None else f"{100 * v['recall']:.1f}") + f" ({v['faces']})"
                     for v in r["per_class"].values()]
            md.append(f"| {r['band']} | {r['faces']} | {100 * r['accuracy']:.1f} | {ba} | " + " | ".join(cells) + " |")
        md += ["", "*mean recall over the classes with at least 5 faces in the band", ""]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / f"facesize-{stamp}.json").write_text(json.dumps(result, indent=1))
    (out / f"facesize-{stamp}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
