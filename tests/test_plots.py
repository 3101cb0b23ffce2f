"""Tests for maskclf.reports.plots: every figure is a real, non-blank PNG written atomically."""

import numpy as np
import pytest
from PIL import Image

from maskclf.files import MaskclfError
from maskclf.reports.plots import plot_confusion_matrix, plot_history, plot_roc, plot_sample_grid


def _check_png(path, folder):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] > 200 and im.size[1] > 200
        arr = np.asarray(im.convert("RGB"))
    assert arr.std() > 0, "image is one flat colour"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_plot_history_two_phases(tmp_path):
    csv_path = tmp_path / "history.csv"
    lines = ["epoch,accuracy,learning_rate,loss,val_accuracy,val_balanced_accuracy,val_loss"]
    for phase in range(2):
        for e in range(3):  # the second phase restarts epoch numbers
            lines.append(f"{e},{0.6 + 0.05 * e + 0.1 * phase},0.001,{1.0 - 0.1 * e},0.7,0.65,{0.9 - 0.05 * e}")
    csv_path.write_text("\n".join(lines) + "\n")
    out = plot_history(csv_path, tmp_path / "history.png")
    _check_png(out, tmp_path)


def test_plot_history_subset_of_columns(tmp_path):
    csv_path = tmp_path / "h.csv"
    csv_path.write_text("epoch,loss\n0,1.0\n1,0.5\n")
    _check_png(plot_history(csv_path, tmp_path / "h.png"), tmp_path)


def test_plot_history_bad_files(tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text("epoch,accuracy,loss\n")
    with pytest.raises(MaskclfError):
        plot_history(header_only, tmp_path / "x.png")
    with pytest.raises(MaskclfError):
        plot_history(tmp_path / "missing.csv", tmp_path / "x.png")
    lr_only = tmp_path / "lr.csv"
    lr_only.write_text("epoch,learning_rate\n0,0.001\n")
    with pytest.raises(MaskclfError):
        plot_history(lr_only, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_confusion_matrix(tmp_path):
    cm = [[50, 3, 2], [4, 40, 1], [0, 0, 0]]  # last row empty: normalised row must not be NaN
    names = ["with_mask", "without_mask", "mask_weared_incorrect"]
    out = plot_confusion_matrix(cm, names, tmp_path / "cm.png", title="test")
    _check_png(out, tmp_path)
    with pytest.raises(MaskclfError):
        plot_confusion_matrix([[1, 2], [3, 4]], names, tmp_path / "bad.png")


def test_plot_roc_binary(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p0 = np.clip(np.where(y == 0, 0.7, 0.3) + rng.normal(0, 0.2, 100), 0, 1)
    out = plot_roc(y, np.stack([p0, 1 - p0], 1), ["with_mask", "without_mask"], tmp_path / "roc.png")
    _check_png(out, tmp_path)


def test_plot_roc_multiclass_with_absent_class(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)  # class 2 absent: skipped, not an error
    probs = rng.dirichlet([1, 1, 1], 60)
    probs[np.arange(60), y] += 0.5
    probs /= probs.sum(1, keepdims=True)
    out = plot_roc(y, probs, ["a", "b", "c"], tmp_path / "roc3.png")
    _check_png(out, tmp_path)
    with pytest.raises(MaskclfError):
        plot_roc(y, probs, ["a", "b"], tmp_path / "bad.png")


def test_plot_sample_grid(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    out = plot_sample_grid(imgs, [f"img {i}" for i in range(10)], tmp_path / "grid.png", cols=4)
    _check_png(out, tmp_path)
    one = plot_sample_grid([imgs[0]], ["only"], tmp_path / "one.png")
    _check_png(one, tmp_path)
    with pytest.raises(MaskclfError):
        plot_sample_grid(imgs, ["too few"], tmp_path / "bad.png")
