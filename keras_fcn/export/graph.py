"""What every exported graph computes: raw ``uint8`` RGB images in, logits or class ids out.

The SavedModel and the TFLite exports both trace a function of the deployable model (the FCN
with its preprocessing inside, :func:`keras_fcn.models.raw_rgb_model`) into a Keras
``ExportArchive``.

Example:
    net = raw_rgb_model(load_model("runs/fcn8s.keras"))
    >>> spec = tf.TensorSpec([1, 360, 480, 3], tf.uint8, name="images")

    write_graph(lambda images: {"logits": net(tf.cast(images, tf.float32))}, [spec], net,
                "graph_dir")
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_fcn import _tf, runtime
from keras_fcn.models.inspect import check_single_output
from keras_fcn.weights import load_model_file


def load_model(model):
    """Returns a ``keras.Model`` from a model or a ``.keras`` path, refusing a model with
    several outputs (:func:`keras_fcn.models.inspect.check_single_output`): every export
    takes it through here. A model computing in bfloat16 or float16 (trained under mixed
    precision) comes back as its float32 copy (:func:`keras_fcn.runtime.with_precision`).

    A damaged ``.keras`` file raises a ValueError naming it
    (:func:`keras_fcn.weights.load_model_file`).

    Example:
        model = load_model("runs/fcn8s.keras")
    """
    if not isinstance(model, keras.Model):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Model file not found: {path!r}")
        model = load_model_file(path)
    # a model trained under mixed precision (bfloat16/float16 layers, saved so) exports as
    # float32: the TFLite converter has no bfloat16 kernels (Flex ops), and float16 weights
    # are its own quantization
    return runtime.with_precision(check_single_output(model), "float32")


def check_backend(what):
    """Refuses an export (``what``) where Keras runs on JAX or PyTorch: the export traces the
    model into a TensorFlow graph (:func:`keras_fcn._tf.require_backend`), so the message says
    to export a saved ``.keras`` file (it loads on every backend) under TensorFlow."""
    _tf.require_backend(what, "Save the model (model.save('model.keras')) and export that "
                              "file in a process with KERAS_BACKEND=tensorflow (python "
                              "tools/export.py --model model.keras ...): a .keras file loads on "
                              "every backend.")


def check_input_size(input_size, allow_none=True):
    """``(height, width)`` of positive integers, or ``(None, None)`` for ``None`` when allowed.

    Example:
        >>> check_input_size((360, 480))
        (360, 480)
    """
    if input_size is None and allow_none:
        return (None, None)
    size = tuple(input_size) if isinstance(input_size, (tuple, list)) else None
    if size is None or len(size) != 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d > 0
            for d in size):
        raise ValueError("input_size must be (height, width) with positive integers"
                         f"{' or None' if allow_none else ''}. Received: input_size={input_size!r}")
    return tuple(int(d) for d in size)


def label_dtype(num_classes):
    """``uint8`` class ids when they fit (<= 256 classes), else ``int32``.

    Example:
        >>> label_dtype(21)
        tf.uint8
    """
    return tf.uint8 if num_classes <= 256 else tf.int32


def class_ids(logits, dtype):
    """The argmax of ``(N, H, W, C)`` logits as ``(N, H, W)`` class ids of ``dtype``."""
    return tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), dtype)


def write_graph(fn, input_signature, model, path):
    """Traces ``fn`` (which calls ``model``) as the ``serve`` endpoint of a SavedModel at
    ``path``: what the SavedModel export ships and what the TFLite converter reads."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", fn, input_signature=input_signature)
    archive.write_out(os.fspath(path), verbose=False)
    return path
