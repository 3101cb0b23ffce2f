from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")

from maskclf.files import MaskclfError  # noqa: E402
from maskclf.data.images import load_rgb  # noqa: E402
from maskclf.research.paintmask import LandmarkFinder, mask_polygon, paint_folder, paint_mask  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "images"


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    """A 170 px face of the shipped sample (mask worn below the nose), cropped to its VOC box."""
    src = next(SAMPLE.glob("maksssksksss272.*"))
    path = tmp_path_factory.mktemp("face") / "face.png"
    load_rgb(src).crop((48, 107, 218, 304)).save(path)
    return path


def test_landmarks_are_found_in_face_order(face):
    box, marks = LandmarkFinder()(np.asarray(load_rgb(face)))
    w, h = load_rgb(face).size
    assert marks.shape == (5, 2) and (marks >= -2).all() and (marks[:, 0] <= w + 2).all() and (marks[:, 1] <= h + 2).all()
    eyes_y, nose_y, mouth_y = marks[:2, 1].mean(), marks[2, 1], marks[3:, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert LandmarkFinder()(np.full((120, 120, 3), 128, np.uint8)) is None  # no face: None, not an error


def test_mask_styles_sit_lower_in_order_and_paint_only_the_lower_face():
    # an upright face: eyes at y 40, nose tip 60, mouth corners 75 (eye distance 40 px)
    marks = np.array([[40, 40], [80, 40], [60, 60], [47, 75], [73, 75]], np.float32)
    tops = {s: mask_polygon(marks, s, np.random.default_rng(0))[:, 1].min() for s in ("correct", "nose_out", "chin")}
    assert tops["correct"] < 60 < tops["nose_out"] < 75 < tops["chin"]  # over / under the nose tip / under the lips
    img = Image.fromarray(np.full((128, 120, 3), 200, np.uint8))
    out = np.asarray(paint_mask(img, marks, "correct", np.random.default_rng(1)), np.float32)
    diff = np.abs(out - 200).sum(-1)
    assert diff[:30].max() < 1 and diff[65:90, 45:75].mean() > 10  # forehead untouched, mouth covered
    with pytest.raises(MaskclfError, match="mask style"):
        mask_polygon(marks, "sideways", np.random.default_rng(0))


def test_paint_folder_writes_each_style_and_counts_what_it_skips(face, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 100), (90, 90, 90)).save(blank)
    styles = {"correct": "with_mask", "nose_out": "mask_weared_incorrect"}
    report = paint_folder([face, blank], tmp_path / "out", styles, seed=0, sheet=False)
    assert report["no_face"] == 1 and report["written"] == {"with_mask": 1, "mask_weared_incorrect": 1}
    files = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert files == ["face-correct.png", "face-nose_out.png"]  # no temporary file left behind
    painted = load_rgb(tmp_path / "out" / "with_mask" / "face-correct.png")
    assert painted.size == load_rgb(face).size


def test_paint_command_writes_classes_sheet_and_report(face, tmp_path, capsys):
    import json

    from maskclf.cli import main

    faces = tmp_path / "faces"
    for sub in ("a", "b"):  # the same file name in two folders: both kept
        (faces / sub).mkdir(parents=True)
        (faces / sub / "face.png").write_bytes(face.read_bytes())
    (faces / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "painted"
    assert main(["paint", str(faces), "--out", str(out), "--styles", "correct=with_mask,chin=mask_weared_incorrect"]) == 0
    said = capsys.readouterr().out
    assert "painted with_mask 2, mask_weared_incorrect 2 from 3 photos" in said and "broken.jpg" in said
    assert sorted(p.name for p in (out / "mask_weared_incorrect").iterdir()) == ["face-chin.png", "face_-chin.png"]
    assert (out / "contact_sheet.png").is_file()
    assert len(json.loads((out / "paint.json").read_text())["unreadable"]) == 1
    assert main(["paint", str(faces), "--out", str(out), "--styles", "sideways=x"]) == 2
    assert "STYLE=CLASS" in capsys.readouterr().err
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.new("RGB", (90, 90), (50, 50, 50)).save(blank / "wall.png")
    assert main(["paint", str(blank), "--out", str(tmp_path / "none")]) == 2
    assert "no face found" in capsys.readouterr().err


def test_paint_training_faces_paints_only_training_bare_faces(face, tmp_path, monkeypatch):
    from maskclf.data.datasets import LabeledImages
    from maskclf.research.paintmask import paint_training_faces

    monkeypatch.setenv("MASKCLF_CACHE", str(tmp_path / "cache"))
    small = tmp_path / "small.png"  # a small face: found on an enlarged copy, painted back at 40 px
    load_rgb(face).resize((40, 46), Image.LANCZOS).save(small)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (30, 30), (90, 90, 90)).save(blank)
    names = ["mask_weared_incorrect", "with_mask", "without_mask"]
    ds = LabeledImages(root="r", layout="voc", class_names=names, paths=[str(face), str(small), str(blank), str(face)],
                       labels=[2, 2, 2, 2], groups=["a", "b", "c", "d"], given_splits=[""] * 4,
                       sources=["a.jpg", "b.jpg", "c.jpg", "d.jpg"], sizes=[(170, 197), (40, 46), (30, 30), (170, 197)])
    splits = ["train", "train", "train", "validation"]
    out, new_splits = paint_training_faces(ds, splits, share=1.0)
    assert len(ds.paths) == 4  # the input is left as it was
    added = list(range(4, len(out.paths)))
    assert len(added) == 2 and [new_splits[i] for i in added] == ["train", "train"]  # the blank had no face
    assert [out.labels[i] for i in added] == [0, 0] and [out.groups[i] for i in added] == ["a", "b"]
    assert load_rgb(out.paths[5]).size == (40, 46)  # shrunk back to the crop's own size
    assert not np.array_equal(np.asarray(load_rgb(out.paths[4])), np.asarray(load_rgb(face)))
    assert any("1 without landmarks" in k and v == 2 for k, v in out.notes.items())
    again, _ = paint_training_faces(ds, splits, share=1.0)  # cached: the same files
    assert again.paths == out.paths
    half, _ = paint_training_faces(ds, splits, share=0.34)
    assert len(half.paths) - 4 <= 1
    with pytest.raises(MaskclfError, match="data.paint_train needs classes"):
        paint_training_faces(LabeledImages(root="r", layout="folders", class_names=["a", "b"]), [], share=0.5)


def test_training_additions_paint_then_add_extra_images(face, tmp_path, monkeypatch):
    from maskclf.config import DataConfig
    from maskclf.data.datasets import LabeledImages
    from maskclf.training.train import add_training_images

    monkeypatch.setenv("MASKCLF_CACHE", str(tmp_path / "cache"))
    extra = tmp_path / "extra" / "with_mask"
    extra.mkdir(parents=True)
    Image.new("RGB", (30, 30), (10, 120, 200)).save(extra / "x.png")
    names = ["mask_weared_incorrect", "with_mask", "without_mask"]
    ds = LabeledImages(root="r", layout="voc", class_names=names, paths=[str(face)], labels=[2], groups=["a"],
                       given_splits=[""], sources=["a.jpg"], sizes=[(170, 197)])
    cfg = DataConfig(paint_train=1.0, extra_train=str(tmp_path / "extra"))
    out, splits = add_training_images(ds, ["train"], cfg)
    assert [names[y] for y in out.labels] == ["without_mask", "mask_weared_incorrect", "with_mask"]
    assert splits == ["train"] * 3
    assert add_training_images(ds, ["train"], DataConfig()) == (ds, ["train"])  # nothing asked: unchanged
