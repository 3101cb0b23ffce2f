import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from maskclf import pipeline  # noqa: E402
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


@pytest.mark.parametrize("override, words", [("augment.resolution_range=[0.5,2]", "resolution_range"),
                                             ("augment.jpeg_quality_range=[0,50]", "jpeg_quality_range"),
                                             ("augment.resolution_probability=2", "resolution_probability")])
def test_resolution_augmentation_settings_are_checked(override, words):
    from maskclf.config import Config, apply_overrides
    from maskclf.files import MaskclfError
    with pytest.raises(MaskclfError, match=words):
        apply_overrides(Config(), [override])
