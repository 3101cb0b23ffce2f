"""TFLite (LiteRT) export of a run's model in four precisions, checked against Keras.

``export_run(run_dir)`` writes ``RUN_DIR/export/``: ``model_<precision>.tflite`` per precision,
``labels.txt``, ``metadata.json`` (input contract with each detector's framing, classes, threshold,
quantisation, sha256 of every file) and a parity report (``report.json``, ``report.md``) measured with
ai-edge-litert on the run's test split.

Each .tflite also describes itself, in two layers that share one appended ZIP:

- the standard TFLite metadata (``TFLITE_METADATA``, TFLite Support's schema, written by
  :mod:`maskclf.edge.tflite_metadata`): name, version, author, licence, the input as an RGB image with
  mean 0 / std 1 normalisation (pixels 0-255 go in as they are), the output as probabilities with
  ``labels.txt`` associated. MediaPipe Tasks' ImageClassifier, the TFLite Task Library and Android
  Studio's model binding read it; :func:`maskclf.edge.tflite_metadata.read_standard_metadata` checks it;
- a ZIP archive holding ``labels.txt`` (the associated file the standard metadata names) and maskclf's
  ``metadata.json``, appended to the flatbuffer the way TFLite Support packs "associated files" (the
  interpreter ignores the trailing bytes; Android's MetadataExtractor and Python's zipfile read them).
  :func:`read_labels_from_tflite` and :func:`read_tflite_metadata` read them back.

TensorFlow and ai-edge-litert are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from maskclf.edge import detector, tflite_metadata
from maskclf.edge.runtime import (  # noqa: F401  (the readers and runners of .tflite files, re-exported)
    _LATENCY_WARMUP,
    _io_details,
    _sha256,
    load_interpreter,
    median_latency_ms,
    packed_files,
    predict_tflite,
    read_labels_from_tflite,
    read_tflite_metadata,
    supports_dynamic_batch,
    verify_export,
)
from maskclf.files import MaskclfError, atomic_path, model_name_of, read_labels, write_json, write_labels, write_text

PRECISIONS = ("float32", "float16", "dynamic", "int8")
# Weight-quantised models (dynamic, int8) legitimately flip a borderline answer in a few hundred;
# float models should not.
DEFAULT_MIN_AGREEMENT = {"float32": 0.999, "float16": 0.995, "dynamic": 0.99, "int8": 0.99}
EXPORT_DIR = "export"
PACKED_FILES = ("labels.txt", "metadata.json")
DEFAULT_AUTHOR = "maskclf"
DEFAULT_LICENSE = "not stated by the exporter: the licences of the training data and pretrained weights apply"


# ----------------------------------------------------------------------------- quantisation specs

@dataclass(frozen=True)
class QuantizationSpec:
    """How one precision is converted (MediaPipe Model Maker style: build it with a ``for_*`` factory).

    Attributes:
        name: float32, float16, dynamic or int8 (also the file suffix).
        optimize: apply ``tf.lite.Optimize.DEFAULT`` (weight quantisation).
        float16_weights: store weights as float16 (computation stays float32).
        integer_only: full-integer model (TFLITE_BUILTINS_INT8) with uint8 input and output;
            needs representative images.
        representative: how many training images calibrate the activation ranges (int8 only).
    """

    name: str
    optimize: bool = False
    float16_weights: bool = False
    integer_only: bool = False
    representative: int = 0

    @classmethod
    def for_float32(cls) -> "QuantizationSpec":
        """No quantisation: the reference export."""
        return cls("float32")

    @classmethod
    def for_float16(cls) -> "QuantizationSpec":
        """Float16 weights (half the size), float32 input/output; GPU delegates run it natively."""
        return cls("float16", optimize=True, float16_weights=True)

    @classmethod
    def for_dynamic(cls) -> "QuantizationSpec":
        """Dynamic-range quantisation: int8 weights, float activations, float32 input/output."""
        return cls("dynamic", optimize=True)

    @classmethod
    def for_int8(cls, representative: int = 200) -> "QuantizationSpec":
        """Full-integer int8 with uint8 input (camera pixels as they are) and uint8 output."""
        if representative < 1:
            raise MaskclfError(f"int8 needs at least 1 representative image, got {representative}")
        return cls("int8", optimize=True, integer_only=True, representative=int(representative))

    @classmethod
    def named(cls, name: str, representative: int = 200) -> "QuantizationSpec":
        """The spec of a precision name; a one-line error listing the names otherwise."""
        factories = {"float32": cls.for_float32, "float16": cls.for_float16, "dynamic": cls.for_dynamic,
                     "int8": lambda: cls.for_int8(representative)}
        if name not in factories:
            raise MaskclfError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
        return factories[name]()

    def configure(self, converter, representative_images: np.ndarray | None) -> None:
        """Set the converter options of this precision."""
        import tensorflow as tf

        if self.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.float16_weights:
            converter.target_spec.supported_types = [tf.float16]
        if self.integer_only:
            if representative_images is None or len(representative_images) == 0:
                raise MaskclfError("int8 conversion needs representative images")
            reps = np.asarray(representative_images, dtype=np.float32)
            converter.representative_dataset = lambda: ([r[None]] for r in reps)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8


# ----------------------------------------------------------------------------- conversion

def convert(model, spec: QuantizationSpec, representative_images: np.ndarray | None = None,
            batch_size: int | None = None) -> bytes:
    """Convert a Keras model (float RGB [0, 255] input, softmax output) to a .tflite flatbuffer.

    Args:
        model: a keras.Model with a square ``(S, S, 3)`` input.
        spec: the precision, from ``QuantizationSpec.for_*``.
        representative_images: (N, S, S, 3) pixels in [0, 255] for int8 calibration.
        batch_size: None keeps the batch dimension dynamic; an int fixes it.

    Returns:
        The flatbuffer bytes (no labels packed yet; see :func:`pack_files`).
    """
    import tensorflow as tf

    _, h, w, c = model.input_shape
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([batch_size, h, w, c], tf.float32, name="image")])
    # Keras 3 variables are not tracked by the model as a TF trackable: handing the model itself to the
    # converter yields a file without weights (NaN outputs). A tf.Module holding the variables works.
    holder = tf.Module()
    holder.keras_variables = [getattr(v, "value", v) for v in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], holder)
    reps = None
    if spec.integer_only and representative_images is not None:
        reps = np.array(representative_images, dtype=np.float32, copy=True)
        # Pin the input range to exactly [0, 255] so the uint8 input has scale 1, zero point 0:
        # a device then feeds camera pixels unchanged.
        reps[0, 0, 0, :] = 0.0
        reps[0, 0, -1, :] = 255.0
    spec.configure(converter, reps)
    try:
        return bytes(converter.convert())
    except MaskclfError:
        raise
    except Exception as e:  # converter errors come as several types
        msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise MaskclfError(f"{spec.name} conversion of {model.name} failed ({msg}); "
                           f"try another precision with --quantize") from None


pack_files = tflite_metadata.pack_files  # the writer of the appended ZIP lives beside its readers


# ----------------------------------------------------------------------------- export of a run

def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _split_rows(run: Path, cfg, progress: bool) -> list[dict]:
    from maskclf.data.sources import run_split_rows

    return run_split_rows(run, cfg.data, "restore the dataset the run was trained on", progress)


def _load_images(paths: Sequence[str], size: int) -> np.ndarray:
    from maskclf.data import images

    if not paths:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([images.load_array(p, size) for p in paths])


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]


def _parse_precisions(precisions: Iterable[str] | str) -> list[str]:
    if isinstance(precisions, str):
        precisions = precisions.split(",")
    names = [p.strip().lower() for p in precisions if p.strip()]
    if not names:
        raise MaskclfError(f"no precision given; choose from {', '.join(PRECISIONS)}")
    for n in names:
        if n not in PRECISIONS:
            raise MaskclfError(f"unknown precision {n!r}; choose from {', '.join(PRECISIONS)}")
    return [p for p in PRECISIONS if p in names]  # canonical order, no duplicates


def _thresholds(min_agreement: dict | None) -> dict[str, float]:
    out = dict(DEFAULT_MIN_AGREEMENT)
    for k, v in (min_agreement or {}).items():
        if k not in PRECISIONS:
            raise MaskclfError(f"min_agreement: unknown precision {k!r}; choose from {', '.join(PRECISIONS)}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise MaskclfError(f"min_agreement {k}={v!r} is not a number") from None
        if not 0.0 <= v <= 1.0:
            raise MaskclfError(f"min_agreement {k}={v} must lie between 0 and 1")
        out[k] = v
    return out


@dataclass(frozen=True)
class _CheckSet:
    """The images every precision is checked on, with Keras' answers on them."""

    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) class indices
    keras_probs: np.ndarray  # (N, C)
    class_names: list
    threshold: float | None
    source: str


