import numpy as np
import pytest

keras = pytest.importorskip("keras")

from maskclf.models import registry as models  # noqa: E402
from maskclf.files import MaskclfError  # noqa: E402

FAST = ["small_cnn", "seed003_cnn", "seed004_cnn", "maskclf_cnn", "tiramisu", "mobilenet_v3_small", "mobilenet_v2",
        "efficientnet_b0"]


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
              "resnet50", "densenet121", "seed003_cnn", "seed004_cnn", "maskclf_cnn", "tiramisu"]:
        assert n in names


def test_seed_presets_match_the_reports():
    m = models.create_model("seed003_cnn", 2, 64)
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [96]
    assert any(isinstance(l, keras.layers.Flatten) for l in m.layers)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [128, 2]
    s = models.create_model("seed004_cnn", 3, 35)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in s.layers)
    convs = [c.filters for c in s.layers if isinstance(c, keras.layers.Conv2D)]
    assert convs == [32, 64, 128]
    # maskclf's default is the same net with two convolutions per block (same head, same 35 px).
    d = models.create_model("maskclf_cnn", 3, 35)
    assert [c.filters for c in d.layers if isinstance(c, keras.layers.Conv2D)] == [32, 32, 64, 64, 128, 128]
    assert [l.units for l in d.layers if isinstance(l, keras.layers.Dense)] == [256, 3]
    assert models.get_spec("maskclf_cnn").image_size == 35
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


# ----------------------------------------------------------------------------- Tiramisu (seed report 000)

def test_tiramisu_is_a_densely_connected_encoder():
    m = models.create_model("tiramisu", 3, 64, growth_rate=6, block_layers=[2, 3], first_filters=8, dropout=0.2)
    convs = [lay for lay in m.layers if isinstance(lay, keras.layers.Conv2D)]
    # first conv + one per dense-block layer + one transition down (none after the last block)
    assert len(convs) == 1 + 5 + 1
    assert [lay.kernel_size for lay in convs if lay.name.startswith("td")] == [(1, 1)]
    assert sum(isinstance(lay, keras.layers.MaxPooling2D) for lay in m.layers) == 1
    # Each layer of a block sees everything before it: channels grow by k per layer, the transition keeps them.
    assert [m.get_layer(f"db1_l{i}_concat").output.shape[-1] for i in (1, 2)] == [8 + 6, 8 + 12]
    assert m.get_layer("db1_l2_conv").input.shape[-1] == 14
    assert m.get_layer("td1_conv").output.shape[-1] == 20
    assert m.get_layer("db2_l3_concat").output.shape[1:] == (32, 32, 20 + 18)
    assert m.get_layer("db1_l1_drop").rate == 0.2
    assert models.create_model("tiramisu", 2, 32, block_layers=3, blocks=2).get_layer("db2_l3_concat")
    with pytest.raises(MaskclfError, match="blocks=3 but block_layers lists 2"):
        models.create_model("tiramisu", 2, 32, block_layers=[2, 2], blocks=3)
    with pytest.raises(MaskclfError, match="too small"):
        models.create_model("tiramisu", 2, 8, block_layers=[1, 1, 1, 1, 1])
    with pytest.raises(MaskclfError, match="no pretrained weights"):
        models.create_model("tiramisu", 2, 32, weights="imagenet")


def test_tiramisu_default_is_small_trains_a_step_and_has_a_gradcam_map():
    from maskclf.reports import explain
    from maskclf.training.train import compile_model

    m = models.create_model("tiramisu", 3, 64)
    assert 100_000 < m.count_params() < 300_000
    assert explain.find_target_layer(m) == "final_relu"  # BN-ReLU after the last dense block
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    maps, p = explain.compute_heatmaps(m, x, class_index=[0, 2])
    np.testing.assert_allclose(p, np.asarray(m(x, training=False)), atol=1e-5)
    for method in explain.METHODS:
        assert maps[method].shape == (2, 64, 64) and np.isfinite(maps[method]).all()
    small = models.create_model("tiramisu", 3, 32, growth_rate=4, block_layers=[2, 2], first_filters=8)
    compile_model(small, "adam", 1e-3)
    before = [w.copy() for w in small.get_weights()]
    hist = small.fit(rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"), np.arange(8) % 3, batch_size=8,
                     epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, small.get_weights()))


