"""Segmentation metrics of the FCN paper, streaming (Keras) and in numpy.

From the confusion matrix n (n_ij = pixels of class i predicted as j),
t_i = sum_j n_ij (Long et al., CVPR 2015, section 5):

- pixel accuracy: sum_i n_ii / sum_i t_i
- mean accuracy: mean_i n_ii / t_i
- mean IU: mean_i n_ii / (t_i + sum_j n_ji - n_ii)
- frequency-weighted IU: (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

NaN-mean convention of the reference: a class absent from both labels and
predictions (IU 0/0) is left out of the mean IU; a class absent from the
labels (accuracy 0/0) is left out of the mean accuracy. A class that is only
predicted has IU 0 and counts. When no pixel was counted at all, the four
scores are 0.0 (not NaN, so checkpoint monitoring keeps working); the
per-class IU stays NaN for absent classes.

Void pixels (`ignore_label`) are never counted. Any other label or predicted
class outside [0, num_classes) is an error: a `ValueError` in eager mode and
in numpy, a failed `tf.debugging.Assert` in a graph (with XLA, where asserts
may be compiled away, such pixels are dropped).

Under `tf.distribute` the confusion matrix is a Keras metric variable with
SUM aggregation (synchronized on read): reading it outside the replica
function, as `model.evaluate()` and the epoch-end logs do, gives the
matrix summed over replicas. Keras' per-batch logs during `fit`, however, are
computed inside each replica and averaged over replicas.
"""

import keras
import numpy as np
from keras import ops

from keras_fcn import _tf
from keras_fcn._checks import as_class_ids, check_choice, check_class_ids, check_positive_int
from keras_fcn._pixels import (
    check_same_pixels,
    labels_to_rank3,
    sample_weight_to_rank3,
    valid_pixels,
    validate_ignore_label,
)

# A (C, C) float64 confusion matrix of more than 1 GiB (C > 11,585) is a mistaken class count.
MAX_CONFUSION_BYTES = 2**30

METRIC_NAMES = (
    "pixel_accuracy",
    "mean_accuracy",
    "mean_iu",
    "frequency_weighted_iu",
)


# ---------------------------------------------------------------- numpy ----


def check_num_classes(num_classes):
    """`num_classes` as a positive int whose (C, C) confusion matrix fits `MAX_CONFUSION_BYTES`.

    Example:
        >>> check_num_classes(10**6)
        Traceback (most recent call last):
        ValueError: num_classes=1000000 needs a confusion matrix of 8.0 TB ...
    """
    num_classes = check_positive_int("num_classes", num_classes)
    size = 8 * num_classes**2
    if num_classes == 1:  # as the builders refuse it: every score would be 1.0
        raise ValueError("num_classes=1 counts every pixel as class 0: a binary task is "
                         "num_classes=2 (background and foreground). Received: num_classes=1")
    if size > MAX_CONFUSION_BYTES:
        raise ValueError(f"num_classes={num_classes} needs a confusion matrix of "
                         f"{size / 1e12:.1f} TB (more than {MAX_CONFUSION_BYTES / 2**30:.0f} "
                         "GiB): is the class count right?")
    return num_classes


def _drop_channel(shape, other):
    """`shape` without a trailing axis of 1 when `other` has one axis less (labels (N, H, W, 1))."""
    if len(shape) == len(other) + 1 and shape[-1] == 1:
        return shape[:-1]
    return shape


def confusion_matrix(labels, preds, num_classes, ignore_label=255):
    """Confusion matrix of one or many label maps, in numpy.

    Args:
        labels: int array of ground-truth labels, any shape.
        preds: int array of predicted classes, same shape as `labels`.
        num_classes: number of classes C.
        ignore_label: void label, not counted (None counts every pixel).

    Returns:
        int64 array (C, C) with n[i, j] = pixels labelled i and predicted j.

    Raises:
        ValueError: on mismatched shapes, or a non-void label or prediction
            outside [0, C).

    Example:
        >>> confusion_matrix(np.array([0, 1, 255]), np.array([0, 0, 1]), 2)
        array([[1, 0],
               [1, 0]])
    """
    num_classes = check_num_classes(num_classes)
    ignore_label = validate_ignore_label(ignore_label, num_classes)
    labels = as_class_ids(labels, "label")
    preds = as_class_ids(preds, "predicted class")
    if _drop_channel(labels.shape, preds.shape) != _drop_channel(preds.shape, labels.shape):
        raise ValueError(
            "`labels` and `preds` must have the same shape. "
            f"Received: labels.shape={labels.shape}, preds.shape={preds.shape}"
        )
    labels, preds = labels.ravel(), preds.ravel()
    if ignore_label is not None:
        keep = labels != ignore_label
        labels, preds = labels[keep], preds[keep]
    for name, values in (("label", labels), ("predicted class", preds)):
        check_class_ids(values, num_classes, ignore_label, name)
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes**2)
    return flat.reshape(num_classes, num_classes)


