"""Export trained FCNs for deployment: SavedModel and TFLite (float32, float16, int8).

Every exported model takes raw ``uint8`` RGB images (the preprocessing is inside the graph)
and carries its metadata (class names, palette, normalization, input/output description) in a
sidecar JSON file: ``<name>.json`` next to each ``.tflite`` and ``assets/keras_fcn.json`` in a
SavedModel directory.

TFLite models are converted from a fixed batch-1 ``height x width`` signature, so every crop
is a static slice, and only builtin ops are allowed (no Flex/select-TF ops). The op list of the
result is checked (:func:`check_tflite_ops`).

Example:
    >>> model = keras.models.load_model("fcn8s_camvid.keras")
    >>> export_saved_model(model, "export/fcn8s")
    >>> export_tflite(model, "export/fcn8s_int8.tflite", input_size=(360, 480),
    ...               quantization="int8", representative_data="camvid/val")
"""

import json
import logging
import os
import shutil
import struct
import tempfile
import time

import numpy as np

import keras
import tensorflow as tf

from keras_fcn.models import with_preprocessing
from keras_fcn.weights import load_model_file

log = logging.getLogger("keras_fcn")

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "int8_per_tensor")
# Full-integer variants (calibrated activations). "int8" quantizes each conv kernel per output
# channel (the converter's default); "int8_per_tensor" uses one scale per kernel, which drops
# the per-channel scale/zero-point tables (12 bytes per channel, for weights and biases: 15%
# of a MobileNetV2 FCN file) and on the CamVid models measured here agrees with the float model
# at least as well (benchmarks/results/export_camvid_trained.md).
FULL_INT8 = ("int8", "int8_per_tensor")
INT8_IO_TYPES = ("uint8", "int8")
# Ops whose presence means that shapes are computed at run time.
DYNAMIC_SHAPE_OPS = ("SHAPE", "RANK", "BROADCAST_ARGS", "DYNAMIC_UPDATE_SLICE", "WHERE")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
METADATA_VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier of TFLite models, at byte 4
SAVED_MODEL_METADATA = os.path.join("assets", "keras_fcn.json")
MOBILENET_V2_LAYER = "block_13_expand_relu"
# compare_tflite also reports the agreement on pixels where the float model is sure: its top-2
# softmax probabilities differ by at least this much. On the CamVid-trained models most int8
# flips are at pixels below it (benchmarks/results/export_camvid_trained.md).
CONFIDENT_GAP = 0.1


# ------------------------------------------------------------------------------------------
# Models and metadata
# ------------------------------------------------------------------------------------------


def load_model(model):
    """Returns a ``keras.Model`` from a model or a ``.keras`` path.

    A damaged ``.keras`` file raises a ValueError naming it
    (:func:`keras_fcn.weights.load_model_file`).

    Example:
        >>> model = load_model("runs/fcn8s.keras")
    """
    if isinstance(model, keras.Model):
        return model
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path!r}")
    return load_model_file(path)


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def normalization_of(model):
    """Describes the input normalization of an FCN (done inside the exported graphs).

    Returns:
        A dict: ``{"type": "caffe_bgr_mean", "mean_bgr": [...]}`` for the VGG16 models or
        ``{"type": "scale", "scale": 1/127.5, "offset": -1.0}`` for MobileNetV2.
    """
    if _has_layer(model, MOBILENET_V2_LAYER):
        return {"type": "scale", "scale": 1.0 / 127.5, "offset": -1.0,
                "formula": "x / 127.5 - 1 on RGB"}
    from keras_fcn.layers import FCN_MEAN_BGR

    mean = next((l.mean_bgr for l in model.layers if hasattr(l, "mean_bgr")), FCN_MEAN_BGR)
    return {"type": "caffe_bgr_mean", "mean_bgr": [float(m) for m in mean],
            "formula": "RGB -> BGR, minus mean_bgr, no scaling"}


