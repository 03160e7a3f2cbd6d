"""Training and evaluating the multi-task and multi-input FCNs of the paper: the two-headed
SIFT Flow FCN (one loss and the paper's metrics per head) and models with dict inputs or
outputs (the NYUDv2 late fusion).

Example:
    model = build_two_headed_fcn("16s", weights=None)
    >>> compile_two_headed(model, keras.optimizers.Adam(1e-4))  # doctest: +SKIP
    >>> evaluate_segmentation(model, test_ds, {"semantic": 33, "geometric": 3})  # doctest: +SKIP
"""

import math
import numbers

import keras
import numpy as np

from keras_fcn import losses as losses_lib
from keras_fcn import metrics as metrics_lib
from keras_fcn._checks import check_finite_scores, check_positive_int, count_non_finite
from keras_fcn.labels import IGNORE_LABEL
from keras_fcn.training.fit import compiled_step

def _output_classes(model):
    outputs = model.output
    if not isinstance(outputs, dict):
        raise ValueError(f"Model {model.name!r} does not have dict outputs: {outputs!r}")
    return {task: int(tensor.shape[-1]) for task, tensor in outputs.items()}


def _check_loss_weights(loss_weights, classes):
    """Raises a ValueError unless ``loss_weights`` is None or one finite number >= 0 per
    output (a NaN weight turned every weight NaN at the first step; unknown names failed
    only in ``fit``)."""
    if loss_weights is None:
        return
    if not isinstance(loss_weights, dict) or set(loss_weights) != set(classes):
        raise ValueError(f"loss_weights must be a dict with one weight per output "
                         f"{sorted(classes)}. Received: loss_weights={loss_weights!r}")
    for task, weight in loss_weights.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss_weights[{task!r}] must be a finite number >= 0. "
                             f"Received: loss_weights={loss_weights!r}")


def _output_channels(model):
    """{output: channels} of a dict-output model, else {None: channels} (None if unknown)."""
    outputs = model.output
    if isinstance(outputs, dict):
        return {task: tensor.shape[-1] for task, tensor in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return None
    return {None: outputs.shape[-1]}


def _check_classes(model, num_classes):
    """``num_classes`` as ``{output (None for one): classes}``, or a ValueError naming what
    differs from the model's outputs (argmax never reaches a class past the model's channels,
    and fewer classes than channels is an error later or a wrong score)."""
    per_output = isinstance(num_classes, dict)
    classes = {key: metrics_lib.check_num_classes(n) for key, n in (
        num_classes.items() if per_output else ((None, num_classes),))}
    channels = _output_channels(model)
    if channels is None:
        return classes
    if not classes or not set(classes) <= set(channels):
        expected = ("an int (the model has one output)" if None in channels else
                    f"a dict with entries for outputs among {sorted(channels)}")
        raise ValueError(f"num_classes must be {expected}. Received: "
                         f"num_classes={num_classes!r}")
    for key, n in classes.items():
        if channels[key] is not None and channels[key] != n:
            output = "" if key is None else f" {key!r}"
            raise ValueError(f"num_classes={num_classes!r} differs from the {channels[key]} "
                             f"channels of the model's output{output} (model {model.name!r})")
    return classes


def compile_two_headed(model, optimizer, *, ignore_label=IGNORE_LABEL, loss_reduction="mean",
                       loss_weights=None, jit_compile=None):
    """Compiles a two-headed FCN with one ignore-label loss per head (summed) and the
    paper's metrics for each head (logged as ``semantic_mean_iu``, ``geometric_mean_iu``...).

    Args:
        model: from :func:`keras_fcn.models.build_two_headed_fcn`.
        optimizer: a Keras optimizer (e.g. ``keras_fcn.training.make_optimizer("sgd", lr)``).
        ignore_label: void label of both heads.
        loss_reduction: ``"mean"`` or ``"sum"`` (see :mod:`keras_fcn.losses`).
        loss_weights: optional ``{"semantic": w, "geometric": w}``; the reference weights
            both losses 1.
        jit_compile: compile the train step with XLA; None (default): the backend's
            compiled path (:func:`keras_fcn.training.fit.compiled_step`).

    Returns:
        The model.

    Example:
        model = build_two_headed_fcn("16s", weights=None)
        >>> compile_two_headed(model, keras.optimizers.Adam(1e-4))  # doctest: +SKIP
    """
    classes = _output_classes(model)
    _check_loss_weights(loss_weights, classes)
    loss = {
        task: losses_lib.SparseCategoricalCrossentropyIgnore(
            num_classes=n, ignore_label=ignore_label, reduction_mode=loss_reduction,
            name=f"{task}_loss")
        for task, n in classes.items()
    }
    metrics = {
        # Keras prefixes metric names with the output name: "semantic_mean_iu".
        task: [metric(n, ignore_label) for metric in (
            metrics_lib.PixelAccuracy, metrics_lib.MeanAccuracy, metrics_lib.MeanIU,
            metrics_lib.FrequencyWeightedIU)]
        for task, n in classes.items()
    }
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                  loss_weights=loss_weights, jit_compile=compiled_step(jit_compile))
    return model


