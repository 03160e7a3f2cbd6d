"""The FCN paper's multi-modal and multi-task models: NYUDv2 RGB-D / HHA / late fusion, and
the two-headed SIFT Flow FCN.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, section 5 (NYUDv2 and SIFT Flow), and the authors' released nets
``nyud-fcn32s-{color,hha,color-d,color-hha}`` and ``siftflow-fcn{32,16,8}s``.

- RGB or HHA alone: the usual builders with 3 input channels (HHA is a 3-channel uint8
  image, see :mod:`keras_fcn.datasets.hha`).
- RGB-D ("early fusion"): :func:`build_rgbd_fcn`, 4 input channels; ImageNet or RGB weights
  extend ``conv1_1`` with the mean of the RGB filters for the depth channel (the RGB filters
  are kept). The reference calls this layer ``conv1_1_bgrd``; it keeps the name ``conv1_1``
  here so that weights load by name.
- Late fusion: :func:`build_late_fusion_fcn`, two full FCNs (nested models ``rgb_fcn`` and
  ``hha_fcn`` with inputs ``rgb`` and ``hha``) whose final scores are summed. The reference
  sums the two ``score_fr`` maps (with coefficients 0.5, 0.5) before one shared upsampling;
  because the upsampling and crops are linear and bias-free, summing the final scores is the
  same thing up to the coefficients, which ``fusion_weights`` sets.
- SIFT Flow: :func:`build_two_headed_fcn`, one VGG16 trunk and two sets of heads named as the
  reference (``score_fr_sem``, ``upscore2_sem``, ``score_pool4_sem``, ... ``score_sem`` and the
  same with ``_geo``), with outputs ``{"semantic": ..., "geometric": ...}``.
"""

import math
import numbers

import keras
import numpy as np
from keras import layers

from keras_fcn._checks import check_bool, check_positive_int
from keras_fcn.layers import Scale
from keras_fcn.models.builders import (
    build_fcn,
    check_fcn_args,
    check_head_size,
    check_pretrained_options,
    finish_fcn,
    trunk_input,
)
from keras_fcn.models.heads import fcn_heads
from keras_fcn.models.named_weights import fetch_named_weights
from keras_fcn.models.trunk import FCN, get_trunk

FUSION_STREAMS = ("rgb", "hha")


def build_rgbd_fcn(variant="32s", num_classes=40, weights="imagenet", dropout=0.5,
                   trainable_upsampling=False, input_size=(None, None), name=None, **kwargs):
    """Builds an FCN on 4-channel RGB-D input (the paper's "RGB-D" early fusion).

    Args:
        variant: ``"32s"``, ``"16s"``, ``"8s"`` or ``"8s_at_once"``.
        num_classes: 40 for the NYUDv2 40-class task.
        weights: as the FCN builders; 3-channel ``conv1_1`` weights are extended to the depth
            channel with the mean of the RGB filters.
        dropout, trainable_upsampling: as the FCN builders.
        input_size: ``(height, width)``, ``None`` for any size.
        name: model name (default ``"fcn{variant}_rgbd"``).
        **kwargs: ``widths``/``fc_units`` of :func:`keras_fcn.models.build_fcn` (tests).

    Returns:
        A ``keras.Model`` mapping ``(N, H, W, 4)`` (preprocessed BGR + depth, see
        :func:`keras_fcn.nyud.preprocess_rgbd`) to logits ``(N, H, W, num_classes)``.

    Example:
        >>> model = build_rgbd_fcn("32s", num_classes=40, weights=None)
        >>> model.input_shape
        (None, None, None, 4)
    """
    return build_fcn(
        variant, num_classes, (*_check_input_size(input_size), 4), weights, dropout,
        trainable_upsampling, name=name or f"fcn{variant}_rgbd", **kwargs,
    )


def _check_input_size(input_size):
    """``input_size`` as a ``(height, width)`` tuple; each a positive int or None."""
    ok = isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_))
                      and d > 0) for d in input_size)
    if not ok:
        raise ValueError("input_size must be (height, width), each a positive int or None "
                         f"(any size). Received: input_size={input_size!r}")
    return tuple(input_size)


