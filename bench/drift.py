"""How fine-tuning moves a net away from its start, and where validation peaks (issue "Model quality", session 11).

No training: for each fold of a cross-validated recipe (bench/out/quality/<recipe>/, made by bench/quality.py),
the best model's squared distance from the weights it started from (the run's `model.init_from`, resolved as
training resolved it), in all and for the layer that moved most, and from the run's history.csv the epoch of
best validation balanced accuracy and how far it fell by the last epoch. The figures behind `train.l2sp`.

Usage:  python bench/drift.py --recipes default[,default_seed1] [--quality bench/out/quality]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from foundation import machine  # noqa: E402
from posthoc import fold_runs  # noqa: E402


def drift(run: Path) -> dict:
    import keras

    from maskclf.models import registry as models
    from maskclf.config import load_config

    cfg = load_config(run / "config.yaml")
    start = models.init_source(cfg.model.init_from, cfg.model.name)
    if start is None:
        raise SystemExit(f"{run}: started at random (model.init_from={cfg.model.init_from}); no start to compare")
    a = keras.saving.load_model(start, compile=False)
    b = keras.saving.load_model(run / "best.keras", compile=False)
    theirs = {layer.name: layer for layer in a.layers}
    per_layer = {}
    for layer in b.layers:
        if layer.name in theirs and layer.trainable_weights:
            per_layer[layer.name] = sum(float(np.sum((x.numpy() - y.numpy()) ** 2))
                                        for x, y in zip(layer.trainable_weights, theirs[layer.name].trainable_weights))
    with open(run / "history.csv", newline="") as f:
        val = [float(r["val_balanced_accuracy"]) for r in csv.DictReader(f)]
    best = int(np.argmax(val))
    top = max(per_layer, key=per_layer.get)
    return {"distance": sum(per_layer.values()), "top": top, "top_distance": per_layer[top], "best_epoch": best + 1,
            "epochs": len(val), "best": val[best], "last": val[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", required=True, help="comma-separated recipe names")
    ap.add_argument("--quality", default=str(HERE / "out" / "quality"))
    args = ap.parse_args()
    print(f"`python bench/drift.py --recipes {args.recipes}`; {machine()}\n")
    print("| recipe | fold | squared distance from the start | most moved layer | best epoch | val. best → last |")
    print("|---|---:|---:|---|---:|---|")
    for recipe in args.recipes.split(","):
        for fold, run in sorted(fold_runs(Path(args.quality), recipe).items()):
            d = drift(run)
            print(f"| {recipe} | {fold} | {d['distance']:.1f} | {d['top']} ({d['top_distance']:.1f}) | "
                  f"{d['best_epoch']} of {d['epochs']} | {d['best']:.3f} → {d['last']:.3f} |")


if __name__ == "__main__":
    main()
