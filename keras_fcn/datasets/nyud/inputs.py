"""Preprocessed NYUDv2 inputs (RGB, HHA, RGB-D, RGB + HHA) and their tf.data pipeline.

Example:
    >>> ds = make_nyud_dataset("data/nyud", "test", modality="hha")  # doctest: +SKIP
"""

import functools
import os

import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.datasets.common import id_dataset, resource_path
from keras_fcn.datasets.nyud.layout import (
    MODALITIES,
    NYUD_MEAN_BGR,
    NYUD_MEAN_HHA,
    NYUD_MEAN_LOG_DEPTH,
    example_paths,
    nyud_ids,
    read_depth,
    size_problem,
    read_hha,
    read_label,
    read_rgb,
)


def preprocess_rgb(rgb):
    """RGB 0..255 -> BGR minus the NYUDv2 mean (the reference's colour input), float32.

    Example:
        >>> preprocess_rgb(np.zeros((1, 1, 3)))[0, 0].astype(float).round(3).tolist()
        [-116.19, -97.203, -92.318]
    """
    bgr = np.asarray(rgb, np.float32)[..., ::-1]
    return bgr - np.asarray(NYUD_MEAN_BGR, np.float32)


def preprocess_hha(hha):
    """HHA 0..255 minus the NYUDv2 HHA mean (no channel swap, as the reference), float32.

    Example:
        >>> [round(v, 3) for v in preprocess_hha(np.zeros((1, 1, 3)))[0, 0].tolist()]
        [-132.431, -94.076, -118.477]
    """
    return np.asarray(hha, np.float32) - np.asarray(NYUD_MEAN_HHA, np.float32)


def preprocess_depth(depth):
    """Depth in metres -> ``log(depth_mm) - 7.844`` (the reference), 0 where depth is missing.

    Returns:
        float32 (H, W, 1).

    Example:
        >>> preprocess_depth(np.array([[0.0]]))[0, 0].tolist()
        [0.0]
    """
    depth_mm = np.asarray(depth, np.float32) * 1000.0
    valid = np.isfinite(depth_mm) & (depth_mm > 0)
    log_depth = np.log(np.where(valid, depth_mm, 1.0)) - NYUD_MEAN_LOG_DEPTH
    return np.where(valid, log_depth, 0.0).astype(np.float32)[..., None]


def preprocess_rgbd(rgb, depth):
    """4-channel RGB-D input: :func:`preprocess_rgb` and :func:`preprocess_depth` stacked.

    Example:
        >>> preprocess_rgbd(np.zeros((2, 2, 3)), np.ones((2, 2))).shape
        (2, 2, 4)
    """
    return np.concatenate([preprocess_rgb(rgb), preprocess_depth(depth)], axis=-1)


# The files each modality reads (besides the label).
_KINDS = {"rgb": ("rgb",), "hha": ("hha",), "rgbd": ("rgb", "depth"),
          "fusion": ("rgb", "hha")}


def load_example(root, image_id, modality="rgb", raw_rgb=False):
    """Loads one preprocessed example of the FCN layout.

    Args:
        root: data folder. image_id: id string. modality: ``"rgb"``, ``"hha"``, ``"rgbd"`` or
            ``"fusion"``.
        raw_rgb: ``"rgb"`` only: the image as RGB 0..255 (float32), not preprocessed, for a
            model with its own ``preprocess`` layer of the NYUDv2 mean
            (examples/train_nyud.py).

    Returns:
        ``(inputs, label)``: inputs float32 (H, W, 3|4), or for ``"fusion"`` a dict
        ``{"rgb": (H, W, 3), "hha": (H, W, 3)}``; label uint8 (H, W) training ids.

    Raises:
        ValueError: an input is not the size of the label ("NYUDv2 hha of '5001' is (22, 30)
            but its label is (24, 32)", the message of ``datasets.check``).

    Example:
        >>> inputs, label = load_example("data/nyud", "5001", "fusion")  # doctest: +SKIP
    """
    _check_raw_rgb(modality, raw_rgb)
    label = read_label(root, image_id)
    readers = {"rgb": read_rgb, "hha": read_hha, "depth": read_depth}
    raw = {kind: readers[kind](root, image_id) for kind in _KINDS[modality]}
    problem = size_problem(image_id, raw, label)
    if problem:  # as datasets.check says it, not a shape error deep inside the loss
        raise ValueError(problem)
    if modality == "rgb":
        inputs = np.asarray(raw["rgb"], np.float32) if raw_rgb else preprocess_rgb(raw["rgb"])
    elif modality == "hha":
        inputs = preprocess_hha(raw["hha"])
    elif modality == "rgbd":
        inputs = preprocess_rgbd(raw["rgb"], raw["depth"])
    else:
        inputs = {"rgb": preprocess_rgb(raw["rgb"]), "hha": preprocess_hha(raw["hha"])}
    return inputs, label


