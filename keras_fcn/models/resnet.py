"""FCN-ResNet50 and FCN-ResNet101 as torchvision defines them: a dilated ResNet (output
stride 8) with torchvision's ``FCNHead`` and its auxiliary head.

The trunk is torchvision's ResNet v1.5 (the stride of a down-sampling bottleneck is on its
3x3 convolution) built with ``replace_stride_with_dilation=[False, True, True]``: ``layer3``
and ``layer4`` keep stride 8; torchvision's rule gives the first block of a dilated layer the
dilation before it (``layer3.0``: 1, ``layer4.0``: 2) and the others the new one (2, 4).
Batch norm uses PyTorch's epsilon 1e-5 and momentum 0.1 (Keras ``momentum=0.9``). PyTorch
pads symmetrically, so the stride-2 layers (``conv1`` 7x7 pad 3, ``layer2.0.conv2`` 3x3 pad 1,
the 3x3 pad 1 max pool) are an explicit ``ZeroPadding2D`` and a "valid" layer (Keras "same"
would pad only at the bottom and right of an even size); the pool follows a ReLU, so zero
padding equals PyTorch's -inf padding. The heads (:func:`keras_fcn.models.heads.dilated_heads`)
score ``layer4`` (``classifier_*``) and, with ``aux=True``, ``layer3`` (``aux_classifier_*``)
and resize bilinearly to the input (``F.interpolate(align_corners=False)``).

Layer names are torchvision's state-dict keys with ``_`` for ``.`` (``conv1``, ``bn1``,
``layer3_5_conv2``, ``layer1_0_downsample_0``, ``classifier_4``), so its weights convert by
name (:mod:`keras_fcn.weights.torchvision`). Inputs are torchvision's: ``(RGB / 255 - mean) /
std`` with the ImageNet mean and std (:func:`torchvision_preprocess_input`, or
``include_preprocessing=True``).

References: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016
(https://arxiv.org/abs/1512.03385); Long et al., CVPR 2015; torchvision's
``models.segmentation.fcn_resnet50``/``fcn_resnet101``.

Example:
    >>> model = build_fcn_resnet50(num_classes=21)
    >>> model.backbone, model.variant, model.output_shape
    ('resnet50', 'dilated', (None, None, None, 21))
"""

import os

import numpy as np
from keras import layers, ops

from keras_fcn.layers import (IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, Conv2D, ImageNetNormalization,
                               MaxPooling2D)
from keras_fcn.models.trunk import Preprocessing, Trunk, register_trunk
from keras_fcn.weights import load_weights
from keras_fcn.weights.torchvision import (
    fetch_torchvision_resnet_weights,
    load_torchvision_weights,
)

# Bottleneck blocks per stage (layer1 .. layer4) and the stages' widths (planes; a block
# outputs 4x). Stride and dilation per stage: (stride, dilate) as torchvision's _make_layer.
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
RESNET_WIDTHS = (64, 128, 256, 512)
STAGES = ((1, False), (2, False), (2, True), (2, True))
EXPANSION = 4
BN_EPSILON = 1e-5  # PyTorch's; Keras' default is 1e-3
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1: Keras weighs the old statistics
TORCH_SUFFIXES = (".pth", ".pt")


def batch_norm(name):
    """A batch norm with PyTorch's epsilon and momentum."""
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def conv(filters, kernel, name, stride=1, dilation=1):
    """A bias-free convolution padded as PyTorch's (``padding = dilation * (kernel // 2)``):
    "same" at stride 1 (symmetric for odd kernels), explicit zero padding at stride 2."""
    if stride == 1:
        return Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                             use_bias=False, name=name)
    return Conv2D(filters, kernel, strides=stride, padding="valid",
                         dilation_rate=dilation, use_bias=False, name=name)


def _strided(x, filters, kernel, name, stride):
    """``conv`` with PyTorch's symmetric padding of ``kernel // 2`` when ``stride`` is 2."""
    if stride != 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return conv(filters, kernel, name, stride)(x)


