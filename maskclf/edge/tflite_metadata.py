"""Standard TFLite metadata (TFLite Support's ``metadata_schema.fbs``): written into every exported model,
read back and checked.

Phone and desktop tooling (MediaPipe Tasks' ``ImageClassifier``, the TFLite Task Library, Android Studio's
model binding, Netron) looks for a model-level ``metadata`` entry named ``TFLITE_METADATA`` whose buffer
holds a ``ModelMetadata`` flatbuffer (file identifier ``M001``): name, description, version, author,
licence; the input tensor as an RGB image with its normalisation (mean 0, std 1: the model normalises
inside itself and takes pixels 0-255) and value range; the output tensor as class probabilities with
``labels.txt`` associated as ``TENSOR_AXIS_LABELS``. The associated files themselves live in the ZIP
appended to the flatbuffer (:func:`pack_files`), which also carries maskclf's own
``metadata.json``.

The tables are built with the flatc-generated Python of the metadata schema (vendored in
``maskclf.edge._metadata_schema_fb``, Apache-2.0) and ai-edge-litert's generated Python of the model schema,
both on the ``flatbuffers`` package: the same route TFLite Support's ``MetadataPopulator`` takes, without its
protobuf<4 pin. No TensorFlow is imported; ai-edge-litert only for its schema module (pure Python).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from maskclf.files import MaskclfError

METADATA_NAME = "TFLITE_METADATA"
MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
# Every field written here exists since schema 1.0.0 (AssociatedFile.version, 1.4.1, is not used); readers
# older than the fields a file needs refuse it, so the lowest true version keeps the most readers.
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"
_ALIGN = 16  # the TFLite converter's buffer alignment, kept when the model is re-packed


@dataclass(frozen=True)
class ModelDescription:
    """What the standard metadata says about a classifier.

    Attributes:
        name: model name (shown by Netron, used as class name by Android Studio's binding).
        labels: class names in output order (become ``labels.txt``, associated with the output).
        image_size: the S of the ``[1, S, S, 3]`` RGB input.
        description: one paragraph for people.
        version: the model's version (maskclf writes the run directory's name).
        author: who made it.
        license: licences that apply to the model.
        labels_file: the name of the associated label file.
    """

    name: str
    labels: tuple[str, ...]
    image_size: int
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels_file: str = LABELS_FILE


@dataclass(frozen=True)
class StandardMetadata:
    """The standard metadata read back from a .tflite file (see :func:`read_standard_metadata`)."""

    name: str
    description: str
    version: str
    author: str
    license: str
    min_parser_version: str
    input_name: str
    input_dtype: str
    input_shape: tuple[int, ...]
    color_space: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_range: tuple[float, float] | None
    output_name: str
    output_classes: int
    labels_file: str
    labels: list[str]
    associated_files: list[str] = field(default_factory=list)


def _schemas():
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as model_fb
    except ImportError as e:
        raise MaskclfError(f"reading or writing TFLite metadata needs ai-edge-litert and flatbuffers ({e}); "
                           "pip install 'maskclf[edge]'") from None
    from maskclf.edge import _metadata_schema_fb as meta_fb

    return flatbuffers, model_fb, meta_fb


def _tensor_type_name(model_fb, code: int) -> str:
    names = {v: k.lower() for k, v in vars(model_fb.TensorType).items() if not k.startswith("_")}
    return names.get(code, str(code))


def build_metadata(desc: ModelDescription, input_is_uint8: bool = False) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) of an image classifier.

    Args:
        desc: the model's description.
        input_is_uint8: the input tensor is uint8 (the int8 export); float models take float32.

    Returns:
        The bytes to store in the model's ``TFLITE_METADATA`` buffer.
    """
    flatbuffers, _, fb = _schemas()
    labels = [str(n) for n in desc.labels]
    if not labels or any(not n.strip() or "\n" in n for n in labels):
        raise MaskclfError(f"{desc.name}: class names must be non-empty single lines, got {labels}")

    image = fb.TensorMetadataT()
    image.name = "image"
    image.description = (f"One face crop, RGB, resized to {desc.image_size}x{desc.image_size}, pixel values 0-255 "
                         f"as they are ({'uint8' if input_is_uint8 else 'float32'}); the model normalises inside "
                         "itself.")
    props = fb.ImagePropertiesT()
    props.colorSpace = fb.ColorSpaceType.RGB
    props.defaultSize = fb.ImageSizeT()
    props.defaultSize.width = props.defaultSize.height = int(desc.image_size)
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = props
    # (x - 0) / 1: the readers (MediaPipe, Task Library) feed the pixels unchanged, as the model expects.
    norm = fb.NormalizationOptionsT()
    norm.mean, norm.std = [0.0], [1.0]
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    image.processUnits = [unit]
    image.stats = fb.StatsT()
    image.stats.min, image.stats.max = [0.0], [255.0]

    probs = fb.TensorMetadataT()
    probs.name = "probability"
    probs.description = f"Probabilities of the {len(labels)} classes, in {desc.labels_file} order (softmax)."
    probs.content = fb.ContentT()
    probs.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    probs.content.contentProperties = fb.FeaturePropertiesT()
    probs.stats = fb.StatsT()
    probs.stats.min, probs.stats.max = [0.0], [1.0]
    label_file = fb.AssociatedFileT()
    label_file.name = desc.labels_file
    label_file.description = "Class names, one per line, in output order."
    label_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    probs.associatedFiles = [label_file]

    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [probs]
    meta = fb.ModelMetadataT()
    meta.name = desc.name
    meta.description = desc.description
    meta.version = desc.version
    meta.author = desc.author
    meta.license = desc.license
    meta.subgraphMetadata = [subgraph]
    meta.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(1024)
    b.Finish(meta.Pack(b), METADATA_IDENTIFIER)
    return bytes(b.Output())