def segmentation_metrics(confusion):
    """The four FCN paper metrics and per-class IU from a confusion matrix.

    Args:
        confusion: array (C, C), rows = labels, columns = predictions; finite and
            non-negative.

    Returns:
        dict with float "pixel_accuracy", "mean_accuracy", "mean_iu",
        "frequency_weighted_iu" (0.0 when the matrix is empty) and
        "per_class_iu" (float64 array (C,), NaN for classes absent from
        labels and predictions).

    Example:
        >>> segmentation_metrics(np.array([[3, 1], [0, 2]]))["mean_iu"]
        0.7083...
    """
    n = np.asarray(confusion, dtype="float64")
    if n.ndim != 2 or n.shape[0] != n.shape[1]:
        raise ValueError(
            f"`confusion` must be a square matrix. Received: shape={n.shape}"
        )
    if not np.isfinite(n).all() or (n < 0).any():
        bad = n[~np.isfinite(n) | (n < 0)][0]
        raise ValueError("`confusion` must hold finite, non-negative counts. "
                         f"Received an entry: {bad}")
    diag = np.diag(n)
    t = n.sum(axis=1)
    union = t + n.sum(axis=0) - diag
    total = t.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iu = diag / union
        acc = diag / t
    has_iu = union > 0
    has_acc = t > 0
    return {
        "pixel_accuracy": float(diag.sum() / total) if total > 0 else 0.0,
        "mean_accuracy": float(acc[has_acc].mean()) if has_acc.any() else 0.0,
        "mean_iu": float(iu[has_iu].mean()) if has_iu.any() else 0.0,
        "frequency_weighted_iu": (
            float((t[has_iu] * iu[has_iu]).sum() / total) if total > 0 else 0.0
        ),
        "per_class_iu": iu,
    }


# ------------------------------------------------------------ keras.ops ----


def count_dtype():
    """The dtype of confusion counts: float64 (exact up to 2**53), or float32 on JAX without
    ``jax_enable_x64`` (a batch's pixels are counted as integers, and `ConfusionMatrixMetric`
    adds them with a compensation term, so single pixels still count past 2**24; weighted
    pixels are float32 sums)."""
    if _tf.backend() == "jax":
        import jax
        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


def _ratio_mean(numerator, denominator):
    """Mean of numerator/denominator over entries with denominator > 0."""
    count = ops.sum(ops.cast(denominator > 0, numerator.dtype))
    return ops.divide_no_nan(ops.sum(ops.divide_no_nan(numerator, denominator)), count)


def metrics_from_confusion(confusion):
    """Tensor version of `segmentation_metrics` (float64 or float32 in, float32 out).

    Args:
        confusion: tensor (C, C), rows = labels, columns = predictions.

    Returns:
        dict of float32 tensors with the keys of `segmentation_metrics`; every one NaN when
        `confusion` holds a NaN (non-finite logits, see `confusion_matrix_tensor`).

    Example:
        >>> float(metrics_from_confusion(np.array([[3, 1], [0, 2]]))["mean_iu"])
        0.7083...
    """
    n = ops.cast(ops.convert_to_tensor(confusion), count_dtype())
    diag = ops.diagonal(n)
    t = ops.sum(n, axis=1)
    union = t + ops.sum(n, axis=0) - diag
    total = ops.sum(t)
    iu = ops.divide_no_nan(diag, union)
    results = {
        "pixel_accuracy": ops.divide_no_nan(ops.sum(diag), total),
        "mean_accuracy": _ratio_mean(diag, t),
        "mean_iu": _ratio_mean(diag, union),
        "frequency_weighted_iu": ops.divide_no_nan(ops.sum(t * iu), total),
        "per_class_iu": ops.where(union > 0, iu, np.nan),
    }
    # A NaN count (non-finite logits, see `confusion_matrix_tensor`) makes every score NaN:
    # the means leave out classes whose count is not > 0, and would read 0.0 for a model whose
    # every logit is NaN.
    diverged = ops.any(ops.isnan(n))
    return {k: ops.cast(ops.where(diverged, np.nan, v), "float32") for k, v in results.items()}


