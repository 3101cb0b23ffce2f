import csv
import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from conftest import make_class_folders  # noqa: E402
from maskclf.data import datasets, splitting  # noqa: E402
from maskclf.research import synth as S  # noqa: E402
from maskclf.training import train as T  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.config import Config, DataConfig, apply_overrides  # noqa: E402
from maskclf.files import MaskclfError, write_labels  # noqa: E402

TINY = ["model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "image_size=32",
        "batch_size=16", "val_fraction=0.2", "test_fraction=0.2", "patience=50", "epochs=1"]


@pytest.fixture
def shapes3(tmp_path):
    """circle 20, square 8 (the rarest), triangle 20."""
    root = make_class_folders(tmp_path / "shapes", ("circle", "square", "triangle"), 20, size=24)
    for f in sorted((root / "square").iterdir())[8:]:
        f.unlink()
    return root


def _train_counts(data) -> dict:
    cfg = DataConfig(path=str(data))
    ds = datasets.load_dataset(cfg, progress=False)
    splits = splitting.assign_splits(ds, cfg)
    return {n: sum(1 for y, s in zip(ds.labels, splits) if y == k and s == "train")
            for k, n in enumerate(ds.class_names)}


def test_synth_writes_the_rarest_class_from_the_training_split_only(shapes3, tmp_path):
    out = tmp_path / "gen"
    assert S.synthesize(shapes3, out, method="dae", per_class=6, epochs=2, image_size=16, progress=False) == out
    pngs = sorted((out / "square").glob("*.png"))
    assert len(pngs) == 6 and [d.name for d in out.iterdir() if d.is_dir()] == ["square"]
    assert Image.open(pngs[0]).size == (16, 16)
    for f in ("contact_sheet.png", "loss.png", "loss.csv", "synth.json"):
        assert (out / f).is_file(), f
    meta = json.loads((out / "synth.json").read_text())
    assert meta["method"] == "dae" and meta["classes"] == ["square"] and meta["counts"] == {"square": 6}
    assert meta["epochs"] == 2 and meta["seed"] == 0 and meta["source"] == str(shapes3.resolve())
    # Trained on the training split's squares only: validation and test faces never used.
    assert meta["training_images"]["square"] == _train_counts(shapes3)["square"] < 8
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert [(r["class"], r["epoch"]) for r in rows] == [("square", "0"), ("square", "1")]
    assert all(float(r["reconstruction"]) > 0 for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "shapes"]  # no temporary folder left


def test_cli_synth_vae_from_a_run_directory(shapes3, tmp_path, capsys):
    cfg = DataConfig(path=str(shapes3))
    ds = datasets.load_dataset(cfg, progress=False)
    splits = splitting.assign_splits(ds, cfg)
    run = tmp_path / "run"
    run.mkdir()
    write_labels(run / "labels.txt", ds.class_names)
    # A run trained with extra images lists them as train rows; synth must not learn from them.
    extra = make_class_folders(tmp_path / "old_synth", ("circle",), 3, size=24)
    ds2, splits2 = datasets.add_extra_train(ds, splits, DataConfig(path=str(shapes3), extra_train=str(extra)))
    splitting.write_split_csv(run / "split.csv", ds2, splits2)
    out = tmp_path / "vae"
    rc = main(["synth", str(run), "--method", "vae", "--per-class", "3", "--classes", "circle,triangle",
               "--epochs", "1", "--image-size", "16", "--seed", "3", "--out", str(out), "--quiet"])
    assert rc == 0 and str(out) in capsys.readouterr().out
    meta = json.loads((out / "synth.json").read_text())
    assert meta["method"] == "vae" and meta["seed"] == 3 and meta["counts"] == {"circle": 3, "triangle": 3}
    counts = _train_counts(shapes3)
    assert meta["training_images"] == {"circle": counts["circle"], "triangle": counts["triangle"]}
    assert {c: len(list((out / c).glob("*.png"))) for c in ("circle", "triangle")} == {"circle": 3, "triangle": 3}
    # Running again replaces a previous synth output.
    assert main(["synth", str(run), "--per-class", "2", "--classes", "circle", "--epochs", "1", "--image-size",
                 "16", "--out", str(out), "--quiet"]) == 0
    assert sorted(d.name for d in out.iterdir() if d.is_dir()) == ["circle"]


