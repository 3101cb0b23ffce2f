"""Cold start of `maskclf detect` on one photo: whole-process wall time, from process start to the JSON
written (issue 27 target 2; results in docs/BENCHMARKS.md).

Each run is a new process (`maskclf detect PHOTO --model EXPORT --precision P --json OUT --out DIR`), so
it pays every import, the model and detector loads and the photo's decode, as a user's first call does.
The first run is reported apart (a cold file cache); the rest give median, min and max. As a baseline
in the same run it also times a bare `python -c pass` process, so the figure can be read against what
the interpreter itself costs on the machine. Writes bench/out/coldstart-<stamp>.md and .json.

Usage:  python bench/coldstart.py RUN/export [--runs 10] [--precision int8] [--photo PHOTO]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from foundation import machine, write_results  # noqa: E402

DEFAULT_PHOTO = HERE.parent.parent / "shared" / "data" / "face-mask-detection" / "images" / "maksssksksss0.jpg"
TARGET_S = 1.0


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"bench/coldstart.py: {' '.join(cmd[:3])} ... failed: {last}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="an export folder (RUN_DIR/export)")
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    if not Path(args.export).is_dir():
        sys.exit(f"bench/coldstart.py: {args.export}: no such export folder; run `maskclf export RUN_DIR` first")
    if not Path(args.photo).is_file():
        sys.exit(f"bench/coldstart.py: {args.photo}: no such photo; pass --photo")
    exe = shutil.which("maskclf")
    if exe is None:
        sys.exit("bench/coldstart.py: the maskclf command is not on PATH; pip install -e '.[train]' first")
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    try:
        cmd = [exe, "detect", args.photo, "--model", args.export, "--precision", args.precision,
               "--json", str(work / "faces.json"), "--out", str(work / "annotated"), "--quiet"]
        runs = [_timed(cmd) for _ in range(max(2, args.runs))]
        if not (work / "faces.json").is_file():
            sys.exit("bench/coldstart.py: maskclf detect wrote no JSON")
        faces = len(json.loads((work / "faces.json").read_text())["inputs"][0]["faces"])
        bare = [_timed([sys.executable, "-c", "pass"]) for _ in range(5)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm = runs[1:]
    row = {"first_s": round(runs[0], 3), "median_s": round(statistics.median(warm), 3),
           "min_s": round(min(warm), 3), "max_s": round(max(warm), 3), "runs": [round(v, 3) for v in runs],
           "python_pass_median_s": round(statistics.median(bare), 3), "faces": faces}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()], "command": " ".join(
                ["maskclf detect", Path(args.photo).name, "--model", args.export, "--precision", args.precision,
                 "--json OUT --out DIR --quiet"])}
    md = [f"### Cold start of `maskclf detect` on one photo ({meta['date']})", "",
          f"{meta['machine']}; load average {meta['load_average']}; `python bench/coldstart.py {args.export} "
          f"--runs {args.runs} --precision {args.precision}`; {faces} faces in `{Path(args.photo).name}`.", "",
          "| first run s | median s | min s | max s | bare `python -c pass` s | target |",
          "|---:|---:|---:|---:|---:|---|",
          f"| {row['first_s']:.2f} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['max_s']:.2f} | "
          f"{row['python_pass_median_s']:.2f} | ≤ {TARGET_S:g} s: {'met' if row['median_s'] <= TARGET_S else 'missed'} |"]
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    write_results(Path(args.out), "coldstart", stamp, md, meta | row)


if __name__ == "__main__":
    main()
