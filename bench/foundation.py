"""Foundation benchmark (issue: from real face-mask photos to a trained, evaluated model).

Trains on ../shared/data on this CPU and writes bench/out/foundation-<stamp>.json and .md:
  (a) 3 classes, face crops of face-mask-detection, photo-grouped split: the package default
      (`maskclf train --data ...` with no options), seed003_cnn and seed004_cnn;
  (b) 2 classes on chandrikadeb7-face-mask, deduplicated grouped split: the package default;
  (c) parameters, training images per second and wall time of each.

Usage:  python bench/foundation.py [--only voc_default,...] [--seeds 0] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def write_results(out: Path, name: str, stamp: str, md: list[str], data: dict) -> Path:
    """``out/<name>-<stamp>.md`` and ``.json`` (the folder made if needed); prints the Markdown and where it went."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{stamp}.md").write_text("\n".join(md) + "\n")
    (out / f"{name}-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    print("\n".join(md))
    print(f"\nwrote {out / f'{name}-{stamp}.md'} and .json", file=sys.stderr)
    return out / f"{name}-{stamp}.md"


def run_main(main, script: str) -> None:
    """Run a bench script's ``main``; a :class:`maskclf.files.MaskclfError` (a missing export, a precision not
    exported, unreadable photos or video) ends it with one line naming the script, as the CLI does."""
    from maskclf.files import MaskclfError

    try:
        main()
    except MaskclfError as e:
        sys.exit(f"{script}: {e}")


def experiments(shared: Path) -> dict[str, list[str]]:
    voc = str(shared / "data" / "face-mask-detection")
    chd = str(shared / "data" / "chandrikadeb7-face-mask")
    return {
        # "default": the one-network default these figures were measured with (without --model, train gives the
        # two-family ensemble since session 18; bench/quality.py measures that one)
        "voc_default": ["--data", voc, "--model", "maskclf_cnn"],
        "voc_seed003": ["--data", voc, "--model", "seed003_cnn"],
        "voc_seed004": ["--data", voc, "--model", "seed004_cnn"],
        "chandrikadeb7_default": ["--data", chd, "--model", "maskclf_cnn"],
    }


def run_one(name: str, args: list[str], seed: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "maskclf.cli", "train", *args, "--seed", str(seed), "--out", str(out / name),
           "--quiet"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    run_dir = Path(proc.stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
    m = json.loads((run_dir / "metrics.json").read_text())
    row = {
        "experiment": name, "seed": seed, "command": "maskclf train " + " ".join(args), "run_dir": str(run_dir),
        "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
        "recall": {c: v["recall"] for c, v in m["per_class"].items()},
        "support": {c: v["support"] for c, v in m["per_class"].items()},
        "parameters": m["training"]["parameters"], "epochs": m["training"]["epochs"],
        "train_seconds": m["training"]["seconds"], "train_images_per_second": m["training"]["train_images_per_second"],
        "wall_seconds": round(wall, 1),
    }
    for k in ("f1", "specificity", "npv", "roc_auc", "positive_class"):
        if k in m:
            row[k] = m[k]
    return row


def to_markdown(rows: list[dict]) -> str:
    lines = ["| experiment | seed | balanced acc. | per-class recall | F1 (2-class) | params | epochs | train img/s | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rec = ", ".join(f"{c} {v:.3f}" for c, v in r["recall"].items())
        f1 = f"{r['f1']:.3f}" if "f1" in r else ""
        lines.append(f"| {r['experiment']} | {r['seed']} | {r['balanced_accuracy']:.3f} | {rec} | {f1} | "
                     f"{r['parameters']:,} | {r['epochs']} | {r['train_images_per_second']:.0f} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--only", help="comma-separated experiment names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    shared = Path(args.shared)
    if not (shared / "data").is_dir():
        raise SystemExit(f"{shared}/data not found: the benchmark needs the shared datasets (--shared PATH)")
    exps = experiments(shared)
    names = args.only.split(",") if args.only else list(exps)
    out = Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name in names:
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(f"== {name} seed {seed}", flush=True)
            rows.append(run_one(name, exps[name], seed, out / "runs"))
            print(json.dumps(rows[-1]), flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"foundation-{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"foundation-{stamp}.md").write_text(f"{report['date']} — {report['machine']}\n\n" + to_markdown(rows))
    print(to_markdown(rows))


if __name__ == "__main__":
    main()


def run_face_sets(run, cfg, names: list[str], data: list[str], splits=("validation", "test"), hint: str = "",
                  progress: bool = False) -> dict:
    """{set: (paths, labels)}: the run's ``splits`` (from split.csv) and every image of each other source in
    ``data`` (classes matched to ``names`` by name), as bench scripts score them."""
    from maskclf.data import sources

    rows = sources.run_split_rows(run, cfg.data, hint or "train the run again to rebuild the crops", progress)
    sets = {s: ([r["path"] for r in rows if r["split"] == s], [names.index(r["label"]) for r in rows if r["split"] == s])
            for s in splits}
    for d in data:
        sets[Path(d).name] = sources.images_of(d, cfg.data, names, progress)
    return sets
