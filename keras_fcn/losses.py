"""Per-pixel softmax cross-entropy with an ignore label, and class weights.

The FCN reference (Long et al., CVPR 2015) trains with a per-pixel softmax
cross-entropy in which void pixels (label 255) contribute nothing.

Normalization, and how to move between the two conventions:

- `reduction_mode="sum"` is the paper's unnormalized loss: the loss of every
  valid pixel of an image is summed, and the per-image sums are averaged over
  the images of the batch. With batch 1 (the reference recipe) this is exactly
  the Caffe `SoftmaxWithLoss(normalize: false)` loss, and averaging over images
  keeps the meaning of the learning rate independent of the batch size.
- `reduction_mode="mean"` divides by the number of valid (non-ignored) pixels of
  the whole batch (by the sum of their weights when class weights are given).
  Its gradient is `1 / valid_pixels_per_image` times smaller, so the equivalent
  learning rate is `lr_mean = lr_sum * valid_pixels_per_image` (for 500x500
  VOC images, ~2.5e5; the reference lr 1e-10 becomes ~1e-5 with "mean").

Distribution (`tf.distribute`, e.g. `MirroredStrategy`): Keras 3 sums gradients
over replicas and, for its built-in losses, divides each replica's mean by the
number of replicas; the per-replica means of a batch with an uneven share of
void pixels then differ from the global mean. `SparseCategoricalCrossentropyIgnore`
instead all-reduces the denominator (valid-pixel weight, or image count) over
replicas, so each replica returns `local_sum / global_denominator`: the values
of all replicas sum to exactly the single-device loss, and so do the
gradients. Keras' logged `loss` multiplies each replica's value by the number
of replicas and averages over replicas weighted by their batch size, which
gives the single-device value whenever the replicas hold equal batches.
"""

import numpy as np
import keras
from keras import ops

from keras_fcn import _tf
from keras_fcn._checks import (
    as_class_ids, check_bool, check_choice, check_class_ids, check_positive_int)
from keras_fcn._pixels import (  # noqa: F401  (labels_to_rank3 ... were defined here)
    check_same_pixels,
    labels_to_rank3,
    sample_weight_to_rank3,
    valid_pixels,
    validate_ignore_label,
)

_REDUCTION_MODES = ("mean", "sum")


def validate_label_smoothing(label_smoothing):
    value = float(label_smoothing or 0.0)
    if not 0 <= value < 1:
        raise ValueError("`label_smoothing` must be in [0, 1). "
                         f"Received: label_smoothing={label_smoothing!r}")
    return value


def _validate_class_weights(class_weights, num_classes):
    if class_weights is None:
        return None
    weights = np.asarray(class_weights, dtype="float64")
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(
            "`class_weights` must be a non-empty 1-D sequence of floats. "
            f"Received: class_weights={class_weights!r}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError(
            "`class_weights` must be finite and non-negative, at least one of them positive. "
            f"Received: class_weights={class_weights!r}"
        )
    if num_classes is not None and weights.size != num_classes:
        raise ValueError(
            f"`class_weights` must have num_classes={num_classes} entries. "
            f"Received: {weights.size} entries"
        )
    return [float(w) for w in weights]


def _resolve_num_classes(logits, num_classes, class_weights):
    """Returns the class count, checking it against the logits' last axis."""
    static = logits.shape[-1]
    if num_classes is None and class_weights is not None:
        if static is not None and static != len(class_weights):
            raise ValueError(
                f"`class_weights` has {len(class_weights)} entries but `y_pred` has {static} "
                f"channels (classes). Received: y_pred.shape={logits.shape}")
        num_classes = len(class_weights)
    if num_classes is None:
        if static is None:
            raise ValueError(
                "The last axis of `y_pred` is unknown: pass `num_classes`. "
                f"Received: y_pred.shape={logits.shape}"
            )
        return int(static)
    if static is not None and static != num_classes:
        raise ValueError(
            f"`y_pred` must have num_classes={num_classes} channels. "
            f"Received: y_pred.shape={logits.shape}"
        )
    return num_classes


