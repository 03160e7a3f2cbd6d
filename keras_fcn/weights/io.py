"""Reading weight files by layer name and copying them into FCN models.

Every supported file is first read into one neutral form, a dict ``{layer_name: [arrays]}``
in Keras layouts, and then copied into a model by name with :func:`set_weights_by_name`.
That one path serves the ImageNet VGG16 backbone (net surgery of ``fc1``/``fc2`` into
``fc6``/``fc7``), staged initialization (FCN-16s from FCN-32s, FCN-8s from FCN-16s) and
converted reference weights (see :mod:`keras_fcn.convert`).
"""

import logging
import os
import zipfile

import numpy as np

log = logging.getLogger("keras_fcn")

VGG16_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
VGG16_WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"

# Keras applications VGG16 layer names -> the paper's names.
_VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)
KERAS_VGG16_TO_FCN = {
    f"block{b}_conv{i}": f"conv{b}_{i}"
    for b, n in enumerate(_VGG16_BLOCK_CONVS, start=1)
    for i in range(1, n + 1)
}
KERAS_VGG16_TO_FCN.update({"fc1": "fc6", "fc2": "fc7"})
VGG16_FCN_LAYERS = tuple(KERAS_VGG16_TO_FCN.values())


def fetch_vgg16_imagenet_weights(cache_dir=None, url=VGG16_WEIGHTS_URL, md5=VGG16_WEIGHTS_MD5):
    """Returns the local path of the Keras ImageNet VGG16 weights, downloading them once.

    The file is verified against its MD5 checksum and cached in ``~/.keras/models`` (or
    ``cache_dir/models``), so later calls work offline.

    Args:
        cache_dir: cache root; ``None`` means ``~/.keras``.
        url: where to download from (a mirror, or a ``file://`` URL).
        md5: expected MD5 checksum of the file.

    Raises:
        RuntimeError: when the file is not cached and cannot be downloaded (offline), or the
            download does not match its checksum; the message says how to pass a local copy.
    """
    import keras

    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".keras"))
    # get_file silently falls back to /tmp/.keras when cache_dir does not exist yet.
    os.makedirs(cache_dir, exist_ok=True)
    cached = os.path.join(cache_dir, "models", VGG16_WEIGHTS_FILE)
    how_to = (
        f"Download {url} on a machine with internet access and either copy it to {cached} or "
        f"pass its path: build_fcn8s(weights='/path/to/{VGG16_WEIGHTS_FILE}'). "
        "Use weights=None for a randomly initialized trunk."
    )
    try:
        return keras.utils.get_file(
            VGG16_WEIGHTS_FILE, url, cache_subdir="models", cache_dir=cache_dir, file_hash=md5
        )
    except ValueError as error:  # get_file's checksum failure
        raise RuntimeError(
            f"The VGG16 weights from {url} failed their MD5 check (expected {md5}): {error}. "
            + how_to
        ) from error
    except Exception as error:  # get_file raises a bare Exception on network failures.
        raise RuntimeError(
            f"Could not fetch the ImageNet VGG16 weights from {url} (offline?): {error}. " + how_to
        ) from error


