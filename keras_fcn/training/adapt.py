"""Test-time adaptation of BatchNormalization statistics to a new domain (AdaBN).

A model trained on some streets normalizes its features with the mean and variance it saw
there. On a new street (another camera, light or season) those statistics shift, and every
BatchNormalization layer feeds the layers after it features off their usual range. AdaBN (Li et
al., "Revisiting Batch Normalization For Practical Domain Adaptation", 2016) re-estimates each
layer's moving mean and variance on **unlabelled** images of the new domain: no label, no
gradient, no weight other than those statistics changes.

`adapt_batchnorm` runs the images through the model in training mode (each BatchNormalization
layer normalizes with the statistics of its batch, as in training) and sets every moving mean
and variance to the average of its batch statistics over all the images. Dropout is held off
while it runs. Use it on frames of the footage you will segment (for CamVid:
`tools/evaluate.py --adapt_bn`, on the drive's own images, labels unused).

Example:
    >>> images = dataset.map(lambda image, mask: image)        # unlabelled new-domain frames
    >>> report = adapt_batchnorm(model, images.batch(4))
    >>> report["layers"], report["images"]
    (52, 101)
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_fcn import runtime


def batchnorm_layers(model):
    """Every `keras.layers.BatchNormalization` layer of ``model``, nested models included."""
    return [layer for layer in runtime.leaf_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def _adapting(model, norms):
    """BatchNormalization layers trainable (Keras runs a frozen one in inference mode: the
    layer's own flag decides, not the model's) and dropout off; everything restored
    afterwards, even on an error."""
    saved_bn = [(layer, layer.trainable, layer.momentum) for layer in norms]
    dropouts = [(layer, layer.rate) for layer in runtime.leaf_layers(model)
                if isinstance(layer, keras.layers.Dropout)]
    try:
        for layer in norms:
            layer.trainable = True
        for layer, _ in dropouts:
            layer.rate = 0.0
        yield
    finally:
        for layer, trainable, momentum in saved_bn:
            layer.trainable, layer.momentum = trainable, momentum
        for layer, rate in dropouts:
            layer.rate = rate


def _images_of(element):
    """The images of a dataset element: ``images``, ``(images, masks)`` or a dict input."""
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def adapt_batchnorm(model, images, *, max_batches=None, verbose=0):
    """Re-estimates every BatchNormalization layer's moving statistics on ``images``.

    Each batch runs through the model in training mode (dropout off); after batch ``k`` each
    moving mean and variance is the average of the ``k`` batch means and variances (a
    cumulative average: every batch counts the same, whatever the layer's momentum). The
    model's weights, trainable flags, momenta and dropout rates are otherwise left as they
    were. Keep the batches of one size, the size the model was trained with if you can: the
    variance is the mean of the per-batch variances.

    Args:
        model: a Keras model with BatchNormalization layers (e.g. the MobileNetV2 FCNs).
        images: iterable of image batches, ``(B, H, W, 3)`` (or ``(images, masks)`` pairs,
            whose masks are ignored), preprocessed as the model expects, e.g. a batched
            `tf.data.Dataset`.
        max_batches: use at most this many batches (None: all).
        verbose: 1 shows a progress bar.

    Returns:
        dict: ``layers`` (BatchNormalization layers adapted), ``batches``, ``images``, and
        ``mean_shift`` (the mean absolute change of the moving means, a size of the domain
        shift).

    Raises:
        ValueError: the model has no BatchNormalization layer, or ``images`` is empty.

    Example:
        >>> adapt_batchnorm(model, new_street_frames.batch(4), verbose=1)
    """
    norms = batchnorm_layers(model)
    if not norms:
        raise ValueError(f"Model {model.name!r} has no BatchNormalization layer, so there are "
                         "no statistics to adapt (e.g. the paper's VGG16 FCNs); expected a "
                         "model with BatchNormalization, such as the MobileNetV2 FCNs.")
    if max_batches is not None and (isinstance(max_batches, bool) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None. Received: "
                         f"max_batches={max_batches!r}")
    before = [np.array(layer.moving_mean) for layer in norms]
    total = None
    if isinstance(images, tf.data.Dataset) and int(images.cardinality()) > 0:
        total = int(images.cardinality())
        total = min(total, max_batches) if max_batches else total
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    batches = seen = 0
    with _adapting(model, norms):
        for element in images:
            if max_batches is not None and batches >= max_batches:
                break
            batch = _images_of(element)
            batches += 1
            for layer in norms:  # cumulative average: batch k weighs 1/k
                layer.momentum = (batches - 1) / batches
            model(batch, training=True)
            seen += int(tf.nest.flatten(batch)[0].shape[0])
            if bar is not None:
                bar.update(batches)
    if not batches:
        raise ValueError("images is empty: adapt_batchnorm needs at least one batch of "
                         "images of the new domain.")
    shift = np.mean([np.mean(np.abs(np.array(layer.moving_mean) - old))
                     for layer, old in zip(norms, before)])
    return {"layers": len(norms), "batches": batches, "images": seen,
            "mean_shift": float(shift)}
