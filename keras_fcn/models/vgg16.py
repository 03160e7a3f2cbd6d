"""The VGG16 trunk of the reference FCNs, layer for layer, and the FCN built on it.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (https://arxiv.org/abs/1411.4038), and the authors' released Caffe
models. Layer names follow the reference (``conv1_1`` ... ``conv5_3``, ``pool1`` ... ``pool5``,
``fc6``, ``fc7``, then the heads of :mod:`keras_fcn.models.heads`), so weights map by name.

The trunk is registered as ``"vgg16"`` (:data:`VGG16`, a
:class:`keras_fcn.models.trunk.Trunk`); :func:`keras_fcn.models.build_fcn` builds the FCNs.

Example:
    >>> pool3, pool4, fc7 = vgg16_features(keras.Input((None, None, 3)))
"""

import numpy as np
from keras import layers

from keras_fcn.layers import Conv2D, MaxPooling2D, ZeroPadding2D
from keras_fcn.models.trunk import CAFFE, Trunk, register_trunk
from keras_fcn.weights import load_weights
from keras_fcn.weights.imagenet import fetch_vgg16_imagenet_weights

VGG16_WIDTHS = (64, 128, 256, 512, 512)
# The convolutions and the pooling layer of each VGG16 block, named as the reference.
VGG16_BLOCKS = (
    (("conv1_1", "conv1_2"), "pool1"),
    (("conv2_1", "conv2_2"), "pool2"),
    (("conv3_1", "conv3_2", "conv3_3"), "pool3"),
    (("conv4_1", "conv4_2", "conv4_3"), "pool4"),
    (("conv5_1", "conv5_2", "conv5_3"), "pool5"),
)
# Crop offsets of the reference models (top-left corner of the window, in pixels).
VGG16_OFFSETS = {"score_pool4c": 5, "score_pool3c": 9, "score": {"32s": 19, "16s": 27, "8s": 31}}


def check_widths(widths, fc_units):
    """Checks the VGG16 options: five positive channel counts (conv1 .. conv5) and ``fc_units``.

    Example:
        >>> check_widths((4, 4, 8, 8), 16)
        Traceback (most recent call last):
        ValueError: widths must be 5 positive ints (conv1 .. conv5...
    """
    try:
        widths = tuple(widths)
    except TypeError:
        widths = (widths,)
    if len(widths) != len(VGG16_BLOCKS) or not all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w > 0
            for w in widths):
        raise ValueError(f"widths must be {len(VGG16_BLOCKS)} positive ints (conv1 .. conv5, "
                         "one per pooled block: fewer blocks would change the strides the "
                         f"heads rely on). Received: widths={widths!r}")
    if isinstance(fc_units, bool) or not isinstance(fc_units, (int, np.integer)) \
            or fc_units < 1:
        raise ValueError(f"fc_units must be a positive int. Received: fc_units={fc_units!r}")
    return {"widths": tuple(int(w) for w in widths), "fc_units": int(fc_units)}


def vgg16_features(x, dropout=0.5, widths=VGG16_WIDTHS, fc_units=4096):
    """The convolutionalized VGG16 trunk of the reference FCNs.

    Pads the input by 100 pixels, applies ``conv1_1`` (valid) .. ``conv5_3``, ceil-mode
    ``pool1`` .. ``pool5`` (``padding="same"``), then ``fc6`` (7x7 valid) and ``fc7`` (1x1),
    each with ReLU and dropout (``drop6``, ``drop7``).

    Returns:
        ``(pool3, pool4, fc7)`` tensors at strides 8, 16 and 32 of the padded input.

    Example:
        >>> pool3, pool4, fc7 = vgg16_features(keras.Input((None, None, 3)))
    """
    x = ZeroPadding2D(100, name="pad1")(x)
    pools = []
    for width, (convs, pool) in zip(widths, VGG16_BLOCKS):
        for name in convs:
            padding = "valid" if name == "conv1_1" else "same"
            x = Conv2D(width, 3, padding=padding, activation="relu", name=name)(x)
        x = MaxPooling2D(2, strides=2, padding="same", name=pool)(x)  # fast JAX gradient
        pools.append(x)
    x = Conv2D(fc_units, 7, padding="valid", activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = Conv2D(fc_units, 1, padding="same", activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    return pools[2], pools[3], x


def load_vgg16_weights(model, weights):
    """The VGG16 trunk's weights loader: ``"imagenet"`` is the Keras VGG16 ImageNet classifier
    (``fc6``/``fc7`` by net surgery, downloaded once and verified); anything else goes to
    :func:`keras_fcn.weights.load_weights` (files and models by layer name).

    Example:
        >>> load_vgg16_weights(model, "imagenet")  # doctest: +SKIP
    """
    if isinstance(weights, str) and weights == "imagenet":
        weights = fetch_vgg16_imagenet_weights()
    return load_weights(model, weights)


VGG16 = register_trunk(Trunk(
    name="vgg16", features=vgg16_features, offsets=VGG16_OFFSETS, preprocessing=CAFFE,
    load_weights=load_vgg16_weights, options={"widths": VGG16_WIDTHS, "fc_units": 4096},
    check=check_widths, default_name="fcn{variant}"))