def raw_rgb_model(model):
    """Returns a model taking raw RGB in [0, 255], adding the preprocessing if it is missing.

    A model with a ``preprocess`` layer is returned as is; a VGG16 FCN is wrapped with
    :func:`keras_fcn.with_preprocessing`; a MobileNetV2 FCN with its ``x / 127.5 - 1`` scaling.

    Example:
        >>> deployable = raw_rgb_model(trained)  # trained on preprocess_input(images)
    """
    if _has_layer(model, "preprocess"):
        return model
    if _has_layer(model, MOBILENET_V2_LAYER):
        from keras_fcn.models.mobilenet_v2 import mobilenet_v2_preprocessing

        inputs = keras.Input(model.inputs[0].shape[1:], name="image")
        outputs = model(mobilenet_v2_preprocessing()(inputs))
        return keras.Model(inputs, outputs, name=f"{model.name}_raw_rgb")
    return with_preprocessing(model, input_dtype="float32", name=f"{model.name}_raw_rgb")


def num_classes_of(model):
    """The number of classes (last axis of the output) of an FCN."""
    return int(model.outputs[0].shape[-1])


def label_dtype(num_classes):
    """``uint8`` class ids when they fit (<= 256 classes), else ``int32``."""
    return tf.uint8 if num_classes <= 256 else tf.int32