def bottleneck(x, width, name, stride=1, dilation=1, downsample=False):
    """torchvision's ``Bottleneck``: 1x1, 3x3 (stride, dilation), 1x1 to ``4 * width``, each
    batch-normalized, plus the identity or ``downsample`` (1x1 conv at the stride, BN)."""
    shortcut = x
    y = conv(width, 1, f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(y))
    if stride == 1:
        y = conv(width, 3, f"{name}_conv2", dilation=dilation)(y)
    else:
        y = _strided(y, width, 3, f"{name}_conv2", stride)
    y = layers.ReLU(name=f"{name}_relu2")(batch_norm(f"{name}_bn2")(y))
    y = batch_norm(f"{name}_bn3")(conv(EXPANSION * width, 1, f"{name}_conv3")(y))
    if downsample:
        shortcut = Conv2D(EXPANSION * width, 1, strides=stride, use_bias=False,
                                 name=f"{name}_downsample_0")(x)
        shortcut = batch_norm(f"{name}_downsample_1")(shortcut)
    return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([y, shortcut]))


def check_depth(depth):
    """``depth`` if it is 50 or 101, else a ValueError naming it."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"FCN-ResNet depth must be one of {tuple(RESNET_BLOCKS)}. "
                         f"Received: depth={depth!r}")
    return depth


def check_widths(widths):
    """Checks the ResNet option: 4 positive stage widths (``layer1`` .. ``layer4``).

    Example:
        >>> check_widths((4, 4, 8))
        Traceback (most recent call last):
        ValueError: widths must be 4 positive ints (the planes of layer1 .. layer4...
    """
    try:
        ok = len(widths) == len(RESNET_WIDTHS) and all(
            isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w > 0
            for w in widths)
    except TypeError:  # not a sequence: widths=64
        ok = False
    if not ok:  # a 5th width was ignored, 3 failed with an IndexError deep in the build
        raise ValueError(f"widths must be {len(RESNET_WIDTHS)} positive ints (the planes of "
                         f"layer1 .. layer4; torchvision's {RESNET_WIDTHS}). "
                         f"Received: widths={widths!r}")
    return {"widths": tuple(int(w) for w in widths)}


def resnet_features(x, depth=50, widths=RESNET_WIDTHS):
    """The dilated ResNet-``depth`` trunk of torchvision's FCN-ResNet (random init).

    Args:
        x: a Keras tensor ``(N, H, W, C)``, normalized as :func:`torchvision_preprocess_input`.
        depth: 50 or 101.
        widths: the stages' widths (torchvision's planes ``(64, 128, 256, 512)``; the stem
            has ``widths[0]`` channels); smaller ones for fast tests, the defaults for
            torchvision's weights.

    Returns:
        ``(layer2, layer3, layer4)`` tensors, all at stride 8 of the input (ceil division
        by 2 three times): the FCN heads' ``(stride8, stride16, stride32)`` of a dilated trunk.

    Example:
        >>> layer2, layer3, layer4 = resnet_features(keras.Input((None, None, 3)), 50)
        >>> layer2.shape[-1], layer3.shape[-1], layer4.shape[-1]
        (512, 1024, 2048)
    """
    check_depth(depth)
    widths = check_widths(widths)["widths"]
    x = _strided(x, widths[0], 7, "conv1", 2)
    x = layers.ReLU(name="relu")(batch_norm("bn1")(x))
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = MaxPooling2D(3, strides=2, name="maxpool")(x)
    outputs, dilation, channels = [], 1, widths[0]
    for stage, (blocks, width, (stride, dilate)) in enumerate(
            zip(RESNET_BLOCKS[depth], widths, STAGES), start=1):
        first_dilation = dilation
        if dilate:
            dilation, stride = dilation * stride, 1
        for block in range(blocks):
            x = bottleneck(
                x, width, f"layer{stage}_{block}", stride=stride if block == 0 else 1,
                dilation=first_dilation if block == 0 else dilation,
                downsample=block == 0 and (stride != 1 or channels != EXPANSION * width))
            channels = EXPANSION * width
        outputs.append(x)
    return tuple(outputs[1:])


def resnet_trunk_features(depth):
    """The trunk's ``features(x, dropout, widths)`` for the contract: the dropout is the
    heads' (torchvision's ``FCNHead``), not the trunk's."""
    def features(x, dropout=0.1, widths=RESNET_WIDTHS):  # pylint: disable=unused-argument
        return resnet_features(x, depth, widths)
    features.__name__ = f"resnet{depth}_features"
    return features


