"""FCN-32s, FCN-16s, FCN-8s and the at-once FCN-8s on VGG16, layer for layer as the reference.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (https://arxiv.org/abs/1411.4038), and the authors' released Caffe
models. Layer names follow the reference (``conv1_1`` ... ``fc7``, ``score_fr``, ``upscore2``,
``score_pool4``, ``upscore_pool4``, ``score_pool3``, ``upscore8``), so weights map by name.
"""

import keras
from keras import layers

from keras_fcn import weights as weights_lib
from keras_fcn.layers import BilinearUpsampling, CaffePreprocessing, CropToReference, Scale

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
VARIANTS = ("32s", "16s", "8s", "8s_at_once")
BACKBONES = ("vgg16", "mobilenet_v2")

# Crop offsets of the reference models (top-left corner of the window, in pixels).
VGG16_OFFSETS = {"score_pool4c": 5, "score_pool3c": 9, "32s": 19, "16s": 27, "8s": 31}


def _check_args(variant, num_classes, input_shape, weights, dropout, backbone):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown FCN variant. Expected one of {VARIANTS}. Received: variant={variant!r}")
    if backbone not in BACKBONES:
        raise ValueError(
            f"Unknown backbone. Expected one of {BACKBONES}. Received: backbone={backbone!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer. Received: num_classes={num_classes!r}"
        )
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(d is None or (isinstance(d, int) and d > 0) for d in shape[:2])
        or not isinstance(shape[2], int)
        or shape[2] < 1
    ):
        raise ValueError(
            "input_shape must be (height, width, channels) with positive or None sizes and a "
            f"positive channel count. Received: input_shape={input_shape!r}"
        )
    if not (weights is None or isinstance(weights, (str, keras.Model)) or hasattr(weights, "__fspath__")):
        raise ValueError(
            "weights must be 'imagenet', None, a file path or a keras.Model. "
            f"Received: weights={weights!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1). Received: dropout={dropout!r}")
    return shape


def _conv(filters, size, name, padding="same", activation="relu", zero_init=False):
    init = "zeros" if zero_init else "glorot_uniform"
    return layers.Conv2D(
        filters, size, padding=padding, activation=activation, name=name,
        kernel_initializer=init, bias_initializer="zeros",
    )


def _upsample(num_classes, stride, name, trainable):
    """A bias-free transposed convolution initialized to bilinear upsampling by ``stride``."""
    return layers.Conv2DTranspose(
        num_classes, 2 * stride, strides=stride, padding="valid", use_bias=False,
        kernel_initializer=BilinearUpsampling(), trainable=trainable, name=name,
    )


