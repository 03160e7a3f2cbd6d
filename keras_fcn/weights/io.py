"""Reading weight files by layer name, copying them into FCN models, and writing them.

Every supported file is first read into one neutral form, a dict ``{layer_name: [arrays]}``
in Keras layouts, and then copied into a model by name with :func:`set_weights_by_name`.
That one path serves the ImageNet VGG16 backbone (net surgery of ``fc1``/``fc2`` into
``fc6``/``fc7``), staged initialization (FCN-16s from FCN-32s, FCN-8s from FCN-16s) and
the released reference weights (Caffe and PyTorch, see
:func:`keras_fcn.weights.convert.convert_to_keras_model`).

Example:
    >>> fcn16s = keras_fcn.build_fcn16s(weights=None)
    >>> set_weights_by_name(fcn16s, read_weights("runs/fcn32s.keras"))  # doctest: +SKIP
"""

import logging
import os
import warnings
import zipfile

import numpy as np

from keras_fcn.io import atomic_write, save_model
from keras_fcn.weights.imagenet import KERAS_VGG16_TO_FCN, VGG16_FCN_LAYERS
from keras_fcn.weights.npz import check_finite, load_npz, save_npz

log = logging.getLogger("keras_fcn")

# The name prefixes of the FCN heads' layers (keras_fcn.models.heads, which imports them from
# here: the weights wing sits below the models): new for each task, so a classifier file or an
# earlier stage (FCN-32s for FCN-16s) does not have them; load_weights warns about others.
HEAD_PREFIXES = ("score", "upscore", "fuse_", "scale_pool", "classifier", "aux_classifier")
# What save_weights_file writes (keras_fcn.weights.convert reads the released files).
SAVED_SUFFIXES = (".weights.h5", ".keras", ".npz")

