"""Command line: ``maskclf <command> ...``. Parses arguments and calls the library; nothing more.

Errors in the user's input print one line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import re
import sys

from maskclf import __version__
from maskclf.commands import (  # the dispatch targets
    cmd_calibrate,
    cmd_compare,
    cmd_config,
    cmd_cv,
    cmd_data_inspect,
    cmd_data_relabel,
    cmd_detect,
    cmd_ensemble,
    cmd_evaluate,
    cmd_evaluate_detection,
    cmd_explain,
    cmd_export,
    cmd_models,
    cmd_paint,
    cmd_predict,
    cmd_report,
    cmd_suspects,
    cmd_synth,
    cmd_train,
    cmd_tune,
)
from maskclf.files import MaskclfError

EPILOG_TRAIN = """examples:
  maskclf train --data data/sample                         # the cross-source ensemble (two networks)
  maskclf train --data data/sample --model maskclf_cnn     # one network, 4x cheaper per face on the device
  maskclf train --data ../faces --model vgg19 --image-size 64 --epochs 20 train.optimizer=rmsprop
  maskclf train --data VOC_ROOT data.class_map='{mask_weared_incorrect: with_mask}'   # two classes
  maskclf train --config runs/tune-x/best.yaml --data VOC_ROOT
key=value sets any config key (section.key, or key alone when unique); model options as model.<option>,
e.g. model.filters=[32,64] model.dropout=0.4. Run `maskclf config` to see every key and its default."""




def _add_detector_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--model", required=True, metavar="EXPORT_DIR_OR_TFLITE",
                   help="export folder (RUN_DIR/export) or a .tflite file made by `maskclf export`")
    a.add_argument("--precision", choices=["float32", "float16", "dynamic", "int8"],
                   help="which model of an export folder (default: the smallest present, int8 first)")
    a.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    a.add_argument("--detector", choices=["yunet", "blazeface", "haar"], default="yunet",
                   help="face detector: yunet (default, finds masked faces), blazeface (MediaPipe's, what "
                        "phone apps run; faces within ~2 m) or haar (the old cascade)")
    a.add_argument("--score-threshold", type=float, metavar="S",
                   help="minimum face detector score (default yunet 0.6, blazeface 0.5, haar 0)")
    a.add_argument("--nms-threshold", type=float, metavar="T", help="IoU above which boxes merge (default 0.3)")
    a.add_argument("--min-face", type=int, metavar="PX", help="ignore faces smaller than this (default 0)")
    a.add_argument("--upscale", type=float, metavar="K",
                   help="also detect on the image enlarged K times: finds ~15-25 px faces (e.g. 2; default 1)")
    a.add_argument("--tile", type=int, metavar="PX",
                   help="detect in overlapping PX x PX tiles of the enlarged image (with --upscale; "
                        "bounds the detector's input size) or else of the image (default 0: whole image)")
    a.add_argument("--no-reframe", action="store_true",
                   help="keep the detector's boxes as they are (default: each box is moved to where VOC's "
                        "annotators draw faces, and cropped, reported and drawn there, as the training crops were cut)")


EPILOG_DETECT = """examples:
  maskclf detect photo.jpg --model runs/RUN/export                   # -> detections/photo.jpg
  maskclf detect photos/ --model runs/RUN/export --out annotated --json faces.json --upscale 2
  maskclf detect clip.mp4 --model runs/RUN/export/model_int8.tflite --out clip_annotated.mp4
  maskclf detect --camera 0 --model runs/RUN/export --out cam.mp4 --max-frames 300"""


def _add_training_options(p: argparse.ArgumentParser, overrides_help: str) -> None:
    """The options of one training configuration, shared by ``train`` and ``cv`` (read by _build_config)."""
    p.add_argument("--data", action="append", metavar="DIR",
                   help="dataset root: class folders, split folders or Pascal VOC (default data/sample); repeat it to "
                        "train on several sources at once (metrics also per source; per-source class_map: "
                        "data.sources in a config)")
    p.add_argument("--model", help="one network of this family (see `maskclf models`, e.g. maskclf_cnn, 4x cheaper "
                                   "on the device); default: the cross-source ensemble maskclf_cnn + "
                                   "efficientnet_lite0")
    p.add_argument("--ensemble-models", metavar="A,B",
                   help="one member per model family (each with its own size and recipe, as --model would give it; "
                        "one split), averaged into one more run directory (default maskclf_cnn,efficientnet_lite0: "
                        "the model for faces from other cameras, docs/BENCHMARKS.md section 7)")
    p.add_argument("--image-size", type=int, help="square input size in pixels (default: the model's)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 40)")
    p.add_argument("--batch-size", type=int, help="batch size")
    p.add_argument("--seed", type=int, help="random seed of training")
    p.add_argument("--config", help="YAML config to start from (a run's config.yaml or a tuner's best.yaml)")
    p.add_argument("--extra-train", metavar="DIR", help="class folders (e.g. from `maskclf synth`) added to the "
                                                        "training split only (data.extra_train)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)


def build_parser() -> argparse.ArgumentParser:
    """The ``maskclf`` argument parser: every subcommand, its options and the function it dispatches to."""
    p = argparse.ArgumentParser(
        prog="maskclf",
        description="Train, evaluate and use face-mask classifiers (with mask / without mask / mask worn incorrectly).",
        epilog="Start with: maskclf train --data data/sample   (see README.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"maskclf {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; writes a run directory",
                       description="Train a model on a dataset folder and evaluate it on its test split.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_training_options(t, "config overrides, e.g. train.learning_rate=3e-4")
    t.add_argument("--out", help="folder for run directories (default runs/)")
    t.add_argument("--ensemble", type=int, metavar="N",
                   help="train N members (train.seed, seed+1, ...; one split) and average them into one more run "
                        "directory (`maskclf ensemble`); N times the training time")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run on its test split or another dataset")
    e.add_argument("run_dir", help="run directory made by `maskclf train`")
    e.add_argument("--data", help="evaluate on every image of this dataset instead (classes matched by name)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="classify face images with a run's model")
    pr.add_argument("run_dir", help="run directory made by `maskclf train`")
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    pr.add_argument("--json", action="store_true", help="print JSON (label, score, all probabilities)")
    pr.set_defaults(func=cmd_predict)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    di = dsub.add_parser("inspect", help="check a dataset: layout, counts, sizes, duplicates, problems")
    di.add_argument("path", nargs="+", help="dataset root(s); several are inspected as one, with a per-source table")
    di.add_argument("--no-split", action="store_true", help="do not compute the train/validation/test split")
    di.add_argument("--examples", type=int, default=3, help="examples listed per problem kind")
    di.add_argument("overrides", nargs="*", metavar="key=value", help="data options, e.g. data.crop_margin=0.3")
    di.set_defaults(func=cmd_data_inspect)
    dr = dsub.add_parser("relabel", help="a corrected copy of a dataset from reviewed decisions (e.g. suspects.csv "
                                         "with a correct_label column)",
                         description="Write a copy of DATA (links, not copies, of the images) with the labels the "
                                     "decisions CSV corrects: columns photo, object (VOC: the object's index in the "
                                     "photo's XML), label (optional; must still match) and correct_label (empty or "
                                     "equal to label = keep). The original is not touched; OUT/relabel.json lists "
                                     "every change.")
    dr.add_argument("path", metavar="DATA", help="dataset root (VOC, class folders or split folders)")
    dr.add_argument("--decisions", required=True, metavar="CSV", help="reviewed decisions (see above)")
    dr.add_argument("--out", required=True, metavar="DIR", help="new folder for the corrected copy")
    dr.set_defaults(func=cmd_data_relabel)
    d.set_defaults(func=lambda a: (d.print_help(), 2)[1])

    m = sub.add_parser("models", help="list the model registry")
    m.add_argument("-v", "--verbose", action="store_true", help="show each model's options")
    m.set_defaults(func=cmd_models)

    c = sub.add_parser("config", help="print the default (or a given) configuration as YAML")
    c.add_argument("config", nargs="?")
    c.set_defaults(func=cmd_config)

    x = sub.add_parser("export", help="export a run's model to TFLite (LiteRT), checked against Keras",
                       description="Write RUN_DIR/export/: model_<precision>.tflite, labels.txt, metadata.json, "
                                   "report.json/md (parity with Keras on the test split, sizes, latency).")
    x.add_argument("run_dir", help="run directory made by `maskclf train`")
    x.add_argument("--quantize", default="float32,float16,dynamic,int8", metavar="LIST",
                   help="comma-separated precisions: float32,float16,dynamic,int8 (default: all four)")
    x.add_argument("--representative", type=int, default=200, metavar="N",
                   help="training images that calibrate int8 (default 200)")
    x.add_argument("--min-agreement", action="append", metavar="P=V",
                   help="minimum agreement with Keras for a precision, e.g. int8=0.98 or int8=0.98,dynamic=0.995; "
                        "repeatable (defaults float32 0.999, float16 0.995, dynamic and int8 0.99)")
    x.add_argument("--max-test", type=int, metavar="N", help="check on at most N test images (default all)")
    x.add_argument("--force", action="store_true", help="write the export even if a parity check fails")
    x.add_argument("--author", help="author in each file's standard TFLite metadata (default: maskclf)")
    x.add_argument("--license", metavar="TEXT", help="licence in each file's standard TFLite metadata "
                                                      "(default: a note that the training data's licences apply)")
    x.add_argument("--quiet", action="store_true", help="no progress output")
    x.set_defaults(func=cmd_export)

    dt = sub.add_parser("detect", help="find faces and classify their masks in photos, videos or a camera",
                        description="Detect faces (YuNet or Haar), classify each with an exported .tflite model and "
                                    "write annotated images (photos) or an annotated video with FPS (video, camera).",
                        epilog=EPILOG_DETECT, formatter_class=argparse.RawDescriptionHelpFormatter)
    dt.add_argument("input", nargs="?", metavar="INPUT", help="an image, a folder of images, or a video file")
    dt.add_argument("--camera", type=int, metavar="N", help="read camera N instead of INPUT (stop with Ctrl-C)")
    dt.add_argument("--out", help="output folder (default detections/), or a file name for one image or a video")
    dt.add_argument("--json", metavar="OUT.json", help="write every face of every image/frame (box, label, score) "
                                                      "and timings as JSON")
    dt.add_argument("--max-frames", type=int, metavar="N", help="stop a video or camera after N frames")
    dt.add_argument("--no-save", action="store_true", help="write no annotated images/videos (JSON only)")
    dt.add_argument("--events", metavar="OUT.jsonl", help="video/camera: append one JSON line per frame (time, faces "
                                                       "with box/label/score, timings), flushed at once")
    dt.add_argument("--no-track", action="store_true", help="video/camera: classify every frame on its own "
                                                          "(default: an IoU tracker keeps each face's tag and id "
                                                          "across frames)")
    dt.add_argument("--no-overlap", action="store_true", help="video/camera: one frame at a time on one thread "
                                                            "(default on 2+ cores: the next frame is detected on a "
                                                            "second thread while this one is classified)")
    dt.add_argument("--classify-every", type=int, metavar="N",
                    help="video/camera: re-classify a tracked face every N frames, keeping its tag in between "
                         "(new faces at once), so crowds keep the detector's frame rate (default 3; 1: every "
                         "face on every frame)")
    dt.add_argument("--quiet", action="store_true", help="no per-input lines")
    _add_detector_arguments(dt)
    dt.set_defaults(func=cmd_detect)

    ed = sub.add_parser("evaluate-detection", help="AP@0.5 / mAP of detector + classifier on VOC photos",
                        description="Detect and classify the faces of the VOC photos the classifier was not trained "
                                    "on (the run's split.csv) and match them to the annotated boxes: per-class "
                                    "AP@0.5, mAP, detector recall per class and face size, and a confusion table of "
                                    "matched faces, written as JSON and Markdown.")
    ed.add_argument("--data", required=True, metavar="VOC_ROOT", help="Pascal VOC folder (images/ + annotations/)")
    ed.add_argument("--split", choices=["test", "validation", "unseen"], default="test",
                    help="photos of the run's test (default) or validation split, or `unseen`: every photo of "
                         "VOC_ROOT the run neither trained nor validated on (another dataset)")
    ed.add_argument("--run", metavar="RUN_DIR", help="the run whose split.csv to use (default: from the model's "
                                                     "metadata, or the export folder's parent)")
    ed.add_argument("--out", metavar="DIR", help="folder for detection_eval_<split>.json/.md (default: the run)")
    ed.add_argument("--iou", type=float, default=0.5, help="IoU of a match (default 0.5)")
    ed.add_argument("--min-gt-size", type=float, default=0, metavar="PX",
                    help="annotated faces smaller than this are ignored (default 0: all count)")
    ed.add_argument("--max-photos", type=int, metavar="N", help="evaluate only the first N photos")
    ed.add_argument("--quiet", action="store_true")
    _add_detector_arguments(ed)
    ed.set_defaults(func=cmd_evaluate_detection)
    tu = sub.add_parser("tune", help="KerasTuner search over a tuning/*.yaml space; writes best.yaml",
                        description="Search hyperparameters (tuning/README.md). Running the same command again "
                                    "resumes the search; `maskclf train --config DIR/best.yaml` trains the winner.")
    tu.add_argument("space", help="search space YAML, e.g. tuning/small_cnn.yaml")
    tu.add_argument("--data", action="append", metavar="DIR", help="dataset root (default data/sample); repeatable")
    tu.add_argument("--tuner", choices=["random", "hyperband", "bayesian", "grid"], help="default: the space's")
    tu.add_argument("--max-trials", type=int, metavar="N", help="trial budget (default: the space's)")
    tu.add_argument("--max-epochs", type=int, metavar="N", help="epochs per trial (default: the space's)")
    tu.add_argument("--objective", choices=["val_balanced_accuracy", "val_macro_f1", "val_accuracy", "val_loss"],
                    help="validation metric to optimise (default val_balanced_accuracy)")
    tu.add_argument("--out", metavar="DIR", help="search folder (default runs/tune-<space name>)")
    tu.add_argument("--distributed", choices=["chief", "worker"], help="KerasTuner's distributed mode")
    tu.add_argument("--oracle", metavar="HOST:PORT", help="the chief's address (or KERASTUNER_ORACLE_IP/PORT)")
    tu.add_argument("--tuner-id", metavar="NAME", help="a worker's unique name (or KERASTUNER_TUNER_ID)")
    tu.add_argument("--quiet", action="store_true", help="no progress output")
    tu.add_argument("overrides", nargs="*", metavar="key=value", help="fixed settings for every trial")
    tu.set_defaults(func=cmd_tune)

    co = sub.add_parser("compare", help="train several models on one split; table of per-class accuracy",
                        description="Train each model on the same train/validation/test split and write "
                                    "compare.csv, compare.md and compare.png (seed report 004's table).")
    co.add_argument("--data", action="append", metavar="DIR", help="dataset root (default data/sample); repeatable")
    co.add_argument("--models", required=True, help="comma-separated names, e.g. small_cnn,vgg19,efficientnet_b0")
    co.add_argument("--epochs", type=int, help="maximum epochs per model")
    co.add_argument("--image-size", type=int, help="one input size for all (default: each model's own)")
    co.add_argument("--weights", help="imagenet: pretrained backbones (models from scratch ignore it)")
    co.add_argument("--out", metavar="DIR", help="output folder (default runs/compare)")
    co.add_argument("--quiet", action="store_true", help="no progress output")
    co.add_argument("overrides", nargs="*", metavar="key=value", help="settings for every model")
    co.set_defaults(func=cmd_compare)

    cb = sub.add_parser("calibrate", help="fit temperature (and class bias) on a run's validation split",
                        description="Fit a temperature (and, for 3+ classes, per-class logit offsets) on the run's "
                                    "validation split, fold them into best.keras (the original is kept as "
                                    "uncalibrated.keras), write calibration.json and re-evaluate on the test split. "
                                    "Export afterwards to ship the calibrated model.")
    cb.add_argument("run_dir", help="run directory made by `maskclf train`")
    cb.add_argument("--method", default="temperature+bias", choices=["none", "temperature", "temperature+bias"],
                    help="what to fit (default temperature+bias; none restores the uncalibrated model)")
    cb.add_argument("--quiet", action="store_true")
    cb.set_defaults(func=cmd_calibrate)

    en = sub.add_parser("ensemble", help="average several runs of one split into one model (one run directory)",
                        description="Make one Keras model whose output is the mean of the members' probabilities "
                                    "(runs of the same split and classes, e.g. one configuration trained with "
                                    "train.seed=0 and 1), write it as a run directory and evaluate it on the "
                                    "members' test split; export, detect and the edge runtime take it like any "
                                    "run (one .tflite; each face costs about one member's time per member).")
    en.add_argument("runs", nargs="+", metavar="RUN_DIR",
                    help="member run directories (two or more), or `maskclf cv` folders of the same folds: "
                         "then fold f of each is ensembled and summarised like `maskclf cv`")
    en.add_argument("--out", dest="ens_out", required=True, metavar="DIR", help="the new run directory")
    en.add_argument("--quiet", action="store_true")
    en.set_defaults(func=cmd_ensemble)

    su = sub.add_parser("suspects", help="faces whose label the trained models confidently disagree with",
                        description="Predict every face of a `maskclf cv` folder with the fold model that did not "
                                    "train on it (or one run's test split), and list the faces whose label those "
                                    "predictions confidently contradict (confident learning): suspects.csv (photo, "
                                    "object index in its XML, label, suggested class), suspects.png (each in its "
                                    "photo's context) and suspects.md. Labels are not changed: look, then edit.")
    su.add_argument("path", metavar="CV_DIR_OR_RUN", help="a `maskclf cv` folder (every face) or a run directory")
    su.add_argument("--out", dest="sus_out", metavar="DIR", help="output folder (default PATH/suspects)")
    su.add_argument("--top", type=int, default=48, help="suspects shown in suspects.png and suspects.md (default 48)")
    su.add_argument("--quiet", action="store_true")
    su.set_defaults(func=cmd_suspects)

    cv = sub.add_parser("cv", help="photo-grouped K-fold cross-validation of one configuration",
                        description="Train the configuration on K photo-grouped, class-stratified folds (each image "
                                    "tested once) and write cv.json, cv.md and cv.png: mean ± sd of balanced "
                                    "accuracy, per-class recall, macro F1 and calibration error. Running the same "
                                    "command again skips finished folds.")
    cv.add_argument("--folds", type=int, default=5, help="number of folds K (default 5)")
    cv.add_argument("--fold", type=int, action="append", metavar="F",
                    help="train only fold F (1..K; repeatable), e.g. to share folds between machines")
    cv.add_argument("--by-source", action="store_true",
                    help="leave-one-source-out instead of K folds: with --data A --data B ..., train on all sources "
                         "but one and test on every image of that one (cv.md: one row per held-out source)")
    cv.add_argument("--source", action="append", metavar="NAME",
                    help="with --by-source: hold out only this source (repeatable)")
    _add_training_options(cv, "config overrides for every fold")
    cv.add_argument("--out", dest="cv_out", metavar="DIR", help="output folder (default runs/cv-<model>-<size>)")
    cv.add_argument("--ensemble", type=int, metavar="N",
                    help="cross-validate N seeds (train.seed, seed+1, ...) into DIR-seed<S> and their fold-by-fold "
                         "ensemble into DIR-ensemble<N> (`maskclf ensemble`)")
    cv.set_defaults(func=cmd_cv)

    xp = sub.add_parser("explain", help="Grad-CAM / Grad-CAM++ panels: where the model looks",
                        description="Write one PNG per image: the input, the heatmap and the overlay of each method, "
                                    "titled with the prediction.")
    xp.add_argument("run_dir", help="run directory made by `maskclf train`")
    xp.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    xp.add_argument("--method", choices=["gradcam", "gradcam++", "both"], default="both", help="default both")
    xp.add_argument("--class", dest="class_name", metavar="NAME", help="class to explain (default: the predicted one)")
    xp.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/explain)")
    xp.set_defaults(func=cmd_explain)

    rp = sub.add_parser("report", help="write RUN_DIR/report.html and report.md",
                        description="A self-contained HTML report (images inlined) and a Markdown one: config, data "
                                    "summary, learning curves, metrics, confusion matrix, ROC and the worst test "
                                    "mistakes with Grad-CAM overlays.")
    rp.add_argument("run_dir", help="run directory made by `maskclf train`")
    rp.add_argument("--max-errors", type=int, default=8, metavar="N", help="mistakes shown with Grad-CAM (default 8)")
    rp.add_argument("--quiet", action="store_true", help="no progress output")
    rp.set_defaults(func=cmd_report)

    sy = sub.add_parser("synth", help="autoencoder-generated crops of a rare class for --extra-train",
                        description="Train a VAE or denoising autoencoder per class on the training split's crops "
                                    "(seed report 001) and write N generated images per class to DIR/<class>/, with "
                                    "contact_sheet.png, loss.png, loss.csv and synth.json. Then: "
                                    "maskclf train --data DATA --extra-train DIR")
    sy.add_argument("source", metavar="RUN_OR_DATA", help="a run directory (its split.csv training rows) or a "
                                                           "dataset root (split as `train` splits it)")
    sy.add_argument("--method", choices=["vae", "dae"], default="vae", help="default vae")
    sy.add_argument("--per-class", type=int, required=True, metavar="N", help="images generated per class")
    sy.add_argument("--classes", metavar="LIST", help="comma-separated class names (default: the rarest class)")
    sy.add_argument("--epochs", type=int, default=200, help="autoencoder epochs (default 200: a rare class has only "
                                                            "a few batches per epoch)")
    sy.add_argument("--image-size", type=int, default=64, help="generated image side, a multiple of 8 (default 64)")
    sy.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sy.add_argument("--out", required=True, metavar="DIR", help="output folder (a previous synth output is replaced)")
    sy.add_argument("--quiet", action="store_true", help="no progress output")
    sy.add_argument("overrides", nargs="*", metavar="key=value", help="data settings for a dataset root, "
                                                                      "e.g. data.class_map=...")
    sy.set_defaults(func=cmd_synth)

    pa = sub.add_parser("paint", help="paint worn / below-the-nose / chin masks on photos of bare faces",
                        description="Find each photo's face and its landmarks (YuNet), paint a face mask in each "
                                    "style and write DIR/<class>/<photo>-<style>.png, contact_sheet.png and "
                                    "paint.json. Rare-class faces for --extra-train or for pretraining "
                                    "(docs/BENCHMARKS.md section 6). Needs OpenCV (maskclf[edge]).")
    pa.add_argument("faces", nargs="+", metavar="FACES", help="image files or folders of bare (unmasked) faces")
    pa.add_argument("--out", required=True, metavar="DIR", help="output folder (class folders inside)")
    pa.add_argument("--styles", default="nose_out=mask_weared_incorrect,chin=mask_weared_incorrect",
                    help="STYLE=CLASS pairs, STYLE one of correct, nose_out, chin (default: "
                         "nose_out=mask_weared_incorrect,chin=mask_weared_incorrect)")
    pa.add_argument("--seed", type=int, default=0, help="random seed of colours and shapes (default 0)")
    pa.set_defaults(func=cmd_paint)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maskclf`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MaskclfError as e:
        if args.debug:
            raise
        print(f"maskclf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskclf: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only or mistyped output folder: the user's to fix, not a bug
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"maskclf: error: {where}{' '.join(str(e.strerror or e).split())}; check the path, free space "
              "and permissions",
              file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  a bug: one line unless --debug
        if args.debug:
            raise
        # A MaskclfError raised inside a tf.data function (an image replaced after it was checked)
        # reaches us wrapped in TensorFlow's own error: still the user's input, still one line.
        wrapped = re.search(r"\bMaskclfError: (.+)", str(e))
        if wrapped:
            print(f"maskclf: error: {wrapped.group(1).strip()}", file=sys.stderr)
            return 2
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"maskclf: internal error: {type(e).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