def labels_bytes(labels) -> bytes:
    """The associated label file: one class name per line."""
    return "".join(f"{n}\n" for n in labels).encode("utf-8")


def _aligned_buffer_type(model_fb):
    class AlignedBufferT(model_fb.BufferT):
        """A BufferT that packs its bytes 16-byte aligned, as the converter laid them out (the generated
        Pack aligns to 1, which unaligned-load-intolerant kernels on some ARM devices dislike)."""

        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                raw = bytes(self.data)  # a uint8 ndarray from InitFromObj, or bytes
                # As flatbuffers' own CreateNumpyVector, with the converter's alignment instead of the item's.
                builder.StartVector(1, len(raw), _ALIGN)
                builder.head -= len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                data = builder.EndVector()
            model_fb.BufferStart(builder)
            if data is not None:
                model_fb.BufferAddData(builder, data)
            model_fb.BufferAddOffset(builder, self.offset)
            model_fb.BufferAddSize(builder, self.size)
            return model_fb.BufferEnd(builder)

    return AlignedBufferT


def add_metadata(tflite: bytes, metadata: bytes) -> bytes:
    """The model with ``metadata`` as its ``TFLITE_METADATA`` buffer (replacing one already there).

    ``tflite`` must be the bare flatbuffer (no appended ZIP yet: the model is re-packed, which would drop it).
    """
    flatbuffers, model_fb, _ = _schemas()
    if tflite[4:8] != MODEL_IDENTIFIER:
        raise MaskclfError("add_metadata: not a TFLite flatbuffer (no TFL3 identifier)")
    if metadata[4:8] != METADATA_IDENTIFIER:
        raise MaskclfError("add_metadata: not a ModelMetadata flatbuffer (no M001 identifier)")
    model = model_fb.ModelT.InitFromObj(model_fb.Model.GetRootAs(tflite, 0))
    aligned = _aligned_buffer_type(model_fb)
    buffers = []
    for old in model.buffers or []:
        new = aligned()
        new.data, new.offset, new.size = old.data, old.offset, old.size
        buffers.append(new)
    if any(b.offset > 1 for b in buffers):  # weights stored outside the flatbuffer (models > 2 GB)
        raise MaskclfError("add_metadata: the model keeps its weights outside the flatbuffer; not supported")
    entry = next((m for m in model.metadata or [] if _text(m.name) == METADATA_NAME), None)
    meta_buffer = aligned()
    meta_buffer.data = bytes(metadata)
    if entry is None:
        buffers.append(meta_buffer)
        entry = model_fb.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    else:
        buffers[entry.buffer] = meta_buffer
    model.buffers = buffers
    b = flatbuffers.Builder(len(tflite) + len(metadata) + 4096)
    b.Finish(model.Pack(b), MODEL_IDENTIFIER)
    return bytes(b.Output())


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else (v or "")


