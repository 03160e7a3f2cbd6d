"""Prediction at any size: batching by size, overlapping tiles, multi-scale and flip averaging.

Images are ``(H, W, 3)`` RGB with values in [0, 255] (uint8 or float), probabilities are
``(H, W, C)`` float32 softmax maps, label maps are ``(H, W)`` integer class ids. Models are any
keras_fcn model (logits ``(N, H, W, C)`` aligned with the input); a model without its own
``preprocess`` layer gets its input scaling applied here (see ``forward.model_input``).

Example:
    labels, probs = predict(model, image)                      # one image, any size
    labels, probs = predict(model, [img_a, img_b], tta_flip=True)  # list, own sizes
    labels, probs = predict(model, big_image, tile_size=512, tile_overlap=128)
"""


import os

import keras
import numpy as np
from keras import ops

from keras_fcn._checks import check_finite_scores, check_scales, count_non_finite
from keras_fcn.inference.forward import forward_batches
from keras_fcn.inference.images import (MAX_UNTILED_PIXELS, as_image_list, map_same_size,
                                        restore_kind)

# tile_size="auto": images of more than AUTO_TILE_PIXELS pixels run in tiles of AUTO_TILE_SIZE
# (docs/reliability.md, round 2, gives the memory this keeps to); tile_size=None runs one pass,
# refused above MAX_UNTILED_PIXELS.
AUTO_TILE_SIZE = 1024
AUTO_TILE_PIXELS = 2048 * 2048
# MAX_UNTILED_PIXELS (4096 * 4096) lives in images.py.


# Tiles start on multiples of every trunk's coarsest stride (models.trunk: features at strides
# 8, 16 and 32): a tile then sees the pooling grid of a one-pass prediction, and equals it
# away from its borders. A tile at another offset sees another grid: on a 2500x2100 image the
# flush last tiles (at 1076 and 1476) changed 1-9% of the labels across them.
TILE_GRID = 32


def tile_layout(length, tile, overlap, grid=TILE_GRID):
    """``(size, starts)`` of the tiles covering ``length`` along one side: ``tile`` grown by
    up to ``grid - 1`` pixels so that every start is a multiple of ``grid`` and the last tile
    ends flush with the image, neighbours overlapping by at least ``overlap`` (a tile less
    than ``overlap + grid`` long grows by whole ``grid`` steps more, to move on by one).

    Example:
        >>> tile_layout(1000, 256, 64)
        (264, [0, 192, 384, 576, 736])
        >>> tile_layout(20, 32, 8)
        (20, [0])
    """
    tile += (length - tile) % grid if length > tile else 0
    while tile - overlap < grid and tile < length:
        tile += grid
    if length <= tile:
        return length, [0]
    step = (tile - overlap) // grid * grid
    return tile, list(range(0, length - tile, step)) + [length - tile]


def _ramp(length, overlap):
    """1-D blending weights: ramps up over ``overlap`` pixels at both ends, never zero."""
    if overlap <= 0:
        return np.ones(length, "float32")
    idx = np.arange(length, dtype="float32")
    distance = np.minimum(idx + 0.5, length - idx - 0.5)
    return np.clip(distance / overlap, 1.0 / overlap, 1.0).astype("float32")


def _tiled_probabilities(model, images, tile_size, overlap, **forward_kwargs):
    """Blends the softmax of overlapping tiles of a same-size stack ``(n, H, W, 3)``.

    Memory: the ``(n, H, W, C)`` float32 result and an ``(H, W)`` float32 weight map, plus
    one tile at a time; the blend is divided in place.
    """
    n, height, width, _ = images.shape
    tile_h, rows = tile_layout(height, tile_size, overlap)
    tile_w, columns = tile_layout(width, tile_size, overlap)
    weight = np.outer(_ramp(tile_h, overlap), _ramp(tile_w, overlap))[None, :, :, None]
    total, weights = None, np.zeros((1, height, width, 1), "float32")
    for top in rows:
        for left in columns:
            window = (slice(None), slice(top, top + tile_h), slice(left, left + tile_w))
            probs = forward_batches(model, images[window], **forward_kwargs)
            if total is None:
                total = np.zeros((n, height, width, probs.shape[-1]), "float32")
            total[window] += probs * weight
            weights[window] += weight
    total /= weights
    return total


def resize_stack(array, size):
    """Resizes a stack ``(n, H, W, C)`` bilinearly to ``size`` = (h, w), as float32 numpy.

    Example:
        >>> resize_stack(np.ones((1, 4, 6, 2), "float32"), (2, 3)).shape
        (1, 2, 3, 2)
    """
    if tuple(array.shape[1:3]) == tuple(size):
        return array
    # keras.ops: the same values as tf.image.resize, and no TensorFlow import for mc_dropout
    return ops.convert_to_numpy(ops.image.resize(array, size, interpolation="bilinear")
                                ).astype("float32")