def default_palette(num_classes):
    """The PASCAL VOC colour map, one RGB colour per class.

    Example:
        >>> default_palette(3)
        [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    from keras_fcn.datasets import voc_palette

    return [list(colour) for colour in voc_palette(num_classes)]


def make_metadata(model, *, class_names=None, palette=None, ignore_label=None, extra=None):
    """The sidecar description of an exported model.

    Args:
        model: the Keras FCN (for the class count, name and normalization).
        class_names: names by class id; default ``class_0 ...``.
        palette: RGB colours by class id; default :func:`default_palette`.
        ignore_label: the void label of the training data, if any (informative).
        extra: more keys to add (input/output details, quantization, ops).

    Returns:
        A JSON-serializable dict.
    """
    num_classes = num_classes_of(model)
    class_names = list(class_names) if class_names is not None else [
        f"class_{i}" for i in range(num_classes)]
    palette = [list(map(int, c)) for c in palette] if palette is not None else default_palette(
        num_classes)
    for what, values in (("class_names", class_names), ("palette", palette)):
        if len(values) != num_classes:
            raise ValueError(f"{what} must have one entry per class ({num_classes}). "
                             f"Received {len(values)}: {what}={values!r}")
    import keras_fcn

    metadata = {
        "format": "keras_fcn", "version": METADATA_VERSION,
        "keras_fcn_version": keras_fcn.__version__, "model_name": model.name,
        "num_classes": num_classes, "labels": list(range(num_classes)),
        "class_names": class_names, "palette": palette, "ignore_label": ignore_label,
        "normalization": dict(normalization_of(model), applied="inside the model"),
        "input_color": "RGB", "input_range": [0, 255],
    }
    metadata.update(extra or {})
    return metadata


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def _check_writable(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True (--overwrite) to replace it.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def write_atomic(path, data, overwrite=False):
    """Writes bytes or text to ``path`` through a temporary file and a rename.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    _check_writable(path, overwrite)
    mode = "w" if isinstance(data, str) else "wb"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path, obj, overwrite=False):
    """Writes ``obj`` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite)


def _replace_dir(tmp_dir, path):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp_dir, path)


# ------------------------------------------------------------------------------------------
# SavedModel
# ------------------------------------------------------------------------------------------


def _check_size(input_size, allow_none=True):
    if input_size is None and allow_none:
        return (None, None)
    size = tuple(input_size) if isinstance(input_size, (tuple, list)) else None
    if size is None or len(size) != 2 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in size):
        raise ValueError("input_size must be (height, width) with positive integers"
                         f"{' or None' if allow_none else ''}. Received: input_size={input_size!r}")
    return size


def _archive(fn, input_signature, model):
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", fn, input_signature=input_signature)
    return archive


def export_saved_model(model, export_dir, *, input_size=None, include_probabilities=True,
                       class_names=None, palette=None, ignore_label=None, overwrite=False):
    """Writes a SavedModel whose ``serving_default`` signature segments uint8 RGB images.

    Signature: ``images`` uint8 ``(N, H, W, 3)`` -> ``class_ids`` ``(N, H, W)`` (uint8, or
    int32 for more than 256 classes) and, if ``include_probabilities``, ``probabilities``
    float32 ``(N, H, W, C)``. The preprocessing is inside the graph.

    Args:
        model: a trained FCN (``keras.Model`` or ``.keras`` path).
        export_dir: the SavedModel directory (written to a temporary one, then renamed).
        input_size: ``None`` for any image size, or ``(height, width)`` for a fixed size.
        include_probabilities: also return the softmax probabilities.
        class_names, palette, ignore_label: metadata (see :func:`make_metadata`).
        overwrite: replace an existing ``export_dir``.

    Returns:
        The metadata dict, also written to ``export_dir/assets/keras_fcn.json``.

    Example:
        >>> export_saved_model(model, "export/fcn8s")
        >>> served = tf.saved_model.load("export/fcn8s").signatures["serving_default"]
        >>> served(images=tf.zeros((1, 360, 480, 3), tf.uint8))["class_ids"].shape
        TensorShape([1, 360, 480])
    """
    height, width = _check_size(input_size)
    source = load_model(model)
    net = raw_rgb_model(source)
    ids_dtype = label_dtype(num_classes_of(net))

    def serve(images):
        logits = net(tf.cast(images, tf.float32), training=False)
        outputs = {"class_ids": tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                        ids_dtype)}
        if include_probabilities:
            outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return outputs

    _check_writable(export_dir, overwrite)
    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")
    metadata = make_metadata(source, class_names=class_names, palette=palette,
                             ignore_label=ignore_label, extra={
                                 "artifact": "saved_model", "signature": "serving_default",
                                 "input": {"name": "images", "dtype": "uint8",
                                           "shape": [None, height, width, 3]},
                                 "outputs": {"class_ids": ids_dtype.name, **(
                                     {"probabilities": "float32"} if include_probabilities
                                     else {})}})
    parent = os.path.dirname(os.path.abspath(export_dir))
    tmp_dir = tempfile.mkdtemp(dir=parent, prefix=".saved_model_tmp_")
    try:
        _archive(serve, [spec], net).write_out(tmp_dir, verbose=False)
        os.makedirs(os.path.join(tmp_dir, "assets"), exist_ok=True)
        write_json(os.path.join(tmp_dir, SAVED_MODEL_METADATA), metadata, overwrite=True)
        _replace_dir(tmp_dir, export_dir)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir)
    return metadata


# ------------------------------------------------------------------------------------------
# Representative data
# ------------------------------------------------------------------------------------------


def read_list(path):
    """Reads a folder of images or a list file of ``image [mask]`` lines (relative paths are
    relative to the list file's folder).

    Returns:
        A list of ``(image_path, mask_path or None)``.

    Example:
        >>> read_list("camvid/val.txt")[0]
        ('camvid/val/0016E5_07959.png', 'camvid/valannot/0016E5_07959.png')
    """
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
        return [(os.path.join(path, n), None) for n in names]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image folder or list file not found: {path!r}")
    root = os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) > 2:
                raise ValueError(f"{path}:{number}: expected 'image [mask]'. Received: {line!r}")
            paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in fields]
            pairs.append((paths[0], paths[1] if len(paths) > 1 else None))
    if not pairs:
        raise ValueError(f"List file {path!r} has no entries.")
    return pairs


def load_image(path, size=None):
    """Reads an RGB image as uint8 ``(H, W, 3)``, resized (bilinear) to ``size=(h, w)``."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def load_mask(path, size=None):
    """Reads an index mask as int32 ``(H, W)``, resized (nearest) to ``size=(h, w)``."""
    from PIL import Image

    with Image.open(path) as mask:
        if mask.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"Mask {path!r} must be a single-channel index image. "
                             f"Received mode={mask.mode!r}")
        if size is not None and mask.size != (size[1], size[0]):
            mask = mask.resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(mask, dtype=np.int32)