def vgg16_features(x, dropout=0.5, widths=VGG16_WIDTHS, fc_units=4096):
    """The convolutionalized VGG16 trunk of the reference FCNs.

    Pads the input by 100 pixels, applies ``conv1_1`` (valid) .. ``conv5_3``, ceil-mode
    ``pool1`` .. ``pool5`` (``padding="same"``), then ``fc6`` (7x7 valid) and ``fc7`` (1x1),
    each with ReLU and dropout.

    Returns:
        ``(pool3, pool4, fc7)`` tensors at strides 8, 16 and 32 of the padded input.
    """
    x = layers.ZeroPadding2D(100, name="pad1")(x)
    pools = {}
    for block, (width, count) in enumerate(zip(widths, VGG16_CONVS_PER_BLOCK), start=1):
        for i in range(1, count + 1):
            padding = "valid" if (block, i) == (1, 1) else "same"
            x = _conv(width, 3, f"conv{block}_{i}", padding=padding)(x)
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{block}")(x)
        pools[block] = x
    x = _conv(fc_units, 7, "fc6", padding="valid")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = _conv(fc_units, 1, "fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    return pools[3], pools[4], x


def _head_name(base, suffix):
    """The reference names of a task's head layers: ``score_fr_sem``, ``score_pool4_semc``."""
    if base in ("score_pool4c", "score_pool3c"):
        return f"{base[:-1]}{suffix}c"
    return f"{base}{suffix}"


def _heads(variant, inputs, pool3, pool4, fc7, num_classes, offsets, trainable_upsampling,
           suffix=""):
    """The score, upsampling, skip and crop layers after the trunk.

    ``suffix`` is appended to every layer name, for models with several heads on one trunk
    (the two-headed SIFT Flow FCN uses ``_sem`` and ``_geo``).
    """
    n = lambda base: _head_name(base, suffix)  # noqa: E731
    score = _conv(num_classes, 1, n("score_fr"), activation=None, zero_init=True)(fc7)
    final_crop = lambda x, offset: CropToReference(offset, name=n("score"), dtype="float32")(
        [x, inputs]
    )
    if variant == "32s":
        up = _upsample(num_classes, 32, n("upscore"), trainable_upsampling)(score)
        return final_crop(up, offsets["32s"])

    def fuse(up, pool, level, scale):
        """Adds the scored, cropped ``pool{level}`` skip to ``up`` (scaled first at-once)."""
        if variant == "8s_at_once":
            pool = Scale(scale, name=n(f"scale_pool{level}"))(pool)
        skip = _conv(num_classes, 1, n(f"score_pool{level}"), activation=None, zero_init=True)(pool)
        skip = CropToReference(offsets[f"score_pool{level}c"], name=n(f"score_pool{level}c"))(
            [skip, up])
        return layers.Add(name=n(f"fuse_pool{level}"))([up, skip])

    up = _upsample(num_classes, 2, n("upscore2"), trainable_upsampling)(score)
    fused = fuse(up, pool4, 4, 0.01)
    if variant == "16s":
        up = _upsample(num_classes, 16, n("upscore16"), trainable_upsampling)(fused)
        return final_crop(up, offsets["16s"])

    up = _upsample(num_classes, 2, n("upscore_pool4"), trainable_upsampling)(fused)
    fused = fuse(up, pool3, 3, 0.0001)
    up = _upsample(num_classes, 8, n("upscore8"), trainable_upsampling)(fused)
    return final_crop(up, offsets["8s"])


def build_fcn(
    variant,
    num_classes=21,
    input_shape=(None, None, 3),
    weights="imagenet",
    dropout=0.5,
    trainable_upsampling=False,
    include_preprocessing=False,
    backbone="vgg16",
    name=None,
    widths=VGG16_WIDTHS,
    fc_units=4096,
):
    """Builds any FCN variant; the public builders are thin wrappers around this.

    ``widths`` and ``fc_units`` change the VGG16 channel widths; they exist for fast tests
    and experiments, and ImageNet weights need the defaults.
    """
    shape = _check_args(variant, num_classes, input_shape, weights, dropout, backbone)
    if include_preprocessing and shape[2] != 3:
        raise ValueError(
            "include_preprocessing=True needs RGB input with 3 channels. "
            f"Received: input_shape={input_shape!r}"
        )
    if backbone == "mobilenet_v2":
        from keras_fcn.models import mobilenet_v2 as mobilenet

        return mobilenet.build_mobilenet_v2_fcn(
            variant, num_classes, shape, weights, dropout, trainable_upsampling,
            include_preprocessing, name or f"fcn{variant}_mobilenet_v2",
        )
    inputs = keras.Input(shape, name="image")
    x = CaffePreprocessing(name="preprocess")(inputs) if include_preprocessing else inputs
    pool3, pool4, fc7 = vgg16_features(x, dropout, widths, fc_units)
    outputs = _heads(
        variant, inputs, pool3, pool4, fc7, num_classes, VGG16_OFFSETS, trainable_upsampling
    )
    model = keras.Model(inputs, outputs, name=name or f"fcn{variant}")
    if weights is not None:
        weights_lib.load_weights(model, weights)
    return model


_ARGS_DOC = """
    Args:
        num_classes: number of classes, including background (21 for PASCAL VOC).
        input_shape: ``(height, width, channels)``; ``None`` sizes accept any image size
            (odd sizes, images smaller than 32 px, very wide images). A fixed size gives
            static crops, which export best to TFLite.
        weights: ``"imagenet"`` (VGG16 ImageNet classifier turned into ``fc6``/``fc7`` by net
            surgery, downloaded once and verified), ``None`` (random trunk), a path to a
            ``.keras``/``.weights.h5``/``.h5``/``.npz`` file, or a ``keras.Model`` to copy from
            by layer name (staged training: FCN-16s from an FCN-32s, FCN-8s from an FCN-16s).
            Score layers not found in the source stay zero; upsampling layers stay bilinear.
        dropout: dropout rate after ``fc6`` and ``fc7`` (0.5 in the paper).
        trainable_upsampling: if True the bilinear transposed convolutions are trained
            (the reference keeps them fixed).
        include_preprocessing: if True the model takes raw RGB images with values in
            [0, 255] (float or uint8 data) and does the BGR conversion and mean subtraction
            itself; if False, feed it ``keras_fcn.preprocess_input(images)``.
        backbone: ``"vgg16"`` (the paper) or ``"mobilenet_v2"`` (a light backbone for edge
            devices).
        name: model name.

    Returns:
        A ``keras.Model`` mapping images ``(N, H, W, C)`` to per-pixel logits
        ``(N, H, W, num_classes)`` (float32 even under mixed precision), aligned with the input.
"""


def build_fcn32s(num_classes=21, input_shape=(None, None, 3), weights="imagenet", dropout=0.5,
                 trainable_upsampling=False, include_preprocessing=False, backbone="vgg16",
                 name=None):
    return build_fcn("32s", num_classes, input_shape, weights, dropout, trainable_upsampling,
                     include_preprocessing, backbone, name)


def build_fcn16s(num_classes=21, input_shape=(None, None, 3), weights="imagenet", dropout=0.5,
                 trainable_upsampling=False, include_preprocessing=False, backbone="vgg16",
                 name=None):
    return build_fcn("16s", num_classes, input_shape, weights, dropout, trainable_upsampling,
                     include_preprocessing, backbone, name)


def build_fcn8s(num_classes=21, input_shape=(None, None, 3), weights="imagenet", dropout=0.5,
                trainable_upsampling=False, include_preprocessing=False, at_once=False,
                backbone="vgg16", name=None):
    variant = "8s_at_once" if at_once else "8s"
    return build_fcn(variant, num_classes, input_shape, weights, dropout, trainable_upsampling,
                     include_preprocessing, backbone, name)


build_fcn32s.__doc__ = (
    "Builds FCN-32s: VGG16 trunk, ``score_fr`` and one 32x bilinear ``upscore``.\n"
    + _ARGS_DOC
    + "\n    Example:\n        >>> model = build_fcn32s(num_classes=21, weights=None)\n"
)
build_fcn16s.__doc__ = (
    "Builds FCN-16s: FCN-32s plus the ``pool4`` skip (``score_pool4``) fused at stride 16.\n"
    + _ARGS_DOC
    + "\n    Example:\n        >>> fcn16s = build_fcn16s(weights=trained_fcn32s)  # staged init\n"
)
build_fcn8s.__doc__ = (
    "Builds FCN-8s: FCN-16s plus the ``pool3`` skip (``score_pool3``) fused at stride 8.\n"
    + _ARGS_DOC.replace(
        "        backbone:",
        "        at_once: if True builds the at-once FCN-8s, whose ``pool4``/``pool3`` are\n"
        "            scaled by 0.01/0.0001 (``scale_pool4``/``scale_pool3``) so that all skips\n"
        "            train together in one stage.\n        backbone:",
    )
    + "\n    Example:\n        >>> model = build_fcn8s(num_classes=21)  # ImageNet VGG16 trunk\n"
)


def with_preprocessing(model, input_dtype="uint8", name=None):
    """Wraps a float-input VGG16 FCN so that it takes raw RGB images (``uint8`` by default).

    Use it on a model built with ``include_preprocessing=False`` before export, so the
    deployed model needs no outside preprocessing.

    Example:
        >>> deployable = with_preprocessing(trained_model)
        >>> deployable.predict(np.zeros((1, 64, 64, 3), np.uint8)).shape
        (1, 64, 64, 21)
    """
    if any(layer.name == "preprocess" for layer in model.layers):
        raise ValueError(f"Model {model.name!r} already has a 'preprocess' layer.")
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=input_dtype, name="image")
    outputs = model(CaffePreprocessing(name="preprocess")(inputs))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_{input_dtype}")