def stack_probabilities(model, images, *, scales=(1.0,), tile_size="auto", overlap=64,
                        **forward_kwargs):
    """The softmax of a same-size stack ``(n, H, W, 3)`` at its size, as :func:`predict`
    computes it: averaged over ``scales`` (each in tiles where ``tile_size`` asks for them)
    and, with ``flip=True`` in ``forward_kwargs``, over left-right flips of each pass.

    ``mc_dropout`` runs each of its samples through here with the Monte-Carlo dropout copy of
    the model, so its maps describe the probabilities that ``predict`` labels. Arguments are
    not checked here (:func:`check_predict_args` and :func:`check_untiled_size` do that).

    Args:
        model: a keras_fcn model.
        images: RGB ``(n, H, W, 3)`` in [0, 255].
        scales, tile_size: as for :func:`predict`. overlap: ``predict``'s ``tile_overlap``.
        **forward_kwargs: ``batch_size``, ``flip``, ``precision``, ``jit_compile`` of
            ``forward.forward_batches``.

    Returns:
        float32 ``(n, H, W, C)``.

    Example:
        stack_probabilities(model, np.zeros((2, 40, 40, 3)), tile_size=32, flip=True).shape
    """
    height, width = images.shape[1:3]
    total = None
    for scale in scales:
        scaled = resize_stack(images, scaled_size((height, width), scale))
        tiles = _tile_size_for(scaled.shape[1:3], tile_size)
        if tiles is not None and max(scaled.shape[1:3]) > tiles:
            probs = _tiled_probabilities(model, scaled, tiles, overlap, **forward_kwargs)
        else:
            probs = forward_batches(model, scaled, **forward_kwargs)
        probs = resize_stack(probs, (height, width))
        # Summed in place: a huge image's probabilities are gigabytes.
        total = probs if total is None else np.add(total, probs, out=total)
    if len(scales) > 1:
        total /= len(scales)
    return total.astype("float32", copy=False)


def _tile_size_for(size, tile_size):
    """The tile side for an image of ``size`` = (h, w): ``tile_size``, or for ``"auto"``
    :data:`AUTO_TILE_SIZE` above :data:`AUTO_TILE_PIXELS` pixels (None: no tiles)."""
    if tile_size != "auto":
        return tile_size
    return AUTO_TILE_SIZE if size[0] * size[1] > AUTO_TILE_PIXELS else None


def scaled_size(size, scale):
    """The ``(h, w)`` an image of ``size`` is predicted at for ``scale``.

    Example:
        >>> scaled_size((21, 10), 0.5)
        (10, 5)
    """
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def check_untiled_size(index, shape, tile_size, scales=(1.0,)):
    """Raises ValueError before any work when image ``index`` of ``shape``, at one of
    ``scales``, would run in one pass (``tile_size=None``) past :data:`MAX_UNTILED_PIXELS`
    pixels, naming the option that makes it fit.

    Example:
        >>> check_untiled_size(0, (12000, 12000, 3), None)
        Traceback (most recent call last):
        ValueError: Image 0 of 12000x12000 pixels is too large to predict in one pass ...
    """
    if tile_size is not None:
        return
    for scale in scales:
        height, width = scaled_size(shape, scale)
        if height * width <= MAX_UNTILED_PIXELS:
            continue
        at = f" at scale {scale} ({height}x{width})" if scale != 1 else ""
        raise ValueError(
            f"Image {index} of {shape[0]}x{shape[1]} pixels{at} is too large to predict in one pass "
            f"(more than {MAX_UNTILED_PIXELS} pixels; its activations would take tens of GB). "
            f"Predict it in tiles: tile_size='auto' or tile_size={AUTO_TILE_SIZE} "
            f"(tools/predict.py: leave --tile_size unset or pass --tile_size={AUTO_TILE_SIZE}). "
            f"Received: tile_size=None, scales={tuple(scales)}")


def _check_positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def check_predict_args(batch_size, tile_size, tile_overlap, scales):
    """Validates ``predict``'s arguments; returns ``scales`` as a tuple.

    Example:
        >>> check_predict_args(1, None, 64, [1.0, 0.5])
        (1.0, 0.5)
    """
    _check_positive_int("batch_size", batch_size)
    if tile_size is not None:
        if tile_size != "auto":
            _check_positive_int("tile_size", tile_size)
        limit = AUTO_TILE_SIZE if tile_size == "auto" else tile_size
        if isinstance(tile_overlap, (bool, np.bool_)) \
                or not isinstance(tile_overlap, (int, np.integer)) \
                or not 0 <= tile_overlap < limit:
            raise ValueError(
                "tile_overlap must be an integer in [0, tile_size). "
                f"Received: tile_overlap={tile_overlap!r}, tile_size={tile_size!r}"
            )
    return check_scales(scales)


