"""Known values for the tests of training and evaluation, computed here without the library's
evaluation code: the confusion matrix of a model's argmax is counted with `np.bincount`, and
only the paper's formulas (`keras_fcn.metrics.segmentation_metrics`) come from the library."""

import keras
import numpy as np
import pytest

from keras_fcn.metrics import METRIC_NAMES, segmentation_metrics


def confusion_counts(labels, preds, num_classes, ignore_label):
    """(C, C) int64 matrix, n[i, j] = pixels labelled i and predicted j; void not counted."""
    labels = np.asarray(labels).astype("int64").ravel()
    preds = np.asarray(preds).astype("int64").ravel()
    keep = labels != ignore_label
    counts = np.bincount(num_classes * labels[keep] + preds[keep], minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def as_numpy_batches(dataset):
    """The (inputs, labels) batches of a `tf.data.Dataset` (or any iterable of pairs) in numpy."""
    batches = dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") else dataset
    return [keras.tree.map_structure(np.asarray, batch) for batch in batches]


def predicted_metrics(model, batches, num_classes, ignore_label, output=None):
    """The paper's metrics of `model`'s argmax on `batches` of (inputs, labels), at the labels'
    size (the inputs must have it): `segmentation_metrics` plus "confusion_matrix" and
    "num_images". `output` picks one output (and its labels) of a dict-output model."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    images = 0
    for inputs, labels in as_numpy_batches(batches):
        logits = model(inputs, training=False)
        if output is not None:
            logits, labels = logits[output], labels[output]
        preds = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        confusion += confusion_counts(labels, preds, num_classes, ignore_label)
        images += len(labels)
    results = segmentation_metrics(confusion)
    results.update(confusion_matrix=confusion, num_images=images)
    return results


def assert_same_metrics(reported, expected, names=METRIC_NAMES, moved_pixels=0):
    """`reported` (a run's JSON) counts the same labels as `expected` and has its confusion
    matrix, but for at most `moved_pixels` pixels predicted as another class (argmax near-ties
    that float rounding breaks either way), and its figures are those of its matrix (float32
    streaming sums: 1e-6)."""
    got = np.asarray(reported["confusion_matrix"])
    np.testing.assert_array_equal(got.sum(axis=1), expected["confusion_matrix"].sum(axis=1))
    moved = int(np.abs(got - expected["confusion_matrix"]).sum()) // 2
    assert moved <= moved_pixels, (moved, got, expected["confusion_matrix"])
    figures = segmentation_metrics(got) if moved else expected
    for name in names:
        assert reported[name] == pytest.approx(figures[name], abs=1e-6), name
