"""The public FCN builders: ``build_fcn`` and the paper's FCN-32s, FCN-16s and FCN-8s, on
any registered trunk (:mod:`keras_fcn.models.trunk`): VGG16 (the paper), MobileNetV2,
AlexNet, GoogLeNet.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (https://arxiv.org/abs/1411.4038).

Example:
    >>> model = build_fcn8s(num_classes=21, weights=None)
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_fcn._checks import check_bool, check_positive_int, is_positive_int
from keras_fcn.models import (  # noqa: F401 (each registers its trunks)
    alexnet,
    googlenet,
    mobilenet_v2,
    resnet,
    vgg16,
)
from keras_fcn.models.alignment import STRIDES, check_feature_form, coord_maps
from keras_fcn.models.heads import (DEPTHS, depth_of, dilated_heads, fcn_heads,
                                    upsampling_kernel_sizes)
from keras_fcn.models.named_weights import (check_loaded, fetch_named_weights,
                                            load_named_weights)
from keras_fcn.models.trunk import (FCN, SHIPPED_TRUNKS, TRUNKS, VARIANTS,
                                    did_you_mean, get_trunk)

# The registered trunks by name (``backbone=``); ``get_trunk(name).variants`` are each one's.
BACKBONES = TRUNKS

# The most the heads' class-by-class upsampling kernels may take in float32: 256 GiB, more
# than any one accelerator holds. FCN-32s on VGG16 (the largest kernel, 64 x 64) reaches it at
# 4,096 classes and FCN-8s at 15,446; the largest segmentation label sets (ADE20K's full
# 3,688, LVIS's 1,203) stay under it, while a mistaken class count (a pixel count, 10**6)
# is refused here instead of a MemoryError from deep in Keras.
HEAD_BYTES_LIMIT = 2 ** 38


def check_head_size(variant, num_classes, trunk):
    """Refuses a class count whose upsampling kernels would exceed :data:`HEAD_BYTES_LIMIT`,
    and a single class: the heads score each class for a softmax, whose one-class output is
    always 1 (``keras_fcn.predict`` labelled every pixel 0, the metrics cut logits at 0.5).

    Raises:
        ValueError: ``num_classes=1``, naming ``num_classes=2`` (background and foreground);
            or naming ``num_classes``, the weights and bytes the kernels would need, the
            limit and the largest class count under it.

    Example:
        >>> check_head_size("8s", 10 ** 6, get_trunk("vgg16"))
        Traceback (most recent call last):
        ...
        ValueError: num_classes=1000000 would give the FCN heads' upsampling kernels ...
    """
    if num_classes == 1:
        raise ValueError(
            "An FCN scores each class with a softmax: num_classes=1 would label every pixel "
            "0. Use num_classes=2 (background and foreground) for a binary task. "
            f"Received: num_classes={num_classes}")
    sizes = upsampling_kernel_sizes(variant, num_classes, trunk)
    weights = sum(sizes.values())
    if weights * 4 <= HEAD_BYTES_LIMIT:
        return
    per_class_pair = weights // (num_classes * num_classes)
    most = math.isqrt(HEAD_BYTES_LIMIT // (4 * per_class_pair))
    raise ValueError(
        f"num_classes={num_classes} would give the FCN heads' upsampling kernels "
        f"({', '.join(sizes)}: k x k x num_classes x num_classes each) {weights:,} weights, "
        f"{weights * 4 / 2 ** 30:,.1f} GiB in float32; the limit is "
        f"{HEAD_BYTES_LIMIT // 2 ** 30} GiB, so at most {most:,} classes for "
        f"variant={variant!r}, backbone={trunk.name!r}. Expected the number of classes of "
        f"the label set. Received: num_classes={num_classes}")


def check_fcn_args(variant, num_classes, input_shape, weights, dropout, backbone="vgg16",
                   include_preprocessing=False):
    """Validates the arguments of the FCN builders before anything is built.

    Returns:
        ``input_shape`` as a tuple.

    Raises:
        ValueError: naming the bad argument and its value.

    Example:
        >>> check_fcn_args("8s", 21, [None, None, 3], None, 0.5)
        (None, None, 3)
    """
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"Unknown FCN variant. Expected one of {VARIANTS}."
                         f"{did_you_mean(variant, VARIANTS)} Received: variant={variant!r}")
    trunk = get_trunk(backbone)
    if variant not in trunk.variants:
        why = (" (the paper's Table 1 trunks other than VGG16 are FCN-32s only)"
               if trunk.name in ("alexnet", "googlenet") else
               " (a dilated trunk: one head at output stride 8, no skip fusion)"
               if tuple(trunk.variants) == ("dilated",) else "")
        raise ValueError(
            f"The {backbone} FCN exists only as {trunk.variants}{why}. Received: "
            f"variant={variant!r}, backbone={backbone!r}")
    check_positive_int("num_classes", num_classes)
    check_head_size(variant, num_classes, trunk)
    if keras.config.image_data_format() != "channels_last":
        # The crops, pads and weight layouts are channels last: the build failed deep inside.
        raise ValueError(
            "The FCNs are built channels last (N, H, W, C): call "
            "keras.config.set_image_data_format('channels_last') first (transpose "
            "channels-first images with keras.ops.transpose(x, (0, 2, 3, 1))). Received: "
            f"keras.config.image_data_format()={keras.config.image_data_format()!r}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    # A bool is an int to Python: (True, True, 3) was a 1 x 1 input.
    if (
        shape is None
        or len(shape) != 3
        or not all(d is None or is_positive_int(d) for d in shape[:2])
        or not is_positive_int(shape[2])
    ):
        raise ValueError(
            "input_shape must be (height, width, channels) with positive or None sizes and a "
            f"positive channel count. Received: input_shape={input_shape!r}"
        )
    shape = tuple(None if d is None else int(d) for d in shape)
    if trunk.input_channels is not None and shape[2] != trunk.input_channels:
        raise ValueError(
            f"The {backbone} trunk needs {trunk.input_channels} input channels. "
            f"Received: input_shape={input_shape!r}")
    if not (weights is None or isinstance(weights, (str, keras.Model))
            or hasattr(weights, "__fspath__")):
        raise ValueError(
            "weights must be 'imagenet', None, a preset name, a file path or a keras.Model. "
            f"Received: weights={weights!r}"
        )
    if dropout is not None and (isinstance(dropout, (bool, np.bool_))
                                or not isinstance(dropout, numbers.Real)
                                or not 0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be a rate in [0, 1) or None (the trunk's default). "
                         f"Received: dropout={dropout!r}")
    # A string flag is truthy: include_preprocessing="False" added the preprocessing.
    if check_bool("include_preprocessing", include_preprocessing) and shape[2] != 3:
        raise ValueError(
            "include_preprocessing=True needs RGB input with 3 channels. "
            f"Received: input_shape={input_shape!r}"
        )
    return shape




def canonical_option(value):
    """Nested lists and tuples as tuples, numpy ints as ints: options compared by value."""
    if isinstance(value, (tuple, list)):
        return tuple(canonical_option(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def check_pretrained_options(trunk, weights, options):
    """Refuses ``weights="imagenet"`` with trunk options (``widths``, ``fc_units``) other
    than the trunk's defaults, before anything is downloaded: the ImageNet classifier has the
    full widths, so the download (hundreds of MB) would end in a shape mismatch.

    Raises:
        ValueError: naming the options that differ and their defaults.
    """
    if not (isinstance(weights, str) and weights == "imagenet"):
        return
    defaults = trunk.check_options()
    differ = [key for key in options
              if canonical_option(options[key]) != canonical_option(defaults[key])]
    if differ:
        raise ValueError(
            f"weights='imagenet' is the {trunk.name} ImageNet classifier, which has the trunk's "
            "default " + ", ".join(f"{key}={defaults[key]!r}" for key in differ) + ": leave "
            f"{' and '.join(differ)} out, or use weights=None. Received: "
            + ", ".join(f"{key}={options[key]!r}" for key in differ))


def trunk_input(trunk, shape, include_preprocessing):
    """The model input ``image`` and, with ``include_preprocessing``, the trunk's
    preprocessing layer (``preprocess``) after it: returns ``(inputs, x)``."""
    inputs = keras.Input(shape, name="image")
    if not include_preprocessing:
        return inputs, inputs
    x = trunk.preprocessing.layer(name="preprocess")(inputs)
    if not keras.backend.is_float_dtype(x.dtype):
        raise ValueError(f"Trunk {trunk.name!r}: its preprocessing layer must return floats "
                         f"for the trunk. Received: dtype {x.dtype!r} from a {inputs.dtype} input")
    return inputs, x


def check_features(trunk, variant, inputs, features):
    """Checks what a trunk of one's own gives the heads: ``(stride8, stride16, stride32)`` maps
    of rank 4, those of ``variant`` there, each at its stride, measured from the graph's
    shapes at two input sizes (padding and valid convolutions cancel out), or for a fixed
    input size from its layers' strides (:func:`keras_fcn.models.coord_maps`).

    Raises:
        ValueError: naming the trunk, the map and what it found.
    """
    where = check_feature_form(trunk, features)
    finest = DEPTHS[depth_of(variant, trunk)][2]  # the finest stride of the variant's heads
    for stride, feature in zip(STRIDES, features):
        if feature is None and stride >= finest:
            raise ValueError(f"{where}; its stride-{stride} map is None, which variant "
                             f"{variant!r} needs (or leave {variant!r} out of its variants)")
    used = [(stride, f) for stride, f in zip(STRIDES, features) if f is not None]
    probe = keras.Model(inputs, [f for _, f in used])
    try:
        shapes = [[tuple(out.shape) for out in probe.compute_output_spec(
            keras.KerasTensor((1, side, side, inputs.shape[-1])))] for side in (512, 1024)]
    except Exception:  # noqa: BLE001 (a fixed input size, a custom op: the graph's geometry)
        check_fixed_size_strides(where, probe, used)
        return
    sizes = [[shape[1] for shape in side] for side in shapes]
    for (stride, _), small, large in zip(used, *shapes):
        if small[1] == large[1] and small[3] != large[3]:  # the last axis follows the input
            raise ValueError(
                f"{where}: maps must be channels last (N, H, W, C), but the stride-{stride} "
                f"map looks channels first: its last axis grows with the input ({small[3]} for "
                f"512x512, {large[3]} for 1024x1024) while its second stays {small[1]}. "
                "Transpose it (keras.layers.Permute((2, 3, 1))) or build the trunk channels "
                "last")
    for (stride, _), small, large in zip(used, *sizes):
        found = 512 / (large - small) if large != small else math.inf
        if not 0.9 * stride <= found <= 1.1 * stride:
            raise ValueError(
                f"{where}: the stride-{stride} map is at stride {found:.3g} (a 512x512 input "
                f"gives {small} rows, 1024x1024 gives {large}): check their order and the "
                f"trunk's downsampling")


def check_fixed_size_strides(where, probe, used):
    """The strides of a fixed-size graph's maps, read from its layers (``coord_maps``); a
    graph it cannot follow is not checked."""
    for stride, feature in used:
        try:
            maps = coord_maps(probe, 0, feature)
        except ValueError:
            return
        found = sorted({scale for scale, _ in maps})
        if found != [stride]:
            raise ValueError(f"{where}: the stride-{stride} map is at stride "
                             f"{', '.join(f'{s:g}' for s in found)} (its layers' strides): "
                             "check their order and the trunk's downsampling")


def build_fcn(
    variant,
    num_classes=21,
    input_shape=(None, None, 3),
    weights="imagenet",
    dropout=None,
    trainable_upsampling=False,
    include_preprocessing=False,
    backbone="vgg16",
    name=None,
    widths=None,
    fc_units=None,
    aux=False,
    **trunk_options,
):
    """Builds any FCN variant on any registered trunk; the public builders wrap this.

    The trunk (:func:`keras_fcn.models.get_trunk`) gives the features at strides 8, 16 and
    32, the crop offsets and the preprocessing; the heads are :func:`fcn_heads`; the model
    is an :class:`keras_fcn.models.FCN` that records ``backbone`` and ``variant``.

    Args:
        variant: ``"32s"``, ``"16s"``, ``"8s"``, ``"8s_at_once"`` (the paper's heads) or
            ``"dilated"`` (torchvision's FCNHead on a dilated trunk), one of the trunk's
            ``variants``.
        num_classes, input_shape, weights, dropout, trainable_upsampling,
            include_preprocessing, backbone, name: see :func:`build_fcn8s`; ``weights`` may
            name a preset of the same architecture: ``build_fcn("8s_at_once",
            weights="voc-fcn8s-atonce")``.
        widths, fc_units: the trunk's options (its ``options``): VGG16 channel widths of
            ``conv1`` .. ``conv5`` and of ``fc6``/``fc7`` (default ``(64, 128, 256, 512, 512)``
            and 4096), for fast tests and experiments; ImageNet weights need the defaults.
            AlexNet takes 5 even widths and ``fc_units``; GoogLeNet takes
            ``keras_fcn.models.googlenet_widths(divisor)``; MobileNetV2 neither.
        aux: ``"dilated"`` only: also output torchvision's auxiliary head (outputs
            ``{"out": ..., "aux": ...}``).
        **trunk_options: any other option of the trunk's ``options`` (a trunk of one's own);
            an option the trunk lacks is a ValueError naming its options.

    Returns:
        A ``keras.Model`` from images to per-pixel logits aligned with the input.

    Example:
        >>> model = build_fcn("16s", num_classes=5, weights=None, widths=(4, 4, 8, 8, 8),
        ...                   fc_units=8)
        >>> model.backbone, model.variant, model.output_shape
        ('vgg16', '16s', (None, None, None, 5))
    """
    shape = check_fcn_args(variant, num_classes, input_shape, weights, dropout, backbone,
                           include_preprocessing)
    trunk = get_trunk(backbone)
    options = trunk.check_options(widths=widths, fc_units=fc_units, **trunk_options)
    dropout = trunk.dropout if dropout is None else dropout
    trainable_upsampling = check_bool("trainable_upsampling", trainable_upsampling)
    if check_bool("aux", aux) and variant != "dilated":
        raise ValueError("aux=True adds torchvision's auxiliary head, which only the 'dilated' "
                         f"variant has. Received: variant={variant!r}, aux={aux!r}")
    check_pretrained_options(trunk, weights, options)
    # A preset is checked against the architecture before anything is built or downloaded.
    named = fetch_named_weights(weights, {
        "variant": variant, "backbone": backbone, "num_classes": num_classes,
        "input_channels": shape[2], "include_preprocessing": include_preprocessing,
        "options": options, "aux": aux})
    inputs, x = trunk_input(trunk, shape, include_preprocessing)
    features = trunk.features(x, dropout, **options)
    if variant != "dilated" and trunk.name not in SHIPPED_TRUNKS:  # those: tests/test_trunks.py
        check_features(trunk, variant, inputs, features)
    if variant == "dilated":
        outputs = dilated_heads(inputs, features, num_classes, dropout, aux)
    else:
        outputs = fcn_heads(variant, inputs, features, num_classes, trunk, trainable_upsampling)
    return finish_fcn(trunk, variant, inputs, outputs, name or trunk.model_name(variant),
                      weights, named)


def finish_fcn(trunk, variant, inputs, outputs, name, weights, named):
    """The :class:`FCN` of ``inputs`` -> ``outputs`` recording ``trunk`` and ``variant``, with
    ``weights`` loaded: the named-layer arrays ``named`` (from ``fetch_named_weights``) if
    given, else the trunk's loader (``"imagenet"``, a file...), else none."""
    model = FCN(inputs, outputs, name=name, fcn={"backbone": trunk.name, "variant": variant})
    if named is not None:
        load_named_weights(model, weights, named)
    elif weights is not None:
        check_loaded(trunk, model, trunk.load_weights(model, weights), weights)
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
            Or the name of a released model of ``keras_fcn.list_presets()`` whose architecture
            this call builds (``build_fcn8s(weights="voc-fcn8s")``,
            ``build_fcn32s(backbone="alexnet", weights="voc-fcn-alexnet")``): downloaded and
            converted once as ``keras_fcn.from_preset`` does (cache ``$KERAS_HOME/keras_fcn``).
            The variant, backbone, input channels and ``num_classes`` must be the preset's
            (another class count is an error, as for a weights file; the error shows the
            net surgery that keeps all but the score layers), and ``include_preprocessing=True``
            only fits presets with the VOC mean. The SIFT Flow presets fit
            ``build_two_headed_fcn``; the late-fusion ``nyud-fcn32s-color-hha`` comes from
            ``keras_fcn.from_preset`` only.
        dropout: dropout rate after ``fc6`` and ``fc7`` (0.5 in the paper).
        trainable_upsampling: if True the bilinear transposed convolutions are trained
            (the reference keeps them fixed).
        include_preprocessing: if True the model takes raw RGB images with values in
            [0, 255] (float or uint8 data) and does the BGR conversion and mean subtraction
            itself; if False, feed it ``keras_fcn.preprocess_input(images)``.
        backbone: ``"vgg16"`` (the paper), ``"mobilenet_v2"`` (a light backbone for edge
            devices), or the paper's other Table 1 trunks ``"alexnet"`` (the reference
            ``voc-fcn-alexnet``) and ``"googlenet"``, both FCN-32s only.
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
    variant = "8s_at_once" if check_bool("at_once", at_once) else "8s"
    return build_fcn(variant, num_classes, input_shape, weights, dropout, trainable_upsampling,
                     include_preprocessing, backbone, name)


