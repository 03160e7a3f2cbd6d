"""FCN-32s/16s/8s heads on a MobileNetV2 trunk, a light backbone for edge devices.

The trunk is ``keras.applications.MobileNetV2`` (alpha 1.0, no top); the FCN skips come
from the last feature maps at strides 8, 16 and 32 of the input:

| stride | layer | channels |
|---|---|---|
| 8 | ``block_6_expand_relu`` | 192 |
| 16 | ``block_13_expand_relu`` | 576 |
| 32 | ``out_relu`` | 1280 |

The heads use the layer names of the VGG16 models (``score_fr``, ``upscore2``,
``score_pool4``, ``upscore_pool4``, ``score_pool3``, ``upscore8``/``upscore16``/``upscore``,
final crop ``score``), zero-initialized score layers and fixed bilinear upsampling.

Geometry (why the crop offsets are what they are). The input is first padded at the bottom
and right to a multiple of 32 (:class:`PadToMultiple`), so every stride-2 layer of the trunk
sees an even size and pads by ``(0, 1)``; pixel ``j`` of the stride-``s`` maps is then centred
on input coordinate ``s*j + s - 0.5`` (pixel ``i`` of the input covers ``[i, i + 1)``),
whatever the image size. A bias-free transposed convolution with kernel ``2f`` and stride
``f`` from such a map lands its pixel ``u`` on ``s_out*u + s_out/2 - 0.5`` relative to the
source grid, so:

- the last upsampling (to stride 1) followed by a crop at offset 0 is aligned with the input
  to half a pixel (the best an even kernel allows);
- a stride-2 upsampling is half a cell off the skip grid it is fused with (8 px at stride 16,
  4 px at stride 8). FCN-16s crops ``upscore2`` at offset 1 (coarse path +8 px); FCN-8s
  crops ``upscore2`` at 1 and ``upscore_pool4`` at 0, so the errors cancel to +4 px (coarse
  path), -4 px (``pool4`` path) and 0 (``pool3`` path). ``tests/test_mobilenet.py`` measures
  these by impulse responses. ``trainable_upsampling=True`` lets training absorb them.

Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
(https://arxiv.org/abs/1801.04381), with the FCN heads of Long et al., CVPR 2015.
"""

import math
import os
import warnings

import keras
from keras import layers, ops

from keras_fcn import weights as weights_lib
from keras_fcn.layers import CropToReference
from keras_fcn.models.vgg16 import _conv, _upsample

MOBILENET_V2_WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
MOBILENET_V2_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    + MOBILENET_V2_WEIGHTS_FILE
)
# keras/src/applications/mobilenet_v2.py downloads this file without a checksum (Keras
# publishes none), so by default the file is verified by structure instead: every trunk
# layer must be found in it with the right shapes. Pass file_hash to also check bytes.
MOBILENET_V2_WEIGHTS_HASH = None

SKIP_LAYERS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
STRIDE = 32
# Crop offsets (see the module docstring): up-sampled maps cropped to the skip grids, and the
# final crop to the input.
MOBILENET_V2_OFFSETS = {"16s": {"upscore2c": 1}, "8s": {"upscore2c": 1, "upscore_pool4c": 0}}
FINAL_OFFSET = 0