def _fail(path, what: str) -> MaskclfError:
    return MaskclfError(f"{path}: {what}")


REDO = "re-export it with `maskclf export RUN_DIR`"


def check_identifier(where, data: bytes) -> None:
    """Raise a one-line MaskclfError unless ``data`` starts like a TFLite flatbuffer (TFL3)."""
    if len(data) < 8 or data[4:8] != MODEL_IDENTIFIER:
        raise _fail(where, f"not a TFLite model (no TFL3 identifier); copy it again or {REDO}")


def read_model(model: str | os.PathLike | bytes) -> tuple[str | Path, bytes]:
    """``(where, bytes)`` of a .tflite path or bytes, checked to be a TFLite flatbuffer."""
    if isinstance(model, (bytes, bytearray)):
        where, data = "<model bytes>", bytes(model)
    else:
        where = Path(model)
        try:
            data = where.read_bytes()
        except FileNotFoundError:
            raise _fail(where, "file not found") from None
        except IsADirectoryError:
            raise _fail(where, "is a folder, expected a .tflite file") from None
    check_identifier(where, data)
    return where, data


def pack_files(tflite: bytes, files: dict[str, bytes]) -> bytes:
    """Append a ZIP archive of ``files`` to a flatbuffer (TFLite Support's "associated files").

    Written in append mode on the model bytes, so the ZIP offsets count from the file start as
    TFLite Support's own writer does; stored uncompressed so devices can read them in place.
    """
    buf = io.BytesIO(tflite)
    buf.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
            z.writestr(info, data)
    return buf.getvalue()


