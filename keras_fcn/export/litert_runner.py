"""Running an exported ``.tflite`` FCN in the LiteRT interpreter, as a deployed app would.

Example:
    runner = TFLiteRunner("fcn8s_int8.tflite", num_threads=2)
    runner.labels(image).shape  # image: uint8 (H, W, 3) at the model's input size
    runner.latency(image, runs=10)  # median seconds
"""

import os
import statistics
import timeit

import numpy as np

from keras_fcn._checks import pixel_value_problem
from keras_fcn.export.flatbuffer import tflite_name


def median_seconds(fn, arg, runs=10, warmup=1):
    """Median wall time of ``fn(arg)`` over ``runs`` calls after ``warmup`` untimed calls.

    Example:
        >>> median_seconds(np.sort, np.zeros(10), runs=3) < 1.0
        True
    """
    for _ in range(warmup):
        fn(arg)
    return float(statistics.median(timeit.repeat(lambda: fn(arg), number=1, repeat=runs)))


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT not installed: TensorFlow's (deprecated)
        import tensorflow as tf

        return tf.lite.Interpreter
    return Interpreter


def make_interpreter(tflite_model, num_threads=2):
    """A LiteRT interpreter (``ai_edge_litert``) with its tensors allocated, falling back to
    ``tf.lite.Interpreter`` where LiteRT is not installed.

    Args:
        tflite_model: bytes or a ``.tflite`` path.
        num_threads: interpreter threads.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the interpreter cannot load the model (the message names it).

    Example:
        interpreter = make_interpreter("fcn8s_int8.tflite")
    """
    in_memory = isinstance(tflite_model, (bytes, bytearray))
    if not in_memory and not os.path.isfile(tflite_model):
        raise FileNotFoundError(f"TFLite file not found: '{os.fspath(tflite_model)}'")
    source = ({"model_content": bytes(tflite_model)} if in_memory
              else {"model_path": os.fspath(tflite_model)})
    try:
        interpreter = _interpreter_class()(**source, num_threads=num_threads)
        interpreter.allocate_tensors()
    # LiteRT: ValueError("The model is not a valid Flatbuffer buffer"), RuntimeError from
    # allocate_tensors; neither names the model.
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{tflite_name(tflite_model)} cannot be loaded by the TFLite "
                         f"interpreter: {error}") from error
    return interpreter


def check_rgb_image(image, what="image"):
    """Refuses what is plainly not an RGB image of raw pixel values 0..255: integers outside
    0..255, floats outside 0..255 or with max in (0, 1] (a 0..1 or -1..1 normalized image), or
    non-numeric data. Returns ``image`` as an array.

    Example:
        >>> check_rgb_image(np.full((2, 2, 3), 7, np.uint8)).dtype
        dtype('uint8')
    """
    image = np.asarray(image)
    problem, low, high = (pixel_value_problem(image, allow_bool=False, refuse_unit_floats=True)
                          or (None, None, None))
    if problem in ("dtype", "empty"):
        raise ValueError(f"{what} must be RGB with values 0..255 (uint8). Received: "
                         f"dtype={image.dtype}, shape={image.shape}")
    if problem is not None:  # out of range, normalized, NaN or infinite
        raise ValueError(f"{what} must be RGB with raw values 0..255 (uint8), not normalized. "
                         f"Received: dtype={image.dtype} with values in "
                         f"[{float(low) + 0.0:g}, {float(high) + 0.0:g}]")  # + 0.0: no -0
    return image


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
        runner = TFLiteRunner("fcn8s_int8.tflite", num_threads=2)
        runner.labels(image).shape  # image: uint8 (H, W, 3) at the model's size
    """

    def __init__(self, tflite_model, num_threads=2):
        self.interpreter = make_interpreter(tflite_model, num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def input_info(self):
        """Name, dtype, shape and quantization (scale, zero point) of the input tensor."""
        return _tensor_info(self._input)

    def output_info(self):
        """Name, dtype, shape and quantization (scale, zero point) of the output tensor."""
        return _tensor_info(self._output)

    @property
    def input_size(self):
        """``(height, width)`` of the input."""
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
        """Runs one image ``(H, W, 3)`` uint8; returns the raw output (batch axis removed).

        Raises:
            ValueError: the shape is not the model's input, or the values are not raw RGB
                0..255 (:func:`check_rgb_image`: a 0..1 float image, ints above 255).
        """
        image = np.asarray(image)
        expected = tuple(int(d) for d in self._input["shape"][1:])  # not np.int32(...) reprs
        if image.shape != expected:
            raise ValueError(f"Image shape must be {expected} (the model's fixed input size). "
                             f"Received: shape={image.shape}")
        image = check_rgb_image(image)
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
        """Median seconds of ``invoke`` over ``runs`` runs (:func:`median_seconds`)."""
        return median_seconds(self.invoke, image, runs, warmup)
