"""Checks of what `keras_fcn.models.FCN`'s fit, evaluate and predict are given, before Keras
sees it: numpy images and labels (shapes, values, the ignore label of the compiled loss) and
Keras' ``class_weight``, which an FCN cannot use."""

import numpy as np

from keras_fcn._checks import as_class_ids, check_class_ids, count_non_finite, pixel_value_problem
from keras_fcn._pixels import label_shape_error


def check_no_class_weight(class_weight):
    """Raises a ValueError naming the loss's ``class_weights`` when ``class_weight`` is given.

    Keras' ``fit(class_weight=...)`` reads one class id per sample and fails on label maps
    with a TypeError that names neither argument; its per-sample weight would also weight the
    metrics' confusion matrix, which changes the mean IU.

    Example:
        >>> check_no_class_weight({0: 1.0, 1: 2.0})
        Traceback (most recent call last):
        ValueError: `class_weight` weighs one class per sample...class_weights=[1.0, 2.0])`...
    """
    if class_weight is None:
        return
    hint = "[w_0, w_1, ...]"
    if isinstance(class_weight, dict) and sorted(class_weight) == list(range(len(class_weight))):
        hint = repr([float(class_weight[k]) for k in range(len(class_weight))])
    raise ValueError(
        "`class_weight` weighs one class per sample, and an FCN's sample is a label map: pass "
        "the per-class weights to the loss instead, "
        f"`SparseCategoricalCrossentropyIgnore(num_classes=..., class_weights={hint})` "
        "(keras_fcn.median_frequency_weights computes them from the masks). "
        f"Received: class_weight={class_weight!r}")


def _label_loss(model):
    """The model's compiled loss if it is the per-pixel one with an ignore label, else None."""
    loss = getattr(model, "loss", None)
    return loss if hasattr(loss, "ignore_label") and hasattr(loss, "num_classes") else None