def _check_fusion_weights(fusion_weights):
    # NaN or infinity would make every fused score NaN: argmax class 0 everywhere.
    ok = isinstance(fusion_weights, (tuple, list)) and len(fusion_weights) == 2 and all(
        isinstance(w, numbers.Real) and not isinstance(w, (bool, np.bool_)) and math.isfinite(w)
        for w in fusion_weights
    )
    if not ok:
        raise ValueError(
            "fusion_weights must be two finite numbers (rgb, hha). "
            f"Received: fusion_weights={fusion_weights!r}"
        )
    return tuple(float(w) for w in fusion_weights)


def build_late_fusion_fcn(variant="16s", num_classes=40, weights_rgb="imagenet",
                          weights_hha="imagenet", dropout=0.5, trainable_upsampling=False,
                          input_size=(None, None), fusion_weights=(1.0, 1.0), name=None,
                          **kwargs):
    """Builds the paper's RGB-HHA late-fusion FCN: two FCN streams whose scores are summed.

    Each stream is a complete FCN of ``variant`` built by :func:`keras_fcn.models.build_fcn`
    and nested under the name ``rgb_fcn`` or ``hha_fcn`` (the inputs are named ``rgb`` and
    ``hha``: feed a dict with those keys), with the usual layer names inside, so a
    trained single-stream model loads into a stream by name
    (``fusion.get_layer("hha_fcn").set_weights(hha_model.get_weights())`` or ``weights_hha=``).

    Args:
        variant: ``"32s"``, ``"16s"`` (the paper's NYUDv2 result), ``"8s"`` or ``"8s_at_once"``.
        num_classes: 40 for the NYUDv2 40-class task.
        weights_rgb, weights_hha: initial weights of each stream (``"imagenet"``, ``None``, a
            file or a trained single-stream ``keras.Model``).
        dropout, trainable_upsampling: as the FCN builders, for both streams.
        input_size: ``(height, width)`` of both inputs, ``None`` for any size.
        fusion_weights: coefficients ``(rgb, hha)`` of the sum; ``(1, 1)`` sums the scores,
            ``(0.5, 0.5)`` is the reference's averaged ``score_fused``.
        name: model name (default ``"fcn{variant}_rgb_hha"``).
        **kwargs: ``widths``/``fc_units`` of :func:`keras_fcn.models.build_fcn` (tests).

    Returns:
        A ``keras.Model`` with inputs ``{"rgb": (N, H, W, 3), "hha": (N, H, W, 3)}`` (both
        preprocessed, see :func:`keras_fcn.nyud.preprocess_rgb` and
        :func:`keras_fcn.nyud.preprocess_hha`) and output logits ``(N, H, W, num_classes)``
        equal to ``w_rgb * rgb_stream(rgb) + w_hha * hha_stream(hha)``.

    Example:
        >>> model = build_late_fusion_fcn("16s", 40, weights_rgb=None, weights_hha=None,
        ...                               widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> sorted(model.input)
        ['hha', 'rgb']
        >>> logits = model({"rgb": rgb_batch, "hha": hha_batch})  # doctest: +SKIP
    """
    w_rgb, w_hha = _check_fusion_weights(fusion_weights)
    shape = (*_check_input_size(input_size), 3)
    streams = {
        stream: build_fcn(variant, num_classes, shape, stream_weights, dropout,
                          trainable_upsampling, name=f"{stream}_fcn", **kwargs)
        for stream, stream_weights in zip(FUSION_STREAMS, (weights_rgb, weights_hha))
    }
    inputs = {stream: keras.Input(shape, name=stream) for stream in FUSION_STREAMS}
    rgb = Scale(w_rgb, name="scale_rgb")(streams["rgb"](inputs["rgb"]))
    hha = Scale(w_hha, name="scale_hha")(streams["hha"](inputs["hha"]))
    fused = layers.Add(name="score_fused", dtype="float32")([rgb, hha])
    return FCN(inputs, fused, name=name or f"fcn{variant}_rgb_hha",
               fcn={"backbone": streams["rgb"].backbone, "variant": variant})


