"""FCN-AlexNet, layer for layer as the reference ``voc-fcn-alexnet`` (fcn.berkeleyvision.org).

The CaffeNet trunk (Krizhevsky et al. 2012, with pooling before normalization) made fully
convolutional, as the paper's Table 1 compares it with FCN-VGG16 and FCN-GoogLeNet (Long,
Shelhamer, Darrell, CVPR 2015, https://arxiv.org/abs/1411.4038)::

    pad1     zero padding by 100 (Caffe's conv1 pad: 100)
    conv1    11x11 stride 4, 96, ReLU         pool1  3x3 stride 2     norm1  LRN
    conv2    5x5 pad 2, group 2, 256, ReLU    pool2  3x3 stride 2     norm2  LRN
    conv3    3x3 pad 1, 384, ReLU
    conv4    3x3 pad 1, group 2, 384, ReLU
    conv5    3x3 pad 1, group 2, 256, ReLU    pool5  3x3 stride 2
    fc6      6x6 valid, 4096, ReLU, drop6     fc7    1x1, 4096, ReLU, drop7
    score_fr 1x1 to the classes (zero-initialized)
    upscore  bilinear transposed conv, kernel 63, stride 32, no bias, frozen
    score    crop to the input at offset 18

LRN is size 5, alpha 1e-4, beta 0.75, k 1 across channels
(:class:`keras_fcn.layers.LocalResponseNormalization`). Grouped convolutions are Keras
``Conv2D(groups=2)``: TFLite's builtin ``CONV_2D`` runs them (no Flex op), and their kernels
``(kh, kw, in / 2, out)`` are Caffe's ``(out, in / 2, kh, kw)`` transposed, groups in the
same channel order.

Caffe pools in *ceil mode*: ``ceil((n - 3) / 2) + 1`` outputs, the last window clipped at the
border. Keras ``padding="same"`` differs for odd ``n`` (it pads the top too), so each pool is
one zero row and column at the bottom and right (``pool1_pad``, ...) and a valid 3x3 pool:
``floor((n + 1 - 3) / 2) + 1`` is the same count, and the zeros never win the max because
every pooled tensor follows a ReLU (values >= 0).

The crop offset, by Caffe's ``coord_map`` (the reference's ``crop(n.upscore, n.data)``): a
layer of kernel ``k``, stride ``s`` and padding ``p`` maps its output coordinate ``y`` to the
input coordinate ``s * y + (k - 1) / 2 - p``. From ``fc6`` back to the data: ``fc6`` (k 6)
``y + 2.5``; ``pool5`` ``2y + 1``; ``conv5``..``conv3`` (k 3, p 1) and ``conv2`` (k 5, p 2)
``y``; ``pool2`` ``2y + 1``; ``pool1`` ``2y + 1``; ``conv1`` (k 11, s 4, p 100) ``4y - 95``.
Composed: ``data = 32 * f + 13`` for the ``fc6``/``score_fr`` coordinate ``f``. ``upscore``
(k 63, s 32) inverts a stride-32 map: ``f = (u - 31) / 32``, so ``data = u - 18``; the input
pixel ``i`` is ``upscore`` pixel ``i + 18``: offset 18 (the reference's ``val.prototxt`` says
``offset: 18``). The odd kernel 63 keeps it an integer (with 64 it would be 18.5).

The trunk is registered as ``"alexnet"`` (:data:`ALEXNET`); the heads are the FCN-32s of
:mod:`keras_fcn.models.heads` with the kernel-63 ``upscore`` and crop offset 18.

Example:
    >>> model = keras_fcn.build_fcn32s(21, weights=None, backbone="alexnet")
    >>> [layer.name for layer in model.layers][-3:]
    ['score_fr', 'upscore', 'score']
"""

import keras
from keras import layers

from keras_fcn._checks import is_positive_int
from keras_fcn.layers import Conv2D, LocalResponseNormalization, MaxPooling2D, ZeroPadding2D
from keras_fcn.models.trunk import CAFFE, Trunk, register_trunk
from keras_fcn.weights.surgery import ALEXNET_FC_KERNELS, load_caffe_trunk

