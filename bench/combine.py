"""How a two-member ensemble's probabilities are combined (issue 24): the default averages its members equally;
would another weight, the geometric mean or the more confident member do better? No training: each fold's two
member runs of a `maskclf cv` folder predict their validation and test splits and any other source once (each
member at its own input size, decoded as in training), then every rule is scored. Balanced accuracy is the mean
recall over the classes each set has (calling a two-class source's face "incorrect" is an error).

Decide on the validation column and the other source, never on the test folds.

`--first-from CV_DIR2` (`--second-from`) takes each fold's first (second) member from CV_DIR2's same fold instead:
a recipe changed for one member only, e.g. the CNN trained with `data.detector_train=true`, beside the other
member as it was. The folds' validation and test splits must be the same photos.

Writes bench/out/combine-<stamp>.{md,json}.

Usage:  python bench/combine.py CV_DIR [--data OTHER_SOURCE ...] [--first-from CV_DIR2] [--second-from CV_DIR3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from foundation import machine, run_face_sets, run_main, write_results  # noqa: E402
from robustness import balanced_accuracy  # noqa: E402

from maskclf.training.ensemble import scored_rows  # noqa: E402


def _weighted(w: float):
    return lambda a, b: (1 - w) * a + w * b


RULES = {**{f"mean, second member's weight {w}": _weighted(w) for w in (0.3, 0.4, 0.5, 0.6, 0.7)},
         "geometric mean": lambda a, b: np.sqrt(np.clip(a, 1e-12, 1) * np.clip(b, 1e-12, 1)),
         "the more confident member": lambda a, b: np.where((a.max(1) >= b.max(1))[:, None], a, b),
         "first member alone": lambda a, b: a,
         "second member alone": lambda a, b: b}


def fold_members(fold: Path) -> list[Path]:
    """The two member runs of a cv fold (an ensemble's own directory left out), in name order."""
    runs = sorted(p for p in fold.iterdir() if (p / "best.keras").is_file() and not (p / "ensemble.json").is_file())
    if len(runs) != 2:
        from maskclf.files import MaskclfError
        raise MaskclfError(f"{fold}: {len(runs)} member runs, expected 2 (a cv fold of the default ensemble)")
    return runs


def member_probabilities(run: Path, data: list[str]) -> dict:
    """{set: (labels, probabilities)} for the run's validation and test splits and each other source."""
    from maskclf.config import load_config
    from maskclf.files import read_labels
    from maskclf.reports.evaluate import load_run_model, predict_paths

    cfg, names = load_config(run / "config.yaml"), read_labels(run / "labels.txt")
    sets = run_face_sets(run, cfg, names, data, hint="run the cv command again to rebuild the crops")
    model = load_run_model(run)
    return {s: (np.array(y), predict_paths(model, p, cfg.data.image_size)) for s, (p, y) in sets.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cv", help="a `maskclf cv` folder of the default ensemble (two member runs per fold)")
    ap.add_argument("--data", action="append", default=[], help="another source, scored on its own classes")
    ap.add_argument("--first-from", help="another cv folder of the same folds: each fold's first member from it")
    ap.add_argument("--second-from", help="the same for each fold's second member")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()

    folds = sorted(Path(a.cv).glob("fold-*-of-*"))
    if not folds:
        from maskclf.files import MaskclfError
        raise MaskclfError(f"{a.cv}: no fold-K-of-N folders; give a `maskclf cv` output folder")
    scores: dict[str, dict[str, list[float]]] = {r: {} for r in RULES}
    members = []
    for fold in folds:
        first, second = fold_members(fold)
        if a.first_from:
            first = fold_members(Path(a.first_from) / fold.name)[0]
        if a.second_from:
            second = fold_members(Path(a.second_from) / fold.name)[1]
        if scored_rows(first) != scored_rows(second):
            from maskclf.files import MaskclfError
            raise MaskclfError(f"{first}: its validation/test split differs from {second}'s; give cv folders "
                               "of the same folds")
        members.append([first.name, second.name])
        pa, pb = member_probabilities(first, a.data), member_probabilities(second, a.data)
        for s, (y, p) in pa.items():
            for rule, f in RULES.items():
                scores[rule].setdefault(s, []).append(balanced_accuracy(y, f(p, pb[s][1]).argmax(1))[0])
        print(f"{fold.name}: {first.name} + {second.name}", file=sys.stderr, flush=True)
    sets = list(scores[next(iter(RULES))])
    title = (f"{a.cv}" + (f", first members from {a.first_from}" if a.first_from else "")
             + (f", second members from {a.second_from}" if a.second_from else ""))
    md = [f"# Combining the two members of {title} ({len(folds)} folds)", "",
          f"`python bench/combine.py {' '.join(sys.argv[1:])}`, {machine()}, {time.strftime('%Y-%m-%d %H:%M')}.",
          f"First member {members[0][0]}, second {members[0][1]} (fold 1). Balanced accuracy, mean ± sd over folds.", "",
          "| rule | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    md += [f"| {rule} | " + " | ".join(f"{100 * np.mean(v[s]):.1f} ± {100 * np.std(v[s], ddof=1):.1f}" for s in sets)
           + " |" for rule, v in scores.items()]
    write_results(Path(a.out), "combine", time.strftime("%Y%m%d-%H%M%S"), md,
                  {"cv": str(a.cv), "first_from": a.first_from, "second_from": a.second_from, "members": members,
                   "scores": scores, "command": "python bench/combine.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    run_main(main, "bench/combine.py")
