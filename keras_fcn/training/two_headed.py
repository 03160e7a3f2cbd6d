"""Training and evaluating the multi-task and multi-input FCNs of the paper: the two-headed
SIFT Flow FCN (one loss and the paper's metrics per head) and models with dict inputs or
outputs (the NYUDv2 late fusion).

Example:
    model = build_two_headed_fcn("16s", weights=None)
    >>> compile_two_headed(model, keras.optimizers.Adam(1e-4))  # doctest: +SKIP
    >>> evaluate_segmentation(model, test_ds, {"semantic": 33, "geometric": 3})  # doctest: +SKIP
"""

import numpy as np

from keras_fcn import losses as losses_lib
from keras_fcn import metrics as metrics_lib
from keras_fcn.labels import IGNORE_LABEL

def _output_classes(model):
    outputs = model.output
    if not isinstance(outputs, dict):
        raise ValueError(f"Model {model.name!r} does not have dict outputs: {outputs!r}")
    return {task: int(tensor.shape[-1]) for task, tensor in outputs.items()}


def compile_two_headed(model, optimizer, *, ignore_label=IGNORE_LABEL, loss_reduction="mean",
                       loss_weights=None, jit_compile=False):
    """Compiles a two-headed FCN with one ignore-label loss per head (summed) and the
    paper's metrics for each head (logged as ``semantic_mean_iu``, ``geometric_mean_iu``...).

    Args:
        model: from :func:`keras_fcn.models.build_two_headed_fcn`.
        optimizer: a Keras optimizer (e.g. ``keras_fcn.training.make_optimizer("sgd", lr)``).
        ignore_label: void label of both heads.
        loss_reduction: ``"mean"`` or ``"sum"`` (see :mod:`keras_fcn.losses`).
        loss_weights: optional ``{"semantic": w, "geometric": w}``; the reference weights
            both losses 1.
        jit_compile: compile the train step with XLA.

    Returns:
        The model.

    Example:
        model = build_two_headed_fcn("16s", weights=None)
        >>> compile_two_headed(model, keras.optimizers.Adam(1e-4))  # doctest: +SKIP
    """
    classes = _output_classes(model)
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
                  loss_weights=loss_weights, jit_compile=jit_compile)
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
    classes = num_classes if per_output else {None: num_classes}
    confusion = {k: np.zeros((n, n), np.int64) for k, n in classes.items()}
    for index, (inputs, labels) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        outputs = model(inputs, training=False)
        for key, n in classes.items():
            logits = outputs[key] if per_output else outputs
            target = labels[key] if per_output else labels
            preds = np.argmax(np.asarray(logits), axis=-1)
            confusion[key] += metrics_lib.confusion_matrix(np.asarray(target), preds, n,
                                                           ignore_label)
    results = {}
    for key, matrix in confusion.items():
        results[key] = metrics_lib.segmentation_metrics(matrix)
        results[key]["confusion_matrix"] = matrix
    return results if per_output else results[None]