def _check_label_range(labels, valid, num_classes, ignore_label):
    """Raises (eager) or asserts (TensorFlow graph) that valid labels are in range.

    Inside a compiled step (XLA, a JAX trace) no check can stop the step: the NaN the
    caller puts at bad pixels keeps the loss from being silently wrong.

    Returns:
        A boolean tensor, True where a pixel holds an out-of-range label.
    """
    bad = ops.logical_and(valid, ops.logical_or(labels < 0, labels >= num_classes))
    message = (
        f"Labels must be in [0, {num_classes}) or equal to "
        f"ignore_label={ignore_label}. Received a label value: {{value}}"
    )
    _tf.check_none(bad, labels, message)
    return bad


def _pixel_weights(labels, valid, class_weights, sample_weight):
    """Returns the float32 (N, H, W) weight of each pixel (0 where void)."""
    weights = ops.cast(valid, "float32")
    if class_weights is not None:
        table = ops.convert_to_tensor(np.asarray(class_weights, "float32"))
        weights = weights * ops.take(table, ops.where(valid, labels, 0))
    if sample_weight is not None:
        weights = weights * sample_weight_to_rank3(sample_weight, "float32", labels.shape)
    return weights


def _pixel_terms(y_true, y_pred, num_classes, ignore_label, class_weights, from_logits,
                 sample_weight, label_smoothing=0.0):
    """Returns (per-pixel cross-entropy, per-pixel weight), both (N, H, W).

    The cross-entropy is 0 at void pixels; both are NaN at out-of-range labels (a compiled
    step cannot raise: the loss is NaN instead). With label smoothing e the target is
    (1 - e) one-hot + e / C, so the cross-entropy is (1 - e) ce + e (logsumexp(z) - mean(z))
    (z: the logits).
    """
    logits = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if len(logits.shape) != 4:
        raise ValueError(
            "`y_pred` must have shape (batch, height, width, classes). "
            f"Received: y_pred.shape={logits.shape}"
        )
    num_classes = _resolve_num_classes(logits, num_classes, class_weights)
    validate_ignore_label(ignore_label, num_classes)
    labels = labels_to_rank3(y_true)
    labels = check_same_pixels(labels, logits, "y_pred")
    valid = valid_pixels(labels, ignore_label)
    bad = _check_label_range(labels, valid, num_classes, ignore_label)
    valid = ops.logical_and(valid, ops.logical_not(bad))
    if not from_logits:
        logits = ops.log(ops.clip(logits, 1e-7, 1.0))
    safe_labels = ops.where(valid, labels, 0)
    # TensorFlow: its fused sparse softmax cross-entropy op; JAX/torch: log-softmax, fused by
    # the compiler.
    ce = ops.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
    if label_smoothing:
        uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
        ce = (1.0 - label_smoothing) * ce + label_smoothing * uniform
    ce = ops.where(valid, ce, 0.0)
    ce = ops.where(bad, float("nan"), ce)
    # The weight of a bad pixel is NaN too: XLA folds `NaN * 0` to 0, so a NaN loss with a
    # zero weight was dropped from a compiled step (JAX, jit_compile=True) without a trace.
    weights = ops.where(bad, float("nan"), _pixel_weights(labels, valid, class_weights,
                                                          sample_weight))
    return ce, weights


def _local_sum_and_denominator(ce, weights, reduction_mode):
    """Returns the weighted loss sum and the normalizer of this batch."""
    total = ops.sum(ce * weights)
    if reduction_mode == "mean":
        denominator = ops.sum(weights)
    else:
        denominator = ops.cast(ops.shape(ce)[0], "float32")
    return total, denominator


