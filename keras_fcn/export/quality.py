"""The quality gate of a TFLite export: each variant against the Keras float model.

:func:`compare_tflite` measures size, median latency, pixel agreement (overall and where the
float model is sure) and mean IU of every variant on validation images;
:func:`check_thresholds` turns the rows into a pass/fail verdict and :func:`rows_to_markdown`
into a report.

Example:
    rows = compare_tflite("fcn8s.keras", {"int8": "fcn8s_int8.tflite"},
                          read_list("camvid/val.txt"), ignore_label=11)
    check_thresholds(rows, min_agreement=98.0, max_miou_drop=1.0)
    print(rows_to_markdown(rows, "FCN-8s int8"))
"""

import os

import numpy as np
import scipy.special
import tensorflow as tf

from keras_fcn.export.graph import load_model
from keras_fcn.export.images import load_image, load_pair
from keras_fcn.export.litert_runner import TFLiteRunner, check_rgb_image, median_seconds
from keras_fcn.inference.forward import forward_fn
from keras_fcn.labels import IGNORE_LABEL
from keras_fcn.metrics import confusion_matrix, segmentation_metrics
from keras_fcn.models.inspect import num_classes_of, raw_rgb_model

# compare_tflite also reports the agreement on pixels where the float model is sure: its top-2
# softmax probabilities differ by at least this much. On the CamVid-trained models most int8
# flips are at pixels below it (benchmarks/results/export_camvid_trained.md).
CONFIDENT_GAP = 0.1


def keras_predictor(model):
    """A compiled function ``uint8 image (H, W, 3) -> float32 logits (H, W, C)`` of an FCN
    (:func:`keras_fcn.inference.forward.forward_fn` of its raw-RGB model).

    Example:
        keras_predictor("fcn8s.keras")(image).shape
    """
    net = raw_rgb_model(load_model(model))
    logits = forward_fn(net, output="logits")

    def predict(image):
        image = check_rgb_image(image)  # raw RGB 0..255, as the exports take it
        return logits(tf.constant(np.asarray(image, np.float32)[None])).numpy()[0]

    predict.model = net  # forward_fn holds the model weakly: the predictor keeps it alive
    return predict


def _mean_iu(confusion):
    return 100.0 * segmentation_metrics(confusion)["mean_iu"]


