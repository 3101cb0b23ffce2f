"""Export benchmark (issue: TFLite export in four precisions).

For each trained run directory given: export float32, float16, dynamic-range and int8 with
``maskclf.export.export_run`` (ai-edge-litert parity on the run's whole test split, median batch-1
latency at 1 and 2 threads) and collect the reports into bench/out/export-<stamp>.md / .json.

Usage:  python bench/export.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from foundation import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    from maskclf.export import export_run, format_report_md

    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts, reports = [f"{time.strftime('%Y-%m-%d %H:%M')} — {machine()}\n"], []
    for run in args.runs:
        t0 = time.time()
        out = export_run(run, force=True, progress=True)
        report = json.loads((out / "report.json").read_text())
        report["export_seconds"] = round(time.time() - t0, 1)
        reports.append(report)
        parts.append(format_report_md(report) + f"\nExport + checks took {report['export_seconds']} s.\n")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"export-{stamp}.json").write_text(json.dumps(reports, indent=2))
    (Path(args.out) / f"export-{stamp}.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
