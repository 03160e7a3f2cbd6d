"""Inference with FCN models: prediction at any size, uncertainty, overlays, temporal smoothing.

Everything here works on numpy arrays: images are ``(H, W, 3)`` RGB with values in [0, 255]
(uint8 or float), probabilities are ``(H, W, C)`` float32 softmax maps, label maps are
``(H, W)`` integer class ids. Models are any keras_fcn model (logits ``(N, H, W, C)`` aligned
with the input); models without a layer named ``preprocess`` get their input scaling applied
here (``keras_fcn.preprocess_input`` for VGG16, ``x / 127.5 - 1`` for MobileNetV2).

Example:
    >>> labels, probs = predict(model, image)                      # one image, any size
    >>> labels, probs = predict(model, [img_a, img_b], tta_flip=True)  # list, own sizes
    >>> labels, probs = predict(model, big_image, tile_size=512, tile_overlap=128)
    >>> rgb = overlay(image, labels, alpha=0.5)
"""

import json
import os
import tempfile
import weakref

import numpy as np
import keras
import tensorflow as tf

from keras_fcn import datasets
from keras_fcn.layers import preprocess_input

IGNORE_LABEL = 255

# PASCAL VOC class names (index = class id); 255 is void.
VOC_CLASS_NAMES = datasets.VOC_CLASSES

_PREDICT_FNS = weakref.WeakKeyDictionary()
_MC_MODELS = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def has_preprocessing(model):
    """Tells whether ``model`` (or a model nested in it) has a layer named ``preprocess``.

    Args:
        model: a ``keras.Model``.

    Returns:
        True if the model takes raw RGB in [0, 255] itself.

    Example:
        >>> has_preprocessing(build_fcn("32s", weights=None, include_preprocessing=True))
        True
    """
    for layer in model.layers:
        if layer.name == "preprocess":
            return True
        if isinstance(layer, keras.Model) and has_preprocessing(layer):
            return True
    return False


def _softmax_fn(model):
    """A compiled ``images -> softmax(model(images))`` function, cached per model."""
    fn = _PREDICT_FNS.get(model)
    if fn is None:
        model_ref = weakref.ref(model)  # a strong reference would keep the cache key alive

        def forward(x):
            logits = model_ref()(x, training=False)
            return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

        fn = tf.function(forward, reduce_retracing=True)
        _PREDICT_FNS[model] = fn
    return fn


def _is_mobilenet_v2(model):
    from keras_fcn.models.mobilenet_v2 import PadToMultiple

    return any(isinstance(layer, PadToMultiple) for layer in model.layers)


def default_preprocessing(model):
    """The input function ``model`` expects for RGB images in [0, 255].

    Args:
        model: a keras_fcn model.

    Returns:
        None if the model has its own ``preprocess`` layer; ``x / 127.5 - 1`` for a
        MobileNetV2 FCN; ``keras_fcn.preprocess_input`` (Caffe BGR mean) for the VGG16 FCNs.

    Example:
        >>> default_preprocessing(build_fcn8s(weights=None)) is preprocess_input
        True
    """
    if has_preprocessing(model):
        return None
    if _is_mobilenet_v2(model):
        return lambda x: x / 127.5 - 1.0
    return preprocess_input


def _model_input(model, images):
    """Casts/preprocesses a float32 RGB stack ``(n, H, W, 3)`` for ``model``."""
    preprocess = default_preprocessing(model)
    if preprocess is not None:
        return np.asarray(preprocess(images), dtype="float32")
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    if dtype == "uint8":
        return np.clip(np.round(images), 0, 255).astype("uint8")
    return images.astype(dtype)


def _forward(fn, model, images, batch_size):
    """Runs ``fn`` over a same-size stack in chunks of ``batch_size``; returns float32 numpy."""
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = _model_input(model, images[start : start + batch_size])
        outputs.append(np.asarray(fn(tf.convert_to_tensor(chunk)), dtype="float32"))
    return np.concatenate(outputs, axis=0)