def _all_reduce_sum(value):
    """Sums `value` over replicas when called inside a multi-replica `tf.distribute` step.

    Only TensorFlow runs one loss call per replica; JAX's `keras.distribution` computes the
    loss of the global batch at once, so the plain sum is already the global one there.
    """
    if not _tf.on_tensorflow():
        return value
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    context = tf.distribute.get_replica_context()
    if context is None or strategy.num_replicas_in_sync <= 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def sparse_categorical_crossentropy_ignore(
    y_true,
    y_pred,
    num_classes=None,
    ignore_label=255,
    class_weights=None,
    reduction_mode="mean",
    from_logits=True,
    sample_weight=None,
    label_smoothing=0.0,
):
    """Per-pixel softmax cross-entropy that skips void pixels, as a scalar.

    This is the plain function form: it reduces over the batch it is given and
    knows nothing of replicas (use `SparseCategoricalCrossentropyIgnore` in
    `model.compile` to get the distribution-aware behaviour).

    Args:
        y_true: int labels, shape (N, H, W) or (N, H, W, 1).
        y_pred: logits (or probabilities if `from_logits=False`), shape
            (N, H, W, C), any float dtype; computed in float32.
        num_classes: number of classes C, or None to take it from `y_pred`.
        ignore_label: label of void pixels (no loss, not counted), or None.
        class_weights: optional sequence of C non-negative per-class weights.
        reduction_mode: "mean": sum(w * ce) / sum(w) over the valid pixels of
            the batch (w = 1 without class weights); 0 if no pixel is valid.
            "sum": sum(w * ce) per image, averaged over the images.
        from_logits: whether `y_pred` holds logits (True) or probabilities.
        sample_weight: optional weights, shape (N,), (N, H, W) or (N, H, W, 1),
            multiplied into the pixel weights.
        label_smoothing: e in [0, 1): targets (1 - e) one-hot + e / C (void pixels
            still count nothing).

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: in eager mode, when a label that is not `ignore_label` is
            outside [0, C). In a TensorFlow graph, an assertion fails instead;
            in a compiled step (XLA, JAX, `torch.compile`), where no check can
            stop it, the loss is NaN.

    Example:
        >>> logits = np.zeros((1, 2, 2, 3), "float32")
        >>> labels = np.array([[[0, 1], [2, 255]]])
        >>> float(sparse_categorical_crossentropy_ignore(labels, logits))
        1.0986...
    """
    num_classes = check_positive_int("num_classes", num_classes, allow_none=True)
    ignore_label = validate_ignore_label(ignore_label, num_classes)
    class_weights = _validate_class_weights(class_weights, num_classes)
    reduction_mode = check_choice("reduction_mode", reduction_mode, _REDUCTION_MODES)
    from_logits = check_bool("from_logits", from_logits)
    ce, weights = _pixel_terms(
        y_true, y_pred, num_classes, ignore_label, class_weights, from_logits,
        sample_weight, validate_label_smoothing(label_smoothing),
    )
    total, denominator = _local_sum_and_denominator(ce, weights, reduction_mode)
    return ops.divide_no_nan(total, denominator)


