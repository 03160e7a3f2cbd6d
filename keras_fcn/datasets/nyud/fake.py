"""Tiny synthetic NYUDv2 files in the real formats, for tests and the recipes' --synthetic mode.

Example:
    >>> root = write_fake_nyud("/tmp/fake_nyud")  # doctest: +SKIP
"""

import os

import numpy as np

from keras_fcn.datasets import hha as hha_lib
from keras_fcn.datasets.nyud.labeled_mat import iter_labeled_mat
from keras_fcn.datasets.nyud.layout import (
    ID_OFFSET,
    NUM_CLASSES,
    NUM_RAW_CLASSES,
    NYUD_CLASSES,
    write_example,
    write_split_files,
)


def write_fake_class_mapping(path):
    """Writes a fake ``classMapping40.mat``: ``mapClass[i - 1] = (i - 1) % 40 + 1``.

    Example:
        >>> write_fake_class_mapping("/tmp/classMapping40.mat")  # doctest: +SKIP
    """
    import scipy.io

    mapping = (np.arange(NUM_RAW_CLASSES) % NUM_CLASSES + 1).astype(np.float64)[None, :]
    scipy.io.savemat(os.fspath(path), {"mapClass": mapping,
                                       "className": np.array(NYUD_CLASSES, dtype=object)})


def fake_scene(height=48, width=64, seed=0):
    """A tiny synthetic RGB-D scene: wall (raw label 1), floor (2), a box (29), void border.

    With the fake class mapping the 40-class labels are 1 (wall), 2 (floor), 29 (box) and
    0 (void); RGB colours follow the labels (with noise) so a tiny model can learn them.

    Returns:
        ``(rgb uint8 (H, W, 3), depth float32 (H, W) metres, raw_labels uint16 (H, W))``.

    Example:
        >>> rgb, depth, raw = fake_scene(24, 32)
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(height)[:, None] * np.ones((1, width))
    raw = np.where(rows < height // 2, 1, 2).astype(np.uint16)
    top, left = height // 4 + rng.integers(0, height // 4), rng.integers(0, width // 2)
    raw[top:top + height // 4, left:left + width // 4] = 29
    raw[:, :2] = 0  # void border, as NYUDv2's unlabelled frame
    colours = {0: (0, 0, 0), 1: (200, 190, 170), 2: (90, 60, 40), 29: (40, 120, 200)}
    rgb = np.zeros((height, width, 3), np.float32)
    for label, colour in colours.items():
        rgb[raw == label] = colour
    rgb = np.clip(rgb + rng.normal(0, 10, rgb.shape), 0, 255).astype(np.uint8)
    depth = (2.0 + 2.0 * (1.0 - rows / height)).astype(np.float32)
    depth[raw == 29] -= 0.5
    return rgb, depth, raw


def write_fake_labeled_mat(path, num_images=4, height=48, width=64):
    """Writes a small ``nyu_depth_v2_labeled.mat`` look-alike (HDF5, MATLAB v7.3 axis order).

    Stores ``images`` (N, 3, W, H) uint8, ``depths`` (N, W, H) float32 and ``labels``
    (N, W, H) uint16 as h5py sees a MATLAB v7.3 file, with scenes from :func:`fake_scene`.

    Returns:
        List of ``(rgb, depth, raw_labels)`` in natural (H, W) orientation, for checks.

    Example:
        >>> scenes = write_fake_labeled_mat("/tmp/nyu.mat", num_images=2)  # doctest: +SKIP
    """
    import h5py

    scenes = [fake_scene(height, width, seed=i) for i in range(num_images)]
    with h5py.File(os.fspath(path), "w") as f:
        f["images"] = np.stack([rgb.transpose(2, 1, 0) for rgb, _, _ in scenes])
        f["depths"] = np.stack([depth.T for _, depth, _ in scenes])
        f["labels"] = np.stack([raw.T for _, _, raw in scenes])
    return scenes


def write_fake_nyud(root, num_images=4, height=48, width=64, splits=None):
    """Writes a tiny NYUDv2 data folder in the FCN layout (via a fake labelled ``.mat``).

    Args:
        root: output folder. num_images: images (ids 5001..). height, width: image size.
        splits: ``{split: ids}``; default: all but the last image train/val, the last test.

    Returns:
        The folder path.

    Example:
        >>> root = write_fake_nyud("/tmp/fake_nyud")  # doctest: +SKIP
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    mat_path = os.path.join(root, "nyu_depth_v2_labeled.mat")
    mapping_path = os.path.join(root, "classMapping40.mat")
    write_fake_labeled_mat(mat_path, num_images, height, width)
    write_fake_class_mapping(mapping_path)
    for example in iter_labeled_mat(mat_path, class_mapping=mapping_path):
        write_example(root, example["id"], example["rgb"], example["depth"], example["label"],
                      hha_lib.compute_hha(example["depth"]))
    ids = [str(ID_OFFSET + i + 1) for i in range(num_images)]
    write_split_files(root, splits or {"train": ids[:-1], "val": ids[:-1], "test": ids[-1:]},
                      overwrite=True)  # a fake folder: its own split files
    return root