def _check_raw_rgb(modality, raw_rgb):
    check_choice("modality", modality, MODALITIES)
    if raw_rgb and modality != "rgb":
        raise ValueError(f"raw_rgb=True is for modality='rgb' (the other inputs are always "
                         f"preprocessed). Received: modality={modality!r}")


def check_split_files(root, split, modality="rgb"):
    """The ids of ``split`` (:func:`nyud_ids`) after checking that the files ``modality``
    reads exist for each one (and the label), so that a run stops before training, not at
    its first validation.

    Raises:
        FileNotFoundError: naming the missing files (the first 3 and their count) and where
            the ids came from (the split file of ``root``, or the bundled list).
        ValueError: a split without ids.

    Example:
        >>> len(check_split_files("data/nyud", "test", "fusion"))  # doctest: +SKIP
        654
    """
    check_choice("modality", modality, MODALITIES)
    root = os.fspath(root)
    ids = nyud_ids(root, split)
    if not ids:
        raise ValueError(f"No NYUDv2 ids for split={split!r} in {root!r}.")
    missing = [f"{paths[kind]!r} ({kind})" for image_id in ids
               for paths in (example_paths(root, image_id),)
               for kind in (*_KINDS[modality], "label") if not os.path.isfile(paths[kind])]
    if missing:
        raise FileNotFoundError(
            f"NYUDv2 {split} split ({modality}): {len(missing)} file(s) not found for the ids "
            f"of {_split_source(root, split)}: "
            f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
    return ids


def _split_source(root, split):
    """Where :func:`nyud_ids` takes the ids of ``split`` from, in words."""
    own = [os.path.join(root, f"{split}.txt")]
    if split == "trainval" and not os.path.isfile(own[0]):
        own = [os.path.join(root, f"{name}.txt") for name in ("train", "val")]
    if all(os.path.isfile(path) for path in own):
        return " and ".join(repr(path) for path in own)
    names = ("train", "val") if split == "trainval" else (split,)
    return (" and ".join(repr(resource_path(f"nyud_{name}.txt")) for name in names)
            + f" (bundled: {root!r} has no {split}.txt)")


def input_channels(modality):
    """Input channels of a modality: 3 (rgb, hha, each fusion stream) or 4 (rgbd).

    Example:
        >>> input_channels("rgbd"), input_channels("fusion")
        (4, 3)
    """
    check_choice("modality", modality, MODALITIES)
    return 4 if modality == "rgbd" else 3


def _load_flat(root, modality, raw_rgb, image_id):
    inputs, label = load_example(root, image_id.decode(), modality, raw_rgb)
    arrays = [inputs["rgb"], inputs["hha"]] if modality == "fusion" else [inputs]
    return (*arrays, label.astype(np.int32))


def make_nyud_dataset(root, split="train", modality="rgb", ids=None, batch_size=1,
                      shuffle=False, seed=None, flip=False, raw_rgb=False):
    """A ``tf.data`` pipeline of preprocessed NYUDv2 examples from the FCN layout.

    Whole images at their own size (the paper's batch-1 setting); all NYUDv2 images have the
    same size, so ``batch_size > 1`` works too.

    Args:
        root: data folder. split: see :func:`nyud_ids` (ignored when ``ids`` is given).
        modality: ``"rgb"``, ``"hha"``, ``"rgbd"`` or ``"fusion"``.
        ids: explicit id list. batch_size: images per batch.
        shuffle: shuffle the ids every epoch. seed: shuffle and flip seed (the same seed gives
            the same batches). flip: random left-right flips of inputs and labels together,
            seeded (the reference trains without augmentation).
        raw_rgb: ``"rgb"`` only: RGB 0..255 inputs (see :func:`load_example`).

    Returns:
        ``tf.data.Dataset`` of ``(inputs, labels)``: inputs float32 (B, H, W, C) or the dict
        ``{"rgb", "hha"}`` for ``"fusion"``; labels int32 (B, H, W), void 255.

    Example:
        >>> ds = make_nyud_dataset("data/nyud", "test", modality="hha")  # doctest: +SKIP
    """
    import tensorflow as tf

    _check_raw_rgb(modality, raw_rgb)
    ids = list(ids) if ids is not None else nyud_ids(root, split)
    if not ids:
        raise ValueError(f"No NYUDv2 ids for split={split!r} in {os.fspath(root)!r}.")
    n_inputs = 2 if modality == "fusion" else 1
    shape = [None, None, input_channels(modality)]

    def pack(*arrays):
        inputs = {"rgb": arrays[0], "hha": arrays[1]} if modality == "fusion" else arrays[0]
        return inputs, arrays[-1]

    return id_dataset(ids, functools.partial(_load_flat, os.fspath(root), modality, raw_rgb),
                      [tf.float32] * n_inputs + [tf.int32], [shape] * n_inputs + [[None, None]],
                      pack, batch_size=batch_size, shuffle=shuffle, seed=seed, flip=flip)