def build_two_headed_fcn(variant="16s", num_semantic=33, num_geometric=3,
                         input_shape=(None, None, 3), weights="imagenet", dropout=0.5,
                         trainable_upsampling=False, include_preprocessing=False, name=None,
                         widths=None, fc_units=None):
    """Builds the SIFT Flow FCN: one VGG16 trunk, a semantic and a geometric head.

    Layer names follow the reference ``siftflow-fcn*s`` nets: ``score_fr_sem``,
    ``upscore2_sem``, ``score_pool4_sem``, ``score_pool4_semc``, ``fuse_pool4_sem``,
    ``upscore16_sem``, ``score_sem`` (and ``upscore_sem`` for 32s, ``upscore_pool4_sem``,
    ``score_pool3_sem``, ``fuse_pool3_sem``, ``upscore8_sem`` for 8s), and the same ending in
    ``_geo``. Train with one loss per output (summed, as the reference's two
    ``SoftmaxWithLoss``), e.g. ``loss={"semantic": l1, "geometric": l2}``.

    Args:
        variant: ``"32s"``, ``"16s"`` (the paper's SIFT Flow result), ``"8s"`` or
            ``"8s_at_once"``.
        num_semantic: semantic classes (33 for SIFT Flow).
        num_geometric: geometric classes (3: sky, horizontal, vertical).
        input_shape, weights, dropout, trainable_upsampling, include_preprocessing: as the
            FCN builders (``weights`` loads by name: ImageNet VGG16, a two-headed model of
            another variant for staged training, or a released SIFT Flow model by preset
            name, e.g. ``"siftflow-fcn16s"``).
        name: model name (default ``"siftflow_fcn{variant}"``).
        widths, fc_units: VGG16 widths (small values for fast tests).

    Returns:
        A ``keras.Model`` mapping images ``(N, H, W, 3)`` to
        ``{"semantic": (N, H, W, num_semantic), "geometric": (N, H, W, num_geometric)}``.

    Example:
        >>> model = build_two_headed_fcn("16s", weights=None)
        >>> sorted(model.output)
        ['geometric', 'semantic']
        >>> released = build_two_headed_fcn("16s", weights="siftflow-fcn16s")  # doctest: +SKIP
    """
    check_positive_int("num_semantic", num_semantic)
    check_positive_int("num_geometric", num_geometric)
    shape = check_fcn_args(variant, num_semantic, input_shape, weights, dropout,
                           include_preprocessing=include_preprocessing)
    trunk = get_trunk("vgg16")
    try:  # the geometric head's kernels grow as num_geometric squared too
        check_head_size(variant, num_geometric, trunk)
    except ValueError as error:
        raise ValueError(str(error).replace("num_classes", "num_geometric")) from None
    if dropout is None:
        dropout = trunk.dropout
    trainable_upsampling = check_bool("trainable_upsampling", trainable_upsampling)
    options = trunk.check_options(widths=widths, fc_units=fc_units)
    check_pretrained_options(trunk, weights, options)
    # A preset (weights="siftflow-fcn16s") is checked before anything is built or downloaded.
    named = fetch_named_weights(weights, {
        "variant": variant, "backbone": "vgg16", "num_classes": num_semantic,
        "num_geometric": num_geometric, "input_channels": shape[2],
        "include_preprocessing": include_preprocessing, "two_headed": True,
        "options": options})
    inputs, x = trunk_input(trunk, shape, include_preprocessing)
    features = trunk.features(x, dropout, **options)
    outputs = {
        task: fcn_heads(variant, inputs, features, classes, trunk, trainable_upsampling,
                        suffix=suffix)
        for task, classes, suffix in (("semantic", num_semantic, "_sem"),
                                      ("geometric", num_geometric, "_geo"))
    }
    return finish_fcn(trunk, variant, inputs, outputs, name or f"siftflow_fcn{variant}",
                      weights, named)
