"""The device runtime: detectors, classifier, drawing, detect CLI, photo-level evaluation."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert")
keras = pytest.importorskip("keras")

from conftest import REPO, SAMPLE, make_video  # noqa: E402

from maskclf.export import convert as E  # noqa: E402
from maskclf.data import images  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.config import Config, apply_overrides  # noqa: E402
from maskclf.data.splitting import read_split_csv  # noqa: E402
from maskclf.edge import draw  # noqa: E402
from maskclf.edge.app import FaceMaskPipeline  # noqa: E402
from maskclf.edge.classifier import Face, FaceClassifier  # noqa: E402
from maskclf.edge.detector import (  # noqa: E402
    BlazeFaceDetector, HaarDetector, YuNetDetector, create_detector, iou, nms, reframe, ssd_anchors, weighted_nms)
from maskclf.edge.evaluation import GroundTruth, average_precision, fit_framing, voc_ap  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402
from maskclf.training.train import train  # noqa: E402
from maskclf.data.voc import clip_box, find_image, parse_voc  # noqa: E402

VOC_CLASSES = ["mask_weared_incorrect", "with_mask", "without_mask"]
# small_cnn (global pooling): 2 epochs give a working tiny net; the default's Flatten + dropout 0.5 head needs more.
TINY = ["model.name=small_cnn", "model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "image_size=32",
        "batch_size=32", "patience=50", "learning_rate=0.01", "lr_schedule=constant", "epochs=2"]
CROWD = ["maksssksksss753.jpg", "maksssksksss151.jpg"]  # ~15 px faces: plain YuNet finds none of them
FRONTAL = "maksssksksss148.jpg"  # two large unmasked frontal faces (Haar finds them)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny three-class run trained on the VOC sample (2 epochs, 32 px), made once for the module."""
    root = tmp_path_factory.mktemp("edge-run")
    cfg = apply_overrides(Config(), [f"data.path={SAMPLE}", f"train.out={root / 'runs'}", *TINY])
    keras.utils.set_random_seed(0)
    return train(cfg, progress=False)


@pytest.fixture(scope="module")
def export_dir(run_dir):
    """float32 + int8 export of the run (the parity check is not the point here: forced)."""
    return E.export_run(run_dir, precisions="float32,int8", representative=32, force=True, threads=(1,),
                        max_test=32, latency_runs=2, progress=False)


def _photo(name):
    """(RGB array, [(label, box)]) of a sample photo with its clipped VOC boxes."""
    ann = parse_voc(SAMPLE / "annotations" / (Path(name).stem + ".xml"))
    rgb = np.asarray(images.load_rgb(find_image(SAMPLE / "images", ann)), np.uint8)
    h, w = rgb.shape[:2]
    return rgb, [(o.name, b) for o in ann.objects if (b := clip_box(o, w, h))]


def _found(boxes, truths, threshold):
    return sum(max((iou(t, b) for b in boxes), default=0.0) >= threshold for t in truths)


# ----------------------------------------------------------------------------- no TensorFlow on the device