def _check_set(model, rows: list[dict], class_names: list[str], threshold: float | None, size: int,
               max_test: int | None, seed: int, where: Path, progress: bool) -> _CheckSet:
    test, source = [r for r in rows if r["split"] == "test"], "test split"
    if not test:
        test, source = [r for r in rows if r["split"] == "validation"], "validation split"
    if not test:
        raise MaskclfError(f"{where}: no test or validation images to check the export on")
    test = _sample(test, max_test, seed)
    lookup = {n: i for i, n in enumerate(class_names)}
    _log(f"loading {len(test)} images of the {source}", progress)
    x = _load_images([r["path"] for r in test], size)
    # Keras sees exactly the pixels the interpreter sees, so differences come from the conversion alone.
    probs = np.concatenate([np.asarray(model(x[i:i + 64].astype(np.float32), training=False))
                            for i in range(0, len(x), 64)])
    return _CheckSet(x, np.array([lookup[r["label"]] for r in test]), probs, class_names, threshold, source)


def _convert_and_check(model, spec: QuantizationSpec, reps: np.ndarray | None, check: _CheckSet,
                       min_agreement: float, threads: Sequence[int], latency_runs: int,
                       progress: bool) -> tuple[bytes, dict, dict]:
    """Convert one precision and measure it: (flatbuffer, metadata entry, report entry)."""
    from maskclf.reports.evaluate import compute_metrics

    _log(f"converting {spec.name} ...", progress)
    t0 = time.time()
    data = convert(model, spec, reps)
    it = load_interpreter(data)
    dynamic = supports_dynamic_batch(it)
    if not dynamic:
        # Some quantised graphs cannot resize their batch; a fixed batch of 1 always works.
        _log(f"{spec.name}: the batch dimension cannot stay dynamic; exporting with batch 1", progress)
        data = convert(model, spec, reps, batch_size=1)
        it = load_interpreter(data)
    if it.maskclf_without_xnnpack:
        _log(f"{spec.name}: XNNPACK refuses this graph (a layer's calibrated range is empty?); it runs on "
             "TFLite's built-in kernels, slower", progress)
    info = {"file": f"model_{spec.name}.tflite", "precision": spec.name, "dynamic_batch": dynamic,
            "xnnpack": not it.maskclf_without_xnnpack,
            "batch_size": None if dynamic else 1, **_io_details(it), "convert_seconds": round(time.time() - t0, 2)}
    if spec.integer_only:
        info["representative_images"] = len(reps)
    probs = predict_tflite(it, check.images)
    m = compute_metrics(check.labels, probs, check.class_names, threshold=check.threshold)
    agreement = float(np.mean(probs.argmax(1) == check.keras_probs.argmax(1)))
    latency = {str(t): round(median_latency_ms(data, check.images, t, latency_runs), 4) for t in threads}
    result = {
        "file": info["file"],
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "agreement": agreement,
        "min_agreement": min_agreement,
        "failed_check": agreement < min_agreement,
        "max_abs_prob_diff": float(np.max(np.abs(probs - check.keras_probs))),
        "size_bytes": None,  # known once the labels are packed
        "size_ratio_vs_float32": None,
        "latency_ms": latency,
        "dynamic_batch": dynamic,
    }
    _log(f"{spec.name}: agreement {agreement:.4f}, max |dp| {result['max_abs_prob_diff']:.2e}, "
         f"latency {latency} ms", progress)
    return data, info, result


