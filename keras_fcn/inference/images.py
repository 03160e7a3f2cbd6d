"""The image arguments of predict and mc_dropout: one image, a stack or a list of any sizes.

Images are checked once here, grouped by size so that images of one size run as one stack,
and the per-image results are given back in the form the images came in.

Example:
    >>> arrays, kind = as_image_list(np.zeros((2, 8, 8, 3)))   # kind == "batch"
    >>> sums = map_same_size(lambda stack: stack.sum(axis=(1, 2, 3)), arrays)
    >>> restore_kind(sums, kind)
    array([0., 0.], dtype=float32)
"""

import os

import numpy as np

from keras_fcn._checks import count_non_finite, pixel_value_problem

KINDS = ("single", "batch", "list")
# One forward pass over more pixels than this is refused (its activations would take tens of
# GB): predict and mc_dropout with tile_size=None refuse it, naming tiles.
MAX_UNTILED_PIXELS = 4096 * 4096


def check_image(index, array):
    """Raises ValueError naming image ``index`` unless it is a finite, non-empty real RGB array
    with values in [0, 255].

    Example:
        >>> check_image(0, np.zeros((4, 4, 3)))   # passes
        >>> check_image(1, np.zeros((4, 4)))
        Traceback (most recent call last):
        ValueError: Image 1 must have shape (H, W, 3). Received: shape=(4, 4)
    """
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"Image {index} must have shape (H, W, 3). Received: shape={array.shape}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"Image {index} is empty. Received: shape={array.shape}")
    problem, low, high = (pixel_value_problem(array, allow_bool=False, refuse_unit_floats=True)
                          or (None, None, None))
    # A bool image (a 1-bit file as an array) is 0/1: an almost black photo, as 0..1 floats.
    if problem == "dtype" and array.dtype == bool:
        raise ValueError(f"Image {index} is a bool array (0/1 pixels); expected RGB in "
                         "[0, 255]. Read a 1-bit image file with keras_fcn.inference.read_image, "
                         "or pass image.astype('uint8') * 255.")
    # Strings and objects would fail (or turn into NaN) in the float cast; complex values
    # would lose their imaginary part.
    if problem == "dtype":
        raise ValueError(f"Image {index} must hold real numbers (uint8 or float). "
                         f"Received: dtype={array.dtype}")
    # NaN/Inf pass through the network without an error and give meaningless labels.
    if problem == "non_finite":
        raise ValueError(f"Image {index} has {count_non_finite(array)} NaN or infinite values.")
    # A 16-bit image (uint16 PNG, TIFF) would pass as huge colours and give meaningless labels.
    if problem == "range" and array.dtype.kind in "iu":
        raise ValueError(f"Image {index} has integer values outside 0..255 (min={low}, "
                         f"max={high}, dtype={array.dtype}); expected RGB in [0, 255]. "
                         "Scale 16-bit images first, e.g. (image // 257).astype('uint8').")
    # Floats are on the 0..255 scale too: a uint16 image cast to float, or a normalized one,
    # would give meaningless labels (an all-black float image passes).
    if problem == "range" and low >= 0 and high <= 1:
        raise ValueError(f"Image {index} looks normalized to [0, 1] (max={float(high):g}); "
                         "expected RGB in [0, 255], as the model was trained on. Multiply it "
                         "by 255.")
    if problem == "range":
        raise ValueError(f"Image {index} has values outside [0, 255] (min={low}, "
                         f"max={high}); expected {array.dtype} RGB in [0, 255]. "
                         "Scale 16-bit images first, e.g. image // 257.")


def as_image_list(images):
    """Checks ``images`` and returns ``(list of (H, W, 3) arrays, kind)``: uint8 images stay
    uint8 (a 12000x12000 photo is 0.4 GB, 1.7 GB as float32; ``forward_batches`` casts each
    batch or tile), others become float32.

    Args:
        images: one RGB image ``(H, W, 3)``, a stack ``(N, H, W, 3)`` or a list of images.

    Returns:
        The images and their kind: ``"single"``, ``"batch"`` or ``"list"`` (see
        :func:`restore_kind`).

    Example:
        >>> arrays, kind = as_image_list([np.zeros((4, 5, 3)), np.zeros((6, 7, 3))])
        >>> kind, [a.shape for a in arrays]
        ('list', [(4, 5, 3), (6, 7, 3)])
    """
    listed = images if isinstance(images, (list, tuple)) else [images]
    paths = [item for item in listed if isinstance(item, (str, os.PathLike))]
    if paths:
        raise TypeError("images must be arrays of pixels, not file names; read a file with "
                        "keras_fcn.inference.read_image (tools/predict.py takes files). "
                        f"Received: {os.fspath(paths[0])!r}")
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
    for index, array in enumerate(arrays):
        check_image(index, array)
    return [array if array.dtype == np.uint8 else array.astype("float32")
            for array in arrays], kind


def map_same_size(fn, arrays):
    """Calls ``fn`` on each stack of the same-size arrays; returns its rows in input order.

    Args:
        fn: maps a stack ``(n, H, W, 3)`` to a sequence of ``n`` per-image results.
        arrays: list of ``(H, W, 3)`` arrays of any sizes.

    Returns:
        A list with one result per array.

    Example:
        map_same_size(lambda stack: [len(stack)] * len(stack), [a8, b5, c8])
    """
    groups = {}
    for index, array in enumerate(arrays):
        groups.setdefault(array.shape[:2], []).append(index)
    results = [None] * len(arrays)
    for indices in groups.values():
        # One image is a view, not a copy (np.stack copies).
        stack = (arrays[indices[0]][None] if len(indices) == 1
                 else np.stack([arrays[i] for i in indices]))
        for index, result in zip(indices, fn(stack)):
            results[index] = result
    return results


def restore_kind(values, kind):
    """Per-image ``values`` in the form the images came in: the value itself for a single
    image, a stacked array for a stack, a list for a list.

    Example:
        >>> restore_kind([np.zeros(2), np.ones(2)], "batch").shape
        (2, 2)
    """
    if kind == "single":
        return values[0]
    if kind == "batch":
        return np.stack(values)
    if kind == "list":
        return list(values)
    raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