def test_edge_runtime_imports_no_tensorflow(export_dir):
    code = f"""
import json, sys
import numpy as np
import maskclf.edge
from maskclf.edge import app, classifier, detector, draw, evaluation
from maskclf.edge import FaceClassifier, FaceMaskPipeline, create_detector
from maskclf.data.images import load_rgb
rgb = np.asarray(load_rgb({str(SAMPLE / 'images' / FRONTAL)!r}))
result = FaceMaskPipeline(FaceClassifier({str(export_dir)!r}), create_detector("yunet", upscale=2)).process(rgb)
draw.draw_faces(rgb, result.faces)
heavy = [m for m in ("tensorflow", "keras", "sklearn", "matplotlib") if m in sys.modules]
print(json.dumps({{"heavy": heavy, "faces": len(result.faces)}}))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["heavy"] == [] and res["faces"] >= 2


# ----------------------------------------------------------------------------- detectors

def test_yunet_finds_the_annotated_faces_of_the_sample():
    det = YuNetDetector()
    found = total = 0
    for xml in sorted((SAMPLE / "annotations").glob("*.xml")):
        rgb, truths = _photo(xml.name)
        big = [b for _, b in truths if min(b[2] - b[0], b[3] - b[1]) >= 24]
        boxes = det.detect(rgb)
        assert all(0 <= b[0] < b[2] <= rgb.shape[1] and 0 <= b[1] < b[3] <= rgb.shape[0] for b in boxes)
        assert all(0.6 <= b[4] <= 1.0 for b in boxes)
        assert [b[4] for b in boxes] == sorted((b[4] for b in boxes), reverse=True)
        found += _found(boxes, big, 0.3)
        total += len(big)
    assert total > 200
    assert found / total >= 0.8  # measured 0.909 (240/264) with opencv 4.14


def test_upscale_and_tiling_find_the_small_faces_of_crowd_photos():
    plain, up = YuNetDetector(), YuNetDetector(upscale=2)
    tiled = YuNetDetector(upscale=3, tile=256)
    n_plain = n_up = n_tiled = 0
    for name in CROWD:
        rgb, truths = _photo(name)
        small = [b for _, b in truths if min(b[2] - b[0], b[3] - b[1]) < 24]
        n_plain += _found(plain.detect(rgb), small, 0.3)
        n_up += _found(up.detect(rgb), small, 0.3)
        boxes = tiled.detect(rgb)
        n_tiled += _found(boxes, small, 0.3)
        # Tiles overlap, but a face is reported once.
        assert all(iou(a, b) <= 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert n_up >= n_plain + 6  # measured: plain 0, upscale 2: 10, upscale 3 + tiles: 14
    assert n_tiled >= n_plain + 6
    # Faces larger than a tile's overlap are kept by the whole-image pass.
    rgb, truths = _photo(FRONTAL)
    boxes = [b for _, b in truths]
    assert _found(YuNetDetector(upscale=2, tile=128).detect(rgb), boxes, 0.5) >= _found(plain.detect(rgb), boxes, 0.5)


def test_haar_fallback_and_detector_options():
    rgb, truths = _photo(FRONTAL)
    haar = create_detector("haar")
    assert isinstance(haar, HaarDetector)
    assert _found(haar.detect(rgb), [b for _, b in truths], 0.5) == 2
    yunet = create_detector("yunet", min_face=60)
    assert all(min(b[2] - b[0], b[3] - b[1]) >= 60 for b in yunet.detect(rgb))
    assert create_detector("YuNet", score_threshold=None).score_threshold == 0.6  # None: the default
    for kwargs, words in [({"name": "mtcnn"}, "unknown face detector"), ({"upscale": 0.5}, "upscale"),
                          ({"score_threshold": 2}, "score threshold"), ({"tile": 10}, "tile size")]:
        with pytest.raises(MaskclfError, match=words):
            create_detector(**{"name": "yunet", **kwargs})
    with pytest.raises(MaskclfError, match="RGB uint8"):
        yunet.detect(np.zeros((10, 10), np.uint8))
    assert yunet.detect(np.zeros((40, 60, 3), np.uint8)) == []


def test_yunet_model_errors(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(MaskclfError, match="not a YuNet ONNX model"):
        YuNetDetector(model_path=bad)
    with pytest.raises(MaskclfError, match="not found"):
        YuNetDetector(model_path=tmp_path / "missing.onnx")


def test_shipped_yunet_model_has_licence_and_source():
    models = REPO / "maskclf" / "edge" / "models"
    assert (models / "face_detection_yunet_2023mar.onnx").stat().st_size == 232589
    assert "Apache License" in (models / "LICENSE_libfacedetection.train.txt").read_text()
    assert "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4" in (models / "SOURCE.txt").read_text()


def test_blazeface_finds_the_large_faces_of_the_sample_and_misses_the_small():
    """MediaPipe's short-range detector (what phone apps run) sees the whole frame at 128x128: faces of 48 px and
    more are found, the street photos' small faces mostly not; tiles of the frame enlarged find more."""
    det = create_detector("blazeface")
    assert isinstance(det, BlazeFaceDetector) and det.score_threshold == 0.5 and det.nms_threshold == 0.3
    assert ssd_anchors(128, (8, 16, 16, 16), 2).shape == (896, 2)  # one row per model output
    large = small = n_large = n_small = tiled_small = 0
    tiled = BlazeFaceDetector(upscale=2, tile=256)
    for xml in sorted((SAMPLE / "annotations").glob("*.xml"))[:60]:
        rgb, truths = _photo(xml.name)
        boxes = det.detect(rgb)
        assert all(0 <= b[0] < b[2] <= rgb.shape[1] and 0 <= b[1] < b[3] <= rgb.shape[0] for b in boxes)
        assert all(0.5 <= b[4] <= 1.0 for b in boxes)
        assert all(iou(a, b) <= 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1:])
        big = [b for _, b in truths if min(b[2] - b[0], b[3] - b[1]) >= 48]
        little = [b for _, b in truths if min(b[2] - b[0], b[3] - b[1]) < 24]
        large, n_large = large + _found(boxes, big, 0.3), n_large + len(big)
        small, n_small = small + _found(boxes, little, 0.3), n_small + len(little)
        tiled_small += _found(tiled.detect(rgb), little, 0.3)
    assert n_large > 30 and large / n_large >= 0.7  # measured 0.83 on all 125 photos
    assert small / n_small < 0.15 and tiled_small >= small + 10


