"""The official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py), Gupta et
al.'s ``classMapping40.mat``, and their conversion into the FCN layout.

Example:
    >>> convert_labeled_mat("nyu_depth_v2_labeled.mat", "classMapping40.mat",
    ...                     "data/nyud")  # doctest: +SKIP
    1449
"""

import logging
import os

import numpy as np

from keras_fcn.datasets import hha as hha_lib
from keras_fcn.datasets.common import load_mat
from keras_fcn.datasets.nyud.layout import (
    ID_OFFSET,
    NUM_CLASSES,
    NUM_RAW_CLASSES,
    check_split_files,
    example_paths,
    nyud_split_ids,
    write_example,
    write_split_files,
)

log = logging.getLogger("keras_fcn")


def read_class_mapping(path):
    """Reads Gupta et al.'s ``classMapping40.mat`` into a lookup table for the 894 NYU labels.

    Args:
        path: the ``.mat`` file (MATLAB v5, read with scipy) with ``mapClass`` of 894 entries:
            ``mapClass[i - 1]`` is the 40-class id (1..40) of NYU label ``i``.

    Returns:
        uint8 array (895,): ``table[raw_label]`` is the 40-class label, ``table[0] = 0`` (void).

    Example:
        >>> table = read_class_mapping("classMapping40.mat")  # doctest: +SKIP
        >>> labels40 = table[raw_labels]  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Class mapping file not found: {path!r}")
    contents = load_mat(path)
    if "mapClass" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path!r} has no 'mapClass' field (it has {keys}).")
    mapping = np.asarray(contents["mapClass"]).reshape(-1)
    if mapping.size != NUM_RAW_CLASSES or mapping.min() < 0 or mapping.max() > NUM_CLASSES:
        raise ValueError(
            f"'mapClass' in {path!r} must hold {NUM_RAW_CLASSES} values in 0..{NUM_CLASSES}. "
            f"Received: {mapping.size} values in {mapping.min()}..{mapping.max()}"
        )
    return np.concatenate([[0], mapping]).astype(np.uint8)


def map_to_40_classes(raw_labels, table):
    """Maps raw NYU labels (0 = unlabelled, 1..894) to 40-class labels with a lookup table.

    Example:
        >>> map_to_40_classes(np.array([0, 1]), np.array([0, 12] + [1] * 893)).tolist()
        [0, 12]
    """
    raw_labels = np.asarray(raw_labels)
    if raw_labels.size and (raw_labels.min() < 0 or raw_labels.max() >= len(table)):
        raise ValueError(
            f"Raw NYU labels must be in 0..{len(table) - 1}. Received values in "
            f"{raw_labels.min()}..{raw_labels.max()}"
        )
    return np.asarray(table)[raw_labels]


def _check_labeled_layout(f, path):
    for key in ("images", "depths", "labels"):
        if key not in f:
            raise ValueError(f"{path!r} has no {key!r} dataset (keys: {sorted(f.keys())}).")
    images, depths, labels = f["images"], f["depths"], f["labels"]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"'images' in {path!r} must be (N, 3, W, H) as h5py reads MATLAB's (H, W, 3, N). "
            f"Received: shape={images.shape}"
        )
    expected = (images.shape[0], images.shape[2], images.shape[3])
    for name, data in (("depths", depths), ("labels", labels)):
        if data.shape != expected:
            raise ValueError(
                f"{name!r} in {path!r} must be (N, W, H) = {expected} like 'images'. "
                f"Received: shape={data.shape}"
            )
    return images.shape[0]


def iter_labeled_mat(path, indices=None, class_mapping=None):
    """Yields the images of ``nyu_depth_v2_labeled.mat`` one at a time (read lazily).

    Args:
        path: the MATLAB v7.3 (HDF5) file.
        indices: 0-based image indices to read (default: all 1,449).
        class_mapping: path of ``classMapping40.mat`` or a table from
            :func:`read_class_mapping`; when given, ``"label"`` holds 40-class labels
            (0 = void, 1..40), otherwise the raw 894-class labels.

    Yields:
        dicts with ``"id"`` (str, ``5000 + index + 1``), ``"rgb"`` uint8 (H, W, 3),
        ``"depth"`` float32 (H, W) metres and ``"label"`` (H, W): uint8 40-class labels or
        uint16 raw labels.

    Example:
        >>> for example in iter_labeled_mat("nyu_depth_v2_labeled.mat", [0]):  # doctest: +SKIP
        ...     print(example["id"], example["rgb"].shape)
        5001 (480, 640, 3)
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYUDv2 labelled file not found: {path!r}")
    table = class_mapping
    if class_mapping is not None and not isinstance(class_mapping, np.ndarray):
        table = read_class_mapping(class_mapping)
    with h5py.File(path, "r") as f:
        count = _check_labeled_layout(f, path)
        for index in range(count) if indices is None else indices:
            if not 0 <= int(index) < count:
                raise IndexError(f"Image index {index} out of range 0..{count - 1} in {path!r}")
            raw = np.asarray(f["labels"][index]).T
            yield {
                "id": str(ID_OFFSET + int(index) + 1),
                "rgb": np.ascontiguousarray(np.asarray(f["images"][index]).transpose(2, 1, 0)),
                "depth": np.asarray(f["depths"][index], dtype=np.float32).T.copy(),
                "label": raw.astype(np.uint16) if table is None else map_to_40_classes(raw, table),
            }


