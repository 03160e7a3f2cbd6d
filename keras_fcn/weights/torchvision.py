"""torchvision's ResNet and FCN-ResNet state dicts as keras_fcn weights, and their download.

torchvision's keys name the modules (``backbone.layer3.5.conv2.weight``,
``classifier.1.running_var``, ``aux_classifier.4.bias``); the Keras layers of
:mod:`keras_fcn.models.resnet` carry the same names with ``_`` for ``.`` and without the
``backbone.`` prefix (``layer3_5_conv2``, ``classifier_1``), so converting is a renaming plus
the layouts: convolution kernels ``(O, I, H, W)`` -> ``(H, W, I, O)``, batch norm
``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean, moving_variance``
(``num_batches_tracked`` is a training counter and is dropped).

What loading drops on purpose: the ImageNet classifier ``fc`` of a plain ResNet (an FCN has
none), and the auxiliary head ``aux_classifier`` of torchvision's released FCN weights when the
model was built without it (``aux=False``): torchvision trains with that head for an extra loss
and its ``model(x)["out"]`` never uses it. Everything else must match: an unknown key, a layer
of the model without weights in the file, or a shape that differs is a ``ValueError`` naming
the key and both shapes.

Example:
    >>> sd = {"backbone.conv1.weight": np.zeros((64, 3, 7, 7), "float32")}
    >>> [a.shape for a in convert_torchvision_state_dict(sd)["conv1"]]
    [(7, 7, 3, 64)]
"""

import hashlib
import os
import re

import numpy as np

from keras_fcn.weights.imagenet import fetch_weights_file
from keras_fcn.weights.torch import float_weights, read_state_dict

MODELS_URL = "https://download.pytorch.org/models/"
# torchvision's ImageNet ResNets (ResNet50_Weights / ResNet101_Weights.IMAGENET1K_V1), the
# backbones its FCN-ResNets were trained from.
IMAGENET_FILES = {50: "resnet50-0676ba61.pth", 101: "resnet101-63fe2227.pth"}

# Module paths of a (dilated) ResNet and of torchvision's FCN heads, with their parameters.
_CONV = ("weight", "bias")
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var")
_NAME = re.compile(
    r"^(conv1|bn1|fc|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01])"
    r"|(aux_)?classifier\.[014])$")
DROPPED_PARAMS = ("num_batches_tracked",)
AUX_PREFIX = "aux_classifier_"
IMAGENET_CLASSIFIER = "fc"


def _is_batch_norm(module):
    last = module.rsplit(".", 1)[-1]
    return (last.startswith("bn") or module.endswith("downsample.1")
            or module.endswith("classifier.1"))


def _torch_key(name, param):
    """The state-dict key of a Keras layer's parameter, for messages."""
    prefix = "" if "classifier" in name else "backbone."
    module = name.replace("_", ".").replace("aux.classifier", "aux_classifier")
    return f"{prefix}{module}.{param}"


def _group(state_dict):
    """``{module path: {param: array}}``, ``backbone.``/``module.`` stripped, counters dropped."""
    modules = {}
    for key, value in state_dict.items():
        path = key[len("module."):] if key.startswith("module.") else key
        path = path[len("backbone."):] if path.startswith("backbone.") else path
        module, _, param = path.rpartition(".")
        if param in DROPPED_PARAMS:
            continue
        if not _NAME.match(module):
            raise ValueError(
                f"State dict key {key!r} is not a parameter of torchvision's ResNet-50/101 or "
                "FCN-ResNet (expected backbone.conv1/bn1/layerN.i.*, classifier.0/1/4, "
                "aux_classifier.0/1/4 or fc).")
        allowed = _BATCH_NORM if _is_batch_norm(module) else _CONV
        if param not in allowed:
            raise ValueError(f"State dict key {key!r}: {module} takes {allowed}, not {param!r}.")
        modules.setdefault(module, {})[param] = float_weights(key, value)
    return modules


def convert_torchvision_state_dict(state_dict_or_path):
    """Converts a torchvision ResNet-50/101 or FCN-ResNet state dict to keras_fcn weights.

    Args:
        state_dict_or_path: ``{key: tensor or array}`` (``model.state_dict()`` of
            ``torchvision.models.segmentation.fcn_resnet50`` etc., or of a plain
            ``torchvision.models.resnet50``), or the path of a ``.pth`` file holding one.

    Returns:
        ``{keras layer name: [arrays in Keras order]}`` (float32): ``layer3_5_conv2:
        [kernel]``, ``classifier_1: [gamma, beta, moving_mean, moving_variance]``,
        ``classifier_4: [kernel, bias]``; ``fc`` (a plain ResNet's) is kept as
        ``[kernel (I, O), bias]`` for the loader to drop.

    Raises:
        ValueError: a key that is not one of these networks' parameters, or a layer with
            parameters missing; the message names the key.

    Example:
        >>> sd = {"classifier.4.weight": np.zeros((21, 512, 1, 1)),
        ...       "classifier.4.bias": np.zeros(21)}
        >>> [a.shape for a in convert_torchvision_state_dict(sd)["classifier_4"]]
        [(1, 1, 512, 21), (21,)]
    """
    weights = {}
    for module, params in _group(read_state_dict(state_dict_or_path)).items():
        name = module.replace(".", "_")
        if _is_batch_norm(module):
            absent = [p for p in _BATCH_NORM if p not in params]
            if absent:
                raise ValueError(f"State dict: batch norm {module!r} lacks {absent}.")
            weights[name] = [params[p] for p in _BATCH_NORM]
            continue
        if "weight" not in params:
            raise ValueError(f"State dict: {module!r} has a bias but no weight.")
        kernel = params["weight"]
        kernel = kernel.T if kernel.ndim == 2 else kernel.transpose(2, 3, 1, 0)
        weights[name] = [kernel] + ([params["bias"]] if "bias" in params else [])
    return weights