def test_blazeface_framing_and_model_errors(tmp_path):
    # VOC's annotators draw faces a little lower than BlazeFace's box, narrower and about as tall; the shipped
    # constant (fitted on VOC's training photos) holds on the sample's photos.
    r = fit_framing(BlazeFaceDetector(), SAMPLE)
    assert r["faces"] > 60
    np.testing.assert_allclose(r["framing"], BlazeFaceDetector.framing, atol=0.04)
    for bad, words in [(b"not a model", "not a TFLite model|corrupt"), (None, "not found")]:
        path = tmp_path / "bf.tflite"
        if bad is None:
            path = tmp_path / "missing.tflite"
        else:
            path.write_bytes(bad)
        with pytest.raises(MaskclfError, match=words):
            BlazeFaceDetector(model_path=path)
    # A valid .tflite that is not BlazeFace: the one-line error names it and says what was expected.
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    other = tmp_path / "other.tflite"
    other.write_bytes(E.convert(model, E.QuantizationSpec.for_float32()))
    with pytest.raises(MaskclfError, match="not a BlazeFace short-range model"):
        BlazeFaceDetector(model_path=other)
    models = REPO / "maskclf" / "edge" / "models"
    assert "Apache License" in (models / "LICENSE_mediapipe.txt").read_text()
    assert BlazeFaceDetector().model_path == models / "face_detection_short_range.tflite"


def test_weighted_nms_merges_a_face_s_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10, 0.9], [2, 0, 12, 10, 0.3], [50, 50, 60, 60, 0.7]], float)
    kept = weighted_nms(boxes, 0.3)
    assert kept[:, 4].tolist() == [0.9, 0.7]
    np.testing.assert_allclose(kept[0, :4], [0.5, 0, 10.5, 10])  # (0.9 * 0 + 0.3 * 2) / 1.2
    assert weighted_nms(np.zeros((0, 5)), 0.3).shape == (0, 5)


def test_nms_and_iou():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 0, 11, 10, 0.9], [50, 50, 60, 60, 0.7]], float)
    kept = nms(boxes, 0.3)
    assert kept[:, 4].tolist() == [0.9, 0.7]


# ----------------------------------------------------------------------------- classifier

def test_classifier_reads_the_export_and_crops_like_training(run_dir, export_dir):
    clf = FaceClassifier(export_dir)
    assert clf.precision == "int8" and clf.input_dtype == "uint8"  # the smallest model by default
    assert clf.class_names == VOC_CLASSES and clf.size == 32 and clf.crop_margin == 0.15
    assert FaceClassifier(export_dir, precision="float32").input_dtype == "float32"
    # Device crops are the training crops, pixel for pixel (same square box, margin and bilinear resize).
    rows = [r for r in read_split_csv(run_dir / "split.csv") if Path(r["source"]).name == FRONTAL]
    ann = parse_voc(SAMPLE / "annotations" / (Path(FRONTAL).stem + ".xml"))
    img = images.load_rgb(SAMPLE / "images" / FRONTAL)
    assert rows
    for r in rows:
        obj = ann.objects[int(Path(r["path"]).stem)]
        box = clip_box(obj, img.width, img.height)
        crops, kept = clf.crops(img, [box])
        assert kept == [0]
        np.testing.assert_array_equal(crops[0], images.load_array(r["path"], 32))
        # From a NumPy frame, RGB or OpenCV's BGR (sliced, not converted whole): the same pixels.
        rgb = np.asarray(img)
        np.testing.assert_array_equal(clf.crops(rgb, [box])[0][0], crops[0])
        np.testing.assert_array_equal(clf.crops(np.ascontiguousarray(rgb[:, :, ::-1]), [box], bgr=True)[0][0],
                                      crops[0])


