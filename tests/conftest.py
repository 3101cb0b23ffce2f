"""Shared fixtures: a private cache folder, seeding, and tiny generated datasets."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per worker: xdist already runs a worker per core, and two workers each spinning two
# intra-op threads on 2 cores cost CPU (`python -m pytest -q` on this 2-core VM, 2026-12-07: 9:43 -> 7:51, user CPU
# 1025 -> 840 s). Set before any test module imports TensorFlow, which reads them once; a user's own setting wins.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


# The longest modules first: xdist's loadfile hands modules out in collection order, and test_readme.py alone
# (every README command, ~4-5 min on one worker) finishes last, with the other worker idle, when it starts late.
LONGEST_FIRST = ("test_readme.py", "test_ensemble.py", "test_tune.py")


def pytest_collection_modifyitems(config, items):
    """Run the longest modules first (stable otherwise), so the workers finish together."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Never touch the user's ~/.cache/maskclf from tests."""
    os.environ["MASKCLF_CACHE"] = str(tmp_path_factory.mktemp("maskclf-cache"))
    yield


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    yield


SHAPES = ("circle", "square", "triangle")


def shape_image(index: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A noisy picture whose class is the drawn shape and its dominant colour (so tiny nets learn it fast)."""
    bg = tuple(int(v) for v in rng.integers(0, 100, 3))
    fg = [int(v) for v in rng.integers(90, 160, 3)]
    fg[index % 3] = 255
    kind = SHAPES[index % 3]
    fg = tuple(fg)
    arr = np.clip(np.full((size, size, 3), bg, np.int16) + rng.integers(-20, 21, (size, size, 3)), 0, 255)
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    r = int(size * rng.uniform(0.25, 0.35))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    return img


def make_class_folders(root: Path, classes=SHAPES[:2], per_class: int = 20, size: int = 32, seed: int = 0,
                       ext: str = ".png") -> Path:
    """ROOT/<class>/*.png with a learnable shape per class."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(k, size, rng).save(root / c / f"{c}_{i:03d}{ext}")
    return root


@pytest.fixture
def shapes_dir(tmp_path) -> Path:
    """Two classes (circle, square), 20 images each."""
    return make_class_folders(tmp_path / "shapes")


@pytest.fixture
def sample_dir() -> Path:
    """The real VOC sample shipped in data/sample."""
    assert SAMPLE.is_dir(), "data/sample is missing"
    return SAMPLE


FRONTAL_PHOTO = "maksssksksss148.jpg"  # data/sample photo with two large, frontal, unmasked faces


def make_video(path: Path, frames: int = 8, photo: str = FRONTAL_PHOTO, white_strip: bool = False) -> Path:
    """A short MP4 made from a sample photo (a camera's stand-in), shifted a little each frame."""
    import cv2

    from maskclf.data import images

    rgb = np.array(images.load_rgb(SAMPLE / "images" / photo).resize((320, 288)), np.uint8)
    if white_strip:
        rgb[:16] = 255  # so a black FPS tag shows
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 288))
    assert w.isOpened()
    for i in range(frames):
        w.write(np.ascontiguousarray(np.roll(rgb, 4 * i, axis=1)[:, :, ::-1]))
    w.release()
    return path
