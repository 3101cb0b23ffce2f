"""What an offset on one class's log-probability would trade (issue 24): faces of another source land in
"mask worn incorrectly" (the unseen 3-class set: its precision 0.45), so a negative offset on that class may buy
cross-source accuracy at the cost of the class's recall on the run's own photos. No training: the run's model
predicts each split once, then the offset is swept; balanced accuracy is the mean recall over the classes each
set has (calling a two-class source's face "incorrect" is an error).

Decide on the validation rows and the other source, never on the test split of the run's own source.

Writes bench/out/incorrect_bias-<stamp>.{md,json}.

Usage:  python bench/incorrect_bias.py RUN [--data OTHER_SOURCE ...] [--class mask_weared_incorrect]
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

OFFSETS = [0.0, -0.5, -1.0, -1.5, -2.0, -3.0]


def score(y: np.ndarray, logp: np.ndarray, k: int, offset: float) -> dict:
    """Balanced accuracy over the classes present, recall of class k and the share of faces called k."""
    z = logp.copy()
    z[:, k] += offset
    pred = z.argmax(1)
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return {"balanced_accuracy": float(np.mean(recalls)),
            "recall": float(np.mean(pred[y == k] == k)) if np.any(y == k) else None,
            "called": float(np.mean(pred == k))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a maskclf run directory (one network or an ensemble)")
    ap.add_argument("--data", action="append", default=[], help="another source, scored on its own classes")
    ap.add_argument("--class", dest="cls", default="mask_weared_incorrect", help="the class whose offset is swept")
    ap.add_argument("--out", default=str(HERE / "out"))
    a = ap.parse_args()

    from maskclf.config import load_config
    from maskclf.files import MaskclfError, read_labels
    from maskclf.reports.evaluate import load_run_model, predict_paths

    run = Path(a.run)
    names = read_labels(run / "labels.txt")
    if a.cls not in names:
        raise MaskclfError(f"{run}: --class {a.cls} is not one of its classes ({', '.join(names)})")
    k = names.index(a.cls)
    cfg = load_config(run / "config.yaml")
    sets = run_face_sets(run, cfg, names, a.data, hint="run the training command again to rebuild the crops",
                         progress=True)
    model = load_run_model(run)
    logp = {s: np.log(np.clip(predict_paths(model, p, cfg.data.image_size), 1e-12, 1)) for s, (p, _) in sets.items() if p}
    table = {s: [score(np.array(sets[s][1]), logp[s], k, o) for o in OFFSETS] for s in logp}

    def cell(r: dict) -> str:
        rec = "" if r["recall"] is None else f", recall {r['recall']:.3f}"
        return f"{r['balanced_accuracy']:.3f}{rec}, {100 * r['called']:.1f} % called"

    md = [f"# Offset on the log-probability of {a.cls}: {run}", "",
          f"`python bench/incorrect_bias.py {' '.join(sys.argv[1:])}`, {machine()}, {time.strftime('%Y-%m-%d %H:%M')}.",
          "Each cell: balanced accuracy (classes the set has), recall of the class, share of faces called it.", "",
          "| offset | " + " | ".join(f"{s} ({len(sets[s][1])})" for s in logp) + " |",
          "|---:|" + "---|" * len(logp)]
    md += [f"| {o:+.1f} | " + " | ".join(cell(table[s][i]) for s in logp) + " |" for i, o in enumerate(OFFSETS)]
    write_results(Path(a.out), "incorrect_bias", time.strftime("%Y%m%d-%H%M%S"), md,
                  {"run": str(run), "class": a.cls, "offsets": OFFSETS, "sets": {s: len(sets[s][1]) for s in logp},
                   "table": table, "command": "python bench/incorrect_bias.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    run_main(main, "bench/incorrect_bias.py")
