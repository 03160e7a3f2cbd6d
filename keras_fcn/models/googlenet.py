"""FCN-GoogLeNet, as the paper's Table 1 describes it (the authors never released it).

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015
(https://arxiv.org/abs/1411.4038), section 4.1: GoogLeNet (Szegedy et al. 2015, Inception v1)
with "only the final loss layer", "the final average pooling layer" discarded, scored and
upsampled as FCN-32s. The trunk is the BVLC GoogLeNet, layer for layer and named as its Caffe
layers with ``/`` -> ``_`` (Keras names may not contain ``/``; the converter
:func:`keras_fcn.weights.surgery.caffe_trunk_weights` maps them the same way)::

    pad1                 zero padding by 15 + 3 (our 15, then conv1's own pad 3)
    conv1_7x7_s2         7x7 stride 2, 64, ReLU       pool1_3x3_s2  3x3 stride 2
    pool1_norm1          LRN
    conv2_3x3_reduce     1x1, 64, ReLU                conv2_3x3     3x3, 192, ReLU
    conv2_norm2          LRN                          pool2_3x3_s2  3x3 stride 2
    inception_3a, _3b                                 pool3_3x3_s2  3x3 stride 2
    inception_4a .. _4e                               pool4_3x3_s2  3x3 stride 2
    inception_5a, _5b
    score_fr, upscore (bilinear, kernel 63, stride 32, frozen), score (crop at offset 16)

An inception block ``inception_3a`` has the branches ``inception_3a_1x1``;
``inception_3a_3x3_reduce`` -> ``inception_3a_3x3`` (pad 1); ``inception_3a_5x5_reduce`` ->
``inception_3a_5x5`` (pad 2); ``inception_3a_pool`` (3x3 max, stride 1, pad 1) ->
``inception_3a_pool_proj``, every conv with a ReLU, concatenated in that order
(``inception_3a_output``). Dropped: ``pool5/7x7_s1``, ``pool5/drop_7x7_s1``,
``loss3/classifier`` and both auxiliary classifiers (``loss1/*``, ``loss2/*``).

Choices that were ours (the paper does not say):

* Input padding 15 (with conv1's 3): the smallest for which every input size from 1 px gets
  a stride-32 score map whose upsampling covers the whole image (the reference pads VGG16 and
  AlexNet by 100 for the same reason; GoogLeNet has no valid ``fc6`` that needs more).
* ``upscore`` kernel 63, as FCN-AlexNet: with 3x3 pools every layer maps centres to integer
  coordinates, so the even kernel 64 of FCN-VGG16 would put the crop at a half pixel.
* A dropout (``drop``, the builder's ``dropout``) before ``score_fr``, where GoogLeNet had
  its own before the classifier.
* Ceil-mode pools, as Caffe computes them (see :func:`keras_fcn.models.alexnet.caffe_max_pool`;
  exact because every pooled tensor is non-negative: ReLU or LRN of ReLU outputs).
* The crop offset 16, by Caffe's ``coord_map`` (output ``y`` -> input ``s * y + (k - 1) / 2 -
  p``): the 1x1, "same"-padded 3x3/5x5 convs, the stride-1 pools and the LRNs map ``y`` to
  ``y``; the four ceil pools ``2y + 1``; ``conv1`` (k 7, s 2, p 3) ``2y``. So ``pool4``'s
  output ``f`` is ``2f + 1`` before it, ``4f + 3`` before ``pool3``, ``8f + 7`` before
  ``pool2``, ``16f + 15`` before ``pool1``, ``32f + 30`` in the padded input, ``32f + 15``
  in the image. ``upscore`` (k 63, s 32): ``f = (u - 31) / 32``, so image ``= u - 16``.

Example:
    >>> model = keras_fcn.build_fcn32s(num_classes=21, weights=None, backbone="googlenet")
    >>> model.get_layer("inception_5b_output").output.shape[-1]
    1024
"""

import math

import keras
import numpy as np
from keras import layers

from keras_fcn.layers import Conv2D, MaxPooling2D, ZeroPadding2D
from keras_fcn.models.alexnet import UPSCORE_KERNEL, caffe_max_pool, lrn
from keras_fcn.models.trunk import CAFFE, Trunk, register_trunk
from keras_fcn.weights.surgery import load_caffe_trunk

GOOGLENET_PAD = 15  # our choice (module docstring); conv1's own pad 3 comes on top
GOOGLENET_OFFSET = 16  # the final crop ``score``
# conv1/7x7_s2, conv2/3x3_reduce, conv2/3x3.
GOOGLENET_STEM = (64, 64, 192)
# Per inception block: 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj (Szegedy et al.,
# Table 1); a ceil-mode 3x3 stride-2 pool follows 3b (pool3) and 4e (pool4).
GOOGLENET_INCEPTIONS = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)
POOLS_AFTER = {"3b": "pool3_3x3_s2", "4e": "pool4_3x3_s2"}
GOOGLENET_WIDTHS = (GOOGLENET_STEM, tuple(widths for _, widths in GOOGLENET_INCEPTIONS))