def _resize_images(images, size):
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[None]
    images = tf.cast(images, tf.float32)
    if tuple(images.shape[1:3]) != tuple(size):
        images = tf.image.resize(images, size, method="bilinear")
    return tf.clip_by_value(images, 0.0, 255.0)


def calibration_images(data, input_size, num_images=100):
    """Yields float32 ``(1, H, W, 3)`` raw RGB images (0..255) for int8 calibration.

    Args:
        data: a ``tf.data.Dataset`` of images (``(H, W, 3)`` or batched, RGB 0..255, or
            ``(image, mask)`` tuples), a folder of images, a list file (see
            :func:`read_list`), or an iterable of arrays.
        input_size: ``(height, width)``; images are resized (bilinear) to it.
        num_images: how many images to use at most.

    Example:
        >>> next(calibration_images("camvid/val", (360, 480))).shape
        (1, 360, 480, 3)
    """
    if isinstance(data, (str, os.PathLike)):
        items = (load_image(p, input_size) for p, _ in read_list(os.fspath(data)))
    elif isinstance(data, tf.data.Dataset):
        items = data.as_numpy_iterator()
    else:
        items = iter(data)
    count = 0
    for item in items:
        image = item[0] if isinstance(item, (tuple, list)) else item
        for one in _resize_images(image, input_size).numpy():
            yield one[None]
            count += 1
            if count >= num_images:
                return
    if count == 0:
        raise ValueError(f"The representative data gave no images. Received: data={data!r}")


# ------------------------------------------------------------------------------------------
# TFLite
# ------------------------------------------------------------------------------------------


def _tflite_fn(net, quantization, include_argmax, ids_dtype):
    """The function converted to TFLite: uint8 in for float models, float in for full int8
    (the converter then makes the input uint8/int8 with its own scale)."""

    def head(logits):
        if not include_argmax:
            return {"logits": logits}
        return {"class_ids": tf.cast(tf.argmax(logits, -1, output_type=tf.int32), ids_dtype)}

    if quantization in FULL_INT8:
        return lambda images: head(net(images, training=False))
    return lambda images: head(net(tf.cast(images, tf.float32), training=False))


def _configure(converter, quantization, representative, int8_io, include_argmax):
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in FULL_INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
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


def _disable_per_channel(converter):
    """Asks the converter for one scale per kernel (a private converter attribute, checked)."""
    if not hasattr(converter, "_experimental_disable_per_channel"):
        raise NotImplementedError(
            f"This TensorFlow ({tf.__version__}) converter has no per-channel switch "
            "(_experimental_disable_per_channel); use quantization='int8' instead.")
    converter._experimental_disable_per_channel = True


