"""Tuning benchmark (issue: KerasTuner searches ... and training the best configuration).

On the 3-class face crops of ../shared/data/face-mask-detection, with tuning/small_cnn.yaml:
  1. a Hyperband search (max epochs per trial E, factor 3, one iteration);
  2. a random search given the same epoch budget: max_trials = (epochs Hyperband used) / E;
  3. the configuration with the better validation objective trained with `maskclf train --config best.yaml`
     (its own epochs, or --final-epochs) and evaluated on the test split, beside the package default trained
     in the same script on the same split (the default's run from bench/foundation.py is reused if given).
Writes bench/out/tune-<stamp>.{json,md}; search folders stay in bench/out/tune/<tuner>/ (resumable).

Usage:  python bench/tune.py [--max-epochs 9] [--shared ../shared] [--default-run RUN_DIR] [--final-epochs N]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from foundation import machine  # noqa: E402


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def search(tuner: str, voc: str, out: Path, max_epochs: int, max_trials: int | None, extra: list[str]) -> dict:
    d = out / tuner
    cmd = [sys.executable, "-m", "maskclf.cli", "tune", str(REPO / "tuning" / "small_cnn.yaml"), "--data", voc,
           "--tuner", tuner, "--max-epochs", str(max_epochs), "--out", str(d), "--quiet", *extra]
    if max_trials:
        cmd += ["--max-trials", str(max_trials)]
    t0 = time.time()
    run(cmd)
    wall = time.time() - t0
    with open(d / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    done = [t for t in trials if t["status"] == "COMPLETED"]
    best = json.loads((d / "best_trial.json").read_text())
    return {"tuner": tuner, "dir": str(d), "trials": len(trials), "completed": len(done),
            "epochs": sum(int(float(t["epochs"] or 0)) for t in trials),
            "trial_seconds": round(sum(float(t["seconds"] or 0) for t in trials), 1),
            "wall_seconds": round(wall, 1), "best_score": best["score"], "best": best,
            "command": "maskclf " + " ".join(cmd[3:])}


def train(args: list[str], out: Path) -> dict:
    stdout = run([sys.executable, "-m", "maskclf.cli", "train", *args, "--out", str(out), "--quiet"])
    run_dir = Path(stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
    return metrics_of(run_dir, "maskclf train " + " ".join(args))


def metrics_of(run_dir: Path, command: str) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"run_dir": str(run_dir), "command": command, "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"], "recall": {c: v["recall"] for c, v in m["per_class"].items()},
            "parameters": m["training"]["parameters"], "epochs": m["training"]["epochs"],
            "train_seconds": m["training"]["seconds"]}


def to_markdown(res: dict) -> str:
    lines = ["| search | trials (completed) | epochs used | wall | best val. balanced acc. | best hyperparameters |",
             "|---|---:|---:|---:|---:|---|"]
    for s in res["searches"]:
        hp = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in s["best"]["hyperparameters"].items())
        lines.append(f"| {s['tuner']} | {s['trials']} ({s['completed']}) | {s['epochs']} | "
                     f"{s['wall_seconds'] / 60:.1f} min | {s['best_score']:.4f} | {hp} |")
    lines += ["", "| model | command | test balanced acc. | recall incorrect / with / without | params | epochs |"
              " train time |", "|---|---|---:|---|---:|---:|---:|"]
    for name in ("tuned", "default"):
        r = res[name]
        rec = " / ".join(f"{r['recall'][c]:.3f}" for c in ("mask_weared_incorrect", "with_mask", "without_mask"))
        lines.append(f"| {name} | `{r['command']}` | **{r['balanced_accuracy']:.4f}** | {rec} | {r['parameters']:,} "
                     f"| {r['epochs']} | {r['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-epochs", type=int, default=9, help="epochs per trial E (Hyperband's max_epochs)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--default-run", help="a finished run of the package default on the same data to compare with "
                                          "(else it is trained here)")
    ap.add_argument("--final-epochs", type=int, help="epochs to train the winner (default: best.yaml's)")
    ap.add_argument("overrides", nargs="*", help="key=value fixed for every trial (e.g. data.image_size=48)")
    a = ap.parse_args()
    voc = str(Path(a.shared) / "data" / "face-mask-detection")
    out = Path(a.out)
    tdir = out / "tune"
    hb = search("hyperband", voc, tdir, a.max_epochs, None, a.overrides)
    budget = max(1, round(hb["epochs"] / a.max_epochs))
    rs = search("random", voc, tdir, a.max_epochs, budget, a.overrides)
    winner = max((hb, rs), key=lambda s: s["best_score"])
    final = ["--config", str(Path(winner["dir"]) / "best.yaml"), "--data", voc]
    if a.final_epochs:
        final += ["--epochs", str(a.final_epochs)]
    # The space's train.patience is a search-budget setting (ends weak trials early); the winner trains
    # the whole schedule like the package default.
    final += ["train.patience=0"]
    tuned = train(final, tdir / "final")
    # against the one network the space is centred on (without --model, train gives the two-family ensemble)
    default = (metrics_of(Path(a.default_run), f"maskclf train --data {voc} --model maskclf_cnn") if a.default_run
               else train(["--data", voc, "--model", "maskclf_cnn"], tdir / "default"))
    res = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "command": "python bench/tune.py " + " ".join(sys.argv[1:]), "random_max_trials": budget,
           "searches": [hb, rs], "winner": winner["tuner"], "tuned": tuned, "default": default}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"tune-{stamp}.json").write_text(json.dumps(res, indent=1))
    md = f"{res['command']}\n\n{res['machine']}, {res['date']}\n\n" + to_markdown(res)
    (out / f"tune-{stamp}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
