"""Per-pixel labels and weights as tensors, and their checks: what the loss
(`keras_fcn.losses`), the metrics (`keras_fcn.metrics`) and the data sets share.

Example:
    >>> validate_ignore_label(255, num_classes=21)
    255
"""

import keras
import numpy as np
from keras import ops

from keras_fcn import _tf
from keras_fcn.labels import check_ignore_label, whole_number


def validate_ignore_label(ignore_label, num_classes=None):
    """`ignore_label` as an int (a whole float too) or None; with `num_classes`, it must not
    be a class id: the checks and messages of :func:`keras_fcn.labels.check_ignore_label`,
    which the data sets use too.

    Example:
        >>> validate_ignore_label(1, num_classes=3)
        Traceback (most recent call last):
        ValueError: ignore_label=1 is a class id; expected a value outside [0, 3), e.g. 255 ...
    """
    if ignore_label is None or num_classes is None:
        return None if ignore_label is None else whole_number(
            "ignore_label", ignore_label, "an integer or None")
    return check_ignore_label(ignore_label, num_classes)


_INT32 = np.iinfo("int32")


def labels_to_rank3(labels):
    """Returns int32 labels (N, H, W) from (N, H, W) or (N, H, W, 1); a ValueError naming the
    shape for any other (one-hot or colour (N, H, W, 3) labels would broadcast against the
    logits, with an error of each backend's own).

    Float labels must hold whole numbers (a fractional or NaN class id is an error in eager
    mode and a failed assertion in a TensorFlow graph; in compiled steps it becomes an id out
    of range, so the loss is NaN). Integers past the int32 range are an error where their
    values are known (numpy, eager tensors) and clipped to it in a graph or compiled step, so
    they stay out of range instead of wrapping to a class id. In a TensorFlow graph, labels of
    unknown rank (a step retraced for labels of another rank) are reshaped by their run-time
    rank.
    """
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        _check_int32_range(labels)  # before JAX (no x64) truncates int64 to int32
        labels = labels.astype("int32", copy=False)
    labels = ops.convert_to_tensor(labels)
    if _tf.on_tensorflow() and labels.shape.rank is None:  # see _rank3_at_run_time
        labels = _rank3_at_run_time(labels, label_shape_error("labels of shape").args[0], 3)
    if len(labels.shape) == 4 and labels.shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    if len(labels.shape) != 3:
        raise label_shape_error(f"labels of shape {tuple(labels.shape)}")
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if _tf.is_float(labels):
        rounded = ops.round(labels)
        _tf.check_none(ops.not_equal(rounded, labels), labels,
                       "Labels must be whole class ids. Received a label value: {value}")
        # Compiled (no eager check): a NaN or fractional label becomes an id out of range,
        # so the loss is NaN instead of the NaN casting to class 0.
        rounded = ops.where(ops.equal(rounded, labels), rounded, float(_INT32.min))
        labels = ops.clip(rounded, float(_INT32.min), float(_INT32.max))
    elif dtype in ("int64", "uint32", "uint64"):
        if _tf.is_concrete(labels):
            _check_int32_range(ops.convert_to_numpy(labels))
        # An unsigned tensor cannot hold INT32.min: clipping to it would wrap to a huge bound.
        labels = ops.clip(labels, 0 if dtype.startswith("u") else _INT32.min, _INT32.max)
    return ops.cast(labels, "int32")


def label_shape_error(received, prefix=""):
    """The ValueError for labels that are not label maps (N, H, W) or (N, H, W, 1);
    ``received`` names their shape ("labels of shape (2, 3)")."""
    return ValueError(f"{prefix}Labels must be class ids of shape (N, H, W) or (N, H, W, 1) "
                      f"(not one-hot or colour maps). Received: {received}")


def _check_int32_range(values):
    """Raises naming the first integer label outside the int32 range."""
    wide = (values > _INT32.max) | (values < _INT32.min)
    if wide.any():
        raise ValueError("Labels must be class ids within the int32 range. "
                         f"Received a label value: {values[wide].flat[0]}")