ALEXNET_WIDTHS = (96, 256, 384, 384, 256)  # conv1 .. conv5
ALEXNET_OFFSET = 18  # the final crop ``score`` (derived in the module docstring)
UPSCORE_KERNEL = 63  # the reference's odd kernel: integer crop offsets with 3x3 pools
# Per convolution: name, kernel, stride, groups, then the layers after its ReLU. Caffe's
# pad 2 (conv2) and 1 (conv3..conv5) at stride 1 are Keras's padding="same"; conv1's pad 100
# is ``pad1``.
ALEXNET_CONVS = (
    ("conv1", 11, 4, 1, ("pool1", "norm1")),
    ("conv2", 5, 1, 2, ("pool2", "norm2")),
    ("conv3", 3, 1, 1, ()),
    ("conv4", 3, 1, 2, ()),
    ("conv5", 3, 1, 2, ("pool5",)),
)


def caffe_max_pool(x, name):
    """Caffe's ceil-mode 3x3 stride-2 max pooling (no padding) of a non-negative tensor.

    One zero row and column at the bottom and right (``{name}_pad``), then a valid pool
    (see the module docstring); exact only after a ReLU.

    Example:
        >>> caffe_max_pool(keras.Input((55, 55, 96)), "pool1").shape
        (None, 27, 27, 96)
    """
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def lrn(x, name):
    """The AlexNet/GoogLeNet LRN: size 5, alpha 1e-4, beta 0.75, across channels."""
    return LocalResponseNormalization(5, 1e-4, 0.75, name=name)(x)


def check_widths(widths, fc_units):
    """Checks the AlexNet widths: five positive ints, even where a grouped conv splits them."""
    try:
        ok = len(widths) == 5 and all(is_positive_int(w) and w % 2 == 0 for w in widths)
    except TypeError:  # not a sequence: widths=96
        ok = False
    if not ok:
        raise ValueError("widths must be 5 positive even channel counts (conv1 .. conv5; the "
                         f"grouped conv2, conv4, conv5 split them in 2). Received: "
                         f"widths={widths!r}")
    if not is_positive_int(fc_units):  # fc_units=True was 1 unit
        raise ValueError(f"fc_units must be a positive int. Received: fc_units={fc_units!r}")
    return {"widths": tuple(int(w) for w in widths), "fc_units": int(fc_units)}




def alexnet_features(x, dropout=0.5, widths=ALEXNET_WIDTHS, fc_units=4096):
    """The convolutionalized CaffeNet trunk of FCN-AlexNet, up to ``drop7``.

    Returns:
        The ``fc7`` features (after ReLU and ``drop7``) at stride 32 of the padded input.

    Example:
        >>> fc7 = alexnet_features(keras.Input((None, None, 3)))
    """
    x = ZeroPadding2D(100, name="pad1")(x)
    for width, (name, kernel, stride, groups, after) in zip(widths, ALEXNET_CONVS):
        x = Conv2D(width, kernel, strides=stride, groups=groups, activation="relu",
                          padding="valid" if stride > 1 else "same", name=name)(x)
        for layer_name in after:
            x = caffe_max_pool(x, layer_name) if layer_name.startswith("pool") else lrn(
                x, layer_name)
    x = Conv2D(fc_units, 6, padding="valid", activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = Conv2D(fc_units, 1, activation="relu", name="fc7")(x)
    return layers.Dropout(dropout, name="drop7")(x)


def alexnet_trunk_features(x, dropout=0.5, widths=ALEXNET_WIDTHS, fc_units=4096):
    """The trunk's features for the FCN heads: only the stride-32 ``fc7`` (FCN-32s only)."""
    return None, None, alexnet_features(x, dropout, widths, fc_units)


def load_alexnet_weights(model, weights):
    """The AlexNet trunk's weights loader: ``"imagenet"`` (the BVLC CaffeNet
    ``.caffemodel``, ``fc6``/``fc7`` by net surgery), a ``.caffemodel`` (CaffeNet/AlexNet,
    the reference's ``alexnetfc`` or the released ``fcn-alexnet-pascal``), or any weights
    :func:`keras_fcn.weights.load_weights` reads."""
    return load_caffe_trunk(model, weights, "alexnet", ALEXNET_FC_KERNELS)


ALEXNET = register_trunk(Trunk(
    name="alexnet", features=alexnet_trunk_features, offsets={"score": {"32s": ALEXNET_OFFSET}},
    preprocessing=CAFFE, load_weights=load_alexnet_weights, variants=("32s",),
    options={"widths": ALEXNET_WIDTHS, "fc_units": 4096}, check=check_widths,
    upsample_kernels={"upscore": UPSCORE_KERNEL}, default_name="fcn_alexnet"))

