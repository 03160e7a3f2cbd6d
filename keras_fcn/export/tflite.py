"""Convert a trained FCN to TFLite (float32, float16, int8) and export it with its sidecar.

TFLite models are converted from a fixed batch-1 ``height x width`` signature, so every crop
is a static slice, and only builtin ops are allowed (no Flex/select-TF ops). The op list of the
result is checked (:func:`keras_fcn.export.check_tflite_ops`). Every exported model takes raw
``uint8`` RGB images (the preprocessing is inside the graph); its sidecar ``<name>.json``
describes the classes, palette, normalization and the input/output tensors.

Example:
    export_tflite("fcn8s_camvid.keras", "export/fcn8s_int8.tflite", input_size=(360, 480),
                  quantization="int8", representative_data="camvid/train.txt")
"""

import itertools
import logging
import os
import tempfile
import time
import warnings

import tensorflow as tf

from keras_fcn import io
from keras_fcn._checks import check_choice, check_positive_int
from keras_fcn.export.flatbuffer import check_tflite_ops
from keras_fcn.export.graph import (check_backend, check_input_size, class_ids, label_dtype,
                                    load_model, write_graph)
from keras_fcn.export.images import FEW_CALIBRATION_IMAGES, calibration_images
from keras_fcn.export.litert_runner import TFLiteRunner
from keras_fcn.export.metadata import export_labels
from keras_fcn.labels import ModelLabels
from keras_fcn.models.inspect import num_classes_of, raw_rgb_model

log = logging.getLogger("keras_fcn")

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "int8_per_tensor")
# Full-integer variants (calibrated activations). "int8" quantizes each conv kernel per output
# channel (the converter's default); "int8_per_tensor" uses one scale per kernel, which drops
# the per-channel scale/zero-point tables (12 bytes per channel, for weights and biases: 15%
# of a MobileNetV2 FCN file) and on the CamVid models measured here agrees with the float model
# at least as well (benchmarks/results/export_camvid_trained.md).
FULL_INT8 = ("int8", "int8_per_tensor")
INT8_IO_TYPES = ("uint8", "int8")
FEW_CALIBRATION_WARNING = "Few calibration images"  # starts the warning (tools/export.py says it)


def save_tflite_graph(model, path, *, input_size, quantization="float32",
                      include_argmax=False):
    """Writes the SavedModel that :func:`convert_to_tflite` hands to the TFLite converter.

    Its ``serve`` function takes batch-1 ``images`` of ``input_size``: uint8 for the float
    variants, float32 RGB 0..255 for full int8 (the converter then makes the input uint8/int8
    with its own scale), and returns ``{"logits": ...}`` or ``{"class_ids": ...}``. Write it
    yourself to try converter settings that :func:`convert_to_tflite` does not offer.

    Example:
        save_tflite_graph(model, "graph", input_size=(360, 480), quantization="int8")
        converter = tf.lite.TFLiteConverter.from_saved_model("graph")
    """
    check_backend("TFLite export")
    height, width = check_input_size(input_size, allow_none=False)
    check_choice("quantization", quantization, QUANTIZATIONS)
    net = raw_rgb_model(load_model(model))
    ids_dtype = label_dtype(num_classes_of(net))
    full_int8 = quantization in FULL_INT8

    def serve(images):
        logits = net(images if full_int8 else tf.cast(images, tf.float32), training=False)
        return {"class_ids": class_ids(logits, ids_dtype)} if include_argmax else {
            "logits": logits}

    spec = tf.TensorSpec([1, height, width, 3], tf.float32 if full_int8 else tf.uint8,
                         name="images")
    return write_graph(serve, [spec], net, path)


def _disable_per_channel(converter):
    """Asks the converter for one scale per kernel (a private converter attribute, checked)."""
    if not hasattr(converter, "_experimental_disable_per_channel"):
        raise NotImplementedError(
            f"This TensorFlow ({tf.__version__}) converter has no per-channel switch "
            "(_experimental_disable_per_channel); use quantization='int8' instead.")
    converter._experimental_disable_per_channel = True