def convert_to_tflite(model, *, input_size, quantization="float32", representative_data=None,
                      num_calibration_images=100, int8_io="uint8", include_argmax=False):
    """Converts an FCN to a TFLite flatbuffer from a fixed batch-1 ``input_size`` signature.

    Tracing at a static shape makes every crop a static slice (no ``SHAPE`` ops); only
    builtin ops are allowed (``TFLITE_BUILTINS`` / ``TFLITE_BUILTINS_INT8``), never Flex.

    Args:
        model: a trained FCN (``keras.Model`` or ``.keras`` path); preprocessing is added
            inside if it has none (:func:`raw_rgb_model`).
        input_size: ``(height, width)`` of the converted model.
        quantization: ``"float32"``, ``"float16"`` (float16 weights), ``"dynamic_int8"``
            (int8 weights, float activations), ``"int8"`` (full integer, calibrated, kernels
            quantized per output channel) or ``"int8_per_tensor"`` (the same with one scale per
            kernel: smaller file, see ``FULL_INT8``).
        representative_data: for full int8: see :func:`calibration_images`.
        num_calibration_images: images used for calibration.
        int8_io: for ``"int8"``: ``"uint8"`` or ``"int8"`` input (and logits output) type.
        include_argmax: output ``class_ids`` (uint8 label map) instead of ``logits``.

    Returns:
        The ``.tflite`` model as bytes. Input ``images``: uint8 ``(1, H, W, 3)`` RGB (for
        ``"int8"``: uint8/int8 with the quantization parameters of the input tensor, scale ~1).

    Example:
        >>> flatbuffer = convert_to_tflite(model, input_size=(360, 480), quantization="float16")
    """
    height, width = _check_size(input_size, allow_none=False)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. "
                         f"Received: quantization={quantization!r}")
    if int8_io not in INT8_IO_TYPES:
        raise ValueError(f"int8_io must be one of {INT8_IO_TYPES}. Received: int8_io={int8_io!r}")
    if quantization in FULL_INT8 and representative_data is None:
        raise ValueError("Full int8 quantization needs representative_data (a tf.data dataset, "
                         "a folder or list file of images). Received: representative_data=None")
    net = raw_rgb_model(load_model(model))
    ids_dtype = label_dtype(num_classes_of(net))
    dtype = tf.float32 if quantization in FULL_INT8 else tf.uint8
    spec = tf.TensorSpec([1, height, width, 3], dtype, name="images")
    fn = _tflite_fn(net, quantization, include_argmax, ids_dtype)

    def representative():
        for image in calibration_images(representative_data, (height, width),
                                        num_calibration_images):
            yield [image.astype("float32")]

    with tempfile.TemporaryDirectory(prefix="keras_fcn_tflite_") as tmp:
        _archive(fn, [spec], net).write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        _configure(converter, quantization, representative, int8_io, include_argmax)
        return converter.convert()


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _tflite_name(tflite_model):
    """How errors name a model: its path, or the size of an in-memory flatbuffer."""
    if isinstance(tflite_model, (bytes, bytearray)):
        return f"TFLite flatbuffer ({len(tflite_model)} bytes)"
    return f"TFLite file '{os.fspath(tflite_model)}'"


def _read_tflite(tflite_model, read):
    """Returns ``read(root)`` of the parsed flatbuffer; a damaged model raises a ValueError
    naming it (the flatbuffers reader raises ``struct.error`` or ``IndexError``)."""
    data = _read_bytes(tflite_model)
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{_tflite_name(tflite_model)} is not a TFLite model: it has no "
                         f"{TFLITE_IDENTIFIER!r} identifier at byte 4 ({len(data)} bytes)")
    try:
        return read(_schema().Model.GetRootAsModel(data, 0))
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{_tflite_name(tflite_model)} is not a valid TFLite model (truncated "
                         f"or damaged): {type(error).__name__}: {error}") from error


def tflite_ops(tflite_model):
    """Counts the ops of a TFLite model by parsing its flatbuffer (works for Flex models too).

    Args:
        tflite_model: bytes or a ``.tflite`` path.

    Returns:
        ``{op_name: count}`` over all subgraphs; custom ops by their custom code
        (Flex ops are ``Flex<TfOp>``).

    Raises:
        ValueError: the file is not a TFLite model or is damaged (the message names it).

    Example:
        >>> tflite_ops(flatbuffer)
        {'CAST': 1, 'CONV_2D': 16, 'PAD': 1, ...}
    """
    return _read_tflite(tflite_model, _count_ops)


