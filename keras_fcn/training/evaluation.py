"""Evaluation with the paper's four metrics, at label resolution, and the results table.

Example:
    results = evaluate_model(model, val_ds, num_classes=11, ignore_label=11, flip=True)
    print(format_results(results, CAMVID_CLASSES))
"""

import json
import os
import re
import sys
import time

import keras
import numpy as np
from keras import ops

from keras_fcn import _tf
from keras_fcn import metrics as metrics_lib
from keras_fcn._checks import check_finite_scores, check_positive_int, check_scales
from keras_fcn.inference.forward import forward_fn
from keras_fcn.training.callbacks import Heartbeat

# The keys of every JSON tools/evaluate.py writes (`<model>.eval.json`): a file with them is
# a previous evaluation, which a new one may replace and a run's --overwrite may remove.
EVALUATION_KEYS = ("mean_iu", "confusion_matrix", "model", "dataset", "split")
_MAX_EVALUATION_BYTES = 64 << 20  # larger files are not evaluation JSONs: not read


def is_evaluation_json(path):
    """True if ``path`` is a JSON file of tools/evaluate.py (it has `EVALUATION_KEYS`).

    Example:
        >>> is_evaluation_json("runs/a/metrics.json")  # doctest: +SKIP
        False
    """
    try:
        if os.path.getsize(path) > _MAX_EVALUATION_BYTES:
            return False
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return False
    return isinstance(data, dict) and all(key in data for key in EVALUATION_KEYS)


LOG_SECONDS = 10  # verbose=2: seconds between progress lines (a log, not a flood)
EVALUATION_SUFFIX = ".eval.json"
_HOLDOUT_TAG = re.compile(r"\.holdout-[A-Za-z0-9._+-]+$")


def evaluation_file(model_path, holdout=None):
    """tools/evaluate.py's default output for ``model_path``: ``<model>.eval.json``, or with
    held-out groups ``<model>.holdout-<groups>.eval.json`` (groups joined by "+"), so the
    figure on the held-out drive and the one on the training drives' val do not overwrite
    each other.

    Example:
        >>> evaluation_file("runs/cv2/best.keras", "0006R0,0001TP")
        'runs/cv2/best.holdout-0006R0+0001TP.eval.json'
    """
    groups = holdout.split(",") if isinstance(holdout, str) else list(holdout or ())
    tag = "+".join(re.sub(r"[^A-Za-z0-9._-]", "_", g.strip()) for g in groups if g.strip())
    return os.path.splitext(model_path)[0] + (f".holdout-{tag}" if tag else "") + \
        EVALUATION_SUFFIX


def evaluated_model(name):
    """The model file name whose default evaluation (`evaluation_file`) is the file ``name``,
    or None for a name of no evaluation.

    Example:
        >>> evaluated_model("best.holdout-0006R0.eval.json"), evaluated_model("notes.json")
        ('best.keras', None)
    """
    if not name.endswith(EVALUATION_SUFFIX):
        return None
    return _HOLDOUT_TAG.sub("", name[:-len(EVALUATION_SUFFIX)]) + ".keras"