@keras.saving.register_keras_serializable(package="keras_fcn")
class SparseCategoricalCrossentropyIgnore(keras.losses.Loss):
    """Per-pixel softmax cross-entropy with an ignore label, for `compile`.

    Void pixels contribute nothing and are not counted. "mean" uses the
    weighted-mean convention sum(w_i * ce_i) / sum(w_i) (as PyTorch's
    `CrossEntropyLoss(weight=...)`): the loss scale then does not depend on
    which classes a batch happens to contain, so the learning rate keeps its
    meaning when class weights are switched on. "sum" is the paper's
    unnormalized loss, summed per image and averaged over images; see the
    module docstring for the learning-rate mapping
    `lr_mean = lr_sum * valid_pixels_per_image`.

    The reduction is done here, not by Keras' `reduction` machinery: under
    `tf.distribute` the denominator is summed over replicas, so every replica
    returns `local_sum / global_denominator`, which is what Keras' gradient
    summation over replicas expects (see the module docstring).

    Args:
        num_classes: number of classes C, or None to take it from `y_pred`.
        ignore_label: label of void pixels, or None. Defaults to 255.
        class_weights: optional sequence of C non-negative per-class weights
            (e.g. from `median_frequency_weights`).
        reduction_mode: "mean" (default) or "sum".
        from_logits: whether `y_pred` holds logits. Defaults to True.
        label_smoothing: e in [0, 1): targets (1 - e) one-hot + e / C. Defaults to 0.
        name: name of the loss.

    Example:
        >>> loss = SparseCategoricalCrossentropyIgnore(num_classes=21)
        >>> model.compile(optimizer="sgd", loss=loss)  # doctest: +SKIP
    """

    def __init__(
        self,
        num_classes=None,
        ignore_label=255,
        class_weights=None,
        reduction_mode="mean",
        from_logits=True,
        name="sparse_categorical_crossentropy_ignore",
        label_smoothing=0.0,
    ):
        self.num_classes = check_positive_int("num_classes", num_classes, allow_none=True)
        self.ignore_label = validate_ignore_label(ignore_label, self.num_classes)
        self.class_weights = _validate_class_weights(
            class_weights, self.num_classes
        )
        self.reduction_mode = check_choice("reduction_mode", reduction_mode, _REDUCTION_MODES)
        self.from_logits = check_bool("from_logits", from_logits)
        self.label_smoothing = validate_label_smoothing(label_smoothing)
        # Keras' own `reduction` is not used (`__call__` reduces); it is set
        # to the closest Keras name for code that inspects it.
        keras_reduction = "sum_over_batch_size" if reduction_mode == "mean" else "sum"
        super().__init__(name=name, reduction=keras_reduction, dtype="float32")

    def call(self, y_true, y_pred):
        """Returns the per-pixel weighted cross-entropy map, shape (N, H, W).

        Void pixels are 0. This is the unreduced loss; `__call__` reduces it.
        """
        ce, weights = self._terms(y_true, y_pred, None)
        return ce * weights

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Returns this replica's share of the reduced loss (float32 scalar)."""
        with keras.name_scope(self.name):
            ce, weights = self._terms(y_true, y_pred, sample_weight)
            total, denominator = _local_sum_and_denominator(
                ce, weights, self.reduction_mode
            )
            denominator = _all_reduce_sum(ops.stop_gradient(denominator))
            return ops.divide_no_nan(total, denominator)

    def _terms(self, y_true, y_pred, sample_weight):
        return _pixel_terms(y_true, y_pred, self.num_classes, self.ignore_label,
                            self.class_weights, self.from_logits, sample_weight,
                            self.label_smoothing)

    def get_config(self):
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "class_weights": self.class_weights,
            "reduction_mode": self.reduction_mode,
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


class ClassPixelCounts(tuple):
    """Pixel statistics per class, as returned by `class_pixel_counts`.

    Attributes:
        pixels: int64 array (C,), number of pixels labelled c.
        image_pixels: int64 array (C,), total number of (non-void) pixels of
            the images in which class c is present.
    """

    __slots__ = ()

    def __new__(cls, pixels, image_pixels):
        return super().__new__(cls, (pixels, image_pixels))

    @property
    def pixels(self):
        return self[0]

    @property
    def image_pixels(self):
        return self[1]


def _iterate_masks(dataset_or_masks):
    """Yields numpy label maps from a tf.data dataset, a batch source or an iterable."""
    if hasattr(dataset_or_masks, "as_numpy_iterator"):  # a tf.data.Dataset
        dataset_or_masks = dataset_or_masks.as_numpy_iterator()
    elif isinstance(dataset_or_masks, keras.utils.PyDataset):
        dataset_or_masks = (dataset_or_masks[i] for i in range(len(dataset_or_masks)))
    for element in dataset_or_masks:
        if isinstance(element, (tuple, list)):
            element = element[1]
        yield np.asarray(element)


def _count_one_mask(mask, num_classes, ignore_label):
    """Returns (pixels per class, non-void pixel count) of one label map."""
    labels = as_class_ids(mask, "label").reshape(-1)
    if ignore_label is not None:
        labels = labels[labels != ignore_label]
    check_class_ids(labels, num_classes, ignore_label)
    return np.bincount(labels, minlength=num_classes), labels.size


