import csv
import json

import pytest

keras = pytest.importorskip("keras")

from conftest import make_class_folders  # noqa: E402
from maskclf.training import train as T  # noqa: E402
from maskclf.config import Config, apply_overrides  # noqa: E402

TINY = ["model.filters=[8,16]", "model.convs_per_block=1", "model.dense_units=[16]", "image_size=32",
        "batch_size=16", "val_fraction=0.2", "test_fraction=0.2", "patience=50", "learning_rate=0.003"]


def cfg_for(data, out, *extra):
    return apply_overrides(Config(), [f"data.path={data}", f"train.out={out}", *TINY, *extra])


def test_class_weights_modes():
    w = T.class_weights([0] * 8 + [1] * 2, 2, "auto")
    assert w == {0: 10 / 16, 1: 10 / 4}
    s = T.class_weights([0] * 8 + [1] * 2, 2, "sqrt")
    assert s[1] == pytest.approx(2.5 ** 0.5)
    assert T.class_weights([0, 1], 2, "none") is None
    assert T.class_weights([0, 1], 2, {"1": 3}) == {1: 3.0}


def test_train_writes_a_complete_run_and_learns(tmp_path):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 40)
    # Checkpointed on validation loss: the default monitor, balanced accuracy on 16 validation shapes, reaches 1.0
    # while the net is half-trained (epoch 7 of 12 in one run on a busy host) and keeps that first best, which then
    # scored 0.75 on the test shapes; the loss keeps falling to the converged net (the default's runs elsewhere).
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=12", "monitor=val_loss"), progress=False)
    assert run.parent == tmp_path / "runs" and run.name.endswith("-maskclf_cnn-32")  # the default model
    for f in ["config.yaml", "labels.txt", "split.csv", "history.csv", "best.keras", "metrics.json",
              "history.png", "confusion_matrix.png", "roc.png", "data_report.txt"]:
        assert (run / f).is_file(), f
    assert (run / "tensorboard").is_dir()
    assert not (run / "backup").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    m = json.loads((run / "metrics.json").read_text())
    for k in ["accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion_matrix", "f1", "specificity",
              "npv", "roc_auc", "threshold", "training"]:
        assert k in m, k
    assert set(m["per_class"]) == {"circle", "square"}
    assert m["training"]["learning_rate"] == pytest.approx(0.003)  # the rate used, also when left unset
    assert m["balanced_accuracy"] >= 0.8, m  # circles vs squares is learnable in a few epochs
    header = next(csv.reader(open(run / "history.csv")))
    assert "val_balanced_accuracy" in header
    assert (run / "labels.txt").read_text().split() == ["circle", "square"]


def test_interrupted_run_resumes_in_the_same_directory(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    cfg = cfg_for(data, tmp_path / "runs", "epochs=4")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    real = T.make_callbacks
    monkeypatch.setattr(T, "make_callbacks", lambda *a, **k: real(*a, **k) + [Crash()])
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, progress=False)
    (first,) = list((tmp_path / "runs").iterdir())
    assert json.loads((first / "run.json").read_text())["status"] == "running"
    assert (first / "backup").is_dir()
    monkeypatch.setattr(T, "make_callbacks", real)
    run = T.train(cfg, progress=False)
    assert run == first
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(run / "history.csv"))]
    assert epochs == [0, 1, 2, 3]  # epochs 0-1 before the crash, 2-3 after: nothing redone
    # A finished run is not reused: the same command again starts a new run.
    again = T.train(apply_overrides(cfg, ["epochs=4"]), progress=False)
    assert again != run


