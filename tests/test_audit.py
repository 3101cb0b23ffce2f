import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from maskclf.research.audit import object_info, confident_joint  # noqa: E402
from maskclf.cli import main  # noqa: E402

# --model: one network (without it, train and cv give the two-family default ensemble)
TINY = ["--model", "maskclf_cnn", "model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "data.image_size=32"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_confident_joint_counts_faces_above_their_class_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9],  # the third face labelled 0 looks like a 1
                  [0.2, 0.8], [0.3, 0.7], [0.45, 0.55]])
    t, counted, joint = confident_joint(y, p)
    np.testing.assert_allclose(t, [(0.9 + 0.8 + 0.1) / 3, (0.8 + 0.7 + 0.55) / 3])
    assert counted.tolist() == [0, 0, 1, 1, 1, -1]  # the last reaches neither threshold (0.6, 0.683)
    assert joint.tolist() == [[2, 1], [0, 2]]
    # A class nobody is labelled with can never be reached (threshold 1).
    t3, counted3, _ = confident_joint(y, np.c_[p * 0.9, np.full(6, 0.1)])
    assert t3[2] == 1.0 and (counted3 != 2).all()


def _colour_folders(root: Path, per_class: int = 16) -> Path:
    """ROOT/green and ROOT/red: noisy flat colours, with the first three green images filed under red."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, (r, g) in {"green": (40, 200), "red": (200, 40)}.items():
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            base = np.stack([np.full((32, 32), r), np.full((32, 32), g), np.full((32, 32), 90)], axis=-1)
            px = np.clip(base + rng.integers(-40, 41, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / c / f"{c}_{i:03d}.png")
    for p in sorted((root / "green").iterdir())[:3]:
        shutil.move(str(p), root / "red" / p.name)
    return root


def _colour_model():
    """A fixed model that calls an image by its mean red minus green: what a well-trained net would say here."""
    import keras

    x = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(2, activation="softmax")
    y = dense(keras.layers.GlobalAveragePooling2D()(x))
    k = 10.0 / 255.0
    dense.set_weights([np.array([[-k, k], [k, -k], [0.0, 0.0]], dtype="float32"), np.zeros(2, dtype="float32")])
    return keras.Model(x, y)


def test_suspects_finds_planted_wrong_labels_out_of_fold(tmp_path, capsys):
    data = _colour_folders(tmp_path / "colours")
    out = tmp_path / "cv"
    # The cv folder, splits and runs are real; each fold's model is then replaced by the fixed colour model,
    # so which faces are suspects is known exactly (a 1-epoch net on 32 images would be a coin toss).
    assert main(["cv", "--data", str(data), "--folds", "3", "--epochs", "1", "--out", str(out), "--quiet",
                 *TINY]) == 0
    capsys.readouterr()
    folds = sorted(out.rglob("best.keras"))
    assert len(folds) == 3
    for f in folds:
        _colour_model().save(f)
    assert main(["suspects", str(out), "--quiet", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "out-of-fold predictions of 3 fold models" in text and "**3 suspects**" in text
    preds = _rows(out / "suspects" / "predictions.csv")
    assert len(preds) == 32 and len({r["path"] for r in preds}) == 32  # every image once, by its own fold
    assert {r["fold"] for r in preds} == {"fold 1", "fold 2", "fold 3"}
    sus = _rows(out / "suspects" / "suspects.csv")
    assert sorted(Path(r["crop"]).name for r in sus) == ["green_000.png", "green_001.png", "green_002.png"]
    for r in sus:
        assert (r["label"], r["suggested"]) == ("red", "green") and float(r["p_label"]) < 0.01
    assert [r["rank"] for r in sus] == ["1", "2", "3"]
    assert [float(r["p_label"]) for r in sus] == sorted(float(r["p_label"]) for r in sus)  # worst first
    assert (out / "suspects" / "suspects.png").stat().st_size > 1000
    md = (out / "suspects" / "suspects.md").read_text()
    assert "| red | 3 | 16 | 19 |" in md  # the confident joint: 3 of the 19 "red" images counted as green
    assert md.count("| green_00") == 2  # --top 2: two rows in the table (all three in the CSV)


def test_suspects_points_at_the_voc_object_to_edit(tmp_path, sample_dir, capsys):
    from maskclf.data.voc import parse_voc

    out = tmp_path / "runs"
    assert main(["train", "--data", str(sample_dir), "--epochs", "1", "--out", str(out), "--quiet", *TINY]) == 0
    run = next(out.iterdir())
    assert main(["suspects", str(run), "--out", str(tmp_path / "sus"), "--quiet"]) == 0
    preds = _rows(tmp_path / "sus" / "predictions.csv")
    tests = [r for r in _rows(run / "split.csv") if r["split"] == "test"]
    assert sorted(r["path"] for r in preds) == sorted(r["path"] for r in tests)
    # Each test face traces back to its photo, the object's index in the XML, and that object's label.
    for row in tests[:40]:
        info = object_info(row)
        photo = Path(info["photo"])
        assert photo.is_file() and photo.parent.name == "images"
        ann = parse_voc(sample_dir / "annotations" / (photo.stem + ".xml"))
        assert ann.objects[info["object"]].name == row["label"]
    # Not a run and not a cv folder: one clear line.
    assert main(["suspects", str(tmp_path)]) == 2
    assert "neither a `maskclf cv` folder" in capsys.readouterr().err
