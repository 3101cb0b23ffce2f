import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

sys.path.insert(0, os.path.dirname(__file__))
from conftest import make_class_folders  # noqa: E402
from maskclf.cli import main  # noqa: E402

# --model: one network (without it, train and cv give the two-family default ensemble)
TINY = ["--model", "maskclf_cnn", "model.filters=[4,8]", "model.convs_per_block=1", "model.dense_units=[8]", "data.image_size=32"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data") / "shapes", ("circle", "square", "triangle"), 12)


@pytest.fixture(scope="module")
def runs(shapes, tmp_path_factory):
    """Two runs of one split (training seeds 0 and 1) and one of another split."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, extra in (("a", ["train.seed=0"]), ("b", ["train.seed=1"]), ("other", ["data.split_seed=7"])):
        assert main(["train", "--data", str(shapes), "--out", str(root / name), "--epochs", "2", "--quiet",
                     *TINY, *extra]) == 0
        out.append(next((root / name).iterdir()))
    return out


def test_ensemble_averages_the_members_and_is_an_ordinary_run(runs, tmp_path, capsys):
    from maskclf.reports.evaluate import load_run_model

    a, b, _ = runs
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "member 0" in text and "ensemble balanced accuracy" in text and "2 classifier calls" in text
    for f in ("best.keras", "labels.txt", "split.csv", "config.yaml", "metrics.json", "confusion_matrix.png",
              "ensemble.json", "run.json"):
        assert (out / f).is_file(), f
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    want = (np.asarray(load_run_model(a)(x)) + np.asarray(load_run_model(b)(x))) / 2
    np.testing.assert_allclose(np.asarray(load_run_model(out)(x)), want, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble_of"] == [str(a.resolve()), str(b.resolve())]
    assert 0 <= metrics["validation_balanced_accuracy"] <= 1
    assert json.loads((out / "ensemble.json").read_text())["classifier_calls_per_face"] == 2
    # Export takes it like any run: one .tflite that agrees with the Keras ensemble.
    assert main(["export", str(out), "--quantize", "float32", "--quiet"]) == 0
    report = json.loads((out / "export" / "report.json").read_text())
    assert report["precisions"]["float32"]["agreement"] >= 0.999
    from maskclf.export.convert import read_tflite_metadata
    meta = read_tflite_metadata(out / "export" / "model_float32.tflite")
    assert meta["ensemble_members"] == 2
    # Named by its members' families (ensemble.json records them), not the first member's alone.
    from maskclf.config import load_config
    from maskclf.edge.tflite_metadata import read_standard_metadata

    family = load_config(a / "config.yaml").model.name
    assert [m["model"] for m in json.loads((out / "ensemble.json").read_text())["members"]] == [family, family]
    assert meta["model_name"] == report["model_name"] == f"{family}+{family}"
    assert read_standard_metadata(out / "export" / "model_float32.tflite").name == f"maskclf {family}+{family} face-mask classifier"
    from maskclf.edge.classifier import FaceClassifier
    assert FaceClassifier(out / "export", precision="float32").describe()["ensemble_members"] == 2  # device JSON


def test_members_of_different_input_sizes_are_fed_the_largest_resized(runs, shapes, tmp_path):
    # A small CNN and a larger-input model (e.g. EfficientNet-Lite0 at 96 px beside maskclf_cnn at 35 px).
    import keras

    from maskclf.config import load_config
    from maskclf.reports.evaluate import load_run_model

    a = runs[0]  # 32 px
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "big"), "--epochs", "1", "--quiet",
                 *TINY, "data.image_size=40"]) == 0
    big = next((tmp_path / "big").iterdir())
    out = tmp_path / "ens"
    assert main(["ensemble", str(a), str(big), "--out", str(out), "--quiet"]) == 0
    assert load_config(out / "config.yaml").data.image_size == 40
    x = np.random.default_rng(1).uniform(0, 255, (4, 40, 40, 3)).astype("float32")
    small = np.asarray(load_run_model(a)(keras.layers.Resizing(32, 32, interpolation="bilinear")(x)))
    want = (small + np.asarray(load_run_model(big)(x))) / 2
    np.testing.assert_allclose(np.asarray(load_run_model(out)(x)), want, atol=1e-5)
    assert main(["export", str(out), "--quantize", "float32,int8", "--min-agreement", "int8=0.5", "--quiet"]) == 0
    report = json.loads((out / "export" / "report.json").read_text())
    assert report["precisions"]["float32"]["agreement"] >= 0.999  # the resize is a builtin op
    # MediaPipe Tasks' ImageClassifier reads the two-member, two-size file from its metadata alone.
    import subprocess

    from maskclf.edge.classifier import FaceClassifier
    from test_export import REPO, _mediapipe_python

    exe = _mediapipe_python()
    crops = np.random.default_rng(2).integers(0, 256, (6, 40, 40, 3)).astype(np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    paths = [str(out / "export" / f"model_{p}.tflite") for p in ("float32", "int8")]
    r = subprocess.run([exe, str(REPO / "tests" / "mediapipe_classify.py"), str(tmp_path / "crops.npy"), *paths],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])["models"]
    for path in paths:
        clf = FaceClassifier(path)
        assert got[path]["labels"] == clf.class_names
        assert np.abs(np.array(got[path]["scores"]) - clf.predict(crops)).max() < 1e-5, path


def test_ensemble_refuses_what_it_cannot_score_honestly(runs, shapes, tmp_path, capsys):
    a, b, other = runs
    cases = [([str(a)], "at least two runs"),
             ([str(a), str(a)], "named twice"),
             ([str(a), str(other)], "different split"),
             ([str(a), str(tmp_path)], "missing")]
    for members, message in cases:
        assert main(["ensemble", *members, "--out", str(tmp_path / "x")]) != 0
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()  # nothing half-made
    # Training-only additions (lite0's YuNet-framed copies of training faces) are not another split.
    import shutil

    from maskclf.training.ensemble import check_members

    more = Path(shutil.copytree(b, tmp_path / "b-more"))
    with open(more / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    extra = {**next(r for r in rows if r["split"] == "train"), "path": str(tmp_path / "yunet-face.png")}
    with open(more / "split.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow(extra)
    assert check_members([a, more])[0] == [Path(a), more]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["ensemble", str(a), str(b), "--out", str(busy)]) != 0
    assert "not empty" in capsys.readouterr().err and (busy / "keep.txt").read_text() == "mine"
    ens = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(ens), "--quiet"]) == 0
    assert main(["ensemble", str(ens), str(a), "--out", str(tmp_path / "y")]) != 0
    assert "itself an ensemble" in capsys.readouterr().err
    # Grad-CAM of an ensemble: the mean of its members' heatmaps of the ensemble's class
    from maskclf.reports import explain as E

    face = next(shapes.rglob("*.png"))
    assert main(["explain", str(ens), str(face), "--out", str(tmp_path / "why")]) == 0
    assert (tmp_path / "why" / f"{face.stem}_gradcam.png").is_file()
    (got,) = E.explain_images(ens, [face], save=False)
    members = [E.explain_images(m, [face], class_name=got.explained_class, save=False)[0] for m in (a, b)]
    for method in ("gradcam", "gradcam++"):
        np.testing.assert_allclose(got.heatmaps[method], (members[0].heatmaps[method]
                                                          + members[1].heatmaps[method]) / 2, atol=1e-4)
    # calibrate: each member fitted on the validation split and folded into its own last layer
    assert main(["calibrate", str(ens), "--quiet"]) == 0
    assert "member 0: temperature" in capsys.readouterr().out
    fits = json.loads((ens / "calibration.json").read_text())["members"]
    before, after = (keras.saving.load_model(ens / f, compile=False) for f in ("uncalibrated.keras", "best.keras"))
    for i, fit in enumerate(fits):
        k0, k1 = (m.get_layer(f"member_{i}").get_layer("probabilities").get_weights()[0] for m in (before, after))
        np.testing.assert_allclose(k1, k0 / fit["temperature"], rtol=1e-5)
    assert len(fits) == 2
    assert main(["report", str(ens), "--quiet"]) == 0
    assert "the mean of its members' heatmaps" in (ens / "report.md").read_text() and (ens / "errors.png").is_file()


def test_ensemble_of_cv_folders_goes_fold_by_fold_and_resumes(shapes, tmp_path, capsys):
    # `cv --ensemble 2` = `cv` with train.seed=0 and 1, then `ensemble` of the two folders.
    assert main(["cv", "--data", str(shapes), "--folds", "2", "--epochs", "1", "--out", str(tmp_path / "cv"),
                 "--quiet", "--ensemble", "2", *TINY]) == 0
    assert "ensemble of 2 cv folders" in capsys.readouterr().out
    cvs = [tmp_path / "cv-seed0", tmp_path / "cv-seed1"]
    assert [json.loads((c / "cv.json").read_text())["config"]["train"]["seed"] for c in cvs] == [0, 1]
    assert (tmp_path / "cv-ensemble2" / "cv.json").is_file()
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, cvs), "--out", str(out), "--quiet"]) == 0
    assert "ensemble of 2 cv folders" in capsys.readouterr().out
    summary = json.loads((out / "cv.json").read_text())
    assert summary["folds_done"] == 2 and summary["classifier_calls_per_face"] == 2
    assert sum(r["test_images"] for r in summary["per_fold"]) == 36  # every image tested once
    assert all(0 <= r["validation_best"] <= 1 for r in summary["per_fold"])
    for r in summary["per_fold"]:
        with open(os.path.join(r["run_dir"], "ensemble.json")) as f:
            members = json.load(f)["members"]
        assert [os.path.basename(os.path.dirname(os.path.dirname(m["run_dir"]))) for m in members] == [
            "cv-seed0", "cv-seed1"]
    before = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("best.keras"))
    assert main(["ensemble", *map(str, cvs), "--out", str(out), "--quiet"]) == 0
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("best.keras")) == before  # reused, not rebuilt
    assert main(["ensemble", str(cvs[0]), str(next(next(cvs[1].glob("fold-1-*")).iterdir())),
                 "--out", str(tmp_path / "mixed")]) != 0
    assert "not both" in capsys.readouterr().err
    # Distillation under cv: fold f learns from the teacher folder's fold f (same folds, so no test image leaks).
    assert main(["cv", "--data", str(shapes), "--folds", "2", "--epochs", "1", "--out", str(tmp_path / "distil"),
                 "--quiet", *TINY, f"train.distill_from={out}"]) == 0
    from maskclf.config import load_config
    for f in (1, 2):
        run = next((tmp_path / "distil" / f"fold-{f}-of-2").iterdir())
        assert load_config(run / "config.yaml").train.distill_from == str((out / f"fold-{f}-of-2").resolve())
    assert main(["cv", "--data", str(shapes), "--folds", "3", "--epochs", "1", "--out", str(tmp_path / "d3"),
                 *TINY, f"train.distill_from={out}"]) != 0
    assert "2 folds, this cv has 3" in capsys.readouterr().err


def test_train_ensemble_trains_the_members_and_their_ensemble(shapes, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data", str(shapes), "--out", str(out), "--epochs", "1", "--quiet", "--ensemble", "2",
                 *TINY, "train.seed=5"]) == 0
    text = capsys.readouterr().out
    ens = next(p for p in out.iterdir() if p.name.endswith("-ensemble2"))
    assert f"run directory: {ens}" in text and "ensemble balanced accuracy" in text
    members = json.loads((ens / "ensemble.json").read_text())["members"]
    from maskclf.config import load_config
    assert [load_config(os.path.join(m["run_dir"], "config.yaml")).train.seed for m in members] == [5, 6]
    assert main(["train", "--data", str(shapes), "--out", str(out), "--ensemble", "1"]) != 0
    assert "2 or more members" in capsys.readouterr().err


def test_distillation_learns_from_a_teacher_of_the_same_split_only(runs, shapes, tmp_path, capsys):
    from maskclf.config import Config, apply_overrides
    from maskclf.data.splitting import read_split_csv
    from maskclf.reports.evaluate import load_run_model, predict_paths
    from maskclf.files import read_labels
    from maskclf.research.levers import distillation_targets

    a, b, other = runs
    ens = tmp_path / "ens"
    assert main(["ensemble", str(a), str(b), "--out", str(ens), "--quiet"]) == 0
    out = tmp_path / "student"
    assert main(["train", "--data", str(shapes), "--out", str(out), "--epochs", "1", "--quiet", *TINY,
                 f"train.distill_from={ens}", "train.distill_weight=0.7", "train.distill_temperature=3"]) == 0
    student = next(out.iterdir())
    assert (student / "best.keras").is_file() and json.loads((student / "run.json").read_text())["status"] == "complete"
    assert read_split_csv(student / "split.csv") == read_split_csv(a / "split.csv")  # same split as the teacher
    # The targets: 0.3 x one-hot label + 0.7 x the ensemble's probabilities softened at T = 3.
    rows = read_split_csv(a / "split.csv")
    split = {s: [r["path"] for r in rows if r["split"] == s] for s in ("train", "validation", "test")}
    names = read_labels(a / "labels.txt")
    labels = [names.index(r["label"]) for r in rows if r["split"] == "train"]
    cfg = apply_overrides(Config(), {"train.distill_from": str(ens), "train.distill_weight": 0.7,
                                     "train.distill_temperature": 3.0})
    got = distillation_targets(cfg, names, split, labels, progress=False)
    p = predict_paths(load_run_model(ens), split["train"], 32).astype("float64") ** (1 / 3)
    want = 0.3 * np.eye(3)[labels] + 0.7 * p / p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # A teacher of another split trained on some of this split's test images: refused before training.
    assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "leak"), "--epochs", "1", "--quiet", *TINY,
                 f"train.distill_from={other}"]) != 0
    err = capsys.readouterr().err
    assert "the teacher trained on" in err and "same split" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "leak").exists() or not any((tmp_path / "leak").iterdir())  # no run directory
    for bad, message in ((f"train.distill_from={tmp_path / 'nothing'}", "no best.keras"),
                         ("train.distill_weight=0", "out of range"),
                         ("augment.mixup_alpha=0.2", "cannot be combined")):
        extra = [] if "distill_from" in bad else [f"train.distill_from={ens}"]
        assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "bad"), *TINY, *extra, bad]) != 0
        assert message in capsys.readouterr().err


def test_cv_of_two_families_averages_them_fold_by_fold_and_resumes(shapes, tmp_path, capsys):
    from maskclf.files import members_of

    out = tmp_path / "cv"
    argv = ["cv", "--data", str(shapes), "--folds", "2", "--epochs", "1", "--out", str(out), "--quiet",
            "--ensemble-models", "maskclf_cnn,seed004_cnn", "model.init_from=none"]
    assert main(argv) == 0
    assert "maskclf_cnn+seed004_cnn" in capsys.readouterr().out  # cv.md's title names the members
    summary = json.loads((out / "cv.json").read_text())
    assert summary["folds_done"] == 2 and summary["classifier_calls_per_face"] == 2
    assert summary["members"] == ["maskclf_cnn-35", "seed004_cnn-35"]
    assert sum(r["test_images"] for r in summary["per_fold"]) == 36  # every image tested once
    assert all(0 <= r["validation_best"] <= 1 for r in summary["per_fold"])  # the ensemble's own validation figure
    for f, r in enumerate(summary["per_fold"], start=1):
        members = [m["run_dir"] for m in members_of(r["run_dir"])]
        assert [m.rsplit("-", 2)[-2] for m in members] == ["maskclf_cnn", "seed004_cnn"]
        assert all(os.path.dirname(m) == str((out / f"fold-{f}-of-2").resolve()) for m in members)
    trained = sorted(out.rglob("best.keras"))
    assert len(trained) == 6  # per fold: two members and their average
    mtimes = [p.stat().st_mtime for p in trained]
    assert main(argv) == 0  # run again: every fold is found finished, nothing is retrained
    assert sorted(out.rglob("best.keras")) == trained and [p.stat().st_mtime for p in trained] == mtimes


def test_default_ensemble_refuses_what_it_cannot_train_before_training(shapes, tmp_path, capsys):
    # No --model trains maskclf_cnn + efficientnet_lite0, each with its family's size and recipe, fine-tuning
    # included: README's set-up command checks that run (test_readme.py::check_train), here the refusals.
    for argv, message in ((["--ensemble-models", "maskclf_cnn"], "two or more different"),
                          (["--ensemble-models", "maskclf_cnn,nope"], "unknown model"),
                          (["--ensemble-models", "maskclf_cnn,vgg19", "--model", "vgg19"], "leave out --model"),
                          (["model.convs_per_block=1"], "add --model maskclf_cnn for one network")):
        assert main(["train", "--data", str(shapes), "--out", str(tmp_path / "x"), *argv]) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was trained