def test_fine_tuning_unfreezes_top_backbone_layers_but_not_batchnorm():
    from maskclf.models.registry import backbone_of, create_model

    m = create_model("mobilenet_v2", 2, 32, trainable=False)
    base = backbone_of(m)
    assert base is not None and not base.trainable
    assert T._set_backbone_for_fine_tuning(m, 10)
    trainable = [l for l in base.layers if l.trainable and l.weights]
    assert trainable and all(not isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    assert all(l in base.layers[-10:] for l in trainable)
    assert not T._set_backbone_for_fine_tuning(create_model("small_cnn", 2, 32), 10)


def test_learning_rate_schedules():
    assert T.learning_rate_for("constant", 0.01, 10, 5) == 0.01
    sched = T.learning_rate_for("cosine", 0.01, 10, 5)
    lr = [float(sched(s)) for s in (0, 5, 30, 50)]
    assert lr[0] < lr[1] == pytest.approx(0.01) and lr[1] > lr[2] > lr[3] >= 0  # warm-up, then decay


def test_early_stopping_is_off_by_default_and_on_with_a_patience(tmp_path):
    names = lambda cbs: [type(c).__name__ for c in cbs]  # noqa: E731
    assert Config().train.patience == 0
    assert "EarlyStopping" not in names(T.make_callbacks(tmp_path, None, "val_balanced_accuracy", 0))
    assert "EarlyStopping" in names(T.make_callbacks(tmp_path, None, "val_balanced_accuracy", 3))
    with pytest.raises(Exception, match="patience"):
        apply_overrides(Config(), ["train.patience=-1"])


@pytest.mark.parametrize("extra, loss", [(["train.focal_gamma=2"], "CategoricalFocalCrossentropy"),
                                         (["train.label_smoothing=0.1"], "CategoricalCrossentropy")])
def test_focal_loss_and_label_smoothing_train_on_one_hot_labels(tmp_path, monkeypatch, extra, loss):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    seen = []
    real = T.compile_model
    monkeypatch.setattr(T, "compile_model", lambda m, *a, **k: (real(m, *a, **k), seen.append(m.loss))[0])
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=2", *extra), progress=False)
    assert type(seen[0]).__name__ == loss
    assert json.loads((run / "metrics.json").read_text())["balanced_accuracy"] >= 0.0
    with pytest.raises(Exception, match="focal_gamma"):
        apply_overrides(Config(), ["train.focal_gamma=-1"])
    # A default-valued new field leaves old runs' fingerprints (resume, compare, cv) unchanged.
    assert apply_overrides(Config(), ["train.focal_gamma=0"]).fingerprint() == Config().fingerprint()


def test_mixup_cutmix_and_balanced_sampling_train(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    seen = []
    real = T.compile_model
    monkeypatch.setattr(T, "compile_model", lambda m, *a, **k: (real(m, *a, **k), seen.append(m.loss))[0])
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=2", "augment.mixup_alpha=0.4", "augment.cutmix_alpha=1",
                          "train.sampling=balanced"), progress=False)
    assert type(seen[0]).__name__ == "CategoricalCrossentropy"  # mixed labels need a categorical loss
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    for bad in ["augment.mixup_alpha=-1", "augment.mix_probability=2", "train.sampling=oversample"]:
        with pytest.raises(Exception, match=bad.split("=")[0].split(".")[1]):
            apply_overrides(Config(), [bad])
    assert apply_overrides(Config(), ["augment.mixup_alpha=0", "train.sampling=shuffle"]).fingerprint() \
        == Config().fingerprint()