def load_torchvision_weights(model, state_dict_or_path, trunk_only=False):
    """Sets a torchvision ResNet / FCN-ResNet state dict into a keras_fcn FCN-ResNet.

    Args:
        model: a model of :func:`keras_fcn.models.build_fcn_resnet50` (or 101).
        state_dict_or_path: see :func:`convert_torchvision_state_dict`.
        trunk_only: the source is a backbone (an ImageNet ResNet): only the trunk's layers
            must be in it; the heads keep their initialization.

    Returns:
        The sorted names of the layers set.

    Raises:
        ValueError: a layer of the model (of its trunk with ``trunk_only``) missing from the
            state dict, a state-dict layer the model does not have (other than ``fc`` and,
            for a model without the auxiliary head, ``aux_classifier``), or a shape
            mismatch: the message names the key and both shapes.

    Example:
        >>> load_torchvision_weights(model, "fcn_resnet50_coco-1167a1af.pth")  # doctest: +SKIP
    """
    source = convert_torchvision_state_dict(state_dict_or_path)
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    has_aux = any(name.startswith(AUX_PREFIX) for name in layers)
    unused = sorted(name for name in source if name not in layers
                    and name != IMAGENET_CLASSIFIER
                    and (has_aux or not name.startswith(AUX_PREFIX)))
    if unused:
        raise ValueError(f"The state dict has layers the model {model.name!r} does not have: "
                         f"{[_torch_key(n, 'weight') for n in unused]}. Is it the same "
                         "depth (ResNet-50/101)?")
    wanted = [name for name in layers if not (trunk_only and "classifier" in name)]
    missing = sorted(name for name in wanted if name not in source)
    if missing:
        raise ValueError(f"The model's layers {missing} have no weights in the state dict.")
    for name in wanted:
        arrays, layer = source[name], layers[name]
        params = _BATCH_NORM if len(arrays) == 4 else _CONV
        if len(arrays) != len(layer.weights):
            raise ValueError(
                f"State dict: {_torch_key(name, '*')!r} has {params[:len(arrays)]}, the "
                f"model's layer {name!r} takes {len(layer.weights)} arrays (a bias where the "
                "model has none, or none where it has one).")
        for param, array, weight in zip(params, arrays, layer.weights):
            if tuple(array.shape) != tuple(weight.shape):
                raise ValueError(
                    f"State dict key {_torch_key(name, param)!r} has shape {array.shape} in "
                    f"Keras layout, the model's layer {name!r} needs {tuple(weight.shape)}.")
        layer.set_weights(arrays)
    return sorted(wanted)


def check_sha256_prefix(path, filename=None):
    """Checks a downloaded torchvision file against the hash prefix in its name.

    torchvision names its files ``<name>-<first hex digits of the sha256>.pth``. A file that
    does not match is deleted (an incomplete or wrong download) and a ValueError says so.

    Returns:
        ``path``.

    Example:
        >>> check_sha256_prefix("/cache/resnet50-0676ba61.pth")  # doctest: +SKIP
    """
    filename = filename or os.path.basename(path)
    match = re.search(r"-([0-9a-f]{6,})\.pth$", filename)
    if match is None:
        raise ValueError(f"{filename!r} carries no sha256 prefix (expected name-<hex>.pth).")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        os.remove(path)
        raise ValueError(
            f"{path}: its sha256 {digest.hexdigest()[:16]}... does not start with "
            f"{match.group(1)} (the prefix in torchvision's file name): an incomplete or wrong "
            "download. The file was deleted: call again to download it anew.")
    return path


def fetch_torchvision_resnet_weights(depth, cache_dir=None, url=None):
    """The local path of torchvision's ImageNet ResNet-``depth`` (IMAGENET1K_V1), downloaded
    once into the Keras cache and checked against the sha256 prefix of its name.

    Args:
        depth: 50 or 101.
        cache_dir: cache root; ``None`` means ``$KERAS_HOME``, else ``~/.keras``.
        url: another address of the same file (a mirror, or ``file://``).

    Raises:
        RuntimeError: offline and not cached; the message says where to put the file.
        ValueError: the file fails its hash prefix (and was deleted).

    Example:
        >>> path = fetch_torchvision_resnet_weights(50)  # doctest: +SKIP
    """
    if depth not in IMAGENET_FILES:
        raise ValueError(f"torchvision's ImageNet ResNets here are {sorted(IMAGENET_FILES)}. "
                         f"Received: depth={depth!r}")
    filename = IMAGENET_FILES[depth]
    path = fetch_weights_file(
        filename, url or MODELS_URL + filename, None, cache_dir,
        f"ImageNet ResNet-{depth} weights (torchvision)",
        f"build_fcn_resnet{depth}(weights='/path/to/{filename}')")
    return check_sha256_prefix(path, filename)
