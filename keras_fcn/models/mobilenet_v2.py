"""FCN-32s/16s/8s heads on a MobileNetV2 trunk, a light backbone for edge devices.

The trunk is ``keras.applications.MobileNetV2`` (alpha 1.0, no top); the FCN skips come
from the last feature maps at strides 8, 16 and 32 of the input:

| stride | layer | channels |
|---|---|---|
| 8 | ``block_6_expand_relu`` | 192 |
| 16 | ``block_13_expand_relu`` | 576 |
| 32 | ``out_relu`` | 1280 |

The heads are those of the VGG16 models (:mod:`keras_fcn.models.heads`: ``score_fr``,
``upscore2``, ``score_pool4``, ``upscore_pool4``, ``score_pool3``, ``upscore8``/``upscore16``/
``upscore``, final crop ``score``), after a ``drop_fr`` dropout, with the crops below.

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

import warnings

import keras
import numpy as np
from keras import layers, ops

from keras_fcn._checks import check_positive_int
from keras_fcn.models.trunk import Preprocessing, Trunk, register_trunk
from keras_fcn.weights import load_weights, read_weights, set_weights_by_name
from keras_fcn.weights.imagenet import fetch_mobilenet_v2_imagenet_weights

SKIP_LAYERS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
STRIDE = 32
# Crop offsets (see the module docstring): up-sampled maps cropped to the skip grids, and the
# final crop to the input.
MOBILENET_V2_OFFSETS = {"upscore2c": 1, "upscore_pool4c": 0,
                        "score": {"32s": 0, "16s": 0, "8s": 0}}
# Keras' 0.999 needs thousands of steps before the moving statistics are usable: at batch 1-8
# on a few hundred images, validation was garbage for many epochs.
BN_MOMENTUM = 0.99


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
        self.multiple = check_positive_int("multiple", multiple)

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

    def coord_map(self, axis):
        """Pixel ``y`` stays at ``y`` (padding at the bottom and right only): for
        :func:`keras_fcn.models.coord_maps`."""
        del axis
        return 1, 0

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else size + self._extra(size)

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


# The MobileNetV2 input scaling, RGB 0..255 -> [-1, 1]: x / 127.5 - 1, written here only.
INPUT_SCALE = 1.0 / 127.5
INPUT_OFFSET = -1.0


def mobilenet_v2_preprocessing(name="preprocess"):
    """The MobileNetV2 input scaling as a layer: RGB 0..255 (any dtype) -> ``x / 127.5 - 1``.

    Example:
        >>> np.asarray(mobilenet_v2_preprocessing()(np.array([[0.0, 255.0]])))
        array([[-1.,  1.]], dtype=float32)
    """
    return layers.Rescaling(INPUT_SCALE, offset=INPUT_OFFSET, name=name)


def mobilenet_v2_preprocess_input(images):
    """The MobileNetV2 input scaling on arrays: RGB 0..255 -> float32 ``x / 127.5 - 1``.

    Numpy in, numpy out; a tensor gives a tensor.

    Example:
        >>> mobilenet_v2_preprocess_input(np.array([0, 255], np.uint8))
        array([-1.,  1.], dtype=float32)
    """
    if isinstance(images, np.ndarray):
        return images.astype("float32") * np.float32(INPUT_SCALE) + np.float32(INPUT_OFFSET)
    return ops.cast(images, "float32") * INPUT_SCALE + INPUT_OFFSET


def mobilenet_v2_features(x):
    """Applies the Keras MobileNetV2 trunk (random init) to ``x``, padded to a multiple of 32.

    Args:
        x: a Keras tensor ``(N, H, W, 3)`` scaled to [-1, 1].

    Returns:
        ``(stride8, stride16, stride32)`` feature tensors (``SKIP_LAYERS``).

    Example:
        >>> feat8, feat16, feat32 = mobilenet_v2_features(keras.Input((None, None, 3)))
    """
    x = PadToMultiple(STRIDE, name="pad_to_32")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input_shape is undefined" for None sizes
        trunk = keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x)
    for layer in trunk.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return tuple(trunk.get_layer(SKIP_LAYERS[s]).output for s in (8, 16, 32))


def trunk_layer_names(model):
    """Names of the MobileNetV2 trunk layers with weights in ``model`` (what ImageNet sets)."""
    return sorted(layer.name for layer in model.layers
                  if layer.weights and not layer.name.startswith(("score", "upscore")))


def mobilenet_v2_trunk_features(x, dropout=0.5):
    """The trunk's features for the FCN heads: :func:`mobilenet_v2_features` with a
    ``drop_fr`` dropout on the stride-32 map (what ``score_fr`` scores)."""
    feat8, feat16, feat32 = mobilenet_v2_features(x)
    return feat8, feat16, layers.Dropout(dropout, name="drop_fr")(feat32)


def load_mobilenet_v2_weights(model, weights):
    """The MobileNetV2 trunk's weights loader: ``"imagenet"`` is the Keras ImageNet
    MobileNetV2 (every trunk layer must get its weights); files and models load by layer name
    (:func:`keras_fcn.weights.load_weights`).

    Example:
        >>> load_mobilenet_v2_weights(model, "imagenet")  # doctest: +SKIP
    """
    if isinstance(weights, str) and weights == "imagenet":
        source = read_weights(fetch_mobilenet_v2_imagenet_weights())
        return set_weights_by_name(model, source, required=trunk_layer_names(model))
    return load_weights(model, weights)


def _mobilenet_normalization(model=None):
    return {"type": "scale", "scale": INPUT_SCALE, "offset": INPUT_OFFSET,
            "formula": "x / 127.5 - 1 on RGB"}


MOBILENET_V2 = register_trunk(Trunk(
    name="mobilenet_v2", features=mobilenet_v2_trunk_features, offsets=MOBILENET_V2_OFFSETS,
    preprocessing=Preprocessing("scale", mobilenet_v2_preprocessing,
                                mobilenet_v2_preprocess_input, _mobilenet_normalization),
    load_weights=load_mobilenet_v2_weights, input_channels=3,
    head_variants={"8s_at_once": "8s"}))