def _tile_starts(length, tile, overlap):
    """Start offsets of tiles of size ``tile`` covering ``length``, the last one flush."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length, overlap):
    """1-D blending weights: ramps up over ``overlap`` pixels at both ends, never zero."""
    if overlap <= 0:
        return np.ones(length, "float32")
    idx = np.arange(length, dtype="float32")
    distance = np.minimum(idx + 0.5, length - idx - 0.5)
    return np.clip(distance / overlap, 1.0 / overlap, 1.0).astype("float32")


def _tiled_probabilities(fn, model, images, tile_size, overlap, batch_size):
    """Blends the softmax of overlapping tiles of a same-size stack ``(n, H, W, 3)``."""
    n, height, width, _ = images.shape
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    weight = np.outer(_ramp(tile_h, overlap), _ramp(tile_w, overlap))[None, :, :, None]
    total, weights = None, np.zeros((1, height, width, 1), "float32")
    for top in _tile_starts(height, tile_h, overlap):
        for left in _tile_starts(width, tile_w, overlap):
            window = (slice(None), slice(top, top + tile_h), slice(left, left + tile_w))
            probs = _forward(fn, model, images[window], batch_size)
            if total is None:
                total = np.zeros((n, height, width, probs.shape[-1]), "float32")
            total[window] += probs * weight
            weights[window] += weight
    return total / weights


def _resize(array, size, method="bilinear"):
    """Resizes a stack ``(n, H, W, C)`` to ``size`` = (h, w) with TensorFlow."""
    if tuple(array.shape[1:3]) == tuple(size):
        return array
    return tf.image.resize(array, size, method=method, antialias=False).numpy().astype("float32")


def _probabilities(fn, model, images, tile_size, overlap, batch_size):
    height, width = images.shape[1:3]
    if tile_size is not None and (height > tile_size or width > tile_size):
        return _tiled_probabilities(fn, model, images, tile_size, overlap, batch_size)
    return _forward(fn, model, images, batch_size)


def _tta_probabilities(fn, model, images, *, scales, tta_flip, tile_size, overlap, batch_size):
    """Averages softmax over scales and (optionally) horizontal flips, at the input size."""
    height, width = images.shape[1:3]
    total, count = 0.0, 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = _resize(images, size)
        variants = [scaled, scaled[:, :, ::-1]] if tta_flip else [scaled]
        for i, variant in enumerate(variants):
            probs = _probabilities(fn, model, np.ascontiguousarray(variant), tile_size, overlap,
                                   batch_size)
            if i == 1:
                probs = probs[:, :, ::-1]
            total = total + _resize(probs, (height, width))
            count += 1
    return (total / count).astype("float32")


def _check_predict_args(batch_size, tile_size, tile_overlap, scales):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if tile_size is not None:
        if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
            raise ValueError(
                f"tile_size must be None or a positive integer. Received: tile_size={tile_size!r}"
            )
        if not isinstance(tile_overlap, int) or not 0 <= tile_overlap < tile_size:
            raise ValueError(
                "tile_overlap must be an integer in [0, tile_size). "
                f"Received: tile_overlap={tile_overlap!r}, tile_size={tile_size!r}"
            )
    scales = tuple(scales)
    if not scales or any(not isinstance(s, (int, float)) or s <= 0 for s in scales):
        raise ValueError(f"scales must be positive numbers. Received: scales={scales!r}")
    return scales


def _as_image_list(images):
    """Returns ``(list of float32 (H, W, 3) arrays, kind)`` with kind 'single'|'batch'|'list'."""
    if isinstance(images, (list, tuple)):
        arrays, kind = [np.asarray(image) for image in images], "list"
    else:
        array = np.asarray(images)
        if array.ndim == 3:
            arrays, kind = [array], "single"
        elif array.ndim == 4:
            arrays, kind = list(array), "batch"
        else:
            raise ValueError(
                "images must be (H, W, 3), (N, H, W, 3) or a list of (H, W, 3) arrays. "
                f"Received: shape={array.shape}"
            )
    for i, array in enumerate(arrays):
        _check_image(i, array)
    return [a.astype("float32") for a in arrays], kind


def _check_image(i, array):
    """Raises ValueError naming image ``i`` unless it is a finite, non-empty real RGB array."""
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"Image {i} must have shape (H, W, 3). Received: shape={array.shape}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"Image {i} is empty. Received: shape={array.shape}")
    # Strings and objects would fail (or turn into NaN) in the float cast; complex values
    # would lose their imaginary part.
    if array.dtype.kind not in "biuf":
        raise ValueError(f"Image {i} must hold real numbers (uint8 or float). "
                         f"Received: dtype={array.dtype}")
    # NaN/Inf pass through the network without an error and give meaningless labels.
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"Image {i} has {int(np.size(array) - np.isfinite(array).sum())} "
                         "NaN or infinite values.")


def _group_by_size(arrays):
    """Maps each distinct (H, W) to the indices of the images of that size, in order."""
    groups = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape[:2], []).append(i)
    return groups


def _package(labels, probs, kind, return_probabilities):
    if kind == "single":
        labels, probs = labels[0], probs[0]
    elif kind == "batch":
        labels, probs = np.stack(labels), np.stack(probs)
    return (labels, probs) if return_probabilities else labels


def predict(model, images, *, batch_size=1, tile_size=None, tile_overlap=64, tta_flip=False,
            scales=(1.0,), return_probabilities=True):
    """Predicts label maps (and softmax probabilities) for images of any size.

    Images of the same size are batched together (``batch_size`` at a time); images of
    different sizes are each predicted at their own size, never padded. Images larger than
    ``tile_size`` are cut into overlapping tiles whose probabilities are blended with weights
    that ramp down over the overlap. Test-time augmentation averages the softmax over
    ``scales`` (the image is resized, the probabilities resized back) and horizontal flips.

    Args:
        model: a keras_fcn model; if it has no ``preprocess`` layer, its input scaling is
            applied to the images first (see ``default_preprocessing``).
        images: one RGB image ``(H, W, 3)`` in [0, 255], a stack ``(N, H, W, 3)`` or a list of
            images of any sizes.
        batch_size: images (or tiles) per forward pass.
        tile_size: if set, images with a side longer than this are predicted in square tiles.
        tile_overlap: overlap of neighbouring tiles in pixels (``< tile_size``).
        tta_flip: also predict the mirrored image and average.
        scales: image scales to average over, e.g. ``(0.75, 1.0, 1.25)``.
        return_probabilities: if False only the label maps are returned.

    Returns:
        ``(labels, probabilities)``: int32 ``(H, W)`` and float32 ``(H, W, C)`` for one image,
        stacked arrays for a stack, lists for a list. Only ``labels`` if
        ``return_probabilities=False``.

    Example:
        >>> labels, probs = predict(model, np.zeros((37, 53, 3), np.uint8))
        >>> labels.shape, probs.shape
        ((37, 53), (37, 53, 21))
    """
    scales = _check_predict_args(batch_size, tile_size, tile_overlap, scales)
    arrays, kind = _as_image_list(images)
    fn = _softmax_fn(model)
    probs = [None] * len(arrays)
    for indices in _group_by_size(arrays).values():
        stack = np.stack([arrays[i] for i in indices])
        out = _tta_probabilities(fn, model, stack, scales=scales, tta_flip=tta_flip,
                                 tile_size=tile_size, overlap=tile_overlap, batch_size=batch_size)
        for i, p in zip(indices, out):
            probs[i] = p
    labels = [np.argmax(p, axis=-1).astype("int32") for p in probs]
    return _package(labels, probs, kind, return_probabilities)


# --------------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------------


def entropy(probabilities):
    """Per-pixel softmax entropy ``-sum_c p_c log p_c`` in nats (``log C`` when uniform).

    Args:
        probabilities: ``(..., C)`` probabilities summing to 1 over the last axis.

    Returns:
        float32 array ``(...)``.

    Example:
        >>> round(float(entropy(np.full((1, 1, 4), 0.25))[0, 0]), 4)  # log(4)
        1.3863
    """
    p = np.asarray(probabilities, dtype="float64")
    logs = np.log(np.where(p > 0, p, 1.0))
    return (-(p * logs).sum(axis=-1)).astype("float32")


def margin(probabilities):
    """Per-pixel margin between the two largest probabilities (top1 - top2); low is uncertain.

    Args:
        probabilities: ``(..., C)`` with ``C >= 2``.

    Returns:
        float32 array ``(...)`` in [0, 1].

    Example:
        >>> round(float(margin(np.array([[0.1, 0.6, 0.3]]))[0]), 4)
        0.3
    """
    p = np.asarray(probabilities, dtype="float32")
    if p.shape[-1] < 2:
        raise ValueError(f"margin needs at least 2 classes. Received: shape={p.shape}")
    top2 = np.partition(p, -2, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]).astype("float32")


class _AlwaysOnDropout(keras.layers.Dropout):
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
        model: a functional keras model with at least one ``Dropout`` layer.
        seed: optional integer seed for the dropout masks.

    Returns:
        A ``keras.Model`` with the same inputs, outputs and (shared) weights.

    Example:
        >>> mc = mc_dropout_model(model)
        >>> samples = [mc(x) for _ in range(8)]  # differ where dropout > 0
    """
    counter = [0]

    def clone(layer):
        if isinstance(layer, keras.layers.Dropout):
            counter[0] += 1
            layer_seed = None if seed is None else seed + counter[0]
            return _AlwaysOnDropout(layer.rate, noise_shape=layer.noise_shape, seed=layer_seed,
                                    name=layer.name)
        return layer  # reuse: the copy shares weights with the original

    mc = keras.models.clone_model(model, clone_function=clone, recursive=True)
    if counter[0] == 0:
        raise ValueError(
            f"Monte-Carlo dropout needs a model with Dropout layers. Model {model.name!r} has none."
        )
    return mc