def test_bgr_frames_give_the_same_faces_without_converting_the_frame(export_dir, monkeypatch):
    """The video path hands OpenCV's BGR frames straight to the detector and cuts the crops from them."""
    rgb, _ = _photo("maksssksksss111.jpg")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    det = create_detector("yunet")
    assert det.detect_bgr(bgr) == det.detect(rgb)
    pipe = FaceMaskPipeline(FaceClassifier(export_dir), det)
    want = [f.to_json() for f in pipe.process(rgb).faces]
    assert want
    converted = []
    real = det.detect
    monkeypatch.setattr(det, "detect", lambda img: converted.append(1) or real(img))
    assert [f.to_json() for f in pipe.process(bgr, bgr=True).faces] == want
    assert not converted  # detect_bgr was used
    # A detector without detect_bgr (any object with detect(rgb)) gets the frame converted once.
    class RgbOnly:
        name = "rgb-only"
        framing = det.framing  # YuNet's boxes: reframed as the pipeline reframes YuNet's

        def detect(self, img):
            return det.detect(img)

    pipe2 = FaceMaskPipeline(pipe.classifier, RgbOnly())
    assert [f.to_json() for f in pipe2.process(bgr, bgr=True).faces] == want and converted
    # Drawing in place changes the frame itself and returns it.
    res = pipe.process(bgr, bgr=True)
    assert pipe.annotate(bgr, res, bgr=True, copy=False) is bgr


def test_reframe_moves_a_box_onto_where_annotators_draw_it():
    assert reframe((10, 20, 50, 100, 0.9), None) == (10, 20, 50, 100, 0.9)
    x1, y1, x2, y2, score = reframe((10, 20, 50, 100, 0.9), (0.1, 0.25, 1.5, 0.5))  # w 40, h 80
    assert (x1 + x2) / 2 == pytest.approx(30 + 4) and (y1 + y2) / 2 == pytest.approx(60 + 20)
    assert (x2 - x1, y2 - y1, score) == (pytest.approx(60), pytest.approx(40), 0.9)
    # The shipped framings: VOC's hand-drawn boxes sit lower than YuNet's and Haar's and are shorter.
    for det in (YuNetDetector, HaarDetector):
        dx, dy, sw, sh = det.framing
        assert abs(dx) < 0.05 and 0.08 < dy < 0.2 and 0.8 < sh < 0.95


def test_shipped_yunet_framing_is_what_the_sample_photos_measure():
    """fit_framing on the sample's VOC photos (not the set the constants were fitted on, but its photographers)
    comes out where the shipped constant is: the constant describes YuNet against VOC's annotators."""
    r = fit_framing(YuNetDetector(), SAMPLE)
    assert r["photos"] == 125 and r["faces"] > 250 and set(r["by_class"]) == set(VOC_CLASSES)
    np.testing.assert_allclose(r["framing"], YuNetDetector.framing, atol=0.04)
    with pytest.raises(MaskclfError, match="not a Pascal VOC folder"):
        fit_framing(YuNetDetector(), SAMPLE / "images")


