"""Autoencoder augmentation benchmark (seed report 001): does adding VAE / DAE images of the rare class help?

For each seed, on the same split: train the baseline, then generate images of the rarest training class
from the baseline run's training crops (`maskclf synth RUN --method vae|dae`) and train again with them
(`maskclf train --extra-train DIR`). Writes bench/out/synth-<stamp>.json and .md with balanced accuracy and
the rare class's recall per condition (mean ± sd over seeds) and every run.

Usage:  python bench/synth.py [--data ../shared/data/face-mask-detection] [--model seed004_cnn] [--epochs N]
                              [--seeds 0,1,2] [--per-class 250] [--synth-epochs 200]
Smoke test (about a minute):
        python bench/synth.py --data data/sample --epochs 1 --synth-epochs 1 --per-class 8 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from foundation import machine  # noqa: E402

CONDITIONS = ("baseline", "vae", "dae")


def maskclf(*args: str) -> str:
    """Run ``python -m maskclf.cli ARGS`` and return its stdout (exit on failure, with its stderr)."""
    cmd = [sys.executable, "-m", "maskclf.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def train(data: str, model: str, epochs: int | None, seed: int, out: Path, extra: Path | None = None) -> Path:
    args = ["train", "--data", data, "--model", model, "--seed", str(seed), "--out", str(out), "--quiet"]
    if epochs:
        args += ["--epochs", str(epochs)]
    if extra:
        args += ["--extra-train", str(extra)]
    stdout = maskclf(*args)
    return Path(stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())


def row(condition: str, seed: int, run_dir: Path, rare: str, wall: float, synth: dict | None = None) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"condition": condition, "seed": seed, "run_dir": str(run_dir), "rare_class": rare,
            "balanced_accuracy": m["balanced_accuracy"], "rare_recall": m["per_class"][rare]["recall"],
            "macro_f1": m["macro_f1"], "recall": {c: v["recall"] for c, v in m["per_class"].items()},
            "train_images": m["training"]["train_images"], "epochs": m["training"]["epochs"],
            "wall_seconds": round(wall, 1), "synth": synth}


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def to_markdown(report: dict) -> str:
    rows = report["rows"]
    rare = rows[0]["rare_class"] if rows else "?"
    a = report["args"]
    lines = [f"{report['date']} — {report['machine']}", "",
             f"data `{a['data']}`, model `{a['model']}`, epochs {a['epochs'] or 'default'}, seeds {a['seeds']}, "
             f"{a['per_class']} generated `{rare}` images per run (autoencoder epochs {a['synth_epochs']})", "",
             f"| condition | balanced accuracy | {rare} recall | training images | runs |", "|---|---|---|---|---|"]
    for c in CONDITIONS:
        rs = [r for r in rows if r["condition"] == c]
        if rs:
            lines.append(f"| {c} | {_mean_sd([r['balanced_accuracy'] for r in rs])} | "
                         f"{_mean_sd([r['rare_recall'] for r in rs])} | {rs[0]['train_images']} | {len(rs)} |")
    lines += ["", "| condition | seed | balanced acc. | per-class recall | epochs | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        rec = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items())
        lines.append(f"| {r['condition']} | {r['seed']} | {r['balanced_accuracy']:.3f} | {rec} | {r['epochs']} | "
                     f"{r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "face-mask-detection"))
    ap.add_argument("--model", default="seed004_cnn")
    ap.add_argument("--epochs", type=int, help="classifier epochs (default: the package default)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--per-class", type=int, default=250, help="generated images of the rare class per run")
    ap.add_argument("--synth-epochs", type=int, default=200, help="autoencoder epochs")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    data = str(Path(args.data).resolve())
    if not Path(data).is_dir():
        raise SystemExit(f"{data} not found: pass --data PATH (the 3-class face-mask-detection VOC folder)")
    out = Path(args.out).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = out / "runs" / f"synth-{stamp}"
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        print(f"== seed {seed}: baseline", flush=True)
        t0 = time.time()
        base = train(data, args.model, args.epochs, seed, work / "baseline")
        base_wall = time.time() - t0
        first = len(rows)
        for method in ("vae", "dae"):
            gen = work / f"{method}-seed{seed}"
            print(f"== seed {seed}: {method} images, then training with them", flush=True)
            t1 = time.time()
            # The baseline run's training rows: the same split, never its validation or test faces.
            maskclf("synth", str(base), "--method", method, "--per-class", str(args.per_class),
                    "--epochs", str(args.synth_epochs), "--seed", str(seed), "--out", str(gen), "--quiet")
            meta = json.loads((gen / "synth.json").read_text())
            rare = meta["classes"][0]
            run = train(data, args.model, args.epochs, seed, work / method, extra=gen)
            rows.append(row(method, seed, run, rare, time.time() - t1,
                            {k: meta[k] for k in ("classes", "counts", "training_images", "seconds",
                                                  "final_reconstruction", "final_val_reconstruction")}))
            print(json.dumps(rows[-1]), flush=True)
        rows.insert(first, row("baseline", seed, base, rare, base_wall))  # the rare class as synth chose it
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
              "args": {"data": data, "model": args.model, "epochs": args.epochs, "seeds": args.seeds,
                       "per_class": args.per_class, "synth_epochs": args.synth_epochs},
              "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"synth-{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"synth-{stamp}.md").write_text(to_markdown(report))
    print(to_markdown(report))
    print(f"written: {out / f'synth-{stamp}.json'} and .md")


if __name__ == "__main__":
    main()