def mc_dropout(model, images, *, num_samples=10, batch_size=1, seed=None):
    """Monte-Carlo dropout: ``num_samples`` stochastic passes per image, BatchNorm frozen.

    Args:
        model: a keras_fcn model with Dropout layers (``drop6``/``drop7`` in the VGG16 FCNs).
        images: one image ``(H, W, 3)`` in [0, 255], a stack, or a list of images of any size.
        num_samples: number of stochastic forward passes (>= 2).
        batch_size: images per forward pass.
        seed: optional integer seed for the dropout masks.

    Returns:
        A dict with ``"labels"`` (argmax of the mean), ``"mean"`` (mean softmax ``(H, W, C)``),
        ``"variance"`` (variance of the softmax over samples, averaged over classes,
        ``(H, W)``) and ``"mutual_information"`` (entropy of the mean minus the mean entropy,
        ``(H, W)``, the epistemic part of the uncertainty). Values are arrays for one image,
        stacked for a stack, lists for a list.

    Example:
        >>> result = mc_dropout(model, image, num_samples=8)
        >>> result["variance"].shape == image.shape[:2]
        True
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2. Received: num_samples={num_samples!r}")
    mc = _MC_MODELS.get(model)
    if mc is None or seed is not None:
        mc = mc_dropout_model(model, seed=seed)
        _MC_MODELS[model] = mc
    arrays, kind = _as_image_list(images)
    fn = _softmax_fn(mc)
    results = [None] * len(arrays)
    for indices in _group_by_size(arrays).values():
        stack = np.stack([arrays[i] for i in indices])
        samples = np.stack([_forward(fn, model, stack, batch_size) for _ in range(num_samples)])
        stats = _mc_statistics(samples)
        for j, i in enumerate(indices):
            results[i] = {key: value[j] for key, value in stats.items()}
    return _package_dicts(results, kind)


def _mc_statistics(samples):
    """Statistics of MC samples ``(S, n, H, W, C)``."""
    mean = samples.mean(axis=0)
    return {
        "labels": np.argmax(mean, axis=-1).astype("int32"),
        "mean": mean.astype("float32"),
        "variance": samples.var(axis=0).mean(axis=-1).astype("float32"),
        "mutual_information": np.maximum(
            entropy(mean) - entropy(samples).mean(axis=0), 0.0
        ).astype("float32"),
    }


def _package_dicts(results, kind):
    keys = results[0].keys()
    if kind == "single":
        return results[0]
    if kind == "batch":
        return {key: np.stack([r[key] for r in results]) for key in keys}
    return {key: [r[key] for r in results] for key in keys}


# --------------------------------------------------------------------------------------------
# Palettes, class names, overlays, masks, heatmaps
# --------------------------------------------------------------------------------------------


def voc_palette(num_colors=256):
    """The PASCAL VOC colour map as a uint8 array ``(num_colors, 3)`` (see
    ``keras_fcn.datasets.voc_palette``).

    Example:
        >>> voc_palette()[[0, 1, 15]].tolist()
        [[0, 0, 0], [128, 0, 0], [192, 128, 128]]
    """
    return np.asarray(datasets.voc_palette(num_colors), dtype="uint8").reshape(-1, 3)


def _full_palette(palette):
    """A (256, 3) uint8 palette: ``palette`` first, VOC colours after it."""
    full = voc_palette(256)
    if palette is not None:
        palette = np.asarray(palette)
        if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
            raise ValueError(
                f"palette must be up to 256 (r, g, b) colours. Received: shape={palette.shape}"
            )
        if palette.min() < 0 or palette.max() > 255:
            raise ValueError("palette colours must be in 0..255. "
                             f"Received: min={palette.min()}, max={palette.max()}")
        full[: len(palette)] = palette.astype("uint8")
    return full


def _check_labels(labels):
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer (H, W) map. Received: shape={labels.shape}, "
            f"dtype={labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"labels must be in 0..255. Received: min={labels.min()}, max={labels.max()}"
        )
    return labels


def colorize(labels, palette=None):
    """Maps a label map to RGB colours.

    Args:
        labels: integer ``(H, W)`` class ids in 0..255.
        palette: optional ``(K, 3)`` colours for the first K ids (VOC colours otherwise).

    Returns:
        uint8 ``(H, W, 3)``.

    Example:
        >>> colorize(np.array([[0, 1]]))[0, 1].tolist()
        [128, 0, 0]
    """
    return _full_palette(palette)[_check_labels(labels)]


def overlay(image, labels, *, alpha=0.5, palette=None, ignore_label=IGNORE_LABEL):
    """Blends class colours over an image: ``round((1 - alpha) * image + alpha * colour)``.

    Args:
        image: RGB ``(H, W, 3)`` in [0, 255].
        labels: integer ``(H, W)`` class ids.
        alpha: weight of the class colour, in [0, 1].
        palette: optional ``(K, 3)`` colours (VOC colours by default).
        ignore_label: pixels with this label are left as they are.

    Returns:
        uint8 ``(H, W, 3)``.

    Example:
        >>> overlay(np.full((1, 1, 3), 100, np.uint8), np.array([[1]]), alpha=0.5).tolist()
        [[[114, 50, 50]]]
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
    image = np.asarray(image, dtype="float32")
    labels = _check_labels(labels)
    if image.shape[:2] != labels.shape or image.shape[-1] != 3:
        raise ValueError(
            f"image (H, W, 3) and labels (H, W) must match. Received: image={image.shape}, "
            f"labels={labels.shape}"
        )
    colours = colorize(labels, palette).astype("float32")
    blended = (1.0 - alpha) * image + alpha * colours
    blended = np.where((labels == ignore_label)[..., None], image, blended)
    return np.clip(np.floor(blended + 0.5), 0, 255).astype("uint8")