def read_weights(source):
    """Reads weights by layer name from a file or a model.

    Args:
        source: a ``keras.Model``, or a path to a ``.keras`` model, a legacy Keras ``.h5``
            weights file (such as the ``keras.applications`` VGG16 file) or a ``.npz`` file
            written by :func:`save_npz`. Keras 3 ``.weights.h5`` files store
            weights by position, not by name: load those with ``model.load_weights`` into
            the same architecture (the builders' ``weights=`` argument does that).

    Returns:
        ``{layer_name: [numpy arrays]}`` in the order of the layer's weights; layers without
        weights are left out.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        IsADirectoryError: ``source`` is a directory.
        ValueError: an unreadable or unknown file, or a file with NaN or infinite weights
            (the message names the layer and array).
    """
    import keras

    if isinstance(source, keras.Model):
        return _read_model(source)
    path = os.fspath(source)
    if os.path.isdir(path):
        raise IsADirectoryError(f"Weights path {path!r} is a directory; expected a .keras, "
                                ".h5 or .npz file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    if path.endswith(".npz"):
        return load_npz(path)  # checks the values itself
    if path.endswith(".keras"):
        return check_finite_weights(_read_model(load_model_file(path)), path)
    if path.endswith(".h5") or path.endswith(".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(f"Cannot read weights file {path!r} as HDF5: {error}") from error
        with f:
            try:
                return check_finite_weights(_read_h5(f, path), path)
            # h5py raises KeyError for a missing group or attribute, TypeError for an
            # attribute of the wrong kind, OSError for a damaged dataset.
            except (KeyError, TypeError, OSError) as error:
                raise ValueError(
                    f"Weights file {path!r} is not a complete Keras weights file: {error}"
                ) from error
    raise ValueError(
        f"Unknown weights file type: {path!r}. Expected a .keras, .weights.h5, .h5 or .npz file."
    )


def check_finite_weights(weights, origin):
    """Returns ``weights`` (``{layer: [arrays]}``), or raises ValueError naming the first
    array (``layer/index``) with NaN or infinite values.

    Example:
        >>> check_finite_weights({"fc7": [np.array([np.nan])]}, "w.h5")
        Traceback (most recent call last):
        ValueError: w.h5: array 'fc7/0' has 1 NaN or infinite values of 1; ...
    """
    for layer, arrays in weights.items():
        for i, array in enumerate(arrays):
            check_finite(array, origin, f"{layer}/{i}")
    return weights


def _read_model(model):
    return {
        layer.name: [np.asarray(w) for w in layer.get_weights()]
        for layer in model.layers
        if layer.weights
    }


MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")  # what keras.models.load_model reads as a file
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer identifier of a .tflite file, at bytes 4-8


def is_tflite_file(path):
    """Whether ``path`` names a TFLite model: a ``.tflite`` name or the TFL3 identifier.

    Example:
        >>> is_tflite_file("export/fcn8s_int8.tflite")
        True
    """
    if not isinstance(path, (str, os.PathLike)):
        return False
    if os.fspath(path).lower().endswith(".tflite"):
        return True
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(8)[4:8] == TFLITE_IDENTIFIER


def load_model_file(path):
    """Loads a ``.keras`` model file (uncompiled); a damaged file raises a ValueError naming it.

    Example:
        >>> model = load_model_file("runs/fcn8s.keras")  # doctest: +SKIP
    """
    import keras

    if is_tflite_file(path):  # Keras would say "legacy SavedModel format is not supported"
        raise ValueError(f"{os.fspath(path)!r} is a TFLite model; expected a .keras model file "
                         "(or a preset name). Run a .tflite with examples/litert_segment.py or "
                         "keras_fcn.export.TFLiteRunner.")
    # Keras' message for a file of another kind (a photo, a JSON file) is about SavedModels
    # and TFSMLayer; a SavedModel folder keeps it.
    suffix = os.path.splitext(os.fspath(path))[1].lower() if isinstance(
        path, (str, os.PathLike)) else None
    if suffix is not None and suffix not in MODEL_SUFFIXES and os.path.isfile(path):
        named = f"its name ends in {suffix!r}" if suffix else "its name has no suffix"
        raise ValueError(f"Cannot load the model file {os.fspath(path)!r}: {named}; expected "
                         "a .keras file (written by model.save) or a legacy Keras .h5 file.")
    # Keras says "File not found" for an existing .keras file that is not a zip archive.
    if str(path).endswith(".keras") and os.path.isfile(path) and not zipfile.is_zipfile(path):
        detail = "an empty file" if os.path.getsize(path) == 0 else "not a zip archive"
        raise ValueError(f"Cannot load the model file {path!r}: it is {detail}; expected a "
                         ".keras file (a zip archive written by model.save).")
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


RGB_CHANNELS = 3  # the input channels of the filters that _adapt extends (RGB or BGR)


def reads_model_input(model, layer):
    """Whether ``layer`` of ``model`` reads its input image: the layer's input is made from the
    model's inputs by layers without weights only (``preprocess``, ``pad1``), as the first
    convolution's (``conv1_1``, AlexNet's ``conv1``). A layer outside a functional graph (a
    subclassed model, a shared layer) counts when it is the model's first layer with weights.

    Example:
        >>> tiny = keras_fcn.build_fcn("32s", 3, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> reads_model_input(tiny, tiny.get_layer("conv1_1"))
        True
    """
    import keras

    try:
        return not keras.Model(model.inputs, layer.input).weights
    except (AttributeError, TypeError, ValueError):  # no graph to follow (public API only)
        return layer is next((other for other in model.layers if other.weights), None)


def input_layer_names(model):
    """The names of ``model``'s layers with weights that read its input image
    (:func:`reads_model_input`).

    Example:
        >>> tiny = keras_fcn.build_fcn("32s", 3, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> input_layer_names(tiny)
        {'conv1_1'}
    """
    return {layer.name for layer in model.layers
            if layer.weights and reads_model_input(model, layer)}


def _adapt(name, arrays, target_shapes, reads_input=False):
    """Reshapes arrays of a source layer to the target layer's shapes where that is exact.

    Handles the net surgery (dense ``fc`` kernels into convolution kernels, same element order
    in NHWC) and, for the layer that reads the model's input image (``reads_input``: the first
    convolution, see :func:`input_layer_names`), RGB filters into a model with more input
    channels (RGB-D): the extra channels get the mean of the RGB filters. Nowhere else is a
    kernel with fewer input channels filled in, and a source with other than 3 (a 1-channel
    model's filters into an RGB model) is refused.

    A 2-D array becomes a kernel ``(kh, kw, in, out)`` only in the flattened dense layout
    ``(kh * kw * in, out)``; another 2-D array of the same size (PyTorch's ``(out, in)``, say)
    would load scrambled, so it is refused.

    Raises:
        ValueError: an array that does not fit, naming the layer, the array's shape and the
            expected one.
    """
    adapted = []
    for array, shape in zip(arrays, target_shapes):
        shape = tuple(shape)
        if array.shape == shape:
            adapted.append(array)
        elif len(shape) == 4 and array.ndim == 2 and array.size == int(np.prod(shape)):
            flat = (int(np.prod(shape[:3])), shape[3])
            if array.shape != flat:
                raise ValueError(
                    f"Weight shape mismatch for layer {name!r}: the file has a 2-D array of "
                    f"shape {array.shape}, the model expects the kernel {shape} or its "
                    f"flattened dense layout {flat} (kh * kw * in, out). A {array.shape} array "
                    "is in another layout (PyTorch's (out, in)?) and would load scrambled.")
            adapted.append(array.reshape(shape))
        elif reads_input and _more_input_channels(array.shape, shape):
            if array.shape[2] != RGB_CHANNELS:
                raise ValueError(
                    f"Weight shape mismatch for layer {name!r}: the file has {array.shape}, "
                    f"the model expects {shape}. The first convolution's extra input channels "
                    f"are filled only from RGB filters ({RGB_CHANNELS} input channels, e.g. "
                    f"for RGB-D); the file's have {array.shape[2]}.")
            extra = np.repeat(array.mean(axis=2, keepdims=True), shape[2] - array.shape[2], axis=2)
            adapted.append(np.concatenate([array, extra], axis=2))
        else:
            raise ValueError(
                f"Weight shape mismatch for layer {name!r}: the file has {array.shape}, "
                f"the model expects {shape}."
            )
    return adapted


def _more_input_channels(have, want):
    """Whether kernel shape ``have`` differs from ``want`` only by fewer input channels."""
    return (len(have) == 4 and len(want) == 4 and have[:2] == want[:2] and have[3] == want[3]
            and want[2] > have[2])


def _count_message(name, layer, arrays):
    """The error for a layer given another number of arrays than it has, naming the missing
    ones (``Layer 'conv3_2' has 2 weight arrays (kernel, bias), the source has 1: no bias``)."""
    roles = [weight.name.rsplit("/", 1)[-1] for weight in layer.weights]
    if len(arrays) < len(roles):
        what = f"no {', '.join(roles[len(arrays):])}"
    else:
        what = f"{len(arrays) - len(roles)} more than the layer holds"
    return (f"Layer {name!r} has {len(roles)} weight arrays ({', '.join(roles)}), the source "
            f"has {len(arrays)}: {what}.")


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

    Arrays must have the layer's shapes, with two exceptions: a flattened dense kernel
    ``(kh * kw * in, out)`` loads into a convolution (net surgery), and RGB filters load into
    the first convolution of a model with more input channels (RGB-D; see :func:`_adapt`).

    Returns:
        The sorted list of model layer names that were set. Every layer is checked before
        any is set: after a ``ValueError`` the model has all its weights as before.

    Example:
        >>> tiny = {"weights": None, "widths": (4, 4, 8, 8, 8), "fc_units": 8}
        >>> fcn32s = keras_fcn.build_fcn("32s", 5, **tiny)
        >>> fcn16s = keras_fcn.build_fcn("16s", 5, **tiny)
        >>> set_weights_by_name(fcn16s, read_weights(fcn32s))[:3]  # staged init
        ['conv1_1', 'conv1_2', 'conv2_1']
    """
    rename = rename or {}
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    planned = {}  # every layer is checked before any is set: a misfit leaves the model as it was
    for source_name, arrays in weights.items():
        name = rename.get(source_name, source_name)
        layer = layers.get(name)
        if layer is None:
            continue
        target_shapes = [w.shape for w in layer.weights]
        if len(arrays) != len(target_shapes):
            message = _count_message(name, layer, arrays)
            if skip_mismatch:
                log.warning(message)
                continue
            raise ValueError(message)
        try:
            extends = any(_more_input_channels(getattr(a, "shape", ()), tuple(t))
                          for a, t in zip(arrays, target_shapes))  # RGB-D: only then look
            planned[name] = _adapt(name, arrays, target_shapes,
                                   extends and reads_model_input(model, layer))
        except ValueError:
            if not skip_mismatch:
                raise
            log.warning("Skipped layer %r: shapes do not match.", name)
    done = list(planned)
    missing = sorted(set(required) - set(done))
    if missing:
        raise ValueError(f"These layers were not found in the weights: {missing}")
    for name, arrays in planned.items():
        layers[name].set_weights(arrays)
    unset = sorted(set(layers) - set(done))
    if unset:
        log.info("Layers left at their initialization: %s", unset)
    return sorted(done)


def load_weights(model, weights):
    """Loads the ``weights`` argument of the FCN builders into ``model``.

    Args:
        model: the freshly built FCN model.
        weights: a path (see :func:`read_weights`) or a ``keras.Model``. ``"imagenet"`` is
            each trunk's own (``keras_fcn.models.get_trunk(name).load_weights``); the builders
            resolve it.

    Returns:
        The list of layer names that were set.

    Raises:
        ValueError: ``weights="imagenet"`` (which ImageNet classifier depends on the trunk),
            or weights that match no layer of the model.

    Warns:
        UserWarning: the weights set some layers but leave trunk layers with weights (all
            but the heads' ``score*``/``upscore*``/``classifier*`` layers, which a classifier
            file or an earlier stage does not have) at their random initialization; the
            message gives how many and the first few.
    """
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            "weights='imagenet' names each trunk's own ImageNet classifier: build the model "
            "with it (keras_fcn.build_fcn(..., weights='imagenet')) or call "
            "keras_fcn.models.get_trunk(backbone).load_weights(model, 'imagenet'). "
            f"Received: load_weights({getattr(model, 'name', model)!r}, 'imagenet')")
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".weights.h5"):
        return _load_same_architecture(model, os.fspath(weights))
    source = read_weights(weights)
    is_vgg16_classifier = "block1_conv1" in source
    done = set_weights_by_name(
        model,
        source,
        rename=KERAS_VGG16_TO_FCN if is_vgg16_classifier else None,
        required=VGG16_FCN_LAYERS if is_vgg16_classifier else (),
    )
    if not done:  # a file of another network: loading nothing must not pass for success
        origin = (os.fspath(weights) if isinstance(weights, (str, os.PathLike))
                  else getattr(weights, "name", type(weights).__name__))
        raise ValueError(match_no_layer_message(origin, source, model))
    unset = trunk_layers_left(model, done)
    if unset:
        origin = (os.fspath(weights) if isinstance(weights, (str, os.PathLike))
                  else getattr(weights, "name", type(weights).__name__))
        weighted = [layer.name for layer in model.layers if layer.weights]
        more = ", ..." if len(unset) > 5 else ""
        warnings.warn(
            f"The weights of {origin!r} set {len(done)} of the {len(weighted)} layers with "
            f"weights of {model.name!r}; {len(unset)} trunk layers keep their random "
            f"initialization: {', '.join(unset[:5])}{more}. Expected weights for every trunk "
            "layer (a file saved from the same backbone).", UserWarning, stacklevel=2)
    return done


def trunk_layers_left(model, done):
    """The model's layers with weights, other than the heads' (:data:`HEAD_PREFIXES`), that are
    not in ``done``: the trunk layers a weights source left at their initialization.

    Example:
        >>> tiny = keras_fcn.build_fcn("32s", 3, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> trunk_layers_left(tiny, ["conv1_2", "score_fr"])[:3]
        ['conv1_1', 'conv2_1', 'conv2_2']
    """
    done = set(done)
    return sorted(layer.name for layer in model.layers if layer.weights
                  and layer.name not in done and not layer.name.startswith(HEAD_PREFIXES))


def match_no_layer_message(origin, source, model):
    """The error for weights that set no layer of `model` (a file of another network).

    Example:
        raise ValueError(match_no_layer_message("resnet18.pth", state_dict, model))
    """
    theirs = sorted(source)[:5]
    ours = sorted(layer.name for layer in model.layers if layer.weights)[:5]
    return (f"The weights of {origin!r} match no layer of {model.name!r}: "
            f"its layers are {theirs}..., the model's {ours}... Expected weights "
            "saved from an FCN of this family or converted to its layer names.")


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


def _save_keras_weights(model, tmp):
    # Keras insists on the ".weights.h5" ending, which the temporary name has not.
    model.save_weights(tmp + ".weights.h5")
    os.replace(tmp + ".weights.h5", tmp)


def save_weights_file(model, path, overwrite=False):
    """Writes a model, or its weights, in the format the path's suffix names, atomically.

    Args:
        model: a ``keras.Model``.
        path: ``.keras`` (the model), ``.weights.h5`` (Keras weights, which load into the
            same architecture) or ``.npz`` (:func:`save_npz` of the weights by layer name).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Example:
        >>> save_weights_file(model, "fcn8s_voc.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.endswith(".npz"):
        return save_npz(read_weights(model), path, overwrite)
    if path.endswith(".keras"):
        return save_model(model, path, overwrite)
    if path.endswith(".weights.h5"):
        return atomic_write(path, lambda tmp: _save_keras_weights(model, tmp), overwrite)
    raise ValueError(f"Unknown output type: {path!r}. Expected one of {SAVED_SUFFIXES}.")