def test_pipeline_moves_the_detectors_boxes_where_annotators_draw_faces(export_dir):
    """``maskclf detect`` reports, crops and draws the box an annotator would draw: YuNet's, reframed and clipped."""
    rgb, _ = _photo(FRONTAL)
    h, w = rgb.shape[:2]
    det = create_detector("yunet")
    boxes = det.detect(rgb)
    assert boxes
    clf = FaceClassifier(export_dir)
    pipe, raw = FaceMaskPipeline(clf, det), FaceMaskPipeline(clf, det, framing=False)
    assert pipe.framing == YuNetDetector.framing and raw.framing is None
    assert pipe.describe()["framing"] == list(YuNetDetector.framing) and raw.describe()["framing"] is None
    moved = [reframe(b, det.framing, w, h) for b in boxes]
    assert pipe.detect(rgb)[0] == moved and raw.detect(rgb)[0] == boxes
    a, b = pipe.process(rgb), raw.process(rgb)
    assert [f.box for f in a.faces] == [tuple(float(v) for v in x[:4]) for x in moved]
    assert [f.box for f in b.faces] == [tuple(float(v) for v in x[:4]) for x in boxes]
    assert [f.detector_score for f in a.faces] == [f.detector_score for f in b.faces]
    np.testing.assert_allclose([list(f.probs.values()) for f in a.faces], clf.predict(clf.crops(rgb, moved)[0]),
                               atol=1e-6)
    # A box at the bottom edge is clipped to the frame, not pushed out of it.
    assert reframe((10, h - 40, 50, h, 0.9), det.framing, w, h)[3] == h

    class NoFraming:  # any detect(rgb) object: its boxes are used as they are
        name = "plain"

        def detect(self, img):
            return det.detect(img)

    assert FaceMaskPipeline(clf, NoFraming()).framing is None


def test_classifier_batches_equal_one_by_one(export_dir):
    rgb, truths = _photo("maksssksksss111.jpg")
    boxes = [(*b, 0.9) for _, b in truths] + [(-50, -50, -10, -10, 0.8)]  # the last lies outside: skipped
    for precision in ("int8", "float32"):
        clf = FaceClassifier(export_dir, precision=precision)
        calls = []
        invoke = clf.interpreter.invoke
        clf.interpreter.invoke = lambda: (calls.append(1), invoke())[1]
        faces = clf.classify(rgb, boxes)
        assert len(calls) == 1 and len(faces) == len(truths)  # one interpreter call for all faces
        clf.interpreter.invoke = invoke
        single = [clf.classify(rgb, [b])[0] for b in boxes[:-1]]
        for a, b in zip(faces, single):
            assert a.label == b.label and a.box == b.box and a.detector_score == 0.9
            np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)
            assert a.score == pytest.approx(max(a.probs.values()), abs=1e-6)
            assert sum(a.probs.values()) == pytest.approx(1.0, abs=0.02)
    assert clf.classify(rgb, []) == []


def test_classifier_uses_metadata_packed_in_a_lone_tflite(export_dir, tmp_path):
    lone = tmp_path / "m.tflite"
    shutil.copy(export_dir / "model_int8.tflite", lone)  # no metadata.json beside it
    clf = FaceClassifier(lone)
    assert clf.class_names == VOC_CLASSES and clf.crop_margin == 0.15 and clf.precision == "int8"


def test_classifier_errors(export_dir, tmp_path):
    with pytest.raises(MaskclfError, match="model not found"):
        FaceClassifier(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskclfError, match="no .tflite model"):
        FaceClassifier(tmp_path / "empty")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(MaskclfError, match="not a TFLite model"):
        FaceClassifier(bad)
    with pytest.raises(MaskclfError, match="no float16 model"):
        FaceClassifier(export_dir, precision="float16")
    # A 16 px model without packed metadata next to the 32 px export's metadata.json.
    from maskclf.models.registry import create_model

    other = tmp_path / "other"
    other.mkdir()
    raw = E.convert(create_model("small_cnn", 3, 16, filters=[4], dense_units=[]), E.QuantizationSpec.for_float32())
    (other / "model_float32.tflite").write_bytes(raw)
    shutil.copy(export_dir / "metadata.json", other / "metadata.json")
    with pytest.raises(MaskclfError, match="does not fit metadata.json"):
        FaceClassifier(other)


# ----------------------------------------------------------------------------- drawing