def check_arrays(model, x, y, what=""):
    """Checks numpy images ``x`` and labels ``y`` for ``model`` before Keras sees them.

    Keras fails on an empty batch with an error of each backend's own (an UnboundLocalError in
    ``predict``), and a compiled step cannot stop on a bad label: on JAX the loss is NaN and
    training goes on. Arrays are known here, so: ``x`` must hold images (at least 1x1, real
    numbers, no NaN or infinity: :func:`check_image_values`), ``y`` label maps
    (N, H, W) or (N, H, W, 1) of whole class ids in [0, num_classes) or the ignore label of the
    compiled loss (when it is keras_fcn's: another loss may take one-hot labels). Anything
    that is not a numpy array (tensors, data sets) passes unchecked here; a `tf.data` set's
    labels are checked by :func:`check_dataset_labels`.

    Raises:
        ValueError: naming the bad shape or value and what was expected.

    Example:
        >>> model = keras_fcn.build_fcn("32s", 3, weights=None, widths=(4, 4, 8, 8, 8),
        ...                             fc_units=8)
        >>> check_arrays(model, np.zeros((0, 32, 32, 3)), None)
        Traceback (most recent call last):
        ValueError: `x` holds no images: expected a batch (N, H, W, channels) with N >= 1. ...
    """
    prefix = f"`{what}`: " if what else ""
    if isinstance(x, np.ndarray) and (x.ndim == 0 or len(x) == 0):
        raise ValueError(
            f"{prefix}`x` holds no images: expected a batch (N, H, W, channels) with N >= 1. "
            f"Received: x.shape={x.shape}")
    channels = model.input_shape[-1] if isinstance(model.input_shape, tuple) else None
    if isinstance(x, np.ndarray) and channels is not None and (x.ndim != 4
                                                               or x.shape[-1] != channels):
        raise ValueError(
            f"{prefix}`x` must be images (N, H, W, {channels}), channels last, for the model's "
            f"input {model.input_shape}. Received: x.shape={x.shape}")
    if isinstance(x, np.ndarray):
        check_image_values(x, prefix)
        check_pixel_scale(model, x, prefix)
    loss = _label_loss(model)
    if not isinstance(y, np.ndarray) or loss is None:  # another loss may take one-hot labels
        return
    if not (y.ndim == 3 or (y.ndim == 4 and y.shape[-1] == 1)):
        raise label_shape_error(f"y.shape={y.shape}", prefix)
    if isinstance(x, np.ndarray) and x.shape[:3] != y.shape[:3]:
        # Inside a compiled JAX step the loss's refusal left the model unusable.
        raise ValueError(f"{prefix}The labels must cover the images' pixels: (N, H, W) = "
                         f"{x.shape[:3]}. Received: y.shape={y.shape} for x.shape={x.shape}")
    num_classes = loss.num_classes or model.output_shape[-1]
    if num_classes == 1:
        raise ValueError(
            f"{prefix}The model and its loss score num_classes=1 class: a softmax over one "
            "class is always 1, so every pixel would be class 0. An FCN scores each class: "
            "use num_classes=2 (background and foreground) for a binary task. "
            f"Received: num_classes={num_classes}, model.output_shape={model.output_shape}")
    # In chunks of ~16M pixels: the int64 copy of a whole uint8 label set is 8x its size.
    step = max(1, (1 << 24) // max(1, int(np.prod(y.shape[1:]))))
    for start in range(0, len(y), step):
        labels = as_class_ids(y[start:start + step], "label")
        if loss.ignore_label is not None:
            labels = labels[labels != loss.ignore_label]
        check_class_ids(labels, num_classes, loss.ignore_label)


def check_dataset_labels(model, data, what=""):
    """Checks the static shape of the labels of ``data``, a `tf.data` set of (images,
    labels[, sample weights]), for the compiled per-pixel loss before Keras compiles a step:
    inside a compiled JAX step the loss's refusal of one-hot or colour labels left the model's
    variables unusable (``get_weights`` and ``save`` raised a TypeError; the trained weights
    were lost). Unknown dimensions pass; the loss still checks each batch.

    Raises:
        ValueError: labels of another rank than (N, H, W) or (N, H, W, 1), or of another
            static height or width than the images.

    Example:
        check_dataset_labels(model, dataset, "validation_data")
    """
    spec = getattr(data, "element_spec", None)
    if _label_loss(model) is None or not isinstance(spec, tuple) or len(spec) < 2:
        return
    prefix = f"`{what}`: " if what else ""
    shape = getattr(spec[1], "shape", None)
    rank = getattr(shape, "rank", None)
    if rank is None:
        return
    dims = tuple(shape)
    if not (rank == 3 or (rank == 4 and dims[-1] in (1, None))):
        raise label_shape_error(f"a data set of labels of shape {dims}", prefix)
    image_shape = getattr(spec[0], "shape", None)
    images = tuple(image_shape) if getattr(image_shape, "rank", None) is not None else ()
    if any(a is not None and b is not None and a != b for a, b in zip(images[1:3], dims[1:3])):
        raise ValueError(f"{prefix}The labels must cover the images' pixels. Received: a data "
                         f"set of images of shape {images} and labels of shape {dims}")


def check_image_values(x, prefix=""):
    """Raises a ValueError naming ``x`` unless the numpy batch ``x`` has images of at least
    one pixel, of real numbers (bool, integers or floats) and no NaN or infinite value.

    Keras ran them all: an empty image gave an empty prediction, NaN gave meaningless labels,
    complex images lost their imaginary part with only a ComplexWarning, and strings failed
    with an error that did not name ``x``. One float64 sum finds a NaN (no copy of ``x``).

    Example:
        >>> check_image_values(np.full((1, 4, 4, 3), np.nan, "float32"))
        Traceback (most recent call last):
        ValueError: `x` has 48 NaN or infinite values (of 48)...
    """
    if x.ndim >= 3 and min(x.shape[1:3]) < 1:
        raise ValueError(f"{prefix}`x` holds empty images: expected (N, H, W, channels) with "
                         f"H >= 1 and W >= 1. Received: x.shape={x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{prefix}`x` must hold images of real numbers (uint8 or float). "
                         f"Received: x.dtype={x.dtype}")
    bad = count_non_finite(x)
    if bad:
        raise ValueError(f"{prefix}`x` has {bad} NaN or infinite values (of {x.size}): "
                         "expected finite pixel values (the labels would be meaningless). "
                         f"Received: x.shape={x.shape}")


def check_pixel_scale(model, x, prefix=""):
    """Raises a ValueError when the float numpy batch ``x`` looks normalized to [0, 1] (max in
    (0, 1], min >= 0) while ``model`` has its own ``preprocess`` layer, which takes RGB in
    [0, 255]: the model would see near-black images and predict meaningless labels, where
    ``keras_fcn.predict`` and ``export_tflite`` refuse such images
    (:func:`keras_fcn._checks.pixel_value_problem`). An all-black image passes.

    Example:
        >>> model = keras_fcn.build_fcn("32s", 2, weights=None, widths=(4, 4, 8, 8, 8),
        ...                             fc_units=8, include_preprocessing=True)
        >>> check_pixel_scale(model, np.full((1, 4, 4, 3), 0.5, "float32"))
        Traceback (most recent call last):
        ValueError: `x` looks normalized to [0, 1] (max=0.5)...Multiply it by 255. Received...
    """
    from keras_fcn.models.inspect import has_preprocessing  # inspect imports this module

    problem, low, high = pixel_value_problem(x, refuse_unit_floats=True) or (None, 0, 0)
    if problem == "range" and low >= 0 and high <= 1 and has_preprocessing(model):
        raise ValueError(
            f"{prefix}`x` looks normalized to [0, 1] (max={float(high):g}); the model's "
            "`preprocess` layer expects RGB in [0, 255], as the model was trained on. "
            f"Multiply it by 255. Received: x.shape={x.shape}, x.dtype={x.dtype}")


def check_image_list(model, x):
    """Raises a ValueError pointing to ``keras_fcn.predict`` when ``x`` is a list or tuple of
    two or more images (numpy arrays) for a one-input ``model``: Keras' ``predict`` takes one
    stack (N, H, W, channels) and failed with "Data cardinality is ambiguous" (different
    sizes) or an error about the number of inputs (one size).

    Example:
        >>> model = keras_fcn.build_fcn("32s", 2, weights=None, widths=(4, 4, 8, 8, 8),
        ...                             fc_units=8)
        >>> check_image_list(model, [np.zeros((37, 53, 3)), np.zeros((61, 29, 3))])
        Traceback (most recent call last):
        ValueError: `x` is a list of 2 images of different sizes...keras_fcn.predict(model, ...
    """
    if not isinstance(x, (list, tuple)) or len(x) < 2 or len(model.inputs) != 1 \
            or not all(isinstance(item, np.ndarray) for item in x):
        return
    sizes = {item.shape[-3:-1] if item.ndim >= 3 else item.shape for item in x}
    shapes = ", ".join(str(item.shape) for item in x[:4]) + (", ..." if len(x) > 4 else "")
    raise ValueError(
        f"`x` is a list of {len(x)} images of {'different sizes' if len(sizes) > 1 else 'one size'}"
        ": Keras' predict takes one stack (N, H, W, channels) of one size. Use "
        "keras_fcn.predict(model, images), which takes a list of images of any sizes (raw RGB "
        f"in [0, 255]), or np.stack images of one size. Received: x of shapes {shapes}")
