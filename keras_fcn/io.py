"""Writing outputs safely: one atomic writer for files and folders, with ordinary permissions.

Every file keras_fcn writes (models, checkpoints, JSON, PNG, NPY, videos, TFLite, SavedModel
folders) goes through :func:`atomic_write` or :func:`atomic_write_dir`: the output is written
to a temporary name in the destination folder and renamed into place, so an interrupted run
never leaves a half-written file where a complete one was, and it gets the permissions a plain
``open`` would give under the user's umask (``mkstemp`` alone creates files 0600).

Example:
    >>> from keras_fcn import io
    >>> io.write_json("runs/a/metrics.json", {"mean_iu": 0.61})
    >>> io.save_model(model, "runs/a/best.keras")
"""

import json
import math
import os
import shutil
import tempfile

import numpy as np

# Image files the readers, predict and export accept (what Pillow decodes).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def set_default_permissions(path):
    """Gives ``path`` (a file, or a folder and everything in it) the permissions that
    ``open``/``os.makedirs`` give under the current umask: 0644/0755 under umask 0022."""
    umask = _umask()
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~umask)
        return
    os.chmod(path, 0o777 & ~umask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def check_writable(path, overwrite):
    """Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False; creates the
    parent folder otherwise."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True (--overwrite) to replace it.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def atomic_write(path, write_fn, overwrite=True):
    """Writes a file through a temporary file in the same folder, then renames it.

    Args:
        path: destination path.
        write_fn: called with the temporary path (which has the same extension, so writers
            that pick a format from it work); must create that file.
        overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Returns:
        ``path``.

    Example:
        >>> atomic_write("out.keras", model.save)
    """
    path = os.fspath(path)
    check_writable(path, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    # All the suffixes ("x.weights.h5" -> ".weights.h5"): writers pick the format from them.
    suffix = base[base.index(".", 1):] if "." in base[1:] else ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        set_default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_dir(path, write_fn, overwrite=True):
    """Writes a folder (a SavedModel, say) under a temporary name, then swaps it into place.

    Args:
        path: destination folder.
        write_fn: called with the temporary folder path (it does not exist yet).
        overwrite: if False and ``path`` exists, raises ``FileExistsError``; if True an
            existing folder is replaced only after the new one is complete.

    Returns:
        ``path``.
    """
    path = os.fspath(path)
    check_writable(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    holder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    tmp = os.path.join(holder, "out")
    try:
        write_fn(tmp)
        set_default_permissions(tmp)
        if os.path.isdir(path):
            old = os.path.join(holder, "old")
            os.replace(path, old)
        elif os.path.exists(path):
            os.remove(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return path


def write_bytes(path, data, overwrite=True):
    """Writes ``bytes`` (or ``str``, as UTF-8) to ``path`` atomically."""
    mode = "w" if isinstance(data, str) else "wb"

    def write(tmp):
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            f.write(data)

    return atomic_write(path, write, overwrite)


def jsonable(obj):
    """``obj`` with numpy values turned into Python ones and non-finite floats into None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path, obj, overwrite=True):
    """Writes ``obj`` as indented JSON, atomically (see :func:`jsonable`)."""
    return write_bytes(path, json.dumps(jsonable(obj), indent=2) + "\n", overwrite)


def read_json(path, what="JSON file"):
    """Reads a JSON file; a missing or broken file raises an error that names it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{what} {path!r} is not valid JSON: {error}") from error


def save_model(model, path, overwrite=True):
    """Saves a Keras model atomically: ``path`` always holds a complete model.

    Example:
        >>> save_model(model, "runs/a/best.keras")
    """
    return atomic_write(path, model.save, overwrite)


def save_png(path, image, overwrite=True):
    """Saves a PIL image (or a uint8 array) as PNG, atomically."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype="uint8"))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite)


def save_npy(path, array, overwrite=True):
    """Saves a numpy array atomically."""

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    return atomic_write(path, write, overwrite)