def test_drawing_colours_by_mask_class():
    img = np.full((200, 300, 3), 128, np.uint8)
    faces = [Face((20, 80, 80, 140), "with_mask", 0.9), Face((110, 80, 170, 140), "without_mask", 0.8),
             Face((200, 80, 260, 140), "mask_weared_incorrect", 0.7)]
    out = draw.draw_faces(img, faces, VOC_CLASSES)
    assert np.array_equal(img, np.full((200, 300, 3), 128, np.uint8))  # drawn on a copy
    left_edge = [out[110, 20], out[110, 110], out[110, 200]]  # a pixel on each box's left side
    assert left_edge[0].tolist() == list(draw.GREEN)
    assert left_edge[1].tolist() == list(draw.RED)
    assert left_edge[2].tolist() == list(draw.ORANGE)
    assert (out[60:80, 20:80] != 128).any()  # a tag above each box
    bgr = draw.draw_faces(img, faces, VOC_CLASSES, bgr=True)
    assert bgr[110, 20].tolist() == list(draw.GREEN)[::-1]
    # Other spellings of the mask classes keep the colours; other label sets get distinct ones.
    assert draw.label_colors(["WithMask", "WithoutMask"]) == {"WithMask": draw.GREEN, "WithoutMask": draw.RED}
    other = draw.label_colors([f"class{i}" for i in range(14)])
    assert len(set(other.values())) == 14 and not {draw.GREEN, draw.RED, draw.ORANGE} & set(other.values())
    fps = draw.draw_fps(img.copy(), 12.34)
    assert (fps[:10, :40] == 0).any()


def test_tags_in_a_crowd_never_cover_another_face_and_a_legend_names_the_untagged_colours(monkeypatch):
    drawn = []
    real = draw._draw_tag
    monkeypatch.setattr(draw, "_draw_tag", lambda img, text, x, y, *a: drawn.append((text, x, y)) or
                        real(img, text, x, y, *a))
    img = np.full((270, 400, 3), 128, np.uint8)
    kinds = VOC_CLASSES
    faces = [Face((15 + 45 * c, 20 + 45 * r, 37 + 45 * c, 42 + 45 * r), kinds[(r + c) % 3], 0.9 - 0.01 * (r * 9 + c))
             for r in range(5) for c in range(9)]  # 45 faces of 22 px, 23 px apart: no room for every tag
    draw.draw_faces(img, faces, VOC_CLASSES)
    tagged = [(t, x, y) for t, x, y in drawn if any(ch.isdigit() for ch in t)]
    legend = [t for t, _, _ in drawn if not any(ch.isdigit() for ch in t)]
    assert 0 < len(tagged) < len(faces)
    assert sorted(legend) == ["incorrect", "mask", "no mask"]  # short names, each class once
    for text, x, y in tagged:
        w, h = draw._tag_size(text, *draw._style(img.shape)[1:])
        own = [f for f in faces if draw.tag_name(f.label) == text.rsplit(" ", 1)[0]
               and f"{f.score:.2f}" == text.rsplit(" ", 1)[1]]
        others = [f.box for f in faces if f not in own[:1]]
        assert not any(draw.intersection((x, y, x + w, y + h), b) for b in others), text
    # A lone face keeps its tag and no legend is drawn.
    drawn.clear()
    draw.draw_faces(img, faces[:1], VOC_CLASSES)
    assert [t for t, _, _ in drawn] == [f"{draw.tag_name(faces[0].label)} 0.90"]


# ----------------------------------------------------------------------------- the detect command

