"""Per-pixel uncertainty: softmax entropy and margin, and Monte-Carlo dropout.

Example:
    labels, probs = predict(model, image)
    heat = entropy(probs)                  # (H, W), log(C) where the model is unsure
    result = mc_dropout(model, image, num_samples=8)
    result["mutual_information"].shape == image.shape[:2]
"""

import weakref

import keras
import numpy as np

from keras_fcn.inference.forward import in_precision
from keras_fcn.inference.images import map_same_size, restore_kind
from keras_fcn.inference.predict import checked_images, stack_probabilities

# model -> its Monte-Carlo dropout copy (weak keys: the cache keeps no model alive).
_MC_MODELS = weakref.WeakKeyDictionary()


PROBABILITY_TOLERANCE = 1e-3  # how far values may leave [0, 1], and sums 1, by rounding


def check_probabilities(name, probabilities, dtype="float64"):
    """``probabilities`` as a ``dtype`` array, or a ValueError unless it holds softmax
    probabilities: floats in [0, 1] summing to 1 over the last axis (within
    :data:`PROBABILITY_TOLERANCE`).

    FCN models output logits, so ``entropy(model.predict(x))`` is an easy mistake; this
    refuses it instead of returning a negative "entropy".

    Example:
        >>> check_probabilities("entropy", [[2.0, -1.0, 0.5]])
        Traceback (most recent call last):
        ValueError: entropy expects probabilities ...
    """
    p = np.asarray(probabilities)
    if p.dtype.kind != "f":
        raise ValueError(
            f"{name} expects float probabilities (..., C) (a softmax over the last axis). "
            f"Received: dtype={p.dtype}, shape={p.shape}"
            + (" (an integer label map? pass the probabilities that "
               "keras_fcn.inference.predict returns)" if p.dtype.kind in "biu" else ""))
    if p.ndim == 0:
        raise ValueError(f"{name} expects probabilities of shape (..., C). Received: a scalar "
                         f"{p!r}")
    p = p.astype(dtype, copy=False)
    if not p.size:
        return p
    finite = np.isfinite(p)
    if not finite.all():
        raise ValueError(f"{name}: the probabilities have {int(p.size - finite.sum())} NaN or "
                         f"infinite values (of {p.size}).")
    sums = p.sum(axis=-1)
    low, high = float(p.min()), float(p.max())
    low_sum, high_sum = float(sums.min()), float(sums.max())
    tol = PROBABILITY_TOLERANCE
    if low < -tol or high > 1 + tol or low_sum < 1 - tol or high_sum > 1 + tol:
        raise ValueError(
            f"{name} expects probabilities (..., C) in [0, 1] that sum to 1 over the last "
            f"axis (C={p.shape[-1]}). Received: values in [{low:.6g}, {high:.6g}], sums in "
            f"[{low_sum:.6g}, {high_sum:.6g}]. These look like logits (or unnormalized "
            "scores): apply softmax first (keras.ops.softmax(logits, axis=-1)), or pass the "
            "probabilities that keras_fcn.inference.predict returns.")
    return p


def _image_list(probabilities):
    """True for a list of per-image arrays (``keras_fcn.predict`` on images of several
    sizes returns one): :func:`entropy` and :func:`margin` map over it."""
    return (isinstance(probabilities, (list, tuple)) and len(probabilities) > 0
            and all(isinstance(p, np.ndarray) and p.ndim >= 2 for p in probabilities))


def entropy(probabilities):
    """Per-pixel softmax entropy ``-sum_c p_c log p_c`` in nats (``log C`` when uniform).

    Args:
        probabilities: ``(..., C)`` probabilities summing to 1 over the last axis, or a list
            of such arrays (one per image, as ``keras_fcn.predict`` returns for images of
            several sizes).

    Returns:
        float32 array ``(...)`` (a list of them for a list).

    Raises:
        ValueError: ``probabilities`` are not float probabilities: values outside [0, 1],
            sums over the last axis other than 1 (logits, say), NaN, or an integer array.

    Example:
        >>> round(float(entropy(np.full((1, 1, 4), 0.25))[0, 0]), 4)  # log(4)
        1.3863
    """
    if _image_list(probabilities):
        return [entropy(p) for p in probabilities]
    p = check_probabilities("entropy", probabilities)
    logs = np.log(np.where(p > 0, p, 1.0))
    return (-(p * logs).sum(axis=-1)).astype("float32")


