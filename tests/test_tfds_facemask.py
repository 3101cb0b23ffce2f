"""The TFDS builder on a tiny hand-written VOC folder (no shared data, no network)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from maskclf import MaskclfError  # noqa: E402
from maskclf.data.tfds_facemask import CLASS_NAMES, FaceMaskDetection, load_face_mask_detection  # noqa: E402


def _xml(filename: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objs}</annotation>")


def _make_voc(root: Path) -> Path:
    images, annotations = root / "images", root / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    # a.jpg 64x48; its XML claims 640x480: boxes are clipped to the real size, not the XML's.
    Image.new("RGB", (64, 48), (200, 30, 30)).save(images / "a.jpg", quality=95)
    (annotations / "a.xml").write_text(_xml("a.jpg", 640, 480, [
        ("with_mask", 10, 8, 30, 28),
        ("without_mask", 50, 30, 80, 60),            # partly outside: clipped to (50, 30, 64, 48)
        ("mask_weared_incorrect", 70, 10, 90, 20),   # fully outside: skipped
    ]))
    # b.png RGBA 40x40, fully transparent: composited on white; one unknown class.
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(images / "b.png")
    (annotations / "b.xml").write_text(_xml("b.png", 40, 40, [
        ("mask_weared_incorrect", 4, 4, 20, 20),
        ("face_with_hat", 1, 1, 10, 10),             # unknown class: skipped
    ]))
    # c.jpg greyscale 32x24, no boxes left after skipping: the photo is still an example.
    Image.new("L", (32, 24), 128).save(images / "c.jpg")
    (annotations / "c.xml").write_text(_xml("c.jpg", 32, 24, [("without_mask", -5, -5, 0, 0)]))
    # d.xml: its image does not exist -> skipped.
    (annotations / "d.xml").write_text(_xml("d.jpg", 10, 10, [("with_mask", 1, 1, 5, 5)]))
    # e.jpg: not an image -> skipped with one warning line.
    (images / "e.jpg").write_bytes(b"this is not a jpeg")
    (annotations / "e.xml").write_text(_xml("e.jpg", 10, 10, [("with_mask", 1, 1, 5, 5)]))
    return root


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_build_load_and_reuse(tmp_path, caplog, monkeypatch):
    src = _make_voc(tmp_path / "voc")
    before = _snapshot(src)
    data_dir = tmp_path / "tfds"

    with caplog.at_level(logging.WARNING, logger="maskclf.data.tfds_facemask"):
        ds = load_face_mask_detection(src, data_dir=data_dir)
    warnings = [r.getMessage() for r in caplog.records if r.name == "maskclf.data.tfds_facemask"]
    assert len(warnings) == 1 and "1 unreadable images" in warnings[0] and "e.jpg" in warnings[0]

    examples = {ex["image/filename"].decode(): ex for ex in tfds.as_numpy(ds)}
    assert sorted(examples) == ["a.jpg", "b.png", "c.jpg"]

    a = examples["a.jpg"]
    assert a["image"].shape == (48, 64, 3) and a["image"].dtype == np.uint8
    assert abs(int(a["image"][24, 32, 0]) - 200) <= 3  # JPEG passed through, colour intact
    labels = [CLASS_NAMES[i] for i in a["objects"]["label"]]
    assert labels == ["with_mask", "without_mask"]
    bbox = a["objects"]["bbox"]
    assert bbox.dtype == np.float32 and bbox.shape == (2, 4)
    np.testing.assert_allclose(bbox[0], [8 / 48, 10 / 64, 28 / 48, 30 / 64], atol=1e-6)
    np.testing.assert_allclose(bbox[1], [30 / 48, 50 / 64, 1.0, 1.0], atol=1e-6)  # clipped

    b = examples["b.png"]
    assert b["image"].shape == (40, 40, 3) and b["image"].dtype == np.uint8
    assert b["image"].min() >= 250  # transparent -> white, not blue or black
    assert [CLASS_NAMES[i] for i in b["objects"]["label"]] == ["mask_weared_incorrect"]
    np.testing.assert_allclose(b["objects"]["bbox"][0], [0.1, 0.1, 0.5, 0.5], atol=1e-6)

    c = examples["c.jpg"]
    assert c["image"].shape == (24, 32, 3) and c["objects"]["bbox"].shape == (0, 4)

    builder = FaceMaskDetection(data_dir=data_dir)  # reading needs no source folder
    assert builder.info.features["objects"]["label"].names == CLASS_NAMES
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.metadata["counts"]["boxes"] == 3
    assert builder.info.metadata["counts"]["missing_images"] == 1
    assert _snapshot(src) == before  # nothing written inside the source folder

    # Second call: reuses the prepared files, never reads the photos again.
    prepared = {p: p.stat().st_mtime_ns for p in Path(builder.data_dir).iterdir()}
    def _no_regeneration(self, *args, **kwargs):
        raise AssertionError("regenerated instead of reusing")
    monkeypatch.setattr(FaceMaskDetection, "_generate_examples", _no_regeneration)
    ds2 = load_face_mask_detection(src, data_dir=data_dir, split="train[:2]")
    assert len(list(ds2)) == 2
    assert {p: p.stat().st_mtime_ns for p in Path(builder.data_dir).iterdir()} == prepared


def test_tfds_manual_dir_and_errors(tmp_path):
    src = _make_voc(tmp_path / "voc")
    # Plain TFDS route: the registered name plus manual_dir.
    builder = tfds.builder("face_mask_detection", data_dir=os.fspath(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(src)))
    assert builder.info.splits["train"].num_examples == 3
    # ... and the registered name with source_dir as a builder argument.
    builder = tfds.builder("face_mask_detection", data_dir=os.fspath(tmp_path / "tfds3"), source_dir=src)
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 3

    # The same data_dir built from another folder is refused, not silently reused.
    other = _make_voc(tmp_path / "other")
    with pytest.raises(MaskclfError, match="rebuild=True"):
        load_face_mask_detection(other, data_dir=tmp_path / "tfds")
    assert len(list(load_face_mask_detection(other, data_dir=tmp_path / "tfds", rebuild=True))) == 3

    with pytest.raises(MaskclfError, match="annotations/"):
        (tmp_path / "bad" / "images").mkdir(parents=True)
        load_face_mask_detection(tmp_path / "bad", data_dir=tmp_path / "tfds2")
