"""Hardening: bad input, interruptions and hostile files never crash with a traceback or lose work.

Every bad input is generated here, in tmp_path (nothing is checked in). Each case is driven through
the CLI in-process where a command reads it, and must give either exactly one ``maskclf: error:`` line
naming the file (no traceback, non-zero exit) or be skipped and counted in the ``maskclf data inspect``
report. docs/ROBUSTNESS.md lists every case, its outcome and the test below that covers it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import REPO, SAMPLE, make_class_folders
from maskclf.data import images
from maskclf.cli import main
from maskclf.files import MaskclfError, atomic_path, write_json, write_labels, write_text
from maskclf.data.voc import VocAnnotation, clip_box, find_image, parse_voc

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# PIL warns about the damaged files this module makes on purpose (maskclf ignores those warnings itself,
# but pytest resets warning filters per test).
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def deadline(seconds: float):
    """Fail instead of hanging: SIGALRM raises TimeoutError in the main thread after ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_error(capsys, *names: str, quiet: bool = True) -> str:
    """The single ``maskclf: error:`` line of stderr; it names every one of ``names``.

    ``quiet``: nothing else was printed on stderr; else only indented progress lines may accompany it.
    """
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("maskclf:")]
    assert len(errors) == 1, err
    if quiet:
        assert len(lines) == 1, err
    else:
        assert all(line.startswith("  ") for line in lines if line not in errors), err
    for n in names:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def run_main(argv: list[str], seconds: float = 120) -> int:
    with deadline(seconds):
        return main(argv)


def _encoded(fmt: str, mode: str = "RGB", size=(40, 30), **kw) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~70-byte PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


