"""The one compiled prediction function of keras_fcn: model-ready images -> class scores.

Prediction, training's evaluation and export's quality gate all run a model through
:func:`forward_fn`, so how a forward pass is compiled is decided in this one place: the
precision (``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"``, see
:mod:`keras_fcn.runtime`; logits and probabilities stay float32) and whether XLA compiles it
and whether the large-kernel convolutions (``fc6``) run as one matrix multiply
(``runtime.fast_path``: the faster path for this CPU, precision and model; override with
``jit_compile=`` / ``conv_matmul=`` or ``KERAS_FCN_JIT=0/1`` / ``KERAS_FCN_CONV_MATMUL=0/1``).

Example:
    fn = forward_fn(model)                      # softmax probabilities
    probs = fn(np.zeros((2, 64, 64, 3), "float32"))  # float32 (2, 64, 64, num_classes)
    logits = forward_fn(model, output="logits")(images)
    probs = forward_fn(model, flip=True)(images)  # mean with the left-right mirror
    probs = forward_batches(model, rgb_stack, batch_size=4)  # numpy RGB in [0, 255]
"""

import warnings
import weakref

import keras
import numpy as np
from keras import ops

from keras_fcn import _tf, runtime
from keras_fcn.models.inspect import preprocessing_fn

OUTPUTS = ("softmax", "logits")
# XLA compiles once per input shape (seconds for a VGG16 FCN). Past this many shapes (a folder
# of photos of many sizes), new shapes take the graph path instead of another compilation.
MAX_XLA_SHAPES = 4

# model -> {(output, flip, precision, jit, conv_matmul): tf.function} and model -> {precision: copy}; weak
# keys, so a cached function or copy never keeps a model alive.
_FUNCTIONS = weakref.WeakKeyDictionary()
_COPIES = weakref.WeakKeyDictionary()


def in_precision(model, precision=None):
    """``model`` computing in ``precision`` (a copy made once per model and precision, its
    weights stored in that precision: ``keras_fcn.runtime.with_precision(inference=True)``;
    the model itself when it already does, or when ``precision`` is None).

    Example:
        in_precision(model, "bfloat16").get_layer("fc6").compute_dtype
    """
    if precision is None:
        return model
    resolved = runtime.resolve_precision(precision, model=model)
    copies = _COPIES.setdefault(model, {})
    if resolved not in copies:
        copies[resolved] = runtime.with_precision(model, resolved, inference=True)
    return copies[resolved]


def _scores(model_ref, images, output):
    scores = ops.cast(model_ref()(images, training=False), "float32")
    return ops.softmax(scores, axis=-1) if output == "softmax" else scores


def _mirrored(images):
    """The left-right mirror of an image batch, or of each input of a dict of them (the
    RGB and HHA streams of a late-fusion model flip together)."""
    return keras.tree.map_structure(
        lambda batch: ops.flip(ops.convert_to_tensor(batch), axis=2), images)


def _backend_forward(net, output, flip):
    """``forward_fn`` on JAX and PyTorch: the model's own compiled predict step (XLA on JAX,
    no-grad eager on PyTorch), softmax and flip averaging in ``keras.ops``. On JAX, where
    each new input shape compiles the step again (and running it uncompiled compiles every
    op per shape, slower still), a warning says so once ``MAX_XLA_SHAPES`` shapes were seen:
    images of one size (``image_size=``, the tools' ``--image_size``) compile once."""
    shapes = set()

    def scores_of(images):
        if _tf.backend() == "jax" and len(shapes) <= MAX_XLA_SHAPES:
            shapes.add(_shape_of(images))
            if len(shapes) > MAX_XLA_SHAPES:
                warnings.warn(
                    f"JAX compiles the forward pass again for every input size ({len(shapes)} "
                    "sizes so far; each compile can take longer than the pass): resize the "
                    "images to one size (image_size=, the tools' --image_size) to compile once.",
                    RuntimeWarning, stacklevel=2)
        scores = ops.cast(ops.convert_to_tensor(net.predict_on_batch(images)), "float32")
        return ops.softmax(scores, axis=-1) if output == "softmax" else scores

    def forward(images):
        scores = scores_of(images)
        if flip:
            mirrored = scores_of(_mirrored(images))
            scores = (scores + ops.flip(mirrored, axis=2)) / 2.0
        return scores

    return forward