def _is_logits(y_pred, num_classes):
    """True when ``y_pred`` (a tensor) holds per-class scores, whose argmax is a class id."""
    return len(y_pred.shape) == 4 and y_pred.shape[-1] == num_classes and num_classes > 1


def _to_label_map(y_pred, num_classes):
    """Returns int32 (N, H, W) predictions from logits or a label map, and None or (a float
    label map) whether any of it is not a whole class id: an error, eager or in a TensorFlow
    graph (a traced step cannot raise: the caller makes the matrix NaN)."""
    y_pred = ops.convert_to_tensor(y_pred)
    rank, shape = len(y_pred.shape), tuple(y_pred.shape)
    if _is_logits(y_pred, num_classes):
        return ops.cast(ops.argmax(y_pred, axis=-1), "int32"), None
    if rank == 4 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    elif rank == 4:
        raise ValueError(
            f"`y_pred` must be logits with num_classes={num_classes} channels "
            f"or a label map. Received: y_pred.shape={y_pred.shape}"
        )
    if not _tf.is_float(y_pred):
        return ops.cast(y_pred, "int32"), None
    # Not rounded: one channel of logits (a num_classes=1 model) would be cut at 0.5, not 0.
    bad = ops.logical_not(ops.logical_and(ops.isfinite(y_pred), y_pred == ops.round(y_pred)))
    _tf.check_none(bad, y_pred, (
        f"A float `y_pred` other than logits of num_classes > 1 channels (num_classes="
        f"{num_classes}) is read as a label map, whose every value must be a whole class id "
        "(one channel of logits or probabilities is not: an FCN scores each class, build it "
        f"with num_classes=2 for background and foreground). Received: y_pred.shape={shape}, "
        f"dtype={keras.backend.standardize_dtype(y_pred.dtype)}, a value {{value}}"))
    return ops.cast(ops.where(bad, -1, y_pred), "int32"), ops.any(bad)


def _check_range(values, valid, num_classes, what):
    """Raises (eager) or asserts (TensorFlow graph) that valid values lie in [0, C)."""
    bad = ops.logical_and(valid, ops.logical_or(values < 0, values >= num_classes))
    _tf.check_none(bad, values, f"Every {what} must be in [0, {num_classes}) or void. "
                                f"Received: {what}={{value}}")
    return bad