def appended_files(data: bytes) -> dict[str, bytes]:
    """The files of the ZIP appended to a model's bytes (name -> bytes); empty when there is none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {n: z.read(n) for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return {}


def read_standard_metadata(model: str | os.PathLike | bytes) -> StandardMetadata:
    """Read a .tflite file's standard metadata and check it fits the model.

    Checks: the file is a TFLite flatbuffer that parses; it has a ``TFLITE_METADATA`` entry holding an
    ``M001`` flatbuffer with one subgraph whose tensor entries match the model's inputs and outputs; the
    output's ``TENSOR_AXIS_LABELS`` file is packed in the file and has one label per output class.

    Args:
        model: a .tflite path, or its bytes.

    Returns:
        A :class:`StandardMetadata`.

    Raises:
        MaskclfError: one line naming the file and what to do, for a missing, corrupt or non-TFLite file,
            a model without standard metadata, or a label count that does not match the output.
    """
    _, model_fb, fb = _schemas()
    where, data = read_model(model)
    redo = REDO
    try:
        root = model_fb.Model.GetRootAs(data, 0)
        entries = {_text(root.Metadata(i).Name()): root.Metadata(i).Buffer() for i in range(root.MetadataLength())}
        if root.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        graph = root.Subgraphs(0)
        inputs = [graph.Tensors(int(graph.Inputs(i))) for i in range(graph.InputsLength())]
        outputs = [graph.Tensors(int(graph.Outputs(i))) for i in range(graph.OutputsLength())]
        tensors = [(_text(t.Name()), _tensor_type_name(model_fb, t.Type()), tuple(int(v) for v in t.ShapeAsNumpy()))
                   for t in inputs + outputs]
        meta_bytes = None
        if METADATA_NAME in entries:
            buf = root.Buffers(entries[METADATA_NAME])
            if buf.Offset() > 1:  # stored after the flatbuffer
                meta_bytes = data[buf.Offset():buf.Offset() + buf.Size()]
            else:
                meta_bytes = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    except Exception:  # flatbuffers has no verifier in Python: a damaged table shows as any error
        raise _fail(where, f"corrupt TFLite model (truncated or damaged: its flatbuffer tables do not parse); "
                           f"copy it again or {redo}") from None
    if meta_bytes is None:
        raise _fail(where, f"no standard TFLite metadata ({METADATA_NAME}), which MediaPipe and the TFLite Task "
                           f"Library need; {redo} (maskclf writes it since 0.1.0)")
    if len(meta_bytes) < 8 or meta_bytes[4:8] != METADATA_IDENTIFIER:
        raise _fail(where, f"its {METADATA_NAME} buffer is not a ModelMetadata flatbuffer (no M001); "
                           f"copy it again or {redo}")
    try:
        m = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(meta_bytes, 0))
    except Exception:
        raise _fail(where, f"corrupt {METADATA_NAME} metadata (its tables do not parse); copy it again or {redo}") from None
    packed = appended_files(data)

    if len(m.subgraphMetadata or []) != 1:
        raise _fail(where, f"{METADATA_NAME} describes {len(m.subgraphMetadata or [])} subgraphs, not 1; {redo}")
    sub = m.subgraphMetadata[0]
    ins, outs = sub.inputTensorMetadata or [], sub.outputTensorMetadata or []
    if len(ins) != len(inputs) or len(outs) != len(outputs):
        raise _fail(where, f"{METADATA_NAME} describes {len(ins)} inputs / {len(outs)} outputs but the model has "
                           f"{len(inputs)} / {len(outputs)}; the metadata belongs to another model: {redo}")
    if len(ins) != 1 or len(outs) != 1:
        raise _fail(where, f"not a single-input single-output classifier ({len(ins)} inputs, {len(outs)} outputs)")
    image, probs = ins[0], outs[0]
    (in_name, in_dtype, in_shape), (_, _, out_shape) = tensors
    props = image.content.contentProperties if image.content else None
    color = {v: k for k, v in vars(fb.ColorSpaceType).items() if not k.startswith("_")}.get(
        getattr(props, "colorSpace", 0), "UNKNOWN")
    norm = next((u.options for u in image.processUnits or []
                 if u.optionsType == fb.ProcessUnitOptions.NormalizationOptions), None)
    label_files = [f for f in probs.associatedFiles or [] if f.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS]
    if not label_files:
        raise _fail(where, f"{METADATA_NAME} associates no label file (TENSOR_AXIS_LABELS) with the output; {redo}")
    labels_file = _text(label_files[0].name)
    if labels_file not in packed:
        raise _fail(where, f"{METADATA_NAME} names {labels_file} but the file packs no such file (the ZIP appended "
                           f"to the model is missing or damaged); copy it again or {redo}")
    labels = [n.strip() for n in packed[labels_file].decode("utf-8", "replace").splitlines() if n.strip()]
    classes = int(out_shape[-1]) if out_shape else 0
    if len(labels) != classes:
        raise _fail(where, f"{labels_file} packed in the model has {len(labels)} labels but the output has {classes} "
                           f"classes; the labels belong to another model: {redo}")
    stats = image.stats
    return StandardMetadata(
        name=_text(m.name), description=_text(m.description), version=_text(m.version), author=_text(m.author),
        license=_text(m.license), min_parser_version=_text(m.minParserVersion),
        input_name=in_name, input_dtype=in_dtype, input_shape=in_shape, color_space=color,
        mean=tuple(float(v) for v in (norm.mean if norm is not None and norm.mean is not None else [])),
        std=tuple(float(v) for v in (norm.std if norm is not None and norm.std is not None else [])),
        input_range=(float(stats.min[0]), float(stats.max[0]))
        if stats is not None and stats.min is not None and len(stats.min) and stats.max is not None
        and len(stats.max) else None,
        output_name=_text(probs.name), output_classes=classes, labels_file=labels_file, labels=labels,
        associated_files=sorted(packed))
