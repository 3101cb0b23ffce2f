"""Reading and running a maskclf .tflite with ai-edge-litert alone (no TensorFlow): what the device needs.

    load_interpreter(path | bytes)  -> a LiteRT Interpreter (XNNPACK, or TFLite's own kernels when it refuses)
    predict_tflite(interpreter, images) -> probabilities, dequantised, any batch size
    read_labels_from_tflite / read_tflite_metadata / packed_files -> what ``maskclf export`` packed in the file
    verify_export(export_dir)       -> sizes, sha256s, labels and standard metadata of an export folder

``maskclf.export.convert`` writes these files (with TensorFlow); this module only reads and runs them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from maskclf.edge import tflite_metadata
from maskclf.files import MaskclfError, file_digest, read_labels

_LATENCY_WARMUP = 5


def packed_files(path: str | os.PathLike) -> dict[str, bytes]:
    """The files packed into a .tflite by :func:`pack_files` (name → bytes)."""
    where, data = tflite_metadata.read_model(path)
    files = tflite_metadata.appended_files(data)
    if not files:
        raise MaskclfError(f"{where}: no packed labels (no ZIP archive at the end); "
                           "re-export it with `maskclf export` or use the labels.txt beside it")
    return files


def read_labels_from_tflite(path: str | os.PathLike) -> list[str]:
    """Class names packed in a .tflite file (model output order).

    Raises:
        MaskclfError: the file is not a TFLite model or holds no labels.txt.
    """
    files = packed_files(path)
    if "labels.txt" not in files:
        raise MaskclfError(f"{path}: no labels.txt packed in the model; use the labels.txt beside it")
    names = [n.strip() for n in files["labels.txt"].decode("utf-8").splitlines() if n.strip()]
    if not names:
        raise MaskclfError(f"{path}: the packed labels.txt is empty; re-export the model")
    return names


def read_tflite_metadata(path: str | os.PathLike) -> dict:
    """The metadata.json packed in a .tflite file (without the sha256 table, which lives beside it)."""
    files = packed_files(path)
    if "metadata.json" not in files:
        raise MaskclfError(f"{path}: no metadata.json packed in the model; use the metadata.json beside it")
    return json.loads(files["metadata.json"].decode("utf-8"))


def verify_export(export_dir: str | os.PathLike, load_models: bool = True) -> dict:
    """Check an export folder: every file listed in metadata.json has its size and sha256, and each
    model loads, carries the same labels as labels.txt and standard TFLite metadata that fits it.
    Needs no TensorFlow (only ai-edge-litert), so it runs on the device after copying.

    Returns:
        The metadata dict.

    Raises:
        MaskclfError: naming the first file that is missing, altered or unreadable.
    """
    d = Path(export_dir)
    meta_path = d / "metadata.json"
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        files = metadata["files"]
    except FileNotFoundError:
        raise MaskclfError(f"{meta_path}: not found; is {d} a folder written by `maskclf export`?") from None
    except (ValueError, KeyError, TypeError):
        raise MaskclfError(f"{meta_path}: unreadable or without a file table; re-export the run") from None
    for name, want in files.items():
        p = d / name
        if not p.is_file():
            raise MaskclfError(f"{p}: listed in metadata.json but missing; copy the whole export folder")
        if p.stat().st_size != want["size_bytes"] or _sha256(p) != want["sha256"]:
            raise MaskclfError(f"{p}: size or sha256 differs from metadata.json (corrupt or partial copy); "
                               "copy it again or re-export the run")
    labels = read_labels(d / "labels.txt")
    for info in metadata.get("models", {}).values():
        p = d / info["file"]
        # The standard metadata (what MediaPipe and the Task Library read) and its packed label file, in one read.
        if tflite_metadata.read_standard_metadata(p).labels != labels:
            raise MaskclfError(f"{p}: its packed labels differ from labels.txt; copy the whole export folder again")
        if load_models:
            load_interpreter(p)
    return metadata


def load_interpreter(model: str | os.PathLike | bytes, num_threads: int = 1):
    """An ai-edge-litert Interpreter for a .tflite path or bytes; one-line MaskclfError if unusable."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        where, data = "model bytes", bytes(model)
        tflite_metadata.check_identifier("<model bytes>", data)
        kwargs: dict[str, Any] = {"model_content": data}
    else:
        where = str(model)
        p = Path(model)
        if not p.is_file():
            raise MaskclfError(f"{p}: .tflite file not found; run `maskclf export RUN_DIR` first")
        with open(p, "rb") as f:
            tflite_metadata.check_identifier(p, f.read(8))
        kwargs = {"model_path": str(p)}
    from ai_edge_litert.interpreter import OpResolverType

    # XNNPACK (the default delegate) refuses some valid int8 graphs, e.g. a layer whose calibrated range is
    # empty (all ReLUs dead on the representative images: a scale of ~1e-8); TFLite's own kernels run them.
    for resolver in (None, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        try:
            extra = {} if resolver is None else {"experimental_op_resolver_type": resolver}
            it = Interpreter(num_threads=num_threads, **kwargs, **extra)
            it.allocate_tensors()
        except Exception as e:  # flatbuffer verification and op resolution errors are ValueError/RuntimeError
            text = str(e).strip()
            if resolver is None and ("XNNPACK" in text or "Delegate" in text):
                continue
            msg = text.splitlines()[0][:160] if text else type(e).__name__
            raise MaskclfError(f"{where}: corrupt or unsupported TFLite model ({msg}); copy it again or "
                               "re-export it with `maskclf export RUN_DIR`") from None
        it.maskclf_without_xnnpack = resolver is not None  # slower kernels: callers may say so
        return it


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.uint8, np.int8) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def supports_dynamic_batch(interpreter, batch: int = 2) -> bool:
    """True when the interpreter runs a batch of ``batch`` images (resize, allocate, invoke)."""
    d = interpreter.get_input_details()[0]
    if d["shape_signature"][0] != -1:
        return False
    try:
        interpreter.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(d["index"], np.zeros([batch, *d["shape"][1:]], d["dtype"]))
        interpreter.invoke()
        ok = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape[0] == batch
    except Exception:
        ok = False
    return ok