def read_weights(source):
    """Reads weights by layer name from a file or a model.

    Args:
        source: a ``keras.Model``, or a path to a ``.keras`` model, a legacy Keras ``.h5``
            weights file (such as the ``keras.applications`` VGG16 file) or a ``.npz`` file
            written by :func:`keras_fcn.convert.save_npz`. Keras 3 ``.weights.h5`` files store
            weights by position, not by name: load those with ``model.load_weights`` into
            the same architecture (the builders' ``weights=`` argument does that).

    Returns:
        ``{layer_name: [numpy arrays]}`` in the order of the layer's weights; layers without
        weights are left out.
    """
    import keras

    if isinstance(source, keras.Model):
        return _read_model(source)
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    if path.endswith(".npz"):
        from keras_fcn.weights.convert import load_npz

        return load_npz(path)
    if path.endswith(".keras"):
        return _read_model(load_model_file(path))
    if path.endswith(".h5") or path.endswith(".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(f"Cannot read weights file {path!r} as HDF5: {error}") from error
        with f:
            try:
                return _read_h5(f, path)
            # h5py raises KeyError for a missing group or attribute, TypeError for an
            # attribute of the wrong kind, OSError for a damaged dataset.
            except (KeyError, TypeError, OSError) as error:
                raise ValueError(
                    f"Weights file {path!r} is not a complete Keras weights file: {error}"
                ) from error
    raise ValueError(
        f"Unknown weights file type: {path!r}. Expected a .keras, .weights.h5, .h5 or .npz file."
    )


def _read_model(model):
    return {
        layer.name: [np.asarray(w) for w in layer.get_weights()]
        for layer in model.layers
        if layer.weights
    }


def load_model_file(path):
    """Loads a ``.keras`` model file (uncompiled); a damaged file raises a ValueError naming it.

    Example:
        >>> model = load_model_file("runs/fcn8s.keras")
    """
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    # KeyError: a zip archive without the config.json or weights of a .keras file.
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot load the model file {path!r}: {error}") from error


def _read_h5(f, path):
    if "layer_names" in f.attrs:  # legacy Keras 2 / keras.applications format
        return _read_legacy_h5(f)
    if "layers" in f:
        raise ValueError(
            f"{path!r} is a Keras 3 .weights.h5 file, which stores weights by position, not by "
            "layer name: it loads only into the same architecture (model.load_weights). For "
            "staged initialization pass the trained model itself or its .keras file."
        )
    raise ValueError(f"{path!r} is not a Keras weights file (no 'layer_names' attribute).")


def _read_legacy_h5(f):
    weights = {}
    for raw_name in f.attrs["layer_names"]:
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        group = f[name]
        weight_names = [
            w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs["weight_names"]
        ]
        if weight_names:
            weights[name] = [np.asarray(group[w]) for w in weight_names]
    return weights


def _adapt(name, arrays, target_shapes):
    """Reshapes arrays of a source layer to the target layer's shapes where that is exact.

    Handles the net surgery (dense ``fc`` kernels into convolution kernels, same element order
    in NHWC) and first convolutions with more input channels than the source (RGB-D): the
    extra channels get the mean of the RGB filters.
    """
    adapted = []
    for array, shape in zip(arrays, target_shapes):
        shape = tuple(shape)
        if array.shape == shape:
            adapted.append(array)
        elif array.size == int(np.prod(shape)) and len(shape) == 4 and array.ndim == 2:
            adapted.append(array.reshape(shape))
        elif (
            array.ndim == 4 and len(shape) == 4 and array.shape[:2] == shape[:2]
            and array.shape[3] == shape[3] and shape[2] > array.shape[2]
        ):
            extra = np.repeat(array.mean(axis=2, keepdims=True), shape[2] - array.shape[2], axis=2)
            adapted.append(np.concatenate([array, extra], axis=2))
        else:
            raise ValueError(
                f"Weight shape mismatch for layer {name!r}: the file has {array.shape}, "
                f"the model expects {shape}."
            )
    return adapted


def set_weights_by_name(model, weights, *, rename=None, skip_mismatch=False, required=()):
    """Copies weights into ``model`` by layer name.

    Args:
        model: the target ``keras.Model``.
        weights: ``{layer_name: [arrays]}`` (see :func:`read_weights`).
        rename: optional ``{source_name: model_layer_name}`` applied first (e.g.
            :data:`KERAS_VGG16_TO_FCN`).
        skip_mismatch: when True, layers whose shapes do not fit are skipped with a warning
            instead of raising ``ValueError``.
        required: model layer names that must be set; a missing one raises ``ValueError``.

    Returns:
        The sorted list of model layer names that were set.

    Example:
        >>> fcn16s = build_fcn16s(weights=None)
        >>> set_weights_by_name(fcn16s, read_weights(trained_fcn32s))  # staged init
    """
    rename = rename or {}
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    done = []
    for source_name, arrays in weights.items():
        name = rename.get(source_name, source_name)
        layer = layers.get(name)
        if layer is None:
            continue
        target_shapes = [w.shape for w in layer.weights]
        if len(arrays) != len(target_shapes):
            message = (
                f"Layer {name!r} has {len(target_shapes)} weight arrays, the source has "
                f"{len(arrays)}."
            )
            if skip_mismatch:
                log.warning(message)
                continue
            raise ValueError(message)
        try:
            layer.set_weights(_adapt(name, arrays, target_shapes))
        except ValueError:
            if not skip_mismatch:
                raise
            log.warning("Skipped layer %r: shapes do not match.", name)
            continue
        done.append(name)
    missing = sorted(set(required) - set(done))
    if missing:
        raise ValueError(f"These layers were not found in the weights: {missing}")
    unset = sorted(set(layers) - set(done))
    if unset:
        log.info("Layers left at their initialization: %s", unset)
    return sorted(done)


def load_weights(model, weights):
    """Loads the ``weights`` argument of the FCN builders into ``model``.

    Args:
        model: the freshly built FCN model.
        weights: ``"imagenet"``, a path (see :func:`read_weights`) or a ``keras.Model``.

    Returns:
        The list of layer names that were set.
    """
    if isinstance(weights, str) and weights == "imagenet":
        weights = fetch_vgg16_imagenet_weights()
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".weights.h5"):
        return _load_same_architecture(model, os.fspath(weights))
    source = read_weights(weights)
    is_vgg16_classifier = "block1_conv1" in source
    return set_weights_by_name(
        model,
        source,
        rename=KERAS_VGG16_TO_FCN if is_vgg16_classifier else None,
        required=VGG16_FCN_LAYERS if is_vgg16_classifier else (),
    )


def _load_same_architecture(model, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(
            f"Cannot load {path!r} into {model.name!r}: a Keras .weights.h5 file loads only into "
            "the architecture that saved it. For staged initialization (e.g. FCN-16s from "
            f"FCN-32s) pass the .keras model file or the model itself. ({error})"
        ) from error
    return sorted(layer.name for layer in model.layers if layer.weights)