def checked_images(images, *, batch_size=1, tile_size="auto", tile_overlap=64, scales=(1.0,)):
    """``predict``'s checks, before any work: returns ``(arrays, kind, scales)`` with the
    images as :func:`keras_fcn.inference.images.as_image_list` gives them and ``scales`` as
    a tuple.

    Raises:
        ValueError: a bad argument (:func:`check_predict_args`), a bad image, or an image
            that would run in one pass past ``MAX_UNTILED_PIXELS`` (:func:`check_untiled_size`).

    Example:
        >>> arrays, kind, scales = checked_images(np.zeros((8, 8, 3)), scales=[1])
        >>> kind, scales
        ('single', (1.0,))
    """
    scales = check_predict_args(batch_size, tile_size, tile_overlap, scales)
    arrays, kind = as_image_list(images)
    for index, array in enumerate(arrays):
        check_untiled_size(index, array.shape, tile_size, scales)
    return arrays, kind, scales


def predict(model, images, *, batch_size=1, tile_size="auto", tile_overlap=64, tta_flip=False,
            scales=(1.0,), return_probabilities=True, precision=None, jit_compile=None):
    """Predicts label maps (and softmax probabilities) for images of any size.

    Images of the same size are batched together (``batch_size`` at a time); images of
    different sizes are each predicted at their own size, never padded. Images larger than
    ``tile_size`` are cut into overlapping tiles whose probabilities are blended with weights
    that ramp down over the overlap. Test-time augmentation averages the softmax over
    ``scales`` (the image is resized, the probabilities resized back) and horizontal flips.

    Args:
        model: a keras_fcn model; if it has no ``preprocess`` layer, its input scaling is
            applied to the images first (see ``forward.model_input``).
        images: one RGB image ``(H, W, 3)`` in [0, 255], a stack ``(N, H, W, 3)`` or a list of
            images of any sizes.
        batch_size: images (or tiles) per forward pass.
        tile_size: images with a side longer than this are predicted in tiles of about
            this size (grown by up to 31 pixels a side so that every tile starts on the
            network's 32-pixel grid and the last ends flush: ``tile_layout``).
            ``"auto"`` (default): tiles of ``AUTO_TILE_SIZE`` (1024) for images of more than
            ``AUTO_TILE_PIXELS`` (2048x2048) pixels, one pass below. None: always one pass,
            refused past ``MAX_UNTILED_PIXELS`` (4096x4096) with a message naming tile_size.
        tile_overlap: overlap of neighbouring tiles in pixels (``< tile_size``).
        tta_flip: also predict the mirrored image (each tile, with tiles) and average.
        scales: image scales to average over, e.g. ``(0.75, 1.0, 1.25)``.
        return_probabilities: if False only the label maps are returned.
        precision: None (the model's own, float32 for a model built without a mixed policy),
            ``"float32"``, ``"bfloat16"`` (fast on CPUs with AVX512-BF16 or AMX), ``"float16"``
            (GPUs) or ``"auto"`` (see ``keras_fcn.runtime``); probabilities stay float32.
        jit_compile: True/False to force XLA; None picks the faster path for this machine
            (``keras_fcn.runtime.fast_path``; ``KERAS_FCN_JIT=0/1`` overrides it).

    Returns:
        ``(labels, probabilities)``: int32 ``(H, W)`` and float32 ``(H, W, C)`` for one image,
        stacked arrays for a stack, lists for a list. Only ``labels`` if
        ``return_probabilities=False``.

    Example:
        labels, probs = predict(model, np.zeros((37, 53, 3), np.uint8))
        labels.shape, probs.shape
    """
    if not isinstance(model, keras.Model):
        hint = (" (a file name: load it with keras.models.load_model, or a preset name with "
                "keras_fcn.from_preset)" if isinstance(model, (str, os.PathLike)) else "")
        raise TypeError(f"model must be a keras.Model{hint}. Received: {model!r}")
    for name, value in (("tta_flip", tta_flip), ("return_probabilities", return_probabilities)):
        if not isinstance(value, (bool, np.bool_)):  # "no" would turn flipping on
            raise TypeError(f"{name} must be True or False. Received: {name}={value!r}")
    arrays, kind, scales = checked_images(images, batch_size=batch_size, tile_size=tile_size,
                                          tile_overlap=tile_overlap, scales=scales)
    probs = map_same_size(
        lambda stack: stack_probabilities(model, stack, scales=scales, tile_size=tile_size,
                                          overlap=tile_overlap, batch_size=batch_size,
                                          flip=tta_flip, precision=precision,
                                          jit_compile=jit_compile),
        arrays)
    check_finite_scores(sum(count_non_finite(p) for p in probs), "model's softmax")
    labels = restore_kind([np.argmax(p, axis=-1).astype("int32") for p in probs], kind)
    return (labels, restore_kind(probs, kind)) if return_probabilities else labels