def confusion_matrix_tensor(y_true, y_pred, num_classes, ignore_label=255, sample_weight=None):
    """Confusion matrix of a batch as a tensor (C, C) of `count_dtype()` (float64).

    Args:
        y_true: int labels (N, H, W) or (N, H, W, 1).
        y_pred: logits (N, H, W, C) (argmax is taken) or predicted labels
            (N, H, W) / (N, H, W, 1) (floats must be whole class ids: not rounded).
        num_classes: number of classes C.
        ignore_label: void label, not counted (None counts every pixel).
        sample_weight: optional weights broadcastable to (N, H, W), e.g.
            (N,) per image; a pixel adds its weight instead of 1.

    Returns:
        tensor (C, C), n[i, j] = weight of pixels labelled i, predicted j. Logits that are
        not finite (a diverged model) at a non-void pixel make the whole matrix NaN, so every
        score read from it is NaN: their argmax would count them as class 0.

    Raises:
        ValueError: when the labels and predictions cover different (N, H, W).

    Example:
        >>> keras.ops.convert_to_numpy(confusion_matrix_tensor([[[0, 255]]], [[[1, 0]]], 2))
        array([[0., 1.],
               [0., 0.]])
    """
    parts = _confusion_parts(y_true, y_pred, num_classes, ignore_label, sample_weight)
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def _confusion_parts(y_true, y_pred, num_classes, ignore_label, sample_weight):
    """`confusion_matrix_tensor` as one or two tensors of `count_dtype()` whose sum it is,
    each exact: with float32 counts, the multiples of 4096 and the rest."""
    labels = labels_to_rank3(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    preds, not_whole = _to_label_map(y_pred, num_classes)
    labels = check_same_pixels(labels, preds, "y_pred")
    valid = valid_pixels(labels, ignore_label)
    bad = _check_range(labels, valid, num_classes, "label")
    if not _is_logits(y_pred, num_classes):
        # An argmax is a class id: checking it would only cost a host read (a device sync)
        # per step in eager Keras-torch.
        bad = ops.logical_or(bad, _check_range(preds, valid, num_classes, "predicted class"))
    valid = ops.logical_and(valid, ops.logical_not(bad))
    dtype, cells = count_dtype(), num_classes * num_classes
    index = ops.reshape(ops.where(valid, labels * num_classes + preds, cells), (-1,))
    if sample_weight is None:
        # Whole pixels counted as integers, exact up to 2**31 a batch: float32 sums (JAX
        # without x64; Keras-torch's segment_sum adds in float32 whatever the dtype) stopped
        # at 2**24 pixels a cell: a 6000x6000 batch scored a wrong pixel accuracy.
        counts = _count(index, None, cells + 1)[:cells]
        if dtype == "float64":
            parts = [ops.cast(counts, dtype)]
        else:  # each part exact in float32 (< 2**12, and multiples of 2**12 below 2**31)
            low = counts % 4096
            parts = [ops.cast(counts - low, dtype), ops.cast(low, dtype)]
    else:
        weights = ops.cast(valid, dtype) * sample_weight_to_rank3(sample_weight, dtype,
                                                                  labels.shape)
        parts = [_count(index, ops.reshape(weights, (-1,)), cells + 1)[:cells]]
    nan = None
    if _is_logits(y_pred, num_classes) and _tf.is_float(y_pred):
        # All of it, not the cells the argmax of NaN picks (column 0 on JAX and PyTorch,
        # others on TensorFlow): the same matrix on every backend.
        finite = ops.all(ops.isfinite(y_pred), axis=-1)
        nan = ops.any(ops.logical_and(valid, ops.logical_not(finite)))
    if not_whole is not None:
        nan = not_whole if nan is None else ops.logical_or(nan, not_whole)
    if nan is not None:
        parts = [ops.where(nan, np.nan, part) for part in parts]
    return [ops.reshape(part, (num_classes, num_classes)) for part in parts]


def _count(index, weights, size):
    """Sum of ``weights`` (None: 1 each, as int32) per value of ``index`` in [0, size)."""
    if _tf.backend() == "torch":  # Keras' torch segment_sum adds in float32
        return ops.bincount(index, weights=weights, minlength=size)
    if weights is None:
        weights = ops.ones_like(index)
    return ops.segment_sum(weights, index, num_segments=size)



@keras.saving.register_keras_serializable(package="keras_fcn")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Streaming confusion matrix; `result()` is one of the paper's metrics.

    The (C, C) matrix is accumulated in float64 (exact for integer pixel
    counts up to 2**53) in a metric variable with SUM aggregation, so it is
    summed over replicas under `tf.distribute`. On JAX without
    ``jax_enable_x64`` it is float32 with a Kahan compensation term: the
    total is the float32 nearest to the exact count (relative error < 6e-8),
    where a plain float32 sum stops adding single pixels past 2**24.

    Args:
        num_classes: number of classes C.
        ignore_label: void label, never counted. Defaults to 255.
        metric: what `result()` returns: "mean_iu" (default),
            "pixel_accuracy", "mean_accuracy" or "frequency_weighted_iu".
        name: metric name; defaults to `metric`, so logs read `val_mean_iu`.
        dtype: dtype of `result()`. Defaults to float32.

    Example:
        >>> m = ConfusionMatrixMetric(num_classes=21)
        >>> model.compile("sgd", loss=..., metrics=[m])  # doctest: +SKIP
        >>> m.update_state(labels, logits)  # doctest: +SKIP
        >>> m.results()["pixel_accuracy"]  # doctest: +SKIP
    """

    def __init__(self, num_classes, ignore_label=255, metric="mean_iu", name=None, dtype=None):
        super().__init__(name=name or metric, dtype=dtype or "float32")
        self.num_classes = check_num_classes(num_classes)
        self.ignore_label = validate_ignore_label(ignore_label, self.num_classes)
        self.metric = check_choice("metric", metric, METRIC_NAMES)
        # Higher is better for all four: Keras' callbacks (EarlyStopping, ModelCheckpoint,
        # ReduceLROnPlateau) read this in mode="auto" and refuse a metric without it.
        self._direction = "up"
        shape = (self.num_classes, self.num_classes)
        dtype = count_dtype()
        self.confusion = self.add_variable(
            shape=shape, initializer="zeros", dtype=dtype, aggregation="sum",
            name="confusion_matrix")
        # float32 counts lose units past 2**24: a compensated (Kahan) sum keeps them exact.
        self._compensation = None if dtype == "float64" else self.add_variable(
            shape=shape, initializer="zeros", dtype=dtype, aggregation="sum",
            name="confusion_compensation")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: labels (N, H, W[, 1]), logits (N, H, W, C) or labels."""
        parts = _confusion_parts(y_true, y_pred, self.num_classes, self.ignore_label,
                                 sample_weight)
        if self._compensation is None:
            self.confusion.assign_add(parts[0])
            return
        total, compensation = self.confusion.value, self._compensation.value
        for part in parts:  # float32: each exact part added with its compensation
            corrected = part - compensation
            new_total = total + corrected
            compensation = (new_total - total) - corrected
            total = new_total
        self._compensation.assign(compensation)
        self.confusion.assign(total)

    def result(self):
        return ops.cast(self.results()[self.metric], self.dtype)

    def results(self):
        """Returns all four metrics and "per_class_iu" as float32 tensors."""
        return metrics_from_confusion(self.confusion_matrix())

    def confusion_matrix(self):
        """Returns the accumulated confusion matrix (C, C) (float64, see `count_dtype`)."""
        total = ops.convert_to_tensor(self.confusion)
        if self._compensation is None:
            return total
        return total - ops.convert_to_tensor(self._compensation)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros_like(variable.value))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_classes": self.num_classes,
                "ignore_label": self.ignore_label, "metric": self.metric}


