"""Converting released FCN weights (Caffe ``.caffemodel``, PyTorch ``.pth``, ``.npz``) into a
keras_fcn model by layer name, refusing a file that would load into the wrong model: the at-once
FCN-8s into the plain one (or the reverse), other classes or fc6/fc7 widths, missing trunk layers.

Example:
    >>> model = keras_fcn.build_fcn8s(num_classes=21, weights=None)
    >>> convert_to_keras_model("fcn8s-heavy-pascal.caffemodel", model)["set"][:2]  # doctest: +SKIP
    ['conv1_1', 'conv1_2']
"""

import os
import warnings

from keras_fcn.weights.caffe import FIXED_SCALES, convert_caffe_layers, read_caffe_layers
from keras_fcn.weights.imagenet import KERAS_VGG16_TO_FCN
from keras_fcn.weights.io import match_no_layer_message, set_weights_by_name, trunk_layers_left
from keras_fcn.weights.layouts import base_layer_name, check_rename
from keras_fcn.weights.npz import load_npz
from keras_fcn.weights.torch import convert_torch_state_dict

# Files of released weights that convert_to_keras_model reads.
CONVERTED_SUFFIXES = (".caffemodel", ".pth", ".pt", ".npz")
# The layers whose output width a build argument sets: (what the width counts, the argument).
SIZED_LAYERS = {"score_fr": ("classes", "num_classes"), "fc6": ("units", "fc_units"),
                "fc7": ("units", "fc_units")}


def read_converted_weights(path, rename=None, strict=True):
    """Reads released weights into ``{keras_layer_name: [arrays]}``, by file extension.

    Args:
        path: a Caffe ``.caffemodel``, a PyTorch ``.pth``/``.pt`` state dict or an ``.npz``
            of :func:`save_npz` (keras.applications VGG16 names, ``block1_conv1``..., are
            renamed with :data:`KERAS_VGG16_TO_FCN`, as :func:`load_weights` does).
        rename: optional ``{source_name: keras_name}`` (e.g. ``{"score59": "score_fr"}``); a
            name the file does not have, or two layers mapped onto one name, raise ValueError.
        strict: fail on source layers with weights that cannot be mapped (else warn).

    Example:
        >>> weights = read_converted_weights("fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
    """
    return _read(path, rename, strict)[0]