def test_synth_errors_and_interruption_leave_nothing(shapes3, tmp_path, monkeypatch, capsys):
    with pytest.raises(MaskclfError, match="--classes: cat not a class.*circle, square, triangle"):
        S.synthesize(shapes3, tmp_path / "a", per_class=2, classes=["cat"], epochs=1, image_size=16, progress=False)
    with pytest.raises(MaskclfError, match="multiple of 8"):
        S.synthesize(shapes3, tmp_path / "a", per_class=2, epochs=1, image_size=20, progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(MaskclfError, match="not a `maskclf synth` folder"):
        S.synthesize(shapes3, tmp_path / "mine", per_class=2, epochs=1, image_size=16, progress=False)
    assert main(["synth", str(tmp_path / "nowhere"), "--per-class", "2", "--out", str(tmp_path / "a")]) == 2
    assert "not found" in capsys.readouterr().err

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        S.synthesize(shapes3, tmp_path / "gen", per_class=2, epochs=1, image_size=16, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "shapes"]


def test_extra_train_joins_the_training_split_only(tmp_path):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    extra = make_class_folders(tmp_path / "extra", ("square",), 5, seed=7)
    cfg = apply_overrides(Config(), [f"data.path={data}", f"train.out={tmp_path / 'runs'}", *TINY])
    ds = datasets.load_dataset(cfg.data, progress=False)
    expected = splitting.assign_splits(ds, cfg.data)
    run = T.train(apply_overrides(cfg, [f"data.extra_train={extra}"]), progress=False)
    rows = list(csv.DictReader(open(run / "split.csv")))
    added = [r for r in rows if r["source"] == str(extra)]
    assert len(added) == 5 and {r["split"] for r in added} == {"train"} and {r["label"] for r in added} == {"square"}
    assert {r["group"] for r in added} == {"extra:extra/square"}
    # The dataset's own split is unchanged: the same validation and test images as without extras.
    own = {r["path"]: r["split"] for r in rows if r["source"] != str(extra)}
    assert own == dict(zip(ds.paths, expected))
    m = json.loads((run / "metrics.json").read_text())
    assert m["training"]["train_images"] == expected.count("train") + 5  # the training used them
    assert "5 extra training images" in (run / "data_report.txt").read_text()


def test_extra_train_class_names_must_be_dataset_classes(tmp_path, capsys):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 10)
    extra = make_class_folders(tmp_path / "gen", ("square", "triangle"), 2)
    cfg = DataConfig(path=str(data), extra_train=str(extra))
    ds = datasets.load_dataset(cfg, progress=False)
    splits = splitting.assign_splits(ds, cfg)
    with pytest.raises(MaskclfError, match=f"{extra}: .*triangle.*not classes of the dataset"):
        datasets.add_extra_train(ds, splits, cfg)
    rc = main(["train", "--data", str(data), "--extra-train", str(extra), "--out", str(tmp_path / "runs"),
               "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(extra) in err[0] and "triangle" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made
    # A class map applies to the extra folders as to the dataset; the input dataset is never changed.
    mapped = DataConfig(path=str(data), extra_train=str(extra), class_map={"triangle": "square"})
    ds2, splits2 = datasets.add_extra_train(ds, splits, mapped)
    assert len(ds2) == len(ds) + 4 and splits2[len(ds):] == ["train"] * 4 and len(splits) == len(ds)
    with pytest.raises(MaskclfError, match="not found"):
        datasets.add_extra_train(ds, splits, DataConfig(path=str(data), extra_train=str(tmp_path / "nope")))


def test_generated_images_differ_from_each_other(shapes3):
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((16, 16)), np.float32) / 255
                  for p in sorted((shapes3 / "circle").iterdir())[:10]])
    enc, dec, rows = S.train_autoencoder("dae", x, epochs=1, latent_dim=8)
    gen = S.generate("dae", enc, dec, x, 5)
    assert gen.shape == (5, 16, 16, 3) and gen.dtype == np.uint8
    assert len({g.tobytes() for g in gen}) == 5 and rows[0]["val_reconstruction"] is not None
