"""The FCN heads: score, skip, upsampling and crop layers after a trunk, for every backbone.

Layer names are the reference's (Long et al., CVPR 2015, and the authors' Caffe nets):
``score_fr``, ``upscore`` (32s), ``upscore2``, ``score_pool4``, ``score_pool4c``,
``fuse_pool4``, ``upscore16`` (16s), ``upscore_pool4``, ``score_pool3``, ``score_pool3c``,
``fuse_pool3``, ``upscore8`` (8s), ``scale_pool4``/``scale_pool3`` (at-once 8s) and the final
crop ``score``. Score layers start at zero and upsampling layers at bilinear interpolation.

Each trunk (:class:`keras_fcn.models.trunk.Trunk`) brings its crop offsets (``offsets``),
keyed by crop layer name:

- VGG16 (input padded by 100 px) crops the skip scores to the upsampled grid:
  ``{"score_pool4c": 5, "score_pool3c": 9, "score": {"32s": 19, "16s": 27, "8s": 31}}``.
- MobileNetV2 crops the upsampled scores to the skip grid (``upscore2c``,
  ``upscore_pool4c``) and the final scores at 0.
- AlexNet and GoogLeNet (FCN-32s only) crop the final scores at 18 and 16, after an
  ``upscore`` of kernel 63 (``upsample_kernels``).

Example:
    >>> image = keras.Input((None, None, 3))
    >>> from keras_fcn.models import get_trunk, vgg16_features
    >>> logits = fcn_heads("8s", image, vgg16_features(image), 21, get_trunk("vgg16"))
    >>> logits.shape
    (None, None, None, 21)
"""

import collections

from keras import layers

from keras_fcn.layers import (BilinearUpsampling, Conv2D, CropToReference, ResizeToReference,
                               Scale)
# Every layer the heads add starts with one of HEAD_PREFIXES (the task suffixes of the
# two-headed model come after them); every other layer of an FCN but its input belongs to the
# trunk.
from keras_fcn.weights.io import HEAD_PREFIXES  # noqa: F401

# The skips of FCN-16s (pool4) and FCN-8s (pool4, then pool3), in the order they are fused,
# with the reference's layer names: the at-once FCN-8s scales the pool features first
# (``scale``, by ``factor``); the scores so far are upsampled 2x (``upsample``), the pool
# features scored (``score``), one of the two cropped to the other (``up_crop`` or
# ``skip_crop``, whichever the backbone's offsets name) and both added (``fuse``).
Skip = collections.namedtuple(
    "Skip", ["scale", "factor", "upsample", "score", "up_crop", "skip_crop", "fuse"])
SKIPS = (
    Skip("scale_pool4", 0.01, "upscore2", "score_pool4", "upscore2c", "score_pool4c",
         "fuse_pool4"),
    Skip("scale_pool3", 0.0001, "upscore_pool4", "score_pool3", "upscore_pool4c",
         "score_pool3c", "fuse_pool3"),
)
CROPS = {skip.up_crop for skip in SKIPS} | {skip.skip_crop for skip in SKIPS}
# Per variant: how many skips, and the last upsampling to the input (name, stride).
DEPTHS = {"32s": (0, "upscore", 32), "16s": (1, "upscore16", 16), "8s": (2, "upscore8", 8)}


def depth_of(variant, trunk):
    """The ``DEPTHS`` key of ``variant``'s heads on ``trunk`` (its ``head_variants`` applied;
    the at-once FCN-8s has FCN-8s' depth).

    Example:
        >>> from keras_fcn.models import get_trunk
        >>> depth_of("8s_at_once", get_trunk("vgg16"))
        '8s'
    """
    variant = trunk.head_variants.get(variant, variant)
    return "8s" if variant == "8s_at_once" else variant


def upsampling_kernel_sizes(variant, num_classes, trunk):
    """The weight count of each learned upsampling layer of FCN-``variant``'s heads.

    Each is a ``k x k x num_classes x num_classes`` transposed convolution, so these are the
    weights that grow with the square of the class count; computed before anything is built.

    Returns:
        ``{layer name: weights}`` in the order the heads apply them (empty for ``"dilated"``,
        whose heads resize without weights).

    Example:
        >>> from keras_fcn.models import get_trunk
        >>> upsampling_kernel_sizes("8s", 21, get_trunk("vgg16"))
        {'upscore2': 7056, 'upscore_pool4': 7056, 'upscore8': 112896}
    """
    depth = depth_of(variant, trunk)
    if depth not in DEPTHS:
        return {}
    skip_count, last_upsample, stride = DEPTHS[depth]
    kernels = {names.upsample: 4 for names in SKIPS[:skip_count]}
    kernels[last_upsample] = trunk.upsample_kernels.get(last_upsample) or 2 * stride
    return {name: k * k * num_classes * num_classes for name, k in kernels.items()}


def score_layer(num_classes, name):
    """A 1x1 convolution to class scores, zero-initialized (as in the paper)."""
    return Conv2D(num_classes, 1, padding="same", name=name,
                         kernel_initializer="zeros", bias_initializer="zeros")


def upsample_layer(num_classes, stride, name, trainable, kernel=None):
    """A bias-free transposed convolution initialized to bilinear upsampling by ``stride``.

    The kernel is ``2 * stride`` unless given (the reference's odd 63 for FCN-AlexNet).
    """
    return layers.Conv2DTranspose(
        num_classes, kernel or 2 * stride, strides=stride, padding="valid", use_bias=False,
        kernel_initializer=BilinearUpsampling(), trainable=trainable, name=name,
    )