def margin(probabilities):
    """Per-pixel margin between the two largest probabilities (top1 - top2); low is uncertain.

    Args:
        probabilities: ``(..., C)`` probabilities summing to 1 over the last axis, ``C >= 2``,
            or a list of such arrays (as for :func:`entropy`).

    Returns:
        float32 array ``(...)`` in [0, 1] (a list of them for a list).

    Raises:
        ValueError: fewer than 2 classes, or not probabilities (as for :func:`entropy`).

    Example:
        >>> round(float(margin(np.array([[0.1, 0.6, 0.3]]))[0]), 4)
        0.3
    """
    if _image_list(probabilities):
        return [margin(p) for p in probabilities]
    p = check_probabilities("margin", probabilities, dtype="float32")
    if p.shape[-1] < 2:
        raise ValueError(f"margin needs at least 2 classes. Received: shape={p.shape}")
    top2 = np.partition(p, -2, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]).astype("float32")


class AlwaysOnDropout(keras.layers.Dropout):
    """Dropout that drops in inference mode too (Monte-Carlo dropout)."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)


def mc_dropout_model(model, seed=None):
    """Returns a model sharing ``model``'s weights whose Dropout layers are always active.

    The copy is called in inference mode, so BatchNormalization (MobileNetV2 backbones) keeps
    using its moving statistics; only the dropout masks are random. (Calling the original
    model with ``training=True`` would switch BatchNorm to batch statistics, and in Keras 3
    ``trainable=False`` does keep BN in inference mode but mutates the user's model.)

    Args:
        model: a functional keras model with at least one ``Dropout`` layer of rate > 0
            (layers of rate 0 stay as they are).
        seed: optional integer seed for the dropout masks.

    Returns:
        A ``keras.Model`` with the same inputs, outputs and (shared) weights.

    Example:
        mc = mc_dropout_model(model)
        samples = [mc(x) for _ in range(8)]  # differ where dropout > 0
    """
    count, idle = 0, []

    def clone(layer):
        nonlocal count
        if isinstance(layer, keras.layers.Dropout):
            if not layer.rate > 0:  # rate 0 drops nothing: no samples would differ
                idle.append(f"{layer.name} (rate={layer.rate})")
                return layer
            count += 1
            return AlwaysOnDropout(layer.rate, noise_shape=layer.noise_shape,
                                   seed=None if seed is None else seed + count, name=layer.name)
        return layer  # reuse: the copy shares weights with the original

    mc = keras.models.clone_model(model, clone_function=clone, recursive=True)
    if hasattr(model, "copy_info_to"):  # an FCN's trunk and variant (not in its layers)
        model.copy_info_to(mc)
    if count == 0:
        raise ValueError(
            f"Monte-Carlo dropout needs a model with Dropout layers of rate > 0. Model "
            f"{model.name!r} has " + (f"only {', '.join(idle)}: its maps would be all zero "
                                      "(build it with dropout > 0)." if idle else "none."))
    return mc


def cached_mc_model(model):
    """``model``'s Monte-Carlo dropout copy (:func:`mc_dropout_model`), made once per model.

    Example:
        cached_mc_model(model)   # ValueError now, not at the first frame, if it cannot be
    """
    mc = _MC_MODELS.get(model)
    if mc is None:
        mc = _MC_MODELS[model] = mc_dropout_model(model)
    return mc


def _mc_statistics(draw, num_samples):
    """Per-image statistics of ``num_samples`` MC samples ``draw() -> (n, H, W, C)``: a list
    of ``n`` dicts. Running sums (float64) instead of a stack of every sample: the memory is
    a few probability maps, not ``num_samples`` of them."""
    total = squares = entropies = None
    for _ in range(num_samples):
        p = np.asarray(draw(), dtype="float64")
        if total is None:
            total, squares, entropies = np.zeros_like(p), np.zeros_like(p), 0.0
        total += p
        squares += p * p
        entropies = entropies + entropy(p)
    mean = total / num_samples
    variance = np.maximum(squares / num_samples - mean * mean, 0.0)
    stats = {
        "labels": np.argmax(mean, axis=-1).astype("int32"),
        "mean": mean.astype("float32"),
        "variance": variance.mean(axis=-1).astype("float32"),
        "mutual_information": np.maximum(
            entropy(mean) - entropies / num_samples, 0.0
        ).astype("float32"),
    }
    return [{key: value[i] for key, value in stats.items()} for i in range(len(mean))]


def mc_dropout(model, images, *, num_samples=10, batch_size=1, seed=None, tile_size="auto",
               tile_overlap=64, tta_flip=False, scales=(1.0,), precision=None, jit_compile=None):
    """Monte-Carlo dropout: ``num_samples`` stochastic passes per image, BatchNorm frozen.

    Each sample is a whole :func:`keras_fcn.inference.predict` pass with the same tiling,
    flips and scales, run by the model's Monte-Carlo dropout copy (every tile and flip with
    its own dropout masks), so the maps describe the probabilities that ``predict`` labels
    with those options: with the dropout switched off, ``"mean"`` would be ``predict``'s
    probabilities. Large images are tiled as in ``predict``.

    Args:
        model: a keras_fcn model with Dropout layers (``drop6``/``drop7`` in the VGG16 FCNs).
        images: one image ``(H, W, 3)`` in [0, 255], a stack, or a list of images of any size.
        num_samples: number of stochastic passes (>= 2).
        batch_size: images (or tiles) per forward pass.
        seed: optional integer seed for the dropout masks (the same seed, images and options
            give the same maps).
        tile_size, tile_overlap, tta_flip, scales, precision, jit_compile: as for
            :func:`keras_fcn.inference.predict` (``tile_size=None`` refuses images of more
            than ``MAX_UNTILED_PIXELS`` pixels, naming ``tile_size``).

    Returns:
        A dict with ``"labels"`` (argmax of the mean), ``"mean"`` (mean softmax ``(H, W, C)``),
        ``"variance"`` (variance of the softmax over samples, averaged over classes,
        ``(H, W)``) and ``"mutual_information"`` (entropy of the mean minus the mean entropy,
        ``(H, W)``, the epistemic part of the uncertainty). Values are arrays for one image,
        stacked for a stack, lists for a list.

    Example:
        result = mc_dropout(model, image, num_samples=8, tile_size=512, tta_flip=True)
        result["variance"].shape == image.shape[:2]
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(
            f"num_samples must be an integer >= 2. Received: num_samples={num_samples!r}")
    arrays, kind, scales = checked_images(images, batch_size=batch_size, tile_size=tile_size,
                                          tile_overlap=tile_overlap, scales=scales)
    # The dropout copy of the model in `precision` (its own weights in that precision).
    net = in_precision(model, precision)
    if seed is not None:
        mc = _MC_MODELS[net] = mc_dropout_model(net, seed=seed)
    else:
        mc = cached_mc_model(net)

    def sample(stack):
        return stack_probabilities(mc, stack, scales=scales, tile_size=tile_size,
                                   overlap=tile_overlap, batch_size=batch_size, flip=tta_flip,
                                   jit_compile=jit_compile)

    results = map_same_size(lambda stack: _mc_statistics(lambda: sample(stack), num_samples),
                            arrays)
    return {key: restore_kind([r[key] for r in results], kind) for key in results[0]}
