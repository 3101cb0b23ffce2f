"""Post-hoc levers on finished cross-validation recipes (issue "Model quality"): test-time flip and ensembles.

No training: for every fold of each named recipe in bench/out/quality/<recipe>/fold-<f>-of-<K>/ (made by
bench/quality.py), the fold's best model predicts its validation and test images as they are and flipped
left-right. Then every combination of the recipes (an ensemble averages their probabilities; the recipes
share the folds, so fold f of each recipe saw the same training images) is scored with and without the
flip: balanced accuracy mean ± sd over folds on validation (what a choice is made on) and on test.
Caveat: a single recipe's validation figure is optimistic (its best epoch was chosen on it), an ensemble's
less so, so compare ensembles with single models on the test columns too.
Device cost: an ensemble of k models costs k classifier calls per face; the flip doubles it.

Writes bench/out/posthoc-<stamp>.{md,json}.

Usage:  python bench/posthoc.py --recipes seed004_nostop,seed004_nostop_res,seed004_res [--quality bench/out/quality]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from foundation import machine  # noqa: E402


def fold_runs(quality: Path, recipe: str) -> dict[int, Path]:
    """fold number -> run directory, as `maskclf cv` recorded them in the recipe's cv.json."""
    summary = quality / recipe / "cv.json"
    if not summary.is_file():
        raise SystemExit(f"{summary}: missing; run `python bench/quality.py --only {recipe}` first")
    return {int(f["fold"]): Path(f["run_dir"]) for f in json.loads(summary.read_text())["per_fold"]}


def predict_run(run: Path) -> dict:
    """{split: (labels, probabilities, probabilities of the flipped images)} for validation and test."""
    import tensorflow as tf

    from maskclf.data import pipeline
    from maskclf.data.splitting import read_split_csv
    from maskclf.reports.evaluate import load_run_model
    from maskclf.files import read_labels

    model = load_run_model(run)
    size = int(model.input_shape[1])
    names = read_labels(run / "labels.txt")
    rows = read_split_csv(run / "split.csv")
    out = {}
    for split in ("validation", "test"):
        chosen = [r for r in rows if r["split"] == split]
        y = np.array([names.index(r["label"]) for r in chosen])
        ds = pipeline.make_dataset([r["path"] for r in chosen], None, size, 64, cache=False)
        p, pf = [], []
        for x in ds:
            p.append(np.asarray(model(x, training=False)))
            pf.append(np.asarray(model(tf.image.flip_left_right(x), training=False)))
        out[split] = (y, np.concatenate(p), np.concatenate(pf))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", required=True, help="comma-separated recipe folders of bench/out/quality")
    ap.add_argument("--quality", default=str(HERE / "out" / "quality"))
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()
    from sklearn.metrics import balanced_accuracy_score

    recipes = [r.strip() for r in a.recipes.split(",") if r.strip()]
    runs = {r: fold_runs(Path(a.quality), r) for r in recipes}
    folds = sorted(set.intersection(*(set(v) for v in runs.values())))
    if not folds:
        raise SystemExit("the recipes share no finished fold")
    preds = {}
    for r in recipes:
        for f in folds:
            preds[(r, f)] = predict_run(runs[r][f])
            print(f"[posthoc] {r} fold {f}", file=sys.stderr, flush=True)

    def score(members, split, flip):
        vals = []
        for f in folds:
            y = preds[(members[0], f)][split][0]
            ps = [(preds[(m, f)][split][1] + preds[(m, f)][split][2]) / 2 if flip else preds[(m, f)][split][1]
                  for m in members]
            vals.append(balanced_accuracy_score(y, np.mean(ps, 0).argmax(1)))
        return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0

    rows = []
    for k in range(1, len(recipes) + 1):
        for members in itertools.combinations(recipes, k):
            for flip in (False, True):
                v, t = score(members, "validation", flip), score(members, "test", flip)
                rows.append({"members": list(members), "flip": flip, "calls_per_face": k * (2 if flip else 1),
                             "validation": v, "test": t})
    rows.sort(key=lambda r: -r["validation"][0])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "folds": folds,
            "command": "python bench/posthoc.py --recipes " + ",".join(recipes)}
    md = [f"### Test-time flip and ensembles over cross-validation folds ({meta['date']})", "",
          f"`{meta['command']}`; folds {folds}; sorted by validation balanced accuracy.", "",
          "| members | flip | classifier calls per face | validation bal. acc. | test bal. acc. |",
          "|---|---|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {' + '.join(r['members'])} | {'yes' if r['flip'] else 'no'} | {r['calls_per_face']} | "
                  f"{r['validation'][0]:.3f} ± {r['validation'][1]:.3f} | {r['test'][0]:.3f} ± {r['test'][1]:.3f} |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"posthoc-{stamp}.md").write_text("\n".join(md) + "\n")
    (out / f"posthoc-{stamp}.json").write_text(json.dumps(meta | {"rows": rows}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