def _count_ops(root):
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    counts = {}
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            name = codes[graph.Operators(o).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def dynamic_tensors(tflite_model):
    """Names of the tensors whose shape signature has an unknown (-1) dimension."""
    return _read_tflite(tflite_model, _dynamic_tensor_names)


def _dynamic_tensor_names(root):
    found = []
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            signature = tensor.ShapeSignatureAsNumpy()
            if not isinstance(signature, int) and np.any(signature < 0):
                found.append(tensor.Name().decode())
    return found


def check_tflite_ops(tflite_model, *, allow_dynamic_shapes=False):
    """Checks that a TFLite model runs on the builtin runtime with static shapes.

    Args:
        tflite_model: bytes or a ``.tflite`` path.
        allow_dynamic_shapes: accept ``SHAPE``-like ops and unknown dimensions.

    Returns:
        The op counts (:func:`tflite_ops`).

    Raises:
        ValueError: the model has Flex (select TF) or custom ops, or dynamic-shape ops /
            tensors; the message lists them and the full op list.

    Example:
        >>> check_tflite_ops("fcn8s_int8.tflite")
        {'ADD': 2, 'CONV_2D': 16, ...}
    """
    ops = tflite_ops(tflite_model)
    flex = sorted(op for op in ops if op.startswith("Flex") or not op.isupper())
    problems = []
    if flex:
        problems.append(f"Flex/custom ops {flex} (need the select-TF runtime)")
    if not allow_dynamic_shapes:
        dynamic = sorted(op for op in ops if op in DYNAMIC_SHAPE_OPS)
        if dynamic:
            problems.append(f"dynamic-shape ops {dynamic}")
        tensors = dynamic_tensors(tflite_model)
        if tensors:
            problems.append(f"{len(tensors)} tensors of unknown shape (e.g. {tensors[:3]})")
    if problems:
        raise ValueError("TFLite model is not deployable: " + "; ".join(problems)
                         + f". Op list: {ops}")
    return ops


def _read_bytes(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray)):
        return bytes(tflite_model)
    with open(os.fspath(tflite_model), "rb") as f:
        return f.read()


def export_tflite(model, path, *, input_size, quantization="float32", representative_data=None,
                  num_calibration_images=100, int8_io="uint8", include_argmax=False,
                  class_names=None, palette=None, ignore_label=None, overwrite=False):
    """Converts (:func:`convert_to_tflite`), checks the ops, and writes ``path`` and its
    sidecar ``path[:-7] + ".json"`` atomically.

    Returns:
        The metadata dict written to the sidecar (includes ``ops`` and the input/output
        tensor details, with quantization parameters).

    Example:
        >>> export_tflite(model, "fcn8s_fp16.tflite", input_size=(360, 480),
        ...               quantization="float16", class_names=CAMVID_CLASSES)
    """
    if not os.fspath(path).endswith(".tflite"):
        raise ValueError(f"TFLite path must end with .tflite. Received: path={path!r}")
    sidecar = sidecar_path(path)
    for target in (path, sidecar):
        _check_writable(target, overwrite)
    source = load_model(model)
    start = time.perf_counter()
    flatbuffer = convert_to_tflite(
        source, input_size=input_size, quantization=quantization,
        representative_data=representative_data, num_calibration_images=num_calibration_images,
        int8_io=int8_io, include_argmax=include_argmax)
    seconds = time.perf_counter() - start
    ops = check_tflite_ops(flatbuffer)
    runner = TFLiteRunner(flatbuffer)
    metadata = make_metadata(source, class_names=class_names, palette=palette,
                             ignore_label=ignore_label, extra={
                                 "artifact": "tflite", "quantization": quantization,
                                 "input": runner.input_info(), "output": runner.output_info(),
                                 "output_kind": "class_ids" if include_argmax else "logits",
                                 "ops": ops, "conversion_seconds": round(seconds, 1),
                                 "size_bytes": len(flatbuffer)})
    write_atomic(path, flatbuffer, overwrite)
    write_json(sidecar, metadata, overwrite)
    log.info("Wrote %s (%.1f MB, %s) in %.0f s", path, len(flatbuffer) / 1e6, quantization,
             seconds)
    return metadata