def _split_listing(out_dir, indices):
    """{split: ids} the split files of a conversion list: the bundled split, or with `indices`
    only the ids whose label is in `out_dir` after it (converted now or by an earlier call).
    A ``trainval.txt`` already in `out_dir` (the FCN authors' layout has one) is listed too,
    as train + val: ``nyud_ids`` reads it before train.txt and val.txt, so left alone it would
    list other images than the split files written beside it."""
    splits = {s: nyud_split_ids(s) for s in ("train", "val", "test")}
    if indices is not None:
        present = {str(ID_OFFSET + int(i) + 1) for i in indices}
        folder = os.path.join(os.fspath(out_dir), "segmentation")
        if os.path.isdir(folder):
            present |= {name[4:-4] for name in os.listdir(folder)
                        if name.startswith("img_") and name.endswith(".mat")}
        splits = {s: [i for i in ids if i in present] for s, ids in splits.items()}
    if os.path.isfile(os.path.join(os.fspath(out_dir), "trainval.txt")):
        splits["trainval"] = splits["train"] + splits["val"]
    return splits


def convert_labeled_mat(mat_path, class_mapping_path, out_dir, with_hha=True,
                        intrinsics=hha_lib.NYU_INTRINSICS, indices=None, verbose=True,
                        overwrite=False):
    """Converts ``nyu_depth_v2_labeled.mat`` into the FCN layout, with HHA computed here.

    The HHA images are this package's approximation of Gupta et al.'s encoding
    (:func:`keras_fcn.datasets.hha.compute_hha`); the FCN authors' ``nyud.tar.gz`` holds the
    original ones (and Gupta et al.'s images, cropped to their valid region).

    Args:
        mat_path: ``nyu_depth_v2_labeled.mat``. class_mapping_path: ``classMapping40.mat``.
        out_dir: output folder. with_hha: also write ``data/hha``.
        intrinsics: camera ``(fx, fy, cx, cy)`` for HHA. indices: 0-based subset (default all).
        verbose: log progress every 100 images.
        overwrite: replace split files (``train.txt``...) of `out_dir` that list other ids
            and the image, depth, HHA and label files of the converted ids that exist already
            (kept otherwise: the FCN authors' HHA and cropped images of ``nyud.tar.gz`` are not
            replaced by this package's, and the same call again writes nothing). Only the files
            the conversion writes are replaced; nothing is deleted.

    The split files (``train.txt``, ``val.txt``, ``test.txt``, and ``trainval.txt`` where
    `out_dir` has one) list the bundled split; with ``indices``, only the ids whose label is in
    ``out_dir`` (converted now or earlier), so no listed image is missing.

    Returns:
        The number of images written.

    Raises:
        FileExistsError: `out_dir` has split files with other ids (checked before
            converting), and not `overwrite`.

    Example:
        >>> convert_labeled_mat("nyu_depth_v2_labeled.mat", "classMapping40.mat",
        ...                     "data/nyud")  # doctest: +SKIP
        1449
    """
    splits = _split_listing(out_dir, indices)
    check_split_files(out_dir, splits, overwrite)  # before the slow part
    count = kept = 0
    for example in iter_labeled_mat(mat_path, indices, class_mapping_path):
        hha = None
        if with_hha and not overwrite and os.path.exists(
                example_paths(out_dir, example["id"])["hha"]):
            kept += 1  # kept as it is: not computed, so write_example does not count it
        elif with_hha:
            hha = hha_lib.compute_hha(example["depth"], intrinsics)
        kept += write_example(out_dir, example["id"], example["rgb"], example["depth"],
                              example["label"], hha, keep_existing=not overwrite)
        count += 1
        if verbose and count % 100 == 0:
            log.info("NYUDv2: converted %d images", count)
    if kept:
        log.info("NYUDv2: kept %d files of %s that existed already (overwrite=True replaces "
                 "them)", kept, out_dir)
    write_split_files(out_dir, splits, overwrite=overwrite)
    return count