def forward_fn(model, *, output="softmax", flip=False, precision=None, jit_compile=None,
               conv_matmul=None):
    """A compiled ``images -> scores`` function for ``model``, cached per model and settings.

    Args:
        model: a keras_fcn model (logits ``(N, H, W, C)`` aligned with its input).
        output: ``"softmax"`` for probabilities or ``"logits"`` for the raw scores.
        flip: if True, the softmax is averaged with the left-right un-flipped softmax of the
            mirrored batch (test-time augmentation); only with ``output="softmax"``.
        precision: None (the model's own), ``"float32"`` (exact), ``"bfloat16"``,
            ``"float16"`` or ``"auto"`` (:func:`keras_fcn.runtime.resolve_precision`).
        jit_compile: True/False to force XLA on TensorFlow; None for
            ``keras_fcn.runtime.fast_path``. JAX always runs the model's compiled predict step
            (uncompiled, it compiles each op per input size: slower still), PyTorch eagerly.
        conv_matmul: True/False to force running the large-kernel convolutions as one matrix
            multiply (``runtime.convolutions_as_matmul``); None for ``fast_path``.

    Returns:
        A ``tf.function`` (on TensorFlow; a function over the model's predict step on JAX and
        PyTorch) mapping a model-ready image batch tensor (already preprocessed and
        cast for the model), or a dict of them for a multi-input model (the late-fusion
        RGB + HHA streams; ``flip`` mirrors each), to float32 ``(N, H, W, C)``.

    Example:
        probs = forward_fn(model)(tf.zeros((1, 32, 32, 3)))
        probs.shape
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}. Received: output={output!r}")
    if flip and output != "softmax":
        raise ValueError("flip averages probabilities and needs output='softmax'. "
                         f"Received: output={output!r}, flip={flip!r}")
    net = in_precision(model, precision)
    settings = runtime.fast_path(runtime.model_precision(net), model=net,
                                 jit_compile=jit_compile, conv_matmul=conv_matmul)
    cache = _FUNCTIONS.setdefault(model, {})
    key = (output, bool(flip), settings["precision"], settings["jit_compile"],
           settings["conv_matmul"])
    if key not in cache and not _tf.on_tensorflow():
        cache[key] = _backend_forward(net, output, flip)
    if key not in cache:
        import tensorflow as tf

        model_ref = weakref.ref(net)  # a strong reference would keep the cache key alive

        def forward(images):
            # Runs when the function is traced: the traced graph keeps the matmul fc6.
            with runtime.convolutions_as_matmul(model_ref(), settings["conv_matmul"]):
                scores = _scores(model_ref, images, output)
                if flip:
                    mirrored = _scores(model_ref, _mirrored(images), output)
                    scores = (scores + tf.reverse(mirrored, axis=[2])) / 2.0
            return scores

        graph = tf.function(forward, reduce_retracing=True)
        cache[key] = (_ShapeLimitedXLA(tf.function(forward, jit_compile=True), graph)
                      if settings["jit_compile"] else graph)
    return cache[key]


def _shape_of(images):
    """The shape of an image batch, or the shapes of a dict of them."""
    return (tuple(images.shape) if hasattr(images, "shape")
            else tuple(tuple(batch.shape) for batch in keras.tree.flatten(images)))


class _ShapeLimitedXLA:
    """Runs the XLA function for the first ``MAX_XLA_SHAPES`` input shapes, the graph
    function for any further shape (both compute the same float32 result)."""

    def __init__(self, xla, graph):
        self.xla, self.graph, self.shapes = xla, graph, set()

    def __call__(self, images):
        shape = _shape_of(images)
        if shape in self.shapes or len(self.shapes) < MAX_XLA_SHAPES:
            self.shapes.add(shape)
            return self.xla(images)
        return self.graph(images)


def model_input(model, images):
    """A float32 RGB stack ``(n, H, W, 3)`` in [0, 255], scaled and cast as ``model`` expects:
    a model without its own ``preprocess`` layer gets ``keras_fcn.models.preprocessing_fn``.

    Example:
        model_input(build_fcn8s(weights=None), np.zeros((1, 4, 4, 3), "float32"))[0, 0, 0]
    """
    preprocess = preprocessing_fn(model)
    if preprocess is not None:
        return np.asarray(preprocess(images), dtype="float32")
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    if dtype == "uint8":
        return np.clip(np.round(images), 0, 255).astype("uint8")
    return images.astype(dtype)


def forward_batches(model, images, *, batch_size=1, flip=False, precision=None,
                    jit_compile=None):
    """Softmax of ``model`` over a same-size RGB stack, ``batch_size`` images at a time.

    Args:
        model: a keras_fcn model.
        images: RGB ``(n, H, W, 3)`` in [0, 255], uint8 or float (cast to float32 a batch at
            a time, see :func:`model_input`).
        batch_size: images per forward pass.
        flip: average with the left-right mirrored images (see :func:`forward_fn`).
        precision, jit_compile: see :func:`forward_fn`.

    Returns:
        float32 numpy ``(n, H, W, C)``.

    Example:
        forward_batches(model, np.zeros((3, 32, 32, 3), "float32"), batch_size=2).shape
    """
    fn = forward_fn(model, flip=flip, precision=precision, jit_compile=jit_compile)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = model_input(model, np.asarray(images[start:start + batch_size], "float32"))
        outputs.append(ops.convert_to_numpy(fn(ops.convert_to_tensor(batch))).astype("float32"))
    return np.concatenate(outputs, axis=0)