def _read(path, rename, strict):
    """(the converted weights, the fixed Scale layers of a .caffemodel: None for other files)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"Input {path!r} is a directory; expected one of the files "
                                f"{CONVERTED_SUFFIXES}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Input file not found: {path!r}")
    if path.endswith(".caffemodel"):
        layers = read_caffe_layers(path)
        scales = [layer.name for layer in layers
                  if layer.type == "Scale" and layer.name in FIXED_SCALES]
        return convert_caffe_layers(layers, rename=rename, strict=strict, origin=path), scales
    if path.endswith((".pth", ".pt")):
        return convert_torch_state_dict(path, rename=rename, strict=strict), None
    if path.endswith(".npz"):
        weights = load_npz(path)
        if "block1_conv1" in weights:  # keras.applications names, renamed as load_weights does
            weights = {KERAS_VGG16_TO_FCN.get(k, k): v for k, v in weights.items()}
        check_rename(dict(rename or {}), list(weights), path)
        return {(rename or {}).get(k, k): v for k, v in weights.items()}, None
    raise ValueError(f"Unknown input type: {path!r}. Expected one of {CONVERTED_SUFFIXES}.")


def convert_to_keras_model(source, model, rename=None, strict=True):
    """Loads released weights (Caffe, PyTorch or ``.npz``) into ``model`` by layer name.

    Args:
        source: a file :func:`read_converted_weights` reads.
        model: the keras_fcn model to fill, built with the source's classes.
        rename: as :func:`read_converted_weights`.
        strict: fail on source layers with weights that cannot be mapped (as
            :func:`read_converted_weights`) and on trunk layers of the model (all but the
            heads' ``score*``/``upscore*``/``classifier*``) that get no weights from the file;
            else warn about both and leave those layers at their initialization.

    Returns:
        ``{"set": [...], "missing": [...], "unused": [...]}`` layer names: set from the file,
        model layers left at their initialization, converted layers the model does not have.

    Raises:
        ValueError: the weights do not fit the model (a shape names the layer; other classes
            or fc6/fc7 units name the ``num_classes``/``fc_units`` to build with; a missing
            array names the file's key, ``'conv3_2.bias'`` of a ``.pth``), they set
            no layer of it (a file of another network: "The weights of ... match no layer"),
            a ``.caffemodel`` of the at-once FCN-8s meets a model without its scaled skips
            or the reverse (the message names the right model), or (``strict``) they leave
            trunk layers unset: the message names the first five and gives their count. The
            model's weights are unchanged after any of these.

    Example:
        >>> model = keras_fcn.build_fcn8s(num_classes=21, weights=None)
        >>> convert_to_keras_model("fcn8s-voc.caffemodel", model)["missing"]  # doctest: +SKIP
        []
    """
    converted, scales = _read(source, rename, strict)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if not with_weights & set(converted):  # loading nothing must not pass for a conversion
        raise ValueError(match_no_layer_message(os.fspath(source), converted, model))
    _check_trunk_set(source, model, converted, strict)  # before any layer is set
    if scales is not None:
        _check_at_once(os.fspath(source), scales, converted, model)
    _check_widths(os.fspath(source), converted, model)
    _check_missing_arrays(os.fspath(source), converted, model, rename)
    try:
        done = set_weights_by_name(model, converted)
    except ValueError as error:
        raise ValueError(
            f"{os.fspath(source)} does not fit the model {model.name!r}: {error}") from None
    return {"set": done, "missing": sorted(with_weights - set(done)),
            "unused": sorted(set(converted) - set(done))}


def _check_trunk_set(source, model, converted, strict):
    """Refuses (``strict``) or warns about a conversion that would leave trunk layers of
    ``model`` without weights (``converted``: ``{model layer name: arrays}``): a released model
    is converted whole, so a trunk layer the file lacks is a file of another network or a
    damaged one. The heads may be missing (a stage's new heads)."""
    left = trunk_layers_left(model, converted)
    if not left:
        return
    trunk = len(trunk_layers_left(model, ()))
    more = f" and {len(left) - 5} more" if len(left) > 5 else ""
    problem = (f"{os.fspath(source)} does not fit the model {model.name!r}: the model's layers "
               f"without weights in the file: {left[:5]}{more} ({len(left)} of its {trunk} "
               "trunk layers)")
    if strict:
        raise ValueError(f"{problem}. Expected a weight for every trunk layer; strict=False "
                         "(--nostrict in tools/convert_weights.py) keeps these at their "
                         "initialization.")
    warnings.warn(f"{problem}; they keep their initialization (strict=False).", UserWarning,
                  stacklevel=3)


def _check_at_once(origin, scales, converted, model):
    """Refuses a .caffemodel whose skips are scaled (``scales``: its fixed Scale layers, the
    at-once FCN-8s) into a model whose are not, or the reverse: the logits would be wrong."""
    names = {layer.name for layer in model.layers}
    for name in sorted(converted):
        if base_layer_name(name) not in ("score_pool4", "score_pool3") or name not in names:
            continue
        scale = "scale_" + name[len("score_"):]
        if (scale in scales) == (scale in names):
            continue
        if scale in scales:
            raise ValueError(
                f"{origin} is an at-once FCN-8s (it has Scale layers {', '.join(scales)}) but "
                f"the model {model.name!r} does not scale pool4/pool3 before score_pool4/"
                "score_pool3: its logits would be wrong. Use --model=fcn8s_at_once "
                "(build_fcn('8s_at_once', ...)).")
        raise ValueError(
            f"{origin} is not an at-once FCN-8s (it has no Scale layers scale_pool4/"
            f"scale_pool3) but the model {model.name!r} is one: it scales pool4 by 0.01 and "
            "pool3 by 0.0001 before score_pool4/score_pool3, so its logits would be wrong. "
            "Use --model=fcn8s (build_fcn('8s', ...)).")


def _check_widths(origin, converted, model):
    """Refuses other classes (score_fr) or fc6/fc7 units in the build argument's terms, before
    the layer-by-layer shapes (the Keras kernels) are compared."""
    for layer in model.layers:
        what = SIZED_LAYERS.get(base_layer_name(layer.name))
        if not what or layer.name not in converted or not layer.weights:
            continue
        have, want = converted[layer.name][0].shape[-1], layer.weights[0].shape[-1]
        if have != want:
            raise ValueError(
                f"{origin} does not fit the model {model.name!r}: {layer.name}: the file has "
                f"{have} {what[0]}, the model {want}: build it with {what[1]}={have}.")


def _check_missing_arrays(origin, converted, model, rename):
    """Refuses a layer the file gives fewer arrays than the model's layer holds (a ``.pth``
    without ``conv3_2.bias``), naming the missing ones by the file's keys."""
    back = {new: old for old, new in (rename or {}).items()}
    for layer in model.layers:
        arrays = converted.get(layer.name)
        if arrays is None or len(arrays) >= len(layer.weights):
            continue
        source = back.get(layer.name, layer.name)
        roles = [weight.name.rsplit("/", 1)[-1] for weight in layer.weights]
        if origin.endswith((".pth", ".pt")):
            keys = [f"{source}.{('weight', 'bias', *roles[2:])[i]}"
                    for i in range(len(arrays), len(roles))]
        elif origin.endswith(".caffemodel"):
            keys = [f"{source} blob {i}" for i in range(len(arrays), len(roles))]
        else:
            keys = [f"{source}/{i}" for i in range(len(arrays), len(roles))]
        raise ValueError(
            f"{origin} does not fit the model {model.name!r}: layer {layer.name!r} has "
            f"{len(roles)} weight arrays ({', '.join(roles)}), the file has {len(arrays)}: "
            f"the {', '.join(roles[len(arrays):])} {'is' if len(keys) == 1 else 'are'} "
            f"missing ({', '.join(map(repr, keys))}).")