build_fcn32s.__doc__ = (
    "Builds FCN-32s: VGG16 trunk, ``score_fr`` and one 32x bilinear ``upscore``.\n"
    + _ARGS_DOC
    + "\n    Example:\n        >>> model = build_fcn32s(num_classes=21, weights=None)\n"
    + '        >>> trained = build_fcn32s(weights="voc-fcn32s")  # doctest: +SKIP\n'
)
build_fcn16s.__doc__ = (
    "Builds FCN-16s: FCN-32s plus the ``pool4`` skip (``score_pool4``) fused at stride 16.\n"
    + _ARGS_DOC
    + "\n    Example:\n        >>> fcn32s = build_fcn32s(num_classes=21, weights=None)\n"
    + "        >>> fcn16s = build_fcn16s(num_classes=21, weights=fcn32s)  # staged init\n"
    + '        >>> trained = build_fcn16s(weights="voc-fcn16s")  # doctest: +SKIP\n'
)
build_fcn8s.__doc__ = (
    "Builds FCN-8s: FCN-16s plus the ``pool3`` skip (``score_pool3``) fused at stride 8.\n"
    + _ARGS_DOC.replace(
        "        backbone:",
        "        at_once: if True builds the at-once FCN-8s, whose ``pool4``/``pool3`` are\n"
        "            scaled by 0.01/0.0001 (``scale_pool4``/``scale_pool3``) so that all skips\n"
        "            train together in one stage (the preset ``voc-fcn8s-atonce``).\n"
        "        backbone:",
    )
    + "\n    Example:\n        >>> model = build_fcn8s(num_classes=21)  # ImageNet VGG16 trunk  # doctest: +SKIP\n"
    + '        >>> trained = build_fcn8s(weights="voc-fcn8s")  # the authors\' FCN-8s  # doctest: +SKIP\n'
)