def torchvision_preprocess_input(images):
    """torchvision's input normalization on arrays: RGB 0..255 -> float32
    ``(x / 255 - mean) / std`` with the ImageNet mean ``(0.485, 0.456, 0.406)`` and std
    ``(0.229, 0.224, 0.225)``. Numpy in, numpy out; a tensor gives a tensor.

    Example:
        >>> torchvision_preprocess_input(np.zeros((1, 3), np.uint8)).round(4)
        array([[-2.1179, -2.0357, -1.8044]], dtype=float32)
    """
    if images.shape[-1] != 3:
        raise ValueError("torchvision_preprocess_input expects RGB images with 3 channels "
                         f"last. Received: shape={tuple(images.shape)}")
    mean, std = np.asarray(IMAGENET_MEAN_RGB, "float32"), np.asarray(IMAGENET_STD_RGB, "float32")
    if isinstance(images, np.ndarray):
        return ((images.astype("float32") / np.float32(255) - mean) / std).astype("float32")
    return (ops.cast(images, "float32") / 255.0 - mean) / std


def torchvision_normalization(model=None):  # pylint: disable=unused-argument
    """The input normalization of the FCN-ResNets as a dict (export metadata, labels)."""
    return {"type": "mean_std", "mean_rgb": list(IMAGENET_MEAN_RGB),
            "std_rgb": list(IMAGENET_STD_RGB), "formula": "(RGB / 255 - mean_rgb) / std_rgb"}


TORCHVISION = Preprocessing("mean_std", ImageNetNormalization, torchvision_preprocess_input,
                            torchvision_normalization)


def _is_torch_file(weights):
    return (isinstance(weights, (str, os.PathLike))
            and os.fspath(weights).lower().endswith(TORCH_SUFFIXES))


def resnet_weights_loader(depth):
    """The trunk's weights loader: ``"imagenet"`` is torchvision's ImageNet ResNet-``depth``
    (IMAGENET1K_V1, downloaded once, sha256-prefix checked) into the trunk; a torchvision
    state dict (a dict or a ``.pth``/``.pt`` file) converts by name
    (:func:`keras_fcn.weights.load_torchvision_weights`); Keras files and models load by
    layer name (:func:`keras_fcn.weights.load_weights`)."""
    def load(model, weights):
        if isinstance(weights, str) and weights == "imagenet":
            return load_torchvision_weights(model, fetch_torchvision_resnet_weights(depth),
                                            trunk_only=True)
        if isinstance(weights, dict) or _is_torch_file(weights):
            return load_torchvision_weights(model, weights)
        return load_weights(model, weights)
    load.__name__ = f"load_resnet{depth}_weights"
    return load


# The trunks "resnet50" and "resnet101" (``backbone=``): dilated only, the heads' dropout 0.1,
# no crops (the heads resize). register_resnet_trunks() puts them in the builders' table.
RESNET_TRUNKS = {depth: Trunk(
    name=f"resnet{depth}", features=resnet_trunk_features(depth), offsets={},
    preprocessing=TORCHVISION, load_weights=resnet_weights_loader(depth),
    variants=("dilated",), dropout=0.1, options={"widths": RESNET_WIDTHS}, check=check_widths,
    default_name="fcn_{name}") for depth in RESNET_BLOCKS}


def register_resnet_trunks():
    """Registers ``"resnet50"`` and ``"resnet101"`` (:data:`RESNET_TRUNKS`) as backbones.

    Returns:
        The two :class:`keras_fcn.models.trunk.Trunk` objects.
    """
    return [register_trunk(trunk) for trunk in RESNET_TRUNKS.values()]