def evaluate_segmentation(model, dataset, num_classes, ignore_label=IGNORE_LABEL, max_batches=None):
    """Confusion matrices and the paper's metrics of a model with dict inputs or dict outputs.

    Works for the late-fusion model (dict inputs, one output) and the two-headed model (one
    input, dict outputs) as well as plain FCNs.

    Args:
        model: a logits model.
        dataset: yields ``(inputs, labels)``; ``labels`` a tensor, or a dict keyed like the
            model's outputs.
        num_classes: an int, or ``{output: classes}`` for dict outputs.
        ignore_label: void label, not counted.
        max_batches: stop after this many batches.

    Returns:
        For one output: the dict of ``keras_fcn.metrics.segmentation_metrics`` plus
        ``"confusion_matrix"`` (numpy); for dict outputs, one such dict per output.

    Example:
        results = evaluate_segmentation(model, test_ds, {"semantic": 33, "geometric": 3})
        >>> results["semantic"]["mean_iu"]  # doctest: +SKIP
    """
    per_output = isinstance(num_classes, dict)
    classes = _check_classes(model, num_classes)
    max_batches = check_positive_int("max_batches", max_batches, allow_none=True)
    confusion = {k: np.zeros((int(n), int(n)), np.int64) for k, n in classes.items()}
    batches = 0
    for index, (inputs, labels) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        batches += 1
        outputs = model(inputs, training=False)
        if per_output and (not isinstance(labels, dict) or not set(classes) <= set(labels)):
            raise ValueError(f"With num_classes per output, the labels must be a dict with "
                             f"the keys {sorted(classes)}. Received labels of type "
                             f"{type(labels).__name__}"
                             + (f" with keys {sorted(labels)}" if isinstance(labels, dict)
                                else ""))
        for key, n in classes.items():
            # keras.ops: a PyTorch tensor that requires grad has no numpy() of its own.
            logits = keras.ops.convert_to_numpy(outputs[key] if per_output else outputs)
            # NaN logits (a diverged model) argmax to class 0: a believable score otherwise.
            check_finite_scores(count_non_finite(logits),
                                "model output" if key is None else f"{key!r} output")
            target = labels[key] if per_output else labels
            preds = np.argmax(logits, axis=-1)
            confusion[key] += metrics_lib.confusion_matrix(np.asarray(target), preds, n,
                                                           ignore_label)
    if batches == 0:
        raise ValueError("The evaluation data set yielded no batch: nothing to score "
                         f"(max_batches={max_batches})")
    results = {}
    for key, matrix in confusion.items():
        results[key] = metrics_lib.segmentation_metrics(matrix)
        results[key]["confusion_matrix"] = matrix
    return results if per_output else results[None]
