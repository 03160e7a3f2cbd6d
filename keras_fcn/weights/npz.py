"""Portable weight files: ``{layer: [arrays]}`` as an ``.npz`` with keys ``layer/0``,
``layer/1``, ... (no pickles; any numpy reads it).

Example:
    >>> save_npz(convert_caffemodel("fcn8s-heavy-pascal.caffemodel"), "fcn8s.npz")  # doctest: +SKIP
    >>> weights = load_npz("fcn8s.npz")  # doctest: +SKIP
"""

import os
import zipfile
import zlib

import numpy as np

from keras_fcn.io import atomic_write


def save_npz(weights, path, overwrite=True):
    """Saves {layer: [arrays]} as an .npz with keys "layer/0", "layer/1", ..., atomically.

    Args:
      weights: {layer_name: list of arrays}.
      path: output file; written as given (no ".npz" is appended).
      overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Returns:
      The path written.

    Example:
      >>> save_npz({"fc7": [np.zeros((1, 1, 4, 4)), np.zeros(4)]}, "/tmp/w.npz")  # doctest: +SKIP
    """
    arrays = {}
    for layer, values in weights.items():
        if "/" in layer:
            raise ValueError(f"layer name {layer!r} may not contain '/'")
        for i, value in enumerate(values):
            arrays[f"{layer}/{i}"] = np.asarray(value)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write, overwrite)


def _npz_array(archive, key, path):
    """Reads one array of an open .npz; a damaged member raises ValueError naming the file."""
    try:
        return archive[key]
    # zipfile.BadZipFile (bad CRC) is not an OSError; numpy raises ValueError/EOFError on a bad
    # .npy header, zlib.error on bad compressed data.
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: array {key!r} is damaged: {e}") from None


def check_finite(array, origin, key):
    """Raises ValueError naming ``origin`` and the array ``key`` if ``array`` has NaN or
    infinite values: a diverged checkpoint must not load silently.

    Example:
        >>> check_finite(np.array([1.0, np.nan]), "w.npz", "fc7/0")
        Traceback (most recent call last):
        ValueError: w.npz: array 'fc7/0' has 1 NaN or infinite values of 2; ...
    """
    array = np.asarray(array)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise ValueError(f"{origin}: array {key!r} has {bad} NaN or infinite values of "
                         f"{array.size}; expected finite weights (a diverged checkpoint?)")


def load_npz(path):
    """Loads weights saved by save_npz.

    Args:
      path: an .npz with keys "layer/index".

    Returns:
      {layer_name: [arrays in index order]}.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      IsADirectoryError: ``path`` is a directory.
      ValueError: not an .npz archive, a damaged array, a key that is not "layer/index",
        indices of a layer with gaps, or an array with NaN or infinite values (the message
        names the file and the array).

    Example:
      >>> weights = load_npz("fcn8s.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; expected an .npz file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith((b"PK\x03\x04", b"\x93NUMPY")):  # numpy.savez's zip; an .npy
        raise ValueError(f"{path}: not an .npz archive (numpy.savez writes a zip file; this one "
                         f"starts with {head[:4]!r}): a broken file or another format")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz file: {e}") from None
    if not hasattr(archive, "files"):
        raise ValueError(f"{path}: expected an .npz archive, got a single array")
    grouped = {}
    with archive:
        for key in archive.files:
            layer, _, index = key.rpartition("/")
            if not layer or not index.isdigit():
                raise ValueError(f"{path}: key {key!r} is not of the form 'layer/index'")
            array = _npz_array(archive, key, path)
            check_finite(array, path, key)
            grouped.setdefault(layer, {})[int(index)] = array
    weights = {}
    for layer, by_index in grouped.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{path}: layer {layer!r} has indices {sorted(by_index)}, "
                             f"expected 0..{len(by_index) - 1}")
        weights[layer] = [by_index[i] for i in range(len(by_index))]
    return weights