def sidecar_path(tflite_path):
    """``model.tflite`` -> ``model.json``."""
    path = os.fspath(tflite_path)
    return (path[: -len(".tflite")] if path.endswith(".tflite") else path) + ".json"


# ------------------------------------------------------------------------------------------
# Running TFLite models
# ------------------------------------------------------------------------------------------


def make_interpreter(tflite_model, num_threads=2):
    """A LiteRT interpreter (``ai_edge_litert``), falling back to ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT not installed
        Interpreter = tf.lite.Interpreter
    if not isinstance(tflite_model, (bytes, bytearray)) and not os.path.isfile(tflite_model):
        raise FileNotFoundError(f"TFLite file not found: '{os.fspath(tflite_model)}'")
    try:
        if isinstance(tflite_model, (bytes, bytearray)):
            interpreter = Interpreter(model_content=bytes(tflite_model), num_threads=num_threads)
        else:
            interpreter = Interpreter(model_path=os.fspath(tflite_model), num_threads=num_threads)
        interpreter.allocate_tensors()
    # LiteRT: ValueError("The model is not a valid Flatbuffer buffer"), RuntimeError from
    # allocate_tensors; neither names the model.
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{_tflite_name(tflite_model)} cannot be loaded by the TFLite "
                         f"interpreter: {error}") from error
    return interpreter


def _tensor_info(detail):
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape"]],
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)}}


class TFLiteRunner:
    """Runs an exported FCN ``.tflite`` on uint8 RGB images.

    Args:
        tflite_model: bytes or a path.
        num_threads: interpreter threads.

    Example:
        >>> runner = TFLiteRunner("fcn8s_int8.tflite", num_threads=2)
        >>> runner.labels(image).shape  # image: uint8 (H, W, 3) at the model's size
        (360, 480)
    """

    def __init__(self, tflite_model, num_threads=2):
        self.interpreter = make_interpreter(tflite_model, num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def input_info(self):
        return _tensor_info(self._input)

    def output_info(self):
        return _tensor_info(self._output)

    @property
    def input_size(self):
        return tuple(int(d) for d in self._input["shape"][1:3])

    def _quantize_input(self, image):
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        if dtype == np.float32 or dtype == np.uint8 and not scale:
            return image.astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(image.astype("float32") / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def invoke(self, image):
        """Runs one image ``(H, W, 3)`` uint8; returns the raw output (batch axis removed)."""
        image = np.asarray(image)
        if image.shape != tuple(self._input["shape"][1:]):
            raise ValueError(f"Image shape must be {tuple(self._input['shape'][1:])}. "
                             f"Received: shape={image.shape}")
        self.interpreter.set_tensor(self._input["index"], self._quantize_input(image)[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])[0]

    def outputs(self, image):
        """Float logits ``(H, W, C)`` (dequantized), or class ids ``(H, W)`` for argmax models."""
        out = self.invoke(image)
        scale, zero_point = self._output["quantization"]
        if out.ndim == 3 and scale:
            return (out.astype("float32") - zero_point) * scale
        return out

    def labels(self, image):
        """Class ids ``(H, W)`` int32."""
        out = self.outputs(image)
        return (out if out.ndim == 2 else np.argmax(out, axis=-1)).astype("int32")

    def latency(self, image, runs=10, warmup=1):
        """Median seconds of ``invoke`` over ``runs`` runs."""
        for _ in range(warmup):
            self.invoke(image)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.invoke(image)
            times.append(time.perf_counter() - start)
        return float(np.median(times))


# ------------------------------------------------------------------------------------------
# Quality gate
# ------------------------------------------------------------------------------------------


def keras_predictor(model):
    """A compiled function ``uint8 image (H, W, 3) -> float logits (H, W, C)`` of an FCN."""
    net = raw_rgb_model(load_model(model))

    @tf.function(reduce_retracing=True)
    def predict(images):
        return net(tf.cast(images, tf.float32), training=False)

    return lambda image: predict(np.asarray(image)[None]).numpy()[0]


def median_seconds(fn, arg, runs=10, warmup=1):
    """Median wall time of ``fn(arg)`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn(arg)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _mean_iu(confusion):
    from keras_fcn.metrics import segmentation_metrics

    return 100.0 * segmentation_metrics(confusion)["mean_iu"]


def top2_gap(logits):
    """Top-1 minus top-2 softmax probability per pixel of ``(..., C)`` logits (0 = a tie)."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
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


def compare_tflite(model, tflite_paths, pairs, *, num_classes=None, ignore_label=255,
                   num_threads=2, runs=10, keras_runs=3):
    """Measures TFLite variants against the Keras model on validation images.

    Images are resized to each TFLite model's input size (bilinear; masks nearest).

    Args:
        model: the Keras FCN (model or ``.keras`` path).
        tflite_paths: ``{variant_name: .tflite path or bytes}``.
        pairs: ``[(image_path, mask_path or None)]`` (see :func:`read_list`).
        num_classes: classes for mean IU (default: the model's).
        ignore_label: void label of the masks.
        num_threads: interpreter threads.
        runs, keras_runs: timed runs for the median latencies.

    Returns:
        A list of row dicts: ``variant``, ``size_mb``, ``latency_ms``, ``agreement`` (pixel
        agreement of class ids with the Keras model, %), ``confident_agreement`` (the same on
        the pixels where the Keras model's top-2 softmax gap is at least ``CONFIDENT_GAP``;
        the first row also has ``confident_share``, the % of such pixels), ``mean_iu`` and
        ``mean_iu_delta`` (points; ``None`` without masks). The first row is ``keras_float``.

    Example:
        >>> rows = compare_tflite(model, {"int8": "m_int8.tflite"}, read_list("val.txt"))
    """
    from keras_fcn.metrics import confusion_matrix

    keras_model = load_model(model)
    num_classes = num_classes or num_classes_of(keras_model)
    predict = keras_predictor(keras_model)
    runners = {name: TFLiteRunner(p, num_threads) for name, p in tflite_paths.items()}
    sizes = {r.input_size for r in runners.values()}
    if len(sizes) != 1:
        raise ValueError(f"All TFLite variants must have one input size. Received: {sizes}")
    size = sizes.pop()
    has_masks = all(m is not None for _, m in pairs)
    counts = {name: np.zeros(4, np.int64) for name in runners}
    confusion = {name: np.zeros((num_classes, num_classes), np.int64)
                 for name in ["keras_float", *runners]}
    for image_path, mask_path in pairs:
        image = load_image(image_path, size)
        logits = predict(image)
        reference = np.argmax(logits, axis=-1)
        mask = load_mask(mask_path, size) if has_masks else None
        if has_masks:
            confusion["keras_float"] += confusion_matrix(mask, reference, num_classes,
                                                         ignore_label)
        for name, runner in runners.items():
            labels = runner.labels(image)
            counts[name] += agreement_counts(logits, labels)
            if has_masks:
                confusion[name] += confusion_matrix(mask, labels, num_classes, ignore_label)
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
            sure (``confident_agreement``, see :func:`compare_tflite`).
    """
    failures = []
    for row in rows[1:]:
        name = row["variant"]
        if min_agreement is not None and row["agreement"] < min_agreement:
            failures.append(f"{name}: agreement {row['agreement']:.2f}% < {min_agreement}%")
        sure = row.get("confident_agreement")
        if min_confident_agreement is not None and sure is not None \
                and sure < min_confident_agreement:
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
