import csv
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import make_class_folders  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.training.experiments import kfold_splits  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402

# --model: one network (without it, cv gives the two-family default ensemble)
TINY = ["--model", "maskclf_cnn", "model.filters=[4,8]", "model.convs_per_block=1", "model.dense_units=[8]", "data.image_size=32"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data") / "shapes", ("circle", "square"), 15)


# ----------------------------------------------------------------------------- compare

def test_compare_trains_each_model_on_the_same_split(tmp_path, shapes, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--data", str(shapes), "--models", "small_cnn,seed004_cnn", "--epochs", "1", "--out", str(out),
            "--quiet", "model.filters=[4,8]", "model.convs_per_block=1", "data.val_fraction=0.25",
            "data.test_fraction=0.2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| small_cnn |" in text and "| seed004_cnn |" in text
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["small_cnn", "seed004_cnn"]
    for col in ["circle accuracy", "square accuracy", "balanced_accuracy", "parameters", "train_seconds"]:
        assert all(r[col] != "" for r in rows), col
    assert [r["image_size"] for r in rows] == ["64", "35"]  # each model at its own size
    assert rows[0]["parameters"] != rows[1]["parameters"]
    splits = [(tmp_path / r["run_dir"] / "split.csv").read_text() for r in rows]
    assert splits[0] == splits[1]  # the same split for every model
    md = (out / "compare.md").read_text()
    assert "Balanced accuracy" in md and "circle" in md and md.count("\n| ") == 2
    assert (out / "compare.png").stat().st_size > 1000
    # Again: finished runs are reused, nothing is trained twice.
    before = sorted((out / "runs").iterdir())
    assert main(argv) == 0
    assert sorted((out / "runs").iterdir()) == before


# ----------------------------------------------------------------------------- cross-validation

def test_kfold_splits_test_every_image_once_and_keep_groups_on_one_side():
    rng = np.random.default_rng(0)
    groups = [f"photo{g}" for g in rng.integers(0, 60, 300)]
    labels = [hash(g) % 3 for g in groups]  # one class per photo keeps it simple
    folds = kfold_splits(labels, groups, 5, 0.15, seed=0)
    assert len(folds) == 5
    tested = np.array([[s == "test" for s in f] for f in folds])
    assert (tested.sum(axis=0) == 1).all()  # each image in exactly one test fold
    for f in folds:
        for side in ("train", "validation", "test"):
            assert side in f
        sides = {}
        for g, s in zip(groups, f):
            assert sides.setdefault(g, s) == s  # a photo never straddles two splits
        share = f.count("validation") / len(f)
        assert 0.08 < share < 0.3, share
    with pytest.raises(MaskclfError, match="at least 2"):
        kfold_splits(labels, groups, 1, 0.15, 0)
    with pytest.raises(MaskclfError, match="too few"):
        kfold_splits(labels[:10], [str(i) for i in range(3)] * 3 + ["x"], 5, 0.15, 0)


def test_cv_trains_each_fold_writes_a_summary_and_resumes(tmp_path, shapes, capsys):
    out = tmp_path / "cv"
    argv = ["cv", "--data", str(shapes), "--folds", "3", "--epochs", "1", "--out", str(out), "--quiet", *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "balanced accuracy" in text and "3 of 3 folds" in text
    summary = json.loads((out / "cv.json").read_text())
    assert summary["folds_done"] == 3 and len(summary["per_fold"]) == 3
    assert sum(r["test_images"] for r in summary["per_fold"]) == 30  # every image tested once
    bal = [r["balanced_accuracy"] for r in summary["per_fold"]]
    assert summary["balanced_accuracy"]["mean"] == pytest.approx(np.mean(bal))
    assert summary["balanced_accuracy"]["sd"] == pytest.approx(np.std(bal, ddof=1))
    assert set(summary["recall"]) == {"circle", "square"}
    assert summary["ece"]["mean"] is not None
    assert 0 <= summary["validation_best"]["mean"] <= 1
    assert np.asarray(summary["pooled_confusion_matrix"]).sum() == 30
    tests = []
    for r in summary["per_fold"]:
        with open(os.path.join(r["run_dir"], "split.csv"), newline="") as f:
            tests += [row["path"] for row in csv.DictReader(f) if row["split"] == "test"]
    assert len(tests) == len(set(tests)) == 30
    assert (out / "cv.png").stat().st_size > 1000
    assert "| 1 |" in (out / "cv.md").read_text()
    # Again: finished folds are reused, nothing is retrained.
    before = sorted(p for p in out.rglob("best.keras"))
    assert main(argv) == 0
    assert sorted(p for p in out.rglob("best.keras")) == before


def test_cv_one_fold_at_a_time(tmp_path, shapes, capsys):
    out = tmp_path / "cv"
    argv = ["cv", "--data", str(shapes), "--folds", "3", "--epochs", "1", "--out", str(out), "--quiet", *TINY]
    assert main([*argv, "--fold", "2"]) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert [r["fold"] for r in summary["per_fold"]] == [2]
    assert main([*argv, "--fold", "7"]) == 2
    assert "fold numbers run from 1 to 3" in capsys.readouterr().err


def test_cv_fold_runs_finds_relative_run_paths_inside_the_folder(tmp_path):
    from maskclf.reports.cvreport import cv_fold_runs

    cv = tmp_path / "elsewhere" / "cv"
    (cv / "fold-1-of-2" / "run-a").mkdir(parents=True)
    (cv / "fold-2-of-2").mkdir(parents=True)
    # Stored as given on the command line (relative to another working directory): found again by fold part.
    summary = {"folds": 2, "per_fold": [{"fold": 1, "run_dir": "bench/out/cv/fold-1-of-2/run-a"},
                                        {"fold": 2, "run_dir": "cv/fold-2-of-2"}]}
    (cv / "cv.json").write_text(json.dumps(summary))
    k, runs = cv_fold_runs(cv)
    assert k == 2 and runs == {1: cv / "fold-1-of-2" / "run-a", 2: cv / "fold-2-of-2"}
    (cv / "cv.json").write_text("{not json")
    with pytest.raises(MaskclfError, match="missing or unreadable"):
        cv_fold_runs(cv)