def classes_present(labels, ignore_label=IGNORE_LABEL):
    """Sorted class ids present in ``labels`` (``ignore_label`` left out)."""
    ids = np.unique(np.asarray(labels))
    return [int(i) for i in ids if i != ignore_label]


def _class_name(class_names, class_id):
    if class_names is not None and class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def draw_legend(height, class_ids, class_names=None, palette=None, width=160):
    """Draws a legend (colour swatch and name per class) as an RGB image.

    Args:
        height: height of the legend image in pixels.
        class_ids: class ids to list, in order.
        class_names: optional names indexed by class id.
        palette: optional ``(K, 3)`` colours (VOC colours by default).
        width: width in pixels.

    Returns:
        uint8 ``(height, width, 3)``, white background.

    Example:
        >>> draw_legend(64, [0, 15], VOC_CLASS_NAMES).shape
        (64, 160, 3)
    """
    from PIL import Image, ImageDraw

    colours = _full_palette(palette)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    row = 14
    for i, class_id in enumerate(class_ids):
        top = 4 + i * row
        if top + 10 > height:
            draw.text((4, top - 2), "...", fill=(0, 0, 0))
            break
        draw.rectangle([4, top, 14, top + 10], fill=tuple(int(c) for c in colours[class_id]),
                       outline=(0, 0, 0))
        draw.text((20, top - 1), _class_name(class_names, class_id), fill=(0, 0, 0))
    return np.asarray(canvas, dtype="uint8")