# Unreadable files: name -> (how to make it in a folder, words of its one-line message).
def _make_truncated_jpg(p: Path) -> None:
    data = _encoded("JPEG", size=(64, 64))
    p.write_bytes(data[: len(data) // 2])


def _make_truncated_png(p: Path) -> None:
    data = _encoded("PNG", size=(64, 64))
    p.write_bytes(data[: len(data) // 2])


BAD_IMAGES = {
    "truncated.jpg": (_make_truncated_jpg, "truncated"),
    "truncated.png": (_make_truncated_png, "truncated"),
    "zero_bytes.jpg": (lambda p: p.write_bytes(b""), "not an image file"),
    "text_named.jpg": (lambda p: p.write_text("these are my notes, not a photo\n"), "not an image file"),
    "bomb.png": (lambda p: p.write_bytes(_bomb_png()), "decompression bomb"),
    "bomb_between_limits.png": (lambda p: p.write_bytes(_bomb_png(10_000, 10_000)), "decompression bomb"),
    "dangling_link.jpg": (lambda p: p.symlink_to(p.with_name("nowhere.jpg")), "not found"),
    "self_link.jpg": (lambda p: p.symlink_to(p.name), "symbolic link loop"),
}
# Odd but valid images: each must load as 8-bit RGB (and be counted as an image, not a problem).
ODD_IMAGES = {
    "sixteen_bit.png": lambda p: Image.fromarray((np.arange(24 * 32, dtype=np.uint16) * 80).reshape(24, 32)).save(p),
    "cmyk.jpg": lambda p: Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(p),
    "grey_alpha.png": lambda p: Image.new("LA", (32, 24), (90, 128)).save(p),
    "exif_rotated.jpg": lambda p: _exif_rotated(p),
    "animated.gif": lambda p: _animated(p),
    "animated.webp": lambda p: _animated(p),
}


def _exif_rotated(p: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90°: a phone photo taken upright
    img.save(p, exif=exif)


def _animated(p: Path) -> None:
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)


# ----------------------------------------------------------------------------- single image files

@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_file_is_one_line_naming_it(tmp_path, name):
    make, words = BAD_IMAGES[name]
    p = tmp_path / name
    make(p)
    t0 = time.perf_counter()
    with deadline(10), pytest.raises(MaskclfError) as exc:
        images.load_rgb(p)
    assert time.perf_counter() - t0 < 2.0  # refused from the header: nothing huge decoded
    msg = str(exc.value)
    assert str(p) in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
def test_odd_but_valid_images_load_as_rgb(tmp_path, name):
    p = tmp_path / name
    ODD_IMAGES[name](p)
    img = images.load_rgb(p)
    assert img.mode == "RGB" and min(img.size) >= 1
    if name == "exif_rotated.jpg":
        assert img.size == (20, 40)  # the EXIF orientation was applied


def test_fifo_and_devices_are_refused_not_read(tmp_path):
    # Opening a FIFO blocks until a writer comes: the loaders must not even try (was a hang).
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    dev = tmp_path / "zeros.png"
    dev.symlink_to("/dev/zero")
    xml = tmp_path / "pipe.xml"
    os.mkfifo(xml)
    with deadline(10):
        for p in (fifo, dev):
            with pytest.raises(MaskclfError, match="not a regular file") as exc:
                images.load_rgb(p)
            assert str(p) in str(exc.value)
        with pytest.raises(MaskclfError, match="not a regular file"):
            parse_voc(xml)


def test_one_pixel_image_loads_but_is_skipped_by_the_dataset(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (9, 9, 9)).save(p)
    assert images.load_rgb(p).size == (1, 1)  # the device may crop a 1-px face: fine to load
    root = make_class_folders(tmp_path / "ds", per_class=4, size=16)
    shutil.copy(p, root / "circle" / "dot.png")
    from maskclf.config import DataConfig
    from maskclf.data.datasets import load_dataset

    ds = load_dataset(DataConfig(path=str(root)), progress=False)
    assert [q.kind for q in ds.problems] == ["unreadable image"]
    assert "dot.png: image is 1x1 pixels, too small" in ds.problems[0].message
    assert len(ds) == 8


# ----------------------------------------------------------------------------- datasets: data inspect report

def _bad_folder_dataset(root: Path) -> Path:
    """Two learnable classes plus every kind of bad file, an empty class and a one-image class."""
    make_class_folders(root, ("circle", "square"), per_class=8, size=24)
    for name, (make, _) in BAD_IMAGES.items():
        make(root / "circle" / name)
    for name, make in ODD_IMAGES.items():
        make(root / "square" / name)
    Image.new("RGB", (1, 1)).save(root / "square" / "one_pixel.png")
    (root / "empty_class").mkdir()
    (root / "lonely").mkdir()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(root / "lonely" / "only.png")
    (root / "square" / "notes.txt").write_text("stray non-image file")
    (root / "square" / "model.h5").write_bytes(b"\x89HDF\r\n")
    (root / "README.md").write_text("a file outside any class folder")
    (root / "circle" / "sub").mkdir()
    (root / "circle" / "sub" / "loop").symlink_to("..")  # circle/sub/loop -> circle: a symlink loop
    return root


def test_data_inspect_skips_and_counts_every_bad_file(tmp_path, capsys):
    root = _bad_folder_dataset(tmp_path / "faces")
    assert run_main(["data", "inspect", str(root), "--examples", "50"]) == 0
    cap = capsys.readouterr()
    out, err = cap.out, cap.err
    assert "Traceback" not in out + err
    assert all(line.startswith("  ") for line in err.splitlines()), err  # progress only, no warnings
    # 8 + 8 shapes, 6 odd-but-valid images and the lonely one are kept.
    assert "images:  23 in 3 classes" in out, out
    for name in BAD_IMAGES:
        assert any(name in line for line in out.splitlines() if line.startswith("    ")), name
    kinds = {"unreadable image": len(BAD_IMAGES) + 1, "symlink loop": 1, "not an image": 2, "stray file": 1,
             "empty class": 1, "tiny class": 1}
    for kind, n in kinds.items():
        assert f"  {kind}: {n}\n" in out, (kind, out)
    assert f"problems: {sum(kinds.values())} (skipped)" in out
    assert "one_pixel.png: image is 1x1 pixels" in out
    assert "class 'empty_class' has no readable images" in out
    assert "class 'lonely' has only 1 image(s)" in out


def test_data_inspect_with_fifos_never_hangs(tmp_path):
    """A FIFO named like an image or annotation (in a subprocess: a regression would block forever)."""
    root = make_class_folders(tmp_path / "faces", per_class=6, size=16)
    os.mkfifo(root / "circle" / "pipe.jpg")
    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    for stem in sorted(p.stem for p in (SAMPLE / "annotations").glob("*.xml"))[:3]:
        shutil.copy(SAMPLE / "annotations" / f"{stem}.xml", voc / "annotations")
        shutil.copy(next((SAMPLE / "images").glob(f"{stem}.*")), voc / "images")
    os.mkfifo(voc / "annotations" / "pipe.xml")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for data, words in ((root, "pipe.jpg: not a regular file"), (voc, "pipe.xml: not a regular file")):
        r = subprocess.run([sys.executable, "-m", "maskclf.cli", "data", "inspect", str(data), "--no-split"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert "Traceback" not in r.stderr and r.returncode in (0, 2), r.stderr
        assert words in r.stdout + r.stderr


def test_class_sets_that_differ_between_splits_are_reported(tmp_path, capsys):
    root = tmp_path / "splits"
    make_class_folders(root / "Train", ("circle", "square"), per_class=8, size=16)
    make_class_folders(root / "val", ("circle", "square", "triangle"), per_class=3, size=16, seed=1)
    make_class_folders(root / "test", ("circle",), per_class=3, size=16, seed=2)
    (root / "test" / "square").mkdir()  # an empty class folder in one split
    assert run_main(["data", "inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert "images:  25 in 2 classes" in out  # the 3 validation triangles are dropped
    assert "class missing from train: 1" in out and "'triangle' has 3 images in validation but none in train" in out
    assert "class missing from split: 1" in out and "class 'square' has no images in test" in out
    assert "problems: 2 (skipped)" in out  # triangle is not also called an empty class (it was)


@pytest.mark.skipif(IS_ROOT, reason="running as root: chmod 000 does not stop root from reading")
def test_unreadable_files_and_folders_are_skipped(tmp_path, capsys):
    root = make_class_folders(tmp_path / "faces", per_class=6, size=16)
    locked = root / "circle" / "locked.png"
    shutil.copy(root / "circle" / "circle_000.png", locked)
    locked.chmod(0)
    (root / "square" / "private").mkdir()
    (root / "square" / "private").chmod(0)
    try:
        assert run_main(["data", "inspect", str(root), "--no-split"]) == 0
        out = capsys.readouterr().out
        assert "locked.png: permission denied" in out and "private: cannot list folder" in out
    finally:
        locked.chmod(0o644)
        (root / "square" / "private").chmod(0o755)


@pytest.mark.parametrize("case, words", [
    ("missing", "data folder not found"),
    ("a_file", "is a file"),
    ("empty", "no dataset layout found"),
    ("one_class", "need at least 2 classes"),
    ("all_bad", "need at least 2 classes"),
])
def test_unusable_dataset_roots_are_one_line(tmp_path, capsys, case, words):
    root = tmp_path / case
    if case == "a_file":
        root.write_text("not a folder")
    elif case == "empty":
        root.mkdir()
    elif case == "one_class":
        make_class_folders(root, ("circle",), per_class=4, size=16)
    elif case == "all_bad":
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            (root / c / "x.jpg").write_text("not an image")
    assert run_main(["data", "inspect", str(root)]) == 2
    one_error(capsys, str(root), words, quiet=False)
    with pytest.raises(MaskclfError):
        main(["--debug", "data", "inspect", str(root)])  # --debug lets the exception (and traceback) through


# ----------------------------------------------------------------------------- Pascal VOC annotations

def _voc_xml(filename: str, objects: list[tuple[str, str, str, str, str]], size=(512, 366)) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY l "lol">'
                  + "".join(f'<!ENTITY l{i} "{("&l" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                            for i in range(1, 10))
                  + ']><annotation><filename>&l9;</filename></annotation>')


def _hostile_voc(root: Path) -> dict[str, str]:
    """A VOC folder: 6 good sample photos plus one bad annotation per case. Returns xml name -> problem kind."""
    ann, imgs_dir = root / "annotations", root / "images"
    ann.mkdir(parents=True)
    imgs_dir.mkdir()
    stems = sorted(p.stem for p in (SAMPLE / "annotations").glob("*.xml"))[:6]
    for s in stems:
        shutil.copy(SAMPLE / "annotations" / f"{s}.xml", ann)
        img = next((SAMPLE / "images").glob(f"{s}.*"))
        shutil.copy(img, imgs_dir)
    photo = next((SAMPLE / "images").glob(f"{stems[0]}.*"))
    cases = {}

    def add(name: str, text: str, kind: str, with_image: bool = True) -> None:
        (ann / f"{name}.xml").write_text(text)
        if with_image:
            shutil.copy(photo, imgs_dir / f"{name}{photo.suffix}")
        cases[f"{name}.xml"] = kind

    add("malformed", "<annotation><object><name>with_mask</name>", "bad annotation")
    add("wrong_root", "<html><body>hello</body></html>", "bad annotation")
    add("no_bndbox", "<annotation><filename>no_bndbox.png</filename><object><name>with_mask</name></object>"
                     "</annotation>".replace("no_bndbox.png", f"no_bndbox{photo.suffix}"), "bad annotation")
    add("no_name", _voc_xml(f"no_name{photo.suffix}", [("", "1", "1", "40", "40")]), "bad annotation")
    add("text_corner", _voc_xml(f"text_corner{photo.suffix}", [("with_mask", "left", "1", "40", "40")]),
        "bad annotation")
    add("inverted", _voc_xml(f"inverted{photo.suffix}", [("with_mask", "80", "80", "40", "40")]), "bad box")
    add("outside", _voc_xml(f"outside{photo.suffix}", [("with_mask", "5000", "5000", "5100", "5100")]),
        "box outside image")
    add("negative", _voc_xml(f"negative{photo.suffix}", [("without_mask", "-30", "-30", "60", "70")]),
        "")  # clipped to the image and kept: counted as a note
    add("unknown_class", _voc_xml(f"unknown_class{photo.suffix}", [("mask_on_chin", "100", "100", "160", "170")]),
        "class dropped")
    add("image_missing", _voc_xml("nowhere.png", [("with_mask", "1", "1", "40", "40")]), "missing image",
        with_image=False)
    add("long_filename", _voc_xml("x" * 400 + ".png", [("with_mask", "1", "1", "40", "40")]), "missing image",
        with_image=False)
    add("billion_laughs", BILLION_LAUGHS, "bad annotation")
    add("xxe", '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
               "<annotation><filename>&x;</filename></annotation>", "bad annotation")
    add("xxe_parameter", '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY % x SYSTEM "file:///etc/passwd">'
                         " %x;]><annotation/>", "bad annotation")
    (ann / "folder.xml").mkdir()
    cases["folder.xml"] = "bad annotation"
    (ann / "notes.txt").write_text("not an annotation")
    cases["notes.txt"] = "not an annotation"
    (ann / "corrupt_image.xml").write_text(_voc_xml("corrupt_image.jpg", [("with_mask", "1", "1", "9", "9")]))
    (imgs_dir / "corrupt_image.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    cases["corrupt_image.jpg"] = "unreadable image"
    return cases


def test_hostile_voc_annotations_are_skipped_and_counted(tmp_path, capsys):
    root = tmp_path / "voc"
    cases = _hostile_voc(root)
    t0 = time.perf_counter()
    rc = run_main(["data", "inspect", str(root), "data.classes=[with_mask,without_mask,mask_weared_incorrect]",
                   "--examples", "50", "--no-split"])
    assert time.perf_counter() - t0 < 60
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 0 and "Traceback" not in out + cap.err, cap.err
    assert "layout:  voc" in out
    for name, kind in cases.items():
        if kind and kind != "class dropped":
            assert any(name in line for line in out.splitlines()), (name, out)
    expected = {}
    for kind in cases.values():
        if kind:
            expected[kind] = expected.get(kind, 0) + 1
    for kind, n in expected.items():
        assert f"  {kind}: {n}\n" in out, (kind, n, out)
    assert "'mask_on_chin': 1 items dropped" in out
    assert "note: " in out and "faces clipped to the image" in out
    assert "unsafe XML" in out and "root:" not in out and "lollollol" not in out  # nothing leaked or expanded


def test_voc_without_usable_annotations_is_one_line(tmp_path, capsys):
    root = tmp_path / "voc"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    assert run_main(["data", "inspect", str(root)]) == 2
    one_error(capsys, "annotations", "no .xml annotation files")
    (root / "annotations" / "a.xml").write_text("<annotation><object>")
    assert run_main(["data", "inspect", str(root)]) == 2
    one_error(capsys, str(root), "need at least 2 classes", quiet=False)


# ----------------------------------------------------------------------------- configuration files

BAD_CONFIGS = {
    "unknown_key.yaml": ("train:\n  epochz: 3\n", "unknown key train.epochz"),
    "unknown_section.yaml": ("trian:\n  epochs: 3\n", "unknown section 'trian'"),
    "wrong_type.yaml": ("train:\n  epochs: many\n", "train.epochs: expected an integer"),
    "infinite.yaml": ("train:\n  epochs: .inf\n", "train.epochs: expected an integer"),  # was OverflowError
    "bad_value.yaml": ("data:\n  layout: zip\n", "data.layout"),
    "not_a_mapping.yaml": ("- train\n- data\n", "expected a mapping"),
    "section_not_mapping.yaml": ("train: 5\n", "section 'train' must be a mapping"),
    "broken.yaml": ("train: [unclosed\n", "not valid YAML"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not"),
    "alias_bomb.yaml": ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                                  for i in range(8))
                        + "model:\n  options: {x: *i}\n", "alias bomb"),
    "self_alias.yaml": ("model: &m\n  options: {x: *m}\n", "alias"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_file_is_one_line_naming_it(tmp_path, capsys, name):
    text, words = BAD_CONFIGS[name]
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert run_main(["config", str(p)], seconds=20) == 2
    one_error(capsys, str(p), words)
    # The same file given to `train --config` fails the same way, before any data is read.
    assert run_main(["train", "--config", str(p), "--data", str(tmp_path / "nowhere"), "--quiet"], seconds=60) == 2
    one_error(capsys, str(p), words)


@pytest.mark.parametrize("argv, words", [
    (["config", "/no/such/config.yaml"], "config file not found"),
    (["train", "--config", "/no/such/best.yaml", "--quiet"], "config file not found"),
    (["train", "--quiet", "epochs=.inf"], "train.epochs: expected an integer"),
    (["train", "--quiet", "train.batch_size=[1,2]"], "train.batch_size: expected an integer"),
    (["train", "--quiet", "data.clases=[a]"], "unknown config key 'data.clases'"),
    (["data", "inspect", ".", "image_size=big"], "data.image_size: expected an integer"),
])
def test_bad_config_arguments_are_one_line(capsys, argv, words):
    assert run_main(argv, seconds=60) == 2
    one_error(capsys, words)


# ----------------------------------------------------------------------------- run directories and .keras files

@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A run directory with an untrained 16 px small_cnn (built, not trained: a second, not a minute)."""
    keras = pytest.importorskip("keras")
    from maskclf.config import Config, apply_overrides, save_config
    from maskclf.models.registry import create_model

    root = tmp_path_factory.mktemp("fake-run")
    data = make_class_folders(root / "shapes", ("circle", "square"), per_class=6, size=16)
    run = root / "run"
    run.mkdir()
    cfg = apply_overrides(Config(), [f"data.path={data}", "data.image_size=16", "model.filters=[4]",
                                     "model.dense_units=[]", "model.convs_per_block=1"])
    save_config(cfg, run / "config.yaml")
    write_labels(run / "labels.txt", ["circle", "square"])
    keras.utils.set_random_seed(0)
    create_model("small_cnn", 2, 16, filters=[4], dense_units=[], convs_per_block=1).save(run / "best.keras")
    with open(run / "split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "split", "source"])
        for c in ("circle", "square"):
            for i, side in enumerate(["train"] * 2 + ["validation"] * 2 + ["test"] * 2):
                p = data / c / f"{c}_{i:03d}.png"
                w.writerow([p, c, p.name, side, p])
    return run


def _copy_run(run: Path, dest: Path) -> Path:
    return Path(shutil.copytree(run, dest, ignore=shutil.ignore_patterns("*.png", "metrics*.json", "export")))


def _lambda_model_file(path: Path) -> Path:
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inp)  # code: Keras' safe_mode must refuse to run it
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    return path


def test_healthy_fake_run_evaluates_and_predicts(fake_run, capsys):
    """The control: the broken copies below fail because of what was broken, nothing else."""
    run = _copy_run(fake_run, fake_run.parent / "healthy")
    assert run_main(["evaluate", str(run), "--quiet"]) == 0
    assert "balanced accuracy" in capsys.readouterr().out
    img = next((fake_run.parent / "shapes" / "circle").glob("*.png"))
    assert run_main(["predict", str(run), str(img)]) == 0


def test_lambda_layer_model_is_refused_by_every_command(fake_run, tmp_path, capsys):
    from maskclf.reports.evaluate import load_run_model

    run = _copy_run(fake_run, tmp_path / "run")
    _lambda_model_file(run / "best.keras")
    with pytest.raises(MaskclfError, match="Lambda layer") as exc:
        load_run_model(run)
    assert "best.keras" in str(exc.value) and "\n" not in str(exc.value)
    img = next((fake_run.parent / "shapes" / "circle").glob("*.png"))
    for argv in (["evaluate", str(run), "--quiet"], ["predict", str(run), str(img)],
                 ["export", str(run), "--quiet", "--quantize", "float32"],
                 ["explain", str(run), str(img)], ["report", str(run), "--quiet"]):
        assert run_main(argv) == 2, argv
        one_error(capsys, "best.keras", "Lambda layer")


def test_keras_file_naming_a_foreign_function_is_refused(fake_run, tmp_path, capsys, monkeypatch):
    """A hand-edited config.json inside best.keras that points a layer at os.system is neither run nor loaded."""
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a) or 0)
    run = _copy_run(fake_run, tmp_path / "run")
    src = run / "best.keras"
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    layer = cfg["config"]["layers"][-1]
    layer.update({"module": "os", "class_name": "system", "registered_name": None})
    files["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(src, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    assert run_main(["evaluate", str(run), "--quiet"]) == 2
    one_error(capsys, "best.keras", "not a readable .keras model")
    assert called == []


@pytest.mark.parametrize("damage, names", [
    ("truncated_model", ("best.keras", "not a .keras model")),
    ("text_model", ("best.keras", "not a .keras model")),
    ("no_model", ("best.keras", "no trained model")),
    ("labels_mismatch", ("labels.txt", "3 classes but best.keras has 2 outputs")),
    ("labels_empty", ("labels.txt", "empty")),
    ("split_labels", ("split.csv", "'hexagon'")),
    ("config_unknown_key", ("config.yaml", "unknown key train.epochz")),
    ("config_wrong_type", ("config.yaml", "data.image_size: expected an integer")),
    ("no_run", ("no_such_run", "run directory not found")),
])
def test_damaged_run_directory_is_one_line(fake_run, tmp_path, capsys, damage, names):
    run = _copy_run(fake_run, tmp_path / "run")
    model = run / "best.keras"
    if damage == "truncated_model":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "text_model":
        model.write_text("definitely not a model")
    elif damage == "no_model":
        model.unlink()
    elif damage == "labels_mismatch":
        write_labels(run / "labels.txt", ["circle", "square", "triangle"])
    elif damage == "labels_empty":
        (run / "labels.txt").write_text("\n\n")
    elif damage == "split_labels":
        text = (run / "split.csv").read_text()
        (run / "split.csv").write_text(text.replace(",circle,", ",hexagon,"))
    elif damage == "config_unknown_key":
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["train"]["epochz"] = 3
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    elif damage == "config_wrong_type":
        text = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(text.replace("image_size: 16", "image_size: sixteen"))
    elif damage == "no_run":
        run = tmp_path / "no_such_run"
    assert run_main(["evaluate", str(run), "--quiet"]) == 2
    one_error(capsys, *names)


def test_image_of_split_csv_corrupted_after_training_is_one_line(fake_run, tmp_path, capsys):
    run = _copy_run(fake_run, tmp_path / "run")
    bad = tmp_path / "overwritten.png"
    bad.write_text("the file was replaced after training")
    rows = list(csv.DictReader(open(run / "split.csv")))
    rows[-1]["path"] = str(bad)  # a test image
    with open(run / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert run_main(["evaluate", str(run), "--quiet"]) == 2
    one_error(capsys, "overwritten.png", "not an image file")


def test_predict_reports_each_bad_image_on_its_own_line(fake_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (make, _) in BAD_IMAGES.items():
        make(folder / name)
    for name, make in ODD_IMAGES.items():
        make(folder / name)
    assert run_main(["predict", str(fake_run), str(folder)]) == 1  # 1: some inputs were unreadable
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    lines = cap.out.strip().splitlines()
    bad = [line for line in lines if "\tERROR\t" in line]
    assert len(lines) == len(BAD_IMAGES) + len(ODD_IMAGES)
    assert sorted(Path(line.split("\t")[0]).name for line in bad) == sorted(BAD_IMAGES)
    for line in bad:
        path, _, msg = line.split("\t")
        assert path in msg and BAD_IMAGES[Path(path).name][1] in msg


def test_missing_paths_are_one_line(fake_run, tmp_path, capsys):
    for argv, names in [
        (["predict", str(fake_run), str(tmp_path / "ghost.jpg")], ("ghost.jpg", "no such file")),
        (["explain", str(fake_run), str(tmp_path / "ghost.jpg")], ("ghost.jpg",)),
        (["export", str(tmp_path / "no_run"), "--quiet"], ("no_run", "run directory not found")),
        (["report", str(tmp_path / "no_run"), "--quiet"], ("no_run",)),
        (["evaluate", str(fake_run), "--quiet", "--data", str(tmp_path / "nodata")], ("nodata", "not found")),
    ]:
        assert run_main(argv) == 2, argv
        one_error(capsys, *names)


# ----------------------------------------------------------------------------- .tflite models on the device

@pytest.fixture(scope="module")
def export_dir(fake_run, tmp_path_factory) -> Path:
    """A hand-made export folder: the fake run's model as float32 .tflite, metadata.json, labels.txt."""
    pytest.importorskip("ai_edge_litert")
    from maskclf.export import convert as E
    from maskclf.reports.evaluate import load_run_model

    d = tmp_path_factory.mktemp("export")
    (d / "model_float32.tflite").write_bytes(E.convert(load_run_model(fake_run), E.QuantizationSpec.for_float32()))
    write_json(d / "metadata.json", {"class_names": ["circle", "square"], "decision_threshold": None,
                                     "input": {"height": 16, "width": 16, "crop_margin": 0.15}})
    write_labels(d / "labels.txt", ["circle", "square"])
    return d


def _tflite_of(model) -> bytes:
    from maskclf.export import convert as E

    return E.convert(model, E.QuantizationSpec.for_float32())


def test_healthy_export_folder_loads(export_dir):
    from maskclf.edge.classifier import FaceClassifier

    clf = FaceClassifier(export_dir)
    assert clf.class_names == ["circle", "square"] and clf.size == 16


@pytest.mark.parametrize("damage, names", [
    ("text", ("model_float32.tflite", "not a TFLite model")),
    ("zero_bytes", ("model_float32.tflite", "not a TFLite model")),
    ("truncated", ("model_float32.tflite", "corrupt")),
    ("wrong_input_size", ("model_float32.tflite", "does not fit metadata.json")),
    ("wrong_channels", ("model_float32.tflite", "does not fit metadata.json")),
    ("more_classes_in_metadata", ("model_float32.tflite", "2 outputs but metadata lists 3 classes")),
    ("labels_mismatch", ("labels.txt", "exported for circle, square")),
    ("metadata_garbage", ("metadata.json", "unreadable metadata.json")),
    ("no_metadata", ("model_float32.tflite", "no metadata")),
    ("empty_folder", ("no .tflite model",)),
    ("missing", ("ghost", "model not found")),
])
def test_damaged_tflite_or_export_folder_is_one_line(export_dir, tmp_path, capsys, damage, names):
    import keras

    d = Path(shutil.copytree(export_dir, tmp_path / "export"))
    model = d / "model_float32.tflite"
    target = d
    if damage == "text":
        model.write_text("this is not a flatbuffer")
    elif damage == "zero_bytes":
        model.write_bytes(b"")
    elif damage == "truncated":
        data = model.read_bytes()
        model.write_bytes(data[: len(data) // 2])
    elif damage == "wrong_input_size":
        from maskclf.models.registry import create_model

        model.write_bytes(_tflite_of(create_model("small_cnn", 2, 24, filters=[4], dense_units=[])))
    elif damage == "wrong_channels":
        inp = keras.Input((16, 16, 1))
        out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
        model.write_bytes(_tflite_of(keras.Model(inp, out)))
    elif damage == "more_classes_in_metadata":
        meta = json.loads((d / "metadata.json").read_text())
        meta["class_names"] = ["circle", "square", "triangle"]
        write_json(d / "metadata.json", meta)
        (d / "labels.txt").unlink()
    elif damage == "labels_mismatch":
        write_labels(d / "labels.txt", ["square", "circle"])  # swapped: every answer would be wrong
    elif damage == "metadata_garbage":
        (d / "metadata.json").write_text("{not json")
    elif damage == "no_metadata":
        (d / "metadata.json").unlink()
        target = model
    elif damage == "empty_folder":
        for f in d.iterdir():
            f.unlink()
    elif damage == "missing":
        target = tmp_path / "ghost"
    photo = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (128, 100, 90)).save(photo)
    assert run_main(["detect", str(photo), "--model", str(target), "--no-save", "--quiet"]) == 2
    one_error(capsys, *names)


def test_detect_on_a_folder_counts_unreadable_images(export_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (make, _) in BAD_IMAGES.items():
        make(folder / name)
    Image.new("RGB", (64, 64), (128, 100, 90)).save(folder / "fine.png")
    rc = run_main(["detect", str(folder), "--model", str(export_dir), "--no-save", "--quiet",
                   "--json", str(tmp_path / "out.json")])
    cap = capsys.readouterr()
    assert rc == 1 and "Traceback" not in cap.out + cap.err
    assert f"{len(BAD_IMAGES)} unreadable" in cap.out
    doc = json.loads((tmp_path / "out.json").read_text())
    errors = {Path(e["path"]).name for e in doc["inputs"] if "error" in e}
    assert errors == set(BAD_IMAGES)


# ----------------------------------------------------------------------------- no partial files

def _fail_halfway(monkeypatch, cls, method: str, arg: int = 0):
    """Make ``cls.method`` write half of its output to its path argument, then fail like a full disk."""
    def half(self, *args, **kwargs):
        path = Path(self) if arg is None else Path(args[arg] if len(args) > arg else kwargs["filepath"])
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cls, method, half)


def _assert_untouched(folder: Path, name: str, old: bytes | None) -> None:
    final = folder / name
    if old is None:
        assert not final.exists()
    else:
        assert final.read_bytes() == old
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]
    assert leftovers == []  # the temporary file is removed too


@pytest.mark.parametrize("writer", ["metrics.json", "best.yaml", "labels.txt", "report.md"])
@pytest.mark.parametrize("existing", [False, True])
def test_text_writers_leave_no_partial_file(tmp_path, monkeypatch, writer, existing):
    from maskclf.config import Config, save_config

    old = b"the previous, complete version\n" if existing else None
    if old:
        (tmp_path / writer).write_bytes(old)
    real = Path.write_text

    def half(self, data, *a, **k):
        real(self, data[: len(data) // 2], *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half)
    call = {"metrics.json": lambda p: write_json(p, {"accuracy": 0.5, "per_class": {"a": 1}}),
            "best.yaml": lambda p: save_config(Config(), p),
            "labels.txt": lambda p: write_labels(p, ["with_mask", "without_mask"]),
            "report.md": lambda p: write_text(p, "# report\n" * 100)}[writer]
    with pytest.raises(OSError):
        call(tmp_path / writer)
    _assert_untouched(tmp_path, writer, old)


def test_plot_writer_leaves_no_partial_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from maskclf.reports import plots

    _fail_halfway(monkeypatch, Figure, "savefig")
    with pytest.raises(OSError):
        plots.plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "confusion_matrix.png")
    _assert_untouched(tmp_path, "confusion_matrix.png", None)


def test_checkpoint_and_backup_writers_leave_no_partial_file(fake_run, tmp_path, monkeypatch):
    import keras

    from maskclf.training.callbacks import AtomicBackupAndRestore, AtomicBestCheckpoint
    from maskclf.reports.evaluate import load_run_model

    model = load_run_model(fake_run)
    good = (fake_run / "best.keras").read_bytes()
    (tmp_path / "best.keras").write_bytes(good)
    (tmp_path / "best.best").write_text("0.5")
    ckpt = AtomicBestCheckpoint(tmp_path / "best.keras", monitor="val_balanced_accuracy", verbose=False)
    ckpt.set_model(model)
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)  # a first, complete backup
    weights = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    meta = (tmp_path / "backup" / "training_metadata.json").read_bytes()
    assert json.loads(meta)["epoch"] == 1

    _fail_halfway(monkeypatch, keras.Model, "save")
    with pytest.raises(OSError):
        ckpt.on_epoch_end(1, {"val_balanced_accuracy": 0.9})
    _assert_untouched(tmp_path, "best.keras", good)
    assert (tmp_path / "best.best").read_text() == "0.5"

    _fail_halfway(monkeypatch, keras.Model, "save_weights")
    with pytest.raises(OSError):
        backup.on_epoch_end(1)
    _assert_untouched(tmp_path / "backup", "latest.weights.h5", weights)
    _assert_untouched(tmp_path / "backup", "training_metadata.json", meta)


def test_export_writer_leaves_no_partial_tflite(fake_run, tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    from maskclf.export import convert as E

    run = _copy_run(fake_run, tmp_path / "run")
    _fail_halfway(monkeypatch, Path, "write_bytes", arg=None)
    with pytest.raises(OSError) as exc:
        E.export_run(run, precisions="float32", force=True, threads=(1,), max_test=4, latency_runs=1,
                     progress=False)
    assert ".model_float32.tflite." in exc.value.filename  # it failed writing the model's temporary file
    assert not (run / "export" / "model_float32.tflite").exists()
    assert not [p for p in (run / "export").iterdir() if p.suffix == ".tflite"]


def test_atomic_path_removes_the_temporary_file_on_any_failure(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "model.tflite") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt  # Ctrl-C mid-write
    assert list(tmp_path.iterdir()) == []


# Writers in maskclf/ that do not go through files.atomic_path, and why that is right for each.
NOT_ATOMIC = {
    ("maskclf/tuning/tune.py", "oracle.save()"): "KerasTuner's own oracle state (its format, its writer)",
    ("maskclf/edge/app.py", "VideoWriter("): "a video is streamed frame by frame (a camera may run for days)",
    ("maskclf/edge/app.py", 'open(events, "a"'): "append-only JSON lines, flushed one whole line at a time",
    ("maskclf/data/index.py", "index.save()"): "_Index.save itself calls write_json (atomic)",
    # synth writes its whole output into a temporary folder that is renamed at the end (test_synth checks
    # that an interruption leaves nothing), so the files inside need no rename of their own.
    ("maskclf/research/synth.py", "fig.savefig(path, dpi=100)"): "inside synth's temporary output folder (renamed whole)",
    ("maskclf/research/synth.py", 'open(path, "w", newline=""'): "inside synth's temporary output folder (renamed whole)",
}


def test_every_file_writer_in_the_package_is_atomic():
    """A writer call must write to the ``tmp`` (or in-memory ``buf``) of an atomic_path block, or be listed."""
    import re

    pattern = re.compile(r"open\([^)]*[\"'][wax]b?\+?[\"']|\.savefig\(|\.save\(|\.write_text\(|\.write_bytes\("
                         r"|save_weights\(|imwrite\(|VideoWriter\(|\.to_csv\(|np\.save\(|\.dump\(")
    offenders = []
    for f in sorted((REPO / "maskclf").rglob("*.py")):
        rel = str(f.relative_to(REPO))
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if not pattern.search(code) or rel == "maskclf/files.py":
                continue
            if re.search(r"\b(tmp|buf)\b", code) or any(rel == r and s in code for r, s in NOT_ATOMIC):
                continue
            offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "write through files.atomic_path (or list the writer in NOT_ATOMIC with why):\n" + \
        "\n".join(offenders)


def test_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("keras")
    data = make_class_folders(tmp_path / "shapes", per_class=8, size=16)
    out = tmp_path / "runs"
    out.write_text("a file where the runs folder should be")
    assert run_main(["train", "--data", str(data), "--out", str(out), "--quiet", "--epochs", "1", "--model", "maskclf_cnn",
                     "image_size=16", "model.filters=[4]", "model.dense_units=[]"]) == 2
    one_error(capsys, "runs")


# ----------------------------------------------------------------------------- interruptions

def test_ctrl_c_is_one_line_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from maskclf.data import datasets

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "load_dataset", interrupted)
    assert run_main(["data", "inspect", str(tmp_path)]) == 130
    assert "run the same command again to resume" in one_error(capsys)


def _history_epochs(run: Path) -> list[int]:
    try:
        return [int(r["epoch"]) for r in csv.DictReader(open(run / "history.csv")) if r.get("epoch")]
    except (OSError, ValueError):
        return []


@pytest.mark.slow
def test_kill_9_mid_training_then_rerun_resumes_and_finishes(tmp_path):
    """SIGKILL a real `maskclf train` process mid-run; the same command again resumes the same run."""
    data = make_class_folders(tmp_path / "shapes", per_class=60, size=32)
    out = tmp_path / "runs"
    epochs = 30
    cmd = [sys.executable, "-m", "maskclf.cli", "train", "--data", str(data), "--out", str(out), "--quiet",
           "--epochs", str(epochs), "--image-size", "32", "model.filters=[8,16]", "model.convs_per_block=1",
           "model.dense_units=[16]", "batch_size=8", "patience=1000"]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while time.time() - t0 < 240:
            runs = list(out.glob("*/history.csv")) if out.is_dir() else []
            if runs and len(_history_epochs(runs[0].parent)) >= 2 and (runs[0].parent / "backup").is_dir():
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail("training never finished two epochs")
        time.sleep(0.3)  # now somewhere inside a later epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (run,) = list(out.iterdir())
    before = _history_epochs(run)
    assert len(before) < epochs and json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "metrics.json").exists()
    if (run / "best.keras").exists():
        assert zipfile.is_zipfile(run / "best.keras")  # the checkpoint is whole, never half-written

    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(out.iterdir()) == [run]  # resumed the same run directory, no second one
    after = _history_epochs(run)
    assert after[: len(before)] == before  # the rows from before the kill are kept
    assert after.count(0) == 1  # ... and training did not restart from epoch 0
    assert sorted(set(after)) == list(range(epochs)) and after == sorted(after)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert json.loads((run / "metrics.json").read_text())["training"]["epochs"] == len(after)
    assert not (run / "backup").exists()


def test_atomic_backup_is_what_keras_restores(fake_run, tmp_path):
    """The backup written through temporary names is read back by Keras' own restore: the epoch counter
    and nothing else beside it."""
    from maskclf.training.callbacks import AtomicBackupAndRestore
    from maskclf.reports.evaluate import load_run_model

    model = load_run_model(fake_run)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    cb = AtomicBackupAndRestore(str(tmp_path / "backup"))
    cb.set_model(model)
    cb.on_epoch_end(2)
    files = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert files == ["latest.weights.h5", "training_metadata.json"]  # no temporaries left beside them
    fresh = AtomicBackupAndRestore(str(tmp_path / "backup"))
    fresh.set_model(model)
    fresh.on_train_begin()
    assert model._initial_epoch == 3


# ----------------------------------------------------------------------------- fuzzing

def _seed_images() -> dict[str, bytes]:
    def exif_jpeg() -> bytes:
        img = Image.new("RGB", (16, 12), (10, 20, 30))
        exif = img.getexif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        img.save(buf, "JPEG", exif=exif)
        return buf.getvalue()

    def animated(fmt: str) -> bytes:
        frames = [Image.new("RGB", (16, 12), c) for c in ((255, 0, 0), (0, 255, 0))]
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
        return buf.getvalue()

    return {"a.png": _encoded("PNG", size=(16, 12)), "a.jpg": _encoded("JPEG", size=(16, 12)),
            "exif.jpg": exif_jpeg(), "cmyk.jpg": _encoded("JPEG", "CMYK", size=(16, 12)),
            "grey16.png": _encoded("PNG", "I;16", size=(16, 12)), "la.png": _encoded("PNG", "LA", size=(16, 12)),
            "p.gif": _encoded("GIF", "P", size=(16, 12)), "anim.gif": animated("GIF"), "anim.webp": animated("WEBP"),
            "a.webp": _encoded("WEBP", size=(16, 12)), "a.bmp": _encoded("BMP", size=(16, 12)),
            "a.tif": _encoded("TIFF", size=(16, 12)), "lzw.tif": _encoded("TIFF", size=(16, 12), compression="tiff_lzw"),
            "bomb.png": _bomb_png(20_000, 20_000)}


SEED_IMAGES = _seed_images()
_INTERESTING = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x01\x00\x00"]


@st.composite
def mutated_images(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEED_IMAGES)))
    data = bytearray(SEED_IMAGES[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:
            data[pos:pos + 4] = draw(st.sampled_from(_INTERESTING))
        else:
            del data[pos:]
    return name, bytes(data)


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                  HealthCheck.too_slow])
@given(mutated_images())
def test_fuzz_load_rgb_gives_an_image_or_one_line(tmp_path, case):
    name, data = case
    p = tmp_path / name
    p.write_bytes(data)
    try:
        with deadline(10):
            img = images.load_rgb(p)
    except MaskclfError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        event("refused")
        return
    event("loaded")
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1 and img.width * img.height <= images.MAX_PIXELS


_VOC_TAGS = ["annotation", "filename", "size", "width", "height", "object", "name", "bndbox", "xmin", "ymin",
             "xmax", "ymax", "difficult", "folder"]
_VOC_TEXTS = ["12", "-5", "1e400", "-1e400", "nan", "inf", " 7 ", "3.5", "0", "999999999999", "with_mask",
              "x" * 300 + ".png", "../../etc/passwd", "a.jpg", "&amp;", "&#x41;", "&undefined;", "<![CDATA[<x>]]>",
              "\u00e9\u4e2d", ""]
_PROLOGUES = ["", '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="utf-16"?>',
              '<?xml version="1.0" encoding="bogus"?>',
              '<!DOCTYPE annotation [<!ENTITY e "ee">]>',
              '<!DOCTYPE annotation [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
              '<!DOCTYPE annotation [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
              '<!DOCTYPE annotation SYSTEM "http://127.0.0.1:9/voc.dtd">', BILLION_LAUGHS.split("<annotation>")[0]]


def _xml_trees(depth: int):
    leaf = st.sampled_from(_VOC_TEXTS)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.lists(st.tuples(st.sampled_from(_VOC_TAGS), st.deferred(lambda: _xml_trees(depth - 1))),
                                    max_size=4))


def _render(tree) -> str:
    if isinstance(tree, str):
        return tree
    return "".join(f"<{t}>{_render(c)}</{t}>" for t, c in tree)


_VALUES = [t for t in _VOC_TEXTS if t != "&undefined;"]  # that one alone makes most documents malformed
_numbers = st.one_of(st.sampled_from(_VALUES), st.integers(-10**6, 10**6).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


@st.composite
def _voc_like(draw) -> str:
    """Nearly a VOC file: the right structure, any values (so boxes reach clip_box and crop_face)."""
    objects = draw(st.lists(st.tuples(st.sampled_from(_VALUES + ["with_mask", "without_mask"]),
                                      st.tuples(_numbers, _numbers, _numbers, _numbers)), max_size=4))
    return _voc_xml(draw(st.sampled_from(_VALUES)), [(n, *c) for n, c in objects],
                    size=(draw(_numbers), draw(_numbers)))


@st.composite
def voc_documents(draw) -> bytes:
    body = draw(st.one_of(_voc_like(), _xml_trees(3).map(lambda t: _render([("annotation", t)]))))
    doc = (draw(st.one_of(st.just(""), st.sampled_from(_PROLOGUES))) + body).encode("utf-8")
    if draw(st.booleans()):  # then damage a few bytes
        data = bytearray(doc)
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, max(0, len(data) - 1)))
            data[pos:pos + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
        doc = bytes(data)
    return doc


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                  HealthCheck.too_slow])
@given(voc_documents())
def test_fuzz_parse_voc_gives_an_annotation_or_one_line(tmp_path, doc):
    p = tmp_path / "fuzz.xml"
    p.write_bytes(doc)
    try:
        with deadline(10):
            ann = parse_voc(p)
    except MaskclfError as e:
        assert str(p) in str(e) and "\n" not in str(e) and "root:" not in str(e)
        event("refused: " + str(e).split(": ", 1)[1].split(" (")[0][:40])
        return
    event(f"parsed, {min(len(ann.objects), 2)}+ objects")
    assert isinstance(ann, VocAnnotation) and "root:" not in repr(ann)
    # What the dataset code does next with a parsed file must not raise either.
    find_image(tmp_path, ann)
    photo = Image.new("RGB", (64, 48))
    for o in ann.objects:
        box = clip_box(o, 64, 48)
        if box is not None:
            crop = images.crop_face(photo, box, 0.15)
            assert crop is None or min(crop.size) >= 1