def googlenet_widths(divisor=1):
    """GoogLeNet's channel widths divided by ``divisor`` (rounded up), for small trunks.

    Returns:
        ``(stem, inceptions)``: the 3 stem widths and 9 tuples of 6 inception widths, the
        ``widths`` argument of :func:`keras_fcn.models.build_fcn`.

    Example:
        >>> googlenet_widths(32)[0]
        (2, 2, 6)
    """
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"divisor must be a positive int. Received: divisor={divisor!r}")
    stem, blocks = GOOGLENET_WIDTHS
    scale = lambda ws: tuple(math.ceil(w / divisor) for w in ws)  # noqa: E731
    return scale(stem), tuple(scale(block) for block in blocks)


def check_widths(widths):
    """Checks ``(stem, inceptions)`` widths: 3 and 9 x 6 positive ints."""
    try:
        stem, blocks = widths
        ok = len(stem) == 3 and len(blocks) == len(GOOGLENET_INCEPTIONS) and all(
            len(block) == 6 for block in blocks) and all(
            isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w > 0
            for w in (*stem, *sum(map(tuple, blocks), ())))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError("GoogLeNet widths must be (stem, inceptions): 3 stem widths and 9 "
                         "tuples of 6 inception widths (see googlenet_widths()). Received: "
                         f"widths={widths!r}")
    return {"widths": widths}


def conv_relu(x, filters, kernel, name, strides=1, padding="same"):
    """A convolution with its ReLU (Caffe's ``relu_*`` layers run in place)."""
    return Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu",
                         name=name)(x)


def inception(x, block, widths):
    """One inception module, its layers named ``inception_{block}_...`` as BVLC GoogLeNet."""
    n1, n3r, n3, n5r, n5, npool = widths
    prefix = f"inception_{block}"
    branch1 = conv_relu(x, n1, 1, f"{prefix}_1x1")
    branch3 = conv_relu(conv_relu(x, n3r, 1, f"{prefix}_3x3_reduce"), n3, 3, f"{prefix}_3x3")
    branch5 = conv_relu(conv_relu(x, n5r, 1, f"{prefix}_5x5_reduce"), n5, 5, f"{prefix}_5x5")
    pool = MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}_pool")(x)
    branch_pool = conv_relu(pool, npool, 1, f"{prefix}_pool_proj")
    return layers.Concatenate(name=f"{prefix}_output")([branch1, branch3, branch5, branch_pool])


def googlenet_features(x, widths=GOOGLENET_WIDTHS):
    """The GoogLeNet trunk up to ``inception_5b_output`` (stride 32 of the padded input).

    Example:
        >>> googlenet_features(keras.Input((None, None, 3))).shape
        (None, None, None, 1024)
    """
    stem, blocks = widths
    x = ZeroPadding2D(GOOGLENET_PAD + 3, name="pad1")(x)
    x = conv_relu(x, stem[0], 7, "conv1_7x7_s2", strides=2, padding="valid")
    x = lrn(caffe_max_pool(x, "pool1_3x3_s2"), "pool1_norm1")
    x = conv_relu(x, stem[1], 1, "conv2_3x3_reduce")
    x = lrn(conv_relu(x, stem[2], 3, "conv2_3x3"), "conv2_norm2")
    x = caffe_max_pool(x, "pool2_3x3_s2")
    for (block, _), block_widths in zip(GOOGLENET_INCEPTIONS, blocks):
        x = inception(x, block, block_widths)
        if block in POOLS_AFTER:
            x = caffe_max_pool(x, POOLS_AFTER[block])
    return x


def googlenet_trunk_features(x, dropout=0.5, widths=GOOGLENET_WIDTHS):
    """The trunk's features for the FCN heads: the stride-32 ``inception_5b_output`` after a
    ``drop`` dropout (GoogLeNet's own dropout sat before its classifier); FCN-32s only."""
    return None, None, layers.Dropout(dropout, name="drop")(googlenet_features(x, widths))


def load_googlenet_weights(model, weights):
    """The GoogLeNet trunk's weights loader: ``"imagenet"`` (the BVLC GoogLeNet
    ``.caffemodel``), a ``.caffemodel`` path, or any weights
    :func:`keras_fcn.weights.load_weights` reads."""
    return load_caffe_trunk(model, weights, "googlenet")


GOOGLENET = register_trunk(Trunk(
    name="googlenet", features=googlenet_trunk_features,
    offsets={"score": {"32s": GOOGLENET_OFFSET}}, preprocessing=CAFFE,
    load_weights=load_googlenet_weights, variants=("32s",),
    options={"widths": GOOGLENET_WIDTHS}, check=check_widths,
    upsample_kernels={"upscore": UPSCORE_KERNEL}, default_name="fcn_googlenet"))