def overlay_with_legend(image, labels, *, alpha=0.5, palette=None, class_names=None,
                        legend_width=160, ignore_label=IGNORE_LABEL):
    """``overlay`` with a legend of the classes present appended on the right.

    Args:
        image, labels, alpha, palette, ignore_label: as for ``overlay``.
        class_names: optional names indexed by class id.
        legend_width: width of the legend strip in pixels.

    Returns:
        uint8 ``(H, W + legend_width, 3)``; ``[:, :W]`` equals ``overlay(...)``.

    Example:
        >>> overlay_with_legend(image, labels, class_names=VOC_CLASS_NAMES).shape[1]
        image.shape[1] + 160
    """
    blended = overlay(image, labels, alpha=alpha, palette=palette, ignore_label=ignore_label)
    height = max(blended.shape[0], 1)
    legend = draw_legend(height, classes_present(labels, ignore_label), class_names, palette,
                         legend_width)
    return np.concatenate([blended, legend[: blended.shape[0]]], axis=1)


def binary_mask(labels, classes):
    """A 0/255 mask of the pixels whose label is one of ``classes``.

    Args:
        labels: integer ``(H, W)``.
        classes: a class id or a sequence of ids.

    Returns:
        uint8 ``(H, W)`` with 255 inside the mask, 0 elsewhere.

    Example:
        >>> binary_mask(np.array([[0, 15, 7]]), [15, 7]).tolist()
        [[0, 255, 255]]
    """
    classes = [classes] if np.isscalar(classes) else list(classes)
    return np.where(np.isin(np.asarray(labels), classes), 255, 0).astype("uint8")


