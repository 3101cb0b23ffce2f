import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from maskclf.data import pipeline  # noqa: E402
from maskclf.config import AugmentConfig  # noqa: E402


def _paths(d):
    return sorted(str(p) for p in d.rglob("*.png"))


def test_eval_dataset_is_deterministic_float_rgb(shapes_dir):
    paths = _paths(shapes_dir)
    labels = [0 if "circle" in p else 1 for p in paths]
    ds = pipeline.make_dataset(paths, labels, 24, batch_size=8)
    batches = list(ds)
    x, y = batches[0]
    assert x.shape == (8, 24, 24, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= 0 and 100 < float(tf.reduce_max(x)) <= 255
    assert sum(int(b[0].shape[0]) for b in batches) == len(paths)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), labels)  # order kept
    again = next(iter(ds))[0]
    np.testing.assert_array_equal(x.numpy(), again.numpy())


def test_training_dataset_augments_and_shuffles(shapes_dir):
    paths = _paths(shapes_dir)
    labels = list(range(len(paths)))
    plain = pipeline.make_dataset(paths, labels, 24, batch_size=len(paths))
    aug = pipeline.make_dataset(paths, labels, 24, batch_size=len(paths), training=True,
                                augment=AugmentConfig(rotation_range=30, zoom_range=0.2, shear_range=0.2,
                                                      brightness_range=(0.5, 1.5), contrast_range=0.2))
    xp, yp = next(iter(plain))
    xa, ya = next(iter(aug))
    assert sorted(ya.numpy().tolist()) == yp.numpy().tolist()
    assert ya.numpy().tolist() != yp.numpy().tolist()  # shuffled
    order = np.argsort(ya.numpy())
    diff = np.abs(xa.numpy()[order] - xp.numpy()).mean()
    assert diff > 5  # images changed
    assert float(tf.reduce_min(xa)) >= 0 and float(tf.reduce_max(xa)) <= 255


