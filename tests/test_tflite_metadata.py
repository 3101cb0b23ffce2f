"""Standard TFLite metadata: written, read back, and the one-line errors of files that lack or break it.

The exported precisions themselves (and MediaPipe reading them) are tested in test_export.py on its trained run;
here a tiny untrained model converted once is enough."""

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")

from maskclf.export import convert as E  # noqa: E402
from maskclf.edge import tflite_metadata as T  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402
from maskclf.models.registry import create_model  # noqa: E402

LABELS = ("with_mask", "without_mask")
DESC = T.ModelDescription("maskclf test model", LABELS, 16, description="a test", version="run-1", author="tests",
                          license="MIT")


@pytest.fixture(scope="module")
def raw():
    """A bare converted flatbuffer (float32 and int8), no metadata, no ZIP."""
    keras.utils.set_random_seed(0)
    model = create_model("small_cnn", 2, 16, filters=[4], convs_per_block=1, dense_units=[])
    reps = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    return {"float32": E.convert(model, E.QuantizationSpec.for_float32()),
            "int8": E.convert(model, E.QuantizationSpec.for_int8(4), reps)}


def _described(data: bytes, labels=LABELS, uint8=False, files=None) -> bytes:
    with_md = T.add_metadata(data, T.build_metadata(DESC, input_is_uint8=uint8))
    return E.pack_files(with_md, {"labels.txt": T.labels_bytes(labels), "metadata.json": b"{}"} if files is None
                        else files)


def test_round_trip_keeps_outputs_and_reads_every_field(raw, tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    for precision, data in raw.items():
        packed = _described(data, uint8=precision == "int8")
        path = tmp_path / f"{precision}.tflite"
        path.write_bytes(packed)
        md = T.read_standard_metadata(path)
        assert (md.name, md.description, md.version, md.author, md.license) == (
            "maskclf test model", "a test", "run-1", "tests", "MIT")
        assert md.labels == list(LABELS) and md.labels_file == "labels.txt" and md.output_classes == 2
        assert md.color_space == "RGB" and md.mean == (0.0,) and md.std == (1.0,) and md.input_range == (0.0, 255.0)
        assert md.input_shape == (1, 16, 16, 3) and md.input_dtype == ("uint8" if precision == "int8" else "float32")
        assert md.min_parser_version == T.MIN_PARSER_VERSION and md.associated_files == ["labels.txt", "metadata.json"]
        # Re-packing the flatbuffer with the metadata buffer changes no output, keeps the dynamic batch and
        # XNNPACK, and keeps the converter's own metadata entries and signature.
        a, b = E.load_interpreter(data), E.load_interpreter(packed)
        assert np.array_equal(E.predict_tflite(a, x), E.predict_tflite(b, x))
        assert E.supports_dynamic_batch(b) and not b.maskclf_without_xnnpack
        assert b.get_signature_list() == a.get_signature_list()


def test_metadata_buffer_is_replaced_not_added_twice(raw):
    from ai_edge_litert import schema_py_generated as model_fb

    once = T.add_metadata(raw["float32"], T.build_metadata(DESC))
    twice = T.add_metadata(once, T.build_metadata(DESC))
    m = model_fb.Model.GetRootAs(twice, 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    assert names.count(T.METADATA_NAME) == 1 and len(names) > 1  # the converter's own entries stay
    assert m.BuffersLength() == model_fb.Model.GetRootAs(once, 0).BuffersLength()


def test_model_without_standard_metadata_is_a_one_line_error(raw, tmp_path):
    for name, data in [("bare", raw["float32"]),
                       ("zip_only", E.pack_files(raw["float32"], {"labels.txt": T.labels_bytes(LABELS)}))]:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        with pytest.raises(MaskclfError, match=rf"{name}\.tflite: no standard TFLite metadata \(TFLITE_METADATA\).*"
                                               r"re-export it with `maskclf export RUN_DIR`") as err:
            T.read_standard_metadata(path)
        assert "\n" not in str(err.value)


def test_label_count_that_does_not_match_the_output_is_a_one_line_error(raw, tmp_path):
    path = tmp_path / "three.tflite"
    path.write_bytes(_described(raw["float32"], labels=("a", "b", "c")))
    with pytest.raises(MaskclfError, match=r"three\.tflite: labels\.txt packed in the model has 3 labels but the "
                                           r"output has 2 classes") as err:
        T.read_standard_metadata(path)
    assert "\n" not in str(err.value)
    path = tmp_path / "nolabels.tflite"
    path.write_bytes(_described(raw["float32"], files={"metadata.json": b"{}"}))
    with pytest.raises(MaskclfError, match=r"nolabels\.tflite: TFLITE_METADATA names labels\.txt but the file packs "
                                           r"no such file"):
        T.read_standard_metadata(path)


def test_corrupt_file_is_a_one_line_error(raw, tmp_path):
    good = _described(raw["int8"], uint8=True)
    end = good.index(b"PK\x03\x04")  # where the flatbuffer ends and the ZIP starts
    cases = [("text", b"not a model at all", "not a TFLite model"),
             ("half", good[: end // 2], "corrupt TFLite model"),
             ("headless", good[:8] + b"\xff" * (len(good) - 8), "corrupt TFLite model")]
    for name, data, words in cases:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        with pytest.raises(MaskclfError, match=rf"{name}\.tflite: {words}.*copy it again") as err:
            T.read_standard_metadata(path)
        assert "\n" not in str(err.value)
    md_at = good.index(T.METADATA_IDENTIFIER)
    damaged = bytearray(good)
    damaged[md_at:md_at + 4] = b"XXXX"
    with pytest.raises(MaskclfError, match="not a ModelMetadata flatbuffer"):
        T.read_standard_metadata(bytes(damaged))
    with pytest.raises(MaskclfError, match=r"missing\.tflite: file not found"):
        T.read_standard_metadata(tmp_path / "missing.tflite")


def test_writer_refuses_unusable_labels():
    with pytest.raises(MaskclfError, match="class names must be non-empty single lines"):
        T.build_metadata(T.ModelDescription("m", ("a", ""), 16))


def test_import_does_not_import_tensorflow():
    code = "import sys, maskclf.edge.tflite_metadata; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