@keras.saving.register_keras_serializable(package="keras_fcn")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads images at the bottom and right so height and width are multiples of a number.

    Static when the input size is known (a constant ``PAD`` in TFLite), dynamic otherwise.

    Args:
        multiple: the size multiple, a positive integer (32 for MobileNetV2).

    Example:
        >>> PadToMultiple(32)(np.zeros((1, 33, 70, 3))).shape
        TensorShape([1, 64, 96, 3])
    """

    def __init__(self, multiple=STRIDE, **kwargs):
        super().__init__(**kwargs)
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"multiple must be a positive integer. Received: multiple={multiple!r}")
        self.multiple = multiple

    def _extra(self, size):
        return (-size) % self.multiple

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            shape = ops.shape(inputs)
            height = shape[1] if height is None else height
            width = shape[2] if width is None else width
        paddings = [[0, 0], [0, self._extra(height)], [0, self._extra(width)], [0, 0]]
        return ops.pad(inputs, paddings)

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else size + self._extra(size)

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


def mobilenet_v2_preprocessing(name="preprocess"):
    """The MobileNetV2 input scaling as a layer: RGB 0..255 (any dtype) -> ``x / 127.5 - 1``.

    Example:
        >>> mobilenet_v2_preprocessing()(np.array([[0.0, 255.0]]))
        [[-1., 1.]]
    """
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)


def fetch_mobilenet_v2_imagenet_weights(cache_dir=None, url=MOBILENET_V2_WEIGHTS_URL,
                                        file_hash=MOBILENET_V2_WEIGHTS_HASH):
    """Returns the local path of the Keras ImageNet MobileNetV2 (no top) weights.

    Downloaded once through ``keras.utils.get_file`` and cached in ``~/.keras/models`` (or
    ``cache_dir/models``), so later calls work offline.

    Args:
        cache_dir: cache root; ``None`` means ``~/.keras``.
        url: where to download from (a mirror, or a ``file://`` URL).
        file_hash: optional SHA-256 or MD5 of the file. Keras publishes none for this file,
            so ``None`` skips the byte check; the loader still checks every layer and shape.

    Returns:
        The path of the ``.h5`` file.

    Raises:
        RuntimeError: the file is not cached and cannot be downloaded (offline) or fails its
            checksum; the message says how to pass a local copy.

    Example:
        >>> path = fetch_mobilenet_v2_imagenet_weights()
    """
    cached = os.path.join(cache_dir or os.path.expanduser("~/.keras"), "models",
                          MOBILENET_V2_WEIGHTS_FILE)
    how_to = (
        f"Download {url} on a machine with internet access and either copy it to {cached} or "
        "pass its path: build_fcn8s(backbone='mobilenet_v2', "
        f"weights='/path/to/{MOBILENET_V2_WEIGHTS_FILE}'). Use weights=None for a randomly "
        "initialized trunk."
    )
    try:
        return keras.utils.get_file(
            MOBILENET_V2_WEIGHTS_FILE, url, cache_subdir="models", cache_dir=cache_dir,
            file_hash=file_hash,
        )
    except ValueError as error:  # get_file's checksum failure
        raise RuntimeError(
            f"The MobileNetV2 weights from {url} failed their checksum (expected {file_hash}): "
            f"{error}. " + how_to
        ) from error
    except Exception as error:  # get_file raises a bare Exception on network failures.
        raise RuntimeError(
            f"Could not fetch the ImageNet MobileNetV2 weights from {url} (offline?): {error}. "
            + how_to
        ) from error


BN_MOMENTUM = 0.99


def mobilenet_v2_features(x):
    """Applies the Keras MobileNetV2 trunk (random init) to ``x``, padded to a multiple of 32.

    Args:
        x: a Keras tensor ``(N, H, W, 3)`` scaled to [-1, 1].

    Returns:
        ``(stride8, stride16, stride32)`` feature tensors (``SKIP_LAYERS``).
    """
    x = PadToMultiple(STRIDE, name="pad_to_32")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input_shape is undefined" for None sizes
        trunk = keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x)
    for layer in trunk.layers:
        if isinstance(layer, layers.BatchNormalization):
            # Keras' 0.999 needs thousands of steps before the moving statistics are usable:
            # at batch 1-8 on a few hundred images, validation was garbage for many epochs.
            layer.momentum = BN_MOMENTUM
    return tuple(trunk.get_layer(SKIP_LAYERS[s]).output for s in (8, 16, 32))


def _heads(variant, inputs, feat8, feat16, feat32, num_classes, dropout, trainable):
    x = layers.Dropout(dropout, name="drop_fr")(feat32)
    score = _conv(num_classes, 1, "score_fr", activation=None, zero_init=True)(x)
    if variant == "32s":
        up = _upsample(num_classes, 32, "upscore", trainable)(score)
        return CropToReference(FINAL_OFFSET, name="score", dtype="float32")([up, inputs])

    offsets = MOBILENET_V2_OFFSETS["16s" if variant == "16s" else "8s"]
    up = _upsample(num_classes, 2, "upscore2", trainable)(score)
    skip = _conv(num_classes, 1, "score_pool4", activation=None, zero_init=True)(feat16)
    up = CropToReference(offsets["upscore2c"], name="upscore2c")([up, skip])
    fused = layers.Add(name="fuse_pool4")([up, skip])
    if variant == "16s":
        up = _upsample(num_classes, 16, "upscore16", trainable)(fused)
        return CropToReference(FINAL_OFFSET, name="score", dtype="float32")([up, inputs])

    up = _upsample(num_classes, 2, "upscore_pool4", trainable)(fused)
    skip = _conv(num_classes, 1, "score_pool3", activation=None, zero_init=True)(feat8)
    up = CropToReference(offsets["upscore_pool4c"], name="upscore_pool4c")([up, skip])
    fused = layers.Add(name="fuse_pool3")([up, skip])
    up = _upsample(num_classes, 8, "upscore8", trainable)(fused)
    return CropToReference(FINAL_OFFSET, name="score", dtype="float32")([up, inputs])


def trunk_layer_names(model):
    """Names of the MobileNetV2 trunk layers with weights in ``model`` (what ImageNet sets)."""
    heads = {"score_fr", "score_pool4", "score_pool3", "upscore", "upscore2", "upscore16",
             "upscore_pool4", "upscore8"}
    return sorted(l.name for l in model.layers if l.weights and l.name not in heads)


def _load_weights(model, weights):
    if isinstance(weights, str) and weights == "imagenet":
        source = weights_lib.read_weights(fetch_mobilenet_v2_imagenet_weights())
        return weights_lib.set_weights_by_name(model, source, required=trunk_layer_names(model))
    return weights_lib.set_weights_by_name(model, weights_lib.read_weights(weights))


def build_mobilenet_v2_fcn(variant, num_classes, input_shape, weights, dropout,
                           trainable_upsampling, include_preprocessing, name):
    """Builds an FCN on MobileNetV2; called by ``build_fcn(..., backbone="mobilenet_v2")``.

    Args:
        variant: ``"32s"``, ``"16s"`` or ``"8s"`` (``"8s_at_once"`` is built as ``"8s"``: the
            MobileNetV2 features are batch-normalized, so the skips need no scaling).
        num_classes: number of classes.
        input_shape: ``(height, width, 3)``, sizes may be ``None`` (any size, odd or not a
            multiple of 32: the input is padded inside and the output cropped back).
        weights: ``"imagenet"`` (Keras ImageNet MobileNetV2 trunk), ``None``, a weights file
            or a ``keras.Model`` (by layer name, see :func:`keras_fcn.read_weights`).
        dropout: dropout rate before ``score_fr``.
        trainable_upsampling: if True the bilinear transposed convolutions are trained.
        include_preprocessing: if True the model takes raw RGB in [0, 255] and scales it to
            [-1, 1] itself (layer ``preprocess``); otherwise feed ``x / 127.5 - 1``.
        name: model name.

    Returns:
        A ``keras.Model`` from images ``(N, H, W, 3)`` to float32 logits
        ``(N, H, W, num_classes)`` aligned with the input.

    Example:
        >>> model = keras_fcn.build_fcn8s(num_classes=12, weights=None, backbone="mobilenet_v2")
        >>> model(np.zeros((1, 37, 50, 3))).shape
        TensorShape([1, 37, 50, 12])
    """
    if tuple(input_shape)[2] != 3:
        raise ValueError(
            f"MobileNetV2 needs RGB input with 3 channels. Received: input_shape={input_shape!r}"
        )
    inputs = keras.Input(tuple(input_shape), name="image")
    x = mobilenet_v2_preprocessing()(inputs) if include_preprocessing else inputs
    feat8, feat16, feat32 = mobilenet_v2_features(x)
    head = "8s" if variant == "8s_at_once" else variant
    outputs = _heads(head, inputs, feat8, feat16, feat32, num_classes, dropout,
                     trainable_upsampling)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        _load_weights(model, weights)
    return model


def padded_size(size, multiple=STRIDE):
    """The size after :class:`PadToMultiple`: ``ceil(size / multiple) * multiple``."""
    return int(math.ceil(size / multiple) * multiple)