def test_fit_inputs_carry_class_weights_through_the_mix_and_skip_auto_under_balanced_sampling():
    import numpy as np
    import tensorflow as tf

    x = np.zeros((4, 8, 8, 3), np.float32)
    y = np.array([0, 0, 0, 1], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    cfg = apply_overrides(Config(), ["augment.mixup_alpha=0.4"])
    tr, val, cw = T.fit_inputs(cfg, ["a", "b"], list(y), ds, ds)
    assert cw is None  # weights travel as sample weights
    xb, yb, sw = next(iter(tr))
    np.testing.assert_allclose(sw.numpy(), yb.numpy() @ np.array([4 / 6, 4 / 2]), rtol=1e-5)
    assert next(iter(val))[1].shape == (4, 2)  # one-hot validation labels for the categorical loss
    _, _, cw = T.fit_inputs(apply_overrides(Config(), ["train.sampling=balanced"]), ["a", "b"], list(y), ds, ds)
    assert cw is None
    _, _, cw = T.fit_inputs(apply_overrides(Config(), ["train.sampling=balanced", "train.class_weight=sqrt"]),
                            ["a", "b"], list(y), ds, ds)
    assert cw[1] == pytest.approx(2 ** 0.5)


def test_weight_average_is_what_validation_and_the_checkpoint_see(tmp_path):
    import numpy as np

    from maskclf.training.callbacks import WeightAverage

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    y = x @ np.array([[1.0], [-2.0]], "float32")
    avg = WeightAverage(0.5)
    seen, raw = [], []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raw.append(model.get_weights()[0].copy())

        def on_epoch_end(self, epoch, logs=None):
            seen.append(model.get_weights()[0].copy())

    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[avg, Spy(), avg.restore])
    # The EMA of the per-step weights (the first step's weights start it), by hand:
    ema = raw[0]
    for w in raw[1:]:
        ema = 0.5 * ema + 0.5 * w
    np.testing.assert_allclose(seen[-1], ema, rtol=1e-5)  # callbacks between the two saw the average
    np.testing.assert_allclose(model.get_weights()[0], ema, rtol=1e-5)  # and the model ends with it
    with pytest.raises(Exception, match="weight_average"):
        apply_overrides(Config(), ["train.weight_average=1"])
    run = T.train(cfg_for(make_class_folders(tmp_path / "shapes", ("circle", "square"), 15), tmp_path / "runs",
                          "epochs=2", "train.weight_average=0.9"), progress=False)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_l2sp_pulls_the_trainable_weights_back_to_the_start_after_each_step(tmp_path):
    import numpy as np

    from maskclf.training.callbacks import PullToStart
    from maskclf.files import MaskclfError

    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    y = x @ np.array([[1.0], [-2.0]], "float32")

    def distance(strength):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        w0 = [w.numpy() for w in model.trainable_weights]
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                  callbacks=[PullToStart(model, strength)] if strength else [])
        return sum(float(np.sum((w.numpy() - a) ** 2)) for w, a in zip(model.trainable_weights, w0))

    free, held = distance(0), distance(5)  # 5 x 0.1: half-way back after every step
    assert free > 1 and held < 0.2 * free, (free, held)
    assert distance(1e6) == 0  # all the way back: the weights never leave the start

    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    with pytest.raises(MaskclfError, match="train.l2sp .*random"):
        T.train(cfg_for(data, tmp_path / "runs", "epochs=1", "train.l2sp=1", "model.init_from=none"), progress=False)
    with pytest.raises(MaskclfError, match="train.l2sp"):
        apply_overrides(Config(), ["train.l2sp=-1"])
    # Through `maskclf train`: at a constant rate and full strength the trained weights stay the start's.
    start = T.train(cfg_for(data, tmp_path / "start", "epochs=1"), progress=False)
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=2", f"model.init_from={start}", "train.l2sp=1e6",
                          "train.lr_schedule=constant"), progress=False)
    w0, w = (keras.models.load_model(r / "best.keras", compile=False).trainable_weights for r in (start, run))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(w0, w))
    assert "l2sp: 1000000" in (run / "config.yaml").read_text()