METRICS = (("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
           ("mean_iu", "mean IU"), ("frequency_weighted_iu", "frequency weighted IU"))


def _resize(images, size):
    """Bilinear resize of ``(B, h, w, C)`` to ``size`` (no antialiasing, as tf.image.resize)."""
    return ops.image.resize(images, tuple(int(v) for v in size), interpolation="bilinear")


def _classes_at(scores, size):
    """Numpy int32 argmax of `scores` after a bilinear resize to `size` (when it differs);
    a ValueError when a score is not finite (their argmax would be class 0)."""
    check_finite_scores(ops.convert_to_numpy(ops.sum(ops.cast(
        ops.logical_not(ops.isfinite(scores)), "int32"))))
    if tuple(scores.shape[1:3]) != tuple(size):
        scores = _resize(scores, size)
    return ops.convert_to_numpy(ops.argmax(scores, axis=-1)).astype("int32")


def _output_channels(model):
    """The last axis of the model's (first) output, or None when unknown."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None
    channels = keras.tree.flatten(outputs)[0].shape[-1]
    return None if channels is None else int(channels)


def _first(images):
    return keras.tree.flatten(images)[0]


def num_batches(dataset):
    """Batches of a `tf.data.Dataset` or a `keras.utils.PyDataset`; None when unknown."""
    if hasattr(dataset, "cardinality"):
        total = int(dataset.cardinality())
        return total if total > 0 else None
    try:
        return len(dataset)
    except TypeError:
        return None


def iterate_batches(dataset):
    """The ``(images, masks)`` batches of a `tf.data.Dataset`, a `keras.utils.PyDataset` or
    any iterable of pairs."""
    if isinstance(dataset, keras.utils.PyDataset):
        batches = (dataset[i] for i in range(len(dataset)))
    else:
        batches = iter(dataset)
    if _tf.on_tensorflow():
        return batches
    # tf.data feeding JAX or PyTorch (the Keras 3 convention): numpy in between.
    return (keras.tree.map_structure(np.asarray, batch) for batch in batches)


def tta_probabilities(predict, images, size, scales):
    """The softmax averaged over image `scales`, each resized bilinearly to `size` (label
    resolution).

    Args:
        predict: `images -> softmax` (`keras_fcn.inference.forward_fn`, flip TTA included or
            not). images: (B, h, w, 3) tensor (or a dict of them, all resized). size: (H, W)
            of the labels.
        scales: factors of the image size (the image is resized bilinearly).

    Returns:
        float32 (B, H, W, C) tensor.

    Example:
        probs = tta_probabilities(forward_fn(model, flip=True), images, (360, 480),
                                  (0.75, 1.0, 1.25))
    """
    height, width = _first(images).shape[1:3]
    total = 0.0
    for scale in scales:
        scaled = images
        if scale != 1.0:
            scaled_size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = keras.tree.map_structure(
                lambda x, s=scaled_size: _resize(ops.cast(x, "float32"), s), images)
        total += _resize(predict(scaled), size)
    return total / len(scales)


def evaluate_model(model, dataset, *, num_classes, ignore_label, flip=False, verbose="auto",
                   max_batches=None, precision=None, jit_compile=None, scales=(1.0,),
                   preprocess=None):
    """Evaluates a segmentation model with the paper's metrics, in numpy.

    Predictions whose size differs from the mask (a model run at reduced resolution on
    full-size labels) are resized bilinearly (logits; probabilities with `flip`) to the mask
    size first, so figures are always at label resolution.

    Args:
        model: logits model (one output; its input may be a dict, e.g. RGB-HHA fusion).
        dataset: `tf.data.Dataset` or `keras.utils.PyDataset` of (images (B, h, w, 3),
            masks (B, H, W)).
        num_classes: number of classes.
        ignore_label: void label, not counted.
        flip: also predict the left-right flipped image and average the probabilities (TTA).
        scales: image scales whose probabilities are averaged at label resolution
            (multi-scale TTA, `tta_probabilities`; with `flip`, each scale is flipped too).
            `(1.0,)` is the plain single-scale evaluation.
        verbose: 1 (or True) a progress bar, 2 a line after the first batch and then every
            `LOG_SECONDS` (for logs, where a bar prints only when it ends), 0 nothing;
            "auto": 1 on a terminal, else 2.
        max_batches: stop after this many batches (a positive int, or None for all).
        precision, jit_compile: how to run the model (``keras_fcn.inference.forward_fn``):
            None keeps the model's own precision and picks XLA by ``keras_fcn.runtime``.
        preprocess: None (the images are what the model takes), or a function applied to
            each batch's images (float32 numpy RGB 0..255) before the model:
            ``keras_fcn.models.preprocessing_fn(model)`` for RGB batches and a model without
            its own ``preprocess`` layer (``tools/evaluate.py`` passes it).

    Returns:
        dict: "pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu",
        "per_class_iu" (list, None for absent classes), "confusion_matrix" (list of lists),
        "num_images".

    Raises:
        ValueError: `num_classes` differs from the model's output channels, the data set
            yields no batch, or the model's output holds NaN or infinity (a diverged model).

    Example:
        results = evaluate_model(model, val_ds, num_classes=11, ignore_label=11)
        results["mean_iu"]
    """
    scales = check_scales(scales)
    num_classes = metrics_lib.check_num_classes(num_classes)
    max_batches = check_positive_int("max_batches", max_batches, allow_none=True)
    channels = _output_channels(model)
    if channels is not None and channels != num_classes:
        raise ValueError(f"`num_classes`={num_classes} differs from the model's {channels} "
                         f"output channels (model {model.name!r})")
    multi_scale = scales != (1.0,)
    predict = forward_fn(model, output="softmax" if flip or multi_scale else "logits",
                         flip=flip, precision=precision, jit_compile=jit_compile)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    images_seen = 0
    total = num_batches(dataset)
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose and verbose != 2 else None
    beat = Heartbeat(LOG_SECONDS) if verbose == 2 else None
    start = time.monotonic()
    for index, (images, masks) in enumerate(iterate_batches(dataset)):
        if max_batches is not None and index >= max_batches:
            break
        masks = np.asarray(masks)
        if preprocess is not None:
            images = preprocess(np.asarray(images, "float32"))
        if multi_scale:
            preds = _classes_at(tta_probabilities(predict, images, masks.shape[1:3], scales),
                                masks.shape[1:3])
        else:
            preds = _classes_at(predict(images), masks.shape[1:3])
        confusion += metrics_lib.confusion_matrix(masks, preds, num_classes, ignore_label)
        images_seen += int(_first(images).shape[0])
        if bar is not None:
            bar.update(index + 1)
        elif beat is not None:  # the first batch at once (it compiles), then every LOG_SECONDS
            line = (lambda done=index + 1: f"evaluating: batch {done}"
                    + (f"/{total}" if total else "")
                    + f" ({(time.monotonic() - start) / done:.2f} s/batch)")
            if index == 0:
                print(line(), flush=True)
                beat.reset()
            else:
                beat.tick(line)
    if bar is not None and total is None:
        print()
    if images_seen == 0:
        raise ValueError("The evaluation data set yielded no batch: nothing to score "
                         f"(max_batches={max_batches})")
    results = metrics_lib.segmentation_metrics(confusion)
    results["per_class_iu"] = [None if np.isnan(v) else float(v) for v in results["per_class_iu"]]
    results["confusion_matrix"] = confusion.tolist()
    results["num_images"] = images_seen
    return results


def format_results(results, class_names=None):
    """Formats evaluation results as a text table (the four metrics, then IU per class).

    Example:
        print(format_results(results, info.class_names))
    """
    lines = [f"{'metric':<24}{'value':>8}"]
    if "confusion_matrix" in results and not np.sum(results["confusion_matrix"]):
        # scores of 0 by convention, not a model that got every pixel wrong
        lines.insert(0, "No labelled pixel was scored (every mask pixel is void, the ignore "
                        "label): the scores below are 0 by convention; check the masks and "
                        "--ignore_label.")
    for key, label in METRICS:
        lines.append(f"{label:<24}{100 * results[key]:>7.2f}%")
    lines.append("")
    lines.append(f"{'class':<24}{'IU':>8}")
    for index, iu in enumerate(results["per_class_iu"]):
        name = class_names[index] if class_names and index < len(class_names) else str(index)
        lines.append(f"{name:<24}" + ("     n/a" if iu is None else f"{100 * iu:>7.2f}%"))
    return "\n".join(lines)
