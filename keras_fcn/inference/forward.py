"""The one compiled prediction function of keras_fcn: model-ready images -> class scores.

Prediction, training's evaluation and export's quality gate all run a model through
:func:`forward_fn`, so how a forward pass is compiled (and, later, its execution settings such
as XLA or precision) is decided in this one place.

Example:
    >>> fn = forward_fn(model)                      # softmax probabilities
    >>> probs = fn(tf.zeros((2, 64, 64, 3)))        # float32 (2, 64, 64, num_classes)
    >>> logits = forward_fn(model, output="logits")(images)
    >>> probs = forward_fn(model, flip=True)(images)  # mean with the left-right mirror
    >>> probs = forward_batches(model, rgb_stack, batch_size=4)  # numpy RGB in [0, 255]
"""

import weakref

import numpy as np
import tensorflow as tf

from keras_fcn.models.inspect import preprocessing_fn

OUTPUTS = ("softmax", "logits")

# model -> {(output, flip): tf.function}; weak keys, so a cached function never keeps a model
# alive.
_FUNCTIONS = weakref.WeakKeyDictionary()


def _scores(model_ref, images, output):
    scores = tf.cast(model_ref()(images, training=False), tf.float32)
    return tf.nn.softmax(scores, axis=-1) if output == "softmax" else scores


def forward_fn(model, *, output="softmax", flip=False):
    """A compiled ``images -> scores`` function for ``model``, cached per (model, output, flip).

    Args:
        model: a keras_fcn model (logits ``(N, H, W, C)`` aligned with its input).
        output: ``"softmax"`` for probabilities or ``"logits"`` for the raw scores.
        flip: if True, the softmax is averaged with the left-right un-flipped softmax of the
            mirrored batch (test-time augmentation); only with ``output="softmax"``.

    Returns:
        A ``tf.function`` mapping a model-ready image batch tensor (already preprocessed and
        cast for the model) to float32 ``(N, H, W, C)``.

    Example:
        >>> probs = forward_fn(model)(tf.zeros((1, 32, 32, 3)))
        >>> probs.shape
        TensorShape([1, 32, 32, 21])
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}. Received: output={output!r}")
    if flip and output != "softmax":
        raise ValueError("flip averages probabilities and needs output='softmax'. "
                         f"Received: output={output!r}, flip={flip!r}")
    cache = _FUNCTIONS.setdefault(model, {})
    key = (output, bool(flip))
    if key not in cache:
        model_ref = weakref.ref(model)  # a strong reference would keep the cache key alive

        def forward(images):
            scores = _scores(model_ref, images, output)
            if flip:
                mirrored = _scores(model_ref, tf.reverse(images, axis=[2]), output)
                scores = (scores + tf.reverse(mirrored, axis=[2])) / 2.0
            return scores

        cache[key] = tf.function(forward, reduce_retracing=True)
    return cache[key]


def model_input(model, images):
    """A float32 RGB stack ``(n, H, W, 3)`` in [0, 255], scaled and cast as ``model`` expects:
    a model without its own ``preprocess`` layer gets ``keras_fcn.models.preprocessing_fn``.

    Example:
        >>> model_input(build_fcn8s(weights=None), np.zeros((1, 4, 4, 3), "float32"))[0, 0, 0]
        array([-103.939, -116.779, -123.68 ], dtype=float32)
    """
    preprocess = preprocessing_fn(model)
    if preprocess is not None:
        return np.asarray(preprocess(images), dtype="float32")
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    if dtype == "uint8":
        return np.clip(np.round(images), 0, 255).astype("uint8")
    return images.astype(dtype)


def forward_batches(model, images, *, batch_size=1, flip=False):
    """Softmax of ``model`` over a same-size RGB stack, ``batch_size`` images at a time.

    Args:
        model: a keras_fcn model.
        images: float32 RGB ``(n, H, W, 3)`` in [0, 255] (see :func:`model_input`).
        batch_size: images per forward pass.
        flip: average with the left-right mirrored images (see :func:`forward_fn`).

    Returns:
        float32 numpy ``(n, H, W, C)``.

    Example:
        >>> forward_batches(model, np.zeros((3, 32, 32, 3), "float32"), batch_size=2).shape
        (3, 32, 32, 21)
    """
    fn = forward_fn(model, flip=flip)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = model_input(model, images[start:start + batch_size])
        outputs.append(np.asarray(fn(tf.convert_to_tensor(batch)), dtype="float32"))
    return np.concatenate(outputs, axis=0)
