"""Which parts of keras_fcn need TensorFlow, and the error a user gets when it is missing.

The core (`models`, `layers`, `losses`, `metrics`, `weights`, the `training` fit path) is
written with `keras.ops` and runs on every Keras 3 backend. The wings built on TensorFlow
itself (the tf.data pipelines, TFDS, SavedModel and TFLite export) import it; where it is not
installed (a JAX or PyTorch machine), their names stay reachable and raise an ImportError that
says what needs TensorFlow and what to use instead.

Example:
    >>> from keras_fcn import _tf
    >>> _tf.HAS_TENSORFLOW
    True
"""

import importlib.util

import keras
import numpy as np
from keras import ops

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def backend():
    """The Keras backend in use: "tensorflow", "jax", "torch" or "numpy"."""
    return keras.backend.backend()


def on_tensorflow():
    """True when Keras runs on the TensorFlow backend."""
    return backend() == "tensorflow"


def is_float(x):
    """True when the tensor ``x`` has a floating-point dtype."""
    return "float" in keras.backend.standardize_dtype(x.dtype)


def is_concrete(x):
    """True when ``x`` holds values now (eager), False inside a traced or compiled step (a
    `tf.function` graph, a JAX trace, `torch.compile`), where no Python check can see them."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if name == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if name == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def check_none(bad, values, message):
    """Fails when any entry of the boolean ``bad`` is set, naming the first such ``values``.

    Eager: a ValueError, ``message.format(value=...)``. In a TensorFlow graph: a
    ``tf.debugging.Assert``. Inside a JAX trace or ``torch.compile`` nothing can stop the step:
    the callers turn such entries into NaN (losses) or leave them out (metrics).
    """
    def first_bad():
        # `initial` keeps an empty batch (no pixel at all) from failing the reduction.
        return ops.min(ops.where(bad, values, np.iinfo("int32").max),
                       initial=np.iinfo("int32").max)

    if is_concrete(bad):
        if bool(ops.any(bad)):  # the one value read back when all is well
            value = ops.convert_to_numpy(first_bad())[()]
            raise ValueError(message.format(value=int(value) if value.dtype.kind in "iu"
                                            else str(value)))
    elif on_tensorflow():
        import tensorflow as tf

        tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)),
                            [message.format(value="").strip(), first_bad()])


class TensorFlowMissingError(ImportError):
    """A TensorFlow-built part of keras_fcn was used where TensorFlow is not installed: a
    user's set-up, not a bug (the command-line tools print it as one line, status 2)."""


class TensorFlowBackendError(TensorFlowMissingError):
    """A TensorFlow-built part of keras_fcn was used while Keras runs on another backend: the
    backend is fixed once keras is imported (the command-line tools print it as one line,
    status 2)."""


def require_backend(what, instead):
    """Raises a `TensorFlowBackendError` for ``what`` (and the hint ``instead``) unless Keras
    runs on TensorFlow; `require` (TensorFlow installed) comes first.

    Example:
        require_backend("TFLite export", "export a saved .keras file there")
    """
    require(what)
    if not on_tensorflow():
        raise TensorFlowBackendError(
            f"{what} runs on Keras' TensorFlow backend; this process runs Keras on "
            f"{backend()} (KERAS_BACKEND), which cannot change once keras is imported. "
            f"{instead}")


def missing(what, instead=None):
    """The ImportError raised when ``what`` is used without TensorFlow installed."""
    hint = f" Without TensorFlow, use {instead}." if instead else ""
    return TensorFlowMissingError(
        f"{what} needs TensorFlow, which is not installed (Keras backend: {backend()}). "
        f"Install it with `pip install tensorflow`.{hint}")


def require(what, instead=None):
    """Imports and returns the ``tensorflow`` module, or raises `missing(what, instead)`."""
    if not HAS_TENSORFLOW:
        raise missing(what, instead)
    import tensorflow as tf

    return tf


def lazy_names(module_name, names, instead=None):
    """A module ``__getattr__`` for the TensorFlow-only ``names`` of ``module_name``: each one
    raises `missing` when TensorFlow is absent (other names raise the usual AttributeError).
    ``instead`` is the hint of every name, or a dict ``{name: hint or None}``.

    Example:
        >>> __getattr__ = lazy_names(__name__, ("make_dataset",), "SegmentationPyDataset")
    """
    hints = dict(instead) if isinstance(instead, dict) else dict.fromkeys(names, instead)
    names = frozenset(names)

    def __getattr__(name):
        if name in names:
            raise missing(f"{module_name}.{name}", hints.get(name))
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def import_names(namespace, table, instead=None):
    """Re-exports TensorFlow-built names into a package: ``table`` maps module names to the
    names they give. With TensorFlow installed each module is imported and its names set in
    ``namespace`` (the package's ``globals()``); without it, the package gets a ``__getattr__``
    (`lazy_names`) under which each name raises `missing`, with the hint ``instead``: one for
    every name, or a dict ``{module name: hint or None}`` (the hint of that module's names).

    Example:
        >>> import_names(globals(), {"keras_fcn.data.pipeline": ("make_dataset",)})
    """
    import importlib

    if HAS_TENSORFLOW:
        for module_name, names in table.items():
            module = importlib.import_module(module_name)
            for name in names:
                namespace[name] = getattr(module, name)
        return
    all_names = [name for names in table.values() for name in names]
    if isinstance(instead, dict):
        instead = {name: instead.get(module_name)
                   for module_name, names in table.items() for name in names}
    namespace["__getattr__"] = lazy_names(namespace["__name__"], all_names, instead)