def class_pixel_counts(
    dataset_or_masks, num_classes, ignore_label=255, progress=False
):
    """Counts labelled pixels per class over a data set, streaming.

    Args:
        dataset_or_masks: a `tf.data.Dataset` of `(image, mask)` pairs or of
            masks, or any iterable of numpy masks (or of `(image, mask)`
            pairs). A batched dataset works too: every batch is one "image"
            for `image_pixels`, so unbatched data gives the textbook figures.
        num_classes: number of classes C.
        ignore_label: void label, not counted anywhere. None counts all.
        progress: show a `keras.utils.Progbar`.

    Returns:
        `ClassPixelCounts(pixels, image_pixels)`: two int64 arrays (C,); see
        its docstring. Feed it to `median_frequency_weights`.

    Example:
        >>> masks = [np.array([[0, 0], [1, 255]])]
        >>> class_pixel_counts(masks, num_classes=2).pixels
        array([2, 1])
    """
    num_classes = check_positive_int("num_classes", num_classes, allow_none=True)
    if num_classes is None:
        raise ValueError("`num_classes` is required. Received: num_classes=None")
    ignore_label = validate_ignore_label(ignore_label, num_classes)
    pixels = np.zeros(num_classes, dtype="int64")
    image_pixels = np.zeros(num_classes, dtype="int64")
    bar = keras.utils.Progbar(None, unit_name="mask") if progress else None
    for step, mask in enumerate(_iterate_masks(dataset_or_masks)):
        counts, total = _count_one_mask(mask, num_classes, ignore_label)
        pixels += counts
        image_pixels += np.where(counts > 0, total, 0)
        if bar is not None:
            bar.update(step + 1)
    return ClassPixelCounts(pixels, image_pixels)


def median_frequency_weights(class_pixel_counts):
    """Median-frequency class weights (Eigen & Fergus, ICCV 2015).

    freq_c = pixels of class c / total pixels of the images where c is
    present; w_c = median(freq) / freq_c. Classes that never occur get
    weight 0 and are left out of the median.

    Args:
        class_pixel_counts: a `ClassPixelCounts` / `(pixels, image_pixels)`
            pair from `class_pixel_counts`, or a 1-D array of per-class pixel
            counts alone (then freq_c = pixels_c / all pixels).

    Returns:
        float64 numpy array (C,) of weights.

    Example:
        >>> median_frequency_weights(([10, 30, 60], [100, 100, 100]))
        array([3. , 1. , 0.5])
    """
    pixels, image_pixels = _split_counts(class_pixel_counts)
    present = pixels > 0
    if not np.any(present):
        raise ValueError(
            "No class has any pixel. "
            f"Received: class_pixel_counts={class_pixel_counts!r}"
        )
    freq = np.zeros_like(pixels)
    freq[present] = pixels[present] / image_pixels[present]
    weights = np.zeros_like(pixels)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def _split_counts(class_pixel_counts):
    """Returns float64 (pixels, image_pixels) from the accepted inputs."""
    if isinstance(class_pixel_counts, tuple) and len(class_pixel_counts) == 2:
        pixels, image_pixels = (np.asarray(a, "float64") for a in class_pixel_counts)
    else:
        pixels = np.asarray(class_pixel_counts, "float64")
        image_pixels = np.full_like(pixels, pixels.sum())
    if pixels.ndim != 1 or pixels.shape != image_pixels.shape or np.any(pixels < 0):
        raise ValueError(
            "Expected non-negative per-class counts of shape (C,). "
            f"Received: class_pixel_counts={class_pixel_counts!r}"
        )
    if np.any(image_pixels[pixels > 0] < pixels[pixels > 0]):
        raise ValueError(
            "`image_pixels` must be at least `pixels` for every class. "
            f"Received: class_pixel_counts={class_pixel_counts!r}"
        )
    return pixels, image_pixels