def test_tiramisu_round_trips_through_keras_and_tflite(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from maskclf.export import convert as E

    m = models.create_model("tiramisu", 2, 32, growth_rate=4, block_layers=[2, 2], first_filters=8)
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    ref = np.asarray(m(x.astype("float32"), training=False))
    np.testing.assert_allclose(np.asarray(back(x.astype("float32"), training=False)), ref, atol=1e-5)
    f32 = E.load_interpreter(E.convert(back, E.QuantizationSpec.for_float32()))
    assert np.abs(E.predict_tflite(f32, x) - ref).max() < 1e-3
    i8 = E.load_interpreter(E.convert(back, E.QuantizationSpec.for_int8(4), x.repeat(2, axis=0)))
    assert i8.get_input_details()[0]["dtype"] == np.uint8
    assert np.abs(E.predict_tflite(i8, x) - ref).max() < 0.1


def test_tiramisu_search_space_maps_to_builder_options():
    from pathlib import Path

    from maskclf.config import Config
    from maskclf.tuning.tune import load_space

    space = load_space(Path(__file__).resolve().parents[1] / "tuning" / "tiramisu.yaml")
    assert space.model == "tiramisu"
    opts = {p.key.split(".", 1)[1]: p for p in space.tuned if p.key.startswith("model.")}
    assert {"growth_rate", "block_layers", "first_filters", "dropout"} <= set(opts)
    # Every listed architecture builds at the smallest searched image size with the largest widths.
    size = min(next(p for p in space.tuned if p.key == "data.image_size").values)
    for layers_ in opts["block_layers"].values:
        cfg = space.config(Config(), {"model.block_layers": layers_, "model.growth_rate": 16,
                                      "model.first_filters": 48}, epochs=1)
        m = models.create_model(cfg.model.name, 3, size, **cfg.model.options)
        assert m.output_shape == (None, 3)
        keras.backend.clear_session()


def test_backbones_from_scratch_get_fast_batchnorm_statistics():
    """keras.applications' BN momentum (0.999) is meant for ImageNet; from scratch on a few thousand crops
    the moving statistics lag so far that validation collapses to one class (measured: mobilenet_v3_small
    33 % -> 69 % balanced accuracy at 32 px / 6 epochs with 0.9)."""
    import keras

    def momenta(model):
        bb = model.get_layer("backbone")
        return {round(l.momentum, 4) for l in bb.layers if isinstance(l, keras.layers.BatchNormalization)}

    assert momenta(models.create_model("mobilenet_v3_small", 3, 32)) == {0.9}
    assert momenta(models.create_model("mobilenet_v2", 3, 32, bn_momentum=0.99)) == {0.99}
    with pytest.raises(MaskclfError, match="bn_momentum"):
        models.create_model("mobilenet_v2", 3, 32, bn_momentum=1.5)


def test_init_from_copies_matching_layers_and_leaves_a_new_head_fresh(tmp_path):
    src = models.create_model("seed004_cnn", 2, 35)
    src.save(tmp_path / "best.keras")
    dst = models.create_model("seed004_cnn", 3, 35)  # 3 classes: the classifier cannot be copied
    copied, total = models.init_from(dst, tmp_path)  # a run directory means its best.keras
    assert copied == total - 1
    np.testing.assert_array_equal(dst.get_layer("block1_conv1").get_weights()[0],
                                  src.get_layer("block1_conv1").get_weights()[0])
    with pytest.raises(MaskclfError, match="no such model file"):
        models.init_from(dst, tmp_path / "nothing")
    assert models.init_source("none") is None and models.init_source("") is None
    assert models.init_source("bundled", "small_cnn") is None  # no bundled start for that model
    (tmp_path / "junk.keras").write_text("not a model")
    with pytest.raises(MaskclfError, match="not a loadable Keras model"):
        models.init_from(dst, tmp_path / "junk.keras")
    other = models.create_model("tiramisu", 3, 32)
    with pytest.raises(MaskclfError, match="shares no layer"):
        models.init_from(other, tmp_path)


def test_tiramisu_post_activation_puts_every_batchnorm_after_a_convolution():
    m = models.create_model("tiramisu", 3, 32, preact=False)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            src = layer.input._keras_history.operation
            assert isinstance(src, keras.layers.Conv2D), (layer.name, src.name)
    assert m.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 3)
    pre = models.create_model("tiramisu", 3, 32)  # the paper's order stays the default
    assert any(isinstance(layer.input._keras_history.operation, keras.layers.Concatenate)
               for layer in pre.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("name,convs", [("maskclf_cnn", 6), ("seed004_cnn", 3)])
def test_the_bundled_start_fits_its_model(name, convs):
    from maskclf.config import Config

    assert Config().model.name == "maskclf_cnn"  # the default model has a bundled start
    start = models.init_source("bundled", name)
    assert start.is_file() and start.parent.name == "weights" and start.name.startswith(name + "-35-")
    n = 2 * convs + 2  # convolutions, their batch norms, the dense layer and the 3-class head
    copied, total = models.init_from(models.create_model(name, 3, 35), start, required=False)
    assert (copied, total) == (n, n)
    copied, total = models.init_from(models.create_model(name, 2, 35), start, required=False)
    assert (copied, total) == (n - 1, n)  # another class count: a fresh classifier
    # Another size changes the Flatten width: the convolutions still start from it, the dense layers do not.
    copied, _ = models.init_from(models.create_model(name, 3, 48), start, required=False)
    assert copied >= 3
    # Other filters: no convolution fits, and the 256 -> 3 classifier, though of the same shapes, sits behind a
    # fresh dense layer: nothing is copied.
    assert models.init_from(models.create_model(name, 3, 35, filters=[8, 16]), start, required=False)[0] == 0


def test_a_start_of_another_depth_gives_only_the_layers_before_the_first_difference():
    # seed004_cnn's block2_conv1 has the shapes of maskclf_cnn's, but there it was trained on block1_conv2's
    # output: only block1_conv1 and its batch norm sit behind the same layers in both nets.
    deep = models.init_source("bundled", "maskclf_cnn")
    m = models.create_model("seed004_cnn", 3, 35)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in m.layers}
    assert models.init_from(m, deep, required=False) == (2, 8)
    changed = {layer.name for layer in m.layers
               if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), before[layer.name]))}
    assert changed == {"block1_conv1", "block1_bn1"}
    # The other way round as well, and the tuner's convs_per_block=1 trials get the same from the default's start.
    assert models.init_from(models.create_model("maskclf_cnn", 3, 35), models.init_source("bundled", "seed004_cnn"),
                            required=False)[0] == 2
    assert models.init_from(models.create_model("maskclf_cnn", 3, 35, convs_per_block=1), deep, required=False)[0] == 2
