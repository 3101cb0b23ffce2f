"""Label audit of the VOC set: how much of the error left is in the labels (issue "Model quality", session 8).

`maskclf suspects CV_DIR` lists the faces whose label the out-of-fold models confidently contradict. A person
(session 8) looked at each suspect of the three-seed ensemble in its photo and wrote one judgement per face
into bench/label_audit.csv: "wrong label" (with the label it should have), "model wrong" (the label is right),
or "cannot tell" (too small, blurred or turned away to say where the mask sits). This script joins those
judgements with each cv folder's out-of-fold predictions and reports the balanced accuracy
  - with the labels as given (what cv.json reports),
  - with the faces judged "wrong label" relabelled,
  - an upper bound: also every "cannot tell" suspect counted as the model's call (if all were label errors).
Only suspects were judged, so label errors the models agree with are not found: the corrected figure is a
lower bound of what clean labels would give, and the upper bound is an upper bound of what the audited
suspects can explain.

Usage:  python bench/audit.py --cv bench/out/quality/ens_paint_lr3_x3 [--cv bench/out/quality/seed004_paint_lr3 ...]
Writes bench/out/audit-<stamp>.md (and each folder's suspects/ via `maskclf suspects`).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from foundation import machine  # noqa: E402

from maskclf.reports.evaluate import compute_metrics  # noqa: E402


def judgements(path: Path) -> dict[tuple[str, int], dict]:
    with open(path, newline="") as f:
        return {(r["photo"], int(r["object"])): r for r in csv.DictReader(f)}


def audited(cv: Path, judged: dict) -> dict:
    sus = cv / "suspects"
    if not (sus / "predictions.csv").is_file():
        subprocess.run([sys.executable, "-m", "maskclf.cli", "suspects", str(cv), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
    from maskclf.research.audit import object_info

    with open(sus / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [k[2:] for k in rows[0] if k.startswith("p_")]
    probs = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    given = np.array([names.index(r["label"]) for r in rows])
    fixed, upper = given.copy(), given.copy()
    counts = {"wrong label": 0, "model wrong": 0, "cannot tell": 0}
    for i, r in enumerate(rows):
        info = object_info(r)
        j = judged.get((Path(info.get("photo", "")).name, info.get("object", -1)))
        if j is None:
            continue
        counts[j["judged"]] += 1
        if j["judged"] == "wrong label":
            fixed[i] = upper[i] = names.index(j["correct_label"])
        elif j["judged"] == "cannot tell":
            upper[i] = int(probs[i].argmax())

    def score(y):
        m = compute_metrics(y, probs, names)
        return m["balanced_accuracy"], [m["per_class"][n]["recall"] for n in names]

    return {"cv": str(cv), "names": names, "faces": len(rows), "counts": counts,
            "given": score(given), "fixed": score(fixed), "upper": score(upper)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv", action="append", required=True, help="a `maskclf cv` (or `maskclf ensemble`) folder")
    ap.add_argument("--judgements", default=str(HERE / "label_audit.csv"))
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    judged = judgements(Path(args.judgements))
    lines = [f"# Label audit ({time.strftime('%Y-%m-%d %H:%M')}; {machine()})", "",
             f"Judgements: {args.judgements} ({len(judged)} faces).", "",
             "| cv folder | faces | judged faces met (wrong label / model wrong / cannot tell) | balanced acc., "
             "labels as given | wrong labels corrected | + every 'cannot tell' suspect called as the model "
             "calls it (upper bound) | rare-class recall (given / corrected / upper) |",
             "|---|---:|---|---:|---:|---:|---|"]
    for cv in args.cv:
        a = audited(Path(cv), judged)
        c = a["counts"]
        rare = a["names"].index("mask_weared_incorrect") if "mask_weared_incorrect" in a["names"] else 0
        lines.append(f"| {cv} | {a['faces']} | {c['wrong label']} / {c['model wrong']} / {c['cannot tell']} | "
                     f"{100 * a['given'][0]:.1f} | {100 * a['fixed'][0]:.1f} | {100 * a['upper'][0]:.1f} | "
                     f"{100 * a['given'][1][rare]:.1f} / {100 * a['fixed'][1][rare]:.1f} / "
                     f"{100 * a['upper'][1][rare]:.1f} |")
        print(lines[-1], flush=True)
    out = Path(args.out) / f"audit-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