def _metadata(cfg, run: Path, class_names: list[str], threshold: float | None, models: dict) -> dict:
    import maskclf

    return {
        "format": "maskclf-tflite-export",
        "format_version": 1,
        "model_name": model_name_of(run, cfg.model.name),
        "source_run": str(run.resolve()),
        "maskclf_version": maskclf.__version__,
        "tensorflow_version": _version("tensorflow"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "class_names": class_names,
        "num_classes": len(class_names),
        "decision": ({"rule": "predict positive_class when its probability >= threshold, else the other class",
                      "positive_class": class_names[0], "positive_index": 0, "threshold": threshold}
                     if threshold is not None else {"rule": "argmax of the probabilities"}),
        "decision_threshold": threshold,
        "input": {"height": cfg.data.image_size, "width": cfg.data.image_size, "channels": 3, "layout": "NHWC",
                  "color": "RGB", "value_range": [0, 255], "resize": "bilinear",
                  "normalization": "inside the model; feed raw pixels (float models as float32, int8 as uint8)",
                  "crop_margin": cfg.data.crop_margin,
                  "crop": "square box around the face, grown by crop_margin x its longer side on each side",
                  "detector_framing": detector.framing_table()},
        "output": {"kind": "softmax probabilities", "order": "labels.txt"},
        "ensemble_members": _ensemble_members(run),
        "models": models,
    }


def _description(cfg, run: Path, class_names: list[str], threshold: float | None, precision: str, author: str,
                 license: str) -> "tflite_metadata.ModelDescription":
    """What the standard TFLite metadata of one exported precision says."""
    import maskclf

    size = cfg.data.image_size
    rule = (f"predict {class_names[0]} when its probability >= {threshold:.4f}, else {class_names[1]}"
            if threshold is not None else "take the most probable class")
    return tflite_metadata.ModelDescription(
        name=f"maskclf {model_name_of(run, cfg.model.name)} face-mask classifier",
        labels=tuple(class_names), image_size=size,
        description=(f"Classifies one face crop as {', '.join(class_names)} ({precision} export of run {run.name}, "
                     f"maskclf {maskclf.__version__}). Input: the face's square box grown by {cfg.data.crop_margin} "
                     f"of its side on each side, RGB, resized bilinearly to {size}x{size}, pixels 0-255 unscaled. "
                     f"Output: softmax probabilities in labels.txt order; {rule}."),
        version=run.name, author=author, license=license)


def _ensemble_members(run: Path) -> int:
    """How many networks the model averages (``maskclf ensemble``); 1 for an ordinary run."""
    from maskclf.files import members_of

    return len(members_of(run)) or 1


def export_run(run_dir: str | os.PathLike, precisions: Iterable[str] | str = PRECISIONS, representative: int = 200,
               force: bool = False, min_agreement: dict[str, float] | None = None, threads: Sequence[int] = (1, 2),
               max_test: int | None = None, progress: bool = True, latency_runs: int = 50,
               author: str | None = None, license: str | None = None) -> Path:
    """Export a run's best model to TFLite in several precisions and check each against Keras.

    Nothing is written until every precision is converted and checked, so a failed check leaves a
    previous export untouched; each file is written atomically, so a kill leaves no partial file.

    Args:
        run_dir: a run directory made by ``maskclf train`` (config.yaml, labels.txt, split.csv, best.keras).
        precisions: any of float32, float16, dynamic, int8 (a list or a comma-separated string).
        representative: training images (seeded sample) that calibrate int8.
        force: write the export even when a precision's agreement is below its threshold
            (the report then says ``"failed_check": true``).
        min_agreement: per-precision minimum argmax agreement with Keras on the test split,
            e.g. ``{"int8": 0.98}``; defaults 0.999 float32, 0.995 float16, 0.99 dynamic and int8.
        threads: interpreter thread counts at which latency is measured.
        max_test: check on at most this many test images (seeded sample); None for all.
        progress: print progress to stderr.
        latency_runs: timed batch-1 runs per precision and thread count.
        author: the author written into each file's standard TFLite metadata (None: ``DEFAULT_AUTHOR``).
        license: the licence text written into each file's standard TFLite metadata (None: ``DEFAULT_LICENSE``).

    Returns:
        The export folder ``RUN_DIR/export``.

    Raises:
        MaskclfError: bad run directory or arguments, a conversion failure, or agreement below the
            threshold without ``force``.
    """
    from maskclf.config import load_config
    from maskclf.reports.evaluate import compute_metrics, load_run_model

    run = Path(run_dir)
    if not run.is_dir():
        raise MaskclfError(f"{run}: run directory not found")
    minimum = _thresholds(min_agreement)
    specs = [QuantizationSpec.named(n, representative) for n in _parse_precisions(precisions)]
    threads = [int(t) for t in threads]
    if not threads or any(t < 1 for t in threads):
        raise MaskclfError(f"threads must be positive numbers, got {threads}")
    if max_test is not None and max_test < 1:
        raise MaskclfError(f"max_test must be at least 1, got {max_test}")
    if not (run / "best.keras").is_file():
        raise MaskclfError(f"{run / 'best.keras'}: no trained model; is {run} a finished `maskclf train` run?")
    cfg = load_config(run / "config.yaml")
    class_names = read_labels(run / "labels.txt")
    size = cfg.data.image_size
    threshold = None
    if len(class_names) == 2:
        try:
            threshold = json.loads((run / "metrics.json").read_text()).get("threshold")
        except (OSError, ValueError):
            pass

    model = load_run_model(run)
    if tuple(model.input_shape[1:]) != (size, size, 3) or model.output_shape[-1] != len(class_names):
        raise MaskclfError(f"{run / 'best.keras'}: model input {model.input_shape} / output {model.output_shape} "
                           f"do not match image_size {size} and the {len(class_names)} classes of labels.txt")
    rows = _split_rows(run, cfg, progress)
    check = _check_set(model, rows, class_names, threshold, size, max_test, cfg.train.seed, run / "split.csv",
                       progress)
    reps = None
    if any(s.integer_only for s in specs):
        picked = _sample([r for r in rows if r["split"] == "train"] or rows, representative, cfg.train.seed)
        _log(f"loading {len(picked)} representative training images for int8 calibration", progress)
        reps = _load_images([r["path"] for r in picked], size)

    flatbuffers, models, results = {}, {}, {}
    for spec in specs:
        flatbuffers[spec.name], models[spec.name], results[spec.name] = _convert_and_check(
            model, spec, reps, check, minimum[spec.name], threads, latency_runs, progress)
    failed = [n for n, r in results.items() if r["failed_check"]]
    if failed and not force:
        detail = "; ".join(f"{n} agreement {results[n]['agreement']:.4f} < {minimum[n]}" for n in failed)
        # Rounded down: a rounded-up figure (0.9898 -> 0.990) would fail the same check again.
        accept = " ".join(f"{n}={math.floor(results[n]['agreement'] * 1000) / 1000:.3f}" for n in failed)
        raise MaskclfError(f"export of {run} failed the parity check with Keras on {len(check.labels)} images of "
                           f"the {check.source}: {detail}; nothing written. Use --force to export anyway, or "
                           f"--min-agreement {accept} to accept it")

    metadata = _metadata(cfg, run, class_names, threshold, models)
    export_dir = run / EXPORT_DIR
    labels_bytes = tflite_metadata.labels_bytes(class_names)
    author = DEFAULT_AUTHOR if author is None else author
    license = DEFAULT_LICENSE if license is None else license
    for name, data in flatbuffers.items():
        inside = {k: v for k, v in metadata.items() if k != "models"} | {"model": models[name]}
        standard = tflite_metadata.build_metadata(
            _description(cfg, run, class_names, threshold, name, author, license),
            input_is_uint8=models[name]["input_dtype"] == "uint8")
        # One ZIP holds labels.txt (the standard metadata's associated file) and maskclf's metadata.json.
        packed = pack_files(tflite_metadata.add_metadata(data, standard),
                            {"labels.txt": labels_bytes, "metadata.json": json.dumps(inside, indent=2).encode()})
        # Re-packing the flatbuffer with the metadata and the trailing ZIP must not change a single output,
        # and the file must read back; checked on every export.
        if not np.array_equal(predict_tflite(load_interpreter(packed), check.images[:8]),
                              predict_tflite(load_interpreter(data), check.images[:8])):
            raise MaskclfError(f"{name}: packing metadata into the .tflite changed its outputs; please report this")
        if tflite_metadata.read_standard_metadata(packed).labels != class_names:
            raise MaskclfError(f"{name}: the standard metadata does not read back; please report this")
        results[name]["size_bytes"] = len(packed)
        with atomic_path(export_dir / models[name]["file"]) as tmp:
            tmp.write_bytes(packed)
    if "float32" in results:
        for r in results.values():
            r["size_ratio_vs_float32"] = round(r["size_bytes"] / results["float32"]["size_bytes"], 4)
    write_labels(export_dir / "labels.txt", class_names)
    keras_metrics = compute_metrics(check.labels, check.keras_probs, class_names, threshold=threshold)
    report = {
        "run_dir": str(run.resolve()),
        "model_name": model_name_of(run, cfg.model.name),
        "evaluated_on": check.source,
        "num_images": len(check.labels),
        "image_size": size,
        "class_names": class_names,
        "threshold": threshold,
        "threads": threads,
        "latency": f"median ms per image, batch 1, {latency_runs} runs after {_LATENCY_WARMUP} warm-up",
        "keras": {"accuracy": keras_metrics["accuracy"], "balanced_accuracy": keras_metrics["balanced_accuracy"]},
        "precisions": results,
        "failed_check": bool(failed),
        "forced": bool(failed and force),
    }
    write_json(export_dir / "report.json", report)
    write_text(export_dir / "report.md", format_report_md(report))
    files = [models[n]["file"] for n in flatbuffers] + ["labels.txt", "report.json", "report.md"]
    metadata["files"] = {f: {"sha256": _sha256(export_dir / f), "size_bytes": (export_dir / f).stat().st_size}
                         for f in files}
    write_json(export_dir / "metadata.json", metadata)
    for old in export_dir.glob("model_*.tflite"):  # precisions of an earlier export not asked for this time
        if old.name not in files:
            old.unlink()
    _log(f"export written to {export_dir}", progress)
    return export_dir


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in (pkg, f"{pkg}-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            pass
    return None


def _kib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KiB"


def format_report_table(report: dict) -> str:
    """A compact text table of a report (one row per precision)."""
    ts = [str(t) for t in report.get("threads", [])]
    head = (f"{'precision':<9} {'size':>12} {'ratio':>6} {'acc':>6} {'bal.acc':>7} {'agree':>7} {'max|dp|':>8} "
            + " ".join(f"{'ms@' + t + 't':>8}" for t in ts) + "  check")
    lines = [head]
    k = report["keras"]
    lines.append(f"{'keras':<9} {'':>12} {'':>6} {k['accuracy']:>6.3f} {k['balanced_accuracy']:>7.3f}")
    for name, r in report["precisions"].items():
        ratio = "" if r["size_ratio_vs_float32"] is None else f"{r['size_ratio_vs_float32']:.2f}"
        lat = " ".join(f"{r['latency_ms'][t]:>8.3f}" for t in ts)
        check = "FAILED" if r["failed_check"] else "ok"
        lines.append(f"{name:<9} {_kib(r['size_bytes']):>12} {ratio:>6} {r['accuracy']:>6.3f} "
                     f"{r['balanced_accuracy']:>7.3f} {r['agreement']:>7.4f} {r['max_abs_prob_diff']:>8.2e} "
                     f"{lat}  {check} (>= {r['min_agreement']})")
    return "\n".join(lines)


def format_report_md(report: dict) -> str:
    """The report as Markdown (report.md)."""
    ts = [str(t) for t in report.get("threads", [])]
    k = report["keras"]
    out = [
        f"# TFLite export of `{report['model_name']}`",
        "",
        f"Run: `{report['run_dir']}`  ",
        f"Checked with ai-edge-litert on {report['num_images']} images of the {report['evaluated_on']} "
        f"at {report['image_size']}x{report['image_size']}; classes: {', '.join(report['class_names'])}"
        + (f"; threshold {report['threshold']:.3f} on p({report['class_names'][0]})"
           if report.get("threshold") is not None else "") + ".  ",
        f"Keras: accuracy {k['accuracy']:.4f}, balanced accuracy {k['balanced_accuracy']:.4f}.  ",
        f"Latency: {report['latency']}.",
        "",
        "| precision | file | size | vs float32 | accuracy | balanced acc. | agreement | max abs prob diff | "
        + " | ".join(f"ms @ {t} thread{'s' if t != '1' else ''}" for t in ts) + " | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(ts) + "---|",
    ]
    for name, r in report["precisions"].items():
        ratio = "" if r["size_ratio_vs_float32"] is None else f"{r['size_ratio_vs_float32']:.2f}"
        check = f"{'FAILED' if r['failed_check'] else 'ok'} (min {r['min_agreement']})"
        out.append(f"| {name} | `{r['file']}` | {_kib(r['size_bytes'])} | {ratio} | {r['accuracy']:.4f} | "
                   f"{r['balanced_accuracy']:.4f} | {r['agreement']:.4f} | {r['max_abs_prob_diff']:.2e} | "
                   + " | ".join(f"{r['latency_ms'][t]:.3f}" for t in ts) + f" | {check} |")
    if report.get("forced"):
        out += ["", "**Exported with --force although a parity check failed.**"]
    return "\n".join(out) + "\n"
