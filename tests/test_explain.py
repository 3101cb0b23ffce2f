import numpy as np
import pytest

keras = pytest.importorskip("keras")

from PIL import Image

from maskclf.reports import explain as E
from maskclf.files import MaskclfError
from maskclf.models.registry import create_model

SIZE = 48


def corner_task(n: int, seed: int = 0):
    """Noise images; class 1 has a bright patch somewhere in the top-left quadrant, class 0 none."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 140, (n, SIZE, SIZE, 3)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.nonzero(y == 1)[0]:
        r, c = rng.integers(1, SIZE // 2 - 11, 2)
        x[i, r:r + 10, c:c + 10] = 255.0
    return x, y


@pytest.fixture(scope="module")
def corner_model():
    keras.utils.set_random_seed(0)
    x, y = corner_task(256)
    # The registry's small_cnn shape (batch-norm, global average pooling), just narrower: 100 % in ~4 epochs.
    m = create_model("small_cnn", 2, SIZE, filters=[8, 16], convs_per_block=1, dense_units=[], dropout=0.0)
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, batch_size=32, epochs=8, verbose=0)
    return m


def quadrant_shares(hm: np.ndarray) -> np.ndarray:
    """Heatmap mass per quadrant: top-left, top-right, bottom-left, bottom-right (sums to 1)."""
    h = SIZE // 2
    q = np.array([hm[:h, :h].sum(), hm[:h, h:].sum(), hm[h:, :h].sum(), hm[h:, h:].sum()])
    return q / q.sum()


def test_heatmaps_point_at_the_deciding_corner(corner_model):
    x, y = corner_task(64, seed=1)
    probs = np.asarray(corner_model(x, training=False))
    assert (probs.argmax(1) == y).mean() >= 0.95  # the model solved the task
    pos = x[y == 1][:12]
    maps, p = E.compute_heatmaps(corner_model, pos, class_index=1)
    assert p.shape == (12, 2)
    for method in E.METHODS:
        hm = maps[method]
        assert hm.shape == (12, SIZE, SIZE) and hm.min() >= 0 and hm.max() <= 1 + 1e-6
        shares = np.mean([quadrant_shares(h) for h in hm], axis=0)
        assert shares.argmax() == 0 and shares[0] > 0.5, (method, shares)
    # The predicted class is explained by default, and it is class 1 here: same maps.
    default, _ = E.compute_heatmaps(corner_model, pos, methods=["gradcam"])
    np.testing.assert_allclose(default["gradcam"], maps["gradcam"], atol=1e-5)


def test_find_target_layer_picks_the_last_conv_map():
    m = create_model("small_cnn", 2, 32, filters=[8, 16], convs_per_block=1)
    name = E.find_target_layer(m)
    assert len(m.get_layer(name).output.shape) == 4
    layer_names = [lay.name for lay in m.layers]
    assert layer_names.index(name) > layer_names.index("block2_conv1")
    assert layer_names.index(name) < layer_names.index("block2_pool")


@pytest.mark.parametrize("name", ["small_cnn", "seed003_cnn", "seed004_cnn", "maskclf_cnn", "mobilenet_v2", "mobilenet_v3_small",
                                  "efficientnet_b0", "vgg19",
                                  pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("densenet121", marks=pytest.mark.slow)])
def test_every_family_gives_heatmaps_through_nested_backbones(name):
    size = 35 if name in ("seed004_cnn", "maskclf_cnn") else 64
    m = create_model(name, 3, size)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    layer = E.find_target_layer(m)
    if name not in ("small_cnn", "seed003_cnn", "seed004_cnn", "maskclf_cnn"):
        assert layer.startswith("backbone/")
    maps, p = E.compute_heatmaps(m, x, class_index=[0, 2])
    np.testing.assert_allclose(p, np.asarray(m(x, training=False)), atol=1e-5)  # the replay is the model
    for method in E.METHODS:
        assert maps[method].shape == (2, size, size)
        assert np.isfinite(maps[method]).all() and maps[method].min() >= 0 and maps[method].max() <= 1 + 1e-6


def test_bad_arguments_are_one_line_errors():
    m = create_model("small_cnn", 2, 32, filters=[8], convs_per_block=1)
    x = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(MaskclfError, match="method"):
        E.compute_heatmaps(m, x, methods=["cam"])
    with pytest.raises(MaskclfError, match="out of range"):
        E.compute_heatmaps(m, x, class_index=5)
    with pytest.raises(MaskclfError, match="no layer"):
        E.compute_heatmaps(m, x, layer="nope")
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(MaskclfError, match="feature map"):
        E.find_target_layer(dense_only)


def test_overlay_and_panel(tmp_path):
    img = np.full((40, 50, 3), 100, np.uint8)
    hm = np.zeros((10, 10), np.float32)
    hm[:5, :5] = 1.0
    ov = E.overlay(img, hm)
    assert ov.shape == img.shape and ov.dtype == np.uint8
    assert not np.array_equal(ov[0, 0], ov[-1, -1])  # hot and cold corners are coloured differently
    out = E.plot_explanation(img, {"gradcam": hm, "gradcam++": hm}, "predicted x (0.90)", tmp_path / "p.png")
    with Image.open(out) as im:
        assert im.width > 2.5 * im.height  # five pictures side by side


def test_explain_images_writes_a_panel_per_image(tmp_path, corner_model):
    from maskclf.config import Config, apply_overrides, save_config
    from maskclf.files import write_labels

    run = tmp_path / "run"
    run.mkdir()
    save_config(apply_overrides(Config(), ["image_size=48"]), run / "config.yaml")
    write_labels(run / "labels.txt", ["empty", "patch"])
    x, _ = corner_task(4, seed=2)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, a in enumerate(x):
        Image.fromarray(a.astype(np.uint8)).save(imgs / f"im{i}.png")
    res = E.explain_images(run, [imgs], method="both", out_dir=tmp_path / "out", model=corner_model)
    assert [r.label for r in res] == ["empty", "patch", "empty", "patch"]
    for r in res:
        assert r.panel.is_file() and set(r.heatmaps) == set(E.METHODS)
    (tmp_path / "more").mkdir()
    Image.fromarray(x[0].astype(np.uint8)).save(tmp_path / "more" / "im0.png")
    both = E.explain_images(run, [imgs / "im0.png", tmp_path / "more"], method="gradcam", out_dir=tmp_path / "o2",
                            model=corner_model)
    assert len({r.panel for r in both}) == 2  # same file name in two folders: two panels
    one = E.explain_images(run, [imgs / "im0.png"], method="gradcam++", class_name="patch", save=False,
                           model=corner_model)
    assert one[0].explained_class == "patch" and set(one[0].heatmaps) == {"gradcam++"} and one[0].panel is None
    with pytest.raises(MaskclfError, match="not a class"):
        E.explain_images(run, [imgs], class_name="cat", model=corner_model)
