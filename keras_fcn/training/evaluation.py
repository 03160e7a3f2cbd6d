"""Evaluation with the paper's four metrics, at label resolution, and the results table.

Example:
    >>> results = evaluate_model(model, val_ds, num_classes=11, ignore_label=11, flip=True)
    >>> print(format_results(results, CAMVID_CLASSES))
"""

import keras
import numpy as np
import tensorflow as tf

from keras_fcn import metrics as metrics_lib
from keras_fcn.inference.forward import forward_fn

METRICS = (("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
           ("mean_iu", "mean IU"), ("frequency_weighted_iu", "frequency weighted IU"))


@tf.function(reduce_retracing=True, autograph=False)
def _classes_at(scores, size):
    """Argmax of `scores` after a bilinear resize to `size` (when it differs)."""
    same_size = tf.reduce_all(tf.equal(tf.shape(scores)[1:3], size))
    scores = tf.cond(same_size, lambda: scores,
                     lambda: tf.image.resize(scores, size, method="bilinear"))
    return tf.argmax(scores, axis=-1, output_type=tf.int32)


def _batch_size(images):
    return int(tf.nest.flatten(images)[0].shape[0])


def evaluate_model(model, dataset, *, num_classes, ignore_label, flip=False, verbose=1,
                   max_batches=None, precision=None, jit_compile=None):
    """Evaluates a segmentation model with the paper's metrics, in numpy.

    Predictions whose size differs from the mask (a model run at reduced resolution on
    full-size labels) are resized bilinearly (logits; probabilities with `flip`) to the mask
    size first, so figures are always at label resolution.

    Args:
        model: logits model (one output; its input may be a dict, e.g. RGB-HHA fusion).
        dataset: `tf.data.Dataset` of (images (B, h, w, 3), masks (B, H, W)).
        num_classes: number of classes.
        ignore_label: void label, not counted.
        flip: also predict the left-right flipped image and average the probabilities (TTA).
        verbose: show a progress bar.
        max_batches: stop after this many batches.
        precision, jit_compile: how to run the model (``keras_fcn.inference.forward_fn``):
            None keeps the model's own precision and picks XLA by ``keras_fcn.runtime``.

    Returns:
        dict: "pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu",
        "per_class_iu" (list, None for absent classes), "confusion_matrix" (list of lists),
        "num_images".

    Example:
        >>> results = evaluate_model(model, val_ds, num_classes=11, ignore_label=11)
        >>> results["mean_iu"]
    """
    predict = forward_fn(model, output="softmax" if flip else "logits", flip=flip,
                         precision=precision, jit_compile=jit_compile)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    images_seen = 0
    total = int(dataset.cardinality())
    total = total if total > 0 else None
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    for index, (images, masks) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        preds = _classes_at(predict(images), tf.shape(masks)[1:3])
        confusion += metrics_lib.confusion_matrix(masks.numpy(), preds.numpy(), num_classes,
                                                  ignore_label)
        images_seen += _batch_size(images)
        if bar is not None:
            bar.update(index + 1)
    if bar is not None and total is None:
        print()
    results = metrics_lib.segmentation_metrics(confusion)
    results["per_class_iu"] = [None if np.isnan(v) else float(v) for v in results["per_class_iu"]]
    results["confusion_matrix"] = confusion.tolist()
    results["num_images"] = images_seen
    return results


def format_results(results, class_names=None):
    """Formats evaluation results as a text table (the four metrics, then IU per class).

    Example:
        >>> print(format_results(results, info.class_names))
    """
    lines = [f"{'metric':<24}{'value':>8}"]
    for key, label in METRICS:
        lines.append(f"{label:<24}{100 * results[key]:>7.2f}%")
    lines.append("")
    lines.append(f"{'class':<24}{'IU':>8}")
    for index, iu in enumerate(results["per_class_iu"]):
        name = class_names[index] if class_names and index < len(class_names) else str(index)
        lines.append(f"{name:<24}" + ("     n/a" if iu is None else f"{100 * iu:>7.2f}%"))
    return "\n".join(lines)