def build_resnet_fcn(variant, num_classes, input_shape, weights, dropout,
                     trainable_upsampling, include_preprocessing, name=None, depth=50,
                     aux=False, widths=None):
    """``build_fcn("dilated", ..., backbone=f"resnet{depth}")`` with positional arguments, as
    the other trunks' builders.

    Raises:
        ValueError: ``variant`` other than ``"dilated"`` (the paper's skip heads do not exist
            on this trunk), or ``depth`` other than 50 and 101.

    Example:
        >>> model = build_resnet_fcn("dilated", 5, (None, None, 3), None, 0.1, False, False)
    """
    from keras_fcn.models.builders import build_fcn  # pylint: disable=import-outside-toplevel

    if variant != "dilated":
        raise ValueError("The FCN-ResNets exist only as the 'dilated' variant (torchvision's "
                         f"FCNHead at output stride 8). Received: variant={variant!r}")
    check_depth(depth)
    del trainable_upsampling  # a fixed bilinear resize: nothing to train
    return build_fcn("dilated", num_classes, input_shape, weights, dropout, False,
                     include_preprocessing, f"resnet{depth}", name, widths=widths, aux=aux)


def build_fcn_resnet50(num_classes=21, input_shape=(None, None, 3), weights=None, aux=False,
                       include_preprocessing=False, dropout=0.1, name=None, widths=None):
    """Builds torchvision's FCN-ResNet50: dilated ResNet-50 (output stride 8), ``FCNHead``
    (``classifier_*``) and optionally the auxiliary head on ``layer3`` (``aux_classifier_*``).

    Given the same weights its logits equal ``torchvision.models.segmentation.fcn_resnet50``'s
    (``tests/test_resnet.py``).

    Args:
        num_classes: number of classes (21: torchvision's VOC labels).
        input_shape: ``(height, width, channels)``; ``None`` sizes take any image size.
        weights: ``None`` (random), ``"imagenet"`` (torchvision's ImageNet ResNet-50 trunk,
            downloaded once), a torchvision state dict or ``.pth`` file (an FCN-ResNet50's or
            a ResNet-50's, converted by name), a ``.keras``/``.weights.h5``/``.h5``/``.npz``
            file or ``keras.Model`` (by layer name), or the preset ``"coco-fcn-resnet50"``.
        aux: also output the auxiliary head: the model returns ``{"out": ..., "aux": ...}``
            as torchvision's.
        include_preprocessing: take raw RGB 0..255 and normalize inside the model (a
            ``preprocess`` layer); else feed :func:`torchvision_preprocess_input` of images.
        dropout: the heads' dropout (torchvision: 0.1).
        name: model name (default ``"fcn_resnet50"``).
        widths: the ResNet stages' widths (default ``(64, 128, 256, 512)``), smaller for
            fast experiments; pretrained weights need the defaults.

    Returns:
        An :class:`keras_fcn.models.FCN` from images ``(N, H, W, C)`` to float32 logits
        ``(N, H, W, num_classes)`` (or the dict with ``aux=True``).

    Example:
        >>> model = build_fcn_resnet50(num_classes=3, widths=(4, 4, 8, 8))
        >>> model(np.zeros((1, 37, 50, 3))).shape
        TensorShape([1, 37, 50, 3])
    """
    return build_resnet_fcn("dilated", num_classes, input_shape, weights, dropout, False,
                            include_preprocessing, name, 50, aux, widths)


def build_fcn_resnet101(num_classes=21, input_shape=(None, None, 3), weights=None, aux=False,
                        include_preprocessing=False, dropout=0.1, name=None, widths=None):
    """Builds torchvision's FCN-ResNet101: as :func:`build_fcn_resnet50` with a dilated
    ResNet-101 trunk (``layer3`` has 23 blocks); ``weights`` may be ``"imagenet"``
    (torchvision's ResNet-101), a state dict or the preset ``"coco-fcn-resnet101"``.

    Example:
        >>> model = build_fcn_resnet101(num_classes=21, aux=True)
        >>> sorted(model.output)  # torchvision's output dict
        ['aux', 'out']
    """
    return build_resnet_fcn("dilated", num_classes, input_shape, weights, dropout, False,
                            include_preprocessing, name, 101, aux, widths)


register_resnet_trunks()
