import csv
import os
import shutil
import stat
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import make_class_folders
from maskclf.data import datasets as D
from maskclf.data import sources
from maskclf.data import splitting as S
from maskclf.config import DataConfig
from maskclf.files import MaskclfError


def load(path, **kw):
    return D.load_dataset(DataConfig(path=str(path), **kw), progress=False)


def test_detects_each_layout(tmp_path, shapes_dir, sample_dir):
    assert D.detect_layout(shapes_dir) == "folders"
    assert D.detect_layout(sample_dir) == "voc"
    make_class_folders(tmp_path / "s" / "Train", ("WithMask", "WithoutMask"), 4)
    make_class_folders(tmp_path / "s" / "Test", ("WithMask", "WithoutMask"), 2)
    assert D.detect_layout(tmp_path / "s") == "splits"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskclfError, match="no dataset layout found.*Pascal VOC"):
        D.detect_layout(tmp_path / "empty")
    with pytest.raises(MaskclfError, match="not found"):
        D.detect_layout(tmp_path / "nope")


def test_class_folders_report_and_skip_bad_files(tmp_path):
    root = make_class_folders(tmp_path / "d", ("cat_a", "cat_b"), 6)
    (root / "cat_a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "cat_a" / "notes.txt").write_text("hello")
    (root / "cat_b" / "zero.png").write_bytes(b"")
    (root / "empty_class").mkdir()
    (root / "README.md").write_text("stray")
    ds = load(root)
    assert ds.class_names == ["cat_a", "cat_b"]
    assert ds.counts() == {"cat_a": 6, "cat_b": 6}
    kinds = {p.kind for p in ds.problems}
    assert {"unreadable image", "not an image", "empty class", "stray file"} <= kinds
    msgs = " ".join(p.message for p in ds.problems)
    assert "broken.jpg" in msgs and "zero.png" in msgs and "empty_class" in msgs
    report = sources.summarize(ds)
    assert "problems: 5" in report and "unreadable image: 2" in report


def test_one_class_is_rejected(tmp_path):
    root = make_class_folders(tmp_path / "d", ("only",), 3)
    with pytest.raises(MaskclfError, match="at least 2 classes"):
        load(root)


def test_odd_modes_and_exif_are_read(tmp_path):
    root = make_class_folders(tmp_path / "d", ("a", "b"), 3)
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(root / "a" / "rgba.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(root / "b" / "sixteen.png")
    ds = load(root)
    assert ds.counts() == {"a": 5, "b": 4}
    assert not ds.problems


def test_split_folders_are_honoured_any_case(tmp_path):
    root = tmp_path / "fm12k"
    make_class_folders(root / "Train", ("WithMask", "WithoutMask"), 10, seed=1)
    make_class_folders(root / "Validation", ("WithMask", "WithoutMask"), 3, seed=2)
    make_class_folders(root / "Test", ("WithMask", "WithoutMask"), 4, seed=3)
    cfg = DataConfig(path=str(root))
    ds = D.load_dataset(cfg, progress=False)
    splits = S.assign_splits(ds, cfg)
    by = defaultdict(int)
    for p, s in zip(ds.paths, splits):
        assert os.sep + {"train": "Train", "validation": "Validation", "test": "Test"}[s] + os.sep in p
        by[s] += 1
    assert dict(by) == {"train": 20, "validation": 6, "test": 8}


def test_missing_validation_split_is_carved_from_train_by_group(tmp_path):
    root = tmp_path / "s"
    make_class_folders(root / "train", ("x", "y"), 20, seed=1)
    make_class_folders(root / "test", ("x", "y"), 4, seed=2)
    cfg = DataConfig(path=str(root))
    ds = D.load_dataset(cfg, progress=False)
    splits = S.assign_splits(ds, cfg)
    assert splits.count("test") == 8
    assert 2 <= splits.count("validation") <= 12
    assert all(s == "test" for p, s in zip(ds.paths, splits) if os.sep + "test" + os.sep in p)


def test_class_only_in_test_is_skipped_and_reported(tmp_path):
    root = tmp_path / "s"
    make_class_folders(root / "train", ("x", "y"), 5)
    make_class_folders(root / "test", ("x", "y", "z"), 2)
    ds = load(root)
    assert ds.class_names == ["x", "y"]
    assert any(p.kind == "class missing from train" for p in ds.problems)


def test_duplicates_share_a_group_and_never_straddle_the_split(tmp_path):
    root = make_class_folders(tmp_path / "d", ("a", "b"), 30)
    src = root / "a" / "a_000.png"
    shutil.copy(src, root / "a" / "exact_copy.png")
    ImageEnhance.Brightness(Image.open(src)).enhance(1.05).save(root / "a" / "near_copy.jpg", quality=90)
    ds = load(root)
    g = dict(zip((os.path.basename(p) for p in ds.paths), ds.groups))
    assert g["exact_copy.png"] == g["a_000.png"] == g["near_copy.jpg"]
    assert len(set(ds.groups)) == len(ds) - 2  # nothing else merged
    for seed in range(5):
        splits = S.grouped_split(ds.labels, ds.groups, 0.2, 0.2, seed)
        sides = defaultdict(set)
        for grp, s in zip(ds.groups, splits):
            sides[grp].add(s)
        assert all(len(v) == 1 for v in sides.values())
        assert {"train", "validation", "test"} == set(splits)


def test_leaked_duplicates_are_dropped_from_given_test_split(tmp_path):
    root = tmp_path / "s"
    make_class_folders(root / "train", ("x", "y"), 6, seed=1)
    make_class_folders(root / "test", ("x", "y"), 3, seed=2)
    shutil.copy(root / "train" / "x" / "x_000.png", root / "test" / "x" / "leak.png")
    cfg = DataConfig(path=str(root))
    ds = D.load_dataset(cfg, progress=False)
    splits = S.assign_splits(ds, cfg)
    leak = [s for p, s in zip(ds.paths, splits) if p.endswith("leak.png")]
    assert leak == ["drop"]
    assert any(p.kind == "duplicate across splits" for p in ds.problems)


def test_voc_sample_is_cropped_grouped_by_photo_and_split(tmp_path, sample_dir):
    cfg = DataConfig(path=str(sample_dir))
    ds = D.load_dataset(cfg, progress=False)
    assert ds.layout == "voc"
    assert ds.class_names == ["mask_weared_incorrect", "with_mask", "without_mask"]
    assert ds.counts() == {"mask_weared_incorrect": 53, "with_mask": 335, "without_mask": 92}
    cache = os.environ["MASKCLF_CACHE"]
    assert all(p.startswith(cache) for p in ds.paths)  # crops never go into the data folder
    splits = S.assign_splits(ds, cfg)
    S.write_split_csv(tmp_path / "split.csv", ds, splits)
    rows = list(csv.DictReader(open(tmp_path / "split.csv")))
    assert list(rows[0])[:4] == ["path", "label", "group", "split"]
    sides = defaultdict(set)
    for r in rows:
        sides[r["group"]].add(r["split"])
    assert all(len(v) == 1 for v in sides.values())
    per = defaultdict(set)
    for r in rows:
        per[r["label"]].add(r["split"])
    assert all(v == {"train", "validation", "test"} for v in per.values())  # stratified: every class everywhere


def test_voc_crop_cache_is_reused_and_rebuilt_when_settings_change(tmp_path, sample_dir, monkeypatch):
    root = tmp_path / "voc"
    shutil.copytree(sample_dir, root)
    first = load(root, crop_margin=0.1)
    calls = []
    real = D.imgs.crop_face
    monkeypatch.setattr(D.imgs, "crop_face", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load(root, crop_margin=0.1)
    assert again.paths == first.paths and not calls  # reused, nothing cropped
    other = load(root, crop_margin=0.3)
    assert calls and set(other.paths).isdisjoint(first.paths)
    a = Image.open(first.paths[0]).size
    b = Image.open(other.paths[0]).size
    assert b[0] > a[0]  # a bigger margin gives a bigger crop
    # Change one annotation: only that photo is re-cropped.
    calls.clear()
    xml = sorted((root / "annotations").iterdir())[0]
    xml.write_text(xml.read_text().replace("<name>with_mask</name>", "<name>without_mask</name>", 1))
    load(root, crop_margin=0.1)
    assert 0 < len(calls) <= 20


def test_voc_from_read_only_folder_and_class_mapping(tmp_path, sample_dir):
    root = tmp_path / "ro"
    shutil.copytree(sample_dir, root)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR)
    try:
        ds = load(root, class_map={"mask_weared_incorrect": None})
        assert ds.class_names == ["with_mask", "without_mask"]
        assert any(p.kind == "class dropped" for p in ds.problems)
        two = load(root, class_map={"mask_weared_incorrect": "with_mask"})
        assert two.counts() == {"with_mask": 388, "without_mask": 92}
    finally:
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, stat.S_IRWXU)


def test_voc_bad_annotations_and_boxes_are_reported(tmp_path, sample_dir):
    root = tmp_path / "voc"
    shutil.copytree(sample_dir, root)
    anns = sorted((root / "annotations").iterdir())
    anns[0].write_text("<annotation><object>")  # malformed
    anns[1].write_text(anns[1].read_text().replace("<xmax>", "<xmax>-", 1))  # inverted box
    text = anns[2].read_text()
    anns[2].write_text(text.replace("</annotation>",
                                    "<object><name>with_mask</name><bndbox><xmin>5000</xmin><ymin>5000</ymin>"
                                    "<xmax>5100</xmax><ymax>5100</ymax></bndbox></object></annotation>"))
    img_of_3 = root / "images" / (anns[3].stem + ".jpg")
    img_of_3.unlink()
    (root / "annotations" / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
        "<annotation><filename>&b;</filename></annotation>")
    ds = load(root)
    kinds = {p.kind for p in ds.problems}
    assert {"bad annotation", "bad box", "box outside image", "missing image"} <= kinds
    msgs = [p.message for p in ds.problems]
    assert any("bomb.xml" in m and "unsafe XML" in m for m in msgs)
    assert any(anns[0].name in m and "malformed" in m for m in msgs)