def predict_tflite(interpreter, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Softmax probabilities (N, C) float32 of uint8 RGB images (N, S, S, 3).

    uint8 models get the pixels as they are; float models get them as float32 in [0, 255];
    uint8 outputs are dequantised with the output's scale and zero point.
    """
    d = interpreter.get_input_details()[0]
    dynamic = d["shape_signature"][0] == -1
    step = batch_size if dynamic else int(d["shape"][0])
    out = []
    for i in range(0, len(images), step):
        x = np.asarray(images[i:i + step]).astype(d["dtype"])
        n = len(x)
        if dynamic:
            if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
                interpreter.resize_tensor_input(d["index"], list(x.shape))
                interpreter.allocate_tensors()
        elif n < step:
            x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), x.dtype)])
        interpreter.set_tensor(d["index"], x)
        interpreter.invoke()
        o = interpreter.get_output_details()[0]
        out.append(_dequantize(interpreter.get_tensor(o["index"]), o)[:n])
    return np.concatenate(out)


def median_latency_ms(model: bytes | str | os.PathLike, images: np.ndarray, num_threads: int,
                      runs: int = 50) -> float:
    """Median milliseconds of one batch-1 ``invoke`` over ``runs`` timed runs after a warm-up."""
    it = load_interpreter(model, num_threads=num_threads)
    d = it.get_input_details()[0]
    if d["shape_signature"][0] == -1 and d["shape"][0] != 1:
        it.resize_tensor_input(d["index"], [1, *d["shape"][1:]])
        it.allocate_tensors()
    xs = [np.asarray(im)[None].astype(d["dtype"]) for im in images[:max(1, min(len(images), runs))]]
    times = []
    for k in range(_LATENCY_WARMUP + runs):
        it.set_tensor(d["index"], xs[k % len(xs)])
        t = time.perf_counter()
        it.invoke()
        if k >= _LATENCY_WARMUP:
            times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0)


def _io_details(it) -> dict:
    d, o = it.get_input_details()[0], it.get_output_details()[0]

    def q(t):
        scale, zero = t["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if scale else None

    return {"input_name": d["name"], "input_dtype": np.dtype(d["dtype"]).name,
            "input_shape": [int(v) for v in d["shape_signature"]], "input_quantization": q(d),
            "output_name": o["name"], "output_dtype": np.dtype(o["dtype"]).name,
            "output_shape": [int(v) for v in o["shape_signature"]], "output_quantization": q(o)}


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")