def test_detect_on_a_folder_writes_annotated_images_and_json(export_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ["maksssksksss0.jpg", FRONTAL]:
        shutil.copy(SAMPLE / "images" / name, photos / name)
    shutil.copy(SAMPLE / "images" / "maksssksksss111.jpg", photos / "sub" / "crowd.jpg")
    (photos / "broken.jpg").write_text("not an image")
    out, js = tmp_path / "out", tmp_path / "faces.json"
    rc = main(["detect", str(photos), "--model", str(export_dir), "--out", str(out), "--json", str(js),
               "--upscale", "2", "--quiet"])
    assert rc == 1  # one unreadable image: reported, the others done
    assert "4 images" in capsys.readouterr().out
    for rel in ["maksssksksss0.jpg", FRONTAL, "sub/crowd.jpg"]:
        a, b = images.load_rgb(out / rel), images.load_rgb(photos / rel)
        assert a.size == b.size and np.abs(np.asarray(a, int) - np.asarray(b, int)).max() > 100  # boxes drawn
    doc = json.loads(js.read_text())
    assert doc["model"]["class_names"] == VOC_CLASSES and doc["detector"]["upscale"] == 2.0
    assert doc["framing"] == list(YuNetDetector.framing)  # --no-reframe: None (test_evaluate_detection...)
    entries = {Path(e["path"]).name: e for e in doc["inputs"]}
    assert set(entries) == {"maksssksksss0.jpg", FRONTAL, "crowd.jpg", "broken.jpg"}
    assert "not an image" in entries["broken.jpg"]["error"] or "PIL" in entries["broken.jpg"]["error"]
    assert len(entries[FRONTAL]["faces"]) >= 2 and len(entries["crowd.jpg"]["faces"]) >= 6
    for e in (entries[n] for n in ("maksssksksss0.jpg", FRONTAL, "crowd.jpg")):
        assert set(e["timings_ms"]) >= {"detect", "classify", "total"}
        for f in e["faces"]:
            x1, y1, x2, y2 = f["box"]
            assert 0 <= x1 < x2 <= e["width"] and 0 <= y1 < y2 <= e["height"]
            assert f["label"] in VOC_CLASSES and 0 <= f["score"] <= 1
    assert doc["summary"]["errors"] == 1
    assert doc["summary"]["faces"] == sum(len(e.get("faces", [])) for e in entries.values())
    assert not list(tmp_path.glob("**/.*.json*")) and not list(out.glob("**/.*"))  # no temporary files left

    single = tmp_path / "one.png"
    assert main(["detect", str(photos / FRONTAL), "--model", str(export_dir / "model_float32.tflite"),
                 "--out", str(single), "--detector", "haar", "--quiet"]) == 0
    assert images.load_rgb(single).size == images.load_rgb(photos / FRONTAL).size
    # MediaPipe's detector (what a phone app runs): the photo's large faces, its own framing in the JSON.
    assert main(["detect", str(photos / FRONTAL), "--model", str(export_dir), "--no-save", "--json", str(js),
                 "--detector", "blazeface", "--quiet"]) == 0
    doc = json.loads(js.read_text())
    assert doc["detector"]["name"] == "blazeface" and doc["framing"] == list(BlazeFaceDetector.framing)
    assert len(doc["inputs"][0]["faces"]) >= 2


def _make_video(path, frames=8):
    return make_video(path, frames, FRONTAL, white_strip=True)


def test_detect_on_a_video_writes_an_annotated_video_with_fps(export_dir, tmp_path, capsys):
    video = _make_video(tmp_path / "clip.mp4")
    out, js = tmp_path / "annotated.mp4", tmp_path / "video.json"
    assert main(["detect", str(video), "--model", str(export_dir), "--out", str(out), "--json", str(js),
                 "--max-frames", "5", "--quiet"]) == 0
    assert "5 frames" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 5 and frames[0].shape == (288, 320, 3)
    assert frames[1][0:2, 0:80].mean() < 60 and frames[1][0:2, 200:].mean() > 200  # the black FPS tag, top left
    doc = json.loads(js.read_text())
    assert [e["frame"] for e in doc["inputs"]] == list(range(5))
    assert all(e["path"] == str(video) and len(e["faces"]) >= 1 for e in doc["inputs"])
    assert doc["videos"][0]["output"] == str(out) and doc["videos"][0]["num_frames"] == 5
    assert doc["videos"][0]["fps"] > 0


@pytest.mark.parametrize("argv, words", [
    (["detect", "IMG", "--model", "/no/such/export"], "model not found"),
    (["detect", "/no/such.jpg", "--model", "EXPORT"], "not found"),
    (["detect", "BADIMG", "--model", "EXPORT"], "not an image file"),
    (["detect", "BADVIDEO", "--model", "EXPORT"], "cannot open the video"),
    (["detect", "--camera", "57", "--model", "EXPORT", "--max-frames", "1"], "camera 57 cannot be opened"),
    (["detect", "--model", "EXPORT"], "either an INPUT"),
    (["evaluate-detection", "--model", "EXPORT", "--data", "OTHERVOC"], "none of the"),
    (["evaluate-detection", "--model", "EXPORT", "--data", str(SAMPLE), "--run", "/no/run"], "no split.csv"),
])
def test_detect_errors_are_one_line(export_dir, tmp_path, capsys, argv, words):
    (tmp_path / "bad.jpg").write_text("no pixels here")
    (tmp_path / "bad.mp4").write_text("no frames here")
    other = tmp_path / "voc"
    (other / "annotations").mkdir(parents=True)
    (other / "images").mkdir()
    shutil.copy(SAMPLE / "annotations" / "maksssksksss0.xml", other / "annotations")
    shutil.copy(SAMPLE / "images" / "maksssksksss0.jpg", other / "images")  # a training photo of the run
    subs = {"IMG": str(SAMPLE / "images" / FRONTAL), "EXPORT": str(export_dir), "BADIMG": str(tmp_path / "bad.jpg"),
            "BADVIDEO": str(tmp_path / "bad.mp4"), "OTHERVOC": str(other)}
    argv = [subs.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("maskclf: error:")]
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- photo-level evaluation

def test_voc_ap():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    # Two faces; ranked: hit, miss, hit -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = .5 + .5 * 2/3
    truths = {"p": [GroundTruth((0, 0, 10, 10), "a", False), GroundTruth((20, 0, 30, 10), "a", False),
                    GroundTruth((40, 0, 50, 10), "a", True)]}
    dets = [("p", 0.9, (0, 0, 10, 10)), ("p", 0.8, (60, 60, 70, 70)), ("p", 0.7, (20, 0, 30, 11)),
            ("p", 0.6, (40, 0, 50, 10)), ("p", 0.5, (0, 0, 10, 10))]  # on an ignored face; a duplicate
    r = average_precision(dets, truths, "a")
    assert r["num_gt"] == 2 and r["tp"] == 2 and r["fp"] == 2 and r["num_detections"] == 4
    assert r["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([], truths, "b")["ap"] is None


def test_evaluate_detection_on_the_sample_test_photos(run_dir, export_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate-detection", "--model", str(export_dir), "--data", str(SAMPLE), "--out", str(out),
                 "--upscale", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "| with_mask |" in printed
    r = json.loads((out / "detection_eval_test.json").read_text())
    assert (out / "detection_eval_test.md").read_text().startswith("# Photo-level evaluation")
    assert r["framing"] == list(YuNetDetector.framing) and "boxes reframed" in printed
    test_photos = {Path(x["source"]).name for x in read_split_csv(run_dir / "split.csv") if x["split"] == "test"}
    train_photos = {Path(x["source"]).name for x in read_split_csv(run_dir / "split.csv") if x["split"] == "train"}
    assert r["num_photos"] == len(test_photos) > 5 and not test_photos & train_photos
    assert set(r["ap"]) == set(VOC_CLASSES)
    assert all(v is None or 0.0 <= v <= 1.0 for v in r["ap"].values())
    aps = [v for v in r["ap"].values() if v is not None]
    assert r["map"] == pytest.approx(sum(aps) / len(aps))
    assert 0.6 <= r["detector_recall_overall"] <= 1.0  # measured 0.83 with upscale 2
    assert set(r["detector_recall"]) <= set(VOC_CLASSES)
    table = r["confusion"]["table"]
    assert r["confusion"]["columns"] == VOC_CLASSES + ["missed"]
    assert sum(map(sum, table.values())) == r["num_gt_faces"]  # every annotated face: matched or missed
    for c, row in table.items():
        assert 1 - row[-1] / sum(row) == pytest.approx(r["detector_recall"][c], abs=0.15)
    # --no-reframe keeps YuNet's boxes as they are; the report says so.
    raw = tmp_path / "raw"
    assert main(["evaluate-detection", "--model", str(export_dir), "--data", str(SAMPLE), "--out", str(raw),
                 "--upscale", "2", "--max-photos", "3", "--no-reframe", "--quiet"]) == 0
    r2 = json.loads((raw / "detection_eval_test.json").read_text())
    assert r2["framing"] is None and "the detector's boxes." in (raw / "detection_eval_test.md").read_text()