# The 0.1.x builders: ``build_fcn`` with positional arguments and the backbone in the name.
# Kept so that old code runs; each warns and names its replacement. {name: (backbone, note)}.
DEPRECATED_BUILDERS = {
    "build_vgg16_fcn": ("vgg16", ""),
    "build_mobilenet_v2_fcn": (
        "mobilenet_v2",
        '``"8s_at_once"`` is built as ``"8s"``: the MobileNetV2 features are batch-normalized, '
        "so the skips need no scaling. Preprocessing: ``x / 127.5 - 1`` on RGB."),
    "build_alexnet_fcn": (
        "alexnet",
        "FCN-32s only. Preprocessing is the reference's: BGR, mean (104.00699, 116.66877, "
        "122.67892) subtracted."),
    "build_googlenet_fcn": ("googlenet", "FCN-32s only."),
}


def deprecated_builder(name, backbone, note=""):
    """A 0.1.x positional builder ``name`` that warns and calls ``build_fcn(...,
    backbone=backbone)``; ``note`` is added to its docstring.

    Example:
        >>> old = deprecated_builder("build_vgg16_fcn", "vgg16")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     model = old("32s", 5, (64, 64, 3), None, 0.5, False, False,
        ...                 widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> model.backbone, str(caught[0].message).split(";")[0]
        ('vgg16', 'build_vgg16_fcn is deprecated (a 0.1.x builder)')
    """
    replacement = f"build_fcn(variant, num_classes, ..., backbone={backbone!r})"

    def builder(variant, num_classes, input_shape, weights, dropout, trainable_upsampling,
                include_preprocessing, name=None, widths=None, fc_units=None):
        warnings.warn(f"{builder.__name__} is deprecated (a 0.1.x builder); use {replacement} "
                      "with keyword arguments.", DeprecationWarning, stacklevel=2)
        return build_fcn(variant, num_classes, input_shape, weights, dropout,
                         trainable_upsampling, include_preprocessing, backbone, name, widths,
                         fc_units)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"Deprecated (0.1.x): ``{replacement}`` with positional arguments.\n\n"
        + (f"    {note}\n\n" if note else "")
        + "    Args: those of :func:`build_fcn`, in its order up to ``include_preprocessing``"
        "\n    (no ``backbone``), then ``name``, ``widths``, ``fc_units``.\n\n"
        "    Returns:\n        The ``keras.Model`` that :func:`build_fcn` builds.\n")
    return builder


(build_vgg16_fcn, build_mobilenet_v2_fcn, build_alexnet_fcn, build_googlenet_fcn) = (
    deprecated_builder(name, backbone, note)
    for name, (backbone, note) in DEPRECATED_BUILDERS.items())