def top2_gap(logits):
    """Top-1 minus top-2 softmax probability per pixel of ``(..., C)`` logits (0 = a tie).

    Example:
        >>> top2_gap(np.array([[0.0, 0.0], [5.0, 0.0]]))
        array([0.       , 0.9866143])
    """
    probs = scipy.special.softmax(np.asarray(logits, np.float64), axis=-1)
    if probs.shape[-1] < 2:
        return np.ones(probs.shape[:-1])
    top2 = np.partition(probs, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def agreement_counts(reference_logits, labels, confident_gap=CONFIDENT_GAP):
    """Counts for the pixel agreement of ``labels`` with the argmax of ``reference_logits``.

    Returns:
        ``(agree, pixels, confident_agree, confident_pixels)`` where "confident" pixels are
        those whose reference top-2 softmax gap (:func:`top2_gap`) is at least
        ``confident_gap``: flips elsewhere are pixels the float model itself is unsure of.
    """
    reference_logits = np.asarray(reference_logits)
    labels = np.asarray(labels)
    if labels.shape != reference_logits.shape[:-1]:
        raise ValueError(f"labels shape {labels.shape} must be the logits shape without its "
                         f"class axis {reference_logits.shape[:-1]}")
    same = labels == np.argmax(reference_logits, axis=-1)
    confident = top2_gap(reference_logits) >= confident_gap
    return (int(same.sum()), int(same.size), int((same & confident).sum()),
            int(confident.sum()))


def check_masks(pairs):
    """Refuses ``pairs`` that mix images with and without masks: mean IU would silently be
    skipped. Returns True if every pair has a mask, False if none has one."""
    missing = [image for image, mask in pairs if mask is None]
    if missing and len(missing) < len(pairs):
        raise ValueError(f"{len(missing)} of {len(pairs)} images have no mask, so mean IU "
                         "cannot be measured: give a mask on every line or on none. Images "
                         f"without a mask: {missing[:5]}")
    return not missing


def _accumulate(predict, runners, pairs, size, num_classes, ignore_label, palette):
    """Agreement counts (:func:`agreement_counts`) of each runner with ``predict``, and the
    confusion matrices of both against the masks (all zero when ``pairs`` have none)."""
    has_masks = all(m is not None for _, m in pairs)
    counts = {name: np.zeros(4, np.int64) for name in runners}
    confusion = {name: np.zeros((num_classes, num_classes), np.int64)
                 for name in ["keras_float", *runners]}
    for image_path, mask_path in pairs:
        if has_masks:  # checked as the dataset loader checks them: same size, valid values
            image, mask = load_pair(image_path, mask_path, size, num_classes=num_classes,
                                    ignore_label=ignore_label, palette=palette)
        else:
            image = load_image(image_path, size)
        logits = predict(image)
        labels = {"keras_float": np.argmax(logits, axis=-1)}
        labels.update((name, runner.labels(image)) for name, runner in runners.items())
        for name in runners:
            counts[name] += agreement_counts(logits, labels[name])
        if has_masks:
            for name, ids in labels.items():
                confusion[name] += confusion_matrix(mask, ids, num_classes, ignore_label)
    return counts, confusion


def compare_tflite(model, tflite_paths, pairs, *, num_classes=None, ignore_label=IGNORE_LABEL,
                   num_threads=2, runs=10, keras_runs=3, palette=None):
    """Measures TFLite variants against the Keras model on validation images.

    Images are resized to each TFLite model's input size (bilinear; masks nearest). A mask
    must have its image's size and hold class ids or ``ignore_label`` only, as the dataset
    loader requires (:func:`keras_fcn.export.images.load_pair`).

    Args:
        model: the Keras FCN (model or ``.keras`` path).
        tflite_paths: ``{variant_name: .tflite path or bytes}``.
        pairs: ``[(image_path, mask_path or None)]`` (see :func:`read_list`).
        num_classes: classes for mean IU (default: the model's).
        ignore_label: void label of the masks.
        palette: colours by class id of colour masks (None: index masks); see
            :func:`keras_fcn.export.images.colour_mask_palette`.
        num_threads: interpreter threads.
        runs, keras_runs: timed runs for the median latencies.

    Returns:
        A list of row dicts: ``variant``, ``size_mb``, ``latency_ms``, ``agreement`` (pixel
        agreement of class ids with the Keras model, %), ``confident_agreement`` (the same on
        the pixels where the Keras model's top-2 softmax gap is at least ``CONFIDENT_GAP``;
        the first row also has ``confident_share``, the % of such pixels), ``mean_iu`` and
        ``mean_iu_delta`` (points; ``None`` without masks). The first row is ``keras_float``.

    Raises:
        ValueError: no variant or no pair is given, some images have a mask and others none
            (:func:`check_masks`), an image and its mask differ in size, a mask value is
            neither a class id nor ``ignore_label``, or an image or mask file is damaged (the
            message names it).

    Example:
        rows = compare_tflite(model, {"int8": "m_int8.tflite"}, read_list("val.txt"))
    """
    pairs = list(pairs)
    if not tflite_paths:
        raise ValueError("compare_tflite needs at least one TFLite variant, e.g. {'int8': "
                         f"'m_int8.tflite'}}. Received: tflite_paths={tflite_paths!r}")
    if not isinstance(tflite_paths, dict):
        raise ValueError("compare_tflite takes its TFLite variants as a dict {name: .tflite "
                         "path or bytes}, e.g. {'int8': 'm_int8.tflite'}. Received: "
                         f"tflite_paths of type {type(tflite_paths).__name__}")
    if not pairs:
        raise ValueError("compare_tflite needs at least one (image, mask) pair (mask or None), "
                         f"e.g. read_list('val.txt'). Received: pairs={pairs!r}")
    bad = next((i for i, p in enumerate(pairs) if isinstance(p, (str, os.PathLike))
                or not hasattr(p, "__len__") or len(p) != 2), None)
    if bad is not None:
        raise ValueError("compare_tflite takes (image path, mask path or None) pairs, e.g. "
                         f"read_list('val.txt'). Received: pairs[{bad}] of type "
                         f"{type(pairs[bad]).__name__}" + (f" and length {len(pairs[bad])}"
                                                           if hasattr(pairs[bad], "__len__")
                                                           else ""))
    has_masks = check_masks(pairs)
    keras_model = load_model(model)
    num_classes = num_classes or num_classes_of(keras_model)
    predict = keras_predictor(keras_model)
    runners = {name: TFLiteRunner(p, num_threads) for name, p in tflite_paths.items()}
    sizes = {r.input_size for r in runners.values()}
    if len(sizes) != 1:
        raise ValueError(f"All TFLite variants must have one input size. Received: {sizes}")
    size = sizes.pop()
    counts, confusion = _accumulate(predict, runners, pairs, size, num_classes, ignore_label,
                                    palette)
    # every variant saw the same pixels: take the pixel counts from any of them
    pixels, confident_pixels = (int(v) for v in next(iter(counts.values()))[[1, 3]])
    image = load_image(pairs[0][0], size)
    base_iu = _mean_iu(confusion["keras_float"]) if has_masks else None
    rows = [{"variant": "keras_float", "size_mb": _keras_size_mb(keras_model),
             "latency_ms": 1000 * median_seconds(predict, image, keras_runs),
             "agreement": 100.0, "confident_agreement": 100.0,
             "confident_share": 100.0 * confident_pixels / pixels,
             "mean_iu": base_iu, "mean_iu_delta": 0.0 if has_masks else None}]
    for name, runner in runners.items():
        iu = _mean_iu(confusion[name]) if has_masks else None
        path = tflite_paths[name]
        size_bytes = len(path) if isinstance(path, (bytes, bytearray)) else os.path.getsize(path)
        rows.append({"variant": name, "size_mb": size_bytes / 1e6,
                     "latency_ms": 1000 * runner.latency(image, runs),
                     "agreement": 100.0 * counts[name][0] / pixels,
                     "confident_agreement": (100.0 * counts[name][2] / confident_pixels
                                             if confident_pixels else None),
                     "mean_iu": iu,
                     "mean_iu_delta": (iu - base_iu) if has_masks else None})
    for row in rows:
        row["speedup"] = rows[0]["latency_ms"] / row["latency_ms"]
        row["size_ratio"] = row["size_mb"] / rows[0]["size_mb"]
    return rows


def _keras_size_mb(model):
    """Float32 weight bytes of the Keras model (what a .keras file stores)."""
    return sum(int(np.prod(w.shape)) * 4 for w in model.weights) / 1e6


def check_thresholds(rows, *, min_agreement=None, max_miou_drop=None, max_size_ratio=None,
                     min_speedup=None, min_confident_agreement=None):
    """Returns the list of failures (empty when every TFLite row meets the thresholds).

    Args:
        rows: from :func:`compare_tflite`.
        min_agreement: minimum pixel agreement with Keras float, in %.
        max_miou_drop: maximum mean IU drop against Keras float, in points.
        max_size_ratio: maximum size relative to the Keras float weights.
        min_speedup: minimum speed-up over Keras float.
        min_confident_agreement: minimum agreement (%) on the pixels where the float model is
            sure (``confident_agreement``, see :func:`compare_tflite`); rows without such a
            pixel fail it (nothing was checked).

    Raises:
        ValueError: ``max_miou_drop`` is given but the rows have no mean IU (the images had
            no masks): the gate could not be applied.
    """
    if max_miou_drop is not None and any(r["mean_iu_delta"] is None for r in rows[1:]):
        raise ValueError(f"max_miou_drop={max_miou_drop} needs the mean IU of each variant, "
                         "which compare_tflite measures only when every image has a mask; "
                         "these rows have none.")
    failures = []
    for row in rows[1:]:
        name = row["variant"]
        if min_agreement is not None and row["agreement"] < min_agreement:
            failures.append(f"{name}: agreement {row['agreement']:.2f}% < {min_agreement}%")
        sure = row.get("confident_agreement")
        if min_confident_agreement is not None and sure is None:
            # No pixel where the float model is sure (an untrained model): nothing to gate on,
            # which must not pass as a success.
            failures.append(f"{name}: no pixel where the float model is sure, so the agreement "
                            f"there (min_confident_agreement={min_confident_agreement}%) "
                            "cannot be checked")
        elif min_confident_agreement is not None and sure < min_confident_agreement:
            failures.append(f"{name}: agreement where the float model is sure {sure:.2f}% < "
                            f"{min_confident_agreement}%")
        delta = row["mean_iu_delta"]
        if max_miou_drop is not None and delta is not None and -delta > max_miou_drop:
            failures.append(f"{name}: mean IU drop {-delta:.2f} points > {max_miou_drop}")
        if max_size_ratio is not None and row["size_ratio"] > max_size_ratio:
            failures.append(f"{name}: size ratio {row['size_ratio']:.3f} > {max_size_ratio}")
        if min_speedup is not None and row["speedup"] < min_speedup:
            failures.append(f"{name}: speed-up {row['speedup']:.2f}x < {min_speedup}x")
    return failures


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def rows_to_markdown(rows, title=None, notes=()):
    """A Markdown table of :func:`compare_tflite` rows (plus a title and notes)."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| variant | size (MB) | size ratio | latency (ms) | speed-up | agreement (%) "
              "| agreement where sure (%) | mean IU | mean IU delta |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['size_mb']:.2f} | {r['size_ratio']:.3f} | "
            f"{r['latency_ms']:.1f} | {r['speedup']:.2f}x | {r['agreement']:.3f} | "
            f"{_fmt(r.get('confident_agreement'), '.3f')} | "
            f"{_fmt(r['mean_iu'], '.2f')} | {_fmt(r['mean_iu_delta'], '+.2f')} |")
    if rows and rows[0].get("confident_share") is not None:
        notes = [f"agreement where sure: on the pixels where the Keras float model's top-2 "
                 f"softmax probabilities differ by at least {CONFIDENT_GAP} "
                 f"({rows[0]['confident_share']:.1f}% of the pixels)", *notes]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
