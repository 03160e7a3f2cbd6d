"""Helpers shared by the data set readers: list files, bundled resources, MATLAB files,
images, void-zero labels, and the tf.data pipeline of data sets read by id (NYUDv2, SIFT Flow).

Example:
    >>> read_list_file(resource_path("seg11valid.txt"))[0]
    '2007_000033'
"""

import os

import numpy as np

from keras_fcn.labels import IGNORE_LABEL

RESOURCES = os.path.join(os.path.dirname(__file__), "resources")


def resource_path(name):
    """Path of a file bundled in `keras_fcn/datasets/resources` (split lists).

    Example:
        >>> os.path.basename(resource_path("nyud_test.txt"))
        'nyud_test.txt'
    """
    return os.path.join(RESOURCES, name)


def read_list_file(path):
    """Reads one id (or one whitespace-separated record) per non-empty line.

    Raises:
        FileNotFoundError: no such file. ValueError: not UTF-8 text. Both name the file.

    Example:
        read_list_file("VOC2012/ImageSets/Segmentation/val.txt")[:1]
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"List file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as file:
            return [line.strip() for line in file if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"List file '{path}' is not UTF-8 text: {error}") from None


def write_list_file(path, ids):
    """Writes one id per line (the inverse of `read_list_file`).

    Example:
        >>> write_list_file("/tmp/train.txt", ["5001", "5002"])
    """
    with open(path, "w", encoding="utf-8") as file:
        file.write("".join(f"{i}\n" for i in ids))


def load_mat(path):
    """``scipy.io.loadmat(path)``; a missing file raises FileNotFoundError and a damaged one
    ValueError, both naming the file.

    Example:
        >>> load_mat("segmentation/img_5001.mat")["segmentation"].shape  # doctest: +SKIP
        (425, 560)
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MATLAB file not found: {path!r}")
    try:
        return scipy.io.loadmat(path)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, EOFError, ...
        raise ValueError(f"Cannot read MATLAB file {path!r}: {error}") from error


def read_image_file(path, mode=None):
    """Reads an image file as an array (converted to PIL ``mode`` if given); a damaged file
    raises ValueError naming it. ``"RGB"`` reads as the training pipelines do
    (:func:`keras_fcn.data.arrays.read_image`: a 16-bit grey image keeps its high byte
    instead of PIL's clipping to white).

    Example:
        >>> read_image_file("data/images/img_5001.png", "RGB").shape  # doctest: +SKIP
        (425, 560, 3)
    """
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    if mode == "RGB":
        from keras_fcn.data.arrays import read_image

        return read_image(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image if mode is None else image.convert(mode))
    # PIL raises OSError subclasses for truncated or unknown files, DecompressionBombError
    # (not an OSError) for absurd declared sizes.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"Cannot read image {path!r}: {error}") from error


def write_png(path, array):
    """Writes an array as a PNG, creating the folder.

    Example:
        >>> write_png("/tmp/out/mask.png", np.zeros((4, 4), np.uint8))
    """
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def void_zero_to_train_ids(labels, num_classes, what):
    """Labels 1..num_classes with 0 = void -> training ids 0..num_classes-1, void 255 (uint8).

    NYUDv2 (40 classes) and SIFT Flow (33 semantic classes) store their labels this way.

    Raises:
        ValueError: a value outside 0..num_classes, naming ``what`` and the range found.

    Example:
        >>> void_zero_to_train_ids(np.array([0, 1, 40]), 40, "labels").tolist()
        [255, 0, 39]
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(
            f"{what} must be in 0..{num_classes} (0 = void). Received values in "
            f"{labels.min()}..{labels.max()}"
        )
    return np.where(labels == 0, IGNORE_LABEL, labels - 1).astype(np.uint8)


def id_dataset(ids, load, dtypes, shapes, pack, *, batch_size=1, shuffle=False, seed=None,
               flip=False):
    """A batched ``tf.data`` pipeline of examples read by id with a NumPy function.

    Args:
        ids: example ids (strings).
        load: ``fn(id as bytes) -> tuple of arrays`` (inputs and labels of one example).
        dtypes, shapes: a TF dtype and a static shape per array of ``load``.
        pack: ``fn(*tensors) -> element`` (e.g. ``(inputs, {"semantic": ..., ...})``).
        batch_size: examples per batch (the arrays of a batch must have the same size).
        shuffle: reshuffle the ids every epoch.
        seed: seed of shuffling and flips: the same seed gives the same batches.
        flip: random left-right flips of all arrays of an example together, seeded and
            stateless as in `keras_fcn.data.prepare_dataset`.

    Returns:
        ``tf.data.Dataset`` of packed, batched elements.

    Example:
        ds = id_dataset(["a"], lambda i: (np.zeros((2, 2), np.int32),), [tf.int32],
                        [[None, None]], lambda mask: mask)
    """

    import tensorflow as tf

    from keras_fcn.data.augment import random_flip, with_element_seeds

    def read(image_id, element_seed):
        arrays = tf.numpy_function(load, [image_id], list(dtypes))
        arrays = [tf.ensure_shape(a, shape) for a, shape in zip(arrays, shapes)]
        if flip:
            arrays = random_flip(element_seed, *arrays)
        return pack(*arrays)

    ds = tf.data.Dataset.from_tensor_slices(list(ids))
    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    ds = with_element_seeds(ds, seed).map(read, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=seed is not None)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
