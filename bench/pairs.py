"""Every pairing of independently trained members, scored as two-member ensembles (issue 24): how much of a
leave-one-source-out difference between two recipes is the recipe, and how much the one partner each run had?

One `maskclf cv --by-source` run per seed gives one ensemble per seed, so a recipe changed on one member is judged on
a handful of pairs that share a partner. Here each member run (of one split: the same validation and test rows)
predicts its validation and test splits once, at its own input size; every first × second pairing of the runs you
name is then scored as the plain mean of the two (the default's rule), and the pairings are summarised per arm
(the first member's recipe × the second's). Balanced accuracy is the mean recall over the classes each set has.

Decide on the validation column and a held-out source, never on the test folds of the same source.

Writes bench/out/pairs-<stamp>.{md,json}.

Usage:  python bench/pairs.py --first ARM=RUN [--first ARM=RUN ...] --second ARM=RUN [--second ARM=RUN ...]
        (RUN: a member run directory; ARM: the recipe's name, e.g. plain or framed)
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from combine import member_probabilities  # noqa: E402
from foundation import machine, run_main, write_results  # noqa: E402
from robustness import balanced_accuracy  # noqa: E402

from maskclf.files import MaskclfError  # noqa: E402
from maskclf.training.ensemble import scored_rows  # noqa: E402


def arm_runs(specs: list[str], flag: str) -> list[tuple[str, Path]]:
    """``ARM=RUN`` specs -> [(arm, run dir)], each run checked to be a member run."""
    out = []
    for spec in specs:
        arm, sep, run = spec.partition("=")
        if not sep or not arm or not (Path(run) / "best.keras").is_file():
            raise MaskclfError(f"{flag} {spec}: give ARM=RUN with RUN a run directory holding best.keras")
        out.append((arm, Path(run)))
    return out


def same_paths(run: Path) -> list[tuple[str, str, str]]:
    """scored_rows with each path resolved from the current folder: runs given ../shared/X and /work/shared/X."""
    return sorted((os.path.realpath(p), label, split) for p, label, split in scored_rows(run))


def summary(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    sd = f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else ""
    return f"{v.mean():.1f}{sd} ({v.min():.1f}-{v.max():.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", action="append", required=True, help="ARM=RUN: a first member (e.g. the CNN)")
    ap.add_argument("--second", action="append", required=True, help="ARM=RUN: a second member (e.g. lite0)")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()

    firsts, seconds = arm_runs(a.first, "--first"), arm_runs(a.second, "--second")
    rows = same_paths(firsts[0][1])
    for _, run in firsts + seconds:
        if same_paths(run) != rows:
            raise MaskclfError(f"{run}: its validation/test split differs from {firsts[0][1]}'s; give runs of one split")
    probs = {}
    for _, run in firsts + seconds:
        probs[run] = member_probabilities(run, [])
        print(f"predicted {run}", file=sys.stderr, flush=True)
    sets = list(probs[firsts[0][1]])
    alone = {run: {s: balanced_accuracy(y, p.argmax(1))[0] for s, (y, p) in probs[run].items()}
             for run in probs}
    pairs = []
    for (fa, fr), (sa, sr) in itertools.product(firsts, seconds):
        scores = {s: balanced_accuracy(y, ((p + probs[sr][s][1]) / 2).argmax(1))[0] for s, (y, p) in probs[fr].items()}
        pairs.append({"first_arm": fa, "second_arm": sa, "first": str(fr), "second": str(sr), "scores": scores})

    md = [f"# Every pairing of {len(firsts)} first and {len(seconds)} second members, as equal-mean ensembles", "",
          f"`python bench/pairs.py {' '.join(sys.argv[1:])}`, {machine()}, {time.strftime('%Y-%m-%d %H:%M')}.",
          "Balanced accuracy (%), mean ± sd over the pairings (min-max); pairings of one arm share members, so the sd "
          "is not a standard error.", "",
          "| first arm × second arm | pairings | " + " | ".join(sets) + " |", "|---|---:|" + "---:|" * len(sets)]
    for fa, sa in dict.fromkeys((p["first_arm"], p["second_arm"]) for p in pairs):
        arm = [p for p in pairs if (p["first_arm"], p["second_arm"]) == (fa, sa)]
        md.append(f"| {fa} × {sa} | {len(arm)} | "
                  + " | ".join(summary([p["scores"][s] for p in arm]) for s in sets) + " |")
    md += ["", "Each member alone:", "", "| member | arm | " + " | ".join(sets) + " |", "|---|---|" + "---:|" * len(sets)]
    md += [f"| {run} | {arm} | " + " | ".join(f"{100 * alone[run][s]:.1f}" for s in sets) + " |"
           for arm, run in firsts + seconds]
    write_results(Path(a.out), "pairs", time.strftime("%Y%m%d-%H%M%S"), md,
                  {"pairs": pairs, "alone": {str(r): v for r, v in alone.items()},
                   "command": "python bench/pairs.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    run_main(main, "bench/pairs.py")