def head_name(name, suffix):
    """A head layer's name for a task suffix: ``score_fr_sem``, and ``score_pool4_semc`` for
    the crop layers (the reference puts the suffix before their final ``c``)."""
    if name in CROPS:
        return f"{name[:-1]}{suffix}c"
    return f"{name}{suffix}"


def _fuse(up, skip, skip_names, offsets, suffix):
    """Crops the larger map to the other's grid (``offsets`` names which) and adds them."""
    if skip_names.up_crop in offsets:
        up = CropToReference(offsets[skip_names.up_crop],
                             name=head_name(skip_names.up_crop, suffix))([up, skip])
    else:
        skip = CropToReference(offsets[skip_names.skip_crop],
                               name=head_name(skip_names.skip_crop, suffix))([skip, up])
    return layers.Add(name=head_name(skip_names.fuse, suffix))([up, skip])


def fcn_heads(variant, image, features, num_classes, trunk, trainable_upsampling=False,
              suffix=""):
    """Builds the heads of FCN-``variant`` on a trunk's features and returns the logits.

    Args:
        variant: ``"32s"``, ``"16s"``, ``"8s"`` or ``"8s_at_once"`` (skips scaled first), one
            of ``trunk.variants``.
        image: the model input; the final ``score`` crop takes its height and width.
        features: the trunk's ``(stride8, stride16, stride32)`` features (``pool3``,
            ``pool4``, ``fc7`` for VGG16); the 32s-only trunks give None for the first two.
        num_classes: number of classes.
        trunk: the :class:`keras_fcn.models.trunk.Trunk`: its crop offsets (see the module
            docstring), upsampling kernels and head variants.
        trainable_upsampling: train the bilinear transposed convolutions.
        suffix: appended to every layer name, for several heads on one trunk (the two-headed
            SIFT Flow FCN uses ``_sem`` and ``_geo``).

    Returns:
        Float32 logits ``(N, H, W, num_classes)`` aligned with ``image``.
    """
    depth = depth_of(variant, trunk)
    variant = trunk.head_variants.get(variant, variant)
    skip_count, last_upsample, stride = DEPTHS[depth]
    stride8, stride16, stride32 = features
    x = score_layer(num_classes, head_name("score_fr", suffix))(stride32)
    for names, skip_features in zip(SKIPS[:skip_count], (stride16, stride8)):
        if variant == "8s_at_once":
            skip_features = Scale(names.factor, name=head_name(names.scale, suffix))(
                skip_features)
        up = upsample_layer(num_classes, 2, head_name(names.upsample, suffix),
                            trainable_upsampling)(x)
        skip = score_layer(num_classes, head_name(names.score, suffix))(skip_features)
        x = _fuse(up, skip, names, trunk.offsets, suffix)
    up = upsample_layer(num_classes, stride, head_name(last_upsample, suffix),
                        trainable_upsampling, trunk.upsample_kernels.get(last_upsample))(x)
    return CropToReference(trunk.offsets["score"][depth], name=head_name("score", suffix),
                           dtype="float32")([up, image])


# torchvision's FCNHead on a dilated trunk (output stride 8): a 3x3 convolution to a quarter of
# the channels, batch norm, ReLU, dropout, a 1x1 convolution to the classes, then a bilinear
# resize to the input. Layer names follow torchvision's state-dict keys (``classifier.0`` ->
# ``classifier_0``), so its released weights convert by name.
DILATED_HEADS = (("out", "classifier", 512), ("aux", "aux_classifier", 256))


def fcn_head(x, num_classes, prefix, channels, dropout):
    """torchvision's ``FCNHead``: ``{prefix}_0`` 3x3 conv (no bias), ``{prefix}_1`` batch norm
    (epsilon 1e-5, as PyTorch), ReLU, dropout, ``{prefix}_4`` 1x1 conv to the classes."""
    x = Conv2D(channels, 3, padding="same", use_bias=False, name=f"{prefix}_0")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{prefix}_1")(x)
    x = layers.ReLU(name=f"{prefix}_2")(x)
    x = layers.Dropout(dropout, name=f"{prefix}_3")(x)
    return Conv2D(num_classes, 1, name=f"{prefix}_4")(x)


def dilated_heads(image, features, num_classes, dropout=0.1, aux=False):
    """The heads of torchvision's FCN-ResNet on a dilated trunk's features.

    Args:
        image: the model input; the logits are resized to its height and width.
        features: the trunk's ``(stride8, stride16, stride32)`` features, all at stride 8 for
            a dilated trunk (ResNet ``layer2``, ``layer3``, ``layer4``).
        num_classes: number of classes.
        dropout: the heads' dropout rate (torchvision: 0.1).
        aux: also return the auxiliary head on the middle features (``layer3``).

    Returns:
        Float32 logits ``(N, H, W, num_classes)``, or ``{"out": ..., "aux": ...}`` with
        ``aux=True`` (torchvision's output dict).
    """
    sources = {"out": features[2], "aux": features[1]}
    outputs = {}
    for key, prefix, channels in DILATED_HEADS[:2 if aux else 1]:
        scores = fcn_head(sources[key], num_classes, prefix, channels, dropout)
        outputs[key] = ResizeToReference(name="score" if key == "out" else "score_aux",
                                         dtype="float32")([scores, image])
    return outputs if aux else outputs["out"]