def heatmap(values, *, cmap="viridis", vmin=None, vmax=None):
    """Applies a matplotlib colormap to a 2-D array.

    Args:
        values: float ``(H, W)``.
        cmap: matplotlib colormap name.
        vmin, vmax: value range mapped to the ends of the colormap (data range by default).

    Returns:
        uint8 RGB ``(H, W, 3)``.

    Example:
        >>> heatmap(entropy(probs), vmin=0, vmax=np.log(21)).shape
        (H, W, 3)
    """
    import matplotlib

    values = np.asarray(values, dtype="float32")
    if values.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D array. Received: shape={values.shape}")
    lo = float(np.nanmin(values)) if vmin is None else float(vmin)
    hi = float(np.nanmax(values)) if vmax is None else float(vmax)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    rgba = matplotlib.colormaps[cmap](np.clip(scaled, 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype("uint8")


# --------------------------------------------------------------------------------------------
# Labels sidecar and atomic file output
# --------------------------------------------------------------------------------------------


def labels_sidecar_path(model_path):
    """The labels sidecar of a model file: ``x.keras`` -> ``x.labels.json``."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + ".labels.json"


def read_labels_sidecar(model_path):
    """Reads class names and palette from the model's sidecar JSON, if there is one.

    The file ``<model>.labels.json`` holds ``{"class_names": [...], "palette": [[r, g, b],
    ...]}``; both keys are optional.

    Args:
        model_path: path of the ``.keras`` (or other) model file.

    Returns:
        ``(class_names or None, palette array or None)``; ``(None, None)`` without a sidecar.

    Example:
        >>> names, palette = read_labels_sidecar("camvid_fcn8s.keras")
    """
    path = labels_sidecar_path(model_path)
    if not os.path.isfile(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Labels sidecar {path!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"Labels sidecar {path!r} must hold a JSON object. Received: {data!r}")
    names = data.get("class_names")
    palette = data.get("palette")
    if palette is not None:
        palette = np.asarray(palette, dtype="int64")
        _full_palette(palette)  # validates
    return (list(names) if names is not None else None), palette


def set_default_permissions(path):
    """Gives a temporary file (created 0600) the permissions a plain ``open`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path, write_fn, overwrite=True):
    """Writes a file through a temporary file in the same folder, then renames it.

    Args:
        path: destination path.
        write_fn: called with the temporary path; must create that file.
        overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Returns:
        ``path``.

    Example:
        >>> atomic_write("out.npy", lambda tmp: np.save(open(tmp, "wb"), array))
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"Output exists (use overwrite): {path}")
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # Keep the extension last: writers pick the format from it.
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1] or ".tmp",
                               dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        set_default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_png(path, array, palette=None, overwrite=True):
    """Saves a uint8 image atomically: RGB ``(H, W, 3)``, grey ``(H, W)`` or, with
    ``palette``, a palette ("P" mode) PNG whose pixel values are the class ids.

    Args:
        path: destination ``.png`` path.
        array: uint8 image or, with ``palette``, an integer label map in 0..255.
        palette: ``True`` for the VOC palette or a ``(K, 3)`` palette; None for RGB/grey.
        overwrite: see ``atomic_write``.

    Returns:
        ``path``.

    Example:
        >>> save_png("labels.png", labels, palette=True)  # opens with class colours
    """
    from PIL import Image

    if palette is not None:
        image = Image.fromarray(_check_labels(array).astype("uint8"), mode="P")
        colours = _full_palette(None if palette is True else palette)
        image.putpalette(colours.reshape(-1).tolist())
    else:
        image = Image.fromarray(np.asarray(array, dtype="uint8"))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite)


def save_npy(path, array, overwrite=True):
    """Saves a numpy array atomically (see ``atomic_write``)."""

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    return atomic_write(path, write, overwrite)


# --------------------------------------------------------------------------------------------
# Temporal consistency
# --------------------------------------------------------------------------------------------


class TemporalSmoother:
    """Exponential moving average of class probabilities over video frames (flow-free).

    ``smoothed_t = alpha * probs_t + (1 - alpha) * smoothed_{t-1}``; ``alpha=1`` is no
    smoothing. The average restarts when the frame size changes or on ``reset()``.

    Args:
        alpha: weight of the current frame, in (0, 1].

    Example:
        >>> smoother = TemporalSmoother(alpha=0.5)
        >>> smoothed = [smoother(p) for p in frame_probabilities]
    """

    def __init__(self, alpha):
        if not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]. Received: alpha={alpha!r}")
        self.alpha = float(alpha)
        self.state = None

    def reset(self):
        self.state = None

    def __call__(self, probabilities):
        p = np.asarray(probabilities, dtype="float32")
        if self.state is None or self.state.shape != p.shape:
            self.state = p.copy()
        else:
            self.state = self.alpha * p + (1.0 - self.alpha) * self.state
        return self.state


def smooth_probabilities(frames, alpha):
    """Applies ``TemporalSmoother(alpha)`` to a sequence of probability maps.

    Args:
        frames: iterable of ``(H, W, C)`` probabilities.
        alpha: weight of the current frame, in (0, 1].

    Returns:
        A list of smoothed float32 ``(H, W, C)`` maps.

    Example:
        >>> smoothed = smooth_probabilities(probs_per_frame, alpha=0.4)
    """
    smoother = TemporalSmoother(alpha)
    return [smoother(p).copy() for p in frames]


class FlickerMeter:
    """Counts label changes between consecutive frames, one frame at a time (no frame list
    kept in memory).

    Example:
        >>> meter = FlickerMeter()
        >>> for labels in label_frames:
        ...     meter.update(labels)
        >>> meter.rate
    """

    def __init__(self):
        self.previous = None
        self.changed = 0
        self.total = 0

    def update(self, labels):
        """Adds a frame; a frame of another size than the previous one raises ValueError."""
        labels = np.asarray(labels)
        if self.previous is not None:
            if self.previous.shape != labels.shape:
                raise ValueError(
                    f"Frames must share one size. Received: {self.previous.shape} and "
                    f"{labels.shape}"
                )
            self.changed += int(np.count_nonzero(self.previous != labels))
            self.total += labels.size
        self.previous = labels.copy()

    @property
    def rate(self):
        """Fraction of pixels that changed label, over all consecutive pairs (0.0 if none)."""
        return self.changed / self.total if self.total else 0.0


def flicker_rate(label_frames):
    """Fraction of pixels whose label changes between consecutive frames, over all pairs.

    Args:
        label_frames: sequence of integer ``(H, W)`` label maps of one size.

    Returns:
        A float in [0, 1] (0.0 for fewer than 2 frames).

    Example:
        >>> flicker_rate([np.array([[0, 1]]), np.array([[0, 2]]), np.array([[0, 2]])])
        0.25
    """
    meter = FlickerMeter()
    for labels in label_frames:
        meter.update(labels)
    return meter.rate


# --------------------------------------------------------------------------------------------
# Edge-aware refinement (a cheap stand-in for a dense CRF)
# --------------------------------------------------------------------------------------------


def _box_mean(x, radius):
    """Mean over a (2r+1)^2 window (clipped at the borders) of ``x`` ``(H, W, ...)``."""
    def along(axis, a):
        n = a.shape[axis]
        c = np.cumsum(a, axis=axis, dtype="float64")
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        hi = np.minimum(np.arange(n) + radius + 1, n)
        lo = np.maximum(np.arange(n) - radius, 0)
        return np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)

    ones = np.ones(x.shape[:2] + (1,) * (x.ndim - 2))
    count = along(1, along(0, ones))
    return along(1, along(0, x)) / count


def refine_boundaries(image, probabilities, *, radius=4, eps=1e-2):
    """Edge-aware refinement of class probabilities with a colour guided filter.

    Each class probability map is filtered with the image as the guide (He, Sun, Tang,
    "Guided Image Filtering", ECCV 2010): inside a window the output is an affine function
    of the image colour, so class boundaries snap to image edges. Cheap (a few box filters,
    vectorised numpy), no training, no extra package. (Dense CRF: ``pydensecrf`` 1.0rc3 fails
    to build on Python 3.11 (``longintrepr.h``); its fork ``pydensecrf2`` 1.1 ships no wheels
    but builds from source with a C++ compiler.)

    Args:
        image: RGB ``(H, W, 3)`` in [0, 255].
        probabilities: ``(H, W, C)`` softmax.
        radius: window radius in pixels.
        eps: regularization (on colours scaled to [0, 1]); larger is smoother.

    Returns:
        float32 ``(H, W, C)`` probabilities (non-negative, summing to 1).

    Example:
        >>> refined = refine_boundaries(image, probs, radius=4, eps=1e-2)
        >>> labels = refined.argmax(-1)
    """
    guide = np.asarray(image, dtype="float64") / 255.0
    p = np.asarray(probabilities, dtype="float64")
    if guide.shape[:2] != p.shape[:2] or guide.shape[-1] != 3:
        raise ValueError(
            f"image (H, W, 3) and probabilities (H, W, C) must match. Received: "
            f"image={guide.shape}, probabilities={p.shape}"
        )
    mean_i = _box_mean(guide, radius)                                   # (H, W, 3)
    mean_p = _box_mean(p, radius)                                       # (H, W, C)
    corr_ip = _box_mean(guide[..., :, None] * p[..., None, :], radius)  # (H, W, 3, C)
    cov_ip = corr_ip - mean_i[..., :, None] * mean_p[..., None, :]
    corr_ii = _box_mean(guide[..., :, None] * guide[..., None, :], radius)  # (H, W, 3, 3)
    cov_ii = corr_ii - mean_i[..., :, None] * mean_i[..., None, :]
    a = np.linalg.solve(cov_ii + eps * np.eye(3), cov_ip)               # (H, W, 3, C)
    b = mean_p - np.einsum("hwk,hwkc->hwc", mean_i, a)
    q = np.einsum("hwk,hwkc->hwc", guide, _box_mean(a, radius)) + _box_mean(b, radius)
    q = np.maximum(q, 0.0)
    q /= np.maximum(q.sum(axis=-1, keepdims=True), 1e-12)
    return q.astype("float32")