def test_sam_takes_the_gradient_at_the_sharpest_nearby_point_and_keeps_batchnorm_to_one_update(tmp_path):
    import numpy as np

    from maskclf.files import MaskclfError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")

    def one_step(rho, bn=False):
        keras.utils.set_random_seed(0)
        layers = [keras.Input((3,))] + ([keras.layers.BatchNormalization(momentum=0.5)] if bn else [])
        model = keras.Sequential(layers + [keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        if rho:
            T.use_sam(model, rho)
        w0 = [w.numpy() for w in model.weights]
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return model, w0

    # By hand, for a linear model under mean squared error: g(w) = 2 X'(Xw + b - y) / n.
    model, (k0, b0) = one_step(0.5)
    X1 = np.hstack([x, np.ones((8, 1), "float32")])
    w = np.vstack([k0, b0[None]])
    grad = lambda w: 2 * X1.T @ (X1 @ w - y) / len(x)  # noqa: E731
    g = grad(w)
    want = w - 0.1 * grad(w + 0.5 * g / np.linalg.norm(g))
    got = np.vstack([model.weights[0].numpy(), model.weights[1].numpy()[None]])
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(want, w - 0.1 * g, atol=1e-3)  # and SAM's step differs from the plain one
    # BatchNorm's moving statistics: one update per step, from the first pass, as without SAM.
    plain, _ = one_step(0, bn=True)
    sam, _ = one_step(0.5, bn=True)
    stats = lambda m: [v.numpy() for v in m.non_trainable_weights]  # noqa: E731
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(stats(plain), stats(sam)))
    with pytest.raises(MaskclfError, match="train.sam_rho"):
        apply_overrides(Config(), ["train.sam_rho=-0.1"])
    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=1", "train.sam_rho=0.05"), progress=False)
    assert (run / "best.keras").exists() and "sam_rho: 0.05" in (run / "config.yaml").read_text()


def test_logit_adjusted_loss_matches_its_definition():
    import keras
    import numpy as np

    from maskclf.models.losses import LogitAdjustedCrossentropy, log_prior

    prior = log_prior([0] * 10 + [1] * 80 + [2] * 10, 3)
    assert np.allclose(np.exp(prior), [0.1, 0.8, 0.1])
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], "float32")
    y = np.array([0, 2])
    # -log of the softmax of log(p) + tau * log(prior), at the true class
    z = np.log(p) + 1.0 * np.array(prior)
    want = -(z[np.arange(2), y] - np.log(np.exp(z).sum(1)))
    la = LogitAdjustedCrossentropy(prior, tau=1.0)
    got = keras.ops.convert_to_numpy(la.call(y, p))
    assert np.allclose(got, want, atol=1e-5)
    one_hot = LogitAdjustedCrossentropy(prior, tau=1.0, sparse=False)
    assert np.allclose(keras.ops.convert_to_numpy(one_hot.call(np.eye(3)[y], p)), want, atol=1e-5)
    # tau 0 is plain cross-entropy; the rare class's loss is larger than without adjustment
    plain = keras.ops.convert_to_numpy(LogitAdjustedCrossentropy(prior, tau=0.0).call(y, p))
    assert np.allclose(plain, -np.log(p[np.arange(2), y]), atol=1e-5)
    assert (got > plain).all()
    again = LogitAdjustedCrossentropy.from_config(la.get_config())
    assert again.log_prior == la.log_prior and again.tau == 1.0


def test_logit_adjustment_trains_without_class_weights_and_its_model_loads(tmp_path, monkeypatch):
    import keras

    data = make_class_folders(tmp_path / "shapes", ("circle", "square"), 15)
    for f in sorted((data / "square").iterdir())[5:]:
        f.unlink()  # 15 circles, 5 squares
    seen = []
    real = T.fit_inputs
    monkeypatch.setattr(T, "fit_inputs", lambda *a: (lambda r: (seen.append(r[2]), r)[1])(real(*a)))
    run = T.train(cfg_for(data, tmp_path / "runs", "epochs=2", "train.logit_adjust=1"), progress=False)
    assert seen == [None]  # class_weight auto is not applied on top of the adjusted loss
    model = keras.saving.load_model(run / "best.keras", safe_mode=True)  # the custom loss is registered
    assert type(model.loss).__name__ == "LogitAdjustedCrossentropy" and model.loss.tau == 1.0
    assert model.loss.log_prior[0] > model.loss.log_prior[1]  # circles are the common class
    for bad in ["train.logit_adjust=-1", "train.logit_adjust=9"]:
        with pytest.raises(Exception, match="logit_adjust"):
            apply_overrides(Config(), [bad])
    for clash in (["train.logit_adjust=1", "train.focal_gamma=2"], ["train.logit_adjust=1", "train.sampling=balanced"]):
        with pytest.raises(Exception, match="cannot be combined"):
            apply_overrides(Config(), clash)
    assert apply_overrides(Config(), ["train.logit_adjust=0"]).fingerprint() == Config().fingerprint()