def check_same_pixels(labels, other, what):
    """Raises when the static (N, H, W) of `labels` and of `what` (the tensor `other`) differ;
    returns `labels`. In a TensorFlow graph where a size is unknown, the labels depend on a
    run-time assertion with the same message (the fused cross-entropy op failed first, naming
    only its own inputs).
    """
    shape = tuple(other.shape)[:3]
    for got, expected in zip(labels.shape, shape):
        if got is not None and expected is not None and got != expected:
            raise ValueError(
                f"The labels and `{what}` must cover the same (batch, height, width). "
                f"Received: labels of shape {tuple(labels.shape)}, {what} of shape "
                f"{shape}")
    if None in tuple(labels.shape)[:3] + shape and _tf.on_tensorflow() \
            and not _tf.is_concrete(labels):
        import tensorflow as tf

        check = tf.debugging.assert_equal(
            tf.shape(labels)[:3], tf.shape(other)[:3],
            message=f"The labels and `{what}` must cover the same (batch, height, width)")
        with tf.control_dependencies([check]):
            labels = tf.identity(labels)
    return labels


def sample_weight_to_rank3(sample_weight, dtype, labels_shape=None):
    """Per-image (N,), per-row or per-pixel (N, H, W[, 1]) weights as a broadcastable rank 3.

    Raises a ValueError when the weights do not broadcast to `labels_shape` (N, H, W) or, in
    eager mode, when one is negative or not finite. In a TensorFlow graph, weights of unknown
    rank (a step retraced for weights of another rank) are reshaped by their run-time rank.

    Example:
        >>> tuple(sample_weight_to_rank3(np.ones(2), "float32", (2, 4, 5)).shape)
        (2, 1, 1)
    """
    sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    if _tf.on_tensorflow() and sample_weight.shape.rank is None:
        sample_weight = _rank3_at_run_time(
            sample_weight, "`sample_weight` must have shape (N,), (N, H, W) or (N, H, W, 1). "
            "Received: sample_weight of shape")
    if len(sample_weight.shape) == 4 and sample_weight.shape[-1] == 1:
        sample_weight = ops.squeeze(sample_weight, axis=-1)
    while len(sample_weight.shape) < 3:
        sample_weight = ops.expand_dims(sample_weight, -1)
    if labels_shape is not None and (len(sample_weight.shape) != 3 or any(
            got not in (None, 1) and expected is not None and got != expected
            for got, expected in zip(sample_weight.shape, labels_shape))):
        raise ValueError(
            "`sample_weight` must have shape (N,), (N, H, W) or (N, H, W, 1) for labels of "
            f"shape (N, H, W)={tuple(labels_shape)}. Received: sample_weight of shape "
            f"{tuple(sample_weight.shape)}")
    if _tf.is_concrete(sample_weight):
        values = ops.convert_to_numpy(ops.cast(sample_weight, "float32"))
        if not np.isfinite(values).all() or (values < 0).any():
            bad = values[~np.isfinite(values) | (values < 0)][0]
            raise ValueError("`sample_weight` must be finite and non-negative. "
                             f"Received a weight: {bad}")
    return sample_weight


def _rank3_at_run_time(x, message, min_rank=0):
    """A TensorFlow graph tensor of unknown rank as rank 3: ranks below 3 (``min_rank`` or
    more) padded with trailing 1s, (N, H, W, 1) squeezed; any other shape fails a
    ``tf.debugging.Assert`` with ``message``.

    A `tf.function` step traced again for inputs of another rank (per-pixel, then per-image
    weights; (N, H, W), then (N, H, W, 1) labels on one compiled model) relaxes them to an
    unknown rank, so the rank is read from the tensor; the reshape gives back a static rank 3
    for the checks after it.
    """
    import tensorflow as tf

    shape = tf.shape(x)
    rank = tf.size(shape)
    ok = tf.logical_and(tf.logical_and(rank >= min_rank, rank <= 4),
                        tf.reduce_prod(shape[3:]) == 1)
    padded = tf.concat([shape, tf.ones([tf.maximum(3 - rank, 0)], shape.dtype)], axis=0)
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, shape], summarize=8)]):
        return tf.reshape(x, tf.stack([padded[0], padded[1], padded[2]]))


def valid_pixels(labels, ignore_label):
    """Boolean map of the pixels that are not `ignore_label` (all of them when it is None)."""
    if ignore_label is None:
        return ops.ones_like(labels, dtype="bool")
    return ops.not_equal(labels, ignore_label)
