"""Converting the PyTorch state dicts of the "pytorch-fcn" port (``torchfcn.models.FCN32s``
etc.) to keras_fcn weights. torch is imported only to read a ``.pth`` file.

Example:
    >>> weights = convert_torch_state_dict("fcn8s_from_caffe.pth")  # doctest: +SKIP
"""

import os
import re
import zipfile

import numpy as np

from keras_fcn.weights.layouts import (
    KNOWN_LAYERS,
    TRANSPOSED_LAYERS,
    base_layer_name,
    check_rename,
    layer_arrays,
    reject,
)
from keras_fcn.weights.npz import check_finite


def _unwrap_checkpoint(obj, path):
    """Returns the state dict inside a torch checkpoint (plain, or under a training key)."""
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got a {type(obj).__name__} "
                         f"(save with torch.save(model.state_dict(), path))")
    return obj


def load_torch_state_dict(path):
    """Loads a .pth state dict as numpy arrays (imports torch lazily).

    Args:
      path: a file written by torch.save(model.state_dict(), path), or a checkpoint holding one
        under "model_state_dict" / "state_dict".

    Returns:
      {key: np.ndarray}.

    Example:
      >>> sd = load_torch_state_dict("fcn8s_from_caffe.pth")  # doctest: +SKIP
    """
    path = os.fspath(path)
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(f"reading {path} needs PyTorch (pip install torch): {e}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch file: {_first_line(e, path)}") from None
    return {k: _to_numpy(v) for k, v in _unwrap_checkpoint(obj, path).items()}


def _is_zip(path):
    """``zipfile.is_zipfile``, False where it raises on a damaged archive (one that claims to
    span several disks)."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _first_line(error, path):
    """The first line of torch's error, without its terminal colours; for a file that needs
    unpickling (``weights_only``), what to save instead; for one that is neither the zip
    archive ``torch.save`` writes nor a legacy pickle, that it is broken or another format;
    for an empty file or one that ends early (a cut download), that, with its size."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        size, head = None, b""
    if size == 0:
        return "the file is empty (0 bytes); expected a state dict written by torch.save"
    if head and not head.startswith((b"PK\x03\x04", b"\x80")):
        return (f"its first bytes {head!r} are neither the zip archive torch.save writes nor "
                "a pickle: a broken file or another format")
    if (head.startswith(b"PK") and not _is_zip(path)) or isinstance(error, EOFError):
        what = ("a zip archive without its end (central directory)" if head.startswith(b"PK")
                else "a pickle that ends early")
        said = text.split(". ")[0].splitlines()[0] if text else type(error).__name__
        return (f"the file looks truncated or damaged: {what}, {size} bytes (torch: {said}); "
                "download or save it again")
    if text.startswith("Weights only load failed"):
        return ("it holds pickled Python objects, not only tensors (a whole model saved with "
                "torch.save(model)?); save model.state_dict() instead")
    return text.splitlines()[0] if text else type(error).__name__


def _to_numpy(value):
    """Returns a tensor or array-like as a numpy array; floating tensors become float32
    (numpy has no bfloat16, a common dtype of saved state dicts)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def float_weights(key, value, origin="state dict"):
    """``value`` as a float32 array, or a ValueError naming ``origin`` and ``key`` when it
    holds no floats (integers, booleans: a quantized or wrong tensor) or NaN or infinite
    values (a diverged checkpoint): neither may load as weights.

    Example:
      >>> float_weights("fc7.weight", np.ones(2, "float16")).dtype
      dtype('float32')
    """
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise ValueError(f"{origin}: entry {key!r} holds {array.dtype} values; expected "
                         "floating-point weights (a quantized or integer tensor cannot be "
                         "converted).")
    check_finite(array, origin, key)
    return array.astype(np.float32)


def read_state_dict(state_dict_or_path):
    """A state dict as ``{key: np.ndarray}``, from a dict of tensors or arrays or a .pth path.

    Example:
      >>> read_state_dict({"fc.bias": [0.0, 1.0]})["fc.bias"]
      array([0., 1.])
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        return load_torch_state_dict(state_dict_or_path)
    if isinstance(state_dict_or_path, dict):
        return {key: _to_numpy(value) for key, value in state_dict_or_path.items()}
    raise TypeError(f"expected a state dict or a .pth path, got "
                    f"{type(state_dict_or_path).__name__}")


def _group_state_dict(state_dict, rename, strict, origin):
    """Groups `layer.weight` / `layer.bias` entries by (renamed) layer name."""
    entries = {key.removeprefix("module."): value for key, value in state_dict.items()}
    names = [layer for layer, _, param in (key.rpartition(".") for key in entries)
             if layer and param in ("weight", "bias")]
    check_rename(rename, list(dict.fromkeys(names)), origin)
    layers = {}
    for key, value in entries.items():
        layer, _, param = key.rpartition(".")
        if param not in ("weight", "bias") or not layer:
            reject(f"state dict entry {key!r} is not a `<layer>.weight` or `<layer>.bias`",
                    strict)
            continue
        name = rename.get(layer, layer)
        if base_layer_name(name) is None:
            reject(f"state dict layer {layer!r} has no keras_fcn counterpart {name!r}; map it "
                    f"with rename={{{layer!r}: ...}} to one of {sorted(KNOWN_LAYERS)}", strict)
            continue
        layers.setdefault(name, {})[param] = float_weights(key, value, origin)
    return layers


def convert_torch_state_dict(state_dict_or_path, rename=None, strict=True):
    """Converts a pytorch-fcn (torchfcn.models.FCN*) state dict to keras_fcn weights.

    Args:
      state_dict_or_path: {"conv1_1.weight": tensor_or_array, ...} or the path of a .pth file.
      rename: optional {torch_layer_name: keras_name}.
      strict: raise on an entry that cannot be mapped (else warn and skip it).

    Returns:
      {keras_layer_name: [kernel, bias?]} in Keras layouts (float32); `upscore*` layers are
      ConvTranspose2d and become Conv2DTranspose kernels (kh, kw, out, in).

    Example:
      >>> sd = {"score_fr.weight": np.zeros((21, 4096, 1, 1)), "score_fr.bias": np.zeros(21)}
      >>> [a.shape for a in convert_torch_state_dict(sd)["score_fr"]]
      [(1, 1, 4096, 21), (21,)]
    """
    state_dict = read_state_dict(state_dict_or_path)
    origin = (os.fspath(state_dict_or_path)
              if isinstance(state_dict_or_path, (str, os.PathLike)) else "state dict")
    weights = {}
    for name, params in _group_state_dict(state_dict, dict(rename or {}), strict,
                                          origin).items():
        if "weight" not in params:
            raise ValueError(f"layer {name!r} has a bias but no weight in the state dict")
        weights[name] = layer_arrays(name, params["weight"], params.get("bias"),
                                      transposed=base_layer_name(name) in TRANSPOSED_LAYERS)
    return weights
