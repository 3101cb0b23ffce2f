"""Export benchmark (issue: TFLite export in four precisions).

For each trained run directory given: export float32, float16, dynamic-range and int8 with
``maskclf.export.convert.export_run`` (ai-edge-litert parity on the run's whole test split, median batch-1
latency at 1 and 2 threads) and collect the reports into bench/out/export-<stamp>-<pid>.md / .json.

Usage:  python bench/export.py RUN_DIR [RUN_DIR ...] [--precisions int8] [--cv CV_DIR ...]

``--cv`` adds every fold run of a `maskclf cv` folder; with several runs a last table sets them side by side
(Keras vs each precision: balanced accuracy, agreement, largest probability difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from foundation import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--cv", action="append", default=[], help="a `maskclf cv` folder: all its fold runs")
    ap.add_argument("--precisions", default="float32,float16,dynamic,int8")
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    for c in args.cv:
        args.runs += [f["run_dir"] for f in json.loads((Path(c) / "cv.json").read_text())["per_fold"]]
    if not args.runs:
        ap.error("give run directories or --cv folders")
    from maskclf.export.convert import export_run, format_report_md

    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"  # two runs started in the same second keep both
    parts, reports = [f"{time.strftime('%Y-%m-%d %H:%M')} — {machine()}\n"], []
    for run in args.runs:
        t0 = time.time()
        out = export_run(run, args.precisions, force=True, progress=True, latency_runs=args.latency_runs)
        report = json.loads((out / "report.json").read_text())
        report["export_seconds"] = round(time.time() - t0, 1)
        reports.append(report)
        parts.append(format_report_md(report) + f"\nExport + checks took {report['export_seconds']} s.\n")
    if len(reports) > 1:
        parts.append("| run | Keras bal. acc. | " + " | ".join(
            f"{p} bal. acc. | {p} agreement | {p} max abs prob diff" for p in reports[0]["precisions"]) + " |")
        parts.append("|---|---:|" + "---:|---:|---:|" * len(reports[0]["precisions"]))
        for r in reports:
            cells = [f"{v['balanced_accuracy']:.4f} | {v['agreement']:.4f} | {v['max_abs_prob_diff']:.3f}"
                     for v in r["precisions"].values()]
            parts.append(f"| `{r['run_dir']}` | {r['keras']['balanced_accuracy']:.4f} | " + " | ".join(cells) + " |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"export-{stamp}.json").write_text(json.dumps(reports, indent=2))
    (Path(args.out) / f"export-{stamp}.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