def test_no_augmentation_layers_when_all_knobs_off():
    off = AugmentConfig(rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0,
                        horizontal_flip=False, brightness_range=())
    assert pipeline.build_augmenter(off) is None
    names = [type(l).__name__ for l in pipeline.build_augmenter(AugmentConfig(shear_range=0.1)).layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom"]


def test_unlabelled_dataset_yields_images(shapes_dir):
    paths = _paths(shapes_dir)[:5]
    x = next(iter(pipeline.make_dataset(paths, None, 16, batch_size=5)))
    assert x.shape == (5, 16, 16, 3)


def test_resolution_augmentation_blurs_a_share_of_the_images(shapes_dir):
    paths = _paths(shapes_dir)
    labels = list(range(len(paths)))
    off = dict(rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0,
               horizontal_flip=False, brightness_range=())
    plain = next(iter(pipeline.make_dataset(paths, labels, 32, batch_size=len(paths))))
    aug = pipeline.make_dataset(paths, labels, 32, batch_size=len(paths), training=True,
                                augment=AugmentConfig(**off, resolution_range=(0.25, 0.25),
                                                      resolution_probability=0.5, jpeg_quality_range=(10, 30)))
    xa, ya = next(iter(aug))
    xa = xa.numpy()[np.argsort(ya.numpy())]
    xp = plain[0].numpy()
    changed = np.abs(xa - xp).mean(axis=(1, 2, 3)) > 1.0
    assert 0.2 < changed.mean() < 0.8  # about half the images, not all, not none
    # Shrunk to 8 px and back: high frequencies are gone (neighbouring pixels differ less).
    def edges(x):
        return np.abs(np.diff(x, axis=2)).mean()
    assert edges(xa[changed]) < 0.8 * edges(xp[changed])
    assert xa.min() >= 0 and xa.max() <= 255


def test_colour_augmentation_changes_colour_not_brightness(shapes_dir):
    paths = _paths(shapes_dir)
    labels = list(range(len(paths)))
    off = dict(rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0,
               horizontal_flip=False, brightness_range=())
    xp = next(iter(pipeline.make_dataset(paths, labels, 32, batch_size=len(paths))))[0].numpy()

    def batch(**kw):
        ds = pipeline.make_dataset(paths, labels, 32, batch_size=len(paths), training=True,
                                   augment=AugmentConfig(**off, **kw), seed=1)
        x, y = next(iter(ds))
        return x.numpy()[np.argsort(y.numpy())]

    grey = batch(grayscale_probability=1.0)  # every image grey: the three channels equal
    assert np.abs(grey[..., 0] - grey[..., 2]).max() < 1e-3 and np.abs(grey[..., 1] - grey[..., 2]).max() < 1e-3
    luma = xp @ np.array([0.2989, 0.587, 0.114], dtype=np.float32)
    assert np.abs(grey[..., 0] - luma).max() < 1.0  # the image's luma, not black or a channel
    half = batch(grayscale_probability=0.5)
    still_coloured = np.abs(half[..., 0] - half[..., 2]).max(axis=(1, 2)) > 1.0
    coloured = np.abs(xp[..., 0] - xp[..., 2]).max(axis=(1, 2)) > 1.0
    assert 0 < still_coloured.sum() < coloured.sum()  # some coloured images kept, some turned grey
    jitter = batch(saturation_range=(0.3, 1.7), hue_range=0.1)
    assert np.abs(jitter - xp).mean(axis=(1, 2, 3))[coloured].min() > 0.5  # each coloured image changed
    # HSV value (the brightest channel) is untouched by saturation and hue
    assert np.abs(jitter.max(axis=-1) - xp.max(axis=-1)).max() < 1.0
    assert jitter.min() >= 0 and jitter.max() <= 255
    same = batch(saturation_range=(1.0, 1.0))
    assert np.abs(same - xp).max() < 0.5


@pytest.mark.parametrize("override, words", [("augment.resolution_range=[0.5,2]", "resolution_range"),
                                             ("augment.jpeg_quality_range=[0,50]", "jpeg_quality_range"),
                                             ("augment.resolution_probability=2", "resolution_probability"),
                                             ("augment.saturation_range=[1.5,0.5]", "saturation_range"),
                                             ("augment.hue_range=0.7", "hue_range"),
                                             ("augment.grayscale_probability=1.5", "grayscale_probability")])
def test_resolution_and_colour_augmentation_settings_are_checked(override, words):
    from maskclf.config import Config, apply_overrides
    from maskclf.files import MaskclfError
    with pytest.raises(MaskclfError, match=words):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize("aug", [AugmentConfig(mixup_alpha=0.4), AugmentConfig(cutmix_alpha=1.0),
                                 AugmentConfig(mixup_alpha=0.4, cutmix_alpha=1.0, mix_probability=0.5)])
def test_mixed_labels_match_the_mixed_pixels(aug):
    # Black images are class 0, white class 1: the share of class 1 in a mixed label must equal the
    # share of white in the mixed image, for mixup (blend) and CutMix (pasted box) alike.
    n = 64
    x = np.zeros((n, 12, 12, 3), np.float32)
    x[n // 2:] = 255.0
    y = np.array([0] * (n // 2) + [1] * (n // 2), np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(n)
    xm, ym, sw = next(iter(pipeline.mix(ds, 2, aug, [1.0, 3.0], seed=3)))
    xm, ym, sw = xm.numpy(), ym.numpy(), sw.numpy()
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ym[:, 1], xm.mean(axis=(1, 2, 3)) / 255.0, atol=1e-4)
    np.testing.assert_allclose(sw, ym @ np.array([1.0, 3.0]), rtol=1e-5)
    mixed = (ym.max(1) < 0.999).mean()
    assert 0.15 < mixed <= 0.75  # about half the pairs cross classes; fewer with mix_probability 0.5


def test_balanced_stream_draws_classes_equally_and_keeps_the_epoch_length():
    labels = [0] * 90 + [1] * 10
    images = np.arange(100, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    ds = pipeline.balanced_stream(images, labels, seed=0)
    epochs = [[(int(a[0, 0, 0]), int(b)) for a, b in ds.as_numpy_iterator()] for _ in range(2)]
    for got in epochs:
        assert len(got) == 100
        assert all((img >= 90) == (lab == 1) for img, lab in got)  # images keep their labels
        assert 35 <= sum(lab for _, lab in got) <= 65  # the 10 % class is drawn about half the time
    assert epochs[0] != epochs[1]  # a new order each epoch
