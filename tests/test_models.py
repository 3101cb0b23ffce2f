import numpy as np
import pytest

keras = pytest.importorskip("keras")

from maskclf import models  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402

FAST = ["small_cnn", "seed003_cnn", "seed004_cnn", "mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0"]


@pytest.mark.parametrize("name", FAST)
def test_registry_models_build_and_predict(name):
    size = 32
    m = models.create_model(name, 3, size)
    p = m.predict(np.random.uniform(0, 255, (2, size, size, 3)).astype("float32"), verbose=0)
    assert p.shape == (2, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg19", "resnet50", "densenet121"])
def test_big_backbones_build(name):
    m = models.create_model(name, 2, 32)
    assert m.output_shape == (None, 2)


def test_every_registered_name_has_a_spec():
    names = models.available_models()
    for n in ["small_cnn", "vgg19", "efficientnet_b0", "efficientnet_b3", "mobilenet_v2", "mobilenet_v3_small",
              "resnet50", "densenet121", "seed003_cnn", "seed004_cnn"]:
        assert n in names


def test_seed_presets_match_the_reports():
    m = models.create_model("seed003_cnn", 2, 64)
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [96]
    assert any(isinstance(l, keras.layers.Flatten) for l in m.layers)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [128, 2]
    s = models.create_model("seed004_cnn", 3, 35)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in s.layers)
    # The default uses global pooling: far fewer parameters than a Flatten head.
    assert models.create_model("small_cnn", 3, 64).count_params() < 1_000_000


def test_small_cnn_options():
    m = models.create_model("small_cnn", 2, 32, filters=[8, 16], convs_per_block=1, batch_norm=False,
                            activation="leaky_relu", dense_units=[64, 32], pooling="flatten")
    assert [l.filters for l in m.layers if isinstance(l, keras.layers.Conv2D)] == [8, 16]
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in m.layers)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [64, 32, 2]


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(MaskclfError, match="unknown model 'resnet9000'.*small_cnn"):
        models.create_model("resnet9000", 2)
    with pytest.raises(MaskclfError, match="unknown option.*filtres.*valid: .*filters"):
        models.create_model("small_cnn", 2, filtres=8)
    with pytest.raises(MaskclfError, match="activation"):
        models.create_model("small_cnn", 2, 32, activation="sparkle")
    with pytest.raises(MaskclfError, match="no pretrained weights"):
        models.create_model("small_cnn", 2, 32, weights="imagenet")


def test_imagenet_weights_failure_says_what_to_do(monkeypatch):
    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- no network")
    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(MaskclfError, match="model.weights=null"):
        models.create_model("mobilenet_v2", 2, 32, weights="imagenet")


@pytest.mark.parametrize("mode, pixel, expected", [
    ("unit", 255.0, [1.0, 1.0, 1.0]),
    ("tf", 0.0, [-1.0, -1.0, -1.0]),
    ("caffe", 0.0, [-103.939, -116.779, -123.68]),
])
def test_preprocess_modes(mode, pixel, expected):
    out = models.Preprocess(mode)(np.full((1, 1, 1, 3), pixel, "float32"))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], expected, rtol=1e-5)


def test_saved_model_loads_in_safe_mode(tmp_path):
    m = models.create_model("small_cnn", 2, 32)
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(m.predict(x, verbose=0), back.predict(x, verbose=0), rtol=1e-5)