def pin_input_range(image):
    """Sets the first pixel of a ``(1, H, W, 3)`` calibration image to 0 and the last to 255.

    The converter takes the quantization of the uint8/int8 input from the range of the
    calibration images: pinned to 0..255, the input scale is 1 (the raw pixel values) whatever
    the calibration photos hold (dark ones included), and two corner pixels barely change
    the activation ranges.
    """
    image = image.copy()
    image[0, 0, 0, :] = 0.0
    image[0, -1, -1, :] = 255.0
    return image


def _configure(converter, quantization, representative, int8_io, include_argmax):
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in FULL_INT8:
        if quantization == "int8_per_tensor":
            _disable_per_channel(converter)
        converter.representative_dataset = representative
        io_type = tf.uint8 if int8_io == "uint8" else tf.int8
        converter.inference_input_type = io_type
        if not include_argmax:
            converter.inference_output_type = io_type
        # The argmax/cast tail is integer-only but not an "int8 kernel": allow builtins too.
        builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
            [tf.lite.OpsSet.TFLITE_BUILTINS] if include_argmax else [])
    converter.target_spec.supported_ops = builtins
    return converter


def convert_to_tflite(model, *, input_size, quantization="float32", representative_data=None,
                      num_calibration_images=100, int8_io="uint8", include_argmax=False):
    """Converts an FCN to a TFLite flatbuffer from a fixed batch-1 ``input_size`` signature.

    Tracing at a static shape makes every crop a static slice (no ``SHAPE`` ops); only
    builtin ops are allowed (``TFLITE_BUILTINS`` / ``TFLITE_BUILTINS_INT8``), never Flex.

    Args:
        model: a trained FCN (``keras.Model`` or ``.keras`` path); preprocessing is added
            inside if it has none (:func:`keras_fcn.export.raw_rgb_model`).
        input_size: ``(height, width)`` of the converted model.
        quantization: ``"float32"``, ``"float16"`` (float16 weights), ``"dynamic_int8"``
            (int8 weights, float activations), ``"int8"`` (full integer, calibrated, kernels
            quantized per output channel) or ``"int8_per_tensor"`` (the same with one scale per
            kernel: smaller file, see ``FULL_INT8``).
        representative_data: for full int8: raw RGB photos 0..255, see
            :func:`keras_fcn.export.calibration_images` (data that is plainly not photos is
            refused). The first pixel of each is set to 0 and the last to 255
            (:func:`pin_input_range`), so the input scale is 1 whatever their brightness.
        num_calibration_images: images used for calibration (>= 1).
        int8_io: for ``"int8"``: ``"uint8"`` or ``"int8"`` input (and logits output) type.
        include_argmax: output ``class_ids`` (uint8 label map) instead of ``logits``.

    Returns:
        The ``.tflite`` model as bytes. Input ``images``: uint8 ``(1, H, W, 3)`` RGB (for
        ``"int8"``: uint8/int8 with the quantization parameters of the input tensor, scale ~1).

    Warns:
        UserWarning: full int8 calibrated on fewer than ``FEW_CALIBRATION_IMAGES`` images (the
        activation ranges may clip what other photos hold).

    Example:
        flatbuffer = convert_to_tflite(model, input_size=(360, 480), quantization="float16")
    """
    return _convert(model, input_size, quantization, representative_data,
                    num_calibration_images, int8_io, include_argmax)[0]