class _FixedMetric(ConfusionMatrixMetric):
    """A `ConfusionMatrixMetric` whose `result()` is fixed by the subclass."""

    _metric = None

    def __init__(self, num_classes, ignore_label=255, name=None, dtype=None):
        super().__init__(num_classes, ignore_label, metric=self._metric, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["metric"]
        return config


@keras.saving.register_keras_serializable(package="keras_fcn")
class MeanIU(_FixedMetric):
    """Streaming mean IU (logged as "mean_iu").

    Args:
        num_classes: number of classes C.
        ignore_label: void label, never counted. Defaults to 255.
        name: metric name. Defaults to "mean_iu".
        dtype: dtype of `result()`. Defaults to float32.

    Example:
        >>> model.compile("sgd", loss=..., metrics=[MeanIU(21)])  # doctest: +SKIP
    """

    _metric = "mean_iu"


@keras.saving.register_keras_serializable(package="keras_fcn")
class PixelAccuracy(_FixedMetric):
    """Streaming pixel accuracy (logged as "pixel_accuracy").

    Args: as `MeanIU`.

    Example:
        >>> model.compile("sgd", loss=..., metrics=[PixelAccuracy(21)])  # doctest: +SKIP
    """

    _metric = "pixel_accuracy"


@keras.saving.register_keras_serializable(package="keras_fcn")
class MeanAccuracy(_FixedMetric):
    """Streaming mean (per-class) accuracy (logged as "mean_accuracy").

    Args: as `MeanIU`.

    Example:
        >>> model.compile("sgd", loss=..., metrics=[MeanAccuracy(21)])  # doctest: +SKIP
    """

    _metric = "mean_accuracy"


@keras.saving.register_keras_serializable(package="keras_fcn")
class FrequencyWeightedIU(_FixedMetric):
    """Streaming frequency-weighted IU (logged as "frequency_weighted_iu").

    Args: as `MeanIU`.

    Example:
        >>> model.compile("sgd", loss=..., metrics=[FrequencyWeightedIU(21)])  # doctest: +SKIP
    """

    _metric = "frequency_weighted_iu"
