import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import make_class_folders  # noqa: E402
from maskclf.training import calibrate as C  # noqa: E402
from maskclf.cli import main  # noqa: E402
from maskclf.reports.evaluate import expected_calibration_error  # noqa: E402


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in _softmax(z)])  # labels drawn from softmax(z): calibrated
    over = _softmax(3.0 * z)  # the same model, three times too confident
    t = C.fit_temperature(over, y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(y, _softmax(np.log(over) / t)) < 0.5 * expected_calibration_error(y, over)


def test_class_bias_recovers_a_rare_class_and_stays_at_zero_when_not_needed():
    rng = np.random.default_rng(1)
    y = np.array([0] * 900 + [1] * 100)
    z = rng.normal(0, 1, (1000, 2)) + np.eye(2)[y] * 2.0
    z[:, 1] -= 2.5  # the rare class is under-called
    z3 = np.concatenate([z, np.full((1000, 1), -9.0)], axis=1)
    y3 = y
    before = np.mean([np.mean(z3.argmax(1)[y3 == c] == c) for c in (0, 1)])
    b = C.fit_class_bias(_softmax(z3), y3)
    after = np.mean([np.mean((z3 + b).argmax(1)[y3 == c] == c) for c in (0, 1)])
    assert b[0] == 0 and b[1] > 1.0 and after > before + 0.1
    ok = np.eye(3)[rng.integers(0, 3, 300)] * 5.0  # already perfect: nothing to move
    assert np.all(C.fit_class_bias(_softmax(ok), ok.argmax(1)) == 0)


def test_fold_into_model_is_exact():
    from maskclf.models.registry import create_model
    m = create_model("small_cnn", 3, 32, filters=[4], blocks=1, dense_units=[8])
    x = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    p = np.asarray(m(x))
    C.fold_into_model(m, 2.0, [0.0, 0.5, -1.0])
    want = _softmax(np.log(p) / 2.0 + np.array([0.0, 0.5, -1.0]))
    np.testing.assert_allclose(np.asarray(m(x)), want, atol=1e-5)


def test_calibrate_command_folds_into_the_run_and_can_be_repeated_or_undone(tmp_path, capsys):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square", "triangle"), 20)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "runs"), "--epochs", "2", "--quiet",
                 "--model", "maskclf_cnn", "model.filters=[4,8]", "model.convs_per_block=1", "model.dense_units=[8]", "image_size=32",
                 "val_fraction=0.3", "test_fraction=0.2"]) == 0
    run = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["calibrate", str(run), "--quiet"]) == 0
    assert "temperature" in capsys.readouterr().out
    info = json.loads((run / "calibration.json").read_text())
    assert info["method"] == "temperature+bias" and info["temperature"] > 0
    assert set(info["class_bias"]) == {"circle", "square", "triangle"}
    assert info["validation_balanced_accuracy_after"] >= info["validation_balanced_accuracy_before"]
    assert (run / "uncalibrated.keras").is_file()
    # Calibrating again starts from the trained weights: the same fit, not a fit on top of the first.
    assert main(["calibrate", str(run), "--quiet"]) == 0
    again = json.loads((run / "calibration.json").read_text())
    assert again["temperature"] == pytest.approx(info["temperature"], rel=1e-3)
    assert again["class_bias"] == info["class_bias"]
    # none restores the trained model.
    assert main(["calibrate", str(run), "--method", "none", "--quiet"]) == 0
    assert json.loads((run / "calibration.json").read_text())["temperature"] == 1.0
    assert (run / "best.keras").read_bytes() == (run / "uncalibrated.keras").read_bytes()


def test_training_with_calibration_records_it(tmp_path):
    from maskclf.config import Config, apply_overrides
    from maskclf.training.train import train
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 20)
    cfg = apply_overrides(Config(), [f"data.path={data}", f"train.out={tmp_path / 'runs'}", "epochs=1",
                                     "model.filters=[4]", "model.blocks=1", "model.dense_units=[8]", "image_size=32",
                                     "train.calibration=temperature"])
    run = train(cfg, progress=False)
    m = json.loads((run / "metrics.json").read_text())
    assert m["training"]["calibration"]["method"] == "temperature"
    assert (run / "calibration.json").is_file()