def _convert(model, input_size, quantization, representative_data, num_calibration_images,
             int8_io, include_argmax):
    """:func:`convert_to_tflite`'s flatbuffer and the number of images it calibrated on
    (None unless full int8)."""
    check_backend("TFLite export")
    size = check_input_size(input_size, allow_none=False)
    check_choice("quantization", quantization, QUANTIZATIONS)
    check_choice("int8_io", int8_io, INT8_IO_TYPES)
    check_positive_int("num_calibration_images", num_calibration_images)
    if quantization in FULL_INT8 and representative_data is None:
        raise ValueError("Full int8 quantization needs representative_data (a tf.data dataset, "
                         "a folder or list file of images). Received: representative_data=None")
    model = load_model(model)
    images, fed = None, []
    if quantization in FULL_INT8:  # the first image, checked before the slow trace
        images = calibration_images(representative_data, size, num_calibration_images)
        first = next(images)

    def representative():
        for image in itertools.chain([first], images):
            fed.append(1)
            yield [pin_input_range(image.astype("float32"))]

    with tempfile.TemporaryDirectory(prefix="keras_fcn_tflite_") as tmp:
        save_tflite_graph(model, tmp, input_size=size, quantization=quantization,
                          include_argmax=include_argmax)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        _configure(converter, quantization, representative, int8_io, include_argmax)
        flatbuffer = converter.convert()
    if images is None:
        return flatbuffer, None
    if len(fed) < FEW_CALIBRATION_IMAGES:
        warnings.warn(f"{FEW_CALIBRATION_WARNING}: int8 calibrated on {len(fed)} image(s) "
                      f"(fewer than {FEW_CALIBRATION_IMAGES}): its activation ranges may clip "
                      "what other photos hold; give representative_data ~100 photos",
                      stacklevel=3)
    return flatbuffer, len(fed)


def export_tflite(model, path, *, input_size, quantization="float32", representative_data=None,
                  num_calibration_images=100, int8_io="uint8", include_argmax=False,
                  labels=None, class_names=None, palette=None, ignore_label=None,
                  overwrite=False):
    """Converts (:func:`convert_to_tflite`), checks the ops, and writes ``path`` and its
    sidecar ``path[:-7] + ".json"`` atomically.

    Args:
        model, input_size, quantization, representative_data, num_calibration_images,
            int8_io, include_argmax: see :func:`convert_to_tflite`.
        path: the ``.tflite`` file.
        labels, class_names, palette, ignore_label: the class names, colours and void label
            written to the sidecar (see :func:`keras_fcn.export.export_labels`; a ``.keras``
            path's own labels are found).
        overwrite: replace existing files.

    Returns:
        The metadata dict written to the sidecar (includes ``ops``, the input/output tensor
        details with quantization parameters and, for full int8, ``calibration_images``: how
        many images calibrated it).

    Example:
        export_tflite(model, "fcn8s_fp16.tflite", input_size=(360, 480),
                      quantization="float16", class_names=CAMVID_CLASSES)
    """
    check_backend("TFLite export")
    if not os.fspath(path).endswith(".tflite"):
        raise ValueError(f"TFLite path must end with .tflite. Received: path={path!r}")
    sidecar = ModelLabels.sidecar_path(path)
    for target in (path, sidecar):
        io.check_writable(target, overwrite)
    source = load_model(model)
    labels = export_labels(source, labels, source=model, class_names=class_names,
                           palette=palette, ignore_label=ignore_label)
    start = time.perf_counter()
    flatbuffer, calibrated = _convert(source, input_size, quantization, representative_data,
                                      num_calibration_images, int8_io, include_argmax)
    seconds = time.perf_counter() - start
    ops = check_tflite_ops(flatbuffer)
    runner = TFLiteRunner(flatbuffer)
    io.write_bytes(path, flatbuffer, overwrite)
    metadata = labels.write(sidecar, overwrite=overwrite, extra={
        "artifact": "tflite", "quantization": quantization, "input": runner.input_info(),
        "output": runner.output_info(),
        "output_kind": "class_ids" if include_argmax else "logits", "ops": ops,
        "conversion_seconds": round(seconds, 1), "size_bytes": len(flatbuffer),
        **({"calibration_images": calibrated} if calibrated is not None else {})})
    log.info("Wrote %s (%.1f MB, %s) in %.0f s", path, len(flatbuffer) / 1e6, quantization,
             seconds)
    return metadata
